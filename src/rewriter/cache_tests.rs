//! The rewrite cache: hits and misses, keys by version, shape and routing state, eviction's
//! bound, and concurrent sessions.

use super::*;
use crate::rewriter::{RelationName, ViewTarget};

fn targets(version: &str) -> VersionTargets {
    VersionTargets::new(
        version,
        vec![ViewTarget {
            table: RelationName::new("public", "model_metadata"),
            view: RelationName::new("public", format!("model_metadata_{version}")),
        }],
    )
}

/// Statements of distinct shapes (a column alias differs; constants would not).
fn statement(n: usize) -> String {
    format!("SELECT id AS c{n} FROM model_metadata WHERE id = 1")
}

fn small(max_entries: usize) -> RewriteCache {
    RewriteCache::new(CacheConfig {
        max_entries,
        max_sql_bytes: 200,
    })
}

#[test]
fn second_lookup_is_a_hit_with_the_same_outcome() {
    let cache = RewriteCache::default();
    let v2 = targets("v2");
    let first = rewrite_cached(&cache, "SELECT * FROM model_metadata", &v2);
    let second = rewrite_cached(&cache, "SELECT * FROM model_metadata", &v2);
    assert_eq!(first, second);
    assert_eq!(
        *second,
        Ok(Rewrite::Rewritten(
            "SELECT * FROM public.model_metadata_v2 AS model_metadata".into()
        ))
    );
    assert_eq!(
        cache.stats(),
        CacheStats {
            hits: 1,
            misses: 1,
            evictions: 0,
            entries: 1
        }
    );
}

#[test]
fn versions_do_not_share_entries() {
    let cache = RewriteCache::default();
    let sql = "SELECT * FROM model_metadata";
    let v1 = rewrite_cached(&cache, sql, &targets("v1"));
    let v2 = rewrite_cached(&cache, sql, &targets("v2"));
    assert_ne!(v1, v2);
    assert_eq!(rewrite_cached(&cache, sql, &targets("v1")), v1);
    assert_eq!(cache.stats().entries, 2);
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn errors_are_cached_and_unmanaged_statements_bypass_the_cache() {
    let cache = RewriteCache::default();
    let v2 = targets("v2");
    let bad = "SELECT * FROM model_metadata WHERE";
    assert!(rewrite_cached(&cache, bad, &v2).is_err());
    assert!(rewrite_cached(&cache, bad, &v2).is_err());
    assert_eq!(
        *rewrite_cached(&cache, "SELECT 1", &v2),
        Ok(Rewrite::Unchanged)
    );
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
}

#[test]
fn long_statements_are_rewritten_but_not_cached() {
    let cache = small(10);
    let v2 = targets("v2");
    let long = format!("{} /* {} */", statement(1), "x".repeat(300));
    assert!(matches!(
        *rewrite_cached(&cache, &long, &v2),
        Ok(Rewrite::Rewritten(_))
    ));
    assert!(matches!(
        *rewrite_cached(&cache, &long, &v2),
        Ok(Rewrite::Rewritten(_))
    ));
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (0, 2, 0));
}

#[test]
fn zero_capacity_disables_caching() {
    let cache = small(0);
    let v2 = targets("v2");
    rewrite_cached(&cache, &statement(1), &v2);
    rewrite_cached(&cache, &statement(1), &v2);
    assert_eq!(cache.stats().entries, 0);
    assert_eq!(cache.stats().hits, 0);
}

#[test]
fn eviction_keeps_the_bound_and_accounts_for_every_entry() {
    let capacity = 64;
    let cache = small(capacity);
    let v2 = targets("v2");
    let inserted = 1_000;
    for n in 0..inserted {
        rewrite_cached(&cache, &statement(n), &v2);
        assert!(cache.stats().entries <= capacity);
    }
    let stats = cache.stats();
    assert_eq!(stats.misses, inserted as u64);
    assert_eq!(stats.entries as u64 + stats.evictions, inserted as u64);
    assert!(stats.evictions >= (inserted - capacity) as u64);
}

#[test]
fn an_entry_hit_between_sweeps_survives_them() {
    let cache = small(32);
    let v2 = targets("v2");
    let hot = statement(0);
    rewrite_cached(&cache, &hot, &v2);
    for n in 1..2_000 {
        rewrite_cached(&cache, &statement(n), &v2);
        assert!(cache.get(&hot, &v2).is_some(), "evicted after {n} inserts");
    }
    assert!(cache.stats().evictions > 1_000);
}

#[test]
fn a_shape_served_only_by_a_sessions_template_survives_sweeps() {
    let cache = small(32);
    let v2 = targets("v2");
    let hot = statement(0);
    let mut recent = RecentShapes::default();
    rewrite_cached_in(&cache, &mut recent, &hot, &v2);
    for n in 1..2_000 {
        rewrite_cached(&cache, &statement(n), &v2);
        let served = rewrite_cached_in(&cache, &mut recent, &hot, &v2);
        assert!(served.is_ok());
    }
    assert!(cache.stats().evictions > 1_000);
    assert!(cache.get(&hot, &v2).is_some(), "the hot shape was evicted");
}

#[test]
fn clear_drops_everything() {
    let cache = small(10);
    let v2 = targets("v2");
    for n in 0..5 {
        rewrite_cached(&cache, &statement(n), &v2);
    }
    cache.clear();
    assert_eq!(cache.stats().entries, 0);
    assert!(cache.get(&statement(1), &v2).is_none());
}

