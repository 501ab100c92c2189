//! A tour of the client. Uses the servers in `MEMCACHED_SERVERS`, or starts a memcached of its
//! own when that is not set.
//!
//! ```sh
//! cargo run --example tour
//! MEMCACHED_SERVERS=127.0.0.1:11211 cargo run --example tour
//! ```

use std::time::Duration;

use libmemcached::testing::TestServer;
use libmemcached::{Behavior, Client, Error};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = TestServer::from_env_or_spawn()?;
    let servers = server.specs().to_vec();
    println!(
        "libmemcached {} | servers {servers:?}",
        libmemcached::libmemcached_version()
    );

    for binary in [false, true] {
        let mc = Client::builder()
            .servers(&servers)
            .binary(binary)
            .behavior(Behavior::ConnectTimeout(Duration::from_millis(500)))
            .build()?;
        let protocol = if binary { "binary" } else { "ascii" };
        println!("\n== {protocol} protocol ==");
        let key = |name: &str| format!("tour:{protocol}:{name}");

        mc.set(key("greeting"), "hello", 3600)?;
        let greeting: Option<String> = mc.get(key("greeting"))?;
        println!("set + get             -> {greeting:?}");
        println!(
            "get of a missing key  -> {:?}",
            mc.get::<String>(key("missing"))?
        );
        println!(
            "add, key exists       -> {}",
            mc.add(key("greeting"), "again", 0)?
        );
        println!(
            "replace, key missing  -> {}",
            mc.replace(key("missing"), "x", 0)?
        );
        mc.append(key("greeting"), ", world")?;
        let (value, token) = mc.gets::<String>(key("greeting"))?.expect("just stored");
        println!("append + gets         -> {value:?} (cas {token})");
        println!(
            "cas with that token   -> {}",
            mc.cas(key("greeting"), "bye", token, 0)?
        );
        println!(
            "cas with it again     -> {}",
            mc.cas(key("greeting"), "no", token, 0)?
        );

        mc.set(key("hits"), 41u64, 0)?;
        println!("incr                  -> {}", mc.incr(key("hits"), 1)?);
        match mc.incr(key("no-counter"), 1) {
            Err(Error::NotFound { .. }) => println!("incr of a missing key -> NotFound"),
            other => println!("incr of a missing key -> {other:?}"),
        }
        mc.delete(key("new-counter"))?;
        println!(
            "incr_with_initial     -> {}",
            mc.incr_with_initial(key("new-counter"), 1, 100, 0)?
        );
        println!(
            "touch                 -> {}",
            mc.touch(key("hits"), Duration::from_secs(60))?
        );
        println!("delete                -> {}", mc.delete(key("hits"))?);
        println!(
            "server for a key      -> {}",
            mc.server_for_key(key("greeting"))?
        );

        // Bad input is an error before anything is sent, and the client carries on. (Binary
        // keys may hold any byte, spaces included.)
        println!(
            "a key with a space    -> {}",
            describe(mc.get::<String>("two words"))
        );
        let too_big = vec![0u8; 2 << 20];
        println!(
            "a 2 MiB value         -> {}",
            describe(mc.set(key("big"), &too_big, 0))
        );
        println!(
            "still fine            -> {:?}",
            mc.get::<String>(key("greeting"))?
        );
        let m = mc.metrics();
        println!(
            "client metrics        -> {} calls, {} hits, {} misses, {} bytes out, {} in, \
             errors {:?}",
            m.operations,
            m.hits,
            m.misses,
            m.bytes_sent,
            m.bytes_received,
            m.errors.iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>()
        );
    }

    let mc = Client::new(&servers)?;
    for (server, version) in mc.version()? {
        println!("\nserver {server} runs memcached {version}");
    }
    let dead = Client::builder()
        .servers(["127.0.0.1:9"])
        .behavior(Behavior::ConnectTimeout(Duration::from_millis(200)))
        .build()?;
    println!(
        "a server that is down -> {}",
        describe(dead.get::<String>("k"))
    );
    for server in dead.metrics().servers {
        println!(
            "  its metrics         -> {}: failing {}, errors {:?}",
            server.address,
            server.failing,
            server
                .errors
                .iter()
                .filter(|(_, n)| *n > 0)
                .collect::<Vec<_>>()
        );
    }
    println!(
        "a malformed spec      -> {}",
        describe(Client::new(["[::1:11211"]))
    );
    Ok(())
}

fn describe<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Ok(value) => format!("Ok({value:?})"),
        Err(err) => format!("Err: {err}"),
    }
}
