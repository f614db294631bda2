//! The router thread: encodes what the scan thread found and offers each event to every sink whose
//! route accepts it, without ever waiting on a sink (a full queue drops, and counts the drop).

use crate::event::{Directions, Encoded, Encoder, EventKind};
use crate::model::{Change, Snapshot};
use crate::sinks::{Route, SinkCounts, SinkStats};
use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;
use std::sync::Arc;

/// What the scan thread hands the router.
pub(crate) enum Message {
    /// Changes between two scans (or the baseline of the first).
    Changes {
        changes: Vec<Change>,
        prev: Option<(Arc<Snapshot>, Arc<Directions>)>,
        next: (Arc<Snapshot>, Arc<Directions>),
    },
    /// A lifecycle event; `with_sinks` adds every sink's counters (heartbeat, stopping).
    Lifecycle { action: &'static str, kind: EventKind, at_ms: u64, fields: Value, with_sinks: bool },
}

/// One sink as the router sees it.
pub(crate) struct SinkPort {
    pub name: String,
    pub route: Route,
    pub queue: Sender<Arc<Encoded>>,
    pub stats: Arc<SinkStats>,
}

impl SinkPort {
    fn offer(&self, event: &Arc<Encoded>) {
        if self.route.accepts(event) {
            self.stats.offer(&self.queue, event);
        }
    }

    fn counts(&self) -> SinkCounts {
        self.stats.counts(&self.name, &self.queue)
    }
}

/// Runs until the scan thread hangs up; then drops the sink queues so the sinks drain and stop,
/// and hands back each sink's counters.
pub(crate) fn route(
    messages: Receiver<Message>,
    mut encoder: Encoder,
    sinks: Vec<SinkPort>,
) -> Vec<(String, Arc<SinkStats>)> {
    for message in messages {
        match message {
            Message::Changes { changes, prev, next } => {
                let prev_ref = prev.as_ref().map(|(s, d)| (s.as_ref(), d.as_ref()));
                let next_ref = (next.0.as_ref(), next.1.as_ref());
                for change in &changes {
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
            Message::Lifecycle { action, kind, at_ms, mut fields, with_sinks } => {
                if with_sinks {
                    let counts: Vec<SinkCounts> = sinks.iter().map(SinkPort::counts).collect();
                    fields["sinks"] = serde_json::to_value(counts).unwrap_or(Value::Null);
                }
                let event = Arc::new(encoder.lifecycle(action, kind, at_ms, fields));
                sinks.iter().for_each(|s| s.offer(&event));
            }
        }
    }
    sinks.into_iter().map(|s| (s.name, s.stats)).collect()
}
