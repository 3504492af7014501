//! A retyped identity column stays an identity: the migration most tables meet sooner or later,
//! an `integer` key generated as identity that must grow to `bigint`, runs through a new column
//! like any retype, and the contract makes the new column generated as identity again, by
//! the same sequence name and options, counting on from where the old sequence stood (not from
//! the largest key: rows deleted at the top keep their numbers retired), on a partitioned
//! table too from PostgreSQL 17. Against a real
//! Postgres, migrations run in-process.

use crate::migration_support;
use crate::support;

use migration_support::{
    at, complete_now, insert_keyed_at_both_versions, retype, rollback_now, start_text,
};
use support::{Database, exec, lines};
use viewgate::control::migrate::MigrationFile;
use viewgate::control::migrate::status::plan;

/// `models` keyed by an `integer` identity generated `generated` (`ALWAYS` or `BY DEFAULT`)
/// with `options`, 20 rows of which the last 5 are deleted, v1 applied.
async fn identity_keyed(generated: &str, options: &str) -> Database {
    let database = Database::start();
    database.admin(&migration_support::BASE.replace(
        "id bigserial PRIMARY KEY",
        &format!("id integer GENERATED {generated} AS IDENTITY ({options}) PRIMARY KEY"),
    ));
    database.apply_text(migration_support::SPEC).await;
    database.admin(
        "INSERT INTO models (name, size) SELECT 'model-' || n, n FROM generate_series(1, 20) AS n;
         DELETE FROM models WHERE name IN (SELECT 'model-' || n FROM generate_series(16, 20) AS n)",
    );
    database
}

/// The identity of `models.id` as Postgres describes it: how it is generated, its sequence's
/// name, type, increment, bounds, cache and cycling.
fn identity(database: &Database) -> String {
    database.admin(
        "SELECT a.attidentity::text || ' ' || a.atttypid::regtype || ' '
                || pg_get_serial_sequence('public.models', 'id') || ' '
                || s.seqtypid::regtype || ' +' || s.seqincrement || ' ' || s.seqmin || '..'
                || s.seqmax || ' cache ' || s.seqcache || ' cycle=' || s.seqcycle
           FROM pg_attribute a, pg_sequence s
          WHERE a.attrelid = 'public.models'::regclass AND a.attname = 'id'
            AND s.seqrelid = pg_get_serial_sequence('public.models', 'id')::regclass",
    )
}

fn widen_key() -> String {
    retype(
        "id",
        "bigint",
        "up = \"id::bigint\"\ndown = \"id::integer\"",
    )
}

/// What `migrate start` of [`widen_key`] says, refused before any change.
async fn widening_refused(database: &Database) -> String {
    let columns = migration_support::base_columns(database);
    let refused = start_text(database, "0002.toml", &widen_key())
        .await
        .expect_err("refused")
        .to_string();
    assert_eq!(
        migration_support::base_columns(database),
        columns,
        "no column was added"
    );
    refused
}

