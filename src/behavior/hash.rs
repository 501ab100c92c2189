//! [`Hash`]: the key hash functions, from one table.

use std::str::FromStr;

use libmemcached_sys as sys;

use super::c_enum::c_enum;
use crate::error::{Error, Result};

c_enum! {
    /// A key hash function. The names are pylibmc's (`fnv1a_32`); see [`hashers`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    #[allow(non_camel_case_types)]
    pub enum Hash(sys::memcached_hash_t) in HASHERS as "hash" {
        /// `default`: Jenkins one-at-a-time (libmemcached's default).
        Default = "default", MEMCACHED_HASH_DEFAULT;
        /// `md5`.
        Md5 = "md5", MEMCACHED_HASH_MD5;
        /// `crc`: CRC32 (15 bits), placing keys as python-memcached does.
        Crc = "crc", MEMCACHED_HASH_CRC;
        /// `fnv1_64`.
        Fnv1_64 = "fnv1_64", MEMCACHED_HASH_FNV1_64;
        /// `fnv1a_64`.
        Fnv1a_64 = "fnv1a_64", MEMCACHED_HASH_FNV1A_64;
        /// `fnv1_32`.
        Fnv1_32 = "fnv1_32", MEMCACHED_HASH_FNV1_32;
        /// `fnv1a_32`.
        Fnv1a_32 = "fnv1a_32", MEMCACHED_HASH_FNV1A_32;
        /// `hsieh`: only if libmemcached was built with it (Debian's is not; see
        /// [`Hash::is_available`]).
        Hsieh = "hsieh", MEMCACHED_HASH_HSIEH;
        /// `murmur`.
        Murmur = "murmur", MEMCACHED_HASH_MURMUR;
        /// `jenkins`: Jenkins lookup3.
        Jenkins = "jenkins", MEMCACHED_HASH_JENKINS;
        /// `murmur3` (not in pylibmc).
        Murmur3 = "murmur3", MEMCACHED_HASH_MURMUR3;
    }
    /// pylibmc's name for the hash (`"fnv1a_32"`).
    fn name;
}

/// Every [`Hash`](enum@Hash) by its pylibmc name, as pylibmc's `hashers`. Some may not be compiled into
/// this libmemcached: see [`Hash::is_available`].
pub fn hashers() -> &'static [(&'static str, Hash)] {
    HASHERS
}

impl Hash {
    /// Whether this libmemcached has the hash compiled in (Debian's lacks `hsieh`). Using one
    /// that is not is an error.
    pub fn is_available(self) -> bool {
        crate::ffi::hash_available(self)
    }
}

impl FromStr for Hash {
    type Err = Error;

    /// A hash by pylibmc name (`"fnv1a_32"`) or libmemcached number.
    fn from_str(s: &str) -> Result<Hash> {
        let s = s.trim();
        Hash::find(s, s).ok_or_else(|| Hash::unknown(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_parse_by_name() {
        for &(name, hash) in hashers() {
            assert_eq!(name.parse::<Hash>().unwrap(), hash);
            assert_eq!(hash.to_string(), name);
        }
        assert!(Hash::Default.is_available() && Hash::Md5.is_available());
    }
}
