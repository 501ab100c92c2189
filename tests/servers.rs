//! Server-level operations: several servers, versions, key placement, clones, restarts, unix
//! sockets and the `testing` helpers themselves.

mod common;

use std::time::{Duration, Instant};

use libmemcached::testing::{self, Memcached};
use libmemcached::{Behavior, Client, Transport};

fn cluster(n: usize) -> Vec<Memcached> {
    (0..n).map(|_| common::own_server()).collect()
}

fn specs(servers: &[Memcached]) -> Vec<String> {
    servers.iter().map(Memcached::spec).collect()
}

#[test]
fn version_reports_every_server() {
    let servers = cluster(2);
    for (protocol, mc) in common::both_protocols(&specs(&servers)) {
        let versions = mc.version().unwrap();
        assert_eq!(versions.len(), 2, "{protocol}");
        for ((server, version), process) in versions.iter().zip(&servers) {
            assert_eq!(server.to_string(), process.spec());
            assert_eq!(
                Some(version.clone()),
                testing::get_version(&process.spec()).ok()
            );
        }
    }
}

#[test]
fn version_names_a_dead_server() {
    let mut servers = cluster(2);
    let mc = Client::new(specs(&servers)).unwrap();
    assert_eq!(mc.version().unwrap().len(), 2);
    // A server that answered once and died since is not reported from memory.
    servers[1].stop();
    let err = mc.version().unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    assert_eq!(
        err.server().map(ToString::to_string).as_deref(),
        Some(servers[1].spec().as_str())
    );
    assert!(err.to_string().contains(&servers[1].spec()), "{err}");
}

#[test]
fn server_for_key_is_where_the_key_is_stored() {
    let servers = cluster(3);
    for (protocol, mc) in common::both_protocols(&specs(&servers)) {
        let direct: Vec<Client> = servers
            .iter()
            .map(|s| Client::new([s.spec()]).unwrap())
            .collect();
        let mut used = std::collections::HashSet::new();
        for i in 0..60 {
            let k = format!("placed-{protocol}-{i}");
            mc.set(&k, i, 0).unwrap();
            let owner = mc.server_for_key(&k).unwrap().to_string();
            used.insert(owner.clone());
            for (client, server) in direct.iter().zip(&servers) {
                let held = client.get::<i32>(&k).unwrap();
                assert_eq!(
                    held.is_some(),
                    server.spec() == owner,
                    "{protocol}: {k} on {owner}"
                );
            }
        }
        assert_eq!(used.len(), 3, "{protocol}: 60 keys use all three servers");
    }
}

