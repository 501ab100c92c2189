//! Multi-key operations. Reads go out in one `mget` per call (one request line per server in
//! ASCII, pipelined packets in binary) and are fetched into one reused result. Writes are sent
//! one by one (memcached has no multi-set) and every item is attempted. A failing server never
//! shortens a result silently: the strict forms fail with [`Error::Multi`] naming each failing
//! server and the keys it held, the partial forms return it beside what succeeded.

use std::collections::HashMap;
use std::hash::Hash;

use super::fetch::{Fetch, fetch};
use crate::error::{Error, KeyFailure, Result};
use crate::expiration::Expiration;
use crate::ffi::{Counter, Item, Store};
use crate::server::Address;
use crate::value::{FromValue, ToValue};

use super::{Fetched, Keys, Partial, ReadySet};

/// What a multi-get found: the values by key index, the failed servers, and the values that
/// did not decode (in arrival order).
struct Found<V> {
    values: Vec<Option<V>>,
    failures: Vec<KeyFailure>,
    undecoded: Vec<(usize, Error)>,
}

impl Keys<'_> {
    pub(crate) fn get_multi<K, V>(&self, keys: impl IntoIterator<Item = K>) -> Result<HashMap<K, V>>
    where
        K: AsRef<[u8]> + Eq + Hash,
        V: FromValue,
    {
        let keys: Vec<K> = keys.into_iter().collect();
        let mut found = self.fetch_values::<K, V>(&keys)?;
        if !found.failures.is_empty() {
            return Err(Error::Multi {
                failures: found.failures,
            });
        }
        if !found.undecoded.is_empty() {
            return Err(found.undecoded.swap_remove(0).1);
        }
        Ok(into_map(keys, found.values))
    }

    pub(crate) fn get_multi_partial<K, V>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Partial<HashMap<K, V>>>
    where
        K: AsRef<[u8]> + Eq + Hash,
        V: FromValue,
    {
        let keys: Vec<K> = keys.into_iter().collect();
        let Found {
            values,
            mut failures,
            undecoded,
        } = self.fetch_values::<K, V>(&keys)?;
        for (i, error) in undecoded {
            failures.push(KeyFailure {
                error,
                keys: vec![keys[i].as_ref().to_vec()],
            });
        }
        Ok(Partial {
            ok: into_map(keys, values),
            failures,
        })
    }

    pub(crate) fn get_multi_each<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
        mut each: impl FnMut(Fetched<'_>),
    ) -> Result<()> {
        let keys: Vec<K> = keys.into_iter().collect();
        let client = self.client;
        let _streaming = Streaming::start(client);
        let failures = self
            .fetch_keys(&keys, |i, item| {
                each(Fetched {
                    client,
                    key: keys[i].as_ref(),
                    item,
                })
            })?
            .failures;
        match failures.is_empty() {
            true => Ok(()),
            false => Err(Error::Multi { failures }),
        }
    }

    /// Fetches `keys` and decodes each value found.
    fn fetch_values<K: AsRef<[u8]>, V: FromValue>(&self, keys: &[K]) -> Result<Found<V>> {
        let mut values: Vec<Option<V>> = std::iter::repeat_with(|| None).take(keys.len()).collect();
        let mut undecoded = Vec::new();
        let client = self.client;
        let mut budget = client.settings.max_inflated_len;
        let Fetch { found, failures } = self.fetch_keys(keys, |i, item| {
            match client.decode_within(keys[i].as_ref(), item.value, item.flags, &mut budget) {
                Ok(value) => values[i] = Some(value),
                Err(error) => undecoded.push((i, error)),
            }
        })?;
        // A value from a server whose replies then broke off is not kept: its key failed.
        if failures.iter().any(|f| !f.keys.is_empty()) {
            for (value, found) in values.iter_mut().zip(&found) {
                if !found {
                    *value = None;
                }
            }
            undecoded.retain(|(i, _)| found[*i]);
        }
        Ok(Found {
            values,
            failures,
            undecoded,
        })
    }

    /// Requests `keys` (all checked before anything is sent) and hands each item found to
    /// `each` with the index of its key; returns which keys were found (an item handed to
    /// `each` whose server then failed is not) and the servers that failed with their keys,
    /// including servers that turn out to demand SASL.
    fn fetch_keys<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        mut each: impl FnMut(usize, Item<'_>),
    ) -> Result<Fetch> {
        if keys.is_empty() {
            return Ok(Fetch {
                found: Vec::new(),
                failures: Vec::new(),
            });
        }
        let client = self.client;
        let rules = client.key_rules();
        // Without a prefix the keys go out as they are: no copies.
        let owned: Vec<Vec<u8>>;
        let sent: Vec<&[u8]> = if self.prefix.is_empty() {
            let sent: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
            sent.iter().try_for_each(|k| rules.check(k))?;
            sent
        } else {
            owned = keys
                .iter()
                .map(|k| [self.prefix, k.as_ref()].concat())
                .collect();
            owned.iter().try_for_each(|k| rules.check(k))?;
            owned.iter().map(Vec::as_slice).collect()
        };
        client.refuse_over_udp("get_multi")?;
        crate::trace::keys(keys);
        let mut received = 0;
        let mut each = |i, item: Item<'_>| {
            received += item.value.len();
            each(i, item)
        };
        let Fetch {
            mut found,
            mut failures,
        } = match Repeats::find(&sent) {
            None => fetch(&client.handle, &sent, self.prefix.len(), &mut each)?,
            Some(repeats) => repeats.fetch(&client.handle, self.prefix.len(), &mut each)?,
        };
        if client.is_proxy() && failures.iter().any(|f| f.error.is_server()) {
            ask_one_by_one(client, keys, &sent, &mut found, &mut failures, &mut each);
        }
        client.counters.bytes_received.add(received as u64);
        let missed = (0..keys.len())
            .filter(|&i| !found[i])
            .map(|i| (sent[i], keys[i].as_ref()));
        if !failures.is_empty() {
            client.explain_auth_failures(&mut failures, self.prefix);
        }
        client.check_auth_after_misses(missed, &mut failures);
        let hits = found.iter().filter(|&&f| f).count();
        let failed = failures.iter().map(|f| f.keys.len()).sum();
        client.count_reads(keys.len(), hits, failed);
        if client.counters.any_failing() {
            client.answered_many(
                sent.iter()
                    .zip(&found)
                    .filter(|(_, f)| **f)
                    .map(|(k, _)| *k),
            );
        }
        Ok(Fetch { found, failures })
    }

    pub(crate) fn set_multi<K: AsRef<[u8]>, V: ToValue>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<Vec<K>> {
        self.set_multi_partial(items, exp)?.into_result()
    }

    pub(crate) fn set_multi_partial<K: AsRef<[u8]>, V: ToValue>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<Partial<Vec<K>>> {
        self.store_multi(Store::Set, items, exp.into())
    }

    pub(crate) fn add_multi<K: AsRef<[u8]>, V: ToValue>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<Vec<K>> {
        self.add_multi_partial(items, exp)?.into_result()
    }

    pub(crate) fn add_multi_partial<K: AsRef<[u8]>, V: ToValue>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<Partial<Vec<K>>> {
        self.store_multi(Store::Add, items, exp.into())
    }

    /// Stores every item; `ok` holds the keys that were not stored.
    pub(super) fn store_multi<K: AsRef<[u8]>, V: ToValue>(
        &self,
        op: Store,
        items: impl IntoIterator<Item = (K, V)>,
        exp: Expiration,
    ) -> Result<Partial<Vec<K>>> {
        let client = self.client;
        let items: Vec<(K, V)> = items.into_iter().collect();
        if op == Store::Set && items.len() > 1 && client.can_set_together() {
            if let Some(results) = self.set_together(&items, exp)? {
                // A set is stored or failed: no key comes back as not stored.
                let mut failures = Vec::new();
                for ((key, _), result) in items.iter().zip(results) {
                    if let Err(error) = result {
                        KeyFailure::record(&mut failures, error, key.as_ref().to_vec());
                    }
                }
                return Ok(Partial {
                    ok: Vec::new(),
                    failures,
                });
            }
        }
        let done = self.each_key(items, |key, value| client.store(op, key, &value, exp))?;
        Ok(refused(done))
    }

    /// `set_multi`'s items sent together (see `keyspace::pipeline`), each with its own result:
    /// every key checked first (one bad key fails the call, whole), as in `each_key`; `None`
    /// (nothing sent) if the client cannot send them together.
    fn set_together<K: AsRef<[u8]>, V: ToValue>(
        &self,
        items: &[(K, V)],
        exp: Expiration,
    ) -> Result<Option<Vec<Result<()>>>> {
        let full = items
            .iter()
            .map(|(k, _)| self.full(k.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let client = self.client;
        let mut results = Vec::with_capacity(items.len());
        let (mut ready, mut readied) = (Vec::new(), Vec::new());
        for (i, (sent, (_, value))) in full.iter().zip(items).enumerate() {
            match client.encode_for(Store::Set, value) {
                Ok(value) => {
                    readied.push(i);
                    ready.push(ReadySet {
                        key: sent,
                        value,
                        exp,
                    });
                    results.push(Ok(()));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        let Some(answers) = client.set_together(&ready) else {
            return Ok(None);
        };
        for (i, answer) in readied.into_iter().zip(answers) {
            results[i] = answer;
        }
        Ok(Some(results))
    }

    pub(crate) fn delete_multi<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<K>> {
        self.delete_multi_partial(keys)?.into_result()
    }

    pub(crate) fn delete_multi_partial<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Partial<Vec<K>>> {
        let client = self.client;
        let items = keys.into_iter().map(|k| (k, ())).collect();
        let done = self.each_key(items, |key, ()| {
            client.found(client.handle.delete(key, key), "delete", key)
        })?;
        Ok(refused(done))
    }

    pub(crate) fn incr_multi<K: AsRef<[u8]> + Eq + Hash>(
        &self,
        keys: impl IntoIterator<Item = K>,
        delta: u64,
    ) -> Result<HashMap<K, Option<u64>>> {
        self.incr_multi_partial(keys, delta)?.into_result()
    }

    pub(crate) fn incr_multi_partial<K: AsRef<[u8]> + Eq + Hash>(
        &self,
        keys: impl IntoIterator<Item = K>,
        delta: u64,
    ) -> Result<Partial<HashMap<K, Option<u64>>>> {
        self.arith_multi(Counter::Incr, keys.into_iter().map(|k| (k, delta)))
    }

    pub(crate) fn incr_multi_by<K: AsRef<[u8]> + Eq + Hash>(
        &self,
        items: impl IntoIterator<Item = (K, u64)>,
    ) -> Result<HashMap<K, Option<u64>>> {
        self.arith_multi(Counter::Incr, items)?.into_result()
    }

    pub(crate) fn decr_multi<K: AsRef<[u8]> + Eq + Hash>(
        &self,
        keys: impl IntoIterator<Item = K>,
        delta: u64,
    ) -> Result<HashMap<K, Option<u64>>> {
        self.decr_multi_partial(keys, delta)?.into_result()
    }

    pub(crate) fn decr_multi_partial<K: AsRef<[u8]> + Eq + Hash>(
        &self,
        keys: impl IntoIterator<Item = K>,
        delta: u64,
    ) -> Result<Partial<HashMap<K, Option<u64>>>> {
        self.arith_multi(Counter::Decr, keys.into_iter().map(|k| (k, delta)))
    }

    pub(crate) fn decr_multi_by<K: AsRef<[u8]> + Eq + Hash>(
        &self,
        items: impl IntoIterator<Item = (K, u64)>,
    ) -> Result<HashMap<K, Option<u64>>> {
        self.arith_multi(Counter::Decr, items)?.into_result()
    }

    fn arith_multi<K: AsRef<[u8]> + Eq + Hash>(
        &self,
        counter: Counter,
        items: impl IntoIterator<Item = (K, u64)>,
    ) -> Result<Partial<HashMap<K, Option<u64>>>> {
        let client = self.client;
        let done = self.each_key(items.into_iter().collect(), |key, delta| {
            match client.arith(counter, key, delta) {
                Ok(value) => Ok(Some(value)),
                Err(Error::NotFound { .. }) => Ok(None),
                Err(other) => Err(other),
            }
        })?;
        Ok(Partial {
            ok: done.ok.into_iter().collect(),
            failures: done.failures,
        })
    }

    /// Runs `op` on every item with its full key (all keys checked first: one bad key fails
    /// the call, whole), collecting results and failures; failures with the same error code
    /// and server share one entry. A server that times out gets nothing more in the call: its
    /// remaining keys fail with that timeout unsent, so one server costs one poll timeout, not
    /// one per key.
    pub(super) fn each_key<K: AsRef<[u8]>, X, T>(
        &self,
        items: Vec<(K, X)>,
        mut op: impl FnMut(&[u8], X) -> Result<T>,
    ) -> Result<Partial<Vec<(K, T)>>> {
        let (keys, xs): (Vec<K>, Vec<X>) = items.into_iter().unzip();
        let full = keys
            .iter()
            .map(|k| self.full(k.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let mut results = Vec::with_capacity(keys.len());
        let mut failures: Vec<KeyFailure> = Vec::new();
        let mut timed_out: Vec<(Address, String)> = Vec::new();
        for ((sent, x), key) in full.iter().zip(xs).zip(&keys) {
            let outcome = match timed_out.is_empty() {
                true => op(sent, x),
                false => match self.timed_out_before(&timed_out, sent) {
                    Some(error) => Err(error),
                    None => op(sent, x),
                },
            };
            match outcome {
                Ok(result) => results.push(Some(result)),
                Err(error) => {
                    note_timeout(&mut timed_out, &error);
                    KeyFailure::record(&mut failures, error, key.as_ref().to_vec());
                    results.push(None);
                }
            }
        }
        drop(full);
        let ok = keys
            .into_iter()
            .zip(results)
            .filter_map(|(k, r)| Some((k, r?)))
            .collect();
        Ok(Partial { ok, failures })
    }
}

/// How many keys of a multi-get that a proxy failed whole are asked again at once, each alone
/// on a connection of its own.
const ASKED_AGAIN_AT_ONCE: usize = 32;

/// Asks again, each alone, the keys of a multi-get that a proxy failed whole. twemproxy answers
/// a multi-get that touches a memcached server it cannot reach with one `SERVER_ERROR` for every
/// key (and closes the connection): asked alone, the keys of the servers that are up come back,
/// and only the dead server's keys fail.
///
/// The keys go out together, each on a connection of its own, before any answer is read: a
/// server that hangs behind the proxy costs one proxy timeout for all of its keys, not one per
/// key (the proxy answers a connection's requests in order, so one connection would not do).
#[cold]
fn ask_one_by_one<K: AsRef<[u8]>>(
    client: &crate::client::Client,
    keys: &[K],
    sent: &[&[u8]],
    found: &mut [bool],
    failures: &mut Vec<KeyFailure>,
    each: &mut impl FnMut(usize, Item<'_>),
) {
    let (whole, kept): (Vec<KeyFailure>, Vec<KeyFailure>) =
        failures.drain(..).partition(|f| f.error.is_server());
    *failures = kept;
    let failed: std::collections::HashSet<&[u8]> = whole
        .iter()
        .flat_map(|f| f.keys.iter().map(Vec::as_slice))
        .collect();
    let again: Vec<usize> = (0..keys.len())
        .filter(|&i| !found[i] && failed.contains(keys[i].as_ref()))
        .collect();
    let mut settle = |i: usize, outcome: Result<Option<()>>| match outcome {
        Ok(hit) => found[i] = hit.is_some(),
        Err(error) => KeyFailure::record(failures, error, keys[i].as_ref().to_vec()),
    };
    // Kept on the client for the next time: a server that stays down behind the proxy fails
    // every multi-get that touches it, and new connections each time would pile up.
    let mut handles = client.asked_again.take();
    for wave in again.chunks(ASKED_AGAIN_AT_ONCE) {
        while handles.len() < wave.len() {
            match client.handle.try_clone() {
                Ok(handle) => handles.push(handle),
                Err(_) => break,
            }
        }
        // Keys beyond the handles there are (only if cloning failed) are asked after, alone.
        let (together, after) = wave.split_at(handles.len().min(wave.len()));
        let asked: Vec<_> = together
            .iter()
            .zip(&handles)
            .map(|(&i, handle)| super::fetch::ask_one(handle, sent[i]))
            .collect();
        for (&i, asked) in together.iter().zip(asked) {
            settle(
                i,
                asked.and_then(|asked| asked.answer(|item| each(i, item))),
            );
        }
        for &i in after {
            let outcome = super::fetch::fetch_one(&client.handle, sent[i], |item| each(i, item));
            settle(i, outcome);
        }
    }
    client.asked_again.replace(handles);
}

/// Marks a client as handing items to a callback (see `Client::refuse_while_streaming`) until
/// dropped, also when the callback panics.
struct Streaming<'c>(&'c crate::client::Client);

impl<'c> Streaming<'c> {
    fn start(client: &'c crate::client::Client) -> Self {
        client.streaming.set(true);
        Streaming(client)
    }
}

impl Drop for Streaming<'_> {
    fn drop(&mut self) {
        self.0.streaming.set(false);
        if self.0.quit_after_streaming.take() {
            self.0.disconnect_all();
        }
    }
}

/// Records the server of a timeout, so that the rest of the call skips it.
#[cold]
fn note_timeout(timed_out: &mut Vec<(Address, String)>, error: &Error) {
    if let (true, Some(server)) = (error.is_timeout(), error.server()) {
        if !timed_out.iter().any(|(s, _)| s == server) {
            timed_out.push((server.clone(), error.to_string()));
        }
    }
}

impl Keys<'_> {
    /// The timeout of `key`'s server, if it timed out earlier in this call.
    #[cold]
    fn timed_out_before(&self, timed_out: &[(Address, String)], key: &[u8]) -> Option<Error> {
        let server = self.client.handle.server_for_key(key).ok()?;
        let (_, message) = timed_out.iter().find(|(s, _)| *s == server)?;
        Some(Error::Memcached {
            code: crate::error::ReturnCode::Timeout,
            message: format!("{message}; not sent, the server timed out earlier in this call"),
            key: None,
            server: Some(server),
        })
    }
}

/// The keys whose write did not happen (`false`), keeping the failures.
fn refused<K>(done: Partial<Vec<(K, bool)>>) -> Partial<Vec<K>> {
    Partial {
        ok: done
            .ok
            .into_iter()
            .filter(|(_, happened)| !happened)
            .map(|(k, _)| k)
            .collect(),
        failures: done.failures,
    }
}

fn into_map<K: Eq + Hash, V>(keys: Vec<K>, values: Vec<Option<V>>) -> HashMap<K, V> {
    let mut found = HashMap::with_capacity(keys.len());
    for (k, v) in keys.into_iter().zip(values) {
        if let Some(v) = v {
            found.insert(k, v);
        }
    }
    found
}

/// The keys of a multi-get in which some key is asked more than once: each is asked once, and
/// its copies are found or fail with it.
struct Repeats<'k> {
    /// Each key once, in the order of its first copy.
    unique: Vec<&'k [u8]>,
    /// Per unique key, the position of its first copy.
    first: Vec<usize>,
    /// Per requested key, the position of its unique key.
    position: Vec<usize>,
}

impl<'k> Repeats<'k> {
    /// `None` when no key is asked twice.
    fn find(keys: &[&'k [u8]]) -> Option<Self> {
        if keys.len() < 2 {
            return None;
        }
        if !maybe_repeats(keys) {
            return None;
        }
        let mut index: HashMap<&[u8], usize> = HashMap::with_capacity(keys.len());
        let (mut unique, mut first) = (Vec::new(), Vec::new());
        let position = keys
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                *index.entry(k).or_insert_with(|| {
                    unique.push(k);
                    first.push(i);
                    unique.len() - 1
                })
            })
            .collect();
        if unique.len() == keys.len() {
            return None;
        }
        Some(Self {
            unique,
            first,
            position,
        })
    }

    fn fetch(
        &self,
        handle: &crate::ffi::Handle,
        prefix_len: usize,
        mut each: impl FnMut(usize, Item<'_>),
    ) -> Result<Fetch> {
        let fetched = fetch(handle, &self.unique, prefix_len, |u, item| {
            each(self.first[u], item)
        })?;
        Ok(Fetch {
            found: self.position.iter().map(|&u| fetched.found[u]).collect(),
            failures: fetched.failures,
        })
    }
}

/// Whether some key may be asked twice: `false` proves none is. Most multi-gets have no
/// repeats, so this is cheap (a table of hashes of each key's first and last eight bytes); a
/// `true` is checked with the keys themselves.
fn maybe_repeats(keys: &[&[u8]]) -> bool {
    let slots = (keys.len() * 2).next_power_of_two();
    let mut table = vec![0u64; slots];
    for key in keys {
        // Never 0, the empty slot.
        let hash = quick_hash(key) | 1;
        let mut slot = (hash >> 32) as usize & (slots - 1);
        loop {
            match table[slot] {
                0 => {
                    table[slot] = hash;
                    break;
                }
                seen if seen == hash => return true,
                _ => slot = (slot + 1) & (slots - 1),
            }
        }
    }
    false
}

/// A hash of a key's length and first and last eight bytes (where keys that share a prefix
/// differ), for [`maybe_repeats`].
#[inline]
fn quick_hash(key: &[u8]) -> u64 {
    let n = key.len();
    let (head, tail) = match (key.first_chunk::<8>(), key.last_chunk::<8>()) {
        (Some(head), Some(tail)) => (u64::from_le_bytes(*head), u64::from_le_bytes(*tail)),
        _ => {
            // Under eight bytes: the key itself.
            let mut word = [0; 8];
            word[..n].copy_from_slice(key);
            (u64::from_le_bytes(word), 0)
        }
    };
    (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}
