//! The fault matrix: every operation, in both protocols, through a [`FaultProxy`] in front of a
//! real memcached, under every [`Fault`]. Each cell must give the right answer or a clear error
//! of the right kind, within the poll timeout plus a margin; never a value that belongs to
//! another key, never a miss the server did not say, never `Ok` for a write that did not
//! happen; and once the fault clears, the same client answers correctly again. Multi-key calls
//! also run on three servers with one behind the faulty proxy: the failed server costs the call
//! at most one poll timeout, and the other servers' results arrive.
//!
//! Run with `--nocapture` to see the summary table.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use libmemcached::testing::{BadAnswer, Fault, FaultProxy, Memcached};
use libmemcached::{Behavior, Client, Error, Partial};

/// The client's poll timeout: what one wait for a server may cost.
const POLL: Duration = Duration::from_millis(500);
/// Allowance above the poll timeout for the machine (two cores shared with the server, the
/// proxies and other builds); under one poll timeout, so that a cell within the bound waited
/// once.
const MARGIN: Duration = Duration::from_millis(400);
/// Keys per multi-key call (on three servers: about two each).
const MULTI_KEYS: usize = 6;

/// Every fault, with a name for the table. Delays and drips come short (under the poll
/// timeout: the answer must arrive) and long (over it: a timeout).
fn faults() -> Vec<(&'static str, Fault)> {
    vec![
        ("pass", Fault::Pass),
        ("delay 50ms", Fault::Delay(Duration::from_millis(50))),
        ("delay 1s", Fault::Delay(Duration::from_secs(1))),
        ("blackhole", Fault::Blackhole),
        ("reset", Fault::Reset),
        ("truncate", Fault::Truncate),
        ("drip 2ms", Fault::Drip(Duration::from_millis(2))),
        ("drip 700ms", Fault::Drip(Duration::from_millis(700))),
        ("garbage", Fault::Garbage),
        ("wrong key", Fault::WrongKey),
        ("length +3", Fault::LyingLength(3)),
        ("length -3", Fault::LyingLength(-3)),
        ("long line", Fault::LongLine),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Gets,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Delete,
    Touch,
    Incr,
    Decr,
    GetMulti,
    GetMultiPartial,
    SetMulti,
    DeleteMulti,
    Stats,
    Version,
}

const OPS: [Op; 18] = [
    Op::Get,
    Op::Gets,
    Op::Set,
    Op::Add,
    Op::Replace,
    Op::Append,
    Op::Prepend,
    Op::Cas,
    Op::Delete,
    Op::Touch,
    Op::Incr,
    Op::Decr,
    Op::GetMulti,
    Op::GetMultiPartial,
    Op::SetMulti,
    Op::DeleteMulti,
    Op::Stats,
    Op::Version,
];

impl Op {
    /// Operations that go to several servers, run on three as well.
    fn spans_servers(self) -> bool {
        matches!(
            self,
            Op::GetMulti
                | Op::GetMultiPartial
                | Op::SetMulti
                | Op::DeleteMulti
                | Op::Stats
                | Op::Version
        )
    }

    fn reads_values(self) -> bool {
        matches!(
            self,
            Op::Get | Op::Gets | Op::GetMulti | Op::GetMultiPartial
        )
    }
}

/// Cells libmemcached 1.1.4 cannot survive: the process aborts inside it before the crate sees
/// anything. `trusted_replies_that_abort` runs each in a child process to show it still does.
fn aborts(binary: bool, op: Op, fault: Fault) -> Option<&'static str> {
    match (binary, op, fault) {
        (false, Op::Incr | Op::Decr, Fault::LongLine) => {
            Some("auto.cc:32: a reply line over 1 KiB to incr/decr is an unlogged fatal error")
        }
        _ => None,
    }
}

/// What a fault must produce for an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The right answer.
    Answer,
    /// An error of one of these kinds.
    Error(&'static [Kind]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Timeout,
    Connection,
    Protocol,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Timeout => "timeout",
            Kind::Connection => "connection",
            Kind::Protocol => "protocol",
        })
    }
}

fn expect(op: Op, fault: Fault) -> Expect {
    use Kind::*;
    let server_level = matches!(op, Op::Stats | Op::Version);
    match fault {
        // libmemcached reports a server that failed these with whatever it logged last.
        Fault::Blackhole
        | Fault::Reset
        | Fault::Truncate
        | Fault::Garbage
        | Fault::LongLine
        | Fault::Delay(_)
        | Fault::Drip(_)
            if server_level && expect(Op::Set, fault) != Expect::Answer =>
        {
            Expect::Error(&[Timeout, Connection, Protocol])
        }
        Fault::Pass => Expect::Answer,
        Fault::Delay(d) | Fault::Drip(d) if d < POLL => Expect::Answer,
        Fault::Delay(_) | Fault::Drip(_) | Fault::Blackhole => Expect::Error(&[Timeout]),
        Fault::Reset => Expect::Error(&[Connection]),
        Fault::Truncate => Expect::Error(&[Connection, Protocol]),
        Fault::Garbage | Fault::LongLine => Expect::Error(&[Protocol]),
        Fault::WrongKey | Fault::LyingLength(_) if op.reads_values() => {
            Expect::Error(&[Protocol, Timeout])
        }
        Fault::WrongKey | Fault::LyingLength(_) => Expect::Answer,
        _ => Expect::Answer,
    }
}

/// An error's kind, by the crate's predicates.
fn kind(error: &Error) -> Option<Kind> {
    if error.is_timeout() {
        Some(Kind::Timeout)
    } else if error.is_connection() {
        Some(Kind::Connection)
    } else if error.is_protocol() {
        Some(Kind::Protocol)
    } else {
        None
    }
}

