//! Hidden processes as incidents: a mount over /proc/<pid> or a process missing from the listing
//! of /proc, opened when a scan first finds it, resolved when a scan no longer does. Kept in
//! memory: after a restart a hiding still there is alerted again, which is what a responder
//! wants from a hidden process.

use crate::model::{AlertAction, Hiding, HidingAlert, ProcKey, Snapshot};
use std::collections::BTreeMap;

#[derive(Default)]
pub(crate) struct HidingIncidents {
    open: BTreeMap<(u64, u64), (Hiding, String)>,
}

impl HidingIncidents {
    /// The alerts one scan brings.
    pub(crate) fn scanned(&mut self, snapshot: &Snapshot) -> Vec<HidingAlert> {
        let process = |key: Option<ProcKey>| {
            let i = snapshot.processes.binary_search_by_key(&key?, |p| p.key).ok()?;
            Some(snapshot.processes[i].clone())
        };
        let by_pid = |pid: i32| snapshot.processes.iter().find(|p| p.key.pid == pid).cloned();
        let alert = |action, incident_id: &str, hiding: &Hiding| HidingAlert {
            action,
            incident_id: incident_id.to_string(),
            hiding: hiding.clone(),
            hidden: match hiding {
                Hiding::Mount(mount) => process(mount.hidden),
                Hiding::Unlisted { pid } => by_pid(*pid),
            },
            at_ms: snapshot.taken_at_ms,
            snapshot_seq: snapshot.seq,
        };
        let mounts = snapshot.proc_mounts.iter().cloned().map(Hiding::Mount);
        let unlisted = snapshot.coverage.unlisted_pids.iter().map(|&pid| Hiding::Unlisted { pid });
        let now: BTreeMap<(u64, u64), Hiding> =
            mounts.chain(unlisted).map(|h| (h.key(), h)).collect();
        let mut alerts = Vec::new();
        self.open.retain(|key, (hiding, id)| {
            let still = now.contains_key(key);
            if !still {
                alerts.push(alert(AlertAction::Resolved, id, hiding));
            }
            still
        });
        for (key, hiding) in now {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.open.entry(key) {
                let id = uuid::Uuid::now_v7().to_string();
                alerts.push(alert(AlertAction::Opened, &id, &hiding));
                slot.insert((hiding, id));
            }
        }
        alerts
    }
}
