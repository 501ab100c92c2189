//! [`Handle`]: the one owner of a `memcached_st`, and where a call's return code becomes an error.

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use libmemcached_sys as sys;

use super::Rc;
use super::code::ReturnCode;
use super::fetch::ResultStruct;
use super::message::{clean_message, foreign_service};
use crate::error::{Error, Result};
use crate::server::{Address, ServerSpec, Transport};

/// One libmemcached handle. `Send` (a handle may move between threads) but not `Sync` (it must
/// never be used by two at once); it never moves in memory, since libmemcached keeps pointers
/// into it.
pub(crate) struct Handle {
    raw: NonNull<sys::memcached_st>,
    facts: Cell<Facts>,
    servers: RefCell<Vec<Address>>,
    /// The result struct fetches reuse (see [`Handle::lend_result`]).
    result: Cell<Option<ResultStruct>>,
    /// The last write or counter was answered with a value (see `Handle::answered_by`).
    pub(super) value_reply: Cell<bool>,
    /// The relay every connection goes through (`ClientBuilder::shield`, `tls`).
    #[cfg(feature = "shield")]
    pub(super) relay: Option<std::sync::Arc<crate::relay::Relay>>,
    /// Each server's address list through the relay (see `route.rs`).
    #[cfg(feature = "shield")]
    pub(super) routes: RefCell<Vec<Option<super::route::Route>>>,
}

/// What every operation needs to know, cached when behaviors, servers or the namespace change
/// instead of asked of C on every call.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Facts {
    pub binary: bool,
    pub udp: bool,
    pub noreply: bool,
    /// CAS tokens are read on every get (`SUPPORT_CAS`).
    pub cas: bool,
    pub namespace_len: usize,
    /// The servers are proxies (twemproxy) rather than memcached: set by the client, not read
    /// from C.
    pub proxy: bool,
}

// SAFETY: a memcached_st holds no thread-local state and shares no pointers with other handles
// (clones copy everything), so it may move to another thread, and with it the result struct it
// keeps, which points only to it. `Handle` is not `Sync` (the
// `Cell` sees to that), so it is never used from two threads at once.
unsafe impl Send for Handle {}

fn allocation_failed(what: &str) -> Error {
    Error::Memcached {
        code: ReturnCode::MemoryAllocationFailure,
        message: format!("{what} failed"),
        key: None,
        server: None,
    }
}

impl Handle {
    /// Takes ownership of a handle from `memcached_create`, `memcached()` or `memcached_clone`.
    fn own(raw: *mut sys::memcached_st, what: &str) -> Result<Handle> {
        let raw = NonNull::new(raw).ok_or_else(|| allocation_failed(what))?;
        if let Err(error) = super::check_library() {
            // SAFETY: the handle was just created and is not used elsewhere; freeing it touches
            // no private field.
            unsafe { sys::memcached_free(raw.as_ptr()) };
            return Err(error);
        }
        let handle = Handle {
            raw,
            facts: Cell::default(),
            servers: RefCell::default(),
            result: Cell::new(None),
            value_reply: Cell::new(false),
            #[cfg(feature = "shield")]
            relay: None,
            #[cfg(feature = "shield")]
            routes: RefCell::default(),
        };
        handle.refresh();
        Ok(handle)
    }

    /// An empty handle with libmemcached's defaults.
    pub(crate) fn new() -> Result<Handle> {
        // SAFETY: a NULL argument asks libmemcached for a new heap handle, which we own.
        Handle::own(
            unsafe { sys::memcached_create(std::ptr::null_mut()) },
            "memcached_create",
        )
    }

    /// A handle from a configuration string already accepted by
    /// [`check_configuration`](super::check_configuration).
    pub(crate) fn from_config(config: &str) -> Result<Handle> {
        // SAFETY: the pointer and length describe `config`; a non-NULL result is ours.
        Handle::own(
            unsafe { sys::memcached(config.as_ptr().cast(), config.len()) },
            "memcached()",
        )
    }

