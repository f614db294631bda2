//! The scan thread: waits for the next tick (or a signal, an exec, a closed output), scans,
//! evaluates the rules, and hands changes and alerts to the router without ever waiting on it.
//! Each step is its own method; the loop only decides which comes next.

use super::detection::{Detection, Notice};
use super::hidden_processes::HidingIncidents;
use super::holderless::Holderless;
use super::router::Message;
use super::short_lived::ShortLivedReport;
use super::socket_destroys::Heard;
use super::{
    Control, LoopContext, OUTPUT_CLOSED, RunOptions, exec_checks, metrics, missing_privileges,
    notice, now_ms, to_the_journal, watch_rules,
};
use crate::config::{AgentConfig, RulesConfig};
use crate::diff::Differ;
use crate::event::{Directions, EventKind, rfc3339};
use crate::graph::{Graph, ListenerMemory};
use crate::model::{Change, Family, Snapshot, Socket};
use crate::scan::Scanner;
use crate::sinks::SinkConfig;
use crossbeam_channel::{Receiver, TrySendError, select};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How soon a heartbeat the router was too busy to take is offered again.
const HEARTBEAT_RETRY: Duration = Duration::from_millis(20);
/// Short-lived connections kept while the router is busy; beyond it they are counted only.
const SHORT_LIVED_WAITING: usize = 10_000;

/// What the loop does next.
enum Next {
    Scan,
    Wait,
    Stop(&'static str),
}

/// The scan loop's counters, for the heartbeat and the metrics.
#[derive(Clone, Copy, Default)]
struct Counts {
    scans: u64,
    scans_triggered: u64,
    overruns: u64,
    batches_deferred: u64,
}

pub(super) struct ScanLoop<'a> {
    cx: &'a LoopContext<'a>,
    options: &'a RunOptions,
    scanner: &'a mut Scanner,
    detection: Detection,
    watcher: Option<notify::RecommendedWatcher>,
    /// Settings as reloads left them.
    agent: AgentConfig,
    sinks: Vec<SinkConfig>,
    rules: RulesConfig,
    exec_wakes: Receiver<exec_checks::Wake>,
    heard: Receiver<Heard>,
    short_lived: ShortLivedReport,
    /// Reported connections the router could not take yet.
    short_lived_waiting: Vec<crate::model::ShortLived>,
    hidings: HidingIncidents,
    /// Alerts about mounts over /proc the router could not take yet (never dropped).
    hiding_waiting: Vec<crate::model::HidingAlert>,
    /// The namespaces the destroy listener was last told to follow.
    followed: Vec<(u64, Option<i32>)>,
    own_pid: i32,
    differ: Differ,
    holderless: Holderless,
    listeners: ListenerMemory,
    previous_directions: Option<Arc<Directions>>,
    counts: Counts,
    /// The next scan was brought forward by an exec.
    triggered: bool,
    last_began: Instant,
    next_tick: Instant,
    next_heartbeat: Instant,
    /// A heartbeat the router could not take yet (it was busy with the scan's changes and
    /// alerts): health is never dropped, only delayed.
    heartbeat_waiting: Option<Message>,
}

impl<'a> ScanLoop<'a> {
    pub(super) fn new(
        cx: &'a LoopContext<'a>,
        options: &'a RunOptions,
        scanner: &'a mut Scanner,
        detection: Detection,
        watcher: Option<notify::RecommendedWatcher>,
    ) -> Self {
        let agent = options.config.agent.clone();
        ScanLoop {
            cx,
            options,
            scanner,
            detection,
            watcher,
            sinks: options.config.sinks.clone(),
            rules: options.config.rules.clone(),
            exec_wakes: cx.exec_checks.wakes.clone(),
            heard: cx.destroys.heard.clone(),
            short_lived: ShortLivedReport::default(),
            short_lived_waiting: Vec::new(),
            hidings: HidingIncidents::default(),
            hiding_waiting: Vec::new(),
            followed: Vec::new(),
            own_pid: std::process::id() as i32,
            differ: Differ::new(agent.baseline),
            holderless: Holderless::new(options.config.holderless),
            listeners: ListenerMemory::default(),
            previous_directions: None,
            counts: Counts::default(),
            triggered: false,
            last_began: Instant::now(),
            next_tick: Instant::now(),
            next_heartbeat: Instant::now() + agent.heartbeat,
            heartbeat_waiting: None,
            agent,
        }
    }

