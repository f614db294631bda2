//! Where events go. Each sink runs behind its own bounded queue, so a slow or failing sink never
//! stalls the scan or the other sinks; what a full queue refuses is counted, and every sink keeps
//! the accounting identity `generated = delivered + dropped + queued`.

mod file;
mod http;
mod kafka;
mod lane;
mod min_severity;
mod net;
mod otlp;
mod schema;
mod spool;
mod stdout;
mod tls;
mod writable;

pub use file::{FileSink, FileSinkConfig};
pub use http::{
    Format as HttpFormat, HttpSink, HttpSinkConfig, Lane, OtlpEncoding, ProxyAuth, Verdict,
    parse_retry_after,
};
pub use kafka::{KafkaCompression, KafkaSinkConfig};
pub use min_severity::MinSeverity;
pub use otlp::OtlpSinkConfig;
pub use schema::Schema;
pub use spool::{Budget, Consumer, Restored, Spool, SpoolConfig, SpoolWriter};
pub use stdout::{StdoutFormat, StdoutSink, StdoutSinkConfig};

use crate::event::{Encoded, EventKind};
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One `[[sinks]]` entry of the config file, by `type`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// NDJSON on standard output.
    Stdout(StdoutSinkConfig),
    /// NDJSON appended to a file.
    File(FileSinkConfig),
    /// Batches POSTed to a SIEM.
    Http(Box<HttpSinkConfig>),
    /// LogRecords POSTed to an OTLP/HTTP receiver.
    Otlp(Box<OtlpSinkConfig>),
    /// Records produced to a Kafka topic.
    Kafka(Box<KafkaSinkConfig>),
}

/// What every sink may need from the agent.
#[derive(Clone, Debug)]
pub struct SinkContext {
    /// Bumped on SIGHUP: file sinks reopen their path.
    pub reopen: Arc<AtomicU64>,
    /// Set once, when the agent starts stopping: sinks that retry get a bounded grace.
    pub stopping: Arc<OnceLock<Instant>>,
    /// `host.name`, for envelopes that carry it outside the event (Splunk HEC).
    pub host_name: String,
    /// `host.id`, for envelopes that describe the sender (OTLP's resource).
    pub host_id: String,
    /// A sink whose destination is gone for good (stdout closed) sends its name here once.
    pub closed: Sender<String>,
}

/// One queue and thread of a sink: a lane's name and which events it takes.
#[derive(Clone, Debug)]
pub struct LaneSpec {
    /// Name for counters and errors.
    pub name: String,
    /// Its route filter.
    pub route: Route,
    /// The HTTP lane it is, for HTTP sinks.
    pub lane: Option<Lane>,
}

impl SinkConfig {
    /// A name for counters and errors: the type, and the path for files.
    pub fn name(&self) -> String {
        match self {
            SinkConfig::Stdout(_) => "stdout".into(),
            SinkConfig::File(f) => format!("file:{}", f.path.display()),
            SinkConfig::Http(h) => h.name(),
            SinkConfig::Otlp(o) => o.http().name(),
            SinkConfig::Kafka(k) => k.name(),
        }
    }

    /// The shape its events leave in.
    pub fn schema(&self) -> Schema {
        match self {
            // Text is written from the canonical event.
            SinkConfig::Stdout(c) if c.format == StdoutFormat::Text => Schema::Ecs,
            SinkConfig::Stdout(c) => c.schema,
            SinkConfig::File(c) => c.schema,
            SinkConfig::Http(c) => c.schema,
            SinkConfig::Otlp(_) => Schema::Ecs,
            SinkConfig::Kafka(c) => c.schema,
        }
    }

    /// The route filter.
    pub fn route(&self) -> Route {
        let (kinds, min_severity) = match self {
            SinkConfig::Stdout(c) => (&c.kinds, c.min_severity),
            SinkConfig::File(c) => (&c.kinds, c.min_severity),
            SinkConfig::Http(c) => (&c.kinds, c.min_severity),
            SinkConfig::Otlp(c) => (&c.kinds, c.min_severity),
            SinkConfig::Kafka(c) => (&c.kinds, c.min_severity),
        };
        Route {
            kinds: kinds.clone().unwrap_or_default(),
            min_severity: min_severity.unwrap_or_default().0,
        }
    }

