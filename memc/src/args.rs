//! memc's command line, defined with clap. The shell parses each of its lines with the same
//! [`Command`]s.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

const ABOUT: &str = "A memcached client on libmemcached, compatible with pylibmc's value flags.";

// clap here does not wrap help text (that needs its wrap_help feature and more crates), so
// the option lines stay short and the details come in these notes, wrapped by hand.
const OPTION_NOTES: &str = "\
Servers: host[:port[:weight]], [v6]:port, /path/to/socket or udp:host:port.
Behaviors: pylibmc's names, e.g. -B connect_timeout=500 -B distribution=\"consistent ketama\".";

const NOTES: &str = "\
EXPTIME and DELAY are seconds (0: never). Exit codes: 0 success, 1 a miss or nothing stored,
2 an error (printed on stderr).
Output: what a server sends is escaped, so one line is one record and nothing reaches a
terminal that it would act on: in keys (dump), stats, versions and errors, \\ tab, newline
and CR as \\\\ \\t \\n \\r, other control characters as \\x1b (C0, DEL) or \\u{9b} (C1),
bytes that are not UTF-8 as \\xff. A single value goes to a pipe or file as stored, and to a
terminal with control characters escaped; the values of several keys are escaped as keys are,
a line per key (KEY, tab, VALUE). --json escapes them as JSON does, DEL and C1 too (\\u009b).";

#[derive(Debug, Parser)]
#[command(
    name = "memc",
    about = ABOUT,
    disable_version_flag = true,
    override_usage = "memc [OPTIONS] COMMAND [ARGS...]",
    // The commands come in the after-help, listed with their arguments.
    help_template = "usage: {usage}\n\n{about}\n\nOptions:\n{options}{after-help}"
)]
pub struct Cli {
    #[command(flatten)]
    pub options: Options,
    /// Print memc's and libmemcached's versions
    // Our own flag: clap's would print only memc's version.
    #[arg(short = 'V', long)]
    pub version: bool,
    // Optional so that -V needs no command; main reports a missing one.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options before the command.
#[derive(Debug, Args)]
pub struct Options {
    /// Comma-separated servers (see below)
    #[arg(short, long, value_name = "LIST", env = "MEMCACHED_SERVERS")]
    servers: Option<String>,
    /// Use the binary protocol
    #[arg(short, long)]
    pub binary: bool,
    /// The servers are proxies such as twemproxy (ASCII only; no stats or flush)
    #[arg(long)]
    pub proxy: bool,
    /// SASL username; implies --binary
    #[arg(short, long, value_name = "NAME", env = "MEMCACHED_USERNAME")]
    username: Option<String>,
    /// SASL password (safer in the environment, out of `ps`)
    #[arg(
        short,
        long,
        value_name = "PASS",
        env = "MEMCACHED_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// Put the shield between libmemcached and the servers: malformed replies close the
    /// connection instead of reaching libmemcached
    #[arg(long)]
    pub shield: bool,
    /// Speak TLS to the servers (implies --shield), trusting the system's CAs
    #[arg(long)]
    pub tls: bool,
    /// Trust only the CAs in this PEM file (implies --tls)
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Present this client certificate, a PEM file (implies --tls; needs --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key, a PEM file
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Set a behavior by pylibmc name (repeatable)
    #[arg(short = 'B', long = "behavior", value_name = "NAME=VALUE", value_parser = behavior)]
    pub behaviors: Vec<(String, String)>,
    /// Print results as JSON, one document per command
    #[arg(short, long)]
    pub json: bool,
}

impl Options {
    pub fn servers(&self) -> Vec<&str> {
        self.servers
            .iter()
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }

