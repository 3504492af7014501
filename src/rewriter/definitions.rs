//! DDL that would keep a managed table's whole shape: what the grammar check reads in it.
//!
//! Most DDL names a managed table to change the table itself (`ALTER TABLE`, `CREATE INDEX`,
//! `GRANT`): that is the operator's business and passes through, except what would change
//! its columns, name, schema or existence under every version, which no version's view would
//! follow (refused at a version: `postgres_grammar_structure.rs`). Some DDL instead builds a
//! new object from the table's shape or stores a reference that is read later, and as
//! written it would give a version every column of every version:
//! - `CREATE TABLE … (LIKE t)` copies the columns: rewritten to the version's view, which
//!   `LIKE` accepts and which leaves no dependency behind ([`Place::Like`]);
//! - the row type stored in a column, a function's argument or result, a composite type, a
//!   domain, a cast or an aggregate, a typed table (`OF t`), a table that inherits from or is a
//!   partition of `t` ([`Place::StoredShape`]): refused, since naming the view's type would
//!   hold the view in place against `views apply` and `migrate complete`;
//! - a function's or procedure's body, and a DO block's ([`Place::FunctionBody`]): refused.
//!   A `BEGIN ATOMIC` body is parsed with the function and read like a view's definition; a
//!   string body is read by Postgres only when it runs, under its caller's search_path, so
//!   any mention of a managed name that could mean the table refuses it ([`body_mention`]),
//!   and so does a body that may run SQL the proxy cannot see: built at run time, or in a
//!   language other than SQL and PL/pgSQL ([`judge_body`], [`Place::UnseenSql`]);
//! - a policy's expressions, which Postgres keeps like a view's definition.
//!
//! [`Place::Like`]: super::postgres_grammar::Place::Like
//! [`Place::StoredShape`]: super::postgres_grammar::Place::StoredShape
//! [`Place::FunctionBody`]: super::postgres_grammar::Place::FunctionBody
//! [`Place::UnseenSql`]: super::postgres_grammar::Place::UnseenSql

use super::identifier::fold_identifier;
use super::lexer::{self, Kind};
use super::mention::VERBOSE_MARK;
use super::reading_settings;
use super::targets::{VersionTargets, ViewTarget};
use crate::model::catalog_substitutes::{
    CLIENT_MIN_MESSAGES, INFORMATION_SCHEMA, PG_CATALOG_SUBSTITUTES, READING_SETTERS, SCHEMA_WORD,
    SEARCH_PATH_SETTERS, SET_CONFIG, SUBSTITUTE_FUNCTIONS, SUBSTITUTE_SCHEMA_PREFIX,
};
use crate::model::identifier::MAX_IDENTIFIER_BYTES;
use crate::model::view_mapping::MAPPING_FUNCTION_INFIX;

/// The DDL statement kinds (libpg_query's node names) whose shape-copying parts are read.
/// `CreateSchemaStmt` holds `CREATE TABLE` / `CREATE VIEW` elements.
pub const READ_KINDS: &[&str] = &[
    "CreateStmt",
    "AlterTableStmt",
    "CompositeTypeStmt",
    "CreateDomainStmt",
    "CreateFunctionStmt",
    "DefineStmt",
    "CreateCastStmt",
    "DoStmt",
    "RuleStmt",
    "CreatePolicyStmt",
    "AlterPolicyStmt",
    "CreateSchemaStmt",
];

/// Fields that hold a type name without its `TypeName` tag, besides a cast's `typeName`.
pub const UNTAGGED_TYPE_FIELDS: &[&str] = &[
    "argType",
    "returnType",
    "ofTypename",
    "sourcetype",
    "targettype",
];

