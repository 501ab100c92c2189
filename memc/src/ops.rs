//! The operator's commands that look at placement and codes: `whereis`, `ring`, `explain`,
//! `dump` and `cp`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

use libmemcached::value::flags;
use libmemcached::{Address, Behavior, Client, Encoded, ReturnCode, ServerSpec, Transport};
use serde_json::json;

use crate::args::{Options, Ring};
use crate::commands::client;
use crate::output::{Field, escape, write_json};
use crate::{Failure, Outcome, Status, usage};

/// Where each key lives, and whether its server has it.
pub fn whereis(mc: &Client, keys: &[String], json: bool, out: &mut dyn Write) -> Outcome {
    let mut all_found = true;
    for key in keys {
        let server = mc.server_for_key(key)?;
        let found = mc.get::<(Vec<u8>, u32)>(key)?.is_some();
        all_found &= found;
        if json {
            write_json(
                out,
                &json!({ key: { "server": server.to_string(), "found": found } }),
            )?;
        } else {
            let state = if found { "found" } else { "missing" };
            writeln!(out, "{key}\t{server}\t{state}")?;
        }
    }
    Ok(if all_found { Status::Ok } else { Status::Miss })
}

/// The most sample keys `ring` places (a few seconds of hashing).
pub const MAX_RING_KEYS: u64 = 1_000_000;

