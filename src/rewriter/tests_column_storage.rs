//! DDL naming a managed table's column that the version stores in a base column of another
//! name (a live migration's replaced `email`, renamed `full_name`, or the base names
//! themselves) is refused at the column's name, in every form that names a column; the same
//! DDL on a column the base table has by the version's name, on a table without a recorded
//! mapping, or on a relation pinned elsewhere passes unchanged.

use std::sync::Arc;

use super::*;
use crate::model::{MappedColumn, ViewMapping};
use crate::rewriter::shadowing::Pin;
use crate::rewriter::targets::BaseWrite;

/// v2 of a live migration v1 → v2 that retypes `email` (v2's own `_vg_v2_email`) and renames
/// `name` to `full_name`; `label` is an expression column. `orders` is managed without a
/// mapping recorded.
fn live_v2() -> VersionTargets {
    let column = |name: &str, base: Option<&str>| MappedColumn {
        name: name.into(),
        base_column: base.map(str::to_owned),
        expression: base.is_none().then(|| "upper(name)".into()),
        type_name: "pg_catalog.text".into(),
        default: None,
        base_default: None,
        base_identity_always: false,
        read_function: None,
        default_function: None,
    };
    let view = RelationName::new("public", "customers_v2");
    VersionTargets::new(
        "v2",
        vec![
            ViewTarget {
                table: RelationName::new("public", "customers"),
                view: view.clone(),
            },
            ViewTarget {
                table: RelationName::new("public", "orders"),
                view: RelationName::new("public", "orders_v2"),
            },
        ],
    )
    .with_base_write(
        view,
        BaseWrite {
            base: RelationName::new("public", "customers"),
            mapping: Arc::new(ViewMapping {
                trigger_backed: true,
                columns: vec![
                    column("id", Some("id")),
                    column("email", Some("_vg_v2_email")),
                    column("full_name", Some("name")),
                    column("label", None),
                ],
                insert: Vec::new(),
                update: Vec::new(),
                pinned: true,
            }),
        },
    )
}

/// The refusal of `sql`: its 1-based position and message.
#[track_caller]
fn refused(sql: &str, targets: &VersionTargets) -> (Option<usize>, String) {
    match rewrite(sql, targets) {
        Err(error) => (error.position, error.to_string()),
        Ok(outcome) => panic!("{sql} was not refused: {outcome:?}"),
    }
}

/// The 1-based position of `needle` in `sql`, after the first `after`.
fn at(sql: &str, after: &str, needle: &str) -> Option<usize> {
    let from = sql.find(after).unwrap() + after.len();
    let byte = from + sql[from..].find(needle).unwrap();
    Some(sql[..byte].chars().count() + 1)
}

