//! The mention scan: every name in any case and nothing else, every search strategy (Teddy,
//! the automaton) agreeing with a lowered search, definitions found past trivia.

/// The eleventh red-team pass: a comment before `DO` or `CREATE` hid the definition.
#[test]
fn a_definition_is_found_past_comments_and_any_whitespace_postgres_skips() {
    for text in [
        "DO 'BEGIN END'",
        "/**/DO $$BEGIN END$$",
        "/* a /* nested */ one */ create function f() returns int as 'select 1' language sql",
        "-- a comment\nCREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql",
        "-- a comment\r/**/\x0bDO'BEGIN END'",
        "SELECT 1; /* c */ -- d\n DO $$BEGIN END$$",
    ] {
        assert!(starts_definition(text.as_bytes()), "{text:?}");
    }
    // The twelfth red-team pass: `;--` repeated (one comment, to the end) was read from
    // every `;` to the end; now each byte is looked past once.
    let mut long = "SELECT 1".to_owned();
    long.push_str(&";--".repeat(200_000));
    assert!(!starts_definition(long.as_bytes()));
    long.push_str("\nDO 'BEGIN END'");
    assert!(starts_definition(long.as_bytes()));
    let nested = format!(
        "SELECT 1{}{}; DO 'x'",
        ";/*".repeat(100_000),
        "*/".repeat(100_000)
    );
    assert!(starts_definition(nested.as_bytes()));
    for text in [
        "SELECT 1 -- DO 'x'",
        "/* DO 'x' */ SELECT 1",
        "/* never ends DO 'x'",
        "SELECT created_at FROM t",
        "DO$$ AS identifier",
    ] {
        assert!(!starts_definition(text.as_bytes()), "{text:?}");
    }
}
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
    assert!(
        matches!(scan.search, Search::Starts { .. }) || !teddy_available(),
        "{scan:?}"
    );
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
        "SELECT x FROM f('model_' -- c\n'metadata')",
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

impl Search {
    fn kind(&self) -> &'static str {
        match self {
            Search::Nothing => "nothing",
            Search::Starts { .. } => "starts",
            Search::Automaton { .. } => "automaton",
            Search::OneByOne(_) => "one by one",
        }
    }
}

fn teddy_available() -> bool {
    packed::Searcher::new(["abc"]).is_some()
}

/// Each way of searching, for the same names.
fn searches(names: &[&str]) -> Vec<Search> {
    let entries = entries(names.iter().copied());
    let automaton = Search::automaton(entries.clone());
    assert!(matches!(automaton, Search::Automaton { .. }));
    Search::starts(&entries)
        .into_iter()
        .chain([automaton, Search::OneByOne(entries)])
        .collect()
}

#[test]
fn every_search_finds_what_a_lowered_search_finds() {
    let name_sets: &[&[&str]] = &[
        &["model_metadata", "xml", "ts_stat", "ts_rewrite"],
        &[
            "pg_class",
            "pg_index",
            "PG_Inde",
            "information_schema",
            "col_description",
        ],
        &["x", "xml"],
        &["ab", "abab", "b_"],
        &["aaa", "aab"],
        &["aaax", "aab"],
        &["ÉTé", "é", "u&\"x"],
        &["q&'", "ts_"],
    ];
    let pieces = [
        "a",
        "A",
        "b",
        "x",
        "X",
        "ml",
        "ML",
        "u&",
        "U&",
        "\"",
        "'",
        "_",
        "ts_",
        "TS_",
        "stat",
        "pg_",
        "PG_",
        "class",
        "inde",
        "X",
        "é",
        "É",
        "tÉ",
        "TÉ",
        "model_metadata",
        "MODEL_METADAT",
        "information_schema",
        "q&",
        "aa",
        "ab",
    ];
    let mut texts = vec![String::new()];
    for a in pieces {
        texts.push(a.to_owned());
        for b in pieces {
            for c in ["", "A", "'", "&\"", "_s", "b"] {
                texts.push(format!("{a}{b}{c}"));
                // Long enough for Teddy (shorter texts are searched by Rabin-Karp).
                texts.push(format!("select 1 from t where v = 2 or w = 3; {a}{b}{c}"));
            }
            // Across the boundary of the chunks the text is lowered in, and around the
            // longest text lowered in the short buffer.
            for before in (LOWERED_CHUNK - 4..=LOWERED_CHUNK).chain(SHORT_CHUNK - 6..=SHORT_CHUNK) {
                texts.push(format!("{}{a}{b}", "-".repeat(before)));
            }
        }
    }
    for names in name_sets {
        let searches = searches(names);
        assert_eq!(
            searches.len(),
            2 + usize::from(teddy_available()),
            "{names:?}"
        );
        let lowered_entries: Vec<(String, bool, usize)> = entries(names.iter().copied())
            .iter()
            .map(|entry| {
                let text = String::from_utf8_lossy(&entry.bytes).to_ascii_lowercase();
                (text, entry.is_name, entry.index)
            })
            .collect();
        for text in &texts {
            let lowered = text.to_ascii_lowercase();
            // Every name found, each by its place in the list.
            let found = lowered_entries
                .iter()
                .filter(|(entry, is_name, _)| *is_name && lowered.contains(entry))
                .fold(0u64, |bits, (_, _, index)| bits | 1 << index);
            for search in &searches {
                assert_eq!(
                    search.which(text.as_bytes()),
                    found,
                    "{names:?} in {text:?}: which, by {}",
                    search.kind()
                );
            }
            for escapes in [false, true] {
                let expected = lowered_entries
                    .iter()
                    .any(|(entry, is_name, _)| (*is_name || escapes) && lowered.contains(entry));
                for search in &searches {
                    assert_eq!(
                        search.finds(text.as_bytes(), escapes),
                        expected,
                        "{names:?} in {text:?} (escapes: {escapes}) by {}",
                        search.kind()
                    );
                }
            }
        }
    }
}

#[test]
fn past_teddys_limit_one_automaton_searches() {
    let many: Vec<String> = (b'a'..=b'h')
        .flat_map(|first| (b'a'..=b'i').map(move |second| [first, second]))
        .map(|start| format!("{}_table", String::from_utf8_lossy(&start)))
        .collect();
    let scan = MentionScan::new(many.iter().map(String::as_str));
    assert!(matches!(scan.search, Search::Automaton { .. }), "{scan:?}");
    assert!(scan.found_in(b"select * from HI_Table") && !scan.found_in(b"select * from hi_tabl"));
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
