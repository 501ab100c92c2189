//! Bad input gets a clear error and loses nothing, against real memcached processes.
//!
//! Every test uses keys of its own (`common::key`) and never flushes: the server may be shared
//! through `$MEMCACHED_SERVERS`. Tests that depend on a server's settings (its item size limit)
//! or need a port start a memcached of their own.

mod common;

use std::time::{Duration, Instant};

use libmemcached::testing::Memcached;
use libmemcached::{
    Behavior, Client, ConfigError, Encoded, Error, InvalidKeyReason, MAX_KEY_LEN, ReturnCode,
};

/// 2 MiB: twice memcached's default item size limit (`-I 1m`).
const TOO_BIG: usize = 2 * 1024 * 1024;

// ---- helpers -------------------------------------------------------------------------------

/// One single-key operation on a client; the `u64` is a real CAS token for `cas`.
type Op = fn(&Client, &[u8], u64) -> Result<(), Error>;

/// Every operation that takes a key, each run with the bad keys below.
const OPS: &[(&str, Op)] = &[
    ("get", |c, k, _| c.get::<Vec<u8>>(k).map(drop)),
    ("gets", |c, k, _| c.gets::<Vec<u8>>(k).map(drop)),
    ("set", |c, k, _| c.set(k, "v", 0)),
    ("add", |c, k, _| c.add(k, "v", 0).map(drop)),
    ("replace", |c, k, _| c.replace(k, "v", 0).map(drop)),
    ("append", |c, k, _| c.append(k, "v").map(drop)),
    ("prepend", |c, k, _| c.prepend(k, "v").map(drop)),
    ("cas", |c, k, token| c.cas(k, "v", token, 0).map(drop)),
    ("delete", |c, k, _| c.delete(k).map(drop)),
    ("touch", |c, k, _| c.touch(k, 60).map(drop)),
    ("incr", |c, k, _| c.incr(k, 1).map(drop)),
    ("decr", |c, k, _| c.decr(k, 1).map(drop)),
    ("incr_with_initial", |c, k, _| {
        c.incr_with_initial(k, 1, 10, 0).map(drop)
    }),
    ("server_for_key", |c, k, _| c.server_for_key(k).map(drop)),
];

/// Asserts `result` is `InvalidKey` for exactly `key` with `reason`.
fn assert_invalid_key<T: std::fmt::Debug>(
    result: Result<T, Error>,
    key: &[u8],
    reason: InvalidKeyReason,
    what: &str,
) {
    match result {
        Err(Error::InvalidKey { key: k, reason: r }) => {
            assert_eq!(k, key, "{what}: the error names another key");
            assert_eq!(r, reason, "{what}: wrong reason");
        }
        other => panic!("{what}: expected InvalidKey({reason:?}), got {other:?}"),
    }
}

/// Two good keys with known values and a key known to be missing: after bad input the client
/// must still hand back exactly these (a desynchronised connection returns another key's value).
struct Canary {
    k1: String,
    k2: String,
    missing: String,
}

impl Canary {
    fn plant(mc: &Client, tag: &str) -> Canary {
        let canary = Canary {
            k1: common::key(&format!("{tag}-k1")),
            k2: common::key(&format!("{tag}-k2")),
            missing: common::key(&format!("{tag}-missing")),
        };
        mc.set(&canary.k1, "ONE", 0).unwrap();
        mc.set(&canary.k2, "TWO", 0).unwrap();
        canary.check(mc, "after planting");
        canary
    }

    fn check(&self, mc: &Client, after: &str) {
        assert_eq!(
            mc.get::<String>(&self.k1).unwrap().as_deref(),
            Some("ONE"),
            "k1 {after}"
        );
        assert_eq!(
            mc.get::<String>(&self.k2).unwrap().as_deref(),
            Some("TWO"),
            "k2 {after}"
        );
        assert_eq!(
            mc.get::<String>(&self.missing).unwrap(),
            None,
            "missing key {after}"
        );
        // The multi-key path too: gets goes through mget/fetch.
        let (one, _) = mc.gets::<String>(&self.k1).unwrap().expect("k1 is there");
        assert_eq!(one, "ONE", "gets k1 {after}");
    }
}

/// `base` with `byte` inserted after it, and where it sits.
fn with_byte(base: &str, byte: u8) -> (Vec<u8>, usize) {
    let mut key = base.as_bytes().to_vec();
    let position = key.len();
    key.push(byte);
    key.extend_from_slice(b"tail");
    (key, position)
}

/// A key of exactly `len` bytes that no other test uses.
fn key_of_len(tag: &str, len: usize) -> Vec<u8> {
    let mut key = common::key(tag).into_bytes();
    assert!(key.len() < len);
    key.resize(len, b'k');
    key
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    libmemcached::testing::unused_port().unwrap()
}

