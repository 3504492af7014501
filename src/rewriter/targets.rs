//! What one schema version rewrites: each managed table and the view that stands for it.
//!
//! Built from the catalog's routing map ([`VersionTargets::from_routing_map`]), so the names
//! the rewriter splices are exactly the ones the view generator created. A version whose
//! catalog substitutes exist also sends its catalog relations (`pg_catalog.pg_class`,
//! `information_schema.columns`, …) to them, so introspection shows the version's tables.
//! Where the catalog recorded how a view maps onto its base table, the targets carry that too
//! ([`BaseWrite`]), for the statements the rewriter sends to the base table (COPY … FROM
//! through an auto-updatable view, upserts through a trigger-backed one, MERGE).

use std::sync::Arc;

use super::identifier::quote_identifier;
use super::mention::{MentionScan, version_marks};
use super::shadowing::{Pin, SearchPathCandidates};
use crate::model::catalog_substitutes::{self, PG_CATALOG, SUBSTITUTE_SCHEMA_PREFIX};

use crate::model::shown_keys::shown_keys;
use crate::model::view_mapping::MAPPING_FUNCTION_INFIX;
use crate::model::{RoutingMap, ViewMapping};

/// A relation name as Postgres stores it: case-sensitive, after identifier folding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelationName {
    pub schema: String,
    pub name: String,
}

impl RelationName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        RelationName {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

/// A managed table and the view a version sees it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewTarget {
    pub table: RelationName,
    pub view: RelationName,
}

/// A view's base table and how the view's columns map onto it (`model::view_mapping`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseWrite {
    pub base: RelationName,
    pub mapping: Arc<ViewMapping>,
}

/// The managed tables of one version.
#[derive(Debug, Clone, Default)]
pub struct VersionTargets {
    pub version: String,
    targets: Vec<ViewTarget>,
    /// Per view (by its name), its base table and column mapping, where the catalog has one.
    base_writes: Vec<(RelationName, BaseWrite)>,
    /// Catalog relations and their substitutes for this version: rewritten like managed
    /// tables, except inside regclass literals (`'pg_class'::regclass` must stay the catalog).
    catalog: Vec<ViewTarget>,
    /// What a statement must mention to reach one of `catalog` (the relation names, and
    /// `information_schema`, which qualifies every reference to its substitutes).
    catalog_mentions: Vec<&'static str>,
    /// `table_names()`, grouped for the fast path's scan.
    mention_scan: MentionScan,
    /// Managed names another relation could shadow on a search_path (`resolution.rs`);
    /// empty in the common case.
    pub search_path_candidates: std::sync::Arc<SearchPathCandidates>,
    /// Whether sessions follow their search_path: some version of the routing state has
    /// candidates (the same for every version of one state).
    pub follows_search_path: bool,
    /// Unqualified names a session's search_path resolves elsewhere (`with_pins`): to this
    /// relation.
    pub(super) pins: Vec<(String, ViewTarget)>,
    /// Unqualified managed names no schema on the session's known search_path holds
    /// (`with_unreached`): their view is written unqualified, so that Postgres resolves it on
    /// the real path (the view, or nothing, as for the name as written) rather than the
    /// proxy's idea of it, which a change it cannot see may have made wrong.
    pub(super) unreached: Vec<String>,
    /// What the rewrite cache keys these targets by, when it is not `version` (pinned).
    pub(super) cache_identity: Option<String>,
    /// The views other versions read their managed tables through: a session at this version
    /// that names one is refused (it would see that version's columns). Also every name of
    /// `hidden_tables`.
    other_views: Vec<RelationName>,
    /// Managed tables by a name this version does not give them: a base table's own name
    /// where the version renames the table or does not list it, and other versions' names for
    /// it. Forwarded, such a name would read the base table whole (the nineteenth red-team
    /// pass read a renamed table's hidden columns so), so it is refused like another
    /// version's view.
    hidden_tables: Vec<RelationName>,
    /// Relatives of the managed tables (`model::base_table_kin`): partitions and inheritance
    /// children hold base rows with every base column, parents read them with theirs, so
    /// they are refused like other versions' views, and looked for by the fast path's scan.
    relatives: Vec<RelationName>,
    /// Per view: its base table's keys that may arbitrate an upsert (constraint, the view's
    /// names for its columns), where it shows them all (`references_conflict.rs`).
    constraint_keys: Vec<(RelationName, String, Vec<String>)>,
    /// Per view: which of its `constraint_keys` is its base table's primary key.
    primary_keys: Vec<(RelationName, String)>,
    /// Every active version's view, with its base table (`(base, view)`, in version order):
    /// what a `GRANT` on a managed table reaches (`postgres_grammar_grants.rs`).
    every_versions_views: Vec<(RelationName, RelationName)>,
    /// The routing state these targets were built for (`router::state`). The rewrite cache
    /// keys by it too: a rewrite a session made with the targets of a state that was replaced
    /// meanwhile (stored after the cache was cleared) is never served under the new one.
    pub routing_generation: u64,
}

