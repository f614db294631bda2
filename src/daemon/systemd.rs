//! The systemd notification protocol: READY once the first scan has completed (so `Type=notify`
//! means "detecting"), WATCHDOG while scanning makes progress and only then, RELOADING around a
//! reload, STOPPING on the way out. Without NOTIFY_SOCKET every call is a no-op.
//!
//! The watchdog is fed by progress, not by a timer and not only by completed scans: a thread
//! looks four times per watchdog period at a counter the scanner moves every few processes and
//! every namespace it reads (and each completed scan moves), and pings when it moved. A scan that
//! is long but advancing (a host flooded with processes) keeps the agent alive; one stuck in a
//! read stops the pings, and systemd restarts the agent.

use sd_notify::NotifyState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The one-line status `systemctl status` shows.
pub(crate) fn status(text: &str) {
    let _ = sd_notify::notify(&[NotifyState::Status(text)]);
}

/// Every `look`, calls `ping` if `progress` moved since the last look; while `go_on` says so.
fn feed_while_moving(
    progress: &AtomicU64,
    look: std::time::Duration,
    mut go_on: impl FnMut() -> bool,
    mut ping: impl FnMut(),
) {
    let mut seen = progress.load(Ordering::Relaxed);
    while go_on() {
        std::thread::sleep(look);
        let now = progress.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            ping();
        }
    }
}

pub(crate) struct Systemd {
    progress: Arc<AtomicU64>,
}

impl Systemd {
    /// Starts feeding the watchdog (if the service has one) from `progress`.
    pub fn new(progress: Arc<AtomicU64>) -> Self {
        if let Some(period) = sd_notify::watchdog_enabled() {
            let watched = progress.clone();
            let ping = || drop(sd_notify::notify(&[NotifyState::Watchdog]));
            let feed = move || feed_while_moving(&watched, period / 4, || true, ping);
            // Without the thread there are no pings and systemd restarts the agent: loud.
            let _ = std::thread::Builder::new().name("watchdog".into()).spawn(feed);
        }
        Systemd { progress }
    }

    /// After the first completed scan, and after a reload.
    pub fn ready(&self) {
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("scanning")]);
    }

    /// After every completed scan.
    pub fn scanned(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// Before a reload (systemd 253+ wants the monotonic timestamp with it).
    pub fn reloading(&self) {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        let _ = sd_notify::notify(&states);
    }

    /// On the way out, before draining the sinks.
    pub fn stopping(&self) {
        let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("draining sinks")]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_watchdog_is_pinged_while_progress_moves_and_only_then() {
        let progress = AtomicU64::new(0);
        let mut looks = 0;
        let mut pings = Vec::new();
        // Looks 1-3: a long scan advancing (no scan completes); 4-6: stuck; 7: moving again.
        let moves = [true, true, true, false, false, false, true];
        feed_while_moving(
            &progress,
            Duration::from_millis(1),
            || {
                if looks < moves.len() && moves[looks] {
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                looks += 1;
                looks <= moves.len()
            },
            || pings.push(progress.load(Ordering::Relaxed)),
        );
        assert_eq!(pings, [1, 2, 3, 4], "one ping per look that saw progress, none while stuck");
    }
}
