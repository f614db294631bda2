//! The OCSF projection of an event (`schema = "ocsf"` on a sink): a pure function of the
//! canonical (ECS-shaped) event, so every sink that asks for it gets the same document.
//!
//! | canonical event | OCSF class |
//! | --- | --- |
//! | socket events (`socket_*`, `existing_socket`) | Network Activity (4001) |
//! | `process_exec` | Process Activity (1007), Launch |
//! | alerts (`incident_*`) | Detection Finding (2004): Create, Update, Close |
//! | lifecycle (`agent_*`, `heartbeat`, reloads, `sink_recovered`, …) | Application Lifecycle (6002) |
//!
//! Documents validate against the pinned release, [`OCSF_VERSION`], with the `host` profile
//! (`device`, `actor`). What OCSF has no attribute for (holders, fds, relay paths, counters)
//! goes under `unmapped.sockwatch`, unchanged.

use serde_json::{Map, Value, json};

/// The OCSF release the projection follows (`metadata.version`).
pub const OCSF_VERSION: &str = "1.4.0";

/// The OCSF document for one canonical event, given when it happened (ms since the epoch).
pub fn project(event: &Value, at_ms: u64) -> Value {
    let action = text(event, &["event", "action"]).unwrap_or_default();
    let mut doc = match action {
        "incident_opened" | "incident_updated" | "incident_resolved" => finding(event, action),
        "process_exec" => process_activity(event),
        _ if event.get("network").is_some() => network_activity(event, action),
        _ => lifecycle(event, action),
    };
    let (class_uid, activity_id) = (number(&doc, "class_uid"), number(&doc, "activity_id"));
    doc["type_uid"] = json!(class_uid * 100 + activity_id);
    let type_name = format!(
        "{}: {}",
        doc["class_name"].as_str().unwrap_or_default(),
        doc["activity_name"].as_str().unwrap_or_default()
    );
    doc["type_name"] = json!(type_name);
    doc["time"] = json!(at_ms);
    // OCSF's scale is 0-6, then 99 "Other": a value off it is not passed on as if it were on it.
    let severity_id = match doc.get("severity_id").and_then(Value::as_u64).unwrap_or(1) {
        id @ 0..=6 => id,
        _ => 99,
    };
    doc["severity_id"] = json!(severity_id);
    doc["severity"] = json!(severity_name(severity_id));
    doc["metadata"] = metadata(event, action);
    doc["device"] = device(event);
    let mut unmapped = Map::new();
    unmapped.insert("event".into(), json!({"action": action, "kind": event["event"]["kind"]}));
    if let Some(extras) = event.get("sockwatch") {
        unmapped.insert("sockwatch".into(), extras.clone());
    }
    doc["unmapped"] = Value::Object(unmapped);
    doc
}

fn network_activity(event: &Value, action: &str) -> Value {
    let state = text(event, &["sockwatch", "socket", "state"]).unwrap_or_default();
    let listening = state == "LISTEN";
    let (activity_id, activity_name) = match action {
        "socket_opened" | "existing_socket" | "socket_state_changed" if listening => (7, "Listen"),
        "socket_opened" => (1, "Open"),
        // A notice of a socket freed: the connection's close is what the agent heard.
        "socket_closed" | "socket_short_lived" => (2, "Close"),
        "existing_socket" => (99, "Existing"),
        "socket_state_changed" => (99, "State Changed"),
        "socket_holders_changed" => (99, "Holders Changed"),
        "socket_unheld" => (99, "Unheld"),
        _ => (99, "Other"),
    };
    let mut doc =
        class(4001, "Network Activity", 4, "Network Activity", activity_id, activity_name);
    endpoints(event, &mut doc);
    if let Some(process) = process(&event["process"]) {
        doc["actor"] = json!({"process": process});
    }
    if let Some(message) = event.get("message") {
        doc["message"] = message.clone();
    }
    doc
}

fn process_activity(event: &Value) -> Value {
    let mut doc = class(1007, "Process Activity", 1, "System Activity", 1, "Launch");
    let process = process(&event["process"]).unwrap_or_else(|| json!({"pid": 0}));
    // An exec replaces the image of the process that made it: it is its own actor.
    doc["actor"] = json!({"process": process});
    doc["process"] = process;
    if let Some(message) = event.get("message") {
        doc["message"] = message.clone();
    }
    doc
}

