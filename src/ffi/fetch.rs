//! The C side of every read: the mget, each `memcached_fetch_result`, and the result struct
//! the items are read from. What the replies mean is worked out above, in `keyspace::fetch`.

use std::ffi::c_char;
use std::mem::MaybeUninit;

use libmemcached_sys as sys;

use super::{Handle, Rc, ReturnCode};
use crate::error::{Error, Result};

/// One fetched value, borrowed from libmemcached until the next fetch.
pub(crate) struct Item<'a> {
    pub value: &'a [u8],
    pub flags: u32,
    result: &'a MaybeUninit<sys::memcached_result_st>,
}

impl Item<'_> {
    /// The CAS token (read only when asked for: most fetches do not need it).
    pub fn cas(&self) -> u64 {
        // SAFETY: the result was filled by the fetch this item came from and lives as long as
        // the item; the field is a plain integer.
        unsafe { (*self.result.as_ptr()).item_cas }
    }
}

/// What one `memcached_fetch_result` gave.
pub(crate) enum Reply<'a> {
    /// A value, with the key its reply named.
    Item(&'a [u8], Item<'a>),
    /// A result that cannot be a value, and why (see `internals::result_item`).
    Malformed(&'static str),
    /// No item: the fetch's code (END or NOTFOUND where the replies ended cleanly).
    Done(Rc),
}

/// The replies to the handle's last mget, read one fetch at a time into one result struct.
pub(crate) struct Replies<'h> {
    handle: &'h Handle,
    lent: LentResult<'h>,
}

impl Replies<'_> {
    /// The next reply; its item is borrowed until the next call.
    #[inline]
    pub(crate) fn next(&mut self) -> Reply<'_> {
        let handle = self.handle;
        let result = self.lent.get();
        let (fetched, rc) = result.fetch(handle);
        if !fetched {
            return Reply::Done(rc);
        }
        // SAFETY: the fetch just filled the result; the item borrows it (through `self`) until
        // the next fetch.
        match unsafe { result.item() } {
            Ok((key, item)) => Reply::Item(key, item),
            Err(malformed) => Reply::Malformed(malformed),
        }
    }
}

impl Handle {
    /// Sends a get for `keys` to the servers that hold them (`memcached_mget`).
    #[inline]
    pub(crate) fn mget(&self, keys: &[&[u8]]) -> Rc {
        if !self.routed() {
            return Rc::UNROUTED;
        }
        if let [key] = keys {
            let pointer: *const c_char = key.as_ptr().cast();
            // SAFETY: one key, described by a pointer and a length that live for the call.
            return Rc(unsafe { sys::memcached_mget(self.as_ptr(), &pointer, &key.len(), 1) });
        }
        let pointers: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr().cast()).collect();
        let lengths: Vec<usize> = keys.iter().map(|k| k.len()).collect();
        // SAFETY: both arrays hold keys.len() entries describing live slices.
        Rc(unsafe {
            sys::memcached_mget(
                self.as_ptr(),
                pointers.as_ptr(),
                lengths.as_ptr(),
                keys.len(),
            )
        })
    }

    /// The replies to the last mget, read into the handle's kept result struct (or a new one).
    #[inline]
    pub(crate) fn replies(&self) -> Result<Replies<'_>> {
        Ok(Replies {
            handle: self,
            lent: self.lend_result()?,
        })
    }
}

/// A `memcached_result_st` libmemcached initialised in storage we own, boxed so that it never
/// moves. The handle keeps one between fetches, so that its value buffer is reused instead of
/// allocated for every get (see [`Handle::lend_result`]).
///
/// Not one that libmemcached allocates: it frees those itself on a fetch's last call.
///
/// libmemcached 1.1.4 copies a reply's key into the struct's 251-byte key buffer without
/// checking its length (a binary header may announce 65535 bytes), over the `options` after it
/// and beyond. The struct is followed by room for the longest such key, and its `options` are
/// put back after a fetch that overran them, so that a malformed reply costs an error, not the
/// heap.
pub(super) struct ResultStruct {
    storage: Box<Padded>,
    /// The `options` libmemcached gave the struct (initialised, not allocated by it).
    options: sys::memcached_result_st__bindgen_ty_1,
}

/// A result struct and the room after it that an over-long key overflows into.
#[repr(C)]
struct Padded {
    result: MaybeUninit<sys::memcached_result_st>,
    overflow: MaybeUninit<[u8; u16::MAX as usize + 1]>,
}

