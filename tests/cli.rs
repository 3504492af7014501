//! The `viewgate` command line as a user meets it: the README's demo, and configuration
//! mistakes reported with a message that says what to fix.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::viewgate_binary;
use viewgate::pg_cluster::{initdb_template, scratch_dir};

#[test]
fn demo_tells_a_migration_under_live_traffic_and_cleans_up() {
    let demo = Command::new(viewgate_binary())
        .args(["demo", "--no-wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The demo's initdb template is there while it runs and gone once it exits.
    let pid = demo.id();
    let mut template_seen = false;
    let deadline = Instant::now() + DEMO_TEMPLATE_WAIT;
    while !template_seen && Instant::now() < deadline {
        template_seen = !demo_templates(pid).is_empty();
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = demo.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // The migration ran with v1 writing, progress on stderr (JSON lines: not a terminal).
    assert!(stdout.contains("migration v1 -> v2 started: "), "{stdout}");
    assert!(stdout.contains(" rows backfilled in "), "{stdout}");
    assert!(
        stderr.contains("\"backfill\":\"public.model_metadata\""),
        "{stderr}"
    );
    // v1 sees v2's row in its own shape; v2 sees v1's rows with model_type from `up`.
    assert!(
        stdout.contains("model_name=bert  model_version=1.0  hyperparameters={}"),
        "{stdout}"
    );
    assert!(
        stdout.contains("model_type=neural_network  count="),
        "{stdout}"
    );
    assert!(stdout.contains("none lost"), "{stdout}");
    assert!(stdout.contains("migration to v2 completed"), "{stdout}");
    assert!(
        stdout.contains("model_name=mlp  model_type=neural_network  schema_version=1"),
        "{stdout}"
    );
    assert!(stdout.contains("the throwaway cluster is gone"), "{stdout}");
    // No client of the story is refused or fails on the way (v2's first client waits until
    // the proxy has loaded v2).
    assert!(!stderr.contains("session ended with an error"), "{stderr}");
    assert!(
        template_seen,
        "no initdb template of the demo's in {:?}",
        scratch_dir()
    );
    assert_eq!(demo_templates(pid), Vec::<String>::new(), "left behind");
}

/// How long the demo may take to make its initdb template.
const DEMO_TEMPLATE_WAIT: Duration = Duration::from_secs(30);

/// The initdb templates process `pid` has in the clusters' scratch directory.
fn demo_templates(pid: u32) -> Vec<String> {
    let prefix = initdb_template::directory_prefix(pid);
    std::fs::read_dir(scratch_dir())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

fn serve_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(viewgate_binary());
    command.arg("serve").args(args).stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    assert!(!output.status.success(), "serve {args:?} must fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn configuration_mistakes_name_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("viewgate.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nmax_clients = 5\n").unwrap();
    let error = serve_error(&["--config", file.to_str().unwrap()], &[]);
    assert!(error.contains("unknown field `max_clients`"), "{error}");

    let error = serve_error(&["--upstream", "mysql://db"], &[]);
    assert!(error.contains("scheme must be postgres://"), "{error}");

    let error = serve_error(
        &["--listen", "127.0.0.1:0"],
        &[("VIEWGATE_SHUTDOWN_TIMEOUT", "soon")],
    );
    assert!(
        error.contains("shutdown_timeout") || error.contains("duration"),
        "{error}"
    );

    let error = serve_error(&["--config", "/nonexistent/viewgate.toml"], &[]);
    assert!(
        error.contains("cannot read config file /nonexistent/viewgate.toml"),
        "{error}"
    );
}
