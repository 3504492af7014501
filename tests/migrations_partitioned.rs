//! Migrations on partitioned tables, whose indexes Postgres neither builds nor drops
//! `CONCURRENTLY`: an index built partition by partition (a partition partitioned in turn, a
//! default partition), killed between attachments and resumed, rolled back and completed; a
//! unique index without the partition key refused in the expand; partitions created during
//! the run given the index, and steps on the partitions gone skipped; a partitioned index
//! dropped by the contract; a unique constraint made of each partition's, built concurrently,
//! also on the partitions created since the start, before the contract; the rebuilt indexes'
//! columns named by the contract as on the same tree made by hand.

use crate::migration_support;
use crate::support;

use migration_support::{
    KillAtStep, at, complete_now, contract_sql, planned, retype, rollback_now, seeded,
    start_killed_at_step, start_text, start_watched,
};
use support::{Database, exec};
use tokio_postgres::error::SqlState;
use viewgate::control::migrate::Progress;

/// `models` partitioned by month, February partitioned again by half-month, and a default
/// partition; 90 rows over all four tables that hold rows; its v1 spec applied.
pub(crate) async fn partitioned_models() -> Database {
    let database = Database::start();
    database.admin(
        "CREATE TABLE public.models (id bigint, taken date NOT NULL, name text NOT NULL,
             size integer NOT NULL DEFAULT 0, PRIMARY KEY (id, taken)) PARTITION BY RANGE (taken);
         CREATE TABLE public.models_january PARTITION OF models
             FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
         CREATE TABLE public.models_february PARTITION OF models
             FOR VALUES FROM ('2026-02-01') TO ('2026-03-01') PARTITION BY RANGE (taken);
         CREATE TABLE public.models_february_0 PARTITION OF models_february
             FOR VALUES FROM ('2026-02-01') TO ('2026-02-15');
         CREATE TABLE public.models_february_1 PARTITION OF models_february
             FOR VALUES FROM ('2026-02-15') TO ('2026-03-01');
         CREATE TABLE public.models_later PARTITION OF models DEFAULT;
         INSERT INTO models (id, taken, name)
             SELECT n, DATE '2026-01-01' + n, 'model-' || n FROM generate_series(1, 90) AS n",
    );
    database
        .apply_text(
            r#"
[[tables]]
name = "models"
key = ["id", "taken"]
[[versions]]
name = "v1"
[[versions.tables]]
base = "models"
columns = ["id", "taken", "name", "size"]
"#,
        )
        .await;
    database
}

const LABELLED: &str = r#"version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
column = { name = "label", type = "text", nullable = false }
up = "upper(name)"
[[operations]]
op = "create_index"
name = "models_label_key"
table = "models"
columns = ["label", "taken", "id"]
unique = true
where = "size >= 0"
"#;

/// The index's tree as `pg_partition_tree` has it: each member's table and whether it is
/// valid, and the names of the indexes on the label column whatever they are attached to.
fn label_indexes(database: &Database) -> String {
    database.admin(
        "SELECT coalesce((SELECT string_agg(i.indrelid::regclass::text || ':' || i.indisvalid, ','
                                            ORDER BY i.indrelid::regclass::text)
                            FROM pg_partition_tree(to_regclass('models_label_key')) t
                            JOIN pg_index i ON i.indexrelid = t.relid), '-')
                || ' / ' || (SELECT count(*) FROM pg_class WHERE relname LIKE 'models_label_key%')",
    )
}

const ALL_VALID: &str = "models:true,models_february:true,models_february_0:true,models_february_1:true,models_january:true,models_later:true / 6";

/// Runs the start of [`LABELLED`] until `kill` kills it, then ends its sessions.
async fn killed_at_step(database: &Database, kill: KillAtStep) {
    start_killed_at_step(database, "0002.toml", LABELLED, kill).await;
}

/// Each index on the label column whose name starts with `models_label_key` and `suffix`,
/// with its oid: the same after a run means it was kept, not built again.
fn label_index_oids(database: &Database, suffix: &str) -> String {
    database.admin(&format!(
        "SELECT string_agg(relname || '=' || oid, ',' ORDER BY relname) FROM pg_class
          WHERE relkind IN ('i', 'I') AND relname LIKE 'models_label_key{suffix}%'"
    ))
}

