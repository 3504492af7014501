//! The fast path's scan: does a statement mention any name a version rewrites, in any case?
//!
//! Run on every statement of every versioned session, before anything is tokenized, so it must
//! cost next to nothing on statements that name none. One pass finds every name: the statement
//! is lowered a chunk at a time into a buffer on the stack, and Teddy, aho-corasick's SIMD
//! multi-pattern searcher, looks there for the first three bytes of every name at once (`mod`,
//! `pg_`, `inf`, …, lowered once when a version's targets are built); only where one occurs are
//! the names starting so compared whole, on the statement as written. The `U&"` and `U&'` that
//! open a Unicode escape (which may hide a name, [`may_hide_a_name`]) are two more entries of
//! the same search. Before, one memchr pass per distinct first byte of the names (five for
//! the seed's version, nine with catalog substitutes, one more for every table starting with
//! another letter) stopped at every `t` and `s` of the text (`ts_stat`, `search_path`). Spelling each start in every case
//! instead of lowering the text (`mod`, `moD`, …, `MOD`) fits only seven starts in Teddy's 64
//! patterns and cost more even within them. An automaton over the whole names,
//! ASCII-case-insensitive (aho-corasick's DFA), walks the text a byte at a time, about 1.5 ns a
//! byte whatever the names: slower than the passes on the benchmark's statement, so it serves
//! only where Teddy does not (more than 64 starts, or a machine without SSSE3 or NEON).
//! Figures: docs/rewriting.md, "Cost".

use aho_corasick::{AhoCorasick, Span, packed};

use crate::model::catalog_substitutes::{
    READING_SETTERS, SCHEMA_WORD, SEARCH_PATH_SETTERS, SUBSTITUTE_SCHEMA_PREFIX,
};

