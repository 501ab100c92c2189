//! [`FaultProxy`]: a loopback TCP proxy in front of a real memcached that misbehaves on demand,
//! for tests of what a client does on a server's worst day.
//!
//! The relay and the fault in force live here; how the rewriting faults rewrite a reply stream
//! is in `rewrite.rs`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod rewrite;

use rewrite::{Framer, Random};

use super::process::{release_port, unused_port};

/// How long the proxy waits to connect to its upstream server for each client connection.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(2);

/// The length of the line [`Fault::LongLine`] sends: far beyond any buffer libmemcached reads
/// reply lines into (350 bytes for replies to gets, 1 KiB for the others).
pub const LONG_LINE_LEN: usize = 64 * 1024;

/// What a [`FaultProxy`] does to the traffic between a client and its server. A fault applies
/// to whatever the proxy reads while it is set: changing it affects open connections at once.
///
/// The garbage faults never produce a reply line that libmemcached 1.1.4 takes for success
/// (`END`, `OK`, a number...), since some of those make it abort the process: garbage lines start
/// with a lowercase letter and binary garbage never with the response magic byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fault {
    /// Carries everything as it is.
    #[default]
    Pass,
    /// Holds each piece of a reply this long before passing it on (less if the fault changes
    /// meanwhile).
    Delay(Duration),
    /// Accepts and reads requests but never passes them on, so nothing is ever answered (and
    /// nothing happens on the server).
    Blackhole,
    /// Resets the client's connection (TCP RST) when its next request arrives, which is not
    /// passed on.
    Reset,
    /// Passes on half of the next piece of a reply, then closes the connection. The request
    /// did reach the server.
    Truncate,
    /// Passes on replies one byte per interval.
    Drip(Duration),
    /// Replaces each reply with one line of 32 to 512 random bytes (at least as many as the
    /// reply had; seeded by the connection's number, so runs repeat), ended by `\r\n`.
    Garbage,
    /// Makes each value reply name another key of the same length: the last byte of the key
    /// is changed (its lowest bit flipped, so keys ending in `0`/`1`, `2`/`3`... trade places), in
    /// ASCII `VALUE` lines and in binary GETK/GETKQ responses. Other replies pass as they are.
    WrongKey,
    /// Changes the length in each ASCII `VALUE` line and binary get response header by this
    /// many bytes (positive: longer than the data that follows; negative: shorter), leaving
    /// the data as it is. A binary body is never announced shorter than its extras and key.
    /// Other replies pass as they are.
    LyingLength(i32),
    /// Replaces each reply with a line of [`LONG_LINE_LEN`] bytes (`x`), then `\r\n`.
    LongLine,
    /// Replaces each reply with these bytes: another service's answer (`HTTP/1.1 400 Bad
    /// Request`), a `SERVER_ERROR` line, a hand-made binary packet. Unlike the faults above,
    /// nothing stops these from being replies that make libmemcached 1.1.4 abort the process
    /// (see the guide's list of [what the crate trusts its servers for][trusts]).
    ///
    /// [trusts]: crate::guide::reliability#what-the-crate-trusts-its-servers-for
    Reply(&'static [u8]),
    /// Replaces the next piece of a reply with these bytes, then passes everything on as
    /// [`Fault::Pass`]: one answer that differs from what the server did (a `NOT_FOUND` for a
    /// counter that exists, as if another client had deleted it in between).
    ReplyOnce(&'static [u8]),
    /// Replaces each answer to a write, counter or delete with this malformed answer: in
    /// ASCII the lines `STORED`, `NOT_STORED`, `EXISTS`, `NOT_FOUND`, `DELETED`, `TOUCHED` and
    /// a counter's number; in binary the responses to SET, ADD, REPLACE, APPEND, PREPEND,
    /// DELETE, INCREMENT, DECREMENT and TOUCH and their quiet forms. The request did reach the
    /// server: only its answer changes. Other replies (values, `END`, version, stats...) pass
    /// as they are.
    ///
    /// An ASCII storage command answered with a value is one of the replies that make
    /// libmemcached 1.1.4 abort the process: clients that store through this fault in ASCII
    /// need the shield.
    BadWriteAnswer(BadAnswer),
}

/// The malformed answer [`Fault::BadWriteAnswer`] puts in place of a write's: a reply to a get,
/// as a server or proxy out of step would send, or the start of one whose length cannot be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadAnswer {
    /// A value, as the answer to a get: ASCII `VALUE k 0 1`, `x`, `END`; a binary GET response
    /// (flags and the value `x`) that keeps the answer's opaque and CAS, so that only its
    /// opcode tells it from an answer to the write.
    Value,
    /// A value under a key that no request named: ASCII `VALUE other 0 1`, `x`, `END`; a
    /// binary GETK response for the key `other`, with the answer's opaque.
    OtherKey,
    /// The start of a value of 2^32 bytes, and nothing more: ASCII `VALUE k 0 4294967296`; a
    /// binary GET response announcing a body of `u32::MAX` bytes, of which only the flags and
    /// one byte follow. A client that believes it allocates gigabytes and waits for them.
    HugeLength,
    /// A value of length -1: ASCII `VALUE k 0 -1`; a binary GETK response whose body is one
    /// byte shorter than its flags and key `other` (which are sent whole), so that the value's
    /// length, counted in 32 bits, wraps around to `u32::MAX`.
    NegativeLength,
}

