//! Migrations with the clients going through viewgate: the seed example evolves from a table
//! without `model_type` to one with it (`migrate start`, then `complete`) while v1 and v2
//! clients keep writing; contract is refused while a proxy's heartbeat shows v1 sessions; and
//! a session the proxy routes by default tells Postgres its version, so the sync triggers
//! treat its writes as the version it runs at — and keeps it while it holds statements
//! prepared at it.

use crate::common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{ProxyProcess, run_ok, viewgate_binary, wait_until};
use tokio_postgres::{Client, NoTls};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};

const SEED: &str = "examples/model_metadata/migrations";
/// Upper bound of the background writer's inserts (it is stopped long before).
const MAX_WRITES: usize = 20_000;

fn viewgate(cluster: &ThrowawayCluster, args: &[&str]) -> Result<String, String> {
    let output = Command::new(viewgate_binary())
        .args(args)
        .args(["--database", &cluster.url(SUPERUSER, "postgres")])
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// The admin API's token in these tests.
const TOKEN: &str = "migration-test-token";

/// A cluster with `schema` and `spec` applied, `v1` the default, and a proxy following it; the
/// proxy's admin API listens on the returned port.
fn setup(schema: &str, spec: &str) -> (ThrowawayCluster, ProxyProcess, u16) {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    cluster.psql("postgres", schema).unwrap();
    viewgate(&cluster, &["views", "apply", "--spec", spec]).expect("spec applies");
    viewgate(&cluster, &["cutover", "--to", "v1"]).expect("v1 is the default");
    let catalog = cluster.url(SUPERUSER, "postgres");
    // Port 0: the kernel picks it, so it cannot collide with the proxy's; the heartbeat says
    // where it landed.
    let proxy = ProxyProcess::start(
        &cluster,
        &[
            ("VIEWGATE_CATALOG", &catalog),
            ("VIEWGATE_ADMIN_LISTEN", "127.0.0.1:0"),
            ("VIEWGATE_ADMIN_TOKEN", TOKEN),
        ],
    );
    let mut admin = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            admin = cluster
                .psql(
                    "postgres",
                    "SELECT coalesce(max(admin_listen), '') FROM viewgate.proxies",
                )
                .unwrap_or_default();
            !admin.is_empty()
        }),
        "the proxy's heartbeat names its admin address"
    );
    let admin_port = admin
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("admin address has a port");
    (cluster, proxy, admin_port)
}

/// [`setup`] with the spec given as its text, written to the returned directory (keep it
/// until the test ends).
fn setup_with_spec(
    schema: &str,
    spec: &str,
) -> (tempfile::TempDir, ThrowawayCluster, ProxyProcess, u16) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("viewgate.toml");
    std::fs::write(&file, spec).unwrap();
    let (cluster, proxy, admin_port) = setup(schema, &file.display().to_string());
    (dir, cluster, proxy, admin_port)
}

/// A client through the proxy at the default version, or declaring `version` (retried until
/// the proxy has learned it from the catalog).
async fn client(proxy: &ProxyProcess, version: Option<&str>) -> Client {
    let mut url = format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", proxy.port);
    if let Some(version) = version {
        url.push_str(&format!("?options=-c%20viewgate.version%3D{version}"));
    }
    let mut last_error = None;
    for _ in 0..100 {
        match tokio_postgres::connect(&url, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                return client;
            }
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect at {version:?}: {last_error:?}");
}

async fn text(client: &Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error:?}"))
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).unwrap_or("<null>").to_owned())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_evolves_while_v1_and_v2_clients_write() {
    let schema = std::fs::read_to_string(format!("{SEED}/schema.sql")).unwrap();
    let (cluster, proxy, admin_port) = setup(&schema, &format!("{SEED}/viewgate.toml"));
    cluster
        .psql("postgres", "INSERT INTO model_metadata (model_name, model_version) SELECT 'seed-' || n, '1' FROM generate_series(1, 500) n")
        .unwrap();

    // A v1 application keeps inserting through the proxy for the whole migration.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let v1_writer = {
        let v1 = client(&proxy, None).await;
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        tokio::spawn(async move {
            // Bounded: the test stops it long before, and the first failure ends it.
            for _ in 0..MAX_WRITES {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                if let Err(error) = v1
                    .execute("INSERT INTO model_metadata (model_name, model_version) VALUES ('writer', '1')", &[])
                    .await
                {
                    return Some(format!("{error:?}"));
                }
                acknowledged.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            None
        })
    };
    let plan = viewgate(
        &cluster,
        &["migrate", "plan", &format!("{SEED}/0002_model_type.toml")],
    )
    .expect("plans");
    assert!(plan.contains("ADD COLUMN \"model_type\" text"), "{plan}");
    let started = tokio::task::spawn_blocking({
        let url = cluster.url(SUPERUSER, "postgres");
        move || {
            run_ok(Command::new(viewgate_binary()).args([
                "migrate",
                "start",
                &format!("{SEED}/0002_model_type.toml"),
                "--database",
                &url,
            ]))
        }
    })
    .await
    .unwrap();
    assert!(started.contains("v2 is live"), "{started}");

    let v2 = client(&proxy, Some("v2")).await;
    assert!(
        text(
            &v2,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'model_metadata'"
        )
        .await
        .contains(&"model_type".to_owned()),
        "v2's catalog substitutes, made as it went live, show its column"
    );
    assert_eq!(
        text(
            &v2,
            "SELECT string_agg(c.column_name || ':' || c.is_nullable || ':' || a.attnotnull, ',' ORDER BY c.ordinal_position)
               FROM information_schema.columns c
               JOIN pg_attribute a ON a.attrelid = 'model_metadata'::regclass AND a.attname = c.column_name
              WHERE c.table_name = 'model_metadata' AND c.column_name IN ('model_type', 'schema_version', 'model_name')"
        )
        .await,
        ["model_name:NO:true,model_type:NO:true,schema_version:NO:true"],
        "v2's new NOT NULL columns read as NOT NULL while their validated checks stand in"
    );
    text(&v2, "INSERT INTO model_metadata (model_name, model_version, model_type) VALUES ('bert', '2', 'transformer')").await;
    assert_eq!(
        text(
            &v2,
            "SELECT model_type, schema_version FROM model_metadata WHERE model_name = 'seed-7'"
        )
        .await,
        ["neural_network|1"],
        "existing rows backfilled"
    );
    assert_eq!(
        text(
            &v2,
            "SELECT DISTINCT model_type FROM model_metadata WHERE model_name = 'writer'"
        )
        .await,
        ["neural_network"],
        "v1's writes during and after the migration got `up`"
    );
    let v1 = client(&proxy, Some("v1")).await;
    assert_eq!(
        text(
            &v1,
            "SELECT model_version FROM model_metadata WHERE model_name = 'bert'"
        )
        .await,
        ["2"]
    );

    // The proxy's /metrics shows the migration and its backfill (read with the heartbeat).
    let live = "viewgate_migration_live{version=\"v2\",from=\"v1\",phase=\"live\"} 1";
    let metrics = (0..50)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            common::http::get(admin_port, "/metrics", Some(TOKEN)).1
        })
        .find(|metrics| metrics.contains(live))
        .expect("/metrics shows the live migration");
    let backfilled = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "viewgate_backfill_rows{version=\"v2\",table=\"public.model_metadata\"} ",
            )
        })
        .and_then(|value| value.parse::<u64>().ok())
        .expect("backfill rows in /metrics");
    assert!(backfilled >= 500, "{metrics}");
    assert!(
        metrics.contains("# TYPE viewgate_backfill_rows_per_second gauge")
            && !metrics.contains("viewgate_backfill_rows_per_second{"),
        "a finished backfill shows no pace: {metrics}"
    );

    // The proxy's heartbeat shows v1 sessions: contract is refused, naming the proxy.
    viewgate(&cluster, &["cutover", "--to", "v2"]).unwrap();
    let mut refused = String::new();
    for _ in 0..50 {
        match viewgate(&cluster, &["migrate", "complete"]) {
            Err(message) if message.contains("live session") => {
                refused = message;
                break;
            }
            Err(message) => {
                refused = message;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(out) => panic!("complete ran while v1 sessions were live: {out}"),
        }
    }
    assert!(refused.contains("at v1"), "{refused}");

    stop.store(true, Ordering::Relaxed);
    let failure = v1_writer.await.unwrap();
    assert_eq!(failure, None, "a v1 write failed");
    drop(v1);
    // A proxy that stopped reporting a minute ago with v1 sessions may only be cut off from
    // the catalog: it still counts. Ten minutes after its last beat it is taken for gone.
    cluster
        .psql(
            "postgres",
            "INSERT INTO viewgate.proxies (proxy_id, hostname, pid, listen, build, started_at, last_seen, sessions)
             VALUES ('silent:6432', 'silent', 1, '10.0.0.9:6432', 'old', now() - interval '1 hour', now() - interval '1 minute', '{\"v1\": 3}')",
        )
        .unwrap();
    let refused = viewgate(&cluster, &["migrate", "complete"]).unwrap_err();
    assert!(
        refused.contains("proxy silent:6432 (10.0.0.9:6432) has not reported for")
            && refused.contains("3 live session(s) at v1"),
        "{refused}"
    );
    // `views drop` is refused for the same sessions, and for a version a live migration
    // starts from (the thirty-first red-team pass retired one under a live session).
    let dropped = viewgate(&cluster, &["views", "drop", "--version", "v1"]).unwrap_err();
    assert!(
        dropped.contains("3 live session(s) at v1")
            && dropped.contains("the migration from v1 to v2 is live"),
        "{dropped}"
    );
    cluster
        .psql(
            "postgres",
            "UPDATE viewgate.proxies SET last_seen = now() - interval '11 minutes' WHERE proxy_id = 'silent:6432'",
        )
        .unwrap();
    let mut completed = Err(String::new());
    for _ in 0..50 {
        completed = viewgate(&cluster, &["migrate", "complete"]);
        match &completed {
            Err(message) if message.contains("live session") => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            _ => break,
        }
    }
    let completed = completed.expect("completes once v1's sessions are gone");
    assert!(completed.contains("v1 is retired"), "{completed}");
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "SELECT count(*) FROM model_metadata WHERE model_name = 'writer'"
            )
            .unwrap(),
        acknowledged.load(Ordering::Relaxed).to_string(),
        "every acknowledged write is there"
    );
    assert_eq!(
        cluster.psql("postgres", "SELECT string_agg(attname || ':' || attnotnull, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'model_metadata'::regclass AND attname IN ('model_type', 'schema_version')").unwrap(),
        "model_type:true,schema_version:true"
    );
    assert_eq!(
        text(
            &v2,
            "SELECT count(*) FROM model_metadata WHERE model_type = 'transformer'"
        )
        .await,
        ["1"]
    );
}

