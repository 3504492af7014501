//! The application's objects that read what the contract drops, refused before any change.
//!
//! `migrate complete` drops the old version's columns and tables without `CASCADE`: it must
//! never take the application's objects along. So a view, materialized view, rule, policy,
//! trigger (by its `WHEN` or `UPDATE OF`), generated column or SQL-standard function body that
//! reads such a column or table makes the contract fail (2BP01), and a migration that started
//! could serve both versions but never complete. Each holds a normal dependency in
//! `pg_depend`, which is what Postgres refuses the drop by. Not counted: the versions' own
//! views (the contract drops the retired version's first), viewgate's triggers, what also
//! depends on the column automatically (a check of it, which Postgres drops along and `migrate
//! plan` names), and for a replaced column the foreign keys `rebuild/` makes again on the new
//! one. Likewise an index or a unique constraint the contract drops while a constraint owns it
//! or another table's foreign key references through it (a `drop_index` runs after the
//! contract commits, and its failure left the index behind a completed migration). And a
//! sequence the column or table takes with it (a serial's, an identity's) while another
//! table's default or a view calls it: the dependency is on the sequence, so Postgres refuses
//! the drop the same way.

use tokio_postgres::GenericClient;

use super::derive::{Dropped, MigrationPlan};
use super::error::MigrateError;
use super::sync_sql::FUNCTION_SCHEMA;
use crate::control::error::ControlError;
use crate::control::views::mapping_functions::MARKER_PREFIX;

/// What the contract drops that others may read: a column (`None`: a whole table).
struct Contracted<'a> {
    schema: &'a str,
    table: &'a str,
    column: Option<&'a str>,
    /// A replaced column, whose foreign keys are rebuilt rather than lost.
    replaced: bool,
    why: String,
}

/// Refuses `plan` while an object of the application's reads a column or table its
/// contract drops: run by `migrate start` (and `migrate plan`) before any change, and again by
/// `migrate complete`, for what was made in between.
pub async fn refuse_dependents(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    for dropped in &plan.dropped {
        let (schema, table, name, described) = match dropped {
            Dropped::Index { schema, name } => (schema, None, name, format!("index {name}")),
            Dropped::Constraint {
                schema,
                table,
                name,
            } => (schema, Some(table), name, format!("constraint {name}")),
            Dropped::Column { .. } | Dropped::Table { .. } => continue,
        };
        let readers: Vec<IndexReader> =
            index_readers(client, schema, table.map(String::as_str), name)
                .await?
                .into_iter()
                .filter(|reader| !dropped_too(plan, reader))
                .collect();
        let Some(first) = readers.first() else {
            continue;
        };
        let table = table.unwrap_or(&first.index_table);
        let readers: Vec<&str> = readers
            .iter()
            .map(|reader| reader.described.as_str())
            .collect();
        return Err(MigrateError::Unsafe {
            version: plan.version.clone(),
            table: format!("{schema}.{table}"),
            objects: format!("{described} is needed by {}", readers.join(", ")),
            problem: format!(
                "`migrate complete` drops {described}, which Postgres refuses while these need it (the index of a drop_index done after the contract commits would be left behind)"
            ),
            remedy: "drop an index that backs a constraint with drop_constraint; drop the foreign keys that need it first (or in the same migration), then run the command again".into(),
        });
    }
    for contracted in contracted(plan) {
        if let Some(column) = contracted.column {
            let keyed = partition_keys(client, &contracted, column).await?;
            if let Some(table) = keyed.first() {
                return Err(MigrateError::Unsafe {
                    version: plan.version.clone(),
                    table: format!("{}.{}", contracted.schema, contracted.table),
                    objects: format!("column {column} is in the partition key of {table}"),
                    problem: format!(
                        "`migrate complete` drops column {column} ({}), and Postgres never drops a column a partition key names: the migration could never complete",
                        contracted.why
                    ),
                    remedy: "a partitioned table keeps its key: leave the column in place (a new column beside it carries another type or meaning), or move the rows to a table partitioned anew (create_table, raw_sql)".into(),
                });
            }
        }
        let what = match contracted.column {
            Some(column) => format!("column {column}"),
            None => "the table".to_owned(),
        };
        if let Some(called) = called_sequences(client, &contracted).await?.first() {
            return Err(MigrateError::Unsafe {
                version: plan.version.clone(),
                table: format!("{}.{}", contracted.schema, contracted.table),
                objects: format!(
                    "{what}'s sequence {} is called by {}",
                    called.sequence,
                    called.callers.join(", ")
                ),
                problem: format!(
                    "`migrate complete` drops {what} ({}) and its sequence with it, and never with CASCADE: Postgres would refuse the drop while these call the sequence, and the migration could never complete",
                    contracted.why
                ),
                remedy: format!(
                    "keep a serial's sequence apart from its column (`ALTER SEQUENCE {0} OWNED BY NONE`: the contract then leaves it), or have these call another sequence (of an identity retyped, the one the contract makes under the same name, reached by name: `nextval('{0}'::text)`), then run the command again",
                    called.sequence
                ),
            });
        }
        let readers = readers(client, &contracted).await?;
        if readers.is_empty() {
            continue;
        }
        return Err(MigrateError::Unsafe {
            version: plan.version.clone(),
            table: format!("{}.{}", contracted.schema, contracted.table),
            objects: format!("{what} is read by {}", readers.join(", ")),
            problem: format!(
                "`migrate complete` drops {what} ({}), and never with CASCADE: Postgres would refuse the drop while these read it, and the migration could never complete",
                contracted.why
            ),
            remedy: "drop these or redefine them so they no longer read it (a view can read the new version's view instead), then run the command again".into(),
        });
    }
    Ok(())
}

