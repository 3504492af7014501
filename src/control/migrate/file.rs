//! The migration file: one TOML file per new schema version, written by the application team
//! and committed with the application, naming the version it creates, the version it starts
//! from, and the operations that turn one into the other.
//!
//! Parsing checks everything that needs no database: identifier shapes, that each operation
//! names what it must, that SQL fragments (types, `up`/`down` expressions, defaults, checks)
//! cannot end the statement they are pasted into. Whether tables and columns exist is checked
//! against the live schema when the migration is planned (see `derive/`). Every error names the
//! file and the operation (by its 1-based position) concerned.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::MigrateError;
use super::fragment::has_statement_separator;
use super::operation::{
    ColumnDefinition, ConstraintKind, ForeignKey, Operation, RenameColumn, RenameConstraint,
    ReplicaIdentity,
};
use super::settings::{MAX_BATCH_SIZE, MigrationSettings};
use crate::control::views::checksum::sha256_hex;
use crate::control::views::spec::is_valid_version_name;
use crate::model::identifier::MAX_IDENTIFIER_BYTES;

/// Marker no SQL fragment from a file may contain: generated trigger bodies are quoted with it.
pub const BODY_QUOTE: &str = "$viewgate_sync$";

/// A parsed, self-consistent migration file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Migration {
    /// The version this migration creates.
    pub version: String,
    /// The version it derives from.
    pub from: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub settings: MigrationSettings,
    pub operations: Vec<Operation>,
}

impl Migration {
    /// What a rollback leaves in place, for the operator to undo by hand: the `raw_sql`
    /// operations run in the expand without a `down` (numbered from 1, as in the file). None
    /// when a rollback undoes everything.
    pub fn not_undone_by_rollback(&self) -> Option<String> {
        let numbers: Vec<String> = self
            .operations
            .iter()
            .enumerate()
            .filter(|(_, operation)| {
                matches!(operation, Operation::RawSql(raw) if raw.down.is_none() && !raw.on_complete)
            })
            .map(|(index, _)| (index + 1).to_string())
            .collect();
        match numbers.as_slice() {
            [] => None,
            [one] => Some(format!(
                "raw_sql operation {one} has no `down`, so what it did remains: undo it by hand before starting the migration again"
            )),
            many => Some(format!(
                "raw_sql operations {} have no `down`, so what they did remains: undo it by hand before starting the migration again",
                many.join(", ")
            )),
        }
    }
}

/// A migration file as read: the parsed migration and the checksum of its exact bytes.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub path: PathBuf,
    pub checksum: String,
    pub migration: Migration,
}

impl MigrationFile {
    pub fn load(path: &Path) -> Result<Self, MigrateError> {
        let text = std::fs::read_to_string(path).map_err(|source| MigrateError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, MigrateError> {
        let migration: Migration = toml::from_str(text).map_err(|error| MigrateError::Syntax {
            file: path.to_owned(),
            message: super::file_syntax::located(text, error.to_string()),
        })?;
        Checker { file: path }.check(&migration)?;
        Ok(MigrationFile {
            path: path.to_owned(),
            checksum: sha256_hex(text),
            migration,
        })
    }
}

struct Checker<'a> {
    file: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, context: impl Into<String>, problem: impl Into<String>) -> MigrateError {
        MigrateError::Invalid {
            file: self.file.to_owned(),
            context: context.into(),
            problem: problem.into(),
        }
    }