async fn wait_until_async<F: std::future::Future<Output = bool>>(
    mut condition: impl FnMut() -> F,
) -> bool {
    for _ in 0..100 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

const MODELS: &str =
    "CREATE TABLE models (id bigserial PRIMARY KEY, name text NOT NULL, size integer NOT NULL);
INSERT INTO models (name, size) VALUES ('a', 1), ('b', 2);";
const MODELS_SPEC: &str = r#"
[[tables]]
name = "models"
key = ["id"]
[[versions]]
name = "v1"
[[versions.tables]]
base = "models"
columns = ["id", "name", "size"]
"#;
const RESCALE: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "bigint"
up = "size::bigint * 1000"
down = "(size / 1000)::integer"
"#;

/// The models table under `MODELS_SPEC` with `RESCALE` started: v1 (the default) and v2
/// live side by side. The directory holds the files; keep it until the test ends. Also
/// returns the proxy's admin port.
fn start_rescale() -> (tempfile::TempDir, ThrowawayCluster, ProxyProcess, u16) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spec.toml"), MODELS_SPEC).unwrap();
    std::fs::write(dir.path().join("0002.toml"), RESCALE).unwrap();
    let (cluster, proxy, admin_port) =
        setup(MODELS, dir.path().join("spec.toml").to_str().unwrap());
    viewgate(
        &cluster,
        &[
            "migrate",
            "start",
            dir.path().join("0002.toml").to_str().unwrap(),
        ],
    )
    .expect("starts");
    (dir, cluster, proxy, admin_port)
}

/// Cuts the default over to v2 and waits until the proxy opens new default sessions at it.
async fn cut_over_to_v2(cluster: &ThrowawayCluster, proxy: &ProxyProcess) {
    viewgate(cluster, &["cutover", "--to", "v2"]).expect("cutover");
    let fresh = client(proxy, None).await;
    assert!(
        wait_until_async(|| async { text(&fresh, "SHOW viewgate.version").await == ["v2"] }).await,
        "a new default session is at v2"
    );
}

/// v2 of the seed calls `model_metadata` `ml_models`.
const RENAME_TO_ML_MODELS: &str = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"rename_table\"\nfrom = \"model_metadata\"\nto = \"ml_models\"\n";

/// `migrate start` of a migration file holding `text`.
fn start_migration(cluster: &ThrowawayCluster, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("migration.toml");
    std::fs::write(&file, text).unwrap();
    viewgate(cluster, &["migrate", "start", &file.display().to_string()]).expect("starts");
}

/// `migrate complete`, again while the proxies' heartbeats have not yet caught up with the
/// cutover (within seconds).
async fn complete_once_the_heartbeats_allow(cluster: &ThrowawayCluster) {
    let mut completed = Err(String::new());
    for _ in 0..50 {
        completed = viewgate(cluster, &["migrate", "complete"]);
        match &completed {
            Err(message) if message.contains("refused") => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            _ => break,
        }
    }
    completed.expect("completes once the proxies no longer serve v1");
}

/// A default session that only binds what it prepared (pgx's and lib/pq's statement caches:
/// Bind and Execute, never a Parse or a Query) keeps its version across a cutover while the
/// migration is live, and is counted as `held`, as a session that parses is. It was counted
/// under `default` at the old version, so an operator waiting for `migrate complete` could
/// not tell why it stayed (the Rails and Go walk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_only_binds_is_counted_as_held() {
    let (_dir, cluster, proxy, _) = start_rescale();
    let session = client(&proxy, None).await;
    assert!(
        wait_until_async(|| async { text(&session, "SHOW viewgate.version").await == ["v1"] })
            .await
    );
    let insert_at_v1 = session
        .prepare("INSERT INTO models (name, size) VALUES ($1, $2)")
        .await
        .unwrap();
    cut_over_to_v2(&cluster, &proxy).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut status = String::new();
    for bound in 0.. {
        session
            .execute(&insert_at_v1, &[&format!("bound {bound}"), &1i32])
            .await
            .unwrap();
        status = viewgate(&cluster, &["status", "--json"]).expect("status");
        if status.contains("\"held\"") || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        status.contains("\"held\""),
        "the heartbeat shows why the session is at v1: {status}"
    );
}

/// Live sessions per version, as `viewgate status --json` sums the heartbeats.
fn sessions_by_version(cluster: &ThrowawayCluster) -> serde_json::Value {
    let status = viewgate(cluster, &["status", "--json"]).expect("status");
    serde_json::from_str::<serde_json::Value>(&status).unwrap()["sessions"].clone()
}

/// A session that stands quiet through a cutover (a LISTEN connection waiting for
/// notifications: sqlx's `PgListener`, job queues) is counted where its next statement will
/// run, so `migrate complete` is not refused for it; it was counted at v1 until it sent
/// another statement, so the contract waited for the application to restart (the Rust walk).
/// One idle inside a transaction holds v1 until the transaction ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_session_follows_a_cutover_and_does_not_hold_back_the_contract() {
    use futures_util::StreamExt;

    let (_dir, cluster, proxy, _) = start_rescale();
    let url = format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", proxy.port);
    let (listener, mut connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(notification) = message {
                let _ = heard_tx.send(notification.payload().to_owned());
            }
        }
    });
    assert_eq!(text(&listener, "SHOW viewgate.version").await, ["v1"]);
    listener.batch_execute("LISTEN jobs").await.unwrap();
    let in_block = client(&proxy, None).await;
    in_block
        .batch_execute("BEGIN; SELECT count(*) FROM models")
        .await
        .unwrap();

    viewgate(&cluster, &["cutover", "--to", "v2"]).expect("cutover");
    // The listener sent nothing since; it is counted at v2, the open transaction at v1.
    let mut sessions = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            sessions = sessions_by_version(&cluster);
            sessions == serde_json::json!({"v1": 1, "v2": 1})
        }),
        "{sessions}"
    );
    let refused = viewgate(&cluster, &["migrate", "complete"]).unwrap_err();
    assert!(refused.contains("1 live session(s) at v1"), "{refused}");

    // Its transaction over, the other session follows too, and the contract goes ahead
    // with both still connected.
    in_block.batch_execute("COMMIT").await.unwrap();
    complete_once_the_heartbeats_allow(&cluster).await;
    let notifier = client(&proxy, None).await;
    notifier.batch_execute("NOTIFY jobs, 'done'").await.unwrap();
    let payload = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await;
    assert_eq!(payload.ok().flatten().as_deref(), Some("done"));
    assert_eq!(text(&listener, "SHOW viewgate.version").await, ["v2"]);
    assert_eq!(text(&in_block, "SELECT count(*) FROM models").await, ["2"]);
}

/// A connection that declared a version and has sent nothing since its startup (a pool's
/// spare connection: asyncpg's pool reuses its most recent one, so the others stay silent)
/// is counted at that version from its start. It was counted at none until the next reload of
/// the routing state, so a contract after the cutover retired v1 under it, and its first
/// statement failed with 55000 (the async Python walk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_declared_a_version_and_sent_nothing_holds_it() {
    let (_dir, cluster, proxy, _) = start_rescale();
    cut_over_to_v2(&cluster, &proxy).await;
    let declared = client(&proxy, Some("v1")).await;
    let routed = client(&proxy, None).await;
    let mut sessions = serde_json::Value::Null;
    // The cutover's own probe session may still be counted at v2 for a moment.
    assert!(
        wait_until(Duration::from_secs(10), || {
            sessions = sessions_by_version(&cluster);
            sessions["v1"] == 1 && sessions["v2"].as_u64().is_some_and(|n| n >= 1)
        }),
        "{sessions}"
    );
    let refused = viewgate(&cluster, &["migrate", "complete"]).unwrap_err();
    assert!(refused.contains("1 live session(s) at v1"), "{refused}");
    assert_eq!(text(&declared, "SHOW viewgate.version").await, ["v1"]);
    assert_eq!(text(&routed, "SHOW viewgate.version").await, ["v2"]);

    drop(declared);
    complete_once_the_heartbeats_allow(&cluster).await;
    assert_eq!(text(&routed, "SELECT count(*) FROM models").await, ["2"]);
}

