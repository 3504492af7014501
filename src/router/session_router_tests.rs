//! The session router, statement by statement: versions, rules, SETs with their transaction
//! semantics, search_path and temporary relations, savepoints.

use super::*;
use crate::model::{Assign, CatalogRules, Glob, Guard, Rule};
use crate::model::{RoutedTable, RoutingMap};
use crate::router::prepared::{Answer, Answers};
use crate::router::raise::select_text;
use crate::router::state::RoutingState;
use crate::router::version_command::VERSION_SETTING;
use arc_swap::ArcSwap;

/// What a quiet boundary settles when `answered` were answered and no batch failed.
fn releases(answered: &[(u64, Answer)]) -> Answers {
    Answers {
        releases: answered.to_vec(),
        failed_batches: Vec::new(),
    }
}

fn client(database: &str) -> ClientIdentity {
    ClientIdentity {
        user: "alice".into(),
        database: database.into(),
        application_name: "web-1".into(),
        address: Some("127.0.0.1".parse().unwrap()),
    }
}

pub(super) fn session(
    routing: SharedRouting,
    database: &str,
    declared: Option<&str>,
    policy: UnparseablePolicy,
) -> Result<SessionRouter, UnknownVersion> {
    SessionRouter::new(
        routing,
        client(database),
        declared.map(str::to_owned),
        &crate::config::DEFAULT_STICKY_IDENTITY,
        policy,
        Arc::new(RewriteCache::default()),
    )
}

pub(super) fn routing(default: Option<&str>) -> SharedRouting {
    routing_with(default, Vec::new())
}

fn routing_with(default: Option<&str>, rules: Vec<Rule>) -> SharedRouting {
    routing_state(default, rules, false)
}

/// Routing while a migration is live: the upstream is told each session's version.
fn migrating(default: &str) -> SharedRouting {
    routing_state(Some(default), Vec::new(), true)
}

fn routing_state(default: Option<&str>, rules: Vec<Rule>, tracks_writers: bool) -> SharedRouting {
    routing_of_versions(&["v1", "v2"], default, rules, tracks_writers)
}

pub(super) fn routing_of_versions(
    versions: &[&str],
    default: Option<&str>,
    rules: Vec<Rule>,
    tracks_writers: bool,
) -> SharedRouting {
    let table = |version: &str| RoutedTable {
        table_name: "t".into(),
        base_schema: "public".into(),
        base_table: "t".into(),
        view_schema: "public".into(),
        view_name: format!("t_{version}"),
        mapping: None,
    };
    let map = RoutingMap {
        default_version: default.map(str::to_owned),
        rules: CatalogRules {
            rules,
            invalid: Vec::new(),
        },
        versions: versions
            .iter()
            .map(|v| ((*v).to_owned(), vec![table(v)]))
            .collect(),
        tracks_writers,
        shadow: None,
        catalog_substitutes: Default::default(),
        relation_schemas: Default::default(),
        pending_views: Vec::new(),
        kin: Default::default(),
        catalog_change: None,
        unavailable: Default::default(),
    };
    Arc::new(ArcSwap::from_pointee(RoutingState::from_catalog(
        "app", &map,
    )))
}

fn router(default: Option<&str>, declared: Option<&str>) -> SessionRouter {
    session(routing(default), "app", declared, UnparseablePolicy::Reject).unwrap()
}

pub(super) fn replaced(routed: Routed) -> String {
    match routed {
        Routed::Replace(text) => text,
        Routed::Refuse(refusal) => refusal.statement(),
        Routed::Forward => panic!("expected a replacement"),
    }
}