    /// Whether it delivers over the network (HTTP, OTLP, Kafka): then it runs two lanes, and
    /// may have a spool.
    fn networked(&self) -> bool {
        matches!(self, SinkConfig::Http(_) | SinkConfig::Otlp(_) | SinkConfig::Kafka(_))
    }

    /// The spool settings of a network sink that has one.
    pub fn spool(&self) -> Option<SpoolConfig> {
        match self {
            SinkConfig::Http(c) => c.spool.clone(),
            SinkConfig::Otlp(c) => c.spool.clone(),
            SinkConfig::Kafka(c) => c.spool.clone(),
            SinkConfig::Stdout(_) | SinkConfig::File(_) => None,
        }
    }

    /// What a spool directory's name is tied to: where its events go.
    fn destination(&self) -> String {
        match self {
            SinkConfig::Http(c) => c.url.clone(),
            SinkConfig::Otlp(c) => c.logs_url(),
            _ => self.name(),
        }
    }

    /// The queues this sink runs: one, or for a network sink an alert lane and a telemetry
    /// lane (so an alert never waits behind a telemetry backlog). A lane whose kinds the route
    /// excludes is not run.
    pub fn lanes(&self) -> Vec<LaneSpec> {
        let route = self.route();
        if !self.networked() {
            return vec![LaneSpec { name: self.name(), route, lane: None }];
        }
        let all = [EventKind::Event, EventKind::State, EventKind::Alert];
        let wanted: Vec<EventKind> =
            all.into_iter().filter(|k| route.kinds.is_empty() || route.kinds.contains(k)).collect();
        let (alerts, telemetry): (Vec<_>, Vec<_>) =
            wanted.into_iter().partition(|k| *k == EventKind::Alert);
        [(Lane::Alerts, alerts, "alerts"), (Lane::Telemetry, telemetry, "telemetry")]
            .into_iter()
            .filter(|(_, kinds, _)| !kinds.is_empty())
            .map(|(lane, kinds, label)| LaneSpec {
                name: format!("{}#{label}", self.name()),
                route: Route { kinds, min_severity: route.min_severity },
                lane: Some(lane),
            })
            .collect()
    }

    /// The spool directory of each lane, in `lanes()` order (none without a spool).
    pub fn spool_dirs(&self) -> Vec<std::path::PathBuf> {
        let Some(spool) = self.spool() else { return Vec::new() };
        let destination = self.destination();
        self.lanes()
            .iter()
            .map(|lane| {
                let label = match lane.lane {
                    Some(Lane::Alerts) => "alerts",
                    _ => "telemetry",
                };
                spool.lane_dir(&self.name(), &destination, label)
            })
            .collect()
    }

    /// What opening this sink would refuse, found without opening it: settings that cannot work,
    /// credential and certificate files that cannot be read, a file or spool directory this
    /// user cannot write.
    pub fn check(&self) -> Result<(), String> {
        match self {
            SinkConfig::Stdout(_) => Ok(()),
            SinkConfig::File(c) => {
                let dir = c.path.parent().filter(|p| !p.as_os_str().is_empty());
                crate::files::check(dir.unwrap_or(std::path::Path::new(".")))
                    .and_then(|()| writable::appendable_file(&c.path))
                    .map_err(|e| format!("path: {e}"))
            }
            SinkConfig::Http(_) | SinkConfig::Otlp(_) | SinkConfig::Kafka(_) => {
                match self {
                    SinkConfig::Kafka(c) => c.check()?,
                    _ => self.http().expect("an HTTP sink").check()?,
                }
                for dir in self.spool_dirs() {
                    crate::files::check(&dir)
                        .and_then(|()| writable::writable_dir(&dir))
                        .map_err(|e| format!("spool.dir: {e}"))?;
                }
                Ok(())
            }
        }
    }

