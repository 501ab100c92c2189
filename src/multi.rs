//! Multi-key operations, key prefixes and the bulk-load path.
//!
//! Reads go out in one `mget` per call (one request line per server in ASCII, pipelined packets
//! in binary) and are fetched into one reused result. Writes are sent one by one (memcached has
//! no multi-set), every item is attempted, and the call returns the keys where nothing happened.
//! A failing server never shortens a result silently: the call returns [`Error::Multi`] naming
//! each failing server and the keys it held.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::Hash;

use crate::client::Client;
use crate::error::{Error, KeyFailure, Result};
use crate::expiration::Expiration;
use crate::ffi::{Counter, Rc, Store, fetch};
use crate::value::{FromValue, ToValue};

impl Client {
    /// The values of the keys that exist, under the keys as given. Duplicates are fine; an
    /// empty list sends nothing.
    ///
    /// If a server fails, the call fails with [`Error::Multi`] naming it and its keys, after
    /// reading everything the other servers sent.
    pub fn get_multi<K, V>(&self, keys: impl IntoIterator<Item = K>) -> Result<HashMap<K, V>>
    where
        K: AsRef<[u8]> + Eq + Hash,
        V: FromValue,
    {
        get_multi(self, b"", keys)
    }

    /// Stores every item; returns the keys that were not stored (none, unless a server
    /// refused). Compression applies as for [`Client::set`].
    pub fn set_multi<K, V>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<Vec<K>>
    where
        K: AsRef<[u8]>,
        V: ToValue,
    {
        store_multi(self, b"", Store::Set, items, exp.into())
    }

    /// Stores each item whose key does not exist yet; returns the keys that existed.
    pub fn add_multi<K, V>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<Vec<K>>
    where
        K: AsRef<[u8]>,
        V: ToValue,
    {
        store_multi(self, b"", Store::Add, items, exp.into())
    }

    /// Deletes every key; returns the keys that did not exist.
    pub fn delete_multi<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<K>> {
        delete_multi(self, b"", keys)
    }

    /// Adds `delta` to every counter; each key maps to its new value, or `None` if it does not
    /// exist. Increments that succeeded stay when others fail.
    pub fn incr_multi<K>(
        &self,
        keys: impl IntoIterator<Item = K>,
        delta: u64,
    ) -> Result<HashMap<K, Option<u64>>>
    where
        K: AsRef<[u8]> + Eq + Hash,
    {
        arith_multi(
            self,
            b"",
            Counter::Incr,
            keys.into_iter().map(|k| (k, delta)),
        )
    }

    /// Adds each key's own delta to its counter; like [`Client::incr_multi`].
    pub fn incr_multi_by<K>(
        &self,
        items: impl IntoIterator<Item = (K, u64)>,
    ) -> Result<HashMap<K, Option<u64>>>
    where
        K: AsRef<[u8]> + Eq + Hash,
    {
        arith_multi(self, b"", Counter::Incr, items)
    }

    /// Subtracts `delta` from every counter (stopping at 0); like [`Client::incr_multi`].
    pub fn decr_multi<K>(
        &self,
        keys: impl IntoIterator<Item = K>,
        delta: u64,
    ) -> Result<HashMap<K, Option<u64>>>
    where
        K: AsRef<[u8]> + Eq + Hash,
    {
        arith_multi(
            self,
            b"",
            Counter::Decr,
            keys.into_iter().map(|k| (k, delta)),
        )
    }

    /// Subtracts each key's own delta from its counter; like [`Client::incr_multi`].
    pub fn decr_multi_by<K>(
        &self,
        items: impl IntoIterator<Item = (K, u64)>,
    ) -> Result<HashMap<K, Option<u64>>>
    where
        K: AsRef<[u8]> + Eq + Hash,
    {
        arith_multi(self, b"", Counter::Decr, items)
    }

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
    pub fn bulk_set<K, V>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<()>
    where
        K: AsRef<[u8]>,
        V: ToValue,
    {
        bulk_set(self, b"", items, exp.into())
    }

    /// A view whose operations put `prefix` in front of every key and take it off the keys they
    /// return (pylibmc's `key_prefix`). The 250-byte key limit counts the prefix.
    ///
    /// ```no_run
    /// # let mc = libmemcached::Client::new(["127.0.0.1:11211"])?;
    /// let users = mc.prefixed("user:");
    /// users.set_multi([("1", "ada"), ("2", "bob")], 0)?;         // stores user:1 and user:2
    /// let names: std::collections::HashMap<&str, String> = users.get_multi(["1", "2"])?;
    /// assert_eq!(names["1"], "ada");
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn prefixed(&self, prefix: impl AsRef<[u8]>) -> Prefixed<'_> {
        Prefixed {
            client: self,
            prefix: prefix.as_ref().to_vec(),
        }
    }
}

