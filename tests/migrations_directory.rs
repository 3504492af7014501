//! `viewgate migrate start <directory>`, as a deploy runs it: the seed example's migrations
//! directory (its spec and schema beside the migration files) with a second migration added;
//! each file starts in the order of its number, a second run passes over what is live, and a
//! file changed since it started stops the run before anything changes.

use crate::common;

use std::process::Command;

use common::viewgate_binary;
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};

const SEED: &str = "examples/model_metadata/migrations";

const RENAME_NAME: &str = r#"version = "v3"
from = "v2"
[[operations]]
op = "rename_column"
table = "model_metadata"
from = "model_name"
to = "name"
"#;

fn viewgate(cluster: &ThrowawayCluster, args: &[&str]) -> Result<String, String> {
    let output = Command::new(viewgate_binary())
        .args(args)
        .args(["--database", &cluster.url(SUPERUSER, "postgres")])
        .output()
        .expect("viewgate runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// A cluster with the seed example's table and its spec applied: v1.
fn seeded_at_v1() -> ThrowawayCluster {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).expect("cluster starts");
    let schema = std::fs::read_to_string(format!("{SEED}/schema.sql")).expect("seed schema");
    cluster.psql("postgres", &schema).expect("schema loads");
    viewgate(
        &cluster,
        &["views", "apply", "--spec", &format!("{SEED}/viewgate.toml")],
    )
    .expect("spec applies");
    cluster
}

#[test]
fn a_directory_of_migrations_starts_in_order_and_again_passes_over_what_is_live() {
    let cluster = seeded_at_v1();
    let directory = tempfile::tempdir().expect("temp dir");
    for name in ["viewgate.toml", "schema.sql", "0002_model_type.toml"] {
        std::fs::copy(format!("{SEED}/{name}"), directory.path().join(name)).expect("copied");
    }
    let third = directory.path().join("0003_rename_name.toml");
    std::fs::write(&third, RENAME_NAME).expect("written");
    let path = directory.path().to_string_lossy().into_owned();

    let first = viewgate(&cluster, &["migrate", "start", &path]).expect("starts both");
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 2, "{first}");
    assert!(
        lines[0].starts_with("migration v1 -> v2 started: "),
        "{first}"
    );
    assert!(
        lines[1].starts_with("migration v2 -> v3 started: "),
        "{first}"
    );
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "SELECT string_agg(version || ':' || phase, ',' ORDER BY id) FROM viewgate.migrations"
            )
            .expect("reads"),
        "v2:live,v3:live"
    );

    let again = viewgate(&cluster, &["migrate", "start", &path]).expect("runs again");
    assert!(
        again.contains("v1 -> v2 already live") && again.contains("v2 -> v3 already live"),
        "{again}"
    );

    std::fs::write(&third, RENAME_NAME.replace("\"name\"", "\"title\"")).expect("written");
    let changed = viewgate(&cluster, &["migrate", "start", &path]).unwrap_err();
    assert!(changed.contains("v3"), "{changed}");
    assert!(changed.to_lowercase().contains("checksum"), "{changed}");
}

/// `migrate start --complete`, as a development or CI database is brought to the newest
/// version: each file is started and then completed, a second run passes over them, and a
/// complete refused (the older version is the default) leaves its migration live.
#[test]
fn start_complete_retires_each_older_version_and_is_refused_as_complete_is() {
    let cluster = seeded_at_v1();
    let directory = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        format!("{SEED}/0002_model_type.toml"),
        directory.path().join("0002_model_type.toml"),
    )
    .expect("copied");
    std::fs::write(directory.path().join("0003_rename_name.toml"), RENAME_NAME).expect("written");
    let path = directory.path().to_string_lossy().into_owned();
    let phases = || {
        cluster
            .psql(
                "postgres",
                "SELECT string_agg(version || ':' || phase, ',' ORDER BY id) FROM viewgate.migrations",
            )
            .expect("reads")
    };

    let first = viewgate(&cluster, &["migrate", "start", "--complete", &path]).expect("runs");
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 4, "{first}");
    assert!(
        lines[0].starts_with("migration v1 -> v2 started: "),
        "{first}"
    );
    assert!(
        lines[1].starts_with("migration to v2 completed in ") && lines[1].contains("v1 is retired"),
        "{first}"
    );
    assert!(lines[3].contains("v2 is retired"), "{first}");
    assert_eq!(phases(), "v2:completed,v3:completed");
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "SELECT string_agg(attname || ':' || attnotnull, ',' ORDER BY attnum) FROM pg_attribute
                  WHERE attrelid = 'model_metadata'::regclass AND attname IN ('name', 'model_name', 'model_type')"
            )
            .expect("reads"),
        "name:true,model_type:true",
        "the table in v3's shape"
    );
    let again = viewgate(&cluster, &["migrate", "start", "--complete", &path]).expect("again");
    assert!(
        again.contains("v1 -> v2 already completed")
            && again.contains("v2 -> v3 already completed"),
        "{again}"
    );

    viewgate(&cluster, &["cutover", "--to", "v3"]).expect("v3 is the default");
    std::fs::write(
        directory.path().join("0004_size.toml"),
        r#"version = "v4"
from = "v3"
[[operations]]
op = "add_column"
table = "model_metadata"
column = { name = "size", type = "bigint" }
"#,
    )
    .expect("written");
    let refused = viewgate(&cluster, &["migrate", "start", "--complete", &path]).unwrap_err();
    assert!(refused.contains("v3 is the default version"), "{refused}");
    assert_eq!(phases(), "v2:completed,v3:completed,v4:live");
}
