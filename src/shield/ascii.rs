//! The text protocol: request lines (and storage data) one way, reply lines and values the other.

use std::ops::Range;

use super::{MAX_KEY, Pending, Violation, is_version};

/// The longest request line: a multi-get sends all of a server's keys on one line.
const MAX_REQUEST_LINE: usize = 64 << 20;
/// The longest reply line (a `VALUE` line is about 320 bytes; stats lines are short).
const MAX_REPLY_LINE: usize = 8192;

/// What a request expects back.
#[derive(Debug)]
enum Expect {
    /// `get`/`gets`/`gat`/`gats`: `VALUE` replies for these keys (positions in
    /// `Pending::ranges`), in their order, then `END`; `next` is the first that may come.
    Values {
        cas: bool,
        keys: Range<usize>,
        next: usize,
    },
    /// A storage command: `STORED`, `NOT_STORED`, `EXISTS` or `NOT_FOUND`.
    Stored,
    Deleted,
    Touched,
    /// `incr`/`decr`: the new value, or `NOT_FOUND`.
    Counter,
    /// `flush_all`, `verbosity`: `OK`.
    Ok,
    Version,
    /// `stats`: lines until `END` (or one `OK`/`RESET` line).
    Stats,
}

impl Expect {
    fn name(&self) -> &'static str {
        match self {
            Expect::Values { .. } => "a get",
            Expect::Stored => "a storage command",
            Expect::Deleted => "delete",
            Expect::Touched => "touch",
            Expect::Counter => "incr/decr",
            Expect::Ok => "flush_all/verbosity",
            Expect::Version => "version",
            Expect::Stats => "stats",
        }
    }
}

/// Where a stream is between lines.
#[derive(Debug, Clone, Copy)]
enum At {
    Line,
    /// Data bytes still to come, then its `\r\n` (of which `.1` bytes are already checked).
    Data(usize, u8),
}

pub(super) struct Checker {
    max_value: usize,
    pending: Pending<Expect>,
    request_at: At,
    reply_at: At,
    pub(super) quit_sent: bool,
    /// How far into an incomplete request line the search for its end has gone: a multi-get's
    /// line may arrive in many reads, each presented again from the line's start.
    scanned: usize,
}

impl Checker {
    pub(super) fn new(max_value: usize) -> Checker {
        Checker {
            max_value,
            pending: Pending::default(),
            request_at: At::Line,
            reply_at: At::Line,
            quit_sent: false,
            scanned: 0,
        }
    }

    pub(super) fn idle(&self) -> bool {
        self.pending.queue.is_empty() && matches!(self.reply_at, At::Line)
    }

    pub(super) fn request(&mut self, input: &[u8]) -> Result<usize, Violation> {
        let mut done = 0;
        while done < input.len() {
            match self.request_at {
                At::Data(left, _) => {
                    // Storage data, with its `\r\n`: libmemcached's own, passed as it is.
                    let n = left.min(input.len() - done);
                    done += n;
                    self.request_at = if n == left {
                        At::Line
                    } else {
                        At::Data(left - n, 0)
                    };
                }
                At::Line => {
                    let from = std::mem::take(&mut self.scanned);
                    let found = line_end(&input[done..], from, MAX_REQUEST_LINE, "a request")?;
                    let Some(end) = found else {
                        self.scanned = input.len() - done;
                        break;
                    };
                    self.command(&input[done..done + end - 2])?;
                    done += end;
                }
            }
        }
        Ok(done)
    }

