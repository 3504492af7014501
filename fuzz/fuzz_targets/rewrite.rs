//! The rewriter on arbitrary SQL text at every version of a spec: v1 and v2 of the seed example
//! (v2's view computes a column and shows columns v1 hides, and its catalog reads go to its
//! catalog substitutes), each with the column mapping the catalog records (so COPY … FROM at
//! v1 goes to the base table, and INSERT … ON CONFLICT at v2 becomes the base-table upsert),
//! and a v3 that renames the table
//! (clients say `models`) and keeps its views in a schema of their own. Each input is rewritten
//! directly and through the shape cache, which lives across inputs as it does in the proxy; the
//! two must agree.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use viewgate::config::CacheConfig;
use viewgate::model::{MappedColumn, ViewMapping, WriteAssignment};
use viewgate::rewriter::targets::BaseWrite;
use viewgate::rewriter::{
    RelationName, RewriteCache, VersionTargets, ViewTarget, rewrite, rewrite_cached,
};

/// The seed example's mapping at v1 (auto-updatable) or v2 (trigger-backed, `model_type`
/// computed and written back).
fn seed_mapping(version: &str) -> BaseWrite {
    let v2 = version == "v2";
    let column = |name: &str, type_name: &str, default: Option<&str>| MappedColumn {
        name: name.into(),
        base_column: (name != "model_type").then(|| name.into()),
        expression: (name == "model_type").then(|| "COALESCE(model_type, 'neural_network')".into()),
        type_name: type_name.into(),
        default: default.filter(|_| v2).map(str::to_owned),
        base_default: default.map(str::to_owned),
        base_identity_always: false,
        read_function: (name == "model_type").then(|| "\"public\".\"model_metadata_v2_map_1\"".into()),
        default_function: default
            .filter(|_| v2)
            .map(|_| format!("\"public\".\"model_metadata_{version}_map_{name}\"")),
    };
    let mut columns = vec![
        column(
            "id",
            "bigint",
            Some("nextval('model_metadata_id_seq'::regclass)"),
        ),
        column("model_name", "text", None),
        column("model_version", "text", None),
        column("hyperparameters", "jsonb", Some("'{}'::jsonb")),
        column("created_at", "timestamp with time zone", Some("now()")),
    ];
    let mut insert = Vec::new();
    if v2 {
        columns.insert(3, column("model_type", "text", None));
        columns.push(column("schema_version", "integer", Some("1")));
        insert = columns
            .iter()
            .map(|c| WriteAssignment {
                base_column: c.name.clone(),
                view_column: c.base_column.clone(),
                expression: c.expression.as_ref().map(|_| "NEW.model_type".into()),
                when_changed: None,
                function: c
                    .expression
                    .as_ref()
                    .map(|_| "\"public\".\"model_metadata_v2_map_2\"".into()),
            })
            .collect();
    }
    let mut update = insert.clone();
    for assignment in &mut update {
        if assignment.expression.is_some() {
            assignment.when_changed = Some(assignment.base_column.clone());
        }
    }
    BaseWrite {
        base: RelationName::new("public", "model_metadata"),
        mapping: Arc::new(ViewMapping {
            trigger_backed: v2,
            columns,
            insert,
            update,
            pinned: true,
        }),
    }
}

fn versions() -> &'static [VersionTargets] {
    static VERSIONS: OnceLock<Vec<VersionTargets>> = OnceLock::new();
    VERSIONS.get_or_init(|| {
        let view = |version: &str, table: (&str, &str), view: (&str, &str)| {
            VersionTargets::new(
                version,
                vec![ViewTarget {
                    table: RelationName::new(table.0, table.1),
                    view: RelationName::new(view.0, view.1),
                }],
            )
        };
        vec![
            view(
                "v1",
                ("public", "model_metadata"),
                ("public", "model_metadata_v1"),
            )
            .with_base_write(
                RelationName::new("public", "model_metadata_v1"),
                seed_mapping("v1"),
            ),
            view(
                "v2",
                ("public", "model_metadata"),
                ("public", "model_metadata_v2"),
            )
            .with_catalog_substitutes("viewgate_catalog_v2")
            .with_base_write(
                RelationName::new("public", "model_metadata_v2"),
                seed_mapping("v2"),
            ),
            view("v3", ("public", "models"), ("v3", "models")),
        ]
    })
}

fn cache() -> &'static RewriteCache {
    static CACHE: OnceLock<RewriteCache> = OnceLock::new();
    CACHE.get_or_init(|| RewriteCache::new(CacheConfig::default()))
}

fuzz_target!(|data: &[u8]| {
    // A statement's text ends at its first NUL (`protocol::frontend::statement_text`), so no
    // NUL ever reaches the rewriter: cut there, as the proxy does. (The first crash this target
    // found was a NUL inside a literal: PostgreSQL's parser, which checks a direct rewrite,
    // stops at it, while the shape cache masks the literal away, so the two disagreed on text
    // the proxy cannot deliver.) Text that is not UTF-8 is forwarded unread.
    let text = data.split(|&byte| byte == 0).next().unwrap_or_default();
    let Ok(sql) = std::str::from_utf8(text) else {
        return;
    };
    for targets in versions() {
        let direct = rewrite(sql, targets);
        let cached = rewrite_cached(cache(), sql, targets);
        assert_eq!(direct.is_ok(), cached.is_ok(), "{sql:?} at {targets:?}");
        if let (Ok(direct), Ok(cached)) = (&direct, cached.as_ref()) {
            assert_eq!(direct, cached, "{sql:?} at {targets:?}");
        }
    }
});
