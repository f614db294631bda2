//! The alert for a hidden process, in the alerts' envelope: `rule.*` names the built-in check (not
//! a rule of the rule language: its subject is a mount or the listing of /proc, not a process and
//! a socket), `threat.*` MITRE T1564, `process.*` the hidden process as the agent read it, and
//! `sockwatch.mount` the mount that hides it.

use super::text::{PATH_CAP, put_text};
use super::{Encoded, Encoder, EventKind};
use crate::model::{AlertAction, Hiding, HidingAlert, Severity};
use serde_json::{Map, Value, json};

/// The built-in checks' rule ids.
pub const PROC_MOUNT_RULE: &str = "process-hidden-by-mount-over-proc";
pub const UNLISTED_RULE: &str = "process-hidden-from-proc-listing";
const SEVERITY: Severity = Severity::High;

impl Encoder {
    /// The event for one alert about a hidden process.
    pub fn hiding_alert(&mut self, alert: &HidingAlert) -> Encoded {
        let (action, kind_type) = match alert.action {
            AlertAction::Opened => ("incident_opened", "start"),
            AlertAction::Updated => ("incident_updated", "change"),
            AlertAction::Resolved => ("incident_resolved", "end"),
        };
        let (id, name, description) = match &alert.hiding {
            Hiding::Mount(_) => (
                PROC_MOUNT_RULE,
                "A mount over a process's /proc directory hides it",
                "Something mounted over /proc/<pid> (or below it) in a mount namespace: ps, ss -p, \
                 lsof and agents reading that /proc see an empty or foreign entry instead of the \
                 process. Container runtimes mask /proc files (kcore, keys, sys), never a \
                 process's directory.",
            ),
            Hiding::Unlisted { .. } => (
                UNLISTED_RULE,
                "A process is missing from the listing of /proc",
                "The parent of a listed process is not in the listing of /proc, yet a lookup of \
                 its pid finds it: the listing is being filtered (a kernel rootkit's getdents \
                 hook). A process that exits is replaced as parent by its reaper, which is \
                 listed.",
            ),
        };
        let mut event = self.envelope(action, EventKind::Alert, alert.at_ms, alert.snapshot_seq);
        event["event"]["category"] = json!(["intrusion_detection", "process"]);
        event["event"]["type"] = json!([kind_type]);
        event["event"]["severity"] = json!(SEVERITY.id());
        event["event"]["dataset"] = json!("sockwatch.alerts");
        event["rule"] = json!({
            "id": [id], "name": [name], "version": ["1"], "ruleset": "sockwatch",
            "description": [description],
        });
        let tags = ["mitre.T1564".to_string(), "mitre.TA0005".to_string()];
        event["threat"] = super::alert::threat(tags.iter()).unwrap_or_default();
        let mut truncated = Vec::new();
        let hidden = alert.hidden.as_ref();
        if let Some(process) = hidden {
            event["process"] = self.process(process, &mut truncated);
            event["sockwatch"]["process"] = Self::process_extras(process);
        }
        let who = match hidden {
            Some(p) => format!("{} (pid {})", p.comm.escape_visible(), p.key.pid),
            None => match &alert.hiding {
                Hiding::Mount(mount) => format!("pid {}", mount.pid),
                Hiding::Unlisted { pid } => format!("pid {pid}"),
            },
        };
        event["message"] = json!(match (&alert.hiding, alert.action) {
            (Hiding::Mount(m), AlertAction::Resolved) => {
                format!("the mount over {} is gone", m.mount_point.escape_visible())
            }
            (Hiding::Mount(m), _) => {
                format!(
                    "{who} is hidden from /proc by a mount over {}",
                    m.mount_point.escape_visible()
                )
            }
            (Hiding::Unlisted { .. }, AlertAction::Resolved) => {
                format!("{who} is no longer missing from the listing of /proc")
            }
            (Hiding::Unlisted { .. }, _) => format!("{who} is missing from the listing of /proc"),
        });
        event["sockwatch"]["hidden_process_known"] = json!(hidden.is_some());
        if let Hiding::Mount(mount) = &alert.hiding {
            let mut details = Map::new();
            details.insert("mount_namespace".into(), json!(mount.mntns));
            details.insert("mount_id".into(), json!(mount.mount_id));
            details.insert("pid".into(), json!(mount.pid));
            details.insert("seen_through_pid".into(), json!(mount.seen_through));
            details.insert("hidden_process_known".into(), json!(hidden.is_some()));
            let texts = [
                ("mount_point", &mount.mount_point),
                ("root", &mount.root),
                ("fstype", &mount.fstype),
                ("source", &mount.source),
            ];
            for (field, text) in texts {
                let path = format!("sockwatch.mount.{field}");
                put_text(&mut details, field, text.as_bytes(), PATH_CAP, &path, &mut truncated);
            }
            event["sockwatch"]["mount"] = Value::Object(details);
        }
        event["sockwatch"]["incident"] = json!({
            "id": alert.incident_id,
            "action": alert.action,
            "severity": SEVERITY.name(),
            "opened_by": "scan",
            "rules": [{"id": id, "name": name, "version": 1, "severity": SEVERITY.name(),
                       "tags": ["mitre.T1564", "mitre.TA0005"]}],
        });
        let mut encoded = self.finish(event, EventKind::Alert, action, alert.at_ms, truncated);
        encoded.severity = SEVERITY.id();
        encoded
    }
}
