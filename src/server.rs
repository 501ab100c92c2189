//! [`Address`]: where a server is; [`ServerSpec`]: an address and a weight, in pylibmc's syntax.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The default memcached port.
pub const DEFAULT_PORT: u16 = 11211;

/// How a client reaches a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP (`host`, `host:port`, `[v6]:port`).
    Tcp,
    /// UDP (`udp:host:port`); only fire-and-forget writes work over UDP.
    Udp,
    /// A unix domain socket (`/path/to/socket`).
    Unix,
}

/// Where a server is: a TCP or UDP host and port, or a unix socket path.
///
/// Its [`Display`](fmt::Display) form is `host:port`, `[v6]:port`, `udp:host:port` or the
/// socket path, which parses back to the same address (and as a [`ServerSpec`] of weight 1,
/// unless a socket path ends in `:digits`, which a spec reads as a weight). Clients report their servers as addresses
/// ([`Client::servers`](crate::Client::servers)), and so do errors
/// ([`Error::server`](crate::Error::server)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    transport: Transport,
    host: String,
    port: u16,
}

impl Address {
    /// An address from its parts (the port is 0 for a unix socket).
    pub fn new(transport: Transport, host: impl Into<String>, port: u16) -> Address {
        Address {
            transport,
            host: host.into(),
            port: if transport == Transport::Unix {
                0
            } else {
                port
            },
        }
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The host name or address (without brackets), or the socket path.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (0 for a unix socket).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Address {
    /// `host:port`, `[v6]:port`, `udp:host:port` or the socket path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            Transport::Unix => return f.write_str(&self.host),
            Transport::Udp => f.write_str("udp:")?,
            Transport::Tcp => {}
        }
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    /// An address in [`ServerSpec`]'s syntax, without a weight. A socket path is taken whole:
    /// `/run/mc:3` is the path `/run/mc:3` (the spec `/run/mc:3` is `/run/mc` with weight 3).
    fn from_str(text: &str) -> Result<Address> {
        if text.starts_with('/') {
            return check_text(text)
                .and_then(|()| unix_address(text))
                .map_err(|reason| Error::InvalidServerSpec {
                    spec: text.to_owned(),
                    reason,
                });
        }
        let spec: ServerSpec = text.parse()?;
        match spec.weight {
            1 => Ok(spec.address),
            _ => Err(Error::InvalidServerSpec {
                spec: text.to_owned(),
                reason: "an address has no weight".into(),
            }),
        }
    }
}

/// One server: its [`Address`] and its weight under weighted consistent hashing.
///
/// Parsed from pylibmc's syntax:
///
/// | spec | meaning |
/// |---|---|
/// | `host`, `host:port`, `host:port:weight` | TCP; port 11211 and weight 1 by default |
/// | `[::1]`, `[::1]:port`, `[::1]:port:weight` | TCP over IPv6 |
/// | `/path/to/socket`, `/path/to/socket:weight` | a unix socket |
/// | `udp:host:port` (and the forms above after `udp:`) | UDP |
///
/// ```
/// use libmemcached::{ServerSpec, Transport};
///
/// let spec: ServerSpec = "[::1]:11212:3".parse().unwrap();
/// assert_eq!((spec.host(), spec.port(), spec.weight()), ("::1", 11212, 3));
/// assert_eq!(spec.to_string(), "[::1]:11212:3");
/// assert_eq!("/run/mc.sock".parse::<ServerSpec>().unwrap().transport(), Transport::Unix);
/// assert!("[::1:11211".parse::<ServerSpec>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerSpec {
    address: Address,
    weight: u32,
}

/// The longest unix socket path the kernel accepts (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;
const TOO_MANY_COLONS: &str = "too many ':' (write IPv6 addresses in brackets: [::1]:11211)";
/// The longest host name (RFC 1035).
const MAX_HOST: usize = 253;

impl ServerSpec {
    /// A spec for `address` with `weight` (at least 1).
    pub fn new(address: Address, weight: u32) -> ServerSpec {
        ServerSpec {
            address,
            weight: weight.max(1),
        }
    }