impl VersionTargets {
    pub fn new(version: impl Into<String>, targets: Vec<ViewTarget>) -> Self {
        let names = targets.iter().map(|t| t.table.name.as_str());
        let marks = version_marks().filter(|_| !targets.is_empty());
        let mention_scan = MentionScan::new(names.chain(marks));
        VersionTargets {
            version: version.into(),
            targets,
            base_writes: Vec::new(),
            catalog: Vec::new(),
            catalog_mentions: Vec::new(),
            mention_scan,
            search_path_candidates: Default::default(),
            follows_search_path: false,
            pins: Vec::new(),
            unreached: Vec::new(),
            cache_identity: None,
            other_views: Vec::new(),
            every_versions_views: Vec::new(),
            hidden_tables: Vec::new(),
            relatives: Vec::new(),
            constraint_keys: Vec::new(),
            primary_keys: Vec::new(),
            routing_generation: 0,
        }
    }

    /// These targets, with the views other versions read the managed tables through.
    pub fn with_other_versions_views(mut self, views: Vec<RelationName>) -> Self {
        self.other_views = views;
        self.other_views.extend(self.hidden_tables.iter().cloned());
        self
    }

    /// These targets, with the managed tables' names this version does not give them
    /// (`hidden_tables`): refused as other versions' views are, and looked for by the fast
    /// path's scan.
    pub fn with_hidden_tables(mut self, hidden: Vec<RelationName>) -> Self {
        self.other_views.extend(hidden.iter().cloned());
        self.hidden_tables = hidden;
        self.mention_scan = MentionScan::new(self.table_names());
        self
    }

    /// These targets, with the managed tables' relatives (partitions, inheritance children
    /// and parents).
    pub fn with_relatives(mut self, relatives: Vec<RelationName>) -> Self {
        self.other_views.extend(relatives.iter().cloned());
        self.relatives = relatives;
        self.mention_scan = MentionScan::new(self.table_names());
        self
    }

    /// Whether `schema.name` (folded) is a partition, inheritance child or parent of a
    /// managed table.
    pub fn is_relative(&self, schema: Option<&str>, name: &str) -> bool {
        self.relatives
            .iter()
            .any(|table| table.name == name && schema.is_none_or(|schema| table.schema == schema))
    }

    /// Whether schema `schema` (as written in a string: exact) holds a relative of a managed
    /// table.
    pub fn has_relative_in(&self, schema: &str) -> bool {
        self.relatives.iter().any(|table| table.schema == schema)
    }

    /// Whether `schema.name` (folded) is a managed table by a name this version does not
    /// give it.
    pub fn is_hidden_table(&self, schema: Option<&str>, name: &str) -> bool {
        self.hidden_tables
            .iter()
            .any(|table| table.name == name && schema.is_none_or(|schema| table.schema == schema))
    }

