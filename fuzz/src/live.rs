//! Random operation sequences against a real memcached, checked against an in-memory model.
//!
//! One memcached serves the whole process; each input works on keys of its own (a fresh key
//! prefix per input), so inputs replay alone with the same result. Every operation goes
//! through an ASCII or a binary client (chosen per operation, both on the same server), and
//! every result is compared with the model. At the end all keys are read back at once.

use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

use libmemcached::testing::Memcached;
use libmemcached::{Client, Error, Expiration};

use super::input::Input;

/// The key names an input works on (few, so that operations meet).
const KEYS: [&str; 6] = ["a", "b", "c", "counter", "k:1", "long-key-name"];
/// At most this many operations per input.
const MAX_OPS: usize = 48;

/// A memcached and a client per protocol.
pub struct Live {
    server: Memcached,
    clients: [Client; 2],
    round: Cell<u64>,
}

impl Live {
    /// Starts a memcached and connects to it.
    pub fn start() -> std::io::Result<Live> {
        let server = Memcached::start()?;
        let client = |binary| {
            Client::builder()
                .servers([server.spec()])
                .binary(binary)
                .build()
                .map_err(std::io::Error::other)
        };
        let clients = [client(false)?, client(true)?];
        Ok(Live {
            server,
            clients,
            round: Cell::new(0),
        })
    }

    /// The server (for its pid).
    pub fn server(&self) -> &Memcached {
        &self.server
    }

    /// Kills the server once this process is gone, however it ends (libFuzzer leaves with
    /// `exit` or an abort, so no destructor runs): a shell that waits for this process.
    pub fn kill_server_after_exit(&self) {
        let (Some(server), me) = (self.server.pid(), std::process::id()) else {
            return;
        };
        let script = format!("while kill -0 {me} 2>/dev/null; do sleep 1; done; kill {server}");
        let _ = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// A stored item in the model.
#[derive(Debug, Clone)]
struct Item {
    data: Vec<u8>,
    flags: u32,
    /// Bumped on every change (memcached gives the item a new CAS token).
    version: u64,
}

#[derive(Debug, Default)]
struct Model {
    items: HashMap<&'static str, Item>,
    /// CAS tokens read with `gets`, and the version they were read at.
    tokens: HashMap<&'static str, (u64, u64)>,
    version: u64,
}

impl Model {
    fn put(&mut self, key: &'static str, data: Vec<u8>, flags: u32) {
        self.version += 1;
        let version = self.version;
        self.items.insert(
            key,
            Item {
                data,
                flags,
                version,
            },
        );
    }

    fn value(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.items.get(key).map(|i| (i.data.clone(), i.flags))
    }
}

/// What memcached makes of a value for `incr`/`decr` (its `safe_strtoull`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Counter {
    Number(u64),
    NotANumber,
    /// Above `i64::MAX` with no `-` in the value: memcached then looks for a `-` with
    /// `strchr`, past the end of the value into whatever memory follows, so either answer is
    /// memcached's.
    Either(u64),
    /// White space only: `strtoull` skips it and the `\r\n` after it and reads on past the
    /// value, so memcached 1.6 answers with whatever number follows in its memory, or an error.
    Anything,
}

fn counter(data: &[u8]) -> Counter {
    // strtoull: leading white space, a sign, digits, then the end or white space.
    let space = |b: &u8| b" \t\n\x0b\x0c\r".contains(b);
    let start = data.iter().take_while(|b| space(b)).count();
    if start == data.len() && !data.is_empty() {
        return Counter::Anything;
    }
    let (negative, rest) = match data[start..].split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, &data[start..]),
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let ends = rest.get(digits).is_none_or(|b| *b == 0 || space(b));
    let parsed = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse::<u64>().ok());
    let Some(n) = parsed.filter(|_| ends && digits > 0) else {
        return Counter::NotANumber;
    };
    let n = if negative { n.wrapping_neg() } else { n };
    if n > i64::MAX as u64 {
        if data.contains(&b'-') {
            return Counter::NotANumber;
        }
        return Counter::Either(n);
    }
    Counter::Number(n)
}

/// A value: a small or any decimal number (so counters meet), text led by a letter (never a
/// number), or nothing.
fn value(input: &mut Input<'_>) -> Vec<u8> {
    match input.choose(4) {
        0 => input.byte().to_string().into_bytes(),
        1 => input.u64().to_string().into_bytes(),
        2 => [b"x", input.bytes(40)].concat(),
        _ => Vec::new(),
    }
}

/// Flags for a value: any, less the zlib bit (a zlib-flagged value that is not zlib does not
/// decode, which the decode target covers).
fn flags(input: &mut Input<'_>) -> u32 {
    let flags = match input.choose(3) {
        0 => 0,
        1 => u32::from(input.byte()),
        _ => input.u32(),
    };
    flags & !libmemcached::value::flags::ZLIB
}

