//! The operator's commands that watch a cluster: `analyze`, `top` and `load`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use libmemcached::{Client, ServerStats};
use serde_json::json;

use crate::args::{Load, Top};
use crate::output::write_json;
use crate::{Outcome, Status, usage};

/// The counters `analyze` and `top` read, for one server.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    gets: u64,
    sets: u64,
    hits: u64,
    evictions: u64,
    items: u64,
    bytes: u64,
    limit: u64,
    connections: u64,
    uptime: u64,
}

impl Counters {
    fn of(stats: &ServerStats) -> Counters {
        Counters {
            gets: stats.cmd_get().unwrap_or(0),
            sets: stats.cmd_set().unwrap_or(0),
            hits: stats.get_hits().unwrap_or(0),
            evictions: stats.evictions().unwrap_or(0),
            items: stats.curr_items().unwrap_or(0),
            bytes: stats.bytes().unwrap_or(0),
            limit: stats.limit_maxbytes().unwrap_or(0),
            connections: stats.curr_connections().unwrap_or(0),
            uptime: stats.uptime().unwrap_or(0),
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// What `memcstat --analyze` reports, for the whole cluster.
pub fn analyze(mc: &Client, json: bool, out: &mut dyn Write) -> Outcome {
    let stats = mc.stats(None)?;
    let servers: Vec<(String, Counters)> = stats
        .iter()
        .map(|s| (s.server().to_string(), Counters::of(s)))
        .collect();
    // A round trip per server, on the client's own connections.
    let mut trips = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        mc.stats(Some("settings"))?;
        trips.push(started.elapsed());
    }
    trips.sort();
    let trip_ms = trips[trips.len() / 2].as_secs_f64() * 1000.0;
    let total = servers
        .iter()
        .fold(Counters::default(), |t, (_, c)| Counters {
            gets: t.gets.saturating_add(c.gets),
            sets: t.sets.saturating_add(c.sets),
            hits: t.hits.saturating_add(c.hits),
            evictions: t.evictions.saturating_add(c.evictions),
            items: t.items.saturating_add(c.items),
            bytes: t.bytes.saturating_add(c.bytes),
            limit: t.limit.saturating_add(c.limit),
            connections: t.connections.saturating_add(c.connections),
            uptime: t.uptime.max(c.uptime),
        });
    let pick = |f: &dyn Fn(&Counters) -> f64| {
        servers
            .iter()
            .max_by(|a, b| f(&a.1).total_cmp(&f(&b.1)))
            .map(|(s, c)| (s.clone(), f(c)))
            .unwrap_or_default()
    };
    let busiest = pick(&|c| c.gets.saturating_add(c.sets) as f64);
    let fullest = pick(&|c| ratio(c.bytes, c.limit));
    let evicting = pick(&|c| c.evictions as f64);
    let oldest = pick(&|c| c.uptime as f64);
    let hit_ratio = ratio(total.hits, total.gets);
    let average_item = ratio(total.bytes, total.items);
    if json {
        write_json(
            out,
            &json!({
                "servers": servers.len(),
                "hit_ratio": hit_ratio,
                "items": total.items,
                "average_item_bytes": average_item,
                "bytes": total.bytes,
                "capacity_bytes": total.limit,
                "evictions": total.evictions,
                "connections": total.connections,
                "busiest": { "server": busiest.0, "ops": busiest.1 },
                "fullest": { "server": fullest.0, "used": fullest.1 },
                "most_evictions": { "server": evicting.0, "evictions": evicting.1 },
                "oldest": { "server": oldest.0, "uptime_s": oldest.1 },
                "round_trip_ms": trip_ms,
            }),
        )?;
        return Ok(Status::Ok);
    }
    writeln!(out, "Servers analyzed:       {}", servers.len())?;
    writeln!(out, "Hit ratio:              {:.1} %", 100.0 * hit_ratio)?;
    writeln!(out, "Items:                  {}", total.items)?;
    writeln!(out, "Average item size:      {average_item:.0} bytes")?;
    writeln!(
        out,
        "Memory used:            {} of {} ({:.1} %)",
        mib(total.bytes),
        mib(total.limit),
        100.0 * ratio(total.bytes, total.limit)
    )?;
    writeln!(out, "Evictions:              {}", total.evictions)?;
    writeln!(out, "Connections:            {}", total.connections)?;
    writeln!(
        out,
        "Busiest server:         {} ({} ops)",
        busiest.0, busiest.1
    )?;
    writeln!(
        out,
        "Fullest server:         {} ({:.1} % of its memory)",
        fullest.0,
        100.0 * fullest.1
    )?;
    writeln!(
        out,
        "Most evictions:         {} ({})",
        evicting.0, evicting.1
    )?;
    writeln!(
        out,
        "Oldest server:          {} (up {} s)",
        oldest.0, oldest.1
    )?;
    writeln!(out, "Round trip (stats):     {trip_ms:.2} ms")?;
    Ok(Status::Ok)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A per-server view every `interval`: a screen redrawn in a terminal, plain lines otherwise.
pub fn top(mc: &Client, top: &Top, json: bool, out: &mut dyn Write) -> Outcome {
    if !(top.interval > 0.0 && top.interval <= 3600.0) {
        return Err(usage("--interval takes seconds above 0, at most 3600"));
    }
    let interval = Duration::from_secs_f64(top.interval);
    let screen = !json && std::io::stdout().is_terminal();
    let read = |mc: &Client| -> Result<Vec<(String, Counters)>, crate::Failure> {
        Ok(mc
            .stats(None)?
            .iter()
            .map(|s| (s.server().to_string(), Counters::of(s)))
            .collect())
    };
    let mut before = read(mc)?;
    let mut last = Instant::now();
    let mut frames = 0;
    while top.count.is_none_or(|n| frames < n) {
        std::thread::sleep(interval);
        let now = read(mc)?;
        let secs = last.elapsed().as_secs_f64();
        last = Instant::now();
        frames += 1;
        if screen {
            // Clear the screen and go home.
            write!(out, "\x1b[2J\x1b[H")?;
            writeln!(
                out,
                "{:<24} {:>9} {:>7} {:>9} {:>6} {:>21}",
                "server", "ops/s", "hit %", "evicted/s", "conns", "memory"
            )?;
        }
        for ((server, c), (_, b)) in now.iter().zip(&before) {
            let ops = (c.gets.saturating_add(c.sets)).saturating_sub(b.gets.saturating_add(b.sets))
                as f64
                / secs;
            let gets = c.gets.saturating_sub(b.gets);
            let hit = 100.0 * ratio(c.hits.saturating_sub(b.hits), gets);
            let evicted = c.evictions.saturating_sub(b.evictions) as f64 / secs;
            if json {
                write_json(
                    out,
                    &json!({ "server": server, "ops_per_sec": ops, "hit_percent": hit,
                            "evictions_per_sec": evicted, "connections": c.connections,
                            "bytes": c.bytes, "limit_bytes": c.limit }),
                )?;
            } else if screen {
                writeln!(
                    out,
                    "{server:<24} {ops:>9.0} {hit:>7.1} {evicted:>9.1} {:>6} {:>21}",
                    c.connections,
                    format!("{} / {}", mib(c.bytes), mib(c.limit))
                )?;
            } else {
                writeln!(
                    out,
                    "{server} ops/s={ops:.0} hit%={hit:.1} evictions/s={evicted:.1} conns={} bytes={} limit={}",
                    c.connections, c.bytes, c.limit
                )?;
            }
        }
        out.flush()?;
        before = now;
    }
    Ok(Status::Ok)
}

/// The most distinct keys `load` uses (made up as needed, so memory does not grow with them).
pub const MAX_LOAD_KEYS: u64 = 10_000_000;
/// The largest value `load` stores: memcached's default item size limit.
pub const MAX_LOAD_VALUE: u64 = 1024 * 1024;

/// Runs a get/set mix from `concurrency` threads, each with its own client, and prints the rate
/// and latency percentiles. `duration` bounds the whole command: storing the keys first (so gets
/// measure hits) takes at most half of it, and stops where it got to when that is up.
pub fn load(mc: &Client, load: &Load, json: bool, out: &mut dyn Write) -> Outcome {
    let started = Instant::now();
    if !(load.duration > 0.0 && load.duration <= 86_400.0) {
        return Err(usage("--duration takes seconds above 0, at most a day"));
    }
    if load.get_percent > 100 || load.concurrency == 0 || load.concurrency > 1024 {
        return Err(usage("--get-percent is 0 to 100; --concurrency 1 to 1024"));
    }
    if !(1..=MAX_LOAD_KEYS).contains(&load.keys) || !(1..=250).contains(&load.key_size) {
        return Err(usage(format!(
            "--keys takes 1 to {MAX_LOAD_KEYS}; --key-size 1 to 250"
        )));
    }
    if load.value_size > MAX_LOAD_VALUE {
        return Err(usage(format!(
            "--value-size takes 0 to {MAX_LOAD_VALUE} (memcached's default item size limit)"
        )));
    }
    let width = load.key_size as usize;
    let key = move |i: u64| {
        let base = format!("memc-load:{i}");
        match base.len() >= width {
            true => base[base.len() - width..].to_owned(),
            false => format!("{}{base}", "_".repeat(width - base.len())),
        }
    };
    let value = vec![b'v'; load.value_size as usize];
    let duration = Duration::from_secs_f64(load.duration);
    let deadline = started + duration;
    // About 1 MiB of values per call, so each call ends soon after the time is up.
    let per_call = (MAX_LOAD_VALUE / load.value_size.max(1)).clamp(1, 1000);
    let mut stored = 0;
    while stored < load.keys && started.elapsed() < duration / 2 {
        let end = (stored + per_call).min(load.keys);
        let keys: Vec<String> = (stored..end).map(key).collect();
        mc.set_multi(keys.iter().map(|k| (k.as_str(), &value[..])), 0)?;
        stored = end;
    }
    let measured = Instant::now();
    let remaining = deadline.saturating_duration_since(measured);
    let results: Vec<Result<Tally, libmemcached::Error>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..load.concurrency)
            .map(|t| {
                let (key, value) = (&key, &value);
                let mc = mc.try_clone();
                s.spawn(move || -> Result<Tally, libmemcached::Error> {
                    let mix = Mix {
                        keys: load.keys,
                        key,
                        value,
                        get_percent: load.get_percent,
                    };
                    run_worker(&mc?, &mix, remaining, t + 1)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Ok(Tally::default())))
            .collect()
    });
    let secs = measured.elapsed().as_secs_f64();
    let mut total = Tally::default();
    for result in results {
        total.merge(result?);
    }
    let ops = total.latencies.count();
    let rate = if secs > 0.0 { ops as f64 / secs } else { 0.0 };
    let pct = |p: f64| total.latencies.percentile(p).as_secs_f64() * 1000.0;
    let (p50, p99, p999) = (pct(0.5), pct(0.99), pct(0.999));
    if json {
        write_json(
            out,
            &json!({ "ops": ops, "ops_per_sec": rate, "seconds": secs, "gets": total.gets,
                     "hits": total.hits, "sets": total.sets, "errors": total.errors,
                     "keys_stored_first": stored, "p50_ms": p50, "p99_ms": p99, "p999_ms": p999 }),
        )?;
    } else {
        writeln!(
            out,
            "{ops} ops in {secs:.1} s: {rate:.0} ops/s ({} gets, {} hits, {} sets, {} errors)",
            total.gets, total.hits, total.sets, total.errors
        )?;
        writeln!(
            out,
            "latency p50 {p50:.3} ms  p99 {p99:.3} ms  p999 {p999:.3} ms"
        )?;
        if stored < load.keys {
            writeln!(
                out,
                "{stored} of {} keys stored in half the duration (gets of the rest miss)",
                load.keys
            )?;
        }
    }
    Ok(Status::Ok)
}

/// What each `load` worker does: which keys, what value, how many gets.
struct Mix<'a> {
    keys: u64,
    key: &'a (dyn Fn(u64) -> String + Sync),
    value: &'a [u8],
    get_percent: u64,
}

#[derive(Default)]
struct Tally {
    gets: u64,
    hits: u64,
    sets: u64,
    errors: u64,
    latencies: Histogram,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.gets += other.gets;
        self.hits += other.hits;
        self.sets += other.sets;
        self.errors += other.errors;
        self.latencies.merge(&other.latencies);
    }
}

