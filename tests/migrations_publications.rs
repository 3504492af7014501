//! A table a publication streams to logical subscribers: a migration that reshapes it is
//! refused before any change until the file says the subscribers are ready, since a
//! subscriber whose table lacks a streamed column stops applying (and the publisher keeps its
//! WAL); a publication with a column list streams no added column; `migrate complete` asks
//! again for its renames. Against real Postgres clusters, a real subscriber among them.

use crate::migration_support;
use crate::support;

use migration_support::{
    BASE, at, base_columns, complete_now, seeded, seeded_publisher, start_text, triggers,
    wait_until,
};
use support::exec;
use viewgate::control::migrate::MigrateError;
use viewgate::pg_cluster::{ClusterOptions, ThrowawayCluster};

const LABELLED: &str = r#"version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
column = { name = "label", type = "text", nullable = false }
up = "upper(name)"
"#;

fn ready(migration: &str) -> String {
    format!("{migration}[settings]\nsubscribers_ready = true\n")
}

fn refusal(result: Result<impl std::fmt::Debug, MigrateError>) -> String {
    match result {
        Err(error @ MigrateError::Refused { .. }) => error.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_published_table_is_refused_until_its_subscribers_are_ready() {
    let database = seeded_publisher(100).await;
    database.admin("CREATE PUBLICATION models_out FOR TABLE models");
    let columns_before = base_columns(&database);

    let refused = refusal(start_text(&database, "0002.toml", LABELLED).await);
    for expected in [
        "table public.models is streamed to logical subscribers by publication models_out",
        "the expand adds column(s) label",
        "subscribers_ready = true",
    ] {
        assert!(refused.contains(expected), "{expected} in: {refused}");
    }
    assert_eq!(base_columns(&database), columns_before, "nothing changed");
    assert_eq!(triggers(&database), "0");

    // A subscriber given the column first follows the migration: the backfill's updates and
    // a v1 client's insert reach it with the new column filled.
    let subscriber = ThrowawayCluster::start(&ClusterOptions::default()).expect("cluster starts");
    let on_subscriber = |sql: &str| subscriber.psql("postgres", sql).expect("subscriber SQL");
    on_subscriber(BASE);
    on_subscriber("ALTER TABLE models ADD COLUMN label text");
    on_subscriber(&format!(
        "CREATE SUBSCRIPTION models_in CONNECTION '{}' PUBLICATION models_out",
        database.cluster.admin_conninfo("postgres")
    ));
    // The table's copy done, its slot dropped: an inactive slot would refuse the backfill.
    wait_until("the subscriber has the table's rows", || {
        on_subscriber("SELECT count(*) FROM models") == "100"
            && on_subscriber("SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")
                == "0"
            && database.admin("SELECT count(*) FROM pg_replication_slots WHERE NOT active") == "0"
    });
    start_text(&database, "0002.toml", &ready(LABELLED))
        .await
        .expect("starts once the subscribers are said to be ready");
    let v1 = at(&database, "v1").await;
    exec(
        &v1,
        "INSERT INTO models_v1 (name, size) VALUES ('after', 1)",
    )
    .await;
    wait_until("the subscriber has every row labelled", || {
        on_subscriber("SELECT count(*) FILTER (WHERE label = upper(name)) FROM models") == "101"
    });
    assert_eq!(
        on_subscriber("SELECT apply_error_count FROM pg_stat_subscription_stats"),
        "0"
    );
    on_subscriber("DROP SUBSCRIPTION models_in");
}

#[tokio::test]
async fn a_publication_with_a_column_list_streams_no_added_column() {
    let database = seeded_publisher(20).await;
    database.admin("CREATE PUBLICATION models_out FOR TABLE models (id, name, size)");
    start_text(&database, "0002.toml", LABELLED)
        .await
        .expect("starts: the publication streams only the columns it lists");
}

#[tokio::test]
async fn complete_asks_again_for_its_renames() {
    let database = seeded(20).await;
    start_text(
        &database,
        "0002.toml",
        r#"version = "v2"
from = "v1"
[[operations]]
op = "rename_column"
table = "models"
from = "legacy_note"
to = "note"
"#,
    )
    .await
    .expect("starts: nothing is published");
    database.admin("CREATE PUBLICATION everything FOR ALL TABLES");
    let refused = refusal(complete_now(&database).await);
    for expected in [
        "publication everything",
        "the contract renames column legacy_note to note",
    ] {
        assert!(refused.contains(expected), "{expected} in: {refused}");
    }
    assert!(
        base_columns(&database).contains("legacy_note:text"),
        "nothing of the contract was done"
    );
    database.admin("DROP PUBLICATION everything");
    complete_now(&database).await.expect("completes");
    assert!(base_columns(&database).contains("note:text"));
}
