//! COPY through every version of a spec, against a real Postgres behind the proxy: the seed
//! example's v1 (auto-updatable), v2 (trigger-backed: an expression column with `write`) and
//! a v3 that renames two columns and gives one a default of its own. `COPY … FROM` through an
//! auto-updatable view is sent to the base table with the view's columns mapped (Postgres
//! cannot copy to such a view); through a trigger-backed view it stays on the view, and
//! Postgres runs the INSTEAD OF trigger for each row. `COPY … TO` reads through the view.
//! Text, CSV and binary, with and without column lists, through the extended protocol
//! (tokio-postgres) and the simple one (psql's `\copy`); every row is checked in the base
//! table and read back through the version. What cannot be copied exactly is refused with
//! 42601 and its position, a column the version does not have with 42703 (as Postgres and
//! `COPY … TO` tell it); a view recorded before the catalog kept mappings copies as before.
//! A trigger-backed version with renamed columns (v4) takes COPY through its view and upserts
//! through the base table with its names mapped.

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::versions::{EXAMPLE, psql};
use common::{TestProxy, run_ok, viewgate_binary, wait_until};
use futures_util::{SinkExt, TryStreamExt};
use tokio_postgres::Client;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::Type;
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER};

/// v3: `model_name` and `model_version` renamed, and `version` defaulting to '0.0' at this
/// version only (the base column has no default). v4: trigger-backed with renamed columns,
/// the key among them, and a computed `kind` written back in lower case.
const V3: &str = r#"
[[versions]]
name = "v3"

[[versions.tables]]
base = "model_metadata"
columns = [
    "id",
    { name = "name", from = "model_name" },
    { name = "version", from = "model_version", default = "'0.0'" },
    "hyperparameters",
    "created_at",
]

[[versions]]
name = "v4"

[[versions.tables]]
base = "model_metadata"
columns = [
    { name = "model_id", from = "id" },
    { name = "name", from = "model_name" },
    "model_version",
    { name = "kind", expr = "upper(model_type)", write = { model_type = "lower(NEW.kind)" } },
]
"#;

/// The seed example plus v3, applied; the proxy knows all three versions.
fn proxy() -> (TestProxy, PathBuf) {
    let proxy = TestProxy::start_with(ClusterOptions::default(), |config| {
        config.catalog = Some(format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
            config.upstream.rsplit(':').next().unwrap()
        ));
    });
    let schema = std::fs::read_to_string(format!("{EXAMPLE}/schema.sql")).unwrap();
    proxy.cluster.psql("postgres", &schema).unwrap();
    let dir = std::env::temp_dir().join(format!("viewgate-copy-{}", proxy.port()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("viewgate.toml");
    let example = std::fs::read_to_string(format!("{EXAMPLE}/viewgate.toml")).unwrap();
    std::fs::write(&spec, format!("{example}\n{V3}")).unwrap();
    apply(&proxy, &spec);
    proxy.admin("UPDATE viewgate.settings SET default_version = 'v1'; NOTIFY viewgate_control");
    assert!(
        wait_until(Duration::from_secs(5), || psql(
            &proxy,
            Some("v3"),
            "SELECT count(*) FROM model_metadata WHERE name IS NULL"
        )
        .is_ok()),
        "the proxy did not pick up the catalog"
    );
    (proxy, dir)
}

fn apply(proxy: &TestProxy, spec: &std::path::Path) {
    run_ok(Command::new(viewgate_binary()).args([
        "views",
        "apply",
        "--spec",
        spec.to_str().unwrap(),
        "--database",
        &proxy.cluster.url(SUPERUSER, "postgres"),
    ]));
}

async fn connect(proxy: &TestProxy, version: &str) -> Client {
    common::versions::connect_with(proxy, &format!("-c%20viewgate.version%3D{version}")).await
}

/// The version's columns, in the view's order.
fn view_columns(version: &str) -> Vec<&'static str> {
    match version {
        "v1" => vec![
            "id",
            "model_name",
            "model_version",
            "hyperparameters",
            "created_at",
        ],
        "v2" => vec![
            "id",
            "model_name",
            "model_version",
            "model_type",
            "hyperparameters",
            "created_at",
            "schema_version",
        ],
        _ => vec!["id", "name", "version", "hyperparameters", "created_at"],
    }
}

