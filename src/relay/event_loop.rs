//! The relay's thread: one epoll loop over every listener and connection of a client.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};

use super::conn::{Closed, Conn, Side};
use super::{CHECKING, Endpoint, REACHABLE, Shared, Target, UNREACHABLE, lock, peer};

pub(super) const WAKER: Token = Token(0);
/// Listener `i` is token `1 + i`; its probe `PROBES + i`; connection `i` has
/// `CONNECTIONS + 2i` (libmemcached's side) and `CONNECTIONS + 2i + 1` (the server's).
const PROBES: usize = 1 << 23;
const CONNECTIONS: usize = 1 << 24;

/// How often a server the relay cannot reach is tried again, and how long a try may take.
const PROBE_EVERY: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const PROBE_SETTLE: Duration = Duration::from_millis(20);

/// A server's listener, and what the relay knows of the server.
struct Server {
    listener: TcpListener,
    /// Whether the server can be reached (`reachability`: while it cannot, libmemcached's
    /// connections to it fail at once, see `ffi::route`, as they would without the relay), and
    /// where it is.
    endpoint: Endpoint,
    /// A connection made only to learn whether the server can be reached.
    probe: Option<Probe>,
    next_probe: Option<Instant>,
}

/// A connection made to learn whether a server can be reached: since when, and since when it is
/// established. It counts once it has stayed up for [`PROBE_SETTLE`]: a server being killed can
/// still complete a connection on its listening socket, then reset it as the socket closes.
struct Probe {
    stream: TcpStream,
    started: Instant,
    established: Option<Instant>,
}

impl Probe {
    /// When the probe's timer is due: it times out, or it has stayed up long enough.
    fn due(&self) -> Instant {
        match self.established {
            Some(at) => at + PROBE_SETTLE,
            None => self.started + PROBE_TIMEOUT,
        }
    }
}

/// Marks the relay ended however its thread ends, so calls fail at once instead of waiting on
/// listeners nobody serves.
struct EndGuard(Arc<Shared>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Release);
    }
}

struct Loop {
    poll: Poll,
    shared: Arc<Shared>,
    servers: Vec<Server>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
}

pub(super) fn run(poll: Poll, shared: Arc<Shared>) {
    let _end = EndGuard(Arc::clone(&shared));
    let mut events = Events::with_capacity(256);
    let mut scratch = vec![0u8; super::conn::CHUNK].into_boxed_slice();
    let mut relay = Loop {
        poll,
        shared,
        servers: Vec::new(),
        conns: Vec::new(),
        free: Vec::new(),
    };
    loop {
        let now = Instant::now();
        let timeout = relay.next_timer().map(|t| t.saturating_duration_since(now));
        if let Err(error) = relay.poll.poll(&mut events, timeout) {
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            crate::trace::relay_stopped(&error);
            return;
        }
        for event in events.iter() {
            match event.token() {
                WAKER => {
                    if relay.shared.closing.load(Ordering::Acquire) {
                        return;
                    }
                    relay.take_listeners();
                }
                Token(t) if t < PROBES => relay.accept_all(t - 1),
                Token(t) if t < CONNECTIONS => relay.probe_answered(t - PROBES),
                Token(t) => {
                    let side = if (t - CONNECTIONS) % 2 == 0 {
                        Side::Client
                    } else {
                        Side::Server
                    };
                    relay.pump((t - CONNECTIONS) / 2, side, &mut scratch);
                }
            }
        }
        relay.run_timers();
    }
}

impl Loop {
    fn take_listeners(&mut self) {
        let new = std::mem::take(&mut *lock(&self.shared.new_listeners));
        for (listener, endpoint) in new {
            let mut listener = TcpListener::from_std(listener);
            let token = Token(1 + self.servers.len());
            if self
                .poll
                .registry()
                .register(&mut listener, token, Interest::READABLE)
                .is_ok()
            {
                self.servers.push(Server {
                    listener,
                    endpoint,
                    probe: None,
                    next_probe: None,
                });
            }
        }
    }

