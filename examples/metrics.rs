//! A pool's metrics in Prometheus' text format, as a service would serve them on `/metrics`.
//! Eight threads share a pool against two servers; one server is killed half-way, so the
//! errors and the failing server show. Starts its own memcached processes.
//!
//! ```sh
//! cargo run --example metrics
//! ```

use std::fmt::Write;
use std::time::Duration;

use libmemcached::testing::Memcached;
use libmemcached::{Behavior, Client, ClientPool, Metrics};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let live = Memcached::start()?;
    let mut doomed = Memcached::start()?;
    let client = Client::builder()
        .servers([live.spec(), doomed.spec()])
        .behavior(Behavior::ConnectTimeout(Duration::from_millis(200)))
        .build()?;
    let pool = ClientPool::new(client, 4)?;

    let work = |round: usize| {
        std::thread::scope(|s| {
            for t in 0..8 {
                let pool = &pool;
                s.spawn(move || {
                    let mc = pool.reserve().expect("a pooled client");
                    for i in 0..50 {
                        let key = format!("metrics:{t}:{i}");
                        // Errors are counted; the example only shows them.
                        let _ = mc.set(&key, round.to_string(), 0);
                        let _ = mc.get::<String>(&key);
                        let _ = mc.get::<String>(format!("{key}:never-set"));
                    }
                });
            }
        });
    };
    work(1);
    doomed.stop();
    work(2);

    print!("{}", prometheus(&pool.metrics()));
    Ok(())
}

/// The metrics in Prometheus' text exposition format.
fn prometheus(m: &Metrics) -> String {
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter("memcached_operations_total", "Calls made.", m.operations);
    counter("memcached_hits_total", "Keys found.", m.hits);
    counter(
        "memcached_misses_total",
        "Keys the servers did not have.",
        m.misses,
    );
    counter(
        "memcached_sent_bytes_total",
        "Value bytes sent.",
        m.bytes_sent,
    );
    counter(
        "memcached_received_bytes_total",
        "Value bytes received.",
        m.bytes_received,
    );
    out.push_str("# HELP memcached_errors_total Failed calls by kind.\n");
    out.push_str("# TYPE memcached_errors_total counter\n");
    for (kind, n) in m.errors.iter() {
        let _ = writeln!(out, "memcached_errors_total{{kind=\"{kind}\"}} {n}");
    }
    out.push_str("# HELP memcached_server_errors_total Failures by server and kind.\n");
    out.push_str("# TYPE memcached_server_errors_total counter\n");
    for server in &m.servers {
        for (kind, n) in server.errors.iter().filter(|(_, n)| *n > 0) {
            let address = &server.address;
            let _ = writeln!(
                out,
                "memcached_server_errors_total{{server=\"{address}\",kind=\"{kind}\"}} {n}"
            );
        }
    }
    out.push_str("# HELP memcached_server_failing Whether a server is failing now.\n");
    out.push_str("# TYPE memcached_server_failing gauge\n");
    for server in &m.servers {
        let (address, failing) = (&server.address, u8::from(server.failing));
        let _ = writeln!(
            out,
            "memcached_server_failing{{server=\"{address}\"}} {failing}"
        );
    }
    out
}