/// A refused contract names the sessions that hold the old version back, as an operator finds
/// them: the application, the client's address, why it is at its version, its transaction
/// status and the Postgres backend serving it (to look up in `pg_stat_activity`). So do
/// `migrate status` and `viewgate status`, from the heartbeats; the admin API's `/sessions`
/// lists every session of its proxy. Before, the refusal said only "1 live session(s) at v1".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_contract_names_the_sessions_that_hold_the_old_version() {
    let (_dir, cluster, proxy, admin_port) = start_rescale();
    let url = |application: &str| {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/postgres?application_name={application}",
            proxy.port
        )
    };
    let (billing, connection) = tokio_postgres::connect(&url("billing-worker"), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let (web, connection) = tokio_postgres::connect(&url("web"), NoTls).await.unwrap();
    tokio::spawn(connection);
    let backend_pid = text(&billing, "SELECT pg_backend_pid()").await[0].clone();
    billing
        .batch_execute("BEGIN; SELECT count(*) FROM models")
        .await
        .unwrap();
    assert_eq!(text(&web, "SHOW viewgate.version").await, ["v1"]);
    viewgate(&cluster, &["cutover", "--to", "v2"]).expect("cutover");

    let expected = format!(
        "1 live session(s) at v1: application \"billing-worker\" (user {SUPERUSER}, from 127.0.0.1:"
    );
    let held = format!(
        "placed by the default version, in transaction, Postgres backend pid {backend_pid})"
    );
    let mut refused = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            refused = viewgate(&cluster, &["migrate", "complete"]).unwrap_err();
            refused.contains(&expected) && refused.contains(&held)
        }),
        "{refused}"
    );
    assert!(!refused.contains("\"web\""), "{refused}");
    assert!(
        refused.contains("a session in transaction moves on when its transaction ends"),
        "how to free them: {refused}"
    );

    let status = viewgate(&cluster, &["migrate", "status", "--json"]).expect("status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let elsewhere = status["sessions_off_default"].as_array().unwrap();
    assert_eq!(elsewhere.len(), 1, "{status}");
    assert_eq!(elsewhere[0]["application_name"], "billing-worker");
    assert_eq!(elsewhere[0]["version"], "v1");
    assert!(
        elsewhere[0]["proxy_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    let overview = viewgate(&cluster, &["status"]).expect("status");
    assert!(
        overview.contains("sessions at a version other than the default")
            && overview.contains("v1 via ")
            && overview.contains("application \"billing-worker\""),
        "{overview}"
    );

    let (code, body) = common::http::get(admin_port, "/sessions", Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let mut names: Vec<&str> = all
        .iter()
        .map(|session| session["application_name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["billing-worker", "web"], "{body}");
    let (_, body) = common::http::get(admin_port, "/sessions?version=v1", Some(TOKEN));
    let at_v1: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(at_v1.len(), 1, "{body}");
    assert_eq!(at_v1[0]["transaction"], "in transaction");
    assert_eq!(at_v1[0]["backend_pid"].to_string(), backend_pid);
    assert_eq!(at_v1[0]["user"], SUPERUSER);
    let (code, _) = common::http::get(admin_port, "/sessions", None);
    assert_eq!(
        code, 401,
        "the session list names clients: it needs the token"
    );

    billing.batch_execute("COMMIT").await.unwrap();
    complete_once_the_heartbeats_allow(&cluster).await;
}

/// The SQL an ORM writes for a schema change (here as Django's `sqlmigrate` prints it), turned
/// into a migration file by `viewgate migrate convert`, migrates the table with both
/// versions' clients working: the way from the DDL the proxy refuses at a version to a
/// migration. Sent through the proxy at v1, the same DDL is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orms_sql_converted_to_a_migration_serves_both_versions() {
    let (dir, cluster, proxy, _) = setup_with_spec(MODELS, MODELS_SPEC);
    let sql = r#"BEGIN;
--
-- Add field label to model, rename name to title
--
ALTER TABLE "models" ADD COLUMN "label" varchar(40) DEFAULT 'none' NOT NULL;
ALTER TABLE "models" ALTER COLUMN "label" DROP DEFAULT;
ALTER TABLE "models" RENAME COLUMN "name" TO "title";
CREATE INDEX "models_label_idx" ON "models" ("label");
COMMIT;
"#;
    let v1 = client(&proxy, Some("v1")).await;
    let refused = v1
        .batch_execute(sql.trim_start_matches("BEGIN;"))
        .await
        .expect_err("structural DDL is refused at a version");
    assert!(
        refused
            .as_db_error()
            .is_some_and(|error| error.message().contains("viewgate migrate")),
        "{refused:?}"
    );
    v1.batch_execute("ROLLBACK").await.unwrap();

    let sql_file = dir.path().join("0002_label.sql");
    std::fs::write(&sql_file, sql).unwrap();
    let converted = Command::new(viewgate_binary())
        .args(["migrate", "convert", sql_file.to_str().unwrap()])
        .args(["--version", "v2", "--from", "v1"])
        .output()
        .unwrap();
    let notes = String::from_utf8_lossy(&converted.stderr);
    assert!(converted.status.success() && notes.is_empty(), "{notes}");
    let file = dir.path().join("0002_label.toml");
    std::fs::write(&file, &converted.stdout).unwrap();
    viewgate(&cluster, &["migrate", "start", file.to_str().unwrap()]).expect("starts");

    let v2 = client(&proxy, Some("v2")).await;
    v2.batch_execute("INSERT INTO models (title, size, label) VALUES ('c', 3, 'new')")
        .await
        .unwrap();
    v1.batch_execute("INSERT INTO models (name, size) VALUES ('d', 4)")
        .await
        .unwrap();
    assert_eq!(
        text(&v2, "SELECT title || ':' || label FROM models ORDER BY id").await,
        ["a:none", "b:none", "c:new", "d:none"]
    );
    assert_eq!(
        text(&v1, "SELECT name FROM models ORDER BY id").await,
        ["a", "b", "c", "d"]
    );
    drop(v1);
    cut_over_to_v2(&cluster, &proxy).await;
    complete_once_the_heartbeats_allow(&cluster).await;
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'models'::regclass AND attnum > 0 AND NOT attisdropped",
            )
            .unwrap(),
        "id,title,size,label"
    );
    assert!(
        cluster
            .psql(
                "postgres",
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'models_label_idx'"
            )
            .unwrap()
            .contains("(label)")
    );
}

/// At v2, while a migration widens a unique column, a duplicate violates the older version's
/// index on its copy of the column first (the older index is checked first): its key is not
/// shown at v2, and the detail says why without claiming v2 has no such column (the Node
/// walk read "columns this version does not see under these names" of v2's own `name`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_on_a_widened_unique_column_is_told_as_the_older_versions_key() {
    let schema = "CREATE TABLE models (id bigserial PRIMARY KEY, name varchar(20) NOT NULL UNIQUE, size integer NOT NULL);
INSERT INTO models (name, size) VALUES ('a', 1), ('b', 2);";
    let (dir, cluster, proxy, _) = setup_with_spec(schema, MODELS_SPEC);
    let file = dir.path().join("0002_widen.toml");
    std::fs::write(
        &file,
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"alter_column\"\ntable = \"models\"\ncolumn = \"name\"\ntype = \"varchar(40)\"\n",
    )
    .unwrap();
    viewgate(&cluster, &["migrate", "start", file.to_str().unwrap()]).expect("starts");
    let v2 = client(&proxy, Some("v2")).await;
    let duplicate = v2
        .batch_execute("INSERT INTO models (name, size) VALUES ('a', 3)")
        .await
        .expect_err("a duplicate name");
    let error = duplicate.as_db_error().expect("from Postgres");
    assert_eq!(
        error.code(),
        &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
    );
    let detail = error.detail().unwrap_or_default();
    assert!(
        detail.contains("an older version's copy of one it has") && !detail.contains("(a)"),
        "{detail}"
    );
}

/// A named Parse that Postgres refused made no statement, and holds nothing: drivers do not
/// close a statement whose Parse failed (the PHP, Perl and Ruby walk's PDO, DBD::Pg and Sequel
/// sessions were each held at their version by one after a 42703, and `migrate complete` was
/// refused, until they reconnected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parse_postgres_refused_holds_nothing() {
    let (_dir, cluster, proxy, _) = start_rescale();
    let session = client(&proxy, None).await;
    assert_eq!(text(&session, "SHOW viewgate.version").await, ["v1"]);
    let refused = session
        .prepare("SELECT no_such_column FROM models")
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN)
    );
    let kept = session.prepare("SELECT name FROM models").await.unwrap();
    cut_over_to_v2(&cluster, &proxy).await;
    // Held by the statement that exists, and by nothing once it is closed.
    assert_eq!(text(&session, "SHOW viewgate.version").await, ["v1"]);
    drop(kept);
    assert!(
        wait_until_async(|| async { text(&session, "SHOW viewgate.version").await == ["v2"] })
            .await,
        "the refused Parse holds nothing"
    );
    complete_once_the_heartbeats_allow(&cluster).await;
}

/// So does a SQL `PREPARE` Postgres refused (42703), or skipped after an earlier error in its
/// query string; one made beside them holds until `DEALLOCATE`, and a second `PREPARE` of its
/// name, refused (42P05), leaves its hold. Before, a failed SQL `PREPARE` held the session
/// until `DEALLOCATE ALL` or `DISCARD ALL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_prepare_postgres_refused_holds_nothing() {
    let (_dir, cluster, proxy, _) = start_rescale();
    let session = client(&proxy, None).await;
    assert_eq!(text(&session, "SHOW viewgate.version").await, ["v1"]);
    let refused = session
        .batch_execute("PREPARE missing AS SELECT no_such_column FROM models")
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN)
    );
    session
        .batch_execute("PREPARE kept AS SELECT name FROM models; SELECT 1/0; PREPARE skipped AS SELECT name FROM models")
        .await
        .unwrap_err();
    let duplicate = session
        .batch_execute("PREPARE kept AS SELECT size FROM models")
        .await
        .unwrap_err();
    assert_eq!(
        duplicate.code(),
        Some(&tokio_postgres::error::SqlState::DUPLICATE_PSTATEMENT)
    );
    cut_over_to_v2(&cluster, &proxy).await;
    // Held by the statement that exists, and by nothing once it is deallocated.
    assert_eq!(text(&session, "SHOW viewgate.version").await, ["v1"]);
    session.batch_execute("DEALLOCATE kept").await.unwrap();
    assert!(
        wait_until_async(|| async { text(&session, "SHOW viewgate.version").await == ["v2"] })
            .await,
        "the refused and skipped PREPAREs hold nothing"
    );
    complete_once_the_heartbeats_allow(&cluster).await;
}

