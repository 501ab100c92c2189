//! The partial and streaming forms of multi-key operations, and the prefixed view's single-key
//! operations, against real memcached processes in both protocols: a cluster with one server
//! killed keeps every result of the healthy servers, and names the dead one with its keys.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use libmemcached::testing::Memcached;
use libmemcached::{Behavior, Client, Error};

/// A client for `specs` that gives up on a dead server quickly.
fn client(specs: &[String], binary: bool) -> Client {
    Client::builder()
        .servers(specs)
        .binary(binary)
        .behavior(Behavior::ConnectTimeout(Duration::from_millis(500)))
        .behavior(Behavior::PollTimeout(Duration::from_millis(500)))
        .build()
        .unwrap()
}

struct Cluster {
    servers: Vec<Memcached>,
    specs: Vec<String>,
}

impl Cluster {
    fn start() -> Cluster {
        let servers: Vec<Memcached> = (0..3).map(|_| common::own_server()).collect();
        let specs = servers.iter().map(Memcached::spec).collect();
        Cluster { servers, specs }
    }

    /// Kills server 1 and returns its spec.
    fn kill_one(&mut self) -> String {
        self.servers[1].stop();
        self.specs[1].clone()
    }
}

/// Keys, split by whether they live on `dead`.
fn split(mc: &Client, keys: &[String], dead: &str) -> (Vec<String>, BTreeSet<Vec<u8>>) {
    let mut live = Vec::new();
    let mut on_dead = BTreeSet::new();
    for k in keys {
        match mc.server_for_key(k).unwrap().to_string() == dead {
            true => on_dead.insert(k.as_bytes().to_vec()),
            false => {
                live.push(k.clone());
                true
            }
        };
    }
    assert!(!live.is_empty() && !on_dead.is_empty(), "keys spread");
    (live, on_dead)
}

/// Every failure is the dead server's, and together they name exactly `keys`.
fn assert_only_dead(
    failures: &[libmemcached::KeyFailure],
    dead: &str,
    keys: &BTreeSet<Vec<u8>>,
    what: &str,
) {
    assert!(!failures.is_empty(), "{what}: no failure reported");
    for f in failures {
        assert_eq!(
            f.error.server().map(ToString::to_string).as_deref(),
            Some(dead),
            "{what}: {}",
            f.error
        );
        assert!(f.error.is_connection(), "{what}: {}", f.error);
    }
    let named: BTreeSet<Vec<u8>> = failures.iter().flat_map(|f| f.keys.clone()).collect();
    assert_eq!(&named, keys, "{what}: exactly the dead server's keys");
}

#[test]
fn partial_reads_keep_every_hit_of_the_healthy_servers() {
    for binary in [false, true] {
        let mut cluster = Cluster::start();
        let mc = client(&cluster.specs, binary);
        let keys = common::spread_keys(&mc, "pr", 60, &cluster.specs, 2);
        // Each value names its key, so a value given for the wrong key would show.
        mc.set_multi(keys.iter().map(|k| (k.as_str(), k.as_str())), 0)
            .unwrap();
        let dead = cluster.kill_one();
        let (live, on_dead) = split(&mc, &keys, &dead);
        let what = if binary { "binary" } else { "ascii" };

        for attempt in 0..2 {
            let found = mc
                .get_multi_partial::<_, String>(keys.iter().map(String::as_str))
                .unwrap();
            assert_eq!(found.ok.len(), live.len(), "{what} #{attempt}");
            for (k, v) in &found.ok {
                assert_eq!(k, v, "{what} #{attempt}: a value for its own key");
            }
            assert!(!found.is_complete());
            assert_only_dead(&found.failures, &dead, &on_dead, what);
            let failed: BTreeSet<Vec<u8>> = found.failed_keys().map(<[u8]>::to_vec).collect();
            assert_eq!(failed, on_dead);
            // The strict form of the same call fails, naming the same keys.
            let err = found.into_result().unwrap_err();
            assert!(err.is_connection(), "{what}: {err}");
        }

        // Streaming: every live item reaches the closure, borrowed, then the dead server's
        // keys come back as the error.
        let mut seen = BTreeSet::new();
        let err = mc
            .get_multi_each(keys.iter().map(String::as_str), |item| {
                assert_eq!(item.key(), item.value(), "{what}: a value for its own key");
                assert_eq!(item.decode::<String>().unwrap().as_bytes(), item.key());
                seen.insert(item.key().to_vec());
            })
            .unwrap_err();
        let live_set: BTreeSet<Vec<u8>> = live.iter().map(|k| k.as_bytes().to_vec()).collect();
        assert_eq!(seen, live_set, "{what}: every live item streamed");
        assert_only_dead(err.failures(), &dead, &on_dead, what);
    }
}

