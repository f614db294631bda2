//! A rustls client configuration from a sink's `tls = { … }` settings, for the sinks whose
//! client is not reqwest's (Kafka). It trusts what the HTTP sink trusts for the same settings:
//! the CAs of `ca_file` alone, or else the system's store through the same platform verifier.

use super::http::TlsSettings;
use super::http::secret;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// The configuration `settings` ask for, or what is wrong with them (naming the key and file).
pub(crate) fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = if settings.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else if let Some(path) = &settings.ca_file {
        // Only these: a sink pinned to its cluster's CA trusts nothing else.
        let mut roots = RootCertStore::empty();
        for certificate in certificates(path).map_err(|e| format!("tls.ca_file: {e}"))? {
            roots.add(certificate).map_err(|e| format!("tls.ca_file: {}: {e}", path.display()))?;
        }
        builder.with_root_certificates(roots)
    } else {
        let verifier = rustls_platform_verifier::Verifier::new(provider)
            .map_err(|e| format!("tls: the system's trust store: {e}"))?;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
    };
    let config = match (&settings.client_cert_file, &settings.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert).map_err(|e| format!("tls.client_cert_file: {e}"))?;
            // The key's own error would not name the file; it never holds key material.
            let pem = secret::read_private(key)
                .map_err(|e| format!("tls.client_key_file: cannot read {}: {e}", key.display()))?;
            let key_der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
                format!("tls.client_key_file: {}: no private key in it", key.display())
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                format!(
                    "tls.client_key_file: {}: does not go with the certificate: {e}",
                    key.display()
                )
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("client_cert_file and client_key_file go together".into()),
    };
    Ok(Arc::new(config))
}

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certificates)
}

/// `insecure_skip_verify`: any certificate, for any name. The handshake's signatures are still
/// checked, so the session is at least with whoever holds the key of the certificate shown.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TlsSettings {
        TlsSettings::default()
    }

    #[test]
    fn the_system_store_and_skipping_verification_need_no_files() {
        assert!(client_config(&settings()).is_ok());
        let insecure = TlsSettings { insecure_skip_verify: true, ..settings() };
        assert!(client_config(&insecure).is_ok());
    }

    #[test]
    fn bad_files_are_named_with_their_key() {
        let dir = std::env::temp_dir().join(format!("sockwatch-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let missing = dir.join("missing.pem");

        let ca = |path: &Path| TlsSettings { ca_file: Some(path.to_path_buf()), ..settings() };
        let error = client_config(&ca(&missing)).unwrap_err();
        assert!(error.starts_with("tls.ca_file: cannot read") && error.contains("missing.pem"));
        let error = client_config(&ca(&not_pem)).unwrap_err();
        assert_eq!(error, format!("tls.ca_file: {}: no certificate in it", not_pem.display()));

        let half = TlsSettings { client_cert_file: Some(not_pem.clone()), ..settings() };
        assert_eq!(
            client_config(&half).unwrap_err(),
            "client_cert_file and client_key_file go together"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
