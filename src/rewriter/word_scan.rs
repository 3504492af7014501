//! A fixed set of words looked for anywhere in a text, in any case, in one pass: the cheap
//! tests the router runs on every statement before it reads one (`SAVEPOINT`, `RESET`,
//! `TEMP`, `PREPARE`, …).
//!
//! Each test looked for its words one pass a word (a memchr for the first letter in either
//! case, then a comparison at every hit: at every `s`, `r`, `t` of the text), and together
//! they took more of an unmanaged read's time in `SessionRouter::statement` than its rewrite
//! did (`benches/router.rs`). The words of one test now make a [`MentionScan`], one SIMD pass
//! over the whole set, built the first time it is asked.

use std::sync::OnceLock;

use super::mention::MentionScan;

/// Words for one test; a `static` of this type builds its scan once, on first use.
#[derive(Debug)]
pub struct WordScan {
    words: &'static [&'static str],
    scan: OnceLock<MentionScan>,
}

impl WordScan {
    pub const fn new(words: &'static [&'static str]) -> Self {
        WordScan {
            words,
            scan: OnceLock::new(),
        }
    }

    /// The words, as given.
    pub fn words(&self) -> &'static [&'static str] {
        self.words
    }

    /// Whether one of the words occurs in `text`, ignoring ASCII case: inside a longer word,
    /// a string or a comment too (the tests that follow read the statements).
    pub fn any_in(&self, text: &[u8]) -> bool {
        self.scan
            .get_or_init(|| MentionScan::new(self.words.iter().copied()))
            .names_in(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every test asked before: a pass a word.
    fn by_definition(words: &[&str], text: &str) -> bool {
        let lower = text.to_ascii_lowercase();
        words.iter().any(|word| lower.contains(word))
    }

    static STEPS: WordScan = WordScan::new(&["savepoint", "release", "rollback"]);
    static TEMP: WordScan = WordScan::new(&["temp"]);

    #[test]
    fn finds_a_word_anywhere_in_any_case_and_nothing_else() {
        for (text, expected) in [
            ("SELECT 1", false),
            ("ROLLBACK", true),
            ("select 'x' -- SavePoint", true),
            ("SELECT released_at FROM t", true),
            ("RELEAS", false),
            ("roll back", false),
            ("", false),
        ] {
            assert_eq!(STEPS.any_in(text.as_bytes()), expected, "{text}");
        }
        // Past the scan's first chunk of a kilobyte, and across its boundary.
        let long = format!("{}TeMp", "x".repeat(1022));
        assert!(TEMP.any_in(long.as_bytes()));
        assert!(!TEMP.any_in("x".repeat(3000).as_bytes()));
    }

    proptest::proptest! {
        #[test]
        fn any_in_is_a_search_for_each_word(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "savepoint", "SAVEPOINT", "Release", "rollback", "temp", "TEMP", "save",
                    "point", "rel", "ease", "roll", "back", "te", "mp", " ", "_", "é", "'",
                    "--", "x",
                ]),
                0..12,
            )
        ) {
            let text = pieces.concat();
            proptest::prop_assert_eq!(
                STEPS.any_in(text.as_bytes()),
                by_definition(STEPS.words(), &text),
                "{:?}", text
            );
            proptest::prop_assert_eq!(
                TEMP.any_in(text.as_bytes()),
                by_definition(TEMP.words(), &text),
                "{:?}", text
            );
        }
    }
}
