//! The composition root: the only module that knows threads and signals (DESIGN §1).
//!
//! ```text
//! [scan thread]  scan -> graph directions -> diff  --bounded channel-->  [router]  encode, route
//!                                                          --one bounded queue per sink-->  [sink threads]
//! ```
//! A slow or failing sink never stalls scanning: the router never waits on a queue, and every
//! refusal is counted. SIGTERM/SIGINT stop scanning, drain every queue and exit 0.

mod detection;
mod exec_trigger;
mod host;
mod metrics;
mod preflight;
mod router;
mod state;
mod status_server;
mod systemd;

use crate::config::{Config, RulesConfig};
use crate::diff::Differ;
use crate::event::{Directions, Encoded, Encoder, EventKind, Redactor, rfc3339};
use crate::graph::{Graph, ListenerMemory};
use crate::model::{Change, Family, Snapshot, Socket};
use crate::scan::Scanner;
use crate::sinks::{
    Budget, Consumer, Intake, Lane, Restored, Schema, Sink, SinkConfig, SinkContext, SinkError,
    SinkStats, Spool,
};
use crossbeam_channel::{Receiver, bounded, select};
use router::{Message, SinkPort};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use preflight::{Problem, Refused, all as check_config, watchdog};

/// How the agent runs: the merged config, and the file to re-read on SIGHUP (none when running on
/// the embedded defaults). Command-line overrides are applied to `config` by the caller and win
/// over reloads too.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The settings in force at start.
    pub config: Config,
    /// The config file, re-read on SIGHUP.
    pub config_path: Option<std::path::PathBuf>,
    /// Settings fixed on the command line, which a reload must not undo.
    pub overrides: Overrides,
}

/// `[agent]` settings given on the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--interval`.
    pub interval: Option<Duration>,
    /// `--heartbeat`.
    pub heartbeat: Option<Duration>,
    /// `--no-baseline`.
    pub no_baseline: bool,
    /// `--rules` (repeatable): local rule files or directories instead of the config's (on top
    /// of the built-in pack all the same).
    pub rules: Vec<std::path::PathBuf>,
    /// `--no-builtin-rules`: the local files replace the built-in pack.
    pub no_builtin_rules: bool,
    /// `--state-dir`.
    pub state_dir: Option<std::path::PathBuf>,
}

