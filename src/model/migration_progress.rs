//! Where the database's migrations stand, as a proxy publishes it in `/metrics`: each
//! migration that is backfilling or live, and per table the rows backfilled of those estimated
//! and, while it runs, the backfill's pace; and what a complete or rollback left to run after
//! its commit (a killed one's index drops), which an operator should hear of without asking.
//! Read from `viewgate.migrations` by the heartbeat, which already visits the catalog.

use serde::Deserialize;

/// The migrations a proxy last saw in the catalog.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigrationProgress {
    pub migrations: Vec<MigrationFigures>,
    pub left_to_run: Vec<LeftToRun>,
}

/// Statements a migration's complete or rollback left to run after its commit.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftToRun {
    pub version: String,
    /// `complete` or `rollback`: the command that committed.
    pub after: &'static str,
    pub statements: u64,
}

impl LeftToRun {
    /// One migration's row: its version, its phase as the catalog records it, and how many
    /// statements it has left.
    pub fn from_row(version: String, phase: &str, statements: u64) -> Self {
        LeftToRun {
            version,
            after: if phase == "completed" {
                "complete"
            } else {
                "rollback"
            },
            statements,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MigrationFigures {
    pub version: String,
    pub from: String,
    pub phase: String,
    pub tables: Vec<TableBackfill>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableBackfill {
    pub table: String,
    pub rows: u64,
    pub estimate: u64,
    pub done: bool,
    /// The backfill's recent pace, while it runs (see `control::migrate::state::Pacing`).
    pub pace: Option<Pace>,
}

/// Rows per second over the last few seconds, the share of them spent in batches, and the
/// standby the backfill waits for, if it does.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Pace {
    pub rows_per_second: f64,
    pub working_share: f64,
    #[serde(default)]
    pub waiting_for_standby: Option<String>,
}

/// The figures of one checkpoint, as `viewgate.migrations.backfill` stores it per table.
#[derive(Deserialize)]
struct Checkpoint {
    #[serde(default)]
    rows: u64,
    #[serde(default)]
    estimate: u64,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    pacing: Option<Pace>,
}

impl MigrationFigures {
    /// One migration's row; a backfill document this build cannot read gives no tables.
    pub fn from_row(version: String, from: String, phase: String, backfill_json: &str) -> Self {
        let checkpoints: std::collections::BTreeMap<String, Checkpoint> =
            serde_json::from_str(backfill_json).unwrap_or_default();
        let tables = checkpoints
            .into_iter()
            .map(|(table, checkpoint)| TableBackfill {
                table,
                rows: checkpoint.rows,
                estimate: checkpoint.estimate.max(checkpoint.rows),
                done: checkpoint.done,
                pace: checkpoint.pacing.filter(|_| !checkpoint.done),
            })
            .collect();
        MigrationFigures {
            version,
            from,
            phase,
            tables,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_become_figures_and_garbage_becomes_none() {
        let figures = MigrationFigures::from_row(
            "v2".into(),
            "v1".into(),
            "backfilling".into(),
            r#"{"public.t": {"cursor": ["5"], "rows": 5, "estimate": 3, "done": false},
                "public.u": {"rows": 9, "estimate": 20, "done": false, "pacing":
                    {"rows_per_second": 1200.5, "working_share": 0.25, "batch_rows": 250,
                     "waiting_for_standby": "waiting for standby walreceiver"}},
                "public.w": {"rows": 7, "estimate": 7, "done": true, "pacing":
                    {"rows_per_second": 10.0, "working_share": 1.0, "batch_rows": 1}}}"#,
        );
        assert_eq!(
            figures.tables,
            [
                TableBackfill {
                    table: "public.t".into(),
                    rows: 5,
                    estimate: 5,
                    done: false,
                    pace: None,
                },
                TableBackfill {
                    table: "public.u".into(),
                    rows: 9,
                    estimate: 20,
                    done: false,
                    pace: Some(Pace {
                        rows_per_second: 1200.5,
                        working_share: 0.25,
                        waiting_for_standby: Some("waiting for standby walreceiver".into()),
                    }),
                },
                TableBackfill {
                    table: "public.w".into(),
                    rows: 7,
                    estimate: 7,
                    done: true,
                    pace: None,
                },
            ]
        );
        let unreadable = MigrationFigures::from_row("v2".into(), "v1".into(), "live".into(), "[");
        assert!(unreadable.tables.is_empty());
    }
}
