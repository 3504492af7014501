//! The history of every change to the catalog (`viewgate.apply_history`): who did what, when,
//! how long it took, and whether it worked.

use std::time::Duration;

use tokio_postgres::GenericClient;

use crate::control::error::ControlError;

/// One row of `viewgate.apply_history`.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub action: &'static str,
    pub success: bool,
    pub spec_file: Option<String>,
    pub spec_checksum: Option<String>,
    pub versions: Vec<String>,
    pub duration: Duration,
    pub attempts: u32,
    pub error: Option<String>,
}

impl HistoryEntry {
    /// A successful control-plane event that applied no spec (init, cutover, route, guard,
    /// upstream): one attempt, no error.
    pub fn event(action: &'static str, versions: Vec<String>, duration: Duration) -> Self {
        HistoryEntry {
            action,
            success: true,
            spec_file: None,
            spec_checksum: None,
            versions,
            duration,
            attempts: 1,
            error: None,
        }
    }
}

/// Appends one row to `viewgate.apply_history`; `started_at` is now minus the duration.
pub async fn record_history(
    client: &impl GenericClient,
    entry: &HistoryEntry,
) -> Result<(), ControlError> {
    let duration_ms = i64::try_from(entry.duration.as_millis()).unwrap_or(i64::MAX);
    let attempts = i32::try_from(entry.attempts).unwrap_or(i32::MAX);
    client
        .execute(
            "INSERT INTO viewgate.apply_history
               (action, success, spec_file, spec_checksum, versions, started_at, duration_ms,
                attempts, error)
             VALUES ($1, $2, $3, $4, $5, clock_timestamp() - make_interval(secs => $6::bigint / 1000.0),
                     $6, $7, $8)",
            &[
                &entry.action,
                &entry.success,
                &entry.spec_file,
                &entry.spec_checksum,
                &entry.versions,
                &duration_ms,
                &attempts,
                &entry.error,
            ],
        )
        .await
        .map_err(|error| ControlError::database("recording apply history", &error))?;
    Ok(())
}
