//! Integration-test harness: a throwaway Postgres with a viewgate proxy in front of it.
//!
//! The proxy runs on its own runtime in a background thread, so tests may block (run psql,
//! pgbench, Python) without starving it. Dropping a [`TestProxy`] closes the proxy's sessions,
//! then stops and deletes the cluster, also when the test panicked.
#![allow(dead_code)]

pub mod certs;
pub mod fault_relay;
pub mod http;
pub mod raw;
pub mod versions;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use viewgate::config::{Config, UpstreamTlsMode};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};
use viewgate::proxy::Proxy;
use viewgate::shutdown::Shutdown;

#[allow(unused_imports)]
pub use viewgate::pg_cluster::ClusterAuth;

pub struct TestProxy {
    pub address: SocketAddr,
    shutdown: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
    // Declared last: dropped after the proxy has stopped.
    pub cluster: ThrowawayCluster,
}

impl TestProxy {
    /// A trust-auth cluster behind a proxy with default settings.
    pub fn start() -> Self {
        Self::start_with(ClusterOptions::default(), |_| {})
    }

    /// A cluster started with `options` behind a proxy whose config `tweak` may change.
    pub fn start_with(options: ClusterOptions, tweak: impl FnOnce(&mut Config)) -> Self {
        let cluster = ThrowawayCluster::start(&options).expect("throwaway cluster starts");
        let mut config = proxy_config(&cluster);
        tweak(&mut config);
        let (address, shutdown, thread) = spawn_proxy(config);
        TestProxy {
            address,
            shutdown,
            thread: Some(thread),
            cluster,
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// A libpq URL through the proxy.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port())
    }

    /// A libpq key=value string through the proxy as the superuser.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} dbname=postgres",
            self.port()
        )
    }

    /// Runs SQL directly on the cluster (not through the proxy), as the superuser.
    pub fn admin(&self, sql: &str) -> String {
        self.cluster
            .psql("postgres", sql)
            .expect("admin SQL succeeds")
    }

    /// A psql command through the proxy with `-X -A -t -v ON_ERROR_STOP=1` set.
    pub fn psql(&self, conninfo: &str) -> Command {
        let mut command = Command::new(self.cluster.bin("psql"));
        command
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                conninfo,
            ])
            .stdin(Stdio::null());
        command
    }

    /// Stops the proxy now: sessions get 57P01.
    pub fn stop(&mut self) {
        self.shutdown.close_sessions();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The configuration tests start from: the cluster as upstream, a free port, short timeouts.
pub fn proxy_config(cluster: &ThrowawayCluster) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        upstream: format!("postgres://127.0.0.1:{}", cluster.port()),
        shutdown_timeout: Duration::from_secs(1),
        log_level: "warn".into(),
        ..Config::default()
    };
    config.upstream_tls.mode = UpstreamTlsMode::Disable;
    config
}

/// Starts a proxy with `config` on a runtime of its own; returns once it is listening.
pub fn spawn_proxy(config: Config) -> (SocketAddr, Shutdown, std::thread::JoinHandle<()>) {
    // Through libtest's capture: logs show only for failing tests.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var(viewgate::logging::LOG_ENV).unwrap_or_else(|_| config.log_level.clone()),
        )
        .with_test_writer()
        .try_init();
    let shutdown = Shutdown::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let proxy_shutdown = shutdown.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime starts");
        runtime.block_on(async move {
            let proxy = Proxy::bind(config, proxy_shutdown)
                .await
                .expect("proxy binds");
            ready_tx.send(proxy.local_addr().unwrap()).unwrap();
            viewgate::cli::serve::run(proxy, None).await;
        });
    });
    let address = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("proxy starts listening");
    (address, shutdown, thread)
}

/// The `viewgate` binary, for tests that need a separate process (signals, CLI).
pub fn viewgate_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_viewgate"))
}

/// A `viewgate serve` child process; killed on drop if still running.
///
/// Its stdout and stderr go to a temporary file, never to a pipe: a test that leaves a pipe
/// unread would be testing a full pipe (faults.rs does that on purpose, through
/// [`ProxyProcess::start_with_unread_stderr`]).
pub struct ProxyProcess {
    pub child: Child,
    pub port: u16,
    log: Option<tempfile::NamedTempFile>,
}

