//! PHP's value formats (`serialize()`, igbinary, JSON, msgpack, and the scalars) decoded from
//! any bytes: never a panic, and JSON read as PHP's `json_decode` reads it, checked against
//! serde_json's own reading of the same text.
//!
//! Not part of `lib.rs`: it needs the library's `php` feature, which the regression tests
//! include it with (`tests/fuzz_regressions.rs`).

use libmemcached::php::{PhpKey, PhpType, PhpValue};

/// The first byte picks the type, the rest is the stored value.
pub fn check(input: &[u8]) {
    let Some((&pick, data)) = input.split_first() else {
        return;
    };
    let Some(kind) = PhpType::from_number(u32::from(pick % 8)) else {
        return;
    };
    let decoded = PhpValue::decode(kind, data);
    if kind != PhpType::Json {
        return;
    }
    // Deeper than serde_json's own limit (128), either may refuse; below it they agree.
    let Ok(expected) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match decoded {
        Ok(value) => assert!(
            same(&value, &expected),
            "{:?}: read as {value:?}, serde_json reads {expected}",
            String::from_utf8_lossy(data)
        ),
        // PHP refuses property names that start with NUL; nothing else serde_json reads.
        Err(error) => assert!(
            has_nul_name(&expected),
            "{:?}: refused ({error}), serde_json reads {expected}",
            String::from_utf8_lossy(data)
        ),
    }
}

/// Whether PHP's reading of a JSON text is serde_json's: the same tree, numbers equal as
/// doubles (PHP reads `-0` as the int 0 and integers past `i64` as doubles), an object's
/// properties by name with the last value of a repeated one.
fn same(php: &PhpValue, json: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (php, json) {
        (PhpValue::Null, J::Null) => true,
        (PhpValue::Bool(a), J::Bool(b)) => a == b,
        (PhpValue::Int(a), J::Number(n)) => n.as_f64() == Some(*a as f64),
        (PhpValue::Float(a), J::Number(n)) => n.as_f64() == Some(*a),
        (PhpValue::String(a), J::String(b)) => a == b.as_bytes(),
        (PhpValue::Array(entries), J::Array(items)) => {
            entries.len() == items.len()
                && entries
                    .iter()
                    .zip(items)
                    .enumerate()
                    .all(|(i, ((k, v), item))| *k == PhpKey::Int(i as i64) && same(v, item))
        }
        (PhpValue::Object { properties, .. }, J::Object(map)) => {
            properties.len() == map.len()
                && properties.iter().all(|(name, value)| {
                    std::str::from_utf8(name)
                        .ok()
                        .and_then(|name| map.get(name))
                        .is_some_and(|item| same(value, item))
                })
        }
        _ => false,
    }
}

fn has_nul_name(json: &serde_json::Value) -> bool {
    match json {
        serde_json::Value::Array(items) => items.iter().any(has_nul_name),
        serde_json::Value::Object(map) => map
            .iter()
            .any(|(name, value)| name.starts_with('\0') || has_nul_name(value)),
        _ => false,
    }
}
