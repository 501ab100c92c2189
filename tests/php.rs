//! Cross-language tests: this crate and PHP's `memcached` extension (php-memcached, run by the
//! `php` CLI) sharing the same memcached servers, and one test with pylibmc as well.
//!
//! Needs the `serde` and `php` features (CI runs `cargo test --all-features`), and Debian's
//! php-cli, php-memcached, php-igbinary and php-msgpack (`scripts/setup`).
#![cfg(all(feature = "serde", feature = "php"))]

mod common;
#[path = "php/harness.rs"]
mod harness;

use libmemcached::php::{PhpKey, PhpType, PhpValue};
use libmemcached::{Client, Compressed, Compression, Error, Json, Value};
use serde_json::{Value as JsonValue, json};

use harness::*;

// ---- the facts -------------------------------------------------------------------------------

/// Every fact `src/php/mod.rs` documents, as the real extension shows it.
#[test]
fn php_memcached_is_as_documented() {
    let server = common::own_server();
    let facts: JsonValue =
        serde_json::from_slice(&run(PHP, "php/facts.php", &[&server.spec()], b"")).unwrap();
    assert_eq!(facts["version"], "3.2.0");
    let ini = json!({
        "serializer": "php", "compression_type": "fastlz",
        "compression_threshold": "2000", "compression_factor": "1.3",
    });
    assert_eq!(facts["ini"], ini);
    let constants = &facts["constants"];
    for have in ["HAVE_IGBINARY", "HAVE_JSON", "HAVE_MSGPACK"] {
        assert_eq!(constants[have], true, "{have}");
    }
    assert_eq!(constants["COMPRESSION_FASTLZ"], 2);
    assert_eq!(constants["COMPRESSION_ZLIB"], 1);
    assert!(
        constants.get("COMPRESSION_ZSTD").is_none(),
        "no zstd in 3.2.0"
    );
    let defaults = json!({
        "OPT_HASH": 0, "OPT_DISTRIBUTION": 0, "OPT_LIBKETAMA_COMPATIBLE": 0,
        "OPT_COMPRESSION": true, "OPT_COMPRESSION_TYPE": 2, "OPT_SERIALIZER": 1,
        "OPT_BINARY_PROTOCOL": 0, "OPT_USER_FLAGS": -1,
    });
    assert_eq!(facts["defaults"], defaults);
    let libketama = json!({ "OPT_HASH": 1, "OPT_DISTRIBUTION": 5, "OPT_LIBKETAMA_HASH": 1 });
    assert_eq!(facts["libketama"], libketama, "md5, consistent weighted");

    let stored = |name: &str| {
        let s = &facts["stored"][name];
        (
            s["flags"].as_u64().unwrap() as u32,
            unhex(s["hex"].as_str().unwrap()),
        )
    };
    let expected: [(&str, u32, &[u8]); 21] = [
        ("string", 0, b"hello"),
        ("empty", 0, b""),
        ("long", 1, b"-42"),
        ("max", 1, b"9223372036854775807"),
        ("big_long", 1, b"1234567890123456789"),
        ("double", 2, b"1.5"),
        ("tenth", 2, b".1"),
        ("third", 2, b".3333333333333333"),
        ("negzero", 2, b"-0"),
        ("hundred", 2, b"100"),
        ("e15", 2, b"1e+15"),
        ("e-7", 2, b"1e-07"),
        ("e100", 2, b"1e+100"),
        ("inf", 2, b"Infinity"),
        ("ninf", 2, b"-Infinity"),
        ("nan", 2, b"NaN"),
        ("true", 3, b"1"),
        ("false", 3, b""),
        ("null", 4, b"N;"),
        ("array", 4, b"a:2:{i:0;i:1;s:1:\"a\";d:2.5;}"),
        ("json", 6, b"{\"0\":1,\"a\":2.5}"),
    ];
    for (name, flags, data) in expected {
        assert_eq!(stored(name), (flags, data.to_vec()), "{name}");
    }
    assert_eq!(stored("igbinary").0, 5);
    assert_eq!(
        &stored("igbinary").1[..4],
        b"\0\0\0\x02",
        "igbinary's version 2 header"
    );
    assert_eq!(
        stored("msgpack"),
        (7, b"\x82\x00\x01\xa1a\xcb\x40\x04\0\0\0\0\0\0".to_vec())
    );
    assert_eq!(
        stored("user"),
        (7 << 16, b"x".to_vec()),
        "user flags in the top 16 bits"
    );

    // Compression: from 2000 bytes, FastLZ by default (16 | 64), zlib on request (16 | 32),
    // behind the length as 4 little-endian bytes; kept only if 1.3 times smaller.
    assert_eq!(stored("below_threshold"), (0, vec![b'a'; 1999]));
    let (flags, fastlz) = stored("threshold");
    assert_eq!((flags, &fastlz[..4]), (80, &2000u32.to_le_bytes()[..]));
    let (flags, zlib) = stored("zlib");
    assert_eq!((flags, &zlib[..6]), (48, &b"\xd0\x07\0\0\x78\x9c"[..]));
    let (flags, poor) = stored("poor");
    assert_eq!((flags, poor.len()), (0, 3000), "zlib saves too little");

    // What this crate stores for the same values, in PHP's format, is what PHP stored.
    let mc = php_client(&[server.spec()]);
    let compressing = Compression::new(2000);
    let doubles = [
        ("double", 1.5),
        ("tenth", 0.1),
        ("third", 1.0 / 3.0),
        ("negzero", -0.0),
        ("hundred", 100.0),
        ("e15", 1e15),
        ("e-7", 1e-7),
        ("e100", 1e100),
        ("inf", f64::INFINITY),
        ("ninf", f64::NEG_INFINITY),
        ("nan", f64::NAN),
    ];
    for (name, x) in doubles {
        mc.set(name, x, 0).unwrap();
        assert_eq!(
            common::raw_get(&server.spec(), name).unwrap(),
            stored(name),
            "{name}"
        );
    }
    type Write<'a> = Box<dyn Fn(&str) -> libmemcached::Result<()> + 'a>;
    let writes: [(&str, Write<'_>); 8] = [
        ("string", Box::new(|k| mc.set(k, "hello", 0))),
        ("empty", Box::new(|k| mc.set(k, &b""[..], 0))),
        ("long", Box::new(|k| mc.set(k, -42i8, 0))),
        ("max", Box::new(|k| mc.set(k, i64::MAX, 0))),
        ("true", Box::new(|k| mc.set(k, true, 0))),
        ("false", Box::new(|k| mc.set(k, false, 0))),
        (
            "poor",
            Box::new(|k| mc.set(k, Compressed::new(&poor, compressing), 0)),
        ),
        ("user", Box::new(|k| mc.set(k, (b"x".to_vec(), 7 << 16), 0))),
    ];
    for (name, write) in writes {
        let key = format!("rust-{name}");
        write(&key).unwrap();
        assert_eq!(
            common::raw_get(&server.spec(), &key).unwrap(),
            stored(name),
            "{name}"
        );
    }
    // zlib's bytes depend on the implementation (this crate's flate2 is miniz_oxide), but not
    // the flags, the prefix or the header.
    mc.set(
        "rust-zlib",
        Compressed::new("a".repeat(2000), compressing),
        0,
    )
    .unwrap();
    let (flags, ours) = common::raw_get(&server.spec(), "rust-zlib").unwrap();
    assert_eq!((flags, &ours[..6]), (48, &zlib[..6]));
}

/// The FastLZ fixtures of the unit tests are what php-memcached writes.
#[test]
fn fastlz_fixtures_are_what_php_writes() {
    let server = common::own_server();
    let dir = std::env::temp_dir().join(format!("php-fastlz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    run(
        PHP,
        "php/fastlz_fixtures.php",
        &[&server.spec(), dir.to_str().unwrap()],
        b"",
    );
    for name in ["level1", "level2"] {
        let written = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
        let committed = std::fs::read(format!(
            "{}/src/php/fastlz/{name}.bin",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert_eq!(written, committed, "{name}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- PHP writes, Rust reads -------------------------------------------------------------------

fn php_array(entries: Vec<(PhpKey, PhpValue)>) -> PhpValue {
    PhpValue::Array(entries)
}

fn key(k: &str) -> PhpKey {
    PhpKey::String(k.as_bytes().to_vec())
}

/// `['n' => 1, 'f' => 2.5, 'l' => [true, null, 'é']]`, as PHP writes it and this crate reads it.
const NESTED: &str = "['n' => 1, 'f' => 2.5, 'l' => [true, null, 'é']]";

fn nested() -> PhpValue {
    php_array(vec![
        (key("n"), PhpValue::Int(1)),
        (key("f"), PhpValue::Float(2.5)),
        (
            key("l"),
            php_array(vec![
                (PhpKey::Int(0), PhpValue::Bool(true)),
                (PhpKey::Int(1), PhpValue::Null),
                (PhpKey::Int(2), PhpValue::String("é".as_bytes().to_vec())),
            ]),
        ),
    ])
}

#[test]
fn values_written_by_php_are_read_by_rust() {
    let server = common::own_server();
    let specs = [server.spec()];
    let long_text = "PHP and Rust share a cache. ".repeat(3000); // 84000 bytes: FastLZ level 2
    let big_array = format!("array_fill(0, 500, {NESTED})");
    let serializer = |name: &str| json!({ "OPT_SERIALIZER": name });
    let commands = vec![
        set("string", string("héllo".as_bytes())),
        set("binary", string(&[0, 0xff, b'\n'])),
        set("empty", string(b"")),
        set("int", int(-42)),
        set("max", int(i64::MAX)),
        set("min", expr("PHP_INT_MIN")),
        set("float", float(0.1)),
        set("inf", float(f64::NEG_INFINITY)),
        set("true", boolean(true)),
        set("false", boolean(false)),
        set("null", expr("null")),
        set("array", expr(NESTED)),
        set("object", expr("(object)['a' => 1]")),
        set("fastlz1", string(&[b'a'; 2000])),
        set("fastlz2", string(long_text.as_bytes())),
        set_with(
            "zlib",
            string(long_text.as_bytes()),
            json!({ "OPT_COMPRESSION_TYPE": "COMPRESSION_ZLIB" }),
        ),
        set("compressed-array", expr(&big_array)),
        set_with("igbinary", expr(NESTED), serializer("SERIALIZER_IGBINARY")),
        set_with("json", expr(NESTED), serializer("SERIALIZER_JSON")),
        set_with("msgpack", expr(NESTED), serializer("SERIALIZER_MSGPACK")),
        set_with(
            "msgpack-object",
            expr("(object)['a' => 1]"),
            serializer("SERIALIZER_MSGPACK"),
        ),
        set_with("user-flags", string(b"u"), json!({ "OPT_USER_FLAGS": 9 })),
        set_with(
            "flagged-json",
            expr("[1]"),
            json!({ "OPT_SERIALIZER": "SERIALIZER_JSON", "OPT_USER_FLAGS": 2 }),
        ),
    ];
    php_ok(&[job(&specs, json!({}), commands)]);
    let raw = |k: &str| common::raw_get(&specs[0], k).unwrap();
    assert_eq!(raw("fastlz1").0, 80);
    assert_eq!(raw("fastlz2").0, 80);
    assert_eq!(raw("fastlz2").1[4] >> 5, 1, "FastLZ level 2");
    assert_eq!(raw("zlib").0, 48);
    assert_eq!(raw("compressed-array").0, 4 | 80);

    let mc = php_client(&specs);
    let get_string = |k: &str| mc.get::<String>(k).unwrap().unwrap();
    assert_eq!(get_string("string"), "héllo");
    assert_eq!(
        mc.get::<Vec<u8>>("binary").unwrap().unwrap(),
        [0, 0xff, b'\n']
    );
    assert_eq!(get_string("empty"), "");
    assert_eq!(mc.get::<i64>("int").unwrap(), Some(-42));
    assert_eq!(mc.get::<i64>("max").unwrap(), Some(i64::MAX));
    assert_eq!(mc.get::<i64>("min").unwrap(), Some(i64::MIN));
    assert_eq!(mc.get::<f64>("float").unwrap(), Some(0.1));
    assert_eq!(mc.get::<f64>("inf").unwrap(), Some(f64::NEG_INFINITY));
    assert_eq!(mc.get::<bool>("true").unwrap(), Some(true));
    assert_eq!(mc.get::<bool>("false").unwrap(), Some(false));
    assert_eq!(get_string("fastlz1"), "a".repeat(2000));
    assert_eq!(get_string("fastlz2"), long_text);
    assert_eq!(get_string("zlib"), long_text);

    // As Value: PHP's own types keep their type and bytes.
    let value = |k: &str| mc.get::<Value>(k).unwrap().unwrap();
    assert_eq!(value("string"), Value::Bytes("héllo".as_bytes().to_vec()));
    assert_eq!(value("int"), Value::Int(-42));
    let php = |kind, data: &[u8]| Value::Php {
        kind,
        data: data.to_vec(),
        user_flags: 0,
    };
    assert_eq!(value("float"), php(PhpType::Double, b".1"));
    assert_eq!(value("false"), php(PhpType::Bool, b""));
    assert_eq!(value("null"), php(PhpType::Serialized, b"N;"));

    // As PhpValue: every serializer's arrays and objects, typed.
    let tree = |k: &str| mc.get::<PhpValue>(k).unwrap().unwrap();
    assert_eq!(tree("null"), PhpValue::Null);
    assert_eq!(tree("true"), PhpValue::Bool(true));
    assert_eq!(tree("float"), PhpValue::Float(0.1));
    assert_eq!(tree("array"), nested());
    assert_eq!(tree("msgpack"), nested());
    let object = PhpValue::Object {
        class: b"stdClass".to_vec(),
        properties: vec![(b"a".to_vec(), PhpValue::Int(1))],
    };
    assert_eq!(tree("object"), object);
    assert_eq!(tree("msgpack-object"), object);
    let PhpValue::Array(entries) = tree("compressed-array") else {
        panic!("an array")
    };
    assert_eq!(entries.len(), 500);
    assert!(entries.iter().all(|(_, v)| *v == nested()));
    assert!(matches!(
        tree("igbinary"),
        PhpValue::Opaque {
            kind: PhpType::Igbinary,
            ..
        }
    ));
    // JSON: as serde_json, as PHP's json_decode reads it (objects), and as text.
    let Json(json): Json<JsonValue> = mc.get("json").unwrap().unwrap();
    assert_eq!(json, json!({ "n": 1, "f": 2.5, "l": [true, null, "é"] }));
    assert_eq!(tree("json").get("l"), nested().get("l"));
    assert_eq!(
        get_string("json"),
        r#"{"n":1,"f":2.5,"l":[true,null,"\u00e9"]}"#
    );
    // The user's flags come through in the top bits.
    assert_eq!(
        mc.get::<(Vec<u8>, u32)>("user-flags").unwrap(),
        Some((b"u".to_vec(), 9 << 16))
    );
    assert_eq!(get_string("user-flags"), "u");
    let Json(flagged): Json<Vec<i32>> = mc.get("flagged-json").unwrap().unwrap();
    assert_eq!(flagged, [1]);

    // Reading into a type that does not fit is a decode error naming the key and PHP's flags.
    for (k, flags) in [("float", 2), ("array", 4), ("true", 3), ("fastlz2", 80)] {
        let wrong: libmemcached::Result<Option<i64>> = mc.get(k);
        match wrong {
            Err(Error::Decode { key, flags: f, .. }) => {
                assert_eq!((key, f), (k.as_bytes().to_vec(), flags))
            }
            other => panic!("{k}: {other:?}"),
        }
    }
}

// ---- Rust writes, PHP reads -------------------------------------------------------------------

#[test]
fn values_written_by_rust_are_read_by_php() {
    let server = common::own_server();
    let specs = [server.spec()];
    let mc = Client::builder()
        .servers(&specs)
        .value_format(libmemcached::ValueFormat::Php)
        .compression(Compression::new(2000))
        .build()
        .unwrap();
    let long_text = "Rust writes, PHP reads. ".repeat(1000);
    let serialized = br#"a:2:{i:0;d:1.5;s:1:"k";b:1;}"#;
    mc.set("text", "héllo", 0).unwrap();
    mc.set("bytes", &[0u8, 0xff][..], 0).unwrap();
    mc.set("int", -7i32, 0).unwrap();
    mc.set("u64", 1u64 << 62, 0).unwrap();
    mc.set("true", true, 0).unwrap();
    mc.set("false", false, 0).unwrap();
    mc.set("f32", 0.1f32, 0).unwrap();
    mc.set("json", Json(json!({ "a": [1, 2.5, null], "b": "é" })), 0)
        .unwrap();
    mc.set("long", &long_text, 0).unwrap();
    mc.set(
        "serialized",
        Value::Php {
            kind: PhpType::Serialized,
            data: serialized.to_vec(),
            user_flags: 0,
        },
        0,
    )
    .unwrap();
    mc.set("user-flags", (b"u".to_vec(), 5 << 16), 0).unwrap();
    mc.set("counter", 10u32, 0).unwrap();
    assert_eq!(
        mc.incr("counter", 5).unwrap(),
        15,
        "PHP's ints are memcached counters"
    );
    mc.set("joined", "ab", 0).unwrap();
    assert!(mc.append("joined", "cd").unwrap());
    let raw = |k: &str| common::raw_get(&specs[0], k).unwrap();
    assert_eq!(raw("long").0, 48, "zlib, as PHP flags it");
    assert_eq!(&raw("long").1[..4], &(long_text.len() as u32).to_le_bytes());
    assert_eq!(raw("json").0, 6);

    let keys = [
        "text",
        "bytes",
        "int",
        "u64",
        "true",
        "false",
        "f32",
        "json",
        "long",
        "serialized",
        "user-flags",
        "counter",
        "joined",
    ];
    let results = php_ok(&[job(
        &specs,
        json!({}),
        keys.iter().map(|k| get(k)).collect(),
    )]);
    let read: std::collections::HashMap<&str, &JsonValue> =
        keys.iter().copied().zip(results[0].iter()).collect();
    let string_of = |v: &[u8]| json!({ "type": "string", "hex": hex(v) });
    assert_eq!(read["text"]["value"], string_of("héllo".as_bytes()));
    assert_eq!(read["bytes"]["value"], string_of(&[0, 0xff]));
    assert_eq!(
        read["int"]["value"],
        json!({ "type": "integer", "value": -7 })
    );
    assert_eq!(read["u64"]["value"]["value"], 1u64 << 62);
    assert_eq!(
        read["true"]["value"],
        json!({ "type": "boolean", "value": true })
    );
    assert_eq!(
        read["false"]["value"],
        json!({ "type": "boolean", "value": false })
    );
    assert_eq!(read["f32"]["value"]["type"], "double");
    let f32_read = exported_float(read["f32"]["value"]["export"].as_str().unwrap());
    assert_eq!(f32_read, f64::from(0.1f32));
    assert_eq!(
        read["json"]["value"]["type"], "object",
        "json_decode: stdClass"
    );
    assert_eq!(
        read["json"]["value"]["json"],
        r#"{"a":[1,2.5,null],"b":"\u00e9"}"#
    );
    assert_eq!(read["long"]["value"], string_of(long_text.as_bytes()));
    assert_eq!(read["serialized"]["value"]["json"], r#"{"0":1.5,"k":true}"#);
    assert_eq!(read["user-flags"]["user_flags"], 5);
    assert_eq!(
        read["counter"]["value"],
        json!({ "type": "integer", "value": 15 })
    );
    assert_eq!(read["joined"]["value"], string_of(b"abcd"));

    // What PHP cannot read is refused before anything is sent.
    for refused in [
        mc.set("x", Value::Pickle(b"\x80\x04N.".to_vec()), 0),
        mc.set("x", u64::MAX, 0),
        mc.set("x", Value::BigInt("1".repeat(30)), 0),
    ] {
        assert!(matches!(refused, Err(Error::Encode(_))), "{refused:?}");
    }
    let on = Compression::new(1);
    assert!(matches!(
        mc.append("joined", Compressed::new("x", on)),
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(mc.get::<Value>("x").unwrap(), None);
}

/// Doubles PHP and Rust store are the same bytes, and each reads the other's exactly.
#[test]
fn doubles_are_stored_as_php_stores_them() {
    let server = common::own_server();
    let specs = [server.spec()];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut doubles = vec![
        0.0,
        -0.0,
        1.0,
        0.5,
        1e-5,
        1e-4,
        123456.0,
        1e21,
        5e-324,
        f64::MAX,
    ];
    // Exactly halfway between two shortest candidates: PHP's dtoa takes the even one.
    for k in 0..50 {
        doubles.extend([0.25, 0.75].map(|f| 1125899906842624.0 + f64::from(k) + f));
    }
    for i in 0..1000 {
        let x = match i % 3 {
            0 => f64::from_bits(next()), // any bits: every exponent
            1 => (next() % 2_000_001) as f64 / 1000.0 - 1000.0, // short decimals
            _ => (next() as f64) * 10f64.powi((i % 40) - 20),
        };
        doubles.push(x);
    }
    let mc = php_client(&specs);
    let mut commands = Vec::new();
    for (i, &x) in doubles.iter().enumerate() {
        mc.set(format!("rust-{i}"), x, 0).unwrap();
        commands.push(set(&format!("php-{i}"), float(x)));
        commands.push(get(&format!("rust-{i}")));
    }
    let results = php_ok(&[job(&specs, json!({}), commands)]);
    for (i, &x) in doubles.iter().enumerate() {
        let (rust, php) = (format!("rust-{i}"), format!("php-{i}"));
        let stored_by_php = common::raw_get(&specs[0], &php).unwrap();
        assert_eq!(
            common::raw_get(&specs[0], &rust).unwrap(),
            stored_by_php,
            "{x:e}"
        );
        let read_by_rust: f64 = mc.get(&php).unwrap().unwrap();
        let export = results[0][2 * i + 1]["value"]["export"].as_str().unwrap();
        let read_by_php = exported_float(export);
        for read in [read_by_rust, read_by_php] {
            assert!(
                read.to_bits() == x.to_bits() || x.is_nan() && read.is_nan(),
                "{x:e}"
            );
        }
    }
}

#[path = "php/sharing.rs"]
mod sharing;

#[path = "php/exact.rs"]
mod exact;
