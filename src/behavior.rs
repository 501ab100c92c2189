//! Behaviors: libmemcached's tuning knobs, with typed values in the right units, and pylibmc's
//! names and raw values for configuration files.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use libmemcached_sys as sys;

use crate::client::Client;
use crate::error::{Error, Result};

/// A libmemcached behavior with a typed value.
///
/// Timeouts are [`Duration`]s, converted (rounded up) to the unit libmemcached uses for each:
/// milliseconds for connect and poll, seconds for retry, dead and TCP keepidle, microseconds for
/// send and receive. Of the timeouts, [`ConnectTimeout`](Behavior::ConnectTimeout),
/// [`PollTimeout`](Behavior::PollTimeout), [`RetryTimeout`](Behavior::RetryTimeout) and
/// [`DeadTimeout`](Behavior::DeadTimeout) act; [`SendTimeout`](Behavior::SendTimeout) and
/// [`ReceiveTimeout`](Behavior::ReceiveTimeout) do not (libmemcached's sockets are non-blocking,
/// so the poll timeout bounds every wait).
///
/// [`all_behaviors`] lists every behavior with its pylibmc name, unit and default, and
/// [`Behavior::from_name`] takes pylibmc's names and raw values.
///
/// Every behavior libmemcached 1.1 has that is safe to use is a variant. The protocol is
/// [`ClientBuilder::binary`](crate::ClientBuilder::binary). The rest are refused with an [`Error::InvalidConfig`] that says why, never passed on: Debian's libmemcached
/// is built with `assert()` on, so a wrong value there aborts the process.
///
/// | refused | why |
/// |---|---|
/// | `buffer_requests` | aborts the process under load (an assertion in libmemcached's I/O) |
/// | `auto_eject` | deprecated alias of `remove_failed`; use that name |
/// | `use_udp` | set by `udp:host:port` server specs |
/// | `cache_lookups`, `user_data`, `cork` | deprecated; libmemcached ignores them |
/// | `load_from_file` | not settable; use [`Client::from_config`] |
/// | `pickle_protocol` | pylibmc's own (a Python pickle setting); meaningless in Rust |
/// | `namespace` | a callback, not a behavior; use [`ClientBuilder::namespace`](crate::ClientBuilder::namespace) |
/// | distribution `virtual bucket` | needs a bucket table first; unsafe without one |
/// | hash `hsieh` (Debian), `custom` | not compiled in / not a behavior value |
/// | `verify_keys` in binary, `_noreply` in binary | VERIFY_KEY is ASCII-only; binary NOREPLY loses errors and desynchronises the connection |
/// | `num_replicas` in ASCII | only the binary protocol writes and reads replicas |
/// | `remove_failed` without a consistent distribution and a dead timeout | never reroutes; with no dead timeout the server stays dead forever |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behavior {
    /// `no_block`: close connections with a reset (`SO_LINGER {1, 0}`). It does not make I/O
    /// non-blocking: libmemcached 1.1 always is.
    NoBlock(bool),
    /// `tcp_nodelay`. **On by default in this crate** (off in libmemcached): without it a binary
    /// multi-get of missing keys stalls about 40 ms on delayed ACKs.
    TcpNoDelay(bool),
    /// `tcp_keepalive`: `SO_KEEPALIVE` on connections.
    TcpKeepalive(bool),
    /// `tcp_keepidle` (not in pylibmc): idle time before keepalive probes, in whole seconds, at
    /// most 32767 s (Linux's limit; above it libmemcached aborts). Zero keeps the OS default.
    TcpKeepIdle(Duration),
    /// `hash`: the key hash (default [`Hash::Default`], one-at-a-time).
    Hash(Hash),
    /// `ketama_hash`: the hash that places servers on the consistent-hashing ring.
    KetamaHash(Hash),
    /// `ketama`: `true` is [`Distribution::ConsistentKetama`], `false` is
    /// [`Distribution::Modula`]. It does not change the key hash, whatever libmemcached's docs say.
    Ketama(bool),
    /// `ketama_weighted`: `true` is [`Distribution::ConsistentWeighted`] and also switches both
    /// hashes to MD5 (an explicit [`Behavior::Hash`] applied after it wins). `false` is plain
    /// ketama, not modula.
    KetamaWeighted(bool),
    /// `distribution`: how keys are spread over servers (default [`Distribution::Modula`]).
    Distribution(Distribution),
    /// `cas`: ask for CAS tokens on every get. [`Client::gets`] and [`Client::cas`] work without it.
    SupportCas(bool),
    /// `verify_keys`: libmemcached checks ASCII keys too. ASCII only (refused in binary); this
    /// crate checks every key itself anyway.
    VerifyKey(bool),
    /// `connect_timeout` (ms, default 4 s): how long a connect may take. DNS lookups are not
    /// covered. Above zero.
    ConnectTimeout(Duration),
    /// `send_timeout` (µs, default 0 = unset): `SO_SNDTIMEO`. **Has no effect**: sockets are
    /// non-blocking and [`Behavior::PollTimeout`] bounds every wait. Kept for pylibmc configs.
    SendTimeout(Duration),
    /// `receive_timeout` (µs, default 0 = unset): `SO_RCVTIMEO`. **Has no effect**, as
    /// [`Behavior::SendTimeout`].
    ReceiveTimeout(Duration),
    /// `num_replicas`: each value is also written to this many following servers, and reads
    /// fall back to them. Binary protocol only; fewer than the number of servers. No consistency
    /// between copies is promised.
    NumberOfReplicas(u32),
    /// `randomize_replica_read` (not in pylibmc): read replicas in random order. Setting it
    /// reseeds the C library's process-wide `random()`.
    RandomizeReplicaRead(bool),
    /// `retry_timeout` (s, default 2): after a failure the server is skipped this long (and up
    /// to a second more: libmemcached compares whole seconds) before one reconnect is tried.
    RetryTimeout(Duration),
    /// `remove_failed`: after [`Behavior::ServerFailureLimit`] failures, take the server out of
    /// the ring so its keys go to the others, for [`Behavior::DeadTimeout`]. Needs a consistent
    /// distribution and a dead timeout above zero (both refused otherwise). See
    /// [`ClientBuilder::failover`](crate::ClientBuilder::failover).
    RemoveFailedServers(bool),
    /// `failure_limit` (default 5, at least 1): failed reconnects before a server is removed.
    ServerFailureLimit(u32),
    /// `server_timeout_limit` (not in pylibmc; default 0): timeouts before a server is skipped
    /// for the retry timeout; 0 and 1 both mean the first.
    ServerTimeoutLimit(u32),
    /// `dead_timeout` (s, default 0): how long a removed server stays out before one retry.
    DeadTimeout(Duration),
    /// `_poll_timeout` (ms, default 5 s): the longest wait for a server to become readable or
    /// writable, per wait (an operation may wait more than once). This is what bounds a request
    /// to a server that accepts but never answers. Above zero (zero fails every wait at once).
    PollTimeout(Duration),
    /// `_io_msg_watermark` (default 500, at least 1): unanswered requests that make a blocked
    /// write read replies first.
    IoMsgWatermark(u32),
    /// `_io_bytes_watermark` (bytes, default 66 560, at least 1): the same, counted in bytes.
    IoBytesWatermark(u32),
    /// `_io_key_prefetch` (default 0 = off): a binary multi-get flushes after this many keys.
    IoKeyPrefetch(u32),
    /// `_hash_with_prefix_key`: include the namespace when hashing a key to a server.
    HashWithPrefixKey(bool),
    /// `_noreply`: storage commands and deletes do not wait for an answer, so they report
    /// success whatever happened (`add` of an existing key is `Ok(true)`), and counters are
    /// refused. ASCII only: in binary a quiet command's error reply desynchronises the
    /// connection.
    NoReply(bool),
    /// `_sort_hosts`: order servers by host and port before hashing.
    SortHosts(bool),
    /// `_socket_send_size` (bytes, default 0 = the OS's): `SO_SNDBUF`.
    SocketSendSize(u32),
    /// `_socket_recv_size` (bytes, default 0 = the OS's): `SO_RCVBUF`.
    SocketRecvSize(u32),
}

