//! The integration tests, linked as one binary (`cargo test --test integration`).
//!
//! Each file beside this one is a module: a test's name is `<file>::<test>`, so
//! `cargo test --test integration -- versioning::` runs one file's tests. One binary, not one per
//! file, because every test binary links the whole proxy and libpg_query: 64 of them took some
//! 7 GB of disk and a linker run each, and a CI machine ran out of room while linking
//! (stop 34). The helpers the files share are declared here once.

mod common;
#[path = "drivers/deps.rs"]
mod deps;
#[path = "migrations/support.rs"]
mod migration_support;
#[path = "views/support.rs"]
mod support;

mod admin;
mod auth;
mod backend_identity;
mod bad_input;
mod base_table_kin;
mod canary_guard;
mod cancel_peers;
mod catalog_tls;
mod cli;
mod config_reload;
mod copy_versions;
mod cutover;
mod cutover_guard;
mod cutover_load;
mod dashboard;
mod deploy;
mod drivers_jdbc;
mod drivers_node;
mod drivers_python;
mod drivers_tokio_postgres;
mod dumps;
mod error_positions;
mod faults;
mod grammar;
mod introspection;
mod introspection_checks;
mod introspection_computed_names;
mod introspection_own_schemas;
mod introspection_sequences;
mod introspection_sqlx_explain;
mod large_messages;
mod layers;
mod mapping_functions;
mod merge_properties;
mod merge_versions;
mod migrations;
mod migrations_backfill_writes;
mod migrations_column_properties;
mod migrations_contract_order;
mod migrations_definitions;
mod migrations_dependents;
mod migrations_directory;
mod migrations_foreign_partitions;
mod migrations_function_bodies;
mod migrations_hostile_writers;
mod migrations_identity;
mod migrations_introspection;
mod migrations_killed;
mod migrations_left_to_run;
mod migrations_names;
mod migrations_not_null;
mod migrations_operations;
mod migrations_partitioned;
mod migrations_preconditions;
mod migrations_proxy;
mod migrations_publications;
mod migrations_rebuild;
mod migrations_refusals;
mod migrations_replica_identity;
mod migrations_retained_wal;
mod migrations_session;
mod migrations_standbys;
mod migrations_sync_fidelity;
mod migrations_trigger_fields;
mod negotiation;
mod pause;
mod pgbench;
mod pipelining;
mod protocol_properties;
mod proxies_loaded;
mod psql;
mod rewrite_cache_properties;
mod rewrite_corpus;
mod rewrite_differential;
mod rewrite_properties;
mod routing_rules;
mod search_path;
mod security;
mod session_leaks;
mod shadow;
mod shutdown;
mod status;
mod table_structure;
mod thousand_clients;
mod tls;
mod upsert_versions;
mod upstream_cutover;
mod upstream_tls;
mod versioning;
mod versions_python;
mod views_bad_input;
mod views_kept;
mod views_lifecycle;
mod views_model_metadata;
mod views_operations;
