//! A relation's name the statement binds or builds, read where Postgres reads a relation
//! (`$1::regclass`, `(quote_ident($1) || '.' || quote_ident($2))::regclass` as TypeORM writes it,
//! `$1::regtype` as psycopg 3's `CompositeInfo` binds it, `to_regclass($1)`), names the
//! version's table, as a literal does: the version's columns, the version's name for a table it
//! renames, nothing for a name the version does not have. Before, a bound name reached the base
//! table, whose attributes the catalog substitutes hide. And a relation printed as text
//! (`x::regclass::text`, ActiveRecord's foreign keys) is printed by the version's name, where it
//! printed the view's; so is a result column `x::regclass AS name` (MikroORM's index
//! introspection, whose indexes matched no table), as text. Through the proxy on a real Postgres,
//! while a migration renames the table and after its contract.

use crate::common;
use crate::deps;

use common::TestProxy;
use common::versions::{connect_with, cut_over_and_complete, proxy_with_spec, start_migration};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use viewgate::pg_cluster::SUPERUSER;

const SCHEMA: &str =
    "CREATE TABLE accounts (id serial PRIMARY KEY, email text NOT NULL, name text NOT NULL);
INSERT INTO accounts (email, name) VALUES ('a@x', 'ada');
CREATE TABLE events (id serial PRIMARY KEY, what text, account_id integer REFERENCES accounts);";

const SPEC: &str = "[[tables]]\nname = \"accounts\"\n[[versions]]\nname = \"v1\"\n[[versions.tables]]\nbase = \"accounts\"\ncolumns = [\"id\", \"email\", \"name\"]\n";

/// v2 calls the table `clients` and adds a column.
const RENAME: &str = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"rename_table\"\nfrom = \"accounts\"\nto = \"clients\"\n[[operations]]\nop = \"add_column\"\ntable = \"clients\"\ncolumn = { name = \"tier\", type = \"text\" }\n";

const V1_COLUMNS: &str = "id,email,name";
const V2_COLUMNS: &str = "id,email,name,tier";

/// The relation's columns, found by `$1::regclass`.
const BY_BOUND_NAME: &str =
    "SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a
  WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped";
/// The same by a name built from a bound schema and table.
const BY_BUILT_NAME: &str = "SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a
  WHERE a.attrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass AND a.attnum > 0 AND NOT a.attisdropped";
/// The same qualified with the database, as TypeORM builds it from `information_schema`'s
/// `table_catalog` for `col_description`.
const BY_CATALOG_QUALIFIED_NAME: &str = "SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a
  WHERE a.attrelid = (quote_ident(current_database()) || '.' || quote_ident($1) || '.' || quote_ident($2))::regclass AND a.attnum > 0 AND NOT a.attisdropped";
/// ActiveRecord's `foreign_keys(table)`: the referenced table printed by `::regclass::text`.
const FOREIGN_KEYS_TO_TABLE: &str = "SELECT t2.oid::regclass::text AS to_table
  FROM pg_constraint c JOIN pg_class t1 ON c.conrelid = t1.oid JOIN pg_class t2 ON c.confrelid = t2.oid
 WHERE c.contype = 'f' AND t1.relname = $1";

/// MikroORM's index introspection (`getIndexes`), the relations named as it inlines them: each
/// index's table is the aliased `indrelid::regclass`.
fn mikro_indexes(table: &str) -> String {
    format!(
        "select indrelid::regclass as table_name, ns.nspname as schema_name, relname as constraint_name, idx.indisunique as unique, idx.indisprimary as primary, contype, condeferrable, condeferred, array( select pg_get_indexdef(idx.indexrelid, k + 1, true) from generate_subscripts(idx.indkey, 1) as k order by k ) as index_def, pg_get_indexdef(idx.indexrelid) as expression, c.condeferrable as deferrable, c.condeferred as initially_deferred from pg_index idx join pg_class as i on i.oid = idx.indexrelid join pg_namespace as ns on i.relnamespace = ns.oid left join pg_constraint as c on c.conname = i.relname where indrelid in ('\"public\".\"{table}\"'::regclass, '\"public\".\"events\"'::regclass) order by relname"
    )
}

