//! The S3 store, through aws-sdk-s3: MinIO on-premises, AWS S3 in the cloud.
//!
//! Configuration comes from the standard AWS environment variables and profile
//! files (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_PROFILE`,
//! …). Credentials and region are looked up in the environment and the profile
//! files only: the instance metadata service (IMDS) is asked only when
//! `CATTLE_S3_IMDS=1`, so that an air-gapped host never waits on a link-local
//! address that does not answer. With a custom endpoint, path-style addressing
//! is used (MinIO's default); set `CATTLE_S3_PATH_STYLE=0` or `1` to choose.
//!
//! HTTPS goes through the SDK's default client, rustls on aws-lc-rs. With
//! `CATTLE_CA_BUNDLE` set, that client trusts exactly the CA certificates in
//! that PEM file (a private CA, e.g. for an on-premises MinIO) and not the
//! system's; the file is checked when the store is opened, before any request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::interceptors::InterceptorContext;
use aws_sdk_s3::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_s3::config::{
    ConfigBag, Credentials, Intercept, RequestChecksumCalculation, ResponseChecksumValidation,
    RuntimeComponents,
};
use aws_sdk_s3::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::{Condition, Entry, Fetched, Object, Quorum, StoreError, check_key, check_prefix};
use crate::env;

/// Requests are given this long to connect, and each attempt this long overall.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// An upload's attempt is given at least the time this slow a link needs for
/// its body (a 1 MiB log part: 128 s), so that a slow link delays uploads
/// instead of failing every attempt.
const SLOWEST_UPLOAD_BYTES_PER_SEC: u64 = 8 * 1024;
/// The SDK's standard retry mode: up to 3 attempts, exponential backoff with
/// jitter from 1 s base, for throttling, 5xx and connection errors.
const MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    endpoint: String,
    ca_bundle: Option<PathBuf>,
    /// The store's clock minus this machine's, in seconds, as the last answer
    /// dated it; [`UNKNOWN_OFFSET`] before any.
    clock_offset: Arc<AtomicI64>,
}

/// [`S3Store::clock_offset`] before the store has answered.
const UNKNOWN_OFFSET: i64 = i64::MIN;

/// How to reach and authenticate to the S3 endpoint.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000`; `None` for AWS S3.
    pub endpoint: Option<String>,
    /// `None`: from `AWS_REGION` or the profile, else `us-east-1`.
    pub region: Option<String>,
    /// Access key ID and secret; `None`: from the environment or the profile files.
    pub credentials: Option<(String, String)>,
    /// `None`: path-style iff a custom endpoint is set.
    pub path_style: Option<bool>,
    /// Let the SDK ask the instance metadata service for credentials and region.
    pub imds: bool,
    /// A PEM file of CA certificates: trust exactly these for HTTPS to the
    /// endpoint; `None`: the system's root CAs.
    pub ca_bundle: Option<PathBuf>,
}

impl S3Options {
    /// Options from the environment: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`),
    /// [`env::S3_PATH_STYLE`], [`env::S3_IMDS`] and [`env::CA_BUNDLE`]. Credentials and region are left to the SDK's
    /// environment and profile providers.
    pub fn from_env() -> S3Options {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        S3Options {
            endpoint: var(env::AWS_ENDPOINT_URL).or_else(|| var(env::AWS_ENDPOINT_URL_S3)),
            region: None,
            credentials: None,
            path_style: match var(env::S3_PATH_STYLE).as_deref() {
                Some("1") | Some("true") => Some(true),
                Some("0") | Some("false") => Some(false),
                _ => None,
            },
            imds: var(env::S3_IMDS).is_some_and(|v| v == "1"),
            ca_bundle: var(env::CA_BUNDLE).map(PathBuf::from),
        }
    }
}

impl S3Store {
    /// A client configured from the standard AWS environment (see [`S3Options::from_env`]).
    pub async fn from_env(bucket: String, prefix: String) -> Result<S3Store, StoreError> {
        S3Store::new(bucket, prefix, S3Options::from_env()).await
    }

