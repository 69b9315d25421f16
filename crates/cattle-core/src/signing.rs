//! Ed25519 keys and signed manifests: who may tell hosts what to run.
//!
//! Anyone who can write to the bucket can put an execution in a host's inbox,
//! so an agent runs only manifests signed by a key it trusts. `cattle publish`
//! signs the manifest's exact bytes (the [`Envelope`]'s payload); the agent
//! verifies them before it parses anything it acts on.
//!
//! Key files are one line of text each, so they are easy to inspect, copy and
//! put under configuration management:
//!
//! ```text
//! cattle-ed25519 <64 hex digits: public key> <comment>          # NAME.pub
//! cattle-ed25519-secret <64 hex digits: secret seed> <comment>  # NAME.key, mode 0600
//! ```
//!
//! A trusted-keys file holds any number of public key lines (`#` comments and
//! blank lines are ignored), so a new key can be trusted before the old one
//! is retired.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::rollout::Control;
use crate::wire::{Envelope, FORMAT, HostVars, Manifest, SignatureEntry};

const PUBLIC_TAG: &str = "cattle-ed25519";
const SECRET_TAG: &str = "cattle-ed25519-secret";

/// Signatures cover this prefix and then the payload, so a Cattle manifest
/// signature can never be passed off as a signature of anything else.
const MANIFEST_CONTEXT: &[u8] = b"cattle-manifest-v1\n";

/// The same for a host's variables ([`HostVars`]): a manifest's signature
/// does not verify as one, nor the reverse.
const HOST_VARS_CONTEXT: &[u8] = b"cattle-host-vars-v1\n";

/// The context of a manifest with a rollout ([`Manifest::rollout`]): agents
/// that know rollouts verify it under this one, and agents older than
/// rollouts, which would ignore the waves and start at once, find its
/// signature bad and refuse it.
const ROLLOUT_MANIFEST_CONTEXT: &[u8] = b"cattle-manifest-rollout-v1\n";

/// The context of `cattle rollout pause|resume`'s [`Control`].
const CONTROL_CONTEXT: &[u8] = b"cattle-rollout-control-v1\n";

/// Why a key file or a trusted-keys file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` already exists; remove it or pick another name (keys are never overwritten)")]
    Exists { path: PathBuf },
    #[error("`{path}` is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Exposed { path: PathBuf, mode: u32 },
    #[error(
        "`{path}` can be changed by other users (mode {mode:o}): they could make this host trust any key; run `chmod go-w {path}`"
    )]
    Writable { path: PathBuf, mode: u32 },
    #[error("`{path}` line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "`{path}` holds no public key; add the publisher's `cattle-ed25519 …` line (from `cattle keygen`)"
    )]
    Empty { path: PathBuf },
}

impl KeyError {
    /// What to do about a key file that does not exist (the other errors say
    /// it in their message).
    pub fn hint(&self) -> Option<String> {
        match self {
            KeyError::Read { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
                Some(format!(
                    "make a key pair with `cattle keygen NAME` (NAME.key signs, NAME.pub goes to \
                     the agents), or name the key you have: `--key`, CATTLE_SIGNING_KEY or \
                     `signing_key` in the config file (`{}` is what was given)",
                    path.display()
                ))
            }
            _ => None,
        }
    }
}

/// A short, stable name for a public key: the first 8 bytes of its SHA-256, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    fn of(key: &VerifyingKey) -> KeyId {
        KeyId(crate::hex(&Sha256::digest(key.as_bytes())[..8]))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A publisher's secret key.
