//! Migrations against a real Postgres: each operation end to end (start → clients at the old
//! and the new version read and write the same rows → complete; and start → rollback), a
//! failing migration leaves nothing, a killed backfill resumes, contract is refused while the
//! old version is in use. Clients here connect directly and set `viewgate.version` as the proxy
//! does for its sessions.

use crate::migration_support;
use crate::support;

use migration_support::{
    KillAfter, KillAtStep, at, base_columns, complete_now, rollback_now, seeded, start_killed,
    start_killed_at_step, start_text, start_watched, triggers,
};
use support::{exec, lines};
use viewgate::control::migrate::status::{MigrationStatus, StatusReport, status};
use viewgate::control::migrate::{MigrationFile, Progress};

const ADD_KIND: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
up = "CASE WHEN name LIKE 'bert%' THEN 'transformer' ELSE 'neural_network' END"
column = { name = "kind", type = "text", nullable = false, check = "kind <> ''" }
"#;

#[tokio::test]
async fn add_column_not_null_with_up_serves_both_versions_then_contracts() {
    let database = seeded(50).await;
    let outcome = start_text(&database, "0002.toml", ADD_KIND)
        .await
        .expect("starts");
    assert_eq!(outcome.rows_backfilled, 50);
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(&v2, "SELECT kind, count(*) FROM models_v2 GROUP BY kind").await,
        ["neural_network|50"],
        "existing rows backfilled with up"
    );
    exec(&v1, "INSERT INTO models_v1 (name) VALUES ('bert-large')").await;
    exec(
        &v2,
        "INSERT INTO models_v2 (name, kind) VALUES ('gpt', 'decoder')",
    )
    .await;
    exec(
        &v1,
        "UPDATE models_v1 SET name = 'bert-base' WHERE name = 'model-1'",
    )
    .await;
    assert_eq!(
        lines(&v2, "SELECT name, kind FROM models_v2 WHERE name IN ('bert-large', 'gpt', 'bert-base') ORDER BY name").await,
        ["bert-base|transformer", "bert-large|transformer", "gpt|decoder"],
        "v1 writes fill kind with up; v2 writes keep their own"
    );
    assert_eq!(
        lines(&v1, "SELECT count(*) FROM models_v1").await,
        ["52"],
        "v1 reads every row, including v2's"
    );
    let refused = v2
        .batch_execute("INSERT INTO models_v2 (name, kind) VALUES ('x', '')")
        .await
        .unwrap_err();
    assert_eq!(
        refused.code().map(|code| code.code()),
        Some("23514"),
        "the check holds for new rows"
    );

    // The default version is v1 (the spec applied none; set it): complete is refused.
    database.admin("UPDATE viewgate.settings SET default_version = 'v1'");
    let refused = complete_now(&database).await.unwrap_err().to_string();
    assert!(refused.contains("v1 is the default version"), "{refused}");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");

    complete_now(&database).await.expect("completes");
    assert_eq!(
        base_columns(&database),
        "id:bigint!,name:text!,size:integer!,legacy_note:text,kind:text!",
        "kind became a real NOT NULL column"
    );
    assert_eq!(triggers(&database), "0", "sync triggers are gone");
    assert_eq!(
        database.admin("SELECT string_agg(version || '=' || state, ',' ORDER BY version) FROM viewgate.versions"),
        "v1=retired,v2=active"
    );
    assert_eq!(
        database.admin("SELECT to_regclass('public.models_v1') IS NULL"),
        "t"
    );
    exec(
        &v2,
        "INSERT INTO models_v2 (name, kind) VALUES ('after', 'cnn')",
    )
    .await;
}

const CHANGE_SIZE: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "numeric(12,1)"
up = "size / 10.0"
down = "(size * 10)::integer"
[[operations]]
op = "rename_column"
table = "models"
from = "name"
to = "title"
[[operations]]
op = "drop_column"
table = "models"
column = "legacy_note"
[[operations]]
op = "create_index"
name = "models_title_idx"
table = "models"
columns = ["title"]
"#;

