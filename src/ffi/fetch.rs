//! The mget/fetch loop behind `gets` and `get_multi`: one reused result struct, every reply
//! read, and every server failure reported with the keys it cost.
//!
//! libmemcached's own loop is easy to misread: an mget quietly skips a server it cannot connect
//! to, and a fetch stops at the first failing server. Both would turn into silently missing keys
//! (pylibmc #301); here they become [`KeyFailure`]s naming the server and the keys it held.

use std::collections::HashMap;
use std::ffi::c_char;
use std::mem::MaybeUninit;

use libmemcached_sys as sys;

use super::{Handle, Rc, ReturnCode};
use crate::error::{Error, KeyFailure, Result};

/// One fetched value, borrowed from libmemcached until the next fetch.
pub(crate) struct Item<'a> {
    pub value: &'a [u8],
    pub flags: u32,
    result: &'a MaybeUninit<sys::memcached_result_st>,
}

impl Item<'_> {
    /// The CAS token (read only when asked for: most fetches do not need it).
    pub fn cas(&self) -> u64 {
        // SAFETY: the result was filled by the fetch this item came from and lives as long as
        // the item; the field is a plain integer.
        unsafe { (*self.result.as_ptr()).item_cas }
    }
}

/// Requests `keys` (already checked; each starts with `prefix_len` bytes of a view's prefix)
/// and hands each value found to `each`, with the index of its key.
///
/// Every reply is read, so the connections stay in step. Returns which keys were found and the
/// servers that failed, each with the keys (without the prefix) it held that did not arrive;
/// `Err` only when the request was refused as a whole (not supported, no servers).
pub(crate) fn fetch(
    handle: &Handle,
    keys: &[&[u8]],
    prefix_len: usize,
    mut each: impl FnMut(usize, Item<'_>),
) -> Result<Fetch> {
    let memc = handle.as_ptr();
    let pointers: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr().cast()).collect();
    let lengths: Vec<usize> = keys.iter().map(|k| k.len()).collect();
    // SAFETY: both arrays hold keys.len() entries describing live slices.
    let rc =
        Rc(unsafe { sys::memcached_mget(memc, pointers.as_ptr(), lengths.as_ptr(), keys.len()) });
    let mut failures = Failures::new(handle, keys, prefix_len);
    let mut pending = Pending::new(handle);
    let about_servers = rc.code().is_connection()
        || matches!(rc.code(), ReturnCode::Failure | ReturnCode::SomeErrors);
    if rc != Rc::SUCCESS && !about_servers && pending.all_idle() {
        // Refused as a whole: not supported (UDP), no servers, bad arguments.
        return Err(handle.error(rc, keys.first().copied()));
    }
    // A connection code speaks for one server at most (in binary, a disabled one fails the
    // whole mget although the others were asked): read what the others owe regardless.
    let unreached = failures.unreached_servers(&pending);
    if rc != Rc::SUCCESS && unreached.is_empty() && pending.all_idle() {
        return Err(handle.error(rc, keys.first().copied()));
    }

    let mut result = ResultStruct::new(handle)?;
    let mut index = KeyIndex::new(keys);
    let mut found = vec![false; keys.len()];
    let mut logged_failure = false;
    // If `each` panics, replies stay unread: reset the connections on the way out.
    let unwinding = ResetOnUnwind(handle);
    let mut failing_fetches = 0;
    loop {
        let mut rc = sys::MEMCACHED_SUCCESS;
        // SAFETY: `result` was created for this handle and is reused for every fetch.
        let fetched = unsafe { sys::memcached_fetch_result(memc, result.as_ptr(), &mut rc) };
        if !fetched.is_null() {
            // SAFETY: the fetch just filled the result; the item is used before the next one.
            let (key, item) = unsafe { result.item() };
            let Some(i) = index.find(key) else {
                // A key nobody asked for: the stream is out of step.
                failures.stray_key(key);
                logged_failure |= note_failure(&mut pending, &mut failures, &found);
                continue;
            };
            found[i] = true;
            logged_failure |= note_failure(&mut pending, &mut failures, &found);
            each(i, item);
            continue;
        }
        logged_failure |= note_failure(&mut pending, &mut failures, &found);
        if matches!(rc, sys::MEMCACHED_END | sys::MEMCACHED_NOTFOUND) {
            break;
        }
        if !logged_failure {
            // An error that left no trace in the log: every key not found is in doubt.
            failures.servers_failed(handle.describe_error(Rc(rc), None), &[], &found);
        }
        // libmemcached stops at a failing server; the others may still owe replies.
        pending.refresh(|_| {});
        failing_fetches += 1;
        if pending.all_idle() || failing_fetches > pending.counts.len() {
            break;
        }
    }
    std::mem::forget(unwinding);
    // Keys of servers the mget never reached count as lost only if no replica served them.
    for (server, error) in unreached {
        failures.push(error, &[server], &found);
    }
    if !failures.failures.is_empty() {
        // Whatever a failed server left unread must not answer a later request.
        handle.quit();
    }
    Ok(Fetch {
        found,
        failures: failures.failures,
    })
}

