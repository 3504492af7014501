//! Connection strings in messages, logs and the catalog, without their passwords: a libpq URL
//! or keyword/value string (`redact`, masking the password) and an upstream URL
//! (`without_password`, dropping it).

/// The URL with any password removed, for logs, reports and the catalog.
pub fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The connection string without its password, for messages.
pub fn redact(database: &str) -> String {
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

    #[test]
    fn passwords_are_removed_from_reported_urls() {
        assert_eq!(
            without_password("postgres://app:secret@db:5432/x?sslmode=require"),
            "postgres://app@db:5432/x?sslmode=require"
        );
        assert_eq!(without_password("postgres://db:5432"), "postgres://db:5432");
    }
}
