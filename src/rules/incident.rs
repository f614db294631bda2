//! Incident lifecycle (DESIGN §4). An incident is keyed by the network socket reached: it opens
//! when the socket first matches, is updated when new rules or processes join, and resolves once,
//! with a reason, when the socket closes, when nothing has matched for `MISSES_TO_RESOLVE` scans,
//! or when its rules are removed. A process leaving (a child exiting) is not news.

use crate::model::{Alert, AlertAction, ProcKey, ProcessContext, SocketKey};
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
    /// Every socket they matched on (the alert's own first among them or not).
    pub sockets: Vec<SocketKey>,
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

    /// Keeps the context read for an alert of incident `id` with the incident.
    pub fn remember_context(&mut self, id: &str, context: &[ProcessContext]) {
        if let Some(incident) = self.open.values_mut().find(|i| i.last.incident_id == id) {
            incident.last.context = context.to_vec();
            self.changed = true;
        }
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
        let (mut alerts, matched) = self.apply(found, seq, first_scan, false);
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

    /// Applies what a look between scans found: incidents open and grow, and none resolves
    /// (a look reads a few processes, so what it did not see is not gone).
    pub fn add(&mut self, found: Vec<Found>, (seq, _at_ms): (u64, u64)) -> Vec<Alert> {
        self.apply(found, seq, false, true).0
    }

    /// Opens or updates the incident of each match; returns the alerts and the incidents matched.
    /// `partial`: the matches come from a look at a few processes, so the processes the incident
    /// listed before and the look did not read are still listed.
    fn apply(
        &mut self,
        found: Vec<Found>,
        seq: u64,
        first_scan: bool,
        partial: bool,
    ) -> (Vec<Alert>, std::collections::HashSet<SocketKey>) {
        let mut alerts = Vec::new();
        let mut matched = std::collections::HashSet::new();
        for Found { mut alert, members, sockets } in found {
            // An open incident about any of these sockets goes on (under its own socket): a
            // second connection joining a shell is news for the same incident.
            let continued = std::iter::once(alert.socket.key)
                .chain(sockets.iter().copied())
                .find(|k| self.open.contains_key(k) && !matched.contains(k));
            let key = continued.unwrap_or(alert.socket.key);
            if key != alert.socket.key {
                lead_with(&mut alert, key);
            }
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
                    let known =
                        |k: SocketKey| incident.last.endpoints.iter().any(|e| e.socket.key == k);
                    let new_sockets = sockets.iter().any(|&k| k != key && !known(k));
                    // Sockets that matched once stay listed, like rules.
                    for old in &incident.last.endpoints {
                        if !alert.endpoints.iter().any(|e| e.socket.key == old.socket.key) {
                            alert.endpoints.push(old.clone());
                        }
                    }
                    alert.incident_id = incident.last.incident_id.clone();
                    alert.opened_seq = incident.last.opened_seq;
                    alert.opened_at_ms = incident.last.opened_at_ms;
                    alert.first_seen_seq = incident.last.first_seen_seq;
                    alert.present_at_start = incident.last.present_at_start;
                    alert.seen_by_look = incident.last.seen_by_look;
                    if partial {
                        for old in &incident.last.processes {
                            if !alert.processes.iter().any(|p| p.key == old.key) {
                                alert.processes.push(old.clone());
                            }
                        }
                    }
                    // The rules that ever matched stay listed: an update never forgets one.
                    for old in &incident.last.rules {
                        if !alert.rules.iter().any(|r| r.id == old.id) {
                            alert.rules.push(old.clone());
                        }
                    }
                    alert.severity =
                        alert.rules.iter().map(|r| r.severity).max().unwrap_or(alert.severity);
                    // Members a look saw are left for a scan to report (it lists who is there).
                    for member in members.into_iter().filter(|_| !partial) {
                        if !incident.members.contains(&member) {
                            incident.members.push(member);
                        }
                    }
                    incident.misses = 0;
                    // A look sees every short-lived child of a shell that inherits its
                    // socket: a look does not report them, or a reverse shell's every command
                    // would be an alert; the scans report who is there.
                    if new_rules || (new_members && !partial) || new_sockets {
                        alert.action = AlertAction::Updated;
                        alerts.push(alert.clone());
                        self.changed = true;
                    }
                    // The last context read stays with the incident (`incidents` shows it)
                    // until one is read for a newer alert.
                    if alert.context.is_empty() {
                        alert.context = std::mem::take(&mut incident.last.context);
                    }
                    incident.last = alert;
                }
            }
        }
        (alerts, matched)
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