/// Places sample keys with the configured servers and with the changed list, using the
/// client's own distribution and behaviors, and reports the share that moves.
pub fn ring(options: &Options, ring: &Ring, json: bool, out: &mut dyn Write) -> Outcome {
    if ring.add.is_empty() && ring.remove.is_empty() {
        return Err(usage("ring needs --add SPEC or --remove SPEC"));
    }
    let before: Vec<String> = options.servers().iter().map(|s| s.to_string()).collect();
    let mut after = before.clone();
    for spec in &ring.remove {
        let gone = address_of(spec)?;
        let len = after.len();
        after.retain(|s| address_of(s).map_or(true, |a| a != gone));
        if after.len() == len {
            return Err(usage(format!("--remove {spec}: not one of the servers")));
        }
    }
    for spec in &ring.add {
        spec.parse::<ServerSpec>()?;
        after.push(spec.clone());
    }
    if after.is_empty() {
        return Err(usage("no servers would be left"));
    }
    let old = client(
        options,
        &before.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let new = client(
        options,
        &after.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    if !(1..=MAX_RING_KEYS).contains(&ring.keys) {
        return Err(usage(format!("--keys takes 1 to {MAX_RING_KEYS}")));
    }
    let keys = ring.keys;
    let mut moved = 0u64;
    let mut share: Vec<(String, u64)> = after.iter().map(|s| (display_address(s), 0)).collect();
    for i in 0..keys {
        let key = format!("memc:ring:{i}");
        let (from, to) = (old.server_for_key(&key)?, new.server_for_key(&key)?);
        if from != to {
            moved += 1;
        }
        if let Some(entry) = share.iter_mut().find(|(s, _)| *s == to.to_string()) {
            entry.1 += 1;
        }
    }
    let percent = |n: u64| 100.0 * n as f64 / keys as f64;
    if json {
        let servers: serde_json::Map<String, serde_json::Value> = share
            .iter()
            .map(|(s, n)| (s.clone(), json!(percent(*n))))
            .collect();
        write_json(
            out,
            &json!({ "keys": keys, "moved": moved, "moved_percent": percent(moved), "share_after": servers }),
        )?;
    } else {
        writeln!(out, "{moved} of {keys} keys move ({:.1} %)", percent(moved))?;
        for (server, n) in &share {
            writeln!(out, "  {server}\t{:.1} % of keys after", percent(*n))?;
        }
    }
    Ok(Status::Ok)
}

fn address_of(spec: &str) -> Result<Address, Failure> {
    Ok(spec.parse::<ServerSpec>()?.address().clone())
}

fn display_address(spec: &str) -> String {
    address_of(spec).map_or_else(|_| spec.to_owned(), |a| a.to_string())
}

/// A return code by number or name, what it means and what to do about it.
pub fn explain(code: &str, json: bool, out: &mut dyn Write) -> Outcome {
    let wanted = normalize(code.trim_start_matches("MEMCACHED_"));
    let found = match code.trim().parse::<u32>() {
        Ok(raw) => Some(ReturnCode::from_raw(raw)),
        Err(_) => (0..128).map(ReturnCode::from_raw).find(|c| {
            !matches!(c, ReturnCode::Unknown(_)) && normalize(&format!("{c:?}")) == wanted
        }),
    };
    let Some(code) = found.filter(|c| !matches!(c, ReturnCode::Unknown(_))) else {
        return Err(usage(format!(
            "{code:?} is not a libmemcached return code (try a number such as 3, or a name \
             such as CONNECTION_FAILURE)"
        )));
    };
    let kind = if code == ReturnCode::Timeout {
        "timeout: a server did not answer within the poll timeout (_poll_timeout); the client \
         reset its connections, and the server may be slow, overloaded or unreachable"
    } else if code.is_connection() {
        "connection: the server could not be reached, or dropped the connection; the client \
         retries after the retry timeout"
    } else if code.needs_reset() {
        "protocol: the reply was not understood or the command was rejected; the client reset \
         its connections before returning"
    } else if matches!(
        code,
        ReturnCode::AuthFailure | ReturnCode::AuthProblem | ReturnCode::AuthContinue
    ) {
        "authentication: check the SASL username and password (ClientBuilder::sasl)"
    } else if matches!(
        code,
        ReturnCode::ServerError | ReturnCode::ServerMemoryAllocationFailure
    ) {
        "server: the server failed on its own side (out of memory, SERVER_ERROR)"
    } else if matches!(
        code,
        ReturnCode::NotFound | ReturnCode::NotStored | ReturnCode::DataExists
    ) {
        "an answer, not a failure: the operations that can get it return Ok(false) or None"
    } else {
        "other"
    };
    if json {
        write_json(
            out,
            &json!({ "code": code.to_raw(), "name": format!("{code:?}"), "text": code.to_string(), "kind": kind }),
        )?;
    } else {
        writeln!(out, "{} {code:?}: {code}", code.to_raw())?;
        writeln!(out, "  {kind}")?;
    }
    Ok(Status::Ok)
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Lists the keys of every server with `lru_crawler metadump all` (memcached 1.5 and newer),
/// keeping those that start with `prefix`. Each key is printed as it is read, so memory stays
/// bounded however many keys a server lists (or however long it goes on without `END`). In
/// text, a line per key: the key escaped ([`Field`]), size, expiry and server, separated
/// by tabs; in JSON, a document per key.
pub fn dump(mc: &Client, options: &Options, prefix: Option<&str>, out: &mut dyn Write) -> Outcome {
    let timeout = poll_timeout(options);
    // Flushed when the server makes us wait, rather than at every line.
    let mut out = io::BufWriter::new(out);
    let mut listed = 0u64;
    for server in mc.servers() {
        metadump(&server, timeout, |line, waiting| {
            let wanted = |e: &Entry| prefix.is_none_or(|p| e.key.starts_with(p.as_bytes()));
            if let Some(entry) = Entry::parse(line).filter(wanted) {
                listed += 1;
                print_entry(&mut out, &entry, &server, options.json)?;
            }
            if waiting {
                out.flush()?;
            }
            Ok(())
        })?;
    }
    out.flush()?;
    Ok(if listed > 0 { Status::Ok } else { Status::Miss })
}

fn print_entry(out: &mut dyn Write, entry: &Entry, server: &Address, json: bool) -> io::Result<()> {
    if json {
        // A key that is not UTF-8 goes in hex rather than be changed.
        let (name, key) = match std::str::from_utf8(&entry.key) {
            Ok(key) => ("key", json!(key)),
            Err(_) => ("key_hex", json!(hex(&entry.key))),
        };
        let server = server.to_string();
        let doc =
            json!({ name: key, "size": entry.size, "expires": entry.expires, "server": server });
        return write_json(out, &doc);
    }
    let key = escape(&entry.key, Field);
    let expires = entry.expires.map_or("never".to_owned(), |t| t.to_string());
    writeln!(out, "{key}\t{}\t{expires}\t{server}", entry.size)
}

/// The poll timeout given with `-B _poll_timeout=MS`, else libmemcached's default (5 s): how
/// long `dump` waits for each answer.
fn poll_timeout(options: &Options) -> Duration {
    options
        .behaviors
        .iter()
        .rev()
        .find_map(|(name, value)| match Behavior::from_name(name, value) {
            Ok(Behavior::PollTimeout(timeout)) => Some(timeout),
            _ => None,
        })
        .unwrap_or(Duration::from_secs(5))
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// One `metadump` line: `key=... exp=... la=... cas=... fetch=... cls=... size=...`.
struct Entry {
    key: Vec<u8>,
    /// Unix time it expires at.
    expires: Option<i64>,
    size: u64,
}

impl Entry {
    fn parse(line: &[u8]) -> Option<Entry> {
        let mut entry = Entry {
            key: Vec::new(),
            expires: None,
            size: 0,
        };
        for field in line
            .split(u8::is_ascii_whitespace)
            .filter(|f| !f.is_empty())
        {
            let at = field.iter().position(|&b| b == b'=')?;
            match (&field[..at], &field[at + 1..]) {
                (b"key", key) => entry.key = percent_decode(key),
                (b"exp", exp) => entry.expires = number(exp).filter(|&t: &i64| t >= 0),
                (b"size", size) => entry.size = number(size)?,
                _ => {}
            }
        }
        (!entry.key.is_empty()).then_some(entry)
    }
}

fn number<T: std::str::FromStr>(text: &[u8]) -> Option<T> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// metadump URL-encodes keys.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The longest metadump line read: a 250-byte key URL-encoded takes 750 bytes, the other
/// fields fewer than 200.
const MAX_METADUMP_LINE: usize = 4096;

/// Sends `lru_crawler metadump all` to `server` on a connection of its own and hands each line
/// of the answer to `each` until `END`, with whether the next line has yet to arrive (a time
/// to flush what was printed). Every failure names the server.
fn metadump(
    server: &Address,
    timeout: Duration,
    mut each: impl FnMut(&[u8], bool) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let failed = |why: &str| usage(format!("{server}: {why}"));
    let broke = |err: io::Error| match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => failed(&format!(
            "no answer within the poll timeout ({} ms)",
            timeout.as_millis()
        )),
        _ => failed(&err.to_string()),
    };
    let (reader, mut writer): (Box<dyn Read>, Box<dyn Write>) = match server.transport() {
        Transport::Unix => {
            let stream = UnixStream::connect(server.host()).map_err(broke)?;
            stream.set_read_timeout(Some(timeout)).map_err(broke)?;
            stream.set_write_timeout(Some(timeout)).map_err(broke)?;
            let reader = stream.try_clone().map_err(broke)?;
            (Box::new(reader), Box::new(stream))
        }
        Transport::Tcp => {
            let stream = connect(server, timeout).map_err(broke)?;
            stream.set_read_timeout(Some(timeout)).map_err(broke)?;
            stream.set_write_timeout(Some(timeout)).map_err(broke)?;
            let reader = stream.try_clone().map_err(broke)?;
            (Box::new(reader), Box::new(stream))
        }
        Transport::Udp => return Err(failed("dump needs TCP or a unix socket")),
    };
    writer
        .write_all(b"lru_crawler metadump all\r\n")
        .map_err(broke)?;
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = MAX_METADUMP_LINE as u64 + 1;
        (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .map_err(broke)?;
        if line.last() != Some(&b'\n') {
            return Err(match line.len() > MAX_METADUMP_LINE {
                true => failed(&format!(
                    "a line of more than {MAX_METADUMP_LINE} bytes in the metadump (not memcached?)"
                )),
                false => failed("the connection closed before END"),
            });
        }
        match line.trim_ascii_end() {
            b"END" => return Ok(()),
            t if [&b"ERROR"[..], b"CLIENT_ERROR", b"SERVER_ERROR", b"BUSY"]
                .iter()
                .any(|word| t.starts_with(word)) =>
            {
                let said = escape(t, Field);
                return Err(failed(&format!("lru_crawler metadump refused: {said}")));
            }
            t => each(t, reader.buffer().is_empty())?,
        }
    }
}

/// A TCP connection to `server` that gives up after `timeout` on each address.
fn connect(server: &Address, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name does not resolve");
    for addr in (server.host(), server.port()).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// memcached's default item size limit (`-I`), for servers that cannot be asked (proxies).
const DEFAULT_ITEM_SIZE_MAX: u64 = 1024 * 1024;

/// The smallest item size limit of the servers: the most `cp` and `set KEY -` read, never
/// more than memcached's largest (`-I 1024m`), whatever a server says.
pub fn item_size_limit(mc: &Client) -> Result<u64, Failure> {
    const LARGEST: u64 = 1 << 30;
    if mc.is_proxy() {
        return Ok(DEFAULT_ITEM_SIZE_MAX);
    }
    let stats = mc.stats(Some("settings"))?;
    Ok(stats
        .iter()
        .map(|s| s.get_u64("item_size_max").unwrap_or(DEFAULT_ITEM_SIZE_MAX))
        .min()
        .unwrap_or(DEFAULT_ITEM_SIZE_MAX)
        .min(LARGEST))
}

/// Reads at most `limit` bytes from `input`; more is an error naming `what`.
pub fn read_bounded(input: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, Failure> {
    let mut data = Vec::new();
    input
        .take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| usage(format!("{what}: {e}")))?;
    if data.len() as u64 > limit {
        return Err(usage(format!(
            "{what}: more than the servers' item size limit ({limit} bytes)"
        )));
    }
    Ok(data)
}

/// How long `cp` waits for a FIFO's writer: opening a FIFO blocks until one comes.
const FIFO_WAIT: Duration = Duration::from_secs(5);

/// Stores each file under its name. A file may hold at most the servers' item size limit; a
/// FIFO must get a writer within [`FIFO_WAIT`].
pub fn cp(mc: &Client, files: &[std::path::PathBuf], exptime: u32, out: &mut dyn Write) -> Outcome {
    let limit = item_size_limit(mc)?;
    for path in files {
        let shown = path.display().to_string();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| usage(format!("{shown}: no file name in UTF-8")))?;
        let file = open(path).map_err(|why| usage(format!("{shown}: {why}")))?;
        let data = read_bounded(file, limit, &shown)?;
        let len = data.len();
        mc.set(name, Encoded::owned(data, flags::BYTES), exptime)?;
        writeln!(out, "{name}\t{len} bytes")?;
    }
    Ok(Status::Ok)
}

/// Opens a file to read, giving up on a FIFO that no writer opens within [`FIFO_WAIT`] (the
/// thread left waiting ends with the process).
fn open(path: &std::path::Path) -> Result<File, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.file_type().is_fifo() {
        return File::open(path).map_err(|e| e.to_string());
    }
    let (opened, wait) = mpsc::channel();
    let owned = path.to_owned();
    std::thread::spawn(move || {
        let _ = opened.send(File::open(owned));
    });
    match wait.recv_timeout(FIFO_WAIT) {
        Ok(file) => file.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "a FIFO that no writer opened within {} s",
            FIFO_WAIT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadump_lines_parse_with_encoded_keys() {
        let e = Entry::parse(b"key=a%20b%2Fc exp=-1 la=1700000000 cas=5 fetch=no cls=1 size=68")
            .unwrap();
        assert_eq!(e.key, b"a b/c");
        assert_eq!((e.expires, e.size), (None, 68));
        let e = Entry::parse(b"key=k exp=1800000000 la=1 cas=1 fetch=yes cls=2 size=9").unwrap();
        assert_eq!(e.expires, Some(1_800_000_000));
        assert!(Entry::parse(b"garbage").is_none());
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
    }

    #[test]
    fn codes_are_found_by_number_or_any_spelling_of_their_name() {
        let mut out = Vec::new();
        for code in [
            "3",
            "CONNECTION_FAILURE",
            "MEMCACHED_CONNECTION_FAILURE",
            "connection failure",
        ] {
            out.clear();
            explain(code, false, &mut out).unwrap();
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(text.starts_with("3 ConnectionFailure"), "{code}: {text}");
            assert!(text.contains("connection:"), "{text}");
        }
        assert!(explain("bogus", false, &mut out).is_err());
        assert!(explain("9999", false, &mut out).is_err());
    }
}
