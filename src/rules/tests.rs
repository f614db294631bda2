//! Rule-set assembly: the shipped pack, overrides and appends, and every kind of rule-file error,
//! reported all at once with file:line:col and the rule id (snapshotted, so a change in wording
//! or position is reviewed).

use super::{RuleSet, RuleSource};

fn sources(files: &[(&str, &str)]) -> Vec<RuleSource> {
    files
        .iter()
        .map(|(name, text)| RuleSource { name: name.to_string(), text: text.to_string() })
        .collect()
}

fn errors(files: &[(&str, &str)]) -> String {
    match RuleSet::compile(sources(files)) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.to_string(),
    }
}

const BASE: &str = r#"
[[list]]
name = "shells"
items = ["bash", "sh"]

[[macro]]
name = "shell"
condition = "proc.exe_name in (shells)"

[[rule]]
id = "shell-socket"
name = "Shell with a socket"
severity = "high"
condition = "shell and fd.num exists"
message = "{proc.exe} holds {fd.num}"
tags = ["mitre.T1059.004"]
"#;

#[test]
fn the_embedded_pack_compiles_with_every_rule_enabled() {
    let set = RuleSet::compile(RuleSource::embedded()).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = set.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "stdio-outbound-socket",
            "stdio-connection-of-unknown-direction",
            "shell-holds-network-socket",
            "shell-stdio-relayed-to-outbound-socket",
            "bind-shell",
            "shell-stdio-on-network-connections",
            "interpreter-serves-shell-over-network",
            "shell-output-relayed-to-ancestor-connection",
            "interpreter-stdio-relayed-to-network",
            "stdio-relayed-to-network",
            "shell-stdio-walk-truncated",
            "shell-stdio-on-connectionless-socket",
        ]
    );
    assert!(
        set.rules.iter().all(|r| r.enabled && r.tags.iter().any(|t| t.starts_with("mitre.T1059")))
    );
}

#[test]
fn later_files_append_to_lists_and_override_rules_partially() {
    let local = r#"
[[list]]
name = "shells"
items = ["zsh"]
append = true

[[rule]]
id = "shell-socket"
override = true
enabled = false
"#;
    let set = RuleSet::compile(sources(&[("a.toml", BASE), ("b.toml", local)])).unwrap();
    let rule = set.get("shell-socket").unwrap();
    assert!(!rule.enabled);
    assert_eq!(rule.name, "Shell with a socket", "keys the override leaves out are inherited");
    assert_eq!(rule.defined_at, "b.toml:8");
}

#[test]
fn toml_syntax_and_unknown_keys() {
    insta::assert_snapshot!(errors(&[
        ("syntax.toml", "[[rule]\nid = 1\n"),
        (
            "unknown.toml",
            "[[rule]]\nid = \"x\"\nname = \"n\"\nseverity = \"high\"\ncondition = \"proc.pid = 1\"\nmessage = \"m\"\nsevrity = \"low\"\n"
        ),
        ("severity.toml", "[[rule]]\nid = \"y\"\nseverity = \"urgent\"\n"),
    ]));
}

#[test]
fn condition_errors_are_located_inside_the_string() {
    let file = r#"
[[rule]]
id = "typos"
name = "n"
severity = "low"
message = "{proc.pid}"
condition = '''
proc.exe_name = "bash"
  and proc.nmae = "x" and sock.rport = "22"
  and sock.raddr cidr "10.0.0.0/33" and proc.exe regex "("
'''

[[rule]]
id = "undefined"
name = "n"
severity = "low"
message = "{proc.pid} {nosuch.field}"
condition = 'nomacro or proc.exe_name in (nolist)'
"#;
    insta::assert_snapshot!(errors(&[("conditions.toml", file)]));
}

#[test]
fn duplicates_overrides_and_cycles() {
    let again = r#"
[[list]]
name = "shells"
items = ["zsh"]

[[macro]]
name = "loop_a"
condition = "loop_b"

[[macro]]
name = "loop_b"
condition = "loop_a and proc.pid = 1"

[[rule]]
id = "shell-socket"
name = "again"
severity = "low"
condition = "loop_a"
message = "m"

[[rule]]
id = "Not_Kebab"
override = true
"#;
    insta::assert_snapshot!(errors(&[("base.toml", BASE), ("again.toml", again)]));
}

#[test]
fn missing_keys_and_bad_templates() {
    let file = r#"
[[rule]]
id = "incomplete"
condition = "proc.pid = 1"

[[rule]]
id = "template"
name = "n"
severity = "low"
condition = "proc.pid = 1"
message = "unclosed {proc.pid"
"#;
    insta::assert_snapshot!(errors(&[("keys.toml", file)]));
}

