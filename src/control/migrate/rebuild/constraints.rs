//! Checks and foreign keys rebuilt on the column that replaces an old one. Each is added again
//! over the replacement in the expand, `NOT VALID` (so adding it reads no row), from the
//! catalog's own definition (`pg_get_constraintdef`) with the replaced columns renamed token by
//! token; validated after the backfill if the old one was valid; renamed to the old name at
//! complete, after the old column and its constraints are gone; dropped by a rollback. A check
//! whose expression does not fit the new type fails the expand, which then changes nothing.
//!
//! A check that a column is not null is not rebuilt: `alter_column` carries NOT NULL itself.
//!
//! Foreign keys into a replaced column (other tables', or the table's own) are added again
//! into the replacement once its unique index is built, and the contract drops the old ones
//! before the old column, whose index they hold, and gives the new ones the old names after
//! all the operations' steps, on the referencing table under the name those steps leave it (a
//! `rename_table` of it comes before). One the migration drops (itself, a referencing column
//! or its table) is not rebuilt, only dropped as early.
//!
//! A foreign key whose both ends are replaced (`order_items.order_id` into `orders.id`, both
//! retyped to `bigint`; a table's `parent_id` into its `id`) is rebuilt once, by the rebuild
//! of the key it references, from the new columns into the new key. Each end used to make its
//! own twin under the one name (`_vg_<version>_<constraint>`): the second, from the old column
//! into the new key, dropped the first as a killed run's leftover and stood in its place, and
//! `migrate complete` then refused the twin as covering the old column.
//!
//! Refused before any change: a column split or merged (no one replacement), a check when the
//! operation gives the column a `check` of its own (the two would stand side by side), a
//! foreign key whose `ON DELETE SET NULL|DEFAULT (…)` names columns, a foreign key into the
//! column from a partitioned table, or one into a column, or from one, whose type changes
//! other than from one integer type to another (whether the new key's operators can serve the
//! referencing column's type is not read here).

use tokio_postgres::GenericClient;

use super::sequences::integer_width;
use super::{
    Drops, NOT_NULL_SHAPED, REPLACED_COLUMNS, Rebuild, TableContext, rebuilt_name,
    table_at_complete, unsafe_to_replace,
};
use crate::control::error::ControlError;
use crate::control::migrate::derive::{MigrationPlan, Replaced, Step, over_physical};
use crate::control::migrate::error::MigrateError;
use crate::control::quote::{quote_ident, quote_qualified};

const NOT_VALID: &str = " NOT VALID";
const NO_INHERIT: &str = " NO INHERIT";
const FOREIGN_KEY: &str = "FOREIGN KEY (";
const REFERENCES: &str = ") REFERENCES ";

/// A check or foreign-key constraint of the table, as the catalog describes it.
pub(super) struct CatalogConstraint {
    pub(super) name: String,
    /// `c` (check) or `f` (foreign key).
    kind: String,
    /// The table's columns it names (a foreign key's referencing columns, in order).
    pub(super) columns: Vec<String>,
    definition: String,
    validated: bool,
    /// A foreign key's referenced table (schema, name) and columns; none for a check.
    references: Option<(String, String, Vec<String>)>,
}

impl CatalogConstraint {
    /// Whether the constraint goes with what the migration drops: itself, or a column it names.
    pub(super) fn dropped_along(&self, dropped: &Drops) -> bool {
        dropped.constraints.contains(&self.name)
            || self
                .columns
                .iter()
                .any(|column| dropped.columns.contains(column))
    }

    /// Whether the constraint is a foreign key into columns `plan` replaces as well: the
    /// rebuild of the key it references makes its one twin ([`rebuild_referencing`]).
    fn references_replaced(&self, plan: &MigrationPlan) -> bool {
        self.references
            .as_ref()
            .is_some_and(|(schema, table, columns)| {
                (plan.replaced.iter()).any(|old| {
                    old.schema == *schema && old.table == *table && columns.contains(&old.column)
                })
            })
    }
}

