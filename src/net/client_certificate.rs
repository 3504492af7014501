//! The certificate and key the proxy shows its clients, read again from their files when the
//! operator asks (SIGHUP, as PgBouncer's reload): a renewed certificate reaches new
//! connections without a restart, which would end every session. Connections already made
//! keep the certificate they were made with; files that cannot be read, or a key that does
//! not match its certificate, leave the one in use in place.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use super::tls::{TlsError, provider, read_certificates};

/// The client-facing certificate, swapped whole on a reload.
pub struct ClientCertificate {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl ClientCertificate {
    /// Reads the certificate chain at `cert` and its private key at `key` (PEM files).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(ClientCertificate {
            current: ArcSwap::from_pointee(read(cert, key)?),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Reads both files again and serves what they hold from the next handshake on; on an
    /// error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current.store(Arc::new(read(&self.cert, &self.key)?));
        Ok(())
    }

    /// The certificate file, for what the operator is told.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

fn read(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    // Checks that the key is the certificate's: a renewal that wrote only one of the two
    // files is refused here rather than failing every handshake.
    Ok(CertifiedKey::from_der(chain, key_der, &provider())?)
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ClientCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
