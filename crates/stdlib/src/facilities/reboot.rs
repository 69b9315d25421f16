//! `reboot`: the host has rebooted. Its apply asks for the reboot
//! ([`Applied::RebootNeeded`]); whoever drives the run (the agent) reboots the
//! host, and the step is `changed` once the host is back.

use super::FacilitySpec;
use crate::args::{ArgError, Args};
use crate::facility::{Applied, Check, Context, Facility, FacilityError};

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "reboot",
    args: &[],
    summary: "reboot the host; the step is done when it is back",
    build,
};

fn build(_args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    Ok(Box::new(Reboot))
}

#[derive(Debug)]
struct Reboot;

impl Facility for Reboot {
    fn describe(&self) -> String {
        "the host has rebooted".to_string()
    }

    /// Every run of the step reboots: it is the step's whole point.
    fn check(&self, _ctx: &mut Context<'_>) -> Result<Check, FacilityError> {
        Ok(Check::Run)
    }

    fn apply(&self, _ctx: &mut Context<'_>) -> Result<Applied, FacilityError> {
        Ok(Applied::RebootNeeded)
    }
}
