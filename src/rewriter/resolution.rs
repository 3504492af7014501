//! Postgres's name resolution for unqualified managed names: which relation a session's
//! `search_path` makes `model_metadata` mean.
//!
//! A version's [`SearchPathCandidates`] ([`candidates`]) list the managed names that another relation of the
//! same name could shadow (from the routing map's `relation_schemas`): per name, the schemas
//! that count as the managed table (its base table's schema, and every version's view schema
//! where the view has the table's own name, as in the schema-per-version layout) and the other
//! schemas that hold a relation of that name. The common case, no such relation anywhere, has
//! no candidates and nothing here runs.
//!
//! [`walk`] follows an effective search_path (`$user` expanded, `pg_catalog` first unless
//! listed; [`effective_path`]) as Postgres does: the first schema holding the name decides. A
//! name whose first holder is another schema is *pinned* there ([`Pin`]): the rewriter
//! writes `tenant_a.model_metadata AS model_metadata`, which reads what Postgres would have
//! read, and fails rather than falling through to the base table if that relation has gone
//! since the map was loaded. A name no schema on the path holds is rewritten to the version's
//! view, never left as written, and with the view's name unqualified (elsewhere it is always
//! qualified: `VersionTargets::view_reference`): were the proxy's idea of the path wrong (a change
//! it cannot see, such as a `set_config` inside a function), the name as written could reach
//! the base table, while the view's name finds the view or nothing, as Postgres would.

use std::collections::BTreeSet;

pub use super::shadowing::{NameCandidates, Pin, SearchPathCandidates};
use super::targets::VersionTargets;
use crate::model::RoutingMap;
use crate::model::catalog_substitutes::PG_CATALOG;

/// The alias Postgres gives a session's own temporary schema, in a name or a search_path.
pub const TEMP_SCHEMA: &str = "pg_temp";

/// The `search_path` element that stands for the session user's own schema.
pub const USER_ELEMENT: &str = "$user";

/// The candidates of `targets` (one version's) in `map`. Only names that resolve unqualified
/// at all (one managed table of that name) are candidates.
pub fn candidates(targets: &VersionTargets, map: &RoutingMap) -> SearchPathCandidates {
    let mut names = Vec::new();
    for target in targets.managed() {
        let name = &target.table.name;
        if targets.resolve_table(None, name) != Some(target) {
            continue;
        }
        let Some(holders) = map.relation_schemas.get(name) else {
            continue;
        };
        let mut own = BTreeSet::from([target.table.schema.clone()]);
        own.extend(
            map.versions
                .values()
                .flatten()
                .filter(|routed| routed.view_name == *name)
                .map(|routed| routed.view_schema.clone()),
        );
        let others: BTreeSet<String> = holders.difference(&own).cloned().collect();
        if !others.is_empty() {
            names.push(NameCandidates {
                name: name.clone(),
                own,
                others,
            });
        }
    }
    SearchPathCandidates { names }
}

/// The schemas Postgres searches, in order, for a search_path of `elements` (schema names as
/// stored, e.g. `["$user", "public"]`) in a session of `session_user`: `$user` expanded, the
/// session's temporary schema (`pg_temp`) first and then `pg_catalog` unless the path lists
/// them.
pub fn effective_path(elements: &[String], session_user: &str) -> Vec<String> {
    let mut path = Vec::with_capacity(elements.len() + 2);
    for implicit in [TEMP_SCHEMA, PG_CATALOG] {
        if !elements.iter().any(|element| element == implicit) {
            path.push(implicit.to_owned());
        }
    }
    for element in elements {
        if element == USER_ELEMENT {
            path.push(session_user.to_owned());
        } else {
            path.push(element.clone());
        }
    }
    path
}

/// Where `candidate` resolves on `path` (an [`effective_path`]): the [`Pin`] when the first
/// schema holding it is another than the managed table's own; `None` (rewrite as usual) when
/// it is the managed table's own, or when no schema on the path holds it.
pub fn walk(path: &[String], candidate: &NameCandidates) -> Option<Pin> {
    let first = path
        .iter()
        .find(|schema| candidate.own.contains(*schema) || candidate.others.contains(*schema))?;
    candidate.others.contains(first).then(|| Pin {
        schema: first.clone(),
    })
}

/// `candidates` with the session's own temporary relations of `names` (managed names of
/// `targets`) added as holders in [`TEMP_SCHEMA`]: the watcher never sees a session's
/// temporary schema, so the session follows its own (`router::temporary_relations`).
pub fn with_temporary(
    candidates: &SearchPathCandidates,
    targets: &VersionTargets,
    names: &BTreeSet<String>,
) -> SearchPathCandidates {
    let mut merged = candidates.clone();
    for name in names {
        let Some(target) = targets.resolve_table(None, name) else {
            continue;
        };
        match merged.names.iter_mut().find(|c| c.name == *name) {
            Some(candidate) => {
                candidate.others.insert(TEMP_SCHEMA.to_owned());
            }
            None => {
                let mut own = BTreeSet::from([target.table.schema.clone()]);
                if target.view.name == *name {
                    own.insert(target.view.schema.clone());
                }
                merged.names.push(NameCandidates {
                    name: name.clone(),
                    own,
                    others: BTreeSet::from([TEMP_SCHEMA.to_owned()]),
                });
            }
        }
    }
    merged
}

