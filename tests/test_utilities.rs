//! `libmemcached::testing`'s pylibmc-style helpers: `make_test_client` with its environment
//! overrides, `is_alive` and `get_version`, against real memcached processes.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libmemcached::testing::{
    self, Memcached, TestClientError, address_from_env, default_address, make_test_client_with,
};
use libmemcached::{Address, Client, Error, Transport};

/// A fake environment holding `vars`.
fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.get(name).cloned()
}

#[test]
fn make_test_client_follows_memcached_host_port_and_type() {
    let server = common::own_server();
    let port = server.port().unwrap().to_string();
    let mc = make_test_client_with(
        Client::builder(),
        default_address(),
        env(&[("MEMCACHED_PORT", &port)]),
    )
    .unwrap();
    assert_eq!(mc.servers()[0].to_string(), server.spec());
    mc.set("made", "for a test", 0).unwrap();
    assert_eq!(
        Client::new([server.spec()])
            .unwrap()
            .get::<String>("made")
            .unwrap()
            .as_deref(),
        Some("for a test")
    );

    // The defaults given are overridden by the environment, host included.
    let defaults = Address::new(Transport::Tcp, "192.0.2.1", 1);
    let mc = make_test_client_with(
        Client::builder().binary(true),
        defaults,
        env(&[("MEMCACHED_HOST", "127.0.0.1"), ("MEMCACHED_PORT", &port)]),
    )
    .unwrap();
    assert!(mc.is_binary(), "the builder's options are kept");
    assert_eq!(
        mc.get::<String>("made").unwrap().as_deref(),
        Some("for a test")
    );

    let unix = Memcached::start_unix().unwrap();
    let mc = make_test_client_with(
        Client::builder(),
        default_address(),
        env(&[("MEMCACHED_TYPE", "unix"), ("MEMCACHED_HOST", &unix.spec())]),
    )
    .unwrap();
    assert_eq!(mc.servers()[0].transport(), Transport::Unix);
    mc.set("over-a-socket", 1u64, 0).unwrap();
    assert_eq!(mc.get::<u64>("over-a-socket").unwrap(), Some(1));
}

#[test]
fn make_test_client_reaches_udp_servers_with_a_datagram_probe() {
    let server = Memcached::builder().udp().start().unwrap();
    let port = server.port().unwrap().to_string();
    let udp_spec = server.udp_spec().unwrap();
    let (alive, version) = testing::is_alive(&udp_spec);
    assert!(alive);
    assert_eq!(version, testing::get_version(&server.spec()).ok());

    let mc = make_test_client_with(
        Client::builder(),
        default_address(),
        env(&[("MEMCACHED_TYPE", "UDP"), ("MEMCACHED_PORT", &port)]),
    )
    .unwrap();
    assert_eq!(mc.servers()[0].transport(), Transport::Udp);
    mc.set("by-datagram", "arrived", 0).unwrap();
    let tcp = Client::new([server.spec()]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while tcp.get::<String>("by-datagram").unwrap().is_none() {
        assert!(Instant::now() < deadline, "the UDP write never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }

    // A TCP-only server does not answer datagrams.
    let tcp_only = common::own_server();
    let spec = format!("udp:{}", tcp_only.spec());
    assert_eq!(testing::is_alive(&spec), (false, None));
}

#[test]
fn a_server_that_does_not_answer_is_not_alive() {
    let mut server = common::own_server();
    let port = server.port().unwrap().to_string();
    server.stop();
    let err = make_test_client_with(
        Client::builder(),
        default_address(),
        env(&[("MEMCACHED_PORT", &port)]),
    )
    .unwrap_err();
    match &err {
        TestClientError::NotAlive { address, .. } => assert_eq!(*address, server.spec()),
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("test memcached {} not alive", server.spec())),
        "{text}"
    );
    assert!(text.contains("MEMCACHED_HOST"), "{text}");

    let err = make_test_client_with(
        Client::builder(),
        default_address(),
        env(&[
            ("MEMCACHED_TYPE", "unix"),
            ("MEMCACHED_HOST", "/nonexistent/mc.sock"),
        ]),
    )
    .unwrap_err();
    assert!(matches!(err, TestClientError::NotAlive { .. }), "{err:?}");
}

#[test]
fn unusable_environment_values_are_configuration_errors() {
    for vars in [
        [("MEMCACHED_PORT", "eleven")],
        [("MEMCACHED_PORT", "70000")],
        [("MEMCACHED_TYPE", "sctp")],
    ] {
        let err =
            make_test_client_with(Client::builder(), default_address(), env(&vars)).unwrap_err();
        match err {
            TestClientError::Config(Error::InvalidConfig(why)) => {
                let why = why.to_string();
                assert!(why.contains(vars[0].0), "{why}")
            }
            other => panic!("{vars:?}: {other:?}"),
        }
    }
    // Empty values count as unset.
    let address = address_from_env(
        default_address(),
        env(&[("MEMCACHED_HOST", ""), ("MEMCACHED_PORT", "")]),
    )
    .unwrap();
    assert_eq!(address, default_address());
}

#[test]
fn test_addresses_spell_every_transport_as_a_server_spec() {
    let tcp = default_address();
    assert_eq!(tcp.to_string(), "127.0.0.1:11211");
    let v6 = Address::new(Transport::Tcp, "::1", 11300);
    assert_eq!(v6.to_string(), "[::1]:11300");
    let udp = Address::new(Transport::Udp, "127.0.0.1", 11211);
    assert_eq!(udp.to_string(), "udp:127.0.0.1:11211");
    let unix = Address::new(Transport::Unix, "/run/mc.sock", 0);
    assert_eq!(unix.to_string(), "/run/mc.sock");
    for address in [tcp, v6, udp, unix] {
        assert!(
            address
                .to_string()
                .parse::<libmemcached::ServerSpec>()
                .is_ok()
        );
    }
}
