//! Incident lifecycle (DESIGN §4). An incident is keyed by the network socket reached: it opens
//! when the socket first matches, is updated when new rules or processes join, and resolves once,
//! with a reason, when the socket closes, when nothing has matched for `MISSES_TO_RESOLVE` scans,
//! or when its rules are removed. A process leaving (a child exiting) is not news.

use crate::model::{Alert, AlertAction, ProcKey, SocketKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Scans without a match after which a live socket's incident resolves.
pub const MISSES_TO_RESOLVE: u32 = 2;

/// What matched one socket in one scan: the alert it would raise (action and incident fields are
/// filled in here) and who took part.
pub struct Found {
    /// The alert as it stands this scan.
    pub alert: Alert,
    /// Every matching process.
    pub members: Vec<ProcKey>,
}

/// One open incident.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Incident {
    /// The last alert raised or refreshed for it.
    pub last: Alert,
    /// Every process that has matched.
    pub members: Vec<ProcKey>,
    /// Consecutive scans without a match.
    pub misses: u32,
}

/// Open incidents.
#[derive(Default)]
pub struct Incidents {
    open: BTreeMap<SocketKey, Incident>,
    changed: bool,
}

impl Incidents {
    /// Incidents carried over from a previous run of the agent.
    pub fn restored(incidents: Vec<Incident>) -> Self {
        let open = incidents.into_iter().map(|i| (i.last.socket.key, i)).collect();
        Incidents { open, changed: false }
    }

    /// Open incidents, by socket.
    pub fn open(&self) -> impl Iterator<Item = &Incident> {
        self.open.values()
    }

    /// True (once) when incidents changed since the last call: time to save them.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Applies one scan's matches. `socket_alive` tells whether a socket is still in the snapshot;
    /// `first_scan` marks what opens now as present when the agent started.
    pub fn update(
        &mut self,
        found: Vec<Found>,
        socket_alive: impl Fn(SocketKey) -> bool,
        (seq, at_ms): (u64, u64),
        first_scan: bool,
    ) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let mut matched = std::collections::HashSet::new();
        for Found { mut alert, members } in found {
            let key = alert.socket.key;
            matched.insert(key);
            match self.open.get_mut(&key) {
                None => {
                    alert.action = AlertAction::Opened;
                    alert.incident_id = uuid::Uuid::now_v7().to_string();
                    alert.opened_seq = seq;
                    alert.present_at_start = first_scan;
                    self.open.insert(key, Incident { last: alert.clone(), members, misses: 0 });
                    self.changed = true;
                    alerts.push(alert);
                }
                Some(incident) => {
                    let new_rules = alert
                        .rules
                        .iter()
                        .any(|r| !incident.last.rules.iter().any(|o| o.id == r.id));
                    let new_members = members.iter().any(|m| !incident.members.contains(m));
                    alert.incident_id = incident.last.incident_id.clone();
                    alert.opened_seq = incident.last.opened_seq;
                    alert.first_seen_seq = incident.last.first_seen_seq;
                    alert.present_at_start = incident.last.present_at_start;
                    // The rules that ever matched stay listed: an update never forgets one.
                    for old in &incident.last.rules {
                        if !alert.rules.iter().any(|r| r.id == old.id) {
                            alert.rules.push(old.clone());
                        }
                    }
                    alert.severity =
                        alert.rules.iter().map(|r| r.severity).max().unwrap_or(alert.severity);
                    for member in members {
                        if !incident.members.contains(&member) {
                            incident.members.push(member);
                        }
                    }
                    incident.misses = 0;
                    if new_rules || new_members {
                        alert.action = AlertAction::Updated;
                        alerts.push(alert.clone());
                        self.changed = true;
                    }
                    incident.last = alert;
                }
            }
        }
        let keys: Vec<SocketKey> =
            self.open.keys().copied().filter(|k| !matched.contains(k)).collect();
        for key in keys {
            let alive = socket_alive(key);
            let incident = self.open.get_mut(&key).expect("key from the map");
            incident.misses += 1;
            let reason = if !alive {
                "socket_closed"
            } else if incident.misses >= MISSES_TO_RESOLVE {
                "no_longer_matching"
            } else {
                continue;
            };
            alerts.push(self.resolve(key, reason, seq, at_ms));
        }
        alerts
    }

    /// Drops rules that no longer exist from every incident; incidents left with none resolve.
    pub fn retain_rules(
        &mut self,
        exists: impl Fn(&str) -> bool,
        seq: u64,
        at_ms: u64,
    ) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let keys: Vec<SocketKey> = self.open.keys().copied().collect();
        for key in keys {
            let incident = self.open.get_mut(&key).expect("key from the map");
            let before = incident.last.rules.len();
            incident.last.rules.retain(|r| exists(&r.id));
            if incident.last.rules.len() != before {
                self.changed = true;
            }
            if incident.last.rules.is_empty() {
                alerts.push(self.resolve(key, "rule_removed", seq, at_ms));
            }
        }
        alerts
    }

    /// Resolves every incident (the host rebooted: their sockets are gone).
    pub fn resolve_all(&mut self, reason: &str, seq: u64, at_ms: u64) -> Vec<Alert> {
        let keys: Vec<SocketKey> = self.open.keys().copied().collect();
        keys.into_iter().map(|k| self.resolve(k, reason, seq, at_ms)).collect()
    }

    fn resolve(&mut self, key: SocketKey, reason: &str, seq: u64, at_ms: u64) -> Alert {
        let incident = self.open.remove(&key).expect("resolving an open incident");
        self.changed = true;
        let mut alert = incident.last;
        alert.action = AlertAction::Resolved;
        alert.reason = Some(reason.to_string());
        alert.snapshot_seq = seq;
        alert.at_ms = at_ms;
        alert
    }
}
