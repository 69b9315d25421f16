//! `cattle publish --select`: which hosts of the hosts file an execution goes
//! to, chosen by the variables the operator gave them or by the facts their
//! agents report.
//!
//! A selector is `key=value` and `key!=value` terms joined by `,`, all of
//! which must hold; given several `--select`, a host is chosen when any of
//! them matches it. A key is a *variable* when some host of the hosts file has
//! a variable of that name, as templates see them (the config's `[vars]`, the
//! inventory, `--var`, and `host`); every other key is a *fact*: what the
//! host's agent last reported in its lease (`hosts/<host>/agent.json`, see
//! [`Facts`]), where `os` stands for `os.id` ([`ALIASES`]).
//!
//! Variables win because they are the operator's word: a host writes its own
//! lease and may claim any fact, so a key the inventory defines for some host
//! is never taken from a host's report, not even for a host the inventory does
//! not give it. A fact term holds only on what a readable report says: a host
//! that never reported, whose lease cannot be read or that does not report
//! that fact matches neither `key=value` nor `key!=value`. An unset variable
//! is known to be unset, so `key!=value` holds for it.
//!
//! Selection happens once, when publishing: the hosts chosen become the signed
//! host list of the manifest, which records the selectors
//! ([`Manifest::select`](cattle_core::wire::Manifest::select)); the agent
//! knows nothing of it. Leases are read as untrusted, as `cattle hosts` reads
//! them: one listing of `hosts/`, then each lease of a host of the hosts file,
//! [`CONCURRENCY`](crate::CONCURRENCY) at a time, at most
//! [`MAX_HEARTBEAT_BYTES`](cattle_core::wire::MAX_HEARTBEAT_BYTES) each, checked to name its host, facts within their
//! bounds; everything shown from them goes through [`terminal`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::path::Path;
use std::str::FromStr;
use std::time::SystemTime;

use anyhow::Context as _;
use cattle_core::hosts::HostId;
use cattle_core::keys;
use cattle_core::store::{Store, StoreError};
use cattle_core::wire::{Fact, Facts, HostLease, MAX_FACT_KEY, cut_text};
use cattle_stdlib::vars::{HOST_VAR, Value};
use cattle_stdlib::{Config, Vars};
use serde::Serialize;

use crate::inventory::{self, Inventory};
use crate::publish::Prepared;
use crate::{for_each_bounded, terminal};

/// Longest `--select` accepted, in bytes (it is recorded in the manifest).
pub const MAX_SELECTOR_BYTES: usize = 1024;

/// Short names of facts: `os=debian` means `os.id=debian`. They name facts
/// only: a variable of the same name wins over them.
pub const ALIASES: [(&str, &str); 3] = [
    ("os", "os.id"),
    ("os.version", "os.version_id"),
    ("kernel", "kernel.release"),
];

/// Whether a term asks for a value or for any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `key=value`: the value is `value` (a list holds it).
    Is,
    /// `key!=value`: the value is not `value` (a list does not hold it).
    IsNot,
}

/// One `key=value` or `key!=value` of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub key: String,
    pub op: Op,
    pub value: String,
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Is => "=",
            Op::IsNot => "!=",
        };
        write!(f, "{}{op}{}", self.key, self.value)
    }
}

/// One `--select`: terms that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub terms: Vec<Term>,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, term) in self.terms.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{term}")?;
        }
        Ok(())
    }
}

impl FromStr for Selector {
    type Err = String;

    fn from_str(text: &str) -> Result<Selector, String> {
        Selector::parse(text)
    }
}

impl Selector {
    /// Read `key=value,key!=value,…`; an error names the term and what is
    /// wrong with it (clap prefixes the whole `--select`). Space around a
    /// term is dropped; a value may hold anything but `,` and control
    /// characters.
    pub fn parse(text: &str) -> Result<Selector, String> {
        const FORM: &str = "write `key=value` or `key!=value`, several joined by `,`";
        if text.len() > MAX_SELECTOR_BYTES {
            return Err(format!(
                "it is {} bytes long; at most {MAX_SELECTOR_BYTES} are allowed",
                text.len()
            ));
        }
        // It is recorded and shown: nothing in it may act on a terminal.
        if let Some(c) = text.chars().find(|c| {
            let c = c.encode_utf8(&mut [0; 4]).to_string();
            terminal::line(&c) != c
        }) {
            return Err(format!("it contains the control character {c:?}"));
        }
        if text.trim().is_empty() {
            return Err(format!("it is empty: {FORM}"));
        }
        let parts: Vec<&str> = text.split(',').collect();
        let mut terms = Vec::with_capacity(parts.len());
        for (n, part) in parts.iter().enumerate() {
            let term = part.trim();
            if term.is_empty() {
                return Err(format!(
                    "term {} of {} is empty: terms are joined by one `,`, with none at either end",
                    n + 1,
                    parts.len()
                ));
            }
            let Some((left, value)) = term.split_once('=') else {
                return Err(format!("term `{term}` has no `=`: {FORM}"));
            };
            let (key, op) = match left.strip_suffix('!') {
                Some(key) => (key.trim_end(), Op::IsNot),
                None => (left.trim_end(), Op::Is),
            };
            let value = value.trim_start();
            if key.is_empty() {
                return Err(format!("term `{term}` has no key before `=`: {FORM}"));
            }
            if let Some(rest) = key.strip_prefix('!') {
                return Err(format!(
                    "term `{term}`: write `{rest}!={value}` for a value other than `{value}`"
                ));
            }
            if let Some(rest) = value.strip_prefix('=') {
                return Err(format!(
                    "term `{term}` has `==`: write `{key}={rest}` (one `=`)"
                ));
            }
            if !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(format!(
                    "term `{term}`: the key `{key}` may hold only letters, digits, `.`, `_` and `-`"
                ));
            }
            if key.len() > MAX_FACT_KEY {
                return Err(format!(
                    "term `{term}`: the key is longer than {MAX_FACT_KEY} characters"
                ));
            }
            if value.is_empty() {
                return Err(format!(
                    "term `{term}` has no value after `=` (values cannot be empty)"
                ));
            }
            terms.push(Term {
                key: key.to_string(),
                op,
                value: value.to_string(),
            });
        }
        Ok(Selector { terms })
    }
}

