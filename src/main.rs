//! The `viewgate` command line: the binary's edge, where errors become messages and exit codes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgGroup, Parser, Subcommand};

use viewgate::admin::AdminServer;
use viewgate::cli;
use viewgate::cli::commands as control;
use viewgate::cli::duration_arg::parse_duration;
use viewgate::cli::process;
use viewgate::cli::route::RouteCommand;
use viewgate::config::{Config, ConfigSource, Overrides};
use viewgate::control::cutover::guard::GuardArgs;
use viewgate::control::cutover::upstream::{self as upstream_cutover, CutoverOptions};
use viewgate::demo::{self, DemoOptions};
use viewgate::proxy::Proxy;
use viewgate::shutdown::{Shutdown, TerminationSignals};
use viewgate::telemetry::heartbeat::ProxyIdentity;

/// mimalloc rather than the system allocator: a cold rewrite allocates and frees hundreds of
/// small objects (sqlparser's tree, libpg_query's memory contexts, the JSON it reads), and
/// with glibc's malloc that was a quarter of its cost (61.0 → 46.8 µs, `benches/rewrite.rs`,
/// docs/benchmarks.md). The benches set the same allocator, so they measure what runs here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "viewgate",
    version,
    about = "PostgreSQL versioned-view compatibility proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// TOML configuration file.
        #[arg(long, env = "VIEWGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:6432].
        #[arg(long)]
        listen: Option<String>,
        /// The Postgres server behind the proxy, e.g. postgres://127.0.0.1:5432.
        #[arg(long)]
        upstream: Option<String>,
    },
    /// Start a throwaway local Postgres with the proxy in front of it.
    Demo {
        /// Address for the proxy [default: a free port on 127.0.0.1].
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Exit after the self-check instead of serving until Ctrl-C.
        #[arg(long)]
        no_wait: bool,
    },
    /// Create the viewgate catalog (schema `viewgate`); safe to run again.
    Init {
        /// The database, e.g. postgres://user@host:5432/app.
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
        /// Directory of templates overriding the built-in ones.
        #[arg(long)]
        templates: Option<PathBuf>,
    },
    /// Blue-green flip of the default version (sessions move at their next transaction
    /// boundary), back with --rollback; or, with --upstream, move every proxy's sessions to
    /// another Postgres server at their next transaction boundary.
    #[command(group(ArgGroup::new("mode").required(true).args(["to", "rollback", "upstream"])))]
    Cutover {
        /// The version that becomes the default.
        #[arg(long)]
        to: Option<String>,
        /// Return to the version the last cutover replaced.
        #[arg(long)]
        rollback: bool,
        /// The new upstream server (postgres://host:port[?sslmode=...]); the proxies pause,
        /// reconnect every session there replaying its settings and prepared statements, and
        /// resume. Needs --admin.
        #[arg(long)]
        upstream: Option<String>,
        /// The catalog database: required for --to/--rollback; with --upstream, the switch
        /// is recorded there (and --wait-replication reads the slot there).
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
        /// With --upstream: how long in-flight transactions may take to finish (and the slot
        /// to catch up) before the cutover is aborted.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: Duration,
        /// With --upstream: before committing, wait until this logical replication slot on
        /// the old upstream (--database) has confirmed all its WAL.
        #[arg(long, requires = "upstream")]
        wait_replication: Option<String>,
        /// With --to: roll the cutover back by itself if the new default fails more than this
        /// fraction of its default sessions' requests, across every proxy, within the window.
        #[arg(long, requires = "to")]
        guard_error_rate: Option<f64>,
        /// With --to: how long the guard watches after the cutover (1s to 300s; default 60s).
        #[arg(long, requires = "to", value_parser = parse_duration)]
        guard_window: Option<Duration>,
        /// With --to: requests needed across every proxy before the guard judges (default 20).
        #[arg(long, requires = "to")]
        guard_min_queries: Option<u32>,
    },
    /// Pause the proxies: each session stops at its next transaction boundary, clients wait
    /// (no error). Fails, resuming, if transactions outlast --timeout.
    Pause {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Resume paused proxies; prints how long clients waited.
    Resume {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make the proxies read their configuration file and TLS files again (client certificate
    /// and key, the upstream's CA file), as SIGHUP does; sessions go on. Prints the settings
    /// applied and those that take a restart; fails naming a file that was kept.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Versions, the default, routing rules, live sessions per version per proxy, recent events.
    Status {
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Generate, apply, inspect and retire versioned views (see docs/views.md).
    Views {
        #[command(subcommand)]
        command: ViewsCommand,
    },
    /// Routing rules: which clients run at which version, in evaluation order (README,
    /// "Routing rules"). Proxies apply a change at each session's next transaction boundary.
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
    /// Physical schema changes under live traffic: expand, backfill, serve both versions,
    /// contract (see docs/migrations.md).
    Migrate {
        #[command(subcommand)]
        command: cli::migrate::MigrateCommand,
    },
    /// Shadow reads: run sampled read-only statements again at another version and report
    /// where the results differ (see docs/operations.md).
    Shadow {
        #[command(subcommand)]
        command: cli::shadow::ShadowCommand,
    },
}

#[derive(Subcommand)]
enum ViewsCommand {
    /// Print the SQL `apply` would run; changes nothing. Offline unless --database is given.
    Generate {
        #[arg(long)]
        spec: PathBuf,
        /// Check names and expressions against this database (read-only).
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: Option<String>,
        /// Do not connect, even if a database is configured.
        #[arg(long)]
        offline: bool,
        #[arg(long)]
        templates: Option<PathBuf>,
    },
    /// Apply the spec in one transaction; a no-op when nothing changed.
    Apply {
        #[arg(long)]
        spec: PathBuf,
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
        #[arg(long)]
        templates: Option<PathBuf>,
        #[command(flatten)]
        locks: LockArgs,
    },
    /// Show each version, its views, and whether they match the spec.
    Status {
        #[arg(long)]
        spec: PathBuf,
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
        #[arg(long)]
        templates: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Retire a version: drop its views and mark it retired in the catalog.
    Drop {
        #[arg(long)]
        version: String,
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
        #[arg(long)]
        templates: Option<PathBuf>,
        #[command(flatten)]
        locks: LockArgs,
    },
}

/// Which proxies a pause, resume, reload or upstream cutover talks to.
#[derive(clap::Args)]
struct AdminArgs {
    /// A proxy's admin API, e.g. http://127.0.0.1:6433; repeat for several proxies.
    #[arg(long = "admin", env = "VIEWGATE_ADMIN", value_delimiter = ',')]
    admin: Vec<String>,
    /// The proxies' admin_token.
    #[arg(long, env = "VIEWGATE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// How long DDL may wait for locks, shared by the commands that change the database.
#[derive(clap::Args)]
struct LockArgs {
    /// Longest wait for a lock per attempt [default: the spec's, else 2000].
    #[arg(long)]
    lock_timeout_ms: Option<u64>,
    /// Attempts before giving up on lock timeouts [default: the spec's, else 5].
    #[arg(long)]
    max_attempts: Option<u32>,
}

impl LockArgs {
    fn overrides(&self) -> control::LockOverrides {
        control::LockOverrides {
            lock_timeout: self.lock_timeout_ms.map(std::time::Duration::from_millis),
            max_attempts: self.max_attempts,
        }
    }
}

fn main() -> std::process::ExitCode {
    process::without_transparent_huge_pages();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. } | Command::Demo { .. }) {
        process::end_quietly_on_a_closed_pipe();
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("viewgate: error: {}", user_message(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without a backtrace: a message for the person at the
/// terminal. Causes a message already quotes are not repeated.
fn user_message(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            upstream,
        } => {
            let source = ConfigSource {
                file: config,
                overrides: Overrides { listen, upstream },
            };
            let config = source.load()?;
            runtime(config.worker_threads)?.block_on(serve(config, source))
        }
        Command::Demo { listen, no_wait } => runtime(0)?.block_on(async {
            viewgate::logging::init(Default::default(), "warn");
            demo::run(DemoOptions {
                listen,
                exit_after_check: no_wait,
            })
            .await
            .context("demo failed")
        }),
        Command::Init {
            database,
            templates,
        } => runtime(0)?.block_on(async {
            control::init(&database, templates.as_deref()).await?;
            println!("viewgate catalog is ready (schema viewgate)");
            Ok(())
        }),
        Command::Cutover {
            to,
            upstream: Some(url),
            database,
            admin,
            timeout,
            wait_replication,
            ..
        } if to.is_none() => runtime(0)?.block_on(async {
            let proxies = upstream_cutover::clients(&admin.admin, admin.token)?;
            let options = CutoverOptions {
                url,
                timeout,
                database,
                wait_replication,
            };
            println!("{}", upstream_cutover::cutover(&proxies, &options).await?);
            Ok(())
        }),
        Command::Cutover {
            to,
            database,
            guard_error_rate,
            guard_window,
            guard_min_queries,
            ..
        } => runtime(0)?.block_on(async {
            let guard = GuardArgs {
                error_rate: guard_error_rate,
                window: guard_window,
                min_queries: guard_min_queries,
            }
            .to_guard()?;
            if guard.is_some() && to.is_none() {
                bail!("the --guard-* options go with --to VERSION (a guarded cutover)");
            }
            let database = database
                .context("--database (or VIEWGATE_DATABASE) is required for a version cutover")?;
            let outcome = control::cutover(&database, to.as_deref(), guard.as_ref()).await?;
            println!("{outcome}");
            cli::proxies_loaded::report(&database).await;
            Ok(())
        }),
        Command::Status { database, json } => runtime(0)?.block_on(async {
            let overview = control::overview(&database).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&overview)?);
            } else {
                print!("{overview}");
            }
            Ok(())
        }),
        Command::Pause { admin, timeout } => runtime(0)?.block_on(async {
            let proxies = upstream_cutover::clients(&admin.admin, admin.token)?;
            println!("{}", upstream_cutover::pause(&proxies, timeout).await?);
            Ok(())
        }),
        Command::Resume { admin } => runtime(0)?.block_on(async {
            let proxies = upstream_cutover::clients(&admin.admin, admin.token)?;
            println!("{}", upstream_cutover::resume(&proxies).await?);
            Ok(())
        }),
        Command::Reload { admin } => runtime(0)?.block_on(async {
            let proxies = upstream_cutover::clients(&admin.admin, admin.token)?;
            println!("{}", upstream_cutover::reload(&proxies).await?);
            Ok(())
        }),
        Command::Views { command } => runtime(0)?.block_on(views(command)),
        Command::Route { command } => Ok(runtime(0)?.block_on(cli::route::run(command))?),
        Command::Migrate { command } => {
            viewgate::logging::init(Default::default(), "warn");
            Ok(runtime(0)?.block_on(cli::migrate::run(command))?)
        }
        Command::Shadow { command } => Ok(runtime(0)?.block_on(cli::shadow::run(command))?),
    }
}

/// The async runtime; `worker_threads` 0 means one per CPU core.
fn runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn serve(config: Config, source: ConfigSource) -> anyhow::Result<()> {
    let _logs = viewgate::logging::init_serving(config.log_format, &config.log_level);
    let mut signals = TerminationSignals::install().context("cannot install signal handlers")?;
    // Caught before the listener opens, as the termination signals are: SIGHUP's default
    // action would end the process, every session with it.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    let shutdown = Shutdown::new();
    let admin = config.admin_listen.clone();
    let proxy = Proxy::bind(config, shutdown.clone()).await?;
    // A reload reads the same layers again; set before anything can ask for one.
    let _ = proxy.state().config_source.set(source);
    let mut admin_address = None;
    if let Some(address) = admin {
        let server = AdminServer::bind(&address, proxy.state().clone()).await?;
        admin_address = Some(server.local_addr()?);
        tracing::info!(listen = %server.local_addr()?, "admin API serving");
        tokio::spawn(server.run(proxy.state().clone()));
    }
    tokio::spawn(viewgate::proxy::reload::reload_on_hangup(
        proxy.state().clone(),
        hangups,
    ));
    let identity = ProxyIdentity::new(proxy.local_addr()?, admin_address);
    tracing::info!(listen = %proxy.local_addr()?, upstream = %proxy.state().upstream.load().address, "viewgate serving");
    let serving = tokio::spawn(viewgate::cli::serve::run(proxy, Some(identity)));
    tokio::select! {
        signal = signals.recv() => {
            tracing::info!(signal, "shutting down");
            shutdown.begin();
        }
        _ = shutdown.begun() => {}
    }
    // Returns once the heartbeat has removed this proxy's row from the catalog.
    serving.await.context("the accept loop failed")?;
    tracing::info!("stopped");
    Ok(())
}

async fn views(command: ViewsCommand) -> anyhow::Result<()> {
    viewgate::logging::init(Default::default(), "warn");
    match command {
        ViewsCommand::Generate {
            spec,
            database,
            offline,
            templates,
        } => {
            let database = database.filter(|_| !offline);
            print!(
                "{}",
                control::generate(&spec, templates.as_deref(), database.as_deref()).await?
            );
        }
        ViewsCommand::Apply {
            spec,
            database,
            templates,
            locks: lock_args,
        } => {
            let overrides = lock_args.overrides();
            let outcome = control::apply(&spec, templates.as_deref(), &database, overrides).await?;
            println!("{outcome}");
            cli::proxies_loaded::report(&database).await;
        }
        ViewsCommand::Status {
            spec,
            database,
            templates,
            json,
        } => {
            let report = control::status(&spec, templates.as_deref(), &database).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
        }
        ViewsCommand::Drop {
            version,
            database,
            templates,
            locks: lock_args,
        } => {
            let overrides = lock_args.overrides();
            let outcome =
                control::drop_version(&database, &version, templates.as_deref(), overrides).await?;
            println!("{outcome}");
            cli::proxies_loaded::report(&database).await;
        }
    }
    Ok(())
}
