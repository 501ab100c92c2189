//! [`AsyncClient::get_or_set_with`]: cache-aside with single-flight among the client's handles
//! (see [`crate::cache_aside`]).

use std::future::Future;
use std::sync::Arc;

use crate::cache_aside::{Landing, LoadError, Loaded, Role, Shared, Source, followed};
use crate::expiration::Expiration;
use crate::value::{FromValue, ToValue};

use super::AsyncClient;

impl AsyncClient {
    /// The value of `key`; on a miss, the value `loader` makes, stored with `exp` and returned
    /// (cache-aside). [`Loaded::source`] says whether it came from the cache.
    ///
    /// Concurrent misses of one key among this client's handles run `loader` once: the other
    /// callers wait for its value, decoded into their own type, or its error
    /// ([`LoadError::Loader`], shared). If the loader panics, or its caller's future is
    /// dropped, one of the waiters loads instead.
    ///
    /// A cache that fails does not fail the call: a failed get loads, a failed set still
    /// returns the value, and [`Loaded::cache_error`] says what failed. A bad key fails before
    /// anything runs.
    ///
    /// ```no_run
    /// # async fn demo(mc: libmemcached::AsyncClient) -> Result<(), Box<dyn std::error::Error>> {
    /// # async fn query_db(id: u32) -> Result<String, std::io::Error> { Ok(format!("user {id}")) }
    /// let user = mc.get_or_set_with("user:1", 300, || query_db(1)).await?;
    /// println!("{} (from {:?})", user.value, user.source);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_set_with<V, E, F, L>(
        &self,
        key: impl AsRef<[u8]>,
        exp: impl Into<Expiration>,
        loader: L,
    ) -> Result<Loaded<V>, LoadError<E>>
    where
        V: FromValue + ToValue + Send + 'static,
        E: Send + Sync + 'static,
        L: FnOnce() -> F,
        F: Future<Output = Result<V, E>>,
    {
        let key = key.as_ref();
        self.check_key(key)?;
        let exp = exp.into();
        loop {
            let cache_error = match self.get::<V>(key).await {
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
            let lead = match self.flights().join(key) {
                Role::Leader(lead) => lead,
                Role::Follower(flight) => {
                    crate::trace::load_waited();
                    self.load_counters().load_waits.add(1);
                    match followed(flight.landing().await, key) {
                        Some(result) => return result,
                        None => continue,
                    }
                }
            };
            crate::trace::load_started();
            self.load_counters().loads.add(1);
            // A panic in the loader, or this future dropped, drops `lead`: the waiters try again.
            let value = match loader().await {
                Ok(value) => value,
                Err(error) => {
                    let error = Arc::new(error);
                    lead.land(Landing::Failed(error.clone()));
                    return Err(LoadError::Loader(error));
                }
            };
            let mut cache_error = cache_error;
            match Shared::encode(&value) {
                Ok(shared) => {
                    let landing = shared.landing();
                    if let Err(error) = self.set(key, shared, exp).await {
                        cache_error = Some(error);
                    }
                    lead.land(landing);
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
