//! TLS of the federation listener: the configured certificate and key, or a self-signed pair
//! generated in `data_dir` on first start (development only: other servers do not trust it).

use myelin_core::{Config, Error, Result};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::{path::PathBuf, sync::Arc};

/// File names of the generated pair under `data_dir`.
pub const GENERATED_CERT: &str = "federation-tls.crt";
pub const GENERATED_KEY: &str = "federation-tls.key";

/// The certificate and key files the listener uses, generating the development pair if needed.
pub fn certificate_paths(config: &Config) -> Result<(PathBuf, PathBuf)> {
    let tls = &config.federation.tls;
    if let (Some(cert), Some(key)) = (&tls.certificate, &tls.private_key) {
        return Ok((cert.clone(), key.clone()));
    }
    let cert = config.data_dir.join(GENERATED_CERT);
    let key = config.data_dir.join(GENERATED_KEY);
    if !cert.exists() || !key.exists() {
        let host = config.server_name.host().to_owned();
        let mut names = vec![host];
        if names[0] != "localhost" {
            names.push("localhost".to_owned());
        }
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| Error::internal(format!("generating a TLS certificate: {e}")))?;
        write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert, generated.cert.pem()).map_err(|e| Error::internal(format!("{}: {e}", cert.display())))?;
        tracing::warn!(
            certificate = %cert.display(),
            "generated a self-signed TLS certificate for the federation listener; other servers will not trust it: \
             set federation.tls.certificate and federation.tls.private_key"
        );
    }
    Ok((cert, key))
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))
}

/// The rustls configuration of the federation listener.
pub fn server_config(config: &Config) -> Result<Arc<ServerConfig>> {
    let (cert_path, key_path) = certificate_paths(config)?;
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::internal(format!("federation.tls.certificate {}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(Error::internal(format!(
            "federation.tls.certificate {}: no certificate in it",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| Error::internal(format!("federation.tls.private_key {}: {e}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::internal(format!("federation TLS certificate and key: {e}")))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}
