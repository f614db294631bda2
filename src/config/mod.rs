//! The config file: `sockwatch.toml` plus drop-ins in `conf.d/*.toml` beside it, merged in name
//! order so local settings survive package upgrades. Each file is parsed on its own (unknown keys
//! are errors at every level), so every error names its file, line and column; a later file
//! overrides earlier values key by key, and a `[[sinks]]` list replaces the earlier list whole.
//! Components own their config types (`sinks::SinkConfig`); this module assembles them.

mod location;

pub use location::{Location, Origins};

use crate::event::ArgPattern;
use crate::model::{Bounded, Family, Interval};
use crate::sinks::SinkConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The documented default configuration, compiled in: what `sockwatch run` uses with no
/// `--config`, and the file packages install.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/sockwatch.toml");

/// A config error, located.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// The file (or `<embedded>`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// The agent's settings after merging every file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Scan and event settings.
    pub agent: AgentConfig,
    /// Extra argv redaction patterns (`[events] redact_patterns`), on top of the built-in ones.
    pub redact_patterns: Vec<ArgPattern>,
    /// Socket families reported (`[events] socket_families`); all when empty.
    pub socket_families: Vec<Family>,
    /// Report sockets no process holds (`[events] holderless`).
    pub holderless: bool,
    /// `[metrics] listen`: where to serve Prometheus metrics (off when absent).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Detection rules.
    pub rules: RulesConfig,
    /// Where events go.
    pub sinks: Vec<SinkConfig>,
    /// Where the container runtimes keep their state (`[containers]`).
    pub containers: crate::model::ContainerSources,
    /// Where the settings checked before running were written.
    pub origins: Origins,
}

/// `[agent]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// Time between scans.
    pub interval: Duration,
    /// Time between heartbeat events.
    pub heartbeat: Duration,
    /// What of the sockets open at the first scan is reported (`existing_socket` state and a
    /// `baseline_summary`).
    pub baseline: crate::model::Baseline,
    /// Events each sink may have waiting before new telemetry is dropped (and counted); alerts
    /// wait aside.
    pub queue_capacity: usize,
    /// Threads for reading processes (1 keeps the agent on one core).
    pub scan_threads: usize,
    /// Where open incidents and the last good rule set are kept across restarts.
    pub state_dir: PathBuf,
    /// Look at each process as it executes, between scans (the kernel's process connector;
    /// needs CAP_NET_ADMIN).
    pub exec_checks: bool,
    /// The least time between the start of one scan and one brought forward because execs
    /// went unlooked at.
    pub exec_scan_min_gap: Duration,
    /// Report connections that opened and closed between two scans (sock_diag's destroy
    /// notices; needs CAP_NET_ADMIN).
    pub short_lived: bool,
}

/// `[rules]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RulesConfig {
    /// The built-in pack (unless `builtin = false`) and local files after it.
    pub selection: crate::rules::Selection,
    /// Reload when a rule file changes (as well as on SIGHUP).
    pub watch: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    agent: Option<AgentFile>,
    events: Option<EventsFile>,
    metrics: Option<MetricsFile>,
    rules: Option<RulesFile>,
    sinks: Option<Vec<Spanned<SinkConfig>>>,
    containers: Option<ContainersFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainersFile {
    containerd: Option<Vec<PathBuf>>,
    docker: Option<Vec<PathBuf>>,
    containers_storage: Option<Vec<PathBuf>>,
    machines: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    paths: Option<Spanned<Vec<PathBuf>>>,
    builtin: Option<bool>,
    allow_none: Option<bool>,
    watch: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    listen: Option<Spanned<LoopbackAddr>>,
}

/// A socket address on loopback: metrics say a lot about the host and carry no authentication.
#[derive(Debug, Clone, Copy)]
struct LoopbackAddr(std::net::SocketAddr);

impl<'de> Deserialize<'de> for LoopbackAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let addr: std::net::SocketAddr = text
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an address:port")))?;
        if !addr.ip().is_loopback() {
            return Err(serde::de::Error::custom(format!("{text:?} is not a loopback address")));
        }
        Ok(LoopbackAddr(addr))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsFile {
    redact_patterns: Option<Vec<ArgPattern>>,
    socket_families: Option<Vec<Family>>,
    holderless: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    interval: Option<Spanned<Interval>>,
    heartbeat: Option<Interval>,
    baseline: Option<crate::model::Baseline>,
    queue_capacity: Option<Bounded<1, 10_000_000>>,
    scan_threads: Option<Bounded<1, 64>>,
    state_dir: Option<Spanned<PathBuf>>,
    // 0.2.0 named them after what they did then: scan after an exec.
    #[serde(alias = "exec_trigger")]
    exec_checks: Option<bool>,
    #[serde(alias = "exec_trigger_min_gap")]
    exec_scan_min_gap: Option<Interval>,
    short_lived: Option<bool>,
}

