//! A version's views keep the grants made on them: `views apply` remaking a changed version,
//! `migrate start` making the new version's view (it takes the grants of the view it starts
//! from), and `migrate complete` remaking the remaining version's views over the renamed
//! columns. Against a real Postgres, with a role that has no right but those grants.

use crate::migration_support;
use crate::support;

use migration_support::{BASE, SPEC, complete_now, retype, seeded, start_text};
use support::{Database, exec, lines};

/// Every grant on `view` other than its owner's, one per line, sorted: `role PRIVILEGE`,
/// `(column)` for a column's, `grantable` with the grant option.
fn grants_on(database: &Database, view: &str) -> String {
    let who = "CASE WHEN p.grantee = 0 THEN 'PUBLIC' ELSE p.grantee::regrole::text END \
               || ' ' || p.privilege_type";
    let option = "CASE WHEN p.is_grantable THEN ' grantable' ELSE '' END";
    database.admin(&format!(
        "SELECT coalesce(string_agg(grant_line, E'\\n' ORDER BY grant_line COLLATE \"C\"), '(none)') FROM (
            SELECT {who} || {option}
              FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) p
             WHERE c.oid = '{view}'::regclass AND p.grantee <> c.relowner
             UNION ALL
            SELECT {who} || ' (' || a.attname || ')' || {option}
              FROM pg_attribute a CROSS JOIN LATERAL aclexplode(a.attacl) p
             WHERE a.attrelid = '{view}'::regclass) AS grants (grant_line)"
    ))
}

/// A session of role `role`, which holds no right but what it was granted, at `version`.
async fn as_role_at(database: &Database, role: &str, version: &str) -> tokio_postgres::Client {
    let client = database.client().await;
    exec(
        &client,
        &format!("SET ROLE {role}; SET viewgate.version = '{version}'"),
    )
    .await;
    client
}

const GRANTS: &str = "
    CREATE ROLE app NOLOGIN;
    CREATE ROLE editor NOLOGIN;
    GRANT USAGE ON SCHEMA public TO app, editor;
    -- The views are security_invoker (PostgreSQL 15 and later): the base table's rights too.
    GRANT SELECT, INSERT, UPDATE ON models TO app;
    GRANT USAGE ON SEQUENCE models_id_seq TO app;
    GRANT SELECT, UPDATE ON models TO editor;
    GRANT SELECT, INSERT, UPDATE ON models_v1 TO app;
    GRANT SELECT (id, name), UPDATE (name) ON models_v1 TO editor WITH GRANT OPTION;
    GRANT SELECT (legacy_note) ON models_v1 TO PUBLIC;";

/// [`GRANTS`] as [`grants_on`] reads them.
const V1_GRANTS: &str = "PUBLIC SELECT (legacy_note)
app INSERT
app SELECT
app UPDATE
editor SELECT (id) grantable
editor SELECT (name) grantable
editor UPDATE (name) grantable";

#[tokio::test]
async fn a_view_that_views_apply_makes_anew_keeps_its_grants() {
    let database = Database::start();
    database.admin(BASE);
    database.apply_text(SPEC).await;
    database.admin(GRANTS);
    assert_eq!(grants_on(&database, "models_v1"), V1_GRANTS);
    let before = database.admin("SELECT 'models_v1'::regclass::oid");

    // The spec changes v1: its view is dropped and made again, without legacy_note.
    let outcome = database
        .apply_text(&SPEC.replace(", \"legacy_note\"]", "]"))
        .await;
    assert_eq!(outcome.applied, ["v1"]);
    assert_ne!(
        database.admin("SELECT 'models_v1'::regclass::oid"),
        before,
        "the view was made anew"
    );
    assert_eq!(
        grants_on(&database, "models_v1"),
        V1_GRANTS.replace("PUBLIC SELECT (legacy_note)\n", ""),
        "every grant kept but the one on the column the view no longer has"
    );
    let app = as_role_at(&database, "app", "v1").await;
    exec(&app, "INSERT INTO models_v1 (name) VALUES ('by app')").await;
    assert_eq!(lines(&app, "SELECT name FROM models_v1").await, ["by app"]);
}

#[tokio::test]
async fn a_new_versions_view_takes_the_grants_it_starts_from_and_keeps_them_past_the_contract() {
    let database = seeded(3).await;
    database.admin(GRANTS);
    // A retype: the contract renames the new column and remakes v2's view over it.
    start_text(
        &database,
        "0002.toml",
        &retype(
            "size",
            "bigint",
            "up = \"size::bigint\"\ndown = \"size::integer\"",
        ),
    )
    .await
    .expect("starts");
    assert_eq!(
        grants_on(&database, "models_v2"),
        V1_GRANTS,
        "v2's view has v1's grants"
    );
    let app = as_role_at(&database, "app", "v2").await;
    exec(
        &app,
        "INSERT INTO models_v2 (name, size) VALUES ('at v2', 5000)",
    )
    .await;
    let editor = as_role_at(&database, "editor", "v2").await;
    exec(
        &editor,
        "UPDATE models_v2 SET name = 'renamed' WHERE id = 1",
    )
    .await;

    complete_now(&database).await.expect("completes");
    assert_eq!(
        grants_on(&database, "models_v2"),
        V1_GRANTS,
        "the contract's remade view keeps them"
    );
    let app = as_role_at(&database, "app", "v2").await;
    exec(
        &app,
        "UPDATE models_v2 SET size = size + 1 WHERE name = 'at v2'",
    )
    .await;
    assert_eq!(
        lines(
            &app,
            "SELECT name || ' ' || size FROM models_v2 ORDER BY id"
        )
        .await,
        ["renamed 1", "model-2 2", "model-3 3", "at v2 5001"]
    );
}