/// Latencies in fixed memory, however long the run: 1 µs buckets below 10 ms, 100 µs buckets
/// below 1 s, one bucket beyond.
struct Histogram {
    counts: Vec<u64>,
}

const FINE: u64 = 10_000; // µs
const COARSE: u64 = 1_000_000; // µs

impl Default for Histogram {
    fn default() -> Self {
        let buckets = FINE + (COARSE - FINE) / 100 + 1;
        Histogram {
            counts: vec![0; buckets as usize],
        }
    }
}

impl Histogram {
    fn record(&mut self, latency: Duration) {
        let us = latency.as_micros().min(u128::from(COARSE)) as u64;
        let bucket = match us < FINE {
            true => us,
            false => FINE + (us - FINE) / 100,
        };
        self.counts[bucket as usize] += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The latency under which a share `p` of operations finished (a bucket's upper edge).
    fn percentile(&self, p: f64) -> Duration {
        let wanted = ((self.count() as f64 * p).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                let bucket = bucket as u64;
                let us = match bucket < FINE {
                    true => bucket + 1,
                    false => FINE + (bucket - FINE + 1) * 100,
                };
                return Duration::from_micros(us);
            }
        }
        Duration::ZERO
    }
}

fn run_worker(
    mc: &Client,
    mix: &Mix,
    duration: Duration,
    seed: u64,
) -> Result<Tally, libmemcached::Error> {
    let mut tally = Tally::default();
    // xorshift: cheap, and the same mix on every run.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let started = Instant::now();
    while started.elapsed() < duration {
        let key = (mix.key)(next() % mix.keys);
        let get = next() % 100 < mix.get_percent;
        let t = Instant::now();
        let ok = if get {
            tally.gets += 1;
            match mc.get::<Vec<u8>>(&key) {
                Ok(found) => {
                    tally.hits += u64::from(found.is_some());
                    true
                }
                Err(_) => false,
            }
        } else {
            tally.sets += 1;
            mc.set(&key, mix.value, 0).is_ok()
        };
        tally.latencies.record(t.elapsed());
        tally.errors += u64::from(!ok);
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_buckets() {
        let mut h = Histogram::default();
        for us in 1..=1000 {
            h.record(Duration::from_micros(us));
        }
        h.record(Duration::from_secs(5));
        assert_eq!(h.count(), 1001);
        assert_eq!(h.percentile(0.5), Duration::from_micros(502));
        assert_eq!(h.percentile(0.999), Duration::from_micros(1001));
        assert!(
            h.percentile(1.0) >= Duration::from_secs(1),
            "the slowest is in the last bucket"
        );
        let mut coarse = Histogram::default();
        coarse.record(Duration::from_micros(12_345));
        assert_eq!(coarse.percentile(0.5), Duration::from_micros(12_400));
    }
}
