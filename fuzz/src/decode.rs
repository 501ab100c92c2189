//! Value decoding: any flags and any bytes, zlib included, for every `FromValue` type of the
//! crate. Decoding goes through the client's own path (inflate within the client's limit,
//! then `FromValue::from_value` with the flags as stored); the results must agree with each
//! other and with `from_value` on the inflated bytes, an inflated value stays within the
//! client's limit, and a byte after the zlib stream is refused.
//!
//! miniz_oxide skips zlib's Adler-32 check in builds with `--cfg fuzzing` (so that fuzzers get
//! past it), so under `cargo fuzz` a damaged stream can inflate where a normal build refuses
//! it: the checks here hold either way.

use std::fmt::Debug;

use flate2::{Compress, FlushCompress, Status};
use libmemcached::value::flags;
use libmemcached::{Error, FromValue, Json, ToValue, Value};

use super::input::Input;

/// The client's decoding of fetched bytes and flags.
pub trait Decoder {
    /// Decodes as the client does after a read.
    fn decode<V: FromValue>(&self, data: &[u8], flags: u32) -> libmemcached::Result<V>;

    /// The client's limit on an inflated value.
    fn max_inflated_len(&self) -> usize;
}

/// The inflate limit the targets' clients are built with: big enough for every input, small
/// enough that a zlib bomb costs little.
pub const MAX_INFLATED_LEN: usize = 1 << 20;

const KNOWN_FLAGS: [u32; 12] = [
    flags::BYTES,
    flags::PICKLE,
    flags::INTEGER,
    flags::LONG,
    flags::TEXT,
    flags::JSON,
    flags::PICKLE | flags::INTEGER,
    flags::TEXT | flags::LONG,
    flags::JSON | flags::TEXT,
    1 << 6,
    1 << 31,
    u32::MAX,
];

/// Checks one input: how to make the bytes (as given, compressed, or compressed and then
/// damaged), the flags, and the payload.
pub fn check<D: Decoder>(data: &[u8], decoder: &D) {
    let mut input = Input::new(data);
    let mode = input.choose(4);
    let mut flags = if input.flag() {
        KNOWN_FLAGS[input.choose(KNOWN_FLAGS.len())]
    } else {
        input.u32()
    };
    let level = u32::from(input.byte() % 10);
    let damage = (input.byte(), input.byte());
    let payload = input.rest();
    let stored: Vec<u8> = match mode {
        0 | 1 => payload.to_vec(),
        _ => {
            flags |= flags::ZLIB;
            let mut packed = zlib(payload, level);
            if mode == 3 && !packed.is_empty() {
                let at = usize::from(damage.0) % packed.len();
                match damage.1 % 3 {
                    0 => packed.truncate(at),
                    1 => packed[at] ^= damage.1 | 1,
                    _ => packed.push(damage.1),
                }
            }
            packed
        }
    };
    check_stored(&stored, flags, decoder);
    if mode == 2 && payload.len() <= decoder.max_inflated_len() {
        let (inflated, _) = decoder
            .decode::<(Vec<u8>, u32)>(&stored, flags)
            .unwrap_or_else(|e| panic!("an intact zlib stream does not inflate: {e}"));
        assert_eq!(inflated, payload, "inflate gives back what was compressed");
    }
}