/// The first place in a function's or DO block's `body` (or a query text a built-in runs)
/// that may name one of `targets`' managed tables: the name as a whole identifier (in any
/// case, quoted or not), unqualified or qualified with the table's own schema, or anything
/// spelled with Unicode escapes (`U&"model\005fmetadata"`, which could spell any name: taken
/// to name the first managed table). A name qualified with another identifier
/// (`tenant.model_metadata`, a column `m.model_metadata`) is some other relation; one whose
/// qualifier cannot be read (a comment before the dot) counts. Another version's view and any
/// version's mapping function count too. Returns the byte offset in `body`.
pub fn body_mention<'t>(
    body: &str,
    targets: &'t VersionTargets,
) -> Option<(usize, &'t ViewTarget)> {
    let bytes = body.as_bytes();
    let mut found: Option<(usize, &ViewTarget)> =
        unicode_escape(bytes).zip(targets.managed().first());
    for target in targets.managed() {
        let name = target.table.name.as_bytes();
        let mut from = 0;
        while let Some(at) = find_ignore_ascii_case(&bytes[from..], name).map(|i| i + from) {
            from = at + 1;
            if !names_at(bytes, at, name.len()) {
                continue;
            }
            if qualifier_before(body, at).is_some_and(|q| !q.is_empty() && q != target.table.schema)
            {
                continue;
            }
            if found.is_none_or(|(first, _)| at < first) {
                found = Some((at, target));
            }
            break;
        }
    }
    // Another version's view, by its name: it reads that version's columns.
    for view in targets.other_views() {
        let at = find_all_ignore_ascii_case(bytes, view.name.as_bytes())
            .find(|&at| names_at(bytes, at, view.name.len()));
        if let (Some(at), Some(first)) = (at, targets.managed().first())
            && found.is_none_or(|(earlier, _)| at < earlier)
        {
            found = Some((at, first));
        }
    }
    // A mapping function, any version's (`<view>_map_<digest>`): a client does not call them
    // (`refusal::mapping_function`), in a body no more than in a statement (the fifty-third
    // red-team pass called another version's read from a function and a DO block).
    for view in targets
        .managed()
        .iter()
        .map(|target| &target.view)
        .chain(targets.other_views())
    {
        let prefix = format!("{}{MAPPING_FUNCTION_INFIX}", view.name);
        let at = find_all_ignore_ascii_case(bytes, prefix.as_bytes())
            .find(|&at| !is_identifier_byte(at.checked_sub(1).and_then(|i| bytes.get(i).copied())));
        if let (Some(at), Some(first)) = (at, targets.managed().first())
            && found.is_none_or(|(earlier, _)| at < earlier)
        {
            found = Some((at, first));
        }
    }
    found
}

/// Where `text` first opens a Unicode-escaped identifier or string (`U&"`, `U&'`).
fn unicode_escape(text: &[u8]) -> Option<usize> {
    text.windows(3).position(|window| {
        window[0].eq_ignore_ascii_case(&b'u')
            && window[1] == b'&'
            && matches!(window[2], b'"' | b'\'')
    })
}

/// Languages whose bodies are read for what they may run: SQL and PL/pgSQL. C and internal
/// functions' "bodies" name a symbol; every other language can run SQL from strings the proxy
/// cannot see, and is refused.
const READ_LANGUAGES: &[&str] = &["sql", "plpgsql"];
const SYMBOL_LANGUAGES: &[&str] = &["c", "internal"];

/// What in a SQL or PL/pgSQL body runs SQL it builds at run time (PL/pgSQL's `EXECUTE`, the
/// built-ins of `query_functions.rs`) or reads the statistics of every column
/// (`pg_stats`, `pg_statistic…`), whole words or, for names, anywhere, in any case; the
/// catalog relations with substitutes count too (`judge_body`).
const RUNTIME_SQL_WORDS: &[&str] = &["execute"];

/// Refused in a body at a version with managed tables: PL/pgSQL's `PG_EXCEPTION_DETAIL`
/// holds a caught constraint violation's detail, the base table's failing row whole
/// (`error_detail.rs` hides it only in the ErrorResponse the client gets; the fourteenth
/// red-team pass read hidden values so), `PG_EXCEPTION_CONTEXT` and `PG_CONTEXT` the call
/// stack, with a write trigger's statement (the forty-fifth pass), and `RESET ALL` clears
/// the server's `viewgate.version`, which the proxy can tell again only between statements.
const VERSIONED_BODY_WORDS: &[&str] = &[
    "pg_exception_detail",
    "pg_exception_context",
    "pg_context",
    "reset",
];
const RUNTIME_SQL_NAMES: &[&str] = &[
    "_to_xml",
    "ts_stat",
    "ts_rewrite",
    "crosstab",
    "connectby",
    "xpath_table",
    "pg_stats",
    "pg_statistic",
];

/// What a function's or DO block's body may do with the managed tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'t> {
    /// It may name this managed table, at this byte offset.
    Names(usize, &'t ViewTarget),
    /// It may run SQL the proxy cannot see (built at run time, at this offset, or in a
    /// language it cannot read: `None`).
    RunsUnseenSql(Option<usize>),
    /// Neither: it runs only what it says, and names no managed table.
    Plain,
}

