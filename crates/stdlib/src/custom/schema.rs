//! A custom facility's argument schema, `facilities/NAME.toml`: the arguments
//! its steps take, their types, which are required and their defaults.
//!
//! With a schema, the steps parser checks every step of the facility as it
//! checks a built-in's, so a typo fails on the operator's machine (`cattle
//! publish`) with the step's file, line and column; without one, any
//! arguments are passed to the program as they are.
//!
//! ```toml
//! summary = "an SSH public key in a user's authorized_keys"
//!
//! [args.user]
//! type = "string"
//! required = true
//!
//! [args.home]
//! type = "string"
//! default = "/home/deploy"
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::args::{ArgError, Args, list};
use crate::steps::{COMMON_KEYS, PlanError, line_column};

/// The type an argument must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Integer,
    Boolean,
    Array,
    Table,
}

impl Kind {
    /// Every type, as a schema spells it.
    pub(crate) const NAMES: &'static [&'static str] =
        &["string", "integer", "boolean", "array", "table"];

    fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "string" => Kind::String,
            "integer" => Kind::Integer,
            "boolean" => Kind::Boolean,
            "array" => Kind::Array,
            "table" => Kind::Table,
            _ => return None,
        })
    }

    /// How messages say it, as for built-in arguments ("must be a string").
    fn expected(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Integer => "an integer",
            Kind::Boolean => "`true` or `false`",
            Kind::Array => "an array",
            Kind::Table => "a table",
        }
    }

    fn matches(self, value: &toml::Value) -> bool {
        matches!(
            (self, value),
            (Kind::String, toml::Value::String(_))
                | (Kind::Integer, toml::Value::Integer(_))
                | (Kind::Boolean, toml::Value::Boolean(_))
                | (Kind::Array, toml::Value::Array(_))
                | (Kind::Table, toml::Value::Table(_))
        )
    }
}

/// One argument a schema declares.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArgSpec {
    pub name: String,
    pub kind: Kind,
    pub required: bool,
    /// Passed to the program when a step leaves the argument out.
    pub default: Option<toml::Value>,
}

/// What `facilities/NAME.toml` says.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Schema {
    /// One line describing what the facility keeps in place; the step's
    /// description in logs and status.
    pub summary: Option<String>,
    /// In the order the file declares them, for hints.
    pub args: Vec<ArgSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    summary: Option<Spanned<String>>,
    #[serde(default)]
    args: BTreeMap<Spanned<String>, Spanned<RawArg>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArg {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    required: Option<Spanned<bool>>,
    default: Option<Spanned<toml::Value>>,
    /// For people reading the schema; Cattle does not use it.
    #[allow(dead_code)]
    description: Option<String>,
}

impl Schema {
    /// Read the schema text `source` of file `file`; errors name that file,
    /// line and column.
    pub(crate) fn parse(source: &str, file: &Path) -> Result<Schema, PlanError> {
        let error_at =
            |span: Option<Range<usize>>, message: String, hint: Option<String>| PlanError {
                file: file.to_path_buf(),
                position: span.map(|s| line_column(source, s.start)),
                message,
                hint,
            };
        let raw: RawSchema = toml::from_str(source).map_err(|err| {
            error_at(
                err.span(),
                err.message().trim_end().to_string(),
                Some(
                    "a schema has `summary = \"...\"` and one `[args.NAME]` table per argument, \
                     with `type`, and optionally `required` or `default`"
                        .to_string(),
                ),
            )
        })?;

        let summary = match raw.summary {
            Some(summary)
                if summary.get_ref().trim().is_empty() || summary.get_ref().contains('\n') =>
            {
                return Err(error_at(
                    Some(summary.span()),
                    "`summary` must be one line of text".to_string(),
                    None,
                ));
            }
            summary => summary.map(Spanned::into_inner),
        };

        let mut declared: Vec<(Range<usize>, String, Spanned<RawArg>)> = raw
            .args
            .into_iter()
            .map(|(name, arg)| (name.span(), name.into_inner(), arg))
            .collect();
        declared.sort_by_key(|(span, _, _)| span.start);
        let mut args = Vec::with_capacity(declared.len());
        for (span, name, arg) in declared {
            if COMMON_KEYS.contains(&name.as_str()) {
                return Err(error_at(
                    Some(span),
                    format!("`{name}` is a key of every step, not an argument"),
                    Some(format!(
                        "every step takes {}; choose another name",
                        list(COMMON_KEYS)
                    )),
                ));
            }
            if !super::is_valid_name(&name) {
                return Err(error_at(
                    Some(span),
                    format!("argument name `{name}` is not valid"),
                    Some(super::NAME_RULE.to_string()),
                ));
            }
            let arg = arg.into_inner();
            let Some(kind) = Kind::parse(arg.kind.get_ref()) else {
                return Err(error_at(
                    Some(arg.kind.span()),
                    format!(
                        "argument `{name}` has unknown type `{}`",
                        arg.kind.get_ref()
                    ),
                    Some(format!("valid types: {}", list(Kind::NAMES))),
                ));
            };
            let required = arg.required.as_ref().is_some_and(|r| *r.get_ref());
            if let Some(default) = &arg.default {
                if required {
                    return Err(error_at(
                        Some(default.span()),
                        format!("argument `{name}` is required and has a default"),
                        Some(
                            "a default is for arguments steps may leave out: remove one of them"
                                .to_string(),
                        ),
                    ));
                }
                if !kind.matches(default.get_ref()) {
                    return Err(error_at(
                        Some(default.span()),
                        format!(
                            "the default of `{name}` must be {}, not {}",
                            kind.expected(),
                            default.get_ref().type_str()
                        ),
                        None,
                    ));
                }
            }
            args.push(ArgSpec {
                name,
                kind,
                required,
                default: arg.default.map(Spanned::into_inner),
            });
        }
        Ok(Schema { summary, args })
    }