// ---- 1. bad keys in the ASCII protocol -----------------------------------------------------

/// Bytes the ASCII protocol cannot carry in a key: each would split or end the command line.
const FORBIDDEN: &[u8] = b" \n\r\0\x7f";

#[test]
fn ascii_bad_keys_are_refused_by_every_operation_and_the_connection_stays_in_step() {
    let server = common::server();
    let mc = common::client(server.specs(), false);
    let canary = Canary::plant(&mc, "ascii-bad");
    // A real token, so a cas that got through would have a chance to store.
    let (_, token) = mc.gets::<String>(&canary.k1).unwrap().unwrap();
    assert_ne!(token, 0);

    // The part before the bad byte is a good key of its own: it must never get stored.
    let base = common::key("ascii-bad-base");
    let mut cases: Vec<(Vec<u8>, InvalidKeyReason)> = FORBIDDEN
        .iter()
        .map(|&byte| {
            let (key, position) = with_byte(&base, byte);
            (key, InvalidKeyReason::ForbiddenByte { byte, position })
        })
        .collect();
    cases.push((
        vec![b'k'; 251],
        InvalidKeyReason::TooLong {
            len: 251,
            max: MAX_KEY_LEN,
        },
    ));
    cases.push((Vec::new(), InvalidKeyReason::Empty));

    for (key, reason) in &cases {
        for (name, op) in OPS {
            let what = format!("ascii {name}(\"{}\")", key.escape_ascii());
            assert_invalid_key(op(&mc, key, token), key, *reason, &what);
            canary.check(&mc, &format!("after {what}"));
            assert_eq!(
                mc.get::<String>(&base).unwrap(),
                None,
                "{what} stored the key's prefix"
            );
        }
    }
    // The token is untouched: nothing was written to k1.
    assert!(mc.cas(&canary.k1, "ONE", token, 0).unwrap());
}

#[test]
fn invalid_key_error_message_names_key_and_reason() {
    let server = common::server();
    let mc = common::client(server.specs(), false);
    let err = mc.get::<String>("a b").unwrap_err();
    let text = err.to_string();
    assert!(text.contains(r#""a b""#), "{text}");
    assert!(
        text.contains("0x20") && text.contains("position 1"),
        "{text}"
    );
    assert!(err.is_invalid_input());
    assert_eq!(err.code(), None, "refused before libmemcached saw it");

    let err = mc.get::<String>(vec![b'x'; 251]).unwrap_err();
    assert!(err.to_string().contains("251 bytes long"), "{err}");
}

// ---- 2. keys in the binary protocol --------------------------------------------------------

#[test]
fn binary_keys_may_hold_spaces_and_control_bytes_and_do_not_collide() {
    let server = common::server();
    let mc = common::client(server.specs(), true);
    let ascii = common::client(server.specs(), false);
    let canary = Canary::plant(&mc, "binary-bytes");

    // "base", "base_tail" and "base<byte>tail" for every byte: all distinct items.
    let base = common::key("binary-bytes");
    mc.set(&base, "plain", 0).unwrap();
    let (underscore, _) = with_byte(&base, b'_');
    mc.set(&underscore, "underscore", 0).unwrap();
    let keys: Vec<(Vec<u8>, String)> = FORBIDDEN
        .iter()
        .map(|&byte| (with_byte(&base, byte).0, format!("value {byte:#04x}")))
        .collect();
    for (key, value) in &keys {
        mc.set(key, value, 0).unwrap();
    }
    for (key, value) in &keys {
        let what = key.escape_ascii().to_string();
        assert_eq!(
            mc.get::<String>(key).unwrap().as_ref(),
            Some(value),
            "{what}"
        );
        // The ASCII protocol still refuses the same key rather than sending a mangled one.
        assert!(
            matches!(ascii.get::<String>(key), Err(Error::InvalidKey { .. })),
            "ascii {what}"
        );
    }
    assert_eq!(mc.get::<String>(&base).unwrap().as_deref(), Some("plain"));
    assert_eq!(
        mc.get::<String>(&underscore).unwrap().as_deref(),
        Some("underscore")
    );
    canary.check(&mc, "after binary keys with odd bytes");

    // The other operations take them too.
    for (key, value) in &keys {
        let what = key.escape_ascii().to_string();
        assert!(mc.append(key, "+").unwrap(), "{what}");
        assert!(mc.prepend(key, "-").unwrap(), "{what}");
        let (got, token) = mc.gets::<String>(key).unwrap().expect(&what);
        assert_eq!(got, format!("-{value}+"), "{what}");
        assert!(mc.cas(key, "7", token, 0).unwrap(), "{what}");
        assert_eq!(mc.incr(key, 1).unwrap(), 8, "{what}");
        assert_eq!(mc.decr(key, 2).unwrap(), 6, "{what}");
        assert!(mc.touch(key, 60).unwrap(), "{what}");
        assert!(mc.server_for_key(key).is_ok(), "{what}");
        assert!(mc.delete(key).unwrap(), "{what}");
        assert_eq!(mc.get::<String>(key).unwrap(), None, "{what}");
    }
    // Deleting them touched neither neighbour.
    assert_eq!(mc.get::<String>(&base).unwrap().as_deref(), Some("plain"));
    assert_eq!(
        mc.get::<String>(&underscore).unwrap().as_deref(),
        Some("underscore")
    );
    canary.check(&mc, "after deleting binary keys");
}

#[test]
fn binary_still_refuses_empty_and_too_long_keys_in_every_operation() {
    let server = common::server();
    let mc = common::client(server.specs(), true);
    let canary = Canary::plant(&mc, "binary-bad");
    let (_, token) = mc.gets::<String>(&canary.k1).unwrap().unwrap();

    let long = key_of_len("binary-long", 251);
    let cases = [
        (
            long.clone(),
            InvalidKeyReason::TooLong {
                len: 251,
                max: MAX_KEY_LEN,
            },
        ),
        (Vec::new(), InvalidKeyReason::Empty),
    ];
    for (key, reason) in &cases {
        for (name, op) in OPS {
            let what = format!("binary {name}({} bytes)", key.len());
            assert_invalid_key(op(&mc, key, token), key, *reason, &what);
            canary.check(&mc, &format!("after {what}"));
        }
    }
    // Nothing was stored under the 250-byte prefix of the long key.
    assert_eq!(mc.get::<String>(&long[..MAX_KEY_LEN]).unwrap(), None);
}

#[test]
fn a_key_of_exactly_250_bytes_works_in_both_protocols() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let key = key_of_len(&format!("250-{protocol}"), MAX_KEY_LEN);
        assert_eq!(key.len(), 250);
        mc.set(&key, "fits", 0).unwrap();
        assert_eq!(
            mc.get::<String>(&key).unwrap().as_deref(),
            Some("fits"),
            "{protocol}"
        );
        let (_, token) = mc.gets::<String>(&key).unwrap().unwrap();
        assert!(mc.cas(&key, "still fits", token, 0).unwrap(), "{protocol}");
        assert!(mc.append(&key, "!").unwrap(), "{protocol}");
        assert_eq!(
            mc.get::<String>(&key).unwrap().as_deref(),
            Some("still fits!"),
            "{protocol}"
        );
        assert!(mc.delete(&key).unwrap(), "{protocol}");
        assert_eq!(
            mc.incr_with_initial(&key, 1, 5, 0).unwrap(),
            5,
            "{protocol}"
        );
        assert!(mc.delete(&key).unwrap(), "{protocol}");
    }
}

