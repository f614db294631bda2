//! DESIGN §2: each module may use only the modules below it. This reads every source file and
//! checks its `crate::` references against that table, so drift fails CI instead of a review.

use std::collections::BTreeSet;
use std::path::Path;

/// (module, the modules it may use). `cli` also uses `graph`: `sockwatch scan` prints the derived
/// relations (direction, stdio links) beside the snapshot. `config` also uses `rules`: components
/// own their config types (`sinks::SinkConfig`, `rules::Selection`) and `config` assembles them.
/// `files` (verified directories the agent writes in) serves every module that writes. `cli`
/// also uses `event`: `sockwatch scan` redacts argv with the events' own redactor.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("files", &[]),
    ("scan", &["model"]),
    ("graph", &["model"]),
    ("diff", &["model"]),
    ("rules", &["model", "graph", "files"]),
    ("event", &["model"]),
    ("sinks", &["model", "event", "files"]),
    ("config", &["model", "event", "sinks", "rules"]),
    ("daemon", &["model", "scan", "graph", "diff", "rules", "event", "sinks", "config", "files"]),
    ("cli", &["model", "scan", "graph", "rules", "daemon", "config", "event"]),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules named after `crate::` in `source`.
fn crate_references(source: &str) -> BTreeSet<String> {
    source
        .match_indices("crate::")
        .filter_map(|(i, _)| {
            let rest = &source[i + "crate::".len()..];
            let name: String =
                rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[test]
fn modules_only_use_the_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (module, allowed) in ALLOWED {
        let mut files = Vec::new();
        rust_files(&src.join(module), &mut files);
        assert!(!files.is_empty(), "module {module} has no files");
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            for used in crate_references(&source) {
                if used != *module && !allowed.contains(&used.as_str()) {
                    violations.push(format!("{}: uses crate::{used}", file.display()));
                }
            }
        }
    }
    let mut top: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    top.sort();
    let known: BTreeSet<&str> = ALLOWED.iter().map(|(m, _)| *m).collect();
    for module in top {
        assert!(known.contains(module.as_str()), "src/{module} is missing from the boundary table");
    }
    assert!(violations.is_empty(), "boundary violations:\n{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_references() {
    let refs = crate_references("use crate::model::Snapshot;\nfn f() { crate::scan::x(); }");
    assert_eq!(refs.into_iter().collect::<Vec<_>>(), vec!["model", "scan"]);
}
