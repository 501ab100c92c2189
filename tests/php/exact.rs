//! PHP values exactly as PHP reads them: doubles in JSON bit for bit, JSON objects in PHP's
//! property order, JSON's `-0`, PHP's type kept through `Value`, and objects the crate cannot
//! rebuild as PHP would.

use libmemcached::Json;
use libmemcached::Value;
use libmemcached::php::{PhpKey, PhpType, PhpValue};
use serde_json::{Value as JsonValue, json};

use super::common;
use super::harness::*;

/// PHP statements run by `tests/php/peer.php` with the job's client as `$m`.
fn eval(php: &str) -> JsonValue {
    json!({ "op": "eval", "php": php })
}

/// Runs `php` in one PHP job on `specs`, and returns what it returns.
fn php_eval(specs: &[String], php: &str) -> JsonValue {
    let results = php_ok(&[job(specs, json!({}), vec![eval(php)])]);
    results[0][0]["result"].clone()
}

/// A number as PHP read it: a float's bits (`bin2hex(pack('E', $x))`), or an int.
fn php_number(read: &JsonValue) -> PhpValue {
    match read.as_str() {
        Some(hex) => PhpValue::Float(f64::from_bits(u64::from_str_radix(hex, 16).unwrap())),
        None => PhpValue::Int(read.as_i64().unwrap()),
    }
}

/// Whether two numbers are the same to PHP: the same type, and floats with the same bits.
fn same_number(a: &PhpValue, b: &PhpValue) -> bool {
    match (a, b) {
        (PhpValue::Float(x), PhpValue::Float(y)) => x.to_bits() == y.to_bits(),
        (PhpValue::Int(i), PhpValue::Int(j)) => i == j,
        _ => false,
    }
}

/// 1000 doubles PHP stores with its JSON serializer (every exponent, subnormals, the extremes)
/// read here with the bits PHP reads them with.
#[test]
fn json_doubles_read_bit_for_bit() {
    let server = common::own_server();
    let specs = [server.spec()];
    let php_read = php_eval(
        &specs,
        r#"
        mt_srand(24);
        $xs = [PHP_FLOAT_MAX, -PHP_FLOAT_MAX, PHP_FLOAT_MIN, -PHP_FLOAT_MIN, 5e-324, -5e-324,
               2.2250738585072009e-308, PHP_FLOAT_EPSILON, 0.1, 1e23, 9007199254740993.0, 0.0];
        while (count($xs) < 1000) {
            if (count($xs) % 2) {
                // Any bit pattern but the infinities and NaNs, which JSON cannot hold.
                $x = unpack('E', pack('NN', mt_rand(0, 0xffffffff), mt_rand(0, 0xffffffff)))[1];
                if (is_finite($x)) {
                    $xs[] = $x;
                }
            } else {
                $xs[] = mt_rand() / mt_getrandmax() * 10 ** mt_rand(-20, 20);
            }
        }
        $m->setOption(Memcached::OPT_SERIALIZER, Memcached::SERIALIZER_JSON);
        if (!$m->set('doubles', $xs)) {
            throw new Exception($m->getResultMessage());
        }
        // PHP writes integral doubles below 1e15 as JSON ints ("3" for 3.0), which it reads as
        // ints: each value as PHP reads it, a float's bits or an int.
        $read = $m->get('doubles');
        $bits = fn($x) => bin2hex(pack('E', $x));
        if (array_map($bits, $read) !== array_map($bits, $xs)) {
            throw new Exception('PHP reads other numbers than it wrote');
        }
        return array_map(fn($x) => is_float($x) ? $bits($x) : $x, $read);
        "#,
    );
    let php_read: Vec<PhpValue> = php_read
        .as_array()
        .unwrap()
        .iter()
        .map(php_number)
        .collect();
    assert_eq!(php_read.len(), 1000);
    let floats = php_read
        .iter()
        .filter(|x| matches!(x, PhpValue::Float(_)))
        .count();
    assert!(floats > 900, "{floats} of 1000 are floats to PHP");
    assert_eq!(
        common::raw_get(&specs[0], "doubles").unwrap().0 & 0xf,
        6,
        "JSON"
    );

    let mc = php_client(&specs);
    let PhpValue::Array(entries) = mc.get::<PhpValue>("doubles").unwrap().unwrap() else {
        panic!("an array");
    };
    assert_eq!(entries.len(), 1000);
    let off = (0..1000)
        .filter(|&i| !same_number(&entries[i].1, &php_read[i]))
        .count();
    eprintln!("PhpValue: {off} of 1000 numbers differ from PHP's");
    assert_eq!(off, 0, "numbers that differ from PHP's, of 1000");

    // `Json<T>` reads the same bits.
    let Json(xs): Json<Vec<f64>> = mc.get("doubles").unwrap().unwrap();
    let off = (0..1000)
        .filter(|&i| match php_read[i] {
            PhpValue::Float(x) => xs[i].to_bits() != x.to_bits(),
            PhpValue::Int(n) => xs[i] != n as f64,
            _ => unreachable!(),
        })
        .count();
    eprintln!("Json<Vec<f64>>: {off} of 1000 doubles differ from PHP's");
    assert_eq!(off, 0, "doubles that differ through Json<T>, of 1000");
}

