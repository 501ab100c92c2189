//! Values and their flags, in pylibmc's format so Rust and Python can share a cache.
//!
//! | Rust type | stored as | flags |
//! |---|---|---|
//! | `&[u8]`, `Vec<u8>` | the bytes | 0 ([`flags::BYTES`]) |
//! | `&str`, `String` | UTF-8 | 16 ([`flags::TEXT`]) |
//! | integers | decimal ASCII, so `incr`/`decr` work on them | 4 ([`flags::LONG`]) |
//!
//! Reading is by flags: text and integers also read back as bytes, and a number stored as bytes
//! or text (a counter after `incr`) reads back as an integer.
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

use crate::error::BoxError;

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
    /// The bits that say what type a value is.
    pub const TYPE_MASK: u32 = PICKLE | INTEGER | LONG | TEXT;
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

/// Checks that a value is not of a type the caller cannot read as plain data.
fn check_plain(flags: u32) -> Result<(), BoxError> {
    if flags & flags::ZLIB != 0 {
        return Err("the value is zlib-compressed".into());
    }
    match flags & flags::TYPE_MASK {
        flags::BYTES | flags::TEXT | flags::INTEGER | flags::LONG => Ok(()),
        flags::PICKLE => Err("the value is a Python pickle".into()),
        other => Err(format!("unknown type flags {other}").into()),
    }
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
        assert!(Vec::<u8>::from_value(b"x", 8).is_err());
        assert!(Vec::<u8>::from_value(b"x", 3).is_err());
    }
}