/// A pool's reset on release (asyncpg's `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN
/// *; RESET ALL;`) in a session a cutover moved while the migration is live runs, with the
/// session's version told after it in the same Query: a statement prepared since, bound with
/// no tell ahead of it, still writes as the session's version, not as the startup's the reset
/// put the server back at. It was refused (0A000), and asyncpg's release raised after the
/// connection's work had committed, which an application's retry then wrote twice (the async
/// Python walk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pools_reset_in_a_session_a_cutover_moved_runs_and_keeps_its_version() {
    let (_dir, cluster, proxy, _) = start_rescale();
    let session = client(&proxy, None).await;
    assert_eq!(text(&session, "SHOW viewgate.version").await, ["v1"]);
    cut_over_to_v2(&cluster, &proxy).await;
    assert!(
        wait_until_async(|| async { text(&session, "SHOW viewgate.version").await == ["v2"] })
            .await
    );
    // An upsert is written to the base table, whose sync trigger takes the server's
    // `viewgate.version` for the writer's version.
    let upsert = session
        .prepare("INSERT INTO models (id, name, size) VALUES ($1, 'a', $2) ON CONFLICT (id) DO UPDATE SET size = EXCLUDED.size")
        .await
        .unwrap();
    let answers = session
        .simple_query("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;")
        .await
        .unwrap();
    let completions = answers
        .iter()
        .filter(|answer| {
            matches!(
                answer,
                tokio_postgres::SimpleQueryMessage::CommandComplete(_)
            )
        })
        .count();
    assert_eq!(
        completions, 4,
        "the client sees its own statements' answers only"
    );
    let id: i64 = text(&session, "SELECT id FROM models WHERE name = 'a'").await[0]
        .parse()
        .unwrap();
    session
        .simple_query("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;")
        .await
        .unwrap();
    session.execute(&upsert, &[&id, &9000i64]).await.unwrap();
    let v1 = client(&proxy, Some("v1")).await;
    assert_eq!(
        text(&v1, "SELECT size FROM models WHERE name = 'a'").await,
        ["9"],
        "written as v2, and carried down to v1"
    );
    assert_eq!(
        text(&session, "SELECT size FROM models WHERE name = 'a'").await,
        ["9000"]
    );
    assert_eq!(text(&session, "SHOW viewgate.version").await, ["v2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_session_writes_as_the_version_it_runs_at() {
    let (_dir, cluster, proxy, _) = start_rescale();

    // Opened at the default (v1) before the cutover, kept across it.
    let session = client(&proxy, None).await;
    assert!(
        wait_until_async(|| async { text(&session, "SHOW viewgate.version").await == ["v1"] })
            .await
    );
    // Prepared at v1 (Parse is rewritten when sent), executed after the cutover below.
    let prepared_at_v1 = session
        .prepare("UPDATE models SET size = $1 WHERE name = $2")
        .await
        .unwrap();
    text(&session, "UPDATE models SET size = 3 WHERE name = 'a'").await;
    let v2 = client(&proxy, Some("v2")).await;
    assert_eq!(
        text(&v2, "SELECT size FROM models WHERE name = 'a'").await,
        ["3000"],
        "a v1 write got up"
    );

    let insert_at_v1 = session
        .prepare("INSERT INTO models (name, size) VALUES ($1, $2)")
        .await
        .unwrap();
    cut_over_to_v2(&cluster, &proxy).await;
    // The session holds statements rewritten at v1: while the migration is live it keeps v1
    // (the triggers judge its writes by it), and says why.
    assert_eq!(text(&session, "SHOW viewgate.version").await, ["v1"]);
    session
        .execute(&insert_at_v1, &[&"c", &5i32])
        .await
        .unwrap();
    session
        .execute(&prepared_at_v1, &[&7i32, &"a"])
        .await
        .unwrap();
    let v1 = client(&proxy, Some("v1")).await;
    assert_eq!(
        text(
            &v2,
            "SELECT size FROM models WHERE name IN ('a', 'c') ORDER BY name"
        )
        .await,
        ["7000", "5000"],
        "the statements prepared at v1 wrote as v1: up converted both"
    );
    let error = session
        .simple_query("SET viewgate.version = v2")
        .await
        .expect_err("a held session cannot SET another version");
    assert_eq!(error.code().map(|c| c.code()), Some("55000"), "{error}");
    // DEALLOCATE would break a driver's statement cache (asyncpg then fails every cached
    // query with 26000): the message says so (the async Python walk).
    let message = error
        .as_db_error()
        .map(|db| db.message())
        .unwrap_or_default();
    assert!(
        message.contains("was made at \"v1\"")
            && message.contains("a driver's statement cache")
            && message.contains("reconnect, declaring the version at connect"),
        "{message}"
    );
    let mut status = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            status = viewgate(&cluster, &["status", "--json"]).expect("status");
            status.contains("\"held\"")
        }),
        "the heartbeat shows why the session is at v1: {status}"
    );

    // Closing them releases the session, which takes the default at its next boundary.
    drop(insert_at_v1);
    drop(prepared_at_v1);
    assert!(
        wait_until_async(|| async { text(&session, "SHOW viewgate.version").await == ["v2"] })
            .await,
        "the default session moved to v2"
    );
    // Now at v2: its write is in v2's units, and v1 must see it converted back with `down`.
    text(&session, "UPDATE models SET size = 4200 WHERE name = 'b'").await;
    assert_eq!(
        text(&v1, "SELECT size FROM models WHERE name = 'b'").await,
        ["4"],
        "down ran: the writer was v2"
    );
    assert_eq!(
        text(&v2, "SELECT size FROM models WHERE name = 'b'").await,
        ["4200"],
        "v2's own value kept"
    );
    // `DISCARD ALL` (what pools send) clears the server's setting too; the proxy tells it
    // again before the next statement, so the write is still judged a v2 write (the tenth
    // red-team pass: an empty setting counts as the oldest version). An INSERT, which the
    // triggers judge by the setting alone.
    session.batch_execute("DISCARD ALL").await.unwrap();
    text(
        &session,
        "INSERT INTO models (name, size) VALUES ('d', 6300)",
    )
    .await;
    assert_eq!(
        text(&v1, "SELECT size FROM models WHERE name = 'd'").await,
        ["6"],
        "down ran after DISCARD ALL: the writer was still v2"
    );
    // asyncpg's pool reset ends with RESET ALL after statements that keep no state: told
    // again the same way (in a session at its startup version: `session` moved since).
    v2.batch_execute(ASYNCPG_RESET)
        .await
        .expect("a reset ending its query");
    text(&v2, "INSERT INTO models (name, size) VALUES ('d2', 6300)").await;
    assert_eq!(
        text(&v1, "SELECT size FROM models WHERE name = 'd2'").await,
        ["6"],
        "down ran after asyncpg's reset: the writer was still v2"
    );
    // Where the proxy could not tell it again before the next write, a reset is refused (the
    // thirteenth red-team pass wrote as another version so): among other statements, inside
    // a block, and a statement pipelined behind an unanswered one.
    for sql in [
        "RESET ALL; INSERT INTO models (name, size) VALUES ('e', 1)",
        "BEGIN; RESET ALL",
        "BEGIN; SELECT pg_advisory_unlock_all(); RESET ALL",
    ] {
        let error = session.batch_execute(sql).await.expect_err(sql);
        assert_eq!(
            error.code().map(|c| c.code()),
            Some("0A000"),
            "{sql}: {error}"
        );
    }
    session.batch_execute("BEGIN").await.unwrap();
    let error = session
        .batch_execute("RESET ALL")
        .await
        .expect_err("in a block");
    assert!(
        format!("{error:?}").contains("inside a transaction block"),
        "{error}"
    );
    session.batch_execute("ROLLBACK").await.unwrap();
    // A version command moves the server's setting too (the thirteenth pass's verification:
    // `SET … TO DEFAULT` left it at the startup value for good): refused in a block, and, in
    // this session, which moved from v1 to v2 since it connected, refused outside one too
    // (it would put the server back at v1, where a large Bind behind it could write); a SET
    // to its own version is told again.
    session.batch_execute("BEGIN").await.unwrap();
    let error = session
        .batch_execute("SET viewgate.version TO DEFAULT")
        .await
        .expect_err("in a block");
    assert!(
        format!("{error:?}").contains("inside a transaction block"),
        "{error:?}"
    );
    session.batch_execute("ROLLBACK").await.unwrap();
    let error = session
        .batch_execute("SET viewgate.version TO DEFAULT")
        .await
        .expect_err("back to the startup version");
    assert!(
        format!("{error:?}").contains("changed since it connected"),
        "{error:?}"
    );
    // (tokio-postgres reports an error before its ReadyForQuery: a query waits for that.)
    text(&session, "SELECT 1").await;
    session
        .batch_execute("SET viewgate.version = v2")
        .await
        .unwrap();
    text(
        &session,
        "INSERT INTO models (name, size) VALUES ('g', 7300)",
    )
    .await;
    assert_eq!(
        text(&v1, "SELECT size FROM models WHERE name = 'g'").await,
        ["7"],
        "down ran after the SET: the writer was still v2"
    );
    // Prepared, a RESET ALL could run later inside a block: refused through Parse.
    let error = session
        .prepare("RESET ALL")
        .await
        .expect_err("a Parse of RESET ALL");
    assert!(
        format!("{error:?}").contains("extended protocol"),
        "{error:?}"
    );
    // tokio-postgres reports the Parse's error before the ReadyForQuery of its Sync: a query
    // of its own waits for that, so the reset below is sent with nothing in flight.
    text(&session, "SELECT 1").await;
    let (reset, insert) = tokio::join!(
        session.simple_query("DISCARD ALL"),
        session.simple_query("INSERT INTO models (name, size) VALUES ('f', 2100)")
    );
    reset.expect("a lone reset runs");
    match insert {
        Err(error) => assert!(
            format!("{error:?}").contains("behind an unanswered RESET ALL"),
            "{error}"
        ),
        // Sent after the reset's answer: the version was told again first.
        Ok(_) => assert_eq!(
            text(&v1, "SELECT size FROM models WHERE name = 'f'").await,
            ["2"],
            "down ran: the writer was v2"
        ),
    }
}