/// Where a term's key is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The host's variables, as templates see them.
    Variable,
    /// The facts the host's agent last reported.
    Fact,
}

/// A term with its key as looked up: a variable's name, or a fact's key with
/// its alias resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    term: Term,
    source: Source,
}

/// A key no host has as a variable, and that cannot be a fact's either.
#[derive(Debug, thiserror::Error)]
#[error(
    "`--select {term}`: `{key}` is no variable of any host in `{hosts_file}` ({variables}), \
     and facts are named in lowercase: `a-z`, `0-9`, `.`, `_`, `-` (nothing was uploaded)"
)]
pub struct UnknownKey {
    pub term: String,
    pub key: String,
    pub hosts_file: String,
    /// The variables hosts have, for the message.
    pub variables: String,
}

/// Each selector's terms with their keys looked up: a variable when some
/// host has it (`variables`), else a fact (aliases resolved).
fn resolve(
    selectors: &[Selector],
    variables: &BTreeSet<&str>,
    hosts_file: &str,
) -> Result<Vec<Vec<Resolved>>, UnknownKey> {
    selectors
        .iter()
        .map(|selector| {
            selector
                .terms
                .iter()
                .map(|term| resolve_term(term, variables, hosts_file))
                .collect()
        })
        .collect()
}

fn resolve_term(
    term: &Term,
    variables: &BTreeSet<&str>,
    hosts_file: &str,
) -> Result<Resolved, UnknownKey> {
    if variables.contains(term.key.as_str()) {
        return Ok(Resolved {
            term: term.clone(),
            source: Source::Variable,
        });
    }
    let key = ALIASES
        .iter()
        .find(|(alias, _)| *alias == term.key)
        .map_or(term.key.as_str(), |(_, fact)| fact);
    let fact_key = key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if !fact_key {
        let names: Vec<&str> = variables.iter().copied().collect();
        return Err(UnknownKey {
            term: term.to_string(),
            key: term.key.clone(),
            hosts_file: hosts_file.to_string(),
            variables: format!("they have {}", names.join(", ")),
        });
    }
    Ok(Resolved {
        term: Term {
            key: key.to_string(),
            ..term.clone()
        },
        source: Source::Fact,
    })
}

/// What a host's agent last said about the host, as far as selection cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// Its facts, and how long ago (by the store's clock) its lease was
    /// written, when the store says.
    Facts { facts: Facts, age_secs: Option<u64> },
    /// No lease: no agent ever reported under this host ID here.
    Never,
    /// A lease without a heartbeat: an agent older than facts.
    NoHeartbeat { agent_version: String },
    /// The lease cannot be used: why.
    Unreadable(String),
}

impl Reported {
    /// Why there are no facts to match: `None` when there are.
    fn missing(&self) -> Option<String> {
        match self {
            Reported::Facts { .. } => None,
            Reported::Never => Some("no facts: the agent never reported".to_string()),
            Reported::NoHeartbeat { agent_version } => Some(format!(
                "no facts: its agent (version {agent_version}) reports none"
            )),
            Reported::Unreadable(reason) => Some(format!("facts unreadable: {reason}")),
        }
    }
}

/// A host of the hosts file, with what selection looks at.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub host: HostId,
    /// Each variable with its value and where it came from: `cattle.toml`,
    /// `inventory`, `--var` or `host ID` (see [`variables`]).
    pub vars: BTreeMap<String, (Value, &'static str)>,
    pub reported: Reported,
}

/// `host`'s variables as [`inventory::resolve`] layers them (the config's
/// defaults < the inventory < `--var` < `host`), each with the layer it
/// came from.
pub fn variables(
    defaults: &Vars,
    inventory: &Inventory,
    overrides: &Vars,
    host: &HostId,
) -> Result<BTreeMap<String, (Value, &'static str)>, String> {
    let mut vars = BTreeMap::new();
    for (layer, from) in [
        (defaults.clone(), "cattle.toml"),
        (inventory.vars_for(host)?, "inventory"),
        (overrides.clone(), "--var"),
    ] {
        for (name, value) in layer.iter() {
            vars.insert(name.to_string(), (value.clone(), from));
        }
    }
    vars.insert(
        HOST_VAR.to_string(),
        (Value::String(host.to_string()), "host ID"),
    );
    Ok(vars)
}

