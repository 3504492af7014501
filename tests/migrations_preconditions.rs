//! Migrations refused before any change because running them would silently damage data
//! (red-team pass 41): the backfill firing the application's UPDATE triggers (run past them in
//! replica mode where the role may set `session_replication_role`), a backfill under
//! row-level security that hides rows from it, a column replaced at complete taking its key,
//! foreign keys or an index that cannot be rebuilt along with it. Each refusal leaves no new
//! column and no version row; each remedy the message gives lets the migration start. Against
//! a real Postgres, migrations run in-process as in tests/migrations.rs.

use crate::migration_support;
use crate::support;

use migration_support::{at, base_columns, retype, seeded, start_text, start_watched};
use support::{Database, quick_locks};
use viewgate::control::migrate::start::{StartOutcome, start};
use viewgate::control::migrate::status::plan;
use viewgate::control::migrate::{MigrateError, MigrationFile, Progress, Silent};
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

/// Collects the steps a migration reports.
#[derive(Default)]
struct Steps(Vec<String>);

impl Progress for Steps {
    fn step(&mut self, description: &str) {
        self.0.push(description.to_owned());
    }
    fn backfill(&mut self, _table: &str, _rows: u64, _estimate: u64, _rate: f64) {}
}

/// The application's UPDATE triggers: a BEFORE touch of `updated_at`, an AFTER audit row per
/// row, and `always`, which also touches, enabled ALWAYS (it fires in replica mode too).
const UPDATE_TRIGGERS: &str = "
    ALTER TABLE models ADD COLUMN updated_at timestamptz NOT NULL DEFAULT '2020-01-01';
    CREATE TABLE audit_log (id bigint, at timestamptz DEFAULT now());
    CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
    CREATE TRIGGER touch BEFORE UPDATE ON models FOR EACH ROW EXECUTE FUNCTION touch();
    CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit_log (id) VALUES (NEW.id); RETURN NULL; END $$;
    CREATE TRIGGER audit AFTER UPDATE ON models FOR EACH ROW EXECUTE FUNCTION audit();
    CREATE TRIGGER always BEFORE UPDATE ON models FOR EACH ROW EXECUTE FUNCTION touch();
    ALTER TABLE models ENABLE ALWAYS TRIGGER always;";