    /// Says the agent started (and what it found wrong while starting), then scans on every
    /// tick until told to stop; returns why it stopped.
    pub(super) fn run(mut self, notices: Vec<Notice>, procfs: serde_json::Value) -> &'static str {
        self.announce(notices, procfs);
        loop {
            match self.wait() {
                Next::Wait => {}
                Next::Scan => {
                    if let Err(reason) = self.scan() {
                        return reason;
                    }
                }
                Next::Stop(reason) => {
                    self.send_pending_alerts();
                    return reason;
                }
            }
        }
    }

    fn announce(&mut self, notices: Vec<Notice>, procfs: serde_json::Value) {
        let options = self.options;
        let _ = self.cx.to_router.send(Message::Lifecycle {
            action: "agent_started",
            kind: EventKind::Event,
            at_ms: now_ms(),
            fields: json!({
                "interval_ms": self.agent.interval.as_millis() as u64,
                "baseline": self.agent.baseline,
                "config": options.config_path.as_ref().map(|p| p.display().to_string()),
                "sink_names": options.config.sinks.iter().map(|s| s.name()).collect::<Vec<_>>(),
                "privileges": self.scanner.privileges(),
                "procfs": procfs,
                "detection": self.detection.rules(),
            }),
            with_sinks: false,
        });
        for (action, fields) in notices {
            notice(self.cx.to_router, action, fields);
        }
        if let Some(fields) = missing_privileges(self.scanner.privileges()) {
            notice(self.cx.to_router, "privileges_missing", fields);
        }
    }

    /// Blocks until something happens; handles what is not a scan.
    fn wait(&mut self) -> Next {
        let cx = self.cx;
        let retry = match self.heartbeat_waiting {
            Some(_) => crossbeam_channel::after(HEARTBEAT_RETRY),
            None => crossbeam_channel::never(),
        };
        let exec_wakes = self.exec_wakes.clone();
        let heard = self.heard.clone();
        select! {
            recv(cx.control) -> message => match message {
                Ok(Control::Stop(reason)) => Next::Stop(reason),
                Ok(Control::Reload) => {
                    self.reload_config();
                    Next::Wait
                }
                Ok(Control::ReloadRules) => {
                    self.reload_rules();
                    Next::Wait
                }
                Err(_) => Next::Stop("control channel closed"),
            },
            recv(exec_wakes) -> wake => {
                self.on_exec(wake.ok());
                Next::Wait
            }
            recv(heard) -> heard => {
                self.on_destroyed(heard.ok());
                Next::Wait
            }
            recv(cx.closed) -> _ => self.on_output_closed(),
            recv(crossbeam_channel::at(self.next_tick)) -> _ => Next::Scan,
            recv(retry) -> _ => {
                self.send_heartbeat(None);
                Next::Wait
            }
        }
    }

    /// SIGHUP: file sinks reopen, the config and the rules are read again.
    fn reload_config(&mut self) {
        let cx = self.cx;
        cx.systemd.reloading();
        cx.sinks.reopen.fetch_add(1, Ordering::Relaxed);
        // Set only by a reload that succeeded.
        let mut containers = None;
        let (message, new_rules) = super::reload::reload(
            self.options,
            &mut self.agent,
            &mut containers,
            &mut self.sinks,
            cx.running,
            cx.sinks,
        );
        if let Some(message) = message {
            if let Message::Lifecycle { action, fields, .. } = &message {
                to_the_journal(action, fields);
            }
            let _ = cx.to_router.send(message);
        }
        if let Some(new_rules) = new_rules.filter(|r| *r != self.rules) {
            self.rules = new_rules;
            drop(self.watcher.take());
            let watch_failed;
            (self.watcher, watch_failed) = watch_rules(&self.rules, cx.control_tx);
            if let Some((action, fields)) = watch_failed {
                notice(cx.to_router, action, fields);
            }
        }
        self.scanner.set_namespace_budget(super::namespace_budget(self.agent.interval));
        if let Some(containers) = containers {
            self.scanner.set_container_sources(containers);
        }
        self.reload_rules();
        cx.systemd.ready();
    }

    fn reload_rules(&mut self) {
        let (action, fields) = self.detection.reload(&self.rules.selection);
        notice(self.cx.to_router, action, fields);
        self.send_notices();
    }

    /// What the exec listener says: a look to evaluate, execs it could not look at (a scan
    /// comes soon: settled, and not closer to the last one than the minimum gap), or that it
    /// stopped. `None`: the listener is gone (it said why).
    fn on_exec(&mut self, wake: Option<exec_checks::Wake>) {
        match wake {
            Some(exec_checks::Wake::Look(mut look)) => {
                self.scanner.identify_containers(&mut look);
                self.evaluate_look(&look)
            }
            Some(exec_checks::Wake::Missed) => {
                let soon = (Instant::now() + exec_checks::SETTLE)
                    .max(self.last_began + self.agent.exec_scan_min_gap);
                if soon < self.next_tick {
                    self.next_tick = soon;
                    self.triggered = true;
                }
            }
            Some(exec_checks::Wake::Failed((action, fields))) => {
                notice(self.cx.to_router, action, fields)
            }
            None => self.exec_wakes = crossbeam_channel::never(),
        }
    }

    /// Rules on a look between scans; its alerts go out at once.
    fn evaluate_look(&mut self, look: &Snapshot) {
        self.short_lived.looked(look);
        let graph = Graph::build(look, Some(&self.listeners));
        self.detection.evaluate_look(&graph);
        drop(graph);
        self.detection.add_context(|alert| self.scanner.alert_context(alert));
        // A router gone is noticed by the next scan's hand-over.
        let _ = self.send_alerts();
        self.detection.save_incidents();
    }

    /// What the destroy listener heard: sockets freed (those no scan saw are reported at once),
    /// or something to report. `None`: the listener is gone (it said why).
    fn on_destroyed(&mut self, heard: Option<Heard>) {
        match heard {
            Some(Heard::Destroyed(destroyed)) => {
                let reported = self.short_lived.report(
                    &destroyed,
                    &self.listeners,
                    &self.options.config.socket_families,
                    now_ms(),
                );
                let room = SHORT_LIVED_WAITING.saturating_sub(self.short_lived_waiting.len());
                self.short_lived.counts.over_budget += reported.len().saturating_sub(room) as u64;
                self.short_lived_waiting.extend(reported.into_iter().take(room));
                self.send_short_lived();
            }
            Some(Heard::Notice((action, fields))) => notice(self.cx.to_router, action, fields),
            None => self.heard = crossbeam_channel::never(),
        }
    }

    /// Hands waiting short-lived connections to the router, never waiting on it.
    fn send_short_lived(&mut self) {
        if self.short_lived_waiting.is_empty() {
            return;
        }
        let connections = std::mem::take(&mut self.short_lived_waiting);
        if let Err(TrySendError::Full(Message::ShortLived(connections))) =
            self.cx.to_router.try_send(Message::ShortLived(connections))
        {
            self.short_lived_waiting = connections;
        }
    }

    /// Hands waiting alerts about mounts over /proc to the router; they wait for the next scan
    /// when it is busy, like the rules' alerts.
    fn send_hiding_alerts(&mut self) {
        if self.hiding_waiting.is_empty() {
            return;
        }
        let alerts = std::mem::take(&mut self.hiding_waiting);
        if let Err(TrySendError::Full(Message::HidingAlerts(alerts))) =
            self.cx.to_router.try_send(Message::HidingAlerts(alerts))
        {
            self.hiding_waiting = alerts;
        }
    }

    /// Tells the destroy listener which namespaces the scan saw, when they changed.
    fn follow_namespaces(&mut self, snapshot: &Snapshot) {
        if !self.cx.destroys.counts.listening.load(Ordering::Relaxed) {
            return;
        }
        let mut members: std::collections::BTreeMap<u64, Option<i32>> =
            snapshot.namespaces.iter().map(|n| (n.inode, None)).collect();
        for process in &snapshot.processes {
            if let Some(member) = process.netns.and_then(|ns| members.get_mut(&ns)) {
                member.get_or_insert(process.key.pid);
            }
        }
        let seen: Vec<(u64, Option<i32>)> = members.into_iter().collect();
        let same = seen.len() == self.followed.len()
            && seen
                .iter()
                .zip(&self.followed)
                .all(|(a, b)| a.0 == b.0 && a.1.is_some() == b.1.is_some());
        if same {
            return;
        }
        if let Ok(mut slot) = self.cx.destroys.namespaces.lock() {
            *slot = Some((seen.clone(), snapshot.privileges.sys_admin));
            self.followed = seen;
        }
    }

    /// Like any Unix tool whose output is gone (`run | head -1`): when nothing else receives the
    /// events, running on would be blind work. With other sinks the router reports it
    /// (sink_failed) and the agent goes on.
    fn on_output_closed(&mut self) -> Next {
        match self.sinks.as_slice() {
            [SinkConfig::Stdout(_)] => Next::Stop(OUTPUT_CLOSED),
            _ => Next::Wait,
        }
    }

    /// One scan, start to hand-over. `Err`: the router is gone.
    fn scan(&mut self) -> Result<(), &'static str> {
        let began = Instant::now();
        self.last_began = began;
        if std::mem::take(&mut self.triggered) {
            self.counts.scans_triggered += 1;
        }
        let mut snapshot = self.scanner.scan();
        self.counts.scans += 1;
        if self.counts.scans == 1 {
            self.cx.systemd.ready();
        }
        self.cx.systemd.scanned();
        let graph = Graph::build(&snapshot, Some(&self.listeners));
        self.detection.evaluate(&graph);
        self.detection.add_context(|alert| self.scanner.alert_context(alert));
        self.send_notices();
        self.listeners.remember(&snapshot);
        self.short_lived.scanned(&snapshot);
        let found = self.hidings.scanned(&snapshot);
        self.hiding_waiting.extend(found);
        self.follow_namespaces(&snapshot);
        let directions: Arc<Directions> = Arc::new(graph.directions.clone());
        drop(graph);
        // Diff and events need sockets and processes; the fds served the graph. Dropping them
        // keeps the snapshot retained for the next diff at about half its size.
        let fds = std::mem::take(&mut snapshot.fds);
        let snapshot = Arc::new(snapshot);
        self.publish_neighbourhood(&snapshot, &fds);
        drop(fds);
        self.send_changes(&snapshot, directions)?;
        self.send_alerts()?;
        self.detection.save_incidents();
        self.send_hiding_alerts();
        self.send_short_lived();
        let took = began.elapsed();
        self.schedule_next();
        self.publish_facts(&snapshot, took);
        if Instant::now() >= self.next_heartbeat {
            self.next_heartbeat += self.agent.heartbeat;
            let beat = self.heartbeat(&snapshot, took);
            self.send_heartbeat(Some(beat));
        }
        Ok(())
    }

    /// What the exec listener's looks resolve against until the next scan.
    fn publish_neighbourhood(&self, snapshot: &Arc<Snapshot>, fds: &[crate::model::Fd]) {
        let checks = self.cx.exec_checks;
        if !checks.counts.listening.load(Ordering::Relaxed) {
            return;
        }
        let near = Arc::new(self.scanner.neighbourhood(snapshot.clone(), fds));
        if let Ok(mut slot) = checks.neighbourhood.lock() {
            *slot = Some(near);
        }
    }

    /// Hands the router a new heartbeat (which replaces one still waiting: it says the same,
    /// newer) or the one waiting; keeps it when the router is busy.
    fn send_heartbeat(&mut self, beat: Option<Message>) {
        let Some(beat) = beat.or_else(|| self.heartbeat_waiting.take()) else { return };
        self.heartbeat_waiting = match self.cx.to_router.try_send(beat) {
            Err(TrySendError::Full(beat)) => Some(beat),
            Ok(()) | Err(TrySendError::Disconnected(_)) => None,
        };
    }

    fn send_notices(&mut self) {
        for (action, fields) in self.detection.take_notices() {
            notice(self.cx.to_router, action, fields);
        }
    }

    /// Hands the scan's reportable changes to the router, never waiting: when the router is
    /// behind, the previous snapshot is kept, so the next diff covers this interval too.
    /// Changes are coalesced, never lost, and only a few snapshots are ever held.
    fn send_changes(
        &mut self,
        snapshot: &Arc<Snapshot>,
        directions: Arc<Directions>,
    ) -> Result<(), &'static str> {
        let changes = self.differ.changes(snapshot);
        let prev = self.differ.previous().map(|p| p.as_ref());
        let families = &self.options.config.socket_families;
        let candidates = changes
            .iter()
            .filter(|c| !is_own(c, prev, snapshot, self.own_pid))
            .filter(|c| wanted_family(c, prev, snapshot, families))
            .filter(|c| !is_unheld_but_not_outbound(c, snapshot, &directions));
        let reported = self.holderless.select(candidates, prev, snapshot);
        let marks = Holderless::marks(&reported);
        let summary = (self.differ.previous().is_none() && self.agent.baseline.is_on())
            .then(|| baseline_summary(snapshot, reported.len()));
        let sent = reported.is_empty() || {
            let prev = self.differ.previous().cloned().zip(self.previous_directions.clone());
            let next = (snapshot.clone(), directions.clone());
            match self.cx.to_router.try_send(Message::Changes { changes: reported, prev, next }) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => false,
                Err(TrySendError::Disconnected(_)) => return Err("router stopped"),
            }
        };
        if sent {
            if let Some(fields) = summary {
                let _ = self.cx.to_router.send(Message::Lifecycle {
                    action: "baseline_summary",
                    kind: EventKind::State,
                    at_ms: snapshot.taken_at_ms,
                    fields,
                    with_sinks: false,
                });
            }
            self.holderless.sent(marks);
            self.differ.accept(snapshot.clone(), &changes);
            self.previous_directions = Some(directions);
        } else {
            self.counts.batches_deferred += 1;
        }
        Ok(())
    }

    /// Alerts are few and never dropped: when the router is behind they wait for the next scan.
    fn send_alerts(&mut self) -> Result<(), &'static str> {
        let alerts = self.detection.take_pending();
        if alerts.is_empty() {
            return Ok(());
        }
        match self.cx.to_router.try_send(Message::Alerts(alerts)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Message::Alerts(alerts))) => {
                self.detection.restore_pending(alerts);
                Ok(())
            }
            Err(_) => Err("router stopped"),
        }
    }

    /// On the way out: alerts still waiting go out before agent_stopping (the router drains).
    fn send_pending_alerts(&mut self) {
        let alerts = self.detection.take_pending();
        if !alerts.is_empty() {
            let _ = self.cx.to_router.send(Message::Alerts(alerts));
        }
        let connections = std::mem::take(&mut self.short_lived_waiting);
        if !connections.is_empty() {
            let _ = self.cx.to_router.send(Message::ShortLived(connections));
        }
        let alerts = std::mem::take(&mut self.hiding_waiting);
        if !alerts.is_empty() {
            let _ = self.cx.to_router.send(Message::HidingAlerts(alerts));
        }
    }

    /// The next tick; a scan that took longer than the interval is followed at once, never by a
    /// burst of catch-up scans.
    fn schedule_next(&mut self) {
        self.next_tick += self.agent.interval;
        if Instant::now() > self.next_tick {
            self.counts.overruns += 1;
            self.next_tick = Instant::now();
        }
    }

    fn publish_facts(&self, snapshot: &Snapshot, took: Duration) {
        let Counts { scans, scans_triggered, overruns, .. } = self.counts;
        let exec = &self.cx.exec_checks.counts;
        if let Ok(mut facts) = self.cx.facts.lock() {
            *facts = metrics::ScanFacts {
                scans,
                scans_triggered,
                exec_looks: exec.looks.load(Ordering::Relaxed),
                exec_missed: exec.missed.load(Ordering::Relaxed),
                short_lived: self.short_lived.counts.reported,
                short_lived_unreported: self.short_lived.counts.over_budget
                    + self.cx.destroys.counts.overflows.load(Ordering::Relaxed),
                overruns,
                last_duration: took,
                coverage: snapshot.coverage.clone(),
                completed_at: Some(Instant::now()),
                interval: self.agent.interval,
                rules_degraded: self.detection.degraded(),
            };
        }
    }

    fn short_lived_facts(&self) -> serde_json::Value {
        let mut facts = self.cx.destroys.facts();
        if let (Some(facts), Ok(serde_json::Value::Object(counts))) =
            (facts.as_object_mut(), serde_json::to_value(self.short_lived.counts))
        {
            facts.extend(counts);
        }
        facts
    }

    fn heartbeat(&self, snapshot: &Snapshot, took: Duration) -> Message {
        let Counts { scans, scans_triggered, overruns, batches_deferred } = self.counts;
        Message::Lifecycle {
            action: "heartbeat",
            kind: EventKind::State,
            at_ms: now_ms(),
            fields: json!({
                "coverage": snapshot.coverage,
                "scans": scans,
                "scans_exec_triggered": scans_triggered,
                "exec_checks": self.cx.exec_checks.counts.facts(),
                "short_lived": self.short_lived_facts(),
                "scan_overruns": overruns,
                "batches_deferred": batches_deferred,
                "last_scan_duration_ms": took.as_millis() as u64,
                "last_scan_at": rfc3339(snapshot.taken_at_ms),
                "processes": snapshot.processes.len(),
                "sockets": snapshot.sockets.len(),
                "detection": self.detection.facts(),
            }),
            with_sinks: true,
        }
    }
}

