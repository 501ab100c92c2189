//! Gets per second from many concurrent tasks, side by side: `AsyncClient` (merging gets, and
//! with merging off), the pure-Rust `async-memcached` crate with one connection per task, the
//! `ClientPool` + `tokio::task::spawn_blocking` recipe, and one blocking `Client` in a loop.
//!
//! ```sh
//! cargo run --release --features async --example bench_async
//! cargo run --release --features async --example bench_async -- --seconds 1 --rounds 5
//! ```
//!
//! One memcached (started here), 10 000 keys of 15 bytes with 100-byte values; 1, 16, 64 and
//! 256 tasks on a multi-thread tokio runtime; gets only, and 90 % gets with 10 % sets. Each
//! measurement runs for `--seconds` (default 0.6) after a short warm-up; rounds are interleaved
//! and the median is printed. Peak RSS is the process's high-water mark during the measurement
//! (reset before it through `/proc/self/clear_refs`). Prints Markdown tables.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_memcached::AsciiProtocol;
use libmemcached::testing::Memcached;
use libmemcached::{AsyncClient, Client, ClientPool, EngineStats};

const KEYS: usize = 10_000;
const VALUE_LEN: usize = 100;
const TASKS: [usize; 4] = [1, 16, 64, 256];
const WARM_UP: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mix {
    Gets,
    /// 90 % gets, 10 % sets.
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Impl {
    Merged,
    Unmerged,
    AsyncMemcached,
    Pool,
    Blocking,
}

const IMPLS: [Impl; 5] = [
    Impl::Merged,
    Impl::Unmerged,
    Impl::AsyncMemcached,
    Impl::Pool,
    Impl::Blocking,
];

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Merged => "AsyncClient",
            Impl::Unmerged => "AsyncClient, max_batch(1)",
            Impl::AsyncMemcached => "async-memcached 0.9, a connection per task",
            Impl::Pool => "ClientPool + spawn_blocking",
            Impl::Blocking => "blocking Client, one thread",
        }
    }
}

/// What one measurement counted.
#[derive(Debug, Clone, Default)]
struct Run {
    gets: u64,
    sets: u64,
    secs: f64,
    peak_rss_kib: u64,
    engine: Option<EngineStats>,
}

impl Run {
    fn gets_per_sec(&self) -> f64 {
        self.gets as f64 / self.secs
    }
}

/// Everything the tasks share.
struct Bench {
    port: u16,
    keys: Arc<[String]>,
    value: Arc<[u8]>,
    merged: AsyncClient,
    unmerged: AsyncClient,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (seconds, rounds) = parse_args();
    let server = Memcached::builder()
        .arg("-m")
        .arg("256")
        .arg("-c")
        .arg("4096")
        .start()?;
    let port = server.port().expect("a TCP server");
    let client = Client::new([server.spec()])?;
    let keys: Arc<[String]> = (0..KEYS).map(|i| format!("bench:{i:09}")).collect();
    let value: Arc<[u8]> = vec![b'v'; VALUE_LEN].into();
    for chunk in keys.chunks(500) {
        let failed = client.set_multi(chunk.iter().map(|k| (k.as_str(), &value[..])), 0)?;
        assert!(failed.is_empty());
    }
    let bench = Arc::new(Bench {
        port,
        merged: AsyncClient::new(client.try_clone()?)?,
        unmerged: AsyncClient::builder(client.try_clone()?)
            .max_batch(1)
            .build()?,
        keys,
        value,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let duration = Duration::from_secs_f64(seconds);
    eprintln!(
        "{} cores; tokio multi-thread runtime; {} s per measurement, {} rounds",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        seconds,
        rounds
    );

    let mut runs: BTreeMap<(Mix, usize, Impl), Vec<Run>> = BTreeMap::new();
    let started = Instant::now();
    for round in 0..rounds {
        for mix in [Mix::Gets, Mix::Mixed] {
            for tasks in TASKS {
                for which in IMPLS {
                    if which == Impl::Blocking && tasks != 1 {
                        continue;
                    }
                    let run = measure(&runtime, &bench, &client, which, mix, tasks, duration)?;
                    eprintln!(
                        "round {round}: {mix:?} {tasks:>3} tasks {:<45} {:>9.0} gets/s",
                        which.name(),
                        run.gets_per_sec()
                    );
                    runs.entry((mix, tasks, which)).or_default().push(run);
                }
            }
        }
    }
    eprintln!("measured in {:.0} s", started.elapsed().as_secs_f64());
    let medians: BTreeMap<_, Run> = runs
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(|a, b| a.gets_per_sec().total_cmp(&b.gets_per_sec()));
            (k, v.swap_remove(v.len() / 2))
        })
        .collect();
    print_tables(&medians);
    Ok(())
}

