//! A migration's operations name tables and columns as the new version's clients do, after the
//! operations before them, while the physical schema keeps the old names until complete (and a
//! retyped column is the version's own `_vg_<version>_<name>`): what the expand makes — a
//! foreign key's target, an index's predicate — is made on what the server has now, and
//! follows it through the renames.

use crate::migration_support;
use crate::support;

use migration_support::{BASE, at, complete_now, start_text};
use support::{Database, exec, lines};

/// `models` and `categories`, both managed, with one category and one model.
async fn with_categories() -> Database {
    let database = Database::start();
    database.admin(BASE);
    database.admin(
        "CREATE TABLE public.categories (id integer PRIMARY KEY, label text);
         INSERT INTO categories VALUES (1, 'vision');
         INSERT INTO models (name) VALUES ('first')",
    );
    database
        .apply_text(
            r#"
[[tables]]
name = "models"
key = ["id"]
[[tables]]
name = "categories"
key = ["id"]

[[versions]]
name = "v1"
[[versions.tables]]
base = "models"
columns = ["id", "name", "size", "legacy_note"]
[[versions.tables]]
base = "categories"
columns = ["id", "label"]
"#,
        )
        .await;
    database
}

/// The foreign keys of `table`, as `pg_get_constraintdef` prints them.
fn foreign_keys(database: &Database, table: &str) -> String {
    database.admin(&format!(
        "SELECT string_agg(pg_get_constraintdef(oid), ' | ' ORDER BY conname) FROM pg_constraint
         WHERE conrelid = 'public.{table}'::regclass AND contype = 'f'"
    ))
}

/// One migration renames `categories` and its key, then references them by their new names,
/// from a new column, a new constraint and a new table. The expand once named them so and
/// failed (42P01, then 42703): the renames happen only at complete.
#[tokio::test]
async fn a_foreign_key_names_what_the_same_migration_renames_as_the_new_version_does() {
    let database = with_categories().await;
    let text = r#"
version = "v2"
from = "v1"
[[operations]]
op = "rename_table"
from = "categories"
to = "kinds"
[[operations]]
op = "rename_column"
table = "kinds"
from = "id"
to = "kind_id"
[[operations]]
op = "add_column"
table = "models"
column = { name = "kind", type = "integer", references = { table = "kinds", column = "kind_id" } }
[[operations]]
op = "add_column"
table = "models"
column = { name = "second_kind", type = "integer" }
[[operations]]
op = "add_constraint"
table = "models"
name = "models_second_kind_fkey"
type = "foreign_key"
columns = ["second_kind"]
references = { table = "kinds", columns = ["kind_id"] }
[[operations]]
op = "create_table"
table = "tags"
columns = [
    { name = "id", type = "bigserial", primary_key = true },
    { name = "kind", type = "integer", references = { table = "kinds", column = "kind_id" } },
]
"#;
    start_text(&database, "0002.toml", text)
        .await
        .expect("starts, the keys made on categories(id)");
    let v2 = at(&database, "v2").await;
    exec(
        &v2,
        "INSERT INTO models_v2 (name, kind, second_kind) VALUES ('second', 1, 1);
         INSERT INTO tags_v2 (kind) VALUES (1)",
    )
    .await;
    for statement in [
        "INSERT INTO models_v2 (name, kind) VALUES ('no such kind', 99)",
        "INSERT INTO models_v2 (name, second_kind) VALUES ('no such kind', 99)",
        "INSERT INTO tags_v2 (kind) VALUES (99)",
    ] {
        let error = v2.batch_execute(statement).await.expect_err(statement);
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION),
            "{statement}: {error:?}"
        );
    }
    drop(v2);
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        foreign_keys(&database, "models"),
        "FOREIGN KEY (kind) REFERENCES kinds(kind_id) | FOREIGN KEY (second_kind) REFERENCES kinds(kind_id)"
    );
    assert_eq!(
        foreign_keys(&database, "tags"),
        "FOREIGN KEY (kind) REFERENCES kinds(kind_id)"
    );
}

