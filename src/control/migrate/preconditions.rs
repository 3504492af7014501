//! What a migration would silently damage, refused before any change (as `privileges.rs`
//! refuses a database where a client could plant a function). Checked when the plan is
//! derived against the live database, so inside `migrate start`'s expand transaction before
//! its first statement, and by `migrate plan`.
//!
//! - The backfill's `UPDATE`s fire the table's own UPDATE triggers (red-team pass 41, finding
//!   3): skipped in replica mode where the role may, refused otherwise
//!   (`backfill_triggers.rs`).
//! - Under row-level security that applies to the catalog role (FORCE ROW LEVEL SECURITY, or
//!   a role that does not own the table), the backfill, its high-water mark and its estimate
//!   see only the rows the policies show it, and the migration went live with the others
//!   unfilled (finding 6).
//! - `alter_column` through a new column, `split_column` and `merge_columns` drop the old
//!   column at `migrate complete`, and with it every index and constraint covering it: a
//!   primary key, unique constraint and indexes vanished, duplicate keys followed (finding 1).
//!   `rebuild/` rebuilds indexes, the primary key, unique and check constraints and the
//!   foreign keys from and into the column on the replacement; an exclusion constraint
//!   cannot be added without blocking writes for a whole index build, so such a migration is
//!   refused.
//! - A table a publication streams to logical subscribers, reshaped, stops a subscriber
//!   whose table does not follow (`publications.rs`).
//! - A backfill walking by a NULL key never reaches its row, and one walking by a key many
//!   rows share takes them all in one batch: without a primary key, the spec's key must be
//!   NOT NULL and unique.
//! - Columns added to a partitioned table reach a foreign partition's definition here and
//!   not its remote table, where its rows' writes then fail.
//! - Each index build's undo (`DROP INDEX CONCURRENTLY IF EXISTS`) runs before the build, so
//!   a name an index of the application's has is refused: the undo dropped it.

use tokio_postgres::GenericClient;

use std::collections::BTreeSet;

use super::backfill_triggers;
use super::derive::{Assign, Backfill, ColumnMap, MigrationPlan, Replaced, TableSync, mentions};
use super::error::MigrateError;
use super::publications::{self, Asked};
use super::retained_wal;
use super::settings::MigrationSettings;
use crate::control::error::ControlError;
use crate::control::quote::{quote_ident, quote_qualified};
use crate::control::views::probe::{self, Beyond};

/// Refuses `plan` if running it would change data no client wrote, or stop a logical
/// subscriber.
pub async fn refuse_silent_damage(
    client: &impl GenericClient,
    plan: &MigrationPlan,
    settings: MigrationSettings,
) -> Result<(), MigrateError> {
    refuse_taken_index_names(client, plan).await?;
    refuse_foreign_partitions(client, plan).await?;
    publications::refuse_unready_subscribers(
        client,
        plan,
        settings.subscribers_ready,
        Asked::Everything,
    )
    .await?;
    retained_wal::refuse_unread_slots(client, plan, settings.inactive_slots_ok).await?;
    for replaced in &plan.replaced {
        refuse_lost_indexes(client, &plan.version, replaced).await?;
    }
    for backfill in &plan.backfills {
        refuse_unwalkable_key(client, &plan.version, backfill).await?;
        backfill_triggers::refuse_firing(client, &plan.version, backfill).await?;
        refuse_row_security(client, &plan.version, &backfill.schema, &backfill.table).await?;
    }
    for sync in &plan.syncs {
        let computed = computed_columns(plan, sync);
        refuse_names_beyond_the_version(client, &plan.version, sync, &computed).await?;
    }
    Ok(())
}

