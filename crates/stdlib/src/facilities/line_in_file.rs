//! `line_in_file`: a line, or a block of lines between two marker lines, is
//! in a file (or is not).
//!
//! The file is read whole, changed in memory, and written back atomically
//! with its mode and owner; nothing is written when nothing changes. Lines are
//! compared byte for byte, without their `\n`; the file's last line keeps its
//! newline, or its lack of one.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use regex::bytes::{Regex, RegexBuilder};

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::diff::{Diff, Side};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};
use crate::files::{Attributes, write_file};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "line_in_file",
    args: &[
        "path", "line", "regex", "block", "marker", "state", "create",
    ],
    summary: "a line, or a block between markers, in a file (or not)",
    build,
};

/// The marker lines of a block when the step does not give them.
pub(super) const DEFAULT_MARKER: &str = "# {mark} MANAGED BY CATTLE";

/// The largest file this facility edits: it reads the whole file.
pub(super) const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Mode of a file made with `create = true`.
const NEW_FILE_MODE: u32 = 0o644;

/// Most memory a compiled `regex` may take; far beyond any line pattern.
const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let path = args.absolute_path("path")?;
    let line = args.optional_str("line")?;
    if let Some(line) = &line
        && line.contains('\n')
    {
        return Err(args
            .error("line", "argument `line` must be one line, without `\\n`")
            .with_hint("for several lines, use `block`"));
    }
    let regex_error = args.error(
        "regex",
        "argument `regex` is not a valid regular expression",
    );
    let regex = match args.optional_str("regex")? {
        None => None,
        Some(pattern) => Some(
            RegexBuilder::new(&pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|err| regex_error.with_hint(one_line(&err.to_string())))?,
        ),
    };
    let block = args.optional_str("block")?;
    let marker = args.optional_str("marker")?;
    let absent = args.optional_choice("state", &["present", "absent"])? == Some("absent");
    let create = args.optional_bool("create")?;
    if absent && create.is_some() {
        return Err(args
            .error(
                "create",
                "argument `create` has no use with `state = \"absent\"`",
            )
            .with_hint("a missing file has no line to remove; remove the argument"));
    }
    let create = create.unwrap_or(false);

    let edit = if block.is_some() || marker.is_some() {
        for key in ["line", "regex"] {
            if (key == "line" && line.is_some()) || (key == "regex" && regex.is_some()) {
                return Err(args
                    .error(
                        key,
                        format!("step `line_in_file` takes `{key}` or `block`, not both"),
                    )
                    .with_hint("`line` and `regex` edit one line; `block` and `marker` a block"));
            }
        }
        let marker_error = args.error(
            "marker",
            "argument `marker` must be one line with `{mark}` in it once",
        );
        let marker = marker.unwrap_or_else(|| DEFAULT_MARKER.to_string());
        if marker.matches("{mark}").count() != 1 || marker.contains('\n') {
            return Err(marker_error.with_hint(format!(
                "e.g. `marker = \"{DEFAULT_MARKER}\"`: `{{mark}}` becomes BEGIN, then END"
            )));
        }
        let begin = marker.replace("{mark}", "BEGIN").into_bytes();
        let end = marker.replace("{mark}", "END").into_bytes();
        match (absent, block) {
            (true, _) => Edit::NoBlock { begin, end },
            (false, None) => {
                return Err(args
                    .error("marker", "step `line_in_file` with `marker` needs `block`")
                    .with_hint("add `block = \"...\"` with the lines to put between the markers"));
            }
            (false, Some(block)) => {
                let text = block.strip_suffix('\n').unwrap_or(&block);
                let lines: Vec<Vec<u8>> = text.split('\n').map(|l| l.as_bytes().to_vec()).collect();
                if lines.iter().any(|l| *l == begin || *l == end) {
                    return Err(args
                        .error(
                            "block",
                            "argument `block` holds one of its own marker lines",
                        )
                        .with_hint("the markers are written around the block; leave them out"));
                }
                Edit::Block { begin, end, lines }
            }
        }
    } else {
        match (absent, line, regex) {
            (false, Some(line), regex) => Edit::Line {
                line: line.into_bytes(),
                regex,
            },
            (true, Some(line), None) => Edit::NoLine(line.into_bytes()),
            (true, None, Some(regex)) => Edit::NoMatch(regex),
            (true, Some(_), Some(_)) => {
                return Err(args
                    .error(
                        "line",
                        "with `state = \"absent\"`, give `line` or `regex`, not both",
                    )
                    .with_hint("`line` removes the lines equal to it, `regex` those it matches"));
            }
            (false, None, _) | (true, None, None) => {
                return Err(args
                    .error("path", "step `line_in_file` needs `line` or `block`")
                    .with_hint(
                        "add `line = \"...\"` (with `regex` to replace the lines it matches), \
                         or `block = \"...\"` for lines between markers",
                    ));
            }
        }
    };
    Ok(Box::new(LineInFile { path, edit, create }))
}

