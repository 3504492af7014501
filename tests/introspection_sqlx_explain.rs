//! sqlx's compile-time macros at a version: after preparing a query as `sqlx_s_N` they send
//! `EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE sqlx_s_N(NULL, …)` to learn which output columns
//! an outer join may make NULL. A verbose EXPLAIN is refused at a version with managed tables
//! (its plan lists the base table's columns), so every macro failed to build through
//! viewgate; exactly sqlx's statement now gets the plan's outline from the version's
//! `explain_execute`, and the macros' reading of it matches a database of the version's shape
//! made by hand, with no base column in it. Any other verbose EXPLAIN is still refused.

use crate::common;

use common::versions::{connect_with, proxy_with_spec};
use serde_json::Value;
use tokio_postgres::{Client, NoTls};
use viewgate::pg_cluster::SUPERUSER;

const SCHEMA: &str = "
CREATE TABLE public.items (id serial PRIMARY KEY, secret text, label text NOT NULL);
CREATE TABLE public.orders (id serial PRIMARY KEY, item_id integer REFERENCES items, note text);";

/// v1 does not see `secret`; v2 calls `label` `title`.
const SPEC: &str = r#"
[[tables]]
name = "items"

[[versions]]
name = "v1"
[[versions.tables]]
base = "items"
columns = ["id", "label"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "items"
columns = ["id", "secret", { name = "title", from = "label" }]
"#;

const HANDMADE_V2: &str = "
CREATE TABLE public.items (id serial PRIMARY KEY, secret text, title text NOT NULL);
CREATE TABLE public.orders (id serial PRIMARY KEY, item_id integer REFERENCES items, note text);";

/// Queries as an application at v2 writes them in `sqlx::query!`, with their parameter count.
const QUERIES: &[(&str, usize)] = &[
    (
        "SELECT i.id, i.title, o.note FROM items i LEFT JOIN orders o ON o.item_id = i.id",
        0,
    ),
    // sqlx binds NULL to each parameter: in a WHERE clause the planner folds the scan away.
    (
        "SELECT o.id, i.title, i.secret, $1::text AS tag FROM orders o LEFT JOIN items i ON i.id = o.item_id",
        1,
    ),
    (
        "SELECT i.title, o.note, $1::int + $2::int AS total FROM items i FULL JOIN orders o ON o.item_id = i.id",
        2,
    ),
    (
        "SELECT o.note, i.title FROM items i RIGHT JOIN orders o ON o.item_id = i.id",
        0,
    ),
];

/// What sqlx 0.8's `nullables_from_explain` makes of an EXPLAIN's JSON: the top plan's
/// outputs, each marked nullable where `visit_plan` finds it under an outer join.
fn sqlx_nullables(explain: &Value) -> Vec<Option<bool>> {
    let plan = &explain[0]["Plan"];
    let Some(outputs) = plan["Output"].as_array() else {
        return Vec::new();
    };
    let mut nullables = vec![None; outputs.len()];
    visit_plan(plan, outputs, &mut nullables);
    nullables
}

fn visit_plan(plan: &Value, outputs: &[Value], nullables: &mut [Option<bool>]) {
    if let Some(plan_outputs) = plan["Output"].as_array() {
        let modifies = plan["Node Type"] == "ModifyTable";
        let outer = plan["Join Type"] == "Full" || plan["Parent Relationship"] == "Inner";
        for output in plan_outputs {
            let transition = output
                .as_str()
                .is_some_and(|o| o.starts_with("old.") || o.starts_with("new."));
            if (outer || (modifies && transition))
                && let Some(at) = outputs.iter().position(|o| o == output)
            {
                nullables[at] = Some(true);
            }
        }
    }
    if plan["Join Type"] == "Left" || plan["Join Type"] == "Right" {
        for child in plan["Plans"].as_array().into_iter().flatten() {
            visit_plan(child, outputs, nullables);
        }
    }
}

/// sqlx's two steps on `client`: prepare the query as `sqlx_s_1`, explain its execution.
async fn explain_as_sqlx(client: &Client, query: &str, parameters: usize) -> Value {
    client
        .batch_execute(&format!("DEALLOCATE ALL; PREPARE sqlx_s_1 AS {query}"))
        .await
        .unwrap_or_else(|error| panic!("{query}: {error:?}"));
    let nulls = vec!["NULL"; parameters].join(", ");
    let arguments = if parameters == 0 {
        String::new()
    } else {
        format!("({nulls})")
    };
    let explain = format!("EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE sqlx_s_1{arguments}");
    let row = client
        .query_one(&explain, &[])
        .await
        .unwrap_or_else(|error| panic!("{explain} for {query}: {error:?}"));
    assert_eq!(row.columns()[0].name(), "QUERY PLAN");
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_reads_the_same_nullability_as_from_a_table_of_the_versions_shape() {
    let proxy = proxy_with_spec(SCHEMA, SPEC);
    proxy.admin("CREATE DATABASE handmade_v2");
    proxy.cluster.psql("handmade_v2", HANDMADE_V2).unwrap();
    let (direct, connection) =
        tokio_postgres::connect(&proxy.cluster.url(SUPERUSER, "handmade_v2"), NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    let through = connect_with(&proxy, "-c%20viewgate.version%3Dv2").await;
    for (query, parameters) in QUERIES {
        let outline = explain_as_sqlx(&through, query, *parameters).await;
        let plan = explain_as_sqlx(&direct, query, *parameters).await;
        let read = sqlx_nullables(&outline);
        assert_eq!(read, sqlx_nullables(&plan), "{query}\n{outline}\n{plan}");
        assert!(
            read.contains(&Some(true)),
            "an outer join: {query}\n{outline}"
        );
        // The outline names nothing: no table, no column of the base or of the version.
        let text = outline.to_string();
        for name in ["items", "orders", "label", "title", "secret", "note"] {
            assert!(!text.contains(name), "{name} in {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_other_verbose_explain_is_refused_and_a_missing_statement_is_postgress_error() {
    let proxy = proxy_with_spec(SCHEMA, SPEC);
    let client = connect_with(&proxy, "-c%20viewgate.version%3Dv1").await;
    client
        .batch_execute("PREPARE sqlx_s_1 AS SELECT id, label FROM items")
        .await
        .unwrap();
    for refused in [
        "EXPLAIN (VERBOSE) EXECUTE sqlx_s_1",
        "EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE sqlx_s_1",
        "EXPLAIN (VERBOSE, FORMAT JSON) SELECT id, label FROM items",
        "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE sqlx_s_1; SELECT 1",
    ] {
        let error = client.simple_query(refused).await.unwrap_err();
        let message = error.as_db_error().map(|e| e.message()).unwrap_or_default();
        assert!(message.contains("EXPLAIN"), "{refused}: {message}");
    }
    let outline = explain_as_sqlx(&client, "SELECT id, label FROM items", 0).await;
    assert_eq!(outline[0]["Plan"]["Node Type"], "Seq Scan", "{outline}");
    let missing = client
        .query_one("EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE sqlx_s_9", &[])
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME),
        "{missing:?}"
    );
}