/// Refuses adding columns to a partitioned table with a foreign partition (postgres_fdw's
/// sharding): `ADD COLUMN` on the table gives the partition's definition here the column and
/// the remote table nothing, so the backfill's and every later write of the partition's rows
/// fail there (the remote server's "column does not exist").
async fn refuse_foreign_partitions(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    let mut tables: Vec<(&str, &str)> = plan
        .added_columns
        .iter()
        .map(|(schema, table, _)| (schema.as_str(), table.as_str()))
        .collect();
    tables.dedup();
    for (schema, table) in tables {
        let foreign = client
            .query_opt(
                "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
                   FROM pg_catalog.pg_partition_tree(
                            pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))) t
                   JOIN pg_catalog.pg_class c ON c.oid = t.relid
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind = 'f'
                  ORDER BY 1 LIMIT 1",
                &[&schema, &table],
            )
            .await
            .map_err(|error| {
                ControlError::database(format!("reading the partitions of {schema}.{table}"), &error)
            })?;
        if let Some(row) = foreign {
            let partition: String = row.get(0);
            return Err(MigrateError::Refused {
                version: plan.version.clone(),
                operation: "the expand".into(),
                problem: format!(
                    "table {schema}.{table} has partition {partition}, a foreign table: adding a column to {table} gives the partition's definition here the column and the remote table nothing, so the backfill's writes of its rows, and every later one, would fail there. Detach the partition for the migration's time, or give the remote table the new columns and migrate the two by hand"
                ),
            });
        }
    }
    Ok(())
}

/// Refuses a backfill key that does not name each row once: the backfill walks rows in key
/// order from the last key it filled, so a NULL key is never reached (a nullable key the spec
/// declared, on a table without a primary key, failed the expand on its NULL high-water
/// mark), and a batch updates every row sharing one of its keys, however many: a key a
/// million rows share is one batch of a million rows, one long transaction holding all their
/// locks. Its columns must be NOT NULL and a valid unique index (no predicate, no expression)
/// must lie within them.
async fn refuse_unwalkable_key(
    client: &impl GenericClient,
    version: &str,
    backfill: &Backfill,
) -> Result<(), MigrateError> {
    let key: Vec<&str> = backfill.key.iter().map(|(name, _)| name.as_str()).collect();
    let row = client
        .query_one(
            "WITH t AS (SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text)) AS oid),
                  k AS (SELECT a.attnum, a.attname, a.attnotnull FROM pg_catalog.pg_attribute a, t
                         WHERE a.attrelid = t.oid AND a.attname = ANY($3::text[]) AND NOT a.attisdropped)
             SELECT (SELECT pg_catalog.array_agg(k.attname::text ORDER BY k.attnum) FROM k WHERE NOT k.attnotnull),
                    EXISTS (SELECT 1 FROM pg_catalog.pg_index i, t
                             WHERE i.indrelid = t.oid AND i.indisunique AND i.indisvalid
                               AND i.indpred IS NULL AND i.indexprs IS NULL
                               AND (SELECT pg_catalog.bool_and(c.attnum IN (SELECT k.attnum FROM k))
                                      FROM pg_catalog.unnest(i.indkey::int2[]) AS c(attnum)))",
            &[&backfill.schema, &backfill.table, &key],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!(
                    "reading the key of {}.{}",
                    backfill.schema, backfill.table
                ),
                &error,
            )
        })?;
    let nullable: Option<Vec<String>> = row.get(0);
    let unique: bool = row.get(1);
    let problem = match (nullable, unique) {
        (Some(nullable), _) => format!(
            "its column(s) {} may be NULL, and a row whose key is NULL is never reached",
            nullable.join(", ")
        ),
        (None, false) => "no unique index lies within it, and a batch takes every row sharing one of its keys at once, however many (one long transaction holding their locks)".to_owned(),
        (None, true) => return Ok(()),
    };
    Err(MigrateError::Refused {
        version: version.to_owned(),
        operation: "the backfill".into(),
        problem: format!(
            "table {}.{} has no primary key, and the backfill would walk its rows by the spec's key ({}), but {problem}. Add a primary key, or make the key NOT NULL and unique, then start again",
            backfill.schema,
            backfill.table,
            key.join(", ")
        ),
    })
}

