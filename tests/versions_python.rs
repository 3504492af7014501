//! Versioned sessions with real Python drivers: a v1 and a v2 client at the same time.
//!
//! `tests/versioning.rs` drives versions with psql and tokio-postgres; applications mostly use
//! driver features that lean on the extended protocol: server-side prepared statements
//! (psycopg's `prepare=True` / `prepare_threshold=0`, asyncpg's statement cache), pipelined
//! `executemany`, binary codecs. Each test starts a proxy over the seed example
//! (`examples/model_metadata`, default version v1), runs a script from `tests/drivers/python/`
//! with the proxy's DSN and a direct admin DSN, and requires the lines saying what passed;
//! then it checks the base table directly.

use crate::common;
use crate::deps;

use common::TestProxy;
use common::versions::versioned_proxy;
use viewgate::pg_cluster::SUPERUSER;

/// Runs `tests/drivers/python/{script} PROXY_DSN ADMIN_DSN` and returns its stdout, after
/// checking that it passed every check in `checks` and printed `done` last.
fn run_script(proxy: &TestProxy, script: &str, checks: &[&str], done: &str) -> String {
    let stdout = deps::run_python(
        script,
        &[
            proxy.url(SUPERUSER, "postgres"),
            proxy.cluster.url(SUPERUSER, "postgres"),
        ],
    );
    deps::assert_checked(&stdout, checks);
    assert!(stdout.ends_with(&format!("{done}\n")), "{stdout}");
    stdout
}

#[test]
fn psycopg3_v1_and_v2_clients_share_rows_through_their_views() {
    let proxy = versioned_proxy();
    run_script(
        &proxy,
        "versions_psycopg.py",
        &[
            "v1 SHOW viewgate.version",
            "v2 SHOW viewgate.version",
            "v2 INSERT RETURNING * columns",
            "v2 INSERT RETURNING values",
            "v1 executemany rows have NULL model_type in the base table",
            "v1 SELECT * columns (prepare=True)",
            "v1 reads v2's and its own rows",
            "v2 SELECT * columns (prepare=True)",
            "v2 reads v1's rows as neural_network",
            "v1 cannot name model_type (SQLSTATE)",
            "prepare_threshold=0: one server-side statement per client, on its view (20 executions)",
            "v2 UPDATE RETURNING of a v1 row",
            "untouched model_type stays NULL",
            "v2 UPDATE stored model_type",
            "v2 sees v1's UPDATE and keeps model_type",
            "v1 does not see v2's uncommitted row",
            "rolled back v2 row is gone",
            "v2 sees v1's committed row as neural_network",
            "v1 DELETE RETURNING * columns",
            "v2 DELETE RETURNING (through the INSTEAD OF trigger)",
            "rows left after the DELETEs, seen by v1",
            "statement prepared before SET keeps v1's columns",
            "new statement after SET gets v2's columns",
            "unprepared statement after SET gets v2's columns",
            "client-side executemany of values with backslashes, pipelined",
        ],
        "psycopg versions: all checks passed",
    );
    // What each client wrote is in the base table: v1's rows with NULL model_type.
    assert_eq!(
        proxy.admin(
            "SELECT string_agg(model_name || ':' || coalesce(model_type, 'NULL') || ':' || model_version, ',' ORDER BY model_name) FROM model_metadata"
        ),
        "pg-bert:transformer:2,pg-mlp-0:NULL:10,pg-mlp-1:cnn:1"
    );
}

