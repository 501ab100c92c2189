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

    /// Passes an extra argument to memcached (for example `-I`, `2m` for a 2 MiB item limit).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the server and waits until it answers.
    pub fn start(self) -> io::Result<Memcached> {
        let dir = temp_dir()?;
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

    /// One value of the server's `stats`, read over a fresh connection.
    pub fn stat(&self, name: &str) -> io::Result<String> {
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

/// The version a server reports, asked over a fresh connection (`host:port` or a socket path).
pub fn get_version(addr: &str) -> io::Result<String> {
    let reply = if addr.starts_with('/') {
        ask(connect_unix(Path::new(addr))?, "version", "")?
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
