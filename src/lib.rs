//! viewgate: a PostgreSQL proxy that lets several versions of an application's schema live on
//! one database, each client seeing the version it was built for.
//!
//! Layers, imports pointing down only (`tests/layers.rs` checks it):
//! - shared: [`model`] (the catalog's data model, no I/O), [`catalog_read`] (the catalog reads
//!   both planes make), [`config`], [`protocol`], [`net`], [`shutdown`], [`logging`];
//! - data plane: [`proxy`] (listener → handshake → auth → session → upstream) → [`router`]
//!   (which version) → [`rewriter`] (SQL text for it);
//! - control plane: [`control`] (catalog I/O, views, routing commands, cutovers), beside the
//!   data plane and never importing it (nor it the control plane);
//! - ops: [`admin`] (HTTP API, metrics) and [`telemetry`] (heartbeat, canary guard);
//! - edge: [`cli`] (what the commands run), [`demo`], [`pg_cluster`] (throwaway Postgres
//!   clusters), and the binary's `main.rs`.
//!
//! See docs/ARCHITECTURE.md for the codemap and the layer table.

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
