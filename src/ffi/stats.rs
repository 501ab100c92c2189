//! `memcached_stat_execute` and its callback: every stat line of every server.

use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use libmemcached_sys as sys;

use super::{Handle, Rc};

/// What the callback collects: the lines of each server, by position, and a panic raised in
/// it, which cannot unwind through C: it is kept, and resumed once C has returned.
struct Collector {
    instances: Vec<*const sys::memcached_instance_st>,
    stats: Vec<Vec<(String, String)>>,
    panic: Option<Box<dyn std::any::Any + Send>>,
}

unsafe extern "C" fn collect(
    instance: *const sys::memcached_instance_st,
    key: *const c_char,
    key_length: usize,
    value: *const c_char,
    value_length: usize,
    context: *mut c_void,
) -> sys::memcached_return_t {
    // SAFETY: `context` is the Collector passed to memcached_stat_execute by `stats`, alive and
    // not otherwise borrowed during the call.
    let collector = unsafe { &mut *context.cast::<Collector>() };
    if collector.panic.is_some() {
        return sys::MEMCACHED_FAILURE;
    }
    // No panic may cross back into C.
    let collected = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: key and value describe valid bytes for the duration of the callback.
        let (key, value) = unsafe {
            (
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
        Err(panic) => {
            collector.panic = Some(panic);
            sys::MEMCACHED_FAILURE
        }
    }
}

impl Handle {
    /// Runs `stats` (or `stats <arg>`) on every server: the code, and each server's lines in
    /// server order.
    pub(crate) fn stats(&self, arg: Option<&CStr>) -> (Rc, Vec<Vec<(String, String)>>) {
        let count = self.server_count();
        if !self.routed() {
            return (Rc::UNROUTED, vec![Vec::new(); count]);
        }
        let mut collector = Collector {
            instances: (0..count as u32).map(|i| self.instance(i)).collect(),
            stats: vec![Vec::new(); count],
            panic: None,
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
        if let Some(panic) = collector.panic {
            // The stats are cut short: the panic goes on where C was called.
            std::panic::resume_unwind(panic);
        }
        (Rc(rc), collector.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic in the callback is kept for `stats` to resume, and later lines are refused.
    #[test]
    fn a_panic_in_the_callback_is_kept_not_lost() {
        let instance = std::ptr::dangling::<sys::memcached_instance_st>();
        // An instance with no list of lines: indexing it panics inside the callback.
        let mut collector = Collector {
            instances: vec![instance],
            stats: Vec::new(),
            panic: None,
        };
        let context = (&mut collector as *mut Collector).cast();
        let line = |collector: *mut c_void| {
            // SAFETY: key and value are live slices; the instance is only compared.
            unsafe {
                collect(
                    instance,
                    b"pid".as_ptr().cast(),
                    3,
                    b"1".as_ptr().cast(),
                    1,
                    collector,
                )
            }
        };
        assert_eq!(line(context), sys::MEMCACHED_FAILURE);
        assert!(collector.panic.is_some());
        let context = (&mut collector as *mut Collector).cast();
        assert_eq!(line(context), sys::MEMCACHED_FAILURE);
    }
}
