//! The client's `search_path` as statements change it, for two readers: the router, which
//! resolves unqualified managed names on it (`session_search_path`), and shadow runs, which
//! replay a sampled statement under it.
//!
//! Recognised: the startup packet (a `search_path` parameter or `-c search_path=…` in
//! `options`); `SET [SESSION | LOCAL] search_path {TO|=} …`, `… TO DEFAULT`, `RESET
//! search_path`, `RESET ALL`, `DISCARD ALL`; and `set_config('search_path', '…', true|false)`
//! with literal arguments. A statement that changes the search_path in another way (a
//! `set_config` with parameters, a SET whose value cannot be read) is reported as
//! [`PathCommand::Unknown`]. Values are kept in the form `SHOW search_path` prints (every
//! element double-quoted) and read back into schema names by [`parse_list`], as Postgres's
//! `SplitIdentifierString` does; a value is only ever passed to Postgres as a bound parameter.
//!
//! [`change`] is the shadow runs' narrower reading (session-level SET and RESET only).

use super::statement_words::{self, is_word, text, truncate_identifier};
use crate::model::catalog_substitutes::{SEARCH_PATH, SET_CONFIG};
use crate::protocol::startup::startup_setting;
use crate::rewriter::lexer::{Kind, Token};

/// Words without which a statement that does not name the search_path cannot change it:
/// RESET and DISCARD, a role change, and `set_config` with a bound setting name.
const USER_OR_RESET_WORDS: [&str; 5] = ["reset", "discard", "role", "authorization", SET_CONFIG];
/// A longer value is not followed (the client's session is treated as unknown).
pub const MAX_SEARCH_PATH_LEN: usize = 4096;

/// What a statement does to the search_path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchPathChange {
    /// Set to this value.
    Set(String),
    /// Back to the server's default.
    Reset,
}

/// The search_path a startup packet sets, if any.
pub fn from_startup(params: &[(String, String)]) -> Option<String> {
    startup_setting(params, SEARCH_PATH).filter(|value| value.len() <= MAX_SEARCH_PATH_LEN)
}

/// What a simple Query's text does to the search_path: the last change among its statements,
/// or `None` (cheaply, without lexing, for text that does not mention it).
pub fn change(sql: &str, tokens: &mut Vec<Token>) -> Option<SearchPathChange> {
    if sql.len() > MAX_SEARCH_PATH_LEN
        || !crate::rewriter::rewrite::contains_ignore_ascii_case(
            sql.as_bytes(),
            SEARCH_PATH.as_bytes(),
        )
    {
        return None;
    }
    statement_words::statements(sql, tokens)?
        .into_iter()
        .rev()
        .find_map(|(_, words)| statement_change(sql, &words))
}

/// What a statement does to the search_path, as the router follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathCommand {
    /// Set to this value (in `SHOW` form, or as `set_config` was given it); `local`: for the
    /// rest of the transaction only.
    Set { value: String, local: bool },
    /// Back to the session's value at its start (`local`: `SET LOCAL … TO DEFAULT`).
    Reset { local: bool },
    /// Changed in a way the proxy cannot read.
    Unknown { local: bool },
    /// `DISCARD ALL`: back to the session's start value, and the role to the login user's.
    Discard,
    /// The current user changed, so `$user` in the path may name another schema.
    Role(RoleChange),
}

/// How a statement changes the current user (the role `$user` stands for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// `SET [SESSION | LOCAL] ROLE name`, `set_config('role', …)`, or a DO block that may.
    Set,
    /// `RESET ROLE`, `SET ROLE NONE`.
    Reset,
    /// `SET [SESSION | LOCAL] SESSION AUTHORIZATION name`.
    SetAuthorization,
    /// `SET SESSION AUTHORIZATION DEFAULT`, `RESET SESSION AUTHORIZATION`.
    ResetAuthorization,
}

/// What a Query's or Parse's text does to the search_path: the last change among its
/// statements, or `None`. See [`commands`].
pub fn command(sql: &str, tokens: &mut Vec<Token>) -> Option<PathCommand> {
    commands(sql, tokens).pop().map(|(_, command)| command)
}

