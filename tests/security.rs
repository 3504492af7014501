//! Security cases, each against a real proxy in front of a real Postgres: the admin API refuses
//! every route but the probes without the exact token; `client_tls.mode = require` refuses
//! plaintext before a byte reaches Postgres (a fault relay in front of Postgres counts what
//! arrives); hostile startup parameters and version names never reach internal SQL (the
//! CVE-2025-12819 class: with `log_statement = 'all'`, no statement Postgres ran holds them,
//! and a canary table survives); and the application's role, granted what
//! docs/operations.md recommends, can use the views but can neither read nor write the catalog,
//! nor attach a version's write function to a table of its own.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::fault_relay::FaultRelay;
use common::versions::{apply_example, catalog_command};
use common::{ProxyProcess, TestProxy, raw, wait_until};
use viewgate::config::{ClientTlsConfig, ClientTlsMode};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster, free_port};

const TOKEN: &str = "admin-token-0123456789";
/// Ends the literal it is pasted into, drops the canary and keeps the statement well-formed.
const HOSTILE: &str = "x'; DROP TABLE canary; SELECT '";

/// Every route behind the token (method, path): the list in src/admin/*.rs.
const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/metrics"),
    ("GET", "/status"),
    ("POST", "/cutover"),
    ("GET", "/routes"),
    ("POST", "/routes"),
    ("DELETE", "/routes/1"),
    ("POST", "/routes/1/weights"),
    ("POST", "/routes/1/enabled"),
    ("POST", "/shadow/start"),
    ("POST", "/shadow/stop"),
    ("GET", "/shadow/report"),
    ("GET", "/ui/panel"),
    ("GET", "/pause"),
    ("POST", "/pause"),
    ("POST", "/resume"),
    ("POST", "/upstream/prepare"),
    ("POST", "/upstream/commit"),
    ("POST", "/upstream/abort"),
];

/// One HTTP request with an optional raw `Authorization` value; returns the status code.
fn status(port: u16, method: &str, path: &str, authorization: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let header = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    let body = r#"{"to":"v2","version":"v2","timeout_ms":100,"url":"postgres://127.0.0.1:1"}"#;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}Connection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_admin_api_refuses_every_route_but_the_probes_without_the_exact_token() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    apply_example(&cluster);
    let admin_port = free_port().unwrap();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let catalog = cluster.url(SUPERUSER, "postgres");
    let _process = ProxyProcess::start(
        &cluster,
        &[
            ("VIEWGATE_ADMIN_LISTEN", admin_listen.as_str()),
            ("VIEWGATE_ADMIN_TOKEN", TOKEN),
            ("VIEWGATE_CATALOG", catalog.as_str()),
        ],
    );
    assert!(wait_until(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    }));
    assert!(wait_until(Duration::from_secs(10), || status(
        admin_port, "GET", "/readyz", None
    ) == 200));
    assert_eq!(status(admin_port, "GET", "/healthz", None), 200);

    let wrong_last = format!("{}X", &TOKEN[..TOKEN.len() - 1]);
    let refused: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some("Bearer wrong".into()),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {wrong_last}")),
        Some(format!("Bearer  {TOKEN}")),
        Some(format!("bearer{TOKEN}")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.into()),
    ];
    for (method, path) in PROTECTED {
        for authorization in &refused {
            assert_eq!(
                status(admin_port, method, path, authorization.as_deref()),
                401,
                "{method} {path} with {authorization:?}"
            );
        }
        // Nor does a token in the query string count.
        assert_eq!(
            status(admin_port, method, &format!("{path}?token={TOKEN}"), None),
            401,
            "{method} {path}?token="
        );
    }
    // The refused POSTs changed nothing: no cutover, no rule, not paused.
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "SELECT default_version || ':' || (SELECT count(*) FROM viewgate.routing_rules) FROM viewgate.settings"
            )
            .unwrap(),
        "v1:0"
    );
    let bearer = format!("Bearer {TOKEN}");
    let (code, pause) = common::http::get(admin_port, "/pause", Some(TOKEN));
    assert_eq!(code, 200, "{pause}");
    assert!(pause.contains(r#""state":"open""#), "{pause}");
    // The exact token opens the read-only routes (they exist: not 404).
    for path in ["/metrics", "/status", "/routes", "/ui/panel"] {
        assert_eq!(
            status(admin_port, "GET", path, Some(&bearer)),
            200,
            "{path}"
        );
    }
    // No shadow run yet: a 404 that says so, past the token check.
    assert_eq!(
        status(admin_port, "GET", "/shadow/report", Some(&bearer)),
        404
    );
}

/// A proxy requiring client TLS, its upstream a counting relay in front of `cluster`.
fn tls_required_proxy(cluster_relay: &FaultRelay, dir: &Path) -> (std::net::SocketAddr, impl Drop) {
    let ca = common::certs::TestCa::new("viewgate security test CA");
    let files = ca.write_server_files(dir, &["127.0.0.1", "localhost"]);
    let mut config = viewgate::config::Config {
        listen: "127.0.0.1:0".into(),
        upstream: format!("postgres://127.0.0.1:{}", cluster_relay.port),
        shutdown_timeout: Duration::from_secs(1),
        log_level: "warn".into(),
        ..viewgate::config::Config::default()
    };
    config.upstream_tls.mode = viewgate::config::UpstreamTlsMode::Disable;
    config.client_tls = ClientTlsConfig {
        mode: ClientTlsMode::Require,
        cert: Some(files.cert),
        key: Some(files.key),
    };
    let (address, shutdown, thread) = common::spawn_proxy(config);
    struct Stop(
        viewgate::shutdown::Shutdown,
        Option<std::thread::JoinHandle<()>>,
    );
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.close_sessions();
            if let Some(thread) = self.1.take() {
                let _ = thread.join();
            }
        }
    }
    (address, Stop(shutdown, Some(thread)))
}

