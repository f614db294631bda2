//! The engine: evaluates every enabled rule on every subject of a snapshot, groups matches by the
//! socket reached, and drives the incidents. Every subject is evaluated every scan: a compiled
//! rule costs tens of nanoseconds per subject, and evaluating all of them is what makes "alerted in
//! the first scan that sees it" hold without any bookkeeping of what changed.

use super::incident::{Found, Incident, Incidents};
use super::ruleset::RuleSet;
use super::subject::{Clock, Context, Subject, VIAS, subjects, via_bit};
use crate::graph::Graph;
use crate::model::{Alert, AlertAction, ProcKey, Process, RuleHit, Severity, SocketKey, StdioPath};
use std::collections::HashMap;

/// Evaluates rules and keeps incidents.
pub struct Engine {
    rules: RuleSet,
    incidents: Incidents,
    clock: Clock,
    scans: u64,
    /// First snapshot each process was seen in with its current executable (dev, inode).
    process_seen: HashMap<ProcKey, (u64, Option<(u64, u64)>)>,
    /// First snapshot each subject socket was seen in.
    socket_seen: HashMap<SocketKey, u64>,
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
}

impl RuleSet {
    /// How many (subject, enabled rule) pairs match.
    pub fn count_matches(&self, prepared: &Prepared<'_>) -> usize {
        let rules: Vec<_> = self.enabled().collect();
        let mut matches = 0;
        for subject in &prepared.subjects {
            subject.forget();
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
            process_seen: HashMap::new(),
            socket_seen: HashMap::new(),
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

    /// Evaluates one snapshot's graph; returns the alerts it raises.
    pub fn evaluate(&mut self, graph: &Graph<'_>) -> (Vec<Alert>, EvaluationStats) {
        self.scans += 1;
        let snapshot = graph.snapshot;
        let seq = snapshot.seq;
        let began = std::time::Instant::now();
        let cx = Context::new(graph, self.clock);
        let subjects = subjects(&cx);
        let subjects_time = began.elapsed();
        self.remember_first_sightings(graph, &subjects, seq);
        let rules: Vec<_> = self.rules.enabled().collect();
        let mut stats = EvaluationStats {
            subjects: subjects.len(),
            rules: rules.len(),
            subjects_time,
            ..EvaluationStats::default()
        };
        let began = std::time::Instant::now();

        // socket -> (subject index, rule index) pairs, in subject order.
        let mut matches: HashMap<SocketKey, Vec<(usize, usize)>> = HashMap::new();
        for (i, subject) in subjects.iter().enumerate() {
            for (r, rule) in rules.iter().enumerate() {
                if (rule.predicate)(subject, &cx) {
                    matches.entry(subject.socket.key).or_default().push((i, r));
                }
            }
        }
        stats.rules_time = began.elapsed();
        stats.matched_sockets = matches.len();
        let mut found = Vec::with_capacity(matches.len());
        let mut keys: Vec<SocketKey> = matches.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let pairs = &matches[&key];
            found.push(self.found(&cx, &subjects, pairs, &rules, seq));
        }
        let alive = |key: SocketKey| snapshot.sockets.binary_search_by_key(&key, |s| s.key).is_ok();
        let first_scan = self.scans == 1;
        let alerts = self.incidents.update(found, alive, (seq, snapshot.taken_at_ms), first_scan);
        (alerts, stats)
    }

    fn remember_first_sightings(&mut self, graph: &Graph<'_>, subjects: &[Subject<'_>], seq: u64) {
        let mut processes = HashMap::with_capacity(graph.snapshot.processes.len());
        for process in &graph.snapshot.processes {
            let exe = process.exe.as_ref().map(|e| (e.dev, e.ino));
            let first = match self.process_seen.get(&process.key) {
                Some(&(first, seen_exe)) if seen_exe == exe => first,
                _ => seq,
            };
            processes.insert(process.key, (first, exe));
        }
        self.process_seen = processes;
        let mut sockets = HashMap::with_capacity(subjects.len());
        for subject in subjects {
            let key = subject.socket.key;
            sockets.insert(key, self.socket_seen.get(&key).copied().unwrap_or(seq));
        }
        self.socket_seen = sockets;
    }

