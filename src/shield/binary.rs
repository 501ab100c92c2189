//! The binary protocol: 24-byte packet headers, each followed by extras, key and value.

use std::ops::Range;

use super::{MAX_KEY, Pending, Violation, is_version};

const HEADER: usize = 24;
const REQUEST: u8 = 0x80;
const RESPONSE: u8 = 0x81;

const STAT: u8 = 0x10;
const TOUCH: u8 = 0x1c;
const QUIT: u8 = 0x07;
const VERSION: u8 = 0x0b;
/// libmemcached reads a version reply into a 32-byte buffer that must end with a NUL.
const MAX_VERSION: usize = 31;
/// The longest stat (name and value) libmemcached's 350-byte buffer takes with both NULs.
const MAX_STAT: usize = 348;
const QUITQ: u8 = 0x17;
/// Status codes memcached defines: success, the errors, and SASL's.
const STATUSES: [u16; 18] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x20, 0x21, 0x22, 0x81, 0x82, 0x83, 0x84,
    0x85, 0x86,
];
const AUTH_CONTINUE: u16 = 0x21;
/// The longest error message, version, SASL or stats body a reply may carry.
const MAX_TEXT: usize = 64 * 1024;

/// The get family: GET, GETQ, GETK, GETKQ, GAT, GATQ, GATK, GATKQ.
fn is_get(opcode: u8) -> bool {
    matches!(
        opcode,
        0x00 | 0x09 | 0x0c | 0x0d | 0x1d | 0x1e | 0x23 | 0x24
    )
}

/// Gets whose hits carry the key.
fn carries_key(opcode: u8) -> bool {
    matches!(opcode, 0x0c | 0x0d | 0x23 | 0x24)
}

/// Quiet commands: gets answered only on a hit, the others only on an error.
fn is_quiet(opcode: u8) -> bool {
    matches!(opcode, 0x09 | 0x0d | 0x11..=0x1a | 0x1e | 0x24)
}

fn is_counter(opcode: u8) -> bool {
    matches!(opcode, 0x05 | 0x06 | 0x15 | 0x16)
}

fn is_sasl(opcode: u8) -> bool {
    matches!(opcode, 0x20..=0x22)
}

fn known(opcode: u8) -> bool {
    opcode <= 0x1e || (0x20..=0x24).contains(&opcode)
}

/// Passes what is there of a body still `left` to come: how many bytes.
fn pass(left: &mut usize, available: usize) -> usize {
    let n = (*left).min(available);
    *left -= n;
    n
}

/// A request awaiting its reply.
#[derive(Debug)]
struct Expect {
    opcode: u8,
    opaque: [u8; 4],
    key: Range<usize>,
}

/// A packet header's fields.
struct Header<'a> {
    bytes: &'a [u8],
    opcode: u8,
    key: usize,
    extras: usize,
    status: u16,
    body: usize,
    opaque: [u8; 4],
}

impl Header<'_> {
    fn read(bytes: &[u8]) -> Header<'_> {
        Header {
            bytes: &bytes[..HEADER],
            opcode: bytes[1],
            key: usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            extras: usize::from(bytes[4]),
            status: u16::from_be_bytes([bytes[6], bytes[7]]),
            body: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            opaque: [bytes[12], bytes[13], bytes[14], bytes[15]],
        }
    }

    /// The value's length (`check_header` refuses a body shorter than its extras and key).
    fn value(&self) -> usize {
        self.body.saturating_sub(self.extras + self.key)
    }
}

pub(super) struct Checker {
    max_value: usize,
    pending: Pending<Expect>,
    /// Body bytes still to pass, after a header (and its extras and key) were checked.
    request_left: usize,
    reply_left: usize,
    pub(super) quit_sent: bool,
}

impl Checker {
    pub(super) fn new(max_value: usize) -> Checker {
        Checker {
            max_value,
            pending: Pending::default(),
            request_left: 0,
            reply_left: 0,
            quit_sent: false,
        }
    }

    pub(super) fn idle(&self) -> bool {
        self.pending.queue.is_empty() && self.reply_left == 0
    }

    pub(super) fn request(&mut self, input: &[u8]) -> Result<usize, Violation> {
        let mut done = 0;
        while done < input.len() {
            if self.request_left > 0 {
                done += pass(&mut self.request_left, input.len() - done);
                continue;
            }
            let packet = &input[done..];
            if packet.len() < HEADER {
                break;
            }
            let header = Header::read(packet);
            if packet[0] != REQUEST
                || !known(header.opcode)
                || header.extras + header.key > header.body
            {
                return Err(Violation::new(
                    "a request the shield does not know",
                    header.bytes,
                ));
            }
            let head = HEADER + header.extras + header.key;
            if packet.len() < head {
                break;
            }
            self.quit_sent |= matches!(header.opcode, QUIT | QUITQ);
            if header.opcode != QUITQ {
                let key = self
                    .pending
                    .keys
                    .push(&packet[HEADER + header.extras..head]);
                self.pending.queue.push_back(Expect {
                    opcode: header.opcode,
                    opaque: header.opaque,
                    key,
                });
            }
            self.request_left = header.body - header.extras - header.key;
            done += head;
        }
        Ok(done)
    }

