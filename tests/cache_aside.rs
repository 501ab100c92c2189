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
    AsyncClient, Client, ClientPool, Error, LoadError, Loaded, Source, ThreadMappedPool,
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
                mc.get_or_set_with::<Vec<u8>, _, _, _>(&key, 0, loader)
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