/// What a fetch found, and what failed.
pub(crate) struct Fetch {
    /// Per requested key: whether its value arrived.
    pub found: Vec<bool>,
    pub failures: Vec<KeyFailure>,
}

/// After each fetch call: records the failure libmemcached logged in it, if any. libmemcached
/// forgets a server that failed within a call that then returns another server's item, so
/// failures are read off its error log after every call instead. Returns whether one was.
#[inline]
fn note_failure(pending: &mut Pending<'_>, failures: &mut Failures<'_>, found: &[bool]) -> bool {
    match pending.new_failure() {
        None => false,
        Some((error, ended)) => {
            failures.servers_failed(error, &ended, found);
            true
        }
    }
}

/// Resets a handle's connections when dropped during a panic (see [`fetch`]).
struct ResetOnUnwind<'a>(&'a Handle);

impl Drop for ResetOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.quit();
    }
}

/// Which servers still owe replies, and the newest error libmemcached logged, to tell which
/// servers failed during each fetch call. Checked after every call, so it stays cheap: one
/// pointer compare, and a count per server.
struct Pending<'a> {
    handle: &'a Handle,
    counts: Vec<u32>,
    last_error: usize,
}

impl<'a> Pending<'a> {
    fn new(handle: &'a Handle) -> Self {
        let mut pending = Self {
            handle,
            counts: vec![0; handle.server_count()],
            last_error: 0,
        };
        pending.refresh(|_| {});
        pending.last_error = handle.error_log_top();
        pending
    }

    /// Updates the counts, calling `ended` for each server whose replies ended since the last.
    fn refresh(&mut self, mut ended: impl FnMut(usize)) {
        for (i, owed) in self.counts.iter_mut().enumerate() {
            let count = self.handle.replies_owed(i);
            if *owed > 0 && count == 0 {
                ended(i);
            }
            *owed = count;
        }
    }

    /// If the last fetch call logged an error: the error, and the servers whose replies ended
    /// in that call (the failed one among them; a server that ended normally in the same call
    /// cannot be told apart, so its missing keys are reported too).
    #[inline]
    fn new_failure(&mut self) -> Option<(Error, Vec<usize>)> {
        // With one server there is nobody else to tell apart: counts are read when needed.
        if self.counts.len() == 1 && self.handle.error_log_top() == self.last_error {
            return None;
        }
        self.new_failure_among_servers()
    }

    fn new_failure_among_servers(&mut self) -> Option<(Error, Vec<usize>)> {
        let logged = self.handle.error_log_top();
        if logged == self.last_error {
            self.refresh(|_| {});
            return None;
        }
        self.last_error = logged;
        let mut ended = Vec::new();
        self.refresh(|i| ended.push(i));
        let code = self.handle.last_error();
        (code != ReturnCode::Success)
            .then(|| (self.handle.describe_error(Rc(code.to_raw()), None), ended))
    }

    fn is_idle(&self, server: usize) -> bool {
        self.counts[server] == 0
    }

    fn all_idle(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
    }
}

/// Maps returned keys to the index of the requested key. Replies mostly come in request order,
/// so a cursor finds them; a map is built only when they do not.
struct KeyIndex<'k> {
    keys: &'k [&'k [u8]],
    next: usize,
    map: Option<HashMap<&'k [u8], usize>>,
}

impl<'k> KeyIndex<'k> {
    fn new(keys: &'k [&'k [u8]]) -> Self {
        Self {
            keys,
            next: 0,
            map: None,
        }
    }

    #[inline]
    fn find(&mut self, key: &[u8]) -> Option<usize> {
        let i = self.next;
        if i < self.keys.len() && same_bytes(self.keys[i], key) {
            self.next = i + 1;
            return Some(i);
        }
        self.find_out_of_order(key)
    }

    #[cold]
    fn find_out_of_order(&mut self, key: &[u8]) -> Option<usize> {
        let keys = self.keys;
        let map = self.map.get_or_insert_with(|| {
            let mut map = HashMap::with_capacity(keys.len());
            for (i, k) in keys.iter().enumerate().rev() {
                map.insert(*k, i);
            }
            map
        });
        map.get(key).copied()
    }
}

