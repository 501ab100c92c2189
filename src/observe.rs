//! What a client records of each call: its counters ([`crate::metrics`]) and its events
//! ([`crate::trace`]). Every public call goes through [`Client::call`].

use std::collections::HashMap;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::keyspace::Partial;
use crate::metrics::Metrics;
use crate::server::Address;
use crate::trace;

/// What a call's result says went wrong beside an `Err`: the failures a partial result keeps.
pub(crate) trait Outcome {
    fn failures(&self) -> &[crate::KeyFailure] {
        &[]
    }
}

impl Outcome for () {}
impl Outcome for bool {}
impl Outcome for u64 {}
impl Outcome for Address {}
impl<T> Outcome for Option<T> {}
impl<T> Outcome for Vec<T> {}
impl<K, V, S> Outcome for HashMap<K, V, S> {}
impl<T> Outcome for Partial<T> {
    fn failures(&self) -> &[crate::KeyFailure] {
        &self.failures
    }
}

impl Client {
    /// This client's counters since it was made: operations, hits, misses, bytes, errors by
    /// kind and by server. See [`Metrics`].
    pub fn metrics(&self) -> Metrics {
        self.counters.snapshot()
    }

    /// Runs public call `op`: refused from inside the client's own `get_multi_each` callback,
    /// otherwise in its span, then counted and its failures reported.
    #[inline(always)]
    pub(crate) fn call<T: Outcome>(
        &self,
        op: &'static str,
        run: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        self.refuse_while_streaming(op)?;
        let _span = trace::span(op);
        let result = run();
        self.observe(op, &result);
        result
    }

    /// Counts a finished call of `op` and reports its failures.
    #[inline]
    pub(crate) fn observe<T: Outcome>(&self, op: &'static str, result: &Result<T>) {
        self.counters.operations.add(1);
        match result {
            Ok(value) if value.failures().is_empty() => {}
            Ok(value) => self.record_failures(op, value.failures()),
            // Answers, not failures: a missing key, a write sent without asking for a reply.
            Err(Error::NotFound { .. } | Error::Unanswered { .. }) => {}
            Err(Error::Multi { failures }) => self.record_failures(op, failures),
            Err(error) => self.record_error(op, error, 1),
        }
    }

    #[cold]
    fn record_failures(&self, op: &'static str, failures: &[crate::KeyFailure]) {
        for failure in failures {
            if !matches!(failure.error, Error::Unanswered { .. }) {
                self.record_error(op, &failure.error, failure.keys.len());
            }
        }
    }

    #[cold]
    fn record_error(&self, op: &'static str, error: &Error, keys: usize) {
        let health = self.counters.record_error(error, 1);
        trace::error(op, error, keys, health);
    }

    /// Notes that the server of `key` answered (a value, a miss, stored or not), which matters
    /// only while a server is failing.
    #[inline]
    pub(crate) fn answered(&self, key: &[u8]) {
        if self.counters.any_failing() {
            self.answered_now(key);
        }
    }

    #[cold]
    fn answered_now(&self, key: &[u8]) {
        if let Ok(server) = self.handle.server_for_key(key) {
            if self.counters.answered(&server) {
                trace::answers_again(&server);
            }
        }
    }

    /// [`Client::answered`] for the keys of a multi-get that were found.
    #[cold]
    pub(crate) fn answered_many<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) {
        for key in keys {
            if !self.counters.any_failing() {
                break;
            }
            self.answered_now(key);
        }
    }

    /// Counts what a read found: `hits` of `asked` keys, `failed` of them lost to failed
    /// servers, the rest misses.
    #[inline]
    pub(crate) fn count_reads(&self, asked: usize, hits: usize, failed: usize) {
        self.counters.hits.add(hits as u64);
        let misses = asked.saturating_sub(hits).saturating_sub(failed);
        self.counters.misses.add(misses as u64);
    }
}
