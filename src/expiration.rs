//! When an item expires.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// memcached reads an expiration above 30 days as an absolute unix time.
const RELATIVE_LIMIT: u64 = 30 * 24 * 60 * 60;
/// The latest absolute time memcached accepts (it parses expirations as 32-bit signed).
const LATEST: u64 = i32::MAX as u64;
/// An absolute time in the past: expired at once in both protocols. (A negative number would
/// do in ASCII, but the binary protocol reads -1 as the year 2106.)
const PAST: u64 = RELATIVE_LIMIT + 1;

/// When an item expires: never, after a time, or at a point in time.
///
/// Every form means what it says. memcached itself reads a number of seconds above 30 days as
/// an absolute unix time (so `set(k, v, 31 days)` through pylibmc expires at once); this type
/// sends such spans as the absolute time they end at. Times are rounded up to whole seconds and
/// capped at 2038-01-19, the latest time memcached accepts.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use libmemcached::Expiration;
///
/// let _: Expiration = 3600.into();                                // one hour
/// let _: Expiration = Duration::from_secs(90 * 24 * 3600).into(); // 90 days, not 1970
/// let _: Expiration = (SystemTime::now() + Duration::from_secs(60)).into();
/// let _ = Expiration::Never;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiration {
    /// The item never expires (it may still be evicted).
    #[default]
    Never,
    /// The item expires after this long.
    After(Duration),
    /// The item expires at this time. A time in the past expires the item at once.
    At(SystemTime),
}

impl Expiration {
    /// The value memcached expects, computed against `now`.
    #[cfg(test)]
    pub(crate) fn to_wire_at(self, now: SystemTime) -> libc::time_t {
        self.to_wire_with(|| now)
    }

    /// The value memcached expects; the clock is read only for spans past 30 days.
    #[inline]
    pub(crate) fn to_wire(self) -> libc::time_t {
        match self {
            Self::Never => 0,
            _ => self.to_wire_with(SystemTime::now),
        }
    }

    fn to_wire_with(self, now: impl FnOnce() -> SystemTime) -> libc::time_t {
        let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(ceil_secs);
        let secs = match self {
            Self::Never => 0,
            Self::After(d) if d.is_zero() => PAST,
            Self::After(d) => match ceil_secs(d) {
                s if s <= RELATIVE_LIMIT => s,
                s => unix(now()).unwrap_or(0).saturating_add(s),
            },
            Self::At(t) => match unix(t) {
                // Absolute times at or before the 30-day mark would read as relative spans.
                Ok(s) if s > RELATIVE_LIMIT => s,
                _ => PAST,
            },
        };
        secs.min(LATEST) as libc::time_t
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// Seconds from now; `0` means never, as in memcached.
impl From<u32> for Expiration {
    fn from(secs: u32) -> Self {
        match secs {
            0 => Self::Never,
            s => Self::After(Duration::from_secs(s.into())),
        }
    }
}

impl From<u64> for Expiration {
    fn from(secs: u64) -> Self {
        match secs {
            0 => Self::Never,
            s => Self::After(Duration::from_secs(s)),
        }
    }
}

/// An integer literal (`300`) is an `i32` unless told otherwise. A negative number of seconds
/// expires the item at once, as memcached reads it.
impl From<i32> for Expiration {
    fn from(secs: i32) -> Self {
        match u64::try_from(secs) {
            Ok(secs) => secs.into(),
            Err(_) => Self::After(Duration::ZERO),
        }
    }
}

impl From<Duration> for Expiration {
    fn from(d: Duration) -> Self {
        Self::After(d)
    }
}

impl From<SystemTime> for Expiration {
    fn from(t: SystemTime) -> Self {
        Self::At(t)
    }
}

impl From<Option<Duration>> for Expiration {
    /// `None` never expires.
    fn from(d: Option<Duration>) -> Self {
        d.map_or(Self::Never, Self::After)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let wire = |e: Expiration| e.to_wire_at(now);
        assert_eq!(wire(Expiration::Never), 0);
        assert_eq!(wire(0.into()), 0);
        assert_eq!(wire(300.into()), 300, "an integer literal");
        assert_eq!(wire(300u64.into()), 300);
        assert_eq!(wire(0u64.into()), 0);
        assert_eq!(
            wire((-5).into()),
            PAST as libc::time_t,
            "negative: expired at once"
        );
        assert_eq!(wire(60.into()), 60);
        assert_eq!(wire(Duration::from_millis(1).into()), 1);
        assert_eq!(wire(Duration::from_millis(1500).into()), 2);
        assert_eq!(
            wire(Expiration::After(Duration::ZERO)),
            PAST as libc::time_t
        );
        assert_eq!(wire(Duration::from_secs(RELATIVE_LIMIT).into()), 2_592_000);
        assert_eq!(
            wire(Duration::from_secs(RELATIVE_LIMIT + 1).into()),
            1_700_000_000 + 2_592_001
        );
        assert_eq!(wire(Duration::MAX.into()), i32::MAX as libc::time_t);
        assert_eq!(wire((now + Duration::from_secs(10)).into()), 1_700_000_010);
        assert_eq!(wire(UNIX_EPOCH.into()), PAST as libc::time_t);
    }
}