/// A value as `typed()` in `tests/php/peer.php` describes it, exact to the bit.
fn typed(value: &PhpValue) -> JsonValue {
    match value {
        PhpValue::Null => json!(["null"]),
        PhpValue::Bool(b) => json!(["bool", b]),
        PhpValue::Int(i) => json!(["int", i]),
        PhpValue::Float(x) => json!(["float", hex(&x.to_bits().to_be_bytes())]),
        PhpValue::String(s) => json!(["string", hex(s)]),
        PhpValue::Array(entries) => {
            let entries: Vec<JsonValue> = entries
                .iter()
                .map(|(k, v)| {
                    let k = match k {
                        PhpKey::Int(i) => json!(["i", i]),
                        PhpKey::String(s) => json!(["s", hex(s)]),
                    };
                    json!([k, typed(v)])
                })
                .collect();
            json!(["array", entries])
        }
        PhpValue::Object { class, properties } => {
            let entries: Vec<JsonValue> = properties
                .iter()
                .map(|(name, v)| json!([hex(name), typed(v)]))
                .collect();
            json!(["object", String::from_utf8_lossy(class), entries])
        }
        other => panic!("{other:?} has no typed form"),
    }
}

/// PHP's JSON serializer: properties in PHP's order (not sorted), and `-0` (which PHP writes for
/// -0.0) as the int 0 that PHP reads, while other numbers stay floats.
#[test]
fn json_values_read_as_php_reads_them() {
    let server = common::own_server();
    let specs = [server.spec()];
    let php_read = php_eval(
        &specs,
        r#"
        $m->setOption(Memcached::OPT_SERIALIZER, Memcached::SERIALIZER_JSON);
        $value = [
            'b' => 1, 'a' => (object)['z' => 1, 'b' => 2, 'y' => 3, 'a' => 4],
            'zeros' => [-0.0, 0.0, 1.5, -1.5, '-0'], 'c' => -0.0, '0' => 'first int key',
        ];
        if (!$m->set('json', $value)) {
            throw new Exception($m->getResultMessage());
        }
        return ['text' => bin2hex(json_encode($value)), 'read' => typed($m->get('json'))];
        "#,
    );
    assert_eq!(
        String::from_utf8(unhex(php_read["text"].as_str().unwrap())).unwrap(),
        r#"{"b":1,"a":{"z":1,"b":2,"y":3,"a":4},"zeros":[-0,0,1.5,-1.5,"-0"],"c":-0,"0":"first int key"}"#,
        "the JSON text PHP writes"
    );
    let php_read = &php_read["read"];
    // PHP's json_decode gives int(0) for the -0 it wrote for -0.0.
    assert_eq!(php_read[2][3][1], json!(["int", 0]), "{php_read}");

    let mc = php_client(&specs);
    let read = mc.get::<PhpValue>("json").unwrap().unwrap();
    assert_eq!(typed(&read), *php_read);
    let PhpValue::Object { properties, .. } = read.get("a").unwrap() else {
        panic!("{read:?}");
    };
    let names: Vec<&[u8]> = properties.iter().map(|(n, _)| &n[..]).collect();
    assert_eq!(names, [b"z", b"b", b"y", b"a"]);
    assert_eq!(read.get("c"), Some(&PhpValue::Int(0)));
}