fn finding(event: &Value, action: &str) -> Value {
    let (activity_id, activity_name, status_id, status) = match action {
        "incident_opened" => (1, "Create", 1, "New"),
        "incident_updated" => (2, "Update", 2, "In Progress"),
        _ => (3, "Close", 4, "Resolved"),
    };
    let mut doc = class(2004, "Detection Finding", 2, "Findings", activity_id, activity_name);
    doc["status_id"] = json!(status_id);
    doc["status"] = json!(status);
    doc["is_alert"] = json!(action != "incident_resolved");
    doc["severity_id"] = json!(event["event"]["severity"].as_u64().unwrap_or(0));
    let incident = text(event, &["sockwatch", "incident", "id"]).unwrap_or_default();
    let first = |field: &str| event["rule"][field].get(0).and_then(Value::as_str);
    let mut info = Map::new();
    info.insert("uid".into(), json!(incident));
    if let Some(name) = first("name") {
        info.insert("title".into(), json!(name));
    }
    if let Some(message) = event.get("message") {
        info.insert("desc".into(), message.clone());
        doc["message"] = message.clone();
    }
    if let Some(uid) = first("id") {
        let mut analytic = json!({"uid": uid, "type_id": 1, "type": "Rule"});
        if let Some(name) = first("name") {
            analytic["name"] = json!(name);
        }
        if let Some(version) = first("version") {
            analytic["version"] = json!(version);
        }
        info.insert("analytic".into(), analytic);
    }
    let attacks = attacks(&event["threat"]);
    if !attacks.is_empty() {
        info.insert("attacks".into(), Value::Array(attacks));
    }
    doc["finding_info"] = Value::Object(info);
    let mut evidence = json!({});
    endpoints(event, &mut evidence);
    if let Some(process) = process(&event["process"]) {
        evidence["process"] = process.clone();
        doc["actor"] = json!({"process": process});
    }
    if evidence.as_object().is_some_and(|e| !e.is_empty()) {
        doc["evidences"] = json!([evidence]);
    }
    doc
}

fn lifecycle(event: &Value, action: &str) -> Value {
    let (activity_id, activity_name) = match action {
        "agent_started" => (3, "Start".to_string()),
        "agent_stopping" => (4, "Stop".to_string()),
        other => (99, title_case(other)),
    };
    let mut doc = class(6002, "Application Lifecycle", 6, "Application Activity", activity_id, "");
    doc["activity_name"] = json!(activity_name);
    doc["app"] = product(event);
    if super::health::is_failure(action) {
        // A human has to look: the agent runs on, with less than it was told.
        doc["status_id"] = json!(2);
        doc["status"] = json!("Failure");
    }
    let severity = event["event"]["severity"].as_u64().unwrap_or(0);
    if severity > 0 {
        doc["severity_id"] = json!(severity);
    }
    if let Some(message) = event.get("message") {
        doc["message"] = message.clone();
    }
    doc
}

fn class(
    class_uid: u64,
    class_name: &str,
    category_uid: u64,
    category_name: &str,
    activity_id: u64,
    activity_name: &str,
) -> Value {
    json!({
        "class_uid": class_uid, "class_name": class_name,
        "category_uid": category_uid, "category_name": category_name,
        "activity_id": activity_id, "activity_name": activity_name,
    })
}

fn metadata(event: &Value, action: &str) -> Value {
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": product(event),
        "profiles": ["host"],
        "event_code": action,
    });
    for (to, from) in [
        ("uid", &["event", "id"][..]),
        ("log_name", &["event", "dataset"]),
        ("original_time", &["@timestamp"]),
    ] {
        if let Some(value) = text(event, from) {
            metadata[to] = json!(value);
        }
    }
    if let Some(sequence) = event["event"]["sequence"].as_u64() {
        metadata["sequence"] = json!(sequence);
    }
    if let Some(incident) = text(event, &["sockwatch", "incident", "id"]) {
        metadata["correlation_uid"] = json!(incident);
    }
    metadata
}

