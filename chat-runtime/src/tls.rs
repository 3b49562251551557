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
        let provider = Arc::new(provider());
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
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        // The provider's order, AES-128-GCM first (see `provider`), not the
        // client's: most clients put AES-256-GCM first.
        config.ignore_client_order = true;
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

/// aws-lc-rs, with the AES-128-GCM suites (SHA-256) first. A session keeps
/// its record keys and key schedule for its whole life, and with
/// AES-256-GCM and SHA-384, the suite most clients prefer, an idle TLS 1.3
/// session holds 9,257 bytes against 5,161 (docs/tls.md, "Memory"), with
/// more than 10,000 clients to a server. AES-128-GCM is TLS 1.3's
/// mandatory suite and every client has it; the others stay, for clients
/// without it.
fn provider() -> CryptoProvider {
    use rustls::CipherSuite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS13_AES_128_GCM_SHA256,
    };
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // A stable sort: the rest keep the provider's order.
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    provider
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore};

    /// The server's certificate as a client would trust it, and the server.
    fn self_signed_server() -> (Tls, CertificateDer<'static>) {
        let settings = TlsSettings {
            source: CertSource::SelfSigned,
            handshake_timeout: Duration::from_secs(10),
        };
        let (tls, _) = Tls::new(&settings).unwrap();
        let resolved = tls.certificates.current.read().unwrap().clone();
        (tls, resolved.cert[0].clone())
    }

    /// A client trusting `cert`, offering its provider's suites in its
    /// provider's order (AES-256-GCM first, as most clients do).
    fn client(cert: CertificateDer<'static>) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
    }

    /// Runs the handshake in memory; returns the two ends.
    fn handshake(client: ClientConnection, server: ServerConnection) -> (Connection, Connection) {
        let (mut client, mut server) = (Connection::Client(client), Connection::Server(server));
        while client.is_handshaking() || server.is_handshaking() {
            pass(&mut client, &mut server);
            pass(&mut server, &mut client);
        }
        (client, server)
    }

    /// Moves what `from` has to send into `to`.
    fn pass(from: &mut Connection, to: &mut Connection) {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).unwrap();
        }
        let mut input = &bytes[..];
        while !input.is_empty() {
            to.read_tls(&mut input).unwrap();
            to.process_new_packets().unwrap();
        }
    }

    #[test]
    fn sessions_use_aes_128_gcm_whatever_the_client_prefers() {
        let (tls, cert) = self_signed_server();
        let first = rustls::crypto::aws_lc_rs::default_provider().cipher_suites[0].suite();
        assert_eq!(
            first,
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            "the client's first choice"
        );
        let (_, server) = handshake(client(cert), tls.session().unwrap());
        let suite = server.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    }

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_certificate_served() {
        let settings = TlsSettings {
            source: CertSource::SelfSigned,
            handshake_timeout: Duration::from_secs(10),
        };
        let (tls, fingerprint) = Tls::new(&settings).unwrap();
        let fingerprint = fingerprint.expect("a self-signed certificate has one");
        let resolved = tls.certificates.current.read().unwrap().clone();
        let (client, _) = handshake(client(resolved.cert[0].clone()), tls.session().unwrap());
        let served = &client.peer_certificates().unwrap()[0];
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, served);
        let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(fingerprint, hex.join(":"));
    }

    #[test]
    fn a_reload_that_fails_keeps_the_pair_in_use() {
        let dir = std::env::temp_dir().join(format!("chat-runtime-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let write_pair = || {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
            std::fs::write(&cert, made.cert.pem()).unwrap();
            std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
            made.cert.der().clone()
        };
        let first = write_pair();
        let settings = TlsSettings {
            source: CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            handshake_timeout: Duration::from_secs(10),
        };
        let (tls, fingerprint) = Tls::new(&settings).unwrap();
        assert_eq!(fingerprint, None);
        let current = || tls.certificates.current.read().unwrap().cert[0].clone();
        assert_eq!(current(), first);

        let second = write_pair();
        tls.certificates.reload().unwrap();
        assert_eq!(current(), second, "reloaded");

        std::fs::write(&key, "not a key").unwrap();
        let error = tls.certificates.reload().unwrap_err();
        assert!(error.contains("no private key"), "{error}");
        assert_eq!(current(), second, "kept after a bad key");

        // A key that does not belong to the certificate.
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&key, other.signing_key.serialize_pem()).unwrap();
        assert!(tls.certificates.reload().is_err());
        assert_eq!(current(), second, "kept after a key of another certificate");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
