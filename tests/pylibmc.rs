//! Cross-language tests: this crate and Python's pylibmc sharing the same memcached servers.
//!
//! Each test drives `tests/pylibmc_peer.py` under Debian's `/usr/bin/python3` (package
//! python3-pylibmc) against servers of its own. A launch costs about 100 ms, so every launch runs
//! a whole batch of commands and reports typed results as JSON (bytes and text as hex, integers
//! as decimal), so nothing is lost between the two languages.
//!
//! Needs the `serde` feature for `serde_json` (CI runs `cargo test --all-features`).
#![cfg(feature = "serde")]

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use libmemcached::testing::Memcached;
use libmemcached::{Behavior, Client, Compressed, Compression, Distribution, Error, Hash, Value};
use serde_json::{Value as Json, json};

const PYTHON: &str = "/usr/bin/python3";
const TWO_POW_127: &str = "170141183460469231731687303715884105728";
const TWO_POW_200: &str = "1606938044258990275541962092341162602522202993782792835301376";
/// One byte more than memcached's default item size limit.
const ONE_MIB_PLUS_ONE: usize = 1024 * 1024 + 1;

// ---- the Python side -------------------------------------------------------------------------

/// Runs `jobs` in one pylibmc process and returns one result list per job. A command that
/// raised in Python fails the test with its traceback.
fn pylibmc(jobs: &[Json]) -> Vec<Vec<Json>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pylibmc_peer.py");
    let mut child = Command::new(PYTHON)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON} ({e}): install python3-pylibmc"));
    let request = serde_json::to_vec(&json!({ "jobs": jobs })).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&request));
    let output = child.wait_with_output().unwrap();
    writer
        .join()
        .unwrap()
        .expect("request written to pylibmc_peer.py");
    assert!(
        output.status.success(),
        "pylibmc_peer.py failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: Json = serde_json::from_slice(&output.stdout).expect("JSON from pylibmc_peer.py");
    let results: Vec<Vec<Json>> = serde_json::from_value(reply["results"].clone()).unwrap();
    assert_eq!(results.len(), jobs.len());
    for (job, results) in jobs.iter().zip(&results) {
        let commands = job["commands"].as_array().unwrap();
        assert_eq!(results.len(), commands.len());
        for (command, result) in commands.iter().zip(results) {
            if let Some(error) = result.get("error") {
                panic!(
                    "pylibmc failed on {command}: {error}\n{}",
                    result["traceback"].as_str().unwrap_or_default()
                );
            }
        }
    }
    results
}