#[test]
fn the_session_s_own_temporary_table_is_read_before_the_version_s_view() {
    let mut session = router(Some("v1"), None);
    let select = |session: &mut SessionRouter, idle| session.statement("SELECT * FROM t", idle);
    // Made and used in one query string: the statements after it read it.
    assert_eq!(
        replaced(session.statement(
            "CREATE TEMP TABLE t (a int); INSERT INTO t SELECT * FROM t",
            true
        )),
        "CREATE TEMP TABLE t (a int); INSERT INTO pg_temp.t AS t SELECT * FROM pg_temp.t AS t"
    );
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM pg_temp.t AS t"
    );
    // A drop in a block that rolls back is undone.
    session.statement("DROP TABLE IF EXISTS t", false);
    assert_eq!(
        replaced(select(&mut session, false)),
        "SELECT * FROM public.t_v1 AS t"
    );
    session.set_settled(false);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM pg_temp.t AS t"
    );
    // Dropped for good.
    session.statement("DROP TABLE t", true);
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM public.t_v1 AS t"
    );
    // ON COMMIT DROP ends with the block.
    session.statement("CREATE TEMP TABLE t (a int) ON COMMIT DROP", false);
    assert_eq!(
        replaced(select(&mut session, false)),
        "SELECT * FROM pg_temp.t AS t"
    );
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM public.t_v1 AS t"
    );
    // A rollback to a savepoint made before it undoes it.
    session.statement("SAVEPOINT s", false);
    session.statement("SELECT 1 AS a INTO TEMP t", false);
    assert_eq!(
        replaced(select(&mut session, false)),
        "SELECT * FROM pg_temp.t AS t"
    );
    session.statement("ROLLBACK TO SAVEPOINT s", false);
    assert_eq!(
        replaced(select(&mut session, false)),
        "SELECT * FROM public.t_v1 AS t"
    );
    session.set_settled(true);
    // DISCARD TEMP forgets them all; another name is no managed table.
    session.statement("CREATE TEMP TABLE t (a int)", true);
    session.statement("DISCARD TEMP", true);
    session.statement("CREATE TEMP TABLE u (a int)", true);
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM public.t_v1 AS t"
    );
}

#[test]
fn declared_beats_default_and_reset_returns_to_the_declaration() {
    let mut session = router(Some("v1"), Some("v2"));
    assert_eq!(
        replaced(session.statement("SELECT * FROM t", true)),
        "SELECT * FROM public.t_v2 AS t"
    );
    assert_eq!(
        session.statement("SET viewgate.version = 'v1'", true),
        Routed::Forward
    );
    assert_eq!(session.version(), Some("v1"));
    assert_eq!(
        session.statement("RESET viewgate.version", true),
        Routed::Forward
    );
    assert_eq!(session.version(), Some("v2"));
    let undeclared = router(Some("v1"), None);
    assert_eq!(undeclared.version(), Some("v1"));
}

#[test]
fn a_change_inside_a_transaction_waits_for_idle() {
    let mut session = router(Some("v1"), None);
    session.statement("SET viewgate.version = 'v2'", false);
    assert_eq!(
        replaced(session.statement("SELECT * FROM t", false)),
        "SELECT * FROM public.t_v1 AS t"
    );
    assert_eq!(
        replaced(session.statement("SELECT * FROM t", true)),
        "SELECT * FROM public.t_v2 AS t"
    );
}

#[test]
fn unknown_versions_are_refused() {
    let error = session(routing(None), "app", Some("v9"), UnparseablePolicy::Reject)
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        "unknown viewgate version \"v9\"; known versions: v1, v2"
    );
    let mut session = router(None, Some("v1"));
    let raised = replaced(session.statement("SET viewgate.version = 'v9'", true));
    assert!(
        raised.starts_with("DO $viewgate$") && raised.contains("'22023'"),
        "{raised}"
    );
    assert_eq!(
        session.version(),
        Some("v1"),
        "a refused SET changes nothing"
    );
}

#[test]
fn other_databases_and_unversioned_sessions_pass_through() {
    let mut elsewhere = session(
        routing(Some("v1")),
        "other",
        None,
        UnparseablePolicy::Reject,
    )
    .unwrap();
    assert_eq!(
        elsewhere.statement("SELECT * FROM t", true),
        Routed::Forward
    );
    let mut no_default = router(None, None);
    assert_eq!(
        no_default.statement("SELECT * FROM t", true),
        Routed::Forward
    );
}

#[test]
fn the_policy_decides_about_unparseable_statements() {
    let unparseable = "SELECT * FROM t WHERE";
    let mut rejecting = router(Some("v1"), None);
    let raised = replaced(rejecting.statement(unparseable, true));
    assert!(raised.contains("'42601'"), "{raised}");
    let mut forwarding = session(
        routing(Some("v1")),
        "app",
        None,
        UnparseablePolicy::Passthrough,
    )
    .unwrap();
    assert_eq!(forwarding.statement(unparseable, true), Routed::Forward);
}

#[test]
fn show_answers_the_version_in_effect() {
    let mut session = router(Some("v1"), None);
    let show = replaced(session.statement("SHOW viewgate.version", true));
    assert_eq!(show, select_text(VERSION_SETTING, "v1"));
}