// ---- 3. values too big for the server -------------------------------------------------------

/// Asserts `result` is `TooBig` for a 2 MiB value, naming the server.
fn assert_too_big<T: std::fmt::Debug>(result: Result<T, Error>, spec: &str, what: &str) {
    match result {
        Err(Error::TooBig { len, server, key }) => {
            assert_eq!(len, TOO_BIG, "{what}");
            assert!(!key.is_empty(), "{what}: the key is named");
            assert_eq!(
                server.map(|s| s.to_string()).as_deref(),
                Some(spec),
                "{what}"
            );
        }
        other => panic!("{what}: expected TooBig, got {other:?}"),
    }
}

#[test]
fn too_big_values_are_refused_and_the_client_keeps_working() {
    // A server of our own: the test depends on memcached's default 1 MiB item limit.
    let server = common::own_server();
    let spec = server.spec();
    let big = vec![b'x'; TOO_BIG];
    for (protocol, mc) in common::both_protocols(std::slice::from_ref(&spec)) {
        let canary = Canary::plant(&mc, &format!("big-{protocol}"));

        // A new key: the set fails and nothing is stored.
        let fresh = common::key(&format!("big-fresh-{protocol}"));
        let err = mc.set(&fresh, &big, 0).unwrap_err();
        assert!(err.is_invalid_input() && !err.is_connection(), "{err:?}");
        assert!(err.to_string().contains("2097152 bytes"), "{err}");
        assert_too_big(Err::<(), _>(err), &spec, &format!("{protocol} set new"));
        assert_eq!(mc.get::<Vec<u8>>(&fresh).unwrap(), None, "{protocol}");
        canary.check(&mc, &format!("after a too-big set ({protocol})"));

        // An existing key: memcached unlinks the old item when a *set* is too big ("avoid stale
        // data persisting in cache because we failed alloc"), so the key ends up missing.
        let old = common::key(&format!("big-old-{protocol}"));
        mc.set(&old, "old", 0).unwrap();
        assert_too_big(
            mc.set(&old, &big, 0),
            &spec,
            &format!("{protocol} set existing"),
        );
        assert_eq!(
            mc.get::<String>(&old).unwrap(),
            None,
            "{protocol}: memcached drops the old value on a too-big set"
        );
        canary.check(&mc, &format!("after a too-big overwrite ({protocol})"));

        // add, replace and cas fail the same way but leave the old value in place.
        mc.set(&old, "old", 0).unwrap();
        assert_too_big(mc.add(&fresh, &big, 0), &spec, &format!("{protocol} add"));
        assert_eq!(mc.get::<Vec<u8>>(&fresh).unwrap(), None, "{protocol} add");
        assert_too_big(
            mc.replace(&old, &big, 0),
            &spec,
            &format!("{protocol} replace"),
        );
        assert_eq!(
            mc.get::<String>(&old).unwrap().as_deref(),
            Some("old"),
            "{protocol} replace"
        );
        let (_, token) = mc.gets::<String>(&old).unwrap().unwrap();
        assert_too_big(
            mc.cas(&old, &big, token, 0),
            &spec,
            &format!("{protocol} cas"),
        );
        assert_eq!(
            mc.get::<String>(&old).unwrap().as_deref(),
            Some("old"),
            "{protocol} cas"
        );
        // The token still holds: the refused cas changed nothing.
        assert!(mc.cas(&old, "new", token, 0).unwrap(), "{protocol}");
        assert_eq!(
            mc.get::<String>(&old).unwrap().as_deref(),
            Some("new"),
            "{protocol}"
        );
        canary.check(&mc, &format!("after too-big add/replace/cas ({protocol})"));

        // A value just under the limit still goes through on the same client.
        let fits = common::key(&format!("big-fits-{protocol}"));
        mc.set(&fits, vec![b'y'; 512 * 1024], 0).unwrap();
        assert_eq!(
            mc.get::<Vec<u8>>(&fits).unwrap().map(|v| v.len()),
            Some(512 * 1024)
        );
    }
}