fn product(event: &Value) -> Value {
    let version = text(event, &["agent", "version"]).unwrap_or(env!("CARGO_PKG_VERSION"));
    json!({"name": "sockwatch", "vendor_name": "sockwatch", "version": version})
}

fn device(event: &Value) -> Value {
    // Whether the host is a server, a desktop or a VM is not something /proc says plainly.
    let mut device = json!({
        "type_id": 0,
        "type": "Unknown",
        "os": {"name": "Linux", "type_id": 200, "type": "Linux"},
    });
    if let Some(name) = text(event, &["host", "name"]) {
        device["hostname"] = json!(name);
    }
    if let Some(id) = text(event, &["host", "id"]) {
        device["uid"] = json!(id);
    }
    if device.get("hostname").is_none() && device.get("uid").is_none() {
        device["name"] = json!("unknown");
    }
    device
}

/// `src_endpoint`, `dst_endpoint` and `connection_info` from `source`, `destination`, `network`.
fn endpoints(event: &Value, doc: &mut Value) {
    for (from, to) in [("source", "src_endpoint"), ("destination", "dst_endpoint")] {
        let endpoint = &event[from];
        if let Some(ip) = endpoint["ip"].as_str() {
            let mut out = json!({"ip": ip});
            if let Some(port) = endpoint["port"].as_u64() {
                out["port"] = json!(port);
            }
            doc[to] = out;
        }
    }
    let socket = &event["sockwatch"]["socket"];
    let socket_uid = match (socket["netns"].as_u64(), socket["inode"].as_u64()) {
        (Some(netns), Some(inode)) => Some(format!("{netns}:{inode}")),
        _ => None,
    };
    if doc.get("src_endpoint").is_none()
        && doc.get("dst_endpoint").is_none()
        && let Some(uid) = &socket_uid
    {
        // A unix, netlink or packet socket has no address: the local end is named by the
        // socket itself (and by its path, when bound to one).
        let mut local = json!({"uid": uid});
        if let Some(name) = socket["unix_name"].as_str().filter(|n| !n.is_empty()) {
            local["name"] = json!(name);
        }
        doc["src_endpoint"] = local;
    }
    let network = &event["network"];
    if network.is_null() {
        return;
    }
    let (direction_id, direction) = match text(event, &["sockwatch", "socket", "direction"]) {
        Some("inbound") => (1, "Inbound"),
        Some("outbound") => (2, "Outbound"),
        _ => (0, "Unknown"),
    };
    let mut info = json!({"direction_id": direction_id, "direction": direction});
    let ip_version = match network["type"].as_str() {
        Some("ipv4") => Some(4),
        Some("ipv6") => Some(6),
        _ => None,
    };
    if let Some(version) = ip_version {
        info["protocol_ver_id"] = json!(version);
        let transport = network["transport"].as_str().unwrap_or_default();
        let number = match (transport, version) {
            ("tcp", _) => Some(6),
            ("udp", _) => Some(17),
            ("udplite", _) => Some(136),
            ("icmp", 4) => Some(1),
            ("icmp", _) => Some(58),
            _ => None,
        };
        if let Some(number) = number {
            info["protocol_num"] = json!(number);
            info["protocol_name"] = json!(transport);
        }
    }
    if let Some(id) = network["community_id"].as_str() {
        info["community_uid"] = json!(id);
    }
    if let Some(uid) = socket_uid {
        info["uid"] = json!(uid);
    }
    doc["connection_info"] = info;
}

/// The OCSF process object from `process.*`.
fn process(ecs: &Value) -> Option<Value> {
    let pid = ecs["pid"].as_i64()?;
    let mut process = json!({"pid": pid});
    let copies = [("uid", "entity_id"), ("name", "name"), ("cmd_line", "command_line")];
    for (to, from) in copies {
        if let Some(value) = ecs[from].as_str() {
            process[to] = json!(value);
        }
    }
    if let Some(path) = ecs["executable"].as_str() {
        let name = path.rsplit('/').next().unwrap_or(path);
        process["file"] = json!({"path": path, "name": name, "type_id": 1, "type": "Regular File"});
    }
    if let Some(start) = ecs["start"].as_str().and_then(epoch_ms) {
        process["created_time"] = json!(start);
    }
    if let Some(uid) = ecs["user"]["id"].as_str() {
        process["user"] = json!({"uid": uid});
    }
    if let Some(parent) = ecs["parent"]["pid"].as_i64() {
        process["parent_process"] = json!({"pid": parent});
    }
    Some(process)
}

