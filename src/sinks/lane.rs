//! One lane of a network sink (HTTP, OTLP, Kafka): a batch is split to the destination's size
//! limit and handed over part by part, in order, until the destination settles every event —
//! retried with backoff through outages, halved when it is too large, counted when refused —
//! and what the agent's stopping leaves is counted as spooled or lost. The transport says only
//! how one attempt ended, event by event.

use super::http::{Backoff, Verdict};
use super::{Settled, Sink, SinkContext, SinkError, SinkStats};
use crate::event::Encoded;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a destination takes events.
pub trait Transport: Send {
    /// One attempt to hand `events` over: the verdict on each, in order.
    fn send(&mut self, events: &[Arc<Encoded>]) -> Vec<Verdict>;
    /// What an event adds to one attempt's size, for the lane's byte limit.
    fn cost(&self, event: &Encoded) -> usize;
}

/// What a lane needs beyond its transport.
pub struct LaneSettings {
    /// Most bytes one attempt carries (an event larger than that goes alone).
    pub max_bytes: usize,
    /// At shutdown, how long undelivered events may still be retried.
    pub grace: Duration,
    /// (most events in a batch, longest a batch waits to fill).
    pub batching: (usize, Duration),
    /// Whether undelivered events stay in a spool at shutdown rather than being lost.
    pub spooled: bool,
}

/// A lane's batching: alerts go as soon as they come; telemetry waits up to `max_wait` for its
/// batch to fill.
pub fn batching(lane: super::Lane, max_events: usize, max_wait: Duration) -> (usize, Duration) {
    match lane {
        super::Lane::Alerts => (max_events, Duration::ZERO),
        super::Lane::Telemetry => (max_events, max_wait),
    }
}

/// A lane delivering through `T`.
pub struct NetLane<T> {
    name: String,
    transport: T,
    settings: LaneSettings,
    backoff: Backoff,
    context: SinkContext,
    /// This lane's counters, where outages are reported (`sink_recovered`).
    stats: Arc<SinkStats>,
}

impl<T: Transport> NetLane<T> {
    pub fn new(
        name: String,
        transport: T,
        settings: LaneSettings,
        context: SinkContext,
        stats: Arc<SinkStats>,
    ) -> Self {
        NetLane { name, transport, settings, backoff: Backoff::new(), context, stats }
    }

    /// Whether the agent is stopping and this lane's grace is over, or a reload replaced the
    /// lane (its replacement reads the same spool).
    fn out_of_time(&self) -> bool {
        self.stats.superseded()
            || self
                .context
                .stopping
                .get()
                .is_some_and(|since| since.elapsed() >= self.settings.grace)
    }

    /// Sleeps `wait`, waking early when the agent starts stopping (then the grace applies).
    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        while Instant::now() < until && !self.out_of_time() {
            let step =
                until.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
            std::thread::sleep(step);
        }
    }

    fn report(&self, what: &str, reason: &str, events: usize) {
        let line = serde_json::json!({"sockwatch": what, "sink": self.name, "reason": reason, "events": events});
        eprintln!("{line}");
    }

    /// Consecutive parts of a batch, each within `max_bytes`.
    fn split_by_bytes(&self, batch: &[Arc<Encoded>]) -> VecDeque<Vec<Arc<Encoded>>> {
        let mut parts = VecDeque::new();
        let mut part = Vec::new();
        let mut bytes = 0;
        for event in batch {
            let cost = self.transport.cost(event);
            if !part.is_empty() && bytes + cost > self.settings.max_bytes {
                parts.push_back(std::mem::take(&mut part));
                bytes = 0;
            }
            bytes += cost;
            part.push(event.clone());
        }
        if !part.is_empty() {
            parts.push_back(part);
        }
        parts
    }
}