/// Postgres builds no index on a partitioned table `CONCURRENTLY`, and `create_index` was
/// refused on one. It is made `ON ONLY` the table, built concurrently on each partition that
/// holds rows and attached; a run killed between two attachments starts the builds over but
/// for the partitions' indexes built whole and not attached yet; one killed after all of them
/// keeps them all.
#[tokio::test]
async fn an_index_on_a_partitioned_table_is_built_partition_by_partition() {
    let database = partitioned_models().await;
    let report = planned(&database, LABELLED).await.to_string();
    for shown in [
        "CREATE UNIQUE INDEX \"models_label_key\" ON ONLY \"public\".\"models\" USING btree (\"label\", \"taken\", \"id\") WHERE (size >= 0);",
        "-- (each attempt first clears what a killed or timed-out one left: DROP INDEX IF EXISTS \"public\".\"models_label_key\")",
        "CREATE UNIQUE INDEX \"models_label_key_models_february\" ON ONLY \"public\".\"models_february\" USING btree (\"label\", \"taken\", \"id\") WHERE (size >= 0); ALTER INDEX \"public\".\"models_label_key\" ATTACH PARTITION \"public\".\"models_label_key_models_february\";",
        "CREATE UNIQUE INDEX CONCURRENTLY \"models_label_key_models_february_0\" ON \"public\".\"models_february_0\"",
        "ALTER INDEX \"public\".\"models_label_key_models_february\" ATTACH PARTITION \"public\".\"models_label_key_models_february_0\";",
    ] {
        assert!(
            report.contains(shown),
            "`migrate plan` shows {shown}\n{report}"
        );
    }
    killed_at_step(
        &database,
        KillAtStep("attach index models_label_key_models_later"),
    )
    .await;
    assert!(
        label_indexes(&database).starts_with("models:false,"),
        "the table's index is not valid until each partition's is attached: {}",
        label_indexes(&database)
    );
    let built_before_the_kill = label_index_oids(&database, "models_label_key_models_later");
    // Resumed, killed again as it goes live: every index built whole by then is kept by the
    // run after, not built again (the unattached one of the first run too).
    killed_at_step(&database, KillAtStep("live")).await;
    let built = label_index_oids(&database, "");
    assert!(built.contains(&built_before_the_kill), "{built}");
    let outcome = start_text(&database, "0002.toml", LABELLED)
        .await
        .expect("resumes");
    assert_eq!(outcome.how, "resumed");
    assert_eq!(label_indexes(&database), ALL_VALID);
    assert_eq!(label_index_oids(&database, ""), built);

    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(
        &v1,
        "INSERT INTO models_v1 (id, taken, name) VALUES (100, '2026-02-10', 'old')",
    )
    .await;
    exec(
        &v2,
        "INSERT INTO models_v2 (id, taken, name, label) VALUES (101, '2026-05-01', 'new', 'NEW')",
    )
    .await;
    let duplicate = v2
        .batch_execute("INSERT INTO models_v2 (id, taken, name, label) VALUES (101, '2026-05-01', 'again', 'NEW')")
        .await
        .expect_err("the key and the unique index refuse it");
    assert_eq!(
        duplicate.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM models WHERE label = upper(name)"),
        "92"
    );
    drop((v1, v2));

    rollback_now(&database).await.expect("rolls back");
    assert_eq!(label_indexes(&database), "- / 0");
    start_text(&database, "0002.toml", LABELLED)
        .await
        .expect("starts again");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(label_indexes(&database), ALL_VALID);
}

/// Runs `sql` (as the application might, from another session) when a step whose description
/// contains the text begins.
struct AtStep<'a> {
    database: &'a Database,
    step: &'static str,
    sql: &'static str,
}

impl Progress for AtStep<'_> {
    fn step(&mut self, description: &str) {
        if description.contains(self.step) {
            self.database.admin(self.sql);
        }
    }
    fn backfill(&mut self, _table: &str, _rows: u64, _estimate: u64, _rate: f64) {}
}

