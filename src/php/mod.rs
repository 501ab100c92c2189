//! PHP's value format: sharing a cache with PHP's `memcached` extension.
//!
//! A client built with [`ValueFormat::Php`](crate::ValueFormat::Php) stores values as
//! php-memcached does and reads every value php-memcached writes. What follows was read off the
//! real extension (Debian bookworm: PHP 8.2, php-memcached 3.2.0 on libmemcached 1.1.4, with
//! igbinary and msgpack) by `tests/php/facts.php`, and is checked by `tests/php.rs`.
//!
//! # Flags
//!
//! | bits | meaning |
//! |---|---|
//! | 0–3 | the type: 0 string, 1 long, 2 double, 3 bool, 4 `serialize()`, 5 igbinary, 6 JSON, 7 msgpack ([`PhpType`]) |
//! | 4 (16) | compressed ([`flags::COMPRESSED`]) |
//! | 5 (32) | by zlib ([`flags::ZLIB`]) |
//! | 6 (64) | by FastLZ ([`flags::FASTLZ`]) |
//! | 7–15 | unused by 3.2.0 |
//! | 16–31 | the user's flags (`Memcached::OPT_USER_FLAGS`, read back by `Memcached::GET_EXTENDED`) |
//!
//! # How each PHP type is stored
//!
//! - string: its bytes.
//! - int: decimal ASCII (`-42`); PHP reads it with `strtol`, so 64-bit signed.
//! - float: the shortest digits that read back as the same double, in David Gay's `g_fmt`
//!   layout: `1.5`, `.1` (no leading zero), `-0`, `100`, `1e+15`, `1e-07`, `Infinity`,
//!   `-Infinity`, `NaN`.
//! - bool: `1` for true, nothing for false; read as true when the first byte is `1`.
//! - null, arrays and objects: by the serializer, `Memcached::OPT_SERIALIZER`: PHP's
//!   `serialize()` by default (`memcached.serializer = php`), or igbinary, JSON or msgpack (all
//!   three in Debian's build). `null` is `N;`, type 4.
//!
//! # Compression
//!
//! On by default (`Memcached::OPT_COMPRESSION`), with FastLZ (`memcached.compression_type =
//! fastlz`; zlib is the other choice; 3.2.0 has no zstd). Only strings and serialized values are
//! compressed, never ints, floats or bools; only from `memcached.compression_threshold` bytes
//! (2000); and kept only when the value is more than `memcached.compression_factor` (1.3) times
//! its compressed size. The stored bytes are the original length as a 4-byte little-endian
//! integer (a `memcpy` of a `uint32_t`), then the FastLZ block (level 1 below 64 KiB, level 2
//! from there) or the zlib stream (zlib's `compress()`, default level); the flags are 80 (FastLZ)
//! or 48 (zlib) on top of the type.
//!
//! This crate reads both, with the length prefix bounded by the inflate budget
//! ([`ClientBuilder::max_inflated_len`](crate::ClientBuilder::max_inflated_len)). It writes zlib,
//! which every php-memcached reads (it has no FastLZ compressor), when the client's
//! [`Compression`](crate::Compression) says so (`Compression::new(2000)` is PHP's threshold) and
//! PHP's factor rule holds; ints, floats and bools are never compressed, as in PHP.
//!
//! # Placement
//!
//! php-memcached's defaults are libmemcached's (`OPT_HASH` 0 = the default one-at-a-time hash,
//! `OPT_DISTRIBUTION` 0 = modula), which are this crate's: keys land on the same servers with no
//! behavior set. `Memcached::OPT_LIBKETAMA_COMPATIBLE` is libmemcached's `KETAMA_WEIGHTED`
//! behavior (PHP reads back `OPT_DISTRIBUTION` 5, `OPT_HASH` 1 = MD5): here
//! [`Behavior::KetamaWeighted(true)`](crate::Behavior::KetamaWeighted). Servers must be given
//! in the same order.
//!
//! `Memcached::OPT_PREFIX_KEY` is libmemcached's namespace, hashed without the key's prefix:
//! [`ClientBuilder::namespace`](crate::ClientBuilder::namespace) finds the keys PHP wrote with
//! it (60 of 60 on 3 servers), where [`Client::prefixed`](crate::Client::prefixed), pylibmc's
//! `key_prefix`, hashes the prefix and finds 19 of 60.
//!
//! PHP's sessions (`session.save_handler = memcached`) are strings (`session_encode()`'s text)
//! under `memcached.sess_prefix`, `memc.sess.key.` by default, on the servers of
//! `session.save_path` with `memcached.sess_consistent_hash` on and of type `ketama` by default
//! (libmemcached's `KETAMA` behavior, [`Behavior::Ketama(true)`](crate::Behavior::Ketama);
//! `ketama_weighted` is [`Behavior::KetamaWeighted(true)`](crate::Behavior::KetamaWeighted)),
//! over the binary protocol (`memcached.sess_binary_protocol`). With ketama and
//! `namespace("memc.sess.key.")` a client finds 60 of 60 sessions PHP wrote on 3 servers.
//!
//! # JSON
//!
//! php-memcached writes JSON with `json_encode` (no flags) and reads it with `json_decode`
//! (`SERIALIZER_JSON`: objects as `stdClass`; `SERIALIZER_JSON_ARRAY`: as arrays). `PhpValue`
//! (feature `php`) reads it as `json_decode` does: doubles with the bits PHP reads (PHP writes
//! the shortest digits that read back exactly), properties in the order written (a repeated name
//! keeps its first place and takes its last value; a name starting with NUL is refused), ints
//! past `i64` as floats, and `-0` as the int 0, since `json_decode("-0")` is `int(0)`. PHP writes
//! -0.0 as `-0`, and integral doubles below 10^15 without a fraction (`3` for 3.0): PHP itself
//! reads them back as ints, and so does `PhpValue`. `-0.0` and `-0e0` stay the float -0.
//!
//! # Objects that serialize themselves
//!
//! A class implementing `Serializable` is written by `serialize()` as `C:class:len:{data}` and by
//! msgpack as a map whose nil key holds 3; a class with `__serialize()` as an ordinary object
//! (`O:`) whose members are the array `__serialize()` returned, and by msgpack as a map with a
//! second nil key holding that array. Only the class's own code rebuilds such an object:
//! `PhpValue::Custom` holds the class and that string or array. In `serialize()`'s format a
//! `__serialize()` array is told from properties only by an int key (no property has one); with
//! string keys only, the object reads as `PhpValue::Object` with that array as its properties.
//!
//! # The crate's flags in PHP's format
//!
//! [`ToValue`](crate::ToValue) and [`FromValue`](crate::FromValue) speak the crate's flags
//! ([`crate::value::flags`], pylibmc's) in either format; the client translates:
//!
//! | Rust writes | crate flags | PHP flags | PHP reads |
//! |---|---|---|---|
//! | bytes, text | 0, 16 | 0 | string |
//! | integers | 4 | 1 (refused beyond `i64`) | int |
//! | `bool` | 2 | 3 (`1` or empty) | bool |
//! | `f64`, `f32` | 1 (a float's pickle) | 2 (`g_fmt` text) | float |
//! | `Json<T>` | 32 | 6 | `json_decode` (objects as `stdClass`) |
//! | [`Value::Php`](crate::Value::Php) | [`PHP`](crate::value::flags::PHP) + type × 256 | the type | as PHP wrote it |
//!
//! Any other pickle (flags 1) has no PHP equivalent and is refused
//! ([`Error::Encode`](crate::Error::Encode)). Reading maps PHP's string to 0, int to 4, and
//! double, bool, serialized, igbinary, JSON and msgpack to [`PHP`](crate::value::flags::PHP) +
//! type × 256 ([`Value::Php`](crate::Value::Php)), so that a value read as `Value` and written
//! back keeps its PHP type (`Json<T>` reads PHP's JSON values, and `String` their text); a type
//! above 7 is [`Error::Decode`](crate::Error::Decode), a compressed value that does not inflate
//! [`Error::Decompress`](crate::Error::Decompress), both naming the key and PHP's flags. The
//! user's flags (bits 16–31) pass through both ways, and `Value::Php` keeps them
//! (`user_flags`).