/// An expiration memcached will not reach during a run.
fn expiration(input: &mut Input<'_>) -> Expiration {
    match input.choose(3) {
        0 => Expiration::Never,
        1 => Duration::from_secs(3600).into(),
        _ => Duration::from_secs(40 * 24 * 3600).into(),
    }
}

type Raw = (Vec<u8>, u32);

/// Runs one input's operations and checks every result.
pub fn check(data: &[u8], live: &Live) {
    let round = live.round.get();
    live.round.set(round + 1);
    let prefix = format!("fuzz:{}:{round}:", std::process::id());
    let views = [
        live.clients[0].prefixed(&prefix),
        live.clients[1].prefixed(&prefix),
    ];
    let mut input = Input::new(data);
    let mut model = Model::default();
    let mut log = Vec::new();

    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let binary = input.flag();
        let mc = &views[usize::from(binary)];
        let protocol = if binary { "binary" } else { "ascii" };
        let key = KEYS[input.choose(KEYS.len())];
        let exists = model.items.contains_key(key);
        let op = input.choose(13);
        log.push(format!("{protocol} op {op} {key}"));
        let context = || log.join("\n");
        match op {
            0 => {
                let v = (value(&mut input), flags(&mut input));
                let exp = expiration(&mut input);
                mc.set(key, &v, exp)
                    .unwrap_or_else(|e| panic!("set: {e}\n{}", context()));
                model.put(key, v.0, v.1);
            }
            1 => {
                let v = (value(&mut input), flags(&mut input));
                let exp = expiration(&mut input);
                let added = mc
                    .add(key, &v, exp)
                    .unwrap_or_else(|e| panic!("add: {e}\n{}", context()));
                assert_eq!(added, !exists, "add\n{}", context());
                if added {
                    model.put(key, v.0, v.1);
                }
            }
            2 => {
                let v = (value(&mut input), flags(&mut input));
                let exp = expiration(&mut input);
                let replaced = mc
                    .replace(key, &v, exp)
                    .unwrap_or_else(|e| panic!("replace: {e}\n{}", context()));
                assert_eq!(replaced, exists, "replace\n{}", context());
                if replaced {
                    model.put(key, v.0, v.1);
                }
            }
            3 | 4 => {
                let append = op == 3;
                let bytes = value(&mut input);
                let joined = if append {
                    mc.append(key, bytes.as_slice())
                } else {
                    mc.prepend(key, bytes.as_slice())
                }
                .unwrap_or_else(|e| panic!("append/prepend: {e}\n{}", context()));
                assert_eq!(joined, exists, "append/prepend\n{}", context());
                if let Some(item) = model.items.get(key).cloned() {
                    let data = match append {
                        true => [item.data.as_slice(), &bytes].concat(),
                        false => [bytes.as_slice(), &item.data].concat(),
                    };
                    model.put(key, data, item.flags);
                }
            }
            5 => {
                let deleted = mc
                    .delete(key)
                    .unwrap_or_else(|e| panic!("delete: {e}\n{}", context()));
                assert_eq!(deleted, exists, "delete\n{}", context());
                model.items.remove(key);
            }
            6 | 7 => {
                let incr = op == 6;
                let delta = match input.choose(3) {
                    0 => u64::from(input.byte()),
                    1 => input.u64(),
                    _ => 1,
                };
                let result = if incr {
                    mc.incr(key, delta)
                } else {
                    mc.decr(key, delta)
                };
                let Some(item) = model.items.get(key).cloned() else {
                    assert!(
                        matches!(result, Err(Error::NotFound { .. })),
                        "counter on a missing key: {result:?}\n{}",
                        context()
                    );
                    continue;
                };
                let now = match (counter(&item.data), result) {
                    (Counter::Anything, Ok(got)) => got,
                    (Counter::NotANumber | Counter::Either(_) | Counter::Anything, Err(e)) => {
                        assert!(!e.is_not_found(), "{e}\n{}", context());
                        continue;
                    }
                    (Counter::Number(n), Ok(got)) | (Counter::Either(n), Ok(got)) => {
                        let want = match incr {
                            true => n.wrapping_add(delta),
                            false => n.saturating_sub(delta),
                        };
                        assert_eq!(got, want, "counter from {n}\n{}", context());
                        got
                    }
                    (expected, got) => {
                        panic!(
                            "counter of {:?}: {expected:?}, got {got:?}\n{}",
                            String::from_utf8_lossy(&item.data),
                            context()
                        )
                    }
                };
                // memcached rewrites the digits in place, padded with spaces, when they fit,
                // unless another connection still holds the item: then it stores just the
                // digits. Read which it was.
                let digits = now.to_string().into_bytes();
                let mut padded = digits.clone();
                padded.resize(item.data.len().max(digits.len()), b' ');
                let stored: Option<Raw> = mc
                    .get(key)
                    .unwrap_or_else(|e| panic!("get after a counter: {e}\n{}", context()));
                let Some((data, flags)) = stored else {
                    panic!("a counter's key went missing\n{}", context());
                };
                assert!(
                    data == padded || data == digits,
                    "{:?} after a counter\n{}",
                    String::from_utf8_lossy(&data),
                    context()
                );
                assert_eq!(
                    flags,
                    item.flags,
                    "a counter keeps the flags\n{}",
                    context()
                );
                model.put(key, data, item.flags);
            }
            8 => {
                let exp = expiration(&mut input);
                let touched = mc
                    .touch(key, exp)
                    .unwrap_or_else(|e| panic!("touch: {e}\n{}", context()));
                assert_eq!(touched, exists, "touch\n{}", context());
                // memcached keeps the CAS token: the version stays.
            }
            9 => {
                let got: Option<Raw> = mc
                    .get(key)
                    .unwrap_or_else(|e| panic!("get: {e}\n{}", context()));
                assert_eq!(got, model.value(key), "get\n{}", context());
            }
            10 => {
                let got: Option<(Raw, u64)> = mc
                    .gets(key)
                    .unwrap_or_else(|e| panic!("gets: {e}\n{}", context()));
                let got = got.map(|(v, token)| {
                    assert_ne!(token, 0, "a CAS token\n{}", context());
                    let version = model.items[key].version;
                    model.tokens.insert(key, (token, version));
                    v
                });
                assert_eq!(got, model.value(key), "gets\n{}", context());
            }
            11 => {
                let v = (value(&mut input), flags(&mut input));
                let seen = model.tokens.get(key).copied();
                // The token read last, or one no item has: far above any memcached hands out
                // in a run (and below u64::MAX, which libmemcached's ASCII cas mishandles).
                let (token, valid) = match (input.flag(), seen) {
                    (true, Some((token, version))) => (
                        token,
                        model.items.get(key).is_some_and(|i| i.version == version),
                    ),
                    _ => ((1 << 60) | u64::from(input.u32()), false),
                };
                let stored = mc
                    .cas(key, &v, token, Expiration::Never)
                    .unwrap_or_else(|e| panic!("cas: {e}\n{}", context()));
                assert_eq!(stored, valid, "cas with token {token}\n{}", context());
                if stored {
                    model.put(key, v.0, v.1);
                }
            }
            _ => {
                let mut keys = Vec::new();
                for _ in 0..=input.choose(KEYS.len() + 2) {
                    keys.push(KEYS[input.choose(KEYS.len())]);
                }
                let got: HashMap<&str, Raw> = mc
                    .get_multi(keys.iter().copied())
                    .unwrap_or_else(|e| panic!("get_multi: {e}\n{}", context()));
                let want: HashMap<&str, Raw> = keys
                    .iter()
                    .filter_map(|k| model.value(k).map(|v| (*k, v)))
                    .collect();
                assert_eq!(got, want, "get_multi {keys:?}\n{}", context());
            }
        }
    }

    // Everything, through both protocols.
    for mc in &views {
        // memcached pads a counter that shrank with spaces when it rewrites the item in place,
        // and writes a new item without them otherwise (which depends on its reference
        // counts): compare counters without the padding.
        let unpadded = |(k, (mut v, f)): (&'static str, Raw)| {
            if v.iter().any(|b| *b != b' ') && v.iter().all(|b| b.is_ascii_digit() || *b == b' ') {
                while v.last() == Some(&b' ') {
                    v.pop();
                }
            }
            (k, (v, f))
        };
        let got: HashMap<&str, Raw> = mc
            .get_multi(KEYS)
            .unwrap_or_else(|e| panic!("final get_multi: {e}\n{}", log.join("\n")))
            .into_iter()
            .map(unpadded)
            .collect();
        let want: HashMap<&str, Raw> = KEYS
            .iter()
            .filter_map(|k| model.value(k).map(|v| (*k, v)))
            .map(unpadded)
            .collect();
        assert_eq!(got, want, "final state\n{}", log.join("\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_as_memcached_reads_them() {
        assert_eq!(counter(b"12"), Counter::Number(12));
        assert_eq!(counter(b"12  "), Counter::Number(12));
        assert_eq!(counter(b"9 5"), Counter::Number(9));
        assert_eq!(counter(b"5\0x"), Counter::Number(5));
        assert_eq!(counter(b"12a"), Counter::NotANumber);
        assert_eq!(counter(b""), Counter::NotANumber);
        assert_eq!(counter(b"x1"), Counter::NotANumber);
        assert_eq!(counter(b"18446744073709551616"), Counter::NotANumber);
        assert_eq!(counter(b"18446744073709551615"), Counter::Either(u64::MAX));
        assert_eq!(counter(b"9999999999999999999 x-"), Counter::NotANumber);
        assert_eq!(counter(b" +7"), Counter::Number(7));
        assert_eq!(counter(b"-0"), Counter::Number(0));
        assert_eq!(counter(b"-5"), Counter::NotANumber);
        assert_eq!(counter(b" "), Counter::Anything);
    }
}
