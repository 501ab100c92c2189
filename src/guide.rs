//! The guide: how to use the crate, what it does on a bad day, and what it costs.
//!
//! Each page is a module of its own, with no items; its examples compile as doc tests.
//!
//! Getting started:
//!
//! - [Using it](basics): the dependency, the features, every single-key operation, server specs
//!   and expirations.
//! - [Multi-key operations](multi_key): `get_multi` and friends, their `_partial` forms,
//!   `get_multi_each`, prefixed views and `bulk_set`.
//! - [Threads](threads): `ClientPool` and `ThreadMappedPool`.
//! - [Async](asynch): `AsyncClient`, its worker threads and merged gets, and its benchmark.
//! - [Cache-aside](cache_aside): `get_or_set_with`, single-flight loads, the cluster-wide lock
//!   and stale values.
//! - [Testing your own code](testing): real memcached processes for your tests.
//!
//! Sharing a cache:
//!
//! - [Sharing a cache with Python](python): pylibmc's flags, compression.
//! - [Sharing a cache with PHP](php): php-memcached's flags, placement and sessions.
//! - [Coming from pylibmc](pylibmc): what it does better than pylibmc, and every pylibmc name
//!   and where it went.
//!
//! Servers:
//!
//! - [Running a cluster](cluster): distribution and weights, replicas, failover, timeouts and
//!   every behavior.
//! - [Scaling out](scaling_out): libmemcached's ring or a proxy, and every operation through
//!   twemproxy.
//! - [SASL](sasl), [Unix sockets and UDP](unix_sockets_and_udp) and
//!   [ElastiCache auto-discovery](elasticache).
//! - [TLS and the shield](tls): TLS to the servers, and replies checked before libmemcached
//!   reads them.
//!
//! Operating it:
//!
//! - [Metrics and tracing](metrics): the client's counters and its `tracing` events.
//! - [The `memc` command-line tool](memc): a client for scripts and operators.
//! - [Limits](limits): what the crate does not do.
//! - [Reliability](reliability): the fault matrix, what the crate trusts its servers for,
//!   fuzzing and leak checks.
//! - [Performance](performance): against raw libmemcached and the `memcache` crate, in
//!   operations per second and in instructions.
//! - [Building](building): libmemcached, documentation builds and the MSRV.
//!
//! # Examples
//!
//! Each uses the servers in `MEMCACHED_SERVERS`, or starts a memcached of its own when that is not
//! set (`failover`, `metrics`, `memcheck_workload` and the benchmarks always start their own),
//! prints what it shows and exits:
//!
//! | command | what it shows |
//! |---|---|
//! | `cargo run --example tour` | every single-key operation in both protocols, and what bad input does |
//! | `cargo run --example pool` | a `ClientPool` shared by eight threads; timed and non-blocking reserve; `ThreadMappedPool` |
//! | `cargo run --example failover` | three servers with `failover()`: one is killed under load, then restarted; prints the timeline |
//! | `cargo run --example python` | values written by Rust read by pylibmc and back (runs pylibmc if `/usr/bin/python3` has it) |
//! | `cargo run --release --example bulk_load` | one-by-one `set`, `set_multi` and `bulk_set`, timed |
//! | `cargo run --example metrics` | a pool's metrics in Prometheus' text format, with one of two servers killed half-way |
//! | `cargo run --release --example bench` | the benchmark behind [Performance](performance) |
//! | `cargo run --features async --example async_tokio` | `AsyncClient` in a tokio program: single calls, concurrent gets merged into multi-gets, a timeout around a call, the engine's counters |
//! | `cargo run --features async --example async_axum` | an axum service reading through the cache with `get_or_set_with`, which sends itself a few requests and exits |
//! | `cargo run --release --features async --example bench_async` | the benchmark behind [Async](asynch) |
//! | `cargo run --release --features async --example bench_async_bad_day` | `AsyncClient` with a blackholed server: healthy keys' latency, drop, callers giving up |
//! | `cargo run --release --features async --example bench_cache_aside` | the herd benchmark behind [Cache-aside](cache_aside) |
//! | `cargo run --example memcheck_workload` | a bit of everything the crate does, for `scripts/memcheck` to run under valgrind |

#[doc = include_str!("../guide/basics.md")]
pub mod basics {}

#[doc = include_str!("../guide/multi-key.md")]
pub mod multi_key {}

#[doc = include_str!("../guide/python.md")]
pub mod python {}

#[doc = include_str!("../guide/php.md")]
pub mod php {}

#[doc = include_str!("../guide/pylibmc.md")]
pub mod pylibmc {}

#[doc = include_str!("../guide/limits.md")]
pub mod limits {}

#[doc = include_str!("../guide/reliability.md")]
pub mod reliability {}

#[doc = include_str!("../guide/performance.md")]
pub mod performance {}

#[doc = include_str!("../guide/scaling-out.md")]
pub mod scaling_out {}

#[doc = include_str!("../guide/cluster.md")]
pub mod cluster {}

#[doc = include_str!("../guide/threads.md")]
pub mod threads {}

#[doc = include_str!("../guide/async.md")]
pub mod asynch {}

#[doc = include_str!("../guide/cache-aside.md")]
pub mod cache_aside {}

#[doc = include_str!("../guide/metrics.md")]
pub mod metrics {}

#[doc = include_str!("../guide/sasl.md")]
pub mod sasl {}

#[doc = include_str!("../guide/tls.md")]
pub mod tls {}

#[doc = include_str!("../guide/unix-sockets-and-udp.md")]
pub mod unix_sockets_and_udp {}

#[doc = include_str!("../guide/elasticache.md")]
pub mod elasticache {}

#[doc = include_str!("../guide/memc.md")]
pub mod memc {}

#[doc = include_str!("../guide/testing.md")]
pub mod testing {}

#[doc = include_str!("../guide/building.md")]
pub mod building {}
