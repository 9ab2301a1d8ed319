//! TLS with rustls and the ring provider, TLS 1.2 and 1.3 only (rustls has nothing older):
//! the client configuration shared by the MQTT sink, the S3 sink and `ingest` (server
//! certificates checked against the configured CA or the public web roots, an optional
//! client certificate for mTLS), and the HTTP listener's server configuration
//! (`http.tls_cert_file`, `http.tls_key_file`). Errors name the key, the file and what is
//! wrong with it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

/// Read every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client config. `ca`: PEM CA file (None = the public web roots);
/// `client`: PEM certificate chain and private key for mTLS.
/// `section`: the config section the paths come from, named in every error
/// (`mqtt.ca_file /etc/...: no PEM certificate in the file`).
pub fn client_config(
    section: &str,
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<ClientConfig, String> {
    let keyed = |key: &'static str| move |e: String| format!("{section}.{key} {e}");
    let mut roots = RootCertStore::empty();
    match ca {
        Some(ca) => {
            for c in load_certs(ca).map_err(keyed("ca_file"))? {
                roots.add(c).map_err(|e| {
                    format!(
                        "{section}.ca_file {}: not a usable CA certificate: {e}",
                        ca.display()
                    )
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                load_certs(cert).map_err(keyed("client_cert_file"))?,
                load_key(key).map_err(keyed("client_key_file"))?,
            )
            .map_err(|e| {
                format!(
                    "{section}.client_cert_file {} / client_key_file {}: {e}",
                    cert.display(),
                    key.display()
                )
            }),
    }
}

/// The HTTP listener's TLS configuration: the certificate chain (leaf first) and private
/// key of `http.tls_cert_file` and `http.tls_key_file`, offering HTTP/1.1 by ALPN.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let certs = load_certs(cert).map_err(|e| format!("http.tls_cert_file {e}"))?;
    let key_der = load_key(key).map_err(|e| format!("http.tls_key_file {e}"))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            format!(
                "http.tls_cert_file {} / http.tls_key_file {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A path option from the config: empty means unset.
pub fn opt_path(p: &Path) -> Option<&Path> {
    (!p.as_os_str().is_empty()).then_some(p)
}

/// Put a TLS failure into words a person acts on; rustls's own text is kept.
pub fn explain(detail: &str) -> String {
    if detail.contains("UnknownIssuer") {
        format!("{detail} (the server's certificate is not signed by the configured CA)")
    } else if detail.contains("NotValidForName") {
        format!("{detail} (the server's certificate does not name the configured host)")
    } else {
        detail.to_string()
    }
}

/// Whether an error text is about TLS rather than the network.
pub fn is_tls_error(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("certificate") || d.contains("tls") || d.contains("handshake") || d.contains("alert")
}
