//! Variables: what differs between the hosts that run one config.
//!
//! A config declares defaults in its steps file (`[vars]`); an inventory and
//! `--var` give hosts their own values (docs/variables.md has the order in
//! which they override each other). Whoever resolves them for a host hands
//! the complete set to [`crate::Config::plan`]: any string in a step's
//! arguments may use `{{ name }}` (Jinja2 syntax), and the `template` facility
//! renders a file of the config with them. A name a string uses and the host
//! does not have is an error before anything runs, never an empty string.
//!
//! Rendering reads nothing but the text and the values it is given (no
//! loader, no includes), and is bounded: a template that loops for ever runs
//! out of fuel and fails.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

/// A variable's value: a string, number, boolean, array or table (JSON's
/// types without `null`).
pub type Value = serde_json::Value;

/// The name under which every host finds its own ID.
pub const HOST_VAR: &str = "host";

/// The longest variable name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// How much work one rendering may do (minijinja's fuel: about one unit per
/// instruction). Far above any real template; a runaway loop fails instead of
/// hanging the publish or the step.
const FUEL: u64 = 5_000_000;

/// The variables of one host, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Vars(BTreeMap<String, Value>);

impl Vars {
    pub fn new() -> Vars {
        Vars::default()
    }

    /// Set `name` to `value`, replacing what it had.
    pub fn set(&mut self, name: impl Into<String>, value: Value) {
        self.0.insert(name.into(), value);
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// `other`'s values over these: where both have a name, `other` wins.
    pub fn overlay(&mut self, other: &Vars) {
        for (name, value) in &other.0 {
            self.0.insert(name.clone(), value.clone());
        }
    }
}

impl FromIterator<(String, Value)> for Vars {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Vars(iter.into_iter().collect())
    }
}

/// Whether `name` can be a variable: an ASCII letter or `_`, then letters,
/// digits and `_`, at most [`MAX_NAME_LEN`] characters: what a template can
/// name without quoting, and what a hosts file can write as `name=value`.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        let shown: String = name.chars().take(80).collect();
        return Err(format!(
            "`{shown}` is not a variable name: use a letter or `_`, then letters, digits and `_`"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "variable name `{name}` is longer than {MAX_NAME_LEN} characters"
        ));
    }
    Ok(())
}

/// A TOML value as a variable's value; TOML's dates and times have no
/// counterpart and are refused (quote them to make them strings).
pub fn from_toml(value: &toml::Value) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(n) => Value::from(*n),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("{f} cannot be a variable's value (not a finite number)"))?,
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => {
            return Err(format!(
                "a date or time ({d}) cannot be a variable's value; quote it to make it a string"
            ));
        }
        toml::Value::Array(items) => {
            Value::Array(items.iter().map(from_toml).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), from_toml(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Whether `text` is a template: it has `{{`, `{%` or `{#`. Anything else is
/// used as it is.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Why a text could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// 1-based line of the text the error is on, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Render `text` with `vars`: `text` itself when it is not a template.
///
/// Strict: a name `vars` lacks is an error naming it, as is anything the
/// template does with an undefined value.
pub fn render(text: &str, vars: &Vars) -> Result<String, RenderError> {
    if !is_template(text) {
        return Ok(text.to_string());
    }
    let env = environment();
    let template = env.template_from_str(text).map_err(render_error)?;
    let mut missing: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !vars.contains(name) && env.globals().all(|(g, _)| g != name))
        .collect();
    missing.sort();
    if let Some(name) = missing.first() {
        let mut message = format!("undefined variable `{name}`");
        if missing.len() > 1 {
            let others: Vec<String> = missing[1..].iter().map(|n| format!("`{n}`")).collect();
            message.push_str(&format!(" (and {})", others.join(", ")));
        }
        return Err(RenderError {
            line: line_of(text, name),
            message,
        });
    }
    template
        .render(minijinja::Value::from_serialize(&vars.0))
        .map_err(render_error)
}

/// The one template environment: no loader, nothing escaped, strict about
/// undefined values, bounded by [`FUEL`].
fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_fuel(Some(FUEL));
        // Keep a trailing newline: a rendered file ends as its template does.
        env.set_keep_trailing_newline(true);
        env
    })
}

