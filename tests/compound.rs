//! The compound fault matrix: two of three servers behind misbehaving [`FaultProxy`]s at once,
//! every pair of faults (pass included), both protocols, for `get_multi`, its partial and
//! streaming forms, `AsyncClient`'s merged gets, and the multi-key writes.
//!
//! Each key must come back as the truth: a value only its own, a miss only for a key that is
//! not there, a failure only with the error of the server that holds the key; never silence (a
//! key in none of these), and never a write reported done that the server does not hold, nor
//! one reported done or not done on a malformed answer. Keys of the healthy servers must come
//! back found, unless a reply that names a key not asked put every key of the call in doubt
//! (libmemcached does not say which server sent an item).
//!
//! The faults that replace the answers to writes (`write: ...`) let the replies to gets pass,
//! so for reads their servers are healthy. A binary client without credentials meets them on
//! reads too: after a miss it asks each server once whether it demands SASL, with a delete.
//!
//! Some cells with these faults run through the shield (`ClientBuilder::shield`), which refuses
//! the malformed answers before libmemcached 1.1.4 reads them. In ASCII the writes do:
//! libmemcached aborts the process when a storage command is answered with a value
//! (storage.cc:257), and answered with a length of 2^32 or -1 it reallocates its result buffer
//! to 4 GiB or waits a poll timeout. In binary every cell with `write: length -1` does:
//! unshielded, libmemcached takes the GETK that answers a write (or the probe) for a value of
//! 2^32 - 1 bytes, reallocates its result buffer to 4 GiB (address space, kept until the client
//! drops) and waits a poll timeout for the bytes before the call fails. The other binary cells
//! run unshielded: libmemcached refuses the GET of `write: value` and `write: length 2^32` at
//! once (it takes no GET responses, and leaves the body unread), and the crate turns the GETK
//! of `write: other key` into a protocol error. Shielded clients wait longer for a server (see
//! `SHIELDED_POLL`).
//!
//! `cargo test --all-features --test compound` runs a fixed sample of pairs; `-- --ignored`
//! runs every pair and prints the counts (`--nocapture`). Needs the `async` feature, for the
//! merged gets, and `shield` (CI runs `cargo test --all-features`).
#![cfg(all(feature = "async", feature = "shield"))]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use libmemcached::testing::{BadAnswer, Fault, FaultProxy, Memcached};
use libmemcached::{AsyncClient, Behavior, Client, Error, Partial};

/// The client's poll timeout: what one wait for a silent server may cost.
const POLL: Duration = Duration::from_millis(300);
/// A shielded client's poll timeout. Each answer takes one more hop, through the relay's one
/// thread for all of the client's connections, which competes for the CPU with the servers,
/// their fault proxies and the other tests: a margin over `POLL`, so that a healthy server's
/// answer is never late. (`delay 1s` is then under the poll timeout: such a server's replies
/// end.)
const SHIELDED_POLL: Duration = Duration::from_secs(2);
/// Keys per call, about a third on each server.
const KEYS: usize = 36;

fn poll_timeout(shield: bool) -> Duration {
    if shield { SHIELDED_POLL } else { POLL }
}

