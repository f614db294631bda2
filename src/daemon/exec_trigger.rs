//! `[agent] exec_trigger`: a thread listening to the kernel's process events wakes the scan loop
//! when a process executes, so that a scan follows soon after instead of on the next tick.
//! Subscribing happens on that thread: the kernel may take its time to answer (or, in a
//! container, never answer), and the agent's start must not wait for it.

use super::detection::Notice;
use crate::scan::{ExecEvents, READ_TIMEOUT};
use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError, bounded, never};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long after an exec the triggered scan waits: a relay's parts (`nc | sh > fifo`) start
/// side by side, and one scan that sees them all beats one that sees half.
pub(crate) const SETTLE: Duration = Duration::from_millis(50);

/// What the listening thread tells the scan loop.
pub(crate) enum Wake {
    /// A process executed since the last wake (or events were lost, which may hide one).
    Exec,
    /// The trigger is off for good: a notice to report.
    Failed(Notice),
}

/// The running trigger; dropping it stops the thread, which unsubscribes.
pub(crate) struct ExecTrigger {
    pub wakes: Receiver<Wake>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ExecTrigger {
    /// Starts listening when `enabled`; otherwise nothing ever wakes.
    pub(crate) fn start(enabled: bool) -> ExecTrigger {
        let stop = Arc::new(AtomicBool::new(false));
        if !enabled {
            return ExecTrigger { wakes: never(), stop, thread: None };
        }
        // One pending wake is enough: the scan it brings covers every exec before it.
        let (wake, wakes) = bounded(1);
        let stopped = stop.clone();
        let failed = wake.clone();
        let spawned = std::thread::Builder::new()
            .name("exec-events".into())
            .spawn(move || listen(&wake, &stopped));
        let thread = match spawned {
            Ok(thread) => Some(thread),
            Err(e) => {
                let _ = failed.try_send(Wake::Failed(unavailable(&e)));
                None
            }
        };
        ExecTrigger { wakes, stop, thread }
    }
}

impl Drop for ExecTrigger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn listen(wake: &Sender<Wake>, stop: &AtomicBool) {
    let mut events = match ExecEvents::subscribe() {
        Ok(events) => events,
        Err(e) => return report(wake, stop, unavailable(&e)),
    };
    while !stop.load(Ordering::Relaxed) {
        match events.wait() {
            Ok(false) => {}
            Ok(true) => match wake.try_send(Wake::Exec) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return,
            },
            Err(e) => {
                let fields = json!({
                    "error": e.to_string(),
                    "effect": "scans run on the interval only until the agent restarts",
                });
                return report(wake, stop, ("exec_trigger_stopped", fields));
            }
        }
    }
}

/// Hands a failure to the scan loop, which may be busy scanning; gives up once told to stop.
fn report(wake: &Sender<Wake>, stop: &AtomicBool, notice: Notice) {
    let mut message = Wake::Failed(notice);
    while !stop.load(Ordering::Relaxed) {
        match wake.send_timeout(message, READ_TIMEOUT) {
            Err(SendTimeoutError::Timeout(again)) => message = again,
            Ok(()) | Err(SendTimeoutError::Disconnected(_)) => return,
        }
    }
}

fn unavailable(error: &std::io::Error) -> Notice {
    let fields = json!({
        "error": error.to_string(),
        "needs": "CAP_NET_ADMIN, and the host's own user and pid namespaces",
        "effect": "scans run on the interval only",
    });
    ("exec_trigger_unavailable", fields)
}
