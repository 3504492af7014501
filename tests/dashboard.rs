//! The web dashboard in headless Chromium (Debian's `chromium`, driven through the DevTools
//! protocol by `tests/dashboard/drive.js` on Node): `/ui` shows no data before the admin token,
//! the panel loads with it, a routing rule's weights changed through the page (its
//! confirmation accepted) reach the catalog, and a change made elsewhere shows on the page
//! within 2 s. Screenshots go to `DASHBOARD_SCREENSHOTS` (a temporary directory by default;
//! docs/dashboard.md shows the committed ones).

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::http::{admin_ready, get};
use common::versions::apply_example;
use common::{ProxyProcess, run_ok, viewgate_binary, wait_until};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster, free_port};

const TOKEN: &str = "dashboard-test-token";
/// The issue's bound for the page to show a change.
const UPDATE_LIMIT_MS: u64 = 2000;

/// A headless Chromium with its DevTools port open; killed on drop, then its profile removed.
struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium(devtools_port: u16) -> Chromium {
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--remote-debugging-port={devtools_port}"),
            &format!("--user-data-dir={}", profile.path().display()),
            "about:blank",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts (Debian package `chromium`; .ci/run installs it)");
    let browser = Chromium {
        child,
        _profile: profile,
    };
    assert!(
        wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", devtools_port)).is_ok()
        }),
        "chromium's DevTools port did not open"
    );
    browser
}

#[test]
fn the_dashboard_changes_weights_and_follows_the_catalog() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    apply_example(&cluster);
    let database = cluster.url(SUPERUSER, "postgres");
    let rule = run_ok(Command::new(viewgate_binary()).args([
        "route",
        "add",
        "--split",
        "v2=10,v1=90",
        "--application",
        "web-*",
        "--database",
        &database,
    ]));
    let rule = rule.trim().to_owned();
    run_ok(Command::new(viewgate_binary()).args([
        "shadow",
        "start",
        "--from",
        "v1",
        "--to",
        "v2",
        "--rate",
        "0.05",
        "--database",
        &database,
    ]));
    let admin_port = free_port().unwrap();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let _process = ProxyProcess::start(
        &cluster,
        &[
            ("VIEWGATE_CATALOG", database.as_str()),
            ("VIEWGATE_ADMIN_LISTEN", admin_listen.as_str()),
            ("VIEWGATE_ADMIN_TOKEN", TOKEN),
        ],
    );
    assert!(wait_until(Duration::from_secs(10), || admin_ready(
        admin_port
    )));

    // Without the token: the page shell holds no data, the panel is refused.
    let (code, page) = get(admin_port, "/ui", None);
    assert_eq!(code, 200);
    assert!(
        page.contains("Admin token") && !page.contains("v2=10"),
        "{page}"
    );
    assert_eq!(get(admin_port, "/ui/panel", None).0, 401);
    assert_eq!(get(admin_port, "/ui/panel", Some("wrong")).0, 401);
    let (code, panel) = get(admin_port, "/ui/panel", Some(TOKEN));
    assert_eq!(code, 200, "{panel}");
    assert!(panel.contains("v2=10,v1=90"), "{panel}");

    let devtools_port = free_port().unwrap();
    let _browser = chromium(devtools_port);
    let shots = std::env::var("DASHBOARD_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("viewgate-dashboard"));
    std::fs::create_dir_all(&shots).unwrap();
    let mut driver = Command::new("node")
        .arg("--experimental-websocket")
        .arg("tests/dashboard/drive.js")
        .arg(devtools_port.to_string())
        .arg(format!("http://127.0.0.1:{admin_port}"))
        .arg(TOKEN)
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("the driver reports").unwrap();
    assert_eq!(ready, "READY");

    // The page changed the weights: the catalog has them.
    let assign = cluster
        .psql(
            "postgres",
            &format!("SELECT assign::text FROM viewgate.routing_rules WHERE id = {rule}"),
        )
        .unwrap();
    assert_eq!(assign, r#"{"split": [["v2", 30], ["v1", 70]]}"#);

    // A change made elsewhere shows on the page within 2 s.
    run_ok(Command::new(viewgate_binary()).args([
        "route",
        "set-weights",
        &rule,
        "v2=40,v1=60",
        "--database",
        &database,
    ]));
    let mut stdin = driver.stdin.take().unwrap();
    writeln!(stdin, "changed").unwrap();
    let result = lines.next().expect("the driver's result").unwrap();
    assert!(driver.wait().unwrap().success(), "{result}");
    let result: serde_json::Value = serde_json::from_str(&result).unwrap();
    eprintln!("dashboard: {result}");
    assert_eq!(result["rule"].as_str(), Some(rule.as_str()));
    assert_eq!(result["emptyBeforeLogin"], true);
    assert_eq!(
        result["dialogs"],
        serde_json::json!([format!("Set the weights of rule {rule} to v2=30,v1=70?")]),
        "the change asked for confirmation"
    );
    let shown_after = result["showedAfterMs"].as_u64().unwrap();
    assert!(
        shown_after <= UPDATE_LIMIT_MS,
        "the page showed the change after {shown_after} ms"
    );
    for shot in result["screenshots"].as_array().unwrap() {
        let size = std::fs::metadata(shot.as_str().unwrap()).unwrap().len();
        assert!(size > 1000, "{shot} is a real picture");
    }
}
