//! The replica identity the contract would take away, refused before any change.
//!
//! A table's replica identity is how logical replication names the row an UPDATE or DELETE
//! changes: its primary key (`DEFAULT`), or a unique index chosen with `REPLICA IDENTITY USING
//! INDEX`. Postgres drops that index with a column it covers, or by `DROP INDEX` or `DROP
//! CONSTRAINT`, without a word, and the table is left with none: where a publication publishes
//! its updates or deletes, every UPDATE and DELETE of it fails from then on (`cannot update
//! table "t" because it does not have a replica identity and publishes updates`, 55000, seen on
//! 15 after a `DROP COLUMN`), and a subscriber can no longer find the rows it is sent. So the
//! contract's drop of a column the chosen index covers, or of the index or its constraint, is
//! refused; and of the primary key of a table published or subscribed that has no other
//! identity. Checked by `migrate start` (and `plan`), and again by `migrate complete`.

use tokio_postgres::GenericClient;

use super::derive::{Dropped, MigrationPlan};
use super::error::MigrateError;
use crate::control::error::ControlError;

/// Refuses `plan` while its contract would drop the index a table's replica identity rests on.
pub async fn refuse_lost_replica_identity(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    for dropped in &plan.dropped {
        let (kind, schema, table, name, why) = match dropped {
            Dropped::Column {
                schema,
                table,
                column,
            } => (
                "column",
                schema,
                table.as_str(),
                column,
                format!("drop_column {column}"),
            ),
            Dropped::Index { schema, name } => {
                ("index", schema, "", name, format!("drop_index {name}"))
            }
            Dropped::Constraint {
                schema,
                table,
                name,
            } => (
                "constraint",
                schema,
                table.as_str(),
                name,
                format!("drop_constraint {name}"),
            ),
            Dropped::Table { .. } => continue,
        };
        let row = client
            .query_opt(
                "SELECT pg_catalog.format('%I.%I', tn.nspname, t.relname),
                        ic.relname::text, i.indisreplident
                   FROM pg_catalog.pg_index i
                   JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
                   JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
                   JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                   JOIN pg_catalog.pg_namespace icn ON icn.oid = ic.relnamespace
                  WHERE CASE $1
                        WHEN 'column' THEN tn.nspname = $2 AND t.relname = $3
                             AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                          WHERE a.attrelid = t.oid AND a.attname = $4
                                            AND NOT a.attisdropped
                                            AND a.attnum = ANY (i.indkey::int2[]))
                        WHEN 'index' THEN icn.nspname = $2 AND ic.relname = $4
                        ELSE tn.nspname = $2 AND t.relname = $3
                             AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                                          WHERE k.conrelid = t.oid AND k.conname = $4
                                            AND k.conindid = i.indexrelid)
                        END
                    AND (i.indisreplident OR (
                         i.indisprimary AND t.relreplident = 'd'
                         AND (EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables pt
                                        JOIN pg_catalog.pg_publication p
                                          ON p.pubname = pt.pubname
                                       WHERE pt.schemaname = tn.nspname
                                         AND pt.tablename = t.relname
                                         AND (p.pubupdate OR p.pubdelete))
                              OR EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel s
                                          WHERE s.srrelid = t.oid))))
                  LIMIT 1",
                &[&kind, schema, &table, name],
            )
            .await
            .map_err(|error| {
                ControlError::database(
                    format!("reading the replica identity {why} would take away"),
                    &error,
                )
            })?;
        let Some(row) = row else {
            continue;
        };
        let (table, index, chosen): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        let identity = if chosen {
            format!("index {index} is its replica identity (REPLICA IDENTITY USING INDEX)")
        } else {
            format!(
                "index {index}, its primary key, is its replica identity, and a publication publishes its updates or deletes, or a subscription fills it"
            )
        };
        return Err(MigrateError::Unsafe {
            version: plan.version.clone(),
            table: table.clone(),
            objects: identity,
            problem: format!(
                "`migrate complete` would drop the index ({why}), and Postgres then leaves the table without a replica identity: where it is published, every UPDATE and DELETE of it fails from then on (55000), and a subscriber cannot find the rows it is sent"
            ),
            remedy: format!(
                "give the table another replica identity first (`ALTER TABLE {table} REPLICA IDENTITY USING INDEX <another unique index of NOT NULL columns>`, or `FULL`), then start again; checked again at `migrate complete`"
            ),
        });
    }
    Ok(())
}
