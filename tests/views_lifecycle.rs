//! A version's life after the first apply: status and drift, repair, spec changes, retiring,
//! the schema-per-version layout, `viewgate init`, and user templates, partly through the CLI.

use crate::support;

use std::process::Command;

use support::{Database, exec, lines, repo_file};
use viewgate::catalog_read::load_routing_map;
use viewgate::control::ControlError;
use viewgate::control::templates::Templates;
use viewgate::control::views::apply::LockSettings;
use viewgate::control::views::retire;
use viewgate::control::views::spec::Spec;
use viewgate::control::views::status;

const SCHEMA: &str = "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, kind text);
                      CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)";

fn spec(layout: &str, v2_tables: &str) -> String {
    format!(
        r#"
[options]
layout = "{layout}"

[[tables]]
name = "items"
[[tables]]
name = "notes"

[[versions]]
name = "v1"
[[versions.tables]]
base = "items"
columns = ["id", "name"]

[[versions]]
name = "v2"
{v2_tables}
"#
    )
}

const V2_TABLES: &str = r#"
[[versions.tables]]
base = "items"
columns = ["id", "name", { name = "kind", expr = "COALESCE(kind, 'plain')", write = { kind = "NEW.kind" } }]
[[versions.tables]]
base = "notes"
columns = ["id", "body"]
"#;

fn viewgate(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_viewgate"))
        .args(args)
        .env_remove("VIEWGATE_DATABASE")
        .output()
        .expect("viewgate runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn report(database: &Database, path: &std::path::Path) -> status::StatusReport {
    let spec = Spec::load(path).expect("spec");
    status::status(&database.client().await, &spec, &Templates::built_in())
        .await
        .expect("status")
}

fn state_of<'a>(report: &'a status::StatusReport, version: &str) -> &'a status::VersionStatus {
    report
        .versions
        .iter()
        .find(|status| status.version == version)
        .expect("version listed")
}

