//! Behaviors by type and by pylibmc name, and a cluster of real memcached processes: key
//! distribution, weights, replicas, failover and timeouts.
//!
//! Each test starts its own servers, so they run in parallel. Measured figures are printed
//! (`cargo test --test cluster -- --nocapture`); the guide's "Running a cluster"
//! (`guide/cluster.md`) quotes them.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libmemcached::testing::{Memcached, unused_port};
use libmemcached::{
    Behavior, BehaviorValue, Client, Distribution, Error, Hash, ReturnCode, all_behaviors,
};

fn cluster(n: usize) -> Vec<Memcached> {
    (0..n).map(|_| common::own_server()).collect()
}

fn specs(servers: &[Memcached]) -> Vec<String> {
    servers.iter().map(Memcached::spec).collect()
}

fn items(server: &Memcached) -> usize {
    server.stat("curr_items").unwrap().parse().unwrap()
}

fn value(mc: &Client, name: &str) -> String {
    mc.behavior_by_name(name).unwrap().to_string()
}

// ---- behaviors -----------------------------------------------------------------------------

#[test]
fn a_new_client_reads_back_the_documented_defaults_by_pylibmc_name() {
    let server = common::own_server();
    let mc = Client::new([server.spec()]).unwrap();
    let read = mc.behaviors();
    let names: Vec<&str> = read.iter().map(|(n, _)| *n).collect();
    let table: Vec<&str> = all_behaviors().iter().map(|b| b.name()).collect();
    assert_eq!(names, table);
    for ((name, value), info) in read.iter().zip(all_behaviors()) {
        assert_eq!(value.to_string(), info.default_value(), "{name}");
    }
    // The one default that differs from libmemcached's.
    let nodelay = all_behaviors()
        .iter()
        .find(|b| b.name() == "tcp_nodelay")
        .unwrap();
    assert_eq!(
        (nodelay.default_value(), nodelay.libmemcached_default()),
        ("1", "0")
    );
    assert_eq!(
        mc.behavior_by_name("hash").unwrap(),
        BehaviorValue::Name("default")
    );
    assert_eq!(
        mc.behavior_by_name("_poll_timeout").unwrap(),
        BehaviorValue::Number(5000)
    );
    // Reading the socket sizes did not connect (pylibmc's does): the server saw no client.
    let connections = |s: &Memcached| s.stat("total_connections").unwrap();
    let before: u32 = connections(&server).parse().unwrap();
    mc.behaviors();
    let after: u32 = connections(&server).parse().unwrap();
    assert_eq!(after, before + 1, "only the stats probe's own connection");
    mc.set("k", "v", 0).unwrap();
    assert_eq!(mc.get::<String>("k").unwrap().as_deref(), Some("v"));
}

#[test]
fn the_guide_behavior_table_matches_all_behaviors() {
    let guide = include_str!("../guide/cluster.md");
    let section = &guide[guide.find("## Behaviors").expect("a Behaviors section")..];
    let rows: Vec<Vec<&str>> = section
        .lines()
        .take_while(|l| !l.starts_with("```"))
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), all_behaviors().len());
    for (row, info) in rows.iter().zip(all_behaviors()) {
        let default = row[3].split(" (").next().unwrap();
        assert_eq!(
            (row[0], row[1], row[2], default),
            (
                format!("`{}`", info.name()).as_str(),
                format!("`{}`", info.value_type()).as_str(),
                info.unit().unwrap_or(""),
                info.default_value()
            ),
        );
    }
}

