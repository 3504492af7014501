//! Each migration operation end to end against a real Postgres: start, clients at the old and
//! the new version write and read the same rows, then complete (or roll back), as pgroll tests
//! each of its operations. And a chain: v1, v2 and v3 live and writable at once.

use crate::migration_support;
use crate::support;

use migration_support::{
    at, base_columns, complete_now, rollback_now, seeded, start_text, triggers,
};
use support::{exec, lines};

fn migration(operations: &str) -> String {
    format!("version = \"v2\"\nfrom = \"v1\"\n{operations}")
}

#[tokio::test]
async fn split_column_and_merge_back() {
    let database = seeded(3).await;
    database.admin("UPDATE models SET name = 'ada lovelace' WHERE id = 1");
    let split = migration(
        r#"
[[operations]]
op = "split_column"
table = "models"
column = "name"
down = "first || ' ' || last"
into = [
    { column = { name = "first", type = "text" }, up = "split_part(name, ' ', 1)" },
    { column = { name = "last", type = "text" }, up = "split_part(name, ' ', 2)" },
]
"#,
    );
    start_text(&database, "0002.toml", &split)
        .await
        .expect("starts");
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(&v2, "SELECT first, last FROM models_v2 WHERE id = 1").await,
        ["ada|lovelace"]
    );
    exec(
        &v2,
        "INSERT INTO models_v2 (first, last) VALUES ('alan', 'turing')",
    )
    .await;
    assert_eq!(
        lines(&v1, "SELECT name FROM models_v1 WHERE id = 4").await,
        ["alan turing"],
        "down"
    );
    exec(
        &v1,
        "UPDATE models_v1 SET name = 'grace hopper' WHERE id = 2",
    )
    .await;
    assert_eq!(
        lines(&v2, "SELECT first, last FROM models_v2 WHERE id = 2").await,
        ["grace|hopper"],
        "up"
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        base_columns(&database),
        "id:bigint!,size:integer!,legacy_note:text,first:text,last:text"
    );

    let merge = r#"
version = "v3"
from = "v2"
[[operations]]
op = "merge_columns"
table = "models"
columns = ["first", "last"]
into = { name = "full_name", type = "text" }
up = "first || ' ' || last"
down = { first = "split_part(full_name, ' ', 1)", last = "split_part(full_name, ' ', 2)" }
"#;
    start_text(&database, "0003.toml", merge)
        .await
        .expect("starts");
    let v3 = at(&database, "v3").await;
    assert_eq!(
        lines(&v3, "SELECT full_name FROM models_v3 WHERE id = 4").await,
        ["alan turing"]
    );
    exec(
        &v3,
        "INSERT INTO models_v3 (full_name) VALUES ('barbara liskov')",
    )
    .await;
    assert_eq!(
        lines(
            &v2,
            "SELECT first, last FROM models_v2 WHERE first = 'barbara'"
        )
        .await,
        ["barbara|liskov"]
    );
}

#[tokio::test]
async fn tables_are_created_renamed_and_dropped() {
    let database = seeded(2).await;
    database.admin("CREATE TABLE public.old_log (id bigserial PRIMARY KEY, line text)");
    let spec = r#"
[[tables]]
name = "models"
key = ["id"]

[[tables]]
name = "old_log"
key = ["id"]

[[versions]]
name = "v1"
[[versions.tables]]
base = "models"
columns = ["id", "name", "size", "legacy_note"]
[[versions.tables]]
base = "old_log"
columns = ["id", "line"]
"#;
    database.apply_text(spec).await;
    let text = migration(
        r#"
[[operations]]
op = "create_table"
table = "tags"
columns = [
    { name = "id", type = "bigserial", primary_key = true },
    { name = "model_id", type = "bigint", nullable = false, references = { table = "models", column = "id", on_delete = "cascade" } },
    { name = "label", type = "text", nullable = false, unique = true },
]
[[operations]]
op = "rename_table"
from = "models"
to = "machine_models"
[[operations]]
op = "drop_table"
table = "old_log"
"#,
    );
    start_text(&database, "0002.toml", &text)
        .await
        .expect("starts");
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(
        &v2,
        "INSERT INTO tags_v2 (model_id, label) VALUES (1, 'vision')",
    )
    .await;
    exec(
        &v2,
        "INSERT INTO machine_models_v2 (name) VALUES ('via v2')",
    )
    .await;
    assert_eq!(
        lines(&v1, "SELECT name FROM models_v1 WHERE id = 3").await,
        ["via v2"]
    );
    assert!(
        v2.batch_execute("INSERT INTO tags_v2 (model_id, label) VALUES (99, 'x')")
            .await
            .is_err(),
        "the foreign key holds"
    );
    exec(
        &v1,
        "INSERT INTO old_log_v1 (line) VALUES ('v1 still logs')",
    )
    .await;

    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(database.admin("SELECT to_regclass('public.old_log') IS NULL, to_regclass('public.machine_models') IS NOT NULL, to_regclass('public.models') IS NULL"), "t|t|t");
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(&v2, "SELECT count(*) FROM machine_models_v2").await,
        ["3"]
    );
    assert_eq!(lines(&v2, "SELECT label FROM tags_v2").await, ["vision"]);
    assert_eq!(
        database.admin("SELECT base_table FROM viewgate.version_objects WHERE version = 'v2' AND table_name = 'machine_models'"),
        "machine_models",
        "the catalog follows the physical rename"
    );
}

#[tokio::test]
async fn constraints_and_raw_sql_start_and_roll_back() {
    let database = seeded(5).await;
    let text = migration(
        r#"
[[operations]]
op = "add_constraint"
table = "models"
name = "models_size_positive"
type = "check"
check = "size >= 0"
[[operations]]
op = "add_constraint"
table = "models"
name = "models_name_key"
type = "unique"
columns = ["name"]
[[operations]]
op = "raw_sql"
up = "CREATE TABLE public.audit_marker (note text)"
down = "DROP TABLE public.audit_marker"
"#,
    );
    start_text(&database, "0002.toml", &text)
        .await
        .expect("starts");
    let v2 = at(&database, "v2").await;
    let negative = v2
        .batch_execute("INSERT INTO models_v2 (name, size) VALUES ('neg', -1)")
        .await
        .unwrap_err();
    assert_eq!(negative.code().map(|code| code.code()), Some("23514"));
    let duplicate = v2
        .batch_execute("INSERT INTO models_v2 (name) VALUES ('model-1')")
        .await
        .unwrap_err();
    assert_eq!(duplicate.code().map(|code| code.code()), Some("23505"));
    assert_eq!(
        database.admin("SELECT to_regclass('public.audit_marker') IS NOT NULL"),
        "t"
    );
    assert_eq!(
        database
            .admin("SELECT convalidated FROM pg_constraint WHERE conname = 'models_size_positive'"),
        "t",
        "validated after the backfill"
    );

    rollback_now(&database).await.expect("rolls back");
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_constraint WHERE conname = 'models_size_positive'"),
        "0"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_indexes WHERE indexname = 'models_name_key'"),
        "0"
    );
    assert_eq!(
        database.admin("SELECT to_regclass('public.audit_marker') IS NULL"),
        "t"
    );

    start_text(&database, "0002.toml", &text)
        .await
        .expect("starts again");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        database.admin("SELECT contype FROM pg_constraint WHERE conname = 'models_name_key'"),
        "u",
        "the index became a constraint"
    );
}