    /// A client for `bucket`, keys under `prefix` (empty or ending in `/`). No
    /// request is made; the only error is a CA bundle that cannot be used.
    pub async fn new(
        bucket: String,
        prefix: String,
        options: S3Options,
    ) -> Result<S3Store, StoreError> {
        let trusted = match &options.ca_bundle {
            Some(path) => Some(read_ca_bundle(path)?),
            None => None,
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        if let Some(endpoint) = &options.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some((id, secret)) = &options.credentials {
            loader =
                loader.credentials_provider(Credentials::new(id, secret, None, None, "cattle"));
        } else if !options.imds {
            loader = loader.credentials_provider(
                CredentialsProviderChain::first_try(
                    "Environment",
                    aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
                )
                .or_else(
                    "Profile",
                    aws_config::profile::ProfileFileCredentialsProvider::builder().build(),
                ),
            );
        }
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        } else if !options.imds {
            loader = loader.region(
                RegionProviderChain::first_try(
                    aws_config::environment::EnvironmentVariableRegionProvider::new(),
                )
                .or_else(aws_config::profile::ProfileFileRegionProvider::builder().build())
                .or_else(Region::new("us-east-1")),
            );
        }
        let sdk = loader.load().await;

        let path_style = options.path_style.unwrap_or(options.endpoint.is_some());
        let clock_offset = Arc::new(AtomicI64::new(UNKNOWN_OFFSET));
        let mut config =
            aws_sdk_s3::config::Builder::from(&sdk).interceptor(StoreClock(clock_offset.clone()));
        if let Some(pem) = trusted {
            config = config.http_client(https_client_trusting(pem));
        }
        let config = config
            .retry_classifier(NoRetryOnUntrustedCertificate)
            .force_path_style(path_style)
            // MinIO and other S3-compatible stores do not all accept the
            // checksums the SDK adds by default since early 2025.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(S3Store {
            client: Client::from_conf(config),
            bucket,
            prefix,
            endpoint: options.endpoint.unwrap_or_else(|| "AWS S3".to_string()),
            ca_bundle: options.ca_bundle,
            clock_offset,
        })
    }

    /// The store's clock minus this machine's, in whole seconds, as the
    /// `Date` header of the store's last answer (any request's) gives it;
    /// `None` before the first answer. Costs no request.
    pub fn clock_offset(&self) -> Option<i64> {
        match self.clock_offset.load(Ordering::Relaxed) {
            UNKNOWN_OFFSET => None,
            offset => Some(offset),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The object key of `key` under the prefix, once [`check_key`] accepts it:
    /// `..` must not take a request out of the prefix (another environment in
    /// the same bucket) should anything on the way normalise the path.
    fn checked(&self, op: &'static str, key: &str) -> Result<String, StoreError> {
        check_key(key).map_err(|reason| StoreError::InvalidKey {
            op,
            key: key.to_string(),
            reason,
        })?;
        Ok(self.key(key))
    }

    pub fn location(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(key))
    }

    /// The endpoint requests go to (`AWS S3` when none is set).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Turn an SDK error into a [`StoreError`] naming the object.
    fn error<E>(&self, op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let location = self.location(key);
        let untrusted = untrusted_certificate(&err);
        match &err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let message = e.message().unwrap_or("no message").to_string();
                if let Some((code, quorum)) = e.code().and_then(|c| Some((c, Quorum::lost(c)?))) {
                    return StoreError::QuorumLost {
                        op,
                        location,
                        quorum,
                        code: code.to_string(),
                    };
                }
                match e.code() {
                    Some("NoSuchBucket") => StoreError::NoSuchBucket {
                        bucket: self.bucket.clone(),
                        endpoint: self.endpoint.clone(),
                    },
                    Some("PreconditionFailed") | Some("ConditionalRequestConflict") => {
                        StoreError::PreconditionFailed { op, location }
                    }
                    Some(
                        code @ ("RequestTimeTooSkewed" | "RequestExpired" | "RequestInTheFuture"),
                    ) => StoreError::ClockSkew {
                        op,
                        location,
                        code: code.to_string(),
                        message,
                        skew: store_clock(service.raw())
                            .map(|theirs| seconds_between(SystemTime::now(), theirs)),
                    },
                    Some("AccessDenied")
                    | Some("InvalidAccessKeyId")
                    | Some("SignatureDoesNotMatch") => StoreError::AccessDenied {
                        op,
                        location,
                        message: format!("{} ({message})", e.code().unwrap_or_default()),
                    },
                    code => StoreError::Other {
                        op,
                        location,
                        message: format!("{}: {message}", code.unwrap_or("error")),
                    },
                }
            }
            // The SDK reports a failure to find credentials as a dispatch failure.
            SdkError::DispatchFailure(_) if error_chain(&err).contains("credential") => {
                StoreError::NoCredentials {
                    op,
                    location,
                    message: error_chain(&err),
                }
            }
            SdkError::DispatchFailure(_) if untrusted.is_some() => StoreError::Tls {
                op,
                location,
                endpoint: self.endpoint.clone(),
                reason: untrusted.unwrap_or_default(),
                ca_bundle: self.ca_bundle.clone(),
            },
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => StoreError::Unreachable {
                op,
                location,
                message: format!("{} ({})", self.endpoint, error_chain(&err)),
            },
            _ => StoreError::Other {
                op,
                location,
                message: error_chain(&err),
            },
        }
    }

    pub async fn get_if_changed(
        &self,
        key: &str,
        etag: Option<&str>,
        limit: u64,
    ) -> Result<Fetched, StoreError> {
        let object_key = self.checked("read", key)?;
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(object_key)
            .set_if_none_match(etag.map(str::to_string))
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(err) => {
                let status = err.raw_response().map(|r| r.status().as_u16());
                if status == Some(304) {
                    // Only an answer to If-None-Match; to a plain read it is
                    // a proxy's or a broken server's, not the object.
                    return match etag {
                        Some(_) => Ok(Fetched::NotModified),
                        None => Err(StoreError::UnaskedNotModified {
                            op: "read",
                            location: self.location(key),
                        }),
                    };
                }
                if let SdkError::ServiceError(e) = &err
                    && e.err().is_no_such_key()
                {
                    return Ok(Fetched::Missing);
                }
                return Err(self.error("read", key, err));
            }
        };
        let length = output.content_length().unwrap_or(0).max(0) as u64;
        if length > limit {
            return Err(StoreError::TooLarge {
                op: "read",
                location: self.location(key),
                limit,
            });
        }
        let etag = output.e_tag().unwrap_or_default().to_string();
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unreachable {
                op: "read",
                location: self.location(key),
                message: error_chain(&e),
            })?
            .to_vec();
        if bytes.len() as u64 > limit {
            return Err(StoreError::TooLarge {
                op: "read",
                location: self.location(key),
                limit,
            });
        }
        Ok(Fetched::Found(Object { bytes, etag }))
    }

    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: Condition,
    ) -> Result<String, StoreError> {
        let object_key = self.checked("write", key)?;
        let if_match = matches!(condition, Condition::IfMatch(_));
        let attempt = ATTEMPT_TIMEOUT.max(Duration::from_secs(
            bytes.len() as u64 / SLOWEST_UPLOAD_BYTES_PER_SEC,
        ));
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(object_key)
            .body(ByteStream::from(bytes));
        request = match condition {
            Condition::Always => request,
            Condition::IfAbsent => request.if_none_match("*"),
            Condition::IfMatch(etag) => request.if_match(etag),
        };
        let request = if attempt > ATTEMPT_TIMEOUT {
            request.customize().config_override(
                aws_sdk_s3::config::Builder::default().timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(CONNECT_TIMEOUT)
                        .operation_attempt_timeout(attempt)
                        .build(),
                ),
            )
        } else {
            request.customize()
        };
        match request.send().await {
            Ok(output) => Ok(output.e_tag().unwrap_or_default().to_string()),
            Err(err) => {
                let status = err.raw_response().map(|r| r.status().as_u16());
                // If-Match on an object that is not there: AWS S3 answers 404
                // `NoSuchKey`, and so does a distributed MinIO for a while after
                // nodes came back, for an object a read still finds. Either way
                // the object is not the one read: read it again.
                let absent = if_match
                    && status == Some(404)
                    && err.as_service_error().and_then(ProvideErrorMetadata::code)
                        == Some("NoSuchKey");
                if status == Some(412) || absent {
                    return Err(StoreError::PreconditionFailed {
                        op: "write",
                        location: self.location(key),
                    });
                }
                Err(self.error("write", key, err))
            }
        }
    }

    pub async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let object_key = self.checked("inspect", key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(object_key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(output.content_length().unwrap_or(0).max(0) as u64)),
            Err(err) => {
                if let SdkError::ServiceError(e) = &err
                    && e.err().is_not_found()
                {
                    return Ok(None);
                }
                Err(self.error("inspect", key, err))
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let object_key = self.checked("delete", key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(object_key)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| self.error("delete", key, err))
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        check_prefix(prefix).map_err(|reason| StoreError::InvalidKey {
            op: "list",
            key: prefix.to_string(),
            reason,
        })?;
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.key(prefix))
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| self.error("list", prefix, err))?;
            keys.extend(page.contents().iter().filter_map(|o| {
                Some(Entry {
                    key: o.key()?.strip_prefix(&self.prefix)?.to_string(),
                    modified: o
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                    etag: o.e_tag().unwrap_or_default().to_string(),
                })
            }));
        }
        Ok(keys)
    }

    /// See [`Store::list_dirs`](super::Store::list_dirs): the common
    /// prefixes of a listing delimited by `/`.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        check_prefix(prefix).map_err(|reason| StoreError::InvalidKey {
            op: "list",
            key: prefix.to_string(),
            reason,
        })?;
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.key(prefix))
            .delimiter("/")
            .into_paginator()
            .send();
        let mut dirs = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| self.error("list", prefix, err))?;
            dirs.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| Some(p.prefix()?.strip_prefix(&self.prefix)?.to_string())),
            );
        }
        dirs.sort();
        Ok(dirs)
    }

    /// Create the bucket (for tests and first-time setup).
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => {
                if let SdkError::ServiceError(e) = &err
                    && (e.err().is_bucket_already_owned_by_you())
                {
                    return Ok(());
                }
                Err(self.error("create bucket", "", err))
            }
        }
    }
}