/// A key hash function. The names are pylibmc's (`fnv1a_32`); see [`hashers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(non_camel_case_types)]
pub enum Hash {
    /// `default`: Jenkins one-at-a-time (libmemcached's default).
    Default,
    /// `md5`.
    Md5,
    /// `crc`: CRC32 (15 bits), placing keys as python-memcached does.
    Crc,
    /// `fnv1_64`.
    Fnv1_64,
    /// `fnv1a_64`.
    Fnv1a_64,
    /// `fnv1_32`.
    Fnv1_32,
    /// `fnv1a_32`.
    Fnv1a_32,
    /// `hsieh`: only if libmemcached was built with it (Debian's is not; see
    /// [`Hash::is_available`]).
    Hsieh,
    /// `murmur`.
    Murmur,
    /// `jenkins`: Jenkins lookup3.
    Jenkins,
    /// `murmur3` (not in pylibmc).
    Murmur3,
}

const HASHERS: &[(&str, Hash)] = &[
    ("default", Hash::Default),
    ("md5", Hash::Md5),
    ("crc", Hash::Crc),
    ("fnv1_64", Hash::Fnv1_64),
    ("fnv1a_64", Hash::Fnv1a_64),
    ("fnv1_32", Hash::Fnv1_32),
    ("fnv1a_32", Hash::Fnv1a_32),
    ("hsieh", Hash::Hsieh),
    ("murmur", Hash::Murmur),
    ("jenkins", Hash::Jenkins),
    ("murmur3", Hash::Murmur3),
];

/// Every [`Hash`](enum@Hash) by its pylibmc name, as pylibmc's `hashers`. Some may not be compiled into
/// this libmemcached: see [`Hash::is_available`].
pub fn hashers() -> &'static [(&'static str, Hash)] {
    HASHERS
}

impl Hash {
    pub(crate) fn to_raw(self) -> sys::memcached_hash_t {
        match self {
            Self::Default => sys::MEMCACHED_HASH_DEFAULT,
            Self::Md5 => sys::MEMCACHED_HASH_MD5,
            Self::Crc => sys::MEMCACHED_HASH_CRC,
            Self::Fnv1_64 => sys::MEMCACHED_HASH_FNV1_64,
            Self::Fnv1a_64 => sys::MEMCACHED_HASH_FNV1A_64,
            Self::Fnv1_32 => sys::MEMCACHED_HASH_FNV1_32,
            Self::Fnv1a_32 => sys::MEMCACHED_HASH_FNV1A_32,
            Self::Hsieh => sys::MEMCACHED_HASH_HSIEH,
            Self::Murmur => sys::MEMCACHED_HASH_MURMUR,
            Self::Jenkins => sys::MEMCACHED_HASH_JENKINS,
            Self::Murmur3 => sys::MEMCACHED_HASH_MURMUR3,
        }
    }

    fn from_raw(raw: u64) -> Option<Hash> {
        HASHERS
            .iter()
            .map(|&(_, h)| h)
            .find(|h| u64::from(h.to_raw()) == raw)
    }

    /// pylibmc's name for the hash (`"fnv1a_32"`).
    pub fn name(self) -> &'static str {
        HASHERS
            .iter()
            .find(|&&(_, h)| h == self)
            .map_or("default", |&(name, _)| name)
    }

    /// Whether this libmemcached has the hash compiled in (Debian's lacks `hsieh`). Using one
    /// that is not is an error.
    pub fn is_available(self) -> bool {
        crate::ffi::hash_available(self)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Hash {
    type Err = Error;

    /// A hash by pylibmc name (`"fnv1a_32"`) or libmemcached number.
    fn from_str(s: &str) -> Result<Hash> {
        let s = s.trim();
        HASHERS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, h)| h)
            .or_else(|| s.parse().ok().and_then(Hash::from_raw))
            .ok_or_else(|| {
                let names: Vec<&str> = HASHERS.iter().map(|(n, _)| *n).collect();
                Error::InvalidConfig(format!("unknown hash {s:?}; known: {}", names.join(", ")))
            })
    }
}

/// How keys are spread over servers. The names are pylibmc's (`"consistent ketama"`); see
/// [`distributions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Distribution {
    /// `modula`: hash modulo the number of servers (libmemcached's default). Removing one of
    /// N servers moves most keys, and failed servers are never routed around.
    Modula,
    /// `consistent`: the same as [`Distribution::ConsistentKetama`].
    Consistent,
    /// `consistent ketama`: a ring with 100 points per server; removing one of N servers moves
    /// about 1/N of the keys. Weighted when a server has a weight above 1.
    ConsistentKetama,
    /// `random`: a random server per operation (so a get rarely finds its set).
    Random,
    /// `consistent ketama spy`: ketama as spymemcached (Java) computes it.
    ConsistentKetamaSpy,
    /// `consistent weighted`: ketama with 160 points per server scaled by its weight.
    ConsistentWeighted,
}

const DISTRIBUTIONS: &[(&str, Distribution)] = &[
    ("modula", Distribution::Modula),
    ("consistent", Distribution::Consistent),
    ("consistent ketama", Distribution::ConsistentKetama),
    ("random", Distribution::Random),
    ("consistent ketama spy", Distribution::ConsistentKetamaSpy),
    ("consistent weighted", Distribution::ConsistentWeighted),
];

/// Every [`Distribution`] by its pylibmc name, as pylibmc's `distributions` (without
/// `virtual bucket` and `consistent max`, which are refused).
pub fn distributions() -> &'static [(&'static str, Distribution)] {
    DISTRIBUTIONS
}

impl Distribution {
    pub(crate) fn to_raw(self) -> sys::memcached_server_distribution_t {
        match self {
            Self::Modula => sys::MEMCACHED_DISTRIBUTION_MODULA,
            Self::Consistent => sys::MEMCACHED_DISTRIBUTION_CONSISTENT,
            Self::ConsistentKetama => sys::MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA,
            Self::Random => sys::MEMCACHED_DISTRIBUTION_RANDOM,
            Self::ConsistentKetamaSpy => sys::MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA_SPY,
            Self::ConsistentWeighted => sys::MEMCACHED_DISTRIBUTION_CONSISTENT_WEIGHTED,
        }
    }

