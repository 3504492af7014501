//! `MERGE` through every version of a spec, against a real Postgres (15 here and in CI, which
//! cannot MERGE into any view) behind the proxy. The proxy sends each MERGE to the base table
//! with the version's columns mapped (`src/rewriter/merge.rs`): the seed example's v1
//! (auto-updatable) and v2 (trigger-backed: an expression column with `write`), a v3 that
//! renames two columns and gives one a default of its own, and a v4, trigger-backed, with a
//! renamed key and a computed `kind` written back in lower case. At each version: matched
//! UPDATE, DELETE and DO NOTHING, not-matched INSERT with and without a column list and
//! `INSERT DEFAULT VALUES`, conditions reading an expression (or renamed) column, USING a
//! subquery and USING VALUES, through the simple protocol (tokio-postgres' simple queries and
//! psql) and the extended one (parameters); the rows are checked in the base table and as the
//! versions read them afterwards. Postgres is the oracle too: each of 26 MERGEs leaves the base
//! table as the same change written as UPDATE / INSERT / DELETE through the view does (which
//! PostgreSQL 15 runs by the view's rules or trigger). What cannot be mapped exactly is
//! refused with 42601, a column the version does not have with 42703.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::versions::{EXAMPLE, psql};
use common::{TestProxy, run_ok, viewgate_binary, wait_until};
use tokio_postgres::{Client, SimpleQueryMessage};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER};

/// v3: `model_name` and `model_version` renamed, `version` defaulting to '0.0' at this
/// version only. v4: trigger-backed with renamed columns, the key among them, and a computed
/// `kind` written back in lower case.
const MORE_VERSIONS: &str = r#"
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

/// What a version calls the key, `model_name` and `model_version`.
struct Names {
    version: &'static str,
    id: &'static str,
    name: &'static str,
    ver: &'static str,
}

const VERSIONS: [Names; 4] = [
    Names {
        version: "v1",
        id: "id",
        name: "model_name",
        ver: "model_version",
    },
    Names {
        version: "v2",
        id: "id",
        name: "model_name",
        ver: "model_version",
    },
    Names {
        version: "v3",
        id: "id",
        name: "name",
        ver: "version",
    },
    Names {
        version: "v4",
        id: "model_id",
        name: "name",
        ver: "model_version",
    },
];

