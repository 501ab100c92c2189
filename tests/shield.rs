//! The shield's relay: keys land where they land without it, a failed server is removed and
//! comes back as without it, clones and pools share one relay thread, and dropping the client
//! ends it. (What the shield refuses: tests/shield_faults.rs; TLS: tests/tls.rs.)

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use libmemcached::testing::Memcached;
use libmemcached::{Behavior, Client, ClientPool, Distribution};

/// The tests here count the process's relay threads, so they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn relay_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|task| {
            let comm = task.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|name| name.trim() == "memcached-relay")
        })
        .count()
}

/// Which of `specs` holds each key (read with a raw `get` on each server that is up); `None`
/// for a key none holds.
fn landed(specs: &[String], keys: &[String]) -> Vec<Option<usize>> {
    let up: Vec<bool> = specs
        .iter()
        .map(|s| std::net::TcpStream::connect(s).is_ok())
        .collect();
    keys.iter()
        .map(|k| (0..specs.len()).position(|i| up[i] && common::raw_get(&specs[i], k).is_some()))
        .collect()
}

fn three_servers() -> (Vec<Memcached>, Vec<String>) {
    let servers: Vec<Memcached> = (0..3).map(|_| common::own_server()).collect();
    let specs = servers.iter().map(Memcached::spec).collect();
    (servers, specs)
}

#[test]
fn keys_land_on_the_servers_they_land_on_without_the_shield() {
    let _serial = serial();
    let (_servers, specs) = three_servers();
    let weighted: Vec<String> = specs
        .iter()
        .zip(1..)
        .map(|(s, w)| format!("{s}:{w}"))
        .collect();
    let distributions = [
        Distribution::Modula,
        Distribution::Consistent,
        Distribution::ConsistentKetama,
        Distribution::ConsistentKetamaSpy,
        Distribution::ConsistentWeighted,
    ];
    for distribution in distributions {
        for servers in [&specs, &weighted] {
            for binary in [false, true] {
                let build = |shield: bool| {
                    let builder = Client::builder()
                        .servers(servers)
                        .binary(binary)
                        .behavior(Behavior::Distribution(distribution));
                    let builder = if shield { builder.shield() } else { builder };
                    builder.build().unwrap()
                };
                let keys: Vec<String> = (0..60).map(|i| common::key(&format!("p{i}"))).collect();
                let direct = build(false);
                for k in &keys {
                    direct.set(k, "direct", 0).unwrap();
                }
                let expected = landed(&specs, &keys);
                for k in &keys {
                    direct.delete(k).unwrap();
                }
                let shielded = build(true);
                for k in &keys {
                    shielded.set(k, "shielded", 0).unwrap();
                }
                let what = format!("{distribution:?}, weights {}, binary {binary}", servers[0]);
                assert_eq!(landed(&specs, &keys), expected, "{what}");
                for i in 0..3 {
                    assert!(expected.contains(&Some(i)), "{what}: no key on server {i}");
                }
            }
        }
    }
}

/// Kills the middle server and writes until the client has removed it, then writes 60 keys;
/// brings it back, waits out the dead timeout and writes 60 more: where each batch landed.
fn failover_placement(
    servers: &mut [Memcached],
    specs: &[String],
    shield: bool,
) -> [Vec<Option<usize>>; 2] {
    let builder = Client::builder()
        .servers(specs)
        .failover()
        .behavior(Behavior::ServerFailureLimit(1))
        .behavior(Behavior::RetryTimeout(Duration::from_secs(1)))
        .behavior(Behavior::DeadTimeout(Duration::from_secs(1)))
        .behavior(Behavior::PollTimeout(Duration::from_millis(300)));
    let mc = if shield { builder.shield() } else { builder }
        .build()
        .unwrap();
    mc.set("failover:warm", "x", 0).unwrap();
    servers[1].stop();
    // Removed once it failed and then 30 writes in a row succeeded.
    let removed = Instant::now() + Duration::from_secs(10);
    let (mut failures, mut in_a_row) = (0, 0);
    for i in 0.. {
        match mc.set(format!("failover:w{i}"), "x", 0) {
            Ok(()) if failures > 0 => in_a_row += 1,
            Ok(()) => {}
            Err(_) => (failures, in_a_row) = (failures + 1, 0),
        }
        if in_a_row == 30 {
            break;
        }
        assert!(
            Instant::now() < removed,
            "the server was never removed (shield: {shield})"
        );
    }
    let batch = |tag: &str| -> Vec<Option<usize>> {
        let keys: Vec<String> = (0..60).map(|i| format!("{tag}:{i}")).collect();
        for k in &keys {
            mc.set(k, "v", 0).unwrap();
        }
        let placed = landed(specs, &keys);
        for k in &keys {
            mc.delete(k).unwrap();
        }
        placed
    };
    let out = batch("failover:out");
    servers[1].restart().unwrap();
    // Past the dead timeout, the server is tried again and, answering, rejoins the ring.
    std::thread::sleep(Duration::from_millis(2100));
    let back_deadline = Instant::now() + Duration::from_secs(10);
    while mc.set("failover:back", "x", 0).is_err() {
        assert!(
            Instant::now() < back_deadline,
            "the server never came back (shield: {shield})"
        );
    }
    let back = batch("failover:back");
    [out, back]
}

