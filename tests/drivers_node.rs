//! node-postgres (`pg` from npm) through the proxy.
//!
//! The test runs `tests/drivers/node/pg_checks.js` with the proxy's DSN; the package is
//! installed once from the committed lock file into `target/driver-deps/node`. The script
//! checks every result and exits non-zero on a mismatch; here we also require the lines saying
//! what passed, and look at what it wrote directly on the cluster.

use crate::common;
use crate::deps;

use std::process::{Command, Stdio};

use common::TestProxy;

#[test]
fn node_postgres_simple_extended_transaction_prepared_errors() {
    let proxy = TestProxy::start();
    let node_modules = deps::node_modules();
    let output = Command::new("node")
        .arg(deps::drivers_src().join("node/pg_checks.js"))
        .arg(proxy.url("postgres", "postgres"))
        .env("NODE_PATH", &node_modules)
        .stdin(Stdio::null())
        .output()
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pg_checks.js failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for check in [
        "simple query",
        "parameterized query",
        "array parameter round-trip",
        "transaction commit and rollback",
        "named prepared statement exists once server-side",
        "error SQLSTATEs",
        "usable after errors",
    ] {
        assert!(
            stdout.lines().any(|line| line == format!("ok {check}")),
            "missing check {check:?} in:\n{stdout}"
        );
    }
    assert!(stdout.ends_with("pg: all checks passed\n"), "{stdout}");
    assert_eq!(
        proxy.admin("SELECT count(*), sum(id) FROM js_items"),
        "51|1326"
    );
}
