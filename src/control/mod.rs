//! The control plane's versioned views: spec file → plan → SQL from templates → apply, with the
//! catalog in schema `viewgate` recording versions, their objects and every apply.
//!
//! Flow: [`spec`] parses and checks the TOML spec; [`introspect`] reads the base tables from
//! the server; [`plan`] resolves names and write paths; [`generate`] renders [`templates`];
//! [`validate`] checks names and expressions against the server; [`apply`] runs it in one
//! transaction with lock timeouts and [`retry`]; [`status`] compares the database with the
//! spec; [`retire`] drops a version; [`catalog`] owns the `viewgate` schema, and
//! [`catalog::load_routing_map`] is what the proxy reads; [`cutover`] flips the default
//! version; [`rules`] is the routing rule model and [`routes`] changes the rules.
//! [`commands`] is what the CLI calls.
//! See docs/views.md.

pub mod apply;
pub mod catalog;
pub mod checksum;
pub mod commands;
pub mod connect;
pub mod cutover;
pub mod definition;
pub mod error;
pub mod generate;
pub mod introspect;
pub mod migrate;
pub mod overview;
pub mod plan;
pub mod quote;
pub mod retire;
pub mod retry;
pub mod routes;
pub mod rules;
pub mod spec;
pub mod status;
pub mod templates;
pub mod upstream_cutover;
pub mod validate;

pub use catalog::{RoutedTable, RoutingMap, load_routing_map};
pub use error::{ControlError, SpecError};
