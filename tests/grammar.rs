//! Statement forms only PostgreSQL's own grammar reads right, through the proxy against a real
//! Postgres: each one reads the client's version (v1 has 5 columns, the base table 7; v2 has
//! 7 too, and reads a NULL `model_type` as 'neural_network'), or is refused with 42601 and a
//! position; never the base table.

use crate::common;

use common::versions::{connect_with, psql, versioned_proxy};

/// The first row `sql` returns for a psql client at `version`, as its columns, checked to be
/// the version's: v1's five, or v2's seven with its computed `model_type`.
fn columns(proxy: &common::TestProxy, version: &str, sql: &str) -> usize {
    let out = psql(proxy, Some(version), sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let line = out
        .lines()
        .next()
        .unwrap_or_else(|| panic!("{sql}: no row"));
    if version == "v2" {
        assert!(line.contains("neural_network"), "{sql}: {line}");
    }
    line.split('|').count()
}

#[test]
fn forms_sqlparser_misreads_or_cannot_read_see_the_version() {
    let proxy = versioned_proxy();
    proxy.admin("INSERT INTO model_metadata (model_name, model_version) VALUES ('bert', '1')");
    for (version, expected) in [("v1", 5), ("v2", 7)] {
        // `TABLE` alone, and in a set operation (which sqlparser reads as naming no table).
        assert_eq!(columns(&proxy, version, "TABLE model_metadata"), expected);
        assert_eq!(
            columns(
                &proxy,
                version,
                "SELECT * FROM model_metadata UNION ALL TABLE model_metadata"
            ),
            expected
        );
        // ROWS FROM: sqlparser cannot parse it; Postgres's parser places the table.
        assert_eq!(
            columns(
                &proxy,
                version,
                "SELECT * FROM ROWS FROM (generate_series(1, 1)) AS g, model_metadata"
            ),
            expected + 1
        );
        // A WITH item named like the table does not hide an UPDATE's target from Postgres.
        assert_eq!(
            columns(
                &proxy,
                version,
                "WITH model_metadata AS (SELECT 1 AS id) UPDATE model_metadata SET model_version = '2' RETURNING *"
            ),
            expected
        );
    }
    // A statement naming no managed table, which sqlparser cannot parse, is simply forwarded.
    assert_eq!(
        psql(
            &proxy,
            Some("v1"),
            "SELECT * FROM ROWS FROM (generate_series(1, 2)) AS model_metadata"
        )
        .unwrap(),
        "1\n2"
    );
}

#[test]
fn what_cannot_be_rewritten_is_refused_with_its_position() {
    let proxy = versioned_proxy();
    let sql = "COPY model_metadata TO STDOUT WITH (FORMAT csv, FORCE_QUOTE *)";
    let error = psql(&proxy, Some("v1"), sql).unwrap_err();
    assert!(
        error.contains("viewgate cannot rewrite this statement for version v1")
            && error.contains("at character 6"),
        "{error}"
    );
    // The extended protocol too: the statement's own error, SQLSTATE 42601.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = connect_with(&proxy, "-c%20viewgate.version%3Dv2").await;
        assert_eq!(
            client
                .prepare("TABLE model_metadata")
                .await
                .unwrap()
                .columns()
                .len(),
            7
        );
        // A refused statement with a parameter: the refusal itself answers the Parse (before,
        // the Bind failed with 08P01 against the DO block that stood in for it).
        // (Nested deeper than viewgate checks: refused, never sent unchecked.)
        let deep = format!(
            "{}SELECT * FROM model_metadata WHERE id = $1{}",
            "SELECT * FROM (".repeat(40),
            ") s".repeat(40)
        );
        let error = client.query(&deep, &[&1i64]).await.unwrap_err();
        let error = error.as_db_error().expect("an error from the server");
        assert_eq!(error.code().code(), "42601", "{error:?}");
        assert!(
            error.message().contains("viewgate cannot rewrite"),
            "{error:?}"
        );
        // A refused SET through the extended protocol: its own SQLSTATE and message.
        let error = client
            .execute("SET viewgate.version = 'v9'", &[])
            .await
            .unwrap_err();
        let error = error.as_db_error().expect("an error from the server");
        assert_eq!(error.code().code(), "22023", "{error:?}");
        assert!(
            error.message().contains("unknown viewgate version"),
            "{error:?}"
        );
        // The session goes on, at its version.
        let row = client
            .query_one(
                "SELECT count(*) FROM model_metadata WHERE id > $1",
                &[&0i64],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 0);
    });
}

/// The thirty-fourth red-team pass: Postgres binds `public.model_metadata.id` to the
/// unaliased table; once viewgate gives the table its name as alias and drops the schema,
/// `model_metadata.id` would bind to the nearest item of that name, a subquery's here (an
/// UPDATE wrote four rows where Postgres writes one). Such a statement is refused; the
/// qualified form alone still reads the table. And where neither sqlparser nor this crate's
/// lexer reads a text (`xmlelement(name …)`, a `U&` constant), the word in a `--table`
/// comment is not the `TABLE` keyword: the inner reference keeps its alias.
#[test]
fn a_qualified_column_never_moves_to_another_item_of_the_tables_name() {
    let proxy = versioned_proxy();
    proxy.admin(
        "INSERT INTO model_metadata (id, model_name, model_version) VALUES (1, 'a', '1'), (2, 'b', '1'), (4, 'c', '1')",
    );
    for sql in [
        "SELECT (SELECT public.model_metadata.id FROM (SELECT 42 AS id) AS model_metadata) FROM model_metadata",
        "UPDATE model_metadata SET model_name = 'x' WHERE EXISTS (SELECT 1 FROM (SELECT 4 AS id) AS model_metadata WHERE public.model_metadata.id = 4)",
        "WITH model_metadata AS (SELECT 7 AS id) SELECT public.model_metadata.id FROM public.model_metadata, model_metadata",
        // The thirty-ninth pass: an XMLTABLE's alias.
        "SELECT (SELECT public.model_metadata.id FROM XMLTABLE('/r' PASSING ('<r><id>42</id></r>'::xml) COLUMNS id int) AS model_metadata) FROM model_metadata",
    ] {
        let error = psql(&proxy, Some("v1"), sql).unwrap_err();
        assert!(
            error.contains("another FROM item is also named \"model_metadata\""),
            "{sql}: {error}"
        );
    }
    assert_eq!(
        psql(
            &proxy,
            Some("v1"),
            "SELECT public.model_metadata.id FROM model_metadata ORDER BY public.model_metadata.id"
        )
        .unwrap(),
        "1\n2\n4"
    );
    let counts = psql(
        &proxy,
        Some("v1"),
        "SELECT U&'\\0041', xmlelement(name a, 1)::text, (SELECT count(*) FROM --table\n model_metadata WHERE model_metadata.id = 1) FROM model_metadata ORDER BY model_metadata.id",
    )
    .unwrap();
    assert_eq!(
        counts, "A|<a>1</a>|1\nA|<a>1</a>|1\nA|<a>1</a>|1",
        "{counts}"
    );
}
