//! The routing state every session reads: which versions exist, what each rewrites, the
//! default, and the routing rules compiled against those versions. Built from the catalog;
//! replaced whole and swapped atomically, so sessions never take a lock to read it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use super::rules::{CompiledRule, InactiveVersion};
use crate::model::{BaseTableKin, RoutingMap, ShadowRun, Unavailable};
use crate::rewriter::VersionTargets;
use crate::rewriter::resolution;

/// Numbers every state built, so a session can tell cheaply whether the state it resolved its
/// version under is still the current one.
static GENERATION: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Default)]
pub struct RoutingState {
    /// The database whose catalog this is; sessions on other databases are not versioned.
    pub database: Option<String>,
    pub default_version: Option<String>,
    versions: HashMap<String, Arc<VersionTargets>>,
    /// Enabled, valid rules in evaluation order.
    rules: Vec<CompiledRule>,
    /// Unique per state built from the catalog (0: the unloaded state).
    generation: u64,
    /// Sessions keep `viewgate.version` set upstream (see `RoutingMap::tracks_writers`).
    tracks_writers: bool,
    /// The shadow run in progress, when it names active versions (`proxy::shadow_tap`).
    shadow: Option<Arc<ShadowRun>>,
    /// Some relation could shadow a managed name: sessions follow their search_path.
    follows_search_path: bool,
    /// The managed tables' base tables, as (schema, table).
    base_tables: HashSet<(String, String)>,
    /// Their relatives (partitions, inheritance children, parents) and the foreign keys into
    /// them.
    kin: BaseTableKin,
    /// The catalog change this state was loaded at (`RoutingMap::catalog_change`), which the
    /// heartbeat reports so a command can wait until every proxy serves its change.
    catalog_change: Option<i64>,
    /// The versions no session may ask for, and why (told to one that asks).
    unavailable: BTreeMap<String, Unavailable>,
}

impl RoutingState {
    /// Builds the state; rules that are disabled are left out, and rules that are invalid or
    /// name a version the catalog does not have (any more) are left out with a warning, so one
    /// bad rule never stops routing.
    pub fn from_catalog(database: &str, map: &RoutingMap) -> Self {
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        let mut built: Vec<VersionTargets> = map
            .versions
            .keys()
            .filter_map(|version| VersionTargets::from_routing_map(map, version))
            .collect();
        // Sessions follow their search_path only where a relation could shadow a managed name.
        for targets in &mut built {
            targets.search_path_candidates = Arc::new(resolution::candidates(targets, map));
            targets.routing_generation = generation;
        }
        let follows = built
            .iter()
            .any(|targets| !targets.search_path_candidates.is_empty());
        let versions: HashMap<String, Arc<VersionTargets>> = built
            .into_iter()
            .map(|mut targets| {
                targets.follows_search_path = follows;
                (targets.version.clone(), Arc::new(targets))
            })
            .collect();
        for invalid in &map.rules.invalid {
            tracing::warn!(rule = invalid.id, problem = %invalid.problem, "routing rule ignored: it is not valid");
        }
        let rules = map
            .rules
            .rules
            .iter()
            .filter(|rule| rule.enabled)
            .filter_map(|rule| match CompiledRule::compile(rule, &versions) {
                Ok(compiled) => Some(compiled),
                Err(InactiveVersion(version)) => {
                    tracing::warn!(rule = rule.id, %version, "routing rule ignored: it names a version that is not active");
                    None
                }
            })
            .collect();
        RoutingState {
            database: Some(database.to_owned()),
            default_version: map.default_version.clone(),
            rules,
            generation,
            tracks_writers: map.tracks_writers,
            follows_search_path: follows,
            base_tables: map
                .versions
                .values()
                .flatten()
                .map(|routed| (routed.base_schema.clone(), routed.base_table.clone()))
                .collect(),
            kin: map.kin.clone(),
            catalog_change: map.catalog_change,
            unavailable: map.unavailable.clone(),
            shadow: map
                .shadow
                .clone()
                .filter(|run| versions.contains_key(&run.from) && versions.contains_key(&run.to))
                .map(Arc::new),
            versions,
        }
    }

    /// The catalog change this state was loaded at; `None` before a load, or for a catalog
    /// without the count.
    pub fn catalog_change(&self) -> Option<i64> {
        self.catalog_change
    }

    /// Why `version` is not active, when the catalog has it.
    pub fn unavailable(&self, version: &str) -> Option<&Unavailable> {
        self.unavailable.get(version)
    }

    /// The shadow run in progress, if any.
    pub fn shadow(&self) -> Option<&Arc<ShadowRun>> {
        self.shadow.as_ref()
    }

    /// Whether `schema.table` is a managed table's base table, whose whole row a version's
    /// client must not be shown.
    pub fn is_base_table(&self, schema: &str, table: &str) -> bool {
        !self.base_tables.is_empty()
            && self
                .base_tables
                .contains(&(schema.to_owned(), table.to_owned()))
    }

    /// The managed base table whose rows `schema.table` holds or reads: the base table
    /// itself, or one it is a relative of (a partition, inheritance child or parent).
    pub fn base_table_of(&self, schema: &str, table: &str) -> Option<(String, String)> {
        if self.is_base_table(schema, table) {
            return Some((schema.to_owned(), table.to_owned()));
        }
        self.kin.related_base(schema, table).cloned()
    }

    /// The managed base table that foreign key `constraint` of `schema.table` references.
    pub fn referenced_base_table(
        &self,
        schema: &str,
        table: &str,
        constraint: &str,
    ) -> Option<(String, String)> {
        self.kin.referenced(schema, table, constraint).cloned()
    }

    /// The column check `constraint` of managed base table `schema.table` stands in a NOT NULL
    /// for, if it is such a check.
    pub fn not_null_check(&self, schema: &str, table: &str, constraint: &str) -> Option<&str> {
        self.kin.not_null_check(schema, table, constraint)
    }

    /// The columns of managed base table `schema.table`, in order, as the catalog was last
    /// read.
    pub fn base_columns(&self, schema: &str, table: &str) -> Option<&[String]> {
        self.kin.columns_of(schema, table)
    }

    /// Whether `schema.table` has a foreign key into a managed base table (or a relative).
    pub fn references_a_base_table(&self, schema: &str, table: &str) -> bool {
        self.kin.references_a_base_table(schema, table)
    }

    /// Whether sessions follow their search_path (some relation could shadow a managed name).
    pub fn follows_search_path(&self) -> bool {
        self.follows_search_path
    }

    /// Whether a migration's sync triggers need each session's version set upstream.
    pub fn tracks_writers(&self) -> bool {
        self.tracks_writers
    }

    /// Differs between any two states built from the catalog.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The enabled rules, in evaluation order.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// Whether the catalog has been read at least once (an empty catalog counts).
    pub fn loaded(&self) -> bool {
        self.database.is_some()
    }

    /// Whether sessions on `database` are versioned at all.
    pub fn governs(&self, database: &str) -> bool {
        self.database.as_deref() == Some(database) && !self.versions.is_empty()
    }

    pub fn targets(&self, version: &str) -> Option<&Arc<VersionTargets>> {
        self.versions.get(version)
    }

    /// Known version names, sorted, for error messages.
    pub fn version_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.versions.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The shared, swappable routing state.
pub type SharedRouting = Arc<ArcSwap<RoutingState>>;

pub fn unrouted() -> SharedRouting {
    Arc::new(ArcSwap::from_pointee(RoutingState::default()))
}
