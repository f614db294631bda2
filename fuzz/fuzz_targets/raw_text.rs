//! Hostile text on the way out: JSON keeps it losslessly on one line, the visible escape leaves
//! no control, separator or bidi character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockwatch::model::RawText;

fuzz_target!(|data: &[u8]| {
    let text = RawText::new(data.to_vec());
    let json = serde_json::to_string(&text).unwrap();
    assert!(!json.contains('\n'));
    assert_eq!(serde_json::from_str::<RawText>(&json).unwrap(), text);
    let shown = text.escape_visible();
    assert!(!shown.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')));
});