    /// Whether `schema.name` (folded) is another version's: one of its views, by its name
    /// unqualified or by schema and name, or anything in its schema of catalog substitutes
    /// (they list that version's columns). An unqualified managed name is the managed table
    /// (in the schema-per-version layout every version's view has its name).
    pub fn names_other_version(&self, schema: Option<&str>, name: &str) -> bool {
        if schema.is_some_and(|schema| self.is_other_versions_catalog(schema)) {
            return true;
        }
        if schema.is_none() && self.resolve_table(None, name).is_some() {
            return false;
        }
        self.other_views
            .iter()
            .any(|view| view.name == name && schema.is_none_or(|schema| view.schema == schema))
    }

    /// Whether `name` is one of a version's mapping functions (`<view>_map_<digest>`,
    /// `control::views::mapping_functions`): the proxy's own, which it calls where it writes
    /// a base table in a view's stead. A client never does: another version's compute that
    /// version's columns (the fifty-second red-team pass read a hidden column's value through
    /// one whose expression held a subquery), and the parameters of a read's body are the
    /// base table's columns.
    pub fn names_mapping_function(&self, name: &str) -> bool {
        self.targets
            .iter()
            .map(|target| &target.view)
            .chain(&self.other_views)
            .any(|view| {
                name.strip_prefix(view.name.as_str())
                    .is_some_and(|rest| rest.starts_with(MAPPING_FUNCTION_INFIX))
            })
    }

    /// Whether `schema` (folded) holds catalog substitutes that are not this version's.
    pub fn is_other_versions_catalog(&self, schema: &str) -> bool {
        schema.starts_with(SUBSTITUTE_SCHEMA_PREFIX)
            && self
                .catalog
                .first()
                .is_none_or(|own| own.view.schema != schema)
    }

    /// The views of other versions, for scans of text (`definitions::body_mention`).
    pub fn other_views(&self) -> &[RelationName] {
        &self.other_views
    }

    /// The managed tables (catalog relations left out).
    pub fn managed(&self) -> &[ViewTarget] {
        &self.targets
    }

    /// What the rewrite cache keys these targets by: the version, or with pins the version
    /// and the resolution, so no session is served a rewrite made under another resolution.
    pub fn cache_identity(&self) -> &str {
        self.cache_identity.as_deref().unwrap_or(&self.version)
    }

    /// The pin of an unqualified `name`, if the session's search_path resolves it elsewhere.
    fn pinned(&self, schema: Option<&str>, name: &str) -> Option<&ViewTarget> {
        if schema.is_some() || self.pins.is_empty() {
            return None;
        }
        self.pins
            .iter()
            .find(|(pinned, _)| pinned == name)
            .map(|(_, target)| target)
    }

    /// Whether the session's search_path pins the unqualified `name` elsewhere.
    pub fn is_pinned(&self, schema: Option<&str>, name: &str) -> bool {
        self.pinned(schema, name).is_some()
    }

    /// Whether `target` is one of the version's managed tables (not a catalog relation, nor
    /// a name the session's search_path pins elsewhere).
    pub fn is_managed(&self, target: &ViewTarget) -> bool {
        self.targets.contains(target)
    }

    /// Whether the version reads the catalog through substitutes.
    pub fn has_catalog_substitutes(&self) -> bool {
        !self.catalog.is_empty()
    }

    /// Where a call of the function `schema.name` (folded names) goes instead: a `pg_catalog`
    /// function with a substitute (`SUBSTITUTE_FUNCTIONS`), in this version's substitutes'
    /// schema; `None` for every other function, and for every function without substitutes.
    pub fn substitute_function(&self, schema: Option<&str>, name: &str) -> Option<RelationName> {
        (schema.is_none_or(|schema| schema == PG_CATALOG)
            && catalog_substitutes::SUBSTITUTE_FUNCTIONS.contains(&name))
        .then(|| self.substitutes_function(name))?
    }

    /// The function `name` in the version's substitutes' schema; `None` without substitutes.
    pub fn substitutes_function(&self, name: &str) -> Option<RelationName> {
        let substitutes = &self.catalog.first()?.view.schema;
        Some(RelationName::new(substitutes.as_str(), name))
    }