/// A macro that reads only the process is remembered for all of a process's subjects; one that
/// reads the socket is remembered per subject. Neither result may leak to another subject or
/// process.
#[test]
fn macro_results_are_remembered_per_process_or_per_subject_as_they_read() {
    use crate::graph::Graph;
    use crate::model::fixture::Builder;
    use crate::model::{Protocol, SocketState};
    use crate::rules::engine::Prepared;
    use crate::rules::subject::Clock;

    let rules = RuleSet::compile(sources(&[(
        "memo.toml",
        r#"
[[macro]]
name = "is_first"
condition = "proc.pid = 10"

[[macro]]
name = "to_4444"
condition = "sock.rport = 4444"

[[macro]]
name = "not_first"
condition = "not is_first"

[[rule]]
id = "first-to-4444"
name = "pid 10 to port 4444"
severity = "high"
condition = "is_first and to_4444"
message = "{proc.pid}"

[[rule]]
id = "others-to-4444"
name = "other pids to port 4444"
severity = "high"
condition = "not_first and to_4444"
message = "{proc.pid}"
"#,
    )]))
    .expect("compiles");
    let mut b = Builder::new();
    let first = b.process(10, "first");
    let second = b.process(11, "second");
    let established = SocketState::Established;
    // pid 10: port 4444 first (true is remembered first), then port 80.
    b.inet(1, Protocol::Tcp, "127.0.0.1:40001", "127.0.0.1:4444", established);
    b.inet(2, Protocol::Tcp, "127.0.0.1:40002", "127.0.0.1:80", established);
    b.inet(3, Protocol::Tcp, "127.0.0.1:40003", "127.0.0.1:4444", established);
    b.inet(4, Protocol::Tcp, "127.0.0.1:40004", "127.0.0.1:80", established);
    let socket = |inode| crate::model::FdTarget::Socket { inode };
    let unknown = crate::model::AccessMode::Unknown;
    b.fd(first, 3, unknown, socket(1));
    b.fd(first, 4, unknown, socket(2));
    b.fd(second, 3, unknown, socket(3));
    b.fd(second, 4, unknown, socket(4));
    let snapshot = b.build();
    let graph = Graph::build(&snapshot, None);
    let prepared = Prepared::new(&graph, Clock::default());
    assert_eq!(prepared.len(), 4);
    // Exactly (10, socket 1) for the first rule and (11, socket 3) for the second.
    assert_eq!(rules.count_matches(&prepared), 2);
}

/// Runs `check` on the one subject of a process holding an outbound connection on fd 3 (no
/// stdio), with a scope of the given macros and no lists.
fn with_one_subject(
    macros: std::collections::HashMap<String, Option<crate::rules::compile::Compiled>>,
    check: impl FnOnce(
        &crate::rules::subject::Subject<'_>,
        &crate::rules::subject::Context<'_>,
        &crate::rules::compile::Scope<'_>,
    ),
) {
    use crate::graph::Graph;
    use crate::model::fixture::Builder;
    use crate::rules::engine::Prepared;
    use crate::rules::subject::Clock;

    let mut b = Builder::new();
    let holder = b.process(10, "client");
    b.connection(7, holder, 3);
    let snapshot = b.build();
    let graph = Graph::build(&snapshot, None);
    let prepared = Prepared::new(&graph, Clock::default());
    let (subjects, cx) = prepared.parts();
    assert_eq!(subjects.len(), 1, "fd 3 on the socket: no stdio via");
    let lists = std::collections::HashMap::new();
    check(&subjects[0], cx, &crate::rules::compile::Scope { lists: &lists, macros: &macros });
}

