//! The store: where bundles, manifests, inboxes and statuses live.
//!
//! One interface, two backends: S3-compatible object storage (MinIO, AWS S3)
//! and a local directory, the embedded default for a single machine. Both
//! support the two conditional operations Cattle's protocol rests on: a read
//! that answers "not modified" for a known ETag, and a write that succeeds only
//! if the object is absent or still has a known ETag.

pub mod check;
mod file;
mod s3;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use file::FileStore;
pub use s3::{S3Options, S3Store};

/// The embedded default store: a local directory, for a single machine.
pub const DEFAULT_STORE: &str = "file:///var/lib/cattle/store";

/// How long a read or write of one object may go unanswered before it is
/// logged (and then again every [`STILL_WAITING`]). A store can hold a
/// request for minutes without failing it (a distributed MinIO keeps a dead
/// node's lock on an object for a minute or two), and until the attempt
/// times out the agent or command would look hung.
const SLOW_ANSWER: Duration = Duration::from_secs(10);
/// How often a request still unanswered is logged again.
const STILL_WAITING: Duration = Duration::from_secs(60);

/// Where a store is, as given by `--store` or `CATTLE_STORE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `s3://bucket/prefix`
    S3 { bucket: String, prefix: String },
    /// `file:///var/lib/cattle/store`
    File(PathBuf),
}

impl StoreUrl {
    pub fn parse(url: &str) -> Result<StoreUrl, String> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !valid_bucket {
                return Err(format!(
                    "`{bucket}` is not a valid bucket name: 3 to 63 lower-case letters, digits, `-` or `.`"
                ));
            }
            let prefix = prefix.trim_matches('/');
            let prefix = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            };
            Ok(StoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix,
            })
        } else if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "`{url}` is not an absolute file URL; write `file:///absolute/path`"
                ));
            }
            Ok(StoreUrl::File(PathBuf::from(path)))
        } else {
            Err(format!(
                "`{url}` is not a store URL; use `s3://bucket/prefix` or `file:///absolute/path`"
            ))
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StoreUrl::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

/// An object read from the store.
#[derive(Debug, Clone)]
pub struct Object {
    pub bytes: Vec<u8>,
    /// Opaque version tag; pass it back to conditional reads and writes.
    pub etag: String,
}

/// The answer to a conditional read.
#[derive(Debug)]
pub enum Fetched {
    Found(Object),
    NotModified,
    Missing,
}

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// When the object was last written, if the store says.
    pub modified: Option<std::time::SystemTime>,
    /// A version tag that changes whenever the object is written: S3's ETag
    /// (the one a read returns), or for the local-directory store the file's
    /// inode, modification time and size (every write makes a new file).
    /// Compare it only with another listing's tag of the same store: the
    /// local-directory store's [`Object::etag`] is a hash of the bytes instead,
    /// which a listing would have to read every object for.
    pub etag: String,
}

/// When a write may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Always,
    /// Only if no object has the key.
    IfAbsent,
    /// Only if the object still has this ETag.
    IfMatch(String),
}

