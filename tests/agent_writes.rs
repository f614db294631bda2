//! What the agent writes, with the real binary: directories another user could write in are
//! refused (78) with the reason; files get their modes whatever the umask; a symlink planted where
//! the agent writes is never followed.

use crate::util::{KillOnDrop, ScratchDir};
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sockwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sockwatch")).args(args).output().expect("run sockwatch")
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn directories_another_user_could_write_in_are_refused_with_78_and_the_reason() {
    let dir = ScratchDir::new("writes-unsafe");
    let shared = dir.path.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, PermissionsExt::from_mode(0o1777)).unwrap();
    let theirs = dir.path.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    rustix::fs::chown(&theirs, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
    let config = dir.path.join("sockwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[sinks]]\ntype = \"stdout\"\n\n[[sinks]]\ntype = \"file\"\npath = \"{}/events.ndjson\"\n",
            shared.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    for args in [
        vec!["run", "--config", config, "--state-dir", theirs.to_str().unwrap()],
        vec!["config", "check", config],
    ] {
        let out = sockwatch(&args);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {out:?}");
        let said = stderr(&out);
        let sink = format!(
            "sockwatch: {config}:4:1: sink file:{}/events.ndjson: path: {} is writable by other \
             users (mode 1777)",
            shared.display(),
            shared.display()
        );
        assert!(said.contains(&sink), "{said}");
        if args[0] == "run" {
            let state = format!(
                "sockwatch: --state-dir: state_dir: {} is owned by uid 65534, neither this user (0) \
                 nor root",
                theirs.display()
            );
            assert!(said.contains(&state), "{said}");
            assert_eq!(said.lines().count(), 2, "{said}");
        }
    }
    assert!(!shared.join("events.ndjson").exists(), "nothing written there");
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "no {what} within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn files_get_their_modes_whatever_the_umask_and_a_planted_symlink_is_never_followed() {
    let dir = ScratchDir::new("writes-modes");
    let (state, logs, spool) =
        (dir.path.join("state"), dir.path.join("logs"), dir.path.join("spool"));
    std::fs::create_dir(&logs).unwrap();
    let events = logs.join("events.ndjson");
    let config = dir.path.join("sockwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{}\"\n\
             [[sinks]]\ntype = \"file\"\npath = \"{}\"\nfsync_interval = \"100ms\"\n\
             [[sinks]]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/ingest\"\n\
             spool = {{ dir = \"{}\" }}\n",
            state.display(),
            events.display(),
            spool.display()
        ),
    )
    .unwrap();
    // The state directory holds a link where the agent's temporary rules file goes, pointing
    // at a file it must not touch.
    let victim = dir.path.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&victim, state.join(".rules.last-good.json.tmp")).unwrap();

    // umask 000: every mode below is the agent's choice, not the umask's.
    let mut agent = KillOnDrop::new(
        Command::new("sh")
            .args(["-c", "umask 000; exec \"$@\"", "sh", env!("CARGO_BIN_EXE_sockwatch")])
            .args(["run", "--no-baseline", "--interval", "200ms", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let logged = |what: &str| -> Option<Value> {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["event"]["action"] == what)
    };
    wait_until("state_unavailable", || logged("state_unavailable").is_some());
    let unavailable = logged("state_unavailable").unwrap();
    let error = unavailable["sockwatch"]["error"].as_str().unwrap();
    assert!(error.contains("symbolic links"), "the link was refused, not followed: {error}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

    // Without the link the state is written, 0600; the log is 0640; the spool 0700 and 0600.
    std::fs::remove_file(state.join(".rules.last-good.json.tmp")).unwrap();
    let pid = rustix::process::Pid::from_raw(agent.child().id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    wait_until("rules.last-good.json", || state.join("rules.last-good.json").exists());
    assert_eq!(mode(&state.join("rules.last-good.json")), 0o600);
    assert_eq!(mode(&events), 0o640);
    let lanes: Vec<_> = std::fs::read_dir(&spool).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(lanes.len(), 2, "{lanes:?}");
    assert_eq!(mode(&spool), 0o700);
    for lane in lanes {
        assert_eq!(mode(&lane), 0o700, "{}", lane.display());
        for file in std::fs::read_dir(&lane).unwrap() {
            let file = file.unwrap().path();
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(agent.child().wait().unwrap().success());
}
