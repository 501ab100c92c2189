//! `testing`'s TLS servers and certificates, checked with the `openssl` command: each
//! certificate verifies or fails as its name says, and memcached serves it. Only 127.0.0.1.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libmemcached::testing::{Memcached, ServerCert, TlsFiles};

/// How long one `openssl` command may run before it is killed.
const DEADLINE: Duration = Duration::from_secs(10);

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

/// Connects with `openssl s_client`, trusting the test CA and failing on any verification
/// error, and sends `version` then `quit` (memcached then closes, which ends s_client).
fn s_client(files: &TlsFiles, port: u16, extra: &[&str]) -> Run {
    let connect = format!("127.0.0.1:{port}");
    let ca = files.ca_cert().to_str().unwrap();
    let mut args = vec![
        "s_client",
        "-connect",
        &connect,
        "-CAfile",
        ca,
        "-verify_return_error",
        "-quiet",
    ];
    args.extend_from_slice(extra);
    openssl(&args, "version\r\nquit\r\n")
}

/// The same, checking the name `localhost` (sent as SNI too).
fn s_client_localhost(files: &TlsFiles, port: u16, extra: &[&str]) -> Run {
    let mut args = vec!["-servername", "localhost", "-verify_hostname", "localhost"];
    args.extend_from_slice(extra);
    s_client(files, port, &args)
}

/// `openssl verify` of a certificate against the test CA.
fn verify(files: &TlsFiles, cert: &Path, extra: &[&str]) -> Run {
    let ca = files.ca_cert().to_str().unwrap();
    let mut args = vec!["verify", "-CAfile", ca];
    args.extend_from_slice(extra);
    args.push(cert.to_str().unwrap());
    openssl(&args, "")
}

