//! What multi-key operations hand back besides their values: [`Partial`] results and
//! [`Fetched`] items.

use crate::client::Client;
use crate::error::{Error, KeyFailure, Result};
use crate::ffi::Item;
use crate::value::FromValue;

/// The result of a multi-key operation that keeps what succeeded when some keys failed
/// (`get_multi_partial`, `set_multi_partial`, ...).
#[derive(Debug)]
#[must_use]
pub struct Partial<T> {
    /// What succeeded, as the strict form returns it: the values found, the keys not stored...
    pub ok: T,
    /// What failed: per failed server (or cause), the error and the keys it cost. Keys listed
    /// here are in no state the call can vouch for; keys not listed are in `ok` or were
    /// answered as the strict form describes.
    pub failures: Vec<KeyFailure>,
}

impl<T> Partial<T> {
    /// Whether nothing failed.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// The keys that failed, as the caller gave them (without a view's prefix).
    pub fn failed_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.failures
            .iter()
            .flat_map(|f| f.keys.iter().map(Vec::as_slice))
    }

    /// The strict form: `ok`, or [`Error::Multi`] if anything failed.
    pub fn into_result(self) -> Result<T> {
        match self.failures.is_empty() {
            true => Ok(self.ok),
            false => Err(Error::Multi {
                failures: self.failures,
            }),
        }
    }
}

/// One item found by [`Client::get_multi_each`]: its key and value, borrowed for the duration
/// of the call to the closure.
pub struct Fetched<'a> {
    pub(super) client: &'a Client,
    pub(super) key: &'a [u8],
    pub(super) item: Item<'a>,
}

impl<'a> Fetched<'a> {
    /// The key, as the caller gave it (without a view's prefix).
    pub fn key(&self) -> &'a [u8] {
        self.key
    }

    /// The value's bytes as stored (compressed if the flags say so).
    pub fn value(&self) -> &'a [u8] {
        self.item.value
    }

    /// The flags stored with the value.
    pub fn flags(&self) -> u32 {
        self.item.flags
    }

    /// The value decoded by its flags, inflated first if compressed, as `get` decodes it.
    pub fn decode<V: FromValue>(&self) -> Result<V> {
        self.client
            .decode(self.key, self.item.value, self.item.flags)
    }
}

impl std::fmt::Debug for Fetched<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("key", &crate::key::display(self.key))
            .field("len", &self.item.value.len())
            .field("flags", &self.item.flags)
            .finish()
    }
}
