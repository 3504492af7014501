//! The contract names every table as its earlier steps leave it: a migration that renames a
//! table and retypes a key a foreign key points into completes. The foreign key rebuilt into
//! the new column (`_vg_<version>_<constraint>`, on the referencing table) takes its old name
//! after the contract's renames, under the name its table has by then; so do the retyped
//! key's own steps on a renamed table, and a table's foreign key into itself. Found by a
//! real application's walk: `migrate complete` always failed with 42P01 on the old name.
//! A foreign key whose both ends are retyped (`orders.id` and `order_items.order_id` to
//! `bigint`; `parent_id` and `id` of one table; one column of each end of a composite key) is
//! rebuilt once, from the new column into the new key, enforced at both versions while live,
//! and given back its name by the contract; a rollback leaves the schema as it was. Each
//! rebuilt index's columns are named by the contract as the same index made by hand names
//! them (found by two application walks: `_vg_v2_id` stayed in `\d orders_pkey` for good).
//! Against a real Postgres, migrations run in-process.

use crate::migration_support;
use crate::support;

use migration_support::{at, complete_now, contract_sql, planned, rollback_now, start_text};
use support::{Database, exec, lines};

/// `orders` keyed by an `integer` serial (with a foreign key into itself) and `order_items`
/// referencing it, three orders of two items each, both at v1.
async fn orders_and_items() -> Database {
    let database = Database::start();
    database.admin(
        "CREATE TABLE orders (id serial PRIMARY KEY,
                              parent_id integer REFERENCES orders (id),
                              customer text NOT NULL);
         CREATE TABLE order_items (id serial PRIMARY KEY,
                                   order_id integer NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
                                   sku text NOT NULL);
         INSERT INTO orders (customer) SELECT 'customer-' || n FROM generate_series(1, 3) AS n;
         INSERT INTO order_items (order_id, sku)
              SELECT o, 'sku-' || o || '-' || i FROM generate_series(1, 3) AS o, generate_series(1, 2) AS i;",
    );
    database
        .apply_text(
            r#"
[[tables]]
name = "orders"
key = ["id"]
[[tables]]
name = "order_items"
key = ["id"]

[[versions]]
name = "v1"
[[versions.tables]]
base = "orders"
columns = ["id", "parent_id", "customer"]
[[versions.tables]]
base = "order_items"
columns = ["id", "order_id", "sku"]
"#,
        )
        .await;
    database
}

/// Each of `table`'s foreign keys: name, definition, whether validated.
fn foreign_keys(database: &Database, table: &str) -> String {
    database.admin(&format!(
        "SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid) || ' valid=' || convalidated,
                           E'\\n' ORDER BY conname)
           FROM pg_constraint WHERE conrelid = 'public.{table}'::regclass AND contype = 'f'"
    ))
}

/// The type of `table`.`column`, and the name and definition of `table`'s primary key.
fn key(database: &Database, table: &str, column: &str) -> String {
    database.admin(&format!(
        "SELECT format_type(a.atttypid, a.atttypmod) || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
           FROM pg_attribute a JOIN pg_constraint k ON k.conrelid = a.attrelid AND k.contype = 'p'
          WHERE a.attrelid = 'public.{table}'::regclass AND a.attname = '{column}'"
    ))
}

/// What covers `table`'s key and what its key column carries: indexes (replica identity,
/// clustering), constraints, extended statistics, the column's comment, its sequence's type.
fn covering(database: &Database, table: &str) -> String {
    database.admin(&format!(
        "WITH t AS (SELECT 'public.{table}'::regclass AS oid)
         SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
           SELECT pg_get_indexdef(i.indexrelid) || ' ri=' || i.indisreplident
                  || ' clustered=' || i.indisclustered AS x
             FROM pg_index i, t WHERE i.indrelid = t.oid
           UNION ALL
           SELECT conname || ' ' || pg_get_constraintdef(k.oid) || ' valid=' || convalidated
             FROM pg_constraint k, t WHERE k.conrelid = t.oid
           UNION ALL
           SELECT 'statistics ' || stxname || ' ' || pg_get_statisticsobjdef_columns(s.oid)
             FROM pg_statistic_ext s, t WHERE s.stxrelid = t.oid
           UNION ALL
           SELECT 'comment ' || col_description(t.oid, a.attnum) || ', sequence '
                  || pg_get_serial_sequence(t.oid::text, 'id') || ' of '
                  || (SELECT seqtypid::regtype::text FROM pg_sequence
                       WHERE seqrelid = pg_get_serial_sequence(t.oid::text, 'id')::regclass)
             FROM pg_attribute a, t WHERE a.attrelid = t.oid AND a.attname = 'id') f"
    ))
}

