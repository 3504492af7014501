//! Turning parser positions into byte offsets, and splicing replacements into the original
//! text so that everything not replaced (comments, spacing, hints) stays as the client wrote it;
//! the text's significant tokens, read once however many names in it are spliced.

use sqlparser::tokenizer::{Location, Span};

use super::lexer::{self, Kind};
use super::postgres_parser;

/// Maps sqlparser's 1-based (line, column-in-characters) locations to byte offsets.
pub struct TextIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    /// Whether each line is pure ASCII, where a column is a byte count (the common case, and
    /// O(1) instead of a walk along the line).
    ascii_lines: Vec<bool>,
    /// The text's significant tokens, read the first time a statement of it asks.
    tokens: std::cell::OnceCell<Tokens>,
}

/// The significant tokens of one text (comments and whitespace left out), read once for all
/// the names in it: reading them anew for each name made a statement that names a table
/// thousands of times quadratic (the forty-second red-team pass held the proxy 60 s with a
/// 200 KB script of 5,000 statements). Read with this crate's lexer, or, where it gives up,
/// with Postgres's own scanner (the thirty-fourth red-team pass had a reading by bytes take
/// the word in a `--table` comment for the `TABLE` keyword); a text that scanner rejects too
/// is one the server rejects, and has no tokens here.
pub struct Tokens {
    /// Byte ranges, in order.
    significant: Vec<std::ops::Range<usize>>,
}

impl Tokens {
    pub fn of(sql: &str) -> Self {
        let mut tokens = Vec::new();
        let significant = if lexer::lex(sql, &mut tokens).is_some() {
            tokens
                .iter()
                .filter(|token| token.kind != Kind::Comment)
                .map(|token| token.start..token.end)
                .collect()
        } else {
            postgres_parser::token_ranges(sql)
                .unwrap_or_default()
                .into_iter()
                .filter(|range| {
                    sql.get(range.clone())
                        .is_some_and(|token| !token.starts_with("--") && !token.starts_with("/*"))
                })
                .collect()
        };
        Tokens { significant }
    }

    /// The tokens' byte ranges, in order, not overlapping.
    pub fn ranges(&self) -> &[std::ops::Range<usize>] {
        &self.significant
    }
}

impl<'a> TextIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let ascii_lines = line_starts
            .iter()
            .enumerate()
            .map(|(line, &start)| {
                let end = line_starts.get(line + 1).copied().unwrap_or(text.len());
                text.as_bytes()
                    .get(start..end)
                    .is_some_and(<[u8]>::is_ascii)
            })
            .collect();
        TextIndex {
            text,
            line_starts,
            ascii_lines,
            tokens: std::cell::OnceCell::new(),
        }
    }

    /// The text's significant tokens, shared by all its statements.
    pub fn tokens(&self) -> &Tokens {
        self.tokens.get_or_init(|| Tokens::of(self.text))
    }

    /// The byte offset of a location; `None` for the empty location or one off the text.
    pub fn offset(&self, location: Location) -> Option<usize> {
        let line_number = usize::try_from(location.line).ok()?.checked_sub(1)?;
        let line_start = *self.line_starts.get(line_number)?;
        let column = usize::try_from(location.column).ok()?.checked_sub(1)?;
        let line = &self.text[line_start..];
        if column == 0 {
            return Some(line_start);
        }
        if self.ascii_lines.get(line_number) == Some(&true) {
            let line_end = self
                .line_starts
                .get(line_number + 1)
                .copied()
                .unwrap_or(self.text.len());
            // Past the line's last character only at the very end of the text, as below.
            let offset = line_start + column;
            return (offset < line_end || offset == self.text.len()).then_some(offset);
        }
        match line.char_indices().nth(column) {
            Some((offset, _)) => Some(line_start + offset),
            // A column just past the last character (an end location at end of text).
            None if line.chars().count() == column => Some(self.text.len()),
            None => None,
        }
    }

    /// The byte range a span covers (its end is exclusive).
    pub fn range(&self, span: Span) -> Option<std::ops::Range<usize>> {
        let start = self.offset(span.start)?;
        let end = self.offset(span.end)?;
        (start <= end).then_some(start..end)
    }
}