/// How one call turned out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// The right answer.
    Right,
    /// An error of an expected kind.
    Failed(Kind),
    /// A value that is not the key's.
    WrongValue(String),
    /// A miss (or a key left out) that the server did not say.
    SilentMiss(String),
    /// `Ok` for a write that did not happen, or an answer that is not what happened.
    FalseOk(String),
    /// An error where the answer was due, or an error of the wrong kind.
    WrongError(String),
    /// In a cluster: a healthy server's key reported failed.
    Collateral(String),
    /// In a cluster: every key failed because a reply named a key that was not asked for
    /// (or not then), which cannot be traced to a server.
    Unattributed(String),
}

impl Verdict {
    fn is_bad(&self) -> bool {
        !matches!(
            self,
            Verdict::Right | Verdict::Failed(_) | Verdict::Unattributed(_)
        )
    }
}

/// One cell of the matrix.
#[derive(Debug)]
struct Cell {
    binary: bool,
    fault: &'static str,
    op: Op,
    cluster: bool,
    verdict: Verdict,
    expected: Expect,
    elapsed: Duration,
    /// Calls in `Pass` before the client answered correctly again (0: at once).
    recovery: Option<usize>,
}

impl Cell {
    fn slow(&self) -> bool {
        self.elapsed > POLL + MARGIN
    }

    /// Slow for a reason the guide documents (`guide/reliability.md`): a reply dripped under
    /// the poll timeout holds the call for as long as the server likes (libmemcached bounds
    /// each wait, not the call).
    fn documented_slow(&self, fault: Fault) -> bool {
        matches!(fault, Fault::Drip(d) if d < POLL) && self.verdict == Verdict::Right
    }

    fn problem(&self) -> Option<String> {
        if self.verdict.is_bad() {
            return Some(format!("{:?}", self.verdict));
        }
        let wanted = match (self.expected, &self.verdict) {
            (Expect::Answer, Verdict::Right) => true,
            (Expect::Error(kinds), Verdict::Failed(kind)) => kinds.contains(kind),
            // An answer where an error was allowed: the fault did not bite (checked true).
            (Expect::Error(_), Verdict::Right | Verdict::Unattributed(_)) => true,
            _ => false,
        };
        if !wanted {
            return Some(format!(
                "expected {:?}, got {:?}",
                self.expected, self.verdict
            ));
        }
        match self.recovery {
            None => Some("the client did not answer correctly again after the fault".into()),
            Some(_) => None,
        }
    }
}

/// Each key's own value, so that a value can never pass for another key's.
fn value_of(key: &str) -> String {
    format!("value of {key}")
}

fn faulty_client(specs: &[String], binary: bool) -> Client {
    Client::builder()
        .servers(specs)
        .binary(binary)
        .behavior(Behavior::PollTimeout(POLL))
        .behavior(Behavior::ConnectTimeout(POLL))
        .behavior(Behavior::RetryTimeout(Duration::ZERO))
        .build()
        .unwrap()
}

/// One group of cells: a protocol and a fault, every operation; a proxy and a client of its
/// own, against the shared server.
struct Group {
    binary: bool,
    fault: Fault,
    fault_name: &'static str,
    /// Talks to the server directly: sets things up and checks what happened.
    oracle: Client,
    /// One faulty proxy (single-server cells), or the faulty one of three (cluster cells).
    proxy: FaultProxy,
    client: Client,
    /// Three servers, the first behind `proxy`'s twin in the cluster.
    cluster: Option<(Vec<FaultProxy>, Client)>,
    tag: String,
    serial: usize,
}

impl Group {
    fn new(server: &str, binary: bool, fault_name: &'static str, fault: Fault) -> Group {
        let proxy = FaultProxy::start(server).unwrap();
        let client = faulty_client(&[proxy.spec()], binary);
        let proxies: Vec<FaultProxy> = (0..3).map(|_| FaultProxy::start(server).unwrap()).collect();
        let specs: Vec<String> = proxies.iter().map(FaultProxy::spec).collect();
        let cluster_client = faulty_client(&specs, binary);
        let group = Group {
            binary,
            fault,
            fault_name,
            oracle: Client::new([server]).unwrap(),
            proxy,
            client,
            cluster: Some((proxies, cluster_client)),
            tag: format!(
                "{}{}",
                if binary { 'b' } else { 'a' },
                fault_name.replace(' ', "")
            ),
            serial: 0,
        };
        // A binary client asks each server once whether it demands SASL, on its first miss or
        // counter: let that happen now, not in a cell.
        for mc in [&group.client, &group.cluster.as_ref().unwrap().1] {
            let miss: HashMap<String, String> = mc
                .get_multi((0..30).map(|i| format!("warm-up:{i}")))
                .unwrap();
            assert!(miss.is_empty());
            assert!(mc.incr(format!("warm-up:{}", group.tag), 1).is_err());
        }
        group
    }

    /// `n` fresh keys, ending in the digits 0.. so that [`Fault::WrongKey`] turns each into
    /// another of the same call.
    fn keys(&mut self, op: Op, n: usize, cluster: bool) -> Vec<String> {
        loop {
            self.serial += 1;
            let base = common::key(&format!("{}:{op:?}:{}", self.tag, self.serial));
            let keys: Vec<String> = (0..n).map(|i| format!("{base}:{i}")).collect();
            let Some((proxies, mc)) = self.cluster.as_ref().filter(|_| cluster) else {
                return keys;
            };
            // In the cluster, at least two keys on the faulty server and two on the others.
            let faulty = proxies[0].spec();
            let on_faulty = keys
                .iter()
                .filter(|k| mc.server_for_key(k).unwrap().to_string() == faulty)
                .count();
            if on_faulty >= 2 && n - on_faulty >= 2 {
                return keys;
            }
        }
    }

