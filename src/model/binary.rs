//! What a binary is, whatever it is called: the kinds of program the agent knows (shells,
//! interpreters, network tools, multi-call binaries), the file names they go by, and how a
//! process's executable was found to be one of them (DESIGN §10).

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What kind of program one of the host's known binaries is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryKind {
    /// A command shell (`sh`, `bash`, `dash`, `zsh`, the csh family, …).
    Shell,
    /// A language interpreter with an interactive mode (`python3`, `perl`, `ruby`, `node`, …).
    Interpreter,
    /// A program made to move bytes over the network (`nc`, `ncat`, `socat`, `openssl`, …).
    NetworkTool,
    /// One binary that is many programs, chosen by argv (`busybox`, `toybox`).
    Multicall,
}

impl BinaryKind {
    /// The lowercase name rules compare with.
    pub fn name(self) -> &'static str {
        match self {
            BinaryKind::Shell => "shell",
            BinaryKind::Interpreter => "interpreter",
            BinaryKind::NetworkTool => "network_tool",
            BinaryKind::Multicall => "multicall",
        }
    }
}

/// Programs recognised by name in the program directories: exact names, and names followed by a
/// version (`python3.11`, `lua5.4`, `perl5.36.0`, `tclsh8.6`).
const SHELLS: &[&str] = &[
    "sh", "bash", "rbash", "dash", "ash", "hush", "zsh", "ksh", "ksh93", "mksh", "lksh", "pdksh",
    "oksh", "loksh", "yash", "posh", "csh", "bsd-csh", "tcsh", "fish", "rc", "es", "elvish",
    "xonsh", "nu",
];
const VERSIONED_INTERPRETERS: &[&str] =
    &["python", "pypy", "perl", "ruby", "irb", "php", "lua", "luajit", "tclsh", "wish", "guile"];
const INTERPRETERS: &[&str] = &[
    "node",
    "nodejs",
    "deno",
    "bun",
    "awk",
    "gawk",
    "mawk",
    "nawk",
    "original-awk",
    "expect",
    "jrunscript",
    "jshell",
    "Rscript",
    "pwsh",
    "qjs",
    "gjs",
];
const NETWORK_TOOLS: &[&str] = &[
    "nc",
    "netcat",
    "nc.traditional",
    "nc.openbsd",
    "ncat",
    "socat",
    "socat1",
    "telnet",
    "telnet.netkit",
    "inetutils-telnet",
    "cryptcat",
    "pwncat",
    "rcat",
    "sbd",
    "openssl",
    "gnutls-cli",
    "curl",
    "wget",
];
const MULTICALL: &[&str] = &["busybox", "toybox"];

impl BinaryKind {
    /// What a program's file name says it is: the host's known binaries are found by these
    /// names, and a name alone is reason enough not to trust a binary.
    pub fn of_file_name(name: &[u8]) -> Option<BinaryKind> {
        let is = |list: &[&str]| list.iter().any(|n| n.as_bytes() == name);
        if is(SHELLS) {
            return Some(BinaryKind::Shell);
        }
        if is(MULTICALL) {
            return Some(BinaryKind::Multicall);
        }
        let versioned = VERSIONED_INTERPRETERS.iter().any(|n| versioned(name, n.as_bytes()));
        if is(INTERPRETERS) || versioned {
            return Some(BinaryKind::Interpreter);
        }
        is(NETWORK_TOOLS).then_some(BinaryKind::NetworkTool)
    }
}

/// `name` is `stem` or `stem` followed by a version made of digits and dots.
fn versioned(name: &[u8], stem: &[u8]) -> bool {
    name.strip_prefix(stem).is_some_and(|rest| {
        rest.is_empty()
            || (rest[0].is_ascii_digit() && rest.iter().all(|b| b.is_ascii_digit() || *b == b'.'))
    })
}

/// How an executable was found to be one of the host's known binaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityMatch {
    /// The same file: device and inode.
    Inode,
    /// Another file with the same bytes (SHA-256): a copy, a memfd, a deleted file.
    Content,
}

/// The known binary an executable is, whatever it is called.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The known binary's file name on the host (`dash`, `bsd-csh`, `python3.11`).
    pub name: Arc<str>,
    /// What it is.
    pub kind: BinaryKind,
    /// How it was recognised.
    pub by: IdentityMatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_what_a_program_is() {
        for (name, kind) in [
            ("sh", Some(BinaryKind::Shell)),
            ("bsd-csh", Some(BinaryKind::Shell)),
            ("python3.11", Some(BinaryKind::Interpreter)),
            ("python3", Some(BinaryKind::Interpreter)),
            ("perl5.36.0", Some(BinaryKind::Interpreter)),
            ("lua5.4", Some(BinaryKind::Interpreter)),
            ("irb3.1", Some(BinaryKind::Interpreter)),
            ("nc.openbsd", Some(BinaryKind::NetworkTool)),
            ("busybox", Some(BinaryKind::Multicall)),
            ("python-config", None),
            ("phpize", None),
            ("shred", None),
            ("luac5.4", None),
            ("", None),
        ] {
            assert_eq!(BinaryKind::of_file_name(name.as_bytes()), kind, "{name}");
        }
    }
}