/// Judges `body`, written in `language` (folded), for `targets`.
pub fn judge_body<'t>(body: &str, language: &str, targets: &'t VersionTargets) -> Body<'t> {
    if SYMBOL_LANGUAGES.contains(&language) {
        return Body::Plain;
    }
    if !READ_LANGUAGES.contains(&language) {
        return Body::RunsUnseenSql(None);
    }
    if let Some((at, target)) = body_mention(body, targets) {
        return Body::Names(at, target);
    }
    let bytes = body.as_bytes();
    // `SET SCHEMA`, whose value a body's string may spell with escapes.
    let schema_word = [&SCHEMA_WORD]
        .into_iter()
        .filter(|_| !targets.managed().is_empty());
    // `EXPLAIN (VERBOSE)` run by a body (`postgres_grammar::explains_verbosely`), and what
    // else a versioned session's body may not say.
    let versioned_words = [&VERBOSE_MARK]
        .into_iter()
        .chain(VERSIONED_BODY_WORDS)
        .filter(|_| !targets.managed().is_empty());
    let words = RUNTIME_SQL_WORDS
        .iter()
        .chain(schema_word)
        .chain(versioned_words)
        .filter_map(|word| {
            find_all_ignore_ascii_case(bytes, word.as_bytes())
                .find(|&at| stands_alone(bytes, at, word.len()))
        });
    // The catalog relations a version reads through substitutes: in a body they would be
    // the real ones, describing every version's columns.
    // And where those are substituted: the printers (the real ones, in a body) and what may
    // put information_schema on the search_path (`search_path_catalog.rs`; a body's values
    // may be computed).
    let path_changes = SEARCH_PATH_SETTERS
        .iter()
        .chain(SUBSTITUTE_FUNCTIONS)
        .filter(|_| targets.has_catalog_substitutes());
    // What may change how later text reads (`reading_settings.rs`), with values a body may
    // compute; `set_config` matters there only to a body whose strings hold a backslash.
    let has_backslash = bytes.contains(&b'\\');
    let reading_setters = READING_SETTERS
        .iter()
        .filter(|_| !targets.managed().is_empty())
        .filter(|setter| has_backslash || **setter != SET_CONFIG)
        .filter(|setter| **setter != CLIENT_MIN_MESSAGES || !only_quiets_client_messages(body));
    let names = RUNTIME_SQL_NAMES
        .iter()
        .chain(reading_setters)
        .chain([&INFORMATION_SCHEMA, &SUBSTITUTE_SCHEMA_PREFIX])
        .chain(path_changes)
        .filter_map(|name| find_all_ignore_ascii_case(bytes, name.as_bytes()).next());
    // A catalog relation is named alone: `pg_type` inside `pg_typeof(x)` reads no catalog.
    let catalog_relations = PG_CATALOG_SUBSTITUTES.iter().filter_map(|name| {
        find_all_ignore_ascii_case(bytes, name.as_bytes())
            .find(|&at| stands_alone(bytes, at, name.len()))
    });
    match words.chain(names).chain(catalog_relations).min() {
        Some(at) => Body::RunsUnseenSql(Some(at)),
        None => Body::Plain,
    }
}

/// Whether every mention of `client_min_messages` in a function's or DO block's `body` is
/// `SET [LOCAL | SESSION] client_min_messages {TO | =} <level>` to a level that sends no LOG
/// or DEBUG message, the statement's end right after it. Sqitch's registry check runs `DO $$
/// BEGIN SET LOCAL client_min_messages = 'ERROR'; RAISE WARNING …; END $$`, which the
/// proxy refused as a body that might lower the level (the operator-tools walk); a mention in
/// a string, a quoted name or any other statement still counts, as `judge_body` reads it.
pub fn only_quiets_client_messages(body: &str) -> bool {
    let mut tokens = Vec::new();
    if lexer::lex(body, &mut tokens).is_none() {
        return false;
    }
    let tokens: Vec<_> = tokens
        .into_iter()
        .filter(|t| t.kind != Kind::Comment)
        .collect();
    let text = |i: usize| tokens.get(i).and_then(|t| body.get(t.start..t.end));
    let is = |i: usize, word: &str| text(i).is_some_and(|t| t.eq_ignore_ascii_case(word));
    let quiet_set = |at: usize| {
        let Some(name) = tokens
            .iter()
            .position(|t| t.start == at && t.kind == Kind::Word)
        else {
            return false;
        };
        let scope = usize::from(name >= 2 && (is(name - 1, "local") || is(name - 1, "session")));
        let value = name + 2;
        let quiet = tokens.get(value).is_some_and(|t| {
            matches!(t.kind, Kind::Word | Kind::String)
                && text(value)
                    .is_some_and(|v| reading_settings::is_quiet_level_value(v.trim_matches('\'')))
        });
        name > scope
            && is(name - 1 - scope, "set")
            && (is(name + 1, "to") || is(name + 1, "="))
            && quiet
            && (value + 1 == tokens.len() || is(value + 1, ";"))
    };
    let bytes = body.as_bytes();
    find_all_ignore_ascii_case(bytes, CLIENT_MIN_MESSAGES.as_bytes()).all(quiet_set)
}