    /// Records what a request line expects.
    fn command(&mut self, line: &[u8]) -> Result<(), Violation> {
        let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let verb = words.next().unwrap_or_default();
        // memcached takes `noreply` only as the last of a command's optional arguments, never
        // on a get: `get noreply` asks for the key "noreply".
        let count = line.split(|&b| b == b' ').filter(|w| !w.is_empty()).count();
        let last_is_noreply = line.ends_with(b" noreply");
        let noreply = last_is_noreply
            && match verb {
                b"set" | b"add" | b"replace" | b"append" | b"prepend" => count == 6,
                b"cas" => count == 7,
                b"incr" | b"decr" | b"touch" => count == 4,
                b"delete" => count == 3 || count == 4,
                b"flush_all" => count == 2 || count == 3,
                b"verbosity" => count == 3,
                _ => false,
            };
        let unknown = || Violation::new("a request the shield does not know", line);
        let expect = match verb {
            b"get" | b"gets" | b"gat" | b"gats" => {
                if verb.starts_with(b"gat") {
                    words.next(); // the expiration
                }
                let first = self.pending.ranges.len();
                for key in words {
                    let range = self.pending.keys.push(key);
                    self.pending.ranges.push(range);
                }
                let last = self.pending.ranges.len();
                Expect::Values {
                    cas: verb.ends_with(b"s"),
                    keys: first..last,
                    next: first,
                }
            }
            b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
                let bytes = words.nth(3).and_then(number).ok_or_else(unknown)?;
                self.request_at = At::Data(bytes as usize + 2, 0);
                Expect::Stored
            }
            b"delete" => Expect::Deleted,
            b"touch" => Expect::Touched,
            b"incr" | b"decr" => Expect::Counter,
            b"flush_all" | b"verbosity" => Expect::Ok,
            b"version" => Expect::Version,
            b"stats" => Expect::Stats,
            b"quit" => {
                // The server closes the connection: nothing may follow.
                self.quit_sent = true;
                return Ok(());
            }
            _ => return Err(unknown()),
        };
        if !noreply {
            self.pending.queue.push_back(expect);
        }
        Ok(())
    }

    pub(super) fn reply(&mut self, input: &[u8]) -> Result<usize, Violation> {
        let mut done = 0;
        while done < input.len() {
            match self.reply_at {
                At::Data(0, checked) => {
                    // The `\r\n` after a value: libmemcached does not check it.
                    let want = &b"\r\n"[usize::from(checked)..];
                    let n = want.len().min(input.len() - done);
                    if input[done..done + n] != want[..n] {
                        return Err(Violation::new(
                            "a value not followed by \\r\\n (its length was wrong)",
                            &input[done..],
                        ));
                    }
                    done += n;
                    self.reply_at = if n == want.len() {
                        At::Line
                    } else {
                        At::Data(0, checked + 1)
                    };
                }
                At::Data(left, _) => {
                    let n = left.min(input.len() - done);
                    done += n;
                    self.reply_at = At::Data(left - n, 0);
                }
                At::Line => {
                    let Some(end) = line_end(&input[done..], 0, MAX_REPLY_LINE, "a reply")? else {
                        break;
                    };
                    self.answer(&input[done..done + end - 2])?;
                    done += end;
                }
            }
        }
        Ok(done)
    }

    /// Checks a reply line against the oldest pending request.
    fn answer(&mut self, line: &[u8]) -> Result<(), Violation> {
        let Some(expect) = self.pending.queue.front_mut() else {
            let what = if self.quit_sent {
                "a reply after quit"
            } else {
                "a reply to no request"
            };
            return Err(Violation::new(what, line));
        };
        let answered = match expect {
            _ if is_error(line) => true,
            Expect::Values { cas, keys, next } => {
                if line == b"END" {
                    true
                } else {
                    let (key, len) = value_line(line, *cas)
                        .ok_or_else(|| Violation::new("not an answer to a get", line))?;
                    if key.len() > MAX_KEY {
                        return Err(Violation::new(format!("a key over {MAX_KEY} bytes"), line));
                    }
                    if len > self.max_value as u64 {
                        let limit = self.max_value;
                        return Err(Violation::new(
                            format!("a value of {len} bytes, over the {limit}-byte limit"),
                            line,
                        ));
                    }
                    // memcached answers in the order asked, skipping misses.
                    let asked = &self.pending.keys;
                    let candidates = &self.pending.ranges[*next..keys.end];
                    let Some(at) = candidates.iter().position(|k| asked.get(k) == key) else {
                        return Err(Violation::new(
                            "a value for a key not asked (or not then)",
                            line,
                        ));
                    };
                    *next += at + 1;
                    self.reply_at = At::Data(len as usize, 0);
                    false
                }
            }
            // libmemcached splits a stat line at its second space.
            Expect::Stats if is_stat_line(line) => false,
            other => {
                let answers = match other {
                    Expect::Stats => matches!(line, b"END" | b"OK" | b"RESET"),
                    Expect::Stored => {
                        matches!(line, b"STORED" | b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND")
                    }
                    Expect::Deleted => matches!(line, b"DELETED" | b"NOT_FOUND"),
                    Expect::Touched => matches!(line, b"TOUCHED" | b"NOT_FOUND"),
                    Expect::Counter => line == b"NOT_FOUND" || number(line).is_some(),
                    Expect::Ok => line == b"OK",
                    _ => line.strip_prefix(b"VERSION ").is_some_and(is_version),
                };
                if !answers {
                    return Err(not_an_answer(other, line));
                }
                true
            }
        };
        if answered {
            self.pending.pop();
        }
        Ok(())
    }
}

fn not_an_answer(expect: &Expect, line: &[u8]) -> Violation {
    Violation::new(format!("not an answer to {}", expect.name()), line)
}

/// The key and length of a `VALUE <key> <flags> <bytes> [<cas>]` line (the CAS token there
/// exactly when asked for).
fn value_line(line: &[u8], cas: bool) -> Option<(&[u8], u64)> {
    let mut fields = line.strip_prefix(b"VALUE ")?.split(|&b| b == b' ');
    let (key, flags, len) = (fields.next()?, fields.next()?, fields.next()?);
    if cas {
        number(fields.next()?)?;
    }
    if fields.next().is_some() || number(flags)? > u64::from(u32::MAX) {
        return None;
    }
    Some((key, number(len)?))
}

/// `STAT <name> <value>` or `ITEM <key> <details>`: a name, then a space.
fn is_stat_line(line: &[u8]) -> bool {
    let rest = line
        .strip_prefix(b"STAT ")
        .or_else(|| line.strip_prefix(b"ITEM "));
    rest.and_then(|r| r.iter().position(|&b| b == b' '))
        .is_some_and(|space| space > 0)
}

/// memcached's error replies, which end any request's answer.
fn is_error(line: &[u8]) -> bool {
    line == b"ERROR" || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"SERVER_ERROR")
}

/// A decimal number that fits 64 bits (as memcached writes them: digits only).
fn number(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Where the line at the start of `input` ends (past its `\r\n`), `None` if it is not whole
/// yet; an error if it is longer than `max` or ends in a bare `\n`. `from`: how much of it is
/// known to hold no line end.
fn line_end(input: &[u8], from: usize, max: usize, what: &str) -> Result<Option<usize>, Violation> {
    let window = &input[..input.len().min(max + 2)];
    let found = window[from.min(window.len())..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|at| from + at);
    match found {
        Some(at) if at > 0 && window[at - 1] == b'\r' => Ok(Some(at + 1)),
        Some(_) => Err(Violation::new(
            format!("{what} line not ended by \\r\\n"),
            window,
        )),
        None if window.len() > max => Err(Violation::new(
            format!("{what} line over {max} bytes"),
            window,
        )),
        None => Ok(None),
    }
}
