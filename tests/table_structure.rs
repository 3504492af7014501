//! DDL on a managed table through the proxy at a version: what would change the table's
//! columns (an ORM migration's `ALTER TABLE … ADD COLUMN`) or the table itself (`DROP TABLE
//! … CASCADE`) is refused, with 42601 and a message naming the table and `viewgate migrate`,
//! the base table is left as it was, and the session goes on; other DDL on the table (an
//! index) still reaches it. Found by the ORM walks (Alembic, knex, Sequelize's
//! `sync({alter: true})`, Django's migrate): the column was added to the base table, no
//! version's view had it, and the application's next query failed with 42703.
//!
//! While a migration retypes and renames columns, DDL at the new version naming a column the
//! version stores under another base name (`CREATE INDEX ON customers (email)`, which would
//! cover the old version's `email`, not v2's `_vg_v2_email`) is refused and makes nothing;
//! after `migrate complete` the same DDL reaches the version's column (the Node/TypeORM walk).

use std::time::Duration;

use crate::common;

use common::versions::{
    connect_with, cut_over_and_complete, proxy_with_spec, start_migration, versioned_proxy,
};
use common::wait_until;
use tokio_postgres::error::SqlState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_changing_a_managed_tables_columns_is_refused_at_a_version_and_other_ddl_passes() {
    let proxy = versioned_proxy();
    let base_has = |column: &str| {
        proxy.admin(&format!(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.model_metadata'::regclass AND attname = '{column}' AND NOT attisdropped"
        )) == "1"
    };
    let client = connect_with(&proxy, "-c%20viewgate.version%3Dv1").await;
    let sql = "ALTER TABLE model_metadata ADD COLUMN added_by_orm int";
    // Through a simple query and through a Parse.
    for error in [
        client.simple_query(sql).await.unwrap_err(),
        client.execute(sql, &[]).await.unwrap_err(),
    ] {
        let db = error.as_db_error().expect("an ErrorResponse");
        assert_eq!(db.code(), &SqlState::SYNTAX_ERROR, "{db:?}");
        let message = db.message();
        assert!(
            message.contains("ADD COLUMN on \"model_metadata\", a table viewgate manages")
                && message.contains("viewgate migrate start, operation \"add_column\"")
                && message.contains("over a direct connection"),
            "{message}"
        );
        assert!(message.ends_with("(at character 13)"), "{message}");
        // The proxy's refusal, not a PL/pgSQL failure of the server's (a DO block's RAISE
        // carried `PL/pgSQL function inline_code_block line 1 at RAISE`).
        assert_eq!(db.where_(), None, "{db:?}");
    }
    assert!(!base_has("added_by_orm"));
    // The session goes on, at its version.
    let rows = client
        .query("SELECT * FROM model_metadata", &[])
        .await
        .unwrap();
    assert!(rows.is_empty());
    assert_eq!(
        client
            .prepare("SELECT * FROM model_metadata")
            .await
            .unwrap()
            .columns()
            .len(),
        5
    );
    // A DROP TABLE … CASCADE would take every version's view with it.
    let error = client
        .simple_query("DROP TABLE model_metadata CASCADE")
        .await
        .unwrap_err();
    let db = error.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code(), &SqlState::SYNTAX_ERROR, "{db:?}");
    assert!(db.message().contains("operation \"drop_table\""), "{db:?}");
    assert_eq!(
        proxy.admin("SELECT to_regclass('public.model_metadata_v1') IS NOT NULL"),
        "t"
    );
    // Other DDL on the managed table is the operator's, and reaches the base table.
    client
        .batch_execute("CREATE INDEX model_metadata_by_name ON model_metadata (model_name)")
        .await
        .unwrap();
    assert_eq!(
        proxy.admin("SELECT tablename FROM pg_indexes WHERE indexname = 'model_metadata_by_name'"),
        "model_metadata"
    );
    // Over a direct connection the DDL is Postgres's to run.
    proxy.admin("ALTER TABLE model_metadata ADD COLUMN added_by_operator int");
    assert!(base_has("added_by_operator"));
}

