//! The resolved plan: each version's views, defaults and write triggers, with every name decided.
//!
//! A plan joins the spec with what the server has (see `introspect.rs`). It is the data the
//! templates render, so it carries raw names and expressions; quoting happens in the templates
//! through the `ident` and `literal` filters. Checking the spec against the database happens
//! here too, so a typo in a column name is reported before any SQL runs.
//!
//! One concept, one file: with its tests it runs past 600 lines, but the plan and the checks
//! that build it read best together.

use std::collections::BTreeSet;

use serde::Serialize;

use super::introspect::{self, BaseTable, ServerSnapshot};
use super::mapping_functions::{self, MappingFunction};
use super::spec::{ColumnSource, Layout, Spec, Version, VersionTable};
use crate::control::error::ControlError;
use crate::control::quote::quote_qualified;
use crate::model::identifier::MAX_IDENTIFIER_BYTES;
use crate::model::write_function;

/// Name of the INSTEAD OF trigger on a trigger-backed view.
pub const WRITE_TRIGGER_NAME: &str = "viewgate_write";

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub spec_file: String,
    pub layout: &'static str,
    pub security_invoker: bool,
    pub offline: bool,
    pub versions: Vec<VersionPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionPlan {
    pub name: String,
    /// The schema the version's views live in when the layout is schema-per-version.
    pub own_schema: Option<String>,
    pub views: Vec<ViewPlan>,
}

