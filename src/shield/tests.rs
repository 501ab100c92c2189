//! The shield on hand-made streams: real answers pass whole and cut at every byte; each kind of
//! malformed answer is refused with what it was.

use super::{Protocol, Shield, approve_all};

const MAX: usize = 1 << 20;

/// Feeds `requests` then `replies` whole: the bytes approved of each, or the violation.
fn whole(protocol: Protocol, requests: &[u8], replies: &[u8]) -> Result<(usize, usize), String> {
    let mut shield = Shield::new(protocol, MAX);
    let a = approve_all(|b| shield.request(b), requests).map_err(|v| v.to_string())?;
    let b = approve_all(|b| shield.reply(b), replies).map_err(|v| v.to_string())?;
    Ok((a, b))
}

/// Feeds both streams a byte at a time, keeping what is not approved yet as the relay does.
fn bytewise(protocol: Protocol, requests: &[u8], replies: &[u8]) -> Result<(usize, usize), String> {
    let mut shield = Shield::new(protocol, MAX);
    let mut feed = |input: &[u8], reply: bool| -> Result<usize, String> {
        let (mut held, mut approved) = (Vec::new(), 0);
        for &byte in input {
            held.push(byte);
            let step = |b: &[u8]| {
                if reply {
                    shield.reply(b)
                } else {
                    shield.request(b)
                }
            };
            let n = approve_all(step, &held).map_err(|v| v.to_string())?;
            approved += n;
            held.drain(..n);
        }
        Ok(approved)
    };
    Ok((feed(requests, false)?, feed(replies, true)?))
}

/// A conversation that must pass in full, however it is cut, leaving the shield idle.
fn passes(protocol: Protocol, requests: &[u8], replies: &[u8]) {
    let all = Ok((requests.len(), replies.len()));
    assert_eq!(
        whole(protocol, requests, replies),
        all,
        "{:?}",
        replies.escape_ascii().to_string()
    );
    assert_eq!(bytewise(protocol, requests, replies), all);
    let mut shield = Shield::new(protocol, MAX);
    approve_all(|b| shield.request(b), requests).unwrap();
    approve_all(|b| shield.reply(b), replies).unwrap();
    assert!(shield.idle());
}

/// A conversation whose replies must be refused, with a message containing `why`.
fn refused(protocol: Protocol, requests: &[u8], replies: &[u8], why: &str) {
    for result in [
        whole(protocol, requests, replies),
        bytewise(protocol, requests, replies),
    ] {
        let error = result.expect_err("refused");
        assert!(error.contains(why), "{error}");
    }
}

#[test]
fn text_answers_pass() {
    let a = Protocol::Ascii;
    passes(a, b"get k\r\n", b"VALUE k 5 3\r\nabc\r\nEND\r\n");
    passes(
        a,
        b"get a b c a\r\n",
        b"VALUE a 0 1\r\nx\r\nVALUE c 0 0\r\n\r\nVALUE a 0 1\r\nx\r\nEND\r\n",
    );
    passes(a, b"gets k\r\n", b"VALUE k 0 2 99\r\nhi\r\nEND\r\n");
    passes(a, b"gat 10 k\r\n", b"END\r\n");
    passes(
        a,
        b"set k 0 0 3\r\nabc\r\nadd k 0 0 1\r\nx\r\n",
        b"STORED\r\nNOT_STORED\r\n",
    );
    passes(a, b"cas k 1 0 1 77\r\nx\r\n", b"EXISTS\r\n");
    passes(a, b"set k 0 0 1 noreply\r\nx\r\nget k\r\n", b"END\r\n");
    passes(
        a,
        b"delete k\r\nincr n 5\r\ndecr n 1\r\ntouch k 10\r\n",
        b"DELETED\r\n6\r\nNOT_FOUND\r\nTOUCHED\r\n",
    );
    passes(
        a,
        b"flush_all\r\nversion\r\nverbosity 1\r\n",
        b"OK\r\nVERSION 1.6.18\r\nOK\r\n",
    );
    passes(
        a,
        b"stats\r\nstats settings\r\n",
        b"STAT pid 1\r\nSTAT uptime 2\r\nEND\r\nSTAT maxbytes 9\r\nEND\r\n",
    );
    passes(
        a,
        b"set k 0 0 1\r\nx\r\nincr k 1\r\n",
        b"SERVER_ERROR out of memory\r\nCLIENT_ERROR cannot increment\r\n",
    );
    passes(a, b"quit\r\n", b"");
    // A key named "noreply" is a key: memcached takes noreply only as a last optional argument.
    passes(
        a,
        b"get noreply\r\ndelete noreply\r\n",
        b"END\r\nNOT_FOUND\r\n",
    );
    passes(
        a,
        b"delete k noreply\r\nincr n 1 noreply\r\nget k\r\n",
        b"END\r\n",
    );
}