/// The checks and foreign keys of `schema.table` that name a replaced column.
pub(super) async fn covering_constraints(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
    replaced: &[Replaced],
) -> Result<Vec<CatalogConstraint>, MigrateError> {
    let names: Vec<&str> = replaced.iter().map(|r| r.column.as_str()).collect();
    let rows = client
        .query(
            &format!("{REPLACED_COLUMNS}
             SELECT k.conname::text, k.contype::text,
                    ARRAY(SELECT a.attname::text
                            FROM pg_catalog.unnest(k.conkey) WITH ORDINALITY AS c(attnum, n)
                            JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = k.conrelid AND a.attnum = c.attnum
                           ORDER BY c.n),
                    pg_catalog.pg_get_constraintdef(k.oid), k.convalidated,
                    fn.nspname::text, fc.relname::text,
                    ARRAY(SELECT a.attname::text
                            FROM pg_catalog.unnest(k.confkey) WITH ORDINALITY AS c(attnum, n)
                            JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = k.confrelid AND a.attnum = c.attnum
                           ORDER BY c.n)
               FROM t, pg_catalog.pg_constraint k
               LEFT JOIN pg_catalog.pg_class fc ON fc.oid = k.confrelid
               LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
              WHERE k.conrelid = t.oid AND k.contype IN ('c', 'f')
                AND k.conkey && ARRAY(SELECT attnum FROM replaced)
                AND NOT {NOT_NULL_SHAPED}
              ORDER BY 1"),
            &[&schema, &table, &names],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading the checks and foreign keys over the replaced columns of {schema}.{table}"),
                &error,
            )
        })?;
    Ok(rows
        .iter()
        .map(|row| CatalogConstraint {
            name: row.get(0),
            kind: row.get(1),
            columns: row.get(2),
            definition: row.get(3),
            validated: row.get(4),
            references: Option::zip(row.get::<_, Option<String>>(5), row.get(6))
                .map(|(schema, table)| (schema, table, row.get(7))),
        })
        .collect())
}

/// How `constraint` is rebuilt over the replacements of `replaced`, or why it cannot be.
pub(super) fn rebuild(
    context: &TableContext,
    constraint: &CatalogConstraint,
) -> Result<Rebuild, MigrateError> {
    let TableContext {
        plan,
        schema,
        table,
        complete_table,
        replaced,
        ..
    } = *context;
    let check = constraint.kind == "c";
    if !check && constraint.references_replaced(plan) {
        // Made once, from the replacements at both ends, by the rebuild of what it
        // references: a twin made here too would reference the old key under the same name.
        return Ok(Rebuild::default());
    }
    let object = format!(
        "{} {}",
        if check { "check" } else { "foreign key" },
        constraint.name
    );
    let refuse =
        |column: &str, why: &str| unsafe_to_replace(plan, schema, table, column, &object, why);
    let mut substitutes: Vec<(String, String)> = Vec::new();
    for old in replaced
        .iter()
        .filter(|old| constraint.columns.contains(&old.column))
    {
        let Some(replacement) = &old.replacement else {
            return Err(refuse(
                &old.column,
                &format!(
                    "{} replaces it with several columns or merges it into one",
                    old.operation
                ),
            ));
        };
        if check && replacement.check {
            return Err(refuse(
                &old.column,
                "the operation's `check` would stand beside it on the new column; leave `check` out to keep this one, or drop this one in an earlier migration (`drop_constraint`)",
            ));
        }
        substitutes.push((old.column.clone(), replacement.column.clone()));
    }
    let definition = constraint
        .definition
        .strip_suffix(NOT_VALID)
        .unwrap_or(&constraint.definition);
    let definition = if check {
        let (body, no_inherit) = match definition.strip_suffix(NO_INHERIT) {
            Some(body) => (body, NO_INHERIT),
            None => (definition, ""),
        };
        let expression = body.strip_prefix("CHECK ").unwrap_or(body);
        format!(
            "CHECK {}{no_inherit}",
            over_physical(expression, &substitutes)
        )
    } else {
        let Some(end) = definition
            .find(REFERENCES)
            .filter(|_| definition.starts_with(FOREIGN_KEY))
        else {
            return Err(refuse(
                &substitutes[0].0,
                "the catalog's definition of it is not the foreign key's usual form",
            ));
        };
        let referenced = &definition[end + 1..];
        if referenced.contains("SET NULL (") || referenced.contains("SET DEFAULT (") {
            return Err(refuse(
                &substitutes[0].0,
                "its ON DELETE action names the columns it sets",
            ));
        }
        let columns: Vec<String> = constraint
            .columns
            .iter()
            .map(|column| {
                let physical = substitutes
                    .iter()
                    .find(|(old, _)| old == column)
                    .map_or(column, |(_, new)| new);
                quote_ident(physical)
            })
            .collect();
        format!("{FOREIGN_KEY}{}){referenced}", columns.join(", "))
    };
    let new_name = rebuilt_name(&plan.version, &constraint.name);
    let qualified_table = quote_qualified(schema, table);
    let over: Vec<&str> = substitutes.iter().map(|(old, _)| old.as_str()).collect();
    let mut rebuild = Rebuild {
        expand: vec![Step::new(
            format!(
                "{object} again on the new version's column(s) for {}, for new rows now",
                over.join(", ")
            ),
            format!(
                "ALTER TABLE {qualified_table} ADD CONSTRAINT {} {definition}{NOT_VALID}",
                quote_ident(&new_name)
            ),
        )],
        complete: vec![Step::new(
            format!("give {new_name} its old name, {}", constraint.name),
            format!(
                "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                quote_qualified(schema, complete_table),
                quote_ident(&new_name),
                quote_ident(&constraint.name)
            ),
        )],
        rollback: vec![Step::new(
            format!("drop {new_name}, the rebuilt {}", constraint.name),
            format!(
                "ALTER TABLE {qualified_table} DROP CONSTRAINT IF EXISTS {}",
                quote_ident(&new_name)
            ),
        )],
        ..Rebuild::default()
    };
    if constraint.validated {
        rebuild.validate.push(Step::new(
            format!("validate {new_name} (existing rows, without blocking writes)"),
            format!(
                "ALTER TABLE {qualified_table} VALIDATE CONSTRAINT {}",
                quote_ident(&new_name)
            ),
        ));
    }
    Ok(rebuild)
}

