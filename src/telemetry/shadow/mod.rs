//! Shadow reads, the proxy's side: [`SHADOW_WORKERS`] workers drain the queue the sessions fill
//! (`proxy::shadow_tap`), each on its own connection to the catalog's database (as the
//! `shadow_catalog` role where one is configured: a role with no rights of its own), and a
//! reporter writes this proxy's counts to the catalog every [`SHADOW_REPORT_INTERVAL`] and
//! ends the run when the budget is spent over every proxy.
//!
//! A worker takes a sampled statement; skips it unless [`classify`] finds a plain read, by
//! sqlparser's reading and Postgres's own, whose functions are all in `pg_proc` and none
//! volatile (`provolatile`), nor its operators, casts or domains (`volatility.rs`), and its
//! text differs between the two versions; then, in one `REPEATABLE READ READ ONLY`
//! transaction (one snapshot for every run, so concurrent writes cause no difference, and
//! nothing can write), with
//! [`SHADOW_STATEMENT_TIMEOUT`], `SET LOCAL ROLE` to the client's login role and the client's
//! `search_path` (set with `set_config` and a bound parameter), runs it at the old version and
//! at the new one — a simple Query as text, once the server's Parse of it showed one command;
//! an extended-protocol statement prepared with the
//! client's parameter types and bound with its parameters ([`bound`]) — and [`compare`]s them.
//! On a difference it runs the old version once more: a result that changes
//! between two runs at the same version (or an unordered LIMIT) is *non-deterministic*, not a
//! difference. The client's own result is never read or held: it streamed by untouched.
//!
//! The client's SQL never runs with the catalog user's rights (red-team pass 20b, S2/S3): a
//! statement whose role the catalog user cannot take is not run (`role_refused`). Nor while
//! the catalog user is a superuser and the client is not: SQL code the client wrote (a
//! function, reached through a view, an operator, …) can `RESET ROLE` inside the transaction,
//! which Postgres allows any invoker code, and would then run as the catalog user.
//!
//! What one comparison holds is bounded: [`MAX_SHADOW_ROWS`] rows and
//! [`MAX_SHADOW_RESULT_BYTES`] over all the results it keeps at once; past either it stops
//! reading, drops what it read and counts the statement `too_large`.

pub mod bound;
pub mod classify;
pub mod compare;
mod postgres_reading;
mod report;
mod skip;
mod volatility;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Mutex, mpsc};
use tokio_postgres::{Client, SimpleQueryMessage};

use self::classify::classify;
use self::compare::{ResultSet, compare};
pub use self::report::SHADOW_REPORT_INTERVAL;
use self::report::{PendingDiff, PendingDiffs, note_diff, report_loop};
use self::volatility::any_volatile;
use crate::control::connect::connect;
use crate::control::error::ControlError;
use crate::control::quote::quote_ident;
use crate::proxy::shadow_tap::{BoundParameters, ShadowCounters, ShadowJob};
use crate::proxy::state::ProxyState;
use crate::rewriter::{Rewrite, rewrite};

/// Shadow statements running at once on one proxy (one connection each).
pub const SHADOW_WORKERS: usize = 2;
/// How long one shadow statement may run.
pub const SHADOW_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows read of one result; a larger result is skipped, not compared.
pub const MAX_SHADOW_ROWS: usize = 10_000;
/// Bytes one comparison holds over the results it keeps at once (each value's text and its
/// slot); past it the comparison stops reading and the statement counts as too large.
/// Without it one statement made the proxy hold a gigabyte (red-team pass 20b, S5).
pub const MAX_SHADOW_RESULT_BYTES: usize = 16 * 1024 * 1024;
/// SQLSTATEs of a `SET ROLE` the catalog user may not make: insufficient_privilege (not a
/// member), invalid_parameter_value (no such role).
const ROLE_REFUSED_CODES: [&str; 2] = ["42501", "22023"];