/// A view of a [`Client`] that prefixes every key (see [`Client::prefixed`]).
#[derive(Debug)]
pub struct Prefixed<'c> {
    client: &'c Client,
    prefix: Vec<u8>,
}

impl Prefixed<'_> {
    /// The prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// [`Client::get_multi`] with the prefix.
    pub fn get_multi<K, V>(&self, keys: impl IntoIterator<Item = K>) -> Result<HashMap<K, V>>
    where
        K: AsRef<[u8]> + Eq + Hash,
        V: FromValue,
    {
        get_multi(self.client, &self.prefix, keys)
    }

    /// [`Client::set_multi`] with the prefix.
    pub fn set_multi<K, V>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<Vec<K>>
    where
        K: AsRef<[u8]>,
        V: ToValue,
    {
        store_multi(self.client, &self.prefix, Store::Set, items, exp.into())
    }

    /// [`Client::add_multi`] with the prefix.
    pub fn add_multi<K, V>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<Vec<K>>
    where
        K: AsRef<[u8]>,
        V: ToValue,
    {
        store_multi(self.client, &self.prefix, Store::Add, items, exp.into())
    }

    /// [`Client::delete_multi`] with the prefix.
    pub fn delete_multi<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<K>> {
        delete_multi(self.client, &self.prefix, keys)
    }

    /// [`Client::incr_multi`] with the prefix.
    pub fn incr_multi<K>(
        &self,
        keys: impl IntoIterator<Item = K>,
        delta: u64,
    ) -> Result<HashMap<K, Option<u64>>>
    where
        K: AsRef<[u8]> + Eq + Hash,
    {
        arith_multi(
            self.client,
            &self.prefix,
            Counter::Incr,
            keys.into_iter().map(|k| (k, delta)),
        )
    }

    /// [`Client::incr_multi_by`] with the prefix.
    pub fn incr_multi_by<K>(
        &self,
        items: impl IntoIterator<Item = (K, u64)>,
    ) -> Result<HashMap<K, Option<u64>>>
    where
        K: AsRef<[u8]> + Eq + Hash,
    {
        arith_multi(self.client, &self.prefix, Counter::Incr, items)
    }

    /// [`Client::decr_multi`] with the prefix.
    pub fn decr_multi<K>(
        &self,
        keys: impl IntoIterator<Item = K>,
        delta: u64,
    ) -> Result<HashMap<K, Option<u64>>>
    where
        K: AsRef<[u8]> + Eq + Hash,
    {
        arith_multi(
            self.client,
            &self.prefix,
            Counter::Decr,
            keys.into_iter().map(|k| (k, delta)),
        )
    }

    /// [`Client::decr_multi_by`] with the prefix.
    pub fn decr_multi_by<K>(
        &self,
        items: impl IntoIterator<Item = (K, u64)>,
    ) -> Result<HashMap<K, Option<u64>>>
    where
        K: AsRef<[u8]> + Eq + Hash,
    {
        arith_multi(self.client, &self.prefix, Counter::Decr, items)
    }

    /// [`Client::bulk_set`] with the prefix.
    pub fn bulk_set<K, V>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<()>
    where
        K: AsRef<[u8]>,
        V: ToValue,
    {
        bulk_set(self.client, &self.prefix, items, exp.into())
    }
}

/// The key sent for `key` under `prefix`, checked.
fn full_key<'k>(
    client_rules: crate::key::Rules,
    prefix: &[u8],
    key: &'k [u8],
) -> Result<Cow<'k, [u8]>> {
    let full = if prefix.is_empty() {
        Cow::Borrowed(key)
    } else {
        Cow::Owned([prefix, key].concat())
    };
    client_rules.check(&full)?;
    Ok(full)
}

/// Every key sent, checked before anything goes out: one bad key fails the call, whole.
fn full_keys<'k>(
    client: &Client,
    prefix: &[u8],
    keys: impl Iterator<Item = &'k [u8]>,
) -> Result<Vec<Cow<'k, [u8]>>> {
    let rules = client.key_rules();
    keys.map(|k| full_key(rules, prefix, k)).collect()
}

