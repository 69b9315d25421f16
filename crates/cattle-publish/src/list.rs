//! `cattle list`: the executions in the store, newest first, with a count of
//! their hosts' states.
//!
//! Finding them costs one listing delimited by `/` of `executions/` (a
//! request per 1,000 executions), which names each execution without listing
//! its hosts' objects. Execution IDs are UUIDv7, so their order is the order
//! they were published in, and `--since` is decided from the ID alone. Only the
//! executions shown (and, with filters on what manifests say, those examined
//! to find them) have their manifest read, and their hosts' states are learnt
//! as `cattle status --wait` learns them: one listing of DONE markers and the
//! status documents of unfinished hosts.
//!
//! An entry under `executions/` that is not an execution ID, or whose
//! manifest is missing or not valid, is shown as such with the reason; it
//! never fails the list.

use std::time::{Duration, SystemTime};

use cattle_core::hosts::HostId;
use cattle_core::store::Store;
use cattle_core::wire::{MAX_MESSAGE_BYTES, cut_text};
use serde::Serialize;
use uuid::Uuid;

use crate::status::{Detail, HostState, InvalidManifest};
use crate::terminal;

/// The `schema` of `cattle list --json`.
pub const SCHEMA: &str = "cattle.list.v1";

/// How many executions `cattle list` shows unless `--limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 20;

/// Executions whose rows are read at once: each reads its hosts' states with
/// up to [`crate::CONCURRENCY`] requests of its own.
const ROWS_AT_ONCE: usize = 8;

/// Longest publisher, config or creation time shown; a manifest read without
/// its signature may hold anything up to the document limit.
const MAX_FIELD_BYTES: usize = 256;

/// Longest message in a table cell, in characters; `--json` has it whole.
const MESSAGE_CELL_CHARS: usize = 40;

/// Which executions to show.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// At most this many (the newest).
    pub limit: usize,
    /// Only those published since then (by the time in their ID).
    pub since: Option<SystemTime>,
    /// Only those addressed to this host.
    pub host: Option<HostId>,
    /// Only those whose publisher contains this text (any case).
    pub publisher: Option<String>,
    /// Only those whose config's name contains this text (any case).
    pub config: Option<String>,
    /// Only those with at least one host in this state.
    pub state: Option<HostState>,
}

impl Filters {
    /// Whether no filter but the limit is given.
    pub fn is_empty(&self) -> bool {
        self.since.is_none() && !self.reads_manifests()
    }

    /// Whether a filter needs what the manifest (or the hosts) say.
    fn reads_manifests(&self) -> bool {
        self.host.is_some()
            || self.publisher.is_some()
            || self.config.is_some()
            || self.state.is_some()
    }
}

/// `--since`: a duration before now (`2h`, `7d`) or a time (RFC 3339, UTC).
pub fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(SystemTime::now()
            .checked_sub(ago)
            .unwrap_or(SystemTime::UNIX_EPOCH));
    }
    humantime::parse_rfc3339_weak(text).map_err(|_| {
        format!("`{text}` is neither a duration (`2h`, `7d`) nor a time (`2026-01-31T12:00:00Z`)")
    })
}

/// What `cattle list` found.
#[derive(Debug, Serialize)]
pub struct Listing {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// Where the executions are: the store's `executions/`.
    pub store: String,
    pub executions: Vec<Row>,
    /// The listing stopped at the limit: there are more executions, or (with
    /// filters) more that were not examined.
    pub truncated: bool,
}

/// One entry under `executions/`.
#[derive(Debug, Serialize)]
pub struct Row {
    /// Its name under `executions/`: the execution ID, for every entry Cattle wrote.
    pub entry: String,
    /// The execution ID; absent when the entry is not named by one.
    pub id: Option<Uuid>,
    /// The shortest prefix of the ID (at least 8 hex digits) that no other
    /// execution listed shares; the entry's name when it is not an ID.
    pub short_id: String,
    /// From the manifest: when it was published (RFC 3339, UTC).
    pub created: Option<String>,
    pub publisher: Option<String>,
    pub message: Option<String>,
    pub config: Option<String>,
    pub version: Option<u64>,
    /// The number of hosts it is addressed to.
    pub hosts: Option<usize>,
    /// How `cattle publish --select` chose them ([`Manifest::select`](cattle_core::wire::Manifest::select)):
    /// empty when it was not given.
    pub select: Option<Vec<String>>,
    /// How many of its hosts are in each state.
    pub states: Option<Counts>,
    /// Why the entry cannot be shown as an execution; absent when it can.
    pub error: Option<String>,
}

