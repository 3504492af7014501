//! Shape templates through a session's recent shapes: which texts match a learned template
//! and are rewritten by it, and which must go the shared cache's way; and a property that a
//! match always has the learning text's shape key and the full parse's rewrite, with
//! constants glued to operators, signs and words.

use crate::rewriter::{
    RecentShapes, RelationName, Rewrite, RewriteCache, VersionTargets, ViewTarget, rewrite,
    rewrite_cached_in,
};

fn v2() -> VersionTargets {
    VersionTargets::new(
        "v2",
        vec![ViewTarget {
            table: RelationName::new("public", "model_metadata"),
            view: RelationName::new("public", "model_metadata_v2"),
        }],
    )
}

/// A session that has sent `learned` once (parsed, learned, remembered).
fn session_after(learned: &str) -> (RewriteCache, RecentShapes, VersionTargets) {
    let (cache, mut recent, targets) = (RewriteCache::default(), RecentShapes::default(), v2());
    let outcome = rewrite_cached_in(&cache, &mut recent, learned, &targets);
    assert!(outcome.is_ok(), "{learned}: {outcome:?}");
    (cache, recent, targets)
}

const READ: &str = "SELECT id, model_name, model_type FROM model_metadata WHERE id = 42;";

#[test]
fn other_constants_of_the_cuts_kinds_match_and_rewrite_as_the_full_parse() {
    let (_, mut recent, targets) = session_after(READ);
    for id in [
        "7",
        "1e10",
        ".5",
        "007",
        "2.5E-3",
        "123456789012345678901234567890",
    ] {
        let sql = READ.replace("42", id);
        let matched = recent.rewrite(&sql, &targets, 0);
        assert_eq!(matched.map(Ok), Some(rewrite(&sql, &targets)), "{sql}");
    }
    let (_, mut recent, targets) =
        session_after("UPDATE model_metadata SET model_name = 'a' WHERE id = 1");
    for name in [
        "''",
        "'it''s'",
        "E'plain'",
        "'-- no comment'",
        "'/* nor */'",
    ] {
        let sql = format!("UPDATE model_metadata SET model_name = {name} WHERE id = 99");
        let matched = recent.rewrite(&sql, &targets, 0);
        assert_eq!(matched.map(Ok), Some(rewrite(&sql, &targets)), "{sql}");
    }
}

#[test]
fn constants_of_another_kind_or_read_otherwise_do_not_match() {
    let (_, mut recent, targets) =
        session_after("UPDATE model_metadata SET model_name = 'a' WHERE id = 1");
    for sql in [
        // A number where the template has a string, and the reverse.
        "UPDATE model_metadata SET model_name = 5 WHERE id = 1",
        "UPDATE model_metadata SET model_name = 'a' WHERE id = '1'",
        // Constants the key keeps verbatim or the lexer leaves to the full path.
        "UPDATE model_metadata SET model_name = 'model_metadata' WHERE id = 1",
        "UPDATE model_metadata SET model_name = E'a\\'b' WHERE id = 1",
        "UPDATE model_metadata SET model_name = $$a$$ WHERE id = 1",
        "UPDATE model_metadata SET model_name = 'a' WHERE id = 1abc",
        "UPDATE model_metadata SET model_name = 'a' WHERE id = 1.2.3",
        "UPDATE model_metadata SET model_name = 'a' WHERE id = 0x1F",
        // A string that swallows what followed it in the template.
        "UPDATE model_metadata SET model_name = 'a'' WHERE id = ''1'",
        // More or less text around the cuts.
        "UPDATE model_metadata SET model_name = 'a' WHERE id = 1 ",
        "UPDATE model_metadata SET model_name = 'a' WHERE id = ",
        "UPDATE model_metadata  SET model_name = 'a' WHERE id = 1",
        "UPDATE public.model_metadata SET model_name = 'a' WHERE id = 1",
    ] {
        assert_eq!(recent.rewrite(sql, &targets, 0), None, "{sql}");
    }
}

#[test]
fn no_template_where_a_cut_is_glued_to_what_precedes_it_or_a_list_is_masked() {
    for learned in [
        "SELECT * FROM model_metadata WHERE model_name = x||'a'",
        "SELECT * FROM model_metadata WHERE id = -1",
        "SELECT * FROM model_metadata WHERE id IN (1, 2)",
    ] {
        let (cache, mut recent, targets) = session_after(learned);
        assert_eq!(recent.rewrite(learned, &targets, 0), None, "{learned}");
        // The shared cache still serves the shape.
        let outcome = rewrite_cached_in(&cache, &mut recent, learned, &targets);
        assert!(outcome.is_ok(), "{learned}: {outcome:?}");
        assert_eq!(cache.stats().hits, 1, "{learned}");
    }
}

#[test]
fn a_template_serves_only_its_own_version_and_routing_generation() {
    let (_, mut recent, targets) = session_after(READ);
    assert!(recent.rewrite(READ, &targets, 0).is_some());
    let mut newer = v2();
    newer.routing_generation = targets.routing_generation + 1;
    assert_eq!(recent.rewrite(READ, &newer, 0), None);
    let v1 = VersionTargets::new(
        "v1",
        vec![ViewTarget {
            table: RelationName::new("public", "model_metadata"),
            view: RelationName::new("public", "model_metadata_v1"),
        }],
    );
    assert_eq!(recent.rewrite(READ, &v1, 0), None);
}