/// The plan builds the index of each partition the table has when the migration starts: one
/// created while it runs (pg_partman's next month; here a partition partitioned in turn and
/// one written to at once) had none, the table's index stayed invalid and the run failed,
/// rolled back whole after the backfill. Each gets its own before the check, recorded in the
/// plan, so that a rollback drops it too.
#[tokio::test]
async fn partitions_created_during_the_run_get_the_index() {
    let database = partitioned_models().await;
    let with_new_partitions = ALL_VALID
        .replace(
            "models:true,",
            "models:true,models_2027:true,models_2027_h1:true,models_2028:true,",
        )
        .replace("/ 6", "/ 9");
    start_watched(
        &database,
        "0002.toml",
        LABELLED,
        &mut AtStep {
            database: &database,
            step: "make index models_label_key on models alone",
            sql: "CREATE TABLE public.models_2027 PARTITION OF models
                      FOR VALUES FROM ('2027-01-01') TO ('2028-01-01') PARTITION BY RANGE (taken);
                  CREATE TABLE public.models_2027_h1 PARTITION OF models_2027
                      FOR VALUES FROM ('2027-01-01') TO ('2027-07-01');
                  CREATE TABLE public.models_2028 PARTITION OF models
                      FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
                  SET viewgate.version = 'v1';
                  INSERT INTO models (id, taken, name)
                      VALUES (500, '2027-02-01', 'model-500'), (501, '2028-02-01', 'model-501')",
        },
    )
    .await
    .expect("the new partitions get their index");
    assert_eq!(label_indexes(&database), with_new_partitions);
    assert_eq!(
        database.admin(
            "SELECT string_agg(tableoid::regclass || ':' || label, ',' ORDER BY id) FROM models WHERE id >= 500"
        ),
        "models_2027_h1:MODEL-500,models_2028:MODEL-501"
    );
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(label_indexes(&database), "- / 0");
    start_text(&database, "0002.toml", LABELLED)
        .await
        .expect("starts again, with the new partitions in its plan");
    assert_eq!(label_indexes(&database), with_new_partitions);
}

/// pg_partman's retention detaches and drops old partitions while a migration runs: the
/// plan's build on a partition that is gone failed the run after the backfill, and the
/// contract's step making a dropped partition's index its constraint failed every `migrate
/// complete` (and gave a detached one a constraint of its own). A step on a partition that is
/// no longer one of its parent's is skipped.
#[tokio::test]
async fn partitions_gone_during_the_run_are_skipped() {
    let database = partitioned_models().await;
    start_watched(
        &database,
        "0002.toml",
        LABELLED,
        &mut AtStep {
            database: &database,
            step: "make index models_label_key on models alone",
            sql: "ALTER TABLE models DETACH PARTITION models_january; DROP TABLE models_february_1",
        },
    )
    .await
    .expect("the builds on the partitions gone are skipped");
    assert_eq!(
        label_indexes(&database),
        "models:true,models_february:true,models_february_0:true,models_later:true / 4"
    );

    let database = partitioned_models().await;
    start_text(
        &database,
        "0002.toml",
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"add_constraint\"\ntable = \"models\"\nname = \"models_name_key\"\ntype = \"unique\"\ncolumns = [\"name\", \"taken\"]",
    )
    .await
    .expect("starts");
    database
        .admin("ALTER TABLE models DETACH PARTITION models_january; DROP TABLE models_february_0");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database)
        .await
        .expect("completes without the partitions gone");
    assert_eq!(
        database.admin(
            "SELECT string_agg(t.relid::regclass || ':' || i.indisvalid, ',' ORDER BY t.relid::regclass::text)
               FROM pg_partition_tree('models_name_key') t JOIN pg_index i ON i.indexrelid = t.relid"
        ),
        "models_february_name_taken_key:true,models_name_key:true,models_name_key_models_february_1:true,models_name_key_models_later:true"
    );
    assert_eq!(
        database.admin(
            "SELECT count(*) FROM pg_constraint
              WHERE conrelid = 'models_january'::regclass AND conname LIKE 'models_name_key%'"
        ),
        "0",
        "the detached partition is not given the constraint"
    );
}