/// What the first scan found, counted: every socket by family, protocol and state, and how many
/// were listed one by one as `existing_socket`.
fn baseline_summary(snapshot: &Snapshot, listed: usize) -> serde_json::Value {
    use std::collections::BTreeMap;
    let (mut families, mut protocols, mut states) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let mut holderless = 0;
    for socket in &snapshot.sockets {
        let family = serde_json::to_value(socket.family).unwrap_or_default();
        *families.entry(family.as_str().unwrap_or("unknown").to_string()).or_insert(0u64) += 1;
        *protocols.entry(socket.protocol.name().to_string()).or_insert(0u64) += 1;
        *states.entry(socket.state.name().to_string()).or_insert(0u64) += 1;
        holderless += u64::from(socket.holders.is_empty());
    }
    json!({
        "sockets": snapshot.sockets.len(),
        "listed": listed,
        "holderless": holderless,
        "processes": snapshot.processes.len(),
        "namespaces": snapshot.namespaces.len(),
        "by_family": families,
        "by_protocol": protocols,
        "by_state": states,
    })
}

/// The socket a change is about, described by the snapshot that has it (the previous one for a
/// closed socket); `None` for process changes.
fn subject<'a>(
    change: &Change,
    prev: Option<&'a Snapshot>,
    next: &'a Snapshot,
) -> Option<&'a Socket> {
    let (key, snapshot) = match change {
        Change::SocketClosed { key, .. } => (*key, prev?),
        Change::SocketOpened { key }
        | Change::SocketStateChanged { key, .. }
        | Change::SocketHoldersChanged { key, .. }
        | Change::ConnectionUnheld { key }
        | Change::ExistingSocket { key } => (*key, next),
        Change::ProcessExec { .. } => return None,
    };
    snapshot.socket(key)
}

