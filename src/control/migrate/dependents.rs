//! The application's objects that read what the contract drops, refused before any change.
//!
//! `migrate complete` drops the old version's columns and tables without `CASCADE`: it must
//! never take the application's objects along. So a view, materialized view, rule, policy,
//! trigger (by its `WHEN` or `UPDATE OF`), generated column or SQL-standard function body that
//! reads such a column or table makes the contract fail (2BP01), and a migration that started
//! could serve both versions but never complete. Each holds a normal dependency in
//! `pg_depend`, which is what Postgres refuses the drop by. Not counted: the versions' own
//! views (the contract drops the retired version's first), viewgate's triggers, and for a
//! replaced column the foreign keys `rebuild/` makes again on the new one. Likewise an index
//! or a unique constraint the contract drops while a constraint owns it or another table's
//! foreign key references through it (a `drop_index` runs after the contract commits, and
//! its failure left the index behind a completed migration).

use tokio_postgres::GenericClient;

use super::derive::{Dropped, MigrationPlan};
use super::error::MigrateError;
use super::sync::FUNCTION_SCHEMA;
use crate::control::error::ControlError;

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
        let readers: Vec<String> = index_readers(client, schema, table.map(String::as_str), name)
            .await?
            .into_iter()
            .filter(|reader| !dropped_too(plan, reader))
            .map(|reader| reader.described)
            .collect();
        if readers.is_empty() {
            continue;
        }
        return Err(MigrateError::Unsafe {
            version: plan.version.clone(),
            table: schema.clone(),
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
        let readers = readers(client, &contracted).await?;
        if readers.is_empty() {
            continue;
        }
        let what = match contracted.column {
            Some(column) => format!("column {column}"),
            None => "the table".to_owned(),
        };
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

/// The objects with a normal dependency on `contracted`, described as Postgres describes them.
async fn readers(
    client: &impl GenericClient,
    contracted: &Contracted<'_>,
) -> Result<Vec<String>, MigrateError> {
    let rows = client
        .query(
            "WITH target AS (
                SELECT c.oid AS relid FROM pg_catalog.pg_class c
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2)
             SELECT DISTINCT coalesce(
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
                    pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid))
               FROM pg_catalog.pg_depend d JOIN target ON d.refobjid = target.relid
              WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'n'
                AND ($3::text IS NULL OR d.refobjsubid = (
                     SELECT a.attnum FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = target.relid AND a.attname = $3 AND NOT a.attisdropped))
                AND NOT (d.classid = 'pg_catalog.pg_rewrite'::regclass AND EXISTS (
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
                      WHERE t.oid = d.objid AND pn.nspname = $4))
                AND NOT ($5 AND d.classid = 'pg_catalog.pg_constraint'::regclass)
                -- A dropped table takes its own rules, triggers, policies, defaults and
                -- constraints along.
                AND NOT ($3::text IS NULL AND (
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
                                AND k.oid = d.objid AND k.conrelid = target.relid)))
              ORDER BY 1",
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
            "WITH target AS (
                SELECT i.oid FROM pg_catalog.pg_class i
                  JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace
                 WHERE $2::text IS NULL AND n.nspname = $1 AND i.relname = $3
                   AND i.relkind IN ('i', 'I')
                UNION
                SELECT k.conindid FROM pg_catalog.pg_constraint k
                  JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
                  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
                 WHERE n.nspname = $1 AND t.relname = $2 AND k.conname = $3
                   AND k.contype IN ('p', 'u'))
             SELECT pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0),
                    NULL::text, NULL::text, NULL::text
               FROM pg_catalog.pg_depend d JOIN target ON d.objid = target.oid
              WHERE $2::text IS NULL AND d.classid = 'pg_catalog.pg_class'::regclass
                AND d.refclassid = 'pg_catalog.pg_constraint'::regclass AND d.deptype = 'i'
             UNION
             SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0),
                    kn.nspname::text, kt.relname::text, k.conname::text
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
        })
        .collect())
}
