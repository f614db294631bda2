//! The composition root: the only module that knows threads and signals (DESIGN §1).
//!
//! ```text
//! [scan thread]  scan -> graph directions -> diff  --bounded channel-->  [router]  encode, route
//!                                                          --one bounded queue per sink-->  [sink threads]
//! ```
//! A slow or failing sink never stalls scanning: the router never waits on a queue, and every
//! refusal is counted. SIGTERM/SIGINT stop scanning, drain every queue and exit 0.

mod host;
mod router;

use crate::diff::Differ;
use crate::event::{Directions, Encoded, Encoder, EventKind, Redactor, rfc3339};
use crate::graph::{Graph, ListenerMemory};
use crate::model::{Change, Snapshot};
use crate::scan::Scanner;
use crate::sinks::{Route, Sink, SinkStats, StdoutSink};
use crossbeam_channel::{Receiver, bounded, select};
use router::{Message, SinkPort};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Time between scan starts.
    pub interval: Duration,
    /// Time between heartbeat events.
    pub heartbeat: Duration,
    /// Report the sockets open at the first scan as `existing_socket` state events.
    pub baseline: bool,
    /// Events each sink may have waiting before new ones are dropped (and counted).
    pub queue_capacity: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            interval: Duration::from_secs(1),
            heartbeat: Duration::from_secs(60),
            baseline: true,
            queue_capacity: 65_536,
        }
    }
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scanner could not start.
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    /// Signal handlers or threads could not be set up.
    #[error("setting up the agent: {0}")]
    Setup(#[from] std::io::Error),
}

enum Control {
    Stop(&'static str),
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(options: RunOptions) -> Result<(), RunError> {
    let mut scanner = Scanner::new()?;
    // A background agent stays on one core (DESIGN §9); the one-shot scan may use two.
    scanner.set_threads(1);
    let control = signals()?;
    let encoder = Encoder::new(host::identity(), Redactor::default());

    let sinks: Vec<(String, Route, Box<dyn Sink>)> =
        vec![("stdout".into(), Route::default(), Box::new(StdoutSink::new()))];
    let mut ports = Vec::new();
    let mut sink_threads = Vec::new();
    for (name, route, sink) in sinks {
        let (queue, queued) = bounded::<Arc<Encoded>>(options.queue_capacity);
        let stats = Arc::new(SinkStats::default());
        let thread_stats = stats.clone();
        sink_threads.push(
            std::thread::Builder::new()
                .name(format!("sink-{name}"))
                .spawn(move || drive_sink(sink, queued, &thread_stats))?,
        );
        ports.push(SinkPort { name, route, queue, stats });
    }
    let (to_router, messages) = bounded::<Message>(64);
    let router = std::thread::Builder::new()
        .name("router".into())
        .spawn(move || router::route(messages, encoder, ports))?;

    let stop_reason = scan_loop(&mut scanner, &options, &to_router, &control);

    let _ = to_router.send(Message::Lifecycle {
        action: "agent_stopping",
        kind: EventKind::Event,
        at_ms: now_ms(),
        fields: json!({"reason": stop_reason}),
        with_sinks: true,
    });
    drop(to_router);
    let stats = router.join().unwrap_or_default();
    for thread in sink_threads {
        let _ = thread.join();
    }
    // Everything is drained: the last word on what each sink got, for the journal and for tests.
    let counts: Vec<_> = stats.iter().map(|(name, s)| s.final_counts(name)).collect();
    eprintln!("{}", json!({"sockwatch": "stopped", "reason": stop_reason, "sinks": counts}));
    Ok(())
}

/// SIGTERM and SIGINT stop the agent; SIGHUP is caught so it cannot kill it (config reload comes
/// with the config file).
fn signals() -> std::io::Result<Receiver<Control>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = bounded(4);
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            let reason = match signal {
                SIGTERM => "SIGTERM",
                SIGINT => "SIGINT",
                _ => continue,
            };
            if tx.send(Control::Stop(reason)).is_err() {
                return;
            }
        }
    })?;
    Ok(rx)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Scans on every tick until told to stop; returns why it stopped.
