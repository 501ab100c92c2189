//! Telling what a multi-get's replies mean: which servers still owe replies and which failed
//! ([`Pending`]), which requested key a reply belongs to and whether it came in order
//! ([`KeyIndex`], [`Order`]), and which keys each failure cost ([`Failures`]).

use std::collections::HashMap;

use libmemcached_sys as sys;

use crate::error::{Error, KeyFailure};
use crate::ffi::{Handle, ReturnCode};

/// Which servers still owe replies, which ended in the last fetch call, and the failures
/// libmemcached did not record on a server (it records most on the server's instance, where
/// [`Handle::server_failed`] finds them at the end).
pub(super) struct Pending<'a> {
    handle: &'a Handle,
    counts: Vec<u32>,
    /// The servers whose replies ended in the last fetch call.
    ended: Vec<usize>,
    /// Per server, a failure libmemcached did not record on it (allocated at the first).
    errors: Vec<Option<Error>>,
    /// A fetch call returned a failure.
    troubled: bool,
}

impl<'a> Pending<'a> {
    pub(super) fn new(handle: &'a Handle) -> Self {
        let mut pending = Self {
            handle,
            counts: vec![0; handle.server_count()],
            ended: Vec::new(),
            errors: Vec::new(),
            troubled: false,
        };
        pending.refresh();
        pending.ended.clear();
        pending
    }

    /// After a fetch that returned an item (`item`) or not: reads how many replies each server
    /// owes, noting those whose replies ended in the fetch. With one server, whose replies end
    /// only in a fetch that returns no item, that is the only time it is read.
    #[inline]
    pub(super) fn refresh_after(&mut self, item: bool) {
        if !(item && self.counts.len() == 1) {
            self.refresh();
        }
    }

    /// Reads how many replies each server owes, noting those whose replies ended since.
    fn refresh(&mut self) {
        self.ended.clear();
        let (counts, ended) = (&mut self.counts, &mut self.ended);
        self.handle.replies_owed(|i, count| {
            if let Some(owed) = counts.get_mut(i) {
                if *owed > 0 && count == 0 {
                    ended.push(i);
                }
                *owed = count;
            }
        });
    }

    /// Whether a server's replies ended in the last fetch call.
    pub(super) fn changed(&self) -> bool {
        !self.ended.is_empty()
    }

    /// The last fetch call returned `code`, a failure: blames it on the servers whose
    /// replies ended in that call without an error of their own (`error(server, suspects)`).
    /// A fatal read closes its server's connection and a clean end keeps it, so when one of
    /// them closed, those that kept theirs are cleared; when none did, a failure with this code
    /// recorded on a server that ended in the call explains it. What is left (an error reply
    /// such as `SERVER_ERROR`, which keeps the connection) is blamed on every suspect.
    #[cold]
    pub(super) fn unlogged_failure(
        &mut self,
        code: ReturnCode,
        mut error: impl FnMut(usize, usize) -> Error,
    ) {
        self.troubled = true;
        let handle = self.handle;
        let mut suspects: Vec<(usize, Option<bool>)> = self
            .ended
            .iter()
            .filter(|&&s| !handle.server_failed(s))
            .map(|&s| (s, handle.is_connected(s)))
            .collect();
        if suspects
            .iter()
            .any(|&(_, connected)| connected == Some(false))
        {
            suspects.retain(|&(_, connected)| connected != Some(true));
        } else if self
            .ended
            .iter()
            .any(|&s| handle.server_failed(s) && handle.server_error_code(s) == code)
        {
            return;
        }
        for &(s, _) in &suspects {
            let error = error(s, suspects.len());
            self.record(s, error);
        }
    }

    /// A reply for a key that was not requested (or not then), or one that cannot be a value,
    /// came in the last fetch call. libmemcached does not say which server sent it, and a
    /// server that names other keys may have done so before without being caught (a reply
    /// under another requested key), so nothing read in this multi-get can be trusted: every
    /// server fails with `error(server, servers)`, each naming itself.
    #[cold]
    pub(super) fn stray(&mut self, mut error: impl FnMut(usize, usize) -> Error) {
        self.troubled = true;
        let servers = self.counts.len();
        for s in 0..servers {
            let error = error(s, servers);
            self.record(s, error);
        }
    }

    /// The multi-get is given up: every server still owing replies has failed.
    #[cold]
    pub(super) fn stalled(&mut self) {
        for s in 0..self.counts.len() {
            if self.counts[s] > 0 && !self.handle.server_failed(s) {
                let error = Error::Memcached {
                    code: ReturnCode::Timeout,
                    message: "the server's replies did not end within the poll timeout".into(),
                    key: None,
                    server: self.handle.servers().get(s).cloned(),
                };
                self.record(s, error);
            }
        }
    }

