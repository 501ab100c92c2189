//! [`PhpValue`]: PHP values decoded into a tree (feature `php`).
//!
//! PHP's `serialize()` format is parsed with `phpserz`, msgpack with `rmpv`, JSON with
//! `serde_json` into a tree built as PHP's `json_decode` builds it (`json.rs`). igbinary has no
//! well-kept Rust decoder: its values stay opaque ([`PhpValue::Opaque`]), as do values that use
//! references or msgpack extensions, which a tree cannot hold. Objects that serialize themselves
//! are [`PhpValue::Custom`].

use phpserz::{PhpParser, PhpToken};

use crate::error::BoxError;
use crate::value::{FromValue, flags, float_from_pickle};

use super::{PhpType, double};

/// How deep arrays and objects may nest: PHP's own JSON decoder stops at 512.
const MAX_DEPTH: usize = 512;

/// A PHP value: what `Memcached::get` returns in PHP.
///
/// It reads any value a client in PHP's format reads: strings, ints, floats, bools, and arrays
/// and objects stored by any of php-memcached's serializers. In pylibmc's format it reads bytes,
/// text, integers and pickled floats.
///
/// ```
/// use libmemcached::FromValue;
/// use libmemcached::php::{PhpKey, PhpType, PhpValue};
///
/// let array = PhpValue::decode(PhpType::Serialized, br#"a:2:{i:0;d:1.5;s:1:"k";b:1;}"#)?;
/// assert_eq!(array.get("k"), Some(&PhpValue::Bool(true)));
/// assert_eq!(
///     array,
///     PhpValue::Array(vec![
///         (PhpKey::Int(0), PhpValue::Float(1.5)),
///         (PhpKey::String(b"k".to_vec()), PhpValue::Bool(true)),
///     ])
/// );
/// # Ok::<(), libmemcached::BoxError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PhpValue {
    /// `null`.
    Null,
    /// A bool.
    Bool(bool),
    /// An int.
    Int(i64),
    /// A float. In JSON, a number with a fraction or an exponent, or an int past `i64`, as PHP
    /// reads them; `-0` (which PHP writes for -0.0) is the int 0 to PHP, and here.
    Float(f64),
    /// A string: bytes, as PHP's strings are.
    String(Vec<u8>),
    /// An array, its entries in order (lists have keys 0, 1, ...).
    Array(Vec<(PhpKey, PhpValue)>),
    /// An object: its class, and its properties named as PHP serializes them (`\0*\0name` for a
    /// protected one, `\0Class\0name` for a private one). JSON objects are `stdClass`, their
    /// properties in the order written (a repeated name keeps its first place and its last
    /// value), as PHP's `json_decode` gives them.
    Object {
        /// The class name.
        class: Vec<u8>,
        /// The properties, in order.
        properties: Vec<(Vec<u8>, PhpValue)>,
    },
    /// An object that serializes itself, which this crate cannot rebuild as PHP does: PHP hands
    /// `data` to the class's own code, and what that code makes of it is not in the bytes.
    ///
    /// - A class implementing `Serializable` (`C:` in `serialize()`'s format, type 3 in
    ///   msgpack's): `data` is the [`String`](PhpValue::String) its `serialize()` returned,
    ///   for its `unserialize()`.
    /// - A class with `__serialize()`: `data` is the [`Array`](PhpValue::Array) it returned, for
    ///   its `__unserialize()`. msgpack marks these objects; `serialize()` writes them as it
    ///   writes every object (`O:`), so they are told apart only when the array has an int key
    ///   (`return [$this->a, $this->b];`), which no property has. With string keys only, such an
    ///   object reads as an [`Object`](PhpValue::Object) whose properties are that array.
    Custom {
        /// The class name.
        class: Vec<u8>,
        /// What the class's own serialization wrote: a string or an array.
        data: Box<PhpValue>,
    },
    /// A value this crate does not decode, as stored: igbinary, or a serialized value with
    /// references or msgpack extensions.
    Opaque {
        /// Its PHP type.
        kind: PhpType,
        /// Its bytes.
        data: Vec<u8>,
    },
}

/// An array key: PHP's are ints or strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PhpKey {
    /// An int key.
    Int(i64),
    /// A string key.
    String(Vec<u8>),
}

impl PhpValue {
    /// Decodes bytes php-memcached stored with type `kind` (inflated).
    pub fn decode(kind: PhpType, data: &[u8]) -> Result<PhpValue, BoxError> {
        Ok(match kind {
            PhpType::String => PhpValue::String(data.to_vec()),
            PhpType::Long => PhpValue::Int(parse_int(data)?),
            PhpType::Double => PhpValue::Float(double::parse(data)?),
            PhpType::Bool => PhpValue::Bool(data.first() == Some(&b'1')),
            PhpType::Serialized => opaque_if_unsupported(kind, data, unserialize(data))?,
            PhpType::Igbinary => PhpValue::Opaque {
                kind,
                data: data.to_vec(),
            },
            PhpType::Json => json::decode(data)?,
            PhpType::Msgpack => opaque_if_unsupported(kind, data, from_msgpack(data))?,
        })
    }

