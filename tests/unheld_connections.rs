//! An established outbound TCP connection that no process holds for two consecutive scans is
//! reported once as `socket_unheld`: here one parked in flight over SCM_RIGHTS (its fd sent on a
//! unix socket and closed), proven alive by taking it back and making a round trip over it. Its
//! benign look-alike, a connection waiting in a listener's accept queue (unheld, inbound), is
//! not reported.

use crate::agent::Agent;
use crate::util::{Netns, PRELUDE, ScratchDir, prerequisites, python_in};
use serde_json::Value;
use std::time::{Duration, Instant};

const PARKED: &str = r#"
far = socket.socket(); far.bind(("127.0.0.1", 0)); far.listen()
conn = socket.create_connection(far.getsockname()); peer, _ = far.accept()
park, unpark = socket.socketpair()
socket.send_fds(park, [b"x"], [conn.fileno()])
facts = {"local": conn.getsockname()[1], "far": far.getsockname()[1]}
conn.close()
slow = socket.socket(); slow.bind(("127.0.0.1", 0)); slow.listen()
client = socket.create_connection(slow.getsockname())
facts["queued"] = slow.getsockname()[1]; facts["client"] = client.getsockname()[1]
print(json.dumps(facts), flush=True)
sys.stdin.readline()
_, fds, _, _ = socket.recv_fds(unpark, 1, 1)
back = socket.socket(fileno=fds[0])
back.sendall(b"still-here"); assert peer.recv(10) == b"still-here"
open(sys.argv[1], "w").write("round trip")
sys.stdin.read()
"#;

fn ports(e: &Value) -> (Option<u64>, Option<u64>) {
    (e["source"]["port"].as_u64(), e["destination"]["port"].as_u64())
}

#[test]
fn a_connection_parked_in_flight_is_reported_and_a_queued_one_is_not() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let agent = Agent::start(&["--no-baseline"]);
    let dir = ScratchDir::new("unheld");
    let proof = dir.path.join("round-trip");
    let program =
        format!("{PRELUDE}\nsys.argv[1:] = [{:?}]\n{PARKED}", proof.display().to_string());
    let (mut holder, facts) = python_in(&Netns::host(), &program);
    let parked = (facts["local"].as_u64(), facts["far"].as_u64());
    let queued = (facts["queued"].as_u64(), facts["client"].as_u64());

    let event = agent.wait_for("socket_unheld for the parked connection", |e| {
        e["event"]["action"] == "socket_unheld" && ports(e) == parked
    });
    assert_eq!(event["sockwatch"]["socket"]["state"], "ESTABLISHED");
    assert_eq!(event["sockwatch"]["socket"]["direction"], "outbound", "{event:#}");
    assert_eq!(event["sockwatch"]["socket"]["holders"], serde_json::json!([]));

    // The connection was alive all along: taken back, it carries a round trip.
    holder.write_line("unpark");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proof.exists() {
        assert!(Instant::now() < deadline, "no round trip over the parked connection");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Held again: a few more scans, and still one report, none for the queued connection.
    std::thread::sleep(Duration::from_millis(1000));
    let events = agent.events();
    let unheld = |p| {
        events.iter().filter(|e| e["event"]["action"] == "socket_unheld" && ports(e) == p).count()
    };
    assert_eq!(unheld(parked), 1, "reported once");
    assert_eq!(unheld(queued), 0, "a connection in an accept queue is not news");
}
