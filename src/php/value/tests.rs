use super::*;

fn s(text: &str) -> PhpValue {
    PhpValue::String(text.as_bytes().to_vec())
}

fn k(text: &str) -> PhpKey {
    PhpKey::String(text.as_bytes().to_vec())
}

/// `class Pt { public $x = 1; protected $y = 2; private $z = 3; }`, as PHP's object.
fn point() -> PhpValue {
    PhpValue::Object {
        class: b"Pt".to_vec(),
        properties: vec![
            (b"x".to_vec(), PhpValue::Int(1)),
            (b"\0*\0y".to_vec(), PhpValue::Int(2)),
            (b"\0Pt\0z".to_vec(), PhpValue::Int(3)),
        ],
    }
}

fn assert_stays_opaque(kind: PhpType, data: &[u8]) {
    let opaque = PhpValue::Opaque {
        kind,
        data: data.to_vec(),
    };
    assert_eq!(PhpValue::decode(kind, data).unwrap(), opaque);
}

#[test]
fn reads_php_serialize_output() {
    // What PHP 8.2's serialize() wrote for each.
    let mixed = PhpValue::decode(
        PhpType::Serialized,
        b"a:3:{i:0;i:1;s:1:\"a\";d:2.5;s:1:\"x\";a:2:{i:0;b:1;i:1;N;}}",
    )
    .unwrap();
    let inner = PhpValue::Array(vec![
        (PhpKey::Int(0), PhpValue::Bool(true)),
        (PhpKey::Int(1), PhpValue::Null),
    ]);
    assert_eq!(
        mixed,
        PhpValue::Array(vec![
            (PhpKey::Int(0), PhpValue::Int(1)),
            (k("a"), PhpValue::Float(2.5)),
            (k("x"), inner),
        ])
    );
    let object = b"O:2:\"Pt\":3:{s:1:\"x\";i:1;s:4:\"\0*\0y\";i:2;s:5:\"\0Pt\0z\";i:3;}";
    assert_eq!(
        PhpValue::decode(PhpType::Serialized, object).unwrap(),
        point()
    );
    assert_eq!(
        PhpValue::decode(PhpType::Serialized, b"N;").unwrap(),
        PhpValue::Null
    );
    let utf8 = PhpValue::decode(PhpType::Serialized, "s:2:\"é\";".as_bytes()).unwrap();
    assert_eq!(utf8, s("é"));
}

#[test]
fn serialize_references_stay_opaque_and_garbage_is_refused() {
    // $a = [1]; serialize([&$a, &$a])
    assert_stays_opaque(PhpType::Serialized, b"a:2:{i:0;a:1:{i:0;i:1;}i:1;R:2;}");
    for bad in [
        &b"a:2:{i:0;i:1;}"[..],
        b"i:1;i:2;",
        b"s:5:\"ab\";",
        b"",
        b"x",
    ] {
        assert!(
            PhpValue::decode(PhpType::Serialized, bad).is_err(),
            "{bad:?}"
        );
    }
    let deep = "a:1:{i:0;".repeat(600) + "N;" + &"}".repeat(600);
    let err = PhpValue::decode(PhpType::Serialized, deep.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("deeper"), "{err}");
}

