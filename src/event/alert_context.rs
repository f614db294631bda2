//! Who and where an alert's process is, for a responder who cannot log in to the host: user and
//! group names, the audit login, the executable's digest, the parent in full, the ancestors up
//! to pid 1 or the container's init, and the ssh login the shell descends from.

use super::text::{NAME_CAP, put_text};
use super::{Encoder, Process};
use crate::model::{Alert, ExeHash, ProcKey, ProcessContext};
use serde_json::{Map, Value, json};

/// Ancestors listed; the total is always given.
const MAX_ANCESTORS_LISTED: usize = 16;
/// An ancestor's command line is capped shorter than the subject's: sixteen of them, the
/// parent's and the subject's all fit in one line journald keeps.
const ANCESTOR_COMMAND_LINE_CAP: usize = 512;
/// The parent's command line.
const PARENT_COMMAND_LINE_CAP: usize = 2048;

impl Encoder {
    /// Adds the alert's context to `event`, whose `process` is the subject's.
    pub(super) fn alert_context(
        &self,
        event: &mut Value,
        alert: &Alert,
        truncated: &mut Vec<String>,
    ) {
        let Some(subject) = &alert.subject else { return };
        let context = |key: ProcKey| alert.context.iter().find(|c| c.key == key);
        let mut extras = Map::new();
        if let Some(process) = event["process"].as_object_mut() {
            identity(process, context(subject.key), subject, truncated, "process");
        }
        if let Some(c) = context(subject.key) {
            let mut audit = Map::new();
            if let Some(id) = c.login_uid {
                audit.insert("login_uid".into(), json!(id));
            }
            if let Some(name) = &c.login_user_name {
                let what = "sockwatch.process.audit.login_user";
                put_text(&mut audit, "login_user", name.as_bytes(), NAME_CAP, what, truncated);
            }
            if let Some(id) = c.session_id {
                audit.insert("session_id".into(), json!(id));
            }
            if !audit.is_empty() {
                extras.insert("audit".into(), Value::Object(audit));
            }
            note_gaps(&mut extras, c);
        }
        if let Some(parent) = alert.ancestors.first() {
            let field = "process.parent.command_line";
            let mut object = self.process_brief(parent, PARENT_COMMAND_LINE_CAP, field, truncated);
            object.insert("group".into(), json!({"id": parent.gid.to_string()}));
            let what = "process.parent";
            identity(&mut object, context(parent.key), parent, truncated, what);
            if let Some(c) = context(parent.key) {
                let mut gaps = Map::new();
                note_gaps(&mut gaps, c);
                if !gaps.is_empty() {
                    extras.insert("parent".into(), Value::Object(gaps));
                }
            }
            event["process"]["parent"] = Value::Object(object);
        }
        let field = "sockwatch.process.ancestors";
        let ancestors: Vec<Value> = alert
            .ancestors
            .iter()
            .take(MAX_ANCESTORS_LISTED)
            .map(|p| {
                let mut o = self.process_brief(p, ANCESTOR_COMMAND_LINE_CAP, field, truncated);
                if let Some(name) = context(p.key).and_then(|c| c.user_name.as_ref())
                    && let Some(user) = o.get_mut("user").and_then(Value::as_object_mut)
                {
                    put_text(user, "name", name.as_bytes(), NAME_CAP, field, truncated);
                }
                Value::Object(o)
            })
            .collect();
        extras.insert("ancestors".into(), json!(ancestors));
        extras.insert("ancestors_total".into(), json!(alert.ancestors.len()));
        if let Some(origin) = &alert.login_origin {
            let end = |e: crate::model::Endpoint| json!({"ip": e.addr.to_string(), "port": e.port});
            extras.insert(
                "login_origin".into(),
                json!({
                    "via": "sshd",
                    "pid": origin.process.pid,
                    "entity_id": self.entity_id(origin.process),
                    "remote": end(origin.remote),
                    "local": end(origin.local),
                }),
            );
        }
        if let Some(object) = event["sockwatch"]["process"].as_object_mut() {
            object.extend(extras);
        } else {
            event["sockwatch"]["process"] = Value::Object(extras);
        }
    }
}

/// ECS `user.name`, `real_user.name`, `group.name` and `hash.sha256` of one process object.
fn identity(
    object: &mut Map<String, Value>,
    context: Option<&ProcessContext>,
    process: &Process,
    truncated: &mut Vec<String>,
    at: &str,
) {
    let Some(c) = context else { return };
    let mut name = |slot: &str, id: u32, raw: Option<&crate::model::RawText>| {
        let Some(raw) = raw else { return };
        let entry = object.entry(slot).or_insert_with(|| json!({"id": id.to_string()}));
        if let Some(entry) = entry.as_object_mut() {
            let what = format!("{at}.{slot}.name");
            put_text(entry, "name", raw.as_bytes(), NAME_CAP, &what, truncated);
        }
    };
    name("user", process.euid, c.user_name.as_ref());
    name("real_user", process.uid, c.real_user_name.as_ref());
    name("group", process.gid, c.group_name.as_ref());
    if let Some(ExeHash::Sha256(digest)) = &c.hash {
        object.insert("hash".into(), json!({"sha256": digest}));
    }
}

/// Why something is missing: the digest skipped, the process unreadable.
fn note_gaps(extras: &mut Map<String, Value>, c: &ProcessContext) {
    if let Some(ExeHash::Skipped(why)) = &c.hash {
        extras.insert("hash_skipped".into(), json!(why));
    }
    if let Some(why) = &c.unavailable {
        extras.insert("context_unavailable".into(), json!(why));
    }
}