/// The columns the version computes by a spec expression on `sync`'s table, with their
/// expressions: names its clients see that `up` and `down` cannot read, which a refusal
/// explains.
fn computed_columns<'p>(plan: &'p MigrationPlan, sync: &TableSync) -> Vec<(&'p str, &'p str)> {
    plan.definition
        .expression_columns()
        .filter(|computed| computed.base.schema == sync.schema && computed.base.name == sync.table)
        .map(|computed| (computed.column, computed.expression))
        .collect()
}

/// Refuses an `up` that names what the previous version does not have. The sync trigger
/// knows only that version's columns, but the backfill runs `up` over the base table, where a
/// name the version hides is a column all the same: the fifty-first red-team pass's `up =
/// "schema_version::text"` (a column the version does not show) copied its values into the
/// new version. So each `up` is evaluated (`LIMIT 0`, nothing read) over the previous
/// version's columns alone, under its names, and what Postgres cannot resolve there refuses
/// the migration with its own message. A `down` names the new version's columns, which exist
/// only once the expand has added them: [`refuse_reads_beyond_the_versions`].
async fn refuse_names_beyond_the_version(
    client: &impl GenericClient,
    version: &str,
    sync: &TableSync,
    computed: &[(&str, &str)],
) -> Result<(), MigrateError> {
    refuse_beyond(client, version, sync, Side::Up, Look::Names, computed).await
}

/// Refuses a `down` that names what the new version does not have, as
/// [`refuse_names_beyond_the_version`] refuses such an `up`: each is evaluated over the new
/// version's columns alone, under its names. Then refuses an `up` or `down` that reads more
/// of the table than its version shows by a name those columns do not resolve: a subquery
/// over the base table (`(SELECT s.secret FROM public.t s …)`, `ROW(x.*)`) resolves, and
/// copied a hidden column into the new version (the fifty-third red-team pass). A temporary
/// view of each probe tells what it reads ([`probe`]): a whole row, or a column of the table
/// outside the version's, refuses it; so does an `up` value its base column does not take
/// by assignment. Run inside `migrate start`'s expand transaction, after
/// the expand's own statements (the new columns exist) and before its commit, so a refusal
/// leaves nothing of the migration behind.
pub async fn refuse_reads_beyond_the_versions(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    for sync in &plan.syncs {
        let computed = computed_columns(plan, sync);
        for side in [Side::Up, Side::Down] {
            refuse_beyond(client, &plan.version, sync, side, Look::Columns, &computed).await?;
        }
    }
    Ok(())
}

/// Which of a sync's expressions: `up` (over the previous version's columns) or `down` (over
/// the new version's).
#[derive(Clone, Copy)]
enum Side {
    Up,
    Down,
}

impl Side {
    /// The side's expressions, the columns they read (logical, physical), the word a file
    /// uses for them, and whose columns those are.
    fn of(self, sync: &TableSync) -> (&[Assign], &ColumnMap, &'static str, &'static str) {
        match self {
            Side::Up => (&sync.up, &sync.up_columns, "up", "the previous version"),
            Side::Down => (&sync.down, &sync.down_columns, "down", "the new version"),
        }
    }
}

/// The probe of `assign` over the side's columns alone, under their names, as the sync
/// trigger sees them: `SELECT (<expr>) FROM (SELECT <physical> AS <logical>, … FROM t) AS t`.
fn over_the_sides_columns(sync: &TableSync, columns: &ColumnMap) -> String {
    let shaped: Vec<String> = columns
        .iter()
        .map(|(logical, physical)| format!("{} AS {}", quote_ident(physical), quote_ident(logical)))
        .collect();
    format!(
        "(SELECT {} FROM {}) AS {}",
        shaped.join(", "),
        quote_qualified(&sync.schema, &sync.table),
        quote_ident(&sync.table)
    )
}

/// How far [`refuse_beyond`] looks: at the names an expression resolves over its side's
/// columns (a plain `SELECT … LIMIT 0`, which a read-only transaction may run), or also at the
/// columns it reads by any path (a temporary view of it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Look {
    Names,
    Columns,
}

/// Where an `up` or `down` is compiled to see what it reads.
const SYNC_PROBE: &str = "pg_temp.viewgate_sync_probe";

