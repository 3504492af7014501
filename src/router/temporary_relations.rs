//! A session's own temporary relations named like a managed table, as the router follows
//! them: Postgres searches the session's temporary schema before the search_path (unless the
//! path lists `pg_temp`), so after `CREATE TEMP TABLE model_metadata (…)` the unqualified name
//! means that table, not the version's view.
//!
//! Recognised: `CREATE [GLOBAL | LOCAL] {TEMP | TEMPORARY} [UNLOGGED] [RECURSIVE] {TABLE |
//! VIEW | SEQUENCE} [IF NOT EXISTS] name` (and `CREATE … pg_temp.name`), with or without `AS`
//! and `ON COMMIT DROP`; `SELECT … INTO {TEMP | TEMPORARY} [TABLE] name`; `DROP {TABLE | VIEW
//! | SEQUENCE} [IF EXISTS] name, …` of a followed name; `DISCARD {TEMP | TEMPORARY | ALL}`.
//! Only names that are managed names (`is_managed`) are reported: no other temporary
//! relation matters to the rewriter. The cheap test [`may_change`] keeps statements that
//! mention none of these words from being lexed at all.

use super::statement_words::{self, identifier, is_word, text};
use crate::rewriter::lexer::Token;
use crate::rewriter::resolution::TEMP_SCHEMA;
use crate::rewriter::word_scan::{WordSet, Words};

/// What a statement does to the session's followed temporary relations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TempCommand {
    /// A temporary relation of this managed name now exists; `on_commit_drop`: it ends with
    /// its transaction.
    Created { name: String, on_commit_drop: bool },
    /// It was dropped.
    Dropped(String),
    /// Every temporary relation was dropped (`DISCARD TEMP`, `DISCARD ALL`).
    DroppedAll,
}

/// Whether a statement holding `words` may create or drop a followed temporary relation: it
/// mentions `temp`, or, while the session has some (`following`), `drop` or `discard`.
pub fn may_change(words: Words, following: bool) -> bool {
    match following {
        true => words.any(FOLLOWING_WORDS),
        false => words.any(TEMP_WORD),
    }
}

/// What a statement that creates a temporary relation holds.
const TEMP_WORD: WordSet = WordSet::of(&["temp"]);
/// The same, and what a statement that drops one holds.
const FOLLOWING_WORDS: WordSet = WordSet::of(&["temp", "drop", "discard"]);

/// Every [`TempCommand`] among the statements of `sql`, each with the byte offset where its
/// statement ends (see `statement_words`); empty for text the lexer cannot read.
pub fn commands(
    sql: &str,
    tokens: &mut Vec<Token>,
    is_managed: impl Fn(&str) -> bool,
) -> Vec<(usize, TempCommand)> {
    let Some(statements) = statement_words::statements(sql, tokens) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (end, words) in statements {
        for command in statement_commands(sql, &words) {
            let managed = match &command {
                TempCommand::Created { name, .. } | TempCommand::Dropped(name) => is_managed(name),
                TempCommand::DroppedAll => true,
            };
            if managed {
                found.push((end, command));
            }
        }
    }
    found
}

fn statement_commands(sql: &str, words: &[&Token]) -> Vec<TempCommand> {
    let Some(first) = words.first() else {
        return Vec::new();
    };
    let word = |at: usize, w: &str| words.get(at).is_some_and(|t| is_word(sql, t, w));
    if is_word(sql, first, "CREATE") {
        return created(sql, words).into_iter().collect();
    }
    if is_word(sql, first, "DROP") && ["TABLE", "VIEW", "SEQUENCE"].iter().any(|w| word(1, w)) {
        let start = if word(2, "IF") && word(3, "EXISTS") {
            4
        } else {
            2
        };
        return dropped(sql, &words[start..]);
    }
    if is_word(sql, first, "DISCARD") && ["TEMP", "TEMPORARY", "ALL"].iter().any(|w| word(1, w)) {
        return vec![TempCommand::DroppedAll];
    }
    if is_word(sql, first, "SELECT") || is_word(sql, first, "WITH") || text(sql, first) == "(" {
        return selected_into(sql, words).into_iter().collect();
    }
    Vec::new()
}

