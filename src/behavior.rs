//! Behaviors: libmemcached's tuning knobs, with typed values in the right units.

use std::time::Duration;

use libmemcached_sys as sys;

use crate::error::{Error, Result};

/// A libmemcached behavior with a typed value.
///
/// Timeouts are [`Duration`]s, converted to the unit libmemcached expects for each one
/// (milliseconds for connect and poll, seconds for retry and dead), rounded up, so there is no
/// unit to guess. Values libmemcached would misbehave on are refused with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behavior {
    /// `SO_LINGER {1, 0}` on close (sockets are always non-blocking in libmemcached 1.1).
    NoBlock(bool),
    /// `TCP_NODELAY`. On by default in this crate: without it a binary multi-get of missing keys
    /// stalls about 40 ms.
    TcpNoDelay(bool),
    /// `SO_KEEPALIVE`.
    TcpKeepalive(bool),
    /// How long to wait for a connect (default 4 s). DNS lookups are not covered.
    ConnectTimeout(Duration),
    /// How long to wait in each `poll()` for a server to become readable or writable
    /// (default 5 s). This bounds a request to a server that accepts but never answers.
    PollTimeout(Duration),
    /// How long a server that failed is skipped before a reconnect is tried (default 2 s).
    RetryTimeout(Duration),
    /// How long an ejected server stays out of the ring (default 0: ejection is off).
    DeadTimeout(Duration),
    /// Failures in a row before a server is ejected (default 5; at least 1).
    ServerFailureLimit(u32),
    /// Eject a server after [`Behavior::ServerFailureLimit`] failures. Needs a consistent
    /// distribution and a [`Behavior::DeadTimeout`] above zero to fail over.
    RemoveFailedServers(bool),
    /// Ask for CAS tokens on every get (`gets` and `cas` work without it).
    SupportCas(bool),
    /// The key hash.
    Hash(Hash),
    /// How keys are spread over servers.
    Distribution(Distribution),
}

/// A key hash function. The names follow libmemcached's and pylibmc's (`fnv1a_32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(non_camel_case_types)]
pub enum Hash {
    /// Jenkins one-at-a-time (libmemcached's default).
    Default,
    /// MD5.
    Md5,
    /// CRC32 (15 bits), compatible with python-memcached.
    Crc,
    /// FNV-1, 64 bit.
    Fnv1_64,
    /// FNV-1a, 64 bit.
    Fnv1a_64,
    /// FNV-1, 32 bit.
    Fnv1_32,
    /// FNV-1a, 32 bit.
    Fnv1a_32,
    /// Hsieh (only if libmemcached was built with it; Debian's is not).
    Hsieh,
    /// Murmur.
    Murmur,
    /// Jenkins lookup3.
    Jenkins,
    /// Murmur3.
    Murmur3,
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
}

/// How keys are spread over servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Distribution {
    /// Hash modulo the number of servers (libmemcached's default).
    Modula,
    /// Consistent hashing (the same as `ConsistentKetama`).
    Consistent,
    /// Ketama consistent hashing.
    ConsistentKetama,
    /// A random server per key.
    Random,
    /// Ketama as spymemcached computes it.
    ConsistentKetamaSpy,
    /// Ketama with server weights (MD5).
    ConsistentWeighted,
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
}

impl Behavior {
    /// The libmemcached flag and raw value, after checking the value.
    pub(crate) fn to_raw(self) -> Result<(sys::memcached_behavior_t, u64)> {
        use Behavior::*;
        Ok(match self {
            NoBlock(on) => (sys::MEMCACHED_BEHAVIOR_NO_BLOCK, on.into()),
            TcpNoDelay(on) => (sys::MEMCACHED_BEHAVIOR_TCP_NODELAY, on.into()),
            TcpKeepalive(on) => (sys::MEMCACHED_BEHAVIOR_TCP_KEEPALIVE, on.into()),
            ConnectTimeout(d) => (sys::MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, millis(self, d)?),
            PollTimeout(d) => (sys::MEMCACHED_BEHAVIOR_POLL_TIMEOUT, millis(self, d)?),
            RetryTimeout(d) => (sys::MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, secs(self, d)?),
            DeadTimeout(d) => (sys::MEMCACHED_BEHAVIOR_DEAD_TIMEOUT, secs(self, d)?),
            ServerFailureLimit(0) => return Err(refused(self, "the limit must be at least 1")),
            ServerFailureLimit(n) => (sys::MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, n.into()),
            RemoveFailedServers(on) => (sys::MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, on.into()),
            SupportCas(on) => (sys::MEMCACHED_BEHAVIOR_SUPPORT_CAS, on.into()),
            Hash(h) => (sys::MEMCACHED_BEHAVIOR_HASH, h.to_raw().into()),
            Distribution(d) => (sys::MEMCACHED_BEHAVIOR_DISTRIBUTION, d.to_raw().into()),
        })
    }
}

fn refused(behavior: Behavior, why: &str) -> Error {
    Error::InvalidConfig(format!("{behavior:?}: {why}"))
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

/// Whole seconds, rounded up, within libmemcached's `int32` field.
fn secs(behavior: Behavior, d: Duration) -> Result<u64> {
    let s = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    if s > i32::MAX as u64 {
        return Err(refused(behavior, "the timeout is too long"));
    }
    Ok(s)
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
    }

    #[test]
    fn dangerous_values_are_refused() {
        assert!(Behavior::PollTimeout(Duration::ZERO).to_raw().is_err());
        assert!(
            Behavior::ConnectTimeout(Duration::from_secs(u64::MAX))
                .to_raw()
                .is_err()
        );
        assert!(Behavior::ServerFailureLimit(0).to_raw().is_err());
    }
}
