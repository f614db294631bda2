//! `sockwatch config check` refuses what `run` would, before anything runs and without side
//! effects; `run` refuses the same with exit 78 (which the unit does not restart) and one located
//! line per problem; a reload check does not trip over the running agent's own listener; a reload
//! whose interval the watchdog would not survive is refused.

use crate::agent::Agent;
use crate::util::{KillOnDrop, ScratchDir, prerequisites};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sockwatch_with(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sockwatch"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run sockwatch")
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr).lines().map(str::to_string).collect()
}

/// A loopback port nothing listens on (the kernel's pick, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The one line of `lines` that starts with `at` (after the `sockwatch: ` prefix).
fn line_at<'a>(lines: &'a [String], at: &str) -> &'a str {
    let prefix = format!("sockwatch: {at}: ");
    let found: Vec<&String> = lines.iter().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(found.len(), 1, "one line at {at}: {lines:#?}");
    found[0]
}

#[test]
fn config_check_finds_what_run_would_refuse_each_on_one_located_line_and_run_exits_78() {
    let dir = ScratchDir::new("config-check-bad");
    let d = dir.path.display();
    let not_a_cert = dir.path.join("ca.pem");
    std::fs::write(&not_a_cert, "not a certificate\n").unwrap();
    let plain_file = dir.path.join("plain");
    std::fs::write(&plain_file, "").unwrap();
    // Held by the test for the whole check: the address is taken by something else.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let main = dir.path.join("sockwatch.toml");
    std::fs::write(
        &main,
        format!(
            "[agent]\ninterval = \"20s\"\nstate_dir = \"{d}/state\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:{taken_port}\"\n\n\
             [rules]\npaths = [\"{d}/rules.local.d\"]\n"
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path.join("conf.d")).unwrap();
    let drop_in = dir.path.join("conf.d/50-sinks.toml");
    std::fs::write(
        &drop_in,
        format!(
            "# sinks\n\
             [[sinks]]\ntype = \"stdout\"\n\n\
             [[sinks]]\ntype = \"file\"\npath = \"{d}/missing/events.ndjson\"\n\n\
             [[sinks]]\ntype = \"http\"\nurl = \"https://127.0.0.1:9/a\"\n\
             auth = {{ type = \"bearer\", token_file = \"{d}/token\" }}\n\n\
             [[sinks]]\ntype = \"http\"\nurl = \"ftp://127.0.0.1:9/b\"\n\n\
             [[sinks]]\ntype = \"http\"\nurl = \"https://127.0.0.1:9/c\"\n\
             tls = {{ ca_file = \"{}\" }}\n\n\
             [[sinks]]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/d\"\n\
             spool = {{ dir = \"{}/spool\" }}\n",
            not_a_cert.display(),
            plain_file.display()
        ),
    )
    .unwrap();
    let (main, drop_in) = (main.to_str().unwrap(), drop_in.to_str().unwrap());

    let check = sockwatch_with(&[], &["config", "check", "--watchdog", "30s", main]);
    assert_eq!(check.status.code(), Some(78), "{check:?}");
    let lines = stderr_lines(&check);
    let interval = line_at(&lines, &format!("{main}:2:12"));
    assert!(interval.contains("watchdog of 30s") && interval.contains("at most 15s"), "{interval}");
    let metrics = line_at(&lines, &format!("{main}:6:10"));
    assert!(metrics.contains("Address already in use"), "{metrics}");
    let rules = line_at(&lines, &format!("{d}/rules.local.d:1:1"));
    assert!(rules.contains(&format!("rules paths set at {main}:9:9")), "{rules}");
    let file = line_at(&lines, &format!("{drop_in}:5:1"));
    assert!(file.contains(&format!("directory {d}/missing: No such file")), "{file}");
    let token = line_at(&lines, &format!("{drop_in}:9:1"));
    assert!(token.contains(&format!("auth: cannot read secret file {d}/token")), "{token}");
    let scheme = line_at(&lines, &format!("{drop_in}:14:1"));
    assert!(scheme.contains("url must start with http:// or https://"), "{scheme}");
    let ca = line_at(&lines, &format!("{drop_in}:18:1"));
    assert!(ca.contains("tls.ca_file:") && ca.contains("no certificate in it"), "{ca}");
    let spool = line_at(&lines, &format!("{drop_in}:23:1"));
    let under_a_file = format!("spool.dir: {} is not a directory", plain_file.display());
    assert!(spool.contains(&under_a_file), "{spool}");
    assert_eq!(lines.len(), 8, "nothing else: {lines:#?}");
    // Nothing was created, nothing bound for longer than the check.
    assert!(!dir.path.join("state").exists() && !dir.path.join("missing").exists());

    // `run` under the same watchdog refuses the same settings, before it starts anything.
    let run = sockwatch_with(&[("WATCHDOG_USEC", "30000000")], &["run", "--config", main]);
    assert_eq!(run.status.code(), Some(78), "{run:?}");
    assert!(run.stdout.is_empty(), "no agent_started: {}", String::from_utf8_lossy(&run.stdout));
    let run_lines = stderr_lines(&run);
    for at in [":2:12", ":5:1", ":9:1", ":14:1", ":18:1", ":23:1"] {
        let file = if at == ":2:12" { main } else { drop_in };
        assert_eq!(
            line_at(&run_lines, &format!("{file}{at}")),
            line_at(&lines, &format!("{file}{at}"))
        );
    }
    assert!(!dir.path.join("state").exists(), "refused before the state directory was made");
    drop(taken);
}

#[test]
fn a_good_config_passes_without_side_effects_and_the_running_agents_listener_is_no_conflict() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("config-check-good");
    let d = dir.path.display();
    crate::util::write_secret(&dir.path.join("token"), "s3cret\n");
    let port = free_port();
    let config = dir.path.join("sockwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ninterval = \"200ms\"\nstate_dir = \"{d}/state\"\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n\
             [[sinks]]\ntype = \"stdout\"\n\
             [[sinks]]\ntype = \"file\"\npath = \"{d}/events.ndjson\"\n\
             [[sinks]]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/ingest\"\n\
             auth = {{ type = \"bearer\", token_file = \"{d}/token\" }}\n\
             spool = {{ dir = \"{d}/spool/siem\" }}\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let check = sockwatch_with(&[], &["config", "check", "--watchdog", "30s", config]);
    assert!(check.status.success(), "{check:?}");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(said.contains("ok (3 sinks; rules from <embedded>)"), "{said}");
    for created in ["state", "events.ndjson", "spool"] {
        assert!(!dir.path.join(created).exists(), "config check created {created}");
    }

    // With the agent running and listening there, the check `systemctl reload` makes passes.
    let agent = Agent::start_in(&dir.path.join("state"), &["--config", config]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "metrics never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let check = sockwatch_with(&[], &["config", "check", config]);
    assert!(check.status.success(), "the agent's own listener: {check:?}");
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn paths_the_service_user_cannot_use_are_refused_though_root_could() {
    if !prerequisites(&["setpriv"]) {
        return;
    }
    let dir = ScratchDir::new("config-check-user");
    let d = dir.path.display();
    // Root's directory (0755) and root's secret (0600): fine for root, not for `nobody`.
    let secret = dir.path.join("token");
    crate::util::write_secret(&secret, "s3cret\n");
    let config = dir.path.join("sockwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = \"{d}/state\"\n\
             [[sinks]]\ntype = \"file\"\npath = \"{d}/events.ndjson\"\n\
             [[sinks]]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/ingest\"\n\
             auth = {{ type = \"bearer\", token_file = \"{}\" }}\n",
            secret.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    assert!(sockwatch_with(&[], &["config", "check", config]).status.success(), "as root");
    let as_nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_sockwatch"))
        .args(["config", "check", config])
        .output()
        .unwrap();
    assert_eq!(as_nobody.status.code(), Some(78), "{as_nobody:?}");
    let lines = stderr_lines(&as_nobody);
    let file = line_at(&lines, &format!("{config}:3:1"));
    assert!(
        file.contains("not writable by this user") && file.contains("ermission denied"),
        "{file}"
    );
    let token = line_at(&lines, &format!("{config}:6:1"));
    assert!(
        token.contains("cannot read secret file") && token.contains("ermission denied"),
        "{token}"
    );
    assert_eq!(lines.len(), 2, "{lines:#?}");
}

fn action(e: &Value) -> &str {
    e["event"]["action"].as_str().unwrap_or("")
}

#[test]
fn a_reload_to_an_interval_the_watchdog_would_not_survive_is_refused() {
    let dir = ScratchDir::new("config-check-reload");
    let events = dir.path.join("events.ndjson");
    let config = dir.path.join("sockwatch.toml");
    let sinks = format!(
        "[[sinks]]\ntype = \"file\"\npath = \"{}\"\nfsync_interval = \"100ms\"\n",
        events.display()
    );
    std::fs::write(&config, format!("[agent]\ninterval = \"200ms\"\n{sinks}")).unwrap();
    let path = config.to_str().unwrap();
    // Under a 4 s watchdog, as systemd would start it (no --interval: the file's applies).
    let mut agent = KillOnDrop::new(
        Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .args(["run", "--no-baseline", "--config", path, "--state-dir"])
            .arg(dir.path.join("state"))
            .env("WATCHDOG_USEC", "4000000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let logged = |what: &str| {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| action(e) == what)
    };
    wait_for("agent_started", || logged("agent_started").is_some());
    std::fs::write(&config, format!("[agent]\ninterval = \"3s\"\n{sinks}")).unwrap();
    let pid = rustix::process::Pid::from_raw(agent.child().id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    wait_for("reload_failed", || logged("reload_failed").is_some());
    let failed = logged("reload_failed").unwrap();
    let error = failed["sockwatch"]["error"].as_str().unwrap();
    assert!(error.starts_with(&format!("{path}:2:12: interval 3s")), "{error}");
    assert!(error.contains("watchdog of 4s"), "{error}");
    assert!(logged("config_reloaded").is_none(), "the running settings stay");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(agent.child().wait().unwrap().success());
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "no {what} within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}
