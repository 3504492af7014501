//! viewgate's own schemas at a version: the catalog's (`viewgate`) and every version's catalog
//! substitutes' (`viewgate_catalog_<version>`), which the `pg_namespace` substitute leaves out,
//! show nowhere else either: no function, type, relation, constraint, index, trigger, sequence
//! or statistics row of theirs, nor the catalog's event trigger, while the application's
//! objects all do, as in a database of the version's shape made by hand. Before, `pg_proc`
//! and `pg_type` listed some 280 objects of schemas `pg_namespace` did not have (pg_dump
//! stopped: "schema with OID … does not exist"), the statistics views the catalog's tables and
//! their indexes, and psql's `\dy` the catalog's event trigger.

use crate::common;

use common::versions::{proxy_with_spec, psql};

const SCHEMA: &str = "CREATE TYPE public.tier AS ENUM ('free', 'paid');
CREATE DOMAIN public.email_address AS text CHECK (VALUE LIKE '%@%');
CREATE TABLE public.accounts (
    account_id serial CONSTRAINT accounts_pkey PRIMARY KEY,
    email email_address NOT NULL,
    plan tier NOT NULL DEFAULT 'free',
    legacy_code text
);
CREATE INDEX accounts_email_idx ON public.accounts (email);
CREATE INDEX accounts_legacy_code_idx ON public.accounts (legacy_code);
CREATE SEQUENCE public.invoice_numbers;
CREATE TABLE public.notes (note_id serial PRIMARY KEY, body text, account_id int REFERENCES public.accounts);
CREATE FUNCTION public.note_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM public.notes';";

const SPEC: &str = r#"
[[tables]]
name = "accounts"

