//! Sharing clients between threads: [`ClientPool`] and [`ThreadMappedPool`], pylibmc's two
//! pools.
//!
//! A [`Client`] must never be used by two threads at once, and the compiler enforces it:
//! `Client` is `Send` but not `Sync`, so a `&Client` cannot cross threads.
//!
//! ```compile_fail,E0277
//! let mc = libmemcached::Client::new(["127.0.0.1:11211"]).unwrap();
//! std::thread::scope(|s| {
//!     s.spawn(|| mc.get::<String>("k")); // error: `Client` cannot be shared between threads
//! });
//! ```
//!
//! The pools are `Send + Sync`: share one through an `Arc` (or a scope) and reserve a client
//! per task.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = libmemcached::testing::TestServer::from_env_or_spawn()?;
//! use std::sync::Arc;
//! use libmemcached::{Client, ClientPool};
//!
//! let pool = Arc::new(ClientPool::new(Client::new([server.spec()])?, 4)?);
//! let workers: Vec<_> = (0..8)
//!     .map(|i| {
//!         let pool = Arc::clone(&pool);
//!         std::thread::spawn(move || {
//!             let mc = pool.reserve()?;                // waits for a free client
//!             mc.set(format!("worker:{i}"), i, 0)
//!         })
//!     })
//!     .collect();
//! for worker in workers {
//!     worker.join().unwrap()?;
//! }
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::metrics::{Group, Metrics};
use crate::trace;

/// The most clients a [`ClientPool`] holds. Each may keep a connection to every server, and an
/// operating system runs out of sockets long before this.
pub const MAX_POOL_SIZE: usize = 65_536;

/// A fixed set of clients shared by threads (pylibmc's `ClientPool`).
///
/// Built from a client and filled with its clones. [`reserve`](Self::reserve) lends one out
/// until the guard drops, waiting for a free one if needed; [`reserve_timeout`] waits at most a
/// while; [`try_reserve`](Self::try_reserve) never waits. A client whose last call hit a
/// connection or protocol error is reset before it is lent again, and a thread that panics
/// while holding one simply returns it.
///
/// [`reserve_timeout`]: Self::reserve_timeout
pub struct ClientPool {
    idle: Mutex<Vec<Client>>,
    returned: Condvar,
    /// Callers waiting for a client.
    waiting: AtomicUsize,
    size: usize,
    counters: Group,
}

impl ClientPool {
    /// A pool of `size` clients: `client` and `size - 1` clones of it (same servers and
    /// behaviors, each with its own connections).
    pub fn new(client: Client, size: usize) -> Result<ClientPool> {
        if size == 0 || size > MAX_POOL_SIZE {
            return Err(Error::argument(
                "size",
                format!("a pool holds 1 to {MAX_POOL_SIZE} clients, not {size}"),
            ));
        }
        let mut clients = Vec::with_capacity(size);
        for _ in 1..size {
            clients.push(client.try_clone()?);
        }
        clients.push(client);
        let counters = Group::default();
        for client in &clients {
            counters.join(&client.counters);
        }
        Ok(ClientPool {
            idle: Mutex::new(clients),
            returned: Condvar::new(),
            waiting: AtomicUsize::new(0),
            size,
            counters,
        })
    }

    /// The sum of the metrics of the pool's clients (see [`Client::metrics`]).
    pub fn metrics(&self) -> Metrics {
        self.counters.snapshot()
    }

    /// How many clients the pool holds.
    pub fn size(&self) -> usize {
        self.size
    }

    /// How many are free now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    /// How many callers are waiting for a client now: a pool too small for its load shows
    /// here first.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A client, waiting as long as it takes for one to be free.
    pub fn reserve(&self) -> Result<PooledClient<'_>> {
        let mut idle = self.lock();
        if let Some(client) = idle.pop() {
            return Ok(self.lend(client));
        }
        let started = Instant::now();
        let _waiting = Waiting::on(&self.waiting);
        loop {
            idle = self.returned.wait(idle).unwrap_or_else(|e| e.into_inner());
            if let Some(client) = idle.pop() {
                trace::pool_wait(started.elapsed(), self.size, true);
                return Ok(self.lend(client));
            }
        }
    }

    /// A client, waiting at most `timeout` for one to be free; [`Error::PoolTimeout`] after that.
    pub fn reserve_timeout(&self, timeout: Duration) -> Result<PooledClient<'_>> {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            // Longer than the clock can count: no deadline at all.
            return self.reserve();
        };
        let started = Instant::now();
        let mut idle = self.lock();
        let mut waiting = None;
        loop {
            if let Some(client) = idle.pop() {
                if waiting.is_some() {
                    trace::pool_wait(started.elapsed(), self.size, true);
                }
                return Ok(self.lend(client));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                trace::pool_wait(started.elapsed(), self.size, false);
                return Err(Error::PoolTimeout {
                    waited: timeout,
                    size: self.size,
                });
            }
            waiting.get_or_insert_with(|| Waiting::on(&self.waiting));
            idle = self
                .returned
                .wait_timeout(idle, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A client if one is free now (pylibmc's `reserve(block=False)`).
    pub fn try_reserve(&self) -> Option<PooledClient<'_>> {
        self.lock().pop().map(|client| self.lend(client))
    }

    fn lend(&self, client: Client) -> PooledClient<'_> {
        PooledClient {
            pool: self,
            client: Some(client),
        }
    }

    fn give_back(&self, client: Client) {
        reset_if_failed(&client);
        self.lock().push(client);
        self.returned.notify_one();
    }

    /// The idle list. No code panics while holding it, but a poisoned lock would only mean
    /// that, so it is used as it is.
    fn lock(&self) -> MutexGuard<'_, Vec<Client>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for ClientPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPool")
            .field("size", &self.size)
            .field("idle", &self.idle())
            .finish()
    }
}

