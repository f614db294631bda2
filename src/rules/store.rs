//! The state directory: open incidents and the last rule set that compiled, so that a restart
//! neither re-alerts on a shell already reported nor forgets one, and a broken rule file at start
//! falls back to working rules instead of leaving the host without detection. Files are replaced
//! atomically (write, fsync, rename), so a crash leaves the old or the new version, never a mix;
//! they are written by directory handle, never through a symlink, mode 0600 (`crate::files`).

use super::incident::Incident;
use super::ruleset::RuleSource;
use crate::files::{Access, Dir, DirError};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;

const INCIDENTS: &str = "incidents.json";
const LAST_GOOD_RULES: &str = "rules.last-good.json";

/// Open incidents as saved, with the boot they belong to (socket inodes mean nothing after a
/// reboot).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SavedIncidents {
    /// `host.boot.id` when saved.
    pub boot_id: String,
    /// The incidents.
    pub incidents: Vec<Incident>,
}

/// The state directory.
#[derive(Debug)]
pub struct StateDir {
    dir: Dir,
}

impl StateDir {
    /// Uses (and creates, mode 0700) a directory; refuses one another user could write in.
    pub fn open(path: &Path) -> Result<StateDir, DirError> {
        Ok(StateDir { dir: Dir::create(path)? })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Saved incidents; an unreadable or corrupt file is reported and treated as none (a
    /// corrupt state file must never stop the agent).
    pub fn incidents(&self) -> Result<Option<SavedIncidents>, String> {
        self.read(INCIDENTS)
    }

    /// Replaces the saved incidents.
    pub fn save_incidents(&self, saved: &SavedIncidents) -> std::io::Result<()> {
        self.write(INCIDENTS, saved)
    }

    /// The last rule set that compiled.
    pub fn last_good_rules(&self) -> Result<Option<Vec<RuleSource>>, String> {
        self.read(LAST_GOOD_RULES)
    }

    /// Records a rule set that compiled.
    pub fn save_good_rules(&self, sources: &[RuleSource]) -> std::io::Result<()> {
        self.write(LAST_GOOD_RULES, &sources)
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, String> {
        let path = self.dir.path().join(name);
        let mut bytes = Vec::new();
        let read =
            self.dir.open_file(name, Access::Read, 0).and_then(|mut f| f.read_to_end(&mut bytes));
        match read {
            Ok(_) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn write<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let temporary = format!(".{name}.tmp");
        let mut file =
            std::io::BufWriter::new(self.dir.open_file(&temporary, Access::Replace, 0o600)?);
        serde_json::to_writer(&mut file, value)?;
        file.write_all(b"\n")?;
        file.into_inner().map_err(|e| e.into_error())?.sync_data()?;
        self.dir.rename(&temporary, name)?;
        // The rename is durable once the directory is synced.
        self.dir.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_rules_round_trip_and_corruption_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("sockwatch-state-{}", std::process::id()));
        let state = StateDir::open(&dir).unwrap();
        assert_eq!(state.last_good_rules().unwrap(), None);
        let sources = vec![RuleSource { name: "a.toml".into(), text: "[[rule]]\n".into() }];
        state.save_good_rules(&sources).unwrap();
        assert_eq!(state.last_good_rules().unwrap(), Some(sources));
        std::fs::write(dir.join(INCIDENTS), b"{\"boot_id\": tor").unwrap();
        assert!(state.incidents().unwrap_err().contains("incidents.json"));
        state.save_incidents(&SavedIncidents::default()).unwrap();
        let mode =
            std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(dir.join(INCIDENTS)).unwrap());
        assert_eq!(mode & 0o777, 0o600, "incidents are the agent's alone");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
