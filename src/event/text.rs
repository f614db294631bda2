//! Strings from /proc on their way into events: escaped visibly (controls, DEL, C1, line
//! separators, bidi marks), invalid UTF-8 kept losslessly in a sibling `<field>_b64`, and capped so
//! no line outgrows journald's 48 KiB or a SIEM's field limit.

use crate::model::RawText;
use base64::Engine as _;
use serde_json::{Map, Value};

/// Per-field byte caps (of the escaped text).
pub const NAME_CAP: usize = 256;
/// Paths: executable, cwd, unix socket names.
pub const PATH_CAP: usize = 4096;
/// One argument.
pub const ARG_CAP: usize = 2048;
/// The whole command line.
pub const COMMAND_LINE_CAP: usize = 8192;
/// Arguments kept.
pub const MAX_ARGS: usize = 64;
/// All kept arguments together. With the command line, paths and 64 holders, a line stays under
/// journald's 48 KiB.
pub const ARGS_TOTAL_CAP: usize = 16 * 1024;

/// Writes `field` (and `field_b64` when the bytes are not UTF-8) into `object`, capped at `cap`;
/// records the field name in `truncated` when it was cut.
pub fn put_text(
    object: &mut Map<String, Value>,
    field: &str,
    raw: &[u8],
    cap: usize,
    path: &str,
    truncated: &mut Vec<String>,
) {
    let (shown, cut) = capped(RawText::from(raw).escape_visible(), cap);
    object.insert(field.to_string(), Value::String(shown));
    if std::str::from_utf8(raw).is_err() {
        let kept = &raw[..raw.len().min(cap)];
        let b64 = base64::engine::general_purpose::STANDARD.encode(kept);
        object.insert(format!("{field}_b64"), Value::String(b64));
    }
    if cut {
        truncated.push(path.to_string());
    }
}

/// Cuts `text` to at most `cap` bytes at a character boundary.
pub fn capped(mut text: String, cap: usize) -> (String, bool) {
    if text.len() <= cap {
        return (text, false);
    }
    let mut end = cap;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_and_kept() {
        let mut object = Map::new();
        let mut truncated = Vec::new();
        put_text(
            &mut object,
            "name",
            b"x\n\x1b[31m\xe2\x80\xae\xff",
            256,
            "process.name",
            &mut truncated,
        );
        assert_eq!(object["name"], r"x\n\u{001b}[31m\u{202e}\xff");
        assert_eq!(object["name_b64"], "eAobWzMxbeKArv8=");
        assert!(truncated.is_empty());
        put_text(&mut object, "long", "é".repeat(10).as_bytes(), 5, "x.long", &mut truncated);
        assert_eq!(object["long"], "éé");
        assert_eq!(truncated, vec!["x.long"]);
    }
}
