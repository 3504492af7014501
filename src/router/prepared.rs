//! The session's prepared statements that name a managed table, and the version each was
//! rewritten at.
//!
//! A statement is rewritten when it is prepared, so it keeps that version for its life. While
//! a migration is live the sync triggers tell writers apart by the session's
//! `viewgate.version`, which the proxy keeps equal to the session's version: a session that
//! moved to another version and then executed a statement prepared at the old one would be
//! judged as the wrong writer. So while such statements exist and a migration is live, the
//! session holds its version (`session_router.rs`) until the client closes them (protocol
//! Close, `DEALLOCATE`, `DISCARD ALL`) or disconnects.
//!
//! A protocol statement rewritten under the session's name resolution (a search_path or
//! temporary relation that shadows a managed name) is also remembered whole ([`Resolved`]),
//! so the router can prepare it again when that resolution changes, as Postgres parses a
//! prepared statement again under a new search_path.
//!
//! Named statements are tracked both ways Postgres creates them: the extended protocol's
//! Parse and SQL `PREPARE` (one namespace). The unnamed statement is not: it lives until the
//! next Parse, which drivers send in the same batch as its Execute.

use std::collections::HashMap;
use std::sync::Arc;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::rewriter::{Rewrite, RewriteCache, VersionTargets, rewrite_cached};

#[derive(Debug, Default)]
pub struct PreparedStatements {
    /// Statement name → the version it was rewritten at.
    versions: HashMap<String, String>,
    /// Protocol statements whose rewrite depends on how the session resolves names.
    resolved: HashMap<String, Resolved>,
}

/// A named statement whose rewrite depends on how the session resolves unqualified names
/// (its search_path, its temporary relations): what is needed to prepare it again when that
/// changes, as Postgres parses a prepared statement again when the search_path changed.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The client's text.
    pub sql: String,
    /// The version it was rewritten at.
    pub version: String,
    /// The cache identity of the targets it was rewritten with (`VersionTargets`).
    pub identity: String,
    /// The text sent to Postgres.
    pub sent: String,
    /// The client's Parse message, whose name and parameter types a new Parse keeps.
    pub message: Vec<u8>,
}

impl PreparedStatements {
    /// A protocol Parse of statement `name`; `version` is the version it was rewritten at, or
    /// `None` when it names no managed table. A name that is already prepared is refused by
    /// Postgres (42P05), so only a rewritten statement changes what is known: an unmanaged
    /// reuse of a held name keeps the hold until the name is closed.
    pub fn parsed(&mut self, name: &str, version: Option<&str>) {
        self.resolved.remove(name);
        if let (false, Some(version)) = (name.is_empty(), version) {
            self.versions.insert(name.to_owned(), version.to_owned());
        }
    }

    /// A protocol Close of statement `name`; returns whether it was held.
    pub fn closed(&mut self, name: &str) -> bool {
        self.resolved.remove(name);
        self.versions.remove(name).is_some()
    }

    /// Statement `name`, just parsed, depends on the session's name resolution.
    pub fn resolved(&mut self, name: &str, resolved: Resolved) {
        self.resolved.insert(name.to_owned(), resolved);
    }

    /// Whether any statement depends on the session's name resolution.
    pub fn has_resolution_dependent(&self) -> bool {
        !self.resolved.is_empty()
    }

    /// The statements depending on the session's name resolution whose rewrite changed under
    /// the targets `resolve` now gives their version, each as (name, new text, the client's
    /// Parse message); remembered as prepared again.
    pub fn stale(
        &mut self,
        cache: &RewriteCache,
        mut resolve: impl FnMut(&str) -> Option<Arc<VersionTargets>>,
    ) -> Vec<(String, String, Vec<u8>)> {
        let mut stale = Vec::new();
        for (name, resolved) in &mut self.resolved {
            let Some(targets) = resolve(&resolved.version) else {
                continue;
            };
            if targets.cache_identity() == resolved.identity {
                continue;
            }
            resolved.identity = targets.cache_identity().to_owned();
            let text = match &*rewrite_cached(cache, &resolved.sql, &targets) {
                Ok(Rewrite::Rewritten(text)) => text.clone(),
                Ok(Rewrite::Unchanged) => resolved.sql.clone(),
                Err(_) => continue,
            };
            if text != resolved.sent {
                resolved.sent = text.clone();
                stale.push((name.clone(), text, resolved.message.clone()));
            }
        }
        stale
    }

