//! A retyped column keeps what it carries besides its indexes and constraints: its comment,
//! its column privileges, its statistics target and options, its storage and compression, and
//! the extended statistics over it. `alter_column` through a new column drops the old column
//! at the contract, and Postgres drops all of these with it. Against a real Postgres,
//! migrations run in-process.

use crate::migration_support;
use crate::support;

use migration_support::{at, complete_now, retype, rollback_now, seeded, start_text};
use support::{Database, exec};
use viewgate::control::migrate::MigrationFile;
use viewgate::control::migrate::status::plan;

/// What `models.legacy_note` carries, one line each, as the catalog describes it.
fn legacy_note_properties(database: &Database) -> String {
    database.admin(
        "SELECT concat_ws(E'\\n',
                'comment: ' || coalesce(col_description(a.attrelid, a.attnum), '(none)'),
                'privileges: ' || coalesce((
                    SELECT string_agg(privilege, ', ' ORDER BY privilege)
                      FROM (SELECT CASE WHEN p.grantee = 0 THEN 'PUBLIC' ELSE p.grantee::regrole::text END
                                   || ' ' || p.privilege_type
                                   || CASE WHEN p.is_grantable THEN ' grantable' ELSE '' END
                              FROM aclexplode(a.attacl) p) AS privileges (privilege)), '(none)'),
                'statistics: ' || coalesce(nullif(a.attstattarget, -1)::text, 'default'),
                'options: ' || coalesce(array_to_string(a.attoptions, ','), '(none)'),
                'storage: ' || a.attstorage::text,
                'compression: ' || coalesce(nullif(a.attcompression::text, ''), 'default'),
                'type: ' || format_type(a.atttypid, a.atttypmod))
           FROM pg_attribute a
          WHERE a.attrelid = 'public.models'::regclass AND a.attname = 'legacy_note'",
    )
}

/// Every extended statistics object on `models`, as Postgres would write it out.
fn extended_statistics(database: &Database) -> String {
    database.admin(
        "SELECT coalesce(string_agg(pg_get_statisticsobjdef(oid), E'\\n' ORDER BY stxname), '(none)')
           FROM pg_statistic_ext WHERE stxrelid = 'public.models'::regclass",
    )
}

const NOTE_PROPERTIES: &str = "
    CREATE ROLE note_reader;
    CREATE ROLE note_editor;
    GRANT SELECT (id, name, legacy_note) ON models TO note_reader;
    GRANT SELECT (legacy_note), UPDATE (legacy_note) ON models TO note_editor WITH GRANT OPTION;
    GRANT REFERENCES (legacy_note) ON models TO PUBLIC;
    COMMENT ON COLUMN models.legacy_note IS 'free text; don''t index it';
    ALTER TABLE models ALTER COLUMN legacy_note SET STATISTICS 500;
    ALTER TABLE models ALTER COLUMN legacy_note SET (n_distinct = -0.5);
    ALTER TABLE models ALTER COLUMN legacy_note SET STORAGE EXTERNAL;
    ALTER TABLE models ALTER COLUMN legacy_note SET COMPRESSION pglz;
    CREATE STATISTICS models_name_note (ndistinct, dependencies) ON name, legacy_note FROM models;
    CREATE STATISTICS models_three (mcv) ON name, size, legacy_note FROM models;
    CREATE STATISTICS models_name_size ON name, size FROM models;
    UPDATE models SET legacy_note = 'note ' || (id % 7);
    ANALYZE models;";

fn retype_note() -> String {
    retype(
        "legacy_note",
        "varchar(500)",
        "up = \"legacy_note::varchar(500)\"\ndown = \"legacy_note::text\"",
    )
}

#[tokio::test]
async fn a_retyped_column_keeps_its_comment_privileges_statistics_and_storage() {
    let database = seeded(40).await;
    database.admin(NOTE_PROPERTIES);
    let before = legacy_note_properties(&database);
    let statistics_before = extended_statistics(&database);
    let file =
        MigrationFile::load(&database.spec_file("plan.toml", &retype_note())).expect("loads");
    let report = plan(&mut database.client().await, &file)
        .await
        .expect("plans")
        .to_string();
    for shown in [
        "ALTER TABLE \"public\".\"models\" ALTER COLUMN \"_vg_v2_legacy_note\" SET STORAGE EXTERNAL;",
        "ALTER TABLE \"public\".\"models\" ALTER COLUMN \"_vg_v2_legacy_note\" SET COMPRESSION pglz;",
        "-- and, before the old column goes: whatever comment, column privileges, statistics target and options public.models.legacy_note has then are given to _vg_v2_legacy_note",
    ] {
        assert!(report.contains(shown), "{shown} in\n{report}");
    }

    start_text(&database, "0002.toml", &retype_note())
        .await
        .expect("starts");
    // Storage and compression decide how the backfill writes each value, so the new column
    // has them from the expand on.
    let replacement = database.admin(
        "SELECT attstorage::text || ' ' || attcompression::text FROM pg_attribute
          WHERE attrelid = 'public.models'::regclass AND attname = '_vg_v2_legacy_note'",
    );
    assert_eq!(
        replacement, "e p",
        "the replacement's storage and compression"
    );
    // What the contract carries over is what the old column has then.
    database.admin("COMMENT ON COLUMN models.legacy_note IS 'changed while live'");
    let v2 = at(&database, "v2").await;
    exec(
        &v2,
        "INSERT INTO models_v2 (name, size, legacy_note) VALUES ('written at v2', 1, 'v2 note')",
    )
    .await;

    complete_now(&database).await.expect("completes");
    let after = legacy_note_properties(&database);
    assert_eq!(
        after,
        before
            .replace("free text; don't index it", "changed while live")
            .replace("type: text", "type: character varying(500)"),
        "the retyped column carries what the old one did"
    );
    assert_eq!(
        extended_statistics(&database),
        statistics_before,
        "the extended statistics over the old column are made again over the new one"
    );
    let analyzed = database.admin(
        "SELECT string_agg(s.stxname || ' ' || (d.stxoid IS NOT NULL), ', ' ORDER BY s.stxname)
           FROM pg_statistic_ext s LEFT JOIN pg_statistic_ext_data d ON d.stxoid = s.oid
          WHERE s.stxrelid = 'public.models'::regclass",
    );
    assert_eq!(
        analyzed, "models_name_note true, models_name_size true, models_three true",
        "the remade statistics are gathered once the contract is done"
    );
    // The privileges work, not only read the same: the reader reads the retyped column.
    database.admin("GRANT USAGE ON SCHEMA public TO note_reader");
    let read = database
        .admin("SET ROLE note_reader; SELECT legacy_note FROM models WHERE name = 'written at v2'");
    assert_eq!(read, "v2 note");
}