/// `CREATE … {TABLE | VIEW | SEQUENCE} …` of a temporary relation.
fn created(sql: &str, words: &[&Token]) -> Option<TempCommand> {
    let mut at = 1;
    let mut temporary = false;
    while let Some(token) = words.get(at) {
        let modifier = ["OR", "REPLACE", "GLOBAL", "LOCAL", "UNLOGGED", "RECURSIVE"]
            .iter()
            .any(|w| is_word(sql, token, w));
        let temp = ["TEMP", "TEMPORARY"].iter().any(|w| is_word(sql, token, w));
        if !modifier && !temp {
            break;
        }
        temporary |= temp;
        at += 1;
    }
    let kind = words.get(at)?;
    if !["TABLE", "VIEW", "SEQUENCE"]
        .iter()
        .any(|w| is_word(sql, kind, w))
    {
        return None;
    }
    at += 1;
    if words.get(at).is_some_and(|t| is_word(sql, t, "IF")) {
        at += 3;
    }
    let (schema, name) = relation_name(sql, &words[at.min(words.len())..])?;
    if !temporary && schema.as_deref() != Some(TEMP_SCHEMA) {
        return None;
    }
    if schema
        .as_deref()
        .is_some_and(|schema| schema != TEMP_SCHEMA)
    {
        return None;
    }
    let on_commit_drop = words.windows(3).any(|w| {
        is_word(sql, w[0], "ON") && is_word(sql, w[1], "COMMIT") && is_word(sql, w[2], "DROP")
    });
    Some(TempCommand::Created {
        name,
        on_commit_drop,
    })
}

/// `SELECT … INTO {TEMP | TEMPORARY} [TABLE] name` (or `INTO [TABLE] pg_temp.name`), not the
/// target of an `INSERT INTO` or `MERGE INTO` inside a WITH statement.
fn selected_into(sql: &str, words: &[&Token]) -> Option<TempCommand> {
    let into = words.iter().enumerate().position(|(i, token)| {
        is_word(sql, token, "INTO")
            && !i
                .checked_sub(1)
                .and_then(|before| words.get(before))
                .is_some_and(|t| is_word(sql, t, "INSERT") || is_word(sql, t, "MERGE"))
    })?;
    let mut rest = &words[into + 1..];
    let temporary = rest
        .first()
        .is_some_and(|t| is_word(sql, t, "TEMP") || is_word(sql, t, "TEMPORARY"));
    if temporary {
        rest = &rest[1..];
    }
    if rest.first().is_some_and(|t| is_word(sql, t, "TABLE")) {
        rest = &rest[1..];
    }
    let (schema, name) = relation_name(sql, rest)?;
    match schema.as_deref() {
        None if temporary => {}
        Some(TEMP_SCHEMA) => {}
        _ => return None,
    }
    Some(TempCommand::Created {
        name,
        on_commit_drop: false,
    })
}

/// The names a `DROP` lists, unqualified or in `pg_temp`.
fn dropped(sql: &str, mut words: &[&Token]) -> Vec<TempCommand> {
    let mut found = Vec::new();
    while let Some((schema, name)) = relation_name(sql, words) {
        if schema.is_none_or(|schema| schema == TEMP_SCHEMA) {
            found.push(TempCommand::Dropped(name));
        }
        let consumed = if words.get(1).is_some_and(|t| text(sql, t) == ".") {
            3
        } else {
            1
        };
        words = &words[consumed.min(words.len())..];
        match words.first() {
            Some(comma) if text(sql, comma) == "," => words = &words[1..],
            _ => break,
        }
    }
    found
}

