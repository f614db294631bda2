//! The engine: evaluates every enabled rule on every subject of a snapshot, groups matches by the
//! socket reached, and drives the incidents. Every subject is evaluated every scan: a compiled
//! rule costs tens of nanoseconds per subject, and evaluating all of them is what makes "alerted in
//! the first scan that sees it" hold without any bookkeeping of what changed.

use super::incident::{Found, Incident, Incidents};
use super::ruleset::{Covers, Rule, RuleSet};
use super::subject::{Clock, Context, Subject, Subjects, VIAS, subjects, via_bit};
use crate::graph::Graph;
use crate::model::{
    Alert, AlertAction, IncidentEndpoint, ProcKey, Process, RuleHit, Severity, SocketKey, StdioPath,
};
use rustc_hash::FxHashMap;
use std::collections::HashMap;

/// (first snapshot seen with this executable, last snapshot seen, the executable's (dev, inode)).
type ProcessSeen = (u64, u64, Option<(u64, u64)>);

/// What an evaluation reads: a scan of the host, or a look at a few processes between scans.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Scan,
    Look,
}

/// Evaluates rules and keeps incidents.
pub struct Engine {
    rules: RuleSet,
    incidents: Incidents,
    clock: Clock,
    scans: u64,
    /// Each process: (first snapshot seen with its current executable, last snapshot seen,
    /// that executable's (dev, inode)). Updated in place, pruned of what was not seen.
    process_seen: FxHashMap<ProcKey, ProcessSeen>,
    /// Each network socket with a holder (exactly the sockets subjects are made of: every route
    /// ends at a socket its last relay holds), with the first snapshot that showed it; sorted by
    /// key, carried from scan to scan by a merge rather than a lookup per subject.
    socket_seen: Vec<(SocketKey, u64)>,
}

/// What one scan's evaluation found and cost, for the heartbeat and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvaluationStats {
    /// Subjects evaluated.
    pub subjects: usize,
    /// Rules evaluated on each.
    pub rules: usize,
    /// Sockets matched by at least one rule.
    pub matched_sockets: usize,
    /// Time spent building subjects from the graph.
    pub subjects_time: std::time::Duration,
    /// Time spent evaluating rules on them.
    pub rules_time: std::time::Duration,
}

/// One graph's subjects, built once: rule evaluation measured on its own.
pub struct Prepared<'g> {
    cx: Context<'g>,
    subjects: Vec<Subject<'g>>,
}

impl<'g> Prepared<'g> {
    /// Builds the subjects of a graph.
    pub fn new(graph: &'g Graph<'g>, clock: Clock) -> Self {
        let cx = Context::new(graph, clock);
        let subjects = subjects(&cx);
        Prepared { cx, subjects }
    }

    /// Number of subjects.
    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    /// No subjects.
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// The subjects and their context, for evaluating single conditions in tests.
    #[cfg(test)]
    pub(crate) fn parts(&self) -> (&[Subject<'g>], &Context<'g>) {
        (&self.subjects, &self.cx)
    }
}

impl RuleSet {
    /// How many (subject, enabled rule) pairs match.
    pub fn count_matches(&self, prepared: &Prepared<'_>) -> usize {
        let rules: Vec<_> = self.enabled().collect();
        // Forgotten all before any is evaluated: a process's subjects share what they remember.
        prepared.subjects.iter().for_each(Subject::forget);
        let mut matches = 0;
        for subject in &prepared.subjects {
            for rule in &rules {
                matches += usize::from((rule.predicate)(subject, &prepared.cx));
            }
        }
        matches
    }
}

impl Engine {
    /// An engine with no open incidents.
    pub fn new(rules: RuleSet, clock: Clock) -> Self {
        Engine::with_incidents(rules, clock, Vec::new())
    }

