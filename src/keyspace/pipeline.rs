//! Sets sent together: the sets of one server go out before the first answer is read, and each
//! still gets its own answer (see `ffi::pipeline`), so that many concurrent sets cost one round
//! trip per server rather than one each.

use libmemcached_sys as sys;

use crate::client::Client;
use crate::error::Result;
use crate::expiration::Expiration;
use crate::ffi::{Handle, PipedSet, Rc};
use crate::value::Encoded;

/// The most sets sent before their answers are read: the answers wait in the socket buffers
/// meanwhile (24 bytes each, a few more for a refusal), far below their size.
const AT_ONCE: usize = 512;

/// The most value bytes sent before the answers are read: libmemcached counts the bytes sent
/// since the last read in 32 bits, and purges (reads and drops the answers) when the count
/// reaches its watermark.
const BYTES_AT_ONCE: usize = 256 << 20;

/// A set made ready for [`Client::set_each`]: its key, checked, and its value, encoded.
pub(crate) struct ReadySet<'a> {
    pub key: &'a [u8],
    pub value: Encoded<'a>,
    pub exp: Expiration,
}

impl Client {
    /// Stores each item, with the result [`Client::set`] would give it, counted as a `set`
    /// call each: sent together where the client can ([`Client::set_together`]), otherwise,
    /// and for a single set, one by one.
    #[cfg(feature = "async")]
    pub(crate) fn set_each(&self, sets: &[ReadySet<'_>]) -> Vec<Result<()>> {
        let together = match sets.len() > 1 {
            true => self.set_together(sets),
            false => None,
        };
        let results = together.unwrap_or_else(|| {
            sets.iter()
                .map(|set| {
                    let rc = self.send(crate::ffi::Store::Set, set.key, &set.value, set.exp);
                    self.set_result(&self.handle, rc, set)
                })
                .collect()
        });
        for result in &results {
            self.observe("set", result);
        }
        results
    }

    /// Stores each item, with the result [`Client::set`] would give it, the sets of one server
    /// sent together on a clone speaking the binary protocol; `None` (nothing sent) if the
    /// client cannot ([`Client::can_set_together`]).
    pub(crate) fn set_together(&self, sets: &[ReadySet<'_>]) -> Option<Vec<Result<()>>> {
        self.with_pipe(|pipe| {
            let mut results = Vec::with_capacity(sets.len());
            let mut rest = sets;
            while !rest.is_empty() {
                let (chunk, after) = rest.split_at(chunk_len(rest));
                rest = after;
                let piped: Vec<_> = chunk
                    .iter()
                    .map(|set| PipedSet {
                        key: set.key,
                        data: &set.value.data,
                        exp: set.exp.to_wire(),
                        flags: set.value.flags,
                    })
                    .collect();
                let mut answers: Vec<Option<Result<()>>> = Vec::new();
                answers.resize_with(chunk.len(), || None);
                // Each answer becomes a result at once: an error names its server from
                // libmemcached's log, which the next server's sets clear.
                pipe.set_pipelined(&piped, |i, rc| {
                    answers[i] = Some(self.set_result(pipe, rc, &chunk[i]));
                });
                results.extend(
                    answers
                        .into_iter()
                        .map(|answer| answer.expect("set_pipelined answers every set")),
                );
            }
            results
        })
    }

    /// The result of `set`, answered `rc` on `handle`, as [`Client::set`] gives it.
    fn set_result(&self, handle: &Handle, rc: Rc, set: &ReadySet<'_>) -> Result<()> {
        let len = set.value.data.len();
        self.stored(handle, rc, "set", &[], set.key, len).map(drop)
    }

    /// Whether sets can go out together: asked for (`ClientBuilder::sets_together`, on by
    /// default for a binary client), to memcached servers (twemproxy speaks ASCII only) that
    /// answer them (not over UDP, nor with noreply), without replicas (their quiet copies answer
    /// out of turn) nor a random distribution (a key's server changes from call to call).
    pub(crate) fn can_set_together(&self) -> bool {
        let facts = self.handle.facts();
        let behavior = |flag| self.handle.behavior(flag);
        self.settings.sets_together.unwrap_or(facts.binary)
            && !(facts.proxy
                || facts.udp
                || facts.noreply
                || behavior(sys::MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS) != 0
                || behavior(sys::MEMCACHED_BEHAVIOR_DISTRIBUTION)
                    == u64::from(sys::MEMCACHED_DISTRIBUTION_RANDOM))
    }

    /// Runs `f` with the client's pipe, made on first use; `None` if the client cannot have
    /// one, or the clone could not be made.
    fn with_pipe<T>(&self, f: impl FnOnce(&Handle) -> T) -> Option<T> {
        if !self.can_set_together() {
            return None;
        }
        let mut pipe = self.pipe.borrow_mut();
        if pipe.is_none() {
            let clone = self.handle.try_clone().ok()?;
            if clone.make_pipe() != Rc::SUCCESS {
                return None;
            }
            *pipe = Some(clone);
        }
        pipe.as_ref().map(f)
    }
}

/// How many of `sets` go out before their answers are read: at most [`AT_ONCE`], and past the
/// first, no more than [`BYTES_AT_ONCE`] of values.
fn chunk_len(sets: &[ReadySet<'_>]) -> usize {
    let mut bytes = 0;
    sets.iter()
        .take(AT_ONCE)
        .position(|set| {
            bytes += set.value.data.len();
            bytes > BYTES_AT_ONCE
        })
        .map_or(sets.len().min(AT_ONCE), |i| i.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_at_most_so_many_sets_and_bytes() {
        let small = vec![0u8; 10];
        let set = |data| ReadySet {
            key: b"k",
            value: Encoded::borrowed(data, 0),
            exp: Expiration::Never,
        };
        let many: Vec<_> = (0..AT_ONCE + 3).map(|_| set(&small)).collect();
        assert_eq!(chunk_len(&many), AT_ONCE);
        assert_eq!(chunk_len(&many[..7]), 7);
        let big = vec![0u8; BYTES_AT_ONCE / 2 + 1];
        let large: Vec<_> = (0..4).map(|_| set(&big)).collect();
        assert_eq!(chunk_len(&large), 1, "two would pass the byte limit");
        let huge = vec![0u8; BYTES_AT_ONCE + 1];
        assert_eq!(chunk_len(&[set(&huge), set(&small)]), 1, "one goes alone");
    }
}
