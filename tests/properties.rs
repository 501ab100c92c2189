//! Property tests against real memcached processes (one per test), in both protocols:
//! random operation sequences checked against an in-memory model, and round trips of every
//! value type the crate reads and writes, compressed or not.
//!
//! Case counts are bounded so that the file runs in a few seconds; `PROPTEST_CASES` raises them.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use libmemcached::testing::Memcached;
use libmemcached::value::flags;
use libmemcached::{Client, Compression, Error, Value};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// A client per protocol, and per protocol one that compresses every value it can shrink.
fn clients(server: &Memcached) -> Vec<(&'static str, Client)> {
    let build = |binary, compression| {
        Client::builder()
            .servers([server.spec()])
            .binary(binary)
            .compression(compression)
            .build()
            .unwrap()
    };
    vec![
        ("ascii", build(false, Compression::OFF)),
        ("binary", build(true, Compression::OFF)),
        ("ascii+zlib", build(false, Compression::new(1))),
        ("binary+zlib", build(true, Compression::new(1))),
    ]
}

/// A key no other case has used.
fn fresh_key() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("p:{}", N.fetch_add(1, Ordering::Relaxed))
}

fn config(cases: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..Config::default()
    }
}

// ---- round trips ----------------------------------------------------------------------------

/// Text and bytes that compress (repeated runs) as well as ones that do not.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,8}"
            .prop_flat_map(|unit| (Just(unit), 0..200usize))
            .prop_map(|(unit, n)| unit.repeat(n)),
        Just(String::new()),
        Just("é✓😀\u{0}\u{ffff}".into()),
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        (proptest::collection::vec(any::<u8>(), 1..8), 0..300usize)
            .prop_map(|(unit, n)| unit.repeat(n)),
    ]
}

fn int_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0),
        Just(-1)
    ]
}

fn int_u64() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), Just(u64::MAX), Just(0), Just(1)]
}

/// Every `Value` variant, each in a form that reads back as the same variant.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        bytes().prop_map(Value::Bytes),
        text().prop_map(Value::Text),
        any::<i128>().prop_map(Value::Int),
        Just(Value::Int(i128::MIN)),
        Just(Value::Int(i128::MAX)),
        "-?[1-9][0-9]{39,80}".prop_map(Value::BigInt),
        bytes().prop_map(Value::Pickle),
        // Type flags this crate does not know, without the zlib bit.
        (any::<u32>(), bytes())
            .prop_filter_map("known type flags", |(f, data)| {
                let f = f & !flags::ZLIB;
                let known = [
                    flags::BYTES,
                    flags::PICKLE,
                    flags::INTEGER,
                    flags::LONG,
                    flags::TEXT,
                ];
                (!known.contains(&(f & flags::TYPE_MASK))).then_some((f, data))
            })
            .prop_map(|(flags, data)| Value::Other { flags, data }),
    ]
}

