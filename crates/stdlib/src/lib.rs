//! Cattle's standard library: the steps file, the idempotent facilities and the step runner.
//!
//! This crate knows nothing about stores, agents or networks. It turns a config
//! directory into a validated [`Plan`] and drives that plan to completion on the
//! machine it runs on, reporting what it does through a [`runner::Observer`].

pub mod backoff;
pub mod facilities;
pub mod facility;
pub mod runner;
pub mod secrets;
pub mod steps;

pub use backoff::Backoff;
pub use facilities::{MAX_LINE_BYTES, REBOOT_EXIT_CODE};
pub use facility::{Check, Context, Deadline, Facility, FacilityError};
pub use runner::{Event, Observer, Outcome, Start, run};
pub use secrets::Secrets;
pub use steps::{Plan, PlanError, STEPS_FILE, Step};
