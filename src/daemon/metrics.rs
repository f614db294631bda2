//! Prometheus text exposition (served by `status_server`). One collector reads the agent's state
//! at scrape time: scans, overruns, the last scan's duration and coverage counters, and every
//! sink's counters and queue depth.

use crate::model::Coverage;
use crate::sinks::SinkStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the scan thread last saw, for scrapes and health checks.
#[derive(Debug, Default, Clone)]
pub(crate) struct ScanFacts {
    pub scans: u64,
    pub scans_triggered: u64,
    /// Processes looked at as they executed, and execs left to the next scan.
    pub exec_looks: u64,
    pub exec_missed: u64,
    /// Connections reported between scans (`socket_short_lived`), and those counted only.
    pub short_lived: u64,
    pub short_lived_unreported: u64,
    pub overruns: u64,
    pub last_duration: Duration,
    pub coverage: Coverage,
    /// When the last scan completed.
    pub completed_at: Option<Instant>,
    /// The interval in force.
    pub interval: Duration,
    /// Detection runs on a kept rule set because the configured files do not compile.
    pub rules_degraded: bool,
}

/// One sink as the metrics see it.
#[derive(Debug)]
pub(crate) struct SinkView {
    pub name: String,
    pub stats: Arc<SinkStats>,
}

/// The registry a scrape encodes.
pub(crate) fn registry(facts: Arc<Mutex<ScanFacts>>, sinks: Arc<super::RunningSinks>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AgentCollector { facts, sinks }));
    registry
}

struct AgentCollector {
    facts: Arc<Mutex<ScanFacts>>,
    sinks: Arc<super::RunningSinks>,
}

impl std::fmt::Debug for AgentCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentCollector")
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for AgentCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let facts = self.facts.lock().unwrap_or_else(|p| p.into_inner()).clone();
        counter(&mut e, "sockwatch_scans", "Completed scans.", facts.scans)?;
        counter(
            &mut e,
            "sockwatch_scans_exec_triggered",
            "Scans brought forward because execs went unlooked at (exec_checks).",
            facts.scans_triggered,
        )?;
        counter(
            &mut e,
            "sockwatch_exec_checks",
            "Processes looked at as they executed, between scans (exec_checks).",
            facts.exec_looks,
        )?;
        counter(
            &mut e,
            "sockwatch_exec_checks_missed",
            "Execs not looked at (events lost by the kernel, or over the looks' budget): left to \
             the next scan.",
            facts.exec_missed,
        )?;
        counter(
            &mut e,
            "sockwatch_short_lived_connections",
            "Connections that opened and closed between two scans, reported (short_lived).",
            facts.short_lived,
        )?;
        counter(
            &mut e,
            "sockwatch_short_lived_unreported",
            "Short-lived connections over the reporting budget, and notices the kernel could not \
             queue: counted only.",
            facts.short_lived_unreported,
        )?;
        counter(
            &mut e,
            "sockwatch_scan_overruns",
            "Scans that took longer than the interval.",
            facts.overruns,
        )?;
        let duration = ConstGauge::new(facts.last_duration.as_secs_f64());
        duration.encode(e.encode_descriptor(
            "sockwatch_scan_duration_seconds",
            "Duration of the last scan.",
            None,
            duration.metric_type(),
        )?)?;
        let mut coverage = e.encode_descriptor(
            "sockwatch_coverage",
            "The last scan's coverage counters (what it saw and what it could not).",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&facts.coverage) {
            for (name, value) in fields.into_iter().filter(|(_, v)| v.is_number()) {
                let labels = vec![("counter".to_string(), name)];
                let gauge = ConstGauge::new(value.as_i64().unwrap_or(0));
                gauge.encode(coverage.encode_family(&labels)?)?;
            }
        }
        let mut events = e.encode_descriptor(
            "sockwatch_sink_events",
            "Events per sink by outcome: generated = delivered + dropped + queued.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        let sinks = self.sinks.views();
        for sink in sinks.iter() {
            let c = sink.stats.counts(&sink.name);
            for (outcome, value) in [
                ("generated", c.generated),
                ("delivered", c.delivered),
                ("dropped_queue_full", c.dropped_queue_full),
                ("dropped_spool_full", c.dropped_spool_full),
                ("dropped_write_error", c.dropped_write_error),
                ("dropped_rejected", c.dropped_rejected),
            ] {
                let labels = vec![
                    ("sink".to_string(), sink.name.clone()),
                    ("outcome".to_string(), outcome.to_string()),
                ];
                ConstCounter::new(value).encode(events.encode_family(&labels)?)?;
            }
        }
        let mut queued = e.encode_descriptor(
            "sockwatch_sink_queued",
            "Events waiting per sink.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for sink in sinks.iter() {
            let labels = vec![("sink".to_string(), sink.name.clone())];
            let waiting = sink.stats.counts(&sink.name).queued;
            ConstGauge::new(i64::try_from(waiting).unwrap_or(i64::MAX))
                .encode(queued.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