pub struct SecretKey {
    key: SigningKey,
    comment: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        f.debug_struct("SecretKey")
            .field("id", &self.public().id())
            .field("comment", &self.comment)
            .finish()
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate(comment: &str) -> std::io::Result<SecretKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(std::io::Error::other)?;
        Ok(SecretKey {
            key: SigningKey::from_bytes(&seed),
            comment: one_line(comment),
        })
    }

    /// The key with this seed. Only for tests and fuzzing, which need the same
    /// key every run; real keys come from [`SecretKey::generate`].
    pub fn from_seed(seed: [u8; 32], comment: &str) -> SecretKey {
        SecretKey {
            key: SigningKey::from_bytes(&seed),
            comment: one_line(comment),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
            comment: self.comment.clone(),
        }
    }

    /// Read a secret key file, refusing one that other users can read.
    pub fn load(path: &Path) -> Result<SecretKey, KeyError> {
        let read = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let Some((n, line)) = lines(&text).next() else {
            return Err(KeyError::Invalid {
                path: path.to_path_buf(),
                line: 1,
                message: format!("no `{SECRET_TAG}` line"),
            });
        };
        let invalid = |message: String| KeyError::Invalid {
            path: path.to_path_buf(),
            line: n,
            message,
        };
        let (tag, bytes, comment) = parse_line(line).map_err(invalid)?;
        if tag != SECRET_TAG {
            return Err(invalid(format!(
                "expected a `{SECRET_TAG}` line, found `{tag}`: is this the public key? \
                 Sign with the `.key` file that `cattle keygen` wrote"
            )));
        }
        Ok(SecretKey {
            key: SigningKey::from_bytes(&bytes),
            comment,
        })
    }

    /// Write this key to `NAME.key` (mode 0600) and its public half to
    /// `NAME.pub`; neither may exist. Returns both paths.
    pub fn save(&self, name: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
        let secret = name.with_extension("key");
        let public = name.with_extension("pub");
        for path in [&secret, &public] {
            if path.exists() {
                return Err(KeyError::Exists { path: path.clone() });
            }
        }
        let secret_text = format!(
            "# Cattle signing key {}: keep it secret; publish with `cattle publish --key {}`\n\
             {SECRET_TAG} {} {}\n",
            self.public().id(),
            secret.display(),
            crate::hex(self.key.as_bytes()),
            self.comment
        );
        write_new(&secret, secret_text.as_bytes(), 0o600)?;
        let public_text = format!("{}\n", self.public());
        write_new(&public, public_text.as_bytes(), 0o644)?;
        Ok((secret, public))
    }

    /// Sign `manifest` into the envelope `cattle publish` stores.
    pub fn sign(&self, manifest: &Manifest) -> Envelope {
        let payload = serde_json::to_string_pretty(manifest).expect("manifests serialize");
        self.sign_payload(manifest_context(manifest), payload)
    }

    /// A rollout's pause or resume, signed.
    pub fn sign_control(&self, control: &Control) -> Envelope {
        let payload = serde_json::to_string(control).expect("controls serialize");
        self.sign_payload(CONTROL_CONTEXT, payload)
    }

    /// One host's variables, signed (compact JSON: there is one per host).
    pub fn sign_host_vars(&self, vars: &HostVars) -> Envelope {
        let payload = serde_json::to_string(vars).expect("host variables serialize");
        self.sign_payload(HOST_VARS_CONTEXT, payload)
    }

    fn sign_payload(&self, context: &[u8], payload: String) -> Envelope {
        let signature = self.key.sign(&[context, payload.as_bytes()].concat());
        Envelope {
            format: FORMAT,
            payload,
            signatures: vec![SignatureEntry {
                key: self.public().id().0,
                sig: crate::hex(&signature.to_bytes()),
            }],
        }
    }
}

/// A public key: what agents trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    comment: String,
}

impl PublicKey {
    pub fn id(&self) -> KeyId {
        KeyId::of(&self.key)
    }

    pub fn comment(&self) -> &str {
        &self.comment
    }
}

impl fmt::Display for PublicKey {
    /// The public key line, as in a `.pub` or trusted-keys file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_TAG} {}", crate::hex(self.key.as_bytes()))?;
        if !self.comment.is_empty() {
            write!(f, " {}", self.comment)?;
        }
        Ok(())
    }
}

