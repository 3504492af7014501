//! Unqualified names through the proxy follow the session's search_path as Postgres resolves
//! them: a relation named `model_metadata` in a schema earlier on the path is what the client
//! reads (never the version's view), and the managed table is rewritten again once the path
//! puts its schema first. The search_path comes from the startup packet, the role's default
//! (asked of the upstream at login), `SET`, `SET LOCAL`, `RESET` and `set_config`, with
//! transaction semantics. A relation created after the proxy started is found by the
//! watcher's periodic refresh, which no notification triggers.
//!
//! The tenant tables have a `marker` column the managed table does not have, and the v1 view
//! hides the base table's `model_type`: `SELECT marker` succeeds only on a tenant table, and
//! `SELECT model_type` fails on the v1 view (and would succeed on the base table, which no
//! statement here may read unrewritten).

use crate::common;

use std::time::Duration;

use common::versions::{columns, connect, connect_with, psql, versioned_proxy};
use common::{TestProxy, wait_until};
use viewgate::config::DEFAULT_RELATION_REFRESH_INTERVAL as RELATION_REFRESH_INTERVAL;
use viewgate::pg_cluster::SUPERUSER;

/// How many columns the v1 view of the seed example has.
const V1_COLUMNS: usize = 5;
/// How many columns each tenant table has.
const TENANT_COLUMNS: usize = 2;

/// Creates `schema.model_metadata (id, marker)` holding one row marked with the schema name.
fn tenant_table(proxy: &TestProxy, schema: &str) {
    proxy.admin(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE {schema}.model_metadata (id int, marker text);
         INSERT INTO {schema}.model_metadata VALUES (1, '{schema}');
         GRANT USAGE ON SCHEMA {schema} TO PUBLIC;
         GRANT SELECT ON {schema}.model_metadata TO PUBLIC"
    ));
}

