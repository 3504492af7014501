//! `viewgate route add|remove|set-weights|list`: changing the routing rules in the catalog.
//!
//! Each change is one transaction under the apply lock (so it cannot interleave with an apply
//! or a retirement that might retire a version the rule names): the catalog is brought up to
//! date, every version the rule names must be active, the change is recorded in
//! `apply_history` (action `route`) and announced with `NOTIFY viewgate_control`, which
//! Postgres delivers only on commit. Every value is bound, never pasted into SQL.

use std::fmt;
use std::time::Instant;

use serde::Serialize;
use tokio_postgres::{Client, Transaction};

use crate::catalog_read;
use crate::control::catalog::{self, HistoryEntry};
use crate::control::error::ControlError;
use crate::control::templates::Templates;
use crate::control::views::spec::DEFAULT_LOCK_TIMEOUT;
use crate::model::{Assign, CatalogRules, Cidr, Glob, Guard};

/// What `route add` writes.
#[derive(Debug, Clone)]
pub struct NewRule {
    pub match_user: Option<Glob>,
    pub match_database: Option<Glob>,
    pub match_application: Option<Glob>,
    pub match_cidr: Option<Cidr>,
    pub assign: Assign,
    pub enforce: bool,
    /// Where to insert (rules at this position and after move down one); `None`: last.
    pub position: Option<i32>,
    pub guard: Guard,
    pub note: Option<String>,
}

/// A rule `route add` created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddedRule {
    pub id: i64,
    pub position: i32,
    pub assign: String,
}

/// A rule `route remove` deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedRule {
    pub id: i64,
}

impl fmt::Display for RemovedRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {} removed; proxies re-route its sessions at their next transaction boundary",
            self.id
        )
    }
}

/// What `route set-weights` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsChanged {
    pub id: i64,
    /// The assignment before, as the catalog had it (JSON text if it was not a valid rule).
    pub from: String,
    pub to: Assign,
}

impl fmt::Display for WeightsChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {}: {} -> {}; sessions move at their next transaction boundary",
            self.id, self.from, self.to
        )
    }
}

/// Every rule, in evaluation order (read-only; no lock).
pub async fn list(client: &Client) -> Result<CatalogRules, ControlError> {
    if !catalog_read::catalog_exists(client).await? {
        return Err(ControlError::NoCatalog);
    }
    Ok(catalog_read::load_rules(client).await?)
}

pub async fn add(client: &mut Client, rule: &NewRule) -> Result<AddedRule, ControlError> {
    rule.guard.validate()?;
    let started = Instant::now();
    let transaction = begin(client).await?;
    check_active(&transaction, &rule.assign).await?;
    let db = |context: &'static str| {
        move |error: tokio_postgres::Error| ControlError::database(context, &error)
    };
    let position = match rule.position {
        Some(position) => {
            // The unique constraint is checked at the end of the statement, so one UPDATE can
            // shift the tail of the list.
            transaction
                .execute(
                    "UPDATE viewgate.routing_rules SET position = position + 1 WHERE position >= $1",
                    &[&position],
                )
                .await
                .map_err(db("making room for the rule"))?;
            position
        }
        None => transaction
            .query_one(
                "SELECT COALESCE(max(position), 0) + 1 FROM viewgate.routing_rules",
                &[],
            )
            .await
            .map_err(db("finding the end of the rule list"))?
            .get(0),
    };
    let text = |glob: &Option<Glob>| glob.as_ref().map(|g| g.as_str().to_owned());
    let cidr = rule.match_cidr.map(|cidr| cidr.to_string());
    let assign = rule.assign.to_json().to_string();
    let min_queries = rule.guard.min_queries.map(|n| n as i32);
    let id: i64 = transaction
        .query_one(
            "INSERT INTO viewgate.routing_rules
               (position, match_user, match_database, match_application, match_cidr, assign,
                enforce, guard_error_rate, guard_window_ms, guard_min_queries, note)
             VALUES ($1, $2, $3, $4, $5::text::cidr, $6::text::jsonb, $7, $8, $9, $10, $11)
             RETURNING id",
            &[
                &position,
                &text(&rule.match_user),
                &text(&rule.match_database),
                &text(&rule.match_application),
                &cidr,
                &assign,
                &rule.enforce,
                &rule.guard.error_rate,
                &rule.guard.window_ms(),
                &min_queries,
                &rule.note,
            ],
        )
        .await
        .map_err(db("adding the routing rule"))?
        .get(0);
    finish(transaction, started, &rule.assign).await?;
    Ok(AddedRule {
        id,
        position,
        assign: rule.assign.to_string(),
    })
}

pub async fn remove(client: &mut Client, id: i64) -> Result<RemovedRule, ControlError> {
    let started = Instant::now();
    let transaction = begin(client).await?;
    let row = transaction
        .query_opt(
            "DELETE FROM viewgate.routing_rules WHERE id = $1 RETURNING assign::text",
            &[&id],
        )
        .await
        .map_err(|error| ControlError::database("removing the routing rule", &error))?
        .ok_or(ControlError::RuleNotFound(id))?;
    // The history names the versions the rule assigned, when the row was a valid rule.
    let assign = parse_assign(&row.get::<_, String>(0)).unwrap_or(Assign::Split(Vec::new()));
    finish(transaction, started, &assign).await?;
    Ok(RemovedRule { id })
}

/// What `route enable` / `route disable` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleToggled {
    pub id: i64,
    pub enabled: bool,
}

