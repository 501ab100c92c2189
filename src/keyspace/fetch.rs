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
//! The bookkeeping that attributes replies and failures to keys and servers is in `replies.rs`;
//! the calls into libmemcached (the mget, each fetch, the result struct) are `ffi::Replies`.

use std::time::{Duration, Instant};

use libmemcached_sys as sys;

use super::replies::{Failures, KeyIndex, Order, Pending, same_bytes};
use crate::error::{Error, KeyFailure, Result};
use crate::ffi::{Handle, Item, Rc, Replies, Reply, ReturnCode};

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
    let rc = handle.mget(keys);
    let mut failures = Failures::new(handle, keys, prefix_len);
    let mut pending = Pending::new(handle);
    let about_servers = rc.code().is_connection()
        || matches!(rc.code(), ReturnCode::Failure | ReturnCode::SomeErrors);
    if rc != Rc::SUCCESS && !about_servers && pending.all_idle() {
        // Refused as a whole: not supported (UDP), no servers, bad arguments.
        return Err(refused_whole(handle, rc, keys));
    }
    // A connection code speaks for one server at most (in binary, a disabled one fails the
    // whole mget although the others were asked): read what the others owe regardless.
    let unreached = failures.unreached_servers(&pending);
    if rc != Rc::SUCCESS && unreached.is_empty() && pending.all_idle() {
        return Err(refused_whole(handle, rc, keys));
    }

    let mut replies = handle.replies()?;
    let mut index = KeyIndex::new(keys);
    let mut order = Order::new(handle);
    let mut found = vec![false; keys.len()];
    // If `each` panics, replies stay unread: reset the connections on the way out.
    let unwinding = ResetOnUnwind(handle);
    let mut stall = Stall::default();
    loop {
        let reply = replies.next();
        pending.refresh_after(matches!(reply, Reply::Item(..)));
        let rc = match reply {
            Reply::Done(rc) => rc,
            Reply::Malformed(malformed) => {
                pending.stray(|s, n| malformed_error(malformed, suspect(handle, s, n)));
                break;
            }
            Reply::Item(key, item) => {
                let asked = index.find(key, &found);
                let accepted = asked.filter(|&i| order.accepts(i, &found, &mut failures));
                let Some(i) = accepted else {
                    // A key nobody asked for, a second reply for one, or replies in another
                    // order than asked: the stream is out of step. Every key fails, so reading
                    // on (perhaps a stream without end) is of no use: the connections are reset.
                    pending.stray(|s, n| match asked {
                        Some(_) => out_of_order_error(key, suspect(handle, s, n)),
                        None => stray_error(key, suspect(handle, s, n)),
                    });
                    break;
                };
                found[i] = true;
                stall.progress();
                each(i, item);
                continue;
            }
        };
        if !rc.is_end() {
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
    ask_one(handle, key)?.answer(each)
}

/// Sends the request of [`fetch_one`] without reading its reply, so that several handles can
/// each have one out at once.
#[inline]
pub(crate) fn ask_one<'h>(handle: &'h Handle, key: &'h [u8]) -> Result<Asked<'h>> {
    let rc = handle.mget(&[key]);
    if rc != Rc::SUCCESS {
        // Not sent (the server is unreachable or disabled): libmemcached logged why.
        return Err(handle.logged_error(rc, key));
    }
    Ok(Asked {
        handle,
        key,
        logged: handle.error_log_top(),
    })
}

/// A one-key request sent by [`ask_one`], whose reply is still on the connection.
#[must_use = "the reply must be read (`answer`) or the connection is out of step"]
pub(crate) struct Asked<'h> {
    handle: &'h Handle,
    key: &'h [u8],
    logged: usize,
}

impl Asked<'_> {
    /// Reads the reply to its end, as [`fetch_one`] does.
    #[inline]
    pub(crate) fn answer<T>(self, each: impl FnOnce(Item<'_>) -> T) -> Result<Option<T>> {
        let mut replies = self.handle.replies()?;
        // If `each` panics (a user's decoder), the END is unread: reset the connections on the
        // way out, as for a multi-get.
        let unwinding = ResetOnUnwind(self.handle);
        let outcome = read_one(self.handle, self.key, self.logged, &mut replies, each);
        std::mem::forget(unwinding);
        outcome
    }
}

/// Reads the replies to a one-key mget to their end (see [`fetch_one`]).
#[inline]
fn read_one<T>(
    handle: &Handle,
    key: &[u8],
    logged: usize,
    replies: &mut Replies<'_>,
    each: impl FnOnce(Item<'_>) -> T,
) -> Result<Option<T>> {
    let mut each = Some(each);
    let mut value = None;
    loop {
        let reply = replies.next();
        if handle.error_log_top() != logged {
            let rc = match reply {
                Reply::Done(rc) => rc,
                _ => Rc::SUCCESS,
            };
            let error = handle.logged_error(rc, key);
            handle.reset_connections(&error.kind());
            return Err(error);
        }
        let server = || suspect(handle, handle.server_index(key), 1);
        let error = match reply {
            Reply::Done(rc) if rc.is_end() => return Ok(value),
            Reply::Done(rc) => {
                let error = unlogged_error(handle, rc, handle.server_index(key), 1);
                handle.quit();
                return Err(error);
            }
            Reply::Item(got, item) => match each.take() {
                Some(each) if same_bytes(got, key) => {
                    value = Some(each(item));
                    continue;
                }
                _ => stray_error(got, server()),
            },
            Reply::Malformed(malformed) => malformed_error(malformed, server()),
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
        key: None,
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
        key: None,
        server,
    }
}

/// The server an error is blamed on, and whether it is the only suspect.
struct Suspect {
    server: crate::server::Address,
    alone: bool,
}

/// Server `s` of `handle` as one of `suspects` servers that may have sent a reply.
fn suspect(handle: &Handle, s: usize, suspects: usize) -> Option<Suspect> {
    let server = handle.servers().get(s).cloned()?;
    Some(Suspect {
        server,
        alone: suspects == 1,
    })
}

/// What a fetch found, and what failed.
pub(crate) struct Fetch {
    /// Per requested key: whether its value arrived.
    pub found: Vec<bool>,
    pub failures: Vec<KeyFailure>,
}

/// Resets a handle's connections when dropped during a panic (see [`fetch`], [`fetch_one`]).
pub(super) struct ResetOnUnwind<'a>(&'a Handle);

impl Drop for ResetOnUnwind<'_> {
    fn drop(&mut self) {
        self.0
            .reset_connections(&"a panic while reading a get's replies");
    }
}

/// The error of a multi-get refused as a whole: its first key finds the server to name, and the
/// error names no key (it is every key's).
fn refused_whole(handle: &Handle, rc: Rc, keys: &[&[u8]]) -> Error {
    let mut error = handle.error(rc, keys.first().copied());
    if let Error::Memcached { key, .. } = &mut error {
        *key = None;
    }
    error
}
