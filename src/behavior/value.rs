//! [`BehaviorValue`]: a behavior's value in pylibmc's raw form.

use std::fmt;

/// A behavior's value in pylibmc's raw form: a number in libmemcached's unit (`4000` for a
/// 4 s connect timeout, `1`/`0` for booleans), or a hash or distribution name.
///
/// Its [`Display`](fmt::Display) form is what
/// [`Client::set_behavior_by_name`](crate::Client::set_behavior_by_name) accepts, so values read
/// with [`Client::behaviors`](crate::Client::behaviors) can be set again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BehaviorValue {
    /// A number (booleans are 1 and 0). Negative only for timeouts a libmemcached
    /// configuration string set to "forever" (-1).
    Number(i64),
    /// A hash or distribution name.
    Name(&'static str),
}

impl BehaviorValue {
    /// The number, if this is one.
    pub fn as_number(&self) -> Option<i64> {
        match *self {
            Self::Number(n) => Some(n),
            Self::Name(_) => None,
        }
    }

    /// The name, if this is one.
    pub fn as_name(&self) -> Option<&'static str> {
        match *self {
            Self::Name(name) => Some(name),
            Self::Number(_) => None,
        }
    }
}

impl fmt::Display for BehaviorValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

impl From<bool> for BehaviorValue {
    fn from(on: bool) -> Self {
        Self::Number(on.into())
    }
}

impl From<i64> for BehaviorValue {
    fn from(n: i64) -> Self {
        Self::Number(n)
    }
}

impl From<i32> for BehaviorValue {
    fn from(n: i32) -> Self {
        Self::Number(n.into())
    }
}

impl From<u32> for BehaviorValue {
    fn from(n: u32) -> Self {
        Self::Number(n.into())
    }
}

impl From<&'static str> for BehaviorValue {
    fn from(name: &'static str) -> Self {
        Self::Name(name)
    }
}
