//! Migrations refused before any change because running them would silently damage data
//! (red-team pass 41): the backfill firing the application's UPDATE triggers, a backfill under
//! row-level security that hides rows from it, a column replaced at complete taking its key,
//! foreign keys or an index that cannot be rebuilt along with it. Each refusal leaves no new
//! column and no version row; each remedy the message gives lets the migration start. Against
//! a real Postgres, migrations run in-process as in tests/migrations.rs.

use crate::migration_support;
use crate::support;

use migration_support::{base_columns, retype, seeded, start_text};
use support::{Database, quick_locks};
use viewgate::control::migrate::start::start;
use viewgate::control::migrate::status::plan;
use viewgate::control::migrate::{MigrationFile, Silent};
use viewgate::control::templates::Templates;
use viewgate::control::views::apply;
use viewgate::control::views::spec::Spec;

const ADD_DOUBLED: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
up = "size * 2"
column = { name = "doubled", type = "integer" }
"#;

/// Nothing of the refused migration is in the database: the base table still has `columns`,
/// and there is no version row and no migration row.
fn assert_unchanged(database: &Database, columns: &str) {
    assert_eq!(base_columns(database), columns, "no column was added");
    assert_eq!(
        database.admin(
            "SELECT (SELECT count(*) FROM viewgate.versions WHERE version = 'v2') + (SELECT count(*) FROM viewgate.migrations)"
        ),
        "0",
        "no version or migration row"
    );
}

/// What `migrate plan` says of the migration in `text`: its refusal, or "planned".
async fn plan_text(database: &Database, text: &str) -> String {
    let file = MigrationFile::load(&database.spec_file("plan.toml", text)).expect("loads");
    let mut client = database.client().await;
    match plan(&mut client, &file).await {
        Ok(_) => "planned".to_owned(),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn the_backfill_would_fire_an_update_trigger_so_it_is_refused() {
    let database = seeded(20).await;
    database.admin(
        "ALTER TABLE models ADD COLUMN updated_at timestamptz NOT NULL DEFAULT '2020-01-01';
         CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
         CREATE TRIGGER touch BEFORE UPDATE ON models FOR EACH ROW EXECUTE FUNCTION touch();
         CREATE FUNCTION noted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
         CREATE TRIGGER audit AFTER UPDATE ON models FOR EACH STATEMENT EXECUTE FUNCTION noted();",
    );
    let columns = base_columns(&database);
    let refused = start_text(&database, "0002.toml", ADD_DOUBLED)
        .await
        .unwrap_err()
        .to_string();
    for expected in [
        "table public.models",
        "UPDATE trigger(s) audit, touch",
        "UPDATE OF <its columns>",
        "WHEN (current_setting('viewgate.version', true) IS DISTINCT FROM 'viewgate_backfill')",
        "nothing was changed",
    ] {
        assert!(refused.contains(expected), "{expected:?} in {refused}");
    }
    assert_unchanged(&database, &columns);
    assert!(
        plan_text(&database, ADD_DOUBLED)
            .await
            .contains("UPDATE trigger(s) audit, touch"),
        "migrate plan shows the refusal"
    );
    assert_eq!(
        database.admin("SELECT count(DISTINCT updated_at) FROM models"),
        "1",
        "no row was touched"
    );

    // The remedies the message gives: a column list, or a WHEN clause that skips the backfill.
    // A disabled trigger does not fire either.
    database.admin(
        "DROP TRIGGER touch ON models;
         CREATE TRIGGER touch BEFORE UPDATE OF name, size ON models FOR EACH ROW EXECUTE FUNCTION touch();
         DROP TRIGGER audit ON models;
         CREATE TRIGGER audit AFTER UPDATE ON models FOR EACH ROW
           WHEN (current_setting('viewgate.version', true) IS DISTINCT FROM 'viewgate_backfill')
           EXECUTE FUNCTION noted();
         CREATE TRIGGER off BEFORE UPDATE ON models FOR EACH ROW EXECUTE FUNCTION touch();
         ALTER TABLE models DISABLE TRIGGER off;",
    );
    let outcome = start_text(&database, "0002.toml", ADD_DOUBLED)
        .await
        .expect("starts once the triggers skip the backfill");
    assert_eq!(outcome.rows_backfilled, 20);
    assert_eq!(
        database.admin("SELECT count(*) FILTER (WHERE updated_at = '2020-01-01'), count(*) FILTER (WHERE doubled = size * 2) FROM models"),
        "20|20",
        "every row filled, none touched"
    );
}

const TENANTS_SPEC: &str = r#"
[[tables]]
name = "t"
key = ["id"]

[[versions]]
name = "v1"
[[versions.tables]]
base = "t"
columns = ["id", "score", "tenant"]
"#;

const ADD_TENANT_DOUBLED: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "t"
up = "score * 2"
column = { name = "doubled", type = "numeric" }
"#;

/// A client of database `vgdb` as the catalog role `vg`, which is no superuser (a superuser
/// bypasses every policy).
async fn catalog_role_client(database: &Database) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&database.cluster.url("vg", "vgdb"), tokio_postgres::NoTls)
            .await
            .expect("connects as vg");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn a_backfill_under_row_level_security_is_refused() {
    let database = Database::start();
    database.admin("CREATE ROLE vg LOGIN");
    database.admin("CREATE DATABASE vgdb OWNER vg");
    let in_vgdb = |sql: &str| database.cluster.psql("vgdb", sql).expect("SQL in vgdb");
    in_vgdb("ALTER SCHEMA public OWNER TO vg; REVOKE CREATE ON SCHEMA public FROM PUBLIC");
    let mut client = catalog_role_client(&database).await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, score numeric, tenant text NOT NULL DEFAULT current_setting('app.tenant', true));
             INSERT INTO t SELECT g, g, 'tenant' || (g % 3) FROM generate_series(1, 30) g;
             ALTER TABLE t ENABLE ROW LEVEL SECURITY;
             ALTER TABLE t FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_isolation ON t USING (tenant = current_setting('app.tenant', true));",
        )
        .await
        .expect("table under RLS");
    let spec = Spec::load(&database.spec_file("spec.toml", TENANTS_SPEC)).expect("spec loads");
    apply::apply(&mut client, &spec, &Templates::built_in(), quick_locks())
        .await
        .expect("v1 applied as vg");
    let file = MigrationFile::load(&database.spec_file("0002.toml", ADD_TENANT_DOUBLED))
        .expect("migration loads");
    let columns = "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 AND NOT attisdropped";
    let version_rows = "SELECT count(*) FROM viewgate.versions WHERE version = 'v2'";

    let refused = start(&mut client, &file, &Templates::built_in(), &mut Silent)
        .await
        .unwrap_err()
        .to_string();
    for expected in [
        "table public.t",
        "row-level security, forced on its owner (policies: tenant_isolation)",
        "BYPASSRLS",
        "NO FORCE ROW LEVEL SECURITY",
        "nothing was changed",
    ] {
        assert!(refused.contains(expected), "{expected:?} in {refused}");
    }
    assert_eq!(in_vgdb(columns), "id,score,tenant", "no column was added");
    assert_eq!(in_vgdb(version_rows), "0", "no version row");
    let planned = match plan(&mut client, &file).await {
        Ok(_) => "planned".to_owned(),
        Err(error) => error.to_string(),
    };
    assert!(planned.contains("row-level security"), "{planned}");

    // Enabled but not forced, the policies do not apply to the owner: every row is filled.
    in_vgdb("ALTER TABLE t NO FORCE ROW LEVEL SECURITY");
    let outcome = start(&mut client, &file, &Templates::built_in(), &mut Silent)
        .await
        .expect("starts once RLS does not apply to the catalog role");
    assert_eq!(outcome.rows_backfilled, 30);
    assert_eq!(
        in_vgdb("SELECT count(*) FROM t WHERE doubled = score * 2"),
        "30",
        "every row filled"
    );
}