#[tokio::test]
async fn alter_rename_drop_roll_back_cleanly_then_complete() {
    let database = seeded(20).await;
    let before = base_columns(&database);
    start_text(&database, "0002.toml", CHANGE_SIZE)
        .await
        .expect("starts");
    // The new version's views are recorded with their column mapping (the proxy writes the
    // base table by it): the renamed column shows the base column the view reads.
    assert_eq!(
        database.admin(
            "SELECT c ->> 'base_column' FROM viewgate.version_objects o,
                    jsonb_array_elements(o.mapping -> 'columns') c
              WHERE o.version = 'v2' AND c ->> 'name' = 'title'"
        ),
        "name"
    );
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(&v2, "SELECT title, size FROM models_v2 WHERE id = 7").await,
        ["model-7|0.7"]
    );
    exec(&v2, "UPDATE models_v2 SET size = 4.2 WHERE id = 7").await;
    assert_eq!(
        lines(&v1, "SELECT name, size FROM models_v1 WHERE id = 7").await,
        ["model-7|42"],
        "down"
    );
    exec(&v1, "UPDATE models_v1 SET size = 90 WHERE id = 8").await;
    assert_eq!(
        lines(&v2, "SELECT size FROM models_v2 WHERE id = 8").await,
        ["9.0"],
        "up"
    );
    exec(
        &v2,
        "INSERT INTO models_v2 (title, size) VALUES ('new', 1.5)",
    )
    .await;
    assert_eq!(
        lines(
            &v1,
            "SELECT name, size, legacy_note FROM models_v1 WHERE name = 'new'"
        )
        .await,
        ["new|15|<null>"]
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_indexes WHERE indexname = 'models_title_idx'"),
        "1"
    );

    rollback_now(&database).await.expect("rolls back");
    assert_eq!(base_columns(&database), before, "the expand is undone");
    assert_eq!(triggers(&database), "0");
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_indexes WHERE indexname = 'models_title_idx'"),
        "0"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.versions WHERE version = 'v2'"),
        "0"
    );
    assert_eq!(
        lines(&v1, "SELECT name, size FROM models_v1 WHERE name = 'new'").await,
        ["new|15"],
        "writes made during the migration stay"
    );
    // `migrate status` tells of the rollback (it left rolled-back migrations out), without the
    // backfill the rollback dropped.
    let shown = |report: &StatusReport| -> Vec<(String, &'static str)> {
        let phase = |m: &MigrationStatus| (m.version.clone(), m.phase);
        report.migrations.iter().map(phase).collect()
    };
    let report = status(&database.client().await).await.unwrap();
    assert_eq!(shown(&report), [("v2".to_owned(), "rolled_back")]);
    let text = report.to_string();
    assert!(
        text.starts_with("v1 -> v2: rolled_back (file ") && !text.contains("backfill"),
        "{text}"
    );

    start_text(&database, "0002.toml", CHANGE_SIZE)
        .await
        .expect("starts again");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    let report = status(&database.client().await).await.unwrap();
    let history = [
        ("v2".to_owned(), "rolled_back"),
        ("v2".to_owned(), "completed"),
    ];
    assert_eq!(shown(&report), history);
    assert_eq!(
        base_columns(&database),
        "id:bigint!,title:text!,size:numeric(12,1)!",
        "renamed, retyped, dropped"
    );
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(&v2, "SELECT title, size FROM models_v2 WHERE id = 8").await,
        ["model-8|9.0"]
    );
    exec(
        &v2,
        "INSERT INTO models_v2 (title, size) VALUES ('later', 2.5)",
    )
    .await;
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_indexes WHERE indexname = 'models_title_idx'"),
        "1"
    );
}

