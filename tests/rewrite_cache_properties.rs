//! The shape cache against the full parse: for generated statements, and for variants of each
//! that differ only in their constants, `rewrite_cached` gives exactly what `rewrite` gives,
//! whatever was cached before. The constants are chosen to confuse a lexer: doubled quotes,
//! comment and dollar markers inside strings, `E''` escapes, dollar-quoted bodies, managed
//! names inside strings, comments, quoted and longer identifiers. A second property checks that
//! the cache does its job: variants that differ only in maskable constants share one entry
//! (unless they are refused: errors are cached by text). Each property also runs the texts
//! through a session's recent shapes (`rewrite_cached_in`), whose templates must rewrite
//! exactly as the cache and the full parse do, and must never take a glued or differently
//! read constant for one of their cuts.

use std::sync::{LazyLock, Mutex};

use proptest::prelude::*;
use viewgate::rewriter::rewrite::mentions_managed_table;
use viewgate::rewriter::{
    RecentShapes, RelationName, RewriteCache, VersionTargets, ViewTarget, rewrite, rewrite_cached,
    rewrite_cached_in,
};

const MANAGED: &str = "model_metadata";

/// Variants of each generated template that are run through the cache.
const VARIANTS: usize = 4;

/// Holes a template may have (each variant fills them all).
const MAX_HOLES: usize = 6;

/// One cache for every case of a run, so that statements of different shapes meet in it.
static SHARED: LazyLock<RewriteCache> = LazyLock::new(RewriteCache::default);

/// A session's cache and recent shapes for every case of a run: templates of one shape are
/// tried on texts of every other.
static SHARED_SESSION: LazyLock<Mutex<(RewriteCache, RecentShapes)>> =
    LazyLock::new(|| Mutex::new((RewriteCache::default(), RecentShapes::default())));

/// Every way the properties send a text: the cache alone (fresh and shared), and a session's
/// recent shapes in front of it (fresh and shared); each must give `expected`.
fn all_paths_agree(
    sql: &str,
    targets: &VersionTargets,
    cache: &RewriteCache,
    session: &mut (RewriteCache, RecentShapes),
) -> Result<(), TestCaseError> {
    let expected = rewrite(sql, targets);
    prop_assert_eq!(&*rewrite_cached(cache, sql, targets), &expected, "{}", sql);
    prop_assert_eq!(
        &*rewrite_cached(&SHARED, sql, targets),
        &expected,
        "{}",
        sql
    );
    let (session_cache, recent) = session;
    let through_session = rewrite_cached_in(session_cache, recent, sql, targets);
    prop_assert_eq!(&*through_session, &expected, "session: {}", sql);
    let mut shared = SHARED_SESSION
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let (shared_cache, shared_recent) = &mut *shared;
    let through_shared = rewrite_cached_in(shared_cache, shared_recent, sql, targets);
    prop_assert_eq!(&*through_shared, &expected, "shared session: {}", sql);
    Ok(())
}

fn v2() -> VersionTargets {
    VersionTargets::new(
        "v2",
        vec![ViewTarget {
            table: RelationName::new("public", MANAGED),
            view: RelationName::new("public", "model_metadata_v2"),
        }],
    )
}

/// Kinds of maskable constants: a shape keeps the kind of each (the parser may read a string
/// where it would refuse a number, `DATE '…'`), so variants of one shape keep them too.
const MASKABLE_KINDS: usize = 3;

/// Constants the shape lexer masks: every variant of a template made of these shares a shape
/// when each hole keeps its kind.
fn maskable_constant() -> BoxedStrategy<String> {
    (0..MASKABLE_KINDS)
        .prop_flat_map(maskable_constant_of)
        .boxed()
}

fn maskable_constant_of(kind: usize) -> BoxedStrategy<String> {
    match kind {
        0 => prop_oneof![
            (0u64..1_000_000).prop_map(|n| n.to_string()),
            Just("3.25".to_owned()),
            Just(".5".to_owned()),
            Just("1e10".to_owned()),
            Just("2.5E-3".to_owned()),
            Just("007".to_owned()),
        ]
        .boxed(),
        1 => prop_oneof![
            Just("$$ it's $$".to_owned()),
            Just("$q$ 'x' $$ -- $q$".to_owned()),
            "[a-z ]{0,12}".prop_map(|s| format!("$${s}$$")),
        ]
        .boxed(),
        _ => quoted_string(),
    }
}

fn quoted_string() -> BoxedStrategy<String> {
    prop_oneof![
        Just("''".to_owned()),
        Just("'it''s'".to_owned()),
        Just("'-- not a comment'".to_owned()),
        Just("'/* nor this'".to_owned()),
        Just(r"'ends in a backslash\'".to_owned()),
        Just("'$$ ; \" é😀'".to_owned()),
        Just("E'plain'".to_owned()),
        Just("e'dou''bled'".to_owned()),
        "[a-z ]{0,12}".prop_map(|s| format!("'{s}'")),
    ]
    .boxed()
}

