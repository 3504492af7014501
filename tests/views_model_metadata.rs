//! The seed example (examples/model_metadata) against a real Postgres: v1 and v2 clients read
//! and write each other's rows, re-applying is a recorded no-op, and the routing map and the
//! offline `views generate` output are what the docs promise.

use crate::support;

use std::process::Command;

use support::{Database, exec, lines, repo_file};
use viewgate::catalog_read::load_routing_map;

async fn seeded() -> Database {
    let database = Database::start();
    let schema = std::fs::read_to_string(repo_file("examples/model_metadata/schema.sql"))
        .expect("example schema");
    database.admin(&schema);
    let outcome = database
        .apply(&repo_file("examples/model_metadata/viewgate.toml"))
        .await
        .expect("example applies");
    assert_eq!(outcome.applied, ["v1", "v2"]);
    database
}

#[tokio::test]
async fn v1_and_v2_clients_see_each_others_writes() {
    let database = seeded().await;
    let v1 = database.client().await;
    let v2 = database.client().await;

    exec(&v1, "INSERT INTO model_metadata_v1 (model_name, model_version, hyperparameters) VALUES ('resnet', '1.0', '{\"lr\": 0.1}')").await;
    let inserted = lines(&v2, "INSERT INTO model_metadata_v2 (model_name, model_version, model_type) VALUES ('bert', '2.0', 'transformer') RETURNING id, model_type, schema_version").await;
    assert_eq!(
        inserted,
        ["2|transformer|1"],
        "RETURNING through the trigger"
    );

    assert_eq!(
        database.admin(
            "SELECT model_name, coalesce(model_type, '<null>') FROM model_metadata ORDER BY id"
        ),
        "resnet|<null>\nbert|transformer",
        "v1's row stores NULL, v2's stores what it wrote"
    );
    assert_eq!(
        lines(&v2, "SELECT model_name, model_type, hyperparameters->>'lr' FROM model_metadata_v2 ORDER BY id").await,
        ["resnet|neural_network|0.1", "bert|transformer|<null>"]
    );
    assert_eq!(
        lines(
            &v1,
            "SELECT id, model_name, model_version FROM model_metadata_v1 ORDER BY id"
        )
        .await,
        ["1|resnet|1.0", "2|bert|2.0"]
    );

    // Updates and deletes cross versions too; an update that leaves model_type alone keeps
    // the stored NULL instead of writing the COALESCE default back.
    exec(
        &v2,
        "UPDATE model_metadata_v2 SET model_version = '1.1' WHERE model_name = 'resnet'",
    )
    .await;
    assert_eq!(
        database.admin(
            "SELECT model_version, coalesce(model_type, '<null>') FROM model_metadata WHERE id = 1"
        ),
        "1.1|<null>"
    );
    exec(
        &v1,
        "UPDATE model_metadata_v1 SET model_name = 'bert-base' WHERE id = 2",
    )
    .await;
    assert_eq!(
        lines(
            &v2,
            "SELECT model_name, model_type FROM model_metadata_v2 WHERE id = 2"
        )
        .await,
        ["bert-base|transformer"]
    );
    exec(&v2, "DELETE FROM model_metadata_v2 WHERE id = 1").await;
    assert_eq!(
        lines(&v1, "SELECT count(*) FROM model_metadata_v1").await,
        ["1"]
    );
}

#[tokio::test]
async fn reapplying_the_same_spec_is_a_recorded_noop_and_the_routing_map_is_loaded() {
    let database = seeded().await;
    let again = database
        .apply(&repo_file("examples/model_metadata/viewgate.toml"))
        .await
        .expect("re-apply");
    assert!(again.is_noop(), "{again}");
    assert_eq!(again.unchanged, ["v1", "v2"]);
    assert_eq!(
        database.admin("SELECT action, success, versions FROM viewgate.apply_history ORDER BY id"),
        "apply|t|{v1,v2}\nnoop|t|{v1,v2}"
    );
    assert_eq!(
        database.admin(
            "SELECT applied_by, application FROM viewgate.apply_history ORDER BY id LIMIT 1"
        ),
        "postgres|",
        "who applied is recorded (the test client sets no application_name)"
    );

    let client = database.client().await;
    let map = load_routing_map(&client).await.expect("routing map");
    assert_eq!(map.default_version, None);
    let v2 = map
        .view_for("v2", "model_metadata")
        .expect("v2 routes model_metadata");
    assert_eq!(
        (v2.view_schema.as_str(), v2.view_name.as_str()),
        ("public", "model_metadata_v2")
    );
    assert_eq!(
        (v2.base_schema.as_str(), v2.base_table.as_str()),
        ("public", "model_metadata")
    );
    assert!(map.view_for("v1", "model_metadata").is_some());
    assert!(map.view_for("v3", "model_metadata").is_none());
}

#[tokio::test]
async fn views_are_security_invoker_and_trigger_backed_views_inherit_base_defaults() {
    let database = seeded().await;
    assert_eq!(
        database.admin("SELECT relname, reloptions FROM pg_class WHERE relname LIKE 'model_metadata_v_' ORDER BY relname"),
        "model_metadata_v1|{security_invoker=true}\nmodel_metadata_v2|{security_invoker=true}"
    );
    let defaults = database.admin(
        "SELECT a.attname FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
         WHERE d.adrelid = 'model_metadata_v2'::regclass ORDER BY a.attnum",
    );
    assert_eq!(defaults, "id\nhyperparameters\ncreated_at\nschema_version");
}

#[test]
fn generate_prints_reviewable_deterministic_sql_offline() {
    let run = || {
        let output = Command::new(env!("CARGO_BIN_EXE_viewgate"))
            .args([
                "views",
                "generate",
                "--spec",
                "examples/model_metadata/viewgate.toml",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("VIEWGATE_DATABASE")
            .output()
            .expect("viewgate runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 SQL")
    };
    let sql = run();
    assert_eq!(sql, run(), "same input, same bytes");
    let v1 = sql.find("-- version v1").expect("v1 section");
    let v2 = sql.find("-- version v2").expect("v2 section");
    assert!(v1 < v2, "versions in spec order");
    for expected in [
        "-- spec:     examples/model_metadata/viewgate.toml",
        "CREATE VIEW \"public\".\"model_metadata_v1\"",
        "WITH (security_invoker = true)",
        "(COALESCE(model_type, 'neural_network')) AS \"model_type\"",
        "CREATE OR REPLACE FUNCTION \"public\".\"model_metadata_v2_write\"()",
        "INSTEAD OF INSERT OR UPDATE OR DELETE ON \"public\".\"model_metadata_v2\"",
        "COMMENT ON VIEW \"public\".\"model_metadata_v2\" IS 'Managed by viewgate",
    ] {
        assert!(sql.contains(expected), "missing {expected:?} in:\n{sql}");
    }
}

/// `UPDATE … SET col = DEFAULT` through a view Postgres writes itself takes the view column's
/// default, which is NULL unless the view has one: v1's view carries the base table's
/// defaults, so a NOT NULL column is reset to its default, not refused (fortieth red-team
/// pass).
#[tokio::test]
async fn set_default_through_an_auto_updatable_view_writes_the_base_default() {
    let database = seeded().await;
    let v1 = database.client().await;
    exec(&v1, "INSERT INTO model_metadata_v1 (model_name, model_version, hyperparameters) VALUES ('resnet', '1.0', '{\"lr\": 0.1}')").await;
    assert_eq!(
        lines(
            &v1,
            "UPDATE model_metadata_v1 SET hyperparameters = DEFAULT RETURNING hyperparameters"
        )
        .await,
        ["{}"]
    );
}
