use super::*;
use crate::sinks::SinkConfig;

fn files(list: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let owned: Vec<(String, String)> =
        list.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    Config::from_files(&owned)
}

#[test]
fn the_embedded_default_is_valid_and_documented() {
    let config = Config::embedded().unwrap();
    assert_eq!(config.agent.interval, Duration::from_secs(1));
    assert_eq!(config.agent.heartbeat, Duration::from_secs(60));
    assert_eq!(config.agent.baseline, crate::model::Baseline::Summary);
    assert!(!config.holderless);
    assert_eq!(config.sinks.len(), 1);
    assert!(matches!(config.sinks[0], SinkConfig::Stdout(_)));
    // Every key in [agent] carries a comment line above it.
    let lines: Vec<&str> = EMBEDDED_DEFAULT.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.contains(" = ") && !line.starts_with('#') && !line.starts_with("type") {
            assert!(lines[i - 1].starts_with('#'), "undocumented key: {line}");
        }
    }
}

#[test]
fn errors_name_file_line_and_column() {
    let e = files(&[("a.toml", "[agent]\ninterval = \"1s\"\nintervall = \"2s\"\n")]).unwrap_err();
    assert_eq!((e.file.as_str(), e.line, e.column), ("a.toml", 3, 1));
    assert!(e.message.contains("unknown field `intervall`"), "{e}");

    let e = files(&[("b.toml", "[agent]\nbaseline = \"yes\"\n")]).unwrap_err();
    assert_eq!((e.line, e.column), (2, 12));
    assert!(e.message.contains("\"summary\", \"full\", \"off\""), "{e}");

    let e = files(&[("c.toml", "[agent]\n  heartbeat = \"10 parsecs\"\n")]).unwrap_err();
    assert_eq!((e.line, e.column), (2, 15));
    assert!(e.message.contains("bad duration"), "{e}");

    let e = files(&[("d.toml", "[agent]\ninterval = \"5ms\"\n")]).unwrap_err();
    assert!(e.message.contains("minimum of 50ms"), "{e}");
    assert_eq!(e.to_string(), format!("d.toml:2:12: {}", e.message));

    let e = files(&[("e.toml", "[[sinks]]\ntype = \"file\"\npath = \"/x\"\ncolour = 1\n")])
        .unwrap_err();
    assert_eq!((e.line, e.column), (4, 1), "an unknown sink key is found by name: {e}");
    assert!(e.message.contains("colour"), "{e}");

    let e = files(&[("g.toml", "[[sinks]]\ntype = \"stdout\"\nmin_severity = \"severe\"\n")])
        .unwrap_err();
    assert!(e.message.contains("\"medium\"") && e.line == 3, "a sink's severity by name: {e}");

    let e = files(&[("f.toml", "[[sinks]]\ntype = \"carrier-pigeon\"\n")]).unwrap_err();
    assert!(e.message.contains("carrier-pigeon"), "{e}");

    let e = files(&[("h.toml", "[events]\nredact_patterns = [\"ok\", \"(bad\"]\n")]).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert!(e.message.contains("bad pattern"), "{e}");

    let e = files(&[("i.toml", "[metrics]\nlisten = \"0.0.0.0:9464\"\n")]).unwrap_err();
    assert!(e.message.contains("not a loopback address") && e.line == 2, "{e}");
    let ok = files(&[("j.toml", "[metrics]\nlisten = \"127.0.0.1:9464\"\n")]).unwrap();
    assert_eq!(ok.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));

    let e = files(&[("k.toml", "[events]\nsocket_families = [\"inet\", \"ipx\"]\n")]).unwrap_err();
    assert!(e.line == 2 && e.message.contains("ipx"), "{e}");
    let ok = files(&[("l.toml", "[events]\nsocket_families = [\"inet\", \"inet6\"]\n")]).unwrap();
    assert_eq!(ok.socket_families, vec![crate::model::Family::Inet, crate::model::Family::Inet6]);

    let e = files(&[("g.toml", "[agent\n")]).unwrap_err();
    assert_eq!(e.line, 1, "{e}");
}

