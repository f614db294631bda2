//! What the default rule pack and the stdio relay walk add to a scan on this host's current
//! state: each round scans (one reader thread, as the agent), builds the graph (directions and
//! the relay walk), then evaluates the pack; prints the medians of scan time, graph time and
//! evaluation time (subjects built, rules run), their ratios to the scan, and the cost per
//! subject per rule.
//!
//! `cargo run --release --example rules_overhead -- ROUNDS [INTERVAL_MS]` (root; start
//! `bench/load.py` first for the 1000 processes / 20k sockets state). With an interval, rounds are
//! paced like the agent's ticks.

use sockwatch::graph::Graph;
use sockwatch::rules::{Clock, Engine, RuleSet, RuleSource};
use sockwatch::scan::Scanner;
use std::time::{Duration, Instant};

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(11);
    let pace: u64 = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut scanner = Scanner::new().expect("scanner");
    scanner.set_threads(1);
    let rules = RuleSet::compile(RuleSource::embedded()).expect("the built-in pack compiles");
    let mut engine = Engine::new(rules, Clock::default());
    let (mut scans, mut graphs, mut evaluations, mut subjects_times, mut rules_times) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut subjects, mut rule_count, mut processes, mut sockets) = (0, 0, 0, 0);
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(pace));
        let began = Instant::now();
        let mut snapshot = scanner.scan();
        snapshot.seq = round as u64 + 1;
        scans.push(began.elapsed());
        let began = Instant::now();
        let graph = Graph::build(&snapshot, None);
        graphs.push(began.elapsed());
        let began = Instant::now();
        let (_, stats) = engine.evaluate(&graph);
        evaluations.push(began.elapsed());
        subjects_times.push(stats.subjects_time);
        rules_times.push(stats.rules_time);
        (subjects, rule_count) = (stats.subjects, stats.rules);
        (processes, sockets) = (snapshot.processes.len(), snapshot.sockets.len());
    }
    let (scan, graph, evaluation) = (median(scans), median(graphs), median(evaluations));
    let rules_time = median(rules_times);
    let per = rules_time.as_nanos() as f64 / (subjects * rule_count).max(1) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pct = |d: Duration| d.as_secs_f64() / scan.as_secs_f64() * 100.0;
    println!(
        "{{\"processes\": {processes}, \"sockets\": {sockets}, \"subjects\": {subjects}, \
         \"rules\": {rule_count}, \"scan_ms\": {:.2}, \"graph_ms\": {:.2}, \
         \"evaluation_ms\": {:.2}, \"subjects_ms\": {:.2}, \"rules_ms\": {:.2}, \
         \"graph_pct_of_scan\": {:.1}, \"evaluation_pct_of_scan\": {:.1}, \
         \"ns_per_subject_per_rule\": {per:.1}}}",
        ms(scan),
        ms(graph),
        ms(evaluation),
        ms(median(subjects_times)),
        ms(rules_time),
        pct(graph),
        pct(evaluation),
    );
}