#[test]
fn malformed_text_answers_are_refused() {
    let a = Protocol::Ascii;
    let long_key = [b"VALUE ".as_slice(), &[b'k'; 251], b" 0 1\r\nx\r\nEND\r\n"].concat();
    let long_get = [b"get ".as_slice(), &[b'k'; 251], b"\r\n"].concat();
    refused(a, &long_get, &long_key, "a key over 250 bytes");
    refused(
        a,
        b"get k\r\n",
        b"VALUE k 0 -1\r\n",
        "not an answer to a get",
    );
    refused(
        a,
        b"get k\r\n",
        b"VALUE k 0 18446744073709551615\r\n",
        "over the 1048576-byte limit",
    );
    refused(
        a,
        b"get k\r\n",
        b"VALUE k 0 99999999999999999999999\r\n",
        "not an answer",
    );
    refused(
        a,
        b"get k\r\n",
        b"VALUE j 0 1\r\nx\r\nEND\r\n",
        "a key not asked",
    );
    refused(
        a,
        b"get a b\r\n",
        b"VALUE b 0 1\r\nx\r\nVALUE a 0 1\r\nx\r\nEND\r\n",
        "a key not asked",
    );
    refused(
        a,
        b"get k\r\n",
        b"VALUE k 0 1\r\nxyz\r\nEND\r\n",
        "not followed by \\r\\n",
    );
    refused(
        a,
        b"gets k\r\n",
        b"VALUE k 0 1\r\nx\r\nEND\r\n",
        "not an answer to a get",
    );
    refused(
        a,
        b"set k 0 0 1\r\nx\r\n",
        b"VALUE k 0 1\r\nx\r\nEND\r\n",
        "not an answer to a storage command",
    );
    refused(
        a,
        b"set k 0 0 1\r\nx\r\n",
        b"END\r\n",
        "not an answer to a storage command",
    );
    refused(a, b"delete k\r\n", b"OK\r\n", "not an answer to delete");
    refused(
        a,
        b"touch k 1\r\n",
        b"DELETED\r\n",
        "not an answer to touch",
    );
    refused(
        a,
        b"incr k 1\r\n",
        b"18446744073709551616\r\n",
        "not an answer to incr/decr",
    );
    refused(a, b"incr k 1\r\n", b"OK\r\n", "not an answer to incr/decr");
    refused(a, b"", b"STORED\r\n", "a reply to no request");
    refused(
        a,
        b"set k 0 0 1 noreply\r\nx\r\n",
        b"STORED\r\n",
        "a reply to no request",
    );
    refused(a, b"get k\r\n", b"END\nEND\r\n", "not ended by \\r\\n");
    refused(a, b"quit\r\n", b"END\r\n", "a reply after quit");
    let long_line = [vec![b'x'; 9000], b"\r\n".to_vec()].concat();
    refused(a, b"incr k 1\r\n", &long_line, "over 8192 bytes");
    refused(
        a,
        b"frobnicate\r\n",
        b"",
        "a request the shield does not know",
    );
}