/// A unique index on a partitioned table must hold the partition key: the build failed after
/// the whole backfill. The expand builds the index on an empty copy first.
#[tokio::test]
async fn a_unique_index_without_the_partition_key_fails_in_the_expand() {
    let database = partitioned_models().await;
    let error = start_text(
        &database,
        "0002.toml",
        &LABELLED.replace("[\"label\", \"taken\", \"id\"]", "[\"label\"]"),
    )
    .await
    .expect_err("refused")
    .to_string();
    assert!(
        error.contains("must include all partitioning columns")
            && error.contains("nothing was changed"),
        "{error}"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.migrations"),
        "0"
    );
    assert_eq!(label_indexes(&database), "- / 0");
}

/// `DROP INDEX CONCURRENTLY` of a partitioned index fails (0A000), and it ran after the
/// contract had committed: the migration was complete and the index still there, with advice
/// to run the same statement again.
#[tokio::test]
async fn a_partitioned_index_is_dropped_by_the_contract() {
    let database = seeded(2).await;
    database.admin(
        "CREATE TABLE public.events (id bigint, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE public.events_old PARTITION OF events FOR VALUES FROM ('2000-01-01') TO ('2026-01-01');
         CREATE TABLE public.events_new PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2100-01-01');
         CREATE INDEX events_at ON events (at)",
    );
    let indexes_on_at = || {
        database.admin(
            "SELECT count(*) FROM pg_index i JOIN pg_attribute a
                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
              WHERE i.indnatts = 1 AND a.attname = 'at'",
        )
    };
    assert_eq!(indexes_on_at(), "3", "the parent's and each partition's");
    start_text(
        &database,
        "0002.toml",
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"drop_index\"\nname = \"events_at\"",
    )
    .await
    .expect("starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(indexes_on_at(), "0");
}

/// Makes `version` the default and completes its migration, then asserts that `models` has
/// constraint `name` as `definition`, whose index on each partition holding rows is one of
/// `built` (the OIDs of the indexes the migration built: the contract built none), all six
/// of its tree valid, and primary keys if it is one.
async fn complete_into_constraint(
    database: &Database,
    version: &str,
    (name, definition): (&str, &str),
    built: &str,
) {
    database.admin(&format!(
        "UPDATE viewgate.settings SET default_version = '{version}'"
    ));
    complete_now(database).await.expect("completes");
    assert_eq!(
        database.admin(&format!(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
              WHERE conrelid = 'models'::regclass AND conname = '{name}'"
        )),
        definition
    );
    assert_eq!(
        database.admin(&format!(
            "SELECT string_agg(t.relid::oid::text, ',' ORDER BY t.relid::oid)
               FROM pg_partition_tree('{name}') t WHERE t.isleaf"
        )),
        built,
        "the table's constraint took the partitions' indexes, building none"
    );
    assert_eq!(
        database.admin(&format!(
            "SELECT count(*) || ' ' || bool_and(i.indisvalid) || ' ' || bool_and(i.indisprimary)
               FROM pg_partition_tree('{name}') t JOIN pg_index i ON i.indexrelid = t.relid"
        )),
        format!("6 true {}", definition.starts_with("PRIMARY KEY")),
        "valid, and each a key if the table's is"
    );
}

/// A unique constraint on a partitioned table was refused: Postgres has no `USING INDEX` for
/// one, and adding it builds every partition's index under a lock that blocks writes. It is
/// made of the partitions' own, each built concurrently and made its partition's constraint
/// at complete: adding the table's then builds nothing.
#[tokio::test]
async fn a_unique_constraint_on_a_partitioned_table_is_made_of_its_partitions() {
    let database = partitioned_models().await;
    let column_alone = start_text(
        &database,
        "0002.toml",
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"add_column\"\ntable = \"models\"\ncolumn = { name = \"code\", type = \"text\", unique = true }",
    )
    .await
    .expect_err("a unique column without the partition key")
    .to_string();
    assert!(
        column_alone.contains("must include all partitioning columns")
            && column_alone.contains("nothing was changed"),
        "{column_alone}"
    );
    let text = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"add_constraint\"\ntable = \"models\"\nname = \"models_name_key\"\ntype = \"unique\"\ncolumns = [\"name\", \"taken\"]";
    let partition_indexes = || {
        database.admin(
            "SELECT count(*) || ' ' || coalesce(bool_and(i.indisvalid), false)
               FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
              WHERE c.relname LIKE 'models_name_key_%'",
        )
    };
    start_text(&database, "0002.toml", text)
        .await
        .expect("starts");
    assert_eq!(
        partition_indexes(),
        "4 true",
        "one on each partition holding rows"
    );
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(partition_indexes(), "0 false");

    start_text(&database, "0002.toml", text)
        .await
        .expect("starts again");
    let v1 = at(&database, "v1").await;
    let duplicate = v1
        .batch_execute(
            "INSERT INTO models_v1 (id, taken, name) VALUES (500, DATE '2026-01-01' + 40, 'model-40')",
        )
        .await
        .expect_err("the partition's unique index refuses a duplicate of the older version's");
    assert_eq!(duplicate.code(), Some(&SqlState::UNIQUE_VIOLATION));
    drop(v1);
    let built = database.admin(
        "SELECT string_agg(oid::text, ',' ORDER BY oid) FROM pg_class WHERE relname LIKE 'models_name_key_%'",
    );
    complete_into_constraint(
        &database,
        "v2",
        ("models_name_key", "UNIQUE (name, taken)"),
        &built,
    )
    .await;
}

/// Changing a column's type drops the old column at complete, and its indexes with it: each
/// is rebuilt on the new column first, which on a partitioned table was refused. An index is
/// rebuilt partition by partition and takes its old name at complete; the primary key is made
/// of its partitions' (a foreign key into it, which would need it before complete, is
/// refused).
#[tokio::test]
async fn the_index_and_key_over_a_retyped_column_of_a_partitioned_table_are_rebuilt() {
    let database = partitioned_models().await;
    database.admin("CREATE INDEX models_size_idx ON models (size) WHERE size > 0");
    let size_index = || {
        database.admin(
            "SELECT pg_get_indexdef('models_size_idx'::regclass) || ' / ' || count(*) || ' ' || bool_and(i.indisvalid)
               FROM pg_partition_tree('models_size_idx') t JOIN pg_index i ON i.indexrelid = t.relid",
        )
    };
    let before = size_index();
    assert_eq!(
        before,
        "CREATE INDEX models_size_idx ON ONLY public.models USING btree (size) WHERE (size > 0) / 6 true"
    );
    let retype = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"alter_column\"\ntable = \"models\"\ncolumn = \"size\"\ntype = \"bigint\"";
    start_text(&database, "0002.toml", retype)
        .await
        .expect("starts");
    assert_eq!(
        database.admin(
            "SELECT count(*) || ' ' || bool_and(i.indisvalid)
               FROM pg_partition_tree('_vg_v2_models_size_idx') t JOIN pg_index i ON i.indexrelid = t.relid"
        ),
        "6 true",
        "the rebuilt index on the new column, on the table and each partition"
    );
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(size_index(), before);
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_class WHERE relname LIKE '\\_vg\\_v2%'"),
        "0"
    );
    start_text(&database, "0002.toml", retype)
        .await
        .expect("starts again");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        size_index(),
        before,
        "the same index, on the new bigint column under the old name"
    );
    assert_eq!(
        database.admin("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'models'::regclass AND attname = 'size'"),
        "bigint"
    );
    let refs = "CREATE TABLE public.mentions (id bigint, taken date, FOREIGN KEY (id, taken) REFERENCES models)";
    database.admin(refs);
    let retype_key = "version = \"v3\"\nfrom = \"v2\"\n[[operations]]\nop = \"alter_column\"\ntable = \"models\"\ncolumn = \"id\"\ntype = \"numeric(20)\"";
    let referenced = start_text(&database, "0003.toml", retype_key)
        .await
        .expect_err("a foreign key into the key is not made again")
        .to_string();
    assert!(
        referenced.contains("the table it references is partitioned"),
        "{referenced}"
    );
    database.admin("DROP TABLE mentions");
    start_text(&database, "0003.toml", retype_key)
        .await
        .expect("starts");
    let built = database.admin(
        "SELECT string_agg(oid::text, ',' ORDER BY oid) FROM pg_class WHERE relname LIKE '\\_vg\\_v3\\_models\\_pkey\\_%'",
    );
    assert_eq!(
        built.split(',').count(),
        4,
        "one on each partition holding rows"
    );
    complete_into_constraint(
        &database,
        "v3",
        ("models_pkey", "PRIMARY KEY (id, taken)"),
        &built,
    )
    .await;
    assert_eq!(
        database.admin("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'models'::regclass AND attname = 'id'"),
        "numeric(20,0)"
    );
}

