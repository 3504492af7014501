//! pg_dump through the proxy: refused at its first statement with the way out (a dump over a
//! direct connection), in a versioned database and in one without versions alike. pg_dump
//! (since PostgreSQL 15.8 and 16.4) sets `restrict_nonsystem_relation_kind` to refuse reading
//! views, and through the proxy every version's tables and catalog are views; its `set_config`
//! of a computed name was refused with a message about the search_path (the operator-tools
//! walk). The same dump over a direct connection goes.

use std::process::{Command, Output};

use crate::common;

use common::TestProxy;
use common::versions::{psql, versioned_proxy};

/// pg_dump's statement (src/bin/pg_dump/pg_dump.c, `set_restrict_relation_kind`).
const PG_DUMPS_RESTRICTION: &str = "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'";

#[test]
fn pg_dump_through_the_proxy_is_refused_with_the_way_out() {
    let proxy = versioned_proxy();
    proxy.admin("CREATE DATABASE plain");
    // pg_dump refuses a server of a later major version than its own (the other servers' runs
    // bring the server alone): the statement itself is checked whatever pg_dump is at hand.
    if pg_dump_major(&proxy) >= proxy.cluster.major_version().unwrap() {
        dumps_are_refused_and_go_directly(&proxy);
    }
    let refused = proxy
        .psql(&proxy.conninfo())
        .args(["-v", "VERBOSITY=verbose", "-c", PG_DUMPS_RESTRICTION])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("ERROR:  0A000: restrict_nonsystem_relation_kind"),
        "{stderr}"
    );
    // Reading the setting passes.
    assert!(psql(&proxy, Some("v1"), "SHOW restrict_nonsystem_relation_kind").is_ok());
}

fn dumps_are_refused_and_go_directly(proxy: &TestProxy) {
    let versioned = dump(
        proxy,
        &format!("{} options='-c viewgate.version=v2'", proxy.conninfo()),
    );
    let stderr = String::from_utf8_lossy(&versioned.stderr);
    assert!(!versioned.status.success());
    assert!(
        stderr.contains(
            "restrict_nonsystem_relation_kind is not set through viewgate at version \"v2\""
        ) && stderr.contains("take a dump over a direct connection to Postgres"),
        "{stderr}"
    );
    let plain = dump(
        proxy,
        &proxy.conninfo().replace("dbname=postgres", "dbname=plain"),
    );
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success());
    assert!(
        stderr.contains("is not set through viewgate in a session without a version")
            && stderr.contains("take a dump over a direct connection to Postgres"),
        "{stderr}"
    );
    // Over a direct connection the dump goes, the versions' views in it.
    let direct = dump(
        proxy,
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            proxy.cluster.port()
        ),
    );
    assert!(
        direct.status.success(),
        "{}",
        String::from_utf8_lossy(&direct.stderr)
    );
    let schema = String::from_utf8_lossy(&direct.stdout);
    assert!(schema.contains("CREATE VIEW public.model_metadata_v2"));
}

fn dump(proxy: &TestProxy, conninfo: &str) -> Output {
    Command::new(proxy.cluster.bin("pg_dump"))
        .args(["--schema-only", "-d", conninfo])
        .output()
        .unwrap()
}

/// The major version of the pg_dump beside the server's binaries (`pg_dump (PostgreSQL) 15.18`).
fn pg_dump_major(proxy: &TestProxy) -> u32 {
    let version = Command::new(proxy.cluster.bin("pg_dump"))
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&version.stdout)
        .split_whitespace()
        .find_map(|word| word.split('.').next()?.parse().ok())
        .unwrap()
}
