//! The mget/fetch loop: one reused result struct, ended only by END or NOTFOUND.

use std::ffi::c_char;
use std::mem::MaybeUninit;

use libmemcached_sys as sys;

use crate::client::Client;
use crate::error::{Error, Result, ReturnCode};

/// One fetched item, borrowed from libmemcached until the next fetch.
pub(crate) struct Item<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
    pub cas: u64,
}

/// Requests `keys` (already checked) and hands each item found to `each`.
///
/// Every reply is read even when `each` fails, so the connections stay in step; the first error
/// of `each` is returned after that. A fetch that ends on anything but END or NOTFOUND is an
/// error, never a short result, and resets the connections.
pub(crate) fn fetch(
    client: &Client,
    keys: &[&[u8]],
    mut each: impl FnMut(Item<'_>) -> Result<()>,
) -> Result<()> {
    let pointers: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr().cast()).collect();
    let lengths: Vec<usize> = keys.iter().map(|k| k.len()).collect();
    let memc = client.as_ptr();
    // SAFETY: both arrays hold keys.len() entries describing live slices.
    let rc = unsafe { sys::memcached_mget(memc, pointers.as_ptr(), lengths.as_ptr(), keys.len()) };
    if rc != sys::MEMCACHED_SUCCESS {
        return Err(client.error(rc, keys.first().copied()));
    }
    let mut result = ResultStruct::new(client)?;
    let mut failed = None;
    loop {
        let mut rc = sys::MEMCACHED_SUCCESS;
        // SAFETY: `result` was created for this handle and is reused for every fetch.
        let fetched = unsafe { sys::memcached_fetch_result(memc, result.as_ptr(), &mut rc) };
        if fetched.is_null() {
            return match rc {
                sys::MEMCACHED_END | sys::MEMCACHED_NOTFOUND => failed.map_or(Ok(()), Err),
                rc => {
                    let error = client.error(rc, None);
                    client.disconnect_all();
                    Err(error)
                }
            };
        }
        if failed.is_none() {
            // SAFETY: the result holds a key and value that stay valid until the next fetch.
            let item = unsafe { result.item() };
            failed = each(item).err();
        }
    }
}

/// A `memcached_result_st` in storage we own, initialised by libmemcached.
///
/// Not one that libmemcached allocates: it frees those itself on a fetch's last call.
struct ResultStruct(Box<MaybeUninit<sys::memcached_result_st>>);

impl ResultStruct {
    fn new(client: &Client) -> Result<Self> {
        let mut storage = Box::new(MaybeUninit::uninit());
        // SAFETY: the storage is writable, sized for the struct and never moves (boxed);
        // libmemcached initialises it for this handle.
        let raw = unsafe { sys::memcached_result_create(client.as_ptr(), storage.as_mut_ptr()) };
        if raw.is_null() {
            return Err(Error::Memcached {
                code: ReturnCode::MemoryAllocationFailure,
                message: "memcached_result_create failed".into(),
                server: None,
            });
        }
        Ok(Self(storage))
    }

    fn as_ptr(&mut self) -> *mut sys::memcached_result_st {
        self.0.as_mut_ptr()
    }

    /// # Safety
    ///
    /// The result was just filled by a successful fetch; the item is used before the next one.
    unsafe fn item(&self) -> Item<'_> {
        let r = self.0.as_ptr();
        // SAFETY: per the contract, key and value pointers are valid for their lengths (a NULL
        // value pointer only ever comes with length 0).
        unsafe {
            let slice = |ptr: *const c_char, len: usize| match ptr.is_null() || len == 0 {
                true => &[][..],
                false => std::slice::from_raw_parts(ptr.cast::<u8>(), len),
            };
            Item {
                key: slice(
                    sys::memcached_result_key_value(r),
                    sys::memcached_result_key_length(r),
                ),
                value: slice(
                    sys::memcached_result_value(r),
                    sys::memcached_result_length(r),
                ),
                flags: sys::memcached_result_flags(r),
                cas: sys::memcached_result_cas(r),
            }
        }
    }
}

impl Drop for ResultStruct {
    fn drop(&mut self) {
        // SAFETY: the struct was initialised by memcached_result_create, which marked it as not
        // allocated by libmemcached, so this frees only its value buffer. Its handle outlives it
        // (the result lives inside one call on that handle).
        unsafe { sys::memcached_result_free(self.as_ptr()) }
    }
}
