//! Spawning, probing, stopping and restarting memcached processes: [`Memcached`] and
//! [`MemcachedBuilder`].

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::probe::{ask, connect_tcp, connect_unix};
use super::sasl::{binary_stats, write_sasl_config};
use super::tls::{ServerCert, TlsFiles};

/// Waits until `ready` says a process just spawned (`name`) answers. An error if it exits first
/// or does not answer within [`STARTUP`], with what `log` says of it.
pub(super) fn await_start(
    child: &mut Child,
    name: &str,
    log: impl Fn() -> String,
    mut ready: impl FnMut() -> bool,
) -> io::Result<()> {
    let deadline = Instant::now() + STARTUP;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = log();
            return Err(io::Error::other(format!(
                "{name} exited with {status}: {}",
                log.trim()
            )));
        }
        // Ready, and still running (one that lost a port to another process may answer
        // through that process, then exit).
        if ready() && child.try_wait().is_ok_and(|status| status.is_none()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = log();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{name} did not answer in time: {}", log.trim()),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How long a new process (memcached, nutcracker) has to start answering.
const STARTUP: Duration = Duration::from_secs(10);

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
    /// Whether (and how) a TLS server asks for client certificates.
    client_certs: Option<bool>,
}

#[derive(Debug, Clone)]
enum Listen {
    Tcp(u16),
    /// TLS on `port`, plaintext on `plain_port`.
    Tls {
        port: u16,
        plain_port: u16,
    },
    Unix(PathBuf),
}

impl Listen {
    /// Gives back the ports [`unused_port`] reserved for this listener.
    fn release_ports(&self) {
        match self {
            Listen::Tcp(port) => release_port(*port),
            Listen::Tls { port, plain_port } => {
                release_port(*port);
                release_port(*plain_port);
            }
            Listen::Unix(_) => {}
        }
    }
}

/// A TLS server's certificate chain, key and CA (for client certificates) in its directory:
/// copies, so that a restart finds them after the [`TlsFiles`] are gone. memcached runs in that
/// directory and is given these relative names, since `-o` cannot take a path with a comma.
const TLS_CERT: &str = "tls-cert.pem";
const TLS_KEY: &str = "tls-key.pem";
const TLS_CA: &str = "tls-ca.pem";

/// The files a [`MemcachedBuilder::tls`] server copies at its start.
#[derive(Debug, Clone)]
struct TlsSource {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl TlsSource {
    fn copy_into(&self, dir: &Path) -> io::Result<()> {
        for (from, to) in [
            (&self.cert, TLS_CERT),
            (&self.key, TLS_KEY),
            (&self.ca, TLS_CA),
        ] {
            fs::copy(from, dir.join(to)).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!(
                        "cannot copy {} for the TLS server ({err}): were its TlsFiles dropped?",
                        from.display()
                    ),
                )
            })?;
        }
        Ok(())
    }
}

