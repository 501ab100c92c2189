//! One-key operations, and the storage, counter and codec steps the multi-key ones share.

use std::borrow::Cow;

use super::fetch::fetch_one;
use crate::client::Client;
use crate::compression::{self, Compressed, Compression, DEFAULT_MAX_INFLATED_LEN};
use crate::error::{Error, Result};
use crate::expiration::Expiration;
use crate::ffi::{Counter, Rc, ReturnCode, Store};
use crate::server::Address;
use crate::value::{Encoded, FromValue, ToValue, flags};
use crate::{ValueFormat, php, trace};

use super::Keys;

impl Keys<'_> {
    pub(crate) fn get<V: FromValue>(&self, key: impl AsRef<[u8]>) -> Result<Option<V>> {
        let key = key.as_ref();
        let sent = self.full(key)?;
        let client = self.client;
        client.refuse_over_udp("get")?;
        // Not memcached_get, which takes any reply for this key's and stops before the END.
        let found = fetch_one(&client.handle, &sent, |item| {
            client.counters.bytes_received.add(item.value.len() as u64);
            client.decode(key, item.value, item.flags)
        })
        .map_err(|error| client.explain_auth_error(&sent, error))?;
        client.read_one(&sent, found)
    }

    pub(crate) fn gets<V: FromValue>(&self, key: impl AsRef<[u8]>) -> Result<Option<(V, u64)>> {
        let key = key.as_ref();
        let sent = self.full(key)?;
        let client = self.client;
        client.refuse_over_udp("gets")?;
        let _cas = CasTokens::on(client)?;
        let found = fetch_one(&client.handle, &sent, |item| {
            client.counters.bytes_received.add(item.value.len() as u64);
            let cas = item.cas();
            client.decode(key, item.value, item.flags).map(|v| (v, cas))
        })
        .map_err(|error| client.explain_auth_error(&sent, error))?;
        client.read_one(&sent, found)
    }

    pub(crate) fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue,
        exp: impl Into<Expiration>,
    ) -> Result<()> {
        self.store(Store::Set, key.as_ref(), &value, exp.into())
            .map(drop)
    }

    pub(crate) fn add(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue,
        exp: impl Into<Expiration>,
    ) -> Result<bool> {
        self.store(Store::Add, key.as_ref(), &value, exp.into())
    }

    pub(crate) fn replace(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue,
        exp: impl Into<Expiration>,
    ) -> Result<bool> {
        self.store(Store::Replace, key.as_ref(), &value, exp.into())
    }

    pub(crate) fn append(&self, key: impl AsRef<[u8]>, value: impl ToValue) -> Result<bool> {
        self.store(Store::Append, key.as_ref(), &value, Expiration::Never)
    }

    pub(crate) fn prepend(&self, key: impl AsRef<[u8]>, value: impl ToValue) -> Result<bool> {
        self.store(Store::Prepend, key.as_ref(), &value, Expiration::Never)
    }

    pub(crate) fn cas(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue,
        cas: u64,
        exp: impl Into<Expiration>,
    ) -> Result<bool> {
        if cas == 0 {
            // The ASCII protocol answers a zero token with ERROR; binary takes it as a plain set.
            return Err(Error::argument("cas", "a CAS token is never 0; use set"));
        }
        let sent = self.full(key.as_ref())?;
        let client = self.client;
        if cas > MAX_ASCII_CAS && !client.key_rules().binary {
            // libmemcached formats the token into a 20-byte buffer with its NUL, and reports a
            // token of 20 digits as an allocation failure. No server issues one.
            return Err(Error::argument(
                "cas",
                format!(
                    "CAS token {cas} has 20 digits, more than libmemcached writes in an ASCII \
                     command; servers count tokens up from 1"
                ),
            ));
        }
        let encoded = client.encode(&value, "cas", Compress::Never)?;
        let rc = client.handle.cas(
            &sent,
            &encoded.data,
            exp.into().to_wire(),
            encoded.flags,
            cas,
        );
        client.stored(
            &client.handle,
            rc,
            "cas",
            CAS_REFUSED,
            &sent,
            encoded.data.len(),
        )
    }

    pub(crate) fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let sent = self.full(key.as_ref())?;
        self.client
            .found(self.client.handle.delete(&sent, &sent), "delete", &sent)
    }

    pub(crate) fn touch(&self, key: impl AsRef<[u8]>, exp: impl Into<Expiration>) -> Result<bool> {
        let sent = self.full(key.as_ref())?;
        self.client.refuse_over_udp("touch")?;
        let rc = self.client.handle.touch(&sent, exp.into().to_wire());
        self.client.found(rc, "touch", &sent)
    }

    pub(crate) fn incr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<u64> {
        self.counter(Counter::Incr, key.as_ref(), delta, None)
    }

    pub(crate) fn decr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<u64> {
        self.counter(Counter::Decr, key.as_ref(), delta, None)
    }

    pub(crate) fn incr_with_initial(
        &self,
        key: impl AsRef<[u8]>,
        delta: u64,
        initial: u64,
        exp: impl Into<Expiration>,
    ) -> Result<u64> {
        let initial = Some((initial, exp.into()));
        self.counter(Counter::Incr, key.as_ref(), delta, initial)
    }

    pub(crate) fn decr_with_initial(
        &self,
        key: impl AsRef<[u8]>,
        delta: u64,
        initial: u64,
        exp: impl Into<Expiration>,
    ) -> Result<u64> {
        let initial = Some((initial, exp.into()));
        self.counter(Counter::Decr, key.as_ref(), delta, initial)
    }

    fn counter(
        &self,
        counter: Counter,
        key: &[u8],
        delta: u64,
        initial: Option<(u64, Expiration)>,
    ) -> Result<u64> {
        let sent = self.full(key)?;
        match initial {
            None => self.client.arith(counter, &sent, delta),
            Some((initial, exp)) => self
                .client
                .arith_with_initial(counter, &sent, delta, initial, exp),
        }
    }

    pub(crate) fn server_for_key(&self, key: impl AsRef<[u8]>) -> Result<Address> {
        self.client.handle.server_for_key(&self.full(key.as_ref())?)
    }

    fn store<V: ToValue + ?Sized>(
        &self,
        op: Store,
        key: &[u8],
        value: &V,
        exp: Expiration,
    ) -> Result<bool> {
        self.client.store(op, &self.full(key)?, value, exp)
    }
}

