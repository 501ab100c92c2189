//! Real memcached processes for tests, yours and this crate's.
//!
//! [`Memcached`] starts a `memcached` (Debian's `memcached` package, or `$MEMCACHED_BIN`) on a
//! free loopback port or a unix socket, waits until it answers, and kills it on drop. It can be
//! stopped and restarted on the same address, for failure tests.
//!
//! [`TestServer`] is for tests that need any plain server: it uses `$MEMCACHED_SERVERS` (for
//! example a Docker container) when set, and starts a process otherwise. Tests sharing an
//! external server should use keys of their own and not flush it.
//!
//! [`MemcachedBuilder::sasl`] starts a server that requires SASL. [`make_test_client`],
//! [`is_alive`] and [`get_version`] are pylibmc's `pylibmc.test` helpers, for suites that run
//! against a server started outside the tests (`MEMCACHED_HOST`, `MEMCACHED_PORT`).
//!
//! ```
//! use libmemcached::{testing::Memcached, Client};
//!
//! let server = Memcached::start()?;
//! let mc = Client::new([server.spec()])?;
//! mc.set("k", "v", 0)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{Client, ClientBuilder, Transport};

/// How long a new memcached has to start answering.
const STARTUP: Duration = Duration::from_secs(10);
/// How long one probe of a server may take.
const PROBE: Duration = Duration::from_secs(2);

/// Ports handed to servers of this process, so two parallel tests never pick the same one.
static PORTS_IN_USE: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A memcached process, killed on drop.
#[derive(Debug)]
pub struct Memcached {
    child: Option<Child>,
    listen: Listen,
    udp: bool,
    args: Vec<String>,
    dir: PathBuf,
    sasl: Option<(String, String)>,
}

#[derive(Debug, Clone)]
enum Listen {
    Tcp(u16),
    Unix(PathBuf),
}

/// Options for a [`Memcached`] process.
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct MemcachedBuilder {
    unix_socket: bool,
    udp: bool,
    args: Vec<String>,
    sasl: Option<(String, String)>,
}

impl MemcachedBuilder {
    /// Listens on a unix socket in a temporary directory instead of a TCP port.
    pub fn unix_socket(mut self) -> Self {
        self.unix_socket = true;
        self
    }

    /// Also listens for UDP on the TCP port (see [`Memcached::udp_spec`]).
    pub fn udp(mut self) -> Self {
        self.udp = true;
        self
    }

    /// Requires SASL authentication (`memcached -S`) with one user, `username`/`password`, kept
    /// in a sasldb of the server's own made with `saslpasswd2` (Debian's `sasl2-bin`, or
    /// `$SASLPASSWD2`), with the PLAIN mechanism (`libsasl2-modules`). Such a server speaks only
    /// the binary protocol; connect with
    /// [`ClientBuilder::sasl`](crate::ClientBuilder::sasl).
    pub fn sasl(mut self, username: &str, password: &str) -> Self {
        self.sasl = Some((username.to_owned(), password.to_owned()));
        self
    }

    /// Passes an extra argument to memcached (for example `-I`, `2m` for a 2 MiB item limit).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the server and waits until it answers.
    pub fn start(self) -> io::Result<Memcached> {
        let dir = temp_dir()?;
        if let Some((username, password)) = &self.sasl {
            if let Err(err) = write_sasl_config(&dir, username, password) {
                let _ = fs::remove_dir_all(&dir);
                return Err(err);
            }
        }
        let mut last_error = None;
        // A free port can be taken by another process between our probe and memcached's bind.
        for _ in 0..5 {
            let listen = if self.unix_socket {
                Listen::Unix(dir.join("memcached.sock"))
            } else {
                Listen::Tcp(free_port()?)
            };
            let mut server = Memcached {
                child: None,
                listen,
                udp: self.udp,
                args: self.args.clone(),
                dir: dir.clone(),
                sasl: self.sasl.clone(),
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("memcached did not start")))
    }
}

impl Memcached {
    /// Starts a memcached on a free loopback port.
    pub fn start() -> io::Result<Memcached> {
        Memcached::builder().start()
    }

    /// Starts a memcached listening on a unix socket.
    pub fn start_unix() -> io::Result<Memcached> {
        Memcached::builder().unix_socket().start()
    }

    /// Options for the process.
    pub fn builder() -> MemcachedBuilder {
        MemcachedBuilder::default()
    }

    /// The server spec for a client: `127.0.0.1:PORT` or the socket path.
    pub fn spec(&self) -> String {
        match &self.listen {
            Listen::Tcp(port) => format!("127.0.0.1:{port}"),
            Listen::Unix(path) => path.display().to_string(),
        }
    }