/// `rename_constraint`, pgroll's start → rollback → start → complete: the constraint keeps its
/// name while the migration is live (clients at either version see it in errors and may name
/// it), the contract renames it (a unique constraint's index with it), a rollback leaves it.
#[tokio::test]
async fn rename_constraint_renames_at_complete_and_not_before() {
    let database = seeded(3).await;
    database.admin(
        "ALTER TABLE models ADD CONSTRAINT models_size_small CHECK (size < 1000000);
         ALTER TABLE models ADD CONSTRAINT models_name_key UNIQUE (name)",
    );
    let text = migration(
        r#"
[[operations]]
op = "rename_column"
table = "models"
from = "size"
to = "weight"
[[operations]]
op = "rename_constraint"
table = "models"
from = "models_size_small"
to = "models_weight_small"
[[operations]]
op = "rename_constraint"
table = "models"
from = "models_name_key"
to = "models_name_unique"
"#,
    );
    let names = || {
        database.admin(
            "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint
              WHERE conrelid = 'models'::regclass AND contype <> 'n'",
        )
    };
    let before = names();
    let violated = |version: &'static str, insert: &'static str| {
        let database = &database;
        async move {
            let client = at(database, version).await;
            let error = client.batch_execute(insert).await.expect_err(insert);
            let error = error.as_db_error().expect("a server error");
            (
                error.code().code().to_owned(),
                error.constraint().map(str::to_owned),
            )
        }
    };
    let too_big_v1 = "INSERT INTO models_v1 (name, size) VALUES ('big', 2000000)";
    let too_big_v2 = "INSERT INTO models_v2 (name, weight) VALUES ('big', 2000000)";
    let checked = |name: &str| ("23514".to_owned(), Some(name.to_owned()));

    start_text(&database, "0002.toml", &text)
        .await
        .expect("starts");
    assert_eq!(names(), before, "renamed by the contract only");
    assert_eq!(
        violated("v1", too_big_v1).await,
        checked("models_size_small")
    );
    assert_eq!(
        violated("v2", too_big_v2).await,
        checked("models_size_small")
    );
    let upsert = at(&database, "v1").await;
    upsert
        .batch_execute(
            "INSERT INTO models (name) VALUES ('model-1') ON CONFLICT ON CONSTRAINT models_name_key DO NOTHING",
        )
        .await
        .expect("the older version names the constraint as it is");

    rollback_now(&database).await.expect("rolls back");
    assert_eq!(names(), before);

    start_then_complete(&database, &text).await;
    assert_eq!(
        names(),
        "models_name_unique,models_pkey,models_weight_small"
    );
    assert_eq!(
        database.admin(
            "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class
              WHERE relname LIKE 'models_name%' AND relkind = 'i'"
        ),
        "models_name_unique",
        "the unique constraint's index is renamed with it"
    );
    assert_eq!(
        violated("v2", too_big_v2).await,
        checked("models_weight_small")
    );
}

/// `set_replica_identity`, pgroll's start → rollback → start → complete: the identity is set
/// by the expand (both versions write the same rows), put back by a rollback, kept by the
/// complete; an index that is not the table's is refused before any change.
#[tokio::test]
async fn set_replica_identity_is_set_by_the_expand_and_put_back_by_a_rollback() {
    let database = seeded(3).await;
    database.admin(
        "CREATE UNIQUE INDEX models_name_idx ON models (name);
         ALTER TABLE models REPLICA IDENTITY FULL",
    );
    let identity = || {
        database.admin(
            "SELECT c.relreplident::text || coalesce(':' || (SELECT i.indexrelid::regclass::text
               FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident), '')
               FROM pg_class c WHERE c.oid = 'models'::regclass",
        )
    };
    let set = |index: &str| {
        migration(&format!(
            "[[operations]]\nop = \"set_replica_identity\"\ntable = \"models\"\nidentity = \"index\"\nindex = \"{index}\"\n[[operations]]\nop = \"add_column\"\ntable = \"models\"\ncolumn = {{ name = \"note\", type = \"text\" }}\n"
        ))
    };
    let refused = start_text(&database, "0002.toml", &set("models_nosuch_idx"))
        .await
        .expect_err("no such index");
    assert!(
        refused
            .to_string()
            .contains("table public.models has no index models_nosuch_idx"),
        "{refused}"
    );
    assert_eq!(identity(), "f");

    start_text(&database, "0002.toml", &set("models_name_idx"))
        .await
        .expect("starts");
    assert_eq!(identity(), "i:models_name_idx");
    let v2 = at(&database, "v2").await;
    v2.batch_execute("UPDATE models_v2 SET note = 'x' WHERE id = 1")
        .await
        .expect("v2 writes");
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(identity(), "f", "the identity it had");

    start_then_complete(&database, &set("models_name_idx")).await;
    assert_eq!(identity(), "i:models_name_idx");
}