    /// The entry of an array or the property of an object named `key` (a string key).
    pub fn get(&self, key: &str) -> Option<&PhpValue> {
        let key = key.as_bytes();
        match self {
            PhpValue::Array(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, PhpKey::String(s) if s == key))
                .map(|(_, v)| v),
            PhpValue::Object { properties, .. } => properties
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// By the crate's flags: a PHP type ([`Value::Php`](crate::Value::Php)), JSON, bytes and text
/// (strings), integers, or a pickled float.
impl FromValue for PhpValue {
    fn from_value(data: &[u8], crate_flags: u32) -> Result<Self, BoxError> {
        let own = crate_flags & 0xffff & !flags::ZLIB;
        if let Some(kind) = PhpType::of_crate_flags(own) {
            return PhpValue::decode(kind, data);
        }
        match own {
            flags::JSON => PhpValue::decode(PhpType::Json, data),
            flags::BYTES | flags::TEXT => Ok(PhpValue::String(data.to_vec())),
            flags::LONG | flags::INTEGER => Ok(PhpValue::Int(parse_int(data)?)),
            flags::PICKLE => float_from_pickle(data)
                .map(PhpValue::Float)
                .ok_or_else(|| "a Python pickle has no PHP equivalent".into()),
            other => Err(format!("flags {other} are no PHP value").into()),
        }
    }
}

fn parse_int(data: &[u8]) -> Result<i64, BoxError> {
    Ok(std::str::from_utf8(data)?.trim_end_matches(' ').parse()?)
}

/// Why a tree could not be built.
enum Failure {
    /// Valid, but not something a tree holds: the value stays opaque.
    Unsupported,
    Invalid(BoxError),
}

impl<E: Into<BoxError>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Invalid(error.into())
    }
}

fn opaque_if_unsupported(
    kind: PhpType,
    data: &[u8],
    tree: Result<PhpValue, Failure>,
) -> Result<PhpValue, BoxError> {
    match tree {
        Ok(value) => Ok(value),
        Err(Failure::Unsupported) => Ok(PhpValue::Opaque {
            kind,
            data: data.to_vec(),
        }),
        Err(Failure::Invalid(error)) => Err(error),
    }
}

fn deeper(depth: usize) -> Result<usize, Failure> {
    depth
        .checked_sub(1)
        .ok_or_else(|| Failure::Invalid(format!("nested deeper than {MAX_DEPTH}").into()))
}

fn unserialize(data: &[u8]) -> Result<PhpValue, Failure> {
    let mut parser = PhpParser::new(data);
    let first = parser.read_token()?;
    let value = read_token(&mut parser, first, MAX_DEPTH)?;
    if parser.position() != data.len() {
        return Err(format!("{} bytes follow the value", data.len() - parser.position()).into());
    }
    Ok(value)
}

fn read_token(
    parser: &mut PhpParser<'_>,
    token: PhpToken<'_>,
    depth: usize,
) -> Result<PhpValue, Failure> {
    Ok(match token {
        PhpToken::Null => PhpValue::Null,
        PhpToken::Boolean(b) => PhpValue::Bool(b),
        PhpToken::Integer(i) => PhpValue::Int(i),
        PhpToken::Float(x) => PhpValue::Float(x),
        PhpToken::String(s) => PhpValue::String(s.as_bytes().to_vec()),
        PhpToken::Array { elements } => {
            let depth = deeper(depth)?;
            let mut entries = Vec::new();
            for _ in 0..elements {
                let key = match parser.read_token()? {
                    PhpToken::Integer(i) => PhpKey::Int(i),
                    PhpToken::String(s) => PhpKey::String(s.as_bytes().to_vec()),
                    other => return Err(format!("an array key {other:?}").into()),
                };
                let token = parser.read_token()?;
                entries.push((key, read_token(parser, token, depth)?));
            }
            expect_end(parser)?;
            PhpValue::Array(entries)
        }
        PhpToken::Object { class, properties } => {
            let depth = deeper(depth)?;
            let mut members = Vec::new();
            for _ in 0..properties {
                let name = match parser.read_token()? {
                    PhpToken::Integer(i) => PhpKey::Int(i),
                    PhpToken::String(s) => PhpKey::String(s.as_bytes().to_vec()),
                    other => return Err(format!("a property name {other:?}").into()),
                };
                let token = parser.read_token()?;
                members.push((name, read_token(parser, token, depth)?));
            }
            expect_end(parser)?;
            object(class.as_bytes().to_vec(), members)
        }
        PhpToken::CustomObject { class, payload } => PhpValue::Custom {
            class: class.as_bytes().to_vec(),
            data: Box::new(PhpValue::String(payload.as_bytes().to_vec())),
        },
        PhpToken::Reference { .. } => return Err(Failure::Unsupported),
        PhpToken::End => return Err("a `}` where a value belongs".into()),
    })
}