/// A pylibmc client on `servers` and the commands it runs.
fn job(servers: &[String], binary: bool, commands: Vec<Json>) -> Json {
    json!({ "servers": servers, "binary": binary, "commands": commands })
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn py_bytes(data: &[u8]) -> Json {
    json!({ "type": "bytes", "hex": hex(data) })
}

fn py_str(text: &str) -> Json {
    json!({ "type": "str", "hex": hex(text.as_bytes()) })
}

fn py_int(n: impl ToString) -> Json {
    json!({ "type": "int", "dec": n.to_string() })
}

fn py_bool(b: bool) -> Json {
    json!({ "type": "bool", "value": b })
}

/// A Python literal (`ast.literal_eval`), which pylibmc pickles.
fn py_literal(expr: &str) -> Json {
    json!({ "type": "literal", "expr": expr })
}

/// `bytes.fromhex(hex(unit)) * count`, built in Python.
fn py_bytes_repeat(unit: &[u8], count: usize) -> Json {
    json!({ "type": "bytes", "hex": hex(unit), "repeat": count })
}

/// pylibmc `set(key, value)`.
fn py_set(key: &str, value: Json) -> Json {
    json!({ "op": "set", "key_hex": hex(key.as_bytes()), "value": value })
}

/// pylibmc `set(key, value, 0, min_compress_len, compress_level)`.
fn py_set_compressed(key: &str, value: Json, min_compress_len: usize, level: i32) -> Json {
    json!({
        "op": "set",
        "key_hex": hex(key.as_bytes()),
        "value": value,
        "min_compress_len": min_compress_len,
        "compress_level": level,
    })
}

/// pylibmc `get(key)`, compared in Python with `expect` (same value and type).
fn py_get(key: &str, expect: Json) -> Json {
    json!({ "op": "get", "key_hex": hex(key.as_bytes()), "expect": expect })
}

/// Checks a `py_get` result: pylibmc read `expected` (in the typed form) and found it equal.
fn assert_read(result: &Json, expected: &Json, what: &str) {
    assert_eq!(&result["value"], expected, "{what}: what pylibmc read");
    assert_eq!(result["equal"], true, "{what}: pylibmc's comparison");
}

/// The flags and bytes stored on `server` under `key`, read with a raw ASCII `get`.
fn raw(server: &Memcached, key: &str) -> (u32, Vec<u8>) {
    common::raw_get(&server.spec(), key).unwrap_or_else(|| panic!("{key:?} is not on the server"))
}

/// The second byte of a zlib header for a level (FLEVEL and the check bits), as zlib writes it.
fn zlib_header_for(level: u32) -> u8 {
    match level {
        0 | 1 => 0x01,
        2..=5 => 0x5e,
        6 => 0x9c,
        _ => 0xda,
    }
}

fn protocols() -> [(&'static str, bool); 2] {
    [("ascii", false), ("binary", true)]
}

// ---- plain values ----------------------------------------------------------------------------

type Writer = Box<dyn Fn(&Client, &str) -> libmemcached::Result<()>>;

macro_rules! rust_value {
    ($tag:expr, $value:expr, $flags:expr, $python:expr) => {
        (
            $tag,
            Box::new(|mc: &Client, k: &str| mc.set(k, $value, 0)) as Writer,
            $flags,
            $python,
        )
    };
}

#[test]
fn values_written_by_rust_are_read_by_pylibmc() {
    let all_bytes: Vec<u8> = (0..=255).collect();
    let cases: Vec<(&str, Writer, u32, Json)> = vec![
        rust_value!("empty bytes", &b""[..], 0, py_bytes(b"")),
        rust_value!(
            "every byte",
            (0..=255).collect::<Vec<u8>>(),
            0,
            py_bytes(&all_bytes)
        ),
        rust_value!("empty text", "", 16, py_str("")),
        rust_value!(
            "ascii text",
            String::from("hello, pylibmc"),
            16,
            py_str("hello, pylibmc")
        ),
        rust_value!(
            "non-ascii text",
            "héllo ключ 中文 🔑 𝄞",
            16,
            py_str("héllo ключ 中文 🔑 𝄞")
        ),
        rust_value!("zero", 0i64, 4, py_int(0)),
        rust_value!("negative", -42i32, 4, py_int(-42)),
        rust_value!("i64::MIN", i64::MIN, 4, py_int(i64::MIN)),
        rust_value!("i64::MAX", i64::MAX, 4, py_int(i64::MAX)),
        rust_value!("u64::MAX", u64::MAX, 4, py_int(u64::MAX)),
        rust_value!("2^70", 1i128 << 70, 4, py_int(1i128 << 70)),
        rust_value!("i128::MIN", i128::MIN, 4, py_int(i128::MIN)),
        rust_value!(
            "Value::Int",
            Value::Int(-(1 << 100)),
            4,
            py_int(-(1i128 << 100))
        ),
        rust_value!(
            "Value::BigInt 2^200",
            Value::BigInt(TWO_POW_200.into()),
            4,
            py_int(TWO_POW_200)
        ),
        rust_value!(
            "Value::BigInt -2^200",
            Value::BigInt(format!("-{TWO_POW_200}")),
            4,
            py_int(format!("-{TWO_POW_200}"))
        ),
        rust_value!(
            "Value::Text",
            Value::Text("ü 🔑".into()),
            16,
            py_str("ü 🔑")
        ),
        rust_value!(
            "Value::Bytes",
            Value::Bytes(vec![0, 255]),
            0,
            py_bytes(&[0, 255])
        ),
        // Flags 32 lie outside pylibmc's type bits: it reads the JSON as bytes.
        rust_value!(
            "Json<T>",
            libmemcached::Json(json!({ "a": [1, 2] })),
            32,
            py_bytes(br#"{"a":[1,2]}"#)
        ),
        // pylibmc reads its own bools (flags 2) back as the int 1 or 0.
        rust_value!("true", true, 2, py_int(1)),
        rust_value!("false", false, 2, py_int(0)),
    ];

    let server = common::own_server();
    let specs = [server.spec()];
    let mut jobs = Vec::new();
    let mut keys = Vec::new();
    for (_, binary) in protocols() {
        let mc = common::client(&specs, binary);
        let mut commands = Vec::new();
        for (tag, write, _, python) in &cases {
            let k = common::key("rust-value");
            write(&mc, &k).unwrap_or_else(|e| panic!("{tag}: {e}"));
            commands.push(py_get(&k, python.clone()));
            keys.push(k);
        }
        jobs.push(job(&specs, binary, commands));
    }
    let results = pylibmc(&jobs);

    let mut keys = keys.iter();
    for ((protocol, _), results) in protocols().into_iter().zip(&results) {
        for ((tag, _, flags, python), result) in cases.iter().zip(results) {
            let what = format!("{protocol}: {tag}");
            assert_read(result, python, &what);
            assert_eq!(
                raw(&server, keys.next().unwrap()).0,
                *flags,
                "{what}: flags"
            );
        }
    }
}

#[test]
fn values_written_by_pylibmc_are_read_by_rust() {
    let all_bytes: Vec<u8> = (0..=255).collect();
    let big = |sign: &str, digits: &str| Value::BigInt(format!("{sign}{digits}"));
    let cases: Vec<(&str, Json, u32, Value)> = vec![
        ("empty bytes", py_bytes(b""), 0, Value::Bytes(vec![])),
        (
            "every byte",
            py_bytes(&all_bytes),
            0,
            Value::Bytes(all_bytes.clone()),
        ),
        ("empty str", py_str(""), 16, Value::Text(String::new())),
        (
            "ascii str",
            py_str("hello, Rust"),
            16,
            Value::Text("hello, Rust".into()),
        ),
        (
            "non-ascii str",
            py_str("héllo ключ 中文 🔑 𝄞"),
            16,
            Value::Text("héllo ключ 中文 🔑 𝄞".into()),
        ),
        ("0", py_int(0), 4, Value::Int(0)),
        ("-1", py_int(-1), 4, Value::Int(-1)),
        ("i64 min", py_int(i64::MIN), 4, Value::Int(i64::MIN.into())),
        ("i64 max", py_int(i64::MAX), 4, Value::Int(i64::MAX.into())),
        ("2**64", py_int(1u128 << 64), 4, Value::Int(1 << 64)),
        ("2**70", py_int(1u128 << 70), 4, Value::Int(1 << 70)),
        (
            "-(2**127)",
            py_int(format!("-{TWO_POW_127}")),
            4,
            Value::Int(i128::MIN),
        ),
        ("2**127", py_int(TWO_POW_127), 4, big("", TWO_POW_127)),
        ("2**200", py_int(TWO_POW_200), 4, big("", TWO_POW_200)),
        (
            "-(2**200)",
            py_int(format!("-{TWO_POW_200}")),
            4,
            big("-", TWO_POW_200),
        ),
        ("True", py_bool(true), 2, Value::Int(1)),
        ("False", py_bool(false), 2, Value::Int(0)),
    ];

    let server = common::own_server();
    let specs = [server.spec()];
    let mut jobs = Vec::new();
    let mut keys = Vec::new();
    for (_, binary) in protocols() {
        let mut commands = Vec::new();
        for (_, python, _, _) in &cases {
            let k = common::key("py-value");
            commands.push(py_set(&k, python.clone()));
            keys.push(k);
        }
        jobs.push(job(&specs, binary, commands));
    }
    let results = pylibmc(&jobs);

    let mut keys = keys.iter();
    for ((protocol, binary), results) in protocols().into_iter().zip(&results) {
        let mc = common::client(&specs, binary);
        for ((tag, _, flags, expected), result) in cases.iter().zip(results) {
            let what = format!("{protocol}: {tag}");
            let k = keys.next().unwrap();
            assert_eq!(result["ok"], true, "{what}: pylibmc set");
            assert_eq!(raw(&server, k).0, *flags, "{what}: flags pylibmc wrote");
            assert_eq!(
                mc.get::<Value>(k).unwrap().as_ref(),
                Some(expected),
                "{what}"
            );
            check_typed_reads(&mc, k, expected, &what);
        }
    }
}

/// The typed reads agree with the `Value` read.
fn check_typed_reads(mc: &Client, k: &str, expected: &Value, what: &str) {
    match expected {
        Value::Bytes(b) => assert_eq!(mc.get::<Vec<u8>>(k).unwrap().as_ref(), Some(b), "{what}"),
        Value::Text(t) => assert_eq!(mc.get::<String>(k).unwrap().as_ref(), Some(t), "{what}"),
        Value::Int(i) => {
            assert_eq!(mc.get::<i128>(k).unwrap(), Some(*i), "{what}");
            match i64::try_from(*i) {
                Ok(i) => assert_eq!(mc.get::<i64>(k).unwrap(), Some(i), "{what}"),
                Err(_) => assert!(mc.get::<i64>(k).is_err(), "{what}: beyond i64"),
            }
            match u64::try_from(*i) {
                Ok(u) => assert_eq!(mc.get::<u64>(k).unwrap(), Some(u), "{what}"),
                Err(_) => assert!(mc.get::<u64>(k).is_err(), "{what}: beyond u64"),
            }
            if *i == 0 || *i == 1 {
                assert_eq!(mc.get::<bool>(k).unwrap(), Some(*i == 1), "{what}");
            }
        }
        Value::BigInt(_) => assert!(mc.get::<i128>(k).is_err(), "{what}: beyond i128"),
        Value::Pickle(_) => {
            assert!(
                matches!(mc.get::<Vec<u8>>(k), Err(Error::Decode { .. })),
                "{what}: a pickle is not plain bytes"
            );
            assert!(mc.get::<String>(k).is_err(), "{what}: a pickle is not text");
        }
        other => panic!("{what}: unexpected {other:?}"),
    }
}

// ---- compression -----------------------------------------------------------------------------

fn long_text() -> String {
    "pylibmc and Rust share this cache; ключ 🔑. ".repeat(100)
}

fn long_bytes() -> Vec<u8> {
    (0..=255u8).cycle().take(20_000).collect()
}

/// A key, its flags, its zlib level if compressed, and what pylibmc must read.
type RustCompressed = (String, u32, Option<u32>, Json);
/// A key, its zlib level, its flags, and what Rust must read (`None`: the pickle Python reports).
type PylibmcCompressed = (String, u32, u32, Option<Value>);

#[test]
fn compressed_values_written_by_rust_are_read_by_pylibmc() {
    let server = common::own_server();
    let specs = [server.spec()];
    let (text, bytes) = (long_text(), long_bytes());
    let nines = "9".repeat(1000);
    let huge = vec![b'a'; ONE_MIB_PLUS_ONE];
    // (key, flags, zlib level if compressed, what pylibmc must read), per protocol.
    let mut expected: Vec<Vec<RustCompressed>> = Vec::new();
    let mut jobs = Vec::new();
    for (protocol, binary) in protocols() {
        let mc = common::client(&specs, binary);
        let mut cases = Vec::new();
        for level in [1, 6, 9] {
            let c = Compression::with_level(1, level).unwrap();
            let k = common::key("z-text");
            mc.set(&k, Compressed::new(text.as_str(), c), 0).unwrap();
            cases.push((k, 16 | 8, Some(level), py_str(&text)));
            let k = common::key("z-bytes");
            mc.set(&k, Compressed::new(&bytes[..], c), 0).unwrap();
            cases.push((k, 8, Some(level), py_bytes(&bytes)));
        }
        let k = common::key("z-int");
        let c = Compression::with_level(1, 9).unwrap();
        mc.set(&k, Compressed::new(Value::BigInt(nines.clone()), c), 0)
            .unwrap();
        cases.push((k, 4 | 8, Some(9), py_int(&nines)));

        // Client-level compression: from 100 bytes on, only when it shrinks the value.
        let zmc = Client::builder()
            .servers(&specs)
            .binary(binary)
            .compression(Compression::new(100))
            .build()
            .unwrap();
        let k = common::key("zc-text");
        zmc.set(&k, text.clone(), 0).unwrap();
        cases.push((k, 16 | 8, Some(6), py_str(&text)));
        let k = common::key("zc-short");
        zmc.set(&k, "below min_len", 0).unwrap();
        cases.push((k, 16, None, py_str("below min_len")));
        let k = common::key("zc-bytes");
        zmc.set(&k, bytes.clone(), 0).unwrap();
        cases.push((k, 8, Some(6), py_bytes(&bytes)));

        // 1 MiB + 1 byte fits the server's 1 MiB item limit only compressed.
        let k = common::key("z-huge");
        let err = mc.set(&k, &huge[..], 0).unwrap_err();
        assert!(
            matches!(err, Error::TooBig { .. }),
            "{protocol}: uncompressed 1 MiB + 1 is too big: {err:?}"
        );
        zmc.set(&k, &huge[..], 0).unwrap();

        let mut commands: Vec<Json> = cases
            .iter()
            .map(|(k, _, _, python)| py_get(k, python.clone()))
            .collect();
        commands.push(json!({
            "op": "get",
            "key_hex": hex(k.as_bytes()),
            "expect": py_bytes_repeat(b"a", ONE_MIB_PLUS_ONE),
            "brief": true,
        }));
        jobs.push(job(&specs, binary, commands));
        cases.push((
            k,
            8,
            Some(6),
            json!({ "type": "bytes", "len": ONE_MIB_PLUS_ONE }),
        ));
        expected.push(cases);
    }
    let results = pylibmc(&jobs);

    for (((protocol, _), cases), results) in protocols().into_iter().zip(&expected).zip(&results) {
        for ((k, flags, level, python), result) in cases.iter().zip(results) {
            let what = format!("{protocol}: {k}");
            assert_read(result, python, &what);
            let (raw_flags, data) = raw(&server, k);
            assert_eq!(raw_flags, *flags, "{what}: flags");
            if let Some(level) = level {
                assert_eq!(
                    data[..2],
                    [0x78, zlib_header_for(*level)],
                    "{what}: a zlib stream at level {level}"
                );
            }
        }
        let (_, huge_stored) = raw(&server, &cases.last().unwrap().0);
        assert!(
            huge_stored.len() < 1024 * 1024,
            "{protocol}: stored compressed"
        );
    }
}

#[test]
fn compressed_values_written_by_pylibmc_are_read_by_rust() {
    let server = common::own_server();
    let specs = [server.spec()];
    let (text, bytes) = (long_text(), long_bytes());
    let nines = "9".repeat(1000);
    let tuples: Vec<String> = (0..200).map(|i| format!("('item', {i}, None)")).collect();
    let list = format!("[{}]", tuples.join(", "));
    // (key, zlib level, flags, what Rust must read: None for the pickle, whose bytes come from
    // Python), per protocol.
    let mut expected: Vec<Vec<PylibmcCompressed>> = Vec::new();
    let mut jobs = Vec::new();
    for (_, binary) in protocols() {
        let mut cases = Vec::new();
        let mut commands = Vec::new();
        let mut add = |value: Json, level: i32, flags: u32, rust: Option<Value>| {
            let k = common::key("py-z");
            commands.push(py_set_compressed(&k, value, 1, level));
            // pylibmc's -1 is zlib's default, 6.
            cases.push((k, if level < 0 { 6 } else { level as u32 }, flags, rust));
        };
        for level in [1, 6, 9] {
            add(
                py_str(&text),
                level,
                16 | 8,
                Some(Value::Text(text.clone())),
            );
            add(
                py_bytes(&bytes),
                level,
                8,
                Some(Value::Bytes(bytes.clone())),
            );
        }
        add(py_str(&text), -1, 16 | 8, Some(Value::Text(text.clone())));
        add(py_int(&nines), 9, 4 | 8, Some(Value::BigInt(nines.clone())));
        add(py_literal(&list), 6, 1 | 8, None);
        add(
            py_bytes_repeat(b"a", ONE_MIB_PLUS_ONE),
            -1,
            8,
            Some(Value::Bytes(vec![b'a'; ONE_MIB_PLUS_ONE])),
        );
        jobs.push(job(&specs, binary, commands));
        expected.push(cases);
    }
    let results = pylibmc(&jobs);

    for (((protocol, binary), cases), results) in
        protocols().into_iter().zip(&expected).zip(&results)
    {
        let mc = common::client(&specs, binary);
        for ((k, level, flags, rust), result) in cases.iter().zip(results) {
            let what = format!("{protocol}: {k}");
            assert_eq!(result["ok"], true, "{what}: pylibmc set");
            let (raw_flags, data) = raw(&server, k);
            assert_eq!(raw_flags, *flags, "{what}: flags pylibmc wrote");
            assert_eq!(
                data[..2],
                [0x78, zlib_header_for(*level)],
                "{what}: pylibmc's zlib stream at level {level}"
            );
            let expected = match rust {
                Some(value) => value.clone(),
                None => Value::Pickle(unhex(result["pickle_hex"].as_str().unwrap())),
            };
            let got = mc.get::<Value>(k).unwrap().expect("a hit");
            assert!(got == expected, "{what}: Rust read {got:.100?}");
            if let Value::Bytes(b) = &expected {
                assert!(data.len() < b.len(), "{what}: stored compressed");
            }
            check_typed_reads(&mc, k, &expected, &what);
        }
    }
}

// ---- counters --------------------------------------------------------------------------------

#[test]
fn counters_are_shared_both_ways() {
    let server = common::own_server();
    let specs = [server.spec()];
    struct Keys {
        py_int: String,
        py_int_decr: String,
        py_str: String,
        rs_int: String,
        rs_int_decr: String,
        rs_str: String,
    }
    let mut all = Vec::new();
    let mut jobs = Vec::new();
    for (_, binary) in protocols() {
        let mc = common::client(&specs, binary);
        let keys = Keys {
            py_int: common::key("ctr-py"),
            py_int_decr: common::key("ctr-py-decr"),
            py_str: common::key("ctr-py-str"),
            rs_int: common::key("ctr-rs"),
            rs_int_decr: common::key("ctr-rs-decr"),
            rs_str: common::key("ctr-rs-str"),
        };
        mc.set(&keys.rs_int, 10u64, 0).unwrap();
        mc.set(&keys.rs_int_decr, 10i64, 0).unwrap();
        mc.set(&keys.rs_str, "10", 0).unwrap();
        let counter = |op: &str, k: &str, delta: u64| json!({ "op": op, "key_hex": hex(k.as_bytes()), "delta": delta });
        jobs.push(job(
            &specs,
            binary,
            vec![
                py_set(&keys.py_int, py_int(10)),
                py_set(&keys.py_int_decr, py_int(10)),
                py_set(&keys.py_str, py_str("10")),
                counter("incr", &keys.rs_int, 1),
                counter("decr", &keys.rs_int_decr, 3),
                counter("incr", &keys.rs_str, 1),
            ],
        ));
        all.push(keys);
    }
    let first = pylibmc(&jobs);

    let mut jobs = Vec::new();
    for (((protocol, binary), keys), results) in protocols().into_iter().zip(&all).zip(&first) {
        let mc = common::client(&specs, binary);
        // pylibmc's counters on Rust's values.
        assert_eq!(results[3]["dec"], "11", "{protocol}: pylibmc incr");
        assert_eq!(results[4]["dec"], "7", "{protocol}: pylibmc decr");
        assert_eq!(results[5]["dec"], "11", "{protocol}: pylibmc incr on text");
        assert_eq!(mc.get::<u64>(&keys.rs_int).unwrap(), Some(11), "{protocol}");
        assert_eq!(
            mc.get::<Value>(&keys.rs_int).unwrap(),
            Some(Value::Int(11)),
            "{protocol}"
        );
        // memcached may pad a counter that lost a digit: "7 ".
        assert_eq!(
            mc.get::<i64>(&keys.rs_int_decr).unwrap(),
            Some(7),
            "{protocol}"
        );
        assert_eq!(
            mc.get::<Value>(&keys.rs_int_decr).unwrap(),
            Some(Value::Int(7)),
            "{protocol}"
        );
        assert_eq!(
            mc.get::<Value>(&keys.rs_str).unwrap(),
            Some(Value::Text("11".into())),
            "{protocol}: a text counter stays text"
        );
        // Rust's counters on pylibmc's values.
        assert_eq!(mc.incr(&keys.py_int, 1).unwrap(), 11, "{protocol}");
        assert_eq!(mc.decr(&keys.py_int_decr, 3).unwrap(), 7, "{protocol}");
        assert_eq!(mc.incr(&keys.py_str, 1).unwrap(), 11, "{protocol}");
        jobs.push(job(
            &specs,
            binary,
            vec![
                py_get(&keys.py_int, py_int(11)),
                py_get(&keys.py_int_decr, py_int(7)),
                py_get(&keys.py_str, py_str("11")),
            ],
        ));
    }
    let second = pylibmc(&jobs);
    for ((protocol, _), results) in protocols().into_iter().zip(&second) {
        assert_read(
            &results[0],
            &py_int(11),
            &format!("{protocol}: after Rust incr"),
        );
        assert_read(
            &results[1],
            &py_int(7),
            &format!("{protocol}: after Rust decr"),
        );
        assert_read(
            &results[2],
            &py_str("11"),
            &format!("{protocol}: text after Rust incr"),
        );
    }
}

// ---- keys ------------------------------------------------------------------------------------

#[test]
fn keys_with_non_ascii_utf8_are_shared() {
    let server = common::own_server();
    let specs = [server.spec()];
    let mut all = Vec::new();
    let mut jobs = Vec::new();
    for (_, binary) in protocols() {
        let mc = common::client(&specs, binary);
        let from_rust = format!("{}-clé-ключ-🔑", common::key("utf8-rs"));
        let from_python = format!("{}-clé-ключ-🔑", common::key("utf8-py"));
        let from_python_bytes = format!("{}-ключ-𝄞", common::key("utf8-py-b"));
        mc.set(&from_rust, "written by Rust", 0).unwrap();
        jobs.push(job(
            &specs,
            binary,
            vec![
                // pylibmc encodes a str key to UTF-8; the same key as bytes is the same item.
                json!({ "op": "get", "key": from_rust, "expect": py_str("written by Rust") }),
                py_get(&from_rust, py_str("written by Rust")),
                json!({ "op": "set", "key": from_python, "value": py_str("written by pylibmc") }),
                py_set(&from_python_bytes, py_bytes("bytes key".as_bytes())),
            ],
        ));
        all.push((mc, from_rust, from_python, from_python_bytes));
    }
    let results = pylibmc(&jobs);
    for (((protocol, _), (mc, from_rust, from_python, from_python_bytes)), results) in
        protocols().into_iter().zip(&all).zip(&results)
    {
        assert_read(&results[0], &py_str("written by Rust"), protocol);
        assert_read(&results[1], &py_str("written by Rust"), protocol);
        assert_eq!(
            mc.get::<String>(from_python).unwrap().as_deref(),
            Some("written by pylibmc"),
            "{protocol}"
        );
        assert_eq!(
            mc.get::<Vec<u8>>(from_python_bytes).unwrap().as_deref(),
            Some(&b"bytes key"[..]),
            "{protocol}"
        );
        // On the server, each key is its UTF-8 bytes.
        assert_eq!(
            raw(&server, from_rust),
            (16, b"written by Rust".to_vec()),
            "{protocol}"
        );
        assert_eq!(
            raw(&server, from_python),
            (16, b"written by pylibmc".to_vec()),
            "{protocol}"
        );
    }
}

// ---- pickles ---------------------------------------------------------------------------------

#[test]
fn pickles_pass_through_rust_unchanged() {
    let objects = [
        (
            "dict",
            r"{'name': 'clé 🔑', 'tuple': (1, 2.5, None, True), 'big': 2535301200456458802993406410752, 'bytes': b'\x00\xff', 'nested': [1, [2, 3]]}",
        ),
        ("tuple", "(1, 'two', 3.0)"),
        ("float", "1.5"),
        ("None", "None"),
    ];
    let server = common::own_server();
    let specs = [server.spec()];
    let mut keys = Vec::new();
    let mut jobs = Vec::new();
    for (_, binary) in protocols() {
        let mut commands = Vec::new();
        for (tag, expr) in objects {
            let k = common::key(&format!("pickle-{tag}"));
            commands.push(py_set(&k, py_literal(expr)));
            keys.push(k);
        }
        jobs.push(job(&specs, binary, commands));
    }
    let first = pylibmc(&jobs);

    let mut keys = keys.iter();
    let mut jobs = Vec::new();
    let mut pickles = Vec::new();
    for ((protocol, binary), results) in protocols().into_iter().zip(&first) {
        let mc = common::client(&specs, binary);
        let mut commands = Vec::new();
        for ((tag, expr), result) in objects.iter().zip(results) {
            let what = format!("{protocol}: {tag}");
            let k = keys.next().unwrap();
            // The exact bytes pylibmc stored: pickle.dumps(obj, -1).
            let pickle = unhex(result["pickle_hex"].as_str().expect("pylibmc pickled it"));
            assert_eq!(pickle[..2], [0x80, 5], "{what}: pickle protocol 5");
            assert_eq!(raw(&server, k), (1, pickle.clone()), "{what}: as stored");
            assert_eq!(
                mc.get::<Value>(k).unwrap(),
                Some(Value::Pickle(pickle.clone())),
                "{what}"
            );
            assert_eq!(
                mc.get::<(Vec<u8>, u32)>(k).unwrap(),
                Some((pickle.clone(), 1)),
                "{what}"
            );
            check_typed_reads(&mc, k, &Value::Pickle(pickle.clone()), &what);

            let back = common::key(&format!("pickle-back-{tag}"));
            mc.set(&back, Value::Pickle(pickle.clone()), 0).unwrap();
            assert_eq!(raw(&server, &back), (1, pickle.clone()), "{what}");
            commands.push(py_get(&back, py_literal(expr)));
            pickles.push(pickle);
        }
        jobs.push(job(&specs, binary, commands));
    }
    let second = pylibmc(&jobs);
    let mut pickles = pickles.iter();
    for ((protocol, _), results) in protocols().into_iter().zip(&second) {
        for ((tag, _), result) in objects.iter().zip(results) {
            let pickle = pickles.next().unwrap();
            assert_eq!(result["equal"], true, "{protocol}: {tag}: {result}");
            if *tag != "None" {
                assert_eq!(result["value"]["type"], "pickle", "{protocol}: {tag}");
                assert_eq!(
                    result["value"]["hex"].as_str(),
                    Some(hex(pickle).as_str()),
                    "{protocol}: {tag}: pickles again to the same bytes"
                );
            }
        }
    }
}

// ---- key placement ---------------------------------------------------------------------------

const PLACED_KEYS: usize = 1000;

struct Placement {
    name: String,
    weighted: bool,
    /// pylibmc's constructor behaviors, then behaviors set after construction.
    python: (Json, Json),
    /// What pylibmc must report for (hash, distribution).
    python_reports: (&'static str, &'static str),
    rust: Vec<Behavior>,
    /// Whether keys spread over every server. CRC gives 15-bit hashes, which fall before the
    /// first points of weighted ketama's MD5 continuum: one or two servers get every key, in
    /// both clients.
    spreads: bool,
}

fn placements() -> Vec<Placement> {
    let hashes = [
        ("default", Hash::Default),
        ("md5", Hash::Md5),
        ("crc", Hash::Crc),
        ("jenkins", Hash::Jenkins),
        ("fnv1a_32", Hash::Fnv1a_32),
        ("murmur", Hash::Murmur),
    ];
    let mut all = Vec::new();
    for (name, hash) in hashes {
        all.push(Placement {
            name: format!("modula/{name}"),
            weighted: false,
            python: (json!({ "hash": name }), json!(null)),
            python_reports: (name, "modula"),
            rust: vec![Behavior::Hash(hash)],
            spreads: true,
        });
        all.push(Placement {
            name: format!("ketama/{name}"),
            weighted: false,
            python: (
                json!({ "distribution": "consistent ketama", "hash": name }),
                json!(null),
            ),
            python_reports: (name, "consistent ketama"),
            rust: vec![
                Behavior::Distribution(Distribution::ConsistentKetama),
                Behavior::Hash(hash),
            ],
            spreads: true,
        });
        // pylibmc applies a behaviors dict in its own table order, where `hash` comes before
        // `ketama_weighted` (which sets MD5): a hash of its own has to be set afterwards.
        all.push(Placement {
            name: format!("weighted/{name}"),
            weighted: true,
            python: (json!({ "ketama_weighted": true }), json!({ "hash": name })),
            python_reports: (name, "consistent weighted"),
            rust: vec![Behavior::KetamaWeighted(true), Behavior::Hash(hash)],
            spreads: hash != Hash::Crc,
        });
    }
    // `ketama_weighted` is the weighted distribution with MD5 keys (the weighted continuum
    // always hashes its points with MD5, whatever the distribution hash).
    all.push(Placement {
        name: "weighted/as-distribution-and-md5".into(),
        weighted: true,
        python: (json!({ "ketama_weighted": true }), json!(null)),
        python_reports: ("md5", "consistent weighted"),
        rust: vec![
            Behavior::Distribution(Distribution::ConsistentWeighted),
            Behavior::Hash(Hash::Md5),
        ],
        spreads: true,
    });
    // And so pylibmc's `{"ketama_weighted": True, "hash": "crc"}` hashes keys with MD5: its
    // `hash` is overridden.
    all.push(Placement {
        name: "weighted/crc-in-constructor".into(),
        weighted: true,
        python: (
            json!({ "ketama_weighted": true, "hash": "crc" }),
            json!(null),
        ),
        python_reports: ("md5", "consistent weighted"),
        rust: vec![Behavior::KetamaWeighted(true)],
        spreads: true,
    });
    all
}

/// The keys `prefix0`..`prefix999`, as pylibmc_peer.py builds them.
fn placed_keys(prefix: &str) -> Vec<String> {
    (0..PLACED_KEYS).map(|i| format!("{prefix}{i}")).collect()
}

/// Which server (by index) holds each key, asked of each server alone.
fn where_stored(singles: &[Client], keys: &[String]) -> Vec<Option<usize>> {
    let mut location = vec![None; keys.len()];
    for (server, mc) in singles.iter().enumerate() {
        let found: HashMap<&String, Vec<u8>> = mc.get_multi(keys).unwrap();
        for (i, k) in keys.iter().enumerate() {
            if found.contains_key(k) {
                assert_eq!(location[i], None, "{k} is on two servers");
                location[i] = Some(server);
            }
        }
    }
    location
}

#[test]
fn keys_land_on_the_same_server_for_both_clients() {
    let servers: Vec<Memcached> = (0..4).map(|_| common::own_server()).collect();
    let plain: Vec<String> = servers.iter().map(Memcached::spec).collect();
    // Weights 1 (implicit), 2, 1 (explicit) and 3.
    let weights = [1, 2, 1, 3];
    let weighted: Vec<String> = vec![
        plain[0].clone(),
        format!("{}:2", plain[1]),
        format!("{}:1", plain[2]),
        format!("{}:3", plain[3]),
    ];
    let ports: Vec<u16> = servers.iter().map(|s| s.port().unwrap()).collect();
    let singles: Vec<Client> = plain
        .iter()
        .map(|s| common::client(std::slice::from_ref(s), false))
        .collect();
    let configs = placements();
    let base = common::key("place");
    let prefix = |config: &Placement, who: &str| format!("{base}:{}:{who}:", config.name);

    // pylibmc stores 1000 keys per configuration.
    let jobs: Vec<Json> = configs
        .iter()
        .map(|c| {
            let specs = if c.weighted { &weighted } else { &plain };
            json!({
                "servers": specs,
                "behaviors": c.python.0,
                "later_behaviors": c.python.1,
                "commands": [
                    { "op": "set_keys", "prefix_hex": hex(prefix(c, "py").as_bytes()), "count": PLACED_KEYS },
                    { "op": "behaviors" },
                ],
            })
        })
        .collect();
    let stored = pylibmc(&jobs);

    let mut rust_servers = Vec::new();
    for (c, results) in configs.iter().zip(&stored) {
        let what = &c.name;
        assert_eq!(results[0]["failed"], 0, "{what}: pylibmc set_multi");
        let reported = &results[1]["behaviors"];
        assert_eq!(
            (&reported["hash"], &reported["distribution"]),
            (&json!(c.python_reports.0), &json!(c.python_reports.1)),
            "{what}: pylibmc's configuration"
        );
        let specs = if c.weighted { &weighted } else { &plain };
        let mut builder = Client::builder().servers(specs);
        for behavior in &c.rust {
            builder = builder.behavior(*behavior);
        }
        let mc = builder.build().unwrap();
        let server_of = |k: &String| {
            let port = mc.server_for_key(k).unwrap().port();
            ports.iter().position(|p| *p == port).unwrap()
        };

        // Rust finds every key pylibmc stored, on the server pylibmc chose.
        let keys = placed_keys(&prefix(c, "py"));
        let found: HashMap<&String, String> = mc.get_multi(&keys).unwrap();
        let missing: Vec<&String> = keys.iter().filter(|k| !found.contains_key(k)).collect();
        assert!(
            missing.is_empty(),
            "{what}: Rust misses {} of pylibmc's keys, such as {:?}",
            missing.len(),
            missing.first()
        );
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(found[k], i.to_string(), "{what}: {k}");
        }
        let rust: Vec<usize> = keys.iter().map(server_of).collect();
        let python: Vec<usize> = serde_json::from_value(results[0]["servers"].clone()).unwrap();
        assert_eq!(rust, python, "{what}: server_for_key and pylibmc's hash()");
        let location = where_stored(&singles, &keys);
        let mut counts = [0; 4];
        for (i, at) in location.iter().enumerate() {
            assert_eq!(*at, Some(rust[i]), "{what}: where {} is", keys[i]);
            counts[rust[i]] += 1;
        }
        if !c.spreads {
            // One server, or two when a point of the ring falls below 2^15 (about one ring in
            // two hundred, as the ports hash).
            assert!(
                counts.iter().filter(|&&n| n > 0).count() <= 2,
                "{what}: the keys crowd onto the ring's first points: {counts:?}"
            );
        } else {
            assert!(
                counts.iter().all(|&n| n > 0),
                "{what}: keys reach every server: {counts:?}"
            );
        }
        if c.weighted && c.spreads {
            // 3/7 of the keys against 1/7 (weight 2's 2/7 can come close on an uneven ring).
            for (server, &n) in counts.iter().enumerate() {
                if weights[server] == 1 {
                    assert!(counts[3] > n, "{what}: weight 3 beats weight 1: {counts:?}");
                }
            }
        }

        // And Rust stores 1000 keys of its own for pylibmc to find.
        let keys = placed_keys(&prefix(c, "rs"));
        let items = keys.iter().enumerate().map(|(i, k)| (k, i.to_string()));
        assert!(mc.set_multi(items, 0).unwrap().is_empty(), "{what}");
        let rust: Vec<usize> = keys.iter().map(server_of).collect();
        let location = where_stored(&singles, &keys);
        assert!(
            location.iter().zip(&rust).all(|(at, r)| *at == Some(*r)),
            "{what}: Rust's keys are where server_for_key says"
        );
        rust_servers.push(rust);
    }

    let jobs: Vec<Json> = configs
        .iter()
        .map(|c| {
            let specs = if c.weighted { &weighted } else { &plain };
            json!({
                "servers": specs,
                "behaviors": c.python.0,
                "later_behaviors": c.python.1,
                "commands": [
                    { "op": "get_keys", "prefix_hex": hex(prefix(c, "rs").as_bytes()), "count": PLACED_KEYS },
                ],
            })
        })
        .collect();
    let read = pylibmc(&jobs);
    for ((c, results), rust) in configs.iter().zip(&read).zip(&rust_servers) {
        let what = &c.name;
        assert_eq!(
            results[0]["missing"],
            json!([]),
            "{what}: pylibmc misses Rust's keys"
        );
        assert_eq!(results[0]["wrong"], json!([]), "{what}: values");
        let python: Vec<usize> = serde_json::from_value(results[0]["servers"].clone()).unwrap();
        assert_eq!(&python, rust, "{what}: pylibmc's hash() and server_for_key");
    }
}

/// A pylibmc behaviors dict as (name, value) pairs for `behaviors_by_name`.
fn named(behaviors: &Json) -> Vec<(String, String)> {
    let Some(map) = behaviors.as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(name, value)| {
            let value = match value {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.clone(), value)
        })
        .collect()
}

/// The same behaviors dict, given by name to this crate as to pylibmc, places keys the same.
#[test]
fn behaviors_by_name_place_keys_as_pylibmc_does() {
    let servers: Vec<Memcached> = (0..3).map(|_| common::own_server()).collect();
    let plain: Vec<String> = servers.iter().map(Memcached::spec).collect();
    let weighted = vec![
        plain[0].clone(),
        format!("{}:2", plain[1]),
        format!("{}:3", plain[2]),
    ];
    let ports: Vec<u16> = servers.iter().map(|s| s.port().unwrap()).collect();
    // (weighted specs, pylibmc's constructor behaviors, behaviors set after construction)
    let configs = [
        (false, json!({ "hash": "fnv1a_32" }), json!(null)),
        (
            false,
            json!({ "distribution": "consistent ketama", "hash": "md5" }),
            json!(null),
        ),
        (false, json!({ "ketama": true }), json!(null)),
        (
            false,
            json!({ "ketama": true, "distribution": "modula", "hash": "murmur" }),
            json!(null),
        ),
        (
            false,
            json!({ "distribution": "consistent ketama", "ketama_hash": "crc" }),
            json!(null),
        ),
        (true, json!({ "ketama_weighted": true }), json!(null)),
        (
            true,
            json!({ "ketama_weighted": true }),
            json!({ "hash": "fnv1a_32" }),
        ),
        (
            true,
            json!({ "ketama_weighted": true, "distribution": "consistent ketama" }),
            json!(null),
        ),
        (
            true,
            json!({ "ketama_weighted": true, "hash": "crc" }),
            json!(null),
        ),
        (
            true,
            json!({ "ketama_weighted": true, "hash": "murmur" }),
            json!(null),
        ),
    ];
    let base = common::key("by-name");
    let jobs: Vec<Json> = configs
        .iter()
        .enumerate()
        .map(|(i, (w, constructor, later))| {
            json!({
                "servers": if *w { &weighted } else { &plain },
                "behaviors": constructor,
                "later_behaviors": later,
                "commands": [
                    { "op": "set_keys", "prefix_hex": hex(format!("{base}:{i}:").as_bytes()), "count": PLACED_KEYS },
                    { "op": "behaviors" },
                ],
            })
        })
        .collect();
    let results = pylibmc(&jobs);

    let mut differences = Vec::new();
    for (i, ((w, constructor, later), results)) in configs.iter().zip(&results).enumerate() {
        assert_eq!(results[0]["failed"], 0, "{constructor}: pylibmc set_multi");
        let python: Vec<usize> = serde_json::from_value(results[0]["servers"].clone()).unwrap();
        let mut used = python.clone();
        used.sort_unstable();
        used.dedup();
        assert_eq!(used.len(), 3, "{constructor}: pylibmc spreads the keys");

        let mc = Client::builder()
            .servers(if *w { &weighted } else { &plain })
            .behaviors_by_name(named(constructor))
            .build()
            .unwrap();
        mc.set_behaviors_by_name(named(later)).unwrap();
        let keys = placed_keys(&format!("{base}:{i}:"));
        let found: HashMap<&String, String> = mc.get_multi(&keys).unwrap();
        let rust: Vec<usize> = keys
            .iter()
            .map(|k| {
                let port = mc.server_for_key(k).unwrap().port();
                ports.iter().position(|p| *p == port).unwrap()
            })
            .collect();
        let moved = rust.iter().zip(&python).filter(|(r, p)| r != p).count();
        if found.len() != keys.len() || moved != 0 {
            let rust_config = ["hash", "distribution"].map(|name| {
                let value = mc.behavior_by_name(name).unwrap();
                format!("{name}={value}")
            });
            differences.push(format!(
                "{constructor} then {later}: Rust misses {} of pylibmc's {} keys, places {moved} \
                 elsewhere; pylibmc has {}, Rust {}",
                keys.len() - found.len(),
                keys.len(),
                results[1]["behaviors"],
                rust_config.join(" "),
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "behaviors by name place keys unlike pylibmc:\n{}",
        differences.join("\n")
    );
}
