//! The control plane's versioned views: spec file → plan → SQL from templates → apply, with the
//! catalog in schema `viewgate` recording versions, their objects and every apply.
//!
//! Flow: [`spec`] parses and checks the TOML spec; [`introspect`] reads the base tables from
//! the server; [`plan`] resolves names and write paths; [`generate`] renders [`templates`];
//! [`apply`] runs it in one transaction with lock timeouts and retries; [`status`] compares the
//! database with the spec; [`retire`] drops a version; [`catalog`] owns the `viewgate` schema
//! and [`catalog::load_routing_map`] is what the proxy reads. See docs/views.md.

pub mod checksum;
pub mod error;
pub mod generate;
pub mod introspect;
pub mod plan;
pub mod quote;
pub mod spec;
pub mod templates;

pub use error::{ControlError, SpecError};