    /// A new handle with the same servers, behaviors, namespace and credentials, and no
    /// connections.
    pub(crate) fn try_clone(&self) -> Result<Handle> {
        // SAFETY: a NULL destination asks libmemcached for a new heap handle, which we own.
        let clone = Handle::own(
            unsafe { sys::memcached_clone(std::ptr::null_mut(), self.as_ptr()) },
            "memcached_clone",
        )?;
        #[cfg(feature = "shield")]
        let clone = clone.through_relay_of(self)?;
        clone.set_proxy(self.facts().proxy);
        // memcached_clone turns weighted ketama on whenever a server weighs more than 1, so a
        // clone could place keys elsewhere than its original (found by fuzzing from_config).
        clone.copy_ketama_weighting(self)?;
        Ok(clone)
    }

    pub(super) fn as_ptr(&self) -> *mut sys::memcached_st {
        self.raw.as_ptr()
    }

    /// Re-reads the cached facts and servers.
    fn refresh(&self) {
        let flag = |f| self.behavior(f) != 0;
        let mut rc = sys::MEMCACHED_SUCCESS;
        // SAFETY: the handle is valid; the namespace callback returns NULL or a NUL-terminated
        // string owned by the handle, measured at once.
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
        let udp = flag(sys::MEMCACHED_BEHAVIOR_USE_UDP);
        self.facts.set(Facts {
            binary: flag(sys::MEMCACHED_BEHAVIOR_BINARY_PROTOCOL),
            udp,
            noreply: flag(sys::MEMCACHED_BEHAVIOR_NOREPLY),
            cas: flag(sys::MEMCACHED_BEHAVIOR_SUPPORT_CAS),
            namespace_len,
            proxy: self.facts.get().proxy,
        });
        let servers = (0..self.instance_count())
            .map(|i| self.address_of(self.instance(i), udp))
            .collect();
        self.servers.replace(servers);
    }

    /// The cached facts.
    #[inline]
    pub(crate) fn facts(&self) -> Facts {
        self.facts.get()
    }

    // ---- behaviors and configuration ------------------------------------------------------

    /// A behavior's raw value.
    pub(crate) fn behavior(&self, flag: sys::memcached_behavior_t) -> u64 {
        // SAFETY: `flag` is one of libmemcached's behavior constants, below MAX.
        unsafe { sys::memcached_behavior_get(self.as_ptr(), flag) }
    }

    /// Sets a behavior's raw value, checked by the caller for this flag.
    pub(crate) fn set_behavior(&self, flag: sys::memcached_behavior_t, value: u64) -> Rc {
        // SAFETY: `flag` is a behavior constant and `value` was checked against what libmemcached
        // accepts for it without asserting.
        let rc = unsafe { sys::memcached_behavior_set(self.as_ptr(), flag, value) };
        self.refresh();
        Rc(rc)
    }

    /// Turns CAS tokens on or off (`SUPPORT_CAS`), which changes nothing else.
    pub(crate) fn set_cas(&self, on: bool) -> Rc {
        // SAFETY: SUPPORT_CAS takes a boolean.
        let rc = unsafe {
            sys::memcached_behavior_set(
                self.as_ptr(),
                sys::MEMCACHED_BEHAVIOR_SUPPORT_CAS,
                on.into(),
            )
        };
        self.facts.set(Facts {
            cas: self.behavior(sys::MEMCACHED_BEHAVIOR_SUPPORT_CAS) != 0,
            ..self.facts.get()
        });
        Rc(rc)
    }

    /// Records that the servers are proxies, which libmemcached does not know.
    pub(crate) fn set_proxy(&self, proxy: bool) {
        self.facts.set(Facts {
            proxy,
            ..self.facts.get()
        });
    }

