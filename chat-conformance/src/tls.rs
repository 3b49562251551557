//! [`TestCert`]: certificates made at test time, and the client
//! configurations that trust them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};

use crate::Endpoint;

/// The name every test certificate is for, and the one clients ask for.
pub const SERVER_NAME: &str = "localhost";

/// A self-signed certificate for `localhost` and 127.0.0.1, made with
/// rcgen, with its key, written as PEM files for the server's `--tls-cert`
/// and `--tls-key`. Clients made from it ([`TestCert::client_config`])
/// trust exactly this certificate.
#[derive(Debug)]
pub struct TestCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCert {
    /// Makes a new certificate and key and writes them to `dir/NAME.crt`
    /// and `dir/NAME.key`.
    pub fn create(dir: &Path, name: &str) -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec![
            SERVER_NAME.to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("rcgen makes a self-signed certificate");
        let cert = TestCert {
            cert_path: dir.join(format!("{name}.crt")),
            key_path: dir.join(format!("{name}.key")),
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
            der: made.cert.der().clone(),
        };
        cert.write_to(&cert.cert_path, &cert.key_path);
        cert
    }

    /// The certificate every TLS-mode check's server uses: made and written
    /// once per process (the checks run on many threads at once).
    pub fn shared() -> &'static TestCert {
        static SHARED: OnceLock<TestCert> = OnceLock::new();
        SHARED.get_or_init(|| TestCert::create(&scratch_dir("shared"), "localhost"))
    }

    /// The PEM certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The PEM private key file (PKCS#8).
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// Writes this certificate and key over `other`'s files, as an operator
    /// renewing a certificate would (then SIGHUP tells the server).
    pub fn write_over(&self, other: &TestCert) {
        self.write_to(&other.cert_path, &other.key_path);
    }

    fn write_to(&self, cert_path: &Path, key_path: &Path) {
        for (path, pem) in [(cert_path, &self.cert_pem), (key_path, &self.key_pem)] {
            std::fs::write(path, pem)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
    }

    /// A new client configuration (TLS 1.2 and 1.3, and so an empty
    /// session cache) whose only trust anchor is this certificate.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.config_for(rustls::DEFAULT_VERSIONS)
    }

    /// [`TestCert::client_config`] offering TLS 1.2 only.
    pub fn client_config_tls12(&self) -> Arc<ClientConfig> {
        self.config_for(&[&rustls::version::TLS12])
    }

    fn config_for(&self, versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.der.clone())
            .expect("the test certificate is a valid trust anchor");
        // The provider is the one rustls' crate features give: the
        // workspace builds it with one, the servers' own.
        let config = ClientConfig::builder_with_protocol_versions(versions)
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// `addr` over TLS, trusting this certificate only.
    pub fn endpoint(&self, addr: SocketAddr) -> Endpoint {
        Endpoint::tls(addr, self.client_config())
    }
}

/// A directory of this process's own under the system's temporary
/// directory, `chat-conformance-PID/NAME`, created if need be. It holds
/// test certificates and keys, which servers read while the process runs,
/// so it stays until then; the first call removes those of earlier runs
/// whose process is gone (no `/proc/PID`) and that are over a day old (a
/// run in another PID namespace sharing `/tmp` has no `/proc/PID` here).
pub(crate) fn scratch_dir(name: &str) -> PathBuf {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(remove_stale_scratch_dirs);
    let dir = std::env::temp_dir()
        .join(format!("{SCRATCH_PREFIX}{}", std::process::id()))
        .join(name);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// What [`scratch_dir`]'s directories are named, before the process id.
const SCRATCH_PREFIX: &str = "chat-conformance-";

/// Removes the scratch directories of processes that have ended. Best
/// effort: one that cannot be read or removed is left.
fn remove_stale_scratch_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX));
        let Some(pid) = pid.and_then(|pid| pid.parse::<u32>().ok()) else {
            continue;
        };
        const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
        let old = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > DAY));
        if old && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
