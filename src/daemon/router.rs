//! The router thread: encodes what the scan thread found and offers each event to every sink whose
//! route accepts it. A full queue drops (and counts the drop). Large batches (the baseline of a
//! busy host is tens of thousands of events) are encoded in chunks, and between chunks the router
//! waits, for at most `MAX_WAIT`, for sinks that are making progress to get below `HIGH_WATER`:
//! memory stays bounded by what sinks can absorb instead of by the size of the burst. A sink that
//! makes no progress (a dead destination, a full disk backing off) is not waited for again until
//! it catches up; it drops instead, and never holds the others back.

use crate::event::{Directions, Encoded, Encoder, EventKind};
use crate::model::{Change, Snapshot};
use crate::sinks::{Intake, Route, SinkConfig, SinkCounts, SinkStats};
use crossbeam_channel::Receiver;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the scan thread hands the router.
pub(crate) enum Message {
    /// Changes between two scans (or the baseline of the first).
    Changes {
        changes: Vec<Change>,
        prev: Option<(Arc<Snapshot>, Arc<Directions>)>,
        next: (Arc<Snapshot>, Arc<Directions>),
    },
    /// A reload's sinks: keep the running ones whose config is in `keep`, add `added`, retire the
    /// rest (their queues close; they drain and stop). Then announce `config_reloaded`.
    Sinks { keep: Vec<SinkConfig>, added: Vec<SinkPort>, announce: Value },
    /// Alerts from the rule engine.
    Alerts(Vec<crate::model::Alert>),
    /// Connections that opened and closed between two scans.
    ShortLived(Vec<crate::model::ShortLived>),
    /// Hidden processes, found or no longer.
    HidingAlerts(Vec<crate::model::HidingAlert>),
    /// A lifecycle event; `with_sinks` adds every sink's counters (heartbeat, stopping).
    Lifecycle { action: &'static str, kind: EventKind, at_ms: u64, fields: Value, with_sinks: bool },
}

/// One sink as the router sees it.
pub(crate) struct SinkPort {
    pub name: String,
    pub config: SinkConfig,
    pub route: Route,
    pub intake: Intake,
    pub stats: Arc<SinkStats>,
    /// No progress during the last wait: do not wait for it until its queue drains.
    pub stalled: bool,
}

/// Events encoded between two pacing checks.
const CHUNK: usize = 256;
/// Queued events per sink above which the router waits for it.
const HIGH_WATER: usize = 2048;
/// Longest the router sleeps without work: spools are synced no later than this after their
/// `fsync_interval`.
const WAKE: Duration = Duration::from_millis(250);
/// Longest wait for one sink at one check.
const MAX_WAIT: Duration = Duration::from_millis(500);

/// Hands memory freed after a large burst (the baseline) back to the system: glibc keeps it in
/// this thread's arena otherwise, and the agent's resident size would stay at its peak.
fn release_freed_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Waits, bounded, for progressing sinks to get below the high-water mark.
fn pace(sinks: &mut [SinkPort]) {
    for sink in sinks.iter_mut() {
        if sink.intake.in_memory() <= HIGH_WATER {
            sink.stalled = false;
            continue;
        }
        if sink.stalled {
            continue;
        }
        let before = sink.stats.taken();
        let deadline = Instant::now() + MAX_WAIT;
        while sink.intake.in_memory() > HIGH_WATER && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        sink.stalled = sink.intake.in_memory() > HIGH_WATER && sink.stats.taken() == before;
    }
}

impl SinkPort {
    fn offer(&self, event: &Arc<Encoded>) {
        if self.route.accepts(event) {
            self.stats.offer(&self.intake, event);
        }
    }

    fn counts(&self) -> SinkCounts {
        self.stats.counts(&self.name)
    }

    /// End of a routing step (or a quiet wake): a spool writes what was appended, alerts set
    /// aside for a full queue move in where there is room.
    fn end_step(&self) {
        self.intake.flush();
        self.stats.refill(&self.intake);
    }

