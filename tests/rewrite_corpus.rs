//! The rewriter against real Postgres: every statement of the corpus (ORM-shaped SQL, see
//! tests/rewrite_corpus/README.md), at v1 and v2 of the seed example, returns exactly what the
//! same statement written by hand against the version's view returns, through the protocol
//! its entry names and, for a statement without parameters, the extended protocol as well.
//!
//! The hand-written versions come from the corpus's markers by plain text substitution, never
//! from the rewriter. The targets come from the catalog through `load_routing_map`, so this
//! also proves the catalog → rewriter path. Every statement goes through the shape cache
//! (`rewrite_cached`), which must agree with `rewrite`. Each run is its own transaction, rolled back, with
//! the sequences reset, so writes neither accumulate nor shift generated ids.

use crate::support;

use std::fmt::Write as _;

use futures_util::{StreamExt, TryStreamExt, pin_mut};
use support::{Database, repo_file};
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};
use viewgate::catalog_read::load_routing_map;
use viewgate::rewriter::{Rewrite, RewriteCache, VersionTargets, rewrite, rewrite_cached};

const CORPUS: &str = include_str!("rewrite_corpus/statements.sql");
const MINIMUM_CORPUS_SIZE: usize = 300;
const VERSIONS: [&str; 2] = ["v1", "v2"];
const ENTRY_PREFIX: &str = "-- name:";
/// Lines that only separate sections of the corpus file.
const SECTION_PREFIX: &str = "-- =====";

/// Rows the tests read, besides the example's table (ids 1..=6; 7 is deployed but missing).
const SEED: &str = r#"
CREATE TABLE deployments (id bigserial PRIMARY KEY, model_id bigint NOT NULL, env text NOT NULL, replicas int NOT NULL DEFAULT 1);
CREATE TABLE tags (model_id bigint, tag text);
CREATE TABLE model_metadata_archive (id bigint);
INSERT INTO model_metadata (id, model_name, model_version, model_type, hyperparameters, created_at, schema_version) VALUES
 (1, 'resnet', '1.0', NULL, '{"lr": 0.1, "layers": 50}', '2024-01-01 00:00:00+00', 1),
 (2, 'bert', '2.0', 'transformer', '{"lr": 0.001, "heads": 12, "tags": ["nlp"]}', '2024-02-01 00:00:00+00', 2),
 (3, 'gpt', '3.5', 'transformer', '{"lr": 0.0001}', '2024-03-01 00:00:00+00', 2),
 (4, 'xgb', '0.9', 'tree', '{"depth": 6, "eta": 0.3}', '2024-03-15 00:00:00+00', 1),
 (5, 'resnet', '2.0', NULL, '{"lr": 0.05, "layers": 101}', '2024-04-01 00:00:00+00', 1),
 (6, 'lstm', '1.1', 'neural_network', '{}', '2024-05-01 00:00:00+00', 2);
INSERT INTO deployments (model_id, env, replicas) VALUES (1, 'prod', 3), (2, 'prod', 2), (2, 'staging', 1), (4, 'dev', 1), (7, 'prod', 1);
INSERT INTO tags VALUES (1, 'vision'), (2, 'nlp'), (3, 'nlp'), (5, 'vision');
"#;

/// Run at the start of every transaction: generated ids start from the same value each time.
const RESET_SEQUENCES: &str =
    "BEGIN; SELECT setval('model_metadata_id_seq', 100); SELECT setval('deployments_id_seq', 100)";

