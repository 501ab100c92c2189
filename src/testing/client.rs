//! pylibmc's `pylibmc.test` helpers: [`make_test_client`], [`address_from_env`], [`is_alive`] and
//! [`get_version`], for suites that run against a server started outside the tests.

use std::io;
use std::path::Path;

use super::probe::{ask, ask_udp, connect_tcp, connect_unix};
use crate::{Address, Client, ClientBuilder, Transport};

/// The version a server reports, asked over a fresh connection: `host:port`, `udp:host:port`
/// (one datagram) or a socket path. pylibmc's `get_version`, which speaks TCP only.
pub fn get_version(addr: &str) -> io::Result<String> {
    let reply = if addr.starts_with('/') {
        ask(connect_unix(Path::new(addr))?, "version", "")?
    } else if let Some(udp) = addr.strip_prefix("udp:") {
        ask_udp(udp, "version")?
    } else {
        ask(connect_tcp(addr)?, "version", "")?
    };
    reply
        .trim_end()
        .strip_prefix("VERSION ")
        .map(str::to_owned)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected reply {reply:?}"),
            )
        })
}

/// Whether a server answers, with its version if it does.
pub fn is_alive(addr: &str) -> (bool, Option<String>) {
    match get_version(addr) {
        Ok(version) => (true, Some(version)),
        Err(_) => (false, None),
    }
}

/// Where [`make_test_client`] looks for a server unless the environment says otherwise:
/// pylibmc's default, TCP to `127.0.0.1:11211`.
pub fn default_address() -> Address {
    Address::new(Transport::Tcp, "127.0.0.1", crate::DEFAULT_PORT)
}

/// `defaults` with `MEMCACHED_TYPE` (`tcp`, `udp` or `unix`), `MEMCACHED_HOST` and
/// `MEMCACHED_PORT`, as `env` reads them, taking precedence (empty values count as unset), as
/// pylibmc's test helpers read them. Pass `|name| std::env::var(name).ok()` for the process's
/// environment, or a fake one.
pub fn address_from_env(
    defaults: Address,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Address, TestClientError> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let invalid = |text: String| {
        TestClientError::Config(crate::error::ConfigError::setting("MEMCACHED_*", text))
    };
    let transport = match var("MEMCACHED_TYPE") {
        None => defaults.transport(),
        Some(kind) => match kind.to_ascii_lowercase().as_str() {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            "unix" => Transport::Unix,
            _ => {
                return Err(invalid(format!(
                    "MEMCACHED_TYPE={kind:?}: expected tcp, udp or unix"
                )));
            }
        },
    };
    let host = var("MEMCACHED_HOST").unwrap_or_else(|| defaults.host().to_owned());
    let port = match var("MEMCACHED_PORT") {
        None => defaults.port(),
        Some(port) => port
            .parse()
            .map_err(|_| invalid(format!("MEMCACHED_PORT={port:?}: not a port number")))?,
    };
    Ok(Address::new(transport, host, port))
}

/// Why [`make_test_client`] made no client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestClientError {
    /// No memcached answers at the address (pylibmc's `NotAliveError`).
    #[error(
        "test memcached {address} not alive ({reason}); start one, or set MEMCACHED_HOST and \
         MEMCACHED_PORT (and MEMCACHED_TYPE) to one that runs"
    )]
    NotAlive {
        /// The server spec that was probed.
        address: String,
        /// Why the probe failed.
        reason: String,
    },
    /// A `MEMCACHED_*` variable, or the client's configuration, is unusable.
    #[error(transparent)]
    Config(#[from] crate::Error),
}

/// A client for the test server at `127.0.0.1:11211` or wherever `MEMCACHED_TYPE`,
/// `MEMCACHED_HOST` and `MEMCACHED_PORT` say, if it answers (pylibmc's
/// `pylibmc.test.make_test_client`); [`TestClientError::NotAlive`] if it does not. For a server
/// of the test's own, use [`Memcached`](super::Memcached) instead.
///
/// ```no_run
/// let mc = libmemcached::testing::make_test_client()?;
/// mc.set("k", "v", 0)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn make_test_client() -> Result<Client, TestClientError> {
    make_test_client_with(Client::builder(), default_address(), |name| {
        std::env::var(name).ok()
    })
}

/// [`make_test_client`] with the client's other options in `builder` (its servers are added
/// to), other defaults, and the environment read through `env`.
///
/// ```no_run
/// use libmemcached::{Client, testing::{default_address, make_test_client_with}};
///
/// let fake_env = |name: &str| (name == "MEMCACHED_PORT").then(|| "21211".to_owned());
/// let mc = make_test_client_with(Client::builder().binary(true), default_address(), fake_env)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn make_test_client_with(
    builder: ClientBuilder,
    defaults: Address,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Client, TestClientError> {
    let spec = address_from_env(defaults, env)?.to_string();
    if let Err(err) = get_version(&spec) {
        return Err(TestClientError::NotAlive {
            address: spec,
            reason: err.to_string(),
        });
    }
    Ok(builder.servers([spec]).build()?)
}
