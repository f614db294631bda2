//! Alerts in the event schema: the same envelope as every event with `event.kind = "alert"`,
//! `rule.*` for every matching rule, `threat.*` from their MITRE tags, the top-most process as
//! `process.*`, and the incident (members, relay path, scan latency) under `sockwatch.incident`.

use super::text::{NAME_CAP, PATH_CAP, put_text};
use super::{Encoded, Encoder, EventKind, Processes};
use crate::model::mitre;
use crate::model::{Alert, AlertAction, IncidentEndpoint, Process};
use serde_json::{Map, Value, json};

/// Processes listed by name in an incident (the total is always given).
const MAX_MEMBERS_LISTED: usize = 64;

impl Encoder {
    /// The event for one alert.
    pub fn alert(&mut self, alert: &Alert) -> Encoded {
        let action = match alert.action {
            AlertAction::Opened => "incident_opened",
            AlertAction::Updated => "incident_updated",
            AlertAction::Resolved => "incident_resolved",
        };
        let mut event = self.envelope(action, EventKind::Alert, alert.at_ms, alert.snapshot_seq);
        event["event"]["category"] = json!(["intrusion_detection", "process", "network"]);
        event["event"]["type"] = json!([match alert.action {
            AlertAction::Opened => "start",
            AlertAction::Updated => "change",
            AlertAction::Resolved => "end",
        }]);
        event["event"]["severity"] = json!(alert.severity.id());
        event["event"]["dataset"] = json!("sockwatch.alerts");
        let mut truncated = Vec::new();
        if let Some(first) = alert.rules.iter().max_by_key(|r| r.severity) {
            event["message"] = json!(first.message);
        }
        event["rule"] = json!({
            "id": alert.rules.iter().map(|r| &r.id).collect::<Vec<_>>(),
            "name": alert.rules.iter().map(|r| &r.name).collect::<Vec<_>>(),
            "version": alert.rules.iter().map(|r| r.version.to_string()).collect::<Vec<_>>(),
            "description": alert.rules.iter().map(|r| &r.description).collect::<Vec<_>>(),
            "ruleset": "sockwatch",
        });
        // Only the rules that give one: a list with gaps could not say whose each is.
        let references: Vec<&String> =
            alert.rules.iter().filter_map(|r| r.reference.as_ref()).collect();
        if !references.is_empty() {
            event["rule"]["reference"] = json!(references);
        }
        if let Some(threat) = threat(alert.rules.iter().flat_map(|r| &r.tags)) {
            event["threat"] = threat;
        }
        if let Some(subject) = &alert.subject {
            event["process"] = self.process(subject, &mut truncated);
            event["sockwatch"]["process"] = Self::process_extras(subject);
            super::container::put_container(&mut event, subject, &mut truncated);
            self.alert_context(&mut event, alert, &mut truncated);
        }
        self.network(&mut event, &alert.socket, alert.direction.0);
        let mut holders = alert.holders.clone();
        holders.sort_by_key(|p| p.key);
        let details = self.socket_details(
            &alert.socket,
            alert.direction,
            &Processes(&holders),
            &mut truncated,
        );
        event["sockwatch"]["socket"] = Value::Object(details);
        event["sockwatch"]["incident"] = self.incident(alert, &mut truncated);
        let related = related_ips(alert);
        if !related.is_empty() {
            event["related"] = json!({ "ip": related });
        }
        let mut encoded = self.finish(event, EventKind::Alert, action, alert.at_ms, truncated);
        encoded.severity = alert.severity.id();
        encoded
    }

    fn incident(&self, alert: &Alert, truncated: &mut Vec<String>) -> Value {
        let brief = |p: &Process, truncated: &mut Vec<String>| {
            let mut o = Map::new();
            o.insert("pid".into(), json!(p.key.pid));
            o.insert("entity_id".into(), json!(self.entity_id(p.key)));
            put_text(
                &mut o,
                "name",
                p.comm.as_bytes(),
                NAME_CAP,
                "sockwatch.incident.name",
                truncated,
            );
            if let Some(exe) = &p.exe {
                let what = "sockwatch.incident.executable";
                put_text(&mut o, "executable", exe.path.as_bytes(), PATH_CAP, what, truncated);
            }
            Value::Object(o)
        };
        let processes: Vec<Value> =
            alert.processes.iter().take(MAX_MEMBERS_LISTED).map(|p| brief(p, truncated)).collect();
        let path = &alert.path;
        let relays: Vec<Value> =
            path.relays.iter().take(MAX_MEMBERS_LISTED).map(|p| brief(p, truncated)).collect();
        let rules: Vec<Value> = alert
            .rules
            .iter()
            .map(|r| {
                let mut rule = json!({
                    "id": r.id, "name": r.name, "version": r.version,
                    "severity": r.severity.name(), "tags": r.tags, "message": r.message,
                    "description": r.description,
                });
                if let Some(reference) = &r.reference {
                    rule["reference"] = json!(reference);
                }
                rule
            })
            .collect();
        let mut incident = json!({
            "id": alert.incident_id,
            "action": alert.action,
            "severity": alert.severity.name(),
            "rules": rules,
            "opened_seq": alert.opened_seq,
            "first_seen_seq": alert.first_seen_seq,
            "latency_scans": alert.opened_seq.saturating_sub(alert.first_seen_seq),
            "present_at_start": alert.present_at_start,
            "opened_by": if alert.seen_by_look { "exec_check" } else { "scan" },
            "processes_total": alert.processes.len(),
            "processes": processes,
            "relay": {
                "pid": path.process.pid,
                "entity_id": self.entity_id(path.process),
                "stdio_fds": path.stdio_fds,
                "via": path.vias,
                "relays": relays,
            },
            "fds": alert.fds,
            "endpoints": alert.endpoints.iter().take(MAX_MEMBERS_LISTED).map(endpoint).collect::<Vec<_>>(),
            "endpoints_total": alert.endpoints.len().max(1),
        });
        if let Some(reason) = &alert.reason {
            incident["reason"] = json!(reason);
        }
        incident
    }
}

