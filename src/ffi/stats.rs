//! `memcached_stat_execute` and its callback: every stat line of every server.

use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use libmemcached_sys as sys;

use super::{Handle, Rc};

/// What the callback collects: the lines of each server, by position.
struct Collector {
    instances: Vec<*const sys::memcached_instance_st>,
    stats: Vec<Vec<(String, String)>>,
}

unsafe extern "C" fn collect(
    instance: *const sys::memcached_instance_st,
    key: *const c_char,
    key_length: usize,
    value: *const c_char,
    value_length: usize,
    context: *mut c_void,
) -> sys::memcached_return_t {
    // No panic may cross back into C.
    let collected = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `context` is the Collector passed to memcached_stat_execute by `stats`, alive
        // and not otherwise borrowed during the call; key and value describe valid bytes.
        let (collector, key, value) = unsafe {
            (
                &mut *context.cast::<Collector>(),
                std::slice::from_raw_parts(key.cast::<u8>(), key_length),
                std::slice::from_raw_parts(value.cast::<u8>(), value_length),
            )
        };
        if let Some(i) = collector.instances.iter().position(|&p| p == instance) {
            collector.stats[i].push((
                String::from_utf8_lossy(key).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
    }));
    match collected {
        Ok(()) => sys::MEMCACHED_SUCCESS,
        Err(_) => sys::MEMCACHED_FAILURE,
    }
}

impl Handle {
    /// Runs `stats` (or `stats <arg>`) on every server: the code, and each server's lines in
    /// server order.
    pub(crate) fn stats(&self, arg: Option<&CStr>) -> (Rc, Vec<Vec<(String, String)>>) {
        let count = self.server_count();
        let mut collector = Collector {
            instances: (0..count as u32).map(|i| self.instance(i)).collect(),
            stats: vec![Vec::new(); count],
        };
        // SAFETY: the argument is NULL or a NUL-terminated string; the callback matches
        // memcached_stat_fn and gets the collector, which outlives the call.
        let rc = unsafe {
            sys::memcached_stat_execute(
                self.as_ptr(),
                arg.map_or(std::ptr::null(), CStr::as_ptr),
                Some(collect),
                (&mut collector as *mut Collector).cast(),
            )
        };
        (Rc(rc), collector.stats)
    }
}
