//! Certificates for TLS test servers: [`TlsFiles`], made with the `openssl` command.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::process::temp_dir;

/// Which server certificate a TLS [`Memcached`](super::Memcached) presents: the good one, or one
/// a client must refuse. All of them are for the key [`TlsFiles::server_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerCert {
    /// Signed by the test CA, for `localhost`, `127.0.0.1` and `::1`, valid from 2020 to 2049.
    Good,
    /// As [`Good`](ServerCert::Good), but it expired on 2 January 2020.
    Expired,
    /// Signed by the test CA and valid, but for `other.invalid` only: no `localhost`, no IP.
    WrongName,
    /// For `localhost`, `127.0.0.1` and `::1` and valid, but self-signed: no CA a client
    /// trusts issued it.
    UnknownCa,
}

impl ServerCert {
    /// Every variant, the good one first.
    // In declaration order: `cert as usize` indexes `TlsFiles::server_certs`.
    pub const ALL: [ServerCert; 4] = [
        ServerCert::Good,
        ServerCert::Expired,
        ServerCert::WrongName,
        ServerCert::UnknownCa,
    ];

    fn file_name(self) -> &'static str {
        match self {
            ServerCert::Good => "server.crt",
            ServerCert::Expired => "server-expired.crt",
            ServerCert::WrongName => "server-wrong-name.crt",
            ServerCert::UnknownCa => "server-unknown-ca.crt",
        }
    }
}

/// A temporary directory of PEM files for TLS tests, removed on drop: a test CA, server
/// certificates signed by it ([`ServerCert`]: a good one and the bad ones a client must
/// refuse), and a client certificate signed by it.
///
/// [`generate`](TlsFiles::generate) makes them with the `openssl` command (Debian's `openssl`
/// package, or `$OPENSSL_BIN`), with P-256 keys, in a few tens of milliseconds. Every
/// certificate's validity starts on 1 January 2020, so a clock a little off does not matter.
///
/// ```
/// use libmemcached::testing::{Memcached, ServerCert, TlsFiles};
///
/// let files = TlsFiles::generate()?;
/// let server = Memcached::builder().tls(&files, ServerCert::Good).start()?;
/// // A TLS client trusting `files.ca_cert()` connects to `localhost` on this port;
/// // `server.plain_port()` speaks plaintext.
/// let port = server.tls_port().unwrap();
/// # assert_ne!(Some(port), server.plain_port());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TlsFiles {
    dir: PathBuf,
    ca_cert: PathBuf,
    ca_key: PathBuf,
    server_key: PathBuf,
    /// In the order of [`ServerCert::ALL`].
    server_certs: [PathBuf; 4],
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// The configuration of every `openssl` command below: `openssl ca`'s bookkeeping, and the
/// extensions of each kind of certificate. Paths are relative to the directory the commands
/// run in, the files' own.
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = req_dn
prompt = no

[req_dn]
CN = unused

[ca]
default_ca = test_ca

[test_ca]
database = index.txt
serial = serial
new_certs_dir = issued
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none

