//! `AsyncClient` in a plain tokio program: single calls, many concurrent tasks whose gets are
//! merged into multi-gets, a timeout around a call, and the engine's counters. Uses the servers
//! in `MEMCACHED_SERVERS`, or starts a memcached of its own when that is not set.
//!
//! ```sh
//! cargo run --features async --example async_tokio
//! ```

use std::time::Duration;

use libmemcached::testing::TestServer;
use libmemcached::{AsyncClient, Client, Compression};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = TestServer::from_env_or_spawn()?;
    // Configure a blocking client as usual; the async one serves calls with clones of it.
    let client = Client::builder()
        .servers(server.specs())
        .namespace(format!("async-tokio-{}:", std::process::id()))
        .compression(Compression::new(1024))
        .build()?;
    let mc = AsyncClient::builder(client).workers(2).build()?;

    mc.set("greeting", "hello", 60).await?;
    let greeting: Option<String> = mc.get("greeting").await?;
    println!("greeting = {greeting:?}");
    println!("added again: {}", mc.add("greeting", "again", 60).await?);
    println!("hits = {}", mc.incr_with_initial("hits", 1, 42, 0).await?);

    // A thousand tasks, each storing and reading back a value of its own.
    let items: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("item:{i}"), format!("value of item {i}")))
        .collect();
    mc.set_multi(items.clone(), 300).await?;
    let tasks: Vec<_> = items
        .into_iter()
        .map(|(key, expected)| {
            let mc = mc.clone();
            tokio::spawn(async move {
                let value: Option<String> = mc.get(&key).await?;
                assert_eq!(value.as_ref(), Some(&expected), "{key}");
                Ok::<_, libmemcached::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let stats = mc.engine_stats();
    println!(
        "1000 concurrent gets took {} multi-gets ({:.1} keys each, {} at most)",
        stats.batches,
        stats.mean_batch_keys(),
        stats.max_batch_keys
    );

    // A timeout around a call is safe: the worker finishes the call and drops the answer.
    // (A zero timeout queues the call, then gives up on it.)
    match tokio::time::timeout(Duration::ZERO, mc.set("greeting", "hi", 60)).await {
        Ok(result) => println!("done in no time: {result:?}"),
        Err(_) => println!("timed out; the set may still happen, and no reply goes astray"),
    }
    let again: Option<String> = mc.get("greeting").await?;
    println!("greeting again = {again:?}");

    let big = "compressible text ".repeat(1000);
    mc.set("big", &big, 60).await?;
    let back: Option<String> = mc.get("big").await?;
    println!(
        "{} bytes stored compressed, read back intact: {}",
        big.len(),
        back == Some(big)
    );

    for (server, version) in mc.version().await? {
        println!("{server} runs memcached {version}");
    }
    println!("{:#?}", mc.engine_stats());
    Ok(())
}