/// How much lower the shadow thread's OS priority is than the process's (nice increment,
/// capped at the lowest priority, 19).
pub const SHADOW_THREAD_NICE: i32 = 10;

/// Runs the workers and the reporter on a thread of their own, at a lower OS priority than the
/// sessions' runtime, so parsing and comparing never take a core from a session; returns at
/// once. Nothing runs without a catalog.
pub fn spawn(state: Arc<ProxyState>, proxy_id: String) {
    if state.config.load().catalog.is_none() {
        return;
    }
    let started = std::thread::Builder::new()
        .name("viewgate-shadow".into())
        .spawn(move || {
            lower_priority();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(run(state, proxy_id)),
                Err(error) => tracing::warn!(%error, "shadow reads are off: no runtime"),
            }
        });
    if let Err(error) = started {
        tracing::warn!(%error, "shadow reads are off: no thread");
    }
}

/// Lowers this thread's priority (Linux: nice applies per thread); a failure leaves it as is.
fn lower_priority() {
    // SAFETY: gettid, getpriority and setpriority take no pointers; they only read and set
    // this thread's scheduling priority.
    let result = unsafe {
        let tid = u32::try_from(libc::gettid()).unwrap_or(0);
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(
            libc::PRIO_PROCESS,
            tid,
            current.saturating_add(SHADOW_THREAD_NICE).min(19),
        )
    };
    if result != 0 {
        tracing::debug!("could not lower the shadow thread's priority");
    }
}

/// The workers and the reporter until shutdown.
async fn run(state: Arc<ProxyState>, proxy_id: String) {
    let Some(url) = state.config.load().catalog.clone() else {
        return;
    };
    let Some(receiver) = state.shadow.take_receiver() else {
        return;
    };
    let receiver = Arc::new(Mutex::new(receiver));
    let pending = PendingDiffs::default();
    let workers_url = state
        .config
        .load()
        .shadow_catalog
        .clone()
        .unwrap_or_else(|| url.clone());
    for _ in 0..SHADOW_WORKERS {
        tokio::spawn(worker(
            state.clone(),
            workers_url.clone(),
            receiver.clone(),
            pending.clone(),
        ));
    }
    report_loop(state, url, proxy_id, pending).await;
}

/// What became of one sampled statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Matched,
    Diff,
    Nondeterministic,
    Error,
    Timeout,
    Skipped,
    TooLarge,
    RoleRefused,
}

fn count(state: &ProxyState, job: &ShadowJob, outcome: Outcome) {
    state
        .shadow
        .count(job, |counters: &ShadowCounters| match outcome {
            Outcome::Matched => &counters.matched,
            Outcome::Diff => &counters.diff,
            Outcome::Nondeterministic => &counters.nondeterministic,
            Outcome::Error => &counters.error,
            Outcome::Timeout => &counters.timeout,
            Outcome::Skipped => &counters.skipped,
            Outcome::TooLarge => &counters.too_large,
            Outcome::RoleRefused => &counters.role_refused,
        });
}

async fn worker(
    state: Arc<ProxyState>,
    url: String,
    receiver: Arc<Mutex<mpsc::Receiver<ShadowJob>>>,
    pending: PendingDiffs,
) {
    let mut client: Option<Client> = None;
    loop {
        let job = tokio::select! {
            _ = state.shutdown.begun() => return,
            job = async { receiver.lock().await.recv().await } => match job {
                Some(job) => job,
                None => return,
            },
        };
        // A run that ended since the statement was sampled is not worked on.
        if state.routing.load().shadow().map(|run| run.id) != Some(job.run.id) {
            continue;
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match connect(&url).await {
                Ok(connected) => connected
                    .batch_execute("SET application_name = 'viewgate shadow'")
                    .await
                    .ok()
                    .map(|()| connected),
                Err(error) => {
                    tracing::debug!(%error, "shadow worker could not connect");
                    None
                }
            };
        }
        let outcome = match client.as_ref() {
            Some(connected) => match shadow(connected, &state, &job, &pending).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::debug!(%error, "shadow statement not compared");
                    Outcome::Skipped
                }
            },
            None => Outcome::Skipped,
        };
        count(&state, &job, outcome);
    }
}

