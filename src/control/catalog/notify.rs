//! Announcing a change to every proxy: NOTIFY on the control channel, inside the change's
//! transaction so a rolled-back change is never announced.

use tokio_postgres::GenericClient;

use crate::control::error::ControlError;
use crate::model::channel::CONTROL_CHANNEL;

/// Tells every listening proxy that versions changed. Sent inside the caller's transaction, so
/// Postgres delivers it only if that transaction commits. The payload is JSON, e.g.
/// `{"action":"apply","versions":["v2"]}`.
pub async fn notify_change(
    client: &impl GenericClient,
    action: &str,
    versions: &[String],
) -> Result<(), ControlError> {
    let payload = serde_json::json!({ "action": action, "versions": versions }).to_string();
    client
        .execute("SELECT pg_notify($1, $2)", &[&CONTROL_CHANNEL, &payload])
        .await
        .map_err(|error| ControlError::database("notifying proxies", &error))?;
    Ok(())
}
