//! Throughput of this crate against raw libmemcached calls doing the same work, and against the
//! pure-Rust `memcache` crate, interleaved in one run against a memcached it starts itself.
//!
//! ```sh
//! cargo run --release --example bench                      # ASCII protocol
//! cargo run --release --example bench -- --binary
//! cargo run --release --example bench -- --keys 20000 --rounds 7
//! ```
//!
//! Prints one JSON object per measurement (`op`, `impl`, `ops_per_sec` as the median of the
//! rounds) and one per op with the ratios. Keys are 15 bytes, values 100 bytes; multi-key ops
//! go in batches of 100, and their rate counts keys.

// The baseline is libmemcached called directly, which takes unsafe code.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CString, c_char};
use std::mem::MaybeUninit;
use std::time::Instant;

use libmemcached::testing::Memcached;
use libmemcached::{Client, ClientPool, ThreadMappedPool};
use libmemcached_sys as sys;

const BATCH: usize = 100;
const VALUE_LEN: usize = 100;

struct Config {
    keys: usize,
    rounds: usize,
    binary: bool,
    /// Run only this op and implementation (for instruction counts under callgrind).
    only: Option<(String, String)>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = parse_args();
    let server = Memcached::builder().arg("-m").arg("256").start()?;
    let port = server.port().expect("a TCP server");
    let protocol = if config.binary { "binary" } else { "ascii" };

    let ours = Client::builder()
        .servers([server.spec()])
        .binary(config.binary)
        .build()?;
    // The server started here speaks both protocols: set_multi may send a server's sets
    // together (on by default for a binary client only).
    let together = Client::builder()
        .servers([server.spec()])
        .binary(config.binary)
        .sets_together(true)
        .build()?;
    let raw = Raw::new(port, config.binary);
    let raw_bulk = Raw::new(port, config.binary);
    raw_bulk.quiet_and_buffered(!config.binary);
    // memcache's own `connect` pools connections with r2d2's defaults, which test each one
    // with a `version` round trip at every check-out: a second round trip per call that is
    // not the client's work. Its pool here skips that test.
    let url = format!("memcache://127.0.0.1:{port}?protocol={protocol}").parse()?;
    let pool = r2d2::Pool::builder()
        .max_size(1)
        .test_on_check_out(false)
        .build(memcache::ConnectionManager::new(url))?;
    let peer = memcache::Client::with_pool(pool)?;

    let keys: Vec<String> = (0..config.keys).map(|i| format!("bench:{i:09}")).collect();
    assert_eq!(keys[0].len(), 15);
    let value = vec![b'v'; VALUE_LEN];
    let batches: Vec<Vec<&str>> = keys
        .chunks(BATCH)
        .map(|c| c.iter().map(String::as_str).collect())
        .collect();

