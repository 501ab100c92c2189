//! Multi-key operations: each runs on a worker as one call of the blocking [`Client`] method of
//! the same name (one multi-get, or every write one after the other), with the same strict and
//! partial forms. Keys come back in the caller's type.

use std::collections::HashMap;
use std::hash::Hash;

#[cfg(doc)]
use crate::client::Client;
use crate::expiration::Expiration;
use crate::keyspace::Partial;
use crate::value::{FromValue, ToValue};

use super::{AsyncCall, AsyncClient};

impl AsyncClient {
    /// The values of the keys that exist: [`Client::get_multi`]. One multi-get of its own
    /// (not merged with [`AsyncClient::get`]s); a failed server fails the call with
    /// [`Error::Multi`](crate::Error::Multi).
    pub fn get_multi<K, V>(&self, keys: impl IntoIterator<Item = K>) -> AsyncCall<'_, HashMap<K, V>>
    where
        K: AsRef<[u8]> + Send + 'static + Eq + Hash,
        V: FromValue + Send + 'static,
    {
        let keys: Vec<K> = keys.into_iter().collect();
        self.call(move |c| c.get_multi(keys))
    }

    /// The values found and, per failed server, its error and keys:
    /// [`Client::get_multi_partial`].
    pub fn get_multi_partial<K, V>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> AsyncCall<'_, Partial<HashMap<K, V>>>
    where
        K: AsRef<[u8]> + Send + 'static + Eq + Hash,
        V: FromValue + Send + 'static,
    {
        let keys: Vec<K> = keys.into_iter().collect();
        self.call(move |c| c.get_multi_partial(keys))
    }

    /// Stores every item; returns the keys not stored: [`Client::set_multi`].
    pub fn set_multi<K, V>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<'_, Vec<K>>
    where
        K: AsRef<[u8]> + Send + 'static,
        V: ToValue + Send + 'static,
    {
        let (items, exp): (Vec<(K, V)>, _) = (items.into_iter().collect(), exp.into());
        self.call(move |c| c.set_multi(items, exp))
    }

    /// [`AsyncClient::set_multi`] that returns what failed beside the keys not stored:
    /// [`Client::set_multi_partial`].
    pub fn set_multi_partial<K, V>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<'_, Partial<Vec<K>>>
    where
        K: AsRef<[u8]> + Send + 'static,
        V: ToValue + Send + 'static,
    {
        let (items, exp): (Vec<(K, V)>, _) = (items.into_iter().collect(), exp.into());
        self.call(move |c| c.set_multi_partial(items, exp))
    }

    /// Stores each item whose key does not exist yet; returns the keys that existed:
    /// [`Client::add_multi`].
    pub fn add_multi<K, V>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<'_, Vec<K>>
    where
        K: AsRef<[u8]> + Send + 'static,
        V: ToValue + Send + 'static,
    {
        let (items, exp): (Vec<(K, V)>, _) = (items.into_iter().collect(), exp.into());
        self.call(move |c| c.add_multi(items, exp))
    }

    /// [`AsyncClient::add_multi`] that returns what failed beside the keys that existed:
    /// [`Client::add_multi_partial`].
    pub fn add_multi_partial<K, V>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<'_, Partial<Vec<K>>>
    where
        K: AsRef<[u8]> + Send + 'static,
        V: ToValue + Send + 'static,
    {
        let (items, exp): (Vec<(K, V)>, _) = (items.into_iter().collect(), exp.into());
        self.call(move |c| c.add_multi_partial(items, exp))
    }

    /// Deletes every key; returns the keys that did not exist: [`Client::delete_multi`].
    pub fn delete_multi<K: AsRef<[u8]> + Send + 'static>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> AsyncCall<'_, Vec<K>> {
        let keys: Vec<K> = keys.into_iter().collect();
        self.call(move |c| c.delete_multi(keys))
    }

