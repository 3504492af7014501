//! Which sampled statements a shadow run may run again, decided before anything runs: one
//! statement, a plain query (no locking clause, no `SELECT … INTO`, no data-modifying CTE, no
//! parameters unless the client bound them), as both sqlparser and Postgres's own parser
//! (`postgres_reading.rs`) read it, and the functions, operators and types it names, for the
//! volatility check against the catalog that follows. Also the statement's shape (constants
//! masked) that differences are grouped by, and whether its rows come in a defined order.
//!
//! The check is a filter, not the safety net: shadow statements run in a READ ONLY
//! transaction, so anything it misses fails there instead of writing.

use std::ops::ControlFlow;

use sha2::{Digest, Sha256};
use sqlparser::ast::{
    AccessExpr, Expr, Ident, ObjectName, ObjectNamePart, SetExpr, Statement, TableFactor, Value,
    Visit, Visitor, visit_expressions, visit_statements,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::postgres_reading;
pub use super::skip::Skip;
use crate::rewriter::expression_depth::on_expression_stack;
use crate::rewriter::mention::may_hide_a_name;
use crate::rewriter::postgres_grammar::MAX_CHECKED_BYTES;
use crate::rewriter::query_functions;
use crate::rewriter::shape::readable;

/// The argument count `query_functions::reads` is asked about: `ts_rewrite` runs a query only
/// in its two-argument form, and the shadow skips every form of it.
const QUERY_RUNNING_ARITY: usize = 2;

/// The longest shape kept (characters); longer ones are cut.
pub const MAX_SHAPE_LEN: usize = 1000;

/// A statement the shadow may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligible {
    /// The top-level ORDER BY makes row order part of the result.
    pub ordered: bool,
    /// LIMIT/FETCH without ORDER BY: which rows come back is not defined.
    pub unordered_limit: bool,
    /// Functions called (lower-case names, without schema), for the volatility check.
    pub functions: Vec<String>,
    /// The last names of qualified column references (`q.f`), which Postgres calls as
    /// `f(q)` when `q` has no column `f`: looked up for a volatile function of the name.
    pub fields: Vec<String>,
    /// Operators used, by name (Postgres's reading): looked up for a volatile function.
    pub operators: Vec<String>,
    /// Types named (Postgres's reading): looked up for a domain or a volatile cast.
    pub types: Vec<String>,
}

/// `bound`: the statement came with the client's parameters (extended protocol), so `$n`
/// placeholders can be filled.
pub fn classify(sql: &str, bound: bool) -> Result<Eligible, Skip> {
    // Postgres's reading below refuses a longer text anyway; refused first, the length bounds
    // the depth of sqlparser's tree, whose walks recurse once a level (a 30,000-term chain
    // overflowed a worker's stack: the fifty-third red-team pass).
    if sql.len() > MAX_CHECKED_BYTES {
        return Err(Skip::TooLong);
    }
    on_expression_stack(sql.len(), || classify_parsed(sql, bound))
}