fn contracted(plan: &MigrationPlan) -> Vec<Contracted<'_>> {
    let dropped = plan.dropped.iter().filter_map(|dropped| match dropped {
        Dropped::Column {
            schema,
            table,
            column,
        } => Some(Contracted {
            schema,
            table,
            column: Some(column),
            replaced: false,
            why: "drop_column".into(),
        }),
        Dropped::Table { schema, table } => Some(Contracted {
            schema,
            table,
            column: None,
            replaced: false,
            why: "drop_table".into(),
        }),
        Dropped::Index { .. } | Dropped::Constraint { .. } => None,
    });
    let replaced = plan.replaced.iter().map(|replaced| Contracted {
        schema: &replaced.schema,
        table: &replaced.table,
        column: Some(&replaced.column),
        replaced: true,
        why: format!("{} replaces it with a new column", replaced.operation),
    });
    dropped.chain(replaced).collect()
}

/// What Postgres drops by itself with each column `plan`'s `drop_column`s drop (its objects
/// holding an automatic dependency on it: indexes over it, whole even where it is one column of
/// several, its check constraints and foreign keys, extended statistics, an owned sequence),
/// described as Postgres describes them and named with the column: what `migrate plan` shows
/// an operator, who may not expect a composite index to go.
pub async fn taken_along(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<Vec<String>, MigrateError> {
    let mut taken = Vec::new();
    for dropped in &plan.dropped {
        let Dropped::Column {
            schema,
            table,
            column,
        } = dropped
        else {
            continue;
        };
        let rows = client
            .query(
                &format!(
                    "WITH {TARGET}
                     SELECT DISTINCT pg_catalog.pg_describe_object(d.classid, d.objid, 0)
                       FROM pg_catalog.pg_depend d JOIN target ON d.refobjid = target.relid
                       JOIN pg_catalog.pg_attribute a
                         ON a.attrelid = target.relid AND a.attnum = d.refobjsubid
                      WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'a'
                        AND a.attname = $3 AND NOT a.attisdropped
                        AND d.classid <> 'pg_catalog.pg_attrdef'::regclass
                      ORDER BY 1"
                ),
                &[schema, table, column],
            )
            .await
            .map_err(|error| {
                ControlError::database(
                    format!("reading what goes with column {column} of {schema}.{table}"),
                    &error,
                )
            })?;
        taken.extend(
            rows.iter()
                .map(|row| format!("{} (with column {column})", row.get::<_, String>(0))),
        );
    }
    Ok(taken)
}

/// The contracted table (`$1`.`$2`) as CTE `target`.
const TARGET: &str = "target AS (
    SELECT c.oid AS relid FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname = $2)";

