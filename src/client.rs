//! [`Client`]: owns one libmemcached handle; single-key operations.

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, c_char};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::Duration;

use libmemcached_sys as sys;

use crate::behavior::Behavior;
use crate::builder::ClientBuilder;
use crate::compression::{self, Compressed, Compression, DEFAULT_MAX_INFLATED_LEN};
use crate::error::{Error, Result, ReturnCode};
use crate::expiration::Expiration;
use crate::fetch::fetch;
use crate::key;
use crate::server::{Server, Transport};
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
    raw: NonNull<sys::memcached_st>,
    pub(crate) settings: Settings,
    /// A second handle for bulk loads (noreply, buffered), made on first use and dropped when a
    /// behavior changes, so that it always maps keys to the same servers as this one.
    pub(crate) bulk: RefCell<Option<Box<crate::multi::Bulk>>>,
    /// Servers found not to demand SASL (see `sasl::AuthProbe`).
    pub(crate) auth_probe: crate::sasl::AuthProbe,
    _not_sync: PhantomData<Cell<()>>,
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

// SAFETY: a memcached_st holds no thread-local state and no pointers shared with other handles
// (clones copy everything), so it may move to another thread. `Client` is not `Sync`, so it is
// never used from two threads at once.
unsafe impl Send for Client {}

/// A storage command's C function (`memcached_set_by_key` and its siblings).
type StoreFn = unsafe extern "C" fn(
    *mut sys::memcached_st,
    *const c_char,
    usize,
    *const c_char,
    usize,
    *const c_char,
    usize,
    libc::time_t,
    u32,
) -> sys::memcached_return_t;

/// A storage command: its C function, the codes that mean "not stored" (the same in both
/// protocols once normalised), and whether its value may be compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

impl Store {
    fn function(self) -> StoreFn {
        match self {
            Store::Set => sys::memcached_set_by_key,
            Store::Add => sys::memcached_add_by_key,
            Store::Replace => sys::memcached_replace_by_key,
            Store::Append => sys::memcached_append_by_key,
            Store::Prepend => sys::memcached_prepend_by_key,
        }
    }