    fn from_raw(raw: u64) -> Option<Distribution> {
        DISTRIBUTIONS
            .iter()
            .map(|&(_, d)| d)
            .find(|d| u64::from(d.to_raw()) == raw)
    }

    /// pylibmc's name for the distribution (`"consistent ketama"`).
    pub fn name(self) -> &'static str {
        DISTRIBUTIONS
            .iter()
            .find(|&&(_, d)| d == self)
            .map_or("modula", |&(name, _)| name)
    }

    /// Whether this is consistent hashing (the ketama family), the only kind that routes
    /// around removed servers.
    pub fn is_consistent(self) -> bool {
        !matches!(self, Self::Modula | Self::Random)
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Distribution {
    type Err = Error;

    /// A distribution by pylibmc name (`"consistent ketama"`; `_` for spaces is accepted too)
    /// or libmemcached number.
    fn from_str(s: &str) -> Result<Distribution> {
        let wanted = s.trim().replace('_', " ");
        if let Some(&(_, d)) = DISTRIBUTIONS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&wanted))
        {
            return Ok(d);
        }
        if let Some(d) = s.trim().parse().ok().and_then(Distribution::from_raw) {
            return Ok(d);
        }
        let refused = ["virtual bucket", "consistent max"];
        if refused.iter().any(|r| r.eq_ignore_ascii_case(&wanted))
            || matches!(
                s.trim().parse::<u32>(),
                Ok(sys::MEMCACHED_DISTRIBUTION_VIRTUAL_BUCKET
                    | sys::MEMCACHED_DISTRIBUTION_CONSISTENT_MAX)
            )
        {
            return Err(Error::InvalidConfig(format!(
                "distribution {s:?} is refused: it needs a bucket table this crate does not set \
                 up (virtual bucket) or is not a distribution (consistent max)"
            )));
        }
        let names: Vec<&str> = DISTRIBUTIONS.iter().map(|(n, _)| *n).collect();
        Err(Error::InvalidConfig(format!(
            "unknown distribution {s:?}; known: {}",
            names.join(", ")
        )))
    }
}

/// A behavior's value in pylibmc's raw form: a number in libmemcached's unit (`4000` for a
/// 4 s connect timeout, `1`/`0` for booleans), or a hash or distribution name.
///
/// Its [`Display`](fmt::Display) form is what [`Client::set_behavior_by_name`] accepts, so
/// values read with [`Client::behaviors`] can be set again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BehaviorValue {
    /// A number (booleans are 1 and 0). Negative only for timeouts a libmemcached
    /// configuration string set to "forever" (-1).
    Number(i64),
    /// A hash or distribution name.
    Name(&'static str),
}

impl BehaviorValue {
    /// The number, if this is one.
    pub fn as_number(&self) -> Option<i64> {
        match *self {
            Self::Number(n) => Some(n),
            Self::Name(_) => None,
        }
    }

    /// The name, if this is one.
    pub fn as_name(&self) -> Option<&'static str> {
        match *self {
            Self::Name(name) => Some(name),
            Self::Number(_) => None,
        }
    }
}

impl fmt::Display for BehaviorValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

impl From<bool> for BehaviorValue {
    fn from(on: bool) -> Self {
        Self::Number(on.into())
    }
}

impl From<i64> for BehaviorValue {
    fn from(n: i64) -> Self {
        Self::Number(n)
    }
}

impl From<i32> for BehaviorValue {
    fn from(n: i32) -> Self {
        Self::Number(n.into())
    }
}

impl From<u32> for BehaviorValue {
    fn from(n: u32) -> Self {
        Self::Number(n.into())
    }
}

impl From<&'static str> for BehaviorValue {
    fn from(name: &'static str) -> Self {
        Self::Name(name)
    }
}

/// How a behavior's raw value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Millis,
    Secs,
    Micros,
    Count,
    Bytes,
    Hash,
    Distribution,
}

/// One behavior: its pylibmc name, value type, unit and defaults. See [`all_behaviors`].
#[derive(Debug, Clone, Copy)]
pub struct BehaviorInfo {
    name: &'static str,
    flag: sys::memcached_behavior_t,
    kind: Kind,
    default: &'static str,
    libmemcached_default: &'static str,
    pylibmc: bool,
}

impl BehaviorInfo {
    /// The name (pylibmc's, where pylibmc has the behavior).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Rust type of the [`Behavior`] variant's value: `bool`, `Duration`, `u32`, `Hash` or
    /// `Distribution`.
    pub fn value_type(&self) -> &'static str {
        match self.kind {
            Kind::Bool => "bool",
            Kind::Millis | Kind::Secs | Kind::Micros => "Duration",
            Kind::Count | Kind::Bytes => "u32",
            Kind::Hash => "Hash",
            Kind::Distribution => "Distribution",
        }
    }

    /// The unit of the raw value (`ms`, `s`, `µs`, `bytes`), if it has one.
    pub fn unit(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Millis => Some("ms"),
            Kind::Secs => Some("s"),
            Kind::Micros => Some("µs"),
            Kind::Bytes => Some("bytes"),
            _ => None,
        }
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

const fn info(
    name: &'static str,
    flag: sys::memcached_behavior_t,
    kind: Kind,
    default: &'static str,
) -> BehaviorInfo {
    BehaviorInfo {
        name,
        flag,
        kind,
        default,
        libmemcached_default: default,
        pylibmc: true,
    }
}

const fn extra(info: BehaviorInfo) -> BehaviorInfo {
    BehaviorInfo {
        pylibmc: false,
        ..info
    }
}

