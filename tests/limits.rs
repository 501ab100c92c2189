//! Input at the edges of what libmemcached takes: server counts, pool sizes, timeouts that
//! cannot be added to a clock, CAS tokens, value sizes. Each is refused with an error that says
//! why, or works; none may abort or panic.

mod common;

use std::time::Duration;

use libmemcached::testing::Memcached;
use libmemcached::{
    Behavior, Client, ClientPool, Distribution, Error, MAX_CONSISTENT_SERVERS, MAX_POOL_SIZE,
};

fn specs(n: usize) -> Vec<String> {
    // Ports nothing listens on: no connection is made while building.
    (0..n)
        .map(|i| format!("127.0.0.1:{}", 30_000 + i))
        .collect()
}

fn refused_for_size(result: Result<Client, Error>, what: &str) {
    match result {
        Err(Error::InvalidConfig(why)) => {
            let why = why.to_string();
            assert!(
                why.contains(&MAX_CONSISTENT_SERVERS.to_string()),
                "{what}: {why}"
            );
        }
        other => panic!("{what}: expected a refusal naming the limit, got {other:?}"),
    }
}

#[test]
fn more_servers_than_a_ring_takes_are_refused_everywhere() {
    let max = MAX_CONSISTENT_SERVERS;
    assert_eq!(max, 100);
    let ketama = Behavior::Distribution(Distribution::ConsistentKetama);
    let build = |n: usize, b: Behavior| Client::builder().servers(specs(n)).behavior(b).build();

    // At the limit everything works, and keys map to servers.
    let mc = build(max, ketama).unwrap();
    assert!(mc.server_for_key("k").is_ok());
    let mc = Client::builder()
        .servers(specs(max))
        .failover()
        .build()
        .unwrap();
    assert!(mc.server_for_key("k").is_ok());

    // One more, through every door.
    refused_for_size(build(max + 1, ketama), "builder");
    refused_for_size(
        build(
            max + 1,
            Behavior::Distribution(Distribution::ConsistentWeighted),
        ),
        "weighted",
    );
    refused_for_size(build(max + 1, Behavior::Ketama(true)), "ketama");
    refused_for_size(
        Client::builder().servers(specs(max + 1)).failover().build(),
        "failover",
    );
    let modula = Client::new(specs(max + 1)).unwrap();
    for b in [
        ketama,
        Behavior::Ketama(true),
        Behavior::KetamaWeighted(true),
    ] {
        let err = modula.set_behavior(b).unwrap_err();
        assert!(
            err.to_string().contains("at most 100"),
            "set_behavior {b:?}: {err}"
        );
    }
    assert!(
        modula.server_for_key("k").is_ok(),
        "the client is unchanged"
    );

    let config = |n: usize, extra: &str| {
        let servers: String = specs(n).iter().map(|s| format!("--SERVER={s} ")).collect();
        Client::from_config(&format!("{servers}{extra}"))
    };
    assert!(config(max, "--DISTRIBUTION=consistent").is_ok());
    refused_for_size(config(max + 1, "--DISTRIBUTION=consistent"), "from_config");
    assert!(config(max + 1, "--DISTRIBUTION=modula").is_ok());
    let err = Client::from_config("--SERVER=127.0.0.1:30000 INCLUDE \"/etc/passwd\"").unwrap_err();
    assert!(err.to_string().contains("INCLUDE"), "{err}");

    // ElastiCache discovery builds through the same builder.
    let mut text = String::from("1\n");
    for i in 0..=max {
        text.push_str(&format!("node{i}.cache|127.0.0.1|{} ", 30_000 + i));
    }
    text.push('\n');
    let cluster = libmemcached::elasticache::ClusterConfig::parse(text.as_bytes()).unwrap();
    refused_for_size(cluster.builder().failover().build(), "elasticache");
}

#[test]
fn pool_sizes_and_timeouts_at_the_extremes_are_errors_or_work() {
    let server = common::server();
    let client = || Client::new(server.specs()).unwrap();
    for size in [0, MAX_POOL_SIZE + 1, usize::MAX] {
        let err = ClientPool::new(client(), size).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{size}: {err:?}"
        );
        assert!(
            err.to_string().contains(&MAX_POOL_SIZE.to_string()),
            "{err}"
        );
    }
    let pool = ClientPool::new(client(), 1).unwrap();
    // A timeout longer than the clock can count means no deadline: a free client comes at once.
    let mc = pool.reserve_timeout(Duration::MAX).unwrap();
    let key = common::key("pool");
    mc.set(&key, "v", 0).unwrap();
    assert_eq!(mc.get::<String>(&key).unwrap().as_deref(), Some("v"));
    drop(mc);

    // Discovery with an endless timeout against a port nothing listens on: a connection error.
    let endpoint = format!(
        "127.0.0.1:{}",
        libmemcached::testing::unused_port().unwrap()
    );
    let err = libmemcached::elasticache::discover_timeout(&endpoint, Duration::MAX).unwrap_err();
    assert!(err.is_connection(), "{err:?}");
}

