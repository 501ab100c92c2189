//! The relay behind [`ClientBuilder::shield`](crate::ClientBuilder::shield) and
//! [`ClientBuilder::tls`](crate::ClientBuilder::tls): libmemcached connects to a loopback
//! listener the relay keeps for each server, and the relay carries the connection on to the
//! server (over TLS where asked), passing on only replies the shield finds well-formed.
//!
//! libmemcached keeps each server's name and port as configured; only the address its
//! connections go to changes (`ffi::route`), so keys are placed, failures counted and errors
//! named as without the relay. One thread per client (its clones and pools included) serves
//! every connection with one epoll loop; it ends when the last handle goes.

mod conn;
mod event_loop;
mod peer;
#[cfg(feature = "tls")]
pub(crate) mod tls;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A server's listener address, reachability and addresses.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub listener: SocketAddr,
    pub reachability: Reachability,
    pub target: Arc<Target>,
}

/// A server as configured: the relay's connections for it go to this name and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Upstream {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') && !self.host.starts_with('[') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where a server is: its addresses, looked up on the callers' threads (never the relay's, which
/// a slow lookup would stall for every server), again at most once a second while the server
/// cannot be reached.
#[derive(Debug)]
pub(crate) struct Target {
    pub upstream: Upstream,
    looked_up: Mutex<(std::time::Instant, Addresses)>,
}

/// A server's addresses, in the order to try them, or why there are none.
type Addresses = Result<Arc<[SocketAddr]>, String>;

impl Target {
    fn new(upstream: Upstream) -> Target {
        let found = lookup(&upstream);
        Target {
            upstream,
            looked_up: Mutex::new((std::time::Instant::now(), found)),
        }
    }

    /// The addresses to try, in order, or why there are none.
    pub(crate) fn addresses(&self) -> Addresses {
        lock(&self.looked_up).1.clone()
    }

    /// Looks the host up again, if the last lookup is over a second old.
    pub(crate) fn look_up_again(&self) {
        let stale = lock(&self.looked_up).0.elapsed() > Duration::from_secs(1);
        if stale {
            let found = lookup(&self.upstream);
            *lock(&self.looked_up) = (std::time::Instant::now(), found);
        }
    }
}

fn lookup(upstream: &Upstream) -> Addresses {
    use std::net::ToSocketAddrs;
    let host = upstream.host.trim_start_matches('[').trim_end_matches(']');
    match (host, upstream.port).to_socket_addrs() {
        Ok(found) => {
            let found: Arc<[SocketAddr]> = found.collect();
            if found.is_empty() {
                Err("the host has no address".into())
            } else {
                Ok(found)
            }
        }
        Err(error) => Err(format!("cannot look the host up: {error}")),
    }
}

/// What the relay knows of a server's reachability, shared with the handles (see
/// `ffi::route`): [`REACHABLE`], [`UNREACHABLE`] or [`CHECKING`].
pub(crate) type Reachability = Arc<AtomicU8>;
pub(crate) const REACHABLE: u8 = 0;
/// libmemcached's connections to the server fail at once, as they would without the relay.
pub(crate) const UNREACHABLE: u8 = 1;
/// The server closed a connection; whether it is gone is being checked.
pub(crate) const CHECKING: u8 = 2;

/// What every connection of a relay is configured with.
#[derive(Clone)]
pub(crate) struct Settings {
    /// The largest value a reply may announce (the server's item size limit).
    pub max_value: usize,
    #[cfg(feature = "tls")]
    pub tls: Option<tls::Connector>,
}

/// What the relay's thread and its owners share.
struct Shared {
    waker: mio::Waker,
    /// Listeners made by [`Relay::endpoint`], for the loop to take.
    new_listeners: Mutex<Vec<(TcpListener, Endpoint)>>,
    endpoints: Mutex<HashMap<Upstream, Endpoint>>,
    /// Signalled when a check of a server ends.
    checked: (Mutex<()>, Condvar),
    /// A second descriptor of every listener, open as long as any handle holds the relay: were
    /// the thread to end, a connection to a listener would still be accepted (and then time
    /// out, or fail at once once calls see the relay has ended), never refused.
    kept_open: Mutex<Vec<TcpListener>>,
    /// The last failure seen on each server's connections, until one of them is answered.
    failures: Mutex<HashMap<Upstream, String>>,
    any_failure: AtomicBool,
    /// Set when the last [`Relay`] goes: the loop closes everything and ends.
    closing: AtomicBool,
    /// Set when the loop has ended, for whatever reason.
    ended: AtomicBool,
    settings: Settings,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one still holds consistent data.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Whether `address` is where one of the relay's listeners listens.
    fn is_own_listener(&self, address: &SocketAddr) -> bool {
        lock(&self.endpoints)
            .values()
            .any(|endpoint| endpoint.listener == *address)
    }

    fn record_failure(&self, upstream: &Upstream, why: String) {
        crate::trace::relay_failure(upstream, &why);
        lock(&self.failures).insert(upstream.clone(), why);
        self.any_failure.store(true, Ordering::Release);
    }