const CUSTOMERS: &str = "CREATE TABLE customers (id serial PRIMARY KEY, email varchar(100) NOT NULL, name text NOT NULL);
INSERT INTO customers (email, name) VALUES ('a@x', 'ada');";

const CUSTOMERS_SPEC: &str = "[[tables]]\nname = \"customers\"\n[[versions]]\nname = \"v1\"\n[[versions.tables]]\nbase = \"customers\"\ncolumns = [\"id\", \"email\", \"name\"]\n";

/// v2 widens `email` (a column of its own, `_vg_v2_email`, until the complete) and renames
/// `name` to `full_name`.
const RETYPE_AND_RENAME: &str = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"alter_column\"\ntable = \"customers\"\ncolumn = \"email\"\ntype = \"varchar(200)\"\n[[operations]]\nop = \"rename_column\"\ntable = \"customers\"\nfrom = \"name\"\nto = \"full_name\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_naming_a_column_a_live_migration_stores_elsewhere_is_refused_until_complete() {
    let proxy = proxy_with_spec(CUSTOMERS, CUSTOMERS_SPEC);
    start_migration(&proxy, "0002_customers.toml", RETYPE_AND_RENAME, "v2");
    let indexes = |name: &str| {
        proxy.admin(&format!(
            "SELECT coalesce(string_agg(indexdef, ';'), '') FROM pg_indexes WHERE indexname = '{name}'"
        ))
    };
    let v2 = connect_with(&proxy, "-c%20viewgate.version%3Dv2").await;
    let sql = "CREATE INDEX walk_v2_email_idx ON customers (email)";
    for error in [
        v2.simple_query(sql).await.unwrap_err(),
        v2.execute(sql, &[]).await.unwrap_err(),
    ] {
        let db = error.as_db_error().expect("an ErrorResponse");
        assert_eq!(db.code(), &SqlState::SYNTAX_ERROR, "{db:?}");
        let message = db.message();
        assert!(
            message.contains("CREATE INDEX on \"customers\" names column \"email\", which at version \"v2\" is stored in base column \"_vg_v2_email\" while the migration to v2 is live")
                && message.contains("operation \"create_index\"")
                && message.contains("viewgate migrate complete"),
            "{message}"
        );
        assert!(message.ends_with("(at character 46)"), "{message}");
    }
    assert_eq!(indexes("walk_v2_email_idx"), "", "the refusal made nothing");
    // A renamed column, which Postgres would have refused with a bare 42703.
    let error = v2
        .simple_query("ALTER TABLE customers ADD CONSTRAINT named CHECK (full_name <> '')")
        .await
        .unwrap_err();
    let db = error.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code(), &SqlState::SYNTAX_ERROR, "{db:?}");
    assert!(
        db.message()
            .contains("is stored in base column \"name\" under another name"),
        "{db:?}"
    );
    // ANALYZE's and GRANT's column lists too: they reached v1's email (the operator-tools
    // walk), and a grant on it passed.
    proxy.admin("CREATE ROLE reader");
    for (sql, statement) in [
        ("ANALYZE customers (email)", "ANALYZE (columns)"),
        (
            "GRANT SELECT (id), UPDATE (email) ON customers TO reader",
            "GRANT or REVOKE (columns)",
        ),
    ] {
        let error = v2.simple_query(sql).await.unwrap_err();
        let db = error.as_db_error().expect("an ErrorResponse");
        assert!(
            db.message().contains(&format!(
                "{statement} on \"customers\" names column \"email\", which at version \"v2\" is stored in base column \"_vg_v2_email\""
            )),
            "{db:?}"
        );
    }
    assert_eq!(
        proxy.admin(
            "SELECT count(*) FROM information_schema.column_privileges WHERE grantee = 'reader'"
        ),
        "0"
    );
    // A column the base table has by the version's name is the operator's, as before.
    v2.batch_execute("ANALYZE customers (id); GRANT SELECT (id) ON customers TO reader")
        .await
        .unwrap();
    v2.batch_execute("CREATE INDEX walk_v2_id_idx ON customers (id)")
        .await
        .unwrap();
    assert!(indexes("walk_v2_id_idx").contains("(id)"));
    // The session goes on, at its version.
    let rows = v2
        .query("SELECT email, full_name FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    drop(v2);

    cut_over_and_complete(&proxy, "v2");
    // Once the base columns have the version's names, the same DDL reaches them (the proxy
    // learns the completed mapping from the catalog within moments).
    let mut made = Err(String::new());
    assert!(
        wait_until(Duration::from_secs(10), || {
            made = common::versions::psql(&proxy, Some("v2"), sql);
            made.is_ok()
        }),
        "{made:?}"
    );
    assert_eq!(
        indexes("walk_v2_email_idx"),
        "CREATE INDEX walk_v2_email_idx ON public.customers USING btree (email)"
    );
    common::versions::psql(&proxy, Some("v2"), "CREATE INDEX ON customers (full_name)").unwrap();
}