/// Where `body` stands in `sql`, searching from `from` (a body in dollar quotes appears
/// verbatim; one in single quotes with doubled quotes or escapes does not).
pub fn body_offset(sql: &str, from: usize, body: &str) -> Option<usize> {
    sql.get(from..)?.find(body).map(|i| i + from)
}

/// Whether the `len` bytes at `at` are a whole identifier, not part of a longer one.
pub(super) fn stands_alone(bytes: &[u8], at: usize, len: usize) -> bool {
    let before = at.checked_sub(1).and_then(|i| bytes.get(i).copied());
    !is_identifier_byte(before) && !is_identifier_byte(bytes.get(at + len).copied())
}

/// Whether the name of `len` bytes found at `at` is the identifier written there, as Postgres
/// reads it: alone, or, when the name is as long as an identifier can be, the start of a
/// longer one, which Postgres cuts to it (the thirty-ninth red-team pass named a partition by
/// its 63 bytes and a suffix in a query string so).
fn names_at(bytes: &[u8], at: usize, len: usize) -> bool {
    let before = at.checked_sub(1).and_then(|i| bytes.get(i).copied());
    stands_alone(bytes, at, len) || (len == MAX_IDENTIFIER_BYTES && !is_identifier_byte(before))
}

fn is_identifier_byte(byte: Option<u8>) -> bool {
    byte.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80)
}

/// The folded qualifier written before the name at `at` (`schema.` or `"Schema" .`), if any;
/// empty when something other than an identifier stands before the dot (a comment). A dot on
/// an earlier line may end a line comment (`--x.` then the name: the thirty-ninth red-team
/// pass had the name taken for another schema's so), so it qualifies nothing here.
fn qualifier_before(body: &str, at: usize) -> Option<String> {
    let before = body[..at].trim_end_matches(|c: char| c.is_ascii_whitespace() || c == '"');
    if body[before.len()..at].contains(['\n', '\r']) {
        return None;
    }
    let before = before.strip_suffix('.')?.trim_end();
    if let Some(quoted) = before.strip_suffix('"') {
        let start = quoted.rfind('"')?;
        return Some(fold_identifier(&quoted[start + 1..], true));
    }
    let start = before
        .bytes()
        .rposition(|b| !is_identifier_byte(Some(b)))
        .map_or(0, |i| i + 1);
    Some(fold_identifier(&before[start..], false))
}

fn find_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    find_all_ignore_ascii_case(haystack, needle).next()
}