/// pylibmc's order (its `all_behaviors`), then the behaviors pylibmc lacks.
const BEHAVIORS: &[BehaviorInfo] = &[
    info(
        "no_block",
        sys::MEMCACHED_BEHAVIOR_NO_BLOCK,
        Kind::Bool,
        "0",
    ),
    BehaviorInfo {
        libmemcached_default: "0",
        ..info(
            "tcp_nodelay",
            sys::MEMCACHED_BEHAVIOR_TCP_NODELAY,
            Kind::Bool,
            "1",
        )
    },
    info(
        "tcp_keepalive",
        sys::MEMCACHED_BEHAVIOR_TCP_KEEPALIVE,
        Kind::Bool,
        "0",
    ),
    info("hash", sys::MEMCACHED_BEHAVIOR_HASH, Kind::Hash, "default"),
    info(
        "ketama_hash",
        sys::MEMCACHED_BEHAVIOR_KETAMA_HASH,
        Kind::Hash,
        "default",
    ),
    info("ketama", sys::MEMCACHED_BEHAVIOR_KETAMA, Kind::Bool, "0"),
    info(
        "ketama_weighted",
        sys::MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED,
        Kind::Bool,
        "0",
    ),
    info(
        "distribution",
        sys::MEMCACHED_BEHAVIOR_DISTRIBUTION,
        Kind::Distribution,
        "modula",
    ),
    info("cas", sys::MEMCACHED_BEHAVIOR_SUPPORT_CAS, Kind::Bool, "0"),
    info(
        "verify_keys",
        sys::MEMCACHED_BEHAVIOR_VERIFY_KEY,
        Kind::Bool,
        "0",
    ),
    info(
        "connect_timeout",
        sys::MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT,
        Kind::Millis,
        "4000",
    ),
    info(
        "send_timeout",
        sys::MEMCACHED_BEHAVIOR_SND_TIMEOUT,
        Kind::Micros,
        "0",
    ),
    info(
        "receive_timeout",
        sys::MEMCACHED_BEHAVIOR_RCV_TIMEOUT,
        Kind::Micros,
        "0",
    ),
    info(
        "num_replicas",
        sys::MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS,
        Kind::Count,
        "0",
    ),
    info(
        "retry_timeout",
        sys::MEMCACHED_BEHAVIOR_RETRY_TIMEOUT,
        Kind::Secs,
        "2",
    ),
    info(
        "remove_failed",
        sys::MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS,
        Kind::Bool,
        "0",
    ),
    info(
        "failure_limit",
        sys::MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT,
        Kind::Count,
        "5",
    ),
    info(
        "_io_msg_watermark",
        sys::MEMCACHED_BEHAVIOR_IO_MSG_WATERMARK,
        Kind::Count,
        "500",
    ),
    info(
        "_io_bytes_watermark",
        sys::MEMCACHED_BEHAVIOR_IO_BYTES_WATERMARK,
        Kind::Bytes,
        "66560",
    ),
    info(
        "_io_key_prefetch",
        sys::MEMCACHED_BEHAVIOR_IO_KEY_PREFETCH,
        Kind::Count,
        "0",
    ),
    info(
        "_hash_with_prefix_key",
        sys::MEMCACHED_BEHAVIOR_HASH_WITH_PREFIX_KEY,
        Kind::Bool,
        "0",
    ),
    info("_noreply", sys::MEMCACHED_BEHAVIOR_NOREPLY, Kind::Bool, "0"),
    info(
        "_sort_hosts",
        sys::MEMCACHED_BEHAVIOR_SORT_HOSTS,
        Kind::Bool,
        "0",
    ),
    info(
        "_poll_timeout",
        sys::MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
        Kind::Millis,
        "5000",
    ),
    info(
        "_socket_send_size",
        sys::MEMCACHED_BEHAVIOR_SOCKET_SEND_SIZE,
        Kind::Bytes,
        "0",
    ),
    info(
        "_socket_recv_size",
        sys::MEMCACHED_BEHAVIOR_SOCKET_RECV_SIZE,
        Kind::Bytes,
        "0",
    ),
    info(
        "dead_timeout",
        sys::MEMCACHED_BEHAVIOR_DEAD_TIMEOUT,
        Kind::Secs,
        "0",
    ),
    extra(info(
        "tcp_keepidle",
        sys::MEMCACHED_BEHAVIOR_TCP_KEEPIDLE,
        Kind::Secs,
        "0",
    )),
    extra(info(
        "randomize_replica_read",
        sys::MEMCACHED_BEHAVIOR_RANDOMIZE_REPLICA_READ,
        Kind::Bool,
        "0",
    )),
    extra(info(
        "server_timeout_limit",
        sys::MEMCACHED_BEHAVIOR_SERVER_TIMEOUT_LIMIT,
        Kind::Count,
        "0",
    )),
];

/// Names that are recognised but refused, with the reason.
const REFUSED: &[(&str, &str)] = &[
    (
        "buffer_requests",
        "libmemcached aborts the process when buffered requests pile up (use bulk_set for bulk loads)",
    ),
    (
        "auto_eject",
        "deprecated; it is the same switch as remove_failed, so use that name",
    ),
    (
        "pickle_protocol",
        "a pylibmc setting for Python's pickle; Rust values are never pickled",
    ),
    (
        "namespace",
        "a callback, not a behavior; use ClientBuilder::namespace",
    ),
    ("use_udp", "set by giving udp:host:port servers"),
    (
        "binary",
        "the protocol is chosen when the client is built (ClientBuilder::binary)",
    ),
    ("cache_lookups", "deprecated; libmemcached ignores it"),
    ("user_data", "deprecated; libmemcached ignores it"),
    ("cork", "deprecated; libmemcached always corks"),
    ("load_from_file", "cannot be set; use Client::from_config"),
];

/// Every behavior this crate exposes, in pylibmc's order, then those pylibmc lacks
/// (`tcp_keepidle`, `randomize_replica_read`, `server_timeout_limit`). pylibmc's `buffer_requests`,
/// `auto_eject` and `pickle_protocol` are refused (see [`Behavior`]).
pub fn all_behaviors() -> &'static [BehaviorInfo] {
    BEHAVIORS
}

fn lookup(name: &str) -> Result<&'static BehaviorInfo> {
    let name = name.trim();
    // pylibmc still accepts its old name for the retry timeout.
    let canonical = if name == "_retry_timeout" {
        "retry_timeout"
    } else {
        name
    };
    if let Some(info) = BEHAVIORS.iter().find(|b| b.name == canonical) {
        return Ok(info);
    }
    if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
        return Err(Error::InvalidConfig(format!(
            "behavior {name} is refused: {why}"
        )));
    }
    Err(unknown(&[name]))
}

fn unknown(names: &[&str]) -> Error {
    let mut names = names.to_vec();
    names.sort_unstable();
    names.dedup();
    Error::InvalidConfig(format!(
        "unknown behavior names: {} (see libmemcached::all_behaviors)",
        names.join(", ")
    ))
}

