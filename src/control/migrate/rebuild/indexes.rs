//! Indexes rebuilt on the column that replaces an old one. Each index whose key or INCLUDE
//! columns, expressions or predicate name a replaced column is built again over the
//! replacement, read from the catalog part by part (method, columns with their collations,
//! operator classes and orderings, expressions and the predicate with the replaced columns
//! renamed token by token, INCLUDE, NULLS NOT DISTINCT, storage parameters, tablespace):
//! `CONCURRENTLY` after the backfill (partition by partition on a partitioned table,
//! `derive/partitions.rs`), under a name of the migration's own
//! (`_vg_<version>_<index>`), dropped by a rollback. The contract, after it drops the old column
//! and its indexes, gives each rebuilt index the old one's name, its unique constraint or
//! primary key (`ADD CONSTRAINT … UNIQUE | PRIMARY KEY USING INDEX`), its replica identity and
//! its clustering.
//!
//! The concurrent build runs after the backfill, long after the expand committed; so the expand
//! first builds the same index on an empty temporary copy of the table (`LIKE`, the new columns
//! included): an expression that does not fit the new type (`lower()` of an integer), a function
//! that is not immutable for it, an operator class that does not accept it, fail there, in the
//! expand's transaction, which then changes nothing.
//!
//! Refused before any change, naming the index: an operator class other than the default that
//! does not take the new type (one whose input type the new type is, or is binary-coercible
//! to, does: `varchar_pattern_ops` over a widened `varchar`), or an explicit collation, on the
//! replaced column itself when the type changes, a column split or merged (no one
//! replacement), an expression spelling names with Unicode escapes (it cannot be renamed token
//! by token), an index left invalid by a failed build, a deferrable unique
//! constraint (an index is checked at once, so its twin would fail writes it lets through). A
//! primary key is rebuilt as a unique index and becomes the key again at the contract (on a
//! partitioned table, one on each partition, each made its partition's key and then taken by
//! the table's); exclusion constraints are left to `preconditions.rs`, which refuses them.
//! The names given back at the contract, the index's and its columns', are `index_names.rs`'s.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;
use tokio_postgres::types::Oid;

use super::index_names::{column_steps, rename_to_old, renamed_columns};
use super::{Drops, REPLACED_COLUMNS, Rebuild, TableContext, rebuilt_name, unsafe_to_replace};
use crate::control::error::ControlError;
use crate::control::migrate::derive::{
    PROBE_PREFIX, PartitionBuilds, Replaced, Step, constraint_on_partitions, fit_identifier,
    index_on_partitions, mentions, over_physical, rename_physical, translatable,
};
use crate::control::migrate::error::MigrateError;
use crate::control::quote::{quote_ident, quote_qualified};

/// `pg_index.indoption` bits (src/include/catalog/pg_index.h).
const INDOPTION_DESC: i16 = 0x0001;
const INDOPTION_NULLS_FIRST: i16 = 0x0002;

/// One index of the table, as the catalog describes it.
pub(super) struct CatalogIndex {
    pub(super) name: String,
    method: String,
    unique: bool,
    valid: bool,
    key_count: usize,
    /// Per column (key columns, then INCLUDE columns): its name, or empty for an expression.
    columns: Vec<String>,
    /// Per column: the column's name or the expression's text, as `pg_get_indexdef` gives it.
    texts: Vec<String>,
    /// Per column: the index's own name for it (`pg_attribute`), as Postgres named it.
    names: Vec<String>,
    /// Per key column: an explicit collation (qualified, quoted), or empty.
    collations: Vec<String>,
    /// Per key column: a non-default operator class (qualified, quoted), or empty.
    operator_classes: Vec<String>,
    /// Per key column: whether its operator class takes the new type of the column it is
    /// over, where that column is replaced by one of another type (`operator_class_takes`).
    operator_classes_fit: Vec<bool>,
    /// Per key column: `indoption` bits.
    orderings: Vec<i16>,
    /// Whether the method orders its entries (only then do DESC / NULLS FIRST apply).
    ordered: bool,
    predicate: Option<String>,
    nulls_not_distinct: bool,
    replica_identity: bool,
    clustered: bool,
    storage: Option<String>,
    tablespace: Option<String>,
    /// The unique, primary-key or exclusion constraint the index belongs to: name, kind,
    /// deferrable.
    constraint: Option<(String, String, bool)>,
}