/// `text` on one line, for a hint (a regex error draws a caret under the pattern).
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug)]
enum Edit {
    /// `line` is in the file: it replaces the lines `regex` matches; with
    /// none matching, it is appended unless it is there already.
    Line { line: Vec<u8>, regex: Option<Regex> },
    /// No line equal to this one.
    NoLine(Vec<u8>),
    /// No line this matches.
    NoMatch(Regex),
    /// `lines` between the lines `begin` and `end`, appended if not there.
    Block {
        begin: Vec<u8>,
        end: Vec<u8>,
        lines: Vec<Vec<u8>>,
    },
    /// No lines `begin` to `end`.
    NoBlock { begin: Vec<u8>, end: Vec<u8> },
}

#[derive(Debug)]
struct LineInFile {
    path: PathBuf,
    edit: Edit,
    create: bool,
}

/// A file's text as lines without their `\n`, and whether its last line has one.
struct Text<'a> {
    lines: Vec<&'a [u8]>,
    newline_at_end: bool,
}

impl<'a> Text<'a> {
    fn split(content: &'a [u8]) -> Self {
        if content.is_empty() {
            // An empty file gains lines with newlines.
            return Text {
                lines: Vec::new(),
                newline_at_end: true,
            };
        }
        let newline_at_end = content.ends_with(b"\n");
        let body = if newline_at_end {
            &content[..content.len() - 1]
        } else {
            content
        };
        Text {
            lines: body.split(|b| *b == b'\n').collect(),
            newline_at_end,
        }
    }

    fn join(&self) -> Vec<u8> {
        let mut out = self.lines.join(&b'\n');
        if self.newline_at_end && !self.lines.is_empty() {
            out.push(b'\n');
        }
        out
    }
}