    fn not_stored(self) -> &'static [sys::memcached_return_t] {
        match self {
            Store::Set => &[],
            // ASCII says NOTSTORED, binary DATA_EXISTS.
            Store::Add => &[sys::MEMCACHED_NOTSTORED, sys::MEMCACHED_DATA_EXISTS],
            // ASCII says NOTSTORED, binary NOTFOUND.
            Store::Replace | Store::Append | Store::Prepend => {
                &[sys::MEMCACHED_NOTSTORED, sys::MEMCACHED_NOTFOUND]
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

const CAS_REFUSED: &[sys::memcached_return_t] =
    &[sys::MEMCACHED_DATA_EXISTS, sys::MEMCACHED_NOTFOUND];

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
        let mut message = [0 as c_char; 512];
        // SAFETY: the pointer and length describe `config`; the error buffer is writable for its
        // whole length, and libmemcached NUL-terminates what it writes there.
        let rc = unsafe {
            sys::libmemcached_check_configuration(
                config.as_ptr().cast(),
                config.len(),
                message.as_mut_ptr(),
                message.len(),
            )
        };
        if rc != sys::MEMCACHED_SUCCESS {
            // SAFETY: the buffer was zeroed and libmemcached writes a NUL-terminated message.
            let text = unsafe { CStr::from_ptr(message.as_ptr()) };
            return Err(invalid(clean_message(&text.to_string_lossy())));
        }
        // SAFETY: as above; a non-NULL result is a handle we now own.
        let raw = unsafe { sys::memcached(config.as_ptr().cast(), config.len()) };
        let client =
            Client::from_raw(raw).ok_or_else(|| invalid("libmemcached refused it".into()))?;
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

    /// Wraps a handle from `memcached_create`, `memcached()` or `memcached_clone`.
    pub(crate) fn from_raw(raw: *mut sys::memcached_st) -> Option<Client> {
        NonNull::new(raw).map(|raw| Client {
            raw,
            settings: Settings::default(),
            bulk: RefCell::new(None),
            auth_probe: Default::default(),
            _not_sync: PhantomData,
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::memcached_st {
        self.raw.as_ptr()
    }

    // ---- reads ---------------------------------------------------------------------------

    /// The value of `key`, or `None` if it is not there. A value of zero bytes is a hit.
    pub fn get<V: FromValue>(&self, key: impl AsRef<[u8]>) -> Result<Option<V>> {
        let key = key.as_ref();
        self.check_key(key)?;
        self.refuse_over_udp("get")?;
        let (mut len, mut flags, mut rc) = (0, 0, sys::MEMCACHED_SUCCESS);
        // SAFETY: the key pointer and length describe a live slice; the out-pointers are valid
        // locals. The returned buffer (NULL for a miss or an empty value) is ours to free.
        let data = unsafe {
            let ptr = sys::memcached_get(
                self.as_ptr(),
                key.as_ptr().cast(),
                key.len(),
                &mut len,
                &mut flags,
                &mut rc,
            );
            MallocBuf::new(ptr, len)
        };
        match rc {
            sys::MEMCACHED_SUCCESS => self.decode(key, data.as_slice(), flags).map(Some),
            sys::MEMCACHED_NOTFOUND => self.check_auth_after_miss(key).map(|()| None),
            rc => Err(self.error(rc, Some(key))),
        }
    }

    /// The value of `key` and its CAS token for [`Client::cas`], or `None` if it is not there.
    pub fn gets<V: FromValue>(&self, key: impl AsRef<[u8]>) -> Result<Option<(V, u64)>> {
        let key = key.as_ref();
        self.check_key(key)?;
        self.refuse_over_udp("gets")?;
        let _cas = CasTokens::on(self);
        let mut found = None;
        fetch(self, &[key], 0, |_, item| {
            found = Some((self.decode(key, item.value, item.flags)?, item.cas()));
            Ok(())
        })
        .map_err(Error::into_single)?;
        if found.is_none() {
            self.check_auth_after_miss(key)?;
        }
        Ok(found)
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
        // SAFETY: key and value pointers describe live slices for the whole call.
        let rc = unsafe {
            sys::memcached_cas_by_key(
                self.as_ptr(),
                key.as_ptr().cast(),
                key.len(),
                key.as_ptr().cast(),
                key.len(),
                encoded.data.as_ptr().cast(),
                encoded.data.len(),
                exp.into().to_wire(),
                encoded.flags,
                cas,
            )
        };
        self.stored(rc, CAS_REFUSED, key, encoded.data.len())
    }

    /// Deletes `key`. `Ok(false)`: it did not exist.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        self.check_key(key)?;
        // SAFETY: the key pointer and length describe a live slice.
        let rc = unsafe {
            sys::memcached_delete_by_key(
                self.as_ptr(),
                key.as_ptr().cast(),
                key.len(),
                key.as_ptr().cast(),
                key.len(),
                0,
            )
        };
        self.found(rc, key)
    }

    /// Sets a new expiration on `key`. `Ok(false)`: it does not exist.
    pub fn touch(&self, key: impl AsRef<[u8]>, exp: impl Into<Expiration>) -> Result<bool> {
        let key = key.as_ref();
        self.check_key(key)?;
        self.refuse_over_udp("touch")?;
        // SAFETY: the key pointer and length describe a live slice.
        let rc = unsafe {
            sys::memcached_touch_by_key(
                self.as_ptr(),
                key.as_ptr().cast(),
                key.len(),
                key.as_ptr().cast(),
                key.len(),
                exp.into().to_wire(),
            )
        };
        self.found(rc, key)
    }

    // ---- counters ------------------------------------------------------------------------

    /// Adds `delta` to the number stored under `key` and returns the result, which wraps at
    /// 2^64. A missing key is [`Error::NotFound`].
    pub fn incr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<u64> {
        self.arith(sys::memcached_increment_by_key, key.as_ref(), delta)
    }

    /// Subtracts `delta` from the number stored under `key` and returns the result, which stops
    /// at 0. A missing key is [`Error::NotFound`].
    pub fn decr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<u64> {
        self.arith(sys::memcached_decrement_by_key, key.as_ref(), delta)
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
        // SAFETY: the handle is valid; flush takes no pointers.
        let rc = unsafe { sys::memcached_flush(self.as_ptr(), delay) };
        self.check(rc, None)
    }

    /// Each server's version, in server order, asked afresh (the connections are reopened).
    /// An unreachable server is an error naming it.
    pub fn version(&self) -> Result<Vec<(Server, String)>> {
        self.refuse_over_udp("version")?;
        // libmemcached asks only servers whose version it does not know yet, and forgets it
        // when a connection closes: start afresh, so a server that died since answers (or not).
        self.disconnect_all();
        // SAFETY: the handle is valid.
        let rc = unsafe { sys::memcached_version(self.as_ptr()) };
        let mut versions = Vec::new();
        for (server, instance) in self.instances() {
            // SAFETY: `instance` comes from instances(), valid while no server is added.
            let (major, minor, micro) = unsafe {
                (
                    sys::memcached_server_major_version(instance),
                    sys::memcached_server_minor_version(instance),
                    sys::memcached_server_micro_version(instance),
                )
            };
            if major == u8::MAX {
                // SAFETY: as above; the message is copied before anything else runs.
                let (code, message) = unsafe {
                    (
                        sys::memcached_server_error_return(instance),
                        sys::memcached_server_error(instance),
                    )
                };
                let code = if code == sys::MEMCACHED_SUCCESS {
                    rc
                } else {
                    code
                };
                let message = match message.is_null() {
                    // SAFETY: a non-NULL message is a NUL-terminated string owned by the instance.
                    false => unsafe { CStr::from_ptr(message) }
                        .to_string_lossy()
                        .into_owned(),
                    true => ReturnCode::from_raw(code).to_string(),
                };
                return Err(Error::Memcached {
                    code: ReturnCode::from_raw(code),
                    message: clean_message(&message),
                    server: Some(server.to_string()),
                });
            }
            versions.push((server, format!("{major}.{minor}.{micro}")));
        }
        Ok(versions)
    }

    /// The servers this client is configured with.
    pub fn servers(&self) -> Vec<Server> {
        self.instances().map(|(server, _)| server).collect()
    }

    /// The server `key` maps to.
    pub fn server_for_key(&self, key: impl AsRef<[u8]>) -> Result<Server> {
        let key = key.as_ref();
        self.check_key(key)?;
        let mut rc = sys::MEMCACHED_SUCCESS;
        // SAFETY: the key pointer and length describe a live slice; rc is a valid local.
        let instance = unsafe {
            sys::memcached_server_by_key(self.as_ptr(), key.as_ptr().cast(), key.len(), &mut rc)
        };
        if instance.is_null() {
            return Err(self.error(rc, None));
        }
        // SAFETY: a non-NULL instance belongs to this handle and is valid until servers change.
        Ok(unsafe { self.server_of(instance) })
    }

    /// Closes every connection; the next operation reconnects.
    pub fn disconnect_all(&self) {
        // SAFETY: the handle is valid.
        unsafe { sys::memcached_quit(self.as_ptr()) }
    }

    /// A new client with the same servers and behaviors and its own connections.
    pub fn try_clone(&self) -> Result<Client> {
        // SAFETY: a NULL destination asks libmemcached for a new heap handle, which we own.
        let raw = unsafe { sys::memcached_clone(std::ptr::null_mut(), self.as_ptr()) };
        let mut clone = Client::from_raw(raw).ok_or_else(|| Error::Memcached {
            code: ReturnCode::MemoryAllocationFailure,
            message: "memcached_clone failed".into(),
            server: None,
        })?;
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
        // SAFETY: `flag` is one of libmemcached's behavior constants and `value` was checked.
        let rc = unsafe { sys::memcached_behavior_set(self.as_ptr(), flag, value) };
        if rc != sys::MEMCACHED_SUCCESS {
            return Err(Error::InvalidConfig(format!(
                "libmemcached refused {behavior:?}: {}",
                ReturnCode::from_raw(rc)
            )));
        }
        behavior.settle(self);
        Ok(())
    }

    /// Whether the binary protocol is on.
    pub fn is_binary(&self) -> bool {
        self.behavior_raw(sys::MEMCACHED_BEHAVIOR_BINARY_PROTOCOL) != 0
    }

    // ---- internals -----------------------------------------------------------------------

    /// Turns CAS tokens on or off directly: unlike [`Client::set_behavior`], this keeps the
    /// bulk handle, which never reads tokens.
    fn support_cas(&self, on: bool) {
        // SAFETY: SUPPORT_CAS takes a boolean and cannot fail.
        unsafe {
            sys::memcached_behavior_set(
                self.as_ptr(),
                sys::MEMCACHED_BEHAVIOR_SUPPORT_CAS,
                on.into(),
            )
        };
    }

    pub(crate) fn behavior_raw(&self, flag: sys::memcached_behavior_t) -> u64 {
        // SAFETY: `flag` is one of libmemcached's behavior constants below MAX.
        unsafe { sys::memcached_behavior_get(self.as_ptr(), flag) }
    }

    /// Checks a key against memcached's rules for this client's protocol and namespace.
    pub(crate) fn check_key(&self, key: &[u8]) -> Result<()> {
        self.key_rules().check(key)
    }

    /// The key rules in force: the namespace's length and the protocol.
    pub(crate) fn key_rules(&self) -> key::Rules {
        let mut rc = sys::MEMCACHED_SUCCESS;
        // SAFETY: the handle is valid; the namespace callback returns NULL or a NUL-terminated
        // string owned by the handle, read at once.
        let namespace_len = unsafe {
            let ns = sys::memcached_callback_get(
                self.as_ptr(),
                sys::MEMCACHED_CALLBACK_NAMESPACE,
                &mut rc,
            );
            if ns.is_null() {
                0
            } else {
                libc::strlen(ns.cast())
            }
        };
        // The UDP protocol is ASCII.
        let binary = self.is_binary() && self.behavior_raw(sys::MEMCACHED_BEHAVIOR_USE_UDP) == 0;
        key::Rules {
            namespace_len,
            binary,
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

    /// Sends one storage command for a checked key and an encoded value; returns libmemcached's
    /// code.
    pub(crate) fn send(
        &self,
        op: Store,
        key: &[u8],
        value: &Encoded<'_>,
        exp: Expiration,
    ) -> sys::memcached_return_t {
        // SAFETY: the function is one of libmemcached's storage calls; key and value pointers
        // describe live slices for the whole call. The key is its own group key.
        unsafe {
            op.function()(
                self.as_ptr(),
                key.as_ptr().cast(),
                key.len(),
                key.as_ptr().cast(),
                key.len(),
                value.data.as_ptr().cast(),
                value.data.len(),
                exp.to_wire(),
                value.flags,
            )
        }
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
    fn stored(
        &self,
        rc: sys::memcached_return_t,
        not_stored: &[sys::memcached_return_t],
        key: &[u8],
        len: usize,
    ) -> Result<bool> {
        match rc {
            sys::MEMCACHED_SUCCESS | sys::MEMCACHED_STORED | sys::MEMCACHED_BUFFERED => Ok(true),
            rc if not_stored.contains(&rc) => Ok(false),
            sys::MEMCACHED_E2BIG => Err(Error::TooBig {
                len,
                server: self.server_for_key(key).ok().map(|s| s.to_string()),
            }),
            rc => Err(self.error(rc, Some(key))),
        }
    }

    /// `Ok(true)` on success, `Ok(false)` for a missing key, an error otherwise.
    fn found(&self, rc: sys::memcached_return_t, key: &[u8]) -> Result<bool> {
        match rc {
            sys::MEMCACHED_NOTFOUND => Ok(false),
            rc => self.check(rc, Some(key)).map(|()| true),
        }
    }

    fn arith(
        &self,
        function: unsafe extern "C" fn(
            *mut sys::memcached_st,
            *const c_char,
            usize,
            *const c_char,
            usize,
            u64,
            *mut u64,
        ) -> sys::memcached_return_t,
        key: &[u8],
        delta: u64,
    ) -> Result<u64> {
        self.check_key(key)?;
        self.check_replies("incr and decr")?;
        self.check_auth_before_counter(key)?;
        let mut value = 0;
        // SAFETY: `function` is memcached_increment_by_key or memcached_decrement_by_key; the key
        // describes a live slice and is its own group key; `value` is a valid local.
        let rc = unsafe {
            function(
                self.as_ptr(),
                key.as_ptr().cast(),
                key.len(),
                key.as_ptr().cast(),
                key.len(),
                delta,
                &mut value,
            )
        };
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
            let function = match counter {
                Counter::Incr => sys::memcached_increment_with_initial_by_key,
                Counter::Decr => sys::memcached_decrement_with_initial_by_key,
            };
            let mut value = 0;
            // SAFETY: the key describes a live slice and is its own group key; `value` is a
            // valid local.
            let rc = unsafe {
                function(
                    self.as_ptr(),
                    key.as_ptr().cast(),
                    key.len(),
                    key.as_ptr().cast(),
                    key.len(),
                    delta,
                    initial,
                    exp.to_wire(),
                    &mut value,
                )
            };
            return self.check(rc, Some(key)).map(|()| value);
        }
        // ASCII has no such command: add the initial value when the counter is missing. If
        // another client adds it first, our add fails and the counter now exists.
        let arith = match counter {
            Counter::Incr => sys::memcached_increment_by_key,
            Counter::Decr => sys::memcached_decrement_by_key,
        };
        let mut attempts = 0;
        loop {
            match self.arith(arith, key, delta) {
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
        let why = if self.behavior_raw(sys::MEMCACHED_BEHAVIOR_USE_UDP) != 0 {
            "writes over UDP get none"
        } else if self.behavior_raw(sys::MEMCACHED_BEHAVIOR_NOREPLY) != 0 {
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
    pub(crate) fn check(&self, rc: sys::memcached_return_t, key: Option<&[u8]>) -> Result<()> {
        match rc {
            sys::MEMCACHED_SUCCESS
            | sys::MEMCACHED_END
            | sys::MEMCACHED_DELETED
            | sys::MEMCACHED_STORED
            | sys::MEMCACHED_BUFFERED => Ok(()),
            rc => Err(self.error(rc, key)),
        }
    }

    /// The error for `rc`, with libmemcached's message and the server. Resets the connections
    /// when the code means their replies may be out of step.
    pub(crate) fn error(&self, rc: sys::memcached_return_t, key: Option<&[u8]>) -> Error {
        let error = self.describe_error(rc, key);
        if ReturnCode::from_raw(rc).needs_reset() {
            self.disconnect_all();
        }
        error
    }

    /// The error for `rc`, leaving the connections as they are.
    pub(crate) fn describe_error(&self, rc: sys::memcached_return_t, key: Option<&[u8]>) -> Error {
        let code = ReturnCode::from_raw(rc);
        if code == ReturnCode::NotFound {
            return Error::NotFound;
        }
        // SAFETY: the handle is valid; the last message is a NUL-terminated string owned by the
        // handle, copied before any other call.
        let message = unsafe {
            if sys::memcached_last_error(self.as_ptr()) == rc {
                CStr::from_ptr(sys::memcached_last_error_message(self.as_ptr()))
                    .to_string_lossy()
                    .into_owned()
            } else {
                code.to_string()
            }
        };
        let server = server_in_message(&message).or_else(|| {
            key.and_then(|k| self.server_for_key(k).ok())
                .map(|s| s.to_string())
        });
        Error::Memcached {
            code,
            message: clean_message(&message),
            server,
        }
    }

    /// # Safety
    ///
    /// `instance` belongs to this handle, and no server was added since it was looked up.
    pub(crate) unsafe fn server_of(&self, instance: *const sys::memcached_instance_st) -> Server {
        // SAFETY: per the contract; name and type are NUL-terminated strings owned by the
        // instance.
        let (host, kind, port) = unsafe {
            (
                CStr::from_ptr(sys::memcached_server_name(instance)),
                CStr::from_ptr(sys::memcached_server_type(instance)),
                sys::memcached_server_port(instance),
            )
        };
        let transport = match kind.to_bytes() {
            b"SOCKET" => Transport::Unix,
            b"UDP" => Transport::Udp,
            // libmemcached reports servers added under USE_UDP as "TCP".
            _ if self.behavior_raw(sys::MEMCACHED_BEHAVIOR_USE_UDP) != 0 => Transport::Udp,
            _ => Transport::Tcp,
        };
        Server {
            transport,
            host: host.to_string_lossy().into_owned(),
            port,
        }
    }

    /// The libmemcached instances of the configured servers, in server order.
    pub(crate) fn instance_ptrs(
        &self,
    ) -> impl Iterator<Item = *const sys::memcached_instance_st> + '_ {
        // SAFETY: the handle is valid.
        let count = unsafe { sys::memcached_server_count(self.as_ptr()) };
        // SAFETY: `i` is below the server count, so the instance exists.
        (0..count)
            .map(move |i| unsafe { sys::memcached_server_instance_by_position(self.as_ptr(), i) })
    }

    /// The configured servers with their libmemcached instances.
    pub(crate) fn instances(
        &self,
    ) -> impl Iterator<Item = (Server, *const sys::memcached_instance_st)> + '_ {
        // SAFETY: the instance is valid while no server is added or removed.
        self.instance_ptrs()
            .map(move |instance| (unsafe { self.server_of(instance) }, instance))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: the handle came from libmemcached, is owned by this client alone and is not
        // used after this.
        unsafe { sys::memcached_free(self.as_ptr()) }
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
        let servers: Vec<String> = self.servers().iter().map(Server::to_string).collect();
        f.debug_struct("Client")
            .field("servers", &servers)
            .field("binary", &self.is_binary())
            .finish()
    }
}

/// Which way a counter moves.
#[derive(Clone, Copy)]
pub(crate) enum Counter {
    Incr,
    Decr,
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

/// A buffer allocated by libmemcached with `malloc`, freed on drop.
struct MallocBuf {
    ptr: *mut c_char,
    len: usize,
}

impl MallocBuf {
    /// # Safety
    ///
    /// `ptr` is NULL or a `malloc`ed buffer of at least `len` bytes that nothing else frees.
    unsafe fn new(ptr: *mut c_char, len: usize) -> Self {
        Self { ptr, len }
    }

    fn as_slice(&self) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: per `new`, a non-NULL buffer holds `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len) }
    }
}

impl Drop for MallocBuf {
    fn drop(&mut self) {
        // SAFETY: per `new`, the buffer is ours and came from malloc (free(NULL) is a no-op).
        unsafe { libc::free(self.ptr.cast()) }
    }
}

/// The server a libmemcached error message names (` host: 127.0.0.1:11211`, ` host: ::1:11211`,
/// ` socket: /path`), spelled as [`Server`] displays it.
pub(crate) fn server_in_message(message: &str) -> Option<String> {
    let word = |tag: &str| {
        let rest = &message[message.find(tag)? + tag.len()..];
        let word = rest.split_whitespace().next()?.trim_end_matches(',');
        (!word.is_empty()).then_some(word)
    };
    if let Some(path) = word("socket: ") {
        return Some(path.to_owned());
    }
    let (host, port) = word("host: ")?.rsplit_once(':')?;
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// libmemcached's message without the handle address in front and the source location behind:
/// `(0x55d0...) CONNECTION FAILURE, host: ... -> src/get.cc:233` becomes
/// `CONNECTION FAILURE, host: ...`.
pub(crate) fn clean_message(message: &str) -> String {
    let message = match message.strip_prefix("(0x") {
        Some(rest) => rest.split_once(") ").map_or(message, |(_, m)| m),
        None => message,
    };
    let message = message.rsplit_once(" -> ").map_or(message, |(m, _)| m);
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cleaned_and_name_the_server() {
        let raw = "(0x55d0c0a0) CONNECTION FAILURE,  host: 127.0.0.1:22199 -> ./src/libmemcached/get.cc:233";
        assert_eq!(
            clean_message(raw),
            "CONNECTION FAILURE, host: 127.0.0.1:22199"
        );
        assert_eq!(server_in_message(raw).as_deref(), Some("127.0.0.1:22199"));
        assert_eq!(server_in_message("NOT FOUND"), None);
        assert_eq!(
            server_in_message("CONNECTION FAILURE, host: ::1:11211 -> x").as_deref(),
            Some("[::1]:11211")
        );
        assert_eq!(
            server_in_message("SYSTEM ERROR(No such file), socket: /tmp/mc.sock -> x").as_deref(),
            Some("/tmp/mc.sock")
        );
        assert_eq!(clean_message("NOT FOUND"), "NOT FOUND");
    }
}