    /// The UDP server spec (`udp:127.0.0.1:PORT`), if started with [`MemcachedBuilder::udp`].
    pub fn udp_spec(&self) -> Option<String> {
        match self.listen {
            Listen::Tcp(port) if self.udp => Some(format!("udp:127.0.0.1:{port}")),
            _ => None,
        }
    }

    /// The TCP port, if it listens on one.
    pub fn port(&self) -> Option<u16> {
        match self.listen {
            Listen::Tcp(port) => Some(port),
            Listen::Unix(_) => None,
        }
    }

    /// The SASL username and password, if started with [`MemcachedBuilder::sasl`].
    pub fn sasl_credentials(&self) -> Option<(&str, &str)> {
        self.sasl.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process (as a crash would: connections drop without a goodbye).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Listen::Unix(path) = &self.listen {
            let _ = fs::remove_file(path);
        }
    }

    /// Starts the process again on the same port or socket.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let deadline = Instant::now() + STARTUP;
        loop {
            // The old socket may linger for a moment after the kill.
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() > deadline => return Err(err),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn spawn(&mut self) -> io::Result<()> {
        let program = std::env::var_os("MEMCACHED_BIN").unwrap_or_else(|| "memcached".into());
        let mut command = Command::new(&program);
        // `-U 0`: no UDP port unless asked for.
        match &self.listen {
            Listen::Tcp(port) => {
                let udp_port = if self.udp {
                    port.to_string()
                } else {
                    "0".into()
                };
                command.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", &udp_port])
            }
            Listen::Unix(path) => command.args(["-U", "0"]).arg("-s").arg(path),
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // memcached refuses to run as root unless told which user to be.
            command.args(["-u", "root"]);
        }
        if self.sasl.is_some() {
            // memcached's SASL reads memcached.conf (mechanisms, sasldb path) from here.
            command.env("SASL_CONF_PATH", &self.dir).arg("-S");
        }
        let log = self.dir.join("memcached.log");
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?);
        let child = command.spawn().map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot run {program:?} ({err}): install Debian's memcached package or set MEMCACHED_BIN"),
            )
        })?;
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let log = fs::read_to_string(&log).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "memcached exited with {status}: {}",
                    log.trim()
                )));
            }
            // Check the pid: another process may answer on a port we thought was free.
            if self.stat("pid").ok().as_deref() == Some(pid.to_string().as_str()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "memcached did not answer in time",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// One value of the server's `stats`, read over a fresh connection (authenticated, in the
    /// binary protocol, for a SASL server).
    pub fn stat(&self, name: &str) -> io::Result<String> {
        if let Some((username, password)) = &self.sasl {
            let stats = match &self.listen {
                Listen::Tcp(port) => binary_stats(
                    connect_tcp(&format!("127.0.0.1:{port}"))?,
                    username,
                    password,
                )?,
                Listen::Unix(path) => binary_stats(connect_unix(path)?, username, password)?,
            };
            return stats
                .into_iter()
                .find_map(|(k, v)| (k == name).then_some(v))
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no stat {name}")));
        }
        let reply = match &self.listen {
            Listen::Tcp(port) => ask(connect_tcp(&format!("127.0.0.1:{port}"))?, "stats", "END")?,
            Listen::Unix(path) => ask(connect_unix(path)?, "stats", "END")?,
        };
        reply
            .lines()
            .find_map(|line| {
                line.strip_prefix(&format!("STAT {name} "))
                    .map(str::to_owned)
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no stat {name}")))
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.stop();
        if let Listen::Tcp(port) = self.listen {
            if let Some(ports) = PORTS_IN_USE
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                ports.remove(&port);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

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

/// Where [`make_test_client`] looks for a server: pylibmc's `(server_type, host, port)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestAddress {
    /// TCP, UDP or a unix socket (`MEMCACHED_TYPE`: `tcp`, `udp` or `unix`).
    pub transport: Transport,
    /// The host, or the socket's path for a unix socket (`MEMCACHED_HOST`).
    pub host: String,
    /// The port; unused for a unix socket (`MEMCACHED_PORT`).
    pub port: u16,
}

impl Default for TestAddress {
    /// pylibmc's defaults: TCP to `127.0.0.1:11211`.
    fn default() -> Self {
        TestAddress {
            transport: Transport::Tcp,
            host: "127.0.0.1".into(),
            port: crate::DEFAULT_PORT,
        }
    }
}

impl TestAddress {
    /// This address with `MEMCACHED_TYPE`, `MEMCACHED_HOST` and `MEMCACHED_PORT`, as `env`
    /// reads them, taking precedence (empty values count as unset). Pass
    /// `|name| std::env::var(name).ok()` for the process's environment, or a fake one.
    pub fn with_env(
        mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<TestAddress, TestClientError> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        let invalid = |text: String| TestClientError::Config(crate::Error::InvalidConfig(text));
        if let Some(kind) = var("MEMCACHED_TYPE") {
            self.transport = match kind.to_ascii_lowercase().as_str() {
                "tcp" => Transport::Tcp,
                "udp" => Transport::Udp,
                "unix" => Transport::Unix,
                _ => {
                    return Err(invalid(format!(
                        "MEMCACHED_TYPE={kind:?}: expected tcp, udp or unix"
                    )));
                }
            };
        }
        if let Some(host) = var("MEMCACHED_HOST") {
            self.host = host;
        }
        if let Some(port) = var("MEMCACHED_PORT") {
            self.port = port
                .parse()
                .map_err(|_| invalid(format!("MEMCACHED_PORT={port:?}: not a port number")))?;
        }
        Ok(self)
    }

    /// The server spec: `host:port`, `[v6]:port`, `udp:host:port` or the socket path.
    pub fn spec(&self) -> String {
        let host_port = match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        };
        match self.transport {
            Transport::Tcp => host_port,
            Transport::Udp => format!("udp:{host_port}"),
            Transport::Unix => self.host.clone(),
        }
    }
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
/// of the test's own, use [`Memcached`] instead.
///
/// ```no_run
/// let mc = libmemcached::testing::make_test_client()?;
/// mc.set("k", "v", 0)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn make_test_client() -> Result<Client, TestClientError> {
    make_test_client_with(Client::builder(), TestAddress::default(), |name| {
        std::env::var(name).ok()
    })
}

/// [`make_test_client`] with the client's other options in `builder` (its servers are added
/// to), other defaults, and the environment read through `env`.
///
/// ```no_run
/// use libmemcached::{Client, testing::{TestAddress, make_test_client_with}};
///
/// let fake_env = |name: &str| (name == "MEMCACHED_PORT").then(|| "21211".to_owned());
/// let mc = make_test_client_with(Client::builder().binary(true), TestAddress::default(), fake_env)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn make_test_client_with(
    builder: ClientBuilder,
    defaults: TestAddress,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Client, TestClientError> {
    let address = defaults.with_env(env)?;
    let spec = address.spec();
    if let Err(err) = get_version(&spec) {
        return Err(TestClientError::NotAlive {
            address: spec,
            reason: err.to_string(),
        });
    }
    Ok(builder.servers([spec])?.build()?)
}

/// Sends one ASCII command in a UDP datagram (with memcached's 8-byte frame header) and returns
/// the reply's first datagram, without its header.
fn ask_udp(addr: &str, command: &str) -> io::Result<String> {
    use std::net::{ToSocketAddrs, UdpSocket};
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(target)?;
    socket.set_read_timeout(Some(PROBE))?;
    // Request id, sequence number 0, one datagram, reserved.
    let mut request = vec![0x52, 0x53, 0, 0, 0, 1, 0, 0];
    request.extend_from_slice(format!("{command}\r\n").as_bytes());
    socket.send(&request)?;
    let mut reply = [0u8; 1500];
    let len = socket.recv(&mut reply)?;
    if len < 8 || reply[..2] != request[..2] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a memcached UDP reply",
        ));
    }
    Ok(String::from_utf8_lossy(&reply[8..len]).into_owned())
}

