//! `sockwatch run`: the agent.

use super::CliError;
use crate::daemon::{RunOptions, run as run_agent};
use std::time::Duration;

/// Below this the agent would do little but scan.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

fn interval(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < MIN_INTERVAL {
        return Err(format!("{text} is shorter than the minimum of 50ms"));
    }
    Ok(d)
}

#[derive(Debug, clap::Args)]
pub(super) struct RunArgs {
    /// Time between scans (e.g. 1s, 200ms; at least 50ms).
    #[arg(long, value_parser = interval, default_value = "1s")]
    interval: Duration,
    /// Time between heartbeat events carrying the coverage and sink counters.
    #[arg(long, value_parser = interval, default_value = "60s")]
    heartbeat: Duration,
    /// Do not report the sockets already open at start (as existing_socket state events).
    #[arg(long)]
    no_baseline: bool,
}

pub(super) fn run(args: &RunArgs) -> Result<(), CliError> {
    let options = RunOptions {
        interval: args.interval,
        heartbeat: args.heartbeat,
        baseline: !args.no_baseline,
        ..RunOptions::default()
    };
    run_agent(options)?;
    Ok(())
}
