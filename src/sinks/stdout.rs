//! NDJSON to standard output, flushed after every batch (journald reads it line by line). A
//! closed stdout (`run | head -1`, a journal stream gone) never comes back: it is said once on
//! the sink context's `closed` channel, and the agent stops if nothing else receives its events.

use super::{Sink, SinkError, SinkStats};
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
    /// `json` (default: NDJSON) or `text` (one readable line per event, for a terminal).
    #[serde(default)]
    pub format: StdoutFormat,
}

/// How events are written to standard output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdoutFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// One line for a human: time, severity, action, message (and an alert's rules).
    Text,
}

const NAME: &str = "stdout";

/// Standard output.
pub struct StdoutSink {
    out: std::io::BufWriter<std::io::Stdout>,
    format: StdoutFormat,
    stats: Arc<SinkStats>,
    closed: Option<crossbeam_channel::Sender<String>>,
}

impl StdoutSink {
    /// The process's standard output; outages are reported through `stats`, a closed stdout
    /// once on `closed`.
    pub fn new(
        format: StdoutFormat,
        stats: Arc<SinkStats>,
        closed: crossbeam_channel::Sender<String>,
    ) -> Self {
        let out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
        StdoutSink { out, format, stats, closed: Some(closed) }
    }

    fn write(&mut self, batch: &[Arc<Encoded>]) -> std::io::Result<()> {
        for event in batch {
            match self.format {
                StdoutFormat::Json => self.out.write_all(&event.line)?,
                StdoutFormat::Text => {
                    let parsed = serde_json::from_slice::<serde_json::Value>(&event.line);
                    match parsed {
                        Ok(event) => writeln!(self.out, "{}", crate::event::terminal_line(&event))?,
                        // The encoder's own JSON always parses; were it not, it goes out as is.
                        Err(_) => self.out.write_all(&event.line)?,
                    }
                }
            }
        }
        self.out.flush()
    }
}

impl Sink for StdoutSink {
    fn write_batch(&mut self, batch: &[Arc<Encoded>]) -> Result<(), SinkError> {
        match self.write(batch) {
            Ok(()) => {
                self.stats.attempt_succeeded(NAME);
                Ok(())
            }
            Err(source) => {
                self.stats.attempt_failed(NAME, &source.to_string());
                if source.kind() == std::io::ErrorKind::BrokenPipe
                    && let Some(closed) = self.closed.take()
                {
                    let _ = closed.send(NAME.into());
                }
                Err(SinkError::Io { sink: NAME.into(), source })
            }
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Io { sink: NAME.into(), source })
    }
}
