//! `PreparedStatements`' unit tests: what holds a session, and what releases it once answered.

use super::*;
use crate::router::holding_commands::{HOLDING, opens_a_do_block};

/// `prepared`'s SQL `sql` as made at `version`.
fn run(prepared: &mut PreparedStatements, sql: &str, version: Option<&str>) {
    let text = TextContext {
        version: Some("v1"),
        names_version: version,
        spells_version: version,
        ..TextContext::default()
    };
    prepared.sql(sql, Words::in_text(sql.as_bytes()), text, &mut Vec::new());
}

/// A quiet boundary at which every release and SQL `PREPARE` sent since the last one was
/// answered.
fn all_answered(prepared: &mut PreparedStatements) -> bool {
    let prepares = (prepared.created.iter())
        .filter(|made| matches!(made.by, Creation::Query { .. }))
        .map(|made| (made.batch, Answer::Tag(PREPARE_TAG)));
    let answered: Vec<(u64, Answer)> = (prepared.pending.iter())
        .map(|pending| (pending.batch, pending.answer))
        .chain(prepares)
        .collect();
    settle(prepared, &answered)
}

/// A quiet boundary at which `releases` were answered and no batch failed.
fn settle(prepared: &mut PreparedStatements, releases: &[(u64, Answer)]) -> bool {
    prepared.settle(&Answers {
        releases: releases.to_vec(),
        failed_batches: Vec::new(),
    })
}

fn held(prepared: &PreparedStatements, version: &str) -> Option<String> {
    prepared.held_against(version).map(|(what, _)| what)
}

#[test]
fn protocol_statements_are_held_until_their_close_is_answered() {
    let mut prepared = PreparedStatements::default();
    prepared.parsed("s1", Some("v1"));
    prepared.parsed("", Some("v1"));
    prepared.parsed("s2", None);
    assert_eq!(
        held(&prepared, "v2").as_deref(),
        Some("prepared statement \"s1\"")
    );
    assert_eq!(prepared.held_against("v1"), None);
    prepared.closed(Some("s1"));
    assert!(held(&prepared, "v2").is_some(), "not answered yet");
    assert!(all_answered(&mut prepared));
    assert_eq!(prepared.held_against("v2"), None);
}

#[test]
fn a_release_counts_only_as_far_as_its_batch_was_answered() {
    let mut prepared = PreparedStatements::default();
    prepared.parsed("s1", Some("v1"));
    prepared.parsed("s2", Some("v1"));
    // Batch 4: a portal's Close answered, then an error skips the statement's.
    prepared.note_batch(4, false);
    prepared.closed(None);
    prepared.closed(Some("s1"));
    assert!(!settle(&mut prepared, &[(4, Answer::CloseComplete)]));
    assert!(held(&prepared, "v2").is_some());
    // Batch 5: a DEALLOCATE behind an error in its query string, or one the proxy refused,
    // has no answer.
    prepared.note_batch(5, false);
    run(&mut prepared, "SELECT 1/0; DEALLOCATE s1", None);
    assert!(!settle(&mut prepared, &[]));
    // Batch 6: an error after a release leaves it done; batch 7 is answered in full.
    prepared.note_batch(6, false);
    prepared.closed(Some("s1"));
    prepared.closed(Some("s2"));
    prepared.note_batch(7, false);
    run(&mut prepared, "DEALLOCATE s2", None);
    assert!(settle(
        &mut prepared,
        &[(6, Answer::CloseComplete), (7, Answer::Tag("DEALLOCATE")),]
    ));
    assert!(prepared.versions.is_empty());
}