    /// Opens the sink for one of its lanes; `stats` are that lane's counters (a sink that
    /// retries reports outages there).
    pub fn build(
        &self,
        lane: &LaneSpec,
        context: &SinkContext,
        stats: Arc<SinkStats>,
    ) -> Result<Box<dyn Sink>, SinkError> {
        Ok(match self {
            SinkConfig::Stdout(c) => {
                Box::new(StdoutSink::new(c.format, stats, context.closed.clone()))
            }
            SinkConfig::File(c) => Box::new(FileSink::open(c, context.reopen.clone(), stats)?),
            SinkConfig::Http(_) | SinkConfig::Otlp(_) => Box::new(http::open(
                &self.http().expect("an HTTP sink"),
                lane.lane.unwrap_or(Lane::Telemetry),
                context.clone(),
                stats,
            )?),
            SinkConfig::Kafka(c) => Box::new(kafka::open(
                c,
                lane.lane.unwrap_or(Lane::Telemetry),
                context.clone(),
                stats,
            )?),
        })
    }

    /// The HTTP delivery settings of a sink that POSTs (`http`, and `otlp` through them).
    pub fn http(&self) -> Option<std::borrow::Cow<'_, HttpSinkConfig>> {
        match self {
            SinkConfig::Http(c) => Some(std::borrow::Cow::Borrowed(c)),
            SinkConfig::Otlp(c) => Some(std::borrow::Cow::Owned(c.http())),
            SinkConfig::Stdout(_) | SinkConfig::File(_) | SinkConfig::Kafka(_) => None,
        }
    }
}

/// How a delivered batch ended, event by event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Accepted by the destination.
    pub delivered: u64,
    /// Refused for good by the destination (it said so: a 4xx, a bulk item error).
    pub rejected: u64,
    /// Lost to write errors.
    pub failed: u64,
    /// Not delivered because the agent is stopping (or the lane was replaced by a reload):
    /// still in the spool when there is one, else lost.
    pub left: u64,
}

/// A destination for encoded events, driven by its own thread.
pub trait Sink: Send {
    /// Writes a batch of events; on error, says how many of them are lost.
    fn write_batch(&mut self, batch: &[Arc<Encoded>]) -> Result<(), SinkError>;
    /// Flushes whatever is buffered (on shutdown and after each batch).
    fn flush(&mut self) -> Result<(), SinkError>;
    /// Called about once a second when idle, for time-based work (a due fdatasync, a retry of
    /// events held after a failure); says how the events it settled ended.
    fn tick(&mut self) -> Settled {
        Settled::default()
    }
    /// The last call, when the queue is closed: flushes, and settles whatever the sink still
    /// holds (written at last, or lost).
    fn finish(&mut self) -> Settled {
        let _ = self.flush();
        Settled::default()
    }
    /// Delivers a batch and says how each event ended. By default the batch is written whole,
    /// or lost whole.
    fn deliver(&mut self, batch: &[Arc<Encoded>]) -> Settled {
        let n = batch.len() as u64;
        match self.write_batch(batch) {
            Ok(()) => Settled { delivered: n, ..Settled::default() },
            Err(_) => Settled { failed: n, ..Settled::default() },
        }
    }
    /// (most events in a batch, how long a batch may wait to fill after its first event).
    fn batching(&self) -> (usize, Duration) {
        (512, Duration::ZERO)
    }
}

/// A sink's failure.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination refused the write.
    #[error("{sink}: {source}")]
    Io {
        /// Which sink.
        sink: String,
        /// Why.
        source: std::io::Error,
    },
    /// The destination did not take every event of a batch (refused, or out of time).
    #[error("{sink}: {events} events not delivered")]
    Undelivered {
        /// Which sink.
        sink: String,
        /// How many.
        events: u64,
    },
    /// The sink's settings cannot work (a missing secret file, a bad URL or certificate).
    #[error("{sink}: {message}")]
    Config {
        /// Which sink.
        sink: String,
        /// Why.
        message: String,
    },
}

