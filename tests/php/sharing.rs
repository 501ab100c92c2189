//! Placement, one cache shared by Python, PHP and Rust, and bad input.

use libmemcached::{Behavior, Client, Distribution, Error, Value, ValueFormat};
use serde_json::{Value as JsonValue, json};

use super::common;
use super::harness::*;

const KEYS: usize = 1000;

fn client(specs: &[String], format: ValueFormat, behaviors: &[Behavior]) -> Client {
    let mut builder = Client::builder().servers(specs).value_format(format);
    for &behavior in behaviors {
        builder = builder.behavior(behavior);
    }
    builder.build().unwrap()
}

/// The server `Client::server_for_key` names for each key.
fn rust_servers(mc: &Client, prefix: &str) -> Vec<String> {
    (0..KEYS)
        .map(|i| {
            mc.server_for_key(format!("{prefix}{i}"))
                .unwrap()
                .to_string()
        })
        .collect()
}

/// For php-memcached's placement options, the behaviors that put every key on the server PHP
/// puts it on: 1000 keys on 3 servers, each asked of PHP's `getServerByKey`.
#[test]
fn keys_land_where_php_puts_them() {
    let (_servers, specs) = cluster(3);
    let cases: [(&str, JsonValue, &[Behavior]); 3] = [
        ("php's defaults", json!({}), &[]),
        (
            "OPT_LIBKETAMA_COMPATIBLE",
            json!({ "OPT_LIBKETAMA_COMPATIBLE": true }),
            &[Behavior::KetamaWeighted(true)],
        ),
        (
            "DISTRIBUTION_CONSISTENT",
            json!({ "OPT_DISTRIBUTION": "DISTRIBUTION_CONSISTENT" }),
            &[Behavior::Distribution(Distribution::Consistent)],
        ),
    ];
    let jobs: Vec<JsonValue> = cases
        .iter()
        .map(|(_, options, _)| job(&specs, options.clone(), vec![servers("placed-", KEYS)]))
        .collect();
    let results = php_ok(&jobs);
    let mut placements = Vec::new();
    for ((name, _, behaviors), result) in cases.iter().zip(&results) {
        let php: Vec<String> = serde_json::from_value(result[0]["servers"].clone()).unwrap();
        let mc = client(&specs, ValueFormat::Php, behaviors);
        let rust = rust_servers(&mc, "placed-");
        let differ = (0..KEYS).filter(|&i| php[i] != rust[i]).count();
        assert_eq!(differ, 0, "{name}: keys on another server than PHP's");
        for spec in &specs {
            let share = rust.iter().filter(|s| *s == spec).count();
            assert!(
                share > KEYS / 6,
                "{name}: {spec} holds {share} of {KEYS} keys"
            );
        }
        placements.push(rust);
    }
    let moved = (0..KEYS)
        .filter(|&i| placements[0][i] != placements[1][i])
        .count();
    assert!(
        moved > KEYS / 3,
        "modula and ketama place keys differently ({moved} moved)"
    );

    // And the keys are really there: Rust writes, PHP (with libketama) reads every one.
    let mc = client(&specs, ValueFormat::Php, &[Behavior::KetamaWeighted(true)]);
    let gets = (0..100)
        .map(|i| {
            mc.set(format!("there-{i}"), i as i64, 0).unwrap();
            get(&format!("there-{i}"))
        })
        .collect();
    let read = php_ok(&[job(
        &specs,
        json!({ "OPT_LIBKETAMA_COMPATIBLE": true }),
        gets,
    )]);
    for (i, result) in read[0].iter().enumerate() {
        assert_eq!(
            result["value"],
            json!({ "type": "integer", "value": i }),
            "there-{i}"
        );
    }
}

/// PHP's column for a value in a format PHP cannot read: it fails in one of its known ways.
const UNREADABLE: &str = "cannot read: an error or a crash";