#[test]
fn a_parse_of_a_batch_postgres_refused_first_holds_nothing() {
    let mut prepared = PreparedStatements::default();
    let mut parse = |batch: u64, name: &str| {
        prepared.note_batch(batch, true);
        prepared.parsed(name, Some("v1"));
    };
    // Batch 3: two Parses answered, the third refused (42703). Batch 4: its Parse answered,
    // then its Bind failed. Batch 5: the unnamed statement's Parse answered, the named one's
    // refused. Batch 6: answered in full.
    for (batch, name) in [
        (3, "a"),
        (3, "b"),
        (3, "c"),
        (4, "d"),
        (5, ""),
        (5, "e"),
        (6, "f"),
    ] {
        parse(batch, name);
    }
    let answered = Answers {
        releases: Vec::new(),
        failed_batches: vec![(3, 2), (4, 1), (5, 1)],
    };
    assert!(prepared.settle(&answered));
    let mut names: Vec<&str> = prepared.versions.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b", "d", "f"]);
    // Known once settled: a later failure of batch 3's number changes nothing.
    assert!(!prepared.settle(&answered));
}

#[test]
fn a_sql_prepare_holds_only_if_its_query_answered_it() {
    let mut prepared = PreparedStatements::default();
    prepared.parsed("kept", Some("v1"));
    let made = Answer::Tag(PREPARE_TAG);
    // Batch 2: `plain` (held with the rest: the text names the view) and `a` answered, then
    // `b` refused (or skipped).
    prepared.note_batch(2, false);
    run(
        &mut prepared,
        "PREPARE plain AS SELECT 1; PREPARE a AS SELECT * FROM t_v1; PREPARE b AS SELECT * FROM t_v1",
        Some("v1"),
    );
    // Batch 3: a second statement named `kept`, refused (42P05): the first one's hold stays.
    prepared.note_batch(3, false);
    run(
        &mut prepared,
        "PREPARE kept AS SELECT * FROM t_v1",
        Some("v1"),
    );
    assert!(prepared.settle(&Answers {
        releases: vec![(2, made), (2, made)],
        failed_batches: vec![(2, 0), (3, 0)],
    }));
    let mut names: Vec<&str> = prepared.versions.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "kept", "plain"]);
    // Its answers cut short past the limit, a PREPARE is taken as made.
    prepared.note_batch(4, false);
    run(&mut prepared, "PREPARE c AS SELECT * FROM t_v1", Some("v1"));
    let releases = vec![(0, Answer::CloseComplete); MAX_PENDING_RELEASES];
    prepared.settle(&Answers {
        releases,
        failed_batches: Vec::new(),
    });
    assert!(prepared.versions.contains_key("c"));
}

#[test]
fn a_release_drops_only_what_was_made_before_it() {
    let mut prepared = PreparedStatements::default();
    prepared.parsed("s1", Some("v1"));
    run(
        &mut prepared,
        "DEALLOCATE ALL; PREPARE p AS INSERT INTO t_v1 VALUES (1)",
        Some("v1"),
    );
    prepared.closed(Some("s1"));
    prepared.parsed("s1", Some("v1"));
    all_answered(&mut prepared);
    let mut left: Vec<&String> = prepared.versions.keys().collect();
    left.sort();
    assert_eq!(left, ["p", "s1"]);
}

#[test]
fn sql_prepare_deallocate_and_discard_are_followed() {
    let mut prepared = PreparedStatements::default();
    run(
        &mut prepared,
        "PREPARE Ins (int) AS INSERT INTO t_v1 VALUES ($1)",
        Some("v1"),
    );
    run(
        &mut prepared,
        "prepare \"Up\" AS UPDATE t_v1 SET a = 1",
        Some("v1"),
    );
    run(&mut prepared, "PREPARE plain AS SELECT 1", None);
    assert_eq!(prepared.versions.len(), 2);
    run(&mut prepared, "DEALLOCATE PREPARE ins", None);
    assert!(all_answered(&mut prepared));
    run(&mut prepared, "deallocate up", None);
    assert!(!all_answered(&mut prepared), "quoted names keep their case");
    run(&mut prepared, "SELECT 1; DEALLOCATE \"Up\"", None);
    assert!(all_answered(&mut prepared));
    assert!(prepared.versions.is_empty());
    prepared.parsed("s1", Some("v1"));
    run(&mut prepared, "DISCARD ALL", None);
    assert!(all_answered(&mut prepared));
    prepared.parsed("s1", Some("v1"));
    run(&mut prepared, "DEALLOCATE ALL", None);
    assert!(all_answered(&mut prepared));
    assert_eq!(prepared.held_against("v9"), None);
}

