//! Version-aware SQL rewriting: references to managed tables become references to the
//! client's version's views, spliced into the original text.
//!
//! Splicing rather than re-printing keeps comments, hints and formatting as the client wrote
//! them, and leaves every statement that names no managed table byte-for-byte unchanged.
//! Pipeline: a cheap case-insensitive scan (`rewrite::mentions_managed_table`) → tokenizing and
//! splitting into statements (`statements`) → parsing each candidate from its own tokens →
//! collecting edits (`references`) → splicing (`splice`). The proxy calls it through
//! `cache::rewrite_cached`, which remembers rewrites by (version, statement shape): `lexer`
//! finds the constants without parsing, `shape` masks them and keeps edits in token terms;
//! a session tries its last few shapes' templates first (`recent_shapes`, `shape_template`).
//! A version with catalog substitutes also rewrites the catalog relations introspection reads
//! (`pg_catalog.pg_class`, `information_schema.columns`, …) to its own (`targets`), by the same
//! pipeline, so psql's `\d` and ORMs' reflection show the version's tables. Where Postgres
//! cannot write a version's view itself, the write goes to the base table with the view's
//! columns mapped: `COPY … FROM` through an auto-updatable view (`references`), `INSERT … ON
//! CONFLICT` through a trigger-backed one (`upsert`), `MERGE` through either (`merge`), the
//! view's reads and its trigger's writes over the base row shared (`base_row`); what cannot
//! be mapped exactly is refused (`refusal`). A constraint violation's detail, which speaks of
//! the base row, is told in the version's terms or not at all (`error_detail`).
//! Where a session's search_path makes an unqualified managed name mean another schema's
//! relation, `resolution` pins it there (`shadowing` holds the data; targets with pins are
//! cached under an identity of their own).

pub mod base_row;
pub mod cache;
pub mod coverage;
pub mod definitions;
pub mod error_detail;
pub mod expression_depth;
pub mod identifier;
pub mod lexer;
pub mod lexer_agreement;
pub mod mention;
pub mod merge;
pub mod parse_tree;
pub mod postgres_grammar;
pub mod postgres_parser;
pub mod query_functions;
pub mod reading_settings;
pub mod recent_shapes;
pub mod references;
pub mod refusal;
pub mod resolution;
pub mod rewrite;
pub mod search_path_catalog;
pub mod shadowing;
pub mod shape;
pub mod shape_template;
pub mod splice;
pub mod statement_edits;
pub mod statement_scan;
pub mod statements;
pub mod table_shorthand;
pub mod targets;
pub mod upsert;
pub mod version_setters;
pub mod word_scan;

pub use cache::{
    CacheStats, CachedOutcome, RewriteCache, RewriteOutcome, rewrite_cached, rewrite_cached_in,
};
pub use recent_shapes::RecentShapes;
pub use rewrite::{Rewrite, RewriteError, rewrite};
pub use targets::{RelationName, VersionTargets, ViewTarget};

#[cfg(test)]
mod tests;