/// A value buffer larger than this is freed after the fetch rather than kept by the handle.
const KEPT_BUFFER: usize = 64 * 1024;

impl ResultStruct {
    fn new(handle: &Handle) -> Result<Self> {
        // SAFETY: both fields are `MaybeUninit`, which need no initialisation.
        let mut storage = unsafe { Box::<Padded>::new_uninit().assume_init() };
        // SAFETY: the storage is writable, sized for the struct and never moves (boxed);
        // libmemcached initialises it for this handle.
        let raw =
            unsafe { sys::memcached_result_create(handle.as_ptr(), storage.result.as_mut_ptr()) };
        if raw.is_null() {
            return Err(Error::Memcached {
                code: ReturnCode::MemoryAllocationFailure,
                message: "memcached_result_create failed".into(),
                key: None,
                server: None,
            });
        }
        // SAFETY: just initialised; a plain bitfield struct is copied.
        let options = unsafe { (*raw).options };
        Ok(Self { storage, options })
    }

    fn as_ptr(&mut self) -> *mut sys::memcached_result_st {
        self.storage.result.as_mut_ptr()
    }

    /// One `memcached_fetch_result`: whether it filled the result, and its code.
    #[inline]
    fn fetch(&mut self, handle: &Handle) -> (bool, Rc) {
        let mut rc = sys::MEMCACHED_SUCCESS;
        let result = self.as_ptr();
        // SAFETY: `result` was created for this handle and is reused for every fetch; arming
        // writes two integer fields of it.
        let fetched = unsafe {
            super::internals::arm_fetch(result);
            sys::memcached_fetch_result(handle.as_ptr(), result, &mut rc)
        };
        // SAFETY: the struct is initialised; a key that overran its buffer wrote into the
        // room after the struct, and over `options`, a plain bitfield put back here.
        unsafe {
            if super::internals::key_overran(result) {
                (*result).options = self.options;
            }
        }
        (!fetched.is_null(), Rc(rc))
    }

    /// The key and value of the item just fetched.
    ///
    /// # Safety
    ///
    /// The result was just filled by a successful fetch; the item is used before the next one.
    #[inline]
    unsafe fn item(&self) -> Result<(&[u8], Item<'_>), &'static str> {
        // SAFETY: per the contract, the result holds a fetched item.
        let (key, value, flags) = unsafe { super::internals::result_item(&self.storage.result) }?;
        let item = Item {
            value,
            flags,
            result: &self.storage.result,
        };
        Ok((key, item))
    }

    /// Whether its value buffer is small enough to keep between fetches.
    fn worth_keeping(&self) -> bool {
        // SAFETY: the struct is initialised; `current_size` is a plain integer field.
        unsafe { (*self.storage.result.as_ptr()).value.current_size <= KEPT_BUFFER }
    }
}

impl Drop for ResultStruct {
    fn drop(&mut self) {
        // SAFETY: the struct was initialised by memcached_result_create, which marked it as not
        // allocated by libmemcached, so this frees only its value buffer. Its handle outlives it
        // (the handle drops its kept result before freeing itself).
        unsafe { sys::memcached_result_free(self.as_ptr()) }
    }
}

/// A result lent by the handle for one fetch, given back when dropped.
pub(super) struct LentResult<'h> {
    handle: &'h Handle,
    result: Option<ResultStruct>,
}

impl LentResult<'_> {
    #[inline]
    fn get(&mut self) -> &mut ResultStruct {
        // Always `Some` until dropped.
        self.result.as_mut().expect("a lent result")
    }
}

impl Drop for LentResult<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(result) = self.result.take().filter(ResultStruct::worth_keeping) {
            self.handle.keep_result(result);
        }
    }
}

impl Handle {
    /// The handle's result struct for one fetch, or a new one if it has none or it is in use
    /// (a fetch started while another is running: from a closure, or a value's decoder).
    #[inline]
    pub(super) fn lend_result(&self) -> Result<LentResult<'_>> {
        let result = match self.take_kept_result() {
            Some(result) => result,
            None => ResultStruct::new(self)?,
        };
        Ok(LentResult {
            handle: self,
            result: Some(result),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_after_a_result_holds_the_longest_key_a_reply_can_announce() {
        let key_at = std::mem::offset_of!(sys::memcached_result_st, item_key);
        assert!(key_at + u16::MAX as usize <= std::mem::size_of::<Padded>());
        assert_eq!(std::mem::offset_of!(Padded, result), 0);
    }
}
