//! The `viewgate` command line as a user meets it: the README's demo, and configuration
//! mistakes reported with a message that says what to fix.

use crate::common;

use std::process::{Command, Stdio};

use common::viewgate_binary;

#[test]
fn demo_tells_a_migration_under_live_traffic_and_cleans_up() {
    let output = Command::new(viewgate_binary())
        .args(["demo", "--no-wait"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
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
