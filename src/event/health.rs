//! The agent's own health: the lifecycle events that say it runs with less than it was told (a
//! human has to look), the recoveries that close them, and how severe each is, on the rules'
//! scale so that a sink filtered at `min_severity = "medium"` still hears that the agent is
//! partly blind.

use crate::model::Severity;

/// Failures: the agent runs on, seeing or keeping less than it was told to.
const FAILURES: &[(&str, Severity)] = &[
    // Other users' processes cannot be read: their shells are invisible.
    ("privileges_missing", Severity::High),
    // Detection runs on an older rule set than the one on disk.
    ("rules_degraded", Severity::High),
    ("reload_failed", Severity::Medium),
    ("rules_watch_failed", Severity::Medium),
    // Incidents are not kept: a restart re-alerts on open ones.
    ("state_unavailable", Severity::Medium),
    ("state_unreadable", Severity::Medium),
    ("sink_failed", Severity::Medium),
    // Short-lived shells between two scans are missed.
    ("exec_checks_unavailable", Severity::Medium),
    ("exec_checks_stopped", Severity::Medium),
    // A bind mount over /proc/PID hides that process's fds from the scans.
    ("private_procfs_unavailable", Severity::Medium),
    // Connections that open and close between two scans go unreported.
    ("short_lived_unavailable", Severity::Low),
    ("short_lived_stopped", Severity::Low),
    ("short_lived_namespaces_unwatched", Severity::Low),
];

/// Recoveries close a failure, and carry its severity: a sink that received the failure
/// receives its end.
const RECOVERIES: &[(&str, &str)] =
    &[("sink_recovered", "sink_failed"), ("state_recovered", "state_unavailable")];

/// Whether `action` says the agent runs with less than it was told: ECS `event.outcome:
/// failure`, OCSF status Failure, and a line on stderr (the journal) whatever the sinks are.
pub fn is_failure(action: &str) -> bool {
    FAILURES.iter().any(|(name, _)| *name == action)
}

/// The severity of a health event (a failure or a recovery); `None` for other lifecycle
/// events (telemetry, severity 0).
pub fn severity(action: &str) -> Option<Severity> {
    let failure = RECOVERIES.iter().find(|(name, _)| *name == action).map_or(action, |(_, f)| f);
    FAILURES.iter().find(|(name, _)| *name == failure).map(|(_, severity)| *severity)
}

/// Whether the journal gets a line for `action`: failures, and the recoveries that end them.
pub fn goes_to_the_journal(action: &str) -> bool {
    severity(action).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recovery_closes_a_known_failure_with_its_severity() {
        for (recovery, failure) in RECOVERIES {
            assert!(is_failure(failure), "{recovery} closes {failure}");
            assert!(!is_failure(recovery));
            assert_eq!(severity(recovery), severity(failure));
        }
        assert_eq!(severity("privileges_missing"), Some(Severity::High));
        assert_eq!(severity("sink_recovered"), Some(Severity::Medium));
        assert_eq!(severity("heartbeat"), None);
        assert!(!goes_to_the_journal("agent_started"));
    }
}
