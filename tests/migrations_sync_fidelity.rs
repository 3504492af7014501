//! The sync triggers mirror what is stored, against a real Postgres: an UPDATE to a value its
//! type calls equal but stores differently (citext's case, numeric's scale, a float's -0)
//! reaches the other version (red-team pass 41, finding 5); they fire after the application's
//! own BEFORE triggers, so both versions hold the row as those left it, and a migration an
//! earlier build started (its triggers under the old names) is renamed into order and dropped
//! whole (finding 4); they fire for a write in replica mode (logical replication's apply
//! worker). Clients here connect directly and set `viewgate.version` as the proxy does for
//! its sessions.

use crate::migration_support;
use crate::support;

use migration_support::{at, complete_now, rollback_now, seeded, start_text};
use support::{Database, exec, lines};

const SPEC: &str = r#"
[[tables]]
name = "t"
key = ["id"]

[[versions]]
name = "v1"
[[versions.tables]]
base = "t"
columns = ["id", "email", "amount", "ratio", "label"]
"#;

/// A table `t` of one row whose `email` is citext where the cluster has the extension
/// (Debian's postgresql-contrib), text otherwise; v1 sees every column.
async fn equal_but_different() -> (Database, bool) {
    let database = Database::start();
    let citext =
        database.admin("SELECT count(*) FROM pg_available_extensions WHERE name = 'citext'") == "1";
    if citext {
        database.admin("CREATE EXTENSION citext");
    }
    let email = if citext { "citext" } else { "text" };
    database.admin(&format!(
        "CREATE TABLE public.t (id int PRIMARY KEY, email {email}, amount numeric, ratio float8, label text)"
    ));
    database.apply_text(SPEC).await;
    database.admin("INSERT INTO t VALUES (1, 'Alice@Example.COM', 1.5, 0, '7.5')");
    (database, citext)
}

#[tokio::test]
async fn an_update_to_an_equal_but_differently_stored_value_reaches_the_other_version() {
    let (database, citext) = equal_but_different().await;
    start_text(
        &database,
        "0002.toml",
        r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "t"
column = "email"
type = "text"
[[operations]]
op = "alter_column"
table = "t"
column = "amount"
type = "text"
up = "amount::text"
down = "amount::numeric"
[[operations]]
op = "alter_column"
table = "t"
column = "ratio"
type = "text"
up = "ratio::text"
down = "ratio::float8"
[[operations]]
op = "alter_column"
table = "t"
column = "label"
type = "numeric"
up = "label::numeric"
down = "label::text"
"#,
    )
    .await
    .expect("starts");
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    // Up: each new value equals the old one by its type's equality.
    exec(
        &v1,
        "UPDATE t_v1 SET email = lower(email), amount = 1.50, ratio = '-0' WHERE id = 1",
    )
    .await;
    assert_eq!(
        lines(&v2, "SELECT email, amount, ratio FROM t_v2 WHERE id = 1").await,
        ["alice@example.com|1.50|-0"],
        "up (citext: {citext})"
    );
    // Down: the new version's numeric 7.5 written as 7.50.
    exec(&v2, "UPDATE t_v2 SET label = 7.50 WHERE id = 1").await;
    assert_eq!(
        lines(&v1, "SELECT label FROM t_v1 WHERE id = 1").await,
        ["7.50"],
        "down"
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        database.admin("SELECT email || '|' || amount || '|' || ratio || '|' || label FROM t"),
        "alice@example.com|1.50|-0|7.50"
    );
}

const CODES: &str = r#"
[[tables]]
name = "t"
key = ["id"]

[[versions]]
name = "v1"
[[versions.tables]]
base = "t"
columns = ["id", "code", "score"]
"#;

const RETYPE_CODE: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "t"
column = "code"
type = "varchar(20)"
"#;

/// Table `t` with an application trigger upper-casing `code` on every write but the backfill's
/// (`migrate start` refuses a backfill that would fire it: `preconditions.rs`).
async fn normalized_codes() -> Database {
    let database = Database::start();
    database.admin(
        "CREATE TABLE public.t (id int PRIMARY KEY, code text NOT NULL, score numeric);
         CREATE FUNCTION public.normalize_code() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN NEW.code := upper(NEW.code); RETURN NEW; END $$;
         CREATE TRIGGER normalize_code BEFORE INSERT OR UPDATE ON public.t
             FOR EACH ROW
             WHEN (current_setting('viewgate.version', true) IS DISTINCT FROM 'viewgate_backfill')
             EXECUTE FUNCTION public.normalize_code();
         INSERT INTO public.t VALUES (1, 'A1', 1), (2, 'B2', 2);",
    );
    database.apply_text(CODES).await;
    database
}

