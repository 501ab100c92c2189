//! Errors: every libmemcached return code as a [`ReturnCode`], and the crate's [`Error`].
//!
//! [`Error`]'s documentation has pylibmc's exceptions and where each went. Beside it: what is
//! wrong with a configuration or a key (`config`), the failures of a multi-key call
//! (`failure`), and the kinds errors are counted by (`kind`).

mod config;
mod failure;
mod kind;

pub use crate::ffi::ReturnCode;
use crate::server::Address;
pub use config::{ConfigError, InvalidKeyReason};
pub use failure::KeyFailure;
use failure::{agreed, describe_failures};
pub use kind::ErrorKind;

/// A boxed error from an encoder or decoder.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error shared by the copies of an [`Error`] (which is `Clone`): the cause of an
/// [`Error::Encode`] or [`Error::Decode`].
pub type SharedError = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to memcached.
///
/// # From pylibmc's exceptions
///
/// pylibmc raises one exception class per return code. Here a return code is a [`ReturnCode`]
/// inside [`Error::Memcached`], except for the two that callers handle most often, which have
/// variants of their own. The predicates ([`Error::is_connection`], [`Error::is_timeout`], ...)
/// group them the way callers usually branch.
///
/// | pylibmc exception | this crate |
/// |---|---|
/// | `Error` / `MemcachedError` | [`Error`] (any variant) |
/// | `CacheMiss` | `Ok(None)` from `get`/`gets`; no error |
/// | `NotFound` | [`Error::NotFound`] |
/// | `TooBig` | [`Error::TooBig`] |
/// | `Failure` | `Memcached { code: ReturnCode::Failure, .. }` |
/// | `HostLookupError` | `Memcached { code: ReturnCode::HostLookupFailure, .. }` |
/// | `ConnectionError` | `Memcached { code: ReturnCode::ConnectionFailure, .. }` |
/// | `ConnectionBindError` | `Memcached { code: ReturnCode::ConnectionBindFailure, .. }` |
/// | `WriteError` | `Memcached { code: ReturnCode::WriteFailure, .. }` |
/// | `ReadError` | `Memcached { code: ReturnCode::ReadFailure, .. }` |
/// | `UnknownReadFailure` | `Memcached { code: ReturnCode::UnknownReadFailure, .. }` |
/// | `ProtocolError` | `Memcached { code: ReturnCode::ProtocolError, .. }` |
/// | `ClientError` | `Memcached { code: ReturnCode::ClientError, .. }` |
/// | `ServerError` | `Memcached { code: ReturnCode::ServerError, .. }` |
/// | `SocketCreateError` | `Memcached { code: ReturnCode::Error, .. }` (the same C value) |
/// | `DataExists` | `Ok(false)` from `add`/`cas`; otherwise `Memcached { code: ReturnCode::DataExists, .. }` |
/// | `DataDoesNotExist` | `Memcached { code: ReturnCode::DataDoesNotExist, .. }` |
/// | `AllocationError` | `Memcached { code: ReturnCode::MemoryAllocationFailure, .. }` |
/// | `SomeErrors` | `Memcached { code: ReturnCode::SomeErrors, .. }` |
/// | `NoServers` | `Memcached { code: ReturnCode::NoServers, .. }` |
/// | `UnixSocketError` | `Memcached { code: ReturnCode::FailUnixSocket, .. }` |
/// | `NotSupportedError` | `Memcached { code: ReturnCode::NotSupported, .. }` |
/// | `FetchNotFinished` | `Memcached { code: ReturnCode::FetchNotFinished, .. }` |
/// | `BadKeyProvided` | [`Error::InvalidKey`], checked before libmemcached sees the key |
/// | `InvalidHostProtocolError` | `Memcached { code: ReturnCode::InvalidHostProtocol, .. }` |
/// | `ServerDead` | `Memcached { code: ReturnCode::ServerMarkedDead, .. }` |
/// | `UnknownStatKey` | `Memcached { code: ReturnCode::UnknownStatKey, .. }` |
/// | `ServerDown` | `Memcached { code: ReturnCode::ServerTemporarilyDisabled, .. }` |
/// | `autoconf.NoAutoconfFound` | [`Error::AutoDiscovery`] with `missing: true` |
/// | `autoconf.UnsupportedAutoconfMethod` | none: the key fallback follows, as in pylibmc |
/// | `test.NotAliveError` | `testing::TestClientError::NotAlive`, with the `testing` feature |
///
/// pylibmc reports codes it has no class for (a timeout, the SASL codes, ...) as the base `Error`;
/// here each keeps its own [`ReturnCode`] (`Timeout`, `AuthFailure`, ...).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key does not exist (`incr`/`decr` of a missing key). Misses of `get` are `Ok(None)`.
    #[error("{} not found", crate::key::display(key))]
    NotFound {
        /// The key, as the caller gave it (without a view's prefix or the client's namespace).
        key: Vec<u8>,
    },

    /// The server refused a value larger than its item size limit (`memcached -I`, 1 MiB by
    /// default).
    #[error(
        "value of {len} bytes for {} is too big for the server{}",
        crate::key::display(key),
        on_server(server)
    )]
    TooBig {
        /// The key, as the caller gave it (without a view's prefix or the client's namespace).
        key: Vec<u8>,
        /// Size of the value that was sent, in bytes.
        len: usize,
        /// The server that refused it, when known.
        server: Option<Address>,
    },

    /// libmemcached reported an error.
    #[error(
        "{message}{}{}",
        on_server_unless_named(message, server),
        for_key(key.as_deref())
    )]
    Memcached {
        /// The return code.
        code: ReturnCode,
        /// libmemcached's detailed message.
        message: String,
        /// The server involved, when known.
        server: Option<Address>,
        /// The key of a call on one key, as the caller gave it (without a view's prefix or the
        /// client's namespace). `None` for calls on many keys or none (a [`KeyFailure`] lists
        /// the keys of a multi-key call).
        key: Option<Vec<u8>>,
    },

    /// The command was sent, but the client takes no replies (UDP servers, or
    /// [`Behavior::NoReply`](crate::Behavior::NoReply)), so what it did is not known: whether
    /// `add`, `replace`, `cas`, `append` or `prepend` stored, whether `delete` found the key.
    /// (`set` is `Ok` once sent: it has no answer but an error.)
    #[error(
        "{operation}{} was sent without a reply (UDP or noreply): whether it took effect is \
         not known",
        of_key(key.as_deref())
    )]
    Unanswered {
        /// The operation: `add`, `delete`...
        operation: &'static str,
        /// The key of a call on one key, as the caller gave it (without a view's prefix or the
        /// client's namespace; `None` in a [`KeyFailure`], which lists the keys).
        key: Option<Vec<u8>>,
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

    /// A configuration that cannot be used: no servers, an unknown behavior, a value out of
    /// range, settings that conflict, a libmemcached config string that does not parse.
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[source] ConfigError),

    /// An argument outside what the operation accepts (such as a CAS token of 0).
    #[error("invalid argument {argument}: {reason}")]
    InvalidArgument {
        /// The argument (or option) refused.
        argument: &'static str,
        /// Why.
        reason: String,
    },

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

    /// An `AsyncClient` (feature `async`) could not answer: its worker threads had stopped.
    #[error("the async client's workers have stopped")]
    Shutdown,

    /// An `AsyncClient` (feature `async`) worker panicked while it served a batch this call
    /// was in (a value's `Drop` run on the worker, or the engine's own code). The worker was
    /// restarted with fresh connections; the call may or may not have reached the server.
    #[error("the async client's worker panicked while serving this call (it was restarted)")]
    WorkerPanicked,

    /// A value could not be encoded.
    #[error("cannot encode value: {0}")]
    Encode(#[source] SharedError),

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
    ///
    /// What it says of itself is what all its failures say: [`Error::code`],
    /// [`Error::server`] and [`Error::kind`] give the value every failure agrees on (else
    /// `None`, `None`, [`ErrorKind::Other`]), and each predicate (`is_timeout`,
    /// `is_retryable`...) holds only if it holds for every failure. To act on any one
    /// failure, look through [`Error::failures`].
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
        source: SharedError,
    },
}

