//! The mget/fetch loops behind every read: [`fetch_one`] for `get` and `gets`, [`fetch`] for
//! multi-gets. One result struct per call, every reply read to its END, and every failure
//! reported with the keys it cost.
//!
//! libmemcached's own loop is easy to misread: an mget quietly skips a server it cannot connect
//! to, and a fetch stops at the first failing server. Both would turn into silently missing keys
//! (pylibmc #301); here they become [`KeyFailure`]s naming the server and the keys it held.
//!
//! What a result vouches for: a value arrived for a key that was asked for, once, in the order
//! its server was asked, from a server whose replies then ended properly (END). A server whose
//! replies break off in a call (a timeout, a reply that does not parse) gives nothing in that
//! call: the values it sent before may be the ones that broke the stream (a length that lies
//! swallows the next reply into the value). `memcached_get` checks none of this: it reads one
//! reply and leaves the END for later, so `get` goes through here too.
//!
//! The bookkeeping that attributes replies and failures to keys and servers is in `replies.rs`.

use std::ffi::c_char;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use libmemcached_sys as sys;

use super::replies::{Failures, KeyIndex, Order, Pending, same_bytes};
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

    let mut lent = handle.lend_result()?;
    let result = lent.get();
    let mut index = KeyIndex::new(keys);
    let mut order = Order::new(handle);
    let mut found = vec![false; keys.len()];
    // If `each` panics, replies stay unread: reset the connections on the way out.
    let unwinding = ResetOnUnwind(handle);
    let mut stall = Stall::default();
    loop {
        let (fetched, rc) = result.fetch(handle);
        pending.refresh();
        if fetched {
            // SAFETY: the fetch just filled the result; the item is used before the next one.
            let (key, item) = match unsafe { result.item() } {
                Ok(item) => item,
                Err(malformed) => {
                    pending.stray(|s, n| malformed_error(malformed, handle.server(s, n)));
                    continue;
                }
            };
            let asked = index.find(key, &found);
            let accepted = asked.filter(|&i| order.accepts(i, &found, &mut failures));
            let Some(i) = accepted else {
                // A key nobody asked for, a second reply for one, or replies in another order
                // than asked: the stream is out of step.
                pending.stray(|s, n| match asked {
                    Some(_) => out_of_order_error(key, handle.server(s, n)),
                    None => stray_error(key, handle.server(s, n)),
                });
                continue;
            };
            found[i] = true;
            stall.progress();
            each(i, item);
            continue;
        }
        if !matches!(rc.0, sys::MEMCACHED_END | sys::MEMCACHED_NOTFOUND) {
            // A failure libmemcached may not have recorded on the server (a reply line longer
            // than its buffer), or whose code it replaced (with CONNECTION_FAILURE when another
            // server's connection failed in the same call).
            pending.unlogged_failure(rc.code(), |server, suspects| {
                unlogged_error(handle, rc, server, suspects)
            });
        }
        if pending.all_idle() {
            break;
        }
        // libmemcached stops at a failing server, and ends a fetch when its poll finds no
        // server readable (a poll timeout, or a socket that reports only an error or a
        // hang-up) while others still owe replies: read on, within one poll timeout without
        // progress; then the servers still owing replies have failed.
        if pending.changed() {
            stall.progress();
        }
        if stall.given_up(handle) {
            pending.stalled();
            break;
        }
    }
    std::mem::forget(unwinding);
    let failed = failures.settle(&mut pending, unreached, &found);
    if failed {
        // Whatever a failed server left unread must not answer a later request.
        handle.reset_connections(&"a server failed in a multi-get");
        // A key reported failed is not found, even if a value for it arrived.
        for (found, &reported) in found.iter_mut().zip(&failures.reported) {
            *found &= !reported;
        }
    }
    Ok(Fetch {
        found,
        failures: failures.failures,
    })
}

/// When to stop reading a multi-get whose fetches end while servers still owe replies: after
/// a poll timeout without progress (an item, or a server whose replies ended).
#[derive(Default)]
struct Stall {
    since: Option<Instant>,
    quiet_fetches: u32,
}

impl Stall {
    #[inline]
    fn progress(&mut self) {
        self.quiet_fetches = 0;
    }

    #[cold]
    fn given_up(&mut self, handle: &Handle) -> bool {
        self.quiet_fetches += 1;
        if self.quiet_fetches == 1 {
            // The first quiet fetch since progress: its poll may have waited a full timeout,
            // or returned at once; only the time from here on is known.
            self.since = Some(Instant::now());
            return false;
        }
        let poll = Duration::from_millis(handle.behavior(sys::MEMCACHED_BEHAVIOR_POLL_TIMEOUT));
        if self.since.is_some_and(|since| since.elapsed() >= poll) {
            return true;
        }
        // A poll that returns at once (a socket with only an error to report) must not spin.
        if self.quiet_fetches > 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }
}

