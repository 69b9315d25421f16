//! Man pages and shell completions for `cattle` and `cattle-agent`, made from
//! the clap definitions the binaries themselves parse with
//! ([`cattle_publish::cli::Cli`], [`cattle_agent::cli::Args`]).
//!
//! Why a separate program rather than a `build.rs` or a hidden subcommand:
//! a build script cannot import the binaries' own crates (it would have to
//! copy the definitions, which is how pages drift), and a hidden subcommand
//! would put a writer of files into the agent that runs as root on every
//! host. `scripts/build-deb.sh` runs `cattle-docgen` after the release build
//! and packs what it writes.
//!
//! The layout under the output directory keeps each program's files apart,
//! so that each Debian package can take its own with one glob, and names
//! completions as each shell's completion directory expects them:
//!
//! ```text
//! man/cattle/cattle.1, cattle-publish.1, …, cattle-config-show.1
//! man/cattle-agent/cattle-agent.1, cattle-agent-check-config.1
//! completions/bash/cattle, completions/bash/cattle-agent
//! completions/zsh/_cattle, completions/zsh/_cattle-agent
//! completions/fish/cattle.fish, completions/fish/cattle-agent.fish
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::{Generator, Shell};
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

/// The programs documented: `cattle` and `cattle-agent`, as clap sees them.
pub fn programs() -> [clap::Command; 2] {
    [
        cattle_publish::cli::Cli::command(),
        cattle_agent::cli::Args::command(),
    ]
}

/// The shells completions are written for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Where the completion of `shell` for program `name` goes under the output
/// directory: `completions/bash/NAME`, `completions/zsh/_NAME`,
/// `completions/fish/NAME.fish`, the names bash-completion, zsh's `fpath`
/// and fish look up.
pub fn completion_path(out: &Path, shell: Shell, name: &str) -> PathBuf {
    let file = match shell {
        // bash-completion loads `NAME` (Debian's convention) as well as `NAME.bash`.
        Shell::Bash => name.to_string(),
        _ => shell.file_name(name),
    };
    out.join("completions").join(shell.to_string()).join(file)
}

/// Writes every man page and completion of every program under `out`;
/// returns the files written, in order. `date` (`YYYY-MM-DD`) is the date
/// each page shows.
pub fn generate(out: &Path, date: &str) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for program in programs() {
        let name = program.get_name().to_string();
        written.extend(man_pages(
            program.clone(),
            date,
            &out.join("man").join(&name),
        )?);
        for shell in SHELLS {
            let path = completion_path(out, shell, &name);
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut program.clone(), &name, &mut text);
            write_file(&path, &text)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Writes `PROGRAM.1` and one page per subcommand, nested ones too
/// (`cattle-config-show.1`), into `dir`. clap's own `help` subcommand gets
/// none: it only prints what the pages say.
fn man_pages(program: clap::Command, date: &str, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut program = program.disable_help_subcommand(true);
    // Building propagates the global options (`--store`, …) into every
    // subcommand, so each page lists all the options its command takes, and
    // names subcommands `cattle-publish`, their usage `cattle publish`.
    program.build();
    // Every page says which program and version it documents (clap_mangen
    // would name a subcommand's page after the subcommand alone).
    let source = format!(
        "{} {}",
        program.get_name(),
        program.get_version().unwrap_or_default()
    );
    let header = Header {
        date,
        source: &source,
    };
    let mut written = Vec::new();
    page(&program, &program, None, &header, dir, &mut written)?;
    Ok(written)
}

/// What the first line of every page of a program says besides its name.
struct Header<'a> {
    /// The date shown. It must not be empty: `.TH` would then take the
    /// source for the date and the manual for the source.
    date: &'a str,
    /// The program and its version.
    source: &'a str,
}

/// Writes the page of `command` (a subcommand of `parent`, if any) into
/// `dir`, then those of its subcommands.
fn page(
    program: &clap::Command,
    command: &clap::Command,
    parent: Option<&str>,
    header: &Header,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let name = command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_string();
    let man = Man::new(command.clone())
        .date(header.date)
        .source(header.source)
        .manual("Cattle");
    let mut text = Vec::new();
    man.render(&mut text)?;
    // Each rendering starts with the same two lines of definitions; the page
    // needs them once.
    let preamble = Roff::default().render();
    let extra = see_also(program, &name, parent).render();
    text.extend_from_slice(extra.strip_prefix(&preamble).unwrap_or(&extra).as_bytes());
    let path = dir.join(man.get_filename());
    write_file(&path, ascii(&String::from_utf8_lossy(&text)).as_bytes())?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(program, sub, Some(&name), header, dir, written)?;
    }
    Ok(())
}

