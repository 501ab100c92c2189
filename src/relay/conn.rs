//! One relayed connection: libmemcached's socket, the server's, and the shield between them.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

use std::sync::Arc;

use super::{Settings, Target};
use crate::shield::{Protocol, Shield};

/// How much is read at once.
pub(super) const CHUNK: usize = 64 * 1024;
/// A side stops being read while this much waits to be written to the other.
const HIGH_WATER: usize = 1 << 20;

/// Why a connection was closed.
pub(super) enum Closed {
    /// libmemcached closed its side.
    ByClient,
    /// The server could not be reached (or had not answered the connection when libmemcached
    /// gave up): libmemcached's next connections fail until the relay reaches it again.
    Unreachable(String),
    /// The server closed its side: it may be gone, which the relay checks.
    ByServer(String),
    /// libmemcached closed its side before the server took the connection.
    Stalled,
    /// What else went wrong, recorded for the server's next error.
    Failed(String),
}

type Step<T = ()> = Result<T, Closed>;

fn failed(why: impl Into<String>) -> Closed {
    Closed::Failed(why.into())
}

pub(super) struct Conn {
    pub client: TcpStream,
    pub server: TcpStream,
    /// The server, and which of its addresses `server` is connected to.
    pub target: Arc<Target>,
    address: usize,
    /// The relay listener the connection came through.
    pub listener: usize,
    /// The connection to the server is established.
    connected: bool,
    #[cfg(feature = "tls")]
    tls: Option<rustls::ClientConnection>,
    /// Made when the first request shows the protocol.
    shield: Option<Shield>,
    max_value: usize,
    /// Bytes read that the shield has not approved yet (an incomplete request or reply).
    requests: Vec<u8>,
    replies: Vec<u8>,
    /// Approved bytes the other side has not taken yet.
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    /// A reply was passed on since [`Conn::take_answered`] last asked.
    answered: bool,
    /// A side may have bytes to read: it had an event, and no read since came back short.
    client_readable: bool,
    server_readable: bool,
}

/// Which socket of a connection an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Client,
    Server,
}

impl Conn {
    pub(super) fn new(
        client: TcpStream,
        server: TcpStream,
        address: usize,
        target: Arc<Target>,
        listener: usize,
        settings: &Settings,
    ) -> Result<Conn, String> {
        #[cfg(feature = "tls")]
        let tls = match &settings.tls {
            Some(connector) => Some(connector.connect(&target.upstream.host)?),
            None => None,
        };
        Ok(Conn {
            client,
            server,
            target,
            address,
            listener,
            connected: false,
            #[cfg(feature = "tls")]
            tls,
            shield: None,
            max_value: settings.max_value,
            requests: Vec::new(),
            replies: Vec::new(),
            to_server: Vec::new(),
            to_client: Vec::new(),
            answered: false,
            client_readable: true,
            server_readable: false,
        })
    }

    /// The next address to try, if the connection to this one did not complete.
    pub(super) fn next_address(&self) -> Option<usize> {
        let count = self.target.addresses().map_or(0, |a| a.len());
        (!self.connected && self.address + 1 < count).then_some(self.address + 1)
    }

    /// Goes on with a new connection to the server (at its address `address`).
    pub(super) fn reconnect(&mut self, server: TcpStream, address: usize) {
        self.server = server;
        self.address = address;
    }

    /// Whether a reply was passed on since the last call.
    pub(super) fn take_answered(&mut self) -> bool {
        std::mem::take(&mut self.answered)
    }

    /// Moves everything that can move without blocking; `Err` when the connection is over.
    pub(super) fn pump(&mut self, side: Side, scratch: &mut [u8]) -> Step {
        match side {
            Side::Client => self.client_readable = true,
            Side::Server => self.server_readable = true,
        }
        loop {
            let mut progress = false;
            if !self.connected && side == Side::Server {
                self.connected = self.check_connected()?;
                progress |= self.connected;
            }
            if self.client_readable && self.to_server.len() < HIGH_WATER {
                progress |= match self.read_requests(scratch) {
                    // libmemcached gave up (a timeout, most likely) before the server took
                    // the connection: the relay checks whether it can be reached.
                    Err(Closed::ByClient)
                        if !self.connected
                            && !self.shield.as_ref().is_some_and(Shield::quit_sent) =>
                    {
                        return Err(Closed::Stalled);
                    }
                    other => other?,
                };
            }
            if self.connected {
                progress |= self.send_to_server()?;
                if self.server_readable && self.to_client.len() < HIGH_WATER {
                    progress |= self.read_replies(scratch)?;
                }
            }
            progress |=
                flush(&mut self.client, &mut self.to_client).map_err(|_| Closed::ByClient)?;
            if !progress {
                return Ok(());
            }
        }
    }

