use super::*;
use crate::model::fixture::Builder;
use crate::model::{Change, RawText, SocketKey};

fn encoder() -> Encoder {
    let host = HostIdentity {
        name: "h".into(),
        id: "machine".into(),
        boot_id: "boot".into(),
        boot_time_ms: Some(1_700_000_000_000),
        ticks_per_second: 100,
    };
    Encoder::new(host, Redactor::default())
}

fn parse(encoded: &Encoded) -> Value {
    let text = std::str::from_utf8(&encoded.line).expect("UTF-8");
    assert_eq!(text.matches('\n').count(), 1, "exactly one line: {text}");
    assert!(text.ends_with('\n'));
    serde_json::from_str(text).expect("valid JSON")
}

fn outbound_world() -> (crate::model::Snapshot, Directions) {
    let mut b = Builder::new();
    let shell = b.process(100, "bash");
    let child = b.process(101, "sleep");
    b.connection(7, shell, 0);
    b.fd(child, 0, crate::model::AccessMode::Unknown, crate::model::FdTarget::Socket { inode: 7 });
    let mut snapshot = b.build();
    snapshot.processes.iter_mut().find(|p| p.key.pid == 101).unwrap().ppid = 100;
    snapshot.taken_at_ms = 1_700_000_100_000;
    snapshot.seq = 3;
    let directions = vec![(Direction::Outbound, DirectionSource::PortRange)];
    (snapshot, directions)
}

