//! The view pipeline: spec file → plan → SQL from templates → apply, and the commands that
//! inspect and retire what it made.
//!
//! [`spec`] parses and checks the TOML spec; [`introspect`] reads the base tables from the
//! server; [`plan`] resolves names and write paths; [`generate`] renders the templates;
//! [`validate`] checks names and expressions against the server; [`apply`] runs it in one
//! transaction with lock timeouts and retries; [`checksum`] fingerprints specs; [`status`]
//! compares the database with the spec; [`retire`] drops a version; [`definition`] is each
//! version's recorded definition, which migrations derive the next version from; [`mapping`]
//! how each view's columns map onto its base table, recorded for the proxy, with
//! [`mapping_functions`] the functions that let the proxy use that mapping without pasting it;
//! [`in_place`] replaces a view in place where its columns allow, and [`grants`] keeps the
//! grants made on a view when it must be made anew.

pub mod apply;
pub mod checksum;
pub mod definition;
pub mod generate;
pub mod grants;
pub mod in_place;
pub mod introspect;
pub mod mapping;
pub mod mapping_functions;
pub mod plan;
pub mod probe;
pub mod retire;
pub mod spec;
pub mod status;
pub mod validate;
