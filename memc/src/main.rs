//! `memc`: a memcached command-line client on the `libmemcached` crate, with an interactive
//! `shell` like pylibmc's `python -m pylibmc`. Run `memc --help`.
//!
//! Exit codes: 0 success, 1 a miss or nothing stored, 2 an error (printed on stderr).
//!
//! What a server sends is escaped before it is printed (`output::escape`), so that a line is
//! one record in a pipe and nothing reaches a terminal that it would act on; a single value goes
//! to a pipe or a file as stored. Everything read from a server or a file is bounded: `dump` prints as it
//! reads, `cp` and `set KEY -` read at most the servers' item size limit, and every count and
//! size argument has a maximum.

mod args;
mod commands;
mod monitor;
mod ops;
mod output;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::error::ErrorKind;
use libmemcached::Error;

/// A command's outcome, which is also the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    Miss = 1,
}

/// Why a command failed (exit code 2).
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Memcached(Error),
    Io(io::Error),
}

// libmemcached's messages carry what a server said (a SERVER_ERROR's text): escaped, so that
// stderr on a terminal gets no control character from a server.
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |text: &str| output::escape(text.as_bytes(), output::Field).into_owned();
        match self {
            Failure::Usage(text) => f.write_str(text),
            Failure::Memcached(err) => f.write_str(&shown(&explained(err))),
            Failure::Io(err) => f.write_str(&shown(&err.to_string())),
        }
    }
}

/// An error in words a person can act on, keeping libmemcached's code: "127.0.0.1:1: could
/// not connect (refused, or nothing listens there) [CONNECTION FAILURE]".
fn explained(err: &Error) -> String {
    use libmemcached::ReturnCode as Code;
    if let Error::Multi { failures } = err {
        let each: Vec<String> = failures
            .iter()
            .map(|f| match f.keys.len() {
                0 => explained(&f.error),
                1 => format!("{} (1 key)", explained(&f.error)),
                n => format!("{} ({n} keys)", explained(&f.error)),
            })
            .collect();
        return each.join("; ");
    }
    let (Some(code), Some(server)) = (err.code(), err.server()) else {
        return err.to_string();
    };
    // What the shield's relay saw (TLS, a refused reply) says more than libmemcached's code.
    let text = err.to_string();
    let relay = ["TLS: ", "the shield closed", "a request the shield"]
        .iter()
        .find_map(|mark| text.find(mark).map(|at| &text[at..]));
    if let Some(relay) = relay {
        let relay = relay
            .rsplit_once(" for \"")
            .map_or(relay, |(reason, _)| reason);
        return format!("{server}: {relay} [{code}]");
    }
    let what = match code {
        Code::ConnectionFailure if text.contains("reset by peer") => {
            "the server closed the connection (reset)"
        }
        // twemproxy accepts a connection and closes it on a command it does not serve.
        Code::ConnectionFailure if accepts_connections(server) => {
            "the server accepted the connection and closed it (a twemproxy does on commands it \
             does not serve, such as stats and flush: use --proxy)"
        }
        Code::ConnectionFailure => "could not connect (refused, or nothing listens there)",
        Code::HostLookupFailure => "the host name does not resolve",
        Code::Timeout => "no answer within the poll timeout",
        Code::ServerMarkedDead | Code::ServerTemporarilyDisabled => {
            "skipped after failing; retried after the retry timeout"
        }
        Code::WriteFailure | Code::ReadFailure | Code::UnknownReadFailure => {
            "the connection broke during the request"
        }
        Code::AuthFailure | Code::AuthProblem | Code::AuthContinue => {
            return format!("{err} (check --username and --password)");
        }
        _ => return err.to_string(),
    };
    format!("{server}: {what} [{code}]")
}

/// Whether `server` takes a connection now (asked once a command failed to connect or was cut
/// off, to tell the two apart).
fn accepts_connections(server: &libmemcached::Address) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    let timeout = std::time::Duration::from_secs(1);
    match server.transport() {
        libmemcached::Transport::Tcp => (server.host(), server.port())
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .is_some_and(|addr| TcpStream::connect_timeout(&addr, timeout).is_ok()),
        libmemcached::Transport::Unix => {
            std::os::unix::net::UnixStream::connect(server.host()).is_ok()
        }
        _ => false,
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

impl Failure {
    /// A reader that went away (`memc stats | head`) needs no message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Failure::Io(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

pub type Outcome = Result<Status, Failure>;

pub fn usage(text: impl Into<String>) -> Failure {
    Failure::Usage(text.into())
}

fn main() -> ExitCode {
    let cli = match args::parse(std::env::args_os().skip(1).collect()) {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            // Help needs no server, so it is answered before any is looked for.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => return fail(&usage(args::describe(&err)), true),
    };
    if cli.version {
        let _ = writeln!(
            io::stdout(),
            "memc {} ({})",
            env!("CARGO_PKG_VERSION"),
            libmemcached::build_info()
        );
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        return fail(&usage("no command given"), true);
    };
    // Explaining a code needs no server.
    if let args::Command::Explain { code } = &command {
        let outcome = ops::explain(code, cli.options.json, &mut io::stdout().lock());
        return match outcome {
            Ok(status) => ExitCode::from(status as u8),
            Err(err) => fail(&err, false),
        };
    }
    let servers = cli.options.servers();
    if servers.is_empty() {
        return fail(
            &usage("no servers: pass --servers or set MEMCACHED_SERVERS"),
            false,
        );
    }
    let client = match commands::client(&cli.options, &servers) {
        Ok(client) => client,
        Err(err) => return fail(&err, false),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let outcome = commands::run(&client, &cli.options, command, &mut out)
        .and_then(|status| out.flush().map(|()| status).map_err(Failure::Io));
    match outcome {
        Ok(status) => ExitCode::from(status as u8),
        Err(err) => fail(&err, false),
    }
}

fn fail(err: &Failure, hint: bool) -> ExitCode {
    if !err.is_broken_pipe() {
        eprintln!("memc: {err}");
    }
    if hint && matches!(err, Failure::Usage(_)) {
        eprintln!("run `memc --help` for usage");
    }
    ExitCode::from(2)
}
