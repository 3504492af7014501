//! The control plane: changes to the catalog (schema `viewgate`) and to the views it records,
//! made by the CLI and the admin API, announced to every proxy with NOTIFY.
//!
//! One folder a concern: [`catalog`] (the schema's I/O), [`views`] (spec → plan → SQL →
//! apply), [`routing`] (changing routing rules), [`cutover`] (default version and upstream),
//! [`migrate`] (physical schema changes under live traffic, beside views).
//! Files several rooms share stay here: [`error`], [`connect`], [`quote`], [`privilege`],
//! [`retry`], [`templates`], [`overview`] (`viewgate status`) and [`proxies_loaded`] (a
//! command waits for the proxies to serve its change).
//! See docs/views.md.

pub mod catalog;
pub mod connect;
pub mod cutover;
pub mod error;
pub mod migrate;
pub mod overview;
pub mod privilege;
pub mod proxies_loaded;
pub mod quote;
pub mod retry;
pub mod routing;
pub mod shadow;
pub mod templates;
pub mod usage;
pub mod views;

pub use error::{ControlError, SpecError};