/// The keys an agent accepts manifests from.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    /// Read every public key line of every file in `paths`. Each file must
    /// hold at least one key, and only its owner may change it: whoever can
    /// add a line can run anything on the host.
    pub fn load(paths: &[PathBuf]) -> Result<TrustedKeys, KeyError> {
        let mut trusted = TrustedKeys::default();
        for path in paths {
            let read = |source| KeyError::Read {
                path: path.clone(),
                source,
            };
            let mode = std::fs::metadata(path).map_err(read)?.permissions().mode();
            if mode & 0o022 != 0 {
                return Err(KeyError::Writable {
                    path: path.clone(),
                    mode: mode & 0o777,
                });
            }
            let text = std::fs::read_to_string(path).map_err(read)?;
            let before = trusted.keys.len();
            trusted.add(&text, path)?;
            if trusted.keys.len() == before {
                return Err(KeyError::Empty { path: path.clone() });
            }
        }
        Ok(trusted)
    }

    /// Add the public key lines of `text`, read from `path` (for errors).
    pub fn add(&mut self, text: &str, path: &Path) -> Result<(), KeyError> {
        for (n, line) in lines(text) {
            let invalid = |message: String| KeyError::Invalid {
                path: path.to_path_buf(),
                line: n,
                message,
            };
            let (tag, bytes, comment) = parse_line(line).map_err(invalid)?;
            if tag == SECRET_TAG {
                return Err(invalid(
                    "this is a secret key: agents need only the `.pub` file; \
                     remove the secret key from this host and keep it with the publisher"
                        .to_string(),
                ));
            }
            if tag != PUBLIC_TAG {
                return Err(invalid(format!(
                    "expected a `{PUBLIC_TAG} <hex>` line, found `{tag}`"
                )));
            }
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|_| invalid("not a valid ed25519 public key".to_string()))?;
            let key = PublicKey { key, comment };
            if !self.keys.contains(&key) {
                self.keys.push(key);
            }
        }
        Ok(())
    }

    /// Trusting `key` alone.
    pub fn only(key: PublicKey) -> TrustedKeys {
        TrustedKeys { keys: vec![key] }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }
}

/// Why an agent refuses a manifest envelope.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the manifest is not signed")]
    Unsigned,
    #[error("the manifest is signed by key {keys}, which this host does not trust")]
    UnknownKey { keys: String },
    #[error("the manifest's signature by trusted key {key} does not match its contents")]
    BadSignature { key: String },
    #[error("the manifest is not valid: {0}")]
    Malformed(String),
}

impl Envelope {
    /// The manifest, checked against `trusted`, and the key that signed it.
    pub fn verify(&self, trusted: &TrustedKeys) -> Result<(Manifest, PublicKey), Refusal> {
        let manifest = self.manifest()?;
        let key = self.verify_payload(manifest_context(&manifest), trusted)?;
        Ok((manifest, key))
    }

    /// A rollout's control, checked against `trusted`, and the key that signed it.
    pub fn verify_control(&self, trusted: &TrustedKeys) -> Result<(Control, PublicKey), Refusal> {
        let key = self.verify_payload(CONTROL_CONTEXT, trusted)?;
        let control =
            serde_json::from_str(&self.payload).map_err(|e| Refusal::Malformed(e.to_string()))?;
        Ok((control, key))
    }

    /// A rollout's control without checking who signed it: for operators'
    /// reads (`cattle rollout status`) and `--allow-unsigned` agents.
    pub fn control(&self) -> Result<Control, Refusal> {
        serde_json::from_str(&self.payload).map_err(|e| Refusal::Malformed(e.to_string()))
    }

    /// The host's variables, checked against `trusted`, and the key that
    /// signed them. The refusals say "the manifest"; callers name what it was.
    pub fn verify_host_vars(
        &self,
        trusted: &TrustedKeys,
    ) -> Result<(HostVars, PublicKey), Refusal> {
        let key = self.verify_payload(HOST_VARS_CONTEXT, trusted)?;
        Ok((self.host_vars()?, key))
    }

    /// The host's variables, without checking any signature (for
    /// `--allow-unsigned` agents).
    pub fn host_vars(&self) -> Result<HostVars, Refusal> {
        serde_json::from_str(&self.payload).map_err(|e| Refusal::Malformed(e.to_string()))
    }

