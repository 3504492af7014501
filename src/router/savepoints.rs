//! A transaction block's savepoints, as the router follows them: `SAVEPOINT name`,
//! `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name` and `RELEASE [SAVEPOINT] name`.
//!
//! Each savepoint remembers the snapshot of the session's settings taken when it was made
//! (the same snapshot a block's rollback puts back, `session_router`), so a rollback to it
//! puts back what Postgres puts back. Names are folded as Postgres folds identifiers
//! (unquoted: lower-cased, then truncated to 63 bytes); names may repeat and the newest of a
//! name wins, as in Postgres. Only whole-statement forms are recognised.
//!
//! At most [`MAX_SAVEPOINTS`] are remembered: past it the oldest is forgotten, and a
//! `ROLLBACK TO` a name no remembered savepoint has is then [`Lookup::Forgotten`] (the
//! router refuses it rather than guess), while a `RELEASE` of such a name drops every
//! remembered one (all are newer than any forgotten one).

use std::collections::VecDeque;

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::Token;

use super::statement_words::{self, truncate_identifier};
use crate::rewriter::lexer::{self, Kind};
use crate::rewriter::word_scan::{WordSet, Words};

/// Savepoints remembered per transaction block; older ones are forgotten past it.
pub const MAX_SAVEPOINTS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavepointCommand {
    Savepoint(String),
    RollbackTo(String),
    Release(String),
}

/// The savepoint command `sql` is, if it is one (a trailing semicolon is allowed).
pub fn parse(sql: &str) -> Option<SavepointCommand> {
    // The cheap test first: only these three statements begin with these words.
    let head = sql.trim_start().as_bytes().get(..7)?;
    if ![b"savepoi", b"rollbac", b"release"]
        .iter()
        .any(|word| head.eq_ignore_ascii_case(*word))
        && !sql.contains("/*")
        && !sql.contains("--")
    {
        return None;
    }
    let tokens = statement_words::command_tokens(sql)?;
    let keyword = |t: &Token| match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    };
    let (first, rest) = tokens.split_first()?;
    match keyword(first)? {
        Keyword::SAVEPOINT => Some(SavepointCommand::Savepoint(name(rest)?)),
        Keyword::RELEASE => {
            let rest = match rest.first().and_then(keyword) {
                Some(Keyword::SAVEPOINT) if rest.len() == 2 => &rest[1..],
                _ => rest,
            };
            Some(SavepointCommand::Release(name(rest)?))
        }
        Keyword::ROLLBACK => {
            let rest = match rest.first().and_then(keyword) {
                Some(Keyword::WORK | Keyword::TRANSACTION) => &rest[1..],
                _ => rest,
            };
            let (to, rest) = rest.split_first()?;
            if keyword(to) != Some(Keyword::TO) {
                return None;
            }
            let rest = match rest.first().and_then(keyword) {
                Some(Keyword::SAVEPOINT) if rest.len() == 2 => &rest[1..],
                _ => rest,
            };
            Some(SavepointCommand::RollbackTo(name(rest)?))
        }
        _ => None,
    }
}

/// The one identifier `tokens` is, folded as Postgres folds it.
fn name(tokens: &[Token]) -> Option<String> {
    let [Token::Word(word)] = tokens else {
        return None;
    };
    let mut name = match word.quote_style {
        Some('"') => word.value.clone(),
        Some(_) => return None,
        None => word.value.to_ascii_lowercase(),
    };
    truncate_identifier(&mut name);
    Some(name)
}

/// A statement that matters to savepoints, among a Query's or Parse's statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Command(SavepointCommand),
    /// `BEGIN` or `START TRANSACTION`: a block opens.
    Begin,
    /// `COMMIT`, `END`, `ROLLBACK`, `ABORT`, `PREPARE TRANSACTION`: the block ends (`chain`:
    /// `AND CHAIN` opens the next at once).
    End {
        chain: bool,
    },
}

/// The words a statement whose [`Step`] needs more than its first word holds.
const STEP_WORDS: WordSet = WordSet::of(&["savepoint", "release", "rollback"]);