impl Behavior {
    /// A behavior from its pylibmc name and raw value, in libmemcached's unit:
    /// `("connect_timeout", 4000)` is a 4 s [`Behavior::ConnectTimeout`], `("hash", "fnv1a_32")`,
    /// `("distribution", "consistent ketama")`, `("ketama", true)`. Booleans are `true`/`false`
    /// or numbers (non-zero is on). An unknown or refused name, or a value out of range, is an
    /// [`Error::InvalidConfig`] saying so.
    ///
    /// ```
    /// use std::time::Duration;
    /// use libmemcached::{Behavior, Hash};
    ///
    /// let b = Behavior::from_name("connect_timeout", 4000)?;
    /// assert_eq!(b, Behavior::ConnectTimeout(Duration::from_secs(4)));
    /// assert_eq!(Behavior::from_name("hash", "fnv1a_32")?, Behavior::Hash(Hash::Fnv1a_32));
    /// assert!(Behavior::from_name("pickle_protocol", 2).is_err());
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn from_name(name: &str, value: impl fmt::Display) -> Result<Behavior> {
        let info = lookup(name)?;
        let text = value.to_string();
        let raw = text.trim();
        let bad =
            |why: &str| Error::InvalidConfig(format!("behavior {} = {raw:?}: {why}", info.name));
        let number = || -> Result<u64> {
            raw.parse::<u64>().map_err(|_| {
                bad(if raw.starts_with('-') {
                    "must not be negative (no timeout may be infinite here)"
                } else {
                    "not a whole number"
                })
            })
        };
        let count = || -> Result<u32> { u32::try_from(number()?).map_err(|_| bad("too large")) };
        let flag = info.flag;
        let behavior = match info.kind {
            Kind::Bool => {
                let on = match raw.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" => true,
                    "false" | "no" | "off" => false,
                    _ => number()? != 0,
                };
                bool_behavior(flag, on)
            }
            Kind::Millis => duration_behavior(flag, Duration::from_millis(number()?)),
            Kind::Secs => duration_behavior(flag, Duration::from_secs(number()?)),
            Kind::Micros => duration_behavior(flag, Duration::from_micros(number()?)),
            Kind::Count | Kind::Bytes => count_behavior(flag, count()?),
            Kind::Hash => {
                let hash = raw.parse::<Hash>()?;
                match flag {
                    sys::MEMCACHED_BEHAVIOR_HASH => Behavior::Hash(hash),
                    _ => Behavior::KetamaHash(hash),
                }
            }
            Kind::Distribution => Behavior::Distribution(raw.parse()?),
        };
        behavior.to_raw()?;
        Ok(behavior)
    }

    /// The name of this behavior (pylibmc's, where it has it).
    pub fn name(&self) -> &'static str {
        let flag = self.flag();
        BEHAVIORS
            .iter()
            .find(|b| b.flag == flag)
            .map_or("?", |b| b.name)
    }

    /// The raw value in pylibmc's form (libmemcached's unit, rounded up), or an error if the
    /// value is refused.
    pub fn raw_value(&self) -> Result<BehaviorValue> {
        let (_, raw) = self.to_raw()?;
        Ok(match self {
            Self::Hash(h) | Self::KetamaHash(h) => BehaviorValue::Name(h.name()),
            Self::Distribution(d) => BehaviorValue::Name(d.name()),
            // Every raw value was checked to fit an i32 or u32.
            _ => BehaviorValue::Number(raw as i64),
        })
    }

    fn flag(&self) -> sys::memcached_behavior_t {
        use Behavior::*;
        match self {
            NoBlock(_) => sys::MEMCACHED_BEHAVIOR_NO_BLOCK,
            TcpNoDelay(_) => sys::MEMCACHED_BEHAVIOR_TCP_NODELAY,
            TcpKeepalive(_) => sys::MEMCACHED_BEHAVIOR_TCP_KEEPALIVE,
            TcpKeepIdle(_) => sys::MEMCACHED_BEHAVIOR_TCP_KEEPIDLE,
            Hash(_) => sys::MEMCACHED_BEHAVIOR_HASH,
            KetamaHash(_) => sys::MEMCACHED_BEHAVIOR_KETAMA_HASH,
            Ketama(_) => sys::MEMCACHED_BEHAVIOR_KETAMA,
            KetamaWeighted(_) => sys::MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED,
            Distribution(_) => sys::MEMCACHED_BEHAVIOR_DISTRIBUTION,
            SupportCas(_) => sys::MEMCACHED_BEHAVIOR_SUPPORT_CAS,
            VerifyKey(_) => sys::MEMCACHED_BEHAVIOR_VERIFY_KEY,
            ConnectTimeout(_) => sys::MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT,
            SendTimeout(_) => sys::MEMCACHED_BEHAVIOR_SND_TIMEOUT,
            ReceiveTimeout(_) => sys::MEMCACHED_BEHAVIOR_RCV_TIMEOUT,
            NumberOfReplicas(_) => sys::MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS,
            RandomizeReplicaRead(_) => sys::MEMCACHED_BEHAVIOR_RANDOMIZE_REPLICA_READ,
            RetryTimeout(_) => sys::MEMCACHED_BEHAVIOR_RETRY_TIMEOUT,
            RemoveFailedServers(_) => sys::MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS,
            ServerFailureLimit(_) => sys::MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT,
            ServerTimeoutLimit(_) => sys::MEMCACHED_BEHAVIOR_SERVER_TIMEOUT_LIMIT,
            DeadTimeout(_) => sys::MEMCACHED_BEHAVIOR_DEAD_TIMEOUT,
            PollTimeout(_) => sys::MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
            IoMsgWatermark(_) => sys::MEMCACHED_BEHAVIOR_IO_MSG_WATERMARK,
            IoBytesWatermark(_) => sys::MEMCACHED_BEHAVIOR_IO_BYTES_WATERMARK,
            IoKeyPrefetch(_) => sys::MEMCACHED_BEHAVIOR_IO_KEY_PREFETCH,
            HashWithPrefixKey(_) => sys::MEMCACHED_BEHAVIOR_HASH_WITH_PREFIX_KEY,
            NoReply(_) => sys::MEMCACHED_BEHAVIOR_NOREPLY,
            SortHosts(_) => sys::MEMCACHED_BEHAVIOR_SORT_HOSTS,
            SocketSendSize(_) => sys::MEMCACHED_BEHAVIOR_SOCKET_SEND_SIZE,
            SocketRecvSize(_) => sys::MEMCACHED_BEHAVIOR_SOCKET_RECV_SIZE,
        }
    }

    /// The libmemcached flag and raw value, after checking the value on its own.
    pub(crate) fn to_raw(self) -> Result<(sys::memcached_behavior_t, u64)> {
        use Behavior::*;
        let value = match self {
            NoBlock(on)
            | TcpNoDelay(on)
            | TcpKeepalive(on)
            | Ketama(on)
            | KetamaWeighted(on)
            | SupportCas(on)
            | VerifyKey(on)
            | RandomizeReplicaRead(on)
            | RemoveFailedServers(on)
            | HashWithPrefixKey(on)
            | NoReply(on)
            | SortHosts(on) => on.into(),
            ConnectTimeout(d) | PollTimeout(d) => millis(self, d)?,
            SendTimeout(d) | ReceiveTimeout(d) => micros(self, d)?,
            RetryTimeout(d) | DeadTimeout(d) => secs(self, d, i32::MAX as u64)?,
            // Linux refuses more (MAX_TCP_KEEPIDLE), and libmemcached asserts on the refusal.
            TcpKeepIdle(d) => secs(self, d, 32_767)?,
            Hash(h) | KetamaHash(h) if !h.is_available() => {
                return Err(refused(self, "this libmemcached was built without it"));
            }
            Hash(h) | KetamaHash(h) => h.to_raw().into(),
            Distribution(d) => d.to_raw().into(),
            ServerFailureLimit(0) => return Err(refused(self, "the limit must be at least 1")),
            IoMsgWatermark(0) | IoBytesWatermark(0) => {
                return Err(refused(self, "a watermark must be at least 1"));
            }
            SocketSendSize(n) | SocketRecvSize(n) if n > i32::MAX as u32 => {
                return Err(refused(self, "too large"));
            }
            ServerFailureLimit(n)
            | ServerTimeoutLimit(n)
            | NumberOfReplicas(n)
            | IoMsgWatermark(n)
            | IoBytesWatermark(n)
            | IoKeyPrefetch(n)
            | SocketSendSize(n)
            | SocketRecvSize(n) => n.into(),
        };
        Ok((self.flag(), value))
    }

    /// The flag and raw value for `client`, after checking the value against the client's
    /// protocol, servers and other behaviors; `None` when there is nothing to set.
    pub(crate) fn prepare(
        self,
        client: &Client,
    ) -> Result<Option<(sys::memcached_behavior_t, u64)>> {
        use Behavior::*;
        let raw = self.to_raw()?;
        let binary = client.is_binary();
        let udp = client.behavior_raw(sys::MEMCACHED_BEHAVIOR_USE_UDP) != 0;
        let removing = client.behavior_raw(sys::MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS) != 0;
        let checked = match self {
            // Already off in binary, where libmemcached refuses the flag whatever its value.
            VerifyKey(false) if binary => return Ok(None),
            VerifyKey(true) if binary => Err(refused(
                self,
                "libmemcached checks keys only in the ASCII protocol (this crate checks them in both)",
            )),
            NoReply(true) if binary => Err(refused(
                self,
                "in the binary protocol a quiet command's error reply desynchronises the connection",
            )),
            NoReply(false) if udp => Err(refused(self, "UDP writes never get a reply")),
            NumberOfReplicas(n) if n > 0 && (!binary || udp) => Err(refused(
                self,
                "only the binary protocol over TCP writes and reads replicas",
            )),
            NumberOfReplicas(n)
                if n > 0 && n >= client.server_count() && client.server_count() > 0 =>
            {
                Err(refused(self, "there must be more servers than replicas"))
            }
            RemoveFailedServers(true) => {
                let distribution = crate::Distribution::from_raw(
                    client.behavior_raw(sys::MEMCACHED_BEHAVIOR_DISTRIBUTION),
                );
                if !distribution.is_some_and(crate::Distribution::is_consistent) {
                    return Err(refused(
                        self,
                        "keys are only rerouted under a consistent distribution; set \
                         Distribution::ConsistentKetama first",
                    ));
                }
                if client.behavior_raw(sys::MEMCACHED_BEHAVIOR_DEAD_TIMEOUT) == 0 {
                    return Err(refused(
                        self,
                        "with no dead timeout a removed server returns to the ring and then \
                         fails every key it owns for good; set DeadTimeout first",
                    ));
                }
                Ok(raw)
            }
            DeadTimeout(d) if d.is_zero() && removing => Err(refused(
                self,
                "remove_failed is on, and with no dead timeout a removed server fails its keys \
                 for good; turn remove_failed off first",
            )),
            Ketama(false) if removing => Err(refused(
                self,
                "remove_failed is on and needs a consistent distribution; turn it off first",
            )),
            Distribution(d) if removing && !d.is_consistent() => Err(refused(
                self,
                "remove_failed is on and needs a consistent distribution; turn it off first",
            )),
            _ => Ok(raw),
        };
        checked.map(Some)
    }

    /// Follow-up work after the behavior is set. libmemcached hashes the ketama ring's points
    /// with the key hash but does not rebuild the ring when the hash changes, so without this
    /// a hash set after the servers places keys differently from the same hash set before them
    /// (724 of 1000 keys on 3 servers). Setting SORT_HOSTS to its current value rebuilds the
    /// ring and changes nothing else.
    pub(crate) fn settle(self, client: &Client) {
        if let Self::Hash(_) | Self::KetamaHash(_) = self {
            client.handle.rebuild_ring();
        }
    }

    /// The order behaviors given together are applied in: distributions and hashes first, in
    /// the order given (`ketama_weighted` resets the hash to MD5, so which comes last matters,
    /// and pylibmc applies a dict's `hash` before its `ketama_weighted`); `remove_failed` last,
    /// as it needs the distribution and dead timeout.
    fn rank(&self) -> u8 {
        match self {
            Self::RemoveFailedServers(false) => 0,
            Self::Ketama(_)
            | Self::KetamaWeighted(_)
            | Self::Distribution(_)
            | Self::Hash(_)
            | Self::KetamaHash(_) => 1,
            Self::RemoveFailedServers(true) => 3,
            _ => 2,
        }
    }

    /// Position in [`all_behaviors`] (pylibmc applies named behaviors in this order).
    fn table_index(&self) -> usize {
        let flag = self.flag();
        BEHAVIORS
            .iter()
            .position(|b| b.flag == flag)
            .unwrap_or(usize::MAX)
    }
}

