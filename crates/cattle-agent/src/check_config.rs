//! `cattle-agent check-config`: is this host's agent set up to work?
//!
//! It prints the effective settings with their origins (secrets redacted),
//! then checks what the agent needs before its first poll: the trusted keys
//! load, the state directory is usable, the store opens (a CA bundle that
//! cannot be used shows here), and the host's inbox can be read, which is a
//! signed request: it proves the bucket exists, the credentials work and this
//! machine's clock is within the store's limit, or the store's error says
//! which of these is wrong. Then the store's self-test, as the agent runs it
//! before its first poll, on the host's own `hosts/<host>/selftest/` (whose
//! probe it deletes): a pass is recorded in the state directory when that
//! exists, so that the agent does not check again. Nothing else is written.

use std::fmt::Write as _;

use cattle_core::keys;
use cattle_core::signing::TrustedKeys;
use cattle_core::store::check::{Probe, check_at};
use cattle_core::store::{Store, StoreError};
use cattle_core::wire::{GroupInbox, MAX_DOCUMENT_BYTES};

use crate::settings::Settings;

/// What `check-config` found: the text to print and whether all is well.
#[derive(Debug)]
pub struct Report {
    pub text: String,
    pub ok: bool,
}

impl Report {
    fn pass(&mut self, what: &str) {
        let _ = writeln!(self.text, "ok      {what}");
    }

    /// Works, but should not be so in production.
    fn warn(&mut self, what: &str) {
        let _ = writeln!(self.text, "WARNING {what}");
    }

    fn fail(&mut self, what: &str, hint: Option<String>) {
        self.ok = false;
        let _ = writeln!(self.text, "FAILED  {what}");
        if let Some(hint) = hint {
            let _ = writeln!(self.text, "        hint: {hint}");
        }
    }

    fn store_fail(&mut self, what: &str, err: &StoreError) {
        self.fail(&format!("{what}: {err}"), err.hint());
    }
}

/// Check `settings` and, unless `offline`, the store they point at; see the
/// module's documentation.
pub async fn check(settings: &Settings, offline: bool) -> Report {
    let mut report = Report {
        text: String::new(),
        ok: true,
    };
    report
        .text
        .push_str("# cattle-agent settings (secrets redacted), each with where it came from\n");
    report.text.push_str(&settings.describe());
    report.text.push('\n');

    match TrustedKeys::load(&settings.trusted_keys.value) {
        Ok(keys) if keys.is_empty() && !settings.allow_unsigned.value => report.fail(
            "no trusted keys: this agent would run nothing",
            Some(
                "give the publisher's public key (made by `cattle keygen`) with `trusted_keys` \
                 in the config file, CATTLE_TRUSTED_KEYS or `--trusted-keys`"
                    .to_string(),
            ),
        ),
        Ok(keys) => {
            for key in keys.keys() {
                report.pass(&format!("trusted key {} ({})", key.id(), key.comment()));
            }
            if settings.allow_unsigned.value {
                report.warn(
                    "unsigned executions allowed (allow_unsigned): anyone who can write to the \
                     store can run anything on this host; never in production",
                );
            }
        }
        Err(e) => report.fail(&format!("trusted keys: {e:#}"), None),
    }

    let state_dir = &settings.state_dir.value;
    match std::fs::metadata(state_dir) {
        Ok(m) if m.is_dir() => {
            report.pass(&format!("state directory `{}` exists", state_dir.display()))
        }
        Ok(_) => report.fail(
            &format!(
                "state directory `{}` is not a directory",
                state_dir.display()
            ),
            None,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.pass(&format!(
            "state directory `{}` does not exist yet; the agent creates it",
            state_dir.display()
        )),
        Err(e) => report.fail(
            &format!("state directory `{}`: {e}", state_dir.display()),
            None,
        ),
    }

    if offline {
        report.text.push_str(if report.ok {
            "\nthe settings are complete (the store was not contacted: --offline)\n"
        } else {
            "\nsome checks failed (above)\n"
        });
        return report;
    }
    let store = match Store::open_with(&settings.store.value, settings.s3_options()).await {
        Ok(store) => store,
        Err(e) => {
            report.store_fail("cannot open the store", &e);
            return finish(report);
        }
    };
    let host = &settings.host_id.value;
    let group = keys::inbox_group(host);
    let key = keys::group_inbox(&group);
    let location = store.location(&key);
    match store.get(&key, MAX_DOCUMENT_BYTES).await {
        Ok(None) => {
            report.pass(&format!(
                "store answers{}: inbox `{location}` of the host's group is absent (nothing \
                 published to its group's hosts yet)",
                signed_request(&store),
            ));
        }
        Ok(Some(object)) => match serde_json::from_slice::<GroupInbox>(&object.bytes) {
            Ok(inbox) if inbox.group == group => report.pass(&format!(
                "store answers{}: inbox `{location}` lists {} for host `{host}`",
                signed_request(&store),
                cattle_core::count(inbox.executions_of(host).count() as u64, "execution")
            )),
            Ok(_) => report.fail(
                &format!("inbox `{location}` says it is the inbox of another group"),
                None,
            ),
            Err(e) => report.fail(
                &format!("inbox `{location}` is not a valid inbox document: {e}"),
                None,
            ),
        },
        Err(e @ StoreError::AccessDenied { .. }) => report.fail(
            &format!("cannot read the host's inbox: {e}"),
            Some(format!(
                "{}; a host's own user that may not list the bucket is also denied an inbox \
                 that does not exist yet: publish to this host once, then check again",
                e.hint().unwrap_or_default()
            )),
        ),
        Err(e) => report.store_fail("cannot read the host's inbox", &e),
    }
    self_test(&mut report, &store, settings).await;
    finish(report)
}

/// The store's self-test, on the host's own location; a pass is recorded
/// for the agent when the state directory exists.
async fn self_test(report: &mut Report, store: &Store, settings: &Settings) {
    let host = &settings.host_id.value;
    let found = match check_at(store, Probe::Host(host)).await {
        Ok(found) => found,
        Err(e) => {
            return report.store_fail(
                &format!("cannot run the store's self-test (under `hosts/{host}/selftest/`)"),
                &e,
            );
        }
    };
    if !found.passed() {
        for failure in found.failure_lines() {
            report.fail(&format!("store self-test: {failure}"), None);
        }
        let _ = writeln!(
            report.text,
            "        hint: the agent refuses to poll this store (exit status 78); `cattle store \
             check` shows every check (docs/reliability.md)"
        );
        return;
    }
    report.pass(&format!(
        "store self-test: {} held (create-only and compare-and-swap writes, conditional reads, \
         listings, deletes)",
        cattle_core::count(found.findings.len() as u64, "check")
    ));
    let state_dir = &settings.state_dir.value;
    if state_dir.is_dir() {
        match crate::store_check::record(state_dir, store) {
            Ok(()) => report.pass(&format!(
                "recorded the pass in `{}`: the agent does not check again",
                state_dir.join(crate::store_check::STORE_CHECK).display()
            )),
            Err(e) => report.warn(&format!(
                "{e}: the agent checks the store again when it starts"
            )),
        }
    }
}

/// What a successful read proves, for an S3 store.
fn signed_request(store: &Store) -> &'static str {
    match store {
        Store::S3(_) => " (bucket exists, credentials accepted, clock within the store's limit)",
        Store::File(_) => "",
    }
}

fn finish(mut report: Report) -> Report {
    report.text.push_str(if report.ok {
        "\nthe settings are complete and the store answers\n"
    } else {
        "\nsome checks failed (above)\n"
    });
    report
}
