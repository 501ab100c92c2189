//! The bulk-load path: many sets through a second handle with noreply and buffered writes.

use std::collections::HashMap;

use super::fetch::fetch;
use crate::client::Client;
use crate::error::{Error, KeyFailure, Result};
use crate::expiration::Expiration;
use crate::ffi::{Rc, Store};
use crate::value::ToValue;

use super::Keys;

impl Keys<'_> {
    pub(crate) fn bulk_set<K, V>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        exp: impl Into<Expiration>,
    ) -> Result<()>
    where
        K: AsRef<[u8]>,
        V: ToValue,
    {
        let (client, prefix, exp) = (self.client, self.prefix, exp.into());
        let items: Vec<(K, V)> = items.into_iter().collect();
        if items.is_empty() {
            return Ok(());
        }
        if client.is_binary() || client.handle.facts().udp {
            return self
                .store_multi(Store::Set, items, exp)?
                .into_result()
                .map(drop);
        }
        let full = items
            .iter()
            .map(|(k, _)| self.full(k.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let encoded = items
            .iter()
            .map(|(_, v)| client.encode_for(Store::Set, v))
            .collect::<Result<Vec<_>>>()?;

        let mut slot = client.bulk.borrow_mut();
        let Bulk {
            client: bulk,
            item_limit: limit,
        } = match slot.as_deref() {
            Some(bulk) => bulk,
            None => &**slot.insert(Box::new(Bulk::new(client)?)),
        };
        let limit = *limit;
        // An oversized value would get an error reply that nobody reads: refuse it up front.
        let too_big: Vec<Vec<u8>> = items
            .iter()
            .zip(&encoded)
            .filter(|((k, _), e)| {
                e.data.len() + prefix.len() + k.as_ref().len() + ITEM_OVERHEAD > limit
            })
            .map(|((k, _), _)| k.as_ref().to_vec())
            .collect();
        if !too_big.is_empty() {
            let len = items.len();
            return Err(Error::Multi {
                failures: vec![KeyFailure {
                    error: Error::argument(
                        "value",
                        format!(
                            "values over the server's item size limit of {limit} bytes; none of \
                             the {len} items was sent"
                        ),
                    ),
                    keys: too_big,
                }],
            });
        }

        let mut failures: Vec<KeyFailure> = Vec::new();
        let mut last_key_per_server: HashMap<usize, usize> = HashMap::new();
        for (i, ((key, _), (sent, value))) in
            items.iter().zip(full.iter().zip(&encoded)).enumerate()
        {
            let rc = bulk.send(Store::Set, sent, value, exp);
            match bulk.handle.check(rc, &[], Some(sent)) {
                Ok(_) => {
                    bulk.counters.bytes_sent.add(value.data.len() as u64);
                    last_key_per_server.insert(bulk.handle.server_index(sent), i);
                }
                Err(error) => KeyFailure::record(&mut failures, error, key.as_ref().to_vec()),
            }
        }
        if let Err(error) = bulk.check(bulk.handle.flush_buffers(), None) {
            failures.push(KeyFailure {
                error,
                keys: Vec::new(),
            });
        }

        // One read per server waits for the server to take the writes, and makes replies that
        // should not exist (an error the server sent despite noreply) surface here, after which
        // the connections are reset before anyone reads them.
        let probes: Vec<&[u8]> = last_key_per_server.values().map(|&i| &*full[i]).collect();
        if !probes.is_empty() {
            match fetch(&bulk.handle, &probes, 0, |_, _| {}) {
                Ok(probe) => failures.extend(probe.failures.into_iter().map(|f| KeyFailure {
                    error: f.error,
                    keys: Vec::new(),
                })),
                Err(error) => failures.push(KeyFailure {
                    error,
                    keys: Vec::new(),
                }),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Multi { failures })
        }
    }
}

/// The bulk-load handle: a clone with noreply and buffered writes, so writes go out a buffer
/// at a time with no reply to wait for, and the servers' item size limit, read once.
/// (Buffering without noreply is what aborts libmemcached under load: its purge of pending
/// replies times out. With noreply nothing is pending, so the purge never runs.)
#[derive(Debug)]
pub(crate) struct Bulk {
    client: Client,
    item_limit: usize,
}

impl Bulk {
    fn new(client: &Client) -> Result<Bulk> {
        let item_limit = client.item_size_limit()?;
        let mut bulk = client.try_clone()?;
        // Its bytes count as the client's: they share a thread, so the counters keep one writer.
        bulk.counters = std::sync::Arc::clone(&client.counters);
        for flag in [
            libmemcached_sys::MEMCACHED_BEHAVIOR_NOREPLY,
            libmemcached_sys::MEMCACHED_BEHAVIOR_BUFFER_REQUESTS,
        ] {
            // Both flags take a boolean; the clone speaks ASCII (checked by the caller).
            let rc = bulk.handle.set_behavior(flag, 1);
            if rc != Rc::SUCCESS {
                return Err(bulk.error(rc, None));
            }
        }
        Ok(Bulk {
            client: bulk,
            item_limit,
        })
    }
}

/// Room memcached needs in an item beside the key and value (header, CAS, suffix), rounded up.
const ITEM_OVERHEAD: usize = 128;
