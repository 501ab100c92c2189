//! Values and their flags, in pylibmc's format so Rust and Python can share a cache.
//!
//! | Rust type | stored as | flags | Python reads |
//! |---|---|---|---|
//! | `&[u8]`, `Vec<u8>`, `Cow<[u8]>` | the bytes | 0 ([`flags::BYTES`]) | `bytes` |
//! | `&str`, `String`, `Cow<str>` | UTF-8 | 16 ([`flags::TEXT`]) | `str` |
//! | integers | decimal ASCII, so `incr`/`decr` work on them | 4 ([`flags::LONG`]) | `int` |
//! | `bool` | `"1"` or `"0"` | 2 ([`flags::INTEGER`]) | `int` (1 or 0), as pylibmc |
//! | `f64`, `f32` | a pickle of the float (protocol 2) | 1 ([`flags::PICKLE`]) | `float` |
//! | [`Value`] | by variant | by variant | by variant |
//! | [`Encoded`], `(Vec<u8>, u32)` | the bytes | as given | by flags |
//! | `Json<T>` (feature `serde`) | JSON | 32 ([`flags::JSON`]) | `bytes` |
//!
//! A compressed value ([`Compression`]) carries the zlib flag (8) too and
//! is inflated before decoding. Python's pickles (flags 1) are opaque bytes here:
//! [`Value::Pickle`], except that a pickled float reads as `f64`.
//!
//! These are the flags of pylibmc's format, the default. A client in PHP's format
//! ([`ValueFormat::Php`](crate::ValueFormat)) translates them to php-memcached's on the way out and
//! back on the way in, so the same types work there; PHP's own types (doubles, booleans,
//! serialized arrays) read as [`Value::Php`] (see [`crate::php`]).
//!
//! Reading is by flags: text and integers also read back as bytes, and a number stored as bytes
//! or text (a counter after `incr`) reads back as an integer. Reading a value into a type that
//! does not fit its flags is [`Error::Decode`](crate::Error::Decode), naming the key and the
//! flags. Bits outside pylibmc's type mask (other than 8) are ignored, as pylibmc does.
//!
//! Your own types implement [`ToValue`] and [`FromValue`]:
//!
//! ```
//! use libmemcached::{BoxError, Encoded, FromValue, ToValue};
//!
//! struct Point { x: i32, y: i32 }
//!
//! impl ToValue for Point {
//!     fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
//!         Ok(Encoded::owned(format!("{},{}", self.x, self.y).into_bytes(), 0))
//!     }
//! }
//!
//! impl FromValue for Point {
//!     fn from_value(data: &[u8], _flags: u32) -> Result<Self, BoxError> {
//!         let text = std::str::from_utf8(data)?;
//!         let (x, y) = text.split_once(',').ok_or("expected x,y")?;
//!         Ok(Point { x: x.parse()?, y: y.parse()? })
//!     }
//! }
//!
//! let encoded = Point { x: 1, y: -2 }.to_value().unwrap();
//! let back = Point::from_value(&encoded.data, encoded.flags).unwrap();
//! assert_eq!((back.x, back.y), (1, -2));
//! ```

use std::borrow::Cow;

use crate::compression::Compression;
use crate::error::BoxError;
use crate::php::PhpType;

mod float;

pub(crate) use float::float_from_pickle;
#[cfg(all(test, feature = "php"))]
pub(crate) use float::float_pickle;

/// pylibmc's flag bits (the same as python-memcached's).
pub mod flags {
    /// Raw bytes.
    pub const BYTES: u32 = 0;
    /// A Python pickle.
    pub const PICKLE: u32 = 1 << 0;
    /// An integer in decimal ASCII (pylibmc writes it for `bool`).
    pub const INTEGER: u32 = 1 << 1;
    /// An integer in decimal ASCII (pylibmc writes it for `int`).
    pub const LONG: u32 = 1 << 2;
    /// The value is zlib-compressed; combined with the type bits.
    pub const ZLIB: u32 = 1 << 3;
    /// UTF-8 text.
    pub const TEXT: u32 = 1 << 4;
    /// JSON from `Json<T>` (feature `serde`). Outside pylibmc's type mask, so pylibmc reads these
    /// values as bytes.
    pub const JSON: u32 = 1 << 5;
    /// The bits that say what type a value is.
    pub const TYPE_MASK: u32 = PICKLE | INTEGER | LONG | TEXT;
    /// A PHP type pylibmc has no flags for ([`Value::Php`](super::Value::Php)): this bit, and
    /// the PHP type number ([`PhpType`](crate::php::PhpType)) in bits 8 to 11 ([`PHP_KIND`]).
    /// Neither php-memcached nor pylibmc sets bits 8 to 15, and pylibmc reads these values as
    /// bytes.
    pub const PHP: u32 = 1 << 12;
    /// Where a [`PHP`] value's type number is.
    pub const PHP_KIND: u32 = 0xf << PHP_KIND_SHIFT;
    /// The shift of [`PHP_KIND`].
    pub const PHP_KIND_SHIFT: u32 = 8;
}