impl CatalogIndex {
    pub(super) fn names_column(&self, column: &str) -> bool {
        self.columns.iter().any(|name| name == column)
    }

    /// Whether the index goes with what the migration drops: itself, its constraint, or a
    /// column it names.
    pub(super) fn dropped_along(&self, dropped: &Drops) -> bool {
        dropped.indexes.contains(&self.name)
            || self
                .constraint
                .as_ref()
                .is_some_and(|(name, ..)| dropped.constraints.contains(name))
            || dropped
                .columns
                .iter()
                .any(|column| self.names_column(column) || self.mentions_in_expression(column))
    }

    /// The index's expressions and its predicate.
    fn expressions(&self) -> impl Iterator<Item = &str> {
        self.columns
            .iter()
            .zip(&self.texts)
            .filter(|(name, _)| name.is_empty())
            .map(|(_, text)| text.as_str())
            .chain(self.predicate.as_deref())
    }

    /// Whether an expression or the predicate names `column`.
    pub(super) fn mentions_in_expression(&self, column: &str) -> bool {
        self.expressions()
            .any(|expression| mentions(expression, column))
    }
}

/// The indexes of `schema.table` that name a replaced column, in an expression, a predicate
/// or as a column, or whose constraint depends on one.
pub(super) async fn covering_indexes(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
    replaced: &[Replaced],
) -> Result<Vec<CatalogIndex>, MigrateError> {
    let names: Vec<&str> = replaced.iter().map(|r| r.column.as_str()).collect();
    let rows = client
        .query(
            &format!(
            "{REPLACED_COLUMNS}
             SELECT ic.relname::text, am.amname::text, i.indisunique, i.indisvalid,
                    i.indnkeyatts::int4,
                    ARRAY(SELECT COALESCE(a.attname::text, '')
                            FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                            LEFT JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
                           ORDER BY k.n),
                    ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid, n, false)
                            FROM pg_catalog.generate_series(1, i.indnatts::int4) AS n ORDER BY n),
                    ARRAY(SELECT CASE
                                   WHEN k.coll IS NULL OR k.coll = 0 THEN ''
                                   WHEN k.attnum <> 0 AND k.coll = a.attcollation THEN ''
                                   WHEN k.attnum = 0 AND k.coll = 100 THEN ''
                                   ELSE pg_catalog.quote_ident(cn.nspname) || '.'
                                        || pg_catalog.quote_ident(co.collname) END
                            FROM ROWS FROM (pg_catalog.unnest(i.indcollation::oid[]),
                                            pg_catalog.unnest(i.indkey::int2[]))
                                 WITH ORDINALITY AS k(coll, attnum, n)
                            LEFT JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
                            LEFT JOIN pg_catalog.pg_collation co ON co.oid = k.coll
                            LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
                           WHERE k.n <= i.indnkeyatts
                           ORDER BY k.n),
                    ARRAY(SELECT CASE WHEN oc.opcdefault THEN ''
                                      ELSE pg_catalog.quote_ident(ocn.nspname) || '.'
                                           || pg_catalog.quote_ident(oc.opcname) END
                            FROM pg_catalog.unnest(i.indclass::oid[]) WITH ORDINALITY AS k(opclass, n)
                            JOIN pg_catalog.pg_opclass oc ON oc.oid = k.opclass
                            JOIN pg_catalog.pg_namespace ocn ON ocn.oid = oc.opcnamespace
                           ORDER BY k.n),
                    i.indoption::int2[],
                    pg_catalog.pg_indexam_has_property(am.oid, 'can_order'),
                    pg_catalog.pg_get_expr(i.indpred, i.indrelid),
                    COALESCE((pg_catalog.to_jsonb(i) ->> 'indnullsnotdistinct')::bool, false),
                    i.indisreplident, i.indisclustered,
                    pg_catalog.array_to_string(ic.reloptions, ', '),
                    ts.spcname::text,
                    k.conname::text, k.contype::text, k.condeferrable,
                    i.indclass::oid[],
                    ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                           WHERE a.attrelid = i.indexrelid AND a.attnum > 0 ORDER BY a.attnum)
               FROM t
               JOIN pg_catalog.pg_index i ON i.indrelid = t.oid
               JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
               JOIN pg_catalog.pg_am am ON am.oid = ic.relam
               LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = ic.reltablespace
               LEFT JOIN pg_catalog.pg_constraint k
                 ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                AND k.contype IN ('p', 'u', 'x')
              WHERE i.indkey::int2[] && ARRAY(SELECT attnum FROM replaced)
                 OR EXISTS (
                      SELECT 1 FROM pg_catalog.pg_depend d
                       WHERE ((d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = i.indexrelid)
                              OR (d.classid = 'pg_catalog.pg_constraint'::regclass AND d.objid = k.oid))
                         AND d.refclassid = 'pg_catalog.pg_class'::regclass
                         AND d.refobjid = i.indrelid
                         AND d.refobjsubid IN (SELECT attnum FROM replaced))
              ORDER BY 1"
            ),
            &[&schema, &table, &names],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading the indexes over the replaced columns of {schema}.{table}"),
                &error,
            )
        })?;
    let mut indexes = Vec::with_capacity(rows.len());
    for row in &rows {
        let conname: Option<String> = row.get(17);
        let mut index = CatalogIndex {
            name: row.get(0),
            method: row.get(1),
            unique: row.get(2),
            valid: row.get(3),
            key_count: usize::try_from(row.get::<_, i32>(4)).unwrap_or(0),
            columns: row.get(5),
            texts: row.get(6),
            names: row.get(21),
            collations: row.get(7),
            operator_classes: row.get(8),
            operator_classes_fit: Vec::new(),
            orderings: row.get(9),
            ordered: row.get::<_, Option<bool>>(10).unwrap_or(false),
            predicate: row.get(11),
            nulls_not_distinct: row.get(12),
            replica_identity: row.get(13),
            clustered: row.get(14),
            storage: row
                .get::<_, Option<String>>(15)
                .filter(|text| !text.is_empty()),
            tablespace: row.get(16),
            constraint: conname.map(|name| (name, row.get(18), row.get(19))),
        };
        let classes: Vec<Oid> = row.get(20);
        for (position, class) in classes.into_iter().enumerate() {
            let new_type = replaced
                .iter()
                .find(|old| index.columns.get(position) == Some(&old.column))
                .and_then(|old| old.replacement.as_ref())
                .filter(|replacement| !replacement.same_type)
                .map(|replacement| replacement.sql_type.as_str());
            let fits = match new_type {
                Some(new_type) if !index.operator_classes[position].is_empty() => {
                    operator_class_takes(client, &index, (position, class), new_type).await?
                }
                _ => true,
            };
            index.operator_classes_fit.push(fits);
        }
        indexes.push(index);
    }
    Ok(indexes)
}

