//! `RawText`: bytes that came from /proc (comm, argv, paths, unix socket names).
//!
//! The kernel promises nothing about their encoding and an attacker chooses them (`prctl(PR_SET_NAME)`,
//! `exec -a`, file names with newlines). They are kept as exact bytes; every way out of the process
//! either preserves them losslessly (JSON: a string when valid UTF-8, else `{"base64": …}`) or escapes
//! them visibly (`escape_visible`, for terminals and tables).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// Exact bytes from /proc, never assumed to be UTF-8. Immutable and shared: a process's argv,
/// cwd or cgroup remembered between scans goes into each snapshot without a copy.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawText(Arc<[u8]>);

impl RawText {
    /// Copies bytes without inspecting them.
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        RawText(Arc::from(bytes.as_ref()))
    }

    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text when it is valid UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text with every byte or character that could mislead a reader escaped: C0/C1 controls,
    /// DEL, line and paragraph separators, bidi overrides and isolates, backslash, and invalid
    /// UTF-8 (as `\xNN`). The result is one line of printable text and maps back to one input.
    pub fn escape_visible(&self) -> String {
        escape_visible(&self.0)
    }
}

impl From<&str> for RawText {
    fn from(s: &str) -> Self {
        RawText::new(s)
    }
}

impl From<&[u8]> for RawText {
    fn from(b: &[u8]) -> Self {
        RawText::new(b)
    }
}

impl fmt::Debug for RawText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.escape_visible())
    }
}

impl fmt::Display for RawText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.escape_visible())
    }
}

/// True for characters that change how surrounding text is displayed or split into lines.
fn is_deceptive(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || matches!(c,
            '\u{2028}' | '\u{2029}'            // line/paragraph separators (break JS/JSON lines)
            | '\u{200E}' | '\u{200F}' | '\u{061C}' // direction marks
            | '\u{202A}'..='\u{202E}'          // embeddings and overrides
            | '\u{2066}'..='\u{2069}'          // isolates
            | '\u{FEFF}')
}

/// See [`RawText::escape_visible`].
pub fn escape_visible(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if is_deceptive(c) => {
                    use std::fmt::Write as _;
                    let _ = write!(out, "\\u{{{:04x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            use std::fmt::Write as _;
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Writes `value` as JSON, lossless as any JSON, with every character that could mislead a reader
/// of the raw output (C1 controls, DEL, line and paragraph separators, bidi marks) written as a
/// `\uXXXX` escape, as serde_json already does for C0 controls: `jq` and any parser read back the
/// same strings, and a terminal showing the output cannot be turned around by them.
pub fn write_json_escaped<W: std::io::Write, T: Serialize + ?Sized>(
    writer: W,
    value: &T,
) -> serde_json::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(writer, EscapingFormatter);
    value.serialize(&mut serializer)
}

struct EscapingFormatter;

impl serde_json::ser::Formatter for EscapingFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            if is_deceptive(c) {
                writer.write_all(&fragment.as_bytes()[start..at])?;
                // Every such character is in the Basic Multilingual Plane: one escape each.
                write!(writer, "\\u{:04x}", c as u32)?;
                start = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[derive(Serialize, Deserialize)]
struct Base64Text {
    base64: String,
}

impl Serialize for RawText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.to_str() {
            Some(text) => serializer.serialize_str(text),
            None => Base64Text { base64: BASE64.encode(&self.0) }.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for RawText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Base64(Base64Text),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Text(text) => Ok(RawText::new(text)),
            Repr::Base64(b) => BASE64
                .decode(b.base64.as_bytes())
                .map(RawText::new)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_terminal_and_bidi_tricks() {
        let hostile = RawText::new(b"a\nb\x1b[31m\xe2\x80\xaeevil\xff\x7f\\");
        assert_eq!(hostile.escape_visible(), "a\\nb\\u{001b}[31m\\u{202e}evil\\xff\\u{007f}\\\\");
    }

    #[test]
    fn invalid_utf8_round_trips_through_json_as_base64() {
        let raw = RawText::new(vec![0x66, 0xff, 0x0a]);
        let json = serde_json::to_string(&raw).unwrap();
        assert_eq!(json, r#"{"base64":"Zv8K"}"#);
        assert_eq!(serde_json::from_str::<RawText>(&json).unwrap(), raw);
    }

    #[test]
    fn escaped_json_shows_no_deceptive_character_and_reads_back_the_same() {
        let hostile = "a\u{85}b\u{202e}c\u{2028}d\u{7f}e\u{1b}f\"g";
        let mut out = Vec::new();
        write_json_escaped(&mut out, &serde_json::json!({ "name": hostile })).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, r#"{"name":"a\u0085b\u202ec\u2028d\u007fe\u001bf\"g"}"#);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["name"], hostile);
    }

    proptest! {
        #[test]
        fn escaped_json_is_lossless(text in "\\PC*", controls in proptest::collection::vec(0x80u32..0xa0, 0..4)) {
            let mut text = text;
            text.extend(controls.into_iter().filter_map(char::from_u32));
            text.push('\u{2067}');
            let mut out = Vec::new();
            write_json_escaped(&mut out, &text).unwrap();
            let shown = String::from_utf8(out).unwrap();
            prop_assert!(shown.chars().all(|c| !is_deceptive(c)));
            prop_assert_eq!(serde_json::from_str::<String>(&shown).unwrap(), text);
        }

        #[test]
        fn json_is_lossless_and_single_line(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let raw = RawText::new(bytes);
            let json = serde_json::to_string(&raw).unwrap();
            prop_assert!(!json.contains('\n'));
            prop_assert_eq!(serde_json::from_str::<RawText>(&json).unwrap(), raw);
        }

        #[test]
        fn visible_escape_is_printable_single_line(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let shown = escape_visible(&bytes);
            prop_assert!(shown.chars().all(|c| !is_deceptive(c)));
        }
    }
}
