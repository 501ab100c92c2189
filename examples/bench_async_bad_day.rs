//! `AsyncClient` on a bad day: what a hung server costs the other servers' keys, how long a drop
//! takes with calls queued against a hung server, and what many callers giving up cost.
//!
//! ```sh
//! cargo run --release --features async --example bench_async_bad_day
//! ```
//!
//! Three memcached servers (started here), the third behind a fault proxy. Latency: 192 tasks
//! get random keys of the two healthy servers while 64 tasks get keys of the third, for
//! `SECONDS` with the proxy passing everything, then again with it blackholing every request;
//! p50/p99 of the healthy keys' gets. Drop: one server behind a blackhole, both workers stuck in
//! a call, 1000 calls queued by callers that have gone; the time `drop` takes. Cancellation:
//! a lane's workers stuck, its queue full, then N callers waiting for room, each under a 1 s
//! timeout; the wall and CPU time until the last caller has its timeout. Prints Markdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use libmemcached::testing::{Fault, FaultProxy, Memcached};
use libmemcached::{AsyncClient, Behavior, Client};

const SECONDS: f64 = 3.0;
const KEYS: usize = 3_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers: Vec<Memcached> = (0..3)
        .map(|_| Memcached::start())
        .collect::<Result<_, _>>()?;
    let proxy = FaultProxy::start(servers[2].spec())?;
    let specs = vec![servers[0].spec(), servers[1].spec(), proxy.spec()];

    println!("| with one of three servers | healthy-key gets | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    let client = Client::builder()
        .servers(&specs)
        .behavior(Behavior::PollTimeout(Duration::from_secs(5)))
        .build()?;
    let keys = spread(&client, &specs)?;
    let mc = AsyncClient::new(client)?;
    for (label, fault) in [
        ("answering", Fault::Pass),
        ("blackholed (5 s poll timeout)", Fault::Blackhole),
    ] {
        proxy.set_fault(fault);
        let latencies = healthy_latencies(&mc, &keys, &proxy.spec()).await;
        println!(
            "| {label} | {} | {} | {} | {} |",
            latencies.len(),
            micros(percentile(&latencies, 0.5)),
            micros(percentile(&latencies, 0.99)),
            micros(latencies.last().copied().unwrap_or_default()),
        );
    }
    let shutdown = mc.shutdown(Duration::from_millis(10)).await;
    eprintln!("shutdown: {shutdown:?}");

    proxy.set_fault(Fault::Blackhole);
    let dropped = drop_with_queued(&proxy.spec()).await?;
    println!("\n`drop` with 2 calls in flight and 1000 queued against a hung server: {dropped:?}");

    println!("\n| callers that give up | wall | CPU | CPU per caller |");
    println!("|---:|---:|---:|---:|");
    for callers in [25_000, 50_000, 100_000] {
        let (wall, cpu) = give_up(&proxy.spec(), callers).await?;
        println!(
            "| {callers} | {wall:.2?} | {cpu:.2?} | {:.1} µs |",
            cpu.as_secs_f64() * 1e6 / callers as f64
        );
    }
    println!("\npeak RSS: {:.1} MiB", peak_rss_kib() as f64 / 1024.0);
    Ok(())
}

/// Keys by server, stored.
fn spread(
    client: &Client,
    specs: &[String],
) -> Result<HashMap<String, Vec<String>>, Box<dyn std::error::Error>> {
    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..KEYS {
        let key = format!("bad-day:{i}");
        client.set(&key, "v".repeat(100), 0)?;
        let server = client.server_for_key(&key)?.to_string();
        keys.entry(server).or_default().push(key);
    }
    assert_eq!(keys.len(), specs.len(), "keys on every server");
    Ok(keys)
}

/// Every get's latency of a key not on `hung`, sorted.
async fn healthy_latencies(
    mc: &AsyncClient,
    keys: &HashMap<String, Vec<String>>,
    hung: &str,
) -> Vec<u32> {
    let mut healthy: Vec<String> = Vec::new();
    let mut on_hung: Vec<String> = Vec::new();
    for (spec, list) in keys {
        match spec == hung {
            true => on_hung.extend(list.iter().cloned()),
            false => healthy.extend(list.iter().cloned()),
        }
    }
    let (healthy, on_hung) = (Arc::new(healthy), Arc::new(on_hung));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..256u64 {
        let (mc, stop) = (mc.clone(), Arc::clone(&stop));
        let keys = Arc::clone(if task < 192 { &healthy } else { &on_hung });
        let measured = task < 192;
        tasks.push(tokio::spawn(async move {
            let mut state = (task + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let key = &keys[(state % keys.len() as u64) as usize];
                let started = Instant::now();
                let got = mc.get::<String>(key).await;
                if measured {
                    assert!(got.unwrap().is_some());
                    latencies.push(started.elapsed().as_micros() as u32);
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(SECONDS)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks.into_iter().take(192) {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    all
}

/// How long dropping the last handle takes with calls in flight and queued on a hung server.
async fn drop_with_queued(spec: &str) -> Result<Duration, Box<dyn std::error::Error>> {
    let client = Client::builder()
        .servers([spec])
        .behavior(Behavior::PollTimeout(Duration::from_secs(5)))
        .build()?;
    let mc = AsyncClient::builder(client)
        .thread_name("bench-drop")
        .build()?;
    let stuck: Vec<_> = (0..2)
        .map(|i| {
            let mc = mc.clone();
            // A delete runs alone: each worker takes one (a worker that takes a set takes the
            // sets queued with it).
            tokio::spawn(async move { mc.delete(format!("stuck{i}")).await })
        })
        .collect();
    while mc.engine_stats().requests < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for task in stuck {
        task.abort();
    }
    for i in 0..1000 {
        let set = mc.set(format!("queued{i}"), "x", 0);
        let _ = tokio::time::timeout(Duration::ZERO, set).await;
    }
    assert_eq!(mc.engine_stats().queue_depth, 1000);
    let started = Instant::now();
    drop(mc);
    Ok(started.elapsed())
}

/// Wall and CPU time until `callers` callers waiting for room in a full queue have all given up.
async fn give_up(
    spec: &str,
    callers: usize,
) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let client = Client::builder()
        .servers([spec])
        .behavior(Behavior::PollTimeout(Duration::from_secs(60)))
        .build()?;
    let mc = AsyncClient::builder(client)
        .workers(1)
        .queue_capacity(1024)
        .build()?;
    let cpu = process_cpu();
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers + 1025)
        .map(|i| {
            let mc = mc.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(1), mc.get::<String>(format!("k{i}")))
                    .await
                    .is_err()
            })
        })
        .collect();
    let mut timed_out = 0;
    for task in tasks {
        timed_out += usize::from(task.await?);
    }
    let (wall, cpu) = (started.elapsed(), process_cpu() - cpu);
    assert!(timed_out >= callers, "{timed_out} of {callers} timed out");
    drop(mc);
    Ok((wall, cpu))
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    match sorted.len() {
        0 => 0,
        n => sorted[((n - 1) as f64 * p) as usize],
    }
}

fn micros(us: u32) -> String {
    match us {
        0..1000 => format!("{us} µs"),
        _ => format!("{:.1} ms", us as f64 / 1000.0),
    }
}

/// This process's CPU time (user + system) so far.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // utime and stime, fields 14 and 15 of the line (11 and 12 after the name).
    let ticks: u64 = fields[11..13]
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The process's peak RSS so far (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
