//! Every single-key operation against a real memcached, in the ASCII and binary protocols,
//! with the same results in both.

mod common;

use std::time::{Duration, SystemTime};

use libmemcached::{Encoded, Error, Expiration};

#[test]
fn get_of_a_missing_key_is_none() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        assert_eq!(
            mc.get::<String>(common::key("miss")).unwrap(),
            None,
            "{protocol}"
        );
        assert_eq!(
            mc.gets::<Vec<u8>>(common::key("miss")).unwrap(),
            None,
            "{protocol}"
        );
    }
}

#[test]
fn values_round_trip_with_pylibmc_flags() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let k = common::key("text");
        mc.set(&k, "héllo 🌍", 0).unwrap();
        assert_eq!(
            mc.get::<String>(&k).unwrap().as_deref(),
            Some("héllo 🌍"),
            "{protocol}"
        );
        assert_eq!(flags_of(&mc, &k), 16, "{protocol}: text is flags 16");

        let k = common::key("bytes");
        mc.set(&k, &[0u8, 1, 255][..], 0).unwrap();
        assert_eq!(
            mc.get::<Vec<u8>>(&k).unwrap(),
            Some(vec![0, 1, 255]),
            "{protocol}"
        );
        assert_eq!(flags_of(&mc, &k), 0, "{protocol}: bytes are flags 0");

        let k = common::key("int");
        mc.set(&k, i64::MIN, 0).unwrap();
        assert_eq!(mc.get::<i64>(&k).unwrap(), Some(i64::MIN), "{protocol}");
        assert_eq!(
            mc.get::<String>(&k).unwrap().as_deref(),
            Some("-9223372036854775808")
        );
        assert_eq!(flags_of(&mc, &k), 4, "{protocol}: integers are flags 4");

        let k = common::key("u64");
        mc.set(&k, u64::MAX, 0).unwrap();
        assert_eq!(mc.get::<u64>(&k).unwrap(), Some(u64::MAX), "{protocol}");
    }
}

/// The flags stored with a key, read through the raw-value escape hatch.
fn flags_of(mc: &libmemcached::Client, key: &str) -> u32 {
    struct Flags(u32);
    impl libmemcached::FromValue for Flags {
        fn from_value(_: &[u8], flags: u32) -> Result<Self, libmemcached::BoxError> {
            Ok(Flags(flags))
        }
    }
    mc.get::<Flags>(key).unwrap().expect("key present").0
}

#[test]
fn an_empty_value_is_a_hit() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let k = common::key("empty");
        mc.set(&k, "", 0).unwrap();
        assert_eq!(
            mc.get::<String>(&k).unwrap(),
            Some(String::new()),
            "{protocol}"
        );
        assert_eq!(mc.get::<Vec<u8>>(&k).unwrap(), Some(vec![]), "{protocol}");
        let (value, cas) = mc.gets::<Vec<u8>>(&k).unwrap().expect("hit");
        assert!(value.is_empty() && cas != 0, "{protocol}");
    }
}

#[test]
fn add_stores_only_new_keys() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let k = common::key("add");
        assert!(mc.add(&k, "first", 0).unwrap(), "{protocol}");
        assert!(
            !mc.add(&k, "second", 0).unwrap(),
            "{protocol}: add of an existing key"
        );
        assert_eq!(mc.get::<String>(&k).unwrap().as_deref(), Some("first"));
    }
}

#[test]
fn replace_stores_only_existing_keys() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let k = common::key("replace");
        assert!(
            !mc.replace(&k, "x", 0).unwrap(),
            "{protocol}: replace of a missing key"
        );
        assert_eq!(mc.get::<String>(&k).unwrap(), None);
        mc.set(&k, "old", 0).unwrap();
        assert!(mc.replace(&k, "new", 0).unwrap(), "{protocol}");
        assert_eq!(mc.get::<String>(&k).unwrap().as_deref(), Some("new"));
    }
}

#[test]
fn append_and_prepend_extend_existing_values() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let k = common::key("pend");
        assert!(
            !mc.append(&k, "x").unwrap(),
            "{protocol}: append to a missing key"
        );
        assert!(
            !mc.prepend(&k, "x").unwrap(),
            "{protocol}: prepend to a missing key"
        );
        assert_eq!(mc.get::<String>(&k).unwrap(), None);
        mc.set(&k, "mid", 0).unwrap();
        assert!(mc.append(&k, "-end").unwrap(), "{protocol}");
        assert!(mc.prepend(&k, "start-").unwrap(), "{protocol}");
        assert_eq!(
            mc.get::<String>(&k).unwrap().as_deref(),
            Some("start-mid-end")
        );
        assert_eq!(flags_of(&mc, &k), 16, "{protocol}: the original flags stay");
    }
}

