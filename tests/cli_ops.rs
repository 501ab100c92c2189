//! memc's operator commands against real memcached processes: whereis, ring, explain, dump,
//! cp, analyze, top and load, and errors a person can act on.

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
        .unwrap()
        .behavior(Behavior::Distribution(Distribution::ConsistentKetama))
        .build()
        .unwrap();
    let mut all = specs.clone();
    all.push(third);
    let after = Client::builder()
        .servers(&all)
        .unwrap()
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
