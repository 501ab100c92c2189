//! Values and compression against a real memcached: what is stored on the wire (read back raw)
//! and what comes back, in both protocols.

mod common;

use std::borrow::Cow;
use std::io::Write;

use libmemcached::value::flags;
use libmemcached::{Client, Compressed, Compression, Encoded, Error, Value};

fn clients(spec: &str, compression: Compression) -> [(&'static str, Client); 2] {
    [false, true].map(|binary| {
        let mc = Client::builder()
            .servers([spec])
            .binary(binary)
            .compression(compression)
            .build()
            .unwrap();
        (if binary { "binary" } else { "ascii" }, mc)
    })
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn std_types_are_stored_with_pylibmc_flags() {
    let server = common::own_server();
    let spec = server.spec();
    for (protocol, mc) in clients(&spec, Compression::OFF) {
        let cases: Vec<(String, u32, Vec<u8>)> = vec![
            {
                let k = common::key("bool");
                mc.set(&k, true, 0).unwrap();
                assert_eq!(mc.get::<bool>(&k).unwrap(), Some(true), "{protocol}");
                (k, flags::INTEGER, b"1".to_vec())
            },
            {
                let k = common::key("false");
                mc.set(&k, false, 0).unwrap();
                assert_eq!(mc.get::<bool>(&k).unwrap(), Some(false), "{protocol}");
                (k, flags::INTEGER, b"0".to_vec())
            },
            {
                let k = common::key("cow-str");
                mc.set(&k, Cow::Borrowed("cow"), 0).unwrap();
                (k, flags::TEXT, b"cow".to_vec())
            },
            {
                let k = common::key("cow-bytes");
                mc.set(&k, Cow::<[u8]>::Owned(vec![1, 2]), 0).unwrap();
                (k, flags::BYTES, vec![1, 2])
            },
            {
                let k = common::key("i128");
                mc.set(&k, -(1i128 << 100), 0).unwrap();
                assert_eq!(mc.get::<i128>(&k).unwrap(), Some(-(1i128 << 100)));
                (k, flags::LONG, (-(1i128 << 100)).to_string().into_bytes())
            },
            {
                let k = common::key("raw");
                mc.set(&k, (b"php".to_vec(), 0x100u32), 0).unwrap();
                assert_eq!(
                    mc.get::<(Vec<u8>, u32)>(&k).unwrap(),
                    Some((b"php".to_vec(), 0x100))
                );
                (k, 0x100, b"php".to_vec())
            },
        ];
        for (k, flags, data) in cases {
            assert_eq!(
                common::raw_get(&spec, &k),
                Some((flags, data)),
                "{protocol}: {k}"
            );
        }
    }
}

#[test]
fn values_decode_by_flags_and_round_trip() {
    let server = common::own_server();
    let spec = server.spec();
    let huge = format!("-{}", "9".repeat(50));
    let stored: Vec<(u32, &[u8], Value)> = vec![
        (0, b"bytes", Value::Bytes(b"bytes".to_vec())),
        (16, "tëxt".as_bytes(), Value::Text("tëxt".into())),
        (4, b"-12", Value::Int(-12)),
        (2, b"1", Value::Int(1)),
        (4, b"1180591620717411303424", Value::Int(1 << 70)),
        (4, huge.as_bytes(), Value::BigInt(huge.clone())),
        (
            1,
            b"\x80\x05K\x01.",
            Value::Pickle(b"\x80\x05K\x01.".to_vec()),
        ),
        (
            3,
            b"odd",
            Value::Other {
                flags: 3,
                data: b"odd".to_vec(),
            },
        ),
        (64, b"x", Value::Bytes(b"x".to_vec())),
    ];
    let mc = Client::new([&spec]).unwrap();
    for (flags, data, expected) in stored {
        let k = common::key("value");
        common::raw_set(&spec, &k, flags, data);
        let value = mc.get::<Value>(&k).unwrap().unwrap();
        assert_eq!(value, expected, "flags {flags}");
        // Written back, a value keeps its bytes (integers are normalised to flags 4).
        let again = common::key("again");
        mc.set(&again, &value, 0).unwrap();
        let (raw_flags, raw_data) = common::raw_get(&spec, &again).unwrap();
        assert_eq!(raw_data, data, "flags {flags}");
        let expected_flags = match flags {
            2 => 4,
            64 => 0,
            f => f,
        };
        assert_eq!(raw_flags, expected_flags);
    }
}

#[test]
fn decoding_into_the_wrong_type_names_the_key_and_flags() {
    let server = common::own_server();
    let spec = server.spec();
    let mc = Client::new([&spec]).unwrap();
    let k = common::key("pickle");
    common::raw_set(&spec, &k, 1, b"\x80\x05N.");
    match mc.get::<String>(&k) {
        Err(Error::Decode {
            key,
            flags: 1,
            source,
        }) => {
            assert_eq!(key, k.as_bytes());
            assert!(source.to_string().contains("pickle"), "{source}");
        }
        other => panic!("{other:?}"),
    }
    let k = common::key("bad-utf8");
    common::raw_set(&spec, &k, 16, b"\xff\xfe");
    assert!(matches!(
        mc.get::<Value>(&k),
        Err(Error::Decode { flags: 16, .. })
    ));
    assert!(matches!(mc.get::<bool>(&k), Err(Error::Decode { .. })));
    // The bytes themselves are still there for whoever wants them.
    assert_eq!(mc.get::<Vec<u8>>(&k).unwrap(), Some(b"\xff\xfe".to_vec()));
}

#[test]
fn client_compression_applies_from_min_len_when_smaller() {
    let server = common::own_server();
    let spec = server.spec();
    for (protocol, mc) in clients(&spec, Compression::new(100)) {
        let long = "compressible ".repeat(20);
        let k = common::key("long");
        mc.set(&k, &long, 0).unwrap();
        let (raw_flags, raw_data) = common::raw_get(&spec, &k).unwrap();
        assert_eq!(raw_flags, flags::TEXT | flags::ZLIB, "{protocol}");
        assert_eq!(
            raw_data,
            zlib(long.as_bytes()),
            "{protocol}: zlib format, level 6"
        );
        assert_eq!(
            mc.get::<String>(&k).unwrap(),
            Some(long.clone()),
            "{protocol}"
        );
        assert_eq!(
            mc.get::<Value>(&k).unwrap(),
            Some(Value::Text(long.clone()))
        );

        let short = common::key("short");
        mc.set(&short, &long[..99], 0).unwrap();
        assert_eq!(
            common::raw_get(&spec, &short).unwrap().0,
            flags::TEXT,
            "below min_len"
        );

        let random = common::key("incompressible");
        let noise: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        mc.set(&random, &noise, 0).unwrap();
        assert_eq!(
            common::raw_get(&spec, &random),
            Some((0, noise.clone())),
            "not smaller"
        );

        // add and replace compress too.
        let added = common::key("added");
        assert!(mc.add(&added, &long, 0).unwrap());
        assert!(mc.replace(&added, &long, 0).unwrap());
        assert_eq!(
            common::raw_get(&spec, &added).unwrap().0,
            flags::TEXT | flags::ZLIB
        );
    }
}

#[test]
fn per_value_compression_overrides_the_client() {
    let server = common::own_server();
    let spec = server.spec();
    let long = vec![b'z'; 5000];
    for (protocol, mc) in clients(&spec, Compression::new(10)) {
        let off = common::key("off");
        mc.set(&off, Compressed::new(&long, Compression::OFF), 0)
            .unwrap();
        assert_eq!(
            common::raw_get(&spec, &off).unwrap().0,
            flags::BYTES,
            "{protocol}"
        );
    }
    for (protocol, mc) in clients(&spec, Compression::OFF) {
        for level in [1, 6, 9] {
            let k = common::key("level");
            let c = Compression::with_level(1, level).unwrap();
            mc.set(&k, Compressed::new(&long, c), 0).unwrap();
            let (raw_flags, raw_data) = common::raw_get(&spec, &k).unwrap();
            assert_eq!(
                raw_flags,
                flags::BYTES | flags::ZLIB,
                "{protocol} level {level}"
            );
            assert!(
                raw_data.len() < 100,
                "{protocol}: 5000 equal bytes compress well"
            );
            assert_eq!(mc.get::<Vec<u8>>(&k).unwrap(), Some(long.clone()));
        }
    }
}

#[test]
fn a_value_over_the_item_limit_that_compresses_under_it_is_stored() {
    let server = common::own_server();
    let spec = server.spec();
    let big = vec![b'a'; 1024 * 1024 + 1];
    for (protocol, mc) in clients(&spec, Compression::new(1)) {
        let k = common::key("big");
        mc.set(&k, &big, 0).unwrap();
        assert_eq!(
            mc.get::<Vec<u8>>(&k).unwrap(),
            Some(big.clone()),
            "{protocol}"
        );
    }
    for (protocol, mc) in clients(&spec, Compression::OFF) {
        let err = mc.set(common::key("big"), &big, 0).unwrap_err();
        assert!(matches!(err, Error::TooBig { .. }), "{protocol}: {err:?}");
    }
}

#[test]
fn cas_append_and_prepend_never_compress() {
    let server = common::own_server();
    let spec = server.spec();
    let long = "x".repeat(500);
    for (protocol, mc) in clients(&spec, Compression::new(1)) {
        let k = common::key("plain");
        mc.set(&k, Compressed::new("start:", Compression::OFF), 0)
            .unwrap();
        assert!(mc.append(&k, &long).unwrap(), "{protocol}");
        assert!(mc.prepend(&k, &long).unwrap(), "{protocol}");
        let (raw_flags, raw_data) = common::raw_get(&spec, &k).unwrap();
        assert_eq!(
            raw_flags,
            flags::TEXT,
            "{protocol}: the client's compression skips them"
        );
        assert_eq!(raw_data.len(), 6 + 2 * 500);

        let (_, token) = mc.gets::<String>(&k).unwrap().unwrap();
        assert!(mc.cas(&k, &long, token, 0).unwrap());
        assert_eq!(
            common::raw_get(&spec, &k).unwrap(),
            (flags::TEXT, long.clone().into_bytes())
        );

        // Asking for compression there is an error, and nothing is written.
        let asked = Compressed::new(&long, Compression::new(1));
        assert!(matches!(
            mc.append(&k, asked),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            mc.prepend(&k, asked),
            Err(Error::InvalidArgument { .. })
        ));
        let (_, token) = mc.gets::<String>(&k).unwrap().unwrap();
        assert!(matches!(
            mc.cas(&k, asked, token, 0),
            Err(Error::InvalidArgument { .. })
        ));
        let packed = Encoded::owned(zlib(b"abc"), flags::TEXT | flags::ZLIB);
        assert!(matches!(
            mc.append(&k, &packed),
            Err(Error::InvalidArgument { .. })
        ));
        assert_eq!(
            mc.get::<String>(&k).unwrap(),
            Some(long.clone()),
            "{protocol}: untouched"
        );
    }
}

#[test]
fn appending_to_a_compressed_value_is_a_clear_error_not_silent_loss() {
    let server = common::own_server();
    let spec = server.spec();
    for (protocol, mc) in clients(&spec, Compression::new(1)) {
        let k = common::key("packed");
        mc.set(&k, "a".repeat(1000), 0).unwrap();
        assert_eq!(
            common::raw_get(&spec, &k).unwrap().0 & flags::ZLIB,
            flags::ZLIB
        );
        // Plain bytes appended to it (pylibmc would then return only the original text).
        assert!(mc.append(&k, "tail").unwrap());
        match mc.get::<String>(&k) {
            Err(Error::Decompress { key, reason }) => {
                assert_eq!(key, k.as_bytes());
                assert!(reason.contains("appended"), "{protocol}: {reason}");
            }
            other => panic!("{protocol}: {other:?}"),
        }
        mc.set(&k, "fine", 0).unwrap();
        assert_eq!(
            mc.get::<String>(&k).unwrap().as_deref(),
            Some("fine"),
            "{protocol}"
        );
    }
}

#[test]
fn corrupt_and_oversized_compressed_values_are_errors_and_the_client_carries_on() {
    let server = common::own_server();
    let spec = server.spec();
    let corrupt = common::key("corrupt");
    common::raw_set(
        &spec,
        &corrupt,
        flags::TEXT | flags::ZLIB,
        b"\x78\x9cnot really zlib",
    );
    let bomb = common::key("bomb");
    common::raw_set(
        &spec,
        &bomb,
        flags::BYTES | flags::ZLIB,
        &zlib(&vec![0u8; 10 << 20]),
    );
    let good = common::key("good");
    common::raw_set(&spec, &good, flags::TEXT, b"ok");

    for binary in [false, true] {
        let mc = Client::builder()
            .servers([&spec])
            .binary(binary)
            .max_inflated_len(1 << 20)
            .build()
            .unwrap();
        let err = mc.get::<String>(&corrupt).unwrap_err();
        assert!(
            matches!(&err, Error::Decompress { reason, .. } if reason.contains("corrupt")),
            "{err:?}"
        );
        let err = mc.get::<Vec<u8>>(&bomb).unwrap_err();
        assert!(
            matches!(&err, Error::Decompress { reason, .. } if reason.contains("limit")),
            "{err:?}"
        );
        assert!(matches!(
            mc.gets::<Value>(&bomb),
            Err(Error::Decompress { .. })
        ));
        assert_eq!(mc.get::<String>(&good).unwrap().as_deref(), Some("ok"));
    }
    // The default limit (64 MiB) lets the 10 MiB value through.
    let mc = Client::new([&spec]).unwrap();
    assert_eq!(
        mc.get::<Vec<u8>>(&bomb).unwrap().map(|v| v.len()),
        Some(10 << 20)
    );
}

#[cfg(feature = "serde")]
#[test]
fn json_values_round_trip_with_their_own_flag() {
    use libmemcached::Json;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct User {
        name: String,
        tags: Vec<String>,
    }

    let server = common::own_server();
    let spec = server.spec();
    for (protocol, mc) in clients(&spec, Compression::new(50)) {
        let user = User {
            name: "ada".into(),
            tags: vec!["x".repeat(100)],
        };
        let k = common::key("json");
        mc.set(&k, Json(&user), 0).unwrap();
        assert_eq!(
            common::raw_get(&spec, &k).unwrap().0,
            flags::JSON | flags::ZLIB,
            "{protocol}"
        );
        let Json(back): Json<User> = mc.get(&k).unwrap().unwrap();
        assert_eq!(back, user, "{protocol}");

        let text = common::key("json-text");
        mc.set(&text, r#"{"name":"bob","tags":[]}"#, 0).unwrap();
        assert_eq!(mc.get::<Json<User>>(&text).unwrap().unwrap().0.name, "bob");
        mc.set(&text, 5, 0).unwrap();
        assert!(matches!(
            mc.get::<Json<User>>(&text),
            Err(Error::Decode { flags: 4, .. })
        ));
    }
}
