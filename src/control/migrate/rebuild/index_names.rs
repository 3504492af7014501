//! The names the contract gives a rebuilt index back: the old index's own, and its columns'.
//!
//! Postgres names an index's columns after the table's columns when it builds the index, and
//! never renames them (a column's `RENAME COLUMN` leaves the index's as it was). A rebuilt
//! index is built over the column that replaces the old one, `_vg_<version>_<column>`, so
//! after the contract renamed that column to the old name the index still showed the
//! migration's name for good (`\d orders_pkey`: `Column _vg_v2_id | Definition id`, where the
//! same index made by hand shows `id`): psql, DBeaver and whatever reads the index's
//! `pg_attribute` saw it, on every retyped key. So the contract renames them too, to what a
//! fresh `CREATE INDEX` over the renamed column would call them.
//!
//! Only the column named exactly as the replacement column is renamed, to the column's final
//! name: Postgres names an expression `expr` or after its function (`lower`), which no rename
//! changes, and a second column of the same name `<name>1`. An index naming the replaced
//! column twice (`(id, (id::text))`) keeps `_vg_<version>_id1` for the second: numbering it as
//! Postgres would needs the names it gave each expression, which the plan does not know when
//! it is made, and a guessed name could be another column's. Where the final name is taken
//! by another column of the index when the contract runs (an expression Postgres named so),
//! or no column has the replacement's name, the step is skipped: it is only a name, and never
//! worth failing the contract for.
//!
//! No new lock: these steps run after the contract's transaction has dropped the old column
//! and renamed the new one (`ALTER TABLE … DROP COLUMN`, `RENAME COLUMN`: ACCESS EXCLUSIVE on
//! the table and, recursing, on each partition), having locked the tables so before its first
//! statement (`lock_order.rs`); renaming an index's column takes ACCESS EXCLUSIVE on the index
//! alone (and on each index attached to a partitioned one), which no session takes without a
//! lock on its table first.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use crate::control::error::ControlError;
use crate::control::migrate::derive::{IndexColumnRename, Rename, Step, rename_physical};
use crate::control::quote::{quote_ident, quote_qualified};

/// The contract's step giving the rebuilt index `new_name` the old one's name, `old_name`.
pub(super) fn rename_to_old(old_name: &str, schema: &str, new_name: &str) -> Step {
    Step::new(
        format!("give the rebuilt index its old name, {old_name}"),
        format!(
            "ALTER INDEX {} RENAME TO {}",
            quote_qualified(schema, new_name),
            quote_ident(old_name)
        ),
    )
}

/// The columns of the index rebuilt from one over `columns` (per column, the table's column
/// it is, or empty for an expression) whose columns were named `names`, that the contract
/// renames (from, to): for each old column it names that `substitutes` replaces, the
/// replacement's name, to the name `renames` give the replacement at the contract. An old
/// column is named so as a key or INCLUDE column, or as an expression Postgres names after
/// it (`(id)::text`, which the old index's column shows by the old column's name).
pub(super) fn renamed_columns(
    (columns, names): (&[String], &[String]),
    substitutes: &BTreeMap<&str, &str>,
    (schema, table): (&str, &str),
    renames: &[Rename],
) -> Vec<(String, String)> {
    substitutes
        .iter()
        .filter(|(old, _)| {
            columns.iter().enumerate().any(|(position, column)| {
                column == *old
                    || (column.is_empty() && names.get(position).is_some_and(|name| name == *old))
            })
        })
        .filter_map(|(_, new)| {
            let mut final_name = (*new).to_owned();
            rename_physical(&mut final_name, schema, table, renames);
            (final_name != *new).then(|| ((*new).to_owned(), final_name))
        })
        .collect()
}

/// The contract's steps renaming the columns `renamed` (from, to) of index `schema.index`
/// (on a partitioned index, Postgres renames them on each index attached to it too).
pub(super) fn column_steps(schema: &str, index: &str, renamed: &[(String, String)]) -> Vec<Step> {
    renamed
        .iter()
        .map(|(from, to)| Step::renaming_index_column(schema, index, from, to))
        .collect()
}

/// Why `step`, renaming an index's column, is skipped, if it is: the index (or one attached
/// to it, which Postgres renames it on too) has no column of the old name, or one of the new.
pub async fn index_column_kept(
    client: &impl GenericClient,
    step: &Step,
) -> Result<Option<String>, ControlError> {
    let Some(IndexColumnRename {
        index: (schema, index),
        from,
        to,
    }) = &step.renames_index_column
    else {
        return Ok(None);
    };
    let rows = client
        .query(
            "WITH i AS (SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text)) AS oid),
                  tree AS (SELECT t.relid FROM i, pg_catalog.pg_partition_tree(i.oid) t
                           UNION SELECT oid FROM i WHERE oid IS NOT NULL)
             SELECT tree.relid::regclass::text,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = tree.relid AND a.attname = $3),
                    EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = tree.relid AND a.attname = $4)
               FROM tree",
            &[schema, index, from, to],
        )
        .await
        .map_err(|error| {
            ControlError::database(format!("reading the columns of index {schema}.{index}"), &error)
        })?;
    let why = if rows.is_empty() {
        Some(format!("there is no index {schema}.{index}"))
    } else {
        rows.iter().find_map(|row| {
            let (relation, has_from, has_to): (String, bool, bool) =
                (row.get(0), row.get(1), row.get(2));
            if !has_from {
                Some(format!("index {relation} has no column {from}"))
            } else if has_to {
                Some(format!("index {relation} has a column {to} already"))
            } else {
                None
            }
        })
    };
    Ok(why.map(|why| format!("skipped ({why}): {}", step.description)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn renamed(from: &str, to: &str) -> Rename {
        Rename::Column {
            schema: "public".into(),
            table: "orders".into(),
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn a_column_named_after_the_replaced_one_takes_its_final_name() {
        let substitutes = BTreeMap::from([("id", "_vg_v2_id"), ("size", "_vg_v2_size")]);
        let renames = [renamed("_vg_v2_id", "id"), renamed("_vg_v2_size", "weight")];
        let table = ("public", "orders");
        let columns = |columns: &[&str], names: &[&str]| {
            renamed_columns(
                (&strings(columns), &strings(names)),
                &substitutes,
                table,
                &renames,
            )
        };
        let id = || ("_vg_v2_id".to_owned(), "id".to_owned());
        // A key or INCLUDE column, beside another column.
        assert_eq!(columns(&["name", "id"], &["name", "id"]), [id()]);
        // Renamed by the operation too (`rename_to`): the name it has at the end.
        assert_eq!(
            columns(&["size", "id"], &["size", "id"]),
            [id(), ("_vg_v2_size".into(), "weight".into())]
        );
        // An expression Postgres named after the column, or after anything else.
        assert_eq!(columns(&[""], &["id"]), [id()]);
        assert!(columns(&["", ""], &["expr", "lower"]).is_empty());
        // Not renamed by the contract: nothing to follow.
        assert!(
            renamed_columns(
                (&strings(&["id"]), &strings(&["id"])),
                &substitutes,
                table,
                &[]
            )
            .is_empty()
        );
    }
}
