//! A sampled statement as Postgres itself reads it, for the shadow's decision to run it again.
//!
//! sqlparser's lexer and Postgres's disagree at the edges: `#--` is Postgres's operator `#`
//! and a comment, sqlparser's `#-` and a minus, so a `$$` that Postgres reads inside the
//! comment opened, for sqlparser, a string that swallowed the rest of the text (the
//! twenty-sixth red-team pass hid `COMMIT` and an `UPDATE` of the catalog there, and the
//! shadow ran them with the catalog user's rights). So what the shadow may run is decided on
//! Postgres's own parse as well: one statement, a plain `SELECT`, and every name the
//! volatility check must look up — functions, field selections, operators and type names —
//! as Postgres's grammar places them.

use super::skip::Skip;
use crate::rewriter::definitions::UNTAGGED_TYPE_FIELDS;
use crate::rewriter::parse_tree::{Tree, name_parts};
use crate::rewriter::postgres_grammar::{MAX_CHECKED_BYTES, on_check_stack};
use crate::rewriter::postgres_parser;

/// The names a statement makes Postgres look up, by kind, as Postgres stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostgresReading {
    /// Functions called (`f(…)`, and `(x).f`, which Postgres calls as `f(x)`).
    pub functions: Vec<String>,
    /// The last names of qualified column references (`q.f`): a function when `q` has no
    /// column of that name.
    pub fields: Vec<String>,
    /// Operators used (`a # b`, `x = ANY (…)`, `ORDER BY x USING >`; BETWEEN's `>=` and
    /// `<=`): an operator runs its function.
    pub operators: Vec<String>,
    /// Types named (casts, column definition lists): a cast may run a function, a domain its
    /// constraints.
    pub types: Vec<String>,
}

/// Postgres's reading of `sql`: refused unless it is exactly one plain `SELECT` (no locking
/// clause, no `INTO`, no data-modifying statement inside, no parameters unless `bound`).
pub fn read(sql: &str, bound: bool) -> Result<PostgresReading, Skip> {
    if sql.len() > MAX_CHECKED_BYTES {
        return Err(Skip::TooLong);
    }
    on_check_stack(sql.len(), || read_parsed(sql, bound))
}

fn read_parsed(sql: &str, bound: bool) -> Result<PostgresReading, Skip> {
    let json = postgres_parser::parse(sql).map_err(|_| Skip::Unparsable)?;
    let text = json.text().map_err(|_| Skip::Unparsable)?;
    let tree = Tree::read(text).map_err(|_| Skip::Unparsable)?;
    let statements = tree.get("stmts").map(Tree::as_array).unwrap_or_default();
    let [statement] = statements else {
        return Err(Skip::NotOneStatement);
    };
    let Some(select) = statement
        .get("stmt")
        .and_then(|stmt| stmt.get("SelectStmt"))
    else {
        return Err(Skip::NotARead);
    };
    let mut reading = Reading {
        bound,
        names: PostgresReading::default(),
    };
    reading.walk(select)?;
    let mut names = reading.names;
    for list in [
        &mut names.functions,
        &mut names.fields,
        &mut names.operators,
        &mut names.types,
    ] {
        list.sort();
        list.dedup();
    }
    Ok(names)
}

/// The walk over a `SelectStmt`'s tree.
struct Reading {
    bound: bool,
    names: PostgresReading,
}

impl Reading {
    fn walk(&mut self, tree: &Tree) -> Result<(), Skip> {
        match tree {
            Tree::Array(items) => items.iter().try_for_each(|item| self.walk(item)),
            Tree::Object(fields) => {
                for (key, child) in fields {
                    self.node(key, child)?;
                    self.walk(child)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// What the node `key` (a node type, or a field of one) adds to the reading.
    fn node(&mut self, key: &str, child: &Tree) -> Result<(), Skip> {
        let last = |list: Option<&Tree>| name_parts(list).last().map(|name| (*name).to_owned());
        match key {
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" | "intoClause" => {
                return Err(Skip::NotARead);
            }
            "lockingClause" if !child.as_array().is_empty() => return Err(Skip::NotARead),
            "ParamRef" if !self.bound => return Err(Skip::Parameters),
            "FuncCall" => self.names.functions.extend(last(child.get("funcname"))),
            "ColumnRef" => {
                let parts = child.get("fields").map(Tree::as_array).unwrap_or_default();
                if parts.len() > 1
                    && let Some(field) = parts
                        .last()
                        .and_then(|part| part.get("String")?.get("sval")?.as_text())
                {
                    self.names.fields.push(field.to_owned());
                }
            }
            "A_Indirection" => {
                self.names.functions.extend(
                    name_parts(child.get("indirection"))
                        .iter()
                        .map(|f| (*f).to_owned()),
                );
            }
            "A_Expr" => {
                let kind = child
                    .get("kind")
                    .and_then(Tree::as_text)
                    .unwrap_or_default();
                if kind.contains("BETWEEN") {
                    self.names
                        .operators
                        .extend([">=".to_owned(), "<=".to_owned()]);
                } else {
                    self.names.operators.extend(last(child.get("name")));
                }
            }
            "SortBy" => self.names.operators.extend(last(child.get("useOp"))),
            key if key == "TypeName"
                || key == "typeName"
                || UNTAGGED_TYPE_FIELDS.contains(&key) =>
            {
                self.names.types.extend(last(child.get("names")));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_postgres_grammar() {
        let reading = read(
            "SELECT f(a), (x).g, q.h, a # b, a BETWEEN 1 AND 2, a::\"Dom\" \
             FROM t, q ORDER BY a USING <",
            false,
        )
        .unwrap();
        assert_eq!(reading.functions, ["f", "g"]);
        assert_eq!(reading.fields, ["h"]);
        assert_eq!(reading.operators, ["#", "<", "<=", ">="]);
        assert_eq!(reading.types, ["Dom"]);
    }

    /// The twenty-sixth red-team pass: `#--` is an operator and a comment to Postgres, and the
    /// `$$` inside the comment opens nothing.
    #[test]
    fn what_sqlparser_reads_as_a_string_postgres_reads_as_code() {
        let hidden = "SELECT (SELECT count(*) FROM t) #-- $$\n 2; COMMIT; UPDATE c SET a = 1 -- $$";
        assert_eq!(read(hidden, false), Err(Skip::NotOneStatement));
        let called =
            "SELECT t.id FROM t WHERE t.id #-- $$\n pg_try_advisory_lock(1)::int IS NOT NULL -- $$";
        let reading = read(called, false).unwrap();
        assert_eq!(reading.functions, ["pg_try_advisory_lock"]);
        assert_eq!(reading.operators, ["#"]);
        for (sql, skip) in [
            ("SELECT 1; SELECT 2", Skip::NotOneStatement),
            ("UPDATE t SET a = 1", Skip::NotARead),
            ("SELECT * FROM t FOR SHARE", Skip::NotARead),
            ("SELECT * INTO t2 FROM t", Skip::NotARead),
            (
                "WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone",
                Skip::NotARead,
            ),
            ("SELECT * FROM t WHERE id = $1", Skip::Parameters),
            ("SELEC 1", Skip::Unparsable),
        ] {
            assert_eq!(read(sql, false), Err(skip), "{sql}");
        }
        assert!(read("SELECT * FROM t WHERE id = $1", true).is_ok());
        let long = format!(
            "SELECT 1 FROM t WHERE a = '{}'",
            "x".repeat(MAX_CHECKED_BYTES)
        );
        assert_eq!(read(&long, false), Err(Skip::TooLong));
    }
}
