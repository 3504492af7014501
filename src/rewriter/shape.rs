//! A statement's shape: its text with constants masked, the way `pg_stat_statements`
//! fingerprints queries, and a rewrite expressed in the shape's tokens so that every statement
//! of the same shape is rewritten by one lexer pass and a splice.
//!
//! The key lists the statement's tokens (`lexer.rs`) other than whitespace and comments:
//! words, quoted names, operators and parameters by their exact text; string, dollar-quoted
//! and numeric constants as a placeholder of their kind; an `IN (…)` list made only of such
//! constants as one placeholder, whatever its length. Each entry also records whether
//! whitespace or a comment precedes the token, so tokens the parser might read together never
//! share a key with tokens it reads apart.
//!
//! Why two statements of one shape are rewritten alike: the rewriter's decisions depend on
//! relation names, keywords and structure, all in the key, and on three things that are not,
//! each handled here. (1) A constant that names a managed table can be rewritten (a
//! `'model_metadata'::regclass` literal): constants that mention a managed name, in any case,
//! are kept in the key verbatim (so is an escape string with a backslash, which can spell
//! one: `lexer.rs`), and a text with a definition statement (`DO`, `CREATE …`, whose body
//! is a constant) or a call of a built-in that reads a relation named in a string has no
//! shape. (2) A statement is parsed only when its text mentions a
//! managed name, comments included: a comment that does adds a marker to the key. (3) Where a
//! constant, comment or number ends must be where sqlparser ends it: the lexer mirrors its
//! rules and gives up where unsure, and a shape is learned only when the lexer's token
//! boundaries agree with the ones sqlparser produced for that very text ([`learn`]).
//! Edits are stored as token boundaries ([`Boundary`]), so whitespace, comments and constants
//! may differ in length between statements of one shape.

use std::ops::Range;
use std::sync::LazyLock;

use super::definitions::{find_all_ignore_ascii_case, stands_alone};
use super::lexer::{self, Kind, Token};
use super::mention::version_marks;
use super::mention::{MentionScan, comment_after_quote, starts_definition};
use super::rewrite::{Analysis, finish_between_tokens};
use super::splice::Edit;
use super::targets::VersionTargets;
use super::{Rewrite, RewriteError};
use crate::model::catalog_substitutes::SCHEMA_WORD;

/// Key tags: the low bits say what a key token is, the high bit that trivia precedes it.
const TAG_VERBATIM: u8 = 1;
const TAG_STRING: u8 = 2;
const TAG_DOLLAR_STRING: u8 = 3;
const TAG_NUMBER: u8 = 4;
const TAG_CONSTANT_LIST: u8 = 5;
/// A comment that mentions a managed name (it makes its statement a parse candidate).
const TAG_MENTIONING_COMMENT: u8 = 6;
const TAG_AFTER_TRIVIA: u8 = 0x80;

/// A verbatim token's length in a key: one byte when below [`LONG_LENGTH`], else that byte and
/// the length in four. No encoding is a prefix of another, so no two token lists share a key;
/// and a statement of short tokens keys within its text plus two bytes a token, the size the
/// key is first given (four-byte lengths outgrew it: one reallocation a statement).
fn push_length(key: &mut Vec<u8>, length: usize) -> Option<()> {
    match u8::try_from(length) {
        Ok(short) if short < LONG_LENGTH => key.push(short),
        _ => {
            key.push(LONG_LENGTH);
            key.extend_from_slice(&u32::try_from(length).ok()?.to_le_bytes());
        }
    }
    Some(())
}

/// The length byte that says four bytes of length follow.
const LONG_LENGTH: u8 = u8::MAX;

/// The shape of one statement text.
#[derive(Debug)]
pub struct Shape {
    /// What statements of this shape have in common; the cache's key.
    pub key: Vec<u8>,
    /// The byte range of each key token in this text (a masked list spans its constants).
    spans: Vec<Range<usize>>,
    /// Whether an `IN` list of constants is one key token (its length is not in the key).
    pub masks_a_list: bool,
}

/// A position between tokens: the start or the end of a key token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    Start(u32),
    End(u32),
}

/// An edit in token terms: replace from `start` to `end` by `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEdit {
    start: Boundary,
    end: Boundary,
    text: Box<str>,
}

/// The version's marks other than `schema`, found in any ASCII case by one Teddy pass over
/// the text: looked for in every statement whose shape is looked up, so one SIMD pass rather
/// than one per mark (once most of a cached rewrite's cost) or an automaton stepping through
/// every byte (a third of it, in `perf`, before this scan).
static MARKS: LazyLock<MentionScan> =
    LazyLock::new(|| MentionScan::new(version_marks().filter(|mark| *mark != SCHEMA_WORD)));