/// Every [`Step`] among the statements of `sql`, in order, each with the byte offset where
/// its statement ends: empty, cheaply, for text that mentions none of `savepoint`,
/// `release` and `rollback` (its `words`), or that the lexer cannot read.
pub fn steps(sql: &str, words: Words, tokens: &mut Vec<lexer::Token>) -> Vec<(usize, Step)> {
    if !words.any(STEP_WORDS) {
        return Vec::new();
    }
    let Some(statements) = statement_words::statements(sql, tokens) else {
        return Vec::new();
    };
    statements
        .into_iter()
        .filter_map(|(end, words)| Some((end, step(sql, &words)?)))
        .collect()
}

/// The [`Step`] one statement (its tokens, comments left out) is, if any.
fn step(sql: &str, statement: &[&lexer::Token]) -> Option<Step> {
    let (first, last) = (statement.first()?, statement.last()?);
    let word = |at: usize| {
        statement
            .get(at)
            .filter(|token| token.kind == Kind::Word)
            .and_then(|token| sql.get(token.start..token.end))
            .map(str::to_ascii_lowercase)
            .unwrap_or_default()
    };
    let chain = statement.len() >= 2
        && word(statement.len() - 1) == "chain"
        && word(statement.len() - 2) != "no";
    match word(0).as_str() {
        "begin" | "start" => Some(Step::Begin),
        "commit" | "end" | "abort" => Some(Step::End { chain }),
        "prepare" if word(1) == "transaction" => Some(Step::End { chain: false }),
        "savepoint" | "release" | "rollback" => {
            match sql.get(first.start..last.end).and_then(parse) {
                Some(command) => Some(Step::Command(command)),
                None if word(0) == "rollback" => Some(Step::End { chain }),
                None => None,
            }
        }
        _ => None,
    }
}

/// What a `ROLLBACK TO` finds.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<S> {
    /// The savepoint's snapshot (the savepoint stays; later ones are dropped).
    Found(S),
    /// No savepoint of that name: Postgres refuses the rollback too.
    Missing,
    /// Not among the remembered ones, but some were forgotten: it may be one of them.
    Forgotten,
}

/// The savepoints of the open transaction block, oldest first, each with its snapshot.
#[derive(Debug)]
pub struct Savepoints<S> {
    stack: VecDeque<(String, S)>,
    /// Some savepoint of this block was forgotten ([`MAX_SAVEPOINTS`]).
    forgot: bool,
}

impl<S> Default for Savepoints<S> {
    fn default() -> Self {
        Savepoints {
            stack: VecDeque::new(),
            forgot: false,
        }
    }
}

impl<S: Clone> Savepoints<S> {
    /// `SAVEPOINT name` with the settings as they are now.
    pub fn push(&mut self, name: String, snapshot: S) {
        if self.stack.len() >= MAX_SAVEPOINTS {
            self.stack.pop_front();
            self.forgot = true;
        }
        self.stack.push_back((name, snapshot));
    }

    fn newest(&self, name: &str) -> Option<usize> {
        self.stack.iter().rposition(|(n, _)| n == name)
    }

    /// `ROLLBACK TO name`: the snapshot to put back; later savepoints are dropped.
    pub fn rollback_to(&mut self, name: &str) -> Lookup<S> {
        match self.newest(name) {
            Some(at) => {
                self.stack.truncate(at + 1);
                Lookup::Found(self.stack[at].1.clone())
            }
            None if self.forgot => Lookup::Forgotten,
            None => Lookup::Missing,
        }
    }

    /// `RELEASE name`: it and later savepoints are dropped, the settings stay.
    pub fn release(&mut self, name: &str) {
        match self.newest(name) {
            Some(at) => self.stack.truncate(at),
            None if self.forgot => self.stack.clear(),
            None => {}
        }
    }

