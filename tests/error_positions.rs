//! An error's position points into the text the client sent, though Postgres read the
//! proxy's rewrite (`FROM model_metadata` became `FROM public.model_metadata_v1 AS
//! model_metadata`): through a simple query (several statements in it too), a Parse, a
//! pipelined Parse after another, at v1 and v2, with psql's caret where Postgres puts it on a
//! direct connection. Before, every position after an edit pointed past the client's text or
//! at another word (found by the JDBC walk: 49 where Postgres says 29).

use crate::common;

use common::TestProxy;
use common::versions::{connect_with, versioned_proxy};
use tokio_postgres::error::ErrorPosition;

/// The 1-based character position of the first `needle` in `sql`.
fn at(sql: &str, needle: &str) -> u32 {
    let index = sql.find(needle).unwrap();
    u32::try_from(sql[..index].chars().count() + 1).unwrap()
}

fn position(error: &tokio_postgres::Error) -> Option<u32> {
    match error.as_db_error()?.position()? {
        ErrorPosition::Original(position) => Some(*position),
        ErrorPosition::Internal { .. } => None,
    }
}

/// psql's report of `sql`'s error through the proxy at `version`, with the LINE and caret it
/// prints from the position.
fn psql_error(proxy: &TestProxy, version: &str, sql: &str) -> String {
    let conninfo = format!(
        "{} options='-c viewgate.version={version}'",
        proxy.conninfo()
    );
    let output = proxy.psql(&conninfo).args(["-c", sql]).output().unwrap();
    assert!(!output.status.success(), "{sql} passed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_errors_position_points_into_the_clients_text() {
    let proxy = versioned_proxy();
    for version in ["v1", "v2"] {
        let client = connect_with(&proxy, &format!("-c%20viewgate.version%3D{version}")).await;
        let sql = "SELECT 'é', id FROM model_metadata m JOIN model_metadata n USING (id) WHERE m.nope = 1";
        // Simple query.
        let error = client.simple_query(sql).await.unwrap_err();
        assert_eq!(
            position(&error),
            Some(at(sql, "m.nope")),
            "{version}: {error:?}"
        );
        // Several statements in one query: the position counts from the start of the text.
        let several = format!("SELECT count(*) FROM model_metadata; {sql}");
        let error = client.simple_query(&several).await.unwrap_err();
        assert_eq!(
            position(&error),
            Some(at(&several, "m.nope")),
            "{version}: {error:?}"
        );
        // A Parse, and a pipelined Parse behind one that succeeds: the failing one's text.
        let error = client.prepare(sql).await.unwrap_err();
        assert_eq!(
            position(&error),
            Some(at(sql, "m.nope")),
            "{version}: {error:?}"
        );
        let fine = "SELECT model_name FROM model_metadata WHERE id = $1";
        let failing = "SELECT id FROM model_metadata WHERE model_name = $1 AND missing_column > 0";
        let (first, second) = tokio::join!(client.prepare(fine), client.prepare(failing));
        first.unwrap();
        let error = second.unwrap_err();
        assert_eq!(
            position(&error),
            Some(at(failing, "missing_column")),
            "{version}: {error:?}"
        );
        // An unmanaged statement's position stands.
        let error = client
            .simple_query("SELECT nope FROM pg_class")
            .await
            .unwrap_err();
        assert_eq!(position(&error), Some(8), "{error:?}");
        // psql's caret, under the word Postgres names, as on the base table directly.
        let shown = psql_error(
            &proxy,
            version,
            "SELECT id FROM model_metadata WHERE nope = 1",
        );
        assert!(
            shown.contains("LINE 1: SELECT id FROM model_metadata WHERE nope = 1\n")
                && shown.contains(&format!("\n{}^", " ".repeat(8 + 36))),
            "{version}: {shown}"
        );
    }
}
