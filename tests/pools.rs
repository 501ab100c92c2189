//! ClientPool and ThreadMappedPool under real threads against a real memcached: every value
//! checked, no leaked connections, exhaustion, timeouts and panics.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libmemcached::testing::{FaultProxy, Memcached};
use libmemcached::{Client, ClientPool, Commands, Error, ThreadMappedPool};

const OPS_PER_THREAD: usize = 10_000;

fn connections(server: &Memcached) -> u64 {
    // The probe's own connection counts too; it is the same in every reading.
    server.stat("curr_connections").unwrap().parse().unwrap()
}

/// The server's connection count once it has settled (the startup probe's close is noticed
/// asynchronously).
fn baseline(server: &Memcached) -> u64 {
    let mut last = connections(server);
    let mut same = 0;
    while same < 3 {
        std::thread::sleep(Duration::from_millis(50));
        let now = connections(server);
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// Waits until the server counts `expected` connections (it notices closes asynchronously).
fn wait_for_connections(server: &Memcached, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections(server) != expected {
        assert!(
            Instant::now() < deadline,
            "{} connections, expected {expected}",
            connections(server)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ops` mixed operations on this thread's own keys, every result checked.
fn workload(mc: &Client, thread: usize, ops: usize) {
    for i in 0..ops {
        // Five steps on each key, over 100 keys of this thread.
        let k = format!("pool:{thread}:{}", (i / 5) % 100);
        match i % 5 {
            0 => mc.set(&k, format!("{thread}-{i}"), 0).unwrap(),
            1 => assert_eq!(
                mc.get::<String>(&k).unwrap(),
                Some(format!("{thread}-{}", i - 1)),
                "thread {thread}"
            ),
            2 => mc.set(&k, i as u64, 0).unwrap(),
            3 => assert_eq!(mc.incr(&k, 1).unwrap(), i as u64, "thread {thread}"),
            _ => {
                let got: std::collections::HashMap<String, u64> =
                    mc.get_multi([k.clone()]).unwrap();
                assert_eq!(got[&k], i as u64 - 1, "thread {thread}");
            }
        }
    }
}

#[test]
fn client_pool_serves_2_4_and_8_threads_without_leaking_connections() {
    let server = common::own_server();
    let base = baseline(&server);
    for threads in [2, 4, 8] {
        let size = threads / 2;
        let pool = Arc::new(ClientPool::new(Client::new([server.spec()]).unwrap(), size).unwrap());
        let ops = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for t in 0..threads {
                let (pool, ops) = (&pool, &ops);
                s.spawn(move || {
                    // Reserve per slice of work, so threads really share the clients.
                    for slice in 0..10 {
                        let mc = pool.reserve().unwrap();
                        workload(&mc, t * 100 + slice, OPS_PER_THREAD / 10);
                        ops.fetch_add(OPS_PER_THREAD / 10, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(ops.load(Ordering::Relaxed), threads * OPS_PER_THREAD);
        assert_eq!(pool.idle(), size, "every client came back");
        // Each pooled client keeps one connection open; nothing else stays.
        wait_for_connections(&server, base + size as u64);
        drop(pool);
        wait_for_connections(&server, base);
    }
}

#[test]
fn thread_mapped_pool_gives_each_thread_a_client_and_releases_it_when_the_thread_ends() {
    let server = common::own_server();
    let base = baseline(&server);
    for threads in [2, 4, 8] {
        let pool = ThreadMappedPool::new(Client::new([server.spec()]).unwrap());
        std::thread::scope(|s| {
            for t in 0..threads {
                let pool = &pool;
                s.spawn(move || {
                    // Two halves, each reserved anew: the thread gets its own client back.
                    workload(&pool.reserve().unwrap(), t, OPS_PER_THREAD / 2);
                    workload(&pool.reserve().unwrap(), t + 1000, OPS_PER_THREAD / 2);
                });
            }
        });
        // The threads ended, and with them their clients: pylibmc would keep them all.
        wait_for_connections(&server, base);
    }
}

#[test]
fn a_thread_reuses_its_client_and_relinquish_releases_it() {
    let server = common::own_server();
    let base = baseline(&server);
    let pool = ThreadMappedPool::new(Client::new([server.spec()]).unwrap());
    pool.reserve().unwrap().set("k", "v", 0).unwrap();
    pool.reserve().unwrap().set("k", "w", 0).unwrap();
    wait_for_connections(&server, base + 1);
    {
        // A nested reserve gets a client of its own.
        let outer = pool.reserve().unwrap();
        let inner = pool.reserve().unwrap();
        assert_eq!(inner.get::<String>("k").unwrap().as_deref(), Some("w"));
        assert_eq!(outer.get::<String>("k").unwrap().as_deref(), Some("w"));
        wait_for_connections(&server, base + 2);
    }
    wait_for_connections(&server, base + 1);
    assert!(pool.relinquish().is_some());
    assert!(pool.relinquish().is_none());
    wait_for_connections(&server, base);
}

#[test]
fn exhaustion_timeouts_and_try_reserve() {
    let server = common::own_server();
    let pool = ClientPool::new(Client::new([server.spec()]).unwrap(), 2).unwrap();
    assert_eq!(pool.size(), 2);
    let a = pool.reserve().unwrap();
    let b = pool.try_reserve().expect("one left");
    assert!(pool.try_reserve().is_none(), "exhausted");
    let started = Instant::now();
    let err = pool
        .reserve_timeout(Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(err, Error::PoolTimeout { size: 2, .. }), "{err:?}");
    assert!(err.is_timeout());
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < Duration::from_secs(5));

    // A client returned while someone waits goes to the waiter: both forms of reserve, each
    // seen waiting before the client comes back, and woken by it (well before its own timeout,
    // and the untimed one has none).
    assert_eq!(pool.waiting(), 0);
    let mut a = Some(a);
    for timed in [true, false] {
        std::thread::scope(|s| {
            let (sent, got) = std::sync::mpsc::channel();
            let pool = &pool;
            s.spawn(move || {
                let mc = match timed {
                    true => pool.reserve_timeout(Duration::from_secs(60)),
                    false => pool.reserve(),
                };
                let _ = sent.send(mc.and_then(|mc| mc.set("w", 1, 0).map(|()| mc)));
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while pool.waiting() == 0 {
                assert!(Instant::now() < deadline, "the waiter never waited");
                std::thread::yield_now();
            }
            assert_eq!(pool.idle(), 0);
            drop(a.take());
            let woken = got.recv_timeout(Duration::from_secs(10));
            a = Some(woken.expect("the returned client woke the waiter").unwrap());
        });
        assert_eq!(pool.waiting(), 0);
        assert_eq!(pool.idle(), 0, "the returned client went to the waiter");
    }
    drop(a);
    drop(b);
    assert_eq!(pool.idle(), 2);
    assert!(matches!(
        ClientPool::new(Client::new([server.spec()]).unwrap(), 0),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn a_panic_while_holding_a_client_does_not_poison_the_pool() {
    let server = common::own_server();
    let pool = ClientPool::new(Client::new([server.spec()]).unwrap(), 1).unwrap();
    std::thread::scope(|s| {
        let result = s
            .spawn(|| {
                let mc = pool.reserve().unwrap();
                mc.set("before-panic", "v", 0).unwrap();
                panic!("user code panics with a pooled client");
            })
            .join();
        assert!(result.is_err());
    });
    assert_eq!(pool.idle(), 1, "the client came back");
    let mc = pool.try_reserve().expect("and is usable");
    assert_eq!(
        mc.get::<String>("before-panic").unwrap().as_deref(),
        Some("v")
    );
    drop(mc);

    let mapped = ThreadMappedPool::new(Client::new([server.spec()]).unwrap());
    let _ = std::thread::scope(|s| {
        s.spawn(|| {
            let _mc = mapped.reserve().unwrap();
            panic!("again");
        })
        .join()
    });
    assert_eq!(
        mapped
            .reserve()
            .unwrap()
            .get::<String>("before-panic")
            .unwrap()
            .as_deref(),
        Some("v")
    );
}

#[test]
fn a_client_that_failed_is_reset_before_the_next_user() {
    let mut server = common::own_server();
    let pool = ClientPool::new(
        Client::builder()
            .servers([server.spec()])
            .behavior(libmemcached::Behavior::RetryTimeout(Duration::from_secs(1)))
            .build()
            .unwrap(),
        1,
    )
    .unwrap();
    pool.reserve().unwrap().set("k", "v", 0).unwrap();

    // A thread that panics holding the client may have cut a call short: the next user starts
    // on a new connection. (libmemcached closes a connection itself on the failures that put
    // it out of step, and the client's own calls reset on the rest, so this is where the
    // pool's reset shows.)
    let proxy = FaultProxy::start(server.spec()).unwrap();
    let proxied = ClientPool::new(Client::new([proxy.spec()]).unwrap(), 1).unwrap();
    proxied.reserve().unwrap().set("p", "v", 0).unwrap();
    proxied.reserve().unwrap().set("p", "v", 0).unwrap();
    assert_eq!(
        proxy.connections(),
        1,
        "a client that did not fail keeps its connection"
    );
    let panicked = std::thread::scope(|s| {
        s.spawn(|| {
            let mc = proxied.reserve().unwrap();
            mc.set("p", "v", 0).unwrap();
            panic!("user code panics holding a pooled client");
        })
        .join()
    });
    assert!(panicked.is_err());
    assert_eq!(
        proxied
            .reserve()
            .unwrap()
            .get::<String>("p")
            .unwrap()
            .as_deref(),
        Some("v")
    );
    assert_eq!(proxy.connections(), 2, "the next user reconnected");

    server.stop();
    assert!(
        pool.reserve()
            .unwrap()
            .get::<String>("k")
            .unwrap_err()
            .is_connection()
    );
    server.restart().unwrap();
    // The next user reconnects (after the retry timeout) instead of inheriting a dead socket.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match pool.reserve().unwrap().set("k", "again", 0) {
            Ok(()) => break,
            Err(err) if err.is_connection() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(err) => panic!("{err:?}"),
        }
    }
    assert_eq!(
        pool.reserve()
            .unwrap()
            .get::<String>("k")
            .unwrap()
            .as_deref(),
        Some("again")
    );
}

#[test]
fn pools_are_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<ClientPool>();
    shareable::<ThreadMappedPool>();
    fn movable<T: Send>() {}
    movable::<Client>();
}

/// Code generic over `Commands` runs the same on a client, a prefixed view and the pools'
/// clients.
#[test]
fn code_generic_over_commands_takes_every_blocking_client() {
    fn visit(cache: &impl Commands, user: &str) -> libmemcached::Result<(u64, Option<String>)> {
        let visits = cache.incr_with_initial(format!("visits:{user}"), 1, 1, 0)?;
        cache.set(format!("name:{user}"), user, 0)?;
        Ok((visits, cache.get(format!("name:{user}"))?))
    }
    let server = common::own_server();
    let mc = Client::new([server.spec()]).unwrap();
    let pool = ClientPool::new(mc.clone(), 1).unwrap();
    let threads = ThreadMappedPool::new(mc.clone());
    let tenant = mc.prefixed("tenant:");
    assert_eq!(visit(&mc, "ann").unwrap(), (1, Some("ann".into())));
    assert_eq!(visit(&pool.reserve().unwrap(), "ann").unwrap().0, 2);
    assert_eq!(visit(&threads.reserve().unwrap(), "ann").unwrap().0, 3);
    assert_eq!(visit(&tenant, "ann").unwrap().0, 1, "its own keys");
    assert_eq!(mc.get::<u64>("tenant:visits:ann").unwrap(), Some(1));
}
