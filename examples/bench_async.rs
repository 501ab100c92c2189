//! Operations per second from many concurrent tasks, side by side: `AsyncClient` (merging gets and
//! sending the sets it takes together, and with merging off), the pure-Rust `async-memcached` crate with one connection per task, the
//! `ClientPool` + `tokio::task::spawn_blocking` recipe, one blocking `Client` in a loop, and (for
//! gets at 256 tasks) one blocking `get_multi` of 100 keys in a loop.
//!
//! ```sh
//! cargo run --release --features async --example bench_async
//! cargo run --release --features async --example bench_async -- --seconds 1 --rounds 5
//! cargo run --release --features async --example bench_async -- --only merged --tasks 256 --mix gets
//! cargo run --release --features async --example bench_async -- --tasks 1 --spin-us 0
//! ```
//!
//! One memcached (started here), 10 000 keys of 15 bytes with 100-byte values; 1, 16, 64 and
//! 256 tasks on a multi-thread tokio runtime; gets only, and 90 % gets with 10 % sets; at 256
//! tasks also half gets and half sets, and sets only. Each measurement runs in a process of its
//! own (this program, re-run with `--child`), so that its peak RSS (VmHWM) is its own: a short
//! warm-up, then `--seconds` (default 0.6) of counting. Rounds are interleaved, each starting
//! with another implementation, and the median is printed, with the CPU time the client process
//! and the server used per operation (from the scheduler's per-thread counters), and the
//! `AsyncClient`'s batch sizes. Prints Markdown tables.

use std::collections::BTreeMap;
use std::process::Command;
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
    /// 50 % gets, 50 % sets (256 tasks only).
    Half,
    /// Sets only (256 tasks only).
    Sets,
}

const MIXES: [Mix; 4] = [Mix::Gets, Mix::Mixed, Mix::Half, Mix::Sets];

impl Mix {
    /// Whether this mix runs with `tasks` tasks.
    fn runs_with(self, tasks: usize) -> bool {
        matches!(self, Mix::Gets | Mix::Mixed) || tasks == 256
    }