/// How many hosts are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub done: usize,
    pub error: usize,
    pub progress: usize,
    pub pending: usize,
    pub cancelled: usize,
    pub unreadable: usize,
    pub waiting: usize,
    pub halted: usize,
}

impl Counts {
    fn add(&mut self, state: HostState) {
        match state {
            HostState::Done => self.done += 1,
            HostState::Error => self.error += 1,
            HostState::Progress => self.progress += 1,
            HostState::Pending => self.pending += 1,
            HostState::Cancelled => self.cancelled += 1,
            HostState::Unreadable => self.unreadable += 1,
            HostState::Waiting => self.waiting += 1,
            HostState::Halted => self.halted += 1,
        }
    }

    pub fn get(&self, state: HostState) -> usize {
        match state {
            HostState::Done => self.done,
            HostState::Error => self.error,
            HostState::Progress => self.progress,
            HostState::Pending => self.pending,
            HostState::Cancelled => self.cancelled,
            HostState::Unreadable => self.unreadable,
            HostState::Waiting => self.waiting,
            HostState::Halted => self.halted,
        }
    }

    /// `12 done, 1 error, 3 pending`: the states some host is in.
    pub fn summary(&self) -> String {
        use HostState::*;
        let parts: Vec<String> = [
            Done, Error, Halted, Progress, Waiting, Pending, Cancelled, Unreadable,
        ]
        .into_iter()
        .filter(|s| self.get(*s) > 0)
        .map(|s| format!("{} {}", self.get(s), s.as_str().to_ascii_lowercase()))
        .collect();
        if parts.is_empty() {
            "-".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// The executions in `store` that `filters` let through, newest first.
pub async fn list(store: &Store, filters: &Filters) -> anyhow::Result<Listing> {
    let mut names: Vec<String> = store
        .list_dirs("executions/")
        .await?
        .into_iter()
        .filter_map(|d| {
            Some(
                d.strip_prefix("executions/")?
                    .strip_suffix('/')?
                    .to_string(),
            )
        })
        .collect();
    // IDs are UUIDv7: the reverse of their order is newest first. Entries
    // that are not IDs come first: something the operator should look at.
    names.sort_by(|a, b| {
        (execution_id(a).is_some(), b.as_str()).cmp(&(execution_id(b).is_some(), a.as_str()))
    });
    let filtered = filters.reads_manifests();
    names.retain(|name| match execution_id(name) {
        None => !filtered && filters.since.is_none(),
        Some(id) => filters
            .since
            .is_none_or(|since| published(id).is_none_or(|t| t >= since)),
    });

    let limit = filters.limit.max(1);
    let mut rows = Vec::new();
    let mut left = names.into_iter().peekable();
    let mut truncated = false;
    while rows.len() < limit && left.peek().is_some() {
        // Without filters every entry read is shown; with them, read ahead a
        // little, since some will not match.
        let wanted = limit - rows.len();
        let batch: Vec<String> = left
            .by_ref()
            .take(if filtered { wanted.max(16) } else { wanted })
            .collect();
        let read = crate::for_each_limited(batch, ROWS_AT_ONCE, |name| {
            let (store, filters) = (store.clone(), filters.clone());
            async move { row(&store, name, &filters).await }
        })
        .await;
        for found in read {
            if let Some(row) = found? {
                if rows.len() < limit {
                    rows.push(row);
                } else {
                    truncated = true;
                }
            }
        }
    }
    truncated |= left.peek().is_some();

    let ids: Vec<String> = rows
        .iter()
        .filter_map(|r| r.id)
        .map(|id| id.to_string())
        .collect();
    let digits = short_len(&ids);
    for row in &mut rows {
        if let Some(id) = row.id {
            row.short_id = id.to_string()[..digits].to_string();
        }
    }
    Ok(Listing {
        schema: SCHEMA,
        store: store.location("executions/"),
        executions: rows,
        truncated,
    })
}

/// The execution ID an entry under `executions/` is named by, if any: only
/// the spelling Cattle writes.
fn execution_id(name: &str) -> Option<Uuid> {
    let id = Uuid::try_parse(name).ok()?;
    (id.to_string() == name).then_some(id)
}

/// When execution `id` was published, from its UUIDv7 (by the publisher's
/// clock, as its manifest's `created`).
fn published(id: Uuid) -> Option<SystemTime> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// The row of the entry `name`, or `None` when `filters` leave it out. Fails
/// only when the store does.
async fn row(store: &Store, name: String, filters: &Filters) -> anyhow::Result<Option<Row>> {
    let mut row = Row {
        short_id: name.clone(),
        id: None,
        created: None,
        publisher: None,
        message: None,
        config: None,
        version: None,
        hosts: None,
        select: None,
        states: None,
        error: None,
        entry: name,
    };
    let Some(id) = execution_id(&row.entry) else {
        row.error = Some(format!(
            "`{}` is not named by an execution ID",
            store.location(&format!("executions/{}/", row.entry))
        ));
        return Ok(Some(row));
    };
    row.id = Some(id);
    let manifest = match crate::status::find_manifest(store, id).await {
        Ok(Some(manifest)) => manifest,
        Ok(None) => {
            row.error = Some(format!(
                "no manifest (`{}` does not exist): a publish that did not finish, or what is \
                 left of a cleaned execution (`cattle clean {id}` removes it)",
                store.location(&cattle_core::keys::manifest(id))
            ));
            return Ok((!filters.reads_manifests()).then_some(row));
        }
        Err(err) => match err.downcast::<InvalidManifest>() {
            Ok(invalid) => {
                row.error = Some(invalid.to_string());
                return Ok((!filters.reads_manifests()).then_some(row));
            }
            Err(err) => return Err(err),
        },
    };
    let contains = |field: &str, wanted: &Option<String>| {
        wanted
            .as_ref()
            .is_none_or(|w| field.to_lowercase().contains(&w.to_lowercase()))
    };
    if filters
        .host
        .as_ref()
        .is_some_and(|h| !manifest.hosts.contains(h))
        || !contains(&manifest.publisher, &filters.publisher)
        || !contains(&manifest.config, &filters.config)
    {
        return Ok(None);
    }
    let hosts = crate::status::hosts(store, id, &manifest, Detail::Unfinished).await?;
    let mut counts = Counts::default();
    for host in &hosts {
        counts.add(host.state);
    }
    if filters.state.is_some_and(|s| counts.get(s) == 0) {
        return Ok(None);
    }
    row.created = Some(cut_text(&manifest.created, MAX_FIELD_BYTES));
    row.publisher = Some(cut_text(&manifest.publisher, MAX_FIELD_BYTES));
    row.config = Some(cut_text(&manifest.config, MAX_FIELD_BYTES));
    row.message = manifest
        .message
        .as_deref()
        .map(|m| cut_text(m, MAX_MESSAGE_BYTES));
    row.version = Some(manifest.version);
    row.hosts = Some(manifest.hosts.len());
    row.select = Some(
        manifest
            .select
            .iter()
            .map(|s| cut_text(s, MAX_MESSAGE_BYTES))
            .collect(),
    );
    row.states = Some(counts);
    Ok(Some(row))
}

/// The fewest characters of the IDs (at least 8 hex digits, never ending at a
/// hyphen) at which no two of them start alike.
fn short_len(ids: &[String]) -> usize {
    let mut len = 8;
    loop {
        let ends_at_hyphen = ids.first().is_some_and(|id| id.as_bytes()[len - 1] == b'-');
        if len >= 36 {
            return 36;
        }
        if !ends_at_hyphen {
            let mut prefixes: Vec<&str> = ids.iter().map(|id| &id[..len]).collect();
            prefixes.sort_unstable();
            prefixes.dedup();
            if prefixes.len() == ids.len() {
                return len;
            }
        }
        len += 1;
    }
}

impl Listing {
    /// One row per entry, cells escaped and columns aligned.
    pub fn table(&self) -> String {
        let header = [
            "ID",
            "CREATED",
            "PUBLISHER",
            "MESSAGE",
            "CONFIG",
            "HOSTS",
            "STATES",
        ];
        let dash = || "-".to_string();
        let mut cells: Vec<[String; 7]> = vec![header.map(str::to_string)];
        for row in &self.executions {
            let message = row.message.as_deref().map_or_else(dash, |m| {
                let m = terminal::line(m);
                if m.chars().count() > MESSAGE_CELL_CHARS {
                    let cut: String = m.chars().take(MESSAGE_CELL_CHARS - 1).collect();
                    format!("{cut}…")
                } else {
                    m
                }
            });
            let cell = |value: &Option<String>| value.as_deref().map_or_else(dash, terminal::line);
            cells.push([
                terminal::line(&row.short_id),
                cell(&row.created),
                cell(&row.publisher),
                message,
                cell(&row.config),
                row.hosts.map_or_else(dash, |n| n.to_string()),
                match (&row.error, &row.states) {
                    (Some(error), _) => format!("UNREADABLE: {}", terminal::line(error)),
                    (None, Some(states)) => states.summary(),
                    (None, None) => dash(),
                },
            ]);
        }
        let mut widths = [0; 7];
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &cells {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                match i {
                    // The last column is not padded; HOSTS is a number.
                    6 => line.push_str(cell),
                    5 => line.push_str(&format!("{cell:>width$}  ")),
                    _ => line.push_str(&format!("{cell:width$}  ")),
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// The listing as one JSON document (see `docs/json.md`), with nothing
    /// in it a terminal would act on.
    pub fn json(&self) -> String {
        terminal::json(&serde_json::to_string_pretty(self).expect("listings serialize"))
    }
}

#[cfg(test)]
mod tests {
    use cattle_core::keys;
    use cattle_core::store::{Condition, FileStore};
    use cattle_core::wire::{BundleRef, Envelope, FORMAT, HostStatus, Manifest, State};

    use super::*;

    fn host(name: &str) -> HostId {
        HostId::new(name).unwrap()
    }

    fn put(store: &Store, key: &str, bytes: Vec<u8>) {
        let Store::File(files) = store else {
            unreachable!()
        };
        files.put(key, &bytes, Condition::Always).unwrap();
    }

    fn manifest(id: Uuid, config: &str, hosts: &[&str]) -> Manifest {
        Manifest {
            format: FORMAT,
            id,
            version: 1,
            floor: None,
            created: "2026-01-31T12:00:00.000Z".to_string(),
            expires: "2026-02-07T12:00:00.000Z".to_string(),
            publisher: "ops@laptop".to_string(),
            config: config.to_string(),
            steps: 1,
            bundle: BundleRef {
                sha256: "0".repeat(64),
                size: 1,
            },
            hosts: hosts.iter().map(|h| host(h)).collect(),
            vars: false,
            check: false,
            diff: false,
            message: None,
            rollout: None,
            select: Vec::new(),
            grouped: false,
        }
    }

    fn publish(store: &Store, manifest: &Manifest) {
        let bytes = serde_json::to_vec(&Envelope::unsigned(manifest)).unwrap();
        put(store, &keys::manifest(manifest.id), bytes);
    }

    fn report(store: &Store, id: Uuid, of: &str, state: State) {
        let status = HostStatus {
            format: FORMAT,
            execution: id,
            host: host(of),
            state,
            steps: 1,
            step: None,
            started: cattle_core::now_rfc3339(),
            updated: cattle_core::now_rfc3339(),
            finished: None,
            error: None,
            seq: 1,
            agent_version: "test".to_string(),
            paused: None,
            waiting: None,
            log: None,
            results: Vec::new(),
        };
        put(
            store,
            &keys::status(id, &host(of)),
            serde_json::to_vec(&status).unwrap(),
        );
    }

    fn filters() -> Filters {
        Filters {
            limit: DEFAULT_LIMIT,
            ..Filters::default()
        }
    }

    #[tokio::test]
    async fn newest_first_with_states_and_bad_entries_shown_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::File(FileStore::open(dir.path().to_path_buf()).unwrap());
        let old = Uuid::now_v7();
        std::thread::sleep(Duration::from_millis(2));
        let new = Uuid::now_v7();
        let mut first = manifest(old, "poem", &["a", "b", "c"]);
        first.message = Some("first\x1b[2J".to_string());
        publish(&store, &first);
        publish(&store, &manifest(new, "web", &["a"]));
        report(&store, old, "a", State::Error);
        put(&store, &keys::done(old, &host("b")), Vec::new());
        let orphan = Uuid::now_v7();
        put(&store, &keys::status(orphan, &host("a")), b"{}".to_vec());
        put(&store, "executions/not-an-id\x1b]0;x\x07/x", Vec::new());

        let listing = list(&store, &filters()).await.unwrap();
        let entries: Vec<Option<Uuid>> = listing.executions.iter().map(|r| r.id).collect();
        assert_eq!(entries, [None, Some(orphan), Some(new), Some(old)]);
        let old_row = &listing.executions[3];
        assert_eq!(
            old_row.states.unwrap().summary(),
            "1 done, 1 error, 1 pending"
        );
        assert!(!listing.truncated);

        let table = listing.table();
        assert!(
            !table.contains('\x1b') && !table.contains('\x07'),
            "{table}"
        );
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ID  "), "{table}");
        assert!(lines[1].contains("UNREADABLE: `") && lines[1].contains("not-an-id\\x1b]0;x\\x07"));
        assert!(lines[2].contains("UNREADABLE: no manifest"), "{table}");
        assert!(
            lines[4].contains("first\\x1b[2J") && lines[4].contains("poem"),
            "{table}"
        );
        // Columns line up: every STATES cell starts where its header does.
        let at = lines[0].find("STATES").unwrap();
        assert!(lines[3][at..].starts_with("1 pending"), "{table}");

        let json: serde_json::Value = serde_json::from_str(&listing.json()).unwrap();
        assert_eq!(json["schema"], SCHEMA);
        assert_eq!(json["executions"][3]["states"]["error"], 1);
        assert_eq!(json["executions"][3]["message"], "first\x1b[2J");
        assert_eq!(json["executions"][0]["id"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn filters_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::File(FileStore::open(dir.path().to_path_buf()).unwrap());
        let mut ids = Vec::new();
        for i in 0..30 {
            let id = Uuid::now_v7();
            let config = if i % 3 == 0 { "Web" } else { "db" };
            publish(&store, &manifest(id, config, &["a", &format!("h{i}")]));
            if i == 7 {
                report(&store, id, "a", State::Error);
            }
            ids.push(id);
        }
        put(&store, "executions/junk/x", Vec::new());

        let listing = list(
            &store,
            &Filters {
                limit: 5,
                ..filters()
            },
        )
        .await
        .unwrap();
        assert_eq!(listing.executions.len(), 5);
        assert!(listing.executions[0].error.is_some(), "junk first");
        assert_eq!(listing.executions[1].id, Some(ids[29]));
        assert!(listing.truncated);

        let only = |f: Filters| {
            let store = store.clone();
            async move {
                list(&store, &f)
                    .await
                    .unwrap()
                    .executions
                    .iter()
                    .map(|r| r.id.unwrap())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            only(Filters {
                host: Some(host("h4")),
                ..filters()
            })
            .await,
            [ids[4]]
        );
        assert_eq!(
            only(Filters {
                state: Some(HostState::Error),
                ..filters()
            })
            .await,
            [ids[7]]
        );
        let web = only(Filters {
            config: Some("WEB".into()),
            ..filters()
        })
        .await;
        assert_eq!(web.len(), 10);
        assert_eq!(web[0], ids[27]);
        assert!(
            only(Filters {
                publisher: Some("nobody".into()),
                ..filters()
            })
            .await
            .is_empty()
        );
        let since = published(ids[25]).unwrap();
        assert_eq!(
            only(Filters {
                since: Some(since),
                ..filters()
            })
            .await
            .len(),
            // Within a millisecond IDs share a time: at least the last five.
            30 - ids
                .iter()
                .filter(|id| published(**id).unwrap() < since)
                .count()
        );
    }

    #[test]
    fn short_ids_are_unique_among_those_shown() {
        let ids = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            short_len(&ids(&["0190abcd-1111-7000-8000-000000000000"])),
            8
        );
        assert_eq!(
            short_len(&ids(&[
                "0190abcd-1111-7000-8000-000000000000",
                "0190abce-1111-7000-8000-000000000000"
            ])),
            8
        );
        // Never cut at a hyphen: 9 characters would add nothing to 8.
        assert_eq!(
            short_len(&ids(&[
                "0190abcd-1111-7000-8000-000000000000",
                "0190abcd-2111-7000-8000-000000000000"
            ])),
            10
        );
        assert_eq!(short_len(&[]), 8);
    }

    #[test]
    fn since_takes_a_duration_or_a_time_and_state_any_case() {
        let two_hours = parse_since("2h").unwrap();
        let now = SystemTime::now();
        let ago = now.duration_since(two_hours).unwrap();
        assert!(ago >= Duration::from_secs(7200) && ago < Duration::from_secs(7260));
        assert_eq!(
            parse_since("2026-01-31T12:00:00Z").unwrap(),
            humantime::parse_rfc3339("2026-01-31T12:00:00Z").unwrap()
        );
        assert!(
            parse_since("yesterday")
                .unwrap_err()
                .contains("neither a duration")
        );
    }
}