/// What asyncpg sends when a connection goes back into its pool (`Connection.reset`).
const ASYNCPG_RESET: &str = "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;";

/// An asyncpg pool at v2 while a migration is live: each connection it takes back is reset
/// with a Query ending in RESET ALL, which was refused (0A000) after the work had committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asyncpg_pool_resets_its_connections_while_a_migration_is_live() {
    let (_dir, _cluster, proxy, _) = start_rescale();
    let stdout = crate::deps::run_python(
        "pool_reset_asyncpg.py",
        &[format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
            proxy.port
        )],
    );
    crate::deps::assert_checked(
        &stdout,
        &[
            "three acquire-insert-release rounds at v2",
            "v1 reads each as written at v2 (down ran after every reset)",
        ],
    );
}

/// Found by the eighteenth red-team pass: a session moved by a cutover while it had an
/// extended batch open (a Close left without Sync) took its new version for the next Query,
/// which the proxy could not tell the server ahead of: the INSERT, rewritten for v2, was
/// judged a v1 write. The version is now picked again only at a quiet boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_not_moved_inside_an_open_batch() {
    use std::io::Write;
    let (_dir, cluster, proxy, _) = start_rescale();
    let address = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let (mut session, _) = common::raw::start_session(address, SUPERUSER);
    let version = common::raw::first_column(&common::raw::simple_query(
        &mut session,
        "SHOW viewgate.version",
    ));
    assert_eq!(version, ["v1"]);
    cut_over_to_v2(&cluster, &proxy).await;
    // A Close of no statement opens a batch and fails nothing; the Query runs inside it.
    let mut close = vec![b'S'];
    close.extend_from_slice(b"nope\0");
    let mut batch = common::raw::message(b'C', &close);
    batch.extend(common::raw::query(
        "INSERT INTO models (name, size) VALUES ('r1', 7)",
    ));
    session.write_all(&batch).unwrap();
    let mut answers = Vec::new();
    while let Some((tag, body)) = common::raw::read_message(&mut session) {
        answers.push((tag, body));
        if tag == b'Z' {
            break;
        }
    }
    let error = answers.iter().find(|(tag, _)| *tag == b'E');
    assert!(
        error.is_none(),
        "{:?}",
        error.map(|(_, body)| common::raw::parse_error(body))
    );
    session.write_all(&common::raw::message(b'S', &[])).unwrap();
    while common::raw::read_message(&mut session).is_some_and(|(tag, _)| tag != b'Z') {}
    let v2 = client(&proxy, Some("v2")).await;
    assert_eq!(
        text(&v2, "SELECT size FROM models WHERE name = 'r1'").await,
        ["7000"],
        "written at v1 and judged a v1 write: up converted it"
    );
    // At its next quiet boundary the session moves, and is told so.
    let version = common::raw::first_column(&common::raw::simple_query(
        &mut session,
        "SHOW viewgate.version",
    ));
    assert_eq!(version, ["v2"]);
}

/// Found by the nineteenth red-team pass: after an upstream switch the new backend started at
/// the version the session logged in at, and the first Bind of a statement prepared since
/// (nothing is told ahead of a Bind) was judged a write of that version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moved_to_another_upstream_keeps_the_version_it_runs_at() {
    let (_dir, cluster, proxy, admin_port) = start_rescale();
    let session = client(&proxy, None).await;
    assert_eq!(text(&session, "SHOW viewgate.version").await, ["v1"]);
    cut_over_to_v2(&cluster, &proxy).await;
    assert!(
        wait_until_async(|| async { text(&session, "SHOW viewgate.version").await == ["v2"] })
            .await,
        "the session logged in at v1 runs at v2 after the cutover"
    );
    let insert = session
        .prepare("INSERT INTO models (name, size) VALUES ($1, $2)")
        .await
        .unwrap();
    // The same server behind a new connection: every session's state is carried over.
    let switched = Command::new(viewgate_binary())
        .args(["cutover", "--upstream"])
        .arg(format!(
            "postgres://127.0.0.1:{}?sslmode=disable",
            cluster.port()
        ))
        .args(["--admin", &format!("http://127.0.0.1:{admin_port}")])
        .args(["--timeout", "10s"])
        .env("VIEWGATE_ADMIN_TOKEN", TOKEN)
        .env_remove("VIEWGATE_DATABASE")
        .output()
        .unwrap();
    assert!(
        switched.status.success(),
        "{}",
        String::from_utf8_lossy(&switched.stderr)
    );
    session.execute(&insert, &[&"s4", &5000i64]).await.unwrap();
    let v1 = client(&proxy, Some("v1")).await;
    assert_eq!(
        text(&v1, "SELECT size FROM models WHERE name = 's4'").await,
        ["5"],
        "judged a v2 write: down converted it"
    );
}

/// Found by the nineteenth red-team pass: a session was held at its version only by
/// statements the proxy had rewritten, was released by a DEALLOCATE that Postgres never ran,
/// and was not held at all by a statement naming its version's view, a WITH HOLD cursor or a
/// temporary view made at it; after a move, each wrote or read as the other version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_session_made_at_its_version_holds_it_there() {
    let (_dir, cluster, proxy, _) = start_rescale();
    let session = client(&proxy, None).await;
    assert_eq!(text(&session, "SHOW viewgate.version").await, ["v1"]);
    text(
        &session,
        "PREPARE own (text, integer) AS INSERT INTO models_v1 (name, size) VALUES ($1, $2)",
    )
    .await;
    text(
        &session,
        "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM models ORDER BY id",
    )
    .await;
    text(&session, "CREATE TEMP VIEW tv AS SELECT * FROM models_v1").await;
    // A DEALLOCATE that Postgres skips after an error releases nothing.
    session
        .simple_query("SELECT 1/0; DEALLOCATE own")
        .await
        .expect_err("division by zero");
    text(&session, "SELECT 1").await;
    cut_over_to_v2(&cluster, &proxy).await;
    assert_eq!(text(&session, "SHOW viewgate.version").await, ["v1"]);
    text(&session, "EXECUTE own('held', 3)").await;
    let v2 = client(&proxy, Some("v2")).await;
    assert_eq!(
        text(&v2, "SELECT size FROM models WHERE name = 'held'").await,
        ["3000"],
        "written as v1: up converted it"
    );
    // Each release in turn: the session moves once nothing made at v1 is left.
    for release in ["DEALLOCATE own", "CLOSE c"] {
        text(&session, release).await;
        assert_eq!(
            text(&session, "SHOW viewgate.version").await,
            ["v1"],
            "still held after {release}"
        );
    }
    text(&session, "DISCARD TEMP").await;
    assert_eq!(text(&session, "SHOW viewgate.version").await, ["v2"]);
    // A relation named like v1's view, however made, would capture what v1 sessions send.
    for capture in [
        "CREATE TEMP TABLE models_v1 (a int)",
        "CREATE TEMP VIEW x AS SELECT 1; ALTER VIEW x RENAME TO models_v1",
        "SELECT 1 AS a INTO TEMP models_v1",
    ] {
        let error = session.simple_query(capture).await.expect_err(capture);
        assert_eq!(error.code().map(|c| c.code()), Some("0A000"), "{error}");
        text(&session, "SELECT 1").await;
    }
}

/// Found by the twenty-second red-team pass: a temporary table whose default read v1's view
/// by name, and a DO block whose body followed a comment and spelled CREATE with escapes,
/// held nothing; after the move to v3 both read v1's view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_expressions_and_do_blocks_hold_the_session() {
    let (_dir, cluster, proxy, _) = start_rescale();
    let stored = client(&proxy, None).await;
    text(
        &stored,
        "CREATE TEMP TABLE d (n int, x xml DEFAULT query_to_xml('TABLE public.models_v1', true, false, ''))",
    )
    .await;
    let block = client(&proxy, None).await;
    text(
        &block,
        r"DO/**/E'BEGIN CREATE TEMP VIEW dv AS SELECT * FROM public.models_v1; END'",
    )
    .await;
    cut_over_to_v2(&cluster, &proxy).await;
    for session in [&stored, &block] {
        assert_eq!(text(session, "SHOW viewgate.version").await, ["v1"]);
    }
    // The table's default goes with it; what a DO block made cannot be followed.
    text(&stored, "DISCARD TEMP").await;
    assert_eq!(text(&stored, "SHOW viewgate.version").await, ["v2"]);
    text(&block, "DISCARD ALL").await;
    assert_eq!(text(&block, "SHOW viewgate.version").await, ["v1"]);
}