    /// Sets the namespace (libmemcached's `MEMCACHED_CALLBACK_NAMESPACE`), which it copies.
    pub(crate) fn set_namespace(&self, namespace: &CStr) -> Rc {
        // SAFETY: a NUL-terminated string, which libmemcached copies.
        let rc = unsafe {
            sys::memcached_callback_set(
                self.as_ptr(),
                sys::MEMCACHED_CALLBACK_NAMESPACE,
                namespace.as_ptr().cast(),
            )
        };
        self.refresh();
        Rc(rc)
    }

    /// Gives SASL credentials to libmemcached, which switches to the binary protocol.
    pub(crate) fn set_sasl(&self, username: &CStr, password: &CStr) -> Rc {
        // SAFETY: both are NUL-terminated strings, which libmemcached copies (and frees in
        // memcached_free; memcached_clone copies them again).
        let rc = unsafe {
            sys::memcached_set_sasl_auth_data(self.as_ptr(), username.as_ptr(), password.as_ptr())
        };
        self.refresh();
        Rc(rc)
    }

    /// Whether SASL credentials are set.
    pub(crate) fn has_sasl(&self) -> bool {
        // SAFETY: the callbacks pointer is only compared with NULL.
        !unsafe { sys::memcached_get_sasl_callbacks(self.as_ptr()) }.is_null()
    }

    /// Adds a server.
    pub(crate) fn add_server(&self, spec: &ServerSpec) -> Result<Rc> {
        let host = CString::new(spec.host()).map_err(|_| Error::InvalidServerSpec {
            spec: spec.to_string(),
            reason: "contains a NUL byte".into(),
        })?;
        // SAFETY: `host` is a NUL-terminated string that libmemcached copies.
        let rc = unsafe {
            match spec.transport() {
                Transport::Unix => sys::memcached_server_add_unix_socket_with_weight(
                    self.as_ptr(),
                    host.as_ptr(),
                    spec.weight(),
                ),
                Transport::Tcp | Transport::Udp => sys::memcached_server_add_with_weight(
                    self.as_ptr(),
                    host.as_ptr(),
                    spec.port(),
                    spec.weight(),
                ),
            }
        };
        self.refresh();
        Ok(Rc(rc))
    }

    // ---- servers --------------------------------------------------------------------------

