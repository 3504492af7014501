//! Connecting the control commands to Postgres, named so `apply_history` shows who ran them.

use tokio_postgres::Client;

use super::error::ControlError;
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
            Some(_) => super::error::describe_postgres_error(&error),
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

/// The connection string without its password, for messages.
fn redact(database: &str) -> String {
    match url::Url::parse(database) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => database
            .split_whitespace()
            .map(|pair| {
                if pair.starts_with("password=") {
                    "password=***"
                } else {
                    pair
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("host=db password=secret"), "host=db password=***");
    }
}
