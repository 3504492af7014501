//! A partitioned table with a foreign partition (postgres_fdw's sharding): adding a column to
//! the table gives the partition's definition here the column and the remote table nothing,
//! so the backfill's writes of its rows, and every later one, would fail on the remote
//! server. Refused before any change. Against a real Postgres, with postgres_fdw reaching a
//! second database of the same cluster (Debian's contrib package; not run on the npm builds
//! of `.ci/other_postgres`, which have no postgres_fdw).

use crate::migration_support;
use crate::support::Database;

use migration_support::{one_table_at_v1, start_text};

/// The columns of `table` in `database`, in order.
fn columns(database: &Database, name: &str, table: &str) -> String {
    database
        .cluster
        .psql(
            name,
            &format!(
                "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
                  WHERE attrelid = 'public.{table}'::regclass AND attnum > 0 AND NOT attisdropped"
            ),
        )
        .expect("columns read")
}

#[tokio::test]
async fn columns_are_not_added_to_a_table_with_a_foreign_partition() {
    let database = Database::start();
    database.admin("CREATE DATABASE remote");
    database
        .cluster
        .psql(
            "remote",
            "CREATE TABLE public.models_2025 (id bigint NOT NULL, taken date NOT NULL, name text NOT NULL);
             INSERT INTO models_2025 SELECT n, DATE '2025-01-01' + n, 'old-' || n FROM generate_series(1, 20) n",
        )
        .expect("the remote table");
    database.admin(&format!(
        "CREATE EXTENSION postgres_fdw;
         CREATE SERVER remote FOREIGN DATA WRAPPER postgres_fdw
             OPTIONS (dbname 'remote', port '{}', host '{}');
         CREATE USER MAPPING FOR CURRENT_USER SERVER remote OPTIONS (user 'postgres');
         CREATE TABLE public.models (id bigint NOT NULL, taken date NOT NULL, name text NOT NULL)
             PARTITION BY RANGE (taken);
         CREATE TABLE public.models_2026 PARTITION OF models
             FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         CREATE FOREIGN TABLE public.models_2025 PARTITION OF models
             FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') SERVER remote;
         INSERT INTO models_2026 SELECT n, DATE '2026-01-01' + n, 'model-' || n FROM generate_series(1, 20) n",
        database.cluster.port(),
        database.cluster.socket_dir().display()
    ));
    assert_eq!(database.admin("SELECT count(*) FROM models"), "40");
    one_table_at_v1(&database, "models", "id", &["id", "taken", "name"]).await;

    let refused = start_text(
        &database,
        "0002.toml",
        r#"version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
column = { name = "label", type = "text" }
up = "upper(name)"
"#,
    )
    .await
    .expect_err("a foreign partition")
    .to_string();
    assert!(
        refused.contains("table public.models has partition public.models_2025, a foreign table"),
        "{refused}"
    );
    assert_eq!(columns(&database, "postgres", "models"), "id,taken,name");
    assert_eq!(columns(&database, "remote", "models_2025"), "id,taken,name");
}