    fn run(&mut self, cluster: bool) -> Vec<Cell> {
        let mut cells = Vec::new();
        for op in OPS.into_iter().filter(|op| !cluster || op.spans_servers()) {
            if aborts(self.binary, op, self.fault).is_some() {
                continue;
            }
            let (verdict, elapsed) = self.call(op, cluster, self.fault);
            // The fault clears: the same client must answer correctly again.
            let mut recovery = None;
            for attempt in 0..5 {
                let (again, _) = self.call(op, cluster, Fault::Pass);
                if again == Verdict::Right {
                    recovery = Some(attempt);
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
            cells.push(Cell {
                binary: self.binary,
                fault: self.fault_name,
                op,
                cluster,
                verdict,
                expected: expect(op, self.fault),
                elapsed,
                recovery,
            });
        }
        cells
    }

    /// Sets up, runs `op` once under `fault` (timed), and judges the outcome against what the
    /// server holds afterwards.
    fn call(&mut self, op: Op, cluster: bool, fault: Fault) -> (Verdict, Duration) {
        let single = !cluster
            && !matches!(
                op,
                Op::GetMulti | Op::GetMultiPartial | Op::SetMulti | Op::DeleteMulti
            );
        let keys = self.keys(op, if single { 1 } else { MULTI_KEYS }, cluster);
        let key = keys[0].clone();
        let oracle = &self.oracle;
        // Set up through the oracle.
        match op {
            Op::Add | Op::SetMulti => {}
            Op::Incr | Op::Decr => oracle.set(&key, "10", 0).unwrap(),
            _ => {
                for k in &keys {
                    oracle.set(k, value_of(k), 0).unwrap();
                }
            }
        }
        let cas = match op {
            Op::Cas => Some(oracle.gets::<String>(&key).unwrap().unwrap().1),
            _ => None,
        };
        let (mc, faulty): (&Client, &FaultProxy) = match (&self.cluster, cluster) {
            (Some((proxies, mc)), true) => (mc, &proxies[0]),
            _ => (&self.client, &self.proxy),
        };
        let faulty_spec = faulty.spec();
        // Keys on the faulty server, in the cluster.
        let on_faulty: BTreeSet<String> = keys
            .iter()
            .filter(|k| !cluster || mc.server_for_key(k).unwrap().to_string() == faulty_spec)
            .cloned()
            .collect();
        let new = |k: &str| format!("new {}", value_of(k));

        faulty.set_fault(fault);
        let start = Instant::now();
        let outcome = match op {
            Op::Get => Outcome::Value(mc.get::<String>(&key)),
            Op::Gets => Outcome::Value(mc.gets::<String>(&key).map(|f| f.map(|(v, _)| v))),
            Op::Set => Outcome::Done(mc.set(&key, new(&key), 0).map(|()| true)),
            Op::Add => Outcome::Done(mc.add(&key, new(&key), 0)),
            Op::Replace => Outcome::Done(mc.replace(&key, new(&key), 0)),
            Op::Append => Outcome::Done(mc.append(&key, "+a")),
            Op::Prepend => Outcome::Done(mc.prepend(&key, "p+")),
            Op::Cas => Outcome::Done(mc.cas(&key, new(&key), cas.unwrap(), 0)),
            Op::Delete => Outcome::Done(mc.delete(&key)),
            Op::Touch => Outcome::Done(mc.touch(&key, 3600)),
            Op::Incr => Outcome::Counter(mc.incr(&key, 1)),
            Op::Decr => Outcome::Counter(mc.decr(&key, 1)),
            Op::GetMulti => Outcome::Map(mc.get_multi::<_, String>(keys.iter().cloned())),
            Op::GetMultiPartial => {
                Outcome::Partial(mc.get_multi_partial::<_, String>(keys.iter().cloned()))
            }
            Op::SetMulti => Outcome::Written(
                mc.set_multi_partial(keys.iter().map(|k| (k.clone(), new(k))), 0)
                    .map(Written::from),
            ),
            Op::DeleteMulti => Outcome::Written(
                mc.delete_multi_partial(keys.iter().cloned())
                    .map(Written::from),
            ),
            Op::Stats => Outcome::Servers(
                mc.stats(None)
                    .map(|s| s.iter().filter(|s| s.get("pid").is_some()).count()),
            ),
            Op::Version => Outcome::Servers(
                mc.version()
                    .map(|v| v.iter().filter(|(_, v)| v.starts_with("1.")).count()),
            ),
        };
        let elapsed = start.elapsed();
        faulty.set_fault(Fault::Pass);

        let servers = if cluster { 3 } else { 1 };
        let verdict = self.judge(op, &keys, &on_faulty, servers, outcome, fault);
        (verdict, elapsed)
    }

    fn judge(
        &self,
        op: Op,
        keys: &[String],
        on_faulty: &BTreeSet<String>,
        servers: usize,
        outcome: Outcome,
        fault: Fault,
    ) -> Verdict {
        let oracle = &self.oracle;
        let key = &keys[0];
        let now = |k: &str| oracle.get::<String>(k).unwrap();
        let new = |k: &str| format!("new {}", value_of(k));
        let error_kind = |e: &Error| match kind(e) {
            Some(kind) => Verdict::Failed(kind),
            None => Verdict::WrongError(format!("{e} ({:?})", e.code())),
        };
        let _ = fault;
        match outcome {
            Outcome::Value(Err(e)) | Outcome::Map(Err(e)) | Outcome::Partial(Err(e)) => {
                error_kind(&e)
            }
            Outcome::Done(Err(e))
            | Outcome::Counter(Err(e))
            | Outcome::Written(Err(e))
            | Outcome::Servers(Err(e)) => error_kind(&e),
            Outcome::Value(Ok(None)) => Verdict::SilentMiss(format!("{op:?} {key}: None")),
            Outcome::Value(Ok(Some(v))) if v == value_of(key) => Verdict::Right,
            Outcome::Value(Ok(Some(v))) => Verdict::WrongValue(format!("{op:?} {key}: {v:?}")),
            Outcome::Done(Ok(done)) => {
                let stored = now(key);
                let expected_now = match op {
                    Op::Set | Op::Add | Op::Replace | Op::Cas => Some(new(key)),
                    Op::Append => Some(format!("{}+a", value_of(key))),
                    Op::Prepend => Some(format!("p+{}", value_of(key))),
                    Op::Delete => None,
                    Op::Touch => Some(value_of(key)),
                    _ => unreachable!(),
                };
                if !done {
                    // Every write here was set up to succeed: "not stored" is not what happened.
                    return Verdict::FalseOk(format!("{op:?} {key}: Ok(false), holds {stored:?}"));
                }
                if stored != expected_now {
                    return Verdict::FalseOk(format!("{op:?} {key}: Ok, but holds {stored:?}"));
                }
                Verdict::Right
            }
            Outcome::Counter(Ok(n)) => {
                let expected = if op == Op::Incr { 11 } else { 9 };
                // memcached keeps a decremented counter's length, padding it with spaces.
                let stored = now(key);
                if n != expected
                    || stored.as_deref().map(str::trim_end) != Some(&expected.to_string())
                {
                    return Verdict::FalseOk(format!("{op:?} {key}: Ok({n}), holds {stored:?}"));
                }
                Verdict::Right
            }
            Outcome::Map(Ok(map)) => {
                for k in keys {
                    match map.get(k) {
                        None => return Verdict::SilentMiss(format!("{op:?}: {k} left out")),
                        Some(v) if *v != value_of(k) => {
                            return Verdict::WrongValue(format!("{op:?} {k}: {v:?}"));
                        }
                        Some(_) => {}
                    }
                }
                Verdict::Right
            }
            Outcome::Partial(Ok(Partial { ok, failures })) => {
                let failed: BTreeSet<String> = failures
                    .iter()
                    .flat_map(|f| {
                        f.keys
                            .iter()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                    })
                    .collect();
                for (k, v) in &ok {
                    if *v != value_of(k) {
                        return Verdict::WrongValue(format!("{op:?} {k}: {v:?}"));
                    }
                }
                for k in keys {
                    if !ok.contains_key(k) && !failed.contains(k) {
                        return Verdict::SilentMiss(format!(
                            "{op:?}: {k} neither found nor failed"
                        ));
                    }
                    if failed.contains(k) && !on_faulty.contains(k) {
                        // libmemcached does not say which server sent a reply: one for a key
                        // that was not asked (or not then) puts every key of the call in doubt.
                        let unattributable = failures
                            .iter()
                            .any(|f| f.keys.contains(&k.as_bytes().to_vec()) && is_stray(&f.error));
                        if unattributable {
                            return Verdict::Unattributed(describe(&failures));
                        }
                        return Verdict::Collateral(format!(
                            "{op:?}: {k} failed: {}",
                            describe(&failures)
                        ));
                    }
                }
                match failures.first() {
                    None => Verdict::Right,
                    Some(f) if failures.iter().all(|g| kind(&g.error) == kind(&f.error)) => {
                        error_kind(&f.error)
                    }
                    Some(_) => Verdict::WrongError(describe(&failures)),
                }
            }
            Outcome::Written(Ok(Written {
                nothing_refused,
                failed,
                kinds,
                errors,
            })) => {
                if !nothing_refused {
                    return Verdict::FalseOk(format!("{op:?}: keys reported not done"));
                }
                for k in keys {
                    if failed.contains(k) {
                        if !on_faulty.contains(k) {
                            return Verdict::Collateral(format!("{op:?}: {k} failed: {errors:?}"));
                        }
                        continue;
                    }
                    let stored = now(k);
                    let expected = match op {
                        Op::SetMulti => Some(new(k)),
                        _ => None,
                    };
                    if stored != expected {
                        return Verdict::FalseOk(format!(
                            "{op:?} {k}: not failed, but holds {stored:?}"
                        ));
                    }
                }
                match kinds.first() {
                    None => Verdict::Right,
                    Some(Some(kind)) if kinds.iter().all(|k| *k == Some(*kind)) => {
                        Verdict::Failed(*kind)
                    }
                    _ => Verdict::WrongError(errors),
                }
            }
            Outcome::Servers(Ok(n)) if n == servers => Verdict::Right,
            Outcome::Servers(Ok(n)) => {
                Verdict::FalseOk(format!("{op:?}: {n} of {servers} servers answered"))
            }
        }
    }
}

/// What a call returned, reduced to what the judge needs.
enum Outcome {
    Value(libmemcached::Result<Option<String>>),
    Done(libmemcached::Result<bool>),
    Counter(libmemcached::Result<u64>),
    Map(libmemcached::Result<HashMap<String, String>>),
    Partial(libmemcached::Result<Partial<HashMap<String, String>>>),
    Written(libmemcached::Result<Written>),
    /// How many servers answered properly.
    Servers(libmemcached::Result<usize>),
}

/// What a multi-key write reported.
struct Written {
    /// No key was answered "not stored" or "not found".
    nothing_refused: bool,
    failed: BTreeSet<String>,
    /// The kind of each failure's error.
    kinds: Vec<Option<Kind>>,
    errors: String,
}

impl<K> From<Partial<Vec<K>>> for Written {
    fn from(partial: Partial<Vec<K>>) -> Written {
        Written {
            nothing_refused: partial.ok.is_empty(),
            failed: partial
                .failed_keys()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect(),
            kinds: partial.failures.iter().map(|f| kind(&f.error)).collect(),
            errors: describe(&partial.failures),
        }
    }
}

/// A failure for a reply that named a key not asked for, or not then.
fn is_stray(error: &Error) -> bool {
    let text = error.to_string();
    text.contains("which was not requested")
        || text.contains("is not a value")
        || text.contains("a value reply")
}

fn describe(failures: &[libmemcached::KeyFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("{} ({} keys)", f.error, f.keys.len()))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn fault_matrix() {
    let server = Memcached::start().expect("memcached starts");
    let spec = server.spec();
    let started = Instant::now();
    let mut groups = Vec::new();
    for binary in [false, true] {
        for (name, fault) in faults() {
            let spec = spec.clone();
            groups.push(thread::spawn(move || {
                let mut group = Group::new(&spec, binary, name, fault);
                let mut cells = group.run(false);
                cells.extend(group.run(true));
                (fault, cells)
            }));
        }
    }
    let mut cells: Vec<(Fault, Cell)> = Vec::new();
    for group in groups {
        let (fault, group_cells) = group.join().expect("a group of cells panicked");
        cells.extend(group_cells.into_iter().map(|c| (fault, c)));
    }
    report(&cells, started.elapsed());
}

fn report(cells: &[(Fault, Cell)], took: Duration) {
    #[derive(Default)]
    struct Row {
        cells: usize,
        right: usize,
        errors: usize,
        wrong: usize,
        silent: usize,
        false_ok: usize,
        wrong_error: usize,
        collateral: usize,
        unattributed: usize,
        slow: usize,
        slow_documented: usize,
        unrecovered: usize,
        worst: Duration,
    }
    let mut rows: Vec<(String, Row)> = Vec::new();
    let mut total = Row::default();
    let mut problems = Vec::new();
    for (fault, cell) in cells {
        let name = format!(
            "{} {}",
            if cell.binary { "binary" } else { "ascii" },
            cell.fault
        );
        if rows.last().is_none_or(|(n, _)| *n != name) {
            rows.push((name.clone(), Row::default()));
        }
        let row = &mut rows.last_mut().unwrap().1;
        for row in [row, &mut total] {
            row.cells += 1;
            match &cell.verdict {
                Verdict::Right => row.right += 1,
                Verdict::Failed(_) => row.errors += 1,
                Verdict::WrongValue(_) => row.wrong += 1,
                Verdict::SilentMiss(_) => row.silent += 1,
                Verdict::FalseOk(_) => row.false_ok += 1,
                Verdict::WrongError(_) => row.wrong_error += 1,
                Verdict::Collateral(_) => row.collateral += 1,
                Verdict::Unattributed(_) => {
                    row.errors += 1;
                    row.unattributed += 1;
                }
            }
            if cell.slow() {
                if cell.documented_slow(*fault) {
                    row.slow_documented += 1;
                } else {
                    row.slow += 1;
                }
            }
            if cell.recovery.is_none() {
                row.unrecovered += 1;
            }
            row.worst = row.worst.max(cell.elapsed);
        }
        let mut problem = cell.problem();
        if problem.is_none() && cell.slow() && !cell.documented_slow(*fault) {
            problem = Some(format!("took {:?}", cell.elapsed));
        }
        if let Some(problem) = problem {
            problems.push(format!(
                "{} {} {:?}{}: {problem}",
                if cell.binary { "binary" } else { "ascii" },
                cell.fault,
                cell.op,
                if cell.cluster { " (3 servers)" } else { "" },
            ));
        }
    }
    println!();
    println!(
        "| protocol, fault | cells | right | errors | wrong values | silent misses | false Ok | wrong errors | collateral | unattributed | slow | slow (documented) | unrecovered | worst |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, r) in rows
        .iter()
        .chain([(String::from("**total**"), total)].iter())
    {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ms |",
            r.cells,
            r.right,
            r.errors,
            r.wrong,
            r.silent,
            r.false_ok,
            r.wrong_error,
            r.collateral,
            r.unattributed,
            r.slow,
            r.slow_documented,
            r.unrecovered,
            r.worst.as_millis()
        );
    }
    let slowest = cells
        .iter()
        .map(|(_, c)| c)
        .filter(|c| c.verdict != Verdict::Right || !matches!(c.fault, "drip 2ms"))
        .max_by_key(|c| c.elapsed);
    if let Some(c) = slowest {
        println!(
            "\nworst bounded cell: {} {} {:?}{} in {} ms (bound {} ms); matrix took {:.1} s",
            if c.binary { "binary" } else { "ascii" },
            c.fault,
            c.op,
            if c.cluster { " (3 servers)" } else { "" },
            c.elapsed.as_millis(),
            (POLL + MARGIN).as_millis(),
            took.as_secs_f64()
        );
    }
    let unbitten: Vec<String> = cells
        .iter()
        .map(|(_, c)| c)
        .filter(|c| matches!(c.expected, Expect::Error(_)) && c.verdict == Verdict::Right)
        .map(|c| {
            format!(
                "{} {} {:?}{}",
                if c.binary { "binary" } else { "ascii" },
                c.fault,
                c.op,
                if c.cluster { " (3 servers)" } else { "" }
            )
        })
        .collect();
    println!(
        "right answers under a fault that could have failed them (checked against the server): {}",
        unbitten.join(", ")
    );
    for problem in &problems {
        println!("PROBLEM {problem}");
    }
    assert!(problems.is_empty(), "{} cells went wrong", problems.len());
}

/// A client of one proxy in front of `server`, in both protocols.
fn proxied(server: &Memcached, binary: bool) -> (FaultProxy, Client) {
    let proxy = FaultProxy::start(server.spec()).unwrap();
    let mc = faulty_client(&[proxy.spec()], binary);
    (proxy, mc)
}

/// Reads take only their own key's reply and only a miss the server said: libmemcached's
/// `memcached_get` takes a reply for another key as this one's, any reply that is not
/// memcached's as a miss, and stops before the END (so a length that lies passes); and a reply
/// line longer than libmemcached's buffer must not pass for a clean miss.
#[test]
fn reads_take_only_their_own_key_and_only_a_said_miss() {
    let server = common::own_server();
    for binary in [false, true] {
        let (proxy, mc) = proxied(&server, binary);
        let key = common::key("own:0");
        mc.set(&key, value_of(&key), 0).unwrap();
        let cases: &[(Fault, &str)] = &[
            (Fault::WrongKey, "which was not requested"),
            (Fault::Reply(b"HTTP/1.1 400 Bad Request\r\n\r\n"), ""),
            (
                Fault::Reply(b"SERVER_ERROR out of memory storing object\r\n"),
                "",
            ),
            (Fault::Reply(b"SERVER_ERROR something else\r\n"), ""),
            (Fault::LongLine, if binary { "" } else { "longer than" }),
            (Fault::LyingLength(3), ""),
            (Fault::LyingLength(-3), ""),
        ];
        for &(fault, says) in cases {
            let what = format!("{} {fault:?}", if binary { "binary" } else { "ascii" });
            proxy.set_fault(fault);
            let get = mc.get::<String>(&key);
            let gets = mc.gets::<String>(&key).map(|f| f.map(|(v, _)| v));
            let multi = mc
                .get_multi::<_, String>([&key])
                .map(|m| m.into_values().next());
            proxy.set_fault(Fault::Pass);
            for (op, outcome) in [("get", get), ("gets", gets), ("get_multi", multi)] {
                let error = outcome.expect_err(&format!("{what} {op}"));
                assert!(
                    error.is_protocol() || error.is_server() || error.is_timeout(),
                    "{what} {op}: {error:?}"
                );
                assert!(error.to_string().contains(says), "{what} {op}: {error}");
            }
            assert_eq!(
                mc.get::<String>(&key).unwrap(),
                Some(value_of(&key)),
                "{what}"
            );
        }
    }
}

/// libmemcached takes a reply line that starts with a digit (an incr reply) for an item
/// without filling the result: it must not pass for the previous item again.
#[test]
fn a_line_that_is_not_a_value_is_an_error() {
    let server = common::own_server();
    let (proxy, mc) = proxied(&server, false);
    let keys = [common::key("num:0"), common::key("num:1")];
    for k in &keys {
        mc.set(k, value_of(k), 0).unwrap();
    }
    proxy.set_fault(Fault::Reply(b"12\r\nEND\r\n"));
    let error = mc.get::<String>(&keys[0]).unwrap_err();
    assert!(error.to_string().contains("not a value"), "{error}");
    proxy.set_fault(Fault::Pass);
    let found: HashMap<String, String> = mc.get_multi(keys.iter().cloned()).unwrap();
    assert_eq!(found.len(), 2);
}

/// A binary GETK response for key `k`, value `x`: a value where a write's answer belongs.
const BINARY_VALUE: &[u8] = &[
    0x81, 0x0c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, // magic, GETK, key length, extras
    0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, // body length 6, opaque
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // cas
    0x00, 0x00, 0x00, 0x00, b'k', b'x', // flags, key, value
];

/// A binary answer to a SET, where a counter's answer belongs.
const BINARY_SET_ANSWER: &[u8] = &[
    0x81, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
];

/// A write or counter is `Ok` only on its own answer: libmemcached takes a value reply (an
/// ASCII `VALUE`, a binary GETK) for the answer to any write, and an `OK` or a write's answer
/// for a counter's, returning whatever value it held before. Each is a protocol error naming
/// the server, never a success, and the connection is back in step after.
#[test]
fn a_write_answered_with_another_reply_is_a_protocol_error() {
    let server = common::own_server();
    for binary in [false, true] {
        let (proxy, mc) = proxied(&server, binary);
        let key = common::key("answer");
        let counter = common::key("answer-n");
        let value_reply: &'static [u8] = match binary {
            true => BINARY_VALUE,
            false => b"VALUE k 0 1\r\nx\r\nEND\r\n",
        };
        let no_count: &'static [u8] = match binary {
            true => BINARY_SET_ANSWER,
            false => b"OK\r\n",
        };
        type Call<'a> = Box<dyn Fn() -> libmemcached::Result<String> + 'a>;
        let writes: Vec<(&str, Call)> = vec![
            (
                "set",
                Box::new(|| mc.set(&key, "v", 0).map(|r| format!("{r:?}"))),
            ),
            (
                "add",
                Box::new(|| mc.add(&key, "v", 0).map(|r| format!("{r:?}"))),
            ),
            (
                "replace",
                Box::new(|| mc.replace(&key, "v", 0).map(|r| format!("{r:?}"))),
            ),
            (
                "append",
                Box::new(|| mc.append(&key, "v").map(|r| format!("{r:?}"))),
            ),
            (
                "prepend",
                Box::new(|| mc.prepend(&key, "v").map(|r| format!("{r:?}"))),
            ),
            (
                "cas",
                Box::new(|| mc.cas(&key, "v", 1, 0).map(|r| format!("{r:?}"))),
            ),
            (
                "delete",
                Box::new(|| mc.delete(&key).map(|r| format!("{r:?}"))),
            ),
            (
                "touch",
                Box::new(|| mc.touch(&key, 0).map(|r| format!("{r:?}"))),
            ),
            (
                "incr",
                Box::new(|| mc.incr(&counter, 1).map(|r| format!("{r:?}"))),
            ),
            (
                "decr",
                Box::new(|| mc.decr(&counter, 1).map(|r| format!("{r:?}"))),
            ),
        ];
        let counters = ["incr", "decr"];
        // An ASCII storage command answered with a value is one of the replies libmemcached
        // 1.1.4 aborts on (storage.cc:257, as for `END`: see `trusted_replies_that_abort`).
        let aborts = ["set", "add", "replace", "append", "prepend", "cas"];
        for (name, call) in &writes {
            if !binary && aborts.contains(name) {
                continue;
            }
            let mut replies = vec![value_reply];
            if counters.contains(name) {
                replies.push(no_count);
            }
            for reply in replies {
                let what = format!(
                    "{} {name} answered {:?}",
                    if binary { "binary" } else { "ascii" },
                    String::from_utf8_lossy(reply)
                );
                mc.set(&key, "before", 0).unwrap();
                mc.set(&counter, 10u64, 0).unwrap();
                proxy.set_fault(Fault::ReplyOnce(reply));
                let error = call().expect_err(&what);
                proxy.set_fault(Fault::Pass);
                assert!(error.is_protocol(), "{what}: {error:?}");
                assert_eq!(
                    error.server().map(ToString::to_string),
                    Some(proxy.spec()),
                    "{what}"
                );
                // In step after: the next calls get their own answers (the request itself
                // reached the server; only its answer was replaced).
                mc.set(&key, "after", 0).unwrap();
                assert_eq!(
                    mc.get::<String>(&key).unwrap().as_deref(),
                    Some("after"),
                    "{what}"
                );
                mc.set(&counter, 20u64, 0).unwrap();
                assert_eq!(mc.incr(&counter, 1).unwrap(), 21, "{what}");
            }
        }
    }
}

/// A binary client without credentials asks each server once after a miss whether it demands
/// SASL (a delete of a probe key): a server whose probe fails (here its answer is malformed)
/// is asked once per multi-get, not once per key it missed, and the misses stay misses.
#[test]
fn a_failed_auth_probe_is_not_repeated_for_each_miss() {
    let server = common::own_server();
    let (proxy, mc) = proxied(&server, true);
    let keys: Vec<String> = (0..6)
        .map(|i| common::key(&format!("probed:{i}")))
        .collect();
    let deletes = || -> u64 { server.stat("delete_misses").unwrap().parse().unwrap() };
    proxy.set_fault(Fault::BadWriteAnswer(BadAnswer::Value));
    let before = deletes();
    let found = mc
        .get_multi::<_, String>(keys.iter().map(String::as_str))
        .unwrap();
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(deletes() - before, 1, "one probe");
}

/// A value reply for key `kkk...` (`len` bytes), over memcached's 250: ASCII or binary.
fn over_long_key_reply(binary: bool, len: usize) -> &'static [u8] {
    let key = vec![b'k'; len];
    let reply = match binary {
        false => [b"VALUE ".as_slice(), &key, b" 0 1\r\nx\r\nEND\r\n"].concat(),
        true => {
            let body = (4 + len + 1) as u32;
            let mut packet = vec![0x81, 0x0c];
            packet.extend_from_slice(&(len as u16).to_be_bytes());
            packet.extend_from_slice(&[4, 0, 0, 0]);
            packet.extend_from_slice(&body.to_be_bytes());
            packet.extend_from_slice(&[0; 12]); // opaque, cas
            packet.extend_from_slice(&[0; 4]); // flags
            packet.extend_from_slice(&key);
            packet.push(b'x');
            packet
        }
    };
    // Kept reachable for the whole run (a fault holds a `&'static [u8]`): leaked, the leak
    // checker of scripts/sanitize would fail the run.
    static KEPT: std::sync::Mutex<Vec<&'static [u8]>> = std::sync::Mutex::new(Vec::new());
    let kept: &'static [u8] = Box::leak(reply.into_boxed_slice());
    KEPT.lock().unwrap().push(kept);
    kept
}

