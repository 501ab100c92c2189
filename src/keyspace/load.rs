//! `get_or_set_with` on [`Client`] and [`Prefixed`]: the steps of [`crate::cache_aside`] run
//! on the client's calls, blocking.

use std::sync::Arc;
use std::time::Duration;

use crate::cache_aside::{
    self, CacheAside, Flight, Flights, Landing, LoadError, Loaded, Shared, Store,
};
use crate::client::Client;
use crate::error::Result;
use crate::expiration::Expiration;
use crate::metrics::Counters;
use crate::value::{FromValue, ToValue};

use super::{Keys, Prefixed};

impl Store for Keys<'_> {
    fn sent_key(&self, key: &[u8]) -> Result<Vec<u8>> {
        Ok(self.full(key)?.into_owned())
    }

    fn flights(&self) -> &Arc<Flights> {
        &self.client.flights
    }

    fn counters(&self) -> &Counters {
        &self.client.counters
    }

    async fn get<V: FromValue + Send + 'static>(&self, key: &[u8]) -> Result<Option<V>> {
        self.client.call("get", || Keys::get(self, key))
    }

    async fn get_marked<V: FromValue + Send + 'static>(
        &self,
        key: &[u8],
        marker: &[u8],
    ) -> Result<(Option<V>, bool)> {
        let (mut value, mut marked) = (None, false);
        let mut decoded = Ok(());
        self.client.call("get_multi", || {
            self.get_multi_each([key, marker], |item| {
                if item.key() == marker {
                    marked = true;
                } else if item.key() == key {
                    match item.decode::<V>() {
                        Ok(v) => value = Some(v),
                        Err(error) => decoded = Err(error),
                    }
                }
            })
        })?;
        decoded.map(|()| (value, marked))
    }

    async fn set(&self, key: &[u8], value: Shared, exp: Expiration) -> Result<()> {
        self.client
            .call("set", || Keys::set(self, key, &value, exp))
    }

    async fn add(&self, key: &[u8], value: Shared, exp: Expiration) -> Result<bool> {
        self.client
            .call("add", || Keys::add(self, key, &value, exp))
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        self.client.call("delete", || Keys::delete(self, key))
    }

    async fn sleep(&self, pause: Duration) {
        std::thread::sleep(pause);
    }

    async fn wait(&self, flight: Arc<Flight>) -> Landing {
        flight.wait()
    }
}

/// `get_or_set_with` on each owner, with one documentation.
macro_rules! get_or_set_with {
    ($($owner:ty),*) => {$(
        impl $owner {
            /// The value of `key`; on a miss, the value `loader` makes, stored and returned
            /// (cache-aside). `policy` is an expiration (`300`, a `Duration`...) or a
            /// [`CacheAside`] with a lock across processes and a stale period.
            /// [`Loaded::source`] says where the value came from.
            ///
            /// Concurrent misses of one key in this client and its clones (so in one
            /// [`ClientPool`](crate::ClientPool) or [`ThreadMappedPool`](crate::ThreadMappedPool))
            /// run `loader` once: the other callers wait for its value, decoded into their own
            /// type, or its error ([`LoadError::Loader`], shared). If the loader panics, the
            /// panic is this caller's, and a waiter loads instead.
            ///
            /// A cache that fails does not fail the call: a failed get loads, a failed set still
            /// returns the value, and [`Loaded::cache_error`] says what failed. A bad key fails
            /// before anything runs.
            ///
            /// ```no_run
            /// # let mc = libmemcached::Client::new(["127.0.0.1:11211"])?;
            /// # fn query_db(id: u32) -> Result<String, std::io::Error> { Ok(format!("user {id}")) }
            /// let user = mc.get_or_set_with("user:1", 300, || query_db(1))?;
            /// println!("{} (from {:?})", user.value, user.source);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn get_or_set_with<V, E>(
                &self,
                key: impl AsRef<[u8]>,
                policy: impl Into<CacheAside>,
                loader: impl FnOnce() -> std::result::Result<V, E>,
            ) -> std::result::Result<Loaded<V>, LoadError<E>>
            where
                V: FromValue + ToValue + Send + 'static,
                E: Send + Sync + 'static,
            {
                let keys = self.keys();
                let run = cache_aside::get_or_set(&keys, key.as_ref(), policy.into(), || {
                    std::future::ready(loader())
                });
                cache_aside::block_on(run)
            }
        }
    )*};
}

get_or_set_with!(Client, Prefixed<'_>);
