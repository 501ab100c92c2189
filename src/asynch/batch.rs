//! Gets merged into one multi-get: the requests a worker took, deduplicated by key, fetched as
//! raw items with one [`Client::get_multi_each`], each inflated once (from one inflate budget
//! for the batch) and decoded into each of its callers' types, and answered once the multi-get
//! has ended (so that a server that breaks off fails its keys).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::panic::{AssertUnwindSafe, catch_unwind};

use futures_channel::oneshot;

use crate::client::Client;
use crate::error::Error;
use crate::keyspace::Unpacked;
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
    /// The key's value, fetched and inflated for all its callers, decoded here for this one;
    /// the answer waits until the multi-get has ended (see [`Held`]).
    fn found(self: Box<Self>, value: &Unpacked<'_>) -> Box<dyn Held>;
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

    fn found(self: Box<Self>, value: &Unpacked<'_>) -> Box<dyn Held> {
        let outcome = catch_unwind(AssertUnwindSafe(|| value.decode::<V>().map(Some)));
        Box::new((*self, outcome))
    }

    fn missed(self: Box<Self>) -> bool {
        self.send(Ok(Ok(None))).is_ok()
    }

    fn failed(self: Box<Self>, error: Error) -> bool {
        self.send(Ok(Err(error))).is_ok()
    }
}

/// A caller's value, decoded and held until the multi-get ends: if the server that sent it
/// then breaks off (a length that lied, a cut reply), the value may be wrong, and the caller
/// gets the server's error instead, as a blocking `get_multi` reports the key failed.
pub(crate) trait Held: Send {
    /// The value goes to the caller; says whether it was still there.
    fn deliver(self: Box<Self>) -> bool;
    /// The server failed after all: its error goes to the caller instead.
    fn fail(self: Box<Self>, error: Error) -> bool;
}

impl<V: Send + 'static> Held for (oneshot::Sender<Outcome<Option<V>>>, Outcome<Option<V>>) {
    fn deliver(self: Box<Self>) -> bool {
        let (to, outcome) = *self;
        to.send(outcome).is_ok()
    }

    fn fail(self: Box<Self>, error: Error) -> bool {
        self.0.send(Ok(Err(error))).is_ok()
    }
}

/// Where a request of a batch stands.
enum Slot {
    Waiting(Box<dyn Waiter>),
    Found(Box<dyn Held>),
    Answered,
}

impl Slot {
    /// Answers the request with `error` (unless already answered); says whether its caller had
    /// gone.
    fn fail(&mut self, error: &Error) -> bool {
        match std::mem::replace(self, Slot::Answered) {
            Slot::Waiting(waiter) => !waiter.failed(error.clone()),
            Slot::Found(held) => !held.fail(error.clone()),
            Slot::Answered => false,
        }
    }
}

/// No further request for the same key.
const END: u32 = u32::MAX;

/// A worker's buffers for batches, kept between batches so that a batch allocates little.
#[derive(Default)]
pub(crate) struct Batch {
    /// The requests taken from the queue, in the order taken.
    pub requests: Vec<GetRequest>,
    /// Every request's key, and where it stands, in the order taken.
    keys: Vec<Box<[u8]>>,
    slots: Vec<Slot>,
    /// The next request for the same key, or `END`.
    next: Vec<u32>,
    /// The first request of each distinct key, in the order the keys are sent.
    firsts: Vec<u32>,
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
        let Batch {
            requests,
            keys,
            slots,
            next,
            firsts,
        } = self;
        keys.clear();
        slots.clear();
        for GetRequest { key, waiter } in requests.drain(..) {
            keys.push(key);
            slots.push(Slot::Waiting(waiter));
        }
        let groups = group(keys, next, firsts);
        counters.batch(keys.len(), firsts.len());
        crate::trace::batch(keys.len(), firsts.len());

