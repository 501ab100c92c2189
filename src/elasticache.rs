//! AWS ElastiCache auto-discovery (pylibmc's `elasticache()`): ask a cluster's configuration
//! endpoint for its nodes and build a client for them.
//!
//! The endpoint speaks memcached's ASCII protocol plus one command, `config get cluster`, whose
//! answer is
//!
//! ```text
//! CONFIG cluster 0 <bytes>\r\n
//! <version>\n
//! <hostname>|<ip>|<port> <hostname>|<ip>|<port> ...\n
//! \r\n
//! END\r\n
//! ```
//!
//! Each node is reached at its IP address when the endpoint gives one, else at its host name.
//! Engines older than memcached 1.4.14 answer that command with `ERROR` and keep the same text
//! under the key `AmazonElastiCache:cluster` instead, which is read next. (pylibmc always takes
//! that second path: its `config get` request is malformed.)
//!
//! ```no_run
//! use libmemcached::elasticache;
//!
//! let mc = elasticache::elasticache("mycluster.abc123.cfg.use1.cache.amazonaws.com:11211")?;
//! mc.set("k", "v", 0)?;
//!
//! // Or look first, and choose the client's options:
//! let config = elasticache::discover("mycluster.abc123.cfg.use1.cache.amazonaws.com:11211")?;
//! println!("configuration version {}: {:?}", config.version(), config.specs());
//! let mc = config.builder().binary(true).failover().build()?;
//! # Ok::<(), libmemcached::Error>(())
//! ```
//!
//! Discovery happens once; call it again (and compare [`ClusterConfig::version`]) to follow
//! nodes being added or replaced.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::builder::ClientBuilder;
use crate::client::Client;
use crate::error::{Error, Result, ReturnCode};
use crate::server::{ServerSpec, Transport};

/// How long [`discover`] and [`elasticache`] wait for the endpoint, connecting and reading
/// together.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The key older engines keep the configuration under.
pub const CONFIG_KEY: &str = "AmazonElastiCache:cluster";

/// More than any real configuration (hundreds of nodes); a longer one is refused unread.
const MAX_CONFIG_LEN: usize = 1 << 20;
/// The longest reply line read before the configuration itself.
const MAX_LINE_LEN: u64 = 1024;

/// A cluster's configuration: its version and nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    version: u64,
    nodes: Vec<ClusterNode>,
}

/// One node of a [`ClusterConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    hostname: String,
    ip: Option<IpAddr>,
    port: u16,
}

impl ClusterNode {
    /// The node's host name, as the endpoint gave it (may be empty when an IP is given).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The node's IP address, when the endpoint gave one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The node's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server spec a client uses: the IP when known (no DNS lookup), else the host name.
    pub fn spec(&self) -> String {
        match self.ip {
            Some(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            Some(IpAddr::V4(ip)) => format!("{ip}:{}", self.port),
            None => format!("{}:{}", self.hostname, self.port),
        }
    }
}

impl fmt::Display for ClusterNode {
    /// The endpoint's form, `hostname|ip|port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.ip.map(|ip| ip.to_string()).unwrap_or_default();
        write!(f, "{}|{ip}|{}", self.hostname, self.port)
    }
}