impl Error {
    /// An [`Error::Encode`] for an encoder's error.
    pub(crate) fn encode(error: impl Into<BoxError>) -> Error {
        Error::Encode(error.into().into())
    }

    /// An [`Error::InvalidArgument`].
    pub(crate) fn argument(argument: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            argument,
            reason: reason.into(),
        }
    }

    /// The error with its key as a view's caller gave it: without `prefix` in front of the
    /// key that was sent. `decoded`: a decode error also names the key sent (it names the
    /// caller's key where the view decodes).
    pub(crate) fn without_prefix(mut self, prefix: &[u8], decoded: bool) -> Error {
        if prefix.is_empty() {
            return self;
        }
        let key = match &mut self {
            Error::NotFound { key } | Error::TooBig { key, .. } => Some(key),
            Error::Decode { key, .. } | Error::Decompress { key, .. } if decoded => Some(key),
            Error::Memcached { key, .. } | Error::Unanswered { key, .. } => key.as_mut(),
            _ => None,
        };
        if let Some(key) = key {
            if key.starts_with(prefix) {
                key.drain(..prefix.len());
            }
        }
        self
    }

    /// The error without the key of a one-key call, to stand for a multi-key call's keys.
    fn without_key(mut self) -> Error {
        if let Error::Memcached { key, .. } | Error::Unanswered { key, .. } = &mut self {
            *key = None;
        }
        self
    }
}

