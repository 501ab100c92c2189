//! Loading many items: one `set` per item, `set_multi`, and `bulk_set`, timed on the same items.
//!
//! - `set` waits for each answer: one round trip per item.
//! - `set_multi` sends every item and reads every answer, and returns the keys not stored.
//! - `bulk_set` sends `noreply` writes a buffer at a time over a second connection and then
//!   checks that each connection is still in step: the fastest, for loads whose per-item result
//!   you do not need.
//!
//! Uses the servers in `MEMCACHED_SERVERS`, or starts a memcached of its own when that is not set.
//!
//! ```sh
//! cargo run --release --example bulk_load -- [ITEMS]   # 20 000 by default
//! ```

use std::collections::HashMap;
use std::time::Instant;

use libmemcached::Client;
use libmemcached::testing::TestServer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let items: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 20_000,
    };
    let server = TestServer::from_env_or_spawn()?;
    let mc = Client::new(server.specs())?;
    let value = "v".repeat(100);
    println!(
        "{items} items of {} bytes to {:?}",
        value.len(),
        server.specs()
    );

    let key = |method: &str, i: usize| format!("bulk-example:{method}:{i}");
    let mut timings = Vec::new();

    let start = Instant::now();
    for i in 0..items {
        mc.set(key("set", i), &value, 300)?;
    }
    timings.push(("set, one by one", start.elapsed()));

    let start = Instant::now();
    let not_stored = mc.set_multi((0..items).map(|i| (key("set_multi", i), &value)), 300)?;
    timings.push(("set_multi", start.elapsed()));
    assert!(not_stored.is_empty(), "set_multi stored every item");

    let start = Instant::now();
    mc.bulk_set((0..items).map(|i| (key("bulk_set", i), &value)), 300)?;
    timings.push(("bulk_set", start.elapsed()));

    let slowest = timings[0].1;
    println!(
        "\n{:<16} {:>10} {:>12} {:>8}",
        "method", "time", "items/s", "speed"
    );
    for (method, took) in &timings {
        println!(
            "{method:<16} {:>10.2?} {:>12.0} {:>7.1}x",
            took,
            items as f64 / took.as_secs_f64(),
            slowest.as_secs_f64() / took.as_secs_f64().max(1e-9)
        );
    }

    // Every method stored every item: read a sample of each back.
    for method in ["set", "set_multi", "bulk_set"] {
        let sample: Vec<String> = (0..items)
            .step_by(items.div_ceil(1000).max(1))
            .map(|i| key(method, i))
            .collect();
        let found: HashMap<&str, String> = mc.get_multi(sample.iter().map(String::as_str))?;
        println!(
            "{method}: {} of {} sampled keys read back",
            found.len(),
            sample.len()
        );
        assert_eq!(found.len(), sample.len());
    }
    Ok(())
}