fn parse_args() -> (f64, usize) {
    let mut seconds: f64 = 0.6;
    let mut rounds: usize = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--seconds" => seconds = value.parse().expect("--seconds takes a number"),
            "--rounds" => rounds = value.parse().expect("--rounds takes a whole number"),
            other => panic!("unknown argument {other}: use --seconds S --rounds N"),
        }
    }
    (seconds.clamp(0.05, 10.0), rounds.clamp(1, 9))
}

/// Warms up, then runs `tasks` tasks for `duration` and counts.
fn measure(
    runtime: &tokio::runtime::Runtime,
    bench: &Arc<Bench>,
    client: &Client,
    which: Impl,
    mix: Mix,
    tasks: usize,
    duration: Duration,
) -> Result<Run, Box<dyn std::error::Error>> {
    if which == Impl::Blocking {
        blocking(bench, client, mix, WARM_UP);
        reset_peak_rss();
        let mut run = blocking(bench, client, mix, duration);
        run.peak_rss_kib = peak_rss_kib();
        return Ok(run);
    }
    runtime.block_on(async {
        // Connections (and for the pool, clients) of the measurement's own, made and warmed
        // before the clock starts.
        let conns = match which {
            Impl::AsyncMemcached => {
                let mut conns = Vec::with_capacity(tasks);
                for _ in 0..tasks {
                    let dsn = format!("tcp://127.0.0.1:{}", bench.port);
                    conns.push(async_memcached::Client::new(dsn).await?);
                }
                conns
            }
            _ => Vec::new(),
        };
        let pool = match which {
            Impl::Pool => Some(Arc::new(ClientPool::new(client.try_clone()?, tasks)?)),
            _ => None,
        };
        let conns = run_tasks(bench, which, mix, tasks, WARM_UP, conns, pool.clone())
            .await?
            .1;
        reset_peak_rss();
        let before = engine(bench, which).map(AsyncClient::engine_stats);
        let (mut run, _) = run_tasks(bench, which, mix, tasks, duration, conns, pool).await?;
        run.peak_rss_kib = peak_rss_kib();
        run.engine = before.map(|b| delta(&engine(bench, which).unwrap().engine_stats(), &b));
        Ok(run)
    })
}

fn engine(bench: &Bench, which: Impl) -> Option<&AsyncClient> {
    match which {
        Impl::Merged => Some(&bench.merged),
        Impl::Unmerged => Some(&bench.unmerged),
        _ => None,
    }
}

type Conns = Vec<async_memcached::Client>;