#[test]
fn a_failed_server_is_removed_and_comes_back_as_without_the_shield() {
    let _serial = serial();
    let (mut servers, specs) = three_servers();
    let direct = failover_placement(&mut servers, &specs, false);
    let shielded = failover_placement(&mut servers, &specs, true);
    assert!(
        !direct[0].contains(&Some(1)),
        "keys went to the removed server: {direct:?}"
    );
    assert!(
        direct[1].contains(&Some(1)),
        "no key went to the server back: {direct:?}"
    );
    assert_eq!(shielded, direct);
}

#[test]
fn a_stopped_server_fails_and_is_retried_as_without_the_shield() {
    let _serial = serial();
    let (mut servers, specs) = three_servers();
    let direct = failure_codes(&mut servers, &specs, false);
    let shielded = failure_codes(&mut servers, &specs, true);
    assert_eq!(shielded, direct);
    assert!(direct.iter().any(Option::is_some), "{direct:?}");
}

/// The codes of calls to a server while it is stopped, then after its restart.
fn failure_codes(
    servers: &mut [Memcached],
    specs: &[String],
    shield: bool,
) -> Vec<Option<libmemcached::ReturnCode>> {
    let builder = Client::builder()
        .servers(specs)
        .behavior(Behavior::RetryTimeout(Duration::from_secs(2)));
    let mc = if shield { builder.shield() } else { builder }
        .build()
        .unwrap();
    let key = common::spread_keys(&mc, "retry", 30, specs, 1)
        .into_iter()
        .find(|k| mc.server_for_key(k).unwrap().to_string() == specs[1])
        .unwrap();
    mc.set(&key, "before", 0).unwrap();
    servers[1].stop();
    // The relay learns of the death from its own connection, on its own thread; a direct
    // client finds out on its next call either way.
    std::thread::sleep(Duration::from_millis(300));
    let mut codes = Vec::new();
    for _ in 0..3 {
        match mc.set(&key, "during", 0) {
            Ok(()) => codes.push(None),
            Err(error) => {
                assert_eq!(
                    error.server().map(ToString::to_string),
                    Some(specs[1].clone())
                );
                codes.push(error.code());
            }
        }
    }
    servers[1].restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mc.set(&key, "after", 0).is_err() {
        assert!(
            Instant::now() < deadline,
            "the server was never tried again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(mc.get::<String>(&key).unwrap().as_deref(), Some("after"));
    codes
}

#[test]
fn clones_and_pools_share_one_relay_thread_that_ends_with_the_client() {
    let _serial = serial();
    let server = common::own_server();
    let before = relay_threads();
    let mc = Client::builder()
        .servers([server.spec()])
        .shield()
        .build()
        .unwrap();
    mc.set("relay:thread", "1", 0).unwrap();
    let clone = mc.clone();
    let pool = ClientPool::new(mc.clone(), 4).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let c = pool.reserve().unwrap();
                assert_eq!(
                    c.get::<String>("relay:thread").unwrap().as_deref(),
                    Some("1")
                );
            });
        }
    });
    assert_eq!(
        clone.get::<String>("relay:thread").unwrap().as_deref(),
        Some("1")
    );
    assert_eq!(relay_threads(), before + 1);
    drop((mc, clone, pool));
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay_threads() > before {
        assert!(
            Instant::now() < deadline,
            "the relay thread outlived its client"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_shield_refuses_what_it_cannot_relay() {
    let _serial = serial();
    let unix = Client::builder()
        .servers(["/tmp/memcached.sock"])
        .shield()
        .build()
        .unwrap_err();
    assert!(unix.to_string().contains("TCP connections only"), "{unix}");
    let udp = Client::builder()
        .servers(["udp:127.0.0.1:11211"])
        .shield()
        .build()
        .unwrap_err();
    assert!(udp.to_string().contains("TCP connections only"), "{udp}");
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_hundred_servers_take_one_thread_and_a_bounded_number_of_descriptors() {
    let _serial = serial();
    let server = common::own_server();
    // 99 servers nothing listens on, and one that answers.
    let mut specs: Vec<String> = (0..99)
        .map(|_| {
            format!(
                "127.0.0.1:{}",
                libmemcached::testing::unused_port().unwrap()
            )
        })
        .collect();
    specs.push(server.spec());
    let (threads, descriptors) = (relay_threads(), open_descriptors());
    let mc = Client::builder()
        .servers(&specs)
        .behavior(Behavior::ConnectTimeout(Duration::from_millis(200)))
        .shield()
        .build()
        .unwrap();
    let keys: Vec<String> = (0..500).map(|i| format!("hundred:{i}")).collect();
    for _ in 0..3 {
        let partial = mc.get_multi_partial::<_, String>(keys.iter()).unwrap();
        // The answering server's keys are misses; every other key fails, naming its server.
        assert!(partial.failures.iter().all(|f| f.error.server().is_some()));
    }
    assert_eq!(relay_threads(), threads + 1);
    // A listener per server (and a second descriptor of it), and the connections in use.
    let added = open_descriptors() - descriptors;
    assert!(
        added <= 2 * 100 + 2 * 100 + 16,
        "{added} descriptors for 100 servers"
    );
    drop(mc);
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay_threads() > threads || open_descriptors() > descriptors + 4 {
        assert!(
            Instant::now() < deadline,
            "the relay kept {} descriptors",
            open_descriptors() - descriptors
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
