//! `template`: a file at `path` rendered from a template of the config with
//! the host's variables, with the mode and owner given, as `file` keeps it.
//!
//! The template is rendered when the plan is made: by `cattle publish` for
//! every host (so an undefined variable or a syntax error fails before
//! anything is uploaded, naming the template's line), and again by the host
//! from the same signed bundle and values. From there on the step is a `file`
//! step with the rendered bytes as its contents.

use std::io::Read;

use super::FacilitySpec;
use super::file::{Contents, DEFAULT_MODE, FileStep, Wanted};
use crate::args::{ArgError, Args};
use crate::facility::Facility;

pub(crate) const SPEC: FacilitySpec = FacilitySpec {
    name: "template",
    args: &["path", "source", "mode", "owner", "group"],
    summary: "a file rendered from a template of the config with the host's variables",
    build,
};

/// The largest template read; a rendered file is as large as it renders.
const MAX_TEMPLATE_BYTES: u64 = 16 * 1024 * 1024;

fn build(args: &mut Args<'_>) -> Result<Box<dyn Facility>, ArgError> {
    let path = args.absolute_path("path")?;
    let source = args.config_file("source")?;
    let mode = args.optional_mode("mode")?;
    let owner = args.optional_str("owner")?;
    let group = args.optional_str("group")?;

    let shown = source.display().to_string();
    let full = args.config_dir().join(&source);
    let mut text = String::new();
    std::fs::File::open(&full)
        .and_then(|file| file.take(MAX_TEMPLATE_BYTES + 1).read_to_string(&mut text))
        .map_err(|err| {
            args.error("source", format!("cannot read template `{shown}`: {err}"))
                .with_hint("a template is UTF-8 text")
        })?;
    if text.len() as u64 > MAX_TEMPLATE_BYTES {
        return Err(args.error(
            "source",
            format!(
                "template `{shown}` is larger than {} MiB",
                MAX_TEMPLATE_BYTES >> 20
            ),
        ));
    }
    let rendered = crate::vars::render(&text, args.vars()).map_err(|err| {
        let line = err.line.map(|l| format!(":{l}")).unwrap_or_default();
        let error = args.error(
            "source",
            format!("template `{shown}{line}`: {}", err.message),
        );
        if err.message.starts_with("undefined variable") {
            error.with_hint(
                "give it a default in `[vars]` of cattle.toml, a value in the inventory, \
                 or `--var name=value`",
            )
        } else {
            error
        }
    })?;
    Ok(Box::new(FileStep::Present(Wanted {
        path,
        contents: Contents::Rendered(source, rendered.into_bytes()),
        mode: mode.unwrap_or(DEFAULT_MODE),
        owner,
        group,
    })))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::facility::Environment;
    use crate::facility::testing::converges;
    use crate::steps::Config;
    use crate::vars::Vars;

    fn config(dir: &Path, steps: &str) -> Config {
        Config::parse(steps, &dir.join("cattle.toml"), dir).unwrap()
    }

    #[test]
    fn renders_with_the_hosts_values_then_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::fs::write(
            dir.path().join("templates/app.conf.j2"),
            "listen {{ port }}\n{% for p in peers %}peer {{ p }}\n{% endfor %}",
        )
        .unwrap();
        let dest = root.path().join("app.conf");
        let config = config(
            dir.path(),
            &format!(
                "[vars]\nport = 80\n[[step]]\nfacility = \"template\"\nsource = \"templates/app.conf.j2\"\n\
                 path = \"{}\"\nmode = \"0600\"\n",
                dest.display()
            ),
        );
        let mut vars = config.defaults().clone();
        vars.set("port", 8080.into());
        vars.set("peers", serde_json::json!(["a", "b"]));
        let plan = config.plan(&vars).unwrap();
        assert_eq!(
            plan.steps[0].facility.describe(),
            format!(
                "file {} has template templates/app.conf.j2 rendered, mode 0600",
                dest.display()
            )
        );
        converges(
            plan.steps[0].facility.as_ref(),
            &Environment::new(dir.path()),
            root.path(),
        );
        assert_eq!(
            std::fs::read_to_string(&dest).unwrap(),
            "listen 8080\npeer a\npeer b\n"
        );
    }

    #[test]
    fn the_diff_shows_what_the_rendered_template_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.j2"),
            "listen {{ port }}\nname {{ host }}\n",
        )
        .unwrap();
        let dest = root.path().join("app.conf");
        std::fs::write(&dest, "listen 80\nname web-1\n").unwrap();
        std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let config = config(
            dir.path(),
            &format!(
                "[[step]]\nfacility = \"template\"\nsource = \"t.j2\"\npath = \"{}\"\n",
                dest.display()
            ),
        );
        let vars: Vars = [
            ("port".to_string(), serde_json::json!(8080)),
            ("host".to_string(), serde_json::json!("web-1")),
        ]
        .into_iter()
        .collect();
        let plan = config.plan(&vars).unwrap();
        let env = Environment::new(dir.path());
        let mut output = |_: &str| {};
        let mut ctx = crate::facility::Context::new(&env, Vec::new(), None, &mut output);
        let diff = plan.steps[0].facility.diff(&mut ctx).unwrap().unwrap();
        let p = dest.display();
        assert_eq!(
            diff.render(false),
            format!(
                "--- {p} (on the host)\n+++ {p} (as the step leaves it)\n\
                 @@ -1,2 +1,2 @@\n-listen 80\n+listen 8080\n name web-1"
            )
        );
        assert_eq!(
            std::fs::read_to_string(&dest).unwrap(),
            "listen 80\nname web-1\n"
        );
    }

    #[test]
    fn an_undefined_variable_names_the_template_line_and_points_at_source() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.j2"), "a\nb {{ role }}\n").unwrap();
        let config = config(
            dir.path(),
            "[[step]]\nfacility = \"template\"\nsource = \"t.j2\"\npath = \"/etc/x\"\n",
        );
        let err = config.plan(&Vars::new()).unwrap_err();
        assert_eq!(err.position, Some((3, 10)));
        assert_eq!(err.message, "template `t.j2:2`: undefined variable `role`");
        assert!(err.hint.unwrap().contains("[vars]"));

        std::fs::write(dir.path().join("t.j2"), "{% if x %}\n").unwrap();
        let err = config.plan(&Vars::new()).unwrap_err();
        assert!(
            err.message.starts_with("template `t.j2:"),
            "{}",
            err.message
        );
        assert!(err.message.contains("syntax error"), "{}", err.message);
    }
}