/// Marker → (as the client writes it, as written by hand against the view; `{V}` = version).
const MARKERS: [(&str, &str, &str); 9] = [
    ("{N}", "model_metadata", "model_metadata_{V}"),
    (
        "{T}",
        "model_metadata",
        "model_metadata_{V} AS model_metadata",
    ),
    ("{Q}", "\"model_metadata\"", "\"model_metadata_{V}\""),
    ("{P}", "public.model_metadata", "public.model_metadata_{V}"),
    (
        "{PQ}",
        "\"public\".\"model_metadata\"",
        "\"public\".\"model_metadata_{V}\"",
    ),
    ("{U}", "MODEL_METADATA", "MODEL_METADATA_{V}"),
    ("{R}", "'model_metadata'", "'model_metadata_{V}'"),
    ("{RQ}", "'\"model_metadata\"'", "'\"model_metadata_{V}\"'"),
    (
        "{RP}",
        "'public.model_metadata'",
        "'public.model_metadata_{V}'",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Simple,
    Copy,
}

#[derive(Debug)]
struct Entry {
    name: String,
    params: Option<String>,
    errors: Vec<String>,
    mode: Mode,
    template: String,
    hand: Option<String>,
    /// `-- hand v2:`: the hand-written statement at one version, instead of `hand` or the
    /// markers (for v2's upserts, written on the base table as its trigger would write).
    hand_at: Vec<(String, String)>,
}

impl Entry {
    fn original(&self) -> String {
        MARKERS
            .iter()
            .fold(self.template.clone(), |text, (marker, original, _)| {
                text.replace(marker, original)
            })
    }

    fn by_hand(&self, version: &str) -> String {
        let at_version = self
            .hand_at
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, text)| text);
        let template = at_version.or(self.hand.as_ref()).unwrap_or(&self.template);
        MARKERS
            .iter()
            .fold(template.clone(), |text, (marker, _, hand)| {
                text.replace(marker, hand)
            })
            .replace("{V}", version)
    }

    /// Whether the client's text names a managed table where the rewriter must act.
    fn expects_rewrite(&self) -> bool {
        self.hand.is_some()
            || !self.hand_at.is_empty()
            || MARKERS.iter().any(|(m, _, _)| self.template.contains(m))
    }
}

fn parse_corpus(text: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut in_hand = false;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix(ENTRY_PREFIX) {
            entries.push(Entry {
                name: name.trim().to_owned(),
                params: None,
                errors: Vec::new(),
                mode: Mode::Simple,
                template: String::new(),
                hand: None,
                hand_at: Vec::new(),
            });
            in_hand = false;
            continue;
        }
        let Some(entry) = entries.last_mut() else {
            continue;
        };
        if line.starts_with(SECTION_PREFIX) {
            continue;
        }
        let at_header = entry.template.is_empty() && !in_hand;
        if at_header && let Some(params) = line.strip_prefix("-- params:") {
            entry.params = Some(params.trim().to_owned());
        } else if at_header && let Some(errors) = line.strip_prefix("-- errors:") {
            entry.errors = errors.split_whitespace().map(str::to_owned).collect();
        } else if at_header && line.trim() == "-- mode: copy" {
            entry.mode = Mode::Copy;
        } else if line.trim() == "-- hand:" {
            in_hand = true;
            entry.hand = Some(String::new());
        } else if let Some(version) = line
            .trim()
            .strip_prefix("-- hand ")
            .and_then(|rest| rest.strip_suffix(':'))
        {
            in_hand = true;
            entry.hand_at.push((version.to_owned(), String::new()));
        } else if in_hand {
            match entry.hand_at.last_mut() {
                Some((_, text)) => push_line(text, line),
                None => push_line(entry.hand.get_or_insert_default(), line),
            }
        } else if !(entry.template.is_empty() && line.starts_with("-- ")) {
            push_line(&mut entry.template, line);
        }
    }
    for entry in &mut entries {
        entry.template = entry.template.trim().to_owned();
        if let Some(hand) = &mut entry.hand {
            *hand = hand.trim().to_owned();
        }
        for (_, hand) in &mut entry.hand_at {
            *hand = hand.trim().to_owned();
        }
    }
    entries
}

fn push_line(text: &mut String, line: &str) {
    text.push_str(line);
    text.push('\n');
}

