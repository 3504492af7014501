//! Versioned sessions through the proxy: each client's SQL lands on its version's views.
//!
//! The seed example (examples/model_metadata) is applied with the real CLI; the proxy learns
//! the versions from the catalog. A v1 and a v2 client share rows: v2 writes `model_type`, v1
//! never sees it and its rows read as 'neural_network' under v2.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::versions::{EXAMPLE, columns, connect, psql, versioned_proxy};
use common::{TestProxy, run_ok, viewgate_binary};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER};

#[test]
fn v1_and_v2_clients_share_rows_each_through_its_own_view() {
    let proxy = versioned_proxy();
    psql(&proxy, Some("v2"), "INSERT INTO model_metadata (model_name, model_version, model_type) VALUES ('bert', '1', 'transformer')").unwrap();
    psql(
        &proxy,
        None,
        "INSERT INTO model_metadata (model_name, model_version) VALUES ('mlp', '2')",
    )
    .unwrap();

    // v1 sees its five columns and both rows.
    let v1 = psql(
        &proxy,
        None,
        "SELECT * FROM model_metadata ORDER BY model_name LIMIT 1",
    )
    .unwrap();
    assert_eq!(v1.split('|').count(), 5, "{v1}");
    let error = psql(&proxy, None, "SELECT model_type FROM model_metadata").unwrap_err();
    assert!(
        error.contains("column \"model_type\" does not exist"),
        "{error}"
    );
    // v2 reads v1's row with the default type, and its own row as written.
    let v2 = psql(
        &proxy,
        Some("v2"),
        "SELECT model_name, model_type FROM model_metadata ORDER BY model_name",
    )
    .unwrap();
    assert_eq!(v2, "bert|transformer\nmlp|neural_network");
    // The base table holds what each wrote.
    assert_eq!(
        proxy.admin("SELECT model_name || ':' || coalesce(model_type, 'NULL') FROM model_metadata ORDER BY 1"),
        "bert:transformer\nmlp:NULL"
    );
    // Qualified references, RETURNING and comments survive the rewrite.
    let returned = psql(&proxy, Some("v2"), "/* app */ UPDATE public.model_metadata SET model_version = '3' WHERE model_metadata.model_name = 'mlp' RETURNING model_metadata.model_type").unwrap();
    assert_eq!(returned, "neural_network");
}

/// Found by the ninth red-team pass, against PostgreSQL 15: a `system_user` alias (a keyword
/// since 16) made the check's parser (17's grammar) reject a text the server reads, which
/// then went out with a `U&` name unrewritten; and the server's `viewgate.version`, which the
/// sync triggers read, could be set past the proxy.
#[test]
fn what_the_check_cannot_read_and_the_server_s_version_setting_are_kept_from_a_version() {
    let proxy = versioned_proxy();
    psql(&proxy, Some("v2"), "INSERT INTO model_metadata (model_name, model_version, model_type) VALUES ('bert', '1', 'secret_type')").unwrap();
    let error = psql(
        &proxy,
        Some("v1"),
        r#"SELECT m::text FROM (SELECT 1) system_user, U&"model\005fmetadata" m"#,
    )
    .unwrap_err();
    assert!(
        error.contains("parser rejects it") && !error.contains("secret_type"),
        "{error}"
    );
    for sql in [
        "SET \"viewgate\".version = 'viewgate_backfill'",
        "SELECT set_config('viewgate.version', 'viewgate_backfill', false)",
        "SET viewgate.version = 'viewgate_backfill'; SELECT 1",
    ] {
        let error = psql(&proxy, Some("v1"), sql).unwrap_err();
        assert!(error.contains("cannot rewrite"), "{sql}: {error}");
    }
    let server = psql(
        &proxy,
        Some("v1"),
        "SELECT coalesce(current_setting('viewgate.version', true), '')",
    )
    .unwrap();
    assert_ne!(server, "viewgate_backfill");
    assert_eq!(
        psql(&proxy, Some("v1"), "SHOW viewgate.version").unwrap(),
        "v1"
    );
}

/// A NOT NULL or CHECK violation's detail prints the failing base row whole, hidden columns
/// included, and a unique violation's the key: a versioned client gets a note in place of a
/// row, and of a key with a column its version does not see; the message and SQLSTATE stand.
/// The thirty-second red-team pass: the view's name was spliced against an alias written
/// right after a quoted name (`"model_metadata"_1` became one name, another version's view
/// where versions are called `v1` and `v1_1`), and an alias put inside `ONLY (…)`. Postgres
/// runs what it is sent, with the version's columns.
#[test]
fn a_spliced_view_name_keeps_its_neighbours_apart() {
    let proxy = versioned_proxy();
    proxy.admin("INSERT INTO model_metadata (model_name, model_version, model_type) VALUES ('m', '1', 'HIDDEN')");
    for sql in [
        "SELECT to_jsonb(_1) ?| array['model_type', 'schema_version'] FROM \"model_metadata\"_1",
        "SELECT to_jsonb(model_metadata) ?| array['model_type', 'schema_version'] FROM\"model_metadata\"",
        "SELECT to_jsonb(model_metadata) ?| array['model_type', 'schema_version'] FROM ONLY(model_metadata)",
    ] {
        assert_eq!(psql(&proxy, Some("v1"), sql).as_deref(), Ok("f"), "{sql}");
    }
}

