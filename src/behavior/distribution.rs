//! [`Distribution`]: how keys are spread over servers, from one table.

use std::str::FromStr;

use libmemcached_sys as sys;

use super::c_enum::c_enum;
use crate::error::{ConfigError, Error, Result};

c_enum! {
    /// How keys are spread over servers. The names are pylibmc's (`"consistent ketama"`); see
    /// [`distributions`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub enum Distribution(sys::memcached_server_distribution_t) in DISTRIBUTIONS as "distribution" {
        /// `modula`: hash modulo the number of servers (libmemcached's default). Removing one of
        /// N servers moves most keys, and failed servers are never routed around.
        Modula = "modula", MEMCACHED_DISTRIBUTION_MODULA;
        /// `consistent`: the same as [`Distribution::ConsistentKetama`].
        Consistent = "consistent", MEMCACHED_DISTRIBUTION_CONSISTENT;
        /// `consistent ketama`: a ring with 100 points per server; removing one of N servers moves
        /// about 1/N of the keys. Weighted when a server has a weight above 1.
        ConsistentKetama = "consistent ketama", MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA;
        /// `random`: a random server per operation (so a get rarely finds its set).
        Random = "random", MEMCACHED_DISTRIBUTION_RANDOM;
        /// `consistent ketama spy`: ketama as spymemcached (Java) computes it.
        ConsistentKetamaSpy = "consistent ketama spy", MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA_SPY;
        /// `consistent weighted`: ketama with 160 points per server scaled by its weight.
        ConsistentWeighted = "consistent weighted", MEMCACHED_DISTRIBUTION_CONSISTENT_WEIGHTED;
    }
    /// pylibmc's name for the distribution (`"consistent ketama"`).
    fn name;
}

/// Every [`Distribution`] by its pylibmc name, as pylibmc's `distributions` (without
/// `virtual bucket` and `consistent max`, which are refused).
pub fn distributions() -> &'static [(&'static str, Distribution)] {
    DISTRIBUTIONS
}

impl Distribution {
    /// Whether this is consistent hashing (the ketama family), the only kind that routes
    /// around removed servers.
    pub fn is_consistent(self) -> bool {
        match self {
            Self::Modula | Self::Random => false,
            Self::Consistent
            | Self::ConsistentKetama
            | Self::ConsistentKetamaSpy
            | Self::ConsistentWeighted => true,
        }
    }
}

impl FromStr for Distribution {
    type Err = Error;

    /// A distribution by pylibmc name (`"consistent ketama"`; `_` for spaces is accepted too)
    /// or libmemcached number.
    fn from_str(s: &str) -> Result<Distribution> {
        let wanted = s.trim().replace('_', " ");
        if let Some(d) = Distribution::find(&wanted, s.trim()) {
            return Ok(d);
        }
        let refused = ["virtual bucket", "consistent max"];
        if refused.iter().any(|r| r.eq_ignore_ascii_case(&wanted))
            || matches!(
                s.trim().parse::<u32>(),
                Ok(sys::MEMCACHED_DISTRIBUTION_VIRTUAL_BUCKET
                    | sys::MEMCACHED_DISTRIBUTION_CONSISTENT_MAX)
            )
        {
            return Err(ConfigError::setting(
                format!("distribution {s:?}"),
                "refused: it needs a bucket table this crate does not set up (virtual bucket) \
                 or is not a distribution (consistent max)",
            ));
        }
        Err(Distribution::unknown(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_parse_by_name() {
        for &(name, d) in distributions() {
            assert_eq!(name.parse::<Distribution>().unwrap(), d);
            assert_eq!(d.to_string(), name);
        }
        assert!(Distribution::ConsistentKetama.is_consistent());
        assert!(!Distribution::Modula.is_consistent());
    }
}