/// Read the CA bundle at `path` and check it the way the TLS client will use
/// it: readable, PEM, at least one certificate, each usable as a trust anchor.
/// (The SDK's client does not report a bad certificate; it panics on one.)
fn read_ca_bundle(path: &Path) -> Result<Vec<u8>, StoreError> {
    let bad = |message: String| StoreError::CaBundle {
        path: path.to_path_buf(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("it is not valid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("a certificate in it is not a usable CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(
            "it holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".to_string(),
        ));
    }
    Ok(pem)
}

/// The SDK's default HTTPS client (rustls on aws-lc-rs, proxy settings from
/// the environment, the SDK's timeouts) trusting only the certificates in `pem`.
fn https_client_trusting(pem: Vec<u8>) -> aws_sdk_s3::config::SharedHttpClient {
    let tls = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(pem))
        .build()
        .expect("a TLS context with a trust store always builds");
    // As `aws_smithy_runtime`'s default client builds its connector, with our trust store.
    aws_smithy_http_client::Builder::new().build_with_connector_fn(
        move |settings, runtime_components| {
            let mut connector = aws_smithy_http_client::Connector::builder()
                .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(tls.clone());
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = runtime_components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector.set_proxy_config(Some(ProxyConfig::from_env()));
            connector.build()
        },
    )
}