/// A fault and its name in the report.
type Named = (&'static str, Fault);

fn faults() -> Vec<Named> {
    vec![
        ("pass", Fault::Pass),
        ("blackhole", Fault::Blackhole),
        ("reset", Fault::Reset),
        ("truncate", Fault::Truncate),
        ("garbage", Fault::Garbage),
        ("wrong key", Fault::WrongKey),
        ("length +3", Fault::LyingLength(3)),
        ("length -3", Fault::LyingLength(-3)),
        ("long line", Fault::LongLine),
        ("delay 1s", Fault::Delay(Duration::from_secs(1))),
        ("write: value", Fault::BadWriteAnswer(BadAnswer::Value)),
        (
            "write: other key",
            Fault::BadWriteAnswer(BadAnswer::OtherKey),
        ),
        (
            "write: length 2^32",
            Fault::BadWriteAnswer(BadAnswer::HugeLength),
        ),
        (
            "write: length -1",
            Fault::BadWriteAnswer(BadAnswer::NegativeLength),
        ),
    ]
}

/// Whether a cell's client needs the shield (see the top of the file).
fn shielded(binary: bool, op: Op, faults: [Fault; 2]) -> bool {
    let writing = matches!(op, Op::SetMulti | Op::DeleteMulti);
    faults.iter().any(|fault| match fault {
        Fault::BadWriteAnswer(BadAnswer::NegativeLength) => writing || binary,
        Fault::BadWriteAnswer(_) => writing && !binary,
        _ => false,
    })
}

/// Every unordered pair of faults, each fault with itself too.
fn pairs() -> Vec<(Named, Named)> {
    let faults = faults();
    let mut pairs = Vec::new();
    for i in 0..faults.len() {
        for j in i..faults.len() {
            pairs.push((faults[i], faults[j]));
        }
    }
    pairs
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    GetMulti,
    GetMultiPartial,
    GetMultiEach,
    AsyncGets,
    SetMulti,
    DeleteMulti,
}

const OPS: [Op; 6] = [
    Op::GetMulti,
    Op::GetMultiPartial,
    Op::GetMultiEach,
    Op::AsyncGets,
    Op::SetMulti,
    Op::DeleteMulti,
];

/// What the cells found, summed.
#[derive(Default, Debug)]
struct Counts {
    cells: usize,
    keys: usize,
    found: usize,
    misses: usize,
    failed: usize,
    silent: usize,
    misattributed: usize,
    wrong_values: usize,
    false_misses: usize,
    false_successes: usize,
    healthy_failed: usize,
}

impl Counts {
    fn bad(&self) -> usize {
        self.silent
            + self.misattributed
            + self.wrong_values
            + self.false_misses
            + self.false_successes
            + self.healthy_failed
    }
}

/// Three memcached servers, each behind its own fault proxy.
struct Cluster {
    servers: Vec<Memcached>,
    proxies: Vec<FaultProxy>,
    specs: Vec<String>,
    runtime: tokio::runtime::Runtime,
}

impl Cluster {
    fn start() -> Cluster {
        let servers: Vec<Memcached> = (0..3).map(|_| Memcached::start().unwrap()).collect();
        let proxies: Vec<FaultProxy> = servers
            .iter()
            .map(|s| FaultProxy::start(s.spec()).unwrap())
            .collect();
        let specs = proxies.iter().map(FaultProxy::spec).collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Cluster {
            servers,
            proxies,
            specs,
            runtime,
        }
    }

    fn client(&self, binary: bool, shield: bool) -> Client {
        let builder = Client::builder()
            .servers(&self.specs)
            .binary(binary)
            .behavior(Behavior::PollTimeout(poll_timeout(shield)))
            .behavior(Behavior::RetryTimeout(Duration::ZERO));
        match shield {
            true => builder.shield(),
            false => builder,
        }
        .build()
        .unwrap()
    }

    /// The memcached server behind the proxy `spec`.
    fn upstream(&self, spec: &str) -> String {
        let i = self.specs.iter().position(|s| s == spec).unwrap();
        self.servers[i].spec()
    }

    /// Runs one cell: `faults` on the first two servers, the third healthy.
    fn cell(&self, binary: bool, op: Op, faults: [Fault; 2], counts: &mut Counts) -> Vec<String> {
        let shield = shielded(binary, op, faults);
        let mc = self.client(binary, shield);
        let poll = poll_timeout(shield);
        let keys = paired_keys(&mc, &self.specs);
        let holder = holders(&mc, &keys);
        // A third of the keys are absent, in pairs (see `paired_keys`); the others hold a value
        // naming their key.
        let present = |i: usize| (i / 2) % 3 != 0;
        for (i, key) in keys.iter().enumerate() {
            let upstream = self.upstream(&holder[i]);
            if present(i) {
                common::raw_set(&upstream, key, 0, value_of(key).as_bytes());
            }
        }
        for (proxy, fault) in self.proxies.iter().zip(faults) {
            proxy.set_fault(fault);
        }
        // The third server, and either of the others whose fault is `Pass` (or, for reads,
        // replaces only the answers to writes).
        let fault_of = |spec: &str| match self.specs.iter().position(|s| s == spec) {
            Some(i) if i < 2 => faults[i],
            _ => Fault::Pass,
        };
        let reading = !matches!(op, Op::SetMulti | Op::DeleteMulti);
        let healthy = |spec: &str| match fault_of(spec) {
            Fault::Pass => true,
            Fault::BadWriteAnswer(_) => reading,
            _ => false,
        };
        let mut problems = Vec::new();
        match op {
            Op::GetMulti | Op::GetMultiPartial | Op::GetMultiEach | Op::AsyncGets => {
                let outcome = self.read(&mc, op, &keys);
                for (i, key) in keys.iter().enumerate() {
                    counts.keys += 1;
                    let (server, fault) = (&holder[i], fault_of(&holder[i]));
                    let what = match &outcome[i] {
                        Read::Value(v) if *v == value_of(key) && present(i) => {
                            counts.found += 1;
                            continue;
                        }
                        Read::Value(v) => {
                            counts.wrong_values += 1;
                            format!("the value {v:?}")
                        }
                        // A miss is true only if the key is absent and its server said so.
                        Read::Miss if !present(i) && says_end(fault, poll) => {
                            counts.misses += 1;
                            continue;
                        }
                        Read::Miss => {
                            counts.false_misses += 1;
                            "a miss".to_string()
                        }
                        // The strict form names only the failed keys.
                        Read::Unnamed
                            if healthy(server) || (!present(i) && says_end(fault, poll)) =>
                        {
                            counts.misses += 1;
                            continue;
                        }
                        Read::Unnamed => {
                            counts.silent += 1;
                            "not named by the error".to_string()
                        }
                        Read::Silent => {
                            counts.silent += 1;
                            "an error naming no server".to_string()
                        }
                        Read::Failed(named, _) if named == server && !healthy(server) => {
                            counts.failed += 1;
                            continue;
                        }
                        // A reply for a key not asked of its server fails every server's keys,
                        // each under its own server: libmemcached does not say who sent it.
                        Read::Failed(named, why) if named == server && why.contains(STRAY) => {
                            counts.failed += 1;
                            continue;
                        }
                        Read::Failed(named, why) if named == server => {
                            counts.healthy_failed += 1;
                            format!("a failure of its healthy server: {why}")
                        }
                        Read::Failed(named, _) => {
                            counts.misattributed += 1;
                            format!("a failure naming {named}")
                        }
                    };
                    problems.push(format!("{key} on {server} ({fault:?}): {what}"));
                }
            }
            Op::SetMulti | Op::DeleteMulti => {
                let items: Vec<(&str, String)> = keys
                    .iter()
                    .map(|k| (k.as_str(), format!("new:{k}")))
                    .collect();
                let partial: Partial<Vec<&str>> = match op {
                    Op::SetMulti => mc.set_multi_partial(items.iter().map(|(k, v)| (*k, v)), 0),
                    _ => mc.delete_multi_partial(keys.iter().map(String::as_str)),
                }
                .unwrap();
                let failed = failed_keys(&partial.failures);
                for (proxy, _) in self.proxies.iter().zip(faults) {
                    proxy.set_fault(Fault::Pass);
                }
                for (i, key) in keys.iter().enumerate() {
                    counts.keys += 1;
                    let stored = common::raw_get(&self.upstream(&holder[i]), key).map(|(_, v)| v);
                    if let Some((server, why)) = failed.get(key.as_bytes()) {
                        if *server != holder[i] {
                            counts.misattributed += 1;
                            problems
                                .push(format!("{key} on {}: failure names {server}", holder[i]));
                        } else if healthy(&holder[i]) {
                            counts.healthy_failed += 1;
                            problems.push(format!("{key}: failed on the healthy server: {why}"));
                        } else {
                            counts.failed += 1;
                        }
                        continue;
                    }
                    let not_done = partial.ok.contains(&key.as_str());
                    // The write reached the server, but what came back was no answer to it:
                    // neither done nor not done can be reported.
                    if let Fault::BadWriteAnswer(_) = fault_of(&holder[i]) {
                        counts.false_successes += 1;
                        let reported = if not_done { "not done" } else { "done" };
                        problems.push(format!(
                            "{key} on {} ({:?}): reported {reported} on a malformed answer",
                            holder[i],
                            fault_of(&holder[i])
                        ));
                        continue;
                    }
                    let truth = match op {
                        Op::SetMulti => stored.as_deref() == Some(format!("new:{key}").as_bytes()),
                        // Deleting an absent key is reported as not done.
                        _ => stored.is_none(),
                    };
                    match (not_done, truth) {
                        (false, true) => counts.found += 1,
                        (true, _) if op == Op::DeleteMulti && !present(i) => counts.misses += 1,
                        (false, false) => {
                            counts.false_successes += 1;
                            problems.push(format!("{key} on {}: reported done, is not", holder[i]));
                        }
                        (true, _) => {
                            counts.false_misses += 1;
                            problems.push(format!("{key} on {}: reported not done", holder[i]));
                        }
                    }
                }
            }
        }
        for proxy in &self.proxies {
            proxy.set_fault(Fault::Pass);
        }
        counts.cells += 1;
        problems
    }

    /// What one read operation made of each key.
    fn read(&self, mc: &Client, op: Op, keys: &[String]) -> Vec<Read> {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (values, failures): (HashMap<String, String>, Vec<libmemcached::KeyFailure>) = match op
        {
            Op::GetMulti => match mc.get_multi::<_, String>(refs.iter().copied()) {
                Ok(found) => (owned(found), Vec::new()),
                Err(Error::Multi { failures }) => (HashMap::new(), failures),
                Err(other) => panic!("get_multi: {other:?}"),
            },
            Op::GetMultiPartial => {
                let partial = mc
                    .get_multi_partial::<_, String>(refs.iter().copied())
                    .unwrap();
                (owned(partial.ok), partial.failures)
            }
            Op::GetMultiEach => {
                let mut found = HashMap::new();
                let failures = match mc.get_multi_each(refs.iter().copied(), |item| {
                    let key = String::from_utf8(item.key().to_vec()).unwrap();
                    found.insert(key, String::from_utf8_lossy(item.value()).into_owned());
                }) {
                    Ok(()) => Vec::new(),
                    Err(Error::Multi { failures }) => failures,
                    Err(other) => panic!("get_multi_each: {other:?}"),
                };
                // A failed key's value may have been handed over before its server broke
                // off: what counts is that the key is reported failed.
                for key in failures.iter().flat_map(|f| &f.keys) {
                    found.remove(std::str::from_utf8(key).unwrap());
                }
                (found, failures)
            }
            Op::AsyncGets => return self.async_reads(mc, keys),
            _ => unreachable!(),
        };
        let failed = failed_keys(&failures);
        keys.iter()
            .map(|k| match (values.get(k), failed.get(k.as_bytes())) {
                (Some(v), None) => Read::Value(v.clone()),
                (None, Some((server, why))) => Read::Failed(server.clone(), why.clone()),
                (None, None) if matches!(op, Op::GetMulti) && !failures.is_empty() => Read::Unnamed,
                (None, None) => Read::Miss,
                (Some(v), Some(_)) => Read::Value(format!("{v} (and failed)")),
            })
            .collect()
    }

    /// Concurrent gets of every key through one worker, so that they merge into multi-gets.
    fn async_reads(&self, mc: &Client, keys: &[String]) -> Vec<Read> {
        let client = AsyncClient::builder(mc.try_clone().unwrap())
            .workers(1)
            .build()
            .unwrap();
        let results = self.runtime.block_on(async {
            let calls: Vec<_> = keys.iter().map(|k| client.get::<String>(k)).collect();
            futures_join_all(calls).await
        });
        results.into_iter().map(Read::from_async).collect()
    }
}

/// `KEYS` keys in pairs that differ only in the last byte's lowest bit (the names `WrongKey`
/// trades), both of a pair on one server, and at least four on each server.
///
/// A server that answers under the name of another key it was also asked, or of a key another
/// server holds, tells a lie that no client can catch when that key is absent or its server
/// failed: the reply is one that could have been the truth, and libmemcached does not say
/// which server sent an item. Keeping each pair on one server, present or absent together,
/// leaves `WrongKey` only lies that show (a second reply for a key, replies out of order).
fn paired_keys(mc: &Client, specs: &[String]) -> Vec<String> {
    for _ in 0..100 {
        let base = common::key("compound");
        let server = |key: &str| mc.server_for_key(key).unwrap().to_string();
        let keys: Vec<String> = (0..KEYS / 2)
            .flat_map(|pair| {
                let (even, odd) = (0..)
                    .map(|tag| {
                        (
                            format!("{base}:{pair}:{tag}:0"),
                            format!("{base}:{pair}:{tag}:1"),
                        )
                    })
                    .find(|(even, odd)| server(even) == server(odd))
                    .unwrap();
                [even, odd]
            })
            .collect();
        let spread = specs
            .iter()
            .all(|spec| keys.iter().filter(|k| server(k) == *spec).count() >= 4);
        if spread {
            return keys;
        }
    }
    panic!("no key base spreads the pairs over {specs:?}");
}

/// The server each key is on.
fn holders(mc: &Client, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| mc.server_for_key(k).unwrap().to_string())
        .collect()
}

