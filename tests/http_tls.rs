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

/// nginx on two free loopback ports, with a certificate for 127.0.0.1 signed by the test's own
/// CA, proxying to `upstream`: `port` asks for basic auth (`agent`), `mtls_port` for a client
/// certificate signed by the same CA.
struct Nginx {
    _process: Running,
    port: u16,
    mtls_port: u16,
}

fn openssl(dir: &Path, args: &str) {
    run(Command::new("openssl").current_dir(dir).args(args.split_whitespace()));
}

/// `NAME.key` and `NAME.pem` for `subject`, signed by the CA, with the `extensions` line.
fn signed(dir: &Path, name: &str, subject: &str, extensions: &str) {
    openssl(
        dir,
        &format!(
            "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj {subject} \
         -keyout {name}.key -out {name}.csr"
        ),
    );
    // A private key is its owner's alone (the agent refuses one every user can read).
    let key = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(dir.join(format!("{name}.key")), key).unwrap();
    std::fs::write(dir.join(format!("{name}.ext")), format!("{extensions}\n")).unwrap();
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
         -extfile {name}.ext -out {name}.pem"
        ),
    );
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// In `dir`: the test's own CA (`ca.pem`), a server certificate for 127.0.0.1 (`server.pem`,
/// `server.key`) and a client certificate (`client.pem`, `client.key`) it signed.
pub(crate) fn make_certificates(dir: &Path) {
    openssl(
        dir,
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
         -subj /CN=sockwatch-test-CA -keyout ca.key -out ca.pem",
    );
    signed(dir, "server", "/CN=127.0.0.1", "subjectAltName = IP:127.0.0.1");
    signed(dir, "client", "/CN=sockwatch-agent", "extendedKeyUsage = clientAuth");
}

impl Nginx {
    fn start(dir: &Path, upstream: u16, password: &str) -> Nginx {
        make_certificates(dir);
        let hash = run(Command::new("openssl").args(["passwd", "-apr1", password]));
        std::fs::write(dir.join("htpasswd"), format!("agent:{}\n", hash.trim())).unwrap();

        let (port, mtls_port) = (free_port(), free_port());
        let d = dir.display();
        let tls = format!(
            "ssl_certificate {d}/server.pem;\n  ssl_certificate_key {d}/server.key;\n  \
             location / {{ proxy_pass http://127.0.0.1:{upstream}; }}"
        );
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr warn;\n\
             events {{}}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             server {{\n  listen 127.0.0.1:{port} ssl;\n  {tls}\n\
             auth_basic \"siem\";\n  auth_basic_user_file {d}/htpasswd;\n }}\n\
             server {{\n  listen 127.0.0.1:{mtls_port} ssl;\n  {tls}\n\
             ssl_client_certificate {d}/ca.pem;\n  ssl_verify_client on;\n }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut command = Command::new(NGINX);
        command.arg("-p").arg(dir).arg("-c").arg(dir.join("nginx.conf"));
        let process = Running::spawn(command);
        wait_until("nginx listening", Duration::from_secs(10), || {
            [port, mtls_port]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        Nginx { _process: process, port, mtls_port }
    }
}

fn nginx_available() -> bool {
    crate::util::unpacked_tool(NGINX)
}

/// Runs the agent with `settings` over a few connections: every event it printed arrived.
fn delivers(dir: &Path, receiver: &Receiver, url: &str, settings: &str) {
    let agent = Agent::start(&["--config", &config(dir, url, settings)]);
    connections(2);
    let (status, events, _) = agent.stop();
    assert!(status.success());
    let accepted = receiver.accepted_ids();
    for event in &events {
        assert!(accepted.contains_key(event["event"]["id"].as_str().unwrap()), "{event}");
    }
}

#[test]
fn tls_with_the_given_ca_and_basic_auth_delivers_and_an_unknown_ca_does_not() {
    if !prerequisites(&["python3", "openssl"]) || !nginx_available() {
        return;
    }
    let dir = ScratchDir::new("http-tls");
    let password = "correct-horse-battery-staple";
    crate::util::write_secret(&dir.path.join("password"), &format!("{password}\n"));
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
    delivers(&dir.path, &receiver, &url, &trusted);

    // Through a forward proxy, TLS runs end to end in a CONNECT tunnel: delivered, and the
    // proxy saw only the tunnel's destination.
    if crate::http_proxy::tinyproxy_available() {
        let proxy = crate::http_proxy::Tinyproxy::start(&dir.path, "proxy", None);
        let tunnelled = format!("{trusted}\nproxy = \"{}\"", proxy.url());
        delivers(&dir.path, &receiver, &url, &tunnelled);
        let tunnel = format!("CONNECT 127.0.0.1:{} ", nginx.port);
        let requests = proxy.requests();
        assert!(requests.iter().any(|r| r.starts_with(&tunnel)), "{requests:?}");
        assert!(requests.iter().all(|r| r.starts_with("CONNECT ")), "{requests:?}");
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
    let lanes = crate::http_sink::lanes(&tally);
    let telemetry = &lanes[&format!("http:{url}#telemetry")];
    assert_eq!(telemetry["delivered"], 0, "{telemetry}");
    assert!(telemetry["dropped_write_error"].as_u64().unwrap() > 0, "{telemetry}");

    // A wrong password: nginx answers 401, the batch is refused for good, the password (right
    // or wrong) appears in no output.
    crate::util::write_secret(&dir.path.join("password"), "wrong-password-xyz\n");
    let config_path = config(&dir.path, &url, &trusted);
    let (stdout, stderr) = crate::http_sink::run_until(&dir.path, &config_path, || {
        std::thread::sleep(Duration::from_secs(2));
        true
    });
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(password) && !text.contains("wrong-password-xyz"));
    }

    // Mutual TLS: with the client certificate, delivered; without it, nginx refuses the request
    // (400), the batch is dropped and counted, and nothing reaches the receiver.
    let url = format!("https://127.0.0.1:{}/ingest", nginx.mtls_port);
    let p = |name: &str| dir.path.join(name).display().to_string();
    let mutual = format!(
        "tls = {{ ca_file = \"{}\", client_cert_file = \"{}\", client_key_file = \"{}\" }}",
        p("ca.pem"),
        p("client.pem"),
        p("client.key")
    );
    delivers(&dir.path, &receiver, &url, &mutual);

    let before = receiver.requests().len();
    let server_only = format!("tls = {{ ca_file = \"{}\" }}", p("ca.pem"));
    let agent = Agent::start(&["--config", &config(&dir.path, &url, &server_only)]);
    connections(2);
    let (status, _, tally) = agent.stop();
    assert!(status.success());
    assert_eq!(receiver.requests().len(), before, "a request without a client certificate passed");
    let rejected: u64 = tally["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["dropped_rejected"].as_u64().unwrap())
        .sum();
    assert!(rejected > 0, "{tally}");
}