/// Bind parameters from `type:value | type:value`.
fn parse_params(spec: &str) -> Vec<Box<dyn ToSql + Sync + Send>> {
    spec.split(" | ")
        .map(|param| {
            let (kind, value) = param
                .trim()
                .split_once(':')
                .unwrap_or_else(|| panic!("param without a type: {param}"));
            let boxed: Box<dyn ToSql + Sync + Send> = match kind {
                "int8" => Box::new(value.parse::<i64>().expect("int8")),
                "int4" => Box::new(value.parse::<i32>().expect("int4")),
                "text" => Box::new(value.to_owned()),
                "bool" => Box::new(value.parse::<bool>().expect("bool")),
                "float8" => Box::new(value.parse::<f64>().expect("float8")),
                "jsonb" => {
                    Box::new(serde_json::from_str::<serde_json::Value>(value).expect("json"))
                }
                "int8[]" => Box::new(
                    value
                        .split(',')
                        .map(|v| v.parse::<i64>().expect("int8 element"))
                        .collect::<Vec<_>>(),
                ),
                "text[]" => Box::new(value.split(',').map(str::to_owned).collect::<Vec<_>>()),
                "nulltext" => Box::new(None::<String>),
                other => panic!("unknown param type {other}"),
            };
            boxed
        })
        .collect()
}

/// Any column value, as the type's name and the server's binary encoding: exact equality.
struct RawValue(String);

impl<'a> FromSql<'a> for RawValue {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let mut text = format!("{ty}:");
        match std::str::from_utf8(raw) {
            Ok(utf8) if ty == &Type::TEXT || ty == &Type::VARCHAR || ty == &Type::NAME => {
                text.push_str(utf8)
            }
            _ => raw.iter().for_each(|b| {
                let _ = write!(text, "{b:02x}");
            }),
        }
        Ok(RawValue(text))
    }

    fn from_sql_null(ty: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(format!("{ty}:NULL")))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// What a statement did: its rows (and command tags) rendered to lines, or its SQLSTATE.
#[derive(Debug, PartialEq)]
enum Outcome {
    Rows(Vec<String>),
    Failed { code: String, message: String },
}

fn failed(error: &tokio_postgres::Error) -> Outcome {
    Outcome::Failed {
        code: error
            .code()
            .map_or_else(|| "client-side".to_owned(), |c| c.code().to_owned()),
        message: error
            .as_db_error()
            .map_or_else(|| error.to_string(), |db| db.message().to_owned()),
    }
}

async fn run_simple(client: &Client, sql: &str) -> Outcome {
    match client.simple_query(sql).await {
        Err(error) => failed(&error),
        Ok(messages) => Outcome::Rows(
            messages
                .iter()
                .filter_map(|message| match message {
                    SimpleQueryMessage::Row(row) => Some(
                        row.columns()
                            .iter()
                            .enumerate()
                            .map(|(i, c)| format!("{}={}", c.name(), row.get(i).unwrap_or("NULL")))
                            .collect::<Vec<_>>()
                            .join("|"),
                    ),
                    SimpleQueryMessage::CommandComplete(count) => Some(format!("({count})")),
                    _ => None,
                })
                .collect(),
        ),
    }
}

async fn run_extended(
    client: &Client,
    sql: &str,
    params: &[Box<dyn ToSql + Sync + Send>],
) -> Outcome {
    let bound = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync));
    let stream = match client.query_raw(sql, bound).await {
        Ok(stream) => stream,
        Err(error) => return failed(&error),
    };
    pin_mut!(stream);
    let mut lines = Vec::new();
    while let Some(row) = stream.next().await {
        let row = match row {
            Ok(row) => row,
            Err(error) => return failed(&error),
        };
        lines.push(
            row.columns()
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}={}", c.name(), row.get::<_, RawValue>(i).0))
                .collect::<Vec<_>>()
                .join("|"),
        );
    }
    lines.push(format!("({:?})", stream.rows_affected()));
    Outcome::Rows(lines)
}

