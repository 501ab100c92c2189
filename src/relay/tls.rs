//! TLS to the servers, with rustls: [`Tls`] is what a client is configured with, `Connector`
//! what the relay makes each connection with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, ClientConnection, RootCertStore};

/// How a client speaks TLS to its servers (memcached's `-Z`, ElastiCache's in-transit
/// encryption): which certificate authorities it trusts, the name it expects in the servers'
/// certificates, and a client certificate where the servers ask for one.
///
/// ```no_run
/// use libmemcached::{Client, Tls};
///
/// let mc = Client::builder()
///     .servers(["cache.internal:11211"])
///     .tls(Tls::new().ca_file("/etc/memcached/ca.pem"))
///     .build()?;
/// # Ok::<(), libmemcached::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Tls {
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    server_name: Option<String>,
}

impl Tls {
    /// Trusts the system's certificate authorities and checks each server's certificate
    /// against the host name (or IP address) it is configured with.
    pub fn new() -> Tls {
        Tls::default()
    }

    /// Trusts only the certificate authorities in this PEM file.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Tls {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents this client certificate (a PEM chain) and key (PEM: PKCS#8, PKCS#1 or SEC1)
    /// to servers that ask for one (memcached's `ssl_verify_mode`).
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Tls {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Expects this name in every server's certificate, and sends it (SNI), instead of the
    /// host each server is configured with: for servers configured by address whose
    /// certificates name a host.
    pub fn server_name(mut self, name: impl Into<String>) -> Tls {
        self.server_name = Some(name.into());
        self
    }

    /// The connector for the relay; an error says which file or name is wrong and why.
    pub(crate) fn connector(&self) -> Result<Connector, String> {
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for cert in certificates(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err("no trusted certificate authorities found on this system \
                                (install ca-certificates, or give a CA file)"
                        .into());
                }
            }
        }
        // ring: no C toolchain beyond cc to build, unlike aws-lc-rs. rustls deprecates its
        // provider for lacking post-quantum key exchange, which memcached (OpenSSL) does not
        // offer either.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match &self.client_cert {
            Some((cert, key)) => {
                let chain = certificates(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("{}: no private key: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("{}: {e}", cert.display()))?
            }
            None => builder.with_no_client_auth(),
        };
        let server_name = match &self.server_name {
            Some(name) => Some(server_name(name)?),
            None => None,
        };
        Ok(Connector {
            config: Arc::new(config),
            server_name,
        })
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} is neither a host name nor an IP address"))
}

/// Makes each TLS connection of a relay.
#[derive(Clone)]
pub(crate) struct Connector {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl Connector {
    /// A new TLS session with the server configured as `host`.
    pub(crate) fn connect(&self, host: &str) -> Result<ClientConnection, String> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => server_name(host)?,
        };
        ClientConnection::new(Arc::clone(&self.config), name).map_err(|e| format!("TLS: {e}"))
    }
}

/// What a TLS failure means, for the error of the server it happened with.
pub(crate) fn describe(error: &rustls::Error) -> String {
    use rustls::Error as E;
    let what = match error {
        E::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is not signed by a trusted certificate authority".into()
        }
        E::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired".into(),
        E::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "the server's certificate is not valid for its name".into(),
        E::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate".into()
        }
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => {
            format!("the server does not speak TLS on this port ({error})")
        }
        other => other.to_string(),
    };
    format!("TLS: {what}")
}