/// One sampled statement: classify, run at both versions, compare, record.
async fn shadow(
    client: &Client,
    state: &ProxyState,
    job: &ShadowJob,
    pending: &PendingDiffs,
) -> Result<Outcome, ControlError> {
    let Ok(eligible) = classify(&job.sql, job.parameters.is_some()) else {
        return Ok(Outcome::Skipped);
    };
    if any_volatile(client, &eligible).await? {
        return Ok(Outcome::Skipped);
    }
    let routing = state.routing.load();
    let (Some(from), Some(to)) = (routing.targets(&job.run.from), routing.targets(&job.run.to))
    else {
        return Ok(Outcome::Skipped);
    };
    let text = |targets| match rewrite(&job.sql, targets) {
        Ok(Rewrite::Unchanged) => Some(job.sql.to_string()),
        Ok(Rewrite::Rewritten(text)) => Some(text),
        Err(_) => None,
    };
    let (Some(from_sql), Some(to_sql)) = (text(from), text(to)) else {
        return Ok(Outcome::Skipped);
    };
    if from_sql == to_sql {
        // Nothing differs between the versions for this statement.
        return Ok(Outcome::Skipped);
    }
    let (shape, shape_hash) = classify::shape(&job.sql);
    let diff_record = |kind: &'static str, from_rows, to_rows, detail| {
        (
            kind,
            PendingDiff {
                shape: shape.clone(),
                from_rows,
                to_rows,
                detail,
                occurrences: 1,
            },
        )
    };

    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = {}",
            SHADOW_STATEMENT_TIMEOUT.as_millis()
        ))
        .await
        .map_err(|error| ControlError::database("starting a shadow transaction", &error))?;
    let statement = Statement {
        from_sql: &from_sql,
        to_sql: &to_sql,
        parameters: job.parameters.as_ref(),
        role: &job.role,
    };
    let result = in_transaction(client, job, &statement, &eligible).await;
    // Read only: rolling back loses nothing. Session advisory locks are the one thing a
    // read can take that outlives its transaction: whatever the checks above missed, none
    // stays held by the worker's connection (one round trip with the ROLLBACK).
    let _ = client
        .batch_execute("ROLLBACK; SELECT pg_catalog.pg_advisory_unlock_all()")
        .await;
    let (outcome, record) = match result? {
        Compared::Same => (Outcome::Matched, None),
        Compared::TooLarge => (Outcome::TooLarge, None),
        Compared::RoleRefused => (Outcome::RoleRefused, None),
        Compared::FailsAtFrom => (Outcome::Skipped, None),
        Compared::Nondeterministic => (Outcome::Nondeterministic, None),
        Compared::Differs(difference) => {
            let detail = serde_json::to_value(&difference).unwrap_or_default();
            let rows = |n: usize| Some(i64::try_from(n).unwrap_or(i64::MAX));
            (
                Outcome::Diff,
                Some(diff_record(
                    "diff",
                    rows(difference.from_rows),
                    rows(difference.to_rows),
                    detail,
                )),
            )
        }
        Compared::FailsAtTo { code, message } => {
            let timeout = code == "57014";
            let mut detail = serde_json::json!({ "sqlstate": code });
            if !job.run.redact {
                detail["message"] = message.into();
            }
            (
                if timeout {
                    Outcome::Timeout
                } else {
                    Outcome::Error
                },
                Some(diff_record(
                    if timeout { "timeout" } else { "error" },
                    None,
                    None,
                    detail,
                )),
            )
        }
    };
    if let Some((kind, diff)) = record {
        note_diff(pending, job.run.id, shape_hash.clone(), kind, diff);
    }
    Ok(outcome)
}