/// Keeps the SDK from retrying a connection whose server certificate was
/// refused (it counts as a transient I/O error): every attempt would be refused
/// the same way, only later.
#[derive(Debug)]
struct NoRetryOnUntrustedCertificate;

impl ClassifyRetry for NoRetryOnUntrustedCertificate {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.output_or_error() {
            Some(Err(err))
                if err
                    .as_connector_error()
                    .is_some_and(|e| untrusted_certificate(e).is_some()) =>
            {
                RetryAction::RetryForbidden
            }
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "untrusted server certificate"
    }
}

/// Why the server's certificate was refused, if that is what `err` is: rustls's
/// error, found down the source chain. The connector wraps it in I/O errors,
/// whose `source()` skips what they wrap, so those are opened with `get_ref()`.
fn untrusted_certificate(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        let mut inner = e;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            inner = wrapped;
        }
        if let Some(tls @ rustls::Error::InvalidCertificate(_)) =
            inner.downcast_ref::<rustls::Error>()
        {
            return Some(tls.to_string());
        }
        next = e.source();
    }
    None
}

/// Notes the store's clock from every answer's `Date` header (see
/// [`S3Store::clock_offset`]): the agent reports it in its heartbeat, at no
/// cost of its own.
#[derive(Debug)]
struct StoreClock(Arc<AtomicI64>);

impl Intercept for StoreClock {
    fn name(&self) -> &'static str {
        "store clock"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(theirs) = store_clock(context.response()) {
            self.0.store(
                seconds_between(SystemTime::now(), theirs),
                Ordering::Relaxed,
            );
        }
        Ok(())
    }
}

/// The store's time, as the `Date` header of its answer gives it: the middle of
/// the second it names, since the header has no fraction.
fn store_clock(response: &HttpResponse) -> Option<SystemTime> {
    let date = response.headers().get("date")?;
    let date = DateTime::from_str(date, DateTimeFormat::HttpDate).ok()?;
    Some(SystemTime::try_from(date).ok()? + Duration::from_millis(500))
}

/// `later - earlier` to the nearest second, negative when `later` is earlier.
fn seconds_between(earlier: SystemTime, later: SystemTime) -> i64 {
    let (sign, by) = match later.duration_since(earlier) {
        Ok(d) => (1, d),
        Err(e) => (-1, e.duration()),
    };
    sign * (by.as_secs_f64().round() as i64)
}