/// A foreign key into replaced columns of the table, from another table or from its own
/// columns that are not replaced: it must reference the replacements once the old columns go.
pub(super) struct ReferencingKey {
    pub(super) name: String,
    /// The referencing table, qualified and quoted.
    referencing: String,
    /// The referencing table's schema and name.
    pub(super) referencing_table: (String, String),
    partitioned: bool,
    /// The referenced columns, in order.
    pub(super) columns: Vec<String>,
    /// The referencing columns, in the same order.
    referencing_columns: Vec<String>,
    /// The types of the referencing columns, in the same order.
    referencing_types: Vec<String>,
    /// The types of the referenced columns, in order.
    referenced_types: Vec<String>,
    definition: String,
    validated: bool,
    /// What `pg_get_constraintdef` may print after `REFERENCES`: the table (bare, or
    /// qualified when not on the search_path) and the referenced columns.
    printed_references: Vec<String>,
}

impl ReferencingKey {
    /// Whether the key goes with what the migration drops of its table (`drops`): itself, a
    /// referencing column, or the table.
    pub(super) fn dropped_along(&self, drops: &Drops) -> bool {
        drops.table
            || drops.constraints.contains(&self.name)
            || (self.referencing_columns.iter()).any(|column| drops.columns.contains(column))
    }
}

/// The foreign keys that reference a replaced column of `schema.table` (partitions' clones
/// of a partitioned table's key left out: the key itself stands for them).
pub(super) async fn referencing_keys(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
    replaced: &[Replaced],
) -> Result<Vec<ReferencingKey>, MigrateError> {
    let names: Vec<&str> = replaced.iter().map(|r| r.column.as_str()).collect();
    let rows = client
        .query(
            &format!(
                "{REPLACED_COLUMNS}
             SELECT k.conname::text, rn.nspname::text, r.relname::text, r.relkind = 'p',
                    ARRAY(SELECT a.attname::text
                            FROM pg_catalog.unnest(k.confkey) WITH ORDINALITY AS c(attnum, n)
                            JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = k.confrelid AND a.attnum = c.attnum
                           ORDER BY c.n),
                    ARRAY(SELECT pg_catalog.format_type(a.atttypid, NULL)
                            FROM pg_catalog.unnest(k.conkey) WITH ORDINALITY AS c(attnum, n)
                            JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = k.conrelid AND a.attnum = c.attnum
                           ORDER BY c.n),
                    ARRAY(SELECT a.attname::text
                            FROM pg_catalog.unnest(k.conkey) WITH ORDINALITY AS c(attnum, n)
                            JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = k.conrelid AND a.attnum = c.attnum
                           ORDER BY c.n),
                    pg_catalog.pg_get_constraintdef(k.oid), k.convalidated,
                    ARRAY(SELECT pg_catalog.format_type(a.atttypid, NULL)
                            FROM pg_catalog.unnest(k.confkey) WITH ORDINALITY AS c(attnum, n)
                            JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = k.confrelid AND a.attnum = c.attnum
                           ORDER BY c.n),
                    ARRAY[pg_catalog.quote_ident(fc.relname),
                          pg_catalog.quote_ident(fn.nspname) || '.' || pg_catalog.quote_ident(fc.relname)],
                    (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY c.n)
                       FROM pg_catalog.unnest(k.confkey) WITH ORDINALITY AS c(attnum, n)
                       JOIN pg_catalog.pg_attribute a
                         ON a.attrelid = k.confrelid AND a.attnum = c.attnum)
               FROM t
               JOIN pg_catalog.pg_class fc ON fc.oid = t.oid
               JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
               JOIN pg_catalog.pg_constraint k ON k.confrelid = t.oid
               JOIN pg_catalog.pg_class r ON r.oid = k.conrelid
               JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
              WHERE k.contype = 'f' AND k.conparentid = 0
                AND k.confkey && ARRAY(SELECT attnum FROM replaced)
              ORDER BY 1"
            ),
            &[&schema, &table, &names],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading the foreign keys into the replaced columns of {schema}.{table}"),
                &error,
            )
        })?;
    Ok(rows
        .iter()
        .map(|row| {
            let (referencing_schema, referencing_table): (String, String) =
                (row.get(1), row.get(2));
            ReferencingKey {
                name: row.get(0),
                referencing: quote_qualified(&referencing_schema, &referencing_table),
                referencing_table: (referencing_schema, referencing_table),
                partitioned: row.get(3),
                columns: row.get(4),
                referencing_types: row.get(5),
                referencing_columns: row.get(6),
                definition: row.get(7),
                validated: row.get(8),
                referenced_types: row.get(9),
                printed_references: row
                    .get::<_, Vec<String>>(10)
                    .into_iter()
                    .map(|relation| format!("{relation}({})", row.get::<_, String>(11)))
                    .collect(),
            }
        })
        .collect())
}