mod codec;
pub(crate) mod double;
mod fastlz;
#[cfg(feature = "php")]
mod value;

use std::fmt;

pub(crate) use codec::{decode, encode};
#[cfg(feature = "php")]
#[cfg_attr(docsrs, doc(cfg(feature = "php")))]
pub use value::{PhpKey, PhpValue};

/// php-memcached's flag bits.
pub mod flags {
    /// The bits of the type ([`PhpType`](super::PhpType)).
    pub const TYPE_MASK: u32 = 0xf;
    /// The value is compressed; one of the next two says how.
    pub const COMPRESSED: u32 = 1 << 4;
    /// Compressed with zlib.
    pub const ZLIB: u32 = 1 << 5;
    /// Compressed with FastLZ (php-memcached's default).
    pub const FASTLZ: u32 = 1 << 6;
    /// The user's flags (`Memcached::OPT_USER_FLAGS`), shifted left by 16.
    pub const USER_MASK: u32 = 0xffff_0000;
}

/// The type of a value php-memcached stored: the low four bits of its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PhpType {
    /// 0: a string.
    String,
    /// 1: an int, in decimal.
    Long,
    /// 2: a float, as `g_fmt` writes it.
    Double,
    /// 3: a bool, `1` or empty.
    Bool,
    /// 4: PHP's `serialize()`.
    Serialized,
    /// 5: igbinary.
    Igbinary,
    /// 6: JSON.
    Json,
    /// 7: msgpack.
    Msgpack,
}

