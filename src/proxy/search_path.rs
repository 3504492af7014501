//! The client's `search_path`, as far as the proxy can follow it, so a shadow run resolves a
//! sampled statement's names as the client's session does: from the startup packet (a
//! `search_path` parameter or `-c search_path=…` in `options`), then each simple-protocol
//! `SET [SESSION] search_path {TO|=} …` and `RESET search_path` / `SET search_path TO DEFAULT`.
//! Not followed: `SET LOCAL`, `set_config(…)`, a SET whose transaction rolls back, and the
//! role's or database's own default (the shadow connection's default applies). The value is
//! kept in the form `SHOW search_path` prints (every element double-quoted), and is only ever
//! passed to Postgres as a bound parameter.

use crate::protocol::startup::startup_setting;
use crate::rewriter::lexer::{self, Kind, Token};

/// The setting's name.
const SEARCH_PATH: &str = "search_path";
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
    lexer::lex(sql, tokens)?;
    let words: Vec<&Token> = tokens
        .iter()
        .filter(|token| token.kind != Kind::Comment)
        .collect();
    let mut last = None;
    for statement in words.split(|token| text(sql, token) == ";") {
        if let Some(found) = statement_change(sql, statement) {
            last = Some(found);
        }
    }
    last
}

fn text<'a>(sql: &'a str, token: &Token) -> &'a str {
    sql.get(token.start..token.end).unwrap_or_default()
}

fn is_word(sql: &str, token: &Token, word: &str) -> bool {
    token.kind == Kind::Word && text(sql, token).eq_ignore_ascii_case(word)
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
}