/// A relation's oid as a regclass in a subquery, compared with a regclass: left a regclass.
const INDEXES_BY_SUBQUERY: &str = "SELECT string_agg(i.indexrelid::regclass::text, ',') AS indexes
  FROM pg_index i WHERE i.indrelid IN (SELECT c.oid::regclass AS r FROM pg_class c WHERE c.relname = $1)";
/// Both sides of a set operation, ordered by the column, which is text: by name.
const TABLES_BY_UNION: &str = "SELECT c.oid::regclass AS r FROM pg_class c WHERE c.relname = $1
 UNION ALL SELECT i.indrelid::regclass FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
  WHERE x.relname = 'events_pkey' ORDER BY r DESC";
/// Grouped by the cast the column prints: still grouped once the column is wrapped.
const GROUPED_BY_RELATION: &str = "SELECT c.oid::regclass AS r, count(*)::text AS n FROM pg_class c
  WHERE c.relname IN ($1, 'events') GROUP BY c.oid::regclass ORDER BY 1";
/// The row type's attributes, found by `$1::regtype`.
const BY_BOUND_TYPE: &str = "SELECT string_agg(a.attname, ',' ORDER BY a.attnum)
  FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid
  WHERE t.oid = $1::regtype AND a.attnum > 0 AND NOT a.attisdropped";

async fn query_one(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&str],
) -> Result<Option<String>, tokio_postgres::Error> {
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    Ok(client.query_one(sql, &params).await?.get(0))
}

/// What each way of binding a name finds at `version`: `table` has `columns`; `missing`, a
/// name the version has not, is none.
async fn names_resolve(
    proxy: &TestProxy,
    version: &str,
    table: &str,
    columns: &str,
    missing: &str,
) {
    let client = connect_with(proxy, &format!("-c%20viewgate.version%3D{version}")).await;
    let found = Some(columns.to_owned());
    assert_eq!(
        query_one(&client, BY_BOUND_NAME, &[table]).await.unwrap(),
        found,
        "{version}"
    );
    assert_eq!(
        query_one(&client, BY_BUILT_NAME, &["public", table])
            .await
            .unwrap(),
        found,
        "{version}"
    );
    assert_eq!(
        query_one(&client, BY_CATALOG_QUALIFIED_NAME, &["public", table])
            .await
            .unwrap(),
        found,
        "{version}"
    );
    assert_eq!(
        query_one(&client, BY_BOUND_TYPE, &[table]).await.unwrap(),
        found,
        "{version}"
    );
    let exists = "SELECT to_regclass($1)::oid::text";
    assert!(
        query_one(&client, exists, &[table])
            .await
            .unwrap()
            .is_some(),
        "{version}"
    );
    assert_eq!(
        query_one(&client, exists, &[missing]).await.unwrap(),
        None,
        "{version} {missing}"
    );
    for (sql, code) in [
        (BY_BOUND_NAME, SqlState::UNDEFINED_TABLE),
        (BY_BOUND_TYPE, SqlState::UNDEFINED_OBJECT),
    ] {
        let error = query_one(&client, sql, &[missing]).await.unwrap_err();
        assert_eq!(error.code(), Some(&code), "{version} {missing}: {error:?}");
        let message = error.as_db_error().unwrap().message().to_owned();
        assert!(
            message.contains(&format!("\"{missing}\" does not exist")),
            "{message}"
        );
    }
    // A relation printed as text is printed by the version's name, not its view's.
    assert_eq!(
        query_one(&client, FOREIGN_KEYS_TO_TABLE, &["events"])
            .await
            .unwrap(),
        Some(table.to_owned()),
        "{version}"
    );
    printed_relation_columns(&client, version, table).await;
    // Unmanaged relations, and oids, resolve as they always did.
    assert_eq!(
        query_one(&client, BY_BOUND_NAME, &["events"])
            .await
            .unwrap(),
        Some("id,what,account_id".to_owned())
    );
    let oid = "SELECT $1::regclass::text";
    let events_oid = query_one(&client, "SELECT 'events'::regclass::oid::text", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        query_one(&client, oid, &[&events_oid]).await.unwrap(),
        Some("events".to_owned())
    );
}