/// Found by the twenty-second red-team pass: a temporary table named like a version's view
/// before that version existed (so nothing could refuse the name) captured the session's
/// reads and writes of the managed table once it moved there. The view is written with its
/// schema, which no temporary relation shadows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relation_named_like_a_future_view_captures_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spec.toml"), MODELS_SPEC).unwrap();
    std::fs::write(dir.path().join("0002.toml"), RESCALE).unwrap();
    let (cluster, proxy, _) = setup(MODELS, dir.path().join("spec.toml").to_str().unwrap());
    let session = client(&proxy, None).await;
    text(
        &session,
        "CREATE TEMP TABLE models_v2 (id bigint, name text, size bigint); \
         INSERT INTO models_v2 VALUES (1, 'captured', 0)",
    )
    .await;
    let migration = dir.path().join("0002.toml");
    viewgate(&cluster, &["migrate", "start", migration.to_str().unwrap()]).expect("starts");
    cut_over_to_v2(&cluster, &proxy).await;
    assert_eq!(text(&session, "SHOW viewgate.version").await, ["v2"]);
    assert_eq!(
        text(&session, "SELECT name FROM models ORDER BY id").await,
        ["a", "b"]
    );
    text(
        &session,
        "INSERT INTO models (name, size) VALUES ('c', 3000)",
    )
    .await;
    let direct = cluster.psql("postgres", "SELECT name FROM models ORDER BY id");
    assert_eq!(direct.unwrap().trim(), "a\nb\nc");
}

/// The other side of a release that counts only once answered: a Close answered before an
/// error later in its batch (pgJDBC sends the Closes of evicted statements ahead of its next
/// query, which may fail) did release, and the session moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_answered_before_an_error_in_its_batch_releases() {
    use common::raw::{first_column, message, read_message, simple_query, start_session};
    use std::io::Write;
    let (_dir, cluster, proxy, _) = start_rescale();
    let address = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let (mut session, _) = start_session(address, SUPERUSER);
    let until_ready = |session: &mut std::net::TcpStream| {
        let mut tags = Vec::new();
        while let Some((tag, _)) = read_message(session) {
            tags.push(tag);
            if tag == b'Z' {
                break;
            }
        }
        tags
    };
    let parse = |name: &str, sql: &str| {
        message(
            b'P',
            &[name.as_bytes(), b"\0", sql.as_bytes(), b"\0\0\0"].concat(),
        )
    };
    let mut batch = parse("held", "INSERT INTO models (name, size) VALUES ('x', 1)");
    batch.extend(message(b'S', &[]));
    session.write_all(&batch).unwrap();
    until_ready(&mut session);
    cut_over_to_v2(&cluster, &proxy).await;
    let version = |session: &mut std::net::TcpStream| {
        first_column(&simple_query(session, "SHOW viewgate.version"))
    };
    assert_eq!(version(&mut session), ["v1"], "held by its statement");
    let mut batch = message(b'C', b"Sheld\0");
    batch.extend(parse("", "SELECT 1/0"));
    batch.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
    batch.extend(message(b'E', b"\0\0\0\0\0"));
    batch.extend(message(b'S', &[]));
    session.write_all(&batch).unwrap();
    let tags = until_ready(&mut session);
    assert!(tags.contains(&b'3') && tags.contains(&b'E'), "{tags:?}");
    assert_eq!(version(&mut session), ["v2"], "the Close was answered");
}

/// The backfill's pacing signal, end to end: the proxy counts requests per latency bucket, the
/// heartbeat publishes the counts, the backfill reads them back as deltas, and a tail slower
/// than the p99 before the backfill makes the pacer shrink its batches and pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_hears_the_applications_latency_through_the_heartbeats() {
    use viewgate::control::migrate::pace::BatchPacer;
    use viewgate::control::migrate::writers::{Counts, WriterLatency};
    use viewgate::model::latency::{LATENCY_SLOTS, bucket_bound};

    const FAST: usize = 400;
    const SLOW_EVERY: usize = 8;
    /// Slow enough that the fast reads' p99 stays under half of it on a loaded CI machine
    /// (at 30 ms it did not, once, under a parallel test run).
    const SLOW_SECONDS: f64 = 0.1;
    /// A few heartbeats, generously.
    const BEAT_WAIT: Duration = Duration::from_secs(15);
    let schema = std::fs::read_to_string(format!("{SEED}/schema.sql")).unwrap();
    let (cluster, proxy, _) = setup(&schema, &format!("{SEED}/viewgate.toml"));
    let app = client(&proxy, None).await;
    let (catalog, connection) = tokio_postgres::connect(&cluster.url(SUPERUSER, "postgres"), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let total = |counts: &Counts| counts[LATENCY_SLOTS - 1];

    for _ in 0..FAST {
        text(&app, "SELECT count(*) FROM model_metadata").await;
    }
    let mut writers = WriterLatency::default();
    let deadline = std::time::Instant::now() + BEAT_WAIT;
    while writers.read(&catalog).await.is_none() || total(&writers.lifetime()) < FAST as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the heartbeat publishes the proxy's requests per latency bucket"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut pacer = BatchPacer::new(Duration::ZERO, true, 1000);
    pacer.protect_tail(&writers.lifetime());
    let bucket = pacer
        .protected_bucket()
        .expect("enough requests to guard their p99");
    assert!(
        bucket_bound(bucket) < SLOW_SECONDS / 2.0,
        "fast reads have their p99 well below the slow ones: {}",
        bucket_bound(bucket)
    );

    // An eighth of the next requests take 100 ms: the tail has left its bucket.
    for request in 0..FAST {
        let sql = if request % SLOW_EVERY == 0 {
            format!("SELECT pg_sleep({SLOW_SECONDS})")
        } else {
            "SELECT count(*) FROM model_metadata".to_owned()
        };
        text(&app, &sql).await;
    }
    let mut since: Counts = [0; LATENCY_SLOTS];
    let deadline = std::time::Instant::now() + BEAT_WAIT;
    while total(&since) < FAST as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the next beats carry the new requests"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(delta) = writers.read(&catalog).await {
            for (slot, count) in since.iter_mut().zip(delta) {
                *slot += count;
            }
        }
    }
    let slower = total(&since) - since[bucket];
    assert!(
        slower >= (FAST / SLOW_EVERY) as u64,
        "every slow request is above the old p99's bucket: {slower} of {since:?}"
    );
    pacer.application_latency(&since);
    assert!(pacer.pause_ratio() > 0.0, "a broken tail asks for a pause");
    assert!(pacer.batch_rows() < 1000, "and for shorter batches");
}

/// Found by the thirty-first red-team pass: a MERGE is written to the base table with the
/// version's physical column names, which `migrate complete` may rename under the same
/// version (RESCALE's `size` at v2 lives in a column of its own until then). A MERGE the
/// client prepared (a named Parse) before the complete failed after it, naming the renamed
/// column; it is prepared again at the session's next quiet moment and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_merge_runs_after_the_complete_renames_its_columns() {
    let (_dir, cluster, proxy, _) = start_rescale();
    cut_over_to_v2(&cluster, &proxy).await;
    let v2 = client(&proxy, Some("v2")).await;
    let merge = v2
        .prepare("MERGE INTO models t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET size = t.size + 1")
        .await
        .unwrap();
    assert_eq!(v2.execute(&merge, &[]).await.unwrap(), 1);
    complete_once_the_heartbeats_allow(&cluster).await;
    assert_eq!(
        cluster
            .psql("postgres", "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'models'::regclass AND attnum > 0 AND NOT attisdropped")
            .unwrap(),
        "id,name,size",
        "the contract renamed v2's column to size"
    );
    let ran = wait_until_async(|| async { v2.execute(&merge, &[]).await.is_ok() }).await;
    assert!(ran, "the prepared MERGE runs after the complete");
    assert_eq!(
        text(&v2, "SELECT size FROM models WHERE id = 1").await,
        ["1002"]
    );
}

/// A write at the new version that the older version's narrower column cannot hold, while
/// both are live, is refused with the type it does not fit and what to do (the Node walk:
/// a 150-character email at v2 while v1's column is `varchar(100)` got only "SQLSTATE
/// 22001 … its up and down expressions are what failed", though the migration had none);
/// after the contract it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_too_wide_for_the_older_version_says_which_type_it_does_not_fit() {
    let (_dir, cluster, proxy, _) = setup_with_spec(
        "CREATE TABLE people (id bigserial PRIMARY KEY, email varchar(10) NOT NULL)",
        "[[tables]]\nname = \"people\"\nkey = [\"id\"]\n[[versions]]\nname = \"v1\"\n[[versions.tables]]\nbase = \"people\"\ncolumns = [\"id\", \"email\"]\n",
    );
    start_migration(
        &cluster,
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"alter_column\"\ntable = \"people\"\ncolumn = \"email\"\ntype = \"varchar(40)\"\n",
    );
    let v2 = client(&proxy, Some("v2")).await;
    let wide = "INSERT INTO people (email) VALUES ('twenty-characters-xy')";
    let error = v2.simple_query(wide).await.unwrap_err();
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "22001", "{db:?}");
    assert!(
        db.message().contains("into an older version's columns")
            && db
                .message()
                .contains("value too long for type character varying(10)")
            && db.message().contains("viewgate migrate complete"),
        "{db:?}"
    );
    text(&v2, "INSERT INTO people (email) VALUES ('short')").await;

    viewgate(&cluster, &["cutover", "--to", "v2"]).expect("cutover");
    drop(v2);
    complete_once_the_heartbeats_allow(&cluster).await;
    let v2 = client(&proxy, Some("v2")).await;
    text(&v2, wide).await;
    assert_eq!(
        text(&v2, "SELECT email FROM people ORDER BY id").await,
        ["short", "twenty-characters-xy"]
    );
    // An application still declaring v1 is told what became of it.
    let at_v1 = format!(
        "postgres://{SUPERUSER}@127.0.0.1:{}/postgres?options=-c%20viewgate.version%3Dv1",
        proxy.port
    );
    let refused = tokio_postgres::connect(&at_v1, NoTls).await.err();
    let message = refused
        .as_ref()
        .and_then(|e| e.as_db_error())
        .map(|e| e.message());
    assert_eq!(
        message,
        Some(
            "unknown viewgate version \"v1\": it was retired when the migration to v2 completed; known versions: v2"
        )
    );
}

