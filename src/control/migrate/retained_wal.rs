//! Replication slots nobody reads, which would keep the backfill's WAL on disk.
//!
//! A backfill rewrites every row of its table, and the WAL that writes (about the table and
//! its indexes again, more with full-page images) is kept by every replication slot until
//! the slot's consumer reads past it. A slot whose consumer is gone (a standby taken down, a
//! CDC connector stopped, a test subscription forgotten) reads nothing, and with
//! `max_slot_wal_keep_size` unlimited (Postgres's default) Postgres keeps every segment for it:
//! a disk that fills stops the whole database, every application with it. So `migrate start`
//! (and `plan`) refuses, before any change, a migration that backfills while an inactive slot
//! holds WAL without bound, naming each slot and what it holds already, unless the file's
//! `inactive_slots_ok = true` says the disk has room; and so does a start resuming a killed
//! backfill, before it goes on. A bound on what slots keep lets the migration run: past it,
//! Postgres gives up the slot rather than the disk.

use tokio_postgres::GenericClient;

use super::derive::MigrationPlan;
use super::error::MigrateError;
use crate::control::error::ControlError;

/// Most slots a refusal names, so that a cluster with many stays readable.
const MAX_SLOTS_NAMED: usize = 5;

/// Refuses `plan` if it backfills while an inactive replication slot keeps WAL without bound,
/// unless `inactive_slots_ok`.
pub async fn refuse_unread_slots(
    client: &impl GenericClient,
    plan: &MigrationPlan,
    inactive_slots_ok: bool,
) -> Result<(), MigrateError> {
    if inactive_slots_ok || plan.backfills.is_empty() {
        return Ok(());
    }
    let reading = |error: tokio_postgres::Error| {
        MigrateError::Control(ControlError::database(
            "reading the replication slots",
            &error,
        ))
    };
    let unbounded: bool = client
        .query_one(
            "SELECT pg_catalog.current_setting('max_slot_wal_keep_size') = '-1'",
            &[],
        )
        .await
        .map_err(reading)?
        .get(0);
    if !unbounded {
        return Ok(());
    }
    let slots: Vec<String> = client
        .query(
            "SELECT pg_catalog.format('%s (%s%s, inactive, keeping %s of WAL)', s.slot_name,
                        s.slot_type,
                        CASE WHEN s.database IS NOT NULL THEN ' on ' || s.database END,
                        pg_catalog.pg_size_pretty(pg_catalog.pg_wal_lsn_diff(
                            pg_catalog.pg_current_wal_lsn(), s.restart_lsn)))
               FROM pg_catalog.pg_replication_slots s
              WHERE NOT s.active AND s.restart_lsn IS NOT NULL
                AND s.wal_status IS DISTINCT FROM 'lost'
              ORDER BY pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)
                       DESC, s.slot_name",
            &[],
        )
        .await
        .map_err(reading)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if slots.is_empty() {
        return Ok(());
    }
    let mut tables = Vec::new();
    for backfill in &plan.backfills {
        let size: String = client
            .query_one(
                "SELECT pg_catalog.pg_size_pretty(pg_catalog.pg_total_relation_size(
                        pg_catalog.format('%I.%I', $1::text, $2::text)::regclass))",
                &[&backfill.schema, &backfill.table],
            )
            .await
            .map_err(reading)?
            .get(0);
        tables.push(format!(
            "{}.{} ({size} with its indexes)",
            backfill.schema, backfill.table
        ));
    }
    let named = slots.len().min(MAX_SLOTS_NAMED);
    let more = match slots.len() - named {
        0 => String::new(),
        others => format!(" and {others} more"),
    };
    Err(MigrateError::Unsafe {
        version: plan.version.clone(),
        table: tables.join(", "),
        objects: format!("replication slot {}{more}", slots[..named].join(", ")),
        problem: "the backfill rewrites every row, writing about as much WAL again, and with `max_slot_wal_keep_size` unlimited Postgres keeps every segment of it for a slot until its consumer reads past it: a disk that fills stops the database".into(),
        remedy: "start the slot's consumer (a standby, a CDC connector), drop the slot if nothing will read it (`SELECT pg_drop_replication_slot('<slot>')`), or bound what slots keep (`ALTER SYSTEM SET max_slot_wal_keep_size = '<size>'`, then `SELECT pg_reload_conf()`); or, if the disk has room for it, set `inactive_slots_ok = true` in the file's [settings]".into(),
    })
}