/// Checks, in the contract `migrate plan` shows for `text`, that no step after the one
/// renaming each of `renamed` (old names) names that table by its old name. The contract's
/// steps only: the rollback's, printed after them, run instead of the contract, on the old
/// names (`DROP CONSTRAINT IF EXISTS` of a rebuilt key on `order_items` rightly names it so).
async fn assert_plan_follows_renames(database: &Database, text: &str, renamed: &[&str]) {
    let report = planned(database, text).await;
    for table in renamed {
        let old = format!("\"public\".\"{table}\"");
        let steps = &report.plan.complete;
        let renaming = steps
            .iter()
            .position(|step| {
                step.sql
                    .starts_with(&format!("ALTER TABLE {old} RENAME TO "))
            })
            .unwrap_or_else(|| panic!("the contract renames {table}: {steps:#?}"));
        let stale: Vec<_> = steps[renaming + 1..]
            .iter()
            .filter(|step| step.sql.contains(&old))
            .collect();
        assert!(
            stale.is_empty(),
            "after renaming {table} the contract still names it so: {stale:#?}"
        );
    }
}

const RENAME_ITEMS_RETYPE_ORDERS: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "rename_table"
from = "order_items"
to = "line_items"
[[operations]]
op = "alter_column"
table = "orders"
column = "id"
type = "bigint"
up = "id::bigint"
down = "id::integer"
"#;

/// The walk's migration: the referencing table renamed, the key it references retyped. The
/// contract renamed `order_items` first and then gave the rebuilt foreign key its old name on
/// `order_items`, which no longer existed (42P01), every time.
#[tokio::test]
async fn a_renamed_table_keeps_its_foreign_key_into_a_retyped_key() {
    let database = orders_and_items().await;
    let before = foreign_keys(&database, "order_items");
    assert_plan_follows_renames(&database, RENAME_ITEMS_RETYPE_ORDERS, &["order_items"]).await;

    start_text(&database, "0002.toml", RENAME_ITEMS_RETYPE_ORDERS)
        .await
        .expect("starts");
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(&v1, "INSERT INTO orders_v1 (customer) VALUES ('via v1')").await;
    exec(
        &v1,
        "INSERT INTO order_items_v1 (order_id, sku) VALUES (4, 'sku-v1')",
    )
    .await;
    exec(&v2, "INSERT INTO orders_v2 (customer) VALUES ('via v2')").await;
    exec(
        &v2,
        "INSERT INTO line_items_v2 (order_id, sku) VALUES (5, 'sku-v2')",
    )
    .await;
    for (client, sql) in [
        (
            &v1,
            "INSERT INTO order_items_v1 (order_id, sku) VALUES (99, 'x')",
        ),
        (
            &v2,
            "INSERT INTO line_items_v2 (order_id, sku) VALUES (99, 'x')",
        ),
    ] {
        let orphan = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            orphan.code().map(|code| code.code()),
            Some("23503"),
            "{sql}"
        );
    }
    assert_eq!(
        lines(
            &v1,
            "SELECT order_id || ':' || sku FROM order_items_v1 WHERE id > 6 ORDER BY id"
        )
        .await,
        ["4:sku-v1", "5:sku-v2"],
        "each version reads the other's rows"
    );

    complete_now(&database)
        .await
        .expect("completes: the rebuilt foreign key is renamed on line_items");
    assert_eq!(
        database.admin("SELECT to_regclass('public.order_items') IS NULL"),
        "t"
    );
    assert_eq!(
        foreign_keys(&database, "line_items"),
        before,
        "the foreign key has its old name and reads as before, into the bigint key"
    );
    assert_eq!(
        key(&database, "orders", "id"),
        "bigint orders_pkey PRIMARY KEY (id)"
    );
    exec(&v2, "DELETE FROM orders_v2 WHERE id = 5").await;
    assert_eq!(
        lines(&v2, "SELECT count(*) FROM line_items_v2 WHERE order_id = 5").await,
        ["0"],
        "the delete cascades through the key"
    );
    let orphan = v2
        .batch_execute("INSERT INTO line_items_v2 (order_id, sku) VALUES (99, 'x')")
        .await
        .unwrap_err();
    assert_eq!(orphan.code().map(|code| code.code()), Some("23503"));
}

const RETYPE_ORDERS_RENAME_BOTH: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "orders"
column = "id"
type = "bigint"
up = "id::bigint"
down = "id::integer"
[[operations]]
op = "rename_table"
from = "orders"
to = "purchases"
[[operations]]
op = "rename_table"
from = "order_items"
to = "line_items"
"#;