#[tokio::test]
async fn a_failing_up_expression_leaves_nothing_behind() {
    let database = seeded(10).await;
    database.admin("UPDATE models SET legacy_note = 'not a number' WHERE id = 6");
    let before = base_columns(&database);
    let text = r#"
version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
up = "legacy_note::integer"
column = { name = "note_number", type = "integer" }
"#;
    let error = start_text(&database, "0002.toml", text)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("22P02"), "{error}");
    assert!(error.contains("backfilling public.models"), "{error}");
    assert!(error.contains("rolled back"), "{error}");
    assert_eq!(base_columns(&database), before);
    assert_eq!(triggers(&database), "0");
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.versions WHERE version = 'v2'"),
        "0"
    );
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations"),
        "rolled_back"
    );
    let recorded = database.admin(
        "SELECT action || ':' || success || ':' || coalesce(error, '') FROM viewgate.apply_history WHERE action LIKE 'migrate%' ORDER BY id",
    );
    assert!(recorded.contains("migrate_start:true:"), "{recorded}");
    assert!(
        recorded.contains("migrate_rollback:true:migration failed while backfilling"),
        "{recorded}"
    );
}

#[tokio::test]
async fn conflicts_with_the_live_schema_are_refused_before_any_change() {
    let database = seeded(3).await;
    let before = base_columns(&database);
    for (operation, expected) in [
        (
            r#"op = "add_column"
table = "models"
column = { name = "size", type = "integer" }"#,
            "already has a column size",
        ),
        (
            r#"op = "drop_column"
table = "models"
column = "nope""#,
            "has no column nope",
        ),
        (
            r#"op = "add_column"
table = "missing"
column = { name = "a", type = "integer" }"#,
            "has no table \"missing\"",
        ),
        (
            r#"op = "add_column"
table = "models"
column = { name = "a", type = "no_such_type" }"#,
            "no_such_type",
        ),
    ] {
        let text = format!("version = \"v2\"\nfrom = \"v1\"\n[[operations]]\n{operation}\n");
        let error = start_text(&database, "bad.toml", &text)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{expected}: {error}");
        assert_eq!(base_columns(&database), before);
        assert_eq!(
            database.admin("SELECT count(*) FROM viewgate.versions WHERE version = 'v2'"),
            "0"
        );
    }
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.apply_history WHERE action = 'migrate_start' AND NOT success AND error LIKE '%nothing was changed%'"),
        "4",
        "each refusal is on record"
    );
}

/// Found by the thirty-first red-team pass: where every role may create in a schema
/// (PostgreSQL 14's default on `public`), a client planted `public.lower(varchar)`, which the
/// backfill then ran as the catalog role. Such a database is refused before any change, with
/// the statement that fixes it; so is a CREATE granted to a client's role by name.
#[tokio::test]
async fn a_schema_anyone_may_create_in_is_refused_before_any_change() {
    let database = seeded(3).await;
    let before = base_columns(&database);
    database.admin("GRANT CREATE ON SCHEMA public TO PUBLIC");
    let text = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"add_column\"\ntable = \"models\"\nup = \"lower(name)\"\ncolumn = { name = \"lower_name\", type = \"text\", nullable = false }\n";
    let error = start_text(&database, "0002.toml", text)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("every role (PUBLIC) in public")
            && error.contains("REVOKE CREATE ON SCHEMA \"public\" FROM PUBLIC;"),
        "{error}"
    );
    assert_eq!(base_columns(&database), before);
    database.admin("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
    // The same given to the application's role by name, held by a role as a schema's owner
    // (the thirty-seventh pass planted a function in a schema the application's role owned),
    // or on the database (a client could create a schema of its own).
    database.admin(
        "CREATE ROLE \"App\" LOGIN; GRANT CREATE ON SCHEMA public TO \"App\";
         CREATE ROLE schema_owner LOGIN; CREATE SCHEMA appx AUTHORIZATION schema_owner;
         CREATE ROLE creator LOGIN; GRANT CREATE ON DATABASE postgres TO creator;
         CREATE ROLE planters NOLOGIN; GRANT CREATE ON SCHEMA public TO planters;
         CREATE ROLE setter LOGIN NOINHERIT IN ROLE planters",
    );
    let error = start_text(&database, "0002.toml", text)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("App in public")
            && error.contains("REVOKE CREATE ON SCHEMA \"public\" FROM \"App\";")
            && error.contains("schema_owner in appx")
            && error.contains("creator may create schemas in database postgres")
            // The thirty-eighth pass: a NOINHERIT member may still `SET ROLE` to the group.
            && error.contains("setter in public"),
        "{error}"
    );
    assert_eq!(base_columns(&database), before);
    database.admin(
        "REVOKE CREATE ON SCHEMA public FROM \"App\"; ALTER SCHEMA appx OWNER TO CURRENT_USER;
         REVOKE CREATE ON DATABASE postgres FROM creator; REVOKE CREATE ON SCHEMA public FROM planters",
    );
    start_text(&database, "0002.toml", text)
        .await
        .expect("starts once no client may create there");
}