    /// Whether the connection to the server has completed.
    fn check_connected(&mut self) -> Step<bool> {
        if let Ok(Some(error)) | Err(error) = self.server.take_error() {
            return Err(Closed::Unreachable(format!("cannot connect: {error}")));
        }
        match self.server.peer_addr() {
            Ok(_) => Ok(true),
            Err(error)
                if error.kind() == io::ErrorKind::NotConnected
                    || error.raw_os_error() == Some(libc::EINPROGRESS) =>
            {
                Ok(false)
            }
            Err(error) => Err(Closed::Unreachable(format!("cannot connect: {error}"))),
        }
    }

    /// Reads what libmemcached sent and queues the complete requests for the server.
    fn read_requests(&mut self, scratch: &mut [u8]) -> Step<bool> {
        let n = match read(&mut self.client, scratch) {
            Ok(Some(0)) | Err(_) => return Err(Closed::ByClient),
            Ok(Some(n)) => n,
            Ok(None) => {
                self.client_readable = false;
                return Ok(false);
            }
        };
        // Edge-triggered: a read that did not fill the buffer emptied the socket.
        self.client_readable = n == scratch.len();
        let max_value = self.max_value;
        let shield = self.shield.get_or_insert_with(|| {
            // libmemcached's binary requests start with the request magic; text never does.
            let protocol = if scratch[0] == 0x80 {
                Protocol::Binary
            } else {
                Protocol::Ascii
            };
            Shield::new(protocol, max_value)
        });
        // The common case reads whole requests: approve them where they were read.
        let held = !self.requests.is_empty();
        if held {
            self.requests.extend_from_slice(&scratch[..n]);
        }
        let input: &[u8] = if held { &self.requests } else { &scratch[..n] };
        let approved = shield.request(input).map_err(|violation| {
            failed(format!("a request the shield cannot follow: {violation}"))
        })?;
        let plain = self.connected && self.is_plain();
        if plain && self.to_server.is_empty() {
            write_through(&mut self.server, &input[..approved], &mut self.to_server)
                .map_err(|error| Closed::ByServer(format!("sending: {error}")))?;
        } else {
            self.to_server.extend_from_slice(&input[..approved]);
        }
        keep_unapproved(&mut self.requests, held, &scratch[..n], approved);
        Ok(true)
    }

    /// Whether the connection to the server is plain TCP (no TLS).
    fn is_plain(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_none();
        #[cfg(not(feature = "tls"))]
        true
    }

