//! What the shield refuses: a fault proxy between the relay and memcached answers every
//! operation, in both protocols, with each malformed reply (the ones that crash or corrupt an
//! unshielded libmemcached 1.1.4 included, here in this very process). Each call must be true:
//! a value is the stored one, a miss is never made up, a write or counter is `Ok` only if the
//! server did it, and an error names the server. Nothing aborts.

mod common;

use std::time::Duration;

use libmemcached::testing::{Fault, FaultProxy, LONG_LINE_LEN};
use libmemcached::{Behavior, Client, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Gets,
    GetMulti,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Delete,
    Touch,
    Incr,
    Decr,
    SetMulti,
    Version,
    Stats,
}

const OPS: [Op; 16] = [
    Op::Get,
    Op::Gets,
    Op::GetMulti,
    Op::Set,
    Op::Add,
    Op::Replace,
    Op::Append,
    Op::Prepend,
    Op::Cas,
    Op::Delete,
    Op::Touch,
    Op::Incr,
    Op::Decr,
    Op::SetMulti,
    Op::Version,
    Op::Stats,
];

/// Keeps the hand-made replies for the whole run (a fault holds a `&'static [u8]`), reachable
/// rather than leaked, as the leak checker of `scripts/sanitize` wants.
fn keep(bytes: Vec<u8>) -> &'static [u8] {
    static KEPT: std::sync::Mutex<Vec<&'static [u8]>> = std::sync::Mutex::new(Vec::new());
    let kept: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    KEPT.lock().unwrap().push(kept);
    kept
}

/// A binary response header: `opcode`, key and extras lengths, `body` length.
fn binary_header(opcode: u8, key: u16, extras: u8, body: u32) -> Vec<u8> {
    let mut packet = vec![0x81, opcode];
    packet.extend_from_slice(&key.to_be_bytes());
    packet.extend_from_slice(&[extras, 0, 0, 0]);
    packet.extend_from_slice(&body.to_be_bytes());
    packet.extend_from_slice(&[0; 12]);
    packet
}

/// Every malformed answer, by name: the proxy's rewriting faults and hand-made replies.
fn faults(binary: bool) -> Vec<(String, Fault)> {
    let mut faults: Vec<(String, Fault)> = vec![
        ("garbage".into(), Fault::Garbage),
        ("wrong key".into(), Fault::WrongKey),
        ("length +3".into(), Fault::LyingLength(3)),
        ("length -3".into(), Fault::LyingLength(-3)),
        ("length +2^31-1".into(), Fault::LyingLength(i32::MAX)),
        ("long line".into(), Fault::LongLine),
        ("truncate".into(), Fault::Truncate),
    ];
    let replies: Vec<(&str, Vec<u8>)> = if binary {
        let long_key = 1000u16;
        let mut over_long = binary_header(0x0c, long_key, 4, 4 + u32::from(long_key) + 1);
        over_long.extend(std::iter::repeat_n(b'k', 4 + usize::from(long_key) + 1));
        let mut huge = binary_header(0x00, 0, 4, u32::MAX);
        huge.extend_from_slice(&[0; 64]);
        let mut short_body = binary_header(0x00, 10, 4, 3);
        short_body.extend_from_slice(&[0; 16]);
        let mut value_for_write = binary_header(0x00, 0, 4, 5);
        value_for_write.extend_from_slice(&[0, 0, 0, 0, b'x']);
        // Replies that answer `version` and `stats` in their own opcode, too long for the
        // stack buffers libmemcached reads them into (32 and 350 bytes).
        let mut long_version = binary_header(0x0b, 0, 0, 8000);
        long_version.extend(std::iter::repeat_n(b'1', 8000));
        let mut long_stat = binary_header(0x10, 10, 0, 349);
        long_stat.extend(std::iter::repeat_n(b's', 349));
        vec![
            ("binary version of 8000 bytes", long_version),
            ("binary stat of 349 bytes", long_stat),
            ("binary over-long key", over_long),
            ("binary length 2^32-1", huge),
            ("binary body shorter than key", short_body),
            ("binary value for any request", value_for_write),
            (
                "binary request magic",
                binary_header(0x00, 0, 0, 0)
                    .into_iter()
                    .map(|b| if b == 0x81 { 0x80 } else { b })
                    .collect(),
            ),
        ]
    } else {
        vec![
            ("END for any request", b"END\r\n".to_vec()),
            ("STORED for any request", b"STORED\r\n".to_vec()),
            (
                "VALUE for any request",
                b"VALUE k 0 1\r\nx\r\nEND\r\n".to_vec(),
            ),
            ("negative length", b"VALUE k 0 -1\r\n".to_vec()),
            (
                "length 2^64-1",
                b"VALUE k 0 18446744073709551615\r\n".to_vec(),
            ),
            (
                "over-long key",
                [b"VALUE ".as_slice(), &[b'k'; 300], b" 0 1\r\nx\r\nEND\r\n"].concat(),
            ),
            ("counter 2^64", b"18446744073709551616\r\n".to_vec()),
            (
                "stat line without end",
                [b"STAT ".as_slice(), &vec![b'x'; LONG_LINE_LEN], b"\r\n"].concat(),
            ),
        ]
    };
    faults.extend(
        replies
            .into_iter()
            .map(|(name, bytes)| (name.to_string(), Fault::Reply(keep(bytes)))),
    );
    faults
}

