//! A workload for `scripts/memcheck`: a bit of everything the crate does, run under valgrind's
//! memcheck to show that nothing leaks and no memory is misused, on the paths that succeed
//! and on those that fail. It starts its own memcached processes (not traced by valgrind).
//!
//! ```sh
//! cargo run --example memcheck_workload     # on its own: it checks its results and says "ok"
//! scripts/memcheck                         # under valgrind
//! ```

use std::collections::HashMap;
use std::time::Duration;

use libmemcached::elasticache::ClusterConfig;
use libmemcached::testing::Memcached;
use libmemcached::{
    Behavior, Client, ClientPool, Compressed, Compression, Distribution, Error, ThreadMappedPool,
    Value,
};

type Outcome = Result<(), Box<dyn std::error::Error>>;

fn main() -> Outcome {
    let mut first = Memcached::start()?;
    let second = Memcached::start()?;
    let specs = [first.spec(), second.spec()];

    for binary in [false, true] {
        let mc = Client::builder()
            .servers(&specs)
            .binary(binary)
            .behavior(Behavior::Distribution(Distribution::ConsistentKetama))
            .behavior(Behavior::PollTimeout(Duration::from_millis(500)))
            .compression(Compression::new(64))
            .build()?;
        single_keys(&mc)?;
        many_keys(&mc)?;
        refusals(&mc)?;
        server_level(&mc)?;
        pools(&mc)?;
    }

    // A server dies and comes back: errors, partial results, then answers again.
    for binary in [false, true] {
        let mc = Client::builder()
            .servers(&specs)
            .binary(binary)
            .behavior(Behavior::RetryTimeout(Duration::from_secs(1)))
            .behavior(Behavior::PollTimeout(Duration::from_millis(200)))
            .build()?;
        let keys: Vec<String> = (0..40).map(|i| format!("dead:{binary}:{i}")).collect();
        mc.set_multi(keys.iter().map(|k| (k.as_str(), "v")), 0)?;
        first.stop();
        let partial = mc.get_multi_partial::<_, String>(keys.iter().map(String::as_str))?;
        assert!(
            !partial.failures.is_empty(),
            "a killed server fails its keys"
        );
        assert!(
            mc.get_multi::<_, String>(keys.iter().map(String::as_str))
                .is_err()
        );
        let _ = mc.set_multi(keys.iter().map(|k| (k.as_str(), "w")), 0);
        let _ = mc.stats(None);
        let _ = mc.version();
        let _ = mc.delete_multi(keys.iter().map(String::as_str));
        let _ = mc.bulk_set(keys.iter().map(|k| (k.as_str(), "x")), 0);
        first.restart()?;
        // The server is retried after the retry timeout (and up to a second more).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while mc.set(&keys[0], "back", 0).is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(mc.get::<String>(&keys[0])?.as_deref(), Some("back"));
    }

    let config = format!("--SERVER={} --BINARY-PROTOCOL --NAMESPACE=cfg", specs[1]);
    let mc = Client::from_config(&config)?;
    mc.set("from-config", 1u64, 0)?;
    assert_eq!(mc.incr("from-config", 1)?, 2);
    assert!(Client::from_config("--SERVER=h --BUFFER-REQUESTS").is_err());
    assert!(Client::from_config("--NO-SUCH-OPTION").is_err());

    let cluster = ClusterConfig::parse(b"7\nnode1|127.0.0.1|11211 node2||11212\n")?;
    let _ = cluster.builder().build()?;
    assert!(ClusterConfig::parse(b"7\nnode1|bad|11211\n").is_err());

    sasl()?;
    println!("ok");
    Ok(())
}

