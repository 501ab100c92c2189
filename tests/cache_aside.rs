//! `get_or_set_with` against real memcached: a miss loads, stores and returns, a hit does not
//! load; concurrent misses in one pool, one thread-mapped pool or one `AsyncClient` load once
//! and share the value or the loader's error; a loader that panics or is cancelled hands the
//! load to a waiter; a cache that is down does not fail the call.
//!
//! Loaders that must wait for the other callers hold until the client's metrics count them as
//! waiting (`load_waits`): nothing waits on a clock.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use libmemcached::{
    AsyncClient, CacheAside, Client, ClientPool, Error, LoadError, Loaded, Source,
    ThreadMappedPool, Value,
};

#[derive(Debug, PartialEq)]
struct DbError(&'static str);

/// Blocks (at most ten seconds) until `done` holds.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_miss_loads_and_stores_a_hit_does_not_load() {
    let server = common::server();
    let mc = common::client(server.specs(), false);
    let key = common::key("aside");
    let calls = AtomicUsize::new(0);
    let load = || {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok::<_, DbError>(format!("loaded {key}"))
    };
    let first: Loaded<String> = mc.get_or_set_with(&key, 0, load).unwrap();
    assert_eq!(first.value, format!("loaded {key}"));
    assert_eq!(first.source, Source::Loader);
    assert!(first.cache_error.is_none());
    assert_eq!(
        mc.get::<String>(&key).unwrap(),
        Some(first.value.clone()),
        "stored"
    );
    let second: Loaded<String> = mc.get_or_set_with(&key, 0, load).unwrap();
    assert_eq!((second.value, second.source), (first.value, Source::Cache));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!((mc.metrics().loads, mc.metrics().load_waits), (1, 0));

    // A prefixed view stores under its prefix.
    let users = mc.prefixed("user:");
    let loaded = users
        .get_or_set_with(&key, 0, || Ok::<_, DbError>(7u64))
        .unwrap();
    assert_eq!((loaded.value, loaded.source), (7, Source::Loader));
    assert_eq!(mc.get::<u64>(format!("user:{key}")).unwrap(), Some(7));

    // A loader's error is the caller's, typed; nothing is stored.
    let failed = mc.get_or_set_with(common::key("fails"), 0, || Err::<u64, _>(DbError("down")));
    match failed {
        Err(LoadError::Loader(error)) => assert_eq!(*error, DbError("down")),
        other => panic!("{other:?}"),
    }
    // A bad key fails before anything runs.
    let bad = mc.get_or_set_with("a key with spaces", 0, || -> Result<u64, DbError> {
        panic!("a bad key never loads")
    });
    assert!(
        matches!(bad, Err(LoadError::Cache(Error::InvalidKey { .. }))),
        "{bad:?}"
    );
}

#[test]
fn concurrent_misses_in_a_pool_load_once_and_share_the_value() {
    let server = common::server();
    let pool = ClientPool::new(common::client(server.specs(), false), 8).unwrap();
    let key = common::key("herd");
    let calls = AtomicUsize::new(0);
    let results: Vec<Loaded<String>> = std::thread::scope(|scope| {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mc = pool.reserve().unwrap();
                    mc.get_or_set_with(&key, 0, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        wait_until("the others wait", || pool.metrics().load_waits == 7);
                        Ok::<_, DbError>("one load".to_owned())
                    })
                    .unwrap()
                })
            })
            .collect();
        tasks.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(results.iter().all(|r| r.value == "one load"));
    let loaders = results
        .iter()
        .filter(|r| r.source == Source::Loader)
        .count();
    let shared = results
        .iter()
        .filter(|r| r.source == Source::Shared)
        .count();
    assert_eq!((loaders, shared), (1, 7));
    assert_eq!(pool.metrics().loads, 1);
}

