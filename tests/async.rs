//! `AsyncClient` against real memcached processes: merged gets give every caller its own key's
//! result (values, misses, a dead server's errors, decode failures, panics), hot keys reach every
//! caller, cancelled calls never hand a reply to anyone else, a full queue makes callers wait,
//! dropping the last handle stops the workers, and every operation works under tokio's
//! multi-thread and current-thread runtimes and under a plain `block_on`.
//!
//! Tests that need requests to pile up hold the workers with gates: a `gets` of a [`GateValue`],
//! whose decoder blocks the worker running it until the test opens the gate. Nothing waits on a
//! clock.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use libmemcached::testing::{BadAnswer, Fault, FaultProxy, Memcached};
use libmemcached::{
    AsyncCall, AsyncClient, Behavior, BoxError, Client, Compression, Encoded, Error, FromValue,
    ToValue, Value,
};
use tokio::task::JoinHandle;

// ---- helpers ------------------------------------------------------------------------------

fn async_client(specs: &[String], workers: usize) -> AsyncClient {
    AsyncClient::builder(common::client(specs, false))
        .workers(workers)
        .build()
        .unwrap()
}

/// Waits (asynchronously, at most ten seconds) until `done` holds.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Where a gate's worker says it entered, and where it waits for the gate to open.
type GateEnds = (mpsc::Sender<()>, mpsc::Receiver<()>);

/// Gates by number, for [`GateValue`].
static GATES: Mutex<BTreeMap<u64, GateEnds>> = Mutex::new(BTreeMap::new());
static NEXT_GATE: AtomicU64 = AtomicU64::new(0);

/// A value stored as a gate's number, whose decoder (run on the worker that serves a `gets`)
/// tells the test it runs, then blocks the worker until the gate opens, then refuses to decode.
struct GateValue;

impl FromValue for GateValue {
    fn from_value(data: &[u8], _flags: u32) -> Result<Self, BoxError> {
        pass_gate(data)?;
        Err("gate".into())
    }
}

/// Says that the gate numbered in `data` is entered, and waits for it to open.
fn pass_gate(data: &[u8]) -> Result<(), BoxError> {
    let gate: u64 = std::str::from_utf8(data)?.parse()?;
    let (entered, open) = GATES.lock().unwrap().remove(&gate).ok_or("no such gate")?;
    entered.send(())?;
    open.recv_timeout(Duration::from_secs(30))
        .map_err(|_| "the gate was never opened")?;
    Ok(())
}

/// Workers held by gates.
struct Held {
    gates: Vec<mpsc::Sender<()>>,
    calls: Vec<JoinHandle<libmemcached::Result<()>>>,
}

/// Holds `workers` workers: each takes one gate (after finishing whatever it was doing) and
/// blocks on it. Gates are queued one at a time, each once the previous one is held, so that
/// no worker takes two (one that drains the queue for a batch takes the calls behind it).
async fn hold(mc: &AsyncClient, workers: usize) -> Held {
    hold_lane(mc, "gate", workers).await
}

/// [`hold`] for the workers of the lane of `key`'s server.
async fn hold_lane(mc: &AsyncClient, key: &str, workers: usize) -> Held {
    let mut held = Held {
        gates: Vec::new(),
        calls: Vec::new(),
    };
    for _ in 0..workers {
        let (entries, gate) = arm_gate(mc, key).await;
        let mc = mc.clone();
        held.gates.push(gate);
        let key = key.to_owned();
        held.calls.push(tokio::spawn(async move {
            mc.gets::<GateValue>(key).await.map(drop)
        }));
        wait_until("a worker holds the gate", || entries.try_recv().is_ok()).await;
    }
    held
}

/// Stores a new gate under `key`: a get of it as a [`GateValue`] blocks the worker. Returns
/// where the worker says it entered, and the gate to open.
async fn arm_gate(mc: &AsyncClient, key: &str) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered, entries) = mpsc::channel();
    let (gate, open) = mpsc::channel();
    let number = NEXT_GATE.fetch_add(1, Ordering::SeqCst);
    GATES.lock().unwrap().insert(number, (entered, open));
    // Stored by a client of its own, so that the async client's counts hold only the gate.
    let servers: Vec<String> = mc.servers().iter().map(ToString::to_string).collect();
    let writer = Client::new(servers).unwrap();
    writer.set(key, number.to_string(), 0).unwrap();
    (entries, gate)
}

impl Held {
    async fn open(self) {
        for gate in self.gates {
            gate.send(()).unwrap();
        }
        for call in self.calls {
            let result = call.await.unwrap();
            assert!(matches!(result, Err(Error::Decode { .. })), "{result:?}");
        }
    }
}

/// Spawns one get per key, each task asking for its own key's value as a `String`.
fn spawn_gets(
    mc: &AsyncClient,
    keys: &[String],
) -> Vec<JoinHandle<libmemcached::Result<Option<String>>>> {
    keys.iter()
        .map(|key| {
            let (mc, key) = (mc.clone(), key.clone());
            tokio::spawn(async move { mc.get::<String>(key).await })
        })
        .collect()
}

fn keys(tag: &str, n: usize) -> Vec<String> {
    let base = common::key(tag);
    (0..n).map(|i| format!("{base}:{i}")).collect()
}

/// The unique value stored under `key`, generation `generation`.
fn value_of(key: &str, generation: u32) -> String {
    format!("{key}=v{generation}")
}

