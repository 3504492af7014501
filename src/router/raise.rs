//! Statements that make Postgres itself report a viewgate error.
//!
//! When the proxy refuses a statement (an unknown version, a statement it cannot rewrite
//! safely), it sends Postgres a statement that raises the error instead. The error then comes
//! back in its proper place in the response stream, with the transaction aborted exactly as any
//! other error would abort it, for the simple and the extended protocol alike. Text that may
//! come from a client travels hex-encoded, so nothing a client sends is ever pasted into SQL.

use crate::protocol::sqlstate::SqlState;
use crate::rewriter::VersionTargets;
use crate::rewriter::reading_settings;

/// What a Query or a Parse that viewgate refuses is replaced by: Postgres fails it at once
/// (42601, `syntax error at or near "viewgate_refused_statement"`), aborting the transaction
/// as any error does; after a Parse the Bind, Describe and Execute are skipped up to the
/// Sync, as after any failed Parse. The session puts the refusal's own ErrorResponse in place
/// of that syntax error. (A DO block raising the error would fail at Bind instead whenever
/// the client binds parameters: 08P01, "bind message supplies 1 parameters, but prepared
/// statement requires 0"; for a Query, its error carried PL/pgSQL's `CONTEXT:
/// PL/pgSQL function inline_code_block line 1 at RAISE`, which read as the server's own
/// failure. The DO block, [`Refusal::statement`], is left for a FunctionCall.)
pub const REFUSED_STATEMENT: &str = "viewgate_refused_statement";

/// How Postgres will read a backslash in the session's next `'…'` literal, as the session
/// follows `standard_conforming_strings` (reported in ParameterStatus whenever it changes).
/// viewgate's lexers read it as `On` does: a backslash is an ordinary character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConformingStrings {
    /// `standard_conforming_strings = on`: as viewgate reads it.
    On,
    /// `off`: `\'` inside `'…'` escapes the quote, so a string ends elsewhere than
    /// viewgate reads, and text it takes for a literal may be a reference.
    Off,
    /// Work sent before the statement is not answered yet and may change the setting (a
    /// pipelined `SET standard_conforming_strings = off`): Postgres reports the change only
    /// with that answer.
    Pending,
}

/// A statement viewgate refuses: the SQLSTATE and message the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: SqlState,
    pub message: String,
}

impl Refusal {
    /// For a statement from a session without a version that may set `viewgate.version` where
    /// the proxy does not follow it (`reading_settings::may_set_the_version`): the server
    /// would keep the value while the session goes on unversioned.
    pub fn unfollowed_version_change() -> Self {
        Refusal::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            "this statement may set viewgate.version where viewgate does not follow it (SET LOCAL, set_config, ALTER … SET, a spelling other than viewgate.version, or a function's or DO block's body); the session would stay without a version while the server reported one. Choose a version with SET viewgate.version = … alone, or in the connection's options".to_owned(),
        )
    }

    /// For a statement the rewriter cannot read (not UTF-8, or not ASCII in another
    /// client_encoding: `foreign`) at `targets`' version: a refusal if the rewriter would
    /// have read it (it may name a managed table, a catalog relation with a substitute, or
    /// hide a name: [`would_be_read`]), since forwarding it unread could read the base table
    /// or the real catalog; `None` (forward it, as the rewriter would) otherwise.
    pub fn unreadable(targets: &VersionTargets, bytes: &[u8], foreign: bool) -> Option<Self> {
        would_be_read(targets, bytes).then(|| {
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

    /// For a statement with a backslash while Postgres may read `'…'` literals otherwise than
    /// viewgate (`strings` is not [`ConformingStrings::On`]): a refusal if the rewriter would
    /// read it (the test [`Refusal::unreadable`] makes), since a backslash may end a literal
    /// where viewgate reads none and leave a reference unrewritten; `None` (read it as usual)
    /// otherwise. A statement without a backslash reads the same under either setting: the
    /// caller does not ask, nor does one whose backslashes are all in `E'…'` strings while the
    /// setting is only pending (`reading_settings::reads_alike_either_way`).
    pub fn backslashes(
        targets: &VersionTargets,
        bytes: &[u8],
        strings: ConformingStrings,
    ) -> Option<Self> {
        let why = match strings {
            ConformingStrings::On => return None,
            ConformingStrings::Off => {
                "it has a backslash and standard_conforming_strings is off, so Postgres may end a string literal where viewgate reads none; set standard_conforming_strings to on"
            }
            ConformingStrings::Pending if reading_settings::reads_alike_either_way(bytes) => {
                return None;
            }
            ConformingStrings::Pending => {
                "it has a backslash and a statement sent before it, not yet answered, may change standard_conforming_strings; send it once the earlier statements are answered, with standard_conforming_strings on"
            }
        };
        would_be_read(targets, bytes).then(|| {
            Refusal::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "viewgate cannot rewrite this statement for version {}: {why}",
                    targets.version
                ),
            )
        })
    }

    /// For any statement while the session has `standard_conforming_strings` off, at a
    /// version with managed tables: a refusal unless it only turns the setting back on
    /// (`rewriter::reading_settings`). A statement without a backslash reads the same either
    /// way, but a function it calls is compiled with the setting as it is, and its body was
    /// judged with it on.
    pub fn nonconforming(targets: &VersionTargets, sql: Option<&str>) -> Option<Self> {
        if targets.managed().is_empty()
            || sql.is_some_and(reading_settings::restores_conforming_strings)
        {
            return None;
        }
        Some(Refusal::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "viewgate serves version {} only with standard_conforming_strings on, as PostgreSQL has it by default: with it off, a string literal may end where viewgate reads none; run SET standard_conforming_strings = on (and write E'…' where a backslash escapes)",
                targets.version
            ),
        ))
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