/// A store operation failed. Every variant names the object.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("bucket `{bucket}` does not exist at {endpoint}")]
    NoSuchBucket { bucket: String, endpoint: String },
    #[error("{op} `{location}`: it changed since it was read (precondition failed)")]
    PreconditionFailed { op: &'static str, location: String },
    #[error("{op} `{location}`: access denied: {message}")]
    AccessDenied {
        op: &'static str,
        location: String,
        message: String,
    },
    #[error("{op} `{location}`: no credentials for the store: {message}")]
    NoCredentials {
        op: &'static str,
        location: String,
        message: String,
    },
    #[error("{op} `{location}`: cannot reach the store: {message}")]
    Unreachable {
        op: &'static str,
        location: String,
        message: String,
    },
    /// The store's HTTPS certificate did not verify against the trusted roots.
    #[error(
        "{op} `{location}`: the store's TLS certificate is not trusted ({endpoint}: {reason}); {}",
        ca_bundle_advice(.ca_bundle.as_deref())
    )]
    Tls {
        op: &'static str,
        location: String,
        endpoint: String,
        /// Why the TLS library refused it, e.g. `invalid peer certificate: UnknownIssuer`.
        reason: String,
        /// The CA bundle in use; `None`: the system's root CAs.
        ca_bundle: Option<PathBuf>,
    },
    /// The CA bundle cannot be used; found before any request is made.
    #[error("CA bundle `{}` ({}): {message}", .path.display(), crate::env::CA_BUNDLE)]
    CaBundle { path: PathBuf, message: String },
    #[error("{op} `{location}`: object is larger than the limit of {limit} bytes")]
    TooLarge {
        op: &'static str,
        location: String,
        limit: u64,
    },
    /// A key that could name something outside the store (see [`check_key`]).
    /// Keys are built from values read from the store; this is the last line
    /// of defence should one slip through unchecked.
    #[error("{op} `{key}`: not a valid store key: {reason}")]
    InvalidKey {
        op: &'static str,
        key: String,
        reason: String,
    },
    /// A document that is not what it should be: not JSON, or not this kind of document.
    #[error("{op} `{location}`: not a valid document: {message}")]
    InvalidDocument {
        op: &'static str,
        location: String,
        message: String,
    },
    /// A `304 Not Modified` answer to a read that gave no ETag to compare with:
    /// something between here and the store (a caching proxy) or a broken
    /// server answered instead of the store.
    #[error(
        "{op} `{location}`: the store answered 304 Not Modified to a read without If-None-Match"
    )]
    UnaskedNotModified { op: &'static str, location: String },
    /// The store refused a request because of the time it was signed at: this
    /// machine's clock and the store's differ by more than the store allows.
    #[error(
        "{op} `{location}`: the store refused the request because of the time it was signed at \
         ({code}: {message}){}",
        skew_text(.skew)
    )]
    ClockSkew {
        op: &'static str,
        location: String,
        /// The store's error code, e.g. `RequestTimeTooSkewed`.
        code: String,
        message: String,
        /// The store's clock minus this machine's, in seconds, when the answer
        /// said what time the store has (its `Date` header).
        skew: Option<i64>,
    },
    /// A distributed store (MinIO with erasure coding) has too few of its drives online to
    /// read or write the object: it has lost its read or write quorum. MinIO says so with
    /// a 503 whose code, `SlowDownRead` or `SlowDownWrite`, and message ("please reduce
    /// your request rate") suggest throttling instead; its message is not repeated here.
    #[error(
        "{op} `{location}`: the store has lost its {quorum} quorum: too few of its drives are \
         online (MinIO answered `{code}`)"
    )]
    QuorumLost {
        op: &'static str,
        location: String,
        quorum: Quorum,
        /// The store's error code, e.g. `SlowDownRead`.
        code: String,
    },
    #[error("{op} `{location}` failed: {message}")]
    Other {
        op: &'static str,
        location: String,
        message: String,
    },
}

/// Which quorum a distributed store lost (see [`StoreError::QuorumLost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    Read,
    Write,
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quorum::Read => "read",
            Quorum::Write => "write",
        })
    }
}

impl Quorum {
    /// The quorum an S3 error code says was lost, if it says one was: MinIO's
    /// `SlowDownRead` and `SlowDownWrite` (which it answers for nothing else), and
    /// `XMinioReadQuorum` and `XMinioWriteQuorum` of its releases before 2021. AWS S3's own
    /// `SlowDown` is throttling, not this.
    pub fn lost(code: &str) -> Option<Quorum> {
        match code {
            "SlowDownRead" | "XMinioReadQuorum" => Some(Quorum::Read),
            "SlowDownWrite" | "XMinioWriteQuorum" => Some(Quorum::Write),
            _ => None,
        }
    }
}

