//! Gets merged into one multi-get: the requests a worker took, deduplicated by key, fetched as
//! raw items with one [`Client::get_multi_each`], and answered one by one, each decoded into
//! its own caller's type.

use std::panic::{AssertUnwindSafe, catch_unwind};

use futures_channel::oneshot;

use crate::client::Client;
use crate::error::{Error, ReturnCode};
use crate::keyspace::Fetched;
use crate::value::FromValue;

use super::stats::Counters;

/// What a call gets back: its result, or the panic of the user code (a decoder, an encoder) the
/// worker ran for it, to be resumed on the caller's side.
pub(crate) type Outcome<T> = std::thread::Result<crate::Result<T>>;

/// One caller's get: a key already checked against the client's rules, and where to answer.
pub(crate) struct GetRequest {
    pub key: Box<[u8]>,
    pub waiter: Box<dyn Waiter>,
}

/// A caller waiting for one key's value, whatever type it decodes into. Each method answers
/// the caller and says whether it was still there to take the answer.
pub(crate) trait Waiter: Send {
    /// The caller dropped its future.
    fn is_gone(&self) -> bool;
    /// The only get of its batch: a plain `get`, decoded as the blocking client decodes.
    fn alone(self: Box<Self>, client: &Client, key: &[u8]) -> bool;
    /// The key's value, fetched raw (decoded here, for this caller alone).
    fn found(self: Box<Self>, item: &Fetched<'_>) -> bool;
    /// The server said the key is not there.
    fn missed(self: Box<Self>) -> bool;
    /// The call failed for this key.
    fn failed(self: Box<Self>, error: Error) -> bool;
}

impl<V: FromValue + Send + 'static> Waiter for oneshot::Sender<Outcome<Option<V>>> {
    fn is_gone(&self) -> bool {
        self.is_canceled()
    }

    fn alone(self: Box<Self>, client: &Client, key: &[u8]) -> bool {
        let outcome = catch_unwind(AssertUnwindSafe(|| client.get::<V>(key)));
        self.send(outcome).is_ok()
    }

    fn found(self: Box<Self>, item: &Fetched<'_>) -> bool {
        let outcome = catch_unwind(AssertUnwindSafe(|| item.decode::<V>().map(Some)));
        self.send(outcome).is_ok()
    }

    fn missed(self: Box<Self>) -> bool {
        self.send(Ok(Ok(None))).is_ok()
    }

    fn failed(self: Box<Self>, error: Error) -> bool {
        self.send(Ok(Err(error))).is_ok()
    }
}

/// A worker's buffers for batches, kept between batches so that a batch allocates little.
#[derive(Default)]
pub(crate) struct Batch {
    /// The requests taken from the queue, in the order taken.
    pub requests: Vec<GetRequest>,
    /// After sorting: every request's key, and its waiter until answered.
    keys: Vec<Box<[u8]>>,
    waiters: Vec<Option<Box<dyn Waiter>>>,
    /// Where each distinct key's run of requests starts in `keys`, and `keys.len()` last.
    starts: Vec<usize>,
}

impl Batch {
    /// Serves every request taken: drops those whose callers have gone, then one plain get
    /// for a lone request, or one multi-get for the distinct keys of several.
    pub(crate) fn serve(&mut self, client: &Client, counters: &Counters) {
        let taken = self.requests.len();
        self.requests.retain(|request| !request.waiter.is_gone());
        counters.abandoned(taken - self.requests.len());
        counters.served(taken);
        match self.requests.len() {
            0 => {}
            1 => {
                let GetRequest { key, waiter } = self.requests.remove(0);
                counters.batch(1, 1);
                counters.discarded(usize::from(!waiter.alone(client, &key)));
            }
            _ => self.serve_many(client, counters),
        }
    }