/// One socket of an incident: where it goes, which way, and which streams lead to it.
fn endpoint(e: &IncidentEndpoint) -> Value {
    let socket = &e.socket;
    let address = |end: Option<crate::model::Endpoint>| {
        end.filter(|_| socket.family.is_inet())
            .map(|a| json!({"ip": a.addr.to_string(), "port": a.port}))
    };
    let mut o = json!({
        "inode": socket.key.inode,
        "netns": socket.key.netns,
        "protocol": socket.protocol.name(),
        "state": socket.state.name(),
        "direction": e.direction.0,
        "direction_source": e.direction.1,
        "streams": e.streams,
    });
    if let Some(local) = address(socket.local) {
        o["local"] = local;
    }
    if let Some(remote) = address(socket.remote.filter(|r| r.port != 0 || !r.addr.is_unspecified()))
    {
        o["remote"] = remote;
    }
    o
}

/// ECS `related.ip`: every remote address the incident's sockets reach, once.
fn related_ips(alert: &Alert) -> Vec<String> {
    let mut ips: Vec<String> = Vec::new();
    let sockets = std::iter::once(&alert.socket).chain(alert.endpoints.iter().map(|e| &e.socket));
    for socket in sockets.filter(|s| s.family.is_inet()) {
        let remote = socket.remote.filter(|r| !r.addr.is_unspecified());
        if let Some(ip) = remote.map(|r| r.addr.to_string())
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    ips
}

/// `threat.*` from `mitre.T…` (techniques, sub-techniques) and `mitre.TA…` (tactics) tags: ids,
/// their attack.mitre.org pages, and their names when every one has a known name (a list with
/// gaps could not say whose each name is).
pub(super) fn threat<'a>(tags: impl Iterator<Item = &'a String>) -> Option<Value> {
    let mut techniques = Vec::new();
    let mut subtechniques = Vec::new();
    let mut tactics = Vec::new();
    for tag in tags {
        let Some(id) = tag.strip_prefix("mitre.") else { continue };
        let list = if id.starts_with("TA") {
            &mut tactics
        } else if id.contains('.') {
            let parent = id.split('.').next().unwrap_or(id).to_string();
            if !techniques.contains(&parent) {
                techniques.push(parent);
            }
            &mut subtechniques
        } else {
            &mut techniques
        };
        if !list.iter().any(|t| t == id) {
            list.push(id.to_string());
        }
    }
    if techniques.is_empty() && tactics.is_empty() {
        return None;
    }
    let mut threat = json!({"framework": "MITRE ATT&CK"});
    for (path, ids) in [
        (&["technique"][..], techniques),
        (&["technique", "subtechnique"][..], subtechniques),
        (&["tactic"][..], tactics),
    ] {
        if ids.is_empty() {
            continue;
        }
        let mut entry = json!({"id": ids});
        let names: Option<Vec<&str>> = ids.iter().map(|id| mitre::name(id)).collect();
        if let Some(names) = names {
            entry["name"] = json!(names);
        }
        let pages: Vec<String> = ids.iter().filter_map(|id| mitre::reference(id)).collect();
        entry["reference"] = json!(pages);
        let slot = path.iter().fold(&mut threat, |at, key| &mut at[*key]);
        match slot.as_object_mut() {
            Some(existing) => existing.extend(entry.as_object().cloned().unwrap_or_default()),
            None => *slot = entry,
        }
    }
    Some(threat)
}

#[cfg(test)]
mod tests {
    use super::threat;
    use serde_json::json;

    fn of(tags: &[&str]) -> serde_json::Value {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        threat(tags.iter()).unwrap_or_default()
    }

    #[test]
    fn threat_names_each_id_and_links_its_page() {
        let threat = of(&["mitre.T1059.004", "mitre.TA0011", "local.pci", "mitre.T1095"]);
        assert_eq!(
            threat["technique"],
            json!({
                "id": ["T1059", "T1095"],
                "name": ["Command and Scripting Interpreter", "Non-Application Layer Protocol"],
                "reference": ["https://attack.mitre.org/techniques/T1059/",
                              "https://attack.mitre.org/techniques/T1095/"],
                "subtechnique": {
                    "id": ["T1059.004"], "name": ["Unix Shell"],
                    "reference": ["https://attack.mitre.org/techniques/T1059/004/"],
                },
            })
        );
        assert_eq!(threat["tactic"]["name"], json!(["Command and Control"]));
    }

    #[test]
    fn an_id_without_a_known_name_leaves_the_names_out_not_misaligned() {
        let threat = of(&["mitre.T1059", "mitre.T1999"]);
        assert_eq!(threat["technique"]["id"], json!(["T1059", "T1999"]));
        assert!(threat["technique"].get("name").is_none(), "{threat}");
        assert_eq!(threat["technique"]["reference"].as_array().map(Vec::len), Some(2));
        assert!(of(&["local.only"]).is_null());
    }
}
