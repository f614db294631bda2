use super::*;
use crate::sinks::{Intake, SinkStats};
use std::fs::OpenOptions;

fn event(kind: EventKind, n: usize) -> Arc<Encoded> {
    Arc::new(Encoded {
        kind,
        severity: 0,
        action: "socket_opened".into(),
        line: format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(200)).into_bytes(),
        id: format!("id-{n}"),
        at_ms: n as u64,
    })
}

fn numbers(batch: &[Arc<Encoded>]) -> Vec<u64> {
    batch.iter().map(|e| e.at_ms).collect()
}

struct Lane {
    spool: Arc<Spool>,
    stats: Arc<SinkStats>,
    intake: Intake,
    consumer: Consumer,
}

fn open(dir: &Path, kind: EventKind, budget: &Arc<Budget>) -> Lane {
    let spool = Spool::open(dir, kind, budget.clone(), None).expect("opens");
    let stats = Arc::new(SinkStats::default());
    stats.reads_spool(spool.clone());
    let intake = Intake::Spool(spool.writer());
    let consumer = spool.consumer(&stats);
    Lane { spool, stats, intake, consumer }
}

impl Lane {
    fn offer(&self, kind: EventKind, range: std::ops::Range<usize>) {
        for n in range {
            self.stats.offer(&self.intake, &event(kind, n));
        }
        self.intake.flush();
    }