#[test]
fn behaviors_by_name_take_raw_values_in_libmemcached_units() {
    let servers = cluster(3);
    let mc = Client::new(specs(&servers)).unwrap();
    mc.set_behaviors_by_name([
        ("connect_timeout", "4000"),
        ("_poll_timeout", "1500"),
        ("retry_timeout", "3"),
        ("send_timeout", "250000"),
        ("hash", "fnv1a_32"),
        ("distribution", "consistent ketama"),
    ])
    .unwrap();
    mc.set_behavior_by_name("cas", true).unwrap();
    mc.set_behavior_by_name("failure_limit", 3).unwrap();
    assert_eq!(value(&mc, "connect_timeout"), "4000");
    assert_eq!(value(&mc, "_poll_timeout"), "1500");
    assert_eq!(value(&mc, "retry_timeout"), "3");
    assert_eq!(value(&mc, "_retry_timeout"), "3");
    assert_eq!(value(&mc, "send_timeout"), "250000");
    assert_eq!(value(&mc, "hash"), "fnv1a_32");
    assert_eq!(value(&mc, "distribution"), "consistent ketama");
    assert_eq!(value(&mc, "ketama"), "1");
    assert_eq!(value(&mc, "cas"), "1");
    assert_eq!(value(&mc, "failure_limit"), "3");

    // The typed behavior and the raw value are the same setting.
    let typed = Client::builder()
        .servers(specs(&servers))
        .behavior(Behavior::PollTimeout(Duration::from_millis(1500)))
        .behavior(Behavior::RetryTimeout(Duration::from_secs(3)))
        .behavior(Behavior::SendTimeout(Duration::from_millis(250)))
        .behavior(Behavior::Hash(Hash::Fnv1a_32))
        .behavior(Behavior::Ketama(true))
        .build()
        .unwrap();
    for name in [
        "_poll_timeout",
        "retry_timeout",
        "send_timeout",
        "hash",
        "distribution",
    ] {
        assert_eq!(value(&typed, name), value(&mc, name), "{name}");
    }

    // The hash really is in use: it moves keys compared with the default hash.
    let default = Client::builder()
        .servers(specs(&servers))
        .behavior(Behavior::Ketama(true))
        .build()
        .unwrap();
    let moved = (0..200)
        .filter(|i| {
            let k = format!("hashed-{i}");
            mc.server_for_key(&k).unwrap() != default.server_for_key(&k).unwrap()
        })
        .count();
    assert!(
        moved > 20,
        "fnv1a_32 placed {moved} of 200 keys differently"
    );
    for i in 0..50 {
        let k = format!("hashed-{i}");
        mc.set(&k, i, 0).unwrap();
        assert_eq!(typed.get::<i32>(&k).unwrap(), Some(i), "same placement");
    }
}

/// The last setting of a behavior wins, turning `remove_failed` off after `failover()` (or
/// after turning it on) included, though turning it off and on apply at different stages.
#[test]
fn the_last_setting_of_a_behavior_wins() {
    let servers = cluster(2);
    let remove_failed = |b: libmemcached::ClientBuilder| {
        let mc = b.build().unwrap();
        mc.behavior_by_name("remove_failed").unwrap().to_string()
    };
    let ketama = || {
        Client::builder()
            .servers(specs(&servers))
            .behavior(Behavior::Distribution(Distribution::ConsistentKetama))
            .behavior(Behavior::DeadTimeout(Duration::from_secs(60)))
    };
    let off = Behavior::RemoveFailedServers(false);
    let on = Behavior::RemoveFailedServers(true);
    assert_eq!(remove_failed(ketama().failover()), "1");
    assert_eq!(remove_failed(ketama().failover().behavior(off)), "0");
    assert_eq!(remove_failed(ketama().behavior(on).behavior(off)), "0");
    assert_eq!(remove_failed(ketama().behavior(off).behavior(on)), "1");
}

#[test]
fn behaviors_read_back_can_be_set_again_unchanged() {
    let servers = cluster(3);
    let source = Client::builder()
        .servers(specs(&servers))
        .binary(true)
        .failover()
        .behavior(Behavior::KetamaWeighted(true))
        .behavior(Behavior::NumberOfReplicas(1))
        .behavior(Behavior::ConnectTimeout(Duration::from_millis(750)))
        .behavior(Behavior::TcpKeepalive(true))
        .behavior(Behavior::TcpKeepIdle(Duration::from_secs(30)))
        .behavior(Behavior::SocketSendSize(262_144))
        .behavior(Behavior::ServerTimeoutLimit(2))
        .build()
        .unwrap();
    let read = source.behaviors();
    let as_text: BTreeMap<&str, String> = read.iter().map(|(n, v)| (*n, v.to_string())).collect();
    assert_eq!(
        as_text["hash"], "md5",
        "weighted ketama hashes keys with MD5"
    );
    assert_eq!(as_text["ketama_hash"], "md5");
    assert_eq!(as_text["distribution"], "consistent weighted");
    assert_eq!(as_text["remove_failed"], "1");
    assert_eq!(as_text["_socket_send_size"], "262144");
    assert_eq!(as_text["tcp_keepidle"], "30");

    let copy = common::client(&specs(&servers), true);
    copy.set_behaviors_by_name(read.iter().map(|(n, v)| (*n, v)))
        .unwrap();
    assert_eq!(copy.behaviors(), read);
    // A hash given after `KetamaWeighted` wins in the builder (later settings win); by name, as
    // in pylibmc, `ketama_weighted` is applied after `hash` and resets it to MD5.
    let typed = Client::builder()
        .servers(specs(&servers))
        .behavior(Behavior::KetamaWeighted(true))
        .behavior(Behavior::Hash(Hash::Crc))
        .build()
        .unwrap();
    assert_eq!(typed.behavior_by_name("hash").unwrap().to_string(), "crc");
    let named = common::client(&specs(&servers), false);
    named
        .set_behaviors_by_name([("hash", "crc"), ("ketama_weighted", "1")])
        .unwrap();
    assert_eq!(named.behavior_by_name("hash").unwrap().to_string(), "md5");
    // Same placement, so the copy reads what the source wrote.
    for i in 0..30 {
        source.set(format!("copied-{i}"), i, 0).unwrap();
        assert_eq!(copy.get::<i32>(format!("copied-{i}")).unwrap(), Some(i));
    }
}