#[test]
fn an_unchanged_shape_matches_as_unchanged() {
    let learned = "SELECT model_metadata_id FROM deployments WHERE id = 3";
    let (_, mut recent, targets) = session_after(learned);
    let sql = learned.replace('3', "4");
    assert_eq!(recent.rewrite(&sql, &targets, 0), Some(Rewrite::Unchanged));
}

#[test]
fn the_most_recent_shapes_are_kept() {
    let (cache, mut recent, targets) = (RewriteCache::default(), RecentShapes::default(), v2());
    let shape = |n: usize| format!("SELECT id AS c{n} FROM model_metadata WHERE id = 1");
    let count = crate::rewriter::recent_shapes::RECENT_SHAPES + 1;
    for n in 0..count {
        rewrite_cached_in(&cache, &mut recent, &shape(n), &targets);
    }
    assert_eq!(
        recent.rewrite(&shape(0), &targets, 0),
        None,
        "the oldest is gone"
    );
    for n in 1..count {
        assert!(recent.rewrite(&shape(n), &targets, 0).is_some(), "{n}");
    }
}

use proptest::prelude::*;

/// Conditions of a `WHERE` clause, `?` a hole: constants after a space, glued to an operator,
/// a parenthesis, a comma, a sign or a word, before a cast, in a list.
const CONDITIONS: &[&str] = &[
    "id = ?",
    "id=?",
    "id <?",
    "id>?",
    "f(?,?)",
    "f( ? )",
    "id IN (?, ?)",
    "x||? = 'a'",
    "id = -?",
    "id = ?::int",
    "? = id",
    "model_name = ?--c\n",
    "model_name =/*c*/?",
    "id = ?+1",
    "model_name LIKE ?",
    "id = e?",
    "id = $?",
];

/// Constants put in the holes, by kind: numbers, strings, dollar-quoted strings, and what only
/// looks like a maskable constant (kept in the key, glued, or read otherwise).
const CONSTANTS: [&[&str]; 4] = [
    &[
        "1",
        "42",
        "1e5",
        "2.5E-3",
        ".5",
        "007",
        "123456789012345678901234567890",
    ],
    &[
        "'a'", "''", "'a''b'", "E'x'", "e'y'", "'--'", "'/*'", "' '", "'é'",
    ],
    &["$$x$$", "$t$y$t$", "$$$$"],
    &[
        "1abc",
        "1.2.3",
        "0x1F",
        "1_000",
        "E'a\\'b'",
        "'model_metadata'",
        "$1",
        "'a' 'b'",
        "'a'\n'b'",
        "U&'x'",
        "B'1'",
        "x",
        "-1",
    ],
];

/// A hole's constant: `choice`'s kind is the learning text's for the hole three times in
/// four (`index` picks within it), any kind otherwise.
fn constant(kind: usize, choice: (u8, usize)) -> &'static str {
    let (selector, index) = choice;
    let kind = match selector % 4 {
        3 => index % CONSTANTS.len(),
        _ => kind,
    };
    CONSTANTS[kind][index % CONSTANTS[kind].len()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whenever a template of one text matches another, the other has the same shape key and
    /// is rewritten as its full parse is: the lexer's reading outside the cuts cannot change.
    #[test]
    fn a_template_matches_only_texts_of_its_shape(
        conditions in proptest::collection::vec(proptest::sample::select(CONDITIONS), 1..4),
        kinds in proptest::collection::vec(0..CONSTANTS.len(), 8),
        fillings in proptest::collection::vec(
            proptest::collection::vec((any::<u8>(), any::<usize>()), 8),
            2..6,
        ),
    ) {
        let render = |filling: &[(u8, usize)]| -> String {
            let mut holes = kinds.iter().zip(filling).map(|(&kind, &choice)| constant(kind, choice));
            let mut sql = "SELECT id FROM model_metadata WHERE ".to_owned();
            for (i, condition) in conditions.iter().enumerate() {
                if i > 0 {
                    sql.push_str(" AND ");
                }
                for (j, piece) in condition.split('?').enumerate() {
                    if j > 0 {
                        sql.push_str(holes.next().unwrap_or("1"));
                    }
                    sql.push_str(piece);
                }
            }
            sql
        };
        let learned = render(&fillings[0]);
        let (cache, mut recent, targets) = (RewriteCache::default(), RecentShapes::default(), v2());
        rewrite_cached_in(&cache, &mut recent, &learned, &targets);
        let key = |sql: &str| {
            crate::rewriter::shape::Shape::of(sql, &targets, &mut Vec::new()).map(|shape| shape.key)
        };
        for filling in &fillings[1..] {
            let sql = render(filling);
            // As `rewrite_cached_in` asks: only a text that may have a shape at all.
            if crate::rewriter::shape::may_have_a_shape(&sql, &targets)
                && let Some(matched) = recent.rewrite(&sql, &targets, 0)
            {
                prop_assert!(key(&learned).is_some(), "{}", learned);
                prop_assert_eq!(key(&sql), key(&learned), "{} learned from {}", sql, learned);
                prop_assert_eq!(Ok(matched), rewrite(&sql, &targets), "{}", sql);
            }
        }
    }
}