#[test]
fn require_mode_refuses_plaintext_before_a_byte_reaches_postgres() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let relay = FaultRelay::start(([127, 0, 0, 1], cluster.port()).into());
    let dir = tempfile::tempdir().unwrap();
    let (address, _proxy) = tls_required_proxy(&relay, dir.path());

    // A plaintext startup, a plaintext startup with a hostile version, and a plaintext
    // CancelRequest: each refused or dropped by the proxy alone.
    for params in [
        vec![("user", "postgres"), ("database", "postgres")],
        vec![("user", "postgres"), ("options", "-c viewgate.version=v1")],
    ] {
        let report = raw::start_session_with(address, &params).unwrap_err();
        assert_eq!(
            (report.severity.as_str(), report.code.as_str()),
            ("FATAL", "28000"),
            "{report:?}"
        );
    }
    raw::send_cancel(address, 1, &2u32.to_be_bytes());
    assert_eq!(
        (relay.accepted(), relay.bytes_to_target()),
        (0, 0),
        "plaintext clients must not cause an upstream connection"
    );

    // The same proxy over TLS does reach Postgres through the relay (the relay counts).
    let output = std::process::Command::new(cluster.bin("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=require",
                address.port()
            ),
            "-c",
            "SELECT 'over tls'",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "over tls",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(relay.accepted() >= 1 && relay.bytes_to_target() > 0);
}

/// A versioned proxy over a cluster that logs every statement it runs, with a canary table.
fn logging_versioned_proxy() -> TestProxy {
    let proxy = TestProxy::start_with(
        ClusterOptions {
            settings: vec!["log_statement = 'all'".into()],
            ..ClusterOptions::default()
        },
        |config| {
            config.catalog = Some(format!(
                "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
                config.upstream.rsplit(':').next().unwrap()
            ));
        },
    );
    apply_example(&proxy.cluster);
    proxy.admin("CREATE TABLE canary (x int)");
    assert!(wait_until(Duration::from_secs(5), || {
        common::versions::psql(&proxy, None, "SHOW viewgate.version").is_ok_and(|v| v == "v1")
    }));
    proxy
}

/// The statements Postgres logged (`log_statement = 'all'`) that hold `needle`.
fn logged_statements_with(proxy: &TestProxy, needle: &str) -> Vec<String> {
    let log = std::fs::read_to_string(proxy.cluster.socket_dir().join("server.log")).unwrap();
    log.lines()
        .filter(|line| line.contains("LOG:  statement:") || line.contains("LOG:  execute"))
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}

