//! The packages as built by `dev/package`: the unit's hardening score, the .deb's files,
//! conffiles and maintainer scripts, lintian, and the .rpm carrying the same files.

use crate::util::prerequisites;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/systemd/sockwatch.service");

/// The worst `systemd-analyze security` exposure the unit may have (osquery's shipped unit
/// scores 9.6, Falco's 8.6).
const MAX_EXPOSURE: f64 = 2.5;

/// Runs a command and returns its stdout, failing with its stderr when it fails.
pub(crate) fn output_of(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{command:?} failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The .deb and the .rpm, built once for every test that needs them.
pub(crate) fn packages() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let listed = output_of(Command::new(format!("{ROOT}/dev/package")).current_dir(ROOT));
        let path = |suffix: &str| {
            let line = listed.lines().find(|l| l.ends_with(suffix)).expect(suffix);
            Path::new(ROOT).join(line)
        };
        (path(".deb"), path(".rpm"))
    })
}

#[test]
fn the_unit_keeps_its_security_exposure_at_most_2_5() {
    if !prerequisites(&["systemd-analyze"]) {
        return;
    }
    let report =
        output_of(Command::new("systemd-analyze").args(["security", "--offline=yes", UNIT]));
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("exposure level for sockwatch.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    assert!(score <= MAX_EXPOSURE, "exposure {score} > {MAX_EXPOSURE}:\n{report}");
    // What the agent needs and must keep: its three capabilities, and all of /proc.
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let setting = |key: &str| {
        unit.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_default()
    };
    let capabilities = "CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_NET_ADMIN";
    assert_eq!(setting("AmbientCapabilities"), capabilities);
    assert_eq!(setting("CapabilityBoundingSet"), capabilities);
    assert_eq!(setting("RestartPreventExitStatus"), "78");
    // The reload's check knows the watchdog the interval must fit in.
    let check =
        unit.lines().find_map(|l| l.strip_prefix("ExecReload=/usr/bin/sockwatch config check"));
    let watchdog = format!("--watchdog {} ", setting("WatchdogSec"));
    assert!(check.is_some_and(|c| c.trim_start().starts_with(&watchdog)), "{check:?}");
    // A procfs of the service's own, hiding only what CAP_SYS_PTRACE could not read anyway.
    assert_eq!(setting("ProtectProc"), "ptraceable");
    for hides_processes in ["ProcSubset=", "PrivateUsers=", "PrivatePIDs="] {
        assert!(!unit.lines().any(|l| l.starts_with(hides_processes)), "{hides_processes}");
    }
}

/// The files of the .deb, without directories.
/// The unit lets the agent read every state path the default config names, and hides the
/// containers' file systems beside them (CAP_DAC_READ_SEARCH would read them otherwise).
#[test]
fn the_unit_reads_the_runtimes_state_and_never_the_containers_files() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let paths = |key: &str| -> Vec<String> {
        let line = unit.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or("");
        line.split_whitespace().map(|p| p.trim_start_matches('-').to_string()).collect()
    };
    let (readable, hidden) = (paths("ReadOnlyPaths"), paths("InaccessiblePaths"));
    let config = sockwatch::config::Config::embedded().unwrap().containers;
    let mut read: Vec<PathBuf> = config.containerd.clone();
    read.extend(config.docker.iter().map(|root| root.join("containers")));
    read.extend(config.containers_storage.iter().cloned());
    read.extend(config.machines.iter().cloned());
    for path in read {
        let path = path.to_str().unwrap().to_string();
        assert!(readable.contains(&path), "{path} is not in ReadOnlyPaths= {readable:?}");
        assert!(!hidden.iter().any(|h| path.starts_with(h.as_str())), "{path} hidden");
    }
    for layers in ["/var/lib/docker/overlay2", "/var/lib/containerd", "/var/lib/kubelet/pods"] {
        assert!(hidden.contains(&layers.to_string()), "{layers} is readable");
    }
}

fn deb_files(deb: &Path) -> BTreeSet<String> {
    output_of(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches('.').to_string())
        .collect()
}

/// A member of one of the .deb's archives: `--ctrl-tarfile` or `--fsys-tarfile`.
fn deb_member(deb: &Path, archive: &str, name: &str) -> String {
    String::from_utf8(deb_member_bytes(deb, archive, name)).unwrap()
}

