//! Migrations a file or the live schema cannot take, refused before any change with a message
//! that says what to write instead: an `up` naming a column the version computes by its
//! spec's expression, operations that change what an earlier operation of the same migration
//! makes, a `type` that says more than a type, an `up` of a type its column does not take,
//! an index name already taken, a constraint or index to drop that does not exist, a table
//! renamed to a name another relation has, a constraint rename the contract could not make,
//! and a table in a table-inheritance tree.

use crate::migration_support;
use crate::support;

use migration_support::{BASE, base_columns, complete_now, seeded, start_text};
use support::Database;

/// Starts the migration to v2 with `operations`, asserts it refused with a message containing
/// `expected`, and that nothing of it is in the database.
async fn assert_refused(database: &Database, operations: &str, expected: &str) {
    let columns = base_columns(database);
    let text = format!("version = \"v2\"\nfrom = \"v1\"\n{operations}");
    let error = start_text(database, "0002.toml", &text)
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains(expected),
        "{operations}\nrefused with: {error}"
    );
    assert_eq!(base_columns(database), columns, "no column was added");
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.migrations"),
        "0",
        "no migration row"
    );
}

/// v1 computes `shouted` by its spec's expression; `up` reads only base columns by the
/// version's names, and the refusal said "may name only what that version's clients see",
/// which those clients do see.
#[tokio::test]
async fn an_up_naming_a_computed_column_is_told_its_expression() {
    let database = Database::start();
    database.admin(BASE);
    database
        .apply_text(
            r#"
[[tables]]
name = "models"
key = ["id"]
[[versions]]
name = "v1"
[[versions.tables]]
base = "models"
columns = ["id", "name", "size", "legacy_note", { name = "shouted", expr = "upper(name)" }]
"#,
        )
        .await;
    assert_refused(
        &database,
        "[[operations]]\nop = \"add_column\"\ntable = \"models\"\ncolumn = { name = \"loud\", type = \"text\" }\nup = \"shouted || '!'\"",
        "which `up` cannot read by name (shouted is `upper(name)`): write the expression over the base columns instead",
    )
    .await;
}

/// An operation on what an earlier one of the same migration makes was refused naming a
/// base column or table that "does not exist", which the file never named.
#[tokio::test]
async fn changing_what_the_same_migration_makes_is_told_to_give_it_its_final_shape() {
    let database = seeded(3).await;
    assert_refused(
        &database,
        r#"[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "bigint"
[[operations]]
op = "alter_column"
table = "models"
column = "size"
nullable = true
up = "size"
down = "coalesce(size, 0)""#,
        "column size is made by an earlier operation of this migration: give it its final shape there",
    )
    .await;
    assert_refused(
        &database,
        r#"[[operations]]
op = "create_table"
table = "tags"
columns = [{ name = "id", type = "bigserial", primary_key = true }, { name = "label", type = "text" }]
[[operations]]
op = "alter_column"
table = "tags"
column = "label"
type = "varchar(10)""#,
        "table tags is created by this migration: give it its final columns in its create_table",
    )
    .await;
}

/// `type` went into `ADD COLUMN` as written, and more than a type rewrote or scanned the table
/// under the ALTER's ACCESS EXCLUSIVE lock: every reader and writer waited for it.
#[tokio::test]
async fn a_type_that_is_more_than_a_type_is_refused() {
    let database = seeded(3).await;
    for sql_type in [
        "bigserial",
        "bigint GENERATED ALWAYS AS (size * 2) STORED",
        "timestamptz DEFAULT clock_timestamp()",
        "integer UNIQUE",
    ] {
        assert_refused(
            &database,
            &format!(
                "[[operations]]\nop = \"add_column\"\ntable = \"models\"\ncolumn = {{ name = \"extra\", type = \"{sql_type}\" }}"
            ),
            &format!("type {sql_type:?} is not a type name"),
        )
        .await;
    }
    assert_refused(
        &database,
        "[[operations]]\nop = \"alter_column\"\ntable = \"models\"\ncolumn = \"size\"\ntype = \"serial\"",
        "type \"serial\" is not a type name",
    )
    .await;
    // Type names in their every spelling pass, and a table of the migration's own may say more.
    start_text(
        &database,
        "0002.toml",
        r#"version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
column = { name = "price", type = "numeric(10, 2)[]" }
[[operations]]
op = "add_column"
table = "models"
column = { name = "taken", type = "timestamp with time zone" }
[[operations]]
op = "alter_column"
table = "models"
column = "name"
type = "character varying(200)"
[[operations]]
op = "create_table"
table = "tags"
columns = [{ name = "id", type = "bigserial", primary_key = true }]"#,
    )
    .await
    .expect("starts");
}

