//! Rewriter cost on the hot path: a cold rewrite (parse and splice), a cached one (the same
//! text again, and a new text of a known shape: other constants inlined), a miss through the
//! cache (parse plus learning the shape), the same through a session's recent shapes
//! (`rewrite_cached_in`), and the fast path for statements that name no
//! managed table (also for a version with catalog substitutes, and a catalog lookup through
//! them). Targets: cold ≤ 50 µs, cached ≤ 2 µs. And the parsers alone, to choose
//! between them (docs/rewriting.md): sqlparser, libpg_query (`pg_query::parse`, which packs the
//! tree as protobuf and decodes it; and its JSON form, which the check reads), and the check.

use std::hint::black_box;

/// The binary's allocator (`src/main.rs`), so the benches measure what the proxy runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use viewgate::rewriter::postgres_grammar::managed_references;
use viewgate::rewriter::postgres_parser;
use viewgate::rewriter::rewrite::{finish, mentions_managed_table, read_with_sqlparser};
use viewgate::rewriter::{
    RecentShapes, RelationName, RewriteCache, VersionTargets, ViewTarget, rewrite, rewrite_cached,
    rewrite_cached_in,
};

/// A ~350-character ORM-shaped SELECT naming the managed table.
const MANAGED_SELECT: &str = r#"SELECT "model_metadata"."id", "model_metadata"."model_name", "model_metadata"."model_version", "model_metadata"."hyperparameters", "model_metadata"."created_at" FROM "model_metadata" INNER JOIN "deployments" ON ("deployments"."model_id" = "model_metadata"."id") WHERE ("model_metadata"."model_name" = $1 AND "deployments"."env" = $2) ORDER BY "model_metadata"."created_at" DESC LIMIT 21"#;

/// The same statement as a client that binds on its side sends it: constants in the text.
fn managed_select_with_literals(n: usize) -> String {
    format!(
        r#"SELECT "model_metadata"."id", "model_metadata"."model_name", "model_metadata"."model_version", "model_metadata"."hyperparameters", "model_metadata"."created_at" FROM "model_metadata" INNER JOIN "deployments" ON ("deployments"."model_id" = "model_metadata"."id") WHERE ("model_metadata"."model_name" = 'model-{n}' AND "deployments"."env" = 'prod') ORDER BY "model_metadata"."created_at" DESC LIMIT {}"#,
        n % 50 + 1
    )
}

/// Distinct texts of one shape cycled through by the shape-hit benchmark.
const LITERAL_VARIANTS: usize = 1_000;

/// A statement of the same length that names no managed table.
const UNMANAGED_SELECT: &str = r#"SELECT "deployments"."id", "deployments"."model_id", "deployments"."env", "deployments"."replicas", "deployments"."created_at" FROM "deployments" INNER JOIN "clusters" ON ("clusters"."id" = "deployments"."cluster_id") WHERE ("deployments"."env" = $1 AND "clusters"."region" = $2 AND "clusters"."name" <> $3) ORDER BY "deployments"."created_at" DESC LIMIT 21"#;

fn v2() -> VersionTargets {
    VersionTargets::new(
        "v2",
        vec![ViewTarget {
            table: RelationName::new("public", "model_metadata"),
            view: RelationName::new("public", "model_metadata_v2"),
        }],
    )
}

/// `count` statements naming the managed table, in one query string.
fn script(count: usize) -> String {
    "SELECT 1 FROM model_metadata WHERE false; ".repeat(count)
}