#[test]
fn gets_and_cas_work_without_turning_cas_on() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let k = common::key("cas");
        mc.set(&k, "v1", 0).unwrap();
        let (value, token) = mc.gets::<String>(&k).unwrap().expect("hit");
        assert_eq!(value, "v1");
        assert!(
            mc.cas(&k, "v2", token, 0).unwrap(),
            "{protocol}: fresh token"
        );
        assert!(
            !mc.cas(&k, "v3", token, 0).unwrap(),
            "{protocol}: stale token"
        );
        assert_eq!(mc.get::<String>(&k).unwrap().as_deref(), Some("v2"));

        let (_, newer) = mc.gets::<String>(&k).unwrap().expect("hit");
        assert_ne!(newer, token, "{protocol}: the token changes with the value");
        assert!(mc.delete(&k).unwrap());
        assert!(
            !mc.cas(&k, "v4", newer, 0).unwrap(),
            "{protocol}: cas of a missing key"
        );
        assert_eq!(mc.get::<String>(&k).unwrap(), None);
    }
}

#[test]
fn delete_reports_whether_the_key_existed() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let k = common::key("delete");
        mc.set(&k, "v", 0).unwrap();
        assert!(mc.delete(&k).unwrap(), "{protocol}");
        assert!(!mc.delete(&k).unwrap(), "{protocol}: second delete");
        assert_eq!(mc.get::<String>(&k).unwrap(), None);
    }
}

#[test]
fn touch_reports_whether_the_key_existed_and_sets_expiration() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let k = common::key("touch");
        assert!(
            !mc.touch(&k, 60).unwrap(),
            "{protocol}: touch of a missing key"
        );
        mc.set(&k, "v", 0).unwrap();
        assert!(mc.touch(&k, 60).unwrap(), "{protocol}");
        assert_eq!(mc.get::<String>(&k).unwrap().as_deref(), Some("v"));
        // Touching with a zero duration expires the item at once, in both protocols.
        assert!(mc.touch(&k, Duration::ZERO).unwrap(), "{protocol}");
        assert_eq!(
            mc.get::<String>(&k).unwrap(),
            None,
            "{protocol}: expired by touch"
        );
    }
}

#[test]
fn incr_and_decr() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let k = common::key("counter");
        assert!(
            matches!(mc.incr(&k, 1), Err(Error::NotFound { .. })),
            "{protocol}: incr of a missing key"
        );
        assert!(
            matches!(mc.decr(&k, 1), Err(Error::NotFound { .. })),
            "{protocol}: decr of a missing key"
        );
        assert_eq!(
            mc.get::<u64>(&k).unwrap(),
            None,
            "{protocol}: a miss creates nothing"
        );

        mc.set(&k, 10u64, 0).unwrap();
        assert_eq!(mc.incr(&k, 5).unwrap(), 15, "{protocol}");
        assert_eq!(mc.decr(&k, 3).unwrap(), 12, "{protocol}");
        assert_eq!(mc.decr(&k, 100).unwrap(), 0, "{protocol}: decr stops at 0");
        assert_eq!(mc.get::<u64>(&k).unwrap(), Some(0));

        // 64-bit deltas are not truncated (memcached_increment's offset is only 32-bit).
        assert_eq!(
            mc.incr(&k, 5_000_000_000).unwrap(),
            5_000_000_000,
            "{protocol}"
        );
        mc.set(&k, u64::MAX, 0).unwrap();
        assert_eq!(mc.incr(&k, 2).unwrap(), 1, "{protocol}: incr wraps at 2^64");

        // Counters stored as text or bytes work too, and read back as integers.
        let k = common::key("text-counter");
        mc.set(&k, "41", 0).unwrap();
        assert_eq!(mc.incr(&k, 1).unwrap(), 42);
        assert_eq!(mc.get::<i32>(&k).unwrap(), Some(42));
    }
}

