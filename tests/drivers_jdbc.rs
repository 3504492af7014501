//! pgJDBC through the proxy: the driver Java services use.
//!
//! Uses Debian's `libpostgresql-jdbc-java` jar (installed with apt-get when missing; Maven
//! Central is not reachable), compiles `tests/drivers/jdbc/*.java` into `target/` and runs
//! them with the proxy's JDBC URL. The program checks every result and exits non-zero on a
//! mismatch; here we also require the lines saying what passed.

use crate::common;
use crate::deps;

use std::process::{Command, Stdio};

use common::TestProxy;
use common::versions::versioned_proxy;

/// Runs `tests/drivers/jdbc/{program}.java` with the proxy's JDBC URL; its stdout, after
/// checking that it exited successfully.
fn run_program(proxy: &TestProxy, program: &str) -> String {
    let jar = deps::jdbc_jar();
    let classes = deps::jdbc_classes(&jar);
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{}/postgres?user=postgres&sslmode=disable",
        proxy.port()
    );
    let output = Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{}", jar.display(), classes.display()))
        .args([program, &url])
        .stdin(Stdio::null())
        .output()
        .expect("java starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `DatabaseMetaData` (getColumns, getPrimaryKeys, getTables, getIndexInfo) at v1 and v2:
/// each version's `model_metadata`, its columns in order with types, nullability, defaults,
/// and the base table's comments.
#[test]
fn pgjdbc_database_metadata_follows_the_version() {
    let proxy = versioned_proxy();
    let stdout = run_program(&proxy, "ReflectChecks");
    for version in ["v1", "v2"] {
        for check in [
            "session",
            "getColumns",
            "getColumns REMARKS",
            "getTables REMARKS",
            "getPrimaryKeys",
            "getTables",
            "getIndexInfo",
        ] {
            assert!(
                stdout
                    .lines()
                    .any(|line| line == format!("ok {version} {check}")),
                "missing check {version} {check} in:\n{stdout}"
            );
        }
    }
    assert!(
        stdout.ends_with("jdbc reflection: all checks passed\n"),
        "{stdout}"
    );
}

#[test]
fn pgjdbc_prepare_threshold_batch_transaction_binary_errors() {
    let proxy = TestProxy::start();
    let stdout = run_program(&proxy, "JdbcChecks");
    for check in [
        "statement uses a server-side prepare after the threshold",
        "one named server-side statement",
        "batch update counts",
        "batch rows",
        "transaction seen by another session",
        "error SQLSTATEs",
        "usable after errors",
        "query timeout SQLSTATE",
        "cancelled promptly",
        "usable after cancel",
        "binary int8",
        "binary float8",
        "binary bytea",
        "binary int4[]",
        "binary timestamptz",
        "binary statement server-prepared",
    ] {
        assert!(
            stdout.lines().any(|line| line == format!("ok {check}")),
            "missing check {check:?} in:\n{stdout}"
        );
    }
    assert!(stdout.ends_with("jdbc: all checks passed\n"), "{stdout}");
    assert_eq!(
        proxy.admin("SELECT count(*), max(id) FROM jdbc_items"),
        "1001|5001"
    );
}

/// pgJDBC sends its `ApplicationName` as a `SET` once connected (unless
/// `assumeMinServerVersion` is 9.0 or later): a rule on the application routes the session
/// either way (the Java walk: the `SET` left it at the default version).
#[test]
fn pgjdbc_application_name_is_matched_by_rules_however_it_is_sent() {
    let proxy = versioned_proxy();
    common::versions::catalog_command(
        &proxy,
        "route",
        &["add", "--version", "v2", "--application", "billing-*"],
    )
    .unwrap();
    let reloaded = common::wait_until(std::time::Duration::from_secs(10), || {
        let conninfo = format!("{} application_name=billing-probe", proxy.conninfo());
        let output = proxy
            .psql(&conninfo)
            .args(["-c", "SHOW viewgate.version"])
            .output();
        output.is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "v2")
    });
    assert!(reloaded, "the proxy never routed by the new rule");
    let stdout = run_program(&proxy, "ApplicationName");
    assert_eq!(stdout, "set billing-svc v2\nstartup billing-svc v2\n");
}