    fn serve_many(&mut self, client: &Client, counters: &Counters) {
        self.requests.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        self.keys.clear();
        self.waiters.clear();
        self.starts.clear();
        for GetRequest { key, waiter } in self.requests.drain(..) {
            if self.keys.last() != Some(&key) {
                self.starts.push(self.keys.len());
            }
            self.keys.push(key);
            self.waiters.push(Some(waiter));
        }
        let distinct = self.starts.len();
        self.starts.push(self.keys.len());
        counters.batch(self.keys.len(), distinct);

        let Batch {
            keys,
            waiters,
            starts,
            ..
        } = self;
        let (keys, starts) = (&*keys, &*starts);
        let mut gone = 0;
        let unique = starts[..distinct].iter().map(|&i| &*keys[i]);
        let result = client.get_multi_each(unique, |item| {
            for waiter in run(keys, starts, item.key()) {
                if let Some(waiter) = waiters[waiter].take() {
                    gone += usize::from(!waiter.found(&item));
                }
            }
        });
        // Keys not answered yet: misses, or the keys of a failed server, or all of them if the
        // call failed as a whole.
        let mut whole = None;
        match result {
            Ok(()) => {}
            Err(Error::Multi { failures }) => {
                for failure in failures {
                    for key in &failure.keys {
                        for waiter in run(keys, starts, key) {
                            if let Some(waiter) = waiters[waiter].take() {
                                gone += usize::from(!waiter.failed(copy(&failure.error)));
                            }
                        }
                    }
                }
            }
            Err(error) => whole = Some(error),
        }
        for waiter in waiters.iter_mut().filter_map(Option::take) {
            let delivered = match &whole {
                None => waiter.missed(),
                Some(error) => waiter.failed(copy(error)),
            };
            gone += usize::from(!delivered);
        }
        counters.discarded(gone);
    }
}

/// The positions in `keys` (sorted) of the requests for `key`: empty for a key nobody asked
/// for.
fn run(keys: &[Box<[u8]>], starts: &[usize], key: &[u8]) -> std::ops::Range<usize> {
    let distinct = &starts[..starts.len() - 1];
    match distinct.binary_search_by(|&i| (*keys[i]).cmp(key)) {
        Ok(at) => starts[at]..starts[at + 1],
        Err(_) => 0..0,
    }
}

/// The same error again, for another caller of the same key or server. Errors that carry a
/// decoder's boxed source cannot be cloned; those become a [`ReturnCode::Failure`] with the
/// same message (a multi-get's server failures never do).
pub(crate) fn copy(error: &Error) -> Error {
    match error {
        Error::NotFound => Error::NotFound,
        Error::TooBig { len, server } => Error::TooBig {
            len: *len,
            server: server.clone(),
        },
        Error::Memcached {
            code,
            message,
            server,
        } => Error::Memcached {
            code: *code,
            message: message.clone(),
            server: server.clone(),
        },
        Error::InvalidKey { key, reason } => Error::InvalidKey {
            key: key.clone(),
            reason: *reason,
        },
        Error::InvalidConfig(why) => Error::InvalidConfig(why.clone()),
        Error::InvalidArgument(why) => Error::InvalidArgument(why.clone()),
        Error::Shutdown => Error::Shutdown,
        other => Error::Memcached {
            code: other.code().unwrap_or(ReturnCode::Failure),
            message: other.to_string(),
            server: other.server().cloned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_find_every_request_for_a_key() {
        let keys: Vec<Box<[u8]>> = ["a", "b", "b", "b", "c"]
            .iter()
            .map(|k| k.as_bytes().into())
            .collect();
        let starts = [0, 1, 4, 5];
        assert_eq!(run(&keys, &starts, b"a"), 0..1);
        assert_eq!(run(&keys, &starts, b"b"), 1..4);
        assert_eq!(run(&keys, &starts, b"c"), 4..5);
        assert_eq!(run(&keys, &starts, b"d"), 0..0);
        assert_eq!(run(&keys, &starts, b""), 0..0);
    }

    #[test]
    fn copies_keep_code_message_and_server() {
        let error = Error::Memcached {
            code: ReturnCode::ConnectionFailure,
            message: "refused".into(),
            server: Some("127.0.0.1:1".parse().unwrap()),
        };
        let copied = copy(&error);
        assert_eq!(copied.to_string(), error.to_string());
        assert_eq!(copied.code(), error.code());
        assert_eq!(copied.server(), error.server());
        let decode = Error::Decode {
            key: b"k".to_vec(),
            flags: 0,
            source: "bad".into(),
        };
        assert_eq!(copy(&decode).to_string(), decode.to_string());
        assert!(matches!(copy(&Error::Shutdown), Error::Shutdown));
    }
}