/// `and` and `or` evaluate their cheapest operands first, whatever order they are written in: a
/// costly operand (here one that must never run) is not reached when a cheap one decides.
#[test]
fn cheap_operands_decide_before_costly_ones() {
    use crate::rules::compile::{Compiled, compile};
    use std::sync::Arc;

    let explodes = Compiled {
        predicate: Arc::new(|_, _| panic!("evaluated")),
        cost: 1000,
        process_only: false,
        gate: None,
    };
    let macros = std::collections::HashMap::from([("explodes".to_string(), Some(explodes))]);
    with_one_subject(macros, |subject, cx, scope| {
        for (text, expected) in [
            (r#"explodes and stdio.via = "direct""#, false),
            (r#"explodes or stdio.via != "pipe""#, true),
            (r#"(explodes and sock.rport = 4444) and (stdio.fds = 0 and fd.num = 3)"#, false),
        ] {
            let compiled = compile(&crate::rules::syntax::parse(text).unwrap(), scope).unwrap();
            assert!(compiled.cost > 1000, "{text}: the costs add up");
            assert_eq!((compiled.predicate)(subject, cx), expected, "{text}");
        }
    });
}

/// A rule's process gate is what the process alone must satisfy: the process-only operands of a
/// top-level `and`, never part of an `or` that a socket could satisfy instead.
#[test]
fn process_gates_are_necessary_conditions_on_the_process() {
    with_one_subject(std::collections::HashMap::new(), |subject, cx, scope| {
        let gate = |text: &str| {
            let expr = crate::rules::syntax::parse(text).unwrap();
            let compiled = crate::rules::compile::compile(&expr, scope).unwrap();
            compiled.gate.map(|g| g(subject, cx))
        };
        assert_eq!(gate("proc.pid = 11 and sock.rport = 4444"), Some(false));
        assert_eq!(gate("sock.rport = 4444 and (proc.pid = 10 and proc.uid = 0)"), Some(true));
        assert_eq!(gate("proc.pid = 11 or sock.rport = 4444"), None, "the socket may decide");
        assert_eq!(gate("not proc.pid = 11"), Some(true));
        assert_eq!(gate("(proc.pid = 11 or proc.pid = 10) and sock.rport = 1"), Some(true));
        assert_eq!(gate("sock.rport = 4444"), None);
    });
}

/// `n` macros, each using the next (`forward`) or the previous one, and a rule using the last.
fn macro_chain(n: usize, forward: bool) -> String {
    let mut text = String::new();
    for i in 0..n {
        let next = if forward { i + 1 } else { i.wrapping_sub(1) };
        let body =
            if next < n { format!("m{next} and proc.pid > 0") } else { "proc.pid > 0".into() };
        text += &format!("[[macro]]\nname = \"m{i}\"\ncondition = \"{body}\"\n\n");
    }
    let top = if forward { 0 } else { n - 1 };
    text + &format!(
        "[[rule]]\nid = \"chained\"\nname = \"n\"\nseverity = \"low\"\nmessage = \"m\"\ncondition = \"m{top}\"\n"
    )
}

#[test]
fn macro_chains_are_bounded_in_either_definition_order() {
    for forward in [true, false] {
        assert!(RuleSet::compile(sources(&[("ok.toml", &macro_chain(16, forward))])).is_ok());
        let error = errors(&[("deep.toml", &macro_chain(17, forward))]);
        assert!(error.contains("macros using macros more than 16 deep"), "{error}");
        // Ten thousand deep is the same error, not a stack overflow, when compiling or later.
        let error = errors(&[("hostile.toml", &macro_chain(10_000, forward))]);
        let lines: Vec<&str> = error.lines().collect();
        assert_eq!(lines.len(), 101, "{}", &error[..200.min(error.len())]);
        assert!(lines[100].ends_with("more errors from here on"), "{}", lines[100]);
    }
}

#[test]
fn a_condition_nested_ten_thousand_deep_is_an_error_in_its_file() {
    let condition = format!("{}proc.pid = 1{}", "(".repeat(10_000), ")".repeat(10_000));
    let file = format!(
        "[[rule]]\nid = \"deep\"\nname = \"n\"\nseverity = \"low\"\nmessage = \"m\"\ncondition = \"{condition}\"\n"
    );
    let error = errors(&[("deep.toml", &file)]);
    // The 65th `(`: column 14 is the first character inside the quotes.
    assert!(error.contains("deep.toml:6:78: rule `deep`: nested deeper than 64"), "{error}");
}

#[test]
fn tags_are_attack_ids_or_local_labels_and_a_reference_is_kept() {
    let tagged = |tags: &str| {
        BASE.replace(
            r#"tags = ["mitre.T1059.004"]"#,
            &format!("tags = {tags}\nreference = \"https://runbooks.example/shell\""),
        )
    };
    let good = tagged(r#"["mitre.T1059.004", "mitre.TA0011", "local.pci"]"#);
    let set = RuleSet::compile(sources(&[("good.toml", &good)])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.rules[0].tags, ["mitre.T1059.004", "mitre.TA0011", "local.pci"]);
    assert_eq!(set.rules[0].reference.as_deref(), Some("https://runbooks.example/shell"));

    let bad = tagged(r#"["mitre.T1059.004", "attack.T1059", "mitre.T59"]"#);
    let found = errors(&[("bad.toml", &bad)]);
    let line = bad.lines().position(|l| l.starts_with("tags")).unwrap() + 1;
    let column = |tag: &str| bad.lines().nth(line - 1).unwrap().find(tag).unwrap() + 1;
    assert!(
        found.contains(&format!("bad.toml:{line}:{}", column("\"attack.T1059\"")))
            && found.contains("unknown prefix"),
        "{found}"
    );
    assert!(
        found.contains(&format!("bad.toml:{line}:{}", column("\"mitre.T59\"")))
            && found.contains("not an ATT&CK id"),
        "{found}"
    );
    assert!(found.contains("rule `shell-socket`"), "{found}");
}

#[test]
fn every_tag_of_the_embedded_pack_has_an_attack_name() {
    let set = RuleSet::compile(RuleSource::embedded()).unwrap_or_else(|e| panic!("{e}"));
    for rule in &set.rules {
        assert!(!rule.description.is_empty(), "{} has no description", rule.id);
        for tag in &rule.tags {
            let id = tag.strip_prefix("mitre.").unwrap_or(tag);
            assert!(crate::model::mitre::name(id).is_some(), "{}: {tag} has no name", rule.id);
        }
    }
}