#[test]
fn ddl_naming_a_column_stored_under_another_base_name_is_refused_at_the_column() {
    for (sql, after, column, base) in [
        (
            "CREATE INDEX walk_v2_email_idx ON customers (email)",
            "(",
            "email",
            "_vg_v2_email",
        ),
        (
            "CREATE INDEX ON customers (full_name)",
            "(",
            "full_name",
            "name",
        ),
        // The operator-tools walk: ANALYZE and GRANT reached v1's email, or failed bare.
        (
            "ANALYZE customers (id, email)",
            "id,",
            "email",
            "_vg_v2_email",
        ),
        (
            "VACUUM (ANALYZE) orders, public.customers (full_name)",
            "customers",
            "full_name",
            "name",
        ),
        (
            "GRANT SELECT (id), UPDATE (email) ON customers TO r2",
            "UPDATE",
            "email",
            "_vg_v2_email",
        ),
        (
            "REVOKE SELECT (name) ON TABLE customers FROM r2",
            "(",
            "name",
            "name",
        ),
        (
            "CREATE UNIQUE INDEX email ON public.customers USING btree (id, lower(email)) WHERE email IS NOT NULL",
            "lower(",
            "email",
            "_vg_v2_email",
        ),
        (
            "CREATE INDEX ON customers (id) WHERE customers.full_name <> ''",
            "customers.",
            "full_name",
            "name",
        ),
        (
            "CREATE INDEX ON customers (id) INCLUDE (\"email\")",
            "INCLUDE",
            "\"email",
            "_vg_v2_email",
        ),
        (
            "ALTER TABLE customers ADD CONSTRAINT c CHECK (email LIKE '%@%')",
            "(",
            "email",
            "_vg_v2_email",
        ),
        (
            "ALTER TABLE customers ADD CONSTRAINT full_name CHECK (full_name <> '')",
            "CHECK",
            "full_name",
            "name",
        ),
        (
            "ALTER TABLE customers ADD CONSTRAINT email UNIQUE (email)",
            "UNIQUE",
            "email",
            "_vg_v2_email",
        ),
        (
            "ALTER TABLE ONLY customers ADD PRIMARY KEY (id, email)",
            "id",
            "email",
            "_vg_v2_email",
        ),
        (
            "ALTER TABLE customers ADD CONSTRAINT f FOREIGN KEY (full_name) REFERENCES people (name)",
            "KEY",
            "full_name",
            "name",
        ),
        (
            "ALTER TABLE customers ADD CONSTRAINT x EXCLUDE USING gist (id WITH =, email WITH =)",
            "=,",
            "email",
            "_vg_v2_email",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN email SET DEFAULT 'email'",
            "COLUMN",
            "email",
            "_vg_v2_email",
        ),
        (
            "ALTER TABLE customers ALTER email DROP DEFAULT",
            "ALTER",
            "email",
            "_vg_v2_email",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN id SET NOT NULL, ALTER COLUMN full_name SET NOT NULL",
            "id",
            "full_name",
            "name",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN full_name DROP NOT NULL",
            "COLUMN",
            "full_name",
            "name",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN email SET STATISTICS 500",
            "COLUMN",
            "email",
            "_vg_v2_email",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN email SET STORAGE EXTERNAL",
            "COLUMN",
            "email",
            "_vg_v2_email",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN email SET (n_distinct = 100)",
            "COLUMN",
            "email",
            "_vg_v2_email",
        ),
        (
            "ALTER TABLE audit ADD CONSTRAINT a FOREIGN KEY (customer_email) REFERENCES customers (email)",
            "customers",
            "email",
            "_vg_v2_email",
        ),
        (
            "CREATE TABLE audit (e varchar(200) REFERENCES customers (email), n text)",
            "customers",
            "email",
            "_vg_v2_email",
        ),
        (
            "COMMENT ON COLUMN customers.email IS 'email'",
            "customers.",
            "email",
            "_vg_v2_email",
        ),
        (
            "COMMENT ON COLUMN public . customers . full_name IS 'x'",
            "customers",
            "full_name",
            "name",
        ),
        (
            "CREATE STATISTICS email ON id, email FROM customers",
            "id",
            "email",
            "_vg_v2_email",
        ),
        (
            "CREATE STATISTICS s ON (lower(email)), id FROM customers",
            "(",
            "email",
            "_vg_v2_email",
        ),
        // A base column the version shows under another name.
        ("CREATE INDEX ON customers (name)", "(", "name", "name"),
        (
            "CREATE INDEX ON customers (_vg_v2_email)",
            "(",
            "_vg_v2_email",
            "_vg_v2_email",
        ),
    ] {
        let (position, message) = refused(sql, &live_v2());
        assert_eq!(position, at(sql, after, column), "{sql}: {message}");
        let column = column.trim_start_matches('"');
        assert!(
            message.contains(&format!("names column \"{column}\""))
                && message.contains(&format!("naming base column \"{base}\"")),
            "{sql}: {message}"
        );
    }
}

#[test]
fn the_refusal_names_the_base_column_and_what_to_do_instead() {
    let (_, message) = refused("CREATE INDEX ON customers (email)", &live_v2());
    assert_eq!(
        message,
        "viewgate cannot rewrite this statement for version v2: CREATE INDEX on \"customers\" names column \"email\", which at version \"v2\" is stored in base column \"_vg_v2_email\" while the migration to v2 is live (the base table's \"email\" is an older version's): the index would cover the older version's column. Make it with a migration (viewgate migrate start, operation \"create_index\"), which names the version's columns and makes it on the base ones, or after `viewgate migrate complete`, when the base column has the version's name; or over a direct connection to Postgres, naming base column \"_vg_v2_email\""
    );
    let sql = "ALTER TABLE customers ADD CONSTRAINT c CHECK (full_name <> '')";
    let (_, message) = refused(sql, &live_v2());
    assert!(
        message.contains("ALTER TABLE … ADD CONSTRAINT on \"customers\" names column \"full_name\", which at version \"v2\" is stored in base column \"name\" under another name")
            && message.contains("operation \"add_constraint\""),
        "{message}"
    );
    let (_, message) = refused("CREATE INDEX ON customers (name)", &live_v2());
    assert!(
        message.contains("names column \"name\", which version \"v2\" does not show under that name: it is the base column the version's \"full_name\" is stored in"),
        "{message}"
    );
    let (_, message) = refused("COMMENT ON COLUMN customers.email IS 'e'", &live_v2());
    assert!(
        message.contains("COMMENT ON COLUMN on \"customers\"")
            && message.contains("Run it after `viewgate migrate complete`"),
        "{message}"
    );
    let (position, message) = refused("CREATE INDEX ON customers (label)", &live_v2());
    assert_eq!(position, Some(28));
    assert!(
        message.contains(
            "\"label\", which at version \"v2\" is an expression over the base table's columns"
        ),
        "{message}"
    );
    // A type change is refused as structure first.
    let sql = "ALTER TABLE customers ALTER COLUMN email TYPE text";
    let (position, message) = refused(sql, &live_v2());
    assert_eq!(position, Some(13));
    assert!(message.contains("operation \"alter_column\""), "{message}");
}