/// The referenced table renamed too, after its key is retyped: its key, its foreign key into
/// itself, the other table's into it, its check, index, replica identity, clustering,
/// statistics, comment and sequence over the key are given back under the tables' new names.
#[tokio::test]
async fn a_retyped_key_of_a_renamed_table_keeps_what_covers_it() {
    let database = orders_and_items().await;
    database.admin(
        "ALTER TABLE orders ADD CONSTRAINT orders_id_positive CHECK (id > 0);
         CREATE INDEX orders_id_customer ON orders (id, customer);
         ALTER TABLE orders REPLICA IDENTITY USING INDEX orders_pkey;
         ALTER TABLE orders CLUSTER ON orders_id_customer;
         CREATE STATISTICS orders_id_customer_stats ON id, customer FROM orders;
         COMMENT ON COLUMN orders.id IS 'the order number';",
    );
    let items_before = foreign_keys(&database, "order_items");
    let orders_before = covering(&database, "orders");
    assert_plan_follows_renames(
        &database,
        RETYPE_ORDERS_RENAME_BOTH,
        &["orders", "order_items"],
    )
    .await;

    start_text(&database, "0002.toml", RETYPE_ORDERS_RENAME_BOTH)
        .await
        .expect("starts");
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(
        &v1,
        "INSERT INTO orders_v1 (parent_id, customer) VALUES (1, 'via v1')",
    )
    .await;
    exec(
        &v2,
        "INSERT INTO purchases_v2 (parent_id, customer) VALUES (4, 'via v2')",
    )
    .await;
    exec(
        &v2,
        "INSERT INTO line_items_v2 (order_id, sku) VALUES (5, 'sku-v2')",
    )
    .await;
    exec(
        &v1,
        "INSERT INTO order_items_v1 (order_id, sku) VALUES (4, 'sku-v1')",
    )
    .await;
    let orphan = v2
        .batch_execute("INSERT INTO purchases_v2 (parent_id, customer) VALUES (99, 'x')")
        .await
        .unwrap_err();
    assert_eq!(orphan.code().map(|code| code.code()), Some("23503"));

    complete_now(&database)
        .await
        .expect("completes: each rebuilt key is renamed on its renamed table");
    assert_eq!(
        database.admin(
            "SELECT to_regclass('public.orders') IS NULL AND to_regclass('public.order_items') IS NULL"
        ),
        "t"
    );
    assert_eq!(
        foreign_keys(&database, "line_items"),
        items_before.replace("REFERENCES orders(", "REFERENCES purchases("),
    );
    assert_eq!(
        covering(&database, "purchases"),
        orders_before
            .replace("REFERENCES orders(", "REFERENCES purchases(")
            .replace(" ON public.orders ", " ON public.purchases ")
            .replace("orders_id_seq of integer", "orders_id_seq of bigint")
            // Postgres lists a statistics object's columns by number: the new id is last.
            .replace("_stats id, customer", "_stats customer, id"),
        "the same, the foreign key into itself too, the sequence widened"
    );
    assert_eq!(
        key(&database, "purchases", "id"),
        "bigint orders_pkey PRIMARY KEY (id)"
    );
    assert_eq!(
        lines(
            &v2,
            "SELECT p.customer || ':' || coalesce(p.parent_id::text, '-') || ':' || count(l.id)
               FROM purchases_v2 p LEFT JOIN line_items_v2 l ON l.order_id = p.id
              GROUP BY p.id, p.customer, p.parent_id ORDER BY p.id"
        )
        .await,
        [
            "customer-1:-:2",
            "customer-2:-:2",
            "customer-3:-:2",
            "via v1:1:1",
            "via v2:4:1"
        ]
    );
    let orphan = v2
        .batch_execute("INSERT INTO line_items_v2 (order_id, sku) VALUES (99, 'x')")
        .await
        .unwrap_err();
    assert_eq!(orphan.code().map(|code| code.code()), Some("23503"));
}

const RETYPE_ORDERS: &str = r#"
[[operations]]
op = "alter_column"
table = "orders"
column = "id"
type = "bigint"
up = "id::bigint"
down = "id::integer"
"#;

/// A foreign key into the retyped key that the migration drops (by `drop_constraint`, with
/// its column, with its table) is not rebuilt, and goes before the old key column whichever
/// operation comes first: the contract gave its twin the old name after the drop had taken it
/// (42704, 42P01), or dropped the old key column while the foreign key still held its index
/// (2BP01).
#[tokio::test]
async fn a_foreign_key_the_migration_drops_goes_before_the_key_it_references() {
    let drops = [
        (
            "drop_constraint",
            "[[operations]]\nop = \"drop_constraint\"\ntable = \"order_items\"\nname = \"order_items_order_id_fkey\"\n",
            true,
        ),
        (
            "drop_column",
            "[[operations]]\nop = \"drop_column\"\ntable = \"order_items\"\ncolumn = \"order_id\"\ndown = \"1\"\n",
            true,
        ),
        (
            "drop_table",
            "[[operations]]\nop = \"drop_table\"\ntable = \"order_items\"\n",
            false,
        ),
    ];
    for (op, drop, table_stays) in drops {
        for retype_first in [true, false] {
            let database = orders_and_items().await;
            let operations = if retype_first {
                format!("{RETYPE_ORDERS}{drop}")
            } else {
                format!("{drop}{RETYPE_ORDERS}")
            };
            let text = format!("version = \"v2\"\nfrom = \"v1\"\n{operations}");
            start_text(&database, "0002.toml", &text)
                .await
                .unwrap_or_else(|error| panic!("{op}, retype first {retype_first}: {error}"));
            let v2 = at(&database, "v2").await;
            exec(&v2, "INSERT INTO orders_v2 (customer) VALUES ('via v2')").await;
            complete_now(&database)
                .await
                .unwrap_or_else(|error| panic!("{op}, retype first {retype_first}: {error}"));
            assert_eq!(
                database.admin(
                    "SELECT to_regclass('public.order_items') IS NOT NULL || ' ' || count(k.oid)
                       FROM (SELECT 1) one LEFT JOIN pg_constraint k
                         ON k.contype = 'f' AND k.conrelid = to_regclass('public.order_items')"
                ),
                format!("{table_stays} 0"),
                "{op}, retype first {retype_first}: the foreign key went, no twin was left"
            );
            assert_eq!(
                key(&database, "orders", "id"),
                "bigint orders_pkey PRIMARY KEY (id)",
                "{op}, retype first {retype_first}"
            );
        }
    }
}