/// A unique constraint on a partitioned table is made of its partitions' own indexes: a
/// partition created after the plan was made (while the run backfills, or while the
/// migration is live: pg_partman's next month) had none, and the contract's constraint on
/// the table built that partition's under a lock blocking its reads and writes. Each gets its
/// own, built concurrently, at the end of the run and before the contract; a duplicate a
/// partition without one took while the migration was live fails the build before the
/// contract, naming it, and leaves the migration live.
#[tokio::test]
async fn partitions_created_since_the_start_get_the_unique_constraints_index() {
    let database = partitioned_models().await;
    let text = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"add_constraint\"\ntable = \"models\"\nname = \"models_name_key\"\ntype = \"unique\"\ncolumns = [\"name\", \"taken\"]";
    start_watched(
        &database,
        "0002.toml",
        text,
        &mut AtStep {
            database: &database,
            step: "build unique index models_name_key_models_january",
            sql: "CREATE TABLE public.models_2027 PARTITION OF models
                      FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
                  INSERT INTO models (id, taken, name) VALUES (500, '2027-02-01', 'model-500')",
        },
    )
    .await
    .expect("starts");
    let partition_indexes = || {
        database.admin(
            "SELECT string_agg(i.indrelid::regclass || ':' || i.indisvalid, ',' ORDER BY c.relname)
               FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
              WHERE c.relname LIKE 'models_name_key_%'",
        )
    };
    assert_eq!(
        partition_indexes(),
        "models_2027:true,models_february_0:true,models_february_1:true,models_january:true,models_later:true"
    );

    database.admin(
        "CREATE TABLE public.models_2028 PARTITION OF models
             FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
         INSERT INTO models (id, taken, name)
             VALUES (600, '2028-02-01', 'model-600'), (601, '2028-02-01', 'model-600')",
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    let duplicate = complete_now(&database)
        .await
        .expect_err("the new partition holds a duplicate")
        .to_string();
    assert!(
        duplicate.contains("models_2028") && duplicate.contains("23505"),
        "{duplicate}"
    );
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations WHERE version = 'v2'"),
        "live"
    );
    database.admin("DELETE FROM models WHERE id = 601");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        database.admin(
            "SELECT string_agg(t.relid::regclass || ':' || i.indisvalid, ',' ORDER BY t.relid::regclass::text)
               FROM pg_partition_tree('models_name_key') t JOIN pg_index i ON i.indexrelid = t.relid
              WHERE t.isleaf"
        ),
        "models_name_key_models_2027:true,models_name_key_models_2028:true,models_name_key_models_february_0:true,models_name_key_models_february_1:true,models_name_key_models_january:true,models_name_key_models_later:true",
        "the table's constraint took indexes built concurrently, building none"
    );
}

