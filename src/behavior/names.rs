//! Behaviors by pylibmc name: parsing, refused names, the order named behaviors are applied
//! in, and the client's by-name methods.

use std::fmt;

use super::kind::RawText;
use super::table::{Behavior, BehaviorInfo, Id, Stage, all_behaviors};
use super::value::BehaviorValue;
use crate::client::Client;
use crate::error::{ConfigError, Error, Result};

/// Names that are recognised but refused, with the reason.
const REFUSED: &[(&str, &str)] = &[
    (
        "buffer_requests",
        "libmemcached aborts the process when buffered requests pile up (use bulk_set for bulk loads)",
    ),
    (
        "auto_eject",
        "deprecated; it is the same switch as remove_failed, so use that name",
    ),
    (
        "pickle_protocol",
        "a pylibmc setting for Python's pickle; Rust values are never pickled",
    ),
    (
        "namespace",
        "a callback, not a behavior; use ClientBuilder::namespace",
    ),
    ("use_udp", "set by giving udp:host:port servers"),
    (
        "binary",
        "the protocol is chosen when the client is built (ClientBuilder::binary)",
    ),
    ("cache_lookups", "deprecated; libmemcached ignores it"),
    ("user_data", "deprecated; libmemcached ignores it"),
    ("cork", "deprecated; libmemcached always corks"),
    ("load_from_file", "cannot be set; use Client::from_config"),
];

fn lookup(name: &str) -> Result<&'static BehaviorInfo> {
    let name = name.trim();
    // pylibmc still accepts its old name for the retry timeout.
    let canonical = if name == "_retry_timeout" {
        "retry_timeout"
    } else {
        name
    };
    if let Some(info) = all_behaviors().iter().find(|b| b.name == canonical) {
        return Ok(info);
    }
    if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
        return Err(ConfigError::setting(
            format!("behavior {name}"),
            format!("refused: {why}"),
        ));
    }
    Err(unknown(&[name]))
}

fn unknown(names: &[&str]) -> Error {
    let mut names = names.to_vec();
    names.sort_unstable();
    names.dedup();
    Error::InvalidConfig(ConfigError::Unknown {
        what: "behavior",
        name: names.join(", "),
        known: "see libmemcached::all_behaviors".into(),
    })
}

impl Behavior {
    /// A behavior from its pylibmc name and raw value, in libmemcached's unit:
    /// `("connect_timeout", 4000)` is a 4 s [`Behavior::ConnectTimeout`], `("hash", "fnv1a_32")`,
    /// `("distribution", "consistent ketama")`, `("ketama", true)`. Booleans are `true`/`false`
    /// or numbers (non-zero is on). An unknown or refused name, or a value out of range, is an
    /// [`Error::InvalidConfig`] saying so.
    ///
    /// ```
    /// use std::time::Duration;
    /// use libmemcached::{Behavior, Hash};
    ///
    /// let b = Behavior::from_name("connect_timeout", 4000)?;
    /// assert_eq!(b, Behavior::ConnectTimeout(Duration::from_secs(4)));
    /// assert_eq!(Behavior::from_name("hash", "fnv1a_32")?, Behavior::Hash(Hash::Fnv1a_32));
    /// assert!(Behavior::from_name("pickle_protocol", 2).is_err());
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn from_name(name: &str, value: impl fmt::Display) -> Result<Behavior> {
        let info = lookup(name)?;
        let text = value.to_string();
        let behavior = info.id.parse(&RawText {
            name: info.name,
            raw: text.trim(),
        })?;
        behavior.to_raw()?;
        Ok(behavior)
    }

    /// The order behaviors given together are applied in: distributions and hashes first, in
    /// the order given (`ketama_weighted` resets the hash to MD5, so which comes last matters,
    /// and pylibmc applies a dict's `hash` before its `ketama_weighted`); `remove_failed` last,
    /// as it needs the distribution and dead timeout (and first when it is turned off).
    fn rank(&self) -> u8 {
        match self.info().stage {
            // Turned off (raw 0): before what it depends on changes.
            Stage::Dependent if self.to_raw().is_ok_and(|(_, raw)| raw == 0) => 0,
            Stage::Routing => 1,
            Stage::Normal => 2,
            Stage::Dependent => 3,
        }
    }
}

/// Sorts behaviors given together into the order they are applied in, after dropping every
/// setting of a behavior that is set again later: turning `remove_failed` off is applied
/// before the distribution and on after it, so both kept would let an earlier "on" win. Stable,
/// so among settings of the same kind (`ketama`, `ketama_weighted` and `distribution` are one
/// kind) the later wins.
pub(crate) fn apply_order(behaviors: &mut Vec<Behavior>) {
    let ids: Vec<_> = behaviors.iter().map(Behavior::id).collect();
    let mut at = 0;
    behaviors.retain(|_| {
        at += 1;
        !ids[at..].contains(&ids[at - 1])
    });
    behaviors.sort_by_key(Behavior::rank);
}

