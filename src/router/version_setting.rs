//! The statement that keeps `viewgate.version` set in a session's upstream connection.
//!
//! Migrations' sync triggers tell writers apart by this setting, so the proxy sets it before a
//! session's first statement at a new version. The version name comes from the catalog, which
//! more roles may be able to write than should be able to run SQL in every session (the
//! CVE-2025-12819 class: a name pasted into internal SQL). So the name travels escaped, each
//! character a `\u` / `\U` escape of an `E'…'` string, as client texts travel hex-encoded in
//! `raise`: the statement is ASCII whatever the name holds, means the same under every
//! `client_encoding` and `standard_conforming_strings`, and no name can end a literal or add a
//! statement. A plain `SET`, whose only answer is CommandComplete (the relay drops it), and
//! which takes no snapshot: a DO block waited for a safe snapshot in a session whose
//! transactions default to SERIALIZABLE READ ONLY DEFERRABLE, and a statement_timeout then
//! failed it (the sixteenth red-team pass kept the server at another version so).

/// Sets `viewgate.version` to `version` for the session (not only the transaction).
pub fn set_version_statement(version: &str) -> String {
    let mut literal = String::with_capacity(6 * version.len() + 3);
    literal.push_str("E'");
    for c in version.chars() {
        match u32::from(c) {
            small @ ..=0xFFFF => literal.push_str(&format!("\\u{small:04x}")),
            large => literal.push_str(&format!("\\U{large:08x}")),
        }
    }
    literal.push('\'');
    format!("SET viewgate.version = {literal}")
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
            "v1\u{1F600}'",
        ] {
            let sql = set_version_statement(hostile);
            assert!(!sql.contains("DROP"), "{sql}");
            assert!(sql.is_ascii(), "{sql}");
            assert_eq!(sql.matches('\'').count(), quotes, "{sql}");
        }
        assert_eq!(
            set_version_statement("v1"),
            r"SET viewgate.version = E'\u0076\u0031'"
        );
    }
}
