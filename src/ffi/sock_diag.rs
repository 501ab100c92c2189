//! Who owns a loopback TCP socket, asked of the Linux kernel by netlink (`sock_diag`).
//!
//! An exact lookup by the connection's four addresses costs the same however many sockets the
//! host has, where `/proc/net/tcp` lists every one of them (tens of thousands on a busy host,
//! or after many short connections in `TIME_WAIT`).

use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `linux/sock_diag.h`: the request and answer type of a socket lookup.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `linux/netlink.h`: a request (no dump: one socket, found by its addresses).
const NLM_F_REQUEST: u16 = 1;
/// `linux/netlink.h`: an error answer (here: no such socket).
const NLMSG_ERROR: u16 = 2;
/// `linux/tcp_states.h`: a connection that is up (not closing, not in TIME_WAIT).
const TCP_ESTABLISHED: u8 = 1;
/// `linux/inet_diag.h`: no socket cookie to match.
const NO_COOKIE: u32 = !0;
/// Every TCP state.
const ALL_STATES: u32 = !0;
/// The request: a netlink header (16 bytes) and an `inet_diag_req_v2` (56 bytes).
const REQUEST_LEN: usize = 16 + 56;
/// Where the socket's state is in the answer: after the netlink header (16 bytes) and the
/// `inet_diag_msg`'s family.
const STATE_AT: usize = 16 + 1;
/// Where the owner's uid is in the answer: after the netlink header (16 bytes), the
/// `inet_diag_msg`'s family, state, timer and retransmits (4), its socket id (48), and its
/// expiry and queue sizes (12); its inode follows.
const UID_AT: usize = 16 + 4 + 48 + 12;
/// Where the socket's inode is in the answer: 0 for a socket kept only until it is gone.
const INODE_AT: usize = UID_AT + 4;
/// How long to wait for the kernel's answer: it answers at once, or not at all.
const ANSWER_WAIT_US: libc::suseconds_t = 100_000;

/// `struct sockaddr_nl`: the kernel's netlink address.
#[repr(C)]
struct KernelAddress {
    family: libc::sa_family_t,
    pad: u16,
    pid: u32,
    groups: u32,
}

/// What the kernel says of a TCP socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A connection that is up, owned by this user id.
    User(u32),
    /// No such connection that is up: none at all, or one closing or closed, which the kernel
    /// keeps without an owner (it reports user 0 for those).
    None,
    /// The kernel did not answer (netlink not available here).
    Unknown,
}

/// Who owns the connected TCP socket whose own address is `local` and whose peer is `remote`.
pub(crate) fn tcp_owner(local: SocketAddrV4, remote: SocketAddrV4) -> Owner {
    let request = request(local, remote);
    let mut answer = [0u8; 512];
    // SAFETY: plain system calls on a descriptor this function owns (closed by `OwnedFd`);
    // each pointer and length describes a live local buffer or struct of that size.
    let received = unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            4, // NETLINK_SOCK_DIAG
        );
        if fd < 0 {
            return Owner::Unknown;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let wait = libc::timeval {
            tv_sec: 0,
            tv_usec: ANSWER_WAIT_US,
        };
        // Without the timeout the kernel still answers at once, within `sendto`.
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&wait as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        let kernel = KernelAddress {
            family: libc::AF_NETLINK as libc::sa_family_t,
            pad: 0,
            pid: 0,
            groups: 0,
        };
        let sent = libc::sendto(
            fd.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&kernel as *const KernelAddress).cast(),
            std::mem::size_of::<KernelAddress>() as libc::socklen_t,
        );
        if sent != request.len() as isize {
            return Owner::Unknown;
        }
        libc::recv(fd.as_raw_fd(), answer.as_mut_ptr().cast(), answer.len(), 0)
    };
    match usize::try_from(received) {
        Ok(len) => owner_in(&answer[..len.min(answer.len())]),
        Err(_) => Owner::Unknown,
    }
}

/// The netlink message asking for one IPv4 TCP socket by its addresses.
fn request(local: SocketAddrV4, remote: SocketAddrV4) -> [u8; REQUEST_LEN] {
    let mut message = [0u8; REQUEST_LEN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        message[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    // nlmsghdr: length, type, flags, sequence, port id.
    put(&(REQUEST_LEN as u32).to_ne_bytes());
    put(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    put(&NLM_F_REQUEST.to_ne_bytes());
    put(&1u32.to_ne_bytes());
    put(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, extensions, padding, states.
    put(&[libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    put(&ALL_STATES.to_ne_bytes());
    // inet_diag_sockid: ports and addresses in network order, interface, cookie.
    put(&local.port().to_be_bytes());
    put(&remote.port().to_be_bytes());
    put(&local.ip().octets());
    put(&[0; 12]);
    put(&remote.ip().octets());
    put(&[0; 12]);
    put(&0u32.to_ne_bytes());
    put(&NO_COOKIE.to_ne_bytes());
    put(&NO_COOKIE.to_ne_bytes());
    debug_assert_eq!(at, REQUEST_LEN);
    message
}

/// What the kernel's answer says.
fn owner_in(answer: &[u8]) -> Owner {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(answer.get(at..at + 4)?.try_into().ok()?))
    };
    let kind = answer.get(4..6).map(|k| u16::from_ne_bytes([k[0], k[1]]));
    match kind {
        // ENOENT: no socket has these addresses.
        Some(NLMSG_ERROR) => Owner::None,
        Some(SOCK_DIAG_BY_FAMILY) => {
            let (Some(&state), Some(uid), Some(inode)) =
                (answer.get(STATE_AT), word(UID_AT), word(INODE_AT))
            else {
                return Owner::Unknown;
            };
            match state == TCP_ESTABLISHED && inode != 0 {
                true => Owner::User(uid),
                false => Owner::None,
            }
        }
        _ => Owner::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    fn v4(addr: std::net::SocketAddr) -> SocketAddrV4 {
        match addr {
            std::net::SocketAddr::V4(addr) => addr,
            std::net::SocketAddr::V6(_) => panic!("IPv4 only"),
        }
    }

    #[test]
    fn the_kernel_names_the_owner_of_a_loopback_connection() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let local = v4(accepted.local_addr().unwrap());
        let me = super::super::effective_uid();
        // Both ends of the connection are this process's.
        assert_eq!(tcp_owner(v4(peer), local), Owner::User(me));
        assert_eq!(tcp_owner(local, v4(peer)), Owner::User(me));
        // No socket with these addresses: no owner.
        let nobody = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        assert_eq!(tcp_owner(nobody, local), Owner::None);
        // A client that closed before it was accepted owns nothing any more.
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(tcp_owner(v4(peer), local), Owner::None);
    }
}
