//! A spool segment left by a crash, a bad disk or a hostile hand: opening the spool never panics,
//! every record it hands back is one whose checksum held, and the bytes it could not read are
//! counted, not lost silently.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockwatch::event::EventKind;
use sockwatch::sinks::{Budget, SinkStats, Spool};
use std::sync::Arc;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("sockwatch-fuzz-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("00000000000000000001.seg"), data).unwrap();
    let spool = Spool::open(&dir, EventKind::Event, Budget::new(1 << 30), None).unwrap();
    let restored = spool.restored();
    let stats = Arc::new(SinkStats::default());
    let consumer = spool.consumer(&stats);
    let mut batch = Vec::new();
    let _writer = spool.writer();
    spool.take(consumer, &mut batch, usize::MAX, Duration::ZERO);
    assert_eq!(batch.len() as u64, restored.records);
    let read: usize = batch.iter().map(|e| e.line.len() + e.id.len() + e.action.len() + 21).sum();
    assert_eq!(read as u64 + restored.quarantined_bytes, data.len() as u64);
});
