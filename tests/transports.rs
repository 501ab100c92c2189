//! Unix sockets with weights, and UDP's fire-and-forget writes, end to end against real
//! memcached processes. (tests/servers.rs has the basic unix socket and UDP round trips.)

mod common;

use std::time::{Duration, Instant};

use libmemcached::testing::Memcached;
use libmemcached::{Behavior, Client, Distribution, ReturnCode, Transport};

/// How many of `keys` each socket holds, read through clients of their own.
fn held_by(servers: &[Memcached], keys: &[String]) -> Vec<usize> {
    servers
        .iter()
        .map(|s| {
            let direct = Client::new([s.spec()]).unwrap();
            let found: std::collections::HashMap<&str, u32> =
                direct.get_multi(keys.iter().map(String::as_str)).unwrap();
            found.len()
        })
        .collect()
}

#[test]
fn weights_on_unix_sockets_shift_keys_under_consistent_hashing() {
    let servers = [
        Memcached::start_unix().unwrap(),
        Memcached::start_unix().unwrap(),
    ];
    let keys: Vec<String> = (0..600).map(|i| format!("weighted-{i}")).collect();
    let weighted = [servers[0].spec(), format!("{}:3", servers[1].spec())];
    for binary in [false, true] {
        let mc = Client::builder()
            .servers(&weighted)
            .binary(binary)
            .behavior(Behavior::Distribution(Distribution::ConsistentKetama))
            .build()
            .unwrap();
        assert!(
            mc.servers()
                .iter()
                .all(|s| s.transport() == Transport::Unix)
        );
        mc.flush_all(None).unwrap();
        for (i, k) in keys.iter().enumerate() {
            mc.set(k, i as u32, 0).unwrap();
        }
        let held = held_by(&servers, &keys);
        assert_eq!(held.iter().sum::<usize>(), keys.len(), "binary={binary}");
        // Weight 3 against 1: about three quarters of the keys.
        let share = held[1] as f64 / keys.len() as f64;
        assert!((0.6..0.9).contains(&share), "binary={binary}: {held:?}");
        for (i, k) in keys.iter().enumerate().step_by(37) {
            assert_eq!(mc.get::<u32>(k).unwrap(), Some(i as u32));
        }
    }

    // Without weights the same keys split about evenly.
    let mc = Client::builder()
        .servers(servers.iter().map(Memcached::spec))
        .behavior(Behavior::Distribution(Distribution::ConsistentKetama))
        .build()
        .unwrap();
    mc.flush_all(None).unwrap();
    for k in &keys {
        mc.set(k, 1u32, 0).unwrap();
    }
    let held = held_by(&servers, &keys);
    let share = held[1] as f64 / keys.len() as f64;
    assert!((0.3..0.7).contains(&share), "{held:?}");
}

#[test]
fn udp_writes_land_and_everything_needing_a_reply_is_refused_before_sending() {
    let server = Memcached::builder().udp().start().unwrap();
    let tcp = Client::new([server.spec()]).unwrap();
    let udp = Client::builder()
        .servers([server.udp_spec().unwrap()])
        .build()
        .unwrap();
    // Datagrams are not acknowledged: wait until the server shows the write.
    let arrives = |check: &dyn Fn() -> bool, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "{what} never arrived");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let value = |k: &str| tcp.get::<String>(k).unwrap();
    // Sent, with no reply to say whether they took effect.
    let unanswered = |result: Result<bool, libmemcached::Error>, op: &str, k: &str| match result {
        Err(libmemcached::Error::Unanswered { operation, key }) => {
            assert_eq!((operation, key.as_deref()), (op, Some(k.as_bytes())))
        }
        other => panic!("{op}: expected Unanswered, got {other:?}"),
    };

    udp.set("u", "base", 0).unwrap();
    arrives(&|| value("u").as_deref() == Some("base"), "set");
    unanswered(udp.append("u", "+tail"), "append", "u");
    arrives(&|| value("u").as_deref() == Some("base+tail"), "append");
    unanswered(udp.prepend("u", "head+"), "prepend", "u");
    arrives(
        &|| value("u").as_deref() == Some("head+base+tail"),
        "prepend",
    );
    unanswered(udp.replace("u", "replaced", 0), "replace", "u");
    arrives(&|| value("u").as_deref() == Some("replaced"), "replace");
    unanswered(udp.add("added", "yes", 0), "add", "added");
    arrives(&|| value("added").as_deref() == Some("yes"), "add");
    let (_, cas) = tcp.gets::<String>("added").unwrap().unwrap();
    unanswered(udp.cas("added", "swapped", cas, 0), "cas", "added");
    arrives(&|| value("added").as_deref() == Some("swapped"), "cas");
    unanswered(udp.delete("u"), "delete", "u");
    arrives(&|| value("u").is_none(), "delete");
    assert!(
        udp.set_multi([("m1", "1"), ("m2", "2")], 0)
            .unwrap()
            .is_empty()
    );
    arrives(
        &|| value("m1").as_deref() == Some("1") && value("m2").as_deref() == Some("2"),
        "set_multi",
    );
    // Fire-and-forget: an add of an existing key is no more known to fail. memcached's worker
    // threads take datagrams concurrently, so the flush waits until the add was processed (a
    // flush taken first would let the add store its value).
    let stored = || server.stat("cmd_set").unwrap().parse::<u64>().unwrap();
    let sets = stored();
    unanswered(udp.add("added", "ignored", 0), "add", "added");
    arrives(&|| stored() > sets, "the add");
    assert_eq!(
        value("added").as_deref(),
        Some("swapped"),
        "the add stored nothing"
    );
    udp.flush_all(None).unwrap();
    arrives(&|| value("added").is_none(), "flush_all");

    let sets_before = server.stat("cmd_set").unwrap();
    let gets_before = server.stat("cmd_get").unwrap();
    let refused = |result: Result<String, libmemcached::Error>, operation: &str| {
        let err = result.unwrap_err();
        assert_eq!(
            err.code(),
            Some(ReturnCode::NotSupported),
            "{operation}: {err:?}"
        );
        assert!(err.to_string().contains("UDP"), "{operation}: {err}");
    };
    refused(udp.get::<String>("m1").map(|v| format!("{v:?}")), "get");
    refused(udp.gets::<String>("m1").map(|v| format!("{v:?}")), "gets");
    refused(
        udp.get_multi::<_, String>(["m1", "m2"])
            .map(|v| format!("{v:?}")),
        "get_multi",
    );
    refused(udp.touch("m1", 10).map(|v| v.to_string()), "touch");
    refused(udp.incr("n", 1).map(|v| v.to_string()), "incr");
    refused(udp.stats(None).map(|v| format!("{v:?}")), "stats");
    refused(udp.version().map(|v| format!("{v:?}")), "version");
    // Nothing went out for them: the server's counters did not move.
    assert_eq!(server.stat("cmd_touch").unwrap(), "0");
    assert_eq!(server.stat("cmd_set").unwrap(), sets_before);
    assert_eq!(server.stat("cmd_get").unwrap(), gets_before);
}
