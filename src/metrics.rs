//! Client-side counters: what a client asked, found and failed at, as a [`Metrics`] snapshot.
//!
//! Every client counts as it works; [`Client::metrics`](crate::Client::metrics) reads its
//! counters and the pools and the async client add up those of their clients. Reading never
//! stops a client: the counters are atomics that only their client writes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, ErrorKind};
use crate::server::Address;

/// A snapshot of a client's counters (or the sum over a pool's clients), from when the client
/// was made. Operations and errors are calls made through the public API; hits, misses and
/// bytes are counted per key and value.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = libmemcached::testing::TestServer::from_env_or_spawn()?;
/// let mc = libmemcached::Client::new([server.spec()])?;
/// mc.set("metrics:a", "1", 0)?;
/// let _: Option<String> = mc.get("metrics:a")?;
/// let _: Option<String> = mc.get("metrics:nothing")?;
/// let m = mc.metrics();
/// assert_eq!((m.operations, m.hits, m.misses), (3, 1, 1));
/// assert_eq!((m.bytes_sent, m.bytes_received), (1, 1));
/// assert_eq!(m.errors.total(), 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Metrics {
    /// Calls of key operations (a multi-key call is one), `stats`, `version` and `flush_all`.
    pub operations: u64,
    /// Keys a read (`get`, `gets`, the multi-gets) found.
    pub hits: u64,
    /// Keys a read asked for that the server said are not there (not those of failed servers).
    pub misses: u64,
    /// Value bytes of the writes a server answered (or, for `bulk_set`, took without an
    /// answer), as stored: after compression.
    pub bytes_sent: u64,
    /// Value bytes received, as stored (before inflating).
    pub bytes_received: u64,
    /// Loader calls of `get_or_set_with` (misses this client loaded).
    pub loads: u64,
    /// `get_or_set_with` misses that waited for another caller's load in this process instead
    /// of loading.
    pub load_waits: u64,
    /// `get_or_set_with` misses that found the key's lock held (another process loading) and
    /// polled for its value ([`CacheAside::lock`](crate::CacheAside::lock)).
    pub lock_waits: u64,
    /// Stale values `get_or_set_with` returned while another caller refreshed them
    /// ([`CacheAside::stale_for`](crate::CacheAside::stale_for)).
    pub stale_served: u64,
    /// Failed calls by kind; a multi-key call counts each failure it reports, by server.
    /// Misses and `incr` of a missing key are not errors.
    pub errors: ErrorCounts,
    /// Per server that failed at least once: its errors, and whether it is failing now.
    pub servers: Vec<ServerMetrics>,
}

/// One server's share of [`Metrics`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ServerMetrics {
    /// The server (as its spec, with the `serde` feature).
    #[cfg_attr(feature = "serde", serde(serialize_with = "as_text"))]
    pub address: Address,
    /// Its errors, by kind.
    pub errors: ErrorCounts,
    /// Its last call failed on a connection, a timeout or a dead mark, and no key on it has
    /// been answered since.
    pub failing: bool,
}

/// Error counts by [`ErrorKind`]. With the `serde` feature it serializes as a map from each
/// kind's [name](ErrorKind::as_str) to its count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; ErrorKind::ALL.len()]);

#[cfg(feature = "serde")]
impl serde::Serialize for ErrorCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter().map(|(kind, n)| (kind.as_str(), n)))
    }
}

#[cfg(feature = "serde")]
fn as_text<S: serde::Serializer>(address: &Address, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(address)
}