        let (keys, next, firsts) = (&*keys, &*next, &*firsts);
        // Replies mostly come in the order the keys were sent: try the next key first.
        let mut cursor = 0;
        let mut budget = client.settings.max_inflated_len;
        let unique = firsts.iter().map(|&i| &*keys[i as usize]);
        let result = client.get_multi_each(unique, |item| {
            let expected = firsts.get(cursor).map(|&i| &*keys[i as usize]);
            let group = match expected == Some(item.key()) {
                true => Some(cursor),
                false => groups.get(item.key()).map(|&(group, _)| group as usize),
            };
            if let Some(group) = group {
                cursor = group + 1;
                let value = client.unpack(item.key(), item.value(), item.flags(), &mut budget);
                for i in chain(next, firsts[group]) {
                    if let Slot::Waiting(waiter) = std::mem::replace(&mut slots[i], Slot::Answered)
                    {
                        slots[i] = Slot::Found(waiter.found(&value));
                    }
                }
            }
        });
        let mut gone = 0;
        match result {
            Ok(()) => {}
            // A failed server's keys fail, values already read from it included.
            Err(Error::Multi { failures }) => {
                for failure in failures {
                    for key in &failure.keys {
                        if let Some(&(group, _)) = groups.get(key.as_slice()) {
                            for i in chain(next, firsts[group as usize]) {
                                gone += usize::from(slots[i].fail(&failure.error));
                            }
                        }
                    }
                }
            }
            // The call failed as a whole: so does every request.
            Err(error) => {
                for slot in slots.iter_mut() {
                    gone += usize::from(slot.fail(&error));
                }
            }
        }
        // The rest: values from servers whose replies ended well, and misses.
        for slot in slots.drain(..) {
            let delivered = match slot {
                Slot::Waiting(waiter) => waiter.missed(),
                Slot::Found(held) => held.deliver(),
                Slot::Answered => true,
            };
            gone += usize::from(!delivered);
        }
        counters.discarded(gone);
    }
}

/// Groups requests by key: fills `firsts` with each distinct key's first request (in the order
/// taken) and chains the requests of a key through `next`. Returns, per distinct key, its group
/// (its index in `firsts`) and its last request.
fn group<'k>(
    keys: &'k [Box<[u8]>],
    next: &mut Vec<u32>,
    firsts: &mut Vec<u32>,
) -> HashMap<&'k [u8], (u32, u32)> {
    next.clear();
    next.resize(keys.len(), END);
    firsts.clear();
    let mut groups: HashMap<&[u8], (u32, u32)> = HashMap::with_capacity(keys.len());
    for (i, key) in (0u32..).zip(keys) {
        match groups.entry(key) {
            Entry::Occupied(mut entry) => {
                let (_, last) = entry.get_mut();
                next[*last as usize] = i;
                *last = i;
            }
            Entry::Vacant(entry) => {
                entry.insert((firsts.len() as u32, i));
                firsts.push(i);
            }
        }
    }
    groups
}

/// The requests of the chain that starts at `first` (one key's requests).
fn chain(next: &[u32], first: u32) -> impl Iterator<Item = usize> + '_ {
    std::iter::successors(Some(first), |&i| {
        Some(next[i as usize]).filter(|&n| n != END)
    })
    .map(|i| i as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_grouped_by_key_in_the_order_taken() {
        let keys: Vec<Box<[u8]>> = ["b", "a", "b", "c", "b"]
            .iter()
            .map(|k| k.as_bytes().into())
            .collect();
        let (mut next, mut firsts) = (Vec::new(), Vec::new());
        let groups = group(&keys, &mut next, &mut firsts);
        assert_eq!(
            firsts,
            [0, 1, 3],
            "b, a, c: each key once, first seen first"
        );
        assert_eq!(next, [2, END, 4, END, END], "b's requests chained");
        assert_eq!(chain(&next, 0).collect::<Vec<_>>(), [0, 2, 4]);
        assert_eq!(chain(&next, 3).collect::<Vec<_>>(), [3]);
        assert_eq!(groups[&b"b"[..]], (0, 4));
        assert_eq!(groups[&b"c"[..]], (2, 3));
        assert!(!groups.contains_key(&b"d"[..]));
    }
}
