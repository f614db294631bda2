//! Where a setting was written, so that a check made after merging (a sink that cannot open, an
//! interval the watchdog would not survive) still names its file, line and column.

use super::ConfigError;

/// `file:line:col`, or a command-line option (`--interval`) when `line` is 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file (`<embedded>` for the compiled-in defaults), or the option.
    pub file: String,
    /// 1-based line; 0 for a command-line option.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    /// The position of byte `offset` of `text`, the contents of `file`.
    pub fn in_text(file: &str, text: &str, offset: usize) -> Location {
        let before = text.get(..offset.min(text.len())).unwrap_or(text);
        Location {
            file: file.to_string(),
            line: before.matches('\n').count() + 1,
            column: before.rsplit('\n').next().unwrap_or("").chars().count() + 1,
        }
    }

    /// A setting given on the command line.
    pub fn option(name: &str) -> Location {
        Location { file: name.to_string(), line: 0, column: 0 }
    }

    /// An error at this place.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => f.write_str(&self.file),
            line => write!(f, "{}:{line}:{}", self.file, self.column),
        }
    }
}

/// Where the settings checked before running were last set (absent: the built-in default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins {
    /// `[agent] interval`.
    pub interval: Option<Location>,
    /// `[agent] state_dir`.
    pub state_dir: Option<Location>,
    /// `[metrics] listen`.
    pub metrics_listen: Option<Location>,
    /// `[rules] paths`.
    pub rules_paths: Option<Location>,
    /// Each `[[sinks]]` table's header, in order.
    pub sinks: Vec<Location>,
}
