//! The converter on the SQL ORMs write: each statement's operations, the notes that say what
//! the file still needs, and the file as `migrate plan` reads it.

use super::*;
use crate::control::migrate::file::Migration;
use crate::control::migrate::operation;

fn converted(sql: &str) -> (Migration, Vec<String>) {
    let file = convert(sql, "v2", "v1", None).expect("converts");
    let migration: Migration =
        toml::from_str(&file.text).expect("the file is TOML a migration reads");
    (migration, file.notes)
}

/// What `python manage.py sqlmigrate` prints for a field added with a one-off default, an
/// index and a foreign key (Django 5).
const DJANGO: &str = r#"BEGIN;
--
-- Add field nickname to customer
--
ALTER TABLE "shop_customer" ADD COLUMN "nickname" varchar(40) DEFAULT 'none' NOT NULL;
ALTER TABLE "shop_customer" ALTER COLUMN "nickname" DROP DEFAULT;
--
-- Create index on email
--
CREATE INDEX "shop_customer_email_idx" ON "shop_customer" ("email");
ALTER TABLE "shop_order" ADD CONSTRAINT "shop_order_customer_id_fk" FOREIGN KEY ("customer_id") REFERENCES "shop_customer" ("id") DEFERRABLE INITIALLY DEFERRED;
COMMIT;
"#;

#[test]
fn a_django_migration_becomes_operations() {
    let (migration, notes) = converted(DJANGO);
    assert_eq!(
        (migration.version.as_str(), migration.from.as_str()),
        ("v2", "v1")
    );
    // The one-off default Django adds the column with, then drops, fills the existing rows:
    // it is the column's `up` (a migration's alter_column of a column it adds is refused).
    let kinds: Vec<&str> = migration.operations.iter().map(Operation::kind).collect();
    assert_eq!(kinds, ["add_column", "create_index", "add_constraint"]);
    let Operation::AddColumn(add) = &migration.operations[0] else {
        unreachable!()
    };
    assert_eq!(add.table, "shop_customer");
    assert_eq!(add.column.name, "nickname");
    assert_eq!(add.column.sql_type, "varchar(40)");
    assert!(!add.column.nullable);
    assert_eq!(add.column.default, None);
    assert_eq!(add.up.as_deref(), Some("'none'"));
    let Operation::AddConstraint(constraint) = &migration.operations[2] else {
        unreachable!()
    };
    assert_eq!(constraint.kind, operation::ConstraintKind::ForeignKey);
    assert_eq!(constraint.columns, ["customer_id"]);
    assert_eq!(constraint.references.as_ref().unwrap().columns, ["id"]);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("operation 3: add_constraint shop_order: DEFERRABLE is left out"));
}

#[test]
fn what_the_sql_cannot_say_is_named_and_the_checker_refuses_it_until_written() {
    let file = convert(
        "ALTER TABLE models ADD COLUMN rank integer NOT NULL; ALTER TABLE models ALTER COLUMN size TYPE bigint USING size * 1000",
        "v2",
        "v1",
        Some("rank and size"),
    )
    .unwrap();
    assert!(
        file.text
            .starts_with("version = \"v2\"\nfrom = \"v1\"\ndescription = \"rank and size\"\n"),
        "{}",
        file.text
    );
    assert!(file.text.contains("up = \"size * 1000\""), "{}", file.text);
    assert!(
        file.notes[0].starts_with(
            "operation 1: add_column models.rank: NOT NULL without a default: write its `up`"
        ),
        "{:?}",
        file.notes
    );
    assert!(
        file.notes[1].starts_with("operation 2: alter_column models.size"),
        "{:?}",
        file.notes
    );
    assert!(
        file.notes
            .last()
            .unwrap()
            .starts_with("as converted, `viewgate migrate plan` refuses it:"),
        "{:?}",
        file.notes
    );
}

