//! The HTTP sink over TLS with basic auth, through a real nginx (the Debian package, unpacked by
//! ./dev/test into target/test-tools) in front of the receiver fixture, with a CA and a server
//! certificate the test makes with openssl.

use crate::agent::Agent;
use crate::http_sink::{Receiver, config, connections, wait_until};
use crate::util::{Running, ScratchDir, prerequisites, run};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const NGINX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-tools/nginx/usr/sbin/nginx");

/// nginx on a free loopback port: TLS with a certificate for 127.0.0.1 signed by the test's own
/// CA, basic auth for `agent`, proxying to `upstream`.
struct Nginx {
    _process: Running,
    port: u16,
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

impl Nginx {
    fn start(dir: &Path, upstream: u16, password: &str) -> Nginx {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=sockwatch test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                "server.pem",
            ],
        );
        let hash = run(Command::new("openssl").args(["passwd", "-apr1", password]));
        std::fs::write(dir.join("htpasswd"), format!("agent:{}\n", hash.trim())).unwrap();

        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr warn;\n\
             events {{}}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             server {{\n  listen 127.0.0.1:{port} ssl;\n\
             ssl_certificate {d}/server.pem;\n  ssl_certificate_key {d}/server.key;\n\
             auth_basic \"siem\";\n  auth_basic_user_file {d}/htpasswd;\n\
             location / {{ proxy_pass http://127.0.0.1:{upstream}; }}\n }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut command = Command::new(NGINX);
        command.arg("-p").arg(dir).arg("-c").arg(dir.join("nginx.conf"));
        let process = Running::spawn(command);
        wait_until("nginx listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Nginx { _process: process, port }
    }
}

fn nginx_available() -> bool {
    if Path::new(NGINX).exists() {
        return true;
    }
    let message = format!("missing prerequisite: {NGINX} (./dev/test unpacks it)");
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("SKIPPED: {message}");
    false
}

#[test]
fn tls_with_the_given_ca_and_basic_auth_delivers_and_an_unknown_ca_does_not() {
    if !prerequisites(&["python3", "openssl"]) || !nginx_available() {
        return;
    }
    let dir = ScratchDir::new("http-tls");
    let password = "correct-horse-battery-staple";
    std::fs::write(dir.path.join("password"), format!("{password}\n")).unwrap();
    let receiver = Receiver::start(0);
    let nginx = Nginx::start(&dir.path, receiver.port, password);
    let url = format!("https://127.0.0.1:{}/ingest", nginx.port);
    let auth = format!(
        "auth = {{ type = \"basic\", username = \"agent\", password_file = \"{}\" }}",
        dir.path.join("password").display()
    );

    // Verified against the test's CA, authenticated: delivered.
    let trusted =
        format!("{auth}\ntls = {{ ca_file = \"{}\" }}", dir.path.join("ca.pem").display());
    let agent = Agent::start(&["--config", &config(&dir.path, &url, &trusted)]);
    connections(3);
    let (status, events, _) = agent.stop();
    assert!(status.success());
    let accepted = receiver.accepted_ids();
    for event in &events {
        assert!(accepted.contains_key(event["event"]["id"].as_str().unwrap()), "{event}");
    }

    // The system's roots do not know the test's CA: nothing is sent, the failure is retried,
    // and nothing reaches the receiver.
    let before = receiver.requests().len();
    let agent = Agent::start(&["--config", &config(&dir.path, &url, &auth)]);
    connections(2);
    std::thread::sleep(Duration::from_secs(2));
    let (status, _, tally) = agent.stop();
    assert!(status.success());
    assert_eq!(receiver.requests().len(), before, "an unverified server got events");
    let telemetry = tally["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"].as_str().unwrap().ends_with("#telemetry"))
        .unwrap()
        .clone();
    assert_eq!(telemetry["delivered"], 0, "{telemetry}");
    assert!(telemetry["dropped_write_error"].as_u64().unwrap() > 0, "{telemetry}");

    // A wrong password: nginx answers 401, the batch is refused for good, the password (right
    // or wrong) appears in no output.
    std::fs::write(dir.path.join("password"), "wrong-password-xyz\n").unwrap();
    let config_path = config(&dir.path, &url, &trusted);
    let (stdout, stderr) = crate::http_sink::run_until(&dir.path, &config_path, || {
        std::thread::sleep(Duration::from_secs(2));
        true
    });
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(password) && !text.contains("wrong-password-xyz"));
    }
}