/// Runs `sql` (one psql session, each entry its own simple Query) with extra conninfo.
fn session(proxy: &TestProxy, extra: &str, sql: &[&str]) -> Result<String, String> {
    let conninfo = format!("{} {extra}", proxy.conninfo());
    let mut command = proxy.psql(&conninfo);
    for statement in sql {
        command.args(["-c", statement]);
    }
    let output = command.output().unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// A proxy with the seed example, a v1 row, and `tenant_a.model_metadata` known to it.
fn proxy_with_tenant() -> TestProxy {
    let proxy = versioned_proxy();
    psql(
        &proxy,
        None,
        "INSERT INTO model_metadata (model_name, model_version) VALUES ('base', '1')",
    )
    .unwrap();
    known_tenant_table(&proxy, "tenant_a");
    proxy
}

/// [`tenant_table`], and waits until the proxy reads it for a session whose path puts
/// `schema` first.
fn known_tenant_table(proxy: &TestProxy, schema: &str) {
    tenant_table(proxy, schema);
    // A reload now rather than at the next periodic refresh.
    proxy.admin("NOTIFY viewgate_control");
    assert!(
        wait_until(Duration::from_secs(5), || session(
            proxy,
            &format!("options='-c search_path={schema},public'"),
            &["SELECT marker FROM model_metadata"]
        )
        .is_ok_and(|out| out == schema)),
        "the proxy did not learn of {schema}.model_metadata"
    );
}

fn is_view_error(error: &str) -> bool {
    error.contains("column \"model_type\" does not exist")
}

#[test]
fn an_earlier_schema_is_read_and_the_managed_table_is_rewritten_again_after_set() {
    let proxy = proxy_with_tenant();
    let out = session(
        &proxy,
        "",
        &[
            "SET search_path = tenant_a, public",
            "SELECT marker FROM model_metadata",
            "SELECT count(*) FROM public.model_metadata WHERE model_name = 'base'",
            "SET search_path = public",
            "SELECT model_name FROM model_metadata",
        ],
    )
    .unwrap();
    assert_eq!(out, "tenant_a\n1\nbase");
    // After SET back, the unqualified name is the v1 view again (model_type hidden).
    let error = session(
        &proxy,
        "",
        &[
            "SET search_path = tenant_a, public",
            "SET search_path = public",
            "SELECT model_type FROM model_metadata",
        ],
    )
    .unwrap_err();
    assert!(is_view_error(&error), "{error}");
    // RESET returns to the session's start value; DEFAULT too.
    let out = session(
        &proxy,
        "options='-c search_path=tenant_a,public'",
        &[
            "SET search_path = public",
            "SELECT model_name FROM model_metadata",
            "RESET search_path",
            "SELECT marker FROM model_metadata",
            "SELECT pg_catalog.set_config('search_path', 'public', false)",
            "SELECT model_name FROM model_metadata",
            "SET search_path TO DEFAULT",
            "SELECT marker FROM model_metadata",
        ],
    )
    .unwrap();
    assert_eq!(out, "base\ntenant_a\npublic\nbase\ntenant_a");
    // Within one query string, a SET applies to the statements after it.
    let out = session(
        &proxy,
        "",
        &["SELECT model_name FROM model_metadata; SET search_path = tenant_a, public; SELECT marker FROM model_metadata"],
    )
    .unwrap();
    assert_eq!(out, "base\ntenant_a");
}

/// A change of the path the proxy cannot see (here inside a function created over a direct
/// connection: a DO block or function body sent through the proxy that may change the path
/// is refused, `tests/introspection.rs`) never lets the name as written reach the base table:
/// a name the proxy believes no schema holds is still rewritten to the view, which Postgres
/// then finds on the real path, or nothing.
#[test]
fn a_path_changed_where_the_proxy_cannot_see_never_reaches_the_base_table() {
    let proxy = proxy_with_tenant();
    proxy.admin(
        "CREATE FUNCTION public.use_public_path() RETURNS void LANGUAGE sql
         AS $$ SELECT pg_catalog.set_config('search_path', 'public', false) $$",
    );
    let hidden_change = "SELECT public.use_public_path()";
    let error = session(
        &proxy,
        "options='-c search_path=nowhere'",
        &[hidden_change, "SELECT model_type FROM model_metadata"],
    )
    .unwrap_err();
    assert!(is_view_error(&error), "{error}");
    let out = session(
        &proxy,
        "options='-c search_path=nowhere'",
        &[hidden_change, "SELECT model_name FROM model_metadata"],
    )
    .unwrap();
    assert_eq!(out, "base");
    // Without the hidden change nothing on the path holds the view either: Postgres says so.
    let error = session(
        &proxy,
        "options='-c search_path=nowhere'",
        &["SELECT model_name FROM model_metadata"],
    )
    .unwrap_err();
    assert!(error.contains("does not exist"), "{error}");
}

/// Postgres searches a session's temporary schema first: after `CREATE TEMP TABLE
/// model_metadata`, the unqualified name is that table (reads and writes), the qualified one
/// still the version's view, and a drop or a rollback brings the view back. No relation of
/// the name exists outside the managed schema, so nothing else is followed here.
#[test]
fn the_session_s_own_temporary_table_is_read_and_written_before_the_view() {
    let proxy = versioned_proxy();
    psql(
        &proxy,
        None,
        "INSERT INTO model_metadata (model_name, model_version) VALUES ('base', '1')",
    )
    .unwrap();
    let out = session(
        &proxy,
        "",
        &[
            "CREATE TEMP TABLE model_metadata (id int, marker text)",
            "INSERT INTO model_metadata VALUES (1, 'temporary')",
            "SELECT marker FROM model_metadata",
            "SELECT model_name FROM public.model_metadata",
            "UPDATE model_metadata SET marker = 'updated' RETURNING marker",
            "DROP TABLE model_metadata",
            "SELECT model_name FROM model_metadata",
        ],
    )
    .unwrap();
    assert_eq!(out, "temporary\nbase\nupdated\nbase");
    assert_eq!(
        proxy.admin("SELECT count(*) || ':' || min(model_name) FROM public.model_metadata"),
        "1:base"
    );
    // Made in a block that rolls back, or ON COMMIT DROP: gone after it.
    for made in [
        [
            "BEGIN",
            "CREATE TEMP TABLE model_metadata (marker text)",
            "ROLLBACK",
        ],
        [
            "BEGIN",
            "CREATE TEMP TABLE model_metadata (marker text) ON COMMIT DROP",
            "COMMIT",
        ],
    ] {
        let mut statements = made.to_vec();
        statements.push("SELECT model_name FROM model_metadata");
        assert_eq!(session(&proxy, "", &statements).unwrap(), "base");
    }
    // Made in a query string that fails: rolled back with it, the view read after.
    let output = proxy
        .psql(&proxy.conninfo())
        .args(["-v", "ON_ERROR_STOP=0"])
        .args([
            "-c",
            "CREATE TEMP TABLE model_metadata (marker text); SELECT 1/0",
        ])
        .args(["-c", "SELECT model_name FROM model_metadata"])
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(out.trim(), "base", "{err}");
    assert!(err.contains("division by zero"), "{err}");
    // SELECT … INTO TEMP in one query string with the statement that reads it.
    let out = session(
        &proxy,
        "",
        &["SELECT 'copied' AS marker INTO TEMP model_metadata; SELECT marker FROM model_metadata"],
    )
    .unwrap();
    assert_eq!(out, "copied");
}

#[test]
fn a_set_in_a_rolled_back_transaction_is_undone_and_set_local_ends_at_commit() {
    let proxy = proxy_with_tenant();
    let error = session(
        &proxy,
        "",
        &[
            "BEGIN",
            "SET search_path = tenant_a, public",
            "SELECT marker FROM model_metadata",
            "ROLLBACK",
            "SELECT model_type FROM model_metadata",
        ],
    )
    .unwrap_err();
    assert!(is_view_error(&error), "{error}");
    let out = session(
        &proxy,
        "",
        &[
            "BEGIN",
            "SET search_path = tenant_a, public",
            "SELECT marker FROM model_metadata",
            "ROLLBACK",
            "SELECT model_name FROM model_metadata",
            "BEGIN",
            "SET search_path = tenant_a, public",
            "COMMIT",
            "SELECT marker FROM model_metadata",
        ],
    )
    .unwrap();
    assert_eq!(out, "tenant_a\nbase\ntenant_a");
    let out = session(
        &proxy,
        "",
        &[
            "BEGIN",
            "SET LOCAL search_path = tenant_a, public",
            "SELECT marker FROM model_metadata",
            "COMMIT",
            "SELECT model_name FROM model_metadata",
            "BEGIN",
            "SELECT set_config('search_path', 'tenant_a, public', true)",
            "SELECT marker FROM model_metadata",
            "ROLLBACK",
            "SELECT model_name FROM model_metadata",
        ],
    )
    .unwrap();
    assert_eq!(out, "tenant_a\nbase\ntenant_a, public\ntenant_a\nbase");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_extended_protocol_and_the_rewrite_cache_keep_sessions_apart() {
    let proxy = proxy_with_tenant();
    let tenant = connect_with(&proxy, "-c%20search_path%3Dtenant_a,public").await;
    let plain = connect(&proxy).await;
    // The same text, prepared alternately: each session gets its own resolution.
    for _ in 0..3 {
        assert_eq!(columns(&tenant).await, TENANT_COLUMNS);
        assert_eq!(columns(&plain).await, V1_COLUMNS);
    }
    // SET through the extended protocol.
    plain
        .execute("SET search_path TO tenant_a, public", &[])
        .await
        .unwrap();
    assert_eq!(columns(&plain).await, TENANT_COLUMNS);
    tenant
        .execute("SET search_path TO public", &[])
        .await
        .unwrap();
    assert_eq!(columns(&tenant).await, V1_COLUMNS);
}

/// Postgres parses a prepared statement again when the search_path changed since it was
/// planned; so does the proxy, at the session's next quiet message (a hidden Close and
/// Parse of the text rewritten under the new path). The two tenant tables have the same
/// row, so Postgres itself runs the statement on the new path's table.
/// Found by the eighth red-team pass: a statement prepared again after a search_path change
/// was sent as its UTF-8 text in a session that had since switched to SJIS (where `Á\'`
/// swallows the backslash) and read the base rows. A text that would read otherwise now keeps
/// its first preparation.
#[tokio::test(flavor = "multi_thread")]
async fn a_statement_that_would_read_otherwise_is_not_prepared_again() {
    let proxy = proxy_with_tenant();
    known_tenant_table(&proxy, "tenant_b");
    let client = connect_with(&proxy, "-c%20search_path%3Dtenant_a,public").await;
    let ascii = client
        .prepare("SELECT marker FROM model_metadata")
        .await
        .unwrap();
    let non_ascii = client
        .prepare("SELECT marker FROM model_metadata WHERE marker <> E'é\\\\'")
        .await
        .unwrap();
    let marker = |rows: Vec<tokio_postgres::Row>| rows[0].get::<_, String>(0);
    client
        .batch_execute("SET client_encoding = 'LATIN1'; SET search_path = tenant_b, public")
        .await
        .unwrap();
    assert_eq!(marker(client.query(&ascii, &[]).await.unwrap()), "tenant_b");
    assert_eq!(
        marker(client.query(&non_ascii, &[]).await.unwrap()),
        "tenant_a",
        "kept as first prepared"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prepared_statement_follows_a_later_search_path_change() {
    let proxy = proxy_with_tenant();
    known_tenant_table(&proxy, "tenant_b");
    let client = connect_with(&proxy, "-c%20search_path%3Dtenant_a,public").await;
    let statement = client
        .prepare("SELECT marker FROM model_metadata")
        .await
        .unwrap();
    let marker = |rows: Vec<tokio_postgres::Row>| rows[0].get::<_, String>(0);
    assert_eq!(
        marker(client.query(&statement, &[]).await.unwrap()),
        "tenant_a"
    );
    client
        .batch_execute("SET search_path = tenant_b, public")
        .await
        .unwrap();
    assert_eq!(
        marker(client.query(&statement, &[]).await.unwrap()),
        "tenant_b"
    );
    // Twice, and with parameters: prepared once per change, kept after.
    let by_id = client
        .prepare("SELECT marker FROM model_metadata WHERE id = $1")
        .await
        .unwrap();
    client
        .batch_execute("SET search_path = tenant_a, public")
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            marker(client.query(&statement, &[]).await.unwrap()),
            "tenant_a"
        );
        assert_eq!(
            marker(client.query(&by_id, &[&1i32]).await.unwrap()),
            "tenant_a"
        );
    }
    // A Bind too large to be read whole is not preceded by anything: the statement is
    // prepared again ahead of the next message the proxy reads whole.
    let by_other = client
        .prepare("SELECT marker FROM model_metadata WHERE marker <> $1")
        .await
        .unwrap();
    client
        .batch_execute("SET search_path = tenant_b, public")
        .await
        .unwrap();
    let large = "x".repeat(1 << 20);
    assert_eq!(client.query(&by_other, &[&large]).await.unwrap().len(), 1);
    assert_eq!(
        marker(client.query(&by_other, &[&"y"]).await.unwrap()),
        "tenant_b"
    );
    // Back to the managed table, whose row differs: the statement fails rather than reading
    // a tenant table (Postgres fails too, parsing it again: the view has no `marker`).
    client
        .batch_execute("SET search_path = public")
        .await
        .unwrap();
    assert!(client.query(&statement, &[]).await.is_err());
    // The session goes on.
    assert_eq!(columns(&client).await, V1_COLUMNS);
}

#[test]
fn the_role_default_and_user_are_asked_of_the_upstream_at_login() {
    let proxy = proxy_with_tenant();
    proxy.admin(
        "CREATE ROLE tenant_user LOGIN SUPERUSER;
         ALTER ROLE tenant_user SET search_path = tenant_a, public",
    );
    let as_tenant = format!(
        "host=127.0.0.1 port={} user=tenant_user dbname=postgres",
        proxy.port()
    );
    let read = |conninfo: &str, sql: &str| {
        let output = proxy.psql(conninfo).args(["-c", sql]).output().unwrap();
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    };
    assert_eq!(
        read(&as_tenant, "SELECT marker FROM model_metadata").unwrap(),
        "tenant_a"
    );
    // `$user` in the server's default path: a role with a schema of its own name.
    tenant_table(&proxy, "tenant_b");
    proxy.admin("CREATE ROLE tenant_b LOGIN SUPERUSER; NOTIFY viewgate_control");
    let as_b = format!(
        "host=127.0.0.1 port={} user=tenant_b dbname=postgres",
        proxy.port()
    );
    assert!(
        wait_until(Duration::from_secs(5), || read(
            &as_b,
            "SELECT marker FROM model_metadata"
        )
        .is_ok_and(|out| out == "tenant_b")),
        "{:?}",
        read(&as_b, "SELECT marker FROM model_metadata")
    );
    // Another role: `$user` is no longer tenant_b, and the proxy, which does not learn the
    // role's name, rewrites to the view (Postgres finds it in public) rather than pinning
    // tenant_b or reaching the base table; RESET ROLE brings tenant_b's schema back.
    let after_role_change = |sql: &str| {
        session(
            &proxy,
            "user=tenant_b",
            &[
                &format!("SET ROLE {SUPERUSER}"),
                sql,
                "RESET ROLE",
                "SELECT marker FROM model_metadata",
            ],
        )
    };
    let error = after_role_change("SELECT model_type FROM model_metadata").unwrap_err();
    assert!(is_view_error(&error), "{error}");
    assert_eq!(
        after_role_change("SELECT model_name FROM model_metadata").unwrap(),
        "base\ntenant_b"
    );
    // Everyone else still reads the version's view.
    let error = psql(&proxy, None, "SELECT model_type FROM model_metadata").unwrap_err();
    assert!(is_view_error(&error), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relation_created_after_the_proxy_started_is_found_by_the_periodic_refresh() {
    let proxy = versioned_proxy();
    let early = connect(&proxy).await;
    assert_eq!(columns(&early).await, V1_COLUMNS);
    // No notification: only the periodic refresh can notice.
    tenant_table(&proxy, "tenant_c");
    let started = std::time::Instant::now();
    let found = wait_until(RELATION_REFRESH_INTERVAL * 3, || {
        session(
            &proxy,
            "options='-c search_path=tenant_c,public'",
            &["SELECT marker FROM model_metadata"],
        )
        .is_ok_and(|out| out == "tenant_c")
    });
    assert!(found, "not found after {:?}", started.elapsed());
    // A session from before follows its SETs from then on.
    early
        .batch_execute("SET search_path TO tenant_c, public")
        .await
        .unwrap();
    assert_eq!(columns(&early).await, TENANT_COLUMNS);
    early
        .batch_execute("SET search_path TO public")
        .await
        .unwrap();
    assert_eq!(columns(&early).await, V1_COLUMNS);
    // Dropped again (no notification): until the refresh notices, the pinned name fails;
    // it never falls through to the base table.
    let pinned = connect_with(&proxy, "-c%20search_path%3Dtenant_c,public").await;
    assert_eq!(columns(&pinned).await, TENANT_COLUMNS);
    proxy.admin("DROP TABLE tenant_c.model_metadata");
    let error = pinned
        .query("SELECT model_type FROM model_metadata", &[])
        .await
        .unwrap_err();
    let message = error.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("does not exist")),
        "{message:?}"
    );
    assert!(wait_until(RELATION_REFRESH_INTERVAL * 3, || {
        session(
            &proxy,
            "options='-c search_path=tenant_c,public'",
            &["SELECT model_name FROM model_metadata"],
        )
        .is_ok_and(|out| out.is_empty())
    }));
}

#[test]
fn rollback_to_a_savepoint_undoes_a_search_path_set_after_it() {
    let proxy = proxy_with_tenant();
    let out = session(
        &proxy,
        "",
        &[
            "BEGIN",
            "SAVEPOINT a",
            "SET search_path = tenant_a, public",
            "SELECT marker FROM model_metadata",
            "ROLLBACK TO a",
            "SELECT model_name FROM model_metadata",
            "COMMIT",
            "SELECT model_name FROM model_metadata",
            // SET LOCAL values are put back too, quoted names kept as written.
            "BEGIN",
            "SET LOCAL search_path = tenant_a, public",
            "SAVEPOINT \"Sp\"",
            "SET LOCAL search_path = public",
            "SELECT model_name FROM model_metadata",
            "ROLLBACK TO SAVEPOINT \"Sp\"",
            "SELECT marker FROM model_metadata",
            "COMMIT",
            "SELECT model_name FROM model_metadata",
            // RELEASE keeps the value.
            "BEGIN",
            "SAVEPOINT a",
            "SET search_path = tenant_a, public",
            "RELEASE a",
            "COMMIT",
            "SELECT marker FROM model_metadata",
        ],
    )
    .unwrap();
    assert_eq!(out, "tenant_a\nbase\nbase\nbase\ntenant_a\nbase\ntenant_a");
    // Within one query string, each statement sees the path its predecessors left.
    let out = session(
        &proxy,
        "",
        &["BEGIN; SAVEPOINT a; SET search_path = tenant_a, public; SELECT marker FROM model_metadata; ROLLBACK TO a; SELECT model_name FROM model_metadata; COMMIT",
          "SELECT model_name FROM model_metadata"],
    )
    .unwrap();
    assert_eq!(out, "tenant_a\nbase\nbase");
}

#[tokio::test(flavor = "multi_thread")]
async fn savepoints_through_the_extended_protocol() {
    let proxy = proxy_with_tenant();
    let client = connect(&proxy).await;
    client.batch_execute("BEGIN").await.unwrap();
    client.execute("SAVEPOINT a", &[]).await.unwrap();
    client
        .execute("SET search_path TO tenant_a, public", &[])
        .await
        .unwrap();
    client.execute("SAVEPOINT b", &[]).await.unwrap();
    client
        .execute("SET search_path TO public", &[])
        .await
        .unwrap();
    client.execute("ROLLBACK TO b", &[]).await.unwrap();
    assert_eq!(
        columns(&client).await,
        TENANT_COLUMNS,
        "back at b: tenant_a"
    );
    client.batch_execute("ROLLBACK TO a").await.unwrap();
    let rows = client
        .query(
            "SELECT model_name FROM model_metadata WHERE $1::int = 1",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "base");
    // A failed ROLLBACK TO: the block's rollback puts back the pre-block path.
    client
        .execute("SET search_path TO tenant_a, public", &[])
        .await
        .unwrap();
    assert!(client.execute("ROLLBACK TO nosuch", &[]).await.is_err());
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(columns(&client).await, V1_COLUMNS);
}
