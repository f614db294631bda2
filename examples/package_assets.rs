//! Writes what packages install beside the binary and that derives from its command-line
//! definition or its shipped config, so it cannot drift from either: man pages (sockwatch.1 with
//! FILES, EXIT STATUS, SIGNALS and EXAMPLES; one per subcommand, sockwatch-rules-test.1 and kin;
//! sockwatch.toml.5, the annotated default config) and completions for bash, zsh and fish.
//! `dev/package` runs it.
//!
//! `cargo run --release --example package_assets -- OUT_DIR`

use clap_complete::Shell;
use std::path::PathBuf;

/// The sections clap has nothing to generate from, appended to sockwatch.1.
const MAIN_PAGE_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/sockwatch/sockwatch.toml\fR
The configuration; local settings go in \fI/etc/sockwatch/conf.d/*.toml\fR (read in name order
on top of it). See \fBsockwatch.toml\fR(5).
.TP
\fI/etc/sockwatch/rules.local.d/*.toml\fR
Local detection rules, read after the built-in pack.
.TP
\fI/var/lib/sockwatch/\fR
The state directory: open incidents (\fIincidents.json\fR) and the last rule set that compiled.
\fBsockwatch incidents\fR reads it.
.TP
\fI/usr/lib/systemd/system/sockwatch.service\fR
The service unit.
.SH EXIT STATUS
.TP
0
Done; \fBrun\fR: stopped by SIGTERM or SIGINT after draining its sinks.
.TP
1
A failure not listed below (the scanner could not start, rule fixtures failed).
.TP
64
Usage error: an unknown option or a bad value on the command line.
.TP
66
\fBincidents\fR: no state directory to read.
.TP
74
\fBrun\fR: standard output closed while it was the only sink.
.TP
77
\fBscan\fR: CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH missing (\fB\-\-partial\fR scans anyway).
.TP
78
A config or rule error, reported as file:line:col; systemd does not restart on it.
.SH SIGNALS
.TP
SIGTERM, SIGINT
\fBrun\fR drains every sink queue and exits 0.
.TP
SIGHUP
\fBrun\fR reopens its files (after log rotation), re-reads the config and the rules; a broken
file keeps the running ones and is reported (\fIreload_failed\fR).
.SH EXAMPLES
.TP
\fBsockwatch run\fR
Scan every second on the embedded defaults; events and alerts as NDJSON on standard output.
.TP
\fBsockwatch run \-\-alerts\-only \-\-text\fR
One readable line per alert at a terminal.
.TP
\fBsockwatch scan \-\-pid 4242\fR
Every socket process 4242 holds, with all their holders.
.TP
\fBsockwatch incidents\fR
The incidents open now, from the state directory.
.TP
\fBsockwatch config check /etc/sockwatch/sockwatch.toml\fR
Everything \fBrun\fR would refuse, without running.
.SH SEE ALSO
\fBsockwatch.toml\fR(5), \fBsystemd.service\fR(5)
"#;

/// sockwatch.toml(5): the shipped config, whose comments are its reference.
fn config_page() -> String {
    let config = include_str!("../config/sockwatch.toml");
    let mut page = String::from(
        ".TH SOCKWATCH.TOML 5 \"\" \"sockwatch\" \"File Formats\"\n\
         .SH NAME\nsockwatch.toml \\- configuration of the sockwatch agent\n\
         .SH SYNOPSIS\n\\fI/etc/sockwatch/sockwatch.toml\\fR, \\fI/etc/sockwatch/conf.d/*.toml\\fR\n\
         .SH DESCRIPTION\nTOML. The drop-ins in \\fIconf.d/\\fR are read in name order on top of \
         the main file; a key set in a later file wins. Every error is reported as \
         file:line:col and \\fBsockwatch run\\fR exits 78 on it; \\fBsockwatch config check\\fR \
         finds the same errors without running. The shipped file, below, sets every key to its \
         default and says what each does.\n.SH DEFAULTS\n.nf\n",
    );
    for line in config.lines() {
        // roff: a backslash is escaped; a line may not start with a control character.
        let line = line.replace('\\', "\\e");
        if line.starts_with('.') || line.starts_with('\'') {
            page.push_str("\\&");
        }
        page.push_str(&line);
        page.push('\n');
    }
    page.push_str(".fi\n.SH SEE ALSO\n\\fBsockwatch\\fR(1)\n");
    page
}

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args_os().nth(1).expect("usage: package_assets OUT_DIR"));
    let (man, completions) = (out.join("man"), out.join("completions"));
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(sockwatch::cli::command(), &man)?;
    let main_page = man.join("sockwatch.1");
    let mut text = std::fs::read_to_string(&main_page)?;
    text.push_str(MAIN_PAGE_EXTRA);
    std::fs::write(&main_page, text)?;
    std::fs::write(man.join("sockwatch.toml.5"), config_page())?;
    let shells =
        [(Shell::Bash, "sockwatch"), (Shell::Zsh, "_sockwatch"), (Shell::Fish, "sockwatch.fish")];
    for (shell, file) in shells {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut sockwatch::cli::command(), "sockwatch", &mut script);
        std::fs::write(completions.join(file), script)?;
    }
    Ok(())
}