/// How one term fared on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The term, its key as looked up (`os.id=debian` for `os=debian`).
    pub term: String,
    pub source: Source,
    /// Where the variable's value came from (`inventory`, `cattle.toml`,
    /// `--var`, `host ID`); `None` for a fact and an unset variable.
    pub from: Option<&'static str>,
    /// The host's value, on one line (a list's items joined by `,`); `None`
    /// when it has none.
    pub value: Option<String>,
    pub holds: bool,
    /// A fact: seconds since the host's lease was written, by the store's clock.
    pub facts_age_secs: Option<u64>,
    /// A fact: why the host has no facts to match.
    pub no_facts: Option<String>,
    #[serde(skip)]
    key: String,
    #[serde(skip)]
    op: Op,
}

impl Check {
    /// Where the value was looked up, for people: `inventory`, `facts
    /// reported 3m ago`, `variables` (unset).
    fn place(&self) -> String {
        match self.source {
            Source::Variable => self.from.unwrap_or("variables").to_string(),
            Source::Fact => match self.facts_age_secs {
                Some(secs) => format!("facts reported {}", crate::fleet::ago(secs)),
                None => "facts".to_string(),
            },
        }
    }

    /// `role=web (inventory)`, `role!=db (inventory: role is web)`, `os.id=debian:
    /// os.id is ubuntu (facts reported 3m ago)`, `os.id=debian: no facts: the
    /// agent never reported`. Not escaped.
    pub fn why(&self) -> String {
        let place = self.place();
        let value = || match (&self.value, self.source) {
            (Some(value), _) => format!("{} is {value}", self.key),
            (None, Source::Variable) => format!("{} is not set", self.key),
            (None, Source::Fact) => format!("{} is not reported", self.key),
        };
        match (self.holds, self.op, &self.no_facts) {
            (_, _, Some(missing)) => format!("{}: {missing}", self.term),
            (true, Op::Is, None) => format!("{} ({place})", self.term),
            (true, Op::IsNot, None) => format!("{} ({place}: {})", self.term, value()),
            (false, _, None) => format!("{}: {} ({place})", self.term, value()),
        }
    }
}

/// A variable's value matches `wanted`: a text equal to it, a number or
/// boolean written so, a list holding such an item.
fn value_matches(value: &Value, wanted: &str) -> bool {
    match value {
        Value::String(text) => text == wanted,
        Value::Number(number) => number.to_string() == wanted,
        Value::Bool(b) => b.to_string() == wanted,
        Value::Array(items) => items
            .iter()
            .any(|item| !item.is_array() && value_matches(item, wanted)),
        Value::Null | Value::Object(_) => false,
    }
}

/// A variable's value on one line: a text as it is, anything else as JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// How `term` fares on `candidate`.
fn check(resolved: &Resolved, candidate: &Candidate) -> Check {
    let term = &resolved.term;
    let mut check = Check {
        term: term.to_string(),
        source: resolved.source,
        from: None,
        value: None,
        holds: false,
        facts_age_secs: None,
        no_facts: None,
        key: term.key.clone(),
        op: term.op,
    };
    let found = match resolved.source {
        Source::Variable => {
            let var = candidate.vars.get(&term.key);
            check.from = var.map(|(_, from)| *from);
            check.value = var.map(|(value, _)| value_text(value));
            Some(var.is_some_and(|(value, _)| value_matches(value, &term.value)))
        }
        Source::Fact => match &candidate.reported {
            Reported::Facts { facts, age_secs } => {
                check.facts_age_secs = *age_secs;
                let fact = facts.get(&term.key);
                check.value = fact.map(Fact::display);
                // A fact the host does not report matches neither way.
                fact.map(|fact| fact.matches(&term.value))
            }
            other => {
                check.no_facts = other.missing();
                None
            }
        },
    };
    check.holds = match (found, term.op) {
        (Some(is), Op::Is) => is,
        (Some(is), Op::IsNot) => !is,
        // A fact the host does not tell is neither the value nor another.
        (None, _) => false,
    };
    check
}

/// Whether and why one host was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub host: HostId,
    pub matched: bool,
    /// Chosen: every term of the first selector that matched. Not chosen:
    /// the first term that failed, of each selector in turn.
    pub checks: Vec<Check>,
    /// The checks for people, as the dry run shows them.
    pub why: String,
}

/// Every host of the hosts file, chosen or not, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// Each selector, its keys as looked up ([`Manifest::select`](cattle_core::wire::Manifest::select)).
    pub select: Vec<String>,
    /// Hosts in the hosts file.
    pub considered: usize,
    /// Hosts chosen.
    pub matched: usize,
    /// Every host of the hosts file, in its order.
    pub hosts: Vec<Choice>,
}

