//! Introspection while a migration replaces a key column: the new version sees its table as
//! it will be after the contract. `alter_column` of a key (integer → bigint, pgroll's headline
//! case) builds the key's index and every index over the column again on the replacement
//! (`_vg_<version>_<index>`), and foreign keys into it (`_vg_<version>_<constraint>`); the
//! contract gives them the old names and makes the key's index the key. Until then the new
//! version showed no primary key, the twins by their own names, and SQLAlchemy's automap
//! skipped the table. Through the proxy on a real Postgres, with psql and with SQLAlchemy's
//! reflection (`tests/drivers/python/reflect_keys.py`), compared stage by stage.

use crate::common;
use crate::deps;

use common::TestProxy;
use common::versions::{cut_over_and_complete, proxy_with_spec, psql, start_migration};
use viewgate::model::identifier::MIGRATION_NAME_PREFIX;
use viewgate::pg_cluster::SUPERUSER;

/// A serial key, a unique key and an index over the key column, and an unmanaged table
/// referencing the key.
const SCHEMA: &str =
    "CREATE TABLE accounts (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL);
CREATE INDEX accounts_name_id ON accounts (name, id);
INSERT INTO accounts (email, name) VALUES ('a@x', 'ada'), ('b@x', 'bob');
CREATE TABLE runs (id serial PRIMARY KEY, account_id integer REFERENCES accounts);
INSERT INTO runs (account_id) VALUES (1), (1), (2);";

const SPEC: &str = "[[tables]]\nname = \"accounts\"\n[[versions]]\nname = \"v1\"\n[[versions.tables]]\nbase = \"accounts\"\ncolumns = [\"id\", \"email\", \"name\"]\n";

/// v2 widens the key and retypes the unique column.
const RETYPE_KEYS: &str = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"alter_column\"\ntable = \"accounts\"\ncolumn = \"id\"\ntype = \"bigint\"\nup = \"id::bigint\"\ndown = \"id::integer\"\n[[operations]]\nop = \"alter_column\"\ntable = \"accounts\"\ncolumn = \"email\"\ntype = \"varchar(320)\"\n";

/// What psql's `\d` and the catalog queries ORMs make print of both tables. (PostgreSQL 18's
/// catalogued NOT NULL constraints are left out: a retyped column's is a check until the
/// contract, which pg_constraint does not present as one.)
const INTROSPECTION: &[&str] = &[
    "\\d accounts",
    "\\d runs",
    "SELECT conname, contype, pg_get_constraintdef(oid), (SELECT relname FROM pg_class WHERE oid = conindid) FROM pg_constraint WHERE conrelid IN ('accounts'::regclass, 'runs'::regclass) AND contype <> 'n' ORDER BY conname",
    "SELECT c.relname, i.indisprimary, i.indisunique, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'accounts'::regclass ORDER BY c.relname",
    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('accounts', 'runs') ORDER BY indexname",
    "SELECT constraint_name, constraint_type FROM information_schema.table_constraints WHERE table_name = 'accounts' AND constraint_type <> 'CHECK' ORDER BY constraint_name",
    "SELECT constraint_name, column_name, ordinal_position FROM information_schema.key_column_usage WHERE table_name = 'accounts' ORDER BY constraint_name",
    "SELECT constraint_name, unique_constraint_catalog, unique_constraint_schema, unique_constraint_name FROM information_schema.referential_constraints WHERE constraint_schema = 'public'",
    "SELECT constraint_name, table_name, column_name FROM information_schema.constraint_column_usage WHERE (constraint_name LIKE 'runs%' OR table_name = 'accounts') AND constraint_name NOT LIKE '%\\_not\\_null' ORDER BY 1, 2, 3",
    "SELECT column_name, column_default, is_identity FROM information_schema.columns WHERE table_name = 'accounts' ORDER BY ordinal_position",
    "SELECT a.attname, a.atthasdef, pg_get_expr(d.adbin, d.adrelid), pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) FROM pg_attribute a LEFT JOIN pg_attrdef d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum) WHERE a.attrelid = 'accounts'::regclass AND a.attnum > 0 ORDER BY a.attnum",
    "SELECT pg_get_serial_sequence('accounts', 'id')",
    "SELECT relname, indexrelname FROM pg_stat_user_indexes WHERE relname = 'accounts' ORDER BY 2",
    // pgAdmin's primary key and unique constraint nodes (index_constraint/sql/default/nodes.sql):
    // an index's constraint through pg_depend; during the migration the twins had none, and
    // pgAdmin showed no key (the pgAdmin walk).
    "SELECT cls.relname, con.conname, con.contype FROM pg_index idx JOIN pg_class cls ON cls.oid = idx.indexrelid
       LEFT JOIN pg_depend dep ON (dep.classid = cls.tableoid AND dep.objid = cls.oid AND dep.refobjsubid = '0'
                                   AND dep.refclassid = (SELECT oid FROM pg_class WHERE relname = 'pg_constraint'))
       LEFT JOIN pg_constraint con ON (con.tableoid = dep.refclassid AND con.oid = dep.refobjid)
      WHERE idx.indrelid = 'accounts'::regclass ORDER BY 1",
];