/// The thirty-seventh red-team pass: an `up` that failed on a value printed it in the error a
/// v1 writer got ("invalid input syntax for type integer: …"), a value of a column v1 may not
/// have. An error raised inside a sync trigger keeps its SQLSTATE and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_triggers_error_keeps_only_its_sqlstate() {
    let schema = std::fs::read_to_string(format!("{SEED}/schema.sql")).unwrap();
    let (cluster, proxy, _) = setup(&schema, &format!("{SEED}/viewgate.toml"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("0002_number.toml");
    std::fs::write(
        &file,
        r#"
version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "model_metadata"
up = "nullif(model_version, 'text')::integer"
column = { name = "version_number", type = "integer" }
"#,
    )
    .unwrap();
    viewgate(&cluster, &["migrate", "start", &file.display().to_string()])
        .expect("the migration starts");
    let v1 = client(&proxy, Some("v1")).await;
    let error = v1
        .simple_query(
            "INSERT INTO model_metadata (model_name, model_version) VALUES ('m', 'SECRET_VALUE')",
        )
        .await
        .unwrap_err();
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "22P02", "{db:?}");
    assert!(
        db.message()
            .contains("sync trigger could not carry this write into a newer version's columns"),
        "{db:?}"
    );
    assert!(
        db.detail().is_none()
            && db.where_().is_none()
            && !format!("{db:?}").contains("SECRET_VALUE"),
        "{db:?}"
    );
    // Unversioned sessions (the operator's) see Postgres's own error.
    let direct = cluster.url(SUPERUSER, "postgres");
    let (operator, connection) = tokio_postgres::connect(&direct, NoTls).await.unwrap();
    tokio::spawn(connection);
    let error = operator
        .simple_query(
            "INSERT INTO model_metadata (model_name, model_version) VALUES ('m', 'SECRET_VALUE')",
        )
        .await
        .unwrap_err();
    assert!(format!("{error:?}").contains("SECRET_VALUE"), "{error:?}");
}

/// What a version's client is told of a NULL in a NOT NULL column: the SQLSTATE, message and
/// column field of a NOT NULL violation, under the version's name for the column, the same
/// before the contract (where a validated check stands in for the NOT NULL: Postgres says
/// 23514, "violates check constraint") and after it (a real NOT NULL), and at a later version
/// that renames the column. And of a column the table does not have, the table by its name,
/// not the version's view's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_in_a_new_not_null_column_is_a_not_null_violation_before_and_after_the_contract() {
    let schema = std::fs::read_to_string(format!("{SEED}/schema.sql")).unwrap();
    let (cluster, proxy, _) = setup(&schema, &format!("{SEED}/viewgate.toml"));
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [
        (
            "0002_owner.toml",
            r#"
version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "model_metadata"
up = "'nobody'"
column = { name = "owner", type = "text", nullable = false }
"#,
        ),
        (
            "0003_owned_by.toml",
            r#"
version = "v3"
from = "v2"
[[operations]]
op = "rename_column"
table = "model_metadata"
from = "owner"
to = "owned_by"
"#,
        ),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, body).unwrap();
        viewgate(&cluster, &["migrate", "start", &file.display().to_string()])
            .unwrap_or_else(|error| panic!("{name} starts: {error}"));
    }
    let told = |error: tokio_postgres::Error| {
        let db = error.as_db_error().expect("a server error").clone();
        (
            db.code().code().to_owned(),
            db.message().to_owned(),
            db.column().map(str::to_owned),
            db.constraint().map(str::to_owned),
        )
    };
    let violation = |column: &str| {
        (
            "23502".to_owned(),
            format!(
                "null value in column \"{column}\" of relation \"model_metadata\" violates not-null constraint"
            ),
            Some(column.to_owned()),
            None,
        )
    };
    // Every way a version's client puts a NULL there: an INSERT leaving the column out (it
    // has no default), one giving NULL, an UPDATE.
    let writes = |column: &str| {
        [
            "INSERT INTO model_metadata (model_name, model_version) VALUES ('m', '1')".to_owned(),
            format!(
                "INSERT INTO model_metadata (model_name, model_version, {column}) VALUES ('m', '1', NULL)"
            ),
            format!("UPDATE model_metadata SET {column} = NULL"),
        ]
    };
    let v1 = client(&proxy, Some("v1")).await;
    v1.batch_execute("INSERT INTO model_metadata (model_name, model_version) VALUES ('old', '1')")
        .await
        .expect("a v1 insert has its owner from up");
    for (version, column) in [("v2", "owner"), ("v3", "owned_by")] {
        let session = client(&proxy, Some(version)).await;
        for write in writes(column) {
            let error = session.simple_query(&write).await.unwrap_err();
            assert_eq!(told(error), violation(column), "{version}: {write}");
        }
    }
    // The operator, straight to Postgres, sees Postgres's own error.
    let direct = cluster.url(SUPERUSER, "postgres");
    let (operator, connection) = tokio_postgres::connect(&direct, NoTls).await.unwrap();
    tokio::spawn(connection);
    let error = operator
        .simple_query("UPDATE model_metadata SET owner = NULL")
        .await
        .unwrap_err();
    assert_eq!(told(error).0, "23514");

    drop(v1);
    viewgate(&cluster, &["cutover", "--to", "v2"]).unwrap();
    let mut completed = Err(String::new());
    for _ in 0..100 {
        completed = viewgate(&cluster, &["migrate", "complete", "--version", "v2"]);
        if completed.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    completed.expect("v2 completes once v1's session is gone");
    for (version, column) in [("v2", "owner"), ("v3", "owned_by")] {
        let session = client(&proxy, Some(version)).await;
        for write in writes(column) {
            let error = session.simple_query(&write).await.unwrap_err();
            assert_eq!(told(error), violation(column), "{version} after: {write}");
        }
        let error = session
            .simple_query("UPDATE model_metadata SET no_such_column = 1")
            .await
            .unwrap_err();
        let undefined = (
            "42703".to_owned(),
            "column \"no_such_column\" of relation \"model_metadata\" does not exist".to_owned(),
            None,
            None,
        );
        assert_eq!(told(error), undefined, "{version}");
    }
}

/// A session naming a relation its version does not have (the managed table by the name
/// another version gives it, another version's view) was refused as a syntax error (42601);
/// its version's introspection does not show the relation, and an application catching
/// Postgres's undefined table (psycopg's `UndefinedTable`, asyncpg's
/// `UndefinedTableError`) must see that one: 42P01, in both protocols, the explanation kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relation_the_version_does_not_have_is_an_undefined_table() {
    let schema = std::fs::read_to_string(format!("{SEED}/schema.sql")).unwrap();
    let (cluster, proxy, _) = setup(&schema, &format!("{SEED}/viewgate.toml"));
    start_migration(&cluster, RENAME_TO_ML_MODELS);
    let v1 = client(&proxy, Some("v1")).await;
    let v2 = client(&proxy, Some("v2")).await;
    for (session, sql, named) in [
        (&v2, "SELECT count(*) FROM model_metadata", "model_metadata"),
        (&v1, "SELECT count(*) FROM ml_models_v2", "ml_models_v2"),
        (
            &v1,
            "SELECT count(*) FROM public.ml_models_v2",
            "public.ml_models_v2",
        ),
    ] {
        let simple = session.simple_query(sql).await.expect_err(sql);
        let extended = session.query(sql, &[]).await.expect_err(sql);
        for error in [simple, extended] {
            let error = error
                .as_db_error()
                .unwrap_or_else(|| panic!("{sql}: {error:?}"));
            assert_eq!(error.code().code(), "42P01", "{sql}: {error:?}");
            assert!(
                error
                    .message()
                    .starts_with(&format!("relation \"{named}\" does not exist at version v")),
                "{sql}: {error:?}"
            );
        }
    }
    assert_eq!(text(&v2, "SELECT count(*) FROM ml_models").await, ["0"]);
    assert_eq!(
        text(&v1, "SELECT count(*) FROM model_metadata").await,
        ["0"]
    );
}