fn from_endpoint(endpoint: &str) -> String {
    match endpoint {
        "" => String::new(),
        endpoint => format!(" from {endpoint}"),
    }
}

fn on_server_unless_named(message: &str, server: &Option<Address>) -> String {
    match server {
        Some(s) if message.contains(s.host()) => String::new(),
        _ => on_server(server),
    }
}

fn of_key(key: Option<&[u8]>) -> String {
    key.map(|k| format!(" of {}", crate::key::display(k)))
        .unwrap_or_default()
}

fn for_key(key: Option<&[u8]>) -> String {
    key.map(|k| format!(" for {}", crate::key::display(k)))
        .unwrap_or_default()
}

fn on_server(server: &Option<Address>) -> String {
    server
        .as_ref()
        .map(|s| format!(" (server {s})"))
        .unwrap_or_default()
}

impl Error {
    /// The libmemcached return code behind this error, if it came from libmemcached. For
    /// [`Error::Multi`], the code every failure has, or `None` if they differ (so that the
    /// predicates below never depend on the order of the failures).
    pub fn code(&self) -> Option<ReturnCode> {
        match self {
            Self::NotFound { .. } => Some(ReturnCode::NotFound),
            Self::TooBig { .. } => Some(ReturnCode::E2Big),
            Self::Memcached { code, .. } => Some(*code),
            Self::Multi { failures } => agreed(failures, |e| e.code()).flatten(),
            _ => None,
        }
    }