/// The server-side item limit is what decides: a server started with a larger `-I` takes the
/// same 2 MiB value (so the client does not refuse big values on its own).
#[test]
fn a_server_with_a_larger_item_limit_takes_the_same_value() {
    let server = Memcached::builder().arg("-I").arg("4m").start().unwrap();
    for (protocol, mc) in common::both_protocols(&[server.spec()]) {
        let key = common::key(&format!("big-ok-{protocol}"));
        mc.set(&key, vec![b'z'; TOO_BIG], 0).unwrap();
        assert_eq!(
            mc.get::<Vec<u8>>(&key).unwrap().map(|v| v.len()),
            Some(TOO_BIG)
        );
    }
}

// ---- 4. servers that are not running ---------------------------------------------------------

/// Runs get/set/incr/delete against a dead server and checks each error and its speed.
///
/// Each operation runs on a fresh client, so each makes a real connection attempt, then again
/// on the same client, which libmemcached now skips the server on (disabled until the retry
/// timeout): both must be quick connection errors naming the server.
fn assert_each_op_fails_fast(make: impl Fn() -> Client, server: &str, what: &str) {
    let ops: [(&str, Op); 4] = [
        ("get", |mc, k, _| mc.get::<String>(k).map(drop)),
        ("set", |mc, k, _| mc.set(k, "v", 0)),
        ("incr", |mc, k, _| mc.incr(k, 1).map(drop)),
        ("delete", |mc, k, _| mc.delete(k).map(drop)),
    ];
    for (name, op) in ops {
        let mc = make();
        let key = common::key("dead");
        for attempt in ["first", "second"] {
            let what = format!("{what} {name} ({attempt} attempt)");
            let start = Instant::now();
            let err = op(&mc, key.as_bytes(), 0)
                .expect_err(&format!("{what} succeeded against a dead server"));
            let elapsed = start.elapsed();
            // 500 ms connect timeout plus a generous margin for a loaded machine.
            assert!(
                elapsed < Duration::from_millis(2500),
                "{what} took {elapsed:?}"
            );
            assert!(err.is_connection(), "{what}: {err:?}");
            assert!(
                !err.is_not_found() && !err.is_invalid_input(),
                "{what}: {err:?}"
            );
            assert_eq!(
                err.server().map(ToString::to_string).as_deref(),
                Some(server),
                "{what}: {err:?}"
            );
            assert!(err.to_string().contains(server), "{what}: {err}");
        }
    }
}

#[test]
fn a_closed_port_fails_fast_with_a_connection_error_naming_it() {
    let port = closed_port();
    let spec = format!("127.0.0.1:{port}");
    for binary in [false, true] {
        let make = || {
            Client::builder()
                .servers([&spec])
                .binary(binary)
                .behavior(Behavior::ConnectTimeout(Duration::from_millis(500)))
                .build()
                .unwrap()
        };
        assert_each_op_fails_fast(make, &spec, if binary { "binary" } else { "ascii" });
    }
}

