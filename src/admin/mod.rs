//! The admin HTTP API, on its own listen address: health for orchestrators, Prometheus metrics.
//!
//! `/healthz` (the process is up) and `/readyz` (accepting sessions, and the catalog loaded when
//! one is configured) answer anyone, as Kubernetes probes expect. Everything else needs
//! `Authorization: Bearer <admin_token>`: the control operations (status, cutover, routes) in
//! [`operations`], shadow runs in [`shadow`], the client sessions this proxy serves in
//! [`sessions`], the web [`dashboard`] (its page shell at `/ui` is
//! public and holds no data; its panel needs the token), pause/resume and the upstream switch in `server.rs`; `net::admin_client` is
//! the CLI's side of those calls.

pub mod auth;
pub mod dashboard;
pub mod dashboard_panel;
pub mod metrics;
pub mod operations;
pub mod server;
pub mod sessions;
pub mod shadow;

pub use server::{AdminError, AdminServer};