/// The first line a plaintext connection to `port` answers `version` with.
fn plain_version(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (&stream).write_all(b"version\r\n").unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

fn tls_port(server: &Memcached) -> u16 {
    server.tls_port().expect("a TLS server has a TLS port")
}

#[test]
fn each_certificate_verifies_or_fails_as_its_name_says() {
    let files = common::tls_files();
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

#[test]
fn the_good_certificate_serves_version_over_tls() {
    let files = common::tls_files();
    let server = common::tls_server(&files, ServerCert::Good);
    let plain = plain_version(server.plain_port().unwrap());
    assert!(plain.starts_with("VERSION 1.6."), "{plain}");
    for name in [
        &["-servername", "localhost", "-verify_hostname", "localhost"][..],
        &["-verify_ip", "127.0.0.1"][..],
    ] {
        let run = s_client(&files, tls_port(&server), name);
        assert!(run.success, "{name:?}: {run:?}");
        // The same server answers on both ports.
        assert!(
            run.output.contains(&format!("{plain}\r\n")),
            "{name:?}: {run:?}"
        );
    }
}

#[test]
fn the_bad_certificates_fail_verification() {
    let files = common::tls_files();
    for (cert, extra, error) in [
        (
            ServerCert::Expired,
            &["-verify_hostname", "localhost"][..],
            "certificate has expired",
        ),
        (
            ServerCert::WrongName,
            &["-verify_hostname", "localhost"][..],
            "hostname mismatch",
        ),
        (
            ServerCert::WrongName,
            &["-verify_ip", "127.0.0.1"][..],
            "IP address mismatch",
        ),
        // "self-signed certificate" (OpenSSL 3), "self signed certificate" (1.1).
        (
            ServerCert::UnknownCa,
            &["-verify_hostname", "localhost"][..],
            "self",
        ),
    ] {
        let server = common::tls_server(&files, cert);
        let run = s_client(&files, tls_port(&server), extra);
        assert!(!run.success, "{cert:?} {extra:?}: {run:?}");
        assert!(
            run.output.contains("certificate verify failed"),
            "{cert:?}: {run:?}"
        );
        assert!(run.output.contains(error), "{cert:?}: {run:?}");
        assert!(!run.output.contains("VERSION"), "{cert:?}: {run:?}");
    }
}

#[test]
fn required_client_certificates_turn_away_a_client_without_one() {
    let files = common::tls_files();
    let server = Memcached::builder()
        .tls(&files, ServerCert::Good)
        .tls_client_certs(true)
        .start()
        .unwrap();
    let port = tls_port(&server);
    let run = s_client_localhost(&files, port, &[]);
    // In TLS 1.3 the client's handshake ends before the server refuses it: the refusal (an
    // alert, "certificate required") comes instead of the answer.
    assert!(!run.success, "{run:?}");
    assert!(!run.output.contains("VERSION"), "{run:?}");

    let (cert, key) = (
        files.client_cert().to_str().unwrap(),
        files.client_key().to_str().unwrap(),
    );
    let run = s_client_localhost(&files, port, &["-cert", cert, "-key", key]);
    assert!(run.success, "{run:?}");
    assert!(run.output.contains("VERSION "), "{run:?}");
}

#[test]
fn requested_client_certificates_are_optional() {
    let files = common::tls_files();
    let server = Memcached::builder()
        .tls(&files, ServerCert::Good)
        .tls_client_certs(false)
        .start()
        .unwrap();
    let port = tls_port(&server);
    let (cert, key) = (
        files.client_cert().to_str().unwrap(),
        files.client_key().to_str().unwrap(),
    );
    for extra in [&[][..], &["-cert", cert, "-key", key][..]] {
        let run = s_client_localhost(&files, port, extra);
        assert!(
            run.success && run.output.contains("VERSION "),
            "{extra:?}: {run:?}"
        );
    }
}

#[test]
fn a_tls_server_has_a_plaintext_port_for_stats_and_none_on_its_tls_port() {
    let files = common::tls_files();
    let server = common::tls_server(&files, ServerCert::Good);
    let (port, plain) = (tls_port(&server), server.plain_port().unwrap());
    assert_ne!(port, plain);
    assert_eq!(server.port(), Some(port));
    assert_eq!(server.spec(), format!("127.0.0.1:{port}"));
    assert_eq!(server.plain_spec(), format!("127.0.0.1:{plain}"));
    assert_eq!(server.udp_spec(), None);
    assert_eq!(
        server.stat("pid").unwrap(),
        server.pid().unwrap().to_string()
    );
    assert!(plain_version(plain).starts_with("VERSION "));

    // The TLS port answers no plaintext: memcached ends the failed handshake.
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (&stream).write_all(b"version\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = (&stream).read_to_end(&mut reply);
    assert!(
        !String::from_utf8_lossy(&reply).contains("VERSION"),
        "{reply:?}"
    );

    // A server without TLS: its one port is its plaintext one.
    let plain_server = Memcached::start().unwrap();
    assert_eq!(plain_server.tls_port(), None);
    assert_eq!(plain_server.plain_port(), plain_server.port());
    assert_eq!(plain_server.plain_spec(), plain_server.spec());
}

#[test]
fn a_tls_server_restarts_on_its_ports_with_its_certificate() {
    let files = common::tls_files();
    let mut server = common::tls_server(&files, ServerCert::Good);
    let (port, plain) = (tls_port(&server), server.plain_port().unwrap());
    // The server keeps copies: the files it was started with may go.
    let other = common::tls_files();
    let other_server = Memcached::builder()
        .tls(&other, ServerCert::Good)
        .start()
        .unwrap();
    let ca = std::fs::read(other.ca_cert()).unwrap();
    drop(other);

    server.stop();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    server.restart().unwrap();
    assert_eq!(
        (tls_port(&server), server.plain_port()),
        (port, Some(plain))
    );
    let run = s_client_localhost(&files, port, &[]);
    assert!(run.success && run.output.contains("VERSION "), "{run:?}");

    let mut other_server = other_server;
    other_server.restart().unwrap();
    // Trusted through `files`' CA, which is not `other`'s, it fails; through a copy of its CA
    // (kept in `files`' directory), it verifies.
    let run = s_client_localhost(&files, tls_port(&other_server), &[]);
    assert!(!run.success, "{run:?}");
    let copy = files.dir().join("other-ca.crt");
    std::fs::write(&copy, ca).unwrap();
    let run = s_client_localhost(
        &files,
        tls_port(&other_server),
        &["-CAfile", copy.to_str().unwrap()],
    );
    assert!(run.success && run.output.contains("VERSION "), "{run:?}");
}

#[test]
fn tls_refuses_options_it_does_not_go_with() {
    let files = common::tls_files();
    let tls = || Memcached::builder().tls(&files, ServerCert::Good);
    for (builder, why) in [
        (tls().unix_socket(), "unix socket"),
        (tls().udp(), "UDP"),
        (Memcached::builder().tls_client_certs(true), "needs tls"),
    ] {
        let err = builder.start().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{why}: {err}");
        assert!(err.to_string().contains(why), "{err}");
    }
}

#[test]
fn a_tls_server_can_require_sasl_too() {
    let files = common::tls_files();
    let server = Memcached::builder()
        .tls(&files, ServerCert::Good)
        .sasl("rustuser", "secret")
        .start()
        .expect("a TLS and SASL memcached starts (install sasl2-bin and libsasl2-modules)");
    // Its start was probed, and its stats are read, in the binary protocol with a login.
    assert!(server.stat("auth_cmds").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(server.sasl_credentials(), Some(("rustuser", "secret")));
}
