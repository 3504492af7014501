//! What the proxy needs from the catalog to route sessions and rewrite table names: per active
//! version, its tables and the views serving them; the default version; the routing rules.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::base_table_kin::BaseTableKin;
use super::rule::CatalogRules;
use super::shadow_run::ShadowRun;
use super::view_mapping::ViewMapping;

/// A managed table as one version's clients name it, and the view that serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutedTable {
    pub table_name: String,
    pub base_schema: String,
    pub base_table: String,
    pub view_schema: String,
    pub view_name: String,
    /// How the view's columns map onto the base table (`view_mapping`); `None` for a version
    /// applied before the catalog recorded it.
    pub mapping: Option<ViewMapping>,
}

/// Why the catalog has a version that no session may ask for, told to one that asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Unavailable {
    /// Its migration has not gone live yet (it backfills).
    Pending,
    /// Retired by the contract of the migration to this version; `None`: by `views drop`.
    Retired(Option<String>),
}

/// What the proxy needs to route sessions and rewrite table names: per active version, its
/// tables and views; the default version; every routing rule, in evaluation order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RoutingMap {
    pub default_version: Option<String>,
    pub versions: BTreeMap<String, Vec<RoutedTable>>,
    pub rules: CatalogRules,
    /// A migration is backfilling or live: its sync triggers tell writers apart by the session
    /// setting `viewgate.version`, so each session must keep it equal to its version upstream.
    pub tracks_writers: bool,
    /// The shadow run in progress, if any (`viewgate shadow start`).
    pub shadow: Option<ShadowRun>,
    /// Active versions whose catalog substitutes exist (`catalog_substitutes`): their clients'
    /// catalog queries are sent there. A version applied before they existed has none.
    pub catalog_substitutes: BTreeSet<String>,
    /// Per managed table name (as some version's clients write it), the schemas where a
    /// relation of that name exists (table, view, materialized view, foreign or partitioned
    /// table; other sessions' temporary schemas left out). The rewriter walks a session's
    /// search_path over these (`rewriter::resolution`); kept fresh by the watcher's periodic
    /// refresh, since creating a relation does not notify.
    pub relation_schemas: BTreeMap<String, BTreeSet<String>>,
    /// The views (schema, name) of versions that exist but are not live yet: a migration's
    /// new version while it backfills. No session may name them (the thirty-first red-team
    /// pass read and wrote a pending version's columns through its view by name).
    pub pending_views: Vec<(String, String)>,
    /// The managed tables' relatives (partitions, inheritance children, parents) and the
    /// foreign keys into them; kept fresh by the watcher's periodic refresh, as
    /// `relation_schemas` is.
    pub kin: BaseTableKin,
    /// How many changes the catalog had announced when this map was read
    /// (`viewgate.catalog_change`, read first); `None` for a catalog without the count.
    pub catalog_change: Option<i64>,
    /// The versions that are not active, and why.
    pub unavailable: BTreeMap<String, Unavailable>,
}

impl RoutingMap {
    /// The view serving `table_name` (as the version's clients write it) at `version`.
    pub fn view_for(&self, version: &str, table_name: &str) -> Option<&RoutedTable> {
        self.versions
            .get(version)?
            .iter()
            .find(|table| table.table_name == table_name)
    }

    /// Every managed table's base table, as (schema, table), sorted, once each.
    pub fn base_tables(&self) -> Vec<(String, String)> {
        let bases: BTreeSet<(String, String)> = self
            .versions
            .values()
            .flatten()
            .map(|table| (table.base_schema.clone(), table.base_table.clone()))
            .collect();
        bases.into_iter().collect()
    }

    /// Every managed table name some active version's clients write, sorted, once each.
    pub fn managed_names(&self) -> Vec<&str> {
        let names: BTreeSet<&str> = self
            .versions
            .values()
            .flatten()
            .map(|table| table.table_name.as_str())
            .collect();
        names.into_iter().collect()
    }
}
