//! `viewgate migrate start`, `complete` and `rollback`, the real binary, killed with SIGKILL at
//! moments spread over their phases while clients keep writing, then run again until done.
//! Whatever the moment (the expand's transaction, a batch of the backfill, an index build, a
//! validation, the contract, the drops after it), the next run goes on from where the killed
//! one stopped: no acknowledged write is lost, every row reads right at each version, no
//! index is left invalid, no constraint unvalidated, nothing left to run. A killed process's
//! backend may outlive it for a moment, holding the migration lock: the next run is then
//! refused as "another … command is running", as an operator would see, and tried again.
//! The kills come on a schedule of delays (a step later each run, jittered), and, for the
//! start, in each step it announces in turn, the process alone or its sessions ended too.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};

use crate::common::viewgate_binary;
use crate::migration_support;
use crate::support::Database;

use migration_support::{at, base_columns, seeded, start_text, triggers};

/// The migration: a NOT NULL column filled from another (backfill, validation), a type
/// change (a new column, sync triggers both ways, swapped in at complete), an index built
/// concurrently, and one dropped after the contract commits.
const MIGRATION: &str = r#"
version = "v2"
from = "v1"
[settings]
batch_size = 250
batch_delay_ms = 5
[[operations]]
op = "add_column"
table = "models"
up = "'size-' || size"
column = { name = "size_label", type = "text", nullable = false }
[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "bigint"
[[operations]]
op = "create_index"
name = "models_name_idx"
table = "models"
columns = ["name"]
[[operations]]
op = "drop_index"
name = "models_note_idx"
"#;

/// Rows seeded before the migration: enough for a backfill of a second or more.
const ROWS: usize = 20_000;

/// When each run is killed after it was spawned, in turn: the first soon (inside the catalog's
/// setup or the expand), each later one a step later. Every run resumes where the one before
/// stopped, so the kills walk through the backfill and then, once it is done, through the
/// phases after it (validation, index builds, going live; the contract, the drops after it).
const FIRST_KILL_MS: u64 = 50;
const KILL_STEP_MS: u64 = 25;
const KILLS: u64 = 40;

/// How long the kills and the runs after them may take in all before the test fails.
const FINISHED_WITHIN: Duration = Duration::from_secs(120);

/// How long the kills in each step and the runs after them may take in all: their number is
/// bounded (the kills of [`STEP_KILLS`] in each step), each run on a loaded machine slower.
const STEPS_FINISHED_WITHIN: Duration = Duration::from_secs(300);

/// The wait before running again a command refused while a killed run's session still holds
/// the migration lock (until the statement it was in ends).
const LOCK_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The kills made in each step, in turn: how long after the step is announced (before or at
/// its first statement, inside it, late in a long one such as the expand; a step that ends
/// sooner is killed at its end), and whether the run's sessions are ended too. A process
/// killed alone leaves its backend to finish the statement it was in (Postgres notices a
/// client gone only when it next talks to it); ending the session as well (a restart, a
/// failover, an operator's `pg_terminate_backend`) cuts the statement off half-way: a
/// concurrent index build left invalid, a validation or a batch rolled back. The first ends
/// the sessions, so that a build is cut off before a kill of the process alone lets one run
/// to its end (and the runs after keep it).
const STEP_KILLS: [(u64, SessionsEnded); 4] = [(5, true), (0, false), (20, true), (60, false)];

/// Whether a kill ends the killed run's sessions too.
type SessionsEnded = bool;

/// What a start adds to a build's step when it keeps the index an earlier run built.
const KEPT: &str = " (kept: an earlier run built it)";

/// The `application_name` of the runs killed in a step, which finds their sessions.
const KILLED_RUN_NAME: &str = "killed-migration";

/// A writer's pause between writes: a steady trickle, not a load test.
const WRITER_PAUSE: Duration = Duration::from_millis(2);

/// Where a killed run left things: the migration's phase, rows backfilled (and whether done),
/// invalid indexes, steps left to run, the index the migration builds (its oid, valid or not).
const KILLED_AT_SQL: &str = "SELECT coalesce(string_agg(phase
        || ' ' || coalesce(backfill -> 'public.models' ->> 'rows', '-')
        || CASE WHEN (backfill -> 'public.models' ->> 'done')::boolean THEN ' done' ELSE '' END
        || ', ' || (SELECT count(*) FROM pg_index WHERE NOT indisvalid) || ' invalid'
        || ', ' || jsonb_array_length(left_to_run) || ' left', '; '), 'nothing yet')
        || ', models_name_idx=' || coalesce((SELECT indexrelid::text
               || CASE WHEN indisvalid THEN ':valid' ELSE ':invalid' END
             FROM pg_index WHERE indexrelid = to_regclass('models_name_idx')), 'none')
   FROM viewgate.migrations";