#[tokio::test]
async fn three_versions_live_and_writable_at_once() {
    let database = seeded(10).await;
    let v2 = migration(
        r#"
[[operations]]
op = "add_column"
table = "models"
up = "'unknown'"
column = { name = "kind", type = "text", nullable = false }
"#,
    );
    start_text(&database, "0002.toml", &v2)
        .await
        .expect("v2 starts");
    let v3 = r#"
version = "v3"
from = "v2"
[[operations]]
op = "alter_column"
table = "models"
column = "kind"
rename_to = "category"
type = "varchar(20)"
up = "upper(kind)"
down = "lower(category)"
[[operations]]
op = "drop_column"
table = "models"
column = "legacy_note"
"#;
    start_text(&database, "0003.toml", v3)
        .await
        .expect("v3 starts while v2 is live");
    let c1 = at(&database, "v1").await;
    let c2 = at(&database, "v2").await;
    let c3 = at(&database, "v3").await;
    assert_eq!(
        lines(&c3, "SELECT category FROM models_v3 WHERE id = 1").await,
        ["UNKNOWN"]
    );

    exec(&c1, "INSERT INTO models_v1 (name) VALUES ('from v1')").await;
    exec(
        &c2,
        "INSERT INTO models_v2 (name, kind) VALUES ('from v2', 'cnn')",
    )
    .await;
    exec(
        &c3,
        "INSERT INTO models_v3 (name, category) VALUES ('from v3', 'RNN')",
    )
    .await;
    let seen = "SELECT name FROM models_v1 WHERE name LIKE 'from%' ORDER BY name";
    assert_eq!(lines(&c1, seen).await, ["from v1", "from v2", "from v3"]);
    assert_eq!(
        lines(
            &c2,
            "SELECT name, kind FROM models_v2 WHERE name LIKE 'from%' ORDER BY name"
        )
        .await,
        ["from v1|unknown", "from v2|cnn", "from v3|rnn"],
        "v1's write got up (v1 → v2), v3's got down (v3 → v2)"
    );
    assert_eq!(
        lines(
            &c3,
            "SELECT name, category FROM models_v3 WHERE name LIKE 'from%' ORDER BY name"
        )
        .await,
        ["from v1|UNKNOWN", "from v2|CNN", "from v3|RNN"],
        "v1's write went through both ups in order"
    );
    exec(
        &c3,
        "UPDATE models_v3 SET category = 'GAN' WHERE name = 'from v1'",
    )
    .await;
    assert_eq!(
        lines(&c2, "SELECT kind FROM models_v2 WHERE name = 'from v1'").await,
        ["gan"]
    );
    // An older client's UPDATE of a column every version shares, which no `up` reads, leaves
    // what newer clients wrote (the thirty-first red-team pass saw it reset to `up`'s value).
    exec(&c1, "UPDATE models_v1 SET size = 7 WHERE name = 'from v1'").await;
    assert_eq!(
        lines(
            &c3,
            "SELECT size, category FROM models_v3 WHERE name = 'from v1'"
        )
        .await,
        ["7|GAN"]
    );
    assert_eq!(
        lines(&c2, "SELECT kind FROM models_v2 WHERE name = 'from v1'").await,
        ["gan"]
    );

    let refused = rollback_now_v2_first(&database).await;
    assert!(
        refused.contains("v3"),
        "rollback takes the newest migration: {refused}"
    );

    database.admin("UPDATE viewgate.settings SET default_version = 'v3'");
    complete_now(&database).await.expect("v1 retires");
    assert_eq!(database.admin("SELECT string_agg(version || '=' || state, ',' ORDER BY version) FROM viewgate.versions"), "v1=retired,v2=active,v3=active");
    exec(
        &c2,
        "INSERT INTO models_v2 (name, kind) VALUES ('after v1', 'mlp')",
    )
    .await;
    assert_eq!(
        lines(
            &c3,
            "SELECT category FROM models_v3 WHERE name = 'after v1'"
        )
        .await,
        ["MLP"]
    );
    complete_now(&database).await.expect("v2 retires");
    assert_eq!(
        base_columns(&database),
        "id:bigint!,name:text!,size:integer!,category:character varying(20)!"
    );
    assert_eq!(triggers(&database), "0");
    let c3 = at(&database, "v3").await;
    exec(
        &c3,
        "INSERT INTO models_v3 (name, category) VALUES ('last', 'VIT')",
    )
    .await;
    assert_eq!(lines(&c3, "SELECT count(*) FROM models_v3").await, ["15"]);
}

/// Rolls back (the newest migration: v3) and reports which version went.
async fn rollback_now_v2_first(database: &support::Database) -> String {
    let mut client = database.client().await;
    // Only the catalog's own record says which migration is newest; a rollback here would undo
    // v3, so check it is the one chosen without running it: v3's sessions make it refuse.
    let holder = at(database, "v3").await;
    database.admin(
        "INSERT INTO viewgate.proxies (proxy_id, hostname, pid, listen, build, started_at, last_seen, sessions)
         VALUES ('test-proxy', 'h', 1, '127.0.0.1:1', 'test', now(), now(), '{\"v3\": 1}')",
    );
    let error = viewgate::control::migrate::rollback::rollback(
        &mut client,
        &viewgate::control::templates::Templates::built_in(),
        None,
        &mut viewgate::control::migrate::Silent,
    )
    .await
    .unwrap_err()
    .to_string();
    database.admin("DELETE FROM viewgate.proxies");
    drop(holder);
    error
}

/// Everything a migration could leave behind in the schema: columns, constraints, indexes,
/// triggers, views and functions, as text to compare.
fn schema_fingerprint(database: &support::Database) -> String {
    database.admin(
        "SELECT string_agg(line, E'\\n' ORDER BY line) FROM (
           SELECT format('column %s.%s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)) AS line
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v') AND a.attnum > 0 AND NOT a.attisdropped
           UNION ALL SELECT format('constraint %s %s', conname, pg_get_constraintdef(oid)) FROM pg_constraint WHERE connamespace = 'public'::regnamespace
           UNION ALL SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
           UNION ALL SELECT format('trigger %s', tgname) FROM pg_trigger WHERE NOT tgisinternal
           UNION ALL SELECT format('function %s', proname) FROM pg_proc WHERE pronamespace = 'viewgate'::regnamespace
         ) AS everything",
    )
}

#[tokio::test]
async fn every_operation_rolls_back_to_the_schema_it_started_from_then_completes() {
    let database = seeded(30).await;
    database.admin(
        "CREATE INDEX models_size_idx ON models (size);
         ALTER TABLE models ADD CONSTRAINT models_size_small CHECK (size < 1000000);
         CREATE TABLE public.extra (id bigserial PRIMARY KEY, note text)",
    );
    let operations = [
        r#"op = "add_column"
table = "models"
up = "size * 2"
column = { name = "double", type = "bigint", nullable = false, unique = true, check = "double >= 0" }"#,
        r#"op = "drop_column"
table = "models"
column = "legacy_note""#,
        r#"op = "rename_column"
table = "models"
from = "name"
to = "title""#,
        r#"op = "alter_column"
table = "models"
column = "legacy_note"
nullable = false
up = "coalesce(legacy_note, 'none')"
down = "legacy_note""#,
        r#"op = "create_table"
table = "notes"
columns = [{ name = "id", type = "bigserial", primary_key = true }, { name = "body", type = "text" }]"#,
        r#"op = "drop_table"
table = "models""#,
        r#"op = "rename_table"
from = "models"
to = "things""#,
        r#"op = "create_index"
name = "models_name_idx"
table = "models"
columns = ["name"]
unique = true"#,
        r#"op = "drop_index"
name = "models_size_idx""#,
        r#"op = "add_constraint"
table = "models"
name = "models_name_not_empty"
type = "check"
check = "name <> ''""#,
        r#"op = "drop_constraint"
table = "models"
name = "models_size_small""#,
        r#"op = "split_column"
table = "models"
column = "name"
down = "head || '-' || tail"
into = [
    { column = { name = "head", type = "text" }, up = "split_part(name, '-', 1)" },
    { column = { name = "tail", type = "text" }, up = "split_part(name, '-', 2)" },
]"#,
        r#"op = "merge_columns"
table = "models"
columns = ["name", "legacy_note"]
into = { name = "label", type = "text" }
up = "name || coalesce(':' || legacy_note, '')"
down = { name = "split_part(label, ':', 1)", legacy_note = "nullif(split_part(label, ':', 2), '')" }"#,
        r#"op = "raw_sql"
up = "CREATE TABLE public.raw_marker (id int)"
down = "DROP TABLE public.raw_marker""#,
    ];
    for operation in operations {
        let before = schema_fingerprint(&database);
        let text = migration(&format!("[[operations]]\n{operation}\n"));
        start_text(&database, "op.toml", &text)
            .await
            .unwrap_or_else(|error| panic!("{operation}: {error}"));
        assert_eq!(
            database.admin("SELECT state FROM viewgate.versions WHERE version = 'v2'"),
            "active",
            "{operation} made v2"
        );
        rollback_now(&database)
            .await
            .unwrap_or_else(|error| panic!("{operation}: rollback: {error}"));
        assert_eq!(
            schema_fingerprint(&database),
            before,
            "rollback of {operation}"
        );
    }
    // And one of them all the way: every migration after a rollback starts from v1 again.
    start_text(
        &database,
        "op.toml",
        &migration(&format!("[[operations]]\n{}\n", operations[0])),
    )
    .await
    .expect("starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(&v2, "SELECT double FROM models_v2 WHERE id = 3").await,
        ["6"]
    );
}