#[test]
fn partial_writes_report_the_dead_servers_keys_and_do_the_rest() {
    for binary in [false, true] {
        let mut cluster = Cluster::start();
        let mc = client(&cluster.specs, binary);
        let what = if binary { "binary" } else { "ascii" };
        let keys = common::spread_keys(&mc, "pw", 60, &cluster.specs, 2);
        let dead = cluster.kill_one();
        let (live, on_dead) = split(&mc, &keys, &dead);
        let all = || keys.iter().map(String::as_str);

        let set = mc.set_multi_partial(all().map(|k| (k, "1")), 0).unwrap();
        assert!(
            set.ok.is_empty(),
            "{what}: nothing refused by a live server"
        );
        assert_only_dead(&set.failures, &dead, &on_dead, what);

        let add = mc.add_multi_partial(all().map(|k| (k, "2")), 0).unwrap();
        let existed: BTreeSet<&str> = add.ok.iter().copied().collect();
        assert_eq!(
            existed,
            live.iter().map(String::as_str).collect(),
            "{what}: add"
        );
        assert_only_dead(&add.failures, &dead, &on_dead, what);

        let incr = mc.incr_multi_partial(all(), 5).unwrap();
        assert_eq!(incr.ok.len(), live.len(), "{what}: incr");
        assert!(
            incr.ok.values().all(|v| *v == Some(6)),
            "{what}: {:?}",
            incr.ok
        );
        assert_only_dead(&incr.failures, &dead, &on_dead, what);

        let decr = mc.decr_multi_partial(all(), 2).unwrap();
        assert!(
            decr.ok.values().all(|v| *v == Some(4)),
            "{what}: {:?}",
            decr.ok
        );
        assert_only_dead(&decr.failures, &dead, &on_dead, what);

        let found = mc.get_multi_partial::<_, u64>(all()).unwrap();
        assert_eq!(found.ok.len(), live.len());
        assert!(
            found.ok.values().all(|v| *v == 4),
            "{what}: live servers did the writes"
        );

        let deleted = mc.delete_multi_partial(all()).unwrap();
        assert!(deleted.ok.is_empty(), "{what}: every live key existed");
        assert_only_dead(&deleted.failures, &dead, &on_dead, what);
        let gone = mc
            .delete_multi_partial(live.iter().map(String::as_str))
            .unwrap();
        assert!(gone.is_complete());
        assert_eq!(gone.ok.len(), live.len(), "{what}: now none exists");
    }
}

#[test]
fn a_value_that_does_not_decode_fails_its_key_alone() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let good = common::key("good");
        let bad = common::key("bad");
        mc.set(&good, "text", 0).unwrap();
        mc.set(&bad, &[0xff, 0xfe][..], 0).unwrap();
        let found = mc
            .get_multi_partial::<_, String>([good.as_str(), bad.as_str()])
            .unwrap();
        assert_eq!(
            found.ok.get(good.as_str()).map(String::as_str),
            Some("text"),
            "{protocol}"
        );
        assert_eq!(found.failures.len(), 1, "{protocol}");
        assert!(
            matches!(found.failures[0].error, Error::Decode { .. }),
            "{protocol}"
        );
        assert_eq!(found.failures[0].keys, [bad.as_bytes().to_vec()]);
        // The strict form returns the decode error itself.
        let err = mc
            .get_multi::<_, String>([good.as_str(), bad.as_str()])
            .unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{protocol}: {err:?}");
    }
}

#[test]
fn the_prefixed_view_has_the_single_key_operations() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let prefix = format!("{}:", common::key("view"));
        let view = mc.prefixed(&prefix);
        let full = |k: &str| format!("{prefix}{k}");

        view.set("a", "1", 0).unwrap();
        assert_eq!(
            mc.get::<String>(full("a")).unwrap().as_deref(),
            Some("1"),
            "{protocol}"
        );
        assert_eq!(view.get::<String>("a").unwrap().as_deref(), Some("1"));
        assert!(
            !view.add("a", "2", 0).unwrap(),
            "{protocol}: add of an existing key"
        );
        assert!(view.replace("a", "3", 0).unwrap());
        assert!(view.append("a", "4").unwrap());
        assert!(view.prepend("a", "2").unwrap());
        let (value, token) = view.gets::<String>("a").unwrap().unwrap();
        assert_eq!(value, "234", "{protocol}");
        assert!(view.cas("a", "5", token, 0).unwrap());
        assert!(
            !view.cas("a", "6", token, 0).unwrap(),
            "{protocol}: stale token"
        );
        assert_eq!(view.incr("a", 10).unwrap(), 15);
        assert_eq!(view.decr("a", 1).unwrap(), 14);
        assert_eq!(view.incr_with_initial("n", 1, 7, 0).unwrap(), 7);
        assert_eq!(mc.get::<u64>(full("n")).unwrap(), Some(7), "{protocol}");
        assert!(view.touch("a", 3600).unwrap());
        assert_eq!(
            view.server_for_key("a").unwrap(),
            mc.server_for_key(full("a")).unwrap()
        );
        assert!(view.delete("a").unwrap());
        assert!(!view.delete("a").unwrap());
        assert_eq!(mc.get::<String>(full("a")).unwrap(), None, "{protocol}");

        // The prefix counts towards the key limit, in single-key operations too.
        let long = "k".repeat(250 - prefix.len() + 1);
        let err = view.set(&long, "v", 0).unwrap_err();
        assert!(
            matches!(err, Error::InvalidKey { .. }),
            "{protocol}: {err:?}"
        );
    }
}

#[test]
fn partial_results_through_a_prefix_name_the_callers_keys() {
    let mut cluster = Cluster::start();
    let mc = client(&cluster.specs, false);
    let prefix = format!("{}:", common::spread_base(&mc, "pp", 40, &cluster.specs, 2));
    let view = mc.prefixed(&prefix);
    let keys: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    view.set_multi(keys.iter().map(|k| (k.as_str(), k.as_str())), 0)
        .unwrap();
    let dead = cluster.kill_one();
    let full: Vec<String> = keys.iter().map(|k| format!("{prefix}{k}")).collect();
    let (_, on_dead_full) = split(&mc, &full, &dead);
    let on_dead: BTreeSet<Vec<u8>> = on_dead_full
        .iter()
        .map(|k| k[prefix.len()..].to_vec())
        .collect();
    let found = view
        .get_multi_partial::<_, String>(keys.iter().map(String::as_str))
        .unwrap();
    for (k, v) in &found.ok {
        assert_eq!(k, v);
    }
    assert_eq!(found.ok.len() + on_dead.len(), keys.len());
    assert_only_dead(&found.failures, &dead, &on_dead, "prefixed");
    let _: HashMap<&str, String> = found.ok;
}