/// The seed example plus v3 and v4, with defaults on `model_name` and `model_version` (so
/// `INSERT DEFAULT VALUES` can succeed), applied; the proxy knows all four versions.
fn proxy() -> TestProxy {
    let proxy = TestProxy::start_with(ClusterOptions::default(), |config| {
        config.catalog = Some(format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
            config.upstream.rsplit(':').next().unwrap()
        ));
    });
    let schema = std::fs::read_to_string(format!("{EXAMPLE}/schema.sql")).unwrap();
    proxy.cluster.psql("postgres", &schema).unwrap();
    proxy.admin(
        "ALTER TABLE model_metadata ALTER model_name SET DEFAULT 'unnamed', ALTER model_version SET DEFAULT '0'",
    );
    let dir = std::env::temp_dir().join(format!("viewgate-merge-{}", proxy.port()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("viewgate.toml");
    let example = std::fs::read_to_string(format!("{EXAMPLE}/viewgate.toml")).unwrap();
    std::fs::write(&spec, format!("{example}\n{MORE_VERSIONS}")).unwrap();
    run_ok(Command::new(viewgate_binary()).args([
        "views",
        "apply",
        "--spec",
        spec.to_str().unwrap(),
        "--database",
        &proxy.cluster.url(SUPERUSER, "postgres"),
    ]));
    let _ = std::fs::remove_dir_all(&dir);
    proxy.admin("UPDATE viewgate.settings SET default_version = 'v1'; NOTIFY viewgate_control");
    assert!(
        wait_until(Duration::from_secs(5), || psql(
            &proxy,
            Some("v4"),
            "SELECT count(*) FROM model_metadata WHERE kind IS NULL"
        )
        .is_ok()),
        "the proxy did not pick up the catalog"
    );
    proxy
}

/// Three rows, and the id sequence at 10.
fn reseed(proxy: &TestProxy) {
    proxy.admin(
        "TRUNCATE model_metadata;
         INSERT INTO model_metadata (id, model_name, model_version, model_type) VALUES
             (1, 'resnet', '1.0', NULL), (2, 'bert', '2.0', 'transformer'), (3, 'gpt', '3.0', 'transformer');
         SELECT setval('model_metadata_id_seq', 10)",
    );
}

async fn at(proxy: &TestProxy, version: &str) -> Client {
    common::versions::connect_with(proxy, &format!("-c%20viewgate.version%3D{version}")).await
}

/// The rows `sql` returns, as `a|b|…` lines, through the simple protocol.
async fn rows(client: &Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("-").to_owned())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

/// A MERGE through the simple protocol: the count of its command tag.
async fn merge(client: &Client, sql: &str) -> u64 {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .unwrap()
}

/// The base table's rows: id, model_name, model_version, model_type.
fn base(proxy: &TestProxy) -> String {
    proxy.admin(
        "SELECT id, model_name, model_version, coalesce(model_type, '-') FROM model_metadata ORDER BY id",
    )
}

#[test]
fn merge_updates_deletes_and_inserts_through_every_version() {
    let proxy = proxy();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for names in &VERSIONS {
        let Names {
            version,
            id,
            name,
            ver,
        } = names;
        reseed(&proxy);
        runtime.block_on(async {
            let client = at(&proxy, version).await;
            // USING VALUES: a matched UPDATE and a not-matched INSERT with a column list.
            assert_eq!(
                merge(&client, &format!("MERGE INTO model_metadata AS t USING (VALUES (1, 'resnet-b'), (4, 'vit')) AS s (k, n) ON t.{id} = s.k WHEN MATCHED THEN UPDATE SET {name} = s.n WHEN NOT MATCHED THEN INSERT ({id}, {name}, {ver}) VALUES (s.k, s.n, '4.0')")).await,
                2,
                "{version}"
            );
            // A condition on the target's (renamed) column, DELETE; the unmatched row is left.
            assert_eq!(
                merge(&client, &format!("MERGE INTO model_metadata t USING (SELECT 2 AS k UNION ALL SELECT 3) s ON t.{id} = s.k WHEN MATCHED AND t.{ver} = '2.0' THEN DELETE")).await,
                1,
                "{version}"
            );
            // USING a subquery: DO NOTHING when matched, an INSERT without a column list (the
            // view's first columns) when not, an unqualified source column.
            assert_eq!(
                merge(&client, &format!("MERGE INTO model_metadata t USING (SELECT 3 AS k UNION ALL SELECT 5) s ON t.{id} = k WHEN MATCHED THEN DO NOTHING WHEN NOT MATCHED THEN INSERT VALUES (k, 'n' || k, '5.0')")).await,
                1,
                "{version}"
            );
            // INSERT DEFAULT VALUES: the view's defaults.
            assert_eq!(
                merge(&client, "MERGE INTO model_metadata t USING (VALUES (0)) s (k) ON false WHEN NOT MATCHED THEN INSERT DEFAULT VALUES").await,
                1,
                "{version}"
            );
            // The extended protocol, with parameters: inserted, then updated.
            let statement = format!("MERGE INTO model_metadata t USING (SELECT $1::bigint AS k, $2::text AS n) s ON t.{id} = s.k WHEN MATCHED THEN UPDATE SET {name} = s.n, {ver} = t.{ver} || '+' WHEN NOT MATCHED THEN INSERT ({name}, {id}, {ver}) VALUES (s.n, s.k, $3)");
            for n in ["ext", "ext2"] {
                assert_eq!(
                    client.execute(&statement, &[&20i64, &n, &"7"]).await.unwrap(),
                    1,
                    "{version}"
                );
            }
            // The version reads its rows back.
            assert_eq!(
                rows(&client, &format!("SELECT {id}, {name}, {ver} FROM model_metadata ORDER BY 1")).await,
                [
                    "1|resnet-b|1.0",
                    "3|gpt|3.0",
                    "4|vit|4.0",
                    "5|n5|5.0",
                    if *version == "v3" { "11|unnamed|0.0" } else { "11|unnamed|0" },
                    "20|ext2|7+",
                ],
                "{version}"
            );
        });
        assert_eq!(
            base(&proxy),
            [
                "1|resnet-b|1.0|-",
                "3|gpt|3.0|transformer",
                "4|vit|4.0|-",
                "5|n5|5.0|-",
                if *version == "v3" {
                    "11|unnamed|0.0|-"
                } else {
                    "11|unnamed|0|-"
                },
                "20|ext2|7+|-",
            ]
            .join("\n"),
            "{version}"
        );
    }
}

#[test]
fn merge_reads_and_writes_expression_columns_as_the_trigger_does() {
    let proxy = proxy();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    reseed(&proxy);
    runtime.block_on(async {
        let v2 = at(&proxy, "v2").await;
        // ON an expression column: rows whose stored model_type is NULL read
        // 'neural_network'. SET model_type to what it reads leaves the stored NULL (the
        // trigger writes it only when it changed); the other row's changes.
        assert_eq!(
            merge(&v2, "MERGE INTO model_metadata t USING (VALUES ('neural_network', 'cnn'), ('transformer', 'encoder')) s (kind, new_kind) ON t.model_type = s.kind WHEN MATCHED AND t.model_type = 'neural_network' THEN UPDATE SET model_type = s.kind, model_version = t.model_version || '+' WHEN MATCHED AND t.id = 2 THEN UPDATE SET model_type = s.new_kind WHEN MATCHED THEN DELETE").await,
            3
        );
        assert_eq!(base(&proxy), "1|resnet|1.0+|-\n2|bert|2.0|encoder");
        // INSERT leaves model_type to the view (NULL, read as 'neural_network') or writes it.
        assert_eq!(
            merge(&v2, "MERGE INTO model_metadata t USING (VALUES (7, 'a', NULL), (8, 'b', 'gan')) s (id, n, kind) ON t.id = s.id WHEN NOT MATCHED AND s.kind IS NULL THEN INSERT (id, model_name) VALUES (s.id, s.n) WHEN NOT MATCHED THEN INSERT (model_type, id, model_name, schema_version) VALUES (s.kind, s.id, s.n, DEFAULT)").await,
            2
        );
        assert_eq!(
            rows(&v2, "SELECT id, model_name, model_version, model_type, schema_version FROM model_metadata WHERE id > 6 ORDER BY 1").await,
            ["7|a|0|neural_network|1", "8|b|0|gan|1"]
        );
        // v4: the renamed key and `kind` = upper(model_type), written back as lower(NEW.kind).
        let v4 = at(&proxy, "v4").await;
        assert_eq!(
            merge(&v4, "MERGE INTO model_metadata AS m USING (VALUES (2, 'ENCODER'), (9, 'Diffusion')) AS s (k, kind) ON m.model_id = s.k WHEN MATCHED AND m.kind = s.kind THEN UPDATE SET kind = 'Decoder', name = m.name || '!' WHEN NOT MATCHED THEN INSERT (model_id, name, kind) VALUES (s.k, 'sd', s.kind)").await,
            2
        );
        assert_eq!(
            rows(&v4, "SELECT model_id, name, model_version, kind FROM model_metadata WHERE model_id IN (2, 9) ORDER BY 1").await,
            ["2|bert!|2.0|DECODER", "9|sd|0|DIFFUSION"]
        );
    });
    assert_eq!(
        proxy.admin(
            "SELECT id, model_name, model_type FROM model_metadata WHERE id IN (2, 9) ORDER BY id"
        ),
        "2|bert!|decoder\n9|sd|diffusion"
    );
    // The simple protocol through psql, at v2: the expression column in the condition.
    assert_eq!(
        psql(
            &proxy,
            Some("v2"),
            "MERGE INTO model_metadata t USING (SELECT 7 AS k) s ON t.id = s.k WHEN MATCHED AND t.model_type = 'neural_network' THEN UPDATE SET model_type = 'rnn'"
        )
        .unwrap(),
        ""
    );
    assert_eq!(
        proxy.admin("SELECT coalesce(model_type, '-') FROM model_metadata WHERE id = 7"),
        "rnn"
    );
    // And every version reads the rows as its own.
    runtime.block_on(async {
        for (version, expected) in [
            ("v1", "7|a|0"),
            ("v2", "7|a|0|rnn"),
            ("v3", "7|a|0"),
            ("v4", "7|a|0|RNN"),
        ] {
            let client = at(&proxy, version).await;
            let row = rows(
                &client,
                "SELECT * FROM model_metadata WHERE 7 IN (SELECT 7) ORDER BY 1",
            )
            .await;
            let row = row.iter().find(|r| r.starts_with("7|")).unwrap();
            let fields: Vec<&str> = row.split('|').collect();
            let picked = match version {
                "v2" => [fields[0], fields[1], fields[2], fields[3]].join("|"),
                "v4" => fields.join("|"),
                _ => fields[..3].join("|"),
            };
            assert_eq!(picked, expected, "{version}: {row}");
        }
    });
}

#[test]
fn what_cannot_be_mapped_exactly_is_refused() {
    let proxy = proxy();
    reseed(&proxy);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The twenty-eighth red-team pass: an alias that is the target's only after Postgres cuts
    // it to 63 bytes, and references hidden from viewgate's parser behind `#--` (an operator
    // and a comment to Postgres, the start of a `$$` string to sqlparser), read the base row.
    let alias = "a".repeat(63);
    let red_team = [
        // The twenty-ninth: a bare name that is the source's alias and a hidden base column
        // (Postgres reads columns first), and a whole row of the target or of `excluded` in
        // an upsert at a trigger-backed version.
        (
            "v1",
            "MERGE INTO model_metadata t USING (SELECT 1 AS id) AS model_type ON t.id = model_type.id WHEN MATCHED THEN UPDATE SET model_name = model_type".to_owned(),
            "column \"model_type\" does not exist at version v1 (nor in the source)",
        ),
        (
            "v4",
            "INSERT INTO model_metadata AS t (model_id, name, model_version) VALUES (1, 'a', 'b') ON CONFLICT (model_id) DO UPDATE SET name = (t.*)::text".to_owned(),
            "whole-row reference to the target",
        ),
        (
            "v4",
            "INSERT INTO model_metadata AS t (model_id, name, model_version) VALUES (1, 'a', 'b') ON CONFLICT (model_id) DO UPDATE SET name = to_jsonb(excluded.*)::text".to_owned(),
            "whole-row reference to the target",
        ),
        (
            "v4",
            "INSERT INTO model_metadata AS t (model_id, name, model_version) VALUES (1, 'a', 'b') ON CONFLICT (model_id) DO UPDATE SET name = 'x' RETURNING row_to_json(t.*)".to_owned(),
            "whole-row reference to the target",
        ),
        (
            "v1",
            format!("MERGE INTO model_metadata AS {alias}x USING (VALUES (1)) s (k) ON {alias}y.id = s.k WHEN MATCHED AND {alias}z.model_type IS NULL THEN DELETE"),
            "column \"model_type\" of relation \"model_metadata\" does not exist at version v1",
        ),
        (
            "v1",
            "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN MATCHED THEN UPDATE SET model_name = 3 #-- $$\n 0 || t.model_type -- $$\n".to_owned(),
            "lexer reads this text's tokens otherwise",
        ),
        (
            "v2",
            "INSERT INTO model_metadata AS t (id, model_name, model_version) VALUES (1, 'x', 'y') ON CONFLICT (id) DO UPDATE SET model_name = 3 #-- $$\n 0 || t.schema_version -- $$\n".to_owned(),
            "lexer reads this text's tokens otherwise",
        ),
        // The thirtieth pass: a query inside ARRAY(…), which sqlparser reads as a call, read
        // the base row through `(SELECT t.*) x`; and a name qualified by the database as well
        // as the schema was left to Postgres, which read it from the base row.
        (
            "v1",
            "MERGE INTO model_metadata t USING model_metadata s ON t.id = s.id WHEN MATCHED THEN UPDATE SET model_version = array_to_string(ARRAY(SELECT x.model_type || '/' || x.schema_version FROM (SELECT t.*) x), ',')".to_owned(),
            "subquery",
        ),
        (
            "v4",
            "INSERT INTO model_metadata AS t (model_id, name, model_version) VALUES (2, 'a', 'b') ON CONFLICT (model_id) DO UPDATE SET name = 'x' RETURNING ARRAY(SELECT g.* FROM (SELECT t.*) x JOIN generate_series(0, 1000) AS g (schema_version) USING (schema_version))::text".to_owned(),
            "subquery",
        ),
        (
            "v1",
            "MERGE INTO model_metadata USING model_metadata s ON model_metadata.id = s.id WHEN MATCHED THEN UPDATE SET model_version = coalesce(postgres.public.model_metadata.model_type, '-')".to_owned(),
            "column \"model_type\" of relation \"model_metadata\" does not exist at version v1",
        ),
        // The thirty-fourth: the target aliased with its own name; the rewriter drops the
        // `public.` of `public.model_metadata.model_type`, and Postgres read what was left,
        // `model_metadata.model_type`, from the base row.
        (
            "v1",
            "MERGE INTO model_metadata AS model_metadata USING model_metadata_v1 AS s ON model_metadata.id = s.id WHEN MATCHED THEN UPDATE SET model_name = concat('[', public.model_metadata.model_type, ']')".to_owned(),
            "column \"model_type\" of relation \"model_metadata\" does not exist at version v1",
        ),
        (
            "v1",
            "MERGE INTO model_metadata AS \"model_metadata\" USING (SELECT 2 AS k) s ON \"model_metadata\".id = s.k AND postgres.\"public\".\"model_metadata\".schema_version = 42 WHEN MATCHED THEN DELETE".to_owned(),
            "column \"schema_version\" of relation \"model_metadata\" does not exist at version v1",
        ),
        (
            "v1",
            "MERGE INTO model_metadata USING other.model_metadata ON public.model_metadata.id = other.model_metadata.id WHEN MATCHED THEN DELETE".to_owned(),
            "another schema's table of the target's name",
        ),
    ];
    runtime.block_on(async {
        for (version, sql, expected) in [
            ("v2", "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN MATCHED THEN UPDATE SET model_name = (SELECT 'x')", "subquery"),
            ("v1", "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k AND EXISTS (SELECT 1) WHEN MATCHED THEN DELETE", "subquery"),
            ("v2", "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN MATCHED THEN UPDATE SET model_name = DEFAULT", "DEFAULT in MERGE's UPDATE SET"),
            ("v1", "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN MATCHED THEN DELETE RETURNING *", "RETURNING"),
            ("v1", "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN MATCHED AND t.model_type IS NULL THEN DELETE", "column \"model_type\" of relation \"model_metadata\" does not exist at version v1"),
            ("v3", "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN MATCHED THEN UPDATE SET model_name = 'x'", "column \"model_name\" of relation \"model_metadata\" does not exist at version v3"),
            ("v3", "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN NOT MATCHED THEN INSERT (id, model_version) VALUES (s.k, 'x')", "column \"model_version\" of relation \"model_metadata\" does not exist at version v3"),
            ("v1", "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON schema_version = s.k WHEN MATCHED THEN DELETE", "column \"schema_version\" does not exist at version v1 (nor in the source)"),
            ("v1", "MERGE INTO model_metadata t USING pg_class s ON t.id = oid WHEN MATCHED THEN DELETE", "qualify it"),
            ("v2", "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON to_jsonb(t) ->> 'id' = '1' WHEN MATCHED THEN DELETE", "whole-row"),
            ("v2", "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN MATCHED THEN UPDATE SET (model_name, model_version) = ('a', 'b')", "several columns"),
            ("v2", "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN NOT MATCHED BY SOURCE THEN DELETE", "NOT MATCHED BY SOURCE"),
            ("v4", "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.model_id = s.k WHEN NOT MATCHED THEN INSERT OVERRIDING USER VALUE VALUES (s.k)", "syntax viewgate's own parser cannot read"),
        ]
        .map(|(version, sql, expected)| (version, sql.to_owned(), expected))
        .into_iter()
        .chain(red_team)
        {
            let sql = sql.as_str();
            let client = at(&proxy, version).await;
            for extended in [false, true] {
                let error = if extended {
                    client.execute(sql, &[]).await.unwrap_err()
                } else {
                    client.simple_query(sql).await.unwrap_err()
                };
                let db = error
                    .as_db_error()
                    .unwrap_or_else(|| panic!("{version} {sql}: {error:?}"));
                // A column the version does not have is told as Postgres tells a missing
                // column (42703), as INSERT, UPDATE and COPY through the version are; what
                // cannot be mapped exactly is a syntax error (42601).
                let code = match expected.starts_with("column \"") {
                    true => "42703",
                    false => "42601",
                };
                assert_eq!(db.code().code(), code, "{version} {sql}: {db:?}");
                assert!(
                    db.message().contains(expected),
                    "{version} {sql}: {}",
                    db.message()
                );
                assert!(
                    db.message().contains("(at character "),
                    "{version} {sql}: no position in {}",
                    db.message()
                );
            }
        }
        // The thirty-third pass: the dropped schema qualifier of `NOT"public".model_metadata.…`
        // left `NOTmodel_metadata.model_type`, the target's alias `notmodel_metadata`, and
        // Postgres read the base row's hidden column. Now it is the source's (v1's view),
        // which has no such column.
        let client = at(&proxy, "v1").await;
        let error = client
            .simple_query("MERGE INTO model_metadata AS notmodel_metadata USING model_metadata ON notmodel_metadata.id = model_metadata.id WHEN MATCHED THEN UPDATE SET model_name = concat('[', NOT\"public\".model_metadata.model_type)")
            .await
            .unwrap_err();
        let message = error.as_db_error().map(|db| db.message().to_owned()).unwrap_or_default();
        assert!(
            message.contains("model_metadata.model_type does not exist"),
            "{message}"
        );
    });
    // Nothing was written.
    assert_eq!(
        base(&proxy),
        "1|resnet|1.0|-\n2|bert|2.0|transformer\n3|gpt|3.0|transformer"
    );
}

/// The base table's rows, every column but `created_at` (`now()` differs between runs).
fn base_all(proxy: &TestProxy) -> String {
    proxy.admin(
        "SELECT id, model_name, model_version, coalesce(model_type, '-'), hyperparameters::text, schema_version FROM model_metadata ORDER BY id",
    )
}

/// Postgres itself as the oracle: PostgreSQL 15 cannot MERGE into a view, but it can UPDATE,
/// INSERT into and DELETE from one (by its rules, or its INSTEAD OF trigger). At every
/// version, each MERGE leaves the base table exactly as the same change written as plain
/// statements through the version's view does, from the same rows.
#[test]
fn each_merge_writes_what_the_same_change_through_the_view_writes() {
    let proxy = proxy();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut cases: Vec<(&str, String, String)> = Vec::new();
    for Names {
        version,
        id,
        name,
        ver,
    } in &VERSIONS
    {
        let source = "(VALUES (1, 'x'), (3, 'y'), (7, 'z')) AS s (k, n)";
        cases.extend([
            (
                *version,
                format!("MERGE INTO model_metadata t USING {source} ON t.{id} = s.k WHEN MATCHED THEN UPDATE SET {name} = s.n || t.{ver}, {ver} = upper(t.{name})"),
                format!("UPDATE model_metadata t SET {name} = s.n || t.{ver}, {ver} = upper(t.{name}) FROM {source} WHERE t.{id} = s.k"),
            ),
            (
                *version,
                format!("MERGE INTO model_metadata t USING {source} ON t.{id} = s.k WHEN NOT MATCHED THEN INSERT ({name}, {id}) VALUES (s.n, s.k)"),
                format!("INSERT INTO model_metadata ({name}, {id}) SELECT s.n, s.k FROM {source} WHERE NOT EXISTS (SELECT FROM model_metadata t WHERE t.{id} = s.k)"),
            ),
            (
                *version,
                format!("MERGE INTO model_metadata t USING {source} ON t.{id} = s.k WHEN NOT MATCHED THEN INSERT VALUES (s.k, s.n, DEFAULT)"),
                "INSERT INTO model_metadata VALUES (7, 'z', DEFAULT)".to_owned(),
            ),
            (
                *version,
                "MERGE INTO model_metadata t USING (VALUES (0)) s (k) ON false WHEN NOT MATCHED THEN INSERT DEFAULT VALUES".to_owned(),
                "INSERT INTO model_metadata DEFAULT VALUES".to_owned(),
            ),
            (
                *version,
                format!("MERGE INTO model_metadata t USING {source} ON t.{id} = s.k WHEN MATCHED AND t.{ver} < '3' THEN DELETE"),
                format!("DELETE FROM model_metadata t USING {source} WHERE t.{id} = s.k AND t.{ver} < '3'"),
            ),
        ]);
    }
    let expression = [
        (
            "v2",
            "MERGE INTO model_metadata t USING (VALUES ('neural_network', 'cnn'), ('transformer', 'transformer')) s (kind, nk) ON t.model_type = s.kind WHEN MATCHED THEN UPDATE SET model_type = s.nk, model_version = 'z'",
            "UPDATE model_metadata t SET model_type = s.nk, model_version = 'z' FROM (VALUES ('neural_network', 'cnn'), ('transformer', 'transformer')) s (kind, nk) WHERE t.model_type = s.kind",
        ),
        (
            "v2",
            "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN MATCHED THEN UPDATE SET model_type = t.model_type, schema_version = 5",
            "UPDATE model_metadata t SET model_type = t.model_type, schema_version = 5 FROM (VALUES (1)) s (k) WHERE t.id = s.k",
        ),
        (
            "v2",
            "MERGE INTO model_metadata t USING (VALUES (8, NULL), (9, 'gan')) s (k, kind) ON t.id = s.k WHEN NOT MATCHED THEN INSERT (model_type, id, model_name) VALUES (s.kind, s.k, 'm')",
            "INSERT INTO model_metadata (model_type, id, model_name) VALUES (NULL, 8, 'm'), ('gan', 9, 'm')",
        ),
        (
            "v4",
            "MERGE INTO model_metadata t USING (VALUES (2, 'TRANSFORMER'), (3, 'Mixed')) s (k, kind) ON t.model_id = s.k WHEN MATCHED AND t.kind = 'TRANSFORMER' THEN UPDATE SET kind = s.kind, name = t.kind",
            "UPDATE model_metadata t SET kind = s.kind, name = t.kind FROM (VALUES (2, 'TRANSFORMER'), (3, 'Mixed')) s (k, kind) WHERE t.model_id = s.k AND t.kind = 'TRANSFORMER'",
        ),
        (
            "v4",
            "MERGE INTO model_metadata t USING (VALUES (8, 'Vision')) s (k, kind) ON t.model_id = s.k WHEN NOT MATCHED THEN INSERT (kind, model_id) VALUES (s.kind, s.k)",
            "INSERT INTO model_metadata (kind, model_id) VALUES ('Vision', 8)",
        ),
        (
            "v3",
            "MERGE INTO model_metadata t USING (VALUES (8, 'n')) s (k, n) ON t.id = s.k WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.k, s.n)",
            "INSERT INTO model_metadata (id, name) VALUES (8, 'n')",
        ),
        // A subscripted column is the column (the thirtieth red-team pass found it refused).
        (
            "v3",
            "MERGE INTO model_metadata t USING (VALUES (1, 'q')) s (k, n) ON t.id = s.k WHEN MATCHED AND t.hyperparameters['lr'] IS NULL THEN UPDATE SET name = s.n || coalesce(t.hyperparameters['lr']::text, '-')",
            "UPDATE model_metadata t SET name = s.n || coalesce(t.hyperparameters['lr']::text, '-') FROM (VALUES (1, 'q')) s (k, n) WHERE t.id = s.k AND t.hyperparameters['lr'] IS NULL",
        ),
        (
            "v2",
            "MERGE INTO model_metadata t USING (VALUES (2, 'q')) s (k, n) ON t.id = s.k WHEN MATCHED AND t.hyperparameters['lr'] IS NULL THEN UPDATE SET model_name = s.n || t.model_type",
            "UPDATE model_metadata t SET model_name = s.n || t.model_type FROM (VALUES (2, 'q')) s (k, n) WHERE t.id = s.k AND t.hyperparameters['lr'] IS NULL",
        ),
        // WHEN NOT MATCHED sees only the source: its names, unqualified, are the source's
        // even where the view has them too.
        (
            "v3",
            "MERGE INTO model_metadata t USING (VALUES (8, 'n')) s (id, name) ON t.id = s.id WHEN NOT MATCHED AND name <> '' THEN INSERT (id, name) VALUES (id, name)",
            "INSERT INTO model_metadata (id, name) VALUES (8, 'n')",
        ),
        (
            "v2",
            "MERGE INTO model_metadata t USING (VALUES (8, 'n', 'cnn')) s (id, model_name, model_type) ON t.id = s.id WHEN NOT MATCHED THEN INSERT (id, model_name, model_type) VALUES (id, model_name, model_type)",
            "INSERT INTO model_metadata (id, model_name, model_type) VALUES (8, 'n', 'cnn')",
        ),
    ];
    cases.extend(
        expression
            .iter()
            .map(|(v, m, d)| (*v, (*m).to_owned(), (*d).to_owned())),
    );
    runtime.block_on(async {
        reseed(&proxy);
        let seeded = base_all(&proxy);
        for (version, merge_sql, plain_sql) in &cases {
            let client = at(&proxy, version).await;
            reseed(&proxy);
            let merged = merge(&client, merge_sql).await;
            let after_merge = base_all(&proxy);
            reseed(&proxy);
            let plain = merge(&client, plain_sql).await;
            let after_plain = base_all(&proxy);
            assert_eq!(
                after_merge, after_plain,
                "{version}: {merge_sql}\n  vs {plain_sql}"
            );
            assert_eq!(merged, plain, "{version}: {merge_sql}");
            assert_ne!(
                after_merge, seeded,
                "{version}: {merge_sql} changed nothing"
            );
        }
    });
}

/// The emulated MERGE against the same MERGE written by hand on the base table: 1,000-row
/// MERGEs at v1 and v2 (every row matched and updated, after a first round that inserts them),
/// sent straight to the cluster as the proxy rewrites them, leave the same rows. What each
/// costs Postgres is printed, not asserted (`cargo test --release --test integration --
/// merge_versions::the_emulated_merge --nocapture`; the figures are in docs/rewriting.md).
#[test]
fn the_emulated_merge_leaves_what_a_hand_written_one_leaves_and_prints_its_cost() {
    use std::time::Instant;
    use viewgate::catalog_read::load_routing_map;
    use viewgate::rewriter::{Rewrite, VersionTargets, rewrite};

    let proxy = proxy();
    reseed(&proxy);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(
            &proxy.cluster.url(SUPERUSER, "postgres"),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let map = load_routing_map(&client).await.unwrap();
        let merge = |table: &str, round: usize| {
            format!("MERGE INTO {table} AS t USING (SELECT g AS id, 'n' || g AS name, '{round}' AS v FROM generate_series(1000, 1999) g) AS s ON t.id = s.id WHEN MATCHED THEN UPDATE SET model_version = s.v WHEN NOT MATCHED THEN INSERT (id, model_name, model_version) VALUES (s.id, s.name, s.v)")
        };
        let mut timings = Vec::new();
        for version in ["v1", "v2"] {
            let targets = VersionTargets::from_routing_map(&map, version).unwrap();
            let emulated = |round: usize| match rewrite(&merge("model_metadata", round), &targets) {
                Ok(Rewrite::Rewritten(text)) => text,
                other => panic!("{other:?}"),
            };
            let hand = |round: usize| merge("public.model_metadata", round);
            let makers: [(&str, &dyn Fn(usize) -> String); 2] =
                [("emulated (rewritten)", &emulated), ("hand-written on the base table", &hand)];
            let mut outcomes = Vec::new();
            for (label, make) in makers {
                let mut total = Duration::ZERO;
                for _ in 0..3 {
                    client.batch_execute("DELETE FROM model_metadata WHERE id >= 1000").await.unwrap();
                    for round in 0..21 {
                        let sql = make(round);
                        let started = Instant::now();
                        client.batch_execute(&sql).await.unwrap();
                        if round > 0 {
                            total += started.elapsed();
                        }
                    }
                }
                timings.push(format!(
                    "{version} {label}: {:.1} ms per 1,000-row MERGE updating every row (mean of 60)",
                    total.as_secs_f64() * 1000.0 / 60.0
                ));
                outcomes.push(rows_from_1000(&client).await);
            }
            assert_eq!(outcomes[0].len(), 1000, "{version}");
            assert_eq!(outcomes[0], outcomes[1], "{version}: emulated and hand-written differ");
        }
        println!("{}", timings.join("\n"));
    });
}

/// The rows the measurements write (id ≥ 1000), as the base table holds them.
async fn rows_from_1000(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .simple_query(
            "SELECT id, model_name, model_version, model_type FROM public.model_metadata
              WHERE id >= 1000 ORDER BY id",
        )
        .await
        .unwrap()
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}
