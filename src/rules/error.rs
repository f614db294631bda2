//! Rule-set errors: each located at file:line:col and naming the rule, macro or list it is in.
//! Loading collects every error of every file before failing, so one `rules check` run shows all
//! of them.

use std::fmt;

/// One problem in the rule files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    /// The file (`<embedded>/…` for the built-in pack).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// `rule \`id\``, `macro \`name\`` or `list \`name\``, when the error is inside one.
    pub context: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(context) = &self.context {
            write!(f, "{context}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleErrors(pub Vec<RuleError>);

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleErrors {}

/// Where each line of a text starts: a file with thousands of errors is read once to locate
/// them all, not once per error.
pub struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    /// Indexes `text`.
    pub fn new(text: &str) -> Lines {
        let breaks = text.match_indices('\n').map(|(at, _)| at + 1);
        Lines { starts: std::iter::once(0).chain(breaks).collect() }
    }

    /// Line and column (both 1-based, column in characters) of a byte offset into the text this
    /// index was made from.
    pub fn locate(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|start| *start <= offset);
        let column = text[self.starts[line - 1]..offset].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_characters() {
        let text = "ab\nçd\n";
        let line_column = |offset| Lines::new(text).locate(text, offset);
        assert_eq!(line_column(0), (1, 1));
        assert_eq!(line_column(3), (2, 1));
        assert_eq!(line_column(5), (2, 2));
        assert_eq!(line_column(4), (2, 1), "inside a character: its start");
        assert_eq!(line_column(99), (3, 1));
    }
}
