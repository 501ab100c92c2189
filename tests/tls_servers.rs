//! `testing`'s TLS certificates, checked with the `openssl` command: each verifies or fails as
//! its name says.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libmemcached::testing::{ServerCert, TlsFiles};

/// How long one `openssl` command may run before it is killed.
const DEADLINE: Duration = Duration::from_secs(10);

fn generate() -> TlsFiles {
    TlsFiles::generate().expect("certificates (install Debian's openssl)")
}

/// What an `openssl` command printed (stdout, then stderr), and whether it succeeded.
#[derive(Debug)]
struct Run {
    success: bool,
    output: String,
}

/// Runs `openssl args`, with `input` on stdin, killed after [`DEADLINE`].
fn openssl(args: &[&str], input: &str) -> Run {
    let program = std::env::var_os("OPENSSL_BIN").unwrap_or_else(|| "openssl".into());
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs (install Debian's openssl)");
    // openssl may exit (a failed verification) before it reads this.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let read = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = from.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!(
                "openssl {args:?} ran past its deadline ({status}): {}{}",
                stdout.join().unwrap(),
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        success: status.success(),
        output: stdout.join().unwrap() + &stderr.join().unwrap(),
    }
}

/// `openssl verify` of a certificate against the test CA.
fn verify(files: &TlsFiles, cert: &Path, extra: &[&str]) -> Run {
    let ca = files.ca_cert().to_str().unwrap();
    let mut args = vec!["verify", "-CAfile", ca];
    args.extend_from_slice(extra);
    args.push(cert.to_str().unwrap());
    openssl(&args, "")
}

#[test]
fn each_certificate_verifies_or_fails_as_its_name_says() {
    let files = generate();
    let good = files.server_cert_for(ServerCert::Good);
    assert_eq!(good, files.server_cert());
    for name in [
        ["-verify_hostname", "localhost"],
        ["-verify_ip", "127.0.0.1"],
        ["-verify_ip", "::1"],
    ] {
        let run = verify(
            &files,
            good,
            &[&["-purpose", "sslserver"], &name[..]].concat(),
        );
        assert!(run.success, "{name:?}: {run:?}");
    }

    let expired = files.server_cert_for(ServerCert::Expired);
    let run = verify(&files, expired, &["-verify_hostname", "localhost"]);
    assert!(
        !run.success && run.output.contains("certificate has expired"),
        "{run:?}"
    );
    // Its only fault is the date: on 1 January 2020 at noon it verifies.
    let run = verify(
        &files,
        expired,
        &["-verify_hostname", "localhost", "-attime", "1577880000"],
    );
    assert!(run.success, "{run:?}");

    let wrong_name = files.server_cert_for(ServerCert::WrongName);
    let run = verify(&files, wrong_name, &["-verify_hostname", "localhost"]);
    assert!(
        !run.success && run.output.contains("hostname mismatch"),
        "{run:?}"
    );
    let run = verify(&files, wrong_name, &["-verify_ip", "127.0.0.1"]);
    assert!(
        !run.success && run.output.contains("IP address mismatch"),
        "{run:?}"
    );
    let run = verify(&files, wrong_name, &["-verify_hostname", "other.invalid"]);
    assert!(run.success, "{run:?}");

    let unknown = files.server_cert_for(ServerCert::UnknownCa);
    let run = verify(&files, unknown, &["-verify_hostname", "localhost"]);
    assert!(!run.success && run.output.contains("self"), "{run:?}");

    let run = verify(&files, files.client_cert(), &["-purpose", "sslclient"]);
    assert!(run.success, "{run:?}");
    let run = verify(&files, files.ca_cert(), &[]);
    assert!(run.success, "{run:?}");
}
