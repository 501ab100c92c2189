//! What depends on libmemcached 1.1's internals rather than its documented API. The build
//! requires libmemcached 1.1 (see `libmemcached-sys/build.rs`), the only series these were
//! checked against; each item says what it relies on.

use std::mem::MaybeUninit;

use libmemcached_sys as sys;

use super::{Handle, Rc};
use crate::Hash;

impl Handle {
    /// Rebuilds the consistent-hashing ring. libmemcached hashes the ring's points with the key
    /// hash but does not rebuild the ring when the hash changes, so without this a hash set
    /// after the servers places keys differently from the same hash set before them (724 of
    /// 1000 keys on 3 servers). Relies on: setting SORT_HOSTS, even to its current value,
    /// reruns the distribution and changes nothing else.
    pub(crate) fn rebuild_ring(&self) -> Rc {
        let sort = self.behavior(sys::MEMCACHED_BEHAVIOR_SORT_HOSTS);
        self.set_behavior(sys::MEMCACHED_BEHAVIOR_SORT_HOSTS, sort)
    }

    /// Gives this handle (a clone) the weighting of `source`'s consistent-hashing ring, and
    /// rebuilds the ring if that changed it. Relies on: the `ketama.weighted_` field of
    /// `memcached_st`, which `memcached_clone` sets (through `memcached_instance_push`) whenever
    /// a server's weight is above 1, where the source may hash without weights (its servers were
    /// added before a consistent distribution was chosen); no behavior sets it alone.
    pub(crate) fn copy_ketama_weighting(&self, source: &Handle) -> crate::Result<()> {
        // SAFETY: both handles are valid and not used by another thread (Handle is not Sync);
        // `weighted_` is a plain bool field of the struct bindgen generated from the installed
        // headers, and `self` is a different handle from `source` (a new clone).
        let changed = unsafe {
            let weighted = (*source.as_ptr()).ketama.weighted_;
            let memc = &mut *self.as_ptr();
            let changed = memc.ketama.weighted_ != weighted;
            memc.ketama.weighted_ = weighted;
            changed
        };
        if changed {
            self.check(self.rebuild_ring(), &[], None)?;
        }
        Ok(())
    }

    /// The socket buffer sizes set on the handle (0: the OS's). Relies on: the `send_size` and
    /// `recv_size` fields of `memcached_st`, read directly because `memcached_behavior_get`
    /// connects to the first server to ask the OS.
    pub(crate) fn socket_sizes(&self) -> (i32, i32) {
        // SAFETY: the handle is valid and not used by another thread (Handle is not Sync);
        // these are plain int fields of the struct bindgen generated from the installed headers.
        unsafe {
            let memc = &*self.as_ptr();
            (memc.send_size, memc.recv_size)
        }
    }

    /// The identity of the newest entry in the handle's error log (0 when it is empty).
    /// Relies on: the `error_messages` field of `memcached_st` heads the log; libmemcached
    /// clears the log when a request starts and only prepends to it until the next, so a new
    /// entry has a new address. Read directly because it is checked after every fetched item,
    /// and `memcached_last_error_message` formats a message to say there is none.
    #[inline]
    pub(crate) fn error_log_top(&self) -> usize {
        // SAFETY: the handle is valid and not used by another thread (Handle is not Sync); only
        // the pointer's value is read, never what it points to.
        unsafe { (*self.as_ptr()).error_messages as usize }
    }

