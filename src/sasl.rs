//! SASL credentials for [`ClientBuilder::sasl`](crate::ClientBuilder::sasl): checked before the
//! handle exists, handed to libmemcached once, and never printed.

use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::fmt;

use crate::client::Client;
use crate::error::{ConfigError, Error, KeyFailure, Result};
use crate::ffi::{Rc, ReturnCode};
use crate::server::{Address, Transport};

/// A SASL username and password. `Debug` shows the username only, so builders can be logged.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    username: String,
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub(crate) fn new(username: &str, password: &str) -> Self {
        Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// Refuses what cannot work, before a handle is made: a library without SASL, a missing half
    /// of the credentials, a NUL byte (C strings), UDP servers (no replies, so no handshake) and
    /// unix sockets (libmemcached skips the handshake there).
    pub(crate) fn check(&self, servers: &[Address]) -> Result<()> {
        let invalid = |why: &str| Err(ConfigError::setting("SASL", why));
        if !crate::support_sasl() {
            return invalid("the libmemcached this crate was built against has no SASL support");
        }
        if self.username.is_empty() || self.password.is_empty() {
            return invalid("needs both a username and a password");
        }
        if self.username.contains('\0') || self.password.contains('\0') {
            return invalid("the username or password contains a NUL byte");
        }
        if servers.iter().any(|s| s.transport() == Transport::Udp) {
            return invalid("cannot authenticate over UDP, which gets no replies");
        }
        // libmemcached 1.1 authenticates TCP connections only; over a unix socket every command
        // would go unauthenticated, and a counter's auth error aborts the process.
        if let Some(unix) = servers.iter().find(|s| s.transport() == Transport::Unix) {
            return invalid(&format!(
                "libmemcached does not authenticate unix socket connections ({unix})"
            ));
        }
        Ok(())
    }

    /// Gives the credentials to libmemcached, which switches the handle to the binary protocol
    /// and authenticates every new connection. Call [`Credentials::check`] first.
    pub(crate) fn apply(&self, client: &Client) -> Result<()> {
        let nul = |_| ConfigError::setting("SASL", "the username or password contains a NUL byte");
        let username = CString::new(self.username.as_str()).map_err(nul)?;
        let password = CString::new(self.password.as_str()).map_err(nul)?;
        let rc = client.handle.set_sasl(&username, &password);
        if rc != Rc::SUCCESS {
            return Err(ConfigError::setting(
                "SASL",
                format!("libmemcached refused the credentials: {}", rc.code()),
            ));
        }
        Ok(())
    }
}

/// The key the probe deletes: nobody's, so deleting it changes nothing.
const PROBE_KEY: &[u8] = b"libmemcached-rs:sasl-probe";

/// Which servers a binary client without credentials has found to need none.
///
/// memcached `-S` answers such a client's binary commands with an auth error, and libmemcached
/// 1.1 turns that into a miss (get, gets, get_multi) or, for incr and decr, an assertion failure
/// that aborts the process. So before a counter, and after a miss, each server is asked once
/// per client with a delete of [`PROBE_KEY`], whose auth error libmemcached reports correctly.
/// Writes need no probe: their auth errors come through.
#[derive(Debug, Default)]
pub(crate) struct AuthProbe {
    /// Per server position: known to need no authentication.
    checked: RefCell<Vec<bool>>,
    /// Every server checked, or the client needs no probe at all.
    done: Cell<bool>,
}

impl Client {
    /// Whether this client could get an auth error it cannot see: binary, TCP, no credentials.
    fn needs_auth_probe(&self) -> bool {
        if self.auth_probe.done.get() {
            return false;
        }
        let facts = self.handle.facts();
        let needed = facts.binary && !self.handle.has_sasl() && !facts.udp;
        if !needed {
            self.auth_probe.done.set(true);
        }
        needed
    }

    /// Before a counter: makes sure the key's server does not demand SASL. Any other failure of
    /// the probe is returned as the counter's own would have been (the server is unreachable).
    pub(crate) fn check_auth_before_counter(&self, key: &[u8]) -> Result<()> {
        match self.probe_auth(key) {
            Probe::Fine | Probe::Skipped => Ok(()),
            Probe::Failed(error) | Probe::NeedsAuth(error) => Err(error),
        }
    }

    /// After a miss of `key`: an auth error if its server demands SASL, so that it is not taken
    /// for a miss. Other probe failures leave the miss as it is.
    pub(crate) fn check_auth_after_miss(&self, key: &[u8]) -> Result<()> {
        match self.probe_auth(key) {
            Probe::NeedsAuth(error) => Err(error),
            _ => Ok(()),
        }
    }

    /// A get's auth error, explained if the key's server demands SASL and this client has no
    /// credentials; any other error as it is.
    #[cold]
    pub(crate) fn explain_auth_error(&self, key: &[u8], error: Error) -> Error {
        if !may_need_auth(&error) {
            return error;
        }
        match self.probe_auth(key) {
            Probe::NeedsAuth(explained) => explained,
            _ => error,
        }
    }