/// Awaits every future, in order.
async fn futures_join_all<F: std::future::Future>(calls: Vec<F>) -> Vec<F::Output> {
    let handles: Vec<_> = calls.into_iter().map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    for call in handles {
        out.push(call.await);
    }
    out
}

enum Read {
    Value(String),
    Miss,
    /// The server the failure names, and the error.
    Failed(String, String),
    /// Not among the failures of a strict multi-get's error (which returns no values).
    Unnamed,
    /// An error that names no server.
    Silent,
}

impl Read {
    /// What an `AsyncClient::get` made of its key.
    fn from_async(result: libmemcached::Result<Option<String>>) -> Read {
        match result {
            Ok(Some(v)) => Read::Value(v),
            Ok(None) => Read::Miss,
            Err(e) => match e.server() {
                Some(server) => Read::Failed(server.to_string(), e.to_string()),
                None => Read::Silent,
            },
        }
    }
}

/// Whether a server behind this fault can end a reply cleanly (passing its `END` on) for a
/// client with this poll timeout.
fn says_end(fault: Fault, poll: Duration) -> bool {
    match fault {
        Fault::Pass | Fault::WrongKey | Fault::LyingLength(_) | Fault::BadWriteAnswer(_) => true,
        Fault::Delay(delay) => delay < poll,
        _ => false,
    }
}