fn round_trip<T>(
    clients: &[(&'static str, Client)],
    value: &T,
) -> std::result::Result<(), TestCaseError>
where
    T: libmemcached::ToValue + libmemcached::FromValue + PartialEq + std::fmt::Debug,
{
    for (name, mc) in clients {
        let key = fresh_key();
        mc.set(&key, value, 0)
            .map_err(|e| TestCaseError::fail(format!("{name}: set: {e}")))?;
        let back: Option<T> = mc
            .get(&key)
            .map_err(|e| TestCaseError::fail(format!("{name}: get: {e}")))?;
        prop_assert_eq!(back.as_ref(), Some(value), "{}", name);
        // And through the multi-key path.
        let found: HashMap<&str, T> = mc
            .get_multi([key.as_str()])
            .map_err(|e| TestCaseError::fail(format!("{name}: get_multi: {e}")))?;
        prop_assert_eq!(found.get(key.as_str()), Some(value), "{} get_multi", name);
    }
    Ok(())
}

#[test]
fn every_value_type_round_trips_in_both_protocols() {
    let server = common::own_server();
    let clients = clients(&server);
    let mut runner = proptest::test_runner::TestRunner::new(config(128));
    runner
        .run(&text(), |s| {
            round_trip(&clients, &s)?;
            round_trip(&clients, &Value::Text(s.clone()))
        })
        .unwrap();
    runner
        .run(&bytes(), |b| {
            round_trip(&clients, &b)?;
            round_trip(&clients, &(b.clone(), flags::BYTES))
        })
        .unwrap();
    runner
        .run(&(int_i64(), int_u64(), any::<bool>()), |(i, u, b)| {
            round_trip(&clients, &i)?;
            round_trip(&clients, &u)?;
            round_trip(&clients, &b)?;
            round_trip(&clients, &Value::Int(i.into()))
        })
        .unwrap();
    runner.run(&value(), |v| round_trip(&clients, &v)).unwrap();
    runner
        .run(
            &(bytes(), any::<u32>().prop_map(|f| f & !flags::ZLIB)),
            |raw| round_trip(&clients, &raw),
        )
        .unwrap();
}

#[cfg(feature = "serde")]
#[test]
fn json_values_round_trip_in_both_protocols() {
    use libmemcached::Json;

    let server = common::own_server();
    let clients = clients(&server);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    let json = leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("\\PC{0,6}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    let mut runner = proptest::test_runner::TestRunner::new(config(128));
    runner
        .run(&json, |j| round_trip(&clients, &Json(j)))
        .unwrap();
}

// ---- operation sequences against a model ------------------------------------------------

const KEYS: [&str; 4] = ["a", "b", "c", "d"];

#[derive(Debug, Clone)]
enum Op {
    Set(usize, String),
    Add(usize, String),
    Replace(usize, String),
    Append(usize, String),
    Prepend(usize, String),
    Delete(usize),
    Incr(usize, u64),
    Decr(usize, u64),
    Touch(usize),
    Get(usize),
    Gets(usize),
    /// With the token read last (`true`) or a stale one.
    Cas(usize, String, bool),
    GetMulti(Vec<usize>),
    SetMulti(Vec<(usize, String)>),
    DeleteMulti(Vec<usize>),
}

/// Values that meet as counters (digits) and as text.
fn op_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..1000).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[a-z ]{0,6}",
        "[0-9]{1,3}",
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let delta = prop_oneof![0u64..10, any::<u64>()];
    prop_oneof![
        (key.clone(), op_value()).prop_map(|(k, v)| Op::Set(k, v)),
        (key.clone(), op_value()).prop_map(|(k, v)| Op::Add(k, v)),
        (key.clone(), op_value()).prop_map(|(k, v)| Op::Replace(k, v)),
        (key.clone(), op_value()).prop_map(|(k, v)| Op::Append(k, v)),
        (key.clone(), op_value()).prop_map(|(k, v)| Op::Prepend(k, v)),
        key.clone().prop_map(Op::Delete),
        (key.clone(), delta.clone()).prop_map(|(k, d)| Op::Incr(k, d)),
        (key.clone(), delta).prop_map(|(k, d)| Op::Decr(k, d)),
        key.clone().prop_map(Op::Touch),
        key.clone().prop_map(Op::Get),
        key.clone().prop_map(Op::Gets),
        (key.clone(), op_value(), any::<bool>()).prop_map(|(k, v, t)| Op::Cas(k, v, t)),
        proptest::collection::vec(key.clone(), 0..6).prop_map(Op::GetMulti),
        proptest::collection::vec((key.clone(), op_value()), 0..4).prop_map(Op::SetMulti),
        proptest::collection::vec(key, 0..4).prop_map(Op::DeleteMulti),
    ]
}

/// A value as `incr`/`decr` see it (memcached's `safe_strtoull`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Counter {
    Number(u64),
    NotANumber,
    /// Above `i64::MAX` with no `-` in the value: memcached then looks for a `-` with `strchr`,
    /// past the value into whatever memory follows, so an error is memcached's answer too.
    Either(u64),
    /// White space only: `strtoull` skips it and the `\r\n` after it and reads on past the
    /// value, so memcached 1.6 answers with whatever number follows in its memory, or an error.
    Anything,
}

