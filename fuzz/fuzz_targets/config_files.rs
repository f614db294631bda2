//! A config file (or a drop-in after it) from a hostile or careless hand: loading never panics,
//! and a refusal names a line and column inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockwatch::config::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let line_count = text.lines().count().max(1) + 1;
    let alone = vec![("sockwatch.toml".to_string(), text.clone())];
    let drop_in = vec![
        ("sockwatch.toml".to_string(), "[agent]\ninterval = \"1s\"\n".to_string()),
        ("conf.d/50-fuzz.toml".to_string(), text),
    ];
    for files in [alone, drop_in] {
        if let Err(error) = Config::from_files(&files) {
            if error.file.ends_with("fuzz.toml") || files.len() == 1 {
                assert!(error.line >= 1 && error.line <= line_count, "{error}");
            }
        }
    }
});