    /// The alert one socket's matches raise.
    fn found(
        &self,
        cx: &Context<'_>,
        subjects: &[Subject<'_>],
        pairs: &[(usize, usize)],
        rules: &[&super::ruleset::Rule],
        seq: u64,
    ) -> Found {
        let mut members: Vec<ProcKey> = Vec::new();
        for &(i, _) in pairs {
            if !members.contains(&subjects[i].process.key) {
                members.push(subjects[i].process.key);
            }
        }
        let top_key = top_most(cx, &members);
        let top_index = pairs.iter().map(|p| p.0).find(|&i| subjects[i].process.key == top_key);
        let top = &subjects[top_index.unwrap_or(pairs[0].0)];
        let mut hits: Vec<RuleHit> = Vec::new();
        for &(_, r) in pairs {
            let rule = rules[r];
            if hits.iter().any(|h| h.id == rule.id) {
                continue;
            }
            // The message speaks of the top-most process when it matched this rule itself.
            let speaker = pairs
                .iter()
                .filter(|p| p.1 == r)
                .map(|p| &subjects[p.0])
                .find(|s| s.process.key == top_key)
                .unwrap_or(&subjects[pairs.iter().find(|p| p.1 == r).expect("matched").0]);
            hits.push(RuleHit {
                id: rule.id.clone(),
                version: rule.version,
                name: rule.name.clone(),
                severity: rule.severity,
                tags: rule.tags.clone(),
                message: rule.message.render(speaker, cx),
            });
        }
        let severity = hits.iter().map(|h| h.severity).max().unwrap_or(Severity::Informational);
        let key = top.socket.key;
        let process_first = self.process_seen.get(&top_key).map_or(seq, |s| s.0);
        let socket_first = self.socket_seen.get(&key).copied().unwrap_or(seq);
        let processes: Vec<Process> =
            members.iter().filter_map(|&k| cx.by_key(k)).cloned().collect();
        let mut holders: Vec<Process> = Vec::new();
        for holder in &top.socket.holders {
            if !holders.iter().any(|p| p.key == holder.proc) {
                holders.extend(cx.by_key(holder.proc).cloned());
            }
        }
        let alert = Alert {
            action: AlertAction::Opened,
            incident_id: String::new(),
            socket: top.socket.clone(),
            direction: top.direction,
            severity,
            rules: hits,
            subject: Some(top.process.clone()),
            processes,
            holders,
            path: path(cx, subjects, pairs, top),
            fds: top.fds.clone(),
            snapshot_seq: seq,
            opened_seq: seq,
            first_seen_seq: process_first.max(socket_first),
            present_at_start: false,
            reason: None,
            at_ms: cx.snapshot().taken_at_ms,
        };
        Found { alert, members }
    }
}

/// The stdio path an alert shows: of the top-most matching process whose stdio is relayed, else
/// the subject's.
fn path(
    cx: &Context<'_>,
    subjects: &[Subject<'_>],
    pairs: &[(usize, usize)],
    top: &Subject<'_>,
) -> StdioPath {
    let relayed: Vec<ProcKey> = pairs
        .iter()
        .map(|p| &subjects[p.0])
        .filter(|s| !s.relays.is_empty())
        .map(|s| s.process.key)
        .collect();
    let chosen = if relayed.is_empty() {
        top
    } else {
        let key = top_most(cx, &relayed);
        pairs.iter().map(|p| &subjects[p.0]).find(|s| s.process.key == key).unwrap_or(top)
    };
    StdioPath {
        process: chosen.process.key,
        stdio_fds: (0..3).filter(|n| chosen.stdio_fds & (1 << n) != 0).collect(),
        vias: VIAS.iter().copied().filter(|v| chosen.vias & via_bit(*v) != 0).collect(),
        relays: chosen.relays.iter().filter_map(|&k| cx.by_key(k)).cloned().collect(),
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
