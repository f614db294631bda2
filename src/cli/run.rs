//! `sockwatch run`: the agent.

use super::CliError;
use crate::config::Config;
use crate::daemon::{Overrides, RunOptions, run as run_agent};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

fn interval(text: &str) -> Result<Duration, String> {
    crate::model::parse_interval(text)
}

#[derive(Debug, clap::Args)]
pub(super) struct RunArgs {
    /// Config file (with drop-ins in conf.d/ beside it); the embedded defaults when absent.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Time between scans (e.g. 1s, 200ms; at least 50ms). Overrides the config.
    #[arg(long, value_parser = interval)]
    interval: Option<Duration>,
    /// Time between heartbeat events. Overrides the config.
    #[arg(long, value_parser = interval)]
    heartbeat: Option<Duration>,
    /// Do not report the sockets already open at start (`--baseline off`).
    #[arg(long, conflicts_with = "baseline")]
    no_baseline: bool,
    /// What to report of the sockets open at start: `summary` (a count of everything, and
    /// listeners, raw and packet sockets one by one), `full` (every socket) or `off`. Overrides
    /// the config.
    #[arg(long, value_parser = baseline, value_name = "MODE")]
    baseline: Option<crate::model::Baseline>,
    /// Local rule file or directory (repeatable, read in order) instead of the config's `[rules]
    /// paths`: read after the built-in pack, which they extend and override.
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// The local rule files replace the built-in pack instead of adding to it.
    #[arg(long)]
    no_builtin_rules: bool,
    /// Scan on the interval only: no look at processes as they execute. Overrides the config.
    #[arg(long)]
    no_exec_checks: bool,
    /// Where incidents and the last good rule set are kept. Overrides the config.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Standard output takes alerts and the agent's health events only, no telemetry.
    #[arg(long)]
    alerts_only: bool,
    /// Standard output writes one readable line per event (for a terminal) instead of JSON.
    #[arg(long)]
    text: bool,
}

pub(super) fn run(args: &RunArgs) -> Result<(), CliError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded()?,
    };
    let overrides = Overrides {
        interval: args.interval,
        heartbeat: args.heartbeat,
        baseline: match args.no_baseline {
            true => Some(crate::model::Baseline::Off),
            false => args.baseline,
        },
        rules: args.rules.clone(),
        no_builtin_rules: args.no_builtin_rules,
        no_exec_checks: args.no_exec_checks,
        state_dir: args.state_dir.clone(),
        alerts_only: args.alerts_only,
        text: args.text,
    };
    overrides.apply(&mut config);
    run_agent(RunOptions { config, config_path: args.config.clone(), overrides })?;
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum ConfigCommand {
    /// Check a config file and its conf.d/ drop-ins for everything `run` would refuse (sinks,
    /// their secret and certificate files, writable paths, the metrics address, the rules, the
    /// interval against the watchdog), without side effects: exit 0, or 78 with one
    /// file:line:col line per problem.
    Check {
        /// The config file.
        file: PathBuf,
        /// The service's watchdog (its WatchdogSec), which the interval must leave room in; by
        /// default the one the process runs under, if any.
        #[arg(long, value_parser = interval, value_name = "DURATION")]
        watchdog: Option<Duration>,
    },
}

pub(super) fn config(command: &ConfigCommand) -> Result<(), CliError> {
    match command {
        ConfigCommand::Check { file, watchdog } => {
            let config = Config::load(file)?;
            let watchdog = watchdog.or_else(crate::daemon::watchdog);
            let problems = crate::daemon::check_config(&config, watchdog);
            if !problems.is_empty() {
                return Err(crate::daemon::RunError::from(crate::daemon::Refused(problems)).into());
            }
            writeln!(
                std::io::stdout(),
                "{}: ok ({} sinks; rules from {})",
                file.display(),
                config.sinks.len(),
                config.rules.selection.describe().join(", ")
            )?;
            Ok(())
        }
    }
}

fn baseline(text: &str) -> Result<crate::model::Baseline, String> {
    match text {
        "summary" => Ok(crate::model::Baseline::Summary),
        "full" => Ok(crate::model::Baseline::Full),
        "off" => Ok(crate::model::Baseline::Off),
        _ => Err("expected summary, full or off".into()),
    }
}
