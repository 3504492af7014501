//! A session's last few statement shapes, tried before the shared cache.
//!
//! An application session sends the same handful of statements over and over with other
//! constants (pgbench's read, an ORM's find-by-id). For such a text the shared cache's path
//! lexes the whole statement into tokens, builds the shape's key, hashes it and looks it up
//! under a shard lock that every worker thread touches: most of a managed read's rewrite in
//! the proxy (`perf`, docs/benchmarks.md). Matching the text against the templates of the
//! shapes the session used last (`shape_template.rs`) skips all four. A template is only
//! tried under the routing scope it was learned in: the same version (and search_path
//! resolution) and the same routing generation, as the shared cache's own entries.

use std::sync::Arc;

use super::VersionTargets;
use super::rewrite::Rewrite;
use super::shape_template::LearnedShape;

/// How many shapes a session remembers: a miss tries each (a comparison that mostly stops
/// within the first bytes), so a few more than a typical session's hot statements.
pub const RECENT_SHAPES: usize = 8;

struct Recent {
    identity: Box<str>,
    generation: u64,
    learned: Arc<LearnedShape>,
}

/// See the module's comment. [`RecentShapes::disabled`] remembers nothing.
pub struct RecentShapes {
    capacity: usize,
    /// The most recently used first.
    entries: Vec<Recent>,
    /// Scratch space for a match's piece starts.
    starts: Vec<usize>,
}

impl Default for RecentShapes {
    fn default() -> Self {
        RecentShapes::with_capacity(RECENT_SHAPES)
    }
}

impl RecentShapes {
    pub fn with_capacity(capacity: usize) -> Self {
        RecentShapes {
            capacity,
            entries: Vec::new(),
            starts: Vec::new(),
        }
    }

    /// For callers without a session: nothing is remembered, and nothing allocated.
    pub fn disabled() -> Self {
        RecentShapes::with_capacity(0)
    }

    /// `sql` rewritten by one of the remembered shapes of `targets`' scope, if it matches
    /// one's template, which is marked used in the shared cache's sweep `epoch`; the caller
    /// has checked that the text may have a shape at all (`shape::may_have_a_shape`).
    pub fn rewrite(&mut self, sql: &str, targets: &VersionTargets, epoch: u64) -> Option<Rewrite> {
        let identity = targets.cache_identity();
        let generation = targets.routing_generation;
        let scan = targets.mention_scan();
        let starts = &mut self.starts;
        let (index, rewrite) = self
            .entries
            .iter()
            .enumerate()
            .find_map(|(index, recent)| {
                if recent.generation != generation || *recent.identity != *identity {
                    return None;
                }
                let template = recent.learned.template.as_ref()?;
                Some((index, template.rewrite(sql, scan, starts)?))
            })?;
        self.entries[..=index].rotate_right(1);
        if let Some(recent) = self.entries.first() {
            recent.learned.mark_used(epoch);
        }
        Some(rewrite)
    }

    /// Remembers `learned`, a shape of `targets`' scope the session just used.
    pub fn remember(&mut self, targets: &VersionTargets, learned: &Arc<LearnedShape>) {
        if self.capacity == 0 || learned.template.is_none() {
            return;
        }
        let generation = targets.routing_generation;
        if let Some(index) = self.entries.iter().position(|recent| {
            Arc::ptr_eq(&recent.learned, learned)
                && recent.generation == generation
                && *recent.identity == *targets.cache_identity()
        }) {
            self.entries[..=index].rotate_right(1);
            return;
        }
        // Shapes of an older routing state are of no further use.
        self.entries
            .retain(|recent| recent.generation == generation);
        self.entries.truncate(self.capacity - 1);
        self.entries.insert(
            0,
            Recent {
                identity: targets.cache_identity().into(),
                generation,
                learned: Arc::clone(learned),
            },
        );
    }
}
