//! The PHP side of `tests/php.rs`: `tests/php/peer.php` and the other scripts under the `php`
//! CLI (Debian's php-cli and php-memcached, which `scripts/setup` installs), and pylibmc's peer
//! for the test that shares a cache three ways.

use std::io::Write;
use std::process::{Command, Stdio};

use libmemcached::testing::Memcached;
use libmemcached::{Client, ValueFormat};
use serde_json::{Value as Json, json};

pub const PHP: &str = "php";
const PYTHON: &str = "/usr/bin/python3";

fn script(name: &str) -> String {
    format!("{}/tests/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `program script args` with `stdin`, and returns its standard output. A failed run fails
/// the test with its standard error.
pub fn run(program: &str, name: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let (status, stdout, stderr) = try_run(program, name, args, stdin);
    assert!(
        status.success(),
        "{name} failed ({status}):\n{}",
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

/// Runs `program script args` with `stdin`: its exit status, standard output and error.
fn try_run(
    program: &str,
    name: &str,
    args: &[&str],
    stdin: &[u8],
) -> (std::process::ExitStatus, Vec<u8>, Vec<u8>) {
    let mut child = Command::new(program)
        .arg(script(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): run scripts/setup"));
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().expect("request written");
    (output.status, output.stdout, output.stderr)
}

/// Runs `jobs` through a peer script and returns one result list per job; a command that failed
/// comes back as `{"error": ...}`.
fn peer(program: &str, name: &str, jobs: &[Json]) -> Vec<Vec<Json>> {
    let request = serde_json::to_vec(&json!({ "jobs": jobs })).unwrap();
    let reply: Json = serde_json::from_slice(&run(program, name, &[], &request))
        .unwrap_or_else(|e| panic!("JSON from {name}: {e}"));
    let results: Vec<Vec<Json>> = serde_json::from_value(reply["results"].clone()).unwrap();
    assert_eq!(results.len(), jobs.len());
    results
}

/// Runs jobs in PHP (`tests/php/peer.php`).
pub fn php(jobs: &[Json]) -> Vec<Vec<Json>> {
    peer(PHP, "php/peer.php", jobs)
}

/// Runs one job in a PHP process of its own: its results, or how the process failed (a signal,
/// or an exit status with the first line of its standard error). php-memcached 3.2.0 can crash
/// after failing to unserialize values it took for PHP-serialized ones, sometimes and not always.
pub fn php_alone(job: &Json) -> Result<Vec<Json>, String> {
    let request = serde_json::to_vec(&json!({ "jobs": [job] })).unwrap();
    let (status, stdout, stderr) = try_run(PHP, "php/peer.php", &[], &request);
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let first = stderr.lines().next().unwrap_or("");
        return Err(format!("{status}: {first}"));
    }
    let reply: Json = serde_json::from_slice(&stdout).unwrap();
    Ok(serde_json::from_value(reply["results"][0].clone()).unwrap())
}

/// Runs jobs in PHP and fails the test on any command's error.
pub fn php_ok(jobs: &[Json]) -> Vec<Vec<Json>> {
    let results = php(jobs);
    for (job, results) in jobs.iter().zip(&results) {
        for (command, result) in job["commands"].as_array().unwrap().iter().zip(results) {
            assert!(
                result.get("error").is_none(),
                "PHP failed on {command}: {result}"
            );
        }
    }
    results
}

/// Runs jobs in pylibmc (`tests/pylibmc_peer.py`).
pub fn python(jobs: &[Json]) -> Vec<Vec<Json>> {
    peer(PYTHON, "pylibmc_peer.py", jobs)
}

/// A PHP client on `servers` with `options` (`{"OPT_NAME": value}`) and its commands.
pub fn job(servers: &[String], options: Json, commands: Vec<Json>) -> Json {
    json!({ "servers": servers, "options": options, "commands": commands })
}

pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

pub fn string(data: &[u8]) -> Json {
    json!({ "type": "string", "hex": hex(data) })
}

pub fn int(n: i64) -> Json {
    json!({ "type": "int", "value": n })
}

/// A float, given as text PHP reads exactly (or `INF`, `-INF`, `NAN`).
pub fn float(x: f64) -> Json {
    let text = match x {
        x if x.is_nan() => "NAN".to_string(),
        x if x.is_infinite() => if x > 0.0 { "INF" } else { "-INF" }.to_string(),
        x => format!("{x:e}"),
    };
    json!({ "type": "float", "text": text })
}

pub fn boolean(b: bool) -> Json {
    json!({ "type": "bool", "value": b })
}

/// A PHP expression, evaluated in PHP.
pub fn expr(php: &str) -> Json {
    json!({ "type": "expr", "php": php })
}

pub fn set(key: &str, value: Json) -> Json {
    json!({ "op": "set", "key": key, "value": value })
}

/// A set with options for that set only (`{"OPT_SERIALIZER": "SERIALIZER_MSGPACK"}`).
pub fn set_with(key: &str, value: Json, options: Json) -> Json {
    json!({ "op": "set", "key": key, "value": value, "options": options })
}

pub fn get(key: &str) -> Json {
    json!({ "op": "get", "key": key })
}

/// PHP's `getServerByKey` for `prefix0` to `prefix{count-1}`.
pub fn servers(prefix: &str, count: usize) -> Json {
    json!({ "op": "servers", "prefix": prefix, "count": count })
}

/// A float as PHP's `var_export` writes it (`1.0E+100`, `-0.0`, `INF`, `NAN`).
pub fn exported_float(export: &str) -> f64 {
    export
        .parse()
        .unwrap_or_else(|_| panic!("{export:?} is a float"))
}

/// A client in PHP's format for `servers`.
pub fn php_client(servers: &[String]) -> Client {
    Client::builder()
        .servers(servers)
        .value_format(ValueFormat::Php)
        .build()
        .unwrap()
}

/// `n` memcached processes and their specs.
pub fn cluster(n: usize) -> (Vec<Memcached>, Vec<String>) {
    let servers: Vec<Memcached> = (0..n)
        .map(|_| Memcached::start().expect("memcached starts"))
        .collect();
    let specs = servers.iter().map(Memcached::spec).collect();
    (servers, specs)
}
