//! Routes a handle's connections through the relay (`crate::relay`) while libmemcached keeps
//! every server's name and port as configured, so placement, failure counting and errors stay
//! those of the real servers.
//!
//! Relies on libmemcached 1.1's `memcached_instance_st` (instance.hpp): the fields
//! `address_info`, `address_info_next`, `next_retry`, `root`, `limit_maxbytes`,
//! `error_messages`, `read_buffer[MEMCACHED_MAX_BUFFER]`, `write_buffer[MEMCACHED_MAX_BUFFER]`
//! and `_hostname` follow one another in that order, and `memcached_server_name` returns
//! `_hostname`. Each use checks the layout by finding the handle itself in `root`. On connect,
//! libmemcached looks the name up (`set_hostinfo`, which frees the old list with
//! `freeaddrinfo`) only when `address_info` is NULL or `address_info_next` has run out;
//! otherwise it connects to `address_info_next`, one address per try.

use std::ffi::CString;
use std::mem::size_of;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use libmemcached_sys as sys;

use super::Handle;
use crate::relay::{CHECKING, Reachability, Relay, Target, UNREACHABLE, Upstream};

/// Bytes from `root` to `_hostname`: `limit_maxbytes`, `error_messages` and the two buffers.
const ROOT_TO_HOSTNAME: usize = size_of::<*const sys::memcached_st>()
    + size_of::<u64>()
    + size_of::<*const libc::c_void>()
    + 2 * sys::MEMCACHED_MAX_BUFFER as usize;

/// Where an instance keeps its address list.
struct Slots {
    address_info: *mut *mut libc::addrinfo,
    address_info_next: *mut *mut libc::addrinfo,
}

/// Why a handle's connections cannot go through the relay.
#[derive(Debug)]
pub(crate) enum RouteError {
    /// The instance is not laid out as this module expects.
    Layout,
    /// The relay could not listen for the server, or its address could not be made.
    Listen(String),
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::Layout => f.write_str(
                "this libmemcached does not lay out its servers as the relay expects \
                 (libmemcached 1.1's instance.hpp)",
            ),
            RouteError::Listen(why) => write!(f, "the relay cannot listen: {why}"),
        }
    }
}

impl Handle {
    /// This handle (a clone of `source`), through `source`'s relay if it has one.
    pub(super) fn through_relay_of(mut self, source: &Handle) -> crate::Result<Handle> {
        if let Some(relay) = &source.relay {
            self.go_through(Arc::clone(relay))?;
        }
        Ok(self)
    }

    /// Sends this handle's connections through `relay` from now on.
    pub(crate) fn go_through(&mut self, relay: Arc<Relay>) -> crate::Result<()> {
        self.route_through(&relay)
            .map_err(|why| crate::ConfigError::setting("shield", why.to_string()))?;
        self.relay = Some(relay);
        Ok(())
    }

    /// Whether a call that may connect can be made: without a relay always; with one, when its
    /// thread runs and every server's connections go to it.
    #[inline]
    pub(super) fn routed(&self) -> bool {
        match &self.relay {
            None => true,
            Some(relay) => relay.is_running() && self.route_through(relay).is_ok(),
        }
    }

