//! Reboot steps: ask for the reboot, and tell after a restart whether it happened.

use std::path::Path;

use cattle_core::env;

use crate::AgentError;
use crate::local::{self, REBOOT};
use crate::report::Report;

/// How a `reboot` step reboots the host unless [`env::REBOOT_COMMAND`] says otherwise.
const DEFAULT_REBOOT: &str = "systemctl reboot";

/// This boot's ID: a different one means the host has rebooted.
fn boot_id() -> String {
    let path = std::env::var(env::BOOT_ID_FILE)
        .unwrap_or_else(|_| "/proc/sys/kernel/random/boot_id".to_string());
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// For an interrupted run whose step `step` asked for a reboot: whether the
/// host has rebooted since (the step is then done, and the record removed).
pub fn completed(dir: &Path, step: usize, report: &mut Report) -> Result<bool, AgentError> {
    let Ok(before) = std::fs::read_to_string(dir.join(REBOOT)) else {
        return Ok(false);
    };
    let now = boot_id();
    if before.trim() != now {
        report.log(&format!(
            "the host rebooted (boot ID {} became {now}): step {step} is done",
            before.trim()
        ))?;
        std::fs::remove_file(dir.join(REBOOT))
            .map_err(|e| AgentError::local(dir.join(REBOOT), e))?;
        Ok(true)
    } else {
        report.log(&format!(
            "the reboot asked for at step {step} has not happened yet; asking again"
        ))?;
        Ok(false)
    }
}

/// Record the boot ID and reboot the host for step `step`.
pub fn request(dir: &Path, step: usize, report: &mut Report) -> Result<(), AgentError> {
    let boot = boot_id();
    local::write_atomic(dir, REBOOT, boot.as_bytes())
        .map_err(|e| AgentError::local(dir.join(REBOOT), e))?;
    let command = std::env::var(env::REBOOT_COMMAND).unwrap_or_else(|_| DEFAULT_REBOOT.to_string());
    report.log(&format!(
        "step {step}: rebooting the host with `{command}` (boot ID {boot})"
    ))?;
    match std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => report.log(&format!(
            "`{command}` failed ({status}); the next start of the agent asks again"
        ))?,
        Err(e) => report.log(&format!(
            "cannot run `{command}`: {e}; the next start of the agent asks again"
        ))?,
    }
    Ok(())
}