    // An empty variable counts as unset, as it did before clap.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref().filter(|s| !s.is_empty())
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref().filter(|s| !s.is_empty())
    }
}

/// One line of the shell: a command without options.
#[derive(Debug, Parser)]
#[command(name = "memc", no_binary_name = true, help_template = "{after-help}")]
pub struct ShellLine {
    #[command(subcommand)]
    pub command: Command,
}

// Keys and values may start with '-' (`set k -5`, `get -x`): only -h and --help before them
// stay flags, so `memc get --help` still shows help. Numbers take a '-' too, so that `incr k -1`
// is refused as a bad DELTA rather than as an unknown option.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print each value, decoded by its flags (several keys: KEY, a tab, VALUE)
    Get {
        #[arg(required = true, value_name = "KEY", allow_hyphen_values = true)]
        keys: Vec<String>,
    },
    /// Print the value, then its CAS token
    Gets {
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
    /// Store VALUE as text (VALUE - reads bytes from stdin)
    Set(Store),
    /// Store only if KEY is missing
    Add(Store),
    /// Store only if KEY exists
    Replace(Store),
    /// Add bytes after the value
    Append(Concat),
    /// Add bytes before the value
    Prepend(Concat),
    /// Store only if the CAS token (from gets) is current
    Cas {
        #[arg(allow_hyphen_values = true)]
        key: String,
        /// Text to store, or - for the bytes of stdin
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// The token from gets
        #[arg(value_parser = cas_token, allow_negative_numbers = true)]
        cas: u64,
        /// Seconds until it expires (0: never)
        #[arg(value_parser = seconds, allow_negative_numbers = true)]
        exptime: Option<u32>,
    },
    /// Remove KEY
    Delete {
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
    /// Add DELTA (default 1) to a counter and print it
    Incr(Counter),
    /// Subtract DELTA (default 1), stopping at 0
    Decr(Counter),
    /// Set a new expiration time
    Touch {
        #[arg(allow_hyphen_values = true)]
        key: String,
        /// Seconds until it expires (0: never)
        #[arg(value_parser = seconds, allow_negative_numbers = true)]
        exptime: u32,
    },
    /// Remove every item (after DELAY seconds)
    Flush {
        /// Seconds to wait
        #[arg(value_parser = seconds, allow_negative_numbers = true)]
        delay: Option<u32>,
    },
    /// Every server's statistics (or a group: settings, items, slabs...)
    Stats {
        /// A group: settings, items, slabs, sizes...
        group: Option<String>,
    },
    /// Every server's version
    Version,
    /// Check that every server answers, with the round trip
    Ping,
    /// The server KEY maps to
    ServerFor {
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
    /// Read these commands from stdin, one per line (quotes group words)
    Shell,
    /// The server each KEY maps to, and whether it holds the key
    Whereis {
        #[arg(required = true, value_name = "KEY", allow_hyphen_values = true)]
        keys: Vec<String>,
    },
    /// The share of keys that would move if a server were added or removed
    Ring(Ring),
    /// What a libmemcached return code (number or name) means
    Explain {
        /// A number (e.g. 3) or a name (e.g. CONNECTION_FAILURE)
        code: String,
    },
    /// Every key (escaped), a tab, its size, expiry and server (lru_crawler metadump)
    Dump {
        /// Only keys that start with this
        prefix: Option<String>,
    },
    /// Hit ratio, busiest and fullest servers, evictions and round trips, for the cluster
    Analyze,
    /// A per-server view refreshed each second: ops/s, hit ratio, evictions, memory
    Top(Top),
    /// Generate load and print ops/s with latency percentiles
    Load(Load),
    /// Store each FILE (at most the item size limit) under its file name
    Cp {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<std::path::PathBuf>,
        /// Seconds until they expire (0: never)
        #[arg(short, long, value_parser = seconds, default_value_t = 0)]
        exptime: u32,
    },
}

#[derive(Debug, Args)]
pub struct Ring {
    /// A server spec to add
    #[arg(long, value_name = "SPEC")]
    pub add: Vec<String>,
    /// A server spec to remove
    #[arg(long, value_name = "SPEC")]
    pub remove: Vec<String>,
    /// How many sample keys to place (at most 1000000)
    #[arg(long, default_value_t = 100_000, value_parser = whole_number)]
    pub keys: u64,
}

#[derive(Debug, Args)]
pub struct Top {
    /// Seconds between refreshes
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Stop after this many refreshes (default: until interrupted)
    #[arg(long, value_parser = whole_number)]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub struct Load {
    /// Seconds to run, storing the keys first included
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Threads, each with its own client
    #[arg(long, default_value_t = 4, value_parser = whole_number)]
    pub concurrency: u64,
    /// Percent of operations that are gets (the rest are sets)
    #[arg(long, default_value_t = 90, value_parser = whole_number)]
    pub get_percent: u64,
    /// How many distinct keys (at most 10000000)
    #[arg(long, default_value_t = 10_000, value_parser = whole_number)]
    pub keys: u64,
    /// Key length in bytes
    #[arg(long, default_value_t = 16, value_parser = whole_number)]
    pub key_size: u64,
    /// Value length in bytes (at most 1048576)
    #[arg(long, default_value_t = 100, value_parser = whole_number)]
    pub value_size: u64,
}

#[derive(Debug, Args)]
pub struct Store {
    #[arg(allow_hyphen_values = true)]
    pub key: String,
    /// Text to store, or - for the bytes of stdin
    #[arg(allow_hyphen_values = true)]
    pub value: String,
    /// Seconds until it expires (0: never)
    #[arg(value_parser = seconds, allow_negative_numbers = true)]
    pub exptime: Option<u32>,
}

#[derive(Debug, Args)]
pub struct Concat {
    #[arg(allow_hyphen_values = true)]
    pub key: String,
    /// Text to add, or - for the bytes of stdin
    #[arg(allow_hyphen_values = true)]
    pub value: String,
}

#[derive(Debug, Args)]
pub struct Counter {
    #[arg(allow_hyphen_values = true)]
    pub key: String,
    /// How much (default 1)
    #[arg(value_parser = whole_number, allow_negative_numbers = true)]
    pub delta: Option<u64>,
}

fn behavior(pair: &str) -> Result<(String, String), String> {
    let (name, value) = pair.split_once('=').ok_or("expected NAME=VALUE")?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

fn seconds(arg: &str) -> Result<u32, String> {
    arg.parse()
        .map_err(|_| "not a number of seconds".to_owned())
}

fn whole_number(arg: &str) -> Result<u64, String> {
    arg.parse().map_err(|_| "not a whole number".to_owned())
}

fn cas_token(arg: &str) -> Result<u64, String> {
    arg.parse().map_err(|_| "not a number".to_owned())
}

/// Parses memc's own arguments (without the program name).
pub fn parse(args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    let list = command_list(
        &Cli::command(),
        &[("help [COMMAND]", "this text, or a command's")],
    );
    let command = with_synopses(Cli::command(), "memc ")
        .after_help(format!("Commands:\n{list}\n{OPTION_NOTES}\n{NOTES}"))
        .no_binary_name(true);
    Cli::from_arg_matches(&command.try_get_matches_from(args)?)
}

/// The parser of shell lines, built once for the session.
pub fn shell_parser() -> clap::Command {
    let list = command_list(
        &ShellLine::command(),
        &[
            ("help [COMMAND]", "this list, or a command's usage"),
            ("quit", "leave the shell (so does Ctrl-D)"),
        ],
    );
    with_synopses(ShellLine::command(), "").after_help(format!("Commands:\n{list}\n{NOTES}"))
}

/// Parses one shell line, already split into words.
pub fn parse_line(parser: &mut clap::Command, words: &[String]) -> Result<Command, clap::Error> {
    let matches = parser.try_get_matches_from_mut(words)?;
    Ok(ShellLine::from_arg_matches(&matches)?.command)
}

/// `set KEY VALUE [EXPTIME]`: the command's positional arguments, as the commands list and
/// the usage errors show them (clap's own usage writes `<KEY>`).
fn synopsis(command: &clap::Command) -> String {
    let mut text = command.get_name().to_owned();
    for arg in command.get_positionals() {
        let name = arg
            .get_value_names()
            .and_then(|names| names.first())
            .map_or_else(|| arg.get_id().to_string(), ToString::to_string);
        let many = if matches!(arg.get_action(), ArgAction::Append) {
            "..."
        } else {
            ""
        };
        if arg.is_required_set() {
            text += &format!(" {name}{many}");
        } else {
            text += &format!(" [{name}{many}]");
        }
    }
    text
}

fn with_synopses(mut command: clap::Command, prefix: &str) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| {
            let usage = format!("{prefix}{}", synopsis(&sub));
            sub.override_usage(usage)
        });
    }
    command
}

fn synopsis_width(command: &clap::Command) -> usize {
    command
        .get_subcommands()
        .map(|sub| synopsis(sub).len())
        .max()
        .unwrap_or(0)
        + 2
}

/// The commands with their arguments, as the help before clap listed them, and `extra` lines
/// (name, what it does) after them.
fn command_list(command: &clap::Command, extra: &[(&str, &str)]) -> String {
    let width = synopsis_width(command);
    let mut list = String::new();
    for sub in command.get_subcommands() {
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        list += &format!("  {:<width$}{}\n", synopsis(sub), lowercase_first(&about));
    }
    for (name, about) in extra {
        list += &format!("  {name:<width$}{about}\n");
    }
    list
}

// Doc comments read as sentences; the list reads like the old one.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A clap error as one line in memc's words: the shell reports each failed line on one line,
/// and the messages stay those memc gave before clap.
pub fn describe(err: &clap::Error) -> String {
    let text = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        Some(ContextValue::StyledStr(s)) => Some(s.to_string()),
        _ => None,
    };
    // clap lists suggestions from the least to the most alike.
    let suggestion = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.last().cloned(),
        _ => None,
    };
    // Only a subcommand's usage is worth repeating; memc's own is in --help.
    let usage = text(ContextKind::Usage)
        .map(|u| u.trim().trim_start_matches("Usage:").trim().to_owned())
        .filter(|u| !u.starts_with("memc [OPTIONS]"))
        .map(|u| format!("; usage: {}", u.trim_start_matches("memc ")))
        .unwrap_or_default();
    let arg = text(ContextKind::InvalidArg).unwrap_or_default();
    match err.kind() {
        ErrorKind::InvalidSubcommand => {
            let name = text(ContextKind::InvalidSubcommand).unwrap_or_default();
            match suggestion(ContextKind::SuggestedSubcommand) {
                Some(like) => format!("unknown command {name:?} (did you mean {like:?}?)"),
                None => format!("unknown command {name:?}"),
            }
        }
        ErrorKind::MissingSubcommand => "no command given".to_owned(),
        ErrorKind::UnknownArgument if arg.starts_with('-') => {
            match suggestion(ContextKind::SuggestedArg) {
                Some(like) => format!("unknown option {arg} (did you mean {like}?){usage}"),
                None => format!("unknown option {arg}{usage}"),
            }
        }
        ErrorKind::UnknownArgument => format!("unexpected argument {arg:?}{usage}"),
        ErrorKind::MissingRequiredArgument => {
            let missing: Vec<String> = match err.get(ContextKind::InvalidArg) {
                Some(ContextValue::Strings(args)) => args.iter().map(|a| arg_name(a)).collect(),
                _ => Vec::new(),
            };
            format!("missing {}{usage}", missing.join(" "))
        }
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            let value = text(ContextKind::InvalidValue).unwrap_or_default();
            match std::error::Error::source(err) {
                Some(why) => format!("{} {value:?}: {why}", arg_name(&arg)),
                // clap's word for `--servers` at the end of the line.
                None if value.is_empty() => format!("{} needs a value", arg_name(&arg)),
                None => format!("{} {value:?} is not valid", arg_name(&arg)),
            }
        }
        _ => {
            let rendered = err.to_string();
            let first = rendered.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_owned()
        }
    }
}

