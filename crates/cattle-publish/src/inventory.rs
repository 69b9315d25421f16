//! The hosts an execution goes to, and the variables each of them has.
//!
//! Two forms, told apart by the file name: a hosts file (one host per line,
//! optionally `name=value` words after it, see
//! [`cattle_core::hosts::parse_hosts_file`]) and a TOML inventory (a name
//! ending in `.toml`) with variables for every host, for groups and for each
//! host:
//!
//! ```toml
//! [vars]                    # every host
//! ntp = "10.0.0.1"
//!
//! [groups.web]
//! hosts = ["web-01", "web-02"]
//! vars = { role = "web", port = 8080 }
//!
//! [hosts.web-01]            # this host's own
//! port = 8081
//!
//! [hosts.db-01]             # a host with no variables of its own
//! ```
//!
//! The hosts are those under `[hosts]` and in any group. A host's variables
//! are `[vars]`, then its groups', then its own, later ones overriding
//! earlier ones; two groups giving one host different values for a name is an
//! error unless the host sets the name itself (docs/variables.md).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use anyhow::Context as _;
use cattle_core::hosts::{HostId, parse_hosts_file};
use cattle_stdlib::steps::line_column;
use cattle_stdlib::vars::{self, Value, Vars};
use serde::Deserialize;
use toml::Spanned;

/// The hosts of an execution and what each is given.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// In the order the file gives them (a TOML inventory: by name).
    pub hosts: Vec<HostId>,
    all: Vars,
    groups: Vec<Group>,
    own: BTreeMap<HostId, Vars>,
}

#[derive(Debug, Clone)]
struct Group {
    name: String,
    hosts: Vec<HostId>,
    vars: Vars,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    vars: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    groups: BTreeMap<Spanned<String>, Spanned<RawGroup>>,
    #[serde(default)]
    hosts: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    vars: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

/// The `--hosts` that reads the hosts file from standard input.
pub const STDIN: &str = "-";

/// What messages call the hosts file read from standard input.
pub const STDIN_NAME: &str = "<stdin>";

/// `path` as messages name a hosts file: `<stdin>` for `-`.
pub fn display_name(path: &Path) -> String {
    if path == Path::new(STDIN) {
        STDIN_NAME.to_string()
    } else {
        path.display().to_string()
    }
}

impl Inventory {
    /// Read the hosts file or TOML inventory at `path`; `-` reads a hosts
    /// file from standard input, which errors call `<stdin>`.
    pub fn load(path: &Path) -> anyhow::Result<Inventory> {
        if path == Path::new(STDIN) {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
                .context("cannot read the hosts file from standard input (`--hosts -`)")?;
            return Self::parse_hosts(&text, Path::new(STDIN_NAME));
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read hosts file `{}`", path.display()))?;
        if path.extension().is_some_and(|e| e == "toml") {
            Self::parse_toml(&text, path)
        } else {
            Self::parse_hosts(&text, path)
        }
    }

    /// A hosts file: each host with the `name=value` words of its line.
    pub fn parse_hosts(text: &str, path: &Path) -> anyhow::Result<Inventory> {
        let lines = parse_hosts_file(text, path)?;
        let mut own = BTreeMap::new();
        for line in &lines {
            let mut vars = Vars::new();
            for (name, value) in &line.vars {
                check(name).map_err(|message| {
                    anyhow::anyhow!("{}:{}: {message}", path.display(), line.line)
                })?;
                vars.set(name.clone(), Value::String(value.clone()));
            }
            own.insert(line.id.clone(), vars);
        }
        Ok(Inventory {
            hosts: lines.into_iter().map(|line| line.id).collect(),
            all: Vars::new(),
            groups: Vec::new(),
            own,
        })
    }

    /// A TOML inventory (see the module's documentation).
    pub fn parse_toml(text: &str, path: &Path) -> anyhow::Result<Inventory> {
        let at = |span: Option<Range<usize>>, message: String| match span {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                anyhow::anyhow!("{}:{line}:{column}: {message}", path.display())
            }
            None => anyhow::anyhow!("{}: {message}", path.display()),
        };
        let raw: RawInventory = toml::from_str(text)
            .map_err(|err| at(err.span(), err.message().trim_end().to_string()))?;
        let table = |entries: &BTreeMap<Spanned<String>, Spanned<toml::Value>>| {
            let mut vars = Vars::new();
            for (name, value) in entries {
                check(name.get_ref()).map_err(|m| at(Some(name.span()), m))?;
                let value = vars::from_toml(value.get_ref()).map_err(|m| {
                    at(
                        Some(value.span()),
                        format!("variable `{}`: {m}", name.get_ref()),
                    )
                })?;
                vars.set(name.get_ref().clone(), value);
            }
            anyhow::Ok(vars)
        };
        let host = |name: &Spanned<String>| {
            HostId::new(name.get_ref()).map_err(|m| at(Some(name.span()), m))
        };

        let all = table(&raw.vars)?;
        let mut hosts: Vec<HostId> = Vec::new();
        let mut own = BTreeMap::new();
        for (name, entries) in &raw.hosts {
            let id = host(name)?;
            own.insert(id.clone(), table(entries)?);
            hosts.push(id);
        }
        let mut groups = Vec::new();
        for (name, group) in &raw.groups {
            vars::check_name(name.get_ref()).map_err(|m| {
                at(
                    Some(name.span()),
                    m.replace("variable name", "group name")
                        .replace("is not a variable name", "is not a group name"),
                )
            })?;
            let mut members = Vec::new();
            for member in &group.get_ref().hosts {
                let id = host(member)?;
                if members.contains(&id) {
                    return Err(at(
                        Some(member.span()),
                        format!("host `{id}` is listed twice in group `{}`", name.get_ref()),
                    ));
                }
                if !hosts.contains(&id) {
                    hosts.push(id.clone());
                }
                members.push(id);
            }
            groups.push(Group {
                name: name.get_ref().clone(),
                hosts: members,
                vars: table(&group.get_ref().vars)?,
            });
        }
        if hosts.is_empty() {
            return Err(at(
                None,
                "no hosts: the inventory has no `[hosts.NAME]` table and no group with `hosts`"
                    .to_string(),
            ));
        }
        hosts.sort();
        Ok(Inventory {
            hosts,
            all,
            groups,
            own,
        })
    }

