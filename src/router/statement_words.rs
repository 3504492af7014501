//! The words of a query string's statements, for the router's readers of session commands
//! (`search_path`, `savepoints`, `temporary_relations`): one lexer pass, comments left out,
//! split at top-level semicolons, each statement with the byte offset where it ends. And the
//! token list of a statement that must be one command as a whole (`version_command`,
//! `savepoints`).

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token as SqlToken, Tokenizer};

use crate::model::identifier;
use crate::rewriter::lexer::{self, Kind, Token};

/// The statements of `sql`, lexed into `tokens`: each as the byte offset where it ends (after
/// its `;`, or the end of the text) and its words. `None` when the lexer cannot read it.
pub fn statements<'t>(
    sql: &str,
    tokens: &'t mut Vec<Token>,
) -> Option<Vec<(usize, Vec<&'t Token>)>> {
    lexer::lex(sql, tokens)?;
    let tokens: &'t Vec<Token> = tokens;
    let mut found = Vec::new();
    let mut current = Vec::new();
    for token in tokens.iter().filter(|token| token.kind != Kind::Comment) {
        if text(sql, token) == ";" {
            found.push((token.end, std::mem::take(&mut current)));
        } else {
            current.push(token);
        }
    }
    found.push((sql.len(), current));
    Some(found)
}

/// A token's text.
pub fn text<'a>(sql: &'a str, token: &Token) -> &'a str {
    sql.get(token.start..token.end).unwrap_or_default()
}

/// Whether `token` is the unquoted word `word`, in any case.
pub fn is_word(sql: &str, token: &Token, word: &str) -> bool {
    token.kind == Kind::Word && text(sql, token).eq_ignore_ascii_case(word)
}

/// An identifier token's name as Postgres folds it (unquoted: lower case; `"…"`: as written,
/// `""` read as `"`), truncated to [`identifier::MAX_IDENTIFIER_BYTES`]; `None` for other tokens.
pub fn identifier(sql: &str, token: &Token) -> Option<String> {
    let raw = text(sql, token);
    let mut name = match token.kind {
        Kind::Word => raw.to_ascii_lowercase(),
        Kind::QuotedIdentifier => raw.get(1..raw.len().checked_sub(1)?)?.replace("\"\"", "\""),
        _ => return None,
    };
    truncate_identifier(&mut name);
    Some(name)
}

/// Truncates `name` to [`identifier::MAX_IDENTIFIER_BYTES`] on a character boundary, as Postgres does.
pub fn truncate_identifier(name: &mut String) {
    name.truncate(identifier::truncate_identifier(name).len());
}

/// sqlparser's tokens of `sql` read as one command: whitespace and comments left out, and a
/// trailing semicolon; `None` when it does not tokenize.
pub fn command_tokens(sql: &str) -> Option<Vec<SqlToken>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut tokens: Vec<SqlToken> = tokens
        .into_iter()
        .filter(|t| !matches!(t, SqlToken::Whitespace(_) | SqlToken::EOF))
        .collect();
    if tokens.last() == Some(&SqlToken::SemiColon) {
        tokens.pop();
    }
    Some(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_at_top_level_semicolons_without_comments() {
        let sql = "SET a = ';'; /* ; */ SELECT 1 -- x;\n; DO $$ ; $$";
        let mut tokens = Vec::new();
        let found: Vec<(usize, Vec<&str>)> = statements(sql, &mut tokens)
            .unwrap()
            .into_iter()
            .map(|(end, words)| (end, words.iter().map(|t| text(sql, t)).collect()))
            .collect();
        assert_eq!(
            found,
            vec![
                (12, vec!["SET", "a", "=", "';'"]),
                (sql.rfind("; DO").unwrap() + 1, vec!["SELECT", "1"]),
                (sql.len(), vec!["DO", "$$ ; $$"]),
            ]
        );
    }

    #[test]
    fn identifiers_fold_as_postgres_folds_them() {
        let sql = "Model_Metadata \"Odd\"\"Name\" 'x'";
        let mut tokens = Vec::new();
        lexer::lex(sql, &mut tokens).unwrap();
        let names: Vec<Option<String>> = tokens.iter().map(|t| identifier(sql, t)).collect();
        assert_eq!(
            names,
            vec![
                Some("model_metadata".into()),
                Some("Odd\"Name".into()),
                None
            ]
        );
        let mut long = "é".repeat(40);
        truncate_identifier(&mut long);
        assert_eq!(long.len(), 62);
    }
}
