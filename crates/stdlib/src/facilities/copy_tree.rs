//! `copy_tree`: a directory of the config is copied to `path` on the host,
//! file by file, and optionally nothing else is there.
//!
//! Modes are those a bundle carries: a file with any execute bit is 0755,
//! any other 0644, a directory 0755, whether the config comes from a bundle
//! or from a directory on the machine (`cattle apply`). Every name under
//! `path` is looked up in its open parent without following a symbolic link
//! ([`crate::tree`]): a link where the source has a file is replaced, one
//! where it has a directory is never followed.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::FacilitySpec;
use crate::accounts::{resolve_group, resolve_user};
use crate::args::{ArgError, Args, ConfigKind};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::files::{Attributes, fix_attributes, set_attributes};
use crate::tree::{Dir, Kind, MAX_DEPTH, same_contents};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "copy_tree",
    args: &["source", "path", "owner", "group", "delete"],
    summary: "copy a directory of the config to the host, optionally deleting what else is there",
    build,
};

/// Mode of every directory copied, and of `path` when it is created.
const DIR_MODE: u32 = 0o755;
/// Mode of a copied file with an execute bit in the config.
const EXECUTABLE_MODE: u32 = 0o755;
/// Mode of any other copied file.
const FILE_MODE: u32 = 0o644;

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    Ok(Box::new(CopyTree {
        source: args.config_path("source", ConfigKind::Directory)?,
        path: args.absolute_path("path")?,
        owner: args.optional_str("owner")?,
        group: args.optional_str("group")?,
        delete: args.optional_bool("delete")?.unwrap_or(false),
    }))
}

#[derive(Debug)]
struct CopyTree {
    /// Relative to the config directory.
    source: PathBuf,
    path: PathBuf,
    owner: Option<String>,
    group: Option<String>,
    delete: bool,
}

/// An entry of the source tree.
#[derive(Debug)]
enum Source {
    Directory(Vec<(OsString, Source)>),
    File {
        /// Where it is read from.
        path: PathBuf,
        mode: u32,
        len: u64,
    },
}

/// The entries of the directory `dir` of the config, in byte order of their
/// names, each directory with its own.
fn read_source(dir: &Path, depth: usize) -> Result<Vec<(OsString, Source)>, FacilityError> {
    if depth > MAX_DEPTH {
        return Err(FacilityError::permanent(format!(
            "`{}` is more than {MAX_DEPTH} directories deep",
            dir.display()
        )));
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|err| FacilityError::io("list", dir, err))? {
        let entry = entry.map_err(|err| FacilityError::io("list", dir, err))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|err| FacilityError::io("inspect", &path, err))?;
        let source = if meta.is_dir() {
            Source::Directory(read_source(&path, depth + 1)?)
        } else if meta.is_file() {
            let executable = meta.permissions().mode() & 0o111 != 0;
            Source::File {
                path,
                mode: if executable {
                    EXECUTABLE_MODE
                } else {
                    FILE_MODE
                },
                len: meta.len(),
            }
        } else {
            return Err(FacilityError::permanent(format!(
                "`{}` is neither a regular file nor a directory; a config holds only those \
                 (a bundle cannot carry a symbolic link)",
                path.display()
            )));
        };
        entries.push((entry.file_name(), source));
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(entries)
}

/// The error for something at `path` that is not what the source has.
fn in_the_way(path: &Path, found: Kind, wanted: &str) -> FacilityError {
    let found = match found {
        Kind::File => "a file",
        Kind::Directory => "a directory",
        Kind::Symlink => "a symbolic link",
        Kind::Other => "a special file",
    };
    FacilityError::permanent(format!(
        "`{}` is {found} where the source has {wanted}; remove it, or set `delete = true` \
         to have copy_tree replace it",
        path.display()
    ))
}

impl CopyTree {
    /// The owner and mode of a directory, and those of a file of `mode`;
    /// names looked up now.
    fn ids(&self) -> Result<(Option<u32>, Option<u32>), FacilityError> {
        Ok((
            self.owner.as_deref().map(resolve_user).transpose()?,
            self.group.as_deref().map(resolve_group).transpose()?,
        ))
    }