#[test]
fn socket_opened_carries_process_endpoints_and_ids() {
    let (snapshot, directions) = outbound_world();
    let key = snapshot.sockets[0].key;
    let mut encoder = encoder();
    let encoded = encoder
        .change(
            &Change::SocketOpened { key },
            None,
            (&snapshot, &directions),
            Some((snapshot.taken_at_ms, false)),
        )
        .unwrap();
    assert_eq!((encoded.kind, encoded.action.as_ref()), (EventKind::Event, "socket_opened"));
    let e = parse(&encoded);
    assert_eq!(e["@timestamp"], "2023-11-14T22:15:00.000Z");
    assert_eq!(e["ecs"]["version"], ECS_VERSION);
    let id = uuid::Uuid::parse_str(e["event"]["id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(e["event"]["sequence"], 1);
    assert_eq!(e["host"]["boot"]["id"], "boot");
    assert_eq!(e["process"]["pid"], 100, "the top-most holder, not the child that inherited it");
    assert_eq!(e["process"]["name"], "bash");
    assert_eq!(e["process"]["entity_id"], encoder.entity_id(snapshot.processes[0].key));
    assert_eq!(e["source"]["port"], 45000);
    assert_eq!(e["destination"]["ip"], "127.0.0.1");
    assert_eq!(e["destination"]["port"], 4444);
    assert_eq!(e["network"]["transport"], "tcp");
    assert_eq!(e["network"]["direction"], "egress");
    assert!(e["network"]["community_id"].as_str().unwrap().starts_with("1:"));
    let s = &e["sockwatch"]["socket"];
    assert_eq!((s["inode"].as_u64(), s["holders_total"].as_u64()), (Some(7), Some(2)));
    assert_eq!(s["fds"], json!([0]));
    assert_eq!(s["remote_is_loopback"], true);
    assert_eq!(e["sockwatch"]["snapshot"]["seq"], 3);
    let second = encoder
        .change(&Change::ExistingSocket { key }, None, (&snapshot, &directions), None)
        .unwrap();
    let second = parse(&second);
    assert_eq!(
        (second["event"]["kind"].as_str(), second["event"]["sequence"].as_u64()),
        (Some("state"), Some(2))
    );
    assert_eq!(second["sockwatch"]["baseline"], true);
}

#[test]
fn closed_socket_is_described_from_the_previous_snapshot_with_its_duration() {
    let (prev, directions) = outbound_world();
    let key = prev.sockets[0].key;
    let mut next = prev.clone();
    next.sockets.clear();
    next.taken_at_ms = prev.taken_at_ms + 2500;
    let change = Change::SocketClosed {
        key,
        first_seen_ms: prev.taken_at_ms - 500,
        seen_since_baseline: false,
    };
    let e = parse(
        &encoder()
            .change(&change, Some((&prev, &directions)), (&next, &Directions::new()), None)
            .unwrap(),
    );
    assert_eq!(e["event"]["action"], "socket_closed");
    assert_eq!(e["sockwatch"]["socket"]["duration_ms"], 3000);
    assert_eq!(e["sockwatch"]["socket"]["duration_is_lower_bound"], false);
    assert_eq!(e["process"]["name"], "bash");
    assert!(encoder().change(&change, None, (&next, &Directions::new()), None).is_none());
}

#[test]
fn hostile_argv_is_escaped_single_line_and_lossless() {
    let (mut snapshot, directions) = outbound_world();
    let key = snapshot.sockets[0].key;
    let shell = &mut snapshot.processes[0];
    shell.comm = RawText::new(b"x\n\x1b[31m");
    shell.argv = vec![RawText::from("sh"), RawText::new(b"-c\nid\x1b[31m\xe2\x80\xae\xff")];
    let e = parse(
        &encoder()
            .change(&Change::SocketOpened { key }, None, (&snapshot, &directions), None)
            .unwrap(),
    );
    assert_eq!(e["process"]["name"], r"x\n\u{001b}[31m");
    assert_eq!(e["process"]["args"][1], r"-c\nid\u{001b}[31m\u{202e}\xff");
    assert_eq!(e["process"]["command_line"], r"sh -c\nid\u{001b}[31m\u{202e}\xff");
    let b64 = e["process"]["args_b64"][1].as_str().unwrap();
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert_eq!(raw, b"-c\nid\x1b[31m\xe2\x80\xae\xff");
}

#[test]
fn secrets_are_redacted_everywhere_including_base64() {
    let (mut snapshot, directions) = outbound_world();
    let key = snapshot.sockets[0].key;
    snapshot.processes[0].argv =
        vec![RawText::from("mysql"), RawText::from("--password=hunter2"), RawText::new(b"\xff")];
    let encoded = encoder()
        .change(&Change::SocketOpened { key }, None, (&snapshot, &directions), None)
        .unwrap();
    let text = String::from_utf8(encoded.line.clone()).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    let b64_secret = base64::engine::general_purpose::STANDARD.encode("--password=hunter2");
    assert!(!text.contains(&b64_secret));
    let e = parse(&encoded);
    assert_eq!(e["process"]["args"][1], "--password=[REDACTED]");
    assert_eq!(e["process"]["args_redacted"], true);
}

#[test]
fn huge_argv_and_many_holders_are_capped_and_flagged() {
    let (mut snapshot, directions) = outbound_world();
    let key = snapshot.sockets[0].key;
    snapshot.processes[0].argv = (0..200).map(|_| RawText::new(vec![0xff; 10_000])).collect();
    let holders: Vec<crate::model::Holder> = (0..500)
        .map(|fd| crate::model::Holder {
            proc: snapshot.processes[0].key,
            tid: None,
            fd,
            io_uring_slot: None,
        })
        .collect();
    snapshot.sockets[0].holders = holders;
    let encoded = encoder()
        .change(&Change::SocketOpened { key }, None, (&snapshot, &directions), None)
        .unwrap();
    assert!(encoded.line.len() < 48 * 1024, "line of {} bytes", encoded.line.len());
    let e = parse(&encoded);
    let truncated: Vec<&str> = e["sockwatch"]["truncated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(truncated.contains(&"process.args") && truncated.contains(&"process.command_line"));
    assert!(truncated.contains(&"sockwatch.socket.holders"));
    assert_eq!(e["process"]["args_count"], 200);
    assert_eq!(e["sockwatch"]["socket"]["holders_total"], 500);
}

#[test]
fn exec_and_lifecycle_events() {
    let (snapshot, directions) = outbound_world();
    let proc = snapshot.processes[0].key;
    let change =
        Change::ProcessExec { proc, previous_exe: Some(RawText::from("/usr/bin/python3")) };
    let e = parse(&encoder().change(&change, None, (&snapshot, &directions), None).unwrap());
    assert_eq!(e["event"]["action"], "process_exec");
    assert_eq!(e["sockwatch"]["process"]["previous_executable"], "/usr/bin/python3");
    let l = encoder().lifecycle(
        "heartbeat",
        EventKind::State,
        0,
        json!({"coverage": {"processes_seen": 3}}),
    );
    let l = parse(&l);
    assert_eq!(
        (l["event"]["action"].as_str(), l["event"]["kind"].as_str()),
        (Some("heartbeat"), Some("state"))
    );
    assert_eq!(l["sockwatch"]["coverage"]["processes_seen"], 3);
    assert_eq!((l["event"]["severity"].as_u64(), l.get("outcome")), (Some(0), None));
    let blind = encoder().lifecycle("privileges_missing", EventKind::Event, 0, json!({}));
    assert_eq!(blind.severity, 4, "routed as high");
    let blind = parse(&blind);
    assert_eq!(
        (blind["event"]["severity"].as_u64(), blind["event"]["outcome"].as_str()),
        (Some(4), Some("failure"))
    );
    let back = parse(&encoder().lifecycle("sink_recovered", EventKind::Event, 0, json!({})));
    assert_eq!(
        (back["event"]["severity"].as_u64(), back["event"]["outcome"].as_str()),
        (Some(3), Some("success"))
    );
    assert_eq!(SocketKey { netns: 1, inode: 2 }.inode, 2);
}
