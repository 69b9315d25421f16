//! The agent's own log (standard error; the journal under systemd): what it
//! does at `info`, Cattle's detail at `debug`, and the libraries under it
//! (the AWS SDK, hyper, rustls) only at `warn` unless asked for by name.
//!
//! `CATTLE_LOG` is a level (`info`, `debug`, …), which applies to Cattle's
//! own crates, or a list of `target=level` directives with an optional
//! default level first (`debug,aws_smithy_runtime=debug`), which is used as
//! it is.
//!
//! Under systemd (its journal is standard error: `JOURNAL_STREAM` is set),
//! each line starts with its syslog priority (`<3>` for errors, `<4>`
//! warnings, `<6>` information, `<7>` detail) instead of a timestamp, which
//! the journal adds itself: `journalctl -p warning -u cattle-agent` then shows
//! warnings and errors only.

use std::fmt;

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Set by systemd when a service's standard output or error is the journal.
const JOURNAL_STREAM: &str = "JOURNAL_STREAM";

/// Changes the filter [`init`] set up, e.g. when the settings are reloaded.
#[derive(Debug, Clone)]
pub struct FilterHandle(tracing_subscriber::reload::Handle<Targets, tracing_subscriber::Registry>);

impl FilterHandle {
    /// Log through `filter` from now on.
    pub fn set(&self, filter: Targets) {
        // Fails only if the subscriber is gone, when there is nothing to filter.
        let _ = self.0.reload(filter);
    }
}

/// Log to standard error through `filter`: with syslog priorities and no
/// timestamps under systemd, with timestamps otherwise; never with colours
/// (the journal shows escape codes as text).
pub fn init(filter: Targets) -> FilterHandle {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let journal = std::env::var_os(JOURNAL_STREAM).is_some();
    let plain = tracing_subscriber::fmt::format().with_ansi(false);
    let journald = (journal).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(Priority(plain.clone().without_time()))
    });
    let terminal = (!journal).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(plain)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(terminal)
        .init();
    FilterHandle(handle)
}

/// What to put in front of a line the agent writes to standard error itself
/// (its last words, before the log is set up or after it ends) for it to
/// have `priority` in the journal: `<3>` for an error; nothing when standard
/// error is not the journal.
pub fn journal_prefix(priority: u8) -> String {
    if std::env::var_os(JOURNAL_STREAM).is_some() {
        format!("<{priority}>")
    } else {
        String::new()
    }
}

/// Syslog's priority of errors, for [`journal_prefix`].
pub const ERR: u8 = 3;
/// Syslog's priority of warnings, for [`journal_prefix`].
pub const WARNING: u8 = 4;

/// A line format with the event's syslog priority in front, as journald
/// reads it (`SyslogLevelPrefix=`, on by default).
struct Priority<F>(F);

impl<S, N, F> FormatEvent<S, N> for Priority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The syslog priority of `level`.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Cattle's crates, whose events the level applies to.
const CATTLE_TARGETS: &[&str] = &["cattle_agent", "cattle_core", "cattle_stdlib"];

/// The filter `spec` (a `log` setting or `CATTLE_LOG`) says: a level for
/// Cattle's crates, or `target=level` directives used as they are.
pub fn parse(spec: &str) -> Result<Targets, String> {
    let spec = spec.trim();
    if spec.contains('=') {
        return spec
            .parse()
            .map_err(|e| format!("`{spec}` is not a log filter: {e}"));
    }
    spec.parse::<LevelFilter>().map(cattle_at).map_err(|_| {
        format!(
            "`{spec}` is not a log level: off, error, warn, info, debug or trace \
             (or `target=level` directives)"
        )
    })
}

/// The SDK's HTTPS client warns at every start when the system has no root
/// CA certificates (no `ca-certificates` package): noise for a store reached
/// over plain HTTP or with a CA bundle of its own, and a store it cannot
/// trust fails its requests with an error that says so anyway.
const ROOT_CA_WARNING: &str = "aws_smithy_http_client::client::tls::rustls_provider";

/// Cattle's crates at `level`, everything else at `warn` (or less, when
/// `level` is less).
fn cattle_at(level: LevelFilter) -> Targets {
    CATTLE_TARGETS.iter().fold(
        Targets::new()
            .with_default(level.min(LevelFilter::WARN))
            .with_target(ROOT_CA_WARNING, level.min(LevelFilter::ERROR)),
        |targets, crate_name| targets.with_target(*crate_name, level),
    )
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn a_level_is_for_cattle_and_the_sdk_stays_at_warn_unless_named() {
        let filter = |spec: Option<&str>, default: LevelFilter| match spec {
            None => cattle_at(default),
            Some(spec) => parse(spec).unwrap_or_else(|_| cattle_at(default)),
        };
        let info = filter(None, LevelFilter::INFO);
        assert!(info.would_enable("cattle_agent::report", &Level::INFO));
        assert!(!info.would_enable("cattle_agent::report", &Level::DEBUG));
        assert!(!info.would_enable("aws_config::meta::region", &Level::INFO));
        assert!(info.would_enable("aws_smithy_runtime", &Level::WARN));

        let debug = filter(Some("debug"), LevelFilter::INFO);
        assert!(debug.would_enable("cattle_stdlib::runner", &Level::DEBUG));
        assert!(!debug.would_enable("hyper_util::client", &Level::DEBUG));

        assert!(!info.would_enable(ROOT_CA_WARNING, &Level::WARN));
        assert!(info.would_enable("aws_smithy_http_client::client", &Level::WARN));

        let error = filter(Some("error"), LevelFilter::INFO);
        assert!(!error.would_enable("aws_smithy_runtime", &Level::WARN));

        let asked = filter(Some("info,aws_smithy_runtime=debug"), LevelFilter::INFO);
        assert!(asked.would_enable("aws_smithy_runtime::client", &Level::DEBUG));
        assert!(asked.would_enable("cattle_agent", &Level::INFO));

        assert!(parse("loud").unwrap_err().contains("is not a log level"));
        assert!(parse("info,=x").is_err());
    }
}
