//! The behavior table: one row per behavior, and what is generated from it.

use std::time::Duration;

use libmemcached_sys as sys;

use super::distribution::Distribution;
use super::hash::Hash;
use super::kind::{self, Kind, RawText};
use super::value::BehaviorValue;
use crate::error::Result;

/// Generates from the table of behaviors below:
///
/// - the `Behavior` enum, a variant per row with the row's doc;
/// - `Id`, the same variants without values, in row order, and `Behavior::id`;
/// - `BEHAVIORS`, the `BehaviorInfo` of every row in row order (`Id::info` indexes it);
/// - `Id::parse`, a behavior from a raw value given by name, and `Id::show`, a raw value read
///   from libmemcached as a `BehaviorValue`, both by the row's kind (see [`Kind`]).
///
/// A row is `Variant(type): Kind = "name", MEMCACHED_BEHAVIOR_FLAG, default "raw"`, then
/// `(libmemcached "raw")` where libmemcached's default differs, then `pylibmc` (pylibmc has
/// the behavior, under this name) or `extra`, then the [`Stage`] where it is not `Normal`.
/// The compiler checks that the variant's type is its kind's [`Kind::Value`].
macro_rules! behaviors {
    (@libmemcached $default:literal) => { $default };
    (@libmemcached $libmemcached:literal $default:literal) => { $libmemcached };
    (@pylibmc pylibmc) => { true };
    (@pylibmc extra) => { false };
    (@stage) => { Stage::Normal };
    (@stage $stage:ident) => { Stage::$stage };
    (
        $(#[$meta:meta])*
        pub enum Behavior {
            $(
                $(#[doc = $doc:literal])*
                $variant:ident($type:ty): $kind:ident = $name:literal, $flag:ident,
                    default $default:literal $((libmemcached $libmemcached:literal))?,
                    $origin:ident $(, $stage:ident)?;
            )+
        }
    ) => {
        $(#[$meta])*
        pub enum Behavior {
            $(
                $(#[doc = $doc])*
                $variant($type),
            )+
        }

        /// A behavior without its value: its row of the table (ordered as the rows).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub(super) enum Id {
            $($variant,)+
        }

        const BEHAVIORS: &[BehaviorInfo] = &[$(
            BehaviorInfo {
                id: Id::$variant,
                name: $name,
                flag: sys::$flag,
                value_type: <kind::$kind as Kind>::TYPE,
                unit: <kind::$kind as Kind>::UNIT,
                default: $default,
                libmemcached_default: behaviors!(@libmemcached $($libmemcached)? $default),
                pylibmc: behaviors!(@pylibmc $origin),
                stage: behaviors!(@stage $($stage)?),
            },
        )+];

        impl Behavior {
            pub(super) fn id(&self) -> Id {
                match self {
                    $(Self::$variant(_) => Id::$variant,)+
                }
            }
        }

        impl Id {
            /// The behavior from a raw value given by name, parsed as its kind says.
            pub(super) fn parse(self, text: &RawText<'_>) -> Result<Behavior> {
                Ok(match self {
                    $(Self::$variant => {
                        Behavior::$variant(<kind::$kind as Kind>::parse(text)?)
                    })+
                })
            }

            /// A raw value read from libmemcached, shown as its kind says.
            pub(super) fn show(self, raw: u64) -> BehaviorValue {
                match self {
                    $(Self::$variant => <kind::$kind as Kind>::show(raw),)+
                }
            }
        }
    };
}

// Rows in pylibmc's order (its `all_behaviors`), then the extras: the order of
// `all_behaviors()`, of `Client::behaviors()` and of named behaviors applied together.
behaviors! {
    /// A libmemcached behavior with a typed value.
    ///
    /// Timeouts are [`Duration`]s, converted (rounded up) to the unit libmemcached uses for each:
    /// milliseconds for connect and poll, seconds for retry, dead and TCP keepidle, microseconds
    /// for send and receive. Of the timeouts, [`ConnectTimeout`](Behavior::ConnectTimeout),
    /// [`PollTimeout`](Behavior::PollTimeout), [`RetryTimeout`](Behavior::RetryTimeout) and
    /// [`DeadTimeout`](Behavior::DeadTimeout) act; [`SendTimeout`](Behavior::SendTimeout) and
    /// [`ReceiveTimeout`](Behavior::ReceiveTimeout) do not (libmemcached's sockets are
    /// non-blocking, so the poll timeout bounds every wait).
    ///
    /// [`all_behaviors`] lists every behavior with its pylibmc name, unit and default, and
    /// [`Behavior::from_name`] takes pylibmc's names and raw values.
    ///
    /// Every behavior libmemcached 1.1 has that is safe to use is a variant. The protocol is
    /// [`ClientBuilder::binary`](crate::ClientBuilder::binary). The rest are refused with an
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) that says why, never passed on:
    /// Debian's libmemcached is built with `assert()` on, so a wrong value there aborts the
    /// process.
    ///
    /// | refused | why |
    /// |---|---|
    /// | `buffer_requests` | aborts the process under load (an assertion in libmemcached's I/O) |
    /// | `auto_eject` | deprecated alias of `remove_failed`; use that name |
    /// | `use_udp` | set by `udp:host:port` server specs |
    /// | `cache_lookups`, `user_data`, `cork` | deprecated; libmemcached ignores them |
    /// | `load_from_file` | not settable; use [`Client::from_config`](crate::Client::from_config) |
    /// | `pickle_protocol` | pylibmc's own (a Python pickle setting); meaningless in Rust |
    /// | `namespace` | a callback, not a behavior; use [`ClientBuilder::namespace`](crate::ClientBuilder::namespace) |
    /// | distribution `virtual bucket` | needs a bucket table first; dangerous without one |
    /// | hash `hsieh` (Debian), `custom` | not compiled in / not a behavior value |
    /// | `verify_keys` in binary, `_noreply` in binary | VERIFY_KEY is ASCII-only; binary NOREPLY loses errors and desynchronises the connection |
    /// | `num_replicas` in ASCII | only the binary protocol writes and reads replicas |
    /// | `remove_failed` without a consistent distribution and a dead timeout | never reroutes; with no dead timeout the server stays dead forever |
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum Behavior {
        /// `no_block`: close connections with a reset (`SO_LINGER {1, 0}`). It does not make I/O
        /// non-blocking: libmemcached 1.1 always is.
        NoBlock(bool): Bool = "no_block", MEMCACHED_BEHAVIOR_NO_BLOCK, default "0", pylibmc;
        /// `tcp_nodelay`. **On by default in this crate** (off in libmemcached): without it a
        /// binary multi-get of missing keys stalls about 40 ms on delayed ACKs.
        TcpNoDelay(bool): Bool = "tcp_nodelay", MEMCACHED_BEHAVIOR_TCP_NODELAY,
            default "1" (libmemcached "0"), pylibmc;
        /// `tcp_keepalive`: `SO_KEEPALIVE` on connections.
        TcpKeepalive(bool): Bool = "tcp_keepalive", MEMCACHED_BEHAVIOR_TCP_KEEPALIVE,
            default "0", pylibmc;
        /// `hash`: the key hash (default [`Hash::Default`], one-at-a-time).
        Hash(Hash): Hash = "hash", MEMCACHED_BEHAVIOR_HASH, default "default", pylibmc, Routing;
        /// `ketama_hash`: the hash that places servers on the consistent-hashing ring.
        KetamaHash(Hash): Hash = "ketama_hash", MEMCACHED_BEHAVIOR_KETAMA_HASH,
            default "default", pylibmc, Routing;
        /// `ketama`: `true` is [`Distribution::ConsistentKetama`], `false` is
        /// [`Distribution::Modula`]. It does not change the key hash, whatever libmemcached's docs
        /// say.
        Ketama(bool): Bool = "ketama", MEMCACHED_BEHAVIOR_KETAMA, default "0", pylibmc, Routing;
        /// `ketama_weighted`: `true` is [`Distribution::ConsistentWeighted`] and also switches both
        /// hashes to MD5 (an explicit [`Behavior::Hash`] applied after it wins). `false` is plain
        /// ketama, not modula.
        KetamaWeighted(bool): Bool = "ketama_weighted", MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED,
            default "0", pylibmc, Routing;
        /// `distribution`: how keys are spread over servers (default [`Distribution::Modula`]).
        Distribution(Distribution): Distribution = "distribution", MEMCACHED_BEHAVIOR_DISTRIBUTION,
            default "modula", pylibmc, Routing;
        /// `cas`: ask for CAS tokens on every get. [`Client::gets`](crate::Client::gets) and
        /// [`Client::cas`](crate::Client::cas) work without it.
        SupportCas(bool): Bool = "cas", MEMCACHED_BEHAVIOR_SUPPORT_CAS, default "0", pylibmc;
        /// `verify_keys`: libmemcached checks ASCII keys too. ASCII only (refused in binary); this
        /// crate checks every key itself anyway.
        VerifyKey(bool): Bool = "verify_keys", MEMCACHED_BEHAVIOR_VERIFY_KEY, default "0", pylibmc;
        /// `connect_timeout` (ms, default 4 s): how long a connect may take. DNS lookups are not
        /// covered. Above zero.
        ConnectTimeout(Duration): Millis = "connect_timeout", MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT,
            default "4000", pylibmc;
        /// `send_timeout` (µs, default 0 = unset): `SO_SNDTIMEO`. **Has no effect**: sockets are
        /// non-blocking and [`Behavior::PollTimeout`] bounds every wait. Kept for pylibmc configs.
        SendTimeout(Duration): Micros = "send_timeout", MEMCACHED_BEHAVIOR_SND_TIMEOUT,
            default "0", pylibmc;
        /// `receive_timeout` (µs, default 0 = unset): `SO_RCVTIMEO`. **Has no effect**, as
        /// [`Behavior::SendTimeout`].
        ReceiveTimeout(Duration): Micros = "receive_timeout", MEMCACHED_BEHAVIOR_RCV_TIMEOUT,
            default "0", pylibmc;
        /// `num_replicas`: each value is also written to this many following servers, and reads
        /// fall back to them. Binary protocol only; fewer than the number of servers. No
        /// consistency between copies is promised.
        NumberOfReplicas(u32): Count = "num_replicas", MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS,
            default "0", pylibmc;
        /// `retry_timeout` (s, default 2): after a failure the server is skipped this long (and up
        /// to a second more: libmemcached compares whole seconds) before one reconnect is tried.
        RetryTimeout(Duration): Secs = "retry_timeout", MEMCACHED_BEHAVIOR_RETRY_TIMEOUT,
            default "2", pylibmc;
        /// `remove_failed`: after [`Behavior::ServerFailureLimit`] failures, take the server out of
        /// the ring so its keys go to the others, for [`Behavior::DeadTimeout`]. Needs a consistent
        /// distribution and a dead timeout above zero (both refused otherwise). See
        /// [`ClientBuilder::failover`](crate::ClientBuilder::failover).
        RemoveFailedServers(bool): Bool = "remove_failed", MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS,
            default "0", pylibmc, Dependent;
        /// `failure_limit` (default 5, at least 1): failed reconnects before a server is removed.
        ServerFailureLimit(u32): Count = "failure_limit", MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT,
            default "5", pylibmc;
        /// `_io_msg_watermark` (default 500, at least 1): unanswered requests that make a blocked
        /// write read replies first.
        IoMsgWatermark(u32): Count = "_io_msg_watermark", MEMCACHED_BEHAVIOR_IO_MSG_WATERMARK,
            default "500", pylibmc;
        /// `_io_bytes_watermark` (bytes, default 66 560, at least 1): the same, counted in bytes.
        IoBytesWatermark(u32): Bytes = "_io_bytes_watermark", MEMCACHED_BEHAVIOR_IO_BYTES_WATERMARK,
            default "66560", pylibmc;
        /// `_io_key_prefetch` (default 0 = off): a binary multi-get flushes after this many keys.
        IoKeyPrefetch(u32): Count = "_io_key_prefetch", MEMCACHED_BEHAVIOR_IO_KEY_PREFETCH,
            default "0", pylibmc;
        /// `_hash_with_prefix_key`: include the namespace when hashing a key to a server.
        HashWithPrefixKey(bool): Bool = "_hash_with_prefix_key",
            MEMCACHED_BEHAVIOR_HASH_WITH_PREFIX_KEY, default "0", pylibmc;
        /// `_noreply`: storage commands and deletes do not wait for an answer, so they report
        /// success whatever happened (`add` of an existing key is `Ok(true)`), and counters are
        /// refused. ASCII only: in binary a quiet command's error reply desynchronises the
        /// connection.
        NoReply(bool): Bool = "_noreply", MEMCACHED_BEHAVIOR_NOREPLY, default "0", pylibmc;
        /// `_sort_hosts`: order servers by host and port before hashing.
        SortHosts(bool): Bool = "_sort_hosts", MEMCACHED_BEHAVIOR_SORT_HOSTS, default "0", pylibmc;
        /// `_poll_timeout` (ms, default 5 s): the longest wait for a server to become readable or
        /// writable, per wait (an operation may wait more than once). This is what bounds a request
        /// to a server that accepts but never answers. Above zero (zero fails every wait at once).
        PollTimeout(Duration): Millis = "_poll_timeout", MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
            default "5000", pylibmc;
        /// `_socket_send_size` (bytes, default 0 = the OS's): `SO_SNDBUF`.
        SocketSendSize(u32): Bytes = "_socket_send_size", MEMCACHED_BEHAVIOR_SOCKET_SEND_SIZE,
            default "0", pylibmc;
        /// `_socket_recv_size` (bytes, default 0 = the OS's): `SO_RCVBUF`.
        SocketRecvSize(u32): Bytes = "_socket_recv_size", MEMCACHED_BEHAVIOR_SOCKET_RECV_SIZE,
            default "0", pylibmc;
        /// `dead_timeout` (s, default 0): how long a removed server stays out before one retry.
        DeadTimeout(Duration): Secs = "dead_timeout", MEMCACHED_BEHAVIOR_DEAD_TIMEOUT,
            default "0", pylibmc;
        /// `tcp_keepidle` (not in pylibmc): idle time before keepalive probes, in whole seconds, at
        /// most 32767 s (Linux's limit; above it libmemcached aborts). Zero keeps the OS default.
        TcpKeepIdle(Duration): Secs = "tcp_keepidle", MEMCACHED_BEHAVIOR_TCP_KEEPIDLE,
            default "0", extra;
        /// `randomize_replica_read` (not in pylibmc): read replicas in random order. Setting it
        /// reseeds the C library's process-wide `random()`.
        RandomizeReplicaRead(bool): Bool = "randomize_replica_read",
            MEMCACHED_BEHAVIOR_RANDOMIZE_REPLICA_READ, default "0", extra;
        /// `server_timeout_limit` (not in pylibmc; default 0): timeouts before a server is skipped
        /// for the retry timeout; 0 and 1 both mean the first.
        ServerTimeoutLimit(u32): Count = "server_timeout_limit",
            MEMCACHED_BEHAVIOR_SERVER_TIMEOUT_LIMIT, default "0", extra;
    }
}

/// When a behavior is applied among others given together (see `names::apply_order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Distributions and hashes: before the others, in the order given.
    Routing,
    /// The rest.
    Normal,
    /// Needs other behaviors set first (`remove_failed`: the distribution and dead timeout): turned
    /// off before all others, turned on after them.
    Dependent,
}

/// One behavior: its pylibmc name, value type, unit and defaults. See [`all_behaviors`].
#[derive(Debug, Clone, Copy)]
pub struct BehaviorInfo {
    pub(super) id: Id,
    pub(super) name: &'static str,
    pub(super) flag: sys::memcached_behavior_t,
    value_type: &'static str,
    unit: Option<&'static str>,
    pub(super) default: &'static str,
    libmemcached_default: &'static str,
    pylibmc: bool,
    pub(super) stage: Stage,
}

impl BehaviorInfo {
    /// The name (pylibmc's, where pylibmc has the behavior).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Rust type of the [`Behavior`] variant's value: `bool`, `Duration`, `u32`, `Hash` or
    /// `Distribution`.
    pub fn value_type(&self) -> &'static str {
        self.value_type
    }

    /// The unit of the raw value (`ms`, `s`, `µs`, `bytes`), if it has one.
    pub fn unit(&self) -> Option<&'static str> {
        self.unit
    }

    /// The raw value a new client of this crate has.
    pub fn default_value(&self) -> &'static str {
        self.default
    }

    /// libmemcached's own default, where this crate's differs (only `tcp_nodelay`).
    pub fn libmemcached_default(&self) -> &'static str {
        self.libmemcached_default
    }

    /// Whether pylibmc has a behavior of this name.
    pub fn is_pylibmc(&self) -> bool {
        self.pylibmc
    }
}