/// A value ready to store: its bytes and its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded<'a> {
    /// The bytes sent to the server.
    pub data: Cow<'a, [u8]>,
    /// The flags stored with them.
    pub flags: u32,
}

impl<'a> Encoded<'a> {
    /// Borrowed bytes with the given flags.
    pub fn borrowed(data: &'a [u8], flags: u32) -> Self {
        Self {
            data: Cow::Borrowed(data),
            flags,
        }
    }

    /// Owned bytes with the given flags.
    pub fn owned(data: Vec<u8>, flags: u32) -> Self {
        Self {
            data: Cow::Owned(data),
            flags,
        }
    }
}

/// A type that can be stored.
pub trait ToValue {
    /// The bytes and flags to store.
    fn to_value(&self) -> Result<Encoded<'_>, BoxError>;

    /// Compression for this value instead of the client's; `None` (the default) uses the
    /// client's. [`Compressed`](crate::Compressed) sets it.
    fn compression(&self) -> Option<Compression> {
        None
    }
}

/// A type that can be read back from stored bytes and flags.
pub trait FromValue: Sized {
    /// Decodes a value. Compressed values arrive already inflated, with their flags as stored.
    fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError>;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        (**self).to_value()
    }

    fn compression(&self) -> Option<Compression> {
        (**self).compression()
    }
}

/// Bytes with flags of your choosing: the escape hatch for other clients' formats.
impl ToValue for Encoded<'_> {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        Ok(Encoded::borrowed(&self.data, self.flags))
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        Ok(Encoded::borrowed(self, flags::BYTES))
    }
}

impl<const N: usize> ToValue for [u8; N] {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        Ok(Encoded::borrowed(self, flags::BYTES))
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        Ok(Encoded::borrowed(self, flags::BYTES))
    }
}

impl ToValue for str {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        Ok(Encoded::borrowed(self.as_bytes(), flags::TEXT))
    }
}

impl ToValue for String {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        self.as_str().to_value()
    }
}

impl ToValue for Cow<'_, str> {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        self.as_ref().to_value()
    }
}

impl ToValue for Cow<'_, [u8]> {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        self.as_ref().to_value()
    }
}

/// `"1"` or `"0"` with flags 2, as pylibmc writes `True` and `False`.
impl ToValue for bool {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        let digit: &'static [u8] = if *self { b"1" } else { b"0" };
        Ok(Encoded::borrowed(digit, flags::INTEGER))
    }
}

/// Raw bytes with their flags.
impl ToValue for (Vec<u8>, u32) {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        Ok(Encoded::borrowed(&self.0, self.1))
    }
}

/// Raw bytes with their flags.
impl ToValue for (&[u8], u32) {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        Ok(Encoded::borrowed(self.0, self.1))
    }
}

/// Checks that a value is bytes, text or a number, which all read as plain data.
#[inline]
fn check_plain(flags: u32) -> Result<(), BoxError> {
    match flags & (flags::TYPE_MASK | flags::PHP) {
        flags::BYTES | flags::TEXT | flags::INTEGER | flags::LONG => Ok(()),
        // PHP's JSON values are JSON text.
        _ if PhpType::of_crate_flags(flags) == Some(PhpType::Json) => Ok(()),
        _ => not_plain(flags),
    }
}

#[cold]
fn not_plain(flags: u32) -> Result<(), BoxError> {
    if let Some(kind) = PhpType::of_crate_flags(flags) {
        return Err(format!("the value is a PHP {kind} (read it as {})", kind.read_as()).into());
    }
    match flags & flags::TYPE_MASK {
        flags::PICKLE => Err("the value is a Python pickle (read it as Value::Pickle)".into()),
        other => Err(format!("unknown type flags {other}").into()),
    }
}

/// Raw bytes with their flags as stored (less the zlib flag once inflated), whatever they are.
impl FromValue for (Vec<u8>, u32) {
    fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError> {
        Ok((data.to_vec(), flags & !flags::ZLIB))
    }
}