#[test]
fn asyncpg_v1_and_v2_clients_share_rows_through_their_views() {
    let proxy = versioned_proxy();
    run_script(
        &proxy,
        "versions_asyncpg.py",
        &[
            "v1 SHOW viewgate.version",
            "v2 SHOW viewgate.version",
            "v2 prepared INSERT RETURNING * attributes",
            "v1 prepared INSERT RETURNING * attributes",
            "v2 RETURNING record keys",
            "v2 RETURNING values (binary jsonb)",
            "v1 RETURNING record keys",
            "base table: v1 rows have NULL model_type",
            "base table: v2 rows have model_type",
            "v1 fetch record keys",
            "v2 fetch record keys",
            "v2 reads v1's rows as neural_network",
            "v1 reads v2's jsonb",
            "v1 cannot name model_type (SQLSTATE)",
            "prepared statements reused 100 times by both clients",
            "v2 UPDATE RETURNING",
            "v2 sees v1's UPDATE of its row, model_type kept",
            "base table after UPDATEs",
            "v1 does not see v2's uncommitted row",
            "v1 sees v2's committed row",
            "rolled back DELETE: v2 still sees its rows",
            "v1 DELETE RETURNING",
            "v2 DELETE RETURNING (through the INSTEAD OF trigger)",
            "rows left, seen by v1, v2 and directly",
            "v2 SHOW viewgate.version at the end",
            "prepared before SET keeps v1's columns",
            "cached statement text keeps v1's columns",
            "new statement after SET gets v2's columns",
        ],
        "asyncpg versions: all checks passed",
    );
    // 25 + 25 + 40 inserted, 1 committed in a transaction, 20 deleted; v1's rows keep NULL
    // model_type except the two v2 set to 'cnn'.
    assert_eq!(
        proxy.admin(
            "SELECT coalesce(model_type, 'NULL'), count(*) FROM model_metadata GROUP BY 1 ORDER BY 1"
        ),
        "NULL|53\ncnn|2\ngan|1\ntransformer|15"
    );
}

/// Pipelined statements reach the proxy before Postgres answered the BEGIN in front of them;
/// a `SET viewgate.version` among them must still wait for the transaction to end.
#[test]
fn psycopg3_pipelined_version_change_waits_for_the_transaction_to_end() {
    let proxy = versioned_proxy();
    run_script(
        &proxy,
        "versions_psycopg_pipeline.py",
        &[
            "pipelined transaction: SELECT before SET at v1",
            "pipelined transaction: SELECT after SET, same transaction, still v1",
            "after COMMIT the SET applies",
            "explicit BEGIN in a pipeline: SELECT before SET at v1",
            "explicit BEGIN in a pipeline: SELECT after SET, same transaction, still v1",
            "after the pipelined COMMIT the SET applies",
        ],
        "psycopg pipeline versions: all checks passed",
    );
}

/// SQLAlchemy's reflection (`inspect`, `autoload_with`) reads `pg_catalog` with the table's
/// name bound as a parameter: each version reflects its own `model_metadata`.
#[test]
fn sqlalchemy_reflection_follows_the_version() {
    let proxy = versioned_proxy();
    let mut checks = Vec::new();
    for version in ["v1", "v2"] {
        for check in [
            "session",
            "get_columns",
            "get_table_comment",
            "column comments",
            "get_pk_constraint",
            "get_unique_constraints",
            "has_table",
            "get_table_names",
            "get_view_names",
            "autoload_with columns",
            "autoload_with primary key",
        ] {
            checks.push(format!("{version} {check}"));
        }
    }
    let checks: Vec<&str> = checks.iter().map(String::as_str).collect();
    run_script(
        &proxy,
        "reflect_sqlalchemy.py",
        &checks,
        "sqlalchemy reflection: all checks passed",
    );
}

/// asyncpg describes what it prepares and introspects unknown types (a whole-row value's
/// composite type) through `pg_type` and `pg_attribute`: each version gets its own columns.
#[test]
fn asyncpg_introspection_follows_the_version() {
    let proxy = versioned_proxy();
    let mut checks = Vec::new();
    for version in ["v1", "v2"] {
        for check in [
            "session",
            "prepared attribute types",
            "whole-row value fields",
            "whole-row value name",
            "pg_attribute by bound name",
            "pg_attribute nullability",
        ] {
            checks.push(format!("{version} {check}"));
        }
    }
    let checks: Vec<&str> = checks.iter().map(String::as_str).collect();
    run_script(
        &proxy,
        "reflect_asyncpg.py",
        &checks,
        "asyncpg introspection: all checks passed",
    );
}
