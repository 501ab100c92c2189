//! Client-side metrics against real memcached processes: what each call counts, errors by kind
//! and server, and the sums of pools.

mod common;

use std::collections::HashMap;

use libmemcached::testing::Memcached;
use libmemcached::{
    Behavior, Client, ClientPool, Compressed, Compression, ErrorKind, ThreadMappedPool,
};

#[test]
fn calls_hits_misses_and_value_bytes_are_counted() {
    let server = common::server();
    let mc = common::client(server.specs(), false);
    let (a, b, c) = (common::key("a"), common::key("b"), common::key("c"));
    assert_eq!(mc.metrics(), Default::default());

    mc.set(&a, "12345", 0).unwrap();
    mc.set(&b, vec![7u8; 10], 0).unwrap();
    assert_eq!(mc.get::<String>(&a).unwrap().as_deref(), Some("12345"));
    assert_eq!(mc.get::<String>(&c).unwrap(), None);
    let found: HashMap<&str, Vec<u8>> = mc.get_multi([&*a, &*b, &*c]).unwrap();
    assert_eq!(found.len(), 2);
    let m = mc.metrics();
    assert_eq!(m.operations, 5);
    assert_eq!((m.hits, m.misses), (1 + 2, 1 + 1));
    assert_eq!(m.bytes_sent, 15);
    assert_eq!(m.bytes_received, 5 + 5 + 10);
    assert_eq!(m.errors.total(), 0);
    assert!(m.servers.is_empty());

    // A prefixed view counts on its client; a counter's miss is neither a hit nor an error.
    let view = mc.prefixed("metrics:");
    view.set("x", "1", 0).unwrap();
    assert!(view.incr(&c, 1).unwrap_err().is_not_found());
    assert_eq!(view.get::<u64>("x").unwrap(), Some(1));
    let m = mc.metrics();
    assert_eq!(m.operations, 8);
    assert_eq!((m.hits, m.misses), (4, 2));
    assert_eq!(m.errors.total(), 0);

    // Compressed values count as stored.
    let big = "z".repeat(100_000);
    mc.set(&a, Compressed::new(big.as_str(), Compression::new(1)), 0)
        .unwrap();
    let sent = mc.metrics().bytes_sent - m.bytes_sent;
    assert!(
        sent > 0 && sent < 1000,
        "{sent} bytes sent for a compressed value"
    );
    assert_eq!(mc.get::<String>(&a).unwrap(), Some(big));
    assert_eq!(mc.metrics().bytes_received - m.bytes_received, sent);

    // bulk_set writes through a handle of its own; its bytes are the client's.
    let before = mc.metrics();
    mc.bulk_set([(&b, "1234"), (&c, "5678")], 0).unwrap();
    let after = mc.metrics();
    assert_eq!(after.operations - before.operations, 1);
    assert_eq!(after.bytes_sent - before.bytes_sent, 8);
}

#[test]
fn errors_count_by_kind_and_server_and_a_server_back_is_no_longer_failing() {
    let live = common::own_server();
    let mut dead = common::own_server();
    let mc = Client::builder()
        .servers([live.spec(), dead.spec()])
        .behavior(Behavior::ConnectTimeout(std::time::Duration::from_millis(
            300,
        )))
        // Stored on the client's own connections, so that the dead server's breaks.
        .sets_together(false)
        .build()
        .unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("metrics:{i}")).collect();
    mc.set_multi(keys.iter().map(|k| (k, "v")), 0).unwrap();
    dead.stop();

    let found = mc.get_multi_partial::<_, String>(&keys).unwrap();
    assert_eq!(found.failures.len(), 1);
    let lost = found.failures[0].keys.len();
    assert!(lost > 0 && found.ok.len() == keys.len() - lost);
    assert!(mc.get::<String>("").is_err(), "an empty key is refused");

    let m = mc.metrics();
    assert_eq!(
        m.hits,
        (keys.len() - lost) as u64,
        "failed keys are not misses"
    );
    assert_eq!(m.misses, 0);
    assert!(m.errors.get(ErrorKind::Connection) >= 1, "{m:?}");
    assert_eq!(m.errors.get(ErrorKind::Input), 1);
    let on_dead = m
        .servers
        .iter()
        .find(|s| s.address.to_string() == dead.spec())
        .expect("the dead server has its own counts");
    assert!(on_dead.failing);
    assert!(on_dead.errors.get(ErrorKind::Connection) >= 1);
    assert_eq!(on_dead.errors.total(), m.errors.total() - 1);

    // Back up: the next answer from it clears `failing`.
    dead.restart().unwrap();
    let on_it = keys
        .iter()
        .find(|k| mc.server_for_key(k).unwrap().to_string() == dead.spec())
        .unwrap();
    mc.disconnect_all();
    mc.set(on_it, "again", 0).unwrap();
    let m = mc.metrics();
    let on_dead = m
        .servers
        .iter()
        .find(|s| s.address.to_string() == dead.spec());
    assert!(!on_dead.unwrap().failing);
}

#[test]
fn pools_add_up_their_clients_including_threads_that_ended() {
    let server = common::server();
    let pool = ClientPool::new(common::client(server.specs(), false), 3).unwrap();
    std::thread::scope(|s| {
        for t in 0..6 {
            let pool = &pool;
            s.spawn(move || {
                let mc = pool.reserve().unwrap();
                for i in 0..10 {
                    mc.set(format!("metrics:pool:{t}:{i}"), "v", 0).unwrap();
                }
            });
        }
    });
    let m = pool.metrics();
    assert_eq!((m.operations, m.bytes_sent), (60, 60));

    let mapped = ThreadMappedPool::new(common::client(server.specs(), false));
    for t in 0..4 {
        let mapped = &mapped;
        std::thread::scope(|s| {
            s.spawn(move || {
                let mc = mapped.reserve().unwrap();
                let _: Option<String> = mc.get(format!("metrics:pool:{t}:0")).unwrap();
                let _: Option<String> = mc.get("metrics:none").unwrap();
            });
        });
    }
    let m = mapped.metrics();
    assert_eq!((m.operations, m.hits, m.misses), (8, 4, 4));
}

#[test]
fn stats_flush_and_version_count_as_operations() {
    let server = Memcached::start().unwrap();
    let mc = Client::new([server.spec()]).unwrap();
    mc.version().unwrap();
    mc.flush_all(None).unwrap();
    assert_eq!(mc.stats(None).unwrap().len(), 1);
    assert_eq!(mc.metrics().operations, 3);
}