    /// The configured servers, in server order.
    pub(crate) fn servers(&self) -> std::cell::Ref<'_, Vec<Address>> {
        self.servers.borrow()
    }

    /// How many servers there are.
    pub(crate) fn server_count(&self) -> usize {
        self.servers.borrow().len()
    }

    fn instance_count(&self) -> u32 {
        // SAFETY: the handle is valid.
        unsafe { sys::memcached_server_count(self.as_ptr()) }
    }

    /// The instance of server `i`. libmemcached does not check the position, so this does.
    ///
    /// # Panics
    ///
    /// If there is no server `i` (a bug in the crate, never an input).
    pub(super) fn instance(&self, i: u32) -> *const sys::memcached_instance_st {
        let count = self.instance_count();
        assert!(i < count, "server {i} of {count}");
        // SAFETY: `i` is below the server count, so the instance exists.
        unsafe { sys::memcached_server_instance_by_position(self.as_ptr(), i) }
    }

    /// The position of an instance of this handle.
    pub(super) fn position_of(&self, instance: *const sys::memcached_instance_st) -> Option<usize> {
        (0..self.instance_count()).position(|i| self.instance(i) == instance)
    }

    fn address_of(&self, instance: *const sys::memcached_instance_st, udp: bool) -> Address {
        // SAFETY: the instance belongs to this handle and is valid until servers change; name
        // and type are NUL-terminated strings it owns, copied at once.
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
            _ if udp => Transport::Udp,
            _ => Transport::Tcp,
        };
        Address::new(transport, host.to_string_lossy().into_owned(), port)
    }

    /// The position of the server `key` maps to.
    pub(crate) fn server_index(&self, key: &[u8]) -> usize {
        // SAFETY: the key describes a live slice; the handle is valid.
        let hash =
            unsafe { sys::memcached_generate_hash(self.as_ptr(), key.as_ptr().cast(), key.len()) };
        hash as usize
    }

    /// The server `key` maps to, as libmemcached routes a request for it now (dead servers
    /// skipped).
    pub(crate) fn server_for_key(&self, key: &[u8]) -> Result<Address> {
        let mut rc = sys::MEMCACHED_SUCCESS;
        // SAFETY: the key describes a live slice; rc is a valid local.
        let instance = unsafe {
            sys::memcached_server_by_key(self.as_ptr(), key.as_ptr().cast(), key.len(), &mut rc)
        };
        match self.position_of(instance) {
            Some(i) => Ok(self.servers.borrow()[i].clone()),
            None => Err(self.error(Rc(rc), None)),
        }
    }

    /// The error libmemcached recorded for server `i` in the current request (see
    /// [`Handle::server_failed`]); if it recorded none, an error with `fallback`'s code and
    /// message (never one whose code is `SUCCESS`, nor an earlier request's error).
    pub(crate) fn server_error(&self, i: usize, fallback: (ReturnCode, &str)) -> Error {
        let server = Some(self.servers.borrow()[i].clone());
        if !self.server_failed(i) {
            return Error::Memcached {
                code: fallback.0,
                message: fallback.1.to_owned(),
                key: None,
                server,
            };
        }
        let instance = self.instance(i as u32);
        // SAFETY: the instance is valid during the call; its message is a NUL-terminated string
        // it owns, copied at once.
        let (rc, message) = unsafe {
            let message = sys::memcached_server_error(instance);
            let message = (!message.is_null())
                .then(|| CStr::from_ptr(message).to_string_lossy().into_owned());
            (sys::memcached_server_error_return(instance), message)
        };
        let mut code = ReturnCode::from_raw(rc);
        let mut message = message.map_or_else(|| code.to_string(), |m| clean_message(&m));
        self.add_relay_failure(&mut code, &mut message, server.as_ref());
        Error::Memcached {
            code,
            message,
            key: None,
            server,
        }
    }

    /// Whether server `i` failed in the current request (the last call that started one):
    /// libmemcached keeps a server's last error until another replaces it, so an error recorded
    /// in an earlier request does not count, where its request can be told (see
    /// [`Handle::error_request`]).
    pub(crate) fn server_failed(&self, i: usize) -> bool {
        let instance = self.instance(i as u32);
        // SAFETY: the instance is valid during the call.
        let rc = unsafe { sys::memcached_server_error_return(instance) };
        if rc == sys::MEMCACHED_SUCCESS {
            return false;
        }
        // SAFETY: the handle is valid.
        let current = unsafe { sys::memcached_query_id(self.as_ptr()) };
        self.error_request(instance, rc)
            .is_none_or(|request| request == current)
    }

    /// The code of the newest error libmemcached recorded for server `i`.
    pub(crate) fn server_error_code(&self, i: usize) -> ReturnCode {
        // SAFETY: the instance is valid during the call.
        ReturnCode::from_raw(unsafe { sys::memcached_server_error_return(self.instance(i as u32)) })
    }

    /// Whether server `i` has an open connection: `None` where that cannot be told (a unix
    /// socket). libmemcached closes a connection when a read from it fails, and keeps it when
    /// the server's replies end.
    pub(crate) fn is_connected(&self, i: usize) -> Option<bool> {
        let instance = self.instance(i as u32);
        // SAFETY: the instance is valid during the call; both only read it (srcport asks the
        // OS for the socket's local address).
        unsafe {
            let kind = CStr::from_ptr(sys::memcached_server_type(instance));
            (kind.to_bytes() != b"SOCKET").then(|| sys::memcached_server_srcport(instance) != 0)
        }
    }

    /// Closes every connection; the next operation reconnects.
    pub(crate) fn quit(&self) {
        // SAFETY: the handle is valid.
        unsafe { sys::memcached_quit(self.as_ptr()) }
    }

    /// Closes every connection because their replies may be out of step (`why`); the next
    /// operation reconnects.
    #[cold]
    pub(crate) fn reset_connections(&self, why: &dyn std::fmt::Display) {
        self.quit();
        crate::trace::reconnect(why);
    }

    /// Whether a call that may connect can be made (always, without the relay).
    #[cfg(not(feature = "shield"))]
    #[inline(always)]
    pub(super) fn routed(&self) -> bool {
        true
    }

    // ---- return codes ---------------------------------------------------------------------

    /// A call's return code as a `Result`. Success codes are `Ok(Success)`; the
    /// codes in `answers` are answers the caller branches on (`NotFound`, `NotStored`,
    /// `DataExists`) and come back as they are; every other code is an error with
    /// libmemcached's message and the server, returned after resetting the connections when the
    /// replies may be out of step.
    #[inline]
    pub(crate) fn check(
        &self,
        rc: Rc,
        answers: &[ReturnCode],
        key: Option<&[u8]>,
    ) -> Result<ReturnCode> {
        match rc.is_success() {
            true => Ok(ReturnCode::Success),
            false => self.answer_or_error(rc, answers, key),
        }
    }

    #[cold]
    fn answer_or_error(
        &self,
        rc: Rc,
        answers: &[ReturnCode],
        key: Option<&[u8]>,
    ) -> Result<ReturnCode> {
        let code = rc.code();
        if answers.contains(&code) {
            return Ok(code);
        }
        Err(self.error(rc, key))
    }

    /// The error for `rc`, after resetting the connections if their replies may be out of step.
    pub(crate) fn error(&self, rc: Rc, key: Option<&[u8]>) -> Error {
        let error = self.describe_error(rc, key);
        if rc.code().needs_reset() {
            self.reset_connections(&rc.code());
        }
        error
    }

    /// The error libmemcached logged in the current request, with its own code, message and
    /// server, or the error for `rc` if it logged none. Leaves the connections as they are.
    pub(crate) fn logged_error(&self, rc: Rc, key: &[u8]) -> Error {
        let rc = match self.last_error() {
            ReturnCode::Success => rc,
            logged => Rc(logged.to_raw()),
        };
        self.describe_error(rc, Some(key))
    }

    /// The error for `rc` with libmemcached's message and the server, leaving the connections
    /// as they are.
    pub(crate) fn describe_error(&self, rc: Rc, key: Option<&[u8]>) -> Error {
        let mut code = rc.code();
        if code == ReturnCode::NotFound {
            return Error::NotFound {
                key: key.unwrap_or_default().to_vec(),
            };
        }
        // SAFETY: the handle is valid; the last message is a NUL-terminated string owned by the
        // handle, copied before any other call.
        let message = unsafe {
            if sys::memcached_last_error(self.as_ptr()) == rc.0 {
                CStr::from_ptr(sys::memcached_last_error_message(self.as_ptr()))
                    .to_string_lossy()
                    .into_owned()
            } else {
                code.to_string()
            }
        };
        let server = self
            .server_in_message(&message)
            .or_else(|| key.and_then(|k| self.server_for_key(k).ok()));
        let mut message = clean_message(&message);
        if code == ReturnCode::ProtocolError && self.value_reply.take() {
            message = "the reply to a write or counter was a value (an answer to another request: \
                       a server or proxy out of step)"
                .to_owned();
        }
        if code == ReturnCode::UnknownReadFailure {
            if let Some(service) = foreign_service(&message) {
                message.push_str(&format!(": the server speaks {service}, not memcached"));
            }
        }
        self.add_relay_failure(&mut code, &mut message, server.as_ref());
        if code == ReturnCode::ServerError && self.facts().proxy {
            // twemproxy answers for a backend it cannot reach with SERVER_ERROR and the errno's
            // text, which alone reads as if the proxy itself had failed.
            message.push_str(
                " (from the proxy: the memcached server behind it that holds the key failed)",
            );
        }
        Error::Memcached {
            code,
            message,
            key: key.map(<[u8]>::to_vec),
            server,
        }
    }

    /// Adds to a server's error message what the relay saw go wrong with the server: why a
    /// connection closed (TLS, the shield) where libmemcached only saw it close. A connection
    /// libmemcached could not make because the relay cannot reach the server (see
    /// `route.rs`) is a connection failure, as it would be without the relay.
    fn add_relay_failure(
        &self,
        code: &mut ReturnCode,
        message: &mut String,
        server: Option<&Address>,
    ) {
        #[cfg(feature = "shield")]
        if let Some(relay) = &self.relay {
            if *code == ReturnCode::Errno && super::route::is_unreachable_message(message) {
                *code = ReturnCode::ConnectionFailure;
                *message = "CONNECTION FAILURE, the server cannot be reached".into();
            }
            if !relay.is_running() {
                message.push_str(": the relay has stopped");
            } else if let Some(why) = server.and_then(|s| {
                relay.failure(&crate::relay::Upstream {
                    host: s.host().to_owned(),
                    port: s.port(),
                })
            }) {
                message.push_str(": ");
                message.push_str(&why);
            }
        }
        #[cfg(not(feature = "shield"))]
        let _ = (code, message, server);
    }

    /// The code of the last error libmemcached recorded on this handle.
    pub(crate) fn last_error(&self) -> ReturnCode {
        // SAFETY: the handle is valid.
        ReturnCode::from_raw(unsafe { sys::memcached_last_error(self.as_ptr()) })
    }

    /// The configured server a libmemcached error message names (` host: 127.0.0.1:11211`,
    /// ` host: ::1:11211`, ` socket: /path`).
    fn server_in_message(&self, message: &str) -> Option<Address> {
        let word = |tag: &str| {
            let rest = &message[message.find(tag)? + tag.len()..];
            let word = rest.split_whitespace().next()?.trim_end_matches(',');
            (!word.is_empty()).then_some(word)
        };
        let named = |host: &str, port: u16| {
            self.servers
                .borrow()
                .iter()
                .find(|a| a.host() == host && a.port() == port)
                .cloned()
        };
        if let Some(path) = word("socket: ") {
            return named(path, 0);
        }
        let (host, port) = word("host: ")?.rsplit_once(':')?;
        named(host, port.parse().ok()?)
    }
}

