//! The client through twemproxy (`nutcracker`): three memcached processes and a nutcracker in
//! front of them, all on loopback ports, and every operation of `Client` through it. Each either
//! works (and the keys are checked on the memcached servers behind the proxy) or fails with an
//! error that says it is not supported through a proxy. A memcached that dies behind the proxy
//! is an error, never a miss.
//!
//! The guide's "Scaling out" page (`guide/scaling-out.md`) has the table these tests check.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use libmemcached::testing::{Fault, FaultProxy, Memcached, Nutcracker};
use libmemcached::{Client, Compression, Error, ReturnCode, Value};

/// Three memcached servers and a nutcracker in front of them.
struct Cluster {
    backends: Vec<Memcached>,
    proxy: Nutcracker,
}

impl Cluster {
    fn start(auto_eject_hosts: bool) -> Cluster {
        let backends: Vec<Memcached> = (0..3).map(|_| common::own_server()).collect();
        let specs: Vec<String> = backends.iter().map(Memcached::spec).collect();
        let proxy = Nutcracker::builder()
            .auto_eject_hosts(auto_eject_hosts)
            // Long enough that an ejected server stays out for the whole test.
            .server_retry_timeout(Duration::from_secs(60))
            .start(&specs)
            .expect("nutcracker starts (install Debian's nutcracker package: scripts/setup)");
        Cluster { backends, proxy }
    }

    /// A client that knows its server is a proxy.
    fn client(&self) -> Client {
        Client::builder()
            .servers([self.proxy.spec()])
            .proxy()
            .build()
            .unwrap()
    }

    /// A client that takes the proxy for a memcached.
    fn unaware_client(&self) -> Client {
        Client::new([self.proxy.spec()]).unwrap()
    }

    /// The positions of the servers behind the proxy that hold `key`, asked directly.
    fn holders(&self, key: &str) -> Vec<usize> {
        (0..self.backends.len())
            .filter(|&i| self.backends[i].pid().is_some())
            .filter(|&i| common::raw_get(&self.backends[i].spec(), key).is_some())
            .collect()
    }

    /// The one server behind the proxy that holds `key`, and what it holds.
    fn holder(&self, key: &str) -> (usize, Vec<u8>) {
        let holders = self.holders(key);
        assert_eq!(
            holders.len(),
            1,
            "{key} is on exactly one server: {holders:?}"
        );
        let (_, data) = common::raw_get(&self.backends[holders[0]].spec(), key).unwrap();
        (holders[0], data)
    }

    /// Stores at least `n` keys through `mc`, and more until each server holds two, and returns
    /// them with the server each landed on.
    fn spread(&self, mc: &Client, tag: &str, n: usize) -> Vec<(String, usize)> {
        let mut placed = Vec::new();
        for i in 0..100 * n {
            let held = |s| placed.iter().filter(|(_, at)| *at == s).count();
            if i >= n && (0..self.backends.len()).all(|s| held(s) >= 2) {
                return placed;
            }
            let key = common::key(&format!("{tag}{i}"));
            mc.set(&key, "v", 0).unwrap();
            let (server, _) = self.holder(&key);
            placed.push((key, server));
        }
        panic!(
            "{} keys and a server still holds fewer than two: {placed:?}",
            100 * n
        );
    }
}

/// Whether `error` is the refusal of an operation a proxy cannot serve.
fn refused_through_proxy(error: &Error, operation: &str) -> bool {
    error.code() == Some(ReturnCode::NotSupported)
        && error
            .to_string()
            .starts_with(&format!("{operation} is not supported through a proxy"))
}

// ---- what works ------------------------------------------------------------------------------