fn canary_exists(proxy: &TestProxy) -> bool {
    proxy.admin("SELECT to_regclass('public.canary') IS NOT NULL") == "t"
}

#[test]
fn hostile_startup_parameters_never_reach_internal_sql() {
    let proxy = logging_versioned_proxy();
    // In a startup parameter of its own and inside `options` (spaces escaped as libpq does).
    let in_options = format!("-c viewgate.version={}", HOSTILE.replace(' ', "\\ "));
    for params in [
        vec![
            ("user", "postgres"),
            ("database", "postgres"),
            ("viewgate.version", HOSTILE),
        ],
        vec![
            ("user", "postgres"),
            ("database", "postgres"),
            ("options", in_options.as_str()),
        ],
    ] {
        // The version is unknown: the proxy ends the startup with its own FATAL 22023, and
        // nothing reaches Postgres as SQL.
        let error = raw::start_session_with(proxy.address, &params).unwrap_err();
        assert_eq!(
            (error.severity.as_str(), error.code.as_str()),
            ("FATAL", "22023"),
            "{error:?}"
        );
        assert!(
            error.message.contains("unknown viewgate version"),
            "{error:?}"
        );
    }
    // application_name is matched by routing rules and reaches Postgres only as a startup
    // parameter: the session works, and Postgres holds the exact text.
    let mut session = raw::start_session_with(
        proxy.address,
        &[
            ("user", "postgres"),
            ("database", "postgres"),
            ("application_name", HOSTILE),
        ],
    )
    .expect("a hostile application_name is only a name");
    let rows = raw::first_column(&raw::simple_query(
        &mut session,
        "SELECT current_setting('application_name')",
    ));
    assert_eq!(rows, vec![HOSTILE.to_owned()]);
    let rows = raw::first_column(&raw::simple_query(
        &mut session,
        "SELECT count(*) FROM model_metadata",
    ));
    assert_eq!(rows.len(), 1);

    assert!(canary_exists(&proxy));
    assert_eq!(
        logged_statements_with(&proxy, "DROP TABLE canary"),
        Vec::<String>::new()
    );
}

#[test]
fn a_hostile_version_name_in_the_catalog_is_never_pasted_into_sql() {
    let proxy = logging_versioned_proxy();
    // Someone who can write the catalog (but should not be able to run SQL in every
    // application session) records a version named to break out of a literal, and a live
    // migration, so that sessions keep `viewgate.version` set upstream (relay.rs).
    proxy.admin(&format!(
        "CREATE VIEW public.model_metadata_hostile AS SELECT * FROM public.model_metadata_v1;
         INSERT INTO viewgate.versions (version, layout, checksum, state)
             VALUES ($h${HOSTILE}$h$, 'suffix', 'x', 'active');
         INSERT INTO viewgate.version_objects
             (version, table_name, base_schema, base_table, view_schema, view_name, trigger_backed, fingerprint)
             VALUES ($h${HOSTILE}$h$, 'model_metadata', 'public', 'model_metadata', 'public', 'model_metadata_hostile', false, 'x');
         INSERT INTO viewgate.migrations (version, from_version, file, checksum, migration, plan, phase)
             VALUES ('v9', 'v1', 'x', 'x', '{{}}', '{{}}', 'live');
         UPDATE viewgate.settings SET default_version = $h${HOSTILE}$h$;
         NOTIFY viewgate_control;"
    ));
    assert!(
        wait_until(Duration::from_secs(5), || {
            common::versions::psql(&proxy, None, "SHOW viewgate.version")
                .is_ok_and(|v| v == HOSTILE)
        }),
        "the proxy did not pick up the hostile default"
    );
    let (mut session, _) = raw::start_session(proxy.address, "postgres");
    let rows = raw::first_column(&raw::simple_query(
        &mut session,
        "SELECT count(*) FROM model_metadata",
    ));
    assert_eq!(rows, vec!["0".to_owned()]);
    // The setting upstream holds the exact name: set, not executed.
    let rows = raw::first_column(&raw::simple_query(
        &mut session,
        "SELECT current_setting('viewgate.version', true)",
    ));
    assert_eq!(rows, vec![HOSTILE.to_owned()]);
    assert!(canary_exists(&proxy));
    assert_eq!(
        logged_statements_with(&proxy, "DROP TABLE canary"),
        Vec::<String>::new()
    );
}

