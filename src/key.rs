//! Key checks, done before libmemcached sees a key: some bad keys make Debian's libmemcached
//! abort the process or put a connection's replies out of step.

use crate::error::{Error, InvalidKeyReason, Result};

/// The longest key memcached accepts, in bytes, including any prefix or namespace.
pub const MAX_KEY_LEN: usize = 250;

/// The rules for one client's keys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// The length of the namespace libmemcached puts in front of every key.
    pub namespace_len: usize,
    /// Whether the protocol is binary, which takes any byte in a key.
    pub binary: bool,
}

impl Rules {
    #[inline]
    pub(crate) fn check(self, key: &[u8]) -> Result<()> {
        check(key, self.namespace_len, self.binary)
    }
}

/// Checks `key` (sent after `prefix_len` bytes of prefix) for the given protocol.
#[inline]
pub(crate) fn check(key: &[u8], prefix_len: usize, binary: bool) -> Result<()> {
    let fine = !key.is_empty()
        && key.len() + prefix_len <= MAX_KEY_LEN
        && (binary || ascii_bytes_allowed(key));
    if fine {
        Ok(())
    } else {
        refuse(key, prefix_len, binary)
    }
}

/// Whether no byte is a space, a control character or DEL, eight bytes at a time: the usual
/// key is checked in a few dozen instructions.
#[inline]
fn ascii_bytes_allowed(key: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Non-zero if any byte of `x` is below 0x21 or is 0x7f: the classic "has a byte less than
    // n" and "has a zero byte" tests, exact as to whether any byte matches.
    let refused = |x: u64| {
        let below = x.wrapping_sub(ONES * 0x21) & !x & HIGH;
        let del = x ^ (ONES * 0x7f);
        below | (del.wrapping_sub(ONES) & !del & HIGH)
    };
    let word = |bytes: &[u8]| {
        let mut word = [0; 8];
        word.copy_from_slice(bytes);
        u64::from_ne_bytes(word)
    };
    let n = key.len();
    if n < 8 {
        return key.iter().all(|&b| b > b' ' && b != 0x7f);
    }
    // The first and last eight bytes (overlapping for keys under 16), then the words between.
    let mut found = refused(word(&key[..8])) | refused(word(&key[n - 8..]));
    let mut start = 8;
    while start + 8 < n {
        found |= refused(word(&key[start..start + 8]));
        start += 8;
    }
    found == 0
}

/// The error for a key [`check`] did not pass.
#[cold]
fn refuse(key: &[u8], prefix_len: usize, binary: bool) -> Result<()> {
    let reason = if key.is_empty() {
        InvalidKeyReason::Empty
    } else if key.len() + prefix_len > MAX_KEY_LEN {
        InvalidKeyReason::TooLong {
            len: key.len() + prefix_len,
            max: MAX_KEY_LEN,
        }
    } else if let Some(position) = (!binary)
        .then(|| key.iter().position(|&b| b <= b' ' || b == 0x7f))
        .flatten()
    {
        InvalidKeyReason::ForbiddenByte {
            byte: key[position],
            position,
        }
    } else {
        return Ok(());
    };
    Err(Error::InvalidKey {
        key: key.to_vec(),
        reason,
    })
}

/// A key for messages: text where it is UTF-8, escapes elsewhere, long keys shortened.
pub(crate) fn display(key: &[u8]) -> String {
    const SHOWN: usize = 64;
    let shown = &key[..key.len().min(SHOWN)];
    let mut text = format!("{:?}", String::from_utf8_lossy(shown));
    if key.len() > SHOWN {
        text.push_str(&format!("... ({} bytes)", key.len()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refused_byte_is_found_at_every_position() {
        for len in 1..=40 {
            let mut key = vec![b'k'; len];
            assert!(ascii_bytes_allowed(&key), "{len}");
            for position in 0..len {
                for byte in (0..=0x20).chain([0x7f]) {
                    key[position] = byte;
                    assert!(!ascii_bytes_allowed(&key), "{len} {position} {byte:#x}");
                }
                for byte in [0x21, 0x7e, 0x80, 0xa0, 0xff] {
                    key[position] = byte;
                    assert!(ascii_bytes_allowed(&key), "{len} {position} {byte:#x}");
                }
                key[position] = b'k';
            }
        }
    }

    fn reason(key: &[u8], prefix_len: usize, binary: bool) -> Option<InvalidKeyReason> {
        match check(key, prefix_len, binary) {
            Ok(()) => None,
            Err(Error::InvalidKey { reason, .. }) => Some(reason),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn lengths() {
        assert_eq!(reason(b"", 0, false), Some(InvalidKeyReason::Empty));
        assert_eq!(reason(&[b'k'; 250], 0, false), None);
        assert_eq!(
            reason(&[b'k'; 251], 0, true),
            Some(InvalidKeyReason::TooLong { len: 251, max: 250 })
        );
        assert_eq!(
            reason(&[b'k'; 246], 5, false),
            Some(InvalidKeyReason::TooLong { len: 251, max: 250 })
        );
    }

    #[test]
    fn ascii_forbids_spaces_and_controls_binary_does_not() {
        for bad in [b' ', b'\n', b'\r', 0, 0x7f, 0x1f] {
            let key = [b'a', bad, b'b'];
            assert_eq!(
                reason(&key, 0, false),
                Some(InvalidKeyReason::ForbiddenByte {
                    byte: bad,
                    position: 1
                })
            );
            assert_eq!(reason(&key, 0, true), None);
        }
        assert_eq!(reason("clé".as_bytes(), 0, false), None);
    }

    #[test]
    fn display_escapes() {
        assert_eq!(display(b"a b\n"), r#""a b\n""#);
        assert!(display(&[b'x'; 300]).ends_with("... (300 bytes)"));
    }
}
