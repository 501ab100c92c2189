//! Errors: every libmemcached return code as a [`ReturnCode`], and the crate's [`Error`].
//!
//! # From pylibmc's exceptions
//!
//! pylibmc raises one exception class per return code. Here a return code is a [`ReturnCode`]
//! inside [`Error::Memcached`], except for the two that callers handle most often, which have
//! variants of their own. The predicates ([`Error::is_connection`], [`Error::is_timeout`], ...)
//! group them the way callers usually branch.
//!
//! | pylibmc exception | this crate |
//! |---|---|
//! | `Error` / `MemcachedError` | [`Error`] (any variant) |
//! | `CacheMiss` | `Ok(None)` from `get`/`gets`; no error |
//! | `NotFound` | [`Error::NotFound`] |
//! | `TooBig` | [`Error::TooBig`] |
//! | `Failure` | `Memcached { code: ReturnCode::Failure, .. }` |
//! | `HostLookupError` | `Memcached { code: ReturnCode::HostLookupFailure, .. }` |
//! | `ConnectionError` | `Memcached { code: ReturnCode::ConnectionFailure, .. }` |
//! | `ConnectionBindError` | `Memcached { code: ReturnCode::ConnectionBindFailure, .. }` |
//! | `WriteError` | `Memcached { code: ReturnCode::WriteFailure, .. }` |
//! | `ReadError` | `Memcached { code: ReturnCode::ReadFailure, .. }` |
//! | `UnknownReadFailure` | `Memcached { code: ReturnCode::UnknownReadFailure, .. }` |
//! | `ProtocolError` | `Memcached { code: ReturnCode::ProtocolError, .. }` |
//! | `ClientError` | `Memcached { code: ReturnCode::ClientError, .. }` |
//! | `ServerError` | `Memcached { code: ReturnCode::ServerError, .. }` |
//! | `SocketCreateError` | `Memcached { code: ReturnCode::Error, .. }` (the same C value) |
//! | `DataExists` | `Ok(false)` from `add`/`cas`; otherwise `Memcached { code: ReturnCode::DataExists, .. }` |
//! | `DataDoesNotExist` | `Memcached { code: ReturnCode::DataDoesNotExist, .. }` |
//! | `AllocationError` | `Memcached { code: ReturnCode::MemoryAllocationFailure, .. }` |
//! | `SomeErrors` | `Memcached { code: ReturnCode::SomeErrors, .. }` |
//! | `NoServers` | `Memcached { code: ReturnCode::NoServers, .. }` |
//! | `UnixSocketError` | `Memcached { code: ReturnCode::FailUnixSocket, .. }` |
//! | `NotSupportedError` | `Memcached { code: ReturnCode::NotSupported, .. }` |
//! | `FetchNotFinished` | `Memcached { code: ReturnCode::FetchNotFinished, .. }` |
//! | `BadKeyProvided` | [`Error::InvalidKey`], checked before libmemcached sees the key |
//! | `InvalidHostProtocolError` | `Memcached { code: ReturnCode::InvalidHostProtocol, .. }` |
//! | `ServerDead` | `Memcached { code: ReturnCode::ServerMarkedDead, .. }` |
//! | `UnknownStatKey` | `Memcached { code: ReturnCode::UnknownStatKey, .. }` |
//! | `ServerDown` | `Memcached { code: ReturnCode::ServerTemporarilyDisabled, .. }` |
//! | `autoconf.NoAutoconfFound` | [`Error::AutoDiscovery`] with `missing: true` |
//! | `autoconf.UnsupportedAutoconfMethod` | none: the key fallback follows, as in pylibmc |
//! | `test.NotAliveError` | `testing::TestClientError::NotAlive`, with the `testing` feature |
//!
//! pylibmc reports codes it has no class for (a timeout, the SASL codes, ...) as the base `Error`;
//! here each keeps its own [`ReturnCode`] (`Timeout`, `AuthFailure`, ...).

use std::fmt;

use libmemcached_sys as sys;