/// Found by the thirty-first red-team pass: completing a migration that renames columns
/// regenerates the sync triggers of the later live ones, and counted every version but each
/// one's own as its old side, the versions made after it too. The newest version's writes
/// then went through the middle migration's `up` instead of its `down`: what v4 wrote was
/// overwritten from a column it does not have.
#[tokio::test]
async fn completing_a_rename_keeps_newer_versions_on_later_migrations_new_side() {
    let database = seeded(2).await;
    let rename = migration(
        r#"
[[operations]]
op = "rename_column"
table = "models"
from = "name"
to = "title"
"#,
    );
    start_text(&database, "0002.toml", &rename)
        .await
        .expect("v2 starts");
    let resize = r#"
version = "v3"
from = "v2"
[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "numeric(12,1)"
up = "size / 10.0"
down = "(size * 10)::integer"
"#;
    start_text(&database, "0003.toml", resize)
        .await
        .expect("v3 starts");
    let note = r#"
version = "v4"
from = "v3"
[[operations]]
op = "add_column"
table = "models"
column = { name = "note", type = "text" }
"#;
    start_text(&database, "0004.toml", note)
        .await
        .expect("v4 starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v4'");
    complete_now(&database).await.expect("v1 retires");
    let c2 = at(&database, "v2").await;
    let c3 = at(&database, "v3").await;
    let c4 = at(&database, "v4").await;
    exec(
        &c4,
        "INSERT INTO models_v4 (title, size, note) VALUES ('from v4', 2.5, 'n')",
    )
    .await;
    exec(
        &c3,
        "INSERT INTO models_v3 (title, size) VALUES ('from v3', 3.5)",
    )
    .await;
    exec(
        &c2,
        "INSERT INTO models_v2 (title, size) VALUES ('from v2', 45)",
    )
    .await;
    let seen = "SELECT title, size FROM models_v{} WHERE title LIKE 'from%' ORDER BY title";
    assert_eq!(
        lines(&c4, &seen.replace("{}", "4")).await,
        ["from v2|4.5", "from v3|3.5", "from v4|2.5"],
        "v4's own write kept, v2's went through v3's up"
    );
    assert_eq!(
        lines(&c2, &seen.replace("{}", "2")).await,
        ["from v2|45", "from v3|35", "from v4|25"],
        "v3's and v4's writes went through v3's down"
    );
}

/// Found by the thirty-second red-team pass: the UPDATE triggers tell whether a column
/// changed with `IS DISTINCT FROM`, which `json` (like `xml` and the geometric types) has no
/// operator for, so every older client's UPDATE failed once a migration wrote or read a json
/// column. Such columns are compared as text.
#[tokio::test]
async fn json_columns_written_and_read_by_migrations_take_updates() {
    let database = seeded(2).await;
    let meta = migration(
        r#"
[[operations]]
op = "add_column"
table = "models"
up = "json_build_object('name', name)"
column = { name = "meta", type = "json" }
"#,
    );
    start_text(&database, "0002.toml", &meta)
        .await
        .expect("v2 starts");
    let key = r#"
version = "v3"
from = "v2"
[[operations]]
op = "add_column"
table = "models"
up = "meta->>'name'"
column = { name = "meta_name", type = "text" }
"#;
    start_text(&database, "0003.toml", key)
        .await
        .expect("v3 starts");
    let c1 = at(&database, "v1").await;
    let c2 = at(&database, "v2").await;
    let c3 = at(&database, "v3").await;
    exec(&c1, "UPDATE models_v1 SET name = 'renamed' WHERE id = 1").await;
    exec(&c1, "UPDATE models_v1 SET size = 9 WHERE id = 2").await;
    exec(
        &c2,
        "UPDATE models_v2 SET meta = '{\"name\": \"from v2\"}' WHERE id = 2",
    )
    .await;
    assert_eq!(
        lines(
            &c3,
            "SELECT id, meta::text, meta_name, size FROM models_v3 ORDER BY id"
        )
        .await,
        [
            "1|{\"name\" : \"renamed\"}|renamed|1",
            "2|{\"name\": \"from v2\"}|from v2|9"
        ]
    );
}

/// Found by the forty-first red-team pass: a failed start said "nothing of it remains" after
/// undoing a migration whose `raw_sql` had no `down`, whose table stayed; so did a rollback.
/// Both now name what remains.
#[tokio::test]
async fn a_rollback_names_the_raw_sql_it_could_not_undo() {
    let database = seeded(100).await;
    let failing = migration(
        r#"
[[operations]]
op = "raw_sql"
up = "CREATE TABLE public.raw_marker (id int)"
[[operations]]
op = "add_column"
table = "models"
up = "100 / (id - 50)"
column = { name = "ratio", type = "numeric" }
"#,
    );
    let error = start_text(&database, "0002.toml", &failing)
        .await
        .expect_err("the backfill divides by zero")
        .to_string();
    assert!(
        error.contains("raw_sql operation 1 has no `down`") && !error.contains("nothing of it"),
        "{error}"
    );
    assert_eq!(
        database.admin("SELECT to_regclass('public.raw_marker') IS NOT NULL"),
        "t",
        "what the message says remains"
    );
    database.admin("DROP TABLE public.raw_marker");

    let lasting = migration(
        r#"
[[operations]]
op = "raw_sql"
up = "CREATE TABLE public.raw_marker (id int)"
"#,
    );
    start_text(&database, "0002b.toml", &lasting)
        .await
        .expect("starts");
    let outcome = rollback_now(&database).await.expect("rolls back");
    assert!(
        outcome
            .not_undone
            .as_deref()
            .is_some_and(|remains| remains.contains("raw_sql operation 1")),
        "{outcome:?}"
    );
}

/// Found by the forty-first red-team pass: a column's type changed twice in a chain. The
/// first complete renamed the second migration's old column into place while its recorded
/// contract still dropped it by the old name, so the second could never complete; then the
/// first complete was refused while the later migration named what it renames, a chain that
/// moved on only by rolling the later one back. Now the later one is refused when it starts,
/// naming the migration to complete first; started after it, it completes.
#[tokio::test]
async fn a_migration_naming_what_a_live_one_renames_waits_for_its_complete() {
    let database = seeded(20).await;
    database.admin("ALTER TABLE models ALTER COLUMN size DROP NOT NULL");
    let v2 = migration(
        r#"
[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "bigint"
"#,
    );
    let v3 = r#"version = "v3"
from = "v2"
[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "numeric"
"#;
    start_text(&database, "0002.toml", &v2)
        .await
        .expect("v2 starts");
    let columns = migration_support::base_columns(&database);
    let refused = start_text(&database, "0003.toml", v3)
        .await
        .expect_err("v3 would name v2's column")
        .to_string();
    for expected in [
        "the migration to v2 (live) renames column _vg_v2_size of public.models to size",
        "Complete the migration to v2 first",
        "nothing was changed",
    ] {
        assert!(refused.contains(expected), "{expected:?} in {refused}");
    }
    assert_eq!(migration_support::base_columns(&database), columns);
    assert_eq!(
        database.admin("SELECT string_agg(version || '=' || state, ',' ORDER BY version) FROM viewgate.versions"),
        "v1=active,v2=active",
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("v2 completes");
    start_text(&database, "0003.toml", v3)
        .await
        .expect("v3 starts once v2 is complete");
    database.admin("UPDATE viewgate.settings SET default_version = 'v3'");
    complete_now(&database).await.expect("v3 completes");
    assert_eq!(
        database.admin("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'models'::regclass AND attname = 'size'"),
        "numeric"
    );
}

/// Starts v2, which gives a column another type (the column `_vg_v2_<name>` of its own until
/// it completes), then v3 from v2 with `operation`, whose backfill reads v2's column.
async fn start_over_v2s_retyped(
    database: &support::Database,
    (column, sql_type): (&str, &str),
    operation: &str,
) {
    let v2 = migration(&format!(
        "[[operations]]\nop = \"alter_column\"\ntable = \"models\"\ncolumn = \"{column}\"\ntype = \"{sql_type}\"\n"
    ));
    start_text(database, "0002.toml", &v2)
        .await
        .expect("v2 starts");
    let v3 = format!("version = \"v3\"\nfrom = \"v2\"\n[[operations]]\n{operation}\n");
    start_text(database, "0003.toml", &v3)
        .await
        .expect("v3 starts, its backfill over v2's column");
}

/// The backfill reads `up` over v2's column (here `size`, which is `_vg_v2_size` until v2
/// completes) and keeps its strings as written: moving it to the physical names once wrote
/// back a string's value, and `'it''s'` became `'it's'`.
#[tokio::test]
async fn a_backfill_keeps_ups_strings_as_written() {
    let database = seeded(3).await;
    start_over_v2s_retyped(
        &database,
        ("size", "bigint"),
        r#"op = "add_column"
table = "models"
column = { name = "label", type = "text" }
up = "CASE WHEN size > 1 THEN 'it''s big' ELSE 'x'' OR ''1''=''1' END""#,
    )
    .await;
    let v3 = at(&database, "v3").await;
    assert_eq!(
        lines(&v3, "SELECT label FROM models_v3 ORDER BY id").await,
        ["x' OR '1'='1", "it's big", "it's big"]
    );
}

/// A column named like a type: v3's `up` casts to that type while v2's column of the name is
/// still `_vg_v2_date`. The backfill moved the type to the column's physical name too
/// (`::"_vg_v2_date"`, 42704) and v3 could not start.
#[tokio::test]
async fn a_backfill_leaves_a_type_named_like_a_column() {
    let database = seeded(2).await;
    database.admin("ALTER TABLE models ADD COLUMN date date NOT NULL DEFAULT DATE '2026-12-05'");
    database
        .apply_text(
            &migration_support::SPEC.replace("\"legacy_note\"]", "\"legacy_note\", \"date\"]"),
        )
        .await;
    start_over_v2s_retyped(
        &database,
        ("date", "timestamptz"),
        r#"op = "add_column"
table = "models"
column = { name = "day", type = "text" }
up = "to_char(date::date, 'DD')""#,
    )
    .await;
    let v1 = at(&database, "v1").await;
    exec(
        &v1,
        "INSERT INTO models_v1 (name, date) VALUES ('later', DATE '2026-12-24')",
    )
    .await;
    let v3 = at(&database, "v3").await;
    assert_eq!(
        lines(&v3, "SELECT id, day FROM models_v3 ORDER BY id").await,
        ["1|05", "2|05", "3|24"]
    );
}

/// v3's `up` looks the category's `name` up while v2's column `name` is still `_vg_v2_name`:
/// the backfill moved the subquery's `name` to `_vg_v2_name` too, which the categories table
/// does not have, so Postgres read the model's own column there and every backfilled row got
/// its own name as its category, silently, while the sync triggers wrote the category's.
#[tokio::test]
async fn a_backfill_reads_a_subquerys_own_columns_as_the_triggers_do() {
    let database = seeded(2).await;
    database.admin(
        "CREATE TABLE public.categories (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO public.categories VALUES (1, 'small'), (2, 'medium'), (5, 'large');",
    );
    start_over_v2s_retyped(
        &database,
        ("name", "varchar(200)"),
        r#"op = "add_column"
table = "models"
column = { name = "category", type = "text" }
up = "(SELECT name FROM public.categories c WHERE c.id = size) || ' ' || name""#,
    )
    .await;
    let v2 = at(&database, "v2").await;
    exec(&v2, "INSERT INTO models_v2 (name, size) VALUES ('new', 5)").await;
    let v3 = at(&database, "v3").await;
    assert_eq!(
        lines(&v3, "SELECT id, category FROM models_v3 ORDER BY id").await,
        ["1|small model-1", "2|medium model-2", "3|large new"]
    );
}

/// A version beside v1 that fills `legacy_note`, which it does not show, as a hidden default.
const QUIET: &str = r#"[[versions]]
name = "quiet"
[[versions.tables]]
base = "models"
columns = ["id", "name", "size"]
hidden_defaults = { legacy_note = "'from quiet'" }"#;

/// A seeded database with `version` (a spec's `[[versions]]` entry) applied beside v1, the
/// migration to v2 with `operations` started and made the default, and the error its
/// complete is refused with.
async fn complete_refused_beside(version: &str, operations: &str) -> (support::Database, String) {
    let database = seeded(2).await;
    database
        .apply_text(&format!("{}\n{version}", migration_support::SPEC))
        .await;
    start_text(&database, "0002.toml", &migration(operations))
        .await
        .expect("v2 starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    let error = complete_now(&database)
        .await
        .expect_err("the contract is refused")
        .to_string();
    assert!(error.contains("nothing was changed"), "{error}");
    (database, error)
}

/// Found by the forty-ninth red-team pass: completing a rename left the versions that read the
/// column in an expression with a write trigger and mapping functions made from the old text.
/// Their views followed the rename, their writes failed (42703), and once a later migration
/// added a column of the old name they read and wrote that column, which they do not have.
/// Now the contract is refused, naming the version and its column, and nothing changes.
#[tokio::test]
async fn a_rename_a_live_versions_expression_reads_is_refused_at_complete() {
    let (database, error) = complete_refused_beside(
        r#"[[versions]]
name = "loud"
[[versions.tables]]
base = "models"
columns = ["id", { name = "shout", expr = "upper(name)", write = { name = "lower(NEW.shout)" } }]"#,
        r#"
[[operations]]
op = "rename_column"
table = "models"
from = "name"
to = "title"
"#,
    )
    .await;
    assert!(
        error.contains(
            "version loud reads base column models.name in the expression of its column shout"
        ),
        "{error}"
    );
    assert!(
        base_columns(&database).contains("name:text!"),
        "{}",
        base_columns(&database)
    );
    let loud = at(&database, "loud").await;
    exec(&loud, "UPDATE models_loud SET shout = 'HELLO' WHERE id = 1").await;
    assert_eq!(
        lines(&loud, "SELECT shout FROM models_loud WHERE id = 1").await,
        ["HELLO"]
    );
    assert_eq!(
        database.admin("SELECT name FROM models WHERE id = 1"),
        "hello"
    );
}

/// Found by the fiftieth red-team pass: a contract that drops a column another live version
/// fills as a hidden default completed, and that version's inserts then failed (42703); once
/// a later migration re-added the column, they wrote it. After the contract's DDL each
/// remaining version's write-back targets, hidden defaults and read expressions are checked
/// against the table; here the contract is refused and nothing changes.
#[tokio::test]
async fn a_drop_a_live_versions_hidden_default_needs_is_refused_at_complete() {
    let (database, error) = complete_refused_beside(
        QUIET,
        r#"
[[operations]]
op = "drop_column"
table = "models"
column = "legacy_note"
"#,
    )
    .await;
    assert!(
        error.contains(
            "version quiet stores a hidden default in base column legacy_note (table models) by text, and after the contract that text would mean no base column"
        ),
        "{error}"
    );
    assert!(
        base_columns(&database).contains("legacy_note:text"),
        "{}",
        base_columns(&database)
    );
    let quiet = at(&database, "quiet").await;
    exec(
        &quiet,
        "INSERT INTO models_quiet (name, size) VALUES ('q', 1)",
    )
    .await;
    assert_eq!(
        database.admin("SELECT legacy_note FROM models WHERE name = 'q'"),
        "from quiet"
    );
}

/// Starts the migration to v2 in `text`, makes v2 the default and completes it.
async fn start_then_complete(database: &support::Database, text: &str) {
    start_text(database, "0002.toml", text)
        .await
        .expect("v2 starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(database).await.expect("completes");
}

/// Found by the fifty-first red-team pass: one migration dropped (or renamed away) a column
/// and gave its name to another column through `alter_column … rename_to`; the versions that
/// remained named the first column by text and, after the contract, read and wrote the other.
/// Now a name a column of the table has (or had earlier in the migration) is never given to
/// another: the new column keeps the old one's name and the new version reads it under its
/// new name.
#[tokio::test]
async fn alter_column_never_gives_a_column_the_name_of_another() {
    let database = seeded(2).await;
    let operations = migration(
        r#"
[[operations]]
op = "drop_column"
table = "models"
column = "legacy_note"
down = "'gone'"
[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "bigint"
rename_to = "legacy_note"
"#,
    );
    start_text(&database, "0002.toml", &operations)
        .await
        .expect("v2 starts");
    let v2 = at(&database, "v2").await;
    exec(&v2, "UPDATE models_v2 SET legacy_note = 40 WHERE id = 2").await;
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        base_columns(&database),
        "id:bigint!,name:text!,size:bigint!",
        "the new column is called what the old one was, not legacy_note"
    );
    assert_eq!(
        lines(&v2, "SELECT id, legacy_note FROM models_v2 ORDER BY id").await,
        ["1|1", "2|40"]
    );
}

/// Found by the fifty-first red-team pass: a rename, then an alter of the renamed column, in
/// one migration: the contract dropped the column by its old name, which the rename had
/// already taken away, and failed every time. The alter now drops it by the name it has then.
#[tokio::test]
async fn a_column_renamed_then_altered_in_one_migration_completes() {
    let database = seeded(2).await;
    let operations = migration(
        r#"
[[operations]]
op = "rename_column"
table = "models"
from = "name"
to = "title"
[[operations]]
op = "alter_column"
table = "models"
column = "title"
type = "varchar(100)"
"#,
    );
    start_then_complete(&database, &operations).await;
    assert_eq!(
        base_columns(&database),
        "id:bigint!,size:integer!,legacy_note:text,title:character varying(100)!"
    );
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(&v2, "SELECT title FROM models_v2 ORDER BY id").await,
        ["model-1", "model-2"]
    );
}

/// A table renamed, then changed under its new name, in one migration: the contract ran the
/// column operations' DDL against the table's old name, which its own rename had already
/// taken away (42P01), and could never complete. Each contract step now names the table as
/// the steps before it leave it.
#[tokio::test]
async fn a_table_renamed_then_changed_in_one_migration_completes() {
    let database = seeded(2).await;
    let operations = migration(
        r#"
[[operations]]
op = "rename_table"
from = "models"
to = "things"
[[operations]]
op = "rename_column"
table = "things"
from = "name"
to = "title"
[[operations]]
op = "alter_column"
table = "things"
column = "size"
type = "bigint"
[[operations]]
op = "add_column"
table = "things"
column = { name = "weight", type = "integer", nullable = false }
up = "size * 10"
[[operations]]
op = "drop_column"
table = "things"
column = "legacy_note"
down = "'gone'"
"#,
    );
    start_text(&database, "0002.toml", &operations)
        .await
        .expect("v2 starts");
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(
        &v2,
        "INSERT INTO things_v2 (title, size, weight) VALUES ('via v2', 3, 31)",
    )
    .await;
    exec(
        &v1,
        "INSERT INTO models_v1 (name, size) VALUES ('via v1', 4)",
    )
    .await;
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        database.admin(
            "SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN '!' ELSE '' END, ',' ORDER BY attnum)
             FROM pg_attribute WHERE attrelid = 'public.things'::regclass AND attnum > 0 AND NOT attisdropped"
        ),
        "id:bigint!,title:text!,size:bigint!,weight:integer!"
    );
    assert_eq!(
        database.admin("SELECT to_regclass('public.models') IS NULL"),
        "t"
    );
    assert_eq!(
        lines(
            &v2,
            "SELECT id, title, size, weight FROM things_v2 ORDER BY id"
        )
        .await,
        [
            "1|model-1|1|10",
            "2|model-2|2|20",
            "3|via v2|3|31",
            "4|via v1|4|40"
        ]
    );
    exec(
        &v2,
        "UPDATE things_v2 SET title = 'renamed', weight = 7 WHERE id = 1",
    )
    .await;
    assert_eq!(
        database.admin("SELECT title || ':' || weight FROM public.things WHERE id = 1"),
        "renamed:7"
    );
}

/// A column renamed, then dropped or given a new default, in one migration: the contract's
/// drop named the column by its old name, which `IF EXISTS` let drop nothing (the column
/// stayed), and its default named it so too (42703, the contract refused whole). Both now
/// name it as the rename left it.
#[tokio::test]
async fn a_column_renamed_then_dropped_or_given_a_default_completes() {
    let database = seeded(2).await;
    let operations = migration(
        r#"
[[operations]]
op = "rename_column"
table = "models"
from = "legacy_note"
to = "note"
[[operations]]
op = "drop_column"
table = "models"
column = "note"
[[operations]]
op = "rename_column"
table = "models"
from = "size"
to = "amount"
[[operations]]
op = "alter_column"
table = "models"
column = "amount"
default = "5"
"#,
    );
    start_then_complete(&database, &operations).await;
    assert_eq!(
        base_columns(&database),
        "id:bigint!,name:text!,amount:integer!"
    );
    let v2 = at(&database, "v2").await;
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('defaulted')").await;
    assert_eq!(
        database.admin("SELECT amount FROM public.models WHERE name = 'defaulted'"),
        "5"
    );
}

/// What a remaining version names is checked by identity, not by name: a contract whose DDL
/// (here a raw SQL step) renames a column away and adds another of its name would have the
/// versions that remain read and write the new column by the old text. Refused; nothing
/// changes.
#[tokio::test]
async fn a_contract_that_gives_a_remaining_versions_name_to_another_column_is_refused() {
    let (database, error) = complete_refused_beside(
        QUIET,
        r#"
[[operations]]
op = "raw_sql"
on_complete = true
up = "ALTER TABLE public.models RENAME COLUMN legacy_note TO legacy_kept; ALTER TABLE public.models ADD COLUMN legacy_note text"
"#,
    )
    .await;
    assert!(
        error.contains("base column legacy_note (table models) by text, and after the contract that text would mean base column(s) legacy_note, which the contract made of other columns"),
        "{error}"
    );
    assert_eq!(
        base_columns(&database),
        "id:bigint!,name:text!,size:integer!,legacy_note:text"
    );
}

/// Applies version `narrow` beside the seed spec's: `name` as `title`, `legacy_note` hidden.
async fn apply_narrow(database: &support::Database) {
    database
        .apply_text(&format!(
            "{}\n{}",
            migration_support::SPEC,
            r#"[[versions]]
name = "narrow"
[[versions.tables]]
base = "models"
columns = ["id", { name = "title", from = "name" }, "size"]"#
        ))
        .await;
}

/// Found by the fifty-first red-team pass: an `up` naming a base column the previous version
/// does not show was run by the backfill over the base table, where the hidden column exists,
/// and copied its values into the new version (while every old-version insert failed in the
/// sync trigger). `up` is now resolved over the previous version's columns alone; this one is
/// refused at start, with Postgres's reason, and nothing changes.
#[tokio::test]
async fn an_up_naming_a_column_the_previous_version_hides_is_refused() {
    let database = seeded(2).await;
    apply_narrow(&database).await;
    let before = base_columns(&database);
    let leak = r#"
version = "v2"
from = "narrow"
[[operations]]
op = "add_column"
table = "models"
up = "legacy_note"
column = { name = "leak", type = "text" }
"#;
    let error = start_text(&database, "0002.toml", leak)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("the up expression for base column leak")
            && error.contains("does not hold over the previous version's columns (column \"legacy_note\" does not exist)"),
        "{error}"
    );
    // The previous version calls `name` title; spelled with Unicode escapes, the name could not
    // be moved to the physical one, and would have read physical `title` had there been one.
    let escaped = r#"
version = "v2"
from = "narrow"
[[operations]]
op = "add_column"
table = "models"
up = 'upper(U&"t\0069tle")'
column = { name = "shout", type = "text" }
"#;
    let error = start_text(&database, "0002.toml", escaped)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("spells a name with Unicode escapes"),
        "{error}"
    );
    let plain = escaped.replace(r#"upper(U&"t\0069tle")"#, "upper(title)");
    start_text(&database, "0002.toml", &plain)
        .await
        .expect("the plain spelling starts");
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(&v2, "SELECT shout FROM models_v2 ORDER BY id").await,
        ["MODEL-1", "MODEL-2"]
    );
    assert_eq!(base_columns(&database), format!("{before},shout:text"));
}

/// Found by the fifty-first red-team pass (not covered until now): a `down` naming a base
/// column the new version does not show was run by the sync trigger over the base row, so a
/// write at the new version filled the old version's column from a column it hides. `down` is
/// now resolved over the new version's columns alone, inside the expand's transaction once the
/// new columns exist; this one is refused with Postgres's reason, and nothing changes.
#[tokio::test]
async fn a_down_naming_a_column_the_new_version_hides_is_refused() {
    let database = seeded(2).await;
    apply_narrow(&database).await;
    let before = base_columns(&database);
    let leak = r#"
version = "v2"
from = "narrow"
[[operations]]
op = "drop_column"
table = "models"
column = "size"
down = "length(legacy_note)"
"#;
    let error = start_text(&database, "0002.toml", leak)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("the down expression for base column size")
            && error.contains(
                "does not hold over the new version's columns (column \"legacy_note\" does not exist)"
            ),
        "{error}"
    );
    assert_eq!(base_columns(&database), before);
    assert_eq!(
        database.admin(
            "SELECT count(*) FROM viewgate.versions WHERE version = 'v2'
             UNION ALL SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              WHERE c.relname = 'models' AND NOT t.tgisinternal"
        ),
        "0\n0",
        "nothing of the expand is left"
    );
    let plain = leak.replace("length(legacy_note)", "length(title)");
    start_text(&database, "0002.toml", &plain)
        .await
        .expect("a down over the new version's columns starts");
    let v2 = at(&database, "v2").await;
    exec(&v2, "INSERT INTO models_v2 (id, title) VALUES (10, 'abc')").await;
    let narrow = at(&database, "narrow").await;
    assert_eq!(
        lines(&narrow, "SELECT size FROM models_narrow WHERE id = 10").await,
        ["3"]
    );
}

/// Found by the fifty-third red-team pass: an `up` reading the base table in a subquery
/// (`(SELECT s.secret FROM public.t s …)`, a row of it) resolves over the previous version's
/// columns all the same, and copied a hidden column into the new version. What each `up` and
/// `down` reads is now looked at (a temporary view of it, in the expand's transaction): a
/// column of the table beyond the version's, or a whole row, refuses it, and nothing changes.
#[tokio::test]
async fn an_up_or_down_reading_a_hidden_column_through_a_subquery_is_refused() {
    let database = seeded(2).await;
    database.admin("UPDATE models SET legacy_note = 'hidden-' || id");
    apply_narrow(&database).await;
    let before = base_columns(&database);
    let add = |up: &str| {
        format!(
            r#"
version = "v2"
from = "narrow"
[[operations]]
op = "add_column"
table = "models"
up = "{up}"
column = {{ name = "leak", type = "text" }}
"#
        )
    };
    let drop_size = |down: &str| {
        format!(
            r#"
version = "v2"
from = "narrow"
[[operations]]
op = "drop_column"
table = "models"
column = "size"
down = "{down}"
"#
        )
    };
    for (file, expected) in [
        (
            add("(SELECT s.legacy_note FROM public.models s ORDER BY s.id LIMIT 1)"),
            "the up expression for base column leak",
        ),
        (
            add("(SELECT ROW(x.*)::text FROM public.models x LIMIT 1)"),
            "the up expression for base column leak",
        ),
        (
            drop_size("(SELECT length(s.legacy_note) FROM public.models s WHERE s.id = id)"),
            "the down expression for base column size",
        ),
    ] {
        let error = start_text(&database, "0002.toml", &file)
            .await
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains(expected)
                && error.contains("reads column(s)")
                && error.contains("legacy_note of public.models, beyond"),
            "{file}: {error}"
        );
        assert_eq!(base_columns(&database), before);
    }
    let whole_row = add("(SELECT to_jsonb(x)::text FROM public.models x LIMIT 1)");
    let error = start_text(&database, "0002.toml", &whole_row)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("reads a whole row of public.models"),
        "{error}"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.versions WHERE version = 'v2'"),
        "0"
    );
    // Reading the version's own columns through the base table is not refused.
    start_text(
        &database,
        "0002.toml",
        &add("(SELECT upper(min(s.name)) FROM public.models s)"),
    )
    .await
    .expect("the version's own columns");
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(&v2, "SELECT leak FROM models_v2 ORDER BY id").await,
        ["MODEL-1", "MODEL-1"]
    );
}

