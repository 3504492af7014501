//! Announcing a change to every proxy: NOTIFY on the control channel, inside the change's
//! transaction so a rolled-back change is never announced, and one more in the catalog's count
//! of changes, which the proxies report loading (`control::proxies_loaded` waits for them).

use tokio_postgres::GenericClient;

use crate::control::error::ControlError;
use crate::model::channel::CONTROL_CHANNEL;

/// Tells every listening proxy that versions changed. Sent inside the caller's transaction, so
/// Postgres delivers it only if that transaction commits. The payload is JSON, e.g.
/// `{"action":"apply","versions":["v2"]}`.
///
/// Call it last before COMMIT: counting the change locks the count's one row until the
/// transaction ends, which orders the counts as the commits.
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
    count_change(client).await
}

/// Increments `viewgate.catalog_change`. A catalog made before it has no count to keep, and a
/// role the catalog's owner granted only the older tables to cannot keep it (commands then do
/// not wait for the proxies): neither stops the change.
async fn count_change(client: &impl GenericClient) -> Result<(), ControlError> {
    let context = "counting the change for the proxies to report";
    let counted: bool = client
        .query_one(
            "SELECT coalesce(has_table_privilege(to_regclass('viewgate.catalog_change'), 'UPDATE'), false)",
            &[],
        )
        .await
        .map_err(|error| ControlError::database(context, &error))?
        .get(0);
    if counted {
        client
            .execute(
                "UPDATE viewgate.catalog_change SET change = change + 1",
                &[],
            )
            .await
            .map_err(|error| ControlError::database(context, &error))?;
    }
    Ok(())
}