    /// An engine resuming incidents saved by a previous run.
    pub fn with_incidents(rules: RuleSet, clock: Clock, incidents: Vec<Incident>) -> Self {
        Engine {
            rules,
            incidents: Incidents::restored(incidents),
            clock,
            scans: 0,
            process_seen: FxHashMap::default(),
            socket_seen: Vec::new(),
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Open incidents.
    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.open()
    }

    /// Keeps the context read for an alert of incident `id` with the incident.
    pub fn remember_context(&mut self, id: &str, context: &[crate::model::ProcessContext]) {
        self.incidents.remember_context(id, context);
    }

    /// True (once) when incidents changed since the last call.
    pub fn incidents_changed(&mut self) -> bool {
        self.incidents.take_changed()
    }

    /// Resolves every open incident (used when saved incidents belong to another boot).
    pub fn resolve_all(&mut self, reason: &str, at_ms: u64) -> Vec<Alert> {
        self.incidents.resolve_all(reason, self.scans, at_ms)
    }

    /// Swaps in a new rule set. Incidents keep their state; rules that are gone are dropped from
    /// them, and incidents left with no rule resolve (`rule_removed`).
    pub fn replace_rules(&mut self, rules: RuleSet, at_ms: u64) -> Vec<Alert> {
        self.rules = rules;
        let rules = &self.rules;
        self.incidents.retain_rules(
            |id| rules.get(id).is_some_and(|r| r.enabled),
            self.scans,
            at_ms,
        )
    }

    /// Evaluates one snapshot's graph; returns the alerts it raises. Subjects are built and
    /// evaluated one process at a time; only matches are kept.
    pub fn evaluate(&mut self, graph: &Graph<'_>) -> (Vec<Alert>, EvaluationStats) {
        self.scans += 1;
        self.note_sockets(graph);
        self.evaluate_as(graph, Seen::Scan)
    }

    /// Evaluates a look between scans (`scan::Examiner`): a few processes, not the host. It can
    /// open and update incidents, never resolve one (what it did not read is not gone), and it
    /// leaves the scans' memory of sockets and processes as it was.
    pub fn evaluate_look(&mut self, graph: &Graph<'_>) -> (Vec<Alert>, EvaluationStats) {
        self.evaluate_as(graph, Seen::Look)
    }

    fn evaluate_as(&mut self, graph: &Graph<'_>, seen: Seen) -> (Vec<Alert>, EvaluationStats) {
        let snapshot = graph.snapshot;
        let seq = snapshot.seq;
        let cx = Context::new(graph, self.clock);
        let rules: Vec<_> = self.rules.enabled().collect();
        let mut stats = EvaluationStats { rules: rules.len(), ..EvaluationStats::default() };
        let mut builder = Subjects::default();
        let mut batch: Vec<Subject<'_>> = Vec::new();
        let mut live: Vec<(usize, &Rule)> = Vec::with_capacity(rules.len());
        let mut matched: Vec<usize> = Vec::new();
        let mut hits: HashMap<SocketKey, Vec<Hit<'_>>> = HashMap::new();
        for process in &snapshot.processes {
            let began = std::time::Instant::now();
            batch.clear();
            builder.of(&cx, process, &mut batch);
            let built = std::time::Instant::now();
            stats.subjects_time += built - began;
            stats.subjects += batch.len();
            note_process(&mut self.process_seen, process, seq);
            // The rules this process can match: a gate reads only the process, so any of its
            // subjects answers it for all.
            live.clear();
            if let Some(probe) = batch.first() {
                live.extend(rules.iter().copied().enumerate().filter(|(_, rule)| {
                    rule.process_gate.as_ref().is_none_or(|gate| gate(probe, &cx))
                }));
            }
            for &(r, rule) in &live {
                matched.clear();
                let mut streams = 0u8;
                for (i, subject) in batch.iter().enumerate() {
                    if (rule.predicate)(subject, &cx) {
                        matched.push(i);
                        streams |= subject.stdio_fds;
                    }
                }
                let covered = match rule.covers {
                    None => true,
                    Some(Covers::StdinAndOutput) => streams & 1 != 0 && streams & 0b110 != 0,
                };
                if !covered {
                    continue;
                }
                for &i in &matched {
                    let subject = &batch[i];
                    let first_seen = self.socket_first_seen(subject.socket.key, seq);
                    let hit = Hit::new(subject, r, first_seen);
                    hits.entry(subject.socket.key).or_default().push(hit);
                }
            }
            stats.rules_time += built.elapsed();
        }
        if seen == Seen::Scan {
            self.process_seen.retain(|_, seen| seen.1 == seq);
        }
        stats.matched_sockets = hits.len();
        let mut found = incident_groups(&hits)
            .iter()
            .map(|group| self.found(&cx, &hits, group, &rules, seq))
            .collect::<Vec<_>>();
        let at = (seq, snapshot.taken_at_ms);
        let alerts = match seen {
            Seen::Scan => {
                let alive =
                    |key: SocketKey| snapshot.sockets.binary_search_by_key(&key, |s| s.key).is_ok();
                self.incidents.update(found, alive, at, self.scans == 1)
            }
            Seen::Look => {
                found.iter_mut().for_each(|f| f.alert.seen_by_look = true);
                self.incidents.add(found, at)
            }
        };
        (alerts, stats)
    }

    /// Carries each network socket with a holder over from the last scan with its first-seen
    /// snapshot; new ones are first seen now. Both lists are sorted by key: one merge.
    fn note_sockets(&mut self, graph: &Graph<'_>) {
        let seq = graph.snapshot.seq;
        let before = std::mem::take(&mut self.socket_seen);
        let mut earlier = before.iter().peekable();
        for socket in &graph.snapshot.sockets {
            if socket.holders.is_empty() || !graph.is_network(socket) {
                continue;
            }
            while earlier.next_if(|(key, _)| *key < socket.key).is_some() {}
            let first = earlier.next_if(|(key, _)| *key == socket.key).map_or(seq, |(_, f)| *f);
            self.socket_seen.push((socket.key, first));
        }
    }

    /// The snapshot that first showed a socket (this one, for a socket not noted).
    fn socket_first_seen(&self, key: SocketKey, seq: u64) -> u64 {
        let found = self.socket_seen.binary_search_by_key(&key, |(k, _)| *k);
        found.map_or(seq, |i| self.socket_seen[i].1)
    }

    /// The alert one group of sockets raises: the sockets one set of processes matched on.
    fn found(
        &self,
        cx: &Context<'_>,
        by_socket: &HashMap<SocketKey, Vec<Hit<'_>>>,
        group: &[SocketKey],
        rules: &[&Rule],
        seq: u64,
    ) -> Found {
        let hits: Vec<&Hit<'_>> = group.iter().flat_map(|k| &by_socket[k]).collect();
        let mut members: Vec<ProcKey> = Vec::new();
        for hit in &hits {
            if !members.contains(&hit.process.key) {
                members.push(hit.process.key);
            }
        }
        // The process the alert is about: among those matching the most severe rule (the shell,
        // not the `cat` relaying to it), the top-most (the shell, not its `sleep` child).
        let worst = |key: ProcKey| {
            hits.iter().filter(|h| h.process.key == key).map(|h| rules[h.rule].severity).max()
        };
        let most = members.iter().map(|&m| worst(m)).max().flatten();
        let leading: Vec<ProcKey> = members.iter().copied().filter(|&m| worst(m) == most).collect();
        // A shell among the members that is an ancestor of that process is the one behind it:
        // a reverse shell whose `$(…)` subshell matches a more severe rule (its output relayed
        // by the shell) is still about the shell. (An interpreter relaying its child shell,
        // `pty.spawn`, is not: the alert is about the shell it serves.)
        let top_key = top_most(cx, &leading);
        let is_shell = |p: &&Process| {
            let identity = p.exe.as_ref().and_then(|e| e.identity.as_ref());
            identity.is_some_and(|i| i.kind == crate::model::BinaryKind::Shell)
        };
        let top_key = cx
            .by_key(top_key)
            .and_then(|top| {
                cx.ancestors(top).filter(|a| members.contains(&a.key)).filter(is_shell).last()
            })
            .map_or(top_key, |a| a.key);
        let primary = primary_socket(group, by_socket, rules, top_key);
        let on_primary = &by_socket[&primary];
        let top = on_primary.iter().find(|h| h.process.key == top_key).unwrap_or(&on_primary[0]);
        let mut rule_hits: Vec<RuleHit> = Vec::new();
        // The primary socket's rules first: its message leads.
        for hit in on_primary.iter().chain(hits.iter().copied()) {
            let rule = rules[hit.rule];
            if rule_hits.iter().any(|h| h.id == rule.id) {
                continue;
            }
            // The message speaks of the top-most process when it matched this rule itself.
            let speaker = hits
                .iter()
                .find(|h| h.rule == hit.rule && h.process.key == top_key)
                .copied()
                .unwrap_or(hit);
            rule_hits.push(RuleHit {
                id: rule.id.clone(),
                version: rule.version,
                name: rule.name.clone(),
                severity: rule.severity,
                tags: rule.tags.clone(),
                message: Shown::of(cx, speaker, rule).message,
                description: rule.description.clone(),
                reference: rule.reference.clone(),
            });
        }
        let severity =
            rule_hits.iter().map(|h| h.severity).max().unwrap_or(Severity::Informational);
        let process_first = self.process_seen.get(&top_key).map_or(seq, |s| s.0);
        let processes: Vec<Process> =
            members.iter().filter_map(|&k| cx.by_key(k)).cloned().collect();
        let mut holders: Vec<Process> = Vec::new();
        for holder in &top.socket.holders {
            if !holders.iter().any(|p| p.key == holder.proc) {
                holders.extend(cx.by_key(holder.proc).cloned());
            }
        }
        let endpoint = |key: &SocketKey| {
            let on = &by_socket[key];
            let streams = on.iter().fold(0u8, |m, h| m | h.stdio_fds);
            IncidentEndpoint {
                socket: on[0].socket.clone(),
                direction: on[0].direction,
                streams: (0..3).filter(|n| streams & (1 << n) != 0).collect(),
            }
        };
        let endpoints: Vec<IncidentEndpoint> = std::iter::once(&primary)
            .chain(group.iter().filter(|k| **k != primary))
            .map(endpoint)
            .collect();
        // A match on several sockets needed all of them: it could be seen once the last was.
        let first_seen = hits.iter().map(|h| h.socket_first_seen).max().unwrap_or(seq);
        let ancestors = super::lineage::ancestors(cx, top.process);
        let lineage = std::iter::once(top.process).chain(&ancestors);
        let login_origin = super::lineage::login_origin(cx, lineage);
        let alert = Alert {
            action: AlertAction::Opened,
            incident_id: String::new(),
            socket: top.socket.clone(),
            endpoints,
            direction: top.direction,
            severity,
            rules: rule_hits,
            subject: Some(top.process.clone()),
            ancestors,
            login_origin,
            context: Vec::new(),
            processes,
            holders,
            path: path(cx, &hits, top, rules),
            fds: top.fds.clone(),
            snapshot_seq: seq,
            opened_seq: seq,
            opened_at_ms: cx.snapshot().taken_at_ms,
            first_seen_seq: process_first.max(first_seen),
            present_at_start: false,
            seen_by_look: false,
            reason: None,
            at_ms: cx.snapshot().taken_at_ms,
        };
        Found { alert, members, sockets: group.to_vec() }
    }
}

/// Sockets matched by the same process belong to one incident: a shell that reads commands from
/// one connection and answers on another, or that opens a second one, is one intrusion. Groups
/// are connected by shared processes, in socket order.
fn incident_groups(hits: &HashMap<SocketKey, Vec<Hit<'_>>>) -> Vec<Vec<SocketKey>> {
    let mut keys: Vec<SocketKey> = hits.keys().copied().collect();
    keys.sort_unstable();
    let mut by_process: HashMap<ProcKey, usize> = HashMap::new();
    let mut groups: Vec<Vec<SocketKey>> = Vec::new();
    let mut parent: Vec<usize> = Vec::new();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (i, key) in keys.iter().enumerate() {
        parent.push(i);
        for hit in &hits[key] {
            match by_process.get(&hit.process.key) {
                Some(&other) => {
                    let (a, b) = (root(&mut parent, i), root(&mut parent, other));
                    parent[a.max(b)] = a.min(b);
                }
                None => {
                    by_process.insert(hit.process.key, i);
                }
            }
        }
    }
    let mut slot: HashMap<usize, usize> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        let r = root(&mut parent, i);
        let g = *slot.entry(r).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(*key);
    }
    groups
}

/// The socket an incident is named after: the one with the most severe rule, then the one the
/// top-most process reads its stdin from (where its commands come from), then by direction
/// (outbound, unknown, inbound), then the first.
fn primary_socket(
    group: &[SocketKey],
    by_socket: &HashMap<SocketKey, Vec<Hit<'_>>>,
    rules: &[&Rule],
    top: ProcKey,
) -> SocketKey {
    let rank = |key: &SocketKey| {
        let hits = &by_socket[key];
        let severity = hits.iter().map(|h| rules[h.rule].severity).max();
        let stdin = hits.iter().any(|h| h.process.key == top && h.stdio_fds & 1 != 0);
        let direction = match hits[0].direction.0 {
            crate::model::Direction::Outbound => 0,
            crate::model::Direction::Unknown => 1,
            crate::model::Direction::Inbound => 2,
            crate::model::Direction::Listening => 3,
        };
        (std::cmp::Reverse(severity), !stdin, direction, *key)
    };
    group.iter().min_by_key(|k| rank(k)).copied().unwrap_or(group[0])
}

/// Records a process sighting; its first-seen scan restarts when its executable changes.
fn note_process(seen: &mut FxHashMap<ProcKey, ProcessSeen>, process: &Process, seq: u64) {
    let exe = process.exe.as_ref().map(|e| (e.dev, e.ino));
    let entry = seen.entry(process.key).or_insert((seq, seq, exe));
    if entry.2 != exe {
        *entry = (seq, seq, exe);
    }
    entry.1 = seq;
}

/// One (subject, rule) match, with what the alert needs from the subject (which is gone by the
/// time alerts are built).
struct Hit<'g> {
    process: &'g Process,
    socket: &'g crate::model::Socket,
    direction: (crate::model::Direction, crate::model::DirectionSource),
    rule: usize,
    stdio_fds: u8,
    vias: u8,
    /// Some route passes through a relay. The relays themselves, and the rule's message, are
    /// found again for the few hits an alert shows (`Shown`): a host can have hundreds of
    /// thousands of hits in one scan.
    relayed: bool,
    fds: Vec<i32>,
    socket_first_seen: u64,
}

