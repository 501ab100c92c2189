//! The mget/fetch loop behind `gets` and `get_multi`: one reused result struct, every reply
//! read, and every server failure reported with the keys it cost.
//!
//! libmemcached's own loop is easy to misread: an mget quietly skips a server it cannot connect
//! to, and a fetch stops at the first failing server. Both would turn into silently missing keys
//! (pylibmc #301); here they become [`Error::Multi`].

use std::collections::HashMap;
use std::ffi::c_char;
use std::mem::MaybeUninit;

use libmemcached_sys as sys;

use crate::client::Client;
use crate::error::{Error, KeyFailure, Result, ReturnCode};

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
        // the item.
        unsafe { sys::memcached_result_cas(self.result.as_ptr()) }
    }
}

/// Requests `keys` (already checked; each starts with `prefix_len` bytes of a view's prefix)
/// and hands each value found to `each`, with the index of its key.
///
/// Every reply is read even when `each` fails, so the connections stay in step; the first error
/// of `each` is returned after that. Servers that failed make an [`Error::Multi`] naming them
/// and the keys (without the prefix) they held.
pub(crate) fn fetch(
    client: &Client,
    keys: &[&[u8]],
    prefix_len: usize,
    mut each: impl FnMut(usize, Item<'_>) -> Result<()>,
) -> Result<()> {
    let memc = client.as_ptr();
    let pointers: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr().cast()).collect();
    let lengths: Vec<usize> = keys.iter().map(|k| k.len()).collect();
    // SAFETY: both arrays hold keys.len() entries describing live slices.
    let rc = unsafe { sys::memcached_mget(memc, pointers.as_ptr(), lengths.as_ptr(), keys.len()) };
    let mut failures = Failures::new(client, keys, prefix_len);
    let mut pending = Pending::new(client);
    let about_servers = ReturnCode::from_raw(rc).is_connection()
        || matches!(rc, sys::MEMCACHED_FAILURE | sys::MEMCACHED_SOME_ERRORS);
    if rc != sys::MEMCACHED_SUCCESS && !about_servers && pending.all_idle() {
        // Refused as a whole: not supported (UDP), no servers, bad arguments.
        return Err(client.error(rc, keys.first().copied()));
    }
    // A connection code speaks for one server at most (in binary, a disabled one fails the
    // whole mget although the others were asked): read what the others owe regardless.
    let unreached = failures.unreached_servers(&pending);
    if rc != sys::MEMCACHED_SUCCESS && unreached.is_empty() && pending.all_idle() {
        return Err(client.error(rc, keys.first().copied()));
    }

    let mut result = ResultStruct::new(client)?;
    let mut index = KeyIndex::new(keys);
    let mut found = vec![false; keys.len()];
    let mut failed_each = None;
    let mut logged_failure = false;
    // If `each` panics, replies stay unread: reset the connections on the way out.
    let unwinding = ResetOnUnwind(client);
    let mut failing_fetches = 0;
    loop {
        let mut rc = sys::MEMCACHED_SUCCESS;
        // SAFETY: `result` was created for this handle and is reused for every fetch.
        let fetched = unsafe { sys::memcached_fetch_result(memc, result.as_ptr(), &mut rc) };
        let item = if fetched.is_null() {
            None
        } else {
            // SAFETY: the fetch just filled the result; the item is used before the next one.
            let (key, item) = unsafe { result.item() };
            let i = index.find(key);
            if i.is_none() {
                // A key nobody asked for: the stream is out of step.
                failures.stray_key(client, key);
            }
            i.map(|i| (i, item))
        };
        if let Some((i, _)) = &item {
            found[*i] = true;
        }
        // libmemcached forgets a server that failed within a call that then returns another
        // server's item, so failures are read off its error log after every call instead.
        if let Some((error, ended)) = pending.new_failure() {
            logged_failure = true;
            failures.servers_failed(error, &ended, &found);
        }
        if let Some((i, item)) = item {
            if failed_each.is_none() {
                failed_each = each(i, item).err();
            }
        }
        if fetched.is_null() {
            if matches!(rc, sys::MEMCACHED_END | sys::MEMCACHED_NOTFOUND) {
                break;
            }
            if !logged_failure {
                // An error that left no trace in the log: every key not found is in doubt.
                failures.servers_failed(client.describe_error(rc, None), &[], &found);
            }
            // libmemcached stops at a failing server; the others may still owe replies.
            failing_fetches += 1;
            if pending.all_idle() || failing_fetches > pending.instances.len() {
                break;
            }
        }
    }
    std::mem::forget(unwinding);
    // Keys of servers the mget never reached count as lost only if no replica served them.
    for (server, error) in unreached {
        failures.push(error, &[server], &found);
    }
    if !failures.is_empty() {
        // Whatever a failed server left unread must not answer a later request.
        client.disconnect_all();
        return Err(failures.into_error());
    }
    failed_each.map_or(Ok(()), Err)
}

