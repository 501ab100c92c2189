//! Key operations, written once for a key space: a client's keys, or those under a prefix
//! ([`Prefixed`]). The public methods of [`Client`] and [`Prefixed`] are generated from the one
//! list below and call the same implementation, in `single` (one key) and `multi` (many).

mod bulk;
mod fetch;
mod load;
mod multi;
mod partial;
mod pipeline;
mod replies;
mod single;

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::Hash;

use crate::client::Client;
use crate::error::Result;
use crate::expiration::Expiration;
use crate::server::Address;
use crate::value::{FromValue, ToValue};

pub(crate) use bulk::Bulk;
pub use partial::{Fetched, Partial};
pub(crate) use pipeline::ReadySet;
#[cfg(feature = "async")]
pub(crate) use single::Unpacked;

/// The keys of one client under one prefix (empty for the client's own keys).
#[derive(Clone, Copy)]
pub(crate) struct Keys<'a> {
    client: &'a Client,
    prefix: &'a [u8],
}

impl<'a> Keys<'a> {
    /// The key sent for `key`: the prefix and the key, checked against the client's rules.
    #[inline(always)]
    fn full<'k>(&self, key: &'k [u8]) -> Result<Cow<'k, [u8]>> {
        crate::trace::key(key);
        if !self.prefix.is_empty() {
            return self.prefixed(key).map(Cow::Owned);
        }
        self.client.check_key(key)?;
        Ok(Cow::Borrowed(key))
    }

    fn prefixed(&self, key: &[u8]) -> Result<Vec<u8>> {
        let full = [self.prefix, key].concat();
        self.client.check_key(&full)?;
        Ok(full)
    }
}

/// A view of a [`Client`] that puts a prefix in front of every key and takes it off the keys it
/// returns (pylibmc's `key_prefix`), made by [`Client::prefixed`]. It has every key operation
/// the client has; the 250-byte key limit counts the prefix.
#[derive(Debug)]
pub struct Prefixed<'c> {
    client: &'c Client,
    prefix: Vec<u8>,
}

impl<'c> Prefixed<'c> {
    /// The prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The client.
    pub fn client(&self) -> &'c Client {
        self.client
    }

    #[inline]
    fn keys(&self) -> Keys<'_> {
        Keys {
            client: self.client,
            prefix: &self.prefix,
        }
    }
}

impl Client {
    /// A view whose operations put `prefix` in front of every key and take it off the keys they
    /// return (pylibmc's `key_prefix`). The 250-byte key limit counts the prefix.
    ///
    /// ```no_run
    /// # let mc = libmemcached::Client::new(["127.0.0.1:11211"])?;
    /// let users = mc.prefixed("user:");
    /// users.set_multi([("1", "ada"), ("2", "bob")], 0)?;         // stores user:1 and user:2
    /// let names: std::collections::HashMap<&str, String> = users.get_multi(["1", "2"])?;
    /// assert_eq!(names["1"], "ada");
    /// assert_eq!(users.get::<String>("2")?.as_deref(), Some("bob"));
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn prefixed(&self, prefix: impl AsRef<[u8]>) -> Prefixed<'_> {
        Prefixed {
            client: self,
            prefix: prefix.as_ref().to_vec(),
        }
    }

    #[inline]
    fn keys(&self) -> Keys<'_> {
        Keys {
            client: self,
            prefix: b"",
        }
    }
}

