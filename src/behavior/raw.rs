//! A behavior's raw value: libmemcached's units and the checks of a value on its own.

use std::time::Duration;

use libmemcached_sys as sys;

use super::table::Behavior;
use super::value::BehaviorValue;
use crate::error::{ConfigError, Error, Result};

impl Behavior {
    /// The raw value in pylibmc's form (libmemcached's unit, rounded up), or an error if the
    /// value is refused.
    pub fn raw_value(&self) -> Result<BehaviorValue> {
        let (_, raw) = self.to_raw()?;
        Ok(self.id().show(raw))
    }

    /// The libmemcached flag and raw value, after checking the value on its own.
    pub(crate) fn to_raw(self) -> Result<(sys::memcached_behavior_t, u64)> {
        use Behavior::*;
        let value = match self {
            NoBlock(on)
            | TcpNoDelay(on)
            | TcpKeepalive(on)
            | Ketama(on)
            | KetamaWeighted(on)
            | SupportCas(on)
            | VerifyKey(on)
            | RandomizeReplicaRead(on)
            | RemoveFailedServers(on)
            | HashWithPrefixKey(on)
            | NoReply(on)
            | SortHosts(on) => on.into(),
            ConnectTimeout(d) | PollTimeout(d) => millis(self, d)?,
            SendTimeout(d) | ReceiveTimeout(d) => micros(self, d)?,
            RetryTimeout(d) | DeadTimeout(d) => secs(self, d, i32::MAX as u64)?,
            // Linux refuses more (MAX_TCP_KEEPIDLE), and libmemcached asserts on the refusal.
            TcpKeepIdle(d) => secs(self, d, 32_767)?,
            Hash(h) | KetamaHash(h) if !h.is_available() => {
                return Err(refused(self, "this libmemcached was built without it"));
            }
            Hash(h) | KetamaHash(h) => h.to_raw().into(),
            Distribution(d) => d.to_raw().into(),
            ServerFailureLimit(0) => return Err(refused(self, "the limit must be at least 1")),
            IoMsgWatermark(0) | IoBytesWatermark(0) => {
                return Err(refused(self, "a watermark must be at least 1"));
            }
            SocketSendSize(n) | SocketRecvSize(n) if n > i32::MAX as u32 => {
                return Err(refused(self, "too large"));
            }
            ServerFailureLimit(n)
            | ServerTimeoutLimit(n)
            | NumberOfReplicas(n)
            | IoMsgWatermark(n)
            | IoBytesWatermark(n)
            | IoKeyPrefetch(n)
            | SocketSendSize(n)
            | SocketRecvSize(n) => n.into(),
        };
        Ok((self.flag(), value))
    }
}

/// The error for a behavior whose value is refused, saying why.
pub(super) fn refused(behavior: Behavior, why: &str) -> Error {
    ConfigError::setting(
        format!("behavior {} ({behavior:?})", behavior.name()),
        format!("refused: {why}"),
    )
}

/// Whole milliseconds, rounded up, at least 1, within libmemcached's `int32` field.
fn millis(behavior: Behavior, d: Duration) -> Result<u64> {
    let ms = d.as_nanos().div_ceil(1_000_000);
    match ms {
        0 => Err(refused(behavior, "the timeout must be above zero")),
        ms if ms > i32::MAX as u128 => Err(refused(behavior, "the timeout is too long")),
        ms => Ok(ms as u64),
    }
}

/// Whole microseconds, rounded up, within libmemcached's `int32` field (0 = unset).
fn micros(behavior: Behavior, d: Duration) -> Result<u64> {
    let us = d.as_nanos().div_ceil(1_000);
    if us > i32::MAX as u128 {
        return Err(refused(behavior, "the timeout is too long"));
    }
    Ok(us as u64)
}

/// Whole seconds, rounded up, at most `max`.
fn secs(behavior: Behavior, d: Duration, max: u64) -> Result<u64> {
    let s = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    if s > max {
        return Err(refused(
            behavior,
            &format!("the timeout is too long (at most {max} s)"),
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::super::Hash;
    use super::*;

    #[test]
    fn units_are_converted_and_rounded_up() {
        let raw = |b: Behavior| b.to_raw().unwrap().1;
        assert_eq!(
            raw(Behavior::ConnectTimeout(Duration::from_millis(500))),
            500
        );
        assert_eq!(raw(Behavior::PollTimeout(Duration::from_micros(1))), 1);
        assert_eq!(raw(Behavior::RetryTimeout(Duration::from_millis(1500))), 2);
        assert_eq!(raw(Behavior::DeadTimeout(Duration::from_secs(60))), 60);
        assert_eq!(raw(Behavior::SendTimeout(Duration::from_millis(3))), 3000);
        assert_eq!(raw(Behavior::ReceiveTimeout(Duration::from_nanos(1))), 1);
        assert_eq!(
            raw(Behavior::TcpKeepIdle(Duration::from_secs(32_767))),
            32_767
        );
    }

    #[test]
    fn dangerous_values_are_refused() {
        let refused = |b: Behavior| assert!(b.to_raw().is_err(), "{b:?} was accepted");
        refused(Behavior::PollTimeout(Duration::ZERO));
        refused(Behavior::ConnectTimeout(Duration::ZERO));
        refused(Behavior::ConnectTimeout(Duration::from_secs(u64::MAX)));
        refused(Behavior::SendTimeout(Duration::from_secs(3600)));
        refused(Behavior::ServerFailureLimit(0));
        refused(Behavior::TcpKeepIdle(Duration::from_secs(32_768)));
        refused(Behavior::TcpKeepIdle(Duration::from_millis(32_767_001)));
        refused(Behavior::IoMsgWatermark(0));
        refused(Behavior::IoBytesWatermark(0));
        refused(Behavior::SocketSendSize(u32::MAX));
        if !Hash::Hsieh.is_available() {
            refused(Behavior::Hash(Hash::Hsieh));
            refused(Behavior::KetamaHash(Hash::Hsieh));
        }
    }
}
