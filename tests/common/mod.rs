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