#[test]
fn unknown_and_refused_behaviors_are_errors_that_change_nothing() {
    let servers = cluster(2);
    let ascii = Client::new(specs(&servers)).unwrap();
    let binary = common::client(&specs(&servers), true);
    let before = (ascii.behaviors(), binary.behaviors());
    let refused = |mc: &Client, name: &str, value: &str, says: &str| {
        let err = mc.set_behavior_by_name(name, value).unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig(_)) && err.is_invalid_input(),
            "{name}={value}: {err:?}"
        );
        assert!(
            err.to_string().contains(says),
            "{name}={value}: {err} should say {says:?}"
        );
    };

    let err = ascii
        .set_behaviors_by_name([("zzz", "1"), ("connect_timeout", "100"), ("aaa", "2")])
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown behavior: aaa, zzz"),
        "{err}"
    );
    refused(&ascii, "buffer_requests", "1", "aborts");
    refused(&ascii, "pickle_protocol", "2", "pickle");
    refused(&ascii, "auto_eject", "1", "remove_failed");
    refused(&ascii, "namespace", "ns:", "ClientBuilder::namespace");
    refused(&ascii, "tcp_keepidle", "40000", "32767");
    refused(&ascii, "_poll_timeout", "0", "above zero");
    refused(&ascii, "connect_timeout", "-1", "negative");
    refused(&ascii, "failure_limit", "0", "at least 1");
    refused(&ascii, "distribution", "virtual bucket", "refused");
    refused(&ascii, "hash", "sha1", "unknown hash");
    refused(&ascii, "num_replicas", "1", "binary");
    refused(&binary, "verify_keys", "1", "ASCII");
    refused(&binary, "_noreply", "1", "desynchronises");
    refused(&binary, "num_replicas", "2", "more servers than replicas");
    // Ejecting needs a consistent distribution and a dead timeout.
    refused(&ascii, "remove_failed", "1", "consistent distribution");
    ascii.set_behavior_by_name("ketama", 1).unwrap();
    refused(&ascii, "remove_failed", "1", "DeadTimeout");
    ascii.set_behavior_by_name("ketama", 0).unwrap();
    if !Hash::Hsieh.is_available() {
        refused(&ascii, "hash", "hsieh", "built without it");
    }
    assert_eq!((ascii.behaviors(), binary.behaviors()), before);

    // With ejection on, what would break it is refused too.
    let failover = Client::builder()
        .servers(specs(&servers))
        .failover()
        .build()
        .unwrap();
    refused(&failover, "distribution", "modula", "turn it off first");
    refused(&failover, "ketama", "0", "turn it off first");
    refused(
        &failover,
        "dead_timeout",
        "0",
        "turn remove_failed off first",
    );
    failover
        .set_behaviors_by_name([("distribution", "modula"), ("remove_failed", "0")])
        .unwrap();
    assert_eq!(value(&failover, "distribution"), "modula");

    for mc in [&ascii, &binary, &failover] {
        mc.set("still-works", "yes", 0).unwrap();
        assert_eq!(
            mc.get::<String>("still-works").unwrap().as_deref(),
            Some("yes")
        );
    }
}

