//! Python drivers through the proxy: psycopg 3 and asyncpg, as real applications use them.
//!
//! Each test starts a cluster and a proxy, then runs a script from `tests/drivers/python/`
//! with the proxy's DSN, using a venv provisioned once under `target/driver-deps/python`
//! (pinned in `tests/drivers/python/requirements.txt`). The scripts check every result and
//! exit non-zero on a mismatch; here we also require the lines saying what passed.

use crate::common;
use crate::deps;

use common::TestProxy;

/// Runs `tests/drivers/python/{script}` against the proxy and returns its stdout.
fn run_script(proxy: &TestProxy, script: &str) -> String {
    deps::run_python(script, &[proxy.url("postgres", "postgres")])
}

#[test]
fn psycopg3_prepared_pipeline_copy_binary() {
    let proxy = TestProxy::start();
    let stdout = run_script(&proxy, "psycopg_checks.py");
    deps::assert_checked(
        &stdout,
        &[
            "prepare=True reuses one server-side statement (50 executions)",
            "prepare_threshold=0 prepares statements server-side",
            "rolled back row is gone",
            "unique violation SQLSTATE",
            "pipeline results in order",
            "pipeline error SQLSTATE",
            "usable after pipeline error",
            "COPY FROM STDIN rows",
            "COPY TO STDOUT rows",
            "COPY binary last row",
            "binary result formats",
            "binary values",
            "cancel SQLSTATE",
            "cancelled promptly",
            "usable after cancel",
        ],
    );
    assert!(stdout.ends_with("psycopg: all checks passed\n"), "{stdout}");
    // What the script wrote through the proxy is in the database.
    assert_eq!(
        proxy.admin("SELECT count(*), count(*) FILTER (WHERE name LIKE 'ITEM %') FROM py_items"),
        "5020|5"
    );
}

#[test]
fn asyncpg_extended_flow_codecs_transactions_copy() {
    let proxy = TestProxy::start();
    let stdout = run_script(&proxy, "asyncpg_checks.py");
    deps::assert_checked(
        &stdout,
        &[
            "fetch rows",
            "prepared statement reused 200 times",
            "executemany rows",
            "binary codecs",
            "numeric aggregate",
            "unique violation SQLSTATE",
            "commit kept, rollback discarded",
            "copy_records_to_table",
            "copy_from_query",
            "visible to another session",
            "notifications received",
            "timeout cancelled the query promptly",
            "usable after cancel",
            "server query really stopped",
        ],
    );
    assert!(stdout.ends_with("asyncpg: all checks passed\n"), "{stdout}");
    assert_eq!(
        proxy.admin("SELECT count(*), max(id) FROM apg_items"),
        "3501|4999"
    );
}