/// Whether `sql` holds one of the version's marks, `schema` as a word of its own (`SET
/// SCHEMA 'x'`, not `schema_version` or `information_schema`, which ORMs write often).
fn has_a_mark(sql: &[u8]) -> bool {
    MARKS.names_in(sql)
        || find_all_ignore_ascii_case(sql, SCHEMA_WORD.as_bytes())
            .any(|at| stands_alone(sql, at, SCHEMA_WORD.len()))
}

/// What every statement of a shape becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeRewrite {
    Unchanged,
    Edits(Vec<TokenEdit>),
}

impl Shape {
    /// The shape of `sql` for `targets`, lexed into `tokens` (kept for [`learn`]); `None` when
    /// the lexer gives up or a managed name could straddle tokens.
    pub fn of(sql: &str, targets: &VersionTargets, tokens: &mut Vec<Token>) -> Option<Shape> {
        match may_have_a_shape(sql, targets) {
            true => Shape::of_shapeable(sql, targets, tokens),
            false => None,
        }
    }

    /// [`Shape::of`] a text [`may_have_a_shape`] has passed.
    pub fn of_shapeable(
        sql: &str,
        targets: &VersionTargets,
        tokens: &mut Vec<Token>,
    ) -> Option<Shape> {
        lexer::lex(sql, tokens)?;
        let scan = targets.mention_scan();
        let mentions = |token: &Token| mentions(sql, token, scan);
        let maskable = |token: &Token| token.kind.is_constant() && !mentions(token);
        let mut key = Vec::with_capacity(sql.len() + tokens.len() * 2);
        let mut spans = Vec::with_capacity(tokens.len());
        let mut masks_a_list = false;
        let mut i = 0;
        while let Some(token) = tokens.get(i) {
            i += 1;
            if token.kind == Kind::Comment {
                if mentions(token) {
                    key.push(TAG_MENTIONING_COMMENT);
                }
                continue;
            }
            let flag = if token.after_trivia {
                TAG_AFTER_TRIVIA
            } else {
                0
            };
            let text = &sql[token.start..token.end];
            let tag = match token.kind {
                _ if !maskable(token) => TAG_VERBATIM,
                Kind::String | Kind::EscapeString => TAG_STRING,
                Kind::DollarString => TAG_DOLLAR_STRING,
                _ => TAG_NUMBER,
            };
            key.push(tag | flag);
            if tag == TAG_VERBATIM {
                push_length(&mut key, text.len())?;
                key.extend_from_slice(text.as_bytes());
            }
            spans.push(token.start..token.end);
            if opens_a_list(sql, tokens, i)
                && let Some((last, span)) = constant_list(sql, tokens, i, &maskable, &mentions)
            {
                key.push(TAG_CONSTANT_LIST);
                spans.push(span);
                masks_a_list = true;
                i = last + 1;
            }
        }
        Some(Shape {
            key,
            spans,
            masks_a_list,
        })
    }

    fn start(&self, k: usize) -> Option<usize> {
        self.spans.get(k).map(|s| s.start)
    }

    fn end(&self, k: usize) -> Option<usize> {
        self.spans.get(k).map(|s| s.end)
    }

    /// The boundary at byte `offset`, preferring a token's start or its end.
    fn boundary(&self, offset: usize, prefer_start: bool) -> Option<Boundary> {
        let start = self
            .spans
            .binary_search_by_key(&offset, |s| s.start)
            .ok()
            .and_then(|k| u32::try_from(k).ok())
            .map(Boundary::Start);
        let end = self
            .spans
            .binary_search_by_key(&offset, |s| s.end)
            .ok()
            .and_then(|k| u32::try_from(k).ok())
            .map(Boundary::End);
        if prefer_start {
            start.or(end)
        } else {
            end.or(start)
        }
    }

    fn offset(&self, boundary: Boundary) -> Option<usize> {
        match boundary {
            Boundary::Start(k) => self.start(usize::try_from(k).ok()?),
            Boundary::End(k) => self.end(usize::try_from(k).ok()?),
        }
    }
}