#[test]
fn a_missing_unix_socket_fails_fast_with_a_connection_error_naming_it() {
    let path = std::env::temp_dir().join(format!(
        "libmemcached-no-such-dir-{}/memcached.sock",
        std::process::id()
    ));
    let path = path.to_str().unwrap().to_owned();
    assert!(!std::path::Path::new(&path).exists());
    let make = || {
        Client::builder()
            .servers([&path])
            .behavior(Behavior::ConnectTimeout(Duration::from_millis(500)))
            .build()
            .unwrap()
    };
    // libmemcached reports a missing socket file as a system error (ENOENT), still a
    // connection error.
    assert_each_op_fails_fast(make, &path, "unix");
}

// ---- 5. malformed server specs ----------------------------------------------------------------

#[test]
fn malformed_server_specs_are_refused_naming_the_spec() {
    // (spec, a word the reason must contain)
    let cases = [
        ("", "empty"),
        ("[::1:11211", "unclosed"),
        ("host:0", "bad port"),
        ("host:65536", "bad port"),
        ("host:port", "bad port"),
        ("host:11211:0", "bad weight"),
        ("host:11211:x", "bad weight"),
        // A bare IPv6 address: the reason must point at the bracket syntax, not "empty host".
        ("::1", "brackets"),
        (":11211", "empty host"),
        ("a b:1", "' '"),
        ("h:1:2:3", "too many"),
    ];
    for (spec, why) in cases {
        match Client::new([spec]) {
            Err(err @ Error::InvalidServerSpec { .. }) => {
                let Error::InvalidServerSpec { spec: s, reason } = &err else {
                    unreachable!()
                };
                assert_eq!(s, spec);
                assert!(reason.contains(why), "{spec:?}: reason {reason:?}");
                let text = err.to_string();
                assert!(text.contains(&format!("{spec:?}")), "{spec:?}: {text}");
                assert!(err.is_invalid_input());
            }
            other => panic!("{spec:?}: expected InvalidServerSpec, got {other:?}"),
        }
        // One bad spec among good ones is still refused.
        assert!(
            matches!(Client::new(["127.0.0.1:11211", spec]), Err(Error::InvalidServerSpec { spec: s, .. }) if s == spec),
            "{spec:?} among good specs"
        );
    }
}