fn benches(c: &mut Criterion) {
    let targets = v2();
    // Linear in the length of the string (the forty-second red-team pass found it quadratic):
    // the 4,000-statement script should cost about four times the 1,000-statement one.
    for count in [1_000, 4_000] {
        let text = script(count);
        c.bench_function(&format!("rewrite_cold_script_{count}_statements"), |b| {
            b.iter(|| rewrite(black_box(&text), &targets))
        });
    }
    c.bench_function("rewrite_cold_350_chars", |b| {
        b.iter(|| rewrite(black_box(MANAGED_SELECT), &targets))
    });
    c.bench_function("rewrite_cold_unchecked_350_chars", |b| {
        b.iter(|| {
            let reading = read_with_sqlparser(black_box(MANAGED_SELECT), &targets);
            finish(MANAGED_SELECT, "v2", Ok(reading.edits))
        })
    });
    c.bench_function("parse_sqlparser_350_chars", |b| {
        b.iter(|| Parser::parse_sql(&PostgreSqlDialect {}, black_box(MANAGED_SELECT)))
    });
    c.bench_function("parse_pg_query_350_chars", |b| {
        b.iter(|| pg_query::parse(black_box(MANAGED_SELECT)).map(|r| r.protobuf.stmts.len()))
    });
    c.bench_function("parse_pg_query_json_350_chars", |b| {
        b.iter(|| {
            postgres_parser::parse(black_box(MANAGED_SELECT)).map(|tree| tree.text().map(str::len))
        })
    });
    c.bench_function("postgres_references_350_chars", |b| {
        b.iter(|| managed_references(black_box(MANAGED_SELECT), &targets))
    });

    let cache = RewriteCache::default();
    rewrite_cached(&cache, MANAGED_SELECT, &targets);
    c.bench_function("rewrite_cached_350_chars", |b| {
        b.iter(|| rewrite_cached(&cache, black_box(MANAGED_SELECT), &targets))
    });

    let variants: Vec<String> = (0..LITERAL_VARIANTS)
        .map(managed_select_with_literals)
        .collect();
    rewrite_cached(&cache, &variants[0], &targets);
    let mut next = variants.iter().cycle();
    c.bench_function("rewrite_cached_new_text_known_shape_350_chars", |b| {
        b.iter(|| rewrite_cached(&cache, black_box(next.next().unwrap()), &targets))
    });
    // The same texts through a session, which tries its recent shapes' templates first.
    let mut recent = RecentShapes::default();
    rewrite_cached_in(&cache, &mut recent, &variants[0], &targets);
    c.bench_function("rewrite_session_new_text_known_shape_350_chars", |b| {
        b.iter(|| {
            let sql = black_box(next.next().unwrap());
            rewrite_cached_in(&cache, &mut recent, sql, &targets)
        })
    });
    c.bench_function("rewrite_cached_miss_350_chars", |b| {
        b.iter_batched(
            RewriteCache::default,
            // Returned, so the cache is dropped outside the measurement.
            |cache| {
                let outcome = rewrite_cached(&cache, black_box(&variants[1]), &targets);
                (cache, outcome)
            },
            BatchSize::SmallInput,
        )
    });

    c.bench_function("mentions_managed_table_unmanaged_350_chars", |b| {
        b.iter(|| mentions_managed_table(black_box(UNMANAGED_SELECT), &targets))
    });
    c.bench_function("rewrite_unmanaged_350_chars", |b| {
        b.iter(|| rewrite(black_box(UNMANAGED_SELECT), &targets))
    });

    // A version with catalog substitutes: the fast path also looks for the catalog names, and
    // a catalog lookup (psql's `\d`) is a managed statement, cached by shape.
    let with_catalog = v2().with_catalog_substitutes("viewgate_catalog_v2");
    c.bench_function("mentions_managed_table_unmanaged_350_chars_catalog", |b| {
        b.iter(|| mentions_managed_table(black_box(UNMANAGED_SELECT), &with_catalog))
    });
    let cache = RewriteCache::default();
    rewrite_cached(&cache, CATALOG_LOOKUP, &with_catalog);
    c.bench_function("rewrite_cached_catalog_lookup", |b| {
        b.iter(|| rewrite_cached(&cache, black_box(CATALOG_LOOKUP), &with_catalog))
    });
    c.bench_function("rewrite_cold_catalog_lookup", |b| {
        b.iter(|| rewrite(black_box(CATALOG_LOOKUP), &with_catalog))
    });

    // bench/pgbench.sh's managed read and its unmanaged twin, at a version as the proxy
    // builds it (with catalog substitutes): their difference is what a managed table adds
    // to a statement through viewgate.
    let reads: Vec<String> = (1..=LITERAL_VARIANTS)
        .map(|id| format!("SELECT id, model_name, model_type FROM model_metadata WHERE id = {id};"))
        .collect();
    let twins: Vec<String> = (1..=LITERAL_VARIANTS)
        .map(|id| format!("SELECT id, model_name, model_type FROM unmanaged_v2 WHERE id = {id};"))
        .collect();
    let cache = RewriteCache::default();
    rewrite_cached(&cache, &reads[0], &with_catalog);
    let mut next = reads.iter().cycle();
    c.bench_function("rewrite_cached_pgbench_managed_read", |b| {
        b.iter(|| rewrite_cached(&cache, black_box(next.next().unwrap()), &with_catalog))
    });
    let mut recent = RecentShapes::default();
    rewrite_cached_in(&cache, &mut recent, &reads[0], &with_catalog);
    c.bench_function("rewrite_session_pgbench_managed_read", |b| {
        b.iter(|| {
            let sql = black_box(next.next().unwrap());
            rewrite_cached_in(&cache, &mut recent, sql, &with_catalog)
        })
    });
    let mut next = twins.iter().cycle();
    c.bench_function("rewrite_cached_pgbench_unmanaged_read", |b| {
        b.iter(|| rewrite_cached(&cache, black_box(next.next().unwrap()), &with_catalog))
    });
}

/// psql's first query for `\d model_metadata`: the table's oid by a pattern on its name.
const CATALOG_LOOKUP: &str = r#"SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(model_metadata)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3"#;

criterion_group!(rewrite_benches, benches);
criterion_main!(rewrite_benches);
