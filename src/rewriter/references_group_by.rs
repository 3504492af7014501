//! A GROUP BY that lists a managed table's primary key, read through a view.
//!
//! Postgres lets a query grouped by a table's primary key read the table's other columns
//! ungrouped (they depend on the key: `SELECT c.name, count(p.id) FROM category c LEFT JOIN
//! product p … GROUP BY c.id`, what Django's `annotate(Count(…))` and Rails' `group(:id)`
//! send). A view has no primary key, so through the version's view the same statement fails
//! (42803: column "c.name" must appear in the GROUP BY clause). Where the view shows its base
//! table's whole primary key and the GROUP BY lists it, the table's columns the statement
//! reads outside aggregates are added to the GROUP BY (`GROUP BY c.id, "c"."name"`): grouped
//! by the key already, each group is one row of the table, so the groups and the answer are
//! what the base table gives. The key may be listed by position (`GROUP BY 1`, as Django
//! writes it). Columns only aggregates read are left out, and so are types
//! Postgres cannot group by (`json`, geometric types): adding those would fail a statement
//! that works.

use sqlparser::ast::{
    Expr, Function, GroupByExpr, Ident, ObjectName, ObjectNamePart, OrderByExpr, OrderByKind,
    Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Spanned, TableFactor,
    TableWithJoins, Value, visit_expressions,
};

use super::super::identifier::{fold_identifier, quote_identifier};
use super::super::splice::Edit;
use super::super::targets::ViewTarget;
use super::Collector;

/// Postgres's built-in aggregates: what their arguments read is read per group, so a column
/// only they read needs no grouping. A user-defined aggregate is taken for a plain function
/// (its columns are added, which changes no group).
const AGGREGATES: &[&str] = &[
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "corr",
    "count",
    "covar_pop",
    "covar_samp",
    "every",
    "json_agg",
    "json_object_agg",
    "jsonb_agg",
    "jsonb_object_agg",
    "max",
    "min",
    "mode",
    "percentile_cont",
    "percentile_disc",
    "range_agg",
    "range_intersect_agg",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
    "xmlagg",
];

/// Built-in types without the equality a GROUP BY needs (nor arrays of them).
const UNGROUPABLE_TYPES: &[&str] = &[
    "json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle",
];

/// What may follow a GROUP BY list (or nothing may): the added columns are spliced after the
/// list's last item only where the next token is one of these, so a span sqlparser ends
/// early never puts them inside an expression.
const AFTER_GROUP_BY: &[&str] = &[
    ")",
    ";",
    "having",
    "window",
    "order",
    "limit",
    "offset",
    "fetch",
    "for",
    "union",
    "intersect",
    "except",
];

/// A column reference: its qualifier's last part and its name, folded.
type ColumnRef = (Option<String>, String);

/// A managed table's reference in a FROM clause whose view shows its primary key.
struct Keyed<'t> {
    /// The name its columns are qualified by (the alias, or the table's name), folded.
    qualifier: String,
    target: &'t ViewTarget,
    key: &'t [String],
}

impl<'a> Collector<'a> {
    /// Adds what the key of a grouped managed table makes legal to the GROUP BY of each
    /// SELECT of `query`'s body (its own level; nested queries are visited on their own).
    pub(super) fn group_by_dependents(&mut self, query: &Query) {
        let order_by = match query.order_by.as_ref().map(|order| &order.kind) {
            Some(OrderByKind::Expressions(expressions)) => expressions.as_slice(),
            _ => &[],
        };
        match &*query.body {
            SetExpr::Select(select) => self.grouped_select(select, order_by),
            // The ORDER BY of a set operation names its output columns, not a SELECT's.
            body @ SetExpr::SetOperation { .. } => self.set_operation_selects(body),
            _ => {}
        }
    }

