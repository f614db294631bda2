//! ECS `message`: one human line per event, for a terminal, a pager's notification or a SIEM's
//! list view. Built from the encoded event itself, so it says nothing the fields do not (and
//! every string in it was escaped on the way into them).

use serde_json::Value;

/// The message of an event without one of its own (alerts bring their rule's).
pub(super) fn message(event: &Value, action: &str) -> String {
    match action {
        "process_exec" => format!("{} executed a new program", process(event)),
        "existing_socket"
        | "socket_opened"
        | "socket_closed"
        | "socket_state_changed"
        | "socket_holders_changed"
        | "socket_short_lived"
        | "socket_unheld" => socket(event, action),
        "agent_started" => {
            let interval = event["sockwatch"]["interval_ms"].as_u64().unwrap_or(0);
            let version = event["agent"]["version"].as_str().unwrap_or("?");
            format!("sockwatch {version} started: scanning every {interval} ms")
        }
        "baseline_summary" => {
            let s = &event["sockwatch"];
            format!(
                "sockwatch baseline: {} sockets open at start ({} listed one by one), {} processes",
                s["sockets"].as_u64().unwrap_or(0),
                s["listed"].as_u64().unwrap_or(0),
                s["processes"].as_u64().unwrap_or(0),
            )
        }
        "heartbeat" => {
            let s = &event["sockwatch"];
            format!(
                "sockwatch heartbeat: {} processes, {} sockets, last scan {} ms",
                s["processes"].as_u64().unwrap_or(0),
                s["sockets"].as_u64().unwrap_or(0),
                s["last_scan_duration_ms"].as_u64().unwrap_or(0),
            )
        }
        _ => lifecycle(event, action),
    }
}

/// One line for a terminal: time, severity, action and message, and for an alert its rules and
/// incident. Every character that could mislead a terminal is escaped.
pub fn terminal_line(event: &Value) -> String {
    let at = event["@timestamp"].as_str().unwrap_or("-");
    let severity = match event["event"]["severity"].as_u64().unwrap_or(0) {
        1 => "info",
        2 => "low",
        3 => "medium",
        4 => "high",
        5 => "critical",
        _ => "-",
    };
    let action = event["event"]["action"].as_str().unwrap_or("?");
    let mut line =
        format!("{at} {severity:<8} {action}: {}", event["message"].as_str().unwrap_or(""));
    if let Some(rules) = event["rule"]["id"].as_array() {
        let ids: Vec<&str> = rules.iter().filter_map(Value::as_str).collect();
        line.push_str(&format!(" [{}]", ids.join(", ")));
    }
    if let Some(id) = event["sockwatch"]["incident"]["id"].as_str() {
        line.push_str(&format!(" incident {id}"));
    }
    crate::model::escape_visible(line.as_bytes())
}

/// `bash (pid 42, uid 1000)`.
fn process(event: &Value) -> String {
    let p = &event["process"];
    match (p["name"].as_str(), p["pid"].as_i64()) {
        (Some(name), Some(pid)) => match p["user"]["id"].as_str() {
            Some(uid) => format!("{name} (pid {pid}, uid {uid})"),
            None => format!("{name} (pid {pid})"),
        },
        _ => "no process".to_string(),
    }
}

fn socket(event: &Value, action: &str) -> String {
    let socket = &event["sockwatch"]["socket"];
    let protocol = socket["protocol"].as_str().unwrap_or("socket");
    let state = socket["state"].as_str().unwrap_or("?");
    let what = match action {
        "existing_socket" => "open when the agent started".to_string(),
        "socket_state_changed" => {
            let before = socket["previous_state"].as_str().unwrap_or("?");
            format!("went from {before} to {state}")
        }
        "socket_holders_changed" => "changed holders".to_string(),
        "socket_short_lived" => "opened and closed between two scans".to_string(),
        "socket_unheld" => "is held by no process".to_string(),
        other => other.strip_prefix("socket_").unwrap_or(other).to_string(),
    };
    let endpoint = |side: &str| {
        let e = &event[side];
        match (e["ip"].as_str(), e["port"].as_u64()) {
            (Some(ip), Some(port)) if ip.contains(':') => format!("[{ip}]:{port}"),
            (Some(ip), Some(port)) => format!("{ip}:{port}"),
            _ => "?".to_string(),
        }
    };
    let direction = match event["network"]["direction"].as_str() {
        Some("egress") => " outbound",
        Some("ingress") => " inbound",
        _ => "",
    };
    match event["source"].get("ip") {
        Some(_) => format!(
            "{}: {protocol}{direction} {} -> {} {what} [{state}]",
            process(event),
            endpoint("source"),
            endpoint("destination")
        ),
        None => format!("{}: {protocol} socket {what} [{state}]", process(event)),
    }
}