/// Raw bytes with their flags as stored (less the zlib flag once inflated), whatever they are.
impl FromValue for Encoded<'static> {
    fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError> {
        Ok(Encoded::owned(data.to_vec(), flags & !flags::ZLIB))
    }
}

/// `true` for `1`, `false` for `0`, stored as a number, text or bytes; and a PHP `bool`
/// (`"1"` or empty), read as PHP reads it: true when it starts with `1`.
impl FromValue for bool {
    fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError> {
        if PhpType::of_crate_flags(flags) == Some(PhpType::Bool) {
            return Ok(data.first() == Some(&b'1'));
        }
        match u8::from_value(data, flags)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("{other} is not a boolean (0 or 1)").into()),
        }
    }
}

/// Any value, decoded by its flags, as pylibmc decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value {
    /// Bytes (flags 0).
    Bytes(Vec<u8>),
    /// UTF-8 text (flags 16).
    Text(String),
    /// An integer (flags 4, or 2 as pylibmc writes `bool`s and python-memcached writes `int`s).
    Int(i128),
    /// An integer beyond `i128` (Python's are unbounded), as decimal digits with an optional
    /// leading `-`.
    BigInt(String),
    /// A Python pickle (flags 1), as stored.
    Pickle(Vec<u8>),
    /// A PHP value with no variant of its own (a double, a bool, a PHP-serialized, igbinary,
    /// JSON or msgpack value), as php-memcached stored it: flags [`flags::PHP`] and its type.
    /// Written back in PHP's format it is the same value to PHP, with the same type; `f64`,
    /// `bool`, `Json<T>` (JSON) and, with the `php` feature, `php::PhpValue` decode it.
    Php {
        /// Its PHP type.
        kind: PhpType,
        /// The bytes as php-memcached wrote them (inflated).
        data: Vec<u8>,
        /// PHP's user flags (`Memcached::OPT_USER_FLAGS`, which `Memcached::GET_EXTENDED`
        /// reads back; the top 16 bits of the stored flags), 0 unless PHP set some. Written
        /// back with the value.
        user_flags: u16,
    },
    /// A value whose type flags this crate does not know (such as 3), as stored.
    Other {
        /// The flags, less the zlib flag.
        flags: u32,
        /// The bytes.
        data: Vec<u8>,
    },
}

impl ToValue for Value {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        Ok(match self {
            Value::Bytes(b) => Encoded::borrowed(b, flags::BYTES),
            Value::Text(t) => Encoded::borrowed(t.as_bytes(), flags::TEXT),
            Value::Int(i) => Encoded::owned(i.to_string().into_bytes(), flags::LONG),
            Value::BigInt(digits) => {
                check_big_int(digits)?;
                Encoded::borrowed(digits.as_bytes(), flags::LONG)
            }
            Value::Pickle(p) => Encoded::borrowed(p, flags::PICKLE),
            Value::Php {
                kind,
                data,
                user_flags,
            } => Encoded::borrowed(data, kind.crate_flags() | u32::from(*user_flags) << 16),
            Value::Other { flags, data } => Encoded::borrowed(data, *flags),
        })
    }
}

impl FromValue for Value {
    fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError> {
        if flags & flags::PHP != 0 {
            return Ok(match PhpType::of_crate_flags(flags) {
                Some(kind) => Value::Php {
                    kind,
                    data: data.to_vec(),
                    user_flags: (flags >> 16) as u16,
                },
                None => Value::Other {
                    flags: flags & !flags::ZLIB,
                    data: data.to_vec(),
                },
            });
        }
        Ok(match flags & flags::TYPE_MASK {
            flags::BYTES => Value::Bytes(data.to_vec()),
            flags::TEXT => Value::Text(std::str::from_utf8(data)?.to_owned()),
            flags::PICKLE => Value::Pickle(data.to_vec()),
            flags::INTEGER | flags::LONG => {
                let text = std::str::from_utf8(data)?.trim_end_matches(' ');
                match text.parse() {
                    Ok(i) => Value::Int(i),
                    Err(_) => {
                        check_big_int(text)?;
                        Value::BigInt(text.to_owned())
                    }
                }
            }
            _ => Value::Other {
                flags: flags & !flags::ZLIB,
                data: data.to_vec(),
            },
        })
    }
}

fn check_big_int(text: &str) -> Result<(), BoxError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not an integer").into());
    }
    Ok(())
}

