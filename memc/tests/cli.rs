//! The `memc` binary against real memcached processes: stdout, stderr and exit codes.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use libmemcached::testing::{Memcached, Nutcracker};
use libmemcached::{Behavior, Client, Distribution};

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs memc with `args`, only the environment variables given (of its own), and `stdin`.
fn memc_with(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_memc"));
    command
        .args(args)
        .env_remove("MEMCACHED_SERVERS")
        .env_remove("MEMCACHED_USERNAME")
        .env_remove("MEMCACHED_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("memc runs");
    // memc stops reading stdin past the item size limit, so the rest may find no reader.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let output = child.wait_with_output().unwrap();
    Run {
        code: output
            .status
            .code()
            .expect("memc exits, never killed by a signal"),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs memc against `spec`, given with --servers.
fn memc(spec: &str, args: &[&str]) -> Run {
    let mut all = vec!["--servers", spec];
    all.extend_from_slice(args);
    memc_with(&all, &[], b"")
}

/// Asserts the exit code and exact stdout, and an empty stderr.
#[track_caller]
fn expect(run: Run, code: i32, stdout: &str) {
    assert_eq!(
        (run.code, run.out().as_str(), run.stderr.as_str()),
        (code, stdout, ""),
    );
}

/// Asserts exit code 2, nothing on stdout, and stderr containing `needle`.
#[track_caller]
fn expect_error(run: Run, needle: &str) {
    assert_eq!(
        run.code,
        2,
        "stdout {:?} stderr {:?}",
        run.out(),
        run.stderr
    );
    assert!(
        run.stderr.contains(needle),
        "{:?} lacks {needle:?}",
        run.stderr
    );
}

#[test]
fn storage_commands_report_stored_or_not_with_exit_codes() {
    let server = common::own_server();
    let s = server.spec();
    let s = s.as_str();
    expect(memc(s, &["set", "k", "hello"]), 0, "STORED\n");
    expect(memc(s, &["get", "k"]), 0, "hello\n");
    expect(memc(s, &["add", "k", "again"]), 1, "NOT_STORED\n");
    expect(memc(s, &["add", "new", "first", "100"]), 0, "STORED\n");
    expect(memc(s, &["replace", "missing", "x"]), 1, "NOT_STORED\n");
    expect(memc(s, &["replace", "k", "world"]), 0, "STORED\n");
    expect(memc(s, &["append", "k", "!"]), 0, "STORED\n");
    expect(memc(s, &["prepend", "k", "hello "]), 0, "STORED\n");
    expect(memc(s, &["prepend", "missing", "x"]), 1, "NOT_STORED\n");
    expect(memc(s, &["get", "k"]), 0, "hello world!\n");

    let gets = memc(s, &["gets", "k"]);
    assert_eq!(gets.code, 0);
    let out = gets.out();
    let (value, cas) = out.trim_end().split_once("\ncas ").unwrap();
    assert_eq!(value, "hello world!");
    expect(memc(s, &["cas", "k", "swapped", cas]), 0, "STORED\n");
    expect(memc(s, &["cas", "k", "stale", cas]), 1, "NOT_STORED\n");
    expect(memc(s, &["get", "k"]), 0, "swapped\n");

    expect(memc(s, &["touch", "k", "3600"]), 0, "TOUCHED\n");
    expect(memc(s, &["touch", "missing", "10"]), 1, "NOT_FOUND\n");
    expect(memc(s, &["delete", "k"]), 0, "DELETED\n");
    expect(memc(s, &["delete", "k"]), 1, "NOT_FOUND\n");
    // A miss prints nothing, so `$(memc get k)` is empty; the exit code says it.
    expect(memc(s, &["get", "k"]), 1, "");
    expect(memc(s, &["gets", "k"]), 1, "");

    // What memc stores, the library (and pylibmc) reads as text.
    let mc = Client::new([s]).unwrap();
    assert_eq!(mc.get::<String>("new").unwrap().as_deref(), Some("first"));
    assert_eq!(
        common::raw_get(s, "new").unwrap().0,
        16,
        "pylibmc's text flag"
    );
}

#[test]
fn counters_print_their_value_and_misses_exit_1() {
    let server = common::own_server();
    let s = server.spec();
    let s = s.as_str();
    expect(memc(s, &["incr", "n"]), 1, "NOT_FOUND\n");
    expect(memc(s, &["set", "n", "10"]), 0, "STORED\n");
    expect(memc(s, &["incr", "n"]), 0, "11\n");
    expect(memc(s, &["incr", "n", "9"]), 0, "20\n");
    expect(memc(s, &["decr", "n", "25"]), 0, "0\n");
    expect(memc(s, &["--json", "incr", "n", "5"]), 0, "{\"value\":5}\n");
    expect(
        memc(s, &["--json", "decr", "none"]),
        1,
        "{\"value\":null}\n",
    );
    expect_error(memc(s, &["incr", "n", "-1"]), "DELTA");
    expect(memc(s, &["set", "word", "abc"]), 0, "STORED\n");
    expect_error(memc(s, &["incr", "word"]), "non-numeric");
}

#[test]
fn values_print_decoded_by_their_flags() {
    let server = common::own_server();
    let s = server.spec();
    let s = s.as_str();
    let mc = Client::new([s]).unwrap();
    mc.set("int", 42u64, 0).unwrap();
    mc.set(
        "big",
        libmemcached::Value::BigInt("123456789012345678901234567890123456789012".into()),
        0,
    )
    .unwrap();
    mc.set("text", "naïve", 0).unwrap();
    common::raw_set(s, "bytes", 0, b"\x00\xffraw");
    common::raw_set(s, "pickle", 1, b"\x80\x04K*.");
    common::raw_set(s, "bad-text", 16, b"\xff\xfe");

    expect(memc(s, &["get", "int"]), 0, "42\n");
    expect(
        memc(s, &["get", "big"]),
        0,
        "123456789012345678901234567890123456789012\n",
    );
    expect(memc(s, &["get", "text"]), 0, "naïve\n");
    let raw = memc(s, &["get", "bytes"]);
    assert_eq!(
        (raw.code, raw.stdout.as_slice()),
        (0, &b"\x00\xffraw\n"[..])
    );
    let bad = memc(s, &["get", "bad-text"]);
    assert_eq!(bad.stdout, b"\xff\xfe\n", "shown as stored, not an error");

    expect(
        memc(
            s,
            &[
                "--json", "get", "int", "text", "bytes", "pickle", "bad-text", "nope",
            ],
        ),
        1,
        "{\"int\":42,\"text\":\"naïve\",\"bytes\":{\"flags\":0,\"hex\":\"00ff726177\"},\
         \"pickle\":{\"flags\":1,\"pickle_hex\":\"80044b2a2e\"},\
         \"bad-text\":{\"flags\":16,\"hex\":\"fffe\"}}\n",
    );
    expect(
        memc(s, &["get", "int", "nope", "text"]),
        1,
        "int\t42\ntext\tnaïve\n",
    );
    expect(
        memc(s, &["get", "int", "text"]),
        0,
        "int\t42\ntext\tnaïve\n",
    );

    // `-` stores stdin's bytes, as bytes.
    let run = memc_with(
        &["-s", s, "set", "from-stdin", "-"],
        &[],
        b"\x01\x02 line\n",
    );
    expect(run, 0, "STORED\n");
    assert_eq!(
        common::raw_get(s, "from-stdin"),
        Some((0, b"\x01\x02 line\n".to_vec()))
    );
}

#[test]
fn json_output_covers_every_reading_command() {
    let servers = [common::own_server(), common::own_server()];
    let list = format!("{},{}", servers[0].spec(), servers[1].spec());
    let s = list.as_str();
    let j = |args: &[&str]| {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        memc(s, &all)
    };
    expect(j(&["set", "k", "v\"q"]), 0, "{\"stored\":true}\n");
    expect(j(&["add", "k", "v"]), 1, "{\"stored\":false}\n");
    expect(j(&["get", "k"]), 0, "{\"k\":\"v\\\"q\"}\n");
    expect(j(&["get", "nope"]), 1, "{}\n");
    let gets = j(&["gets", "k"]).out();
    assert!(
        gets.starts_with("{\"k\":{\"value\":\"v\\\"q\",\"cas\":"),
        "{gets}"
    );
    expect(j(&["delete", "k"]), 0, "{\"deleted\":true}\n");
    expect(j(&["touch", "k", "1"]), 1, "{\"touched\":false}\n");
    expect(j(&["flush"]), 0, "{\"flushed\":true}\n");

    let mc = Client::new(servers.iter().map(Memcached::spec)).unwrap();
    let owner = mc.server_for_key("placed").unwrap().to_string();
    expect(
        j(&["server-for", "placed"]),
        0,
        &format!("{{\"key\":\"placed\",\"server\":\"{owner}\"}}\n"),
    );
    let version = libmemcached::testing::get_version(&servers[0].spec()).unwrap();
    expect(
        j(&["version"]),
        0,
        &format!(
            "{{\"{}\":\"{version}\",\"{}\":\"{version}\"}}\n",
            servers[0].spec(),
            servers[1].spec()
        ),
    );
    let stats = j(&["stats"]).out();
    for server in &servers {
        assert!(
            stats.contains(&format!(
                "\"{}\":{{\"pid\":\"{}\"",
                server.spec(),
                server.pid().unwrap()
            )),
            "{stats}"
        );
    }
    let ping = j(&["ping"]).out();
    assert!(ping.contains("\"alive\":true,\"version\""), "{ping}");
}

/// Three memcached processes of this test's own, and their specs.
fn three_servers() -> ([Memcached; 3], Vec<String>) {
    let servers = [
        common::own_server(),
        common::own_server(),
        common::own_server(),
    ];
    let list = servers.iter().map(Memcached::spec).collect();
    (servers, list)
}

#[test]
fn server_for_names_the_server_that_holds_the_key() {
    let (_servers, list) = three_servers();
    let s = list.join(",");
    let mut owners = std::collections::HashSet::new();
    for i in 0..30 {
        let key = format!("where-{i}");
        expect(memc(&s, &["set", &key, "here"]), 0, "STORED\n");
        let owner = memc(&s, &["server-for", &key]).out().trim_end().to_owned();
        let direct = Client::new([owner.as_str()]).unwrap();
        assert_eq!(direct.get::<String>(&key).unwrap().as_deref(), Some("here"));
        owners.insert(owner);
    }
    assert_eq!(owners.len(), 3);
}

#[test]
fn behaviors_by_pylibmc_name_change_where_keys_go() {
    let (_servers, list) = three_servers();
    let s = list.join(",");
    let ketama = Client::builder()
        .servers(&list)
        .behavior(Behavior::Distribution(Distribution::ConsistentKetama))
        .build()
        .unwrap();
    let modula = Client::new(&list).unwrap();
    let mut differ = 0;
    for i in 0..30 {
        let key = format!("b-{i}");
        let run = memc(
            &s,
            &["-B", "distribution=consistent ketama", "server-for", &key],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        let expected = ketama.server_for_key(&key).unwrap().to_string();
        assert_eq!(run.out().trim_end(), expected);
        differ += usize::from(modula.server_for_key(&key).unwrap().to_string() != expected);
    }
    assert!(differ > 0, "the behavior made a difference");
    expect_error(
        memc(&s, &["-B", "no_such_behavior=1", "get", "k"]),
        "no_such_behavior",
    );
    expect_error(
        memc(&s, &["-B", "connect_timeout=soon", "get", "k"]),
        "connect_timeout",
    );
}

#[test]
fn servers_come_from_the_flag_or_the_environment() {
    let a = common::own_server();
    let b = common::own_server();
    let env = [("MEMCACHED_SERVERS", a.spec())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    expect(
        memc_with(&["set", "where", "env"], &env, b""),
        0,
        "STORED\n",
    );
    expect(
        memc_with(&["--servers", &b.spec(), "set", "where", "flag"], &env, b""),
        0,
        "STORED\n",
    );
    let read = |spec: String| Client::new([spec]).unwrap().get::<String>("where").unwrap();
    assert_eq!(read(a.spec()).as_deref(), Some("env"));
    assert_eq!(read(b.spec()).as_deref(), Some("flag"), "--servers wins");
    expect(
        memc_with(
            &[&format!("--servers={}", b.spec()), "get", "where"],
            &[],
            b"",
        ),
        0,
        "flag\n",
    );
    expect_error(memc_with(&["get", "where"], &[], b""), "no servers");
}

#[test]
fn errors_go_to_stderr_with_exit_code_2() {
    let mut server = common::own_server();
    let s = server.spec();
    let s = s.as_str();
    expect_error(memc(s, &["get", "a key"]), "invalid key");
    expect_error(memc(s, &["frobnicate"]), "unknown command");
    expect_error(memc(s, &["set", "k"]), "usage: set KEY VALUE [EXPTIME]");
    expect_error(memc(s, &["set", "k", "v", "soon"]), "EXPTIME");
    expect_error(memc(s, &["cas", "k", "v", "token"]), "CAS");
    expect_error(
        memc(s, &["--username", "u", "get", "k"]),
        "both a username and a password",
    );
    expect_error(memc_with(&["--bogus"], &[], b""), "unknown option --bogus");
    expect_error(memc_with(&[], &[], b""), "no command");
    expect_error(memc("[::1", &["get", "k"]), "invalid server spec");

    // Read up to the servers' item size limit and no further.
    let big = vec![b'x'; 2 << 20];
    expect_error(
        memc_with(&["-s", s, "set", "big", "-"], &[], &big),
        "stdin: more than the servers' item size limit (1048576 bytes)",
    );
    let near = vec![b'x'; 1 << 20];
    expect_error(
        memc_with(&["-s", s, "set", "big", "-"], &[], &near),
        "too big",
    );

    server.stop();
    let run = memc(s, &["get", "k"]);
    expect_error(run, s);
    let run = memc(s, &["ping"]);
    assert_eq!(run.code, 2);
    assert_eq!(run.out(), format!("{s} down\n"));
    assert!(run.stderr.contains("did not answer"), "{}", run.stderr);
}

#[test]
fn flush_stats_version_and_ping_talk_to_every_server() {
    let servers = [common::own_server(), common::own_server()];
    let list = format!("{},{}", servers[0].spec(), servers[1].spec());
    let s = list.as_str();
    for i in 0..10 {
        memc(s, &["set", &format!("f{i}"), "v"]);
    }
    let version = libmemcached::testing::get_version(&servers[0].spec()).unwrap();
    expect(
        memc(s, &["version"]),
        0,
        &format!(
            "{} {version}\n{} {version}\n",
            servers[0].spec(),
            servers[1].spec()
        ),
    );
    let stats = memc(s, &["stats"]).out();
    assert!(
        stats.starts_with(&format!(
            "{}\n  pid {}\n",
            servers[0].spec(),
            servers[0].pid().unwrap()
        )),
        "{stats}"
    );
    assert!(
        stats.contains(&format!("\n{}\n  pid ", servers[1].spec())),
        "{stats}"
    );
    let settings = memc(s, &["stats", "settings"]).out();
    assert!(settings.contains("  maxbytes "), "{settings}");
    let items: u64 = servers
        .iter()
        .map(|m| m.stat("curr_items").unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(items, 10);

    expect(memc(s, &["flush"]), 0, "OK\n");
    expect(memc(s, &["get", "f1"]), 1, "");
    let ping = memc(s, &["ping"]);
    assert_eq!(ping.code, 0, "{}", ping.stderr);
    let lines: Vec<String> = ping.out().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2);
    for (line, server) in lines.iter().zip(&servers) {
        assert!(
            line.starts_with(&format!("{} alive {version} (", server.spec())),
            "{line}"
        );
    }
}

#[test]
fn the_shell_reads_commands_from_stdin() {
    let server = common::own_server();
    let s = server.spec();
    let script = "set greeting \"hello there\"\n\
                  get greeting\n\
                  \n\
                  get missing\n\
                  incr hits\n\
                  set hits 41\n\
                  incr hits\n\
                  server-for greeting\n\
                  quit\n\
                  get greeting\n";
    let run = memc_with(&["-s", &s, "shell"], &[], script.as_bytes());
    expect(
        run,
        0,
        &format!("STORED\nhello there\nNOT_FOUND\nNOT_FOUND\nSTORED\n42\n{s}\n"),
    );

    // Errors are reported and the session goes on; the exit code remembers them.
    let script = "get 'a b'\nnope\nset k \"open\nset k fine\nget k\n";
    let run = memc_with(&["-s", &s, "--json", "shell"], &[], script.as_bytes());
    assert_eq!(run.code, 2);
    assert_eq!(run.out(), "{\"stored\":true}\n{\"k\":\"fine\"}\n");
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert!(errors[0].contains("invalid key"), "{errors:?}");
    assert!(errors[1].contains("unknown command"), "{errors:?}");
    assert!(errors[2].contains("unclosed"), "{errors:?}");

    let run = memc_with(&["-s", &s, "shell"], &[], b"set k -\nhelp\n");
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("stdin"), "{}", run.stderr);
    assert!(
        run.out().contains("server-for KEY"),
        "help lists the commands"
    );
}

#[test]
fn sasl_credentials_from_flags_or_the_environment() {
    if !common::available("libmemcached with SASL", libmemcached::support_sasl()) {
        return;
    }
    let server = Memcached::builder()
        .sasl("cliuser", "cli-pass")
        .start()
        .unwrap();
    let s = server.spec();
    let s = s.as_str();
    expect(
        memc(s, &["-u", "cliuser", "-p", "cli-pass", "set", "k", "v"]),
        0,
        "STORED\n",
    );
    expect(
        memc_with(
            &["-s", s, "get", "k"],
            &[
                ("MEMCACHED_USERNAME", "cliuser"),
                ("MEMCACHED_PASSWORD", "cli-pass"),
            ],
            b"",
        ),
        0,
        "v\n",
    );
    expect_error(
        memc(s, &["-u", "cliuser", "-p", "wrong", "get", "k"]),
        "AUTHENTICATION FAILURE",
    );
    expect_error(memc(s, &["--binary", "get", "k"]), "requires SASL");
}

#[test]
fn help_and_version_exit_0() {
    let help = memc_with(&["--help"], &[], b"");
    assert_eq!(help.code, 0);
    assert!(help.out().starts_with("usage: memc"));
    for command in [
        "get KEY",
        "server-for KEY",
        "shell",
        "ping",
        "stats [GROUP]",
    ] {
        assert!(help.out().contains(command), "{command}");
    }
    let version = memc_with(&["-V"], &[], b"");
    assert_eq!(version.code, 0);
    assert!(
        version.out().starts_with(&format!(
            "memc {} (libmemcached-rs",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        version.out()
    );
}

#[test]
fn help_needs_no_server() {
    for (args, usage) in [
        (&["help"][..], "usage: memc [OPTIONS] COMMAND"),
        (&["--help"][..], "usage: memc [OPTIONS] COMMAND"),
        (&["get", "--help"][..], "memc get KEY..."),
        (&["help", "set"][..], "memc set KEY VALUE [EXPTIME]"),
        (&["cas", "-h"][..], "memc cas KEY VALUE CAS [EXPTIME]"),
    ] {
        let run = memc_with(args, &[], b"");
        assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{args:?}");
        assert!(run.out().contains(usage), "{args:?}: {}", run.out());
    }
    let help = memc_with(&["help"], &[], b"").out();
    assert!(help.contains("set KEY VALUE [EXPTIME]"), "{help}");
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    for (args, message) in [
        (&["frobnicate"][..], "unknown command \"frobnicate\""),
        (
            &["stat"][..],
            "unknown command \"stat\" (did you mean \"stats\"?)",
        ),
        (&["get"][..], "missing KEY; usage: get KEY..."),
        (
            &["touch", "k"][..],
            "missing EXPTIME; usage: touch KEY EXPTIME",
        ),
        (
            &["delete", "k", "extra"][..],
            "unexpected argument \"extra\"",
        ),
        (&["--servers"][..], "--servers needs a value"),
    ] {
        let run = memc_with(args, &[], b"");
        assert_eq!(run.out(), "", "{args:?}");
        expect_error(run, message);
    }

    let server = common::own_server();
    let s = server.spec();
    let script = "touch k\nhelp touch\nset k v\n";
    let run = memc_with(&["-s", &s, "shell"], &[], script.as_bytes());
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .starts_with("error: missing EXPTIME; usage: touch KEY EXPTIME\n"),
        "{}",
        run.stderr
    );
    assert!(
        run.out().starts_with("Set a new expiration time"),
        "{}",
        run.out()
    );
    assert!(
        run.out().contains("Usage: touch KEY EXPTIME\n"),
        "{}",
        run.out()
    );
    assert!(run.out().ends_with("STORED\n"), "{}", run.out());
}

#[test]
fn through_a_proxy_keys_work_and_what_it_cannot_serve_is_refused() {
    let servers: Vec<Memcached> = (0..2).map(|_| Memcached::start().unwrap()).collect();
    let specs: Vec<String> = servers.iter().map(Memcached::spec).collect();
    let proxy = Nutcracker::start(&specs).expect("nutcracker starts (install Debian's nutcracker)");
    let s = proxy.spec();
    expect(memc(&s, &["--proxy", "set", "k", "v"]), 0, "STORED\n");
    expect(memc(&s, &["--proxy", "get", "k"]), 0, "v\n");
    expect_error(
        memc(&s, &["--proxy", "stats"]),
        "not supported through a proxy",
    );
    expect_error(
        memc(&s, &["--proxy", "--binary", "get", "k"]),
        "not supported through a proxy",
    );
    // Without --proxy, twemproxy closes the connection on the command: the error says so,
    // rather than that nothing listens there.
    for command in ["stats", "flush"] {
        expect_error(memc(&s, &[command]), "use --proxy");
    }
    let closed = common::listener().local_addr().unwrap().to_string();
    expect_error(memc(&closed, &["get", "k"]), "nothing listens there");
}

#[test]
fn tls_flags_reach_a_tls_server_and_its_refusals_say_why() {
    let files = common::tls_files();
    let server = common::tls_server(&files, libmemcached::testing::ServerCert::Good);
    let ca = files.ca_cert().to_str().unwrap();
    let spec = server.spec();
    let key = common::key("memc-tls");
    expect(
        memc(&spec, &["--tls-ca", ca, "set", &key, "over tls"]),
        0,
        "STORED\n",
    );
    expect(memc(&spec, &["--tls-ca", ca, "get", &key]), 0, "over tls\n");
    // The system's authorities do not know the test CA.
    let refused = memc(&spec, &["--tls", "get", &key]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!(
            "{spec}: TLS: the server's certificate is not signed"
        )),
        "{}",
        refused.stderr
    );
    // The shield alone, on the plaintext port.
    expect(
        memc(&server.plain_spec(), &["--shield", "get", &key]),
        0,
        "over tls\n",
    );
}
