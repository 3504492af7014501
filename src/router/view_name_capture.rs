//! Statements that would give a relation, in any schema, the name of a managed table's view at
//! some version. The rewriter sends a managed table's references to its version's view by name
//! (`model_metadata_v1 AS model_metadata`), and Postgres resolves that name on the session's
//! search_path, temporary schema first: a relation of that name made anywhere the path reaches
//! would be read and written in the view's place. The nineteenth red-team pass made one at v1
//! over v1's view, named like v3's, in `pg_temp_N`, and after its session moved to v3 read v1's
//! columns and had its writes judged as v3's.
//!
//! Recognised: `CREATE … {TABLE | VIEW | SEQUENCE} [IF NOT EXISTS] name` (with every modifier
//! Postgres takes before the kind: `OR REPLACE`, `TEMP`, `UNLOGGED`, `MATERIALIZED`, `FOREIGN`,
//! `RECURSIVE`, …), `ALTER … RENAME TO name`, and `SELECT … INTO [TEMP | UNLOGGED] [TABLE]
//! name`, each name qualified or not. Views and tables are made over direct connections by
//! `views apply` and migrations, never through the proxy.

use super::statement_words::{self, identifier, is_word, text};
use crate::rewriter::lexer::Token;
use crate::rewriter::mention::may_hide_a_name;
use crate::rewriter::parse_tree::Tree;
use crate::rewriter::postgres_grammar::{MAX_CHECKED_BYTES, on_check_stack};
use crate::rewriter::postgres_parser;
use crate::rewriter::rewrite::contains_ignore_ascii_case;
use crate::rewriter::word_scan::{WordSet, Words};

/// The words that may stand between `CREATE` and the kind of relation it makes.
const CREATE_MODIFIERS: &[&str] = &[
    "OR",
    "REPLACE",
    "GLOBAL",
    "LOCAL",
    "TEMP",
    "TEMPORARY",
    "UNLOGGED",
    "RECURSIVE",
    "MATERIALIZED",
    "FOREIGN",
];

/// What `named_like_a_view` reports for text it cannot read.
const UNREAD_NAME: &str = "(a name viewgate cannot read)";

/// The words of the statements that make or rename a relation.
const RELATION_MAKING_WORDS: WordSet = WordSet::of(&["create", "into", "rename"]);

/// The options `EXPLAIN` takes without parentheses.
const EXPLAIN_WORDS: &[&str] = &["ANALYZE", "ANALYSE", "VERBOSE"];

/// The kinds of relation a query can read by name.
const RELATION_KINDS: &[&str] = &["TABLE", "VIEW", "SEQUENCE"];

/// The words that may stand between `INTO` and the table `SELECT … INTO` makes.
const INTO_MODIFIERS: &[&str] = &["TEMP", "TEMPORARY", "UNLOGGED", "TABLE"];