    type Run<'a> = Box<dyn Fn() + 'a>;
    let mut ops: Vec<(&str, Vec<(&str, Run<'_>)>)> = Vec::new();
    ops.push((
        "set",
        vec![
            (
                "libmemcached-rs",
                Box::new(|| keys.iter().for_each(|k| ours.set(k, &value, 0).unwrap())),
            ),
            (
                "raw",
                Box::new(|| keys.iter().for_each(|k| raw.set(k, &value))),
            ),
            (
                "memcache",
                Box::new(|| {
                    keys.iter()
                        .for_each(|k| peer.set(k, &value[..], 0).unwrap())
                }),
            ),
        ],
    ));
    ops.push((
        "get",
        vec![
            (
                "libmemcached-rs",
                Box::new(|| {
                    keys.iter()
                        .for_each(|k| check(&ours.get::<Vec<u8>>(k).unwrap().unwrap()))
                }),
            ),
            (
                "raw",
                Box::new(|| keys.iter().for_each(|k| check(&raw.get(k)))),
            ),
            (
                "memcache",
                Box::new(|| {
                    keys.iter()
                        .for_each(|k| check(&peer.get::<Vec<u8>>(k).unwrap().unwrap()))
                }),
            ),
        ],
    ));
    ops.push((
        "get_multi100",
        vec![
            (
                "libmemcached-rs",
                Box::new(|| {
                    for b in &batches {
                        let found: HashMap<&str, Vec<u8>> =
                            ours.get_multi(b.iter().copied()).unwrap();
                        assert_eq!(found.len(), b.len());
                    }
                }),
            ),
            (
                "raw",
                Box::new(|| {
                    batches
                        .iter()
                        .for_each(|b| assert_eq!(raw.get_multi(b).len(), b.len()))
                }),
            ),
            (
                "memcache",
                Box::new(|| {
                    for b in &batches {
                        let found: HashMap<String, Vec<u8>> = peer.gets(b).unwrap();
                        assert_eq!(found.len(), b.len());
                    }
                }),
            ),
        ],
    ));
    ops.push((
        "get_multi100_each",
        vec![
            (
                "libmemcached-rs",
                Box::new(|| {
                    for b in &batches {
                        let mut bytes = 0;
                        ours.get_multi_each(b.iter().copied(), |item| bytes += item.value().len())
                            .unwrap();
                        assert_eq!(bytes, b.len() * VALUE_LEN);
                    }
                }),
            ),
            (
                "raw",
                Box::new(|| {
                    for b in &batches {
                        let mut bytes = 0;
                        raw.get_multi_each(b, |_, value| bytes += value.len());
                        assert_eq!(bytes, b.len() * VALUE_LEN);
                    }
                }),
            ),
        ],
    ));
    ops.push((
        "set_multi100",
        vec![
            (
                "libmemcached-rs",
                Box::new(|| {
                    for b in &batches {
                        assert!(
                            ours.set_multi(b.iter().map(|k| (*k, &value)), 0)
                                .unwrap()
                                .is_empty()
                        );
                    }
                }),
            ),
            (
                "raw",
                Box::new(|| {
                    batches
                        .iter()
                        .for_each(|b| b.iter().for_each(|k| raw.set(k, &value)))
                }),
            ),
        ],
    ));
    ops.push((
        "set_multi100_together",
        vec![
            (
                "libmemcached-rs",
                Box::new(|| {
                    for b in &batches {
                        assert!(
                            together
                                .set_multi(b.iter().map(|k| (*k, &value)), 0)
                                .unwrap()
                                .is_empty()
                        );
                    }
                }),
            ),
            (
                "raw",
                Box::new(|| {
                    batches
                        .iter()
                        .for_each(|b| b.iter().for_each(|k| raw.set(k, &value)))
                }),
            ),
        ],
    ));
    ops.push((
        "bulk_set100",
        vec![
            (
                "libmemcached-rs",
                Box::new(|| {
                    for b in &batches {
                        ours.bulk_set(b.iter().map(|k| (*k, &value)), 0).unwrap();
                    }
                }),
            ),
            (
                "raw",
                Box::new(|| batches.iter().for_each(|b| raw_bulk.bulk_set(b, &value))),
            ),
        ],
    ));

    if let Some((op, name)) = &config.only {
        let (_, impls) = ops.iter().find(|(o, _)| o == op).expect("a known op");
        let (_, run) = impls
            .iter()
            .find(|(n, _)| n == name)
            .expect("a known implementation");
        // Store the keys first, so reads hit.
        (ops[0].1[1].1)();
        measured(run);
        return Ok(());
    }

    // Every implementation of every op runs once per round, in rotating order.
    let mut rates: HashMap<(&str, &str), Vec<f64>> = HashMap::new();
    for round in 0..config.rounds {
        for (op, impls) in &ops {
            for i in 0..impls.len() {
                let (name, run) = &impls[(i + round) % impls.len()];
                let start = Instant::now();
                run();
                let rate = config.keys as f64 / start.elapsed().as_secs_f64();
                rates.entry((op, name)).or_default().push(rate);
            }
        }
    }

    let median = |op: &str, name: &str| -> Option<f64> {
        let mut r = rates.get(&(op, name))?.clone();
        r.sort_by(f64::total_cmp);
        Some(r[r.len() / 2])
    };
    for (op, impls) in &ops {
        for (name, _) in impls {
            let all = &rates[&(*op, *name)];
            println!(
                r#"{{"op": "{op}", "impl": "{name}", "protocol": "{protocol}", "ops_per_sec": {:.0}, "rounds": [{}]}}"#,
                median(op, name).unwrap(),
                all.iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let ours = median(op, "libmemcached-rs").unwrap();
        let mut line = format!(
            r#"{{"op": "{op}", "protocol": "{protocol}", "ratio_vs_raw": {:.3}"#,
            ours / median(op, "raw").unwrap()
        );
        if let Some(peer) = median(op, "memcache") {
            line.push_str(&format!(r#", "ratio_vs_memcache": {:.3}"#, ours / peer));
        }
        println!("{line}}}");
    }
    println!(
        r#"{{"op": "bulk_set100", "protocol": "{protocol}", "ratio_vs_set": {:.2}}}"#,
        median("bulk_set100", "libmemcached-rs").unwrap()
            / median("set", "libmemcached-rs").unwrap()
    );

    // Threads through the pools: gets, one reservation per get, as a request handler would.
    let pool = ClientPool::new(ours.try_clone()?, 2)?;
    let mapped = ThreadMappedPool::new(ours.try_clone()?);
    let through_pool = |threads: usize| {
        std::thread::scope(|s| {
            for chunk in keys.chunks(keys.len() / threads) {
                let pool = &pool;
                s.spawn(move || {
                    for k in chunk {
                        check(&pool.reserve().unwrap().get::<Vec<u8>>(k).unwrap().unwrap());
                    }
                });
            }
        })
    };
    let through_mapped = |threads: usize| {
        std::thread::scope(|s| {
            for chunk in keys.chunks(keys.len() / threads) {
                let mapped = &mapped;
                s.spawn(move || {
                    for k in chunk {
                        check(
                            &mapped
                                .reserve()
                                .unwrap()
                                .get::<Vec<u8>>(k)
                                .unwrap()
                                .unwrap(),
                        );
                    }
                });
            }
        })
    };
    let pools: [(&str, &dyn Fn(usize)); 2] = [
        ("ClientPool", &through_pool),
        ("ThreadMappedPool", &through_mapped),
    ];
    let mut pooled: HashMap<(&str, usize), Vec<f64>> = HashMap::new();
    for _ in 0..config.rounds {
        for threads in [1, 2] {
            for (name, run) in pools {
                let start = Instant::now();
                run(threads);
                let rate = config.keys as f64 / start.elapsed().as_secs_f64();
                pooled.entry((name, threads)).or_default().push(rate);
            }
        }
    }
    for (name, _) in pools {
        let mut rate = |threads| {
            let r = pooled.get_mut(&(name, threads)).unwrap();
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        };
        let (one, two) = (rate(1), rate(2));
        for (threads, r) in [(1, one), (2, two)] {
            println!(
                r#"{{"op": "get", "impl": "{name}", "threads": {threads}, "protocol": "{protocol}", "ops_per_sec": {r:.0}}}"#
            );
        }
        println!(
            r#"{{"op": "get", "impl": "{name}", "protocol": "{protocol}", "ratio_2_threads_vs_1": {:.2}}}"#,
            two / one
        );
    }
    Ok(())
}

/// The measured part of an `--only` run, kept out of line so that
/// `valgrind --tool=callgrind --toggle-collect='*measured*'` counts just its instructions.
#[inline(never)]
fn measured(run: &dyn Fn()) {
    run();
}

fn check(value: &[u8]) {
    assert_eq!(value.len(), VALUE_LEN);
}

fn parse_args() -> Config {
    let mut config = Config {
        keys: 10_000,
        rounds: 5,
        binary: false,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> usize {
            args.next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{what} needs a number"))
        };
        match arg.as_str() {
            "--keys" => config.keys = number("--keys").max(BATCH) / BATCH * BATCH,
            "--rounds" => config.rounds = number("--rounds").max(1),
            "--binary" => config.binary = true,
            "--only" => {
                let (op, name) = (args.next(), args.next());
                config.only = op.zip(name);
            }
            "--bench" => {} // passed by `cargo bench`
            other => panic!(
                "unknown argument {other:?} (--keys N, --rounds N, --binary, --only OP IMPL)"
            ),
        }
    }
    config
}

/// libmemcached called directly, as a C program would, with the same settings as the crate's
/// defaults (TCP_NODELAY on).
struct Raw(*mut sys::memcached_st);

impl Raw {
    fn new(port: u16, binary: bool) -> Raw {
        let host = CString::new("127.0.0.1").unwrap();
        // SAFETY: a fresh handle, configured before use and freed in Drop.
        unsafe {
            let memc = sys::memcached_create(std::ptr::null_mut());
            sys::memcached_behavior_set(memc, sys::MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
            sys::memcached_behavior_set(
                memc,
                sys::MEMCACHED_BEHAVIOR_BINARY_PROTOCOL,
                binary.into(),
            );
            assert_eq!(
                sys::memcached_server_add(memc, host.as_ptr(), port),
                sys::MEMCACHED_SUCCESS
            );
            Raw(memc)
        }
    }

    fn set(&self, key: &str, value: &[u8]) {
        // SAFETY: key and value describe live slices.
        let rc = unsafe {
            sys::memcached_set(
                self.0,
                key.as_ptr().cast(),
                key.len(),
                value.as_ptr().cast(),
                value.len(),
                0,
                0,
            )
        };
        assert_eq!(rc, sys::MEMCACHED_SUCCESS);
    }

    fn get(&self, key: &str) -> Vec<u8> {
        let (mut len, mut flags, mut rc) = (0, 0, 0);
        // SAFETY: the key describes a live slice; the returned buffer is copied, then freed.
        unsafe {
            let ptr = sys::memcached_get(
                self.0,
                key.as_ptr().cast(),
                key.len(),
                &mut len,
                &mut flags,
                &mut rc,
            );
            assert_eq!(rc, sys::MEMCACHED_SUCCESS);
            let value = std::slice::from_raw_parts(ptr.cast::<u8>(), len).to_vec();
            libc::free(ptr.cast());
            value
        }
    }

    /// One mget and a fetch loop into one reused result, collecting a map from key to value
    /// (what a multi-get returns to its caller).
    fn get_multi(&self, keys: &[&str]) -> HashMap<Vec<u8>, Vec<u8>> {
        let pointers: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr().cast()).collect();
        let lengths: Vec<usize> = keys.iter().map(|k| k.len()).collect();
        let mut found = HashMap::with_capacity(keys.len());
        // SAFETY: the arrays describe live keys; the result lives in this frame and is freed.
        unsafe {
            assert_eq!(
                sys::memcached_mget(self.0, pointers.as_ptr(), lengths.as_ptr(), keys.len()),
                sys::MEMCACHED_SUCCESS
            );
            let mut storage = MaybeUninit::<sys::memcached_result_st>::uninit();
            let result = sys::memcached_result_create(self.0, storage.as_mut_ptr());
            let mut rc = 0;
            while !sys::memcached_fetch_result(self.0, result, &mut rc).is_null() {
                let key = std::slice::from_raw_parts(
                    sys::memcached_result_key_value(result).cast::<u8>(),
                    sys::memcached_result_key_length(result),
                );
                let value = std::slice::from_raw_parts(
                    sys::memcached_result_value(result).cast::<u8>(),
                    sys::memcached_result_length(result),
                );
                found.insert(key.to_vec(), value.to_vec());
            }
            assert!(rc == sys::MEMCACHED_END || rc == sys::MEMCACHED_NOTFOUND);
            sys::memcached_result_free(result);
        }
        found
    }

    /// One mget and a fetch loop into one reused result, handing each key and value to `each`
    /// without copying them (what an aggregating caller does).
    fn get_multi_each(&self, keys: &[&str], mut each: impl FnMut(&[u8], &[u8])) {
        let pointers: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr().cast()).collect();
        let lengths: Vec<usize> = keys.iter().map(|k| k.len()).collect();
        // SAFETY: the arrays describe live keys; the result lives in this frame and is freed.
        unsafe {
            assert_eq!(
                sys::memcached_mget(self.0, pointers.as_ptr(), lengths.as_ptr(), keys.len()),
                sys::MEMCACHED_SUCCESS
            );
            let mut storage = MaybeUninit::<sys::memcached_result_st>::uninit();
            let result = sys::memcached_result_create(self.0, storage.as_mut_ptr());
            let mut rc = 0;
            while !sys::memcached_fetch_result(self.0, result, &mut rc).is_null() {
                each(
                    std::slice::from_raw_parts(
                        sys::memcached_result_key_value(result).cast::<u8>(),
                        sys::memcached_result_key_length(result),
                    ),
                    std::slice::from_raw_parts(
                        sys::memcached_result_value(result).cast::<u8>(),
                        sys::memcached_result_length(result),
                    ),
                );
            }
            assert!(rc == sys::MEMCACHED_END || rc == sys::MEMCACHED_NOTFOUND);
            sys::memcached_result_free(result);
        }
    }

    /// A handle for bulk loads, as the crate makes one: noreply and buffered writes (ASCII).
    fn quiet_and_buffered(&self, on: bool) {
        for flag in [
            sys::MEMCACHED_BEHAVIOR_NOREPLY,
            sys::MEMCACHED_BEHAVIOR_BUFFER_REQUESTS,
        ] {
            // SAFETY: behavior flags taking a boolean.
            unsafe { sys::memcached_behavior_set(self.0, flag, on.into()) };
        }
    }

    /// The sets, a flush, then one get to wait for the server to take them.
    fn bulk_set(&self, keys: &[&str], value: &[u8]) {
        for k in keys {
            // SAFETY: key and value describe live slices.
            let rc = unsafe {
                sys::memcached_set(
                    self.0,
                    k.as_ptr().cast(),
                    k.len(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                    0,
                )
            };
            assert!(rc == sys::MEMCACHED_SUCCESS || rc == sys::MEMCACHED_BUFFERED);
        }
        // SAFETY: the handle is valid.
        let rc = unsafe { sys::memcached_flush_buffers(self.0) };
        assert_eq!(rc, sys::MEMCACHED_SUCCESS);
        check(&self.get(keys[keys.len() - 1]));
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and not used after this.
        unsafe { sys::memcached_free(self.0) }
    }
}
