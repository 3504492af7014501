//! What a MERGE's source (`USING …`) is known to provide: its name and, where the statement
//! alone tells them, its columns. `merge.rs` needs them to decide whether an unqualified name
//! in a mapped clause is the target's column or the source's.

use sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Query, SelectItem, SetExpr, TableFactor,
};

use super::super::identifier::fold_identifier;

/// What the client's MERGE source (`USING …`) is known to provide.
pub struct Source {
    /// The name the source's rows go by (its alias, or a table's name), folded.
    pub name: Option<String>,
    /// Its columns, folded, where they are known from the statement (or, for the managed
    /// table itself, from the mapping); `None` when they are not.
    pub columns: Option<Vec<String>>,
}

impl Source {
    /// The source of `factor`; `managed_columns` gives a managed table's columns at the version.
    pub fn of(
        factor: &TableFactor,
        managed_columns: &dyn Fn(&ObjectName) -> Option<Vec<String>>,
    ) -> Source {
        let fold = |i: &Ident| fold_identifier(&i.value, i.quote_style.is_some());
        let renamed = |columns: Option<Vec<String>>, alias: &Option<sqlparser::ast::TableAlias>| {
            let aliases: Vec<String> = alias
                .iter()
                .flat_map(|a| a.columns.iter().map(|c| fold(&c.name)))
                .collect();
            match columns {
                Some(mut columns) if aliases.len() <= columns.len() => {
                    columns[..aliases.len()].clone_from_slice(&aliases);
                    Some(columns)
                }
                // Fewer columns than aliases is Postgres's error; unknown columns stay unknown
                // unless every one is named.
                Some(_) => None,
                None => None,
            }
        };
        match factor {
            TableFactor::Table { name, alias, .. } => Source {
                name: alias
                    .as_ref()
                    .map(|a| fold(&a.name))
                    .or_else(|| name.0.last().and_then(ObjectNamePart::as_ident).map(fold)),
                columns: renamed(managed_columns(name), alias),
            },
            TableFactor::Derived {
                subquery, alias, ..
            } => Source {
                name: alias.as_ref().map(|a| fold(&a.name)),
                columns: renamed(query_columns(subquery), alias),
            },
            other => Source {
                name: match other {
                    TableFactor::Function { alias, .. }
                    | TableFactor::TableFunction { alias, .. }
                    | TableFactor::UNNEST { alias, .. }
                    | TableFactor::NestedJoin { alias, .. } => {
                        alias.as_ref().map(|a| fold(&a.name))
                    }
                    _ => None,
                },
                columns: None,
            },
        }
    }
}

/// The output column names of a query, where the statement alone tells them.
fn query_columns(query: &Query) -> Option<Vec<String>> {
    set_expr_columns(&query.body)
}

fn set_expr_columns(body: &SetExpr) -> Option<Vec<String>> {
    let fold = |i: &Ident| fold_identifier(&i.value, i.quote_style.is_some());
    match body {
        SetExpr::Select(select) => select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => Some(fold(alias)),
                SelectItem::UnnamedExpr(expr) => expression_name(expr).map(fold),
                _ => None,
            })
            .collect(),
        SetExpr::Values(values) => values
            .rows
            .first()
            .map(|row| (1..=row.len()).map(|i| format!("column{i}")).collect()),
        SetExpr::Query(query) => query_columns(query),
        SetExpr::SetOperation { left, .. } => set_expr_columns(left),
        _ => None,
    }
}

/// The name Postgres gives an unnamed output column, for the forms where it is a column's.
fn expression_name(expr: &Expr) -> Option<&Ident> {
    match expr {
        Expr::Identifier(ident) => Some(ident),
        Expr::CompoundIdentifier(parts) => parts.last(),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => expression_name(expr),
        _ => None,
    }
}