#[test]
fn single_key_operations_work_through_twemproxy_and_land_on_the_servers_behind_it() {
    let cluster = Cluster::start(false);
    let mc = cluster.client();
    assert!(mc.is_proxy());

    // Keys spread over all three servers (`spread` fails otherwise), each on exactly one.
    cluster.spread(&mc, "spread", 30);

    let k = common::key("single");
    mc.set(&k, "hello", 0).unwrap();
    assert_eq!(mc.get::<String>(&k).unwrap().as_deref(), Some("hello"));
    assert_eq!(cluster.holder(&k).1, b"hello");
    assert_eq!(
        mc.get::<Value>(&k).unwrap(),
        Some(Value::Text("hello".into()))
    );
    assert_eq!(mc.get::<String>(common::key("missing")).unwrap(), None);

    assert!(!mc.add(&k, "again", 0).unwrap(), "add of an existing key");
    let added = common::key("added");
    assert!(mc.add(&added, "new", 0).unwrap());
    assert_eq!(cluster.holder(&added).1, b"new");
    assert!(mc.replace(&k, "replaced", 0).unwrap());
    assert!(!mc.replace(common::key("missing"), "x", 0).unwrap());
    assert!(mc.append(&k, "!").unwrap());
    assert!(mc.prepend(&k, "<").unwrap());
    assert!(!mc.append(common::key("missing"), "x").unwrap());
    assert!(!mc.prepend(common::key("missing"), "x").unwrap());
    assert_eq!(cluster.holder(&k).1, b"<replaced!");

    // twemproxy 0.5.0 passes gets and cas on.
    let (value, token) = mc.gets::<String>(&k).unwrap().unwrap();
    assert_eq!(value, "<replaced!");
    assert!(mc.cas(&k, "swapped", token, 0).unwrap());
    assert!(!mc.cas(&k, "stale", token, 0).unwrap(), "a stale token");
    assert_eq!(cluster.holder(&k).1, b"swapped");

    assert!(mc.touch(&k, 3600).unwrap());
    assert!(!mc.touch(common::key("missing"), 3600).unwrap());

    let n = common::key("counter");
    mc.set(&n, 10u64, 0).unwrap();
    assert_eq!(mc.incr(&n, 5).unwrap(), 15);
    assert_eq!(mc.decr(&n, 20).unwrap(), 0);
    assert!(matches!(
        mc.incr(common::key("missing"), 1),
        Err(Error::NotFound { .. })
    ));
    let created = common::key("initial");
    assert_eq!(mc.incr_with_initial(&created, 1, 7, 0).unwrap(), 7);
    assert_eq!(mc.incr_with_initial(&created, 1, 7, 0).unwrap(), 8);
    let down = common::key("initial-down");
    assert_eq!(mc.decr_with_initial(&down, 1, 7, 0).unwrap(), 7);
    assert_eq!(mc.decr_with_initial(&down, 2, 7, 0).unwrap(), 5);
    assert_eq!(cluster.holder(&down).1, b"5");

    assert!(mc.delete(&k).unwrap());
    assert!(!mc.delete(&k).unwrap());
    assert!(cluster.holders(&k).is_empty());

    // The client sees one server, the proxy; which memcached holds a key is the proxy's choice.
    let proxy: libmemcached::Address = cluster.proxy.spec().parse().unwrap();
    assert_eq!(mc.server_for_key(&added).unwrap(), proxy);
    // version passes through to one of the memcached servers.
    let versions = mc.version().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].0, proxy);
    assert_eq!(versions[0].1, cluster.backends[0].stat("version").unwrap());
}