#[tokio::test]
async fn status_reports_drift_and_reapply_repairs_it() {
    let database = Database::start();
    database.admin(SCHEMA);
    let path = database.spec_file("viewgate.toml", &spec("suffix", V2_TABLES));

    let before = report(&database, &path).await;
    assert!(!before.catalog_present);
    assert_eq!(state_of(&before, "v1").state, "not applied");

    database.apply(&path).await.expect("applies");
    let clean = report(&database, &path).await;
    assert!(clean.is_clean(), "{}", clean.to_text());

    // Someone edits one view and drops another by hand.
    database.admin("CREATE OR REPLACE VIEW items_v1 AS SELECT id, upper(name) AS name FROM items");
    database.admin("DROP VIEW notes_v2");
    let drifted = report(&database, &path).await;
    assert!(!drifted.is_clean());
    assert_eq!(state_of(&drifted, "v1").state, "drifted");
    assert_eq!(state_of(&drifted, "v1").objects[0].state, "drifted");
    let v2 = state_of(&drifted, "v2");
    assert_eq!(v2.state, "drifted");
    let notes = v2
        .objects
        .iter()
        .find(|object| object.table_name == "notes")
        .expect("notes");
    assert_eq!(
        (notes.view.as_str(), notes.state),
        ("public.notes_v2", "missing")
    );

    // The CLI shows the same, as text and as JSON.
    let url = database.url();
    let spec_arg = path.to_string_lossy().into_owned();
    let (ok, text, stderr) =
        viewgate(&["views", "status", "--spec", &spec_arg, "--database", &url]);
    assert!(ok, "{stderr}");
    assert!(text.contains("version v1: drifted"), "{text}");
    assert!(text.contains("public.notes_v2"), "{text}");
    let (ok, json, stderr) = viewgate(&[
        "views",
        "status",
        "--spec",
        &spec_arg,
        "--database",
        &url,
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(json["versions"][0]["version"], "v1");
    assert_eq!(json["versions"][0]["state"], "drifted");
    assert_eq!(json["versions"][1]["objects"][1]["state"], "missing");

    // Re-applying repairs exactly the drifted versions.
    let (ok, out, stderr) = viewgate(&["views", "apply", "--spec", &spec_arg, "--database", &url]);
    assert!(ok, "{stderr}");
    assert!(out.contains("applied versions v1, v2"), "{out}");
    assert!(report(&database, &path).await.is_clean());
    let client = database.client().await;
    exec(&client, "INSERT INTO items_v1 (name) VALUES ('lower')").await;
    assert_eq!(lines(&client, "SELECT name FROM items_v1").await, ["lower"]);
}

#[tokio::test]
async fn a_changed_spec_is_pending_until_applied_and_drops_what_it_no_longer_lists() {
    let database = Database::start();
    database.admin(SCHEMA);
    let path = database.spec_file("viewgate.toml", &spec("suffix", V2_TABLES));
    database.apply(&path).await.expect("applies");

    let without_notes = V2_TABLES
        .split("[[versions.tables]]\nbase = \"notes\"")
        .next()
        .expect("items part")
        .to_owned();
    std::fs::write(&path, spec("suffix", &without_notes)).expect("spec changed");
    let pending = report(&database, &path).await;
    assert_eq!(state_of(&pending, "v1").state, "applied");
    let v2 = state_of(&pending, "v2");
    assert_eq!(v2.state, "pending");
    assert_ne!(v2.spec_checksum, v2.applied_checksum);
    assert!(v2.objects.iter().any(|object| object.state == "stale"));

    let outcome = database.apply(&path).await.expect("applies the change");
    assert_eq!(outcome.applied, ["v2"], "{outcome}");
    assert_eq!(outcome.unchanged, ["v1"]);
    assert_eq!(outcome.dropped, ["public.notes_v2"]);
    assert_eq!(
        database.admin("SELECT to_regclass('notes_v2') IS NULL"),
        "t"
    );
    assert!(report(&database, &path).await.is_clean());
}

#[tokio::test]
async fn drop_retires_a_version_but_never_the_default_one() {
    let database = Database::start();
    database.admin(SCHEMA);
    let path = database.spec_file("viewgate.toml", &spec("suffix", V2_TABLES));
    database.apply(&path).await.expect("applies");
    let locks = LockSettings {
        lock_timeout: std::time::Duration::from_millis(500),
        max_attempts: 2,
    };

    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    let mut client = database.client().await;
    let error = retire::retire(&mut client, "v2", &Templates::built_in(), locks)
        .await
        .expect_err("default version");
    assert!(
        matches!(error, ControlError::VersionIsDefault(_)),
        "{error}"
    );
    assert_eq!(
        database.admin("SELECT to_regclass('items_v2') IS NOT NULL"),
        "t"
    );

    let url = database.url();
    let (ok, out, stderr) = viewgate(&["views", "drop", "--version", "v2", "--database", &url]);
    assert!(!ok, "{out}");
    assert!(stderr.contains("default version"), "{stderr}");

    database.admin("UPDATE viewgate.settings SET default_version = 'v1'");
    let (ok, out, stderr) = viewgate(&["views", "drop", "--version", "v2", "--database", &url]);
    assert!(ok, "{stderr}");
    assert!(out.contains("retired version v2"), "{out}");
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_class WHERE relname IN ('items_v2', 'notes_v2')"),
        "0"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_proc WHERE proname = 'items_v2_write'"),
        "0",
        "the trigger function went with the view"
    );
    assert_eq!(
        database.admin("SELECT state FROM viewgate.versions WHERE version = 'v2'"),
        "retired"
    );
    let map = load_routing_map(&client).await.expect("routing map");
    assert_eq!(map.default_version.as_deref(), Some("v1"));
    assert!(!map.versions.contains_key("v2"));
    assert!(map.view_for("v1", "items").is_some());
    assert_eq!(
        database.admin("SELECT action, success FROM viewgate.apply_history ORDER BY id"),
        "apply|t\ndrop|f\ndrop|f\ndrop|t"
    );

    let error = retire::retire(&mut client, "v9", &Templates::built_in(), locks)
        .await
        .expect_err("unknown");
    assert!(matches!(error, ControlError::UnknownVersion(_)), "{error}");
}

#[tokio::test]
async fn schema_per_version_layout() {
    let database = Database::start();
    database.admin(SCHEMA);
    let path = database.spec_file("viewgate.toml", &spec("schema", V2_TABLES));
    let outcome = database.apply(&path).await.expect("applies");
    assert_eq!(outcome.applied, ["v1", "v2"]);

    let v1 = database.client().await;
    let v2 = database.client().await;
    exec(&v1, "SET search_path = v1, public").await;
    exec(&v2, "SET search_path = v2, public").await;
    exec(&v1, "INSERT INTO items (name) VALUES ('from v1')").await;
    exec(
        &v2,
        "INSERT INTO items (name, kind) VALUES ('from v2', 'special')",
    )
    .await;
    assert_eq!(
        lines(&v2, "SELECT name, kind FROM items ORDER BY id").await,
        ["from v1|plain", "from v2|special"]
    );
    assert_eq!(
        lines(&v1, "SELECT * FROM items ORDER BY id").await,
        ["1|from v1", "2|from v2"]
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM public.items"),
        "2",
        "both wrote the one base table"
    );
    let map = load_routing_map(&v1).await.expect("routing map");
    let items = map.view_for("v2", "items").expect("v2 items");
    assert_eq!(
        (items.view_schema.as_str(), items.view_name.as_str()),
        ("v2", "items")
    );

    let mut client = database.client().await;
    let locks = LockSettings {
        lock_timeout: std::time::Duration::from_millis(500),
        max_attempts: 2,
    };
    retire::retire(&mut client, "v2", &Templates::built_in(), locks)
        .await
        .expect("retires");
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_namespace WHERE nspname = 'v2'"),
        "0",
        "the emptied version schema is dropped"
    );
}

