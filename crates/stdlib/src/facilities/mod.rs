//! The built-in facilities and the registry the steps parser looks them up in.
//!
//! Each facility lives in its own module, which exports a `SPEC`: its name,
//! the arguments it accepts, a summary and the `build` function that reads
//! those arguments from a step. The name is written there and nowhere else.

use crate::args::{ArgError, Args};
use crate::facility::Facility;

mod apt_packages;
mod chmod;
mod chown;
mod command;
mod copy_tree;
mod cron;
mod download;
mod file;
mod group;
mod hostname;
mod install_file;
mod line_in_file;
mod make_dir;
mod packages;
mod reboot;
mod symlink;
mod sysctl;
mod systemd_restart;
mod systemd_unit;
pub(crate) mod template;
mod unlink;
mod unpack;
mod user;
mod wait_for;

pub use command::REBOOT_EXIT_CODE;

/// A facility as the steps file knows it.
#[derive(Debug)]
pub struct FacilitySpec {
    pub name: &'static str,
    /// The arguments it accepts (besides the common `facility`, `attempts`,
    /// `timeout` and `sensitive`).
    pub args: &'static [&'static str],
    /// One line for help texts.
    pub summary: &'static str,
    pub build: fn(&mut Args<'_>) -> Result<Box<dyn Facility>, ArgError>,
}

/// Every built-in facility, in the order help texts list them.
pub static ALL: &[&FacilitySpec] = &[
    &make_dir::SPEC,
    &install_file::SPEC,
    &chmod::SPEC,
    &chown::SPEC,
    &symlink::SPEC,
    &unlink::SPEC,
    &file::SPEC,
    &line_in_file::SPEC,
    &template::SPEC,
    &copy_tree::SPEC,
    &unpack::SPEC,
    &cron::SPEC,
    &user::SPEC,
    &group::SPEC,
    &apt_packages::SPEC,
    &packages::SPEC,
    &systemd_unit::SPEC,
    &sysctl::SPEC,
    &hostname::SPEC,
    &systemd_restart::SPEC,
    &reboot::SPEC,
    &command::SPEC,
    &download::SPEC,
    &wait_for::SPEC,
];

/// The facility called `name`, if there is one.
pub fn lookup(name: &str) -> Option<&'static FacilitySpec> {
    ALL.iter().copied().find(|spec| spec.name == name)
}

/// The names of all facilities.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|spec| spec.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The reference, docs/facilities.md.
    const DOCS: &str = include_str!("../../../../docs/facilities.md");

    /// Each facility section of the docs (`### \`name\``): the arguments its
    /// table lists, in order, and its TOML examples.
    fn documented() -> BTreeMap<String, (Vec<String>, Vec<String>)> {
        let mut sections: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
        let mut current: Option<String> = None;
        let mut example: Option<String> = None;
        for line in DOCS.lines() {
            if let Some(text) = &mut example {
                if line == "```" {
                    let name = current.clone().expect("an example inside a section");
                    sections.get_mut(&name).unwrap().1.push(text.clone());
                    example = None;
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            } else if let Some(heading) = line.strip_prefix("### ") {
                let name = heading.trim_matches('`').to_string();
                assert!(
                    sections.insert(name.clone(), Default::default()).is_none(),
                    "`{name}` documented twice"
                );
                current = Some(name);
            } else if line.starts_with("## ") {
                current = None;
            } else if line == "```toml" && current.is_some() {
                example = Some(String::new());
            } else if let (Some(name), Some(row)) = (&current, line.strip_prefix("| `")) {
                let argument = row.split('`').next().unwrap().to_string();
                sections.get_mut(name).unwrap().0.push(argument);
            }
        }
        sections
    }

    #[test]
    fn docs_list_every_facility_and_argument() {
        let docs = documented();
        for spec in ALL {
            let Some((arguments, _)) = docs.get(spec.name) else {
                panic!("docs/facilities.md has no section for `{}`", spec.name);
            };
            assert_eq!(
                arguments, spec.args,
                "docs/facilities.md lists other arguments for `{}` than the code takes",
                spec.name
            );
        }
        for name in docs.keys() {
            assert!(
                lookup(name).is_some(),
                "docs/facilities.md documents `{name}`, which is no facility"
            );
        }
    }

    #[test]
    fn every_facility_has_an_example_in_the_docs_that_parses() {
        for (name, (_, examples)) in documented() {
            assert!(!examples.is_empty(), "`{name}` has no example");
            for example in examples {
                let dir = tempfile::tempdir().unwrap();
                // Files of the config the example names: a directory for copy_tree.
                for line in example.lines() {
                    if let Some(source) = line.strip_prefix("source = \"")
                        && let Some(source) = source.strip_suffix('"')
                        && !source.starts_with('/')
                    {
                        let path = dir.path().join(source);
                        if name == "copy_tree" {
                            std::fs::create_dir_all(path).unwrap();
                        } else {
                            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                            std::fs::write(path, "").unwrap();
                        }
                    }
                }
                let plan = crate::Plan::parse(
                    &example,
                    std::path::Path::new("docs/facilities.md"),
                    dir.path(),
                )
                .unwrap_or_else(|err| panic!("the example of `{name}` does not parse: {err}"));
                assert_eq!(plan.steps[0].name, name, "{example}");
            }
        }
    }

    #[test]
    fn names_are_unique_and_arguments_do_not_shadow_common_keys() {
        let mut seen = std::collections::BTreeSet::new();
        for spec in ALL {
            assert!(seen.insert(spec.name), "`{}` twice", spec.name);
            for arg in spec.args {
                assert!(
                    !["facility", "attempts", "timeout", "sensitive"].contains(arg),
                    "`{}` takes common key `{arg}`",
                    spec.name
                );
            }
        }
    }
}