/// The backfill's UPDATE reaches each partition's rows, and fires the triggers made on a
/// partition alone: one that fires in replica mode too (enabled ALWAYS) is refused, found on
/// the partition, as it is on the table.
#[tokio::test]
async fn a_trigger_on_one_partition_alone_counts() {
    let database = partitioned_models().await;
    database.admin(
        "CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER january_only BEFORE UPDATE ON models_january FOR EACH ROW EXECUTE FUNCTION keep();
         ALTER TABLE models_january ENABLE ALWAYS TRIGGER january_only;",
    );
    let refused = start_text(&database, "0002.toml", LABELLED)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("UPDATE trigger(s) or rule(s) january_only (enabled ALWAYS"),
        "{refused}"
    );
}

/// The columns of `table`, in order, with their types.
fn columns_of(database: &Database, table: &str) -> String {
    database.admin(&format!(
        "SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum)
           FROM pg_attribute
          WHERE attrelid = 'public.{table}'::regclass AND attnum > 0 AND NOT attisdropped"
    ))
}

/// A partition detached while the migration is live (pg_partman's retention keeping the
/// table) kept the expand's columns: after a rollback it could not be attached again
/// (`contains column … not found in parent`), after the contract it kept the new version's
/// unmaintained copy of the retyped column. The rollback drops every added column from it, the
/// contract the replacement; it keeps its old shape either way.
#[tokio::test]
async fn a_partition_detached_while_live_is_given_back_its_old_shape() {
    let retype_size = retype(
        "size",
        "bigint",
        "up = \"size::bigint\"\ndown = \"size::integer\"",
    ) + "[[operations]]\nop = \"add_column\"\ntable = \"models\"\n\
           column = { name = \"label\", type = \"text\" }\nup = \"upper(name)\"\n";
    let database = partitioned_models().await;
    let before = columns_of(&database, "models_january");
    assert_eq!(before, "id:bigint,taken:date,name:text,size:integer");

    start_text(&database, "0002.toml", &retype_size)
        .await
        .expect("starts");
    database.admin("ALTER TABLE models DETACH PARTITION models_january");
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(columns_of(&database, "models_january"), before);
    database.admin(
        "ALTER TABLE models ATTACH PARTITION models_january
             FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')",
    );

    start_text(&database, "0002.toml", &retype_size)
        .await
        .expect("starts again");
    database.admin("ALTER TABLE models DETACH PARTITION models_february");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        columns_of(&database, "models_february"),
        "id:bigint,taken:date,name:text,size:integer,label:text",
        "the detached partition and its own partitions keep the old size, and the label filled until it left"
    );
    assert_eq!(
        columns_of(&database, "models_february_0"),
        "id:bigint,taken:date,name:text,size:integer,label:text"
    );
    assert_eq!(
        columns_of(&database, "models_january"),
        "id:bigint,taken:date,name:text,size:bigint,label:text"
    );
}