#[tokio::test]
async fn a_retyped_identity_key_stays_generated_and_counts_on_from_its_sequence() {
    let database = identity_keyed("BY DEFAULT", "INCREMENT BY 1 CACHE 1").await;
    database.admin(
        "CREATE ROLE orm LOGIN;
         GRANT USAGE ON SEQUENCE models_id_seq TO orm;
         GRANT SELECT ON SEQUENCE models_id_seq TO PUBLIC;
         COMMENT ON SEQUENCE models_id_seq IS 'keys of models';",
    );
    let sequence_extras = || {
        database.admin(
            "SELECT has_sequence_privilege('orm', 'models_id_seq', 'USAGE') || ' '
                    || has_sequence_privilege('public', 'models_id_seq', 'UPDATE') || ' '
                    || coalesce(obj_description('models_id_seq'::regclass, 'pg_class'), '-')",
        )
    };
    assert_eq!(sequence_extras(), "true false keys of models");
    let before = identity(&database);
    assert_eq!(
        before,
        "d integer public.models_id_seq integer +1 1..2147483647 cache 1 cycle=false"
    );

    let file = MigrationFile::load(&database.spec_file("plan.toml", &widen_key())).expect("loads");
    let planned = plan(&mut database.client().await, &file)
        .await
        .expect("plans")
        .to_string();
    assert!(
        planned.contains("_vg_v2_id is generated as identity again, by a sequence of the old one's name and options set where it stood"),
        "{planned}"
    );

    start_text(&database, "0002.toml", &widen_key())
        .await
        .expect("starts: the identity key is retyped through a new column");
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(
        identity(&database),
        before,
        "the rollback leaves the identity as it was"
    );

    start_text(&database, "0002.toml", &widen_key())
        .await
        .expect("starts again");
    let (_, v2) = insert_keyed_at_both_versions(&database).await;
    assert_eq!(
        lines(&v2, "SELECT name FROM models_v2 WHERE id > 20 ORDER BY id").await,
        ["v1-new", "v2-new"],
        "both versions' rows are numbered by the identity, past the deleted ones"
    );

    // The largest key falls back to 15; the sequence stands where it stood.
    database.admin("DELETE FROM models WHERE id > 15");
    let stood: i64 = database
        .admin("SELECT last_value FROM models_id_seq")
        .parse()
        .expect("a number");
    assert!(stood >= 22, "two inserts were numbered: {stood}");

    complete_now(&database).await.expect("completes");
    assert_eq!(
        identity(&database),
        "d bigint public.models_id_seq bigint +1 1..9223372036854775807 cache 1 cycle=false",
        "the new column is generated as identity by a sequence of its own width"
    );
    assert_eq!(
        sequence_extras(),
        "true false keys of models",
        "the sequence keeps its grants (currval needs one) and its comment"
    );
    let v2 = at(&database, "v2").await;
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('after')").await;
    assert_eq!(
        lines(&v2, "SELECT id FROM models_v2 WHERE name = 'after'").await,
        [(stood + 1).to_string()],
        "the sequence counts on from where it stood, not from the largest key"
    );
    database.admin("SELECT setval(pg_get_serial_sequence('public.models', 'id'), 3000000000)");
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('past-int')").await;
    assert_eq!(
        lines(&v2, "SELECT id FROM models_v2 WHERE name = 'past-int'").await,
        ["3000000001"]
    );
}

#[tokio::test]
async fn an_identity_generated_always_keeps_its_rule_and_its_options() {
    let database = identity_keyed(
        "ALWAYS",
        "START WITH 100 INCREMENT BY 10 MAXVALUE 1000000 CACHE 5 CYCLE",
    )
    .await;
    assert_eq!(
        identity(&database),
        "a integer public.models_id_seq integer +10 1..1000000 cache 5 cycle=true"
    );
    start_text(&database, "0002.toml", &widen_key())
        .await
        .expect("starts");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        identity(&database),
        "a bigint public.models_id_seq bigint +10 1..1000000 cache 5 cycle=true",
        "a bound set by hand stays; the rest follows the new type"
    );
    let v2 = at(&database, "v2").await;
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('after')").await;
    assert_eq!(
        lines(&v2, "SELECT id FROM models_v2 WHERE name = 'after'").await,
        ["300"],
        "20 rows numbered 100 to 290: the next is 300"
    );
    let refused = v2
        .execute("INSERT INTO models_v2 (id, name) VALUES (5, 'chosen')", &[])
        .await
        .expect_err("a key generated always cannot be chosen");
    assert_eq!(
        refused.code().map(|code| code.code()),
        Some("428C9"),
        "{refused}"
    );
}

#[tokio::test]
async fn an_identity_that_could_not_be_one_again_is_refused_before_any_change() {
    let database = identity_keyed("BY DEFAULT", "CACHE 1").await;
    let columns = migration_support::base_columns(&database);
    for (extra, expected) in [
        (
            "type = \"numeric\"",
            "an identity column counts in smallint, integer or bigint",
        ),
        (
            "type = \"bigint\"\nnullable = true\ndown = \"coalesce(id, 0)\"",
            "an identity column is NOT NULL, and the new column may be NULL",
        ),
    ] {
        let migration = format!(
            "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"alter_column\"\n\
             table = \"models\"\ncolumn = \"id\"\n{extra}\n"
        );
        let refused = start_text(&database, "0002.toml", &migration)
            .await
            .expect_err("refused")
            .to_string();
        assert!(
            refused.contains("column id is covered by its identity sequence")
                && refused.contains(expected),
            "{refused}"
        );
        assert_eq!(
            migration_support::base_columns(&database),
            columns,
            "no column was added"
        );
    }
}