impl<T: Transport> Sink for NetLane<T> {
    fn write_batch(&mut self, batch: &[Arc<Encoded>]) -> Result<(), SinkError> {
        let settled = self.deliver(batch);
        let lost = batch.len() as u64 - settled.delivered;
        match lost {
            0 => Ok(()),
            _ => Err(SinkError::Undelivered { sink: self.name.clone(), events: lost }),
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn batching(&self) -> (usize, Duration) {
        self.settings.batching
    }

    /// Delivers a batch in order: splits it to the byte limit, then sends each part until the
    /// destination settles every event in it, retrying what it asks to be retried.
    fn deliver(&mut self, batch: &[Arc<Encoded>]) -> Settled {
        let mut settled = Settled::default();
        let mut parts = self.split_by_bytes(batch);
        while let Some(part) = parts.pop_front() {
            if self.out_of_time() {
                let left = part.len() + parts.iter().map(Vec::len).sum::<usize>();
                settled.left += left as u64;
                match self.settings.spooled {
                    true => self.report(
                        "sink_shutdown_spooled",
                        "agent stopping; left in the spool for the next start",
                        left,
                    ),
                    false => self.report(
                        "sink_shutdown_dropped",
                        "agent stopping; receiver did not take them in time",
                        left,
                    ),
                }
                return settled;
            }
            let verdicts = self.transport.send(&part);
            // Any answer that settles something ends an outage; retrying everything is one.
            if verdicts.iter().all(|v| matches!(v, Verdict::Retry { .. })) {
                let reason = verdicts.iter().find_map(|v| match v {
                    Verdict::Retry { reason, .. } => Some(reason.as_str()),
                    _ => None,
                });
                self.stats.attempt_failed(&self.name, reason.unwrap_or("no answer"));
            } else {
                self.stats.attempt_succeeded(&self.name);
            }
            if verdicts.contains(&Verdict::Split) {
                if part.len() == 1 {
                    settled.rejected += 1;
                    self.report("sink_rejected", "too large for the receiver even alone", 1);
                } else {
                    let (front, back) = part.split_at(part.len() / 2);
                    parts.push_front(back.to_vec());
                    parts.push_front(front.to_vec());
                }
                continue;
            }
            let mut again = Vec::new();
            let mut asked = None;
            let mut why = String::new();
            // One line per reason and attempt, with its count: a receiver refusing everything
            // (a revoked credential) must not write a line per event to the journal.
            let mut refused: BTreeMap<String, usize> = BTreeMap::new();
            for (event, verdict) in part.into_iter().zip(verdicts) {
                match verdict {
                    Verdict::Delivered => settled.delivered += 1,
                    Verdict::Reject { reason } => {
                        settled.rejected += 1;
                        *refused.entry(reason).or_default() += 1;
                    }
                    Verdict::Retry { after, reason } => {
                        asked = asked.max(after);
                        why = reason;
                        again.push(event);
                    }
                    Verdict::Split => unreachable!("handled above"),
                }
            }
            for (reason, events) in refused {
                self.report("sink_rejected", &reason, events);
            }
            if again.is_empty() {
                self.backoff.reset();
                continue;
            }
            let wait = self.backoff.next(asked);
            if self.backoff.failures() == 1 || self.backoff.failures().is_multiple_of(10) {
                self.report("sink_retrying", &why, again.len());
            }
            parts.push_front(again);
            self.pause(wait);
        }
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    /// Costs an event its line's length and accepts everything.
    struct Lengths;

    impl Transport for Lengths {
        fn send(&mut self, events: &[Arc<Encoded>]) -> Vec<Verdict> {
            vec![Verdict::Delivered; events.len()]
        }
        fn cost(&self, event: &Encoded) -> usize {
            event.line.len()
        }
    }

    #[test]
    fn batches_split_by_bytes_in_order() {
        let event = |n: usize| {
            Arc::new(Encoded {
                kind: EventKind::Event,
                severity: 0,
                action: "x".into(),
                line: vec![b'x'; n],
                id: String::new(),
                at_ms: 0,
            })
        };
        let (closed, _) = crossbeam_channel::unbounded();
        let context = SinkContext {
            reopen: Arc::default(),
            stopping: Arc::default(),
            host_name: String::new(),
            host_id: String::new(),
            closed,
        };
        let settings = LaneSettings {
            max_bytes: 1000,
            grace: Duration::ZERO,
            batching: (10, Duration::ZERO),
            spooled: false,
        };
        let lane = NetLane::new("t".into(), Lengths, settings, context, Arc::default());
        let batch = vec![event(400), event(400), event(400), event(5000), event(10)];
        let sizes: Vec<Vec<usize>> = lane
            .split_by_bytes(&batch)
            .iter()
            .map(|p| p.iter().map(|e| e.line.len()).collect())
            .collect();
        assert_eq!(sizes, vec![vec![400, 400], vec![400], vec![5000], vec![10]]);
    }
}
