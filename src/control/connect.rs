//! Connecting the control commands to Postgres, named so `apply_history` shows who ran them.

use tokio_postgres::Client;

use super::error::ControlError;
use crate::net::conninfo::redact;
use crate::net::postgres_error::describe_postgres_error;
use crate::net::postgres_tls::{PostgresTarget, error_text};

/// `application_name` the control commands use unless the URL sets one.
pub const APPLICATION_NAME: &str = "viewgate";

/// Connects to `database` (a libpq URL or key=value string) with TLS as its `sslmode` says
/// (`net::postgres_tls`); the connection is driven by a background task that ends when the
/// client is dropped.
pub async fn connect(database: &str) -> Result<Client, ControlError> {
    let connect_error = |message: String| ControlError::Connect {
        target: redact(database),
        message,
    };
    let mut target =
        PostgresTarget::parse(database).map_err(|error| connect_error(error.to_string()))?;
    if target.config().get_application_name().is_none() {
        target.config_mut().application_name(APPLICATION_NAME);
    }
    let (client, connection) = target.connect().await.map_err(|error| {
        let mut message = match error.as_db_error() {
            Some(_) => describe_postgres_error(&error),
            None => error_text(&error),
        };
        if let Some(hint) = target.hint(&error) {
            message.push_str(&format!("; hint: {hint}"));
        }
        connect_error(message)
    })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "control connection ended with an error");
        }
    });
    Ok(client)
}
