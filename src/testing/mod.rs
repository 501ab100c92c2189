//! Real memcached processes for tests, yours and this crate's.
//!
//! [`Memcached`] starts a `memcached` (Debian's `memcached` package, or `$MEMCACHED_BIN`) on a
//! free loopback port or a unix socket, waits until it answers, and kills it on drop. It can be
//! stopped and restarted on the same address, for failure tests.
//!
//! [`TestServer`] is for tests that need any plain server: it uses `$MEMCACHED_SERVERS` (for
//! example a Docker container) when set, and starts a process otherwise. Tests sharing an
//! external server should use keys of their own and not flush it.
//!
//! [`FaultProxy`] sits between a client and a server and misbehaves on demand ([`Fault`]):
//! delays, timeouts, resets, cut and dripping replies, garbage, malformed answers to writes.
//!
//! [`Nutcracker`] starts a twemproxy (`nutcracker`) in front of memcached processes, for
//! tests of a client that talks to a proxy.
//!
//! [`MemcachedBuilder::tls`] starts a server that speaks TLS on its port (and plaintext on a
//! second one), with certificates from [`TlsFiles`]: a test CA, and server certificates good
//! and bad ([`ServerCert`]).
//!
//! [`MemcachedBuilder::sasl`] starts a server that requires SASL. [`make_test_client`],
//! [`is_alive`] and [`get_version`] are pylibmc's `pylibmc.test` helpers, for suites that run
//! against a server started outside the tests (`MEMCACHED_HOST`, `MEMCACHED_PORT`).
//!
//! The module needs the crate's `testing` feature, usually turned on for tests only:
//! `libmemcached = { version = "0.1", features = ["testing"] }` under `[dev-dependencies]`.
//!
//! ```
//! use libmemcached::{testing::Memcached, Client};
//!
//! let server = Memcached::start()?;
//! let mc = Client::new([server.spec()])?;
//! mc.set("k", "v", 0)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod nutcracker;
mod probe;
mod process;
mod proxy;
mod sasl;
mod server;
mod tls;

pub use client::{
    TestClientError, address_from_env, default_address, get_version, is_alive, make_test_client,
    make_test_client_with,
};
pub use nutcracker::{Nutcracker, NutcrackerBuilder};
pub use process::{Memcached, MemcachedBuilder, unused_port};
pub use proxy::{BadAnswer, Fault, FaultProxy, LONG_LINE_LEN};
pub use server::{TestServer, servers_from_env};
pub use tls::{ServerCert, TlsFiles};
