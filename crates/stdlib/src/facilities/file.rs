//! `file`: a file at `path` with the contents given (inline or from the
//! config), the mode given and, when given, the owner and group; or no file
//! there at all (`state = "absent"`).
//!
//! A new or changed file is written beside `path`, complete with its owner
//! and mode, then renamed over it: a secret is never readable by others, not
//! even for a moment. When only the mode or owner is wrong, they are changed
//! in place, the mode first narrowed to what both the old and the new allow.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::FacilitySpec;
use crate::accounts::{resolve_group, resolve_user};
use crate::args::{ArgError, Args, ConfigKind};
use crate::diff::{Diff, Side, link_note};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::files::{Attributes, copy_to_file, fix_attributes};
use crate::tree::same_contents;

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "file",
    args: &[
        "path", "content", "source", "mode", "owner", "group", "state",
    ],
    summary: "a file with the contents, mode and owner given, or no file",
    build,
};

/// The mode of a file whose step does not give one.
pub(super) const DEFAULT_MODE: u32 = 0o644;

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let path = args.absolute_path("path")?;
    let content = args.optional_text("content")?;
    let source = args.optional_config_path("source", ConfigKind::File)?;
    let mode = args.optional_mode("mode")?;
    let owner = args.optional_str("owner")?;
    let group = args.optional_str("group")?;
    let absent = args.optional_choice("state", &["present", "absent"])? == Some("absent");
    if absent {
        for (key, given) in [
            ("content", content.is_some()),
            ("source", source.is_some()),
            ("mode", mode.is_some()),
            ("owner", owner.is_some()),
            ("group", group.is_some()),
        ] {
            if given {
                return Err(args
                    .error(
                        key,
                        format!("argument `{key}` has no use with `state = \"absent\"`"),
                    )
                    .with_hint(
                        "an absent file has no contents, mode or owner; remove the argument",
                    ));
            }
        }
        return Ok(Box::new(FileStep::Absent(path)));
    }
    let contents = match (content, source) {
        (Some(content), None) => Contents::Inline(content.into_bytes()),
        (None, Some(source)) => Contents::Config(source),
        (Some(_), Some(_)) => {
            return Err(args
                .error(
                    "source",
                    "step `file` takes `content` or `source`, not both",
                )
                .with_hint("`content` is the text itself; `source` names a file of the config"));
        }
        (None, None) => {
            return Err(args
                .error("path", "step `file` needs `content` or `source`")
                .with_hint(
                    "add `content = \"...\"` with the text, or `source = \"files/name\"` \
                     naming a file of the config (or `state = \"absent\"` to remove the file)",
                ));
        }
    };
    Ok(Box::new(FileStep::Present(Wanted {
        path,
        contents,
        mode: mode.unwrap_or(DEFAULT_MODE),
        owner,
        group,
    })))
}

/// Where a file's contents come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Contents {
    /// The bytes themselves.
    Inline(Vec<u8>),
    /// A file of the config directory, relative to it.
    Config(PathBuf),
    /// A template of the config directory (relative to it), rendered with
    /// the host's variables when the plan was made: these bytes.
    Rendered(PathBuf, Vec<u8>),
}

impl Contents {
    fn open(&self, ctx: &Context<'_>) -> Result<(Box<dyn Read + '_>, u64), FacilityError> {
        match self {
            Contents::Inline(bytes) | Contents::Rendered(_, bytes) => {
                Ok((Box::new(&bytes[..]), bytes.len() as u64))
            }
            Contents::Config(source) => {
                let path = ctx.config_dir().join(source);
                let file = std::fs::File::open(&path)
                    .map_err(|err| FacilityError::io("read", &path, err))?;
                let len = file
                    .metadata()
                    .map_err(|err| FacilityError::io("inspect", &path, err))?
                    .len();
                Ok((Box::new(file), len))
            }
        }
    }
}