#[test]
fn multi_key_operations_work_through_twemproxy() {
    let cluster = Cluster::start(false);
    let mc = cluster.client();
    let keys: Vec<String> = (0..24).map(|i| common::key(&format!("multi{i}"))).collect();
    let items: Vec<(&str, String)> = keys
        .iter()
        .map(|k| (k.as_str(), format!("v-{k}")))
        .collect();

    assert!(mc.set_multi(items.clone(), 0).unwrap().is_empty());
    for (k, v) in &items {
        assert_eq!(cluster.holder(k).1, v.as_bytes());
    }
    let found: HashMap<&str, String> = mc.get_multi(keys.iter().map(String::as_str)).unwrap();
    assert_eq!(found, items.iter().cloned().collect());
    let partial = mc
        .get_multi_partial::<_, String>(keys.iter().map(String::as_str))
        .unwrap();
    assert!(partial.is_complete());
    assert_eq!(partial.ok.len(), keys.len());
    let mut seen = 0;
    mc.get_multi_each(&keys, |item| {
        assert_eq!(item.decode::<String>().unwrap().as_bytes(), item.value());
        seen += 1;
    })
    .unwrap();
    assert_eq!(seen, keys.len());

    let partial = mc.set_multi_partial(items.clone(), 0).unwrap();
    assert!(partial.is_complete() && partial.ok.is_empty());
    let fresh = common::key("fresh");
    let existed = mc
        .add_multi([(keys[0].as_str(), "no"), (fresh.as_str(), "yes")], 0)
        .unwrap();
    assert_eq!(existed, [keys[0].as_str()]);
    assert_eq!(cluster.holder(&fresh).1, b"yes");
    let fresh2 = common::key("fresh2");
    let partial = mc
        .add_multi_partial([(keys[1].as_str(), "no"), (fresh2.as_str(), "yes")], 0)
        .unwrap();
    assert!(partial.is_complete());
    assert_eq!(partial.ok, [keys[1].as_str()]);

    let missing = common::key("missing");
    let not_there = mc.delete_multi([fresh.as_str(), missing.as_str()]).unwrap();
    assert_eq!(not_there, [missing.as_str()]);
    assert!(cluster.holders(&fresh).is_empty());
    let partial = mc
        .delete_multi_partial([fresh2.as_str(), missing.as_str()])
        .unwrap();
    assert!(partial.is_complete());
    assert_eq!(partial.ok, [missing.as_str()]);

    let counters: Vec<String> = (0..6).map(|i| common::key(&format!("n{i}"))).collect();
    mc.set_multi(counters.iter().map(|k| (k.as_str(), 100u64)), 0)
        .unwrap();
    let up = mc
        .incr_multi(
            counters
                .iter()
                .map(String::as_str)
                .chain([missing.as_str()]),
            5,
        )
        .unwrap();
    assert_eq!(up[counters[0].as_str()], Some(105));
    assert_eq!(up[missing.as_str()], None);
    let partial = mc.incr_multi_partial(&counters, 1).unwrap();
    assert!(partial.is_complete());
    assert_eq!(partial.ok[&counters[1]], Some(106));
    let by = mc
        .incr_multi_by([(counters[2].as_str(), 10), (counters[3].as_str(), 20)])
        .unwrap();
    assert_eq!(by[counters[3].as_str()], Some(126));
    let down = mc.decr_multi(&counters, 6).unwrap();
    assert_eq!(down[&counters[0]], Some(100));
    let partial = mc.decr_multi_partial(&counters, 100).unwrap();
    assert!(partial.is_complete());
    assert_eq!(partial.ok[&counters[0]], Some(0));
    let by = mc.decr_multi_by([(counters[2].as_str(), 1)]).unwrap();
    assert_eq!(by[counters[2].as_str()], Some(9));
    // memcached rewrites a shorter number in place, padded with spaces.
    let (_, stored) = cluster.holder(&counters[2]);
    assert_eq!(String::from_utf8(stored).unwrap().trim_end(), "9");

    // bulk_set does not ask the proxy for the servers' item size limit (it cannot answer).
    let bulk: Vec<(String, String)> = (0..200)
        .map(|i| (common::key(&format!("bulk{i}")), format!("b{i}")))
        .collect();
    mc.bulk_set(bulk.iter().map(|(k, v)| (k, v)), 0).unwrap();
    for (k, v) in bulk.iter().step_by(20) {
        assert_eq!(cluster.holder(k).1, v.as_bytes());
    }
    let loaded: HashMap<&String, String> = mc.get_multi(bulk.iter().map(|(k, _)| k)).unwrap();
    assert_eq!(loaded.len(), bulk.len());
    // A value over memcached's default limit is refused before anything is sent.
    let big = common::key("big");
    let err = mc.bulk_set([(&big, vec![0u8; 2 << 20])], 0).unwrap_err();
    assert!(
        err.to_string().contains("item size limit of 1048576 bytes"),
        "{err}"
    );
}

