//! `sockwatch rules`: check rule files, run rule fixtures, list the field catalogue.
//!
//! A fixture is a TOML file naming a snapshot document (`sockwatch scan --format json`, path
//! relative to the fixture) and the alerts the rules must raise on it, exactly: each expected alert
//! is the pid of the incident's top-most process and the ids of every rule that matched.

use super::CliError;
use crate::graph::Graph;
use crate::model::{AlertAction, Snapshot};
use crate::rules::{Clock, Engine, FIELDS, RuleSet};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub(super) enum RulesCommand {
    /// Compile rule files (the built-in pack when no path is given): exit 0, or 78 with every
    /// error as file:line:col.
    Check {
        /// Rule files or directories, read in order.
        paths: Vec<PathBuf>,
    },
    /// Run rule fixtures: each names a snapshot and the alerts expected on it.
    Test {
        /// Rule files or directories (the built-in pack when none).
        #[arg(long = "rules", value_name = "PATH")]
        rules: Vec<PathBuf>,
        /// Fixture files, or directories of them (`*.toml`).
        #[arg(required = true)]
        fixtures: Vec<PathBuf>,
    },
    /// List every field a condition can use.
    Fields {
        /// Print docs/rules.md's field reference (Markdown) instead of a plain list.
        #[arg(long)]
        markdown: bool,
    },
}

pub(super) fn run(command: &RulesCommand) -> Result<(), CliError> {
    // Written with `?`, not `println!`: a reader that goes away (`| head`) ends the command
    // quietly instead of panicking.
    let mut out = std::io::stdout().lock();
    match command {
        RulesCommand::Check { paths } => {
            let set = compile(paths)?;
            let enabled = set.enabled().count();
            writeln!(
                out,
                "ok: {} rules ({enabled} enabled) from {} files",
                set.rules.len(),
                set.sources.len()
            )?;
            Ok(())
        }
        RulesCommand::Test { rules, fixtures } => test(&mut out, rules, fixtures),
        RulesCommand::Fields { markdown } => {
            if *markdown {
                write!(out, "{}", crate::rules::fields_markdown())?;
            } else {
                for field in FIELDS {
                    writeln!(out, "{:<28} {:<16} {}", field.name, field.type_name(), field.doc)?;
                }
            }
            Ok(())
        }
    }
}

fn compile(paths: &[PathBuf]) -> Result<RuleSet, CliError> {
    RuleSet::load(paths).map_err(|e| CliError::Rules(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    /// What the fixture shows.
    description: String,
    /// The snapshot document, relative to the fixture file.
    snapshot: PathBuf,
    /// Every alert expected, exactly.
    #[serde(default)]
    alerts: Vec<ExpectedAlert>,
}

#[derive(Deserialize, Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
#[serde(deny_unknown_fields)]
struct ExpectedAlert {
    pid: i32,
    rules: BTreeSet<String>,
}

#[derive(Deserialize)]
struct SnapshotDocument {
    snapshot: Snapshot,
}

fn fixture_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn test(out: &mut impl Write, rules: &[PathBuf], fixtures: &[PathBuf]) -> Result<(), CliError> {
    let files = fixture_files(fixtures)?;
    let set = compile(rules)?;
    let mut failures = Vec::new();
    for file in &files {
        match run_fixture(&set, file) {
            Ok(()) => writeln!(out, "ok   {}", file.display())?,
            Err(why) => {
                writeln!(out, "FAIL {}: {why}", file.display())?;
                failures.push(file.display().to_string());
            }
        }
    }
    if failures.is_empty() {
        writeln!(out, "{} fixtures passed", files.len())?;
        Ok(())
    } else {
        Err(CliError::RuleTests(format!("{} of {} fixtures failed", failures.len(), files.len())))
    }
}

fn run_fixture(set: &RuleSet, file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let fixture: Fixture = toml::from_str(&text).map_err(|e| e.to_string())?;
    let snapshot_path = file.parent().unwrap_or(Path::new(".")).join(&fixture.snapshot);
    let document =
        std::fs::read(&snapshot_path).map_err(|e| format!("{}: {e}", snapshot_path.display()))?;
    let document: SnapshotDocument = serde_json::from_slice(&document)
        .map_err(|e| format!("{}: {e}", snapshot_path.display()))?;
    // Each fixture gets an engine of its own (incidents must not carry over between snapshots);
    // the files were read and checked once, by the caller.
    let rules = RuleSet::compile(set.sources.clone()).map_err(|e| e.to_string())?;
    let mut engine = Engine::new(rules, Clock::default());
    let graph = Graph::build(&document.snapshot, None);
    let (alerts, _) = engine.evaluate(&graph);
    let mut raised: Vec<ExpectedAlert> = alerts
        .iter()
        .filter(|a| a.action == AlertAction::Opened)
        .map(|a| ExpectedAlert {
            pid: a.subject.as_ref().map_or(-1, |p| p.key.pid),
            rules: a.rules.iter().map(|r| r.id.clone()).collect(),
        })
        .collect();
    raised.sort();
    let mut expected = fixture.alerts.clone();
    expected.sort();
    if raised == expected {
        Ok(())
    } else {
        Err(format!("{}: expected {expected:?}, raised {raised:?}", fixture.description))
    }
}