/// A regular file with these contents, mode and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wanted {
    pub path: PathBuf,
    pub contents: Contents,
    /// Permission bits, set-ID and sticky bits included.
    pub mode: u32,
    /// Names or numeric ids; `None`: a new file gets the writer's, a
    /// replaced one keeps its own.
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// What is at the path now.
enum Found {
    Nothing,
    /// A symbolic link, replaced by the file (the link, never its target).
    Link,
    File(std::fs::Metadata),
}

/// What `apply` must do about a regular file already at the path.
#[derive(Debug, PartialEq, Eq)]
enum Fix {
    Nothing,
    /// The bytes are right; only the owner or mode is not.
    Attributes,
    Rewrite,
}

impl Wanted {
    /// The wanted owner and mode, names looked up now.
    fn attributes(&self) -> Result<Attributes, FacilityError> {
        Ok(Attributes {
            mode: self.mode,
            uid: self.owner.as_deref().map(resolve_user).transpose()?,
            gid: self.group.as_deref().map(resolve_group).transpose()?,
        })
    }

    fn found(&self) -> Result<Found, FacilityError> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.is_file() => Ok(Found::File(meta)),
            Ok(meta) if meta.is_symlink() => Ok(Found::Link),
            Ok(meta) if meta.is_dir() => Err(FacilityError::permanent(format!(
                "`{}` is a directory; `path` must name the file itself",
                self.path.display()
            ))),
            Ok(_) => Err(FacilityError::permanent(format!(
                "`{}` exists and is not a regular file; refusing to replace it",
                self.path.display()
            ))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Found::Nothing),
            Err(err) => Err(FacilityError::io("inspect", &self.path, err)),
        }
    }

    /// Open the regular file at the path without following a link.
    fn open_existing(&self) -> Result<std::fs::File, FacilityError> {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(&self.path)
            .map_err(|err| FacilityError::io("read", &self.path, err))
    }

    /// What the regular file `meta` at the path needs to be as wanted.
    fn fix(
        &self,
        ctx: &Context<'_>,
        meta: &std::fs::Metadata,
        wanted: Attributes,
    ) -> Result<Fix, FacilityError> {
        let (mut contents, len) = self.contents.open(ctx)?;
        let same = meta.len() == len
            && same_contents(&mut self.open_existing()?, &mut contents)
                .map_err(|err| FacilityError::io("compare", &self.path, err))?;
        let attributes_right = meta.mode() & 0o7777 == wanted.mode
            && wanted.uid.is_none_or(|uid| uid == meta.uid())
            && wanted.gid.is_none_or(|gid| gid == meta.gid());
        Ok(match (same, attributes_right) {
            (true, true) => Fix::Nothing,
            (true, false) => Fix::Attributes,
            (false, _) => Fix::Rewrite,
        })
    }

    pub(super) fn describe(&self) -> String {
        let what = match &self.contents {
            Contents::Inline(_) => "the contents given".to_string(),
            Contents::Config(source) => format!("the contents of {}", source.display()),
            Contents::Rendered(template, _) => {
                format!("template {} rendered", template.display())
            }
        };
        let mut text = format!(
            "file {} has {what}, mode {:04o}",
            self.path.display(),
            self.mode
        );
        match (&self.owner, &self.group) {
            (Some(owner), Some(group)) => text.push_str(&format!(", owner {owner}:{group}")),
            (Some(owner), None) => text.push_str(&format!(", owner {owner}")),
            (None, Some(group)) => text.push_str(&format!(", group {group}")),
            (None, None) => {}
        }
        text
    }

    pub(super) fn check(&self, ctx: &Context<'_>) -> Result<Check, FacilityError> {
        let wanted = self.attributes()?;
        match self.found()? {
            Found::Nothing | Found::Link => Ok(Check::Run),
            Found::File(meta) => Ok(match self.fix(ctx, &meta, wanted)? {
                Fix::Nothing => Check::AlreadyDone,
                Fix::Attributes | Fix::Rewrite => Check::Run,
            }),
        }
    }

    pub(super) fn apply(&self, ctx: &Context<'_>) -> Result<Applied, FacilityError> {
        let wanted = self.attributes()?;
        let found = self.found()?;
        if let Found::File(meta) = &found {
            // A second name for the file (a hard link) would change with it.
            if meta.nlink() == 1 && self.fix(ctx, meta, wanted)? == Fix::Attributes {
                let file = self.open_existing()?;
                let now = file
                    .metadata()
                    .map_err(|err| FacilityError::io("inspect", &self.path, err))?;
                if now.is_file() && now.ino() == meta.ino() {
                    let current = Attributes {
                        mode: now.mode() & 0o7777,
                        uid: Some(now.uid()),
                        gid: Some(now.gid()),
                    };
                    fix_attributes(&file, &self.path, current, wanted)?;
                    return Ok(Applied::Changed);
                }
            }
        }
        // Without an owner given, a replaced file keeps its own.
        let attributes = match &found {
            Found::File(meta) => Attributes {
                mode: wanted.mode,
                uid: wanted.uid.or(Some(meta.uid())),
                gid: wanted.gid.or(Some(meta.gid())),
            },
            Found::Nothing | Found::Link => wanted,
        };
        let (mut contents, _) = self.contents.open(ctx)?;
        copy_to_file(&self.path, &mut contents, attributes)?;
        Ok(Applied::Changed)
    }
}

