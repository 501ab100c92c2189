//! [`AsyncClient::get_or_set_with`]: the steps of [`crate::cache_aside`] run on the async
//! client's calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::cache_aside::{
    self, CacheAside, Flight, Flights, Landing, LoadError, Loaded, Shared, Store,
};
use crate::error::Result;
use crate::expiration::Expiration;
use crate::metrics::Counters;
use crate::value::{FromValue, ToValue, Value};

use super::AsyncClient;
use super::wait::{Sleep, join};

impl Store for AsyncClient {
    fn sent_key(&self, key: &[u8]) -> Result<Vec<u8>> {
        self.check_key(key)?;
        Ok(key.to_vec())
    }

    fn flights(&self) -> &Arc<Flights> {
        self.flights()
    }

    fn counters(&self) -> &Counters {
        self.load_counters()
    }

    async fn get<V: FromValue + Send + 'static>(&self, key: &[u8]) -> Result<Option<V>> {
        AsyncClient::get(self, key).await
    }

    async fn get_marked<V: FromValue + Send + 'static>(
        &self,
        key: &[u8],
        marker: &[u8],
    ) -> Result<(Option<V>, bool)> {
        // Both queued before either is awaited: merged into one multi-get when one server
        // holds both, in parallel otherwise.
        let value = AsyncClient::get::<V>(self, key);
        let marked = AsyncClient::get::<Value>(self, marker);
        let (value, marked) = join(value, marked).await;
        Ok((value?, marked?.is_some()))
    }

    async fn set(&self, key: &[u8], value: Shared, exp: Expiration) -> Result<()> {
        AsyncClient::set(self, key, value, exp).await
    }

    async fn add(&self, key: &[u8], value: Shared, exp: Expiration) -> Result<bool> {
        AsyncClient::add(self, key, value, exp).await
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        AsyncClient::delete(self, key).await
    }

    async fn sleep(&self, pause: Duration) {
        Sleep::new(pause).await
    }

    async fn wait(&self, flight: Arc<Flight>) -> Landing {
        flight.landing().await
    }
}

impl AsyncClient {
    /// The value of `key`; on a miss, the value `loader` makes, stored and returned
    /// (cache-aside). `policy` is an expiration (`300`, a `Duration`...) or a [`CacheAside`]
    /// with a lock across processes and a stale period. [`Loaded::source`] says where the
    /// value came from.
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
    pub async fn get_or_set_with<V, E, F>(
        &self,
        key: impl AsRef<[u8]>,
        policy: impl Into<CacheAside>,
        loader: impl FnOnce() -> F,
    ) -> std::result::Result<Loaded<V>, LoadError<E>>
    where
        V: FromValue + ToValue + Send + 'static,
        E: Send + Sync + 'static,
        F: Future<Output = std::result::Result<V, E>>,
    {
        cache_aside::get_or_set(self, key.as_ref(), policy.into(), loader).await
    }
}
