//! The write-ahead disk spool of an HTTP sink lane: an event counts as accepted once it is
//! written here, and leaves only when the receiver has settled it. An outage costs disk, not
//! events, up to the cap; a restart (kill -9 included) resumes where the receiver stopped.
//!
//! A lane's spool is a directory of numbered segment files of checksummed records
//! ([`record`]), a `cursor` file naming the first record not yet settled, and a `quarantine`
//! directory, all mode 0600 in a directory of the agent's own (`crate::files`). The router appends (records are written at the end of each routing step, so a
//! killed agent loses at most the step in progress; `fdatasync` runs at least every
//! `fsync_interval` while there are unsynced writes, which bounds what a power loss costs). The
//! lane's thread reads records in order and acknowledges them once settled; segments wholly
//! before the cursor are deleted. At start, every segment is checked record by record: a torn or
//! corrupt tail is moved to `quarantine/` and counted, never parsed and never a crash loop.
//!
//! Both lanes of a sink share one byte cap. When it is reached, telemetry is refused, and an
//! alert that does not fit evicts the oldest telemetry segment: telemetry is dropped before
//! alerts.

mod record;

use super::SinkStats;
use crate::event::{Encoded, EventKind};
use crate::files::{Access, Dir};
use crate::model::{Bounded, Interval};
use serde::Deserialize;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// `spool = { … }` of an HTTP sink.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory holding one subdirectory per lane (created, mode 0700).
    pub dir: PathBuf,
    /// Most bytes on disk for both lanes of the sink together (default 256 MiB).
    pub max_bytes: Option<Bounded<1_048_576, 1_099_511_627_776>>,
    /// Longest an appended event may stay written but not `fdatasync`ed (default 1s).
    pub fsync_interval: Option<Interval>,
}

const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Appended records are written once this many bytes wait (else at the end of a routing step).
const WRITE_AT: u64 = 256 * 1024;
const CURSOR_LEN: usize = 20;
/// Spooled events are the agent's alone, whatever the umask.
const FILE_MODE: u32 = 0o600;

impl SpoolConfig {
    /// The byte cap shared by a sink's lanes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes.map_or(DEFAULT_MAX_BYTES, |b| b.0 as u64)
    }

    /// The directory of one lane of the sink named `sink` (whose URL is `url`): readable, and
    /// distinct for distinct URLs.
    pub fn lane_dir(&self, sink: &str, url: &str, lane: &str) -> PathBuf {
        let readable: String = sink
            .trim_start_matches("http:")
            .trim_start_matches("otlp:")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
            .take(80)
            .collect();
        let tag = crc32fast::hash(url.as_bytes());
        self.dir.join(format!("{readable}-{tag:08x}-{lane}"))
    }
}

/// The byte cap of one sink, shared by its lanes.
#[derive(Debug)]
pub struct Budget {
    max: AtomicU64,
    used: AtomicU64,
    /// The telemetry lane's spool, which alerts may evict from.
    telemetry: Mutex<Weak<Spool>>,
}

impl Budget {
    /// A cap of `max` bytes.
    pub fn new(max: u64) -> Arc<Budget> {
        Arc::new(Budget {
            max: AtomicU64::new(max),
            used: AtomicU64::new(0),
            telemetry: Mutex::new(Weak::new()),
        })
    }

    /// A reload may change the cap of a running spool.
    pub fn set_max(&self, max: u64) {
        self.max.store(max, Ordering::Relaxed);
    }

    fn try_reserve(&self, bytes: u64) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + bytes <= max).then_some(used + bytes)
            })
            .is_ok()
    }

    fn release(&self, bytes: u64) {
        let _ = self.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            Some(used.saturating_sub(bytes))
        });
    }
}

/// Where a record starts or ends: (segment number, byte offset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    seq: u64,
    offset: u64,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    /// Bytes written to it (records only ever whole).
    bytes: u64,
    records: u64,
}

/// What a spool found on disk when opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Records left unsettled by a previous run: delivered now.
    pub records: u64,
    /// Bytes of torn or corrupt records moved to `quarantine/`.
    pub quarantined_bytes: u64,
}

