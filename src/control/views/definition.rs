//! A version's definition as the catalog records it: the managed tables it names and how each of
//! its columns maps onto them. `views apply` records it for every version of a spec;
//! `migrate start` records the one it derives. Migrations start from it, so the next version
//! can be derived without the spec file that made the previous one.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use crate::control::error::ControlError;
use crate::control::views::spec::{
    ColumnSource, DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_ATTEMPTS, Layout, ManagedTable, Spec,
    SpecOptions, Version, VersionTable,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionDefinition {
    pub layout: Layout,
    /// The managed base tables the version names, as they are physically.
    pub tables: Vec<ManagedTable>,
    pub version: Version,
}

impl VersionDefinition {
    /// The definition of `version` of `spec`: the version and the tables it names.
    pub fn from_spec(spec: &Spec, version: &Version) -> Self {
        let tables = spec
            .tables
            .iter()
            .filter(|table| version.tables.iter().any(|seen| seen.base == table.name))
            .cloned()
            .collect();
        VersionDefinition {
            layout: spec.options.layout,
            tables,
            version: version.clone(),
        }
    }

    /// A one-version spec, for the view pipeline (plan → generate → apply).
    pub fn to_spec(&self, source: &Path) -> Spec {
        Spec {
            source: source.to_owned(),
            options: SpecOptions {
                layout: self.layout,
                templates: None,
                lock_timeout: DEFAULT_LOCK_TIMEOUT,
                max_attempts: DEFAULT_MAX_ATTEMPTS,
            },
            tables: self.tables.clone(),
            versions: vec![self.version.clone()],
        }
    }

    pub fn managed(&self, base: &str) -> Option<&ManagedTable> {
        self.tables.iter().find(|table| table.name == base)
    }

    /// The version's table that its clients call `name`.
    pub fn table_named(&self, name: &str) -> Option<&VersionTable> {
        self.version.tables.iter().find(|table| table.name == name)
    }

    /// Each column the version computes by an expression.
    pub fn expression_columns(&self) -> impl Iterator<Item = ExpressionColumn<'_>> {
        self.version.tables.iter().flat_map(move |version_table| {
            let base = self.managed(&version_table.base);
            version_table
                .columns
                .iter()
                .filter_map(move |column| match (&column.source, base) {
                    (ColumnSource::Expression { expression, .. }, Some(base)) => {
                        Some(ExpressionColumn {
                            base,
                            table: &version_table.name,
                            column: &column.name,
                            expression,
                        })
                    }
                    _ => None,
                })
        })
    }
}

/// A column a version computes by an expression over its base table.
pub struct ExpressionColumn<'d> {
    /// The base table the expression reads.
    pub base: &'d ManagedTable,
    /// The version's name for the table.
    pub table: &'d str,
    pub column: &'d str,
    pub expression: &'d str,
}

/// Records `definition` for its version (the version row must exist).
pub async fn record(
    client: &impl GenericClient,
    definition: &VersionDefinition,
) -> Result<(), ControlError> {
    let json = serde_json::to_string(definition).map_err(|error| ControlError::Database {
        context: format!(
            "encoding the definition of version {}",
            definition.version.name
        ),
        message: error.to_string(),
    })?;
    client
        .execute(
            "UPDATE viewgate.versions SET definition = $2::text::jsonb WHERE version = $1",
            &[&definition.version.name, &json],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!(
                    "recording the definition of version {}",
                    definition.version.name
                ),
                &error,
            )
        })?;
    Ok(())
}

/// The recorded definition of `version`, if the catalog has one.
pub async fn load(
    client: &impl GenericClient,
    version: &str,
) -> Result<Option<VersionDefinition>, ControlError> {
    let row = client
        .query_opt(
            "SELECT definition::text FROM viewgate.versions WHERE version = $1",
            &[&version],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading the definition of version {version}"),
                &error,
            )
        })?;
    let Some(text) = row.and_then(|row| row.get::<_, Option<String>>(0)) else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| ControlError::Database {
            context: format!("decoding the recorded definition of version {version}"),
            message: error.to_string(),
        })
}