/// Python, PHP and Rust on one cache of 3 servers, all with ketama and MD5 (pylibmc's
/// `ketama_weighted`, PHP's `OPT_LIBKETAMA_COMPATIBLE`, `Behavior::KetamaWeighted`): each reads
/// the values meant for it, and what each sees of the others' is pinned down.
#[test]
fn python_php_and_rust_share_one_cache() {
    let (_servers, specs) = cluster(3);
    let ketama = [Behavior::KetamaWeighted(true)];
    let for_python = client(&specs, ValueFormat::Pylibmc, &ketama);
    let for_php = client(&specs, ValueFormat::Php, &ketama);
    let py_job = |commands| {
        json!({
            "servers": specs, "binary": false, "behaviors": { "ketama_weighted": true },
            "commands": commands,
        })
    };
    let php_options = json!({ "OPT_LIBKETAMA_COMPATIBLE": true });

    // Placement: Python writes bytes (which PHP reads as strings) under 200 keys; PHP and Rust
    // find every one, and PHP names the same servers as Rust.
    let py_set = |k: &str, v: JsonValue| json!({ "op": "set", "key": k, "value": v });
    let bytes = |b: &[u8]| json!({ "type": "bytes", "hex": hex(b) });
    python(&[py_job(
        (0..200)
            .map(|i| py_set(&format!("py-{i}"), bytes(format!("v{i}").as_bytes())))
            .collect::<Vec<_>>(),
    )]);
    let mut commands: Vec<JsonValue> = (0..200).map(|i| get(&format!("py-{i}"))).collect();
    commands.push(servers("py-", 200));
    let php_read = php_ok(&[job(&specs, php_options.clone(), commands)]);
    for (i, read) in php_read[0][..200].iter().enumerate() {
        let expected = format!("v{i}");
        assert_eq!(
            read["value"]["hex"],
            hex(expected.as_bytes()),
            "py-{i} in PHP"
        );
        let rust: Vec<u8> = for_php.get(format!("py-{i}")).unwrap().unwrap();
        assert_eq!(rust, expected.as_bytes(), "py-{i} in Rust");
        let server = for_python
            .server_for_key(format!("py-{i}"))
            .unwrap()
            .to_string();
        assert_eq!(
            php_read[0][200]["servers"][i], server,
            "py-{i}: PHP's server"
        );
    }

    // Each writes its own types.
    let py_values = [
        (
            "py-str",
            json!({ "type": "str", "hex": hex("é".as_bytes()) }),
        ),
        ("py-bytes", bytes(b"raw")),
        ("py-int", json!({ "type": "int", "dec": "42" })),
        ("py-bool", json!({ "type": "bool", "value": true })),
        ("py-float", json!({ "type": "literal", "expr": "1.5" })),
        ("py-list", json!({ "type": "literal", "expr": "[1, 2]" })),
    ];
    python(&[py_job(
        py_values
            .iter()
            .map(|(k, v)| py_set(k, v.clone()))
            .collect(),
    )]);
    php_ok(&[job(
        &specs,
        php_options.clone(),
        vec![
            set("php-string", string("é".as_bytes())),
            set("php-int", int(42)),
            set("php-float", float(1.5)),
            set("php-bool", boolean(true)),
            set("php-array", expr("[1, 2]")),
        ],
    )]);
    for (mc, who) in [(&for_python, "rust-py"), (&for_php, "rust-php")] {
        mc.set(format!("{who}-text"), "é", 0).unwrap();
        mc.set(format!("{who}-int"), 42, 0).unwrap();
        mc.set(format!("{who}-bool"), true, 0).unwrap();
        mc.set(format!("{who}-float"), 1.5, 0).unwrap();
    }
    let keys: Vec<String> = [
        "py-str", "py-bytes", "py-int", "py-bool", "py-float", "py-list",
    ]
    .into_iter()
    .chain([
        "php-string",
        "php-int",
        "php-float",
        "php-bool",
        "php-array",
    ])
    .map(String::from)
    .chain(
        ["rust-py", "rust-php"]
            .iter()
            .flat_map(|who| ["text", "int", "bool", "float"].map(|t| format!("{who}-{t}"))),
    )
    .collect();

    // What each sees of every value: the values meant for it, typed; the others' as shown.
    // PHP's column: a value PHP cannot read fails in one of its known ways, which vary from run
    // to run (an error, or a crash of php-memcached 3.2.0 after a failed unserialize): that is
    // PHP's doing, so it is recorded, not asserted. What the crate controls there is that Rust
    // writes pylibmc's values byte for byte as pylibmc does, checked below.
    let seen_by_python = python(&[py_job(
        keys.iter()
            .map(|k| json!({ "op": "get", "key": k }))
            .collect(),
    )]);
    #[rustfmt::skip]
    let expected: [(&str, &str, &str, &str, &str); 19] = [
        // key             Python                    PHP            Rust, pylibmc's   Rust, PHP's
        ("py-str",         "str é",                  UNREADABLE,    "text é",         "decompress error"),
        ("py-bytes",       "bytes raw",              "string raw",  "bytes raw",      "bytes raw"),
        ("py-int",         "int 42",                 UNREADABLE,    "int 42",         "php serialize() value 42"),
        ("py-bool",        "int 1",                  "float 1.0",   "int 1",          "php float 1"),
        ("py-float",       "float 1.5",              "int 0",       "pickle",         "decode error"),
        ("py-list",        "list [1, 2]",            "int 0",       "pickle",         "decode error"),
        ("php-string",     "bytes é",                "string é",    "bytes é",        "bytes é"),
        ("php-int",        "error UnpicklingError",  "int 42",      "pickle",         "int 42"),
        ("php-float",      "error ValueError",       "float 1.5",   "decode error",   "php float 1.5"),
        ("php-bool",       "error Error",            "bool true",   "other 3",        "php bool 1"),
        ("php-array",      "error ValueError",       "array [1,2]", "decode error",   "php serialize() value a:2:{i:0;i:1;i:1;i:2;}"),
        ("rust-py-text",   "str é",                  UNREADABLE,    "text é",         "decompress error"),
        ("rust-py-int",    "int 42",                 UNREADABLE,    "int 42",         "php serialize() value 42"),
        ("rust-py-bool",   "int 1",                  "float 1.0",   "int 1",          "php float 1"),
        ("rust-py-float",  "float 1.5",              "int 0",       "pickle",         "decode error"),
        ("rust-php-text",  "bytes é",                "string é",    "bytes é",        "bytes é"),
        ("rust-php-int",   "error UnpicklingError",  "int 42",      "pickle",         "int 42"),
        ("rust-php-bool",  "error Error",            "bool true",   "other 3",        "php bool 1"),
        ("rust-php-float", "error ValueError",       "float 1.5",   "decode error",   "php float 1.5"),
    ];
    assert_eq!(keys, expected.map(|row| row.0));
    let mut php_failures = Vec::new();
    for (i, (k, python, php, rust_py, rust_php)) in expected.into_iter().enumerate() {
        // PHP alone per key, so that one crash costs one reading.
        let seen_by_php = match php_alone(&job(&specs, php_options.clone(), vec![get(k)])) {
            Ok(results) => php_sees(&results[0]),
            Err(crash) => format!("crash ({crash})"),
        };
        let php_seen =
            if php == UNREADABLE && (seen_by_php == "error" || seen_by_php.starts_with("crash")) {
                php_failures.push(format!("{k}: {seen_by_php}"));
                UNREADABLE.to_string()
            } else {
                seen_by_php
            };
        let seen = [
            python_sees(&seen_by_python[0][i]),
            php_seen,
            rust_sees(for_python.get::<Value>(k)),
            rust_sees(for_php.get::<Value>(k)),
        ];
        assert_eq!(
            seen,
            [python, php, rust_py, rust_php],
            "{k}: Python, PHP, Rust (pylibmc), Rust (PHP)"
        );
    }
    eprintln!("PHP on values it cannot read: {}", php_failures.join("; "));
    // Rust's values in pylibmc's format are pylibmc's own bytes and flags, so every reader
    // (PHP included, whatever it then does) sees the same item for either writer. (A float is
    // a pickle either way, of protocol 2 from Rust and of Python's default protocol from
    // pylibmc: same flags, and both read back as 1.5 above.)
    let stored = |key: &str| {
        let server = for_python.server_for_key(key).unwrap().to_string();
        common::raw_get(&server, key).unwrap()
    };
    for (rust, py) in [
        ("rust-py-text", "py-str"),
        ("rust-py-int", "py-int"),
        ("rust-py-bool", "py-bool"),
    ] {
        assert_eq!(
            stored(rust),
            stored(py),
            "{rust} stored by Rust, {py} by pylibmc"
        );
    }
    assert_eq!(stored("rust-py-float").0, stored("py-float").0);
    // Rust's typed reads of the values meant for it, in each format.
    assert_eq!(for_python.get::<f64>("py-float").unwrap(), Some(1.5));
    assert_eq!(for_python.get::<bool>("py-bool").unwrap(), Some(true));
    assert_eq!(for_php.get::<f64>("php-float").unwrap(), Some(1.5));
    assert_eq!(for_php.get::<bool>("php-bool").unwrap(), Some(true));
    assert_eq!(
        for_php.get::<String>("php-string").unwrap().as_deref(),
        Some("é")
    );
    assert_eq!(for_php.get::<i64>("php-int").unwrap(), Some(42));
}