    /// The names of the arguments, in the file's order.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.args.iter().map(|arg| arg.name.as_str()).collect()
    }

    /// Check a step's arguments `values` (already known to be declared) of
    /// facility `facility`, spanning `step_span`: types, and the required
    /// ones present. Errors point where built-ins' do.
    pub(crate) fn check(
        &self,
        facility: &str,
        values: &BTreeMap<String, (Range<usize>, Spanned<toml::Value>)>,
        step_span: &Range<usize>,
    ) -> Result<(), ArgError> {
        for arg in &self.args {
            let Some((_, value)) = values.get(&arg.name) else {
                if arg.required {
                    return Err(ArgError {
                        span: step_span.clone(),
                        message: format!("step `{facility}` is missing argument `{}`", arg.name),
                        hint: Some(format!(
                            "add `{} = ...` to this step; `{facility}` takes {}",
                            arg.name,
                            list(&self.names())
                        )),
                    });
                }
                continue;
            };
            if arg.kind.matches(value.get_ref()) {
                continue;
            }
            let err = Args::wrong_type(value, &arg.name, arg.kind.expected());
            // The same value without quotes would do: say so, as built-ins do.
            let unquoted = match (arg.kind, value.get_ref()) {
                (Kind::Boolean, toml::Value::String(s)) => matches!(s.as_str(), "true" | "false"),
                (Kind::Integer, toml::Value::String(s)) => s.parse::<i64>().is_ok(),
                _ => false,
            };
            return Err(match value.get_ref() {
                toml::Value::String(s) if unquoted => {
                    err.with_hint(format!("write `{} = {s}`, without quotes", arg.name))
                }
                _ => err,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> Result<Schema, PlanError> {
        Schema::parse(source, Path::new("cfg/facilities/greet.toml"))
    }

    #[test]
    fn reads_summary_and_arguments_in_order() {
        let schema = parse(
            "summary = \"a greeting\"\n\
             [args.name]\ntype = \"string\"\nrequired = true\ndescription = \"who\"\n\
             [args.count]\ntype = \"integer\"\ndefault = 2\n\
             [args.loud]\ntype = \"boolean\"\n",
        )
        .unwrap();
        assert_eq!(schema.summary.as_deref(), Some("a greeting"));
        assert_eq!(schema.names(), ["name", "count", "loud"]);
        assert!(schema.args[0].required);
        assert_eq!(schema.args[1].default, Some(toml::Value::Integer(2)));
        assert_eq!(schema.args[2].kind, Kind::Boolean);
        assert_eq!(parse("").unwrap(), Schema::default());
    }

    #[test]
    fn an_invalid_schema_names_its_file_line_and_column() {
        for (source, position, message) in [
            (
                "[args.name]\ntpye = \"string\"\n",
                (2, 1),
                "unknown field `tpye`",
            ),
            (
                "[args.name]\ntype = \"strin\"\n",
                (2, 8),
                "argument `name` has unknown type `strin`",
            ),
            (
                "[args.name]\nrequired = true\n",
                (1, 1),
                "missing field `type`",
            ),
            (
                "[args.n]\ntype = \"integer\"\ndefault = \"2\"\n",
                (3, 11),
                "the default of `n` must be an integer, not string",
            ),
            (
                "[args.n]\ntype = \"string\"\nrequired = true\ndefault = \"x\"\n",
                (4, 11),
                "argument `n` is required and has a default",
            ),
            (
                "[args.timeout]\ntype = \"string\"\n",
                (1, 7),
                "`timeout` is a key of every step, not an argument",
            ),
            (
                "[args.Name]\ntype = \"string\"\n",
                (1, 7),
                "argument name `Name` is not valid",
            ),
            (
                "summary = \"two\\nlines\"\n",
                (1, 11),
                "`summary` must be one line of text",
            ),
            ("sumary = \"x\"\n", (1, 1), "unknown field `sumary`"),
        ] {
            let err = parse(source).unwrap_err();
            assert_eq!(err.position, Some(position), "{source}: {err}");
            assert!(err.message.starts_with(message), "{source}: {err}");
            assert!(
                err.to_string().starts_with(&format!(
                    "cfg/facilities/greet.toml:{}:{}: ",
                    position.0, position.1
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn every_type_accepts_its_values_only() {
        let value = |text: &str| -> toml::Value {
            let table: toml::Table = toml::from_str(&format!("v = {text}")).unwrap();
            table["v"].clone()
        };
        for (kind, good, bad) in [
            (Kind::String, "\"x\"", "1"),
            (Kind::Integer, "-3", "1.5"),
            (Kind::Boolean, "false", "\"false\""),
            (Kind::Array, "[1, \"a\"]", "{ a = 1 }"),
            (Kind::Table, "{ a = [1] }", "[]"),
        ] {
            assert!(kind.matches(&value(good)), "{kind:?} {good}");
            assert!(!kind.matches(&value(bad)), "{kind:?} {bad}");
        }
    }
}