#[test]
fn a_constraint_violation_does_not_show_a_version_the_base_row() {
    let proxy = versioned_proxy();
    psql(&proxy, Some("v2"), "INSERT INTO model_metadata (model_name, model_version, model_type) VALUES ('bert', '1', 'secret_type')").unwrap();
    proxy.admin(
        "ALTER TABLE model_metadata ADD CONSTRAINT short_name CHECK (length(model_name) < 10)",
    );
    let error = psql(
        &proxy,
        None,
        "UPDATE model_metadata SET model_name = 'a-much-longer-name' WHERE model_name = 'bert'",
    )
    .unwrap_err();
    assert!(
        error.contains("violates check constraint \"short_name\"")
            && error.contains("the failing row is the base table's")
            && !error.contains("secret_type"),
        "{error}"
    );
    let error = psql(
        &proxy,
        None,
        "INSERT INTO model_metadata (model_name, model_version) VALUES (NULL, '1')",
    )
    .unwrap_err();
    assert!(
        error.contains("violates not-null constraint")
            && error.contains("the failing row is the base table's"),
        "{error}"
    );
    // A key the version sees stands; one with a column it does not see is not shown.
    proxy.admin("CREATE UNIQUE INDEX one_version ON model_metadata (model_version)");
    let error = psql(
        &proxy,
        None,
        "INSERT INTO model_metadata (model_name, model_version) VALUES ('mlp', '1')",
    )
    .unwrap_err();
    assert!(
        error.contains("DETAIL:  Key (model_version)=(1) already exists."),
        "{error}"
    );
    proxy.admin(
        "DROP INDEX one_version;
         CREATE UNIQUE INDEX one_type ON model_metadata (model_name, model_type) NULLS NOT DISTINCT",
    );
    let insert = "INSERT INTO model_metadata (model_name, model_version) VALUES ('mlp', '2')";
    psql(&proxy, None, insert).unwrap();
    let error = psql(&proxy, None, insert).unwrap_err();
    assert!(
        error.contains("duplicate key value violates unique constraint \"one_type\"")
            && error.contains("the key is the base table's")
            && !error.contains("model_type"),
        "{error}"
    );
    // A view's check option (the ninth red-team pass): Postgres names no table, and the row is
    // the base table's whole when the view is over the version's view.
    let error = psql(
        &proxy,
        None,
        "CREATE TEMP VIEW checked AS SELECT * FROM model_metadata_v1 WHERE model_name <> 'zz' WITH CHECK OPTION; \
         UPDATE checked SET model_name = 'zz' WHERE model_name = 'bert'",
    )
    .unwrap_err();
    assert!(
        error.contains("violates check option")
            && error.contains("the failing row is the base table's")
            && !error.contains("secret_type"),
        "{error}"
    );
    // Straight to Postgres the detail is there, hidden column and all.
    let direct = proxy
        .cluster
        .psql(
            "postgres",
            "UPDATE model_metadata SET model_name = 'a-much-longer-name' WHERE model_name = 'bert'",
        )
        .map_err(|e| e.to_string());
    assert!(
        direct.as_ref().is_err_and(|e| e.contains("secret_type")),
        "{direct:?}"
    );
}

/// How many times a read is tried until it runs while parallel workers do.
const PARALLEL_READ_ATTEMPTS: usize = 20;

/// `items` at a trigger-backed v1 (an expression column written back) that hides
/// `secret_code`, filled by a hidden default.
fn hidden_column_behind_triggers() -> TestProxy {
    common::versions::proxy_with_spec(
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL UNIQUE,
                             secret_code text NOT NULL, kind text)",
        r#"
[[tables]]
name = "items"
schema = "public"

[[versions]]
name = "v1"
[[versions.tables]]
base = "items"
columns = ["id", "name", { name = "label", expr = "upper(kind)", write = { kind = "lower(NEW.label)" } }]
hidden_defaults = { secret_code = "'hidden-default'::text" }
"#,
    )
}

/// At a trigger-backed version an upsert goes to the base table with the version's mapping
/// spelled out, and Postgres shows a session the text it received: `current_query()`, its own
/// `pg_stat_activity` row, its parallel workers', its prepared statements and cursors (the
/// forty-fifth and forty-sixth red-team passes). They read NULL there; the rest of those
/// relations stands (a pool's health check by pid).
#[test]
fn a_session_does_not_read_its_own_rewritten_statement() {
    let proxy = hidden_column_behind_triggers();
    let upsert = "INSERT INTO items (name, label) VALUES ('a', 'X')
                  ON CONFLICT (name) DO UPDATE SET label = excluded.label";
    for (reader, expected) in [
        (format!("{upsert} RETURNING current_query() IS NULL"), "t"),
        (
            format!(
                "{upsert}; SELECT count(*) || ':' || count(query) FROM pg_stat_activity
                  WHERE pid = pg_backend_pid()"
            ),
            "1:0",
        ),
        (
            format!(
                "{upsert}; SELECT count(*) FILTER (WHERE query IS NULL)
                  FROM pg_catalog.pg_stat_get_activity(pg_backend_pid())"
            ),
            "1",
        ),
        (
            format!(
                "{upsert}; SELECT count(*) FROM pg_stat_get_backend_idset() b
                  WHERE pg_stat_get_backend_pid(b) = pg_backend_pid()
                    AND pg_stat_get_backend_activity(b) IS NULL"
            ),
            "1",
        ),
        (
            format!(
                "PREPARE p AS {upsert};
                 SELECT string_agg(name || ':' || coalesce(statement, '-'), ',')
                   FROM pg_prepared_statements"
            ),
            "p:-",
        ),
        // A cursor keeps the whole query string it was declared in.
        (
            format!(
                "BEGIN; {upsert}; DECLARE c CURSOR FOR SELECT 1;
                 SELECT string_agg(name || ':' || coalesce(statement, '-'), ',') FROM pg_cursors;
                 SELECT string_agg(name || ':' || coalesce(statement, '-'), ',') FROM pg_cursor();
                 COMMIT"
            ),
            "c:-\nc:-",
        ),
        (
            format!(
                "PREPARE p AS {upsert};
                 SELECT string_agg(name || ':' || coalesce(statement, '-'), ',')
                   FROM pg_prepared_statement()"
            ),
            "p:-",
        ),
    ] {
        let read = psql(&proxy, Some("v1"), &reader);
        assert_eq!(read.as_deref(), Ok(expected), "{reader}");
    }
    // A parallel worker shows its leader's text (the forty-sixth red-team pass): read in a
    // subquery the leader runs for the first row while the workers of the Gather below it
    // scan. Correlated, so that it is not an InitPlan, which a Gather evaluates before it
    // starts its workers; over pg_operator, which has no substitute (over pg_attribute's, read
    // through PL/pgSQL functions since 2026-12-08, no read found the workers any more).
    // Whether the read finds them running is timing, so it is tried until it does: on 15
    // within a few tries; on 17 twenty tries never showed them (the check then holds for no
    // row).
    let parallel_read = format!(
        "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
         SET min_parallel_table_scan_size = 0; SET parallel_leader_participation = off;
         {upsert};
         SELECT (SELECT count(*) || ':' || count(query) FROM pg_stat_activity
                  WHERE leader_pid = pg_backend_pid() AND pid <> pg_backend_pid()
                    AND o.oid IS NOT NULL)
           FROM pg_operator o WHERE pg_sleep(0.0001) IS NOT NULL LIMIT 1"
    );
    let saw_workers = (0..PARALLEL_READ_ATTEMPTS).any(|_| {
        let read = psql(&proxy, Some("v1"), &parallel_read).unwrap();
        let (workers, texts) = read.split_once(':').unwrap();
        assert_eq!(texts, "0", "a worker's text was read: {read}");
        workers != "0"
    });
    let major: u32 = proxy
        .admin("SHOW server_version_num")
        .parse::<u32>()
        .unwrap()
        / 10_000;
    assert!(
        saw_workers || major >= 17,
        "no read found the parallel workers running"
    );
    // Straight to Postgres, the text is there.
    let direct = proxy.cluster.psql(
        "postgres",
        "INSERT INTO items_v1 (name, label) VALUES ('b', 'X') RETURNING current_query()",
    );
    assert!(
        direct
            .as_ref()
            .is_ok_and(|text| text.contains("INSERT INTO items_v1")),
        "{direct:?}"
    );
}