fn python_sees(result: &JsonValue) -> String {
    if let Some(error) = result["error"].as_str() {
        return format!("error {}", error.split(':').next().unwrap());
    }
    let value = &result["value"];
    let text = |hex: &JsonValue| String::from_utf8(unhex(hex.as_str().unwrap())).unwrap();
    match value["type"].as_str().unwrap() {
        "str" | "bytes" => format!(
            "{} {}",
            value["type"].as_str().unwrap(),
            text(&value["hex"])
        ),
        "int" => format!("int {}", value["dec"].as_str().unwrap()),
        "pickle" => format!(
            "{} {}",
            value["python_type"].as_str().unwrap(),
            value["repr"].as_str().unwrap()
        ),
        other => panic!("{other}: {result}"),
    }
}

fn php_sees(result: &JsonValue) -> String {
    if result.get("error").is_some() {
        return "error".into();
    }
    let value = &result["value"];
    let text = |hex: &JsonValue| String::from_utf8(unhex(hex.as_str().unwrap())).unwrap();
    match value["type"].as_str().unwrap() {
        "string" => format!("string {}", text(&value["hex"])),
        "integer" => format!("int {}", value["value"]),
        "double" => format!("float {}", value["export"].as_str().unwrap()),
        "boolean" => format!("bool {}", value["value"]),
        "array" => format!("array {}", value["json"].as_str().unwrap()),
        other => panic!("{other}: {result}"),
    }
}