/// The partition key cannot be dropped (Postgres refuses `DROP COLUMN` of a column in it), so
/// a migration whose contract would drop it, directly or by replacing it with a new column,
/// could start and serve both versions but never complete: refused before any change.
#[tokio::test]
async fn a_migration_whose_contract_drops_the_partition_key_is_refused_before_any_change() {
    let database = partitioned_models().await;
    let columns = columns_of(&database, "models");
    for operation in [
        "op = \"drop_column\"\ntable = \"models\"\ncolumn = \"taken\"\ndown = \"DATE '2026-01-05'\"",
        "op = \"alter_column\"\ntable = \"models\"\ncolumn = \"taken\"\ntype = \"timestamp\"",
    ] {
        let error = start_text(
            &database,
            "0002.toml",
            &format!("version = \"v2\"\nfrom = \"v1\"\n[[operations]]\n{operation}\n"),
        )
        .await
        .expect_err(operation)
        .to_string();
        assert!(
            error.contains("column taken is in the partition key of public.models"),
            "{operation}: {error}"
        );
        assert_eq!(columns_of(&database, "models"), columns, "{operation}");
    }
}

#[tokio::test]
async fn a_column_a_partition_key_expression_reads_is_kept_too() {
    let database = Database::start();
    database.admin(
        "CREATE TABLE public.events (id integer NOT NULL, k integer NOT NULL)
             PARTITION BY RANGE ((k * 2));
         CREATE TABLE public.events_all PARTITION OF events DEFAULT;",
    );
    migration_support::one_table_at_v1(&database, "events", "id", &["id", "k"]).await;
    let error = start_text(
        &database,
        "0002.toml",
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"drop_column\"\ntable = \"events\"\ncolumn = \"k\"\ndown = \"0\"\n",
    )
    .await
    .expect_err("refused")
    .to_string();
    assert!(
        error.contains("column k is in the partition key of public.events"),
        "{error}"
    );
}