/// Whether the operator class of `index`'s key column at `position` (`class`) takes values of
/// `new_type` (the file's spelling, a parameter, never spliced into the SQL): its input type
/// is the new type (a domain's base type) or one the new type is binary-coercible to, as
/// Postgres asks when it builds an index (`varchar_pattern_ops` takes `text`, which a
/// `varchar(n)` is: widening a Django `CharField` keeps its `_like` index). A polymorphic
/// class, or a type not there yet (the migration makes it), is taken not to fit; the
/// expand's build on an empty copy asks Postgres itself again.
async fn operator_class_takes(
    client: &impl GenericClient,
    index: &CatalogIndex,
    (position, class): (usize, Oid),
    new_type: &str,
) -> Result<bool, MigrateError> {
    let row = client
        .query_one(
            "SELECT COALESCE((
                 SELECT oc.opcintype = n.base
                        OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast c
                                    WHERE c.castsource = n.base AND c.casttarget = oc.opcintype
                                      AND c.castmethod = 'b')
                   FROM pg_catalog.pg_opclass oc,
                        (SELECT COALESCE(NULLIF(ty.typbasetype, 0), ty.oid) AS base
                           FROM pg_catalog.pg_type ty
                          WHERE ty.oid = pg_catalog.to_regtype($2)) n
                  WHERE oc.oid = $1), false)",
            &[&class, &new_type],
        )
        .await
        .map_err(|error| {
            let (class, name) = (&index.operator_classes[position], &index.name);
            let asked = format!("whether operator class {class} of index {name} takes {new_type}");
            ControlError::database(asked, &error)
        })?;
    Ok(row.get(0))
}