/// What every version with managed tables looks for besides the tables' names: the built-ins
/// that read a relation named in a string, another version's substitutes, and what may
/// change the search_path (`search_path_catalog.rs`) or how later text reads
/// (`reading_settings.rs`), and EXPLAIN's `VERBOSE`. The verdicts they lead to may turn on a
/// constant (a setting's value, an option's), so a text with one is never learned by shape
/// (`shape.rs`).
pub(super) fn version_marks<'a>() -> impl Iterator<Item = &'a str> {
    RELATION_READING_FUNCTION_MARKS
        .iter()
        .chain([&SUBSTITUTE_SCHEMA_PREFIX, &SCHEMA_WORD, &VERBOSE_MARK])
        .chain(SEARCH_PATH_SETTERS)
        .chain(READING_SETTERS)
        .map(|mark| -> &'a str { mark })
}

/// What the built-ins that read a relation named in a string have in their names
/// (`query_to_xml`, `table_to_xml_and_xmlschema`, …, `ts_stat`, `ts_rewrite`, and the
/// extensions' `crosstab`, `connectby`, `xpath_table`): a statement must mention one for
/// `query_functions.rs` to look at it. Few marks, with starts SQL seldom holds (`_` would
/// find a candidate at every column name). In the one-pass scan they cost no pass of their
/// own, five starts (`xml`, `ts_`, `cro`, `con`, `xpa`) among the search's patterns. Measured on the
/// 357-character unmanaged statement of `benches/rewrite.rs` with the scan of one memchr pass
/// per first byte: 70 ns without them, 204 ns with them and every check of
/// [`may_hide_a_name`]; with the one-pass scan, every mark and check included, 89–109 ns
/// (docs/rewriting.md, "Cost").
pub const RELATION_READING_FUNCTION_MARKS: &[&str] = &[
    "xml",
    "ts_stat",
    "ts_rewrite",
    "crosstab",
    "connectby",
    "xpath_table",
];

/// `EXPLAIN (VERBOSE)` lists scans' output columns, and a plan may scan a managed table's base
/// table however the statement reaches it (a version's own view by name, a prepared
/// statement, a function): every version with managed tables reads statements with the word
/// (`postgres_grammar::explains_verbosely`).
pub const VERBOSE_MARK: &str = "verbose";

/// How many bytes of each name Teddy looks for: with two, `mo`, `pg`, `co` would stop the scan
/// at every `COUNT`, `model_id` or `ORDER`; a third byte makes a stop rare and keeps names
/// sharing it (the catalog's `pg_…`) one pattern.
const START_LEN: usize = 3;

/// How much of a statement is lowered at a time, into a buffer on the stack: a statement of
/// a few hundred bytes takes one chunk, a longer one a Teddy call a chunk.
const LOWERED_CHUNK: usize = 1024;

/// How long a statement may be to be lowered into a buffer of this size instead (most are).
const SHORT_CHUNK: usize = 256;

/// How many names [`MentionScan::which_in`] reports on: the bits of its answer.
pub const MAX_REPORTED_NAMES: usize = 64;

/// What opens a Unicode escape (`U&"\006Dodel_metadata"`, `U&'…'`), found with the names.
const UNICODE_ESCAPES: [&[u8]; 2] = [b"u&\"", b"u&'"];

/// A version's names (and the Unicode escapes), ready to scan for in one pass.
#[derive(Debug, Clone, Default)]
pub struct MentionScan {
    search: Search,
    /// Whether a name is empty or holds a byte other than an identifier's, so that it could
    /// straddle lexer tokens (`shape.rs` learns no shape then); decided once, here, rather
    /// than over every name for every statement (17 % of a managed read's user time in
    /// `perf`, with a version's catalog names).
    may_straddle_tokens: bool,
    /// Whether a name is made only of bytes a numeric constant can hold (digits, `.`, `e`,
    /// `+`, `-`): only then can a number mention one, and a number is worth scanning (the
    /// scans of a managed read's numbers were 2 % of its rewrite, criterion).
    may_occur_in_a_number: bool,
}

/// The bytes of a numeric constant as the shape lexer reads one (`lexer.rs`).
fn may_be_in_a_number(byte: u8) -> bool {
    byte.is_ascii_digit() || matches!(byte, b'.' | b'e' | b'E' | b'+' | b'-')
}

/// What the scan looks for: a name, or an escape that may hide one.
#[derive(Debug, Clone)]
struct Entry {
    bytes: Box<[u8]>,
    is_name: bool,
    /// The name's place in the list the scan was built from (escapes: past the names).
    index: usize,
}

impl Entry {
    /// Whether the entry occurs in `haystack` at `at`, where Teddy found its start of
    /// `start_len` bytes; `next` is the haystack's byte after that start, lowered.
    fn occurs_at(&self, haystack: &[u8], at: usize, start_len: usize, next: Option<u8>) -> bool {
        // Names sharing a start mostly differ in the next byte (`pg_class`, `pg_index`, … at a
        // `pg_catalog`): one byte rules them out.
        self.bytes
            .get(start_len)
            .is_none_or(|byte| Some(byte.to_ascii_lowercase()) == next)
            && haystack
                .get(at..at + self.bytes.len())
                .is_some_and(|window| window.eq_ignore_ascii_case(&self.bytes))
    }
}

#[derive(Debug, Clone, Default)]
enum Search {
    /// No names: nothing is found, not even what may hide one.
    #[default]
    Nothing,
    /// Teddy over the entries' lowered starts (all of one length, so at most one occurs at a
    /// position); `entries` holds per start (Teddy's pattern) the entries beginning with it.
    Starts {
        searcher: packed::Searcher,
        start_len: usize,
        entries: Vec<Vec<Entry>>,
    },
    /// One automaton over the whole entries, ASCII-case-insensitive; `is_name` per entry.
    Automaton {
        automaton: AhoCorasick,
        is_name: Vec<bool>,
        /// Per pattern, its entry's [`Entry::index`].
        index: Vec<usize>,
    },
    /// Each entry looked for on its own: the automaton could not be built (only past its
    /// limit of 2^31 states, over two gigabytes of names).
    OneByOne(Vec<Entry>),
}

impl MentionScan {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let names: Vec<&str> = names.into_iter().collect();
        let may_straddle_tokens = names.iter().any(|name| {
            name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)
        });
        let may_occur_in_a_number = names
            .iter()
            .any(|name| name.bytes().all(may_be_in_a_number));
        let entries = entries(names);
        if entries.is_empty() {
            return MentionScan {
                may_straddle_tokens,
                may_occur_in_a_number,
                ..MentionScan::default()
            };
        }
        let search = Search::starts(&entries).unwrap_or_else(|| Search::automaton(entries));
        MentionScan {
            search,
            may_straddle_tokens,
            may_occur_in_a_number,
        }
    }

    /// Whether a numeric constant could hold one of the names: one made only of the bytes a
    /// number is made of.
    pub fn may_occur_in_a_number(&self) -> bool {
        self.may_occur_in_a_number
    }

    /// Whether a name is empty or could straddle lexer tokens: made of other bytes than an
    /// identifier's, of which every run is one token.
    pub fn may_straddle_tokens(&self) -> bool {
        self.may_straddle_tokens
    }

    /// Whether any of the names occurs in `haystack`, ignoring ASCII case, or could
    /// ([`may_hide_a_name`]).
    pub fn found_in(&self, haystack: &[u8]) -> bool {
        !matches!(self.search, Search::Nothing)
            && (self.search.finds(haystack, true) || may_hide_a_name_unsearched(haystack))
    }

    /// Whether any of the names occurs in `haystack` as written, ignoring ASCII case.
    pub fn names_in(&self, haystack: &[u8]) -> bool {
        self.search.finds(haystack, false)
    }

    /// Which of the first [`MAX_REPORTED_NAMES`] names occur in `haystack` as written, ignoring
    /// ASCII case: bit `i` for the `i`-th name the scan was built from. One pass for a set of
    /// tests that would each have scanned for their own few words (`word_scan.rs`).
    pub fn which_in(&self, haystack: &[u8]) -> u64 {
        self.search.which(haystack)
    }

    /// Whether Teddy searches for these names; `None` on a machine without it.
    #[cfg(test)]
    pub(super) fn searched_by_teddy(&self) -> Option<bool> {
        packed::Searcher::new(["abc"])?;
        Some(matches!(self.search, Search::Starts { .. }))
    }
}