#[test]
fn the_builder_refuses_what_set_behavior_refuses() {
    let servers = cluster(2);
    let build = |f: fn(libmemcached::ClientBuilder) -> libmemcached::ClientBuilder| {
        f(Client::builder().servers(specs(&servers))).build()
    };
    let refused = |r: libmemcached::Result<Client>, says: &str| {
        let err = r.unwrap_err();
        assert!(err.to_string().contains(says), "{err} should say {says:?}");
    };
    refused(
        build(|b| {
            b.failover()
                .behavior(Behavior::Distribution(Distribution::Modula))
        }),
        "consistent distribution",
    );
    refused(
        build(|b| b.binary(true).behavior(Behavior::NumberOfReplicas(2))),
        "at least 3 servers",
    );
    refused(
        build(|b| b.behavior(Behavior::NoReply(true)).binary(true)),
        "desynchronises",
    );
    refused(
        build(|b| b.behavior(Behavior::TcpKeepIdle(Duration::from_secs(40_000)))),
        "32767",
    );
    assert!(
        Client::builder()
            .behaviors_by_name([("bogus", "1")])
            .build()
            .unwrap_err()
            .to_string()
            .contains("unknown behavior: bogus")
    );
    // The order of calls does not matter: ejection is applied after what it needs.
    let mc = Client::builder()
        .servers(specs(&servers))
        .behaviors_by_name([
            ("remove_failed", "1"),
            ("dead_timeout", "30"),
            ("ketama", "1"),
        ])
        .build()
        .unwrap();
    assert_eq!(value(&mc, "remove_failed"), "1");
}

#[test]
fn the_failover_preset_sets_what_it_documents_and_explicit_behaviors_win() {
    let servers = cluster(2);
    let mc = Client::builder()
        .servers(specs(&servers))
        .behavior(Behavior::DeadTimeout(Duration::from_secs(5)))
        .failover()
        .build()
        .unwrap();
    assert_eq!(value(&mc, "distribution"), "consistent ketama");
    assert_eq!(value(&mc, "remove_failed"), "1");
    assert_eq!(value(&mc, "failure_limit"), "2");
    assert_eq!(value(&mc, "retry_timeout"), "1");
    assert_eq!(
        value(&mc, "dead_timeout"),
        "5",
        "the explicit behavior wins"
    );
    let preset = Client::builder()
        .servers(specs(&servers))
        .failover()
        .build()
        .unwrap();
    assert_eq!(value(&preset, "dead_timeout"), "60");
}

#[test]
fn noreply_stores_without_waiting_and_refuses_counters() {
    let server = common::own_server();
    let mc = Client::builder()
        .servers([server.spec()])
        .behavior(Behavior::NoReply(true))
        .build()
        .unwrap();
    mc.set("n", 5u64, 0).unwrap();
    // Without a reply libmemcached reports a counter of u64::MAX; refused instead.
    let err = mc.incr("n", 1).unwrap_err();
    assert_eq!(err.code(), Some(ReturnCode::NotSupported), "{err:?}");
    assert!(err.to_string().contains("noreply"), "{err}");
    assert!(mc.decr_with_initial("n", 1, 0, 0).is_err());
    assert_eq!(mc.get::<u64>("n").unwrap(), Some(5), "nothing was counted");
    // An add or delete is sent, and says that its outcome is not known.
    for result in [mc.add("n", 1u64, 0), mc.delete("gone")] {
        assert!(
            matches!(result, Err(libmemcached::Error::Unanswered { .. })),
            "{result:?}"
        );
    }
    assert_eq!(
        mc.get::<u64>("n").unwrap(),
        Some(5),
        "the add stored nothing"
    );
    // Many keys: one failure for all of them, naming the operation, not one per key.
    let err = mc.delete_multi(["a", "b", "c"]).unwrap_err();
    assert_eq!(err.failures().len(), 1, "{err:?}");
    let failure = &err.failures()[0];
    assert_eq!(failure.keys.len(), 3);
    assert!(
        matches!(
            failure.error,
            libmemcached::Error::Unanswered {
                operation: "delete",
                key: None
            }
        ),
        "{failure:?}"
    );
    mc.set_behavior(Behavior::NoReply(false)).unwrap();
    assert_eq!(mc.incr("n", 1).unwrap(), 6);
}

// ---- distribution --------------------------------------------------------------------------

