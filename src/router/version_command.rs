//! Recognises the statements that declare or ask for a session's version:
//! `SET [SESSION] viewgate.version {=|TO} v2`, `SET viewgate.version TO DEFAULT`,
//! `RESET viewgate.version` and `SHOW viewgate.version`.
//!
//! Tokenized with sqlparser's tokenizer, so comments, quoting and case are handled as Postgres
//! does. Only whole-statement forms are recognised; anything else is ordinary SQL.

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::Token;

use crate::protocol::startup::startup_setting;
use crate::rewriter::rewrite::contains_ignore_ascii_case;

pub use crate::model::catalog_substitutes::VERSION_SETTING;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionCommand {
    Set(String),
    /// RESET, or SET … TO DEFAULT: back to what startup or routing decided.
    Reset,
    /// `SET LOCAL`: applies to one transaction, which viewgate does not split; refused.
    SetLocal,
    Show,
}

/// The version command `sql` is, if it is one (a trailing semicolon is allowed).
pub fn parse(sql: &str) -> Option<VersionCommand> {
    // The cheap test first: most statements never mention the setting.
    if !contains_ignore_ascii_case(sql.as_bytes(), VERSION_SETTING.as_bytes()) {
        return None;
    }
    let tokens = super::statement_words::command_tokens(sql)?;
    let keyword = |t: &Token| match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    };
    let is_setting = |t: &[Token]| {
        matches!(t, [Token::Word(a), Token::Period, Token::Word(b)]
            if a.value.eq_ignore_ascii_case("viewgate") && b.value.eq_ignore_ascii_case("version"))
    };
    match tokens.as_slice() {
        [first, rest @ ..] if keyword(first) == Some(Keyword::SHOW) && is_setting(rest) => {
            Some(VersionCommand::Show)
        }
        [first, rest @ ..] if keyword(first) == Some(Keyword::RESET) && is_setting(rest) => {
            Some(VersionCommand::Reset)
        }
        [first, rest @ ..] if keyword(first) == Some(Keyword::SET) => {
            let (local, rest) = match rest.first().and_then(keyword) {
                Some(Keyword::SESSION) => (false, &rest[1..]),
                Some(Keyword::LOCAL) => (true, &rest[1..]),
                _ => (false, rest),
            };
            if rest.len() != 5 || !is_setting(&rest[..3]) {
                return None;
            }
            if !(rest[3] == Token::Eq || keyword(&rest[3]) == Some(Keyword::TO)) {
                return None;
            }
            if local {
                return Some(VersionCommand::SetLocal);
            }
            match &rest[4] {
                Token::SingleQuotedString(value) => Some(VersionCommand::Set(value.clone())),
                Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::DEFAULT => {
                    Some(VersionCommand::Reset)
                }
                Token::Word(w) => Some(VersionCommand::Set(if w.quote_style.is_some() {
                    w.value.clone()
                } else {
                    w.value.to_ascii_lowercase()
                })),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The version a startup packet declares: a `viewgate.version` parameter, or
/// `-c viewgate.version=…` / `--viewgate.version=…` inside `options` (the last one wins).
pub fn from_startup(params: &[(String, String)]) -> Option<String> {
    startup_setting(params, VERSION_SETTING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_every_form() {
        let set = |v: &str| Some(VersionCommand::Set(v.into()));
        assert_eq!(parse("SET viewgate.version = 'v2'"), set("v2"));
        assert_eq!(parse("set SESSION Viewgate.Version to v2;"), set("v2"));
        assert_eq!(parse("SET viewgate.version TO \"V2\""), set("V2"));
        assert_eq!(parse("/* c */ SET viewgate.version = V3"), set("v3"));
        assert_eq!(
            parse("SET viewgate.version TO DEFAULT"),
            Some(VersionCommand::Reset)
        );
        assert_eq!(parse("RESET viewgate.version"), Some(VersionCommand::Reset));
        assert_eq!(parse("SHOW viewgate.version"), Some(VersionCommand::Show));
        assert_eq!(
            parse("SET LOCAL viewgate.version = 'v2'"),
            Some(VersionCommand::SetLocal)
        );
        assert_eq!(parse("SELECT 'SET viewgate.version = v2'"), None);
        assert_eq!(parse("SET viewgate.version = 'v2'; SELECT 1"), None);
        assert_eq!(parse("SELECT 1"), None);
    }

    #[test]
    fn reads_startup_declarations() {
        let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            from_startup(&params(&[("viewgate.version", "v2")])),
            Some("v2".into())
        );
        assert_eq!(
            from_startup(&params(&[(
                "options",
                "-c statement_timeout=5s -c viewgate.version=v1"
            )])),
            Some("v1".into())
        );
        assert_eq!(
            from_startup(&params(&[("options", "-cviewgate.version=v3")])),
            Some("v3".into())
        );
        assert_eq!(
            from_startup(&params(&[("options", "--viewgate.version=v4")])),
            Some("v4".into())
        );
        assert_eq!(
            from_startup(&params(&[("options", "-c search_path=x")])),
            None
        );
    }
}