/// The sequences that go with the column `$3` of the target (every column when NULL): a
/// serial's, owned by its column (`a`), unless the column is replaced (`$5`: the replacement
/// takes it over); an identity's (`i`). Each with the column number that owns it.
const GONE: &str = "gone AS (
    SELECT o.objid AS sequence, o.refobjsubid AS owner
      FROM pg_catalog.pg_depend o JOIN target ON o.refobjid = target.relid
      JOIN pg_catalog.pg_class s ON s.oid = o.objid AND s.relkind = 'S'
     WHERE o.classid = 'pg_catalog.pg_class'::regclass
       AND o.refclassid = 'pg_catalog.pg_class'::regclass
       AND (o.deptype = 'i' OR (o.deptype = 'a' AND NOT $5))
       AND ($3::text IS NULL OR o.refobjsubid = (
            SELECT a.attnum FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = target.relid AND a.attname = $3
               AND NOT a.attisdropped)))";

/// A dependent object (`pg_depend` row `d`) as a user knows it: a view by its name, a
/// generated column as such, anything else as Postgres describes it.
const DESCRIBED: &str = "coalesce(
    (SELECT CASE v.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END
            || r.ev_class::regclass::text
       FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
      WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
        AND r.rulename = '_RETURN'),
    (SELECT 'generated column ' || pg_catalog.quote_ident(a.attname) || ' of '
            || ad.adrelid::regclass::text
       FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_attribute a
         ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
      WHERE d.classid = 'pg_catalog.pg_attrdef'::regclass AND ad.oid = d.objid
        AND a.attgenerated <> ''),
    pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid))";

/// Not a dependent (`d`) the contract itself takes care of: the versions' own views (dropped
/// first) and viewgate's triggers (functions in schema `$4`).
const NOT_VIEWGATES: &str = "NOT (d.classid = 'pg_catalog.pg_rewrite'::regclass AND EXISTS (
         SELECT 1 FROM pg_catalog.pg_rewrite r
           JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
           JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
           JOIN viewgate.version_objects o
             ON o.view_schema = vn.nspname AND o.view_name = v.relname
          WHERE r.oid = d.objid))
    AND NOT (d.classid = 'pg_catalog.pg_trigger'::regclass AND EXISTS (
         SELECT 1 FROM pg_catalog.pg_trigger t
           JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
           JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
          WHERE t.oid = d.objid AND pn.nspname = $4))";

/// Not, when the whole table goes (`$3` null), a dependent (`d`) of `target`'s own: its rules,
/// triggers, policies, defaults and constraints go with it.
const NOT_THE_TABLES_OWN: &str = "NOT ($3::text IS NULL AND (
         d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = target.relid
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r
                  WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass
                    AND r.oid = d.objid AND r.ev_class = target.relid)
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                  WHERE d.classid = 'pg_catalog.pg_trigger'::regclass
                    AND t.oid = d.objid AND t.tgrelid = target.relid)
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                  WHERE d.classid = 'pg_catalog.pg_policy'::regclass
                    AND p.oid = d.objid AND p.polrelid = target.relid)
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef a
                  WHERE d.classid = 'pg_catalog.pg_attrdef'::regclass
                    AND a.oid = d.objid AND a.adrelid = target.relid)
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                  WHERE d.classid = 'pg_catalog.pg_constraint'::regclass
                    AND k.oid = d.objid AND k.conrelid = target.relid)))";

