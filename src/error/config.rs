//! What the caller passed that cannot be used: a configuration ([`ConfigError`]) or a key
//! ([`InvalidKeyReason`]).

use std::fmt;

use super::Error;

/// What is wrong with a configuration ([`Error::InvalidConfig`]). Nothing was connected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No servers were given.
    #[error("no servers given")]
    NoServers,
    /// A name that is none of the known ones (a behavior, hash or distribution).
    #[error("unknown {what}: {name} ({known})")]
    Unknown {
        /// What was named: `behavior`, `hash`, `distribution`...
        what: &'static str,
        /// The name (or names) given.
        name: String,
        /// The names known, or where to find them.
        known: String,
    },
    /// A setting whose value cannot be used.
    #[error("{setting}: {reason}")]
    Setting {
        /// The setting: `namespace`, `SASL`, `behavior tcp_nodelay = "x"`, `workers`...
        setting: String,
        /// Why.
        reason: String,
    },
    /// Settings that cannot be used together (such as more replicas than servers, or the
    /// binary protocol through a proxy).
    #[error("{0}")]
    Conflict(String),
    /// A libmemcached configuration string (`--SERVER=...`) that does not parse.
    #[error("{reason} in {config:?}")]
    ConfigString {
        /// The string as given.
        config: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    /// A [`ConfigError::Setting`].
    pub(crate) fn setting(setting: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidConfig(ConfigError::Setting {
            setting: setting.into(),
            reason: reason.into(),
        })
    }
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
