//! The statement's result columns that print a relation: a select-list item of the outermost
//! query that is a cast of an oid to `regclass` (`indrelid::regclass AS table_name`, MikroORM's
//! index introspection; `conrelid::pg_catalog.regclass AS ontable`, psql's "Referenced by:"
//! footer; `stxrelid::pg_catalog.regclass`, its "Statistics objects:" footer). The `regclass`
//! type's output reads the real `pg_class` row of the oid, so at a version it printed the
//! view's name (`customers_v2`), and MikroORM matched no index to the table. Such a column is
//! wrapped in the version's `version_relation_text`, as `x::regclass::text` is
//! (`references_relation_names.rs`), and reads as the version's table's name. An unaliased
//! one, which Postgres names after the expression (`stxrelid`), is given that name as its
//! alias, since the wrapper would name it after itself; one Postgres names after the type
//! (`$1::regclass`, `(a + b)::regclass`) or that is parenthesized is left as written.
//!
//! Only there: the wrapper returns `text`, and only the outermost query's rows go to the client
//! and nowhere else. A subquery's, CTE's or derived table's column may be compared with a
//! `regclass` (`WHERE indrelid IN (SELECT c.oid::regclass AS r …)`, which would then compare
//! text with regclass and fail), and `SELECT … INTO` stores the type. Not a literal
//! (`'t'::regclass`, rewritten to the view's name already). In a set operation a column is
//! wrapped in every side or in none, since sides of `text` and `regclass` do not match; the
//! first side names it. An ORDER BY of the column (by its name or position) then orders by the
//! name, where Postgres orders a `regclass` by its oid (docs/rewriting.md).

use sqlparser::ast::{
    Distinct, Expr, Ident, ObjectNamePart, OrderByKind, Query, SelectItem, SetExpr,
};

use super::Collector;
use super::relation_names::{is_literal, strip_parentheses};
use super::types::{is_relation_type, names_a_type};
use crate::model::identifier::MAX_IDENTIFIER_BYTES;
use crate::rewriter::identifier::fold_identifier;

/// One select list whose rows are the statement's result.
struct ResultList<'q> {
    items: &'q [SelectItem],
    /// `DISTINCT`, `DISTINCT ON`, or none.
    distinct: Option<&'q Distinct>,
    /// Whether the query owning the list orders by a cast to a relation type.
    orders_by_relation: bool,
}

impl Collector<'_> {
    /// Wraps the result columns of `query`, the statement's own query, that print a relation.
    /// Called before the query's expressions are visited, so that a wrapper's opening goes
    /// before the edits inside the cast that start where it does (`$1::regclass AS t`, whose
    /// `$1` the version's name reader wraps too).
    pub(super) fn result_relation_columns(&mut self, query: &Query) {
        let mut lists = Vec::new();
        if !result_lists(query, false, &mut lists) {
            return;
        }
        for (cast, alias) in printing_casts(&lists) {
            self.printed_relation_name(cast, alias.as_deref());
        }
    }
}

/// The select lists of `query`'s body, each side's of a set operation in order; `false` where a
/// side is not a select list (`VALUES`, `TABLE t`) or stores its rows (`SELECT … INTO`).
/// `ordered_outside`: the query is parenthesized, and the ORDER BY after the parentheses,
/// which Postgres reads as its own, has a cast to a relation type.
fn result_lists<'q>(
    query: &'q Query,
    ordered_outside: bool,
    lists: &mut Vec<ResultList<'q>>,
) -> bool {
    let orders_by_relation = ordered_outside || orders_by_relation(query);
    side_lists(&query.body, orders_by_relation, lists)
}

/// Whether `query`'s ORDER BY has a cast to a relation type.
fn orders_by_relation(query: &Query) -> bool {
    let Some(OrderByKind::Expressions(expressions)) = query.order_by.as_ref().map(|o| &o.kind)
    else {
        return false;
    };
    expressions.iter().any(|ordering| {
        let expr = strip_parentheses(&ordering.expr);
        matches!(expr, Expr::Cast { data_type, .. } if is_relation_type(data_type))
    })
}