/// A boxed error from an encoder or decoder.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to memcached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key does not exist (`incr`/`decr` of a missing key). Misses of `get` are `Ok(None)`.
    #[error("not found")]
    NotFound,

    /// The server refused a value larger than its item size limit (`memcached -I`, 1 MiB by
    /// default).
    #[error("value of {len} bytes is too big for the server{}", on_server(server))]
    TooBig {
        /// Size of the value that was sent, in bytes.
        len: usize,
        /// The server that refused it (`host:port`), when known.
        server: Option<String>,
    },

    /// libmemcached reported an error.
    #[error("{message}{}", on_server_unless_named(message, server))]
    Memcached {
        /// The return code.
        code: ReturnCode,
        /// libmemcached's detailed message.
        message: String,
        /// The server involved (`host:port`), when known.
        server: Option<String>,
    },

    /// A key that memcached cannot store, refused before anything was sent.
    #[error("invalid key {}: {reason}", crate::key::display(key))]
    InvalidKey {
        /// The key as given (without any prefix).
        key: Vec<u8>,
        /// What is wrong with it.
        reason: InvalidKeyReason,
    },

    /// A server spec that cannot be parsed.
    #[error("invalid server spec {spec:?}: {reason}")]
    InvalidServerSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A configuration that cannot be used: no servers, a libmemcached config string that does
    /// not parse, an argument out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// An argument outside what the operation accepts (such as a CAS token of 0).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// ElastiCache auto-discovery (see [`elasticache`](crate::elasticache)) found no cluster
    /// configuration at the endpoint (`missing`: neither `config get cluster` nor the
    /// `AmazonElastiCache:cluster` key has one, pylibmc's `NoAutoconfFound`), or one that does
    /// not parse. An endpoint that cannot be reached is a connection error instead
    /// ([`Error::is_connection`]).
    #[error("cluster configuration{}: {reason}", from_endpoint(endpoint))]
    AutoDiscovery {
        /// The configuration endpoint (empty when parsing text given directly).
        endpoint: String,
        /// No configuration was found, as opposed to a malformed one.
        missing: bool,
        /// What is wrong.
        reason: String,
    },

    /// No client of a [`ClientPool`](crate::ClientPool) came free in time.
    #[error("no client of the pool of {size} was free within {waited:?}")]
    PoolTimeout {
        /// How long the caller waited.
        waited: std::time::Duration,
        /// The pool's size.
        size: usize,
    },

    /// A value could not be encoded.
    #[error("cannot encode value: {0}")]
    Encode(#[source] BoxError),

    /// A compressed value could not be inflated: a corrupt stream, bytes appended to it, or more
    /// than the client's limit on inflated values.
    #[error(
        "cannot decompress the value of {}: {reason}",
        crate::key::display(key)
    )]
    Decompress {
        /// The key whose value failed to inflate.
        key: Vec<u8>,
        /// Why.
        reason: String,
    },

    /// A multi-key operation failed for some keys: each failure names its error (with the
    /// server) and the keys it cost. Keys not listed were read or written as usual.
    #[error("{}", describe_failures(failures))]
    Multi {
        /// The failures, one per server or cause.
        failures: Vec<KeyFailure>,
    },

    /// A stored value does not decode into the requested type.
    #[error(
        "cannot decode the value of {} (flags {flags}): {source}",
        crate::key::display(key)
    )]
    Decode {
        /// The key whose value failed to decode.
        key: Vec<u8>,
        /// The flags stored with the value.
        flags: u32,
        /// Why decoding failed.
        #[source]
        source: BoxError,
    },
}

/// Keys that one error cost in a multi-key operation.
#[derive(Debug)]
pub struct KeyFailure {
    /// What went wrong (its [`Error::server`] names the server).
    pub error: Error,
    /// The keys affected, as the caller gave them (without a view's prefix).
    pub keys: Vec<Vec<u8>>,
}

impl KeyFailure {
    /// Adds `key` to the failure with the same code and server as `error`, or starts one.
    pub(crate) fn record(failures: &mut Vec<KeyFailure>, error: Error, key: Vec<u8>) {
        let same = |f: &&mut KeyFailure| {
            error.code().is_some()
                && f.error.code() == error.code()
                && f.error.server() == error.server()
        };
        match failures.iter_mut().find(same) {
            Some(failure) => failure.keys.push(key),
            None => failures.push(KeyFailure {
                error,
                keys: vec![key],
            }),
        }
    }
}

fn describe_failures(failures: &[KeyFailure]) -> String {
    let keys: usize = failures.iter().map(|f| f.keys.len()).sum();
    let mut text = match keys {
        0 => format!("{} servers failed", failures.len()),
        1 => "1 key failed".to_owned(),
        n => format!("{n} keys failed"),
    };
    for failure in failures {
        text.push_str(&format!("; {}", failure.error));
        if failure.keys.is_empty() {
            continue;
        }
        let shown: Vec<String> = failure
            .keys
            .iter()
            .take(3)
            .map(|k| crate::key::display(k))
            .collect();
        let more = failure.keys.len() - shown.len();
        text.push_str(&format!(" ({}", shown.join(", ")));
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text.push(')');
    }
    text
}