#[test]
fn clones_share_servers_and_behaviors_not_connections() {
    let server = common::own_server();
    let mc = Client::builder()
        .servers([server.spec()])
        .binary(true)
        .build()
        .unwrap();
    mc.set("shared", "v", 0).unwrap();
    let clone = mc.try_clone().unwrap();
    assert!(clone.is_binary());
    assert_eq!(clone.servers(), mc.servers());
    assert_eq!(clone.get::<String>("shared").unwrap().as_deref(), Some("v"));
    // Each `stat` opens a connection of its own, and `curr_connections` drops only once
    // memcached has seen a connection close: count the connections ever accepted instead.
    let accepted = || -> u32 { server.stat("total_connections").unwrap().parse().unwrap() };
    let connections_before = accepted();
    #[allow(clippy::redundant_clone)]
    let another = clone.clone();
    assert_eq!(
        another.get::<String>("shared").unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(
        accepted(),
        connections_before + 2,
        "a clone opens its own connection (and the second `stat` its own)"
    );
    drop(mc);
    assert_eq!(
        clone.get::<String>("shared").unwrap().as_deref(),
        Some("v"),
        "outlives the original"
    );
}

#[test]
fn clients_move_between_threads() {
    let server = common::server();
    let mc = common::client(server.specs(), false);
    let k = common::key("thread");
    let handle = std::thread::spawn(move || {
        mc.set(&k, "from a thread", 0).unwrap();
        (mc, k)
    });
    let (mc, k) = handle.join().unwrap();
    assert_eq!(
        mc.get::<String>(&k).unwrap().as_deref(),
        Some("from a thread")
    );
}

#[test]
fn disconnect_all_closes_connections_and_the_next_call_reconnects() {
    let server = common::own_server();
    let mc = Client::new([server.spec()]).unwrap();
    mc.set("k", "v", 0).unwrap();
    let connected: u32 = server.stat("curr_connections").unwrap().parse().unwrap();
    mc.disconnect_all();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server
        .stat("curr_connections")
        .unwrap()
        .parse::<u32>()
        .unwrap()
        >= connected
    {
        assert!(Instant::now() < deadline, "the connection was not closed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(mc.get::<String>("k").unwrap().as_deref(), Some("v"));
}

#[test]
fn a_restarted_server_is_used_again_without_a_new_client() {
    let mut server = common::own_server();
    for (protocol, mc) in common::both_protocols(&[server.spec()]) {
        mc.set_behavior(Behavior::RetryTimeout(Duration::from_secs(1)))
            .unwrap();
        mc.set("k", "before", 0).unwrap();
        server.stop();
        // The first call fails on the open connection, the second on a refused connect, which
        // disables the server for the retry timeout.
        for _ in 0..2 {
            let err = mc.get::<String>("k").unwrap_err();
            assert!(err.is_connection(), "{protocol}: {err:?}");
            assert_eq!(
                err.server().map(ToString::to_string).as_deref(),
                Some(server.spec().as_str()),
                "{protocol}"
            );
        }
        let stopped = Instant::now();

        server.restart().unwrap();
        // The server stays disabled for the retry timeout, then the client reconnects.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match mc.set("k", "after", 0) {
                Ok(()) => break,
                Err(err) if err.is_connection() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(err) => panic!("{protocol}: not reconnected: {err:?}"),
            }
        }
        assert!(
            stopped.elapsed() >= Duration::from_millis(900),
            "{protocol}: waited out the retry timeout"
        );
        assert_eq!(
            mc.get::<String>("k").unwrap().as_deref(),
            Some("after"),
            "{protocol}"
        );
    }
}

#[test]
fn unix_socket_servers_work_end_to_end() {
    let servers = [
        Memcached::start_unix().unwrap(),
        Memcached::start_unix().unwrap(),
    ];
    let spec_list: Vec<String> = vec![servers[0].spec(), format!("{}:2", servers[1].spec())];
    for (protocol, mc) in common::both_protocols(&spec_list) {
        assert!(
            mc.servers()
                .iter()
                .all(|s| s.transport() == Transport::Unix)
        );
        for i in 0..20 {
            let k = format!("sock-{protocol}-{i}");
            mc.set(&k, i, 0).unwrap();
            assert_eq!(mc.get::<i32>(&k).unwrap(), Some(i), "{protocol}");
            let owner = mc.server_for_key(&k).unwrap();
            assert!(servers.iter().any(|s| s.spec() == owner.host()));
        }
        assert_eq!(mc.version().unwrap().len(), 2);
    }
}

#[test]
fn testing_helpers_report_liveness_and_versions() {
    let mut server = common::own_server();
    let (alive, version) = testing::is_alive(&server.spec());
    assert!(alive);
    assert!(version.unwrap().starts_with("1."));
    assert_eq!(
        server.stat("pid").unwrap(),
        server.pid().unwrap().to_string()
    );
    server.stop();
    assert_eq!(testing::is_alive(&server.spec()), (false, None));
    assert!(server.pid().is_none());
    server.restart().unwrap();
    assert!(testing::is_alive(&server.spec()).0);

    let sock = Memcached::start_unix().unwrap();
    assert!(
        testing::get_version(&sock.spec())
            .unwrap()
            .starts_with("1.")
    );
}

#[test]
fn extra_arguments_reach_memcached() {
    let server = Memcached::builder().arg("-I").arg("2m").start().unwrap();
    assert_eq!(
        server.stat("pid").unwrap(),
        server.pid().unwrap().to_string()
    );
    let mc = Client::new([server.spec()]).unwrap();
    // A 1.5 MiB value is over the default 1 MiB item limit but under 2 MiB.
    let big = vec![7u8; 1536 * 1024];
    mc.set("big", &big, 0).unwrap();
    assert_eq!(mc.get::<Vec<u8>>("big").unwrap(), Some(big));
}

#[test]
fn ipv6_servers_are_reachable_when_the_host_has_ipv6() {
    // memcached on [::1] needs an IPv6 loopback; skip the network part where there is none.
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !common::available("IPv6 loopback", ipv6) {
        return;
    }
    let port = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = std::process::Command::new("memcached");
    command.args(["-U", "0", "-l", "::1", "-p", &port.to_string()]);
    // The owner of /proc/self is the process's effective user.
    if std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0) {
        command.args(["-u", "root"]);
    }
    let mut child = command.spawn().unwrap();
    let spec = format!("[::1]:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !testing::is_alive(&spec).0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let result = (|| {
        let mc = Client::new([spec.as_str()])?;
        mc.set("v6", "yes", 0)?;
        assert_eq!(mc.server_for_key("v6")?.to_string(), spec);
        mc.get::<String>("v6")
    })();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(result.unwrap().as_deref(), Some("yes"));
}

