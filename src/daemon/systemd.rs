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

pub(crate) struct Systemd {
    progress: Arc<AtomicU64>,
}

impl Systemd {
    /// Starts feeding the watchdog (if the service has one) from `progress`.
    pub fn new(progress: Arc<AtomicU64>) -> Self {
        if let Some(period) = sd_notify::watchdog_enabled() {
            let watched = progress.clone();
            let feed = move || {
                let mut seen = watched.load(Ordering::Relaxed);
                loop {
                    std::thread::sleep(period / 4);
                    let now = watched.load(Ordering::Relaxed);
                    if now != seen {
                        seen = now;
                        let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                    }
                }
            };
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
