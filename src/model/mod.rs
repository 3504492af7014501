//! The catalog's data model, shared by both planes: plain data and its validation, no I/O.
//!
//! [`routing_map`] is what a proxy routes by (versions, their tables and views, the default);
//! [`rule`] a routing rule, made of a match ([`glob`], [`cidr`]), an [`assign`]ment and a
//! [`guard`], failing with a [`rule_error`]; [`channel`] and [`heartbeat`] are the contracts
//! between the proxies and the control plane (the NOTIFY channel, the heartbeat's timing, the
//! [`latency`] buckets, the [`listed_session`]s a heartbeat names);
//! [`catalog_substitutes`] names the catalog relations each version sees through substitutes;
//! [`migration_progress`] is where migrations stand, for `/metrics`; [`shadow_run`] the shadow
//! run the proxies sample for, filtered by a [`shape_pattern`]; [`view_mapping`] how a view's
//! columns map onto its base table (what the rewriter writes the base table by);
//! [`sync_function`] how a migration's sync trigger functions are named (the proxy knows an
//! error raised in one), [`write_function`] how a trigger-backed view's write function is
//! (whose statements an error's context must not show); [`base_table_kin`] the relations that
//! hold or point at a base table's rows by other names; [`identifier`] the length Postgres cuts
//! names at.
//! The reads that fill this model from Postgres are in `catalog_read`.

pub mod assign;
pub mod base_table_kin;
pub mod catalog_substitutes;
pub mod channel;
pub mod cidr;
pub mod glob;
pub mod guard;
pub mod heartbeat;
pub mod identifier;
pub mod latency;
pub mod listed_session;
pub mod migration_progress;
pub mod routing_map;
pub mod rule;
pub mod rule_error;
pub mod shadow_run;
pub mod shape_pattern;
pub mod shown_keys;
pub mod sync_function;
pub mod view_mapping;
pub mod write_function;

pub use assign::{Assign, TOTAL_WEIGHT};
pub use base_table_kin::BaseTableKin;
pub use cidr::{Cidr, CidrError};
pub use glob::{Glob, GlobError};
pub use guard::Guard;
pub use routing_map::{RoutedTable, RoutingMap, Unavailable};
pub use rule::{CatalogRules, InvalidRule, Rule};
pub use rule_error::RuleError;
pub use shadow_run::ShadowRun;
pub use shape_pattern::{ShapePattern, ShapePatternError};
pub use view_mapping::{MappedColumn, ViewMapping, WriteAssignment};
