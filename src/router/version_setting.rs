//! The statement that keeps `viewgate.version` set in a session's upstream connection.
//!
//! Migrations' sync triggers tell writers apart by this setting, so the proxy sets it before a
//! session's first statement at a new version. The version name comes from the catalog, which
//! more roles may be able to write than should be able to run SQL in every session (the
//! CVE-2025-12819 class: a name pasted into internal SQL). So the name travels hex-encoded, as
//! every client text in `raise` does: the statement is ASCII whatever the name holds, means the
//! same under every `client_encoding` and `standard_conforming_strings`, and no name can end a
//! literal or add a statement. A DO block rather than `SELECT set_config(…)` because its only
//! answer is CommandComplete, which the relay drops, so the client sees nothing of it.

use super::raise::text_expression;

/// Sets `viewgate.version` to `version` for the session (not only the transaction), as
/// `SET viewgate.version TO …` would.
pub fn set_version_statement(version: &str) -> String {
    format!(
        "DO $viewgate$BEGIN PERFORM pg_catalog.set_config('viewgate.version', {}, false); END$viewgate$",
        text_expression(version)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_never_appears_in_the_sql() {
        let quotes = set_version_statement("v1").matches('\'').count();
        for hostile in [
            "v1'; DROP TABLE t; --",
            "v1$viewgate$; DROP TABLE t; --",
            "v1\\'; DROP TABLE t; --",
            "v1\u{5c}\u{27}ü",
        ] {
            let sql = set_version_statement(hostile);
            assert!(!sql.contains("DROP"), "{sql}");
            assert!(sql.is_ascii(), "{sql}");
            assert_eq!(sql.matches('\'').count(), quotes, "{sql}");
        }
    }
}