    fn check(&self, migration: &Migration) -> Result<(), MigrateError> {
        for (what, name) in [("version", &migration.version), ("from", &migration.from)] {
            if !is_valid_version_name(name) {
                return Err(self.invalid(
                    "migration",
                    format!("{what} {name:?} is not a valid version name (a lowercase letter, then up to 30 lowercase letters, digits or _)"),
                ));
            }
        }
        if migration.version == migration.from {
            return Err(self.invalid("migration", "version and from are the same"));
        }
        let settings = &migration.settings;
        if settings.batch_size == 0 || settings.batch_size > MAX_BATCH_SIZE {
            return Err(self.invalid(
                "[settings]",
                format!("batch_size must be between 1 and {MAX_BATCH_SIZE}"),
            ));
        }
        if settings.max_attempts == 0 {
            return Err(self.invalid("[settings]", "max_attempts must be at least 1"));
        }
        if settings.lock_timeout.is_zero() {
            return Err(self.invalid(
                "[settings]",
                "lock_timeout_ms must be above 0 (0 would wait for locks forever)",
            ));
        }
        if migration.operations.is_empty() {
            return Err(self.invalid("migration", "has no [[operations]]"));
        }
        for (index, operation) in migration.operations.iter().enumerate() {
            let context = format!("operation {} ({})", index + 1, operation.kind());
            self.operation(&context, operation)?;
        }
        Ok(())
    }