impl Wanted {
    /// What [`Wanted::apply`] would change: only reads, like `check`.
    pub(super) fn diff(&self, ctx: &Context<'_>) -> Result<Option<Diff>, FacilityError> {
        let wanted = self.attributes()?;
        let new_contents = || -> Result<Side, FacilityError> {
            let (mut contents, len) = self.contents.open(ctx)?;
            Side::read(&mut contents, len, &self.path)
        };
        let diff =
            match self.found()? {
                Found::File(meta) => {
                    let (old, new) = match self.fix(ctx, &meta, wanted)? {
                        Fix::Nothing => return Ok(None),
                        Fix::Attributes => (Side::Kept, Side::Kept),
                        Fix::Rewrite => (
                            Side::read(&mut self.open_existing()?, meta.len(), &self.path)?,
                            new_contents()?,
                        ),
                    };
                    let old_mode = meta.mode() & 0o7777;
                    Diff::new(&self.path, (old, Some(old_mode)), (new, Some(wanted.mode)))
                        .owner_notes(Some((meta.uid(), meta.gid())), wanted.uid, wanted.gid)
                }
                found @ (Found::Nothing | Found::Link) => {
                    let diff = Diff::new(
                        &self.path,
                        (Side::Absent, None),
                        (new_contents()?, Some(wanted.mode)),
                    )
                    .owner_notes(None, wanted.uid, wanted.gid);
                    match found {
                        Found::Link => diff.note(link_note(&self.path).unwrap_or_default()),
                        _ => diff,
                    }
                }
            };
        Ok(Some(diff))
    }
}

/// What removing the file or link at `path` would change.
pub(super) fn diff_absent(path: &Path) -> Result<Option<Diff>, FacilityError> {
    if let Some(note) = removed_link_note(path) {
        return Ok(Some(
            Diff::new(path, (Side::Absent, None), (Side::Absent, None)).note(note),
        ));
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(FacilityError::io("read", path, err)),
    };
    let meta = file
        .metadata()
        .map_err(|err| FacilityError::io("inspect", path, err))?;
    if !meta.is_file() {
        return Ok(None);
    }
    let old = Side::read(&mut &file, meta.len(), path)?;
    Ok(Some(Diff::new(
        path,
        (old, Some(meta.mode() & 0o7777)),
        (Side::Absent, None),
    )))
}

/// "the symbolic link to `target` is removed", when `path` is one.
fn removed_link_note(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_symlink() {
        return None;
    }
    let target = std::fs::read_link(path).ok()?;
    Some(format!(
        "the symbolic link to `{}` is removed",
        target.display()
    ))
}