fn value_of(key: &str) -> String {
    format!("value of {key}")
}

fn owned<K: AsRef<str>>(map: HashMap<K, String>) -> HashMap<String, String> {
    map.into_iter()
        .map(|(k, v)| (k.as_ref().to_string(), v))
        .collect()
}

/// Each failed key, the server its failure names and the error.
fn failed_keys(failures: &[libmemcached::KeyFailure]) -> HashMap<Vec<u8>, (String, String)> {
    failures
        .iter()
        .flat_map(|f| {
            let server = f.error.server().map(|s| s.to_string()).unwrap_or_default();
            let why = f.error.to_string();
            f.keys
                .iter()
                .map(move |k| (k.clone(), (server.clone(), why.clone())))
        })
        .collect()
}

/// What an error says of a reply that no server can be blamed for alone.
const STRAY: &str = "libmemcached does not say which";

fn run(pairs: &[(Named, Named)]) -> Counts {
    let cluster = Cluster::start();
    let mut counts = Counts::default();
    let mut problems = Vec::new();
    for &((name_a, a), (name_b, b)) in pairs {
        for binary in [false, true] {
            let protocol = if binary { "binary" } else { "ascii" };
            for op in OPS {
                for problem in cluster.cell(binary, op, [a, b], &mut counts) {
                    problems.push(format!("{protocol} {op:?} [{name_a}, {name_b}]: {problem}"));
                }
            }
        }
    }
    eprintln!("{counts:?}");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(counts.bad(), 0);
    counts
}

