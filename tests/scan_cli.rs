//! The `sockwatch scan` command line: formats, filters, hostile strings, and one-line errors.

use crate::util::{Netns, Running, prerequisites, python_in, sockwatch};
use std::process::Command;

#[test]
fn a_bad_command_line_is_explained_whole_and_exits_64() {
    let stderr = |args: &[&str]| {
        let output = sockwatch(args);
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        String::from_utf8(output.stderr).unwrap()
    };
    let unknown = stderr(&["scan", "--no-such-flag"]);
    assert!(unknown.starts_with("sockwatch: ") && unknown.contains("--no-such-flag"), "{unknown}");
    let typo = stderr(&["run", "--intreval", "1s"]);
    assert!(typo.contains("a similar argument exists: '--interval'"), "{typo}");
    let value = stderr(&["scan", "--format", "jsn"]);
    assert!(value.contains("[possible values: table, ndjson, json]"), "{value}");
    assert!(value.contains("a similar value exists: 'json'"), "{value}");
    // Bare `sockwatch` is a question: the answer is the usage.
    let bare = stderr(&[]);
    assert!(bare.contains("Usage: sockwatch <COMMAND>") && bare.contains("scan"), "{bare}");
}

/// A reader that goes away ends a listing quietly: no panic, exit 0, nothing on stderr.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    for args in [
        &["rules", "fields"][..],
        &["rules", "fields", "--markdown"],
        &["rules", "check"],
        &["rules", "test", "rules/tests/bash_dev_tcp.toml"],
        &["scan", "--format", "table"],
        &["config", "check", "config/sockwatch.toml"],
    ] {
        // The reading end is closed before the command writes: its first write meets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// Missing privilege is judged by capabilities: uid 0 without them is refused too.
#[test]
fn missing_capabilities_are_refused_even_for_uid_0() {
    if !prerequisites(&["setpriv"]) {
        return;
    }
    for drop in ["-sys_ptrace", "-dac_read_search"] {
        let output = Command::new("setpriv")
            .args([&format!("--bounding-set={drop}"), "--inh-caps=-all"])
            .arg(env!("CARGO_BIN_EXE_sockwatch"))
            .arg("scan")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(77), "dropping {drop}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("missing capabilities CAP_"), "{stderr}");
    }
}

/// `--partial` scans without the capabilities and counts what it could not see.
#[test]
fn an_unprivileged_partial_scan_counts_what_it_cannot_see() {
    if !prerequisites(&["setpriv", "sleep"]) {
        return;
    }
    let _root_process = Running::spawn({
        let mut c = Command::new("sleep");
        c.arg("1000");
        c
    });
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(env!("CARGO_BIN_EXE_sockwatch"))
        .args(["scan", "--partial", "--format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let doc: crate::util::Document = serde_json::from_slice(&output.stdout).unwrap();
    let privileges = doc.snapshot.privileges;
    assert!(!privileges.sys_ptrace && !privileges.dac_read_search && !privileges.sys_admin);
    assert!(doc.snapshot.coverage.processes_denied > 0, "{:?}", doc.snapshot.coverage);
    assert!(doc.derived.reaches.iter().all(|r| !r.truncated));
}

#[test]
fn hostile_process_names_stay_one_line_and_lossless() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let netns = Netns::new();
    let program = r#"
import ctypes, json, os, socket, sys
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
ctypes.CDLL(None).prctl(15, b"x\n\x1b[31m\xe2\x80\xae\xff")
print(json.dumps({'pid': os.getpid()}), flush=True)
sys.stdin.read()
"#;
    let (running, facts) = python_in(&netns, program);
    let pid = facts["pid"].to_string();
    let ndjson = sockwatch(&["scan", "--format", "ndjson", "--pid", &pid]);
    assert!(ndjson.status.success());
    let text = String::from_utf8(ndjson.stdout).expect("NDJSON is UTF-8");
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    assert_eq!(rows.len(), 1, "{text}");
    let name = &rows[0]["name"]["base64"];
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(name.as_str().unwrap()).unwrap();
    assert_eq!(decoded, b"x\n\x1b[31m\xe2\x80\xae\xff", "comm kept byte for byte");
    assert_eq!(rows[0]["pid"].as_i64(), Some(i64::from(running.pid())));

    let table = sockwatch(&["scan", "--pid", &pid]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains(r"x\n\u{001b}[31m\u{202e}\xff"), "{table}");
    assert!(!table.contains('\u{1b}'));
    drop(running);

    // Valid UTF-8 that turns a terminal around (a C1 control, a right-to-left override, a line
    // separator) as the name: the JSON formats escape it on the wire and read back exactly.
    let name = "e\u{85}\u{202e}gpj\u{2028}x";
    let program = format!(
        "{}\nl = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n\
         ctypes.CDLL(None).prctl(15, sys.argv[1].encode())\n\
         print(json.dumps({{'pid': os.getpid()}}), flush=True)\nsys.stdin.read()\n",
        crate::util::PRELUDE
    );
    let mut command = netns.command("python3");
    command.args(["-c", &program, name]);
    let (running, line) = crate::util::Running::spawn_with_line(command);
    let pid: serde_json::Value = serde_json::from_str(&line).unwrap();
    let pid = pid["pid"].to_string();
    for format in ["ndjson", "json"] {
        let output = sockwatch(&["scan", "--format", format, "--pid", &pid]);
        assert!(output.status.success());
        let text = String::from_utf8(output.stdout).unwrap();
        for c in ['\u{85}', '\u{202e}', '\u{2028}'] {
            assert!(!text.contains(c), "{format} shows {c:?} raw");
        }
        assert!(text.contains(r"e\u0085\u202egpj\u2028x"), "{format}: {text}");
        let values: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
        let read_back = serde_json::to_string(&values).unwrap();
        assert!(read_back.contains(name), "{format}: the strings read back exactly");
    }
    drop(running);
}

/// A socket in flight through SCM_RIGHTS is in its table with no holder: pid -1 with --all only.
#[test]
fn unowned_sockets_appear_with_pid_minus_1_only_with_all() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let netns = Netns::new();
    let program = r#"
import json, os, socket, sys
a, b = socket.socketpair()
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
inode = os.fstat(l.fileno()).st_ino
socket.send_fds(a, [b"x"], [l.fileno()])
l.close()
print(json.dumps({'inode': inode}), flush=True)
sys.stdin.read()
"#;
    let (_running, facts) = python_in(&netns, program);
    let inode = facts["inode"].as_i64().unwrap();
    let rows = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = sockwatch(&[&["scan", "--format", "ndjson"], args].concat());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let in_flight = |rows: &[serde_json::Value]| {
        rows.iter().filter(|r| r["socket"].as_i64() == Some(inode)).cloned().collect::<Vec<_>>()
    };
    assert!(in_flight(&rows(&[])).is_empty());
    let all = in_flight(&rows(&["--all"]));
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["pid"].as_i64(), Some(-1));
    assert_eq!(all[0]["state"].as_str(), Some("LISTEN"));
    assert_eq!(all[0]["net_namespace"].as_u64(), Some(netns.inode()));
}

