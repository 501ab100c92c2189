//! Cache-aside: get a key; on a miss, run the caller's loader, store what it returns and hand it
//! back. Concurrent misses of one key in one process share one loader call ("single-flight"):
//! the first caller loads, the others wait for its result and decode it into their own type.
//! Across processes, an opt-in lock key lets one caller load while the others poll for its
//! value; an opt-in freshness marker lets callers serve a stale value while one refreshes it.
//!
//! A loader that fails hands its error to every waiter (shared as an `Arc`). A loader that
//! panics, or whose caller is cancelled, lands nothing: the waiters try the cache again and one
//! of them loads.
//!
//! The steps are written once, as async code over [`Store`]: the blocking clients run them with
//! [`block_on`], their store's calls completing at once.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{BoxError, Error};
use crate::expiration::Expiration;
use crate::metrics::Counters;
use crate::value::{Encoded, FromValue, ToValue};

/// How `get_or_set_with` stores and shares a value: its expiration and, opt-in, a lock across
/// processes and a stale period. Made from an expiration (`300`, a `Duration`, a `SystemTime`,
/// an [`Expiration`]) or with [`CacheAside::new`].
///
/// ```no_run
/// # let mc = libmemcached::Client::new(["127.0.0.1:11211"])?;
/// # fn render() -> Result<String, std::io::Error> { Ok(String::new()) }
/// use std::time::Duration;
/// use libmemcached::CacheAside;
///
/// let policy = CacheAside::new(60)
///     .lock(Duration::from_secs(10))        // one process loads; the others wait for it
///     .stale_for(Duration::from_secs(600)); // for 10 minutes after 60 s, serve stale and refresh
/// let page = mc.get_or_set_with("page:/", policy, render)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheAside {
    exp: Expiration,
    lock: Option<Duration>,
    stale_for: Option<Duration>,
}

impl CacheAside {
    /// Values stored with `exp`, no lock, no stale period.
    pub fn new(exp: impl Into<Expiration>) -> CacheAside {
        CacheAside {
            exp: exp.into(),
            lock: None,
            stale_for: None,
        }
    }

    /// On a miss, the caller that adds the key's lock (`<key>:lock`, expiring after `ttl`)
    /// loads; the others, in any process, poll the cache with a growing pause (5 ms to 100 ms)
    /// and take its value when it appears, or the lock when it comes free (its holder's loader
    /// failed, or the holder died and the lock expired). Keys must leave room for the 5 bytes
    /// of `:lock`.
    pub fn lock(self, ttl: Duration) -> CacheAside {
        CacheAside {
            lock: Some(ttl),
            ..self
        }
    }

    /// Keeps each value `stale_for` past its expiration, and its freshness in a marker key
    /// (`<key>:fresh`, expiring with the value's own expiration) read in the same multi-get:
    /// the value itself is stored as it is, for other clients. Once the marker has expired,
    /// one caller refreshes the value (through the lock, if set, so one per cluster) while every
    /// other caller gets the stale value at once ([`Source::Stale`]); if its loader fails, that
    /// caller gets the error and the next one tries again. Keys must leave room for the 6 bytes
    /// of `:fresh`.
    pub fn stale_for(self, stale_for: Duration) -> CacheAside {
        CacheAside {
            stale_for: Some(stale_for),
            ..self
        }
    }

    /// How long the value itself is kept: its expiration, plus the stale period.
    fn value_exp(&self) -> Expiration {
        match (self.exp, self.stale_for) {
            (Expiration::After(d), Some(stale)) => Expiration::After(d.saturating_add(stale)),
            (Expiration::At(t), Some(stale)) => Expiration::At(t.checked_add(stale).unwrap_or(t)),
            (exp, _) => exp,
        }
    }
}

macro_rules! policy_from_expiration {
    ($($t:ty),*) => {$(
        impl From<$t> for CacheAside {
            fn from(exp: $t) -> CacheAside {
                CacheAside::new(exp)
            }
        }
    )*};
}

policy_from_expiration!(
    i32,
    u32,
    u64,
    Duration,
    SystemTime,
    Option<Duration>,
    Expiration
);