impl Config {
    /// The embedded defaults.
    pub fn embedded() -> Result<Config, ConfigError> {
        Self::from_files(&[("<embedded>".to_string(), EMBEDDED_DEFAULT.to_string())])
    }

    /// Loads `path` and the drop-ins in `conf.d/` beside it (`*.toml`, in name order), on top of
    /// the embedded defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut files = vec![("<embedded>".to_string(), EMBEDDED_DEFAULT.to_string())];
        files.push((path.display().to_string(), read(path)?));
        for drop_in in drop_ins(path)? {
            let text = read(&drop_in)?;
            files.push((drop_in.display().to_string(), text));
        }
        Self::from_files(&files)
    }

    /// Merges (name, text) files in order.
    pub fn from_files(files: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut config = Config {
            agent: AgentConfig {
                interval: Duration::from_secs(1),
                heartbeat: Duration::from_secs(60),
                baseline: crate::model::Baseline::Summary,
                queue_capacity: 65_536,
                scan_threads: 1,
                state_dir: PathBuf::from("/var/lib/sockwatch"),
                exec_checks: true,
                exec_scan_min_gap: Duration::from_millis(250),
                short_lived: true,
            },
            redact_patterns: Vec::new(),
            socket_families: Vec::new(),
            holderless: false,
            metrics_listen: None,
            rules: RulesConfig { selection: Default::default(), watch: true },
            sinks: Vec::new(),
            containers: crate::model::ContainerSources::default(),
            origins: Origins::default(),
        };
        for (name, text) in files {
            let file: ConfigFile = toml::from_str(text).map_err(|e| located(name, text, &e))?;
            let at = |span: std::ops::Range<usize>| Location::in_text(name, text, span.start);
            if let Some(agent) = file.agent {
                let a = &mut config.agent;
                if let Some(interval) = agent.interval {
                    config.origins.interval = Some(at(interval.span()));
                    a.interval = interval.into_inner().0;
                }
                a.heartbeat = agent.heartbeat.map_or(a.heartbeat, |i| i.0);
                a.baseline = agent.baseline.unwrap_or(a.baseline);
                a.queue_capacity = agent.queue_capacity.map_or(a.queue_capacity, |q| q.0);
                a.scan_threads = agent.scan_threads.map_or(a.scan_threads, |t| t.0);
                if let Some(dir) = agent.state_dir {
                    config.origins.state_dir = Some(at(dir.span()));
                    a.state_dir = dir.into_inner();
                }
                a.exec_checks = agent.exec_checks.unwrap_or(a.exec_checks);
                a.exec_scan_min_gap = agent.exec_scan_min_gap.map_or(a.exec_scan_min_gap, |i| i.0);
                a.short_lived = agent.short_lived.unwrap_or(a.short_lived);
            }
            if let Some(rules) = file.rules {
                let selection = &mut config.rules.selection;
                if let Some(paths) = rules.paths {
                    config.origins.rules_paths = Some(at(paths.span()));
                    selection.paths = paths.into_inner();
                }
                selection.builtin = rules.builtin.unwrap_or(selection.builtin);
                selection.allow_none = rules.allow_none.unwrap_or(selection.allow_none);
                config.rules.watch = rules.watch.unwrap_or(config.rules.watch);
            }
            if let Some(events) = file.events {
                if let Some(patterns) = events.redact_patterns {
                    config.redact_patterns = patterns;
                }
                if let Some(families) = events.socket_families {
                    config.socket_families = families;
                }
                config.holderless = events.holderless.unwrap_or(config.holderless);
            }
            if let Some(listen) = file.metrics.and_then(|m| m.listen) {
                config.origins.metrics_listen = Some(at(listen.span()));
                config.metrics_listen = Some(listen.into_inner().0);
            }
            if let Some(containers) = file.containers {
                let c = &mut config.containers;
                c.containerd = containers.containerd.unwrap_or(std::mem::take(&mut c.containerd));
                c.docker = containers.docker.unwrap_or(std::mem::take(&mut c.docker));
                c.containers_storage = containers
                    .containers_storage
                    .unwrap_or(std::mem::take(&mut c.containers_storage));
                // An empty path turns machined's records off.
                if let Some(machines) = containers.machines {
                    c.machines = (!machines.as_os_str().is_empty()).then_some(machines);
                }
            }
            if let Some(sinks) = file.sinks {
                config.origins.sinks = sinks.iter().map(|s| at(s.span())).collect();
                config.sinks = sinks.into_iter().map(Spanned::into_inner).collect();
            }
        }
        shared_spools(&config.sinks, &config.origins.sinks)?;
        Ok(config)
    }
}

