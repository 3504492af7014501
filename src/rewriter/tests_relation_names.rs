//! Relation names a statement computes or binds (`$1::regtype`, a concatenation cast to
//! `regclass`, `to_regclass($1)`): wrapped in one of the version's name readers where the
//! version has catalog substitutes, exactly around the expression, and never otherwise.

use super::*;
use crate::rewriter::{RecentShapes, RewriteCache, rewrite_cached_in};

const WRAP: &str = "viewgate_catalog_v2.version_regclass(";

fn with_catalog() -> VersionTargets {
    v2().with_catalog_substitutes("viewgate_catalog_v2")
}

#[test]
fn a_bound_or_built_name_cast_to_a_relation_type_is_wrapped() {
    for (sql, expected) in [
        (
            "SELECT t.typname FROM pg_type t WHERE t.oid = $1::regtype",
            "SELECT t.typname FROM viewgate_catalog_v2.pg_type t WHERE t.oid = viewgate_catalog_v2.version_regtype(($1)::pg_catalog.text)::regtype",
        ),
        (
            "SELECT (quote_ident(n.s) || '.' || quote_ident(n.t))::regclass FROM names n",
            "SELECT (viewgate_catalog_v2.version_regclass((quote_ident(n.s) || '.' || quote_ident(n.t))::pg_catalog.text))::regclass FROM names n",
        ),
        (
            "SELECT CAST($1 AS pg_catalog.regclass)",
            "SELECT CAST(viewgate_catalog_v2.version_regclass(($1)::pg_catalog.text) AS pg_catalog.regclass)",
        ),
        (
            "SELECT format('%I.%I', 'public', $1)::regclass::oid",
            "SELECT viewgate_catalog_v2.version_regclass((format('%I.%I', 'public', $1))::pg_catalog.text)::regclass::oid",
        ),
        (
            "SELECT to_regclass($1), to_regclass(t.name) FROM names t",
            "SELECT to_regclass(viewgate_catalog_v2.version_relation_name(($1)::pg_catalog.text, 'null')), to_regclass(viewgate_catalog_v2.version_relation_name((t.name)::pg_catalog.text, 'null')) FROM names t",
        ),
        (
            "SELECT to_regtype($1), to_regtype('model_metadata')",
            "SELECT to_regtype(viewgate_catalog_v2.version_relation_name(($1)::pg_catalog.text, 'null')), to_regtype('public.model_metadata_v2')",
        ),
        (
            "SELECT $1::text::regclass",
            "SELECT viewgate_catalog_v2.version_relation_name(($1)::pg_catalog.text, 'relation')::text::regclass",
        ),
    ] {
        assert_eq!(
            rewrite(sql, &with_catalog()).unwrap(),
            Rewrite::Rewritten(expected.to_owned()),
            "{sql}"
        );
    }
}

#[test]
fn oids_literals_and_unsure_extents_are_left_as_written() {
    for sql in [
        // An oid column cast to regclass: the rewriter cannot tell its type, and oids are
        // what such casts mostly hold (psql's and every ORM's catalog queries).
        "SELECT a.attrelid::regclass = c.oid FROM names c, names a WHERE c.oid::regclass IS NOT NULL",
        "SELECT NULL::regclass, 16384::regclass",
        "SELECT 'other'::regclass",
        // A parenthesized first operand: sqlparser's span starts inside its parentheses, so
        // the expression's extent is uncertain and it stays as written.
        "SELECT ((n.s) || '.t')::regclass FROM names n",
        // has_table_privilege may take an oid: only a literal is read there.
        "SELECT has_table_privilege($1, 'SELECT')",
    ] {
        assert_eq!(
            rewrite(sql, &with_catalog()).unwrap(),
            Rewrite::Unchanged,
            "{sql}"
        );
    }
    // Without catalog substitutes there is nothing to wrap the name in.
    assert_eq!(
        rewrite(
            "SELECT * FROM model_metadata m WHERE m.id = 1 AND $1::regclass IS NOT NULL",
            &v2()
        )
        .unwrap(),
        Rewrite::Rewritten(
            "SELECT * FROM public.model_metadata_v2 m WHERE m.id = 1 AND $1::regclass IS NOT NULL"
                .to_owned()
        )
    );
}