/// Each index of each table of `schema.models`'s tree, by its table (named without the
/// schema) and its columns' names as the catalog has them, sorted: the indexes' own names
/// left out, since a partition's index is named after its table's when Postgres makes it and
/// after the migration's when the migration builds it.
fn tree_index_columns(database: &Database, schema: &str) -> String {
    database.admin(&format!(
        "SELECT string_agg(line, E'\\n' ORDER BY line) FROM (
           SELECT c.relname || ': ' || (SELECT string_agg(attname, ', ' ORDER BY attnum)
                                          FROM pg_attribute WHERE attrelid = i.indexrelid) AS line
             FROM pg_partition_tree('{schema}.models') t
             JOIN pg_class c ON c.oid = t.relid
             JOIN pg_index i ON i.indrelid = t.relid) lines"
    ))
}

/// A partitioned table's rebuilt indexes named their columns after the new column too: the
/// table's and each partition's index of a plain index (attached to it), and each partition's
/// index of the primary key (the table's own is made by the contract, after the rename).
/// The contract renames them: one statement on the table's index, which Postgres follows down
/// the indexes attached to it, and one on each partition's key index, a partition created
/// while the migration was live included. They then read as on the same tree made by hand.
#[tokio::test]
async fn a_partitioned_tables_rebuilt_indexes_name_their_columns_as_made_by_hand() {
    let database = partitioned_models().await;
    database.admin("CREATE INDEX models_size_idx ON models (size) INCLUDE (name)");
    let text = retype("size", "bigint", "")
        + &retype("id", "numeric(20)", "").replace("version = \"v2\"\nfrom = \"v1\"\n", "");
    let report = planned(&database, &text).await;
    let contract = contract_sql(&report);
    for expected in [
        r#"ALTER TABLE "public"."models_size_idx" RENAME COLUMN "_vg_v2_size" TO "size""#,
        r#"ALTER TABLE "public"."_vg_v2_models_pkey_models_january" RENAME COLUMN "_vg_v2_id" TO "id""#,
        r#"ALTER TABLE "public"."_vg_v2_models_pkey_models_february_0" RENAME COLUMN "_vg_v2_id" TO "id""#,
    ] {
        assert!(
            contract.contains(&expected),
            "the contract shows {expected}: {contract:#?}"
        );
    }

    start_text(&database, "0002.toml", &text)
        .await
        .expect("starts");
    database.admin(
        "CREATE TABLE public.models_2027 PARTITION OF models
             FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')",
    );
    assert!(
        tree_index_columns(&database, "public").contains("models_january: _vg_v2_id, taken"),
        "while live, a partition's rebuilt key index names the new column"
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");

    database.admin(
        "CREATE SCHEMA fresh;
         CREATE TABLE fresh.models (id numeric(20), taken date NOT NULL, name text NOT NULL,
             size bigint NOT NULL DEFAULT 0, PRIMARY KEY (id, taken)) PARTITION BY RANGE (taken);
         CREATE TABLE fresh.models_january PARTITION OF fresh.models
             FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
         CREATE TABLE fresh.models_february PARTITION OF fresh.models
             FOR VALUES FROM ('2026-02-01') TO ('2026-03-01') PARTITION BY RANGE (taken);
         CREATE TABLE fresh.models_february_0 PARTITION OF fresh.models_february
             FOR VALUES FROM ('2026-02-01') TO ('2026-02-15');
         CREATE TABLE fresh.models_february_1 PARTITION OF fresh.models_february
             FOR VALUES FROM ('2026-02-15') TO ('2026-03-01');
         CREATE TABLE fresh.models_later PARTITION OF fresh.models DEFAULT;
         CREATE TABLE fresh.models_2027 PARTITION OF fresh.models
             FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
         CREATE INDEX models_size_idx ON fresh.models (size) INCLUDE (name);",
    );
    let fresh = tree_index_columns(&database, "fresh");
    assert_eq!(fresh.lines().count(), 14, "{fresh}");
    assert_eq!(
        tree_index_columns(&database, "public"),
        fresh,
        "every index of the tree names its columns as the same made by hand"
    );
}
