//! One SQL statement of a migration's phase, with what it does in words, what clears a
//! killed attempt's leftover, and the partition it is about: the unit a plan is made of,
//! recorded in the catalog and shown by `migrate plan`.

use serde::{Deserialize, Serialize};

use crate::control::quote::{quote_ident, quote_qualified};
use crate::control::views::introspect::Partition;

/// One SQL statement of a phase, with what it does in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub description: String,
    pub sql: String,
    /// For a concurrent build: what clears a killed or timed-out attempt's leftover (an
    /// invalid index), run before each attempt. Plans recorded before builds carried it
    /// pair each build with its undo in `rollback_concurrent` by position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear: Option<String>,
    /// For a concurrent build: the index it builds, (schema, name). A run after one killed
    /// keeps the index when it is valid rather than build it again (`concurrent_builds.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builds: Option<(String, String)>,
    /// For a step on one partition: the partition and the parent it was planned under. The
    /// step is skipped once the partition is no longer one of that parent's (pg_partman's
    /// retention detaches and drops old partitions while a migration runs; the build, or the
    /// contract, failed on the missing table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_partition: Option<OnPartition>,
    /// For a contract's rename of an index's column: which. The step is skipped where the
    /// index (or one attached to it) has no column of the old name or has one of the new
    /// (`rebuild/index_names.rs`): a name only, never worth failing the contract for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renames_index_column: Option<IndexColumnRename>,
}

/// A column of index `index` (schema, name) renamed `from` → `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexColumnRename {
    pub index: (String, String),
    pub from: String,
    pub to: String,
}

/// A partition of a table the migration adds columns to, as it was at the start
/// (`detached.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAtStart {
    /// The table the columns are added to, (schema, name).
    pub root: (String, String),
    /// The partition's own parent then (the root, or a partition partitioned in turn).
    pub parent: (String, String),
    pub partition: (String, String),
}

/// A partition and its parent, each (schema, name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnPartition {
    pub partition: (String, String),
    pub parent: (String, String),
}

impl Step {
    pub fn new(description: impl Into<String>, sql: impl Into<String>) -> Self {
        Step {
            description: description.into(),
            sql: sql.into(),
            clear: None,
            builds: None,
            on_partition: None,
            renames_index_column: None,
        }
    }

    /// The step renaming column `from` of index `schema.index` to `to` (`ALTER TABLE` takes an
    /// index there, `ALTER INDEX` has no `RENAME COLUMN`). On a partitioned index Postgres
    /// renames it on every index attached to it too, and refuses `ONLY`.
    pub fn renaming_index_column(schema: &str, index: &str, from: &str, to: &str) -> Self {
        Step {
            renames_index_column: Some(IndexColumnRename {
                index: (schema.to_owned(), index.to_owned()),
                from: from.to_owned(),
                to: to.to_owned(),
            }),
            ..Step::new(
                format!(
                    "rename column {from} of index {index} to {to}, its table column's name now"
                ),
                format!(
                    "ALTER TABLE {} RENAME COLUMN {} TO {}",
                    quote_qualified(schema, index),
                    quote_ident(from),
                    quote_ident(to)
                ),
            )
        }
    }

    /// The step, skipped once `partition` is no longer a partition of its parent.
    pub fn on_partition(self, partition: &Partition) -> Self {
        Step {
            on_partition: Some(OnPartition {
                partition: (partition.schema.clone(), partition.name.clone()),
                parent: partition.parent.clone(),
            }),
            ..self
        }
    }

    /// The step, building index `(schema, name)`.
    pub fn building(self, schema: &str, name: &str) -> Self {
        Step {
            builds: Some((schema.to_owned(), name.to_owned())),
            ..self
        }
    }

    /// The step, with `clear` run before each attempt of it.
    pub fn clearing(self, clear: impl Into<String>) -> Self {
        Step {
            clear: Some(clear.into()),
            ..self
        }
    }
}
