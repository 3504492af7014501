//! The SQL templates, built in or overridden from a directory the user controls.
//!
//! Generated SQL comes from minijinja templates so a team can change what is generated (grants,
//! comments, security options) without patching viewgate: copy `view-templates/` and point
//! `--templates DIR` or the spec's `options.templates` at the copy. Any file missing from that
//! directory falls back to the built-in one, which is compiled into the binary so viewgate works
//! without the folder. The `ident`, `literal` and `comment` filters are how templates quote.

use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use super::error::ControlError;
use super::quote::{quote_ident, quote_literal};

pub const HEADER: &str = "header.sql.j2";
pub const VERSION: &str = "version.sql.j2";
pub const VIEW: &str = "view.sql.j2";
pub const VIEW_DEFAULTS: &str = "view_defaults.sql.j2";
pub const WRITE_TRIGGER: &str = "write_trigger.sql.j2";
pub const MAPPING_FUNCTIONS: &str = "mapping_functions.sql.j2";
pub const DROP_MAPPING_FUNCTIONS: &str = "drop_mapping_functions.sql.j2";
pub const DROP_VIEW: &str = "drop_view.sql.j2";
pub const DROP_VERSION_CATALOG: &str = "drop_version_catalog.sql.j2";
pub const VERSION_CATALOG: &str = "version_catalog.sql.j2";
pub const CATALOG: &str = "catalog.sql.j2";

/// The built-in templates, the same files as `view-templates/` at build time.
const BUILT_IN: &[(&str, &str)] = &[
    (HEADER, include_str!("../../view-templates/header.sql.j2")),
    (VERSION, include_str!("../../view-templates/version.sql.j2")),
    (VIEW, include_str!("../../view-templates/view.sql.j2")),
    (
        VIEW_DEFAULTS,
        include_str!("../../view-templates/view_defaults.sql.j2"),
    ),
    (
        WRITE_TRIGGER,
        include_str!("../../view-templates/write_trigger.sql.j2"),
    ),
    (
        MAPPING_FUNCTIONS,
        include_str!("../../view-templates/mapping_functions.sql.j2"),
    ),
    (
        DROP_MAPPING_FUNCTIONS,
        include_str!("../../view-templates/drop_mapping_functions.sql.j2"),
    ),
    (
        DROP_VIEW,
        include_str!("../../view-templates/drop_view.sql.j2"),
    ),
    (
        DROP_VERSION_CATALOG,
        include_str!("../../view-templates/drop_version_catalog.sql.j2"),
    ),
    (CATALOG, include_str!("../../view-templates/catalog.sql.j2")),
    (
        VERSION_CATALOG,
        include_str!("../../view-templates/version_catalog.sql.j2"),
    ),
];

/// A loaded template set.
pub struct Templates {
    environment: Environment<'static>,
}

impl Templates {
    /// The built-in templates.
    pub fn built_in() -> Self {
        Self::with_loader(None)
    }

    /// Templates from `dir` where it has them, built-in ones otherwise.
    pub fn from_dir(dir: &Path) -> Result<Self, ControlError> {
        if !dir.is_dir() {
            return Err(ControlError::Template {
                name: dir.display().to_string(),
                message: "the templates directory does not exist".into(),
            });
        }
        Ok(Self::with_loader(Some(dir.to_owned())))
    }

    /// `from_dir` when a directory is given, else built-in.
    pub fn load(dir: Option<&Path>) -> Result<Self, ControlError> {
        match dir {
            Some(dir) => Self::from_dir(dir),
            None => Ok(Self::built_in()),
        }
    }

    fn with_loader(dir: Option<PathBuf>) -> Self {
        let mut environment = Environment::new();
        environment.set_trim_blocks(true);
        environment.set_lstrip_blocks(true);
        environment.set_keep_trailing_newline(true);
        // A misspelt variable in a template must fail loudly, not render as nothing.
        environment.set_undefined_behavior(UndefinedBehavior::Strict);
        environment.add_filter("ident", |name: String| quote_ident(&name));
        environment.add_filter("literal", |value: String| quote_literal(&value));
        environment.add_filter("comment", |text: String| single_line(&text));
        environment.set_loader(move |name| {
            if let Some(dir) = &dir
                && is_plain_file_name(name)
            {
                let path = dir.join(name);
                if path.is_file() {
                    return std::fs::read_to_string(&path).map(Some).map_err(|error| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("cannot read {}: {error}", path.display()),
                        )
                    });
                }
            }
            Ok(BUILT_IN
                .iter()
                .find(|(built_in, _)| *built_in == name)
                .map(|(_, text)| (*text).to_owned()))
        });
        Templates { environment }
    }

    /// Renders template `name` with `context`.
    pub fn render(&self, name: &str, context: impl Serialize) -> Result<String, ControlError> {
        let template_error = |error: minijinja::Error| ControlError::Template {
            name: name.to_owned(),
            message: format!("{error:#}"),
        };
        self.environment
            .get_template(name)
            .map_err(template_error)?
            .render(context)
            .map_err(template_error)
    }
}

/// Template names are file names in the templates directory, never paths out of it.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\\']) && name != ".." && name != "."
}

/// Text safe inside a `--` comment: control characters (a newline would end it) become spaces.
fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_quote_names_and_literals() {
        let templates = Templates::built_in();
        let mut environment = templates.environment.clone();
        environment
            .add_template(
                "probe",
                "{{ name | ident }} {{ text | literal }} -- {{ note | comment }}",
            )
            .expect("template compiles");
        let rendered = environment
            .get_template("probe")
            .and_then(|template| {
                template
                    .render(minijinja::context! { name => "a\"b", text => "it's", note => "x\ny" })
            })
            .expect("renders");
        assert_eq!(rendered, "\"a\"\"b\" 'it''s' -- x y");
    }

    #[test]
    fn a_directory_overrides_single_templates_and_falls_back_for_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(VERSION), "-- custom {{ version.name }}").expect("write");
        let templates = Templates::from_dir(dir.path()).expect("dir exists");
        let context = minijinja::context! { version => minijinja::context! { name => "v9", views => Vec::<u8>::new(), own_schema => () } };
        assert_eq!(
            templates.render(VERSION, &context).expect("renders"),
            "-- custom v9"
        );
        let built_in = templates.render(CATALOG, ()).expect("falls back");
        assert!(built_in.contains("CREATE SCHEMA IF NOT EXISTS viewgate"));
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let error = Templates::from_dir(Path::new("/nonexistent/viewgate-templates"))
            .err()
            .expect("missing dir fails");
        assert!(error.to_string().contains("does not exist"), "{error}");
    }
}