/// Like `deb_member`, as bytes (a compressed man page).
fn deb_member_bytes(deb: &Path, archive: &str, name: &str) -> Vec<u8> {
    let tarball = Command::new("dpkg-deb").arg(archive).arg(deb).output().unwrap();
    assert!(tarball.status.success(), "dpkg-deb {archive}");
    let mut tar = Command::new("tar")
        .args(["-xO", &format!("./{name}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(tar.stdin.as_mut().unwrap(), &tarball.stdout).unwrap();
    let output = tar.wait_with_output().unwrap();
    assert!(output.status.success(), "no {name} in the {archive} archive");
    output.stdout
}

fn deb_control_file(deb: &Path, name: &str) -> String {
    deb_member(deb, "--ctrl-tarfile", name)
}

#[test]
fn the_deb_holds_the_agent_its_unit_and_its_conffiles_and_lintian_is_clean() {
    if !prerequisites(&["dpkg-deb", "lintian", "tar"]) {
        return;
    }
    let (deb, _) = packages();
    let files = deb_files(deb);
    for expected in [
        "/usr/bin/sockwatch",
        "/usr/lib/systemd/system/sockwatch.service",
        "/usr/lib/sysusers.d/sockwatch.conf",
        "/etc/sockwatch/sockwatch.toml",
        "/etc/sockwatch/conf.d/README",
        "/etc/sockwatch/rules.local.d/README",
        "/etc/logrotate.d/sockwatch",
        "/usr/share/man/man1/sockwatch.1.gz",
        "/usr/share/man/man1/sockwatch-run.1.gz",
        "/usr/share/man/man1/sockwatch-incidents.1.gz",
        "/usr/share/man/man5/sockwatch.toml.5.gz",
        "/usr/share/bash-completion/completions/sockwatch",
        "/usr/share/zsh/vendor-completions/_sockwatch",
        "/usr/share/fish/vendor_completions.d/sockwatch.fish",
        "/usr/share/doc/sockwatch/copyright",
    ] {
        assert!(files.contains(expected), "{expected} missing from {files:#?}");
    }
    // Everything under /etc survives upgrades as a conffile; nothing else is one.
    let conffiles: BTreeSet<String> =
        deb_control_file(deb, "conffiles").lines().map(str::to_string).collect();
    let under_etc: BTreeSet<String> =
        files.iter().filter(|f| f.starts_with("/etc/")).cloned().collect();
    assert_eq!(conffiles, under_etc);
    // The packaged config reads the administrator's rules after the built-in pack; the copy of
    // the pack 0.1.0 kept under /etc is removed on upgrade.
    let config = deb_member(deb, "--fsys-tarfile", "etc/sockwatch/sockwatch.toml");
    let rules = r#"paths = ["/etc/sockwatch/rules.local.d"]"#;
    assert!(config.lines().any(|l| l == rules), "{config}");
    for script in ["preinst", "postinst", "postrm"] {
        let text = deb_control_file(deb, script);
        let removal = "rm_conffile /etc/sockwatch/rules.d/reverse_shell.toml 0.2.0~";
        assert!(text.contains(removal), "{script}: {text}");
    }
    let postinst = deb_control_file(deb, "postinst");
    assert!(postinst.contains("systemd-sysusers"), "the user is made at install: {postinst}");
    assert!(postinst.contains("deb-systemd-helper enable sockwatch.service"), "{postinst}");
    let postrm = deb_control_file(deb, "postrm");
    assert!(postrm.contains("rm -rf /var/lib/sockwatch /var/log/sockwatch"), "purge: {postrm}");
    let control = deb_control_file(deb, "control");
    assert!(
        control.lines().any(|l| l.starts_with("Depends:") && l.contains("systemd")),
        "{control}"
    );

    // The main page says what clap cannot: files, exit status, signals, examples; the config's
    // page is the shipped config with its comments.
    let page = |name: &str| {
        let gz = deb_member_bytes(deb, "--fsys-tarfile", &format!("usr/share/man/{name}"));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)
            .unwrap();
        text
    };
    let main = page("man1/sockwatch.1.gz");
    for section in ["FILES", "EXIT STATUS", "SIGNALS", "EXAMPLES"] {
        assert!(main.contains(&format!(".SH {section}")), "{section} missing from sockwatch.1");
    }
    let config_page = page("man5/sockwatch.toml.5.gz");
    assert!(config_page.contains("queue_capacity = 65536"), "{config_page}");

    // lintian: clean, but for what packaging/debian/lintian-overrides justifies.
    let lintian =
        Command::new("lintian").args(["--fail-on", "error,warning"]).arg(deb).output().unwrap();
    let report = String::from_utf8_lossy(&lintian.stdout);
    assert!(lintian.status.success() && report.trim().is_empty(), "lintian:\n{report}");
}

#[test]
fn the_rpm_carries_the_same_files_as_the_deb() {
    if !prerequisites(&["dpkg-deb", "rpm"]) {
        return;
    }
    let (deb, rpm) = packages();
    let rpm_files: BTreeSet<String> =
        output_of(Command::new("rpm").arg("-qlp").arg(rpm)).lines().map(str::to_string).collect();
    // Where each distribution wants its packaging metadata, and nothing else, differs.
    let debian_only = [
        "/usr/share/doc/sockwatch/copyright",
        "/usr/share/doc/sockwatch/changelog.Debian.gz",
        "/usr/share/lintian/overrides/sockwatch",
    ];
    let rpm_only = ["/usr/share/licenses/sockwatch/LICENSE"];
    let deb_files: BTreeSet<String> =
        deb_files(deb).into_iter().filter(|f| !debian_only.contains(&f.as_str())).collect();
    let rpm_files: BTreeSet<String> =
        rpm_files.into_iter().filter(|f| !rpm_only.contains(&f.as_str())).collect();
    assert_eq!(deb_files, rpm_files);
    let config = output_of(Command::new("rpm").arg("-qpc").arg(rpm));
    let rpm_conffiles: BTreeSet<&str> = config.lines().collect();
    assert_eq!(
        rpm_conffiles,
        deb_files.iter().filter(|f| f.starts_with("/etc/")).map(String::as_str).collect()
    );
    let scripts = output_of(Command::new("rpm").args(["-qp", "--scripts"]).arg(rpm));
    assert!(scripts.contains("systemd-sysusers sockwatch.conf"), "{scripts}");
}