fn from_endpoint(endpoint: &str) -> String {
    match endpoint {
        "" => String::new(),
        endpoint => format!(" from {endpoint}"),
    }
}

fn on_server_unless_named(message: &str, server: &Option<String>) -> String {
    match server {
        Some(s) if message.contains(s.as_str()) => String::new(),
        _ => on_server(server),
    }
}

fn on_server(server: &Option<String>) -> String {
    server
        .as_deref()
        .map(|s| format!(" (server {s})"))
        .unwrap_or_default()
}

/// Why a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidKeyReason {
    /// The key is empty.
    Empty,
    /// The key (with any prefix or namespace) is longer than memcached's 250 bytes.
    TooLong {
        /// Length including the prefix.
        len: usize,
        /// The most memcached accepts.
        max: usize,
    },
    /// A byte the ASCII protocol cannot carry in a key: a space, a control character or DEL.
    /// The binary protocol accepts any byte.
    ForbiddenByte {
        /// The byte.
        byte: u8,
        /// Its position in the key.
        position: usize,
    },
}

impl fmt::Display for InvalidKeyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Empty => f.write_str("empty key"),
            Self::TooLong { len, max } => write!(f, "{len} bytes long, at most {max} allowed"),
            Self::ForbiddenByte { byte, position } => write!(
                f,
                "byte 0x{byte:02x} at position {position} is not allowed in ASCII protocol keys"
            ),
        }
    }
}

impl Error {
    /// The libmemcached return code behind this error, if it came from libmemcached. For
    /// [`Error::Multi`], the first failure's.
    pub fn code(&self) -> Option<ReturnCode> {
        match self {
            Self::NotFound => Some(ReturnCode::NotFound),
            Self::TooBig { .. } => Some(ReturnCode::E2Big),
            Self::Memcached { code, .. } => Some(*code),
            Self::Multi { failures } => failures.first().and_then(|f| f.error.code()),
            _ => None,
        }
    }

    /// The server involved, when known. For [`Error::Multi`], the first failure's.
    pub fn server(&self) -> Option<&str> {
        match self {
            Self::TooBig { server, .. } | Self::Memcached { server, .. } => server.as_deref(),
            Self::Multi { failures } => failures.first().and_then(|f| f.error.server()),
            _ => None,
        }
    }

    /// The one failure of a single-key operation that went through the multi-key path.
    pub(crate) fn into_single(self) -> Error {
        match self {
            Self::Multi { mut failures } if failures.len() == 1 => failures.remove(0).error,
            other => other,
        }
    }

    /// The failures of a multi-key operation ([`Error::Multi`]); empty for other errors.
    pub fn failures(&self) -> &[KeyFailure] {
        match self {
            Self::Multi { failures } => failures,
            _ => &[],
        }
    }

    /// The key does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ReturnCode::NotFound)
    }

    /// A server could not be reached or dropped the connection, or is disabled after failures.
    /// For [`Error::Multi`]: every failure is one of these.
    pub fn is_connection(&self) -> bool {
        match self {
            Self::Multi { failures } => {
                !failures.is_empty() && failures.iter().all(|f| f.error.is_connection())
            }
            _ => self.code().is_some_and(ReturnCode::is_connection),
        }
    }

    /// An I/O wait ran past the poll timeout, or no pooled client came free in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::PoolTimeout { .. }) || self.code() == Some(ReturnCode::Timeout)
    }

    /// The reply could not be understood, or the server rejected the command. The connections
    /// were reset before the error was returned.
    pub fn is_protocol(&self) -> bool {
        self.code().is_some_and(ReturnCode::needs_reset) && !self.is_connection()
    }

    /// The server reported a failure of its own (out of memory, `SERVER_ERROR`).
    pub fn is_server(&self) -> bool {
        matches!(
            self.code(),
            Some(ReturnCode::ServerError | ReturnCode::ServerMemoryAllocationFailure)
        )
    }

    /// SASL authentication failed.
    pub fn is_auth(&self) -> bool {
        matches!(
            self.code(),
            Some(ReturnCode::AuthProblem | ReturnCode::AuthFailure | ReturnCode::AuthContinue)
        )
    }

    /// The caller passed something unusable: a bad key, spec or configuration, or a value too
    /// big for the server. Nothing was stored.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidKey { .. }
                | Self::InvalidServerSpec { .. }
                | Self::InvalidConfig(_)
                | Self::InvalidArgument(_)
                | Self::TooBig { .. }
                | Self::Encode(_)
        ) || matches!(
            self.code(),
            Some(ReturnCode::BadKeyProvided | ReturnCode::InvalidArguments)
        )
    }
}