/// `up` gives its column a value by assignment, as the backfill's UPDATE does: a text into an
/// integer failed the backfill after the expand (42804), and on an empty table never failed at
/// all, the trigger's PL/pgSQL reading '4' as 4. A `down` runs in the triggers alone, whose
/// PL/pgSQL assigns through text: the default `down` of an enum made text is the text itself.
#[tokio::test]
async fn an_up_of_a_type_its_column_does_not_take_is_refused() {
    for rows in [3, 0] {
        let database = seeded(rows).await;
        assert_refused(
            &database,
            "[[operations]]\nop = \"add_column\"\ntable = \"models\"\ncolumn = { name = \"counted\", type = \"integer\" }\nup = \"size::text\"",
            "`size::text` gives a value base column counted does not take (column \"counted\" is of type integer but expression is of type text)",
        )
        .await;
    }
    let database = seeded(2).await;
    database.admin(
        "CREATE TYPE public.mood AS ENUM ('sad', 'happy');
         ALTER TABLE models ADD COLUMN feeling public.mood NOT NULL DEFAULT 'sad'",
    );
    database
        .apply_text(
            &migration_support::SPEC.replace("\"legacy_note\"]", "\"legacy_note\", \"feeling\"]"),
        )
        .await;
    start_text(
        &database,
        "0002.toml",
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"alter_column\"\ntable = \"models\"\ncolumn = \"feeling\"\ntype = \"text\"",
    )
    .await
    .expect("starts");
    let v2 = migration_support::at(&database, "v2").await;
    support::exec(
        &v2,
        "INSERT INTO models_v2 (name, feeling) VALUES ('new', 'happy')",
    )
    .await;
    assert_eq!(
        database.admin("SELECT feeling FROM models WHERE name = 'new'"),
        "happy"
    );
}

/// Each index build's undo (`DROP INDEX CONCURRENTLY IF EXISTS`) runs before the build, so
/// that a killed run can build again: an index of the application's under the name was
/// dropped and the migration's built in its place (a unique index on `name` became a plain
/// one on `size`), and a rollback then left neither.
#[tokio::test]
async fn an_index_name_already_taken_is_refused_and_its_index_kept() {
    let database = seeded(3).await;
    database.admin(
        "CREATE UNIQUE INDEX models_guard ON models (name);
         CREATE INDEX models_code_key ON models (size)",
    );
    let indexes = || {
        database.admin(
            "SELECT string_agg(pg_get_indexdef(indexrelid), ' | ' ORDER BY indexrelid::regclass::text)
               FROM pg_index WHERE indrelid = 'models'::regclass",
        )
    };
    let before = indexes();
    let index_on_size = |name: &str| {
        format!(
            "[[operations]]\nop = \"create_index\"\nname = \"{name}\"\ntable = \"models\"\ncolumns = [\"size\"]\n"
        )
    };
    for (operations, expected) in [
        (
            index_on_size("models_guard"),
            "index public.models_guard: an existing index of this database has that name",
        ),
        (
            "[[operations]]\nop = \"add_column\"\ntable = \"models\"\ncolumn = { name = \"code\", type = \"text\", unique = true }".to_owned(),
            "index public.models_code_key: an existing index of this database has that name",
        ),
        (
            index_on_size("models"),
            "index public.models: an existing table of this database has that name",
        ),
        (
            index_on_size("models_size_idx").repeat(2),
            "index public.models_size_idx: another index this migration builds has that name",
        ),
    ] {
        assert_refused(&database, &operations, expected).await;
    }
    assert_eq!(indexes(), before);
    start_text(
        &database,
        "0002.toml",
        &format!(
            "version = \"v2\"\nfrom = \"v1\"\n{}",
            index_on_size("models_size_idx")
        ),
    )
    .await
    .expect("a free name starts");
}