/// What the version calls `model_name` and `model_version`.
fn names(version: &str) -> (&'static str, &'static str) {
    match version {
        "v3" => ("name", "version"),
        _ => ("model_name", "model_version"),
    }
}

async fn copy_in(client: &Client, sql: &str, data: &str) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(sql).await?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(data.to_owned())).await?;
    sink.finish().await
}

async fn copy_out(client: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let stream = client.copy_out(sql).await?;
    let chunks: Vec<Bytes> = stream.try_collect().await?;
    Ok(chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect())
}

/// The base table's rows, as the admin reads them directly.
fn base_rows(proxy: &TestProxy) -> String {
    proxy.admin(
        "SELECT id, model_name, model_version, coalesce(model_type, '-'), hyperparameters::text,
                created_at = '2024-01-01 00:00:00+00', schema_version
           FROM model_metadata ORDER BY id",
    )
}

#[test]
fn copy_from_and_to_in_every_format_at_every_version() {
    let (proxy, dir) = proxy();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for version in ["v1", "v2", "v3"] {
        proxy.admin("TRUNCATE model_metadata RESTART IDENTITY");
        let (name, ver) = names(version);
        let columns = view_columns(version);
        runtime.block_on(async {
            let client = connect(&proxy, version).await;
            // Text, with a column list (the rest from the defaults).
            let copied = copy_in(
                &client,
                &format!("COPY model_metadata (id, {name}, {ver}) FROM STDIN"),
                "1\tresnet\t1.0\n2\tbert\t2.0\n",
            )
            .await
            .unwrap_or_else(|e| panic!("{version}: {e:?}"));
            assert_eq!(copied, 2, "{version}");
            // CSV with a header and no column list: every column of the version, in its order.
            let values = |column: &str| match column {
                "id" => "3",
                "model_name" | "name" => "vit",
                "model_version" | "version" => "3.0",
                "model_type" => "transformer",
                "hyperparameters" => "\"{\"\"a\"\": 1}\"",
                "created_at" => "2024-01-01 00:00:00+00",
                "schema_version" => "2",
                other => panic!("{other}"),
            };
            let csv = format!(
                "{}\n{}\n",
                columns.join(","),
                columns.iter().map(|c| values(c)).collect::<Vec<_>>().join(",")
            );
            copy_in(
                &client,
                "COPY model_metadata FROM STDIN WITH (FORMAT csv, HEADER true)",
                &csv,
            )
            .await
            .unwrap_or_else(|e| panic!("{version}: {e:?}"));
            // Binary, with a column list.
            let sink = client
                .copy_in::<_, Bytes>(&format!(
                    "COPY model_metadata (id, {name}, {ver}, hyperparameters) FROM STDIN (FORMAT binary)"
                ))
                .await
                .unwrap_or_else(|e| panic!("{version}: {e:?}"));
            let writer =
                BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::TEXT, Type::JSONB]);
            futures_util::pin_mut!(writer);
            let hyper = serde_json::json!({"b": 2});
            writer
                .as_mut()
                .write(&[&4i64, &"gpt", &"4.0", &hyper])
                .await
                .unwrap();
            writer.finish().await.unwrap();
        });
        // The simple protocol: psql's \copy sends `COPY … FROM STDIN` as a Query.
        let file = dir.join(format!("{version}.csv"));
        std::fs::write(&file, "5,t5,5.0\n").unwrap();
        psql(
            &proxy,
            Some(version),
            &format!(
                "\\copy model_metadata (id, {name}, {ver}) FROM '{}' WITH (FORMAT csv, FORCE_NOT_NULL ({ver}))",
                file.display()
            ),
        )
        .unwrap_or_else(|e| panic!("{version}: {e}"));

        // The rows landed in the base table, with the base table's (or v2's trigger's) values
        // for what the version leaves out.
        let (type3, schema3) = if version == "v2" {
            ("transformer", "2")
        } else {
            ("-", "1")
        };
        assert_eq!(
            base_rows(&proxy),
            [
                "1|resnet|1.0|-|{}|f|1".to_owned(),
                "2|bert|2.0|-|{}|f|1".to_owned(),
                format!("3|vit|3.0|{type3}|{{\"a\": 1}}|t|{schema3}"),
                "4|gpt|4.0|-|{\"b\": 2}|f|1".to_owned(),
                "5|t5|5.0|-|{}|f|1".to_owned(),
            ]
            .join("\n"),
            "{version}"
        );

        // And read back through the version: text and CSV, with and without column lists.
        runtime.block_on(async {
            let client = connect(&proxy, version).await;
            let text = copy_out(
                &client,
                &format!("COPY model_metadata (id, {name}, {ver}) TO STDOUT"),
            )
            .await
            .unwrap_or_else(|e| panic!("{version}: {e:?}"));
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            assert_eq!(
                lines,
                [
                    "1\tresnet\t1.0",
                    "2\tbert\t2.0",
                    "3\tvit\t3.0",
                    "4\tgpt\t4.0",
                    "5\tt5\t5.0"
                ],
                "{version}"
            );
            let csv = copy_out(
                &client,
                "COPY model_metadata TO STDOUT WITH (FORMAT csv, HEADER)",
            )
            .await
            .unwrap_or_else(|e| panic!("{version}: {e:?}"));
            let mut lines = csv.lines();
            assert_eq!(lines.next(), Some(columns.join(",").as_str()), "{version}");
            let rows: Vec<&str> = lines.collect();
            assert_eq!(rows.len(), 5, "{version}: {csv}");
            assert!(
                rows.iter()
                    .all(|row| row.split(',').count() >= columns.len()),
                "{version}: {csv}"
            );
            if version == "v2" {
                // v2 reads a NULL model_type as 'neural_network'.
                assert!(
                    rows.iter()
                        .any(|row| row.starts_with("1,resnet,1.0,neural_network,")),
                    "{csv}"
                );
                assert!(
                    rows.iter()
                        .any(|row| row.starts_with("3,vit,3.0,transformer,")),
                    "{csv}"
                );
            }
            // Binary, with a column list.
            let stream = client
                .copy_out(&format!(
                    "COPY model_metadata (id, {ver}, hyperparameters) TO STDOUT (FORMAT binary)"
                ))
                .await
                .unwrap_or_else(|e| panic!("{version}: {e:?}"));
            let rows: Vec<_> =
                BinaryCopyOutStream::new(stream, &[Type::INT8, Type::TEXT, Type::JSONB])
                    .try_collect()
                    .await
                    .unwrap();
            let mut read: Vec<(i64, String, serde_json::Value)> = rows
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect();
            read.sort_by_key(|row| row.0);
            assert_eq!(read.len(), 5, "{version}");
            assert_eq!(
                read[3],
                (4, "4.0".to_owned(), serde_json::json!({"b": 2})),
                "{version}"
            );
            // Binary, without one (created_at's type needs a tokio-postgres feature this crate
            // does not enable, so the first tuple's field count is read from the bytes: the
            // 19-byte header, then a 16-bit count).
            let stream = client
                .copy_out("COPY model_metadata TO STDOUT (FORMAT binary)")
                .await
                .unwrap_or_else(|e| panic!("{version}: {e:?}"));
            let bytes = stream.try_collect::<Vec<Bytes>>().await.unwrap().concat();
            assert!(bytes.starts_with(b"PGCOPY\n\xff\r\n\0"), "{version}");
            let field_count = u16::from_be_bytes([bytes[19], bytes[20]]);
            assert_eq!(
                usize::from(field_count),
                columns.len(),
                "{version}: the version's columns"
            );
        });
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A COPY error as (SQLSTATE, message, position).
fn refused(error: tokio_postgres::Error) -> (String, String, Option<u32>) {
    let db = error.as_db_error().expect("an error from the server");
    let position = match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
        _ => None,
    };
    (
        db.code().code().to_owned(),
        db.message().to_owned(),
        position,
    )
}