#[test]
fn held_cursors_and_temporary_code_hold_until_closed_or_discarded() {
    let mut prepared = PreparedStatements::default();
    run(
        &mut prepared,
        "DECLARE c CURSOR FOR SELECT * FROM t_v1",
        Some("v1"),
    );
    assert_eq!(
        prepared.held_against("v2"),
        None,
        "ends with its transaction"
    );
    run(
        &mut prepared,
        "DECLARE C NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM t_v1",
        Some("v1"),
    );
    assert_eq!(held(&prepared, "v2").as_deref(), Some("cursor \"c\""));
    run(&mut prepared, "CLOSE c", None);
    assert!(all_answered(&mut prepared));
    assert_eq!(prepared.held_against("v2"), None);

    for create in [
        "CREATE TEMP VIEW tv AS SELECT * FROM t_v1",
        "create or replace temporary recursive view tv (a) AS SELECT 1 FROM t_v1",
        "CREATE VIEW pg_temp.tv AS SELECT * FROM t_v1",
        "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1 FROM t_v1'",
        "CREATE OR REPLACE PROCEDURE PG_TEMP.p() LANGUAGE sql AS 'DELETE FROM t_v1'",
    ] {
        run(&mut prepared, create, Some("v1"));
        assert!(held(&prepared, "v2").is_some(), "{create}");
        run(&mut prepared, "DISCARD TEMP", None);
        assert!(all_answered(&mut prepared));
        assert_eq!(prepared.held_against("v2"), None, "{create}");
    }
    // A copy holds nothing; lasting code holds whatever it names, and outlives DISCARD.
    run(
        &mut prepared,
        "CREATE TEMP TABLE tt AS SELECT * FROM t_v1",
        Some("v1"),
    );
    assert_eq!(prepared.held_against("v2"), None);
    for create in [
        "CREATE VIEW tv AS SELECT * FROM tt",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE RULE r AS ON INSERT TO tt DO ALSO NOTIFY x",
    ] {
        let mut prepared = PreparedStatements::default();
        run(&mut prepared, create, None);
        run(&mut prepared, "DISCARD ALL", None);
        all_answered(&mut prepared);
        assert!(held(&prepared, "v2").is_some(), "{create}");
    }
    // Inside a block, DISCARD TEMP may be rolled back: it releases nothing.
    run(&mut prepared, "CREATE TEMP VIEW tv AS SELECT 1", None);
    run(&mut prepared, "BEGIN; DISCARD TEMP; ROLLBACK", None);
    all_answered(&mut prepared);
    assert!(held(&prepared, "v2").is_some());
    // A release Postgres may undo is followed only as a Query of its own outside a block.
    for undone in ["DISCARD TEMP; SELECT 1/0", "BEGIN; DISCARD TEMP; ROLLBACK"] {
        run(&mut prepared, undone, None);
        all_answered(&mut prepared);
        assert!(held(&prepared, "v2").is_some(), "{undone}");
    }
    // What may make something the router cannot follow holds for good: a DO block however
    // its body follows the word (the twenty-second pass put a comment between them).
    for unfollowed in [
        "DO $$ BEGIN CREATE TEMP VIEW x AS SELECT 1; END $$",
        "CREATE TEMP VIEW U&\"x\" AS SELECT 1",
        "DO/**/E'BEGIN \\x43REATE TEMP VIEW x AS SELECT 1; END'",
        "do--c\nE'BEGIN \\x50REPARE p AS SELECT 1; END'",
        "DO\x0bE'BEGIN NULL; END'",
    ] {
        let mut fresh = PreparedStatements::default();
        run(&mut fresh, unfollowed, None);
        run(&mut fresh, "DISCARD ALL", None);
        all_answered(&mut fresh);
        assert!(held(&fresh, "v2").is_some(), "{unfollowed}");
    }
    // A stored expression naming the version's view keeps reading it: held, until DISCARD
    // for a temporary object's; a materialized view keeps its query. A copy holds nothing.
    for (stored, temporary) in [
        (
            "CREATE TEMP TABLE d (x xml DEFAULT query_to_xml('SELECT * FROM public.t_v1', true, false, ''))",
            true,
        ),
        (
            "CREATE GLOBAL TEMPORARY TABLE d (x int CHECK (x > (SELECT 1)), y xml GENERATED ALWAYS AS (table_to_xml('t_v1', true, false, '')) STORED)",
            true,
        ),
        (
            "ALTER TABLE d ALTER x SET DEFAULT query_to_xml('TABLE public.t_v1', true, false, '')",
            false,
        ),
        (
            "CREATE DOMAIN dm AS xml CHECK (VALUE IS DOCUMENT OR 't_v1' <> '')",
            false,
        ),
        ("CREATE MATERIALIZED VIEW mv AS SELECT * FROM t_v1", false),
        (
            "CREATE POLICY p ON d USING (EXISTS (SELECT FROM t_v1))",
            false,
        ),
        (
            "CREATE TRIGGER tr AFTER INSERT ON d REFERENCING NEW TABLE AS nt FOR EACH STATEMENT WHEN (query_to_xml('TABLE t_v1', true, false, '') IS NOT NULL) EXECUTE FUNCTION f()",
            false,
        ),
    ] {
        let mut fresh = PreparedStatements::default();
        run(&mut fresh, stored, Some("v1"));
        assert!(held(&fresh, "v2").is_some(), "{stored}");
        run(&mut fresh, "DISCARD TEMP", None);
        all_answered(&mut fresh);
        assert_eq!(held(&fresh, "v2").is_none(), temporary, "{stored}");
    }
    for copy in [
        "CREATE TEMP TABLE c AS SELECT * FROM t_v1",
        "CREATE TABLE c (a, b) WITH (fillfactor = 70) AS SELECT 1, 2 FROM t_v1",
        "ALTER TABLE c RENAME TO c2",
    ] {
        let mut fresh = PreparedStatements::default();
        let names = (!copy.starts_with("ALTER")).then_some("v1");
        run(&mut fresh, copy, names);
        assert_eq!(fresh.held_against("v2"), None, "{copy}");
    }
    // An upstream switch leaves cursors and temporary objects behind.
    prepared.moved_upstream();
    assert_eq!(prepared.held_against("v2"), None);
}