/// `a == b`, inline for keys of 8 to 16 bytes (most keys), where a call to `memcmp` would cost
/// more than the comparison.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
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
struct Failures<'a> {
    handle: &'a Handle,
    keys: &'a [&'a [u8]],
    prefix_len: usize,
    /// The server index of each key, computed when first needed.
    servers: Option<Vec<usize>>,
    failures: Vec<KeyFailure>,
    /// Keys already in a failure, by index (allocated at the first failure).
    reported: Vec<bool>,
}

impl<'a> Failures<'a> {
    fn new(handle: &'a Handle, keys: &'a [&'a [u8]], prefix_len: usize) -> Self {
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
    fn unreached_servers(&mut self, pending: &Pending<'_>) -> Vec<(usize, Error)> {
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

    /// Records that `error` cost the keys on `servers` that were not found.
    fn push(&mut self, error: Error, servers: &[usize], found: &[bool]) {
        let keys = self.keys_of(servers, Some(found));
        if !keys.is_empty() {
            self.failures.push(KeyFailure { error, keys });
        }
    }

    /// `error` happened while the servers `suspects` ended their replies: their keys that did
    /// not arrive, and those of the server the error names, are lost.
    fn servers_failed(&mut self, error: Error, suspects: &[usize], found: &[bool]) {
        let named = error
            .server()
            .and_then(|named| self.handle.servers().iter().position(|s| s == named));
        let mut blamed = suspects.to_vec();
        blamed.extend(named.filter(|n| !suspects.contains(n)));
        if blamed.is_empty() {
            // Nobody to blame: every key not found is in doubt.
            blamed = (0..self.handle.server_count()).collect();
        }
        self.push(error, &blamed, found);
    }

    /// The keys (without the prefix) on `on` that were not found and not reported yet.
    fn keys_of(&mut self, on: &[usize], found: Option<&[bool]>) -> Vec<Vec<u8>> {
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

    /// A reply for a key that was not requested: report it, and every key not yet reported,
    /// since nothing read on this stream can be trusted.
    fn stray_key(&mut self, key: &[u8]) {
        let error = Error::Memcached {
            code: ReturnCode::ProtocolError,
            message: format!(
                "a reply for {}, which was not requested",
                crate::key::display(key)
            ),
            server: None,
        };
        let all: Vec<usize> = (0..self.handle.server_count()).collect();
        let keys = self.keys_of(&all, None);
        self.failures.push(KeyFailure { error, keys });
    }

    fn server_indexes(&mut self) -> &[usize] {
        let (handle, keys) = (self.handle, self.keys);
        self.servers
            .get_or_insert_with(|| keys.iter().map(|k| handle.server_index(k)).collect())
    }
}

/// A `memcached_result_st` in storage we own, initialised by libmemcached.
///
/// Not one that libmemcached allocates: it frees those itself on a fetch's last call.
struct ResultStruct(Box<MaybeUninit<sys::memcached_result_st>>);

impl ResultStruct {
    fn new(handle: &Handle) -> Result<Self> {
        let mut storage = Box::new(MaybeUninit::uninit());
        // SAFETY: the storage is writable, sized for the struct and never moves (boxed);
        // libmemcached initialises it for this handle.
        let raw = unsafe { sys::memcached_result_create(handle.as_ptr(), storage.as_mut_ptr()) };
        if raw.is_null() {
            return Err(Error::Memcached {
                code: ReturnCode::MemoryAllocationFailure,
                message: "memcached_result_create failed".into(),
                server: None,
            });
        }
        Ok(Self(storage))
    }

    fn as_ptr(&mut self) -> *mut sys::memcached_result_st {
        self.0.as_mut_ptr()
    }

    /// The key and value of the item just fetched.
    ///
    /// # Safety
    ///
    /// The result was just filled by a successful fetch; the item is used before the next one.
    #[inline]
    unsafe fn item(&self) -> (&[u8], Item<'_>) {
        // SAFETY: per the contract, the result holds a fetched item.
        let (key, value, flags) = unsafe { super::internals::result_item(&self.0) };
        let item = Item {
            value,
            flags,
            result: &self.0,
        };
        (key, item)
    }
}

impl Drop for ResultStruct {
    fn drop(&mut self) {
        // SAFETY: the struct was initialised by memcached_result_create, which marked it as not
        // allocated by libmemcached, so this frees only its value buffer. Its handle outlives it
        // (the result lives inside one call on that handle).
        unsafe { sys::memcached_result_free(self.as_ptr()) }
    }
}