/// What a run of the binary came to.
#[derive(Debug)]
enum Run {
    Finished,
    Failed(String),
    Killed,
}

/// Runs `viewgate migrate <args>`, killed after `kill_after` unless it ends first.
async fn run(database: &Database, args: &[&str], kill_after: Option<Duration>) -> Run {
    let mut child = tokio::process::Command::new(viewgate_binary())
        .arg("migrate")
        .args(args)
        .args(["--database", &database.url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("viewgate runs");
    if let Some(after) = kill_after
        && tokio::time::timeout(after, child.wait()).await.is_err()
    {
        child.kill().await.expect("the run is killed");
        return Run::Killed;
    }
    let output = child.wait_with_output().await.expect("the run ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Run::Finished
    } else {
        Run::Failed(said)
    }
}

/// `viewgate migrate <args>` against `url`, its standard error read line by line.
fn spawn_watched(args: &[&str], url: &str) -> (Child, Lines<BufReader<ChildStderr>>) {
    let mut child = tokio::process::Command::new(viewgate_binary())
        .arg("migrate")
        .args(args)
        .args(["--database", url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("viewgate runs");
    let lines = BufReader::new(child.stderr.take().expect("standard error is piped")).lines();
    (child, lines)
}

/// Runs the command killed after each delay of the schedule in turn, until a run ends by
/// itself; a run refused while a killed one's session holds the migration lock is run again.
/// Returns how the last run ended and where each killed run left things, for messages.
async fn killed_then_finished(database: &Database, args: &[&str]) -> (Run, Vec<String>) {
    let mut seen = Vec::new();
    // Each delay moved by up to a step, differently each run of the test (the seed is in
    // every message), so that runs over time kill at more moments than one schedule would.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos() as u64);
    seen.push(format!("jitter seed {seed}"));
    let mut kills = (0..KILLS).map(|k| {
        let jitter = (seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % KILL_STEP_MS;
        Duration::from_millis(FIRST_KILL_MS + k * KILL_STEP_MS + jitter)
    });
    let mut next_kill = kills.next();
    let deadline = Instant::now() + FINISHED_WITHIN;
    loop {
        assert!(Instant::now() < deadline, "never finished: {seen:?}");
        match run(database, args, next_kill).await {
            Run::Killed => {
                seen.push(database.admin(KILLED_AT_SQL));
                next_kill = kills.next();
            }
            Run::Failed(said) if said.contains("another viewgate migration command is running") => {
                tokio::time::sleep(LOCK_RETRY_PAUSE).await;
            }
            ended => return (ended, seen),
        }
    }
}

/// The step a line of `migrate`'s standard error announces, if it is one.
fn announced_step(line: &str) -> Option<String> {
    let line: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(line.get("step")?.as_str()?.to_owned())
}

/// Runs `migrate <args>` once, reading the steps it announces (JSON lines on standard error),
/// killed in the first step that still has a kill left (`kills_done` counts them; the next of
/// [`STEP_KILLS`]). Returns how the run ended and, when killed, in which step and how.
async fn run_killed_in_a_step(
    (database, admin): (&Database, &tokio_postgres::Client),
    args: &[&str],
    kills_done: &mut HashMap<String, usize>,
) -> (Run, Option<String>) {
    let url = format!("{}?application_name={KILLED_RUN_NAME}", database.url());
    let (mut child, mut lines) = spawn_watched(args, &url);
    let mut said = String::new();
    let mut killed_in = None;
    while let Some(line) = lines.next_line().await.expect("standard error reads") {
        said.push_str(&line);
        said.push('\n');
        let Some(step) = announced_step(&line) else {
            continue;
        };
        // A build kept from an earlier run is the same step.
        let same_step = step.split(KEPT).next().unwrap_or_default();
        let done = kills_done.entry(same_step.to_owned()).or_default();
        if let Some(&(delay, sessions_ended)) = STEP_KILLS.get(*done) {
            *done += 1;
            // A step that ends sooner is killed at its end (the next one's announcement): a
            // kill meant for it never lands in the steps after, which get their own.
            let next_step = async {
                while let Ok(Some(line)) = lines.next_line().await {
                    said.push_str(&line);
                    said.push('\n');
                    if announced_step(&line).is_some() {
                        return;
                    }
                }
                std::future::pending().await
            };
            let ended_sooner = tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(delay)) => false,
                () = next_step => true,
            };
            child.kill().await.expect("the run is killed");
            if sessions_ended {
                admin
                    .execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                          WHERE application_name = $1",
                        &[&KILLED_RUN_NAME],
                    )
                    .await
                    .expect("the killed run's sessions are ended");
            }
            let how = if sessions_ended {
                ", sessions ended"
            } else {
                ""
            };
            let when = if ended_sooner {
                "at its end".to_owned()
            } else {
                format!("+{delay} ms")
            };
            killed_in = Some(format!("{step} {when}{how}"));
            break;
        }
    }
    // A run that ended by itself just before its kill: what it said last (its error) is
    // still in the pipe.
    while let Ok(Some(line)) = lines.next_line().await {
        said.push_str(&line);
        said.push('\n');
    }
    let status = child.wait().await.expect("the run ends");
    let ended = if status.signal().is_some() {
        Run::Killed
    } else if status.success() {
        Run::Finished
    } else {
        Run::Failed(said)
    };
    (ended, killed_in)
}

/// Runs the command again and again, each run killed in the first step it announces that has
/// a kill left, until one goes through every step it announces. A resumed start announces its
/// steps from the backfill on again (each is idempotent), so the kills walk through every step
/// after the expand at every delay. Returns how the last run ended and, for each kill, its
/// step and where it left things.
async fn killed_in_each_step(database: &Database, args: &[&str]) -> (Run, Vec<String>) {
    let mut kills_done = HashMap::new();
    let mut seen = Vec::new();
    let admin = database.client().await;
    let deadline = Instant::now() + STEPS_FINISHED_WITHIN;
    loop {
        assert!(Instant::now() < deadline, "never finished: {seen:?}");
        match run_killed_in_a_step((database, &admin), args, &mut kills_done).await {
            (Run::Killed, step) => seen.push(format!(
                "{}: {}",
                step.unwrap_or_else(|| "ended as killed".into()),
                database.admin(KILLED_AT_SQL)
            )),
            (Run::Failed(said), _)
                if said.contains("another viewgate migration command is running") =>
            {
                tokio::time::sleep(LOCK_RETRY_PAUSE).await;
            }
            (ended, _) => return (ended, seen),
        }
    }
}

/// How a command is killed until it runs to its end.
#[derive(Debug, Clone, Copy)]
enum Kills {
    /// After each delay of a schedule ([`killed_then_finished`]).
    OnASchedule,
    /// In each step it announces ([`killed_in_each_step`]).
    InEachStep,
}

async fn killed_until_done(database: &Database, args: &[&str], kills: Kills) -> (Run, Vec<String>) {
    match kills {
        Kills::OnASchedule => killed_then_finished(database, args).await,
        Kills::InEachStep => killed_in_each_step(database, args).await,
    }
}

/// A client writing at `version` (`v1`, `v2` or `v3`) through its view until stopped: inserts
/// named `<version>-<n>`, counted once acknowledged, and at v1 an update of `size` each. Any
/// error fails the test.
fn writer(
    client: tokio_postgres::Client,
    version: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut acknowledged = 0;
        while !stop.load(Ordering::Relaxed) {
            let n = acknowledged as i64 + 1;
            let name = format!("{version}-{n}");
            let inserted =
                match version {
                    "v1" => {
                        client
                            .execute(
                                "INSERT INTO models_v1 (name, size) VALUES ($1, $2)",
                                &[&name, &(n as i32)],
                            )
                            .await
                    }
                    "v2" => client
                        .execute(
                            "INSERT INTO models_v2 (name, size, size_label) VALUES ($1, $2, $3)",
                            &[&name, &n, &format!("size-{n}")],
                        )
                        .await,
                    _ => client
                        .execute(
                            "INSERT INTO models_v3 (title, size, size_label) VALUES ($1, $2, $3)",
                            &[&name, &n, &format!("size-{n}")],
                        )
                        .await,
                };
            inserted.unwrap_or_else(|error| panic!("{version} insert {n} failed: {error:?}"));
            acknowledged += 1;
            if version == "v1" {
                client
                    .execute(
                        "UPDATE models_v1 SET size = size + 1 WHERE id = $1",
                        &[&(n * 7 % ROWS as i64 + 1)],
                    )
                    .await
                    .unwrap_or_else(|error| panic!("v1 update {n} failed: {error:?}"));
            }
            tokio::time::sleep(WRITER_PAUSE).await;
        }
        acknowledged
    })
}