impl ErrorCounts {
    /// The count of one kind.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.0[kind as usize]
    }

    /// The count over every kind.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Each kind with its count, zeros included, in [`ErrorKind::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL.iter().map(|&kind| (kind, self.get(kind)))
    }

    fn add(&mut self, other: &ErrorCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

impl Metrics {
    /// Adds `other`'s counts to these (servers matched by address).
    pub fn merge(&mut self, other: &Metrics) {
        self.operations += other.operations;
        self.hits += other.hits;
        self.misses += other.misses;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.loads += other.loads;
        self.load_waits += other.load_waits;
        self.lock_waits += other.lock_waits;
        self.stale_served += other.stale_served;
        self.errors.add(&other.errors);
        for theirs in &other.servers {
            match self
                .servers
                .iter_mut()
                .find(|s| s.address == theirs.address)
            {
                Some(mine) => {
                    mine.errors.add(&theirs.errors);
                    mine.failing |= theirs.failing;
                }
                None => self.servers.push(theirs.clone()),
            }
        }
    }

    /// The sum of several clients' counters.
    pub(crate) fn sum<'a>(counters: impl IntoIterator<Item = &'a Counters>) -> Metrics {
        let mut total = Metrics::default();
        for c in counters {
            total.merge(&c.snapshot());
        }
        total
    }
}

/// A count with a single writer: the client that owns it (`Client` is not `Sync`, so one
/// thread at a time). A load and a store, not a locked read-modify-write; readers on other
/// threads see a recent value.
#[derive(Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What an error says about its server (see [`ServerMetrics::failing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// Not a failure of the server itself, or no server is known.
    Unchanged,
    /// The server was answering and fails now.
    NowFailing,
    /// The server was failing already.
    StillFailing,
}

/// One client's counters, shared with the pool or async client that reads them.
#[derive(Default)]
pub(crate) struct Counters {
    pub operations: Count,
    pub hits: Count,
    pub misses: Count,
    pub bytes_sent: Count,
    pub bytes_received: Count,
    pub loads: Count,
    pub load_waits: Count,
    pub lock_waits: Count,
    pub stale_served: Count,
    /// Whether any server is failing (see [`ServerMetrics::failing`]): the one check a
    /// successful call makes.
    any_failing: AtomicBool,
    errors: Mutex<Errors>,
}

#[derive(Default)]
struct Errors {
    total: ErrorCounts,
    servers: Vec<ServerMetrics>,
}

impl Counters {
    pub(crate) fn new() -> Arc<Counters> {
        Arc::default()
    }

    fn errors(&self) -> MutexGuard<'_, Errors> {
        // Only counting happens under the lock, which cannot leave the counts half-written.
        self.errors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `n` failures of one error, and says what it means for its server's health.
    pub(crate) fn record_error(&self, error: &Error, n: u64) -> Health {
        let kind = error.kind();
        let mut errors = self.errors();
        errors.total.0[kind as usize] += n;
        let Some(address) = error.server() else {
            return Health::Unchanged;
        };
        let index = match errors.servers.iter().position(|s| &s.address == address) {
            Some(i) => i,
            None => {
                errors.servers.push(ServerMetrics {
                    address: address.clone(),
                    errors: ErrorCounts::default(),
                    failing: false,
                });
                errors.servers.len() - 1
            }
        };
        let server = &mut errors.servers[index];
        server.errors.0[kind as usize] += n;
        let down = matches!(
            kind,
            ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::ServerDown
        );
        match (down, server.failing) {
            (false, _) => Health::Unchanged,
            (true, true) => Health::StillFailing,
            (true, false) => {
                server.failing = true;
                self.any_failing.store(true, Ordering::Relaxed);
                Health::NowFailing
            }
        }
    }

    /// Whether any server is failing.
    #[inline]
    pub(crate) fn any_failing(&self) -> bool {
        self.any_failing.load(Ordering::Relaxed)
    }

    /// Notes that `address` answered; returns whether it was failing.
    pub(crate) fn answered(&self, address: &Address) -> bool {
        let mut errors = self.errors();
        let Some(server) = errors
            .servers
            .iter_mut()
            .find(|s| &s.address == address && s.failing)
        else {
            return false;
        };
        server.failing = false;
        let still = errors.servers.iter().any(|s| s.failing);
        self.any_failing.store(still, Ordering::Relaxed);
        true
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let errors = self.errors();
        Metrics {
            operations: self.operations.get(),
            hits: self.hits.get(),
            misses: self.misses.get(),
            bytes_sent: self.bytes_sent.get(),
            bytes_received: self.bytes_received.get(),
            loads: self.loads.get(),
            load_waits: self.load_waits.get(),
            lock_waits: self.lock_waits.get(),
            stale_served: self.stale_served.get(),
            errors: errors.total,
            servers: errors.servers.clone(),
        }
    }
}