/// A loopback TCP proxy in front of a memcached server, whose [`Fault`] can be switched while
/// connections are open. Point a client at [`FaultProxy::spec`] instead of the server.
///
/// Each client connection gets its own connection to the server and two threads (std only).
/// Dropping the proxy closes every connection and joins every thread.
///
/// ```
/// use std::time::Duration;
/// use libmemcached::testing::{Fault, FaultProxy, Memcached};
/// use libmemcached::{Behavior, Client};
///
/// let server = Memcached::start()?;
/// let proxy = FaultProxy::start(server.spec())?;
/// let mc = Client::builder()
///     .servers([proxy.spec()])
///     .behavior(Behavior::PollTimeout(Duration::from_millis(200)))
///     .build()?;
/// mc.set("k", "v", 0)?;
///
/// proxy.set_fault(Fault::Blackhole);
/// assert!(mc.get::<String>("k").unwrap_err().is_timeout());
///
/// proxy.set_fault(Fault::Pass);
/// assert_eq!(mc.get::<String>("k")?.as_deref(), Some("v"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    /// Notified when the fault changes or the proxy stops.
    changed: Condvar,
    accepted: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    fault: Fault,
    /// Bumped on every change of fault, so that waits end early.
    generation: u64,
    stopping: bool,
    connections: Vec<Connection>,
}