/// Django's `annotate(Count(…))` and Rails' `group(:id)` group by the primary key and read the
/// row's other columns, which Postgres allows on a table and refuses through a view (42803):
/// through the proxy they answer at every version, before, during and after a migration that
/// renames a column, in both protocols, as the base table would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_grouped_by_the_primary_key_reads_the_rows_other_columns() {
    let schema = std::fs::read_to_string(format!("{SEED}/schema.sql")).unwrap();
    let (cluster, proxy, _) = setup(&schema, &format!("{SEED}/viewgate.toml"));
    cluster
        .psql(
            "postgres",
            "INSERT INTO model_metadata (id, model_name, model_version) VALUES (1, 'resnet', '1'), (2, 'bert', '2'), (3, 'gpt', '3');
             CREATE TABLE runs (id serial PRIMARY KEY, model_id bigint REFERENCES model_metadata (id));
             INSERT INTO runs (model_id) VALUES (1), (1), (3);",
        )
        .unwrap();
    let grouped = |name: &str| {
        format!(
            "SELECT \"model_metadata\".\"id\", \"model_metadata\".\"{name}\", COUNT(\"runs\".\"id\") AS \"n\" \
             FROM \"model_metadata\" LEFT OUTER JOIN \"runs\" ON (\"model_metadata\".\"id\" = \"runs\".\"model_id\") \
             GROUP BY \"model_metadata\".\"id\" ORDER BY \"model_metadata\".\"id\""
        )
    };
    let aliased = |name: &str| {
        format!(
            "SELECT upper(m.{name}), count(r.id) FROM model_metadata m JOIN runs r ON r.model_id = m.id \
             GROUP BY m.id HAVING m.{name} <> '' ORDER BY m.{name}"
        )
    };
    let expected = ["1|resnet|2", "2|bert|0", "3|gpt|1"];
    let answers = async |client: &Client, name: &str| {
        assert_eq!(text(client, &grouped(name)).await, expected);
        let rows = client.query(&aliased(name), &[]).await.unwrap();
        let rows: Vec<(String, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        assert_eq!(rows, [("GPT".to_owned(), 1), ("RESNET".to_owned(), 2)]);
    };
    let v1 = client(&proxy, Some("v1")).await;
    answers(&v1, "model_name").await;

    start_migration(
        &cluster,
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"rename_column\"\ntable = \"model_metadata\"\nfrom = \"model_name\"\nto = \"name\"\n",
    );
    let v2 = client(&proxy, Some("v2")).await;
    answers(&v1, "model_name").await;
    answers(&v2, "name").await;
    drop(v1);
    cut_over_to_v2(&cluster, &proxy).await;
    complete_once_the_heartbeats_allow(&cluster).await;
    let v2 = client(&proxy, Some("v2")).await;
    answers(&v2, "name").await;
}

/// While a migration renames a table, its constraint violations named the base table (its
/// old name) to the new version's clients, in the message and the table field, though at
/// that version the name is refused as an undefined table: they name the table as the
/// version does, the old version's clients as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constraint_violation_names_the_table_as_the_version_does() {
    let schema = std::fs::read_to_string(format!("{SEED}/schema.sql")).unwrap();
    let (cluster, proxy, _) = setup(&schema, &format!("{SEED}/viewgate.toml"));
    cluster
        .psql(
            "postgres",
            "INSERT INTO model_metadata (id, model_name, model_version) VALUES (1, 'resnet', '1');
             ALTER TABLE model_metadata ADD CONSTRAINT short_version CHECK (length(model_version) < 5);
             CREATE TABLE runs (id serial PRIMARY KEY, model_id bigint REFERENCES model_metadata (id));
             INSERT INTO runs (model_id) VALUES (1);",
        )
        .unwrap();
    start_migration(&cluster, RENAME_TO_ML_MODELS);
    let v1 = client(&proxy, Some("v1")).await;
    let v2 = client(&proxy, Some("v2")).await;
    let error = async |client: &Client, sql: &str| {
        let error = client.execute(sql, &[]).await.expect_err(sql);
        let error = error.as_db_error().expect("a server error").clone();
        (
            error.code().code().to_owned(),
            error.message().to_owned(),
            error.detail().map(str::to_owned),
            error.table().map(str::to_owned),
        )
    };
    for (table, client) in [("model_metadata", &v1), ("ml_models", &v2)] {
        let (code, message, _, field) = error(
            client,
            &format!("INSERT INTO {table} (model_name, model_version) VALUES (NULL, '1')"),
        )
        .await;
        assert_eq!(code, "23502");
        assert_eq!(
            message,
            format!(
                "null value in column \"model_name\" of relation \"{table}\" violates not-null constraint"
            )
        );
        assert_eq!(field.as_deref(), Some(table));
        let (code, message, _, field) = error(
            client,
            &format!("UPDATE {table} SET model_version = 'too long' WHERE id = 1"),
        )
        .await;
        assert_eq!(code, "23514");
        assert_eq!(
            message,
            format!("new row for relation \"{table}\" violates check constraint \"short_version\"")
        );
        assert_eq!(field.as_deref(), Some(table));
        let (code, _, detail, field) = error(
            client,
            &format!(
                "INSERT INTO {table} (id, model_name, model_version) VALUES (1, 'again', '1')"
            ),
        )
        .await;
        assert_eq!(code, "23505");
        assert_eq!(detail.as_deref(), Some("Key (id)=(1) already exists."));
        assert_eq!(field.as_deref(), Some(table));
        let (code, message, detail, field) =
            error(client, &format!("DELETE FROM {table} WHERE id = 1")).await;
        assert_eq!(code, "23503");
        assert_eq!(
            message,
            format!(
                "update or delete on table \"{table}\" violates foreign key constraint \"runs_model_id_fkey\" on table \"runs\""
            )
        );
        assert_eq!(
            detail.as_deref(),
            Some("Key (id)=(1) is still referenced from table \"runs\".")
        );
        assert_eq!(field.as_deref(), Some("runs"));
    }
}

/// While a migration retypes a key column (`integer` → `bigint`, the classic one), the new
/// version sees the key through the unique index the migration builds over the new column
/// until the contract makes it the constraint: a GROUP BY of the key reading the row's other
/// columns (Django's `annotate`) and an upsert naming the constraint (`ON CONFLICT ON
/// CONSTRAINT accounts_email_key`) failed at the new version (42803, 42704 naming the view),
/// and answer at both versions now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_being_retyped_still_keys_the_new_version() {
    let (_dir, cluster, proxy, _) = setup_with_spec(
        "CREATE TABLE accounts (id integer PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL);
         INSERT INTO accounts VALUES (1, 'a@x', 'ada'), (2, 'b@x', 'bob');
         CREATE TABLE runs (id serial PRIMARY KEY, account_id bigint);
         INSERT INTO runs (account_id) VALUES (1), (1), (2);",
        "[[tables]]\nname = \"accounts\"\n[[versions]]\nname = \"v1\"\n[[versions.tables]]\nbase = \"accounts\"\ncolumns = [\"id\", \"email\", \"name\"]\n",
    );
    start_migration(
        &cluster,
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"alter_column\"\ntable = \"accounts\"\ncolumn = \"id\"\ntype = \"bigint\"\nup = \"id::bigint\"\ndown = \"id::integer\"\n[[operations]]\nop = \"alter_column\"\ntable = \"accounts\"\ncolumn = \"email\"\ntype = \"varchar(320)\"\n",
    );
    assert_eq!(
        cluster
            .psql("postgres", "SELECT count(*) FROM pg_indexes WHERE indexname IN ('_vg_v2_accounts_pkey', '_vg_v2_accounts_email_key')")
            .unwrap(),
        "2",
        "the migration built the keys' twins"
    );
    let grouped = "SELECT a.id, a.name, count(r.id) FROM accounts a LEFT JOIN runs r ON r.account_id = a.id GROUP BY a.id ORDER BY a.id";
    let upsert = "INSERT INTO accounts (id, email, name) VALUES (3, 'a@x', 'again') ON CONFLICT ON CONSTRAINT accounts_email_key DO UPDATE SET name = excluded.name";
    for version in ["v1", "v2"] {
        let session = client(&proxy, Some(version)).await;
        assert_eq!(
            text(&session, grouped).await,
            ["1|ada|2", "2|bob|1"],
            "{version}"
        );
        let rows = session.query(grouped, &[]).await.unwrap();
        assert_eq!(rows.len(), 2, "{version}");
        session
            .execute(upsert, &[])
            .await
            .unwrap_or_else(|e| panic!("{version}: {e:?}"));
        assert_eq!(
            text(&session, "SELECT name FROM accounts WHERE email = 'a@x'").await,
            ["again"],
            "{version}"
        );
        session
            .execute("UPDATE accounts SET name = 'ada' WHERE id = 1", &[])
            .await
            .unwrap();
    }
    cut_over_to_v2(&cluster, &proxy).await;
    complete_once_the_heartbeats_allow(&cluster).await;
    let v2 = client(&proxy, Some("v2")).await;
    assert_eq!(text(&v2, grouped).await, ["1|ada|2", "2|bob|1"]);
    v2.execute(upsert, &[]).await.unwrap();
}

/// A NULL a new version writes to a column that replaces an older one (retyped and renamed)
/// reaches the old column through the migration's `down`, and the old column's NOT NULL
/// fails first: the new version's clients were told of the old column, which they do not
/// see (`null value in column "model_name"`); they are told of theirs, the older version's
/// clients of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_in_a_replacing_column_is_told_by_the_versions_name() {
    let schema = std::fs::read_to_string(format!("{SEED}/schema.sql")).unwrap();
    let (cluster, proxy, _) = setup(&schema, &format!("{SEED}/viewgate.toml"));
    start_migration(
        &cluster,
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"alter_column\"\ntable = \"model_metadata\"\ncolumn = \"model_name\"\ntype = \"varchar(100)\"\nrename_to = \"name\"\nup = \"model_name::varchar(100)\"\ndown = \"name\"\n",
    );
    for (version, insert, column) in [
        (
            "v2",
            "INSERT INTO model_metadata (name, model_version) VALUES (NULL, '1')",
            "name",
        ),
        (
            "v1",
            "INSERT INTO model_metadata (model_name, model_version) VALUES (NULL, '1')",
            "model_name",
        ),
    ] {
        let session = client(&proxy, Some(version)).await;
        let error = session.execute(insert, &[]).await.expect_err(insert);
        let error = error.as_db_error().expect("a server error");
        assert_eq!(error.code().code(), "23502", "{version}: {error:?}");
        assert_eq!(
            error.message(),
            format!(
                "null value in column \"{column}\" of relation \"model_metadata\" violates not-null constraint"
            ),
            "{version}"
        );
        assert_eq!(error.column(), Some(column), "{version}");
    }
}
