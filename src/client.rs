//! [`Client`]: owns one libmemcached handle; single-key operations.

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use libmemcached_sys as sys;

use crate::behavior::Behavior;
use crate::builder::ClientBuilder;
use crate::compression::{self, Compressed, Compression, DEFAULT_MAX_INFLATED_LEN};
use crate::error::{Error, Result};
use crate::expiration::Expiration;
use crate::ffi::{self, Counter, Handle, Rc, ReturnCode, Store, clean_message, fetch};
use crate::key;
use crate::server::Address;
use crate::value::{Encoded, FromValue, ToValue, flags};

/// A memcached client: one libmemcached handle and its connections.
///
/// Connections open lazily, on the first operation that needs a server. A miss is `Ok(None)`;
/// results are the same in the ASCII and binary protocols.
///
/// Over UDP (`udp:host:port` servers) only writes work, and they are fire-and-forget:
/// libmemcached 1.1 reads no replies there, so `set`, `add`, `replace`, `append`, `prepend`,
/// `cas`, `delete` and `flush_all` report success once sent, whether or not the server stored
/// anything, and everything whose result is in a reply (`get`, `gets`, `get_multi`, `incr`,
/// `decr`, `touch`, `stats`, `version`) is a [`ReturnCode::NotSupported`] error, refused before
/// anything is sent.
///
/// `Client` is [`Send`] but not [`Sync`]: a libmemcached handle must never be used by two threads
/// at once. Give each thread its own client with [`Client::try_clone`].
pub struct Client {
    pub(crate) handle: Handle,
    pub(crate) settings: Settings,
    /// A second handle for bulk loads (noreply, buffered), made on first use and dropped when a
    /// behavior changes, so that it always maps keys to the same servers as this one.
    pub(crate) bulk: RefCell<Option<Box<crate::multi::Bulk>>>,
    /// Servers found not to demand SASL (see `sasl::AuthProbe`).
    pub(crate) auth_probe: crate::sasl::AuthProbe,
}

/// What the client does itself, beside libmemcached: compression and its limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub compression: Compression,
    pub max_inflated_len: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            compression: Compression::OFF,
            max_inflated_len: DEFAULT_MAX_INFLATED_LEN,
        }
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

/// A cas that did not happen: the key changed or is gone.
const CAS_REFUSED: &[ReturnCode] = &[ReturnCode::DataExists, ReturnCode::NotFound];

impl Client {
    /// A client for `servers`, in pylibmc's spec syntax (see [`ServerSpec`](crate::ServerSpec)),
    /// with default behaviors.
    ///
    /// ```no_run
    /// let mc = libmemcached::Client::new(["10.0.0.1:11211", "10.0.0.2:11211:2"])?;
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn new<I, S>(servers: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Client::builder().servers(servers)?.build()
    }

    /// A builder for a client with non-default behaviors.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client from a libmemcached configuration string, such as
    /// `--SERVER=10.0.0.1:11211 --SERVER=10.0.0.2 --BINARY-PROTOCOL`.
    ///
    /// Options that can abort the process or desynchronise connections (`--BUFFER-REQUESTS`,
    /// `--NOREPLY` with the binary protocol) are refused.
    pub fn from_config(config: &str) -> Result<Client> {
        let invalid = |why: String| Error::InvalidConfig(format!("{why} in {config:?}"));
        if config.trim().is_empty() || config.contains('\0') {
            return Err(invalid("an empty configuration or a NUL byte".into()));
        }
        ffi::check_configuration(config).map_err(|message| invalid(clean_message(&message)))?;
        let client = Client::from_handle(Handle::from_config(config)?);
        if client.servers().is_empty() {
            return Err(invalid("no servers".into()));
        }
        if client.behavior_raw(sys::MEMCACHED_BEHAVIOR_BUFFER_REQUESTS) != 0 {
            return Err(invalid(
                "--BUFFER-REQUESTS can abort the process under load".into(),
            ));
        }
        if client.is_binary() && client.behavior_raw(sys::MEMCACHED_BEHAVIOR_NOREPLY) != 0 {
            return Err(invalid(
                "--NOREPLY with --BINARY-PROTOCOL loses replies after any server error".into(),
            ));
        }
        // The builder's checks too: every behavior the string set, as if set by name.
        for (name, value) in client.behaviors() {
            Behavior::from_name(name, value)
                .and_then(|behavior| behavior.prepare(&client))
                .map_err(|err| invalid(err.to_string()))?;
        }
        client
            .check_behaviors()
            .map_err(|err| invalid(err.to_string()))?;
        client.set_behavior(Behavior::TcpNoDelay(true))?;
        Ok(client)
    }