    /// The variables the inventory gives `host`: every host's, then its
    /// groups', then its own. Two groups giving it different values for one
    /// name is an error, unless its own variables settle the name.
    pub fn vars_for(&self, host: &HostId) -> Result<Vars, String> {
        let own = self.own.get(host);
        let mut vars = self.all.clone();
        let mut from_group: BTreeMap<&str, (&str, &Value)> = BTreeMap::new();
        for group in self.groups.iter().filter(|g| g.hosts.contains(host)) {
            for (name, value) in group.vars.iter() {
                if own.is_some_and(|own| own.contains(name)) {
                    continue;
                }
                if let Some((other, earlier)) = from_group.get(name)
                    && *earlier != value
                {
                    return Err(format!(
                        "host `{host}` is in groups `{other}` and `{}`, which give variable `{name}` \
                         different values; set it for the host itself, or in one group only",
                        group.name
                    ));
                }
                from_group.insert(name, (&group.name, value));
                vars.set(name, value.clone());
            }
        }
        if let Some(own) = own {
            vars.overlay(own);
        }
        Ok(vars)
    }
}

/// `--var name=value` words: the values that override every other source.
pub fn parse_var_flags(flags: &[String]) -> anyhow::Result<Vars> {
    let mut vars = Vars::new();
    for flag in flags {
        let Some((name, value)) = flag.split_once('=') else {
            anyhow::bail!("`--var {flag}` is not `--var name=value`");
        };
        check(name).map_err(|m| anyhow::anyhow!("`--var {flag}`: {m}"))?;
        vars.set(name, Value::String(value.to_string()));
    }
    Ok(vars)
}

/// A name an inventory or `--var` may set.
fn check(name: &str) -> Result<(), String> {
    vars::check_name(name)?;
    if name == vars::HOST_VAR {
        return Err(format!(
            "`{name}` is every host's own ID, set by Cattle; choose another name"
        ));
    }
    Ok(())
}

/// Where a host's values come from, in increasing precedence: the config's
/// `[vars]`, the inventory (every host, groups, the host's own), `--var`,
/// and `host`, the host's ID.
pub fn resolve(
    defaults: &Vars,
    inventory: &Inventory,
    overrides: &Vars,
    host: &HostId,
) -> Result<Vars, String> {
    let mut vars = defaults.clone();
    vars.overlay(&inventory.vars_for(host)?);
    vars.overlay(overrides);
    vars.set(vars::HOST_VAR, Value::String(host.to_string()));
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> HostId {
        HostId::new(s).unwrap()
    }

    #[test]
    fn a_hosts_file_gives_each_host_its_words_as_strings() {
        let inv = Inventory::parse_hosts("web-01 role=web port=8080\ndb-01\n", Path::new("hosts"))
            .unwrap();
        assert_eq!(inv.hosts, [id("web-01"), id("db-01")]);
        let web = inv.vars_for(&id("web-01")).unwrap();
        assert_eq!(web.get("port"), Some(&Value::from("8080")));
        assert!(inv.vars_for(&id("db-01")).unwrap().is_empty());
        let err = Inventory::parse_hosts("a\nweb-01 my-var=1\n", Path::new("hosts")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("hosts:2: `my-var` is not a variable name"),
            "{err}"
        );
        let err = Inventory::parse_hosts("web-01 host=x\n", Path::new("hosts")).unwrap_err();
        assert!(err.to_string().contains("set by Cattle"), "{err}");
    }

    const TOML: &str = r#"
[vars]
ntp = "10.0.0.1"
port = 80

[groups.web]
hosts = ["web-01", "web-02"]
vars = { role = "web", port = 8080 }

[groups.eu]
hosts = ["web-02", "db-01"]
vars = { dc = "eu", role = "eu" }

[hosts.web-01]
port = 8081

[hosts.web-02]
role = "edge"
"#;

    #[test]
    fn a_toml_inventory_layers_all_groups_and_the_host() {
        let inv = Inventory::parse_toml(TOML, Path::new("inv.toml")).unwrap();
        assert_eq!(inv.hosts, [id("db-01"), id("web-01"), id("web-02")]);
        let web1 = inv.vars_for(&id("web-01")).unwrap();
        assert_eq!(web1.get("port"), Some(&Value::from(8081)));
        assert_eq!(web1.get("role"), Some(&Value::from("web")));
        assert_eq!(web1.get("ntp"), Some(&Value::from("10.0.0.1")));
        // Two groups disagree on `role`; the host settles it.
        let web2 = inv.vars_for(&id("web-02")).unwrap();
        assert_eq!(web2.get("role"), Some(&Value::from("edge")));
        assert_eq!(web2.get("dc"), Some(&Value::from("eu")));
        assert_eq!(web2.get("port"), Some(&Value::from(8080)));
        let db = inv.vars_for(&id("db-01")).unwrap();
        assert_eq!(db.get("port"), Some(&Value::from(80)));
    }

    #[test]
    fn groups_that_disagree_are_an_error_naming_both() {
        let text = TOML.replace("role = \"edge\"", "");
        let inv = Inventory::parse_toml(&text, Path::new("inv.toml")).unwrap();
        let err = inv.vars_for(&id("web-02")).unwrap_err();
        assert_eq!(
            err,
            "host `web-02` is in groups `eu` and `web`, which give variable `role` different \
             values; set it for the host itself, or in one group only"
        );
    }

    #[test]
    fn toml_errors_name_line_and_column() {
        for (text, expected) in [
            (
                "[hosts.\"a/b\"]\n",
                "inv.toml:1:8: host ID `a/b` contains '/'",
            ),
            (
                "[hosts.a]\nmy-port = 1\n",
                "inv.toml:2:1: `my-port` is not a variable name",
            ),
            (
                "[groups.g]\nhosts = [\"a\", \"a\"]\n",
                "inv.toml:2:15: host `a` is listed twice",
            ),
            ("[hostz.a]\n", "inv.toml:1:2: unknown field `hostz`"),
            ("[vars]\nx = 1\n", "inv.toml: no hosts"),
        ] {
            let err = Inventory::parse_toml(text, Path::new("inv.toml")).unwrap_err();
            assert!(err.to_string().starts_with(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn precedence_is_defaults_inventory_flags_then_host() {
        let inv = Inventory::parse_toml(TOML, Path::new("inv.toml")).unwrap();
        let defaults: Vars = [
            ("port".to_string(), Value::from(1)),
            ("extra".to_string(), Value::from("d")),
        ]
        .into_iter()
        .collect();
        let flags = parse_var_flags(&["port=9".to_string()]).unwrap();
        let vars = resolve(&defaults, &inv, &flags, &id("web-01")).unwrap();
        assert_eq!(vars.get("port"), Some(&Value::from("9")));
        assert_eq!(vars.get("extra"), Some(&Value::from("d")));
        assert_eq!(vars.get("host"), Some(&Value::from("web-01")));
        let vars = resolve(&defaults, &inv, &Vars::new(), &id("web-01")).unwrap();
        assert_eq!(vars.get("port"), Some(&Value::from(8081)));
        assert!(parse_var_flags(&["port".to_string()]).is_err());
        assert!(parse_var_flags(&["host=x".to_string()]).is_err());
    }
}
