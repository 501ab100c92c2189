//! How the faults that rewrite replies rewrite them: random garbage lines, and the framing of
//! a reply stream (ASCII lines and data blocks, binary headers and bodies) that finds the keys
//! and lengths of value replies.

use super::Fault;

/// xorshift64*: repeatable random bytes without a dependency.
pub(super) struct Random(u64);

impl Random {
    pub(super) fn new(seed: u64) -> Self {
        Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// One line of random bytes, as long as the reply it replaces (32 to 512 bytes), starting
    /// with a lowercase letter (no memcached reply does, and it is not the binary magic byte),
    /// with no line break before its `\r\n`.
    pub(super) fn garbage(&mut self, len: usize) -> Vec<u8> {
        let len = len.clamp(32, 512);
        let mut line = Vec::with_capacity(len + 2);
        line.push(b'a' + (self.next() % 26) as u8);
        while line.len() < len {
            let byte = self.next() as u8;
            if byte != b'\r' && byte != b'\n' {
                line.push(byte);
            }
        }
        line.extend_from_slice(b"\r\n");
        line
    }
}

/// Follows the framing of a reply stream (ASCII lines and data blocks, binary headers and
/// bodies) to rewrite keys and lengths in value replies.
#[derive(Default)]
pub(super) struct Framer {
    /// Bytes read but not yet framed.
    pending: Vec<u8>,
    /// Bytes of a data block or body still to pass as they are.
    raw: usize,
}

/// The binary protocol's response magic byte.
const RESPONSE_MAGIC: u8 = 0x81;
/// Binary opcodes of responses that carry a value: GET, GETQ, GETK, GETKQ.
const VALUE_OPCODES: [u8; 4] = [0x00, 0x09, 0x0c, 0x0d];
/// A line or header that cannot be framed within this many bytes passes as it is.
const MAX_PENDING: usize = 1 << 20;

impl Framer {
    pub(super) fn feed(&mut self, chunk: &[u8], fault: Fault, out: &mut Vec<u8>) {
        self.pending.extend_from_slice(chunk);
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            if rest.is_empty() {
                break;
            }
            if self.raw > 0 {
                let n = self.raw.min(rest.len());
                out.extend_from_slice(&rest[..n]);
                self.raw -= n;
                at += n;
                continue;
            }
            let framed = if rest[0] == RESPONSE_MAGIC {
                frame_binary(rest, fault, out)
            } else {
                frame_ascii(rest, fault, out)
            };
            match framed {
                Some((n, raw)) => {
                    at += n;
                    self.raw = raw;
                }
                None if rest.len() > MAX_PENDING => {
                    out.extend_from_slice(rest);
                    at += rest.len();
                }
                None => break,
            }
        }
        self.pending.drain(..at);
    }
}

/// Frames one ASCII line: the bytes used, and those of the data block that follows a `VALUE`
/// line. `None` until the line is complete.
fn frame_ascii(rest: &[u8], fault: Fault, out: &mut Vec<u8>) -> Option<(usize, usize)> {
    let end = rest.windows(2).position(|w| w == b"\r\n")? + 2;
    let line = &rest[..end];
    let Some(fields) = line.strip_prefix(b"VALUE ") else {
        out.extend_from_slice(line);
        return Some((end, 0));
    };
    let fields: Vec<&[u8]> = fields[..fields.len() - 2].split(|&b| b == b' ').collect();
    let len: Option<usize> = fields
        .get(2)
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|f| f.parse().ok());
    let (Some(key), Some(len)) = (fields.first(), len) else {
        out.extend_from_slice(line);
        return Some((end, 0));
    };
    let mut key = key.to_vec();
    let mut told = len;
    match fault {
        Fault::WrongKey => other_key(&mut key),
        Fault::LyingLength(by) => told = (len as i64 + i64::from(by)).max(0) as usize,
        _ => {}
    }
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(&key);
    out.extend_from_slice(format!(" {} {told}", String::from_utf8_lossy(fields[1])).as_bytes());
    for field in &fields[3..] {
        out.push(b' ');
        out.extend_from_slice(field);
    }
    out.extend_from_slice(b"\r\n");
    Some((end, len + 2))
}