/// A trigger-backed version's write trigger runs a statement on the base table, and Postgres
/// quotes it whole in an error's CONTEXT: hidden columns, hidden defaults and write
/// expressions (the forty-fourth red-team pass). The version is told the function's name in
/// its place; the message, the detail and the frames of its own code stand.
#[test]
fn an_error_inside_a_write_trigger_does_not_quote_its_statement() {
    let proxy = hidden_column_behind_triggers();
    psql(
        &proxy,
        Some("v1"),
        "INSERT INTO items (name, label) VALUES ('a', 'X'), ('b', 'X')",
    )
    .unwrap();
    for sql in [
        "INSERT INTO items (name, label) VALUES ('a', 'Y')",
        "UPDATE items SET name = 'a', label = 'Z' WHERE name = 'b'",
        "DO $$ BEGIN INSERT INTO items_v1 (name) VALUES ('a'); END $$",
    ] {
        let error = psql(&proxy, Some("v1"), sql).expect_err(sql);
        assert!(
            error.contains("duplicate key value violates unique constraint \"items_name_key\"")
                && error.contains("CONTEXT:  PL/pgSQL function items_v1_write(), the write trigger of this version's view")
                && !error.contains("secret_code")
                && !error.contains("hidden-default")
                && !error.contains("lower("),
            "{sql}: {error}"
        );
        if sql.starts_with("DO") {
            assert!(
                error.contains("inline_code_block"),
                "the client's own frame stands: {error}"
            );
        }
    }
    // The caught error's context is the same stack: a body may not read it (the forty-fifth
    // red-team pass).
    let error = psql(
        &proxy,
        Some("v1"),
        "DO $$ DECLARE c text; BEGIN INSERT INTO items_v1 (name) VALUES ('a');
         EXCEPTION WHEN others THEN GET STACKED DIAGNOSTICS c = PG_EXCEPTION_CONTEXT; RAISE NOTICE '%', c; END $$",
    )
    .unwrap_err();
    assert!(
        error.contains("viewgate cannot rewrite this statement") && !error.contains("secret_code"),
        "{error}"
    );
    // The trigger's search_path is pinned: a type of the session's own making does not take
    // over the mapping's `::text` (which failed, quoting the statement as the internal query).
    assert_eq!(
        psql(
            &proxy,
            Some("v1"),
            "CREATE TYPE pg_temp.text AS ENUM ('a');
             INSERT INTO items (name, label) VALUES ('c', 'X') RETURNING name",
        )
        .as_deref(),
        Ok("c")
    );
    assert_eq!(
        proxy.admin("SELECT secret_code FROM items WHERE name = 'c'"),
        "hidden-default"
    );
    // Straight to Postgres the statement is there.
    let direct = proxy
        .cluster
        .psql(
            "postgres",
            "INSERT INTO items_v1 (name, label) VALUES ('a', 'Y')",
        )
        .map_err(|e| e.to_string());
    assert!(
        direct.as_ref().is_err_and(|e| e.contains("secret_code")),
        "{direct:?}"
    );
}