    /// After a multi-get: adds to `failures` each server that demands SASL, with the missed keys
    /// it holds (given as sent, and as the caller gave them).
    pub(crate) fn check_auth_after_misses<'k>(
        &self,
        missed: impl Iterator<Item = (&'k [u8], &'k [u8])>,
        failures: &mut Vec<KeyFailure>,
    ) {
        if !self.needs_auth_probe() {
            return;
        }
        // A server that already failed has all its keys in its failure.
        let failed_before = failures.len();
        // Each server is probed once per call: a probe that failed (the server unreachable, or
        // its answer malformed) would fail again, costing up to a poll timeout per missed key.
        let mut probed = Vec::new();
        for (sent, key) in missed {
            if self.auth_probe.done.get() {
                break;
            }
            let server = self.handle.server_for_key(sent).ok();
            let on_server =
                |f: &KeyFailure| server.is_some() && f.error.server() == server.as_ref();
            if failures[..failed_before].iter().any(on_server) {
                continue;
            }
            if let Some(failure) = failures[failed_before..].iter_mut().find(|f| on_server(f)) {
                failure.keys.push(key.to_vec());
                continue;
            }
            if probed.contains(&server) {
                continue;
            }
            probed.push(server.clone());
            if let Probe::NeedsAuth(error) = self.probe_auth(sent) {
                failures.push(KeyFailure {
                    error,
                    keys: vec![key.to_vec()],
                });
            }
        }
    }

    /// [`Client::explain_auth_error`] for the failures of a multi-get; `prefix` is the one the
    /// failures' keys were asked under.
    #[cold]
    pub(crate) fn explain_auth_failures(&self, failures: &mut [KeyFailure], prefix: &[u8]) {
        for failure in failures.iter_mut().filter(|f| may_need_auth(&f.error)) {
            let Some(key) = failure.keys.first() else {
                continue;
            };
            if let Probe::NeedsAuth(error) = self.probe_auth(&[prefix, key].concat()) {
                failure.error = error;
            }
        }
    }

    fn probe_auth(&self, key: &[u8]) -> Probe {
        if !self.needs_auth_probe() {
            return Probe::Skipped;
        }
        let position = self.handle.server_index(key);
        if self.auth_probe.checked.borrow().get(position) == Some(&true) {
            return Probe::Skipped;
        }
        // The key is the group key, so the probe goes to the key's server.
        let rc = self.handle.delete(key, PROBE_KEY);
        let answers = [
            ReturnCode::NotFound,
            ReturnCode::AuthFailure,
            ReturnCode::AuthProblem,
            ReturnCode::AuthContinue,
        ];
        match self.handle.check(rc, &answers, Some(key)) {
            Ok(ReturnCode::Success | ReturnCode::NotFound) => {
                let count = self.handle.server_count();
                let mut checked = self.auth_probe.checked.borrow_mut();
                checked.resize(count, false);
                checked[position] = true;
                if checked.iter().all(|&c| c) {
                    self.auth_probe.done.set(true);
                }
                Probe::Fine
            }
            Ok(_) => {
                let server = self.handle.server_for_key(key).ok();
                self.disconnect_all();
                Probe::NeedsAuth(Error::Memcached {
                    code: ReturnCode::AuthFailure,
                    message: "AUTHENTICATION FAILURE: the server requires SASL authentication \
                              and this client has no credentials (ClientBuilder::sasl)"
                        .into(),
                    key: None,
                    server,
                })
            }
            Err(error) => Probe::Failed(error),
        }
    }
}

/// An error that may mean the server wants credentials this client lacks: an auth error, or a
/// connection the server reset. memcached closes the connection after refusing an
/// unauthenticated binary request, and when the client had already sent more (a get's NOOP),
/// the close is a reset that can discard the refusal before the client reads it: the probe then
/// tells an auth error from a failed server.
fn may_need_auth(error: &Error) -> bool {
    let reset = matches!(
        error,
        Error::Memcached { code, message, .. }
            if code.is_connection() && message.contains("reset by peer")
    );
    reset || error.is_auth()
}

enum Probe {
    /// Not needed: credentials given, ASCII, UDP, or this server was checked before.
    Skipped,
    /// The server answered without asking for authentication.
    Fine,
    /// The server demands SASL.
    NeedsAuth(Error),
    /// The probe failed for another reason (the server is unreachable).
    Failed(Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let text = format!("{:?}", Credentials::new("alice", "s3cr3t-pw"));
        assert!(text.contains("alice"), "{text}");
        assert!(!text.contains("s3cr3t-pw"), "{text}");
    }

    #[test]
    fn incomplete_or_unusable_credentials_are_refused() {
        let tcp: Vec<Address> = vec!["127.0.0.1:11211".parse().unwrap()];
        let udp: Vec<Address> = vec!["udp:127.0.0.1:11211".parse().unwrap()];
        let unix: Vec<Address> = vec![tcp[0].clone(), "/run/mc.sock".parse().unwrap()];
        let refused = |c: Credentials, servers: &[Address]| match c.check(servers) {
            Err(Error::InvalidConfig(why)) => why.to_string(),
            other => panic!("{other:?}"),
        };
        if !crate::support_sasl() {
            assert!(refused(Credentials::new("u", "p"), &tcp).contains("no SASL support"));
            return;
        }
        assert!(Credentials::new("u", "p").check(&tcp).is_ok());
        for (user, password) in [("", "p"), ("u", ""), ("", "")] {
            let why = refused(Credentials::new(user, password), &tcp);
            assert!(why.contains("both a username and a password"), "{why}");
        }
        assert!(refused(Credentials::new("u\0x", "p"), &tcp).contains("NUL"));
        assert!(refused(Credentials::new("u", "p"), &udp).contains("UDP"));
        assert!(refused(Credentials::new("u", "p"), &unix).contains("unix socket"));
    }
}
