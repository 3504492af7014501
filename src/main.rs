//! The `viewgate` command line: the binary's edge, where errors become messages and exit codes.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use viewgate::config::{Config, Overrides};
use viewgate::demo::{self, DemoOptions};
use viewgate::proxy::Proxy;
use viewgate::shutdown::{self, Shutdown};

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve {
                config,
                listen,
                upstream,
            } => serve(config, Overrides { listen, upstream }).await,
            Command::Demo { listen, no_wait } => {
                viewgate::logging::init(Default::default(), "warn");
                demo::run(DemoOptions {
                    listen,
                    exit_after_check: no_wait,
                })
                .await
                .context("demo failed")
            }
        }
    })
}

async fn serve(config_file: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    let config = Config::load(config_file.as_deref(), std::env::vars(), &overrides)?;
    viewgate::logging::init(config.log_format, &config.log_level);
    let shutdown = Shutdown::new();
    let proxy = Proxy::bind(config, shutdown.clone()).await?;
    tracing::info!(listen = %proxy.local_addr()?, upstream = %proxy.state().upstream.address, "viewgate serving");
    let serving = tokio::spawn(proxy.run());
    tokio::select! {
        signal = shutdown::termination_signal() => {
            tracing::info!(signal = signal?, "shutting down");
            shutdown.begin();
        }
        _ = shutdown.begun() => {}
    }
    serving.await.context("the accept loop failed")?;
    tracing::info!("stopped");
    Ok(())
}