/// A `)` inside a comment closes no column list. The thirtieth red-team pass ended the list
/// there: the rewrite replaced the text up to it, cut the comment's `/*` off, and the rest of
/// the comment ran as statements nobody had rewritten (reading and writing the base table's
/// hidden columns at v1). Now the comment is part of the list, and goes with it.
#[test]
fn a_parenthesis_inside_a_comment_closes_no_column_list() {
    let (proxy, dir) = proxy();
    proxy.admin("INSERT INTO model_metadata (id, model_name, model_version, model_type, schema_version) VALUES (777, 'h', '1', 'HIDDEN_TYPE', 42)");
    for smuggled in [
        "COPY model_metadata (id /*) TO STDOUT; SELECT id, model_type, schema_version FROM model_metadata; --*/) TO STDOUT",
        "COPY model_metadata (id -- ) TO STDOUT; SELECT id, model_type, schema_version FROM model_metadata; /*\n) TO STDOUT --*/",
        "COPY model_metadata (id /*) TO STDOUT; UPDATE model_metadata SET model_type = 'WRITTEN', schema_version = 7 RETURNING id, model_type, schema_version; --*/) TO STDOUT",
    ] {
        assert_eq!(
            psql(&proxy, Some("v1"), smuggled).as_deref(),
            Ok("777"),
            "{smuggled}"
        );
    }
    assert_eq!(
        proxy.admin("SELECT model_type, schema_version FROM model_metadata"),
        "HIDDEN_TYPE|42"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let v1 = connect(&proxy, "v1").await;
        assert_eq!(
            copy_out(
                &v1,
                "COPY model_metadata (id, model_name /* ) */) TO STDOUT"
            )
            .await
            .unwrap(),
            "777\th\n"
        );
        copy_in(
            &v1,
            "COPY model_metadata (id, model_name, model_version -- )\n) FROM STDIN",
            "778\tk\t2\n",
        )
        .await
        .unwrap();
    });
    assert_eq!(
        proxy.admin(
            "SELECT id, model_name, coalesce(model_type, '-') FROM model_metadata ORDER BY id"
        ),
        "777|h|HIDDEN_TYPE\n778|k|-"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn what_cannot_be_copied_exactly_is_refused_and_old_catalogs_copy_as_before() {
    let (proxy, dir) = proxy();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let v3 = connect(&proxy, "v3").await;
        // Leaving out `version`: an insert through v3 would store v3's default '0.0', a COPY
        // into the base table none (the base column has no default).
        let (code, message, _) = refused(
            copy_in(&v3, "COPY model_metadata (id, name) FROM STDIN", "1\tx\n")
                .await
                .unwrap_err(),
        );
        assert_eq!(code, "42601", "{message}");
        assert!(
            message.contains("\"version\"") && message.contains("default"),
            "{message}"
        );
        // Listing it is exact.
        copy_in(
            &v3,
            "COPY model_metadata (id, name, version) FROM STDIN",
            "100\tx\t0.1\n",
        )
        .await
        .unwrap();
        // A base column name the version does not have, and a column only the base table has.
        let (code, message, position) = refused(
            copy_in(
                &v3,
                "COPY model_metadata (id, model_name, version) FROM STDIN",
                "",
            )
            .await
            .unwrap_err(),
        );
        // Told as Postgres tells a column the table lacks (42703, undefined_column), as
        // `COPY … TO` is, which reads through the view: it was a syntax error (42601).
        assert_eq!(code, "42703", "{message}");
        assert!(
            message.starts_with(
                "column \"model_name\" of relation \"model_metadata\" does not exist at version v3"
            ),
            "{message}"
        );
        assert!(
            message.contains("at character 26"),
            "{message} {position:?}"
        );
        let (code, message, _) = refused(
            copy_out(&v3, "COPY model_metadata (id, model_name) TO STDOUT")
                .await
                .unwrap_err(),
        );
        assert_eq!(code, "42703", "COPY … TO: {message}");
        // A FORCE_NOT_NULL column the version lacks, the one column list being right.
        let (code, message, _) = refused(
            copy_in(
                &v3,
                "COPY model_metadata (id, name, version) FROM STDIN (FORMAT csv, FORCE_NOT_NULL (model_name))",
                "",
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(code, "42703", "{message}");
        assert!(message.contains("\"model_name\""), "{message}");
        let v1 = connect(&proxy, "v1").await;
        let (code, message, _) = refused(
            copy_in(
                &v1,
                "COPY model_metadata (id, model_name, model_version, schema_version) FROM STDIN",
                "",
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(code, "42703", "{message}");
        assert!(
            message.contains("\"schema_version\"") && message.contains("version v1"),
            "{message}"
        );
        // Syntax viewgate's own parser cannot read (COPY … FROM … WHERE) is refused, never
        // sent to the view (where Postgres would refuse to copy) or the base table unmapped.
        let (code, message, _) = refused(
            copy_in(&v1, "COPY model_metadata FROM STDIN WHERE id > 0", "")
                .await
                .unwrap_err(),
        );
        assert_eq!(code, "42601");
        assert!(message.contains("COPY … FROM"), "{message}");
    });
    assert_eq!(
        proxy.admin("SELECT id, model_name, model_version FROM model_metadata"),
        "100|x|0.1"
    );

    // A view recorded before the catalog kept mappings: COPY goes to the view, as before,
    // and Postgres says it cannot copy to a view.
    proxy.admin("UPDATE viewgate.version_objects SET mapping = NULL WHERE version = 'v1'; NOTIFY viewgate_control");
    let before = runtime.block_on(async {
        let mut last = None;
        for _ in 0..50 {
            let v1 = connect(&proxy, "v1").await;
            match copy_in(
                &v1,
                "COPY model_metadata (model_name, model_version) FROM STDIN",
                "a\tb\n",
            )
            .await
            {
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(error) => {
                    last = Some(refused(error));
                    break;
                }
            }
        }
        last.expect("the proxy reloaded the catalog")
    });
    assert!(before.1.contains("cannot copy to view"), "{before:?}");
    // `views status` shows such a version as pending, as apply treats it.
    let status = run_ok(Command::new(viewgate_binary()).args([
        "views",
        "status",
        "--spec",
        dir.join("viewgate.toml").to_str().unwrap(),
        "--database",
        &proxy.cluster.url(SUPERUSER, "postgres"),
    ]));
    assert!(status.contains("version v1: pending"), "{status}");
    assert!(status.contains("version v2: applied"), "{status}");
    // The next apply records the mapping again (the version counts as not current).
    proxy.admin("DELETE FROM model_metadata WHERE model_name = 'a'");
    apply(&proxy, &dir.join("viewgate.toml"));
    assert_eq!(
        proxy.admin("SELECT count(*) FROM viewgate.version_objects WHERE mapping IS NULL"),
        "0"
    );
    assert!(
        wait_until(Duration::from_secs(5), || runtime.block_on(async {
            let v1 = connect(&proxy, "v1").await;
            copy_in(
                &v1,
                "COPY model_metadata (model_name, model_version) FROM STDIN",
                "c\td\n",
            )
            .await
            .is_ok()
        })),
        "COPY at v1 works again after the apply"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_trigger_backed_version_with_renamed_columns_copies_and_upserts() {
    let (proxy, dir) = proxy();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let v4 = connect(&proxy, "v4").await;
        // COPY … FROM goes through the view: its trigger writes `kind` back in lower case.
        copy_in(
            &v4,
            "COPY model_metadata (model_id, name, model_version, kind) FROM STDIN (FORMAT csv)",
            "1,resnet,1.0,CNN\n",
        )
        .await
        .unwrap();
        // An upsert on the renamed key, SET through the computed column, RETURNING *.
        let upsert = "INSERT INTO model_metadata AS m (model_id, name, model_version, kind) VALUES ($1, $2, '1.0', $3) ON CONFLICT (model_id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name || '+' || m.name RETURNING *";
        for (id, name, kind) in [(1i64, "resnet2", "Vision"), (2, "bert", "NLP")] {
            let row = v4.query_one(upsert, &[&id, &name, &kind]).await.unwrap();
            let columns: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
            assert_eq!(columns, ["model_id", "name", "model_version", "kind"]);
            assert_eq!(row.get::<_, String>(3), kind.to_uppercase());
        }
    });
    assert_eq!(
        proxy.admin("SELECT id, model_name, model_type FROM model_metadata ORDER BY id"),
        "1|resnet2+resnet|vision\n2|bert|nlp"
    );
    let _ = std::fs::remove_dir_all(dir);
}