/// The objects with a normal dependency on `contracted`, described as Postgres describes them.
async fn readers(
    client: &impl GenericClient,
    contracted: &Contracted<'_>,
) -> Result<Vec<String>, MigrateError> {
    let rows = client
        .query(
            &format!(
                "WITH {TARGET}
                 SELECT DISTINCT {DESCRIBED}
                   FROM pg_catalog.pg_depend d JOIN target ON d.refobjid = target.relid
                  WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'n'
                    AND ($3::text IS NULL OR d.refobjsubid = (
                         SELECT a.attnum FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = target.relid AND a.attname = $3
                            AND NOT a.attisdropped))
                    AND {NOT_VIEWGATES}
                    AND NOT ($5 AND d.classid = 'pg_catalog.pg_constraint'::regclass)
                    AND {NOT_THE_TABLES_OWN}
                    -- A check of the column reads it and goes with it: Postgres drops what
                    -- depends on the column automatically as well.
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend auto
                                     WHERE auto.classid = d.classid AND auto.objid = d.objid
                                       AND auto.refclassid = d.refclassid
                                       AND auto.refobjid = d.refobjid
                                       AND auto.refobjsubid = d.refobjsubid
                                       AND auto.deptype = 'a')
                  ORDER BY 1"
            ),
            &[
                &contracted.schema,
                &contracted.table,
                &contracted.column,
                &FUNCTION_SCHEMA,
                &contracted.replaced,
            ],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!(
                    "reading what depends on {}.{}",
                    contracted.schema, contracted.table
                ),
                &error,
            )
        })?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// A sequence the contract or a rollback drops: schema, name, what takes it.
pub(super) type DroppedSequence = (String, String, String);

/// What a phase takes away, as (schema, table, column): a column, or (`None`) a whole table.
pub(super) type TakenAway = (String, String, Option<String>);

/// The sequences the contract of `plan` drops with a column or table: a function calling one by name (`nextval('models_ticket_seq')`) fails from
/// then on, and Postgres records no dependency to refuse the drop by (`function_bodies.rs`).
pub(super) async fn dropped_sequences(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<Vec<DroppedSequence>, MigrateError> {
    use tokio_postgres::types::Type;
    // $4 is not read here and $5 always false: the numbering is `GONE`'s, shared with
    // `called_sequences`.
    let statement = client
        .prepare_typed(
            &format!(
                "WITH {TARGET}, {GONE}
                 SELECT n.nspname::text, s.relname::text
                   FROM gone JOIN pg_catalog.pg_class s ON s.oid = gone.sequence
                   JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
                  ORDER BY 1, 2"
            ),
            &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::BOOL],
        )
        .await
        .map_err(|error| {
            ControlError::database("reading the sequences the contract drops", &error)
        })?;
    let mut dropped = Vec::new();
    // A replaced column's serial sequence passes to the replacement, and an identity's is
    // made again under its name: a call by name reaches it still.
    for contracted in contracted(plan).into_iter().filter(|taken| !taken.replaced) {
        let rows = client
            .query(
                &statement,
                &[
                    &contracted.schema,
                    &contracted.table,
                    &contracted.column,
                    &None::<String>,
                    &contracted.replaced,
                ],
            )
            .await
            .map_err(|error| {
                ControlError::database("reading the sequences the contract drops", &error)
            })?;
        let what = match contracted.column {
            Some(column) => format!(
                "dropped with column {column} of {}.{} ({})",
                contracted.schema, contracted.table, contracted.why
            ),
            None => format!(
                "dropped with table {}.{} ({})",
                contracted.schema, contracted.table, contracted.why
            ),
        };
        dropped.extend(
            rows.iter()
                .map(|row| (row.get(0), row.get(1), what.clone())),
        );
    }
    Ok(dropped)
}

/// The sequences `migrate rollback` drops with what the expand made (`taken`: a table it
/// created, `None`; or a column it added): a serial's or an identity's, which a function or
/// another table's default may call by name as text (`function_bodies.rs`).
pub(super) async fn sequences_rollback_drops(
    client: &impl GenericClient,
    taken: &[TakenAway],
) -> Result<Vec<DroppedSequence>, MigrateError> {
    let mut dropped = Vec::new();
    for (schema, table, column) in taken {
        let rows = client
            .query(
                "SELECT n.nspname::text, s.relname::text
                   FROM pg_catalog.pg_depend d
                   JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                   JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
                   JOIN pg_catalog.pg_attribute a
                     ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass
                    AND d.refclassid = 'pg_catalog.pg_class'::regclass
                    AND d.deptype IN ('a', 'i')
                    AND d.refobjid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))
                    AND ($3::text IS NULL OR a.attname = $3)
                  ORDER BY 1, 2",
                &[schema, table, column],
            )
            .await
            .map_err(|error| {
                ControlError::database("reading the sequences the rollback drops", &error)
            })?;
        let what = match column {
            Some(column) => {
                format!("dropped with column {column} of {schema}.{table}, which the expand added")
            }
            None => format!("dropped with table {schema}.{table}, which the expand created"),
        };
        dropped.extend(
            rows.iter()
                .map(|row| (row.get(0), row.get(1), what.clone())),
        );
    }
    Ok(dropped)
}