/// A replacement of `range` (bytes of the original text) by `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: std::ops::Range<usize>,
    pub text: String,
    /// Whether the edit replaces a relation reference (a FROM item, a DML or COPY target, the
    /// relation of `TABLE`) or a row type's name, as opposed to a qualifier or a regclass
    /// literal: these are what Postgres's parser is asked to confirm (`postgres_grammar.rs`).
    pub relation: bool,
}

/// Applies non-overlapping edits; `None` if any overlap (which would mean two readings of the
/// same text, so the statement is not rewritten blindly). A replacement that would run into
/// the text beside it gets a space there: `"model_metadata"_1` is a name and an alias, but
/// `public.model_metadata_v1_1` one name (the thirty-second red-team pass read a version
/// called `v1_1` so), and `FROM"model_metadata"` would become `FROMpublic…`.
pub fn apply(text: &str, mut edits: Vec<Edit>) -> Option<String> {
    edits.sort_by_key(|e| e.range.start);
    let added = most_added(edits.iter().map(|edit| edit.text.as_str()));
    apply_sorted(
        text,
        added,
        edits
            .iter()
            .map(|edit| (edit.range.clone(), edit.text.as_str())),
    )
}

/// The most bytes edits with these replacement texts can add to a text: each text and the
/// two spaces that may keep it apart from its neighbours.
pub fn most_added<'e>(texts: impl IntoIterator<Item = &'e str>) -> usize {
    texts.into_iter().map(|text| text.len() + 2).sum()
}

/// [`apply`] for edits already sorted by their start, given as ranges and texts (a shape
/// template's, `shape_template.rs`, borrowed rather than copied for every statement), that
/// add at most `added` bytes ([`most_added`]): the output is allocated once.
pub fn apply_sorted<'e>(
    text: &str,
    added: usize,
    edits: impl IntoIterator<Item = (std::ops::Range<usize>, &'e str)>,
) -> Option<String> {
    let mut out = String::with_capacity(text.len() + added);
    let mut position = 0;
    for (range, replacement) in edits {
        if range.start < position || range.end > text.len() {
            return None;
        }
        out.push_str(text.get(position..range.start)?);
        if runs_together(out.chars().next_back(), replacement.chars().next()) {
            out.push(' ');
        }
        out.push_str(replacement);
        // What now ends the output: the replacement's last character, or, for a deletion
        // (a dropped `schema.` qualifier), the character before it (the thirty-third pass
        // had `NOT"public".t.c` become `NOTt.c`, a name of the client's choosing).
        let next = text.get(range.end..)?.chars().next();
        if runs_together(out.chars().next_back(), next) {
            out.push(' ');
        }
        position = range.end;
    }
    out.push_str(text.get(position..)?);
    Some(out)
}

/// Whether two characters side by side would be read as one token where they were two:
/// both continue a word (an unquoted identifier's characters, or a quoted one's quote).
fn runs_together(before: Option<char>, after: Option<char>) -> bool {
    let word = |c: char| c.is_alphanumeric() || matches!(c, '_' | '$' | '"') || !c.is_ascii();
    before.is_some_and(word) && after.is_some_and(word)
}

