//! A fast, safe memcached client on top of the libmemcached C library, compatible with
//! Python's pylibmc.
//!
//! ```
//! use libmemcached::Client;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//! #   // The test runs against a memcached of its own; the reader's code names a server.
//! #   let server = libmemcached::testing::TestServer::from_env_or_spawn()?;
//! #   let servers = [server.spec()];
//! #   /*
//!     let servers = ["127.0.0.1:11211"];
//! #   */
//!     let mc = Client::new(servers)?;
//!     mc.set("greeting", "hello", 3600)?;              // expires in an hour
//!     let s: Option<String> = mc.get("greeting")?;
//!     assert_eq!(s.as_deref(), Some("hello"));
//!
//!     assert!(!mc.add("greeting", "again", 0)?);       // false: already there
//!     let (_, token) = mc.gets::<String>("greeting")?.unwrap();
//!     assert!(mc.cas("greeting", "bye", token, 0)?);
//!
//!     mc.set("hits", 41u64, 0)?;
//!     assert_eq!(mc.incr("hits", 1)?, 42);
//!     assert!(mc.incr("no-such-counter", 1).unwrap_err().is_not_found());
//!     assert!(mc.delete("greeting")?);
//!     Ok(())
//! }
//! ```
//!
//! libmemcached does the work: consistent hashing, weights, failover, the ASCII and binary
//! protocols. This crate checks every input before it reaches C, maps every return code to an
//! [`Error`], and reads and writes values with pylibmc's flags (see [`value`]) or, for a cache
//! shared with PHP, php-memcached's ([`ValueFormat::Php`], see [`php`]).
//!
//! - [`Client`]: one connection set; `Send`, not `Sync`. Clone it for another thread, or share
//!   a [`ClientPool`] or [`ThreadMappedPool`].
//! - [`ClientBuilder`]: servers, protocol and [`Behavior`]s (typed, or by pylibmc name with
//!   [`Behavior::from_name`]); [`ClientBuilder::failover`] for clusters that route around a
//!   failed server.
//! - Multi-key operations ([`Client::get_multi`], [`Client::set_multi`], ...,
//!   [`Client::bulk_set`]) and [`Client::prefixed`] views; a failed server is an
//!   [`Error::Multi`] naming its keys, never a silently short result.
//! - Values: [`ToValue`]/[`FromValue`], [`Value`], zlib [`Compression`], and `Json<T>` with the
//!   `serde` feature, in pylibmc's format or php-memcached's ([`ValueFormat`]).
//! - [`Expiration`]: seconds, [`Duration`](std::time::Duration)s and
//!   [`SystemTime`](std::time::SystemTime)s, meaning what they say past 30 days.
//! - [`Client::get_or_set_with`]: cache-aside, concurrent misses of a key sharing one load
//!   ([`Loaded`], [`LoadError`]).
//! - [`Client::stats`]: every stat line of every server.
//! - [`Client::metrics`]: the client's own counters ([`Metrics`]: operations, hits, misses,
//!   bytes, errors by [`ErrorKind`] and by server), summed by the pools; with the `tracing`
//!   feature, events and spans through `tracing` (never values or credentials, keys only at the
//!   trace level).
#![cfg_attr(
    feature = "testing",
    doc = "- [`testing`]: real memcached processes for tests."
)]
#![cfg_attr(
    not(feature = "testing"),
    doc = "- `testing`, with the `testing` feature: real memcached processes for tests."
)]
#![cfg_attr(
    feature = "async",
    doc = "- [`AsyncClient`] (feature `async`): async calls served by worker threads, with no \
           runtime of its own; concurrent gets are merged into multi-gets."
)]
#![cfg_attr(
    not(feature = "async"),
    doc = "- `AsyncClient`, with the `async` feature: async calls served by worker threads, with \
           no runtime of its own; concurrent gets are merged into multi-gets."
)]
//! - [`ClientBuilder::sasl`] for SASL, unix socket (`/path`) and UDP (`udp:host:port`) servers
//!   (see [`Client`] for what UDP can do), and [`elasticache`] auto-discovery.
//! - With the `shield` feature, `ClientBuilder::shield`: replies are checked before
//!   libmemcached reads them, so no server reply can crash the process; with `tls`,
//!   `ClientBuilder::tls` and `Tls`: TLS to the servers, with rustls ([TLS and the
//!   shield](guide::tls)).
//!
//! The [`guide`] is the manual: [using it](guide::basics), [multi-key operations](guide::multi_key),
//! sharing a cache with [Python](guide::python) and [PHP](guide::php),
//! [coming from pylibmc](guide::pylibmc), [running a cluster](guide::cluster),
//! [async](guide::asynch), [cache-aside](guide::cache_aside), [reliability](guide::reliability),
//! [performance](guide::performance) and more.

