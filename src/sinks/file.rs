//! NDJSON appended to a file, for log shippers and for keeping a local record.
//!
//! - Whole lines only: each batch is one `write` with O_APPEND. A short write (disk full) is
//!   truncated back to the last whole line and the batch counted as lost; at open, a torn last
//!   line left by a crash is cut off before anything new is written.
//! - Rotation: before each batch the path is checked to still name the open file (logrotate's
//!   `create` renames it away); SIGHUP also reopens.
//! - Durability: `fdatasync` at most every `fsync_interval` (default 1 s), also when idle, and on
//!   shutdown. Lines since the last sync can be lost to a power failure, never split.
//! - Disk full: retried with backoff (0.5 s doubling to 30 s): while backing off, batches are
//!   refused at once without touching the disk; the first batch (or idle tick) after the backoff
//!   tries again. Nothing sleeps, so shutdown stays prompt; writing resumes by itself. Telemetry
//!   refused meanwhile is dropped and counted; alerts are held in memory (up to `MAX_HELD`
//!   events) and written first when the disk takes writes again: a full disk delays an alert,
//!   it does not lose it. The outage is reported as it starts (`sink_failed`) and ends.

use super::{Settled, Sink, SinkError, SinkStats};
use crate::event::{Encoded, EventKind};
use crate::files::{Access, Dir};
use crate::model::Interval;
use serde::Deserialize;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `type = "file"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file; its directory must exist.
    pub path: PathBuf,
    /// Longest time written lines may wait for `fdatasync` (default 1 s).
    pub fsync_interval: Option<Interval>,
    /// Event kinds this sink takes (all when absent).
    pub kinds: Option<Vec<EventKind>>,
    /// Lowest `event.severity` taken (all when absent).
    pub min_severity: Option<super::MinSeverity>,
    /// `ecs` (default) or `ocsf`.
    #[serde(default)]
    pub schema: super::Schema,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Alerts held while the file cannot be written. An incident is a few alerts; ten thousand is
/// hours of a host under attack, at a few KiB each.
const MAX_HELD: usize = 10_000;

/// An NDJSON file.
pub struct FileSink {
    path: PathBuf,
    /// Its directory, verified once and held: the file is (re)opened by name inside it.
    dir: Dir,
    name_in_dir: String,
    file: File,
    identity: (u64, u64),
    fsync_interval: Duration,
    unsynced_since: Option<Instant>,
    backoff: Option<(Instant, Duration)>,
    reopen: Arc<AtomicU64>,
    reopened_at: u64,
    buf: Vec<u8>,
    /// Alerts that could not be written yet, oldest first.
    held: std::collections::VecDeque<Arc<Encoded>>,
    name: String,
    stats: Arc<SinkStats>,
}

fn error(path: &std::path::Path, source: std::io::Error) -> SinkError {
    SinkError::Io { sink: format!("file:{}", path.display()), source }
}

impl FileSink {
    /// Opens (or creates, mode 0640) the file and repairs a torn last line. `reopen` is bumped on
    /// SIGHUP; outages are reported through `stats`.
    pub fn open(
        config: &FileSinkConfig,
        reopen: Arc<AtomicU64>,
        stats: Arc<SinkStats>,
    ) -> Result<Self, SinkError> {
        let (dir, name_in_dir) = directory_of(&config.path).map_err(|e| error(&config.path, e))?;
        let (file, identity) =
            open_repaired(&dir, &name_in_dir).map_err(|e| error(&config.path, e))?;
        Ok(FileSink {
            dir,
            name_in_dir,
            held: std::collections::VecDeque::new(),
            name: format!("file:{}", config.path.display()),
            stats,
            path: config.path.clone(),
            file,
            identity,
            fsync_interval: config.fsync_interval.map_or(Duration::from_secs(1), |i| i.0),
            unsynced_since: None,
            backoff: None,
            reopened_at: reopen.load(Ordering::Relaxed),
            reopen,
            buf: Vec::new(),
        })
    }

    /// Reopens when asked to (SIGHUP) or when the path names another file or none (rotation).
    fn follow_rotation(&mut self) -> std::io::Result<()> {
        let asked = self.reopen.load(Ordering::Relaxed);
        let moved = match std::fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()) != self.identity,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
        };
        if moved || asked != self.reopened_at {
            // Whatever went to the old file is synced before it is left behind.
            let _ = self.file.sync_data();
            let (file, identity) = open_repaired(&self.dir, &self.name_in_dir)?;
            self.file = file;
            self.identity = identity;
            self.reopened_at = asked;
            self.unsynced_since = None;
        }
        Ok(())
    }

    fn sync_if_due(&mut self) -> std::io::Result<()> {
        if self.unsynced_since.is_some_and(|t| t.elapsed() >= self.fsync_interval) {
            self.file.sync_data()?;
            self.unsynced_since = None;
        }
        Ok(())
    }
}

/// The verified directory of `path` and the file's name in it.
pub(crate) fn directory_of(path: &std::path::Path) -> std::io::Result<(Dir, String)> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path names no file")
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    Ok((Dir::open(dir)?, name.to_string()))
}

/// Opens for appending (created 0640: logs for the agent and its group) and cuts a torn last
/// line (one without its newline) left by a crash.
fn open_repaired(dir: &Dir, name: &str) -> std::io::Result<(File, (u64, u64))> {
    let mut file = dir.open_file(name, Access::Append, 0o640)?;
    let meta = file.metadata()?;
    let len = meta.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            let keep = last_newline(&mut file, len)?;
            file.set_len(keep)?;
            file.sync_data()?;
        }
    }
    Ok((file, (meta.dev(), meta.ino())))
}

/// The length up to and including the last newline before `len` (0 when there is none).
fn last_newline(file: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl FileSink {
    /// Writes `lines` (whole lines) in one append, unless backing off; cuts a partial write back.
    fn append(&mut self, lines: impl Iterator<Item = Arc<Encoded>>) -> std::io::Result<()> {
        if let Some((until, _)) = self.backoff
            && Instant::now() < until
        {
            return Err(std::io::Error::other("backing off after a failed write"));
        }
        let result = self.append_now(lines);
        match &result {
            Ok(()) => {
                self.backoff = None;
                self.stats.attempt_succeeded(&self.name);
            }
            Err(e) => {
                let wait = self.backoff.map_or(FIRST_BACKOFF, |(_, d)| (d * 2).min(MAX_BACKOFF));
                self.backoff = Some((Instant::now() + wait, wait));
                self.stats.attempt_failed(&self.name, &e.to_string());
            }
        }
        result
    }

    fn append_now(&mut self, lines: impl Iterator<Item = Arc<Encoded>>) -> std::io::Result<()> {
        self.follow_rotation()?;
        self.buf.clear();
        lines.for_each(|event| self.buf.extend_from_slice(&event.line));
        let before = self.file.metadata()?.len();
        if let Err(e) = self.file.write_all(&self.buf) {
            // Keep the file to whole lines: cut whatever part of the batch made it.
            let _ = self.file.set_len(before);
            return Err(e);
        }
        self.unsynced_since.get_or_insert_with(Instant::now);
        self.sync_if_due()
    }

    /// Held alerts first, then `batch`, in one append. On failure the alerts are held (the
    /// oldest beyond `MAX_HELD` are lost) and the rest is lost.
    fn deliver_with_held(&mut self, batch: &[Arc<Encoded>]) -> Settled {
        let held = self.held.len() as u64;
        let lines = self.held.iter().chain(batch).cloned().collect::<Vec<_>>();
        match self.append(lines.into_iter()) {
            Ok(()) => {
                self.held.clear();
                Settled { delivered: held + batch.len() as u64, ..Settled::default() }
            }
            Err(_) => {
                let alerts = batch.iter().filter(|e| e.kind == EventKind::Alert);
                self.held.extend(alerts.cloned());
                let over = self.held.len().saturating_sub(MAX_HELD);
                self.held.drain(..over);
                let telemetry = batch.iter().filter(|e| e.kind != EventKind::Alert).count();
                Settled { failed: (telemetry + over) as u64, ..Settled::default() }
            }
        }
    }
}

impl Sink for FileSink {
    fn write_batch(&mut self, batch: &[Arc<Encoded>]) -> Result<(), SinkError> {
        self.append(batch.iter().cloned()).map_err(|e| error(&self.path, e))
    }

    fn deliver(&mut self, batch: &[Arc<Encoded>]) -> Settled {
        self.deliver_with_held(batch)
    }

    fn tick(&mut self) -> Settled {
        let _ = self.sync_if_due();
        let backed_off = self.backoff.is_none_or(|(until, _)| Instant::now() >= until);
        match self.held.is_empty() || !backed_off {
            true => Settled::default(),
            false => self.deliver_with_held(&[]),
        }
    }

    fn finish(&mut self) -> Settled {
        // One last try for held alerts, backoff or not; what still cannot be written is lost.
        self.backoff = None;
        let mut settled = Settled::default();
        if !self.held.is_empty() {
            settled = self.deliver_with_held(&[]);
            settled.failed += std::mem::take(&mut self.held).len() as u64;
        }
        let _ = self.flush();
        settled
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.file.sync_data().map_err(|e| error(&self.path, e))?;
        self.unsynced_since = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Arc<Encoded> {
        of_kind(n, EventKind::Event)
    }

    fn of_kind(n: usize, kind: EventKind) -> Arc<Encoded> {
        let line = format!("{{\"n\":{n}}}\n").into_bytes();
        Arc::new(Encoded {
            kind,
            severity: 0,
            action: "t".into(),
            line,
            id: String::new(),
            at_ms: 0,
        })
    }

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("sockwatch-file-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn config(path: PathBuf) -> FileSinkConfig {
        FileSinkConfig {
            path,
            fsync_interval: None,
            kinds: None,
            min_severity: None,
            schema: Default::default(),
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_before_new_writes() {
        let dir = Dir::new("torn");
        let path = dir.0.join("events.ndjson");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let mut sink =
            FileSink::open(&config(path.clone()), Arc::default(), Arc::default()).unwrap();
        sink.write_batch(&[line(1)]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n{\"n\":1}\n");
        std::fs::write(&path, "no newline at all").unwrap();
        drop(sink);
        FileSink::open(&config(path.clone()), Arc::default(), Arc::default()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn a_failed_write_refuses_batches_until_the_backoff_expires() {
        let dir = Dir::new("backoff");
        let path = dir.0.join("events.ndjson");
        let mut sink =
            FileSink::open(&config(path.clone()), Arc::default(), Arc::default()).unwrap();
        sink.backoff = Some((Instant::now() + Duration::from_millis(200), FIRST_BACKOFF));
        let started = Instant::now();
        assert!(sink.write_batch(&[line(1)]).is_err());
        assert!(started.elapsed() < Duration::from_millis(100), "refused at once, no sleeping");
        std::thread::sleep(Duration::from_millis(250));
        sink.write_batch(&[line(2)]).unwrap();
        assert!(sink.backoff.is_none());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":2}\n");
    }

    #[test]
    fn alerts_refused_while_backing_off_are_held_and_written_first_telemetry_is_dropped() {
        let dir = Dir::new("held");
        let path = dir.0.join("events.ndjson");
        let stats = Arc::new(SinkStats::default());
        let mut sink = FileSink::open(&config(path.clone()), Arc::default(), stats).unwrap();
        sink.backoff = Some((Instant::now() + Duration::from_millis(200), FIRST_BACKOFF));
        let settled = sink.deliver(&[line(1), of_kind(2, EventKind::Alert), line(3)]);
        assert_eq!((settled.delivered, settled.failed), (0, 2), "telemetry lost, the alert held");
        assert_eq!(sink.tick(), Settled::default(), "still backing off");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(sink.tick().delivered, 1, "written by the first tick after the backoff");
        let settled = sink.deliver(&[line(4)]);
        assert_eq!(settled.delivered, 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":2}\n{\"n\":4}\n");

        // Held at the end: one last try, backoff or not.
        sink.backoff = Some((Instant::now() + Duration::from_secs(60), MAX_BACKOFF));
        assert_eq!(sink.deliver(&[of_kind(5, EventKind::Alert)]).failed, 0);
        assert_eq!(sink.finish().delivered, 1);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("{\"n\":5}\n"));
    }

    #[test]
    fn follows_rename_and_create_rotation_and_reopens_on_request() {
        let dir = Dir::new("rotate");
        let path = dir.0.join("events.ndjson");
        let reopen = Arc::new(AtomicU64::new(0));
        let mut sink =
            FileSink::open(&config(path.clone()), reopen.clone(), Arc::default()).unwrap();
        sink.write_batch(&[line(1)]).unwrap();
        std::fs::rename(&path, dir.0.join("events.ndjson.1")).unwrap();
        std::fs::write(&path, "").unwrap(); // logrotate `create`
        sink.write_batch(&[line(2)]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.0.join("events.ndjson.1")).unwrap(), "{\"n\":1}\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":2}\n");
        std::fs::rename(&path, dir.0.join("events.ndjson.2")).unwrap();
        sink.write_batch(&[line(3)]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":3}\n", "recreated when gone");
        reopen.fetch_add(1, Ordering::Relaxed);
        sink.write_batch(&[line(4)]).unwrap();
        sink.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":3}\n{\"n\":4}\n");
    }
}
