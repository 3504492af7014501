//! Statements that would change how Postgres reads the session's later text where the proxy
//! cannot follow: `standard_conforming_strings` turned off, and writes to `pg_settings`.
//!
//! viewgate's lexers read `'…'` literals as Postgres does with `standard_conforming_strings`
//! on. Off, a backslash escapes inside them, so a string ends elsewhere than viewgate reads
//! and a name it took for text is a reference (`'a\' AS x, ' …`), and a body that was judged
//! with it on reads otherwise when a later call compiles it. Postgres reports the setting's
//! changes (ParameterStatus) only with the answer to the statement that made them, and a
//! query string is parsed whole before its first statement runs. So a versioned session may
//! turn it off by no statement the proxy sees (`SET`, a function's or role's `SET` clause,
//! `set_config`); a session that has it off anyway is refused every statement but turning it
//! back on (`router::conforming_strings`).
//!
//! `viewgate.version` is the proxy's to set on the server: the migrations' sync triggers read
//! it to tell writers apart (a writer at the old version gets the new columns computed, one
//! claiming `viewgate_backfill` none). The proxy recognises a `SET viewgate.version` alone in
//! its query string and sets the server's itself; any other change of it (a quoted name, a
//! statement among others, `set_config`, a `SET` clause) would change what the triggers
//! believe while the proxy serves the session at its version, and is refused.
//!
//! `client_min_messages` at `log` or a `debug` level sends the client the server's LOG and
//! DEBUG messages: with `debug_print_parse`, `_rewritten` or `_plan` on, or auto_explain,
//! those are query trees and plans naming every base column and its type. A versioned session
//! may set it only to a level that sends neither, by any statement the proxy sees, and not in
//! its startup packet.
//!
//! `pg_settings` is writable: its UPDATE rule calls `set_config` with a name and a value that
//! the statement may compute, so it can change any setting (the search_path as well) without
//! any word the proxy looks for. Writes to it, and views over it (which pass writes on), are
//! refused; reading it is not.

use super::lexer::{self, Kind};
use super::mention;
use super::parse_tree::{Tree, constant, location, name_parts, string_constant};
use super::postgres_parser;
use crate::model::catalog_substitutes::{
    CLIENT_MIN_MESSAGES, PG_CATALOG, PG_SETTINGS, QUIET_MESSAGE_LEVELS, SET_CONFIG,
    STANDARD_CONFORMING_STRINGS, VERSION_SETTING,
};

/// The statements that write the relation in their `relation` field.
const WRITING_STATEMENTS: &[&str] = &["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"];

/// The spellings of a true boolean setting Postgres reads, as the parser leaves them.
const ON_VALUES: &[&str] = &["on", "true", "yes", "1"];

/// Whether `sql` only turns `standard_conforming_strings` back on (`SET … = on`), or shows
/// it: what a session that has it off may still send (`router::Refusal::nonconforming`).
/// `RESET` and `TO DEFAULT` do not count: they restore the login's value, off in a session
/// whose role or database has it off. Read by Postgres's parser, whose reading of these
/// statements does not depend on the setting (they hold no backslash).
pub fn restores_conforming_strings(sql: &str) -> bool {
    // Such a statement is short; a long text is not parsed here (the conversion of Postgres's
    // tree is recursive, `postgres_grammar::on_check_stack`).
    if sql.contains('\\') || sql.len() > MAX_SETTING_STATEMENT_BYTES {
        return false;
    }
    let Ok(json) = postgres_parser::parse(sql) else {
        return false;
    };
    let Ok(tree) = json.text().map(Tree::read) else {
        return false;
    };
    let Ok(tree) = tree else {
        return false;
    };
    let statements = tree.get("stmts").map(Tree::as_array).unwrap_or_default();
    !statements.is_empty()
        && statements.iter().all(|raw| {
            let Some(statement) = raw.get("stmt") else {
                return false;
            };
            if let Some(set) = statement.get("VariableSetStmt") {
                let this = set
                    .get("name")
                    .and_then(Tree::as_text)
                    .is_some_and(|name| name.eq_ignore_ascii_case(STANDARD_CONFORMING_STRINGS));
                let to_value = set.get("kind").and_then(Tree::as_text) == Some("VAR_SET_VALUE");
                return this && to_value && turns_strings_off(set).is_none();
            }
            statement
                .get("VariableShowStmt")
                .and_then(|show| show.get("name"))
                .and_then(Tree::as_text)
                .is_some_and(|name| name.eq_ignore_ascii_case(STANDARD_CONFORMING_STRINGS))
        })
}

