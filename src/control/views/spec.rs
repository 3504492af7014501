//! The versioned-view spec file: which base tables are managed and what each version sees.
//!
//! A spec is TOML (see docs/views.md). Parsing checks everything that can be checked without a
//! database: identifier shapes, version names, duplicate names, contradictory column mappings.
//! Whether the named tables and columns exist is checked later against the server (see
//! `plan.rs`). Every error names the spec file, and the version, table and column concerned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control::error::SpecError;

use crate::model::identifier::MAX_IDENTIFIER_BYTES;
/// Longest version name: short enough that `{table}_{version}` usually fits an identifier.
pub const MAX_VERSION_NAME_LEN: usize = 31;
/// Schema a managed table lives in when the spec does not say.
pub const DEFAULT_SCHEMA: &str = "public";
/// How long one apply attempt waits for a lock before Postgres gives up with 55P03.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times apply tries in all when it keeps hitting lock timeouts.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Names a version may not take in the schema-per-version layout: they are Postgres's own
/// schemas or viewgate's catalog.
const RESERVED_SCHEMA_NAMES: &[&str] = &["public", "viewgate", "information_schema"];

/// Where a version's views go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `{schema}.{table}_{version}`: next to the base table.
    #[default]
    Suffix,
    /// `{version}.{table}`: one schema per version; the proxy sets `search_path`.
    Schema,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Suffix => "suffix",
            Layout::Schema => "schema",
        }
    }
}

/// A parsed, self-consistent spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The file it came from, for error messages and history.
    pub source: PathBuf,
    pub options: SpecOptions,
    pub tables: Vec<ManagedTable>,
    pub versions: Vec<Version>,
}

#[derive(Debug, Clone)]
pub struct SpecOptions {
    pub layout: Layout,
    /// A directory of templates overriding the built-in ones, resolved against the spec's folder.
    pub templates: Option<PathBuf>,
    pub lock_timeout: Duration,
    pub max_attempts: u32,
}

/// A base table viewgate manages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManagedTable {
    pub schema: String,
    pub name: String,
    /// Columns identifying a row for trigger-backed UPDATE/DELETE; the primary key when empty.
    pub key: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub name: String,
    pub tables: Vec<VersionTable>,
}

/// One managed table as one version sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionTable {
    /// The base table (a `[[tables]]` name).
    pub base: String,
    /// The name this version's clients use; differs from `base` when the version renames it.
    pub name: String,
    pub columns: Vec<Column>,
    /// Values this version's inserts store in base columns the version does not see.
    pub hidden_defaults: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// The name this version sees.
    pub name: String,
    pub source: ColumnSource,
    /// A default for inserts through this version (`ALTER VIEW … SET DEFAULT`).
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnSource {
    /// A base column, under the same or another name.
    Physical { base_column: String },
    /// A read expression over the base row, and per base column the write-back expression over
    /// `NEW` (the row the client wrote through the view).
    Expression {
        expression: String,
        write: BTreeMap<String, String>,
    },
}

impl Spec {
    /// Reads and checks a spec file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks spec text; `source` is only used in messages and to resolve paths.
    pub fn parse(source: &Path, text: &str) -> Result<Self, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|error| SpecError::Syntax {
            file: source.to_owned(),
            message: error.to_string(),
        })?;
        Checker { file: source }.check(raw)
    }

    pub fn table(&self, name: &str) -> Option<&ManagedTable> {
        self.tables.iter().find(|table| table.name == name)
    }

    pub fn version(&self, name: &str) -> Option<&Version> {
        self.versions.iter().find(|version| version.name == name)
    }
}