#[tokio::test]
async fn a_rollback_leaves_the_old_columns_properties_as_they_were() {
    let database = seeded(20).await;
    database.admin(NOTE_PROPERTIES);
    let before = legacy_note_properties(&database);
    let statistics_before = extended_statistics(&database);
    start_text(&database, "0002.toml", &retype_note())
        .await
        .expect("starts");
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(legacy_note_properties(&database), before);
    assert_eq!(extended_statistics(&database), statistics_before);
}

#[tokio::test]
async fn statistics_over_expressions_follow_a_column_renamed_as_it_is_retyped() {
    let database = seeded(30).await;
    database.admin(
        "CREATE STATISTICS models_lower_note ON (lower(legacy_note)), name FROM models;
         CREATE STATISTICS models_note_alone ON (lower(legacy_note)) FROM models;
         CREATE STATISTICS models_name_note ON name, legacy_note FROM models;
         COMMENT ON COLUMN models.legacy_note IS 'kept under its new name'",
    );
    start_text(
        &database,
        "0002.toml",
        &retype(
            "legacy_note",
            "varchar(500)",
            "rename_to = \"note\"\nup = \"legacy_note::varchar(500)\"\ndown = \"note::text\"",
        ),
    )
    .await
    .expect("starts");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        extended_statistics(&database),
        "CREATE STATISTICS public.models_lower_note ON name, lower(note::text) FROM models\n\
         CREATE STATISTICS public.models_name_note ON name, note FROM models\n\
         CREATE STATISTICS public.models_note_alone ON lower(note::text) FROM models"
    );
    assert_eq!(
        database.admin("SELECT col_description('public.models'::regclass, attnum) FROM pg_attribute WHERE attrelid = 'public.models'::regclass AND attname = 'note'"),
        "kept under its new name"
    );
}

#[tokio::test]
async fn each_partition_keeps_what_its_own_column_carries() {
    let database = crate::migrations_partitioned::partitioned_models().await;
    database.admin(
        "CREATE ROLE size_reader;
         GRANT SELECT (id, size) ON models TO size_reader;
         GRANT SELECT (size) ON models_january TO size_reader;
         COMMENT ON COLUMN models.size IS 'the whole table''s';
         COMMENT ON COLUMN models_february_0.size IS 'the first half of February''s';
         ALTER TABLE ONLY models_january ALTER COLUMN size SET STATISTICS 700;
         CREATE STATISTICS january_name_size ON name, size FROM models_january;
         ANALYZE models",
    );
    let described = |database: &Database| {
        database.admin(
            "SELECT string_agg(c.relname || ': ' || concat_ws(' | ',
                        col_description(c.oid, a.attnum), a.attacl::text,
                        nullif(a.attstattarget, -1)::text, format_type(a.atttypid, a.atttypmod)),
                        E'\\n' ORDER BY c.relname)
               FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'size'
              WHERE c.relname LIKE 'models%' AND c.relkind IN ('r', 'p')",
        ) + "\n"
            + &extended_statistics_on(database, "models_january")
    };
    let before = described(&database);
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
    complete_now(&database).await.expect("completes");
    assert_eq!(described(&database), before.replace("integer", "bigint"));
}

/// Every extended statistics object on `table`, as Postgres would write it out.
fn extended_statistics_on(database: &Database, table: &str) -> String {
    database.admin(&format!(
        "SELECT coalesce(string_agg(pg_get_statisticsobjdef(oid), E'\\n' ORDER BY stxname), '(none)')
           FROM pg_statistic_ext WHERE stxrelid = 'public.{table}'::regclass"
    ))
}

#[tokio::test]
async fn statistics_the_new_type_cannot_take_go_with_the_old_column_and_the_contract_completes() {
    let database = seeded(30).await;
    database.admin(
        "CREATE STATISTICS models_abs_size ON (abs(size)), name FROM models;
         CREATE STATISTICS models_name_size ON name, size FROM models",
    );
    start_text(
        &database,
        "0002.toml",
        &retype(
            "size",
            "text",
            "up = \"size::text\"\ndown = \"size::integer\"",
        ),
    )
    .await
    .expect("starts");
    complete_now(&database)
        .await
        .expect("completes: abs(text) does not exist, and only that object is left out");
    assert_eq!(
        extended_statistics(&database),
        "CREATE STATISTICS public.models_name_size ON name, size FROM models"
    );
}
