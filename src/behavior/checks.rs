//! Checks of a behavior against a client (its protocol, servers and other behaviors), and what
//! follows setting one.

use libmemcached_sys as sys;

use super::raw::refused;
use super::table::Behavior;
use crate::client::Client;
use crate::error::{ConfigError, Error, Result};

impl Behavior {
    /// The flag and raw value for `client`, after checking the value against the client's
    /// protocol, servers and other behaviors; `None` when there is nothing to set.
    pub(crate) fn prepare(
        self,
        client: &Client,
    ) -> Result<Option<(sys::memcached_behavior_t, u64)>> {
        use Behavior::*;
        let raw = self.to_raw()?;
        let binary = client.is_binary();
        let udp = client.behavior_raw(sys::MEMCACHED_BEHAVIOR_USE_UDP) != 0;
        let removing = client.behavior_raw(sys::MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS) != 0;
        let checked = match self {
            // Already off in binary, where libmemcached refuses the flag whatever its value.
            VerifyKey(false) if binary => return Ok(None),
            VerifyKey(true) if binary => Err(refused(
                self,
                "libmemcached checks keys only in the ASCII protocol (this crate checks them in both)",
            )),
            NoReply(true) if binary => Err(refused(
                self,
                "in the binary protocol a quiet command's error reply desynchronises the connection",
            )),
            NoReply(false) if udp => Err(refused(self, "UDP writes never get a reply")),
            NumberOfReplicas(n) if n > 0 && (!binary || udp) => Err(refused(
                self,
                "only the binary protocol over TCP writes and reads replicas",
            )),
            NumberOfReplicas(n)
                if n > 0 && n >= client.server_count() && client.server_count() > 0 =>
            {
                Err(refused(self, "there must be more servers than replicas"))
            }
            RemoveFailedServers(true) => {
                let distribution = crate::Distribution::from_raw(
                    client.behavior_raw(sys::MEMCACHED_BEHAVIOR_DISTRIBUTION),
                );
                if !distribution.is_some_and(crate::Distribution::is_consistent) {
                    return Err(refused(
                        self,
                        "keys are only rerouted under a consistent distribution; set \
                         Distribution::ConsistentKetama first",
                    ));
                }
                if client.behavior_raw(sys::MEMCACHED_BEHAVIOR_DEAD_TIMEOUT) == 0 {
                    return Err(refused(
                        self,
                        "with no dead timeout a removed server returns to the ring and then \
                         fails every key it owns for good; set DeadTimeout first",
                    ));
                }
                Ok(raw)
            }
            DeadTimeout(d) if d.is_zero() && removing => Err(refused(
                self,
                "remove_failed is on, and with no dead timeout a removed server fails its keys \
                 for good; turn remove_failed off first",
            )),
            Ketama(false) if removing => Err(refused(
                self,
                "remove_failed is on and needs a consistent distribution; turn it off first",
            )),
            Distribution(d) if removing && !d.is_consistent() => Err(refused(
                self,
                "remove_failed is on and needs a consistent distribution; turn it off first",
            )),
            Distribution(d) if d.is_consistent() => client
                .check_ring_size(true, client.server_count() as usize)
                .map(|()| raw),
            Ketama(true) | KetamaWeighted(true) => client
                .check_ring_size(true, client.server_count() as usize)
                .map(|()| raw),
            // Every other behavior and value: nothing depends on the client.
            _ => Ok(raw),
        };
        checked.map(Some)
    }

    /// Follow-up work after the behavior is set. libmemcached hashes the ketama ring's points
    /// with the key hash but does not rebuild the ring when the hash changes, so without this
    /// a hash set after the servers places keys differently from the same hash set before them
    /// (724 of 1000 keys on 3 servers). Setting SORT_HOSTS to its current value rebuilds the
    /// ring and changes nothing else.
    pub(crate) fn settle(self, client: &Client) -> Result<()> {
        match self {
            Self::Hash(_) | Self::KetamaHash(_) => client.check(client.handle.rebuild_ring(), None),
            _ => Ok(()),
        }
    }
}

impl Client {
    /// Refuses `servers` servers when the distribution is, or is `becoming`, consistent and
    /// they are more than [`MAX_CONSISTENT_SERVERS`](crate::MAX_CONSISTENT_SERVERS):
    /// libmemcached asserts there and aborts the process.
    pub(crate) fn check_ring_size(&self, becoming: bool, servers: usize) -> Result<()> {
        let consistent = becoming
            || crate::Distribution::from_raw(
                self.behavior_raw(sys::MEMCACHED_BEHAVIOR_DISTRIBUTION),
            )
            .is_some_and(crate::Distribution::is_consistent);
        check_ring_size(consistent, servers)
    }

    /// How many servers the client has.
    pub(crate) fn server_count(&self) -> u32 {
        self.handle.server_count() as u32
    }

    /// Checks the behaviors that depend on the servers, once they are all added.
    pub(crate) fn check_behaviors(&self) -> Result<()> {
        let replicas = self.behavior_raw(sys::MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS);
        if replicas > 0 && replicas >= u64::from(self.server_count()) {
            return Err(Error::InvalidConfig(ConfigError::Conflict(format!(
                "{replicas} replicas need at least {} servers",
                replicas + 1
            ))));
        }
        Ok(())
    }
}

/// Refuses more than [`MAX_CONSISTENT_SERVERS`](crate::MAX_CONSISTENT_SERVERS) servers under a
/// consistent distribution.
pub(crate) fn check_ring_size(consistent: bool, servers: usize) -> Result<()> {
    let max = crate::ffi::MAX_CONSISTENT_SERVERS;
    if consistent && servers > max {
        return Err(Error::InvalidConfig(ConfigError::Conflict(format!(
            "{servers} servers under a consistent distribution: libmemcached takes at most {max} \
             (MAX_CONSISTENT_SERVERS) and aborts the process beyond that"
        ))));
    }
    Ok(())
}