/// Runs the tasks until `duration` is over; hands the async-memcached connections back.
async fn run_tasks(
    bench: &Arc<Bench>,
    which: Impl,
    mix: Mix,
    tasks: usize,
    duration: Duration,
    mut conns: Conns,
    pool: Option<Arc<ClientPool>>,
) -> Result<(Run, Conns), Box<dyn std::error::Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let (bench, stop, pool) = (Arc::clone(bench), Arc::clone(&stop), pool.clone());
        let mut conn = conns.pop();
        let seed = 0x9e37_79b9_7f4a_7c15 ^ (task as u64 + 1).wrapping_mul(0xff51_afd7_ed55_8ccd);
        handles.push(tokio::spawn(async move {
            let mut ops = Ops::new(seed, mix);
            match which {
                Impl::Merged | Impl::Unmerged => {
                    let mc = engine(&bench, which).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let (key, set) = ops.next(&bench.keys);
                        if set {
                            mc.set(key.as_str(), bench.value.to_vec(), 0).await.unwrap();
                        } else {
                            let v: Option<Vec<u8>> = mc.get(key.as_str()).await.unwrap();
                            assert_eq!(v.map(|v| v.len()), Some(VALUE_LEN));
                        }
                    }
                }
                Impl::AsyncMemcached => {
                    let conn = conn.as_mut().unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let (key, set) = ops.next(&bench.keys);
                        if set {
                            conn.set(key.as_str(), &bench.value[..], None, None)
                                .await
                                .unwrap();
                        } else {
                            let v = conn.get(key.as_str()).await.unwrap();
                            assert_eq!(v.and_then(|v| v.data).map(|d| d.len()), Some(VALUE_LEN));
                        }
                    }
                }
                Impl::Pool => {
                    let pool = pool.unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let (key, set) = ops.next(&bench.keys);
                        let (pool, key, value) =
                            (Arc::clone(&pool), key.clone(), bench.value.clone());
                        let got = tokio::task::spawn_blocking(move || {
                            let mc = pool.reserve()?;
                            match set {
                                true => mc.set(&key, &value[..], 0).map(|()| None),
                                false => mc.get::<Vec<u8>>(&key),
                            }
                        })
                        .await
                        .unwrap()
                        .unwrap();
                        if !set {
                            assert_eq!(got.map(|v| v.len()), Some(VALUE_LEN));
                        }
                    }
                }
                Impl::Blocking => unreachable!("runs on a thread of its own"),
            }
            (ops.gets, ops.sets, conn)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = Run::default();
    let mut back = Vec::new();
    for handle in handles {
        let (gets, sets, conn) = handle.await?;
        run.gets += gets;
        run.sets += sets;
        back.extend(conn);
    }
    run.secs = start.elapsed().as_secs_f64();
    Ok((run, back))
}

/// One blocking client in a loop on this thread.
fn blocking(bench: &Bench, client: &Client, mix: Mix, duration: Duration) -> Run {
    let mut ops = Ops::new(0x2545_f491_4f6c_dd1d, mix);
    let start = Instant::now();
    while start.elapsed() < duration {
        for _ in 0..64 {
            let (key, set) = ops.next(&bench.keys);
            if set {
                client.set(key, &bench.value[..], 0).unwrap();
            } else {
                let v: Option<Vec<u8>> = client.get(key).unwrap();
                assert_eq!(v.map(|v| v.len()), Some(VALUE_LEN));
            }
        }
    }
    Run {
        gets: ops.gets,
        sets: ops.sets,
        secs: start.elapsed().as_secs_f64(),
        ..Run::default()
    }
}

/// A task's random keys (xorshift) and its choice of get or set.
struct Ops {
    state: u64,
    mix: Mix,
    gets: u64,
    sets: u64,
}

impl Ops {
    fn new(seed: u64, mix: Mix) -> Ops {
        Ops {
            state: seed | 1,
            mix,
            gets: 0,
            sets: 0,
        }
    }

    /// A key, and whether to set it (else get it).
    fn next<'k>(&mut self, keys: &'k [String]) -> (&'k String, bool) {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let set = self.mix == Mix::Mixed && (self.state >> 32) % 10 == 0;
        match set {
            true => self.sets += 1,
            false => self.gets += 1,
        }
        (&keys[(self.state % keys.len() as u64) as usize], set)
    }
}

/// The counters' growth between two snapshots.
fn delta(after: &EngineStats, before: &EngineStats) -> EngineStats {
    let mut d = after.clone();
    d.batches -= before.batches;
    d.batch_keys -= before.batch_keys;
    d.gets -= before.gets;
    d.requests -= before.requests;
    for (a, b) in d.batch_sizes.iter_mut().zip(before.batch_sizes) {
        *a -= b;
    }
    // The largest batch of this measurement is the highest bucket it filled.
    d.max_batch_keys = d
        .batch_size_buckets()
        .filter(|(_, n)| *n > 0)
        .map(|(range, _)| *range.start())
        .max()
        .unwrap_or(0);
    d
}