    /// Points every server's next connection at the relay's listener for it, or, while the
    /// relay finds the server unreachable, at an address no socket can be made for, so that
    /// libmemcached counts a failed connection as it would have with the server itself.
    /// Called before every call that may connect: a few reads per server when nothing changed.
    pub(crate) fn route_through(&self, relay: &Relay) -> Result<(), RouteError> {
        let count = self.server_count();
        let mut routes = self.routes.borrow_mut();
        routes.resize_with(count, || None);
        for i in 0..count {
            let instance = self.instance(i as u32);
            let slots = self.slots(instance).ok_or(RouteError::Layout)?;
            // SAFETY: the slots are the instance's own address-list fields (checked above);
            // the handle is used by this thread alone, and libmemcached touches them only
            // inside a call.
            let (current, next) =
                unsafe { (slots.address_info.read(), slots.address_info_next.read()) };
            if let Some(route) = routes[i].as_ref().filter(|r| r.relay == current) {
                let mut reachability = route.reachability.load(Ordering::Acquire);
                if reachability == CHECKING {
                    relay.await_check(&route.reachability, self.connect_timeout());
                    reachability = route.reachability.load(Ordering::Acquire);
                }
                let wanted = if reachability == UNREACHABLE {
                    // The server's address may have changed (libmemcached would look it up
                    // again once every address failed).
                    route.target.look_up_again();
                    route.unreachable
                } else {
                    route.relay
                };
                if next != wanted {
                    // SAFETY: as above; both entries belong to the list in `address_info`.
                    unsafe { slots.address_info_next.write(wanted) };
                }
                continue;
            }
            let upstream = self.upstream(instance);
            let endpoint = relay
                .endpoint(&upstream)
                .map_err(|e| RouteError::Listen(e.to_string()))?;
            let (reachability, target) = (endpoint.reachability, endpoint.target);
            let std::net::SocketAddr::V4(endpoint) = endpoint.listener else {
                return Err(RouteError::Listen("not an IPv4 loopback address".into()));
            };
            if !current.is_null() {
                // libmemcached looked the server up itself (a new instance, or one moved by a
                // server added before it): a connection it made may go to the server
                // directly. Close every connection before routing.
                self.quit();
            }
            let new = Route::new(endpoint, reachability, target)?;
            // A list of ours that moved here with its instance: its route goes with it.
            for other in routes.iter_mut() {
                if other.as_ref().is_some_and(|r| r.relay == current) {
                    *other = None;
                }
            }
            // SAFETY: as above. The old list came from libmemcached's getaddrinfo, or is ours
            // and no route refers to it any more (just above); this instance held it, and
            // holds the new one from now on.
            unsafe {
                if !current.is_null() {
                    free_list(current);
                }
                slots.address_info.write(new.relay);
                slots.address_info_next.write(new.relay);
            }
            routes[i] = Some(new);
        }
        Ok(())
    }

    /// Takes the relay's address lists back from libmemcached before it frees the handle:
    /// each is two getaddrinfo lists linked into one, freed here as the two they were.
    pub(super) fn unroute(&self) {
        let routes = self.routes.take();
        for (i, route) in routes.into_iter().enumerate() {
            let Some(route) = route else { continue };
            if i >= self.server_count() {
                break;
            }
            let Some(slots) = self.slots(self.instance(i as u32)) else {
                continue;
            };
            // SAFETY: as in `route_through`; a list this route made is freed once, here,
            // after libmemcached stops referring to it.
            unsafe {
                if slots.address_info.read() == route.relay {
                    slots.address_info.write(std::ptr::null_mut());
                    slots.address_info_next.write(std::ptr::null_mut());
                    free_list(route.relay);
                }
            }
        }
    }

    /// libmemcached's connect timeout, which bounds a wait for the relay's check.
    fn connect_timeout(&self) -> std::time::Duration {
        let ms = self.behavior(sys::MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT);
        std::time::Duration::from_millis(ms.clamp(1, 60_000))
    }

    /// The configured name and port of an instance.
    fn upstream(&self, instance: *const sys::memcached_instance_st) -> Upstream {
        // SAFETY: the instance belongs to this handle; its name is a NUL-terminated string it
        // owns, copied at once.
        unsafe {
            Upstream {
                host: std::ffi::CStr::from_ptr(sys::memcached_server_name(instance))
                    .to_string_lossy()
                    .into_owned(),
                port: sys::memcached_server_port(instance),
            }
        }
    }

    /// The address-list fields of one of this handle's instances, if it is laid out as the
    /// module says.
    fn slots(&self, instance: *const sys::memcached_instance_st) -> Option<Slots> {
        // SAFETY: the instance is valid, and libmemcached 1.1's layout (the only series the
        // library check lets the crate use) puts `root` ROOT_TO_HOSTNAME bytes before
        // `_hostname` in the same struct, the address list's fields right before it. Finding
        // this handle in `root` confirms the layout before anything is written.
        unsafe {
            let hostname = sys::memcached_server_name(instance).cast::<u8>();
            let root = hostname.sub(ROOT_TO_HOSTNAME);
            if root.cast::<*const sys::memcached_st>().read_unaligned() != self.as_ptr() {
                return None;
            }
            let pointer = size_of::<*const libc::c_void>();
            let next_retry = root.sub(size_of::<libc::time_t>());
            Some(Slots {
                address_info: next_retry.sub(2 * pointer).cast_mut().cast(),
                address_info_next: next_retry.sub(pointer).cast_mut().cast(),
            })
        }
    }
}