/// Whether `sql` may have a shape at all, read as a whole before it is lexed.
pub fn may_have_a_shape(sql: &str, targets: &VersionTargets) -> bool {
    // A name of identifier characters can only occur inside one token (every run of them is
    // one token, or the lexer gave up); a name with other characters could straddle.
    // A definition's verdict can turn on a body's text, a constant, and so can a call of a
    // built-in that reads a relation named in a string (`'16386'`, a `U&"…"` inside the
    // query), a setting's value (`SET standard_conforming_strings = 'off'`: the eighth
    // red-team pass taught the shape with `'on'`) and EXPLAIN's options (`VERBOSE 0` and
    // `1`): statements with any of the version's marks (rare) are not learned by shape.
    // So can a `--` comment after a quote: Postgres continues a string across one (`'a'
    // --⏎'b'` is one string) and not across a `/* */` comment, which the key does not tell
    // apart (the seventh red-team pass taught the shape with one and was served its verdict
    // with the other).
    !targets.mention_scan().may_straddle_tokens()
        && !starts_definition(sql.as_bytes())
        && !comment_after_quote(sql.as_bytes())
        && !has_a_mark(sql.as_bytes())
}

/// Whether `token` of `sql` mentions one of the names `scan` looks for. One Teddy pass over
/// the token for every name: a version with catalog substitutes has hundreds, and a search
/// per name per constant was a tenth of a managed read's user time (`perf`).
pub fn mentions(sql: &str, token: &Token, scan: &MentionScan) -> bool {
    if token.kind == Kind::Number && !scan.may_occur_in_a_number() {
        return false;
    }
    let text = sql
        .as_bytes()
        .get(token.start..token.end)
        .unwrap_or_default();
    scan.names_in(text)
}

/// Whether `tokens[open - 1]` is the `(` of an `IN (`, whose constants may be one key token.
pub fn opens_a_list(sql: &str, tokens: &[Token], open: usize) -> bool {
    open >= 2
        && tokens
            .get(open - 1)
            .is_some_and(|t| t.kind == Kind::Punct && sql.get(t.start..t.end) == Some("("))
        && tokens
            .get(open - 2)
            .is_some_and(|t| t.kind == Kind::Word && sql[t.start..t.end].eq_ignore_ascii_case("in"))
}

/// `IN (c, c, …)` of maskable constants, the `(` at `tokens[open - 1]`: the index of the last
/// constant and the byte span of them all. Comments between are allowed unless they mention a
/// managed name.
fn constant_list(
    sql: &str,
    tokens: &[Token],
    open: usize,
    maskable: &impl Fn(&Token) -> bool,
    mentions: &impl Fn(&Token) -> bool,
) -> Option<(usize, Range<usize>)> {
    let mut expect_constant = true;
    let mut first = None;
    let mut last = None;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        if token.kind == Kind::Comment {
            if mentions(token) {
                return None;
            }
            continue;
        }
        let text = &sql[token.start..token.end];
        if expect_constant {
            if !maskable(token) {
                return None;
            }
            first.get_or_insert(token.start);
            last = Some((i, token.end));
        } else if text == ")" {
            let (last, end) = last?;
            return Some((last, first?..end));
        } else if text != "," {
            return None;
        }
        expect_constant = !expect_constant;
    }
    None
}

/// Whether the lexer's tokens (comments aside) tile sqlparser's: every parser token is one or
/// more adjacent lexer tokens, and every constant is exactly one parser token.
fn agrees(tokens: &[Token], parser_tokens: &[Range<usize>]) -> bool {
    let mut mine = tokens.iter().filter(|t| t.kind != Kind::Comment).peekable();
    for range in parser_tokens {
        let mut end = range.start;
        while end < range.end {
            let Some(token) = mine.next() else {
                return false;
            };
            let whole = token.start == range.start && token.end == range.end;
            if token.start != end || (token.kind.is_literal() && !whole) {
                return false;
            }
            end = token.end;
        }
        if end != range.end {
            return false;
        }
    }
    mine.peek().is_none()
}

/// What the full path did to one text, in token terms, when it holds for the whole shape;
/// `None` when it cannot be trusted to (the lexer disagrees with sqlparser on this text, the
/// tokenizer failed, or an edit falls between token boundaries). Errors are never learned: the
/// parser's message quotes the token it stumbled on, which may be a masked constant, so two
/// statements of one shape can fail with different messages. They are cached by their text.
pub fn learn(shape: &Shape, tokens: &[Token], analysis: &Analysis) -> Option<ShapeRewrite> {
    if !agrees(tokens, analysis.parser_tokens.as_deref()?) {
        return None;
    }
    match analysis.edits.as_ref().ok()? {
        edits if edits.is_empty() => Some(ShapeRewrite::Unchanged),
        edits => edits
            .iter()
            .map(|edit| {
                Some(TokenEdit {
                    start: shape.boundary(edit.range.start, true)?,
                    end: shape.boundary(edit.range.end, false)?,
                    text: edit.text.as_str().into(),
                })
            })
            .collect::<Option<Vec<_>>>()
            .map(ShapeRewrite::Edits),
    }
}

