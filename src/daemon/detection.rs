//! Detection inside the agent: loads the rule set (falling back to the last good one kept in the
//! state directory when the configured one is broken), evaluates it on every scan's graph, keeps
//! alerts until the router takes them (alerts are never dropped by the scan thread: when the
//! router is behind they wait for the next scan), saves incidents when they change, and watches
//! the rule paths for edits.

use super::Control;
use super::state::KeptState;
use crate::config::Config;
use crate::event::HostIdentity;
use crate::graph::Graph;
use crate::model::{Alert, AlertAction, ProcessContext};
use crate::rules::{
    Clock, Engine, EvaluationStats, RuleErrors, RuleSet, SavedIncidents, Selection,
};
use crossbeam_channel::Sender;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why detection could not start.
#[derive(Debug, thiserror::Error)]
#[error("rules: {errors}")]
pub struct RulesUnusable {
    /// Every error of the configured set (there was no good set to fall back on).
    pub errors: RuleErrors,
}

/// A lifecycle event detection wants sent (action, fields).
pub(crate) type Notice = (&'static str, Value);

/// The rule engine and what surrounds it in the agent.
pub(crate) struct Detection {
    engine: Engine,
    state: KeptState,
    boot_id: String,
    /// Alerts the router has not taken yet.
    pending: Vec<Alert>,
    /// Set while running on the last good set because the configured one is broken.
    degraded: bool,
    last: EvaluationStats,
    last_duration: Duration,
    /// Stdio ends whose relay walk hit a bound in the last scan: what they reach is unknown.
    truncated_walks: usize,
    /// The last context read for each open incident: its processes may be gone by its next
    /// alert (a one-shot shell), and what was read while they lived still describes them.
    contexts: HashMap<String, Vec<ProcessContext>>,
}

fn error_lines(errors: &RuleErrors) -> Vec<String> {
    errors.0.iter().map(ToString::to_string).collect()
}

impl Detection {
    /// Starts detection; also returns notices for the sinks (degraded rules, state problems,
    /// incidents resolved because the host rebooted).
    pub(crate) fn start(
        config: &Config,
        host: &HostIdentity,
    ) -> Result<(Detection, Vec<Notice>), RulesUnusable> {
        let mut notices = Vec::new();
        let mut state = KeptState::open(config.agent.state_dir.clone());
        let selection = &config.rules.selection;
        let (rules, degraded) = match RuleSet::load(selection) {
            Ok(rules) => {
                state.save_good_rules(&rules.sources);
                (rules, false)
            }
            Err(errors) => {
                let fallback = state.readable().and_then(|s| s.last_good_rules().ok().flatten());
                let Some(Ok(rules)) = fallback.map(RuleSet::compile) else {
                    return Err(RulesUnusable { errors });
                };
                notices.push((
                    "rules_degraded",
                    json!({
                        "rules": selection.describe(),
                        "errors": error_lines(&errors),
                        "running": "the last rule set that compiled, from the state directory",
                        "rules_loaded": rules.rules.len(),
                    }),
                ));
                (rules, true)
            }
        };
        let clock =
            Clock { boot_time_ms: host.boot_time_ms, ticks_per_second: host.ticks_per_second };
        let saved = match state.readable().map(|s| s.incidents()) {
            Some(Ok(saved)) => saved,
            Some(Err(error)) => {
                notices.push(("state_unreadable", json!({"error": error})));
                None
            }
            None => None,
        };
        let mut pending = Vec::new();
        let engine = match saved {
            Some(saved) if saved.boot_id == host.boot_id => {
                Engine::with_incidents(rules, clock, saved.incidents)
            }
            Some(saved) => {
                // Socket inodes of another boot mean nothing now: those incidents are over.
                let mut engine = Engine::with_incidents(rules, clock, saved.incidents);
                pending = engine.resolve_all("host_rebooted", now_ms());
                engine
            }
            None => Engine::new(rules, clock),
        };
        let mut detection = Detection {
            engine,
            state,
            boot_id: host.boot_id.clone(),
            pending,
            degraded,
            last: EvaluationStats::default(),
            last_duration: Duration::ZERO,
            truncated_walks: 0,
            contexts: HashMap::new(),
        };
        // The state directory's own reports come first: a degraded rule set may be why.
        let mut all = detection.state.take_notices();
        all.extend(notices);
        Ok((detection, all))
    }

    /// Evaluates the rules on one scan's graph.
    pub(crate) fn evaluate(&mut self, graph: &Graph<'_>) {
        let began = Instant::now();
        let (alerts, stats) = self.engine.evaluate(graph);
        self.last_duration = began.elapsed();
        self.last = stats;
        self.truncated_walks = graph.stdio.iter().filter(|end| graph.truncated(end)).count();
        self.pending.extend(alerts);
    }

    /// Evaluates the rules on a look between scans: alerts and incidents only, the scan's
    /// figures stay those of the last scan.
    pub(crate) fn evaluate_look(&mut self, graph: &Graph<'_>) {
        let (alerts, _) = self.engine.evaluate_look(graph);
        self.pending.extend(alerts);
    }

    /// Gives the alerts waiting without context theirs: `read` reads it for an alert's
    /// processes now (completing the ancestors its snapshot lacked); what it cannot read any more (a process gone) keeps the incident's last
    /// reading. A resolved incident's alert carries its last reading.
    pub(crate) fn add_context(&mut self, mut read: impl FnMut(&mut Alert) -> Vec<ProcessContext>) {
        for alert in self.pending.iter_mut().filter(|a| a.context.is_empty()) {
            let kept = match alert.action {
                AlertAction::Resolved => {
                    alert.context = self.contexts.remove(&alert.incident_id).unwrap_or_default();
                    continue;
                }
                _ => self.contexts.entry(alert.incident_id.clone()).or_default(),
            };
            let mut fresh = read(&mut *alert);
            for context in fresh.iter_mut().filter(|c| c.unavailable.is_some()) {
                if let Some(before) = kept.iter().find(|k| k.key == context.key) {
                    *context = before.clone();
                }
            }
            kept.clone_from(&fresh);
            self.engine.remember_context(&alert.incident_id, &fresh);
            alert.context = fresh;
        }
    }

    /// Saves the incidents if an evaluation changed them. Called once the evaluation's alerts
    /// were handed on: the save syncs a file, milliseconds an alert need not wait for, and an
    /// agent stopped in between re-alerts after its restart rather than staying silent.
    pub(crate) fn save_incidents(&mut self) {
        if !self.engine.incidents_changed() {
            return;
        }
        let saved = SavedIncidents {
            boot_id: self.boot_id.clone(),
            incidents: self.engine.incidents().cloned().collect(),
        };
        // A failed save costs a re-alert after a restart; it is reported, and the next change
        // retries.
        self.state.save_incidents(&saved);
    }

    /// Health events since the last call (the state directory failing or back).
    pub(crate) fn take_notices(&mut self) -> Vec<Notice> {
        self.state.take_notices()
    }

    /// Alerts waiting for the router; the caller gives back what it could not hand over.
    pub(crate) fn take_pending(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.pending)
    }

    /// Puts back alerts the router could not take, ahead of newer ones.
    pub(crate) fn restore_pending(&mut self, mut alerts: Vec<Alert>) {
        alerts.append(&mut self.pending);
        self.pending = alerts;
    }

    /// Compiles the rules at `paths` and, only if every file is good, swaps them in. Open
    /// incidents keep their state; those left with no rule resolve.
    pub(crate) fn reload(&mut self, selection: &Selection) -> Notice {
        match RuleSet::load(selection) {
            Ok(rules) => {
                self.state.save_good_rules(&rules.sources);
                let count = rules.rules.len();
                let resolved = self.engine.replace_rules(rules, now_ms());
                let resolved_count = resolved.len();
                self.pending.extend(resolved);
                self.degraded = false;
                self.save_incidents();
                let fields = json!({
                    "rules": selection.describe(),
                    "rules_loaded": count,
                    "incidents_resolved": resolved_count,
                });
                ("rules_reloaded", fields)
            }
            Err(errors) => (
                "reload_failed",
                json!({
                    "rules": selection.describe(),
                    "errors": error_lines(&errors),
                    "kept": "the rule set in force",
                }),
            ),
        }
    }

    /// The rules in force: how many are enabled, and the files they came from.
    /// Running on the kept rule set because the configured files do not compile.
    pub(crate) fn degraded(&self) -> bool {
        self.degraded
    }

    pub(crate) fn rules(&self) -> Value {
        let rules = self.engine.rules();
        json!({
            "rules_enabled": rules.enabled().count(),
            "rule_sources": rules.sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            "rules_degraded": self.degraded,
        })
    }

    /// Detection figures for the heartbeat.
    pub(crate) fn facts(&self) -> Value {
        json!({
            "rules_enabled": self.engine.rules().enabled().count(),
            "rules_degraded": self.degraded,
            "open_incidents": self.engine.incidents().count(),
            "alerts_waiting": self.pending.len(),
            "subjects": self.last.subjects,
            "matched_sockets": self.last.matched_sockets,
            "last_evaluation_us": self.last_duration.as_micros() as u64,
            "stdio_walks_truncated": self.truncated_walks,
            "state_writes_failed": self.state.failed_writes(),
        })
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Quiet time after the last change before reloading: an editor's save is several events.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches the directories holding the rule paths and asks for a reload after changes settle.
/// The returned watcher must be kept alive.
pub(crate) fn watch(
    paths: &[PathBuf],
    control: Sender<Control>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let (events, changes) = crossbeam_channel::unbounded::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = events.send(());
        }
    })?;
    for path in paths {
        // Editors replace files by renaming over them: watch the directory, not the inode.
        let dir: &Path = if path.is_dir() { path } else { path.parent().unwrap_or(Path::new("/")) };
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    }
    std::thread::Builder::new().name("rules-watch".into()).spawn(move || {
        while changes.recv().is_ok() {
            while changes.recv_timeout(DEBOUNCE).is_ok() {}
            if control.send(Control::ReloadRules).is_err() {
                return;
            }
        }
    })?;
    Ok(watcher)
}