#[test]
fn a_cached_shape_wraps_the_same_expression_whatever_its_constants() {
    let cache = RewriteCache::default();
    let mut recent = RecentShapes::default();
    let targets = with_catalog();
    for schema in ["public", "app", "x_y"] {
        let sql = format!("SELECT ('{schema}' || '.' || quote_ident($1))::regclass");
        let expected = format!(
            "SELECT ({WRAP}('{schema}' || '.' || quote_ident($1))::pg_catalog.text))::regclass"
        );
        let outcome = rewrite_cached_in(&cache, &mut recent, &sql, &targets).shared();
        assert_eq!(*outcome, Ok(Rewrite::Rewritten(expected)), "{sql}");
    }
}

#[test]
fn a_relation_printed_as_text_is_printed_by_the_versions_name() {
    for (sql, expected) in [
        (
            "SELECT t2.oid::regclass::text AS to_table FROM names t2",
            "SELECT viewgate_catalog_v2.version_relation_text(t2.oid::regclass)::text AS to_table FROM names t2",
        ),
        (
            "SELECT pg_get_serial_sequence(CAST(CAST(a.attrelid AS REGCLASS) AS TEXT), a.attname) FROM names a",
            "SELECT viewgate_catalog_v2.pg_get_serial_sequence(CAST(viewgate_catalog_v2.version_relation_text(CAST(a.attrelid AS REGCLASS)) AS TEXT), a.attname) FROM names a",
        ),
        (
            "SELECT 'model_metadata'::regclass::text AS t",
            "SELECT viewgate_catalog_v2.version_relation_text('public.model_metadata_v2'::regclass)::text AS t",
        ),
        (
            "SELECT 1 FROM names c WHERE c.relid::oid::pg_catalog.regclass::varchar = $1 OR (c.relid)::regclass::text = $1",
            "SELECT 1 FROM names c WHERE viewgate_catalog_v2.version_relation_text(c.relid::oid::pg_catalog.regclass)::varchar = $1 OR viewgate_catalog_v2.version_relation_text((c.relid)::regclass)::text = $1",
        ),
        (
            "SELECT $1::regclass::text AS name",
            "SELECT viewgate_catalog_v2.version_relation_text(viewgate_catalog_v2.version_regclass(($1)::pg_catalog.text)::regclass)::text AS name",
        ),
    ] {
        assert_eq!(
            rewrite(sql, &with_catalog()).unwrap(),
            Rewrite::Rewritten(expected.to_owned()),
            "{sql}"
        );
    }
    // A regclass kept as one, a type printed, and an unaliased select-list item printed as
    // text, which Postgres names after the expression (`relid`): as written.
    for sql in [
        "SELECT c.oid::regtype::text FROM names c",
        "SELECT c.relid::regclass::text FROM names c UNION SELECT c.relid::regclass::text FROM names c",
    ] {
        assert_eq!(
            rewrite(sql, &with_catalog()).unwrap(),
            Rewrite::Unchanged,
            "{sql}"
        );
    }
}

/// MikroORM's index introspection (`getIndexes`), over the test's managed table.
const MIKRO_INDEXES: &str = "select indrelid::regclass as table_name, ns.nspname as schema_name, relname as constraint_name, idx.indisunique as unique, idx.indisprimary as primary, contype, condeferrable, condeferred, array( select pg_get_indexdef(idx.indexrelid, k + 1, true) from generate_subscripts(idx.indkey, 1) as k order by k ) as index_def, pg_get_indexdef(idx.indexrelid) as expression, c.condeferrable as deferrable, c.condeferred as initially_deferred from pg_index idx join pg_class as i on i.oid = idx.indexrelid join pg_namespace as ns on i.relnamespace = ns.oid left join pg_constraint as c on c.conname = i.relname where indrelid in ('\"public\".\"audit_log\"'::regclass, '\"public\".\"model_metadata\"'::regclass) order by relname";

