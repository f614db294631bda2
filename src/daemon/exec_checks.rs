//! `[agent] exec_checks`: a thread listening to the kernel's process events looks at each process
//! that executes, within moments (`scan::Examiner`): the process, its ancestors and what its
//! stdio is connected to, read while a command runner's `sh -c` still lives. The scan loop
//! evaluates the rules on each look as on a scan. Subscribing happens on that thread: the kernel
//! may take its time to answer (or, in a container, never answer), and the agent's start must
//! not wait for it.

use super::detection::Notice;
use crate::model::{FdTarget, Snapshot, TableSource};
use crate::scan::{Examiner, ExecEvents, Grabbed, Neighbourhood, READ_TIMEOUT, Skipped};
use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError, bounded, never,
};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Looks per second before exec events are left to a scan: a host running a build executes
/// thousands of programs a second, and a look costs a few hundred microseconds.
const LOOKS_PER_SECOND: u32 = 200;
/// A process still alive this long after its exec is looked at again, and that later look is
/// the one evaluated: a relay's parts connect right after they start (`nc` execs, then
/// connects), and an incident opened on half of it would name the wrong socket. One that is
/// gone by then is evaluated on what the first look saw, and one whose stdio already is a
/// connection (set up before its exec) is evaluated on the first look, at once.
const SETTLE_LOOK: Duration = Duration::from_millis(15);
/// Looks waiting for the scan loop (it may be scanning).
const WAITING_LOOKS: usize = 64;

/// What the listening thread tells the scan loop.
pub(crate) enum Wake {
    /// A process executed: what a look saw.
    Look(Box<Snapshot>),
    /// Execs went unlooked at (events lost, or more than the looks' budget): a scan should
    /// come soon.
    Missed,
    /// Exec checks are off for good: a notice to report.
    Failed(Notice),
}

/// Counters of the listening thread, for the heartbeat and the metrics.
#[derive(Default)]
pub(crate) struct ExecCounts {
    /// Subscribing or looking: the scan loop keeps a neighbourhood for looks only then.
    pub listening: AtomicBool,
    /// Processes looked at and evaluated (a process alive after the settling time is looked at
    /// twice and evaluated once).
    pub looks: AtomicU64,
    /// Execs not looked at further: the process's stdio leads nowhere a relay could carry.
    pub quiet: AtomicU64,
    /// Processes gone before they could be read.
    pub vanished: AtomicU64,
    /// Execs left to the next scan: events lost by the kernel, or over the looks' budget.
    pub missed: AtomicU64,
    /// Microseconds spent looking.
    pub look_us: AtomicU64,
}

impl ExecCounts {
    pub(crate) fn facts(&self) -> serde_json::Value {
        json!({
            "looks": self.looks.load(Ordering::Relaxed),
            "quiet": self.quiet.load(Ordering::Relaxed),
            "vanished": self.vanished.load(Ordering::Relaxed),
            "missed": self.missed.load(Ordering::Relaxed),
            "look_us": self.look_us.load(Ordering::Relaxed),
        })
    }
}

/// The last scan's neighbourhood, handed from the scan loop to the listening thread.
pub(crate) type SharedNeighbourhood = Arc<Mutex<Option<Arc<Neighbourhood>>>>;