fn connect_tcp(addr: &str) -> io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
    let stream = TcpStream::connect_timeout(&addr, PROBE)?;
    stream.set_read_timeout(Some(PROBE))?;
    stream.set_write_timeout(Some(PROBE))?;
    Ok(stream)
}

fn connect_unix(path: &Path) -> io::Result<UnixStream> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(PROBE))?;
    stream.set_write_timeout(Some(PROBE))?;
    Ok(stream)
}

/// Sends one ASCII command and reads lines up to `last` (or one line when `last` is empty).
fn ask<S: Read + Write>(mut stream: S, command: &str, last: &str) -> io::Result<String> {
    stream.write_all(format!("{command}\r\n").as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let done = last.is_empty() || line.trim_end() == last;
        reply.push_str(&line);
        if done {
            return Ok(reply);
        }
    }
}

/// A loopback port nobody listens on, not handed out before by this process.
fn free_port() -> io::Result<u16> {
    let mut ports = PORTS_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    let ports = ports.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if ports.insert(port) {
            return Ok(port);
        }
    }
}

fn temp_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "libmemcached-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes the sasldb with one user and the `memcached.conf` that points memcached's SASL at it.
fn write_sasl_config(dir: &Path, username: &str, password: &str) -> io::Result<()> {
    let db = dir.join("memcached-sasldb");
    let conf = format!("mech_list: plain\nsasldb_path: {}\n", db.display());
    fs::write(dir.join("memcached.conf"), conf)?;
    // Debian puts saslpasswd2 in /usr/sbin, which is not on every user's PATH.
    let candidates: Vec<std::ffi::OsString> = match std::env::var_os("SASLPASSWD2") {
        Some(program) => vec![program],
        None => vec!["saslpasswd2".into(), "/usr/sbin/saslpasswd2".into()],
    };
    let mut last_error = None;
    for program in candidates {
        // -p: the password comes from stdin; -c: create the user; -a: memcached's app name.
        let child = Command::new(&program)
            .args(["-p", "-c", "-a", "memcached", "-f"])
            .arg(&db)
            .arg(username)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(err) => {
                last_error = Some(err);
                continue;
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(password.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "saslpasswd2 failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        return Ok(());
    }
    let err = last_error.unwrap_or_else(|| io::Error::other("no saslpasswd2"));
    Err(io::Error::new(
        err.kind(),
        format!("cannot run saslpasswd2 ({err}): install Debian's sasl2-bin or set SASLPASSWD2"),
    ))
}

/// memcached binary protocol opcodes used by the SASL probe.
const OP_STAT: u8 = 0x10;
const OP_SASL_AUTH: u8 = 0x21;

/// A server's stats over the binary protocol, after a SASL PLAIN authentication.
fn binary_stats<S: Read + Write>(
    mut stream: S,
    username: &str,
    password: &str,
) -> io::Result<Vec<(String, String)>> {
    let token = format!("\0{username}\0{password}");
    send_binary(&mut stream, OP_SASL_AUTH, b"PLAIN", token.as_bytes())?;
    let (status, _, value) = read_binary(&mut stream)?;
    if status != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "SASL authentication failed (status {status:#x}): {}",
                String::from_utf8_lossy(&value)
            ),
        ));
    }
    send_binary(&mut stream, OP_STAT, b"", b"")?;
    let mut stats = Vec::new();
    loop {
        let (status, key, value) = read_binary(&mut stream)?;
        if status != 0 {
            return Err(io::Error::other(format!(
                "stats failed (status {status:#x})"
            )));
        }
        if key.is_empty() {
            return Ok(stats);
        }
        stats.push((
            String::from_utf8_lossy(&key).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        ));
    }
}

