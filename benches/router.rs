//! The router's cost per statement of a versioned session: everything
//! `SessionRouter::statement` does with a simple-protocol statement (the version commands,
//! savepoints, holds and view-name checks every statement meets, then the rewrite), for
//! bench/pgbench.sh's managed read and its unmanaged twin at a version as the proxy builds it
//! (with catalog substitutes). The proxy's user time per statement outside the socket work:
//! the difference between the two is what a managed table adds, the twin's own figure what
//! every statement pays (docs/benchmarks.md, "Managed tables and the shape cache").

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::sync::Arc;

/// The binary's allocator (`src/main.rs`), so the benches measure what the proxy runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use viewgate::config::{DEFAULT_STICKY_IDENTITY, UnparseablePolicy};
use viewgate::model::{CatalogRules, RoutedTable, RoutingMap};
use viewgate::rewriter::RewriteCache;
use viewgate::router::{ClientIdentity, Routed, RoutingState, SessionRouter};

/// Distinct ids cycled through, so each statement is a new text of a known shape.
const IDS: usize = 1_000;

/// The seed example's table at v2, and the version's catalog substitutes, as `views apply`
/// leaves the catalog.
fn routing_map() -> RoutingMap {
    let table = RoutedTable {
        table_name: "model_metadata".into(),
        base_schema: "public".into(),
        base_table: "model_metadata".into(),
        view_schema: "public".into(),
        view_name: "model_metadata_v2".into(),
        mapping: None,
    };
    RoutingMap {
        default_version: Some("v2".into()),
        rules: CatalogRules {
            rules: Vec::new(),
            invalid: Vec::new(),
        },
        versions: BTreeMap::from([("v2".to_owned(), vec![table])]),
        tracks_writers: false,
        shadow: None,
        catalog_substitutes: BTreeSet::from(["v2".to_owned()]),
        relation_schemas: Default::default(),
        pending_views: Vec::new(),
        kin: Default::default(),
        catalog_change: None,
        unavailable: Default::default(),
    }
}

fn session() -> SessionRouter {
    let routing = Arc::new(ArcSwap::from_pointee(RoutingState::from_catalog(
        "app",
        &routing_map(),
    )));
    let client = ClientIdentity {
        user: "app".into(),
        database: "app".into(),
        application_name: "pgbench".into(),
        address: None,
    };
    SessionRouter::new(
        routing,
        client,
        None,
        &DEFAULT_STICKY_IDENTITY,
        UnparseablePolicy::Reject,
        Arc::new(RewriteCache::default()),
    )
    .expect("v2 is in the catalog")
}

fn benches(c: &mut Criterion) {
    let read = |table: &str| -> Vec<String> {
        (1..=IDS)
            .map(|id| format!("SELECT id, model_name, model_type FROM {table} WHERE id = {id};"))
            .collect()
    };
    // An ORM's statement of 350 characters naming no managed table (`benches/rewrite.rs`),
    // with a new id each time: where the checks' passes over the text add up.
    let orm: Vec<String> = (1..=IDS)
        .map(|id| format!(r#"SELECT "deployments"."id", "deployments"."model_id", "deployments"."env", "deployments"."replicas", "deployments"."created_at" FROM "deployments" INNER JOIN "clusters" ON ("clusters"."id" = "deployments"."cluster_id") WHERE ("deployments"."env" = 'prod' AND "clusters"."region" = 'eu' AND "clusters"."name" <> 'c-{id}') ORDER BY "deployments"."created_at" DESC LIMIT 21"#))
        .collect();
    for (name, statements, rewritten) in [
        ("router_statement_orm_unmanaged_350_chars", orm, false),
        (
            "router_statement_pgbench_managed_read",
            read("model_metadata"),
            true,
        ),
        (
            "router_statement_pgbench_unmanaged_read",
            read("unmanaged_v2"),
            false,
        ),
    ] {
        let mut router = session();
        let first = router.statement(&statements[0], true);
        assert_eq!(matches!(first, Routed::Replace(_)), rewritten, "{first:?}");
        let mut next = statements.iter().cycle();
        c.bench_function(name, |b| {
            b.iter(|| router.statement(black_box(next.next().expect("cycles")), true))
        });
    }
}

criterion_group!(router_benches, benches);
criterion_main!(router_benches);