/// The pins for every candidate on `path`; empty when every name resolves to its managed table.
pub fn pins(candidates: &SearchPathCandidates, path: &[String]) -> Vec<(String, Pin)> {
    candidates
        .names
        .iter()
        .filter_map(|candidate| Some((candidate.name.clone(), walk(path, candidate)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RoutedTable;
    use crate::rewriter::targets::RelationName;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn pin(schema: &str) -> Pin {
        Pin {
            schema: schema.into(),
        }
    }

    fn candidate(own: &[&str], others: &[&str]) -> NameCandidates {
        NameCandidates {
            name: "model_metadata".into(),
            own: own.iter().map(|s| (*s).to_owned()).collect(),
            others: others.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn the_effective_path_expands_user_and_puts_pg_catalog_first() {
        assert_eq!(
            effective_path(&strings(&["$user", "public"]), "alice"),
            strings(&["pg_temp", "pg_catalog", "alice", "public"])
        );
        assert_eq!(
            effective_path(&strings(&["public", "pg_catalog", "pg_temp"]), "alice"),
            strings(&["public", "pg_catalog", "pg_temp"])
        );
        assert_eq!(
            effective_path(&[], "alice"),
            strings(&["pg_temp", "pg_catalog"])
        );
    }

    #[test]
    fn the_first_schema_holding_the_name_decides() {
        let tenant = candidate(&["public"], &["tenant_a", "tenant_b"]);
        let walk_on = |path: &[&str]| walk(&effective_path(&strings(path), "alice"), &tenant);
        assert_eq!(walk_on(&["tenant_a", "public"]), Some(pin("tenant_a")));
        assert_eq!(walk_on(&["public", "tenant_a"]), None);
        assert_eq!(walk_on(&["nowhere", "public"]), None);
        assert_eq!(
            walk_on(&["$user", "tenant_b", "public"]),
            Some(pin("tenant_b"))
        );
        // Held nowhere on the path: the view's name, never the name as written.
        assert_eq!(walk_on(&["nowhere"]), None);
        // `$user` names the session user's schema.
        let mine = candidate(&["public"], &["alice"]);
        assert_eq!(
            walk(
                &effective_path(&strings(&["$user", "public"]), "alice"),
                &mine
            ),
            Some(pin("alice"))
        );
        assert_eq!(
            walk(
                &effective_path(&strings(&["$user", "public"]), "bob"),
                &mine
            ),
            None
        );
        // A relation in pg_catalog is found first unless the path lists pg_catalog later.
        let system = candidate(&["public"], &["pg_catalog"]);
        assert_eq!(
            walk(&effective_path(&strings(&["public"]), "a"), &system),
            Some(pin("pg_catalog"))
        );
        assert_eq!(
            walk(
                &effective_path(&strings(&["public", "pg_catalog"]), "a"),
                &system
            ),
            None
        );
    }

    fn routed(view_schema: &str, view_name: &str) -> RoutedTable {
        RoutedTable {
            table_name: "model_metadata".into(),
            base_schema: "public".into(),
            base_table: "model_metadata".into(),
            view_schema: view_schema.into(),
            view_name: view_name.into(),
            mapping: None,
        }
    }

    #[test]
    fn view_schemas_of_the_schema_layout_are_not_shadows() {
        let mut map = RoutingMap::default();
        map.versions
            .insert("v1".into(), vec![routed("v1", "model_metadata")]);
        map.versions
            .insert("v2".into(), vec![routed("v2", "model_metadata")]);
        map.relation_schemas.insert(
            "model_metadata".into(),
            ["public", "v1", "v2"].map(String::from).into(),
        );
        let targets = VersionTargets::from_routing_map(&map, "v1").unwrap();
        assert!(candidates(&targets, &map).is_empty());
        map.relation_schemas
            .get_mut("model_metadata")
            .unwrap()
            .insert("tenant_a".into());
        let candidates = candidates(&targets, &map);
        assert_eq!(
            candidates.names,
            vec![NameCandidates {
                name: "model_metadata".into(),
                own: ["public", "v1", "v2"].map(String::from).into(),
                others: ["tenant_a".to_owned()].into(),
            }]
        );
        // A v1 client with v2's schema first still reads its own version.
        let path = effective_path(&strings(&["v2", "tenant_a", "public"]), "alice");
        assert!(pins(&candidates, &path).is_empty());
    }

    #[test]
    fn pinned_targets_resolve_unqualified_names_elsewhere_under_their_own_identity() {
        let mut map = RoutingMap::default();
        map.versions
            .insert("v2".into(), vec![routed("public", "model_metadata_v2")]);
        let targets = VersionTargets::from_routing_map(&map, "v2").unwrap();
        let pinned = targets.with_pins(&[("model_metadata".into(), pin("t"))]);
        let target = pinned.resolve(None, "model_metadata").unwrap();
        assert_eq!(target.view, RelationName::new("t", "model_metadata"));
        assert_eq!(
            pinned
                .resolve(Some("public"), "model_metadata")
                .unwrap()
                .view,
            RelationName::new("public", "model_metadata_v2"),
            "qualified names are unchanged"
        );
        assert_ne!(pinned.cache_identity(), targets.cache_identity());
        assert!(!pinned.is_managed(target));
        assert!(targets.is_managed(targets.resolve(None, "model_metadata").unwrap()));
        let elsewhere = targets.with_pins(&[("model_metadata".into(), pin("u"))]);
        assert_ne!(elsewhere.cache_identity(), pinned.cache_identity());
        assert_eq!(targets.with_pins(&[]).cache_identity(), "v2");
    }
}