/// Whether every edit starts and ends between tokens, never inside a comment, a string or a
/// quoted name, where what it took away or put in would change how the rest of the text is
/// read: the thirtieth red-team pass had a COPY's column list end at a `)` inside a comment,
/// so the edit cut the comment's `/*` off and the comment's text ran as statements. The
/// tokens are this crate's lexer's, or Postgres's scanner's where that lexer gives up; a text
/// neither reads is `false`.
pub fn between_tokens(text: &str, edits: &[Edit]) -> bool {
    let mut tokens = Vec::new();
    let ranges: Vec<std::ops::Range<usize>> = match lexer::lex(text, &mut tokens) {
        Some(()) => tokens.iter().map(|t| t.start..t.end).collect(),
        None => match postgres_parser::token_ranges(text) {
            Some(ranges) => ranges,
            None => return false,
        },
    };
    let outside = |at: usize| {
        // The last token starting before `at` must end by it.
        let before = ranges.partition_point(|r| r.start < at);
        before == 0 || ranges[before - 1].end <= at
    };
    edits
        .iter()
        .all(|edit| outside(edit.range.start) && outside(edit.range.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_columns_in_characters() {
        let text = "SELECT 'é' FROM t\n  JOIN u";
        let index = TextIndex::new(text);
        assert_eq!(
            index.offset(Location::new(1, 17)),
            Some(text.find('t').unwrap())
        );
        assert_eq!(index.offset(Location::new(2, 8)), Some(text.len() - 1));
        assert_eq!(index.offset(Location::new(2, 9)), Some(text.len()));
        assert_eq!(index.offset(Location::new(0, 0)), None);
        assert_eq!(index.offset(Location::new(3, 1)), None);
    }

    #[test]
    fn applies_edits_in_order_and_refuses_overlaps() {
        let edits = vec![
            Edit {
                range: 14..15,
                text: "t_v2 AS t".into(),
                relation: true,
            },
            Edit {
                range: 0..6,
                text: "select".into(),
                relation: false,
            },
        ];
        assert_eq!(
            apply("SELECT * FROM t", edits).unwrap(),
            "select * FROM t_v2 AS t"
        );
        let overlapping = vec![
            Edit {
                range: 0..5,
                text: String::new(),
                relation: false,
            },
            Edit {
                range: 4..6,
                text: String::new(),
                relation: false,
            },
        ];
        assert_eq!(apply("abcdefg", overlapping), None);
        // A replacement that would run into its neighbours gets a space on that side.
        let name = |range: std::ops::Range<usize>| {
            vec![Edit {
                range,
                text: "public.t_v1".into(),
                relation: true,
            }]
        };
        assert_eq!(
            apply("SELECT 1 FROM\"t\"_1", name(13..16)).unwrap(),
            "SELECT 1 FROM public.t_v1 _1"
        );
        assert_eq!(
            apply("SELECT 1 FROM (t)", name(15..16)).unwrap(),
            "SELECT 1 FROM (public.t_v1)"
        );
        let dropped = vec![Edit {
            range: 10..19,
            text: String::new(),
            relation: false,
        }];
        assert_eq!(
            apply("SELECT NOT\"public\".t.c FROM t", dropped).unwrap(),
            "SELECT NOT t.c FROM t"
        );
    }

    #[test]
    fn edits_must_start_and_end_between_tokens() {
        let edit = |range: std::ops::Range<usize>| Edit {
            range,
            text: "x".into(),
            relation: false,
        };
        let sql = "COPY t (id /*) TO STDOUT; SELECT 1; --*/) TO STDOUT";
        let close_in_comment = sql.find(')').unwrap() + 1;
        let close = sql.rfind(')').unwrap() + 1;
        assert!(!between_tokens(sql, &[edit(5..close_in_comment)]));
        assert!(between_tokens(sql, &[edit(5..close)]));
        // Inside a string or a quoted name, and an insertion there.
        let sql = "SELECT 'a)b', \"c)d\" FROM t";
        assert!(!between_tokens(sql, &[edit(9..9)]));
        assert!(!between_tokens(sql, &[edit(0..17)]));
        assert!(between_tokens(sql, &[edit(7..12), edit(25..26)]));
        // Where this crate's lexer gives up (a Unicode escape), Postgres's scanner decides.
        let sql = "SELECT U&'a)' /* ) */ FROM t";
        assert!(!between_tokens(sql, &[edit(0..12)]));
        assert!(!between_tokens(sql, &[edit(0..17)]));
        assert!(between_tokens(sql, &[edit(27..28)]));
        // A text neither reads.
        assert!(!between_tokens("SELECT 'open", &[edit(0..6)]));
    }
}