fn single_keys(mc: &Client) -> Outcome {
    let p = if mc.is_binary() { "b" } else { "a" };
    let key = |name: &str| format!("{p}:{name}");
    mc.set(key("s"), "hello", 0)?;
    assert_eq!(mc.get::<String>(key("s"))?.as_deref(), Some("hello"));
    assert_eq!(mc.get::<String>(key("missing"))?, None);
    assert!(!mc.add(key("s"), "again", 0)?);
    assert!(mc.replace(key("s"), "bye", 0)?);
    assert!(mc.append(key("s"), "!")?);
    assert!(mc.prepend(key("s"), "<")?);
    assert_eq!(
        mc.get::<Value>(key("s"))?,
        Some(Value::Text("<bye!".into()))
    );
    let (_, token) = mc.gets::<String>(key("s"))?.expect("just set");
    assert!(mc.cas(key("s"), "swapped", token, 0)?);
    assert!(!mc.cas(key("s"), "stale", token, 0)?);
    assert!(mc.touch(key("s"), Duration::from_secs(600))?);
    mc.set(key("n"), 41u64, 0)?;
    assert_eq!(mc.incr(key("n"), 1)?, 42);
    assert_eq!(mc.decr(key("n"), 50)?, 0);
    assert!(mc.incr(key("nope"), 1).unwrap_err().is_not_found());
    assert_eq!(mc.incr_with_initial(key("init"), 1, 5, 0)?, 5);
    mc.set(key("bytes"), vec![0u8, 1, 2, 255], 0)?;
    assert_eq!(mc.get::<Vec<u8>>(key("bytes"))?, Some(vec![0, 1, 2, 255]));
    mc.set(key("i"), i64::MIN, 0)?;
    assert_eq!(mc.get::<i64>(key("i"))?, Some(i64::MIN));
    mc.set(key("t"), true, 0)?;
    assert_eq!(mc.get::<bool>(key("t"))?, Some(true));
    // Compressed by the client (over 64 bytes), and with settings of its own.
    let page = "<p>memcheck</p>".repeat(300);
    mc.set(key("page"), &page, 0)?;
    assert_eq!(mc.get::<String>(key("page"))?, Some(page.clone()));
    mc.set(
        key("page9"),
        Compressed::new(&page, Compression::with_level(1, 9)?),
        0,
    )?;
    assert_eq!(mc.get::<String>(key("page9"))?, Some(page));
    // A value that does not decode, and zlib-flagged bytes that do not inflate.
    assert!(matches!(mc.get::<u64>(key("s")), Err(Error::Decode { .. })));
    mc.set(key("notzlib"), (b"garbage".to_vec(), 8u32), 0)?;
    assert!(matches!(
        mc.get::<Vec<u8>>(key("notzlib")),
        Err(Error::Decompress { .. })
    ));
    assert!(mc.delete(key("s"))?);
    assert!(!mc.delete(key("s"))?);
    let users = mc.prefixed(format!("{p}:user:"));
    users.set("1", "ada", 0)?;
    assert_eq!(users.get::<String>("1")?.as_deref(), Some("ada"));
    let _ = mc.server_for_key(key("n"))?;
    Ok(())
}

fn many_keys(mc: &Client) -> Outcome {
    let p = if mc.is_binary() { "b" } else { "a" };
    let keys: Vec<String> = (0..60).map(|i| format!("{p}:m:{i}")).collect();
    let not_stored = mc.set_multi(keys.iter().map(|k| (k.as_str(), k.as_str())), 0)?;
    assert!(not_stored.is_empty());
    let found: HashMap<&str, String> = mc.get_multi(keys.iter().map(String::as_str))?;
    assert_eq!(found.len(), keys.len());
    let partial = mc.get_multi_partial::<_, String>(keys.iter().map(String::as_str))?;
    assert!(partial.is_complete());
    let mut seen = 0;
    mc.get_multi_each(keys.iter().map(String::as_str), |item| {
        seen += 1;
        let _ = item.decode::<String>();
    })?;
    assert_eq!(seen, keys.len());
    let existed = mc.add_multi(keys.iter().take(5).map(|k| (k.as_str(), "x")), 0)?;
    assert_eq!(existed.len(), 5);
    mc.set_multi(keys.iter().take(10).map(|k| (k.as_str(), 1u64)), 0)?;
    let missing = [format!("{p}:m:none1"), format!("{p}:m:none2")];
    let counters = mc.incr_multi(keys.iter().take(10).chain(&missing).map(String::as_str), 2)?;
    assert_eq!(counters.values().filter(|v| v.is_some()).count(), 10);
    mc.bulk_set(keys.iter().map(|k| (k.as_str(), "bulk")), 0)?;
    let missing = mc.delete_multi(keys.iter().map(String::as_str))?;
    assert!(missing.is_empty());
    let prefixed = mc.prefixed(format!("{p}:pre:"));
    prefixed.set_multi([("x", "1"), ("y", "2")], 0)?;
    let both: HashMap<&str, String> = prefixed.get_multi(["x", "y", "z"])?;
    assert_eq!(both.len(), 2);
    Ok(())
}