fn scan_loop(
    scanner: &mut Scanner,
    options: &RunOptions,
    to_router: &crossbeam_channel::Sender<Message>,
    control: &Receiver<Control>,
) -> &'static str {
    let own_pid = std::process::id() as i32;
    let mut differ = Differ::new(options.baseline);
    let mut listeners = ListenerMemory::default();
    let mut previous_directions: Option<Arc<Directions>> = None;
    let (mut scans, mut overruns, mut batches_dropped) = (0u64, 0u64, 0u64);
    let started_at = now_ms();
    let _ = to_router.send(Message::Lifecycle {
        action: "agent_started",
        kind: EventKind::Event,
        at_ms: started_at,
        fields: json!({
            "interval_ms": options.interval.as_millis() as u64,
            "baseline": options.baseline,
            "privileges": scanner.privileges(),
        }),
        with_sinks: false,
    });
    let mut next_tick = Instant::now();
    let mut next_heartbeat = Instant::now() + options.heartbeat;
    loop {
        select! {
            recv(control) -> message => match message {
                Ok(Control::Stop(reason)) => return reason,
                Err(_) => return "control channel closed",
            },
            recv(crossbeam_channel::at(next_tick)) -> _ => {}
        }
        let began = Instant::now();
        let snapshot = Arc::new(scanner.scan());
        scans += 1;
        let graph = Graph::build(&snapshot, Some(&listeners));
        listeners.remember(&snapshot);
        let directions: Arc<Directions> = Arc::new(
            snapshot.sockets.iter().map(|s| s.key).zip(graph.directions.iter().copied()).collect(),
        );
        drop(graph);
        let (mut changes, prev) = differ.push(snapshot.clone());
        changes.retain(|c| !is_own(c, prev.as_deref(), &snapshot, own_pid));
        let prev = prev.zip(previous_directions.replace(directions.clone()));
        if !changes.is_empty() {
            let message = Message::Changes { changes, prev, next: (snapshot.clone(), directions) };
            if to_router.try_send(message).is_err() {
                batches_dropped += 1;
            }
        }
        let took = began.elapsed();
        next_tick += options.interval;
        if Instant::now() > next_tick {
            // The scan took longer than the interval: start the next one now, never in a burst.
            overruns += 1;
            next_tick = Instant::now();
        }
        if Instant::now() >= next_heartbeat {
            next_heartbeat += options.heartbeat;
            let _ =
                to_router.try_send(heartbeat(&snapshot, scans, overruns, batches_dropped, took));
        }
    }
}

fn heartbeat(
    snapshot: &Snapshot,
    scans: u64,
    overruns: u64,
    batches_dropped: u64,
    took: Duration,
) -> Message {
    Message::Lifecycle {
        action: "heartbeat",
        kind: EventKind::State,
        at_ms: now_ms(),
        fields: json!({
            "coverage": snapshot.coverage,
            "scans": scans,
            "scan_overruns": overruns,
            "batches_dropped": batches_dropped,
            "last_scan_duration_ms": took.as_millis() as u64,
            "last_scan_at": rfc3339(snapshot.taken_at_ms),
            "processes": snapshot.processes.len(),
            "sockets": snapshot.sockets.len(),
        }),
        with_sinks: true,
    }
}

/// A change about a socket only the agent itself holds (its netlink dump sockets, later its sink
/// connections): reporting it would make the agent report on itself every scan.
fn is_own(change: &Change, prev: Option<&Snapshot>, next: &Snapshot, own_pid: i32) -> bool {
    let (key, snapshot) = match change {
        Change::SocketClosed { key, .. } => (*key, prev),
        Change::SocketOpened { key }
        | Change::SocketStateChanged { key, .. }
        | Change::SocketHoldersChanged { key, .. }
        | Change::ExistingSocket { key } => (*key, Some(next)),
        Change::ProcessExec { proc, .. } => return proc.pid == own_pid,
    };
    snapshot
        .and_then(|s| s.sockets.iter().find(|x| x.key == key))
        .is_some_and(|s| !s.holders.is_empty() && s.holders.iter().all(|h| h.proc.pid == own_pid))
}

/// A sink's thread: takes whatever is queued, writes it as one batch, counts the outcome; after
/// the router hangs up, drains the queue and flushes.
fn drive_sink(mut sink: Box<dyn Sink>, queue: Receiver<Arc<Encoded>>, stats: &SinkStats) {
    const BATCH: usize = 512;
    let mut batch = Vec::with_capacity(BATCH);
    while stats.take(&queue, &mut batch, BATCH) {
        let delivered = sink.write_batch(&batch).is_ok();
        stats.settle(batch.len() as u64, delivered);
        batch.clear();
    }
    let _ = sink.flush();
}