/// How many of 10 000 keys each server of a fresh ketama ring holds (read from the servers'
/// own stats), and the largest deviation from its share of `weights`.
fn spread_on_a_new_ring(weights: &[u32]) -> (Vec<usize>, f64) {
    let servers = cluster(weights.len());
    let specs: Vec<String> = servers
        .iter()
        .zip(weights)
        .map(|(s, w)| format!("{}:{w}", s.spec()))
        .collect();
    let mc = Client::builder()
        .servers(&specs)
        .behavior(Behavior::Distribution(Distribution::ConsistentKetama))
        .build()
        .unwrap();
    let keys = 10_000;
    for i in 0..keys {
        mc.set(format!("spread:{i}"), "x", 0).unwrap();
    }
    let held: Vec<usize> = servers.iter().map(items).collect();
    assert_eq!(held.iter().sum::<usize>(), keys, "every key stored once");
    let total: u32 = weights.iter().sum();
    let worst = held
        .iter()
        .zip(weights)
        .map(|(&n, &w)| {
            let share = keys as f64 * f64::from(w) / f64::from(total);
            (n as f64 / share - 1.0).abs()
        })
        .fold(0.0, f64::max);
    (held, worst)
}

/// A ring's spread depends on the server names (`host:port`) hashed onto it, and test servers
/// get random ports. Simulating 1 500 random 4-server rings, about 2 % put a server outside
/// ±25 % of an even share (the worst 39 %); for 1:2:3 weights about 1 %. So up to three fresh
/// rings are measured: every one must be within ±50 %, and one within ±25 %.
fn assert_ketama_spreads(weights: &[u32]) {
    let mut rings = Vec::new();
    for _ in 0..3 {
        let (held, worst) = spread_on_a_new_ring(weights);
        eprintln!(
            "ketama, weights {weights:?}, 10000 keys: {held:?} (largest deviation from the share {:.1} %)",
            worst * 100.0
        );
        assert!(worst <= 0.5, "{held:?} for weights {weights:?}");
        rings.push((held, worst));
        if worst <= 0.25 {
            return;
        }
    }
    panic!("no ring within ±25 % of its share: {rings:?}");
}

#[test]
fn ketama_spreads_10000_keys_within_a_quarter_of_an_even_share() {
    assert_ketama_spreads(&[1, 1, 1, 1]);
}

#[test]
fn weights_shift_the_share_in_proportion() {
    assert_ketama_spreads(&[1, 2, 3]);
}

/// Stores keys through all `n` servers, then reads them through a client without one: the
/// misses are the keys that moved.
fn keys_moved_by_removing_one(distribution: Distribution, n: usize) -> (usize, usize, usize) {
    let servers = cluster(n);
    let all = specs(&servers);
    let build = |specs: &[String]| {
        Client::builder()
            .servers(specs)
            .behavior(Behavior::Distribution(distribution))
            .build()
            .unwrap()
    };
    let full = build(&all);
    let keys = 10_000;
    for i in 0..keys {
        full.set(format!("moved:{i}"), "x", 0).unwrap();
    }
    let removed = 1;
    let on_removed = items(&servers[removed]);
    let rest: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != removed)
        .map(|(_, s)| s.clone())
        .collect();
    let fewer = build(&rest);
    let moved = (0..keys)
        .filter(|i| fewer.get::<String>(format!("moved:{i}")).unwrap().is_none())
        .count();
    (moved, on_removed, keys)
}

#[test]
fn removing_one_of_five_servers_moves_a_fifth_of_the_keys_under_ketama() {
    let (moved, on_removed, keys) = keys_moved_by_removing_one(Distribution::ConsistentKetama, 5);
    eprintln!(
        "ketama, 5 -> 4 servers: {moved} of {keys} keys moved ({on_removed} were on the removed server)"
    );
    assert_eq!(moved, on_removed, "only the removed server's keys move");
    assert!(
        (1000..=3000).contains(&moved),
        "{moved} of {keys} moved; about 1/5 expected"
    );
}

#[test]
fn removing_one_of_five_servers_moves_most_keys_under_modula() {
    let (moved, on_removed, keys) = keys_moved_by_removing_one(Distribution::Modula, 5);
    eprintln!(
        "modula, 5 -> 4 servers: {moved} of {keys} keys moved ({on_removed} were on the removed server)"
    );
    assert!(
        moved > keys * 6 / 10,
        "{moved} of {keys} moved; about 4/5 expected"
    );
}

// ---- replicas ------------------------------------------------------------------------------

