//! The PHP format's encode and decode steps: the crate's flags to PHP's and back, and PHP's
//! compression (a length prefix, then zlib or FastLZ).

use std::borrow::Cow;
use std::io::Write;

use flate2::write::ZlibEncoder;

use crate::client::Settings;
use crate::compression::{self, Compression, DEFAULT_MAX_INFLATED_LEN};
use crate::error::{BoxError, Error, Result};
use crate::value::{self, Encoded, float_from_pickle};

use super::{PhpType, double, fastlz, flags};

/// php-memcached's `memcached.compression_factor`: a value stays compressed only when it is
/// more than this many times its compressed size.
const COMPRESSION_FACTOR: f64 = 1.3;

/// Encodes a value for PHP: its crate flags translated, then compressed where `compress` allows
/// and the rules say so. `own` is the value's own compression, if it has one.
pub(crate) fn encode<'v>(
    encoded: Encoded<'v>,
    own: Option<Compression>,
    settings: &Settings,
    op: &str,
    compress: bool,
) -> Result<Encoded<'v>> {
    let php = to_php(encoded).map_err(Error::encode)?;
    if !compress {
        if own.is_some_and(|c| !c.is_off()) {
            return Err(Error::argument(
                "value",
                format!("{op} never compresses values"),
            ));
        }
        return Ok(php);
    }
    let compression = own.unwrap_or(settings.compression);
    let len = php.data.len();
    let php = compress_as_php(php, compression)?;
    let readable = settings.max_inflated_len.max(DEFAULT_MAX_INFLATED_LEN);
    if php.flags & flags::COMPRESSED != 0 && len > readable {
        return Err(Error::argument(
            "value",
            format!(
                "{op} of {len} bytes compressed: readers inflate at most {readable} bytes \
                 (max_inflated_len), so it could never be read back"
            ),
        ));
    }
    Ok(php)
}

/// Decodes a value php-memcached stored: inflated (taking what it inflates to from `budget`)
/// and its flags translated to the crate's, ready for `FromValue`.
pub(crate) fn decode<'a>(
    key: &[u8],
    data: &'a [u8],
    php_flags: u32,
    budget: &mut usize,
    max_inflated_len: usize,
) -> Result<(Cow<'a, [u8]>, u32)> {
    let crate_flags = crate_flags(php_flags).map_err(|source| Error::Decode {
        key: key.to_vec(),
        flags: php_flags,
        source: source.into(),
    })?;
    if php_flags & flags::COMPRESSED == 0 {
        return Ok((Cow::Borrowed(data), crate_flags));
    }
    let inflated = inflate(data, php_flags, *budget).map_err(|reason| {
        let left = match *budget < max_inflated_len {
            true => " left of this call's inflate budget",
            false => "",
        };
        Error::Decompress {
            key: key.to_vec(),
            reason: format!("{reason}{left} (PHP flags {php_flags})"),
        }
    })?;
    *budget -= inflated.len();
    Ok((Cow::Owned(inflated), crate_flags))
}