/// The new version inherits an expression column reading `name` and `size` (a hand-written
/// spec mapping of v1); a migration that would drop, replace or rename one of them started,
/// and its contract then failed every time (2BP01: Postgres keeps a column a view reads; or a
/// rename refused with "retire version v2"). Now each is refused before any change, naming
/// the column, its expression and the way out.
#[tokio::test]
async fn a_contract_the_new_versions_expression_would_outlive_is_refused_at_start() {
    let cases = [
        (
            "op = \"drop_column\"\ntable = \"models\"\ncolumn = \"size\"",
            "reads base column public.models.size, which the contract drops",
        ),
        (
            "op = \"alter_column\"\ntable = \"models\"\ncolumn = \"name\"\ntype = \"varchar(100)\"",
            "reads base column public.models.name, which the contract replaces (operation 1 (alter_column))",
        ),
        (
            "op = \"rename_column\"\ntable = \"models\"\nfrom = \"name\"\nto = \"title\"",
            "reads base column public.models.name, which the contract renames to title",
        ),
    ];
    for (operation, problem) in cases {
        let database = seeded(2).await;
        database
            .apply_text(&migration_support::SPEC.replace(
                "\"legacy_note\"]",
                "\"legacy_note\", { name = \"shout\", expr = \"upper(name) || size\" }]",
            ))
            .await;
        let columns = base_columns(&database);
        let refused = start_text(
            &database,
            "0002.toml",
            &migration(&format!("[[operations]]\n{operation}\n")),
        )
        .await
        .expect_err("refused")
        .to_string();
        assert!(
            refused.contains("column shout of table models (an expression)")
                && refused.contains(problem)
                && refused.contains("Drop shout from version v2 in this migration too")
                && refused.contains("nothing was changed"),
            "{refused}"
        );
        assert_eq!(base_columns(&database), columns, "{operation}");
        assert_eq!(
            database.admin("SELECT count(*) FROM viewgate.migrations"),
            "0",
            "{operation}"
        );
    }
}