    /// The address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.address.transport
    }

    /// The host name or address (without brackets), or the socket path.
    pub fn host(&self) -> &str {
        &self.address.host
    }

    /// The port (0 for a unix socket).
    pub fn port(&self) -> u16 {
        self.address.port
    }

    /// The weight (1 unless given).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    fn parse(spec: &str) -> std::result::Result<Self, String> {
        check_text(spec)?;
        if spec.starts_with('/') {
            return Self::parse_unix(spec);
        }
        let (transport, rest) = match spec.strip_prefix("udp:") {
            Some(rest) => (Transport::Udp, rest),
            None => (Transport::Tcp, spec),
        };
        let (host, tail) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, tail) = bracketed
                .split_once(']')
                .ok_or("unclosed '[' in an IPv6 address")?;
            if host.is_empty() || !host.contains(':') {
                return Err(format!("{host:?} in brackets is not an IPv6 address"));
            }
            match tail {
                "" => (host, None),
                _ => (
                    host,
                    Some(tail.strip_prefix(':').ok_or("expected ':' after ']'")?),
                ),
            }
        } else if rest.starts_with("::") || rest.matches(':').count() > 2 {
            return Err(TOO_MANY_COLONS.into());
        } else {
            match rest.split_once(':') {
                Some((host, tail)) => (host, Some(tail)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err("empty host".into());
        }
        if transport == Transport::Tcp && host == "udp" {
            // Written with its port, `udp:11211` would be the UDP server `11211`.
            return Err(
                "a TCP host named \"udp\" reads as the udp: prefix once a port is \
                        written; use its address or full name"
                    .into(),
            );
        }
        if host.starts_with('/') {
            // libmemcached would take it for a unix socket.
            return Err("a host name cannot start with '/'".into());
        }
        if host.len() > MAX_HOST {
            return Err(format!("host name longer than {MAX_HOST} bytes"));
        }
        let (port, weight) = match tail.map(|t| t.split_once(':').unwrap_or((t, ""))) {
            None => (DEFAULT_PORT, 1),
            Some((port, weight)) => {
                let port = parse_port(port)?;
                let weight = match weight {
                    "" if tail.is_some_and(|t| t.ends_with(':')) => {
                        return Err("empty weight".into());
                    }
                    "" => 1,
                    w if w.contains(':') => {
                        return Err(
                            "too many ':' (write IPv6 addresses in brackets: [::1]:11211)".into(),
                        );
                    }
                    w => parse_weight(w)?,
                };
                (port, weight)
            }
        };
        Ok(Self::new(Address::new(transport, host, port), weight))
    }

    fn parse_unix(spec: &str) -> std::result::Result<Self, String> {
        let (path, weight) = match spec.rsplit_once(':') {
            Some((path, w)) if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) => {
                (path, parse_weight(w)?)
            }
            _ => (spec, 1),
        };
        Ok(Self::new(unix_address(path)?, weight))
    }
}

/// Refuses an empty spec and one with spaces or control characters.
fn check_text(spec: &str) -> std::result::Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec".into());
    }
    match spec.chars().find(|c| c.is_whitespace() || c.is_control()) {
        Some(c) => Err(format!("contains {c:?}")),
        None => Ok(()),
    }
}

fn unix_address(path: &str) -> std::result::Result<Address, String> {
    if path.len() > MAX_SOCKET_PATH {
        return Err(format!("socket path longer than {MAX_SOCKET_PATH} bytes"));
    }
    Ok(Address::new(Transport::Unix, path, 0))
}

pub(crate) fn parse_port(port: &str) -> std::result::Result<u16, String> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("bad port {port:?} (expected 1 to 65535)")),
        Ok(port) => Ok(port),
    }
}

fn parse_weight(weight: &str) -> std::result::Result<u32, String> {
    match weight.parse::<u32>() {
        Ok(0) | Err(_) => Err(format!(
            "bad weight {weight:?} (expected a whole number from 1)"
        )),
        Ok(weight) => Ok(weight),
    }
}

impl FromStr for ServerSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        Self::parse(spec).map_err(|reason| Error::InvalidServerSpec {
            spec: spec.to_owned(),
            reason,
        })
    }
}

impl fmt::Display for ServerSpec {
    /// The spec in the syntax it parses from. A socket path that itself ends in `:digits`
    /// gets its weight written out, so that the digits are not read as one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)?;
        let path_ends_in_digits = self.transport() == Transport::Unix
            && self.host().rsplit_once(':').is_some_and(|(_, tail)| {
                !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit())
            });
        match self.weight {
            1 if !path_ends_in_digits => Ok(()),
            w => write!(f, ":{w}"),
        }
    }
}

impl crate::Client {
    /// Refuses an operation whose result is in a reply when the client speaks UDP: libmemcached
    /// 1.1 sends over UDP but never reads an answer.
    #[inline]
    pub(crate) fn refuse_over_udp(&self, operation: &str) -> Result<()> {
        match self.handle.facts().udp {
            false => Ok(()),
            true => Err(udp_refusal(operation)),
        }
    }
}

