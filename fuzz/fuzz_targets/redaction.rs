//! Configured redaction patterns and the arguments they meet: a pattern either compiles or is
//! refused, redaction never panics, keeps the argument count, and the default patterns are
//! idempotent and always hide a `--password=…` value (whole, when it follows a secret flag).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockwatch::event::{ArgPattern, REDACTED, Redactor};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let args: Vec<String> = rest.split('\0').map(String::from).collect();

    let defaults = Redactor::default();
    let mut once = args.clone();
    defaults.redact(&mut once);
    assert_eq!(once.len(), args.len());
    let mut twice = once.clone();
    defaults.redact(&mut twice);
    assert_eq!(twice, once, "redacting again changes nothing");
    for (before, after) in args.iter().zip(&once) {
        if let Some(value) = before.strip_prefix("--password=").filter(|v| !v.is_empty()) {
            // After a secret flag (`--api-key --password=x`) the whole argument is its value.
            assert!(
                after == &format!("--password={REDACTED}") || after == REDACTED,
                "{value:?} became {after:?}"
            );
        }
    }

    let Ok(configured) = serde_json::from_value::<ArgPattern>(pattern.into()) else { return };
    let mut redacted = args.clone();
    Redactor::with_patterns(&[configured]).redact(&mut redacted);
    assert_eq!(redacted.len(), args.len());
});