#[test]
fn no_servers_is_an_invalid_config() {
    match Client::new(Vec::<String>::new()) {
        Err(err @ Error::InvalidConfig(_)) => {
            assert!(err.to_string().contains("no servers"), "{err}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn udp_servers_cannot_be_mixed_with_tcp() {
    let tcp = "127.0.0.1:11211";
    for specs in [["udp:127.0.0.1:11211", tcp], [tcp, "udp:127.0.0.1:11211"]] {
        match Client::new(specs) {
            Err(err @ Error::InvalidServerSpec { .. }) => {
                let Error::InvalidServerSpec { spec, reason } = &err else {
                    unreachable!()
                };
                assert_eq!(spec, tcp, "the TCP spec is the odd one out");
                assert!(reason.contains("UDP"), "{reason}");
                assert!(err.to_string().contains(tcp), "{err}");
            }
            other => panic!("{specs:?}: expected InvalidServerSpec, got {other:?}"),
        }
    }
    // UDP on its own is accepted.
    assert!(Client::new(["udp:127.0.0.1:11211"]).is_ok());
}

// ---- 6. libmemcached configuration strings ----------------------------------------------------

/// Asserts `config` is refused with a readable `InvalidConfig` naming the string.
fn assert_bad_config(config: &str, expect: &str) {
    match Client::from_config(config) {
        Err(err @ Error::InvalidConfig(_)) => {
            let text = err.to_string();
            assert!(
                !text.contains("0x"),
                "{config:?}: pointer noise in {text:?}"
            );
            assert!(
                !text.contains(" -> "),
                "{config:?}: source location in {text:?}"
            );
            assert!(
                text.contains(&format!("{config:?}")),
                "{config:?}: {text:?}"
            );
            assert!(
                text.contains(expect),
                "{config:?}: {text:?} lacks {expect:?}"
            );
            assert!(err.is_invalid_input());
        }
        other => panic!("{config:?}: expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn a_valid_config_string_works() {
    let server = common::own_server();
    let port = server.port().unwrap();
    for config in [
        format!("--SERVER=127.0.0.1:{port}"),
        format!("--SERVER=127.0.0.1:{port} --BINARY-PROTOCOL"),
    ] {
        let mc = Client::from_config(&config).unwrap();
        assert_eq!(mc.is_binary(), config.contains("BINARY"));
        let key = common::key("config");
        mc.set(&key, "configured", 0).unwrap();
        assert_eq!(
            mc.get::<String>(&key).unwrap().as_deref(),
            Some("configured"),
            "{config}"
        );
        // Key checks follow the protocol the string chose.
        assert_eq!(mc.get::<String>("a b").is_ok(), mc.is_binary(), "{config}");
    }
}

/// A configuration string refuses the numbers `.servers()` and the typed behaviors refuse, with
/// the same errors, where libmemcached would keep them modulo 2^16 or 2^32.
#[test]
fn config_numbers_are_checked_as_servers_and_behaviors_check_them() {
    let server = common::own_server();
    let port = server.port().unwrap();
    let builder_error = Client::builder()
        .servers(["127.0.0.1:99999"])
        .build()
        .unwrap_err()
        .to_string();
    assert!(builder_error.contains("bad port"), "{builder_error}");
    for spec in [
        "127.0.0.1:99999",
        "127.0.0.1:0",
        "[::1]:70000",
        "127.0.0.1:99999/?2",
    ] {
        assert_bad_config(&format!("--SERVER={spec}"), "bad port");
    }
    let typed = Behavior::PollTimeout(Duration::from_millis(99_999_999_999_999))
        .raw_value()
        .unwrap_err()
        .to_string();
    assert!(typed.contains("too long"), "{typed}");
    for option in [
        "--POLL-TIMEOUT=99999999999999",
        "--CONNECT-TIMEOUT=4294967297",
        "--RCV-TIMEOUT=3000000000",
        "--retry-timeout=99999999999",
    ] {
        assert_bad_config(&format!("--SERVER=127.0.0.1:{port} {option}"), "too long");
    }
    assert_bad_config(
        &format!("--SERVER=127.0.0.1:{port} --SOCKET-SEND-SIZE=4294967296"),
        "too large",
    );
    // What fits is kept as given.
    let mc =
        Client::from_config(&format!("--SERVER=127.0.0.1:{port} --POLL-TIMEOUT=2500")).unwrap();
    assert_eq!(
        mc.behavior_by_name("_poll_timeout").unwrap().to_string(),
        "2500"
    );
}

#[test]
fn bad_config_strings_are_refused_readably() {
    let server = common::own_server();
    let port = server.port().unwrap();
    assert_bad_config(
        &format!("--SERVER=127.0.0.1:{port} --BOGUS"),
        "syntax error",
    );
    assert_bad_config("", "empty");
    assert_bad_config("   ", "empty");
    assert_bad_config("--BINARY-PROTOCOL", "no servers");
    assert_bad_config(
        &format!("--SERVER=127.0.0.1:{port} --BUFFER-REQUESTS"),
        "--BUFFER-REQUESTS",
    );
    assert_bad_config(
        &format!("--SERVER=127.0.0.1:{port} --NOREPLY --BINARY-PROTOCOL"),
        "--NOREPLY",
    );
    assert_bad_config("--SERVER=127.0.0.1:1\0", "NUL");
}

// ---- 7. values that do not decode -------------------------------------------------------------

/// Asserts `result` is `Decode` for `key` with `flags`.
fn assert_decode<T: std::fmt::Debug>(result: Result<T, Error>, key: &str, flags: u32, what: &str) {
    match result {
        Err(err @ Error::Decode { .. }) => {
            let Error::Decode {
                key: k, flags: f, ..
            } = &err
            else {
                unreachable!()
            };
            assert_eq!(k, key.as_bytes(), "{what}");
            assert_eq!(*f, flags, "{what}");
            assert!(err.to_string().contains(key), "{what}: {err}");
            assert!(
                std::error::Error::source(&err).is_some(),
                "{what}: no cause"
            );
        }
        other => panic!("{what}: expected Decode, got {other:?}"),
    }
}

#[test]
fn values_that_do_not_decode_name_the_key_and_leave_the_client_working() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let canary = Canary::plant(&mc, &format!("decode-{protocol}"));

        // Text that is not a number.
        let text = common::key(&format!("decode-text-{protocol}"));
        mc.set(&text, "abc", 0).unwrap();
        assert_decode(
            mc.get::<u64>(&text),
            &text,
            16,
            &format!("{protocol} get u64"),
        );
        canary.check(&mc, &format!("after a failed get ({protocol})"));
        assert_decode(
            mc.gets::<u64>(&text),
            &text,
            16,
            &format!("{protocol} gets u64"),
        );
        canary.check(&mc, &format!("after a failed gets ({protocol})"));
        // The value is still there, readable as what it is.
        assert_eq!(mc.get::<String>(&text).unwrap().as_deref(), Some("abc"));

        // A Python pickle (flags 1) is not plain bytes.
        let key = common::key(&format!("decode-pickle-{protocol}"));
        let pickle = vec![0x80, 0x04, b'K', 0x2a, b'.'];
        mc.set(&key, Encoded::owned(pickle.clone(), 1), 0).unwrap();
        let what = format!("{protocol} pickle");
        assert_decode(mc.get::<Vec<u8>>(&key), &key, 1, &what);
        canary.check(&mc, &format!("after {what}"));
        assert_decode(mc.get::<String>(&key), &key, 1, &what);
        assert_decode(mc.gets::<Vec<u8>>(&key), &key, 1, &what);
        canary.check(&mc, &format!("after gets {what}"));
        // Still stored, untouched.
        assert_eq!(
            mc.get::<(Vec<u8>, u32)>(&key).unwrap(),
            Some((pickle.clone(), 1))
        );

        // The zlib flag (8) on bytes that are not zlib: a decompression error.
        let key = common::key(&format!("decode-zlib-{protocol}"));
        mc.set(&key, Encoded::owned(pickle, 8), 0).unwrap();
        for result in [
            mc.get::<Vec<u8>>(&key).map(drop),
            mc.gets::<Vec<u8>>(&key).map(drop),
        ] {
            match result {
                Err(Error::Decompress { key: k, reason }) => {
                    assert_eq!(k, key.as_bytes(), "{protocol}");
                    assert!(reason.contains("corrupt"), "{protocol}: {reason}");
                }
                other => panic!("{protocol}: expected Decompress, got {other:?}"),
            }
            canary.check(&mc, &format!("after a corrupt zlib value ({protocol})"));
        }
        assert!(mc.delete(&key).unwrap(), "{protocol}");
    }
}

// ---- 8. bad arguments and commands the server rejects -----------------------------------------

#[test]
fn cas_token_zero_is_an_invalid_argument() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let key = common::key(&format!("cas0-{protocol}"));
        mc.set(&key, "kept", 0).unwrap();
        match mc.cas(&key, "lost", 0, 0) {
            Err(err @ Error::InvalidArgument { .. }) => {
                assert!(err.is_invalid_input());
                assert!(err.to_string().contains("CAS token"), "{err}");
            }
            other => panic!("{protocol}: expected InvalidArgument, got {other:?}"),
        }
        // Binary would have taken token 0 as a plain set: make sure nothing was written.
        assert_eq!(
            mc.get::<String>(&key).unwrap().as_deref(),
            Some("kept"),
            "{protocol}"
        );
        // Same for a key that does not exist: not created.
        let missing = common::key(&format!("cas0-missing-{protocol}"));
        assert!(matches!(
            mc.cas(&missing, "x", 0, 0),
            Err(Error::InvalidArgument { .. })
        ));
        assert_eq!(mc.get::<String>(&missing).unwrap(), None, "{protocol}");
    }
}

#[test]
fn incr_of_a_non_numeric_value_is_a_protocol_error_and_the_client_recovers() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let canary = Canary::plant(&mc, &format!("incr-text-{protocol}"));
        let key = common::key(&format!("incr-text-{protocol}"));
        mc.set(&key, "abc", 0).unwrap();
        let expected = match protocol {
            "ascii" => ReturnCode::ClientError,
            _ => ReturnCode::UnknownReadFailure,
        };
        for (name, result) in [("incr", mc.incr(&key, 1)), ("decr", mc.decr(&key, 1))] {
            let err = result.expect_err(name);
            assert!(err.is_protocol(), "{protocol} {name}: {err:?}");
            assert_eq!(err.code(), Some(expected), "{protocol} {name}: {err:?}");
            assert!(
                !err.is_connection() && !err.is_not_found(),
                "{protocol} {name}"
            );
            assert!(err.server().is_some(), "{protocol} {name}: {err:?}");
            canary.check(&mc, &format!("after {protocol} {name} of text"));
        }
        // The value is untouched and counters still work on the same client.
        assert_eq!(
            mc.get::<String>(&key).unwrap().as_deref(),
            Some("abc"),
            "{protocol}"
        );
        let counter = common::key(&format!("incr-ok-{protocol}"));
        mc.set(&counter, 41u64, 0).unwrap();
        assert_eq!(mc.incr(&counter, 1).unwrap(), 42, "{protocol}");
        // incr_with_initial over text fails the same way, without replacing the text.
        let err = mc.incr_with_initial(&key, 1, 7, 0).unwrap_err();
        assert!(err.is_protocol(), "{protocol}: {err:?}");
        assert_eq!(
            mc.get::<String>(&key).unwrap().as_deref(),
            Some("abc"),
            "{protocol}"
        );
        canary.check(&mc, &format!("after {protocol} incr_with_initial of text"));
    }
}