impl Store {
    /// The answers that mean "not stored", the same in both protocols once normalised.
    fn not_stored(self) -> &'static [ReturnCode] {
        match self {
            Store::Set => &[],
            // ASCII says NOTSTORED, binary DATA_EXISTS.
            Store::Add => &[ReturnCode::NotStored, ReturnCode::DataExists],
            // ASCII says NOTSTORED, binary NOTFOUND.
            Store::Replace | Store::Append | Store::Prepend => {
                &[ReturnCode::NotStored, ReturnCode::NotFound]
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Store::Set => "set",
            Store::Add => "add",
            Store::Replace => "replace",
            Store::Append => "append",
            Store::Prepend => "prepend",
        }
    }

    fn compression(self) -> Compress {
        match self {
            Store::Set | Store::Add | Store::Replace => Compress::Allowed,
            Store::Append | Store::Prepend => Compress::Joins,
        }
    }
}

/// Whether a command's value may be compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compress {
    Allowed,
    /// Not compressed (cas, as pylibmc).
    Never,
    /// The bytes join an existing value, so compressed bytes would corrupt it.
    Joins,
}

/// The largest CAS token libmemcached can write in an ASCII command (19 digits).
const MAX_ASCII_CAS: u64 = 9_999_999_999_999_999_999;

/// A cas that did not happen: the key changed or is gone.
const CAS_REFUSED: &[ReturnCode] = &[ReturnCode::DataExists, ReturnCode::NotFound];

/// The steps every storage and counter call takes, for keys already checked.
impl Client {
    /// Encodes and stores one item.
    #[inline]
    pub(crate) fn store<V: ToValue + ?Sized>(
        &self,
        op: Store,
        key: &[u8],
        value: &V,
        exp: Expiration,
    ) -> Result<bool> {
        let encoded = self.encode_for(op, value)?;
        let rc = self.send(op, key, &encoded, exp);
        self.stored(
            &self.handle,
            rc,
            op.name(),
            op.not_stored(),
            key,
            encoded.data.len(),
        )
    }

