//! Every event and span the crate emits through `tracing` (feature `tracing`), under the target
//! `libmemcached`. Without the feature each function here is empty and inlined away.
//!
//! What is never recorded: values, credentials, and keys above the `trace` level. Events name
//! the server and libmemcached's return code; the full message of an error, which may quote a
//! key or a server's reply, goes out at `trace` only.

use std::time::Duration;

use crate::error::Error;
#[cfg(feature = "tracing")]
use crate::error::ErrorKind;
use crate::metrics::Health;
use crate::server::Address;

/// The target of every event and span.
#[cfg(feature = "tracing")]
const TARGET: &str = "libmemcached";

/// The span of one call, at `debug`: `memcached{op=get}`. Entered until dropped; `None` when
/// no subscriber takes `debug`.
#[cfg(feature = "tracing")]
pub(crate) type Span = Option<tracing::span::EnteredSpan>;
/// The span of one call (nothing without the `tracing` feature).
#[cfg(not(feature = "tracing"))]
pub(crate) struct Span;

/// Enters the span of operation `op`.
#[inline(always)]
pub(crate) fn span(op: &'static str) -> Span {
    // One load and compare when nothing listens; the span is made out of line.
    #[cfg(feature = "tracing")]
    return match tracing::level_enabled!(tracing::Level::DEBUG) {
        true => Some(enter(op)),
        false => None,
    };
    #[cfg(not(feature = "tracing"))]
    {
        let _ = op;
        Span
    }
}

#[cfg(feature = "tracing")]
#[cold]
#[inline(never)]
fn enter(op: &'static str) -> tracing::span::EnteredSpan {
    tracing::debug_span!(target: TARGET, "memcached", op).entered()
}

/// The key of a one-key call, at `trace`.
#[inline(always)]
pub(crate) fn key(key: &[u8]) {
    #[cfg(feature = "tracing")]
    if tracing::level_enabled!(tracing::Level::TRACE) {
        key_event(key);
    }
    #[cfg(not(feature = "tracing"))]
    let _ = key;
}

#[cfg(feature = "tracing")]
#[cold]
#[inline(never)]
fn key_event(key: &[u8]) {
    tracing::trace!(target: TARGET, key = %crate::key::display(key), "key");
}

/// The keys of a multi-key read, one event each at `trace`.
#[inline(always)]
pub(crate) fn keys<K: AsRef<[u8]>>(keys: &[K]) {
    #[cfg(feature = "tracing")]
    if tracing::enabled!(target: TARGET, tracing::Level::TRACE) {
        for key in keys {
            self::key(key.as_ref());
        }
    }
    #[cfg(not(feature = "tracing"))]
    let _ = keys;
}

/// A call failed. Failures of the network and of servers (connection, timeout, dead server,
/// authentication, protocol, server errors) are `warn`, except further failures of a server
/// already known to be failing, which would flood a log during an outage: those, bad input and
/// values that do not decode go out at `debug`. `health`: what the failure says of its server.
/// `keys`: how many keys the failure cost (multi-key calls).
#[cold]
pub(crate) fn error(op: &'static str, error: &Error, keys: usize, health: Health) {
    #[cfg(feature = "tracing")]
    {
        use tracing::{Level, event};
        let kind = error.kind();
        let code = error.code().map(tracing::field::display);
        let server = error.server().map(tracing::field::display);
        macro_rules! failed {
            ($level:expr) => {
                event!(target: TARGET, $level, op, kind = kind.as_str(), code, server,
                       keys, "{}", what(kind))
            };
        }
        match (kind, health) {
            (ErrorKind::Input | ErrorKind::Decode, _) | (_, Health::StillFailing) => {
                failed!(Level::DEBUG)
            }
            _ => failed!(Level::WARN),
        }
        if health == Health::NowFailing {
            let news = match kind {
                ErrorKind::ServerDown => "server marked dead",
                _ => "server failing",
            };
            event!(target: TARGET, Level::WARN, server, kind = kind.as_str(), "{news}");
        }
        event!(target: TARGET, Level::TRACE, op, %error, "error");
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (op, error, keys, health);
}

/// What a failure of `kind` is called in events.
#[cfg(feature = "tracing")]
fn what(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Connection => "connection failed",
        ErrorKind::Timeout => "timed out",
        ErrorKind::ServerDown => "server is marked dead",
        ErrorKind::Auth => "authentication failed",
        ErrorKind::Protocol => "protocol error",
        ErrorKind::Server => "server error",
        ErrorKind::Input => "refused input",
        ErrorKind::Decode => "value does not decode",
        _ => "failed",
    }
}