/// v2 widens `email` and calls `customers` `clients`.
const RETYPE_AND_RENAME_TABLE: &str = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"alter_column\"\ntable = \"customers\"\ncolumn = \"email\"\ntype = \"varchar(200)\"\n[[operations]]\nop = \"rename_table\"\nfrom = \"customers\"\nto = \"clients\"\n";

/// `CREATE TABLE IF NOT EXISTS` of a managed table by the name the version knows it by makes
/// nothing, as for the version's shape made by hand (an ORM creating its tables at startup:
/// Tortoise's `generate_schemas`). At v2 it was refused for naming `email`, which v2 stores
/// in `_vg_v2_email` (the async Python walk); under v2's name of a table the migration renames,
/// it made a stray base table `clients`, and the complete's rename then failed on it (42P07).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_managed_table_that_exists_makes_nothing_at_a_version() {
    let proxy = proxy_with_spec(CUSTOMERS, CUSTOMERS_SPEC);
    start_migration(&proxy, "0002_customers.toml", RETYPE_AND_RENAME_TABLE, "v2");
    let tables = || {
        proxy.admin(
            "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace",
        )
    };
    let before = tables();
    let v1 = connect_with(&proxy, "-c%20viewgate.version%3Dv1").await;
    v1.batch_execute(
        "CREATE TABLE IF NOT EXISTS customers (id serial PRIMARY KEY, email varchar(100) NOT NULL UNIQUE, name text NOT NULL)",
    )
    .await
    .unwrap();
    let v2 = connect_with(&proxy, "-c%20viewgate.version%3Dv2").await;
    v2.batch_execute(
        "CREATE TABLE IF NOT EXISTS clients (id serial PRIMARY KEY, email varchar(200) NOT NULL, CHECK (email <> ''))",
    )
    .await
    .unwrap();
    let error = v2
        .batch_execute("CREATE TABLE clients (id int)")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::DUPLICATE_TABLE), "{error:?}");
    assert_eq!(tables(), before, "nothing was made");
    let rows = v2.query("SELECT email FROM clients", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    drop((v1, v2));
    cut_over_and_complete(&proxy, "v2");
}