impl ClusterConfig {
    /// Parses the configuration text: the version line, then the nodes separated by spaces,
    /// each `hostname|ip|port`. Anything else is an [`Error::AutoDiscovery`] saying what.
    ///
    /// ```
    /// use libmemcached::elasticache::ClusterConfig;
    ///
    /// let config = ClusterConfig::parse(b"12\nnode1.cache|10.0.0.1|11211 node2.cache||11212\n")?;
    /// assert_eq!(config.version(), 12);
    /// assert_eq!(config.specs(), ["10.0.0.1:11211", "node2.cache:11212"]);
    /// assert!(ClusterConfig::parse(b"12\nnode1.cache|10.0.0.1\n").is_err());
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn parse(text: &[u8]) -> Result<ClusterConfig> {
        let malformed = |reason: String| Error::AutoDiscovery {
            endpoint: String::new(),
            missing: false,
            reason,
        };
        let text = std::str::from_utf8(text)
            .map_err(|_| malformed("the configuration is not UTF-8 text".into()))?;
        let lines: Vec<&str> = text
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .collect();
        // A final newline leaves one empty piece; anything more is not the expected shape.
        let lines = match lines.as_slice() {
            [rest @ .., ""] => rest,
            all => all,
        };
        let [version, nodes] = lines else {
            return Err(malformed(format!(
                "expected two lines (version, then nodes), got {} in {}",
                lines.len(),
                shown(text)
            )));
        };
        let version = version
            .trim()
            .parse()
            .map_err(|_| malformed(format!("the version {} is not a number", shown(version))))?;
        let nodes = nodes
            .split_whitespace()
            .map(|node| {
                parse_node(node).map_err(|why| malformed(format!("node {}: {why}", shown(node))))
            })
            .collect::<Result<Vec<_>>>()?;
        if nodes.is_empty() {
            return Err(malformed("the configuration lists no nodes".into()));
        }
        Ok(ClusterConfig { version, nodes })
    }

    /// The configuration's version; it grows whenever nodes change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The nodes, in the endpoint's order.
    pub fn nodes(&self) -> &[ClusterNode] {
        &self.nodes
    }

    /// The nodes' server specs (see [`ClusterNode::spec`]).
    pub fn specs(&self) -> Vec<String> {
        self.nodes.iter().map(ClusterNode::spec).collect()
    }

    /// A builder with the nodes as servers, for the rest of the client's options.
    pub fn builder(&self) -> ClientBuilder {
        Client::builder().servers(self.specs())
    }
}

fn parse_node(node: &str) -> std::result::Result<ClusterNode, String> {
    let parts: Vec<&str> = node.split('|').collect();
    let [hostname, ip, port] = parts.as_slice() else {
        return Err("expected hostname|ip|port".into());
    };
    let port = match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("{port:?} is not a port")),
        Ok(port) => port,
    };
    let ip = match *ip {
        "" => None,
        ip => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| format!("{ip:?} is not an IP address"))?,
        ),
    };
    if ip.is_none() {
        if hostname.is_empty() {
            return Err("neither a host name nor an IP address".into());
        }
        // The spec syntax must take it as a plain TCP host.
        let spec = format!("{hostname}:{port}");
        match spec.parse::<ServerSpec>() {
            Ok(parsed) if parsed.transport() == Transport::Tcp && parsed.host() == *hostname => {}
            _ => return Err(format!("{hostname:?} is not a host name")),
        }
    }
    Ok(ClusterNode {
        hostname: (*hostname).to_owned(),
        ip,
        port,
    })
}

/// Asks the configuration endpoint (`host` or `host:port`) for the cluster's configuration,
/// waiting at most [`DEFAULT_TIMEOUT`].
pub fn discover(endpoint: &str) -> Result<ClusterConfig> {
    discover_timeout(endpoint, DEFAULT_TIMEOUT)
}

/// [`discover`], waiting at most `timeout` for the endpoint (connecting and reading together;
/// the DNS lookup of its name is not bounded).
pub fn discover_timeout(endpoint: &str, timeout: Duration) -> Result<ClusterConfig> {
    discover_over(endpoint, timeout, None)
}

/// [`discover`] from an endpoint that speaks TLS (in-transit encryption), checking its
/// certificate as `tls` says. Build the client with the same settings:
///
/// ```no_run
/// use libmemcached::{Tls, elasticache};
///
/// let tls = Tls::new();
/// let config = elasticache::discover_tls("mycluster.abc123.cfg.use1.cache.amazonaws.com:11211", &tls)?;
/// let mc = config.builder().tls(tls).build()?;
/// # Ok::<(), libmemcached::Error>(())
/// ```
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub fn discover_tls(endpoint: &str, tls: &crate::Tls) -> Result<ClusterConfig> {
    let connector = tls
        .connector()
        .map_err(|why| crate::ConfigError::setting("tls", why))?;
    discover_over(endpoint, DEFAULT_TIMEOUT, Some(&connector))
}

