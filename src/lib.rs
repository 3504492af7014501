//! viewgate: a PostgreSQL proxy that lets several versions of an application's schema live on
//! one database, each client seeing the version it was built for.
//!
//! Data plane: [`proxy`] (listener → handshake → auth → session → upstream) over [`protocol`]
//! and [`net`]. Shared plumbing: [`config`], [`shutdown`], [`logging`]. Development and demo
//! support: [`pg_cluster`] (throwaway Postgres clusters) and [`demo`].
//! See docs/ARCHITECTURE.md for the codemap.

pub mod admin;
pub mod catalog_read;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod logging;
pub mod model;
pub mod net;
pub mod pg_cluster;
pub mod protocol;
pub mod proxy;
pub mod rewriter;
pub mod router;
pub mod shutdown;
pub mod telemetry;