/// Which events a sink takes (by default, all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// Event kinds accepted (all when empty).
    pub kinds: Vec<EventKind>,
    /// Minimum `event.severity`.
    pub min_severity: u8,
}

impl Route {
    /// Whether this sink wants the event.
    pub fn accepts(&self, event: &Encoded) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && event.severity >= self.min_severity
    }
}

/// Where a lane's accepted events wait: a bounded queue in memory, or the lane's disk spool.
#[derive(Debug)]
pub enum Intake {
    /// The router's end of the lane's queue.
    Memory(Sender<Arc<Encoded>>),
    /// The router's end of the lane's spool.
    Spool(SpoolWriter),
}

impl Intake {
    /// Events waiting in memory (a spool holds its backlog on disk: nothing to wait for).
    pub fn in_memory(&self) -> usize {
        match self {
            Intake::Memory(queue) => queue.len(),
            Intake::Spool(_) => 0,
        }
    }

    /// End of a routing step: a spool writes (and in time syncs) what was appended.
    pub fn flush(&self) {
        if let Intake::Spool(writer) = self {
            writer.flush();
        }
    }
}

/// What the counters read a lane's backlog from.
#[derive(Debug)]
enum Backlog {
    Memory(Receiver<Arc<Encoded>>),
    Spool(Arc<Spool>),
}

/// A sink's counters, shared between the router (which fills its queue) and its thread. Taking
/// events off the queue and counting them happen under one lock, so a reading (also under the
/// lock) is exact: nothing is ever between "queued" and "taken".
#[derive(Debug, Default)]
pub struct SinkStats {
    counters: Mutex<Counters>,
    backlog: OnceLock<Backlog>,
    /// A reload replaced this lane with one reading the same spool: stop, leave the rest.
    superseded: AtomicBool,
}

/// An outage in progress: since when, and the drops counted before it.
#[derive(Debug, Clone, Copy)]
struct Outage {
    started_at_ms: u64,
    started: Instant,
    dropped_before: u64,
}

/// An outage that began, reported as `sink_failed` (to the other sinks, stderr and systemd's
/// status) at once, not only as a counter in the next heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Sink (lane) name.
    pub sink: String,
    /// When the attempt failed, ms since the epoch.
    pub started_at_ms: u64,
    /// Why, as the destination or the system said it.
    pub error: String,
}

/// What an outage cost, reported as `sink_recovered` once the destination takes events again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// Sink (lane) name.
    pub sink: String,
    /// When the first attempt failed, ms since the epoch.
    pub started_at_ms: u64,
    /// How long until an attempt succeeded.
    pub duration_ms: u64,
    /// Attempts that failed meanwhile.
    pub failed_attempts: u64,
    /// Events dropped meanwhile (queue or spool full, refused, lost).
    pub dropped: u64,
    /// Events waiting when it ended: delayed, not lost.
    pub backlog: u64,
}

#[derive(Debug, Default)]
struct Counters {
    generated: u64,
    restored: u64,
    taken: u64,
    delivered: u64,
    dropped_queue_full: u64,
    dropped_spool_full: u64,
    dropped_write_error: u64,
    dropped_rejected: u64,
    outage: Option<Outage>,
    failed_attempts: u64,
    failures: Vec<Failure>,
    recoveries: Vec<Recovery>,
    /// Alerts a full memory queue could not take, oldest first: they go before any later alert.
    overflow: std::collections::VecDeque<Arc<Encoded>>,
}

/// Alerts kept aside for a full memory queue (a stalled stdout, a sink busy with a backlog):
/// telemetry is dropped when a queue is full, alerts wait. Each is a few KiB.
const MAX_OVERFLOW: usize = 10_000;

impl Counters {
    /// Moves waiting alerts into the queue while it has room.
    fn refill(&mut self, queue: &Sender<Arc<Encoded>>) {
        while let Some(alert) = self.overflow.pop_front() {
            if let Err(e) = queue.try_send(alert) {
                self.overflow.push_front(e.into_inner());
                return;
            }
        }
    }