    pub(crate) fn from_handle(handle: Handle) -> Client {
        Client {
            handle,
            settings: Settings::default(),
            bulk: RefCell::new(None),
            auth_probe: Default::default(),
        }
    }

    // ---- reads ---------------------------------------------------------------------------

    /// The value of `key`, or `None` if it is not there. A value of zero bytes is a hit.
    pub fn get<V: FromValue>(&self, key: impl AsRef<[u8]>) -> Result<Option<V>> {
        let key = key.as_ref();
        self.check_key(key)?;
        self.refuse_over_udp("get")?;
        let (rc, data, flags) = self.handle.get(key);
        match self.handle.check(rc, &[ReturnCode::NotFound], Some(key))? {
            ReturnCode::Success => self.decode(key, data.as_slice(), flags).map(Some),
            _ => self.check_auth_after_miss(key).map(|()| None),
        }
    }

    /// The value of `key` and its CAS token for [`Client::cas`], or `None` if it is not there.
    pub fn gets<V: FromValue>(&self, key: impl AsRef<[u8]>) -> Result<Option<(V, u64)>> {
        let key = key.as_ref();
        self.check_key(key)?;
        self.refuse_over_udp("gets")?;
        let _cas = CasTokens::on(self);
        let mut found = None;
        let failures = fetch(&self.handle, &[key], 0, |_, item| {
            found = Some(
                self.decode(key, item.value, item.flags)
                    .map(|v| (v, item.cas())),
            );
        })?;
        if !failures.is_empty() {
            return Err(Error::Multi { failures }.into_single());
        }
        match found {
            Some(found) => found.map(Some),
            None => self.check_auth_after_miss(key).map(|()| None),
        }
    }

    // ---- writes --------------------------------------------------------------------------