    fn clear_failure(&self, upstream: &Upstream) {
        if self.any_failure.load(Ordering::Acquire) {
            let mut failures = lock(&self.failures);
            failures.remove(upstream);
            self.any_failure
                .store(!failures.is_empty(), Ordering::Release);
        }
    }
}

/// A running relay. Handles share it; when the last one goes, the relay's thread closes every
/// connection and ends, without being waited for.
pub(crate) struct Relay {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("servers", &lock(&self.shared.endpoints).len())
            .finish()
    }
}

impl Relay {
    /// Starts the relay's thread.
    pub(crate) fn start(settings: Settings) -> io::Result<Relay> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), event_loop::WAKER)?;
        let shared = Arc::new(Shared {
            waker,
            new_listeners: Mutex::default(),
            endpoints: Mutex::default(),
            checked: (Mutex::new(()), Condvar::new()),
            kept_open: Mutex::default(),
            failures: Mutex::default(),
            any_failure: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            settings,
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("memcached-relay".into())
            .spawn(move || event_loop::run(poll, thread_shared))?;
        Ok(Relay { shared })
    }

    /// The loopback address libmemcached connects to for `upstream`, and the flag the relay
    /// sets while it cannot reach the server; the first call for a server opens its listener.
    pub(crate) fn endpoint(&self, upstream: &Upstream) -> io::Result<Endpoint> {
        let mut endpoints = lock(&self.shared.endpoints);
        if let Some(endpoint) = endpoints.get(upstream) {
            return Ok(endpoint.clone());
        }
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let endpoint = Endpoint {
            listener: listener.local_addr()?,
            reachability: Arc::new(AtomicU8::new(REACHABLE)),
            target: Arc::new(Target::new(upstream.clone())),
        };
        lock(&self.shared.kept_open).push(listener.try_clone()?);
        lock(&self.shared.new_listeners).push((listener, endpoint.clone()));
        self.shared.waker.wake()?;
        endpoints.insert(upstream.clone(), endpoint.clone());
        Ok(endpoint)
    }

    /// Waits (at most `limit`) while the relay checks whether a server that closed a connection
    /// is gone: libmemcached would have found out by connecting to it.
    pub(crate) fn await_check(&self, reachability: &AtomicU8, limit: Duration) {
        let (lock_, signal) = &self.shared.checked;
        let deadline = std::time::Instant::now() + limit;
        let mut guard = lock(lock_);
        while reachability.load(Ordering::Acquire) == CHECKING {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            guard = signal
                .wait_timeout(guard, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Whether the relay's thread still serves connections.
    pub(crate) fn is_running(&self) -> bool {
        !self.shared.ended.load(Ordering::Acquire)
    }

    /// What the relay last saw go wrong on `upstream`'s connections, if nothing has been
    /// answered there since.
    pub(crate) fn failure(&self, upstream: &Upstream) -> Option<String> {
        if !self.shared.any_failure.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.shared.failures).get(upstream).cloned()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        // A failed wake leaves the thread waiting on nothing; the listeners it holds stay
        // open, which is all a dropped client loses.
        let _ = self.shared.waker.wake();
    }
}

/// memcached's largest item size limit (`-I 1024m`): no well-formed reply announces a longer
/// value, and libmemcached must never be asked to allocate for one.
pub(crate) const MAX_VALUE: usize = 1 << 30;

/// Sends every connection of `client` (and of its clones and pools) through a new relay.
pub(crate) fn shield(client: &mut crate::Client, settings: Settings) -> crate::Result<()> {
    use crate::error::{ConfigError, Error};
    if let Some(odd) = client
        .servers()
        .iter()
        .find(|a| a.transport() != crate::Transport::Tcp)
    {
        return Err(Error::InvalidConfig(ConfigError::Conflict(format!(
            "the shield and TLS carry TCP connections only: {odd} is not one"
        ))));
    }
    let relay = Relay::start(settings)
        .map_err(|e| ConfigError::setting("shield", format!("the relay cannot start: {e}")))?;
    client.handle.go_through(Arc::new(relay))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpStream};
    use std::time::Instant;

    #[test]
    fn a_server_at_one_of_the_relays_own_listeners_is_not_reached_through_it() {
        let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let relay = Relay::start(Settings {
            max_value: MAX_VALUE,
            #[cfg(feature = "tls")]
            tls: None,
        })
        .unwrap();
        let upstream = |port| Upstream {
            host: "127.0.0.1".into(),
            port,
        };
        let first = relay
            .endpoint(&upstream(server.local_addr().unwrap().port()))
            .unwrap();
        // A second server, at the port the system gave the first server's listener.
        let looped = upstream(first.listener.port());
        let second = relay.endpoint(&looped).unwrap();
        let _client = TcpStream::connect(second.listener).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let why = loop {
            if let Some(why) = relay.failure(&looped) {
                break why;
            }
            assert!(Instant::now() < deadline, "the connection was carried on");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(why.contains("own relay"), "{why}");
        // Nothing went on through the first listener to the first server.
        server.set_nonblocking(true).unwrap();
        let accepted = server.accept().map_err(|e| e.kind());
        assert_eq!(accepted.err(), Some(io::ErrorKind::WouldBlock));
    }
}