#[test]
fn with_one_replica_reads_of_a_killed_primarys_keys_still_hit() {
    let mut servers = cluster(3);
    let build = |servers: &[Memcached]| {
        Client::builder()
            .servers(specs(servers))
            .binary(true)
            .behavior(Behavior::Distribution(Distribution::ConsistentKetama))
            .behavior(Behavior::NumberOfReplicas(1))
            .build()
            .unwrap()
    };
    let mc = build(&servers);
    let keys: Vec<String> = (0..300).map(|i| format!("replicated:{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        mc.set(k, i, 0).unwrap();
    }
    let killed = servers[0].spec();
    let orphans: Vec<(usize, &String)> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| mc.server_for_key(k).unwrap().to_string() == killed)
        .collect();
    assert!(orphans.len() > 30, "server 0 owns {} keys", orphans.len());
    servers[0].stop();

    // The connection that was open to the killed server fails once (libmemcached learns of the
    // death on that read); every other read is served by the replica.
    let mut errors = Vec::new();
    for (i, k) in &orphans {
        match mc.get::<usize>(k) {
            Ok(v) => assert_eq!(v, Some(*i), "{k}"),
            Err(err) => errors.push(err),
        }
    }
    eprintln!(
        "replicas: {} of {} reads of a killed primary's keys hit; errors: {errors:?}",
        orphans.len() - errors.len(),
        orphans.len()
    );
    assert!(errors.len() <= 1, "{errors:?}");
    for err in &errors {
        assert!(err.is_connection(), "{err:?}");
        assert_eq!(
            err.server().map(ToString::to_string).as_deref(),
            Some(killed.as_str())
        );
    }
    // A client that never talked to the killed server reads them all.
    let fresh = build(&servers);
    for (i, k) in &orphans {
        assert_eq!(fresh.get::<usize>(k).unwrap(), Some(*i), "{k}");
    }
}

// ---- failover ------------------------------------------------------------------------------

/// One operation of the failover workload.
#[derive(Debug)]
struct Op {
    at: Duration,
    key: usize,
    on_killed: bool,
    result: Result<(), Error>,
    /// The get missed the value just set: the ring was rebuilt between the two, so they went
    /// to different servers (the key was rerouted in flight). Not an error of the client.
    missed: bool,
}

