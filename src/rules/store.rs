//! The state directory: open incidents and the last rule set that compiled, so that a restart
//! neither re-alerts on a shell already reported nor forgets one, and a broken rule file at start
//! falls back to working rules instead of leaving the host without detection. Files are replaced
//! atomically (write, fsync, rename), so a crash leaves the old or the new version, never a mix.

use super::incident::Incident;
use super::ruleset::RuleSource;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

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
#[derive(Clone, Debug)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Uses (and creates, mode 0700) a directory.
    pub fn open(path: &Path) -> std::io::Result<StateDir> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
        Ok(StateDir { path: path.to_path_buf() })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
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
        let path = self.path.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn write<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let path = self.path.join(name);
        let temporary = self.path.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&temporary)?;
        serde_json::to_writer(&mut file, value)?;
        file.write_all(b"\n")?;
        file.sync_data()?;
        std::fs::rename(&temporary, &path)?;
        // The rename is durable once the directory is synced.
        std::fs::File::open(&self.path)?.sync_all()
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