#[test]
fn a_result_column_printing_a_relation_is_printed_by_the_versions_name() {
    let text = "viewgate_catalog_v2.version_relation_text";
    let mikro = format!(
        "select {text}(indrelid::regclass) as table_name, ns.nspname as schema_name, relname as constraint_name, idx.indisunique as unique, idx.indisprimary as primary, contype, condeferrable, condeferred, array( select viewgate_catalog_v2.pg_get_indexdef(idx.indexrelid, k + 1, true) from generate_subscripts(idx.indkey, 1) as k order by k ) as index_def, viewgate_catalog_v2.pg_get_indexdef(idx.indexrelid) as expression, c.condeferrable as deferrable, c.condeferred as initially_deferred from viewgate_catalog_v2.pg_index idx join viewgate_catalog_v2.pg_class as i on i.oid = idx.indexrelid join viewgate_catalog_v2.pg_namespace as ns on i.relnamespace = ns.oid left join viewgate_catalog_v2.pg_constraint as c on c.conname = i.relname where indrelid in ('\"public\".\"audit_log\"'::regclass, 'public.model_metadata_v2'::regclass) order by relname"
    );
    for (sql, expected) in [
        (MIKRO_INDEXES.to_owned(), mikro),
        (
            // psql's "Referenced by:" footer; and the other spellings of the cast.
            "SELECT conname, conrelid::pg_catalog.regclass AS ontable, CAST(c.oid AS regclass) AS r, (c.oid::regclass) AS p, (c.oid)::regclass AS q, c.relid::oid::regclass AS o FROM names c ORDER BY conname".to_owned(),
            format!("SELECT conname, {text}(conrelid::pg_catalog.regclass) AS ontable, {text}(CAST(c.oid AS regclass)) AS r, ({text}(c.oid::regclass)) AS p, {text}((c.oid)::regclass) AS q, {text}(c.relid::oid::regclass) AS o FROM names c ORDER BY conname"),
        ),
        (
            // A bound name: read as the version's relation, then printed by its name.
            "SELECT $1::regclass AS r, $2::text::regclass AS s".to_owned(),
            format!("SELECT {text}(viewgate_catalog_v2.version_regclass(($1)::pg_catalog.text)::regclass) AS r, {text}(viewgate_catalog_v2.version_relation_name(($2)::pg_catalog.text, 'relation')::text::regclass) AS s"),
        ),
        (
            // Every side of a set operation; the first names the column.
            "SELECT c.oid::regclass AS r, 1 AS n FROM names c UNION ALL SELECT d.relid::regclass, 2 FROM names d UNION (SELECT e.oid::regclass AS x, 3 FROM names e LIMIT 1) ORDER BY r".to_owned(),
            format!("SELECT {text}(c.oid::regclass) AS r, 1 AS n FROM names c UNION ALL SELECT {text}(d.relid::regclass), 2 FROM names d UNION (SELECT {text}(e.oid::regclass) AS x, 3 FROM names e LIMIT 1) ORDER BY r"),
        ),
        (
            // The outermost query only: not its CTE's body, its subquery's, its WHERE.
            "WITH x AS (SELECT c.oid::regclass AS r FROM names c) SELECT x.r::oid::regclass AS r FROM x WHERE x.r IN (SELECT d.oid::regclass AS s FROM names d) AND x.r::regclass = 'other'::regclass".to_owned(),
            format!("WITH x AS (SELECT c.oid::regclass AS r FROM names c) SELECT {text}(x.r::oid::regclass) AS r FROM x WHERE x.r IN (SELECT d.oid::regclass AS s FROM names d) AND x.r::regclass = 'other'::regclass"),
        ),
        (
            // Unaliased, named as Postgres names it: after the column or the function
            // (psql's "Statistics objects:" footer), and only on the first side.
            "SELECT oid, stxrelid::pg_catalog.regclass FROM names c UNION ALL SELECT 1, c.oid::regclass FROM names c ORDER BY 1".to_owned(),
            format!("SELECT oid, {text}(stxrelid::pg_catalog.regclass) AS \"stxrelid\" FROM names c UNION ALL SELECT 1, {text}(c.oid::regclass) FROM names c ORDER BY 1"),
        ),
        (
            "SELECT c.\"Rel\"::regclass, PG_CATALOG.F(x)::oid::regclass, format('%I', $1)::regclass FROM names c".to_owned(),
            format!("SELECT {text}(c.\"Rel\"::regclass) AS \"Rel\", {text}(PG_CATALOG.F(x)::oid::regclass) AS \"f\", {text}(viewgate_catalog_v2.version_regclass((format('%I', $1))::pg_catalog.text)::regclass) AS \"format\" FROM names c"),
        ),
        (
            // DISTINCT ordered by the alias orders by the text it selects.
            "SELECT DISTINCT c.oid::regclass AS r, *, c.relid::regclass AS s FROM names c ORDER BY r".to_owned(),
            format!("SELECT DISTINCT {text}(c.oid::regclass) AS r, *, {text}(c.relid::regclass) AS s FROM names c ORDER BY r"),
        ),
    ] {
        assert_eq!(
            rewrite(&sql, &with_catalog()).unwrap(),
            Rewrite::Rewritten(expected),
            "{sql}"
        );
    }
}