/// How `index` is rebuilt over the replacements of `replaced`; `None` for an index left to
/// `preconditions.rs` (an exclusion constraint's); an error for one that
/// cannot be rebuilt.
pub(super) fn rebuild(
    context: &TableContext,
    index: &CatalogIndex,
) -> Result<Option<Rebuild>, MigrateError> {
    let TableContext {
        plan,
        schema,
        table,
        complete_table,
        replaced,
        partitioning,
    } = *context;
    if let Some((_, kind, ..)) = &index.constraint
        && kind == "x"
    {
        return Ok(None);
    }
    let primary_key = matches!(&index.constraint, Some((_, kind, _)) if kind == "p");
    let object = format!("index {}", index.name);
    let refuse =
        |column: &str, why: &str| unsafe_to_replace(plan, schema, table, column, &object, why);
    let mut substitutes: BTreeMap<&str, &str> = BTreeMap::new();
    for old in replaced {
        let in_expression = index.mentions_in_expression(&old.column);
        if !index.names_column(&old.column) && !in_expression {
            continue;
        }
        let Some(replacement) = &old.replacement else {
            return Err(refuse(
                &old.column,
                &format!(
                    "{} replaces it with several columns or merges it into one",
                    old.operation
                ),
            ));
        };
        if !index.valid {
            return Err(refuse(
                &old.column,
                "the index is invalid (a build that failed or is still running)",
            ));
        }
        if in_expression && !index.expressions().all(translatable) {
            return Err(refuse(
                &old.column,
                "an expression or the predicate of the index spells a name with Unicode escapes (U&\"…\"), which cannot be moved to the new column token by token",
            ));
        }
        let key_position = index.columns[..index.key_count.min(index.columns.len())]
            .iter()
            .position(|name| *name == old.column);
        if let Some(position) = key_position
            && !replacement.same_type
            && !index.operator_classes[position].is_empty()
            && !index
                .operator_classes_fit
                .get(position)
                .copied()
                .unwrap_or(false)
        {
            return Err(refuse(
                &old.column,
                &format!(
                    "it uses operator class {}, which does not take the column's new type {}",
                    index.operator_classes[position], replacement.sql_type
                ),
            ));
        }
        if let Some(position) = key_position
            && !replacement.same_type
            && !index.collations[position].is_empty()
        {
            return Err(refuse(
                &old.column,
                &format!(
                    "it sorts the column by collation {} and the column's type changes (the new type may have no collation)",
                    index.collations[position]
                ),
            ));
        }
        if primary_key && !replacement.not_null {
            return Err(refuse(
                &old.column,
                "it is in the primary key, whose columns are NOT NULL, and the operation makes the new column nullable",
            ));
        }
        if index.replica_identity && !replacement.not_null {
            return Err(refuse(
                &old.column,
                "it is the table's replica identity, which needs NOT NULL columns, and the new column may be NULL",
            ));
        }
        if replacement.unique
            && index.unique
            && index.columns == [old.column.clone()]
            && index.predicate.is_none()
        {
            return Err(refuse(
                &old.column,
                "the operation's `unique = true` makes the new column unique a second time; leave it out, the column's own unique index is rebuilt",
            ));
        }
        substitutes.insert(&old.column, &replacement.column);
    }
    if let Some((constraint, kind, true)) = &index.constraint {
        let column = substitutes.keys().next().copied().unwrap_or_default();
        let what = if kind == "p" {
            "primary key"
        } else {
            "unique constraint"
        };
        return Err(refuse(
            column,
            &format!(
                "it belongs to the deferrable {what} {constraint}, and an index on the new column would check every row at once while the migration runs, failing writes that the constraint lets through until commit"
            ),
        ));
    }
    if substitutes.is_empty() {
        // Covered through a dependency no name shows: nothing safe to rebuild from.
        let column = replaced
            .first()
            .map(|old| old.column.as_str())
            .unwrap_or_default();
        return Err(refuse(column, "the catalog does not show where it uses it"));
    }

    let new_name = rebuilt_name(&plan.version, &index.name);
    let named = (index.columns.as_slice(), index.names.as_slice());
    let renamed_columns = renamed_columns(named, &substitutes, (schema, table), &plan.renames);
    let qualified_table = quote_qualified(schema, table);
    let renames: Vec<(String, String)> = substitutes
        .iter()
        .map(|(old, new)| ((*old).to_owned(), (*new).to_owned()))
        .collect();
    // The contract may rename the table before these steps run.
    let completed_table = quote_qualified(schema, complete_table);
    let element = |position: usize| -> String {
        let name = &index.columns[position];
        let mut text = if name.is_empty() {
            format!("({})", over_physical(&index.texts[position], &renames))
        } else {
            quote_ident(substitutes.get(name.as_str()).copied().unwrap_or(name))
        };
        if position < index.key_count {
            if let Some(collation) = index.collations.get(position).filter(|c| !c.is_empty()) {
                text.push_str(&format!(" COLLATE {collation}"));
            }
            if let Some(class) = index
                .operator_classes
                .get(position)
                .filter(|c| !c.is_empty())
            {
                text.push_str(&format!(" {class}"));
            }
            let option = index.orderings.get(position).copied().unwrap_or(0);
            if index.ordered {
                let descending = option & INDOPTION_DESC != 0;
                let nulls_first = option & INDOPTION_NULLS_FIRST != 0;
                if descending {
                    text.push_str(" DESC");
                }
                if nulls_first != descending {
                    text.push_str(if nulls_first {
                        " NULLS FIRST"
                    } else {
                        " NULLS LAST"
                    });
                }
            }
        }
        text
    };
    let key_count = index.key_count.min(index.columns.len());
    let keys: Vec<String> = (0..key_count).map(element).collect();
    let included: Vec<String> = (key_count..index.columns.len()).map(element).collect();
    let unique = if index.unique { "UNIQUE " } else { "" };
    // What follows `ON <table>`: on the rebuilt index, or on the expand's empty copy (no
    // tablespace: a temporary table's is its own).
    let definition = |rebuilt: bool| -> String {
        let mut sql = format!("USING {} ({})", quote_ident(&index.method), keys.join(", "));
        if !included.is_empty() {
            sql.push_str(&format!(" INCLUDE ({})", included.join(", ")));
        }
        if index.nulls_not_distinct {
            sql.push_str(" NULLS NOT DISTINCT");
        }
        if let Some(storage) = &index.storage {
            sql.push_str(&format!(" WITH ({storage})"));
        }
        if let Some(tablespace) = index.tablespace.as_ref().filter(|_| rebuilt) {
            sql.push_str(&format!(" TABLESPACE {}", quote_ident(tablespace)));
        }
        if let Some(predicate) = &index.predicate {
            sql.push_str(&format!(" WHERE ({})", over_physical(predicate, &renames)));
        }
        sql
    };
    let over: Vec<&str> = substitutes.keys().copied().collect();
    let probe = quote_ident(&fit_identifier(format!("{PROBE_PREFIX}{new_name}")));
    let probe_build = Step::new(
        format!(
            "build index {} over the new version's column(s) for {} on an empty copy of {table}, so that what cannot be built over them fails now",
            index.name,
            over.join(", ")
        ),
        format!(
            "CREATE TEMPORARY TABLE {probe} (LIKE {qualified_table}) ON COMMIT DROP; CREATE {unique}INDEX ON pg_temp.{probe} {}",
            definition(false)
        ),
    );
    let refuse_problem = |problem: String| {
        refuse(
            substitutes.keys().next().copied().unwrap_or_default(),
            &problem,
        )
    };
    let (concurrent, mut contract) = match (partitioning, &index.constraint) {
        // No USING INDEX for a partitioned table: its constraint is made at complete over
        // its partitions', each built concurrently.
        (Some(partitioning), Some((constraint, kind, _))) => {
            let clause = match (kind.as_str(), index.nulls_not_distinct) {
                ("p", _) => "PRIMARY KEY",
                (_, true) => "UNIQUE NULLS NOT DISTINCT",
                _ => "UNIQUE",
            };
            let final_name = |position: usize| {
                let name = &index.columns[position];
                let mut name = substitutes
                    .get(name.as_str())
                    .map_or_else(|| name.clone(), |new| (*new).to_owned());
                rename_physical(&mut name, schema, table, &plan.renames);
                quote_ident(&name)
            };
            let mut columns = format!(
                "({})",
                (0..key_count)
                    .map(final_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if key_count < index.columns.len() {
                columns.push_str(&format!(
                    " INCLUDE ({})",
                    (key_count..index.columns.len())
                        .map(final_name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            constraint_on_partitions(
                (schema, table),
                partitioning,
                &new_name,
                &definition(true),
                (constraint, clause, &columns),
                &completed_table,
                &renamed_columns,
            )
            .map_err(refuse_problem)?
        }
        (Some(partitioning), None) => (
            index_on_partitions(
                (schema, table),
                partitioning,
                &new_name,
                unique,
                &definition(true),
            )
            .map_err(refuse_problem)?,
            vec![rename_to_old(&index.name, schema, &new_name)],
        ),
        (None, constraint) => {
            let undo = Step::new(
                format!("drop {new_name}, the rebuilt {}", index.name),
                format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {}",
                    quote_qualified(schema, &new_name)
                ),
            );
            let build = Step::new(
                format!(
                    "rebuild index {} on the new version's column(s) for {}, without blocking writes",
                    index.name,
                    over.join(", ")
                ),
                format!(
                    "CREATE {unique}INDEX CONCURRENTLY {} ON {qualified_table} {}",
                    quote_ident(&new_name),
                    definition(true)
                ),
            )
            .clearing(undo.sql.clone());
            let contract = match constraint {
                // The new column is NOT NULL by now (its validated check spared the scan), so
                // the primary key takes the index without reading the table.
                Some((constraint, kind, _)) => {
                    let (what, clause) = if kind == "p" {
                        ("primary key", "PRIMARY KEY")
                    } else {
                        ("unique constraint", "UNIQUE")
                    };
                    Step::new(
                        format!("{what} {constraint} on the rebuilt index"),
                        format!(
                            "ALTER TABLE {completed_table} ADD CONSTRAINT {} {clause} USING INDEX {}",
                            quote_ident(constraint),
                            quote_ident(&new_name),
                        ),
                    )
                }
                None => rename_to_old(&index.name, schema, &new_name),
            };
            (
                PartitionBuilds {
                    concurrent: vec![build],
                    rollback: vec![undo],
                    built: vec![(schema.to_owned(), new_name.clone())],
                    ..PartitionBuilds::default()
                },
                vec![contract],
            )
        }
    };
    // A constraint's index takes the constraint's name, which was the old index's.
    let final_name = match &index.constraint {
        Some((constraint, ..)) => constraint.clone(),
        None => index.name.clone(),
    };
    // A partitioned table's constraint renames its partitions' indexes' columns (above), its
    // own being made with the final names; any other index's are renamed under its final name.
    if partitioning.is_none() || index.constraint.is_none() {
        contract.extend(column_steps(schema, &final_name, &renamed_columns));
    }
    if index.replica_identity {
        contract.push(Step::new(
            format!("replica identity of {table} by {final_name} again"),
            format!(
                "ALTER TABLE {completed_table} REPLICA IDENTITY USING INDEX {}",
                quote_ident(&final_name)
            ),
        ));
    }
    if index.clustered {
        contract.push(Step::new(
            format!("cluster {table} on {final_name} again"),
            format!(
                "ALTER TABLE {completed_table} CLUSTER ON {}",
                quote_ident(&final_name)
            ),
        ));
    }
    Ok(Some(Rebuild {
        expand: vec![probe_build],
        concurrent,
        complete: contract,
        ..Rebuild::default()
    }))
}
