//! ElastiCache configurations: `ClusterConfig::parse` never panics; a configuration it accepts
//! has nodes whose specs parse as TCP servers with the node's port, prints (version line, then
//! the nodes) as text that parses back to it, and builds a client with a server per node (for
//! clusters of up to eight nodes).

use libmemcached::elasticache::ClusterConfig;
use libmemcached::{ServerSpec, Transport};

/// Clusters of up to this many nodes are also built into clients.
const MAX_BUILT: usize = 8;

/// Checks one input.
pub fn check(data: &[u8]) {
    let Ok(config) = ClusterConfig::parse(data) else {
        return;
    };
    assert!(!config.nodes().is_empty(), "a configuration without nodes");
    for node in config.nodes() {
        let spec: ServerSpec = node
            .spec()
            .parse()
            .unwrap_or_else(|e| panic!("{node}: spec {:?} does not parse: {e}", node.spec()));
        assert_eq!(spec.transport(), Transport::Tcp, "{node}");
        assert_eq!(spec.port(), node.port(), "{node}");
        assert_ne!(node.port(), 0, "{node}");
        match node.ip() {
            Some(ip) => assert_eq!(spec.host().parse().ok(), Some(ip), "{node}"),
            None => assert_eq!(spec.host(), node.hostname(), "{node}"),
        }
    }
    let nodes: Vec<String> = config.nodes().iter().map(ToString::to_string).collect();
    let text = format!("{}\n{}\n", config.version(), nodes.join(" "));
    let back = ClusterConfig::parse(text.as_bytes())
        .unwrap_or_else(|e| panic!("{config:?} prints as {text:?}, which fails: {e}"));
    assert_eq!(back, config, "{text:?}");
    // Building makes no connection and resolves no name. (Small clusters only: libmemcached
    // keeps 16 KiB of buffers per server and grows its array a server at a time, which under
    // AddressSanitizer costs a fresh mapping per input for large ones.)
    if config.nodes().len() <= MAX_BUILT {
        match config.builder().build() {
            Ok(client) => assert_eq!(client.servers().len(), config.nodes().len()),
            Err(e) => panic!("{config:?}: no client: {e}"),
        }
    } else {
        for spec in config.specs() {
            if let Err(e) = spec.parse::<libmemcached::ServerSpec>() {
                panic!("{config:?}: {spec:?} does not parse: {e}");
            }
        }
    }
}
