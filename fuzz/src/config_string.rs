//! libmemcached configuration strings: `Client::from_config` never panics or aborts (no server
//! is contacted while building), and a client it builds has servers, reads every behavior back
//! in a form `Behavior::from_name` takes, and (up to eight servers) clones to the same servers
//! and behaviors.

use libmemcached::{Behavior, Client};

/// Checks one input, taken as text.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let client = match Client::from_config(text) {
        Ok(client) => client,
        Err(e) => {
            assert!(e.is_invalid_input(), "{text:?}: {e}");
            return;
        }
    };
    let servers = client.servers();
    assert!(!servers.is_empty(), "{text:?}: a client without servers");
    let behaviors = client.behaviors();
    for (name, value) in &behaviors {
        if let Err(e) = Behavior::from_name(name, value) {
            panic!("{text:?}: behavior {name} = {value} does not parse back: {e}");
        }
    }
    // Cloning is as costly as building: small clients only (see elasticache.rs).
    if servers.len() > 8 {
        return;
    }
    let clone = client
        .try_clone()
        .unwrap_or_else(|e| panic!("{text:?}: clone: {e}"));
    assert_eq!(clone.servers(), servers, "{text:?}");
    assert_eq!(clone.behaviors(), behaviors, "{text:?}");
    assert_eq!(clone.is_binary(), client.is_binary(), "{text:?}");
}