/// Inside the open transaction: the client's role, its search_path, then the comparison.
async fn in_transaction(
    client: &Client,
    job: &ShadowJob,
    statement: &Statement<'_>,
    eligible: &classify::Eligible,
) -> Result<Compared, ControlError> {
    if !take_client_role(client, &job.role).await? {
        return Ok(Compared::RoleRefused);
    }
    if let Some(path) = &job.search_path {
        client
            .execute("SELECT set_config('search_path', $1, true)", &[&&**path])
            .await
            .map_err(|error| ControlError::database("setting the client's search_path", &error))?;
    }
    compare_in_snapshot(client, statement, eligible, job.run.redact).await
}

/// `SET LOCAL ROLE` to the client's login role (quoted, never pasted), then a check that the
/// role now in effect is that role and that the session's own role is no superuser unless the
/// client's is: client code can `RESET ROLE` back to the session's role, so that role's rights
/// must not exceed a superuser client's. False: the statement must not run.
async fn take_client_role(client: &Client, role: &str) -> Result<bool, ControlError> {
    if role.is_empty() {
        return Ok(false);
    }
    if let Err(error) = client
        .batch_execute(&format!("SET LOCAL ROLE {}", quote_ident(role)))
        .await
    {
        return match error.code() {
            Some(code) if ROLE_REFUSED_CODES.contains(&code.code()) => {
                tracing::debug!(%error, "shadow statement not run: the client's role");
                Ok(false)
            }
            _ => Err(ControlError::database("taking the client's role", &error)),
        };
    }
    let row = client
        .query_opt(
            "SELECT current_user::text = $1::text AND (NOT s.rolsuper OR c.rolsuper)
             FROM pg_roles s, pg_roles c WHERE s.rolname = session_user AND c.rolname = $1::text",
            &[&role],
        )
        .await
        .map_err(|error| ControlError::database("checking the client's role", &error))?;
    let taken = row.is_some_and(|row| row.get::<_, bool>(0));
    if !taken && !SUPERUSER_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            role,
            "shadow reads skip this client: the catalog user is a superuser and the client is not (docs/operations.md, shadow reads)"
        );
    }
    Ok(taken)
}

/// Whether the superuser catalog user was warned about once (per proxy).
static SUPERUSER_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

enum Compared {
    Same,
    Differs(compare::Difference),
    Nondeterministic,
    TooLarge,
    /// Not run: the client's role could not be taken, or taking it would not bound the rights;
    /// or dropped: client code left it ([`Run::RoleLeft`]).
    RoleRefused,
    FailsAtFrom,
    FailsAtTo {
        code: String,
        message: String,
    },
}

/// A sampled statement as each version reads it, the client's parameters if it had any, and
/// the client's role, which every run must leave in effect.
struct Statement<'a> {
    from_sql: &'a str,
    to_sql: &'a str,
    parameters: Option<&'a BoundParameters>,
    role: &'a str,
}

/// One run of a statement inside the comparison.
enum Run {
    Rows(ResultSet),
    /// Past [`MAX_SHADOW_ROWS`] or the byte budget: dropped.
    TooLarge,
    /// Client code the statement reached reset the role (Postgres allows any invoker code
    /// to): what it read had the worker's session role's rights, and so would every later
    /// run in the transaction. Dropped, and nothing more runs.
    RoleLeft,
    Failed(tokio_postgres::Error),
}

impl Statement<'_> {
    /// Runs `sql` with at most `bytes` of results kept, and checks the client's role is still
    /// the one in effect.
    async fn run(&self, client: &Client, sql: &str, bytes: usize) -> Run {
        match self.read(client, sql, bytes).await {
            Ok(Some(result)) => match role_kept(client, self.role).await {
                true => Run::Rows(result),
                false => Run::RoleLeft,
            },
            Ok(None) => Run::TooLarge,
            Err(error) => Run::Failed(error),
        }
    }

    /// Runs `sql`; `None` when the result passes [`MAX_SHADOW_ROWS`] or `bytes` (the rest is
    /// not read into memory, what was read is dropped).
    async fn read(
        &self,
        client: &Client,
        sql: &str,
        bytes: usize,
    ) -> Result<Option<ResultSet>, tokio_postgres::Error> {
        match self.parameters {
            Some(parameters) => bound::read_bound(client, sql, parameters, bytes).await,
            None => {
                // Parse refuses more than one command, by the server's own lexer: the simple
                // Query below then runs the one statement classified, whatever a parser in
                // the proxy made of the text (the twenty-sixth red-team pass hid a COMMIT
                // and a catalog write behind `#--`). Dropping the statement closes it.
                drop(client.prepare(sql).await?);
                read(client, sql, bytes).await
            }
        }
    }
}

