//! Reboot steps: ask for the reboot once, and tell after a restart whether it
//! happened.
//!
//! Two signs tell a boot from the last: the kernel's boot ID, and a token the
//! agent keeps in a file under `/run/cattle` ([`env::RUN_DIR`]), which is a
//! tmpfs that every boot starts empty. Inside a container (nspawn, LXC) the
//! kernel's boot ID is the host's and does not change when the container
//! reboots, but the container's `/run` does. The host has rebooted when either
//! sign changed. When neither can be read before the reboot, the agent could
//! not tell afterwards, so the step fails instead of rebooting.
//!
//! The host is asked once per reboot step. An agent that starts again before
//! the reboot happened waits for it, without asking again, for the step's
//! timeout; then the step fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cattle_core::env;
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::local::{self, REBOOT};
use crate::report::Report;

/// How a `reboot` step reboots the host unless [`env::REBOOT_COMMAND`] says otherwise.
const DEFAULT_REBOOT: &str = "systemctl reboot";
/// Where the kernel's boot ID is, unless [`env::BOOT_ID_FILE`] says otherwise.
const DEFAULT_BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";
/// Where the agent keeps its boot token, unless [`env::RUN_DIR`] says otherwise.
const DEFAULT_RUN_DIR: &str = "/run/cattle";
/// The boot token's file in the run directory.
const BOOT_TOKEN: &str = "boot";

/// This boot, as far as the agent can tell it from the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot {
    /// The kernel's boot ID.
    pub kernel: Option<String>,
    /// The agent's token in the run directory, a tmpfs.
    pub token: Option<String>,
}

impl Boot {
    /// This boot, and why a sign of it could not be read.
    pub fn now() -> (Boot, Vec<String>) {
        let mut problems = Vec::new();
        let boot_id = std::env::var_os(env::BOOT_ID_FILE)
            .map_or_else(|| PathBuf::from(DEFAULT_BOOT_ID_FILE), PathBuf::from);
        let kernel = match std::fs::read_to_string(&boot_id) {
            Ok(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
            Ok(_) => {
                problems.push(format!("the boot ID file `{}` is empty", boot_id.display()));
                None
            }
            Err(e) => {
                problems.push(format!(
                    "cannot read the boot ID `{}`: {e}",
                    boot_id.display()
                ));
                None
            }
        };
        let run_dir = std::env::var_os(env::RUN_DIR)
            .map_or_else(|| PathBuf::from(DEFAULT_RUN_DIR), PathBuf::from);
        let token = match boot_token(&run_dir) {
            Ok(token) => Some(token),
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        (Boot { kernel, token }, problems)
    }

    /// Whether `self` is a later boot than `before`.
    pub fn is_after(&self, before: &Boot) -> bool {
        let changed = |a: &Option<String>, b: &Option<String>| a.is_some() && a != b;
        changed(&before.kernel, &self.kernel) || changed(&before.token, &self.token)
    }

    fn describe(&self) -> String {
        match (&self.kernel, &self.token) {
            (Some(k), Some(t)) => format!("boot ID {k}, token {t}"),
            (Some(k), None) => format!("boot ID {k}"),
            (None, Some(t)) => format!("token {t}"),
            (None, None) => "unknown".to_string(),
        }
    }
}

/// The agent's token for this boot in `run_dir`: read, or made when the
/// directory is new in this boot. Only a tmpfs forgets it at a reboot.
fn boot_token(run_dir: &Path) -> Result<String, String> {
    use std::io::Write;
    let not_usable = |e: &dyn std::fmt::Display| {
        format!(
            "cannot keep a boot token in `{}` ({}): {e}",
            run_dir.display(),
            env::RUN_DIR
        )
    };
    std::fs::create_dir_all(run_dir).map_err(|e| not_usable(&e))?;
    let fs = nix::sys::statfs::statfs(run_dir).map_err(|e| not_usable(&e))?;
    if fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
        return Err(not_usable(
            &"it is not a tmpfs, so a reboot would not clear it",
        ));
    }
    let path = run_dir.join(BOOT_TOKEN);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(not_usable(&e)),
    }
    let token = uuid::Uuid::new_v4().to_string();
    // Create it only if no one else did meanwhile; then read what is there.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| not_usable(&e))?;
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .map_err(|e| not_usable(&e)),
        Err(e) => Err(not_usable(&e)),
    }
}

/// What the agent wrote when it asked for a reboot (`REBOOT` in the execution's directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Asked {
    /// The boot in which it asked.
    boot: Boot,
    /// When, RFC 3339.
    at: String,
    /// The step's timeout: how long to wait for the reboot.
    wait_secs: u64,
    command: String,
}

fn read_asked(dir: &Path) -> Option<Asked> {
    let text = std::fs::read_to_string(dir.join(REBOOT)).ok()?;
    serde_json::from_str(&text).ok().or_else(|| {
        // Agents before boot tokens wrote the kernel's boot ID alone.
        Some(Asked {
            boot: Boot {
                kernel: Some(text.trim().to_string()).filter(|k| !k.is_empty()),
                token: None,
            },
            at: cattle_core::now_rfc3339(),
            wait_secs: 3600,
            command: DEFAULT_REBOOT.to_string(),
        })
    })
}