/// The longest `SET standard_conforming_strings = on` (or `SHOW`) [`restores_conforming_strings`]
/// reads.
const MAX_SETTING_STATEMENT_BYTES: usize = 1024;

/// Whether `text` reads the same with `standard_conforming_strings` on or off, so that it may
/// be rewritten while earlier work that could change the setting is unanswered: no `'…'`
/// literal holds a backslash (an `E'…'` string reads its escapes either way, and a comment, a
/// quoted name or a dollar-quoted string has none to read; lexed with the setting on, each
/// token then ends where it would with it off), and it defines nothing (a body is compiled
/// when it is called, with the setting as it is then). psycopg's client-side binding writes a
/// value with a backslash as `E'C:\\dir'`, which reads alike: its pipelined `executemany`
/// need not wait.
pub fn reads_alike_either_way(text: &[u8]) -> bool {
    let Ok(sql) = std::str::from_utf8(text) else {
        return false;
    };
    let mut tokens = Vec::new();
    lexer::lex(sql, &mut tokens).is_some()
        && !mention::starts_definition(text)
        && tokens
            .iter()
            .all(|token| token.kind != Kind::String || !sql[token.start..token.end].contains('\\'))
}

/// The byte offset of the first place in `statement` (a parse tree) that turns
/// `standard_conforming_strings` off or may, or writes `pg_settings`.
pub fn changes_reading(statement: &Tree) -> Option<usize> {
    let defines_view = matches!(statement, Tree::Object(fields)
        if fields.first().is_some_and(|(kind, _)| kind == "ViewStmt"));
    let mut found = None;
    visit(statement, defines_view, &mut found);
    found
}

fn visit(tree: &Tree, defines_view: bool, found: &mut Option<usize>) {
    match tree {
        Tree::Array(items) => items
            .iter()
            .for_each(|item| visit(item, defines_view, found)),
        Tree::Object(fields) => {
            for (key, child) in fields {
                let at = match key.as_ref() {
                    // A value bound as a parameter: the parser read here accepts one (it
                    // normalises statements so), Postgres's grammar does not, and answers the
                    // statement with its own syntax error (this refusal's long reason was
                    // what Django's server-side binding of `SET … = %s` met instead).
                    "VariableSetStmt" | "setstmt" if binds_a_parameter(child) => None,
                    // A statement or a function's option; `setstmt` in `ALTER ROLE … SET`.
                    "VariableSetStmt" | "setstmt" => turns_strings_off(child)
                        .or_else(|| sets_the_version(child))
                        .or_else(|| lowers_client_messages(child)),
                    "FuncCall" => set_config_may_turn_strings_off(child),
                    kind if WRITING_STATEMENTS.contains(&kind) => {
                        child.get("relation").and_then(settings_relation)
                    }
                    "RangeVar" if defines_view => settings_relation(tree),
                    _ => None,
                };
                if let Some(at) = at {
                    *found = Some(found.map_or(at, |earlier| earlier.min(at)));
                }
                visit(child, defines_view, found);
            }
        }
        _ => {}
    }
}

/// Whether a `SET`'s value is a parameter (`$1`), which only the normalising parser reads.
fn binds_a_parameter(set: &Tree) -> bool {
    (set.get("args").map(Tree::as_array).unwrap_or_default())
        .iter()
        .any(|argument| argument.get("ParamRef").is_some())
}

