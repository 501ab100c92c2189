//! Single-key operations other than `get`, and server-level ones: each runs on a worker as the
//! blocking [`Client`] method of the same name runs it, alone.
//!
//! Arguments are taken by value (keys are copied, values moved) so that the futures borrow only
//! the client. Values are encoded on the worker by the client itself, so compression and each
//! command's rules (cas and append never compress) are exactly the blocking client's.

use std::time::Duration;

use crate::client::Client;
use crate::expiration::Expiration;
use crate::server::Address;
use crate::stats::ServerStats;
use crate::value::{FromValue, ToValue};

use super::{AsyncCall, AsyncClient};

/// A key copied for the worker.
pub(super) fn owned(key: impl AsRef<[u8]>) -> Box<[u8]> {
    key.as_ref().into()
}

impl AsyncClient {
    /// The value of `key` and its CAS token, or `None`: [`Client::gets`]. Not merged with
    /// other gets (a multi-get carries no tokens here).
    pub fn gets<V: FromValue + Send + 'static>(
        &self,
        key: impl AsRef<[u8]>,
    ) -> AsyncCall<'_, Option<(V, u64)>> {
        let key = owned(key);
        self.call(move |c| c.gets(&key))
    }

    /// Stores `value` under `key`: [`Client::set`].
    pub fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue + Send + 'static,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<'_, ()> {
        let (key, exp) = (owned(key), exp.into());
        self.call(move |c| c.set(&key, value, exp))
    }

    /// Stores `value` only if `key` does not exist; `false` if it does: [`Client::add`].
    pub fn add(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue + Send + 'static,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<'_, bool> {
        let (key, exp) = (owned(key), exp.into());
        self.call(move |c| c.add(&key, value, exp))
    }

    /// Stores `value` only if `key` exists; `false` if it does not: [`Client::replace`].
    pub fn replace(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue + Send + 'static,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<'_, bool> {
        let (key, exp) = (owned(key), exp.into());
        self.call(move |c| c.replace(&key, value, exp))
    }

    /// Appends `value`'s bytes to the value of `key`; `false` if it does not exist:
    /// [`Client::append`].
    pub fn append(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue + Send + 'static,
    ) -> AsyncCall<'_, bool> {
        let key = owned(key);
        self.call(move |c| c.append(&key, value))
    }

    /// Prepends `value`'s bytes to the value of `key`; `false` if it does not exist:
    /// [`Client::prepend`].
    pub fn prepend(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue + Send + 'static,
    ) -> AsyncCall<'_, bool> {
        let key = owned(key);
        self.call(move |c| c.prepend(&key, value))
    }

    /// Stores `value` only if `key` still has the CAS token `cas`; `false` if it changed or is
    /// gone: [`Client::cas`].
    pub fn cas(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue + Send + 'static,
        cas: u64,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<'_, bool> {
        let (key, exp) = (owned(key), exp.into());
        self.call(move |c| c.cas(&key, value, cas, exp))
    }

    /// Deletes `key`; `false` if it did not exist: [`Client::delete`].
    pub fn delete(&self, key: impl AsRef<[u8]>) -> AsyncCall<'_, bool> {
        let key = owned(key);
        self.call(move |c| c.delete(&key))
    }

    /// Sets a new expiration on `key`; `false` if it does not exist: [`Client::touch`].
    pub fn touch(&self, key: impl AsRef<[u8]>, exp: impl Into<Expiration>) -> AsyncCall<'_, bool> {
        let (key, exp) = (owned(key), exp.into());
        self.call(move |c| c.touch(&key, exp))
    }

    /// Adds `delta` to the counter under `key`: [`Client::incr`]. A missing key is
    /// [`Error::NotFound`](crate::Error::NotFound).
    pub fn incr(&self, key: impl AsRef<[u8]>, delta: u64) -> AsyncCall<'_, u64> {
        let key = owned(key);
        self.call(move |c| c.incr(&key, delta))
    }

    /// Subtracts `delta` from the counter under `key`, stopping at 0: [`Client::decr`].
    pub fn decr(&self, key: impl AsRef<[u8]>, delta: u64) -> AsyncCall<'_, u64> {
        let key = owned(key);
        self.call(move |c| c.decr(&key, delta))
    }

    /// [`AsyncClient::incr`] that creates a missing counter with `initial`:
    /// [`Client::incr_with_initial`].
    pub fn incr_with_initial(
        &self,
        key: impl AsRef<[u8]>,
        delta: u64,
        initial: u64,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<'_, u64> {
        let (key, exp) = (owned(key), exp.into());
        self.call(move |c| c.incr_with_initial(&key, delta, initial, exp))
    }

    /// [`AsyncClient::decr`] that creates a missing counter with `initial`:
    /// [`Client::decr_with_initial`].
    pub fn decr_with_initial(
        &self,
        key: impl AsRef<[u8]>,
        delta: u64,
        initial: u64,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<'_, u64> {
        let (key, exp) = (owned(key), exp.into());
        self.call(move |c| c.decr_with_initial(&key, delta, initial, exp))
    }

    /// The server `key` maps to now: [`Client::server_for_key`].
    pub fn server_for_key(&self, key: impl AsRef<[u8]>) -> AsyncCall<'_, Address> {
        let key = owned(key);
        self.call(move |c| c.server_for_key(&key))
    }

    // ---- servers ---------------------------------------------------------------------------

    /// Every stat of every server (`arg`: a stats group such as `"items"`):
    /// [`Client::stats`].
    pub fn stats(&self, arg: Option<&str>) -> AsyncCall<'_, Vec<ServerStats>> {
        let arg = arg.map(str::to_owned);
        self.call(move |c| c.stats(arg.as_deref()))
    }

    /// Each server's version, asked afresh on one worker's connections: [`Client::version`].
    pub fn version(&self) -> AsyncCall<'_, Vec<(Address, String)>> {
        self.call(Client::version)
    }

    /// Removes every item from every server, after `delay` if given: [`Client::flush_all`].
    pub fn flush_all(&self, delay: Option<Duration>) -> AsyncCall<'_, ()> {
        self.call(move |c| c.flush_all(delay))
    }
}