/// A `rename_constraint` of a foreign key into a replaced column is refused before any
/// change: the contract drops that key before its steps and gives the rebuilt one its name
/// after them, and the rename between found no constraint (42704), every time.
#[tokio::test]
async fn renaming_a_foreign_key_into_a_retyped_key_is_refused_before_any_change() {
    let database = orders_and_items().await;
    let text = format!(
        "version = \"v2\"\nfrom = \"v1\"\n{RETYPE_ORDERS}[[operations]]\nop = \"rename_constraint\"\ntable = \"order_items\"\nfrom = \"order_items_order_id_fkey\"\nto = \"items_to_orders\"\n"
    );
    let refused = start_text(&database, "0002.toml", &text)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(
            "table public.order_items: foreign key order_items_order_id_fkey references column public.orders.id: the migration replaces public.orders.id"
        ),
        "{refused}"
    );
    assert_eq!(
        database.admin(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.orders'::regclass AND attname LIKE '\\_vg\\_%'"
        ),
        "0",
        "nothing was changed"
    );
}

/// `orders.id` and `order_items.order_id` both retyped, in the order given: pgroll's
/// headline migration, every key moved to `bigint`.
fn retype_both_ends(orders_first: bool) -> String {
    let orders = "[[operations]]\nop = \"alter_column\"\ntable = \"orders\"\ncolumn = \"id\"\ntype = \"bigint\"\nup = \"id::bigint\"\ndown = \"id::integer\"\n";
    let items = "[[operations]]\nop = \"alter_column\"\ntable = \"order_items\"\ncolumn = \"order_id\"\ntype = \"bigint\"\nup = \"order_id::bigint\"\ndown = \"order_id::integer\"\n";
    let (first, second) = if orders_first {
        (orders, items)
    } else {
        (items, orders)
    };
    format!("version = \"v2\"\nfrom = \"v1\"\n{first}{second}")
}

/// Every foreign key of the database: table, name, definition, whether validated.
fn all_foreign_keys(database: &Database) -> String {
    database.admin(
        "SELECT string_agg(conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
                           || ' valid=' || convalidated, E'\\n' ORDER BY conrelid::regclass::text, conname)
           FROM pg_constraint WHERE contype = 'f'",
    )
}

/// What the application's schema is made of: each column of the public tables (type, NOT
/// NULL, default), each constraint, index and trigger of theirs, and each sequence's type.
fn schema(database: &Database) -> String {
    database.admin(
        "WITH t AS (SELECT c.oid FROM pg_class c
                     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p'))
         SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
           SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' '
                  || format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
                  || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') AS x
             FROM pg_attribute a JOIN t ON t.oid = a.attrelid
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attnum > 0 AND NOT a.attisdropped
           UNION ALL
           SELECT 'constraint ' || k.conrelid::regclass || ' ' || k.conname || ' '
                  || pg_get_constraintdef(k.oid) || ' valid=' || k.convalidated
             FROM pg_constraint k JOIN t ON t.oid = k.conrelid
           UNION ALL
           SELECT 'index ' || pg_get_indexdef(i.indexrelid) || ' valid=' || i.indisvalid
             FROM pg_index i JOIN t ON t.oid = i.indrelid
           UNION ALL
           SELECT 'trigger ' || g.tgrelid::regclass || ' ' || g.tgname
             FROM pg_trigger g JOIN t ON t.oid = g.tgrelid WHERE NOT g.tgisinternal
           UNION ALL
           SELECT 'sequence ' || seqrelid::regclass || ' ' || seqtypid::regtype FROM pg_sequence) s",
    )
}

