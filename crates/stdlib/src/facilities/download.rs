//! `download`: the file at `path` is the one `url` serves, known by its sha256.
//!
//! The check is the hash of what is at `path` (and its mode and owner): a
//! file with the right bytes is never fetched again. Apply streams the body
//! into a temporary file beside `path` (readable by its owner only), hashing
//! as it goes; only a body whose sha256 is the one asked for gets its mode and
//! owner and is renamed over `path`. Anything else is removed, and `path` is
//! left as it was. HTTPS trusts what the store trusts (`CATTLE_CA_BUNDLE`, or
//! the system's roots): an internal mirror with a private CA works as the
//! store does.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::FacilitySpec;
use crate::accounts::{resolve_group, resolve_user};
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::files::{
    Attributes, create_private, hex, replace_atomically, set_attributes, sha256_hex,
};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "download",
    args: &["url", "sha256", "path", "mode", "owner", "group"],
    summary: "fetch a URL to a file, verified by its sha256",
    build,
};

/// Mode of the file when the step does not say.
const DEFAULT_MODE: u32 = 0o644;

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let bad_url = args.error("url", "argument `url` must be an http or https URL");
    let url = args.required_str("url")?;
    if let Err(why) = crate::http::valid_url(&url) {
        return Err(bad_url.with_hint(format!("`{url}`: {why}")));
    }
    let bad_hash = args.error(
        "sha256",
        "argument `sha256` must be 64 hexadecimal digits: the file's SHA-256",
    );
    let sha256 = args.required_str("sha256")?.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad_hash.with_hint("compute it with `sha256sum FILE` where you got the file"));
    }
    Ok(Box::new(Download {
        url,
        sha256,
        path: args.absolute_path("path")?,
        mode: args.optional_mode("mode")?.unwrap_or(DEFAULT_MODE),
        owner: args.optional_str("owner")?,
        group: args.optional_str("group")?,
    }))
}

#[derive(Debug)]
struct Download {
    url: String,
    /// Lower case.
    sha256: String,
    path: PathBuf,
    mode: u32,
    owner: Option<String>,
    group: Option<String>,
}

/// What is at `path` now.
enum Found {
    Nothing,
    /// A regular file with other bytes.
    Other,
    /// The right bytes; whether mode and owner are right too.
    Right {
        attributes_right: bool,
    },
}

impl Download {
    fn attributes(&self) -> Result<Attributes, FacilityError> {
        Ok(Attributes {
            mode: self.mode,
            uid: self.owner.as_deref().map(resolve_user).transpose()?,
            gid: self.group.as_deref().map(resolve_group).transpose()?,
        })
    }

    fn inspect(&self) -> Result<Found, FacilityError> {
        let meta = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Found::Nothing),
            Err(err) => return Err(FacilityError::io("inspect", &self.path, err)),
        };
        if !meta.is_file() {
            return Err(FacilityError::permanent(format!(
                "`{}` exists and is not a regular file; refusing to replace it",
                self.path.display()
            )));
        }
        let file =
            File::open(&self.path).map_err(|err| FacilityError::io("read", &self.path, err))?;
        if sha256_hex(&mut &file, &self.path)? != self.sha256 {
            return Ok(Found::Other);
        }
        let wanted = self.attributes()?;
        let attributes_right = meta.mode() & 0o7777 == wanted.mode
            && wanted.uid.is_none_or(|uid| uid == meta.uid())
            && wanted.gid.is_none_or(|gid| gid == meta.gid());
        Ok(Found::Right { attributes_right })
    }

    /// Fetch the body into `tmp`, hashing it; an error unless it is the file asked for.
    fn fetch(&self, ctx: &mut Context<'_>, tmp: &Path) -> Result<u64, FacilityError> {
        let agent = ctx.http(&self.url)?;
        let mut response = agent
            .get(&self.url)
            .call()
            .map_err(|err| crate::http::request_error(&self.url, err, ctx.ca_bundle()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FacilityError::new(format!(
                "GET {} answered {status}; expected 200 OK",
                self.url
            )));
        }
        // Only the owner can read it until the hash is known and the mode set.
        let mut file = create_private(tmp)?;
        let mut body = response.body_mut().as_reader();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(FacilityError::new(format!(
                        "reading {} failed after {size} bytes: {err}",
                        self.url
                    )));
                }
            };
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|err| FacilityError::io("write", tmp, err))?;
            size += n as u64;
        }
        let got = hex(&hasher.finalize());
        if got != self.sha256 {
            return Err(FacilityError::new(format!(
                "{} served {size} bytes with sha256 {got}, not the {} asked for; nothing was \
                 written to `{}`",
                self.url,
                self.sha256,
                self.path.display()
            )));
        }
        set_attributes(&file, tmp, self.attributes()?)?;
        file.sync_all()
            .map_err(|err| FacilityError::io("sync", tmp, err))?;
        Ok(size)
    }
}

impl Facility for Download {
    fn describe(&self) -> String {
        format!(
            "file {} is {} (sha256 {})",
            self.path.display(),
            self.url,
            &self.sha256[..12]
        )
    }

    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        Ok(match self.inspect()? {
            Found::Right {
                attributes_right: true,
            } => Check::AlreadyDone,
            _ => Check::Run,
        })
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        if let Found::Right { .. } = self.inspect()? {
            // The bytes are right: only the mode or owner is not.
            let file =
                File::open(&self.path).map_err(|err| FacilityError::io("open", &self.path, err))?;
            set_attributes(&file, &self.path, self.attributes()?)?;
            return Ok(Applied::Changed);
        }
        let mut size = 0;
        replace_atomically(&self.path, |tmp| {
            size = self.fetch(ctx, tmp)?;
            Ok(())
        })?;
        ctx.output(&format!(
            "fetched {size} bytes from {} with the expected sha256",
            self.url
        ));
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::Plan;

    fn parse(step: &str) -> Result<Plan, crate::PlanError> {
        let dir = tempfile::tempdir().unwrap();
        Plan::parse(
            &format!("[[step]]\nfacility = \"download\"\n{step}"),
            Path::new("cattle.toml"),
            dir.path(),
        )
    }

    #[test]
    fn arguments_are_checked_when_the_steps_file_is_read() {
        let good = "url = \"https://mirror.internal/a.tar.gz\"\npath = \"/opt/a.tar.gz\"\n";
        let hash = format!("sha256 = \"{}\"\n", "A".repeat(64));
        let plan = parse(&format!("{good}{hash}")).unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "file /opt/a.tar.gz is https://mirror.internal/a.tar.gz (sha256 aaaaaaaaaaaa)"
        );

        let err = parse(good).unwrap_err();
        assert_eq!(err.message, "step `download` is missing argument `sha256`");
        for (bad, line, message) in [
            (
                format!("{good}sha256 = \"abc\"\n"),
                5,
                "argument `sha256` must be 64 hexadecimal digits",
            ),
            (
                format!("url = \"mirror.internal/a\"\npath = \"/a\"\n{hash}"),
                3,
                "argument `url` must be an http or https URL",
            ),
            (
                format!("{good}{hash}mode = 644\n"),
                6,
                "argument `mode` must be a quoted octal string",
            ),
        ] {
            let err = parse(&bad).unwrap_err();
            assert_eq!(err.position.map(|p| p.0), Some(line), "{bad}");
            assert!(err.message.starts_with(message), "{}", err.message);
        }
    }
}