#[tokio::test]
async fn a_killed_backfill_resumes_from_its_checkpoint_and_a_changed_file_is_refused() {
    let database = seeded(1000).await;
    let text = format!("{ADD_KIND}\n[settings]\nbatch_size = 100\n");
    let path = database.spec_file("0002.toml", &text);
    let file = MigrationFile::load(&path).unwrap();
    start_killed(&database, &file, &mut KillAfter(300)).await;
    let done: i64 = database
        .admin("SELECT (backfill -> 'public.models' ->> 'rows')::bigint FROM viewgate.migrations")
        .parse()
        .unwrap();
    assert_eq!(done, 300, "three batches committed with their checkpoint");
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations"),
        "backfilling"
    );
    // The last batch committed the pace before it; with no command running, `migrate status`
    // says the backfill is stopped rather than show that pace as if it went on.
    assert_eq!(
        database.admin(
            "SELECT (p ->> 'batch_rows') || ' ' || ((p ->> 'rows_per_second')::float8 > 0)::text
             FROM (SELECT backfill -> 'public.models' -> 'pacing' AS p FROM viewgate.migrations) s"
        ),
        "100 true"
    );
    let status = viewgate::control::migrate::status::status(&database.client().await)
        .await
        .unwrap()
        .to_string();
    assert!(
        status.contains(
            "v1 -> v2: backfilling, stopped: no `viewgate migrate start` is running; run it again on "
        ) && status.contains("backfill public.models: 300 of ~1000 rows (30%), stopped\n"),
        "{status}"
    );

    // The thirty-seventh red-team pass: `views apply` of a spec naming the backfilling
    // version made it active, its rows half filled.
    let spec_with_v2 = format!(
        "{}\n[[versions]]\nname = \"v2\"\n[[versions.tables]]\nbase = \"models\"\ncolumns = [\"id\", \"name\", \"size\", \"kind\"]\n",
        migration_support::SPEC
    );
    let path = database.spec_file("spec_with_v2.toml", &spec_with_v2);
    let applied = database.apply(&path).await.unwrap_err().to_string();
    assert!(applied.contains("still backfilling"), "{applied}");
    assert_eq!(
        database.admin("SELECT state FROM viewgate.versions WHERE version = 'v2'"),
        "pending"
    );

    // An UPDATE trigger made since the start, which replica mode would not skip: the resumed
    // backfill would fire it on every row, so the resume is refused before any batch.
    database.admin(
        "CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER keep BEFORE UPDATE ON models FOR EACH ROW EXECUTE FUNCTION keep();
         ALTER TABLE models ENABLE ALWAYS TRIGGER keep;",
    );
    let refused = start_text(&database, "0002.toml", &text)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("UPDATE trigger(s) or rule(s) keep")
            && refused.contains("nothing was changed"),
        "{refused}"
    );
    assert_eq!(
        database.admin(
            "SELECT phase || ':' || (backfill -> 'public.models' ->> 'rows') FROM viewgate.migrations"
        ),
        "backfilling:300"
    );
    database.admin("DROP TRIGGER keep ON models");

    let changed = start_text(
        &database,
        "0002.toml",
        &text.replace("'transformer'", "'tf'"),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(changed.contains("different file"), "{changed}");

    let outcome = start_text(&database, "0002.toml", &text)
        .await
        .expect("resumes");
    assert_eq!(outcome.how, "resumed");
    assert_eq!(
        outcome.rows_backfilled, 1000,
        "the remaining 700 and the 300 before"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM models WHERE kind IS NULL"),
        "0"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'viewgate_catalog_v2' AND table_name = 'columns'"),
        "1",
        "the resumed run made v2's catalog substitutes as it went live"
    );
}

