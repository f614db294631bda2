//! The systemd notification protocol: READY once the first scan has completed (so `Type=notify`
//! means "detecting"), WATCHDOG after every completed scan and only then (a hung scan must let
//! the watchdog fire), RELOADING around a reload, STOPPING on the way out. Without NOTIFY_SOCKET
//! every call is a no-op.

use sd_notify::NotifyState;

pub(crate) struct Systemd {
    watchdog: bool,
}

impl Default for Systemd {
    fn default() -> Self {
        Self::new()
    }
}

impl Systemd {
    pub fn new() -> Self {
        Systemd { watchdog: sd_notify::watchdog_enabled().is_some() }
    }

    /// The one-line status `systemctl status` shows.
    pub fn status(&self, text: &str) {
        let _ = sd_notify::notify(&[NotifyState::Status(text)]);
    }

    /// After the first completed scan, and after a reload.
    pub fn ready(&self) {
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("scanning")]);
    }

    /// After every completed scan.
    pub fn scanned(&self) {
        if self.watchdog {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        }
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
