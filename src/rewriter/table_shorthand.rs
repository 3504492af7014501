//! `TABLE [ONLY] name`, Postgres's shorthand for `SELECT * FROM name`: sqlparser reads no
//! relation reference in it, so the whole statement's name is the edit.

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::Token;

use super::identifier::fold_identifier;
use super::splice::{Edit, TextIndex};
use super::statements::StatementText;
use super::targets::VersionTargets;

/// `TABLE [ONLY] name`: the whole statement is the relation.
pub fn edits(statement: &StatementText, index: &TextIndex, targets: &VersionTargets) -> Vec<Edit> {
    let words: Vec<_> = statement
        .tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let mut rest = &words[1..];
    if let Some(first) = rest.first()
        && matches!(&first.token, Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::ONLY)
    {
        rest = &rest[1..];
    }
    let mut names = Vec::new();
    for (i, token) in rest.iter().enumerate() {
        match (&token.token, i % 2) {
            (Token::Word(word), 0) => {
                names.push(fold_identifier(&word.value, word.quote_style.is_some()))
            }
            (Token::Period, 1) => {}
            _ => return Vec::new(),
        }
    }
    let (Some(name), Some(first), Some(last)) = (names.pop(), rest.first(), rest.last()) else {
        return Vec::new();
    };
    let schema = names.pop();
    let Some(target) = targets.resolve(schema.as_deref(), &name) else {
        return Vec::new();
    };
    let (Some(start), Some(end)) = (index.offset(first.span.start), index.offset(last.span.end))
    else {
        return Vec::new();
    };
    let text = targets.view_reference(target);
    vec![Edit {
        range: start..end,
        text,
        relation: true,
    }]
}