impl<'g> Hit<'g> {
    fn new(subject: &Subject<'g>, rule: usize, socket_first_seen: u64) -> Self {
        Hit {
            process: subject.process,
            socket: subject.socket,
            direction: subject.direction,
            rule,
            stdio_fds: subject.stdio_fds,
            vias: subject.vias,
            relayed: subject.relayed,
            fds: subject.fds.clone(),
            socket_first_seen,
        }
    }
}

/// What an alert shows of a hit, read from its subject built again: the rule's message and the
/// relays.
struct Shown {
    message: String,
    relays: Vec<ProcKey>,
}

impl Shown {
    fn of(cx: &Context<'_>, hit: &Hit<'_>, rule: &Rule) -> Shown {
        let mut batch = Vec::new();
        Subjects::default().of(cx, hit.process, &mut batch);
        match batch.iter().find(|s| s.socket.key == hit.socket.key) {
            Some(subject) => {
                Shown { message: rule.message.render(subject, cx), relays: subject.relays(cx) }
            }
            None => Shown { message: String::new(), relays: Vec::new() },
        }
    }
}

/// The stdio path an alert shows: the subject's own when its stdio is relayed, else that of the
/// top-most matching process whose stdio is relayed, else the subject's.
fn path(cx: &Context<'_>, hits: &[&Hit<'_>], top: &Hit<'_>, rules: &[&Rule]) -> StdioPath {
    let relayed: Vec<ProcKey> = hits.iter().filter(|h| h.relayed).map(|h| h.process.key).collect();
    let chosen = if relayed.is_empty() {
        top
    } else if let Some(own) = hits.iter().find(|h| h.process.key == top.process.key && h.relayed) {
        own
    } else {
        let key = top_most(cx, &relayed);
        hits.iter().find(|h| h.process.key == key && h.relayed).copied().unwrap_or(top)
    };
    let relays =
        if chosen.relayed { Shown::of(cx, chosen, rules[chosen.rule]).relays } else { Vec::new() };
    StdioPath {
        process: chosen.process.key,
        stdio_fds: (0..3).filter(|n| chosen.stdio_fds & (1 << n) != 0).collect(),
        vias: VIAS.iter().copied().filter(|v| chosen.vias & via_bit(*v) != 0).collect(),
        relays: relays.iter().filter_map(|&k| cx.by_key(k)).cloned().collect(),
    }
}

/// The member none of whose ancestors is a member (the shell, not its children); among several,
/// the one started first.
fn top_most(cx: &Context<'_>, members: &[ProcKey]) -> ProcKey {
    let mut tops: Vec<ProcKey> = members
        .iter()
        .copied()
        .filter(|&m| {
            cx.by_key(m).is_none_or(|p| !cx.ancestors(p).any(|a| members.contains(&a.key)))
        })
        .collect();
    tops.sort_by_key(|k| (k.start_ticks, k.pid));
    tops.first().copied().unwrap_or(members[0])
}
