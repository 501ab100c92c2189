//! The `tracing` feature's events, captured by a real subscriber: what each failure says, that
//! values and credentials never appear, and that keys appear only at the trace level.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libmemcached::testing::{Fault, FaultProxy, Memcached};
use libmemcached::{AsyncClient, Behavior, Client, ClientPool};
use tracing::Level;

/// Everything the subscriber wrote while `f` ran on this thread (and on threads the crate
/// started there), at `level` and above.
fn captured(level: Level, f: impl FnOnce()) -> String {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_thread_names(true)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let text = buffer.0.lock().unwrap().clone();
    String::from_utf8(text).unwrap()
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn calls_have_spans_and_keys_appear_only_at_trace_and_values_never() {
    let server = common::server();
    let mc = common::client(server.specs(), false);
    let work = || {
        mc.set("tracing:secret-key", "the-secret-value", 0).unwrap();
        let _: Option<String> = mc.get("tracing:secret-key").unwrap();
        let _: std::collections::HashMap<&str, String> = mc
            .get_multi(["tracing:secret-key", "tracing:other-key"])
            .unwrap();
        // A value that does not decode: its error names the key, so only trace shows it.
        assert!(mc.get::<u64>("tracing:secret-key").is_err());
    };
    let debug = captured(Level::DEBUG, work);
    assert!(debug.contains("memcached{op=\"set\"}"), "{debug}");
    assert!(debug.contains("memcached{op=\"get_multi\"}"), "{debug}");
    assert!(debug.contains("value does not decode"), "{debug}");
    assert!(!debug.contains("secret-key"), "a key below trace: {debug}");
    assert!(!debug.contains("the-secret-value"), "a value: {debug}");

    let trace = captured(Level::TRACE, work);
    assert!(trace.contains("tracing:secret-key"), "{trace}");
    assert!(trace.contains("tracing:other-key"), "{trace}");
    assert!(!trace.contains("the-secret-value"), "a value: {trace}");

    let info = captured(Level::INFO, work);
    assert!(!info.contains("memcached{"), "spans are debug: {info}");
}

#[test]
fn a_dead_server_its_return_and_connection_failures_are_events() {
    let mut server = common::own_server();
    let mc = Client::builder()
        .servers([server.spec()])
        .behavior(Behavior::ConnectTimeout(Duration::from_millis(300)))
        .build()
        .unwrap();
    mc.set("k", "v", 0).unwrap();
    server.stop();
    let down = captured(Level::INFO, || {
        assert!(mc.get::<String>("k").is_err());
        assert!(mc.set("k", "v", 0).is_err());
    });
    let spec = server.spec();
    assert!(down.contains("WARN"), "{down}");
    assert!(down.contains("connection failed"), "{down}");
    assert!(down.contains(&format!("server={spec}")), "{down}");
    assert_eq!(down.matches("server failing").count(), 1, "once: {down}");
    // The first failure and the news are warnings; the set's, on a server known to be
    // failing, goes out at debug rather than flood a log during an outage.
    assert_eq!(
        down.lines().filter(|l| l.contains("WARN")).count(),
        2,
        "{down}"
    );

    server.restart().unwrap();
    let back = captured(Level::INFO, || {
        mc.disconnect_all();
        mc.set("k", "v", 0).unwrap();
        mc.set("k", "v", 0).unwrap();
    });
    assert_eq!(back.matches("server answers again").count(), 1, "{back}");
    assert!(back.contains(&spec), "{back}");
}

#[test]
fn timeouts_and_the_reconnect_after_them_are_events() {
    let server = common::own_server();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", server.port().unwrap())).unwrap();
    let mc = Client::builder()
        .servers([proxy.spec()])
        .behavior(Behavior::PollTimeout(Duration::from_millis(200)))
        .build()
        .unwrap();
    mc.set("k", "v", 0).unwrap();
    proxy.set_fault(Fault::Blackhole);
    let text = captured(Level::INFO, || {
        assert!(mc.get::<String>("k").unwrap_err().is_timeout());
    });
    assert!(text.contains("timed out"), "{text}");
    assert!(text.contains("kind=\"timeout\""), "{text}");
    assert!(text.contains("connections reset"), "{text}");
}

#[test]
fn a_wrong_password_is_an_auth_event_without_the_password() {
    if !common::available("libmemcached with SASL", libmemcached::support_sasl()) {
        eprintln!("libmemcached without SASL: nothing to authenticate");
        return;
    }
    let server = Memcached::builder()
        .sasl("traceuser", "right-password")
        .start()
        .expect("a SASL memcached starts (install memcached, sasl2-bin, libsasl2-modules)");
    let text = captured(Level::TRACE, || {
        let mc = Client::builder()
            .servers([server.spec()])
            .sasl("traceuser", "wrong-pass-1234")
            .build()
            .unwrap();
        assert!(mc.set("k", "v", 0).unwrap_err().is_auth());
    });
    assert!(text.contains("authentication failed"), "{text}");
    assert!(!text.contains("wrong-pass-1234"), "{text}");
    assert!(!text.contains("right-password"), "{text}");
}

#[test]
fn refused_configuration_is_an_event_without_credentials() {
    let text = captured(Level::WARN, || {
        assert!(Client::from_config("--SERVER=127.0.0.1 --NOT-AN-OPTION").is_err());
        let refused = Client::builder()
            .servers(["127.0.0.1:1", "udp:127.0.0.1:2"])
            .sasl("user", "hunter2-password")
            .build();
        assert!(refused.is_err());
    });
    assert_eq!(text.matches("configuration refused").count(), 2, "{text}");
    assert!(!text.contains("hunter2-password"), "{text}");
}

#[test]
fn pool_waits_are_events() {
    let server = common::server();
    let pool = ClientPool::new(common::client(server.specs(), false), 1).unwrap();
    let text = captured(Level::DEBUG, || {
        let held = pool.reserve().unwrap();
        assert!(pool.reserve_timeout(Duration::from_millis(20)).is_err());
        std::thread::scope(|s| {
            s.spawn(|| {
                // Long enough for the reserve below to be waiting, even on a loaded machine.
                std::thread::sleep(Duration::from_millis(500));
                drop(held);
            });
            pool.reserve().unwrap().set("k", "v", 0).unwrap();
        });
    });
    assert!(text.contains("no pooled client came free"), "{text}");
    assert!(text.contains("waited for a pooled client"), "{text}");
}

#[test]
fn async_batches_are_events_of_the_subscriber_that_built_the_client() {
    let server = common::server();
    let text = captured(Level::DEBUG, || {
        let mc = AsyncClient::builder(common::client(server.specs(), false))
            .workers(1)
            .build()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let gets = (0..64).map(|i| mc.get::<String>(format!("tracing:async:{i}")));
            for found in futures::future::join_all(gets).await {
                assert_eq!(found.unwrap(), None);
            }
        });
    });
    assert!(text.contains("gets merged into one multi-get"), "{text}");
    assert!(text.contains("memcached-async-0"), "{text}");
}