/// `SET standard_conforming_strings` to anything but on (or its default, which a session
/// that has it on at login has on).
fn turns_strings_off(set: &Tree) -> Option<usize> {
    let arguments = sets_outside(set, STANDARD_CONFORMING_STRINGS, is_on)?;
    Some(
        arguments
            .first()
            .and_then(|argument| argument.get("A_Const"))
            .and_then(location)
            .unwrap_or_default(),
    )
}

/// `SET client_min_messages` to anything but a quiet level (`RESET` and `TO DEFAULT` restore
/// the login's, which the startup packet could not lower).
fn lowers_client_messages(set: &Tree) -> Option<usize> {
    sets_outside(set, CLIENT_MIN_MESSAGES, is_quiet_level)
        .map(|_| location(set).unwrap_or_default())
}

/// The arguments of a `SET` of `setting` to a value `allowed` does not accept (a value that
/// is not a constant, or any other kind of SET than to values); `None` for another setting,
/// an allowed value, `RESET` or `TO DEFAULT` (they restore the login's value).
fn sets_outside<'t, 'a>(
    set: &'t Tree<'a>,
    setting: &str,
    allowed: fn(&Tree) -> bool,
) -> Option<&'t [Tree<'a>]> {
    let name = set.get("name").and_then(Tree::as_text)?;
    if !name.eq_ignore_ascii_case(setting) {
        return None;
    }
    let kind = set.get("kind").and_then(Tree::as_text).unwrap_or_default();
    if matches!(kind, "VAR_SET_DEFAULT" | "VAR_RESET") {
        return None;
    }
    let arguments = set.get("args").map(Tree::as_array).unwrap_or_default();
    let within = kind == "VAR_SET_VALUE" && !arguments.is_empty() && arguments.iter().all(allowed);
    (!within).then_some(arguments)
}

/// Whether a constant names a level of `client_min_messages` that sends no LOG or DEBUG
/// message.
fn is_quiet_level(argument: &Tree) -> bool {
    constant(argument)
        .and_then(|constant| constant.get("sval"))
        .and_then(|text| text.get("sval"))
        .and_then(Tree::as_text)
        .is_some_and(is_quiet_level_value)
}

/// Whether a value of `client_min_messages`, as text, sends no LOG or DEBUG message.
pub fn is_quiet_level_value(value: &str) -> bool {
    QUIET_MESSAGE_LEVELS
        .iter()
        .any(|level| value.eq_ignore_ascii_case(level))
}

/// `SET viewgate.version` (or its RESET) that reached the rewriter: not one the proxy
/// recognised and applied itself.
pub fn sets_the_version(set: &Tree) -> Option<usize> {
    set.get("name")
        .and_then(Tree::as_text)
        .is_some_and(|name| name.eq_ignore_ascii_case(VERSION_SETTING))
        .then(|| location(set).unwrap_or_default())
}

/// `set_config(name, value, is_local)` whose name may be `standard_conforming_strings` or
/// `viewgate.version` (it is not a constant, or is one of them) and whose value is not a
/// constant that turns the former on.
fn set_config_may_turn_strings_off(call: &Tree) -> Option<usize> {
    let names = name_parts(call.get("funcname"));
    if !matches!(names.as_slice(), [SET_CONFIG] | [PG_CATALOG, SET_CONFIG]) {
        return None;
    }
    let arguments = call.get("args").map(Tree::as_array).unwrap_or_default();
    let [name, value, ..] = arguments else {
        return None;
    };
    let named = string_constant(name).map(|(name, _)| name);
    if named.is_some_and(|name| name.eq_ignore_ascii_case(VERSION_SETTING)) {
        return Some(location(call).unwrap_or_default());
    }
    if named.is_some_and(|name| name.eq_ignore_ascii_case(CLIENT_MIN_MESSAGES)) {
        return (!is_quiet_level(value)).then(|| location(call).unwrap_or_default());
    }
    let named_other =
        named.is_some_and(|name| !name.eq_ignore_ascii_case(STANDARD_CONFORMING_STRINGS));
    (!named_other && !is_on(value)).then(|| location(call).unwrap_or_default())
}

