//! Which FunctionCall messages a versioned session may send.
//!
//! The protocol's FunctionCall ('F') calls a function by oid with no SQL text, so nothing in it
//! can be rewritten: `table_to_xml` (2923) or `query_to_xml` (2924) called that way with
//! `'public.model_metadata'` would read every column of the base table, which the same calls
//! written in SQL never reach. In a session whose version has managed tables, only the
//! functions libpq's large-object API (`lo_*`, psql's `\lo_import` and `\lo_export`, pgJDBC's
//! `LargeObjectManager`) calls this way are forwarded: they read and write large objects,
//! never a relation. Anything else is refused with 0A000; the SQL form of the call works.

use crate::protocol::sqlstate::SqlState;
use crate::rewriter::VersionTargets;

use super::raise::Refusal;

/// The large-object functions a FunctionCall may call in a versioned session, by oid and
/// name. Built-in oids are fixed in PostgreSQL's `pg_proc.dat`, the same in every major
/// version (checked on a real server: `SELECT oid, proname FROM pg_proc WHERE proname IN
/// (…)`); the server-side `lo_import` and `lo_export`, which read and write the server's
/// files, are not among them.
pub const LARGE_OBJECT_FUNCTIONS: [(u32, &str); 13] = [
    (715, "lo_create"),
    (952, "lo_open"),
    (953, "lo_close"),
    (954, "loread"),
    (955, "lowrite"),
    (956, "lo_lseek"),
    (957, "lo_creat"),
    (958, "lo_tell"),
    (964, "lo_unlink"),
    (1004, "lo_truncate"),
    (3170, "lo_lseek64"),
    (3171, "lo_tell64"),
    (3172, "lo_truncate64"),
];

/// What the client is told in place of a FunctionCall viewgate does not forward.
pub const REFUSED_FUNCTION_CALL: &str = "viewgate forwards the FunctionCall message only for large-object functions; call the function with SELECT";

/// Whether a FunctionCall of function `oid` (`None`: a message too short to name one) may
/// be forwarded at `targets`' version (`None`: an unversioned session): always in a session
/// without managed tables, otherwise only for [`LARGE_OBJECT_FUNCTIONS`]. `Some` is the
/// refusal the client gets instead.
pub fn refusal(targets: Option<&VersionTargets>, oid: Option<u32>) -> Option<Refusal> {
    let governed = targets.is_some_and(|targets| !targets.is_empty());
    let large_object = oid.is_some_and(|oid| {
        LARGE_OBJECT_FUNCTIONS
            .iter()
            .any(|(known, _)| *known == oid)
    });
    (governed && !large_object)
        .then(|| Refusal::new(SqlState::FEATURE_NOT_SUPPORTED, REFUSED_FUNCTION_CALL))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `table_to_xml` and `query_to_xml`, the red team's calls.
    const TABLE_TO_XML: u32 = 2923;
    const QUERY_TO_XML: u32 = 2924;

    #[test]
    fn a_versioned_session_calls_only_large_object_functions() {
        let targets = VersionTargets::seed_example("v1");
        for oid in [TABLE_TO_XML, QUERY_TO_XML, 2078 /* set_config */] {
            let refused = refusal(Some(&targets), Some(oid)).expect("refused");
            assert_eq!(refused.code, SqlState::FEATURE_NOT_SUPPORTED);
            assert!(refused.message.contains("call the function with SELECT"));
        }
        assert!(refusal(Some(&targets), None).is_some(), "no oid at all");
        for (oid, name) in LARGE_OBJECT_FUNCTIONS {
            assert_eq!(refusal(Some(&targets), Some(oid)), None, "{name}");
        }
    }

    #[test]
    fn a_session_without_managed_tables_calls_anything() {
        assert_eq!(refusal(None, Some(TABLE_TO_XML)), None);
        let empty = VersionTargets::new("v0", Vec::new());
        assert_eq!(refusal(Some(&empty), Some(TABLE_TO_XML)), None);
    }
}