/// Where a value from `get_or_set_with` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The cache had it.
    Cache,
    /// This caller's loader made it (and it was stored, unless `cache_error` says otherwise).
    Loader,
    /// Another caller's loader made it while this one waited: in this process (single-flight)
    /// or, with [`CacheAside::lock`], in another.
    Shared,
    /// The cache had it, past its freshness ([`CacheAside::stale_for`]): another caller is
    /// refreshing it.
    Stale,
}

/// A value from `get_or_set_with`, and where it came from.
#[derive(Debug)]
#[non_exhaustive]
pub struct Loaded<V> {
    /// The value.
    pub value: V,
    /// Where it came from.
    pub source: Source,
    /// The cache failed on the way (the get, so the value was loaded without asking it again;
    /// or the set, so the next caller loads again): the value is right all the same.
    pub cache_error: Option<Error>,
}

/// Why `get_or_set_with` has no value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError<E> {
    /// The loader failed: this caller's, or the one this caller waited for.
    #[error("the loader failed: {0}")]
    Loader(Arc<E>),
    /// Nothing was asked: a bad key, or a value another caller loaded that does not decode as
    /// this caller's type.
    #[error(transparent)]
    Cache(#[from] Error),
}

/// The loads in flight, by key sent. Shared by a client and its clones (so by a pool's
/// clients), and, apart, by an `AsyncClient`'s handles.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<Vec<u8>, Arc<Flight>>>,
}

impl fmt::Debug for Flights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flights").finish_non_exhaustive()
    }
}

/// What a caller that missed does: load, or wait for the caller that does.
pub(crate) enum Role {
    Leader(Lead),
    Follower(Arc<Flight>),
}

impl Flights {
    /// Joins the load of `key` in flight, or starts one.
    pub(crate) fn join(self: &Arc<Self>, key: &[u8]) -> Role {
        let mut map = lock(&self.map);
        if let Some(flight) = map.get(key) {
            return Role::Follower(Arc::clone(flight));
        }
        let flight = Arc::new(Flight::default());
        map.insert(key.to_vec(), Arc::clone(&flight));
        Role::Leader(Lead {
            flights: Arc::clone(self),
            key: key.to_vec(),
            flight,
            landed: false,
        })
    }
}

/// One load in flight.
#[derive(Default)]
pub(crate) struct Flight {
    state: Mutex<FlightState>,
    landed: Condvar,
}

#[derive(Default)]
struct FlightState {
    landing: Option<Landing>,
    wakers: Vec<Waker>,
}

/// How a load ended.
#[derive(Clone)]
pub(crate) enum Landing {
    /// The value, encoded.
    Value(Arc<[u8]>, u32),
    /// The loader's error, as an `Arc<E>`.
    Failed(Arc<dyn Any + Send + Sync>),
    /// The loader panicked or was cancelled, or its value could not be encoded.
    Abandoned,
}