    /// The request in which libmemcached recorded the newest error of `instance` (whose code is
    /// `rc`, not SUCCESS), to compare with `memcached_query_id`; `None` if it cannot be told.
    /// Relies on: `memcached_server_error` returns the `message` field of the instance's newest
    /// error record, a `memcached_error_t` (error.cc: `root`, `query_id`, `next`, `rc`,
    /// `local_errno`, `size`, then `message`), except for a record without a message, for which
    /// it returns `memcached_strerror(rc)`'s static text; the record's `root` is the handle and
    /// its `query_id` the request it was recorded in. A message that is the static text, or a
    /// record whose `root` is not this handle, is `None`.
    pub(crate) fn error_request(
        &self,
        instance: *const sys::memcached_instance_st,
        rc: sys::memcached_return_t,
    ) -> Option<u64> {
        /// The fields of `memcached_error_t` before `message`.
        #[repr(C)]
        struct ErrorHeader {
            root: *const sys::memcached_st,
            query_id: u64,
            next: *const std::ffi::c_void,
            rc: std::ffi::c_int,
            local_errno: std::ffi::c_int,
            size: usize,
        }
        // SAFETY: the instance belongs to this handle and has an error recorded (rc is its
        // code); both calls only read. `memcached_strerror` returns a static string per code.
        let (message, fixed) = unsafe {
            (
                sys::memcached_server_error(instance),
                sys::memcached_strerror(self.as_ptr(), rc),
            )
        };
        if message.is_null() || message == fixed {
            return None;
        }
        // SAFETY: per the above, a message that is not the static text is the `message` field
        // of a live `memcached_error_t`, so the header lies right before it in the same
        // allocation; it is read (unaligned, by value) before any other call into C.
        let header = unsafe {
            message
                .cast::<u8>()
                .sub(std::mem::size_of::<ErrorHeader>())
                .cast::<ErrorHeader>()
                .read_unaligned()
        };
        (header.root == self.as_ptr().cast_const()).then_some(header.query_id)
    }

    /// How many replies each server still owes (`memcached_server_response_count`), as
    /// `owed(position, count)`: read after every fetch of a multi-get, so one pass.
    #[inline]
    pub(crate) fn replies_owed(&self, mut owed: impl FnMut(usize, u32)) {
        // SAFETY: the handle is valid; every position is below the server count, so each
        // instance exists, and is only read.
        unsafe {
            let memc = self.as_ptr();
            for i in 0..sys::memcached_server_count(memc) {
                let instance = sys::memcached_server_instance_by_position(memc, i);
                owed(i as usize, sys::memcached_server_response_count(instance));
            }
        }
    }
}

/// The key, value and flags of a fetched result, read from its fields rather than through
/// `memcached_result_key_value` and its four siblings (one call each, for every item of every
/// multi-get). Relies on: `memcached_result_st` keeps the key in `item_key[..key_length]` and
/// the value in the string `value` (`string..end`), as those functions read them.
///
/// A result libmemcached did not fill (see [`arm_fetch`]) or filled with lengths that cannot be
/// (a key longer than its buffer, a value that ends before it starts: a negative length in a
/// `VALUE` line wraps around) is `Err` with what is wrong: no slice is made of it.
///
/// # Safety
///
/// `result` was initialised by `memcached_result_create` and just filled by a successful fetch.
#[inline]
pub(crate) unsafe fn result_item(
    result: &MaybeUninit<sys::memcached_result_st>,
) -> Result<(&[u8], &[u8], u32), &'static str> {
    // SAFETY: per the contract the struct is initialised. Slices are made only of lengths that
    // fit: the key buffer holds `key_length` bytes when that fits, and the value string's
    // `string..end` is its live buffer when it is ordered (NULL..NULL for an empty value). Both
    // stay untouched until the next fetch, which needs `&mut` access.
    unsafe {
        let r = &*result.as_ptr();
        if r.key_length == NOT_FILLED {
            return Err("a reply to a get that is not a value");
        }
        if r.key_length > r.item_key.len() {
            return Err("a value reply with a key longer than memcached allows");
        }
        let key = std::slice::from_raw_parts(r.item_key.as_ptr().cast(), r.key_length);
        let (start, end) = (r.value.string, r.value.end);
        let value: &[u8] = match (start.is_null(), end.is_null()) {
            (false, false) if end >= start => {
                std::slice::from_raw_parts(start.cast(), end.offset_from(start) as usize)
            }
            (true, true) => &[],
            _ => return Err("a value reply whose length cannot be (negative?)"),
        };
        Ok((key, value, r.item_flags))
    }
}