/// How far apart the clocks are, for messages: `; this machine's clock is 20m behind the store's`.
fn skew_text(skew: &Option<i64>) -> String {
    match *skew {
        None => String::new(),
        Some(seconds) => {
            let by =
                humantime::format_duration(std::time::Duration::from_secs(seconds.unsigned_abs()));
            let direction = if seconds >= 0 { "behind" } else { "ahead of" };
            format!("; this machine's clock is {by} {direction} the store's")
        }
    }
}

/// Why `key` cannot name an object, if it cannot: it must be relative, made
/// of non-empty `/`-separated components other than `.` and `..`, without a
/// NUL byte. Every key Cattle builds is; a value read from the store and put
/// into a key unchecked may not be, and must never reach outside the store
/// (a directory, or the store URL's prefix).
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("it is empty".to_string());
    }
    if key.contains('\0') {
        return Err("it contains a NUL byte".to_string());
    }
    if key.starts_with('/') {
        return Err("it is absolute (starts with `/`)".to_string());
    }
    for component in key.split('/') {
        match component {
            "" => return Err("it has an empty component (`//` or a trailing `/`)".to_string()),
            "." | ".." => return Err(format!("it has a `{component}` component")),
            _ => {}
        }
    }
    Ok(())
}

/// [`check_key`] for the prefix of a listing: empty (everything) or ending in `/` is fine too.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    match prefix.strip_suffix('/').unwrap_or(prefix) {
        "" if prefix.is_empty() => Ok(()),
        rest => check_key(rest),
    }
}

impl StoreError {
    /// What the operator can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            StoreError::NoSuchBucket { bucket, .. } => Some(format!(
                "create it first, e.g. `mc mb ALIAS/{bucket}` (MinIO) or `aws s3 mb s3://{bucket}`"
            )),
            StoreError::AccessDenied { .. } => Some(
                "check the credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE, or the agent's \
                 `credentials_file`) and the policy attached to that user"
                    .to_string(),
            ),
            StoreError::NoCredentials { .. } => Some(
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a credentials file \
                 (the agent: or `credentials_file` in its config file)"
                    .to_string(),
            ),
            StoreError::Unreachable { .. } => Some(
                "check AWS_ENDPOINT_URL and that the store is up; the operation is safe to retry"
                    .to_string(),
            ),
            StoreError::Tls { .. } => Some(format!(
                "set {} to a PEM file of the CA certificate(s) that signed the store's certificate \
                 (for MinIO, the CA of `public.crt` in its certs directory)",
                crate::env::CA_BUNDLE
            )),
            StoreError::UnaskedNotModified { .. } => Some(
                "a caching proxy between this machine and the store (or a broken server) answers \
                 304 Not Modified to reads that did not ask for it; check for a caching proxy \
                 (HTTP_PROXY, HTTPS_PROXY, or one in front of AWS_ENDPOINT_URL) and have it pass \
                 requests to the store unchanged"
                    .to_string(),
            ),
            StoreError::ClockSkew { skew, .. } => Some(format!(
                "this machine's clock differs from the store's by more than the store allows \
                 (15 minutes on MinIO and AWS S3){}: fix time synchronisation (NTP: \
                 `timedatectl timesync-status`, `chronyc tracking`) on this machine or on the store",
                match skew {
                    Some(seconds) => format!(
                        "; here it is {} off",
                        humantime::format_duration(std::time::Duration::from_secs(
                            seconds.unsigned_abs()
                        ))
                    ),
                    None => String::new(),
                }
            )),
            StoreError::QuorumLost { .. } => Some(
                "too many of the store's nodes or drives are offline (MinIO with 4 nodes and the \
                 default parity keeps its quorum with 1 node down, not 2): check the MinIO nodes \
                 (`mc admin info ALIAS`, `curl -I ENDPOINT/minio/health/cluster`); agents keep \
                 running their steps, keep their status and log on the host and deliver them \
                 once the store has its quorum back; run this again then"
                    .to_string(),
            ),
            StoreError::CaBundle { .. } => Some(format!(
                "set {} to a readable PEM file of one or more CA certificates \
                 (`-----BEGIN CERTIFICATE-----` blocks), or unset it to trust the system's root CAs",
                crate::env::CA_BUNDLE
            )),
            _ => None,
        }
    }

    /// Worth trying again later without changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unreachable { .. } | StoreError::QuorumLost { .. }
        )
    }
}

