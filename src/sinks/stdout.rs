//! NDJSON to standard output, flushed after every batch (journald reads it line by line).

use super::{Sink, SinkError};
use crate::event::Encoded;
use serde::Deserialize;
use std::io::Write;
use std::sync::Arc;

/// `type = "stdout"`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// Event kinds this sink takes (all when absent).
    pub kinds: Option<Vec<crate::event::EventKind>>,
    /// Lowest `event.severity` taken (all when absent).
    pub min_severity: Option<super::MinSeverity>,
    /// `ecs` (default) or `ocsf`.
    #[serde(default)]
    pub schema: super::Schema,
}

/// Standard output.
pub struct StdoutSink {
    out: std::io::BufWriter<std::io::Stdout>,
}

impl StdoutSink {
    /// The process's standard output.
    pub fn new() -> Self {
        StdoutSink { out: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()) }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

fn error(source: std::io::Error) -> SinkError {
    SinkError::Io { sink: "stdout".into(), source }
}

impl Sink for StdoutSink {
    fn write_batch(&mut self, batch: &[Arc<Encoded>]) -> Result<(), SinkError> {
        for event in batch {
            self.out.write_all(&event.line).map_err(error)?;
        }
        self.flush()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(error)
    }
}
