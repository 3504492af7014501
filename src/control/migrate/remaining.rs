//! What a contract must leave the versions that remain: every base column they name, by text,
//! still the column it was.
//!
//! A version's view keeps its base columns by number and follows a rename; its write trigger
//! and the mapping functions the proxy's upserts and MERGEs call are made from the spec's
//! text (base column names, write-back targets, hidden defaults, read expressions), and do
//! not. A contract that drops, replaces or renames a column one of them names would leave them
//! failing (42703), or, where a column of that name is there afterwards, reading and writing a
//! column the version does not have: the forty-ninth to fifty-first red-team passes put a
//! hidden default into a re-added column, and had one migration rename a column away and give
//! its name to another, which a read expression spelled `U&"…"` (past a check of its words)
//! then read. So before the contract's DDL every name is resolved to the column it means,
//! attribute numbers and all, as Postgres resolves it; afterwards, inside the same
//! transaction, again; each must mean the same column, or the one the migration put in its
//! place (`alter_column`'s replacement). Anything else refuses the contract, and the
//! transaction leaves nothing changed.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Transaction;

use super::derive::{MigrationPlan, rename_physical, rename_table_name};
use super::error::MigrateError;
use crate::control::catalog;
use crate::control::error::ControlError;
use crate::control::quote::quote_qualified;
use crate::control::views::spec::ColumnSource;
use crate::control::views::{definition, probe};

/// A base table's oid and the number of its column `$3`, if it has one.
const COLUMN_SQL: &str = "
SELECT c.oid, a.attnum
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attribute a
         ON a.attrelid = c.oid AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped
 WHERE n.nspname = $1 AND c.relname = $2";

/// Where a read expression is resolved: a temporary view whose dependencies Postgres records.
const PROBE_VIEW: &str = "pg_temp.viewgate_contract_probe";

/// The base columns of table `$1` the probe view reads.
const PROBE_COLUMNS_SQL: &str = "
SELECT DISTINCT d.refobjsubid::int2
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
 WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
   AND r.ev_class = 'pg_temp.viewgate_contract_probe'::pg_catalog.regclass
   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
   AND d.refobjid = $1 AND d.refobjsubid > 0";

/// A column's name by table oid and number.
const COLUMN_NAME_SQL: &str = "
SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1 AND a.attnum = $2";

/// A name a remaining version uses, and how it is resolved.
#[derive(Debug, Clone)]
struct Naming {
    /// How the version uses it, as a refusal says (`version v3 reads its column x from …`).
    how: String,
    schema: String,
    table: String,
    text: Text,
}

#[derive(Debug, Clone)]
enum Text {
    /// A base column's name (a physical column, a write-back target, a hidden default): the
    /// contract's renames apply to it, as to the recorded definition.
    Column(String),
    /// A read expression, whose text nothing rewrites.
    Expression(String),
}

/// The base columns a name means: a table's oid and column numbers (none: no such column).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meaning {
    table: u32,
    columns: BTreeSet<i16>,
}

/// What every remaining version's names meant before the contract, and what the migration
/// replaces: `(table, old column)` → the column in its place.
pub struct Meanings {
    names: Vec<(Naming, Meaning)>,
    successors: BTreeMap<(u32, i16), i16>,
}

impl Meanings {
    /// Resolves every name of every version but `plan.from` (whose views the contract drops),
    /// and the columns `plan` replaces, before the contract's DDL.
    pub async fn before(
        transaction: &Transaction<'_>,
        plan: &MigrationPlan,
    ) -> Result<Self, MigrateError> {
        let mut names = Vec::new();
        for naming in namings(transaction, &plan.from).await? {
            let meaning = resolve(transaction, &plan.version, &naming).await?;
            names.push((naming, meaning));
        }
        let mut successors = BTreeMap::new();
        for replaced in &plan.replaced {
            let Some(replacement) = &replaced.replacement else {
                continue;
            };
            let (table, old) = column(
                transaction,
                &replaced.schema,
                &replaced.table,
                &replaced.column,
            )
            .await?;
            let (_, new) = column(
                transaction,
                &replaced.schema,
                &replaced.table,
                &replacement.column,
            )
            .await?;
            if let (Some(old), Some(new)) = (old, new) {
                successors.insert((table, old), new);
            }
        }
        Ok(Meanings { names, successors })
    }

    /// Refuses the contract of `plan` when, after its DDL, a remaining version's name (renamed
    /// as the contract renames it) means another column than before, or none.
    pub async fn check(
        &self,
        transaction: &Transaction<'_>,
        plan: &MigrationPlan,
    ) -> Result<(), MigrateError> {
        for (naming, before) in &self.names {
            let mut after = naming.clone();
            rename_table_name(&mut after.table, &after.schema, &plan.renames);
            if let Text::Column(name) = &mut after.text {
                rename_physical(name, &naming.schema, &naming.table, &plan.renames);
            }
            let now = resolve(transaction, &plan.version, &after).await?;
            let expected: BTreeSet<i16> = before
                .columns
                .iter()
                .map(|number| {
                    *self
                        .successors
                        .get(&(before.table, *number))
                        .unwrap_or(number)
                })
                .collect();
            if now.table == before.table && now.columns == expected {
                continue;
            }
            let named_now = if now.columns.is_empty() {
                "no base column: the contract drops or renames what it named".to_owned()
            } else {
                let names = column_names(transaction, now.table, &now.columns).await?;
                format!("base column(s) {names}, which the contract made of other columns")
            };
            return Err(refused(
                &plan.version,
                format!(
                    "{} by text, and after the contract that text would mean {named_now}; its write trigger and mapping functions are made from it. Retire that version (viewgate views drop) before completing",
                    naming.how
                ),
            ));
        }
        Ok(())
    }
}