/// libmemcached copies a reply's key into its 251-byte buffer unchecked: the crate's result
/// struct has room after it, so an over-long key is an error naming the server, and the heap
/// stays whole (many times over, and every later call works).
#[test]
fn an_over_long_key_in_a_value_reply_is_an_error_not_a_corrupt_heap() {
    let server = common::own_server();
    for binary in [false, true] {
        let (proxy, mc) = proxied(&server, binary);
        let key = common::key("long");
        mc.set(&key, value_of(&key), 0).unwrap();
        let lens: &[usize] = match binary {
            // ASCII reads the line into a buffer of its own, which bounds the key.
            false => &[251, 300, 900],
            true => &[251, 1000, 65535],
        };
        for &len in lens {
            let what = format!("{} key of {len}", if binary { "binary" } else { "ascii" });
            let reply = over_long_key_reply(binary, len);
            for _ in 0..20 {
                proxy.set_fault(Fault::Reply(reply));
                let error = mc.get::<String>(&key).expect_err(&what);
                proxy.set_fault(Fault::Pass);
                assert!(error.is_protocol(), "{what}: {error:?}");
                assert_eq!(error.server().map(ToString::to_string), Some(proxy.spec()));
                let many = mc.get_multi::<_, String>([&key]);
                assert_eq!(many.unwrap().len(), 1, "{what}");
            }
        }
    }
}

