//! What the fuzz targets (`fuzz/`) found, as tests of the normal suite, and the committed
//! corpus of every target replayed through the same checks on stable Rust.
//!
//! The checks live in `fuzz/src/` (the fuzz crate's library) and are included here by path, so
//! a target and its replay cannot drift apart. Crash inputs are kept in the corpus
//! (`fuzz/corpus/<target>/crash-*`), so replaying the corpus replays every crash found.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

use libmemcached::{Behavior, Client, Distribution, FromValue, Result};

/// Every file of `fuzz/corpus/<target>`, in name order.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

/// Runs `check` on every corpus file of `target`, naming the file that fails.
fn replay(target: &str, mut check: impl FnMut(&[u8])) {
    for (name, data) in corpus(target) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        if let Err(panic) = outcome {
            std::panic::resume_unwind(Box::new(format!(
                "fuzz/corpus/{target}/{name}: {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or(panic.downcast_ref::<&str>().copied())
                    .unwrap_or("panicked")
            )));
        }
    }
}

#[test]
fn server_spec_corpus() {
    replay("server_spec", checks::server_spec::check);
}

#[cfg(feature = "php")]
#[path = "../fuzz/src/php_value.rs"]
mod php_value;

#[cfg(feature = "php")]
#[test]
fn php_value_corpus() {
    replay("php_value", php_value::check);
}

#[test]
fn behavior_corpus() {
    replay("behavior", checks::behavior::check);
}

#[test]
fn config_string_corpus() {
    replay("config_string", checks::config_string::check);
}

#[test]
fn elasticache_corpus() {
    replay("elasticache", checks::elasticache::check);
}

#[test]
fn keys_corpus() {
    let clients = checks::keys::Clients::new();
    replay("keys", |data| checks::keys::check(data, &clients));
}

/// Decoding through a real server: the bytes and flags stored as they are, then read back as
/// each type (the client inflates and decodes them as for any value it reads).
struct ServerDecoder {
    client: Client,
    key: String,
}

impl checks::decode::Decoder for ServerDecoder {
    fn decode<V: FromValue>(&self, data: &[u8], flags: u32) -> Result<V> {
        self.client.set(&self.key, (data, flags), 0)?;
        Ok(self.client.get(&self.key)?.expect("the value just stored"))
    }

    fn max_inflated_len(&self) -> usize {
        checks::decode::MAX_INFLATED_LEN
    }
}

#[test]
fn decode_corpus() {
    let server = common::server();
    let decoder = ServerDecoder {
        client: Client::builder()
            .servers(server.specs())
            .max_inflated_len(checks::decode::MAX_INFLATED_LEN)
            .build()
            .unwrap(),
        key: common::key("decode"),
    };
    replay("decode", |data| checks::decode::check(data, &decoder));
}

#[test]
fn live_corpus() {
    let live = checks::live::Live::start().expect("memcached starts");
    replay("live", |data| checks::live::check(data, &live));
}

// ---- what the targets found ---------------------------------------------------------------

/// config_string: a client and its clone put keys on different servers. A server weight above 1
/// makes libmemcached's clone turn weighted ketama on (`memcached_instance_push`), while the
/// original, whose servers were added before the consistent distribution was set, hashes
/// without weights. Pools clone their client, so pooled clients missed what it wrote.
#[test]
fn clones_place_keys_on_the_same_servers() {
    let builder = || Client::builder().servers(["127.0.0.1:1:2", "127.0.0.1:2", "127.0.0.1:3"]);
    let clients = [
        builder()
            .behavior(Behavior::Distribution(Distribution::Consistent))
            .build()
            .unwrap(),
        builder()
            .behavior(Behavior::Distribution(Distribution::ConsistentKetama))
            .build()
            .unwrap(),
        builder()
            .behavior(Behavior::Distribution(Distribution::ConsistentWeighted))
            .build()
            .unwrap(),
        Client::from_config(
            "--SERVER=127.0.0.1:1/?2 --SERVER=127.0.0.1:2 --DISTRIBUTION=consistent --HASH=MD5",
        )
        .unwrap(),
        {
            let client = builder().build().unwrap();
            client
                .set_behavior(Behavior::Distribution(Distribution::Consistent))
                .unwrap();
            client
        },
    ];
    for (case, client) in clients.into_iter().enumerate() {
        let clone = client.try_clone().unwrap();
        assert_eq!(clone.behaviors(), client.behaviors());
        for i in 0..200 {
            let key = format!("key:{i}");
            assert_eq!(
                clone.server_for_key(&key).unwrap(),
                client.server_for_key(&key).unwrap(),
                "case {case}, {key}"
            );
        }
    }
}

/// config_string: libmemcached aborts the process (an assertion in `update_continuum`) while
/// parsing more than 100 servers with a consistent distribution, in either order; files named
/// by `INCLUDE` or `--CONFIGURE-FILE=` are read with none of the crate's checks; and `DEBUG`
/// makes every later parse in the process print a trace on stderr.
#[test]
fn configurations_libmemcached_would_abort_on_are_refused() {
    let servers: Vec<String> = (0..101)
        .map(|i| format!("--SERVER=10.0.{}.{}:11211", i / 250, i % 250 + 1))
        .collect();
    let servers = servers.join(" ");
    for config in [
        format!("{servers} --DISTRIBUTION=consistent"),
        format!("--distribution=CONSISTENT {servers}"),
        format!("--DISTRIBUTION=consistent,weighted {servers}"),
        "--SERVER=h1 --CONFIGURE-FILE=/etc/hostname".to_owned(),
        "--SERVER=h1 INCLUDE \"/etc/hostname\"".to_owned(),
        "--SERVER=h1 DEBUG".to_owned(),
        "--SERVER=h1 DEBUG#".to_owned(),
    ] {
        let err = Client::from_config(&config).unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
    }
    // A hundred servers are fine, and more without a consistent distribution.
    let hundred: Vec<String> = (0..100)
        .map(|i| format!("--SERVER=10.1.0.{}", i + 1))
        .collect();
    let client = Client::from_config(&format!("{} --DISTRIBUTION=consistent", hundred.join(" ")));
    assert_eq!(client.unwrap().servers().len(), 100);
    assert_eq!(Client::from_config(&servers).unwrap().servers().len(), 101);
    // A host whose name merely contains the word is not a file.
    assert!(Client::from_config("--SERVER=include.example.com").is_ok());
}