/// Counts a caller as waiting for a client while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn on(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client lent by a [`ClientPool`]; it goes back when dropped.
pub struct PooledClient<'a> {
    pool: &'a ClientPool,
    client: Option<Client>,
}

impl Deref for PooledClient<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl Drop for PooledClient<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.pool.give_back(client);
        }
    }
}

impl fmt::Debug for PooledClient<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PooledClient").field(&**self).finish()
    }
}

/// Closes a client's connections if its last call failed on a connection or a protocol error,
/// or the thread is panicking, so the next user starts clean. (Resetting twice is harmless.)
fn reset_if_failed(client: &Client) {
    let last = client.handle.last_error();
    // A panic may have cut a call short between sending and reading.
    if std::thread::panicking() || last.is_connection() || last.needs_reset() {
        client.disconnect_all();
    }
}

/// One client per thread, cloned from a master on the thread's first use (pylibmc's
/// `ThreadMappedPool`).
///
/// A thread's client lives in that thread and is dropped, closing its connections, when the
/// thread ends (pylibmc keeps it until `relinquish` is called). [`relinquish`] releases it
/// earlier.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = libmemcached::testing::TestServer::from_env_or_spawn()?;
/// use libmemcached::{Client, ThreadMappedPool};
///
/// let pool = ThreadMappedPool::new(Client::new([server.spec()])?);
/// std::thread::scope(|s| {
///     for i in 0..4 {
///         let pool = &pool;
///         s.spawn(move || pool.reserve()?.set(format!("t:{i}"), i, 0));
///     }
/// });
/// # Ok(()) }
/// ```
///
/// [`relinquish`]: Self::relinquish
pub struct ThreadMappedPool {
    master: Mutex<Client>,
    id: usize,
    counters: Group,
}

/// Pools alive now, so threads can drop the clients of pools that are gone.
static LIVE_POOLS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);
static NEXT_POOL: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's clients, by pool.
    static THREAD_CLIENTS: RefCell<HashMap<usize, Client>> = RefCell::new(HashMap::new());
}

fn live_pools() -> MutexGuard<'static, Option<HashSet<usize>>> {
    LIVE_POOLS.lock().unwrap_or_else(|e| e.into_inner())
}

impl ThreadMappedPool {
    /// A pool that clones `master` for each thread.
    pub fn new(master: Client) -> ThreadMappedPool {
        let id = NEXT_POOL.fetch_add(1, Ordering::Relaxed);
        live_pools().get_or_insert_with(HashSet::new).insert(id);
        ThreadMappedPool {
            master: Mutex::new(master),
            id,
            counters: Group::default(),
        }
    }

    /// The sum of the metrics of the clients made for threads so far, including those of
    /// threads that have ended (see [`Client::metrics`]).
    pub fn metrics(&self) -> Metrics {
        self.counters.snapshot()
    }

    /// This thread's client, cloned from the master on first use. A nested reserve in the same
    /// thread gets a client of its own.
    pub fn reserve(&self) -> Result<ThreadClient<'_>> {
        // During thread teardown the map may be gone: then the thread gets a fresh clone.
        let mine = THREAD_CLIENTS.try_with(|clients| {
            let mut clients = clients.borrow_mut();
            // Clients of pools dropped since this thread last came by; dropped outside the
            // lock, as closing connections can wait on the network.
            let stale: Vec<usize> = {
                let live = live_pools();
                clients
                    .keys()
                    .filter(|id| !live.as_ref().is_some_and(|l| l.contains(id)))
                    .copied()
                    .collect()
            };
            for id in stale {
                clients.remove(&id);
            }
            clients.remove(&self.id)
        });
        let client = match mine.ok().flatten() {
            Some(client) => client,
            None => {
                let master = self.master.lock().unwrap_or_else(|e| e.into_inner());
                let client = master.try_clone()?;
                self.counters.join(&client.counters);
                client
            }
        };
        Ok(ThreadClient {
            pool: self,
            client: Some(client),
        })
    }

    /// Releases this thread's client now, returning it if there was one.
    pub fn relinquish(&self) -> Option<Client> {
        THREAD_CLIENTS
            .try_with(|clients| clients.borrow_mut().remove(&self.id))
            .ok()
            .flatten()
    }
}

impl Drop for ThreadMappedPool {
    fn drop(&mut self) {
        if let Some(live) = live_pools().as_mut() {
            live.remove(&self.id);
        }
        self.relinquish();
    }
}

impl fmt::Debug for ThreadMappedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadMappedPool")
            .field("id", &self.id)
            .finish()
    }
}

/// This thread's client from a [`ThreadMappedPool`]; it goes back to the thread when dropped.
pub struct ThreadClient<'a> {
    pool: &'a ThreadMappedPool,
    client: Option<Client>,
}

impl Deref for ThreadClient<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl Drop for ThreadClient<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            reset_if_failed(&client);
            // During thread teardown the map may be gone; the client is then just dropped.
            let _ = THREAD_CLIENTS.try_with(|clients| {
                clients.borrow_mut().entry(self.pool.id).or_insert(client);
            });
        }
    }
}

impl fmt::Debug for ThreadClient<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ThreadClient").field(&**self).finish()
    }
}
