//! The operator's commands that look at placement and codes: `whereis`, `ring`, `explain`,
//! `dump` and `cp`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use libmemcached::value::flags;
use libmemcached::{Address, Client, Encoded, ReturnCode, ServerSpec, Transport};
use serde_json::json;

use crate::args::{Options, Ring};
use crate::commands::client;
use crate::{Failure, Outcome, Status, usage};

/// Where each key lives, and whether its server has it.
pub fn whereis(mc: &Client, keys: &[String], json: bool, out: &mut dyn Write) -> Outcome {
    let mut all_found = true;
    for key in keys {
        let server = mc.server_for_key(key)?;
        let found = mc.get::<(Vec<u8>, u32)>(key)?.is_some();
        all_found &= found;
        if json {
            writeln!(
                out,
                "{}",
                json!({ key: { "server": server.to_string(), "found": found } })
            )?;
        } else {
            let state = if found { "found" } else { "missing" };
            writeln!(out, "{key}\t{server}\t{state}")?;
        }
    }
    Ok(if all_found { Status::Ok } else { Status::Miss })
}

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
    let keys = ring.keys.max(1);
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
        writeln!(
            out,
            "{}",
            json!({ "keys": keys, "moved": moved, "moved_percent": percent(moved), "share_after": servers })
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
        writeln!(
            out,
            "{}",
            json!({ "code": code.to_raw(), "name": format!("{code:?}"), "text": code.to_string(), "kind": kind })
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
/// keeping those that start with `prefix`.
pub fn dump(mc: &Client, prefix: Option<&str>, json: bool, out: &mut dyn Write) -> Outcome {
    let mut listed = 0;
    for server in mc.servers() {
        for line in metadump(&server)? {
            let Some(entry) = Entry::parse(&line) else {
                continue;
            };
            if prefix.is_some_and(|p| !entry.key.starts_with(p.as_bytes())) {
                continue;
            }
            listed += 1;
            let key = String::from_utf8_lossy(&entry.key);
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({ "key": key, "size": entry.size, "expires": entry.expires, "server": server.to_string() })
                )?;
            } else {
                let expires = entry.expires.map_or("never".to_owned(), |t| t.to_string());
                writeln!(out, "{key}\t{}\t{expires}\t{server}", entry.size)?;
            }
        }
    }
    Ok(if listed > 0 { Status::Ok } else { Status::Miss })
}

/// One `metadump` line: `key=... exp=... la=... cas=... fetch=... cls=... size=...`.
struct Entry {
    key: Vec<u8>,
    /// Unix time it expires at.
    expires: Option<i64>,
    size: u64,
}

impl Entry {
    fn parse(line: &str) -> Option<Entry> {
        let mut entry = Entry {
            key: Vec::new(),
            expires: None,
            size: 0,
        };
        for field in line.split_whitespace() {
            match field.split_once('=')? {
                ("key", key) => entry.key = percent_decode(key),
                ("exp", exp) => entry.expires = exp.parse().ok().filter(|&t: &i64| t >= 0),
                ("size", size) => entry.size = size.parse().ok()?,
                _ => {}
            }
        }
        (!entry.key.is_empty()).then_some(entry)
    }
}

/// metadump URL-encodes keys.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
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

fn metadump(server: &Address) -> Result<Vec<String>, Failure> {
    let timeout = Some(Duration::from_secs(5));
    let failed = |why: String| usage(format!("{server}: {why}"));
    let (mut reader, mut writer): (Box<dyn BufRead>, Box<dyn Write>) = match server.transport() {
        Transport::Unix => {
            let stream = UnixStream::connect(server.host()).map_err(|e| failed(e.to_string()))?;
            stream.set_read_timeout(timeout)?;
            (
                Box::new(BufReader::new(stream.try_clone()?)),
                Box::new(stream),
            )
        }
        Transport::Tcp => {
            let stream = TcpStream::connect((server.host(), server.port()))
                .map_err(|e| failed(e.to_string()))?;
            stream.set_read_timeout(timeout)?;
            (
                Box::new(BufReader::new(stream.try_clone()?)),
                Box::new(stream),
            )
        }
        Transport::Udp => return Err(failed("dump needs TCP or a unix socket".into())),
    };
    writer.write_all(b"lru_crawler metadump all\r\n")?;
    let mut lines = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(failed("the connection closed before END".into()));
        }
        let text = line.trim_end();
        match text {
            "END" => return Ok(lines),
            t if t.starts_with("ERROR")
                || t.starts_with("CLIENT_ERROR")
                || t.starts_with("BUSY") =>
            {
                return Err(failed(format!("lru_crawler metadump refused: {t}")));
            }
            t => lines.push(t.to_owned()),
        }
    }
}

/// Stores each file under its name.
pub fn cp(mc: &Client, files: &[std::path::PathBuf], exptime: u32, out: &mut dyn Write) -> Outcome {
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| usage(format!("{}: no file name in UTF-8", path.display())))?;
        let data = std::fs::read(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
        let len = data.len();
        mc.set(name, Encoded::owned(data, flags::BYTES), exptime)?;
        writeln!(out, "{name}\t{len} bytes")?;
    }
    Ok(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadump_lines_parse_with_encoded_keys() {
        let e = Entry::parse("key=a%20b%2Fc exp=-1 la=1700000000 cas=5 fetch=no cls=1 size=68")
            .unwrap();
        assert_eq!(e.key, b"a b/c");
        assert_eq!((e.expires, e.size), (None, 68));
        let e = Entry::parse("key=k exp=1800000000 la=1 cas=1 fetch=yes cls=2 size=9").unwrap();
        assert_eq!(e.expires, Some(1_800_000_000));
        assert!(Entry::parse("garbage").is_none());
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
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