/// The counters of a group of clients (a pool's, an async client's workers'), including clients
/// already dropped, so that the sums never go back.
#[derive(Default)]
pub(crate) struct Group {
    members: Mutex<Vec<Arc<Counters>>>,
    /// What members gone since added up to.
    retired: Mutex<Metrics>,
}

impl Group {
    /// Counts `counters` in the group from now on.
    pub(crate) fn join(&self, counters: &Arc<Counters>) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        // Fold the counters of clients that are gone, so the list stays as long as the clients.
        let (gone, live): (Vec<_>, Vec<_>) =
            members.drain(..).partition(|c| Arc::strong_count(c) == 1);
        *members = live;
        if !gone.is_empty() {
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            retired.merge(&Metrics::sum(gone.iter().map(|c| &**c)));
        }
        members.push(Arc::clone(counters));
    }

    /// The sum over every client that was ever in the group.
    pub(crate) fn snapshot(&self) -> Metrics {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = self
            .retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        total.merge(&Metrics::sum(members.iter().map(|c| &**c)));
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReturnCode;

    fn connection_error(server: &str) -> Error {
        Error::Memcached {
            code: ReturnCode::ConnectionFailure,
            message: "CONNECTION FAILURE".into(),
            key: None,
            server: Some(server.parse().unwrap()),
        }
    }

    #[test]
    fn errors_count_by_kind_and_server_and_failing_servers_come_back() {
        let c = Counters::default();
        let failed = |e: &Error, n| c.record_error(e, n);
        assert_eq!(
            failed(&connection_error("127.0.0.1:1"), 2),
            Health::NowFailing
        );
        assert_eq!(
            failed(&connection_error("127.0.0.1:1"), 1),
            Health::StillFailing
        );
        let input = Error::argument("x", "y");
        assert_eq!(failed(&input, 1), Health::Unchanged);
        assert!(c.any_failing());
        let m = c.snapshot();
        assert_eq!(m.errors.get(ErrorKind::Connection), 3);
        assert_eq!(m.errors.get(ErrorKind::Input), 1);
        assert_eq!(m.errors.total(), 4);
        assert_eq!(m.servers.len(), 1);
        assert!(m.servers[0].failing);
        assert_eq!(m.servers[0].errors.total(), 3);

        assert!(c.answered(&"127.0.0.1:1".parse().unwrap()));
        assert!(!c.answered(&"127.0.0.1:1".parse().unwrap()));
        assert!(!c.any_failing());
        assert!(!c.snapshot().servers[0].failing);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn metrics_serialize_with_kinds_and_servers_as_text() {
        let c = Counters::default();
        c.operations.add(3);
        c.record_error(&connection_error("127.0.0.1:1"), 1);
        let json = serde_json::to_value(c.snapshot()).unwrap();
        assert_eq!(json["operations"], 3);
        assert_eq!(json["errors"]["connection"], 1);
        assert_eq!(json["errors"]["timeout"], 0);
        assert_eq!(json["servers"][0]["address"], "127.0.0.1:1");
        assert_eq!(json["servers"][0]["failing"], true);
    }

    #[test]
    fn groups_keep_the_counts_of_clients_that_are_gone() {
        let group = Group::default();
        let first = Counters::new();
        first.operations.add(5);
        first.record_error(&connection_error("127.0.0.1:1"), 1);
        group.join(&first);
        drop(first);
        let second = Counters::new();
        second.operations.add(2);
        second.record_error(&connection_error("127.0.0.1:1"), 1);
        group.join(&second);
        let third = Counters::new();
        group.join(&third);
        let m = group.snapshot();
        assert_eq!(m.operations, 7);
        assert_eq!(m.servers.len(), 1);
        assert_eq!(m.servers[0].errors.get(ErrorKind::Connection), 2);
        assert_eq!(group.members.lock().unwrap().len(), 2);
    }
}
