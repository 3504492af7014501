//! Routing rules end to end: `viewgate route …` writes the catalog, proxies (in-process and
//! separate processes) reload it and route new sessions by it. Covers the sticky 10% split over
//! 1,000 connections, propagation to two proxies within 1 s, precedence (declared, enforce),
//! user/CIDR/database matches, remove and set-weights, and the CLI's errors.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_postgres::error::SqlState;
use viewgate::config::DEFAULT_STICKY_IDENTITY;
use viewgate::pg_cluster::SUPERUSER;
use viewgate::router::ClientIdentity;

use common::versions::{catalog_command, versioned_proxy};
use common::{ProxyProcess, TestProxy, viewgate_binary};

/// The bound on applying a rule change on every proxy.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(1);
/// How long the functional tests wait for a proxy to reload (not a performance assertion).
const RELOAD_WAIT: Duration = Duration::from_secs(5);
const CONNECTIONS: usize = 1_000;
const RECONNECTED: usize = 200;
const CONCURRENCY: usize = 16;

/// Runs `viewgate route ARGS --database <catalog>`: stdout on success, stderr on failure.
fn route(proxy: &TestProxy, args: &[&str]) -> Result<String, String> {
    catalog_command(proxy, "route", args)
}

fn add(proxy: &TestProxy, args: &[&str]) -> String {
    let mut all = vec!["add"];
    all.extend_from_slice(args);
    route(proxy, &all).unwrap_or_else(|error| panic!("route add {args:?}: {error}"))
}