#[test]
fn a_loader_error_reaches_every_waiter_of_a_thread_mapped_pool() {
    let server = common::server();
    let pool = ThreadMappedPool::new(common::client(server.specs(), false));
    let key = common::key("herd-fails");
    let calls = AtomicUsize::new(0);
    let errors: Vec<Arc<DbError>> = std::thread::scope(|scope| {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mc = pool.reserve().unwrap();
                    let result = mc.get_or_set_with(&key, 0, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        wait_until("the others wait", || pool.metrics().load_waits == 3);
                        Err::<String, _>(DbError("the database is down"))
                    });
                    match result {
                        Err(LoadError::Loader(error)) => error,
                        other => panic!("{other:?}"),
                    }
                })
            })
            .collect();
        tasks.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(
        errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])),
        "one error, shared"
    );
    let mc = common::client(server.specs(), false);
    assert_eq!(mc.get::<String>(&key).unwrap(), None, "nothing stored");
}

#[test]
fn a_loader_that_panics_hands_the_load_to_a_waiter() {
    let server = common::server();
    let pool = ClientPool::new(common::client(server.specs(), false), 2).unwrap();
    let key = common::key("panics");
    let entered = Barrier::new(2);
    let (panicked, loaded) = std::thread::scope(|scope| {
        let leader = scope.spawn(|| {
            let mc = pool.reserve().unwrap();
            mc.get_or_set_with(&key, 0, || -> Result<String, DbError> {
                entered.wait();
                wait_until("the other waits", || pool.metrics().load_waits == 1);
                panic!("a loader that panics")
            })
        });
        entered.wait();
        let waiter = scope.spawn(|| {
            let mc = pool.reserve().unwrap();
            mc.get_or_set_with(&key, 0, || Ok::<_, DbError>("second try".to_owned()))
        });
        (leader.join().is_err(), waiter.join().unwrap().unwrap())
    });
    assert!(panicked, "the panic is the leader's");
    assert_eq!(loaded.value, "second try");
    assert_eq!(loaded.source, Source::Loader, "the waiter loaded");
    assert_eq!(pool.metrics().loads, 2);
}