/// Decodes `stored` with `flags` into every type and checks that the results agree.
pub fn check_stored<D: Decoder>(stored: &[u8], flags: u32, decoder: &D) {
    let zlib_flag = flags & flags::ZLIB != 0;
    let type_flags = flags & !flags::ZLIB;

    // Raw bytes and flags: always decode, except a zlib stream that does not inflate.
    let plain = match decoder.decode::<(Vec<u8>, u32)>(stored, flags) {
        Ok((plain, f)) => {
            assert_eq!(f, type_flags, "raw flags lose only the zlib bit");
            if zlib_flag {
                assert!(
                    plain.len() <= decoder.max_inflated_len(),
                    "over the inflate limit"
                );
                // The stream must be all of the value: a byte more is refused. (One input in
                // eight checks it, in place of decoding a typed value through the client.)
                if stored.len() % 8 == 7 {
                    let longer = [stored, b"!"].concat();
                    match decoder.decode::<(Vec<u8>, u32)>(&longer, flags) {
                        Err(Error::Decompress { .. }) => {}
                        other => panic!("trailing bytes after the stream: {other:?}"),
                    }
                }
            } else {
                assert_eq!(plain, stored, "raw bytes are the stored bytes");
            }
            plain
        }
        Err(e) => {
            assert!(zlib_flag, "raw decode of an uncompressed value failed: {e}");
            assert!(matches!(e, Error::Decompress { .. }), "{e}");
            // Every type fails the same way, before decoding (one type per input: inflating
            // is the cost).
            match stored.len() % 7 {
                0 => same_failure::<Value>(stored, flags, decoder),
                1 => same_failure::<String>(stored, flags, decoder),
                2 => same_failure::<Vec<u8>>(stored, flags, decoder),
                3 => same_failure::<u64>(stored, flags, decoder),
                4 => same_failure::<i64>(stored, flags, decoder),
                5 => same_failure::<bool>(stored, flags, decoder),
                _ => same_failure::<Json<serde_json::Value>>(stored, flags, decoder),
            }
            return;
        }
    };

    // Each type decodes as `from_value` does on the inflated bytes. Inflating is most of the
    // cost, so a compressed value goes through the client as one type (the input picks which)
    // besides the raw bytes above; an uncompressed one goes through as every type.
    let pick = if zlib_flag {
        stored.len() % 8
    } else {
        usize::MAX
    };
    let via = |i: usize| pick == usize::MAX || pick == i;
    let value = agrees::<Value>(stored, flags, &plain, decoder, via(0));
    let text = agrees::<String>(stored, flags, &plain, decoder, via(1));
    let bytes = agrees::<Vec<u8>>(stored, flags, &plain, decoder, via(2));
    let unsigned = agrees::<u64>(stored, flags, &plain, decoder, via(3));
    let signed = agrees::<i64>(stored, flags, &plain, decoder, via(4));
    let boolean = agrees::<bool>(stored, flags, &plain, decoder, via(5));
    let json = agrees::<Json<serde_json::Value>>(stored, flags, &plain, decoder, via(6));

    // And the types agree with each other.
    // The crate's own PHP marker bit makes a value a PHP one, never plain.
    let plain_type = matches!(
        type_flags & (flags::TYPE_MASK | flags::PHP),
        flags::BYTES | flags::TEXT | flags::INTEGER | flags::LONG
    );
    assert_eq!(bytes.as_ref(), plain_type.then_some(&plain), "Vec<u8>");
    let utf8 = std::str::from_utf8(&plain).ok();
    assert_eq!(
        text.as_deref(),
        utf8.filter(|_| plain_type),
        "String decodes the UTF-8 of plain values"
    );
    let digits = text.as_deref().map(|t| t.trim_end_matches(' '));
    assert_eq!(unsigned, digits.and_then(|d| d.parse().ok()), "u64");
    assert_eq!(signed, digits.and_then(|d| d.parse().ok()), "i64");
    let small = digits.and_then(|d| d.parse::<u8>().ok());
    // A PHP bool (the crate's PHP marker with kind 3) reads as PHP reads it, tested against PHP
    // itself in tests/php.rs; every other bool is 0 or 1.
    if type_flags & flags::PHP == 0 {
        assert_eq!(
            boolean,
            small.filter(|n| *n <= 1).map(|n| n == 1),
            "bool is 0 or 1"
        );
    }
    if let Some(Json(_)) = &json {
        assert!(
            // The top 16 bits are PHP's user flags, which Json ignores.
            [flags::BYTES, flags::TEXT, flags::JSON].contains(&(type_flags & 0xffff)),
            "JSON from flags {type_flags}"
        );
    }
    match (&value, type_flags & flags::TYPE_MASK) {
        (Some(Value::Bytes(b)), flags::BYTES) => assert_eq!(b, &plain),
        (Some(Value::Text(t)), flags::TEXT) => assert_eq!(Some(t.as_str()), utf8),
        (None, flags::TEXT) => assert!(utf8.is_none()),
        (Some(Value::Pickle(p)), flags::PICKLE) => assert_eq!(p, &plain),
        (Some(Value::Int(i)), flags::INTEGER | flags::LONG) => {
            if let Some(n) = signed {
                assert_eq!(*i, i128::from(n));
            }
            if let Some(n) = unsigned {
                assert_eq!(*i, i128::from(n));
            }
        }
        (Some(Value::BigInt(digits)), flags::INTEGER | flags::LONG) => {
            assert!(signed.is_none() && unsigned.is_none(), "{digits} fits");
        }
        (None, flags::INTEGER | flags::LONG) => {
            assert!(signed.is_none() && unsigned.is_none());
        }
        // The crate's PHP marker bit: a PHP value of the kind in bits 8 to 11.
        (Some(Value::Php { data, .. }), _) if type_flags & flags::PHP != 0 => {
            assert_eq!(data, &plain);
        }
        (Some(Value::Other { flags: f, data }), _) => {
            assert_eq!(*f, type_flags);
            assert_eq!(data, &plain);
        }
        (other, kind) => panic!("type flags {kind} decoded as {other:?}"),
    }
    // A decoded `Value` encodes to a value that decodes back to it.
    if let Some(value) = value {
        let encoded = value
            .to_value()
            .unwrap_or_else(|e| panic!("{value:?} does not encode: {e}"));
        let again = decoder
            .decode::<Value>(&encoded.data, encoded.flags)
            .unwrap_or_else(|e| panic!("{value:?} encodes to what does not decode: {e}"));
        assert_eq!(again, value, "Value round trip");
    }
}

