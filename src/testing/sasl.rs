//! SASL for test servers: the sasldb and `memcached.conf` a SASL server reads, and the
//! authenticated binary-protocol `stats` that tells when it answers.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Writes the sasldb with one user and the `memcached.conf` that points memcached's SASL at it.
pub(super) fn write_sasl_config(dir: &Path, username: &str, password: &str) -> io::Result<()> {
    let db = dir.join("memcached-sasldb");
    let conf = format!("mech_list: plain\nsasldb_path: {}\n", db.display());
    fs::write(dir.join("memcached.conf"), conf)?;
    // Debian puts saslpasswd2 in /usr/sbin, which is not on every user's PATH.
    let candidates: Vec<std::ffi::OsString> = match std::env::var_os("SASLPASSWD2") {
        Some(program) => vec![program],
        None => vec!["saslpasswd2".into(), "/usr/sbin/saslpasswd2".into()],
    };
    let mut last_error = None;
    for program in candidates {
        // -p: the password comes from stdin; -c: create the user; -a: memcached's app name.
        let child = Command::new(&program)
            .args(["-p", "-c", "-a", "memcached", "-f"])
            .arg(&db)
            .arg(username)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(err) => {
                last_error = Some(err);
                continue;
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(password.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "saslpasswd2 failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        return Ok(());
    }
    let err = last_error.unwrap_or_else(|| io::Error::other("no saslpasswd2"));
    Err(io::Error::new(
        err.kind(),
        format!("cannot run saslpasswd2 ({err}): install Debian's sasl2-bin or set SASLPASSWD2"),
    ))
}

/// memcached binary protocol opcodes used by the SASL probe.
const OP_STAT: u8 = 0x10;
const OP_SASL_AUTH: u8 = 0x21;

/// A server's stats over the binary protocol, after a SASL PLAIN authentication.
pub(super) fn binary_stats<S: Read + Write>(
    mut stream: S,
    username: &str,
    password: &str,
) -> io::Result<Vec<(String, String)>> {
    let token = format!("\0{username}\0{password}");
    send_binary(&mut stream, OP_SASL_AUTH, b"PLAIN", token.as_bytes())?;
    let (status, _, value) = read_binary(&mut stream)?;
    if status != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "SASL authentication failed (status {status:#x}): {}",
                String::from_utf8_lossy(&value)
            ),
        ));
    }
    send_binary(&mut stream, OP_STAT, b"", b"")?;
    let mut stats = Vec::new();
    loop {
        let (status, key, value) = read_binary(&mut stream)?;
        if status != 0 {
            return Err(io::Error::other(format!(
                "stats failed (status {status:#x})"
            )));
        }
        if key.is_empty() {
            return Ok(stats);
        }
        stats.push((
            String::from_utf8_lossy(&key).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        ));
    }
}

fn send_binary<W: Write>(stream: &mut W, opcode: u8, key: &[u8], value: &[u8]) -> io::Result<()> {
    let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "request too long");
    let key_len = u16::try_from(key.len()).map_err(|_| too_long())?;
    let body_len = u32::try_from(key.len() + value.len()).map_err(|_| too_long())?;
    let mut packet = Vec::with_capacity(24 + key.len() + value.len());
    packet.extend_from_slice(&[0x80, opcode]);
    packet.extend_from_slice(&key_len.to_be_bytes());
    // Extras length, data type, vbucket.
    packet.extend_from_slice(&[0, 0, 0, 0]);
    packet.extend_from_slice(&body_len.to_be_bytes());
    // Opaque and CAS.
    packet.extend_from_slice(&[0; 12]);
    packet.extend_from_slice(key);
    packet.extend_from_slice(value);
    stream.write_all(&packet)
}

/// One binary response: status, key, value.
fn read_binary<R: Read>(stream: &mut R) -> io::Result<(u16, Vec<u8>, Vec<u8>)> {
    /// More than any stat or SASL reply; a bigger body means we are not talking to memcached.
    const MAX_BODY: usize = 1 << 20;
    let mut header = [0u8; 24];
    stream.read_exact(&mut header)?;
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    if header[0] != 0x81 {
        return Err(invalid("not a memcached binary response"));
    }
    let key_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let extras_len = usize::from(header[4]);
    let status = u16::from_be_bytes([header[6], header[7]]);
    let body_len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if body_len > MAX_BODY || extras_len + key_len > body_len {
        return Err(invalid("malformed binary response"));
    }
    let mut body = vec![0; body_len];
    stream.read_exact(&mut body)?;
    let value = body.split_off(extras_len + key_len);
    let key = body.split_off(extras_len);
    Ok((status, key, value))
}