/// Constants that are kept in the key (they name the table, or the parser reads their
/// content) or that the shape lexer leaves to the full path.
fn other_constant() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("'model_metadata'".to_owned()),
        Just("'public.MODEL_METADATA'".to_owned()),
        Just("'\"model_metadata\"'".to_owned()),
        Just("E'model_metadata'".to_owned()),
        Just("$t$model_metadata$t$".to_owned()),
        Just(r"E'a\'b'".to_owned()),
        Just(r"E'\\'".to_owned()),
        Just(r"E'\x41\n'".to_owned()),
        Just("B'101'".to_owned()),
        Just("X'ff'".to_owned()),
        Just("N'x'".to_owned()),
        Just("1_000".to_owned()),
        Just("0x1F".to_owned()),
        Just("U&'d\\0061t'".to_owned()),
    ]
}

fn constant() -> impl Strategy<Value = String> {
    prop_oneof![4 => maskable_constant(), 1 => other_constant().boxed()]
}

fn constant_list(constant: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    proptest::collection::vec(constant, 1..6).prop_map(|items| format!("({})", items.join(", ")))
}

/// A template's part: fixed text, or a hole every variant fills.
#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Constant,
    List,
}

fn text(value: &str) -> Part {
    Part::Text(value.to_owned())
}

/// Whitespace and comments; comments may name the table and must not be taken for SQL.
fn gap() -> impl Strategy<Value = Part> {
    prop_oneof![
        Just(" "),
        Just("\n  "),
        Just(" /* req=1 */ "),
        Just(" /* model_metadata */ "),
        Just(" -- FROM model_metadata\n"),
        Just(" /* nested /* model_metadata */ ; */ "),
        Just("\t"),
    ]
    .prop_map(text)
}

/// How the statement names a relation: the managed table in its forms, or names that only
/// contain it or differ from it in a way that matters.
fn relation() -> impl Strategy<Value = Part> {
    prop_oneof![
        Just("model_metadata"),
        Just("MODEL_METADATA"),
        Just("\"model_metadata\""),
        Just("public.model_metadata"),
        Just("\"public\".\"model_metadata\""),
        Just("model_metadata m"),
        Just("model_metadata AS \"MM\""),
        Just("\"Model_Metadata\""),
        Just("model_metadata_archive"),
        Just("\"model_metadata_id\""),
        Just("other.model_metadata"),
    ]
    .prop_map(text)
}

fn template() -> impl Strategy<Value = Vec<Part>> {
    let body = prop_oneof![
        (
            relation(),
            gap(),
            prop_oneof![
                Just(""),
                Just(" ORDER BY id LIMIT 5"),
                Just(" FOR NO KEY UPDATE")
            ]
        )
            .prop_map(|(relation, gap, tail)| vec![
                text("SELECT id, model_name AS model_metadata_name FROM"),
                gap,
                relation,
                text(" WHERE id = "),
                Part::Constant,
                text(" AND model_name <> "),
                Part::Constant,
                text(tail),
            ]),
        (relation(), gap()).prop_map(|(relation, gap)| vec![
            text("SELECT * FROM "),
            relation,
            gap,
            text("WHERE id IN "),
            Part::List,
            text(" AND model_version NOT IN "),
            Part::List,
        ]),
        relation().prop_map(|relation| vec![
            text("UPDATE "),
            relation,
            text(" SET model_version = CAST("),
            Part::Constant,
            text(" AS text) WHERE id = "),
            Part::Constant,
        ]),
        relation().prop_map(|relation| vec![
            text("INSERT INTO "),
            relation,
            text(" (model_name, model_version) VALUES ("),
            Part::Constant,
            text(", "),
            Part::Constant,
            text(") RETURNING id"),
        ]),
        (relation(), gap()).prop_map(|(relation, gap)| vec![
            text("DELETE FROM"),
            gap,
            relation,
            text(" WHERE id = "),
            Part::Constant,
        ]),
        Just(vec![
            text("SELECT attname FROM pg_attribute WHERE attrelid = "),
            Part::Constant,
            text("::regclass AND attnum > "),
            Part::Constant,
        ]),
        Just(vec![
            text("SELECT to_regclass("),
            Part::Constant,
            text("), model_metadata_id FROM deployments WHERE x = "),
            Part::Constant,
        ]),
        Just(vec![
            text("SELECT * FROM ROWS FROM (f("),
            Part::Constant,
            text(")) AS model_metadata WHERE a = "),
            Part::Constant,
        ]),
        Just(vec![
            text("WITH model_metadata AS (SELECT "),
            Part::Constant,
            text(" AS id) SELECT * FROM model_metadata, public.model_metadata p WHERE p.id = "),
            Part::Constant,
        ]),
        Just(vec![
            text("COPY model_metadata (id, model_name) TO STDOUT; SELECT "),
            Part::Constant,
        ]),
        Just(vec![
            text("DO $$ BEGIN PERFORM * FROM model_metadata WHERE id = "),
            text("1; END $$; SELECT * FROM model_metadata WHERE id = "),
            Part::Constant,
        ]),
    ];
    (
        prop_oneof![Just(""), Just("/* app=web */ "), Just("\n")],
        body,
        prop_oneof![
            Just(""),
            Just(";"),
            Just("; SELECT 1"),
            Just(" -- trailing model_metadata")
        ],
    )
        .prop_map(|(lead, body, trail)| {
            let mut parts = vec![text(lead)];
            parts.extend(body);
            parts.push(text(trail));
            parts
        })
}