/// An `O:` object: an ordinary one, or one whose `__serialize()` array has an int key.
fn object(class: Vec<u8>, members: Vec<(PhpKey, PhpValue)>) -> PhpValue {
    if members.iter().any(|(k, _)| matches!(k, PhpKey::Int(_))) {
        return PhpValue::Custom {
            class,
            data: Box::new(PhpValue::Array(members)),
        };
    }
    let properties = members
        .into_iter()
        .map(|(k, v)| match k {
            PhpKey::String(name) => (name, v),
            PhpKey::Int(_) => unreachable!("no int keys"),
        })
        .collect();
    PhpValue::Object { class, properties }
}

fn expect_end(parser: &mut PhpParser<'_>) -> Result<(), Failure> {
    match parser.read_token()? {
        PhpToken::End => Ok(()),
        other => Err(format!("{other:?} past the declared number of entries").into()),
    }
}

fn from_msgpack(data: &[u8]) -> Result<PhpValue, Failure> {
    let mut reader = data;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH)?;
    if !reader.is_empty() {
        return Err(format!("{} bytes follow the value", reader.len()).into());
    }
    from_rmpv(value)
}

fn from_rmpv(value: rmpv::Value) -> Result<PhpValue, Failure> {
    use rmpv::Value as M;
    Ok(match value {
        M::Nil => PhpValue::Null,
        M::Boolean(b) => PhpValue::Bool(b),
        M::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(i), _) => PhpValue::Int(i),
            // PHP turns ints past its own into floats.
            (None, Some(u)) => PhpValue::Float(u as f64),
            (None, None) => unreachable!("a msgpack integer is an i64 or a u64"),
        },
        M::F32(x) => PhpValue::Float(x.into()),
        M::F64(x) => PhpValue::Float(x),
        M::String(s) => PhpValue::String(s.into_bytes()),
        M::Binary(b) => PhpValue::String(b),
        M::Array(items) => PhpValue::Array(
            (0..)
                .zip(items)
                .map(|(i, item)| Ok((PhpKey::Int(i), from_rmpv(item)?)))
                .collect::<Result<_, Failure>>()?,
        ),
        M::Map(entries) => from_rmpv_map(entries)?,
        M::Ext(..) => return Err(Failure::Unsupported),
    })
}

/// msgpack's mark (a nil key's value) for an object of a class implementing `Serializable`.
const MSGPACK_SERIALIZABLE: u64 = 3;

/// A msgpack map: an object if its first key is nil (msgpack's PHP objects, with the class as
/// that key's value; a second nil key holds what `__serialize()` returned, and a nil key worth 3
/// marks a `Serializable` object), an array otherwise.
fn from_rmpv_map(entries: Vec<(rmpv::Value, rmpv::Value)>) -> Result<PhpValue, Failure> {
    use rmpv::Value as M;
    let mut entries = entries.into_iter().peekable();
    if let Some((M::Nil, _)) = entries.peek() {
        let class = match entries.next() {
            Some((_, M::String(class))) => class.into_bytes(),
            Some((_, M::Integer(mark))) if mark.as_u64() == Some(MSGPACK_SERIALIZABLE) => {
                return match (entries.next(), entries.next()) {
                    (Some((M::String(class), M::String(data))), None) => Ok(PhpValue::Custom {
                        class: class.into_bytes(),
                        data: Box::new(PhpValue::String(data.into_bytes())),
                    }),
                    _ => Err("a Serializable object that is not one class and its string".into()),
                };
            }
            _ => return Err(Failure::Unsupported), // msgpack's references and the like
        };
        if let Some((M::Nil, _)) = entries.peek() {
            let Some((_, data @ (M::Map(_) | M::Array(_)))) = entries.next() else {
                return Err("__serialize() data that is not an array".into());
            };
            if entries.next().is_some() {
                return Err("entries after an object's __serialize() data".into());
            }
            return Ok(PhpValue::Custom {
                class,
                data: Box::new(from_rmpv(data)?),
            });
        }
        let properties = entries
            .map(|(name, value)| match name {
                M::String(name) => Ok((name.into_bytes(), from_rmpv(value)?)),
                _ => Err("a property name that is not a string".into()),
            })
            .collect::<Result<_, Failure>>()?;
        return Ok(PhpValue::Object { class, properties });
    }
    let entries = entries
        .map(|(key, value)| {
            let key = match key {
                M::Integer(i) => PhpKey::Int(i.as_i64().ok_or("an array key past i64")?),
                M::String(s) => PhpKey::String(s.into_bytes()),
                other => return Err(format!("an array key {other}").into()),
            };
            Ok((key, from_rmpv(value)?))
        })
        .collect::<Result<_, Failure>>()?;
    Ok(PhpValue::Array(entries))
}

mod json;
#[cfg(test)]
mod tests;
