//! Server specs: a spec that parses displays as text that parses back to an equal spec, its
//! address likewise, and a client built with it reports the same address back from
//! libmemcached.

use libmemcached::{Address, Client, ServerSpec, Transport};

/// Checks one input (taken as text; other bytes are not a `&str`).
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(address) = text.parse::<Address>() {
        let shown = address.to_string();
        let back: Address = shown
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} displays as {shown:?}, which fails: {e}"));
        assert_eq!(back, address, "{text:?} -> {shown:?}");
    }
    let Ok(spec) = text.parse::<ServerSpec>() else {
        return;
    };
    assert!(spec.weight() >= 1, "{text:?}: weight {}", spec.weight());
    match spec.transport() {
        Transport::Unix => assert_eq!(spec.port(), 0, "{text:?}"),
        Transport::Tcp | Transport::Udp => assert_ne!(spec.port(), 0, "{text:?}"),
    }
    let shown = spec.to_string();
    let back: ServerSpec = shown
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} displays as {shown:?}, which fails: {e}"));
    assert_eq!(back, spec, "{text:?} -> {shown:?}");
    assert_eq!(back.to_string(), shown, "display is stable");
    let address = spec.address().to_string();
    assert_eq!(
        address.parse::<Address>().ok().as_ref(),
        Some(spec.address()),
        "{text:?}: address {address:?}"
    );

    // libmemcached takes the spec as parsed and gives the same address back (no connection
    // is made while building).
    match Client::builder().server(spec.clone()).build() {
        Ok(client) => assert_eq!(client.servers(), [spec.address().clone()], "{text:?}"),
        Err(e) => assert!(e.is_invalid_input(), "{text:?}: {e}"),
    }
}