#[tokio::test]
async fn init_creates_the_catalog_idempotently() {
    let database = Database::start();
    let url = database.url();
    for _ in 0..2 {
        let (ok, out, stderr) = viewgate(&["init", "--database", &url]);
        assert!(ok, "{stderr}");
        assert!(out.contains("catalog is ready"), "{out}");
    }
    assert_eq!(
        database.admin(
            "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'viewgate' AND c.relkind = 'r'"
        ),
        "apply_history,catalog_change,cutover_guard_counts,cutover_guards,migrations,proxies,routing_rules,settings,shadow_counts,shadow_diffs,shadow_runs,version_objects,versions"
    );
    assert_eq!(
        database.admin("SELECT count(*), bool_and(default_version IS NULL) FROM viewgate.settings"),
        "1|t"
    );
    assert_eq!(
        database.admin("SELECT string_agg(action, ',') FROM viewgate.apply_history"),
        "init,init"
    );
}

#[tokio::test]
async fn user_templates_change_what_is_generated() {
    let database = Database::start();
    database.admin(SCHEMA);
    database.admin("CREATE ROLE reporting");
    let templates = tempfile::tempdir().expect("temp dir");
    let view_template =
        std::fs::read_to_string(repo_file("view-templates/view.sql.j2")).expect("shipped template");
    std::fs::write(
        templates.path().join("view.sql.j2"),
        format!(
            "{view_template}GRANT SELECT ON {{{{ view.view_schema | ident }}}}.{{{{ view.view_name | ident }}}} TO reporting;\n"
        ),
    )
    .expect("custom template");
    let path = database.spec_file("viewgate.toml", &spec("suffix", V2_TABLES));
    let spec_arg = path.to_string_lossy().into_owned();
    let templates_arg = templates.path().to_string_lossy().into_owned();

    let url = database.url();
    let (ok, sql, stderr) = viewgate(&[
        "views",
        "generate",
        "--spec",
        &spec_arg,
        "--database",
        &url,
        "--templates",
        &templates_arg,
    ]);
    assert!(ok, "{stderr}");
    assert!(
        sql.contains("GRANT SELECT ON \"public\".\"items_v1\" TO reporting;"),
        "{sql}"
    );
    assert!(!sql.contains("OFFLINE"), "checked against the database");
    assert!(
        sql.contains("ALTER VIEW \"public\".\"items_v2\" ALTER COLUMN \"id\" SET DEFAULT nextval('items_id_seq'::regclass);"),
        "online generation shows inherited defaults: {sql}"
    );
    assert_eq!(
        database.admin("SELECT to_regclass('items_v1') IS NULL"),
        "t",
        "generate changed nothing"
    );
    let (ok, _, stderr) = viewgate(&[
        "views",
        "apply",
        "--spec",
        &spec_arg,
        "--database",
        &url,
        "--templates",
        &templates_arg,
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        database.admin("SELECT has_table_privilege('reporting', 'items_v2', 'SELECT')"),
        "t"
    );
}

/// A `drop_view.sql.j2` copied before the substitutes' drop moved to
/// `drop_version_catalog.sql.j2` reads `catalog_schema`, which templates render strictly:
/// it still renders, and dropping the schema twice is harmless.
#[tokio::test]
async fn a_drop_view_template_copied_before_the_catalog_drop_moved_out_still_works() {
    let database = Database::start();
    database.admin(SCHEMA);
    let path = database.spec_file("viewgate.toml", &spec("suffix", V2_TABLES));
    database.apply(&path).await.expect("applies");
    database.admin("UPDATE viewgate.settings SET default_version = 'v1'");
    let templates = tempfile::tempdir().expect("temp dir");
    let drop_view =
        std::fs::read_to_string(repo_file("view-templates/drop_view.sql.j2")).expect("shipped");
    std::fs::write(
        templates.path().join("drop_view.sql.j2"),
        format!("{drop_view}DROP SCHEMA IF EXISTS {{{{ catalog_schema | ident }}}} CASCADE;\n"),
    )
    .expect("an old-style copy");
    let substitutes = "SELECT count(*) FROM pg_namespace WHERE nspname = 'viewgate_catalog_v2'";
    assert_eq!(database.admin(substitutes), "1");

    let url = database.url();
    let templates_arg = templates.path().to_string_lossy().into_owned();
    let (ok, out, stderr) = viewgate(&[
        "views",
        "drop",
        "--version",
        "v2",
        "--database",
        &url,
        "--templates",
        &templates_arg,
    ]);
    assert!(ok, "{stderr}");
    assert!(out.contains("retired version v2"), "{out}");
    assert_eq!(database.admin(substitutes), "0");
}

#[tokio::test]
async fn apply_and_drop_notify_listening_proxies_and_noops_stay_quiet() {
    let database = Database::start();
    database.admin(SCHEMA);
    let (listener, mut connection) =
        tokio_postgres::connect(&database.url(), tokio_postgres::NoTls)
            .await
            .expect("connects");
    let (sender, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) =
            std::future::poll_fn(|context| connection.poll_message(context)).await
        {
            if let tokio_postgres::AsyncMessage::Notification(notification) = message
                // The catalog's event trigger announces the views' DDL too.
                && notification.payload() != "relations"
            {
                let _ = sender.send((
                    notification.channel().to_owned(),
                    notification.payload().to_owned(),
                ));
            }
        }
    });
    listener
        .batch_execute("LISTEN viewgate_control")
        .await
        .expect("listens");

    let path = database.spec_file("viewgate.toml", &spec("suffix", V2_TABLES));
    database.apply(&path).await.expect("applies");
    let received = tokio::time::timeout(std::time::Duration::from_secs(5), notifications.recv())
        .await
        .expect("notified in time")
        .expect("a notification");
    assert_eq!(
        received,
        (
            "viewgate_control".to_owned(),
            r#"{"action":"apply","versions":["v1","v2"]}"#.to_owned()
        )
    );

    database.apply(&path).await.expect("no-op");
    let mut client = database.client().await;
    let locks = LockSettings {
        lock_timeout: std::time::Duration::from_millis(500),
        max_attempts: 2,
    };
    retire::retire(&mut client, "v1", &Templates::built_in(), locks)
        .await
        .expect("retires");
    let received = tokio::time::timeout(std::time::Duration::from_secs(5), notifications.recv())
        .await
        .expect("notified in time")
        .expect("a notification");
    assert_eq!(
        received.1, r#"{"action":"drop","versions":["v1"]}"#,
        "the no-op in between sent nothing"
    );
}

