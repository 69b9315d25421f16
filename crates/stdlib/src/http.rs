//! HTTP(S) for facilities (`download`, `wait_for`): one blocking client with
//! the store's TLS settings.
//!
//! With a CA bundle ([`crate::Environment::ca_bundle`], the agent's
//! `CATTLE_CA_BUNDLE`), servers are trusted only when that bundle vouches for
//! them, as the store is; without one, the system's root certificates count.
//! Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY`.
//! Nothing here reaches for the internet on its own.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use crate::facility::{Deadline, FacilityError};

/// A client for one attempt at `url`: it gives up at `deadline` (connecting,
/// waiting and reading included), and answers every status as a response
/// (the caller judges it). Errors when the CA bundle cannot be read, or when
/// `url` is HTTPS and the system has no root certificates; a plain `http://`
/// URL needs none (a minimal host often has none installed).
pub fn client(
    url: &str,
    ca_bundle: Option<&Path>,
    deadline: Option<Deadline>,
) -> Result<ureq::Agent, FacilityError> {
    let roots = match ca_bundle {
        Some(path) => bundle_roots(path)?,
        None => {
            let roots = system_roots();
            if roots.is_empty() && url.starts_with("https:") {
                return Err(FacilityError::permanent(
                    "this host has no root certificates (install ca-certificates), and \
                     CATTLE_CA_BUNDLE is not set to the CA that signs the server's certificate",
                ));
            }
            roots
        }
    };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(ureq::Proxy::try_from_env())
        .http_status_as_error(false)
        .timeout_global(deadline.map(|d| d.left().max(Duration::from_millis(1))))
        .user_agent(concat!("cattle/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(config.into())
}

/// The certificates of the PEM bundle at `path`; at least one.
fn bundle_roots(path: &Path) -> Result<Vec<Certificate<'static>>, FacilityError> {
    let bad =
        |why: String| FacilityError::permanent(format!("CA bundle `{}`: {why}", path.display()));
    let pem =
        std::fs::read(path).map_err(|err| FacilityError::io("read the CA bundle", path, err))?;
    let mut roots = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|err| bad(format!("it is not valid PEM: {err}")))? {
            ureq::tls::PemItem::Certificate(cert) => roots.push(cert),
            _ => continue,
        }
    }
    if roots.is_empty() {
        return Err(bad(
            "it holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".to_string(),
        ));
    }
    Ok(roots)
}

/// The system's root certificates; none when it has none.
fn system_roots() -> Vec<Certificate<'static>> {
    rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect()
}

/// A URL's scheme is `http` or `https` and it has a host: checked when the
/// steps file is read.
pub fn valid_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("it has no scheme; write e.g. `https://mirror.internal/file`".to_string());
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!("scheme `{scheme}` is not `http` or `https`"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err("it names no host".to_string());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains spaces or control characters".to_string());
    }
    ureq::http::Uri::try_from(url)
        .map(|_| ())
        .map_err(|err| format!("it is not a valid URL: {err}"))
}

/// What went wrong with a request to `url`, for an error message; never
/// permanent (a server can come back), except a certificate refused, which
/// no retry changes.
pub fn request_error(url: &str, err: ureq::Error, ca_bundle: Option<&Path>) -> FacilityError {
    let message = format!("request to {url} failed: {err}");
    if is_certificate_refused(&err) {
        let advice = match ca_bundle {
            Some(path) => format!(
                "CATTLE_CA_BUNDLE is `{}`, and no certificate in it signs the server's",
                path.display()
            ),
            None => "CATTLE_CA_BUNDLE is not set, so only the system's root CAs are trusted; \
                     set it to the CA that signs the server's certificate (the same setting the \
                     store uses)"
                .to_string(),
        };
        FacilityError::permanent(format!(
            "{message}; the server's certificate is not trusted: {advice}"
        ))
    } else {
        FacilityError::new(message)
    }
}

/// Whether `err` is the TLS handshake refusing the server's certificate.
pub fn is_certificate_refused(err: &ureq::Error) -> bool {
    let tls = match err {
        ureq::Error::Rustls(tls) => Some(tls),
        ureq::Error::Io(io) => io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    matches!(
        tls,
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_an_http_scheme_and_a_host() {
        for good in [
            "https://mirror.internal/pool/a.deb",
            "http://10.0.0.1:8080/",
            "https://[::1]:8443/x?y=1",
        ] {
            assert_eq!(valid_url(good), Ok(()), "{good}");
        }
        for bad in [
            "mirror.internal/x",
            "ftp://mirror/x",
            "https:///x",
            "https://:80/x",
            "https://a b/",
            "file:///etc/passwd",
        ] {
            assert!(valid_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = bundle_roots(&path).unwrap_err();
        assert!(err.is_permanent());
        assert!(err.message().contains("holds no PEM certificate"), "{err}");
    }
}