    /// Accepts every connection waiting on a server's listener and opens its connection to
    /// the server.
    fn accept_all(&mut self, server: usize) {
        loop {
            let (client, peer_address) = match self.servers[server].listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Out of descriptors, most likely: the waiting connection stays queued
                    // (and libmemcached times out), and the next event tries again.
                    let why = format!("the relay cannot accept: {error}");
                    self.shared
                        .record_failure(&self.servers[server].endpoint.target.upstream, why);
                    return;
                }
            };
            // The listener is on loopback, where any local user could reach it (and the
            // client certificate behind it): only this user's connections are carried on.
            let local = client.local_addr();
            if !local.is_ok_and(|local| peer::same_user(peer_address, local)) {
                let why = format!("a connection from {peer_address}, not this user's, was refused");
                self.shared
                    .record_failure(&self.servers[server].endpoint.target.upstream, why);
                continue;
            }
            let _ = client.set_nodelay(true);
            let target = Arc::clone(&self.servers[server].endpoint.target);
            match connect(&self.shared, &target, 0) {
                Ok((up, tried)) => {
                    match Conn::new(client, up, tried, target, server, &self.shared.settings) {
                        Ok(conn) => self.open(conn),
                        Err(why) => self.unreachable(server, why),
                    }
                }
                Err(why) => {
                    // Unreachable before libmemcached's connection closes, so that its next
                    // call already fails at once. (Dropping `client` closes it.)
                    self.unreachable(server, why);
                    drop(client);
                }
            }
        }
    }

    fn open(&mut self, mut conn: Conn) {
        let id = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let both = Interest::READABLE | Interest::WRITABLE;
        let registry = self.poll.registry();
        let registered = registry
            .register(&mut conn.client, Token(CONNECTIONS + 2 * id), both)
            .and_then(|()| {
                registry.register(&mut conn.server, Token(CONNECTIONS + 2 * id + 1), both)
            });
        if registered.is_err() {
            deregister(registry, &mut conn);
            self.free.push(id);
            return;
        }
        self.conns[id] = Some(conn);
    }

    fn pump(&mut self, id: usize, side: Side, scratch: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let closed = match conn.pump(side, scratch) {
            Ok(()) => {
                if conn.take_answered() {
                    self.shared.clear_failure(&conn.target.upstream);
                }
                return;
            }
            Err(closed) => closed,
        };
        if let Closed::Unreachable(_) = &closed {
            if self.try_next_address(id) {
                return;
            }
        }
        let mut conn = self.conns[id].take().expect("the connection is open");
        deregister(self.poll.registry(), &mut conn);
        self.free.push(id);
        match closed {
            Closed::ByClient => {}
            Closed::Stalled => self.start_probe(conn.listener),
            Closed::Failed(why) => self.shared.record_failure(&conn.target.upstream, why),
            Closed::Unreachable(why) => self.unreachable(conn.listener, why),
            Closed::ByServer(why) => {
                self.shared.record_failure(&conn.target.upstream, why);
                // Gone, or only done with this connection: a probe tells, and calls wait for
                // it (libmemcached would have learnt it by connecting again).
                let entry = &self.servers[conn.listener];
                let _ = entry.endpoint.reachability.compare_exchange(
                    REACHABLE,
                    CHECKING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                self.start_probe(conn.listener);
            }
        }
    }

    /// Connects a connection whose server did not answer at one address to its next one, as
    /// libmemcached tries each address in turn; whether there was one.
    fn try_next_address(&mut self, id: usize) -> bool {
        let conn = self.conns[id].as_mut().expect("the connection is open");
        let Some(from) = conn.next_address() else {
            return false;
        };
        let Ok((mut server, tried)) = connect(&self.shared, &conn.target, from) else {
            return false;
        };
        let registry = self.poll.registry();
        let _ = registry.deregister(&mut conn.server);
        let both = Interest::READABLE | Interest::WRITABLE;
        if registry
            .register(&mut server, Token(CONNECTIONS + 2 * id + 1), both)
            .is_err()
        {
            return false;
        }
        conn.reconnect(server, tried);
        true
    }

    /// The server could not be reached: libmemcached's connections to it fail until a probe
    /// reaches it.
    fn unreachable(&mut self, server: usize, why: String) {
        let entry = &mut self.servers[server];
        self.shared
            .record_failure(&entry.endpoint.target.upstream, why);
        entry
            .endpoint
            .reachability
            .store(UNREACHABLE, Ordering::Release);
        if entry.probe.is_none() {
            entry
                .next_probe
                .get_or_insert_with(|| Instant::now() + PROBE_EVERY);
        }
        self.checked();
    }

    fn start_probe(&mut self, server: usize) {
        let entry = &mut self.servers[server];
        entry.next_probe = None;
        if entry.probe.is_some() {
            return;
        }
        match connect(&self.shared, &entry.endpoint.target, 0) {
            Ok((mut stream, _)) => {
                let token = Token(PROBES + server);
                if self
                    .poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                    .is_ok()
                {
                    entry.probe = Some(Probe {
                        stream,
                        started: Instant::now(),
                        established: None,
                    });
                    return;
                }
                entry.next_probe = Some(Instant::now() + PROBE_EVERY);
            }
            Err(why) => self.unreachable(server, why),
        }
    }

    fn probe_answered(&mut self, server: usize) {
        let Some(probe) = &mut self.servers[server].probe else {
            return;
        };
        let error = match probe.stream.take_error() {
            Ok(Some(error)) | Err(error) => error,
            // Established: a server sends nothing unasked, so anything read is its end.
            Ok(None) if probe.established.is_some() => {
                match io::Read::read(&mut probe.stream, &mut [0; 1]) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                    Ok(_) => io::Error::new(io::ErrorKind::ConnectionReset, "closed at once"),
                    Err(error) => error,
                }
            }
            Ok(None) => match probe.stream.peer_addr() {
                Ok(_) => {
                    probe.established = Some(Instant::now());
                    return;
                }
                Err(error) if error.kind() == io::ErrorKind::NotConnected => return,
                Err(error) => error,
            },
        };
        self.end_probe(server, Err(format!("cannot connect: {error}")));
    }

    fn end_probe(&mut self, server: usize, outcome: Result<(), String>) {
        if let Some(mut probe) = self.servers[server].probe.take() {
            let _ = self.poll.registry().deregister(&mut probe.stream);
        }
        match outcome {
            Ok(()) => {
                self.servers[server]
                    .endpoint
                    .reachability
                    .store(REACHABLE, Ordering::Release);
                self.checked();
            }
            Err(why) => self.unreachable(server, why),
        }
    }

    /// Wakes the calls waiting for a check (`Relay::await_check`).
    fn checked(&self) {
        let (lock_, signal) = &self.shared.checked;
        drop(lock(lock_));
        signal.notify_all();
    }

    fn next_timer(&self) -> Option<Instant> {
        self.servers
            .iter()
            .filter_map(|s| match &s.probe {
                Some(probe) => Some(probe.due()),
                None => s.next_probe,
            })
            .min()
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        for server in 0..self.servers.len() {
            let entry = &self.servers[server];
            match &entry.probe {
                Some(probe) if now >= probe.due() => {
                    let outcome = match probe.established {
                        Some(_) => Ok(()),
                        None => Err("cannot connect: no answer within 1 s".into()),
                    };
                    self.end_probe(server, outcome);
                }
                None if entry.next_probe.is_some_and(|at| now >= at) => self.start_probe(server),
                _ => {}
            }
        }
    }
}

fn deregister(registry: &Registry, conn: &mut Conn) {
    let _ = registry.deregister(&mut conn.client);
    let _ = registry.deregister(&mut conn.server);
}

/// Starts connecting to the first of the server's addresses, from `from`, that takes a
/// connection attempt: the stream, and the address's position. The addresses were looked up on
/// a caller's thread (see `Target`).
///
/// An address that is one of the relay's own listeners is not a server: where nothing listens
/// at a server's port, the system may give that port to a listener of the relay, which would
/// then carry the server's connections to itself, or to another server, over and over.
fn connect(shared: &Shared, target: &Target, from: usize) -> Result<(TcpStream, usize), String> {
    let addresses = target.addresses()?;
    let mut why = String::from("the host has no address");
    for (at, address) in addresses.iter().enumerate().skip(from) {
        if shared.is_own_listener(address) {
            why = format!("nothing but the shield's own relay listens at {address}");
            continue;
        }
        match start_connecting(*address) {
            Ok(stream) => return Ok((stream, at)),
            Err(error) => why = format!("cannot connect to {address}: {error}"),
        }
    }
    Err(why)
}

fn start_connecting(address: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