/// No file or symbolic link at `path` (nothing there is fine; a directory
/// there is a permanent error).
pub(super) fn check_absent(path: &Path) -> Result<Check, FacilityError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(FacilityError::permanent(format!(
            "`{}` is a directory; only a file or link is removed",
            path.display()
        ))),
        Ok(_) => Ok(Check::Run),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Check::AlreadyDone),
        Err(err) => Err(FacilityError::io("inspect", path, err)),
    }
}

/// Remove the file or link at `path`, if any.
pub(super) fn apply_absent(path: &Path) -> Result<Applied, FacilityError> {
    check_absent(path)?;
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(FacilityError::io("remove", path, err))
        }
        _ => Ok(Applied::Changed),
    }
}

#[derive(Debug)]
pub(super) enum FileStep {
    Present(Wanted),
    Absent(PathBuf),
}

impl Facility for FileStep {
    fn describe(&self) -> String {
        match self {
            FileStep::Present(wanted) => wanted.describe(),
            FileStep::Absent(path) => format!("file {} does not exist", path.display()),
        }
    }

    fn check(&self, ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        match self {
            FileStep::Present(wanted) => wanted.check(ctx),
            FileStep::Absent(path) => check_absent(path),
        }
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        match self {
            FileStep::Present(wanted) => wanted.apply(ctx),
            FileStep::Absent(path) => apply_absent(path),
        }
    }

    fn diff(&self, ctx: &mut Context<'_>) -> Result<Option<Diff>, FacilityError> {
        match self {
            FileStep::Present(wanted) => wanted.diff(ctx),
            FileStep::Absent(path) => diff_absent(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{Try, apply, check, converges, diff, is_root, snapshot};
    use crate::steps::Plan;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    fn setup() -> (tempfile::TempDir, Environment) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config/files")).unwrap();
        std::fs::write(dir.path().join("config/files/motd"), "welcome\n").unwrap();
        std::fs::create_dir(dir.path().join("host")).unwrap();
        let env = Environment::new(dir.path().join("config"));
        (dir, env)
    }

    fn inline(path: PathBuf, content: &str, mode: u32) -> FileStep {
        FileStep::Present(Wanted {
            path,
            contents: Contents::Inline(content.as_bytes().to_vec()),
            mode,
            owner: None,
            group: None,
        })
    }

    fn meta(path: &Path) -> std::fs::Metadata {
        std::fs::symlink_metadata(path).unwrap()
    }

    #[test]
    fn writes_inline_contents_with_the_mode_then_changes_nothing() {
        let (dir, env) = setup();
        let host = dir.path().join("host");
        let path = host.join("secret");
        let f = inline(path.clone(), "s3cret\n", 0o600);
        converges(&f, &env, &host);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s3cret\n");
        assert_eq!(meta(&path).mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 1);
    }

    #[test]
    fn copies_a_config_file_with_the_default_mode() {
        let (dir, env) = setup();
        let host = dir.path().join("host");
        let f = FileStep::Present(Wanted {
            path: host.join("motd"),
            contents: Contents::Config(PathBuf::from("files/motd")),
            mode: DEFAULT_MODE,
            owner: None,
            group: None,
        });
        converges(&f, &env, &host);
        assert_eq!(
            std::fs::read_to_string(host.join("motd")).unwrap(),
            "welcome\n"
        );
        assert_eq!(meta(&host.join("motd")).mode() & 0o7777, 0o644);
    }

    #[test]
    fn an_empty_file_is_a_file() {
        let (dir, env) = setup();
        let host = dir.path().join("host");
        converges(&inline(host.join("empty"), "", 0o644), &env, &host);
        assert_eq!(meta(&host.join("empty")).len(), 0);
    }

    #[test]
    fn other_contents_are_replaced_and_a_wrong_mode_fixed_in_place() {
        let (dir, env) = setup();
        let host = dir.path().join("host");
        let path = host.join("f");
        std::fs::write(&path, "same length!").unwrap();
        let f = inline(path.clone(), "same LENGTH!", 0o640);
        converges(&f, &env, &host);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "same LENGTH!");

        // Only the mode differs: the same file (inode) gets the new mode.
        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        let inode = meta(&path).ino();
        converges(&f, &env, &host);
        assert_eq!(meta(&path).ino(), inode);
        assert_eq!(meta(&path).mode() & 0o7777, 0o640);
    }

    #[test]
    fn the_diff_shows_contents_mode_new_and_removed_files_and_changes_nothing() {
        let (dir, env) = setup();
        let host = dir.path().join("host");
        let path = host.join("motd");
        std::fs::write(&path, "welcome\nto the host\n").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o664)).unwrap();
        let p = path.display();
        let headers = format!("--- {p} (on the host)\n+++ {p} (as the step leaves it)");
        let f = inline(path.clone(), "welcome\nto cattle\n", 0o644);
        assert_eq!(
            diff(&f, &env, &host).unwrap(),
            format!(
                "{headers}\nmode 0664 → 0644\n@@ -1,2 +1,2 @@\n welcome\n-to the host\n+to cattle"
            )
        );

