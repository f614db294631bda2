//! `schema = "ecs" | "ocsf"` of a sink: which shape its events leave in. Events are routed,
//! queued and spooled in the canonical (ECS) shape; a sink that asks for OCSF has each batch
//! projected on its own thread, just before delivery.

use crate::event::{Encoded, ocsf};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;

/// The shape of a sink's events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schema {
    /// The canonical event (ECS field names).
    #[default]
    Ecs,
    /// The OCSF projection ([`ocsf::OCSF_VERSION`]).
    Ocsf,
}

impl Schema {
    /// The batch as this schema shapes it.
    pub fn render(self, batch: &[Arc<Encoded>]) -> Cow<'_, [Arc<Encoded>]> {
        match self {
            Schema::Ecs => Cow::Borrowed(batch),
            Schema::Ocsf => Cow::Owned(batch.iter().map(|e| Arc::new(project(e))).collect()),
        }
    }
}

fn project(event: &Encoded) -> Encoded {
    let Ok(canonical) = serde_json::from_slice::<serde_json::Value>(&event.line) else {
        // Every line is the encoder's own JSON; were one not, it is delivered as it is
        // rather than lost.
        return event.clone();
    };
    let mut line = serde_json::to_vec(&ocsf::project(&canonical, event.at_ms))
        .expect("a JSON value always serialises");
    line.push(b'\n');
    Encoded { line, ..event.clone() }
}