/// Every offset where `needle` occurs in `haystack`, ignoring ASCII case.
pub(super) fn find_all_ignore_ascii_case<'h>(
    haystack: &'h [u8],
    needle: &'h [u8],
) -> impl Iterator<Item = usize> + 'h {
    // Candidates by the first byte, either case (memchr), then compared whole: this runs for
    // every mark on every statement a shape is looked up for, and comparing at every offset
    // made it most of a cached rewrite's cost.
    let bounds = needle
        .first()
        .copied()
        .zip(haystack.len().checked_sub(needle.len()));
    bounds.into_iter().flat_map(move |(first, last)| {
        memchr::memchr2_iter(
            first.to_ascii_lowercase(),
            first.to_ascii_uppercase(),
            &haystack[..=last],
        )
        .filter(move |&i| haystack[i..i + needle.len()].eq_ignore_ascii_case(needle))
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewriter::targets::RelationName;

    fn targets() -> VersionTargets {
        VersionTargets::seed_example("v1")
    }

    #[test]
    fn a_body_mentions_a_managed_table_by_its_name_or_its_own_schema() {
        let targets = targets();
        let at = |body: &str| body_mention(body, &targets).map(|(at, _)| at);
        assert_eq!(at("SELECT * FROM model_metadata"), Some(14));
        assert_eq!(at("select 1 from Public.\"Model_Metadata\""), Some(22));
        assert_eq!(
            at("BEGIN PERFORM 1 FROM public . MODEL_METADATA; END"),
            Some(30)
        );
        assert_eq!(at("DECLARE r model_metadata%ROWTYPE;"), Some(10));
        // Another schema's table, a column of that name, longer names: not the managed table.
        assert_eq!(at("SELECT * FROM tenant.model_metadata"), None);
        assert_eq!(at("SELECT m.model_metadata FROM x m"), None);
        assert_eq!(
            at("SELECT * FROM model_metadata_v1, my_model_metadata"),
            None
        );
        assert_eq!(at("SELECT 1"), None);
        // The first mention counts, whichever comes first.
        assert_eq!(at("x.model_metadata; model_metadata"), Some(18));
        // Found by a red-team pass: escapes and comments around the qualifier.
        assert_eq!(at(r#"SELECT 1 FROM U&"model\005fmetadata""#), Some(14));
        assert_eq!(at(r#"SELECT 1 FROM pg_catalog.u&"pg\005fstats""#), Some(25));
        assert_eq!(at("SELECT 1 FROM public/**/.model_metadata"), Some(25));
        assert_eq!(at("SELECT 1 FROM public /* */ . model_metadata"), Some(29));
        // The thirty-ninth: a line comment ending in `x.` is no qualifier.
        assert_eq!(at("SELECT 1 FROM --x.\nmodel_metadata"), Some(19));
        // And a relative's name of 63 bytes, written longer: Postgres cuts it to the name.
        let long = "p".repeat(MAX_IDENTIFIER_BYTES);
        let targets = targets.with_relatives(vec![RelationName::new("archive", long.as_str())]);
        let at = |body: &str| body_mention(body, &targets).map(|(at, _)| at);
        assert_eq!(at(&format!("SELECT * FROM archive.{long}2027")), Some(22));
        assert_eq!(at(&format!("SELECT * FROM archive.x{long}")), None);
    }

    #[test]
    fn a_body_that_may_run_sql_the_proxy_cannot_see_is_told_apart() {
        let targets = targets();
        let judge = |body: &str, language: &str| judge_body(body, language, &targets);
        assert!(matches!(
            judge("SELECT * FROM model_metadata", "sql"),
            Body::Names(14, _)
        ));
        assert_eq!(
            judge(
                "BEGIN EXECUTE 'SELECT 1 FROM model' || '_metadata'; END",
                "plpgsql"
            ),
            Body::RunsUnseenSql(Some(6))
        );
        assert_eq!(
            judge("SELECT * FROM Query_To_Xml($1, true, false, '')", "sql"),
            Body::RunsUnseenSql(Some(19))
        );
        assert_eq!(
            judge("SELECT histogram_bounds FROM pg_stats", "sql"),
            Body::RunsUnseenSql(Some(29))
        );
        assert_eq!(
            judge("plpy.execute('x')", "plpython3u"),
            Body::RunsUnseenSql(None)
        );
        assert_eq!(judge("my_symbol", "c"), Body::Plain);
        // Words that merely contain `execute`, other tables: plain.
        assert_eq!(
            judge("BEGIN PERFORM executed_at FROM jobs; END", "plpgsql"),
            Body::Plain
        );
        // A catalog relation with a substitute, named alone; not inside another name.
        assert_eq!(
            judge("SELECT typname FROM pg_catalog.pg_type", "sql"),
            Body::RunsUnseenSql(Some(31))
        );
        assert_eq!(judge("SELECT pg_typeof($1)::text", "sql"), Body::Plain);
    }

    #[test]
    fn a_body_is_found_where_it_is_written_verbatim() {
        let sql = "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql";
        assert_eq!(body_offset(sql, 32, " SELECT 1 "), Some(37));
        assert_eq!(body_offset(sql, 32, "it''s"), None);
        assert_eq!(body_offset(sql, 500, "x"), None);
    }

    #[test]
    fn a_body_that_only_quiets_client_messages() {
        for body in [
            "\n BEGIN\n SET LOCAL client_min_messages = 'ERROR';\n RAISE WARNING USING MESSAGE = 'x';\n END;\n",
            "begin set client_min_messages to warning; /* why */ set session CLIENT_MIN_MESSAGES = notice; end",
            "SET client_min_messages = 'error'",
            "BEGIN RAISE NOTICE 'nothing'; END",
        ] {
            assert!(only_quiets_client_messages(body), "{body}");
        }
        for body in [
            "BEGIN SET LOCAL client_min_messages = 'debug5'; END",
            "BEGIN SET client_min_messages TO log; END",
            "BEGIN SET client_min_messages TO DEFAULT; END",
            "BEGIN PERFORM set_config('client_min_messages', 'debug', true); END",
            "BEGIN SET \"client_min_messages\" = 'debug'; END",
            "BEGIN SET client_min_messages = 'error', 'debug'; END",
            "BEGIN ALTER ROLE r RESET client_min_messages; END",
            "BEGIN SET client_min_messages = 'error'; SET x = 'client_min_messages'; END",
        ] {
            assert!(!only_quiets_client_messages(body), "{body}");
        }
    }
}