/// How `key`, a foreign key into replaced columns, comes to reference their replacements:
/// added again over them `NOT VALID` once their unique index is built (`referencing`),
/// validated then if the old one was valid; at the contract the old key goes before the old
/// columns (it holds their index), and the new one takes its name after. Its own columns the
/// migration replaces too are named by their replacements: the one twin of a key whose both
/// ends are replaced, made here alone ([`CatalogConstraint::references_replaced`]).
pub(super) fn rebuild_referencing(
    context: &TableContext,
    key: &ReferencingKey,
) -> Result<Rebuild, MigrateError> {
    let TableContext {
        plan,
        schema,
        table,
        replaced,
        ..
    } = *context;
    let (referencing_schema, referencing_table) = &key.referencing_table;
    let object = format!(
        "foreign key {} of {referencing_schema}.{referencing_table}",
        key.name
    );
    let first = key.columns.first().map(String::as_str).unwrap_or_default();
    let refuse =
        |column: &str, why: &str| unsafe_to_replace(plan, schema, table, column, &object, why);
    if key.partitioned {
        return Err(refuse(
            first,
            "its table is partitioned, where a foreign key cannot be added NOT VALID",
        ));
    }
    if context.partitioning.is_some() {
        return Err(refuse(
            first,
            "the table it references is partitioned, where the key it needs on the new column is made only at complete",
        ));
    }
    let own_replaced = |column: &str| {
        (plan.replaced.iter()).find(|old| {
            old.schema == *referencing_schema
                && old.table == *referencing_table
                && old.column == column
        })
    };
    let (mut new_columns, mut new_referencing) = (Vec::new(), Vec::new());
    let mut own_ends_replaced = false;
    let ends = (key.columns.iter().zip(&key.referenced_types))
        .zip(key.referencing_columns.iter().zip(&key.referencing_types));
    for ((column, key_type), (referencing_column, referencing_type)) in ends {
        let several = |operation: &str, what: &str| {
            refuse(
                column,
                &format!("{operation} replaces {what} with several columns or merges it into one"),
            )
        };
        let (new_key, key_type, key_retyped) = new_end(
            replaced.iter().find(|old| old.column == *column),
            column,
            key_type,
        )
        .map_err(|operation| several(operation, "it"))?;
        let own = own_replaced(referencing_column);
        own_ends_replaced |= own.is_some();
        let (new_from, from_type, from_retyped) =
            new_end(own, referencing_column, referencing_type).map_err(|operation| {
                several(operation, &format!("its column {referencing_column}"))
            })?;
        if (key_retyped || from_retyped)
            && (integer_width(key_type).is_none() || integer_width(from_type).is_none())
        {
            return Err(refuse(
                column,
                &format!(
                    "it references the column from a column of type {from_type}, and whether a key of type {key_type} can serve it is not known here (integer types can serve each other)"
                ),
            ));
        }
        new_columns.push(quote_ident(new_key));
        new_referencing.push(quote_ident(new_from));
    }
    let definition = key
        .definition
        .strip_suffix(NOT_VALID)
        .unwrap_or(&key.definition);
    let split = definition
        .find(REFERENCES)
        .filter(|_| definition.starts_with(FOREIGN_KEY))
        .and_then(|at| {
            let after = &definition[at + REFERENCES.len()..];
            key.printed_references
                .iter()
                .find(|printed| after.starts_with(printed.as_str()))
                .map(|printed| (at + 1, at + REFERENCES.len() + printed.len()))
        });
    let Some((head_end, rest_start)) = split else {
        return Err(refuse(
            first,
            "the catalog's definition of it is not the foreign key's usual form",
        ));
    };
    let rest = &definition[rest_start..];
    let head = if own_ends_replaced {
        if rest.contains("SET NULL (") || rest.contains("SET DEFAULT (") {
            return Err(refuse(
                first,
                "its ON DELETE action names the columns it sets",
            ));
        }
        format!("{FOREIGN_KEY}{})", new_referencing.join(", "))
    } else {
        definition[..head_end].to_owned()
    };
    let new_definition = format!(
        "{head} REFERENCES {}({}){rest}",
        quote_qualified(schema, table),
        new_columns.join(", "),
    );
    let new_name = rebuilt_name(&plan.version, &key.name);
    // The rename runs after the operations' steps, which may have renamed the referencing
    // table (`rename_table` of it, or of the table itself for a key into itself): the name it
    // has then, or the contract failed on the old one (42P01) every time.
    let referencing_then = quote_qualified(
        referencing_schema,
        &table_at_complete(plan, referencing_schema, referencing_table),
    );
    let mut referencing = vec![Step::new(
        format!("{object} again, into the new version's column(s), for new rows now"),
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {new_definition}{NOT_VALID}",
            key.referencing,
            quote_ident(&new_name)
        ),
    )];
    if key.validated {
        referencing.push(Step::new(
            format!("validate {new_name} (existing rows, without blocking writes)"),
            format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                key.referencing,
                quote_ident(&new_name)
            ),
        ));
    }
    Ok(Rebuild {
        referencing,
        rollback_referencing: vec![Step::new(
            format!("drop {new_name}, the rebuilt {}", key.name),
            format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                key.referencing,
                quote_ident(&new_name)
            ),
        )],
        complete_first: vec![Step::new(
            format!("drop {object}, which holds the old column's index"),
            format!(
                "ALTER TABLE {} DROP CONSTRAINT {}",
                key.referencing,
                quote_ident(&key.name)
            ),
        )],
        complete: vec![Step::new(
            format!("give {new_name} its old name, {}", key.name),
            format!(
                "ALTER TABLE {referencing_then} RENAME CONSTRAINT {} TO {}",
                quote_ident(&new_name),
                quote_ident(&key.name)
            ),
        )],
        ..Rebuild::default()
    })
}