    fn take(&self, max: usize) -> Vec<Arc<Encoded>> {
        let mut batch = Vec::new();
        self.spool.take(self.consumer, &mut batch, max, Duration::from_millis(10));
        batch
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sockwatch-spool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn events_come_out_in_order_and_settled_ones_do_not_come_back_after_a_restart() {
    let dir = scratch("order");
    {
        let lane = open(&dir, EventKind::Event, &Budget::new(1 << 30));
        lane.offer(EventKind::Event, 0..1000);
        let first = lane.take(300);
        assert_eq!(numbers(&first), (0..300).collect::<Vec<_>>());
        lane.spool.ack(lane.consumer, 300);
        let unsettled = lane.take(100);
        assert_eq!(numbers(&unsettled), (300..400).collect::<Vec<_>>());
        // Not acknowledged: a crash now must bring these back.
        let counts = lane.stats.counts("t");
        assert_eq!((counts.generated, counts.queued), (1000, 1000), "nothing settled yet");
    }
    let lane = open(&dir, EventKind::Event, &Budget::new(1 << 30));
    assert_eq!(lane.spool.restored(), Restored { records: 700, quarantined_bytes: 0 });
    assert_eq!(lane.stats.counts("t").generated, 700, "restored events count as generated");
    let mut all = Vec::new();
    loop {
        let batch = lane.take(256);
        if batch.is_empty() {
            break;
        }
        lane.spool.ack(lane.consumer, batch.len());
        all.extend(numbers(&batch));
    }
    assert_eq!(all, (300..1000).collect::<Vec<_>>());
    drop(lane);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn segments_are_deleted_once_settled_and_the_budget_released() {
    let dir = scratch("segments");
    let budget = Budget::new(2 << 20);
    let lane = open(&dir, EventKind::Event, &budget);
    lane.offer(EventKind::Event, 0..5000);
    let segments = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".seg"))
            .count()
    };
    assert!(segments() > 3, "{} segments for ~1.2 MB", segments());
    loop {
        let batch = lane.take(500);
        if batch.is_empty() {
            break;
        }
        lane.spool.ack(lane.consumer, batch.len());
    }
    assert!(segments() <= 2, "{} segments left after everything settled", segments());
    let held = budget.used.load(Ordering::Relaxed);
    assert!(held < 64 * 1024, "{held} bytes of budget still held");
    drop(lane);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_tail_is_quarantined_and_counted_and_what_precedes_it_survives() {
    let dir = scratch("torn");
    {
        let lane = open(&dir, EventKind::Event, &Budget::new(1 << 30));
        lane.offer(EventKind::Event, 0..10);
    }
    let segment = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .expect("a written segment");
    let len = std::fs::metadata(&segment).unwrap().len();
    // A crash mid-write: the last record cut short, then garbage from an unrelated write.
    let file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(len - 7).unwrap();
    drop(file);
    let lane = open(&dir, EventKind::Event, &Budget::new(1 << 30));
    let restored = lane.spool.restored();
    assert_eq!(restored.records, 9, "{restored:?}");
    assert!(restored.quarantined_bytes > 0);
    assert_eq!(lane.stats.counts("t").spool_quarantined_bytes, restored.quarantined_bytes);
    let kept: Vec<_> = std::fs::read_dir(dir.join("quarantine")).unwrap().collect();
    assert_eq!(kept.len(), 1, "the torn bytes are kept for a human");
    assert_eq!(numbers(&lane.take(100)), (0..9).collect::<Vec<_>>());
    drop(lane);
    // And a corrupt byte in the middle of a segment is the same story, at the next start.
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn at_the_cap_telemetry_is_refused_and_alerts_evict_telemetry() {
    let root = scratch("cap");
    let budget = Budget::new(1 << 20);
    let telemetry = open(&root.join("t"), EventKind::Event, &budget);
    let alerts = open(&root.join("a"), EventKind::Alert, &budget);
    telemetry.offer(EventKind::Event, 0..10_000);
    let t = telemetry.stats.counts("t");
    assert!(t.dropped_spool_full > 0, "telemetry past the cap is refused: {t:?}");
    assert_eq!(t.generated, t.delivered + t.dropped_spool_full + t.queued);
    alerts.offer(EventKind::Alert, 0..1000);
    let a = alerts.stats.counts("a");
    assert_eq!((a.generated, a.dropped_spool_full, a.queued), (1000, 0, 1000), "{a:?}");
    let t = telemetry.stats.counts("t");
    assert!(t.dropped_spool_full > 10_000 - 4000, "alerts evicted telemetry: {t:?}");
    assert_eq!(t.generated, t.delivered + t.dropped_spool_full + t.queued, "{t:?}");
    // What telemetry still has reads out whole and in order, after the evicted part.
    let mut read = Vec::new();
    loop {
        let batch = telemetry.take(500);
        if batch.is_empty() {
            break;
        }
        telemetry.spool.ack(telemetry.consumer, batch.len());
        read.extend(numbers(&batch));
    }
    assert_eq!(read.len() as u64, t.queued);
    assert!(read.windows(2).all(|w| w[1] == w[0] + 1), "a contiguous tail");
    assert_eq!(numbers(&alerts.take(1000)), (0..1000).collect::<Vec<_>>());
    drop((telemetry, alerts));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_new_reader_supersedes_the_old_and_rereads_what_it_left_unsettled() {
    let dir = scratch("handover");
    let lane = open(&dir, EventKind::Event, &Budget::new(1 << 30));
    lane.offer(EventKind::Event, 0..100);
    lane.spool.ack(lane.consumer, lane.take(40).len());
    let in_flight = lane.take(30);
    assert_eq!(in_flight.len(), 30);
    let successor = Arc::new(SinkStats::default());
    let consumer = lane.spool.consumer(&successor);
    assert!(lane.stats.superseded());
    assert!(
        !lane.spool.take(lane.consumer, &mut Vec::new(), 10, Duration::ZERO),
        "old reader stops"
    );
    lane.spool.ack(lane.consumer, 30);
    assert_eq!(successor.counts("s").generated, 60);
    let mut batch = Vec::new();
    assert!(lane.spool.take(consumer, &mut batch, 100, Duration::ZERO));
    assert_eq!(numbers(&batch), (40..100).collect::<Vec<_>>(), "the stale ack moved nothing");
    drop(lane);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_agents_cannot_share_a_spool() {
    let dir = scratch("lock");
    let _first = open(&dir, EventKind::Event, &Budget::new(1 << 30));
    let second = Spool::open(&dir, EventKind::Event, Budget::new(1 << 30), None);
    assert!(second.unwrap_err().contains("in use"));
    let _ = std::fs::remove_dir_all(&dir);
}