#![deny(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(rust_2018_idioms)]

#[cfg(feature = "async")]
mod asynch;
mod behavior;
mod builder;
mod cache_aside;
mod client;
mod compression;
pub mod elasticache;
mod error;
mod expiration;
mod ffi;
mod format;
pub mod guide;
#[cfg(feature = "serde")]
mod json;
mod key;
mod keyspace;
mod metrics;
mod observe;
pub mod php;
mod pool;
#[cfg(feature = "shield")]
mod relay;
mod sasl;
#[cfg(feature = "shield")]
mod shield;
/// The shield's fuzz check, for `fuzz/`: only in `cargo fuzz` builds, not part of the API.
#[cfg(all(fuzzing, feature = "shield"))]
#[doc(hidden)]
pub use shield::fuzz_check as fuzz_shield;
mod server;
mod stats;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod trace;
pub mod value;

#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use asynch::{
    AsyncCall, AsyncClient, AsyncClientBuilder, AsyncCommands, AsyncPrefixed, DEFAULT_MAX_BATCH,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_SPIN, DEFAULT_WORKERS, EngineStats, ShutdownReport,
    ShuttingDown,
};
pub use behavior::{
    Behavior, BehaviorInfo, BehaviorValue, Distribution, Hash, all_behaviors, distributions,
    hashers,
};
pub use builder::ClientBuilder;
pub use cache_aside::{CacheAside, LoadError, Loaded, Source};
pub use client::Client;
pub use compression::{Compressed, Compression, DEFAULT_MAX_INFLATED_LEN};
pub use error::{
    BoxError, ConfigError, Error, ErrorKind, InvalidKeyReason, KeyFailure, Result, ReturnCode,
    SharedError,
};
pub use expiration::Expiration;
pub use format::ValueFormat;
#[cfg(feature = "serde")]
pub use json::Json;
pub use key::MAX_KEY_LEN;

/// The most servers a consistent distribution (the ketama family) takes: libmemcached 1.1 aborts
/// the process beyond it, so the crate refuses more with an [`Error::InvalidConfig`].
pub const MAX_CONSISTENT_SERVERS: usize = ffi::MAX_CONSISTENT_SERVERS;
pub use keyspace::{Commands, Fetched, Partial, Prefixed};
pub use metrics::{ErrorCounts, Metrics, ServerMetrics};
pub use pool::{ClientPool, MAX_POOL_SIZE, PooledClient, ThreadClient, ThreadMappedPool};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use relay::tls::Tls;
pub use server::{Address, DEFAULT_PORT, ServerSpec, Transport};
pub use stats::ServerStats;
pub use value::{Encoded, FromValue, ToValue, Value};

/// README's examples, one of them TLS's.
#[cfg(all(doctest, feature = "tls"))]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

/// Whether the libmemcached this crate was built against supports SASL authentication.
pub fn support_sasl() -> bool {
    ffi::SASL_SUPPORT
}

/// Whether values can be compressed: always, because this crate compresses them itself, with
/// zlib as pylibmc does (see [`Compression`]); libmemcached's own compression is not used.
pub fn support_compression() -> bool {
    true
}

/// This crate's and libmemcached's versions and features, in pylibmc's `build_info` form:
/// `libmemcached-rs 0.1.0 for libmemcached 1.1.4 (compression=true, sasl=true)`.
pub fn build_info() -> String {
    format!(
        "libmemcached-rs {} for libmemcached {} (compression={}, sasl={})",
        env!("CARGO_PKG_VERSION"),
        libmemcached_version(),
        support_compression(),
        support_sasl()
    )
}

/// The libmemcached version this crate was built against (from its headers).
pub fn libmemcached_build_version() -> &'static str {
    env!("LIBMEMCACHED_BUILD_VERSION")
}

/// The version of the libmemcached library in use, such as `"1.1.4"`.
pub fn libmemcached_version() -> &'static str {
    ffi::library_version()
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_metadata_matches_the_library() {
        assert_eq!(
            super::libmemcached_build_version(),
            super::libmemcached_version()
        );
        assert!(super::libmemcached_version().starts_with("1.1"));
        assert_eq!(super::support_sasl(), cfg!(libmemcached_sasl));
    }

    #[test]
    fn build_info_names_both_versions_and_features() {
        let info = super::build_info();
        assert!(
            info.starts_with(&format!(
                "libmemcached-rs {} for libmemcached {} (",
                env!("CARGO_PKG_VERSION"),
                super::libmemcached_version()
            )),
            "{info}"
        );
        assert!(info.contains("compression=true"), "{info}");
        assert!(
            info.ends_with(&format!("sasl={})", super::support_sasl())),
            "{info}"
        );
    }
}