/// Whether the rewriter would read `bytes` rather than forward them untouched: its fast
/// path's test (a managed table's name, a catalog relation it substitutes, a mark, or a
/// spelling that may hide a name), made on bytes.
fn would_be_read(targets: &VersionTargets, bytes: &[u8]) -> bool {
    targets.mention_scan().found_in(bytes)
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
    fn with_strings_off_only_turning_them_on_is_forwarded() {
        let targets = VersionTargets::seed_example("v1");
        for sql in [
            "SELECT 1",
            "SELECT f()",
            "DO 'BEGIN RAISE NOTICE ''%'', 1; END'",
            "SET standard_conforming_strings = on; SELECT 'a\\' AS x",
            // Back to the login's value, which may be the role's off.
            "RESET ALL",
        ] {
            let refusal = Refusal::nonconforming(&targets, Some(sql)).unwrap();
            assert_eq!(refusal.code, SqlState::FEATURE_NOT_SUPPORTED);
            assert!(
                refusal
                    .message
                    .contains("SET standard_conforming_strings = on")
            );
        }
        assert!(Refusal::nonconforming(&targets, None).is_some());
        for sql in [
            "SET standard_conforming_strings = on",
            "SET standard_conforming_strings TO true; SHOW standard_conforming_strings",
        ] {
            assert_eq!(Refusal::nonconforming(&targets, Some(sql)), None);
        }
        // A version with no managed tables reads nothing, whatever the setting.
        let empty = VersionTargets::new("v0", Vec::new());
        assert_eq!(Refusal::nonconforming(&empty, Some("SELECT 1")), None);
    }

    #[test]
    fn client_text_never_appears_in_the_sql() {
        let hostile = "x'); DROP TABLE t; --$viewgate$";
        let sql = raise_statement(SqlState::INVALID_PARAMETER_VALUE, hostile);
        assert!(!sql.contains("DROP"));
        assert!(sql.contains("ERRCODE = '22023'"));
        assert!(!select_text("viewgate.version", hostile).contains("DROP"));
    }

    /// The red team's statement: with standard_conforming_strings off, Postgres reads
    /// `model_type FROM model_metadata` outside any literal.
    const SMUGGLED: &str = "SELECT 'x\\' AS a, ' AS b, model_type FROM model_metadata -- '";

    #[test]
    fn a_backslash_near_a_managed_table_is_refused_unless_strings_conform() {
        let targets = VersionTargets::seed_example("v1");
        assert_eq!(
            Refusal::backslashes(&targets, SMUGGLED.as_bytes(), ConformingStrings::On),
            None
        );
        for (strings, advice) in [
            (
                ConformingStrings::Off,
                "set standard_conforming_strings to on",
            ),
            (
                ConformingStrings::Pending,
                "once the earlier statements are answered",
            ),
        ] {
            let refusal = Refusal::backslashes(&targets, SMUGGLED.as_bytes(), strings).unwrap();
            assert_eq!(refusal.code, SqlState::FEATURE_NOT_SUPPORTED);
            assert!(
                refusal.message.contains(advice) && refusal.message.contains("version v1"),
                "{refusal:?}"
            );
            // Names no managed table (in any case): forwarded.
            assert_eq!(
                Refusal::backslashes(&targets, b"SELECT 'x\\' AS a, ' FROM other '", strings),
                None
            );
            // The seventh red-team pass: a name spelled with escapes, where Postgres reads
            // no literal, is refused as the name itself is.
            assert!(
                Refusal::backslashes(
                    &targets,
                    br#"SELECT 'a\' AS x, ' AS y, (SELECT 1 FROM public.U&"\006Dodel\005Fmetadata" m) '"#,
                    strings
                )
                .is_some()
            );
            assert!(
                Refusal::backslashes(&targets, br"select '\' from MODEL_METADATA", strings)
                    .is_some()
            );
        }
        // Backslashes only in escape strings read alike whatever the setting turns out to be:
        // rewritten while it is pending (psycopg's client-side binding), not while it is off
        // (a call compiles a body with it).
        let escaped = br"INSERT INTO model_metadata (model_name) VALUES (E'C:\\dir\'s'), ('x')";
        assert_eq!(
            Refusal::backslashes(&targets, escaped, ConformingStrings::Pending),
            None
        );
        assert!(Refusal::backslashes(&targets, escaped, ConformingStrings::Off).is_some());
        for still_refused in [
            &br"SELECT E'a\\b', 'c\' FROM model_metadata"[..],
            br"DO $$BEGIN PERFORM E'\\x' FROM model_metadata; END$$",
            br"SELECT N'a\' FROM model_metadata",
        ] {
            assert!(
                Refusal::backslashes(&targets, still_refused, ConformingStrings::Pending).is_some(),
                "{}",
                String::from_utf8_lossy(still_refused)
            );
        }
    }
}
