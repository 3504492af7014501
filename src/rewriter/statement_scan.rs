//! Where the parts of an `INSERT … ON CONFLICT` or a `MERGE` are in its text, from the lexer's
//! tokens: extents sqlparser's spans do not give reliably (a VALUES row's values, where the
//! rows end and `ON CONFLICT` begins, a SET list's targets and values), found by counting
//! parentheses (and `CASE … END`) at the statement's own level. The upsert and MERGE rewrites
//! (`upsert.rs`, `merge.rs`) place their edits there, and check the counts against sqlparser's
//! reading; anything that does not match is refused.

use std::ops::Range;

use super::lexer::{Kind, Token};

/// One `target = value` of a SET list, as token indexes.
pub struct SetSegment {
    pub target: usize,
    pub value: Range<usize>,
}

/// The statement's tokens (comments left out), for the extents sqlparser's spans do not give.
pub struct Scan<'a> {
    pub sql: &'a str,
    pub tokens: &'a [Token],
}

impl Scan<'_> {
    pub fn text(&self, i: usize) -> &str {
        self.tokens
            .get(i)
            .and_then(|t| self.sql.get(t.start..t.end))
            .unwrap_or_default()
    }

    pub fn word(&self, i: usize, word: &str) -> bool {
        self.tokens.get(i).is_some_and(|t| t.kind == Kind::Word)
            && self.text(i).eq_ignore_ascii_case(word)
    }

    pub fn punct(&self, i: usize, punct: &str) -> bool {
        self.tokens.get(i).is_some_and(|t| t.kind == Kind::Punct) && self.text(i) == punct
    }

    /// The first token starting at or after byte `offset`.
    pub fn after(&self, offset: usize) -> Option<usize> {
        let i = self.tokens.partition_point(|t| t.start < offset);
        (i < self.tokens.len()).then_some(i)
    }

    /// The depth change a token makes (`CASE … END` counts as brackets: its `WHEN` is not a
    /// MERGE clause's).
    pub fn depth(&self, i: usize) -> i32 {
        if self.punct(i, "(") || self.punct(i, "[") || self.word(i, "case") {
            1
        } else if self.punct(i, ")") || self.punct(i, "]") || self.word(i, "end") {
            -1
        } else {
            0
        }
    }

    /// `ON CONFLICT` at the level of token `from`: the last such pair there, since a join of
    /// the INSERT's source on a column named `conflict` (`JOIN d ON conflict ON CONFLICT (id)`,
    /// the thirtieth red-team pass) comes before it, and nothing after the clause holds one.
    pub fn on_conflict(&self, from: usize) -> Option<usize> {
        let mut depth = 0;
        let mut found = None;
        for i in from..self.tokens.len() {
            if depth == 0 && self.word(i, "on") && self.word(i + 1, "conflict") {
                found = Some(i);
            }
            if depth == 0 && self.punct(i, ";") {
                break;
            }
            depth += self.depth(i);
            if depth < 0 {
                break;
            }
        }
        found
    }

    /// `(v, …), (v, …)` from `from` to `end`: each row's values as token ranges.
    pub fn rows(&self, from: usize, end: usize) -> Option<Vec<Vec<Range<usize>>>> {
        let mut rows = Vec::new();
        let mut i = from;
        loop {
            if !self.punct(i, "(") {
                return None;
            }
            let mut depth = 1;
            let mut value_start = i + 1;
            let mut values = Vec::new();
            let mut j = i + 1;
            while j < end {
                depth += self.depth(j);
                if depth == 0 {
                    break;
                }
                if depth == 1 && self.punct(j, ",") {
                    values.push(value_start..j);
                    value_start = j + 1;
                }
                j += 1;
            }
            if depth != 0 {
                return None;
            }
            values.push(value_start..j);
            if values.iter().any(|v| v.is_empty()) {
                return None;
            }
            rows.push(values);
            i = j + 1;
            if i == end {
                return Some(rows);
            }
            if !self.punct(i, ",") {
                return None;
            }
            i += 1;
        }
    }

    /// A value that is the keyword DEFAULT alone.
    pub fn is_default(&self, value: &Range<usize>) -> bool {
        value.len() == 1 && self.word(value.start, "default")
    }

    /// The assignments after `DO UPDATE SET` (from `ON CONFLICT` at `on`), up to `WHERE`,
    /// `RETURNING` or the statement's end at their level.
    pub fn set_list(&self, on: usize) -> Option<Vec<SetSegment>> {
        let mut depth = 0;
        let mut i = on;
        let set = loop {
            if i >= self.tokens.len() {
                return None;
            }
            if depth == 0
                && self.word(i, "do")
                && self.word(i + 1, "update")
                && self.word(i + 2, "set")
            {
                break i + 3;
            }
            depth += self.depth(i);
            i += 1;
        };
        self.assignments(set, &["where", "returning"])
    }

    /// The assignments of a MERGE clause's `UPDATE SET` (`update` is the UPDATE token), up to
    /// the next `WHEN`, `RETURNING` or the statement's end at their level.
    pub fn merge_set_list(&self, update: usize) -> Option<Vec<SetSegment>> {
        if !self.word(update, "update") || !self.word(update + 1, "set") {
            return None;
        }
        self.assignments(update + 2, &["when", "returning"])
    }

    /// `target = value, …` from token `set`, up to one of `stops` (words), `;` or the end.
    fn assignments(&self, set: usize, stops: &[&str]) -> Option<Vec<SetSegment>> {
        let mut segments = Vec::new();
        let mut start = set;
        let mut equals = None;
        let mut depth = 0;
        let mut j = set;
        loop {
            let ends = j >= self.tokens.len()
                || (depth == 0
                    && (self.punct(j, ",")
                        || self.punct(j, ";")
                        || stops.iter().any(|stop| self.word(j, stop))))
                || depth < 0;
            if ends {
                let assign = equals?;
                if assign + 1 >= j {
                    return None;
                }
                segments.push(SetSegment {
                    target: start,
                    value: assign + 1..j,
                });
                if j < self.tokens.len() && depth == 0 && self.punct(j, ",") {
                    start = j + 1;
                    equals = None;
                    j += 1;
                    continue;
                }
                return Some(segments);
            }
            if depth == 0 && equals.is_none() && self.punct(j, "=") {
                equals = Some(j);
            }
            depth += self.depth(j);
            j += 1;
        }
    }

    /// The parenthesised list that starts at token `open`: its items as token ranges, and the
    /// index of its closing parenthesis.
    pub fn parenthesised(&self, open: usize) -> Option<(Vec<Range<usize>>, usize)> {
        if !self.punct(open, "(") {
            return None;
        }
        let mut depth = 0;
        let mut close = open;
        loop {
            depth += self.depth(close);
            if depth == 0 {
                break;
            }
            close += 1;
            if close >= self.tokens.len() || depth < 0 {
                return None;
            }
        }
        let rows = self.rows(open, close + 1)?;
        match <[_; 1]>::try_from(rows) {
            Ok([items]) => Some((items, close)),
            Err(_) => None,
        }
    }
}