impl ProxyProcess {
    /// Starts `viewgate serve` in front of `cluster` with extra `VIEWGATE_*` variables, and
    /// waits until it accepts connections.
    pub fn start(cluster: &ThrowawayCluster, env: &[(&str, &str)]) -> Self {
        Self::start_on(cluster, viewgate::pg_cluster::free_port().unwrap(), env)
    }

    /// As `start`, listening on `port` (for proxies that must know each other's ports).
    pub fn start_on(cluster: &ThrowawayCluster, port: u16, env: &[(&str, &str)]) -> Self {
        Self::start_in_front_of(&upstream_url(cluster), port, env)
    }

    /// As `start_on`, in front of the upstream at `upstream` (a URL).
    pub fn start_in_front_of(upstream: &str, port: u16, env: &[(&str, &str)]) -> Self {
        let log = tempfile::NamedTempFile::new().expect("a temporary log file");
        // One open file for both streams, so they share an offset and do not overwrite.
        let output = log.reopen().expect("the log file reopens");
        let mut command = serve_command(upstream, port, env);
        command
            .stdout(output.try_clone().expect("the log file is shared"))
            .stderr(output);
        Self::spawned(command, port, Some(log))
    }

    /// As `start`, logging at the level the configuration says rather than the harness's
    /// debug (a test of `log_level`).
    pub fn start_with_configured_logging(cluster: &ThrowawayCluster, env: &[(&str, &str)]) -> Self {
        let port = viewgate::pg_cluster::free_port().unwrap();
        let log = tempfile::NamedTempFile::new().expect("a temporary log file");
        let output = log.reopen().expect("the log file reopens");
        let mut command = serve_command(&upstream_url(cluster), port, env);
        command
            .env_remove("VIEWGATE_LOG_LEVEL")
            .stdout(output.try_clone().expect("the log file is shared"))
            .stderr(output);
        Self::spawned(command, port, Some(log))
    }

    /// As `start`, with stderr a pipe the caller holds and never reads.
    pub fn start_with_unread_stderr(
        cluster: &ThrowawayCluster,
        env: &[(&str, &str)],
    ) -> (Self, std::process::ChildStderr) {
        let port = viewgate::pg_cluster::free_port().unwrap();
        let mut command = serve_command(&upstream_url(cluster), port, env);
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut process = Self::spawned(command, port, None);
        let stderr = process.child.stderr.take().expect("stderr is piped");
        (process, stderr)
    }

    fn spawned(mut command: Command, port: u16, log: Option<tempfile::NamedTempFile>) -> Self {
        let child = command.spawn().expect("viewgate starts");
        let process = ProxyProcess { child, port, log };
        let started = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(started, "viewgate serve did not start listening on {port}");
        process
    }

    /// Sends SIGHUP: a reload, as `systemctl reload` asks for one.
    pub fn hang_up(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits until `line` is in the log `times` times; fails showing the log otherwise.
    pub fn wait_logged(&self, line: &str, times: usize) {
        assert!(
            wait_until(Duration::from_secs(10), || self.log().matches(line).count()
                == times),
            "{line} ×{times}: {}",
            self.log()
        );
    }

    /// What the proxy has logged so far (stdout and stderr), for failure messages.
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log.path()).ok())
            .unwrap_or_default()
    }
}

/// `viewgate serve --listen 127.0.0.1:<port>` in front of `upstream`, logging at debug level,
/// with `env` added.
fn serve_command(upstream: &str, port: u16, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(viewgate_binary());
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", upstream])
        .env("VIEWGATE_LOG_LEVEL", "viewgate=debug")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// The URL `viewgate serve --upstream` takes for `cluster`.
pub fn upstream_url(cluster: &ThrowawayCluster) -> String {
    format!("postgres://127.0.0.1:{}?sslmode=disable", cluster.port())
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command and returns its stdout, panicking with stderr when it fails.
pub fn run_ok(command: &mut Command) -> String {
    let output = command.output().expect("command starts");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
