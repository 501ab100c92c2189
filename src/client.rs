//! [`Client`]: owns one libmemcached handle; single-key operations.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use libmemcached_sys as sys;

use crate::behavior::Behavior;
use crate::builder::ClientBuilder;
use crate::compression::{Compression, DEFAULT_MAX_INFLATED_LEN};
use crate::error::{ConfigError, Error, KeyFailure, Result};
use crate::expiration::Expiration;
use crate::ffi::{self, Handle, Rc, ReturnCode, clean_message};
use crate::key;
use crate::metrics::Counters;
use crate::server::Address;

/// A memcached client: one libmemcached handle and its connections.
///
/// Connections open lazily, on the first operation that needs a server. A miss is `Ok(None)`;
/// results are the same in the ASCII and binary protocols.
///
/// Over UDP (`udp:host:port` servers) only writes work, and they are fire-and-forget:
/// libmemcached 1.1 reads no replies there, so `set`, `add`, `replace`, `append`, `prepend`,
/// `cas`, `delete` and `flush_all` report success once sent, whether or not the server stored
/// anything, and everything whose result is in a reply (`get`, `gets`, `get_multi`, `incr`,
/// `decr`, `touch`, `stats`, `version`) is a [`ReturnCode::NotSupported`] error, refused before
/// anything is sent.
///
/// `Client` is [`Send`] but not [`Sync`]: a libmemcached handle must never be used by two threads
/// at once. Give each thread its own client with [`Client::try_clone`].
pub struct Client {
    pub(crate) handle: Handle,
    pub(crate) settings: Settings,
    /// A second handle for bulk loads (noreply, buffered), made on first use and dropped when a
    /// behavior changes, so that it always maps keys to the same servers as this one.
    pub(crate) bulk: RefCell<Option<Box<crate::keyspace::Bulk>>>,
    /// Clones that ask again, each alone, the keys of a multi-get a proxy failed whole (see
    /// `keyspace::multi`), kept for the next such multi-get and dropped with the connections
    /// or when a behavior changes.
    pub(crate) asked_again: RefCell<Vec<Handle>>,
    /// A clone that sends sets together (see `keyspace::pipeline`), made on first use and
    /// dropped with the connections or when a behavior changes.
    pub(crate) pipe: RefCell<Option<Handle>>,
    /// Servers found not to demand SASL (see `sasl::AuthProbe`).
    pub(crate) auth_probe: crate::sasl::AuthProbe,
    /// What it counts (see [`Client::metrics`]), shared with the pool that holds it.
    pub(crate) counters: Arc<Counters>,
    /// Set while `get_multi_each` hands items to its callback: replies are still owed then, and
    /// any other request on the handle would make libmemcached drop them.
    pub(crate) streaming: Cell<bool>,
    /// Set when `disconnect_all` is called while streaming: the connections close when the
    /// multi-get has read every reply (closing them then would lose the replies still owed).
    pub(crate) quit_after_streaming: Cell<bool>,
    /// The `get_or_set_with` loads in flight, shared with the client's clones.
    pub(crate) flights: Arc<crate::cache_aside::Flights>,
}

/// What the client does itself, beside libmemcached: compression and its limits, and the
/// value format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub compression: Compression,
    pub max_inflated_len: usize,
    pub format: crate::ValueFormat,
    /// Whether sets taken together go out together (see `keyspace::pipeline`); by default,
    /// only for a binary client.
    pub sets_together: Option<bool>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            compression: Compression::OFF,
            max_inflated_len: DEFAULT_MAX_INFLATED_LEN,
            format: crate::ValueFormat::Pylibmc,
            sets_together: None,
        }
    }
}

impl Client {
    /// A client for `servers`, in pylibmc's spec syntax (see [`ServerSpec`](crate::ServerSpec)),
    /// with default behaviors.
    ///
    /// ```no_run
    /// let mc = libmemcached::Client::new(["10.0.0.1:11211", "10.0.0.2:11211:2"])?;
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn new<I, S>(servers: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Client::builder().servers(servers).build()
    }