/// What to check about [`env::CA_BUNDLE`](crate::env::CA_BUNDLE) when a certificate is refused.
fn ca_bundle_advice(ca_bundle: Option<&std::path::Path>) -> String {
    let var = crate::env::CA_BUNDLE;
    match ca_bundle {
        Some(path) => format!(
            "check {var}: `{}` must hold the CA that signed it",
            path.display()
        ),
        None => format!("check {var}: it is not set, so only the system's root CAs are trusted"),
    }
}

/// A store, as opened from a [`StoreUrl`].
#[derive(Debug, Clone)]
pub enum Store {
    File(FileStore),
    S3(S3Store),
}

impl Store {
    /// Open the store at `url`. No request is made: a missing bucket or a bad
    /// credential shows on first use. An unusable [`CA bundle`](crate::env::CA_BUNDLE)
    /// is an error here.
    pub async fn open(url: &StoreUrl) -> Result<Store, StoreError> {
        match url {
            StoreUrl::File(root) => Ok(Store::File(FileStore::open(root.clone())?)),
            StoreUrl::S3 { bucket, prefix } => Ok(Store::S3(
                S3Store::from_env(bucket.clone(), prefix.clone()).await?,
            )),
        }
    }

    /// Open the store at `url`, reaching an S3 store with `options` instead
    /// of [`S3Options::from_env`]. No request is made.
    pub async fn open_with(url: &StoreUrl, options: S3Options) -> Result<Store, StoreError> {
        match url {
            StoreUrl::File(root) => Ok(Store::File(FileStore::open(root.clone())?)),
            StoreUrl::S3 { bucket, prefix } => Ok(Store::S3(
                S3Store::new(bucket.clone(), prefix.clone(), options).await?,
            )),
        }
    }

    /// Where an object is, for messages: `s3://bucket/prefix/key` or a path.
    pub fn location(&self, key: &str) -> String {
        match self {
            Store::File(s) => s.location(key),
            Store::S3(s) => s.location(key),
        }
    }

    /// What tells this store from any other, for remembering something about
    /// it locally: `s3://bucket/prefix/ at ENDPOINT`, or the directory's `file://` URL.
    pub fn identity(&self) -> String {
        match self {
            Store::File(s) => format!("file://{}", s.location("")),
            Store::S3(s) => format!("{} at {}", s.location(""), s.endpoint()),
        }
    }

    /// The store's clock minus this machine's, in whole seconds, as the
    /// store's last answer dated it: `None` before one, and for a directory
    /// store (whose clock is this machine's, or its file server's).
    pub fn clock_offset(&self) -> Option<i64> {
        match self {
            Store::File(_) => None,
            Store::S3(s) => s.clock_offset(),
        }
    }

    /// Read `key`; `None` if there is no such object. Objects larger than
    /// `limit` bytes are refused unread.
    pub async fn get(&self, key: &str, limit: u64) -> Result<Option<Object>, StoreError> {
        match self.get_if_changed(key, None, limit).await? {
            Fetched::Found(object) => Ok(Some(object)),
            Fetched::Missing => Ok(None),
            // Not the store's answer to a read without an ETag: a proxy's, or a broken server's.
            Fetched::NotModified => Err(StoreError::UnaskedNotModified {
                op: "read",
                location: self.location(key),
            }),
        }
    }