    fn set_operation_selects(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Select(select) => self.grouped_select(select, &[]),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_operation_selects(left);
                self.set_operation_selects(right);
            }
            _ => {}
        }
    }

    fn grouped_select(&mut self, select: &Select, order_by: &[OrderByExpr]) {
        let GroupByExpr::Expressions(grouped, modifiers) = &select.group_by else {
            return;
        };
        let Some(last) = grouped.last() else {
            return;
        };
        let sets = |e: &Expr| matches!(e, Expr::Rollup(_) | Expr::Cube(_) | Expr::GroupingSets(_));
        if !modifiers.is_empty() || grouped.iter().any(sets) {
            return;
        }
        let mut keyed = Vec::new();
        let mut items = 0;
        for table in &select.from {
            self.keyed_references(table, &mut keyed, &mut items);
        }
        if keyed.is_empty() {
            return;
        }
        // An unqualified name is the managed table's only when nothing else is in FROM.
        let alone = items == 1;
        let grouped: Vec<ColumnRef> = grouped
            .iter()
            .filter_map(|expr| column_ref(output_column(expr, &select.projection).unwrap_or(expr)))
            .collect();
        let read = ReadColumns::of(select, order_by);
        let mut added = Vec::new();
        for table in keyed {
            let names = |column: &String| {
                grouped.iter().any(|(qualifier, name)| {
                    name == column
                        && match qualifier {
                            Some(qualifier) => *qualifier == table.qualifier,
                            None => alone,
                        }
                })
            };
            if !table.key.iter().all(names) {
                continue;
            }
            let Some(write) = self.targets.base_write(table.target) else {
                continue;
            };
            for column in &write.mapping.columns {
                if !names(&column.name)
                    && groupable(&column.type_name)
                    && read.includes(&table.qualifier, &column.name)
                {
                    let qualified = format!(
                        "{}.{}",
                        quote_identifier(&table.qualifier),
                        quote_identifier(&column.name)
                    );
                    added.push(qualified);
                }
            }
        }
        if added.is_empty() {
            return;
        }
        let Some(range) = self.index.range(last.span()) else {
            return;
        };
        if self.in_upsert(range.clone()) || !self.ends_group_by(range.end) {
            return;
        }
        self.edits.push(Edit {
            range: range.end..range.end,
            text: format!(", {}", added.join(", ")),
            relation: false,
        });
    }

    /// Whether the token after `offset` may follow a GROUP BY list.
    fn ends_group_by(&self, offset: usize) -> bool {
        let tokens = self.index.tokens().ranges();
        let next = tokens.partition_point(|token| token.start < offset);
        match tokens.get(next) {
            None => true,
            Some(token) => {
                let word = &self.sql[token.clone()];
                AFTER_GROUP_BY.iter().any(|w| word.eq_ignore_ascii_case(w))
            }
        }
    }

    /// The managed tables of one FROM item (and its joins) whose views show their primary
    /// keys; `items` counts every relation met.
    fn keyed_references(
        &self,
        table: &TableWithJoins,
        keyed: &mut Vec<Keyed<'a>>,
        items: &mut usize,
    ) {
        for factor in
            std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation))
        {
            *items += 1;
            match factor {
                TableFactor::NestedJoin {
                    table_with_joins, ..
                } => {
                    *items -= 1;
                    self.keyed_references(table_with_joins, keyed, items);
                }
                TableFactor::Table {
                    name,
                    alias,
                    args: None,
                    ..
                } => {
                    if let Some(found) = self.keyed(name, alias.as_ref()) {
                        keyed.push(found);
                    }
                }
                _ => {}
            }
        }
    }

    fn keyed(
        &self,
        name: &ObjectName,
        alias: Option<&sqlparser::ast::TableAlias>,
    ) -> Option<Keyed<'a>> {
        let (target, _) = self.resolve(name)?;
        let key = self.targets.primary_key(&target.view)?;
        let qualifier = match alias {
            // Columns renamed by the alias are not the view's names.
            Some(alias) if !alias.columns.is_empty() => return None,
            Some(alias) => fold(&alias.name),
            None => Self::split_name(name)?.1,
        };
        Some(Keyed {
            qualifier,
            target,
            key,
        })
    }
}

fn fold(ident: &Ident) -> String {
    fold_identifier(&ident.value, ident.quote_style.is_some())
}

