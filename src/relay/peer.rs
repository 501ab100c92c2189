//! Who is connecting to a relay listener.

use std::net::{SocketAddr, SocketAddrV4};

/// Whether the process at the other end of a loopback connection (from `peer` to the
/// listener's `local` address) runs as this process's user, as a 0700 directory around a unix
/// socket would ensure. Linux says who owns each TCP socket: asked by netlink for this one
/// socket, or else found in `/proc/net/tcp`; where neither answers, the answer is no.
pub(super) fn same_user(peer: SocketAddr, local: SocketAddr) -> bool {
    let (SocketAddr::V4(peer), SocketAddr::V4(local)) = (peer, local) else {
        return false;
    };
    let me = crate::ffi::effective_uid();
    #[cfg(target_os = "linux")]
    match crate::ffi::tcp_owner(peer, local) {
        crate::ffi::Owner::User(owner) => return owner == me,
        crate::ffi::Owner::None => return false,
        crate::ffi::Owner::Unknown => {}
    }
    listed_owner(peer, local) == Some(me)
}

/// The owner of the connection from `peer` to `local` that is up, as `/proc/net/tcp` lists it
/// (every TCP socket of the host, one per line). Matching both ends and the state matters:
/// connections to different places may share a local port, and closed ones linger in
/// TIME_WAIT with user 0.
fn listed_owner(peer: SocketAddrV4, local: SocketAddrV4) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    // The kernel writes an address as the hex of its bytes in memory order.
    let hex = |a: SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        )
    };
    let (own, other) = (hex(peer), hex(local));
    const ESTABLISHED: &str = "01";
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.get(1..4) == Some(&[own.as_str(), other.as_str(), ESTABLISHED]) {
            true => fields.get(7)?.parse().ok(),
            false => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    #[test]
    fn a_connection_of_this_process_is_this_users() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let local = accepted.local_addr().unwrap();
        assert!(same_user(peer, local));
        let (SocketAddr::V4(peer), SocketAddr::V4(local)) = (peer, local) else {
            unreachable!()
        };
        assert_eq!(listed_owner(peer, local), Some(crate::ffi::effective_uid()));
        let nobody = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
        assert!(!same_user(nobody, SocketAddr::V4(local)));
    }

    /// A connection from a process of another user (`nobody`, when the tests run as root, as
    /// in CI) is refused; from a child process of this user, carried on.
    #[test]
    fn a_connection_of_another_user_is_not() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let as_root = crate::ffi::effective_uid() == 0;
        let switch = if as_root {
            "os.setgid(65534); os.setuid(65534); "
        } else {
            ""
        };
        let script = format!(
            "import os, socket, sys; {switch}s = socket.create_connection(('127.0.0.1', {port})); \
             sys.stdin.read()"
        );
        let mut child = std::process::Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .current_dir("/")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 runs (scripts/setup installs it)");
        listener.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let (accepted, peer) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(_) if std::time::Instant::now() < deadline => {
                    let exited = child.try_wait().unwrap();
                    assert!(exited.is_none(), "the child did not connect: {exited:?}");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(error) => panic!("no connection from the child: {error}"),
            }
        };
        let local = accepted.local_addr().unwrap();
        assert_eq!(same_user(peer, local), !as_root);
        if let (SocketAddr::V4(peer), SocketAddr::V4(local)) = (peer, local) {
            let owner = if as_root {
                65534
            } else {
                crate::ffi::effective_uid()
            };
            assert_eq!(listed_owner(peer, local), Some(owner));
        }
        drop(child.stdin.take());
        child.wait().unwrap();
    }
}