/// A `drop_constraint` or `drop_index` naming what does not exist was accepted, and its
/// contract's `DROP … IF EXISTS` dropped nothing without a word: a misspelt name left the
/// constraint the author meant to retire in force after `migrate complete`. Refused now,
/// naming what the table has (or the schema the index is in); what a live migration adds
/// (a unique constraint, an index until its own complete) may be dropped by the next one.
#[tokio::test]
async fn dropping_a_constraint_or_index_that_does_not_exist_is_refused() {
    let database = seeded(3).await;
    database.admin(
        "ALTER TABLE models ADD CONSTRAINT models_size_small CHECK (size < 1000000);
         CREATE SCHEMA archive;
         CREATE TABLE archive.old_models (id bigint);
         CREATE INDEX old_models_id_idx ON archive.old_models (id)",
    );
    let drop_constraint = |name: &str| {
        format!("[[operations]]\nop = \"drop_constraint\"\ntable = \"models\"\nname = \"{name}\"\n")
    };
    for (operations, expected) in [
        (
            drop_constraint("models_size_smal"),
            // (PostgreSQL 18 lists its NOT NULL constraints among them.)
            "operation 1 (drop_constraint): table public.models has no constraint models_size_smal (it has: models_",
        ),
        (
            "[[operations]]\nop = \"drop_index\"\nname = \"models_nosuch_idx\"\n".to_owned(),
            "there is no index public.models_nosuch_idx: `migrate complete` would have nothing to drop",
        ),
        (
            "[[operations]]\nop = \"drop_index\"\nname = \"old_models_id_idx\"\n".to_owned(),
            "there is no index public.old_models_id_idx, but there is one in schema archive: give the operation `schema = \"archive\"`",
        ),
        (
            "[[operations]]\nop = \"drop_index\"\nname = \"old_models\"\nschema = \"archive\"\n"
                .to_owned(),
            "archive.old_models is a table, not an index",
        ),
    ] {
        assert_refused(&database, &operations, expected).await;
    }

    let unique_name = "[[operations]]\nop = \"add_constraint\"\ntable = \"models\"\nname = \"models_name_key\"\ntype = \"unique\"\ncolumns = [\"name\"]\n";
    start_text(
        &database,
        "0002.toml",
        &format!("version = \"v2\"\nfrom = \"v1\"\n{unique_name}"),
    )
    .await
    .expect("v2 adds a unique constraint");
    let v3 = format!(
        "version = \"v3\"\nfrom = \"v2\"\n{}{}[[operations]]\nop = \"drop_index\"\nname = \"old_models_id_idx\"\nschema = \"archive\"\n",
        drop_constraint("models_name_key"),
        drop_constraint("models_size_small"),
    );
    start_text(&database, "0003.toml", &v3)
        .await
        .expect("v3 drops v2's unique constraint, still an index, and what exists");
    database.admin("UPDATE viewgate.settings SET default_version = 'v3'");
    complete_now(&database).await.expect("v2 completes");
    complete_now(&database).await.expect("v3 completes");
    assert_eq!(
        database.admin(
            "SELECT count(*) FROM pg_constraint WHERE conname IN ('models_name_key', 'models_size_small')"
        ),
        "0"
    );
    assert_eq!(
        database.admin("SELECT to_regclass('archive.old_models_id_idx') IS NULL"),
        "t"
    );
}