#[test]
fn ddl_on_columns_the_base_table_has_by_the_versions_name_passes_unchanged() {
    for sql in [
        "CREATE INDEX walk_v2_id_idx ON customers (id)",
        "CREATE UNIQUE INDEX ON customers (lower(id::text)) WHERE id > 0",
        "ALTER TABLE customers ADD CONSTRAINT email CHECK (id > 0)",
        "ALTER TABLE customers ALTER COLUMN id SET DEFAULT 1, ALTER id SET STATISTICS 10",
        "ALTER TABLE customers ADD CONSTRAINT p PRIMARY KEY (id)",
        "ALTER TABLE customers DROP CONSTRAINT email, ALTER CONSTRAINT f DEFERRABLE",
        "ALTER TABLE audit ADD CONSTRAINT a FOREIGN KEY (email) REFERENCES customers (id)",
        "CREATE TABLE audit (email text, full_name text, c int REFERENCES customers)",
        "COMMENT ON COLUMN customers.id IS 'email'",
        "COMMENT ON COLUMN audit.email IS 'x'",
        "CREATE STATISTICS s ON id, (id + 1) FROM customers",
        "CREATE INDEX ON audit (email, full_name, name)",
        "ANALYZE customers (id)",
        "VACUUM customers, audit (email)",
        "GRANT SELECT (id), INSERT ON customers, audit TO r2",
        "REVOKE UPDATE (email) ON audit FROM r2",
        // A table without a mapping recorded: Postgres decides.
        "ANALYZE orders (email)",
        "CREATE INDEX ON orders (email)",
        "ALTER TABLE orders ALTER COLUMN full_name SET NOT NULL",
        // A name the version's view has, where the base table has it too, is not the case.
        "CREATE INDEX ON other.customers (email)",
    ] {
        assert_eq!(
            rewrite(sql, &live_v2()).unwrap(),
            Rewrite::Unchanged,
            "{sql}"
        );
    }
    // Without a mapping, the same DDL passes as it always did.
    for sql in [
        "CREATE INDEX ON model_metadata (model_name)",
        "COMMENT ON COLUMN model_metadata.model_name IS 'its name'",
    ] {
        assert_eq!(rewrite(sql, &v2()).unwrap(), Rewrite::Unchanged, "{sql}");
    }
    // A temporary table the search_path finds first is that table's business.
    let pinned = live_v2().with_pins(&[(
        "customers".into(),
        Pin {
            schema: "pg_temp".into(),
        },
    )]);
    assert_eq!(
        rewrite("CREATE INDEX ON customers (email)", &pinned).unwrap(),
        Rewrite::Unchanged
    );
    let sql = "CREATE INDEX ON public.customers (email)";
    assert_eq!(refused(sql, &pinned).0, at(sql, "(", "email"));
}