/// The names of the public schema's relations, constraints, and tables' and indexes' columns
/// that are the migration's own (`_vg_…`): none once it is completed or rolled back (an
/// index's columns are named after the table's when it is built, and a rebuilt index's were
/// the new column's until the contract renamed them too).
fn migration_names(database: &Database) -> String {
    database.admin(
        "SELECT coalesce(string_agg(n, ', ' ORDER BY n), '') FROM (
           SELECT relname::text AS n FROM pg_class
            WHERE relnamespace = 'public'::regnamespace AND relname LIKE '\\_vg\\_%'
           UNION ALL
           SELECT conname::text FROM pg_constraint
            WHERE connamespace = 'public'::regnamespace AND conname LIKE '\\_vg\\_%'
           UNION ALL
           SELECT attrelid::regclass || '.' || attname FROM pg_attribute
            WHERE attrelid IN (SELECT oid FROM pg_class
                                WHERE relnamespace = 'public'::regnamespace
                                  AND relkind IN ('r', 'p', 'i', 'I'))
              AND attname LIKE '\\_vg\\_%' AND NOT attisdropped) names",
    )
}

/// Whether `sql`, run by `client`, is refused as a foreign key violation (23503).
async fn assert_orphan_refused(client: &tokio_postgres::Client, sql: &str) {
    let refused = client.batch_execute(sql).await.unwrap_err();
    assert_eq!(
        refused.code().map(|code| code.code()),
        Some("23503"),
        "{sql}: {refused}"
    );
}

/// Both ends of a foreign key retyped by one migration. Each end's rebuild made its own
/// `_vg_v2_order_items_order_id_fkey` (the new column into the old key in the expand; the old
/// column into the new key once the key's index was built, after dropping the first by the
/// name they shared), so the start went through with a twin from the old column, and every
/// `migrate complete` was refused: "… covers column order_id … was made after the migration
/// started". Now one key is rebuilt, from the new column into the new key, validated before
/// v2 goes live, and it takes the old one's name at complete.
#[tokio::test]
async fn a_foreign_key_whose_both_ends_are_retyped_completes() {
    let database = orders_and_items().await;
    let before = foreign_keys(&database, "order_items");
    start_text(&database, "0002.toml", &retype_both_ends(false))
        .await
        .expect("starts");
    assert_eq!(
        foreign_keys(&database, "order_items"),
        "_vg_v2_order_items_order_id_fkey FOREIGN KEY (_vg_v2_order_id) REFERENCES orders(_vg_v2_id) ON DELETE CASCADE valid=true\n\
         order_items_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders(id) ON DELETE CASCADE valid=true",
        "one twin, from the new column into the new key, validated"
    );
    for version in ["v1", "v2"] {
        assert_eq!(
            database.admin(&format!(
                "SELECT string_agg(mk.shown_name || ' ' || k.conname, ', ')
                   FROM viewgate_catalog_{version}.managed_constraints mk
                   JOIN pg_constraint k ON k.oid = mk.oid
                  WHERE k.contype = 'f' AND k.conrelid = 'public.order_items'::regclass"
            )),
            if version == "v1" {
                "order_items_order_id_fkey order_items_order_id_fkey"
            } else {
                "order_items_order_id_fkey _vg_v2_order_items_order_id_fkey"
            },
            "{version}'s catalog shows the one key over the columns it sees, by the old name"
        );
    }
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(&v1, "INSERT INTO orders_v1 (customer) VALUES ('via v1')").await;
    exec(&v2, "INSERT INTO orders_v2 (customer) VALUES ('via v2')").await;
    exec(
        &v1,
        "INSERT INTO order_items_v1 (order_id, sku) VALUES (5, 'sku-v1')",
    )
    .await;
    exec(
        &v2,
        "INSERT INTO order_items_v2 (order_id, sku) VALUES (4, 'sku-v2')",
    )
    .await;
    exec(&v2, "UPDATE order_items_v2 SET order_id = 5 WHERE id = 1").await;
    assert_orphan_refused(
        &v1,
        "INSERT INTO order_items_v1 (order_id, sku) VALUES (99, 'x')",
    )
    .await;
    assert_orphan_refused(
        &v2,
        "INSERT INTO order_items_v2 (order_id, sku) VALUES (99, 'x')",
    )
    .await;
    assert_orphan_refused(&v2, "UPDATE order_items_v2 SET order_id = 98 WHERE id = 2").await;
    assert_eq!(
        lines(
            &v1,
            "SELECT id || ':' || order_id FROM order_items_v1 WHERE id IN (1, 7, 8) ORDER BY id"
        )
        .await,
        ["1:5", "7:5", "8:4"],
        "each version reads the other's rows"
    );

    complete_now(&database)
        .await
        .expect("completes: the one twin takes the old name");
    assert_eq!(
        foreign_keys(&database, "order_items"),
        before,
        "validated, into orders(id), as before"
    );
    assert_eq!(
        key(&database, "orders", "id"),
        "bigint orders_pkey PRIMARY KEY (id)"
    );
    assert_eq!(
        database.admin(
            "SELECT format_type(atttypid, atttypmod) || ' notnull=' || attnotnull FROM pg_attribute
              WHERE attrelid = 'public.order_items'::regclass AND attname = 'order_id'"
        ),
        "bigint notnull=true"
    );
    assert_eq!(
        migration_names(&database),
        "",
        "nothing of the migration's is left"
    );
    assert_orphan_refused(
        &v2,
        "INSERT INTO order_items_v2 (order_id, sku) VALUES (99, 'x')",
    )
    .await;
    exec(&v2, "DELETE FROM orders_v2 WHERE id = 5").await;
    assert_eq!(
        lines(
            &v2,
            "SELECT count(*) FROM order_items_v2 WHERE order_id = 5"
        )
        .await,
        ["0"],
        "the delete cascades through the key"
    );
}

