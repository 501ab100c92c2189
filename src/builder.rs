//! [`ClientBuilder`]: servers, protocol and behaviors, checked before any connection.

use std::ffi::CString;
use std::fmt;
use std::time::Duration;

use libmemcached_sys as sys;

use crate::behavior::{Behavior, Distribution};
use crate::client::{Client, Settings};
use crate::compression::Compression;
use crate::error::{ConfigError, Error, Result};
use crate::ffi::{Handle, Rc};
use crate::server::{ServerSpec, Transport};

const FAILOVER_FAILURE_LIMIT: u32 = 2;
const FAILOVER_RETRY_TIMEOUT: Duration = Duration::from_secs(1);
const FAILOVER_DEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds a [`Client`].
///
/// ```no_run
/// use std::time::Duration;
/// use libmemcached::{Behavior, Client, Distribution};
///
/// let mc = Client::builder()
///     .servers(["10.0.0.1:11211", "10.0.0.2:11211:2"])
///     .binary(true)
///     .behavior(Behavior::Distribution(Distribution::ConsistentKetama))
///     .behavior(Behavior::ConnectTimeout(Duration::from_millis(500)))
///     .build()?;
/// # Ok::<(), libmemcached::Error>(())
/// ```
///
/// Defaults that differ from libmemcached's: `TCP_NODELAY` is on (libmemcached's binary
/// multi-get stalls about 40 ms on misses without it). Every other behavior starts at
/// libmemcached's default (see [`all_behaviors`](crate::all_behaviors)).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ClientBuilder {
    /// A libmemcached configuration string to start from.
    config: Option<String>,
    servers: Vec<ServerSpec>,
    /// The protocol, if chosen (ASCII otherwise, or what the configuration string says).
    binary: Option<bool>,
    behaviors: Vec<Behavior>,
    settings: Settings,
    namespace: Option<Vec<u8>>,
    sasl: Option<crate::sasl::Credentials>,
    proxy: bool,
    /// Connections go through the relay: the shield, and TLS where given.
    #[cfg(feature = "shield")]
    shield: bool,
    #[cfg(feature = "tls")]
    tls: Option<crate::Tls>,
    /// The first malformed spec or behavior given, returned by `build`.
    refused: Option<Error>,
}