/// What went wrong with one call, if anything.
fn judge(op: Op, mc: &Client, direct: &Client, proxy: &str, key: &str) -> Option<String> {
    let names_server = |error: &Error| -> Option<String> {
        match error {
            Error::Multi { failures } => failures
                .iter()
                .find(|f| f.error.server().map(ToString::to_string).as_deref() != Some(proxy))
                .map(|f| format!("an error not naming the server: {f:?}")),
            error if error.server().map(ToString::to_string).as_deref() == Some(proxy) => None,
            error => Some(format!("an error not naming the server: {error:?}")),
        }
    };
    let stored = || direct.get::<String>(key).unwrap();
    let bool_write = |result: libmemcached::Result<bool>, done: &str, undone: &str| match result {
        Err(error) => names_server(&error),
        Ok(true) if stored().as_deref() == Some(done) => None,
        Ok(false) if stored().as_deref() == Some(undone) => None,
        Ok(answer) => Some(format!("Ok({answer}) but the server holds {:?}", stored())),
    };
    match op {
        Op::Get => match mc.get::<String>(key) {
            Ok(Some(v)) if v == "v1" => None,
            Ok(other) => Some(format!("read {other:?}, stored \"v1\"")),
            Err(error) => names_server(&error),
        },
        Op::Gets => match mc.gets::<String>(key) {
            Ok(Some((v, _))) if v == "v1" => None,
            Ok(other) => Some(format!("read {other:?}, stored \"v1\"")),
            Err(error) => names_server(&error),
        },
        Op::GetMulti => match mc.get_multi::<_, String>([key]) {
            Ok(found) if found.get(key).map(String::as_str) == Some("v1") => None,
            Ok(other) => Some(format!("read {other:?}, stored \"v1\"")),
            Err(error) => names_server(&error),
        },
        Op::Set | Op::SetMulti => {
            let result = match op {
                Op::Set => mc.set(key, "v2", 0),
                _ => mc.set_multi([(key, "v2")], 0).map(|_| ()),
            };
            match result {
                Ok(()) if stored().as_deref() == Some("v2") => None,
                Ok(()) => Some(format!("Ok but the server holds {:?}", stored())),
                Err(error) => names_server(&error),
            }
        }
        Op::Add => match mc.add(key, "v2", 0) {
            Ok(true) => Some("added a key that exists".into()),
            Ok(false) if stored().as_deref() == Some("v1") => None,
            Ok(false) => Some(format!("Ok(false) but the server holds {:?}", stored())),
            Err(error) => names_server(&error),
        },
        Op::Replace => bool_write(mc.replace(key, "v2", 0), "v2", "(missing)"),
        Op::Append => bool_write(mc.append(key, "+"), "v1+", "(missing)"),
        Op::Prepend => bool_write(mc.prepend(key, "+"), "+v1", "(missing)"),
        Op::Cas => {
            let (_, token) = direct.gets::<String>(key).unwrap().unwrap();
            bool_write(mc.cas(key, "v2", token, 0), "v2", "v1")
        }
        Op::Delete => match mc.delete(key) {
            Ok(true) if stored().is_none() => None,
            Ok(answer) => Some(format!("Ok({answer}) but the server holds {:?}", stored())),
            Err(error) => names_server(&error),
        },
        Op::Touch => match mc.touch(key, 100) {
            Ok(true) if stored().is_some() => None,
            Ok(answer) => Some(format!("Ok({answer}) but the server holds {:?}", stored())),
            Err(error) => names_server(&error),
        },
        Op::Incr | Op::Decr => {
            let (result, want) = match op {
                Op::Incr => (mc.incr(key, 1), 11),
                _ => (mc.decr(key, 1), 9),
            };
            match result {
                // memcached keeps a decremented number's width, padding it with spaces.
                Ok(v)
                    if v == want
                        && stored().as_deref().map(str::trim_end) == Some(&*want.to_string()) =>
                {
                    None
                }
                Ok(v) => Some(format!("Ok({v}) but the server holds {:?}", stored())),
                Err(error) => names_server(&error),
            }
        }
        Op::Version => match mc.version() {
            Ok(_) => None,
            Err(error) => names_server(&error),
        },
        Op::Stats => match mc.stats(None) {
            Ok(stats) if !stats.is_empty() => None,
            Ok(stats) => Some(format!("Ok with {} servers' stats", stats.len())),
            Err(error) => names_server(&error),
        },
    }
}

