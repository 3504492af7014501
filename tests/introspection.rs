//! Introspection follows the version: psql's `\d`, `information_schema` and the `pg_catalog`
//! relations read by name or by oid show a versioned client its version of `model_metadata`
//! (name, columns in order, types, nullability, defaults, primary key), through the proxy on a
//! real Postgres with the seed example applied by the CLI. The drivers' own reflection
//! (SQLAlchemy, asyncpg, pgJDBC) is in `tests/drivers_python.rs` and `tests/drivers_jdbc.rs`.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::versions::{catalog_command, proxy_with_spec, psql, versioned_proxy};
use common::{TestProxy, wait_until};
use viewgate::pg_cluster::SUPERUSER;

/// `\d model_metadata` through the proxy at `version`, as psql prints it (aligned, with
/// its title and footers).
fn describe(proxy: &TestProxy, version: &str) -> String {
    describe_table(proxy, version, "model_metadata")
}

/// `\d table` through the proxy at `version`, as psql prints it.
fn describe_table(proxy: &TestProxy, version: &str, table: &str) -> String {
    let conninfo = format!(
        "{} options='-c viewgate.version={version}'",
        proxy.conninfo()
    );
    describe_at(proxy, &conninfo, table)
}

/// `\d table` over `conninfo` (through the proxy or straight to the server), as psql prints it.
fn describe_at(proxy: &TestProxy, conninfo: &str, table: &str) -> String {
    let output = Command::new(proxy.cluster.bin("psql"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c"])
        .arg(format!("\\d {table}"))
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
        // The table is a table, once; neither the version's view nor another version's (whose
        // columns are not this version's) is listed besides it.
        assert_eq!(
            at(
                "SELECT table_name, table_type FROM information_schema.tables
                 WHERE table_schema = 'public' AND table_name LIKE 'model_metadata%' ORDER BY 1"
            ),
            "model_metadata|BASE TABLE",
            "at {version}"
        );
        assert_eq!(
            at("SELECT count(*) FROM information_schema.columns
                  WHERE table_name LIKE 'model_metadata_v%' OR column_name = 'schema_version'"),
            if version == "v1" { "0" } else { "1" },
            "at {version}: v2 has schema_version as a column of its table, v1 nowhere"
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
        // The system views over them: pg_tables, pg_views, pg_indexes.
        assert_eq!(
            at(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'model_metadata%'"
            ),
            "model_metadata",
            "at {version}"
        );
        assert_eq!(
            at("SELECT count(*) FROM pg_catalog.pg_views WHERE viewname LIKE 'model_metadata%'"),
            "0",
            "at {version}"
        );
        assert_eq!(
            at(
                "SELECT tablename, indexname FROM pg_indexes WHERE tablename LIKE 'model_metadata%'"
            ),
            "model_metadata|model_metadata_pkey",
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
            // (PostgreSQL 18 lists NOT NULL constraints too, `contype` 'n'.)
            at("SELECT conname, conkey FROM pg_catalog.pg_constraint
                 WHERE conrelid = (SELECT oid FROM pg_class WHERE relname = 'model_metadata')
                   AND contype <> 'n'"),
            "model_metadata_pkey|{1}",
            "at {version}"
        );
    }
    // Built-ins that take the table by its name as text answer for the version's table: a
    // column v1 does not have is one that does not exist (the twenty-sixth red-team pass read
    // hidden columns' names from the base table's privileges).
    let hidden = "SELECT has_column_privilege('model_metadata', 'model_type', 'SELECT')";
    let refused = psql(&proxy, Some("v1"), hidden).unwrap_err();
    assert!(refused.contains("does not exist"), "{refused}");
    assert_eq!(psql(&proxy, Some("v2"), hidden).unwrap(), "t");
    assert_eq!(
        psql(
            &proxy,
            Some("v1"),
            "SELECT has_column_privilege('model_metadata', 'model_name', 'SELECT'), \
             pg_get_serial_sequence('model_metadata', 'id') IS NOT NULL"
        )
        .unwrap(),
        "t|t"
    );
    // Django and Rails reset sequences by the table's name (Django quoted): the key's sequence
    // at every version (`tests/introspection_sequences.rs` has the rest).
    for version in ["v1", "v2"] {
        assert_eq!(
            psql(
                &proxy,
                Some(version),
                "SELECT pg_get_serial_sequence('model_metadata', 'id'), \
                 pg_get_serial_sequence('\"model_metadata\"', 'id')"
            )
            .unwrap(),
            "public.model_metadata_id_seq|public.model_metadata_id_seq",
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

/// Comments on the base table and its columns, as SQLAlchemy and JDBC read them (joined from
/// `pg_description`): the version's table has the base table's, on its own columns.
#[test]
fn comments_of_the_base_table_show_on_the_versions_table() {
    let proxy = versioned_proxy();
    proxy.admin(
        "COMMENT ON TABLE model_metadata IS 'Model registry';
         COMMENT ON COLUMN model_metadata.model_name IS 'Name of the model';
         COMMENT ON COLUMN model_metadata.model_type IS 'Kind, v2 only'",
    );
    let comments = "SELECT coalesce(a.attname, '(table)'), d.description
                      FROM pg_catalog.pg_class c
                      JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_catalog.pg_class'::regclass
                      LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0
                     WHERE c.relname = 'model_metadata' ORDER BY d.objsubid";
    assert_eq!(
        psql(&proxy, Some("v1"), comments).unwrap(),
        "(table)|Model registry\nmodel_name|Name of the model"
    );
    // v2's model_type is an expression over the base column, not the column: no comment.
    assert_eq!(
        psql(&proxy, Some("v2"), comments).unwrap(),
        "(table)|Model registry\nmodel_name|Name of the model"
    );
    // The same through the functions psql's `\d+` and ActiveRecord call with the oid.
    let by_function = "SELECT obj_description('model_metadata'::regclass, 'pg_class'),
                              pg_catalog.col_description('model_metadata'::regclass, 2),
                              coalesce(obj_description('model_metadata'::regclass), '-')";
    for version in ["v1", "v2"] {
        assert_eq!(
            psql(&proxy, Some(version), by_function).unwrap(),
            "Model registry|Name of the model|Model registry",
            "at {version}"
        );
    }
}

/// Found by the thirty-first red-team pass: the views of a version that is not live yet (a
/// migration's new version while it backfills) were in no proxy's list, so any session could
/// read and write them by name. They are refused like another version's.
/// psql's `\dt+` and monitoring queries read a table's size by the oid the `pg_class`
/// substitute gives it, the version's view's: its base table's size, as Postgres gives it
/// directly (a view's is 0 bytes).
#[test]
fn sizes_by_the_tables_oid_are_the_base_tables() {
    let proxy = versioned_proxy();
    proxy.admin(
        "INSERT INTO model_metadata (model_name, model_version)
         SELECT 'm' || n, '1' FROM generate_series(1, 2000) n",
    );
    let sizes = |table: &str| {
        format!(
            "SELECT pg_table_size(c.oid), pg_total_relation_size(c.oid), pg_indexes_size(c.oid),
                    pg_relation_size(c.oid), pg_catalog.pg_relation_size(c.oid, 'main')
               FROM pg_catalog.pg_class c WHERE c.relname = '{table}' AND c.relkind = 'r'"
        )
    };
    let direct = proxy.admin(&sizes("model_metadata"));
    assert!(!direct.starts_with("0|"), "{direct}");
    for version in ["v1", "v2"] {
        assert_eq!(
            psql(&proxy, Some(version), &sizes("model_metadata")).unwrap(),
            direct,
            "{version}"
        );
        // An unmanaged relation's, and a name resolving to the base table: the real function.
        assert_eq!(
            psql(&proxy, Some(version), "SELECT pg_table_size('pg_class'::regclass) > 0, pg_table_size('model_metadata'::regclass)")
                .unwrap(),
            format!("t|{}", direct.split('|').next().unwrap())
        );
    }
}

/// psycopg2's `register_composite` reads a table's row type by `'t'::regtype` and its
/// attributes by `typrelid`: the version's view's, with the version's columns (the base
/// table's row type led to no attribute at all: "type 'model_metadata' not found").
#[test]
fn a_tables_row_type_by_regtype_has_the_versions_columns() {
    let proxy = versioned_proxy();
    let attributes = "SELECT string_agg(a.attname, ',' ORDER BY a.attnum)
                        FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid
                       WHERE t.oid = 'model_metadata'::regtype AND a.attnum > 0";
    for version in ["v1", "v2"] {
        let columns = psql(
            &proxy,
            Some(version),
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
              WHERE attrelid = 'model_metadata'::regclass AND attnum > 0",
        )
        .unwrap();
        assert!(columns.starts_with("id,model_name"), "{columns}");
        assert_eq!(
            psql(&proxy, Some(version), attributes).unwrap(),
            columns,
            "{version}"
        );
    }
}

#[test]
fn a_pending_versions_views_are_refused_by_name() {
    let proxy = versioned_proxy();
    proxy.admin(
        "UPDATE viewgate.versions SET state = 'pending' WHERE version = 'v2'; NOTIFY viewgate_control",
    );
    assert!(
        wait_until(Duration::from_secs(5), || psql(
            &proxy,
            Some("v2"),
            "SELECT 1"
        )
        .is_err_and(|error| error.contains("unknown viewgate version"))),
        "the proxy reloaded the catalog"
    );
    for sql in [
        "SELECT model_type, schema_version FROM model_metadata_v2",
        "SELECT model_type FROM public.model_metadata_v2 v JOIN model_metadata m USING (id)",
        "UPDATE model_metadata_v2 SET model_type = 'x' RETURNING model_type",
    ] {
        let refused = psql(&proxy, Some("v1"), sql).unwrap_err();
        assert!(
            refused.contains("another version's view"),
            "{sql}: {refused}"
        );
    }
}

/// A version's table is a table: `pg_get_viewdef` of its oid (what `'model_metadata'::regclass`
/// and `pg_class` give the version's clients) is NULL, as Postgres prints it for a table, not
/// the view's SQL naming base columns the version does not have. Another version's view is a
/// view and keeps its definition.
#[test]
fn the_versions_table_has_no_view_definition() {
    let proxy = versioned_proxy();
    let definitions = "SELECT quote_nullable(pg_get_viewdef('model_metadata'::regclass)),
                              quote_nullable(pg_catalog.pg_get_viewdef('model_metadata'::regclass, true)),
                              quote_nullable(pg_get_viewdef('model_metadata'::regclass, 80)),
                              quote_nullable(pg_get_viewdef('public.model_metadata')),
                              quote_nullable(pg_get_viewdef('model_metadata', true)),
                              (SELECT quote_nullable(pg_get_viewdef(c.oid)) FROM pg_class c
                                WHERE c.relname = 'model_metadata')";
    for version in ["v1", "v2"] {
        assert_eq!(
            psql(&proxy, Some(version), definitions).unwrap(),
            "NULL|NULL|NULL|NULL|NULL|NULL",
            "at {version}"
        );
    }
    // What the server says of the table itself.
    assert_eq!(proxy.admin(definitions), "NULL|NULL|NULL|NULL|NULL|NULL");
    // Another version's view is refused by name, its definition included.
    let other = "SELECT pg_get_viewdef('model_metadata_v2'::regclass, true)";
    let refused = psql(
        &proxy,
        Some("v1"),
        &format!("{other} FROM pg_class LIMIT 1"),
    )
    .unwrap_err();
    assert!(refused.contains("another version's view"), "{refused}");
    assert!(
        proxy.admin(other).contains("model_type"),
        "v2's view reads model_type"
    );
}

/// The rule that makes the version's view a view (`_RETURN`, whose SELECT and stored tree name
/// the base table's columns, `model_type` among them) is not there: the version sees a table,
/// which has none, and its oid prints as NULL, as for an oid that is no rule. Another
/// version's view is not there at all, found by oid, nor the base table's columns through the
/// object printers; a printer called in FROM is substituted like one in the select list.
#[test]
fn the_versions_table_has_no_rule_definition() {
    let proxy = versioned_proxy();
    let v1_rule_oid =
        proxy.admin("SELECT oid FROM pg_rewrite WHERE ev_class = 'model_metadata_v1'::regclass");
    // What the server prints of the view's rule: its SELECT reads the base table's columns.
    assert!(
        proxy
            .admin(&format!("SELECT pg_get_ruledef({v1_rule_oid}, true)"))
            .contains("DO INSTEAD")
    );
    for version in ["v1", "v2"] {
        assert_eq!(
            psql(
                &proxy,
                Some(version),
                "SELECT count(*) FROM pg_rewrite r WHERE r.ev_class = 'model_metadata'::regclass"
            )
            .unwrap(),
            "0",
            "at {version}"
        );
    }
    assert_eq!(
        psql(
            &proxy,
            Some("v1"),
            &format!(
                "SELECT quote_nullable(pg_get_ruledef({v1_rule_oid})) || '|' || quote_nullable(pg_catalog.pg_get_ruledef({v1_rule_oid}, true))"
            )
        )
        .unwrap(),
        "NULL|NULL"
    );
    // v2's view, found from v1 by its oid (not by name, which is refused).
    let v2_oid = proxy.admin("SELECT 'model_metadata_v2'::regclass::oid");
    let v2_rule_oid = proxy.admin(&format!(
        "SELECT oid FROM pg_rewrite WHERE ev_class = {v2_oid}::oid"
    ));
    let by_oid = format!(
        "SELECT (SELECT count(*) FROM pg_class WHERE oid = {v2_oid}::oid)
              + (SELECT count(*) FROM pg_attribute WHERE attrelid = {v2_oid}::oid)
              + (SELECT count(*) FROM pg_rewrite WHERE ev_class = {v2_oid}::oid)
              + (SELECT count(*) FROM pg_description WHERE objoid = {v2_oid}::oid),
                quote_nullable(pg_get_ruledef({v2_rule_oid}, true)), quote_nullable(pg_get_viewdef({v2_oid}::oid)),
                (SELECT quote_nullable(d) FROM pg_catalog.pg_get_viewdef({v2_oid}::oid) AS d),
                (SELECT quote_nullable(d) FROM pg_class c, LATERAL pg_get_viewdef({v2_oid}::oid, true) AS d LIMIT 1)"
    );
    assert_eq!(
        psql(&proxy, Some("v1"), &by_oid).unwrap(),
        "0|NULL|NULL|NULL|NULL"
    );
    assert!(proxy.admin(&by_oid).contains("model_type"));
    // The base table's columns by the object printers, from the oids pg_depend lists: NULL,
    // as for an object that does not exist; the server names the column.
    let base_oid = proxy.admin("SELECT 'public.model_metadata'::regclass::oid");
    let attnum = proxy.admin(
        "SELECT attnum FROM pg_attribute WHERE attrelid = 'public.model_metadata'::regclass AND attname = 'model_type'",
    );
    let printed = format!(
        "SELECT quote_nullable(pg_describe_object('pg_class'::regclass, {base_oid}, {attnum})),
                (SELECT quote_nullable(identity) FROM pg_identify_object('pg_class'::regclass, {base_oid}, {attnum})),
                (SELECT quote_nullable(object_names::text) FROM pg_catalog.pg_identify_object_as_address('pg_class'::regclass, {base_oid}, {attnum}))"
    );
    assert_eq!(
        psql(&proxy, Some("v1"), &printed).unwrap(),
        "NULL|NULL|NULL"
    );
    assert!(
        proxy.admin(&printed).contains("model_type"),
        "{}",
        proxy.admin(&printed)
    );
}

/// The catalog substitutes' schemas (`viewgate_catalog_<version>`) and the views in them are
/// not listed: tools that list every schema's tables (Kysely's and pgJDBC's `getTables`, their
/// `getSchemas`, psql's `\dn`) showed dozens of views describing the catalog, which
/// `information_schema`'s substitutes already leave out. Nor is the catalog's own schema
/// (`viewgate`) and its tables: Kysely's codegen made a model of each, and MikroORM's schema
/// diff proposed `drop schema "viewgate"` (the Node walk).
#[test]
fn the_catalog_substitutes_schemas_are_not_listed() {
    let proxy = versioned_proxy();
    let substitutes = proxy.admin(
        "SELECT string_agg(oid::text, ',') FROM pg_namespace WHERE nspname LIKE 'viewgate\\_catalog\\_%'",
    );
    let in_substitutes =
        format!("SELECT count(*) FROM pg_class WHERE relnamespace IN ({substitutes})");
    assert_ne!(proxy.admin(&in_substitutes), "0", "there are substitutes");
    for version in ["v1", "v2"] {
        assert_eq!(
            psql(
                &proxy,
                Some(version),
                "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace
                  WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'"
            )
            .unwrap(),
            "public",
            "{version}"
        );
        assert_eq!(
            psql(&proxy, Some(version), &in_substitutes).unwrap(),
            "0",
            "{version}"
        );
        for listing in [
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'viewgate'",
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'viewgate'",
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'viewgate'",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'viewgate'",
        ] {
            assert_eq!(
                psql(&proxy, Some(version), listing).unwrap(),
                "0",
                "{version}: {listing}"
            );
        }
        // The catalog's tables are still there to read, by name.
        assert_ne!(
            psql(
                &proxy,
                Some(version),
                "SELECT count(*) FROM viewgate.versions"
            )
            .unwrap(),
            "0",
            "{version}"
        );
        // Nor in information_schema's list (Doctrine's schema comparator reads it).
        assert_eq!(
            psql(
                &proxy,
                Some(version),
                "SELECT string_agg(schema_name, ',' ORDER BY schema_name) FROM information_schema.schemata
                  WHERE schema_name !~ '^pg_' AND schema_name <> 'information_schema'"
            )
            .unwrap(),
            "public",
            "{version}"
        );
        // psql's \d still describes the version's table, through both substitutes.
        assert!(describe(&proxy, version).contains("Table \"public.model_metadata\""));
    }
}

/// A catalog table's substitute keeps its `tableoid`, which queries join `pg_description`
/// on: DBD::Pg's `table_info` (and with it `$dbh->tables()` and DBIx::Class::Schema::Loader)
/// and psql's `\dd` failed with 42703 (`column c.tableoid does not exist`) at every version.
#[test]
fn catalog_tables_keep_their_tableoid() {
    let proxy = versioned_proxy();
    proxy.admin(
        "COMMENT ON TABLE model_metadata IS 'the models';
         ALTER TABLE model_metadata ADD CONSTRAINT named_model CHECK (model_name <> '');
         COMMENT ON CONSTRAINT named_model ON model_metadata IS 'a name'",
    );
    let table_info = "SELECT c.relname, d.description FROM pg_catalog.pg_class c
        LEFT JOIN pg_catalog.pg_description d
               ON c.oid = d.objoid AND c.tableoid = d.classoid AND d.objsubid = 0
        WHERE c.relname = 'model_metadata'";
    let described = "SELECT count(*) FROM pg_catalog.pg_constraint k
        JOIN pg_catalog.pg_description d ON d.objoid = k.oid AND d.classoid = k.tableoid
        WHERE k.conname = 'named_model'";
    for version in ["v1", "v2"] {
        assert_eq!(
            psql(&proxy, Some(version), table_info).unwrap(),
            "model_metadata|the models",
            "{version}"
        );
        assert_eq!(
            psql(&proxy, Some(version), described).unwrap(),
            "1",
            "{version}"
        );
        let conninfo = format!(
            "{} options='-c viewgate.version={version}'",
            proxy.conninfo()
        );
        let dd = common::run_ok(proxy.psql(&conninfo).args(["-c", "\\dd named_model"]));
        assert!(dd.contains("a name"), "{version}: {dd}");
    }
}

/// No relation listed anywhere in the catalog names a column the version does not have: not
/// another version's view, not a base-table index over a hidden column (an index's
/// attributes carry the columns' names), and another version's catalog substitutes, which
/// describe that version's columns, are refused by name.
#[test]
fn no_listed_relation_names_a_column_the_version_does_not_have() {
    let proxy = versioned_proxy();
    proxy.admin("CREATE INDEX model_metadata_by_type ON public.model_metadata (model_type)");
    let named = "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                  WHERE a.attname IN ('model_type', 'schema_version') AND NOT a.attisdropped";
    let index = "SELECT (SELECT count(*) FROM pg_class WHERE relname = 'model_metadata_by_type')
                      + (SELECT count(*) FROM pg_stat_user_indexes WHERE indexrelname = 'model_metadata_by_type')
                      + (SELECT count(*) FROM pg_catalog.pg_statio_all_indexes WHERE indexrelname = 'model_metadata_by_type')";
    assert_eq!(psql(&proxy, Some("v1"), named).unwrap(), "0");
    assert_eq!(psql(&proxy, Some("v1"), index).unwrap(), "0");
    // At v2 both columns are its table's; its model_type is computed (a COALESCE over the base
    // column), so an index of the base column is not its table's either.
    assert_eq!(psql(&proxy, Some("v2"), named).unwrap(), "2");
    assert_eq!(psql(&proxy, Some("v2"), index).unwrap(), "0");
    // Straight to the server: the base table, both views and the index.
    assert_eq!(proxy.admin(named), "5");
    assert_eq!(proxy.admin(index), "3");
    // v2's write trigger and its function (whose body maps v2's columns onto the base
    // table's, model_type among them), by name and by oid.
    let function = proxy.admin(
        "SELECT t.tgfoid || ',' || t.oid FROM pg_trigger t WHERE t.tgrelid = 'model_metadata_v2'::regclass",
    );
    let (function, trigger) = function.split_once(',').unwrap();
    let bodies = format!(
        "SELECT (SELECT count(*) FROM pg_proc WHERE prosrc LIKE '%model_type%' OR oid = {function})
              + (SELECT count(*) FROM pg_trigger WHERE oid = {trigger}),
                quote_nullable(pg_get_functiondef({function})), quote_nullable(pg_get_triggerdef({trigger}, true))"
    );
    assert_eq!(psql(&proxy, Some("v1"), &bodies).unwrap(), "0|NULL|NULL");
    assert!(proxy.admin(&bodies).contains("model_type"));
    for sql in [
        "SELECT base_column FROM viewgate_catalog_v2.managed_columns",
        "SELECT a.attname FROM viewgate_catalog_v2.pg_attribute a",
        "SELECT viewgate_catalog_v2.col_description(1, 2)",
    ] {
        let refused = psql(&proxy, Some("v1"), sql).unwrap_err();
        assert!(
            refused.contains("another version's catalog"),
            "{sql}: {refused}"
        );
    }
    assert_eq!(
        psql(
            &proxy,
            Some("v1"),
            "SELECT count(*) FROM viewgate_catalog_v1.managed_columns WHERE base_column = 'model_name'"
        )
        .unwrap(),
        "1"
    );
    // Nor are their definitions printed, which name the columns they describe (found by the
    // fifth red-team pass): not in pg_views, information_schema.views or pg_rewrite, and
    // NULL by oid.
    // (managed_columns reads its rows through a function; the query naming the columns is
    // managed_columns_query's)
    let v2_columns =
        proxy.admin("SELECT 'viewgate_catalog_v2.managed_columns_query'::regclass::oid");
    let definitions = format!(
        "SELECT (SELECT count(*) FROM pg_views WHERE schemaname LIKE 'viewgate%')
              + (SELECT count(*) FROM information_schema.views WHERE table_schema LIKE 'viewgate%')
              + (SELECT count(*) FROM pg_rewrite WHERE ev_class = {v2_columns}),
                quote_nullable(pg_get_viewdef({v2_columns}))"
    );
    assert_eq!(psql(&proxy, Some("v1"), &definitions).unwrap(), "0|NULL");
    assert!(proxy.admin(&definitions).contains("schema_version"));
}

/// With information_schema on the search_path an unqualified `columns` would read the real
/// one, base columns and all: a versioned session may not put it there, by a statement or from
/// its startup packet. Unversioned sessions may.
#[test]
fn information_schema_stays_off_a_versioned_search_path() {
    let proxy = versioned_proxy();
    for sql in [
        "SET search_path = public, information_schema",
        "SELECT set_config('search_path', 'information' || '_schema', false)",
        "ALTER ROLE CURRENT_USER SET search_path = information_schema",
        "SET search_path = viewgate_catalog_v2, public",
    ] {
        let refused = psql(&proxy, Some("v1"), sql).unwrap_err();
        assert!(refused.contains("on the search_path"), "{sql}: {refused}");
    }
    assert_eq!(
        proxy.admin("SELECT count(*) FROM pg_db_role_setting"),
        "0",
        "nothing was stored"
    );
    // Startup options as Postgres reads them (found by the fourth red-team pass: `-` in a
    // setting's name is `_`, a backslash escapes a space).
    for options in [
        "-c search_path=public,information_schema",
        "-c search-path=information_schema",
        r"-c search_path=public,\\ information_schema",
    ] {
        let conninfo = format!(
            "{} options='-c viewgate.version=v1 {options}'",
            proxy.conninfo()
        );
        let output = proxy
            .psql(&conninfo)
            .args(["-c", "SELECT 1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{options}");
        assert!(stderr.contains("on the search_path"), "{options}: {stderr}");
    }
    // The qualified name shows the version's table; another path is followed as before.
    assert_eq!(
        psql(
            &proxy,
            Some("v1"),
            "SET search_path = public; SELECT count(*) FROM information_schema.columns WHERE table_name = 'model_metadata'"
        )
        .unwrap(),
        "5"
    );
    // A session of no version sees the real catalog anyway.
    assert_eq!(
        proxy.admin(
            "SET search_path = information_schema; SELECT count(*) FROM columns WHERE table_name = 'model_metadata'"
        ),
        "7"
    );
}

/// Found by the seventh red-team pass: `UPDATE pg_settings` changed the search_path with no
/// word the proxy looked for, and EXPLAIN VERBOSE listed hidden columns (a self-join's scan
/// outputs the base table's every column; `count(*)` picked the index on `schema_version`).
#[test]
fn pg_settings_writes_and_verbose_plans_are_refused_at_a_version() {
    let proxy = versioned_proxy();
    proxy.admin("CREATE INDEX ON model_metadata (schema_version); ANALYZE model_metadata");
    for (sql, why) in [
        (
            "UPDATE pg_settings SET setting = 'information_sch' || 'ema' WHERE name = 'search' || '_path'",
            "pg_settings",
        ),
        (
            "CREATE TEMP VIEW s AS SELECT * FROM pg_settings",
            "pg_settings",
        ),
        (
            "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM model_metadata a JOIN model_metadata b USING (id)",
            "EXPLAIN VERBOSE",
        ),
        (
            "EXPLAIN VERBOSE SELECT count(*) FROM model_metadata",
            "EXPLAIN VERBOSE",
        ),
        // The sixteenth red-team pass: the query tree came back as a LOG notice.
        (
            "SET debug_print_rewritten = on; SET client_min_messages = log",
            "client_min_messages",
        ),
    ] {
        let refused = psql(&proxy, Some("v1"), sql).unwrap_err();
        assert!(
            refused.contains(why)
                && !refused.contains("model_type")
                && !refused.contains("schema_version"),
            "{sql}: {refused}"
        );
    }
    assert_eq!(
        psql(&proxy, Some("v1"), "SHOW search_path").unwrap(),
        "\"$user\", public"
    );
    let conninfo = format!(
        "{} options='-c viewgate.version=v1 -c client_min_messages=debug1'",
        proxy.conninfo()
    );
    let output = proxy
        .psql(&conninfo)
        .args(["-c", "SELECT 1"])
        .output()
        .unwrap();
    let refused = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && refused.contains("client_min_messages below notice"),
        "{refused}"
    );
    // Reading pg_settings, and a plan without VERBOSE, are as Postgres gives them.
    assert_eq!(
        psql(
            &proxy,
            Some("v1"),
            "SELECT setting FROM pg_settings WHERE name = 'standard_conforming_strings'"
        )
        .unwrap(),
        "on"
    );
    let plan = psql(
        &proxy,
        Some("v1"),
        "EXPLAIN (COSTS OFF) SELECT * FROM model_metadata a JOIN model_metadata b USING (id)",
    )
    .unwrap();
    // (PostgreSQL 18 removes the self-join on the key: a scan either way.)
    assert!(plan.contains("Scan on model_metadata"), "{plan}");
    assert!(
        !plan.contains("model_type") && !plan.contains("Output"),
        "{plan}"
    );
    // A body that only raises the level runs: sqitch's registry check (App::Sqitch::Engine::pg),
    // refused until 2026-12-07 as a body that might lower it (the operator-tools walk).
    let sqitch = "DO $$
        BEGIN
            SET LOCAL client_min_messages = 'ERROR';
            RAISE WARNING USING ERRCODE = 'undefined_table', MESSAGE = 'Sqitch registry not initialized';
        END;
    $$";
    assert_eq!(psql(&proxy, Some("v1"), sqitch), Ok(String::new()));
    let lowered = psql(&proxy, Some("v1"), &sqitch.replace("'ERROR'", "'DEBUG5'"));
    assert!(
        lowered
            .as_ref()
            .is_err_and(|e| e.contains("may run SQL viewgate cannot see")),
        "{lowered:?}"
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
    // A version whose substitutes are gone (applied by an older viewgate, or dropped by hand)
    // reads the real catalog once the proxy reloads, rather than failing on a missing schema.
    proxy.admin("DROP SCHEMA viewgate_catalog_v1 CASCADE; NOTIFY viewgate_control");
    let names = "SELECT string_agg(column_name, ',' ORDER BY ordinal_position)
                   FROM information_schema.columns WHERE table_name = 'model_metadata'";
    assert!(
        wait_until(Duration::from_secs(5), || psql(&proxy, Some("v1"), names)
            .is_ok_and(|out| out.split(',').count() == 7)),
        "v1 should read the real catalog without its substitutes"
    );
    assert_eq!(
        psql(&proxy, Some("v2"), names).unwrap(),
        "id,model_name,model_version,model_type,hyperparameters,created_at,schema_version"
    );
    assert_eq!(
        psql(
            &proxy,
            Some("v2"),
            "SELECT count(*) FROM pg_class WHERE relname = 'model_metadata_v2'"
        )
        .unwrap(),
        "0",
        "v2 keeps its substitutes"
    );
    // The next apply sees them missing and makes them again.
    let applied = catalog_command(
        &proxy,
        "views",
        &["apply", "--spec", "examples/model_metadata/viewgate.toml"],
    )
    .unwrap();
    assert!(applied.starts_with("applied versions v1;"), "{applied}");
    assert!(
        wait_until(Duration::from_secs(5), || psql(&proxy, Some("v1"), names)
            .is_ok_and(|out| out.split(',').count() == 5)),
        "v1's substitutes should be back"
    );
}

/// A spec with a renamed table, renamed key column, hidden columns, an expression column and
/// keys the newer version cannot see whole.
const RENAMES_SCHEMA: &str = "CREATE TABLE public.customers (
    customer_id serial PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL UNIQUE,
    legacy_code text CONSTRAINT code_unique UNIQUE,
    price_cents integer NOT NULL DEFAULT 0,
    CONSTRAINT name_code_unique UNIQUE (name, legacy_code)
);
CREATE INDEX customers_name_lower ON public.customers (lower(name));";

const RENAMES_SPEC: &str = r#"
[[tables]]
name = "customers"

[[versions]]
name = "v1"
[[versions.tables]]
base = "customers"
columns = ["customer_id", "name", "email", "legacy_code"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "customers"
name = "clients"
columns = [
    { name = "id", from = "customer_id" },
    { name = "full_name", from = "name" },
    "email",
    { name = "price", expr = "(price_cents / 100.0)::numeric(12,2)", write = { price_cents = "round(NEW.price * 100)::integer" }, default = "0" },
]
"#;

#[test]
fn renamed_tables_and_columns_carry_their_keys_and_hidden_ones_drop_out() {
    let proxy = proxy_with_spec(RENAMES_SCHEMA, RENAMES_SPEC);
    let at = |version: &str, sql: &str| psql(&proxy, Some(version), sql).unwrap();
    let columns = |table: &str| {
        format!(
            "SELECT column_name, data_type, is_nullable, coalesce(column_default, '-')
               FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position"
        )
    };
    assert_eq!(
        at("v2", &columns("clients")),
        "id|integer|NO|nextval('customers_customer_id_seq'::regclass)
full_name|text|NO|-
email|text|NO|-
price|numeric|YES|0"
    );
    assert_eq!(at("v2", &columns("customers")), "", "v2 calls it clients");
    assert_eq!(
        at("v1", &columns("customers")),
        "customer_id|integer|NO|nextval('customers_customer_id_seq'::regclass)
name|text|NO|-
email|text|NO|-
legacy_code|text|YES|-"
    );
    let keys = |table: &str| {
        format!(
            "SELECT tc.constraint_type, tc.constraint_name, string_agg(k.column_name, ',' ORDER BY k.ordinal_position)
               FROM information_schema.table_constraints tc
               JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name)
              WHERE tc.table_name = '{table}' GROUP BY 1, 2 ORDER BY 1, 2"
        )
    };
    // v2 does not see legacy_code: the keys on it are not v2's.
    assert_eq!(
        at("v2", &keys("clients")),
        "PRIMARY KEY|customers_pkey|id\nUNIQUE|customers_email_key|email"
    );
    assert_eq!(
        at("v1", &keys("customers")),
        "PRIMARY KEY|customers_pkey|customer_id
UNIQUE|code_unique|legacy_code
UNIQUE|customers_email_key|email
UNIQUE|name_code_unique|name,legacy_code"
    );
    // By oid, as psql and JDBC read them: the primary key on the renamed column, the
    // expression index and the keys on hidden columns gone.
    assert_eq!(
        at(
            "v2",
            "SELECT c2.relname, i.indisprimary, array_agg(a.attname ORDER BY a.attnum)
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_index i ON i.indrelid = c.oid
               JOIN pg_catalog.pg_class c2 ON c2.oid = i.indexrelid
               JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
              WHERE c.relname = 'clients' GROUP BY 1, 2 ORDER BY 1"
        ),
        "customers_email_key|f|{email}\ncustomers_pkey|t|{id}"
    );
    assert_eq!(
        at(
            "v2",
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'clients'"
        ),
        "customers_email_key,customers_pkey"
    );
    // The index statistics on the version's table, by its oid and name, as drizzle-kit matches
    // them with pg_class (they named the base table).
    assert_eq!(
        at(
            "v2",
            "SELECT string_agg(s.indexrelname, ',' ORDER BY s.indexrelname) FROM pg_stat_user_indexes s
               JOIN pg_class c ON c.oid = s.relid AND c.relname = s.relname WHERE s.relname = 'clients'"
        ),
        "customers_email_key,customers_pkey"
    );
    assert_eq!(
        at(
            "v2",
            "SELECT count(*) FROM pg_class WHERE relname IN ('customers', 'clients_v2', 'customers_v2')"
        ),
        "0"
    );

    // Keys and indexes printed by oid, as psql's `\d` and SQLAlchemy's reflection print them:
    // on the version's table and column names.
    assert_eq!(
        at(
            "v2",
            "SELECT string_agg(pg_get_constraintdef(oid), '; ' ORDER BY conname) FROM pg_constraint
              WHERE conrelid = 'clients'::regclass AND contype <> 'n'"
        ),
        "UNIQUE (email); PRIMARY KEY (id)"
    );
    assert_eq!(
        at(
            "v2",
            "SELECT string_agg(def, '; ' ORDER BY def)
               FROM (SELECT pg_catalog.pg_get_indexdef(i.indexrelid, 0, true) || ' / '
                            || pg_catalog.pg_get_indexdef(i.indexrelid, 1, true) AS def
                       FROM pg_catalog.pg_index i WHERE i.indrelid = 'clients'::regclass) d"
        ),
        "CREATE UNIQUE INDEX customers_email_key ON clients USING btree (email) / email; \
         CREATE UNIQUE INDEX customers_pkey ON clients USING btree (id) / id"
    );
    assert_eq!(
        at(
            "v2",
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'customers_pkey'"
        ),
        "CREATE UNIQUE INDEX customers_pkey ON public.clients USING btree (id)"
    );
    assert_eq!(
        at(
            "v1",
            "SELECT pg_get_indexdef('customers_pkey'::regclass) || ' / ' || pg_get_constraintdef(oid)
               FROM pg_constraint WHERE conname = 'customers_pkey'"
        ),
        "CREATE UNIQUE INDEX customers_pkey ON public.customers USING btree (customer_id) / PRIMARY KEY (customer_id)"
    );
    let describe = describe_table(&proxy, "v2", "clients");
    assert!(
        describe.contains("\"customers_pkey\" PRIMARY KEY, btree (id)"),
        "{describe}"
    );

    // The per-column views and the planner's statistics name only the version's columns:
    // legacy_code (hidden at v2) and price_cents (hidden at both) never show.
    proxy.admin(
        "INSERT INTO customers (name, email, legacy_code)
         SELECT 'n' || g, 'e' || g, 'l' || g FROM generate_series(1, 20) g;
         ANALYZE customers",
    );
    let names = |version: &str, relation: &str, column: &str, table: &str| {
        at(
            version,
            &format!(
                "SELECT coalesce(string_agg(DISTINCT {column}, ',' ORDER BY {column}), '-')
                   FROM {relation} WHERE {column} IS NOT NULL AND {table}"
            ),
        )
    };
    for relation in [
        "information_schema.column_privileges",
        "information_schema.role_column_grants",
        "information_schema.column_udt_usage",
    ] {
        assert_eq!(
            names("v2", relation, "column_name", "table_name = 'clients'"),
            "email,full_name,id,price",
            "{relation} at v2"
        );
        assert_eq!(
            names(
                "v2",
                relation,
                "column_name",
                "table_name IN ('customers', 'clients_v2')"
            ),
            "-",
            "{relation} at v2 under the base and view names"
        );
        assert_eq!(
            names("v1", relation, "column_name", "table_name = 'customers'"),
            "customer_id,email,legacy_code,name",
            "{relation} at v1"
        );
    }
    assert_eq!(
        names("v2", "pg_stats", "attname", "tablename = 'clients'"),
        "email,full_name,id",
        "statistics of the plain and renamed columns, under the version's names"
    );
    assert_eq!(
        names(
            "v2",
            "pg_catalog.pg_stats",
            "attname",
            "tablename = 'customers'"
        ),
        "-"
    );
    assert_eq!(
        names("v1", "pg_stats", "attname", "tablename = 'customers'"),
        "customer_id,email,legacy_code,name"
    );

    // Retiring a version drops its substitutes with its views; the other keeps its own.
    catalog_command(&proxy, "views", &["drop", "--version", "v2"]).unwrap();
    assert_eq!(
        proxy.admin(
            "SELECT string_agg(nspname, ',') FROM pg_namespace WHERE nspname LIKE 'viewgate_catalog_%'"
        ),
        "viewgate_catalog_v1"
    );
    assert_eq!(
        at(
            "v1",
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'customers'"
        ),
        "4"
    );
}

/// Two managed tables with keys and indexes in every form Postgres prints: per-column
/// collation, operator class (with options), ordering, INCLUDE, WITH (...), NULLS NOT DISTINCT,
/// a self-referencing foreign key with ON DELETE SET NULL (columns), a foreign key between the
/// managed tables, one from an unmanaged table, and keys on a column v2 does not see.
const KEYS_SCHEMA: &str = "CREATE TABLE public.customers (
    customer_id serial PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL,
    legacy_code text UNIQUE,
    referrer_id integer REFERENCES public.customers (customer_id) ON DELETE SET NULL (referrer_id),
    CONSTRAINT customers_email_code UNIQUE (email) INCLUDE (legacy_code)
);
CREATE INDEX customers_name_sorted ON public.customers
    (name COLLATE \"C\" text_pattern_ops DESC, customer_id NULLS FIRST) INCLUDE (email)
    WITH (fillfactor = 80, deduplicate_items = off);
CREATE UNIQUE INDEX customers_email_referrer ON public.customers
    (email, referrer_id DESC NULLS LAST) NULLS NOT DISTINCT;
CREATE INDEX customers_id_brin ON public.customers
    USING brin (customer_id int4_minmax_multi_ops (values_per_range = 16));
CREATE INDEX customers_email_with_code ON public.customers (email) INCLUDE (legacy_code);
CREATE TABLE public.orders (
    order_id serial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES public.customers,
    customer_code text REFERENCES public.customers (legacy_code),
    note text
);
CREATE TABLE public.invoices (
    invoice_id serial PRIMARY KEY,
    customer_id integer REFERENCES public.customers (customer_id)
        MATCH FULL ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED
);";

const KEYS_SPEC: &str = r#"
[[tables]]
name = "customers"

[[tables]]
name = "orders"

[[versions]]
name = "v1"
[[versions.tables]]
base = "customers"
columns = ["customer_id", "name", "email", "legacy_code", "referrer_id"]
[[versions.tables]]
base = "orders"
columns = ["order_id", "customer_id", "customer_code", "note"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "customers"
name = "clients"
columns = [
    { name = "id", from = "customer_id" },
    { name = "full_name", from = "name" },
    "email",
    { name = "referred_by", from = "referrer_id" },
]
[[versions.tables]]
base = "orders"
name = "purchases"
columns = [
    { name = "id", from = "order_id" },
    { name = "client_id", from = "customer_id" },
    "customer_code",
    "note",
]
"#;

/// What v2's clients should see, made by hand in a database of its own: the tables under v2's
/// names with the same keys and indexes (and their names), minus what v2 cannot see.
const KEYS_HANDMADE_V2: &str = "CREATE SEQUENCE public.customers_customer_id_seq;
CREATE TABLE public.clients (
    id integer CONSTRAINT customers_customer_id_not_null NOT NULL
        DEFAULT nextval('customers_customer_id_seq'::regclass) CONSTRAINT customers_pkey PRIMARY KEY,
    full_name text CONSTRAINT customers_name_not_null NOT NULL,
    email text CONSTRAINT customers_email_not_null NOT NULL,
    referred_by integer CONSTRAINT customers_referrer_id_fkey REFERENCES public.clients (id)
        ON DELETE SET NULL (referred_by)
);
CREATE INDEX customers_name_sorted ON public.clients
    (full_name COLLATE \"C\" text_pattern_ops DESC, id NULLS FIRST) INCLUDE (email)
    WITH (fillfactor = 80, deduplicate_items = off);
CREATE UNIQUE INDEX customers_email_referrer ON public.clients
    (email, referred_by DESC NULLS LAST) NULLS NOT DISTINCT;
CREATE INDEX customers_id_brin ON public.clients
    USING brin (id int4_minmax_multi_ops (values_per_range = 16));
CREATE SEQUENCE public.orders_order_id_seq;
CREATE TABLE public.purchases (
    id integer CONSTRAINT orders_order_id_not_null NOT NULL
        DEFAULT nextval('orders_order_id_seq'::regclass) CONSTRAINT orders_pkey PRIMARY KEY,
    client_id integer CONSTRAINT orders_customer_id_not_null NOT NULL
        CONSTRAINT orders_customer_id_fkey REFERENCES public.clients,
    customer_code text,
    note text
);
CREATE TABLE public.invoices (
    invoice_id serial PRIMARY KEY,
    customer_id integer CONSTRAINT invoices_customer_id_fkey REFERENCES public.clients (id)
        MATCH FULL ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED
);";

/// Every index of `table`: its name, its definition plain and pretty-printed, and each of its
/// columns (keys and INCLUDE) as `pg_get_indexdef(oid, n, true)` prints it.
fn index_definitions(table: &str) -> String {
    format!(
        "SELECT string_agg(format('%s: %s | %s | %s', c.relname, pg_get_indexdef(i.indexrelid),
                                 pg_catalog.pg_get_indexdef(i.indexrelid, 0, true),
                                 (SELECT string_agg(pg_get_indexdef(i.indexrelid, n, true), ',' ORDER BY n)
                                    FROM generate_series(1, i.indnatts) n)), E'\\n' ORDER BY c.relname)
           FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
          WHERE i.indrelid = '{table}'::regclass"
    )
}

/// The constraints on `table` and the foreign keys referencing it: name, table, definition
/// plain and pretty-printed.
fn constraint_definitions(table: &str) -> String {
    format!(
        "SELECT string_agg(format('%s on %s: %s | %s', k.conname, c.relname, pg_get_constraintdef(k.oid),
                                 pg_catalog.pg_get_constraintdef(k.oid, true)), E'\\n' ORDER BY k.conname)
           FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
          WHERE k.conrelid = '{table}'::regclass OR k.confrelid = '{table}'::regclass"
    )
}

/// The foreign keys referencing `table`, column by column as JDBC's `getImportedKeys` joins
/// them (`conkey`/`confkey` against `pg_attribute`).
fn foreign_key_columns(table: &str) -> String {
    format!(
        "SELECT string_agg(format('%s: %s.%s -> %s.%s', k.conname, c.relname, a.attname, fc.relname, fa.attname),
                           E'\\n' ORDER BY k.conname)
           FROM pg_catalog.pg_constraint k
           JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
           JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
           JOIN pg_catalog.pg_class fc ON fc.oid = k.confrelid
           JOIN pg_catalog.pg_attribute fa ON fa.attrelid = k.confrelid AND fa.attnum = k.confkey[1]
          WHERE k.contype = 'f' AND k.confrelid = '{table}'::regclass"
    )
}

#[test]
fn index_and_key_definitions_name_the_versions_table_and_columns() {
    let proxy = proxy_with_spec(KEYS_SCHEMA, KEYS_SPEC);
    let at = |version: &str, sql: &str| psql(&proxy, Some(version), sql).unwrap();
    proxy.admin("CREATE DATABASE handmade");
    proxy.cluster.psql("handmade", KEYS_HANDMADE_V2).unwrap();
    let handmade = |sql: &str| proxy.cluster.psql("handmade", sql).unwrap();

    // Character for character what Postgres prints for the hand-made tables.
    let indexes = at("v2", &index_definitions("clients"));
    assert_eq!(indexes, handmade(&index_definitions("clients")));
    assert_eq!(
        indexes,
        "customers_email_referrer: \
CREATE UNIQUE INDEX customers_email_referrer ON public.clients USING btree (email, referred_by DESC NULLS LAST) NULLS NOT DISTINCT | \
CREATE UNIQUE INDEX customers_email_referrer ON clients USING btree (email, referred_by DESC NULLS LAST) NULLS NOT DISTINCT | email,referred_by
customers_id_brin: \
CREATE INDEX customers_id_brin ON public.clients USING brin (id int4_minmax_multi_ops (values_per_range='16')) | \
CREATE INDEX customers_id_brin ON clients USING brin (id int4_minmax_multi_ops (values_per_range='16')) | id
customers_name_sorted: \
CREATE INDEX customers_name_sorted ON public.clients USING btree (full_name COLLATE \"C\" text_pattern_ops DESC, id NULLS FIRST) INCLUDE (email) WITH (fillfactor='80', deduplicate_items=off) | \
CREATE INDEX customers_name_sorted ON clients USING btree (full_name COLLATE \"C\" text_pattern_ops DESC, id NULLS FIRST) INCLUDE (email) WITH (fillfactor='80', deduplicate_items=off) | full_name,id,email
customers_pkey: \
CREATE UNIQUE INDEX customers_pkey ON public.clients USING btree (id) | \
CREATE UNIQUE INDEX customers_pkey ON clients USING btree (id) | id"
    );
    let pg_indexes = "SELECT string_agg(tablename || ' ' || indexname || ': ' || indexdef, E'\\n' ORDER BY indexname)
                        FROM pg_indexes WHERE tablename IN ('clients', 'purchases')";
    assert_eq!(at("v2", pg_indexes), handmade(pg_indexes));
    // Qualified only where the table is not visible, as Postgres does.
    let unqualified = "SET search_path = pg_catalog; SELECT pg_get_indexdef('public.customers_name_sorted'::regclass, 0, true)";
    let qualified = "SET search_path = pg_catalog; SELECT pg_get_indexdef(i.indexrelid, 0, true) FROM pg_index i
                      WHERE i.indrelid = 'public.clients'::regclass AND i.indnatts = 3";
    assert_eq!(at("v2", qualified), handmade(unqualified));
    assert!(at("v2", qualified).contains(" ON public.clients USING "));

    let constraints = at("v2", &constraint_definitions("clients"));
    assert_eq!(constraints, handmade(&constraint_definitions("clients")));
    // PostgreSQL 18 catalogues NOT NULL constraints too (compared with the hand-made above).
    let keys: Vec<&str> = constraints
        .lines()
        .filter(|line| !line.contains(": NOT NULL "))
        .collect();
    assert_eq!(
        keys.join("\n"),
        "customers_pkey on clients: PRIMARY KEY (id) | PRIMARY KEY (id)
customers_referrer_id_fkey on clients: \
FOREIGN KEY (referred_by) REFERENCES clients(id) ON DELETE SET NULL (referred_by) | \
FOREIGN KEY (referred_by) REFERENCES clients(id) ON DELETE SET NULL (referred_by)
invoices_customer_id_fkey on invoices: \
FOREIGN KEY (customer_id) REFERENCES clients(id) MATCH FULL ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED | \
FOREIGN KEY (customer_id) REFERENCES clients(id) MATCH FULL ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED
orders_customer_id_fkey on purchases: FOREIGN KEY (client_id) REFERENCES clients(id) | FOREIGN KEY (client_id) REFERENCES clients(id)"
    );
    assert_eq!(
        at("v2", &constraint_definitions("purchases")),
        handmade(&constraint_definitions("purchases"))
    );
    let referencing = at("v2", &foreign_key_columns("clients"));
    assert_eq!(referencing, handmade(&foreign_key_columns("clients")));
    assert_eq!(
        referencing,
        "customers_referrer_id_fkey: clients.referred_by -> clients.id
invoices_customer_id_fkey: invoices.customer_id -> clients.id
orders_customer_id_fkey: purchases.client_id -> clients.id"
    );
    let referenced_elsewhere = "SET search_path = pg_catalog; SELECT pg_get_constraintdef(k.oid, true)
                                  FROM pg_constraint k WHERE k.conname = 'invoices_customer_id_fkey'";
    assert_eq!(
        at("v2", referenced_elsewhere),
        handmade(referenced_elsewhere)
    );

    // psql's \d: the same indexes and foreign keys, printed alike, and the referencing tables
    // of "Referenced by:" by v2's names (`conrelid::pg_catalog.regclass AS ontable`, a result
    // column printed by the version's name; before, by the views' own names).
    let described = describe_table(&proxy, "v2", "clients");
    let by_hand = describe_at(&proxy, &proxy.cluster.admin_conninfo("handmade"), "clients");
    assert_eq!(described, by_hand);
    assert!(
        described.contains("TABLE \"purchases\" CONSTRAINT \"orders_customer_id_fkey\""),
        "{described}"
    );
    assert!(
        described.contains("\"customers_name_sorted\" btree (full_name COLLATE \"C\" text_pattern_ops DESC, id NULLS FIRST) INCLUDE (email) WITH (fillfactor='80', deduplicate_items=off)"),
        "{described}"
    );

    // What v2 does not see whole is not shown, and its definitions print nothing: the unique
    // key and the index that INCLUDE legacy_code, the key on it, the foreign key to it.
    assert_eq!(
        at(
            "v2",
            "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_index i
               JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 'customers%'"
        ),
        "customers_email_referrer,customers_id_brin,customers_name_sorted,customers_pkey"
    );
    assert_eq!(
        at(
            "v2",
            "SELECT count(*) FROM pg_constraint WHERE conname IN
               ('customers_email_code', 'customers_legacy_code_key', 'orders_customer_code_fkey')"
        ),
        "0"
    );
    let oid = |sql: &str| proxy.admin(sql);
    let hidden = format!(
        "SELECT quote_nullable(pg_get_indexdef({})), quote_nullable(pg_get_indexdef({}, 1, true)),
                quote_nullable(pg_get_constraintdef({})), quote_nullable(pg_get_constraintdef({}, true))
           FROM pg_class WHERE relname = 'clients'",
        oid("SELECT 'customers_email_with_code'::regclass::oid"),
        oid("SELECT 'customers_email_code'::regclass::oid"),
        oid("SELECT oid FROM pg_constraint WHERE conname = 'orders_customer_code_fkey'"),
        oid("SELECT oid FROM pg_constraint WHERE conname = 'customers_email_code'"),
    );
    assert_eq!(at("v2", &hidden), "NULL|NULL|NULL|NULL");

    // v1 sees them all, under the base names.
    assert_eq!(
        at(
            "v1",
            "SELECT string_agg(indexdef, E'\\n' ORDER BY indexname) FROM pg_indexes
              WHERE indexname IN ('customers_email_with_code', 'customers_email_code')"
        ),
        "CREATE UNIQUE INDEX customers_email_code ON public.customers USING btree (email) INCLUDE (legacy_code)
CREATE INDEX customers_email_with_code ON public.customers USING btree (email) INCLUDE (legacy_code)"
    );
    assert_eq!(
        at(
            "v1",
            "SELECT string_agg(conname || ': ' || pg_get_constraintdef(oid), E'\\n' ORDER BY conname)
               FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'f'"
        ),
        "orders_customer_code_fkey: FOREIGN KEY (customer_code) REFERENCES customers(legacy_code)
orders_customer_id_fkey: FOREIGN KEY (customer_id) REFERENCES customers(customer_id)"
    );
}

/// Extended statistics (`pg_stats_ext`) of a managed table show under the version's table and
/// column names, their attribute numbers the version's, when the version sees every column;
/// those on an expression or a hidden column, and `pg_stats_ext_exprs`, do not show.
#[test]
fn extended_statistics_follow_the_version() {
    let proxy = proxy_with_spec(KEYS_SCHEMA, KEYS_SPEC);
    let at = |version: &str, sql: &str| psql(&proxy, Some(version), sql).unwrap();
    let statistics = "CREATE STATISTICS customers_name_referrer_stats (ndistinct, dependencies, mcv)
                        ON name, referrer_id FROM customers;
                      CREATE STATISTICS customers_name_code_stats ON name, legacy_code FROM customers;
                      CREATE STATISTICS customers_lower_name_stats ON lower(name), email FROM customers;
                      INSERT INTO customers (name, email, legacy_code, referrer_id)
                      SELECT 'n' || (g % 4), 'e' || g, 'l' || g, CASE WHEN g > 4 THEN 1 + g % 4 END
                        FROM generate_series(1, 20) g;
                      ANALYZE customers";
    proxy.admin(statistics);
    proxy.admin("CREATE DATABASE handmade");
    proxy.cluster.psql("handmade", KEYS_HANDMADE_V2).unwrap();
    let handmade = |sql: &str| proxy.cluster.psql("handmade", sql).unwrap();
    handmade(
        "CREATE STATISTICS customers_name_referrer_stats (ndistinct, dependencies, mcv)
           ON full_name, referred_by FROM clients;
         INSERT INTO clients (full_name, email, referred_by)
         SELECT 'n' || (g % 4), 'e' || g, CASE WHEN g > 4 THEN 1 + g % 4 END FROM generate_series(1, 20) g;
         ANALYZE clients",
    );
    let stats_ext = |table: &str| {
        format!(
            "SELECT schemaname, tablename, statistics_name, attnames, exprs, kinds, n_distinct, dependencies,
                    most_common_vals
               FROM pg_stats_ext WHERE tablename = '{table}' ORDER BY statistics_name"
        )
    };
    let v2 = at("v2", &stats_ext("clients"));
    assert_eq!(v2, handmade(&stats_ext("clients")));
    assert!(
        v2.starts_with(
            "public|clients|customers_name_referrer_stats|{full_name,referred_by}||{d,f,m}|{\"2, 4\": 8}|{\"4 => 2\": 0.800000}|"
        ),
        "{v2}"
    );
    assert_eq!(at("v2", &stats_ext("customers")), "");
    // The base table's numbers: referrer_id is its fifth column, referred_by v2's fourth.
    assert!(
        proxy
            .admin(&stats_ext("customers"))
            .contains("|{name,referrer_id}||{d,f,m}|{\"2, 5\": 8}|{\"5 => 2\": 0.800000}|"),
    );
    assert_eq!(
        at(
            "v1",
            "SELECT string_agg(statistics_name || ' ' || attnames::text, ',' ORDER BY statistics_name)
               FROM pg_catalog.pg_stats_ext WHERE tablename = 'customers'"
        ),
        "customers_name_code_stats {name,legacy_code},customers_name_referrer_stats {name,referrer_id}"
    );
    let exprs =
        "SELECT count(*) FROM pg_stats_ext_exprs WHERE tablename IN ('customers', 'clients')";
    for version in ["v1", "v2"] {
        assert_eq!(at(version, exprs), "0", "at {version}");
    }
    assert_eq!(proxy.admin(exprs), "1");
}

/// Statistics objects (`pg_statistic_ext`, psql's "Statistics objects:" footer and the
/// `pg_get_statisticsobjdef*` printers) of a managed table show under the version's table, its
/// attribute numbers and column names, when the version sees every column and there is no
/// expression (as for indexes); the others are gone and their definitions NULL. Compared with
/// the same object made by hand under v2's names.
#[test]
fn statistics_objects_follow_the_version() {
    let proxy = proxy_with_spec(KEYS_SCHEMA, KEYS_SPEC);
    let at = |version: &str, sql: &str| psql(&proxy, Some(version), sql).unwrap();
    proxy.admin(
        "CREATE STATISTICS customers_name_referrer_stats (ndistinct, dependencies)
           ON referrer_id, name FROM customers;
         CREATE STATISTICS customers_all_kinds_stats ON email, customer_id FROM customers;
         CREATE STATISTICS customers_name_code_stats ON name, legacy_code FROM customers;
         CREATE STATISTICS customers_lower_name_stats ON lower(name), email FROM customers;
         CREATE STATISTICS invoices_stats ON invoice_id, customer_id FROM invoices",
    );
    proxy.admin("CREATE DATABASE handmade");
    proxy.cluster.psql("handmade", KEYS_HANDMADE_V2).unwrap();
    let handmade = |sql: &str| proxy.cluster.psql("handmade", sql).unwrap();
    handmade(
        "CREATE STATISTICS customers_name_referrer_stats (ndistinct, dependencies)
           ON referred_by, full_name FROM clients;
         CREATE STATISTICS customers_all_kinds_stats ON email, id FROM clients;
         CREATE STATISTICS invoices_stats ON invoice_id, customer_id FROM invoices",
    );
    let objects = |table: &str| {
        format!(
            "SELECT string_agg(format('%s: %s %s %s | %s | %s | %s', x.stxname, x.stxrelid = '{table}'::regclass, x.stxkeys,
                                      x.stxkind, pg_get_statisticsobjdef(x.oid),
                                      pg_catalog.pg_get_statisticsobjdef_columns(x.oid),
                                      quote_nullable(pg_get_statisticsobjdef_expressions(x.oid))), E'\\n' ORDER BY x.stxname)
               FROM pg_statistic_ext x WHERE x.stxrelid = '{table}'::regclass"
        )
    };
    let v2 = at("v2", &objects("clients"));
    assert_eq!(v2, handmade(&objects("clients")));
    assert_eq!(
        v2,
        "customers_all_kinds_stats: t 1 3 {d,f,m} | CREATE STATISTICS public.customers_all_kinds_stats ON id, email FROM clients | id, email | NULL
customers_name_referrer_stats: t 2 4 {d,f} | CREATE STATISTICS public.customers_name_referrer_stats (ndistinct, dependencies) ON full_name, referred_by FROM clients | full_name, referred_by | NULL"
    );
    // Qualified only where Postgres qualifies the table.
    let qualified = "SET search_path = pg_catalog;
                     SELECT pg_get_statisticsobjdef(x.oid) FROM pg_statistic_ext x
                      WHERE x.stxname = 'customers_all_kinds_stats'";
    assert_eq!(at("v2", qualified), handmade(qualified));
    assert!(at("v2", qualified).ends_with(" FROM public.clients"));
    // An unmanaged table's are the server's.
    assert_eq!(
        at("v2", &objects("invoices")),
        proxy.admin(&objects("invoices"))
    );
    // What v2 does not see whole (legacy_code) or sees no column of (an expression) is gone,
    // and its definitions are NULL.
    assert_eq!(
        at(
            "v2",
            "SELECT count(*) FROM pg_statistic_ext
              WHERE stxname IN ('customers_name_code_stats', 'customers_lower_name_stats')"
        ),
        "0"
    );
    for name in ["customers_name_code_stats", "customers_lower_name_stats"] {
        let oid = proxy.admin(&format!(
            "SELECT oid FROM pg_statistic_ext WHERE stxname = '{name}'"
        ));
        assert_eq!(
            at(
                "v2",
                &format!(
                    "SELECT quote_nullable(pg_get_statisticsobjdef({oid})),
                            quote_nullable(pg_get_statisticsobjdef_columns({oid})),
                            quote_nullable(pg_get_statisticsobjdef_expressions({oid}))
                       FROM pg_class WHERE relname = 'clients'"
                )
            ),
            "NULL|NULL|NULL",
            "{name}"
        );
    }
    // v1 sees the one on legacy_code, under the base names (its table is named customers);
    // the one on an expression is gone there too.
    assert_eq!(
        at(
            "v1",
            "SELECT string_agg(pg_get_statisticsobjdef(oid), E'\\n' ORDER BY stxname) FROM pg_statistic_ext
              WHERE stxrelid = 'customers'::regclass"
        ),
        "CREATE STATISTICS public.customers_all_kinds_stats ON customer_id, email FROM customers
CREATE STATISTICS public.customers_name_code_stats ON name, legacy_code FROM customers
CREATE STATISTICS public.customers_name_referrer_stats (ndistinct, dependencies) ON name, referrer_id FROM customers"
    );

    // psql's \d footer: the objects, their columns and their table as for the hand-made
    // table. The table after FROM is psql's unaliased `stxrelid::pg_catalog.regclass`, which
    // printed the view's own name (`FROM clients_v2`) until 2026-12-07.
    let footer = |text: &str| {
        text.split("Statistics objects:")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    let described = describe_table(&proxy, "v2", "clients");
    let by_hand = describe_at(&proxy, &proxy.cluster.admin_conninfo("handmade"), "clients");
    assert_eq!(footer(&described), footer(&by_hand), "{described}");
    // psql 15 reads a 17+ server's stxstattarget (NULL by default there, not -1) as set, and
    // adds an empty "; STATISTICS" to each line, by hand as through the proxy.
    assert_eq!(
        footer(&described).replace("; STATISTICS", ""),
        "
    \"public.customers_all_kinds_stats\" ON id, email FROM clients
    \"public.customers_name_referrer_stats\" (ndistinct, dependencies) ON full_name, referred_by FROM clients"
    );
}

/// `information_schema.referential_constraints` names only constraints: the foreign keys the
/// version does not see (to a column it does not see) are gone, as from `table_constraints`.
/// `check_constraints` lists a managed table's CHECK constraints only where the version sees
/// their columns by the base names (v1 here; `tests/introspection_checks.rs`), and none of the
/// base table's NOT NULL rows (which name hidden columns); an unmanaged table's are the
/// server's.
#[test]
fn referential_and_check_constraints_follow_the_version() {
    let proxy = proxy_with_spec(KEYS_SCHEMA, KEYS_SPEC);
    let at = |version: &str, sql: &str| psql(&proxy, Some(version), sql).unwrap();
    proxy.admin(
        "ALTER TABLE customers ADD CONSTRAINT customers_code_check CHECK (legacy_code <> '');
         ALTER TABLE customers ADD CONSTRAINT customers_name_check CHECK (name <> '');
         ALTER TABLE invoices ADD CONSTRAINT invoices_id_check CHECK (invoice_id > 0)",
    );
    proxy.admin("CREATE DATABASE handmade");
    proxy.cluster.psql("handmade", KEYS_HANDMADE_V2).unwrap();
    let handmade = |sql: &str| proxy.cluster.psql("handmade", sql).unwrap();
    let referential = "SELECT string_agg(format('%s -> %s.%s %s %s %s', constraint_name, unique_constraint_schema,
                                                unique_constraint_name, match_option, update_rule, delete_rule),
                                         E'\\n' ORDER BY constraint_name)
                         FROM information_schema.referential_constraints WHERE constraint_schema = 'public'";
    let v2 = at("v2", referential);
    assert_eq!(v2, handmade(referential));
    assert!(!v2.contains("orders_customer_code_fkey"), "{v2}");
    assert!(
        proxy
            .admin(referential)
            .contains("orders_customer_code_fkey -> public.customers_legacy_code_key")
    );
    assert_eq!(
        at("v1", referential),
        proxy.admin(referential),
        "v1 sees every key"
    );
    // The columns and tables keys use, a foreign key's referenced ones too, which Peewee's and
    // Sequelize's foreign key reflection join to the keys' own (they were gone for keys of
    // other tables than the referenced one).
    for usage in [
        "SELECT string_agg(format('%s %s.%s', constraint_name, table_name, column_name), E'\\n'
                          ORDER BY constraint_name, table_name, column_name)
           FROM information_schema.constraint_column_usage
          WHERE table_schema = 'public' AND constraint_name !~ '_check$'",
        "SELECT string_agg(format('%s %s', constraint_name, table_name), E'\\n' ORDER BY constraint_name, table_name)
           FROM information_schema.constraint_table_usage
          WHERE table_schema = 'public' AND constraint_name !~ '_check$'",
    ] {
        let v2 = at("v2", usage);
        assert_eq!(v2, handmade(usage));
        assert!(v2.contains("orders_customer_id_fkey clients"), "{v2}");
        assert_eq!(at("v1", usage), proxy.admin(usage), "v1 sees every key");
    }

    let checks = |filter: &str| {
        format!(
            "SELECT string_agg(constraint_name || ': ' || check_clause, E'\\n' ORDER BY constraint_name)
               FROM information_schema.check_constraints WHERE constraint_schema = 'public' {filter}"
        )
    };
    let base = proxy.admin(&checks(""));
    // The server's: CHECK clauses and NOT NULL rows naming the base columns.
    // PostgreSQL 15 doubles the clause's parentheses; 17 does not.
    assert!(
        (base.contains("customers_code_check: ((legacy_code <> ''::text))")
            || base.contains("customers_code_check: (legacy_code <> ''::text)"))
            && base.contains("_not_null: customer_id IS NOT NULL"),
        "{base}"
    );
    // Through the proxy, at either version: the server's rows of every other table (invoices'
    // check and NOT NULL rows), none of the managed tables'.
    let managed_oids =
        proxy.admin("SELECT 'customers'::regclass::oid || '|' || 'orders'::regclass::oid");
    let others = proxy.admin(&checks(&format!(
        "AND constraint_name !~ '^customers_' AND constraint_name !~ '^[0-9]+_({managed_oids})_[0-9]+_not_null$'"
    )));
    assert!(
        others.contains("invoices_id_check: ((invoice_id > 0))")
            || others.contains("invoices_id_check: (invoice_id > 0)"),
        "{others}"
    );
    assert!(others.contains("invoice_id IS NOT NULL"), "{others}");
    // PostgreSQL 18 catalogues NOT NULL constraints under names of their own
    // (`orders_order_id_not_null`): a managed table's are shown there, each clause on the
    // version's name of its column; before 18 none are.
    let server_18 = proxy
        .admin("SHOW server_version_num")
        .parse::<u32>()
        .unwrap()
        >= 180_000;
    let managed_not_null = |line: &&str| {
        (line.starts_with("customers_") || line.starts_with("orders_"))
            && line.contains("_not_null:")
    };
    let other_rows: Vec<&str> = others
        .lines()
        .filter(|line| !managed_not_null(line))
        .collect();
    for (version, clauses) in [
        (
            "v1",
            ["customer_id", "customer_id", "email", "name", "order_id"],
        ),
        ("v2", ["client_id", "email", "full_name", "id", "id"]),
    ] {
        let seen = at(version, &checks(""));
        let (not_null, rest): (Vec<&str>, Vec<&str>) = seen.lines().partition(managed_not_null);
        // v1 sees `legacy_code` and `name` by their base names, so their checks; v2 neither.
        let (managed_checks, rest): (Vec<&str>, Vec<&str>) = rest
            .into_iter()
            .partition(|line| line.starts_with("customers_"));
        assert_eq!(rest, other_rows, "at {version}");
        let expected_checks: Vec<&str> = match version {
            "v1" => base
                .lines()
                .filter(|line| line.starts_with("customers_") && line.contains("_check:"))
                .collect(),
            _ => Vec::new(),
        };
        assert_eq!(managed_checks, expected_checks, "at {version}");
        let mut shown: Vec<&str> = not_null
            .iter()
            .filter_map(|line| line.split(": ").nth(1)?.strip_suffix(" IS NOT NULL"))
            .collect();
        shown.sort_unstable();
        let expected: Vec<&str> = if server_18 {
            clauses.to_vec()
        } else {
            Vec::new()
        };
        assert_eq!(shown, expected, "at {version}: {seen}");
        if version == "v2" {
            for base_column in ["legacy_code", "referrer_id"] {
                assert!(!seen.contains(base_column), "{base_column}: {seen}");
            }
        }
    }
}

/// The schema-per-version layout: the version's view is `v2.model_metadata`; by name it reads
/// as `public.model_metadata`, and psql finds it where the version's schema is on the
/// search_path (`pg_table_is_visible` is the real one; docs/rewriting.md).
#[test]
fn the_schema_layout_shows_the_version_in_the_tables_schema() {
    let spec = std::fs::read_to_string("examples/model_metadata/viewgate.toml")
        .unwrap()
        .replace("layout = \"suffix\"", "layout = \"schema\"");
    assert!(spec.contains("layout = \"schema\""));
    let schema = std::fs::read_to_string("examples/model_metadata/schema.sql").unwrap();
    let proxy = proxy_with_spec(&schema, &spec);
    assert_eq!(
        psql(
            &proxy,
            Some("v2"),
            "SELECT string_agg(column_name || ':' || is_nullable, ',' ORDER BY ordinal_position)
               FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'model_metadata'"
        )
        .unwrap(),
        "id:NO,model_name:NO,model_version:NO,model_type:YES,hyperparameters:NO,created_at:NO,schema_version:NO"
    );
    let conninfo = format!(
        "{} options='-c viewgate.version=v1 -c search_path=v1,public'",
        proxy.conninfo()
    );
    let described = common::run_ok(proxy.psql(&conninfo).args(["-c", "\\d model_metadata"]));
    let columns: Vec<&str> = described
        .lines()
        .filter_map(|line| line.split('|').next())
        .collect();
    assert_eq!(
        columns,
        [
            "id",
            "model_name",
            "model_version",
            "hyperparameters",
            "created_at"
        ],
        "{described}"
    );
    // Found by name on that search_path, the version's table has no view definition.
    let definitions = common::run_ok(proxy.psql(&conninfo).args([
        "-c",
        "SELECT quote_nullable(pg_get_viewdef('model_metadata')),
                quote_nullable(pg_get_viewdef('model_metadata'::regclass, true)) FROM pg_class LIMIT 1",
    ]));
    assert_eq!(definitions.trim(), "NULL|NULL");
}

/// A schema named like a version's substitutes that viewgate did not make is never dropped:
/// apply fails and says so.
#[test]
fn a_foreign_schema_of_the_substitutes_name_is_kept_and_apply_fails() {
    let proxy = versioned_proxy();
    proxy.admin("CREATE SCHEMA viewgate_catalog_v3; CREATE TABLE viewgate_catalog_v3.keep (x int)");
    let spec = std::fs::read_to_string("examples/model_metadata/viewgate.toml").unwrap()
        + r#"
[[versions]]
name = "v3"

[[versions.tables]]
base = "model_metadata"
columns = ["id", "model_name"]
"#;
    let dir = tempfile::tempdir().unwrap();
    let spec_file = dir.path().join("viewgate.toml");
    std::fs::write(&spec_file, spec).unwrap();
    let error = catalog_command(
        &proxy,
        "views",
        &["apply", "--spec", &spec_file.display().to_string()],
    )
    .unwrap_err();
    assert!(
        error.contains("schema viewgate_catalog_v3 exists and is not viewgate's"),
        "{error}"
    );
    assert_eq!(
        proxy.admin("SELECT count(*) FROM viewgate_catalog_v3.keep"),
        "0"
    );
}

/// The substitutes are readable by any role, like the catalogs, and `information_schema`'s
/// own privilege filter still applies to the session's role, not to the substitutes' owner.
#[test]
fn an_unprivileged_role_reads_the_substitutes_with_its_own_privileges() {
    let proxy = versioned_proxy();
    proxy.admin("CREATE ROLE app LOGIN");
    let conninfo = proxy
        .conninfo()
        .replace(&format!("user={SUPERUSER}"), "user=app");
    assert_ne!(conninfo, proxy.conninfo());
    let as_app = |sql: &str| {
        common::run_ok(proxy.psql(&conninfo).args(["-c", sql]))
            .trim()
            .to_owned()
    };
    assert_eq!(as_app("SHOW viewgate.version"), "v1");
    assert_eq!(
        as_app(
            "SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
              WHERE c.relname = 'model_metadata' AND a.attnum > 0"
        ),
        "id,model_name,model_version,hyperparameters,created_at"
    );
    let columns =
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'model_metadata'";
    assert_eq!(
        as_app(columns),
        "0",
        "app may not use the table: none of its columns show"
    );
    proxy.admin("GRANT SELECT ON public.model_metadata_v1 TO app");
    assert_eq!(as_app(columns), "5");
}

/// Nineteenth red-team pass (P3): row-level security policies, rules, publications and
/// triggers on the base table print its column names and expressions in system views the
/// substitutes did not cover (`pg_policies.qual`, `pg_get_expr` over `pg_policy`,
/// `pg_rules.definition`, `pg_publication_tables.attnames`, `information_schema.triggers` and
/// `triggered_update_columns`, which also listed another version's view's write trigger).
/// Through the proxy those rows are gone; the version's own view's trigger reads as the
/// table's.
#[test]
fn policies_rules_publications_and_triggers_of_the_base_table_name_no_hidden_column() {
    let proxy = versioned_proxy();
    proxy.admin(
        "ALTER TABLE public.model_metadata ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY vg_policy ON public.model_metadata \
             USING (model_type IS DISTINCT FROM 'SECRET_TYPE' OR schema_version > 0); \
         CREATE RULE vg_rule AS ON DELETE TO public.model_metadata \
             WHERE OLD.schema_version < 0 DO INSTEAD NOTHING; \
         CREATE PUBLICATION vg_publication FOR TABLE public.model_metadata \
             WHERE (schema_version > 0) WITH (publish = 'insert'); \
         CREATE FUNCTION public.vg_audit() RETURNS trigger LANGUAGE plpgsql \
             AS $$BEGIN RETURN NEW; END$$; \
         CREATE TRIGGER vg_audit BEFORE UPDATE OF model_type, schema_version \
             ON public.model_metadata FOR EACH ROW WHEN (NEW.schema_version > 0) \
             EXECUTE FUNCTION public.vg_audit()",
    );
    let listed = "SELECT concat_ws(' | ', \
        (SELECT string_agg(tablename || ':' || coalesce(qual, ''), ',') FROM pg_policies), \
        (SELECT string_agg(pg_get_expr(polqual, polrelid), ',') FROM pg_catalog.pg_policy), \
        (SELECT string_agg(tablename || ':' || definition, ',') FROM pg_rules), \
        (SELECT string_agg(tablename || ':' || attnames::text || ':' || coalesce(rowfilter, ''), ',') \
           FROM pg_publication_tables), \
        (SELECT string_agg(pg_get_expr(prqual, prrelid) || ':' || prattrs::text, ',') FROM pg_publication_rel), \
        (SELECT string_agg(event_object_table || ':' || event_object_column, ',') \
           FROM information_schema.triggered_update_columns), \
        (SELECT string_agg(event_object_table || ':' || trigger_name || ':' || coalesce(action_condition, ''), ',') \
           FROM information_schema.triggers))";
    // Straight to the server: every one of them names the hidden columns or v2's view.
    let real = proxy.admin(listed);
    for name in ["model_type", "schema_version", "model_metadata_v2"] {
        assert!(real.contains(name), "{name}: {real}");
    }
    let v1 = psql(&proxy, Some("v1"), listed).unwrap();
    for name in ["model_type", "schema_version", "model_metadata"] {
        assert!(!v1.contains(name), "{name}: {v1}");
    }
    // At v2 the base table's objects are gone too (their expressions are the base table's),
    // and its own view's write trigger reads as the table's.
    let v2 = psql(&proxy, Some("v2"), listed).unwrap();
    assert!(!v2.contains("model_metadata_v2"), "{v2}");
    assert!(!v2.contains("vg_"), "{v2}");
    assert!(v2.contains("model_metadata:viewgate_write"), "{v2}");

    // The functions behind those relations, called with the oids a scan finds (the
    // twenty-first red-team pass): the base table's rule, its publication row, and the names
    // of its trigger, policy and rule print nothing at v1.
    let oids = proxy.admin(
        "SELECT concat_ws(',',             (SELECT oid FROM pg_rewrite WHERE rulename = 'vg_rule'),             (SELECT oid FROM pg_trigger WHERE tgname = 'vg_audit'),             (SELECT oid FROM pg_policy WHERE polname = 'vg_policy'))",
    );
    let [rule, trigger, policy] = oids.trim().split(',').collect::<Vec<_>>()[..] else {
        panic!("{oids}");
    };
    let printed = format!(
        "SELECT concat_ws(' | ', pg_get_ruledef({rule}), pg_get_ruledef({rule}, true),             (SELECT string_agg(relid::regclass || ':' || coalesce(attrs::text, '') || ':'                                || coalesce(pg_get_expr(qual, relid), ''), ',')                FROM pg_get_publication_tables('vg_publication')),             pg_describe_object('pg_rewrite'::regclass, {rule}, 0),             pg_describe_object('pg_trigger'::regclass, {trigger}, 0),             pg_describe_object('pg_policy'::regclass, {policy}, 0),             (pg_identify_object('pg_policy'::regclass, {policy}, 0)).identity)"
    );
    let real = proxy.admin(&printed);
    for name in ["schema_version", "vg_rule", "vg_audit", "vg_policy"] {
        assert!(real.contains(name), "{name}: {real}");
    }
    for version in ["v1", "v2"] {
        let seen = psql(&proxy, Some(version), &printed).unwrap();
        assert!(seen.trim().is_empty(), "{version}: {seen}");
    }
}