/// The expand leaves a version's catalog substitutes to going live (they are the slowest part
/// of what it does under the table's lock); a schema of their name that viewgate did not make
/// is still refused before any change, not after the backfill.
#[tokio::test]
async fn a_foreign_schema_of_the_substitutes_name_is_refused_before_any_change() {
    let database = seeded(3).await;
    let before = base_columns(&database);
    database
        .admin("CREATE SCHEMA viewgate_catalog_v2; CREATE TABLE viewgate_catalog_v2.keep (x int)");
    let error = start_text(&database, "0002.toml", ADD_KIND)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("schema viewgate_catalog_v2 exists and is not viewgate's")
            && error.contains("nothing was changed"),
        "{error}"
    );
    assert_eq!(base_columns(&database), before);
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate_catalog_v2.keep"),
        "0"
    );
}

/// The new version's views are made in a transaction of their own after the expand's, which
/// holds the table's lock and so keeps them out of that window: a run killed between the two
/// leaves the new columns and their triggers without the views (the version's name reserved:
/// `views apply` cannot take it meanwhile), and the run that resumes makes them.
#[tokio::test]
async fn a_run_killed_between_the_expand_and_the_views_makes_them_when_resumed() {
    let database = seeded(300).await;
    start_killed_at_step(&database, "0002.toml", ADD_KIND, KillAtStep("views of v2")).await;
    assert_eq!(
        database.admin(
            "SELECT phase || ' ' || (SELECT count(*) FROM pg_attribute WHERE attrelid = 'models'::regclass AND attname = 'kind')
                    || ' ' || (SELECT state || ' ' || (definition IS NULL) FROM viewgate.versions WHERE version = 'v2')
                    || ' ' || (to_regclass('public.models_v2') IS NULL)
               FROM viewgate.migrations WHERE version = 'v2'"
        ),
        "backfilling 1 pending true true",
        "the expand committed and reserved the version's name, the views not yet"
    );
    let taking_v2 = format!(
        "{}\n[[versions]]\nname = \"v2\"\n[[versions.tables]]\nbase = \"models\"\ncolumns = [\"id\", \"name\"]\n",
        migration_support::SPEC
    );
    let refused = database
        .apply(&database.spec_file("v2.toml", &taking_v2))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("version v2 belongs to a migration that is still backfilling"),
        "`views apply` cannot take the reserved name: {refused}"
    );
    let outcome = start_text(&database, "0002.toml", ADD_KIND)
        .await
        .expect("the run resumes");
    assert_eq!((outcome.how, outcome.rows_backfilled), ("resumed", 300));
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(
            &v2,
            "SELECT count(*) FROM models WHERE kind = 'transformer' OR kind = 'neural_network'"
        )
        .await,
        vec!["300"]
    );
}

/// A migration killed between the expand and its views is rolled back as any other: its
/// columns and triggers go, and there are no views to drop.
#[tokio::test]
async fn a_run_killed_between_the_expand_and_the_views_rolls_back_whole() {
    let database = seeded(30).await;
    let before = base_columns(&database);
    start_killed_at_step(&database, "0002.toml", ADD_KIND, KillAtStep("views of v2")).await;
    assert_ne!(base_columns(&database), before, "the expand committed");
    rollback_now(&database).await.expect("rolled back");
    assert_eq!(base_columns(&database), before);
    assert_eq!(triggers(&database), "0");
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations WHERE version = 'v2'"),
        "rolled_back"
    );
}

