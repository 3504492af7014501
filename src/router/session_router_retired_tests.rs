//! The session router when the version a session asked for leaves the catalog under it: it
//! is refused, never served unversioned.

use super::tests::{replaced, routing, routing_of_versions, session};
use super::*;

/// Found by the thirty-first red-team pass: a session whose declared or set version was
/// retired under it resolved to no version and was forwarded as unversioned, its statements
/// naming the base table. It is refused until it sets a live version.
#[test]
fn a_session_whose_version_is_retired_is_refused_never_unversioned() {
    for (declared, set) in [(Some("v2"), None), (None, Some("v2"))] {
        let shared = routing(Some("v1"));
        let mut session =
            session(shared.clone(), "app", declared, UnparseablePolicy::Reject).unwrap();
        if let Some(version) = set {
            session.statement(&format!("SET viewgate.version = {version}"), true);
        }
        assert_eq!(
            replaced(session.statement("SELECT * FROM t", true)),
            "SELECT * FROM public.t_v2 AS t"
        );
        shared.store(routing_of_versions(&["v1"], Some("v1"), Vec::new(), false).load_full());
        // Inside its transaction the session keeps v2 (its view is gone; Postgres says so).
        assert!(matches!(
            session.statement("SELECT * FROM t", false),
            Routed::Replace(_)
        ));
        for sql in ["SELECT * FROM t", "SELECT 1"] {
            let Routed::Refuse(refusal) = session.statement(sql, true) else {
                panic!("{sql} was not refused");
            };
            assert!(
                refusal.message.contains("\"v2\" was retired"),
                "{}",
                refusal.message
            );
        }
        assert!(
            session.function_call(Some(764), true).is_some(),
            "a FunctionCall too"
        );
        session.statement("SET viewgate.version = v1", true);
        assert_eq!(
            replaced(session.statement("SELECT * FROM t", true)),
            "SELECT * FROM public.t_v1 AS t"
        );
    }
    // A database the catalog does not govern stays unversioned, as before, for a session
    // that asks for no version; one that asks for a version there is refused (the
    // fifty-third red-team pass: served unversioned, it read the base tables whole).
    let mut other = session(
        routing(Some("v1")),
        "other",
        None,
        UnparseablePolicy::Reject,
    )
    .unwrap();
    assert!(matches!(
        other.statement("SELECT * FROM t", true),
        Routed::Forward
    ));
    let Err(refused) = session(
        routing(Some("v1")),
        "other",
        Some("v2"),
        UnparseablePolicy::Reject,
    ) else {
        panic!("a version asked for on a database the catalog does not govern");
    };
    assert!(
        refused
            .0
            .contains("database \"other\" is not versioned by this proxy"),
        "{refused:?}"
    );
    assert!(matches!(
        other.statement("SET viewgate.version = v1", true),
        Routed::Refuse(_)
    ));
}

/// The same when the catalog loses its last version (the database is then not versioned at
/// all): the session that asked for one is refused, not forwarded unversioned.
#[test]
fn a_session_whose_catalog_loses_its_last_version_is_refused() {
    let shared = routing(Some("v1"));
    let mut session =
        session(shared.clone(), "app", Some("v2"), UnparseablePolicy::Reject).expect("v2 is known");
    assert_eq!(
        replaced(session.statement("SELECT * FROM t", true)),
        "SELECT * FROM public.t_v2 AS t"
    );
    shared.store(routing_of_versions(&[], None, Vec::new(), false).load_full());
    let Routed::Refuse(refusal) = session.statement("SELECT * FROM t", true) else {
        panic!("forwarded with no version");
    };
    assert!(
        refusal.message.contains("\"v2\" was retired"),
        "{}",
        refusal.message
    );
}

/// Found by the fifty-fourth red-team pass: a session without a version set
/// `viewgate.version` by `set_config` (or `SET LOCAL` behind a `BEGIN`, or `SET viewgate .
/// version`): the server kept it and `current_setting` reported it, while the session read
/// the base tables. Refused; reading the setting, and other `set_config` calls, are not.
#[test]
fn a_session_without_a_version_cannot_set_one_where_it_is_not_followed() {
    let mut unversioned =
        session(routing(None), "app", None, UnparseablePolicy::Reject).expect("no version");
    for sql in [
        "SELECT set_config('viewgate.version', 'v1', false)",
        "SELECT pg_catalog.set_config(lower('VIEWGATE.VERSION'), 'v1', false)",
        "BEGIN; SET LOCAL viewgate.version = 'v1'",
        "SET viewgate . version = v1",
        "ALTER ROLE app SET viewgate.version = 'v1'",
        "DO $$ BEGIN PERFORM set_config('viewgate.version', 'v1', false); END $$",
    ] {
        assert!(
            matches!(unversioned.statement(sql, true), Routed::Refuse(_)),
            "{sql}"
        );
    }
    for sql in [
        "SELECT current_setting('viewgate.version', true)",
        "SELECT set_config('work_mem', '8MB', false)",
        "SELECT * FROM t",
    ] {
        assert!(
            matches!(unversioned.statement(sql, true), Routed::Forward),
            "{sql}"
        );
    }
}
