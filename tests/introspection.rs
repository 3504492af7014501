//! Introspection follows the version: psql's `\d`, `information_schema` and the `pg_catalog`
//! relations read by name or by oid show a versioned client its version of `model_metadata`
//! (name, columns in order, types, nullability, defaults, primary key), through the proxy on a
//! real Postgres with the seed example applied by the CLI. The drivers' own reflection
//! (SQLAlchemy, asyncpg, pgJDBC) is in `tests/drivers_python.rs` and `tests/drivers_jdbc.rs`.

mod common;

use std::process::Command;

use common::TestProxy;
use common::versions::{psql, versioned_proxy};

/// `\d model_metadata` through the proxy at `version`, as psql prints it (aligned, with
/// its title and footers).
fn describe(proxy: &TestProxy, version: &str) -> String {
    let conninfo = format!(
        "{} options='-c viewgate.version={version}'",
        proxy.conninfo()
    );
    let output = Command::new(proxy.cluster.bin("psql"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d", &conninfo, "-c"])
        .arg("\\d model_metadata")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

const V1_DESCRIBED: &str = r#"                                         Table "public.model_metadata"
     Column      |           Type           | Collation | Nullable |                  Default
-----------------+--------------------------+-----------+----------+--------------------------------------------
 id              | bigint                   |           | not null | nextval('model_metadata_id_seq'::regclass)
 model_name      | text                     |           | not null |
 model_version   | text                     |           | not null |
 hyperparameters | jsonb                    |           | not null | '{}'::jsonb
 created_at      | timestamp with time zone |           | not null | now()
Indexes:
    "model_metadata_pkey" PRIMARY KEY, btree (id)"#;

#[test]
fn psql_describe_shows_each_versions_table() {
    let proxy = versioned_proxy();
    assert_eq!(describe(&proxy, "v1"), V1_DESCRIBED);

    let v2 = describe(&proxy, "v2");
    let lines: Vec<&str> = v2.lines().collect();
    assert_eq!(lines[0].trim(), r#"Table "public.model_metadata""#, "{v2}");
    let columns: Vec<Vec<&str>> = lines[3..10]
        .iter()
        .map(|line| line.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(
        columns,
        [
            [
                "id",
                "bigint",
                "",
                "not null",
                "nextval('model_metadata_id_seq'::regclass)"
            ],
            ["model_name", "text", "", "not null", ""],
            ["model_version", "text", "", "not null", ""],
            ["model_type", "text", "", "", ""],
            ["hyperparameters", "jsonb", "", "not null", "'{}'::jsonb"],
            [
                "created_at",
                "timestamp with time zone",
                "",
                "not null",
                "now()"
            ],
            ["schema_version", "integer", "", "not null", "1"],
        ],
        "{v2}"
    );
    assert_eq!(lines[10], "Indexes:", "{v2}");
    assert_eq!(
        lines[11].trim(),
        r#""model_metadata_pkey" PRIMARY KEY, btree (id)"#,
        "{v2}"
    );
    // The write trigger that makes v2 writable is the view's own, and shows as such.
    assert!(v2.contains("model_metadata_v2_write"), "{v2}");
}

/// `information_schema.columns` by the table's name: (name, type, nullable, default) in order.
const COLUMNS_BY_NAME: &str =
    "SELECT column_name, data_type, is_nullable, coalesce(column_default, '-')
    FROM information_schema.columns WHERE table_name = 'model_metadata' ORDER BY ordinal_position";

#[test]
fn information_schema_by_name_follows_the_version() {
    let proxy = versioned_proxy();
    assert_eq!(
        psql(&proxy, Some("v1"), COLUMNS_BY_NAME).unwrap(),
        "id|bigint|NO|nextval('model_metadata_id_seq'::regclass)
model_name|text|NO|-
model_version|text|NO|-
hyperparameters|jsonb|NO|'{}'::jsonb
created_at|timestamp with time zone|NO|now()"
    );
    assert_eq!(
        psql(&proxy, Some("v2"), COLUMNS_BY_NAME).unwrap(),
        "id|bigint|NO|nextval('model_metadata_id_seq'::regclass)
model_name|text|NO|-
model_version|text|NO|-
model_type|text|YES|-
hyperparameters|jsonb|NO|'{}'::jsonb
created_at|timestamp with time zone|NO|now()
schema_version|integer|NO|1"
    );
    for version in ["v1", "v2"] {
        let at = |sql: &str| psql(&proxy, Some(version), sql).unwrap();
        // The table is a table, once; the version's view is not listed besides it.
        assert_eq!(
            at(
                "SELECT table_name, table_type FROM information_schema.tables
                 WHERE table_schema = 'public' AND table_name LIKE 'model_metadata%' ORDER BY 1"
            ),
            if version == "v1" {
                "model_metadata|BASE TABLE\nmodel_metadata_v2|VIEW"
            } else {
                "model_metadata|BASE TABLE\nmodel_metadata_v1|VIEW"
            },
            "at {version}"
        );
        assert_eq!(
            at(
                "SELECT count(*) FROM information_schema.views WHERE table_name = 'model_metadata_'
                 || current_setting('viewgate.version')"
            ),
            "0",
            "at {version}"
        );
        assert_eq!(
            at("SELECT tc.constraint_type, kcu.column_name, kcu.ordinal_position
                  FROM information_schema.table_constraints tc
                  JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name)
                 WHERE tc.table_name = 'model_metadata'"),
            "PRIMARY KEY|id|1",
            "at {version}"
        );
        assert_eq!(
            at(
                "SELECT table_name, column_name FROM information_schema.constraint_column_usage
                 WHERE constraint_name = 'model_metadata_pkey'"
            ),
            "model_metadata|id",
            "at {version}"
        );
    }
}

/// (name, type, not null, default) of `model_metadata` read from `pg_attribute`/`pg_attrdef`.
fn attributes_query(relation: &str) -> String {
    format!(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
           FROM pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum)
          WHERE a.attrelid = {relation} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
    )
}

const V1_ATTRIBUTES: &str = "id|bigint|t|nextval('model_metadata_id_seq'::regclass)
model_name|text|t|-
model_version|text|t|-
hyperparameters|jsonb|t|'{}'::jsonb
created_at|timestamp with time zone|t|now()";

#[test]
fn pg_catalog_by_name_and_by_regclass_agree() {
    let proxy = versioned_proxy();
    let by_name = attributes_query(
        "(SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname = 'model_metadata')",
    );
    let by_regclass = attributes_query("'model_metadata'::regclass");
    assert_eq!(psql(&proxy, Some("v1"), &by_name).unwrap(), V1_ATTRIBUTES);
    assert_eq!(
        psql(&proxy, Some("v1"), &by_regclass).unwrap(),
        V1_ATTRIBUTES
    );
    for version in ["v1", "v2"] {
        let at = |sql: &str| psql(&proxy, Some(version), sql).unwrap();
        // One relation of that name, a table, with the oid a regclass literal gives.
        assert_eq!(
            at(
                "SELECT count(*), bool_and(oid = 'model_metadata'::regclass), min(relkind)
                  FROM pg_class WHERE relname = 'model_metadata'"
            ),
            "1|t|r",
            "at {version}"
        );
        // Its primary key, on its own attribute numbers, by pg_index and by pg_constraint.
        assert_eq!(
            at("SELECT a.attname FROM pg_index i JOIN pg_attribute a
                    ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                 WHERE i.indrelid = 'model_metadata'::regclass AND i.indisprimary"),
            "id",
            "at {version}"
        );
        assert_eq!(
            at("SELECT conname, conkey FROM pg_catalog.pg_constraint
                 WHERE conrelid = (SELECT oid FROM pg_class WHERE relname = 'model_metadata')"),
            "model_metadata_pkey|{1}",
            "at {version}"
        );
    }
    assert_eq!(
        psql(&proxy, Some("v2"), &by_name).unwrap(),
        "id|bigint|t|nextval('model_metadata_id_seq'::regclass)
model_name|text|t|-
model_version|text|t|-
model_type|text|f|-
hyperparameters|jsonb|t|'{}'::jsonb
created_at|timestamp with time zone|t|now()
schema_version|integer|t|1"
    );
}

#[test]
fn unversioned_sessions_and_unrelated_statements_see_the_real_catalog() {
    let proxy = versioned_proxy();
    // A session of no version (the superuser's direct connection) sees the base table.
    let base = proxy.admin(&format!(
        "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns
          WHERE table_name = 'model_metadata'; {}",
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'model_metadata%' AND relkind IN ('r', 'v')"
    ));
    assert_eq!(
        base,
        "id,model_name,model_version,model_type,hyperparameters,created_at,schema_version\n3"
    );
    // Through the proxy, a session in a database without the catalog is unversioned: its
    // catalog queries are forwarded as written.
    proxy.admin("CREATE DATABASE elsewhere");
    proxy
        .cluster
        .psql(
            "elsewhere",
            "CREATE TABLE public.model_metadata (id int PRIMARY KEY, only_here text NOT NULL)",
        )
        .unwrap();
    let conninfo = proxy
        .conninfo()
        .replace("dbname=postgres", "dbname=elsewhere");
    let through = common::run_ok(proxy.psql(&conninfo).args(["-c", COLUMNS_BY_NAME]));
    assert_eq!(through.trim(), "id|integer|NO|-\nonly_here|text|NO|-");
    // Other catalog relations and statements naming none are forwarded as written: a query
    // on pg_namespace and pg_proc sees the same as it does directly.
    let unrelated = "SELECT count(*) FROM pg_namespace n JOIN pg_proc p ON p.pronamespace = n.oid
                      WHERE n.nspname = 'pg_catalog'";
    assert_eq!(
        psql(&proxy, Some("v1"), unrelated).unwrap(),
        proxy.admin(unrelated)
    );
    // 'pg_class'::regclass stays the catalog (pg_description and pg_depend compare with it).
    assert_eq!(
        psql(
            &proxy,
            Some("v1"),
            "SELECT 'pg_class'::regclass::oid = 1259"
        )
        .unwrap(),
        "t"
    );
    // The substitutes of both versions exist, and the server's own catalog is untouched.
    assert_eq!(
        proxy.admin(
            "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace
              WHERE nspname LIKE 'viewgate_catalog_%'"
        ),
        "viewgate_catalog_v1,viewgate_catalog_v2"
    );
}
