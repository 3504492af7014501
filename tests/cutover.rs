//! `viewgate cutover`: the blue-green flip of the default version, and its rollback. Sessions
//! at the default move at their next transaction boundary, never inside a transaction; pinned
//! sessions keep their version; every flip is recorded in the catalog history.

use crate::common;

use std::time::Duration;

use common::TestProxy;
use common::versions::{catalog_command, columns, connect, connect_with, versioned_proxy};

const V1_COLUMNS: usize = 5;
const V2_COLUMNS: usize = 7;
/// How long a proxy may take to apply a catalog change.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(5);

fn cutover(proxy: &TestProxy, args: &[&str]) -> Result<String, String> {
    catalog_command(proxy, "cutover", args)
}

/// Waits until a new default session sees `expected` columns: the proxy has reloaded.
async fn wait_for_default(proxy: &TestProxy, expected: usize) {
    let deadline = tokio::time::Instant::now() + PROPAGATION_LIMIT;
    loop {
        if columns(&connect(proxy).await).await == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy did not apply the cutover in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cutover_moves_default_sessions_at_their_next_transaction_and_rollback_returns() {
    let proxy = versioned_proxy();
    let default_session = connect(&proxy).await;
    let pinned = connect_with(&proxy, "-c%20viewgate.version%3Dv1").await;
    assert_eq!(columns(&default_session).await, V1_COLUMNS);

    default_session.batch_execute("BEGIN").await.unwrap();
    let out = cutover(&proxy, &["--to", "v2"]).unwrap();
    assert!(out.contains("default version: v1 -> v2"), "{out}");
    wait_for_default(&proxy, V2_COLUMNS).await;
    assert_eq!(
        columns(&default_session).await,
        V1_COLUMNS,
        "inside its transaction the session keeps v1"
    );
    default_session.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        columns(&default_session).await,
        V2_COLUMNS,
        "after COMMIT: v2"
    );
    assert_eq!(
        columns(&pinned).await,
        V1_COLUMNS,
        "a pinned session keeps its version"
    );

    let out = cutover(&proxy, &["--rollback"]).unwrap();
    assert!(out.contains("default version: v2 -> v1"), "{out}");
    wait_for_default(&proxy, V1_COLUMNS).await;
    assert_eq!(columns(&default_session).await, V1_COLUMNS);

    assert_eq!(
        proxy.admin(
            "SELECT string_agg(action || array_to_string(versions, '>', '?'), ' ' ORDER BY id) \
             FROM viewgate.apply_history WHERE action IN ('cutover', 'rollback')"
        ),
        "cutoverv1>v2 rollbackv2>v1"
    );
}

#[test]
fn cutover_refuses_unknown_versions_and_says_when_nothing_changes() {
    let proxy = versioned_proxy();
    let error = cutover(&proxy, &["--to", "v9"]).unwrap_err();
    assert!(
        error.contains("version v9 is not an active version (active: v1, v2)"),
        "{error}"
    );
    let out = cutover(&proxy, &["--to", "v1"]).unwrap();
    assert!(out.contains("already v1"), "{out}");
    let error = cutover(&proxy, &["--rollback"]).unwrap_err();
    assert!(error.contains("no earlier cutover to roll back"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_that_loses_its_catalog_connection_keeps_routing_and_catches_up() {
    let proxy = versioned_proxy();
    let killed = proxy.admin(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = 'viewgate-proxy'",
    );
    assert_ne!(killed, "0", "the proxy's catalog connection was not found");
    // Still routed with the last state while it reconnects.
    assert_eq!(columns(&connect(&proxy).await).await, V1_COLUMNS);
    // A change made while the connection was down is picked up once it is back.
    cutover(&proxy, &["--to", "v2"]).unwrap();
    wait_for_default(&proxy, V2_COLUMNS).await;
}