/// Another table's default calling the identity's sequence as `nextval('…')` is written (bound
/// to the sequence itself) would keep the contract from dropping it (2BP01): refused before any
/// change. Called by name, it reaches the sequence the contract makes under that name, and the
/// two tables keep drawing from one count.
#[tokio::test]
async fn another_table_calling_the_identity_sequence_refuses_until_it_calls_it_by_name() {
    let database = identity_keyed("BY DEFAULT", "CACHE 1").await;
    database.admin(
        "CREATE TABLE public.tickets (n bigint DEFAULT nextval('models_id_seq'), what text)",
    );
    let refused = widening_refused(&database).await;
    assert!(
        refused.contains(
            "column id's sequence models_id_seq is called by default value for column n of table tickets"
        ) && refused.contains("nextval('models_id_seq'::text)"),
        "{refused}"
    );

    database.admin("ALTER TABLE tickets ALTER COLUMN n SET DEFAULT nextval('models_id_seq'::text)");
    start_text(&database, "0002.toml", &widen_key())
        .await
        .expect("starts");
    complete_now(&database).await.expect("completes");
    database.admin("INSERT INTO tickets (what) VALUES ('after')");
    let v2 = at(&database, "v2").await;
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('after')").await;
    assert_eq!(
        database.admin("SELECT n FROM tickets"),
        "21",
        "the sequence stood at 20"
    );
    assert_eq!(
        lines(&v2, "SELECT id FROM models_v2 WHERE name = 'after'").await,
        ["22"]
    );
}

/// An identity key of a partitioned table: from PostgreSQL 17 its partitions take the
/// identity along, and the retype runs as on a plain table, the contract making the key
/// generated as identity again on the table and each partition (a row inserted straight into
/// a partition is numbered by the same sequence, on from where it stood); before 17 they do
/// not, and the migration is refused before any change.
#[tokio::test]
async fn an_identity_key_of_a_partitioned_table_is_retyped_where_partitions_take_it_along() {
    let database = Database::start();
    database.admin(
        "CREATE TABLE public.models (id integer GENERATED BY DEFAULT AS IDENTITY,
             taken date NOT NULL DEFAULT '2026-01-15', name text NOT NULL,
             size integer NOT NULL DEFAULT 0, PRIMARY KEY (id, taken)) PARTITION BY RANGE (taken);
         CREATE TABLE public.models_january PARTITION OF models
             FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
         CREATE TABLE public.models_later PARTITION OF models DEFAULT;
         INSERT INTO models (taken, name)
             SELECT DATE '2026-01-01' + n, 'model-' || n FROM generate_series(1, 40) AS n",
    );
    database
        .apply_text(
            "[[tables]]\nname = \"models\"\nkey = [\"id\", \"taken\"]\n\
             [[versions]]\nname = \"v1\"\n[[versions.tables]]\nbase = \"models\"\n\
             columns = [\"id\", \"taken\", \"name\", \"size\"]\n",
        )
        .await;
    let server: i32 = database
        .admin("SHOW server_version_num")
        .parse()
        .expect("a number");
    if server < 170_000 {
        let refused = widening_refused(&database).await;
        assert!(
            refused.contains(
                "before PostgreSQL 17 its partitions would not all take the identity along"
            ),
            "{refused}"
        );
        return;
    }
    let keys = || {
        database.admin(
            "SELECT string_agg(a.attrelid::regclass || ' ' || a.attidentity::text || ' ' || a.atttypid::regtype,
                               ', ' ORDER BY a.attrelid::regclass::text)
               FROM pg_partition_tree('models') t
               JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = 'id'",
        )
    };
    let before = keys();
    assert_eq!(
        before,
        "models d integer, models_january d integer, models_later d integer"
    );
    start_text(&database, "0002.toml", &widen_key())
        .await
        .expect("starts");
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(keys(), before, "the rollback leaves the identity as it was");
    start_text(&database, "0002.toml", &widen_key())
        .await
        .expect("starts again");
    insert_keyed_at_both_versions(&database).await;
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        keys(),
        "models d bigint, models_january d bigint, models_later d bigint",
        "the table and each partition generate the key as identity"
    );
    let stood: i64 = database
        .admin("SELECT last_value FROM models_id_seq")
        .parse()
        .expect("a number");
    assert!(
        stood >= 42,
        "the rows of both versions were numbered: {stood}"
    );
    database.admin(
        "INSERT INTO models_later (taken, name) VALUES ('2026-06-01', 'straight');
         INSERT INTO models (name) VALUES ('through the table')",
    );
    assert_eq!(
        database.admin(
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM models
              WHERE name IN ('straight', 'through the table')"
        ),
        format!("{},{}", stood + 1, stood + 2)
    );
}