#[test]
fn every_malformed_answer_is_an_error_and_never_a_crash() {
    let server = common::own_server();
    let direct = Client::builder().servers([server.spec()]).build().unwrap();
    let mut bad = Vec::new();
    let mut cells = 0;
    // Every malformed answer fails some call (through the shield) for each protocol.
    let mut failing_faults = std::collections::BTreeSet::new();
    for binary in [false, true] {
        let proxy = FaultProxy::start(server.spec()).unwrap();
        let mc = Client::builder()
            .servers([proxy.spec()])
            .binary(binary)
            .behavior(Behavior::PollTimeout(Duration::from_millis(500)))
            .shield()
            .build()
            .unwrap();
        for (name, fault) in faults(binary) {
            for op in OPS {
                let key = common::key("shielded");
                let initial = if matches!(op, Op::Incr | Op::Decr) {
                    "10"
                } else {
                    "v1"
                };
                direct.set(&key, initial, 0).unwrap();
                proxy.set_fault(fault);
                let errors_before = mc.metrics().errors.total();
                let verdict = judge(op, &mc, &direct, &proxy.spec(), &key);
                if mc.metrics().errors.total() > errors_before {
                    failing_faults.insert((binary, name.clone()));
                }
                proxy.set_fault(Fault::Pass);
                // A well-formed answer that is false (a miss, or STORED, where the server said
                // otherwise) is the server's word: the shield checks form, not truth.
                let well_formed = matches!(
                    (name.as_str(), op),
                    ("END for any request", Op::Get | Op::Gets | Op::GetMulti)
                        | ("STORED for any request", Op::Add)
                );
                let verdict = verdict.filter(|_| !well_formed);
                cells += 1;
                if let Some(problem) = verdict {
                    bad.push(format!(
                        "{} {op:?} / {name}: {problem}",
                        if binary { "binary" } else { "ascii" }
                    ));
                }
                // The client works again once the server answers well.
                let check = common::key("after");
                mc.set(&check, "ok", 0).unwrap();
                assert_eq!(mc.get::<String>(&check).unwrap().as_deref(), Some("ok"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        bad.len(),
        bad.join("\n")
    );
    for binary in [false, true] {
        for (name, _) in faults(binary) {
            assert!(
                failing_faults.contains(&(binary, name.clone())),
                "{name} failed no call"
            );
        }
    }
}
