//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use libmemcached::Client;
use libmemcached::testing::{Memcached, TestServer};

/// A plain server: `$MEMCACHED_SERVERS` or a process of this test's own.
pub fn server() -> TestServer {
    TestServer::from_env_or_spawn().expect("a memcached server (install Debian's memcached)")
}

/// A memcached process of this test's own (for tests that flush, stop or restart it).
pub fn own_server() -> Memcached {
    Memcached::start().expect("memcached starts (install Debian's memcached)")
}

/// A client in the given protocol.
pub fn client(specs: &[String], binary: bool) -> Client {
    Client::builder()
        .servers(specs)
        .unwrap()
        .binary(binary)
        .build()
        .unwrap()
}

/// One ASCII and one binary client for the same servers.
pub fn both_protocols(specs: &[String]) -> [(&'static str, Client); 2] {
    [
        ("ascii", client(specs, false)),
        ("binary", client(specs, true)),
    ]
}

/// A key no other test (or earlier run against a shared server) uses.
pub fn key(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t:{}:{nanos}:{}:{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A value as stored on a TCP server, read with a raw ASCII `get`: its flags and exact bytes,
/// before any decoding or inflating.
pub fn raw_get(spec: &str, key: &str) -> Option<(u32, Vec<u8>)> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = std::net::TcpStream::connect(spec).unwrap();
    stream
        .write_all(format!("get {key}\r\n").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header).unwrap();
    if header == "END\r\n" {
        return None;
    }
    let fields: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(fields[0], "VALUE", "unexpected reply {header:?}");
    let flags = fields[2].parse().unwrap();
    let len: usize = fields[3].parse().unwrap();
    let mut data = vec![0; len + 2];
    reader.read_exact(&mut data).unwrap();
    data.truncate(len);
    Some((flags, data))
}

/// Stores raw bytes with raw flags through a plain ASCII `set`, as another client would.
pub fn raw_set(spec: &str, key: &str, flags: u32, data: &[u8]) {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(spec).unwrap();
    let mut request = format!("set {key} {flags} 0 {}\r\n", data.len()).into_bytes();
    request.extend_from_slice(data);
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).unwrap();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    assert_eq!(reply, "STORED\r\n");
}