/// The same migration, the key first in the file, rolled back: the schema is as it was. The
/// referencing column retyped to a type the new key is not known to serve is refused before
/// any change, as a referencing column of that type was.
#[tokio::test]
async fn a_rollback_of_both_ends_leaves_the_schema_as_it_was() {
    let database = orders_and_items().await;
    let before = schema(&database);
    let keys = all_foreign_keys(&database);
    let refused = start_text(
        &database,
        "0002.toml",
        &retype_both_ends(true).replace(
            "type = \"bigint\"\nup = \"order_id::bigint\"",
            "type = \"numeric\"\nup = \"order_id::numeric\"",
        ),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains(
            "column id is covered by foreign key order_items_order_id_fkey of public.order_items: the old column is dropped at `migrate complete` with what covers it, and this one cannot be rebuilt on the new column: it references the column from a column of type numeric, and whether a key of type bigint can serve it is not known here"
        ),
        "{refused}"
    );
    assert_eq!(schema(&database), before, "nothing was changed");
    start_text(&database, "0002.toml", &retype_both_ends(true))
        .await
        .expect("starts");
    assert_eq!(
        database.admin(
            "SELECT count(*) FROM pg_constraint WHERE conname LIKE '\\_vg\\_v2\\_order\\_items%'"
        ),
        "1",
        "one twin of the foreign key"
    );
    let v2 = at(&database, "v2").await;
    exec(
        &v2,
        "INSERT INTO order_items_v2 (order_id, sku) VALUES (2, 'sku-v2')",
    )
    .await;
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(schema(&database), before, "the schema is as before");
    assert_eq!(all_foreign_keys(&database), keys);
    assert_eq!(migration_names(&database), "");
    let v1 = at(&database, "v1").await;
    assert_orphan_refused(
        &v1,
        "INSERT INTO order_items_v1 (order_id, sku) VALUES (99, 'x')",
    )
    .await;
}

const RETYPE_ORDERS_AND_PARENT: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "orders"
column = "parent_id"
type = "bigint"
up = "parent_id::bigint"
down = "parent_id::integer"
[[operations]]
op = "alter_column"
table = "orders"
column = "id"
type = "bigint"
up = "id::bigint"
down = "id::integer"
"#;

/// A table's foreign key into itself whose both ends are retyped (`parent_id` → `id`): the
/// start refused it ("from columns that are replaced too"). It is rebuilt as one key from the
/// new column into the new key, like another table's.
#[tokio::test]
async fn a_key_into_its_own_table_with_both_ends_retyped_completes() {
    let database = orders_and_items().await;
    let before = all_foreign_keys(&database);
    start_text(&database, "0002.toml", RETYPE_ORDERS_AND_PARENT)
        .await
        .expect("starts");
    assert_eq!(
        foreign_keys(&database, "orders"),
        "_vg_v2_orders_parent_id_fkey FOREIGN KEY (_vg_v2_parent_id) REFERENCES orders(_vg_v2_id) valid=true\n\
         orders_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES orders(id) valid=true",
    );
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(
        &v1,
        "INSERT INTO orders_v1 (parent_id, customer) VALUES (1, 'via v1')",
    )
    .await;
    exec(
        &v2,
        "INSERT INTO orders_v2 (parent_id, customer) VALUES (4, 'via v2')",
    )
    .await;
    assert_orphan_refused(
        &v1,
        "INSERT INTO orders_v1 (parent_id, customer) VALUES (99, 'x')",
    )
    .await;
    assert_orphan_refused(
        &v2,
        "INSERT INTO orders_v2 (parent_id, customer) VALUES (99, 'x')",
    )
    .await;

    complete_now(&database).await.expect("completes");
    assert_eq!(all_foreign_keys(&database), before);
    assert_eq!(migration_names(&database), "");
    assert_eq!(
        lines(
            &v2,
            "SELECT customer || ':' || coalesce(parent_id::text, '-') || ':' || pg_typeof(parent_id)
               FROM orders_v2 WHERE id > 3 ORDER BY id"
        )
        .await,
        ["via v1:1:bigint", "via v2:4:bigint"]
    );
    assert_orphan_refused(
        &v2,
        "INSERT INTO orders_v2 (parent_id, customer) VALUES (99, 'x')",
    )
    .await;
}