/// Each of `INTROSPECTION` through the proxy at `version`, printed with headers and footers.
fn introspect(proxy: &TestProxy, version: &str) -> Vec<String> {
    let conninfo = format!(
        "{} options='-c viewgate.version={version}'",
        proxy.conninfo()
    );
    INTROSPECTION
        .iter()
        .map(|sql| {
            common::run_ok(
                proxy
                    .psql(&conninfo)
                    .args(["-P", "tuples_only=off", "-c", sql]),
            )
        })
        .collect()
}

/// SQLAlchemy's reflection of both tables' keys at `version`, after its own checks.
fn reflect(proxy: &TestProxy, version: &str) -> Vec<String> {
    let stdout = deps::run_python(
        "reflect_keys.py",
        &[proxy.url(SUPERUSER, "postgres"), version.to_owned()],
    );
    deps::assert_checked(
        &stdout,
        &[
            &format!("{version} accounts has a primary key"),
            &format!("{version} automap maps both tables"),
        ],
    );
    stdout
        .lines()
        .filter(|line| line.starts_with("reflected "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_retyped_keys_new_version_reads_its_keys_as_after_the_contract() {
    let proxy = proxy_with_spec(SCHEMA, SPEC);
    let v1_before = introspect(&proxy, "v1");
    assert!(
        v1_before[0].contains("\"accounts_pkey\" PRIMARY KEY, btree (id)"),
        "{}",
        v1_before[0]
    );

    start_migration(&proxy, "0002_keys.toml", RETYPE_KEYS, "v2");
    assert_eq!(
        proxy.admin("SELECT count(*) FROM pg_indexes WHERE indexname LIKE '\\_vg\\_v2\\_%'"),
        "3",
        "the migration built the twins of the key, the unique key and the index"
    );

    // v1 reads as before; v2 as it will after the contract, no twin named.
    assert_eq!(introspect(&proxy, "v1"), v1_before);
    let v2_live = introspect(&proxy, "v2");
    let reflected_live = reflect(&proxy, "v2");
    for printed in v2_live.iter().chain(&reflected_live) {
        assert!(!printed.contains(MIGRATION_NAME_PREFIX), "{printed}");
    }
    assert!(
        v2_live[0].contains("\"accounts_pkey\" PRIMARY KEY, btree (id)")
            && v2_live[0].contains("\"accounts_email_key\" UNIQUE CONSTRAINT, btree (email)")
            && v2_live[0].contains("\"accounts_name_id\" btree (name, id)")
            && v2_live[0].contains("id|bigint||not null|nextval('accounts_id_seq'::regclass)"),
        "{}",
        v2_live[0]
    );
    assert!(
        v2_live[1]
            .contains("\"runs_account_id_fkey\" FOREIGN KEY (account_id) REFERENCES accounts(id)"),
        "{}",
        v2_live[1]
    );
    assert_eq!(reflect(&proxy, "v1").len(), reflected_live.len());
    // The key holds at v2 by its name, though a foreign key rebuilt into its twin uses the twin.
    assert_eq!(
        psql(
            &proxy,
            Some("v2"),
            "INSERT INTO accounts (id, email, name) VALUES (1, 'z@x', 'zed') ON CONFLICT ON CONSTRAINT accounts_pkey DO UPDATE SET name = excluded.name RETURNING email, name"
        ),
        Ok("a@x|zed".to_owned())
    );

    cut_over_and_complete(&proxy, "v2");
    assert_eq!(introspect(&proxy, "v2"), v2_live);
    assert_eq!(reflect(&proxy, "v2"), reflected_live);
}