/// Sorts behaviors given together into the order they are applied in. Stable, so among
/// settings of the same kind (`ketama`, `ketama_weighted` and `distribution` are one kind) the
/// later wins.
pub(crate) fn apply_order(behaviors: &mut [Behavior]) {
    behaviors.sort_by_key(Behavior::rank);
}

fn bool_behavior(flag: sys::memcached_behavior_t, on: bool) -> Behavior {
    use Behavior::*;
    match flag {
        sys::MEMCACHED_BEHAVIOR_NO_BLOCK => NoBlock(on),
        sys::MEMCACHED_BEHAVIOR_TCP_NODELAY => TcpNoDelay(on),
        sys::MEMCACHED_BEHAVIOR_TCP_KEEPALIVE => TcpKeepalive(on),
        sys::MEMCACHED_BEHAVIOR_KETAMA => Ketama(on),
        sys::MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED => KetamaWeighted(on),
        sys::MEMCACHED_BEHAVIOR_SUPPORT_CAS => SupportCas(on),
        sys::MEMCACHED_BEHAVIOR_VERIFY_KEY => VerifyKey(on),
        sys::MEMCACHED_BEHAVIOR_RANDOMIZE_REPLICA_READ => RandomizeReplicaRead(on),
        sys::MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS => RemoveFailedServers(on),
        sys::MEMCACHED_BEHAVIOR_HASH_WITH_PREFIX_KEY => HashWithPrefixKey(on),
        sys::MEMCACHED_BEHAVIOR_NOREPLY => NoReply(on),
        _ => SortHosts(on),
    }
}

fn duration_behavior(flag: sys::memcached_behavior_t, d: Duration) -> Behavior {
    use Behavior::*;
    match flag {
        sys::MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT => ConnectTimeout(d),
        sys::MEMCACHED_BEHAVIOR_POLL_TIMEOUT => PollTimeout(d),
        sys::MEMCACHED_BEHAVIOR_SND_TIMEOUT => SendTimeout(d),
        sys::MEMCACHED_BEHAVIOR_RCV_TIMEOUT => ReceiveTimeout(d),
        sys::MEMCACHED_BEHAVIOR_RETRY_TIMEOUT => RetryTimeout(d),
        sys::MEMCACHED_BEHAVIOR_TCP_KEEPIDLE => TcpKeepIdle(d),
        _ => DeadTimeout(d),
    }
}

fn count_behavior(flag: sys::memcached_behavior_t, n: u32) -> Behavior {
    use Behavior::*;
    match flag {
        sys::MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS => NumberOfReplicas(n),
        sys::MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT => ServerFailureLimit(n),
        sys::MEMCACHED_BEHAVIOR_SERVER_TIMEOUT_LIMIT => ServerTimeoutLimit(n),
        sys::MEMCACHED_BEHAVIOR_IO_MSG_WATERMARK => IoMsgWatermark(n),
        sys::MEMCACHED_BEHAVIOR_IO_BYTES_WATERMARK => IoBytesWatermark(n),
        sys::MEMCACHED_BEHAVIOR_IO_KEY_PREFETCH => IoKeyPrefetch(n),
        sys::MEMCACHED_BEHAVIOR_SOCKET_SEND_SIZE => SocketSendSize(n),
        _ => SocketRecvSize(n),
    }
}