    fn read_source(&self, ctx: &Context<'_>) -> Result<Vec<(OsString, Source)>, FacilityError> {
        read_source(&ctx.config_dir().join(&self.source), 0)
    }

    /// The directory at `path`, if there is one; anything else there is a
    /// permanent error.
    fn open_root(&self) -> Result<Option<Dir>, FacilityError> {
        match std::fs::symlink_metadata(&self.path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(FacilityError::io("inspect", &self.path, err)),
            Ok(meta) if meta.is_dir() => Dir::open(&self.path).map(Some),
            Ok(meta) if meta.is_symlink() => Err(FacilityError::permanent(format!(
                "`{}` is a symbolic link; `path` must name the directory itself",
                self.path.display()
            ))),
            Ok(_) => Err(FacilityError::permanent(format!(
                "`{}` exists and is not a directory",
                self.path.display()
            ))),
        }
    }

    /// Whether `dir` holds `entries` as wanted (and nothing else, with `delete`).
    fn in_state(
        &self,
        dir: &Dir,
        entries: &[(OsString, Source)],
        ids: (Option<u32>, Option<u32>),
    ) -> Result<bool, FacilityError> {
        for (name, source) in entries {
            let Some(found) = dir.stat(name)? else {
                return Ok(false);
            };
            match source {
                Source::Directory(children) => {
                    if found.kind != Kind::Directory {
                        if self.delete {
                            return Ok(false);
                        }
                        return Err(in_the_way(&dir.join(name), found.kind, "a directory"));
                    }
                    if !found.has(attributes(DIR_MODE, ids))
                        || !self.in_state(&dir.subdir(name)?, children, ids)?
                    {
                        return Ok(false);
                    }
                }
                Source::File { path, mode, len } => {
                    if found.kind == Kind::Directory && !self.delete {
                        return Err(in_the_way(&dir.join(name), found.kind, "a file"));
                    }
                    if found.kind != Kind::File
                        || found.size != *len
                        || !found.has(attributes(*mode, ids))
                        || !same_file(dir, name, path)?
                    {
                        return Ok(false);
                    }
                }
            }
        }
        if self.delete {
            let names = dir.names()?;
            if names.iter().any(|n| !entries.iter().any(|(e, _)| e == n)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Make `dir` hold `entries` as wanted (and nothing else, with `delete`).
    fn copy(
        &self,
        dir: &Dir,
        entries: &[(OsString, Source)],
        ids: (Option<u32>, Option<u32>),
    ) -> Result<(), FacilityError> {
        for (name, source) in entries {
            let found = dir.stat(name)?;
            match source {
                Source::Directory(children) => {
                    let wanted = attributes(DIR_MODE, ids);
                    let sub = match found {
                        None => dir.create_subdir(name, wanted)?,
                        Some(found) if found.kind == Kind::Directory => {
                            let sub = dir.subdir(name)?;
                            if !found.has(wanted) {
                                fix_attributes(sub.file(), sub.path(), found.attributes(), wanted)?;
                            }
                            sub
                        }
                        Some(_) if self.delete => {
                            dir.remove(name)?;
                            dir.create_subdir(name, wanted)?
                        }
                        Some(found) => {
                            return Err(in_the_way(&dir.join(name), found.kind, "a directory"));
                        }
                    };
                    self.copy(&sub, children, ids)?;
                }
                Source::File { path, mode, len } => {
                    let wanted = attributes(*mode, ids);
                    match found {
                        Some(found) if found.kind == Kind::Directory => {
                            if !self.delete {
                                return Err(in_the_way(&dir.join(name), found.kind, "a file"));
                            }
                            dir.remove(name)?;
                        }
                        Some(found)
                            if found.kind == Kind::File
                                && found.size == *len
                                && same_file(dir, name, path)? =>
                        {
                            if found.has(wanted) {
                                continue;
                            }
                            // Another name for the file would change with it.
                            if found.nlink == 1 {
                                let file = dir.open_file(name)?;
                                fix_attributes(&file, &dir.join(name), found.attributes(), wanted)?;
                                continue;
                            }
                        }
                        _ => {}
                    }
                    // Without an owner given, a replaced file keeps its own.
                    let kept = match found {
                        Some(found) if found.kind == Kind::File => Attributes {
                            mode: wanted.mode,
                            uid: wanted.uid.or(Some(found.uid)),
                            gid: wanted.gid.or(Some(found.gid)),
                        },
                        _ => wanted,
                    };
                    let mut contents = std::fs::File::open(path)
                        .map_err(|err| FacilityError::io("read", path, err))?;
                    dir.write_file(name, &mut contents, kept)?;
                }
            }
        }
        if self.delete {
            for name in dir.names()? {
                if !entries.iter().any(|(e, _)| *e == name) {
                    dir.remove(&name)?;
                }
            }
        }
        dir.sync();
        Ok(())
    }
}

fn attributes(mode: u32, (uid, gid): (Option<u32>, Option<u32>)) -> Attributes {
    Attributes { mode, uid, gid }
}

/// Whether the file `name` in `dir` has the bytes of `source`.
fn same_file(dir: &Dir, name: &std::ffi::OsStr, source: &Path) -> Result<bool, FacilityError> {
    let mut source_file =
        std::fs::File::open(source).map_err(|err| FacilityError::io("read", source, err))?;
    let mut file = dir.open_file(name)?;
    same_contents(&mut file, &mut source_file)
        .map_err(|err| FacilityError::io("compare", &dir.join(name), err))
}

impl Facility for CopyTree {
    fn describe(&self) -> String {
        format!(
            "directory {} has the files of {}{}",
            self.path.display(),
            self.source.display(),
            if self.delete { " and no others" } else { "" }
        )
    }

    fn check(&self, ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        let ids = self.ids()?;
        let entries = self.read_source(ctx)?;
        let Some(root) = self.open_root()? else {
            return Ok(Check::Run);
        };
        Ok(if self.in_state(&root, &entries, ids)? {
            Check::AlreadyDone
        } else {
            Check::Run
        })
    }

    fn apply(&self, ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        let ids = self.ids()?;
        let entries = self.read_source(ctx)?;
        let root = match self.open_root()? {
            Some(root) => root,
            None => {
                if let Some(parent) = self.path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|err| FacilityError::io("create directory", parent, err))?;
                }
                // Only root can enter it until its owner and mode are set.
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&self.path)
                    .map_err(|err| FacilityError::io("create directory", &self.path, err))?;
                let root = Dir::open(&self.path)?;
                set_attributes(root.file(), &self.path, attributes(DIR_MODE, ids))?;
                root
            }
        };
        self.copy(&root, &entries, ids)?;
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{Try, apply, check, converges, is_root, snapshot};
    use crate::steps::Plan;
    use std::fs::Permissions;
    use std::os::unix::fs::{MetadataExt, symlink};

    /// A config with the tree `www/` and an empty host directory.
    fn setup() -> (tempfile::TempDir, Environment, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("config/www");
        std::fs::create_dir_all(www.join("css/empty")).unwrap();
        std::fs::write(www.join("index.html"), "<h1>hi</h1>\n").unwrap();
        std::fs::write(www.join("css/site.css"), "h1 {}\n").unwrap();
        std::fs::write(www.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(www.join("run.sh"), Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(www.join("index.html"), Permissions::from_mode(0o600)).unwrap();
        std::fs::create_dir(dir.path().join("host")).unwrap();
        let env = Environment::new(dir.path().join("config"));
        let host = dir.path().join("host");
        (dir, env, host)
    }

    fn copy(path: PathBuf, delete: bool) -> CopyTree {
        CopyTree {
            source: PathBuf::from("www"),
            path,
            owner: None,
            group: None,
            delete,
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn copies_the_tree_with_bundle_modes_then_changes_nothing() {
        let (_dir, env, host) = setup();
        let dest = host.join("srv/www");
        converges(&copy(dest.clone(), false), &env, &host);
        assert_eq!(
            std::fs::read_to_string(dest.join("index.html")).unwrap(),
            "<h1>hi</h1>\n"
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("css/site.css")).unwrap(),
            "h1 {}\n"
        );
        assert_eq!(mode(&dest.join("index.html")), 0o644);
        assert_eq!(mode(&dest.join("run.sh")), 0o755);
        assert_eq!(mode(&dest.join("css")), 0o755);
        assert!(dest.join("css/empty").is_dir());
        assert_eq!(mode(&dest), 0o755);
        let names: Vec<_> = snapshot(&dest).into_keys().collect();
        assert_eq!(names.len(), 6, "{names:?}");
    }

    #[test]
    fn a_changed_file_or_mode_is_put_back() {
        let (_dir, env, host) = setup();
        let f = copy(host.clone(), false);
        converges(&f, &env, &host);
        std::fs::write(host.join("css/site.css"), "h2 {}\n").unwrap();
        converges(&f, &env, &host);
        assert_eq!(
            std::fs::read_to_string(host.join("css/site.css")).unwrap(),
            "h1 {}\n"
        );

        // Only the mode: fixed in place.
        std::fs::set_permissions(host.join("run.sh"), Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(host.join("css"), Permissions::from_mode(0o700)).unwrap();
        let inode = std::fs::metadata(host.join("run.sh")).unwrap().ino();
        converges(&f, &env, &host);
        assert_eq!(mode(&host.join("run.sh")), 0o755);
        assert_eq!(mode(&host.join("css")), 0o755);
        assert_eq!(std::fs::metadata(host.join("run.sh")).unwrap().ino(), inode);
    }

    #[test]
    fn other_files_stay_unless_delete_is_set() {
        let (dir, env, host) = setup();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "keep").unwrap();
        std::fs::create_dir_all(host.join("old/deep")).unwrap();
        std::fs::write(host.join("old/deep/f"), "").unwrap();
        std::fs::write(host.join("css-old.css"), "").unwrap();
        symlink(&outside, host.join("old/link")).unwrap();
        symlink(&outside, host.join("link")).unwrap();

        converges(&copy(host.clone(), false), &env, &host);
        assert!(host.join("old/deep/f").exists() && host.join("css-old.css").exists());

        converges(&copy(host.clone(), true), &env, &host);
        let names: Vec<_> = std::fs::read_dir(&host)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(!host.join("old").exists() && !host.join("link").exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("keep")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn a_symlink_where_a_directory_goes_is_never_followed() {
        let (dir, env, host) = setup();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, host.join("css")).unwrap();

        let f = copy(host.clone(), false);
        let err = check(&f, &env).unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("symbolic link"),
            "{err}"
        );
        let err = apply(&f, &env).0.unwrap_err();
        assert!(err.is_permanent(), "{err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

        // With delete, the link itself is replaced by a directory.
        converges(&copy(host.clone(), true), &env, &host);
        assert!(
            std::fs::symlink_metadata(host.join("css"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_swapped_for_a_link_after_the_check_is_not_followed() {
        let (dir, env, host) = setup();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::create_dir(host.join("css")).unwrap();
        let f = copy(host.clone(), false);
        assert_eq!(check(&f, &env).unwrap(), Check::Run);
        std::fs::remove_dir(host.join("css")).unwrap();
        symlink(&outside, host.join("css")).unwrap();
        assert!(apply(&f, &env).0.unwrap_err().is_permanent());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn a_symlink_where_a_file_goes_is_replaced_and_its_target_kept() {
        let (dir, env, host) = setup();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        symlink(&target, host.join("index.html")).unwrap();
        converges(&copy(host.clone(), false), &env, &host);
        assert!(
            std::fs::symlink_metadata(host.join("index.html"))
                .unwrap()
                .is_file()
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn a_file_where_a_directory_goes_and_the_reverse_are_errors_without_delete() {
        let (_dir, env, host) = setup();
        std::fs::write(host.join("css"), "not a dir").unwrap();
        let err = copy(host.clone(), false).check_in(&env).unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("is a file where"),
            "{err}"
        );
        assert!(
            copy(host.clone(), false)
                .apply_in(&env)
                .unwrap_err()
                .is_permanent()
        );
        assert_eq!(
            std::fs::read_to_string(host.join("css")).unwrap(),
            "not a dir"
        );
        std::fs::remove_file(host.join("css")).unwrap();

        std::fs::create_dir_all(host.join("run.sh/inside")).unwrap();
        let err = copy(host.clone(), false).apply_in(&env).unwrap_err();
        assert!(
            err.message()
                .contains("is a directory where the source has a file"),
            "{err}"
        );
        let err = copy(host.clone(), false).check_in(&env).unwrap_err();
        assert!(err.is_permanent(), "{err}");

        std::fs::remove_dir_all(host.join("css")).unwrap();
        std::fs::write(host.join("css"), "not a dir").unwrap();
        converges(&copy(host.clone(), true), &env, &host);
        assert!(host.join("run.sh").is_file() && host.join("css/site.css").is_file());
    }

    #[test]
    fn path_must_be_a_directory_not_a_link_or_file() {
        let (dir, env, host) = setup();
        symlink(&host, dir.path().join("link")).unwrap();
        let err = copy(dir.path().join("link"), false)
            .check_in(&env)
            .unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("symbolic link"),
            "{err}"
        );
        std::fs::write(dir.path().join("file"), "").unwrap();
        let err = copy(dir.path().join("file"), false)
            .apply_in(&env)
            .unwrap_err();
        assert!(err.is_permanent(), "{err}");
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0);
    }

    #[test]
    fn a_symlink_in_the_source_is_refused() {
        let (_dir, env, host) = setup();
        symlink("/etc/passwd", env.config_dir.join("www/passwd")).unwrap();
        let err = copy(host.clone(), false).check_in(&env).unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("symbolic link"),
            "{err}"
        );
        assert!(copy(host.clone(), false).apply_in(&env).is_err());
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0);
    }

    #[test]
    fn owner_and_group_go_to_everything_copied() {
        if !is_root() {
            return;
        }
        let (_dir, env, host) = setup();
        let dest = host.join("www");
        let f = CopyTree {
            owner: Some("nobody".into()),
            group: Some("65534".into()),
            ..copy(dest.clone(), false)
        };
        converges(&f, &env, &host);
        let nobody = resolve_user("nobody").unwrap();
        for (rel, node) in snapshot(&dest) {
            assert_eq!((node.uid, node.gid), (nobody, 65534), "{}", rel.display());
        }
        // Given back to root: every file and directory changes owner.
        std::os::unix::fs::lchown(dest.join("css/site.css"), Some(0), Some(0)).unwrap();
        std::os::unix::fs::lchown(dest.join("css"), Some(0), Some(0)).unwrap();
        converges(&f, &env, &host);
        assert_eq!(
            std::fs::metadata(dest.join("css/site.css")).unwrap().uid(),
            nobody
        );
        assert_eq!(std::fs::metadata(dest.join("css")).unwrap().uid(), nobody);
    }

    #[test]
    fn build_wants_a_directory_of_the_config() {
        let (_dir, env, _host) = setup();
        std::fs::write(env.config_dir.join("file"), "").unwrap();
        let parse = |args: &str| {
            let steps =
                format!("[[step]]\nfacility = \"copy_tree\"\npath = \"/srv/www\"\n{args}\n");
            Plan::parse(&steps, Path::new("cattle.toml"), &env.config_dir)
        };
        let plan = parse("source = \"www\"\ndelete = true").unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            "directory /srv/www has the files of www and no others"
        );
        for (bad, hint) in [
            ("file", "is a file"),
            ("nope", "there is no `nope`"),
            ("../www", "`..`"),
            ("/etc", "absolute"),
        ] {
            let err = parse(&format!("source = \"{bad}\"")).unwrap_err();
            assert_eq!(
                err.message,
                "argument `source` must name a directory in the config directory"
            );
            assert_eq!(err.position, Some((4, 10)), "{bad}");
            assert!(err.hint.unwrap().contains(hint), "{bad}");
        }
        let err = parse("source = \"www\"\ndelete = \"yes\"").unwrap_err();
        assert_eq!(err.position, Some((5, 10)));
    }
}