// ---- merging ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_gets_become_one_multi_get_and_each_caller_gets_its_own_result() {
    let server = common::server();
    let blocking = common::client(server.specs(), false);
    let mc = async_client(server.specs(), 1);
    let stored = keys("merge", 300);
    let missing = keys("merge-miss", 50);
    for key in &stored {
        blocking.set(key, value_of(key, 1), 0).unwrap();
    }
    blocking.set(&stored[0], &[0xffu8, 0x00][..], 0).unwrap();

    let held = hold(&mc, 1).await;
    let all: Vec<String> = stored.iter().chain(&missing).cloned().collect();
    // Three decoded types in one batch: text, bytes, and pylibmc-style `Value`s.
    let mut texts = spawn_gets(&mc, &all[1..]);
    let (first, first_key) = (mc.clone(), all[0].clone());
    let bytes = tokio::spawn(async move { first.get::<Vec<u8>>(first_key).await });
    let (third, third_key) = (mc.clone(), all[1].clone());
    let value = tokio::spawn(async move { third.get::<Value>(third_key).await });
    wait_until("every get is queued", || {
        mc.engine_stats().queue_depth == all.len() + 1
    })
    .await;
    held.open().await;

    assert_eq!(bytes.await.unwrap().unwrap(), Some(vec![0xff, 0x00]));
    let expected = Value::Text(value_of(&all[1], 1));
    assert_eq!(value.await.unwrap().unwrap(), Some(expected));
    for (i, task) in texts.drain(..).enumerate() {
        let key = &all[i + 1];
        let got = task.await.unwrap().unwrap();
        match i + 1 < stored.len() {
            true => assert_eq!(got, Some(value_of(key, 1)), "{key}"),
            false => assert_eq!(got, None, "{key}: a miss"),
        }
    }
    let stats = mc.engine_stats();
    assert_eq!(stats.gets, all.len() as u64 + 1);
    assert_eq!(stats.batches, 1, "{stats:?}");
    assert_eq!(stats.batch_keys, all.len() as u64, "{stats:?}");
    assert_eq!(stats.max_batch_keys, all.len());
    assert_eq!(stats.batch_sizes[8], 1, "one batch of 256 to 511 keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_with_unique_values_each_get_their_own() {
    let server = common::server();
    let blocking = common::client(server.specs(), false);
    let mc = async_client(server.specs(), 2);
    let stored = keys("many", 500);
    for key in &stored {
        blocking.set(key, value_of(key, 7), 0).unwrap();
    }
    let tasks: Vec<_> = (0..2000)
        .map(|i| {
            let (mc, key) = (mc.clone(), stored[(i * 7919) % stored.len()].clone());
            tokio::spawn(async move {
                let got: Option<String> = mc.get(&key).await.unwrap();
                assert_eq!(got, Some(value_of(&key, 7)));
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = mc.engine_stats();
    assert_eq!(stats.gets, 2000);
    assert!(stats.batches < 2000, "some gets were merged: {stats:?}");
    assert!(stats.max_batch_keys > 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_keys_reach_every_caller() {
    let server = common::server();
    let blocking = common::client(server.specs(), false);
    let mc = async_client(server.specs(), 1);
    let hot = keys("hot", 3);
    for key in &hot {
        blocking.set(key, value_of(key, 3), 0).unwrap();
    }
    let held = hold(&mc, 1).await;
    let asked: Vec<String> = (0..300).map(|i| hot[i % 3].clone()).collect();
    let tasks = spawn_gets(&mc, &asked);
    wait_until("every get is queued", || {
        mc.engine_stats().queue_depth == 300
    })
    .await;
    held.open().await;
    for (task, key) in tasks.into_iter().zip(&asked) {
        assert_eq!(task.await.unwrap().unwrap(), Some(value_of(key, 3)));
    }
    let stats = mc.engine_stats();
    assert_eq!((stats.gets, stats.batches, stats.batch_keys), (300, 1, 3));

    // Without holding anything: a thousand tasks on one key, over two workers.
    let mc = async_client(server.specs(), 2);
    let one = vec![hot[0].clone(); 1000];
    for task in spawn_gets(&mc, &one) {
        assert_eq!(task.await.unwrap().unwrap(), Some(value_of(&hot[0], 3)));
    }
    let stats = mc.engine_stats();
    assert_eq!(stats.gets, 1000);
    assert!(stats.batch_keys < 1000, "callers shared fetches: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_off_sends_a_get_per_call() {
    let server = common::server();
    let mc = AsyncClient::builder(common::client(server.specs(), false))
        .workers(1)
        .max_batch(1)
        .build()
        .unwrap();
    let asked = keys("off", 20);
    let held = hold(&mc, 1).await;
    let tasks = spawn_gets(&mc, &asked);
    wait_until("every get is queued", || {
        mc.engine_stats().queue_depth == 20
    })
    .await;
    held.open().await;
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), None);
    }
    let stats = mc.engine_stats();
    assert_eq!(
        (stats.gets, stats.batches, stats.max_batch_keys),
        (20, 20, 1)
    );
}

// ---- sets taken together -------------------------------------------------------------------

/// Spawns one set per key, each of `value(key)`.
fn spawn_sets(
    mc: &AsyncClient,
    keys: &[String],
    value: impl Fn(&str) -> String,
) -> Vec<JoinHandle<libmemcached::Result<()>>> {
    keys.iter()
        .map(|key| {
            let (mc, key, value) = (mc.clone(), key.clone(), value(key));
            tokio::spawn(async move { mc.set(key, value, 0).await })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_sets_go_out_together_and_each_caller_gets_its_own_answer() {
    let server = common::server();
    for binary in [false, true] {
        let client = Client::builder()
            .servers(server.specs())
            .binary(binary)
            .sets_together(true)
            .build()
            .unwrap();
        let mc = AsyncClient::builder(client).workers(1).build().unwrap();
        let all = keys(&format!("together-{binary}"), 300);
        // Over memcached's 1 MiB item limit: refused by the server, in the middle of the run.
        let too_big = all[150].clone();
        let held = hold(&mc, 1).await;
        let tasks = spawn_sets(&mc, &all, |key| match key == too_big {
            true => "x".repeat(2 << 20),
            false => value_of(key, 3),
        });
        wait_until("every set is queued", || {
            mc.engine_stats().queue_depth == all.len()
        })
        .await;
        held.open().await;
        for (task, key) in tasks.into_iter().zip(&all) {
            match (task.await.unwrap(), *key == too_big) {
                (Ok(()), false) => {}
                (
                    Err(Error::TooBig {
                        key: named,
                        server: at,
                        ..
                    }),
                    true,
                ) => {
                    assert_eq!(named, key.as_bytes());
                    assert_eq!(at.map(|a| a.to_string()), Some(server.spec()));
                }
                (other, _) => panic!("binary {binary}: {key}: {other:?}"),
            }
        }
        let stats = mc.engine_stats();
        assert_eq!((stats.sets, stats.set_batches), (300, 1), "{stats:?}");
        // Each key holds its own value, read back by another client.
        for key in &all {
            let read = common::raw_get(&server.spec(), key).map(|(_, v)| v);
            match *key == too_big {
                true => assert_eq!(read, None, "{key}"),
                false => assert_eq!(read, Some(value_of(key, 3).into_bytes()), "{key}"),
            }
        }
        // The worker's connections are in step: a get after the sets reads its own value.
        let got: Option<String> = mc.get(&all[0]).await.unwrap();
        assert_eq!(got, Some(value_of(&all[0], 3)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_to_a_server_whose_answers_are_malformed_fail_each_and_no_other() {
    let servers: Vec<Memcached> = (0..2).map(|_| common::own_server()).collect();
    let bad = FaultProxy::start(servers[1].spec()).unwrap();
    let specs = vec![servers[0].spec(), bad.spec()];
    let client = || {
        Client::builder()
            .servers(&specs)
            // A set sent alone would be an ASCII one, which libmemcached aborts on when the
            // answer is a value.
            .binary(true)
            .behavior(Behavior::PollTimeout(Duration::from_millis(300)))
            .build()
            .unwrap()
    };
    let blocking = client();
    let all = common::spread_keys(&blocking, "bad-answers", 40, &specs, 10);
    let on_bad: BTreeSet<&String> = all
        .iter()
        .filter(|k| blocking.server_for_key(k).unwrap().to_string() == specs[1])
        .collect();
    let gate = (0..)
        .map(|i| format!("bad-gate{i}"))
        .find(|k| blocking.server_for_key(k).unwrap().to_string() == specs[1])
        .unwrap();
    let mc = AsyncClient::builder(client()).workers(1).build().unwrap();
    for (round, answer) in [BadAnswer::Value, BadAnswer::OtherKey]
        .into_iter()
        .enumerate()
    {
        // The bad server's sets wait behind a gate, to go out together.
        let held = hold_lane(&mc, &gate, 1).await;
        bad.set_fault(Fault::BadWriteAnswer(answer));
        let before = mc.engine_stats();
        let round = round as u32;
        let tasks = spawn_sets(&mc, &all, |key| value_of(key, round));
        wait_until("the bad server's sets are queued", || {
            mc.engine_stats().queue_depth == on_bad.len()
        })
        .await;
        held.open().await;
        for (task, key) in tasks.into_iter().zip(&all) {
            match (task.await.unwrap(), on_bad.contains(key)) {
                (Ok(()), false) => {}
                (Err(error), true) => {
                    assert_eq!(
                        error.server().map(ToString::to_string),
                        Some(specs[1].clone())
                    );
                }
                (other, _) => panic!("{answer:?}: {key}: {other:?}"),
            }
        }
        let stats = mc.engine_stats();
        assert_eq!(stats.sets - before.sets, all.len() as u64);
        let healthy = (all.len() - on_bad.len()) as u64;
        assert!(
            stats.set_batches - before.set_batches <= healthy + 1,
            "{stats:?}"
        );
        bad.set_fault(Fault::Pass);
        // The healthy server stored its keys; the connections are in step again.
        for key in &all {
            if !on_bad.contains(key) {
                let got: Option<String> = mc.get(key).await.unwrap();
                assert_eq!(got, Some(value_of(key, round)), "{answer:?}");
            }
        }
    }
}

// ---- per-caller failures ------------------------------------------------------------------

/// A merged get whose server's replies break off after its value (a lying length, a cut reply)
/// fails, as a blocking `get_multi` does: a value read from a stream that then broke may be
/// wrong, so no caller gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_breaks_after_values_fails_every_key_of_the_batch() {
    let server = common::own_server();
    let proxy = FaultProxy::start(server.spec()).unwrap();
    let blocking = common::client(&[server.spec()], false);
    let all = keys("broken", 20);
    for key in &all {
        blocking.set(key, value_of(key, 1), 0).unwrap();
    }
    for fault in [Fault::LyingLength(3), Fault::Truncate] {
        for binary in [false, true] {
            let client = Client::builder()
                .servers([proxy.spec()])
                .binary(binary)
                .behavior(Behavior::PollTimeout(Duration::from_millis(500)))
                .build()
                .unwrap();
            let mc = AsyncClient::builder(client).workers(1).build().unwrap();
            let held = hold(&mc, 1).await;
            let tasks = spawn_gets(&mc, &all);
            wait_until("every get is queued", || {
                mc.engine_stats().queue_depth == all.len()
            })
            .await;
            proxy.set_fault(fault);
            held.open().await;
            for (task, key) in tasks.into_iter().zip(&all) {
                let result = task.await.unwrap();
                assert!(
                    result.is_err(),
                    "{fault:?}, binary {binary}: {key} gave {result:?}"
                );
            }
            assert_eq!(mc.engine_stats().batches, 1);
            proxy.set_fault(Fault::Pass);
            let again: Option<String> = mc.get(&all[0]).await.unwrap();
            assert_eq!(again, Some(value_of(&all[0], 1)), "answers again");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_fails_only_its_keys() {
    let mut servers: Vec<Memcached> = (0..3).map(|_| common::own_server()).collect();
    let specs: Vec<String> = servers.iter().map(Memcached::spec).collect();
    let client = || {
        Client::builder()
            .servers(&specs)
            .behavior(Behavior::ConnectTimeout(Duration::from_millis(500)))
            .behavior(Behavior::PollTimeout(Duration::from_millis(500)))
            .build()
            .unwrap()
    };
    let blocking = client();
    let all = common::spread_keys(&blocking, "dead", 90, &specs, 2);
    for key in &all {
        blocking.set(key, key.as_str(), 0).unwrap();
    }
    let dead = specs[1].clone();
    let on_dead: BTreeSet<&String> = all
        .iter()
        .filter(|k| blocking.server_for_key(k).unwrap().to_string() == dead)
        .collect();
    assert!(!on_dead.is_empty() && on_dead.len() < all.len());

    let mc = AsyncClient::builder(client()).workers(1).build().unwrap();
    assert_eq!(mc.engine_stats().lanes, 4, "one per server, one shared");
    // A key of each server, to hold the worker of its lane. A gate is read from its server:
    // the dead server's lane is held in the first round only, before the server stops.
    let gates: Vec<String> = specs
        .iter()
        .map(|spec| {
            (0..)
                .map(|i| format!("gate{i}"))
                .find(|k| blocking.server_for_key(k).unwrap().to_string() == *spec)
                .unwrap()
        })
        .collect();
    for round in 0..2 {
        let mut held = Vec::new();
        for (gate, spec) in gates.iter().zip(&specs) {
            if round == 0 || *spec != dead {
                held.push(hold_lane(&mc, gate, 1).await);
            }
        }
        if round == 0 {
            servers[1].stop();
        }
        let tasks = spawn_gets(&mc, &all);
        // In the second round the dead server's gets fail as they come.
        let held_keys = match round {
            0 => all.len(),
            _ => all.len() - on_dead.len(),
        };
        wait_until("every get is queued", || {
            mc.engine_stats().queue_depth == held_keys
        })
        .await;
        for held in held {
            held.open().await;
        }
        for (task, key) in tasks.into_iter().zip(&all) {
            match task.await.unwrap() {
                Ok(value) => {
                    assert!(
                        !on_dead.contains(key),
                        "round {round}: {key} on the dead server"
                    );
                    assert_eq!(value.as_ref(), Some(key), "round {round}");
                }
                Err(error) => {
                    assert!(on_dead.contains(key), "round {round}: {key}: {error}");
                    assert!(error.is_connection(), "round {round}: {error}");
                    let server = error.server().map(ToString::to_string);
                    assert_eq!(server.as_deref(), Some(dead.as_str()), "round {round}");
                }
            }
        }
    }
    let batches = mc.engine_stats().batches;
    assert!(
        batches >= 6,
        "a multi-get per server per round at least: {batches}"
    );

    // The strict and partial multi-key forms say the same.
    let partial = mc
        .get_multi_partial::<_, String>(all.clone())
        .await
        .unwrap();
    assert_eq!(partial.ok.len(), all.len() - on_dead.len());
    let failed: BTreeSet<Vec<u8>> = partial.failed_keys().map(<[u8]>::to_vec).collect();
    let expected: BTreeSet<Vec<u8>> = on_dead.iter().map(|k| k.as_bytes().to_vec()).collect();
    assert_eq!(failed, expected);
    let strict = mc.get_multi::<_, String>(all.clone()).await.unwrap_err();
    assert!(strict.is_connection(), "{strict}");
}

/// Decodes like `u64`, but panics on the value `"boom"`.
#[derive(Debug, PartialEq)]
struct Touchy(u64);

impl FromValue for Touchy {
    fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError> {
        assert_ne!(data, b"boom", "a decoder that panics");
        u64::from_value(data, flags).map(Touchy)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_fails_to_decode_fails_or_panics_its_caller_alone() {
    let server = common::server();
    let blocking = common::client(server.specs(), false);
    let mc = async_client(server.specs(), 1);
    let [text, boom, number] = ["text", "boom", "number"].map(common::key);
    blocking.set(&text, "abc", 0).unwrap();
    blocking.set(&boom, "boom", 0).unwrap();
    blocking.set(&number, 42u64, 0).unwrap();

    let held = hold(&mc, 1).await;
    let as_text = spawn_gets(&mc, &[text.clone(), text.clone(), boom.clone()]);
    let spawn_touchy = |key: &String| {
        let (mc, key) = (mc.clone(), key.clone());
        tokio::spawn(async move { mc.get::<Touchy>(key).await })
    };
    let as_number = [&text, &boom, &number, &number].map(spawn_touchy);
    wait_until("every get is queued", || mc.engine_stats().queue_depth == 7).await;
    held.open().await;

    let [t1, t2, t3] = <[_; 3]>::try_from(as_text).ok().unwrap();
    assert_eq!(t1.await.unwrap().unwrap().as_deref(), Some("abc"));
    assert_eq!(t2.await.unwrap().unwrap().as_deref(), Some("abc"));
    assert_eq!(t3.await.unwrap().unwrap().as_deref(), Some("boom"));
    let [n_text, n_boom, n1, n2] = as_number;
    let error = n_text.await.unwrap().unwrap_err();
    assert!(
        matches!(&error, Error::Decode { key, .. } if key == text.as_bytes()),
        "{error}"
    );
    let panic = n_boom.await.unwrap_err();
    assert!(panic.is_panic(), "the decoder's panic reaches its caller");
    assert_eq!(n1.await.unwrap().unwrap(), Some(Touchy(42)));
    assert_eq!(n2.await.unwrap().unwrap(), Some(Touchy(42)));
    assert_eq!(mc.engine_stats().batches, 1);
    // The worker survived the panic.
    assert_eq!(mc.get::<u64>(&number).await.unwrap(), Some(42));
}

/// A lone get (served as `Client::get` serves it) whose decoder panics leaves the worker's
/// connection in step, in binary too, where a reply left unread would answer the next command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_get_whose_decoder_panics_leaves_the_worker_in_step() {
    let server = common::own_server();
    let mc = AsyncClient::builder(common::client(&[server.spec()], true))
        .workers(1)
        .build()
        .unwrap();
    let boom = common::key("boom");
    mc.set(&boom, "boom", 0).await.unwrap();
    let lone = mc.clone();
    let panic = tokio::spawn(async move { lone.get::<Touchy>(boom).await })
        .await
        .unwrap_err();
    assert!(panic.is_panic());
    let k = common::key("after-panic");
    assert!(mc.add(&k, "mine", 0).await.unwrap());
    assert!(!mc.add(&k, "again", 0).await.unwrap());
    assert!(mc.delete(&k).await.unwrap());
    assert!(!mc.delete(&k).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_values_inflate_once_per_batch_for_every_caller() {
    let server = common::server();
    let long = "compressible ".repeat(200);
    // Room for one inflated value per batch, not two.
    let client = Client::builder()
        .servers(server.specs())
        .compression(Compression::new(100))
        .max_inflated_len(long.len() * 3 / 2)
        .build()
        .unwrap();
    let mc = AsyncClient::builder(client).workers(1).build().unwrap();
    let [key, other] = ["zlib", "zlib2"].map(common::key);
    mc.set(&key, long.clone(), 0).await.unwrap();
    mc.set(&other, long.clone(), 0).await.unwrap();
    let (flags, stored) = common::raw_get(&server.spec(), &key).unwrap();
    assert!(
        flags & 8 != 0 && stored.len() < long.len(),
        "stored compressed"
    );

    // Ten callers of one key: inflated once, within the batch's budget, for all of them.
    let held = hold(&mc, 1).await;
    let tasks = spawn_gets(&mc, &vec![key.clone(); 10]);
    wait_until("every get is queued", || {
        mc.engine_stats().queue_depth == 10
    })
    .await;
    held.open().await;
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().as_ref(), Some(&long));
    }
    assert_eq!(
        mc.get::<String>(&key).await.unwrap(),
        Some(long.clone()),
        "alone"
    );

    // Two keys in one batch share its budget, as in a multi-get: the second does not fit.
    let held = hold(&mc, 1).await;
    let tasks = spawn_gets(&mc, &[key.clone(), other.clone()]);
    wait_until("both gets are queued", || {
        mc.engine_stats().queue_depth == 2
    })
    .await;
    held.open().await;
    // The tasks queue their gets in either order: whichever key is read second does not fit.
    let (found, failed): (Vec<_>, Vec<_>) = futures_join(tasks)
        .await
        .into_iter()
        .partition(Result::is_ok);
    assert_eq!(found.len(), 1, "{failed:?}");
    assert_eq!(found[0].as_ref().unwrap().as_ref(), Some(&long));
    let error = failed[0].as_ref().unwrap_err();
    assert!(
        matches!(error, Error::Decompress { .. }) && error.to_string().contains("budget"),
        "{error}"
    );
}

async fn futures_join<T>(tasks: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_fail_before_they_are_queued() {
    let server = common::server();
    let mc = async_client(server.specs(), 1);
    let error = mc.get::<String>("a key with spaces").await.unwrap_err();
    assert!(matches!(error, Error::InvalidKey { .. }), "{error}");
    assert!(mc.get::<String>("").await.unwrap_err().is_invalid_input());
    assert_eq!(mc.engine_stats().requests, 0, "nothing queued");
    let error = mc.set("bad key", "v", 0).await.unwrap_err();
    assert!(matches!(error, Error::InvalidKey { .. }), "{error}");
    for (workers, max_batch, capacity) in [(0, 1, 1), (1, 0, 1), (1, 1, 0)] {
        let built = AsyncClient::builder(common::client(server.specs(), false))
            .workers(workers)
            .max_batch(max_batch)
            .queue_capacity(capacity)
            .build();
        assert!(matches!(built, Err(Error::InvalidConfig(_))));
    }
}

// ---- cancellation -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_never_hand_a_reply_to_another_caller() {
    let server = common::server();
    let blocking = common::client(server.specs(), false);
    let mc = async_client(server.specs(), 2);
    let all = keys("cancel", 200);
    for key in &all {
        blocking.set(key, value_of(key, 0), 0).unwrap();
    }
    let tasks: Vec<JoinHandle<(u32, u32)>> = (0..64u32)
        .map(|task| {
            let (mc, all) = (mc.clone(), all.clone());
            tokio::spawn(async move {
                let (mut done, mut cancelled) = (0, 0);
                let mut state = 0x9e37_79b9u32 ^ task.wrapping_mul(0x85eb_ca6b);
                for i in 0..100u32 {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    let key = &all[state as usize % all.len()];
                    // From "cancelled right after being queued" to "after up to 2 ms".
                    let limit =
                        Duration::from_micros(u64::from(state >> 8) % 2000 * (i % 2) as u64);
                    let finished = match state % 4 {
                        0 => tokio::time::timeout(limit, mc.set(key, value_of(key, i + 1), 0))
                            .await
                            .map(|r| r.unwrap()),
                        1 => tokio::time::timeout(limit, mc.gets::<String>(key))
                            .await
                            .map(|r| {
                                let (v, _) = r.unwrap().unwrap();
                                assert!(v.starts_with(&format!("{key}=")), "{key}: {v}");
                            }),
                        _ => tokio::time::timeout(limit, mc.get::<String>(key))
                            .await
                            .map(|r| {
                                let v = r.unwrap().unwrap();
                                assert!(v.starts_with(&format!("{key}=")), "{key}: {v}");
                            }),
                    };
                    match finished {
                        Ok(()) => done += 1,
                        Err(_) => cancelled += 1,
                    }
                }
                (done, cancelled)
            })
        })
        .collect();
    let (mut done, mut cancelled) = (0, 0);
    for task in tasks {
        let (d, c) = task.await.unwrap();
        done += d;
        cancelled += c;
    }
    assert!(
        done > 0 && cancelled > 0,
        "{done} done, {cancelled} cancelled"
    );

    // Calls abandoned in the queue are skipped, or run to their end if started: once both
    // workers have reached a gate queued after them, they are all accounted for.
    hold(&mc, 2).await.open().await;
    let stats = mc.engine_stats();
    assert_eq!(stats.queue_depth, 0);
    assert!(stats.abandoned + stats.discarded > 0, "{stats:?}");

    // Every later read, merged or not, async or blocking, gets its own key's value.
    let tasks = spawn_gets(&mc, &all);
    for (task, key) in tasks.into_iter().zip(&all) {
        let value = task.await.unwrap().unwrap().unwrap();
        assert!(value.starts_with(&format!("{key}=")), "{key}: {value}");
        let direct: String = blocking.get(key).unwrap().unwrap();
        assert_eq!(direct, value);
    }
    let found = mc.get_multi::<_, String>(all.clone()).await.unwrap();
    assert_eq!(found.len(), all.len());
    assert!(found.iter().all(|(k, v)| v.starts_with(&format!("{k}="))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_dropped_before_a_worker_starts_it_never_runs() {
    let server = common::server();
    let blocking = common::client(server.specs(), false);
    let mc = async_client(server.specs(), 1);
    let [read, written, counter] = ["read", "written", "counter"].map(common::key);
    blocking.set(&counter, 10u64, 0).unwrap();
    let held = hold(&mc, 1).await;
    // Each future is polled once (queued), then dropped: reads, writes and counters alike.
    let once = Duration::ZERO;
    assert!(
        tokio::time::timeout(once, mc.get::<String>(&read))
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(once, mc.set(&written, "a", 0))
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(once, mc.append(&written, "b"))
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(once, mc.incr(&counter, 5))
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(once, mc.delete(&counter))
            .await
            .is_err()
    );
    assert_eq!(mc.engine_stats().queue_depth, 5);
    held.open().await;
    // The gate, then the five requests, none of them started.
    wait_until("the five dropped calls are accounted for", || {
        mc.engine_stats().abandoned == 5
    })
    .await;
    let stats = mc.engine_stats();
    assert_eq!(
        (stats.requests, stats.discarded),
        (6, 0),
        "the gate and five: {stats:?}"
    );
    assert_eq!(
        blocking.get::<String>(&written).unwrap(),
        None,
        "no write ran"
    );
    assert_eq!(
        blocking.get::<u64>(&counter).unwrap(),
        Some(10),
        "nor the counters"
    );
    // The worker goes on as before.
    mc.set(&written, "later", 0).await.unwrap();
    assert_eq!(
        blocking.get::<String>(&written).unwrap().as_deref(),
        Some("later")
    );
}

/// A [`GateValue`] that decodes once its gate opens, to drop a call's future while it runs.
#[derive(Debug)]
struct Slow;

impl FromValue for Slow {
    fn from_value(data: &[u8], _flags: u32) -> Result<Self, BoxError> {
        pass_gate(data).map(|()| Slow)
    }
}

/// A call whose worker has started it runs to its end when its caller goes, and leaves the
/// connection in step. (A read here: writes take the same path, and their values are
/// serialized before they are queued.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_dropped_once_started_runs_to_its_end() {
    let server = common::server();
    let mc = async_client(server.specs(), 1);
    let key = common::key("started");
    let (entries, open) = arm_gate(&mc, &key).await;
    let call = {
        let (mc, key) = (mc.clone(), key.clone());
        tokio::spawn(async move { mc.gets::<Slow>(&key).await })
    };
    tokio::task::spawn_blocking(move || entries.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the worker started the call");
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    open.send(()).unwrap();
    wait_until("the started call ends", || mc.engine_stats().discarded == 1).await;
    assert_eq!(mc.engine_stats().abandoned, 0);
    // The connection is in step: the next calls get their own answers.
    mc.set(&key, "next", 0).await.unwrap();
    assert_eq!(
        mc.get::<String>(&key).await.unwrap().as_deref(),
        Some("next")
    );
}

// ---- backpressure and shutdown -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_callers_wait() {
    let server = common::server();
    let blocking = common::client(server.specs(), false);
    let mc = AsyncClient::builder(common::client(server.specs(), false))
        .workers(1)
        .queue_capacity(4)
        .build()
        .unwrap();
    let all = keys("full", 20);
    for key in &all {
        blocking.set(key, value_of(key, 2), 0).unwrap();
    }
    let held = hold(&mc, 1).await;
    let tasks = spawn_gets(&mc, &all);
    wait_until("sixteen callers wait for room", || {
        mc.engine_stats().queue_full_waits == 16
    })
    .await;
    assert_eq!(
        mc.engine_stats().queue_depth,
        4,
        "never more than the capacity"
    );
    held.open().await;
    for (task, key) in tasks.into_iter().zip(&all) {
        assert_eq!(task.await.unwrap().unwrap(), Some(value_of(key, 2)));
    }
    let stats = mc.engine_stats();
    assert!(stats.max_queue_depth <= 4, "{stats:?}");
    assert_eq!((stats.queue_full_waits, stats.queue_depth), (16, 0));
    assert_eq!(stats.gets, 20);
}

/// This process's established TCP connections to `port` on the loopback (from /proc/net/tcp):
/// closed as soon as the client closes them, unlike the server's own count.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"01")
        })
        .count()
}

/// Threads of this process whose name starts with `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(name))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_stops_the_workers_and_closes_the_connections() {
    let server = common::own_server();
    let port = server.port().unwrap();
    assert_eq!(connections_to(port), 0);
    let mc = AsyncClient::builder(common::client(&[server.spec()], false))
        .workers(2)
        .thread_name("t-last")
        .build()
        .unwrap();
    wait_until("both workers run", || threads_named("t-last-") == 2).await;
    let key = common::key("last");
    // Each worker connects: hold one, so that the other serves a call, then the other way round.
    let first = hold(&mc, 1).await;
    mc.set(&key, "warm", 0).await.unwrap();
    let second = hold(&mc, 1).await;
    first.open().await;
    mc.set(&key, "warm", 0).await.unwrap();
    second.open().await;
    assert_eq!(
        connections_to(port),
        2,
        "one connection per worker: {}",
        std::fs::read_to_string("/proc/net/tcp").unwrap()
    );

    let clone = mc.clone();
    drop(mc);
    assert_eq!(
        clone.get::<String>(&key).await.unwrap().as_deref(),
        Some("warm")
    );
    assert_eq!(connections_to(port), 2, "a clone keeps the workers");

    // A write queued and then abandoned by its caller before a worker started it is never
    // done, and once the last handle is gone the workers close their connections and stop.
    let held = hold(&clone, 2).await;
    assert!(
        tokio::time::timeout(Duration::ZERO, clone.set(&key, "last", 0))
            .await
            .is_err()
    );
    held.open().await;
    wait_until("the abandoned write is accounted for", || {
        clone.engine_stats().abandoned == 1
    })
    .await;
    drop(clone);
    wait_until("the workers stop", || threads_named("t-last-") == 0).await;
    assert_eq!(
        connections_to(port),
        0,
        "the workers closed their connections"
    );
    let blocking = common::client(&[server.spec()], false);
    let value: Option<String> = blocking.get(&key).unwrap();
    assert_eq!(
        value.as_deref(),
        Some("warm"),
        "the abandoned write never happened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_returns_while_a_worker_still_runs_a_call() {
    let server = common::server();
    let mc = AsyncClient::builder(common::client(server.specs(), false))
        .workers(1)
        .thread_name("t-drop")
        .build()
        .unwrap();
    // A call the worker runs, whose caller has gone (aborted with its handle's clone).
    let (entries, gate) = arm_gate(&mc, "gate").await;
    let call = {
        let mc = mc.clone();
        tokio::spawn(async move { mc.gets::<GateValue>("gate").await.map(drop) })
    };
    wait_until("the worker runs the call", || entries.try_recv().is_ok()).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    // Queued behind it, abandoned by their callers.
    for i in 0..20 {
        let set = mc.set(format!("queued{i}"), "x", 0);
        assert!(tokio::time::timeout(Duration::ZERO, set).await.is_err());
    }
    assert_eq!(mc.engine_stats().queue_depth, 20);

    // The drop cannot wait for the worker: it is blocked until the gate opens, after the drop.
    drop(mc);
    assert_eq!(
        threads_named("t-drop-"),
        1,
        "the worker is still in its call"
    );
    gate.send(()).unwrap();
    wait_until("the worker stops", || threads_named("t-drop-") == 0).await;
    let blocking = common::client(server.specs(), false);
    assert_eq!(
        blocking.get::<String>("queued0").unwrap(),
        None,
        "the abandoned calls never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_serves_what_is_queued_then_waits_for_the_workers() {
    let server = common::server();
    let mc = AsyncClient::builder(common::client(server.specs(), false))
        .workers(2)
        .thread_name("t-down")
        .build()
        .unwrap();
    let all = keys("down", 10);
    let held = hold(&mc, 2).await;
    let sets: Vec<_> = all
        .iter()
        .map(|key| {
            let (mc, key) = (mc.clone(), key.clone());
            tokio::spawn(async move { mc.set(&key, "queued", 0).await })
        })
        .collect();
    wait_until("the sets are queued", || {
        mc.engine_stats().queue_depth == 10
    })
    .await;
    let other = mc.clone();
    let shutdown = tokio::spawn(mc.shutdown(Duration::from_secs(60)));
    wait_until("the client is closed", || {
        let mut refused = std::pin::pin!(other.get::<String>("after"));
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        matches!(
            refused.as_mut().poll(&mut cx),
            std::task::Poll::Ready(Err(Error::Shutdown))
        )
    })
    .await;
    assert!(!shutdown.is_finished(), "the workers are held");
    held.open().await;
    for set in sets {
        set.await.unwrap().unwrap();
    }
    let report = shutdown.await.unwrap();
    assert_eq!((report.workers_running, report.calls_failed), (0, 0));
    // Each thread ends just after its worker says it stopped.
    wait_until("the threads end", || threads_named("t-down-") == 0).await;
    assert_eq!(other.engine_stats().workers_running, 0);
    let blocking = common::client(server.specs(), false);
    for key in &all {
        assert_eq!(
            blocking.get::<String>(key).unwrap().as_deref(),
            Some("queued")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_fails_what_is_still_queued_at_its_deadline() {
    let server = common::server();
    let mc = async_client(server.specs(), 1);
    let all = keys("deadline", 5);
    let held = hold(&mc, 1).await;
    let sets: Vec<_> = all
        .iter()
        .map(|key| {
            let (mc, key) = (mc.clone(), key.clone());
            tokio::spawn(async move { mc.set(&key, "late", 0).await })
        })
        .collect();
    wait_until("the sets are queued", || mc.engine_stats().queue_depth == 5).await;
    let report = mc.shutdown(Duration::from_millis(50)).await;
    assert_eq!(
        (report.workers_running, report.calls_failed),
        (1, 5),
        "the held worker runs on; the queued sets fail"
    );
    for set in sets {
        assert!(matches!(set.await.unwrap(), Err(Error::Shutdown)));
    }
    held.open().await;
    let blocking = common::client(server.specs(), false);
    for key in &all {
        assert_eq!(
            blocking.get::<String>(key).unwrap(),
            None,
            "nothing was sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shutdown_waiting_ends_when_the_workers_stop() {
    let server = common::server();
    let mc = async_client(server.specs(), 1);
    let held = hold(&mc, 1).await;
    // Two shutdowns with no deadline, from two handles, both waiting, each in its own task.
    let waker = std::task::Waker::noop();
    let mut both = [
        mc.clone().shutdown(Duration::MAX),
        mc.clone().shutdown(Duration::MAX),
    ];
    for shutdown in &mut both {
        let mut cx = std::task::Context::from_waker(waker);
        assert!(std::pin::Pin::new(shutdown).poll(&mut cx).is_pending());
    }
    let [first, second] = both.map(tokio::spawn);
    tokio::task::yield_now().await;
    held.open().await;
    for shutdown in [first, second] {
        let report = tokio::time::timeout(Duration::from_secs(10), shutdown)
            .await
            .expect("every shutdown ends")
            .unwrap();
        assert_eq!(report.workers_running, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_moved_to_another_task_ends_at_its_deadline() {
    let server = common::server();
    let mc = async_client(server.specs(), 1);
    let held = hold(&mc, 1).await;
    let mut shutdown = mc.clone().shutdown(Duration::from_millis(100));
    // Polled once elsewhere (its timer starts), then awaited by a task of its own.
    let waker = std::task::Waker::noop();
    let polled = std::pin::Pin::new(&mut shutdown).poll(&mut std::task::Context::from_waker(waker));
    assert!(polled.is_pending());
    let report = tokio::time::timeout(Duration::from_secs(10), tokio::spawn(shutdown))
        .await
        .expect("woken at its deadline")
        .unwrap();
    assert_eq!(report.workers_running, 1, "the held worker");
    held.open().await;
}

/// Decodes like `String`, but tells the test it decodes and waits for its go (once armed), so
/// that the test can drop the caller's future in between; panics when dropped.
#[derive(Debug)]
struct Grenade(#[allow(dead_code)] String);

static GRENADE: std::sync::Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>> =
    std::sync::Mutex::new(None);

impl FromValue for Grenade {
    fn from_value(data: &[u8], flags: u32) -> Result<Self, BoxError> {
        if let Some((entered, go)) = GRENADE.lock().unwrap().take() {
            entered.send(())?;
            go.recv_timeout(Duration::from_secs(30))?;
        }
        String::from_value(data, flags).map(Grenade)
    }
}

impl Drop for Grenade {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a value whose drop panics");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_panics_outside_a_call_is_restarted_and_says_so() {
    let server = common::server();
    let blocking = common::client(server.specs(), false);
    let mc = async_client(server.specs(), 1);
    let [bomb, bystander] = ["bomb", "bystander"].map(common::key);
    blocking.set(&bomb, "boom", 0).unwrap();
    blocking.set(&bystander, "here", 0).unwrap();

    let (entered, entries) = mpsc::channel();
    let (go, wait) = mpsc::channel();
    *GRENADE.lock().unwrap() = Some((entered, wait));
    let held = hold(&mc, 1).await;
    // One batch: the bomb's get, then a bystander's.
    let thrower = {
        let (mc, bomb) = (mc.clone(), bomb.clone());
        tokio::spawn(async move { mc.get::<Grenade>(&bomb).await.map(|_| ()) })
    };
    wait_until("the bomb's get is queued", || {
        mc.engine_stats().queue_depth == 1
    })
    .await;
    let victim = {
        let (mc, bystander) = (mc.clone(), bystander.clone());
        tokio::spawn(async move { mc.get::<String>(&bystander).await })
    };
    wait_until("both gets are queued", || {
        mc.engine_stats().queue_depth == 2
    })
    .await;
    held.open().await;
    // The bomb decodes; its caller leaves; its value is dropped on the worker, which panics.
    tokio::task::spawn_blocking(move || entries.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .unwrap();
    thrower.abort();
    assert!(thrower.await.unwrap_err().is_cancelled());
    go.send(()).unwrap();
    let result = victim.await.unwrap();
    assert!(matches!(result, Err(Error::WorkerPanicked)), "{result:?}");

    // The victim's reply dropped as the worker unwound, just before it started over.
    wait_until("the worker restarts", || mc.engine_stats().restarts == 1).await;
    assert_eq!(mc.engine_stats().workers_running, 1);
    // The worker serves on, its connection in step.
    for _ in 0..3 {
        assert_eq!(
            mc.get::<String>(&bystander).await.unwrap().as_deref(),
            Some("here")
        );
        assert!(
            mc.add(&bystander, "again", 0)
                .await
                .is_ok_and(|added| !added)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_delays_only_its_own_keys() {
    let servers: Vec<Memcached> = (0..3).map(|_| common::own_server()).collect();
    let hung = FaultProxy::start(servers[2].spec()).unwrap();
    let specs = vec![servers[0].spec(), servers[1].spec(), hung.spec()];
    let client = |poll| {
        Client::builder()
            .servers(&specs)
            .behavior(Behavior::PollTimeout(poll))
            .build()
            .unwrap()
    };
    let blocking = client(Duration::from_secs(5));
    let all = common::spread_keys(&blocking, "hung", 60, &specs, 5);
    for key in &all {
        blocking.set(key, key.as_str(), 0).unwrap();
    }
    let on_hung: BTreeSet<&String> = all
        .iter()
        .filter(|k| blocking.server_for_key(k).unwrap().to_string() == specs[2])
        .collect();
    // Long enough that nothing here ends by a timeout: the hung server's keys wait until its
    // connection closes.
    let mc = AsyncClient::builder(client(Duration::from_secs(60)))
        .workers(1)
        .build()
        .unwrap();
    hung.set_fault(Fault::Blackhole);
    for round in 0..3 {
        let tasks = spawn_gets(&mc, &all);
        let (mut healthy, mut waiting) = (Vec::new(), Vec::new());
        for (task, key) in tasks.into_iter().zip(&all) {
            match on_hung.contains(key) {
                true => waiting.push(task),
                false => healthy.push((task, key)),
            }
        }
        for (task, key) in healthy {
            assert_eq!(
                task.await.unwrap().unwrap().as_ref(),
                Some(key),
                "round {round}"
            );
        }
        assert!(
            waiting.iter().all(|task| !task.is_finished()),
            "round {round}: the hung server's keys wait"
        );
        if round == 2 {
            drop(hung);
            for task in waiting {
                let error = task.await.unwrap().unwrap_err();
                assert!(error.is_connection(), "{error}");
                assert_eq!(error.server().unwrap().to_string(), specs[2]);
            }
            break;
        }
        // Their tasks run on, detached, until the connection closes.
        drop(waiting);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_futures_of_their_own_that_outlive_the_handle() {
    let server = common::server();
    let mc = async_client(server.specs(), 1);
    let [key, other] = ["own", "own2"].map(common::key);
    mc.set(&key, "v", 0).await.unwrap();
    // No borrow of `mc`: each call holds what it needs, and can be spawned.
    let get = tokio::spawn(mc.get::<String>(&key));
    let set = tokio::spawn(mc.set(&other, "w", 0));
    drop(mc);
    assert_eq!(get.await.unwrap().unwrap().as_deref(), Some("v"));
    set.await.unwrap().unwrap();
    let blocking = common::client(server.specs(), false);
    assert_eq!(
        blocking.get::<String>(&other).unwrap().as_deref(),
        Some("w")
    );
}

// ---- waiting for answers ------------------------------------------------------------------

/// Counts the wake-ups of a task polled with it.
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `call` once, which must still wait for its answer: did the poll ask to be polled again
/// at once?
fn polled_again<T>(call: &mut Pin<Box<AsyncCall<T>>>, wakes: &Arc<Wakes>) -> bool {
    polled_again_if_waiting(call, wakes).expect("the call waits for its answer")
}

/// Polls `call` once: `None` if it was answered already, or else whether the poll asked to be
/// polled again at once.
fn polled_again_if_waiting<T>(
    call: &mut Pin<Box<AsyncCall<T>>>,
    wakes: &Arc<Wakes>,
) -> Option<bool> {
    let before = wakes.0.load(Ordering::SeqCst);
    let waker = Waker::from(Arc::clone(wakes));
    match call.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Pending => Some(wakes.0.load(Ordering::SeqCst) > before),
        Poll::Ready(_) => None,
    }
}

/// An async client of one server through `proxy`, spinning `spin`, with one worker.
fn spinning_client(proxy: &FaultProxy, spin: Duration) -> AsyncClient {
    let client = Client::builder()
        .servers([proxy.spec()])
        .behavior(Behavior::PollTimeout(Duration::from_secs(60)))
        .build()
        .unwrap();
    AsyncClient::builder(client)
        .workers(1)
        .spin(spin)
        .build()
        .unwrap()
}

#[test]
fn a_call_alone_in_flight_polls_again_for_its_answer_within_its_spin_time() {
    let server = common::own_server();
    let hung = FaultProxy::start(server.spec()).unwrap();
    hung.set_fault(Fault::Blackhole);
    let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
    let mc = spinning_client(&hung, Duration::from_secs(60));
    let mut lone = Box::pin(mc.get::<String>("spin:lone"));
    assert!(
        polled_again(&mut lone, &wakes),
        "alone: polled again at once"
    );
    assert!(polled_again(&mut lone, &wakes));
    // With another call in flight, neither spins: answers will wake them. The first has
    // stopped for good.
    let mut second = Box::pin(mc.get::<String>("spin:second"));
    assert!(!polled_again(&mut second, &wakes));
    assert!(!polled_again(&mut lone, &wakes));
    drop(second);
    assert!(!polled_again(&mut lone, &wakes));
    drop(lone);
    let mut next = Box::pin(mc.get::<String>("spin:next"));
    assert!(polled_again(&mut next, &wakes), "alone");

    // Past its spin time, a call sleeps until its answer comes.
    let short = spinning_client(&hung, Duration::from_millis(1));
    let mut call = Box::pin(short.get::<String>("spin:short"));
    assert!(polled_again(&mut call, &wakes));
    std::thread::sleep(Duration::from_millis(5));
    assert!(!polled_again(&mut call, &wakes));

    let never = spinning_client(&hung, Duration::ZERO);
    let mut call = Box::pin(never.get::<String>("spin:never"));
    assert!(!polled_again(&mut call, &wakes), "spin off");
}

#[test]
fn slow_answers_and_callers_that_give_up_turn_spinning_off() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
    let server = common::own_server();

    // Answers far slower than the spin time.
    let slow = FaultProxy::start(server.spec()).unwrap();
    let mc = spinning_client(&slow, Duration::from_millis(10));
    runtime.block_on(mc.set("spin:slow", "v", 0)).unwrap();
    slow.set_fault(Fault::Delay(Duration::from_millis(60)));
    // A lone call: did its first poll ask to be polled again? Then it runs to its answer. (One
    // answered by its first poll, the test thread having been held up, did not spin.)
    let lone_call_spins = || {
        let mut call = Box::pin(mc.get::<String>("spin:slow"));
        let spun = polled_again_if_waiting(&mut call, &wakes);
        if spun.is_some() {
            assert_eq!(runtime.block_on(call).unwrap().as_deref(), Some("v"));
        }
        spun == Some(true)
    };
    // Three slow waits that spun bring the average over the spin time.
    let slow_spins = (0..20).filter(|_| lone_call_spins()).take(3).count();
    assert_eq!(slow_spins, 3);
    let spun = (0..8).filter(|_| lone_call_spins()).count();
    assert!(spun <= 1, "{spun} of 8 lone calls spun: only a probe may");

    // Callers that give up before their answer (a hung server) measure their wait too.
    let hung = FaultProxy::start(server.spec()).unwrap();
    hung.set_fault(Fault::Blackhole);
    let mc = spinning_client(&hung, Duration::from_millis(10));
    for _ in 0..3 {
        let call = mc.get::<String>("spin:hung");
        let gave_up =
            runtime.block_on(async { tokio::time::timeout(Duration::from_millis(50), call).await });
        assert!(gave_up.is_err());
    }
    let spun = (0..8)
        .filter(|_| polled_again(&mut Box::pin(mc.get::<String>("spin:hung")), &wakes))
        .count();
    assert!(spun <= 1, "{spun} of 8 lone calls spun: only a probe may");
}

// ---- every operation, under each kind of executor ------------------------------------------

async fn every_operation(mc: &AsyncClient) {
    let base = common::key("ops");
    let k = |name: &str| format!("{base}:{name}");

    mc.set(k("a"), "alpha", 0).await.unwrap();
    assert_eq!(
        mc.get::<String>(k("a")).await.unwrap().as_deref(),
        Some("alpha")
    );
    assert_eq!(mc.get::<String>(k("missing")).await.unwrap(), None);
    assert!(!mc.add(k("a"), "again", 0).await.unwrap());
    assert!(mc.add(k("b"), "beta", 0).await.unwrap());
    assert!(mc.replace(k("b"), "BETA", 0).await.unwrap());
    assert!(!mc.replace(k("missing"), "x", 0).await.unwrap());
    assert!(mc.append(k("b"), "!").await.unwrap());
    assert!(mc.prepend(k("b"), "<").await.unwrap());
    assert!(!mc.append(k("missing"), "x").await.unwrap());
    assert_eq!(
        mc.get::<String>(k("b")).await.unwrap().as_deref(),
        Some("<BETA!")
    );
    let (value, token) = mc.gets::<String>(k("a")).await.unwrap().unwrap();
    assert_eq!(value, "alpha");
    assert!(mc.cas(k("a"), "ALPHA", token, 0).await.unwrap());
    assert!(!mc.cas(k("a"), "late", token, 0).await.unwrap());
    assert!(mc.touch(k("a"), 3600).await.unwrap());
    assert!(!mc.touch(k("missing"), 3600).await.unwrap());

    mc.set(k("n"), 10u64, 0).await.unwrap();
    assert_eq!(mc.incr(k("n"), 5).await.unwrap(), 15);
    assert_eq!(mc.decr(k("n"), 20).await.unwrap(), 0);
    assert!(mc.incr(k("missing"), 1).await.unwrap_err().is_not_found());
    assert_eq!(mc.incr_with_initial(k("i"), 1, 7, 0).await.unwrap(), 7);
    assert_eq!(mc.incr_with_initial(k("i"), 1, 7, 0).await.unwrap(), 8);
    assert_eq!(mc.decr_with_initial(k("d"), 1, 3, 0).await.unwrap(), 3);
    assert_eq!(mc.decr_with_initial(k("d"), 1, 3, 0).await.unwrap(), 2);
    let server = mc.server_for_key(k("a")).await.unwrap();
    assert!(mc.servers().contains(&server));
    assert!(mc.delete(k("a")).await.unwrap());
    assert!(!mc.delete(k("a")).await.unwrap());

    let [x, y, z] = [k("x"), k("y"), k("z")];
    let items = vec![(x.clone(), 1u64), (y.clone(), 2u64)];
    assert!(mc.set_multi(items.clone(), 0).await.unwrap().is_empty());
    assert!(
        mc.set_multi_partial(items.clone(), 0)
            .await
            .unwrap()
            .is_complete()
    );
    assert_eq!(
        mc.add_multi(items.clone(), 0).await.unwrap(),
        vec![x.clone(), y.clone()]
    );
    let added = mc
        .add_multi_partial(vec![(z.clone(), 3u64)], 0)
        .await
        .unwrap();
    assert!(added.is_complete() && added.ok.is_empty());
    let found: HashMap<String, u64> = mc
        .get_multi([x.clone(), y.clone(), k("none")])
        .await
        .unwrap();
    assert_eq!(found, HashMap::from([(x.clone(), 1), (y.clone(), 2)]));
    let partial = mc
        .get_multi_partial::<_, u64>([&x, &z].map(String::clone))
        .await
        .unwrap();
    assert_eq!(partial.into_result().unwrap()[&z], 3);

    let both = || [x.clone(), y.clone()];
    let up = mc.incr_multi(both(), 10).await.unwrap();
    assert_eq!(
        up,
        HashMap::from([(x.clone(), Some(11)), (y.clone(), Some(12))])
    );
    let up = mc.incr_multi_partial([k("none")], 1).await.unwrap();
    assert_eq!(up.into_result().unwrap()[&k("none")], None);
    let up = mc
        .incr_multi_by([(x.clone(), 1), (y.clone(), 2)])
        .await
        .unwrap();
    assert_eq!(up[&x], Some(12));
    let down = mc.decr_multi(both(), 2).await.unwrap();
    assert_eq!(
        down,
        HashMap::from([(x.clone(), Some(10)), (y.clone(), Some(12))])
    );
    let down = mc.decr_multi_partial(both(), 10).await.unwrap();
    assert_eq!(down.into_result().unwrap()[&x], Some(0));
    let down = mc.decr_multi_by([(y.clone(), 1)]).await.unwrap();
    assert_eq!(down[&y], Some(1));
    assert_eq!(
        mc.delete_multi([x.clone(), k("none")]).await.unwrap(),
        vec![k("none")]
    );
    assert!(
        mc.delete_multi_partial([y.clone()])
            .await
            .unwrap()
            .is_complete()
    );

    let bulk: Vec<(String, String)> = (0..50)
        .map(|i| (k(&format!("bulk{i}")), i.to_string()))
        .collect();
    mc.bulk_set(bulk.clone(), 0).await.unwrap();
    let back: HashMap<String, String> = mc
        .get_multi(bulk.iter().map(|(k, _)| k.clone()))
        .await
        .unwrap();
    assert_eq!(back, bulk.into_iter().collect());

    let stats = mc.stats(None).await.unwrap();
    assert_eq!(stats.len(), mc.servers().len());
    assert!(stats[0].version().is_some());
    assert!(!mc.stats(Some("settings")).await.unwrap()[0].is_empty());
    let versions = mc.version().await.unwrap();
    assert_eq!(versions.len(), 1);
    assert!(
        versions[0]
            .1
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    );
    mc.flush_all(None).await.unwrap();
    assert_eq!(mc.get::<String>(k("b")).await.unwrap(), None, "flushed");

    // Concurrent gets under this executor too.
    let keys: Vec<String> = (0..100).map(|i| k(&format!("c{i}"))).collect();
    mc.set_multi(keys.iter().map(|key| (key.clone(), key.clone())), 0)
        .await
        .unwrap();
    let gets = keys.iter().map(|key| mc.get::<String>(key));
    let values = futures::future::join_all(gets).await;
    for (value, key) in values.into_iter().zip(&keys) {
        assert_eq!(value.unwrap().as_ref(), Some(key));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_under_tokio_multi_thread() {
    let server = common::own_server();
    every_operation(&async_client(&[server.spec()], 2)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn every_operation_under_tokio_current_thread() {
    let server = common::own_server();
    every_operation(&async_client(&[server.spec()], 2)).await;
}

#[test]
fn every_operation_under_a_plain_block_on() {
    let server = common::own_server();
    let mc = async_client(&[server.spec()], 2);
    futures::executor::block_on(every_operation(&mc));
    assert!(mc.engine_stats().requests > 40);
}

#[test]
fn a_handle_is_shared_by_threads_without_a_runtime() {
    let server = common::server();
    let mc = async_client(server.specs(), 2);
    let key = common::key("threads");
    futures::executor::block_on(mc.set(&key, 5u64, 0)).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    let got = futures::executor::block_on(mc.get::<u64>(&key)).unwrap();
                    assert_eq!(got, Some(5));
                }
            });
        }
    });
    assert_eq!(mc.engine_stats().gets, 200);
}

/// Writes take borrowed values: the value's own serialization runs in the caller (its error
/// is the future's, and nothing is queued), while compression is the worker client's, as a
/// blocking client would store the same value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_take_borrowed_values_and_store_them_as_the_blocking_client_does() {
    let server = Memcached::start().unwrap();
    let client = || {
        Client::builder()
            .servers([server.spec()])
            .compression(Compression::new(100))
            .build()
            .unwrap()
    };
    let mc = AsyncClient::new(client()).unwrap();
    let blocking = client();
    let text = "borrowed text ".repeat(100);
    let key = |tag: &str| format!("borrowed-{tag}");
    mc.set(key("async"), &text, 0).await.unwrap();
    assert!(!mc.add(key("async"), &text[..4], 0).await.unwrap());
    blocking.set(key("blocking"), &text, 0).unwrap();
    let raw = |k: String| blocking.get::<(Vec<u8>, u32)>(k).unwrap().unwrap();
    let (stored, by_blocking) = (raw(key("async")), raw(key("blocking")));
    assert_eq!(stored, by_blocking, "the same bytes and flags");
    // Stored compressed, by the client's rule: a reader that inflates little cannot read it.
    let small_reader = Client::builder()
        .servers([server.spec()])
        .max_inflated_len(64)
        .build()
        .unwrap();
    for k in [key("async"), key("blocking")] {
        let read = small_reader.get::<String>(&k);
        assert!(
            matches!(read, Err(Error::Decompress { .. })),
            "{k}: {read:?}"
        );
    }
    assert_eq!(
        mc.get::<String>(key("async")).await.unwrap(),
        Some(text.clone())
    );

    struct Refuses;
    impl ToValue for Refuses {
        fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
            Err("cannot serialize this".into())
        }
    }
    let sets = || server.stat("cmd_set").unwrap().parse::<u64>().unwrap();
    let before = sets();
    let err = mc.set(key("refused"), Refuses, 0).await.unwrap_err();
    assert!(matches!(err, Error::Encode(_)), "{err:?}");
    assert_eq!(sets(), before, "nothing was sent for it");
    assert_eq!(blocking.get::<String>(key("refused")).unwrap(), None);

    // Many items: a value that does not serialize fails its own key, as with a blocking client;
    // the others are stored.
    struct Maybe(Option<&'static str>);
    impl ToValue for Maybe {
        fn to_value(&self) -> Result<Encoded<'_>, BoxError> {
            self.0
                .map(|text| Encoded::borrowed(text.as_bytes(), 0))
                .ok_or_else(|| "cannot serialize this".into())
        }
    }
    let items = |tag: &str| {
        [
            (key(&format!("{tag}1")), Maybe(Some("ok"))),
            (key(&format!("{tag}2")), Maybe(None)),
        ]
    };
    let by_async = mc.set_multi_partial(items("a"), 0).await.unwrap();
    let by_blocking = blocking.set_multi_partial(items("b"), 0).unwrap();
    for partial in [&by_async, &by_blocking] {
        assert!(partial.ok.is_empty(), "{partial:?}");
        assert_eq!(partial.failures.len(), 1, "{partial:?}");
        assert!(matches!(partial.failures[0].error, Error::Encode(_)));
        assert_eq!(
            partial.failures[0].error.to_string(),
            "cannot encode value: cannot serialize this"
        );
    }
    assert_eq!(by_async.failures[0].keys, [key("a2").into_bytes()]);
    assert_eq!(
        blocking.get::<String>(key("a1")).unwrap().as_deref(),
        Some("ok")
    );
}

/// A prefixed view of an async client keeps its keys under the prefix and gives them back
/// without it; code generic over `AsyncCommands` takes the client and the view; their futures
/// can be spawned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefixed_view_and_code_generic_over_async_commands() {
    async fn visit(cache: &impl libmemcached::AsyncCommands, user: &str) -> Result<u64, Error> {
        cache.set(format!("name:{user}"), user, 0).await?;
        cache
            .incr_with_initial(format!("visits:{user}"), 1, 1, 0)
            .await
    }
    let servers: Vec<Memcached> = (0..3).map(|_| common::own_server()).collect();
    let specs: Vec<String> = servers.iter().map(Memcached::spec).collect();
    let blocking = common::client(&specs, false);
    let mc = async_client(&specs, 1);
    let tenant = mc.prefixed("tenant:");
    assert_eq!(tenant.prefix(), b"tenant:");
    assert_eq!(visit(&mc, "ann").await.unwrap(), 1);
    assert_eq!(visit(&tenant, "ann").await.unwrap(), 1, "its own keys");
    assert_eq!(visit(&tenant, "ann").await.unwrap(), 2);
    assert_eq!(
        blocking
            .get::<String>("tenant:name:ann")
            .unwrap()
            .as_deref(),
        Some("ann")
    );
    assert_eq!(blocking.get::<u64>("tenant:visits:ann").unwrap(), Some(2));

    // Keys land on the servers the blocking client's prefixed view uses, and come back
    // without the prefix.
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    for key in &keys {
        blocking
            .prefixed("tenant:")
            .set(key, key.as_str(), 0)
            .unwrap();
    }
    let spawned: Vec<_> = keys
        .iter()
        .map(|key| tokio::spawn(tenant.get::<String>(key)))
        .collect();
    for (task, key) in spawned.into_iter().zip(&keys) {
        assert_eq!(task.await.unwrap().unwrap().as_ref(), Some(key));
    }
    let found: HashMap<String, String> = tenant.get_multi(keys.clone()).await.unwrap();
    assert_eq!(found.len(), keys.len());
    assert!(
        found
            .iter()
            .all(|(k, v)| k == v && !k.starts_with("tenant:"))
    );
    assert!(tenant.delete("k0").await.unwrap());
    assert_eq!(blocking.get::<String>("tenant:k0").unwrap(), None);

    // Errors name the keys as the view's caller gave them.
    match tenant.incr("no-counter", 1).await {
        Err(Error::NotFound { key }) => assert_eq!(key, b"no-counter"),
        other => panic!("{other:?}"),
    }
    match tenant.get::<u64>("k1").await {
        Err(Error::Decode { key, .. }) => assert_eq!(key, b"k1"),
        other => panic!("{other:?}"),
    }
}