    /// After a multi-get in which something failed: a server whose connection closed although
    /// nothing was recorded against it (and not among `explained`) failed all the same (a read
    /// that failed closes it, a clean end does not).
    #[cold]
    fn closed_without_error(&mut self, explained: &[usize]) {
        let handle = self.handle;
        for s in 0..self.counts.len() {
            let unexplained = self.errors.get(s).is_none_or(Option::is_none)
                && !explained.contains(&s)
                && !handle.server_failed(s)
                && handle.is_connected(s) == Some(false);
            if unexplained {
                let error = Error::Memcached {
                    code: ReturnCode::UnknownReadFailure,
                    message: "the connection closed while reading the server's replies, with \
                              no error recorded"
                        .into(),
                    key: None,
                    server: handle.servers().get(s).cloned(),
                };
                self.record(s, error);
            }
        }
    }

    fn record(&mut self, server: usize, error: Error) {
        self.errors.resize_with(self.counts.len(), || None);
        self.errors[server].get_or_insert(error);
    }

    pub(super) fn is_idle(&self, server: usize) -> bool {
        self.counts[server] == 0
    }

    pub(super) fn all_idle(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
    }

    /// The failure of server `s` in this multi-get, if it failed: the error libmemcached
    /// recorded on it in this request, or one it did not record.
    fn take_failure(&mut self, s: usize) -> Option<Error> {
        if self.handle.server_failed(s) {
            let fallback = (ReturnCode::Failure, "the server failed");
            return Some(self.handle.server_error(s, fallback));
        }
        self.errors.get_mut(s).and_then(Option::take)
    }
}

/// Maps returned keys to the index of the requested key. Replies mostly come in request order,
/// so a cursor finds them; a map is built only when they do not.
pub(super) struct KeyIndex<'k> {
    pub(super) keys: &'k [&'k [u8]],
    pub(super) next: usize,
    pub(super) map: Option<HashMap<&'k [u8], usize>>,
}

impl<'k> KeyIndex<'k> {
    pub(super) fn new(keys: &'k [&'k [u8]]) -> Self {
        Self {
            keys,
            next: 0,
            map: None,
        }
    }

    /// The index of a requested key not found yet that `key` names (the first, if the caller
    /// asked for a key twice).
    #[inline]
    pub(super) fn find(&mut self, key: &[u8], found: &[bool]) -> Option<usize> {
        let i = self.next;
        if i < self.keys.len() && same_bytes(self.keys[i], key) && !found[i] {
            self.next = i + 1;
            return Some(i);
        }
        self.find_out_of_order(key, found)
    }

    #[cold]
    pub(super) fn find_out_of_order(&mut self, key: &[u8], found: &[bool]) -> Option<usize> {
        let keys = self.keys;
        let map = self.map.get_or_insert_with(|| {
            let mut map = HashMap::with_capacity(keys.len());
            for (i, k) in keys.iter().enumerate().rev() {
                map.insert(*k, i);
            }
            map
        });
        let first = *map.get(key)?;
        // A key asked for twice is answered twice: the next copy not found yet.
        let i = (first..keys.len()).find(|&i| !found[i] && keys[i] == key)?;
        self.next = i + 1;
        Some(i)
    }
}

/// Checks that each server's replies come in the order its keys were asked: memcached answers
/// a multi-get in request order, so anything else means the stream is not what was asked
/// (a proxy or server that mixes up replies). Free while replies come in request order, which
/// they do with one server; with several, each server's keys are looked up once, at the first
/// reply that comes out of the overall order.
pub(super) struct Order<'h> {
    /// One past the highest index accepted so far.
    pub(super) high: usize,
    /// Per server, the highest index accepted (tracked from the first reply out of order).
    pub(super) last: Option<Vec<Option<usize>>>,
    /// Out of order is normal: replicas serve keys from other servers, and a proxy reorders.
    pub(super) any: bool,
    pub(super) handle: &'h Handle,
}

impl<'h> Order<'h> {
    pub(super) fn new(handle: &'h Handle) -> Self {
        Self {
            high: 0,
            last: None,
            // twemproxy fills each key's place in a multi-get with the next value its server
            // sent, so after a miss the values of that server's later keys come early.
            any: handle.facts().proxy,
            handle,
        }
    }

    /// Whether the reply for key `i` may come now (`found`: the keys found so far).
    #[inline]
    pub(super) fn accepts(
        &mut self,
        i: usize,
        found: &[bool],
        failures: &mut Failures<'_>,
    ) -> bool {
        if i >= self.high && self.last.is_none() {
            self.high = i + 1;
            return true;
        }
        self.accepts_among_servers(i, found, failures)
    }

    #[cold]
    pub(super) fn accepts_among_servers(
        &mut self,
        i: usize,
        found: &[bool],
        f: &mut Failures<'_>,
    ) -> bool {
        let (handle, failures) = (self.handle, f);
        if self.any {
            return true;
        }
        if self.last.is_none() {
            if handle.server_count() == 1 {
                return false;
            }
            if handle.behavior(sys::MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS) > 0 {
                self.any = true;
                return true;
            }
            // Each server's replies so far came in order (they did overall): its last is its
            // highest key found.
            let servers = failures.server_indexes();
            let mut last = vec![None; handle.server_count()];
            for (k, _) in found.iter().enumerate().filter(|(_, f)| **f) {
                last[servers[k]] = Some(k);
            }
            self.last = Some(last);
        }
        let server = failures.server_indexes()[i];
        let Some(last) = self.last.as_mut() else {
            return false;
        };
        if last[server].is_some_and(|l| l > i) {
            return false;
        }
        last[server] = Some(i);
        self.high = self.high.max(i + 1);
        true
    }
}