/// An array PHP stores with each of its serializers and user flags, read here as `Value` and
/// written back under another key: PHP reads the same array from both keys, stored with the same
/// type and user flags.
#[test]
fn values_read_as_value_and_written_back_keep_their_php_type() {
    let server = common::own_server();
    let specs = [server.spec()];
    let serializers = [
        ("SERIALIZER_PHP", PhpType::Serialized),
        ("SERIALIZER_IGBINARY", PhpType::Igbinary),
        ("SERIALIZER_JSON", PhpType::Json),
        ("SERIALIZER_MSGPACK", PhpType::Msgpack),
    ];
    const ARRAY: &str = "['b' => [1, 2.5, null, true], 'a' => 'é', 'n' => -7]";
    let code: String = serializers
        .iter()
        .map(|(serializer, _)| {
            format!(
                "$m->setOption(Memcached::OPT_SERIALIZER, Memcached::{serializer});
                 if (!$m->set('{serializer}', {ARRAY})) {{
                     throw new Exception($m->getResultMessage());
                 }}\n"
            )
        })
        .collect();
    php_eval(
        &specs,
        &format!("$m->setOption(Memcached::OPT_USER_FLAGS, 1234);\n{code} return true;"),
    );

    let mc = php_client(&specs);
    for (serializer, kind) in serializers {
        let value = mc.get::<Value>(serializer).unwrap().unwrap();
        assert!(
            matches!(&value, Value::Php { kind: k, user_flags: 1234, .. } if *k == kind),
            "{serializer}: {value:?}"
        );
        mc.set(format!("{serializer}-back"), &value, 0).unwrap();
        let stored = common::raw_get(&specs[0], serializer).unwrap();
        let back = common::raw_get(&specs[0], &format!("{serializer}-back")).unwrap();
        assert_eq!(
            back, stored,
            "{serializer}: flags and bytes as PHP stored them"
        );
    }
    let keys: Vec<String> = serializers.iter().map(|(s, _)| format!("'{s}'")).collect();
    let read = php_eval(
        &specs,
        &format!(
            "$out = [];
             foreach ([{}] as $key) {{
                 $out[$key] = [typed($m->get($key)), typed($m->get(\"$key-back\")),
                     $m->get(\"$key-back\", null, Memcached::GET_EXTENDED)['flags']];
             }}
             return $out;",
            keys.join(", ")
        ),
    );
    for (serializer, _) in serializers {
        let [original, back] = [&read[serializer][0], &read[serializer][1]];
        // JSON's array reads back as a stdClass object (SERIALIZER_JSON), the others' as arrays.
        assert!(
            original[0] == "array" || original[0] == "object",
            "{serializer}: PHP reads {original}"
        );
        assert_eq!(
            back, original,
            "{serializer}: PHP reads the value written back"
        );
        assert_eq!(read[serializer][2], 1234, "{serializer}: PHP's user flags");
    }
}

/// Classes whose objects serialize themselves, declared in the PHP process (`Serializable` is
/// deprecated since PHP 8.1: the deprecation is silenced).
const CUSTOM_CLASSES: &str = r#"
    error_reporting(E_ALL & ~E_DEPRECATED);
    eval('
        class Pair {
            public $a; public $b;
            function __construct($a, $b) { $this->a = $a; $this->b = $b; }
            function __serialize(): array { return [$this->a, $this->b]; }
            function __unserialize(array $d): void { [$this->a, $this->b] = $d; }
        }
        class Tenfold {
            public $x = 1;
            function __serialize(): array { return ["x" => $this->x * 10]; }
            function __unserialize(array $d): void { $this->x = $d["x"] / 10; }
        }
        class Legacy implements Serializable {
            public $v;
            function __construct($v) { $this->v = $v; }
            function serialize() { return "v=" . $this->v; }
            function unserialize($s) { $this->v = substr($s, 2); }
        }
    ');
"#;

/// Objects with `__serialize()` and `Serializable` ones, as PHP's `serialize()` and msgpack write
/// them: what the class's own code wrote, marked as such, where the bytes tell.
#[test]
fn objects_that_serialize_themselves_say_so() {
    let server = common::own_server();
    let specs = [server.spec()];
    let written = php_eval(
        &specs,
        &format!(
            r#"{CUSTOM_CLASSES}
            $values = [
                'pair' => new Pair(1, 'two'),
                'tenfold' => new Tenfold(),
                'legacy' => new Legacy('old'),
                'nested' => ['k' => [new Legacy('deep')]],
            ];
            foreach (['SERIALIZER_PHP', 'SERIALIZER_MSGPACK'] as $serializer) {{
                $m->setOption(Memcached::OPT_SERIALIZER, constant("Memcached::$serializer"));
                foreach ($values as $key => $value) {{
                    if (!$m->set("$key-$serializer", $value)) {{
                        throw new Exception($m->getResultMessage());
                    }}
                    // php-msgpack hands unserialize() the payload and a NUL byte ("v=old\0"):
                    // Serializable objects do not read back equal there.
                    $serializable = $key == 'legacy' || $key == 'nested';
                    if ($m->get("$key-$serializer") != $value
                        && !($serializable && $serializer == 'SERIALIZER_MSGPACK')) {{
                        throw new Exception("PHP reads another $key with $serializer");
                    }}
                }}
            }}
            return ['pair' => serialize($values['pair']), 'tenfold' => serialize($values['tenfold'])];
            "#
        ),
    );
    // serialize() writes both kinds as `O:`; only the int keys tell the first.
    assert_eq!(written["pair"], r#"O:4:"Pair":2:{i:0;i:1;i:1;s:3:"two";}"#);
    assert_eq!(written["tenfold"], r#"O:7:"Tenfold":1:{s:1:"x";i:10;}"#);

    let mc = php_client(&specs);
    let custom = |class: &str, data: PhpValue| PhpValue::Custom {
        class: class.as_bytes().to_vec(),
        data: Box::new(data),
    };
    let string = |s: &str| PhpValue::String(s.as_bytes().to_vec());
    let pair = custom(
        "Pair",
        PhpValue::Array(vec![
            (PhpKey::Int(0), PhpValue::Int(1)),
            (PhpKey::Int(1), string("two")),
        ]),
    );
    let tenfold_data = vec![(b"x".to_vec(), PhpValue::Int(10))];
    let legacy = |v: &str| custom("Legacy", string(&format!("v={v}")));
    let nested = PhpValue::Array(vec![(
        PhpKey::String(b"k".to_vec()),
        PhpValue::Array(vec![(PhpKey::Int(0), legacy("deep"))]),
    )]);
    for serializer in ["SERIALIZER_PHP", "SERIALIZER_MSGPACK"] {
        let read = |key: &str| {
            mc.get::<PhpValue>(format!("{key}-{serializer}"))
                .unwrap()
                .unwrap()
        };
        assert_eq!(read("pair"), pair, "{serializer}");
        assert_eq!(read("legacy"), legacy("old"), "{serializer}");
        assert_eq!(read("nested"), nested, "{serializer}");
        let tenfold = match serializer {
            // msgpack marks __serialize() data.
            "SERIALIZER_MSGPACK" => custom(
                "Tenfold",
                PhpValue::Array(vec![(PhpKey::String(b"x".to_vec()), PhpValue::Int(10))]),
            ),
            // serialize() does not: the object's "properties" are what __serialize() returned
            // (x is 1 in PHP once __unserialize() ran).
            _ => PhpValue::Object {
                class: b"Tenfold".to_vec(),
                properties: tenfold_data.clone(),
            },
        };
        assert_eq!(read("tenfold"), tenfold, "{serializer}");
    }
}