#[test]
fn later_files_override_key_by_key_and_replace_sink_lists() {
    let config = files(&[
        ("<embedded>", EMBEDDED_DEFAULT),
        ("sockwatch.toml", "[agent]\ninterval = \"2s\"\n"),
        ("conf.d/10-local.toml", "[agent]\nheartbeat = \"30s\"\n[[sinks]]\ntype = \"file\"\npath = \"/var/log/x.ndjson\"\nfsync_interval = \"5s\"\nkinds = [\"alert\"]\nmin_severity = \"medium\"\n"),
    ])
    .unwrap();
    assert_eq!(config.agent.interval, Duration::from_secs(2));
    assert_eq!(config.agent.heartbeat, Duration::from_secs(30));
    assert_eq!(config.sinks.len(), 1, "the drop-in's list replaces the default stdout sink");
    let SinkConfig::File(file) = &config.sinks[0] else { panic!("{:?}", config.sinks) };
    assert_eq!(file.path, std::path::PathBuf::from("/var/log/x.ndjson"));
    assert_eq!(file.fsync_interval.map(|i| i.0), Some(Duration::from_secs(5)));
    let route = config.sinks[0].route();
    assert_eq!((route.kinds, route.min_severity), (vec![crate::event::EventKind::Alert], 3));
}

