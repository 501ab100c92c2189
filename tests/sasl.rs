//! SASL against real `memcached -S` processes with a sasldb made by `saslpasswd2`.

mod common;

use std::time::{Duration, Instant};

use libmemcached::testing::Memcached;
use libmemcached::{Behavior, Client, ClientPool, Error, ThreadMappedPool};

const USER: &str = "rustuser";
const PASSWORD: &str = "correct horse";

fn sasl_server() -> Memcached {
    Memcached::builder()
        .sasl(USER, PASSWORD)
        .start()
        .expect("a SASL memcached starts (install Debian's memcached, sasl2-bin, libsasl2-modules)")
}

fn sasl_client(server: &Memcached, password: &str) -> Client {
    Client::builder()
        .servers([server.spec()])
        .sasl(USER, password)
        .build()
        .unwrap()
}

fn stat(server: &Memcached, name: &str) -> u64 {
    server.stat(name).unwrap().parse().unwrap()
}

#[test]
fn the_right_password_reads_and_writes_in_the_binary_protocol() {
    if !common::available("libmemcached with SASL", libmemcached::support_sasl()) {
        eprintln!("libmemcached without SASL: see sasl_is_refused_without_library_support");
        return;
    }
    let server = sasl_server();
    // SASL implies the binary protocol, whatever `binary` says.
    let mc = Client::builder()
        .servers([server.spec()])
        .binary(false)
        .sasl(USER, PASSWORD)
        .build()
        .unwrap();
    assert!(mc.is_binary());
    mc.set("greeting", "hello", 0).unwrap();
    assert_eq!(
        mc.get::<String>("greeting").unwrap().as_deref(),
        Some("hello")
    );
    assert_eq!(mc.get::<String>("missing").unwrap(), None);
    assert_eq!(mc.incr_with_initial("hits", 1, 10, 0).unwrap(), 10);
    assert_eq!(mc.incr("hits", 5).unwrap(), 15);
    let found: std::collections::HashMap<&str, String> =
        mc.get_multi(["greeting", "nope"]).unwrap();
    assert_eq!(found.len(), 1);
    assert!(mc.delete("greeting").unwrap());
    assert!(stat(&server, "auth_cmds") >= 1);
    assert_eq!(stat(&server, "auth_errors"), 0);
}

#[test]
fn a_wrong_password_is_an_auth_error_and_reads_and_writes_nothing() {
    if !common::available("libmemcached with SASL", libmemcached::support_sasl()) {
        return;
    }
    let server = sasl_server();
    let good = sasl_client(&server, PASSWORD);
    good.set("secret", "kept", 0).unwrap();
    good.set("count", 1u64, 0).unwrap();
    let (sets, gets, items) = (
        stat(&server, "cmd_set"),
        stat(&server, "cmd_get"),
        stat(&server, "curr_items"),
    );

    let bad = sasl_client(&server, "wrong password");
    let err = bad.set("secret", "overwritten", 0).unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert_eq!(
        err.server().map(ToString::to_string).as_deref(),
        Some(server.spec().as_str())
    );
    // The server is then disabled for the retry timeout, but nothing reads as a miss.
    assert!(bad.get::<String>("secret").is_err());
    // Each first operation of a fresh client is refused as an auth error, counters included.
    let err = sasl_client(&server, "wrong")
        .get::<String>("secret")
        .unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    let err = sasl_client(&server, "wrong").incr("count", 1).unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    let err = sasl_client(&server, "wrong")
        .incr_with_initial("count", 1, 0, 0)
        .unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert!(
        sasl_client(&server, "wrong")
            .get_multi::<_, String>(["secret", "count"])
            .is_err()
    );

    assert!(stat(&server, "auth_errors") >= 4);
    assert_eq!(stat(&server, "cmd_set"), sets, "nothing was written");
    assert_eq!(stat(&server, "cmd_get"), gets, "nothing was read");
    assert_eq!(stat(&server, "curr_items"), items);
    assert_eq!(
        good.get::<String>("secret").unwrap().as_deref(),
        Some("kept")
    );
    assert_eq!(good.get::<u64>("count").unwrap(), Some(1));
}