/// Options for a [`Memcached`] process.
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct MemcachedBuilder {
    unix_socket: bool,
    udp: bool,
    args: Vec<String>,
    sasl: Option<(String, String)>,
    tls: Option<TlsSource>,
    client_certs: Option<bool>,
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

    /// Serves TLS (`memcached -Z`) on the TCP port ([`Memcached::tls_port`]), presenting `cert`
    /// of `files` with [`TlsFiles::server_key`], and plaintext on a second loopback port
    /// ([`Memcached::plain_port`]), which the start's probe and [`Memcached::stat`] use.
    ///
    /// The files are copied into the server's own directory, so `files` may be dropped once
    /// the server has started, and [`Memcached::restart`] serves the same certificate on the
    /// same ports. Not with [`unix_socket`](Self::unix_socket) or [`udp`](Self::udp). Needs a
    /// memcached built with TLS, as Debian's is.
    pub fn tls(mut self, files: &TlsFiles, cert: ServerCert) -> Self {
        self.tls = Some(TlsSource {
            cert: files.server_cert_for(cert).to_owned(),
            key: files.server_key().to_owned(),
            ca: files.ca_cert().to_owned(),
        });
        self
    }

    /// Asks TLS clients for a certificate signed by the test CA of [`tls`](Self::tls)'s files
    /// ([`TlsFiles::client_cert`]). `required`: the server drops a client without one
    /// (`ssl_verify_mode=2`); otherwise it drops only a client that sends a bad one
    /// (`ssl_verify_mode=1`). Only with [`tls`](Self::tls).
    pub fn tls_client_certs(mut self, required: bool) -> Self {
        self.client_certs = Some(required);
        self
    }

    /// Passes an extra argument to memcached (for example `-I`, `2m` for a 2 MiB item limit).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the server and waits until it answers.
    pub fn start(self) -> io::Result<Memcached> {
        self.check()?;
        let dir = temp_dir()?;
        let mut server = Memcached {
            child: None,
            // Replaced by a TCP port below, unless it listens on this socket.
            listen: Listen::Unix(dir.join("memcached.sock")),
            udp: self.udp,
            args: self.args.clone(),
            dir,
            sasl: self.sasl.clone(),
            client_certs: self.client_certs,
        };
        // From here on, dropping `server` removes the directory and gives its ports back.
        if let Some((username, password)) = &self.sasl {
            write_sasl_config(&server.dir, username, password)?;
        }
        if let Some(tls) = &self.tls {
            tls.copy_into(&server.dir)?;
        }
        let mut last_error = None;
        // A free port can be taken by another process between our probe and memcached's bind.
        for _ in 0..5 {
            if !self.unix_socket {
                let old = std::mem::replace(&mut server.listen, self.new_tcp_listen()?);
                old.release_ports();
            }
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("memcached did not start")))
    }

    /// Refuses options that do not go together.
    fn check(&self) -> io::Result<()> {
        let conflict = if self.tls.is_some() && self.unix_socket {
            Some("a TLS server listens on TCP, not on a unix socket")
        } else if self.tls.is_some() && self.udp {
            Some("a TLS server does not listen for UDP")
        } else if self.client_certs.is_some() && self.tls.is_none() {
            Some("tls_client_certs needs tls")
        } else {
            None
        };
        match conflict {
            Some(why) => Err(io::Error::new(io::ErrorKind::InvalidInput, why)),
            None => Ok(()),
        }
    }

    /// Fresh ports for a TCP server: one, or a TLS and a plaintext one.
    fn new_tcp_listen(&self) -> io::Result<Listen> {
        let port = unused_port()?;
        if self.tls.is_none() {
            return Ok(Listen::Tcp(port));
        }
        match unused_port() {
            Ok(plain_port) => Ok(Listen::Tls { port, plain_port }),
            Err(err) => {
                release_port(port);
                Err(err)
            }
        }
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

    /// The server spec for a client: `127.0.0.1:PORT` or the socket path. A TLS server's
    /// port speaks only TLS ([`plain_spec`](Self::plain_spec) does not).
    pub fn spec(&self) -> String {
        match &self.listen {
            Listen::Tcp(port) | Listen::Tls { port, .. } => format!("127.0.0.1:{port}"),
            Listen::Unix(path) => path.display().to_string(),
        }
    }

    /// The spec of a listener without TLS: a TLS server's plaintext port
    /// (`127.0.0.1:PLAIN_PORT`), or [`spec`](Self::spec) for any other server.
    pub fn plain_spec(&self) -> String {
        match &self.listen {
            Listen::Tls { plain_port, .. } => format!("127.0.0.1:{plain_port}"),
            _ => self.spec(),
        }
    }

    /// The UDP server spec (`udp:127.0.0.1:PORT`), if started with [`MemcachedBuilder::udp`].
    pub fn udp_spec(&self) -> Option<String> {
        match self.listen {
            Listen::Tcp(port) if self.udp => Some(format!("udp:127.0.0.1:{port}")),
            _ => None,
        }
    }

    /// The TCP port, if it listens on one (for a TLS server, its TLS port).
    pub fn port(&self) -> Option<u16> {
        match self.listen {
            Listen::Tcp(port) | Listen::Tls { port, .. } => Some(port),
            Listen::Unix(_) => None,
        }
    }

    /// The port that speaks TLS, if started with [`MemcachedBuilder::tls`].
    pub fn tls_port(&self) -> Option<u16> {
        match self.listen {
            Listen::Tls { port, .. } => Some(port),
            _ => None,
        }
    }

    /// The TCP port that speaks plaintext: a TLS server's second port, or
    /// [`port`](Self::port) for a server without TLS.
    pub fn plain_port(&self) -> Option<u16> {
        match self.listen {
            Listen::Tls { plain_port, .. } => Some(plain_port),
            _ => self.port(),
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
            Listen::Tls { port, plain_port } => {
                let mut options = format!("ssl_chain_cert={TLS_CERT},ssl_key={TLS_KEY}");
                if let Some(required) = self.client_certs {
                    let mode = if required { 2 } else { 1 };
                    options.push_str(&format!(",ssl_ca_cert={TLS_CA},ssl_verify_mode={mode}"));
                }
                // `notls:` exempts the second listener from `-Z`.
                let listen = format!("127.0.0.1:{port},notls:127.0.0.1:{plain_port}");
                command
                    .current_dir(&self.dir)
                    .args(["-l", &listen, "-U", "0", "-Z", "-o", &options])
            }
            Listen::Unix(path) => command.args(["-U", "0"]).arg("-s").arg(path),
        };
        // The owner of /proc/self is the process's effective user.
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if root {
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
        let mut child = command.spawn().map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot run {program:?} ({err}): install Debian's memcached package or set MEMCACHED_BIN"),
            )
        })?;
        let pid = child.id().to_string();
        // Check the pid: another process may answer on a port we thought was free.
        let started = await_start(
            &mut child,
            "memcached",
            || fs::read_to_string(&log).unwrap_or_default(),
            || self.stat("pid").ok().as_deref() == Some(pid.as_str()),
        );
        self.child = Some(child);
        if started.is_err() {
            self.stop();
        }
        started
    }

    /// One value of the server's `stats`, read over a fresh connection (authenticated, in the
    /// binary protocol, for a SASL server; to the plaintext port, for a TLS server).
    pub fn stat(&self, name: &str) -> io::Result<String> {
        let stats = match &self.listen {
            Listen::Unix(path) => self.stats_over(connect_unix(path)?)?,
            _ => self.stats_over(connect_tcp(&self.plain_spec())?)?,
        };
        stats
            .into_iter()
            .find_map(|(k, v)| (k == name).then_some(v))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no stat {name}")))
    }

    /// Every stat, over `stream`.
    fn stats_over<S: Read + Write>(&self, stream: S) -> io::Result<Vec<(String, String)>> {
        if let Some((username, password)) = &self.sasl {
            return binary_stats(stream, username, password);
        }
        let reply = ask(stream, "stats", "END")?;
        Ok(reply
            .lines()
            .filter_map(|line| {
                let (name, value) = line.strip_prefix("STAT ")?.split_once(' ')?;
                Some((name.to_owned(), value.to_owned()))
            })
            .collect())
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.stop();
        self.listen.release_ports();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A loopback TCP port that nothing listens on and that no server or proxy of this module will
/// be given while the process runs: a server spec (`127.0.0.1:PORT`) that refuses connections,
/// or a port for a listener of a test's own.
///
/// A port taken with a plain `bind("127.0.0.1:0")` can be the port of a stopped [`Memcached`]
/// waiting for its restart, or be given to a server started next, which then answers where a
/// test expects nobody.
pub fn unused_port() -> io::Result<u16> {
    let mut ports = PORTS_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    let ports = ports.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if ports.insert(port) {
            return Ok(port);
        }
    }
}

/// Gives back a port from [`unused_port`] once its process is gone.
pub(super) fn release_port(port: u16) {
    if let Some(ports) = PORTS_IN_USE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
    {
        ports.remove(&port);
    }
}

/// A new, empty directory of this process's own under the system's temporary directory.
pub(super) fn temp_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "libmemcached-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}