#[test]
fn drop_ins_are_read_in_name_order_from_conf_d() {
    let dir = std::env::temp_dir().join(format!("sockwatch-config-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    std::fs::write(dir.join("sockwatch.toml"), "[agent]\ninterval = \"2s\"\n").unwrap();
    std::fs::write(dir.join("conf.d/20-b.toml"), "[agent]\ninterval = \"4s\"\n").unwrap();
    std::fs::write(dir.join("conf.d/10-a.toml"), "[agent]\ninterval = \"3s\"\n").unwrap();
    std::fs::write(dir.join("conf.d/README"), "not toml").unwrap();
    let config = Config::load(&dir.join("sockwatch.toml"));
    std::fs::write(dir.join("conf.d/30-bad.toml"), "[agent]\nnope = 1\n").unwrap();
    let bad = Config::load(&dir.join("sockwatch.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(config.unwrap().agent.interval, Duration::from_secs(4));
    let bad = bad.unwrap_err();
    assert!(bad.file.ends_with("conf.d/30-bad.toml") && bad.line == 2, "{bad}");
}

#[test]
fn the_documented_http_sink_parses_with_every_key() {
    let example = EMBEDDED_DEFAULT.split("# type = \"http\"").nth(1).expect("an http example");
    let body: String = example
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = format!("[[sinks]]\ntype = \"http\"\n{body}");
    let config = files(&[("http.toml", &text)]).unwrap();
    let SinkConfig::Http(http) = &config.sinks[0] else { panic!("{:?}", config.sinks) };
    assert_eq!(http.format, crate::sinks::HttpFormat::SplunkHec);
    assert_eq!(http.batch_max_events.map(|b| b.0), Some(500));
    assert!(http.auth.is_some() && http.tls.is_some() && http.splunk.is_some());
    let lanes = config.sinks[0].lanes();
    assert_eq!(lanes.len(), 2, "an alert lane and a telemetry lane");

    let bad = text.replace("gzip = true", "gzip = true\ncompression = \"zstd\"");
    let e = files(&[("http.toml", &bad)]).unwrap_err();
    assert_eq!((e.line, e.column), (9, 1), "{e}");
}

#[test]
fn two_sinks_spooling_to_one_directory_are_refused_at_the_second() {
    let sink = "[[sinks]]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/x\"\nspool = { dir = \"/var/lib/sockwatch/spool\" }\n";
    let other = sink.replace("127.0.0.1:9", "127.0.0.1:10");
    let fine = format!("{sink}\n{other}");
    assert!(files(&[("ok.toml", &fine)]).is_ok(), "distinct URLs spool apart");
    let twice = format!("[[sinks]]\ntype = \"stdout\"\n\n{sink}\n{sink}");
    let e = files(&[("s.toml", &twice)]).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("s.toml", 9), "{e}");
    assert!(e.message.contains("already uses"), "{e}");
}

#[test]
fn a_sink_takes_a_schema_and_refuses_one_it_does_not_know() {
    let text = "[[sinks]]\ntype = \"file\"\npath = \"/tmp/x.ndjson\"\nschema = \"ocsf\"\n";
    let config = files(&[("s.toml", text)]).unwrap();
    assert_eq!(config.sinks[0].schema(), crate::sinks::Schema::Ocsf);
    let e = files(&[("s.toml", &text.replace("ocsf", "cef"))]).unwrap_err();
    assert_eq!((e.line, e.column), (4, 10), "{e}");
    assert!(e.message.contains("unknown variant `cef`"), "{e}");
}

#[test]
fn an_error_inside_a_sink_table_names_its_own_line() {
    let text = "[agent]\ninterval = \"1s\"\n\n[[sinks]]\ntype = \"stdout\"\n\n[[sinks]]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\nbatch_max_events = \"500\"\n";
    let e = files(&[("s.toml", text)]).unwrap_err();
    assert_eq!((e.line, e.column), (10, 20), "{e}");
    let missing = "[[sinks]]\ntype = \"file\"\nfsync_interval = \"1s\"\n";
    let e = files(&[("m.toml", missing)]).unwrap_err();
    assert_eq!(e.line, 1, "a missing key is the table's: {e}");
    assert!(e.message.contains("path"), "{e}");
    let unknown_type = "[[sinks]]\ntype = \"amqp\"\n";
    let e = files(&[("k.toml", unknown_type)]).unwrap_err();
    assert_eq!((e.line, e.column), (2, 8), "{e}");
    // The network sinks' own keys are placed too.
    let kafka = "[[sinks]]\ntype = \"kafka\"\nbootstrap_servers = [\"127.0.0.1:9092\"]\ntopic = \"t\"\nacks = \"1\"\n";
    let e = files(&[("kafka.toml", kafka)]).unwrap_err();
    assert_eq!((e.line, e.column), (5, 8), "{e}");
    let otlp =
        "[[sinks]]\ntype = \"otlp\"\nendpoint = \"http://127.0.0.1:4318\"\nencodin = \"json\"\n";
    let e = files(&[("otlp.toml", otlp)]).unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    let bad_duration =
        "[[sinks]]\ntype = \"file\"\npath = \"/x\"\n  fsync_interval = \"1 fortnight\"\n";
    let e = files(&[("d.toml", bad_duration)]).unwrap_err();
    assert_eq!((e.line, e.column), (4, 20), "{e}");
}

#[test]
fn local_rules_add_to_the_pack_unless_it_is_replaced_on_purpose() {
    let config = Config::embedded().unwrap();
    let selection = &config.rules.selection;
    assert!(selection.builtin && selection.paths.is_empty() && !selection.allow_none);
    let config = files(&[("a.toml", "[rules]\npaths = [\"/etc/x\"]\n")]).unwrap();
    assert!(config.rules.selection.builtin, "paths alone add to the pack");
    assert_eq!(config.rules.selection.describe(), ["<embedded>", "/etc/x"]);
    let text = "[rules]\npaths = [\"/etc/x\"]\nbuiltin = false\nallow_none = true\n";
    let config = files(&[("b.toml", text)]).unwrap();
    assert!(!config.rules.selection.builtin && config.rules.selection.allow_none);
    assert_eq!(config.rules.selection.describe(), ["/etc/x"]);
}

#[test]
fn settings_checked_after_merging_remember_where_they_were_written() {
    let config = files(&[
        ("main.toml", "[agent]\n  interval = \"2s\"\n[rules]\npaths = [\"/r\"]\n"),
        (
            "conf.d/50.toml",
            "# local\n[metrics]\nlisten = \"127.0.0.1:9100\"\n\n[[sinks]]\ntype = \"stdout\"\n\n\
             [[sinks]]\ntype = \"file\"\npath = \"/x\"\n",
        ),
    ])
    .unwrap();
    let origins = &config.origins;
    let at = |l: &Option<Location>| l.as_ref().map(ToString::to_string);
    assert_eq!(at(&origins.interval).as_deref(), Some("main.toml:2:14"));
    assert_eq!(at(&origins.rules_paths).as_deref(), Some("main.toml:4:9"));
    assert_eq!(at(&origins.metrics_listen).as_deref(), Some("conf.d/50.toml:3:10"));
    let sinks: Vec<String> = origins.sinks.iter().map(ToString::to_string).collect();
    assert_eq!(sinks, ["conf.d/50.toml:5:1", "conf.d/50.toml:8:1"]);
    assert_eq!(Location::option("--interval").to_string(), "--interval");
}

#[test]
fn intervals_beyond_a_day_are_typos() {
    let e = files(&[("a.toml", "[agent]\nheartbeat = \"1000h\"\n")]).unwrap_err();
    assert_eq!((e.line, e.column), (2, 13));
    assert!(e.message.contains("maximum of 24h"), "{e}");
    assert!(files(&[("b.toml", "[agent]\nheartbeat = \"24h\"\n")]).is_ok());
}

#[test]
fn a_baseline_is_named_or_the_old_switch_and_anything_else_is_located() {
    use crate::model::Baseline;
    for (written, meant) in [
        ("\"full\"", Baseline::Full),
        ("\"off\"", Baseline::Off),
        ("true", Baseline::Full),
        ("false", Baseline::Off),
    ] {
        let config = files(&[("b.toml", &format!("[agent]\nbaseline = {written}\n"))]).unwrap();
        assert_eq!(config.agent.baseline, meant, "{written}");
    }
    let e = files(&[("c.toml", "[agent]\nbaseline = \"some\"\n")]).unwrap_err().to_string();
    assert!(e.contains("c.toml:2:12") && e.contains("summary"), "{e}");
}
