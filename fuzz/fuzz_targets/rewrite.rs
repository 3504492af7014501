//! The rewriter on arbitrary SQL text at every version of a spec: v1 and v2 of the seed example
//! (v2's view computes a column and shows columns v1 hides, and its catalog reads go to its
//! catalog substitutes) and a v3 that renames the table
//! (clients say `models`) and keeps its views in a schema of their own. Each input is rewritten
//! directly and through the shape cache, which lives across inputs as it does in the proxy; the
//! two must agree.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use viewgate::config::CacheConfig;
use viewgate::rewriter::{
    RelationName, RewriteCache, VersionTargets, ViewTarget, rewrite, rewrite_cached,
};

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
            ),
            view(
                "v2",
                ("public", "model_metadata"),
                ("public", "model_metadata_v2"),
            )
            .with_catalog_substitutes("viewgate_catalog_v2"),
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
