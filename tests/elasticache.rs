//! ElastiCache auto-discovery: a configuration endpoint written here (a loopback listener that
//! answers `config get cluster` as ElastiCache does) pointing at real memcached nodes, and the
//! `AmazonElastiCache:cluster` key fallback against a real memcached.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libmemcached::elasticache::{self, CONFIG_KEY};
use libmemcached::{Client, Error};

enum Reply {
    Send(Vec<u8>),
    /// Say nothing and keep the connection open.
    Silence,
    Close,
}

/// A configuration endpoint on a loopback port, answering each request line with `reply`.
struct FakeEndpoint {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeEndpoint {
    fn start(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> FakeEndpoint {
        let listener = common::listener();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let reply = Arc::new(reply);
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let reply = Arc::clone(&reply);
                    std::thread::spawn(move || serve(stream, &*reply));
                }
            })
        };
        FakeEndpoint {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers `config get cluster` with `reply` and anything else with `ERROR`.
    fn config(reply: impl Into<Vec<u8>>) -> FakeEndpoint {
        let reply = reply.into();
        FakeEndpoint::start(move |line| match line {
            "config get cluster" => Reply::Send(reply.clone()),
            _ => Reply::Send(b"ERROR\r\n".to_vec()),
        })
    }
}

fn serve(stream: TcpStream, reply: &dyn Fn(&str) -> Reply) {
    let mut writer = stream.try_clone().unwrap();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        match reply(line.trim_end()) {
            Reply::Send(bytes) => {
                if writer.write_all(&bytes).is_err() {
                    return;
                }
            }
            Reply::Silence => {}
            Reply::Close => return,
        }
    }
}

impl Drop for FakeEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// ElastiCache's reply to `config get cluster`.
fn config_reply(body: &str) -> Vec<u8> {
    format!("CONFIG cluster 0 {}\r\n{body}\r\nEND\r\n", body.len()).into_bytes()
}

fn malformed(result: Result<elasticache::ClusterConfig, Error>, endpoint: &str) -> String {
    match result {
        Err(Error::AutoDiscovery {
            endpoint: named,
            missing: false,
            reason,
        }) => {
            assert_eq!(named, endpoint);
            reason
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn config_get_cluster_gives_a_client_for_every_node() {
    let nodes = [common::own_server(), common::own_server()];
    let body = format!(
        "12\nnode-a.cache.local|127.0.0.1|{} node-b.cache.local|127.0.0.1|{}\n",
        nodes[0].port().unwrap(),
        nodes[1].port().unwrap()
    );
    let endpoint = FakeEndpoint::config(config_reply(&body));

    let config = elasticache::discover(&endpoint.addr).unwrap();
    assert_eq!(config.version(), 12);
    assert_eq!(config.nodes()[0].hostname(), "node-a.cache.local");
    assert_eq!(
        config.specs(),
        [nodes[0].spec(), nodes[1].spec()],
        "the IPs, not the host names"
    );

    let mc = elasticache::elasticache(&endpoint.addr).unwrap();
    assert_eq!(mc.servers().len(), 2);
    let direct: Vec<Client> = nodes
        .iter()
        .map(|n| Client::new([n.spec()]).unwrap())
        .collect();
    let mut used = std::collections::HashSet::new();
    for i in 0..40 {
        let k = format!("discovered-{i}");
        mc.set(&k, i, 0).unwrap();
        let owner = mc.server_for_key(&k).unwrap().to_string();
        used.insert(owner.clone());
        for (client, node) in direct.iter().zip(&nodes) {
            assert_eq!(
                client.get::<i32>(&k).unwrap().is_some(),
                node.spec() == owner
            );
        }
    }
    assert_eq!(used.len(), 2, "keys spread over both nodes");

    // The builder takes the rest of the options.
    let binary = config.builder().binary(true).build().unwrap();
    assert!(binary.is_binary());
    assert_eq!(binary.get::<i32>("discovered-3").unwrap(), Some(3));
}

#[test]
fn a_node_without_an_ip_is_reached_by_its_host_name() {
    let node = common::own_server();
    let endpoint = FakeEndpoint::config(config_reply(&format!(
        "1\nlocalhost||{}\n",
        node.port().unwrap()
    )));
    let config = elasticache::discover(&endpoint.addr).unwrap();
    assert_eq!(config.nodes()[0].ip(), None);
    let spec = format!("localhost:{}", node.port().unwrap());
    assert_eq!(config.specs(), [spec]);
    let mc = elasticache::elasticache(&endpoint.addr).unwrap();
    mc.set("by-name", "yes", 0).unwrap();
    let direct = Client::new([node.spec()]).unwrap();
    assert_eq!(
        direct.get::<String>("by-name").unwrap().as_deref(),
        Some("yes")
    );
}

#[test]
fn an_endpoint_without_config_get_falls_back_to_the_key_on_a_real_memcached() {
    let endpoint = common::own_server();
    let node = common::own_server();
    // A real memcached answers `config get cluster` with ERROR, as engines before 1.4.14 did.
    let err = elasticache::discover(&endpoint.spec()).unwrap_err();
    assert!(
        matches!(&err, Error::AutoDiscovery { missing: true, endpoint: e, .. } if *e == endpoint.spec()),
        "{err:?}"
    );
    assert!(err.to_string().contains(CONFIG_KEY), "{err}");

    common::raw_set(
        &endpoint.spec(),
        CONFIG_KEY,
        0,
        format!("3\nnode.local|127.0.0.1|{}\n", node.port().unwrap()).as_bytes(),
    );
    let config = elasticache::discover(&endpoint.spec()).unwrap();
    assert_eq!(config.version(), 3);
    assert_eq!(config.specs(), [node.spec()]);
    let mc = elasticache::elasticache(&endpoint.spec()).unwrap();
    mc.set("via-key", 1u64, 0).unwrap();
    assert_eq!(
        Client::new([node.spec()])
            .unwrap()
            .get::<u64>("via-key")
            .unwrap(),
        Some(1)
    );

    // A malformed value under the key is a malformed configuration.
    common::raw_set(
        &endpoint.spec(),
        CONFIG_KEY,
        0,
        b"3\nnode.local|127.0.0.1\n",
    );
    let reason = malformed(elasticache::discover(&endpoint.spec()), &endpoint.spec());
    assert!(reason.contains("hostname|ip|port"), "{reason}");
}

#[test]
fn every_malformed_reply_is_an_error_naming_the_endpoint() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"SERVER_ERROR out of memory\r\n".to_vec(),
            "unexpected reply",
        ),
        (b"CONFIG cluster 0\r\n".to_vec(), "unexpected reply"),
        (b"CONFIG other 0 5\r\n".to_vec(), "unexpected reply"),
        (b"CONFIG cluster x 5\r\n".to_vec(), "unexpected reply"),
        (b"CONFIG cluster 0 five\r\n".to_vec(), "not a number"),
        (b"CONFIG cluster 0 99999999\r\n".to_vec(), "too long"),
        (
            b"CONFIG cluster 0 3\r\n1\nhost|127.0.0.1|1\n\r\nEND\r\n".to_vec(),
            "followed by CRLF",
        ),
        (
            b"CONFIG cluster 0 20\r\n1\nh|127.0.0.1|11211\n\r\nDONE\r\n".to_vec(),
            "expected END",
        ),
        (config_reply("1\n"), "two lines"),
        (config_reply("v1\nh|127.0.0.1|1\n"), "not a number"),
        (config_reply("1\nh|127.0.0.1|0\n"), "not a port"),
        (config_reply("1\nh|not-an-ip|1\n"), "not an IP"),
        (config_reply("1\n \n"), "no nodes"),
        (b"CONFIG cluster 0 5\n".to_vec(), "CRLF"),
    ];
    for (reply, expected) in cases {
        let endpoint = FakeEndpoint::config(reply.clone());
        let reason = malformed(elasticache::discover(&endpoint.addr), &endpoint.addr);
        assert!(
            reason.contains(expected),
            "{:?}: {reason}",
            String::from_utf8_lossy(&reply)
        );
        // No client is built from it either.
        assert!(elasticache::elasticache(&endpoint.addr).is_err());
    }

    // The fallback path checks its reply as strictly.
    let endpoint = FakeEndpoint::start(|line| match line {
        "config get cluster" => Reply::Send(b"ERROR\r\n".to_vec()),
        _ => Reply::Send(b"VALUE some:other:key 0 3\r\nabc\r\nEND\r\n".to_vec()),
    });
    let reason = malformed(elasticache::discover(&endpoint.addr), &endpoint.addr);
    assert!(reason.contains("unexpected reply"), "{reason}");
}

