//! `reboot`: the host has rebooted. The agent carries it out (see
//! [`crate::Facility::reboots`]); the step is done when the host is back.

use crate::facility::{Check, Context, Facility, FacilityError};
use crate::steps::{ArgError, Args};

pub(crate) const ARGS: &[&str] = &[];

pub(crate) fn build(_args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    Ok(Box::new(Reboot))
}

#[derive(Debug)]
struct Reboot;

impl Facility for Reboot {
    fn name(&self) -> &'static str {
        "reboot"
    }

    fn describe(&self) -> String {
        "the host has rebooted".to_string()
    }

    fn reboots(&self) -> bool {
        true
    }

    fn check(&self, _ctx: &Context) -> Result<Check, FacilityError> {
        Ok(Check::Run)
    }

    fn apply(&self, _ctx: &Context, _output: &mut dyn FnMut(&str)) -> Result<(), FacilityError> {
        Err(FacilityError::new(
            "a `reboot` step is carried out by whoever runs the plan, not applied",
        ))
    }
}