/// Whether `name` is a valid version name: `^[a-z][a-z0-9_]{0,30}$`.
pub fn is_valid_version_name(name: &str) -> bool {
    let mut characters = name.chars();
    let starts_with_letter = characters.next().is_some_and(|c| c.is_ascii_lowercase());
    starts_with_letter
        && name.len() <= MAX_VERSION_NAME_LEN
        && characters.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    options: RawOptions,
    #[serde(default)]
    tables: Vec<RawTable>,
    #[serde(default)]
    versions: Vec<RawVersion>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    #[serde(default)]
    layout: Layout,
    templates: Option<PathBuf>,
    lock_timeout_ms: Option<u64>,
    max_attempts: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    name: String,
    schema: Option<String>,
    #[serde(default)]
    key: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    name: String,
    #[serde(default)]
    tables: Vec<RawVersionTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersionTable {
    base: String,
    name: Option<String>,
    columns: Vec<RawColumn>,
    #[serde(default)]
    hidden_defaults: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawColumn {
    Plain(String),
    Detailed(RawColumnDetail),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumnDetail {
    name: String,
    from: Option<String>,
    expr: Option<String>,
    #[serde(default)]
    write: BTreeMap<String, String>,
    default: Option<String>,
}

struct Checker<'a> {
    file: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, context: impl Into<String>, problem: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            file: self.file.to_owned(),
            context: context.into(),
            problem: problem.into(),
        }
    }

    fn identifier(&self, context: &str, what: &str, name: &str) -> Result<(), SpecError> {
        if name.is_empty() {
            return Err(self.invalid(context, format!("{what} name is empty")));
        }
        if name.len() > MAX_IDENTIFIER_BYTES {
            return Err(self.invalid(
                context,
                format!(
                    "{what} name {name:?} is longer than {MAX_IDENTIFIER_BYTES} bytes; Postgres would truncate it"
                ),
            ));
        }
        if name.chars().any(char::is_control) {
            // Names also appear in SQL comments of the generated script, where a newline
            // would end the comment.
            return Err(self.invalid(
                context,
                format!("{what} name {name:?} contains a control character"),
            ));
        }
        Ok(())
    }

    fn check(&self, raw: RawSpec) -> Result<Spec, SpecError> {
        let options = self.options(raw.options)?;
        let tables = self.tables(raw.tables)?;
        let mut versions = Vec::with_capacity(raw.versions.len());
        let mut seen_versions = BTreeSet::new();
        for raw_version in raw.versions {
            let version = self.version(raw_version, &tables, options.layout)?;
            if !seen_versions.insert(version.name.clone()) {
                return Err(self.invalid(format!("version {}", version.name), "is declared twice"));
            }
            versions.push(version);
        }
        if versions.is_empty() {
            return Err(self.invalid("spec", "declares no [[versions]]"));
        }
        Ok(Spec {
            source: self.file.to_owned(),
            options,
            tables,
            versions,
        })
    }

    fn options(&self, raw: RawOptions) -> Result<SpecOptions, SpecError> {
        let max_attempts = raw.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if max_attempts == 0 {
            return Err(self.invalid("[options]", "max_attempts must be at least 1"));
        }
        let templates = raw.templates.map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                self.file.parent().unwrap_or(Path::new(".")).join(dir)
            }
        });
        Ok(SpecOptions {
            layout: raw.layout,
            templates,
            lock_timeout: raw
                .lock_timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_LOCK_TIMEOUT),
            max_attempts,
        })
    }

    fn tables(&self, raw: Vec<RawTable>) -> Result<Vec<ManagedTable>, SpecError> {
        let mut tables: Vec<ManagedTable> = Vec::with_capacity(raw.len());
        for table in raw {
            let context = format!("table {}", table.name);
            self.identifier(&context, "table", &table.name)?;
            let schema = table.schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
            self.identifier(&context, "schema", &schema)?;
            for column in &table.key {
                self.identifier(&context, "key column", column)?;
            }
            if tables.iter().any(|known| known.name == table.name) {
                return Err(self.invalid(
                    context,
                    "is declared twice in [[tables]] (table names must be unique across schemas)",
                ));
            }
            tables.push(ManagedTable {
                schema,
                name: table.name,
                key: table.key,
            });
        }
        Ok(tables)
    }

    fn version(
        &self,
        raw: RawVersion,
        tables: &[ManagedTable],
        layout: Layout,
    ) -> Result<Version, SpecError> {
        let context = format!("version {:?}", raw.name);
        if !is_valid_version_name(&raw.name) {
            return Err(self.invalid(
                context,
                "is not a valid version name: use a lowercase letter followed by up to 30 lowercase letters, digits or underscores",
            ));
        }
        if layout == Layout::Schema
            && (RESERVED_SCHEMA_NAMES.contains(&raw.name.as_str()) || raw.name.starts_with("pg_"))
        {
            return Err(self.invalid(
                context,
                "names a schema Postgres or viewgate already uses; pick another version name for the schema layout",
            ));
        }
        let mut version_tables: Vec<VersionTable> = Vec::with_capacity(raw.tables.len());
        for raw_table in raw.tables {
            let table = self.version_table(&raw.name, raw_table, tables)?;
            if version_tables
                .iter()
                .any(|known| known.name == table.name || known.base == table.base)
            {
                return Err(self.invalid(
                    format!("version {}, table {}", raw.name, table.name),
                    "appears twice in this version",
                ));
            }
            version_tables.push(table);
        }
        Ok(Version {
            name: raw.name,
            tables: version_tables,
        })
    }

    fn version_table(
        &self,
        version: &str,
        raw: RawVersionTable,
        tables: &[ManagedTable],
    ) -> Result<VersionTable, SpecError> {
        let name = raw.name.unwrap_or_else(|| raw.base.clone());
        let context = format!("version {version}, table {name}");
        if !tables.iter().any(|table| table.name == raw.base) {
            return Err(self.invalid(
                context,
                format!("base table {:?} is not declared in [[tables]]", raw.base),
            ));
        }
        self.identifier(&context, "table", &name)?;
        if raw.columns.is_empty() {
            return Err(self.invalid(context, "lists no columns"));
        }
        let mut columns: Vec<Column> = Vec::with_capacity(raw.columns.len());
        let mut written = BTreeSet::new();
        for raw_column in raw.columns {
            let column = self.column(&context, raw_column)?;
            if columns.iter().any(|known| known.name == column.name) {
                return Err(self.invalid(
                    format!("{context}, column {}", column.name),
                    "appears twice",
                ));
            }
            if let ColumnSource::Expression { write, .. } = &column.source {
                for base_column in write.keys() {
                    if !written.insert(base_column.clone()) {
                        return Err(self.invalid(
                            format!("{context}, column {}", column.name),
                            format!("base column {base_column} is written back by two columns"),
                        ));
                    }
                }
            }
            columns.push(column);
        }
        for hidden in raw.hidden_defaults.keys() {
            self.identifier(&context, "hidden_defaults column", hidden)?;
            let visible = columns.iter().any(|column| match &column.source {
                ColumnSource::Physical { base_column } => base_column == hidden,
                ColumnSource::Expression { write, .. } => write.contains_key(hidden),
            });
            if visible {
                return Err(self.invalid(
                    format!("{context}, hidden_defaults.{hidden}"),
                    "this base column is visible (or written back) in this version; hidden_defaults is for columns the version does not see",
                ));
            }
        }
        Ok(VersionTable {
            base: raw.base,
            name,
            columns,
            hidden_defaults: raw.hidden_defaults,
        })
    }

    fn column(&self, table_context: &str, raw: RawColumn) -> Result<Column, SpecError> {
        let detail = match raw {
            RawColumn::Plain(name) => RawColumnDetail {
                name,
                from: None,
                expr: None,
                write: BTreeMap::new(),
                default: None,
            },
            RawColumn::Detailed(detail) => detail,
        };
        let context = format!("{table_context}, column {}", detail.name);
        self.identifier(&context, "column", &detail.name)?;
        let source = match (detail.from, detail.expr) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(context, "sets both `from` and `expr`; pick one"));
            }
            (from, None) => {
                if !detail.write.is_empty() {
                    return Err(self.invalid(
                        context,
                        "has `write` but no `expr`: physical and renamed columns are written directly",
                    ));
                }
                let base_column = from.unwrap_or_else(|| detail.name.clone());
                self.identifier(&context, "`from` column", &base_column)?;
                ColumnSource::Physical { base_column }
            }
            (None, Some(expression)) => {
                if expression.trim().is_empty() {
                    return Err(self.invalid(context, "has an empty `expr`"));
                }
                for (base_column, write) in &detail.write {
                    self.identifier(&context, "write-back column", base_column)?;
                    if write.trim().is_empty() {
                        return Err(self.invalid(
                            context,
                            format!("write-back expression for {base_column} is empty"),
                        ));
                    }
                }
                ColumnSource::Expression {
                    expression,
                    write: detail.write,
                }
            }
        };
        Ok(Column {
            name: detail.name,
            source,
            default: detail.default,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(Path::new("test.toml"), text)
    }

    const MINIMAL: &str = r#"
[[tables]]
name = "t"

[[versions]]
name = "v1"

[[versions.tables]]
base = "t"
columns = ["id", { name = "label", from = "name" }, { name = "n", expr = "id * 2", write = { id = "NEW.n / 2" } }]
"#;

    #[test]
    fn version_names_follow_the_identifier_rule() {
        for good in [
            "v1",
            "a",
            "release_2024_01",
            "x23456789012345678901234567890a",
        ] {
            assert!(is_valid_version_name(good), "{good}");
        }
        for bad in [
            "",
            "V1",
            "1v",
            "_v",
            "v-1",
            "v 1",
            "vé",
            "x234567890123456789012345678901b",
        ] {
            assert!(!is_valid_version_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_minimal_spec_parses_with_defaults() {
        let spec = parse(MINIMAL).expect("valid spec");
        assert_eq!(spec.options.layout, Layout::Suffix);
        assert_eq!(spec.options.lock_timeout, DEFAULT_LOCK_TIMEOUT);
        assert_eq!(spec.tables[0].schema, DEFAULT_SCHEMA);
        let columns = &spec.versions[0].tables[0].columns;
        assert!(
            matches!(&columns[1].source, ColumnSource::Physical { base_column } if base_column == "name")
        );
        assert!(
            matches!(&columns[2].source, ColumnSource::Expression { write, .. } if write["id"] == "NEW.n / 2")
        );
    }

    #[test]
    fn an_invalid_version_name_names_the_file_and_version() {
        let error = parse(&MINIMAL.replace("\"v1\"", "\"V-1\""))
            .unwrap_err()
            .to_string();
        assert!(error.contains("test.toml"), "{error}");
        assert!(error.contains("V-1"), "{error}");
        assert!(error.contains("not a valid version name"), "{error}");
    }

    #[test]
    fn an_undeclared_base_table_is_rejected() {
        let error = parse(&MINIMAL.replace("base = \"t\"", "base = \"nope\""))
            .unwrap_err()
            .to_string();
        assert!(error.contains("version v1, table nope"), "{error}");
        assert!(error.contains("not declared in [[tables]]"), "{error}");
    }

    #[test]
    fn from_and_expr_together_are_rejected() {
        let text = MINIMAL.replace("from = \"name\"", "from = \"name\", expr = \"1\"");
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("column label"), "{error}");
    }

    #[test]
    fn hidden_defaults_for_a_visible_column_are_rejected() {
        let text = format!("{MINIMAL}hidden_defaults = {{ name = \"'x'\" }}\n");
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("hidden_defaults.name"), "{error}");
    }

    #[test]
    fn reserved_schema_names_are_rejected_in_the_schema_layout() {
        let text = format!(
            "[options]\nlayout = \"schema\"\n{}",
            MINIMAL.replace("\"v1\"", "\"public\"")
        );
        let error = parse(&text).unwrap_err().to_string();
        assert!(
            error.contains("schema Postgres or viewgate already uses"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_are_syntax_errors() {
        let error = parse(&format!("{MINIMAL}colums = []\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("test.toml"), "{error}");
    }
}