    pub(super) fn reply(&mut self, input: &[u8]) -> Result<usize, Violation> {
        let mut done = 0;
        while done < input.len() {
            if self.reply_left > 0 {
                done += pass(&mut self.reply_left, input.len() - done);
                continue;
            }
            let packet = &input[done..];
            if packet.len() < HEADER {
                break;
            }
            let header = Header::read(packet);
            self.check_header(&header)?;
            // A version is checked whole (it is short); other bodies pass as they come.
            let version = header.opcode == VERSION && header.status == 0;
            let head = HEADER + header.extras + header.key;
            let whole = if version { HEADER + header.body } else { head };
            if packet.len() < whole {
                break;
            }
            if version && !is_version(&packet[head..whole]) {
                return Err(Violation::new(
                    "a version that is not major.minor.micro",
                    packet,
                ));
            }
            self.answer(&header, &packet[HEADER + header.extras..head])?;
            self.reply_left = if version { 0 } else { header.value() };
            done += whole;
        }
        Ok(done)
    }

    /// What a header alone can show wrong.
    fn check_header(&self, header: &Header<'_>) -> Result<(), Violation> {
        let bad = |why: String| Err(Violation::new(why, header.bytes));
        if header.bytes[0] != RESPONSE {
            return bad(format!("not a response (magic {:#04x})", header.bytes[0]));
        }
        if header.key > MAX_KEY {
            return bad(format!("a key of {} bytes, over {MAX_KEY}", header.key));
        }
        if header.extras + header.key > header.body {
            return bad(format!(
                "a body of {} bytes, shorter than its extras and key",
                header.body
            ));
        }
        // libmemcached copies a stat into 350 bytes of its stack, with two NULs.
        if header.opcode == STAT && header.status == 0 && header.body > MAX_STAT {
            return bad(format!("a stat of {} bytes, over {MAX_STAT}", header.body));
        }
        if !STATUSES.contains(&header.status) {
            return bad(format!("an unknown status {:#06x}", header.status));
        }
        let limit = match header.status {
            0 if is_get(header.opcode) => self.max_value,
            0 if header.opcode == VERSION => MAX_VERSION,
            _ => MAX_TEXT,
        };
        if header.value() > limit {
            return bad(format!(
                "a value of {} bytes, over the {limit}-byte limit",
                header.value()
            ));
        }
        Ok(())
    }

    /// Matches a reply (its header, and its key) to the request it answers.
    fn answer(&mut self, header: &Header<'_>, key: &[u8]) -> Result<(), Violation> {
        // Replies come in the order of the requests; quiet ones may have none (libmemcached
        // sends every request of a multi-get with the same opaque: the key tells them apart).
        loop {
            let Some(expect) = self.pending.queue.front() else {
                return Err(Violation::new("a reply to no request", header.bytes));
            };
            let same_key = key.is_empty()
                || !carries_key(expect.opcode)
                || key == self.pending.keys.get(&expect.key);
            if expect.opcode == header.opcode && expect.opaque == header.opaque && same_key {
                break;
            }
            if !is_quiet(expect.opcode) {
                if carries_key(header.opcode) && !key.is_empty() {
                    return Err(Violation::new(
                        "a value for a key not asked (or not then)",
                        key,
                    ));
                }
                return Err(Violation::new(
                    format!(
                        "a reply with opcode {:#04x} to a request with {:#04x}",
                        header.opcode, expect.opcode
                    ),
                    header.bytes,
                ));
            }
            self.pending.pop();
        }
        let shape = |ok: bool, what: &str| -> Result<(), Violation> {
            if ok {
                Ok(())
            } else {
                Err(Violation::new(
                    format!("{what} (opcode {:#04x})", header.opcode),
                    header.bytes,
                ))
            }
        };
        let (opcode, status, extras, value) =
            (header.opcode, header.status, header.extras, header.value());
        if !key.is_empty() && opcode != STAT {
            shape(carries_key(opcode), "a key in a reply that carries none")?;
        }
        let finished = match status {
            0 if is_get(opcode) => {
                shape(extras == 4, "a get's answer without its flags")?;
                shape(
                    !carries_key(opcode) || !key.is_empty(),
                    "a get's answer without its key",
                )?;
                true
            }
            0 if is_counter(opcode) => {
                shape(
                    extras == 0 && value == 8,
                    "a counter's answer that is not 8 bytes",
                )?;
                true
            }
            0 if opcode == STAT => {
                shape(extras == 0, "extras in a stat")?;
                header.key == 0 && value == 0
            }
            0 if opcode == 0x0b || is_sasl(opcode) => {
                shape(extras == 0, "extras in a text reply").map(|()| true)?
            }
            // memcached answers a touch with the item's flags.
            0 if opcode == TOUCH => {
                shape(
                    matches!(extras, 0 | 4) && value == 0,
                    "a body in a touch's answer",
                )?;
                true
            }
            AUTH_CONTINUE => shape(
                is_sasl(opcode),
                "an authentication step answering another request",
            )
            .map(|()| true)?,
            0 => {
                shape(extras == 0 && value == 0, "a body in a write's answer")?;
                true
            }
            _ => {
                shape(extras == 0, "extras in an error")?;
                // libmemcached counts no reply for a quiet get's error, and falls out of step.
                shape(
                    !(is_get(opcode) && is_quiet(opcode)),
                    "an error answering a quiet get",
                )?;
                true
            }
        };
        if finished {
            self.pending.pop();
        }
        Ok(())
    }
}