/// The first name among `views` (folded view names) that a statement of `sql` would give a
/// relation; `None` when it gives none. Cheap when `sql` mentions none of them. `words`: the
/// statement's.
pub fn named_like_a_view<'v>(
    sql: &str,
    words: Words,
    tokens: &mut Vec<Token>,
    views: impl Iterator<Item = &'v str> + Clone,
) -> Option<String> {
    // A name may hide behind a Unicode escape, which the lexer does not read either: then
    // only text that may make or rename a relation is looked at.
    let mentioned = views
        .clone()
        .any(|view| contains_ignore_ascii_case(sql.as_bytes(), view.as_bytes()));
    // The words first: one pass, where the escapes' checks are several.
    let hidden = !mentioned && words.any(RELATION_MAKING_WORDS) && may_hide_a_name(sql.as_bytes());
    if !mentioned && !hidden {
        return None;
    }
    // Text the lexer cannot read (a form feed, a Unicode escape) is judged by Postgres's own
    // parser, which decodes the names (the verification of the twentieth pass hid a CREATE
    // behind `U&"…"`); text that parser rejects too is refused.
    let Some(statements) = statement_words::statements(sql, tokens) else {
        return match made_names_by_postgres(sql) {
            Some(names) => names
                .into_iter()
                .find(|name| views.clone().any(|view| view == name)),
            None => Some(UNREAD_NAME.to_owned()),
        };
    };
    statements.into_iter().find_map(|(_, words)| {
        // `EXPLAIN [ANALYZE] …` and `( SELECT … INTO … )` run the statement inside.
        let mut start = 0;
        if words.first().is_some_and(|t| is_word(sql, t, "EXPLAIN")) {
            start = 1;
            if words.get(1).is_some_and(|t| text(sql, t) == "(") {
                start = (1..words.len()).find(|&at| text(sql, words[at]) == ")")? + 1;
            }
            while words
                .get(start)
                .is_some_and(|t| EXPLAIN_WORDS.iter().any(|w| is_word(sql, t, w)))
            {
                start += 1;
            }
        }
        while words.get(start).is_some_and(|t| text(sql, t) == "(") {
            start += 1;
        }
        let words = &words[start..];
        let word = |at: usize, w: &str| words.get(at).is_some_and(|t| is_word(sql, t, w));
        let any = |at: usize, list: &[&str]| list.iter().any(|w| word(at, w));
        let name_at = |mut at: usize| -> Option<String> {
            let mut name = identifier(sql, words.get(at)?)?;
            while words.get(at + 1).is_some_and(|t| text(sql, t) == ".") {
                at += 2;
                name = identifier(sql, words.get(at)?)?;
            }
            Some(name)
        };
        let named = if word(0, "CREATE") {
            let mut at = 1;
            while any(at, CREATE_MODIFIERS) {
                at += 1;
            }
            if !any(at, RELATION_KINDS) {
                return None;
            }
            at += 1;
            if word(at, "IF") && word(at + 1, "NOT") && word(at + 2, "EXISTS") {
                at += 3;
            }
            name_at(at)
        } else if word(0, "ALTER") {
            (1..words.len())
                .find(|&at| word(at - 1, "RENAME") && word(at, "TO"))
                .and_then(|at| name_at(at + 1))
        } else if word(0, "SELECT") || word(0, "WITH") {
            (1..words.len())
                .find(|&at| word(at, "INTO") && !word(at - 1, "INSERT") && !word(at - 1, "MERGE"))
                .and_then(|mut at| {
                    at += 1;
                    while any(at, INTO_MODIFIERS) {
                        at += 1;
                    }
                    name_at(at)
                })
        } else {
            None
        };
        named.filter(|name| views.clone().any(|view| view == name))
    })
}

/// The relation names Postgres's parser reads `sql` as making or renaming (each statement's
/// table, view, sequence, `SELECT … INTO` or `CREATE … AS` target, and `RENAME TO` name),
/// decoded and truncated as the server keeps them; `None` when the parser rejects the text or
/// it is longer than the parser is given.
fn made_names_by_postgres(sql: &str) -> Option<Vec<String>> {
    if sql.len() > MAX_CHECKED_BYTES || sql.contains('\0') {
        return None;
    }
    on_check_stack(sql.len(), || {
        let json = postgres_parser::parse(sql).ok()?;
        let tree = Tree::read(json.text().ok()?).ok()?;
        let mut names = Vec::new();
        collect_made_names(&tree, &mut names);
        Some(names)
    })
}