/// Every change a Query's or Parse's text makes to the search_path, in order, each with the
/// byte offset where its statement ends (after its `;`, or the end of the text): empty,
/// cheaply and without lexing, for text that mentions none of `search_path`, `reset` and
/// `discard`. Text the lexer cannot read, or longer than [`MAX_SEARCH_PATH_LEN`], that
/// mentions `search_path` changes it unknowably at its end.
pub fn commands(sql: &str, tokens: &mut Vec<Token>) -> Vec<(usize, PathCommand)> {
    let mentions = |word: &str| {
        crate::rewriter::rewrite::contains_ignore_ascii_case(sql.as_bytes(), word.as_bytes())
    };
    let named = mentions(SEARCH_PATH);
    if !named && !USER_OR_RESET_WORDS.iter().any(|word| mentions(word)) {
        return Vec::new();
    }
    let statements = match sql.len() > MAX_SEARCH_PATH_LEN {
        true => None,
        false => statement_words::statements(sql, tokens),
    };
    let Some(statements) = statements else {
        return match named {
            true => vec![(sql.len(), PathCommand::Unknown { local: false })],
            false => Vec::new(),
        };
    };
    statements
        .into_iter()
        .filter_map(|(end, words)| Some((end, statement_command(sql, &words)?)))
        .collect()
}

fn statement_command(sql: &str, tokens: &[&Token]) -> Option<PathCommand> {
    match tokens {
        [first, all] if is_word(sql, first, "RESET") && is_word(sql, all, "ALL") => {
            return Some(PathCommand::Reset { local: false });
        }
        [first, all] if is_word(sql, first, "DISCARD") && is_word(sql, all, "ALL") => {
            return Some(PathCommand::Discard);
        }
        _ => {}
    }
    if let Some(change) = role_change(sql, tokens) {
        return Some(PathCommand::Role(change));
    }
    if let Some(command) = do_block_command(sql, tokens) {
        return Some(command);
    }
    if let Some(change) = statement_change(sql, tokens) {
        return Some(match change {
            SearchPathChange::Set(value) => PathCommand::Set {
                value,
                local: false,
            },
            SearchPathChange::Reset => PathCommand::Reset { local: false },
        });
    }
    if let [set, local, name, ..] = tokens
        && is_word(sql, set, "SET")
        && is_word(sql, local, "LOCAL")
        && is_word(sql, name, SEARCH_PATH)
    {
        let mut session_form: Vec<&Token> = Vec::with_capacity(tokens.len() - 1);
        session_form.push(set);
        session_form.extend_from_slice(&tokens[2..]);
        return Some(match statement_change(sql, &session_form) {
            Some(SearchPathChange::Set(value)) => PathCommand::Set { value, local: true },
            Some(SearchPathChange::Reset) => PathCommand::Reset { local: true },
            None => PathCommand::Unknown { local: true },
        });
    }
    let set_path = tokens.iter().any(|token| is_word(sql, token, SEARCH_PATH))
        && matches!(tokens.first(), Some(first) if is_word(sql, first, "SET"));
    if set_path {
        return Some(PathCommand::Unknown { local: false });
    }
    set_config_call(sql, tokens)
}

/// `SET [SESSION | LOCAL] ROLE …`, `SET [SESSION | LOCAL] SESSION AUTHORIZATION …`,
/// `RESET ROLE`, `RESET SESSION AUTHORIZATION`.
fn role_change(sql: &str, tokens: &[&Token]) -> Option<RoleChange> {
    let (first, rest) = tokens.split_first()?;
    let reset = is_word(sql, first, "RESET");
    if !reset && !is_word(sql, first, "SET") {
        return None;
    }
    let keyword = rest
        .iter()
        .take(3)
        .position(|token| is_word(sql, token, "ROLE") || is_word(sql, token, "AUTHORIZATION"))?;
    let authorization = is_word(sql, rest[keyword], "AUTHORIZATION");
    let back = reset
        || rest.get(keyword + 1).is_some_and(|token| {
            is_word(sql, token, if authorization { "DEFAULT" } else { "NONE" })
        });
    Some(match (authorization, back) {
        (false, false) => RoleChange::Set,
        (false, true) => RoleChange::Reset,
        (true, false) => RoleChange::SetAuthorization,
        (true, true) => RoleChange::ResetAuthorization,
    })
}