/// A result column `x::regclass AS name` prints the version's table's name (what Postgres prints
/// for a table by that name), as text; a subquery's is still a regclass, compared with one.
async fn printed_relation_columns(client: &tokio_postgres::Client, version: &str, table: &str) {
    let rows = client.query(&mikro_indexes(table), &[]).await.unwrap();
    assert_eq!(rows[0].columns()[0].type_(), &Type::TEXT, "{version}");
    let indexes: Vec<(String, String, bool)> = rows
        .iter()
        .map(|row| {
            (
                row.get("table_name"),
                row.get("constraint_name"),
                row.get("primary"),
            )
        })
        .collect();
    assert_eq!(
        indexes,
        [
            (table.to_owned(), "accounts_pkey".to_owned(), true),
            ("events".to_owned(), "events_pkey".to_owned(), true),
        ],
        "{version}"
    );
    assert_eq!(
        query_one(client, INDEXES_BY_SUBQUERY, &[table])
            .await
            .unwrap(),
        Some("accounts_pkey".to_owned()),
        "{version}"
    );
    let tables: Vec<String> = (client.query(TABLES_BY_UNION, &[&table]).await.unwrap())
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(tables, ["events", table], "{version}");
    let grouped: Vec<(String, String)> =
        (client.query(GROUPED_BY_RELATION, &[&table]).await.unwrap())
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
    let one = |name: &str| (name.to_owned(), "1".to_owned());
    assert_eq!(grouped, [one(table), one("events")], "{version}");
}

/// psycopg 3's `CompositeInfo` of `table` at `version`.
fn composite_info(proxy: &TestProxy, version: &str, table: &str, columns: &str) {
    let stdout = deps::run_python(
        "composite_info.py",
        &[
            proxy.url(SUPERUSER, "postgres"),
            version.to_owned(),
            table.to_owned(),
            columns.to_owned(),
        ],
    );
    deps::assert_checked(
        &stdout,
        &[
            &format!("{version} CompositeInfo finds {table}"),
            &format!("{version} {table}'s fields"),
            &format!("{version} a row of {table} has its row type"),
            &format!("{version} a row of {table} loads as its fields"),
        ],
    );
}

#[test]
fn a_bound_or_built_relation_name_names_the_versions_table() {
    let proxy = proxy_with_spec(SCHEMA, SPEC);
    start_migration(&proxy, "0002_clients.toml", RENAME, "v2");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Live: v1 calls the table accounts, v2 clients; neither has the other's name, and
        // v2 does not have v1's view either.
        names_resolve(&proxy, "v1", "accounts", V1_COLUMNS, "clients").await;
        names_resolve(&proxy, "v2", "clients", V2_COLUMNS, "accounts").await;
        names_resolve(&proxy, "v2", "clients", V2_COLUMNS, "accounts_v1").await;
    });
    composite_info(&proxy, "v1", "accounts", V1_COLUMNS);
    composite_info(&proxy, "v2", "clients", V2_COLUMNS);

    // After the contract the base table is called clients too.
    cut_over_and_complete(&proxy, "v2");
    runtime.block_on(names_resolve(
        &proxy, "v2", "clients", V2_COLUMNS, "accounts",
    ));
    composite_info(&proxy, "v2", "clients", V2_COLUMNS);
}