    fn set_aside(&mut self, alert: Arc<Encoded>) {
        self.overflow.push_back(alert);
        if self.overflow.len() > MAX_OVERFLOW {
            self.overflow.pop_front();
            self.dropped_queue_full += 1;
        }
    }
}

/// What the spool adds to a reading: drops made inside it, and what opening it found.
#[derive(Clone, Copy, Debug, Default)]
struct SpoolFacts {
    evicted: u64,
    lost: u64,
    quarantined_bytes: u64,
}

impl Counters {
    fn dropped(&self, spool: SpoolFacts) -> u64 {
        self.dropped_queue_full
            + self.dropped_spool_full
            + self.dropped_write_error
            + self.dropped_rejected
            + spool.evicted
            + spool.lost
    }

    /// With `waiting` events still in a memory queue; taken but unsettled ones count as queued.
    /// A spool's backlog is whatever is neither delivered nor dropped.
    fn counts(&self, sink: &str, waiting: u64, spool: Option<SpoolFacts>) -> SinkCounts {
        let facts = spool.unwrap_or_default();
        let queued = match spool {
            Some(_) => (self.generated).saturating_sub(self.delivered + self.dropped(facts)),
            None => {
                waiting
                    + (self.taken
                        - self.delivered
                        - self.dropped_write_error
                        - self.dropped_rejected)
            }
        };
        SinkCounts {
            sink: sink.to_string(),
            generated: self.generated,
            delivered: self.delivered,
            dropped_queue_full: self.dropped_queue_full,
            dropped_spool_full: self.dropped_spool_full + facts.evicted,
            dropped_write_error: self.dropped_write_error + facts.lost,
            dropped_rejected: self.dropped_rejected,
            queued,
            restored: self.restored,
            spool_quarantined_bytes: facts.quarantined_bytes,
        }
    }
}

