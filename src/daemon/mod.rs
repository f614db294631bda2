//! The composition root: the only module that knows threads and signals (DESIGN §1).
//!
//! ```text
//! [scan thread]  scan -> graph directions -> diff  --bounded channel-->  [router]  encode, route
//!                                                          --one bounded queue per sink-->  [sink threads]
//! ```
//! A slow or failing sink never stalls scanning: the router never waits on a queue, and every
//! refusal is counted. SIGTERM/SIGINT stop scanning, drain every queue and exit 0.

mod detection;
mod exec_checks;
mod hidden_processes;
mod holderless;
mod host;
mod metrics;
mod preflight;
mod private_procfs;
mod reload;
mod router;
mod running_sinks;
mod scan_loop;
mod short_lived;
mod socket_destroys;
mod state;
mod status_server;

use running_sinks::RunningSinks;
mod systemd;

use crate::config::{Config, RulesConfig};
use crate::event::{Encoder, EventKind, Redactor};
use crate::scan::Scanner;
use crate::sinks::SinkContext;
use crossbeam_channel::{Receiver, bounded};
use router::Message;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use preflight::{Problem, Refused, all as check_config, watchdog};

/// How the agent runs: the merged config, and the file to re-read on SIGHUP (none when running on
/// the embedded defaults). Command-line overrides are applied to `config` by the caller and win
/// over reloads too.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The settings in force at start.
    pub config: Config,
    /// The config file, re-read on SIGHUP.
    pub config_path: Option<std::path::PathBuf>,
    /// Settings fixed on the command line, which a reload must not undo.
    pub overrides: Overrides,
}

/// `[agent]` settings given on the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--interval`.
    pub interval: Option<Duration>,
    /// `--heartbeat`.
    pub heartbeat: Option<Duration>,
    /// `--baseline` (`--no-baseline` is `off`).
    pub baseline: Option<crate::model::Baseline>,
    /// `--rules` (repeatable): local rule files or directories instead of the config's (on top
    /// of the built-in pack all the same).
    pub rules: Vec<std::path::PathBuf>,
    /// `--no-builtin-rules`: the local files replace the built-in pack.
    pub no_builtin_rules: bool,
    /// `--no-exec-checks`.
    pub no_exec_checks: bool,
    /// `--state-dir`.
    pub state_dir: Option<std::path::PathBuf>,
    /// `--alerts-only`: standard output takes alerts and the agent's health events, no
    /// telemetry.
    pub alerts_only: bool,
    /// `--text`: standard output writes one readable line per event.
    pub text: bool,
}