/// `CREATE TABLE [IF NOT EXISTS]` of a managed table by the version's name makes nothing:
/// Postgres skips it (or refuses it, 42P07), whatever its columns and keys name, as for the
/// version's shape made by hand (Tortoise's `generate_schemas` at startup). Where the version
/// names the table otherwise than its base table (a live rename), the name is written as the
/// version's view, which exists; a temporary table is the session's own.
#[test]
fn creating_a_managed_table_that_exists_makes_nothing_and_reads_nothing_else() {
    for sql in [
        "CREATE TABLE IF NOT EXISTS customers (id bigint PRIMARY KEY, email text UNIQUE)",
        "CREATE TABLE IF NOT EXISTS \"orders\" (id int, c int REFERENCES \"customers\" (\"email\"))",
        "CREATE TABLE customers (full_name text, CHECK (length(email) > 0))",
        "CREATE TEMP TABLE customers (email text)",
    ] {
        assert_eq!(
            rewrite(sql, &live_v2()).unwrap(),
            Rewrite::Unchanged,
            "{sql}"
        );
    }
    // v2 calls the base table `customers` `clients`.
    let targets = live_v2();
    let view = RelationName::new("public", "customers_v2");
    let write = targets.base_write(&targets.managed()[0]).unwrap().clone();
    let renamed = VersionTargets::new(
        "v2",
        vec![ViewTarget {
            table: RelationName::new("public", "clients"),
            view: view.clone(),
        }],
    )
    .with_base_write(view, write);
    assert_eq!(
        rewrite("CREATE TABLE IF NOT EXISTS clients (id int)", &renamed).unwrap(),
        Rewrite::Rewritten("CREATE TABLE IF NOT EXISTS public.customers_v2 (id int)".into())
    );
    assert_eq!(
        rewrite("create table public.clients (id int)", &renamed).unwrap(),
        Rewrite::Rewritten("create table public.customers_v2 (id int)".into())
    );
    // DDL acting on the table by the version's name is written as the base table's.
    for (sql, expected) in [
        (
            "VACUUM (ANALYZE) clients (id)",
            "VACUUM (ANALYZE) public.customers (id)",
        ),
        ("analyze public.clients", "analyze public.customers"),
        (
            "TRUNCATE clients, audit",
            "TRUNCATE public.customers, audit",
        ),
        (
            "LOCK TABLE clients IN SHARE MODE",
            "LOCK TABLE public.customers IN SHARE MODE",
        ),
        (
            "COMMENT ON TABLE \"public\" . clients IS 'clients'",
            "COMMENT ON TABLE public.customers IS 'clients'",
        ),
        ("REINDEX TABLE clients", "REINDEX TABLE public.customers"),
        (
            "CLUSTER clients USING clients_pkey",
            "CLUSTER public.customers USING clients_pkey",
        ),
        (
            "CREATE INDEX clients_id_idx ON clients (id)",
            "CREATE INDEX clients_id_idx ON public.customers (id)",
        ),
        (
            "GRANT SELECT ON TABLE clients, audit TO r",
            "GRANT SELECT ON TABLE public.customers, audit TO r",
        ),
        (
            "ALTER TABLE clients ADD CONSTRAINT p CHECK (id > 0)",
            "ALTER TABLE public.customers ADD CONSTRAINT p CHECK (id > 0)",
        ),
        (
            "CREATE TABLE notes (id int, c int REFERENCES clients (id))",
            "CREATE TABLE notes (id int, c int REFERENCES public.customers (id))",
        ),
        (
            "ALTER TABLE audit ADD FOREIGN KEY (c) REFERENCES clients",
            "ALTER TABLE audit ADD FOREIGN KEY (c) REFERENCES public.customers",
        ),
        (
            "CREATE STATISTICS s ON id, (id + 1) FROM clients",
            "CREATE STATISTICS s ON id, (id + 1) FROM public.customers",
        ),
    ] {
        assert_eq!(
            rewrite(sql, &renamed).unwrap(),
            Rewrite::Rewritten(expected.into()),
            "{sql}"
        );
    }
    // The application's own tables are left as written; `ON ALL TABLES IN SCHEMA` names no
    // table.
    for sql in [
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO r",
        "COMMENT ON TABLE audit IS 'clients'",
        "VACUUM audit",
        "CREATE TEMP TABLE t (c int); VACUUM t",
    ] {
        assert_eq!(rewrite(sql, &renamed).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}

/// A `GRANT` or `REVOKE` of whole-table privileges on a managed table reaches its base table
/// and every active version's view (a role granted through the proxy read nothing through it:
/// `permission denied for view customers_v1`); column privileges and `ON ALL TABLES IN SCHEMA`
/// are left as written.
#[test]
fn whole_table_grants_reach_the_base_table_and_every_versions_view() {
    let base = RelationName::new("public", "customers");
    let targets = live_v2().with_every_versions_views(["v1", "v2"].map(|version| {
        let view = RelationName::new("public", format!("customers_{version}"));
        (base.clone(), view)
    }));
    let every = "public.customers, public.customers_v1, public.customers_v2";
    for (sql, expected) in [
        (
            "GRANT SELECT ON customers TO r2".to_owned(),
            format!("GRANT SELECT ON {every} TO r2"),
        ),
        (
            "REVOKE ALL ON TABLE public.\"customers\", audit FROM r2 CASCADE".to_owned(),
            format!("REVOKE ALL ON TABLE {every}, audit FROM r2 CASCADE"),
        ),
        (
            "grant insert, update on audit, customers to r2 with grant option".to_owned(),
            format!("grant insert, update on audit, {every} to r2 with grant option"),
        ),
    ] {
        assert_eq!(
            rewrite(&sql, &targets).unwrap(),
            Rewrite::Rewritten(expected),
            "{sql}"
        );
    }
    for sql in [
        "GRANT SELECT (id), INSERT ON customers, audit TO r2",
        "REVOKE UPDATE (id) ON customers FROM r2",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO r2",
        "GRANT SELECT ON audit TO r2",
        // No mapping recorded: the table is left to Postgres, as written.
        "GRANT SELECT ON orders TO r2",
    ] {
        assert_eq!(rewrite(sql, &targets).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}