#[test]
fn a_multi_get_with_misses_comes_back_reordered_and_is_read_through_a_proxy() {
    let cluster = Cluster::start(false);
    let mc = cluster.client();
    // Two keys on one server, the first of them missing, and between them one on another:
    // twemproxy fills the first key's place with the value of the third, which then comes
    // before the second.
    let placed = cluster.spread(&mc, "order", 12);
    let server = placed[0].1;
    let same: Vec<&str> = placed
        .iter()
        .filter(|(_, s)| *s == server)
        .map(|(k, _)| k.as_str())
        .collect();
    let other = &placed.iter().find(|(_, s)| *s != server).unwrap().0;
    assert!(same.len() >= 2, "{placed:?}");
    assert!(mc.delete(same[0]).unwrap());
    let asked = [same[0], other.as_str(), same[1]];

    let found: HashMap<&str, String> = mc.get_multi(asked).unwrap();
    let expected = HashMap::from([(other.as_str(), "v".to_owned()), (same[1], "v".to_owned())]);
    assert_eq!(found, expected);

    // A client that does not know it talks to a proxy takes the order for a broken stream:
    // an error that points at the setting, never a wrong answer.
    let unaware = cluster.unaware_client();
    let err = unaware.get_multi::<_, String>(asked).unwrap_err();
    assert!(err.is_protocol(), "{err}");
    assert!(err.to_string().contains("ClientBuilder::proxy"), "{err}");
    assert_eq!(
        unaware.get::<String>(same[1]).unwrap().as_deref(),
        Some("v")
    );
}

#[test]
fn prefixed_views_and_compression_work_through_twemproxy() {
    let cluster = Cluster::start(false);
    let mc = Client::builder()
        .servers([cluster.proxy.spec()])
        .proxy()
        .compression(Compression::new(100))
        .build()
        .unwrap();
    let users = mc.prefixed("user:");
    let id = common::key("id");
    users.set(&id, "ada", 0).unwrap();
    assert_eq!(users.get::<String>(&id).unwrap().as_deref(), Some("ada"));
    assert_eq!(cluster.holder(&format!("user:{id}")).1, b"ada");
    let found: HashMap<&str, String> = users.get_multi([id.as_str()]).unwrap();
    assert_eq!(found[id.as_str()], "ada");

    let long = "x".repeat(10_000);
    let k = common::key("zipped");
    mc.set(&k, long.as_str(), 0).unwrap();
    let (_, stored) = cluster.holder(&k);
    assert!(
        stored.len() < 1000,
        "stored compressed: {} bytes",
        stored.len()
    );
    assert_eq!(mc.get::<String>(&k).unwrap(), Some(long));
}

// ---- what is refused -------------------------------------------------------------------------

#[test]
fn server_level_operations_are_refused_before_anything_is_sent() {
    let cluster = Cluster::start(false);
    let mc = cluster.client();
    let k = common::key("kept");
    mc.set(&k, "v", 0).unwrap();
    let requests = |c: &Cluster| -> Vec<String> {
        c.backends
            .iter()
            .map(|b| b.stat("cmd_flush").unwrap())
            .collect()
    };
    let before = requests(&cluster);

    for arg in [None, Some("settings"), Some("items")] {
        let err = mc.stats(arg).unwrap_err();
        assert!(refused_through_proxy(&err, "stats"), "{err}");
    }
    let err = mc.flush_all(None).unwrap_err();
    assert!(refused_through_proxy(&err, "flush_all"), "{err}");
    assert!(err.to_string().contains("twemproxy"), "{err}");
    let err = mc.flush_all(Some(Duration::from_secs(5))).unwrap_err();
    assert!(refused_through_proxy(&err, "flush_all"), "{err}");

    // Nothing reached the servers, and the connection still serves keys.
    assert_eq!(requests(&cluster), before);
    assert_eq!(mc.get::<String>(&k).unwrap().as_deref(), Some("v"));
    // Clones keep the setting.
    let clone = mc.try_clone().unwrap();
    assert!(clone.is_proxy());
    assert!(refused_through_proxy(
        &clone.stats(None).unwrap_err(),
        "stats"
    ));
}