#[test]
fn cas_tokens_at_the_extremes_are_answered_truthfully() {
    let server = Memcached::start().unwrap();
    for (protocol, mc) in common::both_protocols(&[server.spec()]) {
        let key = common::key("cas");
        mc.set(&key, "v", 0).unwrap();
        // No item has this token: the server says the key changed. libmemcached cannot write
        // a 20-digit token in an ASCII command, which is a clear error before anything is sent.
        match mc.cas(&key, "w", u64::MAX, 0) {
            Ok(swapped) => assert!(!swapped && protocol == "binary", "{protocol}"),
            Err(Error::InvalidArgument {
                argument,
                reason: why,
            }) => {
                assert_eq!(argument, "cas");
                assert!(
                    protocol == "ascii" && why.contains("20 digits"),
                    "{protocol}: {why}"
                )
            }
            Err(other) => panic!("{protocol}: {other:?}"),
        }
        assert!(
            !mc.cas(&key, "w", 9_999_999_999_999_999_999, 0).unwrap(),
            "{protocol}"
        );
        assert_eq!(
            mc.get::<String>(&key).unwrap().as_deref(),
            Some("v"),
            "{protocol}"
        );
        let (_, token) = mc.gets::<String>(&key).unwrap().unwrap();
        assert!(mc.cas(&key, "w", token, 0).unwrap(), "{protocol}");

        // Counters: the largest delta and initial value work in both protocols.
        let counter = common::key("counter");
        assert_eq!(
            mc.incr_with_initial(&counter, 1, u64::MAX, 0).unwrap(),
            u64::MAX
        );
        assert_eq!(
            mc.incr(&counter, u64::MAX).unwrap(),
            u64::MAX - 1,
            "{protocol}: wraps"
        );
        assert_eq!(
            mc.decr(&counter, u64::MAX).unwrap(),
            0,
            "{protocol}: stops at 0"
        );
    }
}

#[test]
fn one_call_inflates_at_most_the_clients_limit_in_all() {
    let server = common::server();
    let limit = 1 << 20;
    let mc = Client::builder()
        .servers(server.specs())
        .compression(libmemcached::Compression::new(1024))
        .max_inflated_len(limit)
        .build()
        .unwrap();
    let base = common::key("budget");
    let keys: Vec<String> = (0..3).map(|i| format!("{base}:{i}")).collect();
    let value = "z".repeat(600 * 1024); // compresses to a few KiB, inflates to 600 KiB
    for k in &keys {
        mc.set(k, &value, 0).unwrap();
        // One at a time, each fits the limit.
        assert_eq!(
            mc.get::<String>(k).unwrap().as_deref(),
            Some(value.as_str())
        );
    }
    // Together they would inflate to 1.8 MiB: the call's budget of 1 MiB covers the first.
    let found = mc
        .get_multi_partial::<_, String>(keys.iter().map(String::as_str))
        .unwrap();
    assert_eq!(found.ok.len(), 1, "{:?}", found.failures);
    assert_eq!(found.failures.len(), 2);
    for f in &found.failures {
        assert!(matches!(f.error, Error::Decompress { .. }), "{:?}", f.error);
        assert!(f.error.to_string().contains("budget"), "{}", f.error);
    }
    let err = mc
        .get_multi::<_, String>(keys.iter().map(String::as_str))
        .unwrap_err();
    assert!(matches!(err, Error::Decompress { .. }), "{err:?}");
}

#[test]
fn a_compressed_value_no_reader_could_inflate_is_refused_at_set() {
    let server = common::server();
    let mc = Client::builder()
        .servers(server.specs())
        .compression(libmemcached::Compression::new(1024))
        .build()
        .unwrap();
    let key = common::key("huge");
    let huge = vec![b'a'; libmemcached::DEFAULT_MAX_INFLATED_LEN + 1];
    let err = mc.set(&key, &huge[..], 0).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(err.to_string().contains("never be read back"), "{err}");
    assert_eq!(mc.get::<Vec<u8>>(&key).unwrap(), None, "nothing was stored");
    // Uncompressed, the server's item size limit is what refuses it.
    let plain = Client::new(server.specs()).unwrap();
    assert!(matches!(
        plain.set(&key, &huge[..], 0),
        Err(Error::TooBig { .. })
    ));
}
