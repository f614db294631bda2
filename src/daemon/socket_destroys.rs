//! `[agent] short_lived`: a thread hears the kernel free TCP and UDP sockets
//! (`scan::SocketDestroys`) in every namespace the last scan saw, and hands the notices to the
//! scan loop, which reports the connections no scan saw (`short_lived`). Subscribing happens on
//! that thread, so the agent's start never waits for it.

use super::detection::Notice;
use crate::scan::{Destroyed, READ_TIMEOUT, SocketDestroys, Watching};
use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError, bounded, never};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Batches of notices waiting for the scan loop (it may be scanning).
const WAITING_BATCHES: usize = 256;
/// Notices heard within this long of the first are handed over together: under churn (a web
/// server's clients) each notice is its own datagram, and waking the scan loop and the router
/// for each cost more than reporting them.
const GATHER: std::time::Duration = std::time::Duration::from_millis(50);

/// What the listening thread tells the scan loop.
pub(crate) enum Heard {
    /// Sockets the kernel freed.
    Destroyed(Vec<Destroyed>),
    /// Something to report: nothing more will be heard, or some namespaces are not heard.
    Notice(Notice),
}

/// Namespaces to follow, as the last scan saw them: (inode, a member pid), sorted, and whether
/// the agent may enter them.
pub(crate) type Namespaces = (Vec<(u64, Option<i32>)>, bool);

/// Counters of the listening thread, for the heartbeat and the metrics.
#[derive(Default)]
pub(crate) struct DestroyCounts {
    /// Subscribed in the agent's own namespace.
    pub listening: AtomicBool,
    pub namespaces_watched: AtomicU64,
    pub namespaces_unwatched: AtomicU64,
    /// Notices heard.
    pub notices: AtomicU64,
    /// Times a subscription's queue overflowed (notices lost), or a batch found the scan loop's
    /// queue full.
    pub overflows: AtomicU64,
}

/// The running listener; dropping it stops the thread, which unsubscribes.
pub(crate) struct SocketDestroyWatch {
    pub heard: Receiver<Heard>,
    pub counts: Arc<DestroyCounts>,
    /// Written by the scan loop after each scan whose namespaces changed.
    pub namespaces: Arc<Mutex<Option<Namespaces>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SocketDestroyWatch {
    /// Starts listening through the proc file system at `proc_root` when `on`; otherwise
    /// nothing is ever heard.
    pub(crate) fn start(on: bool, proc_root: PathBuf) -> SocketDestroyWatch {
        let counts = Arc::new(DestroyCounts::default());
        let namespaces = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        if !on {
            return SocketDestroyWatch { heard: never(), counts, namespaces, stop, thread: None };
        }
        let (tell, heard) = bounded(WAITING_BATCHES);
        let listener = Listener {
            tell,
            counts: counts.clone(),
            namespaces: namespaces.clone(),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("socket-destroys".into())
            .spawn(move || listener.listen(&proc_root));
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                let (tell, failed) = bounded(1);
                let _ = tell.try_send(Heard::Notice(unavailable(&e)));
                return SocketDestroyWatch {
                    heard: failed,
                    counts,
                    namespaces,
                    stop,
                    thread: None,
                };
            }
        };
        SocketDestroyWatch { heard, counts, namespaces, stop, thread }
    }

    pub(crate) fn facts(&self) -> serde_json::Value {
        let c = &self.counts;
        json!({
            "listening": c.listening.load(Ordering::Relaxed),
            "namespaces_watched": c.namespaces_watched.load(Ordering::Relaxed),
            "namespaces_unwatched": c.namespaces_unwatched.load(Ordering::Relaxed),
            "notices": c.notices.load(Ordering::Relaxed),
            "overflows": c.overflows.load(Ordering::Relaxed),
        })
    }
}

impl Drop for SocketDestroyWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Listener {
    tell: Sender<Heard>,
    counts: Arc<DestroyCounts>,
    namespaces: Arc<Mutex<Option<Namespaces>>>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    fn listen(self, proc_root: &std::path::Path) {
        let mut destroys = match SocketDestroys::subscribe(proc_root) {
            Ok(destroys) => destroys,
            Err(e) => return self.report(unavailable(&e)),
        };
        self.counts.listening.store(true, Ordering::Relaxed);
        let mut heard = Vec::new();
        let mut gathering = std::time::Instant::now();
        let mut said_unwatched = false;
        while !self.stop.load(Ordering::Relaxed) {
            let follow = self.namespaces.lock().ok().and_then(|mut n| n.take());
            if let Some((seen, can_enter)) = follow {
                let Watching { watched, unwatched } = destroys.follow(&seen, can_enter);
                self.counts.namespaces_watched.store(watched as u64, Ordering::Relaxed);
                self.counts.namespaces_unwatched.store(unwatched as u64, Ordering::Relaxed);
                // Said once: the heartbeat keeps the count.
                if unwatched > 0 && !said_unwatched {
                    said_unwatched = true;
                    self.report(unwatched_namespaces(watched, unwatched, can_enter));
                }
            }
            let wait = match heard.is_empty() {
                true => READ_TIMEOUT,
                false => GATHER.saturating_sub(gathering.elapsed()),
            };
            let before = heard.len();
            let overflowed = match destroys.wait(wait, &mut heard) {
                Ok(overflowed) => overflowed,
                Err(e) => {
                    self.counts.listening.store(false, Ordering::Relaxed);
                    let fields = json!({
                        "error": e.to_string(),
                        "effect": "connections that open and close between two scans go \
                                   unreported until the agent restarts",
                    });
                    return self.report(("short_lived_stopped", fields));
                }
            };
            self.counts.overflows.fetch_add(overflowed, Ordering::Relaxed);
            if before == 0 && !heard.is_empty() {
                gathering = std::time::Instant::now();
            }
            if heard.is_empty() || gathering.elapsed() < GATHER {
                continue;
            }
            self.counts.notices.fetch_add(heard.len() as u64, Ordering::Relaxed);
            match self.tell.try_send(Heard::Destroyed(std::mem::take(&mut heard))) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.counts.overflows.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    /// Hands a failure to the scan loop, which may be busy scanning; gives up once told to stop.
    fn report(&self, notice: Notice) {
        let mut message = Heard::Notice(notice);
        while !self.stop.load(Ordering::Relaxed) {
            match self.tell.send_timeout(message, READ_TIMEOUT) {
                Err(SendTimeoutError::Timeout(again)) => message = again,
                Ok(()) | Err(SendTimeoutError::Disconnected(_)) => return,
            }
        }
    }
}

fn unavailable(error: &std::io::Error) -> Notice {
    let fields = json!({
        "error": error.to_string(),
        "needs": "netlink sock_diag sockets (a kernel with inet_diag; not filtered by seccomp or \
                  RestrictAddressFamilies)",
        "effect": "connections that open and close between two scans go unreported",
    });
    ("short_lived_unavailable", fields)
}

fn unwatched_namespaces(watched: usize, unwatched: usize, can_enter: bool) -> Notice {
    let why = match can_enter {
        false => "entering another network namespace needs CAP_SYS_ADMIN",
        true => {
            "no process of theirs could be entered (only pinned by a mount or an fd, gone \
                 meanwhile, or past the limit of namespaces)"
        }
    };
    let fields = json!({
        "namespaces_watched": watched,
        "namespaces_unwatched": unwatched,
        "why": why,
        "effect": "connections that open and close between two scans in those namespaces go \
                   unreported; the heartbeat counts them as short_lived.namespaces_unwatched",
    });
    ("short_lived_namespaces_unwatched", fields)
}