#[cold]
fn udp_refusal(operation: &str) -> Error {
    Error::Memcached {
        code: crate::ReturnCode::NotSupported,
        message: format!(
            "{operation} is not supported over UDP: libmemcached reads no replies there, \
                 so only fire-and-forget writes work"
        ),
        key: None,
        server: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(spec: &str) -> (Transport, String, u16, u32) {
        let s: ServerSpec = spec.parse().unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(
            s.to_string().parse::<ServerSpec>().unwrap(),
            s,
            "round trip of {spec}"
        );
        (s.transport(), s.host().to_owned(), s.port(), s.weight)
    }

    fn err(spec: &str) -> String {
        match spec.parse::<ServerSpec>() {
            Err(Error::InvalidServerSpec { spec: s, reason }) => {
                assert_eq!(s, spec);
                reason
            }
            other => panic!("{spec:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn accepts_pylibmc_forms() {
        use Transport::*;
        assert_eq!(ok("mc1"), (Tcp, "mc1".into(), 11211, 1));
        assert_eq!(ok("mc1:11212"), (Tcp, "mc1".into(), 11212, 1));
        assert_eq!(ok("10.0.0.2:11211:2"), (Tcp, "10.0.0.2".into(), 11211, 2));
        assert_eq!(ok("[::1]"), (Tcp, "::1".into(), 11211, 1));
        assert_eq!(ok("[::1]:11212"), (Tcp, "::1".into(), 11212, 1));
        assert_eq!(ok("[fe80::1]:11212:5"), (Tcp, "fe80::1".into(), 11212, 5));
        assert_eq!(ok("/tmp/mc.sock"), (Unix, "/tmp/mc.sock".into(), 0, 1));
        assert_eq!(ok("/tmp/mc.sock:3"), (Unix, "/tmp/mc.sock".into(), 0, 3));
        assert_eq!(ok("udp:mc1:11211"), (Udp, "mc1".into(), 11211, 1));
        assert_eq!(ok("udp:[::1]:11211:2"), (Udp, "::1".into(), 11211, 2));
        assert_eq!(ok("/tmp/s:123:01"), (Unix, "/tmp/s:123".into(), 0, 1));
        assert_eq!(ok("/tmp/s:123:7"), (Unix, "/tmp/s:123".into(), 0, 7));
        assert_eq!(ok("/tmp/s:x"), (Unix, "/tmp/s:x".into(), 0, 1));
    }

    #[test]
    fn addresses_display_and_parse_back() {
        for text in [
            "mc1:11211",
            "[::1]:11212",
            "udp:10.0.0.1:11211",
            "/run/mc.sock",
        ] {
            let address: Address = text.parse().unwrap();
            assert_eq!(address.to_string(), text);
        }
        assert!("mc1:11211:2".parse::<Address>().is_err());
    }

    #[test]
    fn socket_paths_ending_in_digits_are_whole_addresses() {
        // Found by the server_spec fuzz target: the spec "/*!:0:5" is the path "/*!:0" with
        // weight 5, and that address displayed as "/*!:0", which did not parse as an address.
        let spec: ServerSpec = "/*!:0:5".parse().unwrap();
        let shown = spec.address().to_string();
        assert_eq!(shown, "/*!:0");
        assert_eq!(shown.parse::<Address>().unwrap(), *spec.address());
        let address: Address = "/run/mc:3".parse().unwrap();
        assert_eq!((address.host(), address.port()), ("/run/mc:3", 0));
        assert!("/run/mc 3".parse::<Address>().is_err());
        assert!(format!("/{}", "s".repeat(120)).parse::<Address>().is_err());
    }

    #[test]
    fn refuses_malformed_specs_with_a_reason() {
        assert!(err("").contains("empty"));
        assert!(err("[::1:11211").contains("unclosed '['"));
        assert!(err("[::1]11211").contains("':' after ']'"));
        assert!(err("[]:11211").contains("not an IPv6"));
        assert!(err("[mc1]:11211").contains("not an IPv6"));
        assert!(err("mc1:").contains("bad port"));
        assert!(err("mc1:0").contains("bad port"));
        assert!(err("mc1:65536").contains("bad port"));
        assert!(err("mc1:http").contains("bad port"));
        assert!(err("mc1:-1").contains("bad port"));
        assert!(err("mc1:11211:0").contains("bad weight"));
        assert!(err("mc1:11211:").contains("empty weight"));
        assert!(err("mc1:11211:x").contains("bad weight"));
        assert!(err("::1").contains("brackets"));
        assert!(err("mc1:1:2:3").contains("too many"));
        assert!(err(":11211").contains("empty host"));
        assert!(err("mc1 :11211").contains("' '"));
        assert!(err("mc\0").contains("\\0"));
        assert!(err("udp:").contains("empty host"));
        // Found by the server_spec fuzz target: the TCP host "udp" displayed as "udp:11211",
        // which is the UDP server "11211".
        assert!(err("udp").contains("\"udp\""));
        assert_eq!(
            ok("udp:udp:11211"),
            (Transport::Udp, "udp".into(), 11211, 1)
        );
        assert!(err("udp:/tmp/mc.sock").contains("'/'"));
        assert!(err(&format!("/{}", "s".repeat(120))).contains("socket path"));
        assert!(err(&"h".repeat(300)).contains("host name"));
    }
}
