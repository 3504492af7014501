//! The operations a migration file lists, as the file spells them (pgroll's vocabulary): what
//! each names and which SQL fragments it carries. Checking them is `file.rs`'s job; what they
//! do to the schema is `derive/`'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::control::views::spec::DEFAULT_SCHEMA;

/// One step of a migration. Expressions (`up`, `down`, `default`, `check`) and `type` are SQL
/// written by the file's author; everything named (tables, columns, indexes) is an identifier
/// and is always quoted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    AddColumn(AddColumn),
    DropColumn(DropColumn),
    RenameColumn(RenameColumn),
    AlterColumn(AlterColumn),
    CreateTable(CreateTable),
    DropTable(DropTable),
    RenameTable(RenameTable),
    CreateIndex(CreateIndex),
    DropIndex(DropIndex),
    AddConstraint(AddConstraint),
    DropConstraint(DropConstraint),
    RenameConstraint(RenameConstraint),
    SetReplicaIdentity(SetReplicaIdentity),
    SplitColumn(SplitColumn),
    MergeColumns(MergeColumns),
    RawSql(RawSql),
}

/// A new column. Older versions do not see it; their writes fill it with `up`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AddColumn {
    pub table: String,
    pub column: ColumnDefinition,
    /// The value for existing rows and for rows older versions write, as an expression over
    /// the older version's columns. Defaults to `default`, else NULL.
    #[serde(default)]
    pub up: Option<String>,
}

/// A column as `add_column` and `create_table` declare it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "a column as an inline table: { name = \"…\", type = \"…\", … }"
)]
pub struct ColumnDefinition {
    pub name: String,
    #[serde(rename = "type")]
    pub sql_type: String,
    #[serde(default = "yes")]
    pub nullable: bool,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub primary_key: bool,
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub references: Option<ForeignKey>,
}

fn yes() -> bool {
    true
}

/// `REFERENCES table (column) [ON DELETE action]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "a reference as an inline table: { table = \"…\", column = \"…\" }"
)]
pub struct ForeignKey {
    pub table: String,
    #[serde(default)]
    pub schema: Option<String>,
    pub column: String,
    #[serde(default)]
    pub on_delete: Option<ReferentialAction>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReferentialAction {
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

impl ReferentialAction {
    pub fn sql(self) -> &'static str {
        match self {
            ReferentialAction::NoAction => "NO ACTION",
            ReferentialAction::Restrict => "RESTRICT",
            ReferentialAction::Cascade => "CASCADE",
            ReferentialAction::SetNull => "SET NULL",
            ReferentialAction::SetDefault => "SET DEFAULT",
        }
    }
}

/// The new version no longer sees the column; it is dropped at complete. Writes through the new
/// version fill it with `down` (over the new version's columns) while older versions live.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DropColumn {
    pub table: String,
    pub column: String,
    #[serde(default)]
    pub down: Option<String>,
}

/// The new version sees the column under another name; the physical column is renamed at
/// complete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RenameColumn {
    pub table: String,
    pub from: String,
    pub to: String,
}

/// A change to one column: its type, nullability, default, a check or uniqueness, a foreign
/// key, a new name. Anything but a new default or name gives the new version a column of its
/// own, kept in step with the old one by `up` and `down`, and swapped in at complete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlterColumn {
    pub table: String,
    pub column: String,
    #[serde(default, rename = "type")]
    pub sql_type: Option<String>,
    #[serde(default)]
    pub nullable: Option<bool>,
    /// A new default for inserts through the new version (`""` is not allowed; use
    /// `drop_default`).
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub drop_default: bool,
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub unique: Option<bool>,
    #[serde(default)]
    pub references: Option<ForeignKey>,
    #[serde(default)]
    pub rename_to: Option<String>,
    /// The new column's value from the old version's columns (defaults to the column itself).
    #[serde(default)]
    pub up: Option<String>,
    /// The old column's value from the new version's columns (defaults to the column itself).
    #[serde(default)]
    pub down: Option<String>,
}

impl AlterColumn {
    /// Whether the change needs a physical column of its own during the migration.
    pub fn needs_new_column(&self) -> bool {
        self.sql_type.is_some()
            || self.nullable == Some(false)
            || self.check.is_some()
            || self.unique == Some(true)
            || self.references.is_some()
            || self.up.is_some()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateTable {
    pub table: String,
    #[serde(default)]
    pub schema: Option<String>,
    pub columns: Vec<ColumnDefinition>,
}

/// The new version no longer sees the table; it is dropped at complete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DropTable {
    pub table: String,
}

/// The new version names the table differently; the physical table is renamed at complete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RenameTable {
    pub from: String,
    pub to: String,
}

/// An index built `CONCURRENTLY` during expand (every version benefits at once).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    pub name: String,
    pub table: String,
    pub columns: Vec<String>,
    #[serde(default)]
    pub unique: bool,
    /// `btree` when not given.
    #[serde(default)]
    pub method: Option<String>,
    /// A partial index's predicate.
    #[serde(default, rename = "where")]
    pub predicate: Option<String>,
}

/// An index dropped `CONCURRENTLY` at complete (older versions may still rely on it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DropIndex {
    pub name: String,
    #[serde(default)]
    pub schema: Option<String>,
}

impl DropIndex {
    pub fn schema_or_default(&self) -> &str {
        self.schema.as_deref().unwrap_or(DEFAULT_SCHEMA)
    }
}

