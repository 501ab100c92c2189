//! Floats: pickled as pylibmc stores Python's `float`, and PHP's doubles.
//!
//! pylibmc has no flags for floats: it pickles them (flags 1), so a Rust `f64` is stored as the
//! pickle of a float, which Python reads as a `float`. Reading takes a pickled float of any
//! protocol (pylibmc writes protocol 5), a PHP double, or a number stored as text or bytes.

use crate::error::BoxError;
use crate::php::{PhpType, double};

use super::{Encoded, FromValue, ToValue, check_plain, flags};

/// The pickle of a float in protocol 2: `PROTO 2`, `BINFLOAT` and its 8 big-endian bytes, `STOP`.
/// Every Python 3 reads it.
pub(crate) fn float_pickle(x: f64) -> Vec<u8> {
    let mut pickle = Vec::with_capacity(12);
    pickle.extend_from_slice(&[0x80, 2, b'G']);
    pickle.extend_from_slice(&x.to_be_bytes());
    pickle.push(b'.');
    pickle
}

/// The float a pickle holds, if it holds nothing but a float: `F<repr>\n` (protocol 0) or
/// `G<8 bytes>` (1 and up), after the protocol and a frame, before a memo and `STOP`.
pub(crate) fn float_from_pickle(pickle: &[u8]) -> Option<f64> {
    let mut rest = pickle;
    if let [0x80, _protocol, tail @ ..] = rest {
        rest = tail;
    }
    if let [0x95, tail @ ..] = rest {
        rest = tail.get(8..)?; // FRAME and its 8-byte length
    }
    let (x, rest) = match rest {
        [b'G', tail @ ..] if tail.len() >= 8 => {
            let (bytes, tail) = tail.split_at(8);
            (f64::from_be_bytes(bytes.try_into().ok()?), tail)
        }
        [b'F', tail @ ..] => {
            let end = tail.iter().position(|&b| b == b'\n')?;
            let repr = std::str::from_utf8(&tail[..end]).ok()?;
            (repr.parse().ok()?, &tail[end + 1..])
        }
        _ => return None,
    };
    let rest = rest.strip_prefix(&[0x94]).unwrap_or(rest); // MEMOIZE
    (rest == b".").then_some(x)
}

/// The pickle of the float, with flags 1, as pylibmc stores a Python `float`. A client in PHP's
/// format stores a PHP double instead.
impl ToValue for f64 {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        Ok(Encoded::owned(float_pickle(*self), flags::PICKLE))
    }
}

/// Widened to `f64` (exactly), and stored as it.
impl ToValue for f32 {
    fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
        Ok(Encoded::owned(
            float_pickle(f64::from(*self)),
            flags::PICKLE,
        ))
    }
}

/// A pickled float, a PHP double, or a number stored as text, bytes or an integer.
impl FromValue for f64 {
    fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError> {
        if PhpType::of_crate_flags(flags) == Some(PhpType::Double) {
            return double::parse(data);
        }
        if flags & (flags::TYPE_MASK | flags::PHP) == flags::PICKLE {
            return float_from_pickle(data).ok_or_else(|| {
                "the value is a Python pickle of something other than a float".into()
            });
        }
        check_plain(flags)?;
        let text = std::str::from_utf8(data)?.trim_end_matches(' ');
        Ok(text.parse()?)
    }
}

/// As `f64`, when the value is exactly an `f32` (or not a number).
impl FromValue for f32 {
    fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError> {
        let wide = f64::from_value(data, flags)?;
        let narrow = wide as f32;
        if f64::from(narrow) == wide || wide.is_nan() {
            Ok(narrow)
        } else {
            Err(format!("{wide} is not exactly an f32").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_pickled_as_python_floats() {
        let e = 1.5f64.to_value().unwrap();
        assert_eq!(e.flags, flags::PICKLE);
        // pickle.dumps(1.5, 2)
        assert_eq!(e.data.as_ref(), b"\x80\x02G?\xf8\x00\x00\x00\x00\x00\x00.");
        assert_eq!(f64::from_value(&e.data, e.flags).unwrap(), 1.5);
        assert_eq!(f32::from_value(&e.data, e.flags).unwrap(), 1.5);
        assert!(f32::from_value(&0.1f64.to_value().unwrap().data, 1).is_err());
        let back = f32::from_value(&0.1f32.to_value().unwrap().data, 1).unwrap();
        assert_eq!(back, 0.1f32);
    }

    #[test]
    fn reads_pickled_floats_of_every_protocol() {
        // pickle.dumps(1.5, protocol) for protocols 0 to 5, as Python 3.11 writes them.
        let pickles: [&[u8]; 6] = [
            b"F1.5\n.",
            b"G?\xf8\x00\x00\x00\x00\x00\x00.",
            b"\x80\x02G?\xf8\x00\x00\x00\x00\x00\x00.",
            b"\x80\x03G?\xf8\x00\x00\x00\x00\x00\x00.",
            b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00G?\xf8\x00\x00\x00\x00\x00\x00.",
            b"\x80\x05\x95\n\x00\x00\x00\x00\x00\x00\x00G?\xf8\x00\x00\x00\x00\x00\x00.",
        ];
        for pickle in pickles {
            assert_eq!(float_from_pickle(pickle), Some(1.5), "{pickle:?}");
        }
        assert_eq!(float_from_pickle(b"Finf\n."), Some(f64::INFINITY));
        // Not floats: an int, a truncated float, a float followed by more.
        assert_eq!(float_from_pickle(b"\x80\x04K\x01."), None);
        assert_eq!(float_from_pickle(b"G?\xf8\x00."), None);
        assert_eq!(float_from_pickle(b"G?\xf8\x00\x00\x00\x00\x00\x00N."), None);
        assert!(f64::from_value(b"\x80\x04K\x01.", 1).is_err());
    }

    #[test]
    fn reads_numbers_stored_as_text() {
        assert_eq!(f64::from_value(b"2.25", 16).unwrap(), 2.25);
        assert_eq!(f64::from_value(b"42", 4).unwrap(), 42.0);
        assert!(f64::from_value(b"x", 16).is_err());
        let php_double = flags::PHP | (2 << flags::PHP_KIND_SHIFT);
        assert_eq!(f64::from_value(b".1", php_double).unwrap(), 0.1);
        let php_bool = flags::PHP | (3 << flags::PHP_KIND_SHIFT);
        assert!(f64::from_value(b"1", php_bool).is_err());
    }
}