/// libmemcached's config strings get the builder's checks too: settings that misbehave are
/// refused, not passed on.
#[test]
fn config_strings_are_checked_like_the_builder() {
    let server = common::own_server();
    let spec = server.spec();
    for (config, why) in [
        (format!("--SERVER={spec} --NUMBER-OF-REPLICAS=1"), "replica"),
        (
            format!("--SERVER={spec} --REMOVE-FAILED-SERVERS=1"),
            "consistent",
        ),
        (format!("--SERVER={spec} --POLL-TIMEOUT=0"), "poll"),
    ] {
        match Client::from_config(&config) {
            Err(Error::InvalidConfig(ConfigError::ConfigString {
                config: text,
                reason,
            })) => {
                assert_eq!(text, config);
                let message = reason;
                assert!(message.to_lowercase().contains(why), "{config}: {message}")
            }
            other => panic!("{config}: {other:?}"),
        }
    }
    // The same settings, used the way they work, are accepted.
    let mc = Client::from_config(&format!(
        "--SERVER={spec} --DISTRIBUTION=consistent --REMOVE-FAILED-SERVERS=1 --POLL-TIMEOUT=500"
    ));
    // libmemcached's config syntax cannot set a dead timeout, which removal needs.
    assert!(matches!(mc, Err(Error::InvalidConfig(_))), "{mc:?}");
    let mc = Client::from_config(&format!(
        "--SERVER={spec} --DISTRIBUTION=consistent --POLL-TIMEOUT=500"
    ))
    .unwrap();
    mc.set("k", "v", 0).unwrap();
    assert_eq!(mc.get::<String>("k").unwrap().as_deref(), Some("v"));
}