fn get_multi<K, V>(
    client: &Client,
    prefix: &[u8],
    keys: impl IntoIterator<Item = K>,
) -> Result<HashMap<K, V>>
where
    K: AsRef<[u8]> + Eq + Hash,
    V: FromValue,
{
    let keys: Vec<K> = keys.into_iter().collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    // Without a prefix the keys go out as they are: no copies.
    let full = match prefix.is_empty() {
        true => Vec::new(),
        false => full_keys(client, prefix, keys.iter().map(AsRef::as_ref))?,
    };
    let sent: Vec<&[u8]> = match prefix.is_empty() {
        true => {
            let rules = client.key_rules();
            let sent: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
            sent.iter().try_for_each(|k| rules.check(k))?;
            sent
        }
        false => full.iter().map(|k| &**k).collect(),
    };
    client.refuse_over_udp("get_multi")?;
    let mut values: Vec<Option<V>> = std::iter::repeat_with(|| None).take(keys.len()).collect();
    let mut decode_error = None;
    let failures = fetch(&client.handle, &sent, prefix.len(), |i, item| {
        if decode_error.is_none() {
            match client.decode(keys[i].as_ref(), item.value, item.flags) {
                Ok(value) => values[i] = Some(value),
                Err(error) => decode_error = Some(error),
            }
        }
    })?;
    if !failures.is_empty() {
        return Err(Error::Multi { failures });
    }
    if let Some(error) = decode_error {
        return Err(error);
    }
    client.check_auth_after_misses(
        (0..keys.len())
            .filter(|&i| values[i].is_none())
            .map(|i| (sent[i], keys[i].as_ref())),
    )?;
    drop(sent);
    drop(full);
    let mut found = HashMap::with_capacity(keys.len());
    for (k, v) in keys.into_iter().zip(values) {
        if let Some(v) = v {
            found.insert(k, v);
        }
    }
    Ok(found)
}

/// Runs `op` on every item (keys checked first), collecting results and failures; failures
/// with the same error code and server share one entry.
fn each_key<K, X, T>(
    client: &Client,
    prefix: &[u8],
    items: Vec<(K, X)>,
    mut op: impl FnMut(&[u8], X) -> Result<T>,
) -> Result<Vec<(K, T)>>
where
    K: AsRef<[u8]>,
{
    let (keys, xs): (Vec<K>, Vec<X>) = items.into_iter().unzip();
    let full = full_keys(client, prefix, keys.iter().map(AsRef::as_ref))?;
    let mut results = Vec::with_capacity(keys.len());
    let mut failures: Vec<KeyFailure> = Vec::new();
    for ((sent, x), key) in full.iter().zip(xs).zip(&keys) {
        match op(sent, x) {
            Ok(result) => results.push(Some(result)),
            Err(error) => {
                KeyFailure::record(&mut failures, error, key.as_ref().to_vec());
                results.push(None);
            }
        }
    }
    drop(full);
    if !failures.is_empty() {
        return Err(Error::Multi { failures });
    }
    Ok(keys
        .into_iter()
        .zip(results)
        .filter_map(|(k, r)| Some((k, r?)))
        .collect())
}

fn store_multi<K, V>(
    client: &Client,
    prefix: &[u8],
    op: Store,
    items: impl IntoIterator<Item = (K, V)>,
    exp: Expiration,
) -> Result<Vec<K>>
where
    K: AsRef<[u8]>,
    V: ToValue,
{
    let items: Vec<(K, V)> = items.into_iter().collect();
    // The keys were checked by each_key.
    let done = each_key(client, prefix, items, |key, value| {
        client.store_checked(op, key, &value, exp)
    })?;
    Ok(done
        .into_iter()
        .filter(|(_, stored)| !stored)
        .map(|(k, _)| k)
        .collect())
}

fn delete_multi<K: AsRef<[u8]>>(
    client: &Client,
    prefix: &[u8],
    keys: impl IntoIterator<Item = K>,
) -> Result<Vec<K>> {
    let items: Vec<(K, ())> = keys.into_iter().map(|k| (k, ())).collect();
    let done = each_key(client, prefix, items, |key, ()| client.delete(key))?;
    Ok(done
        .into_iter()
        .filter(|(_, deleted)| !deleted)
        .map(|(k, _)| k)
        .collect())
}

fn arith_multi<K>(
    client: &Client,
    prefix: &[u8],
    counter: Counter,
    items: impl IntoIterator<Item = (K, u64)>,
) -> Result<HashMap<K, Option<u64>>>
where
    K: AsRef<[u8]> + Eq + Hash,
{
    let items: Vec<(K, u64)> = items.into_iter().collect();
    let done = each_key(client, prefix, items, |key, delta| {
        let result = match counter {
            Counter::Incr => client.incr(key, delta),
            Counter::Decr => client.decr(key, delta),
        };
        match result {
            Ok(value) => Ok(Some(value)),
            Err(Error::NotFound) => Ok(None),
            Err(other) => Err(other),
        }
    })?;
    Ok(done.into_iter().collect())
}