/// Makes the endpoint with socket `key` the alert's own: an incident keeps the socket it was
/// opened for while that socket lives.
fn lead_with(alert: &mut Alert, key: SocketKey) {
    let Some(at) = alert.endpoints.iter().position(|e| e.socket.key == key) else { return };
    let endpoint = alert.endpoints.remove(at);
    alert.socket = endpoint.socket.clone();
    alert.direction = endpoint.direction;
    alert.endpoints.insert(0, endpoint);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Direction, DirectionSource, Family, IncidentEndpoint, Protocol, RuleHit, Severity, Socket,
        SocketState, StdioPath, TableSource,
    };

    fn found(inode: u64, rules: &[&str], members: &[i32]) -> Found {
        let key = SocketKey { netns: 1, inode };
        let socket = Socket::new(
            key,
            Family::Inet,
            Protocol::Tcp,
            SocketState::Established,
            TableSource::SockDiag,
        );
        let hit = |id: &&str| RuleHit {
            id: id.to_string(),
            version: 1,
            name: id.to_string(),
            severity: Severity::High,
            tags: Vec::new(),
            message: String::new(),
            description: String::new(),
            reference: None,
        };
        let members: Vec<ProcKey> =
            members.iter().map(|&pid| ProcKey { pid, start_ticks: 1 }).collect();
        let alert = Alert {
            action: AlertAction::Opened,
            incident_id: String::new(),
            endpoints: vec![IncidentEndpoint {
                socket: socket.clone(),
                direction: (Direction::Outbound, DirectionSource::PortRange),
                streams: vec![0, 1],
            }],
            socket,
            direction: (Direction::Outbound, DirectionSource::PortRange),
            severity: Severity::High,
            rules: rules.iter().map(hit).collect(),
            subject: None,
            ancestors: Vec::new(),
            login_origin: None,
            context: Vec::new(),
            processes: Vec::new(),
            holders: Vec::new(),
            path: StdioPath {
                process: members[0],
                stdio_fds: vec![0],
                vias: Vec::new(),
                relays: Vec::new(),
            },
            fds: Vec::new(),
            snapshot_seq: 0,
            opened_seq: 0,
            opened_at_ms: 0,
            first_seen_seq: 0,
            present_at_start: false,
            seen_by_look: false,
            reason: None,
            at_ms: 0,
        };
        Found { alert, members, sockets: vec![key] }
    }

    fn actions(alerts: &[Alert]) -> Vec<(AlertAction, Option<&str>)> {
        alerts.iter().map(|a| (a.action, a.reason.as_deref())).collect()
    }

    #[test]
    fn opens_once_updates_on_news_and_resolves_after_two_quiet_scans() {
        let mut incidents = Incidents::default();
        let alive = |_| true;
        let opened = incidents.update(vec![found(7, &["a"], &[10])], alive, (1, 0), true);
        assert_eq!(actions(&opened), [(AlertAction::Opened, None)]);
        assert!(opened[0].present_at_start);
        let id = opened[0].incident_id.clone();
        // Same match: nothing to say.
        assert!(incidents.update(vec![found(7, &["a"], &[10])], alive, (2, 0), false).is_empty());
        // A child joins, then a rule: two updates of the same incident.
        let child = incidents.update(vec![found(7, &["a"], &[10, 11])], alive, (3, 0), false);
        let rule = incidents.update(vec![found(7, &["b"], &[10])], alive, (4, 0), false);
        assert_eq!(actions(&child), [(AlertAction::Updated, None)]);
        assert_eq!(actions(&rule), [(AlertAction::Updated, None)]);
        assert_eq!(rule[0].incident_id, id);
        let ids: Vec<&str> = rule[0].rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"], "rules that matched once stay listed");
        // A child leaving is not news; one quiet scan is not the end; the second is.
        assert!(incidents.update(vec![found(7, &["b"], &[10])], alive, (5, 0), false).is_empty());
        assert!(incidents.update(vec![], alive, (6, 0), false).is_empty());
        let resolved = incidents.update(vec![], alive, (7, 0), false);
        assert_eq!(actions(&resolved), [(AlertAction::Resolved, Some("no_longer_matching"))]);
        assert_eq!((resolved[0].incident_id.as_str(), resolved[0].snapshot_seq), (id.as_str(), 7));
        assert_eq!(incidents.open().count(), 0);
    }

    fn process(pid: i32) -> crate::model::Process {
        let mut builder = crate::model::fixture::Builder::new();
        builder.process(pid, "sh");
        let mut process = builder.build().processes.remove(0);
        process.key = ProcKey { pid, start_ticks: 1 };
        process
    }

    #[test]
    fn a_look_opens_and_updates_but_never_resolves_and_forgets_no_process() {
        let mut incidents = Incidents::default();
        let mut first = found(7, &["a"], &[10, 11]);
        first.alert.processes = vec![process(10), process(11)];
        first.alert.seen_by_look = true;
        let opened = incidents.add(vec![first], (3, 0));
        assert_eq!(actions(&opened), [(AlertAction::Opened, None)]);
        // A look at another exec sees the shell and a new child, not the first child: the
        // child joins quietly (every command of a reverse shell would be an alert).
        let mut second = found(7, &["a"], &[10, 12]);
        second.alert.processes = vec![process(10), process(12)];
        assert!(incidents.add(vec![second], (3, 0)).is_empty());
        // News (a rule) is said, with every process seen so far.
        let mut third = found(7, &["b"], &[10]);
        third.alert.processes = vec![process(10)];
        let updated = incidents.add(vec![third], (3, 0));
        assert_eq!(actions(&updated), [(AlertAction::Updated, None)]);
        let pids: Vec<i32> = updated[0].processes.iter().map(|p| p.key.pid).collect();
        assert_eq!(pids, [10, 12, 11], "what the look did not read is still listed");
        // A look that matches nothing resolves nothing.
        assert!(incidents.add(vec![], (3, 0)).is_empty());
        assert!(incidents.add(vec![], (3, 0)).is_empty());
        assert_eq!(incidents.open().count(), 1);
        // Scans then see it as a scan would; it was a look that opened it.
        let scanned = incidents.update(vec![found(7, &["c"], &[10])], |_| true, (4, 0), false);
        assert!(scanned[0].seen_by_look, "opened by an exec check");
        assert!(incidents.update(vec![], |_| false, (5, 0), false)[0].reason.is_some());
    }

    #[test]
    fn a_closed_socket_resolves_at_once_and_removed_rules_resolve_their_incidents() {
        let mut incidents = Incidents::default();
        let both = vec![found(1, &["a"], &[10]), found(2, &["a", "b"], &[20])];
        assert_eq!(incidents.update(both, |_| true, (1, 0), false).len(), 2);
        let closed =
            incidents.update(vec![found(2, &["a", "b"], &[20])], |k| k.inode != 1, (2, 0), false);
        assert_eq!(actions(&closed), [(AlertAction::Resolved, Some("socket_closed"))]);
        assert!(incidents.take_changed());
        // Rule `a` removed: incident 2 keeps `b` and stays open.
        assert!(incidents.retain_rules(|id| id != "a", 2, 0).is_empty());
        let gone = incidents.retain_rules(|_| false, 2, 0);
        assert_eq!(actions(&gone), [(AlertAction::Resolved, Some("rule_removed"))]);
        assert!(incidents.take_changed());
        assert!(!incidents.take_changed(), "taken once");
    }
}