/// The catalog substitutes' schema is viewgate's only when the applying role is a member of
/// its owner, whatever its comment says (any owner may write one): a `viewgate_catalog_v2`
/// another role made with a forged `Managed by viewgate:` comment is refused by `migrate
/// start` before any change, and kept. Found by the fortieth red-team pass: the backfill ran,
/// going live failed and so did the rollback ("must be owner"), half-applied.
#[tokio::test]
async fn a_forged_substitutes_schema_of_another_role_is_refused_before_any_change_and_kept() {
    let database = Database::start();
    database.admin(
        "CREATE ROLE vg LOGIN; GRANT CREATE ON DATABASE postgres TO vg;
         GRANT CREATE ON SCHEMA public TO vg;
         CREATE ROLE intruder;
         CREATE SCHEMA viewgate_catalog_v2 AUTHORIZATION intruder;
         COMMENT ON SCHEMA viewgate_catalog_v2 IS 'Managed by viewgate: the catalog as version v2 sees it.';
         CREATE TABLE viewgate_catalog_v2.keep (x int);
         ALTER TABLE viewgate_catalog_v2.keep OWNER TO intruder",
    );
    let (mut client, connection) = tokio_postgres::connect(
        &database.cluster.url("vg", "postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    exec(
        &client,
        "CREATE TABLE public.models (id bigserial PRIMARY KEY, name text NOT NULL)",
    )
    .await;
    let spec = database.spec_file(
        "viewgate.toml",
        "[[tables]]\nname = \"models\"\nkey = [\"id\"]\n\n[[versions]]\nname = \"v1\"\n[[versions.tables]]\nbase = \"models\"\ncolumns = [\"id\", \"name\"]\n",
    );
    let spec = Spec::load(&spec).unwrap();
    viewgate::control::views::apply::apply(
        &mut client,
        &spec,
        &Templates::built_in(),
        support::quick_locks(),
    )
    .await
    .unwrap();
    let migration = database.spec_file(
        "0002.toml",
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"add_column\"\ntable = \"models\"\nup = \"'k'\"\ncolumn = { name = \"kind\", type = \"text\" }\n",
    );
    let file = viewgate::control::migrate::MigrationFile::load(&migration).unwrap();
    let error = viewgate::control::migrate::start::start(
        &mut client,
        (&file, &Default::default()),
        &Templates::built_in(),
        &mut viewgate::control::migrate::Silent,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("schema viewgate_catalog_v2 exists and is not viewgate's")
            && error.contains("nothing was changed"),
        "{error}"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.models'::regclass AND attname = 'kind'"),
        "0"
    );
    // `views apply` of a v2 is refused by the substitutes' own guard, not by Postgres's
    // "must be owner" halfway.
    let with_v2 = database.spec_file(
        "viewgate2.toml",
        "[[tables]]\nname = \"models\"\nkey = [\"id\"]\n\n[[versions]]\nname = \"v1\"\n[[versions.tables]]\nbase = \"models\"\ncolumns = [\"id\", \"name\"]\n\n[[versions]]\nname = \"v2\"\n[[versions.tables]]\nbase = \"models\"\ncolumns = [\"id\"]\n",
    );
    let error = viewgate::control::views::apply::apply(
        &mut client,
        &Spec::load(&with_v2).unwrap(),
        &Templates::built_in(),
        support::quick_locks(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("schema viewgate_catalog_v2 exists and is not viewgate's"),
        "{error}"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate_catalog_v2.keep"),
        "0"
    );
}