    /// The trusted key whose signature over `context` and the payload holds.
    fn verify_payload(&self, context: &[u8], trusted: &TrustedKeys) -> Result<PublicKey, Refusal> {
        if self.signatures.is_empty() {
            return Err(Refusal::Unsigned);
        }
        let message = [context, self.payload.as_bytes()].concat();
        let mut first_failure = None;
        for entry in &self.signatures {
            let Some(key) = trusted.keys.iter().find(|k| k.id().0 == entry.key) else {
                continue;
            };
            let signature = decode_hex::<64>(&entry.sig).map(|b| Signature::from_bytes(&b));
            match signature {
                Ok(sig) if key.key.verify_strict(&message, &sig).is_ok() => {
                    return Ok(key.clone());
                }
                _ => {
                    first_failure.get_or_insert(Refusal::BadSignature {
                        key: entry.key.clone(),
                    });
                }
            }
        }
        Err(first_failure.unwrap_or_else(|| Refusal::UnknownKey {
            keys: self
                .signatures
                .iter()
                .map(|s| s.key.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }))
    }

    /// The manifest without checking who signed it: for operators' reads
    /// (`cattle status`, `clean`), never for deciding what a host runs.
    pub fn manifest(&self) -> Result<Manifest, Refusal> {
        serde_json::from_str(&self.payload).map_err(|e| Refusal::Malformed(e.to_string()))
    }

    /// Host variables without a signature, for `cattle publish --unsigned`.
    pub fn unsigned_host_vars(vars: &HostVars) -> Envelope {
        Envelope {
            format: FORMAT,
            payload: serde_json::to_string(vars).expect("host variables serialize"),
            signatures: Vec::new(),
        }
    }

    /// An envelope without a signature, for `cattle publish --unsigned`.
    pub fn unsigned(manifest: &Manifest) -> Envelope {
        Envelope {
            format: FORMAT,
            payload: serde_json::to_string_pretty(manifest).expect("manifests serialize"),
            signatures: Vec::new(),
        }
    }
}

/// The context a manifest is signed under: whether it has a rollout is part
/// of what is signed, and decides it.
fn manifest_context(manifest: &Manifest) -> &'static [u8] {
    if manifest.rollout.is_some() {
        ROLLOUT_MANIFEST_CONTEXT
    } else {
        MANIFEST_CONTEXT
    }
}

/// Non-blank, non-comment lines with their 1-based numbers.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// `TAG HEX [comment]`.
fn parse_line(line: &str) -> Result<(&str, [u8; 32], String), String> {
    let mut parts = line.splitn(3, char::is_whitespace);
    let tag = parts.next().unwrap_or_default();
    let hex = parts
        .next()
        .ok_or_else(|| format!("expected `{tag} <64 hex digits> [comment]`"))?;
    let bytes = decode_hex::<32>(hex)?;
    Ok((
        tag,
        bytes,
        parts.next().unwrap_or_default().trim().to_string(),
    ))
}

fn decode_hex<const N: usize>(text: &str) -> Result<[u8; N], String> {
    if text.len() != N * 2 {
        return Err(format!(
            "expected {} hex digits, found {}",
            N * 2,
            text.len()
        ));
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2).unwrap_or("-"), 16)
            .map_err(|_| format!("`{text}` is not hex"))?;
    }
    Ok(out)
}

