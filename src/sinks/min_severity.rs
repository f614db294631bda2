//! `min_severity`: the lowest `event.severity` a sink takes, named as rules name severities.

use crate::model::Severity;
use serde::de::{self, Deserializer, Visitor};

/// A sink's severity floor: `"informational"` … `"critical"` (what rules say), or the number
/// `event.severity` carries (0, the default, takes telemetry too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MinSeverity(pub u8);

const NAMES: [Severity; 5] =
    [Severity::Informational, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

const EXPECTED: &str =
    "a severity: \"informational\", \"low\", \"medium\", \"high\", \"critical\", or 0 to 5";

impl<'de> de::Deserialize<'de> for MinSeverity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Floor;
        impl Visitor<'_> for Floor {
            type Value = MinSeverity;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<MinSeverity, E> {
                NAMES
                    .iter()
                    .find(|s| s.name() == name)
                    .map(|s| MinSeverity(s.id()))
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(name), &self))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<MinSeverity, E> {
                u8::try_from(n)
                    .ok()
                    .filter(|n| *n <= Severity::Critical.id())
                    .map(MinSeverity)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Signed(n), &self))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<MinSeverity, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
        deserializer.deserialize_any(Floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Sink {
        min_severity: MinSeverity,
    }

    fn parse(value: &str) -> Result<u8, String> {
        toml::from_str::<Sink>(&format!("min_severity = {value}"))
            .map(|s| s.min_severity.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn names_are_the_rules_severities_and_numbers_stay_valid() {
        assert_eq!(parse("\"informational\""), Ok(1));
        assert_eq!(parse("\"medium\""), Ok(3));
        assert_eq!(parse("\"critical\""), Ok(5));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("4"), Ok(4));
        for bad in ["\"Medium\"", "\"severe\"", "6", "-1", "2.5"] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("informational") && error.contains("0 to 5"), "{bad}: {error}");
            assert!(error.contains("line 1, column 16"), "{bad}: {error}");
        }
    }
}