#[test]
fn a_regclass_compared_stored_or_named_after_its_expression_is_left_as_written() {
    for sql in [
        // Unaliased, where Postgres names the column after the type (`regclass`), or in
        // parentheses, which an alias may not follow.
        "SELECT (c.oid + 0)::regclass FROM names c",
        "SELECT (c.oid::regclass) FROM names c",
        // Not the result: a derived table's, a CTE's, a subquery's column, compared with
        // regclass; WHERE, GROUP BY, ORDER BY, function arguments.
        "SELECT x.r AS r FROM (SELECT c.oid::regclass AS r FROM names c) x",
        "WITH x AS (SELECT c.oid::regclass AS r FROM names c) SELECT r FROM x",
        "SELECT 1 AS one FROM names i WHERE i.relid IN (SELECT c.oid::regclass AS r FROM names c)",
        "SELECT (SELECT c.oid::regclass AS r FROM names c LIMIT 1) = 'other'::regclass AS same",
        "SELECT count(*) AS n FROM names c WHERE c.oid::regclass <> 0 GROUP BY c.oid::regclass ORDER BY c.oid::regclass",
        "SELECT format('%s', c.oid::regclass) AS f, coalesce(c.oid::regclass, c.relid::regclass) AS s FROM names c",
        // Constants: a literal is the view's name already; a type is not a relation.
        "SELECT 'other'::regclass AS r, NULL::regclass AS n, 16384::regclass AS o",
        "SELECT c.oid::regtype AS t FROM names c",
        // A set operation whose other side is no cast of an oid, or not a select list, or
        // whose columns a `*` shifts.
        "SELECT c.oid::regclass AS r FROM names c UNION SELECT 'other'::regclass",
        "SELECT c.oid::regclass AS r FROM names c UNION SELECT c.relid FROM names c",
        "SELECT c.oid::regclass AS r FROM names c UNION VALUES (NULL)",
        "SELECT c.oid::regclass AS r, c.relid FROM names c UNION SELECT *, d.oid::regclass FROM names d",
        // DISTINCT ON, and DISTINCT ordered by the expression it selects: the ORDER BY must
        // match what is selected.
        "SELECT DISTINCT ON (c.oid::regclass) c.oid::regclass AS r FROM names c ORDER BY c.oid::regclass",
        "SELECT DISTINCT c.oid::regclass AS r FROM names c ORDER BY c.oid::regclass",
        "SELECT DISTINCT c.oid::regclass AS r FROM names c ORDER BY CAST(c.oid AS PG_CATALOG.REGCLASS)",
        "(SELECT DISTINCT c.oid::regclass AS r FROM names c) ORDER BY c.oid::regclass",
        // Rows stored, not returned: their column's type is the table's.
        "SELECT c.oid::regclass AS r INTO snap FROM names c",
        "CREATE TABLE snap AS SELECT c.oid::regclass AS r FROM names c",
        "INSERT INTO snap SELECT c.oid::regclass AS r FROM names c",
        "EXPLAIN SELECT c.oid::regclass AS r FROM names c",
    ] {
        assert_eq!(
            rewrite(sql, &with_catalog()).unwrap(),
            Rewrite::Unchanged,
            "{sql}"
        );
    }
    // Without catalog substitutes there is nothing to wrap it in.
    assert_eq!(
        rewrite("SELECT m.id::regclass AS r FROM model_metadata m", &v2()).unwrap(),
        Rewrite::Rewritten("SELECT m.id::regclass AS r FROM public.model_metadata_v2 m".to_owned())
    );
}

#[test]
fn a_cached_shape_wraps_the_same_result_columns_whatever_its_constants() {
    let cache = RewriteCache::default();
    let mut recent = RecentShapes::default();
    let targets = with_catalog();
    // The first column is not wrapped in either side, the second side's being a constant.
    for (oid, schema) in [("1", "public"), ("22", "app"), ("333", "x_y")] {
        let sql = format!(
            "SELECT $1::regclass AS r, c.oid::regclass AS s, '{schema}' AS n FROM names c WHERE c.oid > {oid} UNION SELECT {oid}::regclass, $2::regclass, 'x' FROM names c"
        );
        let expected = format!(
            "SELECT {WRAP}($1)::pg_catalog.text)::regclass AS r, viewgate_catalog_v2.version_relation_text(c.oid::regclass) AS s, '{schema}' AS n FROM names c WHERE c.oid > {oid} UNION SELECT {oid}::regclass, viewgate_catalog_v2.version_relation_text({WRAP}($2)::pg_catalog.text)::regclass), 'x' FROM names c"
        );
        let outcome = rewrite_cached_in(&cache, &mut recent, &sql, &targets).shared();
        assert_eq!(*outcome, Ok(Rewrite::Rewritten(expected)), "{sql}");
    }
}