    /// Writes queued requests to the server (through TLS where it is on).
    fn send_to_server(&mut self) -> Step<bool> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            let mut progress = false;
            if !self.to_server.is_empty() {
                let taken = tls
                    .writer()
                    .write(&self.to_server)
                    .map_err(|error| failed(format!("TLS: {error}")))?;
                self.to_server.drain(..taken);
                progress |= taken > 0;
            }
            while tls.wants_write() {
                match tls.write_tls(&mut self.server) {
                    Ok(_) => progress = true,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(Closed::ByServer(format!("sending: {error}"))),
                }
            }
            return Ok(progress);
        }
        flush(&mut self.server, &mut self.to_server)
            .map_err(|error| Closed::ByServer(format!("sending: {error}")))
    }

    /// Reads the server's replies and queues what the shield approves for libmemcached.
    fn read_replies(&mut self, scratch: &mut [u8]) -> Step<bool> {
        let n = match self.read_server(scratch)? {
            Received::Handshake => return Ok(true),
            Received::Nothing => return Ok(false),
            Received::Data(0) => {
                if self.shield.as_ref().is_some_and(Shield::quit_sent) {
                    return Err(Closed::ByClient);
                }
                let owed = self.shield.as_ref().is_some_and(|s| !s.idle());
                return Err(Closed::ByServer(
                    if owed {
                        "the server closed the connection with replies owed"
                    } else {
                        "the server closed the connection"
                    }
                    .into(),
                ));
            }
            Received::Data(n) => n,
        };
        let Some(shield) = &mut self.shield else {
            return Err(failed(format!(
                "the server sent {n} bytes before any request"
            )));
        };
        let held = !self.replies.is_empty();
        if held {
            self.replies.extend_from_slice(&scratch[..n]);
        }
        let input: &[u8] = if held { &self.replies } else { &scratch[..n] };
        let approved = shield.reply(input).map_err(|violation| {
            failed(format!("the shield closed the connection: {violation}"))
        })?;
        self.answered |= approved > 0;
        if self.to_client.is_empty() {
            write_through(&mut self.client, &input[..approved], &mut self.to_client)
                .map_err(|_| Closed::ByClient)?;
        } else {
            self.to_client.extend_from_slice(&input[..approved]);
        }
        keep_unapproved(&mut self.replies, held, &scratch[..n], approved);
        Ok(true)
    }

    /// Reads from the server into `scratch`.
    fn read_server(&mut self, scratch: &mut [u8]) -> Step<Received> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            let mut handshake = false;
            loop {
                match tls.reader().read(scratch) {
                    Ok(n) => return Ok(Received::Data(n)),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                        return Ok(Received::Data(0));
                    }
                    Err(error) => return Err(failed(format!("TLS: {error}"))),
                }
                match tls.read_tls(&mut self.server) {
                    Ok(0) => return Ok(Received::Data(0)),
                    // TLS records with no data yet (the handshake): what they call for is
                    // written on the next round.
                    Ok(_) => handshake = true,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        self.server_readable = false;
                        return Ok(if handshake {
                            Received::Handshake
                        } else {
                            Received::Nothing
                        });
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(Closed::ByServer(format!("receiving: {error}"))),
                }
                if let Err(error) = tls.process_new_packets() {
                    // Send the alert that says why, if the socket takes it.
                    let _ = tls.write_tls(&mut self.server);
                    return Err(failed(super::tls::describe(&error)));
                }
            }
        }
        match read(&mut self.server, scratch) {
            Ok(Some(n)) => {
                self.server_readable = n == scratch.len();
                Ok(Received::Data(n))
            }
            Ok(None) => {
                self.server_readable = false;
                Ok(Received::Nothing)
            }
            Err(error) => Err(Closed::ByServer(format!("receiving: {error}"))),
        }
    }
}

/// What a read from the server gave.
enum Received {
    /// Bytes of replies (0: the server closed the connection).
    Data(usize),
    /// TLS records without data: the handshake goes on.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Handshake,
    Nothing,
}

/// One read: `Some(0)` at the end, `None` when nothing waits.
fn read(socket: &mut TcpStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match socket.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// Keeps what the shield did not approve for the next read: the end of what was `held` (which
/// held the bytes read, appended), or of the bytes just `read`.
fn keep_unapproved(held_bytes: &mut Vec<u8>, held: bool, read: &[u8], approved: usize) {
    if held {
        held_bytes.drain(..approved);
    } else {
        held_bytes.extend_from_slice(&read[approved..]);
    }
}

/// Writes `data` straight to the socket, keeping in `pending` (empty) what it does not take.
fn write_through(socket: &mut TcpStream, data: &[u8], pending: &mut Vec<u8>) -> io::Result<()> {
    let mut written = 0;
    while written < data.len() {
        match socket.write(&data[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    pending.extend_from_slice(&data[written..]);
    Ok(())
}

/// Writes what `pending` holds until the socket would block; whether anything was written.
fn flush(socket: &mut TcpStream, pending: &mut Vec<u8>) -> io::Result<bool> {
    let mut written = 0;
    while written < pending.len() {
        match socket.write(&pending[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    pending.drain(..written);
    Ok(written > 0)
}
