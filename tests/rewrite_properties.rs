//! Properties of the rewriter over generated input: it never panics (whatever the bytes, however
//! deep the nesting), leaves statements that do not name a managed table alone (nor, at a
//! version without catalog substitutes, catalog queries), its fast path's scan finds exactly
//! the names a plain lowered search finds, and for
//! generated SELECT / INSERT / UPDATE / DELETE statements changes exactly the table-name spans,
//! producing SQL that parses.

use proptest::prelude::*;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use viewgate::rewriter::refusal::STRING_CONTINUED_AFTER_COMMENT;
use viewgate::rewriter::rewrite::mentions_managed_table;
use viewgate::rewriter::{RelationName, Rewrite, VersionTargets, ViewTarget, rewrite};

const MANAGED: &str = "model_metadata";
const VIEW: &str = "model_metadata_v2";
/// The view as the rewriter names it: always with its schema.
const QUALIFIED_VIEW: &str = "public.model_metadata_v2";

/// Nesting depths far beyond the parser's recursion limit.
const DEEP_NESTING: [usize; 3] = [500, 5_000, 50_000];

fn v2() -> VersionTargets {
    VersionTargets::new(
        "v2",
        vec![ViewTarget {
            table: RelationName::new("public", MANAGED),
            view: RelationName::new("public", VIEW),
        }],
    )
}

/// Fragments that stress the tokenizer: unterminated quotes and comments, dollar quoting,
/// escapes, multi-byte characters, NUL, statement separators.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("$$".to_owned()),
        Just("$tag$".to_owned()),
        Just("/*".to_owned()),
        Just("*/".to_owned()),
        Just("--".to_owned()),
        Just("\n".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just(";".to_owned()),
        Just(".".to_owned()),
        Just("E'\\".to_owned()),
        Just("::regclass".to_owned()),
        Just("é😀\u{0}".to_owned()),
        Just(MANAGED.to_owned()),
        Just("MODEL_METADATA".to_owned()),
        Just("SELECT".to_owned()),
        Just("FROM".to_owned()),
        Just("WITH".to_owned()),
        Just("INSERT INTO".to_owned()),
        Just("UPDATE".to_owned()),
        Just("DELETE FROM".to_owned()),
        Just("COPY".to_owned()),
        Just("TABLE".to_owned()),
        Just("ONLY".to_owned()),
        Just("AS".to_owned()),
        Just("FOR NO KEY UPDATE".to_owned()),
        Just("JOIN".to_owned()),
        Just("LATERAL".to_owned()),
        Just(" ".to_owned()),
        "[a-z_]{1,8}",
        any::<String>(),
    ]
}

/// `Ok(Unchanged)`, or the refusal of a text Postgres's parser rejects.
/// Unchanged; or refused because Postgres's parser rejects it, or because a string continues
/// after a `--` comment, which is refused at every version with managed tables whatever it
/// names (docs/rewriting.md, "Strings continued after a comment"; which texts continue one is
/// `postgres_parser`'s unit test, checked against PostgreSQL 15).
fn unchanged_or_rejected(outcome: &Result<Rewrite, viewgate::rewriter::RewriteError>) -> bool {
    match outcome {
        Ok(rewrite) => *rewrite == Rewrite::Unchanged,
        Err(error) => {
            error.reason.contains("PostgreSQL's parser rejects it")
                || error.reason == STRING_CONTINUED_AFTER_COMMENT
        }
    }
}