/// Parses `(name, value)` pairs into behaviors in the order they are applied in. Unknown names
/// are reported together.
pub(crate) fn parse_named<I, N, V>(pairs: I) -> Result<Vec<Behavior>>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<str>,
    V: fmt::Display,
{
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(n, v)| (n.as_ref().trim().to_owned(), v.to_string()))
        .collect();
    let unknown_names: Vec<&str> = pairs
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| lookup(n).is_err() && !REFUSED.iter().any(|(r, _)| r == n))
        .collect();
    if !unknown_names.is_empty() {
        return Err(unknown(&unknown_names));
    }
    // pylibmc: `retry_timeout` wins over its old name `_retry_timeout`.
    let explicit_retry = pairs.iter().any(|(n, _)| n == "retry_timeout");
    let mut behaviors = pairs
        .iter()
        .filter(|(n, _)| !(explicit_retry && n == "_retry_timeout"))
        .map(|(n, v)| Behavior::from_name(n, v))
        .collect::<Result<Vec<_>>>()?;
    // A map has no order: apply in pylibmc's table order (so `distribution` after `ketama`),
    // then by dependency.
    behaviors.sort_by_key(Behavior::id);
    apply_order(&mut behaviors);
    Ok(behaviors)
}

impl Client {
    /// Sets a behavior by pylibmc name with a raw value in libmemcached's unit, as pylibmc's
    /// `behaviors[name] = value`: `("connect_timeout", 4000)`, `("hash", "fnv1a_32")`,
    /// `("distribution", "consistent ketama")`, `("ketama", true)`. See [`Behavior::from_name`].
    pub fn set_behavior_by_name(&self, name: &str, value: impl fmt::Display) -> Result<()> {
        self.set_behaviors_by_name([(name, value)])
    }

    /// Sets several behaviors by name, as pylibmc's `set_behaviors(dict)`. Every name and value
    /// is checked before any is set; unknown names are all listed in one error. They are
    /// applied in pylibmc's table order, so keys land where pylibmc puts them whatever the order
    /// given (a `hash` is applied before `ketama_weighted`, which resets it to MD5), except that
    /// `remove_failed` comes after the distribution and `dead_timeout` it needs. A setting
    /// refused for this client (see [`Behavior`]) stops there; the ones applied before it stay.
    ///
    /// ```no_run
    /// # let mc = libmemcached::Client::new(["127.0.0.1:11211"])?;
    /// mc.set_behaviors_by_name([
    ///     ("remove_failed", "1"),
    ///     ("distribution", "consistent ketama"),
    ///     ("retry_timeout", "1"),
    ///     ("dead_timeout", "60"),
    /// ])?;
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn set_behaviors_by_name<I, N, V>(&self, behaviors: I) -> Result<()>
    where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<str>,
        V: fmt::Display,
    {
        for behavior in parse_named(behaviors)? {
            self.set_behavior(behavior)?;
        }
        Ok(())
    }

    /// The current value of a behavior by pylibmc name, in the raw form
    /// [`Client::set_behavior_by_name`] takes (hash and distribution by name).
    pub fn behavior_by_name(&self, name: &str) -> Result<BehaviorValue> {
        Ok(self.read_behavior(lookup(name)?))
    }

    /// Every behavior's current value by name, in [`all_behaviors`](crate::all_behaviors)'
    /// order, as pylibmc's `get_behaviors()`, except that `ketama_hash` reads back as a name too
    /// (pylibmc gives a number). Reading does not touch the network (pylibmc connects to the
    /// first server to read the socket sizes; here 0 means the OS default).
    ///
    /// ```no_run
    /// # let mc = libmemcached::Client::new(["127.0.0.1:11211"])?;
    /// for (name, value) in mc.behaviors() {
    ///     println!("{name} = {value}");
    /// }
    /// # Ok::<(), libmemcached::Error>(())
    /// ```
    pub fn behaviors(&self) -> Vec<(&'static str, BehaviorValue)> {
        all_behaviors()
            .iter()
            .map(|info| (info.name, self.read_behavior(info)))
            .collect()
    }

    fn read_behavior(&self, info: &BehaviorInfo) -> BehaviorValue {
        let raw = match info.id {
            // libmemcached would connect to the first server to read the OS value.
            Id::SocketSendSize => self.handle.socket_sizes().0.max(0) as u64,
            Id::SocketRecvSize => self.handle.socket_sizes().1.max(0) as u64,
            // The rest read through libmemcached.
            _ => self.behavior_raw(info.flag),
        };
        info.id.show(raw)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Distribution, Hash};
    use super::*;

