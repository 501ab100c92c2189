//! The boundary with libmemcached: every call into `libmemcached-sys` and every `unsafe` block of
//! the crate lives here. Above this module the crate is safe code.
//!
//! - [`Handle`] owns one `memcached_st` and caches what does not change between calls.
//! - [`Handle::check`] is where a call's return code becomes a `Result` (the fetch loops above
//!   also make errors, for failures libmemcached did not record or report).
//! - `ops`: single-key calls; `fetch`: the mget and each fetch of every read (what the replies
//!   mean is worked out in safe code, `keyspace::fetch`); `stats`: the stats callback.
//! - `pipeline`: sets sent together, each read back with its own answer.
//! - `internals`: what depends on libmemcached 1.1's internals rather than its API.
//!
//! The crate denies `unsafe_code` (see `[lints]` in Cargo.toml); this module alone allows it.

#![allow(unsafe_code)]

mod code;
mod fetch;
mod handle;
mod internals;
mod message;
mod ops;
mod pipeline;
#[cfg(feature = "shield")]
mod route;
#[cfg(all(feature = "shield", target_os = "linux"))]
mod sock_diag;
mod stats;

pub(crate) use code::Rc;
pub use code::ReturnCode;
pub(crate) use fetch::{Item, Replies, Reply};
pub(crate) use handle::Handle;
pub(crate) use internals::hash_available;
pub(crate) use message::clean_message;
pub(crate) use ops::{Counter, Store};
pub(crate) use pipeline::PipedSet;
#[cfg(feature = "shield")]
pub(crate) use route::effective_uid;
#[cfg(all(feature = "shield", target_os = "linux"))]
pub(crate) use sock_diag::{Owner, tcp_owner};

use std::ffi::{CStr, c_char};

use libmemcached_sys as sys;

/// The version of the libmemcached library in use, such as `"1.1.4"`.
pub(crate) fn library_version() -> &'static str {
    // SAFETY: memcached_lib_version returns a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(sys::memcached_lib_version()) };
    version.to_str().unwrap_or("unknown")
}

/// The libmemcached series whose private layouts `internals.rs` reads and writes.
const FENCED_SERIES: &str = "1.1.";

/// Refuses a libmemcached whose private layouts the crate was not built for: the library loaded
/// at run time must be the version of the headers the bindings came from, of the 1.1 series
/// (the build refuses others). Checked once, before the first handle exists.
pub(crate) fn check_library() -> crate::Result<()> {
    use std::sync::OnceLock;
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let header = std::str::from_utf8(sys::LIBMEMCACHED_VERSION_STRING)
        .unwrap_or_default()
        .trim_end_matches('\0');
    CHECKED
        .get_or_init(|| fence(header, library_version()))
        .clone()
        .map_err(|why| crate::ConfigError::setting("libmemcached", why))
}

/// Whether a library of version `loaded` may be used by bindings built from headers of
/// version `header`.
fn fence(header: &str, loaded: &str) -> Result<(), String> {
    if loaded == header && loaded.starts_with(FENCED_SERIES) {
        return Ok(());
    }
    Err(format!(
        "libmemcached {loaded} is loaded, but this crate was built against {header} and reads \
         private layouts of libmemcached {FENCED_SERIES}x: install libmemcached 1.1 (Debian 12, \
         Ubuntu 24.04: apt-get install libmemcached-dev) and rebuild (cargo clean -p \
         libmemcached-sys)"
    ))
}

/// The most servers a consistent distribution takes: libmemcached 1.1 asserts (and aborts the
/// process) when a ring would have more points than its continuum holds.
pub(crate) const MAX_CONSISTENT_SERVERS: usize =
    (sys::MEMCACHED_CONTINUUM_SIZE / sys::MEMCACHED_POINTS_PER_SERVER) as usize;

/// Whether the library was built with SASL support (from its headers).
pub(crate) const SASL_SUPPORT: bool = sys::LIBMEMCACHED_WITH_SASL_SUPPORT != 0;

/// libmemcached's text for a return code (`memcached_strerror`).
pub(crate) fn strerror(rc: sys::memcached_return_t) -> &'static str {
    // SAFETY: memcached_strerror ignores its handle argument (NULL is allowed) and returns a
    // static NUL-terminated string for every value, known or not.
    let text = unsafe { CStr::from_ptr(sys::memcached_strerror(std::ptr::null(), rc)) };
    text.to_str().unwrap_or("UNKNOWN ERROR")
}

/// Checks a libmemcached configuration string; `Err` carries libmemcached's message.
pub(crate) fn check_configuration(config: &str) -> Result<(), String> {
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
    if rc == sys::MEMCACHED_SUCCESS {
        return Ok(());
    }
    // SAFETY: the buffer was zeroed and libmemcached writes a NUL-terminated message into it.
    let text = unsafe { CStr::from_ptr(message.as_ptr()) };
    Err(text.to_string_lossy().into_owned())
}

#[cfg(test)]
mod fence_tests {
    use super::fence;

    #[test]
    fn only_the_headers_version_of_the_fenced_series_passes() {
        assert!(fence("1.1.4", "1.1.4").is_ok());
        for (header, loaded) in [("1.1.4", "1.1.5"), ("1.1.4", "1.2.0"), ("1.0.18", "1.0.18")] {
            let why = fence(header, loaded).unwrap_err();
            assert!(
                why.contains(loaded) && why.contains("apt-get install"),
                "{why}"
            );
        }
        assert!(
            super::check_library().is_ok(),
            "the library this test runs against"
        );
    }
}
