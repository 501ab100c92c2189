//! memc's operator commands against real memcached processes: whereis, ring, explain, dump,
//! cp, analyze, top and load, and errors a person can act on.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use libmemcached::testing::Memcached;
use libmemcached::{Behavior, Client, Distribution};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn memc(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_memc"))
        .args(args)
        .env_remove("MEMCACHED_SERVERS")
        .output()
        .expect("memc runs");
    Run {
        code: output.status.code().expect("memc exits"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn two_servers() -> (Memcached, Memcached, String) {
    let (a, b) = (common::own_server(), common::own_server());
    let list = format!("{},{}", a.spec(), b.spec());
    (a, b, list)
}

#[test]
fn whereis_names_the_clients_own_placement() {
    let (_a, _b, list) = two_servers();
    let specs: Vec<&str> = list.split(',').collect();
    let mc = Client::new(&specs).unwrap();
    mc.set("here", "1", 0).unwrap();
    let run = memc(&["-s", &list, "whereis", "here", "gone"]);
    assert_eq!(run.code, 1, "a missing key exits 1: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    for (line, key, state) in [(lines[0], "here", "found"), (lines[1], "gone", "missing")] {
        let server = mc.server_for_key(key).unwrap().to_string();
        assert_eq!(line, format!("{key}\t{server}\t{state}"));
    }
}

#[test]
fn ring_reports_the_share_of_keys_that_move() {
    let (_a, _b, list) = two_servers();
    let specs: Vec<&str> = list.split(',').collect();
    let third = "127.0.0.1:1";
    // "N of 20000 keys move (P %)": N, and P checked against it.
    let moved = |extra: &[&str]| -> usize {
        let mut args = vec!["-s", list.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["ring", "--add", third, "--keys", "20000"]);
        let run = memc(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let first = run.stdout.lines().next().unwrap().to_owned();
        let count: usize = first.split(' ').next().unwrap().parse().unwrap();
        let percent = first.split('(').nth(1).unwrap().split(' ').next().unwrap();
        assert_eq!(
            percent,
            format!("{:.1}", 100.0 * count as f64 / 20000.0),
            "{first}"
        );
        count
    };
    // Modula moves about two thirds going from 2 to 3 servers, ketama about a third.
    let modula = moved(&[]);
    let ketama = moved(&["-B", "distribution=consistent ketama"]);
    assert!((11_000..15_600).contains(&modula), "modula {modula}");
    assert!((4_000..9_000).contains(&ketama), "ketama {ketama}");

    // The figure is the client's own: count it here with two clients.
    let before = Client::builder()
        .servers(&specs)
        .behavior(Behavior::Distribution(Distribution::ConsistentKetama))
        .build()
        .unwrap();
    let mut all = specs.clone();
    all.push(third);
    let after = Client::builder()
        .servers(&all)
        .behavior(Behavior::Distribution(Distribution::ConsistentKetama))
        .build()
        .unwrap();
    let counted = (0..20000)
        .filter(|i| {
            let key = format!("memc:ring:{i}");
            before.server_for_key(&key).unwrap() != after.server_for_key(&key).unwrap()
        })
        .count();
    assert_eq!(counted, ketama);

    let run = memc(&["-s", &list, "ring", "--remove", "127.0.0.1:9"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("not one of the servers"),
        "{}",
        run.stderr
    );
}

#[test]
fn explain_needs_no_server() {
    let run = memc(&["explain", "CONNECTION_FAILURE"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("3 ConnectionFailure: CONNECTION FAILURE"),
        "{}",
        run.stdout
    );
    let run = memc(&["--json", "explain", "31"]);
    let doc: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(doc["name"], "Timeout");
    assert!(doc["kind"].as_str().unwrap().starts_with("timeout"));
    let run = memc(&["explain", "9999"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not a libmemcached return code"));
}

#[test]
fn dump_lists_keys_with_size_and_expiry_and_cp_stores_files() {
    let server = common::own_server();
    let spec = server.spec();
    let dir = std::env::temp_dir().join(format!("memc-cp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("greeting.txt");
    std::fs::write(&file, b"hello\n").unwrap();
    let run = memc(&["-s", &spec, "cp", file.to_str().unwrap()]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "greeting.txt\t6 bytes\n"),
        "{}",
        run.stderr
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let mc = Client::new([&spec]).unwrap();
    assert_eq!(
        mc.get::<Vec<u8>>("greeting.txt").unwrap().unwrap(),
        b"hello\n"
    );
    mc.set("user:1 x".replace(' ', "_"), "ada", 3600).unwrap();
    mc.set("other", "x", 0).unwrap();

    // lru_crawler needs a moment after the writes; retry briefly.
    let mut lines = Vec::new();
    for _ in 0..50 {
        let run = memc(&["-s", &spec, "dump", "user:"]);
        lines = run.stdout.lines().map(str::to_owned).collect();
        if !lines.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(fields[0], "user:1_x");
    assert!(fields[1].parse::<u64>().unwrap() > 3);
    let expires: u64 = fields[2].parse().expect("an expiry time");
    assert!(expires > 1_700_000_000);
    assert_eq!(fields[3], spec);
}

#[test]
fn analyze_top_and_load_report_the_cluster() {
    let (_a, _b, list) = two_servers();
    let run = memc(&[
        "-s",
        &list,
        "load",
        "--duration",
        "0.5",
        "--concurrency",
        "2",
        "--keys",
        "100",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let first = run.stdout.lines().next().unwrap();
    assert!(
        first.contains("ops/s") && first.contains("0 errors"),
        "{first}"
    );
    assert!(run.stdout.contains("p999"), "{}", run.stdout);

    let run = memc(&["-s", &list, "--json", "analyze"]);
    let doc: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(doc["servers"], 2);
    assert!(
        doc["items"].as_u64().unwrap() >= 100,
        "the load stored its keys"
    );
    let hit = doc["hit_ratio"].as_f64().unwrap();
    assert!(hit > 0.5, "the load's gets hit: {hit}");

    // Not a terminal: plain lines, one per server per refresh.
    let run = memc(&["-s", &list, "top", "--count", "2", "--interval", "0.1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("ops/s=") && !l.contains('\x1b'))
    );
}

#[test]
fn errors_say_what_to_do_and_keep_the_code() {
    let run = memc(&["-s", "127.0.0.1:1", "get", "k"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("127.0.0.1:1: could not connect")
            && run.stderr.contains("[CONNECTION FAILURE]"),
        "{}",
        run.stderr
    );
}

#[test]
fn bytes_that_are_not_text_are_shown_as_hex_on_a_terminal_only() {
    let server = common::own_server();
    let spec = server.spec();
    let mc = Client::new([&spec]).unwrap();
    mc.set("bin", &b"ab\x00\x01"[..], 0).unwrap();
    let piped = memc(&["-s", &spec, "get", "bin"]);
    assert_eq!(piped.stdout.as_bytes(), b"ab\x00\x01\n");
    // `script` runs memc on a pseudo-terminal.
    let Ok(output) = Command::new("script")
        .args([
            "-qec",
            &format!("{} -s {spec} get bin", env!("CARGO_BIN_EXE_memc")),
            "/dev/null",
        ])
        .output()
    else {
        panic!("util-linux's script is needed for this test");
    };
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains("4 bytes that are not text, in hex: 61620001"),
        "{shown:?}"
    );
    assert!(
        !output.stdout.contains(&0u8),
        "no raw bytes on the terminal"
    );
}

/// memc started with `args`, its stdout and stderr piped, for tests that watch it run.
fn spawn_memc(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_memc"))
        .args(args)
        .env_remove("MEMCACHED_SERVERS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("memc runs")
}

/// Waits at most a minute for `child` (a bound for a loaded machine, not a measure).
fn finish(mut child: std::process::Child) -> Run {
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("memc still ran after a minute");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().expect("memc exits"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A "server" on a free loopback port that reads one request and answers it with `answer`,
/// which writes what a real memcached never would. Returns its spec and what `answer` returned.
fn hostile_server<T: Send + 'static>(
    answer: impl FnOnce(&mut std::net::TcpStream) -> T + Send + 'static,
) -> (String, std::thread::JoinHandle<T>) {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        // A memc that stops reading fails the writes after this, rather than hang the test.
        stream
            .set_write_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut request = String::new();
        std::io::BufReader::new(&stream)
            .read_line(&mut request)
            .unwrap();
        assert_eq!(request, "lru_crawler metadump all\r\n");
        answer(&mut stream)
    });
    (spec, server)
}

/// memc's dump text format read back: `\\`, `\t`, `\n`, `\r`, `\xHH` and `\u{H}` escapes.
fn unescape(field: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = field.chars();
    let push = |out: &mut Vec<u8>, c: char| out.extend(c.encode_utf8(&mut [0; 4]).as_bytes());
    while let Some(c) = chars.next() {
        if c != '\\' {
            push(&mut out, c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push(b'\\'),
            Some('t') => out.push(b'\t'),
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            }
            Some('u') => {
                assert_eq!(chars.next(), Some('{'));
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                push(
                    &mut out,
                    char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap(),
                );
            }
            other => panic!("unknown escape {other:?} in {field:?}"),
        }
    }
    out
}

/// Whether `bytes` hold a control character other than tab and line breaks: C0, DEL, or a C1
/// code point (U+0080 to U+009F, e.g. U+009B, a terminal's CSI).
fn has_control(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .any(|&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f)
        || String::from_utf8_lossy(bytes)
            .chars()
            .any(|c| ('\u{80}'..='\u{9f}').contains(&c))
}

#[test]
fn dump_escapes_hostile_keys_on_a_terminal_in_pipes_and_in_json() {
    let server = common::own_server();
    let spec = server.spec();
    // The binary protocol stores any byte in a key.
    let mc = common::client(std::slice::from_ref(&spec), true);
    let keys: [&[u8]; 6] = [
        b"esc\x1b[2J\x07bell",
        "c1\u{9b}31m".as_bytes(),
        b"forged\nnext\tline",
        b"back\\slash",
        b"del\x7f\r",
        b"plain",
    ];
    for key in keys {
        mc.set(key, "v", 0).unwrap();
    }
    // lru_crawler needs a moment after the writes; retry briefly.
    let mut run = memc(&["-s", &spec, "dump"]);
    for _ in 0..50 {
        if run.stdout.lines().count() >= keys.len() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        run = memc(&["-s", &spec, "dump"]);
    }
    // A pipe: a line per key, four fields, the key read back exactly.
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!has_control(run.stdout.as_bytes()), "{:?}", run.stdout);
    let mut listed: Vec<Vec<u8>> = run
        .stdout
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "{line:?}");
            assert_eq!(fields[3], spec);
            unescape(fields[0])
        })
        .collect();
    listed.sort();
    let mut stored: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    stored.sort();
    assert_eq!(listed, stored);
    assert!(run.stdout.contains(r"esc\x1b[2J\x07bell") && run.stdout.contains(r"c1\u{9b}31m"));

    // JSON: DEL and C1 controls escaped as \u007f, \u009b; the keys parse back exactly.
    let run = memc(&["-s", &spec, "--json", "dump"]);
    assert!(!has_control(run.stdout.as_bytes()), "{:?}", run.stdout);
    assert!(run.stdout.contains(r"\u009b"), "{}", run.stdout);
    let mut listed: Vec<Vec<u8>> = run
        .stdout
        .lines()
        .map(|line| {
            let doc: serde_json::Value = serde_json::from_str(line).unwrap();
            doc["key"].as_str().unwrap().as_bytes().to_vec()
        })
        .collect();
    listed.sort();
    assert_eq!(listed, stored);

    // A terminal (`script` runs memc on a pseudo-terminal): nothing it would act on.
    let output = Command::new("script")
        .args([
            "-qec",
            &format!("{} -s {spec} dump", env!("CARGO_BIN_EXE_memc")),
            "/dev/null",
        ])
        .output()
        .expect("util-linux's script is needed for this test");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown:?}");
    assert!(!has_control(&output.stdout), "{shown:?}");
    assert!(shown.contains(r"esc\x1b[2J\x07bell"), "{shown:?}");
    assert!(shown.contains(r"forged\nnext\tline"), "{shown:?}");
    assert!(shown.contains(r"del\x7f\r"), "{shown:?}");
}

#[test]
fn dump_streams_a_metadump_that_never_ends_in_bounded_memory() {
    use std::io::{BufRead, Write};
    const SENT: usize = 64 << 20;
    let (spec, server) = hostile_server(|stream| {
        let mut sent = 0;
        let mut n = 0u64;
        while sent < SENT {
            let mut batch = String::new();
            while batch.len() < 64 * 1024 {
                batch += &format!("key=k{n} exp=-1 la=1 cas={n} fetch=no cls=1 size=70\r\n");
                n += 1;
            }
            if stream.write_all(batch.as_bytes()).is_err() {
                break;
            }
            sent += batch.len();
        }
        sent
    });
    let mut child = spawn_memc(&["-s", &spec, "dump"]);
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = 0u64;
        let mut line = Vec::new();
        let mut stdout = std::io::BufReader::new(stdout);
        while stdout.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            lines += 1;
            line.clear();
        }
        lines
    });
    // The server gets every byte off only if memc keeps reading.
    let sent = server.join().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    let _ = child.kill();
    let stderr = child.wait_with_output().unwrap().stderr;
    let printed = reader.join().unwrap();
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(sent >= SENT, "memc stopped reading: {stderr}");
    assert!(
        peak_kib < 32 * 1024,
        "memc peaked at {peak_kib} KiB while reading {} MiB of metadump",
        SENT >> 20
    );
    // Printed as read, not kept for an END that never comes.
    assert!(printed > 1_000_000, "only {printed} keys printed");
}

#[test]
fn dump_refuses_a_line_without_end() {
    use std::io::Write;
    let (spec, server) = hostile_server(|stream| {
        let _ = stream.write_all(b"key=");
        while stream.write_all(&[b'x'; 64 * 1024]).is_ok() {}
    });
    let run = finish(spawn_memc(&["-s", &spec, "dump"]));
    server.join().unwrap();
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains(&format!("{spec}: a line of more than 4096 bytes")),
        "{}",
        run.stderr
    );
}

#[test]
fn errors_name_the_server_that_hung_or_said_what() {
    use libmemcached::testing::{Fault, FaultProxy};
    let server = common::own_server();
    let proxy = FaultProxy::start(server.spec()).unwrap();
    let spec = proxy.spec();
    let file = std::env::temp_dir().join(format!("memc-hung-{}", std::process::id()));
    std::fs::write(&file, b"x").unwrap();
    proxy.set_fault(Fault::Blackhole);
    for command in [
        &["dump"][..],
        &["get", "k"],
        &["set", "k", "v"],
        &["stats"],
        &["version"],
        &["whereis", "k"],
        &["analyze"],
        &["cp", file.to_str().unwrap()],
        &["load", "--duration", "1"],
    ] {
        let mut args = vec!["-s", spec.as_str(), "-B", "_poll_timeout=300"];
        args.extend_from_slice(command);
        let run = memc(&args);
        assert_eq!(run.code, 2, "{command:?}");
        assert!(
            run.stderr
                .contains(&format!("{spec}: no answer within the poll timeout")),
            "{command:?}: {}",
            run.stderr
        );
    }
    std::fs::remove_file(&file).unwrap();

    // What a server says reaches stderr escaped.
    proxy.set_fault(Fault::Reply(
        b"SERVER_ERROR \x1b]0;owned\x07 \xc2\x9b31m\r\n",
    ));
    for command in [&["get", "k"][..], &["stats"], &["dump"]] {
        let mut args = vec!["-s", spec.as_str()];
        args.extend_from_slice(command);
        let run = memc(&args);
        assert_eq!(run.code, 2, "{command:?}");
        assert!(!has_control(run.stderr.as_bytes()), "{:?}", run.stderr);
        assert!(
            run.stderr.contains(&spec) && run.stderr.contains(r"\x1b]0;owned\x07 \u{9b}31m"),
            "{command:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn sizes_and_counts_are_bounded_with_usage_errors() {
    let server = common::own_server();
    let spec = server.spec();
    for (args, says) in [
        (
            &["load", "--value-size", "100000000000"][..],
            "--value-size takes 0 to 1048576",
        ),
        (
            &["load", "--keys", "20000000"],
            "--keys takes 1 to 10000000",
        ),
        (
            &["ring", "--add", "127.0.0.1:1", "--keys", "100000000"],
            "--keys takes 1 to 1000000",
        ),
    ] {
        let mut all = vec!["-s", spec.as_str()];
        all.extend_from_slice(args);
        let run = memc(&all);
        assert_eq!(run.code, 2, "{args:?}");
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    // The duration covers storing the keys first: far more keys than half a second stores.
    let run = finish(spawn_memc(&[
        "-s",
        &spec,
        "load",
        "--keys",
        "10000000",
        "--duration",
        "1",
        "--concurrency",
        "1",
    ]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("of 10000000 keys stored in half the duration"),
        "{}",
        run.stdout
    );
}

#[test]
fn cp_reads_at_most_the_item_size_limit_and_gives_up_on_a_fifo_without_writer() {
    let server = common::own_server();
    let spec = server.spec();
    let run = memc(&["-s", &spec, "cp", "/dev/zero"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("/dev/zero: more than the servers' item size limit (1048576 bytes)"),
        "{}",
        run.stderr
    );

    let dir = std::env::temp_dir().join(format!("memc-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let fifo_path = fifo.to_str().unwrap();
    let run = memc(&["-s", &spec, "cp", fifo_path]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(&format!(
            "{fifo_path}: a FIFO that no writer opened within 5 s"
        )),
        "{}",
        run.stderr
    );
    // With a writer, the FIFO's bytes are stored.
    let mut writer = Command::new("sh")
        .args(["-c", &format!("printf fed > '{fifo_path}'")])
        .spawn()
        .unwrap();
    let run = memc(&["-s", &spec, "cp", fifo_path]);
    let _ = writer.kill();
    let _ = writer.wait();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "pipe\t3 bytes\n"),
        "{}",
        run.stderr
    );
    let mc = Client::new([&spec]).unwrap();
    assert_eq!(mc.get::<Vec<u8>>("pipe").unwrap().unwrap(), b"fed");
}

#[test]
fn the_values_of_several_keys_are_a_line_each_whatever_they_hold() {
    let server = common::own_server();
    let spec = server.spec();
    let mc = common::client(std::slice::from_ref(&spec), false);
    let values: [(&str, &[u8]); 3] = [
        ("lines", b"one\ntwo\tthree"),
        ("esc", b"\x1b[2J\\"),
        ("bytes", b"\xff\x00\x9b"),
    ];
    for (key, value) in values {
        mc.set(key, value, 0).unwrap();
    }
    let run = memc(&["-s", &spec, "get", "lines", "esc", "bytes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!has_control(run.stdout.as_bytes()), "{:?}", run.stdout);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), values.len(), "{:?}", run.stdout);
    for (line, (key, value)) in lines.iter().zip(values) {
        let (shown_key, shown) = line.split_once('\t').unwrap();
        assert_eq!(shown_key, key);
        assert_eq!(unescape(shown), value, "{line:?}");
    }
    // One key alone goes to a pipe as stored.
    let one = Command::new(env!("CARGO_BIN_EXE_memc"))
        .args(["-s", &spec, "get", "bytes"])
        .env_remove("MEMCACHED_SERVERS")
        .output()
        .unwrap();
    assert_eq!(one.stdout, b"\xff\x00\x9b\n");
}

/// A server that claims an absurd item size limit does not make `set KEY -` overflow or read
/// without bound: the limit is capped at memcached's largest.
#[test]
fn an_absurd_item_size_limit_from_a_server_is_capped() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut seen = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            seen.push(line.clone());
            if line.starts_with("version") {
                writer.write_all(b"VERSION 1.6.18\r\n").unwrap();
            } else if line.starts_with("stats settings") {
                writer
                    .write_all(b"STAT item_size_max 18446744073709551615\r\nEND\r\n")
                    .unwrap();
            } else if line.starts_with("set ") {
                let mut data = String::new();
                reader.read_line(&mut data).unwrap();
                seen.push(data);
                writer.write_all(b"STORED\r\n").unwrap();
                break;
            }
            line.clear();
        }
        seen
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_memc"))
        .args(["-s", &spec, "set", "k", "-"])
        .env_remove("MEMCACHED_SERVERS")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello").unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let seen = server.join().unwrap();
    assert_eq!(
        seen.last().map(String::as_str),
        Some("hello\r\n"),
        "{seen:?}"
    );
}
