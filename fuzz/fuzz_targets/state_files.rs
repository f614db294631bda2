//! State files left by a crash, a bad disk or a hostile hand: saved incidents are read, taken
//! back into the engine, resolved when nothing matches and encoded as alerts (ECS and OCSF);
//! a saved rule set is compiled. Never a panic; every alert is one valid JSON line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockwatch::event::{Encoder, HostIdentity, Redactor};
use sockwatch::graph::Graph;
use sockwatch::model::Snapshot;
use sockwatch::rules::{Clock, Engine, RuleSet, RuleSource, SavedIncidents};

fuzz_target!(|data: &[u8]| {
    if let Ok(sources) = serde_json::from_slice::<Vec<RuleSource>>(data) {
        let _ = RuleSet::compile(sources);
    }
    let Ok(saved) = serde_json::from_slice::<SavedIncidents>(data) else { return };
    let rules = RuleSet::compile(RuleSource::embedded()).expect("the built-in pack");
    let clock = Clock { boot_time_ms: Some(1_700_000_000_000), ticks_per_second: 100 };
    let mut engine = Engine::with_incidents(rules, clock, saved.incidents);
    let mut alerts = engine.resolve_all("host_rebooted", 1_700_000_001_000);
    let snapshot = Snapshot::default();
    for _ in 0..3 {
        alerts.extend(engine.evaluate(&Graph::build(&snapshot, None)).0);
    }
    let mut encoder = Encoder::new(HostIdentity::default(), Redactor::default());
    for alert in &alerts {
        let encoded = encoder.alert(alert);
        assert_eq!(encoded.line.iter().filter(|b| **b == b'\n').count(), 1);
        let event: serde_json::Value = serde_json::from_slice(&encoded.line).expect("JSON");
        let _ = sockwatch::event::ocsf::project(&event, encoded.at_ms);
    }
});
