//! `viewgate pause` / `resume` against a real proxy process and its admin API: an idle client
//! that sends a query during a pause waits (no error) and is answered after resume; a
//! transaction under way when the pause starts may finish, and the pause completes then; a
//! transaction that never ends makes the pause time out, the gate reopens and the client is
//! unaffected. The pause and switch endpoints refuse a missing or wrong token.

use crate::common;

use std::process::{Command, Output};
use std::time::Duration;

use common::http::request;
use common::{ProxyProcess, viewgate_binary, wait_until};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster, free_port};

const TOKEN: &str = "pause-test-token";

struct Fixture {
    proxy: ProxyProcess,
    admin_port: u16,
    // Dropped after the proxy.
    _cluster: ThrowawayCluster,
}

fn start() -> Fixture {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let admin_port = free_port().unwrap();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let proxy = ProxyProcess::start(
        &cluster,
        &[
            ("VIEWGATE_ADMIN_LISTEN", admin_listen.as_str()),
            ("VIEWGATE_ADMIN_TOKEN", TOKEN),
        ],
    );
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    }));
    Fixture {
        proxy,
        admin_port,
        _cluster: cluster,
    }
}

impl Fixture {
    fn cli(&self, args: &[&str]) -> Command {
        let mut command = Command::new(viewgate_binary());
        command
            .args(args)
            .args(["--admin", &format!("http://127.0.0.1:{}", self.admin_port)])
            .env("VIEWGATE_ADMIN_TOKEN", TOKEN);
        command
    }

    async fn client(&self) -> tokio_postgres::Client {
        let url = format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
            self.proxy.port
        );
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    text(&output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_waits_during_a_pause_and_is_answered_after_resume() {
    let fixture = start();
    let client = fixture.client().await;
    client.simple_query("SELECT 1").await.unwrap();

    let out = run_ok(&mut fixture.cli(&["pause", "--timeout", "5s"]));
    assert!(out.contains("paused"), "{out}");
    let (status, body) = request(fixture.admin_port, "GET", "/pause", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""state":"paused""#), "{body}");

    let query = tokio::spawn(async move {
        client
            .query_one("SELECT 41 + 1", &[])
            .await
            .map(|row| row.get::<_, i32>(0))
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!query.is_finished(), "the query must wait while paused");
    let (_, body) = request(fixture.admin_port, "GET", "/pause", Some(TOKEN), None);
    assert!(body.contains(r#""held_messages":1"#), "{body}");

    let out = run_ok(&mut fixture.cli(&["resume"]));
    assert!(out.contains("(1 held)"), "{out}");
    let answer = tokio::time::timeout(Duration::from_secs(5), query)
        .await
        .expect("answered after resume")
        .unwrap();
    assert_eq!(answer.unwrap(), 42);

    let (_, metrics) = request(fixture.admin_port, "GET", "/metrics", Some(TOKEN), None);
    assert!(
        metrics.contains("viewgate_pause_wait_seconds_count 1"),
        "{metrics}"
    );
    let error = text(&fixture.cli(&["resume"]).output().unwrap());
    assert!(error.contains("not paused (HTTP 409)"), "{error}");
}

/// tokio-postgres's `copy_in` sends a Sync behind the COPY's Execute, which Postgres reads
/// inside the COPY and ignores, and another after CopyDone; the fourteenth red-team pass sent
/// one during a COPY. Counted as owed answers, they left the session busy for good, and every
/// pause timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_copied_in_is_idle_for_a_pause() {
    use futures_util::SinkExt;
    let fixture = start();
    let client = fixture.client().await;
    client
        .batch_execute("CREATE TABLE c (x int)")
        .await
        .unwrap();
    for _ in 0..2 {
        let sink = client.copy_in("COPY c FROM STDIN").await.unwrap();
        futures_util::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"1\n2\n"))
            .await
            .unwrap();
        assert_eq!(sink.finish().await.unwrap(), 2);
    }
    client.simple_query("SELECT 1").await.unwrap();
    let out = run_ok(&mut fixture.cli(&["pause", "--timeout", "3s"]));
    assert!(out.contains("paused"), "{out}");
    run_ok(&mut fixture.cli(&["resume"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_waits_for_a_transaction_to_commit() {
    let fixture = start();
    let client = fixture.client().await;
    client
        .batch_execute("CREATE TABLE t (x int); BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let mut pause = fixture.cli(&["pause", "--timeout", "20s"]).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        pause.try_wait().unwrap().is_none(),
        "the pause waits for the open transaction"
    );
    // Inside its transaction the client runs on, then commits.
    client
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    let status = tokio::task::spawn_blocking(move || pause.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "the pause completes after COMMIT");
    run_ok(&mut fixture.cli(&["resume"]));
    let rows = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(rows.get::<_, i64>(0), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_that_outlasts_its_timeout_is_undone_and_reported() {
    let fixture = start();
    let stuck = fixture.client().await;
    stuck.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let other = fixture.client().await;

    let output = fixture
        .cli(&["pause", "--timeout", "300ms"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = text(&output);
    assert!(
        error.contains("1 session(s) still had transactions in flight") && error.contains("504"),
        "{error}"
    );
    let (_, body) = request(fixture.admin_port, "GET", "/pause", Some(TOKEN), None);
    assert!(body.contains(r#""state":"open""#), "{body}");
    // Neither the stuck client nor the others noticed anything.
    other.simple_query("SELECT 1").await.unwrap();
    stuck.batch_execute("SELECT 2").await.unwrap();
    stuck.batch_execute("COMMIT").await.unwrap();
}

#[test]
fn pause_and_switch_endpoints_need_the_token() {
    let fixture = start();
    for path in [
        "/pause",
        "/resume",
        "/upstream/prepare",
        "/upstream/commit",
        "/upstream/abort",
    ] {
        assert_eq!(
            request(fixture.admin_port, "POST", path, None, None).0,
            401,
            "{path}"
        );
        assert_eq!(
            request(fixture.admin_port, "POST", path, Some("wrong"), None).0,
            401,
            "{path}"
        );
    }
    assert_eq!(
        request(fixture.admin_port, "GET", "/pause", None, None).0,
        401
    );
    let output = Command::new(viewgate_binary())
        .args(["pause", "--admin"])
        .arg(format!("http://127.0.0.1:{}", fixture.admin_port))
        .args(["--token", "wrong"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output).contains("refused the token (401)"),
        "{}",
        text(&output)
    );
    // Wrong-state requests are 409, with a JSON error.
    let (status, body) = request(
        fixture.admin_port,
        "POST",
        "/upstream/commit",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("no upstream switch is prepared"), "{body}");
}