/// A session through the proxy on `port` as `user` with `application_name`, and libpq
/// `options` (e.g. a declared version).
async fn connect(
    port: u16,
    user: &str,
    application: &str,
    options: Option<&str>,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .dbname("postgres")
        .application_name(application);
    if let Some(options) = options {
        config.options(options);
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn show(client: &tokio_postgres::Client) -> String {
    let messages = client.simple_query("SHOW viewgate.version").await.unwrap();
    messages
        .iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap()
}

/// The version a new session gets.
async fn version(port: u16, user: &str, application: &str, options: Option<&str>) -> String {
    show(&connect(port, user, application, options).await.unwrap()).await
}

/// Waits until a new session as (`user`, `application`) gets `expected`.
async fn wait_for(port: u16, user: &str, application: &str, options: Option<&str>, expected: &str) {
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        let got = version(port, user, application, options).await;
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user}/{application} still gets {got}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The split bucket the proxy computes for a superuser session from 127.0.0.1.
fn bucket(application: &str) -> u8 {
    ClientIdentity {
        user: SUPERUSER.into(),
        database: "postgres".into(),
        application_name: application.into(),
        address: Some("127.0.0.1".parse().unwrap()),
    }
    .bucket(&DEFAULT_STICKY_IDENTITY)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ten_percent_split_lands_ten_percent_on_v2_and_each_identity_stays() {
    let proxy = versioned_proxy();
    let port = proxy.port();
    add(
        &proxy,
        &["--split", "v2=10,v1=90", "--application", "client-*"],
    );
    // Ready once a client the split puts on v2 gets v2.
    let canary = (0..)
        .map(|i| format!("client-{i}"))
        .find(|name| bucket(name) < 10)
        .unwrap();
    wait_for(port, SUPERUSER, &canary, None, "v2").await;

    let started = Instant::now();
    let landed: Vec<(usize, String)> = futures_util::stream::iter(0..CONNECTIONS)
        .map(|i| async move {
            (
                i,
                version(port, SUPERUSER, &format!("client-{i}"), None).await,
            )
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let on_v2 = landed.iter().filter(|(_, v)| v == "v2").count();
    eprintln!(
        "{CONNECTIONS} connections in {:?}: {on_v2} on v2 ({:.1}%)",
        started.elapsed(),
        on_v2 as f64 * 100.0 / CONNECTIONS as f64
    );
    assert!(
        (70..=130).contains(&on_v2),
        "{on_v2} of {CONNECTIONS} on v2"
    );
    for (i, landed) in &landed {
        let expected = if bucket(&format!("client-{i}")) < 10 {
            "v2"
        } else {
            "v1"
        };
        assert_eq!(landed, expected, "client-{i} against the documented bucket");
    }

    // The same identities again (every fifth): each lands where it landed before.
    let again: Vec<(usize, String)> =
        futures_util::stream::iter((0..CONNECTIONS).step_by(CONNECTIONS / RECONNECTED))
            .map(|i| async move {
                (
                    i,
                    version(port, SUPERUSER, &format!("client-{i}"), None).await,
                )
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    assert_eq!(again.len(), RECONNECTED);
    for (i, version) in again {
        assert_eq!(
            version,
            landed.iter().find(|(j, _)| *j == i).unwrap().1,
            "client-{i} moved"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_proxy_processes_apply_a_rule_change_within_one_second() {
    let base = versioned_proxy();
    let catalog = base.cluster.url(SUPERUSER, "postgres");
    let env = [
        ("VIEWGATE_CATALOG", catalog.as_str()),
        ("VIEWGATE_LOG_LEVEL", "warn"),
    ];
    let proxies = [
        ProxyProcess::start(&base.cluster, &env),
        ProxyProcess::start(&base.cluster, &env),
    ];
    for proxy in &proxies {
        wait_for(proxy.port, SUPERUSER, "probe", None, "v1").await;
    }

    // Each change, then the time from the command's return (it has committed) until a new
    // session on each proxy is routed by it.
    const DECLARES_V1: Option<&str> = Some("-c viewgate.version=v1");
    let mut ids: Vec<String> = Vec::new();
    let steps: [(&str, Option<&str>, &str); 4] = [
        ("add --version v2", None, "v2"),
        ("set-weights v2=0,v1=100", None, "v1"),
        ("add --enforce", DECLARES_V1, "v2"),
        ("remove", DECLARES_V1, "v1"),
    ];
    for (step, options, expected) in steps {
        let started = Instant::now();
        match step {
            "add --version v2" => {
                ids.push(add(&base, &["--version", "v2", "--application", "probe"]))
            }
            "set-weights v2=0,v1=100" => {
                route(&base, &["set-weights", &ids[0], "v2=0,v1=100"]).unwrap();
            }
            "add --enforce" => ids.push(add(
                &base,
                &[
                    "--version",
                    "v2",
                    "--application",
                    "probe",
                    "--enforce",
                    "--position",
                    "1",
                ],
            )),
            _ => {
                route(&base, &["remove", &ids[1]]).unwrap();
            }
        }
        let committed = Instant::now();
        let mut seen: [Option<Duration>; 2] = [None, None];
        while seen.iter().any(Option::is_none) {
            for (proxy, seen) in proxies.iter().zip(&mut seen) {
                if seen.is_none()
                    && version(proxy.port, SUPERUSER, "probe", options).await == expected
                {
                    *seen = Some(committed.elapsed());
                }
            }
            assert!(
                committed.elapsed() < RELOAD_WAIT,
                "route {step}: a proxy did not apply it (seen: {seen:?})"
            );
        }
        let [first, second] = seen.map(Option::unwrap);
        let slowest = first.max(second);
        eprintln!(
            "route {step}: both proxies route by it {slowest:?} after the command returned \
             (proxy A {first:?}, proxy B {second:?}; the command took {:?})",
            committed - started
        );
        assert!(slowest < PROPAGATION_LIMIT, "route {step}: {slowest:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn declarations_enforce_matches_remove_and_set_weights() {
    let proxy = versioned_proxy();
    let port = proxy.port();
    proxy.admin("CREATE ROLE alice LOGIN");
    const DECLARES_V1: Option<&str> = Some("-c viewgate.version=v1");

    // A rule on application_name; the client's own declaration wins over it.
    let app_rule = add(
        &proxy,
        &[
            "--version",
            "v2",
            "--application",
            "app-*",
            "--note",
            "canary",
        ],
    );
    wait_for(port, SUPERUSER, "app-1", None, "v2").await;
    assert_eq!(version(port, SUPERUSER, "other", None).await, "v1");
    assert_eq!(version(port, SUPERUSER, "app-1", DECLARES_V1).await, "v1");
    let session = connect(port, SUPERUSER, "app-2", None).await.unwrap();
    session
        .batch_execute("SET viewgate.version = v1")
        .await
        .unwrap();
    assert_eq!(show(&session).await, "v1", "a SET beats the rule too");

    // --enforce beats the declaration, and refuses a SET to another version with 42501.
    let enforced = add(
        &proxy,
        &[
            "--version",
            "v2",
            "--application",
            "locked",
            "--enforce",
            "--position",
            "1",
        ],
    );
    wait_for(port, SUPERUSER, "locked", DECLARES_V1, "v2").await;
    let locked = connect(port, SUPERUSER, "locked", DECLARES_V1)
        .await
        .unwrap();
    let error = locked
        .batch_execute("SET viewgate.version = v1")
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{error:?}"
    );
    let message = error.as_db_error().unwrap().message().to_owned();
    assert!(
        message.contains(&format!("routing rule {enforced}")),
        "{message}"
    );
    assert_eq!(show(&locked).await, "v2");
    // The server's setting, which the migrations' triggers read, starts at the session's
    // version, not at the declaration the rule overrode (the sixteenth red-team pass wrote
    // as the declared version through a RESET).
    let server: String = locked
        .query_one("SELECT current_setting('viewgate.version')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(server, "v2");

    // User, CIDR and database matches.
    let user_rule = add(&proxy, &["--version", "v2", "--user", "alice"]);
    add(
        &proxy,
        &[
            "--version",
            "v2",
            "--application",
            "near-*",
            "--cidr",
            "127.0.0.0/8",
            "--match-database",
            "post*",
        ],
    );
    add(
        &proxy,
        &[
            "--version",
            "v2",
            "--application",
            "far-*",
            "--cidr",
            "10.0.0.0/8",
        ],
    );
    add(
        &proxy,
        &[
            "--version",
            "v2",
            "--application",
            "elsewhere-*",
            "--match-database",
            "app",
        ],
    );
    wait_for(port, "alice", "batch", None, "v2").await;
    assert_eq!(version(port, SUPERUSER, "batch", None).await, "v1");
    wait_for(port, SUPERUSER, "elsewhere-1", None, "v1").await;
    assert_eq!(version(port, SUPERUSER, "near-1", None).await, "v2");
    assert_eq!(version(port, SUPERUSER, "far-1", None).await, "v1");

    // A rule naming a version the catalog does not have (written by hand) is skipped, first
    // in line or not; routing goes on.
    proxy.admin(
        "INSERT INTO viewgate.routing_rules (position, assign) VALUES (0, '{\"version\": \"v9\"}');
         NOTIFY viewgate_control",
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(version(port, SUPERUSER, "app-1", None).await, "v2");
    assert_eq!(version(port, SUPERUSER, "batch", None).await, "v1");

    // set-weights turns the app rule into a split; remove drops the user rule.
    let out = route(&proxy, &["set-weights", &app_rule, "v2=0,v1=100"]).unwrap();
    assert!(
        out.contains(&format!("rule {app_rule}: v2 -> v2=0,v1=100")),
        "{out}"
    );
    wait_for(port, SUPERUSER, "app-1", None, "v1").await;
    let out = route(&proxy, &["remove", &user_rule]).unwrap();
    assert!(out.contains(&format!("rule {user_rule} removed")), "{out}");
    wait_for(port, "alice", "batch", None, "v1").await;

    // list: evaluation order (the hand-written rule at position 0, then the enforced one).
    let list = route(&proxy, &["list"]).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("ID"), "{list}");
    assert!(lines[1].contains("v9"), "{list}");
    assert!(
        lines[2].contains("app=locked") && lines[2].contains("yes"),
        "{list}"
    );
    assert!(
        list.contains("v2=0,v1=100") && list.contains("canary"),
        "{list}"
    );
    assert!(
        list.contains("db=post* app=near-* cidr=127.0.0.0/8"),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&route(&proxy, &["list", "--json"]).unwrap()).unwrap();
    let rules = json["rules"].as_array().unwrap();
    assert_eq!(rules[0]["assign"]["version"], "v9");
    assert_eq!(rules[1]["id"].to_string(), enforced);
    assert_eq!(rules[1]["enforce"], true);
    assert!(
        rules
            .iter()
            .any(|r| r["assign"]["split"] == serde_json::json!([["v2", 0], ["v1", 100]]))
    );

    // Every change is in the history.
    assert_eq!(
        proxy.admin(
            "SELECT count(*) FROM viewgate.apply_history WHERE action = 'route' AND success"
        ),
        "8"
    );
}

#[test]
fn invalid_rules_are_refused_with_clear_errors_and_change_nothing() {
    let proxy = versioned_proxy();
    let refused = |args: &[&str], expected: &str| {
        let error = route(&proxy, args).unwrap_err();
        assert!(error.contains(expected), "{args:?}: {error}");
    };
    refused(
        &["add", "--version", "v9"],
        "version v9 is not an active version (active: v1, v2)",
    );
    refused(
        &["add", "--split", "v2=10,v9=90"],
        "version v9 is not an active version",
    );
    refused(
        &["add", "--split", "v2=10,v1=80"],
        "invalid split: weights must sum to 100, these sum to 90",
    );
    refused(&["add", "--split", "v2=ten,v1=90"], "whole number");
    refused(
        &["add", "--version", "v2", "--cidr", "10.0.0.1/8"],
        "invalid CIDR \"10.0.0.1/8\": bits are set right of the /8 mask (did you mean 10.0.0.0/8?)",
    );
    refused(
        &["add", "--version", "v2", "--cidr", "10.0.0.0/40"],
        "invalid CIDR",
    );
    refused(
        &["add", "--version", "v2", "--application", "app[0-9]"],
        "invalid name pattern \"app[0-9]\": character classes",
    );
    refused(
        &["add", "--version", "v2", "--user", ""],
        "invalid name pattern",
    );
    refused(
        &["add", "--version", "v2", "--guard-error-rate", "5"],
        "at most 1",
    );
    refused(
        &["add", "--version", "v2", "--guard-window", "30s"],
        "--guard-error-rate",
    );
    refused(
        &["add", "--version", "v2", "--split", "v2=100"],
        "cannot be used with",
    );
    refused(&["add", "--version", "v2", "--position", "0"], "--position");
    refused(&["remove", "999"], "there is no routing rule with id 999");
    refused(
        &["set-weights", "999", "v2=100"],
        "there is no routing rule with id 999",
    );

    let id = add(
        &proxy,
        &[
            "--split",
            "v2=5,v1=95",
            "--guard-error-rate",
            "0.05",
            "--guard-window",
            "30s",
            "--guard-min-queries",
            "20",
        ],
    );
    refused(
        &["set-weights", &id, "v2=50,v1=40"],
        "weights must sum to 100",
    );
    refused(
        &["set-weights", &id, "v3=100"],
        "version v3 is not an active version",
    );
    let list = route(&proxy, &["list"]).unwrap();
    assert!(
        list.contains("v2=5,v1=95") && list.contains("errors>0.05 window=30s min=20"),
        "{list}"
    );
    assert_eq!(
        proxy.admin("SELECT guard_error_rate || ' ' || guard_window_ms || ' ' || guard_min_queries FROM viewgate.routing_rules"),
        "0.05 30000 20"
    );
    assert_eq!(
        proxy.admin("SELECT count(*) FROM viewgate.apply_history WHERE action = 'route'"),
        "1",
        "only the valid add was recorded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_rule_is_skipped_until_enabled_again() {
    let proxy = versioned_proxy();
    let port = proxy.port();
    let id = add(&proxy, &["--version", "v2", "--application", "toggled"]);
    wait_for(port, SUPERUSER, "toggled", None, "v2").await;
    let out = route(&proxy, &["disable", &id]).unwrap();
    assert!(out.contains(&format!("rule {id} disabled")), "{out}");
    wait_for(port, SUPERUSER, "toggled", None, "v1").await;
    let listed = route(&proxy, &["list", "--json"]).unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["rules"][0]["enabled"], false, "{listed}");
    route(&proxy, &["enable", &id]).unwrap();
    wait_for(port, SUPERUSER, "toggled", None, "v2").await;
    let missing = route(&proxy, &["disable", "999"]).unwrap_err();
    assert!(missing.contains("999"), "{missing}");
}

#[test]
fn a_version_a_rule_names_cannot_be_retired() {
    let proxy = versioned_proxy();
    let id = add(&proxy, &["--split", "v2=10,v1=90"]);
    let drop_v2 = || {
        Command::new(viewgate_binary())
            .args(["views", "drop", "--version", "v2", "--database"])
            .arg(proxy.cluster.url(SUPERUSER, "postgres"))
            .output()
            .unwrap()
    };
    let refused = drop_v2();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("version v2 is named by routing rule(s) {id}")),
        "{stderr}"
    );
    assert_eq!(
        proxy.admin("SELECT state FROM viewgate.versions WHERE version = 'v2'"),
        "active"
    );
    route(&proxy, &["set-weights", &id, "v1=100"]).unwrap();
    let retired = drop_v2();
    assert!(
        retired.status.success(),
        "{}",
        String::from_utf8_lossy(&retired.stderr)
    );
    assert_eq!(
        proxy.admin("SELECT state FROM viewgate.versions WHERE version = 'v2'"),
        "retired"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_from_the_previous_build_is_upgraded_by_the_first_route_command() {
    let proxy = versioned_proxy();
    // The previous build's shape: an unused one-version-per-row table and a narrower check.
    proxy.admin(
        "DROP TABLE viewgate.routing_rules;
         CREATE TABLE viewgate.routing_rules (
             id bigserial PRIMARY KEY, priority integer NOT NULL DEFAULT 100,
             version text NOT NULL, match_user text, match_database text,
             match_application text, match_cidr cidr,
             weight_percent integer CHECK (weight_percent BETWEEN 0 AND 100),
             enabled boolean NOT NULL DEFAULT true,
             created_at timestamptz NOT NULL DEFAULT now());
         ALTER TABLE viewgate.apply_history DROP CONSTRAINT apply_history_action_check;
         ALTER TABLE viewgate.apply_history ADD CONSTRAINT apply_history_action_check
             CHECK (action IN ('apply', 'noop', 'drop', 'init', 'cutover', 'rollback'));
         NOTIFY viewgate_control",
    );
    // The proxy still routes (no rules) on the old shape; list shows none.
    assert_eq!(version(proxy.port(), SUPERUSER, "old", None).await, "v1");
    assert!(
        route(&proxy, &["list"])
            .unwrap()
            .starts_with("no routing rules")
    );
    add(&proxy, &["--version", "v2", "--application", "old"]);
    wait_for(proxy.port(), SUPERUSER, "old", None, "v2").await;
    assert_eq!(
        proxy.admin(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_schema = 'viewgate' AND table_name = 'routing_rules' AND column_name = 'weight_percent'"
        ),
        "0"
    );
}

/// An application_name set after the startup (pgJDBC sends the URL's `ApplicationName` as a
/// `SET` once connected) is what rules match from the session's next statement, and what
/// `viewgate status` lists it by: before, the session kept the version its startup got (the
/// default, not its rule's) and was listed as "a client without application_name" (the Java
/// walk). A `SET` rolled back with its block is undone, and a `RESET` puts the startup's back.
#[tokio::test(flavor = "multi_thread")]
async fn an_application_name_set_after_the_startup_is_matched_from_the_next_statement() {
    let base = versioned_proxy();
    let catalog = base.cluster.url(SUPERUSER, "postgres");
    // A process of its own: its heartbeat is what `viewgate status` lists sessions from.
    let process = ProxyProcess::start(&base.cluster, &[("VIEWGATE_CATALOG", catalog.as_str())]);
    let port = process.port;
    add(&base, &["--version", "v2", "--application", "billing-*"]);
    wait_for(port, SUPERUSER, "billing-1", None, "v2").await;
    let session = connect(port, SUPERUSER, "", None).await.unwrap();
    assert_eq!(show(&session).await, "v1");
    session
        .batch_execute("SET application_name = 'billing-svc'")
        .await
        .unwrap();
    assert_eq!(show(&session).await, "v2");
    let mut listed = serde_json::Value::Null;
    let named = common::wait_until(RELOAD_WAIT, || {
        let status = catalog_command(&base, "status", &["--json"]).unwrap();
        listed = serde_json::from_str::<serde_json::Value>(&status).unwrap()["proxies"][0]
            ["listed_sessions"]["v2"]
            .clone();
        listed[0]["application_name"] == "billing-svc"
    });
    assert!(named, "status lists the session by its name: {listed:#}");
    for (sql, expected) in [
        ("BEGIN; SET application_name = 'other'; ROLLBACK", "v2"),
        ("BEGIN; SET LOCAL application_name = 'other'; COMMIT", "v2"),
        ("RESET application_name", "v1"),
    ] {
        session.batch_execute(sql).await.unwrap();
        assert_eq!(show(&session).await, expected, "after {sql}");
    }
    // A declaration still beats a rule, whatever the name.
    let declared = connect(port, SUPERUSER, "", Some("-c viewgate.version=v1"))
        .await
        .unwrap();
    declared
        .batch_execute("SET application_name = 'billing-svc'")
        .await
        .unwrap();
    assert_eq!(show(&declared).await, "v1");
}