fn side_lists<'q>(
    body: &'q SetExpr,
    orders_by_relation: bool,
    lists: &mut Vec<ResultList<'q>>,
) -> bool {
    match body {
        SetExpr::Select(select) if select.into.is_none() => {
            lists.push(ResultList {
                items: &select.projection,
                distinct: select.distinct.as_ref(),
                orders_by_relation,
            });
            true
        }
        SetExpr::SetOperation { left, right, .. } => {
            // A set operation's ORDER BY names its result columns, by name or position.
            side_lists(left, false, lists) && side_lists(right, false, lists)
        }
        SetExpr::Query(inner) => result_lists(inner, orders_by_relation, lists),
        _ => false,
    }
}

/// The casts to wrap, each with the alias to give it: column by column, where the first list has
/// a cast of an oid to `regclass` (aliased, or named after a column or function) and every
/// other list a cast of one (aliased or not: the first side names the column). Of a set
/// operation, columns after a `*` in any list are not matched up.
fn printing_casts<'q>(lists: &[ResultList<'q>]) -> Vec<(&'q Expr, Option<String>)> {
    let Some((first, others)) = lists.split_first() else {
        return Vec::new();
    };
    // A set operation's columns are matched up by position, which a `*` makes unknown.
    let width = match others.is_empty() {
        true => first.items.len(),
        false => lists.iter().map(columns_before_wildcard).min().unwrap_or(0),
    };
    let mut casts = Vec::new();
    for column in 0..width {
        let (expr, alias) = match first.items.get(column) {
            Some(SelectItem::ExprWithAlias { expr, .. }) => (expr, None),
            Some(SelectItem::UnnamedExpr(expr @ Expr::Cast { .. })) => {
                let Some(name) = figured_column_name(expr) else {
                    continue;
                };
                (expr, Some(name))
            }
            _ => continue,
        };
        let Some(named) = printing_cast(expr, first) else {
            continue;
        };
        let rest: Option<Vec<&Expr>> = others
            .iter()
            .map(|list| match list.items.get(column) {
                Some(SelectItem::ExprWithAlias { expr, .. } | SelectItem::UnnamedExpr(expr)) => {
                    printing_cast(expr, list)
                }
                _ => None,
            })
            .collect();
        if let Some(rest) = rest {
            casts.push((named, alias));
            casts.extend(rest.into_iter().map(|cast| (cast, None)));
        }
    }
    casts
}

fn columns_before_wildcard(list: &ResultList<'_>) -> usize {
    let wildcard = |item: &SelectItem| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    };
    list.items
        .iter()
        .position(wildcard)
        .unwrap_or(list.items.len())
}

/// `expr` as a cast of an oid to `regclass` that may print as text in `list`: not a constant,
/// not under `DISTINCT ON` (whose expressions must match the ORDER BY's first ones, an alias
/// then naming the wrapped column), nor under a `DISTINCT` whose ORDER BY has a cast to a
/// relation type (it must order by what is selected, and may repeat this cast: whatever its
/// spelling, the list is left alone).
fn printing_cast<'q>(expr: &'q Expr, list: &ResultList<'_>) -> Option<&'q Expr> {
    let cast = strip_parentheses(expr);
    let Expr::Cast {
        expr: operand,
        data_type,
        ..
    } = cast
    else {
        return None;
    };
    if !is_relation_type(data_type) || names_a_type(data_type) || is_literal(operand) {
        return None;
    }
    match list.distinct {
        Some(Distinct::On(_)) => return None,
        Some(Distinct::Distinct) if list.orders_by_relation => return None,
        _ => {}
    }
    Some(cast)
}

/// The name Postgres gives an unaliased result column `expr` where it takes it from a column or
/// a function (`FigureColname`, parse_target.c: a cast's from its operand's, through
/// parentheses; `c.oid` and `pg_catalog.f(…)` by their last name); `None` where Postgres would
/// take the name of a type or a keyword (`$1::regclass` is `regclass`), or the name is longer
/// than an identifier may be (Postgres would cut it, with a notice).
fn figured_column_name(expr: &Expr) -> Option<String> {
    let named = |ident: &Ident| {
        (ident.value.len() <= MAX_IDENTIFIER_BYTES)
            .then(|| fold_identifier(&ident.value, ident.quote_style.is_some()))
    };
    match expr {
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => figured_column_name(inner),
        Expr::Identifier(ident) => named(ident),
        Expr::CompoundIdentifier(parts) => named(parts.last()?),
        Expr::Function(function) => match function.name.0.last()? {
            ObjectNamePart::Identifier(ident) => named(ident),
            _ => None,
        },
        _ => None,
    }
}