fn render(template: &[Part], constants: &[String], lists: &[String]) -> String {
    let (mut c, mut l) = (constants.iter().cycle(), lists.iter().cycle());
    template
        .iter()
        .map(|part| match part {
            Part::Text(text) => text.clone(),
            Part::Constant => c.next().cloned().unwrap_or_default(),
            Part::List => l.next().cloned().unwrap_or_default(),
        })
        .collect()
}

fn fillings(
    constant: BoxedStrategy<String>,
) -> impl Strategy<Value = Vec<(Vec<String>, Vec<String>)>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(constant.clone(), MAX_HOLES),
            proptest::collection::vec(constant_list(constant), MAX_HOLES),
        ),
        VARIANTS,
    )
}

/// Fillings whose every hole keeps one kind of maskable constant across the variants.
fn same_kind_fillings() -> impl Strategy<Value = Vec<(Vec<String>, Vec<String>)>> {
    proptest::collection::vec(0..MASKABLE_KINDS, MAX_HOLES).prop_flat_map(|kinds| {
        let constants: Vec<_> = kinds.into_iter().map(maskable_constant_of).collect();
        proptest::collection::vec(
            (
                constants,
                proptest::collection::vec(constant_list(maskable_constant()), MAX_HOLES),
            ),
            VARIANTS,
        )
    })
}

/// Random sequences of tokens and constants (no template): stresses the lexer's agreement
/// with sqlparser where statements are not well-formed.
fn soup() -> impl Strategy<Value = Vec<Part>> {
    let piece = prop_oneof![
        4 => Just(Part::Constant),
        1 => Just(Part::List),
        2 => gap(),
        2 => relation(),
        6 => prop_oneof![
            Just("SELECT"), Just("FROM"), Just("WHERE"), Just("IN"), Just("AND"), Just("="),
            Just("::regclass"), Just("("), Just(")"), Just(","), Just(";"), Just("."),
            Just("<"), Just("-"), Just("/"), Just("*"), Just("$1"), Just("UPDATE"), Just("SET"),
            Just("INSERT INTO"), Just("VALUES"), Just("JOIN"), Just("ONLY"), Just("TABLE"),
            Just("x"), Just("\"q\"\"q\""), Just("e"), Just("E"), Just("$"), Just("$t$"),
            Just("'"), Just("/*"), Just("*/"), Just("--"), Just("\n"), Just(" "),
        ]
        .prop_map(text),
    ];
    proptest::collection::vec(piece, 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(768))]

    #[test]
    fn cached_rewrites_equal_the_full_parse(
        template in template(),
        fillings in fillings(constant().boxed()),
    ) {
        let targets = v2();
        let cache = RewriteCache::default();
        let mut session = (RewriteCache::default(), RecentShapes::default());
        for (constants, lists) in &fillings {
            all_paths_agree(&render(&template, constants, lists), &targets, &cache, &mut session)?;
        }
    }

    #[test]
    fn token_soup_through_the_cache_equals_the_full_parse(
        soup in soup(),
        fillings in fillings(constant().boxed()),
    ) {
        let targets = v2();
        let cache = RewriteCache::default();
        let mut session = (RewriteCache::default(), RecentShapes::default());
        for (constants, lists) in &fillings {
            all_paths_agree(&render(&soup, constants, lists), &targets, &cache, &mut session)?;
        }
    }

    #[test]
    fn variants_differing_in_maskable_constants_share_an_entry(
        template in template(),
        fillings in same_kind_fillings(),
    ) {
        let targets = v2();
        let cache = RewriteCache::default();
        let session_cache = RewriteCache::default();
        let mut recent = RecentShapes::default();
        let mut refused = false;
        let mut marked = false;
        for (constants, lists) in &fillings {
            let sql = render(&template, constants, lists);
            let expected = rewrite(&sql, &targets);
            refused |= expected.is_err();
            marked |= constants
                .iter()
                .chain(lists)
                .any(|constant| mentions_managed_table(constant, &targets));
            prop_assert_eq!(&*rewrite_cached(&cache, &sql, &targets), &expected);
            let through_session = rewrite_cached_in(&session_cache, &mut recent, &sql, &targets);
            prop_assert_eq!(&*through_session, &expected);
        }
        // Statements that name no managed table outside comments and strings skip the cache;
        // refused ones are cached by their text (the parser's message quotes constants); a
        // constant the fast path stops at on its own (`$$xml$$`, a quote before `--`) is kept
        // verbatim in the shape, or makes its text the only one of the shape read. A session's
        // template hit counts as a hit of its cache.
        for stats in [cache.stats(), session_cache.stats()] {
            if stats.hits + stats.misses > 0 && !refused && !marked {
                prop_assert_eq!(stats.entries, 1, "{:?} {:?}", template, stats);
                prop_assert_eq!(stats.hits, VARIANTS as u64 - 1);
            }
        }
    }
}