fn refusals(mc: &Client) -> Outcome {
    // Bad keys, refused before C.
    for bad in [&b""[..], b"with space", b"new\nline", &[b'k'; 251]] {
        let ascii_ok = !mc.is_binary() || bad.is_empty() || bad.len() > 250;
        assert_eq!(mc.set(bad, "v", 0).is_err(), ascii_ok);
        let _ = mc.get::<String>(bad);
        let _ = mc.get_multi::<_, String>([bad, b"fine"]);
    }
    // A value over the server's item size limit (1 MiB), sent uncompressed.
    let big = Compressed::new(vec![7u8; 1100 * 1024], Compression::OFF);
    assert!(mc.set("too-big", &big, 0).is_err());
    assert!(mc.set_multi([("too-big", &big)], 0).is_err());
    assert!(mc.bulk_set([("too-big", &big)], 0).is_err());
    assert!(mc.cas("k", "v", 0, 0).is_err());
    Ok(())
}

fn server_level(mc: &Client) -> Outcome {
    let stats = mc.stats(None)?;
    assert_eq!(stats.len(), 2);
    let _ = mc.stats(Some("settings"))?;
    let _ = mc.stats(Some("slabs"))?;
    let _ = mc.stats(Some("no-such-group"));
    assert_eq!(mc.version()?.len(), 2);
    let _ = mc.behaviors();
    mc.set_behavior_by_name("connect_timeout", 1000)?;
    assert!(mc.set_behavior_by_name("no_such_behavior", 1).is_err());
    let clone = mc.try_clone()?;
    clone.set("cloned", "yes", 0)?;
    #[allow(clippy::redundant_clone)]
    let again = clone.clone();
    assert_eq!(again.get::<String>("cloned")?.as_deref(), Some("yes"));
    mc.disconnect_all();
    mc.flush_all(None)?;
    Ok(())
}

fn pools(mc: &Client) -> Outcome {
    let pool = ClientPool::new(mc.try_clone()?, 3)?;
    std::thread::scope(|scope| {
        for t in 0..4 {
            let pool = &pool;
            scope.spawn(move || {
                for i in 0..20 {
                    let client = pool.reserve().expect("a pooled client");
                    let key = format!("pool:{t}:{i}");
                    client.set(&key, i as u64, 0).expect("set");
                    assert_eq!(client.get::<u64>(&key).expect("get"), Some(i as u64));
                }
            });
        }
    });
    let held: Vec<_> = (0..3).map(|_| pool.try_reserve()).collect();
    assert!(pool.try_reserve().is_none());
    assert!(pool.reserve_timeout(Duration::from_millis(10)).is_err());
    drop(held);

    let mapped = ThreadMappedPool::new(mc.try_clone()?);
    std::thread::scope(|scope| {
        for t in 0..3 {
            let mapped = &mapped;
            scope.spawn(move || {
                let client = mapped.reserve().expect("a thread's client");
                client.set(format!("mapped:{t}"), "v", 0).expect("set");
                drop(client);
                assert!(mapped.relinquish().is_some());
            });
        }
    });
    Ok(())
}

fn sasl() -> Outcome {
    let has_saslpasswd2 = ["saslpasswd2", "/usr/sbin/saslpasswd2"]
        .iter()
        .any(|p| std::process::Command::new(p).arg("-v").output().is_ok());
    if !libmemcached::support_sasl() || !has_saslpasswd2 {
        println!("SASL skipped (no SASL support or no saslpasswd2)");
        return Ok(());
    }
    let server = Memcached::builder().sasl("memcheck", "secret").start()?;
    let mc = Client::builder()
        .servers([server.spec()])
        .binary(true)
        .sasl("memcheck", "secret")
        .build()?;
    mc.set("sasl", "yes", 0)?;
    assert_eq!(mc.get::<String>("sasl")?.as_deref(), Some("yes"));
    let _ = mc.try_clone()?.get::<String>("sasl")?;
    let wrong = Client::builder()
        .servers([server.spec()])
        .binary(true)
        .sasl("memcheck", "wrong")
        .build()?;
    assert!(wrong.get::<String>("sasl").is_err());
    Ok(())
}