/// The contract of the migration to `migrating`, refused.
fn refused(migrating: &str, problem: String) -> MigrateError {
    MigrateError::Refused {
        version: migrating.to_owned(),
        operation: "what the contract leaves the remaining versions".into(),
        problem,
    }
}

/// Every name of every live version but `retiring`.
async fn namings(
    transaction: &Transaction<'_>,
    retiring: &str,
) -> Result<Vec<Naming>, MigrateError> {
    let mut namings = Vec::new();
    for (version, recorded) in &catalog::load_versions(transaction).await? {
        if recorded.state == "retired" || version == retiring {
            continue;
        }
        let Some(definition) = definition::load(transaction, version).await? else {
            continue;
        };
        for table in &definition.version.tables {
            let Some(managed) = definition.managed(&table.base) else {
                continue;
            };
            let mut naming = |how: String, text: Text| {
                namings.push(Naming {
                    how: format!("version {version} {how} (table {})", table.name),
                    schema: managed.schema.clone(),
                    table: managed.name.clone(),
                    text,
                });
            };
            for column in &table.columns {
                match &column.source {
                    ColumnSource::Physical { base_column } => naming(
                        format!(
                            "reads its column {} from base column {base_column}",
                            column.name
                        ),
                        Text::Column(base_column.clone()),
                    ),
                    ColumnSource::Expression { expression, write } => {
                        for target in write.keys() {
                            naming(
                                format!(
                                    "writes its column {} back to base column {target}",
                                    column.name
                                ),
                                Text::Column(target.clone()),
                            );
                        }
                        naming(
                            format!("reads its column {} as {expression}", column.name),
                            Text::Expression(expression.clone()),
                        );
                    }
                }
            }
            for target in table.hidden_defaults.keys() {
                naming(
                    format!("stores a hidden default in base column {target}"),
                    Text::Column(target.clone()),
                );
            }
        }
    }
    Ok(namings)
}

/// What `naming` means as the tables now are.
async fn resolve(
    transaction: &Transaction<'_>,
    migrating: &str,
    naming: &Naming,
) -> Result<Meaning, MigrateError> {
    match &naming.text {
        Text::Column(name) => {
            let (table, number) = column(transaction, &naming.schema, &naming.table, name).await?;
            Ok(Meaning {
                table,
                columns: number.into_iter().collect(),
            })
        }
        Text::Expression(expression) => {
            resolve_expression(transaction, &naming.schema, &naming.table, expression)
                .await
                .map_err(|reason| {
                    refused(
                        migrating,
                        format!(
                            "{}, which does not hold over {}.{} ({reason}); its write trigger and mapping functions are made from that text. Retire that version (viewgate views drop) before completing",
                            naming.how, naming.schema, naming.table
                        ),
                    )
                })
        }
    }
}

/// The table's oid and the number of its column `name`, if it has one.
async fn column(
    transaction: &Transaction<'_>,
    schema: &str,
    table: &str,
    name: &str,
) -> Result<(u32, Option<i16>), MigrateError> {
    let row = transaction
        .query_opt(COLUMN_SQL, &[&schema, &table, &name])
        .await
        .map_err(|error| {
            ControlError::database("reading the contracted table's columns", &error)
        })?;
    Ok(row.map_or((0, None), |row| (row.get(0), row.get(1))))
}

/// The base columns a read expression reads, as Postgres resolves it: the columns a view of
/// `SELECT (expression) FROM base` depends on. Err is Postgres's reason it does not hold; the
/// failed statement aborts the transaction, which the refusal rolls back.
async fn resolve_expression(
    transaction: &Transaction<'_>,
    schema: &str,
    table: &str,
    expression: &str,
) -> Result<Meaning, String> {
    let reason = |error: tokio_postgres::Error| {
        error
            .as_db_error()
            .map_or_else(|| error.to_string(), |db| db.message().to_owned())
    };
    // The spec's expression is SQL by definition, pasted as in the view it defines.
    let create = format!(
        "CREATE TEMPORARY VIEW {PROBE_VIEW} AS SELECT ({expression}) AS probe FROM {}",
        quote_qualified(schema, table)
    );
    transaction.batch_execute(&create).await.map_err(reason)?;
    if let Some(beyond) = probe::reads_unspelled(
        transaction,
        PROBE_VIEW,
        expression,
        &quote_qualified(schema, table),
    )
    .await
    .map_err(reason)?
    {
        return Err(format!(
            "it reads {beyond} of the table without naming it, which changes with the columns the table has"
        ));
    }
    let (table_oid, _) = column(transaction, schema, table, "")
        .await
        .map_err(|error| error.to_string())?;
    let columns = transaction
        .query(PROBE_COLUMNS_SQL, &[&table_oid])
        .await
        .map_err(reason)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    transaction
        .batch_execute(&format!("DROP VIEW {PROBE_VIEW}"))
        .await
        .map_err(reason)?;
    Ok(Meaning {
        table: table_oid,
        columns,
    })
}

/// The names of a table's columns by number, for a refusal.
async fn column_names(
    transaction: &Transaction<'_>,
    table: u32,
    numbers: &BTreeSet<i16>,
) -> Result<String, MigrateError> {
    let mut names = Vec::new();
    for number in numbers {
        let row = transaction
            .query_opt(COLUMN_NAME_SQL, &[&table, number])
            .await
            .map_err(|error| {
                ControlError::database("reading the contracted table's columns", &error)
            })?;
        names.push(row.map_or_else(|| format!("#{number}"), |row| row.get::<_, String>(0)));
    }
    Ok(names.join(", "))
}
