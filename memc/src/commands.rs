//! Running commands against a client, one at a time or from the shell.

use std::io::{self, BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::error::ErrorKind;
use libmemcached::value::flags;
use libmemcached::{Client, Encoded, FromValue, Value};

use crate::args::{self, Command, Options};
use crate::output::Output;
use crate::{Failure, Outcome, Status, usage};
use crate::{monitor, ops};

/// A client for `servers` with these options.
pub fn client(options: &Options, servers: &[&str]) -> Result<Client, Failure> {
    let mut builder = Client::builder().servers(servers).binary(options.binary);
    if options.proxy {
        builder = builder.proxy();
    }
    let tls = options.tls || options.tls_ca.is_some() || options.tls_cert.is_some();
    #[cfg(feature = "tls")]
    {
        if options.shield {
            builder = builder.shield();
        }
        if tls {
            let mut config = libmemcached::Tls::new();
            if let Some(ca) = &options.tls_ca {
                config = config.ca_file(ca);
            }
            if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
                config = config.client_cert(cert, key);
            }
            builder = builder.tls(config);
        }
    }
    #[cfg(not(feature = "tls"))]
    if tls || options.shield {
        return Err(usage(
            "this memc was built without TLS and the shield (feature tls)",
        ));
    }
    match (options.username(), options.password()) {
        (Some(user), Some(password)) => builder = builder.sasl(user, password),
        (None, None) => {}
        _ => {
            return Err(usage(
                "SASL needs both a username and a password (--username and --password)",
            ));
        }
    }
    let client = builder.build()?;
    client.set_behaviors_by_name(
        options
            .behaviors
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str())),
    )?;
    Ok(client)
}

/// Runs the command given on the command line.
pub fn run(mc: &Client, options: &Options, command: Command, out: &mut dyn Write) -> Outcome {
    match command {
        Command::Shell => shell(mc, options, &mut io::stdin().lock(), out),
        command => execute(mc, options, command, out, false),
    }
}