[[versions]]
name = "v1"
[[versions.tables]]
base = "accounts"
columns = ["account_id", "email", "plan", "legacy_code"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "accounts"
name = "clients"
columns = [{ name = "id", from = "account_id" }, "email", "plan"]
"#;

/// What v2's clients should see, made by hand: the same types, sequence, function and
/// unmanaged table, `clients` under v2's names with the indexes v2 sees (not the one on the
/// hidden `legacy_code`).
const HANDMADE_V2: &str = "CREATE TYPE public.tier AS ENUM ('free', 'paid');
CREATE DOMAIN public.email_address AS text CHECK (VALUE LIKE '%@%');
CREATE SEQUENCE public.accounts_account_id_seq;
CREATE TABLE public.clients (
    id integer NOT NULL DEFAULT nextval('accounts_account_id_seq') CONSTRAINT accounts_pkey PRIMARY KEY,
    email email_address NOT NULL,
    plan tier NOT NULL DEFAULT 'free'
);
CREATE INDEX accounts_email_idx ON public.clients (email);
CREATE SEQUENCE public.invoice_numbers;
CREATE TABLE public.notes (note_id serial PRIMARY KEY, body text, account_id int REFERENCES public.clients);
CREATE FUNCTION public.note_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM public.notes';";

/// Objects whose schema or relation the version's catalog does not have: none, as on any
/// Postgres.
const ORPHANS: &[(&str, &str)] = &[
    (
        "pg_proc",
        "SELECT count(*) FROM pg_proc WHERE pronamespace NOT IN (SELECT oid FROM pg_namespace)",
    ),
    (
        "pg_type",
        "SELECT count(*) FROM pg_type WHERE typnamespace NOT IN (SELECT oid FROM pg_namespace)",
    ),
    (
        "pg_class",
        "SELECT count(*) FROM pg_class WHERE relnamespace NOT IN (SELECT oid FROM pg_namespace)",
    ),
    (
        "pg_constraint",
        "SELECT count(*) FROM pg_constraint WHERE connamespace NOT IN (SELECT oid FROM pg_namespace)",
    ),
    (
        "pg_attribute",
        "SELECT count(*) FROM pg_attribute WHERE attrelid NOT IN (SELECT oid FROM pg_class)",
    ),
    (
        "pg_attrdef",
        "SELECT count(*) FROM pg_attrdef WHERE adrelid NOT IN (SELECT oid FROM pg_class)",
    ),
    (
        "pg_index",
        "SELECT count(*) FROM pg_index WHERE indexrelid NOT IN (SELECT oid FROM pg_class)",
    ),
    (
        "pg_trigger",
        "SELECT count(*) FROM pg_trigger WHERE tgrelid NOT IN (SELECT oid FROM pg_class)",
    ),
    (
        "pg_sequence",
        "SELECT count(*) FROM pg_sequence WHERE seqrelid NOT IN (SELECT oid FROM pg_class)",
    ),
    (
        "pg_description",
        "SELECT count(*) FROM pg_description WHERE classoid = 'pg_namespace'::regclass
            AND objoid NOT IN (SELECT oid FROM pg_namespace)",
    ),
    (
        "pg_stat_all_tables",
        "SELECT count(*) FROM pg_stat_all_tables WHERE relid NOT IN (SELECT oid FROM pg_class)",
    ),
    (
        "pg_statio_all_tables",
        "SELECT count(*) FROM pg_statio_all_tables WHERE relid NOT IN (SELECT oid FROM pg_class)",
    ),
    (
        "pg_stat_xact_all_tables",
        "SELECT count(*) FROM pg_stat_xact_all_tables WHERE relid NOT IN (SELECT oid FROM pg_class)",
    ),
    (
        "pg_stat_all_indexes",
        "SELECT count(*) FROM pg_stat_all_indexes WHERE indexrelid NOT IN (SELECT oid FROM pg_class)",
    ),
    (
        "pg_statio_all_sequences",
        "SELECT count(*) FROM pg_statio_all_sequences WHERE relid NOT IN (SELECT oid FROM pg_class)",
    ),
    (
        "pg_sequences",
        "SELECT count(*) FROM pg_sequences WHERE schemaname NOT IN (SELECT nspname FROM pg_namespace)",
    ),
    (
        "information_schema.routines",
        "SELECT count(*) FROM information_schema.routines
          WHERE specific_schema NOT IN (SELECT nspname FROM pg_namespace)",
    ),
    (
        "information_schema.parameters",
        "SELECT count(*) FROM information_schema.parameters
          WHERE specific_schema NOT IN (SELECT nspname FROM pg_namespace)",
    ),
    (
        "information_schema.sequences",
        "SELECT count(*) FROM information_schema.sequences
          WHERE sequence_schema NOT IN (SELECT nspname FROM pg_namespace)",
    ),
    (
        "information_schema.table_constraints",
        "SELECT count(*) FROM information_schema.table_constraints
          WHERE constraint_schema NOT IN (SELECT nspname FROM pg_namespace)",
    ),
    (
        "information_schema.check_constraints",
        "SELECT count(*) FROM information_schema.check_constraints
          WHERE constraint_schema NOT IN (SELECT nspname FROM pg_namespace)",
    ),
    (
        "information_schema.referential_constraints",
        "SELECT count(*) FROM information_schema.referential_constraints
          WHERE constraint_schema NOT IN (SELECT nspname FROM pg_namespace)",
    ),
];

/// The application's objects of kinds viewgate's schemas hold too, and the relations the
/// statistics views list, each as one line.
const LISTINGS: &[&str] = &[
    "SELECT string_agg(p.proname, ',' ORDER BY p.proname) FROM pg_proc p
       JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
    // Row types are left out: a view's keeps the view's name (docs/rewriting.md).
    "SELECT string_agg(t.typname, ',' ORDER BY t.typname) FROM pg_type t
       JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND t.typrelid = 0 AND t.typcategory <> 'A'",
    // Every function, the built-ins a foreign key's triggers run among them: hiding the
    // functions of the managed tables' triggers hid RI_FKey_noaction_del and its kin too (the
    // Java walk's getFunctions).
    "SELECT count(*) FROM pg_proc",
    "SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc WHERE proname LIKE 'RI\\_FKey\\_noaction%'",
    "SELECT string_agg(sequencename, ',' ORDER BY sequencename) FROM pg_sequences",
    "SELECT string_agg(sequence_name, ',' ORDER BY sequence_name) FROM information_schema.sequences",
    "SELECT string_agg(routine_name, ',' ORDER BY routine_name) FROM information_schema.routines
      WHERE routine_schema NOT IN ('pg_catalog', 'information_schema')",
    "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_stat_user_tables",
    "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_statio_user_tables",
    "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_stat_xact_user_tables",
    "SELECT string_agg(relname || '.' || indexrelname, ',' ORDER BY indexrelname) FROM pg_stat_user_indexes",
    "SELECT string_agg(relname || '.' || indexrelname, ',' ORDER BY indexrelname) FROM pg_statio_user_indexes",
    "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_statio_user_sequences",
    // psql's list of event triggers: viewgate's is its own, as its schema is.
    "\\dy",
    // pgAdmin's Types node (types/pg/sql/default/nodes.sql): a row type whose relation
    // pg_class lacks is listed, and the base table's and v1's view's were (the pgAdmin walk).
    "SELECT string_agg(t.typname, ',' ORDER BY t.typname) FROM pg_type t
       LEFT JOIN pg_class ct ON ct.oid = t.typrelid AND ct.relkind <> 'c'
      WHERE t.typtype <> 'd' AND t.typname NOT LIKE E'\\\\_%' AND t.typnamespace = 'public'::regnamespace
        AND ct.oid IS NULL",
];

#[test]
fn nothing_of_viewgates_own_schemas_shows_at_a_version() {
    let proxy = proxy_with_spec(SCHEMA, SPEC);
    proxy.admin("CREATE DATABASE handmade");
    proxy.cluster.psql("handmade", HANDMADE_V2).unwrap();
    let handmade = |sql: &str| proxy.cluster.psql("handmade", sql).unwrap();

    // There is something to hide: the server lists objects of each kind that v1's schemas or
    // relations are not.
    for (catalog, orphans) in ORPHANS {
        let against_v1 = orphans
            .replace(
                "FROM pg_namespace)",
                "FROM viewgate_catalog_v1.pg_namespace)",
            )
            .replace("FROM pg_class)", "FROM viewgate_catalog_v1.pg_class)");
        assert_ne!(proxy.admin(&against_v1), "0", "{catalog}");
    }
    assert_ne!(proxy.admin("SELECT count(*) FROM pg_event_trigger"), "0");

    for version in ["v1", "v2"] {
        for (catalog, orphans) in ORPHANS {
            assert_eq!(
                psql(&proxy, Some(version), orphans).unwrap(),
                "0",
                "{version}: {catalog}"
            );
        }
    }
    for listing in LISTINGS {
        assert_eq!(
            psql(&proxy, Some("v2"), listing).unwrap(),
            handmade(listing),
            "v2: {listing}"
        );
    }
    // v1 sees the base table's own name and all its indexes.
    assert_eq!(
        psql(
            &proxy,
            Some("v1"),
            "SELECT string_agg(relname || '.' || indexrelname, ',' ORDER BY indexrelname) FROM pg_stat_user_indexes"
        )
        .unwrap(),
        "accounts.accounts_email_idx,accounts.accounts_legacy_code_idx,accounts.accounts_pkey,notes.notes_pkey"
    );
    assert_eq!(
        psql(
            &proxy,
            Some("v1"),
            "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_stat_user_tables"
        )
        .unwrap(),
        "accounts,notes"
    );
    // The catalog's tables are still read by name, and a direct connection lists them.
    assert_ne!(
        psql(&proxy, Some("v2"), "SELECT count(*) FROM viewgate.versions").unwrap(),
        "0"
    );
    assert!(
        proxy
            .admin("SELECT string_agg(relname, ',') FROM pg_stat_user_tables")
            .contains("versions")
    );
}
