//! Detection rules (DESIGN §5): rule files in TOML, a typed condition language compiled to
//! closures over the snapshot's fd graph, and the incident lifecycle that turns matches into one
//! alert per network endpoint reached.
//!
//! ```text
//! rule files --ruleset--> lists, macros, rules --syntax--> AST --compile (fields)--> closures
//! Graph --subject--> (process, socket) subjects --engine--> matches by socket --incident--> alerts
//! ```

mod compile;
mod engine;
mod error;
mod fields;
mod incident;
mod lineage;
#[cfg(test)]
mod pack_tests;
mod ruleset;
mod store;
mod subject;
mod syntax;
mod template;
#[cfg(test)]
mod tests;

pub use engine::{Engine, EvaluationStats, Prepared};
pub use error::{RuleError, RuleErrors};
pub use fields::{FIELDS, Field, Kind, fields_markdown};
pub use incident::{Incident, MISSES_TO_RESOLVE};
pub use ruleset::{Covers, EMBEDDED_PACK, Rule, RuleSet, RuleSource, Selection};
pub use store::{SavedIncidents, StateDir};
pub use subject::Clock;