    /// A builder for a client with non-default behaviors.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client from a libmemcached configuration string, such as
    /// `--SERVER=10.0.0.1:11211 --SERVER=10.0.0.2 --BINARY-PROTOCOL`.
    ///
    /// Options that can abort the process or desynchronise connections (`--BUFFER-REQUESTS`,
    /// `--NOREPLY` with the binary protocol) are refused, and so are the ports and numbers that
    /// [`ClientBuilder::servers`] and the typed behaviors refuse (libmemcached's parser would
    /// keep them modulo 2^16 or 2^32), with the same errors.
    pub fn from_config(config: &str) -> Result<Client> {
        Client::parse_config(config).inspect_err(crate::trace::config_refused)
    }

    pub(crate) fn parse_config(config: &str) -> Result<Client> {
        let invalid = |reason: String| {
            Error::InvalidConfig(ConfigError::ConfigString {
                config: config.to_owned(),
                reason,
            })
        };
        if config.trim().is_empty() || config.contains('\0') {
            return Err(invalid("an empty configuration or a NUL byte".into()));
        }
        precheck_config(config).map_err(|why| invalid(why.into()))?;
        check_config_numbers(config).map_err(invalid)?;
        ffi::check_configuration(config).map_err(|message| invalid(clean_message(&message)))?;
        let client = Client::from_handle(Handle::from_config(config)?);
        // libmemcached builds the ring as each server comes and keeps it when a later option
        // changes the hash (`--HASH=MD5` after `--SERVER=`): build it with the final settings,
        // as the builder and clones do (found by fuzzing: a clone placed keys elsewhere).
        client.check(client.handle.rebuild_ring(), None)?;
        if client.servers().is_empty() {
            return Err(invalid("no servers".into()));
        }
        if client.behavior_raw(sys::MEMCACHED_BEHAVIOR_BUFFER_REQUESTS) != 0 {
            return Err(invalid(
                "--BUFFER-REQUESTS can abort the process under load".into(),
            ));
        }
        if client.is_binary() && client.behavior_raw(sys::MEMCACHED_BEHAVIOR_NOREPLY) != 0 {
            return Err(invalid(
                "--NOREPLY with --BINARY-PROTOCOL loses replies after any server error".into(),
            ));
        }
        // The builder's checks too: every behavior the string set, as if set by name.
        for (name, value) in client.behaviors() {
            Behavior::from_name(name, value)
                .and_then(|behavior| behavior.prepare(&client))
                .map_err(|err| invalid(err.to_string()))?;
        }
        client
            .check_behaviors()
            .map_err(|err| invalid(err.to_string()))?;
        client.set_behavior(Behavior::TcpNoDelay(true))?;
        Ok(client)
    }

    pub(crate) fn from_handle(handle: Handle) -> Client {
        Client {
            handle,
            settings: Settings::default(),
            bulk: RefCell::new(None),
            asked_again: RefCell::default(),
            pipe: RefCell::default(),
            auth_probe: Default::default(),
            counters: Counters::new(),
            streaming: Cell::new(false),
            quit_after_streaming: Cell::new(false),
            flights: Arc::default(),
        }
    }

    // ---- servers -------------------------------------------------------------------------

    /// Removes every item from every server, after `delay` if given.
    ///
    /// Servers that fail make the call fail with [`Error::Multi`] naming each. Through a proxy
    /// ([`ClientBuilder::proxy`]) it is refused before anything is sent. In the binary
    /// protocol, a server that refuses to flush (memcached started with `-F`) goes unnoticed:
    /// libmemcached discards its answer.
    pub fn flush_all(&self, delay: Option<Duration>) -> Result<()> {
        self.call("flush_all", || self.flush_servers(delay))
    }