        // The same bytes: only the mode.
        std::fs::write(&path, "welcome\nto cattle\n").unwrap();
        assert_eq!(
            diff(&f, &env, &host).unwrap(),
            format!("{headers}\nmode 0664 → 0644")
        );

        // In place: nothing to show.
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        assert_eq!(diff(&f, &env, &host), None);

        // Removed: every line goes.
        assert_eq!(
            diff(&FileStep::Absent(path.clone()), &env, &host).unwrap(),
            format!("{headers}\nfile removed\n@@ -1,2 +0,0 @@\n-welcome\n-to cattle")
        );

        // A new file from the config, and a new private one: its size only.
        let new = FileStep::Present(Wanted {
            path: host.join("new"),
            contents: Contents::Config(PathBuf::from("files/motd")),
            mode: 0o644,
            owner: None,
            group: Some("0".into()),
        });
        let n = host.join("new");
        let n = n.display();
        assert_eq!(
            diff(&new, &env, &host).unwrap(),
            format!(
                "--- {n} (on the host)\n+++ {n} (as the step leaves it)\nnew file, mode 0644\n\
                 group 0\n@@ -0,0 +1 @@\n+welcome"
            )
        );
        let secret = inline(host.join("secret"), "s3cret\n", 0o600);
        let shown = diff(&secret, &env, &host).unwrap();
        assert!(
            shown.ends_with(
                "\nnew file, mode 0600\ncontents not shown: the file is not readable by \
                 everyone (0 → 7 bytes)"
            ),
            "{shown}"
        );

