//! The command line: argument definitions and dispatch. `main` stays thin: it calls `run` and maps
//! the result to an exit code.

mod container;
mod incidents;
mod rules;
mod run;
mod scan;
mod scan_filter;
mod table;

use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// sockwatch: which process holds which socket, and where every shell's stdio leads.
#[derive(Debug, Parser)]
#[command(name = "sockwatch", version, about, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: scan every interval, report socket changes as NDJSON events on stdout.
    Run(run::RunArgs),
    /// Config files.
    #[command(subcommand)]
    Config(run::ConfigCommand),
    /// Take one snapshot of the host and print its sockets with every holder.
    Scan(scan::ScanArgs),
    /// Detection rules: check files, run fixtures, list fields.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// List the open incidents the agent keeps in its state directory.
    Incidents(incidents::IncidentsArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The command-line definition, for generating the man page and shell completions
/// (`examples/package_assets.rs`) from the same source as the parser.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Exit status for a missing privilege (sysexits EX_NOPERM).
const EXIT_NO_PERMISSION: u8 = 77;
/// Exit status when the output is gone (sysexits EX_IOERR).
const EXIT_IO_ERROR: u8 = 74;
/// Exit status when the input cannot be read (sysexits EX_NOINPUT).
const EXIT_NO_INPUT: u8 = 66;
/// Exit status for a usage error (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit status for a configuration error (sysexits EX_CONFIG); the systemd unit does not restart
/// on it.
const EXIT_CONFIG: u8 = 78;

/// Errors a command reports as one line before exiting non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The scan lacks capabilities it needs to see every process.
    #[error(
        "missing capabilities {0}: other users' fds and namespaces would be invisible; \
         grant them (or run as root), or pass --partial to scan only what is visible"
    )]
    MissingCapabilities(String),
    /// The scanner could not start.
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The agent could not start.
    #[error(transparent)]
    Run(#[from] crate::daemon::RunError),
    /// Rule files have errors (or rule tests failed).
    #[error("{0}")]
    Rules(String),
    /// Rule fixtures did not produce the expected alerts.
    #[error("{0}")]
    RuleTests(String),
    /// The state directory could not be read.
    #[error("state directory {0}")]
    State(String),
    /// An argument names something that is not there (a user no passwd entry names).
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::MissingCapabilities(_) => EXIT_NO_PERMISSION,
            CliError::Config(_) | CliError::Rules(_) => EXIT_CONFIG,
            CliError::Run(
                crate::daemon::RunError::Rules(_)
                | crate::daemon::RunError::Refused(_)
                | crate::daemon::RunError::Sink(_),
            ) => EXIT_CONFIG,
            CliError::Run(crate::daemon::RunError::OutputClosed) => EXIT_IO_ERROR,
            CliError::Scan(_) | CliError::Run(_) | CliError::Output(_) => 1,
            CliError::RuleTests(_) => 1,
            CliError::State(_) => EXIT_NO_INPUT,
            CliError::Usage(_) => EXIT_USAGE,
        }
    }
}

/// Parses `args` and runs the command.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // All of it: the possible values, "a similar argument exists", the usage line. Bare
            // `sockwatch` gets the help.
            let rendered = e.render().to_string();
            let rendered = rendered.strip_prefix("error: ").unwrap_or(&rendered);
            let prefix = match e.kind() {
                clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => "",
                _ => "sockwatch: ",
            };
            let _ = write!(std::io::stderr(), "{prefix}{}", rendered.trim_end_matches('\n'));
            let _ = writeln!(std::io::stderr());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Config(command) => run::config(&command),
        Command::Scan(args) => scan::run(&args),
        Command::Rules(command) => rules::run(&command),
        Command::Incidents(args) => incidents::run(&args),
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(shell, &mut command(), "sockwatch", &mut out);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            // One line per problem, each a line the journal shows whole.
            let mut stderr = std::io::stderr().lock();
            for line in e.to_string().lines() {
                let _ = writeln!(stderr, "sockwatch: {line}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
