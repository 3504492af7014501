//! The fast path's scan: does a statement mention any name a version rewrites, in any case?
//!
//! Run on every statement of every versioned session, before anything is tokenized, so it must
//! cost next to nothing on statements that name none. The names are grouped by their first
//! byte once, when a version's targets are built: the scan makes one `memchr` pass over the
//! statement per group and, where the byte occurs, compares only the names whose second byte
//! follows it. A version with catalog substitutes looks for eleven names, nine of which
//! start with `pg_`: three passes, not eleven.

/// What the built-ins that read a relation named in a string have in their names
/// (`query_to_xml`, `table_to_xml_and_xmlschema`, …, `ts_stat`, `ts_rewrite`): a statement
/// must mention one for `query_functions.rs` to look at it. Few marks, each starting with a
/// byte SQL seldom holds where possible (`_` would stop the scan at every column name).
/// Measured on the 357-character unmanaged statement of `benches/rewrite.rs`: the scan took
/// 70 ns; with `_to_xml` it took 127 ns, with `xml` and the `U&"` check 82 ns, with the `ts_`
/// names and every check of [`may_hide_a_name`] 204 ns (docs/rewriting.md, "Cost").
pub const RELATION_READING_FUNCTION_MARKS: &[&str] = &["xml", "ts_stat", "ts_rewrite"];

/// A version's names, grouped by their first byte and, within a group, by their second (both
/// lower case), ready to scan for: where the first byte occurs, the next byte picks the few
/// names worth comparing (`deployments` has three `p`s, none followed by `g`).
#[derive(Debug, Clone, Default)]
pub struct MentionScan {
    groups: Vec<FirstByte>,
}

#[derive(Debug, Clone)]
struct FirstByte {
    byte: u8,
    /// Names of one byte: found wherever that byte is.
    whole: bool,
    /// The shortest name of the group: no name starts closer than this to the end.
    shortest: usize,
    /// Per second byte, the rest of each name (from its third byte).
    by_second: Vec<(u8, Vec<Box<[u8]>>)>,
}

impl MentionScan {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut groups: Vec<FirstByte> = Vec::new();
        for name in names {
            let bytes = name.as_bytes();
            let Some(&first) = bytes.first() else {
                continue;
            };
            let first = first.to_ascii_lowercase();
            let index = groups
                .iter()
                .position(|group| group.byte == first)
                .unwrap_or_else(|| {
                    groups.push(FirstByte {
                        byte: first,
                        whole: false,
                        shortest: bytes.len(),
                        by_second: Vec::new(),
                    });
                    groups.len() - 1
                });
            let group = &mut groups[index];
            group.shortest = group.shortest.min(bytes.len());
            let (Some(&second), Some(tail)) = (bytes.get(1), bytes.get(2..)) else {
                group.whole = true;
                continue;
            };
            let second = second.to_ascii_lowercase();
            match group.by_second.iter_mut().find(|(byte, _)| *byte == second) {
                Some((_, tails)) => tails.push(tail.into()),
                None => group.by_second.push((second, vec![tail.into()])),
            }
        }
        MentionScan { groups }
    }

    /// Whether any of the names occurs in `haystack`, ignoring ASCII case, or could
    /// ([`may_hide_a_name`]).
    pub fn found_in(&self, haystack: &[u8]) -> bool {
        !self.groups.is_empty() && may_hide_a_name(haystack) || self.names_in(haystack)
    }

    /// Whether any of the names occurs in `haystack` as written, ignoring ASCII case.
    pub fn names_in(&self, haystack: &[u8]) -> bool {
        self.groups.iter().any(|group| {
            let Some(last_start) = haystack.len().checked_sub(group.shortest) else {
                return false;
            };
            let candidates = haystack.get(..=last_start).unwrap_or_default();
            let mut starts =
                memchr::memchr2_iter(group.byte, group.byte.to_ascii_uppercase(), candidates);
            if group.whole {
                return starts.next().is_some();
            }
            starts.any(|start| {
                let Some(second) = haystack.get(start + 1).map(u8::to_ascii_lowercase) else {
                    return false;
                };
                group
                    .by_second
                    .iter()
                    .filter(|(byte, _)| *byte == second)
                    .flat_map(|(_, tails)| tails)
                    .any(|tail| {
                        haystack
                            .get(start + 2..start + 2 + tail.len())
                            .is_some_and(|window| window.eq_ignore_ascii_case(tail))
                    })
            })
        })
    }
}

