//! Statements that make Postgres itself report a viewgate error.
//!
//! When the proxy refuses a statement (an unknown version, a statement it cannot rewrite
//! safely), it sends Postgres a statement that raises the error instead. The error then comes
//! back in its proper place in the response stream, with the transaction aborted exactly as any
//! other error would abort it, for the simple and the extended protocol alike. Text that may
//! come from a client travels hex-encoded, so nothing a client sends is ever pasted into SQL.

use crate::protocol::sqlstate::SqlState;
use crate::rewriter::VersionTargets;
use crate::rewriter::rewrite::contains_ignore_ascii_case;

/// What a Parse that viewgate refuses is replaced by: Postgres fails it at once (42601,
/// `syntax error at or near "viewgate_refused_statement"`), so the Bind, Describe and
/// Execute after it are skipped up to the Sync, as after any failed Parse; the session puts
/// the refusal's own ErrorResponse in place of that syntax error. (A DO block raising the
/// error, as for a Query, would fail at Bind instead whenever the client binds parameters:
/// 08P01, "bind message supplies 1 parameters, but prepared statement requires 0".)
pub const REFUSED_PARSE: &str = "viewgate_refused_statement";

/// A statement viewgate refuses: the SQLSTATE and message the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: SqlState,
    pub message: String,
}

impl Refusal {
    /// For a statement the rewriter cannot read (not UTF-8, or not ASCII in another
    /// client_encoding: `foreign`) at `targets`' version: a refusal if it mentions a managed
    /// table, since forwarding it would read the base table; `None` (forward it) otherwise.
    pub fn unreadable(targets: &VersionTargets, bytes: &[u8], foreign: bool) -> Option<Self> {
        targets
            .table_names()
            .any(|name| contains_ignore_ascii_case(bytes, name.as_bytes()))
            .then(|| {
                let why = if foreign {
                    "it has non-ASCII characters and the session's client_encoding is not UTF8"
                } else {
                    "it is not valid UTF-8"
                };
                Refusal::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    format!(
                        "viewgate cannot rewrite this statement for version {}: {why}; set client_encoding to UTF8",
                        targets.version
                    ),
                )
            })
    }

    pub fn new(code: SqlState, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// The statement that makes Postgres raise it (for a Query).
    pub fn statement(&self) -> String {
        raise_statement(self.code, &self.message)
    }
}

/// A DO block raising `message` with SQLSTATE `code`.
pub fn raise_statement(code: SqlState, message: &str) -> String {
    format!(
        "DO $viewgate$BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = {}; END$viewgate$",
        text_expression(message)
    )
}

/// A SELECT returning `value` as one text column named `column` (for `SHOW viewgate.version`).
pub fn select_text(column: &str, value: &str) -> String {
    format!(
        "SELECT {} AS \"{}\"",
        text_expression(value),
        column.replace('"', "\"\"")
    )
}

/// A SQL expression evaluating to `text`, built from hex digits only.
pub(crate) fn text_expression(text: &str) -> String {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    format!("convert_from(decode('{hex}', 'hex'), 'UTF8')")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_never_appears_in_the_sql() {
        let hostile = "x'); DROP TABLE t; --$viewgate$";
        let sql = raise_statement(SqlState::INVALID_PARAMETER_VALUE, hostile);
        assert!(!sql.contains("DROP"));
        assert!(sql.contains("ERRCODE = '22023'"));
        assert!(!select_text("viewgate.version", hostile).contains("DROP"));
    }
}
