//! Shared helpers for the `views_*` integration tests: a throwaway Postgres, clients that talk
//! to it directly (no proxy), and spec files written to a temporary directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use viewgate::control::ControlError;
use viewgate::control::templates::Templates;
use viewgate::control::views::apply::{self, ApplyOutcome, LockSettings};
use viewgate::control::views::spec::Spec;
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};

/// A throwaway cluster and a directory for spec files; both deleted on drop.
pub struct Database {
    pub cluster: ThrowawayCluster,
    pub dir: tempfile::TempDir,
}

impl Database {
    pub fn start() -> Self {
        let cluster = ThrowawayCluster::start(&ClusterOptions::default()).expect("cluster starts");
        Database {
            cluster,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn url(&self) -> String {
        self.cluster.url(SUPERUSER, "postgres")
    }

    /// A new connection, as a separate client application would have.
    pub async fn client(&self) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), NoTls)
            .await
            .expect("connects");
        tokio::spawn(connection);
        client
    }

    /// Runs SQL through psql as the superuser (setup and inspection).
    pub fn admin(&self, sql: &str) -> String {
        self.cluster
            .psql("postgres", sql)
            .expect("admin SQL succeeds")
    }

    /// Writes `text` as spec file `name` and returns its path.
    pub fn spec_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("spec written");
        path
    }

    /// Applies the spec at `path` with built-in templates and quick lock settings.
    pub async fn apply(&self, path: &Path) -> Result<ApplyOutcome, ControlError> {
        let spec = Spec::load(path)?;
        let mut client = self.client().await;
        apply::apply(&mut client, &spec, &Templates::built_in(), quick_locks()).await
    }

    /// Writes and applies a spec, panicking when apply fails.
    pub async fn apply_text(&self, text: &str) -> ApplyOutcome {
        let path = self.spec_file("viewgate.toml", text);
        self.apply(&path)
            .await
            .unwrap_or_else(|error| panic!("apply failed: {error}"))
    }
}

/// Short lock timeouts so lock tests finish quickly.
pub fn quick_locks() -> LockSettings {
    LockSettings {
        lock_timeout: std::time::Duration::from_millis(300),
        max_attempts: 3,
    }
}

/// Rows of a simple-protocol query as text, NULL as `None`.
pub async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Rows as `|`-joined lines, NULL as `<null>`: compact to assert on.
pub async fn lines(client: &Client, sql: &str) -> Vec<String> {
    rows(client, sql)
        .await
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|value| value.unwrap_or_else(|| "<null>".into()))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// Runs a statement, panicking with Postgres's message when it fails.
pub async fn exec(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error:?}"));
}

/// The path of a file shipped in the repository.
pub fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}
