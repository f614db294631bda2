//! `sockwatch rules`: check rule files, run rule fixtures, list the rules in force and the field
//! catalogue. Local rule files are read after the built-in pack, as the agent reads them, unless
//! `--no-builtin` says they replace it.
//!
//! A fixture is a TOML file naming a snapshot document (`sockwatch scan --format json`, path
//! relative to the fixture) and the alerts the rules must raise on it, exactly: each expected alert
//! is the pid of the incident's top-most process and the ids of every rule that matched.

use super::CliError;
use crate::graph::Graph;
use crate::model::{AlertAction, Snapshot};
use crate::rules::{Clock, Engine, FIELDS, RuleSet, Selection};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub(super) enum RulesCommand {
    /// Compile the built-in pack and local rule files after it: exit 0, or 78 with every error
    /// as file:line:col (a set with no enabled rule is one).
    Check {
        /// Local rule files or directories, read in order after the built-in pack.
        paths: Vec<PathBuf>,
        /// The files replace the built-in pack.
        #[arg(long)]
        no_builtin: bool,
        /// Accept a set with no enabled rule.
        #[arg(long)]
        allow_none: bool,
    },
    /// Run rule fixtures: each names a snapshot and the alerts expected on it.
    Test {
        /// Local rule files or directories, read after the built-in pack.
        #[arg(long = "rules", value_name = "PATH")]
        rules: Vec<PathBuf>,
        /// The files replace the built-in pack.
        #[arg(long)]
        no_builtin: bool,
        /// Fixture files, or directories of them (`*.toml`).
        #[arg(required = true)]
        fixtures: Vec<PathBuf>,
    },
    /// List the rules the agent would run, each with where it is defined: those of a config
    /// file's `[rules]` (the embedded defaults without one), or of the files given.
    List {
        /// The agent's config file (its conf.d/ drop-ins included).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Local rule files or directories instead of the config's `[rules] paths`.
        #[arg(long = "rules", value_name = "PATH")]
        rules: Vec<PathBuf>,
        /// The files replace the built-in pack.
        #[arg(long)]
        no_builtin: bool,
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
        RulesCommand::Check { paths, no_builtin, allow_none } => {
            let selection =
                Selection { builtin: !no_builtin, paths: paths.clone(), allow_none: *allow_none };
            let set = compile(&selection)?;
            let enabled = set.enabled().count();
            writeln!(
                out,
                "ok: {} rules ({enabled} enabled) from {} files",
                set.rules.len(),
                set.sources.len()
            )?;
            Ok(())
        }
        RulesCommand::Test { rules, no_builtin, fixtures } => {
            let selection =
                Selection { builtin: !no_builtin, paths: rules.clone(), allow_none: true };
            test(&mut out, &selection, fixtures)
        }
        RulesCommand::List { config, rules, no_builtin } => {
            let mut selection = match config {
                Some(path) => crate::config::Config::load(path)?.rules.selection,
                None => crate::config::Config::embedded()?.rules.selection,
            };
            if !rules.is_empty() {
                selection.paths = rules.clone();
            }
            selection.builtin &= !no_builtin;
            list(&mut out, &compile(&selection)?)
        }
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

fn compile(selection: &Selection) -> Result<RuleSet, CliError> {
    RuleSet::load(selection).map_err(|e| CliError::Rules(e.to_string()))
}

fn list(out: &mut impl Write, set: &RuleSet) -> Result<(), CliError> {
    for rule in &set.rules {
        let state = if rule.enabled { "enabled" } else { "disabled" };
        let severity = rule.severity.name();
        writeln!(out, "{:<44} {state:<9} {severity:<13} {}", rule.id, rule.defined_at)?;
    }
    let sources: Vec<&str> = set.sources.iter().map(|s| s.name.as_str()).collect();
    let enabled = set.enabled().count();
    writeln!(out, "{} rules ({enabled} enabled) from {}", set.rules.len(), sources.join(", "))?;
    Ok(())
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

fn test(out: &mut impl Write, selection: &Selection, fixtures: &[PathBuf]) -> Result<(), CliError> {
    let files = fixture_files(fixtures)?;
    let set = compile(selection)?;
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