/// The way out the refusal names: the same drop, with the expression column dropped from the
/// new version too, starts and completes.
#[tokio::test]
async fn the_expression_dropped_too_lets_the_contract_run() {
    let database = seeded(2).await;
    database
        .apply_text(&migration_support::SPEC.replace(
            "\"legacy_note\"]",
            "\"legacy_note\", { name = \"shout\", expr = \"upper(name) || size\" }]",
        ))
        .await;
    let operations = migration(
        r#"
[[operations]]
op = "drop_column"
table = "models"
column = "size"
[[operations]]
op = "drop_column"
table = "models"
column = "shout"
"#,
    );
    start_text(&database, "0002.toml", &operations)
        .await
        .expect("v2 starts");
    let v1 = at(&database, "v1").await;
    assert_eq!(
        lines(&v1, "SELECT shout FROM models_v1 WHERE id = 2").await,
        ["MODEL-22"]
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        base_columns(&database),
        "id:bigint!,name:text!,legacy_note:text"
    );
}

/// The sync functions name their variables after the columns their expressions read: a
/// column called `new` hid the trigger's row from the functions' `RETURN NEW`, and once the
/// migration started every INSERT and UPDATE at the old version failed. Columns named like
/// the trigger's other variables are read as columns too.
#[tokio::test]
async fn columns_named_like_a_triggers_variables_are_synced() {
    for column in ["new", "old", "tg_op", "found"] {
        let database = seeded(2).await;
        database.admin(&format!(
            "ALTER TABLE models ADD COLUMN \"{column}\" integer NOT NULL DEFAULT 7"
        ));
        database
            .apply_text(&migration_support::SPEC.replace(
                "\"legacy_note\"]",
                &format!("\"legacy_note\", \"{column}\"]"),
            ))
            .await;
        let text = migration(&format!(
            "[[operations]]\nop = \"add_column\"\ntable = \"models\"\ncolumn = {{ name = \"twice\", type = \"integer\" }}\nup = '\"{column}\" * 2'\n"
        ));
        start_text(&database, "0002.toml", &text)
            .await
            .expect("starts");
        let v1 = at(&database, "v1").await;
        exec(
            &v1,
            &format!("INSERT INTO models_v1 (name, \"{column}\") VALUES ('x', 5)"),
        )
        .await;
        exec(
            &v1,
            &format!("UPDATE models_v1 SET \"{column}\" = 6 WHERE id = 1"),
        )
        .await;
        let v2 = at(&database, "v2").await;
        exec(&v2, "UPDATE models_v2 SET twice = 1 WHERE id = 2").await;
        assert_eq!(
            lines(&v2, "SELECT id, twice FROM models_v2 ORDER BY id").await,
            ["1|12", "2|1", "3|10"],
            "{column}"
        );
    }
}

