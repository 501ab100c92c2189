//! A herd on a key that has just expired: how many times each way of reading through the cache
//! calls the loader, and how long callers wait.
//!
//! ```sh
//! cargo run --release --features async --example bench_cache_aside
//! ```
//!
//! One memcached (started here). 1000 concurrent requests from `AsyncClient` tasks for one key,
//! with a loader that takes 50 ms: by hand (get, then load and set on a miss), with
//! `get_or_set_with` (single-flight), with its lock across 4 processes (this program run 4 times
//! with `--child`, 250 requests each), and with serve-stale (the value there, its freshness
//! marker expired); plain gets of a present key for comparison. Then 8 threads of a
//! `ClientPool`, by hand and with `get_or_set_with`. Prints a Markdown table.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libmemcached::testing::Memcached;
use libmemcached::{AsyncClient, CacheAside, Client, ClientPool};

const REQUESTS: usize = 1000;
const PROCESSES: usize = 4;
const LOAD_TIME: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct Never;

fn policy() -> CacheAside {
    CacheAside::new(300)
}

fn locked() -> CacheAside {
    policy().lock(Duration::from_secs(5))
}

fn stale() -> CacheAside {
    policy().stale_for(Duration::from_secs(300))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1], &args[2], args[3].parse()?).await;
    }
    let server = Memcached::start()?;
    let spec = server.spec();
    let client = Client::new([spec.as_str()])?;
    println!("| herd of {REQUESTS}, loader {LOAD_TIME:?} | loader calls | p50 | p99 |");
    println!("|---|---:|---:|---:|");

    client.set("plain", "v", 0)?;
    let mc = AsyncClient::new(client.try_clone()?)?;
    let (_, times) = herd(&mc, "plain", REQUESTS, |mc, key, _| async move {
        mc.get::<String>(&key).await.unwrap().unwrap();
    })
    .await;
    row("plain gets of a present key", None, &times);

    let (calls, times) = herd(&mc, "by-hand", REQUESTS, |mc, key, calls| async move {
        if mc.get::<String>(&key).await.unwrap().is_none() {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(LOAD_TIME).await;
            mc.set(&key, "loaded", 300).await.unwrap();
        }
    })
    .await;
    row("get, then load and set", Some(calls), &times);

    let (calls, times) = herd(&mc, "flight", REQUESTS, |mc, key, calls| async move {
        mc.get_or_set_with(&key, policy(), || load(calls))
            .await
            .unwrap();
    })
    .await;
    row("`get_or_set_with` (single-flight)", Some(calls), &times);

    // Stale: the value is there, its marker expired (deleted here).
    let staled = mc
        .get_or_set_with("stale", stale(), || load(Arc::default()))
        .await;
    staled.unwrap();
    mc.delete("stale:fresh").await?;
    let (calls, times) = herd(&mc, "stale", REQUESTS, |mc, _, calls| async move {
        mc.get_or_set_with("stale", stale(), || load(calls))
            .await
            .unwrap();
    })
    .await;
    row("`stale_for` (marker expired)", Some(calls), &times);

    // The lock across processes: each child runs its share of the herd from the same instant.
    let start = SystemTime::now().duration_since(UNIX_EPOCH)? + Duration::from_millis(800);
    let exe = std::env::current_exe()?;
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args(["--child", &spec, "locked", &start.as_millis().to_string()])
                .stdout(std::process::Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let (mut calls, mut times) = (0, Vec::new());
    for child in children {
        let output = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        calls += lines
            .next()
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(0);
        times.extend(lines.filter_map(|l| l.parse::<u64>().ok()));
    }
    times.sort_unstable();
    row(
        &format!(
            "`lock`, {PROCESSES} processes of {} requests",
            REQUESTS / PROCESSES
        ),
        Some(calls),
        &times,
    );

    // Threads of a pool.
    let pool = Arc::new(ClientPool::new(client.try_clone()?, 8)?);
    for (label, flight) in [
        ("8 pool threads: get, then load and set", false),
        ("8 pool threads: `get_or_set_with`", true),
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let key = format!("pool-{flight}");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (pool, calls, barrier, key) = (
                    Arc::clone(&pool),
                    Arc::clone(&calls),
                    Arc::clone(&barrier),
                    key.clone(),
                );
                std::thread::spawn(move || {
                    let mc = pool.reserve().unwrap();
                    barrier.wait();
                    let started = Instant::now();
                    let load = || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(LOAD_TIME);
                        Ok::<_, Never>("loaded".to_owned())
                    };
                    if flight {
                        mc.get_or_set_with(&key, policy(), load).unwrap();
                    } else if mc.get::<String>(&key).unwrap().is_none() {
                        let value = load().unwrap();
                        mc.set(&key, value, 300).unwrap();
                    }
                    started.elapsed().as_micros() as u64
                })
            })
            .collect();
        let mut times: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        times.sort_unstable();
        row(label, Some(calls.load(Ordering::SeqCst)), &times);
    }
    Ok(())
}

/// The loader: 50 ms, counted.
async fn load(calls: Arc<AtomicUsize>) -> Result<String, Never> {
    calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(LOAD_TIME).await;
    Ok("loaded".to_owned())
}

/// Runs `requests` tasks of `request` at once on `key`; returns the loader calls and each
/// task's time in µs, sorted.
async fn herd<F, Fut>(mc: &AsyncClient, key: &str, requests: usize, request: F) -> (usize, Vec<u64>)
where
    F: Fn(AsyncClient, String, Arc<AtomicUsize>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..requests)
        .map(|_| {
            let task = request(mc.clone(), key.to_owned(), Arc::clone(&calls));
            tokio::spawn(async move {
                let started = Instant::now();
                task.await;
                started.elapsed().as_micros() as u64
            })
        })
        .collect();
    let mut times = Vec::with_capacity(requests);
    for task in tasks {
        times.push(task.await.unwrap());
    }
    times.sort_unstable();
    (calls.load(Ordering::SeqCst), times)
}

/// One process of the locked herd: prints its loader calls, then each request's time in µs.
async fn child(spec: &str, key: &str, start_ms: u128) -> Result<(), Box<dyn std::error::Error>> {
    let mc = AsyncClient::new(Client::new([spec])?)?;
    mc.get::<String>("warm-up").await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    tokio::time::sleep(Duration::from_millis(start_ms.saturating_sub(now) as u64)).await;
    let (calls, times) = herd(
        &mc,
        key,
        REQUESTS / PROCESSES,
        |mc, key, calls| async move {
            mc.get_or_set_with(&key, locked(), || load(calls))
                .await
                .unwrap();
        },
    )
    .await;
    println!("{calls}");
    for t in times {
        println!("{t}");
    }
    Ok(())
}

fn row(label: &str, calls: Option<usize>, times: &[u64]) {
    let at = |p: f64| {
        times
            .get(((times.len().max(1) - 1) as f64 * p) as usize)
            .copied()
    };
    let ms = |us: Option<u64>| {
        us.map_or("—".to_owned(), |us| {
            format!("{:.1} ms", us as f64 / 1000.0)
        })
    };
    let calls = calls.map_or("—".to_owned(), |c| c.to_string());
    println!("| {label} | {calls} | {} | {} |", ms(at(0.5)), ms(at(0.99)));
}