    /// [`AsyncClient::delete_multi`] that returns what failed beside the keys that did not
    /// exist: [`Client::delete_multi_partial`].
    pub fn delete_multi_partial<K: AsRef<[u8]> + Send + 'static>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> AsyncCall<'_, Partial<Vec<K>>> {
        let keys: Vec<K> = keys.into_iter().collect();
        self.call(move |c| c.delete_multi_partial(keys))
    }

    /// Adds `delta` to every counter; each key maps to its new value, or `None` if it does not
    /// exist: [`Client::incr_multi`].
    pub fn incr_multi<K: AsRef<[u8]> + Send + 'static + Eq + Hash>(
        &self,
        keys: impl IntoIterator<Item = K>,
        delta: u64,
    ) -> AsyncCall<'_, HashMap<K, Option<u64>>> {
        let keys: Vec<K> = keys.into_iter().collect();
        self.call(move |c| c.incr_multi(keys, delta))
    }

    /// [`AsyncClient::incr_multi`] that returns what failed beside the new values:
    /// [`Client::incr_multi_partial`].
    pub fn incr_multi_partial<K: AsRef<[u8]> + Send + 'static + Eq + Hash>(
        &self,
        keys: impl IntoIterator<Item = K>,
        delta: u64,
    ) -> AsyncCall<'_, Partial<HashMap<K, Option<u64>>>> {
        let keys: Vec<K> = keys.into_iter().collect();
        self.call(move |c| c.incr_multi_partial(keys, delta))
    }

    /// Adds each key's own delta to its counter: [`Client::incr_multi_by`].
    pub fn incr_multi_by<K: AsRef<[u8]> + Send + 'static + Eq + Hash>(
        &self,
        items: impl IntoIterator<Item = (K, u64)>,
    ) -> AsyncCall<'_, HashMap<K, Option<u64>>> {
        let items: Vec<(K, u64)> = items.into_iter().collect();
        self.call(move |c| c.incr_multi_by(items))
    }

    /// Subtracts `delta` from every counter, stopping at 0: [`Client::decr_multi`].
    pub fn decr_multi<K: AsRef<[u8]> + Send + 'static + Eq + Hash>(
        &self,
        keys: impl IntoIterator<Item = K>,
        delta: u64,
    ) -> AsyncCall<'_, HashMap<K, Option<u64>>> {
        let keys: Vec<K> = keys.into_iter().collect();
        self.call(move |c| c.decr_multi(keys, delta))
    }

    /// [`AsyncClient::decr_multi`] that returns what failed beside the new values:
    /// [`Client::decr_multi_partial`].
    pub fn decr_multi_partial<K: AsRef<[u8]> + Send + 'static + Eq + Hash>(
        &self,
        keys: impl IntoIterator<Item = K>,
        delta: u64,
    ) -> AsyncCall<'_, Partial<HashMap<K, Option<u64>>>> {
        let keys: Vec<K> = keys.into_iter().collect();
        self.call(move |c| c.decr_multi_partial(keys, delta))
    }

    /// Subtracts each key's own delta from its counter: [`Client::decr_multi_by`].
    pub fn decr_multi_by<K: AsRef<[u8]> + Send + 'static + Eq + Hash>(
        &self,
        items: impl IntoIterator<Item = (K, u64)>,
    ) -> AsyncCall<'_, HashMap<K, Option<u64>>> {
        let items: Vec<(K, u64)> = items.into_iter().collect();
        self.call(move |c| c.decr_multi_by(items))
    }

    /// Stores many items without a reply per item: [`Client::bulk_set`] (noreply and buffered
    /// over ASCII, on a second connection per server of the worker's client).
    pub fn bulk_set<K, V>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<'_, ()>
    where
        K: AsRef<[u8]> + Send + 'static,
        V: ToValue + Send + 'static,
    {
        let (items, exp): (Vec<(K, V)>, _) = (items.into_iter().collect(), exp.into());
        self.call(move |c| c.bulk_set(items, exp))
    }
}