impl ClientBuilder {
    /// Adds servers in pylibmc's spec syntax (see [`ServerSpec`]). A malformed spec is an error
    /// naming it, returned by [`build`](Self::build).
    pub fn servers<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for spec in servers {
            match spec.as_ref().parse() {
                Ok(spec) => self.servers.push(spec),
                Err(error) => self.refuse(error),
            }
        }
        self
    }

    /// Keeps the first error of the chain for `build`.
    fn refuse(&mut self, error: Error) {
        self.refused.get_or_insert(error);
    }

    /// Adds a parsed server.
    pub fn server(mut self, spec: ServerSpec) -> Self {
        self.servers.push(spec);
        self
    }

    /// Uses the binary protocol (default: ASCII). It accepts any byte in keys, and SASL needs it.
    pub fn binary(mut self, binary: bool) -> Self {
        self.binary = Some(binary);
        self
    }

    /// Starts from a libmemcached configuration string, such as
    /// `--SERVER=10.0.0.1:11211 --SERVER=10.0.0.2 --BINARY-PROTOCOL`, read and checked as
    /// [`Client::from_config`] reads it. The builder's other settings apply on top: servers
    /// added to the string's, the protocol if [`binary`](Self::binary) is given, behaviors,
    /// namespace, SASL, and what a configuration string cannot say (compression, value
    /// format, inflate limit, [`proxy`](Self::proxy)).
    ///
    /// ```no_run
    /// use libmemcached::{Client, Compression};
    ///
    /// let mc = Client::builder()
    ///     .config("--SERVER=127.0.0.1:22121 --POLL-TIMEOUT=500")
    ///     .proxy()
    ///     .compression(Compression::new(2048))
    ///     .build()?;
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn config(mut self, config: impl Into<String>) -> Self {
        self.config = Some(config.into());
        self
    }

    /// Sets a behavior; later settings win. (`KetamaWeighted` resets the hash to MD5, so a
    /// `Hash` meant to stay goes after it.) `RemoveFailedServers` is applied after the
    /// distribution and dead timeout it needs, whenever it is given.
    pub fn behavior(mut self, behavior: Behavior) -> Self {
        self.behaviors.push(behavior);
        self
    }

    /// Sets a behavior by pylibmc name with a raw value in libmemcached's unit, such as
    /// `("connect_timeout", 4000)` or `("hash", "fnv1a_32")`; see [`Behavior::from_name`].
    /// An unknown name or a bad value is an error returned by [`build`](Self::build).
    pub fn behavior_by_name(mut self, name: &str, value: impl fmt::Display) -> Self {
        match Behavior::from_name(name, value) {
            Ok(behavior) => self.behavior(behavior),
            Err(error) => {
                self.refuse(error);
                self
            }
        }
    }

    /// Sets behaviors by pylibmc name, as pylibmc's `behaviors={...}`; every unknown name is
    /// listed in one error, returned by [`build`](Self::build).
    pub fn behaviors_by_name<I, N, V>(mut self, behaviors: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<str>,
        V: fmt::Display,
    {
        match crate::behavior::parse_named(behaviors) {
            Ok(parsed) => self.behaviors.extend(parsed),
            Err(error) => self.refuse(error),
        }
        self
    }

    /// Fails over: when a server stops answering, its keys move to the other servers until it
    /// is back. It sets, before any behavior you set yourself (which wins):
    ///
    /// | behavior | value | why |
    /// |---|---|---|
    /// | [`Distribution`] | [`ConsistentKetama`](Distribution::ConsistentKetama) | modula never routes around a server, and ketama moves only the failed server's keys |
    /// | [`RemoveFailedServers`](Behavior::RemoveFailedServers) | on | take a failed server out of the ring |
    /// | [`ServerFailureLimit`](Behavior::ServerFailureLimit) | 2 | the first failure and one failed retry remove it |
    /// | [`RetryTimeout`](Behavior::RetryTimeout) | 1 s | how long before that retry |
    /// | [`DeadTimeout`](Behavior::DeadTimeout) | 60 s | how long it stays out before it is tried again |
    ///
    /// pylibmc's recipe (`ketama`, `remove_failed`, `retry_timeout=1`, `dead_timeout=60`)
    /// leaves the failure limit at 5, so a dead server's keys fail for 5 to 10 seconds (five
    /// retry windows) before they are rerouted; users took that for failover not working. With
    /// a limit of 2 the keys of a killed server fail for 1 to 2 seconds (measured in
    /// `tests/cluster.rs`; see the guide's [Running a cluster](crate::guide::cluster)).
    ///
    /// While a server is out, the keys it owned live on other servers. If it comes back with
    /// its old data (it was unreachable, not restarted), reads of keys written elsewhere in
    /// between can return its stale values; short expirations limit that.
    ///
    /// ```no_run
    /// let mc = libmemcached::Client::builder()
    ///     .servers(["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"])
    ///     .failover()
    ///     .build()?;
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn failover(mut self) -> Self {
        let preset = [
            Behavior::Distribution(Distribution::ConsistentKetama),
            Behavior::ServerFailureLimit(FAILOVER_FAILURE_LIMIT),
            Behavior::RetryTimeout(FAILOVER_RETRY_TIMEOUT),
            Behavior::DeadTimeout(FAILOVER_DEAD_TIMEOUT),
            Behavior::RemoveFailedServers(true),
        ];
        self.behaviors.splice(0..0, preset);
        self
    }

    /// Authenticates with SASL (a memcached started with `-S`) as `username`. SASL needs the
    /// binary protocol, so this turns it on whatever [`binary`](Self::binary) says. Clones and
    /// pool members keep the credentials; `Debug` never shows the password.
    ///
    /// [`build`](Self::build) refuses, before any connection, an empty username or password,
    /// UDP and unix socket servers, and a libmemcached built without SASL
    /// ([`support_sasl`](crate::support_sasl)).
    /// A wrong password is an error for which [`Error::is_auth`] is true, from the first
    /// operation; nothing is read or written.
    ///
    /// ```no_run
    /// let mc = libmemcached::Client::builder()
    ///     .servers(["10.0.0.1:11211"])
    ///     .sasl("app", "secret")
    ///     .build()?;
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn sasl(mut self, username: &str, password: &str) -> Self {
        self.sasl = Some(crate::sasl::Credentials::new(username, password));
        self
    }

    /// The servers are proxies that spread keys over memcached servers behind them, such as
    /// [twemproxy](https://github.com/twitter/twemproxy) (`nutcracker`), not memcached itself.
    ///
    /// Key operations go through as usual: get, gets, the storage commands, cas, delete, touch,
    /// counters and the multi-key forms. What a proxy cannot serve is refused before anything
    /// is sent, with a [`ReturnCode::NotSupported`](crate::ReturnCode::NotSupported) error that
    /// says it is not supported through a proxy: [`Client::stats`] and [`Client::flush_all`]
    /// (twemproxy closes the connection on them; ask the memcached servers behind it directly).
    /// [`build`](Self::build) refuses the binary protocol and SASL, which twemproxy does not
    /// speak. [`Client::bulk_set`] takes memcached's default item size limit (1 MiB) instead of
    /// asking the servers for it. [`Client::version`] is the version of the memcached server
    /// the proxy forwarded the request to.
    ///
    /// A `SERVER_ERROR` the proxy sends for a key (twemproxy does when the memcached server
    /// that holds it is down) is an error that says so, never a miss. twemproxy fails a whole
    /// multi-get that touches such a server; the client then asks each of its keys alone, so
    /// that only that server's keys fail. Those requests go out together, each on a
    /// connection of its own (up to 32 at once), so a server that hangs behind the proxy costs
    /// one more proxy timeout per 32 keys, not one per key.
    ///
    /// ```no_run
    /// let mc = libmemcached::Client::builder()
    ///     .servers(["127.0.0.1:22121"])          // twemproxy's listen address
    ///     .proxy()
    ///     .build()?;
    /// mc.set("greeting", "hello", 0)?;
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn proxy(mut self) -> Self {
        self.proxy = true;
        self
    }

    /// Puts the shield between libmemcached and the servers: an in-process relay that reads
    /// every reply before libmemcached does and passes on only well-formed answers to the
    /// requests it forwarded, in both protocols. A reply that is not (an over-long key, a
    /// length past the value size limit or below zero, a value where a write's answer belongs,
    /// a reply for another key, anything unasked) closes that connection: libmemcached sees
    /// the server fail, never the bytes that would have crashed it, and the error names the
    /// server and what it sent.
    ///
    /// Keys stay where they are without the shield: libmemcached keeps every server's name
    /// and port (its consistent distributions hash them), and only its connections go to the
    /// relay's loopback listener for each server. Failover, dead-server marking and
    /// `RetryTimeout` work as without it. One thread serves every connection of the client,
    /// its clones and pools. TCP servers only: [`build`](Self::build) refuses UDP and unix
    /// sockets with it.
    ///
    /// ```no_run
    /// let mc = libmemcached::Client::builder()
    ///     .servers(["10.0.0.1:11211", "10.0.0.2:11211"])
    ///     .shield()
    ///     .build()?;
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    #[cfg(feature = "shield")]
    #[cfg_attr(docsrs, doc(cfg(feature = "shield")))]
    pub fn shield(mut self) -> Self {
        self.shield = true;
        self
    }

    /// Speaks TLS to the servers (memcached's `-Z`, managed caches with in-transit
    /// encryption), with rustls: the relay of [`shield`](Self::shield) (which this implies)
    /// carries each connection to its server over TLS, checking the server's certificate as
    /// [`Tls`](crate::Tls) says. A certificate that does not verify fails that server with an
    /// error that says why (unknown authority, expired, not valid for the name, a client
    /// certificate required, a server that answers in plaintext).
    ///
    /// ```no_run
    /// use libmemcached::{Client, Tls};
    ///
    /// let mc = Client::builder()
    ///     .servers(["cache.internal:11211"])
    ///     .tls(Tls::new().ca_file("/etc/memcached/ca.pem"))
    ///     .build()?;
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, tls: crate::Tls) -> Self {
        self.tls = Some(tls);
        self.shield = true;
        self
    }

    /// A namespace libmemcached puts in front of every key of every operation (and takes off
    /// the keys it returns). The 250-byte key limit counts it. At most 127 bytes.
    pub fn namespace(mut self, namespace: impl AsRef<[u8]>) -> Self {
        self.namespace = Some(namespace.as_ref().to_vec());
        self
    }

    /// Compresses values with zlib as pylibmc does (off by default); see [`Compression`].
    pub fn compression(mut self, compression: Compression) -> Self {
        self.settings.compression = compression;
        self
    }

    /// Stores and reads values in pylibmc's format (the default) or PHP's `memcached`
    /// extension's; see [`ValueFormat`](crate::ValueFormat) and [`crate::php`].
    pub fn value_format(mut self, format: crate::ValueFormat) -> Self {
        self.settings.format = format;
        self
    }

    /// The most bytes a compressed value may inflate to
    /// ([`DEFAULT_MAX_INFLATED_LEN`](crate::DEFAULT_MAX_INFLATED_LEN) by default); a value that
    /// inflates to more is an [`Error::Decompress`], so a corrupt or hostile value cannot
    /// exhaust memory. It is also the budget of one call: the values of one `get_multi`
    /// inflate to at most this much together, and those past it fail with
    /// [`Error::Decompress`] (each alone in the `_partial` forms). A `set` that would store a
    /// compressed value larger than this (or than the default, if larger) is refused, since no
    /// reader could inflate it.
    pub fn max_inflated_len(mut self, len: usize) -> Self {
        self.settings.max_inflated_len = len;
        self
    }

    /// Whether sets taken together ([`Client::set_multi`], the sets an
    /// [`AsyncClient`](crate::AsyncClient) worker takes at once) go out together, one round
    /// trip per server, each still getting its own answer. They go on a connection of their own
    /// that speaks the binary protocol, the only one in which libmemcached can read the answers
    /// of sets sent together. On by default for a binary client ([`binary`](Self::binary)),
    /// off for an ASCII one: turn it on only if the servers speak the binary protocol too
    /// (memcached does unless started with `-B ascii`; such a server would read the binary
    /// requests as text, and a value's line breaks as commands). Through a proxy (see
    /// [`proxy`](Self::proxy)), over UDP, with noreply, replicas or a random distribution the
    /// sets go one by one whatever this says.
    pub fn sets_together(mut self, on: bool) -> Self {
        self.settings.sets_together = Some(on);
        self
    }

    /// Creates the client. No connection is opened yet.
    pub fn build(self) -> Result<Client> {
        self.build_client()
            .inspect_err(crate::trace::config_refused)
    }

    fn build_client(self) -> Result<Client> {
        if let Some(error) = self.refused {
            return Err(error);
        }
        if self.servers.is_empty() && self.config.is_none() {
            return Err(Error::InvalidConfig(ConfigError::NoServers));
        }
        let through_proxy = |binary: bool| match self.proxy && (binary || self.sasl.is_some()) {
            true => Err(Error::InvalidConfig(ConfigError::Conflict(
                "the binary protocol (and SASL, which needs it) is not supported through a proxy: \
                 twemproxy speaks only ASCII"
                    .into(),
            ))),
            false => Ok(()),
        };
        through_proxy(self.binary == Some(true))?;
        let udp = self
            .servers
            .iter()
            .filter(|s| s.transport() == Transport::Udp)
            .count();
        let odd = self
            .servers
            .iter()
            .find(|s| s.transport() != Transport::Udp);
        if let Some(odd) = odd.filter(|_| udp != 0) {
            return Err(Error::InvalidServerSpec {
                spec: odd.to_string(),
                reason: "UDP servers cannot be mixed with TCP or unix socket servers".into(),
            });
        }
        if let Some(udp) = self
            .servers
            .iter()
            .find(|s| s.transport() == Transport::Udp)
        {
            if self.config.is_some() {
                return Err(Error::InvalidServerSpec {
                    spec: udp.to_string(),
                    reason: "UDP servers cannot join a configuration string's servers".into(),
                });
            }
        }
        for behavior in &self.behaviors {
            behavior.to_raw()?;
        }

        let mut client = match &self.config {
            Some(config) => Client::parse_config(config)?,
            None => Client::from_handle(Handle::new()?),
        };
        if udp != 0 {
            client.set_flag(sys::MEMCACHED_BEHAVIOR_USE_UDP, true)?;
        }
        if let Some(binary) = self.binary {
            client.set_flag(sys::MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, binary)?;
        }
        if let Some(credentials) = &self.sasl {
            let mut servers = client.servers();
            servers.extend(self.servers.iter().map(|s| s.address().clone()));
            credentials.check(&servers)?;
            credentials.apply(&client)?;
        }
        through_proxy(client.is_binary())?;
        client.settings = self.settings;
        client.handle.set_proxy(self.proxy);
        client.set_behavior(Behavior::TcpNoDelay(true))?;
        let mut behaviors = self.behaviors;
        crate::behavior::apply_order(&mut behaviors);
        for behavior in behaviors {
            client.set_behavior(behavior)?;
        }
        client.check_ring_size(false, client.servers().len() + self.servers.len())?;
        for spec in &self.servers {
            add_server(&client, spec)?;
        }
        client.check_behaviors()?;
        if let Some(namespace) = &self.namespace {
            set_namespace(&client, namespace)?;
        }
        #[cfg(feature = "shield")]
        if self.shield {
            #[cfg(feature = "tls")]
            let tls = self.tls.as_ref().map(crate::Tls::connector).transpose();
            #[cfg(feature = "tls")]
            let tls = tls.map_err(|why| ConfigError::setting("tls", why))?;
            let settings = crate::relay::Settings {
                max_value: crate::relay::MAX_VALUE,
                #[cfg(feature = "tls")]
                tls,
            };
            crate::relay::shield(&mut client, settings)?;
        }
        Ok(client)
    }
}

fn set_namespace(client: &Client, namespace: &[u8]) -> Result<()> {
    /// libmemcached's limit (MEMCACHED_PREFIX_KEY_MAX_SIZE).
    const MAX: usize = 127;
    let invalid = |why: &str| {
        ConfigError::setting(format!("namespace {}", crate::key::display(namespace)), why)
    };
    if namespace.len() > MAX {
        return Err(invalid("longer than 127 bytes"));
    }
    client.check_key(namespace).map_err(|e| match e {
        Error::InvalidKey { reason, .. } => invalid(&reason.to_string()),
        other => other,
    })?;
    let namespace = CString::new(namespace).map_err(|_| invalid("contains a NUL byte"))?;
    let rc = client.handle.set_namespace(&namespace);
    if rc != Rc::SUCCESS {
        return Err(invalid(&rc.code().to_string()));
    }
    Ok(())
}

fn add_server(client: &Client, spec: &ServerSpec) -> Result<()> {
    let rc = client.handle.add_server(spec)?;
    if rc != Rc::SUCCESS {
        return Err(Error::InvalidServerSpec {
            spec: spec.to_string(),
            reason: format!("libmemcached refused it: {}", rc.code()),
        });
    }
    Ok(())
}