/// `sockwatch: sink failed (file:/var/log/x): No space left on device`.
fn lifecycle(event: &Value, action: &str) -> String {
    let fields = &event["sockwatch"];
    let mut line = format!("sockwatch: {}", action.replace('_', " "));
    if let Some(sink) = fields["sink"].as_str() {
        line.push_str(&format!(" ({sink})"));
    }
    for detail in ["error", "reason"] {
        if let Some(text) = fields[detail].as_str() {
            line.push_str(&format!(": {text}"));
            break;
        }
    }
    if let Some(missing) = fields["missing"].as_array() {
        let names: Vec<&str> = missing.iter().filter_map(Value::as_str).collect();
        line.push_str(&format!(": without {}", names.join(", ")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::{message, terminal_line};
    use serde_json::json;

    #[test]
    fn a_terminal_line_names_the_rules_and_cannot_carry_a_control_character() {
        let alert = json!({
            "@timestamp": "2026-12-06T17:00:00.000Z",
            "event": {"severity": 4, "action": "incident_opened"},
            "message": "shell \u{1b}[2Jbash holds a connection\nforged line",
            "rule": {"id": ["reverse-shell", "shell-stdio"]},
            "sockwatch": {"incident": {"id": "inc-1"}},
        });
        let line = terminal_line(&alert);
        assert!(line.starts_with("2026-12-06T17:00:00.000Z high     incident_opened: shell "));
        assert!(line.ends_with("[reverse-shell, shell-stdio] incident inc-1"), "{line}");
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }

    #[test]
    fn a_connection_reads_as_who_where_and_what_happened() {
        let event = json!({
            "process": {"name": "bash", "pid": 42, "user": {"id": "1000"}},
            "source": {"ip": "10.0.0.5", "port": 40000},
            "destination": {"ip": "::1", "port": 4444},
            "network": {"direction": "egress"},
            "sockwatch": {"socket": {"protocol": "tcp", "state": "ESTABLISHED",
                                     "previous_state": "SYN_SENT"}},
        });
        assert_eq!(
            message(&event, "socket_opened"),
            "bash (pid 42, uid 1000): tcp outbound 10.0.0.5:40000 -> [::1]:4444 opened [ESTABLISHED]"
        );
        assert!(
            message(&event, "socket_state_changed").contains("went from SYN_SENT to ESTABLISHED")
        );
        let unix = json!({"sockwatch": {"socket": {"protocol": "stream", "state": "LISTEN"}}});
        assert_eq!(message(&unix, "socket_closed"), "no process: stream socket closed [LISTEN]");
    }

    #[test]
    fn health_events_say_what_failed_and_why() {
        let failed = json!({"sockwatch": {"sink": "file:/x", "error": "No space left on device"}});
        assert_eq!(
            message(&failed, "sink_failed"),
            "sockwatch: sink failed (file:/x): No space left on device"
        );
        let missing = json!({"sockwatch": {"missing": ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"]}});
        assert_eq!(
            message(&missing, "privileges_missing"),
            "sockwatch: privileges missing: without CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH"
        );
        let started = json!({"agent": {"version": "0.2.0"}, "sockwatch": {"interval_ms": 1000}});
        assert_eq!(
            message(&started, "agent_started"),
            "sockwatch 0.2.0 started: scanning every 1000 ms"
        );
    }
}