async fn refuse_beyond(
    client: &impl GenericClient,
    version: &str,
    sync: &TableSync,
    side: Side,
    look: Look,
    computed: &[(&str, &str)],
) -> Result<(), MigrateError> {
    let (assigns, columns, name, whose) = side.of(sync);
    let from = over_the_sides_columns(sync, columns);
    let table = quote_qualified(&sync.schema, &sync.table);
    let shown: BTreeSet<&str> = columns
        .iter()
        .map(|(_, physical)| physical.as_str())
        .collect();
    let looking = |error: tokio_postgres::Error| {
        ControlError::database(
            format!("looking at what the {name} expressions read"),
            &error,
        )
    };
    let refused = |assign: &Assign, problem: String| MigrateError::Refused {
        version: version.to_owned(),
        operation: format!("the {name} expression for base column {}", assign.target),
        problem,
    };
    let does_not_hold = |assign: &Assign, error: &tokio_postgres::Error| {
        let reason = error
            .as_db_error()
            .map_or_else(|| error.to_string(), |db| db.message().to_owned());
        let computed_here: Vec<String> = computed
            .iter()
            .filter(|(column, _)| mentions(&assign.expression, column))
            .map(|(column, expression)| format!("{column} is `{expression}`"))
            .collect();
        let advice = if computed_here.is_empty() {
            format!("`{name}` may name only what that version's clients see")
        } else {
            format!(
                "the version computes columns by its spec's expressions, which `{name}` cannot read by name ({}): write the expression over the base columns instead",
                computed_here.join("; ")
            )
        };
        refused(
            assign,
            format!(
                "`{}` does not hold over {whose}'s columns ({reason}); {advice}",
                assign.expression
            ),
        )
    };
    for assign in assigns {
        // `up` and `down` are SQL by definition (the migration file's, as the triggers and the
        // backfill run them).
        let probe = format!("SELECT ({}) FROM {from} LIMIT 0", assign.expression);
        if look == Look::Names {
            client
                .batch_execute(&probe)
                .await
                .map_err(|error| does_not_hold(assign, &error))?;
            continue;
        }
        // An `up` value must go into its column as the backfill's UPDATE puts it there (by
        // assignment): `size::text` into an integer failed the backfill after the expand, and
        // on an empty table never, while the trigger's PL/pgSQL took '4' as 4. (A `down` is
        // run by the triggers alone, whose PL/pgSQL assigns through text where SQL has no
        // cast: the default `down` of an enum made text is the text.) Analysed, not run: an
        // UPDATE of no rows still fires statement triggers.
        let assigned = matches!(side, Side::Up).then(|| {
            format!(
                "EXPLAIN UPDATE {table} SET {} = (SELECT ({}) FROM {from} LIMIT 0) WHERE false",
                quote_ident(&assign.target),
                assign.expression
            )
        });
        // All of it in one round trip (sent together, run in order): the expand runs this
        // with its tables locked. After a failure Postgres refuses the rest (the transaction
        // is aborted), so the first failure is the one to report.
        let (probed, assigned, created, whole_row, columns, dropped) = futures_util::join!(
            client.batch_execute(&probe),
            async {
                match &assigned {
                    Some(sql) => client.batch_execute(sql).await,
                    None => Ok(()),
                }
            },
            probe::create_probe(client, SYNC_PROBE, &assign.expression, &from),
            probe::reads_whole_row(client, SYNC_PROBE),
            probe::columns_read(client, SYNC_PROBE, &table),
            probe::drop_probe(client, SYNC_PROBE),
        );
        probed.map_err(|error| does_not_hold(assign, &error))?;
        if let Err(error) = assigned {
            let reason = error
                .as_db_error()
                .map_or_else(|| error.to_string(), |db| db.message().to_owned());
            return Err(refused(
                assign,
                format!(
                    "`{}` gives a value base column {} does not take ({reason}); cast it to the column's type",
                    assign.expression, assign.target
                ),
            ));
        }
        created.map_err(looking)?;
        let beyond = if whole_row.map_err(looking)? {
            Some(Beyond::WholeRow)
        } else {
            let hidden: Vec<String> = columns
                .map_err(looking)?
                .into_iter()
                .filter(|column| !shown.contains(column.as_str()))
                .collect();
            (!hidden.is_empty()).then_some(Beyond::Columns(hidden))
        };
        dropped.map_err(looking)?;
        if let Some(beyond) = beyond {
            return Err(refused(
                assign,
                format!(
                    "`{}` reads {beyond} of {}.{}, beyond {whose}'s columns; `{name}` may read only what that version's clients see, by their names",
                    assign.expression, sync.schema, sync.table
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses a backfilled table whose row-level security applies to the catalog role here.
async fn refuse_row_security(
    client: &impl GenericClient,
    version: &str,
    schema: &str,
    table: &str,
) -> Result<(), MigrateError> {
    let row = client
        .query_opt(
            "SELECT c.relforcerowsecurity,
                    (SELECT pg_catalog.string_agg(p.polname::text, ', ' ORDER BY p.polname)
                       FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid)
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2
                AND pg_catalog.row_security_active(c.oid::regclass)",
            &[&schema, &table],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading whether row-level security applies to {schema}.{table}"),
                &error,
            )
        })?;
    let Some(row) = row else {
        return Ok(());
    };
    let forced: bool = row.get(0);
    let policies: Option<String> = row.get(1);
    Err(MigrateError::Unsafe {
        version: version.to_owned(),
        table: format!("{schema}.{table}"),
        objects: format!(
            "row-level security{} (policies: {})",
            if forced { ", forced on its owner" } else { "" },
            policies.as_deref().unwrap_or("none, so every row is hidden")
        ),
        problem: "it applies to the catalog role, so the backfill, its high-water mark and its estimate would see only the rows the policies show it, and the migration would go live with the others unfilled".into(),
        remedy: format!(
            "give the catalog role BYPASSRLS (`ALTER ROLE <catalog role> BYPASSRLS`){}, then start again",
            if forced {
                format!(
                    ", or disable FORCE ROW LEVEL SECURITY for the migration (`ALTER TABLE {} NO FORCE ROW LEVEL SECURITY`, with the catalog role owning the table)",
                    quote_qualified(schema, table)
                )
            } else {
                ", or make it the table's owner".to_owned()
            }
        ),
    })
}

/// Refuses replacing a column that an index (on it, an expression of it or a predicate over
/// it), a primary key, unique, exclusion or foreign-key constraint (referencing it or
/// referenced by it) depends on, unless `rebuild/` rebuilds it on the new column: the
/// contract's `DROP COLUMN` would take it along. `pg_depend` has every one of them.
async fn refuse_lost_indexes(
    client: &impl GenericClient,
    version: &str,
    replaced: &Replaced,
) -> Result<(), MigrateError> {
    let Replaced {
        schema,
        table,
        column,
        operation,
        rebuilt,
        dropped_along,
        ..
    } = replaced;
    let handled: Vec<&String> = rebuilt.iter().chain(dropped_along).collect();
    let rows = client
        .query(
            "WITH col AS (
                SELECT a.attrelid, a.attnum FROM pg_catalog.pg_attribute a
                  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3
                   AND NOT a.attisdropped)
             SELECT 'index ' || pg_catalog.quote_ident(i.relname)
               FROM col JOIN pg_catalog.pg_depend d
                 ON d.refclassid = 'pg_catalog.pg_class'::regclass
                AND d.refobjid = col.attrelid AND d.refobjsubid = col.attnum
               JOIN pg_catalog.pg_class i
                 ON d.classid = 'pg_catalog.pg_class'::regclass AND i.oid = d.objid
              WHERE i.relkind IN ('i', 'I') AND i.relname::text <> ALL($4::text[])
             UNION
             SELECT CASE k.contype WHEN 'p' THEN 'primary key ' WHEN 'u' THEN 'unique constraint '
                                   WHEN 'x' THEN 'exclusion constraint ' ELSE 'foreign key ' END
                    || pg_catalog.quote_ident(k.conname)
                    || CASE WHEN k.conrelid <> col.attrelid
                            THEN ' of ' || k.conrelid::regclass::text ELSE '' END
               FROM col JOIN pg_catalog.pg_depend d
                 ON d.refclassid = 'pg_catalog.pg_class'::regclass
                AND d.refobjid = col.attrelid AND d.refobjsubid = col.attnum
               JOIN pg_catalog.pg_constraint k
                 ON d.classid = 'pg_catalog.pg_constraint'::regclass AND k.oid = d.objid
              WHERE k.contype IN ('p', 'u', 'x', 'f')
                AND NOT ((k.contype = 'f' OR k.conrelid = col.attrelid)
                         AND k.conname::text = ANY($4::text[]))
              ORDER BY 1",
            &[schema, table, column, &handled],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading the indexes and constraints on {schema}.{table}.{column}"),
                &error,
            )
        })?;
    if rows.is_empty() {
        return Ok(());
    }
    let objects: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    Err(MigrateError::Unsafe {
        version: version.to_owned(),
        table: format!("{schema}.{table}"),
        objects: format!("column {column} is covered by {}", objects.join(", ")),
        problem: format!(
            "{operation} replaces the column with a new one, and `migrate complete` drops the old column with all of these; indexes, the primary key, unique and check constraints and foreign keys are rebuilt on the new column, but an exclusion constraint cannot be: Postgres adds one only by building its index under a lock that blocks every write to the table for the whole build (it has no CONCURRENTLY, NOT VALID or USING INDEX form)"
        ),
        remedy: "drop them first if the table can do without them while the migration runs, and create them on the new column after `migrate complete` (`create_index` / `add_constraint` in the next migration); or add the new column with `add_column` and its own index or constraint, and drop the old one later".into(),
    })
}

/// Refuses an index name the migration builds that a relation already has, or that two of
/// its builds share. Each build's undo (`DROP INDEX CONCURRENTLY IF EXISTS`) runs before the
/// build, so that a killed run can build again, and at rollback: it dropped the application's
/// own index of the name and the build put the migration's in its place (seen: a unique index
/// `models_guard` on `name` became a plain one on `size`, and was gone after a rollback).
async fn refuse_taken_index_names(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    let refuse = |name: &(String, String), holder: String| MigrateError::Refused {
        version: plan.version.clone(),
        operation: format!("index {}.{}", name.0, name.1),
        problem: format!(
            "{holder} has that name, and building the index starts by dropping any index of its name (a killed build leaves one behind); name the index differently (a column's `unique = true` names it <table>_<column>_key: add the column without it and an `add_constraint` of kind \"unique\" with a name of your own)"
        ),
    };
    let mut seen = BTreeSet::new();
    if let Some(twice) = plan.built_indexes.iter().find(|name| !seen.insert(*name)) {
        return Err(refuse(twice, "another index this migration builds".into()));
    }
    let (schemas, names): (Vec<&str>, Vec<&str>) = plan
        .built_indexes
        .iter()
        .map(|(schema, name)| (schema.as_str(), name.as_str()))
        .unzip();
    let taken = client
        .query_opt(
            "SELECT n.nspname::text, c.relname::text,
                    CASE c.relkind WHEN 'i' THEN 'index' WHEN 'I' THEN 'partitioned index'
                                   WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table'
                                   WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                                   WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
                                   ELSE 'relation' END
               FROM unnest($1::text[], $2::text[]) AS built(schema, name)
               JOIN pg_catalog.pg_namespace n ON n.nspname = built.schema
               JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = built.name
              ORDER BY 1, 2 LIMIT 1",
            &[&schemas, &names],
        )
        .await
        .map_err(|error| ControlError::database("reading the names of existing indexes", &error))?;
    match taken {
        None => Ok(()),
        Some(row) => {
            let kind: String = row.get(2);
            Err(refuse(
                &(row.get(0), row.get(1)),
                format!("an existing {kind} of this database"),
            ))
        }
    }
}