/// Where an interrupted execution's reboot step stands.
#[derive(Debug)]
pub enum Pending {
    /// No reboot was asked for.
    None,
    /// The host rebooted: the step is done. The line is for the log.
    Done(String),
    /// Not yet, and there is still time: wait.
    Waiting,
    /// Not within the step's timeout: the step failed with this message.
    TimedOut(String),
}

/// For an interrupted run: whether a reboot it asked for has happened.
pub fn pending(dir: &Path) -> Pending {
    let Some(asked) = read_asked(dir) else {
        return Pending::None;
    };
    let (now, _) = Boot::now();
    if now.is_after(&asked.boot) {
        return Pending::Done(format!(
            "the host rebooted ({} became {}): the reboot step is done",
            asked.boot.describe(),
            now.describe()
        ));
    }
    let since = humantime::parse_rfc3339(&asked.at)
        .ok()
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .unwrap_or_default();
    let wait = Duration::from_secs(asked.wait_secs);
    if since < wait {
        return Pending::Waiting;
    }
    Pending::TimedOut(format!(
        "asked for a reboot with `{}` at {}, and the host has not rebooted within {} (still {}); \
         not asking again",
        asked.command,
        asked.at,
        humantime::format_duration(wait),
        now.describe()
    ))
}

/// The reboot this step waited for happened: forget it.
pub fn forget(dir: &Path) -> Result<(), AgentError> {
    match std::fs::remove_file(dir.join(REBOOT)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(AgentError::local(dir.join(REBOOT), e))
        }
        _ => Ok(()),
    }
}

/// Reboot the host for step `step`, whose timeout is `wait`: record this boot,
/// then run the reboot command. `Ok(Err(message))` when the step fails instead:
/// the agent could not tell a reboot afterwards, or the command failed.
pub fn request(
    dir: &Path,
    step: usize,
    wait: Duration,
    report: &mut Report,
) -> Result<Result<(), String>, AgentError> {
    let (boot, problems) = Boot::now();
    if boot.kernel.is_none() && boot.token.is_none() {
        return Ok(Err(format!(
            "step {step}: cannot tell whether the host rebooted, so it is not rebooted: {}",
            problems.join("; ")
        )));
    }
    for problem in &problems {
        report.log(&format!(
            "step {step}: {problem}; telling the reboot by the other sign"
        ))?;
    }
    let command = std::env::var(env::REBOOT_COMMAND).unwrap_or_else(|_| DEFAULT_REBOOT.to_string());
    let asked = Asked {
        boot: boot.clone(),
        at: cattle_core::now_rfc3339(),
        wait_secs: wait.as_secs().max(1),
        command: command.clone(),
    };
    let record = serde_json::to_vec_pretty(&asked).expect("records serialize");
    local::write_atomic(dir, REBOOT, &record)
        .map_err(|e| AgentError::local(dir.join(REBOOT), e))?;
    report.log(&format!(
        "step {step}: rebooting the host with `{command}` ({}); waiting up to {} for it",
        boot.describe(),
        humantime::format_duration(Duration::from_secs(asked.wait_secs))
    ))?;
    let failed = match std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .stdin(std::process::Stdio::null())
        .status()
    {
        Ok(status) if status.success() => return Ok(Ok(())),
        Ok(status) => format!("`{command}` failed ({status})"),
        Err(e) => format!("cannot run `{command}`: {e}"),
    };
    forget(dir)?;
    Ok(Err(format!(
        "step {step}: {failed}; the host was not rebooted"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(kernel: Option<&str>, token: Option<&str>) -> Boot {
        Boot {
            kernel: kernel.map(str::to_string),
            token: token.map(str::to_string),
        }
    }

    #[test]
    fn either_sign_that_changed_tells_a_reboot() {
        let cases = [
            // (before, now, rebooted)
            (
                boot(Some("k1"), Some("t1")),
                boot(Some("k1"), Some("t1")),
                false,
            ),
            (
                boot(Some("k1"), Some("t1")),
                boot(Some("k2"), Some("t1")),
                true,
            ),
            // A container: the kernel's boot ID stays, its /run does not.
            (
                boot(Some("k1"), Some("t1")),
                boot(Some("k1"), Some("t2")),
                true,
            ),
            // No boot ID at all: the token alone tells.
            (boot(None, Some("t1")), boot(None, Some("t1")), false),
            (boot(None, Some("t1")), boot(None, Some("t2")), true),
            // No token (run dir not a tmpfs): the boot ID alone tells.
            (boot(Some("k1"), None), boot(Some("k1"), None), false),
            (boot(Some("k1"), None), boot(Some("k2"), Some("t9")), true),
            // A sign unreadable now that was there before: changed.
            (boot(Some("k1"), None), boot(None, Some("t1")), true),
            // Nothing known before: nothing can tell (the step is refused before asking).
            (boot(None, None), boot(Some("k2"), Some("t2")), false),
        ];
        for (before, now, rebooted) in cases {
            assert_eq!(now.is_after(&before), rebooted, "{before:?} -> {now:?}");
        }
    }

    #[test]
    fn the_boot_token_lives_only_on_a_tmpfs() {
        let dir = tempfile::tempdir().unwrap();
        let err = boot_token(dir.path()).unwrap_err();
        assert!(err.contains("it is not a tmpfs"), "{err}");
        // /dev/shm is a tmpfs on Linux; the token stays the same within a boot.
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let first = boot_token(shm.path()).unwrap();
        assert_eq!(boot_token(shm.path()).unwrap(), first);
    }
}
