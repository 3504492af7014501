//! CHECK constraints at a version: a managed table's CHECK whose every column the version sees
//! under the base column's own name reads as on a table of the version's shape (psql's `\d`
//! "Check constraints:", `pg_constraint` with `pg_get_constraintdef` as ActiveRecord's
//! `check_constraints` and schema dump read it, `information_schema.check_constraints` and
//! `table_constraints`); one on a column the version does not see, or sees renamed (its clause
//! would print the base name), is not there. Before, none was: a schema dumped through the
//! proxy lost them, and an ORM that syncs its declared checks would add them again.

use crate::common;

use common::TestProxy;
use common::versions::{proxy_with_spec, psql};

const SCHEMA: &str = "CREATE TABLE public.items (
    id serial PRIMARY KEY,
    secret text CONSTRAINT items_secret_check CHECK (secret <> 'x'),
    price numeric NOT NULL CONSTRAINT items_price_check CHECK (price >= 0),
    qty integer CONSTRAINT items_qty_check CHECK (qty > 0),
    label text CONSTRAINT items_label_check CHECK (label <> ''),
    CONSTRAINT items_qty_price_check CHECK (qty IS NULL OR price < 1000 * qty)
);";

/// v1 does not see `secret`; v2 calls `label` `title`.
const SPEC: &str = r#"
[[tables]]
name = "items"

[[versions]]
name = "v1"
[[versions.tables]]
base = "items"
columns = ["id", "price", "qty", "label"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "items"
columns = ["id", "secret", "price", "qty", { name = "title", from = "label" }]
"#;

/// The tables each version shows, made by hand with the checks a table of that shape has.
const HANDMADE_V1: &str = "CREATE TABLE public.items (
    id serial PRIMARY KEY,
    price numeric NOT NULL CONSTRAINT items_price_check CHECK (price >= 0),
    qty integer CONSTRAINT items_qty_check CHECK (qty > 0),
    label text CONSTRAINT items_label_check CHECK (label <> ''),
    CONSTRAINT items_qty_price_check CHECK (qty IS NULL OR price < 1000 * qty)
);";
const HANDMADE_V2: &str = "CREATE TABLE public.items (
    id serial PRIMARY KEY,
    secret text CONSTRAINT items_secret_check CHECK (secret <> 'x'),
    price numeric NOT NULL CONSTRAINT items_price_check CHECK (price >= 0),
    qty integer CONSTRAINT items_qty_check CHECK (qty > 0),
    title text,
    CONSTRAINT items_qty_price_check CHECK (qty IS NULL OR price < 1000 * qty)
);";

/// What ActiveRecord's `check_constraints` reads, and the same by `information_schema`.
const CHECK_QUERIES: &[&str] = &[
    "SELECT conname, pg_get_constraintdef(c.oid, true), c.convalidated
       FROM pg_constraint c JOIN pg_class t ON c.conrelid = t.oid
      WHERE c.contype = 'c' AND t.relname = 'items' ORDER BY conname",
    "SELECT c.constraint_name, c.check_clause
       FROM information_schema.check_constraints c
       JOIN information_schema.table_constraints t USING (constraint_schema, constraint_name)
      WHERE t.table_name = 'items' AND t.constraint_type = 'CHECK'
        AND c.check_clause NOT LIKE '% IS NOT NULL' ORDER BY 1",
    "SELECT constraint_name, column_name FROM information_schema.constraint_column_usage
      WHERE table_name = 'items' AND constraint_name LIKE '%check' ORDER BY 1, 2",
];

/// psql's `\d items` from its "Check constraints:" footer on, over `conninfo`.
fn check_footer(proxy: &TestProxy, conninfo: &str) -> String {
    let described =
        common::run_ok(
            proxy
                .psql(conninfo)
                .args(["-P", "tuples_only=off", "-c", "\\d items"]),
        );
    described
        .split("Check constraints:")
        .nth(1)
        .map(|footer| footer.trim_end().to_owned())
        .unwrap_or_default()
}

#[test]
fn a_check_on_columns_the_version_sees_by_their_names_is_the_versions() {
    let proxy = proxy_with_spec(SCHEMA, SPEC);
    for (version, handmade) in [("v1", HANDMADE_V1), ("v2", HANDMADE_V2)] {
        let database = format!("handmade_{version}");
        proxy.admin(&format!("CREATE DATABASE {database}"));
        proxy.cluster.psql(&database, handmade).unwrap();
        let by_hand = |sql: &str| proxy.cluster.psql(&database, sql).unwrap();
        for sql in CHECK_QUERIES {
            assert_eq!(
                psql(&proxy, Some(version), sql).unwrap(),
                by_hand(sql),
                "{version}: {sql}"
            );
        }
        let conninfo = format!(
            "{} options='-c viewgate.version={version}'",
            proxy.conninfo()
        );
        let footer = check_footer(&proxy, &conninfo);
        assert_eq!(
            footer,
            check_footer(&proxy, &proxy.cluster.admin_conninfo(&database)),
            "{version}"
        );
        assert!(footer.contains("items_price_check"), "{version}: {footer}");
    }
    // Only v2 sees `secret`, and v2 calls `label` otherwise: its check is not v2's.
    let names = "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'c' AND conrelid = 'items'::regclass";
    assert_eq!(
        psql(&proxy, Some("v1"), names).unwrap(),
        "items_label_check,items_price_check,items_qty_check,items_qty_price_check"
    );
    assert_eq!(
        psql(&proxy, Some("v2"), names).unwrap(),
        "items_price_check,items_qty_check,items_qty_price_check,items_secret_check"
    );
    // The stored clause numbers the base table's columns: read with the version's table where
    // its numbers are the base's (v2), NULL where they are not (v1 does not see `secret`).
    let stored = "SELECT coalesce(pg_get_expr(conbin, conrelid), '-') FROM pg_constraint WHERE conname = 'items_qty_check'";
    assert_eq!(psql(&proxy, Some("v2"), stored).unwrap(), "(qty > 0)");
    assert_eq!(psql(&proxy, Some("v1"), stored).unwrap(), "-");
}