#[test]
fn an_empty_answer_is_no_configuration() {
    let endpoint = FakeEndpoint::config(b"END\r\n".to_vec());
    match elasticache::discover(&endpoint.addr) {
        Err(Error::AutoDiscovery { missing: true, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_endpoint_that_is_down_silent_or_hangs_up_is_a_connection_error() {
    // Down: nothing listens on the port any more.
    let port = libmemcached::testing::unused_port().unwrap();
    let down = format!("127.0.0.1:{port}");
    let err = elasticache::elasticache(&down).unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    assert_eq!(
        err.server().map(ToString::to_string).as_deref(),
        Some(down.as_str())
    );

    // Silent: the wait is bounded.
    let silent = FakeEndpoint::start(|_| Reply::Silence);
    let started = Instant::now();
    let err = elasticache::discover_timeout(&silent.addr, Duration::from_millis(300)).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Hangs up mid-reply.
    let rude = FakeEndpoint::start(|_| Reply::Close);
    let err = elasticache::discover(&rude.addr).unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    let partial = FakeEndpoint::start(|line| match line {
        "config get cluster" => Reply::Send(b"CONFIG cluster 0 50\r\n1\nh|1".to_vec()),
        _ => Reply::Close,
    });
    let started = Instant::now();
    let err = elasticache::discover_timeout(&partial.addr, Duration::from_millis(300)).unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Not a TCP endpoint at all.
    assert!(matches!(
        elasticache::discover("/tmp/endpoint.sock"),
        Err(Error::InvalidServerSpec { .. })
    ));
}

#[test]
fn an_endpoint_that_drips_its_configuration_is_cut_off_at_the_deadline() {
    // Each byte comes well within the timeout, but the whole reply would take far longer.
    let listener = common::listener();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let dripper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut writer = stream;
            let body = "1\n".to_owned() + &"h|127.0.0.1|11211 ".repeat(20);
            let reply = config_reply(&body);
            // The first line at once, then the configuration a byte at a time.
            let header = reply.iter().position(|&b| b == b'\n').unwrap() + 1;
            if writer.write_all(&reply[..header]).is_err() {
                return;
            }
            for &byte in &reply[header..] {
                if stop.load(Ordering::SeqCst) || writer.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let started = Instant::now();
    let result = elasticache::discover_timeout(&addr, Duration::from_millis(500));
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    dripper.join().unwrap();
    let err = result.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        elapsed < Duration::from_millis(1500),
        "a 500 ms discovery took {elapsed:?}"
    );
}