/// A sequence the contract drops with `contracted` and the objects that call it, described.
struct CalledSequence {
    sequence: String,
    callers: Vec<String>,
}

/// The sequences that go with `contracted` (a serial's, owned by its column, unless a
/// replacement takes it over; an identity's, which a retype makes again under its name) and
/// what else holds a normal dependency on them: another table's default, a view. Postgres
/// refuses the drop of the column or table while these call them (2BP01).
async fn called_sequences(
    client: &impl GenericClient,
    contracted: &Contracted<'_>,
) -> Result<Vec<CalledSequence>, MigrateError> {
    let rows = client
        .query(
            &format!(
                "WITH {TARGET}, {GONE}
                 SELECT DISTINCT gone.sequence::regclass::text, {DESCRIBED}
                   FROM pg_catalog.pg_depend d JOIN gone ON d.refobjid = gone.sequence, target
                  WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'n'
                    AND {NOT_VIEWGATES}
                    AND {NOT_THE_TABLES_OWN}
                    -- The versions' views copy a column's default, and their mapping
                    -- functions (marked by their comment) call it: the retired version's go
                    -- first, and no remaining version has the column or table.
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef ad
                                      JOIN pg_catalog.pg_class v ON v.oid = ad.adrelid
                                      JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
                                      JOIN viewgate.version_objects o
                                        ON o.view_schema = vn.nspname AND o.view_name = v.relname
                                     WHERE d.classid = 'pg_catalog.pg_attrdef'::regclass
                                       AND ad.oid = d.objid)
                    AND NOT (d.classid = 'pg_catalog.pg_proc'::regclass
                             AND coalesce(pg_catalog.obj_description(d.objid, 'pg_proc'), '')
                                 LIKE $6 || '%')
                    -- The owning column's own default goes with it.
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef ad
                                     WHERE d.classid = 'pg_catalog.pg_attrdef'::regclass
                                       AND ad.oid = d.objid AND ad.adrelid = target.relid
                                       AND ad.adnum = gone.owner)
                  ORDER BY 1, 2"
            ),
            &[
                &contracted.schema,
                &contracted.table,
                &contracted.column,
                &FUNCTION_SCHEMA,
                &contracted.replaced,
                &MARKER_PREFIX,
            ],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!(
                    "reading what calls the sequences of {}.{}",
                    contracted.schema, contracted.table
                ),
                &error,
            )
        })?;
    let mut called: Vec<CalledSequence> = Vec::new();
    for row in rows {
        let (sequence, caller): (String, String) = (row.get(0), row.get(1));
        match called.last_mut() {
            Some(last) if last.sequence == sequence => last.callers.push(caller),
            _ => called.push(CalledSequence {
                sequence,
                callers: vec![caller],
            }),
        }
    }
    Ok(called)
}