    fn operation(&self, context: &str, operation: &Operation) -> Result<(), MigrateError> {
        match operation {
            Operation::AddColumn(op) => {
                self.identifier(context, "table", &op.table)?;
                self.column_definition(context, &op.column)?;
                if op.column.primary_key {
                    return Err(self.invalid(
                        context,
                        "add_column cannot add a primary key column; create the table with it",
                    ));
                }
                self.fragment(context, "up", op.up.as_deref())?;
                if !op.column.nullable && op.up.is_none() && op.column.default.is_none() {
                    return Err(self.invalid(
                        context,
                        format!(
                            "column {} is NOT NULL: give `up` (its value for existing rows and for rows older versions write) or a `default`",
                            op.column.name
                        ),
                    ));
                }
            }
            Operation::DropColumn(op) => {
                self.identifier(context, "table", &op.table)?;
                self.identifier(context, "column", &op.column)?;
                self.fragment(context, "down", op.down.as_deref())?;
            }
            Operation::RenameColumn(RenameColumn { table, from, to })
            | Operation::RenameConstraint(RenameConstraint { table, from, to }) => {
                self.identifier(context, "table", table)?;
                self.identifier(context, "from", from)?;
                self.identifier(context, "to", to)?;
                if from == to {
                    return Err(self.invalid(context, "from and to are the same"));
                }
            }
            Operation::AlterColumn(op) => {
                self.identifier(context, "table", &op.table)?;
                self.identifier(context, "column", &op.column)?;
                for (what, fragment) in [
                    ("type", op.sql_type.as_deref()),
                    ("default", op.default.as_deref()),
                    ("check", op.check.as_deref()),
                    ("up", op.up.as_deref()),
                    ("down", op.down.as_deref()),
                ] {
                    self.fragment(context, what, fragment)?;
                }
                if let Some(name) = &op.rename_to {
                    self.identifier(context, "rename_to", name)?;
                }
                if let Some(references) = &op.references {
                    self.foreign_key(context, references)?;
                }
                if op.default.is_some() && op.drop_default {
                    return Err(self.invalid(context, "default and drop_default contradict"));
                }
                let changes_something = op.needs_new_column()
                    || op.nullable.is_some()
                    || op.default.is_some()
                    || op.drop_default
                    || op.unique.is_some()
                    || op.rename_to.is_some();
                if !changes_something {
                    return Err(self.invalid(context, "changes nothing about the column"));
                }
                // The old version keeps its nullable column and may write NULL into it: the
                // new column's value for such a row must come from `up`, or the stand-in check
                // refuses the old version's write (the forty-first red-team pass saw a v1
                // `UPDATE … SET score = NULL` fail on v2's check).
                if op.nullable == Some(false) && op.up.is_none() {
                    return Err(self.invalid(
                        context,
                        format!(
                            "column {column} becomes NOT NULL, but older versions may write NULL into it: give `up` (the new version's value for every row, e.g. COALESCE({column}, …))",
                            column = op.column
                        ),
                    ));
                }
                if op.down.is_some() && !op.needs_new_column() {
                    return Err(self.invalid(
                        context,
                        "`down` only applies when the column changes type, gains NOT NULL, a check, uniqueness, a foreign key or an `up`",
                    ));
                }
            }
            Operation::CreateTable(op) => {
                self.identifier(context, "table", &op.table)?;
                if let Some(schema) = &op.schema {
                    self.identifier(context, "schema", schema)?;
                }
                if op.columns.is_empty() {
                    return Err(self.invalid(context, "a table needs at least one column"));
                }
                let mut seen = std::collections::BTreeSet::new();
                for column in &op.columns {
                    self.column_definition(context, column)?;
                    if !seen.insert(&column.name) {
                        return Err(self.invalid(
                            context,
                            format!("column {} is declared twice", column.name),
                        ));
                    }
                }
                if !op.columns.iter().any(|column| column.primary_key) {
                    return Err(self.invalid(
                        context,
                        "a managed table needs a primary key (`primary_key = true` on its key columns): views write rows back by it and backfills walk it",
                    ));
                }
            }
            Operation::DropTable(op) => self.identifier(context, "table", &op.table)?,
            Operation::RenameTable(op) => {
                self.identifier(context, "from", &op.from)?;
                self.identifier(context, "to", &op.to)?;
                if op.from == op.to {
                    return Err(self.invalid(context, "from and to are the same"));
                }
            }
            Operation::CreateIndex(op) => {
                self.identifier(context, "index", &op.name)?;
                self.identifier(context, "table", &op.table)?;
                if op.columns.is_empty() {
                    return Err(self.invalid(context, "an index needs at least one column"));
                }
                for column in &op.columns {
                    self.identifier(context, "column", column)?;
                }
                if let Some(method) = &op.method {
                    let known = ["btree", "hash", "gist", "gin", "spgist", "brin"];
                    if !known.contains(&method.as_str()) {
                        return Err(self.invalid(
                            context,
                            format!(
                                "unknown index method {method:?} (one of {})",
                                known.join(", ")
                            ),
                        ));
                    }
                }
                self.fragment(context, "where", op.predicate.as_deref())?;
            }
            Operation::DropIndex(op) => {
                self.identifier(context, "index", &op.name)?;
                if let Some(schema) = &op.schema {
                    self.identifier(context, "schema", schema)?;
                }
            }
            Operation::AddConstraint(op) => {
                self.identifier(context, "table", &op.table)?;
                self.identifier(context, "constraint", &op.name)?;
                for column in &op.columns {
                    self.identifier(context, "column", column)?;
                }
                self.fragment(context, "check", op.check.as_deref())?;
                match op.kind {
                    ConstraintKind::Check if op.check.is_none() => {
                        return Err(self.invalid(context, "a check constraint needs `check`"));
                    }
                    ConstraintKind::Unique | ConstraintKind::ForeignKey
                        if op.columns.is_empty() =>
                    {
                        return Err(self.invalid(context, "name the constraint's `columns`"));
                    }
                    ConstraintKind::ForeignKey => {
                        let Some(references) = &op.references else {
                            return Err(self.invalid(context, "a foreign key needs `references`"));
                        };
                        self.identifier(context, "references.table", &references.table)?;
                        for column in &references.columns {
                            self.identifier(context, "references.columns", column)?;
                        }
                        if references.columns.len() != op.columns.len() {
                            return Err(self.invalid(
                                context,
                                "references.columns must name as many columns as columns",
                            ));
                        }
                    }
                    _ => {}
                }
            }
            Operation::DropConstraint(op) => {
                self.identifier(context, "table", &op.table)?;
                self.identifier(context, "constraint", &op.name)?;
            }
            Operation::SetReplicaIdentity(op) => {
                self.identifier(context, "table", &op.table)?;
                match (op.identity, &op.index) {
                    (ReplicaIdentity::Index, Some(index)) => {
                        self.identifier(context, "index", index)?
                    }
                    (ReplicaIdentity::Index, None) => {
                        return Err(self.invalid(
                            context,
                            "identity = \"index\" needs `index`, the table's unique index to name rows by",
                        ));
                    }
                    (_, Some(_)) => {
                        return Err(
                            self.invalid(context, "`index` goes with identity = \"index\" only")
                        );
                    }
                    (_, None) => {}
                }
            }

            Operation::SplitColumn(op) => {
                self.identifier(context, "table", &op.table)?;
                self.identifier(context, "column", &op.column)?;
                if op.into.len() < 2 {
                    return Err(self.invalid(context, "split into at least two columns"));
                }
                for part in &op.into {
                    self.column_definition(context, &part.column)?;
                    self.fragment(context, "up", Some(&part.up))?;
                }
                self.fragment(context, "down", Some(&op.down))?;
            }
            Operation::MergeColumns(op) => {
                self.identifier(context, "table", &op.table)?;
                if op.columns.len() < 2 {
                    return Err(self.invalid(context, "merge at least two columns"));
                }
                for column in &op.columns {
                    self.identifier(context, "column", column)?;
                }
                self.column_definition(context, &op.into)?;
                self.fragment(context, "up", Some(&op.up))?;
                for (column, down) in &op.down {
                    if !op.columns.contains(column) {
                        return Err(self.invalid(
                            context,
                            format!("down names {column}, which is not one of the merged columns"),
                        ));
                    }
                    self.fragment(context, "down", Some(down))?;
                }
            }
            Operation::RawSql(op) => {
                if op.up.trim().is_empty() {
                    return Err(self.invalid(context, "up is empty"));
                }
                if op.on_complete && op.down.is_some() {
                    return Err(self.invalid(
                        context,
                        "a raw_sql that runs at complete cannot be undone; drop `down` or `on_complete`",
                    ));
                }
            }
        }
        Ok(())
    }