/// `name`, `t.name` or `s.t.name` (folded), parenthesised or not.
fn column_ref(expr: &Expr) -> Option<ColumnRef> {
    match expr {
        Expr::Identifier(ident) => Some((None, fold(ident))),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [.., qualifier, column] => Some((Some(fold(qualifier)), fold(column))),
            _ => None,
        },
        Expr::Nested(inner) => column_ref(inner),
        _ => None,
    }
}

/// The projection's expression a GROUP BY position names (`GROUP BY 1`, as Django writes a
/// grouped column it also selects).
fn output_column<'e>(expr: &Expr, projection: &'e [SelectItem]) -> Option<&'e Expr> {
    let Expr::Value(value) = expr else {
        return None;
    };
    let Value::Number(position, _) = &value.value else {
        return None;
    };
    let index = position.parse::<usize>().ok()?.checked_sub(1)?;
    match projection.get(index)? {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => Some(expr),
        _ => None,
    }
}

fn groupable(type_name: &str) -> bool {
    let element = type_name.trim_end_matches("[]");
    let element = element.strip_prefix("pg_catalog.").unwrap_or(element);
    !UNGROUPABLE_TYPES.contains(&element)
}

fn is_aggregate(function: &Function) -> bool {
    function.over.is_none()
        && function
            .name
            .0
            .last()
            .and_then(ObjectNamePart::as_ident)
            .is_some_and(|name| AGGREGATES.contains(&fold(name).as_str()))
}

/// The columns a grouped SELECT reads outside aggregates: its projection, HAVING, QUALIFY,
/// window definitions and its query's ORDER BY.
struct ReadColumns {
    columns: Vec<ColumnRef>,
    /// `*`: every column of every FROM item.
    everything: bool,
    /// `t.*`, by qualifier.
    whole: Vec<String>,
}

impl ReadColumns {
    fn of(select: &Select, order_by: &[OrderByExpr]) -> Self {
        let mut read = ReadColumns {
            columns: Vec::new(),
            everything: false,
            whole: Vec::new(),
        };
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(expr)
                | SelectItem::ExprWithAlias { expr, .. }
                | SelectItem::ExprWithAliases { expr, .. } => read.expression(expr),
                SelectItem::Wildcard(_) => read.everything = true,
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    _,
                ) => {
                    if let Some(last) = name.0.last().and_then(ObjectNamePart::as_ident) {
                        read.whole.push(fold(last));
                    }
                }
                SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::Expr(expr), _) => {
                    read.expression(expr)
                }
            }
        }
        for expr in select.having.iter().chain(&select.qualify) {
            read.expression(expr);
        }
        for window in &select.named_window {
            let _ = visit_expressions(window, |expr| {
                read.columns.extend(column_ref(expr));
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
        for order in order_by {
            read.expression(&order.expr);
        }
        read
    }

    /// The column references in `expr` outside the arguments of aggregates.
    fn expression(&mut self, expr: &Expr) {
        let mut aggregated: Vec<*const Expr> = Vec::new();
        let _ = visit_expressions(expr, |node| {
            if let Expr::Function(function) = node
                && is_aggregate(function)
            {
                let _ = visit_expressions(node, |inner| {
                    aggregated.push(inner as *const Expr);
                    std::ops::ControlFlow::<()>::Continue(())
                });
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        let _ = visit_expressions(expr, |node| {
            if !aggregated.contains(&(node as *const Expr)) {
                self.columns.extend(column_ref(node));
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    }

    /// Whether column `name` of the table qualified by `qualifier` is read. An unqualified
    /// name counts whatever else is in FROM: Postgres reads it in that table, or refuses it
    /// as ambiguous, and adding a column of the table to the GROUP BY changes no group.
    fn includes(&self, qualifier: &str, name: &str) -> bool {
        self.everything
            || self.whole.iter().any(|whole| whole == qualifier)
            || self
                .columns
                .iter()
                .any(|(q, column)| column == name && q.as_deref().is_none_or(|q| q == qualifier))
    }
}
