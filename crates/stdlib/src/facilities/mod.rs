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
mod install_file;
mod make_dir;
mod reboot;
mod symlink;
mod systemd_restart;
mod unlink;

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
    &apt_packages::SPEC,
    &systemd_restart::SPEC,
    &reboot::SPEC,
    &command::SPEC,
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
