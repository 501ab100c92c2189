//! [`AsyncPrefixed`]: an async client's keys under a prefix.

use std::fmt;
use std::sync::Arc;

use crate::expiration::Expiration;
use crate::value::{FromValue, ToValue};

use super::client::{AsyncCall, AsyncClient};
use super::engine::Request;
use super::queue::Queue;

/// A view of an [`AsyncClient`] that puts a prefix in front of every key and takes it off the
/// keys it returns (pylibmc's `key_prefix`), made by [`AsyncClient::prefixed`]: the async
/// [`Prefixed`](crate::Prefixed), with every key operation of the client. It holds a handle of
/// its own, so it is `'static` and cheap to clone. The 250-byte key limit counts the prefix.
///
/// ```no_run
/// # async fn example() -> libmemcached::Result<()> {
/// use libmemcached::{AsyncClient, Client};
///
/// let mc = AsyncClient::new(Client::new(["127.0.0.1:11211"])?)?;
/// let sessions = mc.prefixed("session:");
/// sessions.set("abc", "data", 600).await?;              // stores "session:abc"
/// let data: Option<String> = sessions.get("abc").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AsyncPrefixed {
    client: AsyncClient,
    prefix: Arc<[u8]>,
}

impl AsyncClient {
    /// A view whose operations put `prefix` in front of every key and take it off the keys
    /// they return, as [`Client::prefixed`](crate::Client::prefixed) does.
    pub fn prefixed(&self, prefix: impl AsRef<[u8]>) -> AsyncPrefixed {
        AsyncPrefixed {
            client: self.clone(),
            prefix: prefix.as_ref().into(),
        }
    }
}

impl AsyncPrefixed {
    /// The prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The value of `key` (under the prefix), or `None` if it is not there:
    /// [`AsyncClient::get`], merged with the other gets queued.
    pub fn get<V: FromValue + Send + 'static>(
        &self,
        key: impl AsRef<[u8]>,
    ) -> AsyncCall<Option<V>> {
        self.client
            .get([&self.prefix[..], key.as_ref()].concat())
            .for_view(self.shared_prefix())
    }

    /// Stores `value` under `key` (under the prefix): [`AsyncClient::set`], sent together with
    /// the other sets queued.
    pub fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue,
        exp: impl Into<Expiration>,
    ) -> AsyncCall<()> {
        self.client
            .set([&self.prefix[..], key.as_ref()].concat(), value, exp)
            .for_view(self.shared_prefix())
    }

    pub(super) fn client(&self) -> &AsyncClient {
        &self.client
    }

    pub(super) fn shared_prefix(&self) -> Arc<[u8]> {
        Arc::clone(&self.prefix)
    }

    /// The lane that serves calls on `key` under the prefix (on many keys, or none: `None`).
    pub(super) fn lane(&self, key: Option<&[u8]>) -> &Arc<Queue<Request>> {
        match key {
            Some(key) => self.client.lane(Some(&[&self.prefix[..], key].concat())),
            None => self.client.lane(None),
        }
    }
}

impl fmt::Debug for AsyncPrefixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncPrefixed")
            .field("prefix", &crate::key::display(&self.prefix))
            .field("client", &self.client)
            .finish()
    }
}