/// A change about a socket only the agent itself holds (its netlink dump sockets, its metrics
/// listener), or about the agent's own exec: reporting it would make the agent report on itself.
fn is_own(change: &Change, prev: Option<&Snapshot>, next: &Snapshot, own_pid: i32) -> bool {
    if let Change::ProcessExec { proc, .. } = change {
        return proc.pid == own_pid;
    }
    subject(change, prev, next)
        .is_some_and(|s| !s.holders.is_empty() && s.holders.iter().all(|h| h.proc.pid == own_pid))
}

/// An unheld connection this host did not open: an accepted connection waits unheld in its
/// listener's queue until the server calls accept(), which a busy server may take a while to do.
fn is_unheld_but_not_outbound(change: &Change, next: &Snapshot, directions: &Directions) -> bool {
    let Change::ConnectionUnheld { key } = change else { return false };
    let at = next.sockets.binary_search_by_key(key, |s| s.key).ok();
    at.and_then(|at| directions.get(at)).is_none_or(|d| d.0 != crate::model::Direction::Outbound)
}

/// Whether a change's socket belongs to a reported family (`[events] socket_families`; all when
/// empty). Process changes always pass.
fn wanted_family(
    change: &Change,
    prev: Option<&Snapshot>,
    next: &Snapshot,
    families: &[Family],
) -> bool {
    families.is_empty() || subject(change, prev, next).is_none_or(|s| families.contains(&s.family))
}
