//! The shield: follows the requests libmemcached sends to a server and passes on only replies
//! that are well-formed answers to them, so that no reply libmemcached 1.1.4 mishandles (an
//! over-long key, a length past the item size limit or below zero, a value where a write's
//! answer belongs, a reply for another key, anything unasked) ever reaches it.
//!
//! Both directions are checked as bytes arrive, without copying: each call says how many
//! leading bytes of its input may go on now. Value data is passed by length as it comes; a
//! header line or packet header is held until it is whole and checked.

mod ascii;
mod binary;

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;

/// memcached's longest key.
const MAX_KEY: usize = 250;

/// Whether a version text is `major.minor.micro` with digits in each: libmemcached reads it
/// with three `strtol`s, stepping blindly over one byte after each of the first two, so a text
/// with fewer numbers sends it reading past the line.
fn is_version(text: &[u8]) -> bool {
    let mut parts = text.splitn(3, |&b| b == b'.');
    let digits = |part: Option<&[u8]>| {
        part.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
    };
    digits(parts.next())
        && digits(parts.next())
        && parts
            .next()
            .and_then(|p| p.first())
            .is_some_and(u8::is_ascii_digit)
}

/// Which protocol a connection speaks (from libmemcached's first request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Ascii,
    Binary,
}

/// What was wrong with a reply (or a request the shield cannot follow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation(String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Violation {
    /// `what` is wrong with `sent` (shown escaped, at most 60 bytes).
    fn new(what: impl fmt::Display, sent: &[u8]) -> Violation {
        let shown = &sent[..sent.len().min(60)];
        let more = if sent.len() > 60 { "..." } else { "" };
        Violation(format!("{what}: `{}{more}`", shown.escape_ascii()))
    }
}

/// The keys of pending requests, kept in one buffer that empties whenever nothing is pending.
#[derive(Debug, Default)]
struct Keys(Vec<u8>);

impl Keys {
    fn push(&mut self, key: &[u8]) -> Range<usize> {
        let at = self.0.len();
        self.0.extend_from_slice(key);
        at..self.0.len()
    }

    fn get(&self, range: &Range<usize>) -> &[u8] {
        &self.0[range.clone()]
    }
}

enum Checker {
    Ascii(ascii::Checker),
    Binary(binary::Checker),
}

/// One connection's shield.
pub(crate) struct Shield {
    checker: Checker,
}

impl Shield {
    /// `max_value`: the largest value length a reply may announce.
    pub(crate) fn new(protocol: Protocol, max_value: usize) -> Shield {
        let checker = match protocol {
            Protocol::Ascii => Checker::Ascii(ascii::Checker::new(max_value)),
            Protocol::Binary => Checker::Binary(binary::Checker::new(max_value)),
        };
        Shield { checker }
    }

    /// Bytes libmemcached sent: how many leading bytes are complete requests (or value data)
    /// that may go to the server now; the rest is to be presented again with more.
    pub(crate) fn request(&mut self, input: &[u8]) -> Result<usize, Violation> {
        match &mut self.checker {
            Checker::Ascii(c) => c.request(input),
            Checker::Binary(c) => c.request(input),
        }
    }

    /// Bytes the server sent: how many leading bytes are well-formed answers to the requests
    /// forwarded and may go to libmemcached now; the rest is to be presented again with more.
    pub(crate) fn reply(&mut self, input: &[u8]) -> Result<usize, Violation> {
        match &mut self.checker {
            Checker::Ascii(c) => c.reply(input),
            Checker::Binary(c) => c.reply(input),
        }
    }

    /// Whether libmemcached asked the server to close the connection (`quit`).
    pub(crate) fn quit_sent(&self) -> bool {
        match &self.checker {
            Checker::Ascii(c) => c.quit_sent,
            Checker::Binary(c) => c.quit_sent,
        }
    }

    /// Whether every request forwarded has been answered in full.
    pub(crate) fn idle(&self) -> bool {
        match &self.checker {
            Checker::Ascii(c) => c.idle(),
            Checker::Binary(c) => c.idle(),
        }
    }
}

/// A queue of what pending requests expect, with their keys: reused, so that following a
/// request allocates nothing once the buffers have grown.
#[derive(Debug)]
struct Pending<E> {
    queue: VecDeque<E>,
    keys: Keys,
    /// Where each key of a multi-key request is in `keys`.
    ranges: Vec<Range<usize>>,
}

impl<E> Default for Pending<E> {
    fn default() -> Self {
        Pending {
            queue: VecDeque::new(),
            keys: Keys::default(),
            ranges: Vec::new(),
        }
    }
}

impl<E> Pending<E> {
    /// The oldest request is answered.
    fn pop(&mut self) {
        self.queue.pop_front();
        if self.queue.is_empty() {
            self.keys.0.clear();
            self.ranges.clear();
        }
    }
}

/// Runs `checker` over `input` a byte at a time and whole, and requires both to approve the
/// same bytes: for the tests and the fuzz target.
#[cfg(any(test, fuzzing))]
fn approve_all(
    mut step: impl FnMut(&[u8]) -> Result<usize, Violation>,
    input: &[u8],
) -> Result<usize, Violation> {
    let mut done = 0;
    loop {
        let n = step(&input[done..])?;
        if n == 0 {
            return Ok(done);
        }
        done += n;
    }
}

/// The fuzz target's check (`fuzz/fuzz_targets/shield.rs`; its corpus is replayed by this
/// module's tests): arbitrary request and reply streams, cut anywhere, never panic, approve
/// no more than they are given, and approve the same bytes however they are cut.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let protocol = if data[0] & 1 == 0 {
        Protocol::Ascii
    } else {
        Protocol::Binary
    };
    let split = usize::from(data[1]) * data.len() / 256;
    let cut = usize::from(data[2]).max(1);
    let (requests, replies) = data[3..].split_at(split.min(data.len() - 3));
    let whole = {
        let mut shield = Shield::new(protocol, 4096);
        approve_all(|b| shield.request(b), requests)
            .map(|_| approve_all(|b| shield.reply(b), replies))
    };
    let pieces = {
        let mut shield = Shield::new(protocol, 4096);
        let mut fed = |input: &[u8], reply: bool| -> Result<usize, Violation> {
            let mut held = Vec::new();
            let mut approved = 0;
            for chunk in input.chunks(cut) {
                held.extend_from_slice(chunk);
                let step = |b: &[u8]| {
                    if reply {
                        shield.reply(b)
                    } else {
                        shield.request(b)
                    }
                };
                let n = approve_all(step, &held)?;
                assert!(n <= held.len());
                approved += n;
                held.drain(..n);
            }
            Ok(approved)
        };
        fed(requests, false).map(|_| fed(replies, true))
    };
    if let (Ok(Ok(a)), Ok(Ok(b))) = (&whole, &pieces) {
        assert_eq!(a, b, "approved differently when cut every {cut} bytes");
    }
}

#[cfg(test)]
mod tests;