/// A relation name at the start of `words`: `name` or `schema.name`, folded.
fn relation_name(sql: &str, words: &[&Token]) -> Option<(Option<String>, String)> {
    let first = identifier(sql, words.first()?)?;
    if words.get(1).is_some_and(|t| text(sql, t) == ".") {
        let name = identifier(sql, words.get(2)?)?;
        return Some((Some(first), name));
    }
    Some((None, first))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(sql: &str) -> Vec<TempCommand> {
        let mut tokens = Vec::new();
        commands(sql, &mut tokens, |name| name == "model_metadata")
            .into_iter()
            .map(|(_, command)| command)
            .collect()
    }

    fn created(on_commit_drop: bool) -> TempCommand {
        TempCommand::Created {
            name: "model_metadata".into(),
            on_commit_drop,
        }
    }

    #[test]
    fn recognises_temporary_relations_of_managed_names() {
        for sql in [
            "CREATE TEMP TABLE model_metadata (id int)",
            "create local temporary table if not exists Model_Metadata (id int)",
            "CREATE TABLE pg_temp.model_metadata (id int)",
            "CREATE TEMP VIEW model_metadata AS SELECT 1",
            "CREATE OR REPLACE TEMP RECURSIVE VIEW \"model_metadata\" (n) AS VALUES (1)",
            "CREATE TEMP SEQUENCE model_metadata",
            "CREATE TEMP TABLE model_metadata AS SELECT * FROM model_metadata",
            "SELECT * INTO TEMP model_metadata FROM other",
            "SELECT 1 AS id INTO TEMPORARY TABLE model_metadata",
            "SELECT 1 INTO pg_temp.model_metadata",
        ] {
            assert_eq!(read(sql), vec![created(false)], "{sql}");
        }
        assert_eq!(
            read("CREATE TEMP TABLE model_metadata (id int) ON COMMIT DROP"),
            vec![created(true)]
        );
        for sql in [
            "CREATE TABLE model_metadata (id int)",
            "CREATE TEMP TABLE other (id int)",
            "CREATE TABLE tenant.model_metadata (id int)",
            "CREATE TEMP TABLE \"Model_Metadata\" (id int)",
            "SELECT * INTO model_metadata FROM other",
            "WITH x AS (SELECT 1) INSERT INTO pg_temp.model_metadata SELECT * FROM x",
            "SELECT 'CREATE TEMP TABLE model_metadata'",
            "CREATE INDEX temp_idx ON model_metadata (id)",
        ] {
            assert_eq!(read(sql), vec![], "{sql}");
        }
    }

    #[test]
    fn recognises_drops_and_discards_and_where_each_statement_ends() {
        assert_eq!(
            read("DROP TABLE IF EXISTS other, model_metadata, tenant.model_metadata CASCADE"),
            vec![TempCommand::Dropped("model_metadata".into())]
        );
        assert_eq!(
            read("drop view pg_temp.model_metadata"),
            vec![TempCommand::Dropped("model_metadata".into())]
        );
        assert_eq!(read("DISCARD TEMP"), vec![TempCommand::DroppedAll]);
        assert_eq!(read("DISCARD ALL"), vec![TempCommand::DroppedAll]);
        assert_eq!(read("DISCARD PLANS"), vec![]);
        let sql = "CREATE TEMP TABLE model_metadata (id int); SELECT 1; DROP TABLE model_metadata";
        let mut tokens = Vec::new();
        assert_eq!(
            commands(sql, &mut tokens, |name| name == "model_metadata"),
            vec![
                (sql.find(';').unwrap() + 1, created(false)),
                (sql.len(), TempCommand::Dropped("model_metadata".into())),
            ]
        );
    }

    #[test]
    fn the_cheap_test_looks_for_drops_only_while_following() {
        for (sql, following, expected) in [
            ("create temporary table t (a int)", false, true),
            ("DROP TABLE model_metadata", false, false),
            ("DROP TABLE model_metadata", true, true),
            ("SELECT * FROM model_metadata", true, false),
        ] {
            let words = Words::in_text(sql.as_bytes());
            assert_eq!(may_change(words, following), expected, "{sql} {following}");
        }
    }
}