    fn flush_servers(&self, delay: Option<Duration>) -> Result<()> {
        self.refuse_through_proxy(
            "flush_all",
            "twemproxy closes the connection on it; flush each memcached server behind the proxy",
        )?;
        let delay = delay.map_or(0, |d| Expiration::After(d).to_wire());
        let rc = self.handle.flush(delay);
        // libmemcached sums the servers' failures up as SOME ERRORS, and its binary flush drops
        // each server's code (a reset or a timeout passes for flushed); either way the failures
        // are recorded on the servers: name each.
        let binary_success = rc == Rc::SUCCESS && self.is_binary();
        if rc.code() != ReturnCode::SomeErrors && !binary_success {
            return self.check(rc, None);
        }
        let failures: Vec<KeyFailure> = (0..self.handle.server_count())
            .filter(|&i| self.handle.server_failed(i))
            .map(|i| self.server_failure(i, (ReturnCode::Failure, "flush_all failed")))
            .collect();
        if failures.is_empty() && binary_success {
            return Ok(());
        }
        self.handle.quit();
        if failures.is_empty() {
            return Err(self.error(rc, None));
        }
        Err(Error::Multi { failures })
    }

    /// Each server's version, in server order, asked afresh (the connections are reopened).
    /// An unreachable server is an error naming it. Through a proxy
    /// ([`ClientBuilder::proxy`]) it is the version of the memcached server the proxy forwarded
    /// the request to.
    pub fn version(&self) -> Result<Vec<(Address, String)>> {
        self.call("version", || self.ask_versions())
    }

    fn ask_versions(&self) -> Result<Vec<(Address, String)>> {
        self.refuse_over_udp("version")?;
        // libmemcached asks only servers whose version it does not know yet, and forgets it
        // when a connection closes: start afresh, so a server that died since answers (or not).
        self.handle.quit();
        let (rc, answers) = self.handle.versions();
        let servers = self.handle.servers().clone();
        let mut versions = Vec::with_capacity(servers.len());
        for (i, (server, version)) in servers.into_iter().zip(answers).enumerate() {
            match version {
                Some((major, minor, micro)) => {
                    versions.push((server, format!("{major}.{minor}.{micro}")));
                }
                None => {
                    // With no error recorded for the server, the call's own code says why,
                    // unless it is a summary (SUCCESS, SOME ERRORS) that says nothing.
                    let why = match rc.code() {
                        ReturnCode::Success | ReturnCode::SomeErrors => ReturnCode::ProtocolError,
                        code => code,
                    };
                    let fallback = (why, "no version came back (a reply that could not be read)");
                    let error = self.handle.server_error(i, fallback);
                    self.handle.quit();
                    return Err(error);
                }
            }
        }
        Ok(versions)
    }

    /// The servers this client is configured with.
    pub fn servers(&self) -> Vec<Address> {
        self.handle.servers().clone()
    }

    /// Closes every connection; the next operation reconnects. Called from inside
    /// [`Client::get_multi_each`]'s callback, it closes them when that call has read every
    /// reply.
    pub fn disconnect_all(&self) {
        if self.streaming.get() {
            // Closing now would end the multi-get early: its keys not read yet would pass for
            // misses.
            self.quit_after_streaming.set(true);
            return;
        }
        self.drop_clones();
        self.handle.quit()
    }

    /// A new client with the same servers and behaviors and its own connections.
    pub fn try_clone(&self) -> Result<Client> {
        let mut clone = Client::from_handle(self.handle.try_clone()?);
        clone.settings = self.settings;
        clone.flights = Arc::clone(&self.flights);
        Ok(clone)
    }

    /// Sets a behavior. Changing some behaviors (the protocol, TCP options) closes the
    /// connections.
    pub fn set_behavior(&self, behavior: Behavior) -> Result<()> {
        self.refuse_while_streaming("set_behavior")?;
        self.apply_behavior(behavior)
            .inspect_err(crate::trace::config_refused)
    }

    fn apply_behavior(&self, behavior: Behavior) -> Result<()> {
        let Some((flag, value)) = behavior.prepare(self)? else {
            return Ok(());
        };
        self.bulk.replace(None);
        self.drop_clones();
        let rc = self.handle.set_behavior(flag, value);
        if rc != Rc::SUCCESS {
            return Err(ConfigError::setting(
                format!("behavior {behavior:?}"),
                format!("libmemcached refused it: {}", rc.code()),
            ));
        }
        behavior.settle(self)
    }

    /// Drops the clones kept for later calls: their connections, or a behavior they copied, are
    /// out of date.
    fn drop_clones(&self) {
        self.asked_again.take();
        self.pipe.take();
    }