fn refused(behavior: Behavior, why: &str) -> Error {
    Error::InvalidConfig(format!(
        "behavior {} ({behavior:?}) is refused: {why}",
        behavior.name()
    ))
}

/// Whole milliseconds, rounded up, at least 1, within libmemcached's `int32` field.
fn millis(behavior: Behavior, d: Duration) -> Result<u64> {
    let ms = d.as_nanos().div_ceil(1_000_000);
    match ms {
        0 => Err(refused(behavior, "the timeout must be above zero")),
        ms if ms > i32::MAX as u128 => Err(refused(behavior, "the timeout is too long")),
        ms => Ok(ms as u64),
    }
}

/// Whole microseconds, rounded up, within libmemcached's `int32` field (0 = unset).
fn micros(behavior: Behavior, d: Duration) -> Result<u64> {
    let us = d.as_nanos().div_ceil(1_000);
    if us > i32::MAX as u128 {
        return Err(refused(behavior, "the timeout is too long"));
    }
    Ok(us as u64)
}

/// Whole seconds, rounded up, at most `max`.
fn secs(behavior: Behavior, d: Duration, max: u64) -> Result<u64> {
    let s = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    if s > max {
        return Err(refused(
            behavior,
            &format!("the timeout is too long (at most {max} s)"),
        ));
    }
    Ok(s)
}

impl Client {
    /// Sets a behavior by pylibmc name with a raw value in libmemcached's unit, as pylibmc's
    /// `behaviors[name] = value`: `("connect_timeout", 4000)`, `("hash", "fnv1a_32")`,
    /// `("distribution", "consistent ketama")`, `("ketama", true)`. See [`Behavior::from_name`].
    pub fn set_behavior_by_name(&self, name: &str, value: impl fmt::Display) -> Result<()> {
        self.set_behaviors_by_name([(name, value)])
    }

    /// Sets several behaviors by name, as pylibmc's `set_behaviors(dict)`. Every name and value
    /// is checked before any is set; unknown names are all listed in one error. They are
    /// applied in pylibmc's table order, so keys land where pylibmc puts them whatever the order
    /// given (a `hash` is applied before `ketama_weighted`, which resets it to MD5), except that
    /// `remove_failed` comes after the distribution and `dead_timeout` it needs. A setting
    /// refused for this client (see [`Behavior`]) stops there; the ones applied before it stay.
    ///
    /// ```no_run
    /// # let mc = libmemcached::Client::new(["127.0.0.1:11211"])?;
    /// mc.set_behaviors_by_name([
    ///     ("remove_failed", "1"),
    ///     ("distribution", "consistent ketama"),
    ///     ("retry_timeout", "1"),
    ///     ("dead_timeout", "60"),
    /// ])?;
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn set_behaviors_by_name<I, N, V>(&self, behaviors: I) -> Result<()>
    where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<str>,
        V: fmt::Display,
    {
        for behavior in parse_named(behaviors)? {
            self.set_behavior(behavior)?;
        }
        Ok(())
    }

    /// The current value of a behavior by pylibmc name, in the raw form
    /// [`Client::set_behavior_by_name`] takes (hash and distribution by name).
    pub fn behavior_by_name(&self, name: &str) -> Result<BehaviorValue> {
        Ok(self.read_behavior(lookup(name)?))
    }

    /// Every behavior's current value by name, in [`all_behaviors`]' order, as pylibmc's
    /// `get_behaviors()`, except that `ketama_hash` reads back as a name too (pylibmc gives a
    /// number). Reading does not touch the network (pylibmc connects to the first server to
    /// read the socket sizes; here 0 means the OS default).
    ///
    /// ```no_run
    /// # let mc = libmemcached::Client::new(["127.0.0.1:11211"])?;
    /// for (name, value) in mc.behaviors() {
    ///     println!("{name} = {value}");
    /// }
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn behaviors(&self) -> Vec<(&'static str, BehaviorValue)> {
        BEHAVIORS
            .iter()
            .map(|info| (info.name, self.read_behavior(info)))
            .collect()
    }

    fn read_behavior(&self, info: &BehaviorInfo) -> BehaviorValue {
        let raw = match info.flag {
            // libmemcached would connect to the first server to read the OS value.
            sys::MEMCACHED_BEHAVIOR_SOCKET_SEND_SIZE | sys::MEMCACHED_BEHAVIOR_SOCKET_RECV_SIZE => {
                let (send, recv) = self.handle.socket_sizes();
                let size = if info.flag == sys::MEMCACHED_BEHAVIOR_SOCKET_SEND_SIZE {
                    send
                } else {
                    recv
                };
                return BehaviorValue::Number(size.max(0).into());
            }
            flag => self.behavior_raw(flag),
        };
        match info.kind {
            Kind::Hash => Hash::from_raw(raw).map_or(BehaviorValue::Number(raw as i64), |h| {
                BehaviorValue::Name(h.name())
            }),
            Kind::Distribution => Distribution::from_raw(raw)
                .map_or(BehaviorValue::Number(raw as i64), |d| {
                    BehaviorValue::Name(d.name())
                }),
            // Signed C fields (timeouts) come back sign-extended, so -1 reads as -1; the
            // others are u32.
            _ => BehaviorValue::Number(raw as i64),
        }
    }

    /// How many servers the client has.
    pub(crate) fn server_count(&self) -> u32 {
        self.handle.server_count() as u32
    }

    /// Checks the behaviors that depend on the servers, once they are all added.
    pub(crate) fn check_behaviors(&self) -> Result<()> {
        let replicas = self.behavior_raw(sys::MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS);
        if replicas > 0 && replicas >= u64::from(self.server_count()) {
            return Err(Error::InvalidConfig(format!(
                "{replicas} replicas need at least {} servers",
                replicas + 1
            )));
        }
        Ok(())
    }
}