/// Whether the key of the item just fetched into `result` overran the struct's key buffer
/// (see `fetch::ResultStruct`). Relies on: `key_length` is the length libmemcached copied, and
/// the buffer holds `MEMCACHED_MAX_KEY` bytes.
///
/// # Safety
///
/// `result` points to an initialised result.
#[inline]
pub(crate) unsafe fn key_overran(result: *const sys::memcached_result_st) -> bool {
    // SAFETY: per the contract the struct is initialised; a plain integer field.
    let len = unsafe { (*result).key_length };
    len != NOT_FILLED && len > sys::MEMCACHED_MAX_KEY as usize
}

/// `key_length` of a result that no fetch filled (see [`arm_fetch`]).
const NOT_FILLED: usize = usize::MAX;

/// Prepares `result` for the next `memcached_fetch_result`, so that what it returns says what
/// happened. Relies on two things libmemcached 1.1's fetch does:
///
/// - It turns whatever stopped it into NOTFOUND, the code of a clean miss, when the result's
///   `count` of items returned is 0, and otherwise returns the failure's own code (END for a
///   clean end); some failures are not logged either (a reply line longer than its buffer).
///   With `count` set, a failure is never read as a miss. It resets `count` when a fetch ends
///   and reads it nowhere else.
/// - It returns a result as an item for a reply line that starts with a digit (an incr reply)
///   without filling it, so the result would still hold the previous item. Every item fills
///   `key_length` (ASCII and binary alike); left impossible, it marks a result not filled, which
///   [`result_item`] refuses.
///
/// # Safety
///
/// `result` points to a result initialised by `memcached_result_create`.
#[inline]
pub(crate) unsafe fn arm_fetch(result: *mut sys::memcached_result_st) {
    // SAFETY: per the contract the struct is initialised; both are plain integer fields.
    unsafe {
        (*result).count = 1;
        (*result).key_length = NOT_FILLED;
    }
}

/// Empties the handle's own result before a write or counter, so that what the call read
/// says whether its reply answered it. Relies on: libmemcached 1.1 reads the reply to a write
/// or counter into `memcached_st.result` (a NULL result in `memcached_response` means the
/// handle's), and gives it a key only for a value reply (an ASCII `VALUE` line, a binary GETK
/// packet with a key), never for the answer to a write or counter. (The value alone says
/// nothing: SASL's answers during the call's connect fill it.) Each call empties the result
/// too, in `initialize_query`, as this does: no key, an empty value, `numeric_value` at
/// `u64::MAX`, the value a counter call returns when no reply set one.
///
/// # Safety
///
/// `memc` points to a live handle, used by no other thread.
#[inline]
pub(crate) unsafe fn arm_reply(memc: *mut sys::memcached_st) {
    // SAFETY: per the contract the handle is live; its result was initialised with it. Plain
    // fields; the value string keeps its buffer, only its end moves back to its start.
    unsafe {
        let result = &mut (*memc).result;
        result.key_length = 0;
        result.value.end = result.value.string;
        result.numeric_value = u64::MAX;
    }
}

/// Whether the reply read since [`arm_reply`] was a value, which answers no write or counter.
///
/// # Safety
///
/// As for [`arm_reply`].
#[inline]
pub(crate) unsafe fn reply_was_value(memc: *const sys::memcached_st) -> bool {
    // SAFETY: per the contract the handle is live; plain fields are read.
    unsafe { (*memc).result.key_length != 0 }
}

/// Turns buffered requests on or off without what the behavior does beside (it closes every
/// connection). Relies on: the `flags.buffer_requests` bit of `memcached_st` is read per call:
/// by the storage calls (a set is then written to the buffer and answered `BUFFERED`), and by
/// quit (which then reads a closing connection to its end, up to a poll timeout per server).
///
/// # Safety
///
/// `memc` points to a live handle, used by no other thread.
pub(crate) unsafe fn set_buffering(memc: *mut sys::memcached_st, on: bool) {
    // SAFETY: per the contract the handle is live; a bitfield of its plain flags is written.
    unsafe { (*memc).flags.set_buffer_requests(on) }
}

/// The start of libmemcached 1.1's `memcached_instance_st` (instance.hpp), up to its socket.
#[repr(C)]
struct InstanceHead {
    options: [bool; 5],
    events: i16,
    revents: i16,
    cursor_active: u32,
    port: u16,
    fd: libc::c_int,
}

