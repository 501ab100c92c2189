//! An axum service that reads through the cache: `GET /user/{id}` answers from memcached when it
//! can, and otherwise loads the user from a (slow, pretend) database and caches it, with
//! `get_or_set_with`: concurrent requests for a user not cached load it once. Concurrent
//! requests' gets are merged into multi-gets by `AsyncClient`; `GET /stats` shows how.
//!
//! The example starts a memcached of its own (or uses `MEMCACHED_SERVERS`), serves on a free
//! loopback port, sends a few requests to itself over plain TCP, prints the answers and exits.
//!
//! ```sh
//! cargo run --features async --example async_axum
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use libmemcached::testing::TestServer;
use libmemcached::{AsyncClient, Client, LoadError, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The handler: the cache first; on a miss, the database, once for all the requests that
/// missed together.
async fn user(
    State(mc): State<AsyncClient>,
    Path(id): Path<u32>,
) -> Result<String, (StatusCode, String)> {
    let key = format!("user:{id}");
    match mc.get_or_set_with(&key, 300, || load_user(id)).await {
        Ok(user) => {
            if let Some(error) = &user.cache_error {
                eprintln!("cache error, read the database: {error}");
            }
            let from = match user.source {
                Source::Cache => "cache",
                _ => "database",
            };
            Ok(format!("user {id}: {} ({from})\n", user.value))
        }
        Err(LoadError::Loader(_)) => Err((StatusCode::NOT_FOUND, "no such user\n".into())),
        Err(error) => Err((StatusCode::BAD_REQUEST, format!("{error:?}\n"))),
    }
}

/// What the pretend database says of an id it does not know.
#[derive(Debug)]
struct NoSuchUser;

/// Database reads so far.
static LOADS: AtomicUsize = AtomicUsize::new(0);

/// A pretend database: slow, and knows users 1 to 100.
async fn load_user(id: u32) -> Result<String, NoSuchUser> {
    LOADS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    match id {
        1..=100 => Ok(format!("user-{id:03}")),
        _ => Err(NoSuchUser),
    }
}

async fn stats(State(mc): State<AsyncClient>) -> String {
    let s = mc.engine_stats();
    format!(
        "{} gets in {} multi-gets ({:.1} keys each), {} requests served\n",
        s.gets,
        s.batches,
        s.mean_batch_keys(),
        s.requests
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = TestServer::from_env_or_spawn()?;
    let client = Client::builder()
        .servers(server.specs())
        .namespace(format!("async-axum-{}:", std::process::id()))
        .build()?;
    let mc = AsyncClient::new(client)?;

    let app = Router::new()
        .route("/user/{id}", get(user))
        .route("/stats", get(stats))
        .with_state(mc);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    println!("serving on http://{address}");
    let service = tokio::spawn(async move { axum::serve(listener, app).await });

    // The first read of a user misses and goes to the database; the second is a hit.
    for path in ["/user/7", "/user/7", "/user/404"] {
        let (status, body) = http_get(address, path).await?;
        print!("GET {path} -> {status}: {body}");
    }
    // Fifty concurrent requests for ten users: their gets share multi-gets.
    for id in 1..=10 {
        http_get(address, &format!("/user/{id}")).await?;
    }
    let requests: Vec<_> = (0..50)
        .map(|i| tokio::spawn(http_get(address, format!("/user/{}", i % 10 + 1))))
        .collect();
    let mut hits = 0;
    for request in requests {
        let (status, body) = request.await??;
        assert_eq!(status, 200, "{body}");
        hits += usize::from(body.ends_with("(cache)\n"));
    }
    println!("50 concurrent requests: {hits} answered from the cache");
    // Twenty concurrent requests for a user not cached yet: one database read.
    let before = LOADS.load(Ordering::SeqCst);
    let requests: Vec<_> = (0..20)
        .map(|_| tokio::spawn(http_get(address, "/user/42".to_owned())))
        .collect();
    for request in requests {
        let (status, body) = request.await??;
        assert_eq!(status, 200, "{body}");
    }
    let loads = LOADS.load(Ordering::SeqCst) - before;
    println!("20 concurrent requests for a user not cached: {loads} database read(s)");
    let (_, body) = http_get(address, "/stats").await?;
    print!("GET /stats -> {body}");

    service.abort();
    Ok(())
}

/// A minimal HTTP/1.1 GET over loopback: the status code and the body.
async fn http_get(
    address: std::net::SocketAddr,
    path: impl AsRef<str>,
) -> Result<(u16, String), std::io::Error> {
    let mut stream = TcpStream::connect(address).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n",
        path.as_ref()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}