    /// The block ended (or none is open): no savepoint exists.
    pub fn clear(&mut self) {
        self.stack.clear();
        self.forgot = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_every_form_and_folds_names() {
        let savepoint = |n: &str| Some(SavepointCommand::Savepoint(n.into()));
        let rollback = |n: &str| Some(SavepointCommand::RollbackTo(n.into()));
        let release = |n: &str| Some(SavepointCommand::Release(n.into()));
        assert_eq!(parse("SAVEPOINT A"), savepoint("a"));
        assert_eq!(parse("savepoint \"Quoted\";"), savepoint("Quoted"));
        assert_eq!(parse("/* c */ SAVEPOINT b"), savepoint("b"));
        assert_eq!(parse("ROLLBACK TO a"), rollback("a"));
        assert_eq!(parse("rollback to savepoint \"A\""), rollback("A"));
        assert_eq!(parse("ROLLBACK WORK TO SAVEPOINT a"), rollback("a"));
        assert_eq!(parse("ROLLBACK TRANSACTION TO a"), rollback("a"));
        assert_eq!(parse("ROLLBACK TO savepoint"), rollback("savepoint"));
        assert_eq!(parse("RELEASE a"), release("a"));
        assert_eq!(parse("RELEASE SAVEPOINT a"), release("a"));
        assert_eq!(parse("ROLLBACK"), None);
        assert_eq!(parse("ROLLBACK AND CHAIN"), None);
        assert_eq!(parse("SAVEPOINT a; SELECT 1"), None);
        assert_eq!(parse("SELECT 1"), None);
        let long = "x".repeat(70);
        assert_eq!(parse(&format!("SAVEPOINT {long}")), savepoint(&long[..63]));
    }

    #[test]
    fn finds_the_steps_of_a_query_string() {
        let mut tokens = Vec::new();
        let sql = "BEGIN; SAVEPOINT a; /* ; */ SELECT ';'; ROLLBACK TO a; RELEASE \"B\"; ROLLBACK AND CHAIN; COMMIT";
        let found: Vec<Step> = steps(sql, Words::in_text(sql.as_bytes()), &mut tokens)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(
            found,
            vec![
                Step::Begin,
                Step::Command(SavepointCommand::Savepoint("a".into())),
                Step::Command(SavepointCommand::RollbackTo("a".into())),
                Step::Command(SavepointCommand::Release("B".into())),
                Step::End { chain: true },
                Step::End { chain: false },
            ]
        );
        let ends: Vec<usize> = steps(
            "BEGIN; SAVEPOINT a",
            Words::in_text(b"BEGIN; SAVEPOINT a"),
            &mut tokens,
        )
        .into_iter()
        .map(|(end, _)| end)
        .collect();
        assert_eq!(ends, vec![6, 18]);
        assert!(
            steps(
                "SELECT 1; BEGIN",
                Words::in_text(b"SELECT 1; BEGIN"),
                &mut tokens
            )
            .is_empty()
        );
    }

    #[test]
    fn a_stack_where_the_newest_of_a_name_wins() {
        let mut points = Savepoints::default();
        points.push("a".into(), 1);
        points.push("b".into(), 2);
        points.push("a".into(), 3);
        points.push("c".into(), 4);
        assert_eq!(points.rollback_to("a"), Lookup::Found(3));
        assert_eq!(points.rollback_to("c"), Lookup::Missing);
        assert_eq!(points.rollback_to("a"), Lookup::Found(3), "it stays");
        points.release("a");
        assert_eq!(points.rollback_to("a"), Lookup::Found(1));
        points.release("b");
        assert_eq!(points.rollback_to("b"), Lookup::Missing);
        points.clear();
        assert_eq!(points.rollback_to("a"), Lookup::Missing);
    }

    #[test]
    fn past_the_cap_the_oldest_are_forgotten_and_not_guessed() {
        let mut points = Savepoints::default();
        points.push("first".into(), 0);
        for i in 1..=MAX_SAVEPOINTS {
            points.push(format!("p{i}"), i);
        }
        assert_eq!(points.rollback_to("first"), Lookup::Forgotten);
        assert_eq!(points.rollback_to("p2"), Lookup::Found(2));
        points.release("first");
        assert_eq!(points.rollback_to("p1"), Lookup::Forgotten);
        points.clear();
        assert_eq!(points.rollback_to("first"), Lookup::Missing);
    }
}