/// Every behavior this crate exposes, in pylibmc's order, then those pylibmc lacks
/// (`tcp_keepidle`, `randomize_replica_read`, `server_timeout_limit`). pylibmc's `buffer_requests`,
/// `auto_eject` and `pickle_protocol` are refused (see [`Behavior`]).
pub fn all_behaviors() -> &'static [BehaviorInfo] {
    BEHAVIORS
}

// `Id::info` finds a row by its id: the ids and the rows come from the same list, in order.
const _: () = {
    let mut i = 0;
    while i < BEHAVIORS.len() {
        assert!(BEHAVIORS[i].id as usize == i);
        i += 1;
    }
};

impl Id {
    pub(super) fn info(self) -> &'static BehaviorInfo {
        &BEHAVIORS[self as usize]
    }
}

impl Behavior {
    /// This behavior's row of the table.
    pub(super) fn info(&self) -> &'static BehaviorInfo {
        self.id().info()
    }

    /// The name of this behavior (pylibmc's, where it has it).
    pub fn name(&self) -> &'static str {
        self.info().name
    }

    /// libmemcached's flag for this behavior.
    pub(super) fn flag(&self) -> sys::memcached_behavior_t {
        self.info().flag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_behavior_has_a_table_entry() {
        for info in all_behaviors() {
            let behavior = Behavior::from_name(info.name, info.default).unwrap();
            assert_eq!(behavior.name(), info.name);
        }
        let mut names: Vec<&str> = all_behaviors().iter().map(|b| b.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all_behaviors().len());
    }

    #[test]
    fn the_table_is_complete() {
        let table = all_behaviors();
        for (i, info) in table.iter().enumerate() {
            // Each row is its own variant, and its default is valid and reads back as written.
            let name = info.name;
            assert_eq!(info.id as usize, i, "{name}");
            let behavior = Behavior::from_name(name, info.default).unwrap();
            assert_eq!((behavior.id(), behavior.name()), (info.id, name));
            let (flag, raw) = behavior.to_raw().unwrap();
            assert_eq!(flag, info.flag, "{name}");
            assert_eq!(info.id.show(raw).to_string(), info.default, "{name}");
        }
        // Every C flag appears once, none of them refused; every name once.
        let mut flags: Vec<_> = table.iter().map(|b| b.flag).collect();
        flags.sort_unstable();
        flags.dedup();
        assert_eq!(flags.len(), table.len());
        assert!(flags.iter().all(|&f| f < sys::MEMCACHED_BEHAVIOR_MAX));
        for refused in [
            sys::MEMCACHED_BEHAVIOR_BUFFER_REQUESTS,
            sys::MEMCACHED_BEHAVIOR_USE_UDP,
            sys::MEMCACHED_BEHAVIOR_BINARY_PROTOCOL,
        ] {
            assert!(!flags.contains(&refused));
        }
        let mut names: Vec<&str> = table.iter().map(|b| b.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), table.len());
        // pylibmc's behaviors first, then the extras; only tcp_nodelay's default differs.
        assert!(table.is_sorted_by_key(|b| !b.pylibmc));
        let differ: Vec<&str> = table
            .iter()
            .filter(|b| b.default != b.libmemcached_default)
            .map(|b| b.name)
            .collect();
        assert_eq!(differ, ["tcp_nodelay"]);
    }
}