#[test]
fn incr_and_decr_with_initial_create_missing_counters() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let k = common::key("initial");
        assert_eq!(
            mc.incr_with_initial(&k, 5, 100, 0).unwrap(),
            100,
            "{protocol}: created"
        );
        assert_eq!(
            mc.incr_with_initial(&k, 5, 100, 0).unwrap(),
            105,
            "{protocol}: incremented"
        );
        assert_eq!(mc.get::<u64>(&k).unwrap(), Some(105));

        let k = common::key("initial-decr");
        assert_eq!(
            mc.decr_with_initial(&k, 1, 7, 0).unwrap(),
            7,
            "{protocol}: created"
        );
        assert_eq!(
            mc.decr_with_initial(&k, 1, 7, 0).unwrap(),
            6,
            "{protocol}: decremented"
        );

        let k = common::key("initial-expiring");
        assert_eq!(mc.incr_with_initial(&k, 1, 1, Duration::ZERO).unwrap(), 1);
        assert_eq!(
            mc.get::<u64>(&k).unwrap(),
            None,
            "{protocol}: the expiration applies"
        );
    }
}

#[test]
fn expirations_mean_what_they_say() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        // 60 days: memcached reads a raw 5184000 as a date in 1970 and drops the item at once
        // (pylibmc's behaviour); this crate sends the absolute time instead.
        let long = common::key("long");
        mc.set(&long, "v", Duration::from_secs(60 * 24 * 3600))
            .unwrap();
        assert_eq!(
            mc.get::<String>(&long).unwrap().as_deref(),
            Some("v"),
            "{protocol}"
        );
        let long_u32 = common::key("long-u32");
        mc.set(&long_u32, "v", 60 * 24 * 3600).unwrap();
        assert_eq!(
            mc.get::<String>(&long_u32).unwrap().as_deref(),
            Some("v"),
            "{protocol}"
        );

        let at = common::key("at");
        mc.set(&at, "v", SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        assert_eq!(
            mc.get::<String>(&at).unwrap().as_deref(),
            Some("v"),
            "{protocol}"
        );

        let past = common::key("past");
        mc.set(&past, "v", SystemTime::now() - Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            mc.get::<String>(&past).unwrap(),
            None,
            "{protocol}: a past time expires"
        );

        let never = common::key("never");
        mc.set(&never, "v", Expiration::Never).unwrap();
        assert_eq!(mc.get::<String>(&never).unwrap().as_deref(), Some("v"));
    }
}

#[test]
fn short_expirations_expire() {
    let server = common::server();
    let clients = common::both_protocols(server.specs());
    let keys: Vec<String> = clients
        .iter()
        .map(|(_, mc)| {
            let k = common::key("short");
            mc.set(&k, "v", 2).unwrap();
            assert_eq!(mc.get::<String>(&k).unwrap().as_deref(), Some("v"));
            k
        })
        .collect();
    // memcached's clock ticks once a second and an item expires at the tick its time is
    // reached, so an item set for 2 s lives 1 to 2 s (one set for 1 s could already be gone
    // at the get above). A second more allows for a late tick.
    std::thread::sleep(Duration::from_millis(3100));
    for ((protocol, mc), k) in clients.iter().zip(&keys) {
        assert_eq!(mc.get::<String>(k).unwrap(), None, "{protocol}");
    }
}

#[test]
fn raw_bytes_and_flags_round_trip() {
    let server = common::server();
    for (protocol, mc) in common::both_protocols(server.specs()) {
        let k = common::key("raw");
        mc.set(&k, Encoded::owned(b"php-data".to_vec(), 0x40), 0)
            .unwrap();
        assert_eq!(flags_of(&mc, &k), 0x40, "{protocol}");
        // Bits outside pylibmc's type mask are ignored when reading, as pylibmc does.
        assert_eq!(mc.get::<Vec<u8>>(&k).unwrap(), Some(b"php-data".to_vec()));
    }
}

#[test]
fn flush_all_empties_the_server_now_or_later() {
    let server = common::own_server();
    for (protocol, mc) in common::both_protocols(&[server.spec()]) {
        let k = common::key("flush");
        mc.set(&k, "v", 0).unwrap();
        mc.flush_all(None).unwrap();
        assert_eq!(mc.get::<String>(&k).unwrap(), None, "{protocol}");

        // memcached drops items stored before the flush time, which it takes as one second
        // less than asked, at a tick of its one-second clock: a delay of 3 s flushes 1 to 2 s
        // later.
        mc.set(&k, "v", 0).unwrap();
        mc.flush_all(Some(Duration::from_secs(3))).unwrap();
        assert_eq!(
            mc.get::<String>(&k).unwrap().as_deref(),
            Some("v"),
            "{protocol}: not yet"
        );
        std::thread::sleep(Duration::from_millis(3100));
        assert_eq!(
            mc.get::<String>(&k).unwrap(),
            None,
            "{protocol}: flushed after the delay"
        );
    }
}
