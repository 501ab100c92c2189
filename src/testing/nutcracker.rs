//! [`Nutcracker`]: a twemproxy (`nutcracker`) process in front of memcached servers, on free
//! loopback ports, killed on drop.

use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::probe::{ask, connect_tcp};
use super::process::{await_start, release_port, temp_dir, unused_port};

/// A twemproxy (`nutcracker`) process with one memcached pool, killed on drop.
///
/// The pool listens on a free loopback port and spreads keys over the given servers with
/// ketama and [`NutcrackerBuilder::hash`] (FNV-1a 64 by default), each server weighing 1. The
/// binary is Debian's `nutcracker` package, or `$NUTCRACKER_BIN`.
///
/// ```no_run
/// use libmemcached::testing::{Memcached, Nutcracker};
///
/// let backends = [Memcached::start()?, Memcached::start()?];
/// let specs: Vec<String> = backends.iter().map(Memcached::spec).collect();
/// let proxy = Nutcracker::builder().auto_eject_hosts(false).start(&specs)?;
/// let mc = libmemcached::Client::builder()
///     .servers([proxy.spec()])
///     .proxy()
///     .build()?;
/// mc.set("k", "v", 0)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Nutcracker {
    child: Option<Child>,
    port: u16,
    stats_port: u16,
    dir: PathBuf,
}

/// Options for a [`Nutcracker`] process: the pool's settings in its YAML configuration.
#[derive(Debug, Clone)]
#[must_use]
pub struct NutcrackerBuilder {
    hash: String,
    auto_eject_hosts: bool,
    server_retry_timeout: Duration,
    server_failure_limit: u32,
    timeout: Duration,
}

impl Default for NutcrackerBuilder {
    fn default() -> Self {
        Self {
            hash: "fnv1a_64".into(),
            auto_eject_hosts: false,
            server_retry_timeout: Duration::from_secs(2),
            server_failure_limit: 1,
            timeout: Duration::from_secs(2),
        }
    }
}

impl NutcrackerBuilder {
    /// The key hash (`hash:`), one of twemproxy's names such as `fnv1a_64` (the default),
    /// `md5`, `murmur`, `one_at_a_time`.
    pub fn hash(mut self, hash: impl Into<String>) -> Self {
        self.hash = hash.into();
        self
    }

    /// Whether twemproxy takes a server that keeps failing out of the ring
    /// (`auto_eject_hosts:`, off by default): on, its keys move to the other servers; off,
    /// requests for them fail with `SERVER_ERROR`.
    pub fn auto_eject_hosts(mut self, eject: bool) -> Self {
        self.auto_eject_hosts = eject;
        self
    }

    /// How long an ejected server stays out before twemproxy tries it again
    /// (`server_retry_timeout:`, 2 s by default).
    pub fn server_retry_timeout(mut self, timeout: Duration) -> Self {
        self.server_retry_timeout = timeout;
        self
    }

    /// Consecutive failures that eject a server when `auto_eject_hosts` is on
    /// (`server_failure_limit:`, 1 by default).
    pub fn server_failure_limit(mut self, limit: u32) -> Self {
        self.server_failure_limit = limit;
        self
    }

    /// How long twemproxy waits for a server (`timeout:`, 2 s by default: generous, so that a
    /// loaded test machine does not look like a failed server).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts a nutcracker in front of `servers` (`host:port` specs such as
    /// [`Memcached::spec`](super::Memcached::spec)) and waits until it accepts connections.
    pub fn start<S: AsRef<str>>(self, servers: &[S]) -> io::Result<Nutcracker> {
        if servers.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nutcracker needs at least one server",
            ));
        }
        let mut last_error = None;
        // A free port can be taken by another process between our probe and nutcracker's bind.
        for _ in 0..5 {
            let mut proxy = Nutcracker {
                child: None,
                port: unused_port()?,
                stats_port: unused_port()?,
                dir: temp_dir()?,
            };
            match proxy.spawn(&self, servers) {
                Ok(()) => return Ok(proxy),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("nutcracker did not start")))
    }

    fn config<S: AsRef<str>>(&self, port: u16, servers: &[S]) -> String {
        let mut config = format!(
            "pool:\n  listen: 127.0.0.1:{port}\n  hash: {}\n  distribution: ketama\n  \
             auto_eject_hosts: {}\n  server_retry_timeout: {}\n  server_failure_limit: {}\n  \
             timeout: {}\n  servers:\n",
            self.hash,
            self.auto_eject_hosts,
            self.server_retry_timeout.as_millis(),
            self.server_failure_limit,
            self.timeout.as_millis(),
        );
        for server in servers {
            config.push_str(&format!("    - {}:1\n", server.as_ref()));
        }
        config
    }
}

impl Nutcracker {
    /// Options for the process.
    pub fn builder() -> NutcrackerBuilder {
        NutcrackerBuilder::default()
    }

    /// Starts a nutcracker with the default settings in front of `servers`.
    pub fn start<S: AsRef<str>>(servers: &[S]) -> io::Result<Nutcracker> {
        Nutcracker::builder().start(servers)
    }

    /// The pool's spec for a client: `127.0.0.1:PORT`.
    pub fn spec(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The pool's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of twemproxy's own statistics (JSON, sent to whoever connects).
    pub fn stats_port(&self) -> u16 {
        self.stats_port
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What nutcracker logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("nutcracker.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn<S: AsRef<str>>(
        &mut self,
        options: &NutcrackerBuilder,
        servers: &[S],
    ) -> io::Result<()> {
        let program = std::env::var_os("NUTCRACKER_BIN").unwrap_or_else(|| "nutcracker".into());
        let config = self.dir.join("nutcracker.yml");
        fs::write(&config, options.config(self.port, servers))?;
        let log = self.dir.join("nutcracker.log");
        let _ = fs::remove_file(&log);
        let mut child = Command::new(&program)
            .arg("-c")
            .arg(&config)
            .arg("-o")
            .arg(&log)
            .args(["-s", &self.stats_port.to_string(), "-a", "127.0.0.1"])
            // Its pid file defaults to /run/nutcracker, which a test may not write.
            .arg("-p")
            .arg(self.dir.join("nutcracker.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!(
                        "cannot run {program:?} ({err}): install Debian's nutcracker package \
                         (scripts/setup does) or set NUTCRACKER_BIN"
                    ),
                )
            })?;
        // A nutcracker that lost the race for a port exits, which await_start sees.
        let started = await_start(&mut child, "nutcracker", || self.log(), || self.answers());
        self.child = Some(child);
        if started.is_err() {
            self.stop();
        }
        started
    }

    /// Whether the stats port names nutcracker and the pool answers a get of a key nobody
    /// stores (with a miss, or an error if the backend is down).
    fn answers(&self) -> bool {
        let stats = connect_tcp(&format!("127.0.0.1:{}", self.stats_port)).and_then(|mut s| {
            let mut text = String::new();
            s.read_to_string(&mut text).map(|_| text)
        });
        if !stats.is_ok_and(|s| s.contains("\"service\":\"nutcracker\"")) {
            return false;
        }
        connect_tcp(&self.spec())
            .and_then(|s| ask(s, "get libmemcached-rs:nutcracker-probe", ""))
            .is_ok_and(|line| line.starts_with("END") || line.starts_with("SERVER_ERROR"))
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        self.stop();
        release_port(self.port);
        release_port(self.stats_port);
        let _ = fs::remove_dir_all(&self.dir);
    }
}