#[test]
fn udp_writes_arrive_and_reads_are_refused() {
    let server = Memcached::builder().udp().start().unwrap();
    let tcp = Client::new([server.spec()]).unwrap();
    for binary in [false, true] {
        let udp = Client::builder()
            .servers([server.udp_spec().unwrap()])
            .binary(binary)
            .build()
            .unwrap();
        assert_eq!(udp.servers()[0].transport(), Transport::Udp);
        let k = format!("udp-{binary}");
        udp.set(&k, "sent", 0).unwrap();
        // Datagrams are not acknowledged: wait for the write to land.
        let deadline = Instant::now() + Duration::from_secs(5);
        while tcp.get::<String>(&k).unwrap().is_none() {
            assert!(Instant::now() < deadline, "the UDP write never arrived");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(tcp.get::<String>(&k).unwrap().as_deref(), Some("sent"));

        let not_supported = |err: libmemcached::Error| {
            assert_eq!(
                err.code(),
                Some(libmemcached::ReturnCode::NotSupported),
                "{err:?}"
            );
        };
        not_supported(udp.get::<String>(&k).unwrap_err());
        not_supported(udp.gets::<String>(&k).unwrap_err());
        // A counter's value is in the reply, which UDP writes never get.
        not_supported(udp.incr(&k, 1).unwrap_err());
        not_supported(udp.decr_with_initial(&k, 1, 5, 0).unwrap_err());
        // Bad keys are still refused before sending.
        assert!(matches!(
            udp.set("a b", "v", 0),
            Err(libmemcached::Error::InvalidKey { .. })
        ));
    }
}

#[test]
fn server_level_calls_name_only_the_servers_that_failed_in_that_call() {
    let mut a = common::own_server();
    let mut b = common::own_server();
    let mc = Client::builder()
        .servers([a.spec(), b.spec()])
        .behavior(Behavior::RetryTimeout(Duration::ZERO))
        .build()
        .unwrap();
    mc.flush_all(None).unwrap();
    // b fails once; libmemcached keeps that error on b after b is back.
    b.stop();
    let failed = mc.flush_all(None).unwrap_err();
    assert_eq!(named(&failed), [b.spec()], "{failed}");
    b.restart().unwrap();
    a.stop();
    mc.disconnect_all();
    for _ in 0..2 {
        let failed = mc.flush_all(None).unwrap_err();
        assert_eq!(named(&failed), [a.spec()], "b flushed fine: {failed}");
        let failed = mc.stats(Some("settings")).unwrap_err();
        assert_eq!(named(&failed), [a.spec()], "b answered: {failed}");
    }
}

/// The servers an error names, one per failure.
fn named(error: &libmemcached::Error) -> Vec<String> {
    error
        .failures()
        .iter()
        .map(|f| {
            f.error
                .server()
                .map(ToString::to_string)
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn a_configuration_string_takes_the_builders_settings_on_top() {
    let a = common::own_server();
    let b = common::own_server();
    let config = format!("--SERVER={} --BINARY-PROTOCOL --POLL-TIMEOUT=700", a.spec());
    let mc = Client::builder()
        .config(&config)
        .servers([b.spec()])
        .compression(libmemcached::Compression::new(64))
        .namespace("cfg:")
        .build()
        .unwrap();
    let servers: Vec<String> = mc.servers().iter().map(ToString::to_string).collect();
    assert_eq!(servers, [a.spec(), b.spec()]);
    assert!(
        mc.is_binary(),
        "the string's protocol stays unless binary() is given"
    );
    let poll = mc.behavior_by_name("_poll_timeout").unwrap();
    assert_eq!(poll.as_number(), Some(700));
    // The builder's compression and namespace apply: a long value is stored compressed.
    let long = "z".repeat(10_000);
    mc.set("k", long.as_str(), 0).unwrap();
    assert_eq!(
        mc.get::<String>("k").unwrap().as_deref(),
        Some(long.as_str())
    );
    let holder = mc.server_for_key("k").unwrap().to_string();
    let (flags, stored) = common::raw_get(&holder, "cfg:k").expect("stored under the namespace");
    assert!(stored.len() < 1000 && flags & 8 != 0, "zlib flag: {flags}");

    let ascii = Client::builder()
        .config(&config)
        .binary(false)
        .build()
        .unwrap();
    assert!(!ascii.is_binary());

    // What the string or the builder cannot take is refused, naming why.
    let through_proxy = Client::builder()
        .config(&config)
        .proxy()
        .build()
        .unwrap_err();
    assert!(
        through_proxy.to_string().contains("proxy"),
        "{through_proxy}"
    );
    let bad = Client::builder().config("--SERVER=").build().unwrap_err();
    assert!(
        matches!(bad, libmemcached::Error::InvalidConfig(_)),
        "{bad}"
    );
    let udp = Client::builder()
        .config(&config)
        .servers(["udp:127.0.0.1:1"])
        .build()
        .unwrap_err();
    assert!(udp.to_string().contains("UDP"), "{udp}");
}