fn one_line(comment: &str) -> String {
    comment.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let write = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::HostId;
    use crate::wire::BundleRef;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            id: uuid::Uuid::now_v7(),
            version: 7,
            floor: None,
            created: "2026-01-01T00:00:00.000Z".to_string(),
            expires: "2026-01-08T00:00:00.000Z".to_string(),
            publisher: "ops@laptop".to_string(),
            config: "poem".to_string(),
            steps: 1,
            bundle: BundleRef {
                sha256: "ab".repeat(32),
                size: 10,
            },
            hosts: vec![HostId::new("web-1").unwrap()],
            vars: false,
            check: false,
            diff: false,
            message: None,
            rollout: None,
            select: Vec::new(),
            grouped: false,
        }
    }

    fn trusting(keys: &[&SecretKey]) -> TrustedKeys {
        let text: String = keys.iter().map(|k| format!("{}\n", k.public())).collect();
        let mut trusted = TrustedKeys::default();
        trusted.add(&text, Path::new("trusted")).unwrap();
        trusted
    }

    #[test]
    fn a_message_is_signed_with_the_manifest_and_its_absence_reads_as_none() {
        let key = SecretKey::from_seed([7; 32], "ops");
        let trusted = trusting(&[&key]);
        let with = Manifest {
            message: Some("rotate the \"poem\" ✓".to_string()),
            ..manifest()
        };
        let envelope = key.sign(&with);
        assert_eq!(envelope.verify(&trusted).unwrap().0, with);
        let tampered = Envelope {
            payload: envelope.payload.replace("rotate", "delete"),
            ..envelope.clone()
        };
        assert!(matches!(
            tampered.verify(&trusted),
            Err(Refusal::BadSignature { .. })
        ));
        // A manifest without a message (as older publishers write them) has
        // no `message` key at all, and verifies and reads as before.
        let without = key.sign(&manifest());
        assert!(!without.payload.contains("message"), "{}", without.payload);
        assert_eq!(without.verify(&trusted).unwrap().0.message, None);
        // Readers ignore fields they do not know: a reader of this version
        // reads a manifest from a newer publisher that adds one, as an older
        // reader reads `message`.
        let mut newer: serde_json::Value = serde_json::from_str(&envelope.payload).unwrap();
        newer["added_later"] = serde_json::json!({"x": 1});
        let newer = key.sign_payload(MANIFEST_CONTEXT, newer.to_string());
        assert_eq!(newer.verify(&trusted).unwrap().0, with);
    }

    /// Agents older than rollouts verify every manifest under the first
    /// context, and would ignore the waves: a manifest with a rollout must not
    /// verify for them, nor one signed without its rollout gain one.
    #[test]
    fn a_rollout_manifest_verifies_only_as_one_and_a_control_only_as_a_control() {
        let key = SecretKey::from_seed([7; 32], "ops");
        let trusted = trusting(&[&key]);
        let rolled = Manifest {
            rollout: Some(crate::rollout::Rollout {
                waves: vec![1],
                max_errors: Some(0),
                bake_secs: 0,
                windows: Vec::new(),
                not_before: None,
            }),
            ..manifest()
        };
        let envelope = key.sign(&rolled);
        assert_eq!(envelope.verify(&trusted).unwrap().0, rolled);
        let message = [MANIFEST_CONTEXT, envelope.payload.as_bytes()].concat();
        let sig = decode_hex::<64>(&envelope.signatures[0].sig).unwrap();
        assert!(
            key.public()
                .key
                .verify_strict(&message, &Signature::from_bytes(&sig))
                .is_err(),
            "an older agent would accept it"
        );
        // The signature of a manifest without rollout does not carry over
        // to the same manifest with one added.
        let plain = key.sign(&manifest());
        let mut added: serde_json::Value = serde_json::from_str(&plain.payload).unwrap();
        added["rollout"] = serde_json::json!({"waves": [1]});
        let forged = Envelope {
            payload: added.to_string(),
            ..plain
        };
        assert!(matches!(
            forged.verify(&trusted),
            Err(Refusal::BadSignature { .. })
        ));
        // A control verifies as a control, not as a manifest, and the reverse.
        let control = crate::rollout::Control {
            format: FORMAT,
            execution: rolled.id,
            paused: true,
            seq: 1,
            by: "ops@laptop".to_string(),
            at: "2026-01-01T00:00:00Z".to_string(),
        };
        let signed = key.sign_control(&control);
        assert_eq!(signed.verify_control(&trusted).unwrap().0, control);
        assert!(envelope.verify_control(&trusted).is_err());
        assert!(signed.verify(&trusted).is_err());
    }

    #[test]
    fn host_vars_verify_only_as_host_vars_and_only_unchanged() {
        let key = SecretKey::from_seed([7; 32], "ops");
        let trusted = trusting(&[&key]);
        let vars = HostVars {
            format: FORMAT,
            execution: uuid::Uuid::now_v7(),
            host: HostId::new("web-1").unwrap(),
            vars: [("port".to_string(), serde_json::json!(8080))].into(),
        };
        let envelope = key.sign_host_vars(&vars);
        let (read, by) = envelope.verify_host_vars(&trusted).unwrap();
        assert_eq!(read, vars);
        assert_eq!(by.id(), key.public().id());

        // A manifest signature is no host-variables signature, nor the reverse.
        let manifest = key.sign(&manifest());
        let as_vars = Envelope {
            payload: envelope.payload.clone(),
            ..manifest.clone()
        };
        assert!(matches!(
            as_vars.verify_host_vars(&trusted),
            Err(Refusal::BadSignature { .. })
        ));
        let as_manifest = Envelope {
            payload: manifest.payload.clone(),
            ..envelope.clone()
        };
        assert!(matches!(
            as_manifest.verify(&trusted),
            Err(Refusal::BadSignature { .. })
        ));

        // A value changed by a bucket writer.
        let tampered = Envelope {
            payload: envelope.payload.replace("8080", "8081"),
            ..envelope.clone()
        };
        assert!(matches!(
            tampered.verify_host_vars(&trusted),
            Err(Refusal::BadSignature { .. })
        ));
        assert_eq!(
            Envelope::unsigned_host_vars(&vars).verify_host_vars(&trusted),
            Err(Refusal::Unsigned)
        );
    }

    #[test]
    fn a_signed_manifest_verifies_with_its_key_and_only_with_it() {
        let key = SecretKey::generate("ops").unwrap();
        let other = SecretKey::generate("other").unwrap();
        let m = manifest();
        let envelope = key.sign(&m);
        let (got, by) = envelope.verify(&trusting(&[&other, &key])).unwrap();
        assert_eq!(got, m);
        assert_eq!(by.id(), key.public().id());
        assert!(matches!(
            envelope.verify(&trusting(&[&other])),
            Err(Refusal::UnknownKey { .. })
        ));
    }

    #[test]
    fn any_change_to_the_payload_breaks_the_signature() {
        let key = SecretKey::generate("ops").unwrap();
        let mut envelope = key.sign(&manifest());
        envelope.payload = envelope.payload.replace("web-1", "web-2");
        assert!(matches!(
            envelope.verify(&trusting(&[&key])),
            Err(Refusal::BadSignature { .. })
        ));
    }

    #[test]
    fn unsigned_envelopes_and_garbage_signatures_are_refused() {
        let key = SecretKey::generate("ops").unwrap();
        let trusted = trusting(&[&key]);
        assert_eq!(
            Envelope::unsigned(&manifest()).verify(&trusted),
            Err(Refusal::Unsigned)
        );
        let mut envelope = key.sign(&manifest());
        envelope.signatures[0].sig = "zz".repeat(64);
        assert!(matches!(
            envelope.verify(&trusted),
            Err(Refusal::BadSignature { .. })
        ));
    }

    #[test]
    fn keys_round_trip_through_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::generate("ops  team\nlaptop").unwrap();
        let (secret, public) = key.save(&dir.path().join("ops")).unwrap();
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = SecretKey::load(&secret).unwrap();
        assert_eq!(loaded.public(), key.public());
        assert_eq!(loaded.public().comment(), "ops team laptop");
        let trusted = TrustedKeys::load(std::slice::from_ref(&public)).unwrap();
        assert_eq!(trusted.keys(), &[key.public()]);
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = TrustedKeys::load(&[public]).unwrap_err().to_string();
        assert!(err.contains("chmod go-w"), "{err}");
        // Never overwritten.
        assert!(matches!(
            key.save(&dir.path().join("ops")),
            Err(KeyError::Exists { .. })
        ));
    }

    #[test]
    fn a_secret_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, _) = SecretKey::generate("ops")
            .unwrap()
            .save(&dir.path().join("ops"))
            .unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretKey::load(&secret).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn trusted_key_files_report_the_bad_line() {
        let key = SecretKey::generate("ops").unwrap();
        let text = format!("# ops\n{}\n\ncattle-ed25519 12zz\n", key.public());
        let err = TrustedKeys::default()
            .add(&text, Path::new("/etc/cattle/trusted.pub"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("`/etc/cattle/trusted.pub` line 4:"),
            "{err}"
        );
        let secret_line = format!("{SECRET_TAG} {}\n", "11".repeat(32));
        let err = TrustedKeys::default()
            .add(&secret_line, Path::new("t"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("this is a secret key"), "{err}");
    }
}