impl Search {
    /// Teddy over the entries' lowered starts, if the machine has the instructions it needs
    /// (SSSE3 or AVX2, NEON) and they are few enough (it declines more than 64 patterns, or 16
    /// of one byte, where its verification would dominate).
    fn starts(entries: &[Entry]) -> Option<Search> {
        // A name shorter than the others' starts is a start of its own length, so that every
        // start has one length.
        let start_len = entries
            .iter()
            .map(|entry| entry.bytes.len())
            .min()?
            .min(START_LEN);
        let mut starts: Vec<Vec<u8>> = Vec::new();
        let mut grouped: Vec<Vec<Entry>> = Vec::new();
        for entry in entries {
            let start = entry.bytes.get(..start_len)?.to_ascii_lowercase();
            match starts.iter().position(|known| *known == start) {
                Some(index) => grouped.get_mut(index)?.push(entry.clone()),
                None => {
                    starts.push(start);
                    grouped.push(vec![entry.clone()]);
                }
            }
        }
        Some(Search::Starts {
            searcher: packed::Searcher::new(starts)?,
            start_len,
            entries: grouped,
        })
    }

    /// Bit `i` set for every name `i` below [`MAX_REPORTED_NAMES`] found in `haystack`.
    fn which(&self, haystack: &[u8]) -> u64 {
        let bit = |entry: &Entry| match entry.is_name && entry.index < MAX_REPORTED_NAMES {
            true => 1u64 << entry.index,
            false => 0,
        };
        match self {
            Search::Nothing => 0,
            Search::Starts {
                searcher,
                start_len,
                entries,
            } => {
                let found = std::cell::Cell::new(0u64);
                // Never "found": the whole text is searched, every start's entries compared.
                let record = |at: usize, start: usize| {
                    let next = haystack.get(at + start_len).map(u8::to_ascii_lowercase);
                    for entry in entries.get(start).into_iter().flatten() {
                        if entry.occurs_at(haystack, at, *start_len, next) {
                            found.set(found.get() | bit(entry));
                        }
                    }
                    false
                };
                match haystack.len() <= SHORT_CHUNK {
                    true => find_lowered::<SHORT_CHUNK>(searcher, *start_len, haystack, record),
                    false => find_lowered::<LOWERED_CHUNK>(searcher, *start_len, haystack, record),
                };
                found.get()
            }
            Search::Automaton {
                automaton,
                is_name,
                index,
            } => automaton
                .find_overlapping_iter(haystack)
                .map(|found| found.pattern().as_usize())
                .filter(|&pattern| is_name.get(pattern).copied().unwrap_or(false))
                .filter_map(|pattern| index.get(pattern).copied())
                .filter(|&name| name < MAX_REPORTED_NAMES)
                .fold(0, |bits, name| bits | 1 << name),
            Search::OneByOne(entries) => entries
                .iter()
                .filter(|entry| contains_ignore_ascii_case(haystack, &entry.bytes))
                .fold(0, |bits, entry| bits | bit(entry)),
        }
    }