#[test]
fn a_cache_that_is_down_does_not_fail_the_call() {
    let port = common::listener().local_addr().unwrap().port();
    let mc = Client::new([format!("127.0.0.1:{port}")]).unwrap();
    let loaded = mc
        .get_or_set_with("k", 0, || Ok::<_, DbError>(1u64))
        .unwrap();
    assert_eq!((loaded.value, loaded.source), (1, Source::Loader));
    let error = loaded.cache_error.expect("the cache failed");
    assert!(error.is_connection(), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_in_an_async_client_load_once() {
    let server = common::server();
    let mc = AsyncClient::new(common::client(server.specs(), false)).unwrap();
    let key = common::key("async-herd");
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (mc, key, calls) = (mc.clone(), key.clone(), Arc::clone(&calls));
            tokio::spawn(async move {
                let loader = || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    while mc.metrics().load_waits < 99 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Ok::<_, DbError>(vec![1u8, 2, 3])
                };
                mc.get_or_set_with::<Vec<u8>, _, _>(&key, 0, loader)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut sources = Vec::new();
    for task in tasks {
        let loaded = task.await.unwrap();
        assert_eq!(loaded.value, [1, 2, 3]);
        sources.push(loaded.source);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(sources.iter().filter(|&&s| s == Source::Shared).count(), 99);
    let again = mc
        .get_or_set_with(&key, 0, || async {
            Err::<Vec<u8>, _>(DbError("not called"))
        })
        .await
        .unwrap();
    assert_eq!(again.source, Source::Cache);
    assert_eq!(mc.metrics().loads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_loader_hands_the_load_to_a_waiter() {
    let server = common::server();
    let mc = AsyncClient::new(common::client(server.specs(), false)).unwrap();
    let key = common::key("async-cancel");
    let leader = {
        let (mc, key) = (mc.clone(), key.clone());
        tokio::spawn(async move {
            mc.get_or_set_with(&key, 0, || {
                std::future::pending::<Result<String, DbError>>()
            })
            .await
        })
    };
    while mc.metrics().loads < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let waiter = {
        let (mc, key) = (mc.clone(), key.clone());
        tokio::spawn(async move {
            mc.get_or_set_with(&key, 0, || async { Ok::<_, DbError>("mine".to_owned()) })
                .await
        })
    };
    while mc.metrics().load_waits < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    let loaded = waiter.await.unwrap().unwrap();
    assert_eq!(
        (loaded.value.as_str(), loaded.source),
        ("mine", Source::Loader)
    );
    assert_eq!(mc.metrics().loads, 2);
}

// ---- across processes: the lock, and serving stale values ---------------------------------

/// Two clients with separate connections and separate loads in flight, as two processes have.
fn two_processes(specs: &[String]) -> (Client, Client) {
    (common::client(specs, false), common::client(specs, false))
}

/// The server's `get_misses` so far (with a client of its own).
fn misses(spec: &str) -> u64 {
    let mc = Client::new([spec]).unwrap();
    mc.stats(None).unwrap()[0].get_u64("get_misses").unwrap()
}

#[test]
fn with_the_lock_one_process_loads_and_the_other_takes_its_value() {
    let server = common::own_server();
    let spec = server.spec();
    let (a, b) = two_processes(std::slice::from_ref(&spec));
    let key = common::key("locked");
    let policy = CacheAside::new(0).lock(Duration::from_secs(30));
    let calls = AtomicUsize::new(0);
    let (first, a, second) = std::thread::scope(|scope| {
        let (calls, spec, key) = (&calls, &spec, &key);
        let first = scope.spawn(move || {
            let first = a.get_or_set_with(key, policy, || {
                let before = misses(spec);
                calls.fetch_add(1, Ordering::SeqCst);
                // The other process's miss, then at least one poll.
                wait_until("the other process polls", || misses(spec) >= before + 2);
                Ok::<_, DbError>("from a".to_owned())
            });
            (first, a)
        });
        // `b` misses once `a` holds the lock.
        wait_until("a holds the lock", || calls.load(Ordering::SeqCst) == 1);
        let second = b.get_or_set_with(key, policy, || {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, DbError>("from b".to_owned())
        });
        let (first, a) = first.join().unwrap();
        (first.unwrap(), a, second.unwrap())
    });
    assert_eq!(
        (first.value.as_str(), first.source),
        ("from a", Source::Loader)
    );
    assert_eq!(
        (second.value.as_str(), second.source),
        ("from a", Source::Shared)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!((a.metrics().lock_waits, b.metrics().lock_waits), (0, 1));
    let lock = format!("{key}:lock");
    assert_eq!(a.get::<Value>(&lock).unwrap(), None, "the lock is gone");
}

#[test]
fn a_lock_released_by_a_failed_load_is_taken_by_a_waiting_process() {
    let server = common::own_server();
    let spec = server.spec();
    let (a, b) = two_processes(std::slice::from_ref(&spec));
    let key = common::key("released");
    // Far longer than the test may take: the waiter must not wait for the lock to expire.
    let policy = CacheAside::new(0).lock(Duration::from_secs(600));
    let entered = Barrier::new(2);
    let (failed, (loaded, b)) = std::thread::scope(|scope| {
        let (entered, spec, key) = (&entered, &spec, &key);
        let waiter = scope.spawn(move || {
            entered.wait();
            let loaded = b.get_or_set_with(key, policy, || Ok::<_, DbError>("from b".to_owned()));
            (loaded, b)
        });
        let failed = a.get_or_set_with(key, policy, || {
            let before = misses(spec);
            entered.wait();
            wait_until("the other process polls", || misses(spec) >= before + 2);
            Err::<String, _>(DbError("the database is down"))
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while !waiter.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the waiter waits for the lock to expire"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        (failed, waiter.join().unwrap())
    });
    assert!(matches!(failed, Err(LoadError::Loader(_))), "{failed:?}");
    let loaded = loaded.unwrap();
    assert_eq!(
        (loaded.value.as_str(), loaded.source),
        ("from b", Source::Loader)
    );
    assert_eq!(b.metrics().lock_waits, 1);
    let lock = format!("{key}:lock");
    assert_eq!(b.get::<Value>(&lock).unwrap(), None, "b released its lock");
}

/// Run as a child process by `a_lock_holder_that_dies_leaves_a_lock_that_expires`: takes the
/// lock of `$LOCK_HOLDER_KEY` on `$LOCK_HOLDER_SERVER`, says so, and loads forever.
#[test]
#[ignore = "a child process of another test"]
fn lock_holder() {
    let (Ok(spec), Ok(key)) = (
        std::env::var("LOCK_HOLDER_SERVER"),
        std::env::var("LOCK_HOLDER_KEY"),
    ) else {
        return;
    };
    let mc = Client::new([spec]).unwrap();
    let policy = CacheAside::new(0).lock(Duration::from_secs(1));
    let _ = mc.get_or_set_with(&key, policy, || -> Result<String, DbError> {
        println!("loading");
        loop {
            std::thread::park();
        }
    });
}

#[test]
fn a_lock_holder_that_dies_leaves_a_lock_that_expires() {
    use std::io::{BufRead, BufReader};
    let server = common::own_server();
    let key = common::key("orphan");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "lock_holder",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LOCK_HOLDER_SERVER", server.spec())
        .env("LOCK_HOLDER_KEY", &key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|line| line.is_ok_and(|l| l.contains("loading"))),
        "the child took the lock"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let mc = Client::new([server.spec()]).unwrap();
    assert!(
        mc.get::<Value>(format!("{key}:lock")).unwrap().is_some(),
        "its lock stays"
    );
    let policy = CacheAside::new(0).lock(Duration::from_secs(1));
    let loaded = mc
        .get_or_set_with(&key, policy, || {
            Ok::<_, DbError>("after the lock".to_owned())
        })
        .unwrap();
    assert_eq!(
        (loaded.value.as_str(), loaded.source),
        ("after the lock", Source::Loader),
        "loaded once the lock expired"
    );
    assert_eq!(mc.metrics().lock_waits, 1);
}

#[test]
fn a_stale_value_is_served_while_one_caller_refreshes_it() {
    let server = common::server();
    let pool = ClientPool::new(common::client(server.specs(), false), 2).unwrap();
    let key = common::key("stale");
    let policy = CacheAside::new(1).stale_for(Duration::from_secs(60));
    let mc = pool.reserve().unwrap();
    let first = mc
        .get_or_set_with(&key, policy, || Ok::<_, DbError>(1u64))
        .unwrap();
    assert_eq!((first.value, first.source), (1, Source::Loader));
    let fresh = format!("{key}:fresh");
    assert!(mc.get::<Value>(&fresh).unwrap().is_some(), "the marker");
    assert_eq!(
        mc.get_or_set_with(&key, policy, || Ok::<_, DbError>(0u64))
            .unwrap()
            .source,
        Source::Cache
    );
    // memcached expires the marker within two seconds; the value stays.
    wait_until("the marker expires", || {
        mc.get::<Value>(&fresh).unwrap().is_none()
    });
    drop(mc);

    let entered = Barrier::new(2);
    let (refreshed, served) = std::thread::scope(|scope| {
        let refresher = scope.spawn(|| {
            let mc = pool.reserve().unwrap();
            mc.get_or_set_with(&key, policy, || {
                entered.wait();
                wait_until("a stale value is served", || {
                    pool.metrics().stale_served == 1
                });
                Ok::<_, DbError>(2u64)
            })
        });
        entered.wait();
        let mc = pool.reserve().unwrap();
        let served = mc.get_or_set_with(&key, policy, || -> Result<u64, DbError> {
            panic!("a stale value is served, not loaded")
        });
        (refresher.join().unwrap().unwrap(), served.unwrap())
    });
    assert_eq!((served.value, served.source), (1, Source::Stale));
    assert_eq!((refreshed.value, refreshed.source), (2, Source::Loader));
    let mc = pool.reserve().unwrap();
    let now = mc
        .get_or_set_with(&key, policy, || Ok::<_, DbError>(0u64))
        .unwrap();
    assert_eq!((now.value, now.source), (2, Source::Cache), "fresh again");
}

#[test]
fn with_the_lock_a_stale_value_is_refreshed_by_one_process() {
    let server = common::server();
    let (a, b) = two_processes(server.specs());
    let key = common::key("stale-locked");
    let policy = CacheAside::new(1)
        .stale_for(Duration::from_secs(60))
        .lock(Duration::from_secs(30));
    a.get_or_set_with(&key, policy, || Ok::<_, DbError>(1u64))
        .unwrap();
    let fresh = format!("{key}:fresh");
    wait_until("the marker expires", || {
        a.get::<Value>(&fresh).unwrap().is_none()
    });
    // Another process holds the lock: this one serves the stale value without loading.
    assert!(b.add(format!("{key}:lock"), "1", 30).unwrap());
    let served = a
        .get_or_set_with(&key, policy, || -> Result<u64, DbError> {
            panic!("the lock is held elsewhere")
        })
        .unwrap();
    assert_eq!((served.value, served.source), (1, Source::Stale));
    assert_eq!(a.metrics().stale_served, 1);
}

#[test]
fn keys_too_long_for_the_policy_fail_before_loading() {
    let server = common::server();
    let mc = common::client(server.specs(), false);
    let key = "k".repeat(247);
    let policy = CacheAside::new(0).lock(Duration::from_secs(1));
    let result = mc.get_or_set_with(&key, policy, || -> Result<u64, DbError> {
        panic!("never loads")
    });
    assert!(
        matches!(result, Err(LoadError::Cache(Error::InvalidKey { .. }))),
        "{result:?}"
    );
    // Without the policy the key is fine.
    assert!(
        mc.get_or_set_with(&key, 0, || Ok::<_, DbError>(1u64))
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_clients_with_the_lock_poll_for_the_value_another_loads() {
    let server = common::own_server();
    let spec = server.spec();
    let a = AsyncClient::new(common::client(std::slice::from_ref(&spec), false)).unwrap();
    let b = AsyncClient::new(common::client(std::slice::from_ref(&spec), false)).unwrap();
    let key = common::key("async-locked");
    let policy = CacheAside::new(0).lock(Duration::from_secs(30));
    let first = {
        let (a, key, spec) = (a.clone(), key.clone(), spec.clone());
        tokio::spawn(async move {
            a.get_or_set_with(&key, policy, || async {
                let before = misses(&spec);
                // The other client's miss, then at least one poll.
                while misses(&spec) < before + 2 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Ok::<_, DbError>("from a".to_owned())
            })
            .await
        })
    };
    while a.metrics().loads < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let second = b
        .get_or_set_with(&key, policy, || async {
            Err::<String, _>(DbError("b never loads"))
        })
        .await
        .unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(
        (first.value.as_str(), first.source),
        ("from a", Source::Loader)
    );
    assert_eq!(
        (second.value.as_str(), second.source),
        ("from a", Source::Shared)
    );
    assert_eq!(b.metrics().lock_waits, 1);
}

/// A client that takes no replies sends the lock's `add` and loads as the holder: the value is
/// stored and the load reports no cache error, and nothing counts as an error.
#[test]
fn a_noreply_client_loads_under_a_lock_it_cannot_confirm() {
    let server = common::own_server();
    let mc = Client::builder()
        .servers([server.spec()])
        .behavior(libmemcached::Behavior::NoReply(true))
        .build()
        .unwrap();
    let reader = Client::new([server.spec()]).unwrap();
    let policy = CacheAside::new(0).lock(Duration::from_secs(5));
    let loaded: Loaded<String> = mc
        .get_or_set_with("noreply", policy, || Ok::<_, DbError>("fresh".to_owned()))
        .unwrap();
    assert_eq!(loaded.value, "fresh");
    assert_eq!(loaded.source, Source::Loader);
    assert!(loaded.cache_error.is_none(), "{:?}", loaded.cache_error);
    wait_until("the value lands", || {
        reader.get::<String>("noreply").unwrap().as_deref() == Some("fresh")
    });
    assert_eq!(mc.metrics().errors.total(), 0, "{:?}", mc.metrics());
}