/// What no phase, killed or not, may leave behind on `models`.
fn assert_nothing_half_done(database: &Database, context: &str) {
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_index WHERE NOT indisvalid OR NOT indisready"),
        "0",
        "an index is left invalid ({context})"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_constraint WHERE NOT convalidated"),
        "0",
        "a constraint is left unvalidated ({context})"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.migrations WHERE left_to_run <> '[]'"),
        "0",
        "something is left to run ({context})"
    );
}

async fn seeded_with_note_index() -> Database {
    let database = seeded(ROWS).await;
    database.admin("CREATE INDEX models_note_idx ON models (legacy_note)");
    database
}

/// What a start, killed or not, must have come to: live, nothing half-done, every row right
/// at v2 whichever run filled it or a v1 write kept it.
fn assert_live_and_filled(database: &Database, killed: &[String]) {
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations"),
        "live",
        "{killed:?}"
    );
    eprintln!("start killed leaving {killed:?}");
    assert_nothing_half_done(database, "after the start");
    assert_eq!(
        database.admin(
            "SELECT count(*) FROM models_v2 WHERE size_label IS DISTINCT FROM 'size-' || size"
        ),
        "0",
        "{killed:?}"
    );
}

/// [`MIGRATION`] completed: the table in v2's shape, nothing of v1's left, every acknowledged
/// write of either version kept and filled.
fn assert_completed(database: &Database, written_at_v1: u64, written_at_v2: u64) {
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations"),
        "completed"
    );
    assert_eq!(
        base_columns(database),
        "id:bigint!,name:text!,legacy_note:text,size_label:text!,size:bigint!"
    );
    assert_eq!(triggers(database), "0", "the sync triggers are gone");
    assert_eq!(
        database.admin(
            "SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'models'::regclass"
        ),
        "models_name_idx,models_pkey"
    );
    assert_eq!(
        database.admin(&format!(
            "SELECT count(*) FILTER (WHERE name LIKE 'v1-%') = {written_at_v1}
                AND count(*) FILTER (WHERE name LIKE 'v2-%') = {written_at_v2}
                AND count(*) FILTER (WHERE size_label IS DISTINCT FROM 'size-' || size) = 0
               FROM models"
        )),
        "t",
        "every acknowledged write kept, every row filled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_at_any_moment_finishes_when_run_again() {
    migration_killed(Kills::OnASchedule).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_in_each_of_its_steps_finishes_when_run_again() {
    migration_killed(Kills::InEachStep).await;
}

/// [`MIGRATION`] started under a v1 writer, then completed under a v2 writer, each command
/// killed as `kills` says until a run goes through.
async fn migration_killed(kills: Kills) {
    let database = seeded_with_note_index().await;
    let file = database.spec_file("0002.toml", MIGRATION);
    let file = file.to_str().expect("a UTF-8 path");

    let stop_v1 = Arc::new(AtomicBool::new(false));
    let v1 = writer(at(&database, "v1").await, "v1", stop_v1.clone());
    let (ended, killed) = killed_until_done(&database, &["start", file], kills).await;
    assert!(
        matches!(&ended, Run::Finished),
        "{ended:?} after kills leaving {killed:?}"
    );
    assert_live_and_filled(&database, &killed);
    if matches!(kills, Kills::InEachStep) {
        assert_each_step_killed_and_the_index_kept(&database, &killed);
    }
    stop_v1.store(true, Ordering::Relaxed);
    let written_at_v1 = v1.await.expect("the v1 writer ends");
    assert!(written_at_v1 > 0);

    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    let stop_v2 = Arc::new(AtomicBool::new(false));
    let v2 = writer(at(&database, "v2").await, "v2", stop_v2.clone());
    completed_though_killed(&database, "v2", kills).await;
    stop_v2.store(true, Ordering::Relaxed);
    let written_at_v2 = v2.await.expect("the v2 writer ends");
    assert_completed(&database, written_at_v1, written_at_v2);

    // Run once more, named, it says the work is done and does nothing.
    let again = std::process::Command::new(viewgate_binary())
        .args([
            "migrate",
            "complete",
            "--version",
            "v2",
            "--database",
            &database.url(),
        ])
        .output()
        .expect("viewgate runs");
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "migration to v2 was already completed: v1 is retired"
    );
}