[policy_any]
commonName = supplied

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[wrong_name_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:other.invalid
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// The validity of every certificate but the expired one (UTCTime, which ends in 2049).
const NOT_BEFORE: &str = "200101000000Z";
const NOT_AFTER: &str = "491231235959Z";
/// The expired certificate's end.
const EXPIRED_AFTER: &str = "200102000000Z";

impl TlsFiles {
    /// Makes a new CA and its certificates in a new temporary directory.
    ///
    /// An error names Debian's `openssl` package when the command is missing, and carries
    /// `openssl`'s own message when a step fails.
    pub fn generate() -> io::Result<TlsFiles> {
        let dir = temp_dir()?;
        let files = TlsFiles {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_key: dir.join("server.key"),
            server_certs: ServerCert::ALL.map(|cert| dir.join(cert.file_name())),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            dir,
        };
        // On an error, dropping `files` removes the directory.
        files.write_all()?;
        Ok(files)
    }

    fn write_all(&self) -> io::Result<()> {
        fs::write(self.dir.join("openssl.cnf"), OPENSSL_CONFIG)?;
        fs::write(self.dir.join("index.txt"), "")?;
        fs::write(self.dir.join("serial"), "1000\n")?;
        fs::create_dir(self.dir.join("issued"))?;

        // The CA, self-signed through `openssl ca` for its fixed dates (`req -x509` starts now).
        self.new_key_and_request("ca.key", "ca.csr", "/CN=libmemcached test CA")?;
        self.sign(
            &["-selfsign", "-keyfile", "ca.key"],
            "ca.csr",
            "ca.crt",
            "ca_ext",
            None,
        )?;

        // One server key and request for every server certificate.
        self.new_key_and_request("server.key", "server.csr", "/CN=localhost")?;
        let by_ca = ["-cert", "ca.crt", "-keyfile", "ca.key"];
        self.sign(
            &by_ca,
            "server.csr",
            ServerCert::Good.file_name(),
            "server_ext",
            None,
        )?;
        self.sign(
            &by_ca,
            "server.csr",
            ServerCert::Expired.file_name(),
            "server_ext",
            Some(EXPIRED_AFTER),
        )?;
        self.sign(
            &[by_ca.as_slice(), &["-subj", "/CN=other.invalid"]].concat(),
            "server.csr",
            ServerCert::WrongName.file_name(),
            "wrong_name_ext",
            None,
        )?;
        self.sign(
            &["-selfsign", "-keyfile", "server.key"],
            "server.csr",
            ServerCert::UnknownCa.file_name(),
            "server_ext",
            None,
        )?;

        self.new_key_and_request("client.key", "client.csr", "/CN=libmemcached test client")?;
        self.sign(&by_ca, "client.csr", "client.crt", "client_ext", None)
    }

    /// A new P-256 key, unencrypted, and a certificate request for it.
    fn new_key_and_request(&self, key: &str, request: &str, subject: &str) -> io::Result<()> {
        self.openssl(&[
            "req",
            "-new",
            "-config",
            "openssl.cnf",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key,
            "-out",
            request,
            "-subj",
            subject,
        ])
    }

    /// Issues a certificate for `request` with the extensions of `section`, valid from
    /// [`NOT_BEFORE`] to `not_after` (default [`NOT_AFTER`]). `signer` names the issuer's
    /// certificate and key, or `-selfsign`.
    fn sign(
        &self,
        signer: &[&str],
        request: &str,
        cert: &str,
        section: &str,
        not_after: Option<&str>,
    ) -> io::Result<()> {
        let mut args = vec!["ca", "-batch", "-notext", "-config", "openssl.cnf"];
        args.extend_from_slice(signer);
        args.extend_from_slice(&[
            "-in",
            request,
            "-out",
            cert,
            "-extensions",
            section,
            "-startdate",
            NOT_BEFORE,
            "-enddate",
            not_after.unwrap_or(NOT_AFTER),
        ]);
        self.openssl(&args)
    }

    fn openssl(&self, args: &[&str]) -> io::Result<()> {
        let program: OsString = std::env::var_os("OPENSSL_BIN").unwrap_or_else(|| "openssl".into());
        let output = Command::new(&program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!(
                        "cannot run {program:?} ({err}): install Debian's openssl package or set OPENSSL_BIN"
                    ),
                )
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "openssl {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }

    /// The directory that holds the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The test CA's certificate: what a client trusts, and what a server asking for client
    /// certificates accepts them from.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// The test CA's private key, for tests that issue certificates of their own with it.
    pub fn ca_key(&self) -> &Path {
        &self.ca_key
    }

    /// The good server certificate (as `server_cert_for(ServerCert::Good)`).
    pub fn server_cert(&self) -> &Path {
        self.server_cert_for(ServerCert::Good)
    }

    /// The server certificate of a kind.
    pub fn server_cert_for(&self, cert: ServerCert) -> &Path {
        &self.server_certs[cert as usize]
    }

    /// The private key of every server certificate.
    pub fn server_key(&self) -> &Path {
        &self.server_key
    }

    /// A client certificate signed by the test CA (subject `CN=libmemcached test client`).
    pub fn client_cert(&self) -> &Path {
        &self.client_cert
    }

    /// The client certificate's private key.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
