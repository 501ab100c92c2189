//! A `ClientPool` shared by threads: eight threads, four clients. Each thread reserves a client
//! for a batch of work and gives it back by dropping it; the pool never hands one client to two
//! threads. Also shows the non-blocking and timed reserve, and `ThreadMappedPool`.
//!
//! Uses the servers in `MEMCACHED_SERVERS`, or starts a memcached of its own when that is not set.
//!
//! ```sh
//! cargo run --example pool
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libmemcached::testing::TestServer;
use libmemcached::{Client, ClientPool, Error, ThreadMappedPool};

const THREADS: usize = 8;
const CLIENTS: usize = 4;
const BATCHES: usize = 25;
const KEYS_PER_BATCH: usize = 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = TestServer::from_env_or_spawn()?;
    let pool = Arc::new(ClientPool::new(Client::new(server.specs())?, CLIENTS)?);
    println!(
        "a pool of {} clients for {THREADS} threads (servers {:?})",
        pool.size(),
        server.specs()
    );

    // Every thread: reserve, do a batch, give the client back (on drop), again.
    let busiest = Arc::new(AtomicUsize::new(0));
    let in_use = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, busiest, in_use) = (pool.clone(), busiest.clone(), in_use.clone());
            std::thread::spawn(move || -> Result<(usize, Duration), Error> {
                let mut waited = Duration::ZERO;
                for batch in 0..BATCHES {
                    let asked = Instant::now();
                    let mc = pool.reserve_timeout(Duration::from_secs(5))?;
                    waited += asked.elapsed();
                    let now = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                    busiest.fetch_max(now, Ordering::SeqCst);
                    let items: Vec<(String, usize)> = (0..KEYS_PER_BATCH)
                        .map(|k| (format!("pool-example:{t}:{batch}:{k}"), t * 1000 + k))
                        .collect();
                    mc.set_multi(items.iter().map(|(k, v)| (k.as_str(), *v)), 60)?;
                    let back: std::collections::HashMap<&str, usize> =
                        mc.get_multi(items.iter().map(|(k, _)| k.as_str()))?;
                    assert_eq!(back.len(), KEYS_PER_BATCH, "every key read back");
                    in_use.fetch_sub(1, Ordering::SeqCst);
                    // `mc` is dropped here: the client goes back to the pool.
                }
                Ok((BATCHES * KEYS_PER_BATCH, waited))
            })
        })
        .collect();
    for (t, thread) in threads.into_iter().enumerate() {
        let (keys, waited) = thread.join().expect("no thread panicked")?;
        println!("thread {t}: {keys} keys set and read back, {waited:.1?} waiting for a client");
    }
    println!(
        "{} keys in {:.2?}; at most {} clients in use at once (pool size {CLIENTS}); {} idle now",
        THREADS * BATCHES * KEYS_PER_BATCH,
        start.elapsed(),
        busiest.load(Ordering::SeqCst),
        pool.idle()
    );

    // The pool's other ways to ask: never wait, or wait a bounded time.
    let held: Vec<_> = (0..CLIENTS)
        .map(|_| pool.reserve())
        .collect::<Result<_, _>>()?;
    println!(
        "\nall {} clients reserved: try_reserve() -> {}",
        held.len(),
        if pool.try_reserve().is_none() {
            "None"
        } else {
            "Some"
        }
    );
    match pool.reserve_timeout(Duration::from_millis(100)) {
        Err(err @ Error::PoolTimeout { .. }) => println!("reserve_timeout(100 ms) -> Err: {err}"),
        other => println!("reserve_timeout(100 ms) -> {other:?}"),
    }
    drop(held);
    println!("after giving them back: {} idle", pool.idle());

    // ThreadMappedPool: one client per thread, made on first use, closed when the thread ends.
    let per_thread = Arc::new(ThreadMappedPool::new(Client::new(server.specs())?));
    let found: Vec<Option<usize>> = (0..3)
        .map(|t| {
            let per_thread = per_thread.clone();
            std::thread::spawn(move || -> Result<Option<usize>, Error> {
                let mc = per_thread.reserve()?;
                mc.get(format!("pool-example:{t}:0:0"))
            })
        })
        .map(|thread| thread.join().expect("no thread panicked"))
        .collect::<Result<_, _>>()?;
    println!("\nThreadMappedPool, three threads read back: {found:?}");
    Ok(())
}