#[test]
fn a_client_without_credentials_gets_a_clear_error_not_a_miss_or_a_crash() {
    let server = sasl_server();
    if libmemcached::support_sasl() {
        sasl_client(&server, PASSWORD)
            .set("there", 7u64, 0)
            .unwrap();
    }
    let binary = || {
        Client::builder()
            .servers([server.spec()])
            .binary(true)
            .build()
            .unwrap()
    };
    let auth = |result: Result<String, Error>| {
        let err = result.unwrap_err();
        assert!(err.is_auth(), "{err:?}");
        assert!(err.to_string().contains("requires SASL"), "{err}");
    };
    // libmemcached alone reports these as misses, and its counters abort the process.
    auth(binary().get::<String>("there").map(|v| format!("{v:?}")));
    auth(binary().gets::<String>("there").map(|v| format!("{v:?}")));
    auth(binary().incr("there", 1).map(|v| v.to_string()));
    auth(binary().decr("there", 1).map(|v| v.to_string()));
    auth(
        binary()
            .incr_with_initial("there", 1, 0, 0)
            .map(|v| v.to_string()),
    );
    let err = binary()
        .get_multi::<_, u64>(["there", "other"])
        .unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert_eq!(err.failures()[0].keys.len(), 2, "{err:?}");
    let err = binary().set("there", "x", 0).unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    // One client keeps failing the same way, without aborting.
    let mc = binary();
    for _ in 0..3 {
        assert!(mc.incr("there", 1).unwrap_err().is_auth());
    }

    // memcached -S does not answer the ASCII protocol at all: a timeout.
    let ascii = Client::builder()
        .servers([server.spec()])
        .behavior(Behavior::PollTimeout(Duration::from_millis(200)))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = ascii.get::<String>("there").unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn clones_and_pool_members_keep_the_credentials() {
    if !common::available("libmemcached with SASL", libmemcached::support_sasl()) {
        return;
    }
    let server = sasl_server();
    let mc = sasl_client(&server, PASSWORD);
    mc.set("shared", "by all", 0).unwrap();
    let clone = mc.try_clone().unwrap();
    drop(mc);
    assert_eq!(
        clone.get::<String>("shared").unwrap().as_deref(),
        Some("by all")
    );

    let pool = ClientPool::new(clone.clone(), 3).unwrap();
    let members: Vec<_> = (0..3).map(|_| pool.reserve().unwrap()).collect();
    for (i, member) in members.iter().enumerate() {
        member.set(format!("pool-{i}"), i as u64, 0).unwrap();
        assert_eq!(
            member.get::<String>("shared").unwrap().as_deref(),
            Some("by all")
        );
    }
    drop(members);

    let mapped = ThreadMappedPool::new(clone);
    std::thread::scope(|s| {
        for i in 0..3u64 {
            let mapped = &mapped;
            s.spawn(move || {
                let mc = mapped.reserve().unwrap();
                assert!((1..=3).contains(&mc.incr_with_initial("threads", 1, 1, 0).unwrap()));
                assert_eq!(mc.get::<u64>(format!("pool-{i}")).unwrap(), Some(i));
            });
        }
    });
    assert_eq!(stat(&server, "auth_errors"), 0);
    // Every client above opened its own connection and authenticated it.
    assert!(stat(&server, "auth_cmds") >= 5);
}

#[test]
fn unusable_sasl_configurations_are_refused_before_any_connection() {
    let invalid = |builder: libmemcached::ClientBuilder| match builder.build() {
        Err(Error::InvalidConfig(why)) => why.to_string(),
        other => panic!("{other:?}"),
    };
    let tcp = || Client::builder().servers(["127.0.0.1:1"]);
    if !common::available("libmemcached with SASL", libmemcached::support_sasl()) {
        assert!(invalid(tcp().sasl("u", "p")).contains("no SASL support"));
        return;
    }
    for (user, password) in [("", "p"), ("u", "")] {
        let why = invalid(tcp().sasl(user, password));
        assert!(why.contains("both a username and a password"), "{why}");
    }
    assert!(invalid(tcp().sasl("u\0", "p")).contains("NUL"));
    let udp = Client::builder().servers(["udp:127.0.0.1:1"]);
    assert!(invalid(udp.sasl("u", "p")).contains("UDP"));
    let unix = Client::builder().servers(["/tmp/no.sock"]);
    assert!(invalid(unix.sasl("u", "p")).contains("unix socket"));

    let debug = format!("{:?}", tcp().sasl("someone", "hunter2-secret"));
    assert!(!debug.contains("hunter2-secret"), "{debug}");
    assert!(debug.contains("someone"), "{debug}");
}

#[test]
fn testing_sasl_servers_report_stats_and_ignore_ascii() {
    let server = sasl_server();
    assert_eq!(server.sasl_credentials(), Some((USER, PASSWORD)));
    assert_eq!(
        server.stat("pid").unwrap(),
        server.pid().unwrap().to_string()
    );
    // get_version speaks ASCII, which a SASL server ignores.
    assert!(!libmemcached::testing::is_alive(&server.spec()).0);
}

#[test]
fn a_client_without_credentials_is_told_so_every_time_and_each_key_fails_once() {
    if !common::available("libmemcached with SASL", libmemcached::support_sasl()) {
        return;
    }
    let server = sasl_server();
    // memcached closes the connection after refusing an unauthenticated request; when the
    // client had sent more (a get's NOOP), the close is a reset that can discard the refusal
    // (about 1 in 100 gets here). Every attempt must still say what is wrong.
    for attempt in 0..200 {
        let mc = common::client(&[server.spec()], true);
        let error = match attempt % 2 {
            0 => mc.get::<String>("k").unwrap_err(),
            _ => mc.get_multi::<_, String>(["a", "b", "c"]).unwrap_err(),
        };
        assert!(error.is_auth(), "attempt {attempt}: {error}");
        assert!(error.to_string().contains("no credentials"), "{error}");
        if let Error::Multi { failures } = &error {
            let keys: usize = failures.iter().map(|f| f.keys.len()).sum();
            assert_eq!(keys, 3, "each key once: {error}");
        }
    }
}