/// v2, still pending, gives `categories.id` a new type (its own column `_vg_v2_id` until it
/// completes) and renames the table; v3 references `kinds(id)`. The key is made on v2's new
/// column, so it survives v2's contract, which drops the old one, and ends on `kinds(id)`.
#[tokio::test]
async fn a_foreign_key_into_a_pending_migrations_retyped_key_follows_it_through_complete() {
    let database = with_categories().await;
    let v2 = r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "categories"
column = "id"
type = "bigint"
[[operations]]
op = "rename_table"
from = "categories"
to = "kinds"
"#;
    start_text(&database, "0002.toml", v2)
        .await
        .expect("v2 starts");
    let v3 = r#"
version = "v3"
from = "v2"
[[operations]]
op = "add_column"
table = "models"
column = { name = "kind", type = "bigint", references = { table = "kinds", column = "id" } }
"#;
    start_text(&database, "0003.toml", v3)
        .await
        .expect("v3 starts over v2's names");
    assert_eq!(
        foreign_keys(&database, "models"),
        "FOREIGN KEY (kind) REFERENCES categories(_vg_v2_id)"
    );
    let client = at(&database, "v3").await;
    exec(
        &client,
        "INSERT INTO kinds_v3 (id, label) VALUES (7, 'speech');
         INSERT INTO models_v3 (name, kind) VALUES ('second', 7)",
    )
    .await;
    drop(client);
    for version in ["v2", "v3"] {
        database.admin(&format!(
            "UPDATE viewgate.settings SET default_version = '{version}'"
        ));
        complete_now(&database)
            .await
            .unwrap_or_else(|error| panic!("{version} completes: {error}"));
    }
    assert_eq!(
        foreign_keys(&database, "models"),
        "FOREIGN KEY (kind) REFERENCES kinds(id)"
    );
    let client = at(&database, "v3").await;
    assert_eq!(
        lines(
            &client,
            "SELECT m.name || ' ' || k.label FROM models_v3 m JOIN kinds_v3 k ON k.id = m.kind"
        )
        .await,
        ["second speech"]
    );
}

/// A managed table referenced by the name the new version no longer gives it is refused
/// before any change: a key made on its columns as written would hold a column a pending
/// contract drops, and that contract could then never run.
#[tokio::test]
async fn a_foreign_key_to_a_table_by_its_name_before_a_rename_is_refused() {
    let database = with_categories().await;
    let text = r#"
version = "v2"
from = "v1"
[[operations]]
op = "rename_table"
from = "categories"
to = "kinds"
[[operations]]
op = "add_column"
table = "models"
column = { name = "kind", type = "integer", references = { table = "categories", column = "id" } }
"#;
    let error = start_text(&database, "0002.toml", text)
        .await
        .expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("references public.categories, which the new version calls kinds"),
        "{error}"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.migrations"),
        "0"
    );
}

/// An index's predicate names columns as the new version does: here a column renamed in the
/// same migration (the expand named `weight`, which is still `size`, and failed with 42703)
/// beside a string that merely spells the name, and then, in a chain, v2's retyped column.
/// v2's complete renames the table v3's index was built on: v3, live, has nothing left to run
/// that names it (its index built), so v2 completes under it (it was refused).
#[tokio::test]
async fn an_indexs_predicate_names_columns_as_the_new_version_does() {
    let database = with_categories().await;
    let v2 = r#"
version = "v2"
from = "v1"
[[operations]]
op = "rename_table"
from = "models"
to = "things"
[[operations]]
op = "rename_column"
table = "things"
from = "size"
to = "weight"
[[operations]]
op = "alter_column"
table = "things"
column = "name"
type = "varchar(200)"
[[operations]]
op = "create_index"
name = "things_heavy"
table = "things"
columns = ["name"]
where = "weight > 10 AND name <> 'weight'"
"#;
    start_text(&database, "0002.toml", v2)
        .await
        .expect("v2 starts");
    let v3 = r#"
version = "v3"
from = "v2"
[[operations]]
op = "create_index"
name = "things_named"
table = "things"
columns = ["weight"]
where = "name IS NOT NULL"
"#;
    start_text(&database, "0003.toml", v3)
        .await
        .expect("v3 starts");
    let index = |name: &str| {
        database.admin(&format!(
            "SELECT pg_get_indexdef('public.{name}'::regclass)"
        ))
    };
    assert_eq!(
        index("things_heavy"),
        "CREATE INDEX things_heavy ON public.models USING btree (_vg_v2_name) WHERE ((size > 10) AND ((_vg_v2_name)::text <> 'weight'::text))"
    );
    assert_eq!(
        index("things_named"),
        "CREATE INDEX things_named ON public.models USING btree (size) WHERE (_vg_v2_name IS NOT NULL)"
    );
    for version in ["v2", "v3"] {
        database.admin(&format!(
            "UPDATE viewgate.settings SET default_version = '{version}'"
        ));
        complete_now(&database)
            .await
            .unwrap_or_else(|error| panic!("{version} completes: {error}"));
    }
    assert_eq!(
        index("things_heavy"),
        "CREATE INDEX things_heavy ON public.things USING btree (name) WHERE ((weight > 10) AND ((name)::text <> 'weight'::text))"
    );
    assert_eq!(
        index("things_named"),
        "CREATE INDEX things_named ON public.things USING btree (weight) WHERE (name IS NOT NULL)"
    );
}