/// Two sinks spooling to one directory would read each other's events: refused, at the second
/// one's `[[sinks]]`.
fn shared_spools(sinks: &[SinkConfig], origins: &[Location]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (sink, origin) in sinks.iter().zip(origins) {
        for dir in sink.spool_dirs() {
            if !seen.insert(dir.clone()) {
                return Err(origin.error(format!(
                    "sink {} spools to {}, which another sink already uses",
                    sink.name(),
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 1,
        column: 1,
        message: format!("cannot read: {e}"),
    })
}

/// `conf.d/*.toml` beside `path`, sorted by name; none when the directory does not exist.
fn drop_ins(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = path.parent().unwrap_or(Path::new(".")).join("conf.d");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            let file = dir.display().to_string();
            return Err(ConfigError {
                file,
                line: 1,
                column: 1,
                message: format!("cannot read: {e}"),
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Turns a TOML error's byte span into line and column.
fn located(file: &str, text: &str, error: &toml::de::Error) -> ConfigError {
    Location::in_text(file, text, offset(text, error, true)).error(error.message().trim())
}

/// Where in `text` the error is. Errors inside a `[[sinks]]` table come from a tagged enum,
/// which serde reads without positions: the span is the whole table. The table is then read
/// again as its own type, which keeps them; an unknown key is found by name.
fn offset(text: &str, error: &toml::de::Error, in_sinks: bool) -> usize {
    let span = error.span().unwrap_or(0..0);
    let (start, end) = (span.start.min(text.len()), span.end.min(text.len()));
    // The table runs from its header to the next header line.
    let table_end =
        text[end..].match_indices("\n[").next().map_or(text.len(), |(at, _)| end + at + 1);
    let table = &text[start..table_end];
    if in_sinks && table.starts_with("[[sinks]]") {
        // The span is the list's first header, whichever table failed: the first table that
        // fails on its own is the one.
        let mut headers: Vec<usize> = text.match_indices("\n[").map(|(at, _)| at + 1).collect();
        headers.insert(0, 0);
        headers.push(text.len());
        for pair in headers.windows(2) {
            let one = &text[pair[0]..pair[1]];
            if one.starts_with("[[sinks]]")
                && let Some(inner) = sink_table_error(one)
            {
                return pair[0] + offset(one, &inner, false);
            }
        }
    }
    let unknown_key = error
        .message()
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(key, _)| key);
    unknown_key.and_then(|key| key_offset(table, key)).map_or(start, |at| start + at)
}

/// The error of one `[[sinks]]` table read as the config type its `type` names, with the `type`
/// line blanked out (offsets unchanged). `None` when the type itself is what is wrong.
fn sink_table_error(table: &str) -> Option<toml::de::Error> {
    use crate::sinks::{
        FileSinkConfig, HttpSinkConfig, KafkaSinkConfig, OtlpSinkConfig, StdoutSinkConfig,
    };
    #[derive(Deserialize)]
    struct One<T> {
        #[allow(dead_code)] // read only for its errors
        sinks: Vec<T>,
    }
    fn error_of<T: serde::de::DeserializeOwned>(text: &str) -> Option<toml::de::Error> {
        toml::from_str::<One<T>>(text).err()
    }
    let at = key_offset(table, "type")?;
    let line_end = table[at..].find('\n').map_or(table.len(), |n| at + n);
    let kind = toml::from_str::<toml::Table>(&table[at..line_end]).ok()?;
    let mut blanked = table.to_string();
    blanked.replace_range(at..line_end, &" ".repeat(line_end - at));
    match kind.get("type")?.as_str()? {
        "stdout" => error_of::<StdoutSinkConfig>(&blanked),
        "file" => error_of::<FileSinkConfig>(&blanked),
        "http" => error_of::<HttpSinkConfig>(&blanked),
        "otlp" => error_of::<OtlpSinkConfig>(&blanked),
        "kafka" => error_of::<KafkaSinkConfig>(&blanked),
        _ => None,
    }
}

/// Where a line of `table` sets `key` (`key =` at the start of a line).
fn key_offset(table: &str, key: &str) -> Option<usize> {
    let mut at = 0;
    for line in table.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(at + (line.len() - trimmed.len()));
        }
        at += line.len();
    }
    None
}

#[cfg(test)]
mod tests;