/// A composite key into a composite primary key, one column of each end retyped: the one
/// twin names the new column at each end and the other as it is.
#[tokio::test]
async fn a_composite_foreign_key_with_both_ends_retyped_completes() {
    let database = Database::start();
    database.admin(
        "CREATE TABLE shops (region integer, id integer, name text NOT NULL, PRIMARY KEY (region, id));
         CREATE TABLE sales (id serial PRIMARY KEY, region integer NOT NULL, shop integer NOT NULL,
                             FOREIGN KEY (region, shop) REFERENCES shops (region, id));
         INSERT INTO shops VALUES (1, 1, 'a'), (1, 2, 'b'), (2, 1, 'c');
         INSERT INTO sales (region, shop) VALUES (1, 1), (1, 2), (2, 1);",
    );
    database
        .apply_text(
            r#"
[[tables]]
name = "shops"
key = ["region", "id"]
[[tables]]
name = "sales"
key = ["id"]

[[versions]]
name = "v1"
[[versions.tables]]
base = "shops"
columns = ["region", "id", "name"]
[[versions.tables]]
base = "sales"
columns = ["id", "region", "shop"]
"#,
        )
        .await;
    let before = all_foreign_keys(&database);
    start_text(
        &database,
        "0002.toml",
        r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "sales"
column = "shop"
type = "bigint"
up = "shop::bigint"
down = "shop::integer"
[[operations]]
op = "alter_column"
table = "shops"
column = "id"
type = "bigint"
up = "id::bigint"
down = "id::integer"
"#,
    )
    .await
    .expect("starts");
    assert_eq!(
        foreign_keys(&database, "sales"),
        "_vg_v2_sales_region_shop_fkey FOREIGN KEY (region, _vg_v2_shop) REFERENCES shops(region, _vg_v2_id) valid=true\n\
         sales_region_shop_fkey FOREIGN KEY (region, shop) REFERENCES shops(region, id) valid=true",
    );
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(&v2, "INSERT INTO shops_v2 VALUES (2, 2, 'd')").await;
    exec(&v1, "INSERT INTO sales_v1 (region, shop) VALUES (2, 2)").await;
    exec(&v2, "INSERT INTO sales_v2 (region, shop) VALUES (2, 2)").await;
    for (client, sql) in [
        (&v1, "INSERT INTO sales_v1 (region, shop) VALUES (1, 3)"),
        (&v2, "INSERT INTO sales_v2 (region, shop) VALUES (1, 3)"),
        (&v2, "INSERT INTO sales_v2 (region, shop) VALUES (3, 1)"),
    ] {
        assert_orphan_refused(client, sql).await;
    }
    complete_now(&database).await.expect("completes");
    assert_eq!(all_foreign_keys(&database), before);
    assert_eq!(migration_names(&database), "");
    assert_orphan_refused(&v2, "INSERT INTO sales_v2 (region, shop) VALUES (1, 3)").await;
}

/// Each index of `schema.table` with its columns' names as the catalog has them: what `\d`
/// of the index shows in `Column`, and what a tool reading the index's `pg_attribute` sees.
fn index_columns(database: &Database, schema: &str, table: &str) -> String {
    database.admin(&format!(
        "SELECT string_agg(c.relname || ' (' || a.names || ')', E'\\n' ORDER BY c.relname)
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid,
                LATERAL (SELECT string_agg(attname, ', ' ORDER BY attnum) AS names
                           FROM pg_attribute WHERE attrelid = i.indexrelid) a
          WHERE i.indrelid = '{schema}.{table}'::regclass"
    ))
}

/// Indexes over the keys `retype_both_ends` retypes, in `{schema}`: the primary keys, a
/// composite index with the key second, a unique constraint, a key as an INCLUDE column, an
/// expression Postgres names after the column (a cast of it), one it names `expr` and one
/// after its function, a composite index on the referencing column.
const KEY_INDEXES: &str = "
    CREATE INDEX orders_customer_id ON {schema}.orders (customer, id);
    ALTER TABLE {schema}.orders ADD CONSTRAINT orders_id_customer_key UNIQUE (id, customer);
    CREATE UNIQUE INDEX orders_customer_key ON {schema}.orders (customer) INCLUDE (id);
    CREATE INDEX orders_id_text ON {schema}.orders (((id)::text));
    CREATE INDEX orders_id_plus ON {schema}.orders ((id + 1));
    CREATE INDEX orders_lower_customer_id ON {schema}.orders (lower(customer), id DESC) WHERE id > 0;
    CREATE INDEX order_items_order_sku ON {schema}.order_items (order_id, sku);";

