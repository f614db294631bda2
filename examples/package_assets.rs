//! Writes what packages install beside the binary and that derives from its command-line
//! definition, so it cannot drift from the parser: man pages (sockwatch.1 and one per
//! subcommand, sockwatch-rules-test.1 and kin) and completions for bash, zsh and fish.
//! `dev/package` runs it.
//!
//! `cargo run --release --example package_assets -- OUT_DIR`

use clap_complete::Shell;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args_os().nth(1).expect("usage: package_assets OUT_DIR"));
    let (man, completions) = (out.join("man"), out.join("completions"));
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(sockwatch::cli::command(), &man)?;
    let shells =
        [(Shell::Bash, "sockwatch"), (Shell::Zsh, "_sockwatch"), (Shell::Fish, "sockwatch.fish")];
    for (shell, file) in shells {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut sockwatch::cli::command(), "sockwatch", &mut script);
        std::fs::write(completions.join(file), script)?;
    }
    Ok(())
}