#[test]
fn reads_php_msgpack_output() {
    // What PHP's msgpack_serialize() wrote (msgpack.php_only on, as Debian ships it).
    let list = PhpValue::decode(PhpType::Msgpack, b"\x93\x01\x02\x03").unwrap();
    let ints = |n: &[i64]| {
        (0..)
            .zip(n)
            .map(|(i, &v)| (PhpKey::Int(i), PhpValue::Int(v)))
            .collect()
    };
    assert_eq!(list, PhpValue::Array(ints(&[1, 2, 3])));
    let map = PhpValue::decode(PhpType::Msgpack, b"\x82\xa1a\x01\x05\xa1b").unwrap();
    assert_eq!(
        map,
        PhpValue::Array(vec![(k("a"), PhpValue::Int(1)), (PhpKey::Int(5), s("b"))])
    );
    let object = b"\x84\xc0\xa2Pt\xa1x\x01\xa4\0*\0y\x02\xa5\0Pt\0z\x03";
    assert_eq!(PhpValue::decode(PhpType::Msgpack, object).unwrap(), point());
    let scalars = b"\x94\xcb\x3f\xf8\0\0\0\0\0\0\xc3\xc0\xa2\xc3\xa9";
    assert_eq!(
        PhpValue::decode(PhpType::Msgpack, scalars).unwrap(),
        PhpValue::Array(vec![
            (PhpKey::Int(0), PhpValue::Float(1.5)),
            (PhpKey::Int(1), PhpValue::Bool(true)),
            (PhpKey::Int(2), PhpValue::Null),
            (PhpKey::Int(3), s("é")),
        ])
    );
    assert!(
        PhpValue::decode(PhpType::Msgpack, b"\x93\x01").is_err(),
        "truncated"
    );
    assert!(
        PhpValue::decode(PhpType::Msgpack, b"\x01\x02").is_err(),
        "trailing"
    );
    let ext = b"\xd4\x01\x00";
    assert!(matches!(
        PhpValue::decode(PhpType::Msgpack, ext).unwrap(),
        PhpValue::Opaque {
            kind: PhpType::Msgpack,
            ..
        }
    ));
}

#[test]
fn reads_json_scalars_and_igbinary() {
    let json = PhpValue::decode(PhpType::Json, br#"{"0":1,"a":[2.5,null]}"#).unwrap();
    assert_eq!(json.get("0"), Some(&PhpValue::Int(1)));
    let PhpValue::Object { class, .. } = &json else {
        panic!("{json:?}")
    };
    assert_eq!(class, b"stdClass");
    let igbinary = b"\0\0\0\x02\x14\x03\x06\0\x06\x01\x06\x01\x06\x02\x06\x02\x06\x03";
    assert_stays_opaque(PhpType::Igbinary, igbinary);
    assert_eq!(
        PhpValue::decode(PhpType::Double, b".1").unwrap(),
        PhpValue::Float(0.1)
    );
    assert_eq!(
        PhpValue::decode(PhpType::Bool, b"").unwrap(),
        PhpValue::Bool(false)
    );
    assert_eq!(
        PhpValue::decode(PhpType::Long, b"-7").unwrap(),
        PhpValue::Int(-7)
    );
    assert!(PhpValue::decode(PhpType::Long, b"7x").is_err());
}

#[test]
fn reads_the_crate_flags() {
    assert_eq!(PhpValue::from_value(b"hi", flags::TEXT).unwrap(), s("hi"));
    assert_eq!(
        PhpValue::from_value(b"42", flags::LONG).unwrap(),
        PhpValue::Int(42)
    );
    let pickle = crate::value::float_pickle(2.5);
    assert_eq!(
        PhpValue::from_value(&pickle, flags::PICKLE).unwrap(),
        PhpValue::Float(2.5)
    );
    assert!(PhpValue::from_value(b"\x80\x04N.", flags::PICKLE).is_err());
    let bool_flags = PhpType::Bool.crate_flags() | 3 << 16;
    assert_eq!(
        PhpValue::from_value(b"1", bool_flags).unwrap(),
        PhpValue::Bool(true)
    );
    assert_eq!(
        PhpValue::from_value(b"[1]", flags::JSON).unwrap().get("x"),
        None
    );
}

fn json(text: &str) -> PhpValue {
    PhpValue::decode(PhpType::Json, text.as_bytes()).unwrap()
}

fn std_class(properties: Vec<(&str, PhpValue)>) -> PhpValue {
    PhpValue::Object {
        class: b"stdClass".to_vec(),
        properties: properties
            .into_iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), value))
            .collect(),
    }
}

