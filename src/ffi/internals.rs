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

    /// How many replies server `i` still owes (`memcached_server_response_count`).
    pub(crate) fn replies_owed(&self, i: usize) -> u32 {
        // SAFETY: the instance is valid during this call (no server is added).
        unsafe { sys::memcached_server_response_count(self.instance(i as u32)) }
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