    fn automaton(entries: Vec<Entry>) -> Search {
        match AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(entries.iter().map(|entry| &entry.bytes))
        {
            Ok(automaton) => Search::Automaton {
                automaton,
                is_name: entries.iter().map(|entry| entry.is_name).collect(),
                index: entries.iter().map(|entry| entry.index).collect(),
            },
            Err(_) => Search::OneByOne(entries),
        }
    }

    /// Whether a name (or, with `escapes`, an escape) occurs in `haystack`, ignoring ASCII case.
    fn finds(&self, haystack: &[u8], escapes: bool) -> bool {
        let wanted = |entry: &Entry| entry.is_name || escapes;
        match self {
            Search::Nothing => false,
            Search::Starts {
                searcher,
                start_len,
                entries,
            } => {
                let occurs_at = |at: usize, start: usize| {
                    let next = haystack.get(at + start_len).map(u8::to_ascii_lowercase);
                    entries.get(start).is_some_and(|entries| {
                        entries
                            .iter()
                            .filter(|entry| wanted(entry))
                            .any(|entry| entry.occurs_at(haystack, at, *start_len, next))
                    })
                };
                // A statement that fits the short buffer is lowered there: zeroing the whole
                // chunk's buffer first was a fixed cost of every scan, as large as the scan
                // of a short statement itself.
                match haystack.len() <= SHORT_CHUNK {
                    true => find_lowered::<SHORT_CHUNK>(searcher, *start_len, haystack, occurs_at),
                    false => {
                        find_lowered::<LOWERED_CHUNK>(searcher, *start_len, haystack, occurs_at)
                    }
                }
            }
            Search::Automaton {
                automaton, is_name, ..
            } => {
                if escapes {
                    automaton.is_match(haystack)
                } else {
                    // Overlapping: an escape's match must not hide a name's over the same bytes.
                    automaton.find_overlapping_iter(haystack).any(|found| {
                        is_name
                            .get(found.pattern().as_usize())
                            .copied()
                            .unwrap_or(false)
                    })
                }
            }
            Search::OneByOne(entries) => entries
                .iter()
                .filter(|entry| wanted(entry))
                .any(|entry| contains_ignore_ascii_case(haystack, &entry.bytes)),
        }
    }
}

/// The non-empty names and, when there is one, the escapes that may hide a name.
fn entries<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Entry> {
    let names: Vec<&str> = names.into_iter().collect();
    let count = names.len();
    let mut entries: Vec<Entry> = names
        .into_iter()
        .enumerate()
        .filter(|(_, name)| !name.is_empty())
        .map(|(index, name)| Entry {
            bytes: name.as_bytes().into(),
            is_name: true,
            index,
        })
        .collect();
    if !entries.is_empty() {
        entries.extend(UNICODE_ESCAPES.iter().map(|escape| Entry {
            bytes: (*escape).into(),
            is_name: false,
            index: count,
        }));
    }
    entries
}