fn rule(id: i64, version: &str, enforce: bool) -> Rule {
    Rule {
        id,
        position: 1,
        match_user: None,
        match_database: None,
        match_application: Some(Glob::parse("web-*").unwrap()),
        match_cidr: None,
        assign: Assign::Version(version.into()),
        enforce,
        guard: Guard::default(),
        enabled: true,
        note: None,
    }
}

#[test]
fn the_assignment_says_why_and_follows_the_catalog_at_the_boundary() {
    let shared = routing_with(Some("v1"), vec![rule(4, "v2", false)]);
    let mut session = session(shared.clone(), "app", None, UnparseablePolicy::Reject).unwrap();
    let why = |s: &SessionRouter| s.assignment().map(|a| a.to_string()).unwrap_or_default();
    assert_eq!(why(&session), "v2 (rule 4)");
    // The rule goes: the session keeps v2 inside its transaction, takes the default after.
    shared.store(routing(Some("v1")).load_full());
    session.statement("SELECT 1", false);
    assert_eq!(why(&session), "v2 (rule 4)");
    session.statement("SELECT 1", true);
    assert_eq!(why(&session), "v1 (default)");
    session.statement("SET viewgate.version = v2", true);
    assert_eq!(why(&session), "v2 (set)");
    let declared = router(Some("v1"), Some("v2"));
    assert_eq!(why(&declared), "v2 (declared)");
}

#[test]
fn an_enforced_rule_beats_the_declaration_and_refuses_a_set_elsewhere() {
    let shared = routing_with(Some("v1"), vec![rule(5, "v2", true)]);
    let mut session = session(shared, "app", Some("v1"), UnparseablePolicy::Reject).unwrap();
    assert_eq!(session.assignment().unwrap().reason, Reason::Enforced(5));
    assert_eq!(session.version(), Some("v2"));
    let raised = replaced(session.statement("SET viewgate.version = 'v1'", true));
    assert!(raised.contains("'42501'"), "{raised}");
    assert_eq!(
        session.statement("SET viewgate.version = 'v2'", true),
        Routed::Forward,
        "setting the enforced version itself is harmless"
    );
    assert_eq!(session.version(), Some("v2"));
}

#[test]
fn prepared_statements_hold_the_version_while_a_migration_is_live() {
    let shared = migrating("v1");
    let mut session = session(shared.clone(), "app", None, UnparseablePolicy::Reject).unwrap();
    let why = |s: &SessionRouter| s.assignment().map(|a| a.to_string()).unwrap_or_default();
    assert_eq!(
        replaced(session.parse("ins", "INSERT INTO t VALUES (1)", true)),
        "INSERT INTO public.t_v1 AS t VALUES (1)"
    );
    session.parse("plain", "SELECT 1", true);
    // The default moves on: the session keeps v1 while `ins` exists.
    shared.store(migrating("v2").load_full());
    session.statement("SELECT 1", true);
    assert_eq!(why(&session), "v1 (held)");
    let refused = replaced(session.statement("SET viewgate.version = v2", true));
    assert!(refused.contains("'55000'"), "{refused}");
    // A statement naming the version's own view is forwarded as it is, and holds too.
    assert_eq!(
        session.parse("own", "SELECT * FROM T_V1", true),
        Routed::Forward
    );
    session.note_batch(1, false);
    session.closed(Some("plain"));
    session.settle_releases(&releases(&[(1, Answer::CloseComplete)]));
    session.statement("SELECT 1", true);
    assert_eq!(
        why(&session),
        "v1 (held)",
        "an unmanaged statement holds nothing"
    );
    // A release Postgres does not answer (skipped after an error) releases nothing.
    session.note_batch(2, false);
    session.statement("SELECT 1/0; DEALLOCATE ins", true);
    session.settle_releases(&releases(&[]));
    session.statement("SELECT 1", true);
    assert_eq!(why(&session), "v1 (held)");
    session.note_batch(3, false);
    session.statement("DEALLOCATE ins", true);
    session.note_batch(4, false);
    session.closed(Some("own"));
    session.settle_releases(&releases(&[
        (3, Answer::Tag("DEALLOCATE")),
        (4, Answer::CloseComplete),
    ]));
    session.statement("SELECT 1", true);
    assert_eq!(why(&session), "v2 (default)");
    // With no migration live, statements hold nothing.
    let shared = routing(Some("v1"));
    let mut free = session_at(shared.clone());
    free.parse("ins", "INSERT INTO t VALUES (1)", true);
    shared.store(routing(Some("v2")).load_full());
    free.statement("SELECT 1", true);
    assert_eq!(why(&free), "v2 (default)");
}