/// One client connection: handles to shut both sides down, and the threads pumping them.
#[derive(Debug)]
struct Connection {
    id: u64,
    /// `None` once reset (the handle must close for the reset to happen).
    client: Option<TcpStream>,
    upstream: TcpStream,
    threads: Vec<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (a memcached's
    /// `host:port`, such as [`Memcached::spec`](super::Memcached::spec)), passing traffic as it
    /// is until told otherwise.
    pub fn start(upstream: impl ToSocketAddrs) -> io::Result<FaultProxy> {
        let upstream = upstream
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no upstream address"))?;
        let listener = TcpListener::bind(("127.0.0.1", unused_port()?))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::default(),
            changed: Condvar::new(),
            accepted: AtomicUsize::new(0),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("fault-proxy-{}", addr.port()))
                .spawn(move || accept(&shared, &listener))?
        };
        Ok(FaultProxy {
            shared,
            addr,
            acceptor: Some(acceptor),
        })
    }

    /// The spec a client connects to: `127.0.0.1:PORT`.
    pub fn spec(&self) -> String {
        self.addr.to_string()
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The server behind the proxy.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Switches to `fault`, for open connections too.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.set(fault);
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        self.shared.lock().fault
    }

    /// How many client connections the proxy has accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        // Wake the acceptor, which sees `stopping` and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let connections = std::mem::take(&mut self.shared.lock().connections);
        for connection in &connections {
            if let Some(client) = &connection.client {
                let _ = client.shutdown(Shutdown::Both);
            }
            let _ = connection.upstream.shutdown(Shutdown::Both);
        }
        for connection in connections {
            for thread in connection.threads {
                let _ = thread.join();
            }
        }
        release_port(self.addr.port());
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fault(&self) -> Fault {
        self.lock().fault
    }

    /// Switches to `fault`, waking whatever waits on the fault in force.
    fn set(&self, fault: Fault) {
        let mut state = self.lock();
        state.fault = fault;
        state.generation += 1;
        drop(state);
        self.changed.notify_all();
    }

    /// Waits `duration`, or less if the fault changes or the proxy stops first. Returns `false`
    /// if the proxy is stopping.
    fn pause(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut state = self.lock();
        let generation = state.generation;
        loop {
            if state.stopping {
                return false;
            }
            let now = Instant::now();
            if state.generation != generation || now >= deadline {
                return true;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Accepts client connections until the proxy stops, each with its own upstream connection
/// and two pump threads.
fn accept(shared: &Arc<Shared>, listener: &TcpListener) {
    for (id, client) in (1u64..).zip(listener.incoming()) {
        if shared.lock().stopping {
            return;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let Ok(upstream) = TcpStream::connect_timeout(&shared.upstream, UPSTREAM_CONNECT) else {
            // The server is down: the client sees its connection close.
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let _ = spawn_pumps(shared, client, upstream, id);
    }
}

fn spawn_pumps(
    shared: &Arc<Shared>,
    client: TcpStream,
    upstream: TcpStream,
    id: u64,
) -> io::Result<()> {
    {
        let mut state = shared.lock();
        // Forget connections whose threads are done, so a long test does not pile them up.
        state
            .connections
            .retain(|c| c.threads.is_empty() || !c.threads.iter().all(JoinHandle::is_finished));
        state.connections.push(Connection {
            id,
            client: Some(client.try_clone()?),
            upstream: upstream.try_clone()?,
            threads: Vec::new(),
        });
    }
    let resetting = Arc::new(AtomicBool::new(false));
    let requests = {
        let (shared, resetting) = (Arc::clone(shared), Arc::clone(&resetting));
        let (client, upstream) = (client.try_clone()?, upstream.try_clone()?);
        thread::Builder::new()
            .name("fault-proxy-requests".into())
            .spawn(move || pump_requests(&shared, id, client, upstream, &resetting))?
    };
    let replies = {
        let shared = Arc::clone(shared);
        thread::Builder::new()
            .name("fault-proxy-replies".into())
            .spawn(move || pump_replies(&shared, client, upstream, &resetting, id))?
    };
    if let Some(connection) = shared.lock().connections.iter_mut().find(|c| c.id == id) {
        connection.threads = vec![requests, replies];
    }
    Ok(())
}

/// Client to server: requests pass on, except under [`Fault::Blackhole`] (read and dropped)
/// and [`Fault::Reset`].
fn pump_requests(
    shared: &Shared,
    id: u64,
    mut client: TcpStream,
    mut upstream: TcpStream,
    resetting: &AtomicBool,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        // Wait for a request without taking it: a reset must find it unread.
        match client.peek(&mut buffer[..1]) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        match shared.fault() {
            Fault::Reset => {
                reset(shared, id, client, &upstream, resetting);
                return;
            }
            Fault::Blackhole => {
                if matches!(client.read(&mut buffer), Ok(0) | Err(_)) {
                    break;
                }
            }
            _ => match client.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if upstream.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = upstream.shutdown(Shutdown::Both);
}

/// Closes the client's connection with a request unread, which makes Linux answer with a TCP
/// RST instead of a FIN. Every handle to the socket must close for that: the pumps' and the
/// one kept to stop the proxy.
fn reset(
    shared: &Shared,
    id: u64,
    client: TcpStream,
    upstream: &TcpStream,
    resetting: &AtomicBool,
) {
    resetting.store(true, Ordering::SeqCst);
    if let Some(connection) = shared.lock().connections.iter_mut().find(|c| c.id == id) {
        connection.client = None;
    }
    // The reply pump sees the server's side close and drops its handle without a FIN.
    let _ = upstream.shutdown(Shutdown::Both);
    drop(client);
}

/// Server to client: replies pass on as the fault in force says.
fn pump_replies(
    shared: &Shared,
    mut client: TcpStream,
    mut upstream: TcpStream,
    resetting: &AtomicBool,
    seed: u64,
) {
    let mut buffer = vec![0; 64 * 1024];
    let mut random = Random::new(seed);
    let mut framer = Framer::default();
    let mut framed_fault = Fault::Pass;
    let mut out = Vec::new();
    loop {
        let n = match upstream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        let fault = shared.fault();
        if fault != framed_fault {
            framer = Framer::default();
            framed_fault = fault;
        }
        let sent = match fault {
            Fault::Pass | Fault::Reset => client.write_all(chunk).is_ok(),
            Fault::Delay(delay) => shared.pause(delay) && client.write_all(chunk).is_ok(),
            Fault::Blackhole => true,
            Fault::Truncate => {
                let _ = client.write_all(&chunk[..n / 2]);
                false
            }
            Fault::Drip(interval) => drip(shared, &mut client, chunk, interval),
            Fault::Garbage => client.write_all(&random.garbage(n)).is_ok(),
            Fault::WrongKey | Fault::LyingLength(_) | Fault::BadWriteAnswer(_) => {
                out.clear();
                framer.feed(chunk, fault, &mut out);
                client.write_all(&out).is_ok()
            }
            Fault::Reply(bytes) => client.write_all(bytes).is_ok(),
            Fault::ReplyOnce(bytes) => {
                // One reply only: the next ones pass.
                shared.set(Fault::Pass);
                client.write_all(bytes).is_ok()
            }
            Fault::LongLine => {
                let mut line = vec![b'x'; LONG_LINE_LEN];
                line.extend_from_slice(b"\r\n");
                client.write_all(&line).is_ok()
            }
        };
        if !sent {
            break;
        }
    }
    if !resetting.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Both);
    }
    let _ = upstream.shutdown(Shutdown::Both);
}

/// Writes `chunk` one byte per `interval`, all at once if the fault changes meanwhile.
fn drip(shared: &Shared, client: &mut TcpStream, chunk: &[u8], interval: Duration) -> bool {
    for (i, byte) in chunk.iter().enumerate() {
        if i > 0 {
            if !matches!(shared.fault(), Fault::Drip(_)) {
                return client.write_all(&chunk[i..]).is_ok();
            }
            if !shared.pause(interval) {
                return false;
            }
        }
        if client.write_all(std::slice::from_ref(byte)).is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_is_a_tcp_reset() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = FaultProxy::start(upstream.local_addr().unwrap()).unwrap();
        proxy.set_fault(Fault::Reset);
        let mut client = TcpStream::connect(proxy.spec()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.write_all(b"get k\r\n").unwrap();
        let error = client.read(&mut [0; 16]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(proxy.connections(), 1);
    }
}
