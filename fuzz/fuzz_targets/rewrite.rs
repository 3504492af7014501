//! The rewriter on arbitrary SQL text at every version of a spec: v1 and v2 of the seed example
//! (v2's view computes a column and shows columns v1 hides) and a v3 that renames the table
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
    // The proxy forwards text that is not UTF-8 unread; only UTF-8 reaches the rewriter.
    let Ok(sql) = std::str::from_utf8(data) else {
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