#[test]
fn words_inside_strings_and_comments_are_not_commands() {
    let mut prepared = PreparedStatements::default();
    prepared.parsed("s1", Some("v1"));
    run(
        &mut prepared,
        "SELECT 'DEALLOCATE ALL' /* DISCARD ALL */",
        None,
    );
    assert!(!all_answered(&mut prepared));
    assert!(prepared.held_against("v2").is_some());
}

/// The holding-command prefilter by its definition: one of the words anywhere, in any case,
/// or `DO` as a word of its own.
fn mentions_by_definition(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    HOLDING.iter().any(|word| lower.contains(word))
        || (0..sql.len()).any(|at| opens_a_do_block(sql.as_bytes(), at))
}

proptest::proptest! {
    #[test]
    fn the_holding_command_prefilter_is_its_definition(
        pieces in proptest::collection::vec(
            proptest::sample::select(vec![
                "prepare", "PrEpArE", "deallocate", "DISCARD", "declare", "close", "Create",
                "ALTER", "do", "Do", "d", "o", "clos", "alte", "prep", " ", "_", "x", "1", "é",
                "/**/", "'", "(", "SELECT ",
            ]),
            0..10,
        )
    ) {
        let sql = pieces.concat();
        proptest::prop_assert_eq!(
            mentions_a_holding_command(&sql, Words::in_text(sql.as_bytes())),
            mentions_by_definition(&sql),
            "{:?}", sql
        );
    }
}
