//! The state directory as the agent keeps it: every write's outcome is watched, so a directory
//! that stops taking writes (read-only, full, removed) is reported once, when it starts failing
//! (`state_unavailable`, also on stderr), and once when it works again (`state_recovered`),
//! instead of failing silently on every change in between.

use super::detection::Notice;
use crate::rules::{RuleSource, SavedIncidents, StateDir};
use serde_json::json;
use std::path::PathBuf;

/// What is lost while the directory cannot be written.
const CONSEQUENCE: &str =
    "open incidents and the last good rules are not kept: a restart re-alerts on open incidents";

pub(crate) struct KeptState {
    path: PathBuf,
    dir: Option<StateDir>,
    /// Since when writes fail, and how many have.
    failing: Option<(u64, u64)>,
    failed_writes: u64,
    notices: Vec<Notice>,
}

impl KeptState {
    /// Uses (and creates) the directory at `path`; one that cannot be created is reported and
    /// tried again at the next write.
    pub(crate) fn open(path: PathBuf) -> KeptState {
        let mut kept =
            KeptState { path, dir: None, failing: None, failed_writes: 0, notices: Vec::new() };
        if let Err(error) = kept.dir() {
            kept.failed(&error);
        }
        kept
    }

    /// The directory, if it could be opened.
    pub(crate) fn readable(&self) -> Option<&StateDir> {
        self.dir.as_ref()
    }

    pub(crate) fn save_incidents(&mut self, saved: &SavedIncidents) {
        let result = self.dir().and_then(|dir| dir.save_incidents(saved));
        self.outcome(result);
    }

    pub(crate) fn save_good_rules(&mut self, sources: &[RuleSource]) {
        let result = self.dir().and_then(|dir| dir.save_good_rules(sources));
        self.outcome(result);
    }

    /// Health events since the last call.
    pub(crate) fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Writes that failed since the agent started.
    pub(crate) fn failed_writes(&self) -> u64 {
        self.failed_writes
    }

    fn dir(&mut self) -> std::io::Result<&StateDir> {
        if self.dir.is_none() {
            self.dir = Some(StateDir::open(&self.path).map_err(std::io::Error::from)?);
        }
        Ok(self.dir.as_ref().expect("just opened"))
    }

    fn outcome(&mut self, result: std::io::Result<()>) {
        match result {
            Ok(()) => {
                if let Some((since_ms, failed_writes)) = self.failing.take() {
                    self.notices.push((
                        "state_recovered",
                        json!({
                            "state_dir": self.path.display().to_string(),
                            "failing_since_ms": since_ms,
                            "failed_writes": failed_writes,
                        }),
                    ));
                }
            }
            Err(error) => {
                // Opened again (and verified again) at the next write: the directory may have
                // been removed and made anew meanwhile.
                self.dir = None;
                self.failed(&error)
            }
        }
    }

    fn failed(&mut self, error: &std::io::Error) {
        self.failed_writes += 1;
        if let Some((_, failed_writes)) = &mut self.failing {
            *failed_writes += 1;
            return;
        }
        self.failing = Some((super::now_ms(), 1));
        let dir = self.path.display().to_string();
        self.notices.push((
            "state_unavailable",
            json!({"state_dir": dir, "error": format!("{dir}: {error}"), "consequence": CONSEQUENCE}),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(kept: &mut KeptState) -> Vec<&'static str> {
        kept.take_notices().into_iter().map(|(action, _)| action).collect()
    }

    #[test]
    fn a_failing_directory_is_reported_once_and_its_return_once() {
        let root = std::env::temp_dir().join(format!("sockwatch-kept-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // A file where the directory should be: creating it fails whoever runs the test.
        let path = root.join("state");
        std::fs::write(&path, b"not a directory").unwrap();
        let mut kept = KeptState::open(path.clone());
        assert_eq!(actions(&mut kept), ["state_unavailable"]);
        for _ in 0..3 {
            kept.save_good_rules(&[]);
        }
        assert_eq!(actions(&mut kept), Vec::<&str>::new(), "reported once");
        assert_eq!(kept.failed_writes(), 4);
        std::fs::remove_file(&path).unwrap();
        kept.save_incidents(&SavedIncidents::default());
        let notices = kept.take_notices();
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].0, "state_recovered");
        assert_eq!(notices[0].1["failed_writes"], 4);
        assert!(kept.readable().unwrap().incidents().unwrap().is_some(), "written once back");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
