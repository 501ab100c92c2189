//! zlib compression of values, in the format pylibmc and Python's `zlib` use.

use std::io::{Read, Write};

use flate2::bufread::ZlibDecoder;
use flate2::write::ZlibEncoder;

use crate::error::{BoxError, Error, Result};
use crate::value::{Encoded, ToValue, flags};

/// The default limit on the size of an inflated value: a corrupt or hostile value cannot make a
/// read allocate more than this.
pub const DEFAULT_MAX_INFLATED_LEN: usize = 64 * 1024 * 1024;

/// When and how hard to compress values.
///
/// As in pylibmc: a value is compressed only when its encoded bytes are at least `min_len` long,
/// and kept compressed only when that made it strictly smaller; compressed values carry the zlib
/// flag (8) on top of their type flags. Off by default. Compression applies to `set`, `add` and
/// `replace`, never to `cas`, `append` or `prepend`: bytes appended to a compressed value would
/// corrupt it.
///
/// ```
/// use libmemcached::Compression;
///
/// let c = Compression::new(1024);               // values of 1 KiB and more, zlib level 6
/// let fast = Compression::with_level(1024, 1)?; // levels 0 (off) to 9
/// assert!(Compression::OFF.is_off());
/// # Ok::<(), libmemcached::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    min_len: usize,
    level: u32,
}

impl Default for Compression {
    fn default() -> Self {
        Self::OFF
    }
}

impl Compression {
    /// No compression.
    pub const OFF: Compression = Compression {
        min_len: 0,
        level: 6,
    };

    /// Compress values of at least `min_len` bytes at zlib's default level (6). `0` is off.
    pub fn new(min_len: usize) -> Self {
        Self { min_len, level: 6 }
    }

    /// Compress values of at least `min_len` bytes at `level`, from 0 (off) to 9 (smallest).
    pub fn with_level(min_len: usize, level: u32) -> Result<Self> {
        if level > 9 {
            return Err(Error::argument(
                "level",
                format!("zlib level {level}: expected 0 to 9"),
            ));
        }
        Ok(Self { min_len, level })
    }

    /// The smallest value that is compressed.
    pub fn min_len(&self) -> usize {
        self.min_len
    }

    /// The zlib level.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Whether nothing is compressed.
    pub fn is_off(&self) -> bool {
        self.min_len == 0 || self.level == 0
    }

    /// Compresses `encoded` if the rules say so.
    #[inline]
    pub(crate) fn apply<'a>(&self, encoded: Encoded<'a>) -> Result<Encoded<'a>> {
        if self.is_off() || encoded.data.len() < self.min_len || encoded.flags & flags::ZLIB != 0 {
            return Ok(encoded);
        }
        self.compress(encoded)
    }

    /// Compresses `encoded`, keeping the result only when it is smaller.
    fn compress<'a>(&self, encoded: Encoded<'a>) -> Result<Encoded<'a>> {
        let mut encoder = ZlibEncoder::new(
            Vec::with_capacity(encoded.data.len() / 2),
            flate2::Compression::new(self.level),
        );
        let compressed = encoder
            .write_all(&encoded.data)
            .and_then(|()| encoder.finish())
            .map_err(Error::encode)?;
        if compressed.len() < encoded.data.len() {
            Ok(Encoded::owned(compressed, encoded.flags | flags::ZLIB))
        } else {
            Ok(encoded)
        }
    }
}

/// A value stored with its own compression settings instead of the client's.
///
/// ```no_run
/// # let mc = libmemcached::Client::new(["127.0.0.1:11211"])?;
/// use libmemcached::{Compressed, Compression};
///
/// let page = "<html>...</html>".repeat(1000);
/// mc.set("page", Compressed::new(&page, Compression::with_level(1, 9)?), 0)?;
/// mc.set("raw", Compressed::new("not this one", Compression::OFF), 0)?;
/// # Ok::<(), libmemcached::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Compressed<V> {
    /// The value.
    pub value: V,
    /// How to compress it.
    pub compression: Compression,
}

impl<V> Compressed<V> {
    /// `value` with `compression`.
    pub fn new(value: V, compression: Compression) -> Self {
        Self { value, compression }
    }
}

impl<V: ToValue> ToValue for Compressed<V> {
    fn to_value(&self) -> std::result::Result<Encoded<'_>, BoxError> {
        self.value.to_value()
    }

    fn compression(&self) -> Option<Compression> {
        Some(self.compression)
    }
}

/// Inflates a zlib stream into at most `limit` bytes.
pub(crate) fn inflate(data: &[u8], limit: usize) -> std::result::Result<Vec<u8>, String> {
    let mut decoder = ZlibDecoder::new(data);
    let mut inflated = Vec::new();
    (&mut decoder)
        .take((limit as u64).saturating_add(1))
        .read_to_end(&mut inflated)
        .map_err(|err| format!("corrupt zlib stream: {err}"))?;
    if inflated.len() > limit {
        return Err(format!("inflates to more than the limit of {limit} bytes"));
    }
    let trailing = data.len() - decoder.total_in() as usize;
    if trailing != 0 {
        return Err(format!(
            "{trailing} bytes follow the compressed stream (was the value appended to?)"
        ));
    }
    Ok(inflated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(c: Compression, data: &[u8]) -> Encoded<'_> {
        c.apply(Encoded::borrowed(data, flags::TEXT)).unwrap()
    }

    #[test]
    fn compresses_only_from_min_len_and_only_when_smaller() {
        let long = "a".repeat(100);
        let on = Compression::new(100);
        let packed = apply(on, long.as_bytes());
        assert_eq!(packed.flags, flags::TEXT | flags::ZLIB);
        assert_eq!(
            &packed.data[..2],
            b"\x78\x9c",
            "zlib header at the default level"
        );
        assert_eq!(inflate(&packed.data, 1000).unwrap(), long.as_bytes());

        assert_eq!(
            apply(on, &long.as_bytes()[..99]).flags,
            flags::TEXT,
            "below min_len"
        );
        assert_eq!(
            apply(Compression::new(1), b"abc").flags,
            flags::TEXT,
            "not smaller"
        );
        assert_eq!(apply(Compression::OFF, long.as_bytes()).flags, flags::TEXT);
        let level0 = Compression::with_level(1, 0).unwrap();
        assert_eq!(
            apply(level0, long.as_bytes()).flags,
            flags::TEXT,
            "level 0 is off"
        );
        assert!(Compression::with_level(1, 10).is_err());
    }

    #[test]
    fn inflate_refuses_corrupt_trailing_and_oversized_streams() {
        let packed = apply(Compression::new(1), &[7u8; 10_000]).data.into_owned();
        assert_eq!(inflate(&packed, 10_000).unwrap().len(), 10_000);
        assert!(inflate(&packed, 9_999).unwrap_err().contains("limit"));
        assert!(
            inflate(b"not zlib at all", 100)
                .unwrap_err()
                .contains("corrupt")
        );
        let mut appended = packed.clone();
        appended.extend_from_slice(b"tail");
        assert!(inflate(&appended, 10_000).unwrap_err().contains("appended"));
        assert!(
            inflate(&packed[..packed.len() - 3], 10_000).is_err(),
            "truncated"
        );
    }
}