/// Resets a client's connections when dropped during a panic (see [`fetch`]).
struct ResetOnUnwind<'a>(&'a Client);

impl Drop for ResetOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.disconnect_all();
    }
}

/// Which servers still owe replies, and the newest error libmemcached logged, to tell which
/// servers failed during each fetch call. Checked after every call, so it stays cheap: one
/// pointer compare, and a count per server.
struct Pending<'a> {
    client: &'a Client,
    instances: Vec<*const sys::memcached_instance_st>,
    counts: Vec<u32>,
    last_error: *const c_char,
}

impl<'a> Pending<'a> {
    fn new(client: &'a Client) -> Self {
        let instances: Vec<_> = client.instance_ptrs().collect();
        let mut pending = Self {
            client,
            counts: vec![0; instances.len()],
            instances,
            last_error: std::ptr::null(),
        };
        pending.refresh(|_| {});
        pending.last_error = pending.logged_error();
        pending
    }

    /// The top of the handle's error log. libmemcached clears the log when a request starts and
    /// only adds to it until the next, so a new entry has a new address.
    fn logged_error(&self) -> *const c_char {
        // SAFETY: the handle is valid; only the pointer's identity is kept, never read later.
        unsafe { sys::memcached_last_error_message(self.client.as_ptr()) }
    }

    /// Updates the counts, calling `ended` for each server whose replies ended since the last.
    fn refresh(&mut self, mut ended: impl FnMut(usize)) {
        for (i, &instance) in self.instances.iter().enumerate() {
            // SAFETY: the instance is valid during this call (no server is added).
            let count = unsafe { sys::memcached_server_response_count(instance) };
            if self.counts[i] > 0 && count == 0 {
                ended(i);
            }
            self.counts[i] = count;
        }
    }

    /// If the last fetch call logged an error: the error, and the servers whose replies ended
    /// in that call (the failed one among them; a server that ended normally in the same call
    /// cannot be told apart, so its missing keys are reported too).
    fn new_failure(&mut self) -> Option<(Error, Vec<usize>)> {
        let logged = self.logged_error();
        if logged == self.last_error {
            self.refresh(|_| {});
            return None;
        }
        self.last_error = logged;
        let mut ended = Vec::new();
        self.refresh(|i| ended.push(i));
        // SAFETY: the handle is valid.
        let rc = unsafe { sys::memcached_last_error(self.client.as_ptr()) };
        (rc != sys::MEMCACHED_SUCCESS).then(|| (self.client.describe_error(rc, None), ended))
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

    fn find(&mut self, key: &[u8]) -> Option<usize> {
        if self.keys.get(self.next) == Some(&key) {
            self.next += 1;
            return Some(self.next - 1);
        }
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

/// The servers that failed during one fetch, with the keys they cost.
struct Failures<'a> {
    client: &'a Client,
    keys: &'a [&'a [u8]],
    prefix_len: usize,
    /// The server index of each key, computed when first needed.
    servers: Option<Vec<u32>>,
    failures: Vec<KeyFailure>,
    /// Keys already in a failure, by index.
    reported: Vec<bool>,
}

impl<'a> Failures<'a> {
    fn new(client: &'a Client, keys: &'a [&'a [u8]], prefix_len: usize) -> Self {
        Self {
            client,
            keys,
            prefix_len,
            servers: None,
            failures: Vec::new(),
            reported: vec![false; keys.len()],
        }
    }

    fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }

    /// After the mget: the servers that hold requested keys but owe no reply, which it never
    /// reached (libmemcached skips servers it cannot connect to), with their errors.
    fn unreached_servers(&mut self, pending: &Pending<'_>) -> Vec<(usize, Error)> {
        let idle: Vec<usize> = (0..pending.instances.len())
            .filter(|&i| pending.is_idle(i))
            .collect();
        if idle.is_empty() {
            return Vec::new();
        }
        let servers = self.server_indexes().to_vec();
        idle.into_iter()
            .filter(|&i| servers.iter().any(|&s| s as usize == i))
            .map(|i| {
                let instance = pending.instances[i];
                // SAFETY: the instance belongs to this handle; no server was added since.
                let server = unsafe { self.client.server_of(instance) };
                (i, instance_error(&server, instance))
            })
            .collect()
    }

    /// Records that `error` cost the keys on `servers` that were not found.
    fn push(&mut self, error: Error, servers: &[usize], found: &[bool]) {
        let indexes = self.server_indexes().to_vec();
        let keys = self.keys_of(&indexes, servers, Some(found));
        if !keys.is_empty() {
            self.failures.push(KeyFailure { error, keys });
        }
    }

