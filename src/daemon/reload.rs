//! SIGHUP: the config file read again and applied to the running agent where it can be.

use super::router::Message;
use super::{RunOptions, RunningSinks, now_ms, preflight};
use crate::config::{AgentConfig, Config, RulesConfig};
use crate::event::EventKind;
use crate::sinks::{SinkConfig, SinkContext};
use serde_json::json;

/// Re-reads the config file. On success the new `[agent]` timings apply from the next tick, new
/// or changed sinks are opened and handed to the router, and removed ones retire (their queues
/// drain); queue sizes apply at the next start. On failure (a bad file, a sink that cannot open)
/// the running settings stay and the error goes out as `reload_failed`.
pub(super) fn reload(
    options: &RunOptions,
    agent: &mut AgentConfig,
    containers: &mut Option<crate::model::ContainerSources>,
    sinks: &mut Vec<SinkConfig>,
    running: &RunningSinks,
    sink_context: &SinkContext,
) -> (Option<Message>, Option<RulesConfig>) {
    let Some(path) = options.config_path.as_ref() else { return (None, None) };
    let file = path.display().to_string();
    let failed = |error: String| Message::Lifecycle {
        action: "reload_failed",
        kind: EventKind::Event,
        at_ms: now_ms(),
        fields: json!({"config": file, "error": error}),
        with_sinks: false,
    };
    let mut config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => return (Some(failed(error.to_string())), None),
    };
    options.overrides.apply(&mut config);
    if let Some(problem) = preflight::timing(&config, preflight::watchdog()) {
        return (Some(failed(problem.to_string())), None);
    }
    let mut added = Vec::new();
    for sink in config.sinks.iter().filter(|s| !sinks.contains(s)) {
        match running.spawn(sink, agent.queue_capacity, sink_context) {
            Ok(ports) => added.extend(ports),
            // Ports spawned so far are dropped with `added`: their queues close, threads end.
            Err(error) => return (Some(failed(error.to_string())), None),
        }
    }
    agent.interval = config.agent.interval;
    agent.heartbeat = config.agent.heartbeat;
    *containers = Some(config.containers.clone());
    *sinks = config.sinks.clone();
    let rules = config.rules.clone();
    let message = Message::Sinks {
        keep: config.sinks,
        added,
        announce: json!({
            "config": file,
            "interval_ms": agent.interval.as_millis() as u64,
            "sink_names": sinks.iter().map(SinkConfig::name).collect::<Vec<_>>(),
        }),
    };
    (Some(message), Some(rules))
}
