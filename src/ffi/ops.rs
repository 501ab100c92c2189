//! Single-key calls: storage commands, cas, delete, touch, counters, flush and version (gets
//! go through the fetch loop, `fetch::fetch_one`).
//! Each passes the key itself as the group key (libmemcached's `*_by_key` calls) and returns the
//! code for [`Handle::check`].

use std::ffi::c_char;

use libmemcached_sys as sys;

use super::{Handle, Rc, internals};

/// A storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

/// Which way a counter moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    Incr,
    Decr,
}

impl Counter {
    /// The name of the operation with an initial value.
    pub(crate) fn with_initial(self) -> &'static str {
        match self {
            Counter::Incr => "incr_with_initial",
            Counter::Decr => "decr_with_initial",
        }
    }
}

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
}

/// A server's `major.minor.micro` version.
pub(crate) type Version = (u8, u8, u8);

impl Handle {
    /// Runs a write or counter `call`: a value reply (which libmemcached takes for the call's
    /// answer) becomes a protocol error, its message made by `Handle::describe_error`.
    #[inline]
    fn answered_by(&self, call: impl FnOnce() -> sys::memcached_return_t) -> Rc {
        if !self.routed() {
            return Rc::UNROUTED;
        }
        // SAFETY: the handle is live, and used by this thread alone (`Handle` is not `Sync`).
        unsafe { internals::arm_reply(self.as_ptr()) };
        let rc = call();
        // SAFETY: as above.
        if unsafe { internals::reply_was_value(self.as_ptr()) } {
            self.value_reply.set(true);
            return Rc(sys::MEMCACHED_PROTOCOL_ERROR);
        }
        Rc(rc)
    }

    /// Sends one storage command.
    #[inline]
    pub(crate) fn store(
        &self,
        op: Store,
        key: &[u8],
        data: &[u8],
        exp: libc::time_t,
        flags: u32,
    ) -> Rc {
        let (k, n) = (key.as_ptr().cast(), key.len());
        // SAFETY: the function is one of libmemcached's storage calls; key and value pointers
        // describe live slices for the whole call.
        self.answered_by(|| unsafe {
            op.function()(
                self.as_ptr(),
                k,
                n,
                k,
                n,
                data.as_ptr().cast(),
                data.len(),
                exp,
                flags,
            )
        })
    }

    /// Sends a cas command.
    pub(crate) fn cas(
        &self,
        key: &[u8],
        data: &[u8],
        exp: libc::time_t,
        flags: u32,
        cas: u64,
    ) -> Rc {
        let (k, n) = (key.as_ptr().cast(), key.len());
        // SAFETY: key and value pointers describe live slices for the whole call.
        self.answered_by(|| unsafe {
            sys::memcached_cas_by_key(
                self.as_ptr(),
                k,
                n,
                k,
                n,
                data.as_ptr().cast(),
                data.len(),
                exp,
                flags,
                cas,
            )
        })
    }

    /// Deletes `key` on the server of `group` (the key itself, except for probes).
    pub(crate) fn delete(&self, group: &[u8], key: &[u8]) -> Rc {
        // SAFETY: both pointers and lengths describe live slices.
        self.answered_by(|| unsafe {
            sys::memcached_delete_by_key(
                self.as_ptr(),
                group.as_ptr().cast(),
                group.len(),
                key.as_ptr().cast(),
                key.len(),
                0,
            )
        })
    }

    /// Sets a new expiration on `key`.
    pub(crate) fn touch(&self, key: &[u8], exp: libc::time_t) -> Rc {
        let (k, n) = (key.as_ptr().cast(), key.len());
        // SAFETY: the key pointer and length describe a live slice.
        self.answered_by(|| unsafe { sys::memcached_touch_by_key(self.as_ptr(), k, n, k, n, exp) })
    }

    /// Moves a counter; the new value comes with the code. With `initial` (binary protocol
    /// only) a missing counter is created with that value and expiration.
    pub(crate) fn arith(
        &self,
        counter: Counter,
        key: &[u8],
        delta: u64,
        initial: Option<(u64, libc::time_t)>,
    ) -> (Rc, u64) {
        let (k, n) = (key.as_ptr().cast(), key.len());
        let mut value = 0;
        // SAFETY: the key describes a live slice and is its own group key; `value` is a valid
        // local.
        let rc = self.answered_by(|| unsafe {
            match (counter, initial) {
                (Counter::Incr, None) => {
                    sys::memcached_increment_by_key(self.as_ptr(), k, n, k, n, delta, &mut value)
                }
                (Counter::Decr, None) => {
                    sys::memcached_decrement_by_key(self.as_ptr(), k, n, k, n, delta, &mut value)
                }
                (Counter::Incr, Some((initial, exp))) => {
                    sys::memcached_increment_with_initial_by_key(
                        self.as_ptr(),
                        k,
                        n,
                        k,
                        n,
                        delta,
                        initial,
                        exp,
                        &mut value,
                    )
                }
                (Counter::Decr, Some((initial, exp))) => {
                    sys::memcached_decrement_with_initial_by_key(
                        self.as_ptr(),
                        k,
                        n,
                        k,
                        n,
                        delta,
                        initial,
                        exp,
                        &mut value,
                    )
                }
            }
        });
        (rc, value)
    }

    /// Flushes every server, after `delay` seconds.
    pub(crate) fn flush(&self, delay: libc::time_t) -> Rc {
        if !self.routed() {
            return Rc::UNROUTED;
        }
        // SAFETY: the handle is valid; flush takes no pointers.
        Rc(unsafe { sys::memcached_flush(self.as_ptr(), delay) })
    }

    /// Sends what buffered writes are waiting.
    pub(crate) fn flush_buffers(&self) -> Rc {
        if !self.routed() {
            return Rc::UNROUTED;
        }
        // SAFETY: the handle is valid.
        Rc(unsafe { sys::memcached_flush_buffers(self.as_ptr()) })
    }

    /// Asks every server its version; each server's `major.minor.micro`, or `None` where it
    /// did not answer.
    pub(crate) fn versions(&self) -> (Rc, Vec<Option<Version>>) {
        if !self.routed() {
            return (Rc::UNROUTED, vec![None; self.server_count()]);
        }
        // SAFETY: the handle is valid.
        let rc = Rc(unsafe { sys::memcached_version(self.as_ptr()) });
        let versions = (0..self.server_count() as u32)
            .map(|i| {
                let instance = self.instance(i);
                // SAFETY: the instance is valid while no server is added.
                let version = unsafe {
                    (
                        sys::memcached_server_major_version(instance),
                        sys::memcached_server_minor_version(instance),
                        sys::memcached_server_micro_version(instance),
                    )
                };
                (version.0 != u8::MAX).then_some(version)
            })
            .collect();
        (rc, versions)
    }
}