impl Overrides {
    /// Applies the command line on top of a config.
    pub fn apply(&self, config: &mut Config) {
        if let Some(i) = self.interval {
            config.agent.interval = i;
            config.origins.interval = Some(crate::config::Location::option("--interval"));
        }
        if let Some(h) = self.heartbeat {
            config.agent.heartbeat = h;
        }
        if let Some(baseline) = self.baseline {
            config.agent.baseline = baseline;
        }
        if !self.rules.is_empty() {
            config.rules.selection.paths = self.rules.clone();
            config.origins.rules_paths = Some(crate::config::Location::option("--rules"));
        }
        if self.no_builtin_rules {
            config.rules.selection.builtin = false;
        }
        if self.no_exec_checks {
            config.agent.exec_checks = false;
        }
        for sink in &mut config.sinks {
            let crate::sinks::SinkConfig::Stdout(stdout) = sink else { continue };
            if self.alerts_only {
                let floor = stdout.min_severity.unwrap_or_default().0.max(1);
                stdout.min_severity = Some(crate::sinks::MinSeverity(floor));
            }
            if self.text {
                stdout.format = crate::sinks::StdoutFormat::Text;
            }
        }
        if let Some(dir) = &self.state_dir {
            config.agent.state_dir = dir.clone();
            config.origins.state_dir = Some(crate::config::Location::option("--state-dir"));
        }
    }
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The settings cannot work (a sink that cannot open, an interval the watchdog would not
    /// survive, a metrics address taken).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The scanner could not start.
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    /// A sink could not be opened.
    #[error(transparent)]
    Sink(#[from] crate::sinks::SinkError),
    /// The rules have errors and no good set was kept to fall back on.
    #[error(transparent)]
    Rules(#[from] detection::RulesUnusable),
    /// Signal handlers or threads could not be set up.
    #[error("setting up the agent: {0}")]
    Setup(#[from] std::io::Error),
    /// Standard output, the only sink, was closed: nothing receives the agent's events.
    #[error("standard output closed, and it was the only sink: stopped")]
    OutputClosed,
}

/// The stop reason when the only sink's destination is gone for good.
const OUTPUT_CLOSED: &str = "output closed";

enum Control {
    Stop(&'static str),
    /// SIGHUP: config and rules.
    Reload,
    /// A rule file changed.
    ReloadRules,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(options: RunOptions) -> Result<(), RunError> {
    let problems = preflight::to_run(&options.config, preflight::watchdog());
    if !problems.is_empty() {
        return Err(Refused(problems).into());
    }
    // Held open until the agent exits: a detached procfs lives as long as its fd.
    let proc_view = private_procfs::private_procfs();
    tune_malloc();
    let mut scanner = Scanner::with_proc_root(&proc_view.root())?;
    // A background agent stays on one core by default (DESIGN §9).
    scanner.set_threads(options.config.agent.scan_threads);
    scanner.set_namespace_budget(namespace_budget(options.config.agent.interval));
    scanner.set_container_sources(options.config.containers.clone());
    let (control_tx, control) = bounded(16);
    signals(control_tx.clone())?;
    let host = host::identity();
    // Watching before the rules load: a change made while they load still brings a reload.
    let (watcher, watch_failed) = watch_rules(&options.config.rules, &control_tx);
    let (detection, mut notices) = detection::Detection::start(&options.config, &host)?;
    notices.extend(watch_failed);
    notices.extend(proc_view.notice());
    let (host_name, host_id) = (host.name.clone(), host.id.clone());
    let encoder = Encoder::new(host, Redactor::with_patterns(&options.config.redact_patterns));

    let (closed_tx, closed) = bounded(4);
    let sink_context = SinkContext {
        reopen: Arc::new(AtomicU64::new(0)),
        stopping: Arc::new(std::sync::OnceLock::new()),
        host_name,
        host_id,
        closed: closed_tx,
    };
    let running = Arc::new(RunningSinks::default());
    let mut ports = Vec::new();
    for config in &options.config.sinks {
        ports.extend(running.spawn(config, options.config.agent.queue_capacity, &sink_context)?);
    }
    // Each message pins two snapshots: keep the hand-over short (see the scan loop).
    let (to_router, messages) = bounded::<Message>(2);
    let router = std::thread::Builder::new()
        .name("router".into())
        .spawn(move || router::route(messages, encoder, ports))?;

    let facts = Arc::new(std::sync::Mutex::new(metrics::ScanFacts::default()));
    let stop_metrics = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let metrics_thread = match options.config.metrics_listen {
        Some(listen) => {
            let status = status_server::Status { facts: facts.clone(), sinks: running.clone() };
            let serving = status_server::serve(listen, status, stop_metrics.clone());
            Some(serving.map_err(|e| {
                Refused(vec![Problem {
                    at: options.config.origins.metrics_listen.clone(),
                    message: format!("metrics: cannot listen on {listen}: {e}"),
                }])
            })?)
        }
        None => None,
    };
    let systemd = systemd::Systemd::new(scanner.progress());
    let exec_checks = exec_checks::ExecChecks::start(options.config.agent.exec_checks.then(|| {
        // One reads processes as they execute, the other completes the looks.
        Ok((scanner.examiner()?, scanner.examiner()?))
    }));
    let destroys = socket_destroys::SocketDestroyWatch::start(
        options.config.agent.short_lived,
        proc_view.root(),
    );
    let context = LoopContext {
        to_router: &to_router,
        control: &control,
        control_tx: &control_tx,
        sinks: &sink_context,
        systemd: &systemd,
        facts: &facts,
        running: &running,
        exec_checks: &exec_checks,
        destroys: &destroys,
        closed: &closed,
    };
    let stop_reason =
        scan_loop::ScanLoop::new(&context, &options, &mut scanner, detection, watcher)
            .run(notices, proc_view.describe());
    systemd.stopping();
    // Sinks that retry a dead receiver get their grace from now on, not forever.
    let _ = sink_context.stopping.set(std::time::Instant::now());

    let _ = to_router.send(Message::Lifecycle {
        action: "agent_stopping",
        kind: EventKind::Event,
        at_ms: now_ms(),
        fields: json!({"reason": stop_reason}),
        with_sinks: true,
    });
    drop(to_router);
    let stats = router.join().unwrap_or_default();
    running.join_all();
    stop_metrics.store(true, Ordering::Relaxed);
    if let Some(thread) = metrics_thread {
        let _ = thread.join();
    }
    // Everything is drained: the last word on what each sink got, for the journal and for tests.
    let counts: Vec<_> = stats.iter().map(|(name, s)| s.counts(name)).collect();
    eprintln!("{}", json!({"sockwatch": "stopped", "reason": stop_reason, "sinks": counts}));
    match stop_reason {
        OUTPUT_CLOSED => Err(RunError::OutputClosed),
        _ => Ok(()),
    }
}

/// Half the interval for reading foreign namespaces that may have changed, a tenth for reading
/// the others again: under a flood of namespaces, scans keep their pace and the reads go
/// round-robin (DESIGN §9). At least 100 and 20 ms, so that a short interval still reads a few
/// namespaces per scan.
pub(crate) fn namespace_budget(interval: Duration) -> crate::scan::NamespaceBudget {
    crate::scan::NamespaceBudget {
        changed: (interval / 2).max(Duration::from_millis(100)),
        unchanged: (interval / 10).max(Duration::from_millis(20)),
    }
}

/// Two glibc allocator settings that keep resident memory near what is live:
/// - glibc gives threads their own arenas (up to 8 per core) and keeps freed memory in each: with
///   a scan table built on one thread and freed on another every second, resident memory grew
///   with the arena count. Two arenas are enough.
/// - Each scan builds its tables (megabytes of sockets and fds) while the previous scan's are
///   still held for the diff. glibc's mmap threshold rises to the size of any mapped block freed,
///   so from the second scan on those tables came from the heap, whose top could not shrink past
///   the older ones: the high-water mark sat 13 MiB above the live peak at 2000 processes / 50k
///   sockets. A fixed threshold keeps large tables in their own mappings, returned when freed.
///   4 MiB: the tables of a large host are above it (bench/steady.py's peak RSS at 2000/50k:
///   63 → 49 MiB), while a small host's allocations stay on the heap as before (1 MiB saved
///   2 MiB more there, for page faults on every tick).
fn tune_malloc() {
    const LARGE_BLOCK: libc::c_int = 4 << 20;
    // SAFETY: mallopt only sets an allocator parameter; called before the agent's threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BLOCK);
    }
}

/// SIGTERM and SIGINT stop the agent; SIGHUP reopens file sinks and re-reads config and rules.
fn signals(tx: crossbeam_channel::Sender<Control>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            let message = match signal {
                SIGTERM => Control::Stop("SIGTERM"),
                SIGINT => Control::Stop("SIGINT"),
                SIGHUP => Control::Reload,
                _ => continue,
            };
            if tx.send(message).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the scan loop talks to.
struct LoopContext<'a> {
    to_router: &'a crossbeam_channel::Sender<Message>,
    control: &'a Receiver<Control>,
    control_tx: &'a crossbeam_channel::Sender<Control>,
    sinks: &'a SinkContext,
    systemd: &'a systemd::Systemd,
    facts: &'a std::sync::Mutex<metrics::ScanFacts>,
    running: &'a RunningSinks,
    exec_checks: &'a exec_checks::ExecChecks,
    destroys: &'a socket_destroys::SocketDestroyWatch,
    /// Sinks whose destination is gone for good.
    closed: &'a Receiver<String>,
}

/// Events someone has to look at also go to stderr, which systemd keeps in the journal whatever
/// the sinks are.
fn to_the_journal(action: &str, fields: &Value) {
    if crate::event::health::goes_to_the_journal(action) {
        eprintln!("{}", json!({"sockwatch": action, "details": fields}));
    }
}

/// Sends a lifecycle event from the scan thread (rare: reloads, start-up notices).
fn notice(to_router: &crossbeam_channel::Sender<Message>, action: &'static str, fields: Value) {
    to_the_journal(action, &fields);
    let _ = to_router.send(Message::Lifecycle {
        action,
        kind: EventKind::Event,
        at_ms: now_ms(),
        fields,
        with_sinks: false,
    });
}

/// What running without CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH hides, said once at start: other
/// users' fds and namespaces cannot be read, so their shells cannot be seen (every scan counts
/// them as `processes_denied`). CAP_SYS_ADMIN is optional (other namespaces fall back to text
/// tables) and not reported here.
fn missing_privileges(privileges: crate::model::Privileges) -> Option<Value> {
    let mut missing = Vec::new();
    if !privileges.sys_ptrace {
        missing.push("CAP_SYS_PTRACE");
    }
    if !privileges.dac_read_search {
        missing.push("CAP_DAC_READ_SEARCH");
    }
    (!missing.is_empty()).then(|| {
        json!({
            "missing": missing,
            "effect": "other users' fds and namespaces are unreadable: their processes are \
                       counted as processes_denied in every heartbeat, not inspected",
        })
    })
}

/// Starts the rule-file watcher when asked for (there is nothing to watch for the built-in
/// pack). A watcher that cannot start comes back as a notice to report; SIGHUP still reloads.
fn watch_rules(
    rules: &RulesConfig,
    control: &crossbeam_channel::Sender<Control>,
) -> (Option<notify::RecommendedWatcher>, Option<detection::Notice>) {
    let paths = &rules.selection.paths;
    if !rules.watch || paths.is_empty() {
        return (None, None);
    }
    match detection::watch(paths, control.clone()) {
        Ok(watcher) => (Some(watcher), None),
        Err(e) => (None, Some(("rules_watch_failed", json!({"error": e.to_string()})))),
    }
}