impl Overrides {
    /// Applies the command line on top of a config.
    pub fn apply(&self, config: &mut Config) {
        if let Some(i) = self.interval {
            config.agent.interval = i;
            config.origins.interval = Some(crate::config::Location::option("--interval"));
        }
        if let Some(h) = self.heartbeat {
            config.agent.heartbeat = h;
        }
        if self.no_baseline {
            config.agent.baseline = false;
        }
        if !self.rules.is_empty() {
            config.rules.selection.paths = self.rules.clone();
            config.origins.rules_paths = Some(crate::config::Location::option("--rules"));
        }
        if self.no_builtin_rules {
            config.rules.selection.builtin = false;
        }
        if let Some(dir) = &self.state_dir {
            config.agent.state_dir = dir.clone();
            config.origins.state_dir = Some(crate::config::Location::option("--state-dir"));
        }
    }
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The settings cannot work (a sink that cannot open, an interval the watchdog would not
    /// survive, a metrics address taken).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The scanner could not start.
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    /// A sink could not be opened.
    #[error(transparent)]
    Sink(#[from] crate::sinks::SinkError),
    /// The rules have errors and no good set was kept to fall back on.
    #[error(transparent)]
    Rules(#[from] detection::RulesUnusable),
    /// Signal handlers or threads could not be set up.
    #[error("setting up the agent: {0}")]
    Setup(#[from] std::io::Error),
    /// Standard output, the only sink, was closed: nothing receives the agent's events.
    #[error("standard output closed, and it was the only sink: stopped")]
    OutputClosed,
}

/// The stop reason when the only sink's destination is gone for good.
const OUTPUT_CLOSED: &str = "output closed";

enum Control {
    Stop(&'static str),
    /// SIGHUP: config and rules.
    Reload,
    /// A rule file changed.
    ReloadRules,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(options: RunOptions) -> Result<(), RunError> {
    let problems = preflight::to_run(&options.config, preflight::watchdog());
    if !problems.is_empty() {
        return Err(Refused(problems).into());
    }
    tune_malloc();
    let mut scanner = Scanner::new()?;
    // A background agent stays on one core by default (DESIGN §9).
    scanner.set_threads(options.config.agent.scan_threads);
    let (control_tx, control) = bounded(16);
    signals(control_tx.clone())?;
    let host = host::identity();
    // Watching before the rules load: a change made while they load still brings a reload.
    let (watcher, watch_failed) = watch_rules(&options.config.rules, &control_tx);
    let (detection, mut notices) = detection::Detection::start(&options.config, &host)?;
    notices.extend(watch_failed);
    let host_name = host.name.clone();
    let encoder = Encoder::new(host, Redactor::with_patterns(&options.config.redact_patterns));

    let (closed_tx, closed) = bounded(4);
    let sink_context = SinkContext {
        reopen: Arc::new(AtomicU64::new(0)),
        stopping: Arc::new(std::sync::OnceLock::new()),
        host_name,
        closed: closed_tx,
    };
    let running = Arc::new(RunningSinks::default());
    let mut ports = Vec::new();
    for config in &options.config.sinks {
        ports.extend(running.spawn(config, options.config.agent.queue_capacity, &sink_context)?);
    }
    // Each message pins two snapshots: keep the hand-over short (see the scan loop).
    let (to_router, messages) = bounded::<Message>(2);
    let router = std::thread::Builder::new()
        .name("router".into())
        .spawn(move || router::route(messages, encoder, ports))?;

    let facts = Arc::new(std::sync::Mutex::new(metrics::ScanFacts::default()));
    let stop_metrics = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let metrics_thread = match options.config.metrics_listen {
        Some(listen) => {
            let status = status_server::Status { facts: facts.clone(), sinks: running.clone() };
            let serving = status_server::serve(listen, status, stop_metrics.clone());
            Some(serving.map_err(|e| {
                Refused(vec![Problem {
                    at: options.config.origins.metrics_listen.clone(),
                    message: format!("metrics: cannot listen on {listen}: {e}"),
                }])
            })?)
        }
        None => None,
    };
    let systemd = systemd::Systemd::new();
    let exec_trigger = exec_trigger::ExecTrigger::start(options.config.agent.exec_trigger);
    let context = LoopContext {
        to_router: &to_router,
        control: &control,
        control_tx: &control_tx,
        sinks: &sink_context,
        systemd: &systemd,
        facts: &facts,
        running: &running,
        exec_wakes: &exec_trigger.wakes,
        closed: &closed,
    };
    let stop_reason = scan_loop(&mut scanner, &options, &context, detection, notices, watcher);
    systemd.stopping();
    // Sinks that retry a dead receiver get their grace from now on, not forever.
    let _ = sink_context.stopping.set(std::time::Instant::now());

    let _ = to_router.send(Message::Lifecycle {
        action: "agent_stopping",
        kind: EventKind::Event,
        at_ms: now_ms(),
        fields: json!({"reason": stop_reason}),
        with_sinks: true,
    });
    drop(to_router);
    let stats = router.join().unwrap_or_default();
    running.join_all();
    stop_metrics.store(true, Ordering::Relaxed);
    if let Some(thread) = metrics_thread {
        let _ = thread.join();
    }
    // Everything is drained: the last word on what each sink got, for the journal and for tests.
    let counts: Vec<_> = stats.iter().map(|(name, s)| s.counts(name)).collect();
    eprintln!("{}", json!({"sockwatch": "stopped", "reason": stop_reason, "sinks": counts}));
    match stop_reason {
        OUTPUT_CLOSED => Err(RunError::OutputClosed),
        _ => Ok(()),
    }
}

/// Two glibc allocator settings that keep resident memory near what is live:
/// - glibc gives threads their own arenas (up to 8 per core) and keeps freed memory in each: with
///   a scan table built on one thread and freed on another every second, resident memory grew
///   with the arena count. Two arenas are enough.
/// - Each scan builds its tables (megabytes of sockets and fds) while the previous scan's are
///   still held for the diff. glibc's mmap threshold rises to the size of any mapped block freed,
///   so from the second scan on those tables came from the heap, whose top could not shrink past
///   the older ones: the high-water mark sat 13 MiB above the live peak at 2000 processes / 50k
///   sockets. A fixed threshold keeps large tables in their own mappings, returned when freed.
///   4 MiB: the tables of a large host are above it (bench/steady.py's peak RSS at 2000/50k:
///   63 → 49 MiB), while a small host's allocations stay on the heap as before (1 MiB saved
///   2 MiB more there, for page faults on every tick).
fn tune_malloc() {
    const LARGE_BLOCK: libc::c_int = 4 << 20;
    // SAFETY: mallopt only sets an allocator parameter; called before the agent's threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BLOCK);
    }
}

/// SIGTERM and SIGINT stop the agent; SIGHUP reopens file sinks and re-reads config and rules.
fn signals(tx: crossbeam_channel::Sender<Control>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            let message = match signal {
                SIGTERM => Control::Stop("SIGTERM"),
                SIGINT => Control::Stop("SIGINT"),
                SIGHUP => Control::Reload,
                _ => continue,
            };
            if tx.send(message).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Scans on every tick until told to stop; returns why it stopped.
/// What the scan loop talks to.
struct LoopContext<'a> {
    to_router: &'a crossbeam_channel::Sender<Message>,
    control: &'a Receiver<Control>,
    control_tx: &'a crossbeam_channel::Sender<Control>,
    sinks: &'a SinkContext,
    systemd: &'a systemd::Systemd,
    facts: &'a std::sync::Mutex<metrics::ScanFacts>,
    running: &'a RunningSinks,
    exec_wakes: &'a Receiver<exec_trigger::Wake>,
    /// Sinks whose destination is gone for good.
    closed: &'a Receiver<String>,
}

fn scan_loop(
    scanner: &mut Scanner,
    options: &RunOptions,
    cx: &LoopContext<'_>,
    mut detection: detection::Detection,
    notices: Vec<detection::Notice>,
    mut watcher: Option<notify::RecommendedWatcher>,
) -> &'static str {
    let LoopContext {
        to_router,
        control,
        control_tx,
        sinks: sink_context,
        systemd,
        facts,
        running,
        exec_wakes,
        closed,
    } = *cx;
    let mut exec_wakes = exec_wakes.clone();
    let mut agent = options.config.agent.clone();
    let mut sinks = options.config.sinks.clone();
    let own_pid = std::process::id() as i32;
    let mut differ = Differ::new(agent.baseline);
    let mut listeners = ListenerMemory::default();
    let mut previous_directions: Option<Arc<Directions>> = None;
    let (mut scans, mut overruns, mut batches_deferred) = (0u64, 0u64, 0u64);
    let (mut scans_triggered, mut triggered) = (0u64, false);
    let mut last_began = Instant::now();
    let started_at = now_ms();
    let _ = to_router.send(Message::Lifecycle {
        action: "agent_started",
        kind: EventKind::Event,
        at_ms: started_at,
        fields: json!({
            "interval_ms": agent.interval.as_millis() as u64,
            "baseline": agent.baseline,
            "config": options.config_path.as_ref().map(|p| p.display().to_string()),
            "sink_names": options.config.sinks.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "privileges": scanner.privileges(),
            "detection": detection.rules(),
        }),
        with_sinks: false,
    });
    for (action, fields) in notices {
        notice(to_router, action, fields);
    }
    if let Some(fields) = missing_privileges(scanner.privileges()) {
        notice(to_router, "privileges_missing", fields);
    }
    let mut rules = options.config.rules.clone();
    let mut next_tick = Instant::now();
    let mut next_heartbeat = Instant::now() + agent.heartbeat;
    loop {
        select! {
            recv(control) -> message => match message {
                Ok(Control::Stop(reason)) => {
                    // Alerts still waiting go out before agent_stopping; the router drains.
                    let alerts = detection.take_pending();
                    if !alerts.is_empty() {
                        let _ = to_router.send(Message::Alerts(alerts));
                    }
                    return reason;
                }
                Ok(Control::Reload) => {
                    systemd.reloading();
                    sink_context.reopen.fetch_add(1, Ordering::Relaxed);
                    let (message, new_rules) =
                        reload(options, &mut agent, &mut sinks, running, sink_context);
                    if let Some(message) = message {
                        if let Message::Lifecycle { action, fields, .. } = &message {
                            to_the_journal(action, fields);
                        }
                        let _ = to_router.send(message);
                    }
                    if let Some(new_rules) = new_rules.filter(|r| *r != rules) {
                        rules = new_rules;
                        drop(watcher.take());
                        let watch_failed;
                        (watcher, watch_failed) = watch_rules(&rules, control_tx);
                        if let Some((action, fields)) = watch_failed {
                            notice(to_router, action, fields);
                        }
                    }
                    let (action, fields) = detection.reload(&rules.selection);
                    notice(to_router, action, fields);
                    for (action, fields) in detection.take_notices() {
                        notice(to_router, action, fields);
                    }
                    systemd.ready();
                    continue;
                }
                Ok(Control::ReloadRules) => {
                    let (action, fields) = detection.reload(&rules.selection);
                    notice(to_router, action, fields);
                    for (action, fields) in detection.take_notices() {
                        notice(to_router, action, fields);
                    }
                    continue;
                }
                Err(_) => return "control channel closed",
            },
            recv(exec_wakes) -> wake => {
                match wake {
                    Ok(exec_trigger::Wake::Exec) => {
                        let soon = (Instant::now() + exec_trigger::SETTLE)
                            .max(last_began + agent.exec_trigger_min_gap);
                        if soon < next_tick {
                            next_tick = soon;
                            triggered = true;
                        }
                    }
                    Ok(exec_trigger::Wake::Failed((action, fields))) => {
                        notice(to_router, action, fields)
                    }
                    // The listener is gone (it said why): nothing will wake the loop again.
                    Err(_) => exec_wakes = crossbeam_channel::never(),
                }
                continue;
            }
            recv(closed) -> _ => {
                // Like any Unix tool whose output is gone (`run | head -1`): when nothing else
                // receives the events, running on would be blind work. With other sinks the
                // router reports it (sink_failed) and the agent goes on.
                if matches!(sinks.as_slice(), [SinkConfig::Stdout(_)]) {
                    let alerts = detection.take_pending();
                    if !alerts.is_empty() {
                        let _ = to_router.send(Message::Alerts(alerts));
                    }
                    return OUTPUT_CLOSED;
                }
                continue;
            }
            recv(crossbeam_channel::at(next_tick)) -> _ => {}
        }
        let began = Instant::now();
        last_began = began;
        if std::mem::take(&mut triggered) {
            scans_triggered += 1;
        }
        let mut snapshot = scanner.scan();
        scans += 1;
        if scans == 1 {
            systemd.ready();
        }
        systemd.scanned();
        let graph = Graph::build(&snapshot, Some(&listeners));
        detection.evaluate(&graph);
        for (action, fields) in detection.take_notices() {
            notice(to_router, action, fields);
        }
        listeners.remember(&snapshot);
        let directions: Arc<Directions> = Arc::new(graph.directions.clone());
        drop(graph);
        // Diff and events need sockets and processes; the fds served the graph. Dropping them
        // keeps the snapshot retained for the next diff at about half its size.
        snapshot.fds = Vec::new();
        let snapshot = Arc::new(snapshot);
        let changes = differ.changes(&snapshot);
        let prev_snapshot = differ.previous().map(|p| p.as_ref());
        let reported: Vec<Change> = changes
            .iter()
            .filter(|c| !is_own(c, prev_snapshot, &snapshot, own_pid))
            .filter(|c| wanted_family(c, prev_snapshot, &snapshot, &options.config.socket_families))
            .cloned()
            .collect();
        let sent = reported.is_empty() || {
            let prev = differ.previous().cloned().zip(previous_directions.clone());
            let next = (snapshot.clone(), directions.clone());
            match to_router.try_send(Message::Changes { changes: reported, prev, next }) {
                Ok(()) => true,
                Err(crossbeam_channel::TrySendError::Full(_)) => false,
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return "router stopped",
            }
        };
        if sent {
            differ.accept(snapshot.clone(), &changes);
            previous_directions = Some(directions);
        } else {
            // The router is behind: keep the previous snapshot, so the next diff covers this
            // interval too. Changes are coalesced, never lost, and only a few snapshots are
            // ever held.
            batches_deferred += 1;
        }
        let alerts = detection.take_pending();
        if !alerts.is_empty() {
            match to_router.try_send(Message::Alerts(alerts)) {
                Ok(()) => {}
                // Alerts are few and never dropped: they wait for the next scan.
                Err(crossbeam_channel::TrySendError::Full(Message::Alerts(alerts))) => {
                    detection.restore_pending(alerts)
                }
                Err(_) => return "router stopped",
            }
        }
        let took = began.elapsed();
        next_tick += agent.interval;
        if Instant::now() > next_tick {
            // The scan took longer than the interval: start the next one now, never in a burst.
            overruns += 1;
            next_tick = Instant::now();
        }
        if let Ok(mut f) = facts.lock() {
            *f = metrics::ScanFacts {
                scans,
                scans_triggered,
                overruns,
                last_duration: took,
                coverage: snapshot.coverage.clone(),
                completed_at: Some(Instant::now()),
                interval: agent.interval,
                rules_degraded: detection.degraded(),
            };
        }
        if Instant::now() >= next_heartbeat {
            next_heartbeat += agent.heartbeat;
            let counts = ScanCounts { scans, scans_triggered, overruns, batches_deferred, took };
            let _ = to_router.try_send(heartbeat(&snapshot, counts, detection.facts()));
        }
    }
}

/// Re-reads the config file. On success the new `[agent]` timings apply from the next tick, new
/// or changed sinks are opened and handed to the router, and removed ones retire (their queues
/// drain); queue sizes apply at the next start. On failure (a bad file, a sink that cannot open)
/// the running settings stay and the error goes out as `reload_failed`.
fn reload(
    options: &RunOptions,
    agent: &mut crate::config::AgentConfig,
    sinks: &mut Vec<SinkConfig>,
    running: &RunningSinks,
    sink_context: &SinkContext,
) -> (Option<Message>, Option<RulesConfig>) {
    let Some(path) = options.config_path.as_ref() else { return (None, None) };
    let file = path.display().to_string();
    let failed = |error: String| Message::Lifecycle {
        action: "reload_failed",
        kind: EventKind::Event,
        at_ms: now_ms(),
        fields: json!({"config": file, "error": error}),
        with_sinks: false,
    };
    let mut config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => return (Some(failed(error.to_string())), None),
    };
    options.overrides.apply(&mut config);
    if let Some(problem) = preflight::timing(&config, preflight::watchdog()) {
        return (Some(failed(problem.to_string())), None);
    }
    let mut added = Vec::new();
    for sink in config.sinks.iter().filter(|s| !sinks.contains(s)) {
        match running.spawn(sink, agent.queue_capacity, sink_context) {
            Ok(ports) => added.extend(ports),
            // Ports spawned so far are dropped with `added`: their queues close, threads end.
            Err(error) => return (Some(failed(error.to_string())), None),
        }
    }
    agent.interval = config.agent.interval;
    agent.heartbeat = config.agent.heartbeat;
    *sinks = config.sinks.clone();
    let rules = config.rules.clone();
    let message = Message::Sinks {
        keep: config.sinks,
        added,
        announce: json!({
            "config": file,
            "interval_ms": agent.interval.as_millis() as u64,
            "sink_names": sinks.iter().map(SinkConfig::name).collect::<Vec<_>>(),
        }),
    };
    (Some(message), Some(rules))
}

/// Events someone has to look at also go to stderr, which systemd keeps in the journal whatever
/// the sinks are.
fn to_the_journal(action: &str, fields: &Value) {
    if crate::event::health::goes_to_the_journal(action) {
        eprintln!("{}", json!({"sockwatch": action, "details": fields}));
    }
}

/// Sends a lifecycle event from the scan thread (rare: reloads, start-up notices).
fn notice(to_router: &crossbeam_channel::Sender<Message>, action: &'static str, fields: Value) {
    to_the_journal(action, &fields);
    let _ = to_router.send(Message::Lifecycle {
        action,
        kind: EventKind::Event,
        at_ms: now_ms(),
        fields,
        with_sinks: false,
    });
}

/// What running without CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH hides, said once at start: other
/// users' fds and namespaces cannot be read, so their shells cannot be seen (every scan counts
/// them as `processes_denied`). CAP_SYS_ADMIN is optional (other namespaces fall back to text
/// tables) and not reported here.
fn missing_privileges(privileges: crate::model::Privileges) -> Option<Value> {
    let mut missing = Vec::new();
    if !privileges.sys_ptrace {
        missing.push("CAP_SYS_PTRACE");
    }
    if !privileges.dac_read_search {
        missing.push("CAP_DAC_READ_SEARCH");
    }
    (!missing.is_empty()).then(|| {
        json!({
            "missing": missing,
            "effect": "other users' fds and namespaces are unreadable: their processes are \
                       counted as processes_denied in every heartbeat, not inspected",
        })
    })
}

/// Starts the rule-file watcher when asked for (there is nothing to watch for the built-in
/// pack). A watcher that cannot start comes back as a notice to report; SIGHUP still reloads.
fn watch_rules(
    rules: &RulesConfig,
    control: &crossbeam_channel::Sender<Control>,
) -> (Option<notify::RecommendedWatcher>, Option<detection::Notice>) {
    let paths = &rules.selection.paths;
    if !rules.watch || paths.is_empty() {
        return (None, None);
    }
    match detection::watch(paths, control.clone()) {
        Ok(watcher) => (Some(watcher), None),
        Err(e) => (None, Some(("rules_watch_failed", json!({"error": e.to_string()})))),
    }
}

/// Every sink thread started, with its metrics view, so the agent can join them at exit and
/// metrics can read them at scrape time.
#[derive(Default)]
pub(crate) struct RunningSinks {
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    views: std::sync::Mutex<Vec<metrics::SinkView>>,
    /// Open spools by directory: one reader and one writer set per spool, across reloads.
    spools: std::sync::Mutex<std::collections::HashMap<PathBuf, std::sync::Weak<Spool>>>,
}

impl RunningSinks {
    /// Opens a sink's lanes (every one, or none) and starts a thread for each; returns the
    /// router's ends.
    fn spawn(
        &self,
        config: &SinkConfig,
        capacity: usize,
        context: &SinkContext,
    ) -> Result<Vec<SinkPort>, RunError> {
        let lanes = config.lanes();
        let spools = self.open_spools(config)?;
        let sinks = lanes
            .iter()
            .map(|lane| {
                let stats = Arc::new(SinkStats::default());
                config.build(lane, context, stats.clone()).map(|sink| (sink, stats))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut spools = spools.into_iter();
        let mut ports = Vec::new();
        for (lane, (sink, stats)) in lanes.into_iter().zip(sinks) {
            let name = lane.name;
            let thread_stats = stats.clone();
            let schema = config.schema();
            let (intake, drive): (Intake, Box<dyn FnOnce() + Send>) = match spools.next() {
                Some(spool) => {
                    stats.reads_spool(spool.clone());
                    let writer = spool.writer();
                    let consumer = spool.consumer(&stats);
                    let drive =
                        move || drive_spooled(sink, &spool, consumer, &thread_stats, schema);
                    (Intake::Spool(writer), Box::new(drive))
                }
                None => {
                    let (queue, queued) = bounded::<Arc<Encoded>>(capacity);
                    stats.reads_memory(queued.clone());
                    let drive = move || drive_sink(sink, queued, &thread_stats, schema);
                    (Intake::Memory(queue), Box::new(drive))
                }
            };
            let view = metrics::SinkView { name: name.clone(), stats: stats.clone() };
            let thread = std::thread::Builder::new().name(format!("sink-{name}")).spawn(drive)?;
            lock(&self.threads).push(thread);
            lock(&self.views).push(view);
            ports.push(SinkPort {
                name,
                config: config.clone(),
                route: lane.route,
                intake,
                stats,
                stalled: false,
            });
        }
        Ok(ports)
    }

    /// The spool of each lane of an HTTP sink that has one. A spool already open (a reload
    /// re-creating the sink with other settings) is handed to the new lane, not opened twice.
    fn open_spools(&self, config: &SinkConfig) -> Result<Vec<Arc<Spool>>, RunError> {
        let SinkConfig::Http(http) = config else { return Ok(Vec::new()) };
        let Some(settings) = &http.spool else { return Ok(Vec::new()) };
        let mut open = lock(&self.spools);
        open.retain(|_, spool| spool.strong_count() > 0);
        let dirs = config.spool_dirs();
        let running: Vec<Option<Arc<Spool>>> =
            dirs.iter().map(|dir| open.get(dir).and_then(std::sync::Weak::upgrade)).collect();
        let budget = running
            .iter()
            .flatten()
            .next()
            .map_or_else(|| Budget::new(settings.max_bytes()), |spool| spool.budget());
        budget.set_max(settings.max_bytes());
        let mut spools = Vec::new();
        for ((dir, running), lane) in dirs.iter().zip(running).zip(config.lanes()) {
            let spool = match running {
                Some(spool) => spool,
                None => {
                    let kind = match lane.lane {
                        Some(Lane::Alerts) => EventKind::Alert,
                        _ => EventKind::Event,
                    };
                    let spool =
                        Spool::open(dir, kind, budget.clone(), settings.fsync_interval).map_err(
                            |message| SinkError::Config { sink: lane.name.clone(), message },
                        )?;
                    let restored = spool.restored();
                    if restored != Restored::default() {
                        eprintln!(
                            "{}",
                            json!({"sockwatch": "spool_restored", "sink": lane.name,
                                "events": restored.records,
                                "quarantined_bytes": restored.quarantined_bytes})
                        );
                    }
                    open.insert(dir.clone(), Arc::downgrade(&spool));
                    spool
                }
            };
            spools.push(spool);
        }
        Ok(spools)
    }

    /// Sinks for metrics (retired ones included: their counters are final).
    pub(crate) fn views(&self) -> std::sync::MutexGuard<'_, Vec<metrics::SinkView>> {
        lock(&self.views)
    }

    fn join_all(&self) {
        for thread in std::mem::take(&mut *lock(&self.threads)) {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The scan loop's counters, for the heartbeat.
struct ScanCounts {
    scans: u64,
    scans_triggered: u64,
    overruns: u64,
    batches_deferred: u64,
    took: Duration,
}

fn heartbeat(snapshot: &Snapshot, counts: ScanCounts, detection: serde_json::Value) -> Message {
    let ScanCounts { scans, scans_triggered, overruns, batches_deferred, took } = counts;
    Message::Lifecycle {
        action: "heartbeat",
        kind: EventKind::State,
        at_ms: now_ms(),
        fields: json!({
            "coverage": snapshot.coverage,
            "scans": scans,
            "scans_exec_triggered": scans_triggered,
            "scan_overruns": overruns,
            "batches_deferred": batches_deferred,
            "last_scan_duration_ms": took.as_millis() as u64,
            "last_scan_at": rfc3339(snapshot.taken_at_ms),
            "processes": snapshot.processes.len(),
            "sockets": snapshot.sockets.len(),
            "detection": detection,
        }),
        with_sinks: true,
    }
}

/// The socket a change is about, described by the snapshot that has it (the previous one for a
/// closed socket); `None` for process changes.
fn subject<'a>(
    change: &Change,
    prev: Option<&'a Snapshot>,
    next: &'a Snapshot,
) -> Option<&'a Socket> {
    let (key, snapshot) = match change {
        Change::SocketClosed { key, .. } => (*key, prev?),
        Change::SocketOpened { key }
        | Change::SocketStateChanged { key, .. }
        | Change::SocketHoldersChanged { key, .. }
        | Change::ExistingSocket { key } => (*key, next),
        Change::ProcessExec { .. } => return None,
    };
    snapshot.sockets.binary_search_by_key(&key, |s| s.key).ok().map(|i| &snapshot.sockets[i])
}

/// A change about a socket only the agent itself holds (its netlink dump sockets, its metrics
/// listener), or about the agent's own exec: reporting it would make the agent report on itself.
fn is_own(change: &Change, prev: Option<&Snapshot>, next: &Snapshot, own_pid: i32) -> bool {
    if let Change::ProcessExec { proc, .. } = change {
        return proc.pid == own_pid;
    }
    subject(change, prev, next)
        .is_some_and(|s| !s.holders.is_empty() && s.holders.iter().all(|h| h.proc.pid == own_pid))
}

/// Whether a change's socket belongs to a reported family (`[events] socket_families`; all when
/// empty). Process changes always pass.
fn wanted_family(
    change: &Change,
    prev: Option<&Snapshot>,
    next: &Snapshot,
    families: &[Family],
) -> bool {
    families.is_empty() || subject(change, prev, next).is_none_or(|s| families.contains(&s.family))
}

/// A spooled lane's thread: reads batches from the spool, delivers them, and acknowledges each
/// once settled. A batch not settled when the agent stops (or a reload supersedes the lane)
/// stays in the spool, for the next start (or the replacement).
fn drive_spooled(
    mut sink: Box<dyn Sink>,
    spool: &Spool,
    consumer: Consumer,
    stats: &SinkStats,
    schema: Schema,
) {
    let (max, linger) = sink.batching();
    let mut batch = Vec::with_capacity(max);
    while spool.take(consumer, &mut batch, max, Duration::from_secs(1)) {
        if batch.is_empty() {
            stats.settle(sink.tick(), true);
            continue;
        }
        spool.take_more(consumer, &mut batch, max, linger);
        let settled = sink.deliver(&schema.render(&batch));
        stats.settle(settled, true);
        if settled.left > 0 {
            break;
        }
        spool.ack(consumer, batch.len());
        batch.clear();
    }
    stats.settle(sink.finish(), true);
}

/// A sink's thread: takes whatever is queued (waiting for more as long as the sink's batching
/// allows), delivers it as one batch, counts how each event ended; after the router hangs up,
/// drains the queue and flushes.
fn drive_sink(
    mut sink: Box<dyn Sink>,
    queue: Receiver<Arc<Encoded>>,
    stats: &SinkStats,
    schema: Schema,
) {
    let (max, linger) = sink.batching();
    let mut batch = Vec::with_capacity(max);
    while stats.take(&queue, &mut batch, max, Duration::from_secs(1)) {
        if batch.is_empty() {
            stats.settle(sink.tick(), false);
            continue;
        }
        stats.take_more(&queue, &mut batch, max, linger);
        let settled = sink.deliver(&schema.render(&batch));
        stats.settle(settled, false);
        batch.clear();
    }
    stats.settle(sink.finish(), false);
}
