//! What the agent refuses to run with, found before it runs: `sockwatch config check` asks all of
//! it, `run` and a reload the part they would otherwise meet half-started. Each problem names the
//! setting's file, line and column, so that the journal's one line says what to fix; the unit
//! does not restart on them (exit 78), as no restart would fix a setting.

use crate::config::{Config, Location};
use crate::rules::RuleSet;
use std::net::SocketAddr;
use std::time::Duration;

/// One setting the agent cannot run with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where it was set (none for a built-in default).
    pub at: Option<Location>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Refused(pub Vec<Problem>);

/// The systemd watchdog the agent runs under, if any (`WATCHDOG_USEC`).
pub fn watchdog() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// What `run` refuses: an interval the watchdog would not survive, a state directory another
/// user could write in, sinks that cannot open. (Rule files are not among them: a running agent with a kept last good set reports
/// broken files and goes on; see `detection`.)
pub fn to_run(config: &Config, watchdog: Option<Duration>) -> Vec<Problem> {
    let mut problems: Vec<Problem> = timing(config, watchdog).into_iter().collect();
    // One that cannot be written is an outage the agent reports and survives (state_unavailable);
    // one another user could write in is a setting to fix.
    if let Err(why) = crate::files::check(&config.agent.state_dir) {
        problems.push(Problem {
            at: config.origins.state_dir.clone(),
            message: format!("state_dir: {why}"),
        });
    }
    for (i, sink) in config.sinks.iter().enumerate() {
        if let Err(message) = sink.check() {
            problems.push(Problem {
                at: config.origins.sinks.get(i).cloned(),
                message: format!("sink {}: {message}", sink.name()),
            });
        }
    }
    problems
}

/// An interval too long for the watchdog (a reload checks this; new sinks are checked as they
/// open).
pub fn timing(config: &Config, watchdog: Option<Duration>) -> Option<Problem> {
    if let Some(watchdog) = watchdog {
        // The agent pings after each completed scan: a scan's own time must fit in as well.
        let most = watchdog / 2;
        if config.agent.interval > most {
            return Some(Problem {
                at: config.origins.interval.clone(),
                message: format!(
                    "interval {} leaves a scan no time within the service's watchdog of {} \
                     (WatchdogSec): at most {}",
                    humantime::format_duration(config.agent.interval),
                    humantime::format_duration(watchdog),
                    humantime::format_duration(most),
                ),
            });
        }
    }
    None
}

/// Everything the agent would refuse, also what `run` meets only as it starts: rule files that
/// are missing or do not compile, and a metrics address it cannot listen on. Side-effect free
/// (the address is bound and released at once; an agent already listening there is no problem).
pub fn all(config: &Config, watchdog: Option<Duration>) -> Vec<Problem> {
    let mut problems = to_run(config, watchdog);
    if let Some(listen) = config.metrics_listen
        && let Err(message) = bindable(listen)
    {
        problems.push(Problem { at: config.origins.metrics_listen.clone(), message });
    }
    let selection = &config.rules.selection;
    if let Err(errors) = RuleSet::load(selection) {
        problems.extend(errors.0.into_iter().map(|e| {
            // A missing rule path is located in the config that names it, as well.
            let configured = selection.paths.iter().any(|p| p.as_os_str() == e.file.as_str());
            let message = match (&e.context, &config.origins.rules_paths) {
                (Some(context), _) => format!("{context}: {}", e.message),
                (None, Some(paths)) if configured => {
                    format!("{} (rules paths set at {paths})", e.message)
                }
                (None, _) => e.message,
            };
            Problem { at: Some(Location { file: e.file, line: e.line, column: e.column }), message }
        }));
    }
    problems
}

/// The agent could listen on `addr`: it is free, or a running sockwatch already listens there
/// (the check made by `systemctl reload` meets the agent's own listener).
fn bindable(addr: SocketAddr) -> Result<(), String> {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && agent_listens_on(addr) => Ok(()),
        Err(e) => Err(format!("metrics: cannot listen on {addr}: {e}")),
    }
}

/// A process running this program (or the file it replaced, after an upgrade) holds the
/// listening TCP socket bound to `addr`.
fn agent_listens_on(addr: SocketAddr) -> bool {
    use crate::model::{Protocol, SocketState};
    use std::os::unix::fs::MetadataExt;
    let Ok(own) = std::fs::metadata("/proc/self/exe") else { return false };
    let own_path = std::fs::read_link("/proc/self/exe").ok();
    let Ok(mut scanner) = crate::scan::Scanner::new() else { return false };
    let snapshot = scanner.scan();
    let ours = |pid: i32| {
        snapshot.processes.iter().filter(|p| p.key.pid == pid).any(|p| {
            p.exe.as_ref().is_some_and(|exe| {
                let same_file = (exe.dev, exe.ino) == (own.dev(), own.ino());
                let text = String::from_utf8_lossy(exe.path.as_bytes());
                let replaced = exe.deleted
                    && own_path
                        .as_ref()
                        .is_some_and(|own| text.strip_suffix(" (deleted)") == own.to_str());
                same_file || replaced
            })
        })
    };
    snapshot.sockets.iter().any(|s| {
        s.protocol == Protocol::Tcp
            && s.state == SocketState::Listen
            && s.local.as_ref().is_some_and(|l| l.addr == addr.ip() && l.port == addr.port())
            && s.holders.iter().any(|h| ours(h.proc.pid))
    })
}