/// One lane's spool, shared by the router (appends) and the lane's thread (reads, acks).
#[derive(Debug)]
pub struct Spool {
    dir: Dir,
    alerts: bool,
    budget: Arc<Budget>,
    fsync_every: Duration,
    segment_max: u64,
    state: Mutex<State>,
    ready: Condvar,
    /// Unread records evicted to make room for alerts (counted as dropped).
    evicted: AtomicU64,
    /// Records lost to a read failing at run time (a disk error): the segment is skipped.
    lost: AtomicU64,
    restored: Restored,
}

#[derive(Debug)]
struct State {
    segments: VecDeque<Segment>,
    head: File,
    pending: Vec<u8>,
    pending_records: u64,
    unsynced_since: Option<Instant>,
    reader: Option<BufReader<File>>,
    read_at: Position,
    /// Records read from `read_at.seq` so far (what eviction of that segment does not drop).
    read_in_segment: u64,
    /// End of each record read but not yet acknowledged, in order.
    taken: VecDeque<Position>,
    acked: Position,
    cursor: File,
    /// Records written and not yet read.
    unread: u64,
    writers: usize,
    generation: u64,
    consumer: Weak<SinkStats>,
    _lock: File,
}

/// How a lane's thread may read: the generation it was given. A newer consumer (a reload that
/// re-created the lane) supersedes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Consumer(u64);