/// The address list a server's connections take through the relay: the relay's listener,
/// then an entry whose family no socket exists for. libmemcached tries the entries in order
/// and looks the server's name up again only after the last one failed to connect, which this
/// one never does: `socket()` fails first, and libmemcached returns without moving on. So
/// libmemcached never connects to the server around the relay.
pub(crate) struct Route {
    relay: *mut libc::addrinfo,
    unreachable: *mut libc::addrinfo,
    /// What the relay knows of the server's reachability, and where the server is.
    reachability: Reachability,
    target: Arc<Target>,
}

// SAFETY: the lists are plain heap memory, touched only by the thread using the handle.
unsafe impl Send for Route {}

impl Route {
    fn new(
        endpoint: SocketAddrV4,
        reachability: Reachability,
        target: Arc<Target>,
    ) -> Result<Route, RouteError> {
        let relay = lookup(endpoint)?;
        let unreachable = match lookup(endpoint) {
            Ok(list) => list,
            Err(error) => {
                // SAFETY: the list is ours, from getaddrinfo, referenced nowhere else.
                unsafe { libc::freeaddrinfo(relay) };
                return Err(error);
            }
        };
        // SAFETY: both are one-entry lists of our own (checked by `lookup`).
        unsafe {
            (*unreachable).ai_family = libc::AF_UNSPEC;
            (*relay).ai_next = unreachable;
        }
        Ok(Route {
            relay,
            unreachable,
            reachability,
            target,
        })
    }
}

/// Frees a list made by `Route::new` (or one from libmemcached's own getaddrinfo).
///
/// # Safety
///
/// `list` is such a list, referenced nowhere else.
unsafe fn free_list(list: *mut libc::addrinfo) {
    // SAFETY: per the contract. A route's list is two getaddrinfo lists of one entry each,
    // unlinked and freed one by one, as each was allocated.
    unsafe {
        let second = (*list).ai_next;
        if !second.is_null() && (*second).ai_family == libc::AF_UNSPEC {
            (*list).ai_next = std::ptr::null_mut();
            libc::freeaddrinfo(second);
        }
        libc::freeaddrinfo(list);
    }
}

/// A one-entry address list for `endpoint`, from getaddrinfo.
fn lookup(endpoint: SocketAddrV4) -> Result<*mut libc::addrinfo, RouteError> {
    let host = CString::new(endpoint.ip().to_string()).expect("no NUL in an address");
    let port = CString::new(endpoint.port().to_string()).expect("no NUL in a number");
    // SAFETY: all-zero is a valid addrinfo (hints).
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_INET;
    hints.ai_socktype = libc::SOCK_STREAM;
    hints.ai_protocol = libc::IPPROTO_TCP;
    hints.ai_flags = libc::AI_NUMERICHOST | libc::AI_NUMERICSERV;
    let mut list = std::ptr::null_mut();
    // SAFETY: host and port are NUL-terminated; `list` receives a list we then own.
    let rc = unsafe { libc::getaddrinfo(host.as_ptr(), port.as_ptr(), &hints, &mut list) };
    if rc != 0 || list.is_null() {
        return Err(RouteError::Listen(format!(
            "getaddrinfo({endpoint}) failed: {rc}"
        )));
    }
    // SAFETY: a successful lookup gives a valid list, ours.
    if !unsafe { (*list).ai_next.is_null() } {
        // SAFETY: as above.
        unsafe { libc::freeaddrinfo(list) };
        return Err(RouteError::Listen(format!(
            "getaddrinfo({endpoint}) gave several addresses"
        )));
    }
    Ok(list)
}

/// Whether a libmemcached error message is that of a connection refused by
/// [`Route`]'s unreachable entry (`socket()` failing with EAFNOSUPPORT).
pub(super) fn is_unreachable_message(message: &str) -> bool {
    let text = std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    message.contains(text)
}

/// This process's effective user.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