/// Reads commands from `input` until EOF or `quit`. Errors are printed and the session goes
/// on; the status is 2 if any command failed, else 0.
fn shell(mc: &Client, options: &Options, input: &mut dyn BufRead, out: &mut dyn Write) -> Outcome {
    let interactive = io::stdin().is_terminal();
    if interactive {
        let servers: Vec<String> = mc.servers().iter().map(|s| s.to_string()).collect();
        let protocol = if mc.is_binary() { "binary" } else { "ascii" };
        writeln!(
            out,
            "memc shell on {} ({protocol}); `help` lists commands, `quit` or Ctrl-D leaves",
            servers.join(", "),
        )?;
    }
    let mut parser = args::shell_parser();
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
            Some(_) => {}
        }
        let command = match args::parse_line(&mut parser, &words) {
            Ok(command) => command,
            // `help` and `CMD --help` come back from clap as errors of their own kind.
            Err(err) if err.kind() == ErrorKind::DisplayHelp => {
                writeln!(out, "{}", err.to_string().trim())?;
                continue;
            }
            Err(err) => {
                eprintln!("error: {}", args::describe(&err));
                failed = true;
                continue;
            }
        };
        if let Err(err) = execute(mc, options, command, out, true) {
            if err.is_broken_pipe() {
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

/// Runs one command and prints its result.
fn execute(
    mc: &Client,
    options: &Options,
    command: Command,
    out: &mut dyn Write,
    in_shell: bool,
) -> Outcome {
    let mut output = Output::new(out, options.json, in_shell);
    match command {
        Command::Get { keys } => get(mc, &keys, &mut output),
        Command::Gets { key } => match mc.gets::<(Vec<u8>, u32)>(&key)? {
            Some(((data, flags), cas)) => {
                output.value_with_cas(&key, &decode(data, flags), cas)?;
                Ok(Status::Ok)
            }
            None => miss(&mut output),
        },
        Command::Set(store) => {
            let value = value_arg(mc, &store.value, in_shell)?;
            mc.set(&store.key, &value, store.exptime.unwrap_or(0))?;
            stored(&mut output, true)
        }
        Command::Add(store) => {
            let value = value_arg(mc, &store.value, in_shell)?;
            let done = mc.add(&store.key, &value, store.exptime.unwrap_or(0))?;
            stored(&mut output, done)
        }
        Command::Replace(store) => {
            let value = value_arg(mc, &store.value, in_shell)?;
            let done = mc.replace(&store.key, &value, store.exptime.unwrap_or(0))?;
            stored(&mut output, done)
        }
        Command::Append(concat) => {
            let value = value_arg(mc, &concat.value, in_shell)?;
            stored(&mut output, mc.append(&concat.key, &value.data)?)
        }
        Command::Prepend(concat) => {
            let value = value_arg(mc, &concat.value, in_shell)?;
            stored(&mut output, mc.prepend(&concat.key, &value.data)?)
        }
        Command::Cas {
            key,
            value,
            cas,
            exptime,
        } => {
            let value = value_arg(mc, &value, in_shell)?;
            let done = mc.cas(&key, &value, cas, exptime.unwrap_or(0))?;
            stored(&mut output, done)
        }
        Command::Delete { key } => {
            let deleted = mc.delete(&key)?;
            output.done("deleted", "DELETED", deleted)?;
            Ok(found(deleted))
        }
        Command::Touch { key, exptime } => {
            let touched = mc.touch(&key, exptime)?;
            output.done("touched", "TOUCHED", touched)?;
            Ok(found(touched))
        }
        Command::Incr(counter) => count(mc.incr(&counter.key, counter.delta.unwrap_or(1)), output),
        Command::Decr(counter) => count(mc.decr(&counter.key, counter.delta.unwrap_or(1)), output),
        Command::Flush { delay } => {
            mc.flush_all(delay.map(|s| Duration::from_secs(s.into())))?;
            output.flushed()?;
            Ok(Status::Ok)
        }
        Command::Stats { group } => {
            output.stats(&mc.stats(group.as_deref())?)?;
            Ok(Status::Ok)
        }
        Command::Version => {
            output.versions(&mc.version()?)?;
            Ok(Status::Ok)
        }
        Command::Ping => ping(mc, options, output),
        Command::ServerFor { key } => {
            output.server_for(&key, &mc.server_for_key(&key)?)?;
            Ok(Status::Ok)
        }
        Command::Shell => Err(usage("already in the shell")),
        Command::Whereis { keys } => ops::whereis(mc, &keys, options.json, output.raw()),
        Command::Ring(ring) => ops::ring(options, &ring, options.json, output.raw()),
        Command::Explain { code } => ops::explain(&code, options.json, output.raw()),
        Command::Dump { prefix } => ops::dump(mc, options, prefix.as_deref(), output.raw()),
        Command::Cp { files, exptime } => ops::cp(mc, &files, exptime, output.raw()),
        Command::Analyze => monitor::analyze(mc, options.json, output.raw()),
        Command::Top(top) => monitor::top(mc, &top, options.json, output.raw()),
        Command::Load(load) => monitor::load(mc, &load, options.json, output.raw()),
    }
}

fn found(found: bool) -> Status {
    if found { Status::Ok } else { Status::Miss }
}

fn get(mc: &Client, keys: &[String], output: &mut Output) -> Outcome {
    if let [key] = keys {
        return match mc.get::<(Vec<u8>, u32)>(key)? {
            Some((data, flags)) => {
                output.value(key, &decode(data, flags))?;
                Ok(Status::Ok)
            }
            None => miss(output),
        };
    }
    let found = mc.get_multi::<&str, (Vec<u8>, u32)>(keys.iter().map(String::as_str))?;
    // A key asked for twice is printed twice, as it was asked.
    let values: Vec<(&str, Value)> = keys
        .iter()
        .filter_map(|key| {
            let (data, flags) = found.get(key.as_str())?;
            Some((key.as_str(), decode(data.clone(), *flags)))
        })
        .collect();
    output.values(&values)?;
    Ok(self::found(values.len() == keys.len()))
}

fn miss(output: &mut Output) -> Outcome {
    output.miss()?;
    Ok(Status::Miss)
}

fn stored(output: &mut Output, stored: bool) -> Outcome {
    output.stored(stored)?;
    Ok(found(stored))
}

fn count(result: libmemcached::Result<u64>, mut output: Output) -> Outcome {
    match result {
        Ok(n) => {
            output.counter(Some(n))?;
            Ok(Status::Ok)
        }
        Err(err) if err.is_not_found() => {
            output.counter(None)?;
            Ok(Status::Miss)
        }
        Err(err) => Err(err.into()),
    }
}

/// Asks each server on a connection of its own, so one that is down shows as such.
fn ping(mc: &Client, options: &Options, output: Output) -> Outcome {
    let servers = mc.servers();
    let mut report = output.ping();
    let mut down = 0;
    for server in &servers {
        let spec = server.to_string();
        let started = Instant::now();
        let answer =
            client(options, &[spec.as_str()]).and_then(|c| c.version().map_err(Failure::from));
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match answer {
            Ok(versions) => {
                let version = versions.first().map(|(_, v)| v.as_str()).unwrap_or("");
                report.alive(&spec, version, ms)?;
            }
            Err(err) => {
                down += 1;
                let err = err.to_string();
                report.down(&spec, &err)?;
                match err.starts_with(&spec) {
                    true => eprintln!("memc: {err}"),
                    false => eprintln!("memc: {spec}: {err}"),
                }
            }
        }
    }
    report.finish()?;
    if down > 0 {
        return Err(usage(format!(
            "{down} of {} servers did not answer",
            servers.len()
        )));
    }
    Ok(Status::Ok)
}

/// A value argument: text, or the bytes of stdin for `-` (at most the servers' item size
/// limit).
fn value_arg(mc: &Client, arg: &str, in_shell: bool) -> Result<Encoded<'static>, Failure> {
    if arg == "-" {
        if in_shell {
            return Err(usage(
                "'-' reads stdin, which the shell reads commands from",
            ));
        }
        let data = ops::read_bounded(io::stdin().lock(), ops::item_size_limit(mc)?, "stdin")?;
        return Ok(Encoded::owned(data, flags::BYTES));
    }
    Ok(Encoded::owned(arg.as_bytes().to_vec(), flags::TEXT))
}

/// The value decoded by its flags; bytes as stored when that fails (bad UTF-8 under the text
/// flag, say), so nothing stored is unreadable here.
fn decode(data: Vec<u8>, flags: u32) -> Value {
    match Value::from_value(&data, flags) {
        Ok(value) => value,
        Err(_) => Value::Other { flags, data },
    }
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
}