macro_rules! return_codes {
    ($($(#[$doc:meta])* $variant:ident = $raw:ident,)*) => {
        /// A libmemcached return code (`memcached_return_t`).
        ///
        /// Every code libmemcached defines has a variant; a code from a newer library that this
        /// crate does not know is [`ReturnCode::Unknown`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ReturnCode {
            $($(#[$doc])* $variant,)*
            /// A code this crate does not know (from a newer libmemcached).
            Unknown(u32),
        }

        impl ReturnCode {
            /// Maps a raw `memcached_return_t`.
            pub fn from_raw(raw: sys::memcached_return_t) -> Self {
                match raw {
                    $(sys::$raw => Self::$variant,)*
                    other => Self::Unknown(other),
                }
            }

            /// The raw `memcached_return_t`.
            pub fn to_raw(self) -> sys::memcached_return_t {
                match self {
                    $(Self::$variant => sys::$raw,)*
                    Self::Unknown(raw) => raw,
                }
            }
        }
    };
}

return_codes! {
    /// Success.
    Success = MEMCACHED_SUCCESS,
    /// A generic failure (e.g. every server of a multi-get failed).
    Failure = MEMCACHED_FAILURE,
    /// The host name did not resolve.
    HostLookupFailure = MEMCACHED_HOST_LOOKUP_FAILURE,
    /// The connection was refused or could not be made.
    ConnectionFailure = MEMCACHED_CONNECTION_FAILURE,
    /// Binding the local socket failed (deprecated).
    ConnectionBindFailure = MEMCACHED_CONNECTION_BIND_FAILURE,
    /// Writing to the server failed.
    WriteFailure = MEMCACHED_WRITE_FAILURE,
    /// Reading from the server failed.
    ReadFailure = MEMCACHED_READ_FAILURE,
    /// The server sent a status libmemcached does not know.
    UnknownReadFailure = MEMCACHED_UNKNOWN_READ_FAILURE,
    /// The reply did not follow the protocol.
    ProtocolError = MEMCACHED_PROTOCOL_ERROR,
    /// The server answered `CLIENT_ERROR`.
    ClientError = MEMCACHED_CLIENT_ERROR,
    /// The server answered `SERVER_ERROR`.
    ServerError = MEMCACHED_SERVER_ERROR,
    /// The server answered `ERROR` (also `CONNECTION_SOCKET_CREATE_FAILURE`, the same value).
    Error = MEMCACHED_ERROR,
    /// The item exists (CAS mismatch; binary `add` of an existing key).
    DataExists = MEMCACHED_DATA_EXISTS,
    /// The item does not exist (unused by libmemcached).
    DataDoesNotExist = MEMCACHED_DATA_DOES_NOT_EXIST,
    /// The item was not stored.
    NotStored = MEMCACHED_NOTSTORED,
    /// The item was stored.
    Stored = MEMCACHED_STORED,
    /// The item was not found.
    NotFound = MEMCACHED_NOTFOUND,
    /// The client could not allocate memory.
    MemoryAllocationFailure = MEMCACHED_MEMORY_ALLOCATION_FAILURE,
    /// A reply was cut short.
    PartialRead = MEMCACHED_PARTIAL_READ,
    /// Some servers of a multi-server operation failed.
    SomeErrors = MEMCACHED_SOME_ERRORS,
    /// No servers are configured.
    NoServers = MEMCACHED_NO_SERVERS,
    /// End of a fetch.
    End = MEMCACHED_END,
    /// The item was deleted.
    Deleted = MEMCACHED_DELETED,
    /// A value (internal).
    Value = MEMCACHED_VALUE,
    /// A stat line (internal).
    Stat = MEMCACHED_STAT,
    /// An item (internal).
    Item = MEMCACHED_ITEM,
    /// A system call failed; the message has `errno`'s text.
    Errno = MEMCACHED_ERRNO,
    /// A unix socket could not be opened (deprecated).
    FailUnixSocket = MEMCACHED_FAIL_UNIX_SOCKET,
    /// The operation is not supported (e.g. reads over UDP).
    NotSupported = MEMCACHED_NOT_SUPPORTED,
    /// A zero-length key (deprecated).
    NoKeyProvided = MEMCACHED_NO_KEY_PROVIDED,
    /// A fetch was not finished.
    FetchNotFinished = MEMCACHED_FETCH_NOTFINISHED,
    /// An I/O wait ran past the poll timeout.
    Timeout = MEMCACHED_TIMEOUT,
    /// The request was buffered.
    Buffered = MEMCACHED_BUFFERED,
    /// libmemcached refused the key.
    BadKeyProvided = MEMCACHED_BAD_KEY_PROVIDED,
    /// The server's transport does not fit the operation.
    InvalidHostProtocol = MEMCACHED_INVALID_HOST_PROTOCOL,
    /// The server was ejected after repeated failures.
    ServerMarkedDead = MEMCACHED_SERVER_MARKED_DEAD,
    /// An unknown stat key.
    UnknownStatKey = MEMCACHED_UNKNOWN_STAT_KEY,
    /// The value is larger than the server's item size limit.
    E2Big = MEMCACHED_E2BIG,
    /// libmemcached refused an argument.
    InvalidArguments = MEMCACHED_INVALID_ARGUMENTS,
    /// A key returned by the server was too long.
    KeyTooBig = MEMCACHED_KEY_TOO_BIG,
    /// SASL authentication could not be sent.
    AuthProblem = MEMCACHED_AUTH_PROBLEM,
    /// SASL authentication failed.
    AuthFailure = MEMCACHED_AUTH_FAILURE,
    /// SASL authentication needs another step.
    AuthContinue = MEMCACHED_AUTH_CONTINUE,
    /// A configuration string did not parse.
    ParseError = MEMCACHED_PARSE_ERROR,
    /// A configuration string asked for an error.
    ParseUserError = MEMCACHED_PARSE_USER_ERROR,
    /// A deprecated feature was used.
    Deprecated = MEMCACHED_DEPRECATED,
    /// An operation is in progress.
    InProgress = MEMCACHED_IN_PROGRESS,
    /// The server failed and is skipped until the retry timeout passes.
    ServerTemporarilyDisabled = MEMCACHED_SERVER_TEMPORARILY_DISABLED,
    /// The server could not allocate memory for the item.
    ServerMemoryAllocationFailure = MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE,
    /// The sentinel after the last code.
    MaximumReturn = MEMCACHED_MAXIMUM_RETURN,
}

impl ReturnCode {
    /// Codes of an unreachable, failed or disabled server.
    pub fn is_connection(self) -> bool {
        matches!(
            self,
            Self::HostLookupFailure
                | Self::ConnectionFailure
                | Self::ConnectionBindFailure
                | Self::WriteFailure
                | Self::ReadFailure
                | Self::Errno
                | Self::FailUnixSocket
                | Self::Timeout
                | Self::ServerMarkedDead
                | Self::ServerTemporarilyDisabled
        )
    }

    /// Codes after which a connection's reply stream may be out of step, so the client resets
    /// its connections before returning the error.
    pub fn needs_reset(self) -> bool {
        matches!(
            self,
            Self::ClientError
                | Self::Error
                | Self::ProtocolError
                | Self::UnknownReadFailure
                | Self::Timeout
                | Self::ReadFailure
                | Self::WriteFailure
                | Self::PartialRead
        )
    }
}

impl fmt::Display for ReturnCode {
    /// libmemcached's text for the code (`memcached_strerror`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: memcached_strerror ignores its handle argument (NULL is allowed) and returns a
        // static NUL-terminated string for every value, known or not.
        let text = unsafe {
            std::ffi::CStr::from_ptr(sys::memcached_strerror(std::ptr::null(), self.to_raw()))
        };
        f.write_str(&text.to_string_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_raw() {
        for raw in 0..=sys::MEMCACHED_MAXIMUM_RETURN {
            let code = ReturnCode::from_raw(raw);
            assert!(
                !matches!(code, ReturnCode::Unknown(_)),
                "code {raw} has no variant"
            );
            assert_eq!(code.to_raw(), raw);
        }
        assert_eq!(ReturnCode::from_raw(9999), ReturnCode::Unknown(9999));
        assert_eq!(ReturnCode::Unknown(9999).to_raw(), 9999);
    }

    #[test]
    fn display_uses_libmemcached_text() {
        assert_eq!(ReturnCode::NotFound.to_string(), "NOT FOUND");
        assert_eq!(ReturnCode::Timeout.to_string(), "A TIMEOUT OCCURRED");
    }

    #[test]
    fn predicates_classify() {
        let conn = Error::Memcached {
            code: ReturnCode::ConnectionFailure,
            message: String::new(),
            server: Some("127.0.0.1:1".into()),
        };
        assert!(conn.is_connection() && !conn.is_protocol() && !conn.is_not_found());
        assert_eq!(conn.server(), Some("127.0.0.1:1"));
        let proto = Error::Memcached {
            code: ReturnCode::ClientError,
            message: String::new(),
            server: None,
        };
        assert!(proto.is_protocol() && !proto.is_connection());
        assert!(Error::NotFound.is_not_found());
        assert!(Error::InvalidConfig("x".into()).is_invalid_input());
    }
}
