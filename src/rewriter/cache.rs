//! A bounded, concurrent cache of rewrites keyed by (version, SQL text).
//!
//! Parsing costs tens of microseconds while applications repeat the same few hundred
//! statements, so the proxy looks every statement up here first. Unparseable statements are
//! cached too (as their error), so a client that repeats one does not pay the parse each time.
//!
//! Keys are a 64-bit keyed hash (SipHash with a per-cache random key) of the version and the
//! text; each entry keeps its version and text and a hit is only a hit when both match, so a
//! hash collision is a miss, never a wrong rewrite. Hashing borrowed `&str`s means a hit
//! allocates nothing: it returns a clone of an `Arc`.
//!
//! Eviction policy (sampled second chance, a CLOCK variant): time is divided into epochs that
//! end at each sweep, and a hit records the current epoch in its entry (an insert does not:
//! new entries are cold until they are hit). When an insert finds the cache full, one thread
//! sweeps: entries used in the ending epoch are hot and kept; a random sample (one in
//! [`SWEEP_SAMPLE`]) of the cold ones is evicted; if that frees less than 1/[`SWEEP_SAMPLE`]
//! of the capacity, more cold entries are evicted in map order, and only if everything was
//! hot, hot ones. Each sweep frees a fixed share of the capacity, so its O(capacity) cost is
//! amortised over as many inserts, and an entry hit between sweeps is evicted only when every
//! entry was. Other threads never wait for a sweep: while one runs, their inserts are skipped
//! (the rewrite is returned uncached). The entry count can therefore overshoot the capacity
//! only by the inserts racing a full-cache check, at most one per inserting thread.
//! Statements longer than the configured maximum are never cached.
//!
//! The cache does not know when a version's views change: call [`RewriteCache::clear`] when the
//! routing map is reloaded.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use super::rewrite::{Rewrite, RewriteError, mentions_managed_table, rewrite};
use super::targets::VersionTargets;
use crate::config::CacheConfig;

/// A sweep evicts about one in this many cold entries, and frees at least 1/this of the
/// capacity.
pub const SWEEP_SAMPLE: u64 = 8;

/// `last_used` of an entry not hit since it was inserted: no epoch ever reaches it, so a new
/// entry is cold, and a burst of one-off statements cannot push out the hot ones.
const NEVER_USED: u64 = u64::MAX;

/// What `rewrite` said about one statement: the text to send, or why it cannot be rewritten.
pub type RewriteOutcome = Result<Rewrite, RewriteError>;

/// Counters since the cache was created (`entries` is the current count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub entries: usize,
}

struct Entry {
    version: Box<str>,
    sql: Box<str>,
    outcome: Arc<RewriteOutcome>,
    /// The sweep epoch of the last hit; [`NEVER_USED`] until the first.
    last_used: AtomicU64,
}