/// A binary packet.
fn packet(
    magic: u8,
    opcode: u8,
    key: &[u8],
    extras: &[u8],
    value: &[u8],
    status: u16,
    opaque: u32,
) -> Vec<u8> {
    let body = (extras.len() + key.len() + value.len()) as u32;
    let mut p = vec![magic, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.extend_from_slice(&[extras.len() as u8, 0]);
    p.extend_from_slice(&status.to_be_bytes());
    p.extend_from_slice(&body.to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

fn request(opcode: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    packet(0x80, opcode, key, extras, value, 0, 7)
}

fn response(opcode: u8, key: &[u8], extras: &[u8], value: &[u8], status: u16) -> Vec<u8> {
    packet(0x81, opcode, key, extras, value, status, 7)
}

#[test]
fn binary_answers_pass() {
    let b = Protocol::Binary;
    // libmemcached's multi-get: quiet gets with keys, then a NOOP; a miss sends nothing.
    let requests = [
        request(0x0d, b"a", &[], &[]),
        request(0x0d, b"b", &[], &[]),
        request(0x0a, b"", &[], &[]),
    ]
    .concat();
    let replies = [
        response(0x0d, b"b", &[0; 4], b"value", 0),
        response(0x0a, b"", &[], &[], 0),
    ]
    .concat();
    passes(b, &requests, &replies);
    passes(
        b,
        &request(0x01, b"k", &[0; 8], b"data"),
        &response(0x01, b"", &[], &[], 0),
    );
    passes(
        b,
        &request(0x01, b"k", &[0; 8], b"data"),
        &response(0x01, b"", &[], b"Too large", 3),
    );
    passes(
        b,
        &request(0x05, b"n", &[0; 20], &[]),
        &response(0x05, b"", &[], &[0, 0, 0, 0, 0, 0, 0, 9], 0),
    );
    passes(
        b,
        &request(0x1c, b"k", &[0; 4], &[]),
        &response(0x1c, b"", &[0; 4], &[], 0),
    );
    passes(
        b,
        &request(0x0b, b"", &[], &[]),
        &response(0x0b, b"", &[], b"1.6.18", 0),
    );
    let stats = [
        response(0x10, b"pid", &[], b"1", 0),
        response(0x10, b"", &[], &[], 0),
    ]
    .concat();
    passes(b, &request(0x10, b"", &[], &[]), &stats);
    passes(
        b,
        &request(0x21, b"PLAIN", &[], b"\0u\0p"),
        &response(0x21, b"", &[], b"Authenticated", 0),
    );
    // A quiet write answered only because it failed, then the NOOP.
    let requests = [
        request(0x11, b"k", &[0; 8], b"x"),
        request(0x0a, b"", &[], &[]),
    ]
    .concat();
    let replies = [
        response(0x11, b"", &[], b"Out of memory", 0x82),
        response(0x0a, b"", &[], &[], 0),
    ]
    .concat();
    passes(b, &requests, &replies);
}

#[test]
fn malformed_binary_answers_are_refused() {
    let b = Protocol::Binary;
    let get = request(0x0c, b"k", &[], &[]);
    let long_key = vec![b'k'; 251];
    refused(
        b,
        &get,
        &response(0x0c, &long_key, &[0; 4], b"x", 0),
        "a key of 251 bytes",
    );
    let mut huge = response(0x0c, b"k", &[0; 4], b"x", 0);
    huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    refused(b, &get, &huge, "over the 1048576-byte limit");
    let mut short = response(0x0c, b"k", &[0; 4], b"x", 0);
    short[8..12].copy_from_slice(&2u32.to_be_bytes());
    refused(b, &get, &short, "shorter than its extras and key");
    refused(
        b,
        &get,
        &response(0x0c, b"j", &[0; 4], b"x", 0),
        "a key not asked",
    );
    refused(
        b,
        &get,
        &packet(0x81, 0x0c, b"k", &[0; 4], b"x", 0, 8),
        "not asked",
    );
    refused(
        b,
        &get,
        &packet(0x80, 0x0c, b"k", &[0; 4], b"x", 0, 7),
        "not a response",
    );
    refused(
        b,
        &get,
        &response(0x0c, b"k", &[], b"x", 0),
        "without its flags",
    );
    let set = request(0x01, b"k", &[0; 8], b"data");
    refused(
        b,
        &set,
        &response(0x00, b"", &[0; 4], b"x", 0),
        "a reply with opcode",
    );
    refused(
        b,
        &set,
        &response(0x01, b"", &[], b"surprise", 0),
        "a body in a write's answer",
    );
    refused(
        b,
        &set,
        &response(0x01, b"", &[], &[], 0x99),
        "an unknown status",
    );
    let incr = request(0x05, b"n", &[0; 20], &[]);
    refused(
        b,
        &incr,
        &response(0x05, b"", &[], &[0; 4], 0),
        "not 8 bytes",
    );
    refused(
        b,
        b"",
        &response(0x0a, b"", &[], &[], 0),
        "a reply to no request",
    );
    refused(
        b,
        &request(0x40, b"", &[], &[]),
        b"",
        "a request the shield does not know",
    );
}

#[test]
fn values_pass_by_length_as_they_arrive() {
    let mut shield = Shield::new(Protocol::Ascii, MAX);
    assert_eq!(shield.request(b"get k\r\n"), Ok(7));
    // The header line waits until whole; the value goes on as it comes.
    assert_eq!(shield.reply(b"VALUE k 0 10"), Ok(0));
    assert_eq!(shield.reply(b"VALUE k 0 10\r\n0123"), Ok(18));
    assert_eq!(shield.reply(b"456"), Ok(3));
    assert!(!shield.idle());
    assert_eq!(shield.reply(b"789\r"), Ok(4));
    assert_eq!(shield.reply(b"\nEND\r\n"), Ok(6));
    assert!(shield.idle());
}

/// The fuzz target's committed corpus (`fuzz/corpus/shield`), crashes included.
#[test]
fn fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/shield");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| super::fuzz_check(&data));
        assert!(outcome.is_ok(), "{}", file.display());
    }
}
