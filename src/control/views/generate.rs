//! Rendering a plan into SQL: the reviewable script `views generate` prints and the pieces
//! `views apply` runs, each with the checksum the catalog records.
//!
//! Output is deterministic (spec order for versions, tables and columns; sorted maps for
//! write-backs; no timestamps), so the same spec, templates and server always give the same
//! bytes and the same checksums.

use minijinja::context;

use super::checksum::sha256_hex;
use super::mapping_functions;
use super::plan::{Plan, ViewPlan};
use crate::control::error::ControlError;
use crate::control::templates::{self, Templates};
use crate::model::catalog_substitutes::{self, substitute_schema};
use crate::model::identifier::MIGRATION_NAME_PREFIX;

/// All SQL for a plan.
#[derive(Debug, Clone)]
pub struct GeneratedSql {
    pub header: String,
    pub versions: Vec<GeneratedVersion>,
    /// Checksum over every version's checksum: what the spec as a whole generates.
    pub checksum: String,
}

#[derive(Debug, Clone)]
pub struct GeneratedVersion {
    pub name: String,
    /// SQL run before the version's views (e.g. its schema in the schema layout).
    pub preamble: String,
    pub views: Vec<GeneratedView>,
    /// SQL run after the views: the version's catalog substitutes (`version_catalog.sql.j2`).
    pub catalog: String,
    /// sha256 of the version's SQL (preamble, views and catalog substitutes).
    pub checksum: String,
}

#[derive(Debug, Clone)]
pub struct GeneratedView {
    pub plan: ViewPlan,
    /// The view made anew (dropped first if it exists): what is reviewed and checksummed.
    pub sql: String,
    /// The same with the view replaced in place (`CREATE OR REPLACE VIEW`), which apply tries
    /// first where the view exists.
    pub in_place_sql: String,
}

impl GeneratedSql {
    /// The full script, for review.
    pub fn script(&self) -> String {
        let mut script = self.header.clone();
        for version in &self.versions {
            script.push_str(&version.sql());
        }
        script
    }

    pub fn version(&self, name: &str) -> Option<&GeneratedVersion> {
        self.versions.iter().find(|version| version.name == name)
    }
}

impl GeneratedVersion {
    pub fn sql(&self) -> String {
        let mut sql = self.preamble.clone();
        for view in &self.views {
            sql.push_str(&view.sql);
        }
        sql.push_str(&self.catalog);
        sql
    }
}

/// Renders `plan` with `templates`.
pub fn render(plan: &Plan, templates: &Templates) -> Result<GeneratedSql, ControlError> {
    let header = templates.render(templates::HEADER, context! { plan => plan })?;
    let mut versions = Vec::with_capacity(plan.versions.len());
    for version in &plan.versions {
        let preamble = templates.render(templates::VERSION, context! { version => version })?;
        let views = version
            .views
            .iter()
            .map(|view| {
                Ok(GeneratedView {
                    plan: view.clone(),
                    sql: render_view(view, plan.security_invoker, false, templates)?,
                    in_place_sql: render_view(view, plan.security_invoker, true, templates)?,
                })
            })
            .collect::<Result<Vec<_>, ControlError>>()?;
        let catalog = templates.render(
            templates::VERSION_CATALOG,
            context! {
                version => version,
                schema => substitute_schema(&version.name),
                substitutes => catalog_substitutes::substitutes().map(|(_, name)| name).collect::<Vec<_>>(),
                view_column_relations => catalog_substitutes::VIEW_COLUMN_RELATIONS,
                index_statistics_views => catalog_substitutes::INDEX_STATISTICS_VIEWS,
                table_statistics_views => catalog_substitutes::TABLE_STATISTICS_VIEWS,
                mapping_marker_prefix => mapping_functions::MARKER_PREFIX,
                migration_name_prefix => MIGRATION_NAME_PREFIX,
            },
        )?;
        let mut generated = GeneratedVersion {
            name: version.name.clone(),
            preamble,
            views,
            catalog,
            checksum: String::new(),
        };
        generated.checksum = sha256_hex(&generated.sql());
        versions.push(generated);
    }
    let all_checksums: String = versions
        .iter()
        .map(|version| format!("{}={}\n", version.name, version.checksum))
        .collect();
    Ok(GeneratedSql {
        header,
        versions,
        checksum: sha256_hex(&all_checksums),
    })
}

fn render_view(
    view: &ViewPlan,
    security_invoker: bool,
    in_place: bool,
    templates: &Templates,
) -> Result<String, ControlError> {
    let mapping_marker = mapping_functions::marker(&view.view_schema, &view.view_name);
    let context = context! {
        view => view,
        security_invoker => security_invoker,
        in_place => in_place,
        view_schema => &view.view_schema,
        view_name => &view.view_name,
        mapping_marker => mapping_marker,
    };
    // The previous apply's mapping functions take the view's row type: they go first.
    let mut sql = templates.render(templates::DROP_MAPPING_FUNCTIONS, &context)?;
    sql.push_str(&templates.render(templates::VIEW, &context)?);
    sql.push_str(&templates.render(templates::VIEW_DEFAULTS, &context)?);
    sql.push_str(&templates.render(templates::MAPPING_FUNCTIONS, &context)?);
    if view.trigger.is_some() {
        sql.push_str(&templates.render(templates::WRITE_TRIGGER, &context)?);
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::control::views::introspect::ServerSnapshot;
    use crate::control::views::plan;
    use crate::control::views::spec::Spec;

    fn example() -> GeneratedSql {
        let spec_path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/model_metadata/viewgate.toml");
        let spec = Spec::load(&spec_path).expect("example spec is valid");
        let plan = plan::build(&spec, &ServerSnapshot::default()).expect("plans offline");
        render(&plan, &Templates::built_in()).expect("renders")
    }

    #[test]
    fn the_example_renders_deterministically_with_quoted_names() {
        let first = example();
        let second = example();
        assert_eq!(first.script(), second.script());
        assert_eq!(first.checksum, second.checksum);
        let script = first.script();
        assert!(script.contains("CREATE VIEW \"public\".\"model_metadata_v1\""));
        assert!(script.contains("WITH (security_invoker = true)"));
        assert!(script.contains("(COALESCE(model_type, 'neural_network')) AS \"model_type\""));
        assert!(
            script.contains(
                "INSTEAD OF INSERT OR UPDATE OR DELETE ON \"public\".\"model_metadata_v2\""
            )
        );
        assert!(script.contains("Generated OFFLINE"));
        assert_ne!(first.versions[0].checksum, first.versions[1].checksum);
    }
}