#[test]
fn renames_drops_and_tables_have_their_operations() {
    let (migration, _) = converted(
        "ALTER TABLE models RENAME COLUMN name TO title;
         ALTER TABLE models RENAME TO ml_models;
         ALTER TABLE ml_models RENAME CONSTRAINT models_pkey TO ml_models_pkey;
         ALTER TABLE ml_models DROP COLUMN legacy;
         DROP INDEX IF EXISTS public.models_name_idx;
         CREATE TABLE tags (id bigserial PRIMARY KEY, model_id bigint NOT NULL REFERENCES ml_models (id) ON DELETE CASCADE, label text CHECK (label <> ''), UNIQUE (model_id, label));
         CREATE UNIQUE INDEX tags_label ON tags USING hash (label) WHERE label IS NOT NULL;
         DROP TABLE old_stuff;",
    );
    let kinds: Vec<&str> = migration.operations.iter().map(Operation::kind).collect();
    assert_eq!(
        kinds,
        [
            "rename_column",
            "rename_table",
            "rename_constraint",
            "drop_column",
            "drop_index",
            "create_table",
            "add_constraint",
            "create_index",
            "drop_table"
        ]
    );
    let Operation::CreateTable(create) = &migration.operations[5] else {
        unreachable!()
    };
    assert!(create.columns[0].primary_key && create.columns[0].sql_type == "bigserial");
    let reference = create.columns[1].references.as_ref().unwrap();
    assert_eq!(
        (reference.table.as_str(), reference.column.as_str()),
        ("ml_models", "id")
    );
    assert_eq!(
        reference.on_delete,
        Some(operation::ReferentialAction::Cascade)
    );
    assert_eq!(create.columns[2].check.as_deref(), Some("label <> ''"));
    let Operation::AddConstraint(unique) = &migration.operations[6] else {
        unreachable!()
    };
    assert_eq!(unique.name, "tags_model_id_label_key");
    let Operation::CreateIndex(index) = &migration.operations[7] else {
        unreachable!()
    };
    assert!(index.unique);
    assert_eq!(index.method.as_deref(), Some("hash"));
    assert_eq!(index.predicate.as_deref(), Some("label IS NOT NULL"));
    let Operation::DropIndex(drop) = &migration.operations[4] else {
        unreachable!()
    };
    assert_eq!(drop.schema.as_deref(), Some("public"));
}

#[test]
fn what_has_no_operation_is_kept_as_raw_sql_with_a_note() {
    let (migration, notes) = converted(
        "CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE INDEX models_lower ON models (lower(name)); UPDATE models SET name = trim(name)",
    );
    let ups: Vec<&str> = migration
        .operations
        .iter()
        .map(|operation| match operation {
            Operation::RawSql(raw) => raw.up.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ups,
        [
            "CREATE TYPE mood AS ENUM ('sad', 'ok')",
            "CREATE INDEX models_lower ON models (lower(name))",
            "UPDATE models SET name = trim(name)"
        ]
    );
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(notes.iter().all(|note| note.contains("write its `down`")));
}

#[test]
fn sql_that_does_not_parse_or_changes_nothing_is_an_error() {
    assert!(matches!(
        convert("ALTER TABLE models ADD COLUMN", "v2", "v1", None),
        Err(ConvertError::Unparsable(_))
    ));
    assert!(matches!(
        convert("BEGIN; COMMIT;", "v2", "v1", None),
        Err(ConvertError::Unsupported(_))
    ));
}

#[test]
fn a_later_change_to_a_column_the_conversion_adds_is_folded_into_it() {
    let (migration, notes) = converted(
        "CREATE TABLE tags (id bigint PRIMARY KEY, label text);
         ALTER TABLE tags ALTER COLUMN label SET DEFAULT 'x', ALTER COLUMN label SET NOT NULL;
         ALTER TABLE models ADD COLUMN rank integer;
         ALTER TABLE models ALTER COLUMN rank TYPE bigint;
         ALTER TABLE models ALTER COLUMN size SET NOT NULL;",
    );
    let kinds: Vec<&str> = migration.operations.iter().map(Operation::kind).collect();
    assert_eq!(kinds, ["create_table", "add_column", "alter_column"]);
    let Operation::CreateTable(create) = &migration.operations[0] else {
        unreachable!()
    };
    assert_eq!(create.columns[1].default.as_deref(), Some("'x'"));
    assert!(!create.columns[1].nullable);
    let Operation::AddColumn(add) = &migration.operations[1] else {
        unreachable!()
    };
    assert_eq!(add.column.sql_type, "bigint");
    // Only the change to an existing column is told what it needs.
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].starts_with("operation 3: alter_column models.size: SET NOT NULL needs `up`"),
        "{notes:?}"
    );
    assert!(
        notes[1].starts_with("as converted, `viewgate migrate plan` refuses it"),
        "{notes:?}"
    );
}

/// A dbmate file holds the change and its undoing: the down section is not more of the change
/// (it became a `drop_column` of the column just added, and a `drop_table`; the dbmate walk).
#[test]
fn a_tools_down_section_is_left_out_with_a_note() {
    let (migration, notes) = converted(
        "-- migrate:up
ALTER TABLE orders ADD COLUMN shipped_at timestamptz;
CREATE TABLE audit_archive (id bigint PRIMARY KEY, message text);

-- migrate:down
ALTER TABLE orders DROP COLUMN shipped_at;
DROP TABLE audit_log;
",
    );
    let kinds: Vec<&str> = migration.operations.iter().map(Operation::kind).collect();
    assert_eq!(kinds, ["add_column", "create_table"]);
    assert_eq!(
        notes,
        [
            "the down section (after `-- migrate:down`) is left out: `viewgate migrate rollback` undoes the operations until `migrate complete`"
        ]
    );
    // A file that is only a down section makes no change.
    let only_down = convert("-- +goose Down\nDROP TABLE audit_log;\n", "v2", "v1", None);
    assert!(
        matches!(only_down, Err(ConvertError::Unsupported(_))),
        "{only_down:?}"
    );
}
