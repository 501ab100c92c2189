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
/// `linux/inet_diag.h`: no socket cookie to match.
const NO_COOKIE: u32 = !0;
/// Every TCP state.
const ALL_STATES: u32 = !0;
/// The request: a netlink header (16 bytes) and an `inet_diag_req_v2` (56 bytes).
const REQUEST_LEN: usize = 16 + 56;
/// Where the owner's uid is in the answer: after the netlink header (16 bytes), the
/// `inet_diag_msg`'s family, state, timer and retransmits (4), its socket id (48), and its
/// expiry and queue sizes (12).
const UID_AT: usize = 16 + 4 + 48 + 12;
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

/// The user owning the TCP socket whose own address is `local` and whose peer is `remote`,
/// or `None` if the kernel does not say (no such socket, or netlink not available here).
pub(crate) fn tcp_owner(local: SocketAddrV4, remote: SocketAddrV4) -> Option<u32> {
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
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let wait = libc::timeval {
            tv_sec: 0,
            tv_usec: ANSWER_WAIT_US,
        };
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
            return None;
        }
        libc::recv(fd.as_raw_fd(), answer.as_mut_ptr().cast(), answer.len(), 0)
    };
    let answer = answer.get(..usize::try_from(received).ok()?)?;
    owner_in(answer)
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

/// The uid in the kernel's answer, if it describes a socket (not an error).
fn owner_in(answer: &[u8]) -> Option<u32> {
    let kind = u16::from_ne_bytes(answer.get(4..6)?.try_into().ok()?);
    if kind != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    let uid = answer.get(UID_AT..UID_AT + 4)?;
    Some(u32::from_ne_bytes(uid.try_into().ok()?))
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
        assert_eq!(tcp_owner(v4(peer), local), Some(me));
        assert_eq!(tcp_owner(local, v4(peer)), Some(me));
        // No socket with these addresses: no owner.
        let nobody = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        assert_eq!(tcp_owner(nobody, local), None);
        drop(client);
    }
}
