//! A shape's template: the text a shape was learned from, cut at its masked constants, and the
//! rewrite's edits placed in the pieces between them. A later text that is the same pieces
//! with other constants of the same kinds in the cuts has the same shape, and is rewritten by
//! comparing the pieces and lexing only the constants: no token list, no key, no lookup in
//! the shared cache (`recent_shapes.rs` keeps a session's last few templates).
//!
//! Why a match has the learning text's shape: the lexer reads a token from its first byte on
//! (`lexer::token_at`), never what came before it, so outside the cuts the new text's tokens
//! are the learning text's, provided no token before a cut looked into it. A token looks one
//! byte past its end at most (a word at its next byte, a number at an exponent or a glued
//! letter, `-` and `/` at a comment's second character), so a template is made only where the
//! byte before every cut is whitespace or a punctuation character read alone
//! ([`SEPARATORS`]); a constant glued to what precedes it makes no template. In a cut the
//! lexer reads the new constant itself, which must be of the cut's kind and mention no
//! managed name (such a constant is verbatim in the key); the next piece must follow where the
//! constant ends. A shape whose key masks an `IN` list (of any length) makes no template,
//! and the whole-text checks of [`super::shape::may_have_a_shape`] are the caller's, as for
//! a key. Property tests hold the template's rewrite to the shape's (`tests/`).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use super::lexer::{self, Kind, Token};
use super::mention::MentionScan;
use super::shape::{self, Shape, ShapeRewrite};
use super::splice::{self, Edit};
use super::{Rewrite, VersionTargets};

/// Bytes that may precede a cut: whitespace, or punctuation the lexer reads as a token of its
/// own without looking at the next byte (not `-`, `/`, `.`, `$`, quotes, nor `:` or `|`,
/// which are kept out for no reason but to keep the list short).
const SEPARATORS: &[u8] = b" \t\n\r(,=<>";

/// What the shared cache keeps for a shape: the rewrite in token terms (for every text of
/// the shape) and, when one could be made, the template of the text it was learned from.
#[derive(Debug)]
pub struct LearnedShape {
    pub rewrite: ShapeRewrite,
    pub template: Option<Template>,
    /// One more than the shared cache's sweep epoch when a session's template last served
    /// the shape (0: never), which the cache's own entry does not see: a shape served only so
    /// is still hot.
    used: AtomicU64,
}

/// The kinds of constant a key masks, as the key tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    String,
    DollarString,
    Number,
}

impl Cut {
    fn of(kind: Kind) -> Option<Cut> {
        match kind {
            Kind::String | Kind::EscapeString => Some(Cut::String),
            Kind::DollarString => Some(Cut::DollarString),
            Kind::Number => Some(Cut::Number),
            _ => None,
        }
    }
}

/// A byte offset in one of the pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    piece: usize,
    offset: usize,
}

#[derive(Debug)]
struct TemplateEdit {
    start: Place,
    end: Place,
    text: Box<str>,
}

/// See the module's comment.
#[derive(Debug)]
pub struct Template {
    /// The learning text.
    text: Box<str>,
    /// The byte ranges of `text` between the cuts: one more than `cuts`.
    pieces: Box<[Range<usize>]>,
    cuts: Box<[Cut]>,
    /// The rewrite's edits, in the order the splice applies them.
    edits: Box<[TemplateEdit]>,
    /// The most bytes the edits add (`splice::most_added`).
    added: usize,
}