    /// Sets a boolean behavior that needs no checks (the protocol, UDP).
    pub(crate) fn set_flag(&self, flag: sys::memcached_behavior_t, on: bool) -> Result<()> {
        self.drop_clones();
        self.check(self.handle.set_behavior(flag, on.into()), None)
    }

    /// Whether the binary protocol is on.
    pub fn is_binary(&self) -> bool {
        self.handle.facts().binary
    }

    /// Whether the servers are proxies ([`ClientBuilder::proxy`]).
    pub fn is_proxy(&self) -> bool {
        self.handle.facts().proxy
    }

    /// Refuses, before anything is sent, an operation a proxy cannot serve.
    pub(crate) fn refuse_through_proxy(&self, operation: &str, why: &str) -> Result<()> {
        match self.handle.facts().proxy {
            false => Ok(()),
            true => Err(proxy_refusal(operation, why)),
        }
    }

    // ---- internals -----------------------------------------------------------------------

    pub(crate) fn behavior_raw(&self, flag: sys::memcached_behavior_t) -> u64 {
        self.handle.behavior(flag)
    }

    /// Checks a key against memcached's rules for this client's protocol and namespace.
    #[inline]
    pub(crate) fn check_key(&self, key: &[u8]) -> Result<()> {
        self.key_rules().check(key)
    }

    /// The key rules in force: the namespace's length and the protocol.
    #[inline]
    pub(crate) fn key_rules(&self) -> key::Rules {
        let facts = self.handle.facts();
        key::Rules {
            namespace_len: facts.namespace_len,
            // The UDP protocol is ASCII.
            binary: facts.binary && !facts.udp,
        }
    }

    /// `Ok(())` for success codes, the error otherwise.
    #[inline]
    pub(crate) fn check(&self, rc: Rc, key: Option<&[u8]>) -> Result<()> {
        self.handle.check(rc, &[], key).map(drop)
    }

    /// Refuses a call made on this client from inside its own `get_multi_each` callback, which
    /// would make libmemcached drop the replies the multi-get still owes (its keys would read
    /// as misses).
    #[inline]
    pub(crate) fn refuse_while_streaming(&self, op: &str) -> Result<()> {
        match self.streaming.get() {
            false => Ok(()),
            true => Err(Error::Memcached {
                code: ReturnCode::FetchNotFinished,
                message: format!(
                    "{op} called from inside get_multi_each's callback on the same client, \
                     whose replies are still being read: use another client (try_clone) or \
                     act after the call returns"
                ),
                key: None,
                server: None,
            }),
        }
    }

    /// Server `i`'s failure in a server-level call (`flush_all`, `stats`): its error in this
    /// call, or `fallback` if libmemcached recorded none.
    pub(crate) fn server_failure(&self, i: usize, fallback: (ReturnCode, &str)) -> KeyFailure {
        KeyFailure {
            error: explain_disconnect(self.handle.server_error(i, fallback)),
            keys: Vec::new(),
        }
    }

    /// The error for `rc`, after resetting the connections if their replies may be out of step.
    pub(crate) fn error(&self, rc: Rc, key: Option<&[u8]>) -> Error {
        self.handle.error(rc, key)
    }
}

#[cold]
fn proxy_refusal(operation: &str, why: &str) -> Error {
    Error::Memcached {
        code: ReturnCode::NotSupported,
        message: format!("{operation} is not supported through a proxy (twemproxy): {why}"),
        key: None,
        server: None,
    }
}

/// A server that closed the connection instead of answering a server-level command (`stats`,
/// `flush_all`): say what does that, since libmemcached's message names only the symptom.
fn explain_disconnect(error: Error) -> Error {
    match error {
        Error::Memcached {
            code: ReturnCode::ConnectionFailure,
            message,
            server,
            key,
        } if message.contains("server has disconnected") => Error::Memcached {
            code: ReturnCode::ConnectionFailure,
            message: format!(
                "{message} (the server closed the connection instead of answering; twemproxy \
                 does so for commands it does not forward: see ClientBuilder::proxy)"
            ),
            key,
            server,
        },
        other => other,
    }
}