/// Postgres names an index's columns after the table's when it builds it and never renames
/// them: each rebuilt index kept the new column's name (`\d orders_pkey`: `Column _vg_v2_id |
/// Definition id`) for good, where the same index made by hand shows `id`. Found by two
/// application walks. The contract renames them, in the transaction that renames the column;
/// `migrate plan` shows it.
#[tokio::test]
async fn a_rebuilt_index_names_its_columns_as_one_made_by_hand() {
    let database = orders_and_items().await;
    database.admin(&KEY_INDEXES.replace("{schema}", "public"));
    let text = retype_both_ends(true);
    let report = planned(&database, &text).await;
    let contract = contract_sql(&report);
    for expected in [
        r#"ALTER TABLE "public"."orders_pkey" RENAME COLUMN "_vg_v2_id" TO "id""#,
        r#"ALTER TABLE "public"."orders_id_text" RENAME COLUMN "_vg_v2_id" TO "id""#,
        r#"ALTER TABLE "public"."order_items_order_sku" RENAME COLUMN "_vg_v2_order_id" TO "order_id""#,
    ] {
        assert!(
            contract.contains(&expected),
            "the contract shows {expected}: {contract:#?}"
        );
    }
    assert!(
        !contract
            .iter()
            .any(|sql| sql.starts_with(r#"ALTER TABLE "public"."orders_id_plus""#)),
        "an expression Postgres names `expr` has no column to rename: {contract:#?}"
    );

    start_text(&database, "0002.toml", &text)
        .await
        .expect("starts");
    assert_eq!(
        index_columns(&database, "public", "orders")
            .lines()
            .filter(|line| line.starts_with("_vg_v2_orders_pkey"))
            .collect::<Vec<_>>(),
        ["_vg_v2_orders_pkey (_vg_v2_id)"],
        "while live, a rebuilt index's column has the new column's name"
    );
    complete_now(&database).await.expect("completes");

    database.admin(
        "CREATE SCHEMA fresh;
         CREATE TABLE fresh.orders (id bigserial PRIMARY KEY,
                                    parent_id integer REFERENCES fresh.orders (id),
                                    customer text NOT NULL);
         CREATE TABLE fresh.order_items (id serial PRIMARY KEY,
                                         order_id bigint NOT NULL REFERENCES fresh.orders (id),
                                         sku text NOT NULL);",
    );
    database.admin(&KEY_INDEXES.replace("{schema}", "fresh"));
    for table in ["orders", "order_items"] {
        assert_eq!(
            index_columns(&database, "public", table),
            index_columns(&database, "fresh", table),
            "{table}'s indexes name their columns as the same indexes made by hand"
        );
    }
    assert_eq!(
        migration_names(&database),
        "",
        "no index has a column named as the migration's"
    );
}

/// A column retyped and renamed (`rename_to`) is named in its rebuilt indexes by its new name,
/// as an index made after the rename would be. One whose name an expression of the index has
/// (Postgres names `(body || '')` `expr`, and so the column `expr` beside it `expr1`) keeps
/// the new column's: renaming it would fail (42701), and the contract completes without it.
#[tokio::test]
async fn a_rebuilt_index_column_renamed_with_its_column_or_kept_where_taken() {
    let database = Database::start();
    database.admin(
        "CREATE TABLE notes (id bigint PRIMARY KEY, title varchar(20) NOT NULL,
                             expr integer NOT NULL, body text NOT NULL);
         INSERT INTO notes SELECT n, 'title-' || n, n, 'body-' || n FROM generate_series(1, 5) AS n;
         CREATE INDEX notes_title ON notes (title);
         CREATE INDEX notes_body_expr ON notes ((body || ''), expr);",
    );
    migration_support::one_table_at_v1(&database, "notes", "id", &["id", "title", "expr", "body"])
        .await;
    assert_eq!(
        index_columns(&database, "public", "notes"),
        "notes_body_expr (expr, expr1)\nnotes_pkey (id)\nnotes_title (title)"
    );
    let text = r#"version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "notes"
column = "title"
type = "varchar(200)"
rename_to = "heading"
[[operations]]
op = "alter_column"
table = "notes"
column = "expr"
type = "bigint"
"#;
    let report = planned(&database, text).await;
    let contract = contract_sql(&report);
    for expected in [
        r#"ALTER TABLE "public"."notes_title" RENAME COLUMN "_vg_v2_title" TO "heading""#,
        r#"ALTER TABLE "public"."notes_body_expr" RENAME COLUMN "_vg_v2_expr" TO "expr""#,
    ] {
        assert!(
            contract.contains(&expected),
            "the contract shows {expected}: {contract:#?}"
        );
    }
    start_text(&database, "0002.toml", text)
        .await
        .expect("starts");
    complete_now(&database)
        .await
        .expect("completes, the taken name left");
    assert_eq!(
        index_columns(&database, "public", "notes"),
        "notes_body_expr (expr, _vg_v2_expr)\nnotes_pkey (id)\nnotes_title (heading)"
    );
}