#[test]
fn async_workers_built_before_any_subscriber_report_to_the_global_one_set_later() {
    let server = common::server();
    let mc = AsyncClient::builder(common::client(server.specs(), false))
        .workers(1)
        .build()
        .unwrap();
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The only global default of this test binary (the other tests scope theirs).
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let gets = (0..64).map(|i| mc.get::<String>(format!("tracing:global:{i}")));
        for found in futures::future::join_all(gets).await {
            assert_eq!(found.unwrap(), None);
        }
    });
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("gets merged into one multi-get"), "{text}");
}

#[test]
fn a_counter_created_by_another_client_meanwhile_is_a_retry_event() {
    let server = common::own_server();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", server.port().unwrap())).unwrap();
    let mc = Client::new([proxy.spec()]).unwrap();
    mc.set("hits", "5", 0).unwrap();
    // The server counts to 6, but the client hears NOT_FOUND, as if another client had
    // deleted the counter; its add then finds one, so it asks again.
    proxy.set_fault(Fault::ReplyOnce(b"NOT_FOUND\r\n"));
    let text = captured(Level::DEBUG, || {
        assert_eq!(mc.incr_with_initial("hits", 1, 100, 0).unwrap(), 7);
    });
    assert!(text.contains("retrying"), "{text}");
    assert!(text.contains("op=\"incr_with_initial\""), "{text}");
    assert!(text.contains("attempt=1"), "{text}");
}