/// One generated view and what comes with it.
#[derive(Debug, Clone, Serialize)]
pub struct ViewPlan {
    pub version: String,
    /// The name this version's clients use for the table.
    pub table_name: String,
    pub base_schema: String,
    pub base_table: String,
    pub view_schema: String,
    pub view_name: String,
    pub columns: Vec<ViewColumn>,
    pub defaults: Vec<ViewDefault>,
    /// Present when Postgres cannot update the view by itself.
    pub trigger: Option<WriteTrigger>,
    /// The mapping as functions, for the statements the proxy writes to the base table.
    pub mapping_functions: Vec<MappingFunction>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ViewColumn {
    pub name: String,
    /// Set for physical and renamed columns.
    pub base_column: Option<String>,
    /// Set for expression columns.
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ViewDefault {
    pub column: String,
    pub expression: String,
    /// `spec` when declared, `base table` when inherited for a trigger-backed view.
    pub origin: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct WriteTrigger {
    pub function_schema: String,
    pub function_name: String,
    pub trigger_name: &'static str,
    pub insert: Vec<Assignment>,
    pub update: Vec<Assignment>,
    pub key: Vec<KeyColumn>,
}

/// One base column a trigger writes.
#[derive(Debug, Clone, Serialize)]
pub struct Assignment {
    pub base_column: String,
    /// Written from this view column as is.
    pub view_column: Option<String>,
    /// Or computed from this expression over `NEW`/`OLD`.
    pub expression: Option<String>,
    /// On UPDATE, the expression is applied only when this view column changed.
    pub when_changed: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyColumn {
    pub base_column: String,
    pub view_column: String,
}

impl ViewPlan {
    pub fn qualified_view(&self) -> String {
        format!("{}.{}", self.view_schema, self.view_name)
    }
}

/// Builds the plan for every version of `spec` (or only `only_version`), checking names against
/// `snapshot` unless it is offline.
/// Reads the spec's base tables from the server and plans the spec against them.
pub async fn against_database(
    client: &impl tokio_postgres::GenericClient,
    spec: &Spec,
) -> Result<Plan, ControlError> {
    let tables = spec
        .tables
        .iter()
        .map(|table| (table.schema.as_str(), table.name.as_str()));
    let snapshot = introspect::snapshot(client, tables).await?;
    build(spec, &snapshot)
}

pub fn build(spec: &Spec, snapshot: &ServerSnapshot) -> Result<Plan, ControlError> {
    let planner = Planner { spec, snapshot };
    let versions = spec
        .versions
        .iter()
        .map(|version| planner.version(version))
        .collect::<Result<Vec<_>, _>>()?;
    planner.check_unique_view_names(&versions)?;
    Ok(Plan {
        spec_file: spec.source.display().to_string(),
        layout: spec.options.layout.as_str(),
        security_invoker: snapshot.supports_security_invoker(),
        offline: snapshot.is_offline(),
        versions,
    })
}

struct Planner<'a> {
    spec: &'a Spec,
    snapshot: &'a ServerSnapshot,
}

impl Planner<'_> {
    fn mismatch(&self, context: impl Into<String>, problem: impl Into<String>) -> ControlError {
        ControlError::Mismatch {
            file: self.spec.source.clone(),
            context: context.into(),
            problem: problem.into(),
        }
    }

    fn version(&self, version: &Version) -> Result<VersionPlan, ControlError> {
        let views = version
            .tables
            .iter()
            .map(|table| self.view(&version.name, table))
            .collect::<Result<Vec<_>, _>>()?;
        let own_schema = (self.spec.options.layout == Layout::Schema).then(|| version.name.clone());
        Ok(VersionPlan {
            name: version.name.clone(),
            own_schema,
            views,
        })
    }

    fn view(&self, version: &str, table: &VersionTable) -> Result<ViewPlan, ControlError> {
        let context = format!("version {version}, table {}", table.name);
        let managed = self
            .spec
            .table(&table.base)
            .ok_or_else(|| self.mismatch(&context, "base table is not declared in [[tables]]"))?;
        let base = if self.snapshot.is_offline() {
            None
        } else {
            Some(
                self.snapshot
                    .table(&managed.schema, &managed.name)
                    .ok_or_else(|| {
                        self.mismatch(
                            &context,
                            format!(
                                "base table {}.{} does not exist in the database",
                                managed.schema, managed.name
                            ),
                        )
                    })?,
            )
        };
        if let Some(base) = base {
            self.check_columns_exist(&context, table, base)?;
        }
        let (view_schema, view_name) = match self.spec.options.layout {
            Layout::Suffix => (managed.schema.clone(), format!("{}_{version}", table.name)),
            Layout::Schema => (version.to_owned(), table.name.clone()),
        };
        let function_name = write_function::name(&view_name);
        self.check_generated_name(&context, &function_name)?;
        let columns: Vec<ViewColumn> = table
            .columns
            .iter()
            .map(|column| match &column.source {
                ColumnSource::Physical { base_column } => ViewColumn {
                    name: column.name.clone(),
                    base_column: Some(base_column.clone()),
                    expression: None,
                },
                ColumnSource::Expression { expression, .. } => ViewColumn {
                    name: column.name.clone(),
                    base_column: None,
                    expression: Some(expression.clone()),
                },
            })
            .collect();
        let needs_trigger = !table.hidden_defaults.is_empty()
            || table
                .columns
                .iter()
                .any(|column| matches!(column.source, ColumnSource::Expression { .. }));
        let trigger = if needs_trigger {
            Some(self.trigger(
                &context,
                table,
                &managed.key,
                base,
                &view_schema,
                function_name,
            )?)
        } else {
            None
        };
        let defaults = self.defaults(table, base, trigger.is_some());
        let computed = mapping_functions::Computed {
            base: quote_qualified(&managed.schema, &managed.name),
            view_columns: columns.iter().map(|c| c.name.as_str()).collect(),
            reads: columns
                .iter()
                .filter_map(|c| Some((c.name.as_str(), c.expression.as_deref()?)))
                .collect(),
            writes: trigger
                .iter()
                .flat_map(|t| &t.insert)
                .filter_map(|a| Some((a.base_column.as_str(), a.expression.as_deref()?)))
                .collect(),
            defaults: defaults.iter().map(|d| d.column.as_str()).collect(),
        };
        let mapping_functions = mapping_functions::plan(&view_name, &computed);
        if let Some(function) = mapping_functions.first() {
            self.check_generated_name(&context, &function.name)?;
        }
        Ok(ViewPlan {
            version: version.to_owned(),
            table_name: table.name.clone(),
            base_schema: managed.schema.clone(),
            base_table: managed.name.clone(),
            view_schema,
            view_name,
            columns,
            defaults,
            trigger,
            mapping_functions,
        })
    }

    /// Refuses a generated name Postgres would truncate.
    fn check_generated_name(&self, context: &str, name: &str) -> Result<(), ControlError> {
        if name.len() > MAX_IDENTIFIER_BYTES {
            return Err(self.mismatch(
                context,
                format!(
                    "generated name {name:?} is longer than {MAX_IDENTIFIER_BYTES} bytes; shorten the table or version name"
                ),
            ));
        }
        Ok(())
    }

    fn check_columns_exist(
        &self,
        context: &str,
        table: &VersionTable,
        base: &BaseTable,
    ) -> Result<(), ControlError> {
        let missing = |what: String, column: &str| {
            self.mismatch(
                format!("{context}, {what}"),
                format!(
                    "base table {}.{} has no column {column:?}",
                    base.schema, base.name
                ),
            )
        };
        for column in &table.columns {
            match &column.source {
                ColumnSource::Physical { base_column } => {
                    if base.column(base_column).is_none() {
                        let what = if *base_column == column.name {
                            format!("column {}", column.name)
                        } else {
                            format!("column {} (from {base_column})", column.name)
                        };
                        return Err(missing(what, base_column));
                    }
                }
                ColumnSource::Expression { write, .. } => {
                    for target in write.keys() {
                        match base.column(target) {
                            None => {
                                return Err(missing(
                                    format!("column {}, write.{target}", column.name),
                                    target,
                                ));
                            }
                            Some(found) if found.generated => {
                                return Err(self.mismatch(
                                    format!("{context}, column {}, write.{target}", column.name),
                                    "is a generated column and cannot be written",
                                ));
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        for hidden in table.hidden_defaults.keys() {
            if base.column(hidden).is_none() {
                return Err(missing(format!("hidden_defaults.{hidden}"), hidden));
            }
        }
        Ok(())
    }

    fn trigger(
        &self,
        context: &str,
        table: &VersionTable,
        declared_key: &[String],
        base: Option<&BaseTable>,
        view_schema: &str,
        function_name: String,
    ) -> Result<WriteTrigger, ControlError> {
        let key_columns: Vec<String> = if !declared_key.is_empty() {
            declared_key.to_vec()
        } else if let Some(base) = base {
            base.primary_key.clone()
        } else {
            return Err(self.mismatch(
                context,
                "this view needs write triggers, and offline generation cannot look up the primary key; declare `key = [...]` for the table in [[tables]] or pass --database",
            ));
        };
        if key_columns.is_empty() {
            return Err(self.mismatch(
                context,
                "this view needs write triggers to find rows for UPDATE and DELETE, but the base table has no primary key; declare `key = [...]` for the table in [[tables]]",
            ));
        }
        let key = key_columns
            .iter()
            .map(|key_column| {
                table
                    .columns
                    .iter()
                    .find(|column| {
                        matches!(&column.source, ColumnSource::Physical { base_column } if base_column == key_column)
                    })
                    .map(|column| KeyColumn {
                        base_column: key_column.clone(),
                        view_column: column.name.clone(),
                    })
                    .ok_or_else(|| {
                        self.mismatch(
                            context,
                            format!(
                                "this view needs write triggers, so key column {key_column:?} must be visible in this version"
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let is_generated = |column: &str| {
            base.and_then(|base| base.column(column))
                .is_some_and(|found| found.generated)
        };
        let mut insert = Vec::new();
        let mut update = Vec::new();
        for column in &table.columns {
            match &column.source {
                ColumnSource::Physical { base_column } => {
                    if is_generated(base_column) {
                        continue;
                    }
                    let assignment = Assignment {
                        base_column: base_column.clone(),
                        view_column: Some(column.name.clone()),
                        expression: None,
                        when_changed: None,
                    };
                    insert.push(assignment.clone());
                    update.push(assignment);
                }
                ColumnSource::Expression { write, .. } => {
                    for (target, expression) in write {
                        insert.push(Assignment {
                            base_column: target.clone(),
                            view_column: None,
                            expression: Some(expression.clone()),
                            when_changed: None,
                        });
                        update.push(Assignment {
                            base_column: target.clone(),
                            view_column: None,
                            expression: Some(expression.clone()),
                            when_changed: Some(column.name.clone()),
                        });
                    }
                }
            }
        }
        for (target, expression) in &table.hidden_defaults {
            insert.push(Assignment {
                base_column: target.clone(),
                view_column: None,
                expression: Some(expression.clone()),
                when_changed: None,
            });
        }
        let mut written = BTreeSet::new();
        for assignment in &insert {
            if !written.insert(assignment.base_column.as_str()) {
                return Err(self.mismatch(
                    context,
                    format!(
                        "base column {:?} is written both as a visible column and by a write-back expression",
                        assignment.base_column
                    ),
                ));
            }
        }
        Ok(WriteTrigger {
            function_schema: view_schema.to_owned(),
            function_name,
            trigger_name: WRITE_TRIGGER_NAME,
            insert,
            update,
            key,
        })
    }

    /// Spec-declared defaults, plus the base table's defaults of visible physical columns: a
    /// trigger receives NULL for an omitted column, not DEFAULT, and an auto-updatable view
    /// without a default of its own writes NULL for `UPDATE … SET column = DEFAULT` (the
    /// fortieth red-team pass). An auto-updatable view leaves identity columns to the table.
    fn defaults(
        &self,
        table: &VersionTable,
        base: Option<&BaseTable>,
        trigger_backed: bool,
    ) -> Vec<ViewDefault> {
        table
            .columns
            .iter()
            .filter_map(|column| {
                if let Some(expression) = &column.default {
                    return Some(ViewDefault {
                        column: column.name.clone(),
                        expression: expression.clone(),
                        origin: "spec",
                    });
                }
                let ColumnSource::Physical { base_column } = &column.source else {
                    return None;
                };
                let base_column = base?.column(base_column)?;
                if !trigger_backed && base_column.identity {
                    return None;
                }
                let inherited = base_column.default.clone()?;
                Some(ViewDefault {
                    column: column.name.clone(),
                    expression: inherited,
                    origin: "base table",
                })
            })
            .collect()
    }

    fn check_unique_view_names(&self, versions: &[VersionPlan]) -> Result<(), ControlError> {
        let mut seen = BTreeSet::new();
        let base_tables: BTreeSet<(&str, &str)> = self
            .spec
            .tables
            .iter()
            .map(|table| (table.schema.as_str(), table.name.as_str()))
            .collect();
        for view in versions.iter().flat_map(|version| &version.views) {
            let context = format!("version {}, table {}", view.version, view.table_name);
            if view.view_name.len() > MAX_IDENTIFIER_BYTES {
                return Err(self.mismatch(
                    context,
                    format!(
                        "view name {:?} is longer than {MAX_IDENTIFIER_BYTES} bytes; shorten the table or version name",
                        view.view_name
                    ),
                ));
            }
            let key = (view.view_schema.as_str(), view.view_name.as_str());
            if base_tables.contains(&key) {
                return Err(self.mismatch(
                    context,
                    format!(
                        "view {} would replace the managed base table of the same name",
                        view.qualified_view()
                    ),
                ));
            }
            if !seen.insert(key) {
                return Err(self.mismatch(
                    context,
                    format!(
                        "view {} is generated twice; two versions or tables map to the same name",
                        view.qualified_view()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::control::views::introspect::{BaseColumn, ServerSnapshot};

    const SPEC: &str = r#"
[[tables]]
name = "t"

[[versions]]
name = "v1"
[[versions.tables]]
base = "t"
columns = ["id", { name = "label", from = "name" }]

[[versions]]
name = "v2"
[[versions.tables]]
base = "t"
columns = ["id", { name = "shout", expr = "upper(name)", write = { name = "lower(NEW.shout)" } }]
"#;

    fn spec(text: &str) -> Spec {
        Spec::parse(Path::new("spec.toml"), text).expect("valid spec")
    }

    fn snapshot_with_t() -> ServerSnapshot {
        let column = |name: &str, default: Option<&str>| BaseColumn {
            name: name.into(),
            type_name: "text".into(),
            default: default.map(str::to_owned),
            generated: false,
            not_null: false,
            identity: false,
        };
        let mut snapshot = ServerSnapshot {
            version_num: Some(160_000),
            ..ServerSnapshot::default()
        };
        snapshot.tables.insert(
            ("public".into(), "t".into()),
            BaseTable {
                schema: "public".into(),
                name: "t".into(),
                columns: vec![
                    column("id", Some("nextval('t_id_seq'::regclass)")),
                    column("name", None),
                ],
                primary_key: vec!["id".into()],
                ..BaseTable::default()
            },
        );
        snapshot
    }

    #[test]
    fn plain_and_renamed_columns_need_no_trigger_but_expressions_do() {
        let plan = build(&spec(SPEC), &snapshot_with_t()).expect("plans");
        let v1 = &plan.versions[0].views[0];
        assert_eq!(v1.view_name, "t_v1");
        assert!(v1.trigger.is_none());
        assert_eq!(
            (v1.defaults[0].column.as_str(), v1.defaults[0].origin),
            ("id", "base table"),
            "auto-updatable views carry base defaults too, for `UPDATE … SET id = DEFAULT`"
        );
        let v2 = &plan.versions[1].views[0];
        let trigger = v2.trigger.as_ref().expect("expression needs a trigger");
        assert_eq!(trigger.function_name, "t_v2_write");
        assert_eq!(trigger.key[0].view_column, "id");
        assert_eq!(
            v2.defaults[0].column, "id",
            "trigger-backed views inherit defaults"
        );
        assert_eq!(v2.defaults[0].origin, "base table");
    }

    #[test]
    fn offline_triggers_need_a_declared_key() {
        let error = build(&spec(SPEC), &ServerSnapshot::default())
            .expect_err("no key offline")
            .to_string();
        assert!(error.contains("spec.toml: version v2, table t"), "{error}");
        assert!(error.contains("declare `key = [...]`"), "{error}");
        let with_key = SPEC.replace("name = \"t\"\n", "name = \"t\"\nkey = [\"id\"]\n");
        assert!(build(&spec(&with_key), &ServerSnapshot::default()).is_ok());
    }

    #[test]
    fn the_schema_layout_names_views_after_the_table() {
        let text = format!("[options]\nlayout = \"schema\"\n{SPEC}");
        let plan = build(&spec(&text), &snapshot_with_t()).expect("plans");
        let view = &plan.versions[1].views[0];
        assert_eq!(
            (view.view_schema.as_str(), view.view_name.as_str()),
            ("v2", "t")
        );
        assert_eq!(plan.versions[1].own_schema.as_deref(), Some("v2"));
    }

    #[test]
    fn a_missing_write_back_target_names_the_column() {
        let text = SPEC.replace("write = { name =", "write = { nme =");
        let error = build(&spec(&text), &snapshot_with_t())
            .expect_err("no column nme")
            .to_string();
        assert!(
            error.contains("version v2, table t, column shout, write.nme"),
            "{error}"
        );
    }
}
