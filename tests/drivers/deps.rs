//! Client drivers for the driver tests, provisioned on first use so that plain `cargo test`
//! works on a fresh machine: a Python venv (psycopg 3, asyncpg), node-postgres from npm, and
//! Debian's pgJDBC jar. Everything lands under `target/driver-deps/`; each kind is built once,
//! under a file lock (tests run in parallel), and marked ready with a stamp naming
//! what was installed, so changing a pinned version re-provisions. A failed install fails the
//! test with the installer's output; nothing is skipped.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// `target/driver-deps`.
pub fn deps_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().expect("CARGO_TARGET_TMPDIR has a parent");
    let dir = target.join("driver-deps");
    std::fs::create_dir_all(&dir).expect("create target/driver-deps");
    dir
}

/// `tests/drivers` in the source tree.
pub fn drivers_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

/// Runs `provision` once per `stamp` under an exclusive lock on `target/driver-deps/NAME.lock`.
fn provisioned(name: &str, stamp: &str, provision: impl FnOnce(&Path)) -> PathBuf {
    let deps = deps_dir();
    let dir = deps.join(name);
    let lock = File::create(deps.join(format!("{name}.lock"))).expect("create lock file");
    lock.lock().expect("lock driver deps");
    let stamp_file = dir.join(".viewgate-ready");
    if std::fs::read_to_string(&stamp_file).ok().as_deref() != Some(stamp) {
        let started = Instant::now();
        eprintln!("provisioning {} (first run only)...", dir.display());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create deps dir");
        provision(&dir);
        std::fs::write(&stamp_file, stamp).expect("write stamp");
        eprintln!("provisioned {name} in {:.1?}", started.elapsed());
    }
    drop(lock);
    dir
}

/// Runs an installer step, panicking with its full output when it fails.
fn install_step(what: &str, command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {command:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The venv's python, with the pinned `tests/drivers/python/requirements.txt` installed.
pub fn python() -> PathBuf {
    let requirements = drivers_src().join("python/requirements.txt");
    let pinned = std::fs::read_to_string(&requirements).expect("read requirements.txt");
    let dir = provisioned("python", &pinned, |dir| {
        install_step(
            "creating the Python venv (needs python3 with the venv module)",
            Command::new("python3").args(["-m", "venv"]).arg(dir),
        );
        install_step(
            "pip install of the Python drivers (needs PyPI)",
            Command::new(dir.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--only-binary=:all:",
                    "-r",
                ])
                .arg(&requirements),
        );
    });
    dir.join("bin/python")
}

/// A directory whose `node_modules` holds the locked `tests/drivers/node` packages.
pub fn node_modules() -> PathBuf {
    let src = drivers_src().join("node");
    let lock = std::fs::read_to_string(src.join("package-lock.json")).expect("package-lock");
    let dir = provisioned("node", &lock, |dir| {
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(src.join(file), dir.join(file)).expect("copy package files");
        }
        install_step(
            "npm ci of the node drivers (needs npm and the npm registry)",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
                .current_dir(dir),
        );
    });
    dir.join("node_modules")
}

/// Debian's pgJDBC jar; installs `libpostgresql-jdbc-java` with apt when it is missing.
pub fn jdbc_jar() -> PathBuf {
    let jar = PathBuf::from("/usr/share/java/postgresql.jar");
    let lock = File::create(deps_dir().join("jdbc-apt.lock")).expect("create lock file");
    lock.lock().expect("lock apt install");
    if !jar.exists() {
        let started = Instant::now();
        eprintln!("installing libpostgresql-jdbc-java with apt-get (first run only)...");
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q", "libpostgresql-jdbc-java"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if !install() {
            install_step(
                "apt-get update (installing pgJDBC needs root and Debian's archive)",
                Command::new("apt-get").args(["update", "-q"]),
            );
            install_step(
                "apt-get install libpostgresql-jdbc-java",
                Command::new("apt-get")
                    .args(["install", "-y", "-q", "libpostgresql-jdbc-java"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            );
        }
        assert!(jar.exists(), "pgJDBC installed but {jar:?} is missing");
        eprintln!("installed pgJDBC in {:.1?}", started.elapsed());
    }
    drop(lock);
    jar
}

/// Compiles `tests/drivers/jdbc/*.java` against `jar` into `target/driver-deps/jdbc-classes`,
/// once per test process (it is fast, and keeps the classes in step with the sources).
pub fn jdbc_classes(jar: &Path) -> PathBuf {
    static CLASSES: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CLASSES.get_or_init(|| compile_jdbc(jar)).clone()
}

fn compile_jdbc(jar: &Path) -> PathBuf {
    let deps = deps_dir();
    let lock = File::create(deps.join("jdbc-classes.lock")).expect("create lock file");
    lock.lock().expect("lock javac");
    let classes = deps.join("jdbc-classes");
    let _ = std::fs::remove_dir_all(&classes);
    std::fs::create_dir_all(&classes).expect("create classes dir");
    let sources: Vec<PathBuf> = std::fs::read_dir(drivers_src().join("jdbc"))
        .expect("read tests/drivers/jdbc")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "java"))
        .collect();
    install_step(
        "javac of the JDBC test programs (needs a JDK)",
        Command::new("javac")
            .arg("-cp")
            .arg(jar)
            .arg("-d")
            .arg(&classes)
            .args(&sources),
    );
    drop(lock);
    classes
}

/// Runs `tests/drivers/python/{script}` with `args` in the provisioned venv, fails the test
/// with the script's output unless it exits 0, and returns its stdout.
pub fn run_python(script: &str, args: &[String]) -> String {
    let output = Command::new(python())
        .arg(drivers_src().join("python").join(script))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Asserts that a driver script reported every one of `checks` as passed (`ok <check>`).
pub fn assert_checked(stdout: &str, checks: &[&str]) {
    for check in checks {
        assert!(
            stdout.lines().any(|line| line == format!("ok {check}")),
            "missing check {check:?} in:\n{stdout}"
        );
    }
}