/// A DO block whose body mentions the search_path or the role may change either where the
/// proxy cannot follow.
fn do_block_command(sql: &str, tokens: &[&Token]) -> Option<PathCommand> {
    let first = tokens.first()?;
    if !is_word(sql, first, "DO") {
        return None;
    }
    let body_mentions = |word: &str| {
        tokens.iter().any(|token| {
            crate::rewriter::rewrite::contains_ignore_ascii_case(
                text(sql, token).as_bytes(),
                word.as_bytes(),
            )
        })
    };
    if body_mentions(SEARCH_PATH) {
        Some(PathCommand::Unknown { local: false })
    } else if body_mentions("role") || body_mentions("authorization") {
        Some(PathCommand::Role(RoleChange::Set))
    } else {
        None
    }
}

/// The last `set_config('search_path', …)` call in a statement: with literal arguments
/// followed, otherwise unknown. Calls that set other settings by a literal name are ignored.
fn set_config_call(sql: &str, tokens: &[&Token]) -> Option<PathCommand> {
    let mut found = None;
    for (index, token) in tokens.iter().enumerate() {
        if !is_word(sql, token, SET_CONFIG)
            || tokens.get(index + 1).map(|t| text(sql, t)) != Some("(")
        {
            continue;
        }
        let args = &tokens[index + 2..];
        let literal = |token: Option<&&Token>| -> Option<String> {
            let token = token?;
            let raw = text(sql, token);
            match token.kind {
                Kind::String | Kind::EscapeString if !raw.contains('\\') => {
                    let start = raw.find('\'')? + 1;
                    Some(raw.get(start..raw.len() - 1)?.replace("''", "'"))
                }
                _ => None,
            }
        };
        match literal(args.first()) {
            Some(name)
                if name.eq_ignore_ascii_case("role")
                    || name.eq_ignore_ascii_case("session_authorization") =>
            {
                found = Some(PathCommand::Role(RoleChange::Set));
                continue;
            }
            Some(name) if !name.eq_ignore_ascii_case(SEARCH_PATH) => continue,
            Some(_) => {}
            None => {
                found = Some(PathCommand::Unknown { local: false });
                continue;
            }
        }
        let punct = |i: usize, p: &str| args.get(i).map(|t| text(sql, t)) == Some(p);
        let local = args.get(4).and_then(|token| {
            let raw = text(sql, token).to_ascii_lowercase();
            match (token.kind, raw.as_str()) {
                (Kind::Word, "true") | (Kind::String, "'t'" | "'true'") => Some(true),
                (Kind::Word, "false") | (Kind::String, "'f'" | "'false'") => Some(false),
                _ => None,
            }
        });
        found = Some(
            match (
                punct(1, ","),
                literal(args.get(2)),
                punct(3, ","),
                local,
                punct(5, ")"),
            ) {
                (true, Some(value), true, Some(local), true) => PathCommand::Set { value, local },
                _ => PathCommand::Unknown { local: false },
            },
        );
    }
    found
}

/// A search_path value read into its schema names, as Postgres's `SplitIdentifierString`
/// does: comma-separated, unquoted names folded to lower case, `"…"` with `""` for a quote,
/// names truncated to 63 bytes; `None` for a value Postgres would reject.
pub fn parse_list(value: &str) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut rest = value.trim_start();
    if rest.is_empty() {
        return Some(names);
    }
    loop {
        let mut name;
        if let Some(quoted) = rest.strip_prefix('"') {
            name = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                if c == '"' {
                    if quoted[i + 1..].starts_with('"') {
                        name.push('"');
                        chars.next();
                        continue;
                    }
                    break i + 1;
                }
                name.push(c);
            };
            rest = &quoted[end..];
        } else {
            let end = rest
                .find(|c: char| c == ',' || c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            name = rest[..end].to_ascii_lowercase();
            rest = &rest[end..];
        }
        truncate_identifier(&mut name);
        names.push(name);
        rest = rest.trim_start();
        match rest.strip_prefix(',') {
            Some(after) => rest = after.trim_start(),
            None if rest.is_empty() => return Some(names),
            None => return None,
        }
    }
}