/// Choose among `candidates` with the selectors `resolved` (alternatives).
fn evaluate(resolved: &[Vec<Resolved>], candidates: &[Candidate]) -> Selection {
    let hosts: Vec<Choice> = candidates
        .iter()
        .map(|candidate| {
            let mut failed = Vec::new();
            for selector in resolved {
                let mut checks = Vec::with_capacity(selector.len());
                let mut holds = true;
                for term in selector {
                    let check = check(term, candidate);
                    holds = check.holds;
                    checks.push(check);
                    if !holds {
                        break;
                    }
                }
                if holds {
                    return choice(candidate, true, checks, ", ");
                }
                failed.extend(checks.pop());
            }
            choice(candidate, false, failed, "; ")
        })
        .collect();
    Selection {
        select: resolved
            .iter()
            .map(|terms| {
                terms
                    .iter()
                    .map(|r| r.term.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect(),
        considered: hosts.len(),
        matched: hosts.iter().filter(|c| c.matched).count(),
        hosts,
    }
}

fn choice(candidate: &Candidate, matched: bool, checks: Vec<Check>, sep: &str) -> Choice {
    let why = checks.iter().map(Check::why).collect::<Vec<_>>().join(sep);
    Choice {
        host: candidate.host.clone(),
        matched,
        checks,
        why,
    }
}

impl Selection {
    /// The hosts chosen, in the order of the hosts file.
    pub fn matched_hosts(&self) -> Vec<HostId> {
        self.hosts
            .iter()
            .filter(|c| c.matched)
            .map(|c| c.host.clone())
            .collect()
    }

    /// Whether `host` is in the hosts file.
    pub fn includes(&self, host: &HostId) -> bool {
        self.hosts.iter().any(|c| &c.host == host)
    }

    /// `3 of 10 hosts match role=web,os.id=debian`; `or` between selectors.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} {} {}",
            self.matched,
            cattle_core::count(self.considered as u64, "host"),
            if self.matched == 1 {
                "matches"
            } else {
                "match"
            },
            self.select.join(" or ")
        )
    }

    /// A row per host (`HOST  MATCH  WHY`), aligned, then [`summary`](Self::summary);
    /// every cell escaped.
    pub fn table(&self) -> String {
        let mut rows = vec![["HOST".to_string(), "MATCH".to_string(), "WHY".to_string()]];
        for choice in &self.hosts {
            rows.push([
                terminal::line(choice.host.as_str()),
                if choice.matched { "yes" } else { "no" }.to_string(),
                terminal::line(&choice.why),
            ]);
        }
        let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
        let (host, matched) = (width(0), width(1));
        let mut out = String::new();
        for [h, m, why] in &rows {
            let _ = writeln!(out, "{h:host$}  {m:matched$}  {why}");
        }
        let _ = writeln!(out, "{}", terminal::line(&self.summary()));
        out
    }
}

/// No host matched: nothing was uploaded. The selection says why, host by host.
#[derive(Debug, thiserror::Error)]
#[error("no host of `{hosts_file}` matches `--select`: {summary}{unknown} (nothing was uploaded)")]
pub struct NoMatch {
    pub selection: Selection,
    hosts_file: String,
    summary: String,
    /// Fact keys no host reports, which are no variable either (typos?).
    unknown: String,
}

impl NoMatch {
    fn new(
        selection: Selection,
        hosts_file: String,
        resolved: &[Vec<Resolved>],
        candidates: &[Candidate],
    ) -> NoMatch {
        let mut reporting = 0;
        let mut reported: BTreeSet<&str> = BTreeSet::new();
        for candidate in candidates {
            if let Reported::Facts { facts, .. } = &candidate.reported {
                reporting += 1;
                reported.extend(facts.keys().map(String::as_str));
            }
        }
        // Only hosts that report tell which facts exist.
        let unknown: BTreeSet<&str> = resolved
            .iter()
            .flatten()
            .filter(|r| r.source == Source::Fact && !reported.contains(r.term.key.as_str()))
            .map(|r| r.term.key.as_str())
            .collect();
        let unknown = match unknown.len() {
            _ if reporting == 0 => String::new(),
            0 => String::new(),
            _ => format!(
                "; no host has a variable or reports a fact named {}",
                unknown
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        NoMatch {
            summary: selection.summary(),
            selection,
            hosts_file,
            unknown,
        }
    }

    /// What to do next.
    pub fn hint(&self) -> &'static str {
        "`cattle publish … --select … --dry-run` shows, for each host, the term that failed \
         and the value it has"
    }
}

/// What each of `hosts` last reported, in their order: one listing of
/// `hosts/` says which have a lease and when it was written (by the store's
/// clock), then each lease is read as untrusted. Fails only when the store
/// fails, never because of what a host wrote.
pub async fn reported(store: &Store, hosts: &[HostId]) -> Result<Vec<Reported>, StoreError> {
    let wanted: BTreeMap<String, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| (keys::lease(host), i))
        .collect();
    let mut written: Vec<Option<Option<SystemTime>>> = vec![None; hosts.len()];
    for entry in store.list_entries(&keys::hosts_prefix()).await? {
        if let Some(&i) = wanted.get(&entry.key) {
            written[i] = Some(entry.modified);
        }
    }
    let now = crate::fleet::shift(SystemTime::now(), store.clock_offset().unwrap_or(0));
    let items: Vec<(HostId, Option<Option<SystemTime>>)> =
        hosts.iter().cloned().zip(written).collect();
    for_each_bounded(items, |(host, written)| {
        let store = store.clone();
        async move {
            let Some(written) = written else {
                return Ok(Reported::Never);
            };
            let key = keys::lease(&host);
            let lease = match crate::fleet::read::<HostLease>(&store, &key, &host).await? {
                Ok(Some(lease)) => lease,
                // Gone since the listing.
                Ok(None) => return Ok(Reported::Never),
                Err(reason) => return Ok(Reported::Unreadable(reason)),
            };
            let Some(heartbeat) = lease.heartbeat else {
                return Ok(Reported::NoHeartbeat {
                    agent_version: cut_text(&lease.agent_version, 64),
                });
            };
            if let Err(reason) = heartbeat.check() {
                return Ok(Reported::Unreadable(format!(
                    "`{}`: {reason}",
                    store.location(&key)
                )));
            }
            Ok(Reported::Facts {
                facts: heartbeat.facts,
                age_secs: written.map(|t| now.duration_since(t).unwrap_or_default().as_secs()),
            })
        }
    })
    .await
    .into_iter()
    .collect()
}

/// [`publish::prepare`](crate::publish::prepare) for the hosts of
/// `hosts_file` that `selectors` choose: read the config and the hosts,
/// resolve each host's variables, read the hosts' facts when a term names one
/// (`store` opens the store only then), choose, and make the chosen hosts'
/// plans. Nothing is uploaded; no host matching is a [`NoMatch`], a key
/// that can be neither a variable nor a fact an [`UnknownKey`].
pub async fn prepare(
    dir: &Path,
    hosts_file: &Path,
    overrides: &Vars,
    selectors: &[Selector],
    store: impl AsyncFnOnce() -> anyhow::Result<Store>,
) -> anyhow::Result<Prepared> {
    let config = Config::load(dir)?;
    let inventory = Inventory::load(hosts_file)?;
    let name = inventory::display_name(hosts_file);
    let mut candidates = Vec::with_capacity(inventory.hosts.len());
    for host in &inventory.hosts {
        let vars = variables(config.defaults(), &inventory, overrides, host)
            .map_err(|message| anyhow::anyhow!("{name}: {message}"))?;
        candidates.push(Candidate {
            host: host.clone(),
            vars,
            reported: Reported::Never,
        });
    }
    let names: BTreeSet<&str> = candidates
        .iter()
        .flat_map(|c| c.vars.keys().map(String::as_str))
        .collect();
    let resolved = resolve(selectors, &names, &name)?;
    if resolved.iter().flatten().any(|r| r.source == Source::Fact) {
        let store = store().await?;
        let reported = reported(&store, &inventory.hosts).await.with_context(|| {
            format!(
                "cannot read the facts hosts reported (`{}`) to select hosts",
                store.location("hosts/<host>/agent.json")
            )
        })?;
        for (candidate, reported) in candidates.iter_mut().zip(reported) {
            candidate.reported = reported;
        }
    }
    let selection = evaluate(&resolved, &candidates);
    if selection.matched == 0 {
        return Err(NoMatch::new(selection, name, &resolved, &candidates).into());
    }
    let mut prepared = crate::publish::prepare_hosts(
        dir,
        hosts_file,
        config,
        &inventory,
        selection.matched_hosts(),
        overrides,
    )?;
    prepared.selection = Some(selection);
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Selector {
        Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn term(key: &str, op: Op, value: &str) -> Term {
        Term {
            key: key.to_string(),
            op,
            value: value.to_string(),
        }
    }

    #[test]
    fn a_selector_is_terms_joined_by_commas() {
        assert_eq!(
            parse("role=web,os!=ubuntu").terms,
            [term("role", Op::Is, "web"), term("os", Op::IsNot, "ubuntu")]
        );
        // Space around terms is dropped; inside values it stays.
        assert_eq!(
            parse(" role = web , os.pretty_name=Debian GNU/Linux 12 (bookworm) ").terms,
            [
                term("role", Op::Is, "web"),
                term("os.pretty_name", Op::Is, "Debian GNU/Linux 12 (bookworm)")
            ]
        );
        // A value may hold `=` and `!`.
        assert_eq!(
            parse("args=a=b,x=!y").terms,
            [term("args", Op::Is, "a=b"), term("x", Op::Is, "!y")]
        );
        assert_eq!(parse("city=Zürich").terms, [term("city", Op::Is, "Zürich")]);
        assert_eq!(
            parse("role=web,os!=ubuntu").to_string(),
            "role=web,os!=ubuntu"
        );
    }

    #[test]
    fn parse_errors_name_the_term_and_what_is_wrong() {
        for (text, expected) in [
            ("", "it is empty"),
            ("role", "term `role` has no `=`"),
            ("role=web,os", "term `os` has no `=`"),
            ("role=web,", "term 2 of 2 is empty"),
            ("a=1,,b=2", "term 2 of 3 is empty"),
            ("=web", "term `=web` has no key before `=`"),
            ("!=web", "term `!=web` has no key before `=`"),
            ("role=", "term `role=` has no value after `=`"),
            ("role!=", "term `role!=` has no value after `=`"),
            ("role==web", "term `role==web` has `==`: write `role=web`"),
            ("!role=web", "term `!role=web`: write `role!=web`"),
            ("ro/le=web", "the key `ro/le` may hold only letters"),
            ("ro le=web", "the key `ro le` may hold only letters"),
            ("role=web\u{1b}[2J", "control character '\\u{1b}'"),
            ("role=a\u{202e}", "control character"),
        ] {
            let err = Selector::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let long = format!("k={}", "v".repeat(MAX_SELECTOR_BYTES));
        assert!(Selector::parse(&long).unwrap_err().contains("at most 1024"));
        let key = format!("{}=v", "k".repeat(MAX_FACT_KEY + 1));
        assert!(
            Selector::parse(&key)
                .unwrap_err()
                .contains("longer than 64")
        );
    }

    fn vars(pairs: &[(&str, Value, &'static str)]) -> BTreeMap<String, (Value, &'static str)> {
        pairs
            .iter()
            .map(|(k, v, from)| (k.to_string(), (v.clone(), *from)))
            .collect()
    }

    fn facts(pairs: &[(&str, &str)]) -> Reported {
        Reported::Facts {
            facts: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Fact::Text(v.to_string())))
                .collect(),
            age_secs: Some(180),
        }
    }

    fn candidate(host: &str, role: Option<&str>, reported: Reported) -> Candidate {
        let mut pairs = vec![("host", Value::from(host), "host ID")];
        if let Some(role) = role {
            pairs.push(("role", Value::from(role), "inventory"));
        }
        Candidate {
            host: HostId::new(host).unwrap(),
            vars: vars(&pairs),
            reported,
        }
    }

    fn fleet() -> Vec<Candidate> {
        vec![
            candidate("web-1", Some("web"), facts(&[("os.id", "debian")])),
            candidate("web-2", Some("web"), facts(&[("os.id", "ubuntu")])),
            candidate("web-3", Some("web"), Reported::Never),
            candidate(
                "web-4",
                Some("web"),
                Reported::Unreadable("`hosts/web-4/agent.json` is too large".to_string()),
            ),
            candidate("db-1", Some("db"), facts(&[("os.id", "debian")])),
            // The host claims `role=web` as a fact; the inventory gives it none.
            candidate(
                "rogue-1",
                None,
                facts(&[("role", "web"), ("os.id", "debian")]),
            ),
        ]
    }

    fn select(selectors: &[&str], candidates: &[Candidate]) -> Selection {
        let selectors: Vec<Selector> = selectors.iter().map(|s| parse(s)).collect();
        let names: BTreeSet<&str> = candidates
            .iter()
            .flat_map(|c| c.vars.keys().map(String::as_str))
            .collect();
        let resolved = resolve(&selectors, &names, "hosts").unwrap();
        evaluate(&resolved, candidates)
    }

    fn rows(selection: &Selection) -> Vec<(String, bool, String)> {
        selection
            .hosts
            .iter()
            .map(|c| (c.host.to_string(), c.matched, c.why.clone()))
            .collect()
    }

    #[test]
    fn every_term_must_hold_and_each_host_says_why() {
        let selection = select(&["role=web,os=debian"], &fleet());
        assert_eq!(selection.select, ["role=web,os.id=debian"]);
        assert_eq!(selection.matched_hosts(), [HostId::new("web-1").unwrap()]);
        assert_eq!(
            rows(&selection),
            [
                (
                    "web-1".into(),
                    true,
                    "role=web (inventory), os.id=debian (facts reported 3m ago)".into()
                ),
                (
                    "web-2".into(),
                    false,
                    "os.id=debian: os.id is ubuntu (facts reported 3m ago)".into()
                ),
                (
                    "web-3".into(),
                    false,
                    "os.id=debian: no facts: the agent never reported".into()
                ),
                (
                    "web-4".into(),
                    false,
                    "os.id=debian: facts unreadable: `hosts/web-4/agent.json` is too large".into()
                ),
                (
                    "db-1".into(),
                    false,
                    "role=web: role is db (inventory)".into()
                ),
                // `role` is a variable (other hosts have it): the host's own
                // claim does not count.
                (
                    "rogue-1".into(),
                    false,
                    "role=web: role is not set (variables)".into()
                ),
            ]
        );
        assert_eq!(
            selection.summary(),
            "1 of 6 hosts matches role=web,os.id=debian"
        );
    }

    #[test]
    fn not_equal_holds_for_unset_variables_but_never_without_facts() {
        let selection = select(&["role!=db,os!=ubuntu"], &fleet());
        let matched: Vec<String> = selection
            .matched_hosts()
            .iter()
            .map(|h| h.to_string())
            .collect();
        assert_eq!(matched, ["web-1", "rogue-1"]);
        let why = |host: &str| {
            rows(&selection)
                .into_iter()
                .find(|r| r.0 == host)
                .unwrap()
                .2
        };
        assert_eq!(
            why("web-1"),
            "role!=db (inventory: role is web), os.id!=ubuntu (facts reported 3m ago: os.id is debian)"
        );
        assert_eq!(
            why("rogue-1"),
            "role!=db (variables: role is not set), os.id!=ubuntu (facts reported 3m ago: os.id is debian)"
        );
        assert_eq!(
            why("web-3"),
            "os.id!=ubuntu: no facts: the agent never reported"
        );
        // A fact the host does not report holds neither way.
        let quiet = vec![candidate("q-1", Some("web"), facts(&[("arch", "x86_64")]))];
        for selector in ["kernel=6.1", "kernel!=6.1"] {
            let selection = select(&[selector], &quiet);
            assert_eq!(selection.matched, 0, "{selector}");
            assert!(
                selection.hosts[0]
                    .why
                    .ends_with("kernel.release is not reported (facts reported 3m ago)"),
                "{}",
                selection.hosts[0].why
            );
        }
    }

    #[test]
    fn repeated_selectors_are_alternatives() {
        let selection = select(&["role=db", "os=ubuntu"], &fleet());
        let matched: Vec<String> = selection
            .matched_hosts()
            .iter()
            .map(|h| h.to_string())
            .collect();
        assert_eq!(matched, ["web-2", "db-1"]);
        assert_eq!(
            selection.hosts[1].why,
            "os.id=ubuntu (facts reported 3m ago)"
        );
        // Not chosen: the failing term of each alternative.
        assert_eq!(
            selection.hosts[0].why,
            "role=db: role is web (inventory); os.id=ubuntu: os.id is debian (facts reported 3m ago)"
        );
        assert_eq!(
            selection.summary(),
            "2 of 6 hosts match role=db or os.id=ubuntu"
        );
    }

    #[test]
    fn variables_win_over_facts_and_aliases_name_facts_only() {
        // `os` is a variable of one host: it is a variable for every host.
        let mut hosts = fleet();
        hosts[0]
            .vars
            .insert("os".into(), (Value::from("debian"), "inventory"));
        let selection = select(&["os=debian"], &hosts);
        assert_eq!(selection.select, ["os=debian"]);
        assert_eq!(selection.matched_hosts(), [HostId::new("web-1").unwrap()]);
        assert_eq!(
            selection.hosts[4].why,
            "os=debian: os is not set (variables)"
        );
        // `host` is every host's own ID.
        let selection = select(&["host!=web-2,role=web"], &fleet());
        assert_eq!(selection.matched, 3);
        assert_eq!(
            selection.hosts[1].why,
            "host!=web-2: host is web-2 (host ID)"
        );
    }

    #[test]
    fn variable_values_match_as_written_and_lists_by_item() {
        assert!(value_matches(&Value::from("web"), "web"));
        assert!(!value_matches(&Value::from("web"), "Web"));
        assert!(value_matches(&Value::from(8080), "8080"));
        assert!(value_matches(&Value::from(true), "true"));
        assert!(value_matches(&serde_json::json!(["a", 2]), "2"));
        assert!(!value_matches(&serde_json::json!([["a"]]), "a"));
        assert!(!value_matches(&serde_json::json!({"a": "a"}), "a"));
        let list = Reported::Facts {
            facts: [(
                "ip".to_string(),
                Fact::List(vec!["10.0.0.5".into(), "fd00::5".into()]),
            )]
            .into_iter()
            .collect(),
            age_secs: None,
        };
        let hosts = vec![candidate("a-1", None, list)];
        let selection = select(&["ip=fd00::5"], &hosts);
        assert_eq!(selection.matched, 1);
        assert_eq!(selection.hosts[0].why, "ip=fd00::5 (facts)");
        let selection = select(&["ip!=fd00::5"], &hosts);
        assert_eq!(
            selection.hosts[0].why,
            "ip!=fd00::5: ip is 10.0.0.5,fd00::5 (facts)"
        );
    }

    #[test]
    fn a_key_that_can_be_neither_is_an_error_naming_the_variables() {
        let selectors = [parse("Role=web")];
        let names: BTreeSet<&str> = ["host", "role"].into_iter().collect();
        let err = resolve(&selectors, &names, "inv.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`--select Role=web`: `Role` is no variable of any host in `inv.toml` (they have \
             host, role), and facts are named in lowercase: `a-z`, `0-9`, `.`, `_`, `-` \
             (nothing was uploaded)"
        );
    }

    #[test]
    fn hostile_facts_are_escaped_in_the_table() {
        let hostile = facts(&[("os.id", "\u{1b}[2Jdebian\r\u{202e}")]);
        let hosts = vec![
            candidate("web-1", Some("web"), facts(&[("os.id", "debian")])),
            candidate("evil-1", Some("web"), hostile),
        ];
        let table = select(&["os=debian"], &hosts).table();
        for raw in ['\u{1b}', '\r', '\u{202e}'] {
            assert!(!table.contains(raw), "{raw:?} in {table}");
        }
        assert_eq!(
            table,
            "HOST    MATCH  WHY\n\
             web-1   yes    os.id=debian (facts reported 3m ago)\n\
             evil-1  no     os.id=debian: os.id is \\x1b[2Jdebian\\r\\u{202e} (facts reported 3m ago)\n\
             1 of 2 hosts matches os.id=debian\n"
        );
    }

    #[test]
    fn no_match_names_keys_no_host_has() {
        let selectors = [parse("rol=web")];
        let hosts = fleet();
        let names: BTreeSet<&str> = hosts
            .iter()
            .flat_map(|c| c.vars.keys().map(String::as_str))
            .collect();
        let resolved = resolve(&selectors, &names, "hosts").unwrap();
        let selection = evaluate(&resolved, &hosts);
        let err = NoMatch::new(selection, "hosts".into(), &resolved, &hosts);
        assert_eq!(
            err.to_string(),
            "no host of `hosts` matches `--select`: 0 of 6 hosts match rol=web; no host has a \
             variable or reports a fact named `rol` (nothing was uploaded)"
        );
    }

    #[tokio::test]
    async fn leases_are_read_as_untrusted_and_one_bad_one_spoils_only_its_host() {
        use cattle_core::store::{Condition, FileStore};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::File(FileStore::open(dir.path().to_path_buf()).unwrap());
        let lease = |host: &str, heartbeat: serde_json::Value| {
            serde_json::json!({
                "format": 2, "host": host, "nonce": "5f0c6a52-3c1e-4d8a-9a41-7d2b0c9e8f11",
                "machine": "m", "state_dir": "/var/lib/cattle/agent", "pid": 1,
                "since": "2026-01-02T03:04:06.000Z", "renewed": "2026-01-02T03:04:06.000Z",
                "renew_secs": 300, "agent_version": "0.1.0\u{1b}[31m", "heartbeat": heartbeat,
            })
        };
        let heartbeat = |facts: serde_json::Value| {
            serde_json::json!({
                "interval_secs": 30, "polled": null, "clock_offset_secs": null,
                "inbox": true, "execution": null, "last": null, "facts": facts,
            })
        };
        let mut big = lease("big-1", heartbeat(serde_json::json!({})));
        big["padding"] = serde_json::json!("x".repeat(100 * 1024));
        for (host, document) in [
            (
                "ok-1",
                lease("ok-1", heartbeat(serde_json::json!({"os.id": "debian"}))),
            ),
            ("old-1", lease("old-1", serde_json::Value::Null)),
            (
                "liar-1",
                lease("ok-1", heartbeat(serde_json::json!({"os.id": "debian"}))),
            ),
            (
                "bad-1",
                lease("bad-1", heartbeat(serde_json::json!({"OS": "debian"}))),
            ),
            ("big-1", big),
        ] {
            let key = keys::lease(&HostId::new(host).unwrap());
            let bytes = serde_json::to_vec(&document).unwrap();
            store.put(&key, bytes, Condition::Always).await.unwrap();
        }
        store
            .put("hosts/junk-1/agent.json", b"{".to_vec(), Condition::Always)
            .await
            .unwrap();
        let hosts: Vec<HostId> = [
            "ok-1", "never-1", "old-1", "liar-1", "bad-1", "big-1", "junk-1",
        ]
        .iter()
        .map(|h| HostId::new(h).unwrap())
        .collect();
        let reported = reported(&store, &hosts).await.unwrap();
        let Reported::Facts { facts, age_secs } = &reported[0] else {
            panic!("{:?}", reported[0]);
        };
        assert_eq!(facts["os.id"], Fact::Text("debian".into()));
        assert!(age_secs.is_some_and(|age| age < 60), "{age_secs:?}");
        assert_eq!(reported[1], Reported::Never);
        assert_eq!(
            reported[2],
            Reported::NoHeartbeat {
                agent_version: "0.1.0\u{1b}[31m".into()
            }
        );
        let reason = |n: usize| match &reported[n] {
            Reported::Unreadable(reason) => reason.clone(),
            other => panic!("{}: {other:?}", hosts[n]),
        };
        assert!(
            reason(3).contains("names host `ok-1`, not `liar-1`"),
            "{}",
            reason(3)
        );
        assert!(reason(4).contains("fact key `OS`"), "{}", reason(4));
        assert!(reason(5).contains("agent.json"), "{}", reason(5));
        assert!(reason(6).contains("not a valid document"), "{}", reason(6));
        // Shown escaped: the agent's version is what the host wrote.
        let candidates: Vec<Candidate> = hosts
            .iter()
            .zip(reported)
            .map(|(host, reported)| Candidate {
                host: host.clone(),
                vars: BTreeMap::new(),
                reported,
            })
            .collect();
        let table = select(&["os=debian"], &candidates).table();
        assert!(!table.contains('\u{1b}'), "{table}");
        assert!(
            table.contains("old-1    no     os.id=debian: no facts: its agent (version 0.1.0\\x1b[31m) reports none"),
            "{table}"
        );
        assert!(
            table.ends_with("1 of 7 hosts matches os.id=debian\n"),
            "{table}"
        );
    }

    #[test]
    fn the_layers_of_variables_are_those_templates_see() {
        let inventory = Inventory::parse_toml(
            "[vars]\nrole = \"any\"\n[hosts.web-01]\nport = 8081\n[hosts.db-01]\n",
            Path::new("inv.toml"),
        )
        .unwrap();
        let defaults: Vars = [("port".to_string(), Value::from(80))]
            .into_iter()
            .collect();
        let overrides = inventory::parse_var_flags(&["release=42".to_string()]).unwrap();
        for host in &inventory.hosts {
            let layered = variables(&defaults, &inventory, &overrides, host).unwrap();
            let resolved = inventory::resolve(&defaults, &inventory, &overrides, host).unwrap();
            let values: Vec<(&str, &Value)> =
                layered.iter().map(|(k, (v, _))| (k.as_str(), v)).collect();
            assert_eq!(values, resolved.iter().collect::<Vec<_>>(), "{host}");
        }
        let web = variables(
            &defaults,
            &inventory,
            &overrides,
            &HostId::new("web-01").unwrap(),
        )
        .unwrap();
        assert_eq!(web["port"].1, "inventory");
        assert_eq!(web["role"].1, "inventory");
        assert_eq!(web["release"].1, "--var");
        assert_eq!(web["host"].1, "host ID");
        let db = variables(
            &defaults,
            &inventory,
            &overrides,
            &HostId::new("db-01").unwrap(),
        )
        .unwrap();
        assert_eq!(db["port"], (Value::from(80), "cattle.toml"));
    }
}