/// `finding_info.attacks` from `threat.*`: OCSF pairs a technique with its tactic, the
/// canonical event lists them apart; each is given on its own rather than paired by guess.
fn attacks(threat: &Value) -> Vec<Value> {
    let ids = |value: &Value| -> Vec<String> {
        value.as_array().map_or_else(Vec::new, |list| {
            list.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        })
    };
    let named = |id: &str| match crate::model::mitre::name(id) {
        Some(name) => json!({"uid": id, "name": name}),
        None => json!({"uid": id}),
    };
    let subtechniques = ids(&threat["technique"]["subtechnique"]["id"]);
    let mut attacks = Vec::new();
    for technique in ids(&threat["technique"]["id"]) {
        let subs: Vec<&String> =
            subtechniques.iter().filter(|s| s.split('.').next() == Some(&technique)).collect();
        if subs.is_empty() {
            attacks.push(json!({"technique": named(&technique)}));
        }
        for sub in subs {
            attacks.push(json!({"technique": named(&technique), "sub_technique": named(sub)}));
        }
    }
    for tactic in ids(&threat["tactic"]["id"]) {
        attacks.push(json!({"tactic": named(&tactic)}));
    }
    attacks
}

fn severity_name(id: u64) -> &'static str {
    match id {
        0 => "Unknown",
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        6 => "Fatal",
        _ => "Other",
    }
}

fn title_case(action: &str) -> String {
    action
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn text<'a>(event: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(event, |v, key| v.get(key))?.as_str()
}

fn number(doc: &Value, key: &str) -> u64 {
    doc[key].as_u64().unwrap_or(0)
}

