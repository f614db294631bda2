//! The sinks' threads: each lane of each configured sink is opened, given a thread that drains
//! its queue (memory or spool) into the sink, and kept here so the agent can join them at exit
//! and the metrics can read their counters at scrape time.

use super::RunError;
use super::metrics;
use super::router::SinkPort;
use crate::event::{Encoded, EventKind};
use crate::sinks::{
    Budget, Consumer, Intake, Lane, Restored, Schema, Sink, SinkConfig, SinkContext, SinkError,
    SinkStats, Spool,
};
use crossbeam_channel::{Receiver, bounded};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    pub(super) fn spawn(
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
        let Some(settings) = config.spool() else { return Ok(Vec::new()) };
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

    pub(super) fn join_all(&self) {
        for thread in std::mem::take(&mut *lock(&self.threads)) {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