async fn run_copy(client: &Client, sql: &str) -> Outcome {
    let stream = match client.copy_out(sql).await {
        Ok(stream) => stream,
        Err(error) => return failed(&error),
    };
    match stream.try_collect::<Vec<_>>().await {
        Ok(chunks) => Outcome::Rows(
            chunks
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect(),
        ),
        Err(error) => failed(&error),
    }
}

/// How a statement travels to Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// As the entry says: COPY, the extended protocol with its parameters, or a simple Query.
    AsWritten,
    /// The extended protocol, with no parameters.
    Extended,
}

/// Runs `sql` as `entry` and `protocol` say, in a transaction that is rolled back.
async fn run(client: &Client, entry: &Entry, protocol: Protocol, sql: &str) -> Outcome {
    client.batch_execute(RESET_SEQUENCES).await.expect("begin");
    let outcome = match (protocol, entry.mode, &entry.params) {
        (Protocol::Extended, _, _) => run_extended(client, sql, &[]).await,
        (_, Mode::Copy, _) => run_copy(client, sql).await,
        (_, Mode::Simple, Some(params)) => run_extended(client, sql, &parse_params(params)).await,
        (_, Mode::Simple, None) => run_simple(client, sql).await,
    };
    client.batch_execute("ROLLBACK").await.expect("rollback");
    outcome
}

/// Checks one entry at one version; a description of each problem found.
async fn check(
    client: &Client,
    cache: &RewriteCache,
    entry: &Entry,
    targets: &VersionTargets,
) -> Vec<String> {
    let version = targets.version.as_str();
    let original = entry.original();
    let by_hand = entry.by_hand(version);
    let mut problems = Vec::new();
    let cached = rewrite_cached(cache, &original, targets);
    let full = rewrite(&original, targets);
    if *cached != full {
        problems.push(format!(
            "the cache gave {cached:?}, the full rewrite {full:?}"
        ));
    }
    let sent = match full {
        Err(error) => return vec![format!("rewrite failed: {error}")],
        Ok(Rewrite::Unchanged) => {
            if entry.expects_rewrite() {
                problems.push("expected a rewrite, got Unchanged".to_owned());
            }
            original.clone()
        }
        Ok(Rewrite::Rewritten(text)) => {
            if !entry.expects_rewrite() {
                problems.push(format!("expected Unchanged, got {text}"));
            }
            text
        }
    };
    let expect_error = entry.errors.iter().any(|e| e == version);
    let mut protocols = vec![Protocol::AsWritten];
    // A statement without parameters also goes through Parse/Bind/Execute, as a driver that
    // prepares everything sends it (one statement per Parse: not a string of several).
    if entry.params.is_none() && entry.mode == Mode::Simple && !sent.contains(';') {
        protocols.push(Protocol::Extended);
    }
    for protocol in protocols {
        let rewritten_outcome = run(client, entry, protocol, &sent).await;
        let hand_outcome = run(client, entry, protocol, &by_hand).await;
        match (&rewritten_outcome, &hand_outcome) {
            (Outcome::Rows(_), Outcome::Rows(_)) if expect_error => {
                problems.push(format!("{protocol:?}: expected an error, both succeeded"))
            }
            (Outcome::Failed { code: a, .. }, Outcome::Failed { code: b, .. })
                if a == b && !expect_error =>
            {
                problems.push(format!(
                    "{protocol:?}: both failed unexpectedly: {rewritten_outcome:?}"
                ))
            }
            (Outcome::Failed { code: a, .. }, Outcome::Failed { code: b, .. }) if a == b => {}
            (a, b) if a == b => {}
            _ => problems.push(format!(
                "{protocol:?}: outcomes differ\n  rewritten: {rewritten_outcome:?}\n  by hand:   {hand_outcome:?}"
            )),
        }
    }
    problems
        .into_iter()
        .map(|p| format!("{p}\n  sent:    {sent}\n  by hand: {by_hand}"))
        .collect()
}

