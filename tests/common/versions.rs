//! A proxy with versioned sessions, for the tests of version routing (`tests/versioning.rs`,
//! `tests/versions_python.rs`).
//!
//! The seed example (`examples/model_metadata`) is applied with the real CLI, the catalog's
//! default version is set to `v1`, and the proxy learns the versions from the catalog; the
//! helper returns once a default session answers `SHOW viewgate.version` with `v1`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};

use super::{TestProxy, run_ok, viewgate_binary, wait_until};

/// The seed example: `schema.sql` (the base table) and `viewgate.toml` (v1 and v2).
pub const EXAMPLE: &str = "examples/model_metadata";

/// A proxy over a cluster with the seed example applied and `v1` as the default version.
pub fn versioned_proxy() -> TestProxy {
    versioned_proxy_with(|_| {})
}

/// [`versioned_proxy`] with more of the proxy's configuration set by `configure`.
pub fn versioned_proxy_with(configure: impl FnOnce(&mut viewgate::config::Config)) -> TestProxy {
    let proxy = TestProxy::start_with(ClusterOptions::default(), |config| {
        config.catalog = Some(format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
            config.upstream.rsplit(':').next().unwrap()
        ));
        configure(config);
    });
    apply_example(&proxy.cluster);
    wait_for_v1(&proxy);
    proxy
}

/// Waits until the proxy has loaded the catalog: a session without a version is then v1
/// (Postgres itself answers `SHOW` for a version given at startup).
fn wait_for_v1(proxy: &TestProxy) {
    assert!(
        wait_until(Duration::from_secs(5), || psql(
            proxy,
            None,
            "SHOW viewgate.version"
        )
        .is_ok_and(|out| out == "v1")),
        "the proxy did not pick up the catalog"
    );
}

/// A proxy over a cluster with `schema` created and `spec` applied by the CLI, `v1` the
/// default version.
pub fn proxy_with_spec(schema: &str, spec: &str) -> TestProxy {
    let proxy = TestProxy::start_with(ClusterOptions::default(), |config| {
        config.catalog = Some(format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
            config.upstream.rsplit(':').next().unwrap()
        ));
    });
    proxy.admin(schema);
    let dir = tempfile::tempdir().unwrap();
    let spec_file = dir.path().join("viewgate.toml");
    std::fs::write(&spec_file, spec).unwrap();
    let spec_path = spec_file.display().to_string();
    catalog_command(&proxy, "views", &["apply", "--spec", &spec_path]).unwrap();
    proxy.admin("UPDATE viewgate.settings SET default_version = 'v1'; NOTIFY viewgate_control");
    wait_for_v1(&proxy);
    proxy
}

/// Creates the example's base table in `cluster`'s `postgres` database, applies its views with
/// the CLI, and makes `v1` the default version.
pub fn apply_example(cluster: &ThrowawayCluster) {
    let schema = std::fs::read_to_string(Path::new(EXAMPLE).join("schema.sql")).unwrap();
    cluster.psql("postgres", &schema).unwrap();
    run_ok(Command::new(viewgate_binary()).args([
        "views",
        "apply",
        "--spec",
        &format!("{EXAMPLE}/viewgate.toml"),
        "--database",
        &cluster.url(SUPERUSER, "postgres"),
    ]));
    cluster
        .psql(
            "postgres",
            "UPDATE viewgate.settings SET default_version = 'v1'; NOTIFY viewgate_control",
        )
        .unwrap();
}

/// Runs `viewgate COMMAND ARGS --database <the proxy's catalog>`: stdout on success, stderr
/// on failure, both trimmed.
pub fn catalog_command(proxy: &TestProxy, command: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(viewgate_binary())
        .arg(command)
        .args(args)
        .args(["--database", &proxy.cluster.url(SUPERUSER, "postgres")])
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Starts the migration `text` (file `file_name`) with the CLI, and waits until the proxy
/// serves its version (`version`).
pub fn start_migration(proxy: &TestProxy, file_name: &str, text: &str, version: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(file_name);
    std::fs::write(&file, text).unwrap();
    catalog_command(proxy, "migrate", &["start", &file.display().to_string()]).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || psql(
            proxy,
            Some(version),
            "SELECT 1"
        )
        .is_ok()),
        "the proxy learns {version}"
    );
}

/// Cuts over to `version` and completes the live migration once the proxy serves no session
/// at the old version.
pub fn cut_over_and_complete(proxy: &TestProxy, version: &str) {
    catalog_command(proxy, "cutover", &["--to", version]).unwrap();
    let mut completed = Err(String::new());
    assert!(
        wait_until(Duration::from_secs(20), || {
            completed = catalog_command(proxy, "migrate", &["complete"]);
            completed.is_ok()
        }),
        "completes once the proxy serves no session at the old version: {completed:?}"
    );
}

/// Runs SQL through the proxy with psql at `version` (None: the default).
pub fn psql(proxy: &TestProxy, version: Option<&str>, sql: &str) -> Result<String, String> {
    let mut conninfo = proxy.conninfo();
    if let Some(version) = version {
        conninfo.push_str(&format!(" options='-c viewgate.version={version}'"));
    }
    let output = proxy.psql(&conninfo).args(["-c", sql]).output().unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// How many columns `model_metadata` has for the session right now (through a Parse, so it
/// is rewritten for the session's current version).
pub async fn columns(client: &tokio_postgres::Client) -> usize {
    client
        .prepare("SELECT * FROM model_metadata")
        .await
        .unwrap()
        .columns()
        .len()
}

/// A tokio-postgres client through the proxy at the default version, or at `options`'
/// declared one.
pub async fn connect(proxy: &TestProxy) -> tokio_postgres::Client {
    connect_with(proxy, "").await
}

pub async fn connect_with(proxy: &TestProxy, options: &str) -> tokio_postgres::Client {
    let mut url = proxy.url(SUPERUSER, "postgres");
    if !options.is_empty() {
        url.push_str(&format!("?options={options}"));
    }
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}