/// A server that was failing answered again, at `info`.
#[cold]
pub(crate) fn answers_again(server: &Address) {
    #[cfg(feature = "tracing")]
    tracing::info!(target: TARGET, %server, "server answers again");
    #[cfg(not(feature = "tracing"))]
    let _ = server;
}

/// The connections were closed because their replies may be out of step; the next call
/// reconnects. At `info`.
#[cold]
pub(crate) fn reconnect(why: &dyn std::fmt::Display) {
    #[cfg(feature = "tracing")]
    tracing::info!(target: TARGET, %why, "connections reset; the next call reconnects");
    #[cfg(not(feature = "tracing"))]
    let _ = why;
}

/// The relay closed a connection to `server` (or could not open one), at `warn`: a TLS or
/// connection failure, or a reply the shield refused.
#[cfg(feature = "shield")]
#[cold]
pub(crate) fn relay_failure(server: &dyn std::fmt::Display, why: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: TARGET, %server, why, "relay closed a connection");
    #[cfg(not(feature = "tracing"))]
    let _ = (server, why);
}

/// The relay's thread stopped on an error of its own; calls fail from now on. At `error`.
#[cfg(feature = "shield")]
#[cold]
pub(crate) fn relay_stopped(why: &dyn std::fmt::Display) {
    #[cfg(feature = "tracing")]
    tracing::error!(target: TARGET, %why, "relay stopped");
    #[cfg(not(feature = "tracing"))]
    let _ = why;
}

/// A call is tried again (`attempt` from 1), at `debug`.
#[cold]
pub(crate) fn retry(op: &'static str, attempt: u32, why: &'static str) {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: TARGET, op, attempt, why, "retrying");
    #[cfg(not(feature = "tracing"))]
    let _ = (op, attempt, why);
}

/// A configuration (builder, configuration string, behavior) was refused, at `warn`.
#[cold]
pub(crate) fn config_refused(error: &Error) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: TARGET, %error, "configuration refused");
    #[cfg(not(feature = "tracing"))]
    let _ = error;
}

/// A caller waited for a pooled client, at `debug` (`warn` when it gave up).
#[cold]
pub(crate) fn pool_wait(waited: Duration, size: usize, got_one: bool) {
    #[cfg(feature = "tracing")]
    {
        let waited_us = waited.as_micros() as u64;
        match got_one {
            true => tracing::debug!(target: TARGET, waited_us, size, "waited for a pooled client"),
            false => tracing::warn!(target: TARGET, waited_us, size, "no pooled client came free"),
        }
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (waited, size, got_one);
}

/// The subscriber of the thread that made it, for threads the crate starts: a scoped one (or
/// the global one) as it was then. With none at all, the threads use the global default,
/// whenever it is set.
#[cfg(feature = "async")]
#[derive(Clone)]
pub(crate) struct Subscriber {
    #[cfg(feature = "tracing")]
    dispatch: Option<tracing::Dispatch>,
}

#[cfg(feature = "async")]
impl Subscriber {
    /// The current thread's subscriber.
    pub(crate) fn current() -> Subscriber {
        #[cfg(feature = "tracing")]
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        Subscriber {
            #[cfg(feature = "tracing")]
            dispatch: (!dispatch.is::<tracing::subscriber::NoSubscriber>()).then_some(dispatch),
        }
    }

    /// Runs `f` with this subscriber as the thread's default.
    pub(crate) fn within<T>(&self, f: impl FnOnce() -> T) -> T {
        #[cfg(feature = "tracing")]
        if let Some(dispatch) = &self.dispatch {
            return tracing::dispatcher::with_default(dispatch, f);
        }
        f()
    }
}

/// A `get_or_set_with` missed and runs its loader, at `debug` (the key is in the call's
/// `trace` events).
#[inline(always)]
pub(crate) fn load_started() {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: TARGET, "cache miss: loading");
}

/// A `get_or_set_with` missed and waits for the load another caller runs, at `debug`.
#[inline(always)]
pub(crate) fn load_waited() {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: TARGET, "cache miss: waiting for the load in flight");
}

/// An async worker sent one multi-get for `keys` keys asked by `callers` calls, at `debug`.
#[cfg(feature = "async")]
#[inline(always)]
pub(crate) fn batch(callers: usize, keys: usize) {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: TARGET, callers, keys, "gets merged into one multi-get");
    #[cfg(not(feature = "tracing"))]
    let _ = (callers, keys);
}

/// An async worker panicked (in user code or its own), failed the calls it was serving and
/// started over with its connections reset, at `error`.
#[cfg(feature = "async")]
#[inline(always)]
pub(crate) fn worker_restarted() {
    #[cfg(feature = "tracing")]
    tracing::error!(target: TARGET, "an AsyncClient worker panicked and was restarted");
}