impl FromValue for Vec<u8> {
    fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError> {
        check_plain(flags)?;
        Ok(data.to_vec())
    }
}

impl FromValue for String {
    fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError> {
        check_plain(flags)?;
        Ok(std::str::from_utf8(data)?.to_owned())
    }
}

macro_rules! integers {
    ($($t:ty)*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
                Ok(Encoded::owned(self.to_string().into_bytes(), flags::LONG))
            }
        }

        impl FromValue for $t {
            fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError> {
                check_plain(flags)?;
                // memcached pads a counter that shrank under `decr` with trailing spaces.
                let text = std::str::from_utf8(data)?.trim_end_matches(' ');
                Ok(text.parse()?)
            }
        }
    )*};
}

integers!(i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize);

/// The client's decoding of fetched bytes (inflated within the client's limit, then
/// [`FromValue::from_value`]), for the fuzz targets in `fuzz/`. It exists only in builds with
/// `--cfg fuzzing`, as `cargo fuzz` makes them: not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_decode<V: FromValue>(
    client: &crate::Client,
    data: &[u8],
    flags: u32,
) -> crate::Result<V> {
    client.decode(b"fuzz", data, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_with_pylibmc_flags() {
        assert_eq!(b"ab"[..].to_value().unwrap(), Encoded::borrowed(b"ab", 0));
        assert_eq!(
            "é".to_value().unwrap(),
            Encoded::borrowed("é".as_bytes(), 16)
        );
        assert_eq!((-42i64).to_value().unwrap(), Encoded::borrowed(b"-42", 4));
        assert_eq!(
            u64::MAX.to_value().unwrap().data.as_ref(),
            b"18446744073709551615"
        );
    }

    #[test]
    fn decodes_by_flags() {
        assert_eq!(String::from_value(b"hi", 16).unwrap(), "hi");
        assert_eq!(String::from_value(b"hi", 0).unwrap(), "hi");
        assert_eq!(Vec::<u8>::from_value(b"12", 4).unwrap(), b"12");
        assert_eq!(u64::from_value(b"12", 0).unwrap(), 12);
        assert_eq!(i64::from_value(b"9  ", 4).unwrap(), 9);
        assert!(String::from_value(&[0xff], 16).is_err());
        assert!(u8::from_value(b"300", 4).is_err());
        assert!(Vec::<u8>::from_value(b"x", 1).is_err());
        assert!(Vec::<u8>::from_value(b"x", 3).is_err());
        assert_eq!(
            Vec::<u8>::from_value(b"x", 32).unwrap(),
            b"x",
            "bits beyond the mask"
        );
        assert!(bool::from_value(b"1", 2).unwrap());
        assert!(!bool::from_value(b"0", 4).unwrap());
        assert!(bool::from_value(b"2", 2).is_err());
    }

    #[test]
    fn values_decode_like_pylibmc() {
        assert_eq!(
            Value::from_value(b"x", 0).unwrap(),
            Value::Bytes(b"x".to_vec())
        );
        assert_eq!(
            Value::from_value(b"x", 32).unwrap(),
            Value::Bytes(b"x".to_vec())
        );
        assert_eq!(
            Value::from_value("é".as_bytes(), 16).unwrap(),
            Value::Text("é".into())
        );
        assert_eq!(Value::from_value(b"-5", 4).unwrap(), Value::Int(-5));
        assert_eq!(Value::from_value(b"1", 2).unwrap(), Value::Int(1));
        let big = "1180591620717411303424"; // 2**70
        assert_eq!(
            Value::from_value(big.as_bytes(), 4).unwrap(),
            Value::Int(1 << 70)
        );
        let huge = "1".repeat(60);
        assert_eq!(
            Value::from_value(huge.as_bytes(), 4).unwrap(),
            Value::BigInt(huge.clone())
        );
        assert!(Value::from_value(b"12a", 4).is_err());
        assert_eq!(
            Value::from_value(b"\x80", 1).unwrap(),
            Value::Pickle(b"\x80".to_vec())
        );
        assert_eq!(
            Value::from_value(b"?", 3 | 8).unwrap(),
            Value::Other {
                flags: 3,
                data: b"?".to_vec()
            }
        );
        for v in [Value::Int(-7), Value::BigInt(huge), Value::Text("t".into())] {
            let e = v.to_value().unwrap();
            assert_eq!(Value::from_value(&e.data, e.flags).unwrap(), v);
        }
        assert!(Value::BigInt("12x".into()).to_value().is_err());
    }
}