/// Inside the open snapshot: old version, new version, and the old one again on a difference.
/// The results held at once (old and new, then old and old again) share
/// [`MAX_SHADOW_RESULT_BYTES`].
async fn compare_in_snapshot(
    client: &Client,
    statement: &Statement<'_>,
    eligible: &classify::Eligible,
    redact: bool,
) -> Result<Compared, ControlError> {
    let (from_sql, to_sql) = (statement.from_sql, statement.to_sql);
    let from = match statement
        .run(client, from_sql, MAX_SHADOW_RESULT_BYTES)
        .await
    {
        Run::Rows(result) => result,
        Run::TooLarge => return Ok(Compared::TooLarge),
        Run::RoleLeft => return Ok(Compared::RoleRefused),
        Run::Failed(_) => return Ok(Compared::FailsAtFrom),
    };
    let left = MAX_SHADOW_RESULT_BYTES.saturating_sub(from.bytes());
    let to = match statement.run(client, to_sql, left).await {
        Run::Rows(result) => result,
        Run::TooLarge => return Ok(Compared::TooLarge),
        Run::RoleLeft => return Ok(Compared::RoleRefused),
        Run::Failed(error) => {
            let (code, message) = match error.as_db_error() {
                Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
                None => (String::new(), error.to_string()),
            };
            return Ok(Compared::FailsAtTo { code, message });
        }
    };
    let Some(difference) = compare(&from, &to, eligible.ordered, redact) else {
        return Ok(Compared::Same);
    };
    drop(to);
    if eligible.unordered_limit {
        return Ok(Compared::Nondeterministic);
    }
    match statement.run(client, from_sql, left).await {
        Run::Rows(again) if compare(&from, &again, eligible.ordered, redact).is_none() => {
            Ok(Compared::Differs(difference))
        }
        Run::TooLarge => Ok(Compared::TooLarge),
        Run::RoleLeft => Ok(Compared::RoleRefused),
        _ => Ok(Compared::Nondeterministic),
    }
}

/// Whether `role` (the client's) is still the role in effect; a failed check counts as not.
async fn role_kept(client: &Client, role: &str) -> bool {
    client
        .query_one("SELECT current_user::text = $1::text", &[&role])
        .await
        .is_ok_and(|row| row.get::<_, bool>(0))
}

/// Runs one statement; `None` when it returns more than [`MAX_SHADOW_ROWS`] rows or more than
/// `bytes` (the rest is not read into memory).
async fn read(
    client: &Client,
    sql: &str,
    bytes: usize,
) -> Result<Option<ResultSet>, tokio_postgres::Error> {
    let stream = client.simple_query_raw(sql).await?;
    futures_util::pin_mut!(stream);
    let mut result = ResultSet::default();
    let mut held = 0usize;
    while let Some(message) = stream.next().await {
        match message? {
            SimpleQueryMessage::RowDescription(columns) => {
                result.columns = columns.iter().map(|c| c.name().to_owned()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                if result.rows.len() >= MAX_SHADOW_ROWS {
                    return Ok(None);
                }
                let values: Vec<Option<String>> = (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect();
                held = held.saturating_add(compare::row_bytes(&values));
                if held > bytes {
                    return Ok(None);
                }
                result.rows.push(values);
            }
            _ => {}
        }
    }
    Ok(Some(result))
}