/// The socket of `instance` (`-1`: none) and the replies it owes, or `None` if the instance is
/// not laid out as expected. Relies on: [`InstanceHead`] is the start of the instance (a
/// standard-layout struct: no virtual methods), checked against two public readers of its
/// fields (`memcached_server_response_count` returns `cursor_active_`,
/// `memcached_server_port` returns `port_`).
///
/// # Safety
///
/// `instance` belongs to a live handle used by no other thread.
unsafe fn socket_of(instance: *const sys::memcached_instance_st) -> Option<(libc::c_int, u32)> {
    // SAFETY: per the contract the instance is live; it is larger than InstanceHead, whose
    // fields are plain integers, read unaligned in case the layout is not what it seems.
    unsafe {
        let head = instance.cast::<InstanceHead>().read_unaligned();
        let laid_out = head.cursor_active == sys::memcached_server_response_count(instance)
            && head.port == sys::memcached_server_port(instance);
        laid_out.then_some((head.fd, head.cursor_active))
    }
}

/// Shuts the socket of `instance` down, so that nothing more is sent on it: closing it through
/// libmemcached (`memcached_quit`) first sends what its write buffer holds, from the start,
/// even when part of it went out already. Returns `false`, doing nothing, if the instance is
/// not laid out as [`socket_of`] expects.
///
/// # Safety
///
/// As for [`socket_of`].
pub(crate) unsafe fn shut_socket(instance: *const sys::memcached_instance_st) -> bool {
    // SAFETY: per the contract; shutdown takes any descriptor number and changes only that
    // socket.
    unsafe {
        let Some((fd, _)) = socket_of(instance) else {
            return false;
        };
        if fd >= 0 {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
        true
    }
}

/// Whether the connection of `instance` has something to read while it owes no reply: the
/// server closed it (a restart, an idle timeout) or sent what nobody asked for. `false` if it
/// has no connection, or the instance is not laid out as [`socket_of`] expects.
///
/// # Safety
///
/// As for [`socket_of`].
pub(crate) unsafe fn socket_is_stale(instance: *const sys::memcached_instance_st) -> bool {
    // SAFETY: per the contract; poll is given one valid pollfd and no timeout.
    unsafe {
        let Some((fd, 0)) = socket_of(instance) else {
            return false;
        };
        if fd < 0 {
            return false;
        }
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        libc::poll(&mut poll, 1, 0) == 1
    }
}

/// Whether this libmemcached has `hash` compiled in (Debian's lacks `hsieh`): asked once, of a
/// scratch handle. Relies on: a hash not compiled in is refused with an error, not an abort.
pub(crate) fn hash_available(hash: Hash) -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<Vec<Hash>> = OnceLock::new();
    AVAILABLE
        .get_or_init(|| {
            let Ok(probe) = Handle::new() else {
                return Vec::new();
            };
            crate::hashers()
                .iter()
                .map(|&(_, h)| h)
                .filter(|h| {
                    // SAFETY: `probe` is a valid handle; every hash value here is below
                    // MEMCACHED_HASH_MAX.
                    let rc =
                        unsafe { sys::memcached_behavior_set_key_hash(probe.as_ptr(), h.to_raw()) };
                    rc == sys::MEMCACHED_SUCCESS
                })
                .collect()
        })
        .contains(&hash)
}

/// Self-checks of every private field the crate touches, against the library it runs on: each
/// fails if the layout the code assumes is not the one libmemcached uses.
#[cfg(test)]
mod layout_checks {
    use std::mem::MaybeUninit;

    use libmemcached_sys as sys;

    use super::super::{Handle, Rc};
    use super::{NOT_FILLED, arm_fetch, result_item};
    use crate::server::ServerSpec;