fn epoch_ms(rfc3339: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339(rfc3339).ok()?;
    let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AT: u64 = 1_764_000_000_123;

    fn socket_event(action: &str, state: &str, direction: &str) -> Value {
        json!({
            "@timestamp": "2025-11-24T16:00:00.123Z",
            "event": {"id": "0197-id", "kind": "event", "action": action, "severity": 1,
                      "sequence": 42, "dataset": "sockwatch.socket"},
            "agent": {"version": "9.9.9"},
            "host": {"name": "web-1", "id": "machine"},
            "process": {"pid": 4242, "entity_id": "ent", "name": "bash",
                        "executable": "/usr/bin/bash", "command_line": "bash -i",
                        "start": "2025-11-24T15:59:59.000Z", "user": {"id": "33"},
                        "parent": {"pid": 1311}},
            "source": {"ip": "127.0.0.1", "port": 45000},
            "destination": {"ip": "127.0.0.1", "port": 4444},
            "network": {"transport": "tcp", "type": "ipv4", "community_id": "1:abc="},
            "sockwatch": {"socket": {"inode": 7, "netns": 4_026_531_840u64, "state": state,
                                     "direction": direction, "protocol": "tcp"}},
        })
    }

    #[test]
    fn an_outbound_connection_is_network_activity_open() {
        let doc = project(&socket_event("socket_opened", "ESTABLISHED", "outbound"), AT);
        assert_eq!((doc["class_uid"].as_u64(), doc["activity_id"].as_u64()), (Some(4001), Some(1)));
        assert_eq!(doc["category_uid"], 4);
        assert_eq!(doc["type_uid"], 400_101);
        assert_eq!(doc["time"], AT);
        assert_eq!(doc["severity_id"], 1);
        assert_eq!(doc["metadata"]["uid"], "0197-id");
        assert_eq!(doc["metadata"]["version"], OCSF_VERSION);
        assert_eq!(doc["metadata"]["product"]["version"], "9.9.9");
        assert_eq!(doc["device"]["hostname"], "web-1");
        assert_eq!(doc["dst_endpoint"], json!({"ip": "127.0.0.1", "port": 4444}));
        let info = &doc["connection_info"];
        assert_eq!(
            (info["direction_id"].as_u64(), info["protocol_num"].as_u64()),
            (Some(2), Some(6))
        );
        assert_eq!(
            (info["protocol_ver_id"].as_u64(), info["uid"].as_str()),
            (Some(4), Some("4026531840:7"))
        );
        assert_eq!(info["community_uid"], "1:abc=");
        let actor = &doc["actor"]["process"];
        assert_eq!(actor["file"]["path"], "/usr/bin/bash");
        assert_eq!(actor["file"]["name"], "bash");
        assert_eq!(actor["created_time"], 1_763_999_999_000u64);
        assert_eq!(actor["parent_process"]["pid"], 1311);
        assert_eq!(doc["unmapped"]["sockwatch"]["socket"]["inode"], 7, "nothing is lost");
    }

    #[test]
    fn activities_follow_the_action_and_the_state() {
        let activity = |action, state, direction| {
            project(&socket_event(action, state, direction), AT)["activity_id"].as_u64()
        };
        assert_eq!(activity("socket_opened", "LISTEN", "listening"), Some(7));
        assert_eq!(activity("existing_socket", "LISTEN", "listening"), Some(7));
        assert_eq!(activity("socket_closed", "CLOSE", "inbound"), Some(2));
        assert_eq!(activity("socket_short_lived", "CLOSE", "outbound"), Some(2));
        assert_eq!(activity("socket_state_changed", "CLOSE_WAIT", "inbound"), Some(99));
        assert_eq!(activity("socket_holders_changed", "ESTABLISHED", "inbound"), Some(99));
        let inbound = project(&socket_event("socket_closed", "CLOSE", "inbound"), AT);
        assert_eq!(inbound["connection_info"]["direction_id"], 1);
        assert_eq!(inbound["type_uid"], 400_102);
    }

    #[test]
    fn a_socket_without_addresses_is_named_by_its_key() {
        let mut event = socket_event("socket_opened", "ESTABLISHED", "unknown");
        let object = event.as_object_mut().unwrap();
        object.remove("source");
        object.remove("destination");
        event["sockwatch"]["socket"]["unix_name"] = json!("/run/x.sock");
        event["network"] = json!({});
        let doc = project(&event, AT);
        assert_eq!(doc["src_endpoint"], json!({"uid": "4026531840:7", "name": "/run/x.sock"}));
        assert_eq!(doc["connection_info"]["direction_id"], 0);
        assert!(doc["connection_info"].get("protocol_num").is_none());
    }

    fn incident(action: &str) -> Value {
        let mut event = socket_event(action, "ESTABLISHED", "outbound");
        event["event"]["kind"] = json!("alert");
        event["event"]["severity"] = json!(5);
        event["message"] = json!("bash reached 127.0.0.1:4444");
        event["rule"] = json!({"id": ["stdio-outbound-socket", "shell-holds-network-socket"],
                               "name": ["Stdio on an outbound socket", "Shell holds a socket"],
                               "version": ["1", "2"]});
        event["threat"] = json!({"framework": "MITRE ATT&CK",
                                 "technique": {"id": ["T1059"], "subtechnique": {"id": ["T1059.004"]}},
                                 "tactic": {"id": ["TA0002"]}});
        event["sockwatch"]["incident"] = json!({"id": "inc-1"});
        event
    }

    #[test]
    fn an_incident_is_a_detection_finding_with_its_attacks_and_evidence() {
        let doc = project(&incident("incident_opened"), AT);
        assert_eq!((doc["class_uid"].as_u64(), doc["activity_id"].as_u64()), (Some(2004), Some(1)));
        assert_eq!(doc["type_uid"], 200_401);
        assert_eq!(
            (doc["severity_id"].as_u64(), doc["severity"].as_str()),
            (Some(5), Some("Critical"))
        );
        assert_eq!((doc["status_id"].as_u64(), doc["is_alert"].as_bool()), (Some(1), Some(true)));
        let info = &doc["finding_info"];
        assert_eq!(info["uid"], "inc-1");
        assert_eq!(info["title"], "Stdio on an outbound socket");
        assert_eq!(info["analytic"]["uid"], "stdio-outbound-socket");
        assert_eq!(info["analytic"]["type_id"], 1);
        assert_eq!(
            info["attacks"],
            json!([{"technique": {"uid": "T1059", "name": "Command and Scripting Interpreter"},
                    "sub_technique": {"uid": "T1059.004", "name": "Unix Shell"}},
                   {"tactic": {"uid": "TA0002", "name": "Execution"}}])
        );
        assert_eq!(doc["evidences"][0]["dst_endpoint"]["port"], 4444);
        assert_eq!(doc["evidences"][0]["process"]["pid"], 4242);
        assert_eq!(doc["metadata"]["correlation_uid"], "inc-1");
        let resolved = project(&incident("incident_resolved"), AT);
        assert_eq!(
            (resolved["activity_id"].as_u64(), resolved["status_id"].as_u64()),
            (Some(3), Some(4))
        );
        assert_eq!(resolved["is_alert"], false);
        assert_eq!(project(&incident("incident_updated"), AT)["activity_id"], 2);
    }

    #[test]
    fn lifecycle_events_are_application_lifecycle_and_failures_say_so() {
        let event = |action: &str| {
            let severity = super::super::health::severity(action).map_or(0, |s| s.id());
            json!({"event": {"id": "x", "kind": "event", "action": action, "severity": severity}})
        };
        let started = project(&event("agent_started"), AT);
        assert_eq!(
            (started["class_uid"].as_u64(), started["activity_id"].as_u64()),
            (Some(6002), Some(3))
        );
        assert_eq!(project(&event("agent_stopping"), AT)["activity_id"], 4);
        let failed = project(&event("reload_failed"), AT);
        assert_eq!(
            (failed["activity_id"].as_u64(), failed["activity_name"].as_str()),
            (Some(99), Some("Reload Failed"))
        );
        assert_eq!(
            (failed["status_id"].as_u64(), failed["severity_id"].as_u64()),
            (Some(2), Some(3))
        );
        let blind = project(&event("privileges_missing"), AT);
        assert_eq!(
            (blind["severity_id"].as_u64(), blind["severity"].as_str()),
            (Some(4), Some("High"))
        );
        let recovered = project(&event("sink_recovered"), AT);
        assert_eq!(
            (recovered.get("status_id"), recovered["severity_id"].as_u64()),
            (None, Some(3))
        );
        assert_eq!(started["severity_id"], 1, "other lifecycle events are informational");
        let exec =
            project(&json!({"event": {"action": "process_exec"}, "process": {"pid": 9}}), AT);
        assert_eq!(
            (exec["class_uid"].as_u64(), exec["type_uid"].as_u64()),
            (Some(1007), Some(100_701))
        );
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z_@.:]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            let keys = prop_oneof![
                Just("event".to_string()),
                Just("action".to_string()),
                Just("process".to_string()),
                Just("pid".to_string()),
                Just("network".to_string()),
                Just("sockwatch".to_string()),
                Just("socket".to_string()),
                Just("source".to_string()),
                Just("ip".to_string()),
                Just("threat".to_string()),
                Just("technique".to_string()),
                Just("id".to_string()),
                Just("rule".to_string()),
                Just("start".to_string()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(keys, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever shape an event has, its projection is a document with the attributes every
        /// OCSF class requires, and type_uid agrees with class and activity.
        #[test]
        fn any_event_projects_to_a_complete_base_event(event in json_value(), at in any::<u64>()) {
            let doc = project(&event, at);
            for key in ["class_uid", "category_uid", "activity_id", "type_uid", "time", "severity_id"] {
                prop_assert!(doc[key].is_u64(), "{key} in {doc}");
            }
            prop_assert_eq!(
                doc["type_uid"].as_u64(),
                Some(doc["class_uid"].as_u64().unwrap() * 100 + doc["activity_id"].as_u64().unwrap())
            );
            prop_assert_eq!(doc["metadata"]["version"].as_str(), Some(OCSF_VERSION));
            prop_assert!(doc["metadata"]["product"]["name"].is_string());
            prop_assert!(doc["device"]["type_id"].is_u64());
        }
    }
}
