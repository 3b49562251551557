//! The TLS listener's certificate: loaded from PEM files (or made in
//! memory with `--tls-self-signed`), and replaced on SIGHUP without
//! touching open connections.
//!
//! Every handshake asks [`Certificates`] (a rustls certificate resolver)
//! for the current certificate, so a reload only swaps one `Arc`: the
//! handshakes after it use the new pair, sessions already open keep
//! theirs. A pair that fails to load or whose key does not match the
//! certificate is refused, and the old one stays.
//!
//! The crypto provider is aws-lc-rs, rustls' default (see Cargo.toml for why).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// A PEM certificate chain (leaf first) and its PEM private key,
    /// re-read on SIGHUP.
    Files {
        /// The chain.
        cert: PathBuf,
        /// The key: PKCS#8, PKCS#1 or SEC1.
        key: PathBuf,
    },
    /// A certificate for `localhost` made at start; nothing to reload.
    SelfSigned,
}

/// How the TLS listener serves.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// Where the certificate comes from.
    pub source: CertSource,
    /// A client that has not finished its handshake this long after
    /// connecting is disconnected.
    pub handshake_timeout: Duration,
}

/// The certificate that new handshakes use.
#[derive(Debug)]
pub(crate) struct Certificates {
    source: CertSource,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

/// What the TLS listener needs: the rustls configuration, whose resolver is
/// the reloadable [`Certificates`].
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    config: Arc<ServerConfig>,
    pub(crate) certificates: Arc<Certificates>,
    pub(crate) handshake_timeout: Duration,
}

impl Tls {
    /// Loads the certificate, or makes one. For a self-signed certificate
    /// also returns its SHA-256 fingerprint, for users to check.
    pub(crate) fn new(settings: &TlsSettings) -> Result<(Tls, Option<String>), String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (key, fingerprint) = match &settings.source {
            CertSource::Files { cert, key } => (load(cert, key, &provider)?, None),
            CertSource::SelfSigned => {
                let (key, fingerprint) = self_signed(&provider)?;
                (key, Some(fingerprint))
            }
        };
        let certificates = Arc::new(Certificates {
            source: settings.source.clone(),
            provider: provider.clone(),
            current: RwLock::new(Arc::new(key)),
        });
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        let tls = Tls {
            config: Arc::new(config),
            certificates,
            handshake_timeout: settings.handshake_timeout,
        };
        Ok((tls, fingerprint))
    }

    /// A session for a new connection.
    pub(crate) fn session(&self) -> Result<ServerConnection, rustls::Error> {
        ServerConnection::new(self.config.clone())
    }
}

impl Certificates {
    /// Whether there are files to read again.
    pub(crate) fn reloads(&self) -> bool {
        matches!(self.source, CertSource::Files { .. })
    }

    /// Reads the certificate and key files again; on success new
    /// handshakes use them. Nothing for a self-signed certificate.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let CertSource::Files { cert, key } = &self.source else {
            return Ok(());
        };
        let key = load(cert, key, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Reads a PEM certificate chain and its key, and checks that they match.
fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let what = |path: &Path, error: &dyn std::fmt::Display| format!("{}: {error}", path.display());
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| what(cert, &e))?;
    if chain.is_empty() {
        return Err(what(cert, &"no certificate (expected PEM)"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => what(
            key,
            &"no private key (expected PEM: PKCS#8, PKCS#1 or SEC1)",
        ),
        e => what(key, &e),
    })?;
    CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))
}

/// A certificate for `localhost` and the loopback addresses, and the
/// SHA-256 fingerprint of it (hex pairs joined by `:`, as
/// `openssl x509 -fingerprint -sha256` prints it).
fn self_signed(provider: &CryptoProvider) -> Result<(CertifiedKey, String), String> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| format!("TLS: {e}"))?;
    let der = made.cert.der().clone();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
    let mut fingerprint = String::new();
    for (i, byte) in digest.as_ref().iter().enumerate() {
        let colon = if i == 0 { "" } else { ":" };
        let _ = write!(fingerprint, "{colon}{byte:02X}");
    }
    let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let key = CertifiedKey::from_der(vec![der], key, provider).map_err(|e| format!("TLS: {e}"))?;
    Ok((key, fingerprint))
}