/// Whether `haystack` may name a managed table without spelling the name, so that it must be
/// read whatever the names' scan says: Postgres's parser decodes the name and the rewriter
/// sees it. A Unicode escape (`U&"\006Dodel_metadata"`, `U&'…'`) or an escape string with a
/// backslash (`E'model\x5fmetadata'`, read as a relation by `query_to_xml` or as a body)
/// spells any name without its letters; a definition statement (`DO`, `CREATE FUNCTION`,
/// …) can build it at run time (`definitions.rs`); a string continued after a `--` comment
/// joins parts that each spell only half of it. All are rare in application traffic.
pub fn may_hide_a_name(haystack: &[u8]) -> bool {
    unicode_escape(haystack)
        || escape_string_with_backslash(haystack)
        || starts_definition(haystack)
        || comment_after_quote(haystack)
}

/// A `--` comment after a quote: a string may continue after it (`'model_' -- c⏎'metadata'`,
/// `lexer::string_continued_after_comment`), spelling a name no part shows.
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
/// or after a `;`, past whitespace): Postgres's parser reads what such a statement keeps.
pub fn starts_definition(haystack: &[u8]) -> bool {
    let starts_with_word = |at: usize| {
        let rest = &haystack[at..];
        let start = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let rest = &rest[start..];
        ["do", "create"].iter().any(|word| {
            rest.len() >= word.len()
                && rest[..word.len()].eq_ignore_ascii_case(word.as_bytes())
                && !rest
                    .get(word.len())
                    .copied()
                    .is_some_and(is_identifier_byte)
        })
    };
    starts_with_word(0) || memchr::memchr_iter(b';', haystack).any(|at| starts_with_word(at + 1))
}

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
mod tests {
    use super::*;

    #[test]
    fn finds_any_name_in_any_case_and_nothing_else() {
        let scan = MentionScan::new([
            "pg_class",
            "pg_index",
            "model_metadata",
            "information_schema",
            "",
        ]);
        assert_eq!(scan.groups.len(), 3, "one group a first byte");
        for text in [
            "select * from PG_INDEX",
            "select * from pg_class",
            "Information_Schema.columns",
            "pg_pg_index",
            "x MODEL_METADATA",
        ] {
            assert!(scan.found_in(text.as_bytes()), "{text}");
        }
        for text in [
            "select * from pg_inde",
            "pg_namespace, pg_clas, model_metadat",
            "",
            "p",
        ] {
            assert!(!scan.found_in(text.as_bytes()), "{text}");
        }
        assert!(!MentionScan::new([]).found_in(b"anything"));
        for hidden in [
            r#"SELECT * FROM u&"\0064eployments""#,
            r#"SELECT query_to_xml(U&'x', true, false, '')"#,
            r#"SELECT x(e'model\x5fmetadata')"#,
            "DO $$ BEGIN EXECUTE 'x'; END $$",
            "SELECT 1;\n create function f() returns int language sql as 'select 1'",
        ] {
            assert!(scan.found_in(hidden.as_bytes()), "{hidden}");
        }
        for plain in [
            r#"SELECT 'a&"b'"#,
            r"SELECT e'it''s', 'ends in a backslash\'",
            r#"SELECT 'the\d'"#,
            "SELECT done FROM docs",
            "SELECT 1; created",
        ] {
            assert!(!scan.found_in(plain.as_bytes()), "{plain}");
        }
        assert!(!MentionScan::new([]).found_in(br#"U&"x""#));
        let one_byte = MentionScan::new(["x"]);
        assert!(one_byte.found_in(b"a X b") && !one_byte.found_in(b"abc"));
    }

    #[test]
    fn finds_one_name_ignoring_case() {
        assert!(contains_ignore_ascii_case(
            b"a Model_Metadata b",
            b"model_metadata"
        ));
        assert!(!contains_ignore_ascii_case(
            b"model_metadat",
            b"model_metadata"
        ));
        assert!(!contains_ignore_ascii_case(b"abc", b""));
    }
}