/// `a == b`, inline for keys of 8 to 16 bytes (most keys), where a call to `memcmp` would cost
/// more than the comparison.
#[inline]
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if !(8..=16).contains(&n) {
        return a == b;
    }
    let word = |bytes: &[u8], at: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_ne_bytes(word)
    };
    // The first and last eight bytes, overlapping below 16.
    (word(a, 0) ^ word(b, 0)) | (word(a, n - 8) ^ word(b, n - 8)) == 0
}

/// The servers that failed during one fetch, with the keys they cost.
pub(super) struct Failures<'a> {
    pub(super) handle: &'a Handle,
    pub(super) keys: &'a [&'a [u8]],
    pub(super) prefix_len: usize,
    /// The server index of each key, computed when first needed.
    pub(super) servers: Option<Vec<usize>>,
    pub(super) failures: Vec<KeyFailure>,
    /// Keys already in a failure, by index (allocated at the first failure).
    pub(super) reported: Vec<bool>,
}

impl<'a> Failures<'a> {
    pub(super) fn new(handle: &'a Handle, keys: &'a [&'a [u8]], prefix_len: usize) -> Self {
        Self {
            handle,
            keys,
            prefix_len,
            servers: None,
            failures: Vec::new(),
            reported: Vec::new(),
        }
    }

    /// After the mget: the servers that hold requested keys but owe no reply, which it never
    /// reached (libmemcached skips servers it cannot connect to), with their errors.
    pub(super) fn unreached_servers(&mut self, pending: &Pending<'_>) -> Vec<(usize, Error)> {
        let idle: Vec<usize> = (0..pending.counts.len())
            .filter(|&i| pending.is_idle(i))
            .collect();
        if idle.is_empty() {
            return Vec::new();
        }
        let servers = self.server_indexes();
        let idle: Vec<usize> = idle.into_iter().filter(|i| servers.contains(i)).collect();
        idle.into_iter()
            .map(|i| {
                let skipped = (
                    ReturnCode::ConnectionFailure,
                    "the multi-get skipped this server: no connection",
                );
                (i, self.handle.server_error(i, skipped))
            })
            .collect()
    }

    /// Ends the accounting of a multi-get: every key not found and not reported yet is on a
    /// server whose replies ended cleanly (a miss), or is reported with its own server's
    /// failure. A server that failed loses the values it sent too, since its stream may have
    /// made them wrong (unless replicas serve keys from other servers). Servers the mget never
    /// reached (`unreached`) lose only the keys no replica served. Returns whether anything
    /// failed.
    pub(super) fn settle(
        &mut self,
        pending: &mut Pending<'_>,
        unreached: Vec<(usize, Error)>,
        found: &[bool],
    ) -> bool {
        let handle = self.handle;
        let mut failed: Vec<(usize, Error)> = (0..handle.server_count())
            .filter_map(|s| pending.take_failure(s).map(|e| (s, e)))
            .collect();
        if pending.troubled || !failed.is_empty() || !unreached.is_empty() {
            // Something went wrong: a server whose connection closed without an error of its
            // own may have been part of it.
            let explained: Vec<usize> = failed.iter().chain(&unreached).map(|f| f.0).collect();
            pending.closed_without_error(&explained);
            let newly = (0..handle.server_count()).filter(|s| !explained.contains(s));
            failed.extend(newly.filter_map(|s| pending.take_failure(s).map(|e| (s, e))));
        }
        if failed.is_empty() && unreached.is_empty() {
            return !self.failures.is_empty();
        }
        let replicas = handle.behavior(sys::MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS) > 0;
        for (s, error) in failed {
            let keys = self.keys_of(&[s], replicas.then_some(found));
            self.push(error, keys);
        }
        for (s, error) in unreached {
            let keys = self.keys_of(&[s], Some(found));
            self.push(error, keys);
        }
        !self.failures.is_empty()
    }

    fn push(&mut self, error: Error, keys: Vec<Vec<u8>>) {
        if !keys.is_empty() {
            self.failures.push(KeyFailure { error, keys });
        }
    }

    /// The keys (without the prefix) on `on` that were not found and not reported yet.
    pub(super) fn keys_of(&mut self, on: &[usize], found: Option<&[bool]>) -> Vec<Vec<u8>> {
        self.server_indexes();
        let servers = self.servers.as_deref().unwrap_or_default();
        self.reported.resize(self.keys.len(), false);
        let mut keys = Vec::new();
        for k in 0..self.keys.len() {
            if on.contains(&servers[k]) && found.is_none_or(|f| !f[k]) && !self.reported[k] {
                self.reported[k] = true;
                keys.push(self.keys[k][self.prefix_len..].to_vec());
            }
        }
        keys
    }

    pub(super) fn server_indexes(&mut self) -> &[usize] {
        let (handle, keys) = (self.handle, self.keys);
        self.servers
            .get_or_insert_with(|| keys.iter().map(|k| handle.server_index(k)).collect())
    }
}