    /// Lets go of the lane (the agent stopping, or a reload removing the sink): alerts still
    /// set aside get a bounded wait for room in its queue.
    fn retire(self) -> (String, Arc<SinkStats>) {
        self.stats.hand_over_overflow(&self.intake, OVERFLOW_GRACE);
        (self.name, self.stats)
    }
}

/// How long a lane being let go may take to accept the alerts set aside for it.
const OVERFLOW_GRACE: Duration = Duration::from_secs(5);

/// Runs until the scan thread hangs up; then drops the sink queues so the sinks drain and stop,
/// and hands back each sink's counters.
pub(crate) fn route(
    messages: Receiver<Message>,
    mut encoder: Encoder,
    mut sinks: Vec<SinkPort>,
) -> Vec<(String, Arc<SinkStats>)> {
    let mut retired: Vec<(String, Arc<SinkStats>)> = Vec::new();
    let mut health = Health::default();
    loop {
        // Woken often, so that a recovery is reported on a quiet host too, and spools are
        // synced within their window.
        let message = match messages.recv_timeout(WAKE) {
            Ok(message) => message,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                health.report(&mut encoder, &sinks);
                sinks.iter().for_each(SinkPort::end_step);
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        health.report(&mut encoder, &sinks);
        match message {
            Message::Changes { changes, prev, next } => {
                let prev_ref = prev.as_ref().map(|(s, d)| (s.as_ref(), d.as_ref()));
                let next_ref = (next.0.as_ref(), next.1.as_ref());
                for (i, change) in changes.iter().enumerate() {
                    if i > 0 && i % CHUNK == 0 {
                        pace(&mut sinks);
                        release_freed_memory();
                    }
                    let first_seen = match change {
                        Change::SocketOpened { .. } | Change::ExistingSocket { .. } => {
                            Some((next.0.taken_at_ms, false))
                        }
                        _ => None,
                    };
                    if let Some(event) = encoder.change(change, prev_ref, next_ref, first_seen) {
                        let event = Arc::new(event);
                        sinks.iter().for_each(|s| s.offer(&event));
                    }
                }
            }
            Message::Alerts(alerts) => {
                for alert in &alerts {
                    let event = Arc::new(encoder.alert(alert));
                    sinks.iter().for_each(|s| s.offer(&event));
                }
            }
            Message::HidingAlerts(alerts) => {
                for alert in &alerts {
                    let event = Arc::new(encoder.hiding_alert(alert));
                    sinks.iter().for_each(|s| s.offer(&event));
                }
            }
            Message::ShortLived(connections) => {
                for connection in &connections {
                    let event = Arc::new(encoder.short_lived(connection));
                    sinks.iter().for_each(|s| s.offer(&event));
                }
            }
            Message::Sinks { keep, added, announce } => {
                let (kept, gone): (Vec<SinkPort>, Vec<SinkPort>) =
                    sinks.drain(..).partition(|s| keep.contains(&s.config));
                retired.extend(gone.into_iter().map(SinkPort::retire));
                sinks = kept;
                sinks.extend(added);
                let event = Arc::new(encoder.lifecycle(
                    "config_reloaded",
                    EventKind::Event,
                    now_ms(),
                    announce,
                ));
                sinks.iter().for_each(|s| s.offer(&event));
            }
            Message::Lifecycle { action, kind, at_ms, mut fields, with_sinks } => {
                if with_sinks {
                    let counts: Vec<SinkCounts> = sinks.iter().map(SinkPort::counts).collect();
                    fields["sinks"] = serde_json::to_value(counts).unwrap_or(Value::Null);
                }
                let event = Arc::new(encoder.lifecycle(action, kind, at_ms, fields));
                sinks.iter().for_each(|s| s.offer(&event));
            }
        }
        // A spool's records are written by the end of each step: what a kill -9 can cost.
        sinks.iter().for_each(SinkPort::end_step);
    }
    retired.extend(sinks.into_iter().map(SinkPort::retire));
    retired
}

/// Sink outages as they begin and end: `sink_failed` at the first failed attempt (what failed
/// and why) and `sink_recovered` at the first success after (what it cost), each offered to
/// every sink (the failing one delivers it once it recovers), written to stderr (the journal),
/// and the failing sinks named in systemd's status line.
#[derive(Default)]
struct Health {
    failing: std::collections::BTreeSet<String>,
}

impl Health {
    fn report(&mut self, encoder: &mut Encoder, sinks: &[SinkPort]) {
        let failures: Vec<_> = sinks.iter().flat_map(|s| s.stats.take_failures()).collect();
        let recoveries: Vec<_> = sinks.iter().flat_map(|s| s.stats.take_recoveries()).collect();
        if failures.is_empty() && recoveries.is_empty() {
            return;
        }
        for failure in &failures {
            self.failing.insert(failure.sink.clone());
            let fields = serde_json::to_value(failure).unwrap_or(Value::Null);
            send(encoder, sinks, "sink_failed", fields);
        }
        for recovery in &recoveries {
            self.failing.remove(&recovery.sink);
            let fields = serde_json::to_value(recovery).unwrap_or(Value::Null);
            send(encoder, sinks, "sink_recovered", fields);
        }
        let status = match self.failing.len() {
            0 => "scanning".to_string(),
            _ => {
                let names = self.failing.iter().cloned().collect::<Vec<_>>().join(", ");
                format!("scanning; failing sinks: {names}")
            }
        };
        super::systemd::status(&status);
    }
}

fn send(encoder: &mut Encoder, sinks: &[SinkPort], action: &'static str, fields: Value) {
    super::to_the_journal(action, &fields);
    let event = Arc::new(encoder.lifecycle(action, EventKind::Event, now_ms(), fields));
    sinks.iter().for_each(|s| s.offer(&event));
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
