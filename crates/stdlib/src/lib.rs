//! Cattle's standard library: the steps file, the idempotent facilities and the step runner.
//!
//! This crate knows nothing about stores, agents or networks. It turns a config
//! directory into a validated [`Plan`] and drives that plan to completion on the
//! machine it runs on, reporting what it does through a [`runner::Observer`].
//!
//! Facilities share the contract in [`facility`], read their arguments through
//! [`args`], and use the helpers in [`process`] (programs), [`files`] (atomic
//! replacement), [`accounts`] (users and groups) and [`diff`] (what a step
//! would change in a file, for check mode and `--diff`). Besides the built-ins in
//! [`facilities`], a config may ship its own facilities as programs in any
//! language: [`custom`].

pub mod accounts;
pub mod args;
pub mod backoff;
pub mod custom;
pub mod diff;
pub mod facilities;
pub mod facility;
pub mod files;
pub mod http;
pub mod process;
pub mod runner;
pub mod secrets;
pub mod steps;
pub mod tree;
pub mod vars;

pub use backoff::Backoff;
pub use diff::Diff;
pub use facilities::REBOOT_EXIT_CODE;
pub use facility::{
    Applied, Check, Context, Deadline, Environment, Facility, FacilityError, Retry,
};
pub use process::{MAX_LINE_BYTES, Program, Ran};
pub use runner::{Event, Observer, Outcome, Recap, Start, StepResult, run};
pub use secrets::Secrets;
pub use steps::{Config, Plan, PlanError, STEPS_FILE, Step};
pub use vars::Vars;
