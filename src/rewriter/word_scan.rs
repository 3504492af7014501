//! The words the router's cheap tests look for on every statement (`SAVEPOINT`, `RESET`,
//! `TEMP`, `PREPARE`, …), found in one pass over the statement.
//!
//! Each test once looked for its words one pass a word (a memchr for the first letter in
//! either case, then a comparison at every hit), then one Teddy pass a test: five tests, five
//! passes, each lowering the text again and paying Teddy's fixed cost, which on a short
//! statement is most of a pass (`benches/router.rs`). Now a statement's [`Words`] are found
//! once, by one [`MentionScan`] over every test's words, and each test asks them for its
//! [`WordSet`].

use std::sync::LazyLock;

use super::mention::{MAX_REPORTED_NAMES, MentionScan};

/// Every word some test looks for; a word's bit in [`Words`] and [`WordSet`] is its place here.
const WORDS: [&str; 17] = [
    "savepoint",
    "release",
    "rollback",
    "temp",
    "drop",
    "discard",
    "create",
    "into",
    "rename",
    "reset",
    "prepare",
    "deallocate",
    "declare",
    "close",
    "alter",
    "explain",
    "nonsystem",
];

const _: () = assert!(WORDS.len() <= MAX_REPORTED_NAMES);

static SCAN: LazyLock<MentionScan> = LazyLock::new(|| MentionScan::new(WORDS));

/// Which of the words a text holds: anywhere, in any case, inside a longer word, a string or
/// a comment too (the tests that follow read the statements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words(u64);

impl Words {
    /// The words `text` holds: one pass.
    pub fn in_text(text: &[u8]) -> Words {
        Words(SCAN.which_in(text))
    }

    /// Whether the text holds one of `set`'s words.
    pub fn any(self, set: WordSet) -> bool {
        self.0 & set.0 != 0
    }
}

/// The words one test looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordSet(u64);

impl WordSet {
    /// The set of `words`, each one of [`WORDS`]: a word missing there fails the build (every
    /// set is a constant).
    pub const fn of(words: &[&str]) -> WordSet {
        let mut bits = 0;
        let mut i = 0;
        while i < words.len() {
            bits |= 1 << index_of(words[i]);
            i += 1;
        }
        WordSet(bits)
    }
}

/// The place of `word` in [`WORDS`].
const fn index_of(word: &str) -> usize {
    let mut i = 0;
    while i < WORDS.len() {
        if same(WORDS[i].as_bytes(), word.as_bytes()) {
            return i;
        }
        i += 1;
    }
    panic!("a word set names a word that word_scan::WORDS does not list")
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every test asked before: a pass a word.
    fn by_definition(words: &[&str], text: &str) -> bool {
        let lower = text.to_ascii_lowercase();
        words.iter().any(|word| lower.contains(word))
    }

    const STEPS: &[&str] = &["savepoint", "release", "rollback"];
    const TEMP: &[&str] = &["temp"];

    #[test]
    fn finds_a_word_anywhere_in_any_case_and_nothing_else() {
        let steps = WordSet::of(STEPS);
        for (text, expected) in [
            ("SELECT 1", false),
            ("ROLLBACK", true),
            ("select 'x' -- SavePoint", true),
            ("SELECT released_at FROM t", true),
            ("RELEAS", false),
            ("roll back", false),
            ("", false),
        ] {
            assert_eq!(
                Words::in_text(text.as_bytes()).any(steps),
                expected,
                "{text}"
            );
        }
        // Past the scan's first chunk of a kilobyte, and across its boundary.
        let temp = WordSet::of(TEMP);
        let long = format!("{}TeMp", "x".repeat(1022));
        assert!(Words::in_text(long.as_bytes()).any(temp));
        assert!(!Words::in_text("x".repeat(3000).as_bytes()).any(temp));
    }

    #[test]
    fn every_word_is_reported_when_several_occur() {
        let text = "CREATE TEMP TABLE t AS SELECT 1; DROP TABLE t; ALTER x; close c";
        let words = Words::in_text(text.as_bytes());
        for word in WORDS {
            assert_eq!(
                words.any(WordSet::of(&[word])),
                by_definition(&[word], text),
                "{word}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn each_set_is_a_search_for_each_of_its_words(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "savepoint", "SAVEPOINT", "Release", "rollback", "temp", "TEMP", "save",
                    "point", "rel", "ease", "roll", "back", "te", "mp", " ", "_", "é", "'",
                    "--", "x", "Drop", "dis", "card", "into", "in", "to", "declare", "dec",
                    "lare", "ALTER", "close", "clo", "reset", "prep", "are",
                ]),
                0..12,
            ),
            padding in 0usize..1100,
        ) {
            // Some texts long enough to cross the scan's chunks.
            let text = format!("{}{}", "y".repeat(padding), pieces.concat());
            let words = Words::in_text(text.as_bytes());
            for word in WORDS {
                proptest::prop_assert_eq!(
                    words.any(WordSet::of(&[word])),
                    by_definition(&[word], &text),
                    "{} in {:?}", word, text
                );
            }
            for set in [STEPS, TEMP, &["temp", "drop", "discard"][..]] {
                proptest::prop_assert_eq!(
                    words.any(WordSet::of(set)),
                    by_definition(set, &text),
                    "{:?} in {:?}", set, text
                );
            }
        }
    }
}
