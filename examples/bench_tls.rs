//! What the shield and TLS cost, side by side with plaintext: one memcached with a TLS and a
//! plaintext listener (started here), and the same client three ways: direct (plaintext),
//! through the shield (plaintext, every reply checked by the relay), and over TLS (the relay
//! with rustls). Single gets and sets, `get_multi` of 100 keys, and `AsyncClient` gets from 64
//! and 256 tasks. Rounds are interleaved; the median of each is printed with its ratio to
//! direct, as a Markdown table.
//!
//! ```sh
//! cargo run --release --features tls,async,testing --example bench_tls
//! cargo run --release --features tls,async,testing --example bench_tls -- --rounds 5 --seconds 1
//! cargo run --release --features tls,async,testing --example bench_tls -- --only shield --ops 20000
//! ```
//!
//! `--only MODE --ops N` runs N single gets in one mode and exits: run it under
//! `valgrind --tool=callgrind` to count the instructions per get of the client and its relay.

use std::time::{Duration, Instant};

use libmemcached::testing::{Memcached, ServerCert, TlsFiles};
use libmemcached::{AsyncClient, Client, Tls};

const KEYS: usize = 1000;
const VALUE_LEN: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Direct,
    Shield,
    Tls,
}

const MODES: [Mode; 3] = [Mode::Direct, Mode::Shield, Mode::Tls];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Shield => "shield",
            Mode::Tls => "tls",
        }
    }

    fn client(self, server: &Memcached, files: &TlsFiles) -> Client {
        let builder = Client::builder();
        match self {
            Mode::Direct => builder.servers([server.plain_spec()]),
            Mode::Shield => builder.servers([server.plain_spec()]).shield(),
            Mode::Tls => builder
                .servers([server.spec()])
                .tls(Tls::new().ca_file(files.ca_cert())),
        }
        .build()
        .expect("a client")
    }
}

const TESTS: [&str; 5] = [
    "get",
    "set",
    "get_multi(100), keys/s",
    "AsyncClient gets, 64 tasks",
    "AsyncClient gets, 256 tasks",
];

/// Operations per second of `op`, run for `seconds`.
fn rate(seconds: f64, mut op: impl FnMut(usize) -> usize) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let (mut i, mut done) = (0, 0);
    while Instant::now() < deadline {
        done += op(i);
        i += 1;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

fn async_rate(mc: &Client, keys: &[String], tasks: usize, seconds: f64) -> f64 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = AsyncClient::new(mc.clone()).unwrap();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let client = client.clone();
                let keys = keys.to_vec();
                tokio::spawn(async move {
                    let mut done = 0usize;
                    while Instant::now() < deadline {
                        let key = &keys[(t * 7919 + done) % keys.len()];
                        let value: Option<Vec<u8>> = client.get(key).await.unwrap();
                        assert!(value.is_some());
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut done = 0;
        for handle in handles {
            done += handle.await.unwrap();
        }
        done as f64 / started.elapsed().as_secs_f64()
    })
}

fn measure(
    mode: Mode,
    server: &Memcached,
    files: &TlsFiles,
    keys: &[String],
    seconds: f64,
) -> Vec<f64> {
    let mc = mode.client(server, files);
    let value = [b'v'; VALUE_LEN];
    let hundred: Vec<&String> = keys.iter().take(100).collect();
    vec![
        rate(seconds, |i| {
            let v: Option<Vec<u8>> = mc.get(&keys[i % keys.len()]).unwrap();
            assert!(v.is_some());
            1
        }),
        rate(seconds, |i| {
            mc.set(&keys[i % keys.len()], &value[..], 0).unwrap();
            1
        }),
        rate(seconds, |_| {
            let found = mc.get_multi::<_, Vec<u8>>(hundred.iter().copied()).unwrap();
            assert_eq!(found.len(), 100);
            100
        }),
        async_rate(&mc, keys, 64, seconds),
        async_rate(&mc, keys, 256, seconds),
    ]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let rounds: usize = arg("--rounds").map_or(Ok(3), |r| r.parse())?;
    let seconds: f64 = arg("--seconds").map_or(Ok(0.5), |s| s.parse())?;
    let files = TlsFiles::generate()?;
    let server = Memcached::builder().tls(&files, ServerCert::Good).start()?;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("bench:{i:09}")).collect();
    let setup = Mode::Direct.client(&server, &files);
    for key in &keys {
        setup.set(key, &[b'v'; VALUE_LEN][..], 0)?;
    }

    if let Some(only) = arg("--only") {
        let mode = MODES
            .into_iter()
            .find(|m| m.name() == only)
            .ok_or("--only direct, shield or tls")?;
        let ops: usize = arg("--ops").map_or(Ok(20_000), |n| n.parse())?;
        let mc = mode.client(&server, &files);
        for i in 0..ops {
            let v: Option<Vec<u8>> = mc.get(&keys[i % KEYS])?;
            assert!(v.is_some());
        }
        return Ok(());
    }

    eprintln!(
        "{} cores; {rounds} rounds of {seconds} s per measurement",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut runs = vec![vec![Vec::new(); TESTS.len()]; MODES.len()];
    for _ in 0..rounds {
        for (m, mode) in MODES.into_iter().enumerate() {
            for (t, value) in measure(mode, &server, &files, &keys, seconds)
                .into_iter()
                .enumerate()
            {
                runs[m][t].push(value);
            }
        }
    }
    println!("| | direct | shield | TLS |");
    println!("|---|---:|---:|---:|");
    for (t, test) in TESTS.iter().enumerate() {
        let direct = median(runs[0][t].clone());
        let cells: Vec<String> = (0..MODES.len())
            .map(|m| {
                let value = median(runs[m][t].clone());
                match m {
                    0 => format!("{value:.0}/s"),
                    _ => format!("{value:.0}/s ({:.2}×)", value / direct),
                }
            })
            .collect();
        println!("| {test} | {} |", cells.join(" | "));
    }
    Ok(())
}