/// A multi-key write to a server that stopped answering cost one poll timeout per key (40
/// keys: 20 s at 500 ms); the server's remaining keys now fail with its first timeout.
#[test]
fn a_multi_key_write_waits_for_a_silent_server_once() {
    let server = common::own_server();
    for binary in [false, true] {
        let (proxy, mc) = proxied(&server, binary);
        let keys: Vec<String> = (0..20)
            .map(|i| common::key(&format!("silent:{i}")))
            .collect();
        proxy.set_fault(Fault::Blackhole);
        let started = Instant::now();
        let set = mc
            .set_multi_partial(keys.iter().map(|k| (k.clone(), value_of(k))), 0)
            .unwrap();
        let deleted = mc.delete_multi_partial(keys.iter().cloned()).unwrap();
        let took = started.elapsed();
        proxy.set_fault(Fault::Pass);
        for partial in [set.failures, deleted.failures] {
            assert_eq!(partial.len(), 1, "one failure: {}", describe(&partial));
            assert!(partial[0].error.is_timeout(), "{}", partial[0].error);
            assert_eq!(partial[0].keys.len(), keys.len());
        }
        assert!(took < 2 * (POLL + MARGIN), "two calls took {took:?}");
        mc.set_multi(keys.iter().map(|k| (k.clone(), value_of(k))), 0)
            .unwrap();
    }
}

