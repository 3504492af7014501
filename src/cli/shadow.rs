//! `viewgate shadow start|stop|report`: the subcommand's arguments and, for each, connect, run
//! and print. The catalog side is `control::shadow`; the proxies do the sampling and comparing.

use clap::Subcommand;

use crate::control::connect::connect;
use crate::control::error::ControlError;
use crate::control::shadow::report;
use crate::control::shadow::run::{self, ShadowArgs};

#[derive(Subcommand)]
pub enum ShadowCommand {
    /// Sample the read-only statements of sessions at --from, run each again at --to (and at
    /// --from) on the proxies' own connections, and record where the results differ.
    Start {
        /// The version whose sessions' statements are sampled.
        #[arg(long)]
        from: String,
        /// The version they are compared with.
        #[arg(long)]
        to: String,
        /// The fraction of eligible statements sampled (above 0, at most 1).
        #[arg(long)]
        rate: f64,
        /// Comparisons over every proxy before the run stops by itself (default 10000).
        #[arg(long)]
        budget: Option<u64>,
        /// Record differing rows as hashes, not values.
        #[arg(long)]
        redact: bool,
        /// Shadow only statements whose shape (constants shown as `?`, as the report prints
        /// it) contains this pattern, case-insensitively; `*` matches any run of characters.
        #[arg(long = "match", value_name = "PATTERN")]
        matching: Option<String>,
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
    },
    /// Stop the running shadow run (its report stays).
    Stop {
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
    },
    /// The running (else the latest) shadow run: counts over every proxy, differences found.
    Report {
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `shadow` subcommand and prints its outcome.
pub async fn run(command: ShadowCommand) -> Result<(), ControlError> {
    match command {
        ShadowCommand::Start {
            from,
            to,
            rate,
            budget,
            redact,
            matching,
            database,
        } => {
            let args = ShadowArgs {
                from,
                to,
                rate,
                budget,
                redact,
                matching,
            };
            args.check()?;
            let mut client = connect(&database).await?;
            println!("{}", run::start(&mut client, &args).await?);
            super::proxies_loaded::report(&database).await;
        }
        ShadowCommand::Stop { database } => {
            let mut client = connect(&database).await?;
            let id = run::stop(&mut client).await?;
            println!("shadow run {id} stopped; `viewgate shadow report` shows what it found");
            super::proxies_loaded::report(&database).await;
        }
        ShadowCommand::Report { database, json } => {
            let client = connect(&database).await?;
            let report = report::load(&client).await?;
            let text = match json {
                true => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
                false => report.to_string(),
            };
            write_out(&text)?;
        }
    }
    Ok(())
}

/// Writes `text` to stdout. A reader that stops early (`viewgate shadow report | head`) closes
/// the pipe, which is not the command's failure: `print!` panicked on it.
fn write_out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
