//! `memc`: a memcached command-line client on the `libmemcached` crate, with an interactive
//! `shell` like pylibmc's `python -m pylibmc`. Run `memc --help`.
//!
//! Exit codes: 0 success, 1 a miss or nothing stored, 2 an error (printed on stderr).

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use libmemcached::value::flags;
use libmemcached::{Client, Encoded, Error, FromValue, Value};

const USAGE: &str = "\
usage: memc [OPTIONS] COMMAND [ARGS...]

A memcached client on libmemcached, compatible with pylibmc's value flags.

Options:
  -s, --servers LIST        comma-separated server specs: host[:port[:weight]], [v6]:port,
                            /path/to/socket, udp:host:port (default: $MEMCACHED_SERVERS)
  -b, --binary              use the binary protocol
  -u, --username NAME       SASL username (default: $MEMCACHED_USERNAME); implies --binary
  -p, --password PASS       SASL password (default: $MEMCACHED_PASSWORD, which keeps it out
                            of the process list)
  -B, --behavior NAME=VALUE set a behavior by pylibmc name, e.g. connect_timeout=500 or
                            distribution=\"consistent ketama\" (repeatable)
  -j, --json                print results as JSON, one document per command
  -h, --help                print this help
  -V, --version             print memc's and libmemcached's versions

Commands:
  get KEY...                print each value, decoded by its flags (several keys: KEY<TAB>VALUE)
  gets KEY                  print the value, then its CAS token
  set KEY VALUE [EXPTIME]   store VALUE as text (VALUE - reads bytes from stdin)
  add KEY VALUE [EXPTIME]   store only if KEY is missing
  replace KEY VALUE [EXPTIME]  store only if KEY exists
  append KEY VALUE          add bytes after the value
  prepend KEY VALUE         add bytes before the value
  cas KEY VALUE CAS [EXPTIME]  store only if the CAS token (from gets) is current
  delete KEY                remove KEY
  incr KEY [DELTA]          add DELTA (default 1) to a counter and print it
  decr KEY [DELTA]          subtract DELTA (default 1), stopping at 0
  touch KEY EXPTIME         set a new expiration time
  flush [DELAY]             remove every item (after DELAY seconds)
  stats [GROUP]             every server's statistics (or a group: settings, items, slabs...)
  version                   every server's version
  ping                      check that every server answers, with the round trip
  server-for KEY            the server KEY maps to
  shell                     read these commands from stdin, one per line (quotes group words)

EXPTIME and DELAY are seconds (0: never). Exit codes: 0 success, 1 a miss or nothing stored,
2 an error (printed on stderr).";

/// A command's outcome, which is also the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok = 0,
    Miss = 1,
}

/// Why a command failed (exit code 2).
#[derive(Debug)]
enum Failure {
    Usage(String),
    Memcached(Error),
    Io(io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(text) => f.write_str(text),
            Failure::Memcached(err) => write!(f, "{err}"),
            Failure::Io(err) => write!(f, "{err}"),
        }
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Memcached(err)
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        Failure::Io(err)
    }
}

type Outcome = Result<Status, Failure>;

fn usage(text: impl Into<String>) -> Failure {
    Failure::Usage(text.into())
}

/// Options before the command.
#[derive(Debug, Default)]
struct Options {
    servers: Vec<String>,
    binary: bool,
    username: Option<String>,
    password: Option<String>,
    behaviors: Vec<(String, String)>,
    json: bool,
}

impl Options {
    /// A client for `servers` with these options.
    fn client(&self, servers: &[String]) -> Result<Client, Failure> {
        let mut builder = Client::builder().servers(servers)?.binary(self.binary);
        match (&self.username, &self.password) {
            (Some(user), Some(password)) => builder = builder.sasl(user, password),
            (None, None) => {}
            _ => {
                return Err(usage(
                    "SASL needs both a username and a password (--username and --password)",
                ));
            }
        }
        let client = builder.build()?;
        client
            .set_behaviors_by_name(self.behaviors.iter().map(|(n, v)| (n.as_str(), v.as_str())))?;
        Ok(client)
    }
}