    /// Sends one storage command for an encoded value.
    #[inline]
    pub(crate) fn send(&self, op: Store, key: &[u8], value: &Encoded<'_>, exp: Expiration) -> Rc {
        self.handle
            .store(op, key, &value.data, exp.to_wire(), value.flags)
    }

    /// Encodes a value as `op` would send it.
    #[inline]
    pub(crate) fn encode_for<'v, V: ToValue + ?Sized>(
        &self,
        op: Store,
        value: &'v V,
    ) -> Result<Encoded<'v>> {
        self.encode(value, op.name(), op.compression())
    }

    /// Encodes a value, compressing it where the command allows.
    #[inline(always)]
    fn encode<'v, V: ToValue + ?Sized>(
        &self,
        value: &'v V,
        op: &str,
        compress: Compress,
    ) -> Result<Encoded<'v>> {
        let encoded = value.to_value().map_err(Error::encode)?;
        if self.settings.format == ValueFormat::Php {
            let compress = compress == Compress::Allowed;
            return php::encode(encoded, value.compression(), &self.settings, op, compress);
        }
        let asked = value.compression().is_some_and(|c| !c.is_off());
        match compress {
            Compress::Allowed => {
                let (len, was_compressed) = (encoded.data.len(), encoded.flags & flags::ZLIB != 0);
                let encoded = value
                    .compression()
                    .unwrap_or(self.settings.compression)
                    .apply(encoded)?;
                let readable = self.settings.max_inflated_len.max(DEFAULT_MAX_INFLATED_LEN);
                if !was_compressed && encoded.flags & flags::ZLIB != 0 && len > readable {
                    return Err(Error::argument(
                        "value",
                        format!(
                            "{op} of {len} bytes compressed: readers inflate at most \
                             {readable} bytes (max_inflated_len), so it could never be read back"
                        ),
                    ));
                }
                Ok(encoded)
            }
            _ if asked => Err(Error::argument(
                "value",
                format!("{op} never compresses values"),
            )),
            Compress::Joins if encoded.flags & flags::ZLIB != 0 => Err(Error::argument(
                "value",
                format!("{op} of compressed bytes would corrupt the value they join"),
            )),
            _ => Ok(encoded),
        }
    }

    /// Decodes a fetched value, inflating it first if it is compressed.
    #[inline]
    pub(crate) fn decode<V: FromValue>(&self, key: &[u8], data: &[u8], flags: u32) -> Result<V> {
        let mut budget = self.settings.max_inflated_len;
        self.decode_within(key, data, flags, &mut budget)
    }

    /// [`Client::decode`] for one of several values of a call, which share one inflate
    /// `budget`: what a value inflates to is taken from it, so that no reply makes one call
    /// hold more than the client's `max_inflated_len` of inflated bytes.
    #[inline]
    pub(crate) fn decode_within<V: FromValue>(
        &self,
        key: &[u8],
        data: &[u8],
        flags: u32,
        budget: &mut usize,
    ) -> Result<V> {
        if self.settings.format == ValueFormat::Php || flags & flags::ZLIB != 0 {
            return self.unpack(key, data, flags, budget).into_value();
        }
        V::from_value(data, flags).map_err(|source| decode_error(key, flags, source))
    }

    /// A fetched value made ready for [`FromValue`] once, for however many callers decode it:
    /// inflated if compressed (taking from `budget`), and PHP's flags read.
    pub(crate) fn unpack<'a>(
        &self,
        key: &'a [u8],
        data: &'a [u8],
        flags: u32,
        budget: &mut usize,
    ) -> Unpacked<'a> {
        let ready = match self.settings.format {
            ValueFormat::Php => {
                let max = self.settings.max_inflated_len;
                php::decode(key, data, flags, budget, max)
            }
            _ if flags & flags::ZLIB != 0 => self
                .inflate(key, data, budget)
                .map(|inflated| (Cow::Owned(inflated), flags)),
            _ => Ok((Cow::Borrowed(data), flags)),
        };
        Unpacked { key, flags, ready }
    }

    fn inflate(&self, key: &[u8], data: &[u8], budget: &mut usize) -> Result<Vec<u8>> {
        let inflated = compression::inflate(data, *budget).map_err(|reason| {
            let reason = match *budget < self.settings.max_inflated_len {
                true => format!("{reason} left of this call's inflate budget"),
                false => reason,
            };
            Error::Decompress {
                key: key.to_vec(),
                reason,
            }
        })?;
        *budget -= inflated.len();
        Ok(inflated)
    }

    /// Maps a storage command's code: stored, not stored (a command that can be refused has
    /// no answer without replies), or an error.
    #[inline]
    pub(super) fn stored(
        &self,
        handle: &crate::ffi::Handle,
        rc: Rc,
        operation: &'static str,
        not_stored: &[ReturnCode],
        key: &[u8],
        len: usize,
    ) -> Result<bool> {
        match handle.check(rc, not_stored, Some(key)) {
            Ok(code) => {
                self.counters.bytes_sent.add(len as u64);
                if !not_stored.is_empty() {
                    self.replied(operation, key)?;
                }
                self.answered(key);
                Ok(code == ReturnCode::Success)
            }
            Err(error) if error.code() == Some(ReturnCode::E2Big) => Err(Error::TooBig {
                len,
                key: key.to_vec(),
                server: handle.server_for_key(key).ok(),
            }),
            Err(error) => Err(error),
        }
    }

    /// `Ok(true)` on success, `Ok(false)` for a missing key, an error otherwise.
    pub(super) fn found(&self, rc: Rc, operation: &'static str, key: &[u8]) -> Result<bool> {
        let code = self.handle.check(rc, &[ReturnCode::NotFound], Some(key))?;
        self.replied(operation, key)?;
        self.answered(key);
        Ok(code == ReturnCode::Success)
    }

    /// The result of a one-key read: a hit, or a miss once it is sure the server said so.
    #[inline]
    fn read_one<V>(&self, sent: &[u8], found: Option<Result<V>>) -> Result<Option<V>> {
        let value = match found {
            Some(decoded) => {
                self.count_reads(1, 1, 0);
                decoded.map(Some)
            }
            None => {
                self.check_auth_after_miss(sent)?;
                self.count_reads(1, 0, 0);
                Ok(None)
            }
        };
        self.answered(sent);
        value
    }

    /// Moves a counter. A missing key is [`Error::NotFound`].
    pub(crate) fn arith(&self, counter: Counter, key: &[u8], delta: u64) -> Result<u64> {
        self.check_replies("incr and decr")?;
        self.check_auth_before_counter(key)?;
        let (rc, value) = self.handle.arith(counter, key, delta, None);
        let result = self
            .check(rc, Some(key))
            .and_then(|()| self.counted(key, value));
        if matches!(result, Ok(_) | Err(Error::NotFound { .. })) {
            self.answered(key);
        }
        result
    }

    /// A counter's new value, unless its reply carried none: for a reply that answers no
    /// counter (`OK`, a binary answer to a write), libmemcached returns the value armed before
    /// the call, `u64::MAX`. A counter that really is 2^64 - 1 is read back to tell.
    fn counted(&self, key: &[u8], value: u64) -> Result<u64> {
        if value != u64::MAX {
            return Ok(value);
        }
        self.handle
            .reset_connections(&"a counter reply without a value");
        let stored = fetch_one(&self.handle, key, |item| {
            item.value.trim_ascii_end() == b"18446744073709551615"
        });
        match stored {
            Ok(Some(true)) => Ok(u64::MAX),
            _ => Err(Error::Memcached {
                code: ReturnCode::ProtocolError,
                message: "the reply to a counter carried no value (an answer to another request: \
                          a server or proxy out of step)"
                    .into(),
                key: Some(key.to_vec()),
                server: self.handle.server_for_key(key).ok(),
            }),
        }
    }

    fn arith_with_initial(
        &self,
        counter: Counter,
        key: &[u8],
        delta: u64,
        initial: u64,
        exp: Expiration,
    ) -> Result<u64> {
        self.check_replies("incr and decr")?;
        if self.is_binary() {
            self.check_auth_before_counter(key)?;
            // When another client creates the counter between the server's miss and its add,
            // the server answers NOT_STORED; the counter exists then, so ask again.
            let initial = Some((initial, exp.to_wire()));
            let mut attempts = 0;
            loop {
                let (rc, value) = self.handle.arith(counter, key, delta, initial);
                match self.handle.check(rc, &[ReturnCode::NotStored], Some(key))? {
                    ReturnCode::NotStored if attempts < 3 => {
                        attempts += 1;
                        trace::retry(
                            counter.with_initial(),
                            attempts,
                            "created by another client",
                        );
                    }
                    ReturnCode::NotStored => return Err(self.error(rc, Some(key))),
                    _ => return self.counted(key, value),
                }
            }
        }
        // ASCII has no such command: add the initial value when the counter is missing. If
        // another client adds it first, our add fails and the counter now exists.
        let mut attempts = 0;
        loop {
            match self.arith(counter, key, delta) {
                Err(Error::NotFound { .. }) if attempts < 3 => {}
                other => return other,
            }
            // Stored with flags 0, as the binary protocol creates counters, and never
            // compressed: the server must be able to count on it.
            let digits = initial.to_string();
            let digits = Compressed::new(
                Encoded::borrowed(digits.as_bytes(), flags::BYTES),
                Compression::OFF,
            );
            if self.store(Store::Add, key, &digits, exp)? {
                return Ok(initial);
            }
            attempts += 1;
            trace::retry(
                counter.with_initial(),
                attempts,
                "created by another client",
            );
        }
    }

    /// Says that a command sent without a reply has no known outcome (UDP, noreply).
    fn replied(&self, operation: &'static str, key: &[u8]) -> Result<()> {
        let facts = self.handle.facts();
        match facts.udp || facts.noreply {
            true => Err(Error::Unanswered {
                operation,
                key: Some(key.to_vec()),
            }),
            false => Ok(()),
        }
    }

    /// Refuses operations whose result is in the reply when there is none: over UDP and with
    /// `Behavior::NoReply`, libmemcached sends every write without waiting for an answer (and
    /// would report a counter of u64::MAX).
    fn check_replies(&self, operation: &str) -> Result<()> {
        let facts = self.handle.facts();
        let why = if facts.udp {
            "writes over UDP get none"
        } else if facts.noreply {
            "the client is set to noreply"
        } else {
            return Ok(());
        };
        Err(Error::Memcached {
            code: ReturnCode::NotSupported,
            message: format!("{operation} need a reply, and {why}"),
            key: None,
            server: None,
        })
    }
}