/// The map's keys are already SipHash values; hashing them again would only cost time.
#[derive(Default)]
struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Rewrites by (version, SQL text), shared by every session of a proxy.
pub struct RewriteCache {
    entries: DashMap<u64, Entry, BuildHasherDefault<PrehashedKey>>,
    key_hasher: RandomState,
    config: CacheConfig,
    len: AtomicUsize,
    sweeping: AtomicBool,
    /// Sweeps begun so far: the current epoch for hits.
    epoch: AtomicU64,
    unchanged: Arc<RewriteOutcome>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl Default for RewriteCache {
    fn default() -> Self {
        RewriteCache::new(CacheConfig::default())
    }
}

impl RewriteCache {
    pub fn new(config: CacheConfig) -> Self {
        RewriteCache {
            entries: DashMap::with_hasher(BuildHasherDefault::default()),
            key_hasher: RandomState::new(),
            config,
            len: AtomicUsize::new(0),
            sweeping: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            unchanged: Arc::new(Ok(Rewrite::Unchanged)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> CacheConfig {
        self.config
    }

    fn key(&self, version: &str, sql: &str) -> u64 {
        self.key_hasher.hash_one((version, sql))
    }

    fn cacheable(&self, sql: &str) -> bool {
        self.config.max_entries > 0 && sql.len() <= self.config.max_sql_bytes
    }

    /// The cached outcome for `sql` at `version`. Counts a hit or a miss; statements too long
    /// to cache count as misses.
    pub fn get(&self, version: &str, sql: &str) -> Option<Arc<RewriteOutcome>> {
        let found = if self.cacheable(sql) {
            self.entries
                .get(&self.key(version, sql))
                .filter(|entry| &*entry.version == version && &*entry.sql == sql)
                .map(|entry| {
                    let epoch = self.epoch.load(Ordering::Relaxed);
                    if entry.last_used.load(Ordering::Relaxed) != epoch {
                        entry.last_used.store(epoch, Ordering::Relaxed);
                    }
                    Arc::clone(&entry.outcome)
                })
        } else {
            None
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `outcome` (unless the statement is too long, or a sweep by another thread is
    /// making room) and returns it shared.
    pub fn insert(&self, version: &str, sql: &str, outcome: RewriteOutcome) -> Arc<RewriteOutcome> {
        let outcome = Arc::new(outcome);
        if !self.cacheable(sql) {
            return outcome;
        }
        if self.len.load(Ordering::Relaxed) >= self.config.max_entries && !self.make_room() {
            return outcome;
        }
        let entry = Entry {
            version: version.into(),
            sql: sql.into(),
            outcome: Arc::clone(&outcome),
            last_used: AtomicU64::new(NEVER_USED),
        };
        // Counted before it is visible, so a racing sweep never takes the count below zero.
        self.len.fetch_add(1, Ordering::Relaxed);
        if self.entries.insert(self.key(version, sql), entry).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        outcome
    }

    /// The shared `Ok(Unchanged)` outcome, for statements that need no lookup at all.
    pub fn unchanged(&self) -> Arc<RewriteOutcome> {
        Arc::clone(&self.unchanged)
    }

    /// Drops every entry (the routing map changed, so cached rewrites may name stale views).
    /// Dropped entries do not count as evictions.
    pub fn clear(&self) {
        self.entries.retain(|_, _| {
            self.len.fetch_sub(1, Ordering::Relaxed);
            false
        });
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self.len.load(Ordering::Relaxed),
        }
    }

    /// Runs one sweep unless another thread is running one; true when this thread swept.
    fn make_room(&self) -> bool {
        if self
            .sweeping
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // Entries touched in the epoch that ends now are hot; a hit from now on marks the next.
        let ending = self.epoch.fetch_add(1, Ordering::Relaxed);
        let salt = self.key_hasher.hash_one(ending);
        let minimum = (self.config.max_entries as u64 / SWEEP_SAMPLE).max(1);
        let cold = |entry: &Entry| entry.last_used.load(Ordering::Relaxed) != ending;
        let mut removed: u64 = 0;
        // A random sample of the cold entries.
        self.entries.retain(|&key, entry| {
            let evict = cold(entry) && (key ^ salt).is_multiple_of(SWEEP_SAMPLE);
            removed += u64::from(evict);
            !evict
        });
        // Too few: more cold entries, then (everything was hot) any entries.
        for only_cold in [true, false] {
            if removed >= minimum {
                break;
            }
            self.entries.retain(|_, entry| {
                let evict = removed < minimum && (!only_cold || cold(entry));
                removed += u64::from(evict);
                !evict
            });
        }
        self.len.fetch_sub(
            usize::try_from(removed).unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
        self.evictions.fetch_add(removed, Ordering::Relaxed);
        self.sweeping.store(false, Ordering::Release);
        true
    }
}

/// [`rewrite`] through `cache`. Statements that name no managed table skip the cache (they
/// would only crowd it) and share one `Unchanged` outcome.
pub fn rewrite_cached(
    cache: &RewriteCache,
    sql: &str,
    targets: &VersionTargets,
) -> Arc<RewriteOutcome> {
    if !mentions_managed_table(sql, targets) {
        return cache.unchanged();
    }
    if let Some(hit) = cache.get(&targets.version, sql) {
        return hit;
    }
    cache.insert(&targets.version, sql, rewrite(sql, targets))
}

#[cfg(test)]
mod tests {
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

    fn statement(n: usize) -> String {
        format!("SELECT id FROM model_metadata WHERE id = {n}")
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
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(
            *second,
            Ok(Rewrite::Rewritten(
                "SELECT * FROM model_metadata_v2 AS model_metadata".into()
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
        let bad = "SELECT * FROM ROWS FROM (f()) AS model_metadata";
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
            assert!(cache.get("v2", &hot).is_some(), "evicted after {n} inserts");
        }
        assert!(cache.stats().evictions > 1_000);
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
        assert!(cache.get("v2", &statement(1)).is_none());
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
}