impl PhpType {
    const ALL: [PhpType; 8] = [
        PhpType::String,
        PhpType::Long,
        PhpType::Double,
        PhpType::Bool,
        PhpType::Serialized,
        PhpType::Igbinary,
        PhpType::Json,
        PhpType::Msgpack,
    ];

    /// The type with this number (0 to 7).
    pub fn from_number(number: u32) -> Option<PhpType> {
        Self::ALL.get(number as usize).copied()
    }

    /// Its number in php-memcached's flags.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// The crate's flags for a value of this type ([`Value::Php`](crate::Value::Php)).
    pub(crate) fn crate_flags(self) -> u32 {
        use crate::value::flags::{PHP, PHP_KIND_SHIFT};
        PHP | (self.number() << PHP_KIND_SHIFT)
    }

    /// The PHP type the crate's flags carry, if they carry one.
    pub(crate) fn of_crate_flags(flags: u32) -> Option<PhpType> {
        use crate::value::flags::{PHP, PHP_KIND, PHP_KIND_SHIFT};
        if flags & PHP == 0 {
            return None;
        }
        Self::from_number((flags & PHP_KIND) >> PHP_KIND_SHIFT)
    }

    /// What to read a value of this type as, for error messages.
    pub(crate) fn read_as(self) -> &'static str {
        match self {
            PhpType::Double => "f64 or Value",
            PhpType::Bool => "bool or Value",
            _ => "Value, or PhpValue with the `php` feature",
        }
    }
}

impl fmt::Display for PhpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PhpType::String => "string",
            PhpType::Long => "int",
            PhpType::Double => "float",
            PhpType::Bool => "bool",
            PhpType::Serialized => "serialize() value",
            PhpType::Igbinary => "igbinary value",
            PhpType::Json => "JSON value",
            PhpType::Msgpack => "msgpack value",
        })
    }
}