/// Parses `(name, value)` pairs into behaviors in the order they are applied in. Unknown names
/// are reported together.
pub(crate) fn parse_named<I, N, V>(pairs: I) -> Result<Vec<Behavior>>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<str>,
    V: fmt::Display,
{
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(n, v)| (n.as_ref().trim().to_owned(), v.to_string()))
        .collect();
    let unknown_names: Vec<&str> = pairs
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| lookup(n).is_err() && !REFUSED.iter().any(|(r, _)| r == n))
        .collect();
    if !unknown_names.is_empty() {
        return Err(unknown(&unknown_names));
    }
    // pylibmc: `retry_timeout` wins over its old name `_retry_timeout`.
    let explicit_retry = pairs.iter().any(|(n, _)| n == "retry_timeout");
    let mut behaviors = pairs
        .iter()
        .filter(|(n, _)| !(explicit_retry && n == "_retry_timeout"))
        .map(|(n, v)| Behavior::from_name(n, v))
        .collect::<Result<Vec<_>>>()?;
    // A map has no order: apply in pylibmc's table order (so `distribution` after `ketama`),
    // then by dependency.
    behaviors.sort_by_key(Behavior::table_index);
    apply_order(&mut behaviors);
    Ok(behaviors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_converted_and_rounded_up() {
        let raw = |b: Behavior| b.to_raw().unwrap().1;
        assert_eq!(
            raw(Behavior::ConnectTimeout(Duration::from_millis(500))),
            500
        );
        assert_eq!(raw(Behavior::PollTimeout(Duration::from_micros(1))), 1);
        assert_eq!(raw(Behavior::RetryTimeout(Duration::from_millis(1500))), 2);
        assert_eq!(raw(Behavior::DeadTimeout(Duration::from_secs(60))), 60);
        assert_eq!(raw(Behavior::SendTimeout(Duration::from_millis(3))), 3000);
        assert_eq!(raw(Behavior::ReceiveTimeout(Duration::from_nanos(1))), 1);
        assert_eq!(
            raw(Behavior::TcpKeepIdle(Duration::from_secs(32_767))),
            32_767
        );
    }

    #[test]
    fn dangerous_values_are_refused() {
        let refused = |b: Behavior| assert!(b.to_raw().is_err(), "{b:?} was accepted");
        refused(Behavior::PollTimeout(Duration::ZERO));
        refused(Behavior::ConnectTimeout(Duration::ZERO));
        refused(Behavior::ConnectTimeout(Duration::from_secs(u64::MAX)));
        refused(Behavior::SendTimeout(Duration::from_secs(3600)));
        refused(Behavior::ServerFailureLimit(0));
        refused(Behavior::TcpKeepIdle(Duration::from_secs(32_768)));
        refused(Behavior::TcpKeepIdle(Duration::from_millis(32_767_001)));
        refused(Behavior::IoMsgWatermark(0));
        refused(Behavior::IoBytesWatermark(0));
        refused(Behavior::SocketSendSize(u32::MAX));
        if !Hash::Hsieh.is_available() {
            refused(Behavior::Hash(Hash::Hsieh));
            refused(Behavior::KetamaHash(Hash::Hsieh));
        }
    }

    #[test]
    fn names_and_raw_values_round_trip() {
        for (name, value) in [
            ("connect_timeout", "4000"),
            ("_poll_timeout", "250"),
            ("send_timeout", "1500"),
            ("retry_timeout", "1"),
            ("dead_timeout", "60"),
            ("tcp_keepidle", "30"),
            ("hash", "fnv1a_32"),
            ("ketama_hash", "md5"),
            ("distribution", "consistent ketama"),
            ("ketama", "1"),
            ("cas", "0"),
            ("failure_limit", "2"),
            ("num_replicas", "1"),
            ("_socket_send_size", "65536"),
        ] {
            let behavior = Behavior::from_name(name, value).unwrap();
            assert_eq!(behavior.name(), name);
            assert_eq!(behavior.raw_value().unwrap().to_string(), value, "{name}");
        }
        assert_eq!(
            Behavior::from_name("_retry_timeout", 3).unwrap(),
            Behavior::RetryTimeout(Duration::from_secs(3))
        );
        assert_eq!(
            Behavior::from_name("remove_failed", 3).unwrap(),
            Behavior::RemoveFailedServers(true)
        );
        assert_eq!(
            Behavior::from_name("ketama", true).unwrap(),
            Behavior::Ketama(true)
        );
        assert_eq!(
            Behavior::from_name("distribution", "consistent_weighted").unwrap(),
            Behavior::Distribution(Distribution::ConsistentWeighted)
        );
        assert_eq!(
            Behavior::from_name("hash", 6).unwrap(),
            Behavior::Hash(Hash::Fnv1a_32)
        );
    }

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
    fn bad_names_and_values_say_what_is_wrong() {
        let message = |r: Result<Behavior>| r.unwrap_err().to_string();
        assert!(message(Behavior::from_name("bogus", 1)).contains("unknown behavior names: bogus"));
        assert!(message(Behavior::from_name("pickle_protocol", 2)).contains("pickle"));
        assert!(message(Behavior::from_name("buffer_requests", 1)).contains("aborts"));
        assert!(message(Behavior::from_name("auto_eject", 1)).contains("remove_failed"));
        assert!(message(Behavior::from_name("connect_timeout", -1)).contains("negative"));
        assert!(message(Behavior::from_name("connect_timeout", "1.5")).contains("whole number"));
        assert!(message(Behavior::from_name("_poll_timeout", 0)).contains("above zero"));
        assert!(message(Behavior::from_name("hash", "sha1")).contains("unknown hash"));
        assert!(message(Behavior::from_name("distribution", "virtual bucket")).contains("refused"));
        assert!(message(Behavior::from_name("distribution", 6)).contains("refused"));
        assert!(message(Behavior::from_name("tcp_keepidle", 40_000)).contains("32767"));
        assert!(message(Behavior::from_name("failure_limit", 1u64 << 40)).contains("too large"));
        let err = parse_named([("zeta", "1"), ("alpha", "1"), ("hash", "md5")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown behavior names: alpha, zeta"),
            "{err}"
        );
    }

    #[test]
    fn named_behaviors_apply_in_pylibmc_order_with_remove_failed_last() {
        let order = parse_named([
            ("remove_failed", "1"),
            ("hash", "crc"),
            ("dead_timeout", "5"),
            ("ketama_weighted", "1"),
            ("distribution", "consistent ketama"),
        ])
        .unwrap();
        let names: Vec<&str> = order.iter().map(Behavior::name).collect();
        assert_eq!(
            names,
            [
                "hash",
                "ketama_weighted",
                "distribution",
                "dead_timeout",
                "remove_failed"
            ]
        );
        let mut typed = vec![
            Behavior::Distribution(Distribution::ConsistentKetama),
            Behavior::RemoveFailedServers(true),
            Behavior::KetamaWeighted(true),
            Behavior::Hash(Hash::Crc),
        ];
        apply_order(&mut typed);
        assert_eq!(
            typed,
            [
                Behavior::Distribution(Distribution::ConsistentKetama),
                Behavior::KetamaWeighted(true),
                Behavior::Hash(Hash::Crc),
                Behavior::RemoveFailedServers(true),
            ],
            "the later of distribution and ketama_weighted wins"
        );
        let retry = parse_named([("_retry_timeout", "9"), ("retry_timeout", "1")]).unwrap();
        assert_eq!(retry, [Behavior::RetryTimeout(Duration::from_secs(1))]);
    }

    #[test]
    fn hashes_and_distributions_parse_by_name() {
        for &(name, hash) in hashers() {
            assert_eq!(name.parse::<Hash>().unwrap(), hash);
            assert_eq!(hash.to_string(), name);
        }
        for &(name, d) in distributions() {
            assert_eq!(name.parse::<Distribution>().unwrap(), d);
            assert_eq!(d.to_string(), name);
        }
        assert!(Hash::Default.is_available() && Hash::Md5.is_available());
        assert!(Distribution::ConsistentKetama.is_consistent());
        assert!(!Distribution::Modula.is_consistent());
    }
}