    /// A result libmemcached filled through its public setters, read through the fields.
    #[test]
    fn result_fields_are_where_libmemcached_keeps_them() {
        let handle = Handle::new().unwrap();
        let mut storage = Box::new(MaybeUninit::<sys::memcached_result_st>::uninit());
        // SAFETY: the storage is boxed and outlives every use below; the result is freed at
        // the end; every call gets the initialised struct.
        unsafe {
            let result = sys::memcached_result_create(handle.as_ptr(), storage.as_mut_ptr());
            assert!(!result.is_null());
            arm_fetch(result);
            assert_eq!(sys::memcached_result_key_length(result), NOT_FILLED);
            assert_eq!((*result).count, 1);
            assert!(
                result_item(&storage).is_err(),
                "an armed result is not an item"
            );
            let value = b"a value of some length";
            let rc = sys::memcached_result_set_value(result, value.as_ptr().cast(), value.len());
            assert_eq!(rc, sys::MEMCACHED_SUCCESS);
            sys::memcached_result_set_flags(result, 0xBEEF);
            (*result).key_length = 3;
            (&mut (*result).item_key)[..3].copy_from_slice(&[b'k' as _; 3]);
            let (key, read, flags) = result_item(&storage).unwrap();
            assert_eq!(key, b"kkk");
            assert_eq!(sys::memcached_result_key_length(result), 3);
            assert_eq!(read, value);
            assert_eq!(read.len(), sys::memcached_result_length(result));
            assert_eq!(read.as_ptr(), sys::memcached_result_value(result).cast());
            assert_eq!(flags, sys::memcached_result_flags(result));
            assert_eq!((*result).item_cas, sys::memcached_result_cas(result));
            sys::memcached_result_free(result);
        }
    }

    /// The handle's own result, where the replies to writes and counters are read, is where
    /// the crate arms it: created with the handle, it points back to it.
    #[test]
    fn the_handle_result_is_where_libmemcached_keeps_it() {
        let handle = Handle::new().unwrap();
        // SAFETY: the handle is valid and used by this thread alone; plain fields are read.
        unsafe {
            let memc = handle.as_ptr();
            assert_eq!((*memc).result.root, memc);
            super::arm_reply(memc);
            assert!(!super::reply_was_value(memc));
        }
    }

    /// The error log's head moves when an error is recorded, and a server's error record
    /// carries the handle and the request it was recorded in.
    #[test]
    fn error_records_are_read_as_libmemcached_writes_them() {
        let handle = Handle::new().unwrap();
        assert_eq!(handle.error_log_top(), 0);
        // A port nothing listens on (refused at once): the version request fails there.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let spec: ServerSpec = format!("127.0.0.1:{closed}").parse().unwrap();
        assert_eq!(handle.add_server(&spec).unwrap(), Rc::SUCCESS);
        // SAFETY: the handle is valid.
        let rc = Rc(unsafe { sys::memcached_version(handle.as_ptr()) });
        assert_ne!(rc, Rc::SUCCESS);
        assert_ne!(handle.error_log_top(), 0, "the failure is logged");
        let instance = handle.instance(0);
        // SAFETY: the handle is valid; both only read.
        let (code, request) = unsafe {
            (
                sys::memcached_server_error_return(instance),
                sys::memcached_query_id(handle.as_ptr()),
            )
        };
        assert_ne!(code, sys::MEMCACHED_SUCCESS);
        assert_eq!(handle.error_request(instance, code), Some(request));
        assert!(handle.server_failed(0));
    }

    /// The ketama weighting flag and the socket sizes are the fields behaviors set.
    #[test]
    fn behavior_fields_are_where_libmemcached_keeps_them() {
        let handle = Handle::new().unwrap();
        // SAFETY: the handle is valid and used by this thread alone; plain fields are read.
        let weighted = |h: &Handle| unsafe { (*h.as_ptr()).ketama.weighted_ };
        assert!(!weighted(&handle));
        let rc = handle.set_behavior(sys::MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
        assert_eq!(rc, Rc::SUCCESS);
        assert!(weighted(&handle));
        // -1: unset, the OS's size.
        assert_eq!(handle.socket_sizes(), (-1, -1));
        for (flag, size) in [
            (sys::MEMCACHED_BEHAVIOR_SOCKET_SEND_SIZE, 12_345),
            (sys::MEMCACHED_BEHAVIOR_SOCKET_RECV_SIZE, 23_456),
        ] {
            assert_eq!(handle.set_behavior(flag, size), Rc::SUCCESS);
        }
        assert_eq!(handle.socket_sizes(), (12_345, 23_456));
    }
}