        // A link at the path is replaced; removing one removes only the link.
        let link = host.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let shown = diff(&inline(link.clone(), "x\n", 0o644), &env, &host).unwrap();
        assert!(
            shown.contains(&format!(
                "\nnew file, mode 0644\nthe symbolic link to `{p}` is replaced by a file\n"
            )),
            "{shown}"
        );
        let shown = diff(&FileStep::Absent(link), &env, &host).unwrap();
        assert!(
            shown.ends_with(&format!("\nthe symbolic link to `{p}` is removed")),
            "{shown}"
        );
    }

    #[test]
    fn a_hard_linked_file_is_replaced_not_changed_in_place() {
        let (dir, env) = setup();
        let host = dir.path().join("host");
        let path = host.join("f");
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        std::fs::hard_link(&path, dir.path().join("other-name")).unwrap();
        let f = inline(path.clone(), "x", 0o600);
        assert_eq!(check(&f, &env).unwrap(), Check::Run);
        apply(&f, &env).0.unwrap();
        assert_eq!(check(&f, &env).unwrap(), Check::AlreadyDone);
        assert_eq!(meta(&dir.path().join("other-name")).mode() & 0o7777, 0o644);
        assert_eq!(meta(&path).mode() & 0o7777, 0o600);
    }

    #[test]
    fn owner_and_group_are_set_before_the_file_appears_and_fixed_in_place() {
        if !is_root() {
            return;
        }
        let (dir, env) = setup();
        let host = dir.path().join("host");
        let path = host.join("secret");
        let f = FileStep::Present(Wanted {
            path: path.clone(),
            contents: Contents::Inline(b"s3cret".to_vec()),
            mode: 0o640,
            owner: Some("nobody".into()),
            group: Some("0".into()),
        });
        converges(&f, &env, &host);
        let nobody = resolve_user("nobody").unwrap();
        assert_eq!((meta(&path).uid(), meta(&path).gid()), (nobody, 0));

        // Someone else's now, and world-readable: fixed in place.
        std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let inode = meta(&path).ino();
        converges(&f, &env, &host);
        assert_eq!(meta(&path).ino(), inode);
        assert_eq!(
            (meta(&path).uid(), meta(&path).mode() & 0o7777),
            (nobody, 0o640)
        );
    }

    #[test]
    fn without_an_owner_a_replaced_file_keeps_its_own() {
        if !is_root() {
            return;
        }
        let (dir, env) = setup();
        let host = dir.path().join("host");
        let path = host.join("f");
        std::fs::write(&path, "old").unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        converges(&inline(path.clone(), "new", 0o644), &env, &host);
        assert_eq!((meta(&path).uid(), meta(&path).gid()), (65534, 65534));
    }

    #[test]
    fn fixing_in_place_never_grants_more_than_before_or_after() {
        if !is_root() {
            return;
        }
        // Changing the group of a 0644 file to 0600: the mode is narrowed to
        // 0600 before the group changes, so the new group never reads it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let current = Attributes {
            mode: 0o644,
            uid: Some(0),
            gid: Some(0),
        };
        let wanted = Attributes {
            mode: 0o600,
            uid: None,
            gid: Some(65534),
        };
        fix_attributes(&file, &path, current, wanted).unwrap();
        let now = meta(&path);
        assert_eq!(
            (now.mode() & 0o7777, now.uid(), now.gid()),
            (0o600, 0, 65534)
        );
    }

    #[test]
    fn a_symlink_at_path_is_replaced_and_its_target_left_alone() {
        let (dir, env) = setup();
        let host = dir.path().join("host");
        let target = dir.path().join("target");
        std::fs::write(&target, "keep me").unwrap();
        std::os::unix::fs::symlink(&target, host.join("link")).unwrap();
        converges(&inline(host.join("link"), "new", 0o600), &env, &host);
        assert!(meta(&host.join("link")).is_file());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        assert_eq!(meta(&target).mode() & 0o7777, 0o644);
    }

    #[test]
    fn a_directory_at_path_is_a_permanent_error_either_way() {
        let (dir, env) = setup();
        let path = dir.path().join("host");
        let f = inline(path.clone(), "x", 0o644);
        let err = check(&f, &env).unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("is a directory"),
            "{err}"
        );
        assert!(apply(&f, &env).0.unwrap_err().is_permanent());
        let f = FileStep::Absent(path.clone());
        assert!(f.check_in(&env).unwrap_err().is_permanent());
        assert!(f.apply_in(&env).unwrap_err().is_permanent());
        assert!(path.is_dir());
    }

    #[test]
    fn a_missing_parent_is_an_error_with_a_hint() {
        let (dir, env) = setup();
        let f = inline(dir.path().join("missing/f"), "x", 0o644);
        assert_eq!(check(&f, &env).unwrap(), Check::Run);
        let err = apply(&f, &env).0.unwrap_err();
        assert!(err.message().contains("make_dir"), "{err}");
    }

    #[test]
    fn absent_removes_a_file_or_link_and_missing_is_fine() {
        let (dir, env) = setup();
        let host = dir.path().join("host");
        std::fs::write(host.join("f"), "x").unwrap();
        std::os::unix::fs::symlink(host.join("f"), host.join("link")).unwrap();
        converges(&FileStep::Absent(host.join("link")), &env, &host);
        assert!(host.join("f").exists());
        converges(&FileStep::Absent(host.join("f")), &env, &host);
        assert!(snapshot(&host).len() == 1);
        // Already gone (a retry after the removal): still fine.
        FileStep::Absent(host.join("f")).apply_in(&env).unwrap();
    }

    #[test]
    fn an_unknown_owner_is_an_error_not_done() {
        let (dir, env) = setup();
        let path = dir.path().join("host/f");
        std::fs::write(&path, "x").unwrap();
        let f = FileStep::Present(Wanted {
            path,
            contents: Contents::Inline(b"x".to_vec()),
            mode: 0o644,
            owner: Some("cattle-no-such-user".into()),
            group: None,
        });
        let err = check(&f, &env).unwrap_err();
        assert!(
            err.message().contains("no user `cattle-no-such-user`"),
            "{err}"
        );
    }

    fn parse(args: &str, config: &Path) -> Result<Plan, crate::PlanError> {
        let steps = format!("[[step]]\nfacility = \"file\"\npath = \"/etc/x\"\n{args}\n");
        Plan::parse(&steps, Path::new("cattle.toml"), config)
    }

    #[test]
    fn build_reads_contents_mode_owner_and_state() {
        let (_dir, env) = setup();
        let config = &env.config_dir;
        let plan = parse("content = \"hi\"\nmode = \"0600\"\nowner = \"app\"", config).unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "file /etc/x has the contents given, mode 0600, owner app"
        );
        let plan = parse("source = \"files/motd\"\ngroup = \"adm\"", config).unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "file /etc/x has the contents of files/motd, mode 0644, group adm"
        );
        let plan = parse("content = \"\"", config).unwrap();
        assert!(plan.steps[0].facility.describe().contains("mode 0644"));
        let plan = parse("state = \"absent\"", config).unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "file /etc/x does not exist"
        );
    }

    #[test]
    fn build_refuses_bad_arguments_at_their_place() {
        let (_dir, env) = setup();
        let config = &env.config_dir;
        for (args, message, position) in [
            ("", "step `file` needs `content` or `source`", (3, 8)),
            (
                "content = \"x\"\nsource = \"files/motd\"",
                "step `file` takes `content` or `source`, not both",
                (5, 10),
            ),
            (
                "content = \"x\"\nmode = 644",
                "argument `mode` must be a quoted octal string such as \"0644\"",
                (5, 8),
            ),
            (
                "content = \"x\"\nmode = \"0999\"",
                "argument `mode` must be a quoted octal string such as \"0644\"",
                (5, 8),
            ),
            (
                "content = \"x\"\nmode = \"u+rw\"",
                "argument `mode` must be a quoted octal string such as \"0644\"",
                (5, 8),
            ),
            (
                "source = \"files/nope\"",
                "argument `source` must name a regular file in the config directory",
                (4, 10),
            ),
            (
                "source = \"files\"",
                "argument `source` must name a regular file in the config directory",
                (4, 10),
            ),
            (
                "source = \"../secret\"",
                "argument `source` must name a regular file in the config directory",
                (4, 10),
            ),
            (
                "state = \"gone\"",
                "argument `state` cannot be `gone`",
                (4, 9),
            ),
            (
                "state = \"absent\"\nmode = \"0600\"",
                "argument `mode` has no use with `state = \"absent\"`",
                (5, 8),
            ),
            (
                "state = \"absent\"\ncontent = \"x\"",
                "argument `content` has no use with `state = \"absent\"`",
                (5, 11),
            ),
        ] {
            let err = parse(args, config).unwrap_err();
            assert_eq!(err.message, message, "{args}");
            assert_eq!(err.position, Some(position), "{args}");
        }
        let err = parse("source = \"files/nope\"", config).unwrap_err();
        assert!(err.to_string().starts_with("cattle.toml:4:10: "), "{err}");
        assert!(err.hint.unwrap().contains("there is no `files/nope`"));
    }

    #[test]
    fn a_sensitive_content_is_never_described() {
        let (_dir, env) = setup();
        let plan = parse(
            "content = \"hunter2\"\nsensitive = [\"content\"]",
            &env.config_dir,
        )
        .unwrap();
        let describe = plan.steps[0].facility.describe();
        assert!(!describe.contains("hunter2"), "{describe}");
        assert_eq!(plan.secrets.redact("hunter2"), "[sensitive]");
    }
}
