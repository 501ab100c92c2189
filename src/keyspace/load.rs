//! `get_or_set_with` on [`Client`] and [`Prefixed`]: cache-aside with single-flight across the
//! client's clones (see [`crate::cache_aside`]).

use crate::cache_aside::{LoadError, Loaded, Role, Shared, Source, followed};
use crate::client::Client;
use crate::expiration::Expiration;
use crate::value::{FromValue, ToValue};

use super::{Keys, Prefixed};

impl Keys<'_> {
    fn get_or_set_with<V, E>(
        &self,
        key: &[u8],
        exp: Expiration,
        loader: impl FnOnce() -> Result<V, E>,
    ) -> Result<Loaded<V>, LoadError<E>>
    where
        V: FromValue + ToValue,
        E: Send + Sync + 'static,
    {
        let client = self.client;
        let full = self.full(key)?.into_owned();
        loop {
            let cache_error = match client.call("get", || self.get::<V>(key)) {
                Ok(Some(value)) => {
                    return Ok(Loaded {
                        value,
                        source: Source::Cache,
                        cache_error: None,
                    });
                }
                Ok(None) => None,
                Err(error) => Some(error),
            };
            let lead = match client.flights.join(&full) {
                Role::Leader(lead) => lead,
                Role::Follower(flight) => {
                    crate::trace::load_waited();
                    client.counters.load_waits.add(1);
                    match followed(flight.wait(), key) {
                        Some(result) => return result,
                        None => continue,
                    }
                }
            };
            crate::trace::load_started();
            client.counters.loads.add(1);
            // A panic in the loader drops `lead`, which tells the waiters to try again.
            let value = match loader() {
                Ok(value) => value,
                Err(error) => {
                    let error = std::sync::Arc::new(error);
                    lead.land(crate::cache_aside::Landing::Failed(error.clone()));
                    return Err(LoadError::Loader(error));
                }
            };
            let mut cache_error = cache_error;
            match Shared::encode(&value) {
                Ok(shared) => {
                    if let Err(error) = client.call("set", || self.set(key, &shared, exp)) {
                        cache_error = Some(error);
                    }
                    lead.land(shared.landing());
                }
                // Nothing to store or share: the waiters load for themselves.
                Err(error) => cache_error = Some(error),
            }
            return Ok(Loaded {
                value,
                source: Source::Loader,
                cache_error,
            });
        }
    }
}

/// `get_or_set_with`'s documentation, shared by [`Client`] and [`Prefixed`].
macro_rules! get_or_set_with {
    ($($owner:ty),*) => {$(
        impl $owner {
            /// The value of `key`; on a miss, the value `loader` makes, stored with `exp` and
            /// returned (cache-aside). [`Loaded::source`] says whether it came from the cache.
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
                exp: impl Into<Expiration>,
                loader: impl FnOnce() -> Result<V, E>,
            ) -> Result<Loaded<V>, LoadError<E>>
            where
                V: FromValue + ToValue,
                E: Send + Sync + 'static,
            {
                self.keys().get_or_set_with(key.as_ref(), exp.into(), loader)
            }
        }
    )*};
}

get_or_set_with!(Client, Prefixed<'_>);