fn token_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(fragment(), 0..40).prop_map(|parts| parts.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_text(prefix in any::<String>(), suffix in any::<String>()) {
        let _ = rewrite(&format!("{prefix}{suffix}"), &v2());
        let _ = rewrite(&format!("{prefix}{MANAGED}{suffix}"), &v2());
    }

    #[test]
    fn never_panics_on_token_soup(sql in token_soup()) {
        if let Ok(Rewrite::Rewritten(output)) = rewrite(&sql, &v2()) {
            prop_assert!(output.contains(VIEW), "{sql:?} -> {output:?}");
        }
    }

    /// Unchanged, or refused ([`unchanged_or_rejected`]): a text the fast path reads, for a
    /// quote and a `--` say, that the check's parser cannot read is never sent (an older server
    /// might read it otherwise).
    #[test]
    fn text_not_naming_a_managed_table_is_never_rewritten(sql in token_soup()) {
        let sql = sql.replace(MANAGED, "").replace("MODEL_METADATA", "");
        prop_assume!(!sql.to_ascii_lowercase().contains(MANAGED));
        let outcome = rewrite(&sql, &v2());
        prop_assert!(unchanged_or_rejected(&outcome), "{sql:?} -> {outcome:?}");
    }

    #[test]
    fn the_mention_scan_finds_exactly_the_names_a_lowered_search_finds(
        pieces in proptest::collection::vec(
            prop_oneof![
                Just("pg_"), Just("PG_CLASS"), Just("pg_clas"), Just("pg_index"), Just("es"),
                Just("information_schema"), Just("INFORMATION_SCHEM"), Just("model_metadata"),
                Just("p"), Just("g"), Just("_"), Just(" "), Just("é"), Just("\"")
            ],
            0..12,
        ),
    ) {
        let text: String = pieces.concat();
        let targets = v2().with_catalog_substitutes("viewgate_catalog_v2");
        let lowered = text.to_ascii_lowercase();
        let expected = targets.table_names().any(|name| lowered.contains(&name.to_ascii_lowercase()));
        prop_assert_eq!(mentions_managed_table(&text, &targets), expected, "{:?}", text);
    }

    #[test]
    fn catalog_text_at_a_version_without_substitutes_is_never_rewritten(sql in token_soup()) {
        let sql = sql.replace(MANAGED, "").replace("MODEL_METADATA", "");
        prop_assume!(!sql.to_ascii_lowercase().contains(MANAGED));
        let sql = format!("SELECT * FROM pg_catalog.pg_class; {sql}");
        let outcome = rewrite(&sql, &v2());
        prop_assert!(unchanged_or_rejected(&outcome), "{sql:?} -> {outcome:?}");
    }

    #[test]
    fn only_table_name_spans_change(statement in statement()) {
        let (input, expected) = statement.render();
        let output = match rewrite(&input, &v2()) {
            Ok(Rewrite::Rewritten(output)) => output,
            other => return Err(TestCaseError::fail(format!("{input:?} gave {other:?}"))),
        };
        prop_assert_eq!(&output, &expected, "input: {}", input);
        prop_assert!(
            Parser::parse_sql(&PostgreSqlDialect {}, &without_parser_gaps(&output)).is_ok(),
            "output does not parse: {}",
            output
        );
    }
}

/// sqlparser cannot read `ONLY`, `SYMMETRIC` or `NO KEY` (the rewriter blanks them for the
/// parser and keeps them in what it sends, since Postgres reads them); remove them likewise
/// before checking that the output parses.
fn without_parser_gaps(sql: &str) -> String {
    sql.replace("ONLY ", "")
        .replace("SYMMETRIC ", "")
        .replace("NO KEY ", "")
}

#[test]
fn deep_nesting_is_an_error_or_a_rewrite_never_a_crash() {
    for depth in DEEP_NESTING {
        let parens = format!(
            "SELECT * FROM {MANAGED} WHERE {}1{}",
            "(".repeat(depth),
            ")".repeat(depth)
        );
        let subqueries = format!(
            "{}SELECT * FROM {MANAGED}{}",
            "SELECT * FROM (".repeat(depth),
            ") s".repeat(depth)
        );
        let unbalanced = format!("SELECT * FROM {MANAGED} WHERE {}", "(".repeat(depth));
        for sql in [parens, subqueries, unbalanced] {
            match rewrite(&sql, &v2()) {
                Err(error) => assert!(error.to_string().contains("version v2"), "{error}"),
                Ok(Rewrite::Rewritten(output)) => assert!(output.contains(VIEW)),
                Ok(Rewrite::Unchanged) => panic!("depth {depth}: a managed table was left alone"),
            }
        }
    }
}

