//! How an error Postgres reported reads in viewgate's messages: the server's own message with
//! its SQLSTATE, detail and hint. Shared by the control plane and the catalog reads.

/// Postgres's own message with its SQLSTATE, detail and hint, as a user would want to read it.
pub fn describe_postgres_error(error: &tokio_postgres::Error) -> String {
    describe(error, None)
}

/// Postgres's message with its SQLSTATE and detail, and `hint` in place of its own: where
/// Postgres's hint names a remedy the caller cannot take (`Use DROP ... CASCADE` to a
/// migration, which never cascades).
pub fn describe_postgres_error_hinting(error: &tokio_postgres::Error, hint: &str) -> String {
    describe(error, Some(hint))
}

fn describe(error: &tokio_postgres::Error, hint_instead: Option<&str>) -> String {
    let Some(db) = error.as_db_error() else {
        return error.to_string();
    };
    let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        text.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = hint_instead.or(db.hint()) {
        text.push_str(&format!("; hint: {hint}"));
    }
    text
}