impl ShapeRewrite {
    /// The outcome for `sql`, whose shape is `shape`; `None` if a boundary does not exist in
    /// it (only a key collision could cause that, and the caller then takes the full path).
    pub fn apply(
        &self,
        sql: &str,
        shape: &Shape,
        version: &str,
    ) -> Option<Result<Rewrite, RewriteError>> {
        match self {
            ShapeRewrite::Unchanged => Some(Ok(Rewrite::Unchanged)),
            ShapeRewrite::Edits(edits) => {
                let edits = edits
                    .iter()
                    .map(|edit| {
                        Some(Edit {
                            range: shape.offset(edit.start)?..shape.offset(edit.end)?,
                            text: edit.text.as_ref().to_owned(),
                            // Only the full path compares edits with Postgres's reading.
                            relation: false,
                        })
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some(finish_between_tokens(sql, version, Ok(edits)))
            }
        }
    }
}

/// A statement's shape as people read it: its tokens with constants shown as `?`, comments
/// left out and each run of whitespace as one space (`SELECT * FROM t WHERE id = ?`). What a
/// shadow run's `--match` pattern is matched against, and what its report groups by. `None`
/// when the lexer gives up on the text.
pub fn readable(sql: &str, tokens: &mut Vec<Token>) -> Option<String> {
    lexer::lex(sql, tokens)?;
    let mut out = String::with_capacity(sql.len());
    for token in tokens.iter().filter(|token| token.kind != Kind::Comment) {
        if token.after_trivia && !out.is_empty() {
            out.push(' ');
        }
        if token.kind.is_constant() {
            out.push('?');
        } else {
            out.push_str(sql.get(token.start..token.end)?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewriter::rewrite::analyse;
    use crate::rewriter::{RelationName, ViewTarget, rewrite};

    fn v2() -> VersionTargets {
        VersionTargets::new(
            "v2",
            vec![ViewTarget {
                table: RelationName::new("public", "model_metadata"),
                view: RelationName::new("public", "model_metadata_v2"),
            }],
        )
    }

    fn key(sql: &str) -> Option<Vec<u8>> {
        Shape::of(sql, &v2(), &mut Vec::new()).map(|s| s.key)
    }

    #[test]
    fn long_and_short_names_key_apart_at_every_length_encoding() {
        let keyed = |length: usize| key(&format!("SELECT \"{}\" FROM t", "n".repeat(length)));
        let keys: Vec<_> = [1, 253, 254, 255, 256, 300, 70_000]
            .into_iter()
            .map(|length| keyed(length).expect("a shape"))
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn a_text_holding_a_mark_in_any_case_or_place_has_no_shape() {
        let padding = "x".repeat(1500);
        assert!(key("SELECT a FROM t WHERE b = 1").is_some());
        for mark in version_marks() {
            let upper = mark.to_ascii_uppercase();
            let spaced = format!("SELECT a FROM t WHERE b = 1 AND c = '{padding} {mark} '");
            for sql in [
                format!("SELECT {mark} FROM t"),
                format!("SELECT a FROM t WHERE \"{upper}\" = 1"),
                format!("SELECT a FROM t /* {mark} */"),
                // Past the first chunk the scan lowers, and across its boundary.
                spaced.clone(),
                format!("SELECT '{} {mark}' FROM t", "y".repeat(1013)),
            ] {
                assert_eq!(key(&sql), None, "{mark} in {sql:.80}");
            }
        }
        // `schema` counts as a word of its own only.
        assert!(key("SELECT a FROM information_schema_x WHERE schema_version = 1").is_some());
        assert_eq!(key("ALTER TABLE t SET SCHEMA s"), None);
    }

    #[test]
    fn constants_and_in_lists_are_masked() {
        let a = key("SELECT * FROM model_metadata WHERE id = 1 AND n = 'x' AND k IN (1, 2, 3)");
        let b =
            key("SELECT * FROM model_metadata WHERE id = 42 AND n = 'it''s' AND k IN ('a',$$b$$)");
        assert!(a.is_some());
        assert_eq!(a, b);
        // Whitespace and comments between tokens do not matter; their presence does.
        let c = key(
            "SELECT  *\nFROM model_metadata /* req=7 */ WHERE id = 3 AND n = E'y' AND k IN (9)",
        );
        assert_eq!(a, c);
        assert_ne!(
            a,
            key("SELECT * FROM model_metadata WHERE id=1 AND n = 'x' AND k IN (1)")
        );
    }

    #[test]
    fn names_constants_and_comments_that_mention_a_table_are_kept() {
        let plain = key("SELECT x::regclass FROM t WHERE a = 'other'");
        assert_ne!(
            plain,
            key("SELECT x::regclass FROM t WHERE a = 'model_metadata'")
        );
        assert_ne!(
            key("SELECT 1 FROM t /* x */"),
            key("SELECT 1 FROM t /* MODEL_METADATA */")
        );
        assert_ne!(
            key("SELECT 1 FROM model_metadata"),
            key("SELECT 1 FROM model_metadata_id")
        );
        assert_ne!(
            key("SELECT 1 FROM \"model_metadata\""),
            key("SELECT 1 FROM model_metadata")
        );
    }

    #[test]
    fn a_number_that_spells_a_name_is_kept_and_others_masked() {
        // Names of letters cannot occur in a number: every number is masked.
        assert_eq!(
            key("SELECT 1e5 FROM model_metadata WHERE id = 12"),
            key("SELECT 2e5 FROM model_metadata WHERE id = 7")
        );
        // A table named `12e3` (quoted) can be mentioned by a number: kept verbatim then.
        let digits = VersionTargets::new(
            "v2",
            vec![ViewTarget {
                table: RelationName::new("public", "12e3"),
                view: RelationName::new("public", "12e3_v2"),
            }],
        );
        assert!(digits.mention_scan().may_occur_in_a_number());
        assert!(!v2().mention_scan().may_occur_in_a_number());
        let key = |sql: &str| Shape::of(sql, &digits, &mut Vec::new()).map(|s| s.key);
        let spelling = key("SELECT 12E3 FROM \"12e3\"");
        assert!(spelling.is_some());
        assert_ne!(spelling, key("SELECT 13E3 FROM \"12e3\""));
        assert_ne!(spelling, key("SELECT 512e31 FROM \"12e3\""));
        assert_eq!(key("SELECT 1 FROM \"12e3\""), key("SELECT 2 FROM \"12e3\""));
    }

    #[test]
    fn a_learned_shape_rewrites_other_statements_as_the_parser_does() {
        let targets = v2();
        let first = "SELECT m.id FROM public.model_metadata m WHERE public.model_metadata.id IN (1, 2) AND n = 'a'";
        let mut tokens = Vec::new();
        let shape = Shape::of(first, &targets, &mut tokens).unwrap();
        let learned = learn(&shape, &tokens, &analyse(first, &targets)).unwrap();
        assert!(matches!(learned, ShapeRewrite::Edits(ref e) if e.len() == 2));
        let second = "SELECT m.id FROM public.model_metadata m WHERE public.model_metadata.id IN (10, 20, 30) /* é */ AND n = 'bb''b'";
        let other = Shape::of(second, &targets, &mut tokens).unwrap();
        assert_eq!(shape.key, other.key);
        assert_eq!(
            learned.apply(second, &other, "v2").unwrap(),
            rewrite(second, &targets)
        );
    }

    #[test]
    fn errors_are_not_learned() {
        let targets = v2();
        // The parser's message names the constant it stumbled on.
        let sql = "VALUES'x' model_metadata";
        let mut tokens = Vec::new();
        let shape = Shape::of(sql, &targets, &mut tokens).unwrap();
        let analysis = analyse(sql, &targets);
        assert!(analysis.edits.is_err());
        assert_eq!(learn(&shape, &tokens, &analysis), None);
    }

    #[test]
    fn disagreement_with_the_parser_is_not_learned() {
        let targets = v2();
        // sqlparser reads `</*` as an operator; Postgres and the lexer as `<` and a comment.
        let sql = "SELECT 1 FROM model_metadata WHERE a </* c */ 2";
        let mut tokens = Vec::new();
        let shape = Shape::of(sql, &targets, &mut tokens).unwrap();
        assert_eq!(learn(&shape, &tokens, &analyse(sql, &targets)), None);
    }

    #[test]
    fn readable_shapes_mask_constants_and_drop_comments() {
        let mut tokens = Vec::new();
        assert_eq!(
            readable(
                "/* app */ SELECT id,name  FROM t\n WHERE id = 42 AND n = 'x' -- end",
                &mut tokens
            )
            .as_deref(),
            Some("SELECT id,name FROM t WHERE id = ? AND n = ?")
        );
        assert_eq!(
            readable("SELECT $1::int, $$q$$", &mut tokens).as_deref(),
            Some("SELECT $1::int, ?")
        );
    }
}
