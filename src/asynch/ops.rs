//! Every operation but `get`, listed once: each runs on a worker as one call of the blocking
//! [`Client`] method of the same name, with the same results, strict and partial forms alike.
//!
//! Arguments are made ready for the worker before the future exists (keys copied, key lists
//! collected, expirations converted, values serialized), so that the futures borrow nothing
//! while the values may be borrowed: `mc.set(key, &text, 0)`. A value's own serialization
//! ([`ToValue::to_value`]) runs in the caller, and its error is the future's; compression and
//! the client's value format are applied on the worker by the client itself, so they and each
//! command's rules (cas and append never compress) are the blocking client's by construction.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use crate::client::Client;
use crate::expiration::Expiration;
use crate::keyspace::Partial;
use crate::server::Address;
use crate::stats::ServerStats;
use crate::value::{FromValue, ToValue};

use super::{AsyncCall, AsyncClient, AsyncPrefixed};
pub(super) use ready::{Serialized, value as ready_value};

/// Defines each operation once: under `keys`, as a method of [`AsyncClient`], of
/// [`AsyncPrefixed`] and of [`AsyncCommands`] (implemented by both); under `servers`, as a
/// method of [`AsyncClient`] only. Each method readies its arguments (each through the function
/// after `=>`) and queues the client method of the same name, in the lane of the server of the
/// argument named after `on` (the shared lane without one); a prefixed view's call runs
/// through the worker client's own [`Prefixed`](crate::Prefixed) view. Generic parameters go
/// in `[...]`, bounds in `where [...]`.
macro_rules! on_a_worker {
    (keys { $($ops:tt)* } servers { $($servers:tt)* }) => {
        on_a_worker!(@client $($ops)* $($servers)*);
        on_a_worker!(@prefixed $($ops)*);
        on_a_worker!(@commands $($ops)*);
    };
    (@client $(
        $(#[$doc:meta])*
        $(on $route:ident)? fn $name:ident $([$($generic:tt)*])? ($($arg:ident: $ty:ty => $ready:path),* $(,)?)
            -> $ret:ty $(where [$($bound:tt)*])?;
    )*) => {
        impl AsyncClient {
            $(
                $(#[$doc])*
                pub fn $name $(<$($generic)*>)? (&self $(, $arg: $ty)*) -> AsyncCall<$ret>
                $(where $($bound)*)?
                {
                    $(let $arg = match $ready($arg) {
                        Ok(ready) => ready,
                        Err(error) => return AsyncCall::failed(error),
                    };)*
                    let lane = self.lane(None $(.or(Some(&$route[..])))?);
                    self.call(lane, move |client| client.$name($($arg),*))
                }
            )*
        }
    };
    (@prefixed $(
        $(#[$doc:meta])*
        $(on $route:ident)? fn $name:ident $([$($generic:tt)*])? ($($arg:ident: $ty:ty => $ready:path),* $(,)?)
            -> $ret:ty $(where [$($bound:tt)*])?;
    )*) => {
        impl AsyncPrefixed {
            $(
                $(#[$doc])*
                pub fn $name $(<$($generic)*>)? (&self $(, $arg: $ty)*) -> AsyncCall<$ret>
                $(where $($bound)*)?
                {
                    $(let $arg = match $ready($arg) {
                        Ok(ready) => ready,
                        Err(error) => return AsyncCall::failed(error),
                    };)*
                    let route: Option<&[u8]> = None $(.or(Some(&$route[..])))?;
                    let lane = self.lane(route);
                    let prefix = self.shared_prefix();
                    self.client()
                        .call(lane, move |client| client.prefixed(&*prefix).$name($($arg),*))
                }
            )*
        }
    };
    (@commands $(
        $(#[$doc:meta])*
        $(on $route:ident)? fn $name:ident $([$($generic:tt)*])? ($($arg:ident: $ty:ty => $ready:path),* $(,)?)
            -> $ret:ty $(where [$($bound:tt)*])?;
    )*) => {
        /// The key operations of an async client, for code that works with either an
        /// [`AsyncClient`] or an [`AsyncPrefixed`] view. Each method is the method of the same
        /// name; its future owns what it needs (`'static`, `Send`: it can be spawned).
        ///
        /// ```no_run
        /// # async fn example() -> libmemcached::Result<()> {
        /// use libmemcached::{AsyncClient, AsyncCommands, Client, Result};
        ///
        /// async fn visit(cache: &impl AsyncCommands, user: u64) -> Result<u64> {
        ///     cache.incr_with_initial(format!("visits:{user}"), 1, 1, 0).await
        /// }
        ///
        /// let mc = AsyncClient::new(Client::new(["127.0.0.1:11211"])?)?;
        /// visit(&mc, 7).await?;
        /// visit(&mc.prefixed("tenant-a:"), 7).await?;
        /// # Ok(()) }
        /// ```
        pub trait AsyncCommands {
            /// The value of `key`, or `None` if it is not there: [`AsyncClient::get`], merged
            /// with the other gets queued.
            fn get<V: FromValue + Send + 'static>(
                &self,
                key: impl AsRef<[u8]>,
            ) -> impl Future<Output = crate::Result<Option<V>>> + Send + 'static;

            /// Stores `value` under `key`: [`AsyncClient::set`], sent together with the other
            /// sets queued.
            fn set(
                &self,
                key: impl AsRef<[u8]>,
                value: impl ToValue,
                exp: impl Into<Expiration>,
            ) -> impl Future<Output = crate::Result<()>> + Send + 'static;

            $(
                $(#[$doc])*
                fn $name $(<$($generic)*>)? (&self $(, $arg: $ty)*)
                    -> impl Future<Output = crate::Result<$ret>> + Send + 'static
                $(where $($bound)*)?;
            )*
        }

        on_a_worker!(@impl AsyncClient $(; $name $([$($generic)*])? ($($arg: $ty),*) -> $ret $(where [$($bound)*])?)*);
        on_a_worker!(@impl AsyncPrefixed $(; $name $([$($generic)*])? ($($arg: $ty),*) -> $ret $(where [$($bound)*])?)*);
    };
    (@impl $client:ident $(; $name:ident $([$($generic:tt)*])? ($($arg:ident: $ty:ty),*) -> $ret:ty $(where [$($bound:tt)*])?)*) => {
        impl AsyncCommands for $client {
            fn get<V: FromValue + Send + 'static>(
                &self,
                key: impl AsRef<[u8]>,
            ) -> impl Future<Output = crate::Result<Option<V>>> + Send + 'static {
                $client::get(self, key)
            }

            fn set(
                &self,
                key: impl AsRef<[u8]>,
                value: impl ToValue,
                exp: impl Into<Expiration>,
            ) -> impl Future<Output = crate::Result<()>> + Send + 'static {
                $client::set(self, key, value, exp)
            }

            $(
                fn $name $(<$($generic)*>)? (&self $(, $arg: $ty)*)
                    -> impl Future<Output = crate::Result<$ret>> + Send + 'static
                $(where $($bound)*)?
                {
                    $client::$name(self $(, $arg)*)
                }
            )*
        }
    };
}

/// How arguments are readied for the worker.
mod ready {
    use crate::compression::Compression;
    use crate::error::{Error, Result, SharedError};
    use crate::expiration::Expiration;
    use crate::value::{Encoded, ToValue};

    /// A key, copied.
    pub(super) fn key(key: impl AsRef<[u8]>) -> Result<Box<[u8]>> {
        Ok(key.as_ref().into())
    }

    /// Keys, collected.
    pub(super) fn list<T>(items: impl IntoIterator<Item = T>) -> Result<Vec<T>> {
        Ok(items.into_iter().collect())
    }

    /// Items, collected with their values serialized. A value that does not serialize fails
    /// its own item on the worker, as the blocking client fails it.
    pub(super) fn items<K, V: ToValue>(
        items: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Vec<(K, Serialized)>> {
        Ok(items
            .into_iter()
            .map(|(key, value)| (key, Serialized::of(value)))
            .collect())
    }

    /// An expiration, converted.
    pub(super) fn exp(exp: impl Into<Expiration>) -> Result<Expiration> {
        Ok(exp.into())
    }

    /// A value, serialized; its encoder's error is the call's.
    pub(in crate::asynch) fn value(value: impl ToValue) -> Result<Serialized> {
        let serialized = Serialized::of(value);
        match serialized.refused {
            Some(cause) => Err(Error::Encode(cause)),
            None => Ok(serialized),
        }
    }

    /// Anything else, as it is.
    pub(super) fn moved<T>(value: T) -> Result<T> {
        Ok(value)
    }

    /// A value as its [`ToValue`] made it, owned, for the worker's client to compress and
    /// store as it would have the value itself; or its encoder's error, which the worker's
    /// client meets as it would have.
    pub(crate) struct Serialized {
        data: Vec<u8>,
        flags: u32,
        compression: Option<Compression>,
        refused: Option<SharedError>,
    }

    impl Serialized {
        fn of(value: impl ToValue) -> Serialized {
            let (data, flags, refused) = match value.to_value() {
                Ok(encoded) => (encoded.data.into_owned(), encoded.flags, None),
                Err(error) => (Vec::new(), 0, Some(SharedError::from(error))),
            };
            Serialized {
                data,
                flags,
                compression: value.compression(),
                refused,
            }
        }
    }

    impl ToValue for Serialized {
        fn to_value(&self) -> std::result::Result<Encoded<'_>, crate::BoxError> {
            match &self.refused {
                Some(cause) => Err(Box::new(Refused(cause.clone()))),
                None => Ok(Encoded::borrowed(&self.data, self.flags)),
            }
        }

        fn compression(&self) -> Option<Compression> {
            self.compression
        }
    }

    /// An encoder's error, handed on.
    #[derive(Debug)]
    struct Refused(SharedError);

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt(f)
        }
    }

    impl std::error::Error for Refused {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.0.source()
        }
    }
}