fn rust_sees(read: libmemcached::Result<Option<Value>>) -> String {
    let text = |data: &[u8]| String::from_utf8_lossy(data).into_owned();
    match read {
        Ok(Some(Value::Bytes(data))) => format!("bytes {}", text(&data)),
        Ok(Some(Value::Text(t))) => format!("text {t}"),
        Ok(Some(Value::Int(i))) => format!("int {i}"),
        Ok(Some(Value::Pickle(_))) => "pickle".into(),
        Ok(Some(Value::Php { kind, data, .. })) => format!("php {kind} {}", text(&data)),
        Ok(Some(Value::Other { flags, .. })) => format!("other {flags}"),
        Err(Error::Decode { .. }) => "decode error".into(),
        Err(Error::Decompress { .. }) => "decompress error".into(),
        other => panic!("{other:?}"),
    }
}

/// A PHP-format value with an unknown type or a corrupt compressed payload is a clear error
/// naming the key and PHP's flags. (What PHP does with the same bytes is its own affair: it
/// allocates whatever a length prefix claims, and its reads of corrupt values are not pinned.)
#[test]
fn bad_php_values_are_clear_errors() {
    let server = common::own_server();
    let spec = server.spec();
    let mc = client(std::slice::from_ref(&spec), ValueFormat::Php, &[]);
    let zlib_garbage = [&2000u32.to_le_bytes()[..], b"\x78\x9cnot a zlib stream"].concat();
    let fastlz_garbage = [&2000u32.to_le_bytes()[..], b"\x01aa\xe0\xfd\x09"].concat();
    let huge = [&100_000_000u32.to_le_bytes()[..], b"\x01aa"].concat();
    let cases: [(&str, u32, &[u8], &str); 6] = [
        ("type-9", 9, b"x", "unknown PHP type 9"),
        ("zlib", 48, &zlib_garbage, "zlib"),
        ("fastlz", 80, &fastlz_garbage, "FastLZ"),
        ("huge", 80, &huge, "more than the limit"),
        ("short", 48, b"\x01\x00", "too short"),
        ("no-method", 16, &zlib_garbage, "neither zlib nor FastLZ"),
    ];
    for (key, flags, data, why) in cases {
        common::raw_set(&spec, key, flags, data);
        let err = mc.get::<Vec<u8>>(key).unwrap_err();
        let text = err.to_string();
        match &err {
            Error::Decode {
                key: k, flags: f, ..
            } => assert_eq!((k.as_slice(), *f), (key.as_bytes(), flags)),
            Error::Decompress { key: k, reason } => {
                assert_eq!(k.as_slice(), key.as_bytes());
                assert!(reason.contains(&format!("PHP flags {flags}")), "{reason}");
            }
            other => panic!("{key}: {other:?}"),
        }
        assert!(text.contains(why) && text.contains(key), "{key}: {text}");
    }
    common::raw_set(&spec, "double", 2, b"1.5x");
    assert!(matches!(
        mc.get::<f64>("double"),
        Err(Error::Decode { flags: 2, .. })
    ));
}

