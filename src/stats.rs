//! Server statistics: every line each server sends.

use std::ffi::CString;

use crate::client::Client;
use crate::error::{Error, KeyFailure, Result};
use crate::ffi::{Rc, ReturnCode};
use crate::server::Address;

/// One server's answer to `stats` (or `stats <arg>`), every line as the server sent it.
///
/// pylibmc returns only 22 fixed fields; here `"slabs"`, `"items"`, `"settings"` and the rest
/// come through whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStats {
    server: Address,
    stats: Vec<(String, String)>,
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> Option<u64> {
            self.get_u64(stringify!($name))
        }
    )*};
}

impl ServerStats {
    /// The server.
    pub fn server(&self) -> &Address {
        &self.server
    }

    /// A stat by name, as sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.stats
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A numeric stat by name.
    pub fn get_u64(&self, name: &str) -> Option<u64> {
        self.get(name)?.parse().ok()
    }

    /// Every stat, in the order the server sent them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.stats.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many stats the server sent.
    pub fn len(&self) -> usize {
        self.stats.len()
    }

    /// Whether the server sent none.
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }

    /// The server's version (`version`).
    pub fn version(&self) -> Option<&str> {
        self.get("version")
    }

    counters! {
        /// The server's process id (`pid`).
        pid,
        /// Seconds since the server started (`uptime`).
        uptime,
        /// Items stored now (`curr_items`).
        curr_items,
        /// Items stored since the start (`total_items`).
        total_items,
        /// Bytes used by items (`bytes`).
        bytes,
        /// The memory limit in bytes (`limit_maxbytes`).
        limit_maxbytes,
        /// Open connections (`curr_connections`).
        curr_connections,
        /// Connections since the start (`total_connections`).
        total_connections,
        /// Get requests (`cmd_get`).
        cmd_get,
        /// Storage requests (`cmd_set`).
        cmd_set,
        /// Gets that found their key (`get_hits`).
        get_hits,
        /// Gets that did not (`get_misses`).
        get_misses,
        /// Items evicted to make room (`evictions`).
        evictions,
        /// Worker threads (`threads`).
        threads,
    }
}

impl Client {
    /// Every server's statistics: `stats` with no argument, or a group such as `"settings"`,
    /// `"slabs"`, `"items"` or `"sizes"`.
    ///
    /// A server that does not answer makes the call fail with [`Error::Multi`] naming it (and
    /// only it): libmemcached then gives no server's statistics, as it asks every server's
    /// version first. A group the servers refuse is an error with their code.
    /// Through a proxy ([`ClientBuilder::proxy`](crate::ClientBuilder::proxy)) it is refused
    /// before anything is sent.
    pub fn stats(&self, arg: Option<&str>) -> Result<Vec<ServerStats>> {
        self.call("stats", || self.ask_stats(arg))
    }

    fn ask_stats(&self, arg: Option<&str>) -> Result<Vec<ServerStats>> {
        self.refuse_over_udp("stats")?;
        self.refuse_through_proxy(
            "stats",
            "twemproxy closes the connection on it; ask each memcached server behind the proxy, \
             or twemproxy's own stats port",
        )?;
        let arg = arg
            .map(|arg| {
                // Printable ASCII only: no line breaks to smuggle in a second command, no NUL.
                let printable = !arg.is_empty() && arg.bytes().all(|b| (0x20..0x7f).contains(&b));
                CString::new(arg).ok().filter(|_| printable).ok_or_else(|| {
                    Error::argument("stats", format!("{arg:?}: expected printable ASCII"))
                })
            })
            .transpose()?;
        let (rc, stats) = self.handle.stats(arg.as_deref());
        let servers = self.servers();
        // A server failed if libmemcached recorded an error for it in this call, whatever lines
        // came first (a reply that broke off is not all its statistics). libmemcached asks
        // every server's version first and, when one fails, gives up on all of them: the
        // others, silent too, did not fail. The call's code does not say which: it is SUCCESS
        // whatever each server did with a group. A server always has general stats, so with
        // none recorded, missing general stats failed all the same; some groups are empty on a
        // healthy server (`items` with no items).
        let logged = self.handle.last_error() != ReturnCode::Success;
        let recorded: Vec<bool> = (0..servers.len())
            .map(|i| self.handle.server_failed(i))
            .collect();
        let failed = |i: usize| {
            ((rc != Rc::SUCCESS || logged) && recorded[i])
                || (arg.is_none() && stats[i].is_empty() && !recorded.contains(&true))
        };
        let failures: Vec<KeyFailure> = (0..servers.len())
            .filter(|&i| failed(i))
            .map(|i| {
                self.server_failure(
                    i,
                    (
                        ReturnCode::ProtocolError,
                        "no statistics came back (a reply that could not be read, or a proxy \
                         that does not pass stats on)",
                    ),
                )
            })
            .collect();
        if !failures.is_empty() {
            // Whatever was left unread must not answer a later request.
            self.handle.quit();
            let summary = matches!(rc.code(), ReturnCode::Success | ReturnCode::SomeErrors);
            if failures.len() == servers.len() && !summary {
                // Nothing answered, and the code says why (a bad argument, no servers): one
                // error, the server's own when there is one server.
                return Err(match <[KeyFailure; 1]>::try_from(failures) {
                    Ok([failure]) => failure.error,
                    Err(_) => self.error(rc, None),
                });
            }
            return Err(Error::Multi { failures });
        }
        self.handle.check(rc, &[ReturnCode::SomeErrors], None)?;
        Ok(servers
            .into_iter()
            .zip(stats)
            .map(|(server, stats)| ServerStats { server, stats })
            .collect())
    }

    /// The smallest item size limit of the servers (`item_size_max`); through a proxy, which
    /// cannot be asked, memcached's default.
    pub(crate) fn item_size_limit(&self) -> Result<usize> {
        /// memcached's default `-I`.
        const DEFAULT_ITEM_SIZE_MAX: usize = 1024 * 1024;
        if self.is_proxy() {
            return Ok(DEFAULT_ITEM_SIZE_MAX);
        }
        let mut limit = usize::MAX;
        for server in self.ask_stats(Some("settings"))? {
            let Some(max) = server.get_u64("item_size_max") else {
                return Err(Error::Memcached {
                    code: ReturnCode::ProtocolError,
                    message: "no item_size_max in its `stats settings` (a reply that could not \
                              be read, or not memcached)"
                        .into(),
                    key: None,
                    server: Some(server.server),
                });
            };
            limit = limit.min(max as usize);
        }
        Ok(limit)
    }
}