/// A fixed sample of the pairs: each fault at least once, with another fault and with pass, and
/// two silent servers at once (libmemcached ends a fetch when its poll finds neither readable).
#[test]
fn compound_faults_sample() {
    let all = pairs();
    let sample: Vec<_> = all
        .iter()
        .copied()
        .filter(|((a, _), (b, _))| {
            matches!(
                (*a, *b),
                ("pass", "pass")
                    | ("pass", "long line")
                    | ("blackhole", "reset")
                    | ("blackhole", "delay 1s")
                    | ("reset", "long line")
                    | ("truncate", "garbage")
                    | ("wrong key", "length -3")
                    | ("length +3", "delay 1s")
                    | ("garbage", "wrong key")
                    | ("pass", "write: other key")
                    | ("pass", "write: length -1")
                    | ("write: value", "write: length 2^32")
            )
        })
        .collect();
    assert_eq!(sample.len(), 12);
    run(&sample);
}

/// Every pair of faults.
#[test]
#[ignore = "every pair: about twelve minutes"]
fn compound_faults_every_pair() {
    let counts = run(&pairs());
    assert_eq!(counts.cells, pairs().len() * 2 * OPS.len());
}

/// One of three servers resetting connections on and off while threads run multi-gets and
/// an `AsyncClient` merges concurrent gets: no key is ever silent, misattributed or wrong, and
/// the healthy servers' keys are always found. (Concurrent calls once saw libmemcached end a
/// fetch while servers still owed replies, and every key of the call went silent.)
#[test]
fn resets_under_concurrent_multi_gets() {
    let cluster = Cluster::start();
    let mc = cluster.client(false, false);
    let keys = paired_keys(&mc, &cluster.specs);
    let holder = holders(&mc, &keys);
    for key in &keys {
        mc.set(key, value_of(key), 0).unwrap();
    }
    let faulty = cluster.specs[0].clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let problems = std::sync::Mutex::new(Vec::new());
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let judge = |reads: Vec<Read>| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (i, read) in reads.into_iter().enumerate() {
            let problem = match read {
                Read::Value(v) if v == value_of(&keys[i]) => continue,
                Read::Failed(server, _) if server == holder[i] && server == faulty => continue,
                Read::Unnamed if holder[i] != faulty => continue,
                Read::Value(v) => format!("the value {v:?}"),
                Read::Failed(server, why) => format!("a failure naming {server}: {why}"),
                Read::Miss => "a miss".to_string(),
                Read::Unnamed => "not named by the error".to_string(),
                Read::Silent => "an error naming no server".to_string(),
            };
            problems
                .lock()
                .unwrap()
                .push(format!("{} on {}: {problem}", keys[i], holder[i]));
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut on = false;
            while std::time::Instant::now() < deadline {
                on = !on;
                cluster.proxies[0].set_fault(if on { Fault::Reset } else { Fault::Pass });
                std::thread::sleep(Duration::from_millis(15));
            }
            cluster.proxies[0].set_fault(Fault::Pass);
        });
        for worker in 0..4 {
            let (cluster, keys, judge) = (&cluster, &keys, &judge);
            s.spawn(move || {
                let mc = cluster.client(worker % 2 == 1, false);
                let ops = [Op::GetMulti, Op::GetMultiPartial, Op::GetMultiEach];
                for round in 0..2000 {
                    if std::time::Instant::now() >= deadline {
                        break;
                    }
                    judge(cluster.read(&mc, ops[round % ops.len()], keys));
                }
            });
        }
        let (keys, judge) = (&keys, &judge);
        let mc = cluster.client(false, false);
        s.spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let client = AsyncClient::builder(mc).workers(2).build().unwrap();
            for _ in 0..2000 {
                if std::time::Instant::now() >= deadline {
                    break;
                }
                let results = runtime.block_on(async {
                    let calls: Vec<_> = keys.iter().map(|k| client.get::<String>(k)).collect();
                    futures_join_all(calls).await
                });
                judge(results.into_iter().map(Read::from_async).collect());
            }
        });
    });
    let problems = problems.into_inner().unwrap();
    let calls = calls.into_inner();
    eprintln!("{calls} calls, {} problems", problems.len());
    assert!(calls > 20, "only {calls} calls");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems[..problems.len().min(40)].join("\n")
    );
}
