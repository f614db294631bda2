//! What a responder needs about an alert's processes beyond the snapshot: who they run as by
//! name, who logged in, what exactly the executable is, and where the login came from. Read
//! once an incident opens or changes, never by every scan.

use super::{Endpoint, ProcKey, RawText};
use serde::{Deserialize, Serialize};

/// Names and audit identity of one process, each resolved where the process lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessContext {
    /// Which process.
    pub key: ProcKey,
    /// Name of the effective uid, from the passwd file of the process's own root (a
    /// container's users resolve in the container); `None` when no entry names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<RawText>,
    /// Name of the real uid, when it differs from the effective one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_user_name: Option<RawText>,
    /// Name of the effective gid, from the group file of the process's own root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<RawText>,
    /// The audit login uid (`/proc/PID/loginuid`): who logged in, whatever the process became
    /// since (su, sudo, setuid). `None` when unset (a daemon started at boot) or unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_uid: Option<u32>,
    /// The login uid's name, from the same passwd file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_user_name: Option<RawText>,
    /// The audit session id (`/proc/PID/sessionid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u32>,
    /// The executable's digest, or why there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ExeHash>,
    /// What could not be read about the process (it exited, a refusal), when something could
    /// not: the fields above are then partial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

impl ProcessContext {
    /// Nothing known yet about `key`.
    pub fn new(key: ProcKey) -> Self {
        ProcessContext {
            key,
            user_name: None,
            real_user_name: None,
            group_name: None,
            login_uid: None,
            login_user_name: None,
            session_id: None,
            hash: None,
            unavailable: None,
        }
    }
}

/// The executable's SHA-256, or why it was not computed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExeHash {
    /// Lowercase hex.
    Sha256(String),
    /// Not computed: too large, too slow to read, unreadable.
    Skipped(String),
}

/// The login a shell descends from: an sshd session process among its ancestors, holding the
/// inbound connection the user came in on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginOrigin {
    /// The sshd process holding the connection.
    pub process: ProcKey,
    /// Where the user connected from.
    pub remote: Endpoint,
    /// The address and port the user connected to.
    pub local: Endpoint,
}
