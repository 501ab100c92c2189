//! One-shot connections that ask a server one ASCII command, over TCP, UDP or a unix socket.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long one probe of a server may take.
pub(super) const PROBE: Duration = Duration::from_secs(2);

/// Sends one ASCII command in a UDP datagram (with memcached's 8-byte frame header) and returns
/// the reply's first datagram, without its header.
pub(super) fn ask_udp(addr: &str, command: &str) -> io::Result<String> {
    use std::net::{ToSocketAddrs, UdpSocket};
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(target)?;
    socket.set_read_timeout(Some(PROBE))?;
    // Request id, sequence number 0, one datagram, reserved.
    let mut request = vec![0x52, 0x53, 0, 0, 0, 1, 0, 0];
    request.extend_from_slice(format!("{command}\r\n").as_bytes());
    socket.send(&request)?;
    let mut reply = [0u8; 1500];
    let len = socket.recv(&mut reply)?;
    if len < 8 || reply[..2] != request[..2] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a memcached UDP reply",
        ));
    }
    Ok(String::from_utf8_lossy(&reply[8..len]).into_owned())
}

pub(super) fn connect_tcp(addr: &str) -> io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
    let stream = TcpStream::connect_timeout(&addr, PROBE)?;
    stream.set_read_timeout(Some(PROBE))?;
    stream.set_write_timeout(Some(PROBE))?;
    Ok(stream)
}

pub(super) fn connect_unix(path: &Path) -> io::Result<UnixStream> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(PROBE))?;
    stream.set_write_timeout(Some(PROBE))?;
    Ok(stream)
}

/// Sends one ASCII command and reads lines up to `last` (or one line when `last` is empty).
pub(super) fn ask<S: Read + Write>(mut stream: S, command: &str, last: &str) -> io::Result<String> {
    stream.write_all(format!("{command}\r\n").as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let done = last.is_empty() || line.trim_end() == last;
        reply.push_str(&line);
        if done {
            return Ok(reply);
        }
    }
}
