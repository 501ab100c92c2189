//! JSON as php-memcached's JSON serializer reads it: PHP's `json_decode`, objects as `stdClass`.
//!
//! serde_json parses; a visitor builds the tree as PHP would: properties in the order written (a
//! repeated name keeps its first place and takes the last value), ints past `i64` as floats, and
//! `-0` as the int 0. serde_json hands `-0` over as the float -0.0, as it does `-0.0`, so the
//! number tokens spelled `-0` are found in the text first and counted off as the visitor meets
//! the numbers, which serde_json visits in the order they are written.

use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};

use crate::error::BoxError;

use super::{MAX_DEPTH, PhpKey, PhpValue};

/// Decodes a JSON text as PHP's `json_decode` does (objects as `stdClass`).
pub(super) fn decode(data: &[u8]) -> Result<PhpValue, BoxError> {
    let mut numbers = Numbers {
        seen: 0,
        int_zeros: int_zeros(data),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(data);
    let value = Node {
        numbers: &mut numbers,
        depth: MAX_DEPTH,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// The places (0 for the first number token, 1 for the second...) of the number tokens spelled
/// `-0`, in order. Outside strings, only numbers hold `-` and digits.
fn int_zeros(data: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut place = 0;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'"' => {
                i += 1;
                while i < data.len() && data[i] != b'"' {
                    i += if data[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < data.len()
                    && matches!(data[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                if &data[start..i] == b"-0" {
                    found.push(place);
                }
                place += 1;
            }
            _ => i += 1,
        }
    }
    found
}

/// The numbers met so far, and where the `-0`s are.
struct Numbers {
    seen: usize,
    int_zeros: Vec<usize>,
}

impl Numbers {
    fn next(&mut self) -> usize {
        self.seen += 1;
        self.seen - 1
    }
}

/// One JSON value, `depth` levels of arrays and objects still allowed.
struct Node<'n> {
    numbers: &'n mut Numbers,
    depth: usize,
}

impl Node<'_> {
    fn child(&mut self) -> Node<'_> {
        Node {
            numbers: self.numbers,
            depth: self.depth - 1,
        }
    }

    fn enter<E: serde::de::Error>(&self) -> Result<(), E> {
        match self.depth {
            0 => Err(E::custom(format_args!("nested deeper than {MAX_DEPTH}"))),
            _ => Ok(()),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = PhpValue;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<PhpValue, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = PhpValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<PhpValue, E> {
        Ok(PhpValue::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<PhpValue, E> {
        Ok(PhpValue::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<PhpValue, E> {
        self.numbers.next();
        Ok(PhpValue::Int(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<PhpValue, E> {
        self.numbers.next();
        // PHP reads an int past its own as a float.
        Ok(i64::try_from(u).map_or(PhpValue::Float(u as f64), PhpValue::Int))
    }

    fn visit_f64<E>(self, x: f64) -> Result<PhpValue, E> {
        let place = self.numbers.next();
        if x == 0.0 && x.is_sign_negative() && self.numbers.int_zeros.binary_search(&place).is_ok()
        {
            return Ok(PhpValue::Int(0));
        }
        Ok(PhpValue::Float(x))
    }

    fn visit_str<E>(self, s: &str) -> Result<PhpValue, E> {
        Ok(PhpValue::String(s.as_bytes().to_vec()))
    }

    fn visit_string<E>(self, s: String) -> Result<PhpValue, E> {
        Ok(PhpValue::String(s.into_bytes()))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<PhpValue, A::Error> {
        self.enter()?;
        let mut entries = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child())? {
            entries.push((PhpKey::Int(entries.len() as i64), item));
        }
        Ok(PhpValue::Array(entries))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<PhpValue, A::Error> {
        self.enter()?;
        let mut properties: Vec<(Vec<u8>, PhpValue)> = Vec::new();
        let mut places: HashMap<Vec<u8>, usize> = HashMap::new();
        while let Some(name) = map.next_key::<String>()? {
            if name.starts_with('\0') {
                // PHP's "The decoded property name is invalid".
                return Err(A::Error::custom(
                    "a property name that starts with a NUL byte, which PHP refuses",
                ));
            }
            let value = map.next_value_seed(self.child())?;
            let name = name.into_bytes();
            match places.get(&name) {
                Some(&place) => properties[place].1 = value,
                None => {
                    places.insert(name.clone(), properties.len());
                    properties.push((name, value));
                }
            }
        }
        Ok(PhpValue::Object {
            class: b"stdClass".to_vec(),
            properties,
        })
    }
}