/// Frames one binary response: the bytes used (its header, with the extras and key of a value
/// reply), and the rest of its body. `None` until they are complete.
fn frame_binary(rest: &[u8], fault: Fault, out: &mut Vec<u8>) -> Option<(usize, usize)> {
    if rest.len() < 24 {
        return None;
    }
    let opcode = rest[1];
    let key_len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
    let extras = usize::from(rest[4]);
    let status = u16::from_be_bytes([rest[6], rest[7]]);
    let body = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
    let rewrite = status == 0 && VALUE_OPCODES.contains(&opcode);
    let head = 24 + extras + key_len;
    if !rewrite || body < extras + key_len {
        out.extend_from_slice(&rest[..24]);
        return Some((24, body));
    }
    if rest.len() < head {
        return None;
    }
    let mut framed = rest[..head].to_vec();
    match fault {
        Fault::WrongKey if key_len > 0 => other_key(&mut framed[24 + extras..head]),
        Fault::LyingLength(by) => {
            let told = (body as i64 + i64::from(by)).max((extras + key_len) as i64);
            framed[8..12].copy_from_slice(&(told as u32).to_be_bytes());
        }
        _ => {}
    }
    out.extend_from_slice(&framed);
    Some((head, body - extras - key_len))
}

/// Another key of the same length: the last byte's lowest bit flipped (kept printable).
fn other_key(key: &mut [u8]) {
    if let Some(last) = key.last_mut() {
        let flipped = *last ^ 1;
        *last = if flipped.is_ascii_graphic() {
            flipped
        } else {
            b'A' + (*last % 2)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(fault: Fault, pieces: &[&[u8]]) -> Vec<u8> {
        let mut framer = Framer::default();
        let mut out = Vec::new();
        for piece in pieces {
            framer.feed(piece, fault, &mut out);
        }
        out
    }

    #[test]
    fn ascii_value_lines_are_rewritten_across_pieces() {
        let reply: &[u8] = b"VALUE key0 5 3\r\nabc\r\nVALUE key3 0 2 77\r\nEN\r\nEND\r\n";
        let pieces = [&reply[..3], &reply[3..18], &reply[18..]];
        assert_eq!(
            framed(Fault::WrongKey, &pieces),
            b"VALUE key1 5 3\r\nabc\r\nVALUE key2 0 2 77\r\nEN\r\nEND\r\n"
        );
        assert_eq!(
            framed(Fault::LyingLength(-2), &[reply]),
            b"VALUE key0 5 1\r\nabc\r\nVALUE key3 0 0 77\r\nEN\r\nEND\r\n"
        );
        assert_eq!(framed(Fault::WrongKey, &[b"STORED\r\n"]), b"STORED\r\n");
    }

    #[test]
    fn binary_get_responses_are_rewritten() {
        // GETKQ response: 4 bytes of extras (flags), key "k0", value "xyz".
        let mut packet = vec![RESPONSE_MAGIC, 0x0d, 0, 2, 4, 0, 0, 0, 0, 0, 0, 9];
        packet.extend_from_slice(&[0; 12]);
        packet.extend_from_slice(&[0, 0, 0, 1]);
        packet.extend_from_slice(b"k0xyz");
        let mut noop = vec![RESPONSE_MAGIC, 0x0a];
        noop.resize(24, 0);
        let stream = [packet.clone(), noop.clone()].concat();

        let mut wrong = packet.clone();
        wrong[24 + 4 + 1] = b'1';
        assert_eq!(
            framed(
                Fault::WrongKey,
                &[&stream[..10], &stream[10..30], &stream[30..]]
            ),
            [wrong, noop.clone()].concat()
        );
        let mut longer = packet.clone();
        longer[11] = 12;
        assert_eq!(
            framed(Fault::LyingLength(3), &[&stream]),
            [longer, noop].concat()
        );
    }

    #[test]
    fn garbage_is_one_line_that_starts_no_reply() {
        let mut random = Random::new(7);
        for len in [1, 40, 10_000] {
            let line = random.garbage(len);
            assert!((34..=514).contains(&line.len()));
            assert!(line[0].is_ascii_lowercase());
            assert!(line.ends_with(b"\r\n"));
            assert!(!line[..line.len() - 2].contains(&b'\n'));
        }
    }
}