/// Without `tls`, the only connector there is: none.
#[cfg(not(feature = "tls"))]
type Connector = std::convert::Infallible;
#[cfg(feature = "tls")]
use crate::relay::tls::Connector;

fn discover_over(
    endpoint: &str,
    timeout: Duration,
    tls: Option<&Connector>,
) -> Result<ClusterConfig> {
    let spec: ServerSpec = endpoint.parse()?;
    if spec.transport() != Transport::Tcp {
        return Err(Error::InvalidServerSpec {
            spec: endpoint.to_owned(),
            reason: "the configuration endpoint is reached over TCP".into(),
        });
    }
    // A timeout longer than the clock can count waits as long as it can.
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(u64::from(u32::MAX)));
    let mut session = Session::connect(&spec, endpoint, deadline, tls)?;
    let text = session.config()?;
    ClusterConfig::parse(&text).map_err(|e| match e {
        Error::AutoDiscovery {
            missing, reason, ..
        } => Error::AutoDiscovery {
            endpoint: endpoint.to_owned(),
            missing,
            reason,
        },
        other => other,
    })
}

/// A client for the cluster behind the configuration endpoint, with default options (pylibmc's
/// `elasticache(address)`). Use [`discover`] and [`ClusterConfig::builder`] to set any.
pub fn elasticache(endpoint: &str) -> Result<Client> {
    discover(endpoint)?.builder().build()
}

/// One connection to the endpoint, with every read bounded by the deadline.
struct Session<'a> {
    reader: BufReader<Bounded>,
    endpoint: &'a str,
    deadline: Instant,
}