/// SEE ALSO: the parent command's page; for a program's main page, the
/// other program's and the documentation its Debian package installs.
fn see_also(program: &clap::Command, name: &str, parent: Option<&str>) -> Roff {
    let mut roff = Roff::default();
    roff.control("SH", ["SEE ALSO"]);
    if let Some(parent) = parent {
        roff.text([bold(parent), roman("(1)")]);
        return roff;
    }
    let mut others = Vec::new();
    for other in programs().iter().map(|p| p.get_name().to_string()) {
        if other != name {
            if !others.is_empty() {
                others.push(roman(", "));
            }
            others.extend([bold(other), roman("(1)")]);
        }
    }
    roff.text(others);
    roff.control("PP", []);
    // Each package is named after its program.
    let package = program.get_name();
    roff.text([roman(format!(
        "The README and docs/ of Cattle, which the {package} package installs in \
         /usr/share/doc/{package}/."
    ))]);
    roff
}

/// `roff` with every character beyond ASCII (the help's `…`) written as
/// groff's `\[uXXXX]`: man-db converts UTF-8 pages before formatting them,
/// but not every formatter is run that way, and ASCII reads the same in all.
fn ascii(roff: &str) -> String {
    let mut out = String::with_capacity(roff.len());
    for c in roff.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out
}