/// A `rename_table` to the name of a view (or any relation) of the database that is not a
/// managed table was accepted: the new version's clients lost that view behind the table's
/// new name, and the contract's `ALTER TABLE … RENAME TO` failed on it (42P07), so the
/// migration could never complete.
#[tokio::test]
async fn a_table_renamed_to_a_name_another_relation_has_is_refused() {
    let database = seeded(3).await;
    database.admin("CREATE VIEW public.catalog AS SELECT name FROM models");
    assert_refused(
        &database,
        "[[operations]]\nop = \"rename_table\"\nfrom = \"models\"\nto = \"catalog\"\n",
        "operation 1 (rename_table): public.catalog is a view of this database: the new version's clients would no longer reach it by its name, and `migrate complete` could not rename the table to it",
    )
    .await;
    start_text(
        &database,
        "0002.toml",
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"rename_table\"\nfrom = \"models\"\nto = \"entries\"\n",
    )
    .await
    .expect("a free name starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(database.admin("SELECT count(*) FROM public.entries"), "3");
}

/// A `rename_constraint` that could never run at complete, refused before any change: a name
/// the table does not have, a new name taken (on the table, or in the schema by the index a
/// unique or primary key constraint renames with it), a constraint over a column the contract
/// replaces (Postgres drops it with the column), one the same migration drops. And a later
/// migration naming the old name while the rename is live waits for its complete (its
/// `DROP CONSTRAINT IF EXISTS` would find nothing).
#[tokio::test]
async fn a_constraint_rename_the_contract_could_not_make_is_refused() {
    let database = seeded(3).await;
    database.admin("ALTER TABLE models ADD CONSTRAINT models_size_small CHECK (size < 1000000)");
    let rename = |from: &str, to: &str| {
        format!(
            "[[operations]]\nop = \"rename_constraint\"\ntable = \"models\"\nfrom = \"{from}\"\nto = \"{to}\"\n"
        )
    };
    for (operations, expected) in [
        (
            rename("models_nosuch", "models_other"),
            "operation 1 (rename_constraint): table public.models has no constraint models_nosuch (it has: models_".to_owned(),
        ),
        (
            rename("models_size_small", "models_pkey"),
            "table public.models already has a constraint models_pkey".to_owned(),
        ),
        (
            rename("models_pkey", "models_id_seq"),
            "renaming constraint models_pkey renames its index too, and public.models_id_seq is a sequence of this database".to_owned(),
        ),
        (
            format!(
                "[[operations]]\nop = \"alter_column\"\ntable = \"models\"\ncolumn = \"size\"\ntype = \"bigint\"\n{}",
                rename("models_size_small", "models_size_cap")
            ),
            "table public.models: constraint models_size_small covers column size: `migrate complete` drops or replaces column size before it would rename the constraint".to_owned(),
        ),
        (
            format!(
                "[[operations]]\nop = \"drop_constraint\"\ntable = \"models\"\nname = \"models_size_small\"\n{}",
                rename("models_size_small", "models_size_cap")
            ),
            "operation 2 (rename_constraint): an earlier operation of this migration drops or renames constraint models_size_small".to_owned(),
        ),
    ] {
        assert_refused(&database, &operations, &expected).await;
    }

    start_text(
        &database,
        "0002.toml",
        &format!(
            "version = \"v2\"\nfrom = \"v1\"\n{}",
            rename("models_size_small", "models_size_cap")
        ),
    )
    .await
    .expect("v2 renames the constraint");
    let error = start_text(
        &database,
        "0003.toml",
        "version = \"v3\"\nfrom = \"v2\"\n[[operations]]\nop = \"drop_constraint\"\ntable = \"models\"\nname = \"models_size_small\"\n",
    )
    .await
    .expect_err("waits for v2's complete");
    assert!(
        error.to_string().contains(
            "the migration to v2 (live) renames constraint models_size_small of public.models to models_size_cap at its complete"
        ),
        "{error}"
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("v2 completes");
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_constraint WHERE conname = 'models_size_cap'"),
        "1"
    );
}

/// A table in a table-inheritance tree (`INHERITS`, not partitioning): the sync triggers and
/// the backfill reached the parent's own rows alone while the new column and its NOT NULL
/// check reached the child, so a v1 write of a child's row left v2's column stale and a
/// direct insert into the child failed the check (23514). Refused, for the parent and for
/// the child, and the parent's drop (which would fail at the contract) too; detached, the
/// parent migrates.
#[tokio::test]
async fn a_table_in_an_inheritance_tree_is_refused() {
    let database = seeded(3).await;
    database.admin(
        "CREATE TABLE models_archive (archived_at date) INHERITS (models);
         INSERT INTO models_archive (id, name, size) VALUES (1001, 'old', 10)",
    );
    let labelled = "[[operations]]\nop = \"add_column\"\ntable = \"models\"\ncolumn = { name = \"label\", type = \"text\", nullable = false }\nup = \"upper(name)\"";
    assert_refused(
        &database,
        labelled,
        "table public.models is inherited by public.models_archive (table inheritance)",
    )
    .await;
    assert_refused(
        &database,
        "[[operations]]\nop = \"drop_table\"\ntable = \"models\"",
        "table public.models is inherited by public.models_archive (table inheritance): the contract's `DROP TABLE`",
    )
    .await;
    database.admin("INSERT INTO models_archive (id, name, size) VALUES (1002, 'direct', 1)");
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"),
        "0"
    );

    database.admin("ALTER TABLE models_archive NO INHERIT models");
    start_text(
        &database,
        "0002.toml",
        &format!("version = \"v2\"\nfrom = \"v1\"\n{labelled}"),
    )
    .await
    .expect("a table of its own migrates");

    let child = Database::start();
    child.admin(&format!(
        "{BASE}
         CREATE TABLE models_archive (archived_at date) INHERITS (models);
         ALTER TABLE models_archive ADD PRIMARY KEY (id)"
    ));
    child
        .apply_text(
            r#"
[[tables]]
name = "models_archive"
key = ["id"]
[[versions]]
name = "v1"
[[versions.tables]]
base = "models_archive"
columns = ["id", "name", "size", "archived_at"]
"#,
        )
        .await;
    assert_refused(
        &child,
        "[[operations]]\nop = \"rename_column\"\ntable = \"models_archive\"\nfrom = \"name\"\nto = \"title\"",
        "table public.models_archive inherits from public.models (table inheritance)",
    )
    .await;
}
