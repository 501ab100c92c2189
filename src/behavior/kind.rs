//! The kinds of behavior value. A row of the behavior table names one of the types here; its
//! [`Kind`] impl gives the Rust type of the variant's value, the unit of libmemcached's raw
//! number, how a raw value given by name parses and how one read from libmemcached shows.

use std::time::Duration;

use super::value::BehaviorValue;
use super::{distribution, hash};
use crate::error::{ConfigError, Error, Result};

/// A raw value given by name for the behavior `name`, trimmed: `"4000"`, `"on"`, `"fnv1a_32"`.
pub(super) struct RawText<'a> {
    pub(super) name: &'static str,
    pub(super) raw: &'a str,
}

impl RawText<'_> {
    fn bad(&self, why: &str) -> Error {
        ConfigError::setting(format!("behavior {} = {:?}", self.name, self.raw), why)
    }

    fn number(&self) -> Result<u64> {
        self.raw.parse::<u64>().map_err(|_| {
            self.bad(if self.raw.starts_with('-') {
                "must not be negative (no timeout may be infinite here)"
            } else {
                "not a whole number"
            })
        })
    }

    fn count(&self) -> Result<u32> {
        u32::try_from(self.number()?).map_err(|_| self.bad("too large"))
    }
}

/// A kind of behavior value.
pub(super) trait Kind {
    /// The Rust type of the [`Behavior`](super::Behavior) variant's value.
    type Value;
    /// Its name, for [`BehaviorInfo::value_type`](super::BehaviorInfo::value_type).
    const TYPE: &'static str;
    /// The unit of the raw value, if it has one.
    const UNIT: Option<&'static str> = None;

    /// The value from a raw value given by name (in libmemcached's unit).
    fn parse(text: &RawText<'_>) -> Result<Self::Value>;

    /// A raw value read from libmemcached, in pylibmc's form. Signed C fields (timeouts) come
    /// back sign-extended, so -1 reads as -1; the others are u32.
    fn show(raw: u64) -> BehaviorValue {
        BehaviorValue::Number(raw as i64)
    }
}

/// `true`/`false`, `yes`/`no`, `on`/`off` or a number (non-zero is on); raw 1 or 0.
pub(super) enum Bool {}
/// A [`Duration`] in whole milliseconds.
pub(super) enum Millis {}
/// A [`Duration`] in whole seconds.
pub(super) enum Secs {}
/// A [`Duration`] in whole microseconds.
pub(super) enum Micros {}
/// A `u32` count.
pub(super) enum Count {}
/// A `u32` number of bytes.
pub(super) enum Bytes {}
/// A [`hash::Hash`], by pylibmc name or libmemcached number; read back by name.
pub(super) enum Hash {}
/// A [`distribution::Distribution`], by pylibmc name or libmemcached number; read back by name.
pub(super) enum Distribution {}

impl Kind for Bool {
    type Value = bool;
    const TYPE: &'static str = "bool";

    fn parse(text: &RawText<'_>) -> Result<bool> {
        Ok(match text.raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => true,
            "false" | "no" | "off" => false,
            _ => text.number()? != 0,
        })
    }
}

impl Kind for Millis {
    type Value = Duration;
    const TYPE: &'static str = "Duration";
    const UNIT: Option<&'static str> = Some("ms");

    fn parse(text: &RawText<'_>) -> Result<Duration> {
        Ok(Duration::from_millis(text.number()?))
    }
}

impl Kind for Secs {
    type Value = Duration;
    const TYPE: &'static str = "Duration";
    const UNIT: Option<&'static str> = Some("s");

    fn parse(text: &RawText<'_>) -> Result<Duration> {
        Ok(Duration::from_secs(text.number()?))
    }
}

impl Kind for Micros {
    type Value = Duration;
    const TYPE: &'static str = "Duration";
    const UNIT: Option<&'static str> = Some("µs");

    fn parse(text: &RawText<'_>) -> Result<Duration> {
        Ok(Duration::from_micros(text.number()?))
    }
}

impl Kind for Count {
    type Value = u32;
    const TYPE: &'static str = "u32";

    fn parse(text: &RawText<'_>) -> Result<u32> {
        text.count()
    }
}

impl Kind for Bytes {
    type Value = u32;
    const TYPE: &'static str = "u32";
    const UNIT: Option<&'static str> = Some("bytes");

    fn parse(text: &RawText<'_>) -> Result<u32> {
        text.count()
    }
}

impl Kind for Hash {
    type Value = hash::Hash;
    const TYPE: &'static str = "Hash";

    fn parse(text: &RawText<'_>) -> Result<hash::Hash> {
        text.raw.parse()
    }

    fn show(raw: u64) -> BehaviorValue {
        hash::Hash::from_raw(raw).map_or(BehaviorValue::Number(raw as i64), |h| {
            BehaviorValue::Name(h.name())
        })
    }
}

impl Kind for Distribution {
    type Value = distribution::Distribution;
    const TYPE: &'static str = "Distribution";

    fn parse(text: &RawText<'_>) -> Result<distribution::Distribution> {
        text.raw.parse()
    }

    fn show(raw: u64) -> BehaviorValue {
        distribution::Distribution::from_raw(raw).map_or(BehaviorValue::Number(raw as i64), |d| {
            BehaviorValue::Name(d.name())
        })
    }
}