impl Handle {
    /// Takes the result struct kept between fetches, if any.
    #[inline]
    pub(super) fn take_kept_result(&self) -> Option<ResultStruct> {
        self.result.take()
    }

    /// Keeps a result struct for the next fetch.
    #[inline]
    pub(super) fn keep_result(&self, result: ResultStruct) {
        self.result.set(Some(result));
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The kept result frees its buffer through the handle: before the handle goes.
        drop(self.result.take());
        #[cfg(feature = "shield")]
        self.unroute();
        // SAFETY: the handle came from libmemcached, is owned by this value alone and is not
        // used after this.
        unsafe { sys::memcached_free(self.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_a_configured_server() {
        let raw = "(0x55d0c0a0) CONNECTION FAILURE,  host: 127.0.0.1:22199 -> ./src/libmemcached/get.cc:233";
        let handle = Handle::new().unwrap();
        for spec in ["127.0.0.1:22199", "[::1]:11211", "/tmp/mc.sock"] {
            let rc = handle.add_server(&spec.parse().unwrap()).unwrap();
            assert_eq!(rc, Rc::SUCCESS);
        }
        let named = |m: &str| handle.server_in_message(m).map(|a| a.to_string());
        assert_eq!(named(raw).as_deref(), Some("127.0.0.1:22199"));
        assert_eq!(named("NOT FOUND"), None);
        assert_eq!(
            named("CONNECTION FAILURE, host: ::1:11211 -> x").as_deref(),
            Some("[::1]:11211")
        );
        assert_eq!(
            named("SYSTEM ERROR(No such file), socket: /tmp/mc.sock -> x").as_deref(),
            Some("/tmp/mc.sock")
        );
        assert_eq!(named("CONNECTION FAILURE, host: 127.0.0.1:1 -> x"), None);
    }
}
