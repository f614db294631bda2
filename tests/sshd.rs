//! A real sshd on a loopback port of the test's own, with keys the test makes: ssh logins and
//! commands over ssh are look-alikes detection must leave alone, and the origin an alert names
//! when a shell descends from a login.

use crate::shells::free_port;
use crate::util::{KillOnDrop, ScratchDir};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An sshd on 127.0.0.1 with keys made by the test. Its sessions get `GIT_CONFIG_GLOBAL`
/// pointing at a config whose pack-objects hook waits, so that a clone stays in flight.
pub(crate) struct Sshd {
    dir: ScratchDir,
    server: KillOnDrop,
    pub(crate) port: u16,
}

impl Sshd {
    pub(crate) fn start() -> Sshd {
        let dir = ScratchDir::new("sshd");
        let path = |name: &str| dir.path.join(name).display().to_string();
        std::fs::create_dir_all("/run/sshd").unwrap();
        for key in ["host_key", "client_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f", &path(key)])
                .status()
                .unwrap();
            assert!(status.success(), "ssh-keygen");
        }
        std::fs::copy(path("client_key.pub"), path("authorized_keys")).unwrap();
        let hook = dir.path.join("slow-pack");
        std::fs::write(
            &hook,
            format!("#!/bin/sh\ntouch {}\nsleep 60\nexec \"$@\"\n", path("packing")),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let gitconfig = format!(
            "[uploadpack]\n\tpackObjectsHook = {}\n[safe]\n\tdirectory = *\n",
            hook.display()
        );
        std::fs::write(dir.path.join("gitconfig"), gitconfig).unwrap();
        let port = free_port();
        let server = KillOnDrop::new(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f", "/dev/null", "-p", &port.to_string()])
                .args(["-o", "ListenAddress=127.0.0.1", "-o", "StrictModes=no", "-o", "UsePAM=no"])
                .args(["-o", "PidFile=none", "-o", "PermitRootLogin=prohibit-password"])
                .args(["-o", &format!("HostKey={}", path("host_key"))])
                .args(["-o", &format!("AuthorizedKeysFile={}", path("authorized_keys"))])
                .args(["-o", &format!("SetEnv=GIT_CONFIG_GLOBAL={}", path("gitconfig"))])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start sshd"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { dir, server, port }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path.join(name)
    }

    /// The ssh client command line, up to the destination.
    pub(crate) fn ssh(&self) -> String {
        format!(
            "ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o BatchMode=yes -o LogLevel=ERROR",
            self.path("client_key").display(),
            self.port
        )
    }

    pub(crate) fn pid(&mut self) -> i32 {
        self.server.child().id() as i32
    }
}
