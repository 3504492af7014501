//! Checks and foreign keys rebuilt on the column that replaces an old one. Each is added again
//! over the replacement in the expand, `NOT VALID` (so adding it reads no row), from the
//! catalog's own definition (`pg_get_constraintdef`) with the replaced columns renamed token by
//! token; validated after the backfill if the old one was valid; renamed to the old name at
//! complete, after the old column and its constraints are gone; dropped by a rollback. A check
//! whose expression does not fit the new type fails the expand, which then changes nothing.
//!
//! A check that a column is not null is not rebuilt: `alter_column` carries NOT NULL itself.
//!
//! Foreign keys into a replaced column (other tables', or the table's own from columns not
//! replaced) are added again into the replacement once its unique index is built, and the
//! contract drops the old ones before the old column, whose index they hold, and gives the new
//! ones the old names after all the operations' steps, on the referencing table under the
//! name those steps leave it (a `rename_table` of it comes before). One the migration drops
//! (itself, a referencing column or its table) is not rebuilt, only dropped as early.
//!
//! Refused before any change: a column split or merged (no one replacement), a check when the
//! operation gives the column a `check` of its own (the two would stand side by side), a
//! foreign key whose `ON DELETE SET NULL|DEFAULT (…)` names columns, a foreign key into the
//! column from a partitioned table or from columns also replaced, or into a column whose type
//! changes other than from one integer type to another (whether the new key's operators can
//! serve the referencing column's type is not read here).

use tokio_postgres::GenericClient;

use super::sequences::integer_width;
use super::{
    Drops, NOT_NULL_SHAPED, REPLACED_COLUMNS, Rebuild, TableContext, rebuilt_name,
    table_at_complete, unsafe_to_replace,
};
use crate::control::error::ControlError;
use crate::control::migrate::derive::{Replaced, Step, over_physical};
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
                    pg_catalog.pg_get_constraintdef(k.oid), k.convalidated
               FROM pg_catalog.pg_constraint k, t
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
    definition: String,
    validated: bool,
    /// Whether some of its own columns are replaced too (the table's key into itself).
    both_sides: bool,
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
                    k.conrelid = t.oid AND k.conkey && ARRAY(SELECT attnum FROM replaced),
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
                both_sides: row.get(9),
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
/// columns (it holds their index), and the new one takes its name after.
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
    if key.both_sides {
        return Err(refuse(
            first,
            "it references the table from columns that are replaced too",
        ));
    }
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
    let mut new_columns = Vec::with_capacity(key.columns.len());
    for (column, referencing_type) in key.columns.iter().zip(&key.referencing_types) {
        let replacement = match replaced.iter().find(|old| old.column == *column) {
            Some(old) => match &old.replacement {
                Some(replacement)
                    if !(replacement.same_type
                        || integer_width(&replacement.sql_type).is_some()
                            && integer_width(referencing_type).is_some()) =>
                {
                    return Err(refuse(
                        column,
                        &format!(
                            "it references the column from a column of type {referencing_type}, and whether a key of type {} can serve it is not known here (integer types can serve each other)",
                            replacement.sql_type
                        ),
                    ));
                }
                Some(replacement) => replacement.column.as_str(),
                None => {
                    return Err(refuse(
                        column,
                        &format!(
                            "{} replaces it with several columns or merges it into one",
                            old.operation
                        ),
                    ));
                }
            },
            None => column.as_str(),
        };
        new_columns.push(quote_ident(replacement));
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
    let new_definition = format!(
        "{} REFERENCES {}({}){}",
        &definition[..head_end],
        quote_qualified(schema, table),
        new_columns.join(", "),
        &definition[rest_start..]
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