/// `--behavior <NAME=VALUE>` → `--behavior`, `[EXPTIME]` → `EXPTIME`.
fn arg_name(arg: &str) -> String {
    let first = arg.split_whitespace().next().unwrap_or(arg);
    first
        .trim_end_matches("...")
        .trim_matches(['<', '>', '[', ']'])
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<std::ffi::OsString> {
        line.split_whitespace().map(Into::into).collect()
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
        ShellLine::command().debug_assert();
    }

    #[test]
    fn options_come_before_the_command() {
        let cli = parse(words("-b --behavior=tcp_nodelay=1 -j -s a:1,b:2, set k -5")).unwrap();
        assert!(cli.options.binary && cli.options.json);
        assert_eq!(cli.options.servers(), ["a:1", "b:2"]);
        assert_eq!(
            cli.options.behaviors,
            [("tcp_nodelay".to_owned(), "1".to_owned())]
        );
        let Some(Command::Set(store)) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!((store.key.as_str(), store.value.as_str()), ("k", "-5"));
        let Some(Command::Get { keys }) = parse(words("get -x --y")).unwrap().command else {
            panic!("keys may start with '-'")
        };
        assert_eq!(keys, ["-x", "--y"]);
    }

    #[test]
    fn errors_read_as_one_line() {
        let error = |line: &str| describe(&parse(words(line)).unwrap_err());
        assert_eq!(error("--servers"), "--servers needs a value");
        assert_eq!(error("--frobnicate"), "unknown option --frobnicate");
        assert_eq!(
            error("-B no-equals get k"),
            "--behavior \"no-equals\": expected NAME=VALUE"
        );
        assert_eq!(
            error("set k"),
            "missing VALUE; usage: set KEY VALUE [EXPTIME]"
        );
        assert_eq!(
            error("delete a b"),
            "unexpected argument \"b\"; usage: delete KEY"
        );
        assert_eq!(error("incr n -1"), "DELTA \"-1\": not a whole number");
        assert_eq!(
            error("stat"),
            "unknown command \"stat\" (did you mean \"stats\"?)"
        );
        let shell = |line: &str| {
            let words: Vec<String> = line.split_whitespace().map(Into::into).collect();
            describe(&parse_line(&mut shell_parser(), &words).unwrap_err())
        };
        assert_eq!(
            shell("touch k"),
            "missing EXPTIME; usage: touch KEY EXPTIME"
        );
    }
}
