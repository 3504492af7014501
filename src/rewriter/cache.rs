//! A bounded, concurrent cache of rewrites keyed by (version, statement shape).
//!
//! Parsing costs tens of microseconds, and applications send the same few hundred statement
//! *shapes* with different constants inlined (psycopg's client-side binding, Rails without
//! prepared statements, PHP's emulated prepares, hand-written SQL). So the key is the shape
//! (`shape.rs`: the lexer's tokens with constants and `IN` lists of constants masked), and the
//! entry holds the rewrite in token terms: a statement of a known shape costs one lexer pass
//! and a splice. Texts the shape lexer gives up on, or whose shape cannot be learned from the
//! parse (see `shape::learn`), are cached by their exact text instead. Unparseable statements
//! are cached too (as their error), so a client that repeats one does not pay the parse again.
//!
//! Keys are a 64-bit keyed hash (foldhash, seeded at random per cache) of the version, the
//! routing generation, the kind of key and its bytes; each entry keeps all four and a hit is
//! only a hit when they match, so a hash collision is a miss, never a wrong rewrite. The hash
//! is not a cryptographic one (SipHash was 8 % of a cached rewrite's time, `perf`): a client
//! that could find collisions without seeing a hash could only make its own statements miss. The
//! "version" is the targets' [`VersionTargets::cache_identity`]: the version name, or, where a
//! session's search_path resolves some unqualified names elsewhere, the name and that
//! resolution. The generation ([`VersionTargets::routing_generation`]) is the routing state's:
//! the cache is cleared when a new state is published, but a session still holding the old
//! state's targets may store a rewrite after that; keyed by its generation, it is never served
//! to a session on the new state (and ages out like any unused entry).
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

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use foldhash::quality::RandomState;

use super::postgres_grammar::MAX_CHECKED_BYTES;
use super::recent_shapes::RecentShapes;
use super::rewrite::{Rewrite, RewriteError, analyse, finish, mentions_managed_table, rewrite};
use super::shape::{self, Shape};
use super::shape_template::LearnedShape;
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

/// What [`rewrite_cached_in`] gives: an outcome the cache shares (an unchanged statement, one
/// cached by its text), or one made for this text alone (a shape's rewrite, from a session's
/// template or the shared cache's entry), which its caller may take without a copy or a
/// shared allocation of its own (one of the allocations a managed read made, `perf`).
#[derive(Debug)]
pub enum CachedOutcome {
    Shared(Arc<RewriteOutcome>),
    Own(RewriteOutcome),
}

impl std::ops::Deref for CachedOutcome {
    type Target = RewriteOutcome;

    fn deref(&self) -> &RewriteOutcome {
        match self {
            CachedOutcome::Shared(outcome) => outcome,
            CachedOutcome::Own(outcome) => outcome,
        }
    }
}

impl CachedOutcome {
    /// The outcome as one that can be shared.
    pub fn shared(self) -> Arc<RewriteOutcome> {
        match self {
            CachedOutcome::Shared(outcome) => outcome,
            CachedOutcome::Own(outcome) => Arc::new(outcome),
        }
    }
}

/// Counters since the cache was created (`entries` is the current count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub entries: usize,
}

/// What an entry is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyKind {
    /// The exact SQL text.
    Text,
    /// The statement's shape key (`Shape::key`).
    Shape,
}

/// What an entry holds: an outcome for one text, or a rewrite for a whole shape.
#[derive(Clone)]
enum Cached {
    Outcome(Arc<RewriteOutcome>),
    Shape(Arc<LearnedShape>),
}

struct Entry {
    version: Box<str>,
    generation: u64,
    kind: KeyKind,
    key: Box<[u8]>,
    value: Cached,
    /// The sweep epoch of the last hit; [`NEVER_USED`] until the first.
    last_used: AtomicU64,
}

/// Whose rewrites an entry holds: the targets' cache identity and routing generation.
#[derive(Debug, Clone, Copy)]
struct Scope<'a> {
    identity: &'a str,
    generation: u64,
}

