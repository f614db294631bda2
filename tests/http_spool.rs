//! The HTTP sink's disk spool end to end: a receiver down for a minute while the agent is
//! killed -9 and restarted. What the first agent accepted waits on disk and arrives after the
//! restart; nothing is lost, duplicates stay within one batch, memory stays bounded.

use crate::agent::Agent;
use crate::http_sink::{Receiver, connections, lanes, outage_length, peak_rss_kib, wait_until};
use crate::util::{ScratchDir, prerequisites};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

pub(crate) fn at_ms(event: &Value) -> u64 {
    let stamp = event["@timestamp"].as_str().unwrap();
    let parsed = humantime::parse_rfc3339(stamp).unwrap();
    parsed.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn id(event: &Value) -> &str {
    event["event"]["id"].as_str().unwrap()
}

fn spool_config(dir: &std::path::Path, url: &str) -> String {
    let spool = dir.join("spool");
    let settings = format!("spool = {{ dir = \"{}\", fsync_interval = \"1s\" }}", spool.display());
    crate::http_sink::config(dir, url, &settings)
}

#[test]
fn a_kill_9_during_an_outage_loses_nothing_the_spool_accepted() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("http-spool");
    let receiver = Receiver::start(0);
    let port = receiver.port;
    let config = spool_config(&dir.path, &receiver.url());
    let first = Agent::start(&["--config", &config]);
    connections(3);
    wait_until("the first events delivered", Duration::from_secs(10), || {
        !receiver.accepted_ids().is_empty()
    });
    receiver.control(json!({"reject": 503}));
    let before = receiver.accepted_ids();
    drop(receiver);
    let outage = outage_length();
    let started = Instant::now();
    while started.elapsed() < outage / 2 {
        connections(60);
    }
    // kill -9: no drain, no goodbye. What it printed more than the fsync window (1 s) plus a
    // routing step before is on disk and must arrive.
    let killed_at = now_ms();
    let printed_first = first.events();
    drop(first);
    let second = Agent::start(&["--config", &config]);
    while started.elapsed() < outage {
        connections(60);
    }
    let peak_rss_kib = peak_rss_kib(second.pid());
    let receiver = Receiver::start(port);
    let must_arrive: Vec<&Value> = printed_first
        .iter()
        .filter(|e| at_ms(e) + 2000 < killed_at && !before.contains_key(id(e)))
        .collect();
    assert!(
        must_arrive.len() as f64 >= 100.0 * (outage / 2).as_secs_f64(),
        "{} events before the kill: fewer than 100/s",
        must_arrive.len()
    );
    let printed_second = second.events();
    wait_until("both agents' backlogs delivered", Duration::from_secs(150), || {
        let accepted = receiver.accepted_ids();
        must_arrive
            .iter()
            .copied()
            .chain(printed_second.iter())
            .all(|e| accepted.contains_key(id(e)))
    });
    let (status, events_second, tally) = second.stop();
    assert!(status.success());
    let mut arrived: HashMap<String, usize> = receiver.accepted_ids();
    for (id, n) in before {
        *arrived.entry(id).or_default() += n;
    }
    let lost: Vec<_> = must_arrive
        .iter()
        .copied()
        .chain(events_second.iter())
        .filter(|e| !arrived.contains_key(id(e)))
        .map(|e| e["event"]["action"].clone())
        .collect();
    assert!(lost.is_empty(), "{} events lost: {lost:?}", lost.len());
    let duplicates = arrived.values().filter(|n| **n > 1).count();
    assert!(duplicates <= 500, "{duplicates} duplicates: more than one batch");
    spool_gave_back(&tally, "http:", must_arrive.len());
    assert!(peak_rss_kib < 128 * 1024, "peak RSS {peak_rss_kib} KiB during the outage");
}

#[test]
fn a_stop_during_an_outage_leaves_the_backlog_for_the_next_start() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("http-spool-stop");
    let receiver = Receiver::start(0);
    receiver.control(json!({"reject": 503}));
    let config = spool_config(&dir.path, &receiver.url());
    let first = Agent::start(&["--config", &config, "--heartbeat", "1s"]);
    connections(5);
    let (status, printed, tally) = first.stop();
    assert!(status.success());
    // A clean stop with the receiver down: the backlog is queued (on disk), not dropped.
    let lanes = lanes(&tally);
    let http: Vec<&Value> =
        lanes.values().filter(|l| l["sink"].as_str().unwrap().starts_with("http:")).collect();
    assert!(http.iter().all(|l| l["dropped_write_error"] == 0), "{http:?}");
    let queued: u64 = http.iter().map(|l| l["queued"].as_u64().unwrap()).sum();
    assert_eq!(queued as usize, printed.len(), "every event printed waits in the spool");
    receiver.control(json!({"reject": null}));
    let second = Agent::start(&["--config", &config]);
    wait_until("the first run's events delivered", Duration::from_secs(30), || {
        let accepted = receiver.accepted_ids();
        printed.iter().all(|e| accepted.contains_key(id(e)))
    });
    let (status, _, _) = second.stop();
    assert!(status.success());
}

/// The restart's telemetry lane of the sink named `prefix…` found at least `backlog` events on
/// disk, and no lane of it dropped anything or kept anything queued.
pub(crate) fn spool_gave_back(tally: &Value, prefix: &str, backlog: usize) {
    let lanes = lanes(tally);
    let telemetry = lanes
        .iter()
        .find(|(name, _)| name.starts_with(prefix) && name.ends_with("#telemetry"))
        .map(|(_, lane)| lane)
        .expect("the telemetry lane's tally");
    assert!(
        telemetry["restored"].as_u64().unwrap() >= backlog as u64,
        "the restart found the first agent's backlog on disk: {telemetry}"
    );
    for lane in lanes.values().filter(|l| l["sink"].as_str().unwrap().starts_with(prefix)) {
        for dropped in
            ["dropped_queue_full", "dropped_spool_full", "dropped_write_error", "dropped_rejected"]
        {
            assert_eq!(lane[dropped], 0, "{lane}");
        }
        assert_eq!(lane["queued"], 0, "{lane}");
    }
}