/// An `up` that looks a value up in another table whose column is named like one the
/// expression reads from the row: the backfill's UPDATE reads the other table's column (SQL's
/// scoping), while the sync trigger, whose variables stand for the row's columns, refused
/// every older writer's INSERT and UPDATE (42702). Both now read it as SQL does.
#[tokio::test]
async fn an_ups_subquery_reads_its_own_tables_columns_first() {
    let database = seeded(2).await;
    database.admin(
        "CREATE TABLE public.categories (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO public.categories VALUES (1, 'small'), (2, 'medium'), (5, 'large');",
    );
    let text = migration(
        r#"
[[operations]]
op = "add_column"
table = "models"
column = { name = "category", type = "text" }
up = "(SELECT name FROM public.categories c WHERE c.id = size) || ' ' || name"
"#,
    );
    start_text(&database, "0002.toml", &text)
        .await
        .expect("starts");
    let v1 = at(&database, "v1").await;
    exec(&v1, "INSERT INTO models_v1 (name, size) VALUES ('new', 5)").await;
    exec(&v1, "UPDATE models_v1 SET size = 2 WHERE id = 1").await;
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(&v2, "SELECT id, category FROM models_v2 ORDER BY id").await,
        ["1|medium model-1", "2|medium model-2", "3|large new"]
    );
}
