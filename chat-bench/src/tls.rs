//! TLS client settings: which certificates to trust, which name to ask for.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// What every TLS client of a run connects with.
#[derive(Debug, Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Tls {
    /// Clients that ask for `server_name` and trust the certificates in the
    /// PEM file `ca`, or, without one, any certificate ([`AnyCert`]).
    pub fn new(server_name: &str, ca: Option<&Path>) -> Result<Self, String> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("--tls-server-name {server_name}: {e}"))?;
        // The servers' provider (the workspace's rustls features).
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let mut config = match ca {
            Some(path) => builder
                .with_root_certificates(roots(path)?)
                .with_no_client_auth(),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(algorithms)))
                .with_no_client_auth(),
        };
        // Every connection a full handshake, as from as many distinct clients.
        config.resumption = Resumption::disabled();
        Ok(Self {
            config: Arc::new(config),
            name,
        })
    }

    /// A new client connection, before its handshake.
    pub fn client(&self) -> io::Result<ClientConnection> {
        ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| io::Error::other(format!("TLS: {e}")))
    }
}

/// The certificates of the PEM file at `path`, as trust anchors.
fn roots(path: &Path) -> Result<RootCertStore, String> {
    let what = |e: &dyn std::fmt::Display| format!("--tls-ca {}: {e}", path.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| what(&e))? {
        roots
            .add(cert.map_err(|e| what(&e))?)
            .map_err(|e| what(&e))?;
    }
    if roots.is_empty() {
        return Err(what(&"no certificate in the file"));
    }
    Ok(roots)
}

/// Accepts any server certificate: chat-bench measures a server it started
/// itself, typically with a self-signed certificate made at startup, so
/// there is nothing to check it against (`--tls-ca` is for when there is).
/// The handshake's signature is still checked, so the work a real client
/// does is done. Private to the bench; no client of anything else may
/// trust servers like this.
#[derive(Debug)]
struct AnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