    /// The server involved, when known. For [`Error::Multi`], the server every failure names,
    /// or `None` if they differ ([`Error::failures`] has each).
    pub fn server(&self) -> Option<&Address> {
        match self {
            Self::TooBig { server, .. } | Self::Memcached { server, .. } => server.as_ref(),
            Self::Multi { failures } => agreed(failures, |e| e.server()).flatten(),
            _ => None,
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

    /// The same call, made again unchanged, may succeed: a server could not be reached, broke
    /// off, timed out or is marked down (until its retry timeout), ran out of memory, or no
    /// pooled client or worker was free. For [`Error::Multi`]: every failure is retryable.
    ///
    /// A write that failed this way may or may not have reached the server: retry writes that
    /// are safe to repeat (`set`, `delete`, `touch`), not `incr` or `append`, unless a second
    /// application is harmless.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Multi { failures } => {
                !failures.is_empty() && failures.iter().all(|f| f.error.is_retryable())
            }
            Self::WorkerPanicked => true,
            _ => {
                matches!(
                    self.kind(),
                    ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::ServerDown
                ) || self.code() == Some(ReturnCode::ServerMemoryAllocationFailure)
            }
        }
    }

    /// The caller passed something unusable: a bad key, spec or configuration, or a value too
    /// big for the server. Nothing was stored.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidKey { .. }
                | Self::InvalidServerSpec { .. }
                | Self::InvalidConfig(_)
                | Self::InvalidArgument { .. }
                | Self::TooBig { .. }
                | Self::Encode(_)
        ) || matches!(
            self.code(),
            Some(ReturnCode::BadKeyProvided | ReturnCode::InvalidArguments)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_error_says_what_every_failure_says_in_any_order() {
        let failure = |code, port: u16| KeyFailure {
            error: Error::Memcached {
                code,
                message: String::new(),
                server: Some(format!("127.0.0.1:{port}").parse().unwrap()),
                key: None,
            },
            keys: vec![b"k".to_vec()],
        };
        let timeout = failure(ReturnCode::Timeout, 1);
        let refused = failure(ReturnCode::ConnectionFailure, 2);
        for failures in [
            vec![timeout.clone(), refused.clone()],
            vec![refused.clone(), timeout.clone()],
        ] {
            let error = Error::Multi { failures };
            assert_eq!((error.code(), error.server()), (None, None));
            assert!(!error.is_timeout(), "one failure only is a timeout");
            assert!(error.is_connection(), "both are connection failures");
            assert_eq!(error.kind(), ErrorKind::Other);
        }
        let both = Error::Multi {
            failures: vec![timeout.clone(), failure(ReturnCode::Timeout, 2)],
        };
        assert_eq!(both.code(), Some(ReturnCode::Timeout));
        assert!(both.is_timeout());
        assert_eq!(both.kind(), ErrorKind::Timeout);
        assert_eq!(both.server(), None, "two servers");
        let one = Error::Multi {
            failures: vec![timeout],
        };
        assert_eq!(one.server().map(|s| s.port()), Some(1));
    }

    #[test]
    fn errors_clone_whole_causes_included() {
        let decode = Error::Decode {
            key: b"k".to_vec(),
            flags: 2,
            source: BoxError::from("not a number").into(),
        };
        let copy = decode.clone();
        assert!(matches!(&copy, Error::Decode { key, flags: 2, .. } if key == b"k"));
        assert_eq!(copy.to_string(), decode.to_string());
        let cause = std::error::Error::source(&copy).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("not a number"));
        let multi = Error::Multi {
            failures: vec![KeyFailure {
                error: Error::encode("no"),
                keys: vec![b"a".to_vec()],
            }],
        };
        assert_eq!(multi.clone().to_string(), multi.to_string());
    }

    #[test]
    fn predicates_classify() {
        let conn = Error::Memcached {
            code: ReturnCode::ConnectionFailure,
            message: String::new(),
            server: Some("127.0.0.1:1".parse().unwrap()),
            key: None,
        };
        assert!(conn.is_connection() && !conn.is_protocol() && !conn.is_not_found());
        assert_eq!(conn.server().unwrap().to_string(), "127.0.0.1:1");
        let proto = Error::Memcached {
            code: ReturnCode::ClientError,
            message: String::new(),
            server: None,
            key: None,
        };
        assert!(proto.is_protocol() && !proto.is_connection());
        assert!(Error::NotFound { key: b"k".to_vec() }.is_not_found());
        assert!(Error::InvalidConfig(ConfigError::NoServers).is_invalid_input());
        assert_eq!(conn.kind(), ErrorKind::Connection);
        assert_eq!(proto.kind(), ErrorKind::Protocol);
        assert_eq!(
            Error::InvalidConfig(ConfigError::NoServers).kind(),
            ErrorKind::Input
        );
        let timeout = Error::PoolTimeout {
            waited: std::time::Duration::ZERO,
            size: 1,
        };
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        // Metrics index their counts by a kind's position in ALL.
        assert!(
            ErrorKind::ALL
                .iter()
                .enumerate()
                .all(|(i, &k)| k as usize == i)
        );
        let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 9);
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