/// Defines each key operation once, as a method of both [`Client`] and [`Prefixed`] that calls
/// [`Keys`]' method of the same name through `Client::call` (a span, the counters), and as a
/// method of [`Commands`], implemented by both and by the pools' clients.
/// Generic parameters go in `[...]`, bounds in `where [...]`.
macro_rules! key_operations {
    ($(
        $(#[$doc:meta])*
        fn $name:ident $([$($generic:tt)*])? (&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty
        $(where [$($bound:tt)*])?;
    )*) => {
        impl Client {
            $(
                $(#[$doc])*
                #[inline]
                pub fn $name $(<$($generic)*>)? (&self $(, $arg: $ty)*) -> $ret
                $(where $($bound)*)?
                {
                    self.call(stringify!($name), || self.keys().$name($($arg),*))
                }
            )*
        }

        impl Prefixed<'_> {
            $(
                $(#[$doc])*
                #[inline]
                pub fn $name $(<$($generic)*>)? (&self $(, $arg: $ty)*) -> $ret
                $(where $($bound)*)?
                {
                    self.client
                        .call(stringify!($name), || self.keys().$name($($arg),*))
                        .map_err(|error| error.without_prefix(&self.prefix, false))
                }
            )*
        }

        /// The key operations of a blocking client, for code that works with any of them: a
        /// [`Client`], a [`Prefixed`] view, or a pool's client ([`PooledClient`],
        /// [`ThreadClient`]). Each method is the client method of the same name.
        ///
        /// ```no_run
        /// use libmemcached::{Client, Commands, Result};
        ///
        /// fn visit(cache: &impl Commands, user: u64) -> Result<u64> {
        ///     cache.incr_with_initial(format!("visits:{user}"), 1, 1, 0)
        /// }
        ///
        /// let mc = Client::new(["127.0.0.1:11211"])?;
        /// visit(&mc, 7)?;
        /// visit(&mc.prefixed("tenant-a:"), 7)?;
        /// # Ok::<(), libmemcached::Error>(())
        /// ```
        pub trait Commands {
            $(
                $(#[$doc])*
                fn $name $(<$($generic)*>)? (&self $(, $arg: $ty)*) -> $ret
                $(where $($bound)*)?;
            )*
        }

        key_operations!(@impl Client => Client $(; $name $([$($generic)*])? ($($arg: $ty),*) -> $ret $(where [$($bound)*])?)*);
        key_operations!(@impl Prefixed<'_> => Prefixed $(; $name $([$($generic)*])? ($($arg: $ty),*) -> $ret $(where [$($bound)*])?)*);
        key_operations!(@impl PooledClient<'_> => Client $(; $name $([$($generic)*])? ($($arg: $ty),*) -> $ret $(where [$($bound)*])?)*);
        key_operations!(@impl ThreadClient<'_> => Client $(; $name $([$($generic)*])? ($($arg: $ty),*) -> $ret $(where [$($bound)*])?)*);
    };
    // `Commands` for `$ty`, each method calling `$inherent`'s own (through `Deref` for the
    // pools' clients).
    (@impl $ty:ty => $inherent:ident $(; $name:ident $([$($generic:tt)*])? ($($arg:ident: $argty:ty),*) -> $ret:ty $(where [$($bound:tt)*])?)*) => {
        impl Commands for $ty {
            $(
                #[inline]
                fn $name $(<$($generic)*>)? (&self $(, $arg: $argty)*) -> $ret
                $(where $($bound)*)?
                {
                    $inherent::$name(self $(, $arg)*)
                }
            )*
        }
    };
}

use crate::pool::{PooledClient, ThreadClient};

key_operations! {
    // ---- one key ----------------------------------------------------------------------------

    /// The value of `key`, or `None` if it is not there. A value of zero bytes is a hit.
    fn get[V: FromValue](&self, key: impl AsRef<[u8]>) -> Result<Option<V>>;

    /// The value of `key` and its CAS token for [`Client::cas`], or `None` if it is not there.
    fn gets[V: FromValue](&self, key: impl AsRef<[u8]>) -> Result<Option<(V, u64)>>;

    /// Stores `value` under `key`.
    fn set(&self, key: impl AsRef<[u8]>, value: impl ToValue, exp: impl Into<Expiration>)
        -> Result<()>;

    /// Stores `value` only if `key` does not exist. `Ok(false)`: it exists.
    fn add(&self, key: impl AsRef<[u8]>, value: impl ToValue, exp: impl Into<Expiration>)
        -> Result<bool>;

    /// Stores `value` only if `key` exists. `Ok(false)`: it does not.
    fn replace(&self, key: impl AsRef<[u8]>, value: impl ToValue, exp: impl Into<Expiration>)
        -> Result<bool>;

    /// Appends `value`'s bytes to the existing value of `key` (its flags stay). `Ok(false)`:
    /// the key does not exist.
    fn append(&self, key: impl AsRef<[u8]>, value: impl ToValue) -> Result<bool>;

    /// Prepends `value`'s bytes to the existing value of `key` (its flags stay). `Ok(false)`:
    /// the key does not exist.
    fn prepend(&self, key: impl AsRef<[u8]>, value: impl ToValue) -> Result<bool>;

    /// Stores `value` only if `key` still has the CAS token `cas` from [`Client::gets`].
    /// `Ok(false)`: the key changed or is gone.
    fn cas(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue,
        cas: u64,
        exp: impl Into<Expiration>,
    ) -> Result<bool>;

    /// Deletes `key`. `Ok(false)`: it did not exist.
    fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool>;

    /// Sets a new expiration on `key`. `Ok(false)`: it does not exist.
    fn touch(&self, key: impl AsRef<[u8]>, exp: impl Into<Expiration>) -> Result<bool>;

    /// Adds `delta` to the number stored under `key` and returns the result, which wraps at
    /// 2^64. A missing key is [`Error::NotFound`](crate::Error::NotFound).
    fn incr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<u64>;

    /// Subtracts `delta` from the number stored under `key` and returns the result, which stops
    /// at 0. A missing key is [`Error::NotFound`](crate::Error::NotFound).
    fn decr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<u64>;

    /// Like [`Client::incr`], but a missing key is created with `initial` (and `exp`) and
    /// `initial` is returned.
    fn incr_with_initial(
        &self,
        key: impl AsRef<[u8]>,
        delta: u64,
        initial: u64,
        exp: impl Into<Expiration>,
    ) -> Result<u64>;

    /// Like [`Client::decr`], but a missing key is created with `initial` (and `exp`) and
    /// `initial` is returned.
    fn decr_with_initial(
        &self,
        key: impl AsRef<[u8]>,
        delta: u64,
        initial: u64,
        exp: impl Into<Expiration>,
    ) -> Result<u64>;

    /// The server `key` maps to now.
    fn server_for_key(&self, key: impl AsRef<[u8]>) -> Result<Address>;

    // ---- many keys --------------------------------------------------------------------------

    /// The values of the keys that exist, under the keys as given. Duplicates are fine; an
    /// empty list sends nothing.
    ///
    /// If a server fails, the call fails with [`Error::Multi`](crate::Error::Multi) naming it
    /// and its keys, after reading everything the other servers sent;
    /// [`Client::get_multi_partial`] keeps the values those sent.
    fn get_multi[K, V](&self, keys: impl IntoIterator<Item = K>) -> Result<HashMap<K, V>>
        where [K: AsRef<[u8]> + Eq + Hash, V: FromValue];

    /// The values of the keys that exist, and what failed: per failed server, its error and
    /// the keys it held (a value that does not decode fails its key alone). During a failover
    /// this keeps every hit from the healthy servers. A server that breaks off in the call keeps
    /// none of its values (its stream may have made them wrong), and a reply that names a key
    /// not asked fails every key, since libmemcached does not say which server sent it. `Err`
    /// only when nothing could be asked (a bad key, no servers, UDP).
    ///
    /// ```no_run
    /// # let mc = libmemcached::Client::new(["127.0.0.1:11211", "127.0.0.1:11212"])?;
    /// let found = mc.get_multi_partial::<_, String>(["a", "b", "c"])?;
    /// for failure in &found.failures {
    ///     eprintln!("{} keys lost: {}", failure.keys.len(), failure.error);
    /// }
    /// let hits = found.ok;                                     // HashMap<&str, String>
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    fn get_multi_partial[K, V](&self, keys: impl IntoIterator<Item = K>)
        -> Result<Partial<HashMap<K, V>>>
        where [K: AsRef<[u8]> + Eq + Hash, V: FromValue];

    /// Hands each value found to `each` as it arrives, key and value borrowed (no map, no
    /// copies: the value is libmemcached's buffer, still compressed if it was stored so;
    /// [`Fetched::decode`] decodes it). Then, if a server failed, an
    /// [`Error::Multi`](crate::Error::Multi) naming it and the keys it held; `each` has seen
    /// everything the other servers sent. A failed server's keys are all in the error, even
    /// those whose items `each` saw before the server broke off: a stream that breaks (a length
    /// that lies, a timeout) may have made those wrong, so treat them as not found.
    ///
    /// `each` runs while replies are still owed, so a call on the same client from inside it
    /// fails with [`ReturnCode::FetchNotFinished`](crate::ReturnCode::FetchNotFinished) instead
    /// of making libmemcached drop them; use another client there.
    ///
    /// ```no_run
    /// # let mc = libmemcached::Client::new(["127.0.0.1:11211"])?;
    /// let mut bytes = 0;
    /// mc.get_multi_each(["a", "b", "c"], |item| bytes += item.value().len())?;
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    fn get_multi_each[K](&self, keys: impl IntoIterator<Item = K>, each: impl FnMut(Fetched<'_>))
        -> Result<()>
        where [K: AsRef<[u8]>];

    /// Stores every item; returns the keys that were not stored (none, unless a server
    /// refused). Compression applies as for [`Client::set`]. Every item is attempted; if any
    /// fails, the call fails with [`Error::Multi`](crate::Error::Multi) naming the failures.
    fn set_multi[K, V](&self, items: impl IntoIterator<Item = (K, V)>, exp: impl Into<Expiration>)
        -> Result<Vec<K>>
        where [K: AsRef<[u8]>, V: ToValue];

    /// [`Client::set_multi`] that returns what failed beside the keys not stored.
    fn set_multi_partial[K, V](
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<Partial<Vec<K>>>
        where [K: AsRef<[u8]>, V: ToValue];

    /// Stores each item whose key does not exist yet; returns the keys that existed.
    fn add_multi[K, V](&self, items: impl IntoIterator<Item = (K, V)>, exp: impl Into<Expiration>)
        -> Result<Vec<K>>
        where [K: AsRef<[u8]>, V: ToValue];

    /// [`Client::add_multi`] that returns what failed beside the keys that existed.
    fn add_multi_partial[K, V](
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<Partial<Vec<K>>>
        where [K: AsRef<[u8]>, V: ToValue];

    /// Deletes every key; returns the keys that did not exist.
    fn delete_multi[K](&self, keys: impl IntoIterator<Item = K>) -> Result<Vec<K>>
        where [K: AsRef<[u8]>];

    /// [`Client::delete_multi`] that returns what failed beside the keys that did not exist.
    fn delete_multi_partial[K](&self, keys: impl IntoIterator<Item = K>) -> Result<Partial<Vec<K>>>
        where [K: AsRef<[u8]>];

    /// Adds `delta` to every counter; each key maps to its new value, or `None` if it does not
    /// exist. Increments that succeeded stay when others fail.
    fn incr_multi[K](&self, keys: impl IntoIterator<Item = K>, delta: u64)
        -> Result<HashMap<K, Option<u64>>>
        where [K: AsRef<[u8]> + Eq + Hash];

    /// [`Client::incr_multi`] that returns what failed beside the new values.
    fn incr_multi_partial[K](&self, keys: impl IntoIterator<Item = K>, delta: u64)
        -> Result<Partial<HashMap<K, Option<u64>>>>
        where [K: AsRef<[u8]> + Eq + Hash];

    /// Adds each key's own delta to its counter; like [`Client::incr_multi`].
    fn incr_multi_by[K](&self, items: impl IntoIterator<Item = (K, u64)>)
        -> Result<HashMap<K, Option<u64>>>
        where [K: AsRef<[u8]> + Eq + Hash];

    /// Subtracts `delta` from every counter (stopping at 0); like [`Client::incr_multi`].
    fn decr_multi[K](&self, keys: impl IntoIterator<Item = K>, delta: u64)
        -> Result<HashMap<K, Option<u64>>>
        where [K: AsRef<[u8]> + Eq + Hash];

    /// [`Client::decr_multi`] that returns what failed beside the new values.
    fn decr_multi_partial[K](&self, keys: impl IntoIterator<Item = K>, delta: u64)
        -> Result<Partial<HashMap<K, Option<u64>>>>
        where [K: AsRef<[u8]> + Eq + Hash];

    /// Subtracts each key's own delta from its counter; like [`Client::incr_multi`].
    fn decr_multi_by[K](&self, items: impl IntoIterator<Item = (K, u64)>)
        -> Result<HashMap<K, Option<u64>>>
        where [K: AsRef<[u8]> + Eq + Hash];

    /// Stores many items as fast as the protocol allows, without a reply per item:
    /// fire-and-forget for each item's result.
    ///
    /// Over ASCII the items go out with `noreply`, a buffer at a time, through a second
    /// connection per server that the client opens on first use: over ten times faster than
    /// [`Client::set`] one by one. Then one read per server waits for the writes to land and
    /// checks that the connection is in step. A value over the server's item size limit is
    /// refused before anything is sent. What is not reported: an item the server could not
    /// store (out of memory) — use [`Client::set_multi`] when each result matters. The binary
    /// protocol has no safe quiet mode (a lost error reply desynchronises it), so binary
    /// clients send the items one by one.
    fn bulk_set[K, V](&self, items: impl IntoIterator<Item = (K, V)>, exp: impl Into<Expiration>)
        -> Result<()>
        where [K: AsRef<[u8]>, V: ToValue];
}
