//! Cache-aside: get a key; on a miss, run the caller's loader, store what it returns and hand it
//! back. Concurrent misses of one key in one process share one loader call ("single-flight"):
//! the first caller loads, the others wait for its result and decode it into their own type.
//!
//! A loader that fails hands its error to every waiter (shared as an `Arc`). A loader that
//! panics, or whose caller is cancelled, lands nothing: the waiters try the cache again and one
//! of them loads.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;

use crate::error::{BoxError, Error};
use crate::value::{Encoded, FromValue, ToValue};

/// Where a value from `get_or_set_with` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The cache had it.
    Cache,
    /// This caller's loader made it (and it was stored, unless `cache_error` says otherwise).
    Loader,
    /// Another caller's loader made it while this one waited (single-flight).
    Shared,
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

/// The loads in flight, by key sent. Shared by a client and its clones (so by a pool's clients)
/// and by an `AsyncClient` and its handles.
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
pub(crate) struct Shared {
    pub data: Arc<[u8]>,
    pub flags: u32,
}

impl Shared {
    /// `value` encoded once, for the cache and for the waiters.
    pub(crate) fn encode<V: ToValue + ?Sized>(value: &V) -> Result<Shared, Error> {
        let encoded = value.to_value().map_err(Error::Encode)?;
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
                        source,
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state whole.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