#[tokio::test]
async fn corpus_statements_return_what_the_hand_written_view_statements_return() {
    let entries = parse_corpus(CORPUS);
    assert!(
        entries.len() >= MINIMUM_CORPUS_SIZE,
        "corpus has {} statements",
        entries.len()
    );
    for entry in &entries {
        assert!(
            !entry.template.is_empty(),
            "{} has no statement",
            entry.name
        );
    }

    let database = Database::start();
    let schema = std::fs::read_to_string(repo_file("examples/model_metadata/schema.sql"))
        .expect("example schema");
    database.admin(&schema);
    database
        .apply(&repo_file("examples/model_metadata/viewgate.toml"))
        .await
        .expect("example applies");
    database.admin(SEED);

    let client = database.client().await;
    let map = load_routing_map(&client).await.expect("routing map");
    let cache = RewriteCache::default();
    let mut failures = Vec::new();
    let mut runs = 0;
    for version in VERSIONS {
        let targets = VersionTargets::from_routing_map(&map, version)
            .unwrap_or_else(|| panic!("{version} is in the routing map"));
        for entry in &entries {
            runs += 1;
            for problem in check(&client, &cache, entry, &targets).await {
                failures.push(format!("[{version}] {}: {problem}", entry.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Each corpus statement with its digits changed (other constants, same shape where the digits
/// were constants).
fn with_other_digits(sql: &str) -> String {
    sql.chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_digit((d + 3) % 10, 10).unwrap_or(c),
            None => c,
        })
        .collect()
}

#[test]
fn corpus_statements_and_their_variants_through_the_cache_equal_the_full_rewrite() {
    let entries = parse_corpus(CORPUS);
    let targets: Vec<VersionTargets> = VERSIONS
        .iter()
        .map(|version| {
            VersionTargets::new(
                *version,
                vec![viewgate::rewriter::ViewTarget {
                    table: viewgate::rewriter::RelationName::new("public", "model_metadata"),
                    view: viewgate::rewriter::RelationName::new(
                        "public",
                        format!("model_metadata_{version}"),
                    ),
                }],
            )
        })
        .collect();
    let cache = RewriteCache::default();
    for targets in &targets {
        for entry in &entries {
            let original = entry.original();
            for sql in [
                original.clone(),
                original.clone(),
                with_other_digits(&original),
            ] {
                assert_eq!(
                    *rewrite_cached(&cache, &sql, targets),
                    rewrite(&sql, targets),
                    "{} at {}: {sql}",
                    entry.name,
                    targets.version
                );
            }
        }
    }
    let stats = cache.stats();
    // Every statement's second pass, and the variants of statements whose digits are constants.
    assert!(
        stats.hits >= (entries.len() * VERSIONS.len()) as u64,
        "{stats:?}"
    );
}

#[test]
fn corpus_markers_expand_independently_of_the_rewriter() {
    let entries = parse_corpus(
        "-- name: a\n-- params: int8:1\nSELECT {Q}.\"id\" FROM {Q} -- trailing\n-- name: b\n-- mode: copy\nCOPY {N} TO STDOUT\n-- hand:\nCOPY (SELECT * FROM model_metadata_{V}) TO STDOUT\n",
    );
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[0].original(),
        "SELECT \"model_metadata\".\"id\" FROM \"model_metadata\" -- trailing"
    );
    assert_eq!(
        entries[0].by_hand("v2"),
        "SELECT \"model_metadata_v2\".\"id\" FROM \"model_metadata_v2\" -- trailing"
    );
    assert_eq!(entries[0].params.as_deref(), Some("int8:1"));
    assert_eq!(entries[1].mode, Mode::Copy);
    assert_eq!(entries[1].original(), "COPY model_metadata TO STDOUT");
    assert_eq!(
        entries[1].by_hand("v1"),
        "COPY (SELECT * FROM model_metadata_v1) TO STDOUT"
    );
}