fn send_binary<W: Write>(stream: &mut W, opcode: u8, key: &[u8], value: &[u8]) -> io::Result<()> {
    let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "request too long");
    let key_len = u16::try_from(key.len()).map_err(|_| too_long())?;
    let body_len = u32::try_from(key.len() + value.len()).map_err(|_| too_long())?;
    let mut packet = Vec::with_capacity(24 + key.len() + value.len());
    packet.extend_from_slice(&[0x80, opcode]);
    packet.extend_from_slice(&key_len.to_be_bytes());
    // Extras length, data type, vbucket.
    packet.extend_from_slice(&[0, 0, 0, 0]);
    packet.extend_from_slice(&body_len.to_be_bytes());
    // Opaque and CAS.
    packet.extend_from_slice(&[0; 12]);
    packet.extend_from_slice(key);
    packet.extend_from_slice(value);
    stream.write_all(&packet)
}

/// One binary response: status, key, value.
fn read_binary<R: Read>(stream: &mut R) -> io::Result<(u16, Vec<u8>, Vec<u8>)> {
    /// More than any stat or SASL reply; a bigger body means we are not talking to memcached.
    const MAX_BODY: usize = 1 << 20;
    let mut header = [0u8; 24];
    stream.read_exact(&mut header)?;
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    if header[0] != 0x81 {
        return Err(invalid("not a memcached binary response"));
    }
    let key_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let extras_len = usize::from(header[4]);
    let status = u16::from_be_bytes([header[6], header[7]]);
    let body_len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if body_len > MAX_BODY || extras_len + key_len > body_len {
        return Err(invalid("malformed binary response"));
    }
    let mut body = vec![0; body_len];
    stream.read_exact(&mut body)?;
    let value = body.split_off(extras_len + key_len);
    let key = body.split_off(extras_len);
    Ok((status, key, value))
}