    #[test]
    fn names_and_raw_values_round_trip() {
        for (name, value) in [
            ("connect_timeout", "4000"),
            ("_poll_timeout", "250"),
            ("send_timeout", "1500"),
            ("retry_timeout", "1"),
            ("dead_timeout", "60"),
            ("tcp_keepidle", "30"),
            ("hash", "fnv1a_32"),
            ("ketama_hash", "md5"),
            ("distribution", "consistent ketama"),
            ("ketama", "1"),
            ("cas", "0"),
            ("failure_limit", "2"),
            ("num_replicas", "1"),
            ("_socket_send_size", "65536"),
        ] {
            let behavior = Behavior::from_name(name, value).unwrap();
            assert_eq!(behavior.name(), name);
            assert_eq!(behavior.raw_value().unwrap().to_string(), value, "{name}");
        }
        assert_eq!(
            Behavior::from_name("_retry_timeout", 3).unwrap(),
            Behavior::RetryTimeout(Duration::from_secs(3))
        );
        assert_eq!(
            Behavior::from_name("remove_failed", 3).unwrap(),
            Behavior::RemoveFailedServers(true)
        );
        assert_eq!(
            Behavior::from_name("ketama", true).unwrap(),
            Behavior::Ketama(true)
        );
        assert_eq!(
            Behavior::from_name("distribution", "consistent_weighted").unwrap(),
            Behavior::Distribution(Distribution::ConsistentWeighted)
        );
        assert_eq!(
            Behavior::from_name("hash", 6).unwrap(),
            Behavior::Hash(Hash::Fnv1a_32)
        );
    }

    #[test]
    fn bad_names_and_values_say_what_is_wrong() {
        let message = |r: Result<Behavior>| r.unwrap_err().to_string();
        assert!(message(Behavior::from_name("bogus", 1)).contains("unknown behavior: bogus"));
        assert!(message(Behavior::from_name("pickle_protocol", 2)).contains("pickle"));
        assert!(message(Behavior::from_name("buffer_requests", 1)).contains("aborts"));
        assert!(message(Behavior::from_name("auto_eject", 1)).contains("remove_failed"));
        assert!(message(Behavior::from_name("connect_timeout", -1)).contains("negative"));
        assert!(message(Behavior::from_name("connect_timeout", "1.5")).contains("whole number"));
        assert!(message(Behavior::from_name("_poll_timeout", 0)).contains("above zero"));
        assert!(message(Behavior::from_name("hash", "sha1")).contains("unknown hash"));
        assert!(message(Behavior::from_name("distribution", "virtual bucket")).contains("refused"));
        assert!(message(Behavior::from_name("distribution", 6)).contains("refused"));
        assert!(message(Behavior::from_name("tcp_keepidle", 40_000)).contains("32767"));
        assert!(message(Behavior::from_name("failure_limit", 1u64 << 40)).contains("too large"));
        let err = parse_named([("zeta", "1"), ("alpha", "1"), ("hash", "md5")]).unwrap_err();
        assert!(
            err.to_string().contains("unknown behavior: alpha, zeta"),
            "{err}"
        );
    }

    #[test]
    fn named_behaviors_apply_in_pylibmc_order_with_remove_failed_last() {
        let order = parse_named([
            ("remove_failed", "1"),
            ("hash", "crc"),
            ("dead_timeout", "5"),
            ("ketama_weighted", "1"),
            ("distribution", "consistent ketama"),
        ])
        .unwrap();
        let names: Vec<&str> = order.iter().map(Behavior::name).collect();
        assert_eq!(
            names,
            [
                "hash",
                "ketama_weighted",
                "distribution",
                "dead_timeout",
                "remove_failed"
            ]
        );
        let mut typed = vec![
            Behavior::Distribution(Distribution::ConsistentKetama),
            Behavior::RemoveFailedServers(true),
            Behavior::KetamaWeighted(true),
            Behavior::Hash(Hash::Crc),
        ];
        apply_order(&mut typed);
        assert_eq!(
            typed,
            [
                Behavior::Distribution(Distribution::ConsistentKetama),
                Behavior::KetamaWeighted(true),
                Behavior::Hash(Hash::Crc),
                Behavior::RemoveFailedServers(true),
            ],
            "the later of distribution and ketama_weighted wins"
        );
        let mut twice = vec![
            Behavior::RemoveFailedServers(true),
            Behavior::Hash(Hash::Crc),
            Behavior::RemoveFailedServers(false),
        ];
        apply_order(&mut twice);
        assert_eq!(
            twice,
            [
                Behavior::RemoveFailedServers(false),
                Behavior::Hash(Hash::Crc)
            ],
            "only the last setting of a behavior is applied"
        );
        let retry = parse_named([("_retry_timeout", "9"), ("retry_timeout", "1")]).unwrap();
        assert_eq!(retry, [Behavior::RetryTimeout(Duration::from_secs(1))]);
    }
}