#[tokio::test]
async fn replacing_an_indexed_or_constrained_column_is_refused() {
    let database = seeded(10).await;
    database.admin(
        "ALTER TABLE models ADD CONSTRAINT models_name_key UNIQUE (name);
         CREATE INDEX models_size_idx ON models (size);
         CREATE INDEX models_lower_note ON models (lower(legacy_note));
         CREATE INDEX models_big ON models (id) WHERE size > 5;
         CREATE TABLE parts (id int PRIMARY KEY, model bigint REFERENCES models (id));",
    );
    let columns = base_columns(&database);
    // Indexes and constraints are rebuilt on the new column (tests/migrations_rebuild.rs);
    // what the catalog cannot rebuild is refused.
    for (migration, expected) in [
        (
            retype("id", "numeric", ""),
            "column id is covered by foreign key parts_model_fkey of public.parts: the old column is dropped at `migrate complete` with what covers it, and this one cannot be rebuilt on the new column: it references the column from a column of type bigint, and whether a key of type numeric can serve it is not known here",
        ),
        (
            r#"
version = "v2"
from = "v1"
[[operations]]
op = "split_column"
table = "models"
column = "name"
into = [
  { column = { name = "family", type = "text" }, up = "split_part(name, '-', 1)" },
  { column = { name = "number", type = "text" }, up = "split_part(name, '-', 2)" },
]
down = "family || '-' || number"
"#
            .to_owned(),
            "column name is covered by index models_name_key: the old column is dropped at `migrate complete` with what covers it, and this one cannot be rebuilt on the new column: operation 1 (split_column) replaces it with several columns",
        ),
        (
            r#"
version = "v2"
from = "v1"
[[operations]]
op = "merge_columns"
table = "models"
columns = ["name", "legacy_note"]
into = { name = "label", type = "text" }
up = "name || coalesce(legacy_note, '')"
down = { name = "label" }
"#
            .to_owned(),
            "column legacy_note is covered by index models_lower_note",
        ),
    ] {
        let refused = start_text(&database, "0002.toml", &migration)
            .await
            .unwrap_err()
            .to_string();
        for expected in [expected, "table public.models", "nothing was changed"] {
            assert!(refused.contains(expected), "{expected:?} in {refused}");
        }
        assert_unchanged(&database, &columns);
        assert!(
            plan_text(&database, &migration).await.contains(expected),
            "migrate plan shows the refusal"
        );
    }

    // A column nothing covers is replaced as before; so is one whose index was dropped.
    database.admin("DROP INDEX models_lower_note");
    start_text(
        &database,
        "0002.toml",
        &retype("legacy_note", "varchar(200)", ""),
    )
    .await
    .expect("a column without index or constraint is altered");
}
