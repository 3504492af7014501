//! A test certificate authority and certificates it signs, generated fresh per test.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use viewgate::pg_cluster::ServerCertificate;

pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// PEM files on disk, as servers and clients want them.
pub struct PemFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/{file}` and returns its path.
    pub fn write_cert(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.cert_pem()).unwrap();
        path
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server_certificate(&self, names: &[&str]) -> ServerCertificate {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "viewgate test server");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate written as `server.crt` / `server.key` in `dir`.
    pub fn write_server_files(&self, dir: &Path, names: &[&str]) -> PemFiles {
        let certificate = self.server_certificate(names);
        let files = PemFiles {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        };
        std::fs::write(&files.cert, certificate.cert_pem).unwrap();
        std::fs::write(&files.key, certificate.key_pem).unwrap();
        files
    }
}