/// Resets the process's peak RSS (VmHWM) to its current RSS.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmHWM:")
                    .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn print_tables(runs: &BTreeMap<(Mix, usize, Impl), Run>) {
    let rows: Vec<(Mix, usize)> = [Mix::Gets, Mix::Mixed]
        .into_iter()
        .flat_map(|mix| TASKS.map(|tasks| (mix, tasks)))
        .collect();
    let mix_name = |mix: Mix| match mix {
        Mix::Gets => "gets",
        Mix::Mixed => "90 % get, 10 % set",
    };
    let cell = |mix, tasks, which, f: &dyn Fn(&Run) -> String| {
        runs.get(&(mix, tasks, which))
            .map_or_else(|| "—".to_owned(), f)
    };
    let rate = |r: &Run| format!("{:.0}k", r.gets_per_sec() / 1000.0);
    let ratio = |a: Option<&Run>, b: Option<&Run>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}×", a.gets_per_sec() / b.gets_per_sec()),
        _ => "—".to_owned(),
    };

    println!("\nGets per second (medians):\n");
    print!("| workload | tasks |");
    for which in IMPLS {
        print!(" {} |", which.name());
    }
    println!(" AsyncClient vs async-memcached | AsyncClient vs blocking |");
    println!("|---|---:|{}---:|---:|", "---:|".repeat(IMPLS.len()));
    for &(mix, tasks) in &rows {
        print!("| {} | {tasks} |", mix_name(mix));
        for which in IMPLS {
            print!(" {} |", cell(mix, tasks, which, &rate));
        }
        let merged = runs.get(&(mix, tasks, Impl::Merged));
        let blocking = runs.get(&(mix, 1, Impl::Blocking)).filter(|_| tasks == 1);
        println!(
            " {} | {} |",
            ratio(merged, runs.get(&(mix, tasks, Impl::AsyncMemcached))),
            ratio(merged, blocking)
        );
    }

    println!("\nPeak RSS during each measurement, MiB:\n");
    print!("| workload | tasks |");
    for which in IMPLS {
        print!(" {} |", which.name());
    }
    println!("\n|---|---:|{}", "---:|".repeat(IMPLS.len()));
    for &(mix, tasks) in &rows {
        print!("| {} | {tasks} |", mix_name(mix));
        for which in IMPLS {
            let rss = |r: &Run| format!("{:.1}", r.peak_rss_kib as f64 / 1024.0);
            print!(" {} |", cell(mix, tasks, which, &rss));
        }
        println!();
    }

    println!("\nAsyncClient's batches (distinct keys per multi-get):\n");
    let buckets = [
        "1",
        "2–3",
        "4–7",
        "8–15",
        "16–31",
        "32–63",
        "64–127",
        "128–255",
        "256–511",
        "512+",
    ];
    print!("| workload | tasks | gets per batch | keys per batch | largest |");
    for b in buckets {
        print!(" {b} |");
    }
    println!(
        "\n|---|---:|---:|---:|---:|{}",
        "---:|".repeat(buckets.len())
    );
    for &(mix, tasks) in &rows {
        let Some(e) = runs
            .get(&(mix, tasks, Impl::Merged))
            .and_then(|r| r.engine.as_ref())
        else {
            continue;
        };
        print!(
            "| {} | {tasks} | {:.1} | {:.1} | {} |",
            mix_name(mix),
            e.gets as f64 / e.batches.max(1) as f64,
            e.mean_batch_keys(),
            e.max_batch_keys
        );
        for (i, _) in buckets.iter().enumerate() {
            // The last column folds the buckets of 512 keys and more together.
            let n: u64 = match i + 1 == buckets.len() {
                true => e.batch_sizes[i..].iter().sum(),
                false => e.batch_sizes[i],
            };
            let share = 100.0 * n as f64 / e.batches.max(1) as f64;
            print!(" {share:.0} % |");
        }
        println!();
    }
}