/// Requests one key (already checked) and hands its value to `each`. `Ok(None)` only when the
/// server said the key is not there; a reply for another key, a second reply, or any failure
/// before the END (even after the value arrived) is an error, after resetting the connections.
#[inline]
pub(crate) fn fetch_one<T>(
    handle: &Handle,
    key: &[u8],
    each: impl FnOnce(Item<'_>) -> T,
) -> Result<Option<T>> {
    let pointer: *const c_char = key.as_ptr().cast();
    // SAFETY: one key, described by a pointer and a length that live for the call.
    let rc = Rc(unsafe { sys::memcached_mget(handle.as_ptr(), &pointer, &key.len(), 1) });
    if rc != Rc::SUCCESS {
        // Not sent (the server is unreachable or disabled): libmemcached logged why.
        return Err(handle.logged_error(rc, key));
    }
    let logged = handle.error_log_top();
    let mut result = match handle.take_kept_result() {
        Some(result) => result,
        None => ResultStruct::new(handle)?,
    };
    // If `each` panics (a user's decoder), the END is unread: reset the connections on the way
    // out, as for a multi-get.
    let unwinding = ResetOnUnwind(handle);
    let outcome = read_one(handle, key, logged, &mut result, each);
    std::mem::forget(unwinding);
    if result.worth_keeping() {
        handle.keep_result(result);
    }
    outcome
}

/// Reads the replies to a one-key mget to their end (see [`fetch_one`]).
#[inline]
fn read_one<T>(
    handle: &Handle,
    key: &[u8],
    logged: usize,
    result: &mut ResultStruct,
    each: impl FnOnce(Item<'_>) -> T,
) -> Result<Option<T>> {
    let mut each = Some(each);
    let mut value = None;
    loop {
        let (fetched, rc) = result.fetch(handle);
        if handle.error_log_top() != logged {
            let error = handle.logged_error(rc, key);
            handle.reset_connections(&error.kind());
            return Err(error);
        }
        if !fetched {
            if matches!(rc.0, sys::MEMCACHED_END | sys::MEMCACHED_NOTFOUND) {
                return Ok(value);
            }
            let error = unlogged_error(handle, rc, handle.server_index(key), 1);
            handle.quit();
            return Err(error);
        }
        // SAFETY: the fetch just filled the result; the item is used before the next one.
        let error = match unsafe { result.item() } {
            Ok((got, item)) => match each.take() {
                Some(each) if same_bytes(got, key) => {
                    value = Some(each(item));
                    continue;
                }
                _ => stray_error(got, handle.server(handle.server_index(key), 1)),
            },
            Err(malformed) => {
                malformed_error(malformed, handle.server(handle.server_index(key), 1))
            }
        };
        handle.reset_connections(&error.kind());
        return Err(error);
    }
}

/// The error for a code libmemcached returned without logging it. It does so for a reply line
/// longer than its buffer (PROTOCOL_ERROR), a `VALUE` line that does not parse (PARTIAL_READ),
/// and some short reads. `server` is one of `suspects` servers whose replies ended in the call
/// that returned it.
#[cold]
fn unlogged_error(handle: &Handle, rc: Rc, server: usize, suspects: usize) -> Error {
    let (code, why) = match rc.code() {
        ReturnCode::ProtocolError => (
            ReturnCode::ProtocolError,
            ": a reply line longer than libmemcached's read buffer",
        ),
        ReturnCode::PartialRead => (
            ReturnCode::PartialRead,
            ": a VALUE line that does not parse",
        ),
        // The code of another server's failure in the same call.
        ReturnCode::ConnectionFailure | ReturnCode::Timeout => (
            ReturnCode::UnknownReadFailure,
            ": a reply libmemcached could not read, with no error recorded",
        ),
        code => (code, ""),
    };
    let which = match suspects {
        1 => "",
        _ => " (from this server or another whose replies ended in the same read)",
    };
    Error::Memcached {
        code,
        message: format!("{code}{why}{which}"),
        server: handle.servers().get(server).cloned(),
    }
}

/// The error for a reply that names a key that was not requested (or not then).
#[cold]
fn stray_error(key: &[u8], server: Option<Suspect>) -> Error {
    malformed_error(
        &format!(
            "a reply for {}, which was not requested (or not then)",
            crate::key::display(key)
        ),
        server,
    )
}

/// The error for a reply for a key that was asked, but that came before keys asked earlier
/// from its server.
#[cold]
fn out_of_order_error(key: &[u8], server: Option<Suspect>) -> Error {
    malformed_error(
        &format!(
            "a reply for {}, which was not requested (or not then): it came out of the order the \
             keys were asked (twemproxy reorders a multi-get's replies after a miss: if the \
             server is a proxy, see ClientBuilder::proxy)",
            crate::key::display(key)
        ),
        server,
    )
}

/// The error for a reply that cannot be a value, or not one that was asked for.
#[cold]
fn malformed_error(what: &str, server: Option<Suspect>) -> Error {
    let (server, message) = match server {
        Some(Suspect {
            server,
            alone: false,
        }) => (
            Some(server),
            format!(
                "{what}, from this server or another answering the same multi-get (libmemcached \
                 does not say which)"
            ),
        ),
        Some(Suspect { server, .. }) => (Some(server), what.to_owned()),
        None => (None, what.to_owned()),
    };
    Error::Memcached {
        code: ReturnCode::ProtocolError,
        message,
        server,
    }
}

/// The server an error is blamed on, and whether it is the only suspect.
struct Suspect {
    server: crate::server::Address,
    alone: bool,
}

impl Handle {
    /// Server `s` as one of `suspects` servers that may have sent a reply.
    fn server(&self, s: usize, suspects: usize) -> Option<Suspect> {
        let server = self.servers().get(s).cloned()?;
        Some(Suspect {
            server,
            alone: suspects == 1,
        })
    }
}

/// What a fetch found, and what failed.
pub(crate) struct Fetch {
    /// Per requested key: whether its value arrived.
    pub found: Vec<bool>,
    pub failures: Vec<KeyFailure>,
}

/// Resets a handle's connections when dropped during a panic (see [`fetch`], [`fetch_one`]).
struct ResetOnUnwind<'a>(&'a Handle);

impl Drop for ResetOnUnwind<'_> {
    fn drop(&mut self) {
        self.0
            .reset_connections(&"a panic while reading a get's replies");
    }
}