/// TIME_WAIT connections have no inode and no holder: sock_diag leaves them out of its dumps and
/// the namespace's count comes from net/sockstat; the /proc text path counts their rows. Both
/// give the same count for a namespace made by the test.
#[test]
fn time_wait_connections_are_counted_per_namespace_by_either_table_interface() {
    if !crate::util::prerequisites(&["ip", "python3"]) {
        return;
    }
    let netns = crate::util::Netns::new();
    let (_process, _) = crate::util::python_in(
        &netns,
        &format!(
            "{}
server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen()
for _ in range(5):
    c = socket.create_connection(server.getsockname()); a, _ = server.accept()
    c.close(); time.sleep(0.01); a.close()  # the client closes first: its end waits
print(json.dumps({{'ready': True}}), flush=True)
sys.stdin.read()
",
            crate::util::PRELUDE
        ),
    );
    for tables in ["sock-diag", "proc"] {
        let out = crate::util::sockwatch(&["scan", "--format", "json", "--tables", tables]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let namespace = document["snapshot"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["inode"] == netns.inode())
            .cloned()
            .expect("the test namespace");
        assert_eq!(namespace["time_wait"], 5, "--tables {tables}: {namespace}");
    }
}

/// The filters a person reaches for (port, state, listening, process, user, family), one row
/// per (socket, process) with its fds, a table that fits the terminal it is given, and argv
/// secrets redacted in the JSON document, which the filters cut down too.
#[test]
fn filters_choose_rows_the_table_fits_and_json_redacts() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let netns = Netns::new();
    // Facts through a file, stdio to /dev/null: a process holding a live connection with pipes
    // to the test harness would make the harness a relay in every other test's eyes.
    let dir = crate::util::ScratchDir::new("scan-filters");
    let told = dir.path.join("facts.json");
    let program = "import json, os, socket, sys, time\n\
         l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n\
         c = socket.create_connection(l.getsockname()); extra = os.dup(c.fileno())\n\
         a, b = socket.socketpair()\n\
         facts = {'pid': os.getpid(), 'port': l.getsockname()[1], 'fds': [c.fileno(), extra]}\n\
         open(sys.argv[1] + '.new', 'w').write(json.dumps(facts))\n\
         os.rename(sys.argv[1] + '.new', sys.argv[1])\n\
         time.sleep(600)\n";
    let mut command = netns.command("python3");
    command.args(["-c", program]).arg(&told).args(["--password=hunter2", "--mark-filters-test"]);
    command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    let running = crate::util::KillOnDrop::new(command.spawn().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let facts: serde_json::Value = loop {
        if let Ok(text) = std::fs::read_to_string(&told) {
            break serde_json::from_str(&text).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "the program tells its facts");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let (pid, port) = (facts["pid"].to_string(), facts["port"].as_u64().unwrap());
    let port_text = port.to_string();
    let rows = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = sockwatch(&[&["scan", "--format", "ndjson", "--pid", &pid], args].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // Network sockets by default: the listener and the client end (held twice), no socketpair.
    let all = rows(&[]);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(all.iter().all(|r| r["family"] == 2), "{all:#?}");
    let listening = rows(&["--listening"]);
    assert_eq!(listening.len(), 1);
    assert_eq!(listening[0]["local_port"], port);
    let established = rows(&["--state", "established", "--port", &port_text]);
    assert_eq!(established.len(), 2, "both fds of the client end: {established:#?}");
    assert!(established.iter().all(|r| r["remote_port"] == port));
    assert_eq!(rows(&["--process", "python3", "--user", "root"]).len(), 3);
    assert!(rows(&["--process", "nc"]).is_empty());
    assert!(rows(&["--user", "nobody"]).is_empty());
    assert!(rows(&["--port", "1"]).is_empty());
    let unix = rows(&["--unix"]);
    assert_eq!(unix.len(), 2, "the socketpair's two ends: {unix:#?}");
    let unknown_user = sockwatch(&["scan", "--user", "no-such-user-here"]);
    assert_eq!(unknown_user.status.code(), Some(64));

    // The table: one row per (socket, process) with its fds, a user column, fitted to COLUMNS.
    let table = |columns: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .args([&["scan", "--pid", &pid], args].concat())
            .env("COLUMNS", columns)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let wide = table("400", &["--state", "established"]);
    let fds = facts["fds"].as_array().unwrap();
    let fd_list = format!("{},{}", fds[0], fds[1]);
    assert_eq!(wide.lines().count(), 2, "{wide}");
    let row: Vec<&str> = wide.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!((row[0], row[1], row[2]), (pid.as_str(), fd_list.as_str(), "root"), "{wide}");
    let narrow = table("80", &[]);
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
    assert!(narrow.contains('…'), "{narrow}");

    // JSON: the document holds only what the filters chose, argv secrets redacted.
    let out = sockwatch(&["scan", "--format", "json", "--pid", &pid]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let processes = doc["snapshot"]["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1, "only the chosen process");
    let argv = processes[0]["argv"].to_string();
    assert!(argv.contains("--password=[REDACTED]") && !argv.contains("hunter2"), "{argv}");
    assert!(argv.contains("--mark-filters-test"));
    let sockets = doc["snapshot"]["sockets"].as_array().unwrap();
    assert!(sockets.iter().all(|s| {
        s["holders"].as_array().unwrap().iter().all(|h| h["proc"]["pid"] == facts["pid"])
    }));
    // The whole document (no filter) is redacted too.
    let whole = sockwatch(&["scan", "--format", "json"]);
    assert!(!String::from_utf8_lossy(&whole.stdout).contains("hunter2"));
    drop(running);
}
