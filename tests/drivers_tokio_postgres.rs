//! tokio-postgres through the proxy: the extended protocol as a Rust service would use it.
//!
//! Covers what a message-level proxy must pass through untouched (DESIGN.md decision 1):
//! named prepared statements reused many times, binary result formats, transactions, COPY in
//! both directions, LISTEN/NOTIFY delivered asynchronously, CancelRequest with the proxy's own
//! keys, and several queries pipelined on one connection.

use crate::common;

use std::time::{Duration, Instant, SystemTime};

use common::TestProxy;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// Connects through the proxy as the superuser; the connection runs on a spawned task.
async fn connect(proxy: &TestProxy) -> Client {
    let (client, connection) = tokio_postgres::connect(&proxy.url("postgres", "postgres"), NoTls)
        .await
        .expect("connect through the proxy");
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("connection ended with {error}");
        }
    });
    client
}

fn code(error: &tokio_postgres::Error) -> Option<&SqlState> {
    error.as_db_error().map(|db| db.code())
}

#[tokio::test]
async fn prepared_statement_reused_many_times() {
    let proxy = TestProxy::start();
    let client = connect(&proxy).await;
    let statement = client
        .prepare("SELECT $1::int8 * 2, $2::text || '!'")
        .await
        .unwrap();
    for i in 0..500i64 {
        let row = client
            .query_one(&statement, &[&i, &format!("n{i}")])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), i * 2);
        assert_eq!(row.get::<_, String>(1), format!("n{i}!"));
    }
    // The statement lives server-side under its name, prepared once.
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1",
            &[&"SELECT $1::int8 * 2, $2::text || '!'"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test]
async fn binary_results_round_trip() {
    let proxy = TestProxy::start();
    let client = connect(&proxy).await;
    client
        .batch_execute(
            "CREATE TABLE typed(i int8, f float8, b bytea, a text[], t timestamptz, j jsonb)",
        )
        .await
        .unwrap();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let array = vec![
        "a".to_string(),
        "b c".into(),
        "\"quoted\"".into(),
        "".into(),
    ];
    // Microsecond precision: what timestamptz stores.
    let time = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    let json = serde_json::json!({"k": [1, 2.5, "x"], "nested": {"null": null, "t": true}});
    client
        .execute(
            "INSERT INTO typed VALUES ($1, $2, $3, $4, $5, $6)",
            &[&i64::MIN, &-1.5e300f64, &bytes, &array, &time, &json],
        )
        .await
        .unwrap();
    // tokio-postgres asks for every result column in binary.
    let row = client
        .query_one("SELECT i, f, b, a, t, j FROM typed", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("i"), i64::MIN);
    assert_eq!(row.get::<_, f64>("f"), -1.5e300);
    assert_eq!(row.get::<_, Vec<u8>>("b"), bytes);
    assert_eq!(row.get::<_, Vec<String>>("a"), array);
    assert_eq!(row.get::<_, SystemTime>("t"), time);
    assert_eq!(row.get::<_, serde_json::Value>("j"), json);
    // The server agrees on the values (text rendering, computed server-side).
    let row = client
        .query_one(
            "SELECT length(b), b = (SELECT decode(string_agg(lpad(to_hex(n % 256), 2, '0'), '' ORDER BY n), 'hex') \
             FROM generate_series(0, 99999) n), a[3], extract(epoch FROM t)::text, j->'nested'->>'t' FROM typed",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 100_000);
    assert!(
        row.get::<_, bool>(1),
        "the server holds exactly the bytes sent"
    );
    assert_eq!(row.get::<_, String>(2), "\"quoted\"");
    assert_eq!(row.get::<_, String>(3), "1700000000.123456");
    assert_eq!(row.get::<_, String>(4), "true");
}