/// A value made ready by [`Client::unpack`]: its bytes and the flags [`FromValue`] reads, or why
/// it could not be made ready.
pub(crate) struct Unpacked<'a> {
    key: &'a [u8],
    /// The flags stored with the value.
    flags: u32,
    ready: Result<(Cow<'a, [u8]>, u32)>,
}

impl Unpacked<'_> {
    /// Decodes the value for one of its callers; if it could not be made ready, the error.
    #[cfg(feature = "async")]
    pub(crate) fn decode<V: FromValue>(&self) -> Result<V> {
        match &self.ready {
            Ok((data, own_flags)) => V::from_value(data, *own_flags)
                .map_err(|source| decode_error(self.key, self.flags, source)),
            Err(error) => Err(error.clone()),
        }
    }

    /// Decodes the value for its only caller.
    fn into_value<V: FromValue>(self) -> Result<V> {
        let (data, own_flags) = self.ready?;
        V::from_value(&data, own_flags).map_err(|source| decode_error(self.key, self.flags, source))
    }
}

#[cold]
fn decode_error(key: &[u8], flags: u32, source: crate::error::BoxError) -> Error {
    Error::Decode {
        key: key.to_vec(),
        flags,
        source: source.into(),
    }
}

/// Turns CAS tokens on for the life of the guard, restoring the previous setting. Set directly
/// on the handle (not through [`Client::set_behavior`]) so that the bulk handle stays.
struct CasTokens<'a> {
    client: &'a Client,
    was_on: bool,
}

impl<'a> CasTokens<'a> {
    fn on(client: &'a Client) -> Result<Self> {
        let was_on = client.handle.facts().cas;
        if !was_on {
            client.check(client.handle.set_cas(true), None)?;
        }
        Ok(Self { client, was_on })
    }
}

impl Drop for CasTokens<'_> {
    fn drop(&mut self) {
        if !self.was_on {
            // A destructor cannot report it, and failing to turn tokens off again costs eight
            // bytes per reply and changes no result; the cached facts read the flag back.
            let _ = self.client.handle.set_cas(false);
        }
    }
}
