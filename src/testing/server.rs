//! [`TestServer`]: `$MEMCACHED_SERVERS` when set, a [`Memcached`] of its own otherwise.

use std::io;

use super::Memcached;

/// A server for tests that need any plain memcached: `$MEMCACHED_SERVERS` when set, otherwise
/// a process of its own.
#[derive(Debug)]
pub struct TestServer {
    specs: Vec<String>,
    process: Option<Memcached>,
}

impl TestServer {
    /// Uses `$MEMCACHED_SERVERS` (comma-separated specs) or starts a memcached.
    pub fn from_env_or_spawn() -> io::Result<TestServer> {
        if let Some(specs) = servers_from_env() {
            return Ok(TestServer {
                specs,
                process: None,
            });
        }
        let process = Memcached::start()?;
        Ok(TestServer {
            specs: vec![process.spec()],
            process: Some(process),
        })
    }

    /// The first server's spec.
    pub fn spec(&self) -> String {
        self.specs[0].clone()
    }

    /// Every server's spec.
    pub fn specs(&self) -> &[String] {
        &self.specs
    }

    /// Whether the servers come from `$MEMCACHED_SERVERS` (shared, so not to be flushed).
    pub fn is_external(&self) -> bool {
        self.process.is_none()
    }
}

/// The specs in `$MEMCACHED_SERVERS`, if set and not empty.
pub fn servers_from_env() -> Option<Vec<String>> {
    let value = std::env::var("MEMCACHED_SERVERS").ok()?;
    let specs: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!specs.is_empty()).then_some(specs)
}