    fn column_definition(
        &self,
        context: &str,
        column: &ColumnDefinition,
    ) -> Result<(), MigrateError> {
        let context = format!("{context}, column {}", column.name);
        self.identifier(&context, "column", &column.name)?;
        self.fragment(&context, "type", Some(&column.sql_type))?;
        self.fragment(&context, "default", column.default.as_deref())?;
        self.fragment(&context, "check", column.check.as_deref())?;
        if let Some(references) = &column.references {
            self.foreign_key(&context, references)?;
        }
        Ok(())
    }

    fn foreign_key(&self, context: &str, references: &ForeignKey) -> Result<(), MigrateError> {
        self.identifier(context, "references.table", &references.table)?;
        self.identifier(context, "references.column", &references.column)?;
        if let Some(schema) = &references.schema {
            self.identifier(context, "references.schema", schema)?;
        }
        Ok(())
    }

    fn identifier(&self, context: &str, what: &str, name: &str) -> Result<(), MigrateError> {
        if name.is_empty() {
            return Err(self.invalid(context, format!("{what} name is empty")));
        }
        if name.len() > MAX_IDENTIFIER_BYTES {
            return Err(self.invalid(
                context,
                format!("{what} name {name:?} is longer than {MAX_IDENTIFIER_BYTES} bytes; Postgres would truncate it"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(self.invalid(
                context,
                format!("{what} name {name:?} contains a control character"),
            ));
        }
        Ok(())
    }

    /// An SQL fragment must be one expression (or type): it may not be empty, end the
    /// statement it is pasted into, or close the generated trigger body's quoting. Postgres
    /// checks the rest when the migration is planned against the database.
    fn fragment(
        &self,
        context: &str,
        what: &str,
        fragment: Option<&str>,
    ) -> Result<(), MigrateError> {
        let Some(fragment) = fragment else {
            return Ok(());
        };
        if fragment.trim().is_empty() {
            return Err(self.invalid(context, format!("{what} is empty")));
        }
        if fragment.contains(BODY_QUOTE) {
            return Err(self.invalid(
                context,
                format!("{what} contains {BODY_QUOTE}, which viewgate reserves"),
            ));
        }
        if has_statement_separator(fragment) {
            return Err(self.invalid(
                context,
                format!("{what} {fragment:?} contains a `;` outside quotes: it must be a single expression"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