    /// Read `key` unless its ETag is still `etag`.
    pub async fn get_if_changed(
        &self,
        key: &str,
        etag: Option<&str>,
        limit: u64,
    ) -> Result<Fetched, StoreError> {
        let request = async {
            match self {
                Store::File(s) => {
                    let (s, key, etag) = (s.clone(), key.to_string(), etag.map(str::to_string));
                    blocking(move || s.get_if_changed(&key, etag.as_deref(), limit)).await
                }
                Store::S3(s) => s.get_if_changed(key, etag, limit).await,
            }
        };
        self.logging_slow("read", key, request).await
    }

    /// Write `key` when `condition` holds; returns the new ETag.
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: Condition,
    ) -> Result<String, StoreError> {
        let request = async {
            match self {
                Store::File(s) => {
                    let (s, key) = (s.clone(), key.to_string());
                    blocking(move || s.put(&key, &bytes, condition)).await
                }
                Store::S3(s) => s.put(key, bytes, condition).await,
            }
        };
        self.logging_slow("write", key, request).await
    }

    /// The size of `key`, or `None` if there is no such object.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let request = async {
            match self {
                Store::File(s) => {
                    let (s, key) = (s.clone(), key.to_string());
                    blocking(move || s.size(&key)).await
                }
                Store::S3(s) => s.size(key).await,
            }
        };
        self.logging_slow("look up", key, request).await
    }

    /// Delete `key`; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let request = async {
            match self {
                Store::File(s) => {
                    let (s, key) = (s.clone(), key.to_string());
                    blocking(move || s.delete(&key)).await
                }
                Store::S3(s) => s.delete(key).await,
            }
        };
        self.logging_slow("delete", key, request).await
    }

    /// Every key that starts with `prefix`, in lexical order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_entries(prefix)
            .await?
            .into_iter()
            .map(|e| e.key)
            .collect())
    }

    /// The "subdirectories" of a listing: each distinct `prefix` + name + `/`
    /// that some key starts with, name being free of `/`, in lexical order.
    /// `list_dirs("executions/")` gives one key per execution without
    /// listing the objects inside them (S3: ListObjectsV2 with delimiter `/`,
    /// one request per 1,000 names). `prefix` need not end in `/`:
    /// `list_dirs("executions/0190")` gives the executions whose ID starts so.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Store::File(s) => {
                let (s, prefix) = (s.clone(), prefix.to_string());
                blocking(move || s.list_dirs(&prefix)).await
            }
            Store::S3(s) => s.list_dirs(prefix).await,
        }
    }

    /// Every object whose key starts with `prefix`, in lexical order of keys.
    pub async fn list_entries(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        match self {
            Store::File(s) => {
                let (s, prefix) = (s.clone(), prefix.to_string());
                blocking(move || s.list(&prefix)).await
            }
            Store::S3(s) => s.list(prefix).await,
        }
    }
}

impl Store {
    /// Await `request` (`op` of `key`), logging a warning once it has gone
    /// [`SLOW_ANSWER`] without an answer, again every [`STILL_WAITING`], and
    /// how long it took once it is answered. A request answered in time
    /// costs one timer.
    async fn logging_slow<T>(
        &self,
        op: &'static str,
        key: &str,
        request: impl Future<Output = T>,
    ) -> T {
        let started = Instant::now();
        tokio::pin!(request);
        let mut patience = SLOW_ANSWER;
        loop {
            match tokio::time::timeout(patience, &mut request).await {
                Ok(answer) if patience == SLOW_ANSWER => return answer,
                Ok(answer) => {
                    tracing::info!(
                        object = %self.location(key),
                        waited_s = started.elapsed().as_secs(),
                        "the store answered the {op} at last"
                    );
                    return answer;
                }
                Err(_) => {
                    tracing::warn!(
                        object = %self.location(key),
                        waited_s = started.elapsed().as_secs(),
                        "the store has not answered a {op} yet; still waiting"
                    );
                    patience = STILL_WAITING;
                }
            }
        }
    }
}

