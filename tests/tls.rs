//! TLS to `memcached -Z`: every operation in both protocols, each certificate a client must
//! refuse (with an error that says why), client certificates, SASL over TLS, the pools and
//! the async client, and a server restarted under load.

mod common;

use std::time::{Duration, Instant};

use libmemcached::testing::{Memcached, ServerCert, TlsFiles};
use libmemcached::{Behavior, Client, ClientBuilder, ClientPool, ThreadMappedPool, Tls};

fn trusting(files: &TlsFiles) -> Tls {
    Tls::new().ca_file(files.ca_cert())
}

fn builder(server: &Memcached, tls: Tls) -> ClientBuilder {
    Client::builder()
        .servers([server.spec()])
        .behavior(Behavior::PollTimeout(Duration::from_secs(2)))
        .tls(tls)
}

#[test]
fn every_operation_works_over_tls_in_both_protocols() {
    let files = common::tls_files();
    let server = common::tls_server(&files, ServerCert::Good);
    for binary in [false, true] {
        let mc = builder(&server, trusting(&files))
            .binary(binary)
            .build()
            .unwrap();
        let what = if binary { "binary" } else { "ascii" };
        let key = common::key(what);
        mc.set(&key, "v1", 0).unwrap();
        assert_eq!(
            mc.get::<String>(&key).unwrap().as_deref(),
            Some("v1"),
            "{what}"
        );
        let (value, token) = mc.gets::<String>(&key).unwrap().unwrap();
        assert_eq!(value, "v1");
        assert!(mc.cas(&key, "v2", token, 0).unwrap(), "{what}");
        assert!(!mc.add(&key, "x", 0).unwrap());
        assert!(mc.replace(&key, "v3", 0).unwrap());
        assert!(mc.append(&key, ">").unwrap());
        assert!(mc.prepend(&key, "<").unwrap());
        assert_eq!(mc.get::<String>(&key).unwrap().as_deref(), Some("<v3>"));
        assert!(mc.touch(&key, 100).unwrap());
        let counter = common::key("counter");
        mc.set(&counter, "10", 0).unwrap();
        assert_eq!(mc.incr(&counter, 5).unwrap(), 15);
        assert_eq!(mc.decr(&counter, 3).unwrap(), 12);
        // A value larger than a TLS record (16 KiB) and than the relay's reads (64 KiB).
        let big = "x".repeat(300_000);
        let keys: Vec<String> = (0..50).map(|i| format!("{key}:{i}")).collect();
        mc.set_multi(keys.iter().map(|k| (k.as_str(), big.as_str())), 0)
            .unwrap();
        let found = mc.get_multi::<_, String>(keys.iter()).unwrap();
        assert_eq!(found.len(), 50, "{what}");
        assert!(found.values().all(|v| *v == big));
        mc.delete_multi(keys.iter()).unwrap();
        assert!(mc.delete(&key).unwrap());
        assert_eq!(mc.get::<String>(&key).unwrap(), None);
        assert!(
            mc.version()
                .unwrap()
                .iter()
                .all(|(_, v)| v.starts_with("1."))
        );
        assert!(!mc.stats(None).unwrap().is_empty());
        // What went over TLS is on the server, as a plaintext client reads it.
        mc.set(&key, "seen", 0).unwrap();
        assert_eq!(
            common::raw_get(&server.plain_spec(), &key).map(|(_, v)| v),
            Some(b"seen".to_vec())
        );
    }
}

/// The error of a first call through a client that must refuse the server: it names the
/// server, and says why.
fn refusal(mc: &Client, server: &Memcached) -> String {
    let error = mc.set(common::key("refused"), "x", 0).unwrap_err();
    assert_eq!(error.server().map(ToString::to_string), Some(server.spec()));
    error.to_string()
}

#[test]
fn each_certificate_a_client_must_refuse_is_refused_with_its_reason() {
    let files = common::tls_files();
    for (cert, reason) in [
        (ServerCert::Expired, "certificate has expired"),
        (ServerCert::WrongName, "not valid for its name"),
        (
            ServerCert::UnknownCa,
            "not signed by a trusted certificate authority",
        ),
    ] {
        let server = common::tls_server(&files, cert);
        let mc = builder(&server, trusting(&files)).build().unwrap();
        let error = refusal(&mc, &server);
        assert!(error.contains(reason), "{cert:?}: {error}");
        // Nothing reached the server.
        assert_eq!(server.stat("cmd_set").unwrap(), "0", "{cert:?}");
    }
    // The good certificate, from a CA the client does not trust (the system's roots).
    let server = common::tls_server(&files, ServerCert::Good);
    let mc = builder(&server, Tls::new()).build().unwrap();
    let error = refusal(&mc, &server);
    assert!(error.contains("not signed by a trusted"), "{error}");
    // The host name checked is the configured one, or the one given.
    let mc = Client::builder()
        .servers([format!("localhost:{}", server.port().unwrap())])
        .tls(trusting(&files))
        .build()
        .unwrap();
    mc.set(common::key("by-name"), "x", 0).unwrap();
    let mc = builder(&server, trusting(&files).server_name("other.invalid"))
        .build()
        .unwrap();
    let error = refusal(&mc, &server);
    assert!(error.contains("not valid for its name"), "{error}");
}

