//! `viewgate migrate convert`: the SQL an ORM wrote for a schema change (Django's
//! `sqlmigrate`, Alembic's `--sql`, Prisma's migration.sql, Flyway's SQL files, hand-written
//! DDL) as a viewgate migration file, to review and complete.
//!
//! Through the proxy at a version, DDL that changes a managed table's columns is refused and
//! points at `viewgate migrate`; this is the way from the ORM's migration to one. Each
//! statement is read by Postgres's own parser (libpg_query) and becomes the operations that
//! make the same change for every version ([`statements`]); what has no operation becomes
//! `raw_sql`. What the SQL cannot say and the file needs (an `up` for a new NOT NULL column,
//! a `down` for a retyped one) is never invented: the notes name it, and the file as
//! converted is checked as `migrate plan` would read it, its refusal reported with the notes.
//! A tool's file with up and down sections gives its up section only ([`tool_sections`]).

mod columns;
pub mod error;
mod sql_text;
mod statements;
mod tool_sections;

pub use error::ConvertError;

use std::path::Path;

use serde::Serialize;

use super::file::MigrationFile;
use super::operation::Operation;

/// What a conversion made: the file's operations, and what a person must look at.
#[derive(Debug, Default)]
pub struct Converted {
    pub operations: Vec<Operation>,
    /// What the operations could not carry over or still need, each naming its operation.
    pub notes: Vec<String>,
}

impl Converted {
    fn push(&mut self, operation: Operation) {
        self.operations.push(operation);
    }

    fn note(&mut self, note: String) {
        let number = self.operations.len() + 1;
        self.notes.push(format!("operation {number}: {note}"));
    }
}

/// The file's header.
#[derive(Debug, Serialize)]
struct Header<'a> {
    version: &'a str,
    from: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

/// A converted migration file's text, and its notes (the checker's refusal last, if any).
#[derive(Debug)]
pub struct ConvertedFile {
    pub text: String,
    pub notes: Vec<String>,
}

/// Converts `sql` into the migration from `from` to `version`.
pub fn convert(
    sql: &str,
    version: &str,
    from: &str,
    description: Option<&str>,
) -> Result<ConvertedFile, ConvertError> {
    let (sql, down_section) = tool_sections::without_down_sections(sql);
    let sql = sql.as_str();
    let parsed =
        pg_query::parse(sql).map_err(|error| ConvertError::Unparsable(error.to_string()))?;
    let mut converted = Converted::default();
    if let Some(marker) = down_section {
        converted.notes.push(format!(
            "the down section (after `{marker}`) is left out: `viewgate migrate rollback` undoes the operations until `migrate complete`"
        ));
    }
    for raw in &parsed.protobuf.stmts {
        let Some(statement) = raw.stmt.as_ref().and_then(|stmt| stmt.node.as_ref()) else {
            continue;
        };
        let text = statement_text(sql, raw.stmt_location, raw.stmt_len);
        statements::convert(statement, text, &mut converted)?;
    }
    if converted.operations.is_empty() {
        return Err(ConvertError::Unsupported(
            "SQL without a schema change: no operation to write".into(),
        ));
    }
    let text = render(
        &Header {
            version,
            from,
            description,
        },
        &converted.operations,
    )?;
    let mut notes = converted.notes;
    if let Err(error) = MigrationFile::parse(Path::new("the converted file"), &text) {
        notes.push(format!(
            "as converted, `viewgate migrate plan` refuses it: {error}"
        ));
    }
    Ok(ConvertedFile { text, notes })
}

/// The text of the statement at `location` of `sql`, `len` bytes (0: to the end), trimmed.
fn statement_text(sql: &str, location: i32, len: i32) -> &str {
    let start = usize::try_from(location).unwrap_or(0).min(sql.len());
    let end = match usize::try_from(len) {
        Ok(0) | Err(_) => sql.len(),
        Ok(len) => (start + len).min(sql.len()),
    };
    sql.get(start..end).unwrap_or_default().trim()
}

/// The file: its header, then each operation as a `[[operations]]` table in the order the
/// docs write them (`op` first, a column as an inline table, a new table's columns one a
/// line), without the fields that only say their default (`unique = false`, a column's
/// `nullable = true`).
fn render(header: &Header<'_>, operations: &[Operation]) -> Result<String, ConvertError> {
    let rendering = |error: toml::ser::Error| ConvertError::Deparse(error.to_string());
    let mut text = toml::to_string(header).map_err(rendering)?;
    for operation in operations {
        let mut value = toml::Value::try_from(operation).map_err(rendering)?;
        // `alter_column`'s `nullable = true` drops NOT NULL; a column's is its default.
        let nullable_says_something = matches!(operation, Operation::AlterColumn(_));
        drop_defaults(&mut value, nullable_says_something);
        let toml::Value::Table(fields) = value else {
            return Err(ConvertError::Deparse("an operation is not a table".into()));
        };
        text.push_str("\n[[operations]]\n");
        for (key, value) in &fields {
            text.push_str(&field_line(key, value));
        }
    }
    Ok(text)
}

/// `key = value`, an array of tables one table a line.
fn field_line(key: &str, value: &toml::Value) -> String {
    let key = toml::Value::String(key.to_owned());
    let key = match key.as_str() {
        Some(bare) if bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            bare.to_owned()
        }
        _ => key.to_string(),
    };
    match value {
        toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
            let lines: Vec<String> = items.iter().map(|item| format!("  {item},\n")).collect();
            format!("{key} = [\n{}]\n", lines.concat())
        }
        other => format!("{key} = {other}\n"),
    }
}

/// Removes the keys whose value is the default the file format gives them: `false`, and a
/// column's `nullable = true` (unless `nullable_says_something`).
fn drop_defaults(value: &mut toml::Value, nullable_says_something: bool) {
    let toml::Value::Table(table) = value else {
        return;
    };
    table.retain(|key, value| match value {
        toml::Value::Boolean(false) => key == "nullable",
        toml::Value::Boolean(true) => key != "nullable" || nullable_says_something,
        _ => true,
    });
    for (_, nested) in table.iter_mut() {
        match nested {
            toml::Value::Array(items) => items
                .iter_mut()
                .for_each(|item| drop_defaults(item, nullable_says_something)),
            other => drop_defaults(other, nullable_says_something),
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