/// `V::from_value` on the inflated bytes, and (if `via_client`) the same through the client's
/// decoding of the stored bytes; the value, if any.
fn agrees<V: FromValue + PartialEq + Debug>(
    stored: &[u8],
    flags: u32,
    plain: &[u8],
    decoder: &impl Decoder,
    via_client: bool,
) -> Option<V> {
    let direct = V::from_value(plain, flags);
    if !via_client {
        return direct.ok();
    }
    match (decoder.decode::<V>(stored, flags), direct) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "{}", std::any::type_name::<V>());
            Some(a)
        }
        (Err(Error::Decode { flags: f, .. }), Err(_)) => {
            assert_eq!(f, flags, "the error names the flags as stored");
            None
        }
        (a, b) => panic!(
            "{}: the client gives {a:?}, from_value {b:?}",
            std::any::type_name::<V>()
        ),
    }
}

fn same_failure<V: FromValue + Debug>(stored: &[u8], flags: u32, decoder: &impl Decoder) {
    match decoder.decode::<V>(stored, flags) {
        Err(Error::Decompress { .. }) => {}
        other => panic!(
            "{}: {other:?} where the raw decode failed to inflate",
            std::any::type_name::<V>()
        ),
    }
}

thread_local! {
    /// Compressors kept from input to input, one per level, made when first used: making one
    /// is most of the cost of an input otherwise (hundreds of kilobytes zeroed each time).
    static COMPRESSORS: std::cell::RefCell<[Option<Compress>; 10]> =
        std::cell::RefCell::new(std::array::from_fn(|_| None));
}

/// `data` compressed with zlib at `level`.
pub fn zlib(data: &[u8], level: u32) -> Vec<u8> {
    COMPRESSORS.with(|cell| {
        let mut compressors = cell.borrow_mut();
        let compress = compressors[level.min(9) as usize]
            .get_or_insert_with(|| Compress::new(flate2::Compression::new(level.min(9)), true));
        compress.reset();
        let mut out = Vec::with_capacity(data.len() + 64);
        loop {
            let before = compress.total_in() as usize;
            let status = compress
                .compress_vec(&data[before..], &mut out, FlushCompress::Finish)
                .expect("compressing into memory");
            if status == Status::StreamEnd {
                return out;
            }
            out.reserve(out.len().max(64));
        }
    })
}