#[test]
fn hostile_version_names_in_cutover_and_route_commands_change_nothing() {
    let proxy = logging_versioned_proxy();
    let catalog_state = || {
        proxy.admin(
            "SELECT default_version || ':' || (SELECT count(*) FROM viewgate.routing_rules) || ':' || (SELECT count(*) FROM viewgate.versions) FROM viewgate.settings",
        )
    };
    let before = catalog_state();
    assert_eq!(before, "v1:0:2");
    let refused = |command: &str, args: &[&str]| {
        let error = catalog_command(&proxy, command, args).unwrap_err();
        assert!(
            error.contains("not an active version") || error.contains("invalid version name"),
            "{command} {args:?}: {error}"
        );
    };
    refused("cutover", &["--to", HOSTILE]);
    refused("route", &["add", "--version", HOSTILE]);
    refused("route", &["add", "--split", &format!("{HOSTILE}=10,v1=90")]);
    assert_eq!(catalog_state(), before);
    // A hostile glob is data: stored and listed exactly, never executed.
    catalog_command(
        &proxy,
        "route",
        &["add", "--version", "v2", "--match-application", HOSTILE],
    )
    .unwrap();
    assert_eq!(
        proxy.admin("SELECT match_application FROM viewgate.routing_rules"),
        HOSTILE
    );
    assert!(canary_exists(&proxy));
    assert_eq!(
        logged_statements_with(&proxy, "DROP TABLE canary"),
        Vec::<String>::new()
    );
}

/// The SQL block docs/operations.md recommends for the application's role, as written there.
fn recommended_grants() -> String {
    let doc = std::fs::read_to_string("docs/operations.md").unwrap();
    let (_, after) = doc
        .split_once("<!-- tests/security.rs runs this block -->\n```sql\n")
        .expect("docs/operations.md holds the grants block");
    after.split_once("```").unwrap().0.to_owned()
}

/// A raw session of the `app` role through the proxy at `address`, at `version`.
fn app_session(address: std::net::SocketAddr, version: &str) -> std::net::TcpStream {
    let options = format!("-c viewgate.version={version}");
    raw::start_session_with(
        address,
        &[
            ("user", "app"),
            ("database", "postgres"),
            ("options", &options),
        ],
    )
    .expect("the app role logs in through the proxy")
}

#[test]
fn the_application_role_with_the_recommended_grants_cannot_touch_the_catalog() {
    let proxy = logging_versioned_proxy();
    proxy.admin(&recommended_grants());
    let app_session = |version: &str| app_session(proxy.address, version);
    // The application works at both versions, reads and writes.
    for version in ["v1", "v2"] {
        let mut session = app_session(version);
        for sql in [
            "INSERT INTO model_metadata (model_name, model_version) VALUES ('m', '1')",
            "UPDATE model_metadata SET model_version = '2' WHERE model_name = 'm'",
            "SELECT count(*) FROM model_metadata",
            "DELETE FROM model_metadata WHERE model_name = 'm'",
        ] {
            let answer = raw::simple_query(&mut session, sql);
            let error = answer.iter().find(|(tag, _)| *tag == b'E');
            assert!(
                error.is_none(),
                "{version}: {sql}: {:?}",
                error.map(|(_, body)| raw::parse_error(body))
            );
        }
    }
    // The catalog is closed to it: reading, writing and creating objects all fail with 42501.
    let mut session = app_session("v1");
    for sql in [
        "SELECT * FROM viewgate.settings",
        "UPDATE viewgate.settings SET default_version = 'v2'",
        "INSERT INTO viewgate.routing_rules (position, assign) VALUES (1, '{\"version\": \"v2\"}')",
        "DELETE FROM viewgate.versions",
        "TRUNCATE viewgate.apply_history",
        "CREATE TABLE viewgate.planted (x int)",
        "CREATE FUNCTION viewgate.planted() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "ALTER TABLE viewgate.settings ADD COLUMN planted int",
        "DROP TABLE viewgate.proxies",
    ] {
        let answer = raw::simple_query(&mut session, sql);
        let error = answer
            .iter()
            .find(|(tag, _)| *tag == b'E')
            .map(|(_, body)| raw::parse_error(body))
            .unwrap_or_else(|| panic!("the app role ran {sql}"));
        assert_eq!(error.code, "42501", "{sql}: {error:?}");
    }
    assert_eq!(
        proxy.admin(
            "SELECT default_version || ':' || (SELECT count(*) FROM viewgate.routing_rules) || ':' || (SELECT count(*) FROM viewgate.versions) FROM viewgate.settings"
        ),
        "v1:0:2"
    );
}