/// Every step of the start killed in; the index, once a run built it whole, kept by every
/// run after: the same one to the end.
fn assert_each_step_killed_and_the_index_kept(database: &Database, killed: &[String]) {
    for step in [
        "expand",
        "views of v2",
        "backfill public.models",
        "build index models_name_idx without blocking writes",
        "live",
    ] {
        assert!(
            killed
                .iter()
                .any(|kill| kill.starts_with(&format!("{step} "))),
            "never killed in {step}: {killed:?}"
        );
    }
    let built =
        database.admin("SELECT 'models_name_idx=' || 'models_name_idx'::regclass::oid || ':valid'");
    let seen_valid: Vec<&String> = killed
        .iter()
        .filter(|kill| kill.contains(":valid"))
        .collect();
    assert!(
        !seen_valid.is_empty(),
        "no kill after the build: {killed:?}"
    );
    assert!(
        seen_valid.iter().all(|kill| kill.ends_with(&built)),
        "the index was built again after a run built it whole ({built}): {killed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_killed_at_any_moment_finishes_when_run_again() {
    rollback_killed(Kills::OnASchedule).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_killed_in_each_of_its_steps_finishes_when_run_again() {
    rollback_killed(Kills::InEachStep).await;
}

/// [`MIGRATION`] started, then rolled back under a v1 writer, killed as `kills` says until a
/// run goes through.
async fn rollback_killed(kills: Kills) {
    let database = seeded_with_note_index().await;
    let before = base_columns(&database);
    start_text(&database, "0002.toml", MIGRATION)
        .await
        .expect("the migration starts");
    let stop = Arc::new(AtomicBool::new(false));
    let v1 = writer(at(&database, "v1").await, "v1", stop.clone());
    // Named, so that the run after one killed just after its commit runs what that one left,
    // then finds the migration rolled back and says so.
    let (ended, killed) =
        killed_until_done(&database, &["rollback", "--version", "v2"], kills).await;
    eprintln!("rollback killed leaving {killed:?}");
    assert!(
        matches!(&ended, Run::Finished),
        "{ended:?} after kills leaving {killed:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let written = v1.await.expect("the writer ends");
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations"),
        "rolled_back"
    );
    assert_nothing_half_done(&database, "after the rollback");
    assert_eq!(base_columns(&database), before);
    assert_eq!(triggers(&database), "0");
    assert_eq!(
        database.admin(
            "SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'models'::regclass"
        ),
        "models_note_idx,models_pkey"
    );
    assert_eq!(
        database.admin(&format!(
            "SELECT count(*) FILTER (WHERE name LIKE 'v1-%') = {written} FROM models"
        )),
        "t"
    );
}

/// The migration to v3, started while v2's is live: `name` renamed `title` (at its complete),
/// an index on it.
const CHAIN_V3: &str = r#"
version = "v3"
from = "v2"
[settings]
batch_size = 250
batch_delay_ms = 5
[[operations]]
op = "rename_column"
table = "models"
from = "name"
to = "title"
[[operations]]
op = "create_index"
name = "models_title_idx"
table = "models"
columns = ["title"]
"#;

/// Runs `migrate complete --version <version>`, killed again and again, to its end. The run
/// that commits may be killed after it: the next runs what it left, then finds the migration
/// completed and says so (unnamed, it would go on to complete the next one of a chain).
async fn completed_though_killed(database: &Database, version: &str, kills: Kills) {
    let (ended, killed) =
        killed_until_done(database, &["complete", "--version", version], kills).await;
    assert!(
        matches!(&ended, Run::Finished),
        "{version}'s complete: {ended:?} after kills leaving {killed:?}"
    );
    eprintln!("{version}'s complete killed leaving {killed:?}");
    assert_nothing_half_done(database, version);
}

/// A chain: v3's migration started (killed again and again) while v2's is live, with clients
/// writing at v1, v2 and v3; then v2's complete and v3's, each killed again and again under
/// the writers of the versions that remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_migrations_killed_at_any_moment_finishes_when_run_again() {
    let database = seeded_with_note_index().await;
    let v2_file = database.spec_file("0002.toml", MIGRATION);
    let v3_file = database.spec_file("0003.toml", CHAIN_V3);
    let (v2_file, v3_file) = (
        v2_file.to_str().expect("a UTF-8 path"),
        v3_file.to_str().expect("a UTF-8 path"),
    );
    assert!(matches!(
        run(&database, &["start", v2_file], None).await,
        Run::Finished
    ));

    let stop = [(); 3].map(|()| Arc::new(AtomicBool::new(false)));
    let v1 = writer(at(&database, "v1").await, "v1", stop[0].clone());
    let v2 = writer(at(&database, "v2").await, "v2", stop[1].clone());
    let (ended, killed) = killed_then_finished(&database, &["start", v3_file]).await;
    assert!(
        matches!(&ended, Run::Finished),
        "{ended:?} after {killed:?}"
    );
    assert_nothing_half_done(&database, "after v3's start");
    let v3 = writer(at(&database, "v3").await, "v3", stop[2].clone());
    stop[0].store(true, Ordering::Relaxed);
    let written_at_v1 = v1.await.expect("the v1 writer ends");

    // v2's complete retires v1 under the v2 and v3 writers (v2 the default, as after a
    // cutover to it); v3's retires v2, whose writer stops first, under the v3 writer.
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    completed_though_killed(&database, "v2", Kills::OnASchedule).await;
    stop[1].store(true, Ordering::Relaxed);
    let written_at_v2 = v2.await.expect("the v2 writer ends");
    database.admin("UPDATE viewgate.settings SET default_version = 'v3'");
    completed_though_killed(&database, "v3", Kills::OnASchedule).await;
    stop[2].store(true, Ordering::Relaxed);
    let written_at_v3 = v3.await.expect("the v3 writer ends");
    assert_eq!(
        database.admin("SELECT string_agg(phase, ',' ORDER BY id) FROM viewgate.migrations"),
        "completed,completed"
    );
    assert_eq!(
        base_columns(&database),
        "id:bigint!,title:text!,legacy_note:text,size_label:text!,size:bigint!"
    );
    assert_eq!(triggers(&database), "0");
    assert_eq!(
        database.admin(&format!(
            "SELECT count(*) FILTER (WHERE title LIKE 'v1-%') = {written_at_v1}
                AND count(*) FILTER (WHERE title LIKE 'v2-%') = {written_at_v2}
                AND count(*) FILTER (WHERE title LIKE 'v3-%') = {written_at_v3}
                AND count(*) FILTER (WHERE size_label IS DISTINCT FROM 'size-' || size) = 0
               FROM models"
        )),
        "t",
        "every acknowledged write kept, every row filled"
    );
}

/// A migration whose file leaves the backfill's pace at its defaults.
const UNPACED: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
up = "'size-' || size"
column = { name = "size_label", type = "text", nullable = false }
"#;

/// The operator's way to slow a backfill down without editing its file: stop the run, start
/// it again with the pace on the command line. The file's checksum is unchanged, so the run
/// resumes; each run goes at the pace it was given, the file's when none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_stopped_and_started_again_at_another_pace_resumes_from_its_last_batch() {
    const ROWS: u64 = 2_000;
    let database = seeded(ROWS as usize).await;
    let file = database
        .spec_file("0002.toml", UNPACED)
        .display()
        .to_string();
    let refused = run(&database, &["start", &file, "--batch-size", "0"], None).await;
    assert!(
        matches!(&refused, Run::Failed(said) if said.contains("1..=100000")),
        "{refused:?}"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.migrations"),
        "0"
    );

    // Ten rows a batch and a tenth of a second between batches (the file's pace would fill the
    // table in two batches): stopped once it reports rows done.
    let slower = [
        "start",
        &file,
        "--batch-size",
        "10",
        "--batch-delay-ms",
        "100",
    ];
    let (mut child, mut lines) = spawn_watched(&slower, &database.url());
    let mut said = String::new();
    let reported = tokio::time::timeout(FINISHED_WITHIN, async {
        while let Some(line) = lines.next_line().await.expect("standard error reads") {
            said.push_str(&line);
            said.push('\n');
            let rows: Option<u64> = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|progress| progress.get("rows")?.as_u64());
            if rows.is_some_and(|rows| rows > 0) {
                return true;
            }
        }
        false
    })
    .await;
    child.kill().await.expect("the run is stopped");
    assert_eq!(reported, Ok(true), "{said}");
    assert!(
        said.contains(
            "backfill paced as the command line says: batch_size = 10, batch_delay_ms = 100"
        ),
        "{said}"
    );
    let stopped = database.admin(
        "SELECT phase || ' ' || (backfill -> 'public.models' ->> 'rows') FROM viewgate.migrations",
    );
    let rows: u64 = stopped
        .strip_prefix("backfilling ")
        .and_then(|rows| rows.parse().ok())
        .unwrap_or_else(|| panic!("stopped mid-backfill: {stopped}"));
    assert!(
        rows > 0 && rows < ROWS && rows.is_multiple_of(10),
        "{stopped}"
    );

    // Started again with nothing on the command line: the file's pace, from the last batch.
    let resumed = loop {
        match run(&database, &["start", &file], None).await {
            Run::Failed(said) if said.contains("another viewgate migration command is running") => {
                tokio::time::sleep(LOCK_RETRY_PAUSE).await;
            }
            other => break other,
        }
    };
    assert!(matches!(resumed, Run::Finished), "{resumed:?}");
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations"),
        "live"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM models WHERE size_label = 'size-' || size"),
        ROWS.to_string()
    );
}