/// The running checks; dropping them stops the thread, which unsubscribes.
pub(crate) struct ExecChecks {
    pub wakes: Receiver<Wake>,
    pub counts: Arc<ExecCounts>,
    pub neighbourhood: SharedNeighbourhood,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ExecChecks {
    /// Starts listening when given an examiner; otherwise nothing ever wakes.
    pub(crate) fn start(examiners: Option<std::io::Result<(Examiner, Examiner)>>) -> ExecChecks {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(ExecCounts::default());
        let neighbourhood = SharedNeighbourhood::default();
        let Some(examiners) = examiners else {
            let threads = Vec::new();
            return ExecChecks { wakes: never(), counts, neighbourhood, stop, threads };
        };
        // Set before the thread even subscribes: the first scan's neighbourhood must be there
        // for the first looks.
        counts.listening.store(true, Ordering::Relaxed);
        let (wake, wakes) = bounded(WAITING_LOOKS);
        let listener = Listener {
            wake: wake.clone(),
            stop: stop.clone(),
            counts: counts.clone(),
            neighbourhood: neighbourhood.clone(),
        };
        let completer = listener.clone();
        let (grabbed, to_complete) = bounded(WAITING_LOOKS * 4);
        let spawned = examiners.and_then(|(grabbing, completing)| {
            let listening = std::thread::Builder::new()
                .name("exec-events".into())
                .spawn(move || listener.listen(grabbing, grabbed))?;
            let completing = std::thread::Builder::new()
                .name("exec-looks".into())
                .spawn(move || completer.complete(completing, to_complete))?;
            Ok(vec![listening, completing])
        });
        let threads = match spawned {
            Ok(threads) => threads,
            Err(e) => {
                counts.listening.store(false, Ordering::Relaxed);
                let _ = wake.try_send(Wake::Failed(unavailable(&e)));
                Vec::new()
            }
        };
        ExecChecks { wakes, counts, neighbourhood, stop, threads }
    }
}

impl Drop for ExecChecks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[derive(Clone)]
struct Listener {
    wake: Sender<Wake>,
    stop: Arc<AtomicBool>,
    counts: Arc<ExecCounts>,
    neighbourhood: SharedNeighbourhood,
}

impl Listener {
    /// Hears exec events and reads each process at once (`Examiner::grab`): the shortest lived
    /// exit within a millisecond, so nothing else happens on this thread.
    fn listen(self, mut examiner: Examiner, grabbed: Sender<(u32, Grabbed, Arc<Neighbourhood>)>) {
        let _listening = ClearOnDrop(&self.counts.listening);
        let mut events = match ExecEvents::subscribe() {
            Ok(events) => events,
            Err(e) => return self.report(unavailable(&e)),
        };
        let mut execs = Vec::new();
        let mut budget = Budget::new(LOOKS_PER_SECOND);
        while !self.stop.load(Ordering::Relaxed) {
            execs.clear();
            let lost = match events.wait(&mut execs) {
                Ok(lost) => lost,
                Err(e) => {
                    let fields = json!({
                        "error": e.to_string(),
                        "effect": "scans run on the interval only until the agent restarts",
                    });
                    return self.report(("exec_checks_stopped", fields));
                }
            };
            let mut missed = u64::from(lost);
            // Until the first scan there is nothing to resolve sockets against.
            let near = self.neighbourhood.lock().ok().and_then(|n| n.clone());
            for &pid in &execs {
                match &near {
                    Some(near) if budget.take() => {
                        if let Some((pid, grab)) = self.grab(&mut examiner, pid, near) {
                            match grabbed.try_send((pid, grab, near.clone())) {
                                Ok(()) => {}
                                Err(TrySendError::Full(_)) => missed += 1,
                                Err(TrySendError::Disconnected(_)) => return,
                            }
                        }
                    }
                    _ => missed += 1,
                }
            }
            if self.missed(missed).is_err() {
                return;
            }
        }
    }