/// A `memcached_result_st` libmemcached initialised in storage we own, boxed so that it never
/// moves. The handle keeps one between fetches, so that its value buffer is reused instead of
/// allocated for every get (see [`Handle::lend_result`]).
///
/// Not one that libmemcached allocates: it frees those itself on a fetch's last call.
pub(super) struct ResultStruct(Box<MaybeUninit<sys::memcached_result_st>>);

/// A value buffer larger than this is freed after the fetch rather than kept by the handle.
const KEPT_BUFFER: usize = 64 * 1024;

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

    /// One `memcached_fetch_result`: whether it filled the result, and its code.
    #[inline]
    fn fetch(&mut self, handle: &Handle) -> (bool, Rc) {
        let mut rc = sys::MEMCACHED_SUCCESS;
        let result = self.as_ptr();
        // SAFETY: `result` was created for this handle and is reused for every fetch; arming
        // writes two integer fields of it.
        let fetched = unsafe {
            super::internals::arm_fetch(result);
            sys::memcached_fetch_result(handle.as_ptr(), result, &mut rc)
        };
        (!fetched.is_null(), Rc(rc))
    }

    /// The key and value of the item just fetched.
    ///
    /// # Safety
    ///
    /// The result was just filled by a successful fetch; the item is used before the next one.
    #[inline]
    unsafe fn item(&self) -> Result<(&[u8], Item<'_>), &'static str> {
        // SAFETY: per the contract, the result holds a fetched item.
        let (key, value, flags) = unsafe { super::internals::result_item(&self.0) }?;
        let item = Item {
            value,
            flags,
            result: &self.0,
        };
        Ok((key, item))
    }

    /// Whether its value buffer is small enough to keep between fetches.
    fn worth_keeping(&self) -> bool {
        // SAFETY: the struct is initialised; `current_size` is a plain integer field.
        unsafe { (*self.0.as_ptr()).value.current_size <= KEPT_BUFFER }
    }
}

impl Drop for ResultStruct {
    fn drop(&mut self) {
        // SAFETY: the struct was initialised by memcached_result_create, which marked it as not
        // allocated by libmemcached, so this frees only its value buffer. Its handle outlives it
        // (the handle drops its kept result before freeing itself).
        unsafe { sys::memcached_result_free(self.as_ptr()) }
    }
}

/// A result lent by the handle for one fetch, given back when dropped.
pub(super) struct LentResult<'h> {
    handle: &'h Handle,
    result: Option<ResultStruct>,
}

impl LentResult<'_> {
    #[inline]
    fn get(&mut self) -> &mut ResultStruct {
        // Always `Some` until dropped.
        self.result.as_mut().expect("a lent result")
    }
}

impl Drop for LentResult<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(result) = self.result.take().filter(ResultStruct::worth_keeping) {
            self.handle.keep_result(result);
        }
    }
}

impl Handle {
    /// The handle's result struct for one fetch, or a new one if it has none or it is in use
    /// (a fetch started while another is running: from a closure, or a value's decoder).
    #[inline]
    pub(super) fn lend_result(&self) -> Result<LentResult<'_>> {
        let result = match self.take_kept_result() {
            Some(result) => result,
            None => ResultStruct::new(self)?,
        };
        Ok(LentResult {
            handle: self,
            result: Some(result),
        })
    }
}
