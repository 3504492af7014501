//! A reload (SIGHUP, `POST /reload`, `viewgate reload`) reads the configuration file again, as
//! PgBouncer's RELOAD does: reloadable settings apply from then on without ending a session,
//! the others keep their running value and are named, and a file that does not read changes
//! nothing.

use crate::common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::http::{admin_ready, get, post_json};
use common::raw;
use common::{ProxyProcess, viewgate_binary, wait_until};
use viewgate::pg_cluster::{ClusterOptions, ThrowawayCluster, free_port};

const PROTOCOL_3_0: u32 = 196_608;

fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).expect("the configuration file is written");
}

/// A new connection's first answer: `Ok` once it is logged in, the error's SQLSTATE if it
/// was refused.
fn log_in(address: SocketAddr) -> Result<TcpStream, String> {
    let mut stream = raw::connect(address);
    stream
        .write_all(&raw::startup_packet(PROTOCOL_3_0, &[("user", "postgres")]))
        .unwrap();
    match raw::read_message(&mut stream) {
        Some((b'E', body)) => Err(raw::parse_error(&body).code),
        Some(_) => {
            while !matches!(raw::read_message(&mut stream), Some((b'Z', _)) | None) {}
            Ok(stream)
        }
        None => Err("closed".into()),
    }
}

fn answers(session: &mut TcpStream) -> bool {
    raw::first_column(&raw::simple_query(session, "SELECT 'on'")) == ["on"]
}

/// `max_client_connections` raised and lowered by SIGHUP: the sessions served go on whatever
/// the limit, new ones are counted against the new one; a changed setting read only at start
/// is named and keeps its value; a file that is not a valid configuration changes nothing.
#[test]
fn sighup_moves_the_connection_limit_names_what_takes_a_restart_and_keeps_an_invalid_file_out() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("viewgate.toml");
    write_config(
        &file,
        "max_client_connections = 2\nrewrite_cache_entries = 100\n",
    );
    let proxy = ProxyProcess::start(
        &cluster,
        &[("VIEWGATE_CONFIG", &file.display().to_string())],
    );
    let address: SocketAddr = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    // The harness's readiness probe held a slot for a moment.
    let mut held = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        if let Ok(session) = log_in(address) {
            held.push(session);
        }
        held.len() == 2
    }));
    assert_eq!(log_in(address).err().as_deref(), Some("53300"));

    write_config(
        &file,
        "max_client_connections = 3\nrewrite_cache_entries = 200\n",
    );
    proxy.hang_up();
    proxy.wait_logged("reload: settings read", 1);
    proxy.wait_logged("take a restart", 1);
    assert!(
        proxy.log().contains("rewrite_cache_entries"),
        "the setting read only at start is named: {}",
        proxy.log()
    );
    held.push(log_in(address).expect("the raised limit lets a third in"));
    assert_eq!(log_in(address).err().as_deref(), Some("53300"));

    write_config(
        &file,
        "max_client_connections = 1\nrewrite_cache_entries = 100\n",
    );
    proxy.hang_up();
    proxy.wait_logged("reload: settings read", 2);
    assert!(held.iter_mut().all(answers), "the sessions served go on");
    assert_eq!(log_in(address).err().as_deref(), Some("53300"));

    write_config(&file, "max_client_connections = 0\n");
    proxy.hang_up();
    proxy.wait_logged("reload: kept every setting in use", 1);
    assert!(
        proxy
            .log()
            .contains("max_client_connections must be at least 1"),
        "{}",
        proxy.log()
    );
    held.truncate(1);
    assert_eq!(
        log_in(address).err().as_deref(),
        Some("53300"),
        "the limit in use (1) stays"
    );
    held.clear();
    let mut last = None;
    assert!(wait_until(Duration::from_secs(10), || {
        last = log_in(address).ok();
        last.is_some()
    }));
    assert!(
        answers(last.as_mut().unwrap()),
        "a slot is free once the sessions end"
    );
}

/// `POST /reload` and `viewgate reload` rotate the admin token at once; removing it waits for a
/// restart (the admin address is checked then); an unreadable file answers 422 and keeps it.
#[test]
fn a_reload_rotates_the_admin_token_but_never_removes_it() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("viewgate.toml");
    let admin_port = free_port().unwrap();
    let config = |token: Option<&str>| {
        let token = token.map(|t| format!("admin_token = \"{t}\"\n"));
        format!(
            "admin_listen = \"127.0.0.1:{admin_port}\"\n{}",
            token.unwrap_or_default()
        )
    };
    write_config(&file, &config(Some("first")));
    let _proxy = ProxyProcess::start(
        &cluster,
        &[("VIEWGATE_CONFIG", &file.display().to_string())],
    );
    assert!(wait_until(Duration::from_secs(10), || admin_ready(
        admin_port
    )));
    let metrics = |token: &str| get(admin_port, "/metrics", Some(token)).0;

    let (status, body) = post_json(admin_port, "/reload", Some("first"), "{}");
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["settings"]["outcome"], "read", "{body}");
    assert_eq!(
        answer["settings"]["applied"],
        serde_json::json!([]),
        "{body}"
    );

    write_config(&file, &config(Some("second")));
    let (status, body) = post_json(admin_port, "/reload", Some("first"), "{}");
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["settings"]["applied"],
        serde_json::json!(["admin_token"]),
        "{body}"
    );
    assert!(
        !body.contains("second"),
        "the answer shows no token: {body}"
    );
    assert_eq!(metrics("first"), 401, "the old token is refused at once");
    assert_eq!(metrics("second"), 200);

    write_config(&file, &config(None));
    let reload = Command::new(viewgate_binary())
        .args([
            "reload",
            "--admin",
            &format!("http://127.0.0.1:{admin_port}"),
        ])
        .args(["--token", "second"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&reload.stdout);
    assert!(
        reload.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    assert!(
        printed.contains("applied none, taking a restart admin_token"),
        "{printed}"
    );
    assert_eq!(
        metrics("second"),
        200,
        "a removed token waits for a restart"
    );
    assert_eq!(metrics("first"), 401);

    write_config(&file, "admin_token = \n");
    let (status, body) = post_json(admin_port, "/reload", Some("second"), "{}");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("settings: kept every one in use"), "{body}");
    assert_eq!(metrics("second"), 200);
}

/// `log_level` lowered by SIGHUP: a session's debug lines appear from the reload on, none
/// before it.
#[test]
fn sighup_changes_the_log_level() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("viewgate.toml");
    write_config(&file, "log_level = \"warn\"\n");
    let proxy = ProxyProcess::start_with_configured_logging(
        &cluster,
        &[("VIEWGATE_CONFIG", &file.display().to_string())],
    );
    let address: SocketAddr = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let session_line = "DEBUG";
    assert!(answers(&mut log_in(address).unwrap()));
    assert!(!proxy.log().contains(session_line), "{}", proxy.log());

    write_config(&file, "log_level = \"viewgate=debug\"\n");
    proxy.hang_up();
    assert!(answers(&mut log_in(address).unwrap()));
    proxy.wait_logged("reload: settings read", 1);
    assert!(
        wait_until(Duration::from_secs(10), || proxy
            .log()
            .contains(session_line)),
        "{}",
        proxy.log()
    );
}