impl<'a> Session<'a> {
    fn connect(
        spec: &ServerSpec,
        endpoint: &'a str,
        deadline: Instant,
        tls: Option<&Connector>,
    ) -> Result<Session<'a>> {
        let down = |code, what: String| Error::Memcached {
            code,
            message: format!("configuration endpoint: {what}"),
            key: None,
            server: Some(spec.address().clone()),
        };
        let addresses = (spec.host(), spec.port())
            .to_socket_addrs()
            .map_err(|e| down(ReturnCode::HostLookupFailure, e.to_string()))?;
        let mut last = down(ReturnCode::HostLookupFailure, "no address".into());
        for address in addresses {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(down(ReturnCode::Timeout, "timed out connecting".into()));
            }
            match TcpStream::connect_timeout(&address, left) {
                Ok(stream) => {
                    #[cfg(feature = "tls")]
                    let tls = match tls {
                        Some(connector) => Some(
                            connector
                                .connect(spec.host())
                                .map_err(|why| down(ReturnCode::ConnectionFailure, why))?,
                        ),
                        None => None,
                    };
                    #[cfg(not(feature = "tls"))]
                    let tls = tls.map(|never| match *never {});
                    return Ok(Session {
                        reader: BufReader::new(Bounded {
                            stream,
                            tls,
                            deadline,
                        }),
                        endpoint,
                        deadline,
                    });
                }
                Err(e) => last = io_error(endpoint, &e),
            }
        }
        Err(last)
    }

    /// The configuration text: from `config get cluster`, or from the key when the endpoint
    /// does not know that command.
    fn config(&mut self) -> Result<Vec<u8>> {
        self.send("config get cluster\r\n")?;
        let line = self.line()?;
        if line == "ERROR" {
            return self.config_from_key();
        }
        if line == "END" {
            return Err(self.missing("`config get cluster` returned nothing"));
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let len = match fields.as_slice() {
            ["CONFIG", "cluster", flags, len] if flags.parse::<u32>().is_ok() => {
                self.length(len)?
            }
            _ => return Err(self.malformed(format!("unexpected reply {line:?}"))),
        };
        let text = self.body(len)?;
        self.expect_end()?;
        Ok(text)
    }

    fn config_from_key(&mut self) -> Result<Vec<u8>> {
        self.send(&format!("get {CONFIG_KEY}\r\n"))?;
        let line = self.line()?;
        if line == "END" {
            return Err(self.missing(&format!(
                "the endpoint does not know `config get cluster` and has no {CONFIG_KEY} key"
            )));
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let len = match fields.as_slice() {
            ["VALUE", key, flags, len] | ["VALUE", key, flags, len, _]
                if *key == CONFIG_KEY && flags.parse::<u32>().is_ok() =>
            {
                self.length(len)?
            }
            _ => return Err(self.malformed(format!("unexpected reply {line:?}"))),
        };
        let text = self.body(len)?;
        self.expect_end()?;
        Ok(text)
    }

    fn length(&self, len: &str) -> Result<usize> {
        match len.parse::<usize>() {
            Ok(n) if n <= MAX_CONFIG_LEN => Ok(n),
            Ok(_) => Err(self.malformed(format!("a configuration of {len} bytes is too long"))),
            Err(_) => Err(self.malformed(format!("the length {len:?} is not a number"))),
        }
    }

    /// `len` bytes and the `\r\n` after them.
    fn body(&mut self, len: usize) -> Result<Vec<u8>> {
        let mut body = vec![0; len + 2];
        self.arm()?;
        self.reader
            .read_exact(&mut body)
            .map_err(|e| io_error(self.endpoint, &e))?;
        if !body.ends_with(b"\r\n") {
            return Err(self.malformed(format!(
                "the configuration is not {len} bytes followed by CRLF"
            )));
        }
        body.truncate(len);
        Ok(body)
    }

    fn expect_end(&mut self) -> Result<()> {
        match self.line()?.as_str() {
            "END" => Ok(()),
            other => Err(self.malformed(format!(
                "expected END after the configuration, got {other:?}"
            ))),
        }
    }

    fn send(&mut self, command: &str) -> Result<()> {
        self.arm()?;
        self.reader
            .get_mut()
            .write_all(command.as_bytes())
            .map_err(|e| io_error(self.endpoint, &e))
    }

    /// One reply line without its CRLF.
    fn line(&mut self) -> Result<String> {
        self.arm()?;
        let mut line = Vec::new();
        (&mut self.reader)
            .take(MAX_LINE_LEN)
            .read_until(b'\n', &mut line)
            .map_err(|e| io_error(self.endpoint, &e))?;
        if line.is_empty() {
            return Err(io_error(
                self.endpoint,
                &io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
            ));
        }
        let Some(line) = line.strip_suffix(b"\r\n") else {
            return Err(self.malformed(format!(
                "a reply line that does not end in CRLF: {:?}",
                String::from_utf8_lossy(&line)
            )));
        };
        String::from_utf8(line.to_vec())
            .map_err(|_| self.malformed("a reply line that is not UTF-8".into()))
    }

    /// Fails once the deadline has passed; else bounds the next write by what is left of it
    /// (reads bound themselves: see [`Bounded`]).
    fn arm(&self) -> Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io_error(
                self.endpoint,
                &io::Error::new(io::ErrorKind::TimedOut, "timed out"),
            ));
        }
        self.reader
            .get_ref()
            .stream
            .set_write_timeout(Some(left))
            .map_err(|e| io_error(self.endpoint, &e))
    }

    fn missing(&self, reason: &str) -> Error {
        Error::AutoDiscovery {
            endpoint: self.endpoint.to_owned(),
            missing: true,
            reason: reason.to_owned(),
        }
    }

    fn malformed(&self, reason: String) -> Error {
        Error::AutoDiscovery {
            endpoint: self.endpoint.to_owned(),
            missing: false,
            reason,
        }
    }
}