/// The backfill's UPDATE of every row fired the application's UPDATE triggers: an
/// `updated_at` touch bumped every row, an audit trigger wrote a row per row. A role that may
/// set `session_replication_role` (a superuser here) backfills in replica mode, where they do
/// not fire, and says so; they still fire for the application's own writes. A trigger that
/// fires in replica mode too (enabled ALWAYS) is refused before any change.
#[tokio::test]
async fn the_backfill_runs_in_replica_mode_past_the_applications_update_triggers() {
    let database = seeded(20).await;
    database.admin(UPDATE_TRIGGERS);
    let columns = base_columns(&database);
    let refused = start_text(&database, "0002.toml", ADD_DOUBLED)
        .await
        .unwrap_err()
        .to_string();
    for expected in [
        "table public.models",
        "UPDATE trigger(s) or rule(s) always (enabled ALWAYS or REPLICA",
        "ENABLE TRIGGER <name>",
        "nothing was changed",
    ] {
        assert!(refused.contains(expected), "{expected:?} in {refused}");
    }
    assert_unchanged(&database, &columns);
    assert!(
        plan_text(&database, ADD_DOUBLED)
            .await
            .contains("UPDATE trigger(s) or rule(s) always"),
        "migrate plan shows the refusal"
    );

    database.admin("ALTER TABLE models ENABLE TRIGGER always");
    let mut steps = Steps::default();
    let outcome = start_watched(&database, "0002.toml", ADD_DOUBLED, &mut steps)
        .await
        .expect("starts, backfilling in replica mode");
    assert_eq!(outcome.rows_backfilled, 20);
    assert!(
        steps.0.iter().any(|step| step
            == "backfill public.models in replica mode: the application's UPDATE trigger(s) always, audit, touch do not fire for it"),
        "{:?}",
        steps.0
    );
    assert_eq!(
        database.admin(
            "SELECT count(*) FILTER (WHERE updated_at = '2020-01-01') || ':' || count(*) FILTER (WHERE doubled = size * 2)
                    || ':' || (SELECT count(*) FROM audit_log) FROM models"
        ),
        "20:20:0",
        "every row filled, none touched, nothing audited"
    );
    let v1 = at(&database, "v1").await;
    v1.batch_execute("UPDATE models_v1 SET size = size + 1 WHERE id = 1")
        .await
        .expect("a v1 write");
    assert_eq!(
        database.admin(
            "SELECT (updated_at > '2020-01-01') || ':' || doubled || ':' || (SELECT count(*) FROM audit_log) FROM models WHERE id = 1"
        ),
        "true:4:1",
        "the application's triggers fire for its own writes"
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

/// Applies the v1 spec of table `t` through `client` and reads the migration adding
/// `doubled` to it.
async fn tenants_v1(database: &Database, client: &mut tokio_postgres::Client) -> MigrationFile {
    let spec = Spec::load(&database.spec_file("spec.toml", TENANTS_SPEC)).expect("spec loads");
    apply::apply(client, &spec, &Templates::built_in(), quick_locks())
        .await
        .expect("v1 applied as vg");
    MigrationFile::load(&database.spec_file("0002.toml", ADD_TENANT_DOUBLED))
        .expect("migration loads")
}

/// A client of database `vgdb` as the catalog role `vg`, which is no superuser (a superuser
/// bypasses every policy): `vg` owns `vgdb`, and its `public` schema is `vg`'s alone.
/// `migrate start` of `file` at its own pace, reporting nothing.
async fn start_silent(
    client: &mut tokio_postgres::Client,
    file: &MigrationFile,
) -> Result<StartOutcome, MigrateError> {
    let own_pace = (file, &Default::default());
    start(client, own_pace, &Templates::built_in(), &mut Silent).await
}

async fn catalog_role_client(database: &Database) -> tokio_postgres::Client {
    database.admin("CREATE ROLE vg LOGIN");
    database.admin("CREATE DATABASE vgdb OWNER vg");
    database
        .cluster
        .psql(
            "vgdb",
            "ALTER SCHEMA public OWNER TO vg; REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        )
        .expect("vgdb's schema made vg's");
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
    let in_vgdb = |sql: &str| database.cluster.psql("vgdb", sql).expect("SQL in vgdb");
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
    let file = tenants_v1(&database, &mut client).await;
    let columns = "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 AND NOT attisdropped";
    let version_rows = "SELECT count(*) FROM viewgate.versions WHERE version = 'v2'";

    let refused = start_silent(&mut client, &file)
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
    let outcome = start_silent(&mut client, &file)
        .await
        .expect("starts once RLS does not apply to the catalog role");
    assert_eq!(outcome.rows_backfilled, 30);
    assert_eq!(
        in_vgdb("SELECT count(*) FROM t WHERE doubled = score * 2"),
        "30",
        "every row filled"
    );
}

/// A role that may not set `session_replication_role` cannot backfill past the application's
/// UPDATE triggers: refused before any change, the remedies named; granted `SET` on it (from
/// PostgreSQL 15), the same role backfills in replica mode.
#[tokio::test]
async fn without_replica_mode_the_applications_update_triggers_are_refused() {
    let database = Database::start();
    let in_vgdb = |sql: &str| database.cluster.psql("vgdb", sql).expect("SQL in vgdb");
    let mut client = catalog_role_client(&database).await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, score numeric, tenant text NOT NULL DEFAULT 'a',
                             updated_at timestamptz NOT NULL DEFAULT '2020-01-01');
             INSERT INTO t (id, score) SELECT g, g FROM generate_series(1, 30) g;
             CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
             CREATE TRIGGER touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION touch();",
        )
        .await
        .expect("a table with an UPDATE trigger");
    let file = tenants_v1(&database, &mut client).await;
    let refused = start_silent(&mut client, &file)
        .await
        .unwrap_err()
        .to_string();
    for expected in [
        "table public.t",
        "UPDATE trigger(s) or rule(s) touch",
        "UPDATE OF <its columns>",
        "WHEN (current_setting('viewgate.version', true) IS DISTINCT FROM 'viewgate_backfill')",
        "GRANT SET ON PARAMETER session_replication_role TO <role>",
        "nothing was changed",
    ] {
        assert!(refused.contains(expected), "{expected:?} in {refused}");
    }
    assert_eq!(
        in_vgdb("SELECT count(*) FROM viewgate.versions WHERE version = 'v2'"),
        "0"
    );

    in_vgdb("GRANT SET ON PARAMETER session_replication_role TO vg");
    let outcome = start_silent(&mut client, &file)
        .await
        .expect("starts once the role may run the backfill in replica mode");
    assert_eq!(outcome.rows_backfilled, 30);
    assert_eq!(
        in_vgdb(
            "SELECT count(*) FILTER (WHERE updated_at = '2020-01-01' AND doubled = score * 2) FROM t"
        ),
        "30",
        "every row filled, none touched"
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

/// A migration to v2 adding `shout`, filled from `payload`, to table `events`, ten rows a batch.
const SHOUTED: &str = r#"version = "v2"
from = "v1"
[settings]
batch_size = 10
[[operations]]
op = "add_column"
table = "events"
column = { name = "shout", type = "text" }
up = "upper(payload)"
"#;

/// `events`, 100 rows whose `code` repeats and is NULL in ten of them, its spec declaring
/// `code` the key, after `setup`.
async fn events_keyed_by_code(setup: &str) -> Database {
    let database = Database::start();
    database.admin(&format!(
        "CREATE TABLE public.events (code text, payload text NOT NULL);
         INSERT INTO events
             SELECT CASE WHEN n % 10 = 0 THEN NULL ELSE 'c' || (n % 7) END, 'p' || n
               FROM generate_series(1, 100) AS n;
         {setup}"
    ));
    migration_support::one_table_at_v1(&database, "events", "code", &["code", "payload"]).await;
    database
}

/// The backfill walks rows in key order from the last key it filled: a NULL key is never
/// reached, and a batch takes every row sharing one of its keys (a nullable key
/// failed the expand on its NULL high-water mark). Without a primary key, the spec's key must
/// be NOT NULL and unique; with one, the backfill walks by it whatever the spec declares.
#[tokio::test]
async fn the_backfill_walks_only_by_a_key_that_names_each_row_once() {
    let nullable = events_keyed_by_code("").await;
    let refused = start_text(&nullable, "0002.toml", SHOUTED)
        .await
        .expect_err("a nullable key")
        .to_string();
    assert!(
        refused.contains("has no primary key, and the backfill would walk its rows by the spec's key (code), but its column(s) code may be NULL"),
        "{refused}"
    );
    assert_eq!(
        nullable.admin("SELECT count(*) FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'shout'"),
        "0",
        "nothing changed"
    );

    let shared = events_keyed_by_code(
        "UPDATE events SET code = 'none' WHERE code IS NULL;
         ALTER TABLE events ALTER COLUMN code SET NOT NULL",
    )
    .await;
    let refused = start_text(&shared, "0002.toml", SHOUTED)
        .await
        .expect_err("a key rows share")
        .to_string();
    assert!(
        refused.contains("but no unique index lies within it, and a batch takes every row sharing one of its keys at once"),
        "{refused}"
    );

    let keyed =
        events_keyed_by_code("ALTER TABLE events ADD COLUMN id bigserial PRIMARY KEY").await;
    let outcome = start_text(&keyed, "0002.toml", SHOUTED)
        .await
        .expect("walks by the primary key");
    assert_eq!(outcome.rows_backfilled, 100);
    assert_eq!(
        keyed.admin(
            "SELECT count(*) FILTER (WHERE shout IS DISTINCT FROM upper(payload)) FROM events"
        ),
        "0"
    );
}

/// An `ON UPDATE` rule is rewritten into the backfill's UPDATE as a trigger fires for it (`DO
/// ALSO` writes a row per row, `DO INSTEAD` replaces the batch): one enabled ALWAYS is refused,
/// one enabled the ordinary way is skipped in replica mode and still serves the clients.
#[tokio::test]
async fn the_applications_update_rules_count_as_its_triggers() {
    let database = seeded(30).await;
    let columns = base_columns(&database);
    database.admin(
        "CREATE TABLE audit_log (id bigint);
         CREATE RULE models_audit AS ON UPDATE TO models DO ALSO INSERT INTO audit_log VALUES (OLD.id);
         CREATE RULE models_frozen AS ON UPDATE TO models WHERE OLD.size < 0 DO INSTEAD NOTHING;
         ALTER TABLE models ENABLE ALWAYS RULE models_audit",
    );
    let refused = start_text(&database, "0002.toml", ADD_DOUBLED)
        .await
        .expect_err("a rule that fires in replica mode")
        .to_string();
    assert!(
        refused
            .contains("UPDATE trigger(s) or rule(s) rule models_audit (enabled ALWAYS or REPLICA"),
        "{refused}"
    );
    assert_unchanged(&database, &columns);

    database.admin("ALTER TABLE models ENABLE RULE models_audit");
    let outcome = start_text(&database, "0002.toml", ADD_DOUBLED)
        .await
        .expect("backfills in replica mode, past the rules");
    assert_eq!(outcome.rows_backfilled, 30);
    assert_eq!(
        database.admin(
            "SELECT count(*) FILTER (WHERE doubled = size * 2) || ' ' || (SELECT count(*) FROM audit_log) FROM models"
        ),
        "30 0",
        "every row filled, no audit row written for the backfill"
    );
    let v1 = at(&database, "v1").await;
    crate::support::exec(&v1, "UPDATE models_v1 SET size = 7 WHERE id = 1").await;
    assert_eq!(
        database.admin("SELECT string_agg(id::text, ',') FROM audit_log"),
        "1",
        "a client's update is audited as before"
    );
}
