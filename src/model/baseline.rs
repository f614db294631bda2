//! What the agent reports of the sockets already open when it starts (`[agent] baseline`).

use serde::{Deserialize, Deserializer, Serialize};

/// The baseline: what is open at the first scan, reported as state rather than as news.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// Nothing.
    Off,
    /// One `baseline_summary` event counting every socket, and `existing_socket` for the
    /// sockets a responder looks at first: internet listeners and raw and packet sockets. A
    /// host with 50k connections writes a few hundred lines, not 50k.
    #[default]
    Summary,
    /// `existing_socket` for every socket (and the summary).
    Full,
}

impl Baseline {
    /// Whether the first scan is reported at all.
    pub fn is_on(self) -> bool {
        self != Baseline::Off
    }
}

impl<'de> Deserialize<'de> for Baseline {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `true`/`false` are what 0.2 took: true was the full inventory.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Switch(bool),
            Named(String),
        }
        let expected = "\"summary\", \"full\", \"off\", true or false";
        match Written::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(format!("invalid baseline, expected {expected}"))
        })? {
            Written::Switch(true) => Ok(Baseline::Full),
            Written::Switch(false) => Ok(Baseline::Off),
            Written::Named(name) => match name.as_str() {
                "summary" => Ok(Baseline::Summary),
                "full" => Ok(Baseline::Full),
                "off" => Ok(Baseline::Off),
                other => Err(serde::de::Error::custom(format!(
                    "invalid baseline {other:?}, expected {expected}"
                ))),
            },
        }
    }
}