/// The walk of [`made_names_by_postgres`]. Nodes are objects keyed by their type; the fields
/// that hold a made relation are typed, so their values are unwrapped `RangeVar`s.
fn collect_made_names(tree: &Tree, names: &mut Vec<String>) {
    match tree {
        Tree::Object(fields) => {
            for (key, value) in fields {
                let made = match key.as_ref() {
                    "CreateStmt" => value.get("relation"),
                    "ViewStmt" => value.get("view"),
                    "CreateSeqStmt" => value.get("sequence"),
                    "CreateForeignTableStmt" => value.get("base").and_then(|b| b.get("relation")),
                    "intoClause" | "into" => value.get("rel"),
                    _ => None,
                };
                let name = match key.as_ref() {
                    "RenameStmt" => value.get("newname"),
                    _ => made.and_then(|relation| relation.get("relname")),
                };
                if let Some(name) = name.and_then(Tree::as_text) {
                    names.push(name.to_owned());
                }
                collect_made_names(value, names);
            }
        }
        Tree::Array(items) => items
            .iter()
            .for_each(|item| collect_made_names(item, names)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(sql: &str) -> Option<String> {
        named_like_a_view(
            sql,
            Words::in_text(sql.as_bytes()),
            &mut Vec::new(),
            ["t_v1", "t_v2"].into_iter(),
        )
    }

    #[test]
    fn finds_every_way_to_name_a_relation_like_a_view() {
        for sql in [
            "CREATE TEMP VIEW t_v2 AS SELECT * FROM t_v1",
            "create view pg_temp_6.T_V2 as select 1",
            "CREATE OR REPLACE TEMPORARY RECURSIVE VIEW t_v1 (a) AS SELECT 1",
            "CREATE UNLOGGED TABLE IF NOT EXISTS app.t_v2 (a int)",
            "CREATE MATERIALIZED VIEW \"t_v1\" AS SELECT 1",
            "CREATE SEQUENCE t_v1",
            "CREATE FOREIGN TABLE t_v2 (a int) SERVER s",
            "ALTER VIEW tv RENAME TO t_v2",
            "ALTER TABLE IF EXISTS pg_temp.x RENAME TO t_v1",
            "SELECT * INTO TEMP TABLE t_v2 FROM t_v1",
            "SELECT 1; select 2 into unlogged public.t_v1",
            "EXPLAIN ANALYZE CREATE TEMP TABLE t_v1 AS SELECT 1",
            "EXPLAIN (ANALYZE, COSTS OFF) CREATE TABLE t_v2 AS SELECT 1",
            "(SELECT 1 INTO TEMP t_v1)",
            "CREATE TEMP VIEW U&\"t\\005fv1\" AS SELECT 1",
            "CREATE TEMP VIEW t_v1\u{c} AS SELECT 1",
            // Where this crate's lexer gives up, Postgres's parser reads the names.
            "CREATE TABLE U&\"t!005fv2\" UESCAPE '!' (a int)",
            "SELECT U&'\\0041' INTO TEMP U&\"t\\005fv1\"",
            "CREATE SEQUENCE t_v1\u{c}",
            "ALTER VIEW U&\"x\" RENAME TO U&\"t\\005fv2\"",
            "CREATE TABLE x AS SELECT 1; CREATE VIEW U&\"\\0074_v1\" AS SELECT 1",
            "CREATE FOREIGN TABLE U&\"t\\005fv1\" (a int) SERVER s",
            // Text Postgres rejects too.
            "CREATE VIEW U&\"t_v1 AS SELECT 1",
        ] {
            assert!(named(sql).is_some(), "{sql}");
        }
        for sql in [
            "SELECT U&'\\0041' AS a",
            "SELECT * FROM t_v1",
            "INSERT INTO t_v1 VALUES (1)",
            "WITH x AS (SELECT 1) INSERT INTO t_v2 SELECT * FROM x",
            "CREATE TEMP VIEW tv AS SELECT * FROM t_v1",
            "CREATE INDEX t_v1 ON other (a)",
            "CREATE VIEW \"T_V1\" AS SELECT 1",
            "ALTER TABLE t_v1 RENAME COLUMN a TO b",
            // A Unicode escape in a value is no name (the twenty-ninth pass saw INSERT INTO
            // and MERGE INTO with one refused).
            "INSERT INTO t VALUES (U&'\\0041')",
            "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN UPDATE SET b = U&'\\0041'",
            "CREATE VIEW U&\"t\\005fv3\" AS SELECT U&'t_v1'",
        ] {
            assert_eq!(named(sql), None, "{sql}");
        }
    }
}