/// The crate's flags to PHP's, and the bytes PHP expects for them.
fn to_php(encoded: Encoded<'_>) -> std::result::Result<Encoded<'_>, BoxError> {
    use value::flags::{BYTES, INTEGER, JSON, LONG, PHP, PHP_KIND, PICKLE, TEXT, ZLIB};
    let user = encoded.flags & flags::USER_MASK;
    let (kind, data) = match encoded.flags & !flags::USER_MASK {
        BYTES | TEXT => (PhpType::String, encoded.data),
        LONG => (PhpType::Long, php_long(encoded.data)?),
        INTEGER => match encoded.data.as_ref() {
            b"1" => (PhpType::Bool, encoded.data),
            b"0" => (PhpType::Bool, Cow::Borrowed(&b""[..])),
            _ => (PhpType::Long, php_long(encoded.data)?),
        },
        JSON => (PhpType::Json, encoded.data),
        PICKLE => match float_from_pickle(&encoded.data) {
            Some(x) => (PhpType::Double, Cow::Owned(double::format(x).into_bytes())),
            None => return Err("a Python pickle has no PHP equivalent".into()),
        },
        f if f & PHP != 0 && f & !(PHP | PHP_KIND) == 0 => match PhpType::of_crate_flags(f) {
            Some(kind) => (kind, encoded.data),
            None => return Err(format!("flags {f} name no PHP type").into()),
        },
        f if f & ZLIB != 0 => {
            return Err(format!(
                "flags {f}: bytes compressed in pylibmc's format cannot be stored in PHP's"
            )
            .into());
        }
        f => return Err(format!("flags {f} have no PHP equivalent").into()),
    };
    Ok(Encoded {
        data,
        flags: kind.number() | user,
    })
}

/// An integer as PHP stores it: decimal, within PHP's 64-bit ints.
fn php_long(data: Cow<'_, [u8]>) -> std::result::Result<Cow<'_, [u8]>, BoxError> {
    let text = std::str::from_utf8(&data)?;
    if text.parse::<i64>().is_err() {
        return Err(format!("{text} is not a PHP int (64-bit signed)").into());
    }
    Ok(data)
}

/// PHP's flags to the crate's.
fn crate_flags(php_flags: u32) -> std::result::Result<u32, BoxError> {
    use value::flags::{BYTES, LONG};
    let user = php_flags & flags::USER_MASK;
    let kind = php_flags & flags::TYPE_MASK;
    // JSON keeps its PHP type (not `Json<T>`'s flags, which PHP would get back as a string when
    // a `Value` read here is written back); `Json<T>` reads both.
    let crate_kind = match PhpType::from_number(kind) {
        Some(PhpType::String) => BYTES,
        Some(PhpType::Long) => LONG,
        Some(other) => other.crate_flags(),
        None => return Err(unknown_type(kind)),
    };
    Ok(crate_kind | user)
}

#[cold]
fn unknown_type(kind: u32) -> BoxError {
    format!("unknown PHP type {kind} (php-memcached writes 0 to 7)").into()
}

/// Compresses as php-memcached does, with zlib: strings and serialized values only, from the
/// threshold, kept when PHP's factor rule holds, behind the 4-byte little-endian length.
fn compress_as_php(php: Encoded<'_>, compression: Compression) -> Result<Encoded<'_>> {
    let kind = php.flags & flags::TYPE_MASK;
    let compressible = !matches!(
        PhpType::from_number(kind),
        Some(PhpType::Long | PhpType::Double | PhpType::Bool)
    );
    let len = php.data.len();
    if compression.is_off() || !compressible || len == 0 || len < compression.min_len() {
        return Ok(php);
    }
    let Ok(prefix) = u32::try_from(len) else {
        return Ok(php); // no memcached item is 4 GiB
    };
    let mut stored = Vec::with_capacity(len / 2 + 4);
    stored.extend_from_slice(&prefix.to_le_bytes());
    let mut encoder = ZlibEncoder::new(stored, flate2::Compression::new(compression.level()));
    let stored = encoder
        .write_all(&php.data)
        .and_then(|()| encoder.finish())
        .map_err(Error::encode)?;
    if len as f64 <= (stored.len() - 4) as f64 * COMPRESSION_FACTOR {
        return Ok(php);
    }
    Ok(Encoded::owned(
        stored,
        php.flags | flags::COMPRESSED | flags::ZLIB,
    ))
}

/// Inflates a compressed PHP value: the length prefix, then zlib or FastLZ.
fn inflate(data: &[u8], php_flags: u32, limit: usize) -> std::result::Result<Vec<u8>, String> {
    let Some((prefix, payload)) = data.split_first_chunk::<4>() else {
        return Err(format!(
            "{} bytes, too short for the 4-byte length prefix",
            data.len()
        ));
    };
    let len = u32::from_le_bytes(*prefix) as usize;
    if len > limit {
        return Err(format!(
            "its length prefix says {len} bytes, more than the limit of {limit} bytes"
        ));
    }
    let inflated = if php_flags & flags::FASTLZ != 0 {
        fastlz::decompress(payload, len).map_err(|why| format!("corrupt FastLZ block: {why}"))?
    } else if php_flags & flags::ZLIB != 0 {
        compression::inflate(payload, len)?
    } else {
        return Err("compressed, but by neither zlib nor FastLZ".into());
    };
    if inflated.len() != len {
        return Err(format!(
            "inflates to {} bytes, not the {len} its length prefix says",
            inflated.len()
        ));
    }
    Ok(inflated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{ToValue, flags as crate_flags_};

    fn php(value: impl ToValue) -> (u32, Vec<u8>) {
        let e = to_php(value.to_value().unwrap()).unwrap();
        (e.flags, e.data.into_owned())
    }

    #[test]
    fn translates_the_crate_types_to_php() {
        assert_eq!(php("é"), (0, "é".as_bytes().to_vec()));
        assert_eq!(php(&b"\xff"[..]), (0, vec![0xff]));
        assert_eq!(php(-42i64), (1, b"-42".to_vec()));
        assert_eq!(php(true), (3, b"1".to_vec()));
        assert_eq!(php(false), (3, Vec::new()));
        assert_eq!(php(0.1f64), (2, b".1".to_vec()));
        assert_eq!(php((b"raw".to_vec(), 7 << 16)), (7 << 16, b"raw".to_vec()));
        let igbinary = crate::Value::Php {
            kind: PhpType::Igbinary,
            data: b"\0\0\0\x02\x00".to_vec(),
            user_flags: 0,
        };
        assert_eq!(php(igbinary), (5, b"\0\0\0\x02\x00".to_vec()));
        let flagged = crate::Value::Php {
            kind: PhpType::Json,
            data: b"[1]".to_vec(),
            user_flags: 7,
        };
        assert_eq!(php(flagged), (6 | 7 << 16, b"[1]".to_vec()));
        let refused = |v: &dyn ToValue| to_php(v.to_value().unwrap()).unwrap_err().to_string();
        assert!(refused(&u64::MAX).contains("64-bit"));
        assert!(refused(&crate::Value::Pickle(b"\x80\x04N.".to_vec())).contains("pickle"));
        assert!(refused(&(b"x".to_vec(), crate_flags_::ZLIB)).contains("pylibmc"));
        assert!(refused(&(b"x".to_vec(), 3)).contains("no PHP equivalent"));
    }

    #[test]
    fn translates_php_types_to_the_crate() {
        assert_eq!(crate_flags(0).unwrap(), 0);
        assert_eq!(crate_flags(1).unwrap(), crate_flags_::LONG);
        assert_eq!(
            crate_flags(6 | 3 << 16).unwrap(),
            PhpType::Json.crate_flags() | 3 << 16
        );
        assert_eq!(
            crate_flags(4 | 80).unwrap(),
            PhpType::Serialized.crate_flags()
        );
        assert!(crate_flags(9).unwrap_err().to_string().contains("type 9"));
    }

    #[test]
    fn compresses_as_php_with_its_factor_rule() {
        let on = Compression::new(2000);
        let text = "a".repeat(2000);
        let packed = compress_as_php(Encoded::borrowed(text.as_bytes(), 0), on).unwrap();
        assert_eq!(packed.flags, 48);
        assert_eq!(&packed.data[..6], b"\xd0\x07\x00\x00\x78\x9c");
        assert_eq!(inflate(&packed.data, 48, 2000).unwrap(), text.as_bytes());
        let short = &text.as_bytes()[..1999];
        assert_eq!(
            compress_as_php(Encoded::borrowed(short, 0), on)
                .unwrap()
                .flags,
            0
        );
        let digits = "1".repeat(2000);
        let long = compress_as_php(Encoded::borrowed(digits.as_bytes(), 1), on).unwrap();
        assert_eq!(long.flags, 1, "ints are never compressed");
        // Compressible, but not to 1/1.3 of its size: stays as it is.
        let noisy: Vec<u8> = (0..3000u32)
            .map(|i| (i * 7919 % 251) as u8 ^ (i >> 3) as u8)
            .collect();
        let kept = compress_as_php(Encoded::borrowed(&noisy, 0), Compression::new(1)).unwrap();
        let zlib_len = {
            let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&noisy).unwrap();
            e.finish().unwrap().len()
        };
        assert_eq!(kept.flags == 48, noisy.len() as f64 > zlib_len as f64 * 1.3);
    }

    #[test]
    fn inflate_checks_the_prefix_and_the_stream() {
        assert!(
            inflate(b"\x01\x00", 48, 10)
                .unwrap_err()
                .contains("too short")
        );
        let big = inflate(b"\xff\xff\xff\x00x", 48, 1000).unwrap_err();
        assert!(big.contains("more than the limit of 1000"), "{big}");
        assert!(
            inflate(b"\x03\x00\x00\x00abc", 16, 10)
                .unwrap_err()
                .contains("neither")
        );
        assert!(
            inflate(b"\x03\x00\x00\x00abc", 48, 10)
                .unwrap_err()
                .contains("zlib")
        );
        assert!(
            inflate(b"\x03\x00\x00\x00abc", 80, 10)
                .unwrap_err()
                .contains("FastLZ")
        );
    }
}