#[test]
fn the_binary_protocol_and_sasl_are_refused_at_build() {
    for builder in [
        Client::builder().binary(true),
        Client::builder().sasl("user", "password"),
    ] {
        let err = builder
            .servers(["127.0.0.1:22121"])
            .proxy()
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
        assert!(
            err.to_string().contains(
                "binary protocol (and SASL, which needs it) is not supported through a proxy"
            ),
            "{err}"
        );
    }
}

#[test]
fn without_the_setting_every_failure_says_what_happened() {
    let cluster = Cluster::start(false);
    let mc = cluster.unaware_client();
    assert!(!mc.is_proxy());
    let k = common::key("k");
    mc.set(&k, "v", 0).unwrap();

    // twemproxy closes the connection on stats and flush_all: an error naming the proxy and
    // what closed it, for every group (never an empty answer, never "SUCCESS").
    let proxy: libmemcached::Address = cluster.proxy.spec().parse().unwrap();
    for arg in [None, Some("settings"), Some("items")] {
        let err = mc.stats(arg).unwrap_err();
        assert!(err.is_connection(), "{arg:?}: {err}");
        assert_eq!(err.server(), Some(&proxy), "{arg:?}");
        assert!(err.to_string().contains("closed the connection"), "{err}");
        assert!(!err.to_string().contains("SUCCESS"), "{err}");
    }
    let err = mc.flush_all(None).unwrap_err();
    assert!(err.is_connection(), "{err}");
    assert_eq!(err.server(), Some(&proxy));
    assert!(err.to_string().contains("ClientBuilder::proxy"), "{err}");
    // The flush never reached the servers.
    assert_eq!(cluster.holder(&k).1, b"v");

    // bulk_set asks for the item size limit and says why it could not.
    let err = mc.bulk_set([(&k, "w")], 0).unwrap_err();
    assert!(err.is_connection(), "{err}");
    assert!(err.to_string().contains("closed the connection"), "{err}");

    // twemproxy closes the connection on a binary request: an error, not a miss.
    let binary = common::client(&[cluster.proxy.spec()], true);
    let err = binary.get::<String>(&k).unwrap_err();
    assert!(err.is_connection(), "{err}");
    assert!(binary.set(&k, "w", 0).unwrap_err().is_connection());

    // Each error reset what it had to: the client goes on.
    assert_eq!(mc.get::<String>(&k).unwrap().as_deref(), Some("v"));
}

// ---- a memcached behind the proxy dies ---------------------------------------------------------