    /// Stores `value` under `key`.
    pub fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue,
        exp: impl Into<Expiration>,
    ) -> Result<()> {
        self.store(Store::Set, key.as_ref(), &value, exp.into())
            .map(drop)
    }

    /// Stores `value` only if `key` does not exist. `Ok(false)`: it exists.
    pub fn add(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue,
        exp: impl Into<Expiration>,
    ) -> Result<bool> {
        self.store(Store::Add, key.as_ref(), &value, exp.into())
    }

    /// Stores `value` only if `key` exists. `Ok(false)`: it does not.
    pub fn replace(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue,
        exp: impl Into<Expiration>,
    ) -> Result<bool> {
        self.store(Store::Replace, key.as_ref(), &value, exp.into())
    }

    /// Appends `value`'s bytes to the existing value of `key` (its flags stay). `Ok(false)`: the
    /// key does not exist.
    pub fn append(&self, key: impl AsRef<[u8]>, value: impl ToValue) -> Result<bool> {
        self.store(Store::Append, key.as_ref(), &value, Expiration::Never)
    }

    /// Prepends `value`'s bytes to the existing value of `key` (its flags stay). `Ok(false)`:
    /// the key does not exist.
    pub fn prepend(&self, key: impl AsRef<[u8]>, value: impl ToValue) -> Result<bool> {
        self.store(Store::Prepend, key.as_ref(), &value, Expiration::Never)
    }

    /// Stores `value` only if `key` still has the CAS token `cas` from [`Client::gets`].
    /// `Ok(false)`: the key changed or is gone.
    pub fn cas(
        &self,
        key: impl AsRef<[u8]>,
        value: impl ToValue,
        cas: u64,
        exp: impl Into<Expiration>,
    ) -> Result<bool> {
        let key = key.as_ref();
        if cas == 0 {
            // The ASCII protocol answers a zero token with ERROR; binary takes it as a plain set.
            return Err(Error::InvalidArgument(
                "a CAS token is never 0; use set".into(),
            ));
        }
        self.check_key(key)?;
        let encoded = self.encode(&value, "cas", Compress::Never)?;
        let rc = self
            .handle
            .cas(key, &encoded.data, exp.into().to_wire(), encoded.flags, cas);
        self.stored(rc, CAS_REFUSED, key, encoded.data.len())
    }

    /// Deletes `key`. `Ok(false)`: it did not exist.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        self.check_key(key)?;
        self.found(self.handle.delete(key, key), key)
    }

    /// Sets a new expiration on `key`. `Ok(false)`: it does not exist.
    pub fn touch(&self, key: impl AsRef<[u8]>, exp: impl Into<Expiration>) -> Result<bool> {
        let key = key.as_ref();
        self.check_key(key)?;
        self.refuse_over_udp("touch")?;
        self.found(self.handle.touch(key, exp.into().to_wire()), key)
    }

    // ---- counters ------------------------------------------------------------------------

    /// Adds `delta` to the number stored under `key` and returns the result, which wraps at
    /// 2^64. A missing key is [`Error::NotFound`].
    pub fn incr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<u64> {
        self.arith(Counter::Incr, key.as_ref(), delta)
    }

    /// Subtracts `delta` from the number stored under `key` and returns the result, which stops
    /// at 0. A missing key is [`Error::NotFound`].
    pub fn decr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<u64> {
        self.arith(Counter::Decr, key.as_ref(), delta)
    }

    /// Like [`Client::incr`], but a missing key is created with `initial` (and `exp`) and
    /// `initial` is returned.
    pub fn incr_with_initial(
        &self,
        key: impl AsRef<[u8]>,
        delta: u64,
        initial: u64,
        exp: impl Into<Expiration>,
    ) -> Result<u64> {
        self.arith_with_initial(Counter::Incr, key.as_ref(), delta, initial, exp.into())
    }

    /// Like [`Client::decr`], but a missing key is created with `initial` (and `exp`) and
    /// `initial` is returned.
    pub fn decr_with_initial(
        &self,
        key: impl AsRef<[u8]>,
        delta: u64,
        initial: u64,
        exp: impl Into<Expiration>,
    ) -> Result<u64> {
        self.arith_with_initial(Counter::Decr, key.as_ref(), delta, initial, exp.into())
    }

    // ---- servers -------------------------------------------------------------------------

    /// Removes every item from every server, after `delay` if given.
    pub fn flush_all(&self, delay: Option<Duration>) -> Result<()> {
        let delay = delay.map_or(0, |d| Expiration::After(d).to_wire());
        self.check(self.handle.flush(delay), None)
    }

    /// Each server's version, in server order, asked afresh (the connections are reopened).
    /// An unreachable server is an error naming it.
    pub fn version(&self) -> Result<Vec<(Address, String)>> {
        self.refuse_over_udp("version")?;
        // libmemcached asks only servers whose version it does not know yet, and forgets it
        // when a connection closes: start afresh, so a server that died since answers (or not).
        self.disconnect_all();
        let (rc, answers) = self.handle.versions();
        let servers = self.handle.servers().clone();
        let mut versions = Vec::with_capacity(servers.len());
        for (i, (server, version)) in servers.into_iter().zip(answers).enumerate() {
            match version {
                Some((major, minor, micro)) => {
                    versions.push((server, format!("{major}.{minor}.{micro}")));
                }
                None if self.handle.server_failed(i) => return Err(self.handle.server_error(i)),
                // No error recorded for the server: the call's own code says why.
                None => {
                    let code = match rc.code() {
                        ReturnCode::Success | ReturnCode::SomeErrors => {
                            ReturnCode::ConnectionFailure
                        }
                        code => code,
                    };
                    return Err(Error::Memcached {
                        code,
                        message: code.to_string(),
                        server: Some(server),
                    });
                }
            }
        }
        Ok(versions)
    }

    /// The servers this client is configured with.
    pub fn servers(&self) -> Vec<Address> {
        self.handle.servers().clone()
    }

    /// The server `key` maps to.
    pub fn server_for_key(&self, key: impl AsRef<[u8]>) -> Result<Address> {
        let key = key.as_ref();
        self.check_key(key)?;
        self.handle.server_for_key(key)
    }

    /// Closes every connection; the next operation reconnects.
    pub fn disconnect_all(&self) {
        self.handle.quit()
    }

    /// A new client with the same servers and behaviors and its own connections.
    pub fn try_clone(&self) -> Result<Client> {
        let mut clone = Client::from_handle(self.handle.try_clone()?);
        clone.settings = self.settings;
        Ok(clone)
    }

    /// Sets a behavior. Changing some behaviors (the protocol, TCP options) closes the
    /// connections.
    pub fn set_behavior(&self, behavior: Behavior) -> Result<()> {
        let Some((flag, value)) = behavior.prepare(self)? else {
            return Ok(());
        };
        self.bulk.replace(None);
        let rc = self.handle.set_behavior(flag, value);
        if rc != Rc::SUCCESS {
            return Err(Error::InvalidConfig(format!(
                "libmemcached refused {behavior:?}: {}",
                rc.code()
            )));
        }
        behavior.settle(self);
        Ok(())
    }

    /// Whether the binary protocol is on.
    pub fn is_binary(&self) -> bool {
        self.handle.facts().binary
    }

    // ---- internals -----------------------------------------------------------------------

    /// Turns CAS tokens on or off directly: unlike [`Client::set_behavior`], this keeps the
    /// bulk handle, which never reads tokens.
    fn support_cas(&self, on: bool) {
        // SUPPORT_CAS takes a boolean and cannot fail.
        let _ = self
            .handle
            .set_behavior(sys::MEMCACHED_BEHAVIOR_SUPPORT_CAS, on.into());
    }

    pub(crate) fn behavior_raw(&self, flag: sys::memcached_behavior_t) -> u64 {
        self.handle.behavior(flag)
    }

    /// Checks a key against memcached's rules for this client's protocol and namespace.
    #[inline]
    pub(crate) fn check_key(&self, key: &[u8]) -> Result<()> {
        self.key_rules().check(key)
    }

    /// The key rules in force: the namespace's length and the protocol.
    #[inline]
    pub(crate) fn key_rules(&self) -> key::Rules {
        let facts = self.handle.facts();
        key::Rules {
            namespace_len: facts.namespace_len,
            // The UDP protocol is ASCII.
            binary: facts.binary && !facts.udp,
        }
    }

    pub(crate) fn store<V: ToValue + ?Sized>(
        &self,
        op: Store,
        key: &[u8],
        value: &V,
        exp: Expiration,
    ) -> Result<bool> {
        self.check_key(key)?;
        self.store_checked(op, key, value, exp)
    }

    /// [`Client::store`] for a key already checked.
    pub(crate) fn store_checked<V: ToValue + ?Sized>(
        &self,
        op: Store,
        key: &[u8],
        value: &V,
        exp: Expiration,
    ) -> Result<bool> {
        let encoded = self.encode(value, op.name(), op.compression())?;
        let rc = self.send(op, key, &encoded, exp);
        self.stored(rc, op.not_stored(), key, encoded.data.len())
    }

    /// Sends one storage command for a checked key and an encoded value.
    pub(crate) fn send(&self, op: Store, key: &[u8], value: &Encoded<'_>, exp: Expiration) -> Rc {
        self.handle
            .store(op, key, &value.data, exp.to_wire(), value.flags)
    }

    /// Encodes a value as `op` would send it.
    pub(crate) fn encode_for<'v, V: ToValue + ?Sized>(
        &self,
        op: Store,
        value: &'v V,
    ) -> Result<Encoded<'v>> {
        self.encode(value, op.name(), op.compression())
    }

    /// Encodes a value, compressing it where the command allows.
    fn encode<'v, V: ToValue + ?Sized>(
        &self,
        value: &'v V,
        op: &str,
        compress: Compress,
    ) -> Result<Encoded<'v>> {
        let encoded = value.to_value().map_err(Error::Encode)?;
        let asked = value.compression().is_some_and(|c| !c.is_off());
        match compress {
            Compress::Allowed => value
                .compression()
                .unwrap_or(self.settings.compression)
                .apply(encoded),
            _ if asked => Err(Error::InvalidArgument(format!(
                "{op} never compresses values"
            ))),
            Compress::Joins if encoded.flags & flags::ZLIB != 0 => Err(Error::InvalidArgument(
                format!("{op} of compressed bytes would corrupt the value they join"),
            )),
            _ => Ok(encoded),
        }
    }

    /// Decodes a fetched value, inflating it first if it is compressed.
    pub(crate) fn decode<V: FromValue>(&self, key: &[u8], data: &[u8], flags: u32) -> Result<V> {
        let inflated;
        let data = if flags & flags::ZLIB != 0 {
            inflated =
                compression::inflate(data, self.settings.max_inflated_len).map_err(|reason| {
                    Error::Decompress {
                        key: key.to_vec(),
                        reason,
                    }
                })?;
            &inflated[..]
        } else {
            data
        };
        V::from_value(data, flags).map_err(|source| Error::Decode {
            key: key.to_vec(),
            flags,
            source,
        })
    }

    /// Maps a storage command's code: stored, not stored, or an error.
    fn stored(&self, rc: Rc, not_stored: &[ReturnCode], key: &[u8], len: usize) -> Result<bool> {
        match self.handle.check(rc, not_stored, Some(key)) {
            Ok(code) => Ok(code == ReturnCode::Success),
            Err(error) if error.code() == Some(ReturnCode::E2Big) => Err(Error::TooBig {
                len,
                server: self.handle.server_for_key(key).ok(),
            }),
            Err(error) => Err(error),
        }
    }

    /// `Ok(true)` on success, `Ok(false)` for a missing key, an error otherwise.
    fn found(&self, rc: Rc, key: &[u8]) -> Result<bool> {
        let code = self.handle.check(rc, &[ReturnCode::NotFound], Some(key))?;
        Ok(code == ReturnCode::Success)
    }

    fn arith(&self, counter: Counter, key: &[u8], delta: u64) -> Result<u64> {
        self.check_key(key)?;
        self.check_replies("incr and decr")?;
        self.check_auth_before_counter(key)?;
        let (rc, value) = self.handle.arith(counter, key, delta);
        self.check(rc, Some(key)).map(|()| value)
    }

    fn arith_with_initial(
        &self,
        counter: Counter,
        key: &[u8],
        delta: u64,
        initial: u64,
        exp: Expiration,
    ) -> Result<u64> {
        self.check_key(key)?;
        self.check_replies("incr and decr")?;
        if self.is_binary() {
            self.check_auth_before_counter(key)?;
            let (rc, value) =
                self.handle
                    .arith_with_initial(counter, key, delta, initial, exp.to_wire());
            return self.check(rc, Some(key)).map(|()| value);
        }
        // ASCII has no such command: add the initial value when the counter is missing. If
        // another client adds it first, our add fails and the counter now exists.
        let mut attempts = 0;
        loop {
            match self.arith(counter, key, delta) {
                Err(Error::NotFound) if attempts < 3 => {}
                other => return other,
            }
            // Stored with flags 0, as the binary protocol creates counters, and never
            // compressed: the server must be able to count on it.
            let digits = initial.to_string();
            let counter = Compressed::new(
                Encoded::borrowed(digits.as_bytes(), flags::BYTES),
                Compression::OFF,
            );
            if self.store(Store::Add, key, &counter, exp)? {
                return Ok(initial);
            }
            attempts += 1;
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
            server: None,
        })
    }

    /// `Ok(())` for success codes, the error otherwise.
    #[inline]
    pub(crate) fn check(&self, rc: Rc, key: Option<&[u8]>) -> Result<()> {
        self.handle.check(rc, &[], key).map(drop)
    }

    /// The error for `rc`, after resetting the connections if their replies may be out of step.
    pub(crate) fn error(&self, rc: Rc, key: Option<&[u8]>) -> Error {
        self.handle.error(rc, key)
    }
}

impl Clone for Client {
    /// Same as [`Client::try_clone`].
    ///
    /// # Panics
    ///
    /// If libmemcached cannot allocate the new handle.
    fn clone(&self) -> Self {
        self.try_clone().expect("memcached_clone: out of memory")
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self.servers().iter().map(Address::to_string).collect();
        f.debug_struct("Client")
            .field("servers", &servers)
            .field("binary", &self.is_binary())
            .finish()
    }
}

/// Turns CAS tokens on for the life of the guard, restoring the previous setting.
struct CasTokens<'a> {
    client: &'a Client,
    was_on: bool,
}

impl<'a> CasTokens<'a> {
    fn on(client: &'a Client) -> Self {
        let was_on = client.behavior_raw(sys::MEMCACHED_BEHAVIOR_SUPPORT_CAS) != 0;
        if !was_on {
            client.support_cas(true);
        }
        Self { client, was_on }
    }
}

impl Drop for CasTokens<'_> {
    fn drop(&mut self) {
        if !self.was_on {
            self.client.support_cas(false);
        }
    }
}