fn classify_parsed(sql: &str, bound: bool) -> Result<Eligible, Skip> {
    // sqlparser reads `U&"set\005fconfig"(…)` as a column, `&` and a call of a function of
    // that literal name, which the volatility check cannot find; Postgres calls set_config
    // (the twenty-second red-team pass left the client's role so).
    if may_hide_a_name(sql.as_bytes()) {
        return Err(Skip::Unreadable);
    }
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|_| Skip::Unparsable)?;
    let [Statement::Query(query)] = statements.as_slice() else {
        return Err(if statements.len() == 1 {
            Skip::NotARead
        } else {
            Skip::NotOneStatement
        });
    };
    if !query.locks.is_empty() {
        return Err(Skip::NotARead);
    }
    if let SetExpr::Select(select) = query.body.as_ref()
        && select.into.is_some()
    {
        return Err(Skip::NotARead);
    }
    // Any statement nested inside (a data-modifying CTE) is not a read.
    let nested = visit_statements(&statements, |statement| match statement {
        Statement::Query(_) => ControlFlow::Continue(()),
        _ => ControlFlow::Break(()),
    });
    if nested.is_break() {
        return Err(Skip::NotARead);
    }
    let mut functions = Vec::new();
    let mut fields = Vec::new();
    let placeholders = visit_expressions(&statements, |expr| match expr {
        // The twenty-fourth red-team pass called `ts_stat` and `pg_advisory_lock` so.
        Expr::CompoundIdentifier(parts) if parts.len() > 1 => {
            if let Some(last) = parts.last() {
                fields.push(folded(last));
            }
            ControlFlow::Continue(())
        }
        Expr::Value(value) if !bound && matches!(value.value, Value::Placeholder(_)) => {
            ControlFlow::Break(())
        }
        Expr::Function(function) => {
            if let Some(last) = function.name.0.last().and_then(ObjectNamePart::as_ident) {
                functions.push(folded(last));
            }
            ControlFlow::Continue(())
        }
        // `(x).f` is `f(x)` in Postgres when `x` has no field `f` (the twenty-third pass
        // took an advisory lock with `(1::bigint).pg_advisory_lock`): every field name is
        // looked up as a function too, and a real field, being none, is not run again.
        Expr::CompoundFieldAccess { access_chain, .. } => {
            for access in access_chain {
                if let AccessExpr::Dot(Expr::Identifier(field)) = access {
                    functions.push(folded(field));
                }
            }
            ControlFlow::Continue(())
        }
        _ => ControlFlow::Continue(()),
    });
    if placeholders.is_break() {
        return Err(Skip::Parameters);
    }
    // Functions called in FROM are no expressions: `FROM set_config('role', …)` ran in the
    // shadow's transaction and took the catalog role back (the twenty-first red-team pass).
    let mut from_functions = FromFunctions(Vec::new());
    let _ = statements.visit(&mut from_functions);
    functions.extend(from_functions.0);
    // What runs is what Postgres reads: its reading must agree that this is one plain read,
    // and every name either parser finds is looked up.
    let postgres = postgres_reading::read(sql, bound)?;
    functions.extend(postgres.functions);
    fields.extend(postgres.fields);
    // What such a built-in runs is a string to both readings: the twenty-seventh red-team
    // pass ran volatile functions inside `crosstab`'s query text, left a dblink connection
    // open on the worker's connection, and (with a version without catalog substitutes)
    // reset the role. A field of the name may be the same call in attribute notation.
    if functions
        .iter()
        .chain(&fields)
        .any(|name| query_functions::reads(name, QUERY_RUNNING_ARITY).is_some())
    {
        return Err(Skip::RunsText);
    }
    functions.sort();
    functions.dedup();
    fields.sort();
    fields.dedup();
    let ordered = query.order_by.is_some();
    Ok(Eligible {
        ordered,
        unordered_limit: !ordered && (query.limit_clause.is_some() || query.fetch.is_some()),
        functions,
        fields,
        operators: postgres.operators,
        types: postgres.types,
    })
}

/// A name as Postgres looks it up: quoted as written, unquoted in lower case (the
/// twenty-fifth red-team pass had `"Rd"` looked up as `rd`, a harmless decoy).
fn folded(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// Collects the names of the functions a statement calls in its FROM clauses.
struct FromFunctions(Vec<String>);

impl Visitor for FromFunctions {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let name: Option<&ObjectName> = match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => Some(name),
            _ => None,
        };
        if let Some(last) = name
            .and_then(|name| name.0.last())
            .and_then(ObjectNamePart::as_ident)
        {
            self.0.push(folded(last));
        }
        ControlFlow::Continue(())
    }
}