#[test]
fn a_dead_server_behind_the_proxy_is_an_error_never_a_miss() {
    let mut cluster = Cluster::start(false);
    let mc = cluster.client();
    let unaware = cluster.unaware_client();
    let placed = cluster.spread(&mc, "dead", 40);
    let dead: BTreeSet<&str> = held_by(&placed, 1).into_iter().collect();
    assert!(!dead.is_empty(), "{placed:?}");
    cluster.backends[1].stop();
    let proxy: libmemcached::Address = cluster.proxy.spec().parse().unwrap();

    // Twice over: the answer does not drift into a miss as twemproxy retries the server.
    for round in 0..2 {
        for (key, _) in &placed {
            let on_dead = dead.contains(key.as_str());
            for (client, name) in [(&mc, "proxy"), (&unaware, "unaware")] {
                let got = client.get::<String>(key);
                let gets = client.gets::<String>(key);
                if !on_dead {
                    assert_eq!(got.unwrap().as_deref(), Some("v"), "{name} round {round}");
                    assert_eq!(gets.unwrap().unwrap().0, "v");
                    continue;
                }
                for err in [got.unwrap_err(), gets.unwrap_err()] {
                    assert!(err.is_server(), "{name} round {round}: {err}");
                    assert_eq!(err.server(), Some(&proxy), "{err}");
                    assert!(err.to_string().contains("Connection refused"), "{err}");
                    if name == "proxy" {
                        assert!(
                            err.to_string().contains(
                                "the memcached server behind it that holds the key failed"
                            ),
                            "{err}"
                        );
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(600));
    }

    // A write to the dead server fails too, and writes to the others land.
    let first_dead = *dead.first().unwrap();
    assert!(mc.set(first_dead, "w", 0).unwrap_err().is_server());
    let alive = &placed.iter().find(|(_, s)| *s != 1).unwrap().0;
    mc.set(alive, "v", 0).unwrap();

    // twemproxy answers a multi-get that touches the dead server with one SERVER_ERROR for the
    // whole request. A client that knows it talks to a proxy asks those keys again one by one:
    // only the dead server's keys fail. One that does not reports every key failed. Never a miss.
    let keys: Vec<&str> = placed.iter().map(|(k, _)| k.as_str()).collect();
    for (client, knows) in [(&mc, true), (&unaware, false)] {
        let err = client.get_multi::<_, String>(&keys).unwrap_err();
        let failed: BTreeSet<&[u8]> = err
            .failures()
            .iter()
            .flat_map(|f| f.keys.iter().map(Vec::as_slice))
            .collect();
        assert!(dead.iter().all(|k| failed.contains(k.as_bytes())), "{err}");
        assert!(err.is_server(), "{err}");
        assert_eq!(failed.len() == dead.len(), knows, "{err}");

        let partial = client.get_multi_partial::<_, String>(&keys).unwrap();
        let failed: BTreeSet<&[u8]> = partial.failed_keys().collect();
        assert!(dead.iter().all(|k| failed.contains(k.as_bytes())));
        assert!(partial.ok.keys().all(|k| !dead.contains(**k)));
        match knows {
            true => {
                assert_eq!(partial.ok.len(), keys.len() - dead.len(), "every live key");
                assert!(partial.ok.values().all(|v| v == "v"));
                assert_eq!(failed.len(), dead.len());
            }
            false => assert!(
                partial.ok.is_empty(),
                "the whole request failed at the proxy"
            ),
        }

        // Keys of the live servers alone still come back.
        let live: Vec<&str> = keys.iter().copied().filter(|k| !dead.contains(k)).collect();
        let found: HashMap<&str, String> = client.get_multi(live.iter().copied()).unwrap();
        assert_eq!(found.len(), live.len());
    }
}

/// A memcached that hangs behind the proxy (twemproxy times it out) costs a multi-get one proxy
/// timeout for the whole request and one more for the keys asked again alone, which go out
/// together: not one timeout per key of the hung server.
#[test]
fn a_hung_server_behind_the_proxy_costs_a_multi_get_two_timeouts_not_one_per_key() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let backends: Vec<Memcached> = (0..3).map(|_| common::own_server()).collect();
    let hung = FaultProxy::start(backends[1].spec()).unwrap();
    let specs = [backends[0].spec(), hung.spec(), backends[2].spec()];
    let proxy = Nutcracker::builder()
        .timeout(TIMEOUT)
        .start(&specs)
        .expect("nutcracker starts (install Debian's nutcracker package: scripts/setup)");
    let mc = Client::builder()
        .servers([proxy.spec()])
        .proxy()
        .build()
        .unwrap();
    // 12 keys on the server that will hang and 20 on the others: 32, what the client asks
    // again at once.
    let mut placed = Vec::new();
    for i in 0..500 {
        let key = common::key(&format!("hung{i}"));
        mc.set(&key, "v", 0).unwrap();
        let holder = (0..3).find(|&s| common::raw_get(&backends[s].spec(), &key).is_some());
        let holder = holder.unwrap();
        let on_hung = held_by(&placed, 1).len();
        if (holder == 1 && on_hung < 12) || (holder != 1 && placed.len() - on_hung < 20) {
            placed.push((key, holder));
        }
        if placed.len() == 32 {
            break;
        }
    }
    let on_hung: BTreeSet<&str> = held_by(&placed, 1).into_iter().collect();
    assert_eq!((on_hung.len(), placed.len()), (12, 32), "{placed:?}");
    let keys: Vec<&str> = placed.iter().map(|(k, _)| k.as_str()).collect();

    hung.set_fault(Fault::Blackhole);
    let start = Instant::now();
    let partial = mc.get_multi_partial::<_, String>(&keys).unwrap();
    let took = start.elapsed();
    let failed: BTreeSet<&[u8]> = partial.failed_keys().collect();
    assert_eq!(failed.len(), on_hung.len(), "{:?}", partial.failures);
    assert!(on_hung.iter().all(|k| failed.contains(k.as_bytes())));
    assert_eq!(partial.ok.len(), keys.len() - on_hung.len());
    assert!(partial.ok.values().all(|v| v == "v"));
    for failure in &partial.failures {
        assert!(failure.error.is_server(), "{}", failure.error);
        assert_eq!(
            failure.error.server().map(ToString::to_string),
            Some(proxy.spec())
        );
    }
    // Asked one after the other, the hung server's keys alone would take 6 s; together, one
    // timeout after the multi-get's own. The bound leaves room for a loaded machine.
    assert!(
        took < TIMEOUT * 6,
        "{took:?} for {} keys of a hung server",
        on_hung.len()
    );

    // The client is in step after: with the server back, every key comes back.
    hung.set_fault(Fault::Pass);
    std::thread::sleep(TIMEOUT);
    let found: HashMap<&str, String> = mc.get_multi(keys.iter().copied()).unwrap();
    assert_eq!(found.len(), keys.len());
}

#[test]
fn with_auto_eject_the_keys_of_a_dead_server_move_to_the_others() {
    let mut cluster = Cluster::start(true);
    let mc = cluster.client();
    let placed = cluster.spread(&mc, "eject", 40);
    let dead = held_by(&placed, 1);
    assert!(!dead.is_empty(), "{placed:?}");
    cluster.backends[1].stop();

    // At most the requests before twemproxy ejects the server fail (with SERVER_ERROR); after
    // that its keys are misses: they now map to servers that never had them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match mc.get::<String>(dead[0]) {
            Ok(None) => break,
            Ok(Some(v)) => panic!("a value {v:?} from a dead server"),
            Err(err) => assert!(err.is_server(), "{err}"),
        }
        assert!(
            Instant::now() < deadline,
            "twemproxy never ejected the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for key in &dead {
        assert_eq!(mc.get::<String>(key).unwrap(), None);
    }
    // Writes land on the servers left, and the other keys stay where they were.
    mc.set(dead[0], "moved", 0).unwrap();
    let (server, data) = cluster.holder(dead[0]);
    assert_ne!(server, 1);
    assert_eq!(data, b"moved");
    let keys: Vec<&str> = placed.iter().map(|(k, _)| k.as_str()).collect();
    let found: HashMap<&str, String> = mc.get_multi(keys.iter().copied()).unwrap();
    assert_eq!(found.len(), keys.len() - dead.len() + 1);
}

#[test]
fn a_configuration_string_client_can_be_marked_as_through_a_proxy() {
    let cluster = Cluster::start(false);
    let mc = Client::builder()
        .config(format!("--SERVER={}", cluster.proxy.spec()))
        .proxy()
        .build()
        .unwrap();
    assert!(mc.is_proxy());
    let k = common::key("config");
    mc.set(&k, "v", 0).unwrap();
    assert_eq!(mc.get::<String>(&k).unwrap().as_deref(), Some("v"));
    assert_eq!(
        cluster.holders(&k).len(),
        1,
        "one server behind the proxy has it"
    );
    let err = mc.stats(None).unwrap_err();
    assert!(refused_through_proxy(&err, "stats"), "{err}");
}

/// The keys of `placed` that server `i` holds.
fn held_by(placed: &[(String, usize)], i: usize) -> Vec<&str> {
    placed
        .iter()
        .filter(|(_, s)| *s == i)
        .map(|(k, _)| k.as_str())
        .collect()
}