/// A piece of a generated statement: text kept as is, or a table reference the rewriter must
/// replace.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Table {
        written: Written,
        alias: Option<String>,
    },
}

/// Ways a client names the managed table.
#[derive(Debug, Clone, Copy)]
enum Written {
    Bare,
    Upper,
    Mixed,
    Quoted,
    Qualified,
    QualifiedUpper,
    QualifiedQuoted,
}

impl Written {
    fn all() -> [Written; 7] {
        [
            Written::Bare,
            Written::Upper,
            Written::Mixed,
            Written::Quoted,
            Written::Qualified,
            Written::QualifiedUpper,
            Written::QualifiedQuoted,
        ]
    }

    /// (as written, the name as written without its schema, the view as the rewriter names it)
    fn forms(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Written::Bare => ("model_metadata", "model_metadata", QUALIFIED_VIEW),
            Written::Upper => ("MODEL_METADATA", "MODEL_METADATA", QUALIFIED_VIEW),
            Written::Mixed => ("Model_Metadata", "Model_Metadata", QUALIFIED_VIEW),
            Written::Quoted => ("\"model_metadata\"", "\"model_metadata\"", QUALIFIED_VIEW),
            Written::Qualified => ("public.model_metadata", "model_metadata", QUALIFIED_VIEW),
            Written::QualifiedUpper => ("PUBLIC.model_metadata", "model_metadata", QUALIFIED_VIEW),
            Written::QualifiedQuoted => (
                "\"public\".\"model_metadata\"",
                "\"model_metadata\"",
                QUALIFIED_VIEW,
            ),
        }
    }
}

#[derive(Debug, Clone)]
struct Statement(Vec<Piece>);

impl Statement {
    /// The statement as sent, and what the rewriter must make of it (derived here from the
    /// pieces, not from the rewriter).
    fn render(&self) -> (String, String) {
        let mut input = String::new();
        let mut expected = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => {
                    input.push_str(text);
                    expected.push_str(text);
                }
                Piece::Table { written, alias } => {
                    let (as_written, name, view) = written.forms();
                    input.push_str(as_written);
                    expected.push_str(view);
                    match alias {
                        Some(alias) => {
                            input.push_str(alias);
                            expected.push_str(alias);
                        }
                        None => {
                            expected.push_str(" AS ");
                            expected.push_str(name);
                        }
                    }
                }
            }
        }
        (input, expected)
    }
}

fn text(value: &str) -> Piece {
    Piece::Text(value.to_owned())
}

/// Whitespace and comments between words; comments and strings may name the table and must
/// not be touched.
fn gap() -> impl Strategy<Value = Piece> {
    prop_oneof![
        Just(" "),
        Just("  "),
        Just("\n"),
        Just("\t"),
        Just(" /* model_metadata */ "),
        Just(" -- FROM model_metadata\n"),
        Just(" /* é */ "),
    ]
    .prop_map(text)
}

fn table(insert_target: bool) -> impl Strategy<Value = Piece> {
    let aliases = if insert_target {
        prop_oneof![Just(None), Just(Some(" AS m".to_owned()))].boxed()
    } else {
        prop_oneof![
            Just(None),
            Just(Some(" m".to_owned())),
            Just(Some(" AS m".to_owned())),
            Just(Some(" AS \"MM\"".to_owned())),
        ]
        .boxed()
    };
    (proptest::sample::select(Written::all().to_vec()), aliases)
        .prop_map(|(written, alias)| Piece::Table { written, alias })
}