/// Run a local-directory store operation on tokio's blocking pool: file I/O
/// (fsync, a walk of many files) must not hold up the runtime's thread, which
/// the agent's signals and uploads share.
async fn blocking<T: Send + 'static>(
    op: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(op).await.unwrap_or_else(|e| {
        Err(StoreError::Other {
            op: "file store",
            location: String::new(),
            message: format!("the operation did not finish: {e}"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes_stay_inside_the_store() {
        for key in ["bundles/x.tar.gz", "executions/id/hosts/h/status.json", "a"] {
            assert_eq!(check_key(key), Ok(()), "{key}");
        }
        for (key, reason) in [
            ("", "it is empty"),
            ("/etc/passwd", "it is absolute (starts with `/`)"),
            ("bundles/../../x", "it has a `..` component"),
            ("./x", "it has a `.` component"),
            ("a//b", "it has an empty component (`//` or a trailing `/`)"),
            ("a/", "it has an empty component (`//` or a trailing `/`)"),
            ("a\0b", "it contains a NUL byte"),
        ] {
            assert_eq!(check_key(key), Err(reason.to_string()), "{key:?}");
        }
        for prefix in ["", "executions/", "executions/id/done/", "hosts/h"] {
            assert_eq!(check_prefix(prefix), Ok(()), "{prefix}");
        }
        for prefix in ["/", "../", "a//", "a/../b/"] {
            assert!(check_prefix(prefix).is_err(), "{prefix}");
        }
    }

    #[test]
    fn a_lost_quorum_says_to_check_the_nodes_and_that_agents_deliver_later() {
        assert_eq!(Quorum::lost("SlowDownRead"), Some(Quorum::Read));
        assert_eq!(Quorum::lost("SlowDownWrite"), Some(Quorum::Write));
        assert_eq!(Quorum::lost("SlowDown"), None);
        assert_eq!(Quorum::lost("slowdownread"), None);
        let err = StoreError::QuorumLost {
            op: "write",
            location: "s3://b/k".to_string(),
            quorum: Quorum::Write,
            code: "SlowDownWrite".to_string(),
        };
        assert!(err.is_transient());
        let hint = err.hint().unwrap();
        for needle in ["mc admin info", "/minio/health/cluster", "deliver them"] {
            assert!(hint.contains(needle), "{needle}: {hint}");
        }
    }

    #[test]
    fn a_clock_skew_says_by_how_much_and_what_to_fix() {
        let skewed = |skew| StoreError::ClockSkew {
            op: "read",
            location: "s3://b/k".to_string(),
            code: "RequestTimeTooSkewed".to_string(),
            message: "The difference between the request time and the server's time is too large."
                .to_string(),
            skew,
        };
        let behind = skewed(Some(20 * 60 + 3));
        assert_eq!(
            behind.to_string(),
            "read `s3://b/k`: the store refused the request because of the time it was signed at \
             (RequestTimeTooSkewed: The difference between the request time and the server's time \
             is too large.); this machine's clock is 20m 3s behind the store's"
        );
        let hint = behind.hint().unwrap();
        assert!(hint.contains("15 minutes on MinIO and AWS S3"), "{hint}");
        assert!(
            hint.contains("20m 3s off") && hint.contains("chrony"),
            "{hint}"
        );
        assert!(
            skewed(Some(-3600))
                .to_string()
                .ends_with("this machine's clock is 1h ahead of the store's")
        );
        let unknown = skewed(None);
        assert!(unknown.to_string().ends_with("too large.)"), "{unknown}");
        assert!(!unknown.hint().unwrap().contains(" off"));
    }

    #[test]
    fn an_unasked_not_modified_points_at_a_caching_proxy() {
        let err = StoreError::UnaskedNotModified {
            op: "read",
            location: "s3://b/k".to_string(),
        };
        assert_eq!(
            err.to_string(),
            "read `s3://b/k`: the store answered 304 Not Modified to a read without If-None-Match"
        );
        assert!(err.hint().unwrap().contains("caching proxy"));
        assert!(!err.is_transient());
    }
}