/// The offset of a `RangeVar` that names `pg_settings` (unqualified or in `pg_catalog`).
fn settings_relation(range_var: &Tree) -> Option<usize> {
    let range_var = range_var.get("RangeVar").unwrap_or(range_var);
    let name = range_var.get("relname").and_then(Tree::as_text)?;
    let schema = range_var.get("schemaname").and_then(Tree::as_text);
    (name == PG_SETTINGS && schema.is_none_or(|schema| schema == PG_CATALOG))
        .then(|| location(range_var).unwrap_or_default())
}

/// Whether a setting's value, as text (a startup packet's or one Postgres reports), reads as on.
/// Anything else counts as off: refusing is the safe side.
pub fn is_on_value(value: &str) -> bool {
    ON_VALUES.iter().any(|on| value.eq_ignore_ascii_case(on))
}

/// Whether an argument is a constant that reads as on.
fn is_on(argument: &Tree) -> bool {
    let Some(constant) = constant(argument) else {
        return false;
    };
    if let Some(number) = constant.get("ival") {
        return number.get("ival").and_then(Tree::as_integer) == Some(1);
    }
    if let Some(boolean) = constant.get("boolval") {
        return boolean.get("boolval").and_then(Tree::as_bool) == Some(true);
    }
    constant
        .get("sval")
        .and_then(|text| text.get("sval"))
        .and_then(Tree::as_text)
        .is_some_and(is_on_value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(sql: &str) -> bool {
        let json = postgres_parser::parse(sql).unwrap();
        let tree = Tree::read(json.text().unwrap()).unwrap();
        tree.get("stmts")
            .map(Tree::as_array)
            .unwrap_or_default()
            .iter()
            .filter_map(|raw| raw.get("stmt"))
            .any(|statement| changes_reading(statement).is_some())
    }

    /// Found by the sixteenth red-team pass: with `client_min_messages = log` and
    /// `debug_print_rewritten = on`, the query tree, naming every base column and its type,
    /// came back as a LOG notice.
    #[test]
    fn lowering_client_messages_is_found_and_quiet_levels_are_not() {
        for sql in [
            "SET client_min_messages = log",
            "SET LOCAL client_min_messages TO debug1",
            "SET \"CLIENT_MIN_MESSAGES\" = 'DEBUG5'",
            "SET client_min_messages FROM CURRENT",
            "SELECT set_config('client_min_messages', 'log', false)",
            "SELECT set_config('client_min_messages', $1, true)",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET client_min_messages = log AS 'SELECT 1'",
            "ALTER ROLE app SET client_min_messages = debug",
        ] {
            assert!(changes(sql), "{sql}");
        }
        for sql in [
            "SET client_min_messages = warning",
            "SET client_min_messages TO 'ERROR'",
            "RESET client_min_messages",
            "SET client_min_messages TO DEFAULT",
            "SELECT set_config('client_min_messages', 'notice', false)",
            "SET debug_print_parse = on",
        ] {
            assert!(!changes(sql), "{sql}");
        }
    }

    #[test]
    fn turning_conforming_strings_off_is_found_by_every_spelling() {
        for sql in [
            "SET standard_conforming_strings = off",
            "SET SESSION standard_conforming_strings TO false",
            "SET LOCAL standard_conforming_strings = 'off'",
            "SET \"STANDARD_CONFORMING_STRINGS\" = 0",
            "SET U&\"standard\\005fconforming_strings\" = off",
            "SET standard_conforming_strings FROM CURRENT",
            "SELECT set_config('standard_conforming_strings', 'off', false)",
            "SELECT pg_catalog.set_config('standard_conforming_strings', $1, false)",
            "SELECT set_config('standard_' || 'conforming_strings', 'off', false)",
            "SELECT set_config($1, 'off', false)",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET standard_conforming_strings = off AS 'SELECT 1'",
            "ALTER FUNCTION f() SET standard_conforming_strings = off",
            "ALTER ROLE app SET standard_conforming_strings = off",
            "ALTER DATABASE app SET standard_conforming_strings TO off",
        ] {
            assert!(changes(sql), "{sql}");
        }
    }

    #[test]
    fn turning_it_on_and_other_settings_are_not() {
        for sql in [
            "SET standard_conforming_strings = on",
            "SET standard_conforming_strings TO true",
            "SET standard_conforming_strings = 1",
            "SET standard_conforming_strings TO DEFAULT",
            "RESET standard_conforming_strings",
            "RESET ALL",
            "SHOW standard_conforming_strings",
            "SELECT set_config('standard_conforming_strings', 'on', false)",
            "SELECT set_config('application_name', $1, false)",
            "SET application_name = 'off'",
            "SELECT name, setting FROM pg_settings WHERE name = 'search_path'",
            "SELECT * FROM pg_catalog.pg_settings",
            "UPDATE settings SET setting = 'x'",
        ] {
            assert!(!changes(sql), "{sql}");
        }
    }

    /// The ninth red-team pass set the server's `viewgate.version`, which the sync triggers
    /// read, past the proxy (which kept answering v1).
    #[test]
    fn changes_of_the_version_setting_the_proxy_did_not_make_are_found() {
        for sql in [
            "SET \"viewgate\".version = 'viewgate_backfill'",
            "SET viewgate.version = 'v2'; SELECT 1",
            "SELECT set_config('viewgate.version', 'v2', false)",
            "SELECT pg_catalog.set_config('VIEWGATE.VERSION', 'v2', true)",
            "RESET viewgate.version; SELECT 1",
            "ALTER ROLE app SET viewgate.version = 'v2'",
        ] {
            assert!(changes(sql), "{sql}");
        }
        assert!(!changes("SELECT current_setting('viewgate.version', true)"));
    }

    #[test]
    fn a_session_with_strings_off_may_only_turn_them_back_on() {
        for sql in [
            "SET standard_conforming_strings = on",
            "set standard_conforming_strings to 'on'; show standard_conforming_strings",
            "SET SESSION standard_conforming_strings TO true",
        ] {
            assert!(restores_conforming_strings(sql), "{sql}");
        }
        for sql in [
            "RESET standard_conforming_strings",
            "RESET ALL",
            "SET SESSION standard_conforming_strings TO DEFAULT",
            "SET standard_conforming_strings = off",
            "SET standard_conforming_strings = on; SELECT 1",
            "SELECT 'a\\' AS x",
            "SHOW search_path",
            "",
            "SET standard_conforming_strings = on; SELECT f()",
        ] {
            assert!(!restores_conforming_strings(sql), "{sql}");
        }
    }

    #[test]
    fn writes_to_pg_settings_and_views_over_it_are_found() {
        for sql in [
            "UPDATE pg_settings SET setting = 'information_sch' || 'ema' WHERE name = 'search' || '_path'",
            "UPDATE pg_catalog.pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
            "UPDATE U&\"pg\\005fsettings\" SET setting = 'x'",
            "WITH s AS (UPDATE pg_settings SET setting = 'x' RETURNING 1) SELECT * FROM s",
            "DELETE FROM pg_settings",
            "INSERT INTO pg_settings (name) VALUES ('x')",
            "CREATE VIEW s AS SELECT * FROM pg_settings",
            "CREATE RULE r AS ON INSERT TO t DO INSTEAD UPDATE pg_settings SET setting = 'x'",
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC UPDATE pg_settings SET setting = 'x'; END",
        ] {
            assert!(changes(sql), "{sql}");
        }
    }
}