/// Where the block between `begin` and `end` is: the lines of both markers,
/// `None` if neither is in the file. Anything but one of each, in that
/// order, is a permanent error: the file must be fixed by hand.
fn find_block(
    path: &std::path::Path,
    lines: &[&[u8]],
    begin: &[u8],
    end: &[u8],
) -> Result<Option<(usize, usize)>, FacilityError> {
    let at = |marker: &[u8]| -> Vec<usize> {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| **l == marker)
            .map(|(i, _)| i)
            .collect()
    };
    let (begins, ends) = (at(begin), at(end));
    let shown = |m: &[u8]| String::from_utf8_lossy(m).into_owned();
    let numbers = |found: &[usize]| {
        found
            .iter()
            .map(|i| (i + 1).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (begins.as_slice(), ends.as_slice()) {
        ([], []) => Ok(None),
        ([b], [e]) if b < e => Ok(Some((*b, *e))),
        _ => Err(FacilityError::permanent(format!(
            "`{}` has its markers out of place: `{}` on line(s) {}, `{}` on line(s) {}; \
             there must be one of each, in that order (fix the file by hand)",
            path.display(),
            shown(begin),
            if begins.is_empty() {
                "none".to_string()
            } else {
                numbers(&begins)
            },
            shown(end),
            if ends.is_empty() {
                "none".to_string()
            } else {
                numbers(&ends)
            },
        ))),
    }
}

impl LineInFile {
    /// The file's contents, with its mode and owner; `None` if there is no file.
    fn read(&self) -> Result<Option<(Vec<u8>, Attributes)>, FacilityError> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.is_file() => {}
            Ok(meta) if meta.is_symlink() => {
                let target = std::fs::read_link(&self.path)
                    .map(|t| format!(" (to `{}`)", t.display()))
                    .unwrap_or_default();
                return Err(FacilityError::permanent(format!(
                    "`{}` is a symbolic link{target}; name the file itself in `path`",
                    self.path.display()
                )));
            }
            Ok(_) => {
                return Err(FacilityError::permanent(format!(
                    "`{}` is not a regular file",
                    self.path.display()
                )));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(FacilityError::io("inspect", &self.path, err)),
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(&self.path)
            .map_err(|err| FacilityError::io("read", &self.path, err))?;
        let meta = file
            .metadata()
            .map_err(|err| FacilityError::io("inspect", &self.path, err))?;
        if !meta.is_file() {
            return Err(FacilityError::new(format!(
                "`{}` changed while being read",
                self.path.display()
            )));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(FacilityError::permanent(format!(
                "`{}` is {} bytes; line_in_file edits files of up to {MAX_FILE_BYTES} bytes",
                self.path.display(),
                meta.len()
            )));
        }
        let mut content = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut content)
            .map_err(|err| FacilityError::io("read", &self.path, err))?;
        let attributes = Attributes {
            mode: meta.mode() & 0o7777,
            uid: Some(meta.uid()),
            gid: Some(meta.gid()),
        };
        Ok(Some((content, attributes)))
    }

    /// `content` as the step wants it.
    fn edited(&self, content: &[u8]) -> Result<Vec<u8>, FacilityError> {
        let mut text = Text::split(content);
        match &self.edit {
            Edit::Line { line, regex } => {
                let mut matched = false;
                if let Some(regex) = regex {
                    for l in text.lines.iter_mut() {
                        if regex.is_match(l) {
                            *l = line;
                            matched = true;
                        }
                    }
                }
                if !matched && !text.lines.contains(&line.as_slice()) {
                    text.lines.push(line);
                }
            }
            Edit::NoLine(line) => text.lines.retain(|l| l != line),
            Edit::NoMatch(regex) => text.lines.retain(|l| !regex.is_match(l)),
            Edit::Block { begin, end, lines } => {
                let new = std::iter::once(begin.as_slice())
                    .chain(lines.iter().map(Vec::as_slice))
                    .chain(std::iter::once(end.as_slice()));
                match find_block(&self.path, &text.lines, begin, end)? {
                    Some((b, e)) => {
                        text.lines.splice(b..=e, new);
                    }
                    None => text.lines.extend(new),
                }
            }
            Edit::NoBlock { begin, end } => {
                if let Some((b, e)) = find_block(&self.path, &text.lines, begin, end)? {
                    text.lines.drain(b..=e);
                }
            }
        }
        Ok(text.join())
    }

    /// Whether the step removes lines: then a missing file is in state.
    fn removes(&self) -> bool {
        matches!(
            self.edit,
            Edit::NoLine(_) | Edit::NoMatch(_) | Edit::NoBlock { .. }
        )
    }

    fn missing(&self) -> FacilityError {
        FacilityError::permanent(format!(
            "`{}` does not exist; create it in an earlier step, or set `create = true`",
            self.path.display()
        ))
    }
}

