//! Sharing a cache with Python: Rust writes values that pylibmc reads as the Python types you
//! would expect, and reads back what pylibmc writes. The Python side runs under Debian's
//! `/usr/bin/python3` with its `python3-pylibmc` package when that is importable; otherwise the
//! example says so and shows the Rust side alone.
//!
//! Uses the servers in `MEMCACHED_SERVERS`, or starts a memcached of its own when that is not set.
//!
//! ```sh
//! cargo run --example python
//! ```

use std::process::Command;

use libmemcached::testing::TestServer;
use libmemcached::{Client, Compressed, Compression, Value};

const PYTHON: &str = "/usr/bin/python3";

/// Reads what Rust wrote, then writes values of its own. Servers come as one comma-separated
/// argument, keys to read as the others.
const PYTHON_SIDE: &str = r#"
import sys, pylibmc
mc = pylibmc.Client(sys.argv[1].split(","))
for key in sys.argv[2:]:
    value = mc.get(key)
    print(f"  {key:<26} {type(value).__name__:<6} {value!r:.60}")
mc.set("python-example:py-text", "grüße from Python")
mc.set("python-example:py-int", 2**70)
mc.set("python-example:py-bool", True)
mc.set("python-example:py-bytes", b"\x00\xff")
mc.set("python-example:py-list", [1, "two", 3.0])
mc.set("python-example:py-long-text", "python " * 200, min_compress_len=100)
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = TestServer::from_env_or_spawn()?;
    // The same servers with the same (default) hash and distribution: every libmemcached
    // client, pylibmc included, puts each key on the same server.
    let mc = Client::new(server.specs())?;

    mc.set("python-example:text", "héllo from Rust", 300)?;
    mc.set("python-example:int", -42i64, 300)?;
    mc.set("python-example:bool", true, 300)?;
    mc.set("python-example:bytes", &b"\x00\x01\x02"[..], 300)?;
    mc.set("python-example:big-int", Value::BigInt("1".repeat(50)), 300)?; // beyond i128
    let long = "rust ".repeat(200);
    let compressed = Compressed::new(long, Compression::new(100)); // zlib from 100 bytes on
    mc.set("python-example:compressed", compressed, 300)?;
    let keys = ["text", "int", "bool", "bytes", "big-int", "compressed"]
        .map(|name| format!("python-example:{name}"));
    println!("Rust wrote {keys:?}");

    let specs = server.specs().join(",");
    let pylibmc = Command::new(PYTHON).args(["-c", "import pylibmc"]).output();
    if !pylibmc.is_ok_and(|out| out.status.success()) {
        println!(
            "\npylibmc is not importable by {PYTHON} (Debian: apt-get install python3-pylibmc), \
             so only the Rust side runs. With it, this Python reads the values above:\n{PYTHON_SIDE}"
        );
        return Ok(());
    }

    println!("\npylibmc reads them (key, Python type, value):");
    let output = Command::new(PYTHON)
        .args(["-c", PYTHON_SIDE, &specs])
        .args(&keys)
        .output()?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    if !output.status.success() {
        return Err(format!("python failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }

    println!("\nRust reads what pylibmc wrote (as a Value, decoded by its flags):");
    for name in [
        "py-text",
        "py-int",
        "py-bool",
        "py-bytes",
        "py-list",
        "py-long-text",
    ] {
        let key = format!("python-example:{name}");
        let value: Option<Value> = mc.get(&key)?;
        let shown = match value {
            Some(Value::Text(t)) if t.len() > 40 => {
                format!("Text({:?}... {} bytes)", &t[..21], t.len())
            }
            Some(Value::Pickle(p)) => format!("Pickle({} bytes: opaque to Rust)", p.len()),
            Some(other) => format!("{other:?}"),
            None => "missing".to_owned(),
        };
        println!("  {key:<30} {shown}");
    }
    // Typed reads work too: a pylibmc int is any Rust integer type that holds it.
    let flag: Option<bool> = mc.get("python-example:py-bool")?;
    let text: Option<String> = mc.get("python-example:py-text")?;
    println!("  as Rust types: bool {flag:?}, String {text:?}");
    Ok(())
}