fn bulk_set<K, V>(
    client: &Client,
    prefix: &[u8],
    items: impl IntoIterator<Item = (K, V)>,
    exp: Expiration,
) -> Result<()>
where
    K: AsRef<[u8]>,
    V: ToValue,
{
    let items: Vec<(K, V)> = items.into_iter().collect();
    if items.is_empty() {
        return Ok(());
    }
    if client.is_binary() || client.handle.facts().udp {
        let not_stored = store_multi(client, prefix, Store::Set, items, exp)?;
        debug_assert!(not_stored.is_empty(), "set reports failures as errors");
        return Ok(());
    }
    let full = full_keys(client, prefix, items.iter().map(|(k, _)| k.as_ref()))?;
    let encoded = items
        .iter()
        .map(|(_, v)| client.encode_for(Store::Set, v))
        .collect::<Result<Vec<_>>>()?;

    let mut slot = client.bulk.borrow_mut();
    let Bulk {
        client: bulk,
        item_limit: limit,
    } = match slot.as_deref() {
        Some(bulk) => bulk,
        None => &**slot.insert(Box::new(Bulk::new(client)?)),
    };
    let limit = *limit;
    // An oversized value would get an error reply that nobody reads: refuse it up front.
    let too_big: Vec<Vec<u8>> = items
        .iter()
        .zip(&encoded)
        .filter(|((k, _), e)| {
            e.data.len() + prefix.len() + k.as_ref().len() + ITEM_OVERHEAD > limit
        })
        .map(|((k, _), _)| k.as_ref().to_vec())
        .collect();
    if !too_big.is_empty() {
        let len = items.len();
        return Err(Error::Multi {
            failures: vec![KeyFailure {
                error: Error::InvalidArgument(format!(
                    "values over the server's item size limit of {limit} bytes; none of the {len} items was sent"
                )),
                keys: too_big,
            }],
        });
    }

    let mut failures: Vec<KeyFailure> = Vec::new();
    let mut last_key_per_server: HashMap<usize, usize> = HashMap::new();
    for (i, ((key, _), (sent, value))) in items.iter().zip(full.iter().zip(&encoded)).enumerate() {
        let rc = bulk.send(Store::Set, sent, value, exp);
        match bulk.handle.check(rc, &[], Some(sent)) {
            Ok(_) => {
                last_key_per_server.insert(bulk.handle.server_index(sent), i);
            }
            Err(error) => KeyFailure::record(&mut failures, error, key.as_ref().to_vec()),
        }
    }
    if let Err(error) = bulk.check(bulk.handle.flush_buffers(), None) {
        failures.push(KeyFailure {
            error,
            keys: Vec::new(),
        });
    }

    // One read per server waits for the server to take the writes, and makes replies that
    // should not exist (an error the server sent despite noreply) surface here, after which
    // the connections are reset before anyone reads them.
    let probes: Vec<&[u8]> = last_key_per_server.values().map(|&i| &*full[i]).collect();
    if !probes.is_empty() {
        match fetch(&bulk.handle, &probes, 0, |_, _| {}) {
            Ok(probe_failures) => failures.extend(probe_failures.into_iter().map(|f| KeyFailure {
                error: f.error,
                keys: Vec::new(),
            })),
            Err(error) => failures.push(KeyFailure {
                error,
                keys: Vec::new(),
            }),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Multi { failures })
    }
}

/// The bulk-load handle: a clone with noreply and buffered writes, so writes go out a buffer
/// at a time with no reply to wait for, and the servers' item size limit, read once.
/// (Buffering without noreply is what aborts libmemcached under load: its purge of pending
/// replies times out. With noreply nothing is pending, so the purge never runs.)
#[derive(Debug)]
pub(crate) struct Bulk {
    client: Client,
    item_limit: usize,
}

impl Bulk {
    fn new(client: &Client) -> Result<Bulk> {
        let item_limit = client.item_size_limit()?;
        let bulk = client.try_clone()?;
        for flag in [
            libmemcached_sys::MEMCACHED_BEHAVIOR_NOREPLY,
            libmemcached_sys::MEMCACHED_BEHAVIOR_BUFFER_REQUESTS,
        ] {
            // Both flags take a boolean; the clone speaks ASCII (checked by the caller).
            let rc = bulk.handle.set_behavior(flag, 1);
            if rc != Rc::SUCCESS {
                return Err(bulk.error(rc, None));
            }
        }
        Ok(Bulk {
            client: bulk,
            item_limit,
        })
    }
}

/// Room memcached needs in an item beside the key and value (header, CAS, suffix), rounded up.
const ITEM_OVERHEAD: usize = 128;