/// PHP's `OPT_PREFIX_KEY` is libmemcached's namespace: the key is hashed without it. 60 keys PHP
/// writes with it on 3 servers are all found with `ClientBuilder::namespace`; `prefixed()`
/// (pylibmc's `key_prefix`) hashes the prefix too, and looks for some on another server.
#[test]
fn php_prefix_key_is_the_namespace_not_prefixed() {
    let (_servers, specs) = cluster(3);
    let sets = (0..60).map(|i| set(&format!("k{i}"), int(i))).collect();
    php_ok(&[job(&specs, json!({ "OPT_PREFIX_KEY": "app:" }), sets)]);

    let namespaced = Client::builder()
        .servers(&specs)
        .value_format(ValueFormat::Php)
        .namespace("app:")
        .build()
        .unwrap();
    let found = (0..60)
        .filter(|i| namespaced.get::<i64>(format!("k{i}")).unwrap() == Some(*i))
        .count();
    let plain = client(&specs, ValueFormat::Php, &[]);
    let prefixed = plain.prefixed("app:");
    let found_prefixed = (0..60)
        .filter(|i| prefixed.get::<i64>(format!("k{i}")).unwrap() == Some(*i))
        .count();
    eprintln!(
        "OPT_PREFIX_KEY keys found: {found}/60 with namespace, {found_prefixed}/60 with prefixed"
    );
    assert_eq!(found, 60, "keys found with namespace(\"app:\")");
    assert!(
        found_prefixed < 60,
        "prefixed() hashes the prefix: some keys are elsewhere"
    );
}

/// PHP's sessions (`session.save_handler = memcached`, php-memcached's default `memcached.sess_*`
/// settings) on 3 servers, found with the settings the guide gives (`guide/php.md`):
/// `Behavior::Ketama(true)` (`sess_consistent_hash`, type ketama) and
/// `namespace("memc.sess.key.")` (`sess_prefix`).
#[test]
fn php_sessions_are_found_with_ketama_and_the_session_namespace() {
    let (_servers, specs) = cluster(3);
    let written = php_ok(&[job(
        &specs,
        json!({}),
        vec![json!({ "op": "eval", "php": r#"
            $servers = array_map(fn($s) => "{$s['host']}:{$s['port']}", $m->getServerList());
            ini_set('session.save_handler', 'memcached');
            ini_set('session.save_path', implode(',', $servers));
            ini_set('session.use_cookies', '0');
            ini_set('session.cache_limiter', '');
            $ids = [];
            for ($i = 0; $i < 60; $i++) {
                session_id('sess' . md5("session $i"));
                if (!session_start()) {
                    throw new Exception("session_start failed");
                }
                $_SESSION['n'] = $i;
                session_write_close();
                $ids[] = session_id();
            }
            $ini = [];
            foreach (['prefix', 'consistent_hash', 'consistent_hash_type', 'binary_protocol'] as $name) {
                $ini[$name] = ini_get("memcached.sess_$name");
            }
            return ['ids' => $ids, 'ini' => $ini];
        "# })],
    )]);
    let written = &written[0][0]["result"];
    assert_eq!(
        written["ini"],
        json!({ "prefix": "memc.sess.key.", "consistent_hash": "1",
                "consistent_hash_type": "ketama", "binary_protocol": "1" }),
        "php-memcached's default session settings"
    );
    let ids: Vec<String> = serde_json::from_value(written["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 60);

    let sessions = Client::builder()
        .servers(&specs)
        .binary(true)
        .behavior(Behavior::Ketama(true))
        .namespace("memc.sess.key.")
        .build()
        .unwrap();
    let found = ids
        .iter()
        .enumerate()
        .filter(|(i, id)| {
            sessions.get::<Vec<u8>>(id).unwrap() == Some(format!("n|i:{i};").into_bytes())
        })
        .count();
    // Without ketama (modula), most are looked for elsewhere.
    let modula = Client::builder()
        .servers(&specs)
        .namespace("memc.sess.key.")
        .build()
        .unwrap();
    let found_modula = ids
        .iter()
        .filter(|id| modula.get::<Vec<u8>>(id).unwrap().is_some())
        .count();
    eprintln!("PHP sessions found: {found}/60 with ketama, {found_modula}/60 with modula");
    assert_eq!(
        found, 60,
        "sessions found with ketama and the session namespace"
    );
    assert!(found_modula < 60, "placement matters: modula misses some");
}
