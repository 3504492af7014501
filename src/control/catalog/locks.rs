//! The catalog's locks: the advisory apply lock every catalog-changing command takes (so two
//! applies, or an apply and a drop, never interleave) and the transaction's `lock_timeout`.

use std::time::Duration;

use tokio_postgres::GenericClient;

use crate::control::error::ControlError;

/// Key of the transaction-level advisory lock every catalog-changing command takes, so two
/// applies (or an apply and a drop) never interleave. The bytes spell "viewgate".
pub const APPLY_LOCK_KEY: i64 = 0x7669_6577_6761_7465;

/// Sets `lock_timeout` for the current transaction only.
pub async fn set_local_lock_timeout(
    client: &impl GenericClient,
    lock_timeout: Duration,
) -> Result<(), ControlError> {
    let value = format!("{}ms", lock_timeout.as_millis());
    client
        .execute("SELECT set_config('lock_timeout', $1, true)", &[&value])
        .await
        .map_err(|error| ControlError::database("setting lock_timeout", &error))?;
    Ok(())
}

/// Takes the apply lock for this transaction, or fails at once if another session has it.
pub async fn try_apply_lock(client: &impl GenericClient) -> Result<(), ControlError> {
    let row = client
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&APPLY_LOCK_KEY])
        .await
        .map_err(|error| ControlError::database("taking the viewgate apply lock", &error))?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(ControlError::ApplyInProgress)
    }
}

/// Takes the apply lock for this transaction, waiting at most `lock_timeout`.
pub async fn wait_apply_lock(client: &impl GenericClient) -> Result<(), ControlError> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&APPLY_LOCK_KEY])
        .await
        .map_err(|error| ControlError::database("waiting for the viewgate apply lock", &error))?;
    Ok(())
}