#[tokio::test]
async fn transactions_commit_and_rollback() {
    let proxy = TestProxy::start();
    let mut client = connect(&proxy).await;
    let observer = connect(&proxy).await;
    client
        .batch_execute("CREATE TABLE ledger(id int primary key)")
        .await
        .unwrap();

    let transaction = client.transaction().await.unwrap();
    transaction
        .execute("INSERT INTO ledger VALUES (1), (2)", &[])
        .await
        .unwrap();
    let seen = observer
        .query_one("SELECT count(*) FROM ledger", &[])
        .await
        .unwrap();
    assert_eq!(seen.get::<_, i64>(0), 0, "uncommitted rows are invisible");
    transaction.commit().await.unwrap();
    let seen = observer
        .query_one("SELECT count(*) FROM ledger", &[])
        .await
        .unwrap();
    assert_eq!(seen.get::<_, i64>(0), 2, "committed rows are visible");

    let transaction = client.transaction().await.unwrap();
    transaction
        .execute("INSERT INTO ledger VALUES (3)", &[])
        .await
        .unwrap();
    let error = transaction
        .execute("INSERT INTO ledger VALUES (1)", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(&SqlState::UNIQUE_VIOLATION));
    transaction.rollback().await.unwrap();
    let ids: Vec<i32> = client
        .query("SELECT id FROM ledger ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(ids, [1, 2], "rolled-back rows are gone");
}

#[tokio::test]
async fn copy_in_and_copy_out() {
    let proxy = TestProxy::start();
    let client = connect(&proxy).await;
    client
        .batch_execute("CREATE TABLE items(id int, name text)")
        .await
        .unwrap();
    let rows: String = (0..20_000).map(|i| format!("{i},item {i}\n")).collect();
    let sink = client
        .copy_in("COPY items FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    // Many small chunks: CopyData frames cross the proxy's read boundaries.
    for chunk in rows.as_bytes().chunks(777) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 20_000);
    assert_eq!(
        proxy.admin("SELECT count(*), sum(id) FROM items"),
        "20000|199990000"
    );

    let stream = client
        .copy_out("COPY (SELECT * FROM items ORDER BY id) TO STDOUT (FORMAT csv)")
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let out: Vec<u8> = chunks.concat();
    assert_eq!(String::from_utf8(out).unwrap(), rows);

    // A COPY that fails midway reports its error and leaves the session usable.
    let sink = client
        .copy_in("COPY items FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"1,ok\nnot a number,x\n"))
        .await
        .unwrap();
    let error = sink.finish().await.unwrap_err();
    assert_eq!(code(&error), Some(&SqlState::INVALID_TEXT_REPRESENTATION));
    let row = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 20_000);
}

#[tokio::test]
async fn listen_notify_reaches_the_listener() {
    let proxy = TestProxy::start();
    let (listener, mut connection) =
        tokio_postgres::connect(&proxy.url("postgres", "postgres"), NoTls)
            .await
            .unwrap();
    // Drive the listener's connection ourselves to see its asynchronous messages.
    let (tx, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            if let Ok(AsyncMessage::Notification(notification)) = message {
                let _ = tx.send(notification);
            }
        }
    });
    listener.batch_execute("LISTEN jobs").await.unwrap();
    let backend_pid: i32 = listener
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let notifier = connect(&proxy).await;
    notifier
        .batch_execute("NOTIFY jobs, 'first'")
        .await
        .unwrap();
    notifier
        .execute("SELECT pg_notify('jobs', $1)", &[&"second"])
        .await
        .unwrap();
    notifier
        .batch_execute("NOTIFY other_channel, 'ignored'")
        .await
        .unwrap();

    for expected in ["first", "second"] {
        let notification = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
            .await
            .expect("notification arrives within 5 s")
            .expect("listener connection alive");
        assert_eq!(notification.channel(), "jobs");
        assert_eq!(notification.payload(), expected);
        assert_ne!(
            notification.process_id(),
            backend_pid,
            "sent by the notifier's backend"
        );
    }
    // Nothing from the channel we did not listen on.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), notifications.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn cancel_request_interrupts_a_running_query() {
    let proxy = TestProxy::start();
    let client = connect(&proxy).await;
    let token = client.cancel_token();
    let started = Instant::now();
    let (result, cancelled) = tokio::join!(client.query("SELECT pg_sleep(30)", &[]), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await
    });
    cancelled.expect("cancel request sent");
    let error = result.expect_err("the sleep is cancelled");
    assert_eq!(code(&error), Some(&SqlState::QUERY_CANCELED), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cancelled after {:?}",
        started.elapsed()
    );
    // The session survives the cancel.
    let row = client.query_one("SELECT 41 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    // A cancel with no query running is harmless.
    client.cancel_token().cancel_query(NoTls).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let row = client.query_one("SELECT 'still here'", &[]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "still here");
}

#[tokio::test]
async fn pipelined_queries_on_one_connection() {
    let proxy = TestProxy::start();
    let client = connect(&proxy).await;
    let statement = client.prepare("SELECT $1::int4 + 1").await.unwrap();
    // Polled together, these are written back to back before any reply is read.
    let (a, b, c, failed, d) = futures_util::join!(
        client.query_one(&statement, &[&1i32]),
        client.query_one("SELECT pg_sleep(0.2)::text || 'slow'", &[]),
        client.query_one(&statement, &[&2i32]),
        client.query_one("SELECT 1/0", &[]),
        client.query("SELECT generate_series(1, 1000)", &[]),
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 2);
    assert_eq!(b.unwrap().get::<_, String>(0), "slow");
    assert_eq!(c.unwrap().get::<_, i32>(0), 3);
    assert_eq!(
        code(&failed.unwrap_err()),
        Some(&SqlState::DIVISION_BY_ZERO)
    );
    let series: Vec<i32> = d.unwrap().iter().map(|row| row.get(0)).collect();
    assert_eq!(series, (1..=1000).collect::<Vec<_>>());

    // A larger pipeline: 200 statements in flight at once, answers in order.
    let futures = (0..200i32).map(|i| {
        let client = &client;
        let statement = &statement;
        async move { client.query_one(statement, &[&i]).await }
    });
    let results = futures_util::future::join_all(futures).await;
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap().get::<_, i32>(0), i as i32 + 1);
    }
}