fn render_error(err: minijinja::Error) -> RenderError {
    let mut message = match err.kind() {
        minijinja::ErrorKind::OutOfFuel => {
            "the template does too much work (a loop that does not end?)".to_string()
        }
        kind => match err.detail() {
            Some(detail) => format!("{kind}: {detail}"),
            None => kind.to_string(),
        },
    };
    if let Some(source) = std::error::Error::source(&err) {
        message.push_str(&format!(": {source}"));
    }
    RenderError {
        line: err.line(),
        message,
    }
}

/// The line where `name` is first used inside a tag of `text`, if it can be found.
fn line_of(text: &str, name: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut from = 0;
    while let Some(at) = text[from..].find(name) {
        let start = from + at;
        let end = start + name.len();
        let before_ok = start == 0 || !is_word(bytes[start - 1]);
        let after_ok = end == bytes.len() || !is_word(bytes[end]);
        let in_tag = text[..start]
            .rfind("{{")
            .into_iter()
            .chain(text[..start].rfind("{%"))
            .max()
            > text[..start]
                .rfind("}}")
                .into_iter()
                .chain(text[..start].rfind("%}"))
                .max();
        if before_ok && after_ok && in_tag {
            return Some(text[..start].matches('\n').count() + 1);
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, Value)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn plain_text_is_used_as_it_is() {
        assert_eq!(
            render("/srv/{app}/x", &Vars::new()).unwrap(),
            "/srv/{app}/x"
        );
    }

    #[test]
    fn renders_strings_numbers_lists_and_filters() {
        let v = vars(&[
            ("role", Value::from("web")),
            ("port", Value::from(8080)),
            ("peers", serde_json::json!(["a", "b"])),
        ]);
        assert_eq!(
            render("{{ role }}:{{ port }} {{ peers | join(',') }}", &v).unwrap(),
            "web:8080 a,b"
        );
        assert_eq!(
            render("{% for p in peers %}server {{ p }}\n{% endfor %}", &v).unwrap(),
            "server a\nserver b\n"
        );
    }

    #[test]
    fn an_undefined_name_is_an_error_naming_it_and_its_line() {
        let v = vars(&[("role", Value::from("web"))]);
        let err = render("a\n{{ role }}\nlisten {{ prot }}\n{{ zz }}", &v).unwrap_err();
        assert_eq!(err.message, "undefined variable `prot` (and `zz`)");
        assert_eq!(err.line, Some(3));
        // Built-in functions are not variables.
        assert_eq!(render("{{ range(2) | list | length }}", &v).unwrap(), "2");
        // Nor are names a loop sets.
        assert_eq!(
            render("{% for x in [1] %}{{ x }}{% endfor %}", &v).unwrap(),
            "1"
        );
    }

    #[test]
    fn a_syntax_error_has_its_line() {
        let err = render("ok\n{{ role }\n", &Vars::new()).unwrap_err();
        assert_eq!(err.line, Some(2), "{err:?}");
        assert!(err.message.starts_with("syntax error"), "{}", err.message);
    }

    #[test]
    fn an_undefined_attribute_is_an_error_not_an_empty_string() {
        let v = vars(&[("db", serde_json::json!({"host": "x"}))]);
        assert_eq!(render("{{ db.host }}", &v).unwrap(), "x");
        assert!(render("{{ db.port }}", &v).is_err());
    }

    #[test]
    fn a_runaway_loop_runs_out_of_fuel() {
        let err = render(
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            &Vars::new(),
        )
        .unwrap_err();
        assert!(err.message.contains("too much work"), "{}", err.message);
    }

    #[test]
    fn names_are_identifiers() {
        for good in ["port", "_x", "a1_b", &"a".repeat(64)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "1a", "a-b", "a.b", "é", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn toml_values_convert_and_dates_are_refused() {
        let table: toml::Table = toml::from_str(
            "a = 1\nb = [true, \"x\"]\nc = { d = 1.5 }\nwhen = 1979-05-27T07:32:00Z\n",
        )
        .unwrap();
        assert_eq!(from_toml(&table["a"]).unwrap(), serde_json::json!(1));
        assert_eq!(
            from_toml(&table["b"]).unwrap(),
            serde_json::json!([true, "x"])
        );
        assert_eq!(
            from_toml(&table["c"]).unwrap(),
            serde_json::json!({"d": 1.5})
        );
        assert!(from_toml(&table["when"]).unwrap_err().contains("quote it"));
    }
}