/// `models.id`'s sequence: where it stands.
fn last_number(database: &Database) -> i64 {
    database
        .admin("SELECT last_value FROM models_id_seq")
        .parse()
        .expect("a number")
}

/// A client at `version` acting as `role`.
async fn at_as(database: &Database, version: &str, role: &str) -> tokio_postgres::Client {
    let client = at(database, version).await;
    exec(&client, &format!("SET ROLE {role}")).await;
    client
}

#[tokio::test]
async fn a_role_granted_only_the_table_inserts_at_both_versions_one_number_a_row() {
    // An identity needs no privilege on its sequence, so applications are seldom granted one;
    // the retype must not make every insert depend on it, nor take two numbers a row.
    let database = identity_keyed("BY DEFAULT", "INCREMENT BY 1 CACHE 1").await;
    database.admin(
        "CREATE ROLE app NOLOGIN;
         GRANT SELECT, INSERT, UPDATE ON models, models_v1 TO app",
    );
    start_text(&database, "0002.toml", &widen_key())
        .await
        .expect("starts");
    // models_v2 took models_v1's grants (views_kept.rs), and keeps them past the contract.
    let v1 = at_as(&database, "v1", "app").await;
    let v2 = at_as(&database, "v2", "app").await;
    let direct = database.client().await;
    exec(&direct, "SET ROLE app").await;

    let before = last_number(&database);
    exec(&v1, "INSERT INTO models_v1 (name) VALUES ('v1-new')").await;
    exec(
        &v2,
        "INSERT INTO models_v2 (name) VALUES ('v2-new'), ('v2-newer')",
    )
    .await;
    exec(&direct, "INSERT INTO models (name) VALUES ('direct-new')").await;
    assert_eq!(
        last_number(&database),
        before + 4,
        "four rows, four numbers"
    );
    exec(
        &v2,
        "INSERT INTO models_v2 (id, name) VALUES (3000, 'v2-given')",
    )
    .await;
    let read = "SELECT id || ' ' || name FROM models_vN WHERE id > 20 ORDER BY id";
    assert_eq!(
        lines(&v2, &read.replace("vN", "v2")).await,
        [
            format!("{} v1-new", before + 1),
            format!("{} v2-new", before + 2),
            format!("{} v2-newer", before + 3),
            format!("{} direct-new", before + 4),
            "3000 v2-given".to_owned(),
        ],
        "each row keeps the number its identity took, at v2 as at v1; a key v2 gives stays"
    );
    assert_eq!(
        lines(&v1, &read.replace("vN", "v1")).await,
        lines(&v2, &read.replace("vN", "v2")).await,
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM models WHERE id IS DISTINCT FROM _vg_v2_id"),
        "0",
        "both columns hold the same key"
    );

    complete_now(&database).await.expect("completes");
    let v2 = at_as(&database, "v2", "app").await;
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('after')").await;
    assert_eq!(
        lines(&v2, "SELECT id FROM models_v2 WHERE name = 'after'").await,
        [(before + 6).to_string()],
        "an identity again, counting on (the row v2 gave a key took a number too: the old column's identity took one for it)"
    );
}

#[tokio::test]
async fn a_retyped_identitys_stand_in_is_not_retyped_again_before_its_migration_completes() {
    let database = identity_keyed("BY DEFAULT", "INCREMENT BY 1 CACHE 1").await;
    start_text(&database, "0002.toml", &widen_key())
        .await
        .expect("starts");
    let columns = migration_support::base_columns(&database);
    let again = retype(
        "id",
        "integer",
        "up = \"id::integer\"\ndown = \"id::bigint\"",
    )
    .replace("\"v2\"", "\"v3\"")
    .replace("\"v1\"", "\"v2\"");
    let refused = start_text(&database, "0003.toml", &again)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        refused.contains("base column _vg_v2_id of public.models stands in for a column numbered by a sequence that the migration to v2 retypes")
            && refused.contains("Complete the migration to v2 first"),
        "{refused}"
    );
    assert_eq!(
        migration_support::base_columns(&database),
        columns,
        "nothing changed"
    );
    complete_now(&database).await.expect("completes");
    start_text(&database, "0003.toml", &again)
        .await
        .expect("once v2 is complete, its identity is retyped like any");
}
