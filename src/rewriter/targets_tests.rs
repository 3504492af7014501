//! Unit tests of `targets.rs`: name resolution and targets built from a routing map.

use super::*;

fn targets() -> VersionTargets {
    VersionTargets::new(
        "v2",
        vec![
            ViewTarget {
                table: RelationName::new("public", "model_metadata"),
                view: RelationName::new("public", "model_metadata_v2"),
            },
            ViewTarget {
                table: RelationName::new("public", "dup"),
                view: RelationName::new("public", "dup_v2"),
            },
            ViewTarget {
                table: RelationName::new("other", "dup"),
                view: RelationName::new("other", "dup_v2"),
            },
        ],
    )
}

#[test]
fn resolves_qualified_and_unambiguous_names() {
    let targets = targets();
    assert!(targets.resolve(None, "model_metadata").is_some());
    assert!(targets.resolve(Some("public"), "model_metadata").is_some());
    assert!(targets.resolve(Some("other"), "model_metadata").is_none());
    assert!(
        targets.resolve(None, "dup").is_none(),
        "ambiguous without a schema"
    );
    assert_eq!(
        targets.resolve(Some("other"), "dup").unwrap().view.name,
        "dup_v2"
    );
}

#[test]
fn builds_targets_from_the_routing_map() {
    use crate::model::RoutedTable;
    let mut map = RoutingMap::default();
    map.versions.insert(
        "v2".into(),
        vec![RoutedTable {
            table_name: "model_metadata".into(),
            base_schema: "public".into(),
            base_table: "model_metadata".into(),
            view_schema: "public".into(),
            view_name: "model_metadata_v2".into(),
            mapping: None,
        }],
    );
    let targets = VersionTargets::from_routing_map(&map, "v2").unwrap();
    assert_eq!(targets.version, "v2");
    let target = targets.resolve(Some("public"), "model_metadata").unwrap();
    assert_eq!(
        target.view,
        RelationName::new("public", "model_metadata_v2")
    );
    assert!(VersionTargets::from_routing_map(&map, "v3").is_none());
    assert!(
        targets.resolve(Some("pg_catalog"), "pg_class").is_none(),
        "no substitutes unless the catalog has them"
    );
    map.catalog_substitutes.insert("v2".into());
    let targets = VersionTargets::from_routing_map(&map, "v2").unwrap();
    let pg_class = targets.resolve(None, "pg_class").unwrap();
    assert_eq!(
        pg_class.view,
        RelationName::new("viewgate_catalog_v2", "pg_class")
    );
    assert_eq!(
        targets.resolve(Some("pg_catalog"), "pg_class"),
        Some(pg_class)
    );
    assert!(targets.resolve(Some("public"), "pg_class").is_none());
    assert!(targets.resolve_table(None, "pg_class").is_none());
    assert!(targets.resolve(None, "columns").is_none());
    assert_eq!(
        targets
            .resolve(Some("information_schema"), "columns")
            .unwrap()
            .view,
        RelationName::new("viewgate_catalog_v2", "columns")
    );
    assert!(targets.table_names().any(|n| n == "information_schema"));
}