/// The endpoint's stream, whose every read waits only for what is left of the deadline: a
/// socket timeout bounds one read, and an endpoint that sends a byte at a time would otherwise
/// stretch a read of many bytes far past it.
struct Bounded {
    stream: TcpStream,
    /// The TLS session over `stream`, for an endpoint that speaks TLS.
    #[cfg(feature = "tls")]
    tls: Option<rustls::ClientConnection>,
    #[cfg(not(feature = "tls"))]
    tls: Option<std::convert::Infallible>,
    deadline: Instant,
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        self.stream.set_read_timeout(Some(left))?;
        match &mut self.tls {
            #[cfg(feature = "tls")]
            Some(tls) => rustls::Stream::new(tls, &mut self.stream).read(buf),
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
            None => self.stream.read(buf),
        }
    }
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.tls {
            #[cfg(feature = "tls")]
            Some(tls) => rustls::Stream::new(tls, &mut self.stream).write(buf),
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
            None => self.stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            #[cfg(feature = "tls")]
            Some(tls) => rustls::Stream::new(tls, &mut self.stream).flush(),
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
            None => self.stream.flush(),
        }
    }
}

/// A socket error as the connection error libmemcached would report.
fn io_error(endpoint: &str, error: &io::Error) -> Error {
    let code = match error.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ReturnCode::Timeout,
        io::ErrorKind::ConnectionRefused => ReturnCode::ConnectionFailure,
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => ReturnCode::ReadFailure,
        _ => ReturnCode::ConnectionFailure,
    };
    Error::Memcached {
        code,
        message: format!("configuration endpoint: {error}"),
        key: None,
        server: endpoint
            .parse::<ServerSpec>()
            .ok()
            .map(|s| s.address().clone()),
    }
}

/// Text from the endpoint for a message: at most 64 bytes of it, escaped (a configuration can be
/// a megabyte).
fn shown(text: &str) -> String {
    crate::key::display(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &[u8]) -> String {
        match ClusterConfig::parse(text) {
            Err(Error::AutoDiscovery {
                missing: false,
                reason,
                ..
            }) => reason,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
        }
    }

    #[test]
    fn parses_nodes_preferring_the_ip() {
        let config = ClusterConfig::parse(
            b"7\na.cache|10.0.0.1|11211 b.cache||11212  c.cache|::1|11213\r\n",
        )
        .unwrap();
        assert_eq!(config.version(), 7);
        assert_eq!(
            config.specs(),
            ["10.0.0.1:11211", "b.cache:11212", "[::1]:11213"]
        );
        assert_eq!(config.nodes()[1].ip(), None);
        assert_eq!(config.nodes()[0].to_string(), "a.cache|10.0.0.1|11211");
        // No final newline, or an IP without a host name, are fine too.
        let config = ClusterConfig::parse(b"1\n|127.0.0.1|5").unwrap();
        assert_eq!(config.specs(), ["127.0.0.1:5"]);
    }

    #[test]
    fn every_malformed_shape_is_refused_with_a_reason() {
        assert!(reason(b"").contains("two lines"));
        assert!(reason(b"1\n").contains("two lines"));
        assert!(reason(b"1\na|1.2.3.4|5\nextra\n").contains("two lines"));
        assert!(reason(b"one\na|1.2.3.4|5\n").contains("not a number"));
        assert!(reason(b"1\n\n").contains("no nodes"));
        assert!(reason(b"1\na|1.2.3.4\n").contains("hostname|ip|port"));
        assert!(reason(b"1\na|1.2.3.4|5|6\n").contains("hostname|ip|port"));
        assert!(reason(b"1\na|1.2.3.4|port\n").contains("not a port"));
        assert!(reason(b"1\na|1.2.3.4|0\n").contains("not a port"));
        assert!(reason(b"1\na|1.2.3.4|70000\n").contains("not a port"));
        assert!(reason(b"1\na|1.2.3|5\n").contains("not an IP"));
        assert!(reason(b"1\n||5\n").contains("neither"));
        assert!(reason(b"1\n/sock||5\n").contains("not a host name"));
        assert!(reason(b"1\nudp:x||5\n").contains("not a host name"));
        assert!(reason(b"1\n\xff||5\n").contains("UTF-8"));
    }
}