/// Routing where schema `tenant_a` holds a relation named like managed table `t`.
fn shadowed() -> SharedRouting {
    let routing = routing(Some("v1"));
    let mut map = RoutingMap {
        default_version: Some("v1".into()),
        ..RoutingMap::default()
    };
    map.versions.insert(
        "v1".into(),
        vec![RoutedTable {
            table_name: "t".into(),
            base_schema: "public".into(),
            base_table: "t".into(),
            view_schema: "public".into(),
            view_name: "t_v1".into(),
            mapping: None,
        }],
    );
    map.relation_schemas
        .insert("t".into(), ["public", "tenant_a"].map(String::from).into());
    routing.store(Arc::new(RoutingState::from_catalog("app", &map)));
    routing
}

#[test]
fn unqualified_names_follow_the_search_path_with_transaction_semantics() {
    let mut session = session_at(shadowed());
    assert!(session.wants_login_search_path());
    let select = |session: &mut SessionRouter, idle| session.statement("SELECT * FROM t", idle);
    // Unknown path: as before, rewritten.
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM public.t_v1 AS t"
    );
    session.login_search_path("tenant_a, public");
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM tenant_a.t AS t"
    );
    assert_eq!(
        replaced(session.statement("SELECT * FROM public.t", true)),
        "SELECT * FROM public.t_v1 AS t",
        "qualified names are unchanged"
    );
    // A SET outside a block stands.
    assert_eq!(
        session.statement("SET search_path TO public", true),
        Routed::Forward
    );
    assert!(session.take_unsettled_set());
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM public.t_v1 AS t"
    );
    // A SET in a block that rolls back is undone.
    session.statement("BEGIN", true);
    session.statement("SET search_path TO tenant_a", false);
    assert!(session.take_unsettled_set());
    assert_eq!(
        replaced(select(&mut session, false)),
        "SELECT * FROM tenant_a.t AS t"
    );
    session.set_settled(false);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM public.t_v1 AS t"
    );
    // SET LOCAL lasts to the end of its block, even one that commits.
    session.statement("BEGIN", true);
    session.statement("SET LOCAL search_path TO tenant_a", false);
    assert!(session.take_unsettled_set());
    assert_eq!(
        replaced(select(&mut session, false)),
        "SELECT * FROM tenant_a.t AS t"
    );
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM public.t_v1 AS t"
    );
    // RESET returns to the login value; an unreadable change is today's behaviour.
    session.statement("RESET search_path", true);
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM tenant_a.t AS t"
    );
    session.statement("SELECT set_config('search_path', $1, false)", true);
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM public.t_v1 AS t"
    );
    // `$user` is the session user ("alice").
    session.statement("SET search_path = \"$user\", tenant_a", true);
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM tenant_a.t AS t"
    );
    // Another role makes `$user` unknown: a path listing it resolves as unknown (to the
    // view) until RESET ROLE (or DISCARD ALL) puts the login user back.
    session.statement("SET ROLE bob", true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM public.t_v1 AS t"
    );
    session.statement("SET search_path = tenant_a", true);
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM tenant_a.t AS t"
    );
    session.statement("RESET ROLE", true);
    session.statement("SET search_path = \"$user\", tenant_a", true);
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM tenant_a.t AS t"
    );
    // Nothing on the path holds the name: the view's name, never the base table's, and
    // unqualified (Postgres finds it on the real path, or nothing, as it would the table).
    session.statement("SET search_path = nowhere", true);
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM t_v1 AS t"
    );
    // Within one query string, a change applies to the statements after it.
    session.statement("SET search_path = public", true);
    session.set_settled(true);
    assert_eq!(
        replaced(session.statement(
            "SELECT * FROM t; SET search_path TO tenant_a; SELECT * FROM t",
            true
        )),
        "SELECT * FROM public.t_v1 AS t; SET search_path TO tenant_a; SELECT * FROM tenant_a.t AS t"
    );
    session.set_settled(true);
    assert_eq!(
        replaced(select(&mut session, true)),
        "SELECT * FROM tenant_a.t AS t"
    );
    // Without shadows, sessions do not follow (and do not ask at login).
    let plain = session_at(routing(Some("v1")));
    assert!(!plain.wants_login_search_path());
}

