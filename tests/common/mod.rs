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

/// Test certificates (a CA, good and bad server certificates, a client certificate).
pub fn tls_files() -> libmemcached::testing::TlsFiles {
    libmemcached::testing::TlsFiles::generate().expect("certificates (install Debian's openssl)")
}

/// A memcached speaking TLS with `cert`, and plaintext on a second port.
pub fn tls_server(
    files: &libmemcached::testing::TlsFiles,
    cert: libmemcached::testing::ServerCert,
) -> Memcached {
    Memcached::builder()
        .tls(files, cert)
        .start()
        .expect("a TLS memcached starts (Debian's memcached has TLS)")
}

/// A client in the given protocol.
pub fn client(specs: &[String], binary: bool) -> Client {
    Client::builder()
        .servers(specs)
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

/// A fresh key base (see [`key`]) whose `n` keys `{base}:{i}` `mc` places at least `min` on
/// each of `servers`. libmemcached's default hash spreads keys that differ only in a short
/// suffix unevenly: 40 such keys leave one of three servers without a key for about one base
/// in seventy, so a test that needs keys on a given server picks its base.
pub fn spread_base(mc: &Client, tag: &str, n: usize, servers: &[String], min: usize) -> String {
    for _ in 0..1000 {
        let base = key(tag);
        let mut placed = vec![0; servers.len()];
        for i in 0..n {
            let server = mc
                .server_for_key(format!("{base}:{i}"))
                .unwrap()
                .to_string();
            if let Some(at) = servers.iter().position(|s| *s == server) {
                placed[at] += 1;
            }
        }
        if placed.iter().all(|&p| p >= min) {
            return base;
        }
    }
    panic!("no key base puts {min} of {n} keys on each of {servers:?}");
}

/// The `n` keys of [`spread_base`].
pub fn spread_keys(
    mc: &Client,
    tag: &str,
    n: usize,
    servers: &[String],
    min: usize,
) -> Vec<String> {
    let base = spread_base(mc, tag, n, servers, min);
    (0..n).map(|i| format!("{base}:{i}")).collect()
}

/// A listener on a loopback port that no test server of this process has been given (see
/// [`libmemcached::testing::unused_port`]).
pub fn listener() -> std::net::TcpListener {
    std::net::TcpListener::bind(("127.0.0.1", libmemcached::testing::unused_port().unwrap()))
        .unwrap()
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

/// Whether the test can run where it needs `what` (`present`). Where it cannot, a run under
/// `CI=true` fails instead of passing without having tested anything.
pub fn available(what: &str, present: bool) -> bool {
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this CI run lacks {what}: scripts/setup installs it"
        );
        eprintln!("skipped: no {what} here");
    }
    present
}