/// A session still on a replaced routing state stores its rewrite after the cache was
/// cleared: a session on the new state (other views for the same version) never gets it.
#[test]
fn a_rewrite_made_under_a_replaced_routing_state_is_not_served_under_the_new_one() {
    let cache = RewriteCache::default();
    let mut old = targets("v2");
    old.routing_generation = 1;
    let mut new = VersionTargets::new(
        "v2",
        vec![ViewTarget {
            table: RelationName::new("public", "model_metadata"),
            view: RelationName::new("public", "model_metadata_v2_reapplied"),
        }],
    );
    new.routing_generation = 2;
    cache.clear();
    rewrite_cached(&cache, &statement(1), &old);
    let served = rewrite_cached(&cache, &statement(1), &new);
    assert_eq!(
        served.as_ref().as_ref().unwrap(),
        &Rewrite::Rewritten(
            "SELECT id AS c1 FROM public.model_metadata_v2_reapplied AS model_metadata WHERE id = 1"
                .into()
        )
    );
}

#[test]
fn statements_differing_only_in_constants_share_one_entry() {
    let cache = RewriteCache::default();
    let v2 = targets("v2");
    for n in 0..100 {
        let sql = format!(
            "SELECT * FROM model_metadata WHERE id = {n} AND model_name = 'm{n}' AND id IN ({})",
            (0..=n % 7)
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(
            *rewrite_cached(&cache, &sql, &v2),
            rewrite(&sql, &v2),
            "{sql}"
        );
    }
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (99, 1, 1));
}

#[test]
fn texts_the_lexer_gives_up_on_are_cached_by_text() {
    let cache = RewriteCache::default();
    let v2 = targets("v2");
    // `1_000` is left to the full path by the shape lexer.
    let sql = "SELECT * FROM model_metadata WHERE id = 1_000";
    let first = rewrite_cached(&cache, sql, &v2);
    assert_eq!(*first, rewrite(sql, &v2));
    assert!(Arc::ptr_eq(&first, &rewrite_cached(&cache, sql, &v2)));
    let other = "SELECT * FROM model_metadata WHERE id = 2_000";
    assert_eq!(*rewrite_cached(&cache, other, &v2), rewrite(other, &v2));
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 2, 2));
}

/// The seventh red-team pass: a text with a `/* */` comment between two literals (two
/// strings to Postgres) taught its shape, and the same text with a `--` comment there
/// (one string to Postgres: `information_schema`) was served that verdict.
#[test]
fn a_comment_between_literals_is_never_learned_by_shape() {
    let cache = RewriteCache::default();
    let v1 = VersionTargets::seed_example("v1");
    let taught = "SET SCHEMA 'information_' /* c */\n'schema'";
    let exploit = "SET SCHEMA 'information_' --\n'schema'";
    let first = rewrite_cached(&cache, taught, &v1);
    assert_eq!(*first, rewrite(taught, &v1));
    let served = rewrite_cached(&cache, exploit, &v1);
    assert_eq!(*served, rewrite(exploit, &v1));
    assert!(served.is_err(), "{served:?}");
    // Each text is kept under its own text: asked again, both are hits.
    assert!(Arc::ptr_eq(&first, &rewrite_cached(&cache, taught, &v1)));
    assert_eq!(cache.stats().entries, 2);
}

/// The eighth red-team pass: verdicts that turn on a constant were learned by shape, so
/// `'off'` was served the verdict of `'on'`, and `VERBOSE 1` that of `VERBOSE 0`.
#[test]
fn verdicts_that_turn_on_a_constant_are_never_served_to_another() {
    let cache = RewriteCache::default();
    let v1 = VersionTargets::seed_example("v1");
    for (taught, other) in [
        (
            "SET standard_conforming_strings = 'on'",
            "SET standard_conforming_strings = 'off'",
        ),
        (
            "SELECT set_config('standard_conforming_strings', 'on', false)",
            "SELECT set_config('standard_conforming_strings', 'off', false)",
        ),
        (
            "EXPLAIN (VERBOSE 0) SELECT * FROM model_metadata",
            "EXPLAIN (VERBOSE 1) SELECT * FROM model_metadata",
        ),
        ("SET SCHEMA 'public'", "SET SCHEMA 'information_schema'"),
    ] {
        assert!(rewrite_cached(&cache, taught, &v1).is_ok(), "{taught}");
        assert!(rewrite_cached(&cache, other, &v1).is_err(), "{other}");
    }
    // An ORM's column named like a mark's word keeps its shape.
    rewrite_cached(
        &cache,
        "SELECT schema_version FROM model_metadata WHERE id = 1",
        &v1,
    );
    let before = cache.stats().hits;
    rewrite_cached(
        &cache,
        "SELECT schema_version FROM model_metadata WHERE id = 2",
        &v1,
    );
    assert_eq!(cache.stats().hits, before + 1);
}

#[test]
fn concurrent_sessions_see_correct_rewrites_and_consistent_counters() {
    const THREADS: usize = 8;
    const OPERATIONS: usize = 2_000;
    const DISTINCT: usize = 200;
    let capacity = 64;
    let cache = small(capacity);
    let versions = [targets("v1"), targets("v2")];
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (cache, versions) = (&cache, &versions);
            scope.spawn(move || {
                for i in 0..OPERATIONS {
                    let n = (i * 7 + thread * 13) % DISTINCT;
                    let targets = &versions[(i + thread) % 2];
                    let sql = statement(n);
                    let got = rewrite_cached(cache, &sql, targets);
                    assert_eq!(*got, rewrite(&sql, targets), "{sql} at {}", targets.version);
                    assert!(cache.stats().entries <= capacity + THREADS);
                }
            });
        }
    });
    let stats = cache.stats();
    assert_eq!(stats.hits + stats.misses, (THREADS * OPERATIONS) as u64);
    assert!(stats.hits > 0 && stats.evictions > 0, "{stats:?}");
    assert!(stats.entries <= capacity + THREADS);
    assert_eq!(cache.entries.len(), stats.entries);
}
