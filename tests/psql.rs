//! psql through the proxy: simple protocol, multi-statement strings, \copy both ways.

use crate::common;

use common::{TestProxy, run_ok};

#[test]
fn simple_queries_and_multi_statement_strings() {
    let proxy = TestProxy::start();
    let out = run_ok(proxy.psql(&proxy.conninfo()).args([
        "-c",
        "CREATE TABLE t(id int primary key, note text); INSERT INTO t VALUES (1, 'a'), (2, 'b'); SELECT count(*) FROM t;",
    ]));
    assert_eq!(out.trim(), "2");
    let out = run_ok(
        proxy
            .psql(&proxy.conninfo())
            .args(["-c", "SELECT note FROM t ORDER BY id"]),
    );
    assert_eq!(out.trim(), "a\nb");
}

#[test]
fn copy_in_and_out() {
    let proxy = TestProxy::start();
    proxy.admin("CREATE TABLE items(id int, name text)");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let rows: String = (0..5000).map(|i| format!("{i},item {i}\n")).collect();
    std::fs::write(&input, &rows).unwrap();
    run_ok(proxy.psql(&proxy.conninfo()).args([
        "-c",
        &format!("\\copy items FROM '{}' WITH (FORMAT csv)", input.display()),
    ]));
    assert_eq!(
        proxy.admin("SELECT count(*), sum(id) FROM items"),
        "5000|12497500"
    );
    let output = dir.path().join("out.csv");
    run_ok(proxy.psql(&proxy.conninfo()).args([
        "-c",
        &format!(
            "\\copy (SELECT * FROM items ORDER BY id) TO '{}' WITH (FORMAT csv)",
            output.display()
        ),
    ]));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), rows);
}
