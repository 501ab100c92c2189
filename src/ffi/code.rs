//! Return codes: every public `memcached_return_t` as a [`ReturnCode`], and [`Rc`], a code
//! fresh from a call that only [`Handle::check`](super::Handle::check) turns into a `Result`.

use std::fmt;

use libmemcached_sys as sys;

/// A return code straight from libmemcached, to be checked with
/// [`Handle::check`](super::Handle::check).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rc(pub(super) sys::memcached_return_t);

impl Rc {
    pub(crate) const SUCCESS: Rc = Rc(sys::MEMCACHED_SUCCESS);
    /// A call not made because its connections could not go through the relay.
    pub(crate) const UNROUTED: Rc = Rc(sys::MEMCACHED_CONNECTION_FAILURE);

    pub(crate) fn code(self) -> ReturnCode {
        ReturnCode::from_raw(self.0)
    }

    /// Whether the code says the call succeeded (what [`Handle::check`](super::Handle::check)
    /// takes for success).
    #[inline]
    pub(crate) fn is_success(self) -> bool {
        matches!(
            self.0,
            sys::MEMCACHED_SUCCESS
                | sys::MEMCACHED_END
                | sys::MEMCACHED_DELETED
                | sys::MEMCACHED_STORED
                | sys::MEMCACHED_BUFFERED
        )
    }

    /// Whether a fetch ended cleanly: END, or NOTFOUND (END before any item).
    #[inline]
    pub(crate) fn is_end(self) -> bool {
        matches!(self.0, sys::MEMCACHED_END | sys::MEMCACHED_NOTFOUND)
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
            /// Maps a raw `memcached_return_t`; libmemcached's internal values (`VALUE`, `STAT`,
            /// `ITEM`, `MAXIMUM_RETURN`) are [`ReturnCode::Unknown`].
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
        f.write_str(super::strerror(self.to_raw()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_code_round_trips_through_raw() {
        let internal = [
            sys::MEMCACHED_VALUE,
            sys::MEMCACHED_STAT,
            sys::MEMCACHED_ITEM,
            sys::MEMCACHED_MAXIMUM_RETURN,
        ];
        for raw in 0..=sys::MEMCACHED_MAXIMUM_RETURN {
            let code = ReturnCode::from_raw(raw);
            assert_eq!(
                matches!(code, ReturnCode::Unknown(_)),
                internal.contains(&raw),
                "code {raw}: {code:?}"
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
}
