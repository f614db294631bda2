//! Durations in config files (agent and sink settings alike): `"1s"`, `"200ms"`, `"1m 30s"` (humantime), checked against a
//! minimum while deserialising so a bad value is reported at its own line and column.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// A duration of at least 50 ms and at most a day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval(pub Duration);

/// The shortest interval accepted anywhere (below it the agent would do little but scan).
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// The longest accepted anywhere: beyond it a setting is a typo (`1000h`), not a choice.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_interval(&text).map(Interval).map_err(serde::de::Error::custom)
    }
}

/// Parses a duration between `MIN_INTERVAL` and `MAX_INTERVAL`.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("bad duration {text:?}: {e}"))?;
    if d < MIN_INTERVAL {
        return Err(format!("{text:?} is shorter than the minimum of 50ms"));
    }
    if d > MAX_INTERVAL {
        return Err(format!("{text:?} is longer than the maximum of 24h"));
    }
    Ok(d)
}