/// The statement with its constants masked (`?`), spaces collapsed, cut at
/// [`MAX_SHAPE_LEN`] — the rewriter's readable shape, which `--match` patterns are matched
/// against (sqlparser's tokens where that lexer gives up); and a short hash of it.
pub fn shape(sql: &str) -> (String, String) {
    let dialect = PostgreSqlDialect {};
    let text = match readable(sql, &mut Vec::new()) {
        Some(text) => Ok(text),
        None => Tokenizer::new(&dialect, sql).tokenize().map(|tokens| {
            let mut out = String::with_capacity(sql.len());
            let mut space = false;
            for token in tokens {
                match token {
                    Token::Whitespace(_) => space = true,
                    other => {
                        if space && !out.is_empty() {
                            out.push(' ');
                        }
                        space = false;
                        match other {
                            Token::Number(..)
                            | Token::SingleQuotedString(_)
                            | Token::EscapedStringLiteral(_)
                            | Token::NationalStringLiteral(_)
                            | Token::HexStringLiteral(_)
                            | Token::DollarQuotedString(_) => out.push('?'),
                            other => out.push_str(&other.to_string()),
                        }
                    }
                }
            }
            out
        }),
    };
    let text = match text {
        Ok(text) => text,
        Err(_) => sql.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    let text: String = text.chars().take(MAX_SHAPE_LEN).collect();
    let digest = Sha256::digest(text.as_bytes());
    let hash = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    (text, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_reads_are_eligible() {
        let read = classify(
            "SELECT id, lower(name) FROM t WHERE id > 3 ORDER BY id",
            false,
        )
        .unwrap();
        assert!(read.ordered && !read.unordered_limit);
        assert_eq!(read.functions, vec!["lower".to_owned()]);
        assert!(
            classify("SELECT * FROM t LIMIT 5", false)
                .unwrap()
                .unordered_limit
        );
        assert!(classify("SELECT * FROM t WHERE id = $1", true).is_ok());
        // Left to the volatility check: set_config is volatile in pg_proc.
        assert_eq!(
            classify("SELECT set_config('role', 'postgres', true)", false)
                .unwrap()
                .functions,
            vec!["set_config".to_owned()]
        );
        // In FROM too (the twenty-first red-team pass took the catalog role back so).
        assert_eq!(
            classify(
                "SELECT * FROM t, set_config('role', 'none', true) s, LATERAL pg_advisory_lock(1) l",
                false
            )
            .unwrap()
            .functions,
            vec!["pg_advisory_lock".to_owned(), "set_config".to_owned()]
        );
        // Quoted names keep their case, as Postgres looks them up.
        assert_eq!(
            classify("SELECT \"Rd\"(g), g.\"Fx\" FROM t g", false).unwrap(),
            Eligible {
                ordered: false,
                unordered_limit: false,
                functions: vec!["Rd".to_owned()],
                fields: vec!["Fx".to_owned()],
                operators: Vec::new(),
                types: Vec::new(),
            }
        );
        // A qualified column's last name is looked up too (`q.pg_advisory_lock`).
        assert_eq!(
            classify(
                "SELECT q.pg_advisory_lock, t.id FROM t, CAST(1 AS bigint) q",
                false
            )
            .unwrap()
            .fields,
            vec!["id".to_owned(), "pg_advisory_lock".to_owned()]
        );
        // A function called in attribute notation is looked up like any call.
        assert_eq!(
            classify("SELECT (727272::bigint).pg_advisory_lock FROM t", false)
                .unwrap()
                .functions,
            vec!["pg_advisory_lock".to_owned()]
        );
        for (sql, skip) in [
            ("UPDATE t SET a = 1", Skip::NotARead),
            ("SELECT * FROM t FOR UPDATE", Skip::NotARead),
            ("SELECT * INTO t2 FROM t", Skip::NotARead),
            (
                "WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone",
                Skip::NotARead,
            ),
            ("SELECT 1; SELECT 2", Skip::NotOneStatement),
            // The shadow takes the client's role; nothing the client sends may leave it.
            ("RESET ROLE", Skip::NotARead),
            ("SET ROLE postgres", Skip::NotARead),
            ("SET LOCAL ROLE postgres", Skip::NotARead),
            ("SET SESSION AUTHORIZATION postgres", Skip::NotARead),
            ("RESET SESSION AUTHORIZATION", Skip::NotARead),
            ("SELECT 1; RESET ROLE", Skip::NotOneStatement),
            (
                "SELECT 1; SET SESSION AUTHORIZATION DEFAULT",
                Skip::NotOneStatement,
            ),
            ("SELECT * FROM t WHERE id = $1", Skip::Parameters),
            ("SELEC oops", Skip::Unparsable),
            (
                "SELECT U&\"set\\005fconfig\"('role', 'none', true) FROM t",
                Skip::Unreadable,
            ),
            (
                "SELECT * FROM t, LATERAL (SELECT u&\"pg\\005fadvisory\\005flock\"(1)) l",
                Skip::Unreadable,
            ),
            ("SELECT E'\\x41' FROM t", Skip::Unreadable),
            // The twenty-seventh red-team pass: SQL in a string, run by the built-in.
            (
                "SELECT c.* FROM crosstab($q$SELECT 1, 2, pg_try_advisory_xact_lock(7)::text$q$) \
                 AS c(r text, v text)",
                Skip::RunsText,
            ),
            (
                "SELECT * FROM public.connectby($$t$$, $$id$$, $$parent$$, $$1$$, 0) \
                 AS c(id int, parent int, level int)",
                Skip::RunsText,
            ),
            (
                "SELECT query_to_xml($$SELECT 1$$, true, false, $$$$)",
                Skip::RunsText,
            ),
            ("SELECT (q).crosstab2 FROM t q", Skip::RunsText),
        ] {
            assert_eq!(classify(sql, false), Err(skip), "{sql}");
        }
    }

    #[test]
    fn shapes_mask_constants() {
        let (a, hash_a) = shape("SELECT * FROM t WHERE id = 42 AND name = 'x'");
        let (b, hash_b) = shape("select *  from t where id = 7 and name = 'yy'");
        assert_eq!(a, "SELECT * FROM t WHERE id = ? AND name = ?");
        assert_eq!(b, "select * from t where id = ? and name = ?");
        assert_ne!(hash_a, hash_b, "keywords keep their case");
        assert_eq!(hash_a.len(), 16);
    }
}