#[test]
fn reads_json_as_json_decode_does() {
    // Properties in the order written; a repeated one keeps its place and takes the last value.
    assert_eq!(
        json(r#"{"b":1,"a":2,"c":3,"a":4}"#),
        std_class(vec![
            ("b", PhpValue::Int(1)),
            ("a", PhpValue::Int(4)),
            ("c", PhpValue::Int(3)),
        ])
    );
    assert_eq!(json(r#"{"":1}"#), std_class(vec![("", PhpValue::Int(1))]));
    assert!(PhpValue::decode(PhpType::Json, br#"{"\u0000a":1}"#).is_err());
    // `-0` is an int, however the zero is spelled otherwise a float.
    assert_eq!(json("-0"), PhpValue::Int(0));
    let zeros = json(r#"[-0, -0.0, -0e0, 0, -1e-400, "-0", {"-0": -0}, -0E1, [-0]]"#);
    let PhpValue::Array(entries) = zeros else {
        panic!("{zeros:?}")
    };
    let got: Vec<String> = entries.iter().map(|(_, v)| format!("{v:?}")).collect();
    assert_eq!(
        got,
        [
            "Int(0)",
            "Float(-0.0)",
            "Float(-0.0)",
            "Int(0)",
            "Float(-0.0)",
            "String([45, 48])",
            "Object { class: [115, 116, 100, 67, 108, 97, 115, 115], properties: [([45, 48], Int(0))] }",
            "Float(-0.0)",
            "Array([(Int(0), Int(0))])",
        ]
    );
    // Ints past PHP's are floats; escapes in strings do not disturb the count of numbers.
    assert_eq!(
        json(r#"["\"-0\\", 9223372036854775808, -9223372036854775809, -0]"#),
        PhpValue::Array(vec![
            (PhpKey::Int(0), s("\"-0\\")),
            (PhpKey::Int(1), PhpValue::Float(9223372036854775808.0)),
            (PhpKey::Int(2), PhpValue::Float(-9223372036854775808.0)),
            (PhpKey::Int(3), PhpValue::Int(0)),
        ])
    );
    assert!(PhpValue::decode(PhpType::Json, b"[1] x").is_err());
    assert!(PhpValue::decode(PhpType::Json, b"[1,]").is_err());
}

#[test]
fn objects_that_serialize_themselves_are_custom() {
    let custom = |class: &str, data: PhpValue| PhpValue::Custom {
        class: class.as_bytes().to_vec(),
        data: Box::new(data),
    };
    // What PHP 8.2's serialize() and msgpack_pack() wrote for a `Serializable` object.
    let legacy = custom("Legacy", s("v=old"));
    let c = br#"a:1:{i:0;C:6:"Legacy":5:{v=old}}"#;
    assert_eq!(
        PhpValue::decode(PhpType::Serialized, c).unwrap(),
        PhpValue::Array(vec![(PhpKey::Int(0), legacy.clone())])
    );
    let msgpack = b"\x82\xc0\x03\xa6Legacy\xa5v=old";
    assert_eq!(PhpValue::decode(PhpType::Msgpack, msgpack).unwrap(), legacy);
    // __serialize() returning `['a' => 1, 5 => 'five']`: serialize()'s `O:` with an int key,
    // and msgpack's second nil key.
    let data = PhpValue::Array(vec![
        (k("a"), PhpValue::Int(1)),
        (PhpKey::Int(5), s("five")),
    ]);
    let o = br#"O:1:"B":2:{s:1:"a";i:1;i:5;s:4:"five";}"#;
    assert_eq!(
        PhpValue::decode(PhpType::Serialized, o).unwrap(),
        custom("B", data.clone())
    );
    let msgpack = b"\x82\xc0\xa1B\xc0\x82\xa1a\x01\x05\xa4five";
    assert_eq!(
        PhpValue::decode(PhpType::Msgpack, msgpack).unwrap(),
        custom("B", data)
    );
    // Malformed marks are refused, not taken for objects.
    assert!(PhpValue::decode(PhpType::Msgpack, b"\x82\xc0\x03\xa6Legacy\x01").is_err());
    assert!(PhpValue::decode(PhpType::Msgpack, b"\x82\xc0\xa1B\xc0\x01").is_err());
}
