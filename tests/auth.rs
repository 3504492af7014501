//! Password authentication relayed through the proxy: md5, SCRAM-SHA-256 and cleartext.
//!
//! viewgate stores no passwords; it carries the upstream's challenges and the client's answers.
//! The cluster's hba method is `md5`, so the stored password decides: an md5 hash gets the md5
//! challenge, a SCRAM verifier gets SCRAM-SHA-256. Correct passwords must work with libpq
//! (psql) and tokio-postgres; a wrong one must be refused exactly as Postgres refuses it.

use crate::common;

use common::{ClusterAuth, TestProxy};
use tokio_postgres::NoTls;
use tokio_postgres::error::{DbError, SqlState};
use viewgate::pg_cluster::ClusterOptions;

const MD5_PASSWORD: &str = "md5 secret, with spaces";
const SCRAM_PASSWORD: &str = "scrám-sécret";

fn start() -> TestProxy {
    let proxy = TestProxy::start_with(
        ClusterOptions {
            auth: ClusterAuth::Password,
            ..ClusterOptions::default()
        },
        |_| {},
    );
    proxy.admin(&format!(
        "SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD '{MD5_PASSWORD}'"
    ));
    proxy.admin(&format!(
        "SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN PASSWORD '{SCRAM_PASSWORD}'"
    ));
    // The stored types are what pick the method.
    assert_eq!(
        proxy.admin(
            "SELECT string_agg(rolname || ':' || CASE WHEN rolpassword ~ '^md5[0-9a-f]{32}$' THEN 'md5' \
             WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram' END, ',' ORDER BY rolname) \
             FROM pg_authid WHERE rolname LIKE '%_user'"
        ),
        "md5_user:md5,scram_user:scram"
    );
    proxy
}

fn psql_as(proxy: &TestProxy, port: u16, user: &str, password: &str) -> std::process::Output {
    proxy
        .psql(&format!(
            "host=127.0.0.1 port={port} user={user} dbname=postgres sslmode=disable"
        ))
        .env("PGPASSWORD", password)
        .args(["-c", "SELECT current_user, 6 * 7"])
        .output()
        .expect("psql starts")
}

async fn connect_as(
    port: u16,
    user: &str,
    password: &str,
) -> Result<String, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname("postgres");
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    let row = client.query_one("SELECT current_user::text", &[]).await?;
    Ok(row.get(0))
}

fn db_error(error: &tokio_postgres::Error) -> &DbError {
    error
        .as_db_error()
        .unwrap_or_else(|| panic!("expected a server error, got {error:?}"))
}

#[test]
fn psql_with_correct_md5_and_scram_passwords() {
    let proxy = start();
    for (user, password) in [("md5_user", MD5_PASSWORD), ("scram_user", SCRAM_PASSWORD)] {
        let output = psql_as(&proxy, proxy.port(), user, password);
        assert!(
            output.status.success(),
            "{user}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("{user}|42")
        );
    }
}

#[tokio::test]
async fn tokio_postgres_with_correct_md5_and_scram_passwords() {
    let proxy = start();
    for (user, password) in [("md5_user", MD5_PASSWORD), ("scram_user", SCRAM_PASSWORD)] {
        let current = connect_as(proxy.port(), user, password)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(current, user);
    }
}

#[tokio::test]
async fn wrong_password_is_refused_as_postgres_refuses_it() {
    let proxy = start();
    let direct = proxy.cluster.port();
    for (user, password) in [
        ("md5_user", "wrong"),
        ("scram_user", "wrong"),
        ("scram_user", MD5_PASSWORD),
        ("no_such_user", "whatever"),
    ] {
        let through_proxy = connect_as(proxy.port(), user, password)
            .await
            .expect_err("wrong password refused through the proxy");
        let directly = connect_as(direct, user, password)
            .await
            .expect_err("wrong password refused directly");
        let (through_proxy, directly) = (db_error(&through_proxy), db_error(&directly));
        assert_eq!(through_proxy.code(), &SqlState::INVALID_PASSWORD, "{user}");
        assert_eq!(through_proxy.code(), directly.code(), "{user}");
        assert_eq!(through_proxy.severity(), "FATAL");
        assert_eq!(through_proxy.message(), directly.message(), "{user}");
        assert_eq!(
            through_proxy.message(),
            format!("password authentication failed for user \"{user}\"")
        );
    }
    // The proxy still serves after refusals.
    assert_eq!(
        connect_as(proxy.port(), "scram_user", SCRAM_PASSWORD)
            .await
            .unwrap(),
        "scram_user"
    );
}

#[test]
fn psql_reports_the_same_refusal_as_postgres() {
    let proxy = start();
    for user in ["md5_user", "scram_user"] {
        let through_proxy = psql_as(&proxy, proxy.port(), user, "wrong");
        let directly = psql_as(&proxy, proxy.cluster.port(), user, "wrong");
        assert!(!through_proxy.status.success() && !directly.status.success());
        // psql names the address it tried; the rest of its message must match.
        let strip = |output: &std::process::Output, port: u16| {
            String::from_utf8_lossy(&output.stderr).replace(&format!("port {port} "), "port N ")
        };
        let through_proxy = strip(&through_proxy, proxy.port());
        assert_eq!(through_proxy, strip(&directly, proxy.cluster.port()));
        assert!(
            through_proxy.contains(&format!(
                "FATAL:  password authentication failed for user \"{user}\""
            )),
            "{through_proxy}"
        );
    }
}

/// The `password` hba method asks for the password in clear text; the proxy relays that too.
#[test]
fn cleartext_passwords_are_relayed() {
    let proxy = TestProxy::start_with(
        ClusterOptions {
            auth: ClusterAuth::Cleartext,
            ..ClusterOptions::default()
        },
        |_| {},
    );
    proxy.admin(&format!(
        "CREATE ROLE plain_user LOGIN PASSWORD '{MD5_PASSWORD}'"
    ));
    let output = psql_as(&proxy, proxy.port(), "plain_user", MD5_PASSWORD);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "plain_user|42"
    );
    let refused = psql_as(&proxy, proxy.port(), "plain_user", "wrong");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