impl Facility for LineInFile {
    fn describe(&self) -> String {
        let path = self.path.display();
        let shown = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match &self.edit {
            Edit::Line { line, regex: None } => {
                format!("{path} has the line `{}`", shown(line))
            }
            Edit::Line {
                line,
                regex: Some(regex),
            } => format!(
                "{path} has the line `{}` in place of lines matching `{}`",
                shown(line),
                regex.as_str()
            ),
            Edit::NoLine(line) => format!("{path} has no line `{}`", shown(line)),
            Edit::NoMatch(regex) => format!("{path} has no line matching `{}`", regex.as_str()),
            Edit::Block { begin, .. } => format!("{path} has the block `{}`", shown(begin)),
            Edit::NoBlock { begin, .. } => format!("{path} has no block `{}`", shown(begin)),
        }
    }

    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        let Some((content, _)) = self.read()? else {
            return match (self.removes(), self.create) {
                (true, _) => Ok(Check::AlreadyDone),
                (false, true) => Ok(Check::Run),
                (false, false) => Err(self.missing()),
            };
        };
        Ok(if self.edited(&content)? == content {
            Check::AlreadyDone
        } else {
            Check::Run
        })
    }

    fn apply(&self, _ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        let (content, attributes) = match self.read()? {
            Some(found) => found,
            None if self.removes() => return Ok(Applied::Changed),
            None if self.create => (
                Vec::new(),
                Attributes {
                    mode: NEW_FILE_MODE,
                    uid: None,
                    gid: None,
                },
            ),
            None => return Err(self.missing()),
        };
        let edited = self.edited(&content)?;
        if edited != content {
            write_file(&self.path, &edited, attributes)?;
        }
        Ok(Applied::Changed)
    }

    fn diff(&self, _ctx: &mut Context<'_>) -> Result<Option<Diff>, FacilityError> {
        let (old, mode) = match self.read()? {
            Some((content, attributes)) => (Some(content), attributes.mode),
            None if self.create && !self.removes() => (None, NEW_FILE_MODE),
            None => return Ok(None),
        };
        let edited = self.edited(old.as_deref().unwrap_or_default())?;
        if old.as_ref() == Some(&edited) {
            return Ok(None);
        }
        let old = match old {
            Some(content) => (Side::of(content), Some(mode)),
            None => (Side::Absent, None),
        };
        Ok(Some(Diff::new(
            &self.path,
            old,
            (Side::of(edited), Some(mode)),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facility::Environment;
    use crate::facility::testing::{apply, check, converges, diff, is_root};
    use crate::steps::Plan;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// A step parsed from `args`, editing `path`.
    fn step(path: &Path, args: &str) -> Box<dyn Facility> {
        let steps = format!(
            "[[step]]\nfacility = \"line_in_file\"\npath = \"{}\"\n{args}\n",
            path.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Plan::parse(&steps, Path::new("cattle.toml"), dir.path()).unwrap();
        plan.steps.remove(0).facility
    }

    /// `before` edited by the step `args`, run to convergence.
    fn edit(before: &str, args: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let path = dir.path().join("f");
        std::fs::write(&path, before).unwrap();
        let f = step(&path, args);
        if check(&*f, &env).unwrap() == Check::Run {
            converges(&*f, &env, dir.path());
        }
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn a_line_is_appended_once() {
        assert_eq!(edit("a\nb\n", "line = \"c\""), "a\nb\nc\n");
        assert_eq!(edit("a\nc\nb\n", "line = \"c\""), "a\nc\nb\n");
        assert_eq!(edit("", "line = \"c\""), "c\n");
        // Whole lines, byte for byte.
        assert_eq!(edit("c \n", "line = \"c\""), "c \nc\n");
    }

    #[test]
    fn the_last_newline_or_its_lack_is_kept() {
        assert_eq!(edit("a\nb", "line = \"c\""), "a\nb\nc");
        assert_eq!(edit("a\nb", "line = \"a\"\nstate = \"absent\""), "b");
        assert_eq!(edit("a\nb", "line = \"b\"\nstate = \"absent\""), "a");
        assert_eq!(edit("a\n", "line = \"a\"\nstate = \"absent\""), "");
        assert_eq!(edit("\n", "line = \"c\""), "\nc\n");
        assert_eq!(edit("a\n\nb", "regex = '^$'\nstate = \"absent\""), "a\nb");
    }

    #[test]
    fn a_regex_replaces_every_matching_line_or_appends() {
        let args = "line = \"PermitRootLogin no\"\nregex = '^#?\\s*PermitRootLogin\\b'";
        assert_eq!(
            edit("Port 22\n#PermitRootLogin yes\nX 1\n", args),
            "Port 22\nPermitRootLogin no\nX 1\n"
        );
        assert_eq!(
            edit("PermitRootLogin yes\n# PermitRootLogin prohibit\n", args),
            "PermitRootLogin no\nPermitRootLogin no\n"
        );
        assert_eq!(edit("Port 22\n", args), "Port 22\nPermitRootLogin no\n");
        // A line the regex does not match, already there: nothing to do.
        assert_eq!(edit("x=2\n", "line = \"x=2\"\nregex = '^x=1$'"), "x=2\n");
        assert_eq!(edit("x=1\n", "line = \"x=2\"\nregex = '^x=1$'"), "x=2\n");
    }

    #[test]
    fn absent_removes_equal_or_matching_lines() {
        assert_eq!(edit("a\nb\na\n", "line = \"a\"\nstate = \"absent\""), "b\n");
        assert_eq!(
            edit("k=1\nx\nk = 2\n", "regex = '^k\\s*='\nstate = \"absent\""),
            "x\n"
        );
        assert_eq!(edit("x\n", "regex = 'y'\nstate = \"absent\""), "x\n");
    }

    #[test]
    fn a_block_goes_between_markers_and_is_replaced_there() {
        let args = "block = \"one\\ntwo\\n\"";
        let with = "a\n# BEGIN MANAGED BY CATTLE\none\ntwo\n# END MANAGED BY CATTLE\n";
        assert_eq!(edit("a\n", args), with);
        assert_eq!(
            edit(
                "a\n# BEGIN MANAGED BY CATTLE\nold\n# END MANAGED BY CATTLE\nz\n",
                args
            ),
            "a\n# BEGIN MANAGED BY CATTLE\none\ntwo\n# END MANAGED BY CATTLE\nz\n"
        );
        assert_eq!(edit(with, args), with);
        assert_eq!(
            edit(
                with,
                "state = \"absent\"\nmarker = \"# {mark} MANAGED BY CATTLE\""
            ),
            "a\n"
        );
        assert_eq!(edit(with, "state = \"absent\"\nblock = \"x\""), "a\n");
        // Another marker: another block.
        assert_eq!(
            edit(with, "block = \"k=v\"\nmarker = \"; {mark} app\""),
            format!("{with}; BEGIN app\nk=v\n; END app\n")
        );
        assert_eq!(
            edit("a", "block = \"b\""),
            "a\n# BEGIN MANAGED BY CATTLE\nb\n# END MANAGED BY CATTLE"
        );
    }

    #[test]
    fn the_diff_shows_the_lines_it_edits_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let path = dir.path().join("sshd_config");
        let text: String = (1..=9).map(|i| format!("Option{i} yes\n")).collect();
        std::fs::write(&path, text.replace("Option5 yes", "PermitRootLogin yes")).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let p = path.display();
        let headers = format!("--- {p} (on the host)\n+++ {p} (as the step leaves it)");
        let f = step(
            &path,
            "line = \"PermitRootLogin no\"\nregex = '^PermitRootLogin'",
        );
        assert_eq!(
            diff(&*f, &env, dir.path()).unwrap(),
            format!(
                "{headers}\n@@ -2,7 +2,7 @@\n Option2 yes\n Option3 yes\n Option4 yes\n\
                 -PermitRootLogin yes\n+PermitRootLogin no\n Option6 yes\n Option7 yes\n Option8 yes"
            )
        );
        let block = step(&path, "block = \"a\\nb\"\nmarker = \"# {mark} app\"");
        assert_eq!(
            diff(&*block, &env, dir.path()).unwrap(),
            format!(
                "{headers}\n@@ -7,3 +7,7 @@\n Option7 yes\n Option8 yes\n Option9 yes\n\
                 +# BEGIN app\n+a\n+b\n+# END app"
            )
        );
        // Nothing to change, or no file to remove from: nothing to show.
        assert_eq!(
            diff(&*step(&path, "line = \"Option1 yes\""), &env, dir.path()),
            None
        );
        let missing = dir.path().join("missing");
        let absent = step(&missing, "line = \"x\"\nstate = \"absent\"");
        assert_eq!(diff(&*absent, &env, dir.path()), None);
        // A file it creates.
        let m = missing.display();
        assert_eq!(
            diff(
                &*step(&missing, "line = \"x\"\ncreate = true"),
                &env,
                dir.path()
            )
            .unwrap(),
            format!(
                "--- {m} (on the host)\n+++ {m} (as the step leaves it)\nnew file, mode 0644\n\
                 @@ -0,0 +1 @@\n+x"
            )
        );
    }

    #[test]
    fn markers_out_of_place_are_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let path = dir.path().join("f");
        let f = step(&path, "block = \"x\"");
        for bad in [
            "# BEGIN MANAGED BY CATTLE\nx\n",
            "# END MANAGED BY CATTLE\n# BEGIN MANAGED BY CATTLE\n",
            "# BEGIN MANAGED BY CATTLE\n# END MANAGED BY CATTLE\n# BEGIN MANAGED BY CATTLE\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = check(&*f, &env).unwrap_err();
            assert!(err.is_permanent(), "{err}");
            assert!(err.message().contains("markers out of place"), "{err}");
            assert!(apply(&*f, &env).0.is_err());
            assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);
        }
    }

    #[test]
    fn the_mode_and_owner_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let path = dir.path().join("f");
        std::fs::write(&path, "a\n").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        if is_root() {
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        }
        let before = std::fs::metadata(&path).unwrap();
        converges(&*step(&path, "line = \"b\""), &env, dir.path());
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(after.mode(), before.mode());
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        assert_ne!(after.ino(), before.ino(), "written beside and renamed");
        assert!(!dir.path().join(".f.cattle-tmp").exists());
    }

    #[test]
    fn a_missing_file_is_an_error_unless_created_or_removing() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let path = dir.path().join("f");
        let f = step(&path, "line = \"a\"");
        let err = check(&*f, &env).unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("create = true"),
            "{err}"
        );
        assert!(apply(&*f, &env).0.is_err());

        for args in [
            "line = \"a\"\nstate = \"absent\"",
            "state = \"absent\"\nmarker = \"#{mark}\"",
        ] {
            assert_eq!(
                check(&*step(&path, args), &env).unwrap(),
                Check::AlreadyDone
            );
        }

        converges(
            &*step(&path, "line = \"a\"\ncreate = true"),
            &env,
            dir.path(),
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\n");
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o7777;
        assert_eq!(mode, NEW_FILE_MODE);
    }

    #[test]
    fn a_link_a_directory_or_a_huge_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let target = dir.path().join("target");
        std::fs::write(&target, "a\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = check(&*step(&link, "line = \"b\""), &env).unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("symbolic link"),
            "{err}"
        );
        assert!(apply(&*step(&link, "line = \"b\""), &env).0.is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "a\n");

        let err = check(&*step(dir.path(), "line = \"b\""), &env).unwrap_err();
        assert!(err.is_permanent(), "{err}");

        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let err = check(&*step(&big, "line = \"b\""), &env).unwrap_err();
        assert!(
            err.is_permanent() && err.message().contains("bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_utf8_is_edited_as_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new(dir.path());
        let path = dir.path().join("f");
        std::fs::write(&path, b"\xff\xfe\nk=1\n").unwrap();
        converges(
            &*step(&path, "line = \"k=2\"\nregex = '^k='"),
            &env,
            dir.path(),
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"\xff\xfe\nk=2\n");
    }

    fn parse_error(args: &str) -> crate::PlanError {
        let steps = format!("[[step]]\nfacility = \"line_in_file\"\npath = \"/etc/x\"\n{args}\n");
        let dir = tempfile::tempdir().unwrap();
        Plan::parse(&steps, Path::new("cattle.toml"), dir.path()).unwrap_err()
    }

    #[test]
    fn a_bad_regex_is_an_error_at_its_line_and_column() {
        let err = parse_error("line = \"x\"\nregex = \"^(unclosed\"");
        assert_eq!(
            err.message,
            "argument `regex` is not a valid regular expression"
        );
        assert_eq!(err.position, Some((5, 9)));
        assert!(err.to_string().starts_with("cattle.toml:5:9: "), "{err}");
        let hint = err.hint.unwrap();
        assert!(hint.contains("unclosed group"), "{hint}");
        assert!(!hint.contains('\n'), "{hint}");
        // Too big to compile within the limit.
        let err = parse_error("line = \"x\"\nregex = \"\\\\w{1000}{1000}\"");
        assert_eq!(
            err.message,
            "argument `regex` is not a valid regular expression"
        );
    }

    #[test]
    fn build_refuses_arguments_that_do_not_go_together() {
        for (args, message, line) in [
            ("", "step `line_in_file` needs `line` or `block`", 3),
            (
                "regex = 'x'",
                "step `line_in_file` needs `line` or `block`",
                3,
            ),
            (
                "line = \"a\\nb\"",
                "argument `line` must be one line, without `\\n`",
                4,
            ),
            (
                "line = \"a\"\nblock = \"b\"",
                "step `line_in_file` takes `line` or `block`, not both",
                4,
            ),
            (
                "block = \"b\"\nmarker = \"# managed\"",
                "argument `marker` must be one line with `{mark}` in it once",
                5,
            ),
            (
                "marker = \"# {mark}\"",
                "step `line_in_file` with `marker` needs `block`",
                4,
            ),
            (
                "block = \"x\\n# END MANAGED BY CATTLE\"",
                "argument `block` holds one of its own marker lines",
                4,
            ),
            (
                "line = \"a\"\nregex = 'a'\nstate = \"absent\"",
                "with `state = \"absent\"`, give `line` or `regex`, not both",
                4,
            ),
            (
                "line = \"a\"\nstate = \"absent\"\ncreate = true",
                "argument `create` has no use with `state = \"absent\"`",
                6,
            ),
            (
                "line = \"a\"\ncreate = \"yes\"",
                "argument `create` must be `true` or `false`, not string",
                5,
            ),
        ] {
            let err = parse_error(args);
            assert_eq!(err.message, message, "{args}");
            assert_eq!(err.position.map(|p| p.0), Some(line), "{args}");
        }
    }

    #[test]
    fn describes_what_it_keeps() {
        let path = Path::new("/etc/ssh/sshd_config");
        assert_eq!(
            step(
                path,
                "line = \"PermitRootLogin no\"\nregex = '^PermitRootLogin'"
            )
            .describe(),
            "/etc/ssh/sshd_config has the line `PermitRootLogin no` in place of lines \
             matching `^PermitRootLogin`"
        );
        assert_eq!(
            step(path, "block = \"x\"").describe(),
            "/etc/ssh/sshd_config has the block `# BEGIN MANAGED BY CATTLE`"
        );
    }
}