fn predicate(depth: u32) -> BoxedStrategy<Vec<Piece>> {
    let leaf = prop_oneof![
        Just(vec![text("id = 1")]),
        Just(vec![text("model_name = 'model_metadata'")]),
        Just(vec![text("hyperparameters ->> 'k' = 'v'")]),
        Just(vec![text("id = ANY($1)")]),
        Just(vec![text("id BETWEEN SYMMETRIC 1 AND 5")]),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        leaf,
        (table(false), predicate(depth - 1)).prop_map(|(table, inner)| {
            let mut pieces = vec![text("id IN (SELECT id FROM "), table, text(" WHERE ")];
            pieces.extend(inner);
            pieces.push(text(")"));
            pieces
        }),
        (table(false), gap()).prop_map(|(table, gap)| vec![
            text("EXISTS (SELECT 1 FROM"),
            gap,
            table,
            text(")")
        ]),
        (predicate(depth - 1), predicate(depth - 1)).prop_map(|(left, right)| {
            let mut pieces = vec![text("(")];
            pieces.extend(left);
            pieces.push(text(" OR "));
            pieces.extend(right);
            pieces.push(text(")"));
            pieces
        }),
    ]
    .boxed()
}

fn select() -> impl Strategy<Value = Vec<Piece>> {
    (
        gap(),
        proptest::bool::ANY,
        table(false),
        proptest::bool::ANY,
        predicate(2),
        prop_oneof![
            Just(""),
            Just(" ORDER BY id NULLS LAST LIMIT 10 OFFSET 5"),
            Just(" FOR UPDATE SKIP LOCKED"),
            Just(" FOR NO KEY UPDATE"),
        ],
    )
        .prop_map(|(gap, only, table, join, predicate, tail)| {
            let mut pieces = vec![
                text("SELECT id, model_name AS model_metadata_name FROM"),
                gap,
            ];
            if only {
                pieces.push(text("ONLY "));
            }
            pieces.push(table);
            if join {
                pieces.push(text(" JOIN deployments d ON d.model_id = id"));
            }
            pieces.push(text(" WHERE "));
            pieces.extend(predicate);
            pieces.push(text(tail));
            pieces
        })
}

fn insert() -> impl Strategy<Value = Vec<Piece>> {
    (table(true), gap(), proptest::bool::ANY).prop_map(|(table, gap, upsert)| {
        let mut pieces = vec![text("INSERT INTO"), gap, table];
        pieces.push(text(" (model_name) VALUES ('model_metadata'), ($1)"));
        if upsert {
            pieces.push(text(
                " ON CONFLICT (id) DO UPDATE SET model_name = EXCLUDED.model_name",
            ));
        }
        pieces.push(text(" RETURNING id"));
        pieces
    })
}

fn update() -> impl Strategy<Value = Vec<Piece>> {
    (table(false), predicate(1)).prop_map(|(table, predicate)| {
        let mut pieces = vec![text("UPDATE "), table, text(" SET model_name = 'x' WHERE ")];
        pieces.extend(predicate);
        pieces
    })
}

fn delete() -> impl Strategy<Value = Vec<Piece>> {
    (table(false), predicate(1), proptest::bool::ANY).prop_map(|(table, predicate, using)| {
        let mut pieces = vec![text("DELETE FROM "), table];
        if using {
            pieces.push(text(" USING deployments d"));
        }
        pieces.push(text(" WHERE "));
        pieces.extend(predicate);
        pieces
    })
}

fn statement() -> impl Strategy<Value = Statement> {
    (
        prop_oneof![select(), insert(), update(), delete()],
        prop_oneof![Just(""), Just("/* app=web */ "), Just("\n  ")],
        prop_oneof![Just(""), Just(";"), Just("; SELECT 1")],
    )
        .prop_map(|(body, lead, trail)| {
            let mut pieces = vec![text(lead)];
            pieces.extend(body);
            pieces.push(text(trail));
            Statement(pieces)
        })
}
