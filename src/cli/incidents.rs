//! `sockwatch incidents`: the open incidents the agent keeps in its state directory, for a
//! responder at a terminal (age, rules, process and user, endpoint) or a script (`--format
//! json`). It reads the file the agent writes atomically; it never writes.

use super::CliError;
use crate::config::Config;
use crate::model::{Alert, Endpoint};
use crate::rules::StateDir;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum Format {
    /// Aligned columns, fitted to the terminal.
    Table,
    /// One JSON array of incidents.
    Json,
}

#[derive(Debug, clap::Args)]
pub(super) struct IncidentsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The agent's state directory; by default the one its config names.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The agent's config file, for its state directory; the embedded defaults when absent.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

const HEADERS: [&str; 8] =
    ["AGE", "SEVERITY", "PROCESS", "USER", "CONTAINER", "ENDPOINT", "RULES", "INCIDENT"];

pub(super) fn run(args: &IncidentsArgs) -> Result<(), CliError> {
    let path = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => match &args.config {
            Some(file) => Config::load(file)?.agent.state_dir,
            None => Config::embedded()?.agent.state_dir,
        },
    };
    let unreadable = |why: String| CliError::State(format!("{}: {why}", path.display()));
    if !path.is_dir() {
        return Err(unreadable("no state directory (is the agent running here?)".into()));
    }
    let state = StateDir::open(&path).map_err(|e| unreadable(e.to_string()))?;
    let saved = state.incidents().map_err(unreadable)?.unwrap_or_default();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    // Incidents of another boot are over: their sockets went with it (the agent resolves them
    // when it starts).
    let current = saved.boot_id.is_empty() || saved.boot_id == boot.trim();
    let mut alerts: Vec<&Alert> = match current {
        true => saved.incidents.iter().map(|i| &i.last).collect(),
        false => Vec::new(),
    };
    alerts.sort_by_key(|a| std::cmp::Reverse((a.severity, a.opened_at_ms)));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let list: Vec<Value> = alerts.iter().map(|a| describe(a, now_ms)).collect();
            serde_json::to_writer_pretty(&mut out, &list).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = alerts.iter().map(|a| row(a, now_ms)).collect();
            super::table::write(&mut out, &HEADERS, &rows, super::table::terminal_width())?;
        }
    }
    Ok(())
}

/// `bash[4242]`.
fn process(alert: &Alert) -> String {
    match &alert.subject {
        Some(p) => format!("{}[{}]", p.comm.escape_visible(), p.key.pid),
        None => "-".into(),
    }
}

/// The user's name where the alert's context gave one, else the uid.
fn user(alert: &Alert) -> String {
    let Some(subject) = &alert.subject else { return "-".into() };
    let context = alert.context.iter().find(|c| c.key == subject.key);
    match context.and_then(|c| c.user_name.as_ref()) {
        Some(name) => name.escape_visible(),
        None => subject.euid.to_string(),
    }
}

fn endpoint(alert: &Alert) -> String {
    let show = |e: Endpoint| match e.addr {
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", e.port),
        ip => format!("{ip}:{}", e.port),
    };
    let socket = &alert.socket;
    let remote = socket.remote.filter(|r| r.port != 0 || !r.addr.is_unspecified());
    match (remote, socket.local) {
        (Some(remote), _) => format!("{} {}", socket.protocol.name(), show(remote)),
        (None, Some(local)) => format!("{} {} (local)", socket.protocol.name(), show(local)),
        (None, None) => socket.protocol.name().to_string(),
    }
}

/// `3d4h`, `12m`, `40s`.
fn age(opened_at_ms: u64, now_ms: u64) -> String {
    if opened_at_ms == 0 {
        return "?".into();
    }
    let s = now_ms.saturating_sub(opened_at_ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

fn row(alert: &Alert, now_ms: u64) -> Vec<String> {
    let rules: Vec<&str> = alert.rules.iter().map(|r| r.id.as_str()).collect();
    vec![
        age(alert.opened_at_ms, now_ms),
        alert.severity.name().into(),
        process(alert),
        user(alert),
        super::container::label(alert.subject.as_ref()),
        endpoint(alert),
        rules.join(","),
        alert.incident_id.clone(),
    ]
}

fn describe(alert: &Alert, now_ms: u64) -> Value {
    let subject = alert.subject.as_ref();
    let mut incident = json!({
        "id": alert.incident_id,
        "severity": alert.severity.name(),
        "age_seconds": now_ms.saturating_sub(alert.opened_at_ms) / 1000,
        "rules": alert.rules.iter().map(|r| &r.id).collect::<Vec<_>>(),
        "message": alert.rules.iter().max_by_key(|r| r.severity).map(|r| &r.message),
        "endpoint": endpoint(alert),
        "opened_by": if alert.seen_by_look { "exec_check" } else { "scan" },
        "process": subject.map(|p| json!({
            "pid": p.key.pid,
            "name": p.comm.escape_visible(),
            "executable": p.exe.as_ref().map(|e| e.path.escape_visible()),
        })),
        "user": {"id": subject.map(|p| p.euid), "name": user(alert)},
        "container": super::container::describe(subject),
    });
    if alert.opened_at_ms != 0 {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(alert.opened_at_ms);
        incident["opened_at"] = json!(humantime::format_rfc3339_millis(at).to_string());
    }
    incident
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_read_at_a_glance() {
        let now = 10 * 86_400_000;
        assert_eq!(age(now - 40_000, now), "40s");
        assert_eq!(age(now - 12 * 60_000, now), "12m");
        assert_eq!(age(now - (3 * 3600 + 5 * 60) * 1000, now), "3h5m");
        assert_eq!(age(now - (2 * 86400 + 4 * 3600) * 1000, now), "2d4h");
        assert_eq!(age(0, now), "?");
    }
}