    /// A SQL statement text: `PREPARE name AS …` of a rewritten text holds `name` at
    /// `version`; `DEALLOCATE [PREPARE] name | ALL` and `DISCARD ALL` release. Returns whether
    /// anything was released.
    pub fn sql(&mut self, sql: &str, rewritten_at: Option<&str>) -> bool {
        if !mentions_a_prepare_command(sql) {
            return false;
        }
        let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
            return false;
        };
        let mut released = false;
        for statement in tokens
            .split(|token| *token == Token::SemiColon)
            .map(|statement| {
                statement
                    .iter()
                    .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
                    .collect::<Vec<_>>()
            })
        {
            match statement.as_slice() {
                [first, name, ..] if keyword(first) == Some(Keyword::PREPARE) => {
                    if let (Some(version), Some(name)) = (rewritten_at, identifier(name)) {
                        self.versions.insert(name, version.to_owned());
                    }
                }
                [first, rest @ ..] if keyword(first) == Some(Keyword::DEALLOCATE) => {
                    let target = match rest {
                        [prepare, target, ..] if keyword(prepare) == Some(Keyword::PREPARE) => {
                            Some(*target)
                        }
                        [target, ..] => Some(*target),
                        [] => None,
                    };
                    match target {
                        Some(all) if keyword(all) == Some(Keyword::ALL) => {
                            released |= !self.versions.is_empty();
                            self.versions.clear();
                            self.resolved.clear();
                        }
                        Some(target) => {
                            if let Some(name) = identifier(target) {
                                released |= self.versions.remove(&name).is_some();
                                self.resolved.remove(&name);
                            }
                        }
                        None => {}
                    }
                }
                [first, all]
                    if keyword(first) == Some(Keyword::DISCARD)
                        && keyword(all) == Some(Keyword::ALL) =>
                {
                    released |= !self.versions.is_empty();
                    self.versions.clear();
                    self.resolved.clear();
                }
                _ => {}
            }
        }
        released
    }

    /// A held statement rewritten at a version other than `version`, if any: the session
    /// cannot move to `version` while a migration is live.
    pub fn held_against(&self, version: &str) -> Option<(&str, &str)> {
        self.versions
            .iter()
            .find(|(_, held)| held.as_str() != version)
            .map(|(name, held)| (name.as_str(), held.as_str()))
    }
}

/// The cheap test first, on every statement: most are none of these commands. One pass that
/// looks further only at a `p` or a `d`.
fn mentions_a_prepare_command(sql: &str) -> bool {
    const WORDS: [&[u8]; 3] = [b"prepare", b"deallocate", b"discard"];
    let bytes = sql.as_bytes();
    bytes.iter().enumerate().any(|(at, byte)| {
        matches!(byte, b'p' | b'P' | b'd' | b'D')
            && WORDS.iter().any(|word| {
                bytes
                    .get(at..at + word.len())
                    .is_some_and(|candidate| candidate.eq_ignore_ascii_case(word))
            })
    })
}

fn keyword(token: &Token) -> Option<Keyword> {
    match token {
        Token::Word(word) if word.quote_style.is_none() => Some(word.keyword),
        _ => None,
    }
}

/// A statement name as Postgres folds it: unquoted names to lower case.
fn identifier(token: &Token) -> Option<String> {
    match token {
        Token::Word(word) if word.quote_style.is_none() => Some(word.value.to_lowercase()),
        Token::Word(word) if word.quote_style == Some('"') => Some(word.value.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_statements_are_held_until_closed() {
        let mut prepared = PreparedStatements::default();
        prepared.parsed("s1", Some("v1"));
        prepared.parsed("", Some("v1"));
        prepared.parsed("s2", None);
        assert_eq!(prepared.held_against("v2"), Some(("s1", "v1")));
        assert_eq!(prepared.held_against("v1"), None);
        prepared.closed("s1");
        assert_eq!(prepared.held_against("v2"), None);
    }

    #[test]
    fn sql_prepare_deallocate_and_discard_are_followed() {
        let mut prepared = PreparedStatements::default();
        prepared.sql(
            "PREPARE Ins (int) AS INSERT INTO t_v1 VALUES ($1)",
            Some("v1"),
        );
        prepared.sql("prepare \"Up\" AS UPDATE t_v1 SET a = 1", Some("v1"));
        prepared.sql("PREPARE plain AS SELECT 1", None);
        assert_eq!(prepared.versions.len(), 2);
        assert!(prepared.sql("DEALLOCATE PREPARE ins", None));
        assert!(!prepared.sql("DEALLOCATE plain", None));
        assert!(
            !prepared.sql("deallocate up", None),
            "quoted names keep their case"
        );
        assert!(prepared.sql("SELECT 1; DEALLOCATE \"Up\"", None));
        assert!(prepared.versions.is_empty());
        prepared.parsed("s1", Some("v1"));
        assert!(prepared.sql("DISCARD ALL", None));
        prepared.parsed("s1", Some("v1"));
        assert!(prepared.sql("DEALLOCATE ALL", None));
        assert_eq!(prepared.held_against("v9"), None);
    }

    #[test]
    fn words_inside_strings_and_comments_are_not_commands() {
        let mut prepared = PreparedStatements::default();
        prepared.parsed("s1", Some("v1"));
        assert!(!prepared.sql("SELECT 'DEALLOCATE ALL' /* DISCARD ALL */", None));
        assert!(prepared.held_against("v2").is_some());
    }
}