/// What libmemcached would act on while parsing a configuration string, before anything can be
/// checked (found by fuzzing `from_config`): more servers than a consistent distribution holds
/// trips an assertion that aborts the process (`update_continuum`: 100 in libmemcached 1.1), and
/// `INCLUDE`/`--CONFIGURE-FILE=` read files whose options and servers this crate never sees, and
/// `DEBUG` turns on a trace of every later parse on stderr, process-wide.
/// The text is scanned as libmemcached's case-insensitive scanner reads it, erring on the side
/// of counting too much.
fn precheck_config(config: &str) -> std::result::Result<(), &'static str> {
    let text = config.to_ascii_lowercase();
    if text.contains("--configure-file=") || text.split_whitespace().any(|w| w == "include") {
        return Err(
            "configuration files (INCLUDE, --CONFIGURE-FILE) are not read: pass their text",
        );
    }
    // The statement needs no space after it (`DEBUG#` turns tracing on too).
    if text.split_whitespace().any(|w| w.starts_with("debug")) {
        return Err(
            "DEBUG turns libmemcached's parser tracing on, on stderr, for the whole process",
        );
    }
    let servers = text.matches("--server=").count() + text.matches("--socket=").count();
    if servers > ffi::MAX_CONSISTENT_SERVERS && text.contains("consistent") {
        return Err(
            "a consistent distribution takes at most 100 servers (MAX_CONSISTENT_SERVERS); \
             libmemcached aborts beyond",
        );
    }
    Ok(())
}

/// Refuses the numbers in a configuration string that `.servers()` and the typed behaviors
/// refuse, with the same errors: libmemcached's parser takes a port modulo 65536 and a
/// timeout modulo 2^32 where they would be refused. Options are matched as libmemcached
/// matches them (case aside); what it does not parse is left to its own check.
fn check_config_numbers(config: &str) -> std::result::Result<(), String> {
    const NUMBERS: [(&str, &str); 11] = [
        ("--connect-timeout", "connect_timeout"),
        ("--poll-timeout", "_poll_timeout"),
        ("--rcv-timeout", "receive_timeout"),
        ("--snd-timeout", "send_timeout"),
        ("--retry-timeout", "retry_timeout"),
        ("--io-bytes-watermark", "_io_bytes_watermark"),
        ("--io-key-prefetch", "_io_key_prefetch"),
        ("--io-msg-watermark", "_io_msg_watermark"),
        ("--number-of-replicas", "num_replicas"),
        ("--socket-recv-size", "_socket_recv_size"),
        ("--socket-send-size", "_socket_send_size"),
    ];
    for word in config.split_whitespace() {
        let Some((option, value)) = word.split_once('=') else {
            continue;
        };
        let option = option.to_ascii_lowercase();
        if option == "--server" {
            // host:port, [v6]:port, each optionally followed by /?weight.
            let address = value.split('/').next().unwrap_or_default();
            let port = match address.strip_prefix('[') {
                Some(v6) => v6.split_once("]:").map(|(_, port)| port),
                None => address.rsplit_once(':').map(|(_, port)| port),
            };
            if let Some(port) = port.filter(|p| p.bytes().all(|b| b.is_ascii_digit())) {
                crate::server::parse_port(port).map_err(|why| format!("{word}: {why}"))?;
            }
        } else if let Some((_, name)) = NUMBERS.iter().find(|(o, _)| *o == option) {
            if value.bytes().all(|b| b.is_ascii_digit()) {
                Behavior::from_name(name, value)
                    .and_then(|behavior| behavior.to_raw())
                    .map_err(|err| format!("{word}: {err}"))?;
            }
        }
    }
    Ok(())
}

impl Clone for Client {
    /// Same as [`Client::try_clone`].
    ///
    /// # Panics
    ///
    /// If libmemcached cannot allocate the new handle.
    fn clone(&self) -> Self {
        self.try_clone().expect("memcached_clone: out of memory")
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self.servers().iter().map(Address::to_string).collect();
        f.debug_struct("Client")
            .field("servers", &servers)
            .field("binary", &self.is_binary())
            .finish()
    }
}
