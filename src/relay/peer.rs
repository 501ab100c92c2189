//! Who is connecting to a relay listener.

use std::net::SocketAddr;

/// Whether the process at the other end of a loopback connection runs as this process's
/// user, as a 0700 directory around a unix socket would ensure. Linux lists every TCP socket
/// with its owner in `/proc/net/tcp`; where that cannot be read the answer is no.
pub(super) fn same_user(peer: SocketAddr) -> bool {
    let SocketAddr::V4(peer) = peer else {
        return false;
    };
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    // The kernel writes the address as the hex of its bytes in memory order.
    let wanted = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(peer.ip().octets()),
        peer.port()
    );
    let me = crate::ffi::effective_uid();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&wanted.as_str())
            && fields.get(7).and_then(|uid| uid.parse::<u32>().ok()) == Some(me)
    })
}