#[tokio::test]
async fn sync_triggers_fire_after_the_applications_own() {
    let database = normalized_codes().await;
    start_text(&database, "0002.toml", RETYPE_CODE)
        .await
        .expect("starts");
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(&v1, "INSERT INTO t_v1 VALUES (3, 'c3', 3)").await;
    exec(&v1, "UPDATE t_v1 SET code = 'a1-new' WHERE id = 1").await;
    exec(&v2, "INSERT INTO t_v2 VALUES (4, 'd4', 4)").await;
    exec(&v2, "UPDATE t_v2 SET code = 'b2-new' WHERE id = 2").await;
    let v1_rows = lines(&v1, "SELECT id, code FROM t_v1 ORDER BY id").await;
    // An older writer's row reaches the new version as the application's trigger left it.
    assert_eq!(v1_rows[0], "1|A1-NEW");
    assert_eq!(v1_rows[2], "3|C3");
    // Both versions hold the same row whoever wrote it (the trigger knows only the old
    // column, which `down` computes after it: docs/migrations.md, "Limits").
    assert_eq!(
        lines(&v2, "SELECT id, code FROM t_v2 ORDER BY id").await,
        v1_rows
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        database.admin("SELECT string_agg(id || ':' || code, ',' ORDER BY id) FROM t"),
        v1_rows
            .iter()
            .map(|row| row.replace('|', ":"))
            .collect::<Vec<_>>()
            .join(",")
    );
}

/// The names of `t`'s triggers but the application's.
fn sync_triggers(database: &Database) -> String {
    database.admin(
        "SELECT coalesce(string_agg(tgname, ',' ORDER BY tgname), '') FROM pg_trigger
          WHERE tgrelid = 'public.t'::regclass AND NOT tgisinternal AND tgname <> 'normalize_code'",
    )
}

/// Gives `t`'s sync triggers the names an earlier build gave them (`_vg_sync_…`).
fn as_an_earlier_build_named_them(database: &Database) {
    database.admin(
        "DO $$ DECLARE t name; BEGIN
           FOR t IN SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.t'::regclass AND tgname LIKE '~vg_sync_%' LOOP
             EXECUTE format('ALTER TRIGGER %I ON public.t RENAME TO %I', t, '_' || substr(t, 2));
           END LOOP; END $$",
    );
}

#[tokio::test]
async fn triggers_an_earlier_build_named_are_renamed_into_order_and_dropped() {
    let database = normalized_codes().await;
    start_text(&database, "0002.toml", RETYPE_CODE)
        .await
        .expect("starts");
    as_an_earlier_build_named_them(&database);
    assert!(sync_triggers(&database).starts_with("_vg_sync_"));
    // A migration started since puts them in the chain's order (down newest first, then up
    // oldest first), after the application's trigger.
    start_text(
        &database,
        "0003.toml",
        r#"
version = "v3"
from = "v2"
[[operations]]
op = "alter_column"
table = "t"
column = "score"
type = "text"
up = "score::text"
down = "score::numeric"
"#,
    )
    .await
    .expect("v3 starts");
    assert_eq!(
        sync_triggers(&database),
        "~vg_sync_0_9999999997_i,~vg_sync_0_9999999997_u,~vg_sync_0_9999999998_i,~vg_sync_0_9999999998_u,\
         ~vg_sync_1_0000000001_i,~vg_sync_1_0000000001_u,~vg_sync_1_0000000002_i,~vg_sync_1_0000000002_u"
    );
    rollback_now(&database).await.expect("v3 rolls back");
    // Rolling back v2 with its triggers under the old names leaves none.
    as_an_earlier_build_named_them(&database);
    rollback_now(&database).await.expect("v2 rolls back");
    assert_eq!(sync_triggers(&database), "");
}

/// A write in replica mode (`session_replication_role = replica`: logical replication's apply
/// worker, a `pg_restore --disable-triggers`) fires only triggers enabled ALWAYS: the sync
/// triggers did not fire, a replicated v1 row failed the new column's NOT NULL check (23514,
/// which stops a subscription), and an update left v2's column stale. They are enabled
/// ALWAYS, on a partitioned table's partitions too.
#[tokio::test]
async fn writes_in_replica_mode_fire_the_sync_triggers() {
    let database = seeded(2).await;
    database.admin(
        "CREATE TABLE public.events (id bigint, at date NOT NULL, kind text NOT NULL,
             PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE public.events_all PARTITION OF events DEFAULT;
         INSERT INTO events VALUES (1, '2026-01-01', 'start')",
    );
    database
        .apply_text(
            r#"
[[tables]]
name = "models"
key = ["id"]
[[tables]]
name = "events"
key = ["id", "at"]
[[versions]]
name = "v1"
[[versions.tables]]
base = "models"
columns = ["id", "name", "size", "legacy_note"]
[[versions.tables]]
base = "events"
columns = ["id", "at", "kind"]
"#,
        )
        .await;
    start_text(
        &database,
        "0002.toml",
        r#"version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
column = { name = "label", type = "text", nullable = false }
up = "upper(name)"
[[operations]]
op = "add_column"
table = "events"
column = { name = "loud", type = "text", nullable = false }
up = "upper(kind)"
"#,
    )
    .await
    .expect("starts");
    let replica = database.client().await;
    exec(
        &replica,
        "SET session_replication_role = replica;
         INSERT INTO models (name, size) VALUES ('replicated', 1);
         UPDATE models SET name = 'changed' WHERE id = 1;
         INSERT INTO events VALUES (2, '2026-02-01', 'stop')",
    )
    .await;
    assert_eq!(
        lines(&replica, "SELECT id, label FROM models ORDER BY id").await,
        ["1|CHANGED", "2|MODEL-2", "3|REPLICATED"]
    );
    assert_eq!(
        lines(&replica, "SELECT id, loud FROM events ORDER BY id").await,
        ["1|START", "2|STOP"]
    );
}