/// Writes `bytes` to `path`, making its directory; errors name the file.
fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let write = || {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut file = fs::File::create(path)?;
        file.write_all(bytes)?;
        file.flush()
    };
    write().map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::process::Command;

    use super::*;

    const DATE: &str = "2024-05-06";

    /// Everything generated, into a fresh directory.
    fn generated() -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let written = generate(dir.path(), DATE).unwrap();
        (dir, written)
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The commands a program's pages must cover, read from its definition
    /// as the binary sees it (not built: no `help` subcommand), each with the
    /// page it needs and the long options it takes, the program's global ones
    /// included.
    fn expected_pages(program: &clap::Command) -> Vec<(String, BTreeSet<String>)> {
        fn walk(
            command: &clap::Command,
            page: String,
            global: &BTreeSet<String>,
            out: &mut Vec<(String, BTreeSet<String>)>,
        ) {
            let mut global = global.clone();
            global.extend(
                command
                    .get_arguments()
                    .filter(|a| a.is_global_set())
                    .filter_map(|a| a.get_long().map(str::to_string)),
            );
            let mut longs: BTreeSet<String> = command
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect();
            longs.extend(global.iter().cloned());
            out.push((format!("{page}.1"), longs));
            for sub in command.get_subcommands() {
                walk(sub, format!("{page}-{}", sub.get_name()), &global, out);
            }
        }
        let mut out = Vec::new();
        walk(
            program,
            program.get_name().to_string(),
            &BTreeSet::new(),
            &mut out,
        );
        out
    }

    /// The option sections of a page: OPTIONS, and those of the option
    /// groups (`STORE OPTIONS (EVERY COMMAND)`, …), one after the other.
    fn options_section(page: &str) -> String {
        assert!(page.contains(".SH OPTIONS\n"), "an OPTIONS section");
        page.split("\n.SH ")
            .filter(|section| {
                section
                    .lines()
                    .next()
                    .is_some_and(|h| h.contains("OPTIONS"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_command_has_a_page_listing_every_option_it_takes() {
        let (dir, _) = generated();
        for program in programs() {
            let name = program.get_name().to_string();
            let pages_dir = dir.path().join("man").join(&name);
            let expected = expected_pages(&program);
            assert!(expected.len() >= 2, "{name} has subcommands: {expected:?}");
            for (page, longs) in &expected {
                let text = read(&pages_dir.join(page));
                let options = options_section(&text);
                for long in longs {
                    let option = format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-"));
                    assert!(
                        options.contains(&option),
                        "{page} lacks `--{long}` in its OPTIONS:\n{options}"
                    );
                }
            }
            // Those pages and no others: no page for clap's `help` subcommand.
            let found: BTreeSet<String> = fs::read_dir(&pages_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            let wanted: BTreeSet<String> = expected.into_iter().map(|(page, _)| page).collect();
            assert_eq!(found, wanted, "pages of {name}");
        }
    }

    #[test]
    fn the_pages_name_what_an_operator_looks_for() {
        let (dir, _) = generated();
        let man = dir.path().join("man");
        let publish = read(&man.join("cattle/cattle-publish.1"));
        assert!(publish.contains("\\fB\\-\\-hosts\\fR"), "{publish}");
        // A global option, given before or after the subcommand.
        assert!(
            options_section(&publish).contains("\\fB\\-\\-store\\fR"),
            "{publish}"
        );
        assert!(
            publish.contains("\\fBcattle publish\\fR"),
            "usage: {publish}"
        );
        assert!(man.join("cattle/cattle-config-show.1").is_file());
        let agent = read(&man.join("cattle-agent/cattle-agent.1"));
        for option in ["trusted\\-keys", "require\\-store", "once"] {
            assert!(
                agent.contains(&format!("\\fB\\-\\-{option}\\fR")),
                "{agent}"
            );
        }
        assert!(
            agent.contains("cattle\\-agent\\-check\\-config(1)"),
            "{agent}"
        );
        let check = read(&man.join("cattle-agent/cattle-agent-check-config.1"));
        assert!(check.contains("\\fB\\-\\-offline\\fR"), "{check}");
        assert!(
            check.contains(".SH \"SEE ALSO\"\n\\fBcattle\\-agent\\fR(1)"),
            "{check}"
        );
    }

    #[test]
    fn every_page_is_ascii_and_says_its_program_version_and_date() {
        let (dir, written) = generated();
        let pages: Vec<_> = written
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "1"))
            .collect();
        let commands: usize = programs().iter().map(|p| expected_pages(p).len()).sum();
        assert_eq!(pages.len(), commands, "{pages:?}");
        let version = env!("CARGO_PKG_VERSION");
        for page in pages {
            let text = read(page);
            assert!(text.is_ascii(), "{}: {text}", page.display());
            let program = if page.parent().unwrap().ends_with("cattle-agent") {
                "cattle-agent"
            } else {
                "cattle"
            };
            let title = page.file_stem().unwrap().to_str().unwrap();
            let th = format!(".TH {title} 1 {DATE} \"{program} {version}\" Cattle\n");
            assert!(
                text.contains(&th),
                "{}: no {th:?} in\n{text}",
                page.display()
            );
            assert_eq!(text.matches(".ds Aq").count(), 2, "{}", page.display());
        }
        // The credentials option's `…`, as groff reads it anywhere.
        let cattle = read(&dir.path().join("man/cattle/cattle.1"));
        assert!(cattle.contains("\"\\[u2026]\""), "{cattle}");
    }

    /// What bash offers for `words` (the last one being completed) with the
    /// completion `script` loaded, as an interactive shell would ask for it.
    fn bash_completes(script: &Path, words: &[&str]) -> BTreeSet<String> {
        let program = words[0];
        let words_array: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let cword = words.len() - 1;
        let current = words[cword];
        let previous = words[cword - 1];
        let shell = format!(
            "source '{}'\n\
             function=$(complete -p {program} | sed -n 's/.* -F \\([^ ]*\\) .*/\\1/p')\n\
             [ -n \"$function\" ] || exit 3\n\
             COMP_WORDS=({})\n\
             COMP_CWORD={cword}\n\
             \"$function\" {program} '{current}' '{previous}'\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            words_array.join(" "),
        );
        let out = Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "bash: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn bash_completes_every_subcommand_and_their_options() {
        let (dir, _) = generated();
        for program in programs() {
            let name = program.get_name().to_string();
            let script = completion_path(dir.path(), Shell::Bash, &name);
            assert_eq!(script.file_name().unwrap().to_str(), Some(name.as_str()));
            let offered = bash_completes(&script, &[&name, ""]);
            let subcommands: Vec<&str> = program.get_subcommands().map(|s| s.get_name()).collect();
            assert!(!subcommands.is_empty(), "{name}");
            for sub in subcommands {
                assert!(offered.contains(sub), "{name}: {sub} not in {offered:?}");
            }
        }
        let cattle = completion_path(dir.path(), Shell::Bash, "cattle");
        let offered = bash_completes(&cattle, &["cattle", "publish", "--ho"]);
        assert_eq!(
            offered,
            BTreeSet::from(["--hosts".to_string(), "--host".to_string()])
        );
        let agent = completion_path(dir.path(), Shell::Bash, "cattle-agent");
        let offered = bash_completes(&agent, &["cattle-agent", "--tru"]);
        assert_eq!(offered, BTreeSet::from(["--trusted-keys".to_string()]));
    }

    #[test]
    fn zsh_and_fish_completions_name_every_subcommand() {
        let (dir, _) = generated();
        for program in programs() {
            let name = program.get_name().to_string();
            let zsh = read(&dir.path().join(format!("completions/zsh/_{name}")));
            assert!(zsh.starts_with(&format!("#compdef {name}\n")), "{zsh}");
            let fish = read(&dir.path().join(format!("completions/fish/{name}.fish")));
            for sub in program.get_subcommands().map(|s| s.get_name()) {
                assert!(zsh.contains(&format!("'{sub}:")), "zsh {name}: {sub}");
                assert!(
                    fish.contains(&format!(
                        "complete -c {name} -n \"__fish_{}_needs_command\" -f -a \"{sub}\"",
                        name.replace('-', "_")
                    )),
                    "fish {name}: {sub}\n{fish}"
                );
            }
        }
    }

    #[test]
    fn the_programs_go_by_their_command_names() {
        let version = env!("CARGO_PKG_VERSION");
        let [cattle, agent] = programs();
        assert_eq!(cattle.render_version(), format!("cattle {version}\n"));
        assert_eq!(agent.render_version(), format!("cattle-agent {version}\n"));
    }
}
