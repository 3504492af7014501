//! The pieces a migration's plan is made of: what a sync trigger and the backfill compute
//! for each table, and what the contract renames, replaces and drops. Recorded in the catalog
//! with the plan (serde), so a field added later has a default.

use serde::{Deserialize, Serialize};

/// One column a sync trigger (or the backfill) computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assign {
    /// The physical column written.
    pub target: String,
    /// SQL over the logical column names of the side it reads from.
    pub expression: String,
}

/// The logical names one side of a table sees, and the physical columns behind them.
pub type ColumnMap = Vec<(String, String)>;

/// What keeps one base table's two representations in step while the migration is live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSync {
    pub schema: String,
    pub table: String,
    /// Columns written for writers at the previous version or older (and direct writers).
    pub up: Vec<Assign>,
    /// The previous version's names for the table's columns, which `up` reads.
    pub up_columns: ColumnMap,
    /// Columns written for writers at the new version or newer.
    pub down: Vec<Assign>,
    /// The new version's names for the table's columns, which `down` reads.
    pub down_columns: ColumnMap,
    /// Targets of `up` that stand in for a column a sequence numbers (an identity, a serial)
    /// the migration retypes: they have no default until the contract, and an insert at the
    /// new version that leaves one out has it computed by `up` from the number the old column
    /// took (`sequence_fill.rs`).
    #[serde(default)]
    pub filled: Vec<String>,
    /// Targets of `up` that the column's own default computes as `up` does (an `up` written
    /// as the default, or a NOT NULL column's default standing in for a missing `up`): an
    /// older writer's INSERT leaves them to the default, which has run by then (a second
    /// `nextval` took a second number), and an UPDATE fills them only where still NULL, a row
    /// the backfill has not reached (whose NOT NULL check refused the UPDATE).
    #[serde(default)]
    pub defaulted: Vec<String>,
    // A plan recorded by an earlier build may carry `compared_as_text` (the columns its
    // triggers compared as text): serde ignores it, the triggers now compare stored bytes.
}

/// Existing rows of one table to fill before the new version goes live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    pub schema: String,
    pub table: String,
    /// The primary key: physical names and their types, walked in order.
    pub key: Vec<(String, String)>,
    pub assigns: Vec<Assign>,
    /// The previous version's names, which the assignments read.
    pub columns: ColumnMap,
}

/// A physical rename done at complete; the remaining versions' definitions follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Rename {
    Column {
        schema: String,
        table: String,
        from: String,
        to: String,
    },
    Table {
        schema: String,
        from: String,
        to: String,
    },
    /// A constraint of `schema.table` (the table's name before the migration).
    Constraint {
        schema: String,
        table: String,
        from: String,
        to: String,
    },
}

/// An old physical column the contract drops in favour of the new version's column(s): the
/// indexes and constraints covering it are rebuilt on its one replacement where they can be
/// (`rebuild/`), and what else covers it would be lost with it (`preconditions.rs` refuses
/// that).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replaced {
    pub schema: String,
    pub table: String,
    pub column: String,
    /// The operation that replaces it, as refusals name it (`operation 2 (alter_column)`).
    pub operation: String,
    /// The one column that takes its place (`alter_column`); none when it is split or merged.
    #[serde(default)]
    pub replacement: Option<Replacement>,
    /// The indexes (and their unique constraints), checks and foreign keys rebuilt on the
    /// replacement.
    #[serde(default)]
    pub rebuilt: Vec<String>,
    /// Those that go with what the migration drops (a column also dropped, the index or
    /// constraint itself), as Postgres would drop them: not rebuilt, and not lost by mistake.
    #[serde(default)]
    pub dropped_along: Vec<String>,
}

/// The new version's physical column that replaces an old one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replacement {
    pub column: String,
    /// Its type as the migration file spells it (a serial's sequence widens to it).
    #[serde(default)]
    pub sql_type: String,
    /// Whether it has the old column's type (an operator class then still fits).
    pub same_type: bool,
    /// Whether the operation makes it unique itself (`unique = true`).
    pub unique: bool,
    /// Whether the operation gives it a check of its own (`check = …`).
    #[serde(default)]
    pub check: bool,
    /// Whether it is NOT NULL once the migration completes (a replica identity and a primary
    /// key need it).
    #[serde(default)]
    pub not_null: bool,
    /// Whether the old column is generated as identity (the contract makes it so again).
    #[serde(default)]
    pub identity: bool,
}

/// What the migration's own operations drop at complete, which what covers a replaced column
/// may go with rather than be rebuilt (`rebuild/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Dropped {
    /// A physical column `drop_column` drops (not one a split or merge replaces).
    Column {
        schema: String,
        table: String,
        column: String,
    },
    /// A base table `drop_table` drops.
    Table {
        schema: String,
        table: String,
    },
    Index {
        schema: String,
        name: String,
    },
    Constraint {
        schema: String,
        table: String,
        name: String,
    },
}