fn counter(data: &str) -> Counter {
    // strtoull: leading white space, a sign, digits, then the end or white space.
    let space = |b: &u8| b" \t\n\x0b\x0c\r".contains(b);
    let rest = data.trim_start_matches(|c: char| c.is_ascii() && space(&(c as u8)));
    if rest.is_empty() && !data.is_empty() {
        return Counter::Anything;
    }
    let (negative, rest) = match rest.as_bytes().first() {
        Some(b'-') => (true, &rest[1..]),
        Some(b'+') => (false, &rest[1..]),
        _ => (false, rest),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ends = rest
        .as_bytes()
        .get(digits)
        .is_none_or(|b| *b == 0 || space(b));
    let Some(n) = rest[..digits].parse::<u64>().ok().filter(|_| ends) else {
        return Counter::NotANumber;
    };
    let n = if negative { n.wrapping_neg() } else { n };
    match n > i64::MAX as u64 {
        true if data.contains('-') => Counter::NotANumber,
        true => Counter::Either(n),
        false => Counter::Number(n),
    }
}

#[derive(Default, Debug)]
struct Model {
    /// Value and version (bumped on every change, as memcached's CAS token).
    items: HashMap<usize, (String, u64)>,
    /// The token last read per key, and the version it was read at.
    tokens: HashMap<usize, (u64, u64)>,
    version: u64,
}

impl Model {
    fn put(&mut self, k: usize, v: String) {
        self.version += 1;
        self.items.insert(k, (v, self.version));
    }

    fn get(&self, k: usize) -> Option<String> {
        self.items.get(&k).map(|(v, _)| v.clone())
    }
}

fn run_ops(
    clients: &[(&'static str, Client)],
    ops: &[(bool, Op)],
) -> std::result::Result<(), TestCaseError> {
    let prefix = fresh_key() + ":";
    let views: Vec<_> = clients[..2]
        .iter()
        .map(|(_, c)| c.prefixed(&prefix))
        .collect();
    let mut model = Model::default();
    let fail = |what: &str, e: Error| TestCaseError::fail(format!("{what}: {e}"));
    for (binary, op) in ops {
        let mc = &views[usize::from(*binary)];
        match op.clone() {
            Op::Set(k, v) => {
                mc.set(KEYS[k], &v, 0).map_err(|e| fail("set", e))?;
                model.put(k, v);
            }
            Op::Add(k, v) => {
                let added = mc.add(KEYS[k], &v, 0).map_err(|e| fail("add", e))?;
                prop_assert_eq!(added, model.get(k).is_none());
                if added {
                    model.put(k, v);
                }
            }
            Op::Replace(k, v) => {
                let replaced = mc.replace(KEYS[k], &v, 0).map_err(|e| fail("replace", e))?;
                prop_assert_eq!(replaced, model.get(k).is_some());
                if replaced {
                    model.put(k, v);
                }
            }
            Op::Append(k, v) | Op::Prepend(k, v) => {
                let append = matches!(op, Op::Append(..));
                let joined = match append {
                    true => mc.append(KEYS[k], &v),
                    false => mc.prepend(KEYS[k], &v),
                }
                .map_err(|e| fail("append/prepend", e))?;
                prop_assert_eq!(joined, model.get(k).is_some());
                if let Some(old) = model.get(k) {
                    model.put(k, if append { old + &v } else { v + &old });
                }
            }
            Op::Delete(k) => {
                let deleted = mc.delete(KEYS[k]).map_err(|e| fail("delete", e))?;
                prop_assert_eq!(deleted, model.items.remove(&k).is_some());
            }
            Op::Incr(k, delta) | Op::Decr(k, delta) => {
                let incr = matches!(op, Op::Incr(..));
                let result = match incr {
                    true => mc.incr(KEYS[k], delta),
                    false => mc.decr(KEYS[k], delta),
                };
                let Some(old) = model.get(k) else {
                    prop_assert!(
                        matches!(result, Err(Error::NotFound { .. })),
                        "{:?}",
                        result
                    );
                    continue;
                };
                let now = match (counter(&old), result) {
                    (Counter::Number(n) | Counter::Either(n), Ok(got)) => {
                        let want = if incr {
                            n.wrapping_add(delta)
                        } else {
                            n.saturating_sub(delta)
                        };
                        prop_assert_eq!(got, want, "{:?} from {:?}", op, old);
                        got
                    }
                    (Counter::Anything, Ok(got)) => got,
                    (Counter::NotANumber | Counter::Either(_) | Counter::Anything, Err(e)) => {
                        prop_assert!(!e.is_not_found(), "{}", e);
                        continue;
                    }
                    (expected, got) => {
                        return Err(TestCaseError::fail(format!(
                            "{op:?} on {old:?}: expected {expected:?}, got {got:?}"
                        )));
                    }
                };
                // memcached rewrites the value in place, padded with spaces to its old length,
                // unless another connection still holds the item (a reply it has not finished
                // releasing): then it stores just the digits as a new item. Read which it was.
                let padded = format!("{now:<width$}", width = old.len());
                let stored: Option<String> = mc.get(KEYS[k]).map_err(|e| fail("get", e))?;
                let stored = stored.unwrap_or_default();
                prop_assert!(
                    stored == padded || stored == now.to_string(),
                    "{:?} on {:?} left {:?}",
                    op,
                    old,
                    stored
                );
                model.put(k, stored);
            }
            Op::Touch(k) => {
                let touched = mc.touch(KEYS[k], 3600).map_err(|e| fail("touch", e))?;
                prop_assert_eq!(touched, model.get(k).is_some());
            }
            Op::Get(k) => {
                let got: Option<String> = mc.get(KEYS[k]).map_err(|e| fail("get", e))?;
                prop_assert_eq!(got, model.get(k));
            }
            Op::Gets(k) => {
                let got: Option<(String, u64)> = mc.gets(KEYS[k]).map_err(|e| fail("gets", e))?;
                if let Some((_, token)) = &got {
                    model.tokens.insert(k, (*token, model.items[&k].1));
                }
                prop_assert_eq!(got.map(|(v, _)| v), model.get(k));
            }
            Op::Cas(k, v, use_token) => {
                let (token, valid) = match (use_token, model.tokens.get(&k)) {
                    (true, Some(&(token, version))) => (
                        token,
                        model.items.get(&k).is_some_and(|(_, now)| *now == version),
                    ),
                    _ => (1 << 60, false),
                };
                let stored = mc.cas(KEYS[k], &v, token, 0).map_err(|e| fail("cas", e))?;
                prop_assert_eq!(stored, valid, "cas with token {}", token);
                if stored {
                    model.put(k, v);
                }
            }
            Op::GetMulti(keys) => {
                let got: HashMap<&str, String> = mc
                    .get_multi(keys.iter().map(|&k| KEYS[k]))
                    .map_err(|e| fail("get_multi", e))?;
                let want: HashMap<&str, String> = keys
                    .iter()
                    .filter_map(|&k| model.get(k).map(|v| (KEYS[k], v)))
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::SetMulti(items) => {
                let not_stored = mc
                    .set_multi(items.iter().map(|(k, v)| (KEYS[*k], v.as_str())), 0)
                    .map_err(|e| fail("set_multi", e))?;
                prop_assert!(not_stored.is_empty(), "{:?}", not_stored);
                for (k, v) in items {
                    model.put(k, v);
                }
            }
            Op::DeleteMulti(keys) => {
                let missing = mc
                    .delete_multi(keys.iter().map(|&k| KEYS[k]))
                    .map_err(|e| fail("delete_multi", e))?;
                // A key given twice is missing the second time.
                let mut want = Vec::new();
                for &k in &keys {
                    if model.items.remove(&k).is_none() {
                        want.push(KEYS[k]);
                    }
                }
                prop_assert_eq!(missing, want);
            }
        }
    }
    // The end state, through both protocols at once.
    for mc in &views {
        let got: HashMap<&str, String> =
            mc.get_multi(KEYS).map_err(|e| fail("final get_multi", e))?;
        let want: HashMap<&str, String> = (0..KEYS.len())
            .filter_map(|k| model.get(k).map(|v| (KEYS[k], v)))
            .collect();
        prop_assert_eq!(got, want, "end state");
    }
    Ok(())
}

#[test]
fn operation_sequences_match_a_model_in_both_protocols() {
    let server = common::own_server();
    let clients = clients(&server);
    let ops = proptest::collection::vec((any::<bool>(), op()), 1..40);
    let mut runner = proptest::test_runner::TestRunner::new(config(500));
    runner.run(&ops, |ops| run_ops(&clients, &ops)).unwrap();
}