/// Errors name the key of a one-key call (as the caller gave it, a view's prefix left out), say whether the
/// same call may succeed later, and say what is wrong with a configuration in a type.
#[test]
fn errors_name_their_key_and_whether_a_retry_may_succeed() {
    let server = common::server();
    let mc = common::client(server.specs(), false);
    let users = mc.prefixed("user:");
    let key = common::key("no-counter");
    match users.incr(&key, 1) {
        Err(err @ Error::NotFound { .. }) => {
            let Error::NotFound { key: named } = &err else {
                unreachable!()
            };
            assert_eq!(named, key.as_bytes(), "as the view's caller gave it");
            assert!(err.to_string().contains(&key), "{err}");
            assert!(!err.is_retryable(), "a missing key stays missing");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }

    let spec = format!("127.0.0.1:{}", closed_port());
    let dead = Client::builder()
        .servers([&spec])
        .behavior(Behavior::ConnectTimeout(Duration::from_millis(500)))
        .build()
        .unwrap();
    let err = dead.set("k1", "v", 0).unwrap_err();
    assert!(
        matches!(&err, Error::Memcached { key: Some(k), .. } if k == b"k1"),
        "{err:?}"
    );
    assert!(err.is_connection() && err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("k1"), "{err}");
    let err = dead.get_multi::<_, String>(["k1", "k2"]).unwrap_err();
    let failures = err.failures();
    assert!(!failures.is_empty(), "{err:?}");
    for failure in failures {
        assert!(
            matches!(&failure.error, Error::Memcached { key: None, .. }),
            "a multi-key call's failure lists its keys, not one of them: {failure:?}"
        );
    }
    assert!(err.is_retryable(), "every failure is a connection failure");
    let mixed = Error::Multi {
        failures: vec![
            failures[0].clone(),
            libmemcached::KeyFailure {
                error: Error::InvalidKey {
                    key: b"k 3".to_vec(),
                    reason: InvalidKeyReason::ForbiddenByte {
                        byte: b' ',
                        position: 1,
                    },
                },
                keys: vec![b"k 3".to_vec()],
            },
        ],
    };
    assert!(!mixed.is_retryable(), "retryable only if all failures are");

    let none = Client::builder().build().unwrap_err();
    assert!(
        matches!(none, Error::InvalidConfig(ConfigError::NoServers)),
        "{none:?}"
    );
    assert!(!none.is_retryable());
    // Errors in the middle of a chain come out of build(), the first one first.
    let unknown = Client::builder()
        .behavior_by_name("no_such_behavior", 1)
        .servers(["127.0.0.1:99999"])
        .build();
    match unknown {
        Err(Error::InvalidConfig(ConfigError::Unknown { what, name, .. })) => {
            assert_eq!((what, name.as_str()), ("behavior", "no_such_behavior"));
        }
        other => panic!("{other:?}"),
    }
    match Client::builder()
        .servers([&spec])
        .namespace([b'n'; 200])
        .build()
    {
        Err(Error::InvalidConfig(ConfigError::Setting { setting, .. })) => {
            assert!(setting.starts_with("namespace"), "{setting}")
        }
        other => panic!("{other:?}"),
    }
}
