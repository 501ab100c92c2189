//! Key checks through the client: any key bytes, through any key operation, give
//! `Err(InvalidKey)` with the reason memcached's rules give (checked here byte by byte, against
//! the crate's eight-bytes-at-a-time check), or else what the operation gives for a good key
//! on a server that is not there: a connection error (or, over UDP, `NotSupported` for what
//! needs a reply and fire-and-forget success for writes). Never a panic or an abort.

use std::net::TcpListener;
use std::time::Duration;

use libmemcached::{Behavior, Client, Error, InvalidKeyReason, MAX_KEY_LEN, ReturnCode};

use super::input::Input;

/// The namespace of the clients that have one.
const NAMESPACE: &[u8] = b"ns:";

/// A client of each kind the key rules distinguish, for servers that are not there.
pub struct Clients {
    clients: Vec<(Kind, Client)>,
}

#[derive(Debug, Clone, Copy)]
struct Kind {
    binary: bool,
    udp: bool,
    namespace: bool,
}

impl Clients {
    /// Clients for a loopback port nothing listens on (and its UDP twin): ASCII and binary, each
    /// with and without a namespace, and UDP.
    pub fn new() -> Clients {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let kinds = [
            (false, false, false),
            (true, false, false),
            (false, false, true),
            (true, false, true),
            (false, true, false),
        ];
        let clients = kinds
            .into_iter()
            .map(|(binary, udp, namespace)| {
                let spec = match udp {
                    true => format!("udp:127.0.0.1:{port}"),
                    false => format!("127.0.0.1:{port}"),
                };
                let mut builder = Client::builder()
                    .servers([spec])
                    .binary(binary)
                    .behavior(Behavior::ConnectTimeout(Duration::from_millis(1)))
                    .behavior(Behavior::PollTimeout(Duration::from_millis(10)));
                if namespace {
                    builder = builder.namespace(NAMESPACE);
                }
                let kind = Kind {
                    binary,
                    udp,
                    namespace,
                };
                (kind, builder.build().expect("a client"))
            })
            .collect();
        Clients { clients }
    }
}

impl Default for Clients {
    fn default() -> Self {
        Self::new()
    }
}

/// What memcached's rules say of `key` (the full key, prefix included), computed plainly.
fn expected(key: &[u8], kind: Kind) -> Option<InvalidKeyReason> {
    let namespace_len = if kind.namespace { NAMESPACE.len() } else { 0 };
    let ascii = !kind.binary || kind.udp;
    if key.is_empty() {
        Some(InvalidKeyReason::Empty)
    } else if key.len() + namespace_len > MAX_KEY_LEN {
        Some(InvalidKeyReason::TooLong {
            len: key.len() + namespace_len,
            max: MAX_KEY_LEN,
        })
    } else if ascii {
        key.iter()
            .position(|&b| b <= b' ' || b == 0x7f)
            .map(|position| InvalidKeyReason::ForbiddenByte {
                byte: key[position],
                position,
            })
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Get,
    Gets,
    Set,
    Add,
    Delete,
    Touch,
    Incr,
    GetMulti,
    SetMulti,
    DeleteMulti,
}

const OPS: [Op; 10] = [
    Op::Get,
    Op::Gets,
    Op::Set,
    Op::Add,
    Op::Delete,
    Op::Touch,
    Op::Incr,
    Op::GetMulti,
    Op::SetMulti,
    Op::DeleteMulti,
];

/// Checks one input: a client, a prefix (often none), an operation, a second key for the
/// multi-key ones, and the key.
pub fn check(data: &[u8], clients: &Clients) {
    let mut input = Input::new(data);
    let (kind, client) = &clients.clients[input.choose(clients.clients.len())];
    let prefix = match input.choose(4) {
        0 => input.bytes(32),
        _ => b"",
    };
    let op = OPS[input.choose(OPS.len())];
    let other: &[u8] = match input.choose(3) {
        0 => b"good",
        1 => input.bytes(255),
        _ => b"",
    };
    let key = input.rest();
    let keys: Vec<&[u8]> = match op {
        Op::GetMulti | Op::SetMulti | Op::DeleteMulti if !other.is_empty() => vec![other, key],
        _ => vec![key],
    };

    // The first key that breaks a rule is the one refused.
    let full = |k: &[u8]| [prefix, k].concat();
    let refused = keys
        .iter()
        .map(|k| full(k))
        .find_map(|k| expected(&k, *kind).map(|reason| (k, reason)));

    let view = client.prefixed(prefix);
    let result: Result<(), Error> = match op {
        Op::Get => view.get::<Vec<u8>>(key).map(drop),
        Op::Gets => view.gets::<Vec<u8>>(key).map(drop),
        Op::Set => view.set(key, "v", 0),
        Op::Add => view.add(key, "v", 0).map(drop),
        Op::Delete => view.delete(key).map(drop),
        Op::Touch => view.touch(key, 0).map(drop),
        Op::Incr => view.incr(key, 1).map(drop),
        Op::GetMulti => view.get_multi::<_, Vec<u8>>(keys.iter().copied()).map(drop),
        Op::SetMulti => view.set_multi(keys.iter().map(|k| (*k, "v")), 0).map(drop),
        Op::DeleteMulti => view.delete_multi(keys.iter().copied()).map(drop),
    };

    match (refused, result) {
        (Some((bad, reason)), Err(Error::InvalidKey { key, reason: got })) => {
            assert_eq!(got, reason, "{kind:?} {op:?} {bad:?}");
            assert_eq!(key, bad, "{kind:?} {op:?}: the error names the key sent");
        }
        (Some((bad, reason)), other) => {
            panic!("{kind:?} {op:?} {bad:?}: expected {reason:?}, got {other:?}")
        }
        (None, Err(Error::InvalidKey { key, reason })) => {
            panic!("{kind:?} {op:?}: a good key {key:?} refused: {reason:?}")
        }
        (None, result) if kind.udp => {
            let needs_reply =
                matches!(op, Op::Get | Op::Gets | Op::Touch | Op::Incr | Op::GetMulti);
            match result {
                Err(e) if needs_reply => {
                    assert_eq!(e.code(), Some(ReturnCode::NotSupported), "{op:?} {e}")
                }
                Err(e) => assert!(e.is_connection(), "UDP {op:?}: {e}"),
                Ok(()) => assert!(!needs_reply, "UDP {op:?} answered"),
            }
        }
        (None, Err(e)) => assert!(e.is_connection(), "{kind:?} {op:?}: {e}"),
        (None, Ok(())) => panic!("{kind:?} {op:?}: success with no server"),
    }
}