/// A view name the new version needs, taken by a table of the application's, is refused
/// before any change: the names are checked in the expand before its first statement that
/// changes anything, though the views are made after it.
#[tokio::test]
async fn a_view_name_taken_by_a_table_is_refused_before_any_change() {
    let database = seeded(3).await;
    let before = base_columns(&database);
    database.admin("CREATE TABLE public.models_v2 (x int)");
    let error = start_text(&database, "0002.toml", ADD_KIND)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "would create view public.models_v2, but a table of that name already exists"
        ) && error.contains("nothing was changed"),
        "{error}"
    );
    assert_eq!(base_columns(&database), before);
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.migrations WHERE version = 'v2'"),
        "0"
    );
}

/// A view name taken between the expand and the views (while a killed run lay stopped) is
/// found when the resumed run makes them: the migration is rolled back whole and the
/// application's table left as it was.
#[tokio::test]
async fn a_view_name_taken_after_the_expand_rolls_the_migration_back_whole() {
    let database = seeded(3).await;
    let before = base_columns(&database);
    start_killed_at_step(&database, "0002.toml", ADD_KIND, KillAtStep("views of v2")).await;
    database
        .admin("CREATE TABLE public.models_v2 (x int); INSERT INTO public.models_v2 VALUES (7)");
    let error = start_text(&database, "0002.toml", ADD_KIND)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "would create view public.models_v2, but a table of that name already exists"
        ) && error.contains("the migration was rolled back: nothing of it remains"),
        "{error}"
    );
    assert_eq!(base_columns(&database), before);
    assert_eq!(triggers(&database), "0");
    assert_eq!(
        database.admin(
            "SELECT (SELECT string_agg(x::text, ',') FROM public.models_v2) || ' ' || phase
               FROM viewgate.migrations WHERE version = 'v2'"
        ),
        "7 rolled_back"
    );
}

/// Progress that deletes all but ten rows when the backfill begins, and keeps the backfill's
/// last advance.
struct ShrinkingTable {
    conninfo: String,
    last: Option<(u64, u64)>,
}

impl Progress for ShrinkingTable {
    fn step(&mut self, description: &str) {
        if description.starts_with("backfill") {
            let deleted = std::process::Command::new("psql")
                .args([
                    &self.conninfo,
                    "-q",
                    "-c",
                    "DELETE FROM models WHERE id > 10",
                ])
                .output()
                .expect("psql runs");
            assert!(deleted.status.success(), "{deleted:?}");
        }
    }
    fn backfill(&mut self, _table: &str, rows: u64, estimate: u64, _rate: f64) {
        self.last = Some((rows, estimate));
    }
}

#[tokio::test]
async fn a_backfill_that_finds_fewer_rows_than_estimated_ends_at_its_own_total() {
    let database = seeded(100).await;
    let mut progress = ShrinkingTable {
        conninfo: database.url(),
        last: None,
    };
    start_watched(&database, "0002.toml", ADD_KIND, &mut progress)
        .await
        .expect("starts");
    assert_eq!(
        progress.last,
        Some((10, 10)),
        "the last advance says done (its bar finishes, its JSON line is printed), not 10 of 100"
    );
}

/// Progress that, when the backfill begins, has another session update row 5 and hold its lock
/// for a second: the backfill's batch takes its snapshot before that update commits.
struct ConcurrentWriter {
    conninfo: String,
    started: Option<std::thread::JoinHandle<()>>,
}