on_a_worker! {
keys {
    // ---- one key ----------------------------------------------------------------------------

    /// The value of `key` and its CAS token, or `None`: [`Client::gets`]. Not merged with
    /// other gets (a multi-get carries no tokens here).
    on key fn gets[V: FromValue + Send + 'static](key: impl AsRef<[u8]> => ready::key) -> Option<(V, u64)>;

    /// Stores `value` only if `key` does not exist; `false` if it does: [`Client::add`].
    on key fn add(
        key: impl AsRef<[u8]> => ready::key,
        value: impl ToValue => ready::value,
        exp: impl Into<Expiration> => ready::exp,
    ) -> bool;

    /// Stores `value` only if `key` exists; `false` if it does not: [`Client::replace`].
    on key fn replace(
        key: impl AsRef<[u8]> => ready::key,
        value: impl ToValue => ready::value,
        exp: impl Into<Expiration> => ready::exp,
    ) -> bool;

    /// Appends `value`'s bytes to the value of `key`; `false` if it does not exist:
    /// [`Client::append`].
    on key fn append(key: impl AsRef<[u8]> => ready::key, value: impl ToValue => ready::value)
        -> bool;

    /// Prepends `value`'s bytes to the value of `key`; `false` if it does not exist:
    /// [`Client::prepend`].
    on key fn prepend(key: impl AsRef<[u8]> => ready::key, value: impl ToValue => ready::value)
        -> bool;

    /// Stores `value` only if `key` still has the CAS token `cas`; `false` if it changed or is
    /// gone: [`Client::cas`].
    on key fn cas(
        key: impl AsRef<[u8]> => ready::key,
        value: impl ToValue => ready::value,
        cas: u64 => ready::moved,
        exp: impl Into<Expiration> => ready::exp,
    ) -> bool;

    /// Deletes `key`; `false` if it did not exist: [`Client::delete`].
    on key fn delete(key: impl AsRef<[u8]> => ready::key) -> bool;

    /// Sets a new expiration on `key`; `false` if it does not exist: [`Client::touch`].
    on key fn touch(key: impl AsRef<[u8]> => ready::key, exp: impl Into<Expiration> => ready::exp) -> bool;

    /// Adds `delta` to the counter under `key`: [`Client::incr`]. A missing key is
    /// [`Error::NotFound`](crate::Error::NotFound).
    on key fn incr(key: impl AsRef<[u8]> => ready::key, delta: u64 => ready::moved) -> u64;

    /// Subtracts `delta` from the counter under `key`, stopping at 0: [`Client::decr`].
    on key fn decr(key: impl AsRef<[u8]> => ready::key, delta: u64 => ready::moved) -> u64;

    /// [`AsyncClient::incr`] that creates a missing counter with `initial`:
    /// [`Client::incr_with_initial`].
    on key fn incr_with_initial(
        key: impl AsRef<[u8]> => ready::key,
        delta: u64 => ready::moved,
        initial: u64 => ready::moved,
        exp: impl Into<Expiration> => ready::exp,
    ) -> u64;

    /// [`AsyncClient::decr`] that creates a missing counter with `initial`:
    /// [`Client::decr_with_initial`].
    on key fn decr_with_initial(
        key: impl AsRef<[u8]> => ready::key,
        delta: u64 => ready::moved,
        initial: u64 => ready::moved,
        exp: impl Into<Expiration> => ready::exp,
    ) -> u64;

    /// The server `key` maps to now: [`Client::server_for_key`].
    on key fn server_for_key(key: impl AsRef<[u8]> => ready::key) -> Address;

    // ---- many keys --------------------------------------------------------------------------

    /// The values of the keys that exist: [`Client::get_multi`]. One multi-get of its own
    /// (not merged with [`AsyncClient::get`]s); a failed server fails the call with
    /// [`Error::Multi`](crate::Error::Multi).
    fn get_multi[K, V](keys: impl IntoIterator<Item = K> => ready::list) -> HashMap<K, V>
        where [K: AsRef<[u8]> + Eq + Hash + Send + 'static, V: FromValue + Send + 'static];

    /// The values found and, per failed server, its error and keys:
    /// [`Client::get_multi_partial`].
    fn get_multi_partial[K, V](keys: impl IntoIterator<Item = K> => ready::list)
        -> Partial<HashMap<K, V>>
        where [K: AsRef<[u8]> + Eq + Hash + Send + 'static, V: FromValue + Send + 'static];

    /// Stores every item; returns the keys not stored: [`Client::set_multi`].
    fn set_multi[K, V](
        items: impl IntoIterator<Item = (K, V)> => ready::items,
        exp: impl Into<Expiration> => ready::exp,
    ) -> Vec<K>
        where [K: AsRef<[u8]> + Send + 'static, V: ToValue];

    /// [`AsyncClient::set_multi`] that returns what failed beside the keys not stored:
    /// [`Client::set_multi_partial`].
    fn set_multi_partial[K, V](
        items: impl IntoIterator<Item = (K, V)> => ready::items,
        exp: impl Into<Expiration> => ready::exp,
    ) -> Partial<Vec<K>>
        where [K: AsRef<[u8]> + Send + 'static, V: ToValue];

    /// Stores each item whose key does not exist yet; returns the keys that existed:
    /// [`Client::add_multi`].
    fn add_multi[K, V](
        items: impl IntoIterator<Item = (K, V)> => ready::items,
        exp: impl Into<Expiration> => ready::exp,
    ) -> Vec<K>
        where [K: AsRef<[u8]> + Send + 'static, V: ToValue];

    /// [`AsyncClient::add_multi`] that returns what failed beside the keys that existed:
    /// [`Client::add_multi_partial`].
    fn add_multi_partial[K, V](
        items: impl IntoIterator<Item = (K, V)> => ready::items,
        exp: impl Into<Expiration> => ready::exp,
    ) -> Partial<Vec<K>>
        where [K: AsRef<[u8]> + Send + 'static, V: ToValue];

    /// Deletes every key; returns the keys that did not exist: [`Client::delete_multi`].
    fn delete_multi[K](keys: impl IntoIterator<Item = K> => ready::list) -> Vec<K>
        where [K: AsRef<[u8]> + Send + 'static];

    /// [`AsyncClient::delete_multi`] that returns what failed beside the keys that did not
    /// exist: [`Client::delete_multi_partial`].
    fn delete_multi_partial[K](keys: impl IntoIterator<Item = K> => ready::list) -> Partial<Vec<K>>
        where [K: AsRef<[u8]> + Send + 'static];

    /// Adds `delta` to every counter; each key maps to its new value, or `None` if it does not
    /// exist: [`Client::incr_multi`].
    fn incr_multi[K](keys: impl IntoIterator<Item = K> => ready::list, delta: u64 => ready::moved)
        -> HashMap<K, Option<u64>>
        where [K: AsRef<[u8]> + Eq + Hash + Send + 'static];

    /// [`AsyncClient::incr_multi`] that returns what failed beside the new values:
    /// [`Client::incr_multi_partial`].
    fn incr_multi_partial[K](keys: impl IntoIterator<Item = K> => ready::list, delta: u64 => ready::moved)
        -> Partial<HashMap<K, Option<u64>>>
        where [K: AsRef<[u8]> + Eq + Hash + Send + 'static];

    /// Adds each key's own delta to its counter: [`Client::incr_multi_by`].
    fn incr_multi_by[K](items: impl IntoIterator<Item = (K, u64)> => ready::list)
        -> HashMap<K, Option<u64>>
        where [K: AsRef<[u8]> + Eq + Hash + Send + 'static];

    /// Subtracts `delta` from every counter, stopping at 0: [`Client::decr_multi`].
    fn decr_multi[K](keys: impl IntoIterator<Item = K> => ready::list, delta: u64 => ready::moved)
        -> HashMap<K, Option<u64>>
        where [K: AsRef<[u8]> + Eq + Hash + Send + 'static];

    /// [`AsyncClient::decr_multi`] that returns what failed beside the new values:
    /// [`Client::decr_multi_partial`].
    fn decr_multi_partial[K](keys: impl IntoIterator<Item = K> => ready::list, delta: u64 => ready::moved)
        -> Partial<HashMap<K, Option<u64>>>
        where [K: AsRef<[u8]> + Eq + Hash + Send + 'static];

    /// Subtracts each key's own delta from its counter: [`Client::decr_multi_by`].
    fn decr_multi_by[K](items: impl IntoIterator<Item = (K, u64)> => ready::list)
        -> HashMap<K, Option<u64>>
        where [K: AsRef<[u8]> + Eq + Hash + Send + 'static];

    /// Stores many items without a reply per item: [`Client::bulk_set`] (noreply and buffered
    /// over ASCII, on a second connection per server of the worker's client).
    fn bulk_set[K, V](
        items: impl IntoIterator<Item = (K, V)> => ready::items,
        exp: impl Into<Expiration> => ready::exp,
    ) -> ()
        where [K: AsRef<[u8]> + Send + 'static, V: ToValue];

}
servers {
    // ---- servers ----------------------------------------------------------------------------

    /// Each server's version, asked afresh on one worker's connections: [`Client::version`].
    fn version() -> Vec<(Address, String)>;

    /// Removes every item from every server, after `delay` if given: [`Client::flush_all`].
    fn flush_all(delay: Option<Duration> => ready::moved) -> ();
}
}

impl AsyncClient {
    /// Every stat of every server (`arg`: a stats group such as `"items"`):
    /// [`Client::stats`].
    pub fn stats(&self, arg: Option<&str>) -> AsyncCall<Vec<ServerStats>> {
        let arg = arg.map(str::to_owned);
        self.call(self.lane(None), move |client: &Client| {
            client.stats(arg.as_deref())
        })
    }
}