impl Template {
    /// The template of `sql`, whose shape is `shape` (lexed into `tokens`) and whose rewrite
    /// made `edits`; `None` where a match could not be trusted to have the shape (see the
    /// module's comment) or an edit does not fall in a piece.
    pub fn learn(
        sql: &str,
        shape: &Shape,
        tokens: &[Token],
        targets: &VersionTargets,
        edits: &[Edit],
    ) -> Option<Template> {
        if shape.masks_a_list {
            return None;
        }
        let scan = targets.mention_scan();
        let mut pieces = Vec::new();
        let mut cuts = Vec::new();
        let mut piece_start = 0;
        for token in tokens {
            let Some(cut) = Cut::of(token.kind).filter(|_| !shape::mentions(sql, token, scan))
            else {
                continue;
            };
            let before = token.start.checked_sub(1).map(|at| sql.as_bytes()[at]);
            if before.is_some_and(|byte| !SEPARATORS.contains(&byte)) {
                return None;
            }
            pieces.push(piece_start..token.start);
            cuts.push(cut);
            piece_start = token.end;
        }
        pieces.push(piece_start..sql.len());
        let place = |offset: usize| {
            // The piece that starts at or before `offset`; it must also reach it.
            let piece = pieces
                .partition_point(|p| p.start <= offset)
                .checked_sub(1)?;
            let range = pieces.get(piece)?;
            (offset <= range.end).then(|| Place {
                piece,
                offset: offset - range.start,
            })
        };
        let mut sorted: Vec<&Edit> = edits.iter().collect();
        sorted.sort_by_key(|edit| edit.range.start);
        let edits = sorted
            .into_iter()
            .map(|edit| {
                Some(TemplateEdit {
                    start: place(edit.range.start)?,
                    end: place(edit.range.end)?,
                    text: edit.text.as_str().into(),
                })
            })
            .collect::<Option<Box<[_]>>>()?;
        let added = splice::most_added(edits.iter().map(|edit| &*edit.text));
        Some(Template {
            text: sql.into(),
            pieces: pieces.into(),
            cuts: cuts.into(),
            edits,
            added,
        })
    }

    /// `sql` rewritten, when it is this template's pieces with constants of the cuts' kinds
    /// in the cuts; `starts` is scratch space. `None`: no match (or the splice refused the
    /// edits, which the full path then reports).
    pub fn rewrite(
        &self,
        sql: &str,
        scan: &MentionScan,
        starts: &mut Vec<usize>,
    ) -> Option<Rewrite> {
        let bytes = sql.as_bytes();
        let text = self.text.as_bytes();
        starts.clear();
        let mut at = 0;
        for (index, piece) in self.pieces.iter().enumerate() {
            let verbatim = text.get(piece.clone())?;
            if bytes.get(at..at + verbatim.len())? != verbatim {
                return None;
            }
            starts.push(at);
            at += verbatim.len();
            if let Some(&cut) = self.cuts.get(index) {
                let (kind, end) = lexer::token_at(bytes, at)?;
                let token = Token {
                    kind,
                    start: at,
                    end,
                    after_trivia: false,
                };
                if Cut::of(kind) != Some(cut) || shape::mentions(sql, &token, scan) {
                    return None;
                }
                at = end;
            }
        }
        if at != bytes.len() {
            return None;
        }
        if self.edits.is_empty() {
            return Some(Rewrite::Unchanged);
        }
        // Every place is in a piece (`learn`), and every piece has a start now.
        if self.edits.iter().any(|edit| edit.end.piece >= starts.len()) {
            return None;
        }
        let offset = |place: Place| starts[place.piece] + place.offset;
        let ranges = self
            .edits
            .iter()
            .map(|edit| (offset(edit.start)..offset(edit.end), &*edit.text));
        splice::apply_sorted(sql, self.added, ranges).map(Rewrite::Rewritten)
    }
}

impl LearnedShape {
    /// What the cache keeps for `shape`, learned from `sql` with `edits`.
    pub fn new(
        rewrite: ShapeRewrite,
        sql: &str,
        shape: &Shape,
        tokens: &[Token],
        targets: &VersionTargets,
        edits: &[Edit],
    ) -> Self {
        let template = Template::learn(sql, shape, tokens, targets, edits);
        LearnedShape {
            rewrite,
            template,
            used: AtomicU64::new(0),
        }
    }

    /// Records that a template served the shape in `epoch` (a store only when it changed,
    /// so sessions on other threads do not write the same line for every statement).
    pub fn mark_used(&self, epoch: u64) {
        let used = epoch.wrapping_add(1);
        if self.used.load(Ordering::Relaxed) != used {
            self.used.store(used, Ordering::Relaxed);
        }
    }

    /// Whether a template served the shape in `epoch`.
    pub fn used_in(&self, epoch: u64) -> bool {
        self.used.load(Ordering::Relaxed) == epoch.wrapping_add(1)
    }
}

#[cfg(test)]
#[path = "shape_template_tests.rs"]
mod tests;