/// The relation names `operations` drop (`drop_index`) or give (`rename_table`,
/// `rename_constraint`), which the server is asked about before the plan is derived.
pub fn relation_names(operations: &[Operation]) -> Vec<&str> {
    operations
        .iter()
        .filter_map(|operation| match operation {
            Operation::DropIndex(drop) => Some(drop.name.as_str()),
            Operation::RenameTable(rename) => Some(rename.to.as_str()),
            // Renaming a unique, primary key or exclusion constraint renames its index too.
            Operation::RenameConstraint(rename) => Some(rename.to.as_str()),
            _ => None,
        })
        .collect()
}

/// A constraint over one or more columns of the new version. CHECK and FOREIGN KEY are added
/// `NOT VALID` during expand and validated after the backfill; UNIQUE is built as an index
/// `CONCURRENTLY` and becomes a constraint at complete. Older versions' writes must satisfy it
/// too from the expand on; to change a single column under its own rules while the old version
/// keeps writing anything, use `alter_column` (which gives the new version its own column).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AddConstraint {
    pub table: String,
    pub name: String,
    /// Columns (the new version's names) for UNIQUE and FOREIGN KEY.
    #[serde(default)]
    pub columns: Vec<String>,
    /// `check`, `unique` or `foreign_key`.
    #[serde(rename = "type")]
    pub kind: ConstraintKind,
    /// The CHECK expression, over the new version's column names.
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub references: Option<MultiColumnReference>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    Check,
    Unique,
    ForeignKey,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "a reference as an inline table: { table = \"…\", columns = [\"…\"] }"
)]
pub struct MultiColumnReference {
    pub table: String,
    #[serde(default)]
    pub schema: Option<String>,
    pub columns: Vec<String>,
    #[serde(default)]
    pub on_delete: Option<ReferentialAction>,
}

/// A constraint dropped at complete (older versions may rely on it until then).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DropConstraint {
    pub table: String,
    pub name: String,
}

/// A constraint renamed at complete: its name is the physical schema's, and the versions
/// before the new one may name it (`ON CONFLICT ON CONSTRAINT`, an error's constraint name)
/// until they retire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RenameConstraint {
    pub table: String,
    pub from: String,
    pub to: String,
}

/// The table's replica identity, by which logical replication names the row an UPDATE or
/// DELETE changes: set in the expand (every version writes the same rows), put back by a
/// rollback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SetReplicaIdentity {
    pub table: String,
    pub identity: ReplicaIdentity,
    /// The table's unique index `identity = "index"` names.
    #[serde(default)]
    pub index: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaIdentity {
    Default,
    Full,
    Nothing,
    Index,
}

/// One column becomes several: each new column has its `up` over the old version's columns, and
/// `down` rebuilds the old column from the new version's columns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitColumn {
    pub table: String,
    pub column: String,
    pub into: Vec<SplitPart>,
    pub down: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitPart {
    pub column: ColumnDefinition,
    pub up: String,
}

/// Several columns become one: `up` computes it from the old version's columns, `down` gives each
/// old column its value from the new version's columns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MergeColumns {
    pub table: String,
    pub columns: Vec<String>,
    pub into: ColumnDefinition,
    pub up: String,
    pub down: BTreeMap<String, String>,
}

/// SQL of the author's own, run in the expand transaction; `down` undoes it on rollback.
/// With `on_complete = true` it runs at complete instead (and `down` is not used).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSql {
    pub up: String,
    #[serde(default)]
    pub down: Option<String>,
    #[serde(default)]
    pub on_complete: bool,
}

impl Operation {
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::AddColumn(_) => "add_column",
            Operation::DropColumn(_) => "drop_column",
            Operation::RenameColumn(_) => "rename_column",
            Operation::AlterColumn(_) => "alter_column",
            Operation::CreateTable(_) => "create_table",
            Operation::DropTable(_) => "drop_table",
            Operation::RenameTable(_) => "rename_table",
            Operation::CreateIndex(_) => "create_index",
            Operation::DropIndex(_) => "drop_index",
            Operation::AddConstraint(_) => "add_constraint",
            Operation::DropConstraint(_) => "drop_constraint",
            Operation::RenameConstraint(_) => "rename_constraint",
            Operation::SetReplicaIdentity(_) => "set_replica_identity",
            Operation::SplitColumn(_) => "split_column",
            Operation::MergeColumns(_) => "merge_columns",
            Operation::RawSql(_) => "raw_sql",
        }
    }

    /// The table (the version's name) whose columns, constraints or indexes the operation
    /// changes in place; `None` for one that makes, renames or drops a whole table, names only
    /// an index, or is the author's own SQL.
    pub fn table_changed_in_place(&self) -> Option<&str> {
        match self {
            Operation::AddColumn(AddColumn { table, .. })
            | Operation::DropColumn(DropColumn { table, .. })
            | Operation::RenameColumn(RenameColumn { table, .. })
            | Operation::AlterColumn(AlterColumn { table, .. })
            | Operation::CreateIndex(CreateIndex { table, .. })
            | Operation::AddConstraint(AddConstraint { table, .. })
            | Operation::DropConstraint(DropConstraint { table, .. })
            | Operation::RenameConstraint(RenameConstraint { table, .. })
            | Operation::SetReplicaIdentity(SetReplicaIdentity { table, .. })
            | Operation::SplitColumn(SplitColumn { table, .. })
            | Operation::MergeColumns(MergeColumns { table, .. }) => Some(table),
            Operation::CreateTable(_)
            | Operation::DropTable(_)
            | Operation::RenameTable(_)
            | Operation::DropIndex(_)
            | Operation::RawSql(_) => None,
        }
    }
}