fn statement_change(sql: &str, tokens: &[&Token]) -> Option<SearchPathChange> {
    let (first, rest) = tokens.split_first()?;
    if is_word(sql, first, "RESET") {
        return match rest {
            [name] if is_word(sql, name, SEARCH_PATH) => Some(SearchPathChange::Reset),
            _ => None,
        };
    }
    if !is_word(sql, first, "SET") {
        return None;
    }
    let rest = match rest {
        [session, rest @ ..] if is_word(sql, session, "SESSION") => rest,
        rest => rest,
    };
    let [name, assign, values @ ..] = rest else {
        return None;
    };
    if !is_word(sql, name, SEARCH_PATH) || !(is_word(sql, assign, "TO") || text(sql, assign) == "=")
    {
        return None;
    }
    if let [default] = values
        && is_word(sql, default, "DEFAULT")
    {
        return Some(SearchPathChange::Reset);
    }
    let mut elements = Vec::new();
    for (index, token) in values.iter().enumerate() {
        if index % 2 == 1 {
            if text(sql, token) != "," {
                return None;
            }
            continue;
        }
        let raw = text(sql, token);
        let name = match token.kind {
            Kind::Word => raw.to_lowercase(),
            Kind::QuotedIdentifier => raw.get(1..raw.len() - 1)?.replace("\"\"", "\""),
            Kind::String | Kind::EscapeString if !raw.contains('\\') => {
                let start = raw.find('\'')? + 1;
                raw.get(start..raw.len() - 1)?.replace("''", "'")
            }
            _ => return None,
        };
        elements.push(format!("\"{}\"", name.replace('"', "\"\"")));
    }
    if elements.is_empty() {
        return None;
    }
    Some(SearchPathChange::Set(elements.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn startup_forms() {
        assert_eq!(
            from_startup(&params(&[("search_path", "app, public")])).as_deref(),
            Some("app, public")
        );
        assert_eq!(
            from_startup(&params(&[("options", "-c search_path=app,public -c x=y")])).as_deref(),
            Some("app,public")
        );
        assert_eq!(
            from_startup(&params(&[("options", "--search_path=app")])).as_deref(),
            Some("app")
        );
        assert_eq!(from_startup(&params(&[("options", "-c x=y")])), None);
    }

    #[test]
    fn set_and_reset_statements() {
        let mut tokens = Vec::new();
        let set = |v: &str| Some(SearchPathChange::Set(v.to_owned()));
        assert_eq!(
            change("SET search_path TO App, \"B\"\"x\", 'c d'", &mut tokens),
            set("\"app\", \"B\"\"x\", \"c d\"")
        );
        assert_eq!(
            change("set session search_path = '$user', public;", &mut tokens),
            set("\"$user\", \"public\"")
        );
        assert_eq!(
            change("SET search_path TO DEFAULT", &mut tokens),
            Some(SearchPathChange::Reset)
        );
        assert_eq!(
            change("SELECT 1; RESET search_path", &mut tokens),
            Some(SearchPathChange::Reset)
        );
        assert_eq!(change("SET LOCAL search_path TO a", &mut tokens), None);
        assert_eq!(change("SELECT 'search_path'", &mut tokens), None);
        assert_eq!(change("SET search_path TO a b", &mut tokens), None);
        assert_eq!(change("SET search_path TO", &mut tokens), None);
        assert_eq!(change("SELECT 1", &mut tokens), None);
    }

    #[test]
    fn the_router_reads_local_sets_set_config_and_unknown_changes() {
        let mut tokens = Vec::new();
        let set = |v: &str, local: bool| {
            Some(PathCommand::Set {
                value: v.to_owned(),
                local,
            })
        };
        assert_eq!(
            command("SET LOCAL search_path TO a, public", &mut tokens),
            set("\"a\", \"public\"", true)
        );
        assert_eq!(
            command("set local search_path = default", &mut tokens),
            Some(PathCommand::Reset { local: true })
        );
        assert_eq!(
            command("SET search_path TO a", &mut tokens),
            set("\"a\"", false)
        );
        assert_eq!(
            command(
                "SELECT pg_catalog.set_config('search_path', 'x, \"Y\"', false)",
                &mut tokens
            ),
            set("x, \"Y\"", false)
        );
        assert_eq!(
            command("select set_config('SEARCH_PATH', '', true);", &mut tokens),
            set("", true)
        );
        assert_eq!(
            command("SELECT set_config('search_path', $1, false)", &mut tokens),
            Some(PathCommand::Unknown { local: false })
        );
        assert_eq!(
            command(
                "SELECT set_config($1, 'a', false) -- search_path",
                &mut tokens
            ),
            Some(PathCommand::Unknown { local: false })
        );
        assert_eq!(
            command("SELECT set_config('work_mem', '1MB', false)", &mut tokens),
            None
        );
        assert_eq!(
            command("SET search_path TO a b", &mut tokens),
            Some(PathCommand::Unknown { local: false })
        );
        assert_eq!(
            command("SET LOCAL search_path TO a b", &mut tokens),
            Some(PathCommand::Unknown { local: true })
        );
        assert_eq!(
            command("RESET ALL", &mut tokens),
            Some(PathCommand::Reset { local: false })
        );
        assert_eq!(
            command("discard all", &mut tokens),
            Some(PathCommand::Discard)
        );
        // A bound setting name may be the search_path.
        assert_eq!(
            command("SELECT pg_catalog.set_config($1, $2, false)", &mut tokens),
            Some(PathCommand::Unknown { local: false })
        );
        // Role changes move `$user`.
        for (sql, change) in [
            ("SET ROLE alice", RoleChange::Set),
            ("set local role none", RoleChange::Reset),
            ("SET SESSION ROLE alice", RoleChange::Set),
            (
                "SET SESSION AUTHORIZATION alice",
                RoleChange::SetAuthorization,
            ),
            (
                "SET LOCAL SESSION AUTHORIZATION DEFAULT",
                RoleChange::ResetAuthorization,
            ),
            ("RESET ROLE", RoleChange::Reset),
            (
                "reset session authorization",
                RoleChange::ResetAuthorization,
            ),
            ("SELECT set_config('role', 'alice', false)", RoleChange::Set),
            (
                "DO $$ BEGIN EXECUTE 'SET ROLE alice'; END $$",
                RoleChange::Set,
            ),
        ] {
            assert_eq!(
                command(sql, &mut tokens),
                Some(PathCommand::Role(change)),
                "{sql}"
            );
        }
        assert_eq!(
            command(
                "DO $$ BEGIN PERFORM set_config('search_path', 'x', false); END $$",
                &mut tokens
            ),
            Some(PathCommand::Unknown { local: false })
        );
        assert_eq!(command("DO $$ BEGIN PERFORM 1; END $$", &mut tokens), None);
        assert_eq!(command("SELECT role FROM grants", &mut tokens), None);
        assert_eq!(
            command(
                "SELECT set_config('application_name', 'reset', false)",
                &mut tokens
            ),
            None
        );
        assert_eq!(command("SHOW search_path", &mut tokens), None);
        assert_eq!(
            command("SELECT current_setting('search_path')", &mut tokens),
            None
        );
        assert_eq!(command("RESET work_mem", &mut tokens), None);
        assert_eq!(command("SELECT 1", &mut tokens), None);
        let sql = "SET search_path TO a; SELECT 1; RESET search_path";
        assert_eq!(
            commands(sql, &mut tokens),
            vec![
                (21, set("\"a\"", false).unwrap()),
                (sql.len(), PathCommand::Reset { local: false })
            ]
        );
    }

    #[test]
    fn lists_read_as_postgres_splits_them() {
        let list = |v: &str| parse_list(v).map(|names| names.join("|"));
        assert_eq!(list("\"$user\", public").as_deref(), Some("$user|public"));
        assert_eq!(list(" App ,\"B\"\"x\"").as_deref(), Some("app|B\"x"));
        assert_eq!(list("").as_deref(), Some(""));
        assert_eq!(list("a,,b"), None);
        assert_eq!(list("a b"), None);
        assert_eq!(list("\"open"), None);
        let long = "x".repeat(70);
        assert_eq!(
            parse_list(&long).unwrap()[0].len(),
            crate::model::identifier::MAX_IDENTIFIER_BYTES
        );
    }
}