/// Whether `haystack` may name a managed table without spelling the name, so that it must be
/// read whatever the names' scan says: Postgres's parser decodes the name and the rewriter
/// sees it. A Unicode escape (`U&"\006Dodel_metadata"`, `U&'…'`) or an escape string with a
/// backslash (`E'model\x5fmetadata'`, read as a relation by `query_to_xml` or as a body)
/// spells any name without its letters; a definition statement (`DO`, `CREATE FUNCTION`,
/// …) can build it at run time (`definitions.rs`); a string continued after a `--` comment
/// joins parts that each spell only half of it. All are rare in application traffic.
pub fn may_hide_a_name(haystack: &[u8]) -> bool {
    unicode_escape(haystack) || may_hide_a_name_unsearched(haystack)
}

/// The checks of [`may_hide_a_name`] that look at how the text spells things (escapes, a
/// string continued after a comment), not at whether it is a definition: whether this very
/// text may name something without its letters.
pub fn may_spell_a_name(haystack: &[u8]) -> bool {
    unicode_escape(haystack)
        || escape_string_with_backslash(haystack)
        || comment_after_quote(haystack)
}

/// Whether Teddy finds, in `haystack` lowered `CHUNK` bytes at a time into a buffer on the
/// stack, a start for which `occurs_at(offset, pattern)` says a whole entry occurs there.
fn find_lowered<const CHUNK: usize>(
    searcher: &packed::Searcher,
    start_len: usize,
    haystack: &[u8],
    occurs_at: impl Fn(usize, usize) -> bool,
) -> bool {
    let mut lowered = [0; CHUNK];
    let mut offset = 0;
    loop {
        let chunk = haystack.get(offset..).unwrap_or_default();
        let chunk = chunk.get(..CHUNK).unwrap_or(chunk);
        let lowered = &mut lowered[..chunk.len()];
        for (lower, byte) in lowered.iter_mut().zip(chunk) {
            *lower = byte.to_ascii_lowercase();
        }
        let mut from = 0;
        while let Some(found) = searcher.find_in(&*lowered, Span::from(from..lowered.len())) {
            if occurs_at(offset + found.start(), found.pattern().as_usize()) {
                return true;
            }
            // Another start may begin inside this one.
            from = found.start() + 1;
        }
        if offset + chunk.len() >= haystack.len() {
            return false;
        }
        // The next chunk repeats this one's last bytes, so that a start across the boundary
        // is seen whole.
        offset += chunk.len() - (start_len - 1);
    }
}

/// Every check of [`may_hide_a_name`] but the Unicode escape, which [`MentionScan`] finds in
/// its search with the names: the fast path runs these after it, so a new check belongs here.
fn may_hide_a_name_unsearched(haystack: &[u8]) -> bool {
    escape_string_with_backslash(haystack)
        || starts_definition(haystack)
        || comment_after_quote(haystack)
}

/// A `--` comment after a quote: a string may continue after it (`'model_' -- c⏎'metadata'`,
/// `postgres_parser::string_continued_after_comment`), spelling a name no part shows.
pub fn comment_after_quote(haystack: &[u8]) -> bool {
    memchr::memchr(b'\'', haystack)
        .is_some_and(|quote| memchr::memmem::find(&haystack[quote..], b"--").is_some())
}

/// `U&"` or `U&'` (in either case), which opens a Unicode-escaped identifier or string.
fn unicode_escape(haystack: &[u8]) -> bool {
    memchr::memchr_iter(b'&', haystack).any(|at| {
        at > 0
            && haystack[at - 1].eq_ignore_ascii_case(&b'u')
            && matches!(haystack.get(at + 1), Some(b'"' | b'\''))
    })
}

/// An escape string (`E'…'`) with a backslash in it. Looked for only when the text has a
/// backslash at all; a quote that merely looks like `E'` inside another string makes the
/// text read when it need not be, never the reverse.
fn escape_string_with_backslash(haystack: &[u8]) -> bool {
    memchr::memchr(b'\\', haystack).is_some()
        && memchr::memchr_iter(b'\'', haystack).any(|at| {
            at > 0
                && haystack[at - 1].eq_ignore_ascii_case(&b'e')
                && (at < 2 || !is_identifier_byte(haystack[at - 2]))
                && escape_string_has_backslash(&haystack[at + 1..])
        })
}