#[test]
fn named_statements_are_prepared_again_when_the_resolution_changes() {
    let mut session = session_at(shadowed());
    session.statement("SET search_path = tenant_a, public", true);
    session.set_settled(true);
    assert_eq!(
        replaced(
            session.parse_message("s1", Statement::new("SELECT * FROM t"), true, b"parse s1",)
        ),
        "SELECT * FROM tenant_a.t AS t"
    );
    // The unnamed statement lives one batch; an unmanaged one depends on nothing.
    session.parse("", "SELECT * FROM t", true);
    session.parse_message("s2", Statement::new("SELECT 1"), true, b"parse s2");
    assert!(session.stale_statements().is_empty());
    session.statement("SET search_path = public", true);
    session.set_settled(true);
    assert_eq!(
        session.stale_statements(),
        vec![(
            "s1".to_owned(),
            "SELECT * FROM public.t_v1 AS t".to_owned(),
            b"parse s1".to_vec()
        )]
    );
    assert!(session.stale_statements().is_empty(), "prepared again once");
    // A change that leaves its text as it is prepares nothing.
    session.statement("SET search_path = nowhere, public", true);
    session.set_settled(true);
    assert!(session.stale_statements().is_empty());
    // Closed, and the close answered: forgotten.
    session.closed(Some("s1"));
    session.settle_releases(&releases(&[(0, Answer::CloseComplete)]));
    session.statement("SET search_path = tenant_a", true);
    session.set_settled(true);
    assert!(session.stale_statements().is_empty());
}

#[test]
fn savepoints_put_back_the_version_and_the_search_path() {
    let mut session = session_at(shadowed());
    session.login_search_path("public");
    let select =
        |session: &mut SessionRouter| replaced(session.statement("SELECT * FROM t", false));
    session.statement("BEGIN", true);
    session.statement("SAVEPOINT a", false);
    session.statement("SET viewgate.version = v2", false);
    session.statement("SET search_path = tenant_a", false);
    assert_eq!(select(&mut session), "SELECT * FROM tenant_a.t AS t");
    session.statement("ROLLBACK TO SAVEPOINT A", false);
    assert_eq!(select(&mut session), "SELECT * FROM public.t_v1 AS t");
    assert_eq!(session.set, None);
    // Known failed: a SAVEPOINT is not recorded, so ROLLBACK TO finds the first "a".
    session.statement("SET search_path = tenant_a", false);
    session.note_errors(1, 0);
    session.statement("SAVEPOINT a", false);
    session.statement("ROLLBACK TO a", false);
    session.note_errors(1, 0);
    assert!(!session.block_failed, "the rollback recovered the block");
    assert_eq!(select(&mut session), "SELECT * FROM public.t_v1 AS t");
    // Unknown names change nothing; the block's end clears the stack.
    session.statement("SET search_path = tenant_a", false);
    session.statement("ROLLBACK TO nosuch", false);
    assert_eq!(select(&mut session), "SELECT * FROM tenant_a.t AS t");
    session.statement("COMMIT", false);
    session.statement("SET search_path = public", true);
    session.statement("BEGIN", true);
    session.statement("ROLLBACK TO a", false);
    assert_eq!(select(&mut session), "SELECT * FROM public.t_v1 AS t");
    // Past the cap, a rollback that may name a forgotten savepoint is refused.
    session.statement("SAVEPOINT first", false);
    for i in 0..MAX_SAVEPOINTS {
        session.statement(&format!("SAVEPOINT p{i}"), false);
    }
    let refused = replaced(session.statement("ROLLBACK TO first", false));
    assert!(refused.contains("'54000'"), "{refused}");
    assert_eq!(session.statement("ROLLBACK TO p1", false), Routed::Forward);
    // One query string: each statement sees what the ones before it left.
    session.statement("COMMIT", false);
    assert_eq!(
        replaced(session.statement(
            "BEGIN; SAVEPOINT b; SET search_path = tenant_a; SELECT * FROM t; ROLLBACK TO b; SELECT * FROM t",
            true
        )),
        "BEGIN; SAVEPOINT b; SET search_path = tenant_a; SELECT * FROM tenant_a.t AS t; ROLLBACK TO b; SELECT * FROM public.t_v1 AS t"
    );
}

fn session_at(shared: SharedRouting) -> SessionRouter {
    session(shared, "app", None, UnparseablePolicy::Reject).unwrap()
}