/// Kills one of three servers under a running workload (a set and a get per key, in a loop),
/// waits until its keys are rerouted, restarts it and waits until it rejoins, then checks
/// and prints the timeline.
fn failover_under_load(binary: bool) {
    const DEAD: Duration = Duration::from_secs(3);
    let mut servers = cluster(3);
    let victim = servers[2].spec();
    let mc = Client::builder()
        .servers(specs(&servers))
        .binary(binary)
        .failover()
        .behavior(Behavior::DeadTimeout(DEAD))
        .build()
        .unwrap();

    let log: Arc<Mutex<Vec<Op>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workload = {
        let (log, stop, victim) = (log.clone(), stop.clone(), victim.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            // Bounded even if the test thread fails before it says stop.
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(40) {
                let key = i % 200;
                let k = format!("fo:{key}");
                let mut missed = false;
                let result = mc.set(&k, i, 0).and_then(|()| match mc.get::<usize>(&k)? {
                    Some(v) if v == i => Ok(()),
                    None => {
                        missed = true;
                        Ok(())
                    }
                    other => Err(Error::InvalidArgument {
                        argument: "value",
                        reason: format!("read back {other:?}"),
                    }),
                });
                let on_killed = mc.server_for_key(&k).is_ok_and(|s| s.to_string() == victim);
                log.lock().unwrap().push(Op {
                    at: start.elapsed(),
                    key,
                    on_killed,
                    result,
                    missed,
                });
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop = StopOnDrop(stop.clone());
    let wait_for = |what: &str, limit: Duration, done: &dyn Fn(&[Op]) -> bool| {
        let deadline = Instant::now() + limit;
        loop {
            if done(&log.lock().unwrap()) {
                return start.elapsed();
            }
            assert!(Instant::now() < deadline, "{what} within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    wait_for("a running workload", Duration::from_secs(5), &|ops| {
        ops.len() > 200
    });
    // Ops that overlap the kill count as after it.
    let killed = start.elapsed();
    servers[2].stop();
    // The window is over when an error is followed by a second without any.
    let quiet = Duration::from_secs(1);
    wait_for("rerouting", Duration::from_secs(10), &|ops| {
        let last_error = ops.iter().rev().find(|o| o.result.is_err());
        last_error.is_some_and(|e| e.at > killed && start.elapsed() > e.at + quiet)
    });
    servers[2].restart().unwrap();
    let restarted = start.elapsed();
    let rejoined = wait_for("rejoining", DEAD + Duration::from_secs(5), &|ops| {
        ops.iter()
            .any(|o| o.at > restarted && o.on_killed && o.result.is_ok())
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    workload.join().unwrap();

    let ops = std::mem::take(&mut *log.lock().unwrap());
    let protocol = if binary { "binary" } else { "ascii" };
    let before: Vec<&Op> = ops.iter().filter(|o| o.at < killed).collect();
    let early: Vec<&&Op> = before.iter().filter(|o| o.result.is_err()).collect();
    assert!(
        early.is_empty(),
        "{protocol}: errors before the kill: {early:?}"
    );
    let owned: Vec<usize> = before
        .iter()
        .filter(|o| o.on_killed)
        .map(|o| o.key)
        .collect();
    assert!(!owned.is_empty(), "{protocol}: the victim owned keys");

    let errors: Vec<&Op> = ops.iter().filter(|o| o.result.is_err()).collect();
    assert!(!errors.is_empty(), "{protocol}: the kill went unnoticed");
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for op in &errors {
        let err = op.result.as_ref().unwrap_err();
        assert!(err.is_connection(), "{protocol}: {err:?}");
        assert_eq!(
            err.server().map(ToString::to_string).as_deref(),
            Some(victim.as_str()),
            "{protocol}: {err}"
        );
        *codes
            .entry(format!("{:?}", err.code().unwrap()))
            .or_default() += 1;
    }
    let first_error = errors[0].at;
    let window_end = errors[errors.len() - 1].at;
    // A set and its get may straddle the moment the ring drops the victim (or takes it back).
    let misses: Vec<&Op> = ops.iter().filter(|o| o.missed).collect();
    assert!(
        misses
            .iter()
            .all(|o| o.at > killed && (o.at <= window_end + quiet || o.at > restarted)),
        "{protocol}: misses outside the rerouting: {misses:?}"
    );
    assert!(
        misses.len() <= 5,
        "{protocol}: {} in-flight misses",
        misses.len()
    );
    assert!(
        window_end < restarted,
        "{protocol}: errors after the restart"
    );
    assert!(
        window_end - killed < Duration::from_secs(5),
        "{protocol}: keys failed for {:?} (retry 1 s, failure limit 2)",
        window_end - killed
    );
    // After the window: everything succeeds, and the victim's keys live elsewhere until it
    // rejoins.
    let rerouted: Vec<&Op> = ops
        .iter()
        .filter(|o| o.at > window_end && o.at < restarted && owned.contains(&o.key))
        .collect();
    assert!(
        rerouted.len() > 50,
        "{protocol}: {} rerouted ops",
        rerouted.len()
    );
    assert!(rerouted.iter().all(|o| !o.on_killed && o.result.is_ok()));
    let after = ops.iter().filter(|o| o.at > window_end).count();
    // It rejoins after the dead timeout (counted from its removal, in whole seconds).
    assert!(
        rejoined - window_end <= DEAD + Duration::from_secs(3),
        "{protocol}: rejoined {:?} after removal",
        rejoined - window_end
    );
    assert!(
        items(&servers[2]) > 0,
        "{protocol}: the rejoined server holds keys"
    );
    let in_window = ops
        .iter()
        .filter(|o| o.at >= killed && o.at <= window_end)
        .count();
    eprintln!(
        "failover ({protocol}, retry 1 s, failure limit 2, dead {DEAD:?}): killed at {killed:.2?}; \
         first error +{:.0?}, last error +{:.2?}; {} of {in_window} ops in the window failed {codes:?}; \
         then {after} ops without an error; restarted at +{:.2?}, rejoined at +{:.2?} \
         ({:.2?} after removal)",
        first_error - killed,
        window_end - killed,
        errors.len(),
        restarted - killed,
        rejoined - killed,
        rejoined - window_end,
    );
}

#[test]
fn failover_reroutes_a_killed_servers_keys_and_takes_it_back_ascii() {
    failover_under_load(false);
}

#[test]
fn failover_reroutes_a_killed_servers_keys_and_takes_it_back_binary() {
    failover_under_load(true);
}

// ---- timeouts ------------------------------------------------------------------------------

/// A TCP listener that accepts connections and never answers, until dropped.
struct Silent {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Silent {
    fn start() -> Silent {
        let listener = common::listener();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => held.push(stream),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Silent {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn spec(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn key_on(mc: &Client, spec: &str, tag: &str) -> String {
    (0..10_000)
        .map(|i| format!("{tag}:{i}"))
        .find(|k| mc.server_for_key(k).unwrap().to_string() == spec)
        .expect("some key maps to the server")
}

#[test]
fn a_server_that_never_answers_times_out_within_the_poll_timeout() {
    const POLL: Duration = Duration::from_millis(300);
    const MARGIN: Duration = Duration::from_secs(1);
    let silent = Silent::start();
    let good = common::own_server();
    for binary in [false, true] {
        let mc = Client::builder()
            .servers([good.spec(), silent.spec()])
            .binary(binary)
            .behavior(Behavior::PollTimeout(POLL))
            .build()
            .unwrap();
        let stuck = key_on(&mc, &silent.spec(), "stuck");
        let fine = key_on(&mc, &good.spec(), "fine");
        let mut took = Vec::new();
        for round in 0..2 {
            let started = Instant::now();
            let err = mc.get::<String>(&stuck).unwrap_err();
            let elapsed = started.elapsed();
            took.push(elapsed);
            assert!(err.is_timeout(), "binary={binary}: {err:?}");
            assert_eq!(
                err.server().map(ToString::to_string).as_deref(),
                Some(silent.spec().as_str())
            );
            assert!(
                elapsed >= POLL - Duration::from_millis(50) && elapsed < POLL + MARGIN,
                "binary={binary}: timed out after {elapsed:?} with a {POLL:?} poll timeout"
            );
            // The other server works meanwhile.
            mc.set(&fine, round, 0).unwrap();
            assert_eq!(mc.get::<i32>(&fine).unwrap(), Some(round));
        }
        eprintln!(
            "silent server (binary={binary}), poll timeout {POLL:?}: gets failed after {took:?}"
        );
    }
}

#[test]
fn a_connect_to_a_closed_port_fails_fast() {
    let closed = unused_port().unwrap();
    let spec = format!("127.0.0.1:{closed}");
    let mc = Client::builder()
        .servers([spec.as_str()])
        .behavior(Behavior::ConnectTimeout(Duration::from_secs(10)))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = mc.get::<String>("k").unwrap_err();
    let elapsed = started.elapsed();
    eprintln!("closed port: {err} after {elapsed:?}");
    assert_eq!(err.code(), Some(ReturnCode::ConnectionFailure), "{err:?}");
    assert_eq!(
        err.server().map(ToString::to_string).as_deref(),
        Some(spec.as_str())
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "a refused connect took {elapsed:?} (the connect timeout is 10 s)"
    );
}

#[test]
fn a_cluster_member_restarted_on_its_port_is_used_again_by_the_same_client() {
    let mut servers = cluster(3);
    let mc = Client::builder()
        .servers(specs(&servers))
        .behavior(Behavior::RetryTimeout(Duration::from_secs(1)))
        .build()
        .unwrap();
    let victim = servers[1].spec();
    let on_victim = key_on(&mc, &victim, "restarted");
    let elsewhere = key_on(&mc, &servers[0].spec(), "elsewhere");
    mc.set(&on_victim, "before", 0).unwrap();
    servers[1].stop();
    let err = mc.get::<String>(&on_victim).unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    assert_eq!(
        err.server().map(ToString::to_string).as_deref(),
        Some(victim.as_str())
    );
    mc.set(&elsewhere, "fine", 0).unwrap();
    servers[1].restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match mc.set(&on_victim, "after", 0) {
            Ok(()) => break,
            Err(err) if err.is_connection() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(err) => panic!("not reconnected: {err:?}"),
        }
    }
    assert_eq!(
        mc.get::<String>(&on_victim).unwrap().as_deref(),
        Some("after")
    );
    assert_eq!(
        mc.get::<String>(&elsewhere).unwrap().as_deref(),
        Some("fine")
    );
    let direct = Client::new([victim.as_str()]).unwrap();
    assert_eq!(
        direct.get::<String>(&on_victim).unwrap().as_deref(),
        Some("after"),
        "stored on the restarted server"
    );
}