/// Whether the escape string whose content starts `content` has a backslash before it ends
/// (`''` is a quote inside it).
fn escape_string_has_backslash(content: &[u8]) -> bool {
    let mut at = 0;
    while let Some(found) = memchr::memchr2(b'\\', b'\'', &content[at..]) {
        let found = at + found;
        if content[found] == b'\\' {
            return true;
        }
        if content.get(found + 1) != Some(&b'\'') {
            return false;
        }
        at = found + 2;
    }
    false
}

/// Whether a statement of `haystack` starts with `DO` or `CREATE` (at the start of the text
/// or after a `;`, past whitespace and comments, as Postgres's scanner skips them): Postgres's
/// parser reads what such a statement keeps. The eleventh red-team pass put `/**/` before a
/// `DO` whose body built the table's name at run time, and the text was never read.
///
/// Linear in the text: a `;` inside whitespace or a comment already skipped starts nothing
/// and is not looked past again (the twelfth red-team pass had `;--` repeated, a comment
/// from every `;` to the end, cost the square of the length).
pub fn starts_definition(haystack: &[u8]) -> bool {
    let starts_with_word = |rest: &[u8]| {
        ["do", "create"].iter().any(|word| {
            rest.len() >= word.len()
                && rest[..word.len()].eq_ignore_ascii_case(word.as_bytes())
                && !rest
                    .get(word.len())
                    .copied()
                    .is_some_and(is_identifier_byte)
        })
    };
    let mut skipped_to = 0;
    std::iter::once(0)
        .chain(memchr::memchr_iter(b';', haystack).map(|at| at + 1))
        .any(|start| {
            if start < skipped_to {
                return false;
            }
            let rest = past_trivia(&haystack[start..]);
            skipped_to = haystack.len() - rest.len();
            starts_with_word(rest)
        })
}

/// `text` past leading whitespace (Postgres's, vertical tab included) and comments (`--` to
/// the end of the line, `/* */` nested); empty if a comment never ends.
fn past_trivia(text: &[u8]) -> &[u8] {
    let mut at = 0;
    loop {
        while text
            .get(at)
            .is_some_and(|b| b.is_ascii_whitespace() || *b == VERTICAL_TAB)
        {
            at += 1;
        }
        let rest = &text[at..];
        if rest.starts_with(b"--") {
            match rest.iter().position(|b| matches!(b, b'\n' | b'\r')) {
                Some(end) => at += end + 1,
                None => return &[],
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0usize;
            let mut i = 0;
            loop {
                match (rest.get(i), rest.get(i + 1)) {
                    (Some(b'/'), Some(b'*')) => {
                        depth += 1;
                        i += 2;
                    }
                    (Some(b'*'), Some(b'/')) => {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    }
                    (Some(_), _) => i += 1,
                    (None, _) => return &[],
                }
            }
            at += i;
        } else {
            return rest;
        }
    }
}

/// Whitespace to Postgres's scanner (16 and later), not to `is_ascii_whitespace`.
const VERTICAL_TAB: u8 = 0x0B;

fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
}

/// Substring search ignoring ASCII case, without lowering a copy: memchr finds each
/// occurrence of the needle's first byte (in either case), then the rest is compared.
pub fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    let (Some((&first, rest)), Some(last_start)) = (
        needle.split_first(),
        haystack.len().checked_sub(needle.len()),
    ) else {
        return false;
    };
    let candidates = haystack.get(..=last_start).unwrap_or_default();
    memchr::memchr2_iter(
        first.to_ascii_lowercase(),
        first.to_ascii_uppercase(),
        candidates,
    )
    .any(|start| {
        haystack
            .get(start + 1..start + needle.len())
            .is_some_and(|candidate| candidate.eq_ignore_ascii_case(rest))
    })
}

#[cfg(test)]
#[path = "mention_tests.rs"]
mod tests;