impl Flight {
    /// Blocks until the load ends.
    pub(crate) fn wait(&self) -> Landing {
        let mut state = lock(&self.state);
        loop {
            if let Some(landing) = &state.landing {
                return landing.clone();
            }
            state = self
                .landed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// The end of the load, without blocking: a future.
    #[cfg(feature = "async")]
    pub(crate) fn landing(self: Arc<Self>) -> Wait {
        Wait(self)
    }
}

/// The future of `Flight::landing`.
#[cfg(feature = "async")]
pub(crate) struct Wait(Arc<Flight>);

#[cfg(feature = "async")]
impl std::future::Future for Wait {
    type Output = Landing;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Landing> {
        use std::task::Poll;
        let mut state = lock(&self.0.state);
        match &state.landing {
            Some(landing) => Poll::Ready(landing.clone()),
            None => {
                if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    state.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// The caller that loads. Dropped without landing (a panic, a cancelled future), it lands
/// [`Landing::Abandoned`], so that no waiter waits forever.
pub(crate) struct Lead {
    flights: Arc<Flights>,
    key: Vec<u8>,
    flight: Arc<Flight>,
    landed: bool,
}

impl Lead {
    /// Ends the load: later callers start afresh, waiters get `landing`.
    pub(crate) fn land(mut self, landing: Landing) {
        self.land_once(landing);
    }

    fn land_once(&mut self, landing: Landing) {
        if std::mem::replace(&mut self.landed, true) {
            return;
        }
        {
            let mut map = lock(&self.flights.map);
            if map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        let wakers = {
            let mut state = lock(&self.flight.state);
            state.landing = Some(landing);
            std::mem::take(&mut state.wakers)
        };
        self.flight.landed.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.land_once(Landing::Abandoned);
    }
}

/// A value's encoded bytes, stored and shared as they are.
#[derive(Clone)]
pub(crate) struct Shared {
    pub data: Arc<[u8]>,
    pub flags: u32,
}

impl Shared {
    /// `value` encoded once, for the cache and for the waiters.
    pub(crate) fn encode<V: ToValue + ?Sized>(value: &V) -> Result<Shared, Error> {
        let encoded = value.to_value().map_err(Error::encode)?;
        Ok(Shared {
            data: Arc::from(&*encoded.data),
            flags: encoded.flags,
        })
    }

    pub(crate) fn landing(&self) -> Landing {
        Landing::Value(Arc::clone(&self.data), self.flags)
    }
}

impl ToValue for Shared {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        Ok(Encoded::borrowed(&self.data, self.flags))
    }
}

/// What a waiter makes of a landing: its value or error, or `None` to try again (the load was
/// abandoned, or failed with an error of another type than this caller's loader).
pub(crate) fn followed<V: FromValue, E: Send + Sync + 'static>(
    landing: Landing,
    key: &[u8],
) -> Option<Result<Loaded<V>, LoadError<E>>> {
    match landing {
        Landing::Value(data, flags) => Some(
            V::from_value(&data, flags)
                .map(|value| Loaded {
                    value,
                    source: Source::Shared,
                    cache_error: None,
                })
                .map_err(|source| {
                    LoadError::Cache(Error::Decode {
                        key: key.to_vec(),
                        flags,
                        source: source.into(),
                    })
                }),
        ),
        Landing::Failed(error) => error
            .downcast::<E>()
            .ok()
            .map(|e| Err(LoadError::Loader(e))),
        Landing::Abandoned => None,
    }
}

/// What the steps of `get_or_set_with` need of a client: its calls on keys (which it prefixes
/// as it does for any call) and somewhere to wait.
pub(crate) trait Store {
    /// `key` checked, as it is sent: what identifies its load in flight.
    fn sent_key(&self, key: &[u8]) -> Result<Vec<u8>, Error>;
    fn flights(&self) -> &Arc<Flights>;
    fn counters(&self) -> &Counters;
    async fn get<V: FromValue + Send + 'static>(&self, key: &[u8]) -> Result<Option<V>, Error>;
    /// The value of `key`, and whether `marker` is there, in one round trip where it can.
    async fn get_marked<V: FromValue + Send + 'static>(
        &self,
        key: &[u8],
        marker: &[u8],
    ) -> Result<(Option<V>, bool), Error>;
    async fn set(&self, key: &[u8], value: Shared, exp: Expiration) -> Result<(), Error>;
    /// Stores `value` under `key` only if `key` does not exist; `false` if it did.
    async fn add(&self, key: &[u8], value: Shared, exp: Expiration) -> Result<bool, Error>;
    async fn delete(&self, key: &[u8]) -> Result<bool, Error>;
    async fn sleep(&self, pause: Duration);
    async fn wait(&self, flight: Arc<Flight>) -> Landing;
}

/// A small value for markers and locks.
pub(crate) fn marker() -> Shared {
    Shared {
        data: Arc::from(&b"1"[..]),
        flags: 0,
    }
}

/// The keys beside `key` that a policy uses.
fn beside(key: &[u8], suffix: &[u8]) -> Vec<u8> {
    [key, suffix].concat()
}

/// `get_or_set_with`, on any store.
pub(crate) async fn get_or_set<S, V, E, F>(
    store: &S,
    key: &[u8],
    policy: CacheAside,
    loader: impl FnOnce() -> F,
) -> Result<Loaded<V>, LoadError<E>>
where
    S: Store,
    V: FromValue + ToValue + Send + 'static,
    E: Send + Sync + 'static,
    F: Future<Output = Result<V, E>>,
{
    let sent = store.sent_key(key)?;
    let lock_key = beside(key, b":lock");
    let fresh_key = beside(key, b":fresh");
    // Refused before anything runs, like the key itself.
    if policy.lock.is_some() {
        store.sent_key(&lock_key)?;
    }
    if policy.stale_for.is_some() {
        store.sent_key(&fresh_key)?;
    }
    loop {
        let read = match policy.stale_for {
            None => store.get::<V>(key).await.map(|value| (value, true)),
            Some(_) => store.get_marked::<V>(key, &fresh_key).await,
        };
        let (cached, mut cache_error) = match read {
            Ok((Some(value), true)) => return Ok(loaded(value, Source::Cache, None)),
            Ok((Some(value), false)) => (Some(value), None),
            Ok((None, _)) => (None, None),
            Err(error) => (None, Some(error)),
        };
        let (lead, cached) = match (store.flights().join(&sent), cached) {
            (Role::Leader(lead), cached) => (lead, cached),
            // Stale, and this process refreshes it already.
            (Role::Follower(_), Some(value)) => return Ok(stale(store, value)),
            (Role::Follower(flight), None) => {
                crate::trace::load_waited();
                store.counters().load_waits.add(1);
                match followed(store.wait(flight).await, key) {
                    Some(result) => return result,
                    None => continue,
                }
            }
        };
        let lock = Lock::new(lock_key);
        let mut holding = false;
        if let Some(ttl) = policy.lock {
            match (lock.take(store, ttl).await, cached) {
                (Ok(true), _) => holding = true,
                // Another caller refreshes the stale value.
                (Ok(false), Some(value)) => return Ok(stale(store, value)),
                (Ok(false), None) => {
                    store.counters().lock_waits.add(1);
                    match poll_for(store, key, &lock, ttl).await {
                        Polled::Value(value) => {
                            if let Ok(shared) = Shared::encode(&value) {
                                lead.land(shared.landing());
                            }
                            return Ok(loaded(value, Source::Shared, None));
                        }
                        Polled::Taken => holding = true,
                        Polled::TimedOut => {}
                    }
                }
                (Err(error), _) => cache_error = Some(error),
            }
        }
        crate::trace::load_started();
        store.counters().loads.add(1);
        // A panic in the loader, or this future dropped, drops `lead` (the waiters try again)
        // and leaves the lock to expire.
        let value = match loader().await {
            Ok(value) => value,
            Err(error) => {
                let error = Arc::new(error);
                if holding {
                    lock.release(store).await;
                }
                lead.land(Landing::Failed(error.clone()));
                return Err(LoadError::Loader(error));
            }
        };
        match Shared::encode(&value) {
            Ok(shared) => {
                let landing = shared.landing();
                if let Err(error) = store.set(key, shared, policy.value_exp()).await {
                    cache_error = Some(error);
                } else if policy.stale_for.is_some() {
                    if let Err(error) = store.set(&fresh_key, marker(), policy.exp).await {
                        cache_error = Some(error);
                    }
                }
                lead.land(landing);
            }
            // Nothing to store or share: the waiters load for themselves.
            Err(error) => cache_error = Some(error),
        }
        if holding {
            lock.release(store).await;
        }
        return Ok(loaded(value, Source::Loader, cache_error));
    }
}

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// A key's lock, and the token that says this caller holds it.
struct Lock {
    key: Vec<u8>,
    token: Shared,
}

impl Lock {
    fn new(key: Vec<u8>) -> Lock {
        static TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = format!("{}-{nanos}-{n}", std::process::id());
        Lock {
            key,
            token: Shared {
                data: Arc::from(token.as_bytes()),
                flags: 0,
            },
        }
    }

    /// Takes the lock for `ttl`; `false` if another caller holds it. A client that takes no
    /// replies (UDP, noreply) sends the `add` and goes on as the holder, not knowing.
    async fn take<S: Store>(&self, store: &S, ttl: Duration) -> Result<bool, Error> {
        match store
            .add(&self.key, self.token.clone(), Expiration::After(ttl))
            .await
        {
            Err(Error::Unanswered { .. }) => Ok(true),
            taken => taken,
        }
    }

    /// Releases the lock if this caller still holds it (a load that outlived the lock's `ttl`
    /// must not release the lock another caller took since).
    async fn release<S: Store>(&self, store: &S) {
        if let Ok(Some(token)) = store.get::<Vec<u8>>(&self.key).await {
            if *token == *self.token.data {
                let _ = store.delete(&self.key).await;
            }
        }
    }
}

/// What polling under another caller's lock came to.
enum Polled<V> {
    /// The value it loaded.
    Value(V),
    /// The lock was free again (its holder failed, or it expired): this caller took it.
    Taken,
    /// Neither, within the lock's `ttl` (the cache failing, say).
    TimedOut,
}

/// Polls for the value another caller loads under `lock`, taking the lock if it comes free,
/// until `ttl` has passed.
async fn poll_for<S: Store, V: FromValue + Send + 'static>(
    store: &S,
    key: &[u8],
    lock: &Lock,
    ttl: Duration,
) -> Polled<V> {
    let now = Instant::now();
    // A lock too long to represent is waited for as long as a year.
    let deadline = now
        .checked_add(ttl)
        .or(now.checked_add(YEAR))
        .unwrap_or(now);
    let mut pause = Duration::from_millis(5);
    while Instant::now() < deadline {
        store
            .sleep(pause.min(deadline.saturating_duration_since(Instant::now())))
            .await;
        pause = (pause * 2).min(Duration::from_millis(100));
        if let Ok(Some(value)) = store.get::<V>(key).await {
            return Polled::Value(value);
        }
        if let Ok(true) = lock.take(store, ttl).await {
            return Polled::Taken;
        }
    }
    Polled::TimedOut
}

/// A stale value, served (and counted).
fn stale<S: Store, V>(store: &S, value: V) -> Loaded<V> {
    store.counters().stale_served.add(1);
    loaded(value, Source::Stale, None)
}

fn loaded<V>(value: V, source: Source, cache_error: Option<Error>) -> Loaded<V> {
    Loaded {
        value,
        source,
        cache_error,
    }
}

/// Runs the steps of a blocking store: each of its calls completes when polled.
pub(crate) fn block_on<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        // A blocking store never leaves a step pending; yield rather than spin if one did.
        std::thread::yield_now();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state whole.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_period_keeps_the_value_longer_than_its_marker() {
        let policy = CacheAside::new(60).stale_for(Duration::from_secs(600));
        assert_eq!(
            policy.value_exp(),
            Expiration::After(Duration::from_secs(660))
        );
        assert_eq!(policy.exp, Expiration::After(Duration::from_secs(60)));
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let policy = CacheAside::new(at).stale_for(Duration::from_secs(5));
        assert_eq!(
            policy.value_exp(),
            Expiration::At(at + Duration::from_secs(5))
        );
        let never = CacheAside::new(0).stale_for(Duration::from_secs(5));
        assert_eq!(never.value_exp(), Expiration::Never);
        assert_eq!(
            CacheAside::new(60).value_exp(),
            Expiration::After(Duration::from_secs(60))
        );
    }

    #[test]
    fn a_lead_dropped_unlanded_abandons_and_frees_the_key() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(lead) = flights.join(b"k") else {
            panic!("the first caller leads")
        };
        let Role::Follower(flight) = flights.join(b"k") else {
            panic!("the second follows")
        };
        drop(lead);
        assert!(matches!(flight.wait(), Landing::Abandoned));
        assert!(
            matches!(flights.join(b"k"), Role::Leader(_)),
            "a new load may start"
        );
    }
}
