//! Sets taken together: encoded one by one, sent together (one round trip per server, see
//! [`Client::set_each`]) and answered one by one, each caller with its own key's answer.

use std::panic::{AssertUnwindSafe, catch_unwind};

use futures_channel::oneshot;

use crate::client::Client;
use crate::expiration::Expiration;
use crate::ffi::Store;
use crate::keyspace::ReadySet;

use super::batch::Outcome;
use super::ops::Serialized;
use super::stats::Counters;

/// One caller's set: a key already checked against the client's rules, the value as its
/// [`ToValue`](crate::ToValue) made it, and where to answer.
pub(crate) struct SetRequest {
    pub key: Box<[u8]>,
    pub value: Serialized,
    pub exp: Expiration,
    pub reply: oneshot::Sender<Outcome<()>>,
}

/// Serves `sets` (emptied) in order on `client`. Sets whose callers have gone are never sent;
/// a value whose encoding fails or panics fails its own caller only.
pub(crate) fn serve(client: &Client, sets: &mut Vec<SetRequest>, counters: &Counters) {
    counters.served(sets.len());
    let queued = sets.len();
    sets.retain(|set| !set.reply.is_canceled());
    counters.abandoned(queued - sets.len());
    if sets.is_empty() {
        return;
    }
    counters.set_batch(sets.len());
    let mut outcomes: Vec<Option<Outcome<()>>> = Vec::with_capacity(sets.len());
    let mut ready = Vec::with_capacity(sets.len());
    let mut readied = Vec::with_capacity(sets.len());
    for (i, set) in sets.iter().enumerate() {
        outcomes.push(None);
        // Compression and the value format run here, on the worker, as in `Client::set`.
        match catch_unwind(AssertUnwindSafe(|| {
            client.encode_for(Store::Set, &set.value)
        })) {
            Ok(Ok(value)) => {
                readied.push(i);
                ready.push(ReadySet {
                    key: &set.key,
                    value,
                    exp: set.exp,
                });
            }
            Ok(Err(error)) => {
                let failed = Err(error);
                client.observe("set", &failed);
                outcomes[i] = Some(Ok(failed));
            }
            Err(panic) => outcomes[i] = Some(Err(panic)),
        }
    }
    let results = client.set_each(&ready);
    drop(ready);
    for (i, result) in readied.into_iter().zip(results) {
        outcomes[i] = Some(Ok(result));
    }
    let mut discarded = 0;
    for (set, outcome) in sets.drain(..).zip(outcomes) {
        let outcome = outcome.expect("every set has an outcome");
        if set.reply.send(outcome).is_err() {
            discarded += 1;
        }
    }
    counters.discarded(discarded);
}
