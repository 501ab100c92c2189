//! [`ValueFormat`]: whose flags and encodings a client stores values in.

/// Whose format a client stores values in, so that it shares a cache with Python or with PHP.
/// Chosen per client with [`ClientBuilder::value_format`](crate::ClientBuilder::value_format).
///
/// The same Rust types work in both: [`ToValue`](crate::ToValue) and
/// [`FromValue`](crate::FromValue) speak pylibmc's flags, which the PHP format translates on the
/// way out and back on the way in (see [`crate::php`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ValueFormat {
    /// pylibmc's flags and encodings (the default): see [`crate::value`].
    #[default]
    Pylibmc,
    /// PHP's `memcached` extension's (php-memcached 3.x): see [`crate::php`].
    Php,
}
