//! Rewriter behaviour for what must never reach a managed table unrewritten: names spelled
//! with escapes, bodies and definitions Postgres reads later, built-ins that read a relation
//! named in a string, other versions' views, texts too long to check. Many were found by the
//! red-team passes and the fuzzer of issue 11.

use super::*;

#[test]
fn a_name_spelled_with_unicode_escapes_is_refused_not_passed_through() {
    for sql in [
        r#"SELECT * FROM U&"\006Dodel_metadata""#,
        r#"SELECT * FROM public.u&"model\005Fmetadata" m"#,
    ] {
        let error = rewrite(sql, &v2()).unwrap_err();
        assert!(error.reason.contains("unusual spelling"), "{sql}: {error}");
    }
    assert_eq!(
        rewrite(r#"SELECT * FROM U&"\0074" t"#, &v2()).unwrap(),
        Rewrite::Unchanged
    );
}

#[test]
fn built_ins_that_read_a_named_relation_are_refused_where_they_may_read_the_base_table() {
    for sql in [
        "SELECT query_to_xml('SELECT * FROM model_metadata', true, false, '')",
        "SELECT table_to_xml('model_metadata', true, false, '')",
        "SELECT schema_to_xml('public', true, false, '')",
        "SELECT database_to_xmlschema(true, false, '')",
    ] {
        let error = rewrite(sql, &v2()).unwrap_err();
        assert!(error.reason.contains("model_metadata_v2"), "{sql}: {error}");
    }
    for sql in [
        "SELECT query_to_xml('SELECT * FROM model_metadata_v2', true, false, '')",
        "SELECT table_to_xml('model_metadata_v2', true, false, '')",
    ] {
        assert_eq!(rewrite(sql, &v2()).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}

#[test]
fn bodies_that_may_run_sql_the_proxy_cannot_see_are_refused() {
    for (sql, at) in [
        (
            "DO $$ BEGIN EXECUTE 'SELECT 1 FROM model' || '_metadata'; END $$",
            "EXECUTE",
        ),
        (
            "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT histogram_bounds::text FROM pg_stats $$",
            "pg_stats",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS 'return 1'",
            "AS",
        ),
        // Escapes spell the name: Postgres's parser decodes it, the body check sees it.
        (
            r"CREATE FUNCTION f() RETURNS SETOF text LANGUAGE sql AS E'SELECT model_type FROM public.model\x5fmetadata'",
            "AS",
        ),
        (r"DO E'BEGIN PERFORM 1 FROM model\x5fmetadata; END'", "E'"),
    ] {
        let error = rewrite(sql, &v2()).unwrap_err();
        assert_eq!(
            error.position,
            Some(sql.find(at).unwrap() + 1),
            "{sql}: {error}"
        );
    }
    for sql in [
        "DO $$ BEGIN RAISE NOTICE 'executed'; END $$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    ] {
        assert_eq!(rewrite(sql, &v2()).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}

#[test]
fn policies_and_statistics_views_in_definitions_are_refused() {
    for sql in [
        "CREATE POLICY p ON probe USING ((SELECT count(*) FROM model_metadata) > 0)",
        "ALTER POLICY p ON probe WITH CHECK (EXISTS (SELECT FROM public.model_metadata))",
    ] {
        let error = rewrite(sql, &v2()).unwrap_err();
        assert!(error.reason.contains("model_metadata_v2"), "{sql}: {error}");
    }
    let catalog = v2().with_catalog_substitutes("viewgate_catalog_v2");
    let sql = "CREATE TEMP VIEW s AS SELECT attname, histogram_bounds FROM pg_stats";
    let error = rewrite(sql, &catalog).unwrap_err();
    assert_eq!(
        error.position,
        Some(sql.find("pg_stats").unwrap() + 1),
        "{error}"
    );
    // Any catalog relation the version reads through a substitute: a definition would keep
    // the real one.
    let sql = "CREATE TEMP VIEW c AS SELECT attname FROM pg_attribute";
    let error = rewrite(sql, &catalog).unwrap_err();
    assert!(error.reason.contains("\"pg_attribute\""), "{error}");
    let sql = "CREATE TEMP VIEW c AS SELECT oprname FROM pg_operator";
    assert_eq!(rewrite(sql, &catalog).unwrap(), Rewrite::Unchanged);
}

/// A name the session's search_path pins elsewhere (a temporary table, another schema) is
/// qualified with that schema in a definition too, so that Postgres cannot resolve it to the
/// managed table if the proxy's belief is stale.
#[test]
fn a_pinned_name_is_qualified_in_definitions() {
    use crate::rewriter::shadowing::Pin;
    let pinned = v2().with_pins(&[(
        "model_metadata".into(),
        Pin {
            schema: "pg_temp".into(),
        },
    )]);
    for (sql, expected) in [
        (
            "CREATE TEMP VIEW vv AS SELECT * FROM model_metadata",
            "CREATE TEMP VIEW vv AS SELECT * FROM pg_temp.model_metadata AS model_metadata",
        ),
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO SELECT * FROM model_metadata",
            "CREATE RULE r AS ON INSERT TO t DO ALSO SELECT * FROM pg_temp.model_metadata AS model_metadata",
        ),
        (
            "CREATE TABLE c (LIKE model_metadata, r model_metadata)",
            "CREATE TABLE c (LIKE pg_temp.model_metadata, r pg_temp.model_metadata)",
        ),
    ] {
        assert_eq!(
            rewrite(sql, &pinned).unwrap(),
            Rewrite::Rewritten(expected.into()),
            "{sql}"
        );
    }
}

#[test]
fn text_search_built_ins_running_a_query_are_refused_where_it_may_name_the_table() {
    for sql in [
        "SELECT * FROM ts_stat('SELECT to_tsvector(''simple'', model_type) FROM public.model_metadata')",
        "SELECT * FROM ts_stat($1)",
        "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ''b''::tsquery FROM model_metadata')",
        r"SELECT * FROM ts_stat(E'SELECT v FROM model\x5fmetadata')",
    ] {
        assert!(rewrite(sql, &v2()).is_err(), "{sql}");
    }
    for sql in [
        "SELECT * FROM ts_stat('SELECT v FROM documents')",
        "SELECT ts_rewrite('a'::tsquery, 'a'::tsquery, 'b'::tsquery)",
    ] {
        assert_eq!(rewrite(sql, &v2()).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}

/// Nineteenth red-team pass (P2): tablefunc's `crosstab` and `connectby` and xml2's
/// `xpath_table` run SQL made of their text arguments; unqualified or in the schema the
/// extension was created in, any argument that may name the table (or is not a constant) is
/// refused, and calls over the version's view pass.
#[test]
fn extension_functions_building_sql_from_strings_are_refused_where_it_may_name_the_table() {
    let v1 = VersionTargets::seed_example("v1")
        .with_other_versions_views(vec![RelationName::new("public", "model_metadata_v2")]);
    for sql in [
        "SELECT * FROM crosstab('SELECT model_type, ''k'', schema_version::text FROM model_metadata ORDER BY 1') AS ct(row_name text, c1 text)",
        "SELECT * FROM public.crosstab('SELECT 1, 2, 3', 'SELECT DISTINCT model_type FROM public.model_metadata') AS ct(a int, b int)",
        "SELECT * FROM ext.crosstab3($1)",
        "SELECT * FROM crosstab2('SELECT a, b, c FROM model_metadata_v2')",
        "SELECT * FROM connectby('model_metadata', 'model_type', 'schema_version::text', '777', 0) AS t(keyid text, parent_keyid text, level int)",
        "SELECT * FROM connectby('model_metadata_v1', 'id::text', '(SELECT max(model_type) FROM model_metadata)', '1', 0) AS t(a text, b text, c int)",
        "SELECT * FROM connectby('model_' || 'metadata', 'id::text', 'id::text', '1', 0) AS t(a text, b text, c int)",
        "SELECT * FROM xpath_table('model_type', '''<a>''||schema_version||''</a>''', 'public.model_metadata', '/a', 'true') AS t(k text, v text)",
        "SELECT * FROM public.xpath_table('id', 'x', 'model_metadata_v1', '/a', 'id IN (SELECT id FROM model_metadata)') AS t(k text, v text)",
    ] {
        let error = rewrite(sql, &v1).unwrap_err();
        assert!(error.position.is_some(), "{sql}: {error}");
    }
    for sql in [
        "SELECT * FROM crosstab('SELECT model_name, model_version, id::text FROM model_metadata_v1 ORDER BY 1') AS ct(a text, b text)",
        "SELECT * FROM public.connectby('model_metadata_v1', 'id::text', 'model_name', '1', 0, '~') AS t(a text, b text, c int, d text)",
        "SELECT * FROM connectby('documents', 'id', 'parent', '1', 0) AS t(a text, b text, c int)",
    ] {
        assert_eq!(rewrite(sql, &v1).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}

/// Too long for Postgres's parser to check: sqlparser's reading stands, unless a managed name
/// is left where it made no edit (`UNION ALL TABLE t`, which it reads differently).
#[test]
fn a_text_too_long_to_check_is_refused_where_a_managed_name_is_left_unrewritten() {
    let padding = "x".repeat(crate::rewriter::postgres_grammar::MAX_CHECKED_BYTES);
    let hidden = format!(
        "SELECT NULL::bigint, 'a', 'b', '{padding}', '{{}}'::jsonb, now(), 0 UNION ALL TABLE model_metadata"
    );
    let error = rewrite(&hidden, &v2()).unwrap_err();
    assert_eq!(
        error.position,
        Some(hidden.rfind("model_metadata").unwrap() + 1),
        "{error}"
    );
    let bulk = format!(
        "INSERT INTO model_metadata (model_name, model_version) VALUES ('{padding}', '1') RETURNING model_metadata.id"
    );
    assert_eq!(
        rewrite(&bulk, &v2()).unwrap(),
        Rewrite::Rewritten(bulk.replacen(
            "INTO model_metadata",
            "INTO public.model_metadata_v2 AS model_metadata",
            1
        ))
    );
}

/// Found by a second red-team pass.
#[test]
fn oids_escapes_comments_and_long_texts_do_not_hide_a_managed_table() {
    let padding = "x".repeat(crate::rewriter::postgres_grammar::MAX_CHECKED_BYTES);
    for sql in [
        "SELECT table_to_xml('16386', true, false, '')".to_owned(),
        r#"SELECT query_to_xml('SELECT model_type FROM U&"model\005fmetadata"', true, false, '')"#
            .to_owned(),
        "SELECT * FROM ts_stat('SELECT v FROM public/**/.model_metadata')".to_owned(),
        r#"DO $$ BEGIN PERFORM 1 FROM U&"model\005fmetadata"; END $$"#.to_owned(),
        "CREATE FUNCTION f() RETURNS SETOF text LANGUAGE sql AS $$ SELECT model_type FROM public /* */ . model_metadata $$".to_owned(),
        format!("SELECT query_to_xml('SELECT model_type FROM model_metadata', true, false, '')::text, length('{padding}')"),
        format!("DO $$ BEGIN EXECUTE 'SELECT 1'; RAISE NOTICE '{padding}'; END $$"),
    ] {
        assert!(rewrite(&sql, &v2()).is_err(), "{}", &sql[..sql.len().min(120)]);
    }
}

/// Another version's view named explicitly reads that version's columns: refused, wherever
/// it stands (FROM, a body, a query text); the version's own view is allowed.
#[test]
fn another_version_s_view_is_refused_and_the_own_allowed() {
    let v1 = VersionTargets::seed_example("v1")
        .with_other_versions_views(vec![RelationName::new("public", "model_metadata_v2")]);
    for sql in [
        "SELECT model_type FROM model_metadata_v2",
        "SELECT * FROM public.model_metadata_v2 m JOIN x USING (id)",
        "SELECT query_to_xml('SELECT * FROM model_metadata_v2', true, false, '')",
        "CREATE FUNCTION f() RETURNS SETOF text LANGUAGE sql AS $$ SELECT model_type FROM model_metadata_v2 $$",
    ] {
        let error = rewrite(sql, &v1).unwrap_err();
        assert!(error.position.is_some(), "{sql}: {error}");
    }
    let error = rewrite("SELECT pg_get_viewdef('model_metadata_v2'::regclass)", &v1).unwrap_err();
    assert_eq!(error.position, Some(23), "{error}");
    for sql in [
        "SELECT model_name FROM model_metadata_v1",
        "SELECT pg_get_viewdef('model_metadata_v1'::regclass)",
    ] {
        assert_eq!(rewrite(sql, &v1).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}

/// Another version's catalog substitutes list that version's columns (and their helper views
/// name them as values): refused like its views, relations and functions alike; the
/// version's own are what the rewriter writes, and stay allowed.
#[test]
fn another_version_s_catalog_substitutes_are_refused_and_the_own_allowed() {
    let v1 = VersionTargets::seed_example("v1").with_catalog_substitutes("viewgate_catalog_v1");
    for (sql, at) in [
        (
            "SELECT base_column FROM viewgate_catalog_v2.managed_columns",
            "viewgate",
        ),
        (
            "SELECT attname FROM pg_class c, VIEWGATE_CATALOG_V2.pg_attribute a",
            "VIEW",
        ),
        (
            "SELECT viewgate_catalog_v3.col_description(1, 2)",
            "viewgate",
        ),
        ("SELECT 'viewgate_catalog_v2.pg_class'::regclass", "'"),
    ] {
        let error = rewrite(sql, &v1).unwrap_err();
        assert_eq!(
            error.position,
            sql.find(at).map(|i| i + 1),
            "{sql}: {error}"
        );
        assert!(
            error.reason.contains("another version's catalog"),
            "{error}"
        );
    }
    assert_eq!(
        rewrite("SELECT * FROM viewgate_catalog_v1.managed_columns", &v1).unwrap(),
        Rewrite::Unchanged
    );
    // A version without substitutes has none of its own.
    let bare = VersionTargets::seed_example("v1");
    assert!(rewrite("SELECT * FROM viewgate_catalog_v1.pg_class", &bare).is_err());
}

/// Found by the fuzzer: two calls of one shape whose verdicts differ by a constant (a `U&`
/// name inside the query text) are never served each other's verdict by the cache.
#[test]
fn the_cache_never_serves_a_query_built_in_another_constant_s_verdict() {
    let cache = crate::rewriter::RewriteCache::default();
    let targets = v2();
    for sql in [
        "SELECT query_to_xml('SELECT 1', true, false, '')",
        r#"SELECT query_to_xml('SELECT model_type FROM U&"model\005fmetadata"', true, false, '')"#,
        "SELECT table_to_xml('other', true, false, '')",
        "SELECT table_to_xml('16386', true, false, '')",
    ] {
        assert_eq!(
            *crate::rewriter::rewrite_cached(&cache, sql, &targets),
            rewrite(sql, &targets),
            "{sql}"
        );
    }
}

/// information_schema on the search_path would make an unqualified `columns` read the real
/// one: every statement the proxy sees that may put it there is refused at a version with
/// catalog substitutes, at the value; other paths and other settings pass.
#[test]
fn information_schema_on_the_search_path_is_refused_where_the_catalog_is_substituted() {
    let v1 = VersionTargets::seed_example("v1").with_catalog_substitutes("viewgate_catalog_v1");
    for (sql, at) in [
        (
            "SET search_path = public, information_schema",
            "information_schema",
        ),
        (
            "SET LOCAL search_path TO \"information_schema\"",
            "\"information",
        ),
        ("SET search_path = 'public, Information_Schema'", "'"),
        (
            "ALTER ROLE app SET search_path = information_schema",
            "information_schema",
        ),
        (
            "ALTER DATABASE app SET search_path TO information_schema, public",
            "information_schema",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = information_schema AS 'SELECT 1'",
            "information_schema",
        ),
        (
            "SELECT set_config('search_path', 'information_schema', false)",
            "'information_schema'",
        ),
        (
            "SELECT pg_catalog.set_config('search_path', 'information' || '_schema', false)",
            "pg_catalog",
        ),
        ("SELECT set_config($1, 'x', false)", "set_config"),
        (r#"SET search_path = U&"information\005fschema""#, "U&"),
        (
            "DO $$ BEGIN PERFORM set_config(chr(115) || 'earch_path', 'x', false); END $$",
            "set_config",
        ),
    ] {
        let Err(error) = rewrite(sql, &v1) else {
            panic!("{sql} passed");
        };
        assert!(error.reason.contains("search_path"), "{sql}: {error}");
        assert_eq!(
            error.position,
            sql.find(at).map(|i| i + 1),
            "{sql}: {error}"
        );
    }
    for sql in [
        "SET search_path = public, tenant_a",
        "SELECT set_config('search_path', 'tenant_a', false)",
        "SELECT set_config('app.tenant', $1, false)",
        "SELECT column_name FROM information_schema.columns",
    ] {
        assert!(rewrite(sql, &v1).is_ok(), "{sql}");
    }
    let long = format!(
        "SET search_path = information_schema; SELECT length('{}')",
        "x".repeat(17_000)
    );
    assert!(rewrite(&long, &v1).is_err());
    // Without substitutes the constant forms are refused too (another version's substitutes
    // on the path would be read); values the proxy cannot read are not.
    let bare = VersionTargets::seed_example("v1");
    assert!(rewrite("SET search_path = information_schema", &bare).is_err());
    assert!(rewrite("SELECT set_config('search_path', $1, false)", &bare).is_ok());
}

/// Found by the fourth red-team pass: DDL that calls a built-in under another name (an
/// operator or aggregate over `ts_rewrite` read base rows whole; over `pg_get_viewdef`,
/// another version's SQL; over `set_config`, a path with information_schema) is refused.
#[test]
fn built_ins_called_under_another_name_are_refused() {
    let v1 = VersionTargets::seed_example("v1").with_catalog_substitutes("viewgate_catalog_v1");
    for (sql, function) in [
        (
            "CREATE OPERATOR pg_temp.@@@ (LEFTARG = tsquery, RIGHTARG = text, FUNCTION = ts_rewrite)",
            "ts_rewrite",
        ),
        (
            "CREATE AGGREGATE pg_temp.tr(text) (SFUNC = ts_rewrite, STYPE = tsquery, INITCOND = 'x')",
            "ts_rewrite",
        ),
        (
            "CREATE OPERATOR pg_temp.## (RIGHTARG = oid, FUNCTION = pg_catalog.pg_get_viewdef)",
            "pg_get_viewdef",
        ),
        (
            "CREATE AGGREGATE pg_temp.sp(text, bool) (SFUNC = set_config, STYPE = text, INITCOND = 'search_path')",
            "set_config",
        ),
        (
            "CREATE CAST (int AS text) WITH FUNCTION query_to_xml(text, bool, bool, text)",
            "query_to_xml",
        ),
    ] {
        let Err(error) = rewrite(sql, &v1) else {
            panic!("{sql} passed");
        };
        assert!(
            error.reason.contains("under another name"),
            "{sql}: {error}"
        );
        assert_eq!(error.position, sql.find(function).map(|i| i + 1), "{sql}");
    }
    assert!(
        rewrite(
            "CREATE OPERATOR pg_temp.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq)",
            &v1
        )
        .is_ok()
    );
}

/// Found by the fourth red-team pass: another version's catalog substitutes reached without
/// naming a relation in them (a relation or schema named in a string, a search_path, a body,
/// a text too long to check) are refused.
#[test]
fn another_version_s_substitutes_are_refused_by_every_path() {
    let v1 = VersionTargets::seed_example("v1").with_catalog_substitutes("viewgate_catalog_v1");
    let padding = "x".repeat(17_000);
    for sql in [
        "SELECT table_to_xml('viewgate_catalog_v2.pg_stats', true, false, '')".to_owned(),
        "SELECT schema_to_xml('viewgate_catalog_v2', true, false, '')".to_owned(),
        "SELECT query_to_xml('SELECT * FROM viewgate_catalog_v2.columns', true, false, '')"
            .to_owned(),
        "SET search_path = viewgate_catalog_v2, public".to_owned(),
        "SELECT set_config('search_path', 'viewgate_catalog_v2', false)".to_owned(),
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql SET search_path = 'viewgate_catalog_v2' AS 'SELECT 1'".to_owned(),
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ SET SCHEMA 'viewgate_catalog_v2' $$"
            .to_owned(),
        format!("SELECT base_column, '{padding}' FROM viewgate_catalog_v2.managed_columns"),
    ] {
        assert!(rewrite(&sql, &v1).is_err(), "{}", &sql[..sql.len().min(100)]);
    }
    assert!(
        rewrite(
            "SELECT table_to_xml('viewgate_catalog_v1.pg_stats', true, false, '')",
            &v1
        )
        .is_ok()
    );
}

/// Found by the fourth red-team pass: row types that carry columns the version does not have
/// (another version's view's, a managed table's array type by its internal name) are refused,
/// short or long; the version's own array type is written `model_metadata[]`.
#[test]
fn row_types_with_other_columns_are_refused() {
    let v1 = VersionTargets::seed_example("v1")
        .with_other_versions_views(vec![RelationName::new("public", "model_metadata_v2")]);
    let padding = "x".repeat(17_000);
    for sql in [
        "SELECT json_populate_record((NULL::_model_metadata)[1], '{}')".to_owned(),
        "SELECT NULL::model_metadata_v2".to_owned(),
        "SELECT NULL::public._model_metadata_v2".to_owned(),
        format!("SELECT NULL::_model_metadata, '{padding}'"),
    ] {
        assert!(
            rewrite(&sql, &v1).is_err(),
            "{}",
            &sql[..sql.len().min(100)]
        );
    }
    let Ok(Rewrite::Rewritten(sql)) = rewrite("SELECT NULL::model_metadata[]", &v1) else {
        panic!("model_metadata[] is rewritten");
    };
    assert!(sql.contains("model_metadata_v1"), "{sql}");
}

/// Found by the fifth red-team pass: a printer with a substitute called where sqlparser's
/// reading cannot send it there (DDL, syntax it cannot read, a name spelled with escapes, a
/// body) is refused rather than left to the real one.
#[test]
fn printers_that_cannot_be_substituted_are_refused() {
    let v1 = VersionTargets::seed_example("v1").with_catalog_substitutes("viewgate_catalog_v1");
    for sql in [
        "CREATE TEMP TABLE t (d text DEFAULT pg_get_viewdef(16793))",
        "CREATE DOMAIN d AS int CHECK (VALUE::text <> pg_get_indexdef(17024))",
        r#"SELECT U&"pg\005fget\005fviewdef"(16793)"#,
        "SELECT * FROM ROWS FROM (pg_get_viewdef(16793))",
        "SELECT TRIM(BOTH FROM pg_get_indexdef(17024))",
        "CREATE FUNCTION pg_temp.v(oid) RETURNS text LANGUAGE sql AS $$ SELECT pg_get_viewdef($1) $$",
        "SELECT query_to_xml('SELECT pg_get_viewdef(16793)', true, false, '')",
    ] {
        assert!(rewrite(sql, &v1).is_err(), "{sql}");
    }
    let Ok(Rewrite::Rewritten(sql)) = rewrite("SELECT pg_get_viewdef(16793)", &v1) else {
        panic!("a plain call is substituted");
    };
    assert!(sql.contains("viewgate_catalog_v1.pg_get_viewdef"), "{sql}");
}

/// Found by the fifth red-team pass: `SET SCHEMA` with its value split into adjacent literals
/// (one string to Postgres), or spelled with escapes in a body, put information_schema on
/// the path; and a catalog relation in a text too long to check (`(TABLE pg_catalog.pg_stats)`,
/// which sqlparser does not read as a relation) read the real one, whose verdict the cache then
/// served to short texts of the same shape.
#[test]
fn split_schema_values_and_long_catalog_reads_are_refused() {
    let v1 = VersionTargets::seed_example("v1").with_catalog_substitutes("viewgate_catalog_v1");
    let padding = "x".repeat(17_000);
    for sql in [
        "SET SCHEMA 'information_'\n'schema'".to_owned(),
        "SET LOCAL SCHEMA 'viewgate_catalog_'\n'v2'".to_owned(),
        r"CREATE FUNCTION pg_temp.sp() RETURNS int LANGUAGE sql AS $$ SET SCHEMA E'information\x5fschema'; SELECT 1 $$".to_owned(),
        format!("SELECT s.attname FROM (TABLE pg_catalog.pg_stats) s WHERE length('{padding}') > 0"),
        format!("SELECT column_name FROM (TABLE information_schema.columns) c WHERE length('{padding}') > 0"),
    ] {
        assert!(rewrite(&sql, &v1).is_err(), "{}", &sql[..sql.len().min(100)]);
    }
    let cache = crate::rewriter::RewriteCache::default();
    let long = format!("SELECT relname FROM pg_class WHERE relname <> '{padding}'");
    let short = "SELECT relname FROM pg_class WHERE relname <> 'x'";
    assert!(crate::rewriter::rewrite_cached(&cache, &long, &v1).is_ok());
    assert_eq!(
        *crate::rewriter::rewrite_cached(&cache, short, &v1),
        rewrite(short, &v1)
    );
    assert_eq!(cache.stats().hits, 0, "the long text taught no shape");
}

/// Found by the sixth red-team pass: a string constant continued after a `--` comment
/// (`'…model_' -- c⏎'metadata'`) is one string to the server but two to the parser the proxy
/// asks, so a body or a search_path value split that way was judged in halves: refused.
#[test]
fn strings_continued_after_a_comment_are_refused() {
    let v1 = VersionTargets::seed_example("v1").with_catalog_substitutes("viewgate_catalog_v1");
    for sql in [
        "DO 'BEGIN RAISE NOTICE ''%'', (SELECT string_agg(model_type, '','') FROM public.model_' -- c\n'metadata); END'",
        "CREATE FUNCTION pg_temp.r() RETURNS SETOF text LANGUAGE sql AS 'SELECT m::text FROM model_' -- c\r'metadata m'",
        "SET SCHEMA 'information_' -- c\n'schema'",
        "SELECT 1; SET search_path = 'viewgate_' -- one\n -- two\n'catalog_v2'",
    ] {
        let Err(error) = rewrite(sql, &v1) else {
            panic!("{sql} passed");
        };
        assert!(error.reason.contains("after a comment"), "{sql}: {error}");
    }
    // A comment after a string that nothing continues, and strings joined by a newline alone
    // (which both parsers join), are read as before.
    assert!(rewrite("SELECT 'a' -- c\nFROM model_metadata", &v1).is_ok());
    assert!(rewrite("SELECT 'a'\n'b' FROM model_metadata", &v1).is_ok());
}

/// Found by the seventh red-team pass: with standard_conforming_strings off a body's
/// `model\x5fmetadata` is the managed table, and `UPDATE pg_settings` put information_schema
/// on the search_path without a word the proxy looked for. Whatever may turn the setting off,
/// or writes pg_settings, is refused at every version with managed tables.
#[test]
fn what_may_change_how_later_text_reads_is_refused() {
    let v1 = VersionTargets::seed_example("v1").with_catalog_substitutes("viewgate_catalog_v1");
    let plain = VersionTargets::seed_example("v1");
    for sql in [
        "SET standard_conforming_strings = off",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        "SELECT set_config('standard_conforming_strings','off',false); SELECT 'a\\' AS x, ' AS y, (SELECT 1) AS z --'",
        "SET U&\"standard\\005fconforming_strings\" = off",
        "UPDATE pg_settings SET setting = 'information_sch' || 'ema' WHERE name = 'search' || '_path'",
        "CREATE VIEW pg_temp.s AS SELECT * FROM pg_settings",
        "ALTER ROLE app SET standard_conforming_strings = off",
    ] {
        for targets in [&v1, &plain] {
            let Err(error) = rewrite(sql, targets) else {
                panic!("{sql} passed");
            };
            assert!(
                error.reason.contains("standard_conforming_strings on"),
                "{sql}: {error}"
            );
        }
    }
    // In a body, whose values may be computed: the words themselves; set_config only with a
    // backslash in the body.
    for sql in [
        "DO 'BEGIN UPDATE pg_settings SET setting = 1 WHERE false; END'",
        "DO $$BEGIN PERFORM set_config('x.y', E'\\\\', false); END$$",
        "CREATE FUNCTION pg_temp.f() RETURNS void LANGUAGE plpgsql AS $$BEGIN EXECUTE 'SET standard_conforming_strings = off'; END$$",
    ] {
        assert!(rewrite(sql, &plain).is_err(), "{sql} passed");
    }
    for sql in [
        "SET standard_conforming_strings = on",
        "SELECT name, setting FROM pg_settings WHERE name = 'search_path'",
        "SELECT set_config('application_name', 'app', false)",
        "DO $$BEGIN PERFORM set_config('app.tenant', '7', false); END$$",
    ] {
        assert!(
            rewrite(sql, &plain).is_ok(),
            "{sql}: {:?}",
            rewrite(sql, &plain)
        );
    }
}