    /// Completes the looks the listener grabbed, looks again at those still alive once they
    /// had time to set up, and hands them to the scan loop.
    fn complete(
        self,
        mut examiner: Examiner,
        grabbed: Receiver<(u32, Grabbed, Arc<Neighbourhood>)>,
    ) {
        let mut settling: VecDeque<Settling> = VecDeque::new();
        while !self.stop.load(Ordering::Relaxed) {
            let wait = settling
                .front()
                .map_or(READ_TIMEOUT, |s| s.due.saturating_duration_since(Instant::now()));
            match grabbed.recv_timeout(wait) {
                Ok((pid, grab, near)) => {
                    let began = Instant::now();
                    let early = examiner.complete(grab, &near);
                    self.spent(began);
                    // Stdio already on a connection was set up before the exec: nothing later
                    // completes the picture, and the alert need not wait for the settling.
                    if stdio_on_a_connection(&early, pid) {
                        self.counts.looks.fetch_add(1, Ordering::Relaxed);
                        let Ok(missed) = self.hand_over(early) else { return };
                        if self.missed(missed).is_err() {
                            return;
                        }
                        continue;
                    }
                    let due = Instant::now() + SETTLE_LOOK;
                    settling.push_back(Settling { pid, due, early, near });
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let mut missed = 0;
            while settling.front().is_some_and(|s| s.due <= Instant::now()) {
                let Settling { pid, early, near, .. } = settling.pop_front().expect("front");
                // Still alive: what it has set up since its exec (the connection a relay makes
                // once started) is what counts; gone: what the first look saw is all there is.
                let began = Instant::now();
                let seen = match examiner.grab(pid, &near) {
                    // Nothing changed in its fds: the first look stands.
                    Ok(again) if again.same_fds_as(&early) => early,
                    Ok(again) => examiner.complete(again, &near),
                    Err(_) => early,
                };
                self.spent(began);
                self.counts.looks.fetch_add(1, Ordering::Relaxed);
                // Every rule is about a network socket: a look that reached none has nothing
                // to evaluate.
                if !seen.sockets.iter().any(crate::model::Socket::is_network) {
                    continue;
                }
                let Ok(dropped) = self.hand_over(seen) else { return };
                missed += dropped;
            }
            if self.missed(missed).is_err() {
                return;
            }
        }
    }

    /// Hands a look to the scan loop without waiting: the number of looks it could not take (a
    /// scan is busy, the queue is full) for `missed`. `Err`: the scan loop is gone.
    fn hand_over(&self, look: Snapshot) -> Result<u64, ()> {
        match self.wake.try_send(Wake::Look(Box::new(look))) {
            Ok(()) => Ok(0),
            Err(TrySendError::Full(_)) => Ok(1),
            Err(TrySendError::Disconnected(_)) => Err(()),
        }
    }

    /// Counts execs left unlooked at and asks for a scan. `Err`: the scan loop is gone.
    fn missed(&self, missed: u64) -> Result<(), ()> {
        if missed == 0 {
            return Ok(());
        }
        self.counts.missed.fetch_add(missed, Ordering::Relaxed);
        match self.wake.try_send(Wake::Missed) {
            Ok(()) | Err(TrySendError::Full(_)) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(()),
        }
    }

    /// Reads a process that just executed; `None` when there is nothing to look at (counted).
    fn grab(
        &self,
        examiner: &mut Examiner,
        pid: u32,
        near: &Neighbourhood,
    ) -> Option<(u32, Grabbed)> {
        let began = Instant::now();
        let grabbed = examiner.grab(pid, near);
        self.spent(began);
        match grabbed {
            Ok(grabbed) => Some((pid, grabbed)),
            Err(Skipped::QuietStdio) => {
                self.counts.quiet.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(Skipped::Vanished) => {
                self.counts.vanished.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn spent(&self, since: Instant) {
        let took = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.counts.look_us.fetch_add(took, Ordering::Relaxed);
    }

    /// Hands a failure to the scan loop, which may be busy scanning; gives up once told to stop.
    fn report(&self, notice: Notice) {
        let mut message = Wake::Failed(notice);
        while !self.stop.load(Ordering::Relaxed) {
            match self.wake.send_timeout(message, READ_TIMEOUT) {
                Err(SendTimeoutError::Timeout(again)) => message = again,
                Ok(()) | Err(SendTimeoutError::Disconnected(_)) => return,
            }
        }
    }
}

/// Whether the stdin, stdout or stderr of `pid` is a connected network socket the look resolved.
fn stdio_on_a_connection(look: &Snapshot, pid: u32) -> bool {
    let connected = |inode: u64| {
        look.sockets.iter().any(|s| {
            s.key.inode == inode
                && s.is_network()
                && s.source != TableSource::Unresolved
                && s.remote.is_some_and(|r| r.port != 0)
        })
    };
    look.fds.iter().any(|fd| {
        fd.proc.pid == pid as i32
            && fd.tid.is_none()
            && (0..=2).contains(&fd.num)
            && matches!(fd.target, FdTarget::Socket { inode } if connected(inode))
    })
}

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// A process looked at as it executed, looked at again once it had time to set up.
struct Settling {
    pid: u32,
    due: Instant,
    early: Snapshot,
    near: Arc<Neighbourhood>,
}

/// A token bucket: `rate` looks a second, in bursts of up to `rate`.
pub(crate) struct Budget {
    rate: u32,
    tokens: f64,
    at: Instant,
}

impl Budget {
    pub(crate) fn new(rate: u32) -> Self {
        Budget { rate, tokens: f64::from(rate), at: Instant::now() }
    }

    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(self.rate);
        self.tokens = (self.tokens + refill).min(f64::from(self.rate));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn unavailable(error: &std::io::Error) -> Notice {
    let fields = json!({
        "error": error.to_string(),
        "needs": "CAP_NET_ADMIN, and the host's own user and pid namespaces",
        "effect": "scans run on the interval only: a process living less than the interval can be missed",
    });
    ("exec_checks_unavailable", fields)
}

/// How long a scan brought forward by missed execs waits: a burst of execs is usually a
/// pipeline or a script starting, and one scan that sees it whole beats one that sees half.
pub(crate) const SETTLE: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stdio_on_a_connected_network_socket_skips_the_settling() {
        use crate::model::fixture::Builder;
        use crate::model::{AccessMode, Protocol, SocketState};
        let direct = |fd: i32| {
            let mut b = Builder::new();
            let shell = b.process(10, "bash");
            b.connection(7, shell, fd);
            stdio_on_a_connection(&b.build(), 10)
        };
        assert!(direct(0) && direct(2));
        // Its own connection, not on stdio (a relay connecting after its exec settles).
        assert!(!direct(3));
        let mut b = Builder::new();
        let shell = b.process(10, "bash");
        let relay = b.process(11, "nc");
        b.pipe(5, (relay, 1), (shell, 0));
        b.connection(7, relay, 3);
        assert!(!stdio_on_a_connection(&b.build(), 10), "through a relay");
        let mut b = Builder::new();
        let shell = b.process(10, "bash");
        b.inet(7, Protocol::Tcp, "127.0.0.1:45000", "0.0.0.0:0", SocketState::Close);
        b.fd(shell, 0, AccessMode::ReadWrite, FdTarget::Socket { inode: 7 });
        assert!(!stdio_on_a_connection(&b.build(), 10), "not connected (yet)");
        let mut b = Builder::new();
        let shell = b.process(10, "bash");
        b.connection(7, shell, 0);
        let mut look = b.build();
        look.sockets[0].source = TableSource::Unresolved;
        assert!(!stdio_on_a_connection(&look, 10), "in no table yet");
    }

    #[test]
    fn the_budget_allows_a_burst_then_its_rate() {
        let mut budget = Budget::new(10);
        assert_eq!((0..20).filter(|_| budget.take()).count(), 10);
        budget.at -= Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| budget.take()).count(), 5);
    }
}
