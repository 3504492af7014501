//! `viewgate route list|add|remove|enable|disable|set-weights`: the subcommand's arguments
//! and, for each, the catalog change and what is printed. The rules themselves are
//! `control::routing`; proxies apply a change at each session's next transaction boundary.

use clap::Subcommand;

use super::commands as control;
use super::duration_arg::parse_duration;
use crate::control::error::ControlError;
use crate::control::routing::RouteArgs;
use crate::control::routing::routes::list_text;

#[derive(Subcommand)]
pub enum RouteCommand {
    /// List the rules in evaluation order.
    List {
        /// The database holding the catalog, e.g. postgres://user@host:5432/app.
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a rule; prints the new rule's id.
    Add {
        /// Matching clients run at this version.
        #[arg(long, required_unless_present = "split", conflicts_with = "split")]
        version: Option<String>,
        /// A sticky weighted split in percent, e.g. v2=10,v1=90 (weights sum to 100).
        #[arg(long, value_name = "V=W,...")]
        split: Option<String>,
        /// Match the user name (a glob: * any run, ? one character, \ escapes).
        #[arg(long, visible_alias = "match-user", value_name = "GLOB")]
        user: Option<String>,
        /// Match the database the client connects to (a glob). Not --database, which is the
        /// catalog's URL.
        #[arg(long, value_name = "GLOB")]
        match_database: Option<String>,
        /// Match application_name (a glob): the startup's, then one the session sets.
        #[arg(long, visible_alias = "match-application", value_name = "GLOB")]
        application: Option<String>,
        /// Match the client's address, e.g. 10.0.0.0/8 or 2001:db8::/32.
        #[arg(long, visible_alias = "match-cidr")]
        cidr: Option<String>,
        /// The rule beats the client's own declaration (startup or SET).
        #[arg(long)]
        enforce: bool,
        /// Insert at this position (1 = evaluated first); later rules move down [default: last].
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        position: Option<i32>,
        /// Canary guard: drop the canary's weight to 0 above this error rate (e.g. 0.05).
        #[arg(long)]
        guard_error_rate: Option<f64>,
        /// Canary guard: the window the error rate is measured over, e.g. 30s.
        #[arg(long, requires = "guard_error_rate", value_parser = parse_duration)]
        guard_window: Option<std::time::Duration>,
        /// Canary guard: queries needed in the window before the rate counts.
        #[arg(long, requires = "guard_error_rate")]
        guard_min_queries: Option<u32>,
        /// A note for people reading `route list`.
        #[arg(long)]
        note: Option<String>,
        /// The database holding the catalog, e.g. postgres://user@host:5432/app.
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
    },
    /// Remove a rule by id.
    Remove {
        id: i64,
        /// The database holding the catalog, e.g. postgres://user@host:5432/app.
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
    },
    /// Turn a rule back on (its versions must be active).
    Enable {
        id: i64,
        /// The database holding the catalog, e.g. postgres://user@host:5432/app.
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
    },
    /// Turn a rule off without removing it: proxies skip it until it is enabled again.
    Disable {
        id: i64,
        /// The database holding the catalog, e.g. postgres://user@host:5432/app.
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
    },
    /// Replace a rule's assignment with a split, e.g. v2=20,v1=80.
    SetWeights {
        id: i64,
        #[arg(value_name = "V=W,...")]
        weights: String,
        /// The database holding the catalog, e.g. postgres://user@host:5432/app.
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
    },
}

/// Runs one `route` subcommand and prints its outcome.
pub async fn run(command: RouteCommand) -> Result<(), ControlError> {
    crate::logging::init(Default::default(), "warn");
    match command {
        RouteCommand::List { database, json } => {
            let rules = control::route_list(&database).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rules).unwrap_or_default()
                );
            } else {
                print!("{}", list_text(&rules));
            }
        }
        RouteCommand::Add {
            version,
            split,
            user,
            match_database,
            application,
            cidr,
            enforce,
            position,
            guard_error_rate,
            guard_window,
            guard_min_queries,
            note,
            database,
        } => {
            let args = RouteArgs {
                version,
                split,
                user,
                database: match_database,
                application,
                cidr,
                enforce,
                position,
                guard_error_rate,
                guard_window,
                guard_min_queries,
                note,
            };
            let added = control::route_add(&database, &args).await?;
            // The id alone on stdout, for scripts; the summary for people on stderr.
            println!("{}", added.id);
            eprintln!(
                "rule {} added at position {}: {}; proxies apply it at each session's next transaction boundary",
                added.id, added.position, added.assign
            );
            super::proxies_loaded::report(&database).await;
        }
        RouteCommand::Remove { id, database } => {
            println!("{}", control::route_remove(&database, id).await?);
            super::proxies_loaded::report(&database).await;
        }
        RouteCommand::Enable { id, database } => {
            println!("{}", control::route_set_enabled(&database, id, true).await?);
            super::proxies_loaded::report(&database).await;
        }
        RouteCommand::Disable { id, database } => {
            println!(
                "{}",
                control::route_set_enabled(&database, id, false).await?
            );
            super::proxies_loaded::report(&database).await;
        }
        RouteCommand::SetWeights {
            id,
            weights,
            database,
        } => {
            println!(
                "{}",
                control::route_set_weights(&database, id, &weights).await?
            );
            super::proxies_loaded::report(&database).await;
        }
    }
    Ok(())
}
