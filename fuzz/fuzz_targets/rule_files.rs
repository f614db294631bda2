//! A rule file from a hostile or careless hand, alone and on top of the built-in pack (overrides
//! and appends reach into its lists and macros): compiling never panics or overflows the stack,
//! and every error it reports points inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockwatch::rules::{RuleSet, RuleSource};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let file = RuleSource { name: "fuzz.toml".into(), text: text.clone() };
    let line_count = text.lines().count().max(1) + 1;
    for sources in [vec![file.clone()], RuleSource::embedded().into_iter().chain([file]).collect()] {
        if let Err(errors) = RuleSet::compile(sources) {
            assert!(!errors.0.is_empty());
            for error in errors.0.iter().filter(|e| e.file == "fuzz.toml") {
                assert!(error.line >= 1 && error.line <= line_count, "{error}");
                assert!(error.column >= 1, "{error}");
            }
        }
    }
});