impl<'a> Scope<'a> {
    fn of(targets: &'a VersionTargets) -> Self {
        Scope {
            identity: targets.cache_identity(),
            generation: targets.routing_generation,
        }
    }
}

/// The map's keys are already hash values; hashing them again would only cost time.
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
            key_hasher: RandomState::default(),
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

    fn key(&self, scope: Scope, kind: KeyKind, key: &[u8]) -> u64 {
        self.key_hasher
            .hash_one((scope.identity, scope.generation, kind, key))
    }

    fn cacheable(&self, sql: &str) -> bool {
        self.config.max_entries > 0 && sql.len() <= self.config.max_sql_bytes
    }

    /// The cached outcome for `sql` at `targets`' version, without computing or storing one.
    /// Counts a hit or a miss; statements too long to cache count as misses.
    pub fn get(&self, sql: &str, targets: &VersionTargets) -> Option<Arc<RewriteOutcome>> {
        let mut tokens = Vec::new();
        let shape = Shape::of(sql, targets, &mut tokens);
        let found = self.find(sql, targets, shape.as_ref());
        self.count(found.is_some());
        found
    }

    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The entry for (`scope`, `kind`, `key`), marked used in this epoch.
    fn lookup(&self, scope: Scope, kind: KeyKind, key: &[u8]) -> Option<Cached> {
        self.entries
            .get(&self.key(scope, kind, key))
            .filter(|entry| {
                &*entry.version == scope.identity
                    && entry.generation == scope.generation
                    && entry.kind == kind
                    && &*entry.key == key
            })
            .map(|entry| {
                let epoch = self.epoch.load(Ordering::Relaxed);
                if entry.last_used.load(Ordering::Relaxed) != epoch {
                    entry.last_used.store(epoch, Ordering::Relaxed);
                }
                entry.value.clone()
            })
    }

    /// The outcome for `sql` from its shape's entry or its text's entry, if either exists.
    fn find(
        &self,
        sql: &str,
        targets: &VersionTargets,
        shape: Option<&Shape>,
    ) -> Option<Arc<RewriteOutcome>> {
        if let Some(shape) = shape
            && let Some((outcome, _)) = self.find_by_shape(sql, targets, shape)
        {
            return Some(outcome.shared());
        }
        self.find_by_text(sql, targets)
    }

    /// The outcome for `sql` from its shape's entry, and the entry.
    fn find_by_shape(
        &self,
        sql: &str,
        targets: &VersionTargets,
        shape: &Shape,
    ) -> Option<(CachedOutcome, Arc<LearnedShape>)> {
        if !self.cacheable(sql) {
            return None;
        }
        let Cached::Shape(learned) = self.lookup(Scope::of(targets), KeyKind::Shape, &shape.key)?
        else {
            return None;
        };
        let outcome = match learned
            .rewrite
            .apply(sql, shape, targets.version.as_str())?
        {
            Ok(Rewrite::Unchanged) => CachedOutcome::Shared(self.unchanged()),
            outcome => CachedOutcome::Own(outcome),
        };
        Some((outcome, learned))
    }

    /// The outcome cached for `sql`'s exact text.
    fn find_by_text(&self, sql: &str, targets: &VersionTargets) -> Option<Arc<RewriteOutcome>> {
        if !self.cacheable(sql) {
            return None;
        }
        match self.lookup(Scope::of(targets), KeyKind::Text, sql.as_bytes()) {
            Some(Cached::Outcome(outcome)) => Some(outcome),
            _ => None,
        }
    }

    /// Stores `value` under (`scope`, `kind`, `key`) unless the cache is disabled or a sweep
    /// by another thread is making room.
    fn insert(&self, scope: Scope, kind: KeyKind, key: &[u8], value: Cached) {
        if self.config.max_entries == 0 {
            return;
        }
        if self.len.load(Ordering::Relaxed) >= self.config.max_entries && !self.make_room() {
            return;
        }
        let entry = Entry {
            version: scope.identity.into(),
            generation: scope.generation,
            kind,
            key: key.into(),
            value,
            last_used: AtomicU64::new(NEVER_USED),
        };
        // Counted before it is visible, so a racing sweep never takes the count below zero.
        self.len.fetch_add(1, Ordering::Relaxed);
        if self
            .entries
            .insert(self.key(scope, kind, key), entry)
            .is_some()
        {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The current sweep epoch, which a hit records.
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
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
        // A shape a session's template served counts as hit: its entry saw no lookup.
        let cold = |entry: &Entry| {
            entry.last_used.load(Ordering::Relaxed) != ending
                && !matches!(&entry.value, Cached::Shape(learned) if learned.used_in(ending))
        };
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
/// would only crowd it) and share one `Unchanged` outcome. A statement whose shape was seen
/// costs a lexer pass and a splice; one that was not is parsed, and its rewrite learned for
/// its whole shape where `shape::learn` allows, else for its text.
pub fn rewrite_cached(
    cache: &RewriteCache,
    sql: &str,
    targets: &VersionTargets,
) -> Arc<RewriteOutcome> {
    rewrite_cached_in(cache, &mut RecentShapes::disabled(), sql, targets).shared()
}

/// [`rewrite_cached`] for a session that remembers its `recent` shapes: a text matching one's
/// template is rewritten without the shared cache (`recent_shapes.rs`).
pub fn rewrite_cached_in(
    cache: &RewriteCache,
    recent: &mut RecentShapes,
    sql: &str,
    targets: &VersionTargets,
) -> CachedOutcome {
    if !mentions_managed_table(sql, targets) {
        return CachedOutcome::Shared(cache.unchanged());
    }
    if !cache.cacheable(sql) {
        cache.count(false);
        return CachedOutcome::Own(rewrite(sql, targets));
    }
    let shapeable = shape::may_have_a_shape(sql, targets);
    if shapeable && let Some(rewrite) = recent.rewrite(sql, targets, cache.epoch()) {
        cache.count(true);
        return match rewrite {
            Rewrite::Unchanged => CachedOutcome::Shared(cache.unchanged()),
            rewritten => CachedOutcome::Own(Ok(rewritten)),
        };
    }
    let mut tokens = Vec::new();
    let shape = match shapeable {
        true => Shape::of_shapeable(sql, targets, &mut tokens),
        false => None,
    };
    if let Some(shape) = &shape
        && let Some((hit, learned)) = cache.find_by_shape(sql, targets, shape)
    {
        recent.remember(targets, &learned);
        cache.count(true);
        return hit;
    }
    if let Some(hit) = cache.find_by_text(sql, targets) {
        cache.count(true);
        return CachedOutcome::Shared(hit);
    }
    cache.count(false);
    let version = targets.version.as_str();
    let analysis = analyse(sql, targets);
    // A text too long for Postgres's parser to be asked about was rewritten on sqlparser's
    // reading alone: its verdict is kept for its own text, never for a shape that shorter,
    // checked texts share (the fifth red-team pass had a long text's verdict served to them).
    let checked = sql.len() <= MAX_CHECKED_BYTES;
    let learned = shape.as_ref().filter(|_| checked).and_then(|shape| {
        let rewrite = shape::learn(shape, &tokens, &analysis)?;
        let edits = analysis.edits.as_deref().ok()?;
        let learned = LearnedShape::new(rewrite, sql, shape, &tokens, targets, edits);
        Some((shape, Arc::new(learned)))
    });
    let outcome = match finish(sql, version, analysis.edits) {
        Ok(Rewrite::Unchanged) => CachedOutcome::Shared(cache.unchanged()),
        outcome => CachedOutcome::Own(outcome),
    };
    let scope = Scope::of(targets);
    match learned {
        Some((shape, learned)) => {
            recent.remember(targets, &learned);
            cache.insert(scope, KeyKind::Shape, &shape.key, Cached::Shape(learned));
            outcome
        }
        None => {
            let outcome = outcome.shared();
            cache.insert(
                scope,
                KeyKind::Text,
                sql.as_bytes(),
                Cached::Outcome(Arc::clone(&outcome)),
            );
            CachedOutcome::Shared(outcome)
        }
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
