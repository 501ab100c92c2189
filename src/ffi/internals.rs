//! What depends on libmemcached 1.1's internals rather than its documented API. The build
//! requires libmemcached 1.1 (see `libmemcached-sys/build.rs`), the only series these were
//! checked against; each item says what it relies on.

use libmemcached_sys as sys;

use super::Handle;
use crate::Hash;

impl Handle {
    /// Rebuilds the consistent-hashing ring. libmemcached hashes the ring's points with the key
    /// hash but does not rebuild the ring when the hash changes, so without this a hash set
    /// after the servers places keys differently from the same hash set before them (724 of
    /// 1000 keys on 3 servers). Relies on: setting SORT_HOSTS, even to its current value,
    /// reruns the distribution and changes nothing else.
    pub(crate) fn rebuild_ring(&self) {
        let sort = self.behavior(sys::MEMCACHED_BEHAVIOR_SORT_HOSTS);
        let _ = self.set_behavior(sys::MEMCACHED_BEHAVIOR_SORT_HOSTS, sort);
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

    /// The identity of the newest entry in the handle's error log. Relies on: libmemcached
    /// clears the log when a request starts and only prepends to it until the next, so a new
    /// entry has a new address. Only compared, never read.
    pub(crate) fn error_log_top(&self) -> usize {
        // SAFETY: the handle is valid; only the pointer's value is kept.
        unsafe { sys::memcached_last_error_message(self.as_ptr()) as usize }
    }

    /// How many replies server `i` still owes (`memcached_server_response_count`).
    pub(crate) fn replies_owed(&self, i: usize) -> u32 {
        // SAFETY: the instance is valid during this call (no server is added).
        unsafe { sys::memcached_server_response_count(self.instance(i as u32)) }
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
