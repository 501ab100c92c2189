//! [`ErrorKind`]: one group per error, for counting and alerting.

use std::fmt;

use super::failure::agreed;
use super::{Error, ReturnCode};

/// What kind of failure an [`Error`] is: the groups of the predicates, one per error, for
/// counting and alerting ([`Metrics`](crate::Metrics) counts errors by kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A server could not be reached or dropped the connection.
    Connection,
    /// An I/O wait ran past the poll timeout, or no pooled client came free in time.
    Timeout,
    /// A server libmemcached marked dead or disabled after failures.
    ServerDown,
    /// SASL authentication failed.
    Auth,
    /// A reply that could not be understood, or a command the server rejected.
    Protocol,
    /// The server reported a failure of its own (out of memory, `SERVER_ERROR`).
    Server,
    /// The caller passed something unusable (key, value, spec, configuration, argument).
    Input,
    /// A stored value that does not decode or inflate.
    Decode,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::Connection,
        ErrorKind::Timeout,
        ErrorKind::ServerDown,
        ErrorKind::Auth,
        ErrorKind::Protocol,
        ErrorKind::Server,
        ErrorKind::Input,
        ErrorKind::Decode,
        ErrorKind::Other,
    ];

    /// A short lower-case name, fit for a metric label: `connection`, `timeout`,
    /// `server_down`, `auth`, `protocol`, `server`, `input`, `decode`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ServerDown => "server_down",
            ErrorKind::Auth => "auth",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Server => "server",
            ErrorKind::Input => "input",
            ErrorKind::Decode => "decode",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The kind of this error. For [`Error::Multi`], the kind every failure has, or
    /// [`ErrorKind::Other`] if they differ.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Multi { failures } => agreed(failures, Error::kind).unwrap_or(ErrorKind::Other),
            Self::Decode { .. } | Self::Decompress { .. } => ErrorKind::Decode,
            _ if self.is_timeout() => ErrorKind::Timeout,
            _ if matches!(
                self.code(),
                Some(ReturnCode::ServerMarkedDead | ReturnCode::ServerTemporarilyDisabled)
            ) =>
            {
                ErrorKind::ServerDown
            }
            _ if self.is_connection() => ErrorKind::Connection,
            _ if self.is_auth() => ErrorKind::Auth,
            _ if self.is_invalid_input() => ErrorKind::Input,
            _ if self.is_protocol() => ErrorKind::Protocol,
            _ if self.is_server() => ErrorKind::Server,
            _ => ErrorKind::Other,
        }
    }
}
