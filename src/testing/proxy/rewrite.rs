//! How the faults that rewrite replies rewrite them: random garbage lines, and the framing of
//! a reply stream (ASCII lines and data blocks, binary headers and bodies) that finds the keys
//! and lengths of value replies and the answers to writes.

use super::{BadAnswer, Fault};

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
/// bodies) to rewrite keys and lengths in value replies, and to replace answers to writes.
#[derive(Default)]
pub(super) struct Framer {
    /// Bytes read but not yet framed.
    pending: Vec<u8>,
    /// Bytes of a data block or body still to pass as they are.
    raw: usize,
    /// Bytes of a replaced answer's body still to drop.
    dropped: usize,
}

/// What follows a framed line or header: bytes of its data block or body, passed as they are,
/// or dropped with the answer they belong to.
enum Body {
    Pass(usize),
    Drop(usize),
}

/// The binary protocol's response magic byte.
const RESPONSE_MAGIC: u8 = 0x81;
/// Binary opcodes of responses that carry a value: GET, GETQ, GETK, GETKQ.
const VALUE_OPCODES: [u8; 4] = [0x00, 0x09, 0x0c, 0x0d];
/// Binary opcodes of responses that answer a write, counter or delete: SET, ADD, REPLACE,
/// DELETE, INCREMENT, DECREMENT, APPEND, PREPEND, TOUCH, and the quiet forms (which memcached
/// answers only to say they failed).
const WRITE_OPCODES: [u8; 17] = [
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0e, 0x0f, 0x1c, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x19,
    0x1a,
];
/// ASCII answers to writes, deletes and touches (a counter's is its number).
const WRITE_ANSWERS: [&[u8]; 6] = [
    b"STORED",
    b"NOT_STORED",
    b"EXISTS",
    b"NOT_FOUND",
    b"DELETED",
    b"TOUCHED",
];
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
            if self.dropped > 0 {
                let n = self.dropped.min(rest.len());
                self.dropped -= n;
                at += n;
                continue;
            }
            let framed = if rest[0] == RESPONSE_MAGIC {
                frame_binary(rest, fault, out)
            } else {
                frame_ascii(rest, fault, out)
            };
            match framed {
                Some((n, body)) => {
                    at += n;
                    match body {
                        Body::Pass(n) => self.raw = n,
                        Body::Drop(n) => self.dropped = n,
                    }
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
fn frame_ascii(rest: &[u8], fault: Fault, out: &mut Vec<u8>) -> Option<(usize, Body)> {
    let end = rest.windows(2).position(|w| w == b"\r\n")? + 2;
    let line = &rest[..end];
    if let Fault::BadWriteAnswer(bad) = fault {
        if is_write_answer(&line[..end - 2]) {
            out.extend_from_slice(ascii_answer(bad));
            return Some((end, Body::Pass(0)));
        }
    }
    let Some(fields) = line.strip_prefix(b"VALUE ") else {
        out.extend_from_slice(line);
        return Some((end, Body::Pass(0)));
    };
    let fields: Vec<&[u8]> = fields[..fields.len() - 2].split(|&b| b == b' ').collect();
    let len: Option<usize> = fields
        .get(2)
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|f| f.parse().ok());
    let (Some(key), Some(len)) = (fields.first(), len) else {
        out.extend_from_slice(line);
        return Some((end, Body::Pass(0)));
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
    Some((end, Body::Pass(len + 2)))
}

/// Whether an ASCII line (without its `\r\n`) answers a write, delete, touch or counter.
fn is_write_answer(line: &[u8]) -> bool {
    WRITE_ANSWERS.contains(&line) || (!line.is_empty() && line.iter().all(u8::is_ascii_digit))
}

/// The ASCII answer that replaces a write's.
fn ascii_answer(bad: BadAnswer) -> &'static [u8] {
    match bad {
        BadAnswer::Value => b"VALUE k 0 1\r\nx\r\nEND\r\n",
        BadAnswer::OtherKey => b"VALUE other 0 1\r\nx\r\nEND\r\n",
        BadAnswer::HugeLength => b"VALUE k 0 4294967296\r\n",
        BadAnswer::NegativeLength => b"VALUE k 0 -1\r\n",
    }
}

/// The binary response that replaces `answer` (a write's response header): a get's response
/// under the answer's opaque and CAS, so that a client that matches replies by opaque alone
/// takes it for the answer.
fn binary_answer(bad: BadAnswer, answer: &[u8]) -> Vec<u8> {
    const FLAGS: usize = 4;
    let (opcode, key, value): (u8, &[u8], &[u8]) = match bad {
        BadAnswer::Value | BadAnswer::HugeLength => (0x00, b"", b"x"),
        BadAnswer::OtherKey => (0x0c, b"other", b"x"),
        BadAnswer::NegativeLength => (0x0c, b"other", b""),
    };
    let sent = (FLAGS + key.len() + value.len()) as u32;
    let told = match bad {
        BadAnswer::HugeLength => u32::MAX,
        // One byte short of the flags and key, which are sent whole all the same.
        BadAnswer::NegativeLength => sent - 1,
        _ => sent,
    };
    let mut packet = vec![RESPONSE_MAGIC, opcode];
    packet.extend_from_slice(&(key.len() as u16).to_be_bytes());
    // Extras length, data type, status 0.
    packet.extend_from_slice(&[FLAGS as u8, 0, 0, 0]);
    packet.extend_from_slice(&told.to_be_bytes());
    // Opaque and CAS.
    packet.extend_from_slice(&answer[12..24]);
    packet.extend_from_slice(&[0; FLAGS]);
    packet.extend_from_slice(key);
    packet.extend_from_slice(value);
    packet
}

/// Frames one binary response: the bytes used (its header, with the extras and key of a value
/// reply), and the rest of its body. `None` until they are complete.
fn frame_binary(rest: &[u8], fault: Fault, out: &mut Vec<u8>) -> Option<(usize, Body)> {
    if rest.len() < 24 {
        return None;
    }
    let opcode = rest[1];
    let key_len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
    let extras = usize::from(rest[4]);
    let status = u16::from_be_bytes([rest[6], rest[7]]);
    let body = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
    if let Fault::BadWriteAnswer(bad) = fault {
        if WRITE_OPCODES.contains(&opcode) {
            // Whatever the status: a failure's answer is replaced too, with its message.
            out.extend_from_slice(&binary_answer(bad, &rest[..24]));
            return Some((24, Body::Drop(body)));
        }
    }
    let rewrite = status == 0 && VALUE_OPCODES.contains(&opcode);
    let head = 24 + extras + key_len;
    if !rewrite || body < extras + key_len {
        out.extend_from_slice(&rest[..24]);
        return Some((24, Body::Pass(body)));
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
    Some((head, Body::Pass(body - extras - key_len)))
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

    /// A binary value response (`opcode`: GETK, GETKQ...): 4 bytes of extras (flags), key
    /// "k0", value "xyz".
    fn value_response(opcode: u8) -> Vec<u8> {
        let mut packet = vec![RESPONSE_MAGIC, opcode, 0, 2, 4, 0, 0, 0, 0, 0, 0, 9];
        packet.extend_from_slice(&[0; 12]);
        packet.extend_from_slice(&[0, 0, 0, 1]);
        packet.extend_from_slice(b"k0xyz");
        packet
    }

    /// The binary NOOP response that ends a multi-get.
    fn noop() -> Vec<u8> {
        let mut noop = vec![RESPONSE_MAGIC, 0x0a];
        noop.resize(24, 0);
        noop
    }

    #[test]
    fn binary_get_responses_are_rewritten() {
        let packet = value_response(0x0d);
        let noop = noop();
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
    fn ascii_answers_to_writes_are_replaced_across_pieces() {
        // A value that reads like an answer, END, a version and a stat pass as they are.
        let reply: &[u8] = b"STORED\r\nVALUE key0 0 6\r\nSTORED\r\nEND\r\n42\r\n\
            NOT_FOUND\r\nVERSION 1.6.18\r\nSTAT pid 1\r\nEND\r\nDELETED\r\n";
        let pieces = [&reply[..4], &reply[4..20], &reply[20..45], &reply[45..]];
        for (bad, answer) in [
            (BadAnswer::Value, "VALUE k 0 1\r\nx\r\nEND\r\n"),
            (BadAnswer::OtherKey, "VALUE other 0 1\r\nx\r\nEND\r\n"),
            (BadAnswer::HugeLength, "VALUE k 0 4294967296\r\n"),
            (BadAnswer::NegativeLength, "VALUE k 0 -1\r\n"),
        ] {
            let expected = format!(
                "{answer}VALUE key0 0 6\r\nSTORED\r\nEND\r\n{answer}{answer}\
                 VERSION 1.6.18\r\nSTAT pid 1\r\nEND\r\n{answer}"
            );
            assert_eq!(
                String::from_utf8(framed(Fault::BadWriteAnswer(bad), &pieces)).unwrap(),
                expected,
                "{bad:?}"
            );
        }
        for line in ["NOT_STORED", "EXISTS", "TOUCHED", "0"] {
            let reply = format!("{line}\r\n");
            assert_eq!(
                framed(Fault::BadWriteAnswer(BadAnswer::Value), &[reply.as_bytes()]),
                b"VALUE k 0 1\r\nx\r\nEND\r\n",
                "{line}"
            );
        }
    }

    /// A binary response header: `opcode`, `status`, body length, opaque and CAS.
    fn header(opcode: u8, status: u16, body: u32, opaque: u32, cas: u64) -> Vec<u8> {
        let mut packet = vec![RESPONSE_MAGIC, opcode, 0, 0, 0, 0];
        packet.extend_from_slice(&status.to_be_bytes());
        packet.extend_from_slice(&body.to_be_bytes());
        packet.extend_from_slice(&opaque.to_be_bytes());
        packet.extend_from_slice(&cas.to_be_bytes());
        packet
    }

    #[test]
    fn binary_answers_to_writes_are_replaced_keeping_the_opaque() {
        let set = header(0x01, 0, 0, 0x0102_0304, 77);
        // A failed delete's answer carries a message, dropped with it.
        let mut not_found = header(0x04, 1, 9, 0x0a0b_0c0d, 0);
        not_found.extend_from_slice(b"Not found");
        let mut incr = header(0x05, 0, 8, 5, 78);
        incr.extend_from_slice(&11u64.to_be_bytes());
        let setq_failed = header(0x11, 2, 0, 6, 0);
        // A value, and the NOOP that ends a multi-get, pass as they are.
        let getk = value_response(0x0c);
        let noop = noop();
        let stream = [
            set.clone(),
            getk.clone(),
            not_found.clone(),
            noop.clone(),
            incr.clone(),
            setq_failed.clone(),
        ]
        .concat();
        let pieces: Vec<&[u8]> = stream.chunks(7).collect();

        let value = framed(Fault::BadWriteAnswer(BadAnswer::Value), &pieces);
        let mut value_for_set = vec![RESPONSE_MAGIC, 0x00, 0, 0, 4, 0, 0, 0, 0, 0, 0, 5];
        value_for_set.extend_from_slice(&set[12..24]);
        value_for_set.extend_from_slice(&[0, 0, 0, 0, b'x']);
        assert_eq!(value[..value_for_set.len()], value_for_set);

        for bad in [
            BadAnswer::Value,
            BadAnswer::OtherKey,
            BadAnswer::HugeLength,
            BadAnswer::NegativeLength,
        ] {
            let out = framed(Fault::BadWriteAnswer(bad), &pieces);
            // Each answer becomes the same packet under its own opaque and CAS.
            let replaced = |answer: &[u8]| binary_answer(bad, &answer[..24]);
            let expected = [
                replaced(&set),
                getk.clone(),
                replaced(&not_found),
                noop.clone(),
                replaced(&incr),
                replaced(&setq_failed),
            ]
            .concat();
            assert_eq!(out, expected, "{bad:?}");
            let packet = replaced(&set);
            assert_eq!(packet[12..24], set[12..24], "{bad:?}");
            let told = u32::from_be_bytes(packet[8..12].try_into().unwrap()) as i64;
            let (extras, key) = (i64::from(packet[4]), i64::from(packet[3]));
            let sent = packet.len() as i64 - 24;
            match bad {
                BadAnswer::Value | BadAnswer::OtherKey => assert_eq!(told, sent),
                BadAnswer::HugeLength => assert_eq!(told, i64::from(u32::MAX)),
                BadAnswer::NegativeLength => {
                    assert_eq!(told - extras - key, -1);
                    assert_eq!(sent, extras + key);
                }
            }
            if matches!(bad, BadAnswer::OtherKey | BadAnswer::NegativeLength) {
                assert_eq!(packet[1], 0x0c);
                assert_eq!(&packet[28..33], b"other");
            }
        }
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