    /// These targets, with the catalog relations sent to the substitutes in `schema`.
    pub fn with_catalog_substitutes(mut self, schema: &str) -> Self {
        self.catalog = catalog_substitutes::substitutes()
            .map(|(catalog, name)| ViewTarget {
                table: RelationName::new(catalog, name),
                view: RelationName::new(schema, name),
            })
            .collect();
        self.catalog_mentions = catalog_substitutes::PG_CATALOG_SUBSTITUTES.to_vec();
        self.catalog_mentions
            .push(catalog_substitutes::INFORMATION_SCHEMA);
        // A printer called by oid alone (`pg_get_indexdef(16390)`) goes to its substitute too.
        self.catalog_mentions
            .extend(catalog_substitutes::SUBSTITUTE_FUNCTIONS.iter().copied());
        self.catalog_mentions
            .extend(catalog_substitutes::RELATION_TYPE_MENTIONS.iter().copied());
        self.mention_scan = MentionScan::new(self.table_names());
        self
    }

    /// These targets, with `view`'s base table and column mapping.
    pub fn with_base_write(mut self, view: RelationName, write: BaseWrite) -> Self {
        self.base_writes.push((view, write));
        self
    }

    /// These targets, with every active version's `(base table, view)`.
    pub fn with_every_versions_views(
        mut self,
        views: impl IntoIterator<Item = (RelationName, RelationName)>,
    ) -> Self {
        self.every_versions_views = views.into_iter().collect();
        self
    }