    fn name(self) -> &'static str {
        match self {
            Mix::Gets => "gets",
            Mix::Mixed => "90 % get, 10 % set",
            Mix::Half => "50 % get, 50 % set",
            Mix::Sets => "sets",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Impl {
    Merged,
    Unmerged,
    AsyncMemcached,
    Pool,
    Blocking,
    /// A blocking `get_multi` of 100 keys in a loop (gets at 256 tasks only).
    BlockingMulti,
}

const IMPLS: [Impl; 6] = [
    Impl::Merged,
    Impl::Unmerged,
    Impl::AsyncMemcached,
    Impl::Pool,
    Impl::Blocking,
    Impl::BlockingMulti,
];

impl Impl {
    /// The name `--only` takes.
    fn flag(self) -> &'static str {
        match self {
            Impl::Merged => "merged",
            Impl::Unmerged => "unmerged",
            Impl::AsyncMemcached => "async-memcached",
            Impl::Pool => "pool",
            Impl::Blocking => "blocking",
            Impl::BlockingMulti => "blocking-multi",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Impl::Merged => "AsyncClient",
            Impl::Unmerged => "AsyncClient, max_batch(1)",
            Impl::AsyncMemcached => "async-memcached 0.9, a connection per task",
            Impl::Pool => "ClientPool + spawn_blocking",
            Impl::Blocking => "blocking Client, one thread",
            Impl::BlockingMulti => "blocking get_multi of 100 keys, one thread",
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
    /// CPU time of this process and of the server during the run, in nanoseconds.
    client_cpu_ns: u64,
    server_cpu_ns: u64,
    engine: Option<Batches>,
}

/// What an `AsyncClient`'s engine did during a run.
#[derive(Debug, Clone, Default)]
struct Batches {
    batches: u64,
    batch_keys: u64,
    gets: u64,
    batch_sizes: [u64; 11],
}

impl Run {
    /// The run as a line for the parent: `RUN gets sets secs rss cpu cpu [batches keys gets
    /// max sizes...]`.
    fn line(&self) -> String {
        let mut line = format!(
            "RUN {} {} {} {} {} {}",
            self.gets,
            self.sets,
            self.secs,
            self.peak_rss_kib,
            self.client_cpu_ns,
            self.server_cpu_ns
        );
        if let Some(e) = &self.engine {
            line += &format!(" {} {} {}", e.batches, e.batch_keys, e.gets);
            for n in e.batch_sizes {
                line += &format!(" {n}");
            }
        }
        line
    }

    fn parse(line: &str) -> Option<Run> {
        let mut words = line.strip_prefix("RUN ")?.split_whitespace();
        let mut next = || words.next()?.parse::<f64>().ok();
        let mut run = Run {
            gets: next()? as u64,
            sets: next()? as u64,
            secs: next()?,
            peak_rss_kib: next()? as u64,
            client_cpu_ns: next()? as u64,
            server_cpu_ns: next()? as u64,
            engine: None,
        };
        if let Some(batches) = next() {
            run.engine = Some(Batches {
                batches: batches as u64,
                batch_keys: next()? as u64,
                gets: next()? as u64,
                batch_sizes: std::array::from_fn(|_| next().unwrap_or(0.0) as u64),
            });
        }
        Some(run)
    }

    /// Gets and sets per second.
    fn ops_per_sec(&self) -> f64 {
        (self.gets + self.sets) as f64 / self.secs
    }

    /// CPU microseconds per operation: (client, server).
    fn cpu_per_op(&self) -> (f64, f64) {
        let ops = (self.gets + self.sets).max(1) as f64;
        (
            self.client_cpu_ns as f64 / ops / 1000.0,
            self.server_cpu_ns as f64 / ops / 1000.0,
        )
    }
}

/// Everything the tasks share.
struct Bench {
    port: u16,
    keys: Arc<[String]>,
    value: Arc<[u8]>,
    /// The `AsyncClient` under test, if it is one.
    mc: Option<AsyncClient>,
}

/// The command line: durations and what to run.
struct Args {
    seconds: f64,
    rounds: usize,
    only: Option<String>,
    tasks: Option<usize>,
    mix: Option<String>,
    /// `AsyncClient` workers (default: its default).
    workers: Option<usize>,
    /// `AsyncClient`'s spin time, in microseconds (default: its default).
    spin_us: Option<u64>,
    /// In a child: the server's spec and pid.
    child: Option<(String, u32)>,
}

impl Args {
    fn runs(&self, which: Impl, tasks: usize, mix: Mix) -> bool {
        self.only.as_deref().is_none_or(|only| only == which.flag())
            && self.tasks.is_none_or(|t| t == tasks)
            && self.mix.as_deref().is_none_or(|m| m == mix.flag())
    }
}

impl Mix {
    fn flag(self) -> &'static str {
        match self {
            Mix::Gets => "gets",
            Mix::Mixed => "mixed",
            Mix::Half => "half",
            Mix::Sets => "sets",
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    if let Some((spec, pid)) = &args.child {
        return child(&args, spec, *pid);
    }
    let (seconds, rounds) = (args.seconds, args.rounds);
    let server = Memcached::builder()
        .arg("-m")
        .arg("256")
        .arg("-c")
        .arg("4096")
        .start()?;
    let client = Client::new([server.spec()])?;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("bench:{i:09}")).collect();
    let value = [b'v'; VALUE_LEN];
    for chunk in keys.chunks(500) {
        let failed = client.set_multi(chunk.iter().map(|k| (k.as_str(), &value[..])), 0)?;
        assert!(failed.is_empty());
    }
    let workers = args.workers.unwrap_or(libmemcached::DEFAULT_WORKERS);
    let spin = args
        .spin_us
        .map_or(libmemcached::DEFAULT_SPIN, Duration::from_micros);
    eprintln!(
        "{} cores; tokio multi-thread runtime; AsyncClient with {workers} workers, spinning \
         {spin:?}; {seconds} s per measurement, {rounds} rounds",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );

    let exe = std::env::current_exe()?;
    let pid = server.pid().expect("a running server");
    let mut runs: BTreeMap<(Mix, usize, Impl), Vec<Run>> = BTreeMap::new();
    let started = Instant::now();
    for round in 0..rounds {
        for mix in MIXES {
            for tasks in TASKS.into_iter().filter(|&tasks| mix.runs_with(tasks)) {
                // Each round starts with another implementation: the first after a heavy
                // measurement runs while the server still catches up.
                let order = IMPLS
                    .iter()
                    .cycle()
                    .skip(round % IMPLS.len())
                    .take(IMPLS.len());
                for &which in order {
                    let multi_row = mix == Mix::Gets && tasks == 256;
                    if (which == Impl::Blocking && tasks != 1)
                        || (which == Impl::BlockingMulti && !multi_row)
                        || !args.runs(which, tasks, mix)
                    {
                        continue;
                    }
                    let output = Command::new(&exe)
                        .args(["--child", &server.spec(), &pid.to_string()])
                        .args(["--only", which.flag(), "--mix", mix.flag()])
                        .args([
                            "--tasks",
                            &tasks.to_string(),
                            "--seconds",
                            &seconds.to_string(),
                        ])
                        .args(["--workers", &workers.to_string()])
                        .args(
                            args.spin_us
                                .iter()
                                .flat_map(|us| ["--spin-us".to_owned(), us.to_string()]),
                        )
                        .output()?;
                    let stdout = String::from_utf8_lossy(&output.stdout);
                    let Some(run) = stdout.lines().find_map(Run::parse) else {
                        return Err(format!(
                            "{which:?} {mix:?} {tasks} failed: {}",
                            String::from_utf8_lossy(&output.stderr)
                        )
                        .into());
                    };
                    eprintln!(
                        "round {round}: {mix:?} {tasks:>3} tasks {:<45} {:>9.0} ops/s",
                        which.name(),
                        run.ops_per_sec()
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
            v.sort_by(|a, b| a.ops_per_sec().total_cmp(&b.ops_per_sec()));
            (k, v.swap_remove(v.len() / 2))
        })
        .collect();
    print_tables(&medians);
    Ok(())
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: 0.6,
        rounds: 3,
        only: None,
        tasks: None,
        mix: None,
        workers: None,
        spin_us: None,
        child: None,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let value = words.next().unwrap_or_default();
        match word.as_str() {
            "--child" => {
                let pid = words.next().and_then(|pid| pid.parse().ok());
                args.child = Some((value, pid.expect("--child takes a spec and a pid")));
            }
            "--seconds" => args.seconds = value.parse().expect("--seconds takes a number"),
            "--rounds" => args.rounds = value.parse().expect("--rounds takes a whole number"),
            "--only" => args.only = Some(value),
            "--tasks" => args.tasks = Some(value.parse().expect("--tasks takes a whole number")),
            "--mix" => args.mix = Some(value),
            "--workers" => {
                args.workers = Some(value.parse().expect("--workers takes a whole number"));
            }
            "--spin-us" => {
                args.spin_us = Some(value.parse().expect("--spin-us takes a whole number"));
            }
            other => panic!(
                "unknown argument {other}: use --seconds S --rounds N --only IMPL --tasks N \
                 --mix gets|mixed|half|sets --workers N --spin-us MICROSECONDS"
            ),
        }
    }
    args.seconds = args.seconds.clamp(0.05, 10.0);
    args.rounds = args.rounds.clamp(1, 9);
    args
}

/// One measurement, in a process of its own: prints its `Run` on stdout.
fn child(args: &Args, spec: &str, server_pid: u32) -> Result<(), Box<dyn std::error::Error>> {
    let which = IMPLS
        .into_iter()
        .find(|i| args.only.as_deref() == Some(i.flag()))
        .ok_or("--child needs --only")?;
    let mix = match args.mix.as_deref() {
        Some("mixed") => Mix::Mixed,
        Some("half") => Mix::Half,
        Some("sets") => Mix::Sets,
        _ => Mix::Gets,
    };
    let tasks = args.tasks.unwrap_or(1);
    let duration = Duration::from_secs_f64(args.seconds);
    // The memcached started here speaks both protocols: sets taken together may go out
    // together (an ASCII client's default is one by one, see `ClientBuilder::sets_together`).
    let client = Client::builder()
        .servers([spec])
        .sets_together(true)
        .build()?;
    let workers = args.workers.unwrap_or(libmemcached::DEFAULT_WORKERS);
    let spin = args
        .spin_us
        .map_or(libmemcached::DEFAULT_SPIN, Duration::from_micros);
    let builder = || {
        Ok::<_, libmemcached::Error>(
            AsyncClient::builder(client.try_clone()?)
                .workers(workers)
                .spin(spin),
        )
    };
    let mc = match which {
        Impl::Merged => Some(builder()?.build()?),
        Impl::Unmerged => Some(builder()?.max_batch(1).build()?),
        _ => None,
    };
    let bench = Arc::new(Bench {
        port: spec
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or("a TCP spec")?,
        keys: (0..KEYS).map(|i| format!("bench:{i:09}")).collect(),
        value: vec![b'v'; VALUE_LEN].into(),
        mc,
    });
    let mut run = if which == Impl::Blocking {
        blocking(&bench, &client, mix, WARM_UP);
        let cpu = Cpu::now(server_pid);
        let mut run = blocking(&bench, &client, mix, duration);
        cpu.charge(&mut run);
        run
    } else if which == Impl::BlockingMulti {
        blocking_multi(&bench, &client, WARM_UP);
        let cpu = Cpu::now(server_pid);
        let mut run = blocking_multi(&bench, &client, duration);
        cpu.charge(&mut run);
        run
    } else {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(measure(
            &bench, &client, which, mix, tasks, duration, server_pid,
        ))?
    };
    run.peak_rss_kib = peak_rss_kib();
    println!("{}", run.line());
    Ok(())
}

/// Warms up, then runs `tasks` tasks for `duration` and counts.
async fn measure(
    bench: &Arc<Bench>,
    client: &Client,
    which: Impl,
    mix: Mix,
    tasks: usize,
    duration: Duration,
    server_pid: u32,
) -> Result<Run, Box<dyn std::error::Error>> {
    // Connections (and for the pool, clients) of the measurement's own, made and warmed before
    // the clock starts.
    let mut conns = Vec::new();
    if which == Impl::AsyncMemcached {
        for _ in 0..tasks {
            let dsn = format!("tcp://127.0.0.1:{}", bench.port);
            conns.push(async_memcached::Client::new(dsn).await?);
        }
    }
    let pool = match which {
        Impl::Pool => Some(Arc::new(ClientPool::new(client.try_clone()?, tasks)?)),
        _ => None,
    };
    let conns = run_tasks(bench, which, mix, tasks, WARM_UP, conns, pool.clone())
        .await?
        .1;
    let before = bench.mc.as_ref().map(AsyncClient::engine_stats);
    let cpu = Cpu::now(server_pid);
    let (mut run, _) = run_tasks(bench, which, mix, tasks, duration, conns, pool).await?;
    cpu.charge(&mut run);
    run.engine = before
        .zip(bench.mc.as_ref())
        .map(|(b, mc)| delta(&mc.engine_stats(), &b));
    Ok(run)
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
                    let mc = bench.mc.as_ref().unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let (key, set) = ops.next(&bench.keys);
                        if set {
                            mc.set(key.as_str(), &bench.value[..], 0).await.unwrap();
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
                Impl::Blocking | Impl::BlockingMulti => {
                    unreachable!("runs on a thread of its own")
                }
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

/// One blocking client on this thread, getting 100 random keys at a time with `get_multi`.
fn blocking_multi(bench: &Bench, client: &Client, duration: Duration) -> Run {
    let mut ops = Ops::new(0x2545_f491_4f6c_dd1d, Mix::Gets);
    let start = Instant::now();
    while start.elapsed() < duration {
        let keys: Vec<&str> = (0..100).map(|_| ops.next(&bench.keys).0.as_str()).collect();
        let found: std::collections::HashMap<&str, Vec<u8>> = client.get_multi(keys).unwrap();
        assert!(found.values().all(|v| v.len() == VALUE_LEN));
    }
    Run {
        gets: ops.gets,
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
        let set = match self.mix {
            Mix::Gets => false,
            Mix::Mixed => (self.state >> 32) % 10 == 0,
            Mix::Half => (self.state >> 32) % 2 == 0,
            Mix::Sets => true,
        };
        match set {
            true => self.sets += 1,
            false => self.gets += 1,
        }
        (&keys[(self.state % keys.len() as u64) as usize], set)
    }
}

/// The counters' growth between two snapshots.
fn delta(after: &EngineStats, before: &EngineStats) -> Batches {
    let mut sizes = after.batch_sizes;
    for (a, b) in sizes.iter_mut().zip(before.batch_sizes) {
        *a -= b;
    }
    // The largest batch of this run is in the highest bucket it filled.
    Batches {
        batches: after.batches - before.batches,
        batch_keys: after.batch_keys - before.batch_keys,
        gets: after.gets - before.gets,
        batch_sizes: sizes,
    }
}

/// CPU time used so far by this process and by the server, from the scheduler's per-thread
/// counters (nanoseconds; threads that exit during a run take theirs with them).
struct Cpu {
    client: u64,
    server: u64,
    server_pid: u32,
}

impl Cpu {
    fn now(server_pid: u32) -> Cpu {
        Cpu {
            client: cpu_ns("self"),
            server: cpu_ns(&server_pid.to_string()),
            server_pid,
        }
    }

    /// Charges the CPU time since `self` to `run`.
    fn charge(self, run: &mut Run) {
        let now = Cpu::now(self.server_pid);
        run.client_cpu_ns = now.client.saturating_sub(self.client);
        run.server_cpu_ns = now.server.saturating_sub(self.server);
    }
}

/// The CPU time of every thread of process `pid`, in nanoseconds.
fn cpu_ns(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The process's peak RSS so far (VmHWM), in KiB.
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
    let rows: Vec<(Mix, usize)> = MIXES
        .into_iter()
        .flat_map(|mix| TASKS.map(|tasks| (mix, tasks)))
        .filter(|&(mix, tasks)| mix.runs_with(tasks))
        .collect();
    let mix_name = Mix::name;
    let cell = |mix, tasks, which, f: &dyn Fn(&Run) -> String| {
        runs.get(&(mix, tasks, which))
            .map_or_else(|| "—".to_owned(), f)
    };
    let rate = |r: &Run| format!("{:.0}k", r.ops_per_sec() / 1000.0);
    let ratio = |a: Option<&Run>, b: Option<&Run>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}×", a.ops_per_sec() / b.ops_per_sec()),
        _ => "—".to_owned(),
    };

    println!("\nOperations (gets and sets) per second (medians):\n");
    print!("| workload | tasks |");
    for which in IMPLS {
        print!(" {} |", which.name());
    }
    println!(
        " AsyncClient vs async-memcached | AsyncClient vs blocking (1 task: get; 256: get_multi \
         of 100) |"
    );
    println!("|---|---:|{}---:|---:|", "---:|".repeat(IMPLS.len()));
    for &(mix, tasks) in &rows {
        print!("| {} | {tasks} |", mix_name(mix));
        for which in IMPLS {
            print!(" {} |", cell(mix, tasks, which, &rate));
        }
        let merged = runs.get(&(mix, tasks, Impl::Merged));
        let blocking = runs
            .get(&(mix, 1, Impl::Blocking))
            .filter(|_| tasks == 1)
            .or_else(|| runs.get(&(mix, tasks, Impl::BlockingMulti)));
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

    println!(
        "\nCPU per operation, µs (this process + the server), over the whole machine's 2 cores:\n"
    );
    print!("| workload | tasks |");
    for which in IMPLS {
        print!(" {} |", which.name());
    }
    println!("\n|---|---:|{}", "---:|".repeat(IMPLS.len()));
    for &(mix, tasks) in &rows {
        print!("| {} | {tasks} |", mix_name(mix));
        for which in IMPLS {
            let cpu = |r: &Run| {
                let (client, server) = r.cpu_per_op();
                format!("{client:.1} + {server:.1}")
            };
            print!(" {} |", cell(mix, tasks, which, &cpu));
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
    print!("| workload | tasks | gets per batch | keys per batch |");
    for b in buckets {
        print!(" {b} |");
    }
    println!("\n|---|---:|---:|---:|{}", "---:|".repeat(buckets.len()));
    for &(mix, tasks) in &rows {
        let Some(e) = runs
            .get(&(mix, tasks, Impl::Merged))
            .and_then(|r| r.engine.as_ref())
        else {
            continue;
        };
        print!(
            "| {} | {tasks} | {:.1} | {:.1} |",
            mix_name(mix),
            e.gets as f64 / e.batches.max(1) as f64,
            e.batch_keys as f64 / e.batches.max(1) as f64,
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