#[test]
fn versions_are_declared_shown_and_refused_when_unknown() {
    let proxy = versioned_proxy();
    assert_eq!(
        psql(&proxy, Some("v2"), "SHOW viewgate.version").unwrap(),
        "v2"
    );
    // SET switches the session (outside a transaction, at once).
    let switched = proxy
        .psql(&proxy.conninfo())
        .args([
            "-c",
            "SET viewgate.version = 'v2'",
            "-c",
            "SELECT count(*) FROM pg_class WHERE false",
            "-c",
            "SHOW viewgate.version",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&switched.stdout)
            .trim()
            .lines()
            .last(),
        Some("v2")
    );
    // Unknown versions: refused at SET (the session goes on) and at startup.
    let error = psql(&proxy, None, "SET viewgate.version = 'v9'").unwrap_err();
    assert!(
        error.contains("unknown viewgate version \"v9\"; known versions: v1, v2"),
        "{error}"
    );
    let error = psql(&proxy, Some("v9"), "SELECT 1").unwrap_err();
    assert!(error.contains("unknown viewgate version \"v9\""), "{error}");
    let error = psql(&proxy, None, "SET LOCAL viewgate.version = 'v2'").unwrap_err();
    assert!(
        error.contains("SET LOCAL viewgate.version is not supported"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_change_waits_for_the_transaction_to_end() {
    let proxy = versioned_proxy();
    let client = connect(&proxy).await;
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("SET viewgate.version = 'v2'")
        .await
        .unwrap();
    assert_eq!(
        columns(&client).await,
        5,
        "inside the transaction: still v1"
    );
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(columns(&client).await, 7, "after COMMIT: v2");
    client
        .batch_execute("RESET viewgate.version")
        .await
        .unwrap();
    assert_eq!(columns(&client).await, 5, "RESET: back to the default");
}

#[test]
fn text_in_another_client_encoding_is_rewritten_when_ascii_and_refused_otherwise() {
    let proxy = versioned_proxy();
    proxy.admin("INSERT INTO model_metadata (model_name, model_version) VALUES ('bert', '1')");
    let latin1 = |sql: &str| {
        let conninfo = format!("{} client_encoding=LATIN1", proxy.conninfo());
        let output = proxy.psql(&conninfo).args(["-c", sql]).output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
        if output.status.success() {
            Ok(text(&output.stdout))
        } else {
            Err(text(&output.stderr))
        }
    };
    // Pure ASCII reads the same in every encoding: rewritten (v1's five columns).
    let row = latin1("SELECT * FROM model_metadata WHERE model_name = 'bert'").unwrap();
    assert_eq!(row.split('|').count(), 5, "{row}");
    // Non-ASCII text in LATIN1 naming a managed table: refused, never sent to the base table.
    let error = latin1("SELECT * FROM model_metadata WHERE model_name <> 'é'").unwrap_err();
    assert!(
        error.contains("client_encoding is not UTF8") && error.contains("version v1"),
        "{error}"
    );
    // So is one the rewriter would have read for what it may hide or substitute (the seventh
    // red-team pass read base rows through a name spelled with Unicode escapes, which the
    // bytes do not spell), or for a catalog relation the version reads through a substitute.
    for sql in [
        r#"SELECT 'é', m::text FROM public.U&"\006Dodel\005Fmetadata" m"#,
        "SELECT 'é', attname FROM pg_attribute WHERE attname = 'x'",
    ] {
        let error = latin1(sql).unwrap_err();
        assert!(
            error.contains("client_encoding is not UTF8"),
            "{sql}: {error}"
        );
    }
    // Non-ASCII text that names no managed table is forwarded.
    assert!(latin1("SELECT 'é' AS x").is_ok());
    // After SET client_encoding (reported by Postgres), UTF-8 text is read again.
    let conninfo = format!("{} client_encoding=LATIN1", proxy.conninfo());
    let output = proxy
        .psql(&conninfo)
        .args([
            "-c",
            "SET client_encoding = 'UTF8'",
            "-c",
            "SELECT * FROM model_metadata WHERE model_name <> 'é'",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout.trim().split('|').count(), 5, "{stdout}");
}

/// What `SHOW viewgate.version` answers the session.
async fn show(client: &tokio_postgres::Client) -> String {
    let rows = client.simple_query("SHOW viewgate.version").await.unwrap();
    rows.iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

/// A setting's value bound as a parameter (Django's server-side binding of
/// `SET viewgate.version = %s`) is no statement Postgres's grammar reads: the client gets
/// Postgres's own syntax error, as straight to Postgres, not viewgate's long refusal of a
/// setting it cannot follow; nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn a_setting_bound_as_a_parameter_gets_postgres_syntax_error() {
    let proxy = versioned_proxy();
    let client = connect(&proxy).await;
    for sql in [
        "SET viewgate.version = $1",
        "SET standard_conforming_strings = $1",
        "SET client_min_messages TO $1",
    ] {
        let error = client.execute(sql, &[&"v2"]).await.unwrap_err();
        let error = error.as_db_error().expect(sql);
        assert_eq!(error.code().code(), "42601", "{sql}");
        assert_eq!(error.message(), "syntax error at or near \"$1\"", "{sql}");
    }
    assert_eq!(show(&client).await, "v1");
    assert_eq!(columns(&client).await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_set_in_a_transaction_that_rolls_back_is_undone() {
    let proxy = versioned_proxy();
    let client = connect(&proxy).await;
    // Rolled back: as Postgres undoes its own setting, viewgate undoes the version.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("SET viewgate.version = 'v2'")
        .await
        .unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(columns(&client).await, 5, "after ROLLBACK: still v1");
    assert_eq!(show(&client).await, "v1");
    // A block that failed and is ended with COMMIT rolls back too.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("SET viewgate.version = 'v2'")
        .await
        .unwrap();
    assert!(client.batch_execute("SELECT 1/0").await.is_err());
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(columns(&client).await, 5, "after a failed block: still v1");
    // Through the extended protocol (Parse, Bind, Execute, Sync), committed: it stands.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute("SET viewgate.version = 'v2'", &[])
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(columns(&client).await, 7, "after COMMIT: v2");
    // RESET in a block that rolls back: v2 stays.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("RESET viewgate.version")
        .await
        .unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        columns(&client).await,
        7,
        "the RESET was rolled back: still v2"
    );
    assert_eq!(show(&client).await, "v2");
    // Outside a block a SET stands at once, and later rollbacks do not touch it.
    client
        .batch_execute("SET viewgate.version = 'v1'")
        .await
        .unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(columns(&client).await, 5);
    // A query string outside a block is one implicit transaction: an error anywhere in it
    // undoes a SET before it, and skips one after it.
    for failing in [
        "SET viewgate.version = 'v2'; SELECT 1/0",
        "SELECT 1/0; SET viewgate.version = 'v2'",
    ] {
        assert!(client.batch_execute(failing).await.is_err(), "{failing}");
        assert_eq!(columns(&client).await, 5, "{failing}");
        assert_eq!(show(&client).await, "v1", "{failing}");
    }
}

#[test]
fn unparseable_statements_naming_a_managed_table_are_refused_with_42601() {
    let proxy = versioned_proxy();
    // Neither sqlparser nor Postgres's parser reads it: refused by viewgate, with the position.
    let error = psql(
        &proxy,
        None,
        "SELECT * FROM ROWS FROM (generate_series(1, 2)) AS g, model_metadata WHERE",
    )
    .unwrap_err();
    assert!(
        error.contains("viewgate cannot rewrite this statement for version v1"),
        "{error}"
    );
    assert!(error.contains("at character"), "{error}");
    // DDL passes through to the base table.
    psql(
        &proxy,
        None,
        "CREATE INDEX model_metadata_name ON model_metadata (model_name)",
    )
    .unwrap();
    assert_eq!(
        proxy.admin("SELECT count(*) FROM pg_indexes WHERE indexname = 'model_metadata_name'"),
        "1"
    );
}

/// A table made from a query holds the columns the client's version sees (as `SELECT …
/// INTO` does); a view's definition over a managed table is refused with the way to build
/// it, and one over the version's view by name is created as written.
#[test]
fn a_table_from_a_query_has_the_version_s_columns_and_a_view_over_the_table_is_refused() {
    let proxy = versioned_proxy();
    psql(
        &proxy,
        None,
        "INSERT INTO model_metadata (model_name, model_version) VALUES ('mlp', '1')",
    )
    .unwrap();
    psql(
        &proxy,
        None,
        "CREATE TABLE snapshot AS SELECT * FROM model_metadata; CREATE TEMP TABLE t AS TABLE model_metadata",
    )
    .unwrap();
    let snapshot_columns = "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
         WHERE attrelid = 'snapshot'::regclass AND attnum > 0";
    let base_columns = proxy.admin(
        "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
         WHERE attrelid = 'model_metadata'::regclass AND attnum > 0",
    );
    assert!(base_columns.contains("model_type"), "{base_columns}");
    let copied = proxy.admin(snapshot_columns);
    assert!(!copied.contains("model_type"), "{copied}");
    assert_eq!(copied.split(',').count(), 5, "{copied}");
    assert_eq!(proxy.admin("SELECT model_name FROM snapshot"), "mlp");
    for refused in [
        "CREATE VIEW report AS SELECT model_name FROM model_metadata",
        "CREATE MATERIALIZED VIEW report AS SELECT * FROM public.model_metadata",
    ] {
        let error = psql(&proxy, None, refused).unwrap_err();
        assert!(
            error.contains("ERROR:  viewgate cannot rewrite this statement for version v1")
                && error.contains("public.model_metadata_v1")
                && error.contains("at character"),
            "{error}"
        );
    }
    assert_eq!(
        proxy.admin("SELECT count(*) FROM pg_class WHERE relname = 'report'"),
        "0"
    );
    psql(
        &proxy,
        None,
        "CREATE VIEW report AS SELECT model_name FROM model_metadata_v1",
    )
    .unwrap();
    assert_eq!(
        psql(&proxy, Some("v2"), "SELECT model_name FROM report").unwrap(),
        "mlp"
    );
}

/// DDL that copies a managed table's columns gets the version's (`LIKE`); DDL that would keep
/// the table's whole shape (a parent, a stored row type, a function's or DO block's body) and
/// built-ins that read a relation named in a string are refused, and nothing is created.
#[tokio::test(flavor = "multi_thread")]
async fn ddl_and_built_ins_that_would_see_the_whole_table_are_rewritten_or_refused() {
    let proxy = versioned_proxy();
    psql(
        &proxy,
        None,
        "CREATE TABLE scratch (LIKE model_metadata INCLUDING DEFAULTS)",
    )
    .unwrap();
    let attributes = |table: &str| {
        proxy.admin(&format!(
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = '{table}'::regclass AND attnum > 0"
        ))
    };
    assert_eq!(attributes("scratch"), attributes("model_metadata_v1"));
    assert!(!attributes("scratch").contains("model_type"));
    for refused in [
        "CREATE TABLE child () INHERITS (model_metadata)",
        "CREATE TABLE holder (r model_metadata)",
        "CREATE FUNCTION everything() RETURNS SETOF model_metadata LANGUAGE sql AS 'SELECT 1'",
        "CREATE FUNCTION everything() RETURNS text LANGUAGE sql AS $$ SELECT model_type FROM model_metadata $$",
        "DO $$ BEGIN RAISE NOTICE '%', (SELECT array_agg(model_type) FROM model_metadata); END $$",
        "SELECT query_to_xml('SELECT * FROM model_metadata', true, false, '')",
        "SELECT table_to_xml('model_metadata', true, false, '')",
        "SELECT schema_to_xml('public', true, false, '')",
        r#"SELECT * FROM U&"\006Dodel_metadata""#,
        // Found by a red-team pass: names spelled in escapes, SQL built at run time, a query
        // run from a string, a policy's subquery, statistics of hidden columns.
        r"CREATE FUNCTION everything() RETURNS SETOF text LANGUAGE sql AS E'SELECT model_type FROM public.model\x5fmetadata'",
        "DO $$ DECLARE r text; BEGIN EXECUTE 'SELECT string_agg(model_type, '','') FROM model' || '_metadata' INTO r; RAISE NOTICE '%', r; END $$",
        "SELECT * FROM ts_stat('SELECT to_tsvector(''simple'', model_type) FROM public.model_metadata')",
        "CREATE POLICY p ON scratch USING ((SELECT count(model_type) FROM model_metadata) > 0)",
        "CREATE TEMP VIEW statistics AS SELECT attname, histogram_bounds::text FROM pg_stats",
        // Another version's view, named explicitly.
        "SELECT model_type FROM model_metadata_v2",
        "SELECT table_to_xml('16386', true, false, '')",
        // A third pass: built-ins nested in a query text, the real catalog named in a string.
        "SELECT query_to_xml('SELECT table_to_xml(16386::oid::regclass, true, false, '''')', true, false, '')",
        "SELECT query_to_xml('SELECT histogram_bounds::text FROM pg_stats', true, false, '')",
        "SELECT table_to_xml('pg_stats', true, false, '')",
        "SELECT schema_to_xml('pg_catalog', true, false, '')",
    ] {
        let error = psql(&proxy, None, refused).unwrap_err();
        // Another version's view does not exist for the version's clients (42P01).
        let told = if refused.contains("model_metadata_v2") {
            "ERROR:  relation \"model_metadata_v2\" does not exist at version v1"
        } else {
            "ERROR:  viewgate cannot rewrite this statement for version v1"
        };
        assert!(error.contains(told), "{refused}: {error}");
    }
    assert_eq!(
        proxy.admin(
            "SELECT (SELECT count(*) FROM pg_class WHERE relname IN ('child', 'holder')) \
             + (SELECT count(*) FROM pg_proc WHERE proname = 'everything')"
        ),
        "0"
    );
    // A temporary table the proxy believes in, renamed away: a view over the name is
    // qualified with pg_temp, so Postgres cannot resolve it to the base table.
    let output = proxy
        .psql(&proxy.conninfo())
        .args([
            "-c",
            "CREATE TEMP TABLE model_metadata (x int)",
            "-c",
            "ALTER TABLE model_metadata RENAME TO gone",
            "-c",
            "CREATE TEMP VIEW vv AS SELECT * FROM model_metadata",
            "-c",
            "SELECT count(model_type) FROM vv",
        ])
        .output()
        .unwrap();
    let stale = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stale.contains("relation \"pg_temp.model_metadata\" does not exist"),
        "{stale}"
    );
    // Too long for Postgres's parser to check, with a relation sqlparser reads differently.
    let long = format!(
        "SELECT NULL::bigint, 'a', 'b', '{}', NULL, NULL, NULL UNION ALL TABLE model_metadata",
        "x".repeat(17_000)
    );
    let error = psql(&proxy, None, &long).unwrap_err();
    assert!(error.contains("longer than"), "{error}");
    // A printer called by oid alone goes to the substitutes: another version's view's
    // definition prints NULL.
    let v2_oid = proxy.admin("SELECT 'model_metadata_v2'::regclass::oid");
    assert_eq!(
        psql(
            &proxy,
            None,
            &format!("SELECT quote_nullable(pg_get_viewdef({v2_oid}))")
        )
        .unwrap(),
        "NULL"
    );
    // Through the extended protocol, with the query as a parameter: its own 42601.
    let client = connect(&proxy).await;
    let error = client
        .query_one(
            "SELECT query_to_xml($1, true, false, '')::text",
            &[&"SELECT * FROM model_metadata"],
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::SYNTAX_ERROR)
    );
    // Naming the version's view is the way, and works.
    let xml: String = client
        .query_one(
            "SELECT query_to_xml('SELECT count(*) FROM model_metadata_v1', true, false, '')::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(xml.contains("<count>"), "{xml}");
    // Under another name (found by the fourth red-team pass: an operator over ts_rewrite read
    // base rows whole, one over pg_get_viewdef printed v2's SQL): refused, nothing created.
    for sql in [
        "CREATE OPERATOR pg_temp.@@@ (LEFTARG = tsquery, RIGHTARG = text, FUNCTION = ts_rewrite)",
        "CREATE AGGREGATE pg_temp.tr(text) (SFUNC = ts_rewrite, STYPE = tsquery, INITCOND = 'x')",
        "CREATE OPERATOR pg_temp.## (RIGHTARG = oid, FUNCTION = pg_get_viewdef)",
    ] {
        let error = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::SYNTAX_ERROR),
            "{sql}"
        );
    }
    assert_eq!(
        proxy.admin(
            "SELECT count(*) FROM pg_operator WHERE oprname IN ('@@@', '##') AND oprnamespace <> 'pg_catalog'::regnamespace"
        ),
        "0"
    );
    // A body continued after a comment (found by the sixth red-team pass: one string to the
    // server, which then updated and read model_type): refused, nothing written.
    let split = "DO 'BEGIN UPDATE public.model_' -- c\n'metadata SET model_type = ''x''; END'";
    let error = client.batch_execute(split).await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::SYNTAX_ERROR),
        "{error}"
    );
    assert_eq!(
        proxy.admin("SELECT count(*) FROM public.model_metadata WHERE model_type = 'x'"),
        "0"
    );
    // Row types with columns v1 does not have: v2's view's, the base table's array type.
    for sql in [
        "SELECT json_populate_record((NULL::_model_metadata)[1], '{}')::text",
        "SELECT json_populate_record(NULL::model_metadata_v2, '{}')::text",
    ] {
        assert!(client.simple_query(sql).await.is_err(), "{sql}");
    }
    let row = client
        .query_one(
            "SELECT json_populate_record((NULL::model_metadata[])[1], '{}')::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "(,,,,)",
        "v1's row type, five columns"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prepared_statements_keep_their_version_and_new_versions_appear_without_restart() {
    let proxy = versioned_proxy();
    let client = connect(&proxy).await;
    client
        .execute(
            "INSERT INTO model_metadata (model_name, model_version) VALUES ($1, $2)",
            &[&"a", &"1"],
        )
        .await
        .unwrap();
    let under_v1 = client
        .prepare("SELECT * FROM model_metadata")
        .await
        .unwrap();
    assert_eq!(under_v1.columns().len(), 5);
    client
        .batch_execute("SET viewgate.version = 'v2'")
        .await
        .unwrap();
    let rows = client.query(&under_v1, &[]).await.unwrap();
    assert_eq!(rows[0].len(), 5, "prepared under v1, still v1");
    let under_v2 = client
        .prepare("SELECT * FROM model_metadata")
        .await
        .unwrap();
    assert_eq!(under_v2.columns().len(), 7);

    // A version applied while the proxy runs is usable at once.
    let spec = std::fs::read_to_string(Path::new(EXAMPLE).join("viewgate.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("v3.toml");
    std::fs::write(
        &spec_path,
        format!("{spec}\n[[versions]]\nname = \"v3\"\n\n[[versions.tables]]\nbase = \"model_metadata\"\ncolumns = [\"id\", \"model_name\"]\n"),
    )
    .unwrap();
    let database = proxy.cluster.url(SUPERUSER, "postgres");
    tokio::task::spawn_blocking(move || {
        run_ok(Command::new(viewgate_binary()).args([
            "views",
            "apply",
            "--spec",
            spec_path.to_str().unwrap(),
            "--database",
            &database,
        ]))
    })
    .await
    .unwrap();
    let mut columns = 0;
    for _ in 0..50 {
        if client
            .batch_execute("SET viewgate.version = 'v3'")
            .await
            .is_ok()
        {
            columns = client
                .prepare("SELECT * FROM model_metadata")
                .await
                .unwrap()
                .columns()
                .len();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(columns, 2, "v3 was not picked up within 2.5 s");
}

/// Until the catalog is read, sessions on its database are refused rather than served
/// unversioned (which would put them on the base tables); other databases are not affected.
#[test]
fn sessions_wait_for_the_catalog_instead_of_running_unversioned() {
    let unreachable = format!(
        "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
        viewgate::pg_cluster::free_port().unwrap()
    );
    let proxy = TestProxy::start_with(ClusterOptions::default(), move |config| {
        config.catalog = Some(unreachable);
    });
    let error = psql(&proxy, None, "SELECT 1").unwrap_err();
    assert!(error.contains("has not loaded its catalog"), "{error}");
    let other_database = proxy
        .psql(&format!(
            "host=127.0.0.1 port={} user={SUPERUSER} dbname=template1",
            proxy.port()
        ))
        .args(["-c", "SELECT 'served'"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&other_database.stdout).trim(),
        "served"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_to_a_savepoint_undoes_a_version_set_after_it() {
    let proxy = versioned_proxy();
    let client = connect(&proxy).await;
    // ROLLBACK TO undoes the SET made after the savepoint: v1 after the block commits.
    client.batch_execute("BEGIN; SAVEPOINT a").await.unwrap();
    client
        .batch_execute("SET viewgate.version = v2")
        .await
        .unwrap();
    client.batch_execute("ROLLBACK TO a").await.unwrap();
    assert_eq!(show(&client).await, "v1");
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(columns(&client).await, 5, "rolled back to a: still v1");
    assert_eq!(show(&client).await, "v1");
    // RELEASE keeps the value.
    client.batch_execute("BEGIN; SAVEPOINT a").await.unwrap();
    client
        .batch_execute("SET viewgate.version = v2")
        .await
        .unwrap();
    client.batch_execute("RELEASE SAVEPOINT a").await.unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(columns(&client).await, 7, "released: v2");
    // Nested, quoted names, through the extended protocol (Parse, Bind, Execute, Sync).
    client.batch_execute("BEGIN").await.unwrap();
    client.execute("SAVEPOINT a", &[]).await.unwrap();
    client
        .execute("SET viewgate.version = v1", &[])
        .await
        .unwrap();
    client.execute("SAVEPOINT \"B\"", &[]).await.unwrap();
    client
        .execute("SET viewgate.version = v2", &[])
        .await
        .unwrap();
    client
        .execute("ROLLBACK TO SAVEPOINT \"B\"", &[])
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT current_setting('viewgate.version') WHERE $1::int = 1",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "v1", "Postgres agrees");
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(columns(&client).await, 5, "rolled back to B: v1");
    client.batch_execute("BEGIN; SAVEPOINT a").await.unwrap();
    client
        .batch_execute("SET viewgate.version = v2")
        .await
        .unwrap();
    client.batch_execute("SAVEPOINT b").await.unwrap();
    client.batch_execute("ROLLBACK TO a").await.unwrap();
    // b went with the rollback to a: this fails and leaves the block failed.
    assert!(client.batch_execute("ROLLBACK TO b").await.is_err());
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(columns(&client).await, 5, "still v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_rollback_to_leaves_the_block_failed_and_its_end_restores() {
    let proxy = versioned_proxy();
    let client = connect(&proxy).await;
    // An unknown savepoint: the block fails, and its rollback puts back the pre-block v1.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("SET viewgate.version = v2")
        .await
        .unwrap();
    client.batch_execute("SAVEPOINT a").await.unwrap();
    assert!(client.batch_execute("ROLLBACK TO nosuch").await.is_err());
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(columns(&client).await, 5);
    assert_eq!(show(&client).await, "v1");
    // A SAVEPOINT refused in a failed block is not followed: ROLLBACK TO x goes to the
    // first x, before the SET, and the block then commits.
    client.batch_execute("BEGIN; SAVEPOINT x").await.unwrap();
    client
        .batch_execute("SET viewgate.version = v2")
        .await
        .unwrap();
    assert!(client.batch_execute("SELECT 1/0").await.is_err());
    assert!(client.batch_execute("SAVEPOINT x").await.is_err());
    client.batch_execute("ROLLBACK TO x").await.unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(columns(&client).await, 5, "rolled back to the first x: v1");
    // After a failed ROLLBACK TO, one to a real savepoint recovers the block.
    client.batch_execute("BEGIN; SAVEPOINT a").await.unwrap();
    assert!(client.batch_execute("ROLLBACK TO nosuch").await.is_err());
    client.batch_execute("ROLLBACK TO a").await.unwrap();
    client
        .batch_execute("SET viewgate.version = v2")
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(columns(&client).await, 7);
    assert_eq!(show(&client).await, "v2");
}

/// Nineteenth red-team pass (P2): tablefunc's `crosstab` and `connectby` and xml2's
/// `xpath_table` run SQL made of their text arguments, which Postgres reads when they run. A
/// call whose arguments may name the base table (or are not constants) is refused; over the
/// version's view they run, and show only its columns.
#[test]
fn extension_functions_that_run_sql_from_strings_cannot_read_the_base_table() {
    let proxy = versioned_proxy();
    proxy.admin(
        "CREATE EXTENSION tablefunc; \
         INSERT INTO model_metadata (model_name, model_version, model_type, schema_version) \
         VALUES ('bert', '1', 'SECRET_TYPE', 777)",
    );
    let mut refused = vec![
        "SELECT * FROM crosstab('SELECT model_type, ''k'', schema_version::text FROM model_metadata ORDER BY 1') AS ct(row_name text, c1 text)",
        "SELECT * FROM public.crosstab('SELECT model_name, ''k'', id::text FROM model_metadata_v1', 'SELECT DISTINCT model_type FROM public.model_metadata') AS ct(a text, b text)",
        "SELECT * FROM crosstab2('SELECT model_type, ''k'', ''v'' FROM model_metadata')",
        "SELECT * FROM connectby('model_metadata', 'model_type', 'schema_version::text', '777', 0) AS t(keyid text, parent_keyid text, level int)",
        "SELECT * FROM connectby('model_metadata_v1', '(SELECT max(model_type) FROM model_metadata)', 'id::text', '1', 0) AS t(keyid text, parent_keyid text, level int)",
        "SELECT * FROM connectby('model_' || 'metadata', 'model_type', 'schema_version::text', '777', 0) AS t(keyid text, parent_keyid text, level int)",
    ];
    let mut allowed = vec![
        (
            "SELECT row_name || ':' || coalesce(c1, '-') FROM crosstab('SELECT model_name, ''k'', model_version FROM model_metadata_v1 ORDER BY 1') AS ct(row_name text, c1 text)",
            "bert:1",
        ),
        (
            "SELECT keyid FROM connectby('model_metadata_v1', 'id::text', 'NULL::text', '1', 0) AS t(keyid text, parent_keyid text, level int)",
            "1",
        ),
    ];
    let xml2 = proxy.admin("SELECT count(*) FROM pg_available_extensions WHERE name = 'xml2'");
    if xml2 == "1" {
        proxy.admin("CREATE EXTENSION xml2");
        refused.push(
            "SELECT * FROM xpath_table('model_type', '''<a>''||schema_version||''</a>''', 'public.model_metadata', '/a', 'true') AS t(k text, v text)",
        );
        allowed.push((
            "SELECT k || ':' || v FROM xpath_table('model_name', '''<a>''||model_version||''</a>''', 'model_metadata_v1', '/a', 'true') AS t(k text, v text)",
            "bert:1",
        ));
    } else {
        println!("xml2 is not available on this server: xpath_table not tested");
    }
    for sql in refused {
        let error = psql(&proxy, Some("v1"), sql).unwrap_err();
        assert!(
            error.contains("ERROR:  viewgate cannot rewrite this statement for version v1")
                && !error.contains("SECRET")
                && !error.contains("777"),
            "{sql}: {error}"
        );
    }
    for (sql, expected) in allowed {
        assert_eq!(psql(&proxy, Some("v1"), sql).unwrap(), expected, "{sql}");
    }
}

/// Nineteenth red-team pass (S2): `model_metadata.model_type%TYPE` in a function's signature
/// was looked up on the base table, and Postgres's NOTICE named the hidden column's type;
/// another version's view was accepted there. The relation is the version's view now: a
/// column the version lacks fails as on the view (told of the table by its name, as a
/// versioned session's undefined column is), one it has works; another version's view is
/// refused.
#[test]
fn a_column_type_by_reference_is_the_version_s_column() {
    let proxy = versioned_proxy();
    for sql in [
        "CREATE FUNCTION pg_temp.f1(x model_metadata.model_type%TYPE) RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE FUNCTION pg_temp.f2() RETURNS public.model_metadata.schema_version%TYPE LANGUAGE sql AS 'SELECT 1'",
        "CREATE FUNCTION pg_temp.f3() RETURNS TABLE (a \"model_metadata\".\"model_type\"%TYPE) LANGUAGE sql AS 'SELECT NULL::text'",
        "DROP FUNCTION pg_temp.nope(model_metadata.schema_version%TYPE)",
    ] {
        let error = psql(&proxy, Some("v1"), sql).unwrap_err();
        assert!(
            error.contains("ERROR:  column \"")
                && error.contains("of relation \"model_metadata\" does not exist")
                && !error.contains("converted"),
            "{sql}: {error}"
        );
    }
    // `IF EXISTS` may skip a type that does not resolve, with a NOTICE; either way the
    // relation is the view.
    let output = proxy
        .psql(&format!(
            "{} options='-c viewgate.version=v1'",
            proxy.conninfo()
        ))
        .args([
            "-c",
            "DROP FUNCTION IF EXISTS public.nope(model_metadata.schema_version%TYPE)",
        ])
        .output()
        .unwrap();
    let notice = String::from_utf8_lossy(&output.stderr);
    assert!(
        notice.contains("model_metadata_v1") && !notice.contains("converted"),
        "{notice}"
    );
    assert_eq!(
        psql(
            &proxy,
            Some("v1"),
            "CREATE FUNCTION pg_temp.f4(x public.model_metadata.model_name%TYPE) RETURNS text \
             LANGUAGE sql AS 'SELECT x'; SELECT pg_temp.f4('bert')"
        )
        .unwrap(),
        "bert"
    );
    for sql in [
        "CREATE FUNCTION pg_temp.g2(x model_metadata_v2.model_type%TYPE) RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "DROP FUNCTION IF EXISTS pg_temp.g2(public.model_metadata_v2.model_type%TYPE)",
    ] {
        let error = psql(&proxy, Some("v1"), sql).unwrap_err();
        assert!(
            error.contains("model_metadata_v2\" does not exist at version v1")
                && error.contains("another version's view"),
            "{sql}: {error}"
        );
    }
}