/// The first ErrorResponse among `messages`, if any.
fn error_of(messages: &[(u8, Vec<u8>)]) -> Option<raw::ErrorReport> {
    messages
        .iter()
        .find(|(tag, _)| *tag == b'E')
        .map(|(_, body)| raw::parse_error(body))
}

/// Nineteenth red-team pass (T1): a v1 client attached v2's write function to a temporary
/// table of its own and read and wrote the base table's hidden columns through it. The
/// function is not executable by PUBLIC, so attaching it fails; its view's own trigger still
/// fires for a role granted the view; and a role that may attach it (its owner) finds that
/// it refuses to run on anything but its view.
#[test]
fn a_version_s_write_function_runs_only_as_its_view_s_trigger() {
    let proxy = common::versions::versioned_proxy();
    proxy.admin(&recommended_grants());
    proxy.admin(
        "INSERT INTO model_metadata (model_name, model_version, model_type, schema_version) \
         VALUES ('bert', '1', 'SECRET_TYPE', 777)",
    );
    let app_session = |version: &str| app_session(proxy.address, version);
    const TEMP_TABLE: &str = "CREATE TEMP TABLE t (id bigint, model_name text, \
        model_version text, model_type text, hyperparameters jsonb, created_at timestamptz, \
        schema_version int)";
    const ATTACH: &str = "CREATE TRIGGER t_tr BEFORE UPDATE ON t FOR EACH ROW \
        EXECUTE FUNCTION public.model_metadata_v2_write()";

    let mut v1 = app_session("v1");
    assert!(error_of(&raw::simple_query(&mut v1, TEMP_TABLE)).is_none());
    let error = error_of(&raw::simple_query(&mut v1, ATTACH))
        .expect("the app role attached the v2 write function to its own table");
    assert_eq!(error.code, "42501", "{error:?}");
    assert!(
        error.message.contains("permission denied for function"),
        "{error:?}"
    );

    // The v2 view still reads and writes for the app role, through its trigger.
    let mut v2 = app_session("v2");
    for sql in [
        "INSERT INTO model_metadata (model_name, model_version, model_type) \
         VALUES ('gpt', '1', 'transformer')",
        "UPDATE model_metadata SET model_type = 'cnn', model_version = '2' \
         WHERE model_name = 'gpt'",
        "DELETE FROM model_metadata WHERE model_name = 'nobody'",
    ] {
        let answer = raw::simple_query(&mut v2, sql);
        assert!(
            error_of(&answer).is_none(),
            "{sql}: {:?}",
            error_of(&answer)
        );
    }
    let answer = raw::simple_query(
        &mut v2,
        "SELECT model_type || '/' || model_version FROM model_metadata WHERE model_name = 'gpt'",
    );
    assert_eq!(raw::first_column(&answer), ["cnn/2"]);

    // The owner may attach it; the function then refuses to run on the other relation, and
    // the base row keeps its hidden values.
    let reuse = proxy.cluster.psql(
        "postgres",
        &format!(
            "BEGIN; {TEMP_TABLE}; {ATTACH}; \
             INSERT INTO t (id) SELECT id FROM model_metadata WHERE model_name = 'bert'; \
             UPDATE t SET schema_version = 1 RETURNING model_type; COMMIT"
        ),
    );
    let error = reuse
        .expect_err("the write function ran on a temporary table")
        .to_string();
    assert!(
        error.contains("runs only as that view's trigger"),
        "{error}"
    );
    assert_eq!(
        proxy.admin("SELECT model_type || '/' || schema_version FROM model_metadata WHERE model_name = 'bert'"),
        "SECRET_TYPE/777"
    );
}
