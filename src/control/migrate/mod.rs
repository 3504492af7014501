//! Migrations that change the physical schema while old and new clients stay live.
//!
//! A migration file ([`file`]) names the version it creates, the one it starts from, and its
//! operations. [`derive`] turns it, with the previous version's recorded definition and the
//! live schema, into the new version's definition and the SQL of every phase. [`start`] runs the
//! expand (DDL, [`sync`] triggers, the new version's views), the [`backfill`], validation and
//! index builds, then makes the version live ([`pace`] spaces the backfill's batches, by its own
//! time and by the application's latency that [`writers`] reads from the proxies' heartbeats);
//! [`complete`] contracts and retires the previous version, refused where [`remaining`] finds
//! a remaining version naming a column the contract took away; [`rollback`] undoes the expand.
//! [`privileges`] refuses a database where a client could plant a function the expressions
//! would call, [`preconditions`] a migration whose backfill or contract would silently damage
//! data; [`rebuild`] carries the indexes of a replaced column over to its replacement;
//! [`definitions`] makes the file's own types and sequences for those checks;
//! [`rename_chain`] refuses a migration whose steps name what a live one renames.
//! `control::usage` says who still uses a version, [`state`] is the catalog's record of each
//! migration, [`status`] reports on them and prints plans; [`convert`] writes a migration file
//! from an ORM's SQL.
//! See docs/migrations.md.

pub mod autovacuum;
pub mod backfill;
pub mod backfill_triggers;
pub mod column_types;
pub mod complete;
pub mod concurrent_builds;
pub mod constant_sql;
pub mod constraint_renames;
pub mod convert;
pub mod default_calls;
pub mod definitions;
pub mod dependents;
pub mod derive;
pub mod detached;
pub mod directory;
pub mod error;
pub mod file;
mod file_syntax;
pub mod fragment;
pub mod function_bodies;
pub mod left_over;
pub mod lock_holders;
pub mod lock_order;
pub mod new_partitions;
pub mod operation;
pub mod pace;
pub mod plpgsql_body;
pub mod preconditions;
pub mod privileges;
pub mod progress;
pub mod publications;
pub mod query_tree;
pub mod rebuild;
pub mod remaining;
pub mod rename_chain;
pub mod replica_identity;
pub mod retained_wal;
pub mod rollback;
pub mod sequence_fill;
pub mod settings;
pub mod sql_names;
pub mod standbys;
pub mod start;
pub mod start_point;
pub mod state;
pub mod status;
pub mod steps;
pub mod sync;
pub mod sync_sql;
pub mod target;
pub mod trigger_fields;
pub mod writers;

pub use error::MigrateError;
pub use file::MigrationFile;
pub use progress::{Progress, Silent};
