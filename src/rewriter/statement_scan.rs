//! Where the parts of an `INSERT … ON CONFLICT` are in its text, from the lexer's tokens:
//! extents sqlparser's spans do not give reliably (a VALUES row's values, where the rows end
//! and `ON CONFLICT` begins, a SET list's targets and values), found by counting parentheses
//! at the statement's own level. The upsert rewrite (`upsert.rs`) places its edits there, and
//! checks the counts against sqlparser's reading; anything that does not match is refused.

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

    /// The depth change a token makes.
    pub fn depth(&self, i: usize) -> i32 {
        if self.punct(i, "(") || self.punct(i, "[") {
            1
        } else if self.punct(i, ")") || self.punct(i, "]") {
            -1
        } else {
            0
        }
    }

    /// `ON CONFLICT` at the level of token `from`.
    pub fn on_conflict(&self, from: usize) -> Option<usize> {
        let mut depth = 0;
        for i in from..self.tokens.len() {
            if depth == 0 && self.word(i, "on") && self.word(i + 1, "conflict") {
                return Some(i);
            }
            if depth == 0 && self.punct(i, ";") {
                return None;
            }
            depth += self.depth(i);
            if depth < 0 {
                return None;
            }
        }
        None
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
                        || self.word(j, "where")
                        || self.word(j, "returning")))
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
}
