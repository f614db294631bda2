//! Exec notifications from the kernel's process connector, so a scan can follow an execve
//! instead of waiting for the next tick: a shell that lives less than the interval is seen.
//!
//! The connector needs CAP_NET_ADMIN, and it answers only processes in the initial user and pid
//! namespaces (in a container the request is ignored without a word, hence the wait for the
//! answer). Only the kernel's messages count: other processes can address the socket.

use super::parse::{CN_IDX_PROC, ProcEvent, proc_events, subscription_request};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_CONNECTOR};
use std::io;
use std::time::{Duration, Instant};

/// How long the kernel gets to answer the subscription.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// The longest a read waits, so that the reader can be stopped.
pub const READ_TIMEOUT: Duration = Duration::from_millis(200);

/// A subscription to the kernel's process events; dropping it unsubscribes.
pub struct ExecEvents {
    socket: Socket,
    buf: Vec<u8>,
}

/// What one read brought.
enum Received<'a> {
    /// The kernel's messages.
    Messages(&'a [u8]),
    /// The socket's buffer overflowed: events were lost.
    Lost,
    /// Nothing yet, or a message from another process.
    Nothing,
}

impl ExecEvents {
    /// Subscribes; fails with the kernel's refusal (EPERM without CAP_NET_ADMIN) or when no
    /// answer comes.
    pub fn subscribe() -> io::Result<ExecEvents> {
        let mut socket = Socket::new(NETLINK_CONNECTOR)?;
        socket.bind(&SocketAddr::new(0, CN_IDX_PROC))?;
        rustix::net::sockopt::set_socket_timeout(
            &socket,
            rustix::net::sockopt::Timeout::Recv,
            Some(READ_TIMEOUT),
        )?;
        // Answers are multicast to every listener: ours is the one carrying this tag.
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let tag = std::process::id() ^ clock.map_or(0, |d| d.subsec_nanos().rotate_left(16));
        socket.send_to(&subscription_request(true, tag), &SocketAddr::new(0, 0), 0)?;
        let mut events = ExecEvents { socket, buf: Vec::with_capacity(8192) };
        let deadline = Instant::now() + ANSWER_WITHIN;
        while Instant::now() < deadline {
            let Received::Messages(messages) = events.receive()? else { continue };
            let answer =
                proc_events(messages).map_while(Result::ok).find_map(|event| match event {
                    ProcEvent::Ack { errno, acknowledgement }
                        if acknowledgement == tag.wrapping_add(1) =>
                    {
                        Some(errno)
                    }
                    _ => None,
                });
            match answer {
                Some(0) => return Ok(events),
                Some(errno) => return Err(io::Error::from_raw_os_error(errno as i32)),
                None => {}
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the process connector did not answer (it ignores processes outside the initial \
             user and pid namespaces)",
        ))
    }

    /// Waits up to `READ_TIMEOUT` for the kernel's next messages; appends the processes that
    /// executed to `execs`. `Ok(true)`: events were lost, which may have hidden some.
    pub fn wait(&mut self, execs: &mut Vec<u32>) -> io::Result<bool> {
        self.receive().map(|received| Self::execs(received, execs))
    }

    fn execs(received: Received<'_>, execs: &mut Vec<u32>) -> bool {
        match received {
            Received::Lost => true,
            // A malformed message ends what can be read of the buffer.
            Received::Messages(messages) => {
                execs.extend(proc_events(messages).map_while(Result::ok).filter_map(|e| match e {
                    ProcEvent::Exec { tgid } => Some(tgid),
                    _ => None,
                }));
                false
            }
            Received::Nothing => false,
        }
    }

    fn receive(&mut self) -> io::Result<Received<'_>> {
        self.buf.clear();
        match self.socket.recv_from(&mut self.buf, 0) {
            Ok((_, sender)) if sender.port_number() != 0 => Ok(Received::Nothing),
            Ok(_) => Ok(Received::Messages(&self.buf)),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(Received::Lost),
            Err(e)
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) =>
            {
                Ok(Received::Nothing)
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for ExecEvents {
    fn drop(&mut self) {
        let _ = self.socket.send_to(&subscription_request(false, 0), &SocketAddr::new(0, 0), 0);
    }
}
