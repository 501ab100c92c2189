//! A three-server cluster with `ClientBuilder::failover()`. A loop reads and writes the keys that
//! live on one of the servers; that server is killed while the loop runs, and restarted once its
//! keys have moved. The timeline shows what the client sees: connection errors for a moment,
//! then the keys served (empty at first) by the other servers, then the server back in the ring.
//!
//! It always starts its own three memcached processes (it has to be able to kill one), so it
//! needs Debian's `memcached` package whatever `MEMCACHED_SERVERS` says.
//!
//! ```sh
//! cargo run --example failover
//! ```

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use libmemcached::testing::Memcached;
use libmemcached::{Behavior, Client};

/// How long a removed server stays out of the ring (60 s by default; short to keep this quick).
const DEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Every phase is bounded, so the example ends even if something goes wrong.
const PHASE_LIMIT: Duration = Duration::from_secs(15);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut servers = [
        Memcached::start()?,
        Memcached::start()?,
        Memcached::start()?,
    ];
    let specs: Vec<String> = servers.iter().map(Memcached::spec).collect();
    let victim = specs[2].clone();
    let mc = Client::builder()
        .servers(&specs)
        .failover() // ketama, remove failed servers, failure limit 2, retry timeout 1 s
        .behavior(Behavior::DeadTimeout(DEAD_TIMEOUT))
        .build()?;
    for spec in &specs {
        println!("server {}", name(spec, &specs));
    }
    println!("C will be killed; the loop reads and writes 20 of its keys");

    // Twenty keys that live on the victim, and one that lives elsewhere as a control.
    let mut keys = Vec::new();
    let mut control = None;
    for i in 0.. {
        let key = format!("failover:{i}");
        if mc.server_for_key(&key)?.to_string() == victim {
            keys.push(key);
        } else if control.is_none() {
            control = Some(key);
        }
        if keys.len() == 20 && control.is_some() {
            break;
        }
    }
    let control = control.expect("found above");

    let mut timeline = Timeline::new();
    let mut control_errors = 0;
    let mut phase = Phase::Healthy;
    let mut phase_start = Instant::now();
    let mut last_error = None::<Instant>;
    let mut served_again = None::<Instant>;
    let mut back_on_victim = HashSet::new();
    let mut rerouted: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    let mut op = 0usize;
    loop {
        let key = &keys[op % keys.len()];
        op += 1;
        // A get (hit or miss), then a set: misses show where keys moved to an empty server.
        let server = mc.server_for_key(key)?.to_string();
        let result = mc
            .get::<usize>(key)
            .and_then(|v| mc.set(key, op, 0).map(|()| v));
        let on = if server == victim {
            "C, its own server"
        } else {
            if result.is_ok() {
                rerouted
                    .entry(name(&server, &specs))
                    .or_default()
                    .insert(key.clone());
            }
            "A or B (rerouted)"
        };
        let outcome = match result {
            Ok(Some(_)) => format!("hit  on {on}"),
            Ok(None) => format!("miss on {on}: not there yet"),
            Err(err) => {
                last_error = Some(Instant::now());
                let code = err.code().map_or("-".to_owned(), |c| format!("{c:?}"));
                format!("error {code} (is_connection: {})", err.is_connection())
            }
        };
        timeline.record(&outcome);
        if mc.set(&control, op, 0).is_err() {
            control_errors += 1;
        }

        let elapsed = phase_start.elapsed();
        match phase {
            Phase::Healthy if elapsed > Duration::from_millis(500) => {
                servers[2].stop();
                timeline.mark(&format!("killed {}", name(&victim, &specs)));
                (phase, phase_start) = (Phase::Killed, Instant::now());
            }
            // Rerouted: errors came and have stopped for a second.
            Phase::Killed
                if last_error.is_some_and(|at| at > phase_start && at.elapsed().as_secs() >= 1) =>
            {
                servers[2].restart()?;
                timeline.mark(&format!(
                    "restarted {}: empty, and out of the ring until the dead timeout ends",
                    name(&victim, &specs)
                ));
                (phase, phase_start) = (Phase::Restarted, Instant::now());
            }
            // Back in the ring after the dead timeout: its keys go to it again.
            Phase::Restarted if server == victim => {
                back_on_victim.insert(key.clone());
                let at = *served_again.get_or_insert_with(Instant::now);
                if back_on_victim.len() == keys.len() && at.elapsed() > Duration::from_millis(300) {
                    break;
                }
            }
            _ if elapsed > PHASE_LIMIT => {
                timeline.finish();
                return Err(format!("stuck in {phase:?} for {PHASE_LIMIT:?}").into());
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    timeline.finish();
    println!();
    for (server, keys) in &rerouted {
        println!(
            "while C was out, {} of its keys lived on {server}",
            keys.len()
        );
    }
    println!(
        "the control key on another server: {control_errors} errors in {op} writes; \
         only the dead server's keys ever failed"
    );
    Ok(())
}

#[derive(Debug)]
enum Phase {
    Healthy,
    Killed,
    Restarted,
}

/// "server A/B/C (host:port)"
fn name(server: &str, specs: &[String]) -> String {
    let letter = specs
        .iter()
        .position(|s| s == server)
        .map_or('?', |i| (b'A' + i as u8) as char);
    format!("{letter} ({server})")
}

/// Consecutive operations with the same outcome become one line: when, how many, what.
struct Timeline {
    start: Instant,
    run: Option<(String, Duration, Duration, usize)>,
}

impl Timeline {
    fn new() -> Timeline {
        println!("\n   from      to       ops  outcome");
        Timeline {
            start: Instant::now(),
            run: None,
        }
    }

    fn record(&mut self, outcome: &str) {
        let now = self.start.elapsed();
        match &mut self.run {
            Some((what, _, last, count)) if what == outcome => {
                *last = now;
                *count += 1;
            }
            _ => {
                self.flush();
                self.run = Some((outcome.to_owned(), now, now, 1));
            }
        }
    }

    fn mark(&mut self, event: &str) {
        self.flush();
        println!("{:>7.2}s  ---- {event}", self.start.elapsed().as_secs_f64());
    }

    fn flush(&mut self) {
        if let Some((what, first, last, count)) = self.run.take() {
            println!(
                "{:>7.2}s {:>7.2}s {count:>6}  {what}",
                first.as_secs_f64(),
                last.as_secs_f64()
            );
        }
    }

    fn finish(&mut self) {
        self.flush();
    }
}