/// Replies libmemcached 1.1.4 cannot survive (the guide's list of what the crate trusts its
/// servers for, in `guide/reliability.md`): each still aborts the process, shown in a child
/// process. If one stops aborting, a newer libmemcached fixed it: move it out of the list.
#[test]
fn trusted_replies_that_abort() {
    use std::os::unix::process::ExitStatusExt;
    const CASE: &str = "LIBMEMCACHED_FAULTS_ABORT_CASE";
    if let Ok(case) = std::env::var(CASE) {
        let server = common::own_server();
        let (proxy, mc) = proxied(&server, false);
        let key = common::key("abort");
        mc.set(&key, "10", 0).unwrap();
        match case.as_str() {
            "incr long line" => {
                proxy.set_fault(Fault::LongLine);
                let _ = mc.incr(&key, 1);
            }
            "set answered END" => {
                proxy.set_fault(Fault::Reply(b"END\r\n"));
                let _ = mc.set(&key, "x", 0);
            }
            other => panic!("unknown case {other}"),
        }
        return;
    }
    for (case, assertion) in [
        ("incr long line", "auto.cc:32"),
        ("set answered END", "storage.cc:257"),
    ] {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "trusted_replies_that_abort", "--nocapture"])
            .env(CASE, case)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.signal(), Some(6), "{case}: {stderr}");
        assert!(stderr.contains(assertion), "{case}: {stderr}");
    }
}