fn main() -> ExitCode {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                eprintln!("memc: argument {arg:?} is not UTF-8");
                return ExitCode::from(2);
            }
        }
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (options, command) = match parse_options(&args, env) {
        Ok(parsed) => parsed,
        Err(Failure::Usage(text)) if text.is_empty() => {
            let _ = writeln!(io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => return fail(&err, true),
    };
    if command.is_empty() {
        return fail(&usage("no command given"), true);
    }
    if options.servers.is_empty() {
        return fail(
            &usage("no servers: pass --servers or set MEMCACHED_SERVERS"),
            false,
        );
    }
    let client = match options.client(&options.servers) {
        Ok(client) => client,
        Err(err) => return fail(&err, false),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let outcome = if command[0] == "shell" {
        if command.len() > 1 {
            Err(usage("shell takes no arguments"))
        } else {
            shell(&client, &options, &mut io::stdin().lock(), &mut out)
        }
    } else {
        execute(&client, &options, command, &mut out, false)
    };
    let outcome = outcome.and_then(|status| out.flush().map(|()| status).map_err(Failure::Io));
    match outcome {
        Ok(status) => ExitCode::from(status as u8),
        Err(err) => fail(&err, false),
    }
}

fn fail(err: &Failure, hint: bool) -> ExitCode {
    // A reader that went away (`memc stats | head`) needs no message.
    if !matches!(err, Failure::Io(e) if e.kind() == io::ErrorKind::BrokenPipe) {
        eprintln!("memc: {err}");
    }
    if hint && matches!(err, Failure::Usage(_)) {
        eprintln!("run `memc --help` for usage");
    }
    ExitCode::from(2)
}

/// Splits the options from the command. `--help` comes back as an empty usage error.
fn parse_options(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Options, &[String]), Failure> {
    let mut options = Options::default();
    let mut servers = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        i += 1;
        if arg == "--" {
            break;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = || -> Result<String, Failure> {
            if let Some(value) = inline.clone() {
                return Ok(value);
            }
            let value = args
                .get(i)
                .ok_or_else(|| usage(format!("{name} needs a value")))?;
            i += 1;
            Ok(value.clone())
        };
        match name {
            "-s" | "--servers" => servers = Some(value()?),
            "-b" | "--binary" => options.binary = true,
            "-u" | "--username" => options.username = Some(value()?),
            "-p" | "--password" => options.password = Some(value()?),
            "-B" | "--behavior" => {
                let pair = value()?;
                let (n, v) = pair
                    .split_once('=')
                    .ok_or_else(|| usage(format!("--behavior {pair:?}: expected NAME=VALUE")))?;
                options
                    .behaviors
                    .push((n.trim().to_owned(), v.trim().to_owned()));
            }
            "-j" | "--json" => options.json = true,
            "-h" | "--help" => return Err(usage("")),
            "-V" | "--version" => {
                let _ = writeln!(
                    io::stdout(),
                    "memc {} ({})",
                    env!("CARGO_PKG_VERSION"),
                    libmemcached::build_info()
                );
                std::process::exit(0);
            }
            _ => return Err(usage(format!("unknown option {arg}"))),
        }
    }
    let servers = servers
        .or_else(|| env("MEMCACHED_SERVERS"))
        .unwrap_or_default();
    options.servers = servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    options.username = options.username.or_else(|| env("MEMCACHED_USERNAME"));
    options.password = options.password.or_else(|| env("MEMCACHED_PASSWORD"));
    Ok((options, &args[i..]))
}

/// Reads commands from `input` until EOF or `quit`. Errors are printed and the session goes
/// on; the status is 2 if any command failed, else 0.
fn shell(
    client: &Client,
    options: &Options,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Outcome {
    let interactive = io::stdin().is_terminal();
    if interactive {
        let servers: Vec<String> = client.servers().iter().map(|s| s.to_string()).collect();
        writeln!(
            out,
            "memc shell on {} ({}); `help` lists commands, `quit` or Ctrl-D leaves",
            servers.join(", "),
            if client.is_binary() {
                "binary"
            } else {
                "ascii"
            }
        )?;
    }
    let mut failed = false;
    let mut line = String::new();
    loop {
        if interactive {
            write!(out, "memc> ")?;
            out.flush()?;
        }
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        let words = match split_words(line.trim()) {
            Ok(words) => words,
            Err(why) => {
                eprintln!("error: {why}");
                failed = true;
                continue;
            }
        };
        match words.first().map(String::as_str) {
            None => continue,
            Some("quit" | "exit") => break,
            Some("help") => {
                writeln!(
                    out,
                    "{}",
                    USAGE.split("Commands:\n").nth(1).unwrap_or(USAGE)
                )?;
                continue;
            }
            Some("shell") => {
                eprintln!("error: already in the shell");
                failed = true;
                continue;
            }
            Some(_) => {}
        }
        if let Err(err) = execute(client, options, &words, out, true) {
            if matches!(&err, Failure::Io(e) if e.kind() == io::ErrorKind::BrokenPipe) {
                return Err(err);
            }
            eprintln!("error: {err}");
            failed = true;
        }
        out.flush()?;
    }
    if failed {
        return Err(usage("some commands failed"));
    }
    Ok(Status::Ok)
}

/// Splits a shell line into words: whitespace separates, '...' and "..." group (a backslash
/// escapes the next character outside single quotes).
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unclosed '".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => w.push(c),
                            None => return Err("a line ending in \\".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("unclosed \"".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("a line ending in \\".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// Runs one command (`args[0]`) and prints its result.
fn execute(
    mc: &Client,
    options: &Options,
    args: &[String],
    out: &mut dyn Write,
    in_shell: bool,
) -> Outcome {
    let json = options.json;
    let name = args[0].as_str();
    let rest = &args[1..];
    let arity = |min: usize, max: usize, form: &str| -> Result<(), Failure> {
        if rest.len() < min || rest.len() > max {
            return Err(usage(format!("usage: {name} {form}")));
        }
        Ok(())
    };
    match name {
        "get" => {
            if rest.is_empty() {
                return Err(usage("usage: get KEY..."));
            }
            get(mc, rest, out, json, in_shell)
        }
        "gets" => {
            arity(1, 1, "KEY")?;
            let key = &rest[0];
            match mc.gets::<(Vec<u8>, u32)>(key)? {
                Some(((data, flags), cas)) => {
                    let value = decode(data, flags);
                    if json {
                        writeln!(
                            out,
                            "{{{}:{{\"value\":{},\"cas\":{cas}}}}}",
                            json_str(key),
                            json_value(&value)
                        )?;
                    } else {
                        print_value(out, &value)?;
                        writeln!(out, "cas {cas}")?;
                    }
                    Ok(Status::Ok)
                }
                None => miss(out, json, in_shell),
            }
        }
        "set" | "add" | "replace" => {
            arity(2, 3, "KEY VALUE [EXPTIME]")?;
            let value = value_arg(&rest[1], in_shell)?;
            let exp = seconds(rest.get(2), "EXPTIME")?;
            let stored = match name {
                "set" => mc.set(&rest[0], &value, exp).map(|()| true)?,
                "add" => mc.add(&rest[0], &value, exp)?,
                _ => mc.replace(&rest[0], &value, exp)?,
            };
            stored_reply(out, json, stored)
        }
        "append" | "prepend" => {
            arity(2, 2, "KEY VALUE")?;
            let value = value_arg(&rest[1], in_shell)?;
            let stored = match name {
                "append" => mc.append(&rest[0], &value.data)?,
                _ => mc.prepend(&rest[0], &value.data)?,
            };
            stored_reply(out, json, stored)
        }
        "cas" => {
            arity(3, 4, "KEY VALUE CAS [EXPTIME]")?;
            let value = value_arg(&rest[1], in_shell)?;
            let cas = rest[2]
                .parse::<u64>()
                .map_err(|_| usage(format!("CAS {:?} is not a number", rest[2])))?;
            let exp = seconds(rest.get(3), "EXPTIME")?;
            let stored = mc.cas(&rest[0], &value, cas, exp)?;
            stored_reply(out, json, stored)
        }
        "delete" => {
            arity(1, 1, "KEY")?;
            let deleted = mc.delete(&rest[0])?;
            flag_reply(out, json, "deleted", deleted, "DELETED")
        }
        "touch" => {
            arity(2, 2, "KEY EXPTIME")?;
            let exp = seconds(rest.get(1), "EXPTIME")?;
            let touched = mc.touch(&rest[0], exp)?;
            flag_reply(out, json, "touched", touched, "TOUCHED")
        }
        "incr" | "decr" => {
            arity(1, 2, "KEY [DELTA]")?;
            let delta = match rest.get(1) {
                Some(d) => d
                    .parse::<u64>()
                    .map_err(|_| usage(format!("DELTA {d:?} is not a whole number")))?,
                None => 1,
            };
            let result = match name {
                "incr" => mc.incr(&rest[0], delta),
                _ => mc.decr(&rest[0], delta),
            };
            match result {
                Ok(n) => {
                    match json {
                        true => writeln!(out, "{{\"value\":{n}}}")?,
                        false => writeln!(out, "{n}")?,
                    }
                    Ok(Status::Ok)
                }
                Err(err) if err.is_not_found() => {
                    match json {
                        true => writeln!(out, "{{\"value\":null}}")?,
                        false => writeln!(out, "NOT_FOUND")?,
                    }
                    Ok(Status::Miss)
                }
                Err(err) => Err(err.into()),
            }
        }
        "flush" => {
            arity(0, 1, "[DELAY]")?;
            let delay = match rest.first() {
                Some(_) => Some(Duration::from_secs(seconds(rest.first(), "DELAY")?.into())),
                None => None,
            };
            mc.flush_all(delay)?;
            match json {
                true => writeln!(out, "{{\"flushed\":true}}")?,
                false => writeln!(out, "OK")?,
            }
            Ok(Status::Ok)
        }
        "stats" => {
            arity(0, 1, "[GROUP]")?;
            let stats = mc.stats(rest.first().map(String::as_str))?;
            if json {
                let servers: Vec<String> = stats
                    .iter()
                    .map(|s| {
                        let fields: Vec<String> = s
                            .iter()
                            .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
                            .collect();
                        format!(
                            "{}:{{{}}}",
                            json_str(&s.server().to_string()),
                            fields.join(",")
                        )
                    })
                    .collect();
                writeln!(out, "{{{}}}", servers.join(","))?;
            } else {
                for s in &stats {
                    writeln!(out, "{}", s.server())?;
                    for (k, v) in s.iter() {
                        writeln!(out, "  {k} {v}")?;
                    }
                }
            }
            Ok(Status::Ok)
        }
        "version" => {
            arity(0, 0, "")?;
            let versions = mc.version()?;
            if json {
                let fields: Vec<String> = versions
                    .iter()
                    .map(|(s, v)| format!("{}:{}", json_str(&s.to_string()), json_str(v)))
                    .collect();
                writeln!(out, "{{{}}}", fields.join(","))?;
            } else {
                for (server, version) in versions {
                    writeln!(out, "{server} {version}")?;
                }
            }
            Ok(Status::Ok)
        }
        "ping" => {
            arity(0, 0, "")?;
            ping(mc, options, out)
        }
        "server-for" => {
            arity(1, 1, "KEY")?;
            let server = mc.server_for_key(&rest[0])?.to_string();
            match json {
                true => writeln!(
                    out,
                    "{{\"key\":{},\"server\":{}}}",
                    json_str(&rest[0]),
                    json_str(&server)
                )?,
                false => writeln!(out, "{server}")?,
            }
            Ok(Status::Ok)
        }
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

fn get(mc: &Client, keys: &[String], out: &mut dyn Write, json: bool, in_shell: bool) -> Outcome {
    if let [key] = keys {
        return match mc.get::<(Vec<u8>, u32)>(key)? {
            Some((data, flags)) => {
                let value = decode(data, flags);
                match json {
                    true => writeln!(out, "{{{}:{}}}", json_str(key), json_value(&value))?,
                    false => print_value(out, &value)?,
                }
                Ok(Status::Ok)
            }
            None => miss(out, json, in_shell),
        };
    }
    let found = mc.get_multi::<&str, (Vec<u8>, u32)>(keys.iter().map(String::as_str))?;
    let mut fields = Vec::new();
    for key in keys {
        let Some((data, flags)) = found.get(key.as_str()) else {
            continue;
        };
        let value = decode(data.clone(), *flags);
        if json {
            fields.push(format!("{}:{}", json_str(key), json_value(&value)));
        } else {
            write!(out, "{key}\t")?;
            print_value(out, &value)?;
        }
    }
    if json {
        writeln!(out, "{{{}}}", fields.join(","))?;
    }
    let all = keys.iter().all(|k| found.contains_key(k.as_str()));
    Ok(if all { Status::Ok } else { Status::Miss })
}

/// A miss prints nothing outside the shell, so `$(memc get k)` is empty; the exit code says it.
fn miss(out: &mut dyn Write, json: bool, in_shell: bool) -> Outcome {
    if json {
        writeln!(out, "{{}}")?;
    } else if in_shell {
        writeln!(out, "NOT_FOUND")?;
    }
    Ok(Status::Miss)
}

fn stored_reply(out: &mut dyn Write, json: bool, stored: bool) -> Outcome {
    match (json, stored) {
        (true, _) => writeln!(out, "{{\"stored\":{stored}}}")?,
        (false, true) => writeln!(out, "STORED")?,
        (false, false) => writeln!(out, "NOT_STORED")?,
    }
    Ok(if stored { Status::Ok } else { Status::Miss })
}

fn flag_reply(out: &mut dyn Write, json: bool, name: &str, done: bool, word: &str) -> Outcome {
    match (json, done) {
        (true, _) => writeln!(out, "{{\"{name}\":{done}}}")?,
        (false, true) => writeln!(out, "{word}")?,
        (false, false) => writeln!(out, "NOT_FOUND")?,
    }
    Ok(if done { Status::Ok } else { Status::Miss })
}

fn ping(mc: &Client, options: &Options, out: &mut dyn Write) -> Outcome {
    let mut down = 0;
    let mut fields = Vec::new();
    for server in mc.servers() {
        let spec = server.to_string();
        let started = Instant::now();
        let answer = options
            .client(std::slice::from_ref(&spec))
            .and_then(|c| c.version().map_err(Failure::from));
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match answer {
            Ok(versions) => {
                let version = versions.first().map(|(_, v)| v.as_str()).unwrap_or("");
                if options.json {
                    fields.push(format!(
                        "{}:{{\"alive\":true,\"version\":{},\"ms\":{ms:.3}}}",
                        json_str(&spec),
                        json_str(version)
                    ));
                } else {
                    writeln!(out, "{spec} alive {version} ({ms:.3} ms)")?;
                }
            }
            Err(err) => {
                down += 1;
                if options.json {
                    fields.push(format!(
                        "{}:{{\"alive\":false,\"error\":{}}}",
                        json_str(&spec),
                        json_str(&err.to_string())
                    ));
                } else {
                    writeln!(out, "{spec} down")?;
                }
                eprintln!("memc: {spec}: {err}");
            }
        }
    }
    if options.json {
        writeln!(out, "{{{}}}", fields.join(","))?;
    }
    if down > 0 {
        out.flush()?;
        return Err(usage(format!(
            "{down} of {} servers did not answer",
            mc.servers().len()
        )));
    }
    Ok(Status::Ok)
}

/// A value argument: text, or the bytes of stdin for `-`.
fn value_arg(arg: &str, in_shell: bool) -> Result<Encoded<'static>, Failure> {
    if arg == "-" {
        if in_shell {
            return Err(usage(
                "'-' reads stdin, which the shell reads commands from",
            ));
        }
        let mut data = Vec::new();
        io::stdin().lock().read_to_end(&mut data)?;
        return Ok(Encoded::owned(data, flags::BYTES));
    }
    Ok(Encoded::owned(arg.as_bytes().to_vec(), flags::TEXT))
}

fn seconds(arg: Option<&String>, what: &str) -> Result<u32, Failure> {
    match arg {
        None => Ok(0),
        Some(s) => s
            .parse::<u32>()
            .map_err(|_| usage(format!("{what} {s:?} is not a number of seconds"))),
    }
}

/// The value decoded by its flags; bytes as stored when that fails (bad UTF-8 under the text
/// flag, say), so nothing stored is unreadable here.
fn decode(data: Vec<u8>, flags: u32) -> Value {
    match Value::from_value(&data, flags) {
        Ok(value) => value,
        Err(_) => Value::Other { flags, data },
    }
}

fn print_value(out: &mut dyn Write, value: &Value) -> io::Result<()> {
    match value {
        Value::Text(text) => out.write_all(text.as_bytes())?,
        Value::Int(n) => write!(out, "{n}")?,
        Value::BigInt(digits) => out.write_all(digits.as_bytes())?,
        Value::Bytes(data) | Value::Pickle(data) | Value::Other { data, .. } => {
            out.write_all(data)?
        }
        other => write!(out, "{other:?}")?,
    }
    out.write_all(b"\n")
}

fn json_value(value: &Value) -> String {
    match value {
        Value::Text(text) => json_str(text),
        Value::Int(n) => n.to_string(),
        Value::BigInt(digits) => digits.clone(),
        Value::Bytes(data) => match std::str::from_utf8(data) {
            Ok(text) => json_str(text),
            Err(_) => format!("{{\"flags\":0,\"hex\":\"{}\"}}", hex(data)),
        },
        Value::Pickle(data) => format!("{{\"flags\":1,\"pickle_hex\":\"{}\"}}", hex(data)),
        Value::Other { flags, data } => format!("{{\"flags\":{flags},\"hex\":\"{}\"}}", hex(data)),
        other => json_str(&format!("{other:?}")),
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn json_str(text: &str) -> String {
    let mut json = String::with_capacity(text.len() + 2);
    json.push('"');
    for c in text.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            '\n' => json.push_str("\\n"),
            '\r' => json.push_str("\\r"),
            '\t' => json.push_str("\\t"),
            c if (c as u32) < 0x20 => json.push_str(&format!("\\u{:04x}", c as u32)),
            c => json.push(c),
        }
    }
    json.push('"');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_split_on_spaces_and_group_in_quotes() {
        assert_eq!(
            split_words(r#"set k "two words" 'it''s' a\ b"#).unwrap(),
            ["set", "k", "two words", "its", "a b"]
        );
        assert_eq!(
            split_words(r#"set k "q\"uote""#).unwrap(),
            ["set", "k", "q\"uote"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("set k ''").unwrap(), ["set", "k", ""]);
        assert!(split_words("set k \"open").is_err());
        assert!(split_words("set k 'open").is_err());
        assert!(split_words("set k \\").is_err());
    }

    #[test]
    fn json_strings_escape_what_json_requires() {
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\u0001é""#);
    }

    #[test]
    fn options_come_before_the_command_and_fall_back_to_the_environment() {
        let args: Vec<String> = ["-b", "--behavior=tcp_nodelay=1", "-j", "set", "k", "-5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let env = |name: &str| match name {
            "MEMCACHED_SERVERS" => Some("a:1, b:2,".to_owned()),
            "MEMCACHED_PASSWORD" => Some("pw".to_owned()),
            _ => None,
        };
        let (options, command) = parse_options(&args, env).unwrap();
        assert!(options.binary && options.json);
        assert_eq!(options.servers, ["a:1", "b:2"]);
        assert_eq!(
            options.behaviors,
            [("tcp_nodelay".to_owned(), "1".to_owned())]
        );
        assert_eq!(options.password.as_deref(), Some("pw"));
        assert_eq!(command, ["set", "k", "-5"]);

        let args = vec!["--servers".to_owned()];
        assert!(parse_options(&args, |_| None).is_err());
        let args = vec!["--frobnicate".to_owned()];
        assert!(parse_options(&args, |_| None).is_err());
        let args = vec!["-B".to_owned(), "no-equals".to_owned()];
        assert!(parse_options(&args, |_| None).is_err());
    }
}