#[test]
fn a_plaintext_server_and_a_missing_client_certificate_are_named() {
    let files = common::tls_files();
    let plain = common::own_server();
    let mc = Client::builder()
        .servers([plain.spec()])
        .tls(trusting(&files))
        .build()
        .unwrap();
    let error = refusal(&mc, &plain);
    assert!(error.contains("does not speak TLS"), "{error}");

    let server = Memcached::builder()
        .tls(&files, ServerCert::Good)
        .tls_client_certs(true)
        .start()
        .unwrap();
    let mc = builder(&server, trusting(&files)).build().unwrap();
    let error = refusal(&mc, &server);
    assert!(error.contains("requires a client certificate"), "{error}");
    let mc = builder(
        &server,
        trusting(&files).client_cert(files.client_cert(), files.client_key()),
    )
    .build()
    .unwrap();
    let key = common::key("mutual");
    mc.set(&key, "x", 0).unwrap();
    assert_eq!(mc.get::<String>(&key).unwrap().as_deref(), Some("x"));
}

#[test]
fn a_bad_tls_configuration_is_refused_by_build() {
    let files = common::tls_files();
    let server = common::tls_server(&files, ServerCert::Good);
    let missing = builder(&server, Tls::new().ca_file("/nonexistent/ca.pem"))
        .build()
        .unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/ca.pem"),
        "{missing}"
    );
    let not_a_cert = builder(&server, Tls::new().ca_file(files.server_key()))
        .build()
        .unwrap_err();
    assert!(
        not_a_cert.to_string().contains("no PEM certificate"),
        "{not_a_cert}"
    );
    let no_key = builder(
        &server,
        trusting(&files).client_cert(files.client_cert(), files.ca_cert()),
    )
    .build()
    .unwrap_err();
    assert!(no_key.to_string().contains("no private key"), "{no_key}");
}

#[test]
fn sasl_pools_and_the_async_client_work_over_tls() {
    if !common::available("libmemcached with SASL", libmemcached::support_sasl()) {
        return;
    }
    let files = common::tls_files();
    let server = Memcached::builder()
        .tls(&files, ServerCert::Good)
        .sasl("tlsuser", "tlspass")
        .start()
        .unwrap();
    let mc = builder(&server, trusting(&files))
        .sasl("tlsuser", "tlspass")
        .build()
        .unwrap();
    let key = common::key("sasl");
    mc.set(&key, "over tls", 0).unwrap();

    let pool = ClientPool::new(mc.clone(), 4).unwrap();
    let mapped = ThreadMappedPool::new(mc.clone());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..20 {
                    let c = pool.reserve().unwrap();
                    assert_eq!(c.get::<String>(&key).unwrap().as_deref(), Some("over tls"));
                    let c = mapped.reserve().unwrap();
                    assert_eq!(c.get::<String>(&key).unwrap().as_deref(), Some("over tls"));
                }
            });
        }
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let async_mc = libmemcached::AsyncClient::new(mc).unwrap();
    runtime.block_on(async {
        let gets = (0..64).map(|_| async_mc.get::<String>(&key));
        for value in futures::future::join_all(gets).await {
            assert_eq!(value.unwrap().as_deref(), Some("over tls"));
        }
    });
}

#[test]
fn a_server_restarted_under_load_fails_only_while_it_is_down() {
    let files = common::tls_files();
    let mut server = common::tls_server(&files, ServerCert::Good);
    let mc = builder(&server, trusting(&files))
        .behavior(Behavior::RetryTimeout(Duration::from_secs(1)))
        .build()
        .unwrap();
    let key = common::key("restart");
    mc.set(&key, "v", 0).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let mc = mc.clone();
                let (key, stop) = (&key, &stop);
                s.spawn(move || {
                    let mut wrong = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match mc.get::<String>(key) {
                            // A restarted server is empty: a miss is its answer.
                            Ok(Some(v)) if v == "v" => {}
                            Ok(None) => {}
                            Ok(other) => wrong.push(format!("{other:?}")),
                            Err(e) if e.server().is_some() => {}
                            Err(e) => wrong.push(e.to_string()),
                        }
                    }
                    wrong
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        server.restart().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for worker in workers {
            let wrong = worker.join().unwrap();
            assert!(wrong.is_empty(), "{wrong:?}");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while mc.set(&key, "after", 0).is_err() {
        assert!(
            Instant::now() < deadline,
            "the server was never reached again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(mc.get::<String>(&key).unwrap().as_deref(), Some("after"));
    // Back, it answers every call.
    for _ in 0..50 {
        assert_eq!(mc.get::<String>(&key).unwrap().as_deref(), Some("after"));
    }
}

#[test]
fn elasticache_discovery_works_over_tls() {
    let files = common::tls_files();
    let server = common::tls_server(&files, ServerCert::Good);
    // A real memcached keeps the configuration under this key (engines before 1.4.14 did).
    let text = format!("7\nnode.local|127.0.0.1|{}\n", server.port().unwrap());
    common::raw_set(
        &server.plain_spec(),
        "AmazonElastiCache:cluster",
        0,
        text.as_bytes(),
    );
    let tls = trusting(&files);
    let config = libmemcached::elasticache::discover_tls(&server.spec(), &tls).unwrap();
    assert_eq!((config.version(), config.specs()), (7, vec![server.spec()]));
    let mc = config.builder().tls(tls).build().unwrap();
    let key = common::key("discovered");
    mc.set(&key, "over tls", 0).unwrap();
    assert_eq!(mc.get::<String>(&key).unwrap().as_deref(), Some("over tls"));
    let untrusted = libmemcached::elasticache::discover_tls(&server.spec(), &Tls::new());
    let error = untrusted.unwrap_err().to_string();
    assert!(error.contains("certificate"), "{error}");
}