    /// Every active version's view of base table `base`.
    pub fn views_of_base<'t>(
        &'t self,
        base: &'t RelationName,
    ) -> impl Iterator<Item = &'t RelationName> + 't {
        (self.every_versions_views.iter())
            .filter(move |(of, _)| of == base)
            .map(|(_, view)| view)
    }

    /// The base table and column mapping of a target's view, if the catalog recorded them.
    pub fn base_write(&self, target: &ViewTarget) -> Option<&BaseWrite> {
        self.base_writes
            .iter()
            .find(|(view, _)| *view == target.view)
            .map(|(_, write)| write)
    }

    /// The view's names for the key of its base table's constraint `constraint`, if known.
    pub fn constraint_key(&self, view: &RelationName, constraint: &str) -> Option<&[String]> {
        self.constraint_keys
            .iter()
            .find(|(v, c, _)| v == view && c == constraint)
            .map(|(_, _, columns)| columns.as_slice())
    }

    /// The view's names for its base table's primary key, where it shows every column of it.
    pub fn primary_key(&self, view: &RelationName) -> Option<&[String]> {
        let (_, constraint) = self.primary_keys.iter().find(|(v, _)| v == view)?;
        self.constraint_key(view, constraint)
    }

    /// The mapping recorded for the view over base table `base`, if any.
    pub fn base_write_of(&self, base: &RelationName) -> Option<&BaseWrite> {
        self.base_writes
            .iter()
            .map(|(_, write)| write)
            .find(|write| write.base == *base)
    }

    /// The fast path's scan for `table_names()`.
    pub fn mention_scan(&self) -> &MentionScan {
        &self.mention_scan
    }

    /// The targets of `version` in the catalog's routing map; `None` when the catalog has no
    /// active version of that name. A managed table is named by the schema of its base table
    /// and the name the version's clients use.
    pub fn from_routing_map(map: &RoutingMap, version: &str) -> Option<Self> {
        let tables = map.versions.get(version)?;
        let targets = tables
            .iter()
            .map(|routed| ViewTarget {
                table: RelationName::new(&routed.base_schema, &routed.table_name),
                view: RelationName::new(&routed.view_schema, &routed.view_name),
            })
            .collect::<Vec<_>>();
        let has_tables = !targets.is_empty();
        let own: Vec<RelationName> = targets.iter().map(|t| t.view.clone()).collect();
        let other_views = map
            .versions
            .iter()
            .filter(|(other, _)| other.as_str() != version)
            .flat_map(|(_, tables)| tables)
            .map(|routed| RelationName::new(&routed.view_schema, &routed.view_name))
            .chain(
                map.pending_views
                    .iter()
                    .map(|(schema, name)| RelationName::new(schema, name)),
            )
            .filter(|view| !own.contains(view))
            .collect();
        let own_names: Vec<RelationName> = targets.iter().map(|t| t.table.clone()).collect();
        let mut hidden: Vec<RelationName> = Vec::new();
        for routed in map.versions.values().flatten() {
            for name in [
                RelationName::new(&routed.base_schema, &routed.base_table),
                RelationName::new(&routed.base_schema, &routed.table_name),
            ] {
                if !own_names.contains(&name) && !hidden.contains(&name) {
                    hidden.push(name);
                }
            }
        }
        let relatives = map
            .kin
            .relatives
            .keys()
            .map(|(schema, name)| RelationName::new(schema, name))
            .collect();
        let mut targets = VersionTargets::new(version, targets)
            .with_every_versions_views(map.versions.values().flatten().map(|routed| {
                let base = RelationName::new(&routed.base_schema, &routed.base_table);
                (
                    base,
                    RelationName::new(&routed.view_schema, &routed.view_name),
                )
            }))
            .with_other_versions_views(other_views)
            .with_hidden_tables(hidden)
            .with_relatives(relatives);
        for routed in tables {
            if let Some(mapping) = &routed.mapping {
                let view = RelationName::new(&routed.view_schema, &routed.view_name);
                let (schema, table) = (&routed.base_schema, &routed.base_table);
                let versions = map.versions.keys().map(String::as_str);
                for key in shown_keys(&map.kin, schema, table, mapping, versions) {
                    if key.primary {
                        targets
                            .primary_keys
                            .push((view.clone(), key.constraint.clone()));
                    }
                    let key = (view.clone(), key.constraint, key.columns);
                    targets.constraint_keys.push(key);
                }
                targets = targets.with_base_write(
                    RelationName::new(&routed.view_schema, &routed.view_name),
                    BaseWrite {
                        base: RelationName::new(&routed.base_schema, &routed.base_table),
                        mapping: Arc::new(mapping.clone()),
                    },
                );
            }
        }
        Some(match map.catalog_substitutes.contains(version) {
            true if has_tables => {
                targets.with_catalog_substitutes(&catalog_substitutes::substitute_schema(version))
            }
            _ => targets,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Names a statement must mention (in any case) before it is worth parsing: the managed
    /// tables', the built-ins that read relations named in a string (`query_functions.rs`)
    /// and, with catalog substitutes, the catalog relations'.
    pub fn table_names(&self) -> impl Iterator<Item = &str> {
        self.targets
            .iter()
            .map(|t| t.table.name.as_str())
            .chain(self.hidden_tables.iter().map(|t| t.name.as_str()))
            .chain(self.relatives.iter().map(|t| t.name.as_str()))
            .chain(self.catalog_mentions.iter().copied())
            .chain(version_marks().filter(|_| !self.targets.is_empty()))
    }

    /// The target for a relation reference `schema.name` (folded names): a managed table, or
    /// a catalog relation with a substitute. An unqualified name matches when exactly one
    /// managed table has it, whatever its schema, unless the session's search_path pins it
    /// elsewhere ([`VersionTargets::with_pins`], `resolution.rs`). Catalog relations match
    /// unqualified only in `pg_catalog`, which Postgres searches first.
    pub fn resolve(&self, schema: Option<&str>, name: &str) -> Option<&ViewTarget> {
        if let Some(pinned) = self.pinned(schema, name) {
            return Some(pinned);
        }
        self.resolve_table(schema, name).or_else(|| {
            self.catalog.iter().find(|t| {
                t.table.name == name
                    && schema.map_or(t.table.schema == PG_CATALOG, |s| t.table.schema == s)
            })
        })
    }

    /// The managed table a reference names, leaving catalog relations out: what a regclass
    /// literal resolves to (`'model_metadata'::regclass` is the version's view, while
    /// `'pg_class'::regclass` stays the real catalog, which `pg_description.classoid` and
    /// `pg_depend.classid` are compared with).
    pub fn resolve_table(&self, schema: Option<&str>, name: &str) -> Option<&ViewTarget> {
        if let Some(pinned) = self.pinned(schema, name) {
            return Some(pinned);
        }
        let mut matches = self.targets.iter().filter(|t| {
            t.table.name == name && schema.is_none_or(|schema| t.table.schema == schema)
        });
        let first = matches.next()?;
        matches.next().is_none().then_some(first)
    }
}

impl VersionTargets {
    /// These targets with unqualified `pins` resolved elsewhere, under a cache identity of
    /// their own (the rewrite cache keys by it, so no session is served another resolution).
    pub fn with_pins(&self, pins: &[(String, Pin)]) -> VersionTargets {
        let mut pinned = self.clone();
        let mut identity = self.version.clone();
        pinned.pins = pins
            .iter()
            .map(|(name, pin)| {
                // Lengths make the identity unambiguous whatever characters names hold.
                identity.push_str(&format!("\0{}:{name}", name.len()));
                let schema = &pin.schema;
                identity.push_str(&format!("={}:{schema}", schema.len()));
                let table = self
                    .managed()
                    .iter()
                    .find(|target| target.table.name == *name)
                    .map(|target| target.table.clone())
                    .unwrap_or_else(|| RelationName::new("", name.as_str()));
                let target = ViewTarget {
                    table,
                    view: RelationName::new(schema.as_str(), name.as_str()),
                };
                (name.clone(), target)
            })
            .collect();
        pinned.cache_identity = (!pins.is_empty()).then_some(identity);
        pinned
    }

    /// These targets with the unqualified `names` that no schema on the session's search_path
    /// holds, under a cache identity of their own.
    pub fn with_unreached(mut self, names: Vec<String>) -> VersionTargets {
        if names.is_empty() {
            return self;
        }
        let mut identity = self.cache_identity().to_owned();
        for name in &names {
            identity.push_str(&format!("\0!{}:{name}", name.len()));
        }
        self.unreached = names;
        self.cache_identity = Some(identity);
        self
    }

    /// Whether the view of `target` is written unqualified (`unreached`): only a managed
    /// table's view in its own schema.
    pub fn leaves_view_unqualified(&self, target: &ViewTarget) -> bool {
        target.view.schema == target.table.schema
            && self.targets.contains(target)
            && self.unreached.contains(&target.table.name)
    }

    /// How the rewritten statement names the view: always qualified with its schema. The rewriter
    /// has resolved the name on the session's search_path already; left unqualified, Postgres
    /// would resolve the view's name again, temporary schema first, and a relation or type the
    /// session made there under that name (before the version existed, or through a prepared
    /// `SELECT … INTO`) would be read in the view's place (the twenty-second red-team pass).
    /// The one exception: a name no schema on the session's known search_path holds
    /// ([`Self::leaves_view_unqualified`]), where Postgres alone would find nothing.
    pub fn view_reference(&self, target: &ViewTarget) -> String {
        if self.leaves_view_unqualified(target) {
            return quote_identifier(&target.view.name);
        }
        format!(
            "{}.{}",
            quote_identifier(&target.view.schema),
            quote_identifier(&target.view.name)
        )
    }
}

#[cfg(test)]
impl VersionTargets {
    /// The seed example's managed table at `version` (`public.model_metadata` through
    /// `public.model_metadata_<version>`), for the rewriter's unit tests.
    pub fn seed_example(version: &str) -> VersionTargets {
        VersionTargets::new(
            version,
            vec![ViewTarget {
                table: RelationName::new("public", "model_metadata"),
                view: RelationName::new("public", format!("model_metadata_{version}")),
            }],
        )
    }
}

#[cfg(test)]
#[path = "targets_tests.rs"]
mod tests;