fn error(dir: &Path, what: &str, e: std::io::Error) -> String {
    format!("spool {}: {what}: {e}", dir.display())
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

impl Spool {
    /// Opens (creating) a lane's spool in `dir`, checking what a previous run left.
    pub fn open(
        dir: &Path,
        lane: EventKind,
        budget: Arc<Budget>,
        fsync_every: Option<Interval>,
    ) -> Result<Arc<Spool>, String> {
        let path = dir;
        let dir = Dir::create(path).map_err(|e| format!("spool {e}"))?;
        let lock = dir
            .open_file("lock", Access::ReadWrite, FILE_MODE)
            .map_err(|e| error(path, "lock file", e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| format!("spool {}: in use by another sockwatch process", path.display()),
        )?;
        let mut cursor = dir
            .open_file("cursor", Access::ReadWrite, FILE_MODE)
            .map_err(|e| error(path, "cursor", e))?;
        let acked = read_cursor(&mut cursor);
        let (segments, restored) = restore(&dir, acked)?;
        let acked = match segments.front() {
            Some(first) if first.seq > acked.seq => Position { seq: first.seq, offset: 0 },
            _ => acked,
        };
        let read_in_segment = count_records(&dir, acked).unwrap_or(0);
        let head_seq = segments.back().map_or(acked.seq.max(1), |s| s.seq + 1);
        let head = dir
            .open_file(&segment_name(head_seq), Access::Append, FILE_MODE)
            .map_err(|e| error(path, "cannot create a segment", e))?;
        let mut segments = segments;
        segments.push_back(Segment { seq: head_seq, bytes: 0, records: 0 });
        let on_disk: u64 = segments.iter().map(|s| s.bytes).sum();
        budget.used.fetch_add(on_disk, Ordering::Relaxed);
        let max = budget.max.load(Ordering::Relaxed);
        let spool = Arc::new(Spool {
            dir,
            alerts: lane == EventKind::Alert,
            fsync_every: fsync_every.map_or(DEFAULT_FSYNC_INTERVAL, |i| i.0),
            // Eviction frees whole segments: small enough to evict little, large enough to be few.
            segment_max: (max / 16).clamp(64 * 1024, 16 * 1024 * 1024),
            budget: budget.clone(),
            state: Mutex::new(State {
                segments,
                head,
                pending: Vec::new(),
                pending_records: 0,
                unsynced_since: None,
                reader: None,
                read_at: acked,
                read_in_segment,
                taken: VecDeque::new(),
                acked,
                cursor,
                unread: restored.records,
                writers: 0,
                generation: 0,
                consumer: Weak::new(),
                _lock: lock,
            }),
            ready: Condvar::new(),
            evicted: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            restored,
        });
        if lane != EventKind::Alert {
            *budget.telemetry.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&spool);
        }
        Ok(spool)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The byte cap it shares with its sink's other lane.
    pub fn budget(&self) -> Arc<Budget> {
        self.budget.clone()
    }

    /// What opening found.
    pub fn restored(&self) -> Restored {
        self.restored
    }

    /// Records accepted and not yet settled (read or not).
    pub fn backlog(&self) -> u64 {
        let s = self.lock();
        s.unread + s.pending_records + s.taken.len() as u64
    }

    /// Records evicted to make room for alerts.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Records lost to read errors at run time.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// A router end, counted: the spool is closed when the last one is dropped.
    pub fn writer(self: &Arc<Self>) -> SpoolWriter {
        self.lock().writers += 1;
        SpoolWriter(self.clone())
    }

    /// Makes `stats`' lane the reader: a previous reader is told it is superseded, and what it
    /// read but had not settled is read again (the receiver may see it twice; nothing is lost).
    pub fn consumer(&self, stats: &Arc<SinkStats>) -> Consumer {
        let mut s = self.lock();
        if let Some(previous) = s.consumer.upgrade() {
            previous.supersede();
        }
        // Counted as generated for the new reader, without holding the spool's lock while
        // taking the counters' (a heartbeat takes them in the other order).
        s.consumer = Arc::downgrade(stats);
        s.generation += 1;
        let rewound = s.taken.len() as u64;
        s.taken.clear();
        s.unread += rewound;
        s.read_at = s.acked;
        s.reader = None;
        s.read_in_segment = count_records(&self.dir, s.acked).unwrap_or(0);
        let unsettled = s.unread + s.pending_records;
        let generation = s.generation;
        self.ready.notify_all();
        drop(s);
        stats.restore(unsettled);
        Consumer(generation)
    }

    /// Appends an event; false when the cap leaves no room for it.
    fn append(&self, event: &Encoded) -> bool {
        let mut bytes = Vec::with_capacity(event.line.len() + 64);
        let size = record::encode(event, &mut bytes) as u64;
        let fits = self.budget.try_reserve(size) || (self.alerts && self.evict_telemetry_for(size));
        if !fits {
            return false;
        }
        let mut s = self.lock();
        s.pending.extend_from_slice(&bytes);
        s.pending_records += 1;
        if s.pending.len() as u64 >= (self.segment_max / 2).min(WRITE_AT) {
            self.write_pending(&mut s);
        }
        true
    }

    /// Evicts the telemetry lane's oldest segments until `size` more bytes fit.
    fn evict_telemetry_for(&self, size: u64) -> bool {
        let telemetry = self.budget.telemetry.lock().unwrap_or_else(|e| e.into_inner()).upgrade();
        let Some(telemetry) = telemetry else { return false };
        loop {
            if self.budget.try_reserve(size) {
                return true;
            }
            if !telemetry.evict_oldest() {
                return false;
            }
        }
    }

    /// Deletes this spool's oldest segment (rotating first if only the head holds records);
    /// false when there is nothing to delete.
    fn evict_oldest(&self) -> bool {
        let mut s = self.lock();
        self.write_pending(&mut s);
        if s.segments.len() == 1 {
            if s.segments[0].bytes == 0 {
                return false;
            }
            self.rotate(&mut s, false);
        }
        let Some(oldest) = s.segments.pop_front() else { return false };
        let unread = if s.read_at.seq < oldest.seq {
            oldest.records
        } else if s.read_at.seq == oldest.seq {
            oldest.records.saturating_sub(s.read_in_segment.min(oldest.records))
        } else {
            0
        };
        if s.read_at.seq <= oldest.seq {
            s.read_at = Position { seq: oldest.seq + 1, offset: 0 };
            s.reader = None;
            s.read_in_segment = 0;
        }
        s.unread -= unread.min(s.unread);
        self.evicted.fetch_add(unread, Ordering::Relaxed);
        let _ = self.dir.remove(&segment_name(oldest.seq));
        self.budget.release(oldest.bytes);
        if unread > 0 {
            let line = serde_json::json!({"sockwatch": "spool_evicted", "spool": self.dir.path(),
                "events": unread, "reason": "spool full: telemetry evicted for alerts"});
            eprintln!("{line}");
        }
        true
    }

    /// Starts a new head segment; the old head is synced first unless it is about to go.
    fn rotate(&self, s: &mut State, sync: bool) {
        let seq = s.segments.back().map_or(1, |h| h.seq + 1);
        match self.dir.open_file(&segment_name(seq), Access::Append, FILE_MODE) {
            Ok(file) => {
                if sync {
                    let _ = s.head.sync_data();
                }
                s.head = file;
                s.segments.push_back(Segment { seq, bytes: 0, records: 0 });
            }
            // Writing on to the current head is still correct, only less evictable.
            Err(e) => eprintln!("{}", error(self.dir.path(), "cannot rotate", e)),
        }
    }

    /// Writes what the router appended; then the lane's thread can read it.
    fn write_pending(&self, s: &mut State) {
        if s.pending.is_empty() {
            return;
        }
        let head_bytes = s.segments.back().map_or(0, |h| h.bytes);
        if head_bytes > 0 && head_bytes + s.pending.len() as u64 > self.segment_max {
            self.rotate(s, true);
        }
        let pending = std::mem::take(&mut s.pending);
        match s.head.write_all(&pending) {
            Ok(()) => {
                let records = std::mem::take(&mut s.pending_records);
                let head = s.segments.back_mut().expect("a head segment always exists");
                head.bytes += pending.len() as u64;
                head.records += records;
                s.unread += records;
                s.unsynced_since.get_or_insert_with(Instant::now);
                self.ready.notify_all();
            }
            Err(e) => {
                // A full disk: the bytes are kept in memory (reserved in the budget) and
                // written at the next step. A partial write leaves a torn tail, which the
                // next start quarantines; truncating back keeps the segment whole now.
                let head = s.segments.back().map_or(0, |h| h.bytes);
                let _ = s.head.set_len(head);
                s.pending = pending;
                eprintln!("{}", error(self.dir.path(), "write failed; will retry", e));
            }
        }
    }

    /// End of a routing step (and about once a second): writes appended records, and
    /// `fdatasync`s when the oldest unsynced write is `fsync_interval` old.
    pub fn flush(&self) {
        let mut s = self.lock();
        self.write_pending(&mut s);
        if s.unsynced_since.is_some_and(|t| t.elapsed() >= self.fsync_every) {
            match s.head.sync_data() {
                Ok(()) => s.unsynced_since = None,
                Err(e) => eprintln!("{}", error(self.dir.path(), "fdatasync", e)),
            }
            let _ = s.cursor.sync_data();
        }
    }

    /// Reads up to `max` records into `batch`, waiting up to `wait` for the first. False once
    /// the spool is closed and read out, or `consumer` is superseded.
    pub fn take(
        &self,
        consumer: Consumer,
        batch: &mut Vec<Arc<Encoded>>,
        max: usize,
        wait: Duration,
    ) -> bool {
        let until = Instant::now() + wait;
        let mut s = self.lock();
        loop {
            if s.generation != consumer.0 {
                return false;
            }
            if s.unread > 0 {
                break;
            }
            if s.writers == 0 {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            s = self.ready.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        while batch.len() < max && s.unread > 0 {
            match self.read_one(&mut s) {
                Some(event) => batch.push(Arc::new(event)),
                None => break,
            }
        }
        true
    }

    /// Like `take`, without waiting for the first: adds to `batch` until `max` or `linger`.
    pub fn take_more(
        &self,
        consumer: Consumer,
        batch: &mut Vec<Arc<Encoded>>,
        max: usize,
        linger: Duration,
    ) {
        let until = Instant::now() + linger;
        while batch.len() < max {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.take(consumer, batch, max, left) {
                return;
            }
        }
    }

    /// The next unread record (`unread > 0`), or None after skipping an unreadable segment.
    fn read_one(&self, s: &mut State) -> Option<Encoded> {
        loop {
            let Some(index) = s.segments.iter().position(|seg| seg.seq >= s.read_at.seq) else {
                s.unread = 0;
                return None;
            };
            let segment = &s.segments[index];
            if segment.seq > s.read_at.seq {
                s.read_at = Position { seq: segment.seq, offset: 0 };
                s.reader = None;
                s.read_in_segment = 0;
            }
            if s.read_at.offset >= segment.bytes {
                s.read_at = Position { seq: segment.seq + 1, offset: 0 };
                s.reader = None;
                s.read_in_segment = 0;
                continue;
            }
            let (seq, segment_bytes, segment_records) =
                (segment.seq, segment.bytes, segment.records);
            match self.read_record(s) {
                Ok((event, size)) => {
                    s.read_at.offset += size as u64;
                    s.read_in_segment += 1;
                    s.unread -= 1;
                    s.taken.push_back(s.read_at);
                    return Some(event);
                }
                Err(e) => {
                    // Verified at start or written by this run: a disk error. Skip the segment.
                    let skipped =
                        segment_records.saturating_sub(s.read_in_segment.min(segment_records));
                    s.unread -= skipped.min(s.unread);
                    self.lost.fetch_add(skipped, Ordering::Relaxed);
                    eprintln!(
                        "{}",
                        error(self.dir.path(), &format!("segment {seq} unreadable"), e)
                    );
                    s.read_at = Position { seq, offset: segment_bytes };
                    s.reader = None;
                    return None;
                }
            }
        }
    }

    fn read_record(&self, s: &mut State) -> std::io::Result<(Encoded, usize)> {
        let at = s.read_at;
        if s.reader.is_none() {
            let mut file = self.dir.open_file(&segment_name(at.seq), Access::Read, 0)?;
            file.seek(SeekFrom::Start(at.offset))?;
            s.reader = Some(BufReader::with_capacity(256 * 1024, file));
        }
        let reader = s.reader.as_mut().expect("just opened");
        let mut header = [0u8; record::HEADER];
        reader.read_exact(&mut header)?;
        let length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        if length > record::MAX_PAYLOAD {
            return Err(std::io::Error::other("record length out of range"));
        }
        let mut bytes = header.to_vec();
        bytes.resize(record::HEADER + length, 0);
        reader.read_exact(&mut bytes[record::HEADER..])?;
        record::decode(&bytes).map_err(|bad| std::io::Error::other(format!("{bad:?}")))
    }

    /// The `n` oldest records read by `consumer` are settled: the cursor moves past them and
    /// segments behind it are deleted.
    pub fn ack(&self, consumer: Consumer, n: usize) {
        let mut s = self.lock();
        if s.generation != consumer.0 || n == 0 {
            return;
        }
        let n = n.min(s.taken.len());
        let Some(end) = s.taken.drain(..n).next_back() else { return };
        s.acked = end;
        // Caught up with a sizeable head: a new head lets the old one go.
        let head = s.segments.back().expect("a head segment always exists");
        if (head.seq, head.bytes) == (end.seq, end.offset)
            && head.bytes >= self.segment_max / 4
            && s.pending.is_empty()
        {
            self.rotate(&mut s, false);
        }
        // A segment read to its end, and not the head, is done with.
        let finished = s
            .segments
            .iter()
            .position(|seg| seg.seq == end.seq && seg.bytes == end.offset)
            .filter(|&i| i + 1 < s.segments.len());
        if let Some(i) = finished {
            s.acked = Position { seq: s.segments[i + 1].seq, offset: 0 };
        }
        let acked = s.acked;
        let mut cursor = [0u8; CURSOR_LEN];
        cursor[0..8].copy_from_slice(&acked.seq.to_le_bytes());
        cursor[8..16].copy_from_slice(&acked.offset.to_le_bytes());
        let crc = crc32fast::hash(&cursor[0..16]);
        cursor[16..20].copy_from_slice(&crc.to_le_bytes());
        if let Err(e) = s.cursor.write_all_at(&cursor, 0) {
            eprintln!("{}", error(self.dir.path(), "cursor", e));
        }
        while s.segments.front().is_some_and(|seg| seg.seq < acked.seq) {
            let done = s.segments.pop_front().expect("checked");
            let _ = self.dir.remove(&segment_name(done.seq));
            self.budget.release(done.bytes);
        }
    }

    fn close_one(&self) {
        let mut s = self.lock();
        self.write_pending(&mut s);
        let _ = s.head.sync_data();
        s.writers = s.writers.saturating_sub(1);
        self.ready.notify_all();
    }
}

/// The router's end of a spool: appends; dropping the last one closes the spool for reading.
#[derive(Debug)]
pub struct SpoolWriter(Arc<Spool>);

impl SpoolWriter {
    /// Appends an event; false when the cap refuses it.
    pub fn append(&self, event: &Encoded) -> bool {
        self.0.append(event)
    }

    /// See [`Spool::flush`].
    pub fn flush(&self) {
        self.0.flush();
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        self.0.close_one();
    }
}

fn read_cursor(file: &mut File) -> Position {
    let mut bytes = [0u8; CURSOR_LEN];
    if file.read_exact_at(&mut bytes, 0).is_err() {
        return Position::default();
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[0..16]) != crc {
        // Torn by a power loss: start from the oldest segment (duplicates, not losses).
        return Position::default();
    }
    Position {
        seq: u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes")),
        offset: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
    }
}

fn read_segment(dir: &Dir, seq: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    dir.open_file(&segment_name(seq), Access::Read, 0)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Records of segment `at.seq` before `at.offset`.
fn count_records(dir: &Dir, at: Position) -> std::io::Result<u64> {
    if at.offset == 0 {
        return Ok(0);
    }
    let bytes = read_segment(dir, at.seq)?;
    let mut offset = 0;
    let mut records = 0;
    while (offset as u64) < at.offset {
        match record::decode(&bytes[offset..]) {
            Ok((_, size)) => offset += size,
            Err(_) => break,
        }
        records += 1;
    }
    Ok(records)
}

/// The segments a previous run left, oldest first, checked record by record. Segments wholly
/// acknowledged are deleted; a torn or corrupt tail is moved to `quarantine/`.
fn restore(dir: &Dir, acked: Position) -> Result<(VecDeque<Segment>, Restored), String> {
    let path = dir.path();
    let mut seqs: Vec<u64> = dir
        .names()
        .map_err(|e| error(path, "cannot list", e))?
        .iter()
        .filter_map(|name| name.strip_suffix(".seg")?.parse().ok())
        .collect();
    seqs.sort_unstable();
    let mut segments = VecDeque::new();
    let mut restored = Restored::default();
    for seq in seqs {
        let name = segment_name(seq);
        if seq < acked.seq {
            let _ = dir.remove(&name);
            continue;
        }
        let bytes = read_segment(dir, seq).map_err(|e| error(path, "cannot read a segment", e))?;
        let mut offset = 0;
        let mut unsettled = 0;
        let mut records = 0;
        while offset < bytes.len() {
            match record::decode(&bytes[offset..]) {
                Ok((_, size)) => {
                    offset += size;
                    records += 1;
                    if seq > acked.seq || offset as u64 > acked.offset {
                        unsettled += 1;
                    }
                }
                Err(bad) => {
                    quarantine(dir, seq, offset, &bytes[offset..], &bad)?;
                    restored.quarantined_bytes += (bytes.len() - offset) as u64;
                    let file = dir
                        .open_file(&name, Access::ReadWrite, FILE_MODE)
                        .map_err(|e| error(path, "cannot repair a segment", e))?;
                    file.set_len(offset as u64).map_err(|e| error(path, "cannot repair", e))?;
                    file.sync_all().map_err(|e| error(path, "cannot repair", e))?;
                    break;
                }
            }
        }
        if offset == 0 {
            let _ = dir.remove(&name);
            continue;
        }
        restored.records += unsettled;
        segments.push_back(Segment { seq, bytes: offset as u64, records });
    }
    Ok((segments, restored))
}

fn quarantine(
    dir: &Dir,
    seq: u64,
    offset: usize,
    tail: &[u8],
    bad: &record::Bad,
) -> Result<(), String> {
    let fail = |e: std::io::Error| error(dir.path(), "quarantine", e);
    let quarantine = dir.subdir("quarantine").map_err(|e| fail(e.into()))?;
    let name = format!("{seq:020}-{offset}.bad");
    let mut file = quarantine.open_file(&name, Access::Replace, FILE_MODE).map_err(fail)?;
    file.write_all(tail).map_err(fail)?;
    let path = quarantine.path().join(&name);
    let line = serde_json::json!({"sockwatch": "spool_quarantined", "spool": dir.path(),
        "segment": seq, "offset": offset, "bytes": tail.len(), "reason": format!("{bad:?}"),
        "moved_to": path});
    eprintln!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests;