/// Maintenance and DDL on a table by the name a live `rename_table` gives it at the version
/// act on its base table, which has that name only from the complete: they failed with a bare
/// 42P01 (`VACUUM clients`, vacuumdb, reindexdb, `CREATE INDEX ON clients`; the operator-tools
/// walk; `LOCK` and `COMMENT ON TABLE` until later). What they made is there after the
/// complete, under the new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_by_a_live_renames_new_name_acts_on_the_base_table() {
    let proxy = proxy_with_spec(CUSTOMERS, CUSTOMERS_SPEC);
    start_migration(&proxy, "0002_customers.toml", RETYPE_AND_RENAME_TABLE, "v2");
    proxy.admin("CREATE ROLE auditor");
    let v2 = connect_with(&proxy, "-c%20viewgate.version%3Dv2").await;
    v2.batch_execute("VACUUM (ANALYZE) clients (id)")
        .await
        .unwrap();
    v2.batch_execute(
        "REINDEX TABLE clients;
         CREATE INDEX clients_by_id ON clients (id);
         GRANT SELECT ON TABLE clients TO auditor;
         CREATE TABLE invoices (id int PRIMARY KEY, client_id int REFERENCES clients (id));
         BEGIN; LOCK TABLE clients IN SHARE MODE; COMMIT;
         COMMENT ON TABLE clients IS 'who pays'",
    )
    .await
    .unwrap();
    let on_customers = "SELECT (SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = 'clients_by_id'::regclass),
                               has_table_privilege('auditor', 'customers', 'SELECT'),
                               (SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = 'invoices'::regclass AND contype = 'f'),
                               obj_description('customers'::regclass, 'pg_class')";
    assert_eq!(proxy.admin(on_customers), "customers|t|customers|who pays");
    for tool in ["vacuumdb", "reindexdb"] {
        let output = std::process::Command::new(proxy.cluster.bin(tool))
            .args(["-d", &proxy.conninfo(), "-t", "clients"])
            .env("PGOPTIONS", "-c viewgate.version=v2")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    drop(v2);
    cut_over_and_complete(&proxy, "v2");
    assert_eq!(
        proxy.admin(&on_customers.replace("'customers'", "'clients'")),
        "clients|t|clients|who pays"
    );
}

/// A `GRANT` on a managed table through the proxy reaches its base table and every live
/// version's view, so the role reads through the proxy at each version (before, it reached the
/// base table alone and the role read nothing: `permission denied for view customers_v1`, a
/// name it never wrote), and keeps reading after the complete; a `REVOKE` takes it from all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_through_the_proxy_lets_the_role_read_at_every_version() {
    let proxy = proxy_with_spec(CUSTOMERS, CUSTOMERS_SPEC);
    start_migration(&proxy, "0002_customers.toml", RETYPE_AND_RENAME_TABLE, "v2");
    proxy.admin("CREATE ROLE reporting LOGIN");
    let reporting_reads = |version: &str, table: &str| {
        let conninfo = format!(
            "host=127.0.0.1 port={} user=reporting dbname=postgres options='-c viewgate.version={version}'",
            proxy.port()
        );
        let sql = format!("SELECT count(*) FROM {table}");
        let output = proxy.psql(&conninfo).args(["-c", &sql]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        match output.status.success() {
            true => Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned()),
            false => Err(stderr),
        }
    };
    let v2 = connect_with(&proxy, "-c%20viewgate.version%3Dv2").await;
    v2.batch_execute("GRANT SELECT ON TABLE clients TO reporting")
        .await
        .unwrap();
    assert_eq!(reporting_reads("v1", "customers"), Ok("1".to_owned()));
    assert_eq!(reporting_reads("v2", "clients"), Ok("1".to_owned()));
    let v1 = connect_with(&proxy, "-c%20viewgate.version%3Dv1").await;
    v1.batch_execute("REVOKE SELECT ON customers FROM reporting")
        .await
        .unwrap();
    for (version, table) in [("v1", "customers"), ("v2", "clients")] {
        let refused = reporting_reads(version, table).unwrap_err();
        assert!(
            refused.contains("permission denied"),
            "{version}: {refused}"
        );
    }
    let privileged = "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
                       WHERE c.relnamespace = 'public'::regnamespace
                         AND has_table_privilege('reporting', c.oid, 'SELECT')";
    assert_eq!(proxy.admin(privileged), "");
    v1.batch_execute("GRANT SELECT ON customers TO reporting")
        .await
        .unwrap();
    assert_eq!(proxy.admin(privileged), "clients_v2,customers,customers_v1");
    drop((v1, v2));
    cut_over_and_complete(&proxy, "v2");
    assert_eq!(reporting_reads("v2", "clients"), Ok("1".to_owned()));
}
