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
            "SELECT t.typname FROM pg_type t WHERE t.oid = viewgate_catalog_v2.version_regtype(($1)::pg_catalog.text)::regtype",
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
            "SELECT format('%I.%I', 'public', $1)::regclass",
            "SELECT viewgate_catalog_v2.version_regclass((format('%I.%I', 'public', $1))::pg_catalog.text)::regclass",
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
        "SELECT c.oid::regclass, a.attrelid::regclass = c.oid FROM names c, names a",
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
    // A regclass kept as one, a type printed, and an unaliased select-list item, which
    // Postgres names after the expression (`relid`): as written.
    for sql in [
        "SELECT c.oid::regclass FROM names c ORDER BY 1",
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
