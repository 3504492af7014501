//! `restrict_nonsystem_relation_kind`, which pg_dump sets (since PostgreSQL 12.20, 13.16,
//! 14.13, 15.8 and 16.4, its fix for CVE-2024-7348) so that the server refuses to read any
//! view or foreign table of the dumped database: refused with a message that says so.
//!
//! Through the proxy every version's tables are views, and so is the catalog a version reads
//! (`model::catalog_substitutes`): set to include `view`, the session could read neither
//! (`access to non-system view "customers_v1" is restricted`, a name the client never wrote).
//! pg_dump sets it by `SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings
//! WHERE name = 'restrict_nonsystem_relation_kind'`, whose computed setting name the other
//! checks refuse for what it might set (the search_path, `viewgate.version`), with messages
//! that sent the operator-tools walk looking at the search_path. A dump is taken over a direct
//! connection: it holds the base tables, every version's views and viewgate's catalog, and
//! restores whole (docs/operations.md, "Backups").

use super::raise::Refusal;
use crate::protocol::sqlstate::SqlState;
use crate::rewriter::mention::contains_ignore_ascii_case;
use crate::rewriter::word_scan::{WordSet, Words};

/// The setting pg_dump restricts the session's relation kinds by.
const RESTRICTION_SETTING: &str = "restrict_nonsystem_relation_kind";
/// The part of its name the router's one scan of every statement looks for.
const RESTRICTION_WORDS: WordSet = WordSet::of(&["nonsystem"]);

/// Why `sql` is refused, where it names the restriction in a statement that may set it (`SET`,
/// `set_config`, `ALTER … SET`): at `version`; or, in a session without one (`None`), the
/// message for a statement refused anyway (a `set_config` of a computed name, which could set
/// `viewgate.version`). Reading it (`SHOW`, `current_setting`) passes.
pub fn refusal(sql: &str, words: Words, version: Option<&str>) -> Option<Refusal> {
    let text = sql.as_bytes();
    if !words.any(RESTRICTION_WORDS)
        || !contains_ignore_ascii_case(text, RESTRICTION_SETTING.as_bytes())
        || !contains_ignore_ascii_case(text, b"set")
        || is_read_only(sql)
    {
        return None;
    }
    let why = match version {
        Some(version) => format!(
            "is not set through viewgate at version \"{version}\": the version's tables are views, and so is the catalog viewgate shows it, which the setting makes the server refuse to read"
        ),
        None => "is not set through viewgate in a session without a version: pg_dump's set_config computes the setting's name, which could be viewgate.version".to_owned(),
    };
    Some(Refusal::new(
        SqlState::FEATURE_NOT_SUPPORTED,
        format!(
            "{RESTRICTION_SETTING} {why}. pg_dump sets it: take a dump over a direct connection to Postgres, which holds the base tables, every version's views and viewgate's catalog"
        ),
    ))
}

/// `SHOW restrict_nonsystem_relation_kind`, or a `SELECT` that only reads it
/// (`current_setting`): no `set` as a word of its own or `set_config`.
fn is_read_only(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    let words = lower.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    !words
        .into_iter()
        .any(|word| word == "set" || word == "set_config")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(sql: &str, version: Option<&str>) -> Option<Refusal> {
        super::refusal(sql, Words::in_text(sql.as_bytes()), version)
    }

    #[test]
    fn pg_dumps_setting_is_refused_and_reading_it_passes() {
        let pg_dump = "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'";
        for sql in [
            pg_dump,
            "SET restrict_nonsystem_relation_kind = 'view'",
            "set local RESTRICT_NONSYSTEM_RELATION_KIND to view",
            "SELECT pg_catalog.set_config('restrict_nonsystem_relation_kind', '', false)",
            "ALTER ROLE app SET restrict_nonsystem_relation_kind = 'view'",
        ] {
            let refused = refusal(sql, Some("v2")).expect(sql);
            assert_eq!(refused.code, SqlState::FEATURE_NOT_SUPPORTED);
            assert!(refused.message.contains("at version \"v2\""), "{refused:?}");
            assert!(refused.message.contains("direct connection"), "{refused:?}");
        }
        assert!(
            refusal(pg_dump, None)
                .unwrap()
                .message
                .contains("without a version")
        );
        for sql in [
            "SHOW restrict_nonsystem_relation_kind",
            "SELECT current_setting('restrict_nonsystem_relation_kind')",
            "SELECT settings FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'",
            "SET search_path = public",
        ] {
            assert_eq!(refusal(sql, Some("v2")), None, "{sql}");
        }
    }
}