impl fmt::Display for RuleToggled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.enabled { "enabled" } else { "disabled" };
        write!(
            f,
            "rule {} {state}; proxies re-route its sessions at their next transaction boundary",
            self.id
        )
    }
}

/// Turns a rule on or off without losing it. Enabling checks its versions are still active.
pub async fn set_enabled(
    client: &mut Client,
    id: i64,
    enabled: bool,
) -> Result<RuleToggled, ControlError> {
    let started = Instant::now();
    let transaction = begin(client).await?;
    let row = transaction
        .query_opt(
            "UPDATE viewgate.routing_rules SET enabled = $2 WHERE id = $1 RETURNING assign::text",
            &[&id, &enabled],
        )
        .await
        .map_err(|error| ControlError::database("changing the routing rule", &error))?
        .ok_or(ControlError::RuleNotFound(id))?;
    let assign = parse_assign(&row.get::<_, String>(0)).unwrap_or(Assign::Split(Vec::new()));
    if enabled {
        check_active(&transaction, &assign).await?;
    }
    finish(transaction, started, &assign).await?;
    Ok(RuleToggled { id, enabled })
}

pub async fn set_weights(
    client: &mut Client,
    id: i64,
    to: Assign,
) -> Result<WeightsChanged, ControlError> {
    let started = Instant::now();
    let transaction = begin(client).await?;
    let from: String = transaction
        .query_opt(
            "SELECT assign::text FROM viewgate.routing_rules WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(|error| ControlError::database("reading the routing rule", &error))?
        .ok_or(ControlError::RuleNotFound(id))?
        .get(0);
    check_active(&transaction, &to).await?;
    transaction
        .execute(
            "UPDATE viewgate.routing_rules SET assign = $2::text::jsonb WHERE id = $1",
            &[&id, &to.to_json().to_string()],
        )
        .await
        .map_err(|error| ControlError::database("changing the rule's weights", &error))?;
    finish(transaction, started, &to).await?;
    let from = parse_assign(&from).map_or(from, |assign| assign.to_string());
    Ok(WeightsChanged { id, from, to })
}

fn parse_assign(json: &str) -> Option<Assign> {
    Assign::from_json(&serde_json::from_str(json).ok()?).ok()
}

/// Starts a rule change: the transaction, the apply lock, and a catalog in today's shape
/// (a catalog from an older build gets the rules table here).
async fn begin(client: &mut Client) -> Result<Transaction<'_>, ControlError> {
    let transaction = client
        .transaction()
        .await
        .map_err(|error| ControlError::database("starting the routing transaction", &error))?;
    if !catalog_read::catalog_exists(&transaction).await? {
        return Err(ControlError::NoCatalog);
    }
    catalog::set_local_lock_timeout(&transaction, DEFAULT_LOCK_TIMEOUT).await?;
    catalog::wait_apply_lock(&transaction).await?;
    catalog::ensure_catalog(&transaction, &Templates::built_in()).await?;
    Ok(transaction)
}

/// Every version `assign` names must be active now (checked under the apply lock, so no
/// retirement can slip in before commit).
async fn check_active(transaction: &Transaction<'_>, assign: &Assign) -> Result<(), ControlError> {
    let active: Vec<String> = transaction
        .query(
            "SELECT version FROM viewgate.versions WHERE state = 'active' ORDER BY version",
            &[],
        )
        .await
        .map_err(|error| ControlError::database("reading the active versions", &error))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    match assign
        .versions()
        .find(|version| !active.iter().any(|a| a == version))
    {
        Some(version) => Err(ControlError::NotActive {
            version: version.to_owned(),
            active: if active.is_empty() {
                "none".into()
            } else {
                active.join(", ")
            },
        }),
        None => Ok(()),
    }
}

/// Records the change, announces it, commits.
async fn finish(
    transaction: Transaction<'_>,
    started: Instant,
    assign: &Assign,
) -> Result<(), ControlError> {
    let versions: Vec<String> = assign.versions().map(str::to_owned).collect();
    let entry = HistoryEntry::event("route", versions.clone(), started.elapsed());
    catalog::record_history(&transaction, &entry).await?;
    catalog::notify_change(&transaction, "route", &versions).await?;
    transaction
        .commit()
        .await
        .map_err(|error| ControlError::database("committing the routing change", &error))
}

/// `route list` as a table, one rule a line in evaluation order.
pub fn list_text(rules: &CatalogRules) -> String {
    if rules.rules.is_empty() && rules.invalid.is_empty() {
        return "no routing rules: sessions get their declared version, else the default\n".into();
    }
    let header = [
        "ID", "POS", "MATCH", "ASSIGN", "ENFORCE", "GUARD", "ENABLED", "NOTE",
    ]
    .map(String::from)
    .to_vec();
    let yes_no = |flag: bool| if flag { "yes" } else { "no" }.to_owned();
    let mut lines: Vec<Vec<String>> = vec![header];
    for rule in &rules.rules {
        lines.push(vec![
            rule.id.to_string(),
            rule.position.to_string(),
            rule.match_text(),
            rule.assign.to_string(),
            yes_no(rule.enforce),
            rule.guard.to_string(),
            yes_no(rule.enabled),
            rule.note.clone().unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|column| {
            lines
                .iter()
                .map(|line| line[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for invalid in &rules.invalid {
        out.push_str(&format!(
            "rule {} (position {}) is invalid and ignored by the proxies: {}\n",
            invalid.id, invalid.position, invalid.problem
        ));
    }
    out
}