/// One column at an end of a rebuilt foreign key (`old`, its replacement if the migration
/// replaces it; `column` and `old_type` as it is now): its name, its type once the migration
/// completes, and whether that type is new. The operation when it is split or merged: no one
/// column takes its place.
fn new_end<'a>(
    old: Option<&'a Replaced>,
    column: &'a str,
    old_type: &'a str,
) -> Result<(&'a str, &'a str, bool), &'a str> {
    match old.map(|old| (old, &old.replacement)) {
        None => Ok((column, old_type, false)),
        Some((old, None)) => Err(&old.operation),
        Some((_, Some(new))) if new.same_type => Ok((&new.column, old_type, false)),
        Some((_, Some(new))) => Ok((&new.column, &new.sql_type, true)),
    }
}

/// The contract's step for `key`, a foreign key into replaced columns that goes with what the
/// migration drops (itself, a referencing column, its table): not rebuilt, but dropped before
/// the operations' steps all the same, since it holds the old column's index and the old
/// column's drop, which may come first, would fail on it (2BP01). `IF EXISTS`: the
/// operation's own drop finds it gone, and its `DROP … IF EXISTS` does nothing.
pub(super) fn drop_referencing_first(key: &ReferencingKey) -> Rebuild {
    let (schema, table) = &key.referencing_table;
    Rebuild {
        complete_first: vec![Step::new(
            format!(
                "drop foreign key {} of {schema}.{table}, which holds the old column's index (the migration drops it)",
                key.name
            ),
            format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                key.referencing,
                quote_ident(&key.name)
            ),
        )],
        ..Rebuild::default()
    }
}
