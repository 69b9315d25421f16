//! The built-in facilities and the registry the steps parser looks them up in.
//!
//! Each facility lives in its own module with a `build` function that reads its
//! arguments from a step and an `ARGS` list of the arguments it accepts.

use crate::facility::Facility;
use crate::steps::{ArgError, Args};

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

pub use command::{MAX_LINE_BYTES, REBOOT_EXIT_CODE};

/// A facility as the steps file knows it.
#[derive(Debug)]
pub struct FacilitySpec {
    pub name: &'static str,
    /// The arguments it accepts (besides the common `facility` and `attempts`).
    pub args: &'static [&'static str],
    /// One line for help texts.
    pub summary: &'static str,
    pub build: fn(&mut Args<'_>) -> Result<Box<dyn Facility>, ArgError>,
}

/// Every built-in facility, in the order help texts list them.
pub static ALL: &[FacilitySpec] = &[
    FacilitySpec {
        name: "make_dir",
        args: make_dir::ARGS,
        summary: "create a directory and its parents",
        build: make_dir::build,
    },
    FacilitySpec {
        name: "install_file",
        args: install_file::ARGS,
        summary: "copy a file from the config to the host; skipped when identical",
        build: install_file::build,
    },
    FacilitySpec {
        name: "chmod",
        args: chmod::ARGS,
        summary: "set a path's permission bits",
        build: chmod::build,
    },
    FacilitySpec {
        name: "chown",
        args: chown::ARGS,
        summary: "set a path's owner and/or group",
        build: chown::build,
    },
    FacilitySpec {
        name: "symlink",
        args: symlink::ARGS,
        summary: "make `dest` a symbolic link to `source`",
        build: symlink::build,
    },
    FacilitySpec {
        name: "unlink",
        args: unlink::ARGS,
        summary: "remove a file or symbolic link; missing is fine",
        build: unlink::build,
    },
    FacilitySpec {
        name: "apt_packages",
        args: apt_packages::ARGS,
        summary: "install Debian packages; skipped when all are installed",
        build: apt_packages::build,
    },
    FacilitySpec {
        name: "systemd_restart",
        args: systemd_restart::ARGS,
        summary: "unmask and restart a systemd service",
        build: systemd_restart::build,
    },
    FacilitySpec {
        name: "reboot",
        args: reboot::ARGS,
        summary: "reboot the host; the step is done when it is back",
        build: reboot::build,
    },
    FacilitySpec {
        name: "command",
        args: command::ARGS,
        summary: "run a program; `creates` and `unless` guard it",
        build: command::build,
    },
];

/// The facility called `name`, if there is one.
pub fn lookup(name: &str) -> Option<&'static FacilitySpec> {
    ALL.iter().find(|spec| spec.name == name)
}

/// The names of all facilities.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|spec| spec.name).collect()
}