impl SinkStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A poisoned lock only means a sink thread panicked mid-update; the counts stay usable.
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lane reads from this memory queue (for its depth in readings).
    pub fn reads_memory(&self, queue: Receiver<Arc<Encoded>>) {
        let _ = self.backlog.set(Backlog::Memory(queue));
    }

    /// The lane reads from this spool.
    pub fn reads_spool(&self, spool: Arc<Spool>) {
        let _ = self.backlog.set(Backlog::Spool(spool));
    }

    fn spool_facts(&self) -> Option<SpoolFacts> {
        match self.backlog.get() {
            Some(Backlog::Spool(spool)) => Some(SpoolFacts {
                evicted: spool.evicted(),
                lost: spool.lost(),
                quarantined_bytes: spool.restored().quarantined_bytes,
            }),
            _ => None,
        }
    }

    /// Events a previous reader of the lane's spool left unsettled: generated for this one.
    pub fn restore(&self, events: u64) {
        let mut c = self.lock();
        c.generated += events;
        c.restored += events;
    }

    /// A reload replaced this lane (see [`Spool::consumer`]).
    pub fn supersede(&self) {
        self.superseded.store(true, Ordering::Relaxed);
    }

    /// Whether a reload replaced this lane: it stops, and its replacement goes on.
    pub fn superseded(&self) -> bool {
        self.superseded.load(Ordering::Relaxed)
    }

    /// Offers an event to a lane, counting it as generated and, when refused, as dropped.
    pub fn offer(&self, intake: &Intake, event: &Arc<Encoded>) {
        match intake {
            Intake::Memory(queue) => {
                let mut c = self.lock();
                c.generated += 1;
                c.refill(queue);
                let alert = event.kind == EventKind::Alert;
                if alert && !c.overflow.is_empty() {
                    c.set_aside(event.clone());
                } else if let Err(refused) = queue.try_send(event.clone()) {
                    match alert {
                        true => c.set_aside(refused.into_inner()),
                        false => c.dropped_queue_full += 1,
                    }
                }
            }
            Intake::Spool(writer) => {
                let accepted = writer.append(event);
                let mut c = self.lock();
                c.generated += 1;
                if !accepted {
                    c.dropped_spool_full += 1;
                }
            }
        }
    }

    /// Moves alerts set aside into the lane's memory queue while it has room (the router calls
    /// this whenever it wakes).
    pub fn refill(&self, intake: &Intake) {
        if let Intake::Memory(queue) = intake {
            self.lock().refill(queue);
        }
    }

    /// Before the router lets go of the lane: waits up to `grace` for the queue to take the
    /// alerts still set aside; those it does not take are dropped, counted.
    pub fn hand_over_overflow(&self, intake: &Intake, grace: Duration) {
        let Intake::Memory(queue) = intake else { return };
        let until = Instant::now() + grace;
        loop {
            let mut c = self.lock();
            c.refill(queue);
            if c.overflow.is_empty() || Instant::now() >= until {
                c.dropped_queue_full += std::mem::take(&mut c.overflow).len() as u64;
                return;
            }
            drop(c);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Takes up to `max` queued events into `batch`, waiting up to `wait` for the first, counting
    /// them as taken. Returns false once the queue is closed and empty.
    pub fn take(
        &self,
        queue: &Receiver<Arc<Encoded>>,
        batch: &mut Vec<Arc<Encoded>>,
        max: usize,
        wait: std::time::Duration,
    ) -> bool {
        let first = match queue.recv_timeout(wait) {
            Ok(first) => first,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => return true,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return false,
        };
        let mut c = self.lock();
        batch.push(first);
        while batch.len() < max {
            match queue.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        c.taken += batch.len() as u64;
        true
    }

    /// Keeps taking queued events into `batch` until it holds `max` or `linger` has passed since
    /// this call; counts them as taken. A batch waits for more only if it may (telemetry to an
    /// HTTP receiver), so that one request carries many events.
    pub fn take_more(
        &self,
        queue: &Receiver<Arc<Encoded>>,
        batch: &mut Vec<Arc<Encoded>>,
        max: usize,
        linger: Duration,
    ) {
        let until = Instant::now() + linger;
        while batch.len() < max {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let Ok(event) = queue.recv_timeout(left) else { return };
            let mut c = self.lock();
            batch.push(event);
            let mut took = 1;
            while batch.len() < max {
                match queue.try_recv() {
                    Ok(event) => {
                        batch.push(event);
                        took += 1;
                    }
                    Err(_) => break,
                }
            }
            c.taken += took;
        }
    }

    /// Events taken off the queue so far (progress, for pacing).
    pub fn taken(&self) -> u64 {
        self.lock().taken
    }

    /// Records how a taken batch ended. Events `left` (the agent stopping) are lost from a
    /// memory queue; a spool keeps them, so there they stay queued.
    pub fn settle(&self, settled: Settled, spooled: bool) {
        let mut c = self.lock();
        c.delivered += settled.delivered;
        c.dropped_rejected += settled.rejected;
        c.dropped_write_error += settled.failed;
        if !spooled {
            c.dropped_write_error += settled.left;
        }
    }

    /// An attempt to deliver failed (and will be retried): an outage starts, or goes on.
    pub fn attempt_failed(&self, sink: &str, error: &str) {
        let spool = self.spool_facts().unwrap_or_default();
        let mut c = self.lock();
        c.failed_attempts += 1;
        if c.outage.is_none() {
            let started_at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let dropped_before = c.dropped(spool);
            c.outage = Some(Outage { started_at_ms, started: Instant::now(), dropped_before });
            let failure = Failure { sink: sink.into(), started_at_ms, error: error.into() };
            c.failures.push(failure);
        }
    }

    /// An outage is in progress (the last attempt failed).
    pub fn failing(&self) -> bool {
        self.lock().outage.is_some()
    }

    /// Outages that began since the last call.
    pub fn take_failures(&self) -> Vec<Failure> {
        std::mem::take(&mut self.lock().failures)
    }

    /// An attempt succeeded: an outage in progress ends, and what it cost is kept for
    /// `take_recoveries`.
    pub fn attempt_succeeded(&self, sink: &str) {
        let spool = self.spool_facts().unwrap_or_default();
        let mut c = self.lock();
        if let Some(outage) = c.outage.take() {
            // Not yet delivered nor dropped: waiting, or in the batch being sent.
            let backlog = c.generated.saturating_sub(c.delivered + c.dropped(spool));
            let recovery = Recovery {
                sink: sink.to_string(),
                started_at_ms: outage.started_at_ms,
                duration_ms: u64::try_from(outage.started.elapsed().as_millis())
                    .unwrap_or(u64::MAX),
                failed_attempts: std::mem::take(&mut c.failed_attempts),
                dropped: c.dropped(spool) - outage.dropped_before,
                backlog,
            };
            c.recoveries.push(recovery);
        }
    }

    /// Outages that ended since the last call.
    pub fn take_recoveries(&self) -> Vec<Recovery> {
        std::mem::take(&mut self.lock().recoveries)
    }

    /// The counters now. Events taken but not yet settled count as queued.
    pub fn counts(&self, sink: &str) -> SinkCounts {
        // Read before the counters' lock: the spool's own lock is never taken inside it.
        let spool = self.spool_facts();
        // A memory queue is read under the lock `take` moves events out of it under: one instant.
        let counters = self.lock();
        let waiting = match self.backlog.get() {
            Some(Backlog::Memory(queue)) => (queue.len() + counters.overflow.len()) as u64,
            _ => 0,
        };
        counters.counts(sink, waiting, spool)
    }
}

/// A point-in-time copy of `SinkStats` plus the queue depth.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SinkCounts {
    /// Sink name.
    pub sink: String,
    /// Events routed to it (with those `restored` from its spool).
    pub generated: u64,
    /// Events delivered.
    pub delivered: u64,
    /// Events dropped, by reason.
    pub dropped_queue_full: u64,
    /// Events the spool's cap refused (or telemetry evicted for alerts).
    pub dropped_spool_full: u64,
    /// Events lost to write errors (or not delivered before the agent stopped, without a spool).
    pub dropped_write_error: u64,
    /// Events the destination refused for good.
    pub dropped_rejected: u64,
    /// Events waiting: in memory, in flight, or in the spool.
    pub queued: u64,
    /// Events a previous run (or a replaced lane) left in the spool, counted in `generated`.
    pub restored: u64,
    /// Bytes of torn or corrupt spool records moved to quarantine when the spool was opened.
    pub spool_quarantined_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(c: &SinkCounts) -> bool {
        c.generated
            == c.delivered
                + c.dropped_queue_full
                + c.dropped_write_error
                + c.dropped_rejected
                + c.queued
    }

    fn event(kind: EventKind, severity: u8) -> Arc<Encoded> {
        Arc::new(Encoded {
            kind,
            severity,
            action: "x".into(),
            line: b"{}\n".to_vec(),
            id: String::new(),
            at_ms: 0,
        })
    }

    #[test]
    fn routes_filter_by_kind_and_severity() {
        let all = Route::default();
        let alerts = Route { kinds: vec![EventKind::Alert], min_severity: 3 };
        assert!(all.accepts(&event(EventKind::Event, 0)));
        assert!(!alerts.accepts(&event(EventKind::Event, 9)));
        assert!(!alerts.accepts(&event(EventKind::Alert, 2)));
        assert!(alerts.accepts(&event(EventKind::Alert, 3)));
    }

    #[test]
    fn accounting_is_exact_through_full_queues_and_failed_writes() {
        let stats = SinkStats::default();
        let (tx, rx) = crossbeam_channel::bounded(3);
        stats.reads_memory(rx.clone());
        let tx = Intake::Memory(tx);
        for _ in 0..5 {
            stats.offer(&tx, &event(EventKind::Event, 0));
        }
        let c = stats.counts("t");
        assert_eq!((c.generated, c.dropped_queue_full, c.queued), (5, 2, 3));
        let mut batch = Vec::new();
        let wait = std::time::Duration::from_millis(10);
        assert!(stats.take(&rx, &mut batch, 2, wait));
        let c = stats.counts("t");
        assert_eq!(c.queued, 3, "taken but not yet written still counts as queued");
        assert!(identity(&c));
        stats.settle(Settled { failed: 2, ..Settled::default() }, false);
        batch.clear();
        assert!(stats.take(&rx, &mut batch, 10, wait));
        stats.settle(Settled { delivered: 1, ..Settled::default() }, false);
        drop(tx);
        assert!(!stats.take(&rx, &mut Vec::new(), 10, wait), "closed and empty");
        let c = stats.counts("t");
        assert_eq!((c.delivered, c.dropped_write_error, c.queued), (1, 2, 0));
        assert!(identity(&c));
    }

    #[test]
    fn a_full_queue_drops_telemetry_and_sets_alerts_aside_in_order() {
        let stats = SinkStats::default();
        let (tx, rx) = crossbeam_channel::bounded(2);
        stats.reads_memory(rx.clone());
        let intake = Intake::Memory(tx);
        let alert = |n: u8| event(EventKind::Alert, n);
        stats.offer(&intake, &event(EventKind::Event, 0));
        stats.offer(&intake, &event(EventKind::Event, 0));
        stats.offer(&intake, &alert(1));
        stats.offer(&intake, &event(EventKind::Event, 0));
        stats.offer(&intake, &alert(2));
        let c = stats.counts("t");
        assert_eq!((c.generated, c.dropped_queue_full, c.queued), (5, 1, 4), "{c:?}");
        assert!(identity(&c));

        let mut batch = Vec::new();
        let wait = Duration::from_millis(10);
        assert!(stats.take(&rx, &mut batch, 10, wait));
        assert_eq!(batch.len(), 2, "the telemetry that fitted");
        stats.refill(&intake);
        batch.clear();
        assert!(stats.take(&rx, &mut batch, 10, wait));
        let severities: Vec<u8> = batch.iter().map(|e| e.severity).collect();
        assert_eq!(severities, [1, 2], "alerts set aside arrive, in order");
        stats.settle(Settled { delivered: 4, ..Settled::default() }, false);
        assert!(identity(&stats.counts("t")));

        // Let go with no room left: a bounded wait, then counted as dropped.
        stats.offer(&intake, &event(EventKind::Event, 0));
        stats.offer(&intake, &event(EventKind::Event, 0));
        stats.offer(&intake, &alert(3));
        stats.hand_over_overflow(&intake, Duration::from_millis(50));
        let c = stats.counts("t");
        assert_eq!((c.dropped_queue_full, c.queued), (2, 2), "{c:?}");
        assert!(identity(&c));
    }

    #[test]
    fn an_outage_is_reported_once_with_what_it_cost() {
        let stats = SinkStats::default();
        let (tx, rx) = crossbeam_channel::bounded(2);
        let tx = Intake::Memory(tx);
        stats.attempt_succeeded("t");
        assert!(stats.take_recoveries().is_empty(), "no outage, nothing to report");
        stats.attempt_failed("t", "connection refused");
        for _ in 0..5 {
            stats.offer(&tx, &event(EventKind::Event, 0));
        }
        stats.attempt_failed("t", "connection refused");
        stats.attempt_failed("t", "HTTP 503");
        let failures = stats.take_failures();
        assert_eq!(failures.len(), 1, "one failure per outage: {failures:?}");
        assert_eq!(failures[0].error, "connection refused", "the reason it began");
        stats.attempt_succeeded("t");
        stats.attempt_succeeded("t");
        let recoveries = stats.take_recoveries();
        assert_eq!(recoveries.len(), 1, "{recoveries:?}");
        let r = &recoveries[0];
        assert_eq!((r.failed_attempts, r.dropped, r.backlog), (3, 3, 2), "{r:?}");
        assert!(stats.take_recoveries().is_empty());
        stats.attempt_failed("t", "again");
        assert_eq!(stats.take_failures().len(), 1, "the next outage is a new failure");
        drop(rx);
    }
}