/// The partitioned tables (`contracted`'s table, or a partition of it partitioned in turn)
/// whose partition key names column `column`, directly or in an expression.
async fn partition_keys(
    client: &impl GenericClient,
    contracted: &Contracted<'_>,
    column: &str,
) -> Result<Vec<String>, MigrateError> {
    let rows = client
        .query(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
               FROM pg_catalog.pg_partition_tree(
                        pg_catalog.format('%I.%I', $1::text, $2::text)::regclass) t
               JOIN pg_catalog.pg_partitioned_table p ON p.partrelid = t.relid
               JOIN pg_catalog.pg_class c ON c.oid = t.relid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_catalog.pg_attribute a ON a.attrelid = t.relid AND a.attname = $3
                                              AND NOT a.attisdropped
              WHERE a.attnum = ANY (p.partattrs::int2[])
                 -- A column an expression of the key reads depends on the table internally.
                 OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                             WHERE d.classid = 'pg_catalog.pg_class'::regclass
                               AND d.objid = t.relid AND d.objsubid = a.attnum
                               AND d.refclassid = 'pg_catalog.pg_class'::regclass
                               AND d.refobjid = t.relid AND d.refobjsubid = 0
                               AND d.deptype = 'i')
              ORDER BY t.level, 1",
            &[&contracted.schema, &contracted.table, &column],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!(
                    "reading the partition keys of {}.{}",
                    contracted.schema, contracted.table
                ),
                &error,
            )
        })?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// An object that keeps an index from being dropped; a foreign key, by name.
struct IndexReader {
    described: String,
    foreign_key: Option<(String, String, String)>,
    /// The table the index is on, which a `drop_index` does not name.
    index_table: String,
}

/// Whether the migration drops `reader` itself (a foreign key it drops with drop_constraint).
fn dropped_too(plan: &MigrationPlan, reader: &IndexReader) -> bool {
    reader
        .foreign_key
        .as_ref()
        .is_some_and(|(schema, table, name)| {
            plan.dropped.iter().any(|dropped| {
                matches!(dropped, Dropped::Constraint { schema: s, table: t, name: n }
                if s == schema && t == table && n == name)
            })
        })
}

/// What keeps index `name` of `schema` (`table`: `None`) or the index of constraint `name` of
/// `schema.table` from being dropped: the constraint the index belongs to, and the foreign
/// keys that reference through it.
async fn index_readers(
    client: &impl GenericClient,
    schema: &str,
    table: Option<&str>,
    name: &str,
) -> Result<Vec<IndexReader>, MigrateError> {
    let rows = client
        .query(
            "WITH target (oid, table_name) AS (
                SELECT i.oid, t.relname FROM pg_catalog.pg_class i
                  JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace
                  JOIN pg_catalog.pg_index x ON x.indexrelid = i.oid
                  JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
                 WHERE $2::text IS NULL AND n.nspname = $1 AND i.relname = $3
                   AND i.relkind IN ('i', 'I')
                UNION
                SELECT k.conindid, t.relname FROM pg_catalog.pg_constraint k
                  JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
                  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
                 WHERE n.nspname = $1 AND t.relname = $2 AND k.conname = $3
                   AND k.contype IN ('p', 'u'))
             SELECT pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0),
                    NULL::text, NULL::text, NULL::text, target.table_name::text
               FROM pg_catalog.pg_depend d JOIN target ON d.objid = target.oid
              WHERE $2::text IS NULL AND d.classid = 'pg_catalog.pg_class'::regclass
                AND d.refclassid = 'pg_catalog.pg_constraint'::regclass AND d.deptype = 'i'
             UNION
             SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0),
                    kn.nspname::text, kt.relname::text, k.conname::text, target.table_name::text
               FROM pg_catalog.pg_depend d JOIN target ON d.refobjid = target.oid
               LEFT JOIN pg_catalog.pg_constraint k
                 ON d.classid = 'pg_catalog.pg_constraint'::regclass AND k.oid = d.objid
               LEFT JOIN pg_catalog.pg_class kt ON kt.oid = k.conrelid
               LEFT JOIN pg_catalog.pg_namespace kn ON kn.oid = kt.relnamespace
              WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'n'
             ORDER BY 1",
            &[&schema, &table, &name],
        )
        .await
        .map_err(|error| {
            ControlError::database(format!("reading what needs {schema}.{name}"), &error)
        })?;
    Ok(rows
        .iter()
        .map(|row| IndexReader {
            described: row.get(0),
            foreign_key: match (row.get(1), row.get(2), row.get(3)) {
                (Some(schema), Some(table), Some(name)) => Some((schema, table, name)),
                _ => None,
            },
            index_table: row.get(4),
        })
        .collect())
}