impl Progress for ConcurrentWriter {
    fn step(&mut self, description: &str) {
        if description.starts_with("backfill") && self.started.is_none() {
            let conninfo = self.conninfo.clone();
            self.started = Some(std::thread::spawn(move || {
                let status = std::process::Command::new("psql")
                    .args([&conninfo, "-q", "-c", "BEGIN; UPDATE models SET size = 999 WHERE id = 5; SELECT pg_sleep(1); COMMIT"])
                    .output()
                    .expect("psql runs");
                assert!(status.status.success(), "{status:?}");
            }));
            // Let the writer take the row's lock before the first batch starts.
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
    fn backfill(&mut self, _table: &str, _rows: u64, _estimate: u64, _rate: f64) {}
}

#[tokio::test]
async fn the_backfill_never_writes_a_value_computed_from_a_stale_row() {
    let database = seeded(20).await;
    let text = r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "bigint"
up = "size::bigint * 1000"
down = "(size / 1000)::integer"
"#;
    let mut writer = ConcurrentWriter {
        conninfo: database.url(),
        started: None,
    };
    start_watched(&database, "0002.toml", text, &mut writer)
        .await
        .expect("starts");
    writer
        .started
        .take()
        .expect("the writer ran")
        .join()
        .expect("the writer succeeded");
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(&v2, "SELECT size FROM models_v2 WHERE id = 5").await,
        ["999000"],
        "the batch waited for the writer's lock and recomputed from the row it committed"
    );
    assert_eq!(
        database.admin(
            "SELECT count(*) FROM models WHERE _vg_v2_size IS DISTINCT FROM size::bigint * 1000"
        ),
        "0"
    );
}

#[tokio::test]
async fn a_second_migration_command_and_a_table_without_a_key_are_refused() {
    let database = seeded(3).await;
    // Another migration command holds the lock: this one is refused at once.
    let holder = database.client().await;
    exec(
        &holder,
        "SELECT pg_advisory_lock(hashtext('viewgate.migrate'))",
    )
    .await;
    let busy = start_text(&database, "0002.toml", ADD_KIND)
        .await
        .unwrap_err()
        .to_string();
    let holder_pid = lines(&holder, "SELECT pg_backend_pid()").await.join("");
    assert!(
        busy.contains("another viewgate migration command is running")
            && busy.contains(&format!("session of pid {holder_pid}, "))
            && busy.contains(&format!("SELECT pg_terminate_backend({holder_pid})")),
        "{busy}"
    );
    drop(holder);

    database.admin("CREATE TABLE public.keyless (name text, size integer)");
    database
        .apply_text(
            r#"
[[tables]]
name = "keyless"
[[versions]]
name = "v1"
[[versions.tables]]
base = "keyless"
columns = ["name", "size"]
"#,
        )
        .await;
    let text = r#"
version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "keyless"
up = "size * 2"
column = { name = "double", type = "integer" }
"#;
    let error = start_text(&database, "0002.toml", text)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("has no primary key"), "{error}");
    assert!(error.contains("nothing was changed"), "{error}");
    assert_eq!(database.admin("SELECT count(*) FROM pg_attribute WHERE attrelid = 'keyless'::regclass AND attname = 'double'"), "0");
}

/// A constant default reaches existing rows through the catalog: no backfill, no rewrite. Any
/// other default is kept for new rows and backfilled into the existing ones.
#[tokio::test]
async fn add_column_with_a_constant_default_needs_no_backfill() {
    let database = seeded(50).await;
    let filenode = || database.admin("SELECT pg_relation_filenode('models')");
    let before = filenode();
    let constant = r#"
version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
column = { name = "status", type = "text", nullable = false, default = "'active'" }
"#;
    let outcome = start_text(&database, "0002.toml", constant)
        .await
        .expect("starts");
    assert_eq!(outcome.rows_backfilled, 0, "the catalog holds the default");
    assert_eq!(filenode(), before, "the table was not rewritten");
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(&v1, "INSERT INTO models_v1 (name) VALUES ('from-v1')").await;
    assert_eq!(
        lines(
            &v2,
            "SELECT status, count(*) FROM models_v2 GROUP BY status"
        )
        .await,
        ["active|51"],
        "existing rows and v1's insert read the default"
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        database.admin("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'models'::regclass AND attname = 'status'"),
        "t"
    );

    let volatile = r#"
version = "v3"
from = "v2"
[[operations]]
op = "add_column"
table = "models"
column = { name = "token", type = "text", default = "md5(random()::text)" }
"#;
    let outcome = start_text(&database, "0003.toml", volatile)
        .await
        .expect("starts");
    assert_eq!(
        outcome.rows_backfilled, 51,
        "a volatile default is backfilled"
    );
    assert_eq!(filenode(), before, "still without a rewrite");
    assert_eq!(
        database.admin("SELECT count(DISTINCT token) FROM models"),
        "51",
        "each existing row got its own value"
    );
}