/// Another service on the port (a web server, an SSH daemon, Redis) is named in the error,
/// for reads and writes alike (in ASCII, where libmemcached keeps the line it could not read).
#[test]
fn another_service_on_the_port_is_named() {
    let server = common::own_server();
    let (proxy, mc) = proxied(&server, false);
    let key = common::key("service");
    for (reply, service) in [
        (
            &b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"[..],
            "HTTP",
        ),
        (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "SSH"),
        (b"-ERR unknown command 'gets'\r\n", "the Redis protocol"),
    ] {
        proxy.set_fault(Fault::Reply(reply));
        let get = mc.get::<String>(&key).unwrap_err();
        let set = mc.set(&key, "v", 0).unwrap_err();
        proxy.set_fault(Fault::Pass);
        for error in [get, set] {
            assert!(error.is_protocol(), "{error:?}");
            let says = format!("the server speaks {service}, not memcached");
            assert!(error.to_string().contains(&says), "{error}");
        }
    }
}

/// `flush_all` is `Ok` only when every server flushed. libmemcached's binary flush reads each
/// server's reply and drops its code, so a server that reset the connection before the request
/// arrived, or never answered, passed for flushed. (A binary server that refuses with a status,
/// as memcached -F does, still does: libmemcached records nothing the crate can read.)
#[test]
fn flush_all_is_ok_only_when_the_servers_flushed() {
    let refusing = Memcached::builder().arg("-F").start().unwrap();
    let mc = common::client(&[refusing.spec()], false);
    let k = common::key("unflushed");
    mc.set(&k, "v", 0).unwrap();
    let result = mc.flush_all(None);
    assert!(result.is_err(), "ascii, -F: {result:?}");
    assert_eq!(mc.get::<String>(&k).unwrap().as_deref(), Some("v"));

    let server = Memcached::start().unwrap();
    for binary in [false, true] {
        for fault in [Fault::Reset, Fault::Blackhole] {
            let (proxy, mc) = proxied(&server, binary);
            let k = common::key("unflushed");
            mc.set(&k, "v", 0).unwrap();
            proxy.set_fault(fault);
            let result = mc.flush_all(None);
            proxy.set_fault(Fault::Pass);
            let failed = result.expect_err(&format!("binary {binary}, {fault:?}: Ok"));
            assert_eq!(
                failed.failures().len(),
                1,
                "binary {binary}, {fault:?}: {failed}"
            );
            assert_eq!(mc.get::<String>(&k).unwrap().as_deref(), Some("v"));
        }
    }
}

/// A server whose statistics break off (the connection closes halfway) failed the call: the
/// lines that came before were returned as all its statistics.
#[test]
fn statistics_cut_short_are_an_error_not_fewer_lines() {
    let server = Memcached::start().unwrap();
    for binary in [false, true] {
        let (proxy, mc) = proxied(&server, binary);
        for group in [None, Some("settings")] {
            let full = mc.stats(group).unwrap()[0].len();
            proxy.set_fault(Fault::Truncate);
            let result = mc.stats(group);
            proxy.set_fault(Fault::Pass);
            let failed = result.expect_err(&format!(
                "binary {binary}, {group:?}: Ok with fewer than {full} lines"
            ));
            assert!(
                failed.is_connection(),
                "binary {binary}, {group:?}: {failed}"
            );
            assert_eq!(failed.failures().len(), 1, "{failed}");
            assert_eq!(mc.stats(group).unwrap()[0].len(), full);
        }
    }
}