    /// `error` happened while the servers `suspects` ended their replies: their keys that did
    /// not arrive, and those of the server the error names, are lost.
    fn servers_failed(&mut self, error: Error, suspects: &[usize], found: &[bool]) {
        let named = error.server().and_then(|name| {
            self.client
                .instances()
                .position(|(server, _)| server.to_string() == name)
        });
        let mut blamed = suspects.to_vec();
        blamed.extend(named.filter(|n| !suspects.contains(n)));
        if blamed.is_empty() {
            // Nobody to blame: every key not found is in doubt.
            blamed = (0..self.client.instance_ptrs().count()).collect();
        }
        self.push(error, &blamed, found);
    }

    /// The keys (without the prefix) on `on` that were not found and not reported yet.
    fn keys_of(&mut self, servers: &[u32], on: &[usize], found: Option<&[bool]>) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        for k in 0..self.keys.len() {
            if on.contains(&(servers[k] as usize))
                && found.is_none_or(|f| !f[k])
                && !self.reported[k]
            {
                self.reported[k] = true;
                keys.push(self.keys[k][self.prefix_len..].to_vec());
            }
        }
        keys
    }

    /// A reply for a key that was not requested: report it, and every key not yet reported,
    /// since nothing read on this stream can be trusted.
    fn stray_key(&mut self, client: &Client, key: &[u8]) {
        let error = Error::Memcached {
            code: ReturnCode::ProtocolError,
            message: format!(
                "a reply for {}, which was not requested",
                crate::key::display(key)
            ),
            server: None,
        };
        let all: Vec<usize> = (0..client.instance_ptrs().count()).collect();
        let indexes = self.server_indexes().to_vec();
        let keys = self.keys_of(&indexes, &all, None);
        self.failures.push(KeyFailure { error, keys });
    }

    fn server_indexes(&mut self) -> &[u32] {
        let (client, keys) = (self.client, self.keys);
        self.servers.get_or_insert_with(|| {
            keys.iter()
                // SAFETY: the key describes a live slice; the handle is valid.
                .map(|k| unsafe {
                    sys::memcached_generate_hash(client.as_ptr(), k.as_ptr().cast(), k.len())
                })
                .collect()
        })
    }

    fn into_error(self) -> Error {
        Error::Multi {
            failures: self.failures,
        }
    }
}

/// The error libmemcached recorded for a server, or a connection failure if it recorded none.
pub(crate) fn instance_error(
    server: &crate::Server,
    instance: *const sys::memcached_instance_st,
) -> Error {
    // SAFETY: the instance is valid during the call; its message is a NUL-terminated string it
    // owns, copied at once.
    let (rc, message) = unsafe {
        let message = sys::memcached_server_error(instance);
        let message = (!message.is_null()).then(|| {
            std::ffi::CStr::from_ptr(message)
                .to_string_lossy()
                .into_owned()
        });
        (sys::memcached_server_error_return(instance), message)
    };
    let code = match ReturnCode::from_raw(rc) {
        ReturnCode::Success => ReturnCode::ConnectionFailure,
        code => code,
    };
    Error::Memcached {
        code,
        message: message.map_or_else(|| code.to_string(), |m| crate::client::clean_message(&m)),
        server: Some(server.to_string()),
    }
}

/// A `memcached_result_st` in storage we own, initialised by libmemcached.
///
/// Not one that libmemcached allocates: it frees those itself on a fetch's last call.
struct ResultStruct(Box<MaybeUninit<sys::memcached_result_st>>);

impl ResultStruct {
    fn new(client: &Client) -> Result<Self> {
        let mut storage = Box::new(MaybeUninit::uninit());
        // SAFETY: the storage is writable, sized for the struct and never moves (boxed);
        // libmemcached initialises it for this handle.
        let raw = unsafe { sys::memcached_result_create(client.as_ptr(), storage.as_mut_ptr()) };
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
    unsafe fn item(&self) -> (&[u8], Item<'_>) {
        let r = self.0.as_ptr();
        // SAFETY: per the contract, key and value pointers are valid for their lengths (a NULL
        // value pointer only ever comes with length 0).
        unsafe {
            let slice = |ptr: *const c_char, len: usize| match ptr.is_null() || len == 0 {
                true => &[][..],
                false => std::slice::from_raw_parts(ptr.cast::<u8>(), len),
            };
            let key = slice(
                sys::memcached_result_key_value(r),
                sys::memcached_result_key_length(r),
            );
            let item = Item {
                value: slice(
                    sys::memcached_result_value(r),
                    sys::memcached_result_length(r),
                ),
                flags: sys::memcached_result_flags(r),
                result: &self.0,
            };
            (key, item)
        }
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