/// An error and its sources on one line: the SDK's top-level messages alone
/// ("dispatch failure") do not say what went wrong.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_error(contents: Option<&[u8]>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        if let Some(contents) = contents {
            std::fs::write(&path, contents).unwrap();
        }
        let err = read_ca_bundle(&path).unwrap_err();
        assert!(matches!(err, StoreError::CaBundle { .. }), "{err:?}");
        let message = err.to_string();
        let named = format!("CA bundle `{}` (CATTLE_CA_BUNDLE): ", path.display());
        assert!(message.starts_with(&named), "{message}");
        assert!(err.hint().unwrap().contains("CATTLE_CA_BUNDLE"));
        message[named.len()..].to_string()
    }

    #[test]
    fn an_unusable_ca_bundle_is_an_error_naming_the_file_and_the_variable() {
        assert!(bundle_error(None).starts_with("cannot read it: No such file"));
        assert_eq!(
            bundle_error(Some(b"")),
            "it holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"
        );
        assert_eq!(
            bundle_error(Some(b"not a certificate\n")),
            "it holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"
        );
        // A certificate block that is not base64, and one that is not a certificate:
        // errors, never the panic the HTTPS client would raise on them.
        let bad_base64 = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(bundle_error(Some(bad_base64)).starts_with("it is not valid PEM"));
        let not_a_cert = b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert!(
            bundle_error(Some(not_a_cert)).starts_with("a certificate in it is not a usable CA")
        );
    }

    /// What [`S3Store::error`] makes of a 503 answer with error code `code`.
    async fn answered_503(code: &str) -> StoreError {
        use aws_sdk_s3::error::ErrorMetadata;
        use aws_sdk_s3::operation::get_object::GetObjectError;
        use aws_sdk_s3::primitives::SdkBody;
        let store = S3Store::new(
            "b".to_string(),
            "p/".to_string(),
            S3Options {
                endpoint: Some("http://127.0.0.1:9".to_string()),
                region: Some("us-east-1".to_string()),
                credentials: Some(("k".to_string(), "s".to_string())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("Resource requested is unreadable, please reduce your request rate")
            .build();
        let raw = HttpResponse::new(503.try_into().unwrap(), SdkBody::empty());
        store.error(
            "read",
            "k",
            SdkError::service_error(GetObjectError::generic(meta), raw),
        )
    }

    #[tokio::test]
    async fn minio_quorum_errors_are_named_as_lost_quorum_and_slow_down_is_not() {
        for (code, quorum) in [
            ("SlowDownRead", Quorum::Read),
            ("SlowDownWrite", Quorum::Write),
            ("XMinioReadQuorum", Quorum::Read),
            ("XMinioWriteQuorum", Quorum::Write),
        ] {
            let err = answered_503(code).await;
            assert!(
                matches!(&err, StoreError::QuorumLost { quorum: q, .. } if *q == quorum),
                "{code}: {err:?}"
            );
            assert!(err.is_transient(), "{code}");
            assert_eq!(
                err.to_string(),
                format!(
                    "read `s3://b/p/k`: the store has lost its {quorum} quorum: too few of its \
                     drives are online (MinIO answered `{code}`)"
                )
            );
            assert!(!err.to_string().contains("request rate"), "{err}");
        }
        // AWS S3's throttling, and any other 503, stay what they were.
        for code in ["SlowDown", "XMinioServerNotInitialized"] {
            let err = answered_503(code).await;
            assert!(matches!(err, StoreError::Other { .. }), "{code}: {err:?}");
        }
    }

    #[test]
    fn clock_differences_are_rounded_to_the_second() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            seconds_between(t, t + Duration::from_millis(1_199_600)),
            1200
        );
        assert_eq!(
            seconds_between(t, t + Duration::from_millis(1_200_400)),
            1200
        );
        assert_eq!(
            seconds_between(t + Duration::from_millis(1_199_600), t),
            -1200
        );
        assert_eq!(seconds_between(t, t), 0);
    }

    #[test]
    fn a_refused_certificate_is_found_inside_the_io_errors_that_wrap_it() {
        let refused = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Connect(#[source] std::io::Error);
        assert_eq!(
            untrusted_certificate(&Connect(refused)).as_deref(),
            Some("invalid peer certificate: UnknownIssuer")
        );

        let refused_connection = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(untrusted_certificate(&Connect(refused_connection)), None);
    }
}
