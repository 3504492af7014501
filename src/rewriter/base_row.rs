//! A version's view as rows of its base table: how the view reads each of its columns over a
//! base row, and how its INSTEAD OF trigger writes one.
//!
//! Where Postgres cannot write through a version's view (an upsert through a trigger-backed
//! view, `upsert.rs`; MERGE into any view before PostgreSQL 17, `merge.rs`), the rewriter writes
//! the base table instead and must say, in SQL over the base row, what the view would have
//! read and written: a plain or renamed column is its base column, an expression column its
//! read function over that row ([`BaseRow::read`]); a trigger-backed view's INSERT and UPDATE
//! write the base columns from a view-shaped `new` row (and an `old` one) as its trigger does,
//! an expression by its write function ([`BaseRow::written_value`],
//! [`BaseRow::trigger_update`]); an omitted column takes the view's default by its default
//! function ([`BaseRow::default_value`]). Those functions are the version's, made at apply
//! with a pinned search_path (`control::views::mapping_functions`): none of the mapping is
//! pasted as text, which Postgres would parse under the client's search_path, its temporary
//! schema first (the forty-seventh red-team pass). Column references in the client's clauses
//! are mapped through the reads ([`BaseRow::map_expression`]); whatever cannot be mapped
//! exactly is a [`Refusal`] naming the statement and the reason.
//!
//! Every edit made here inserts or replaces text between the client's tokens and never copies
//! the client's constants, so the shape cache can apply it to statements with other constants.

use std::ops::ControlFlow;

use sqlparser::ast::{
    AccessExpr, AssignmentTarget, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    ObjectName, ObjectNamePart, Query, Spanned, Visit, Visitor, visit_expressions,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Span;

use super::identifier::{fold_identifier, quote_identifier};
use super::lexer::{self, Kind, Token};
use super::refusal::{Refusal, missing_column};
use super::splice::{Edit, TextIndex};
use super::statement_scan::{Scan, SetSegment};
use super::targets::{BaseWrite, ViewTarget};
use crate::model::{MappedColumn, ViewMapping, WriteAssignment};

/// The view-shaped rows the spec's write expressions read as `NEW` and, on UPDATE, `OLD`.
pub const NEW_ALIAS: &str = "new";
pub const OLD_ALIAS: &str = "old";

/// What a refusal for a mapping without its functions tells the operator.
const APPLY_AGAIN: &str = "run viewgate views apply again";

/// Whether a trigger write's `old` row is in scope (UPDATE) or NULL (INSERT, as in the
/// trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldRow {
    InScope,
    Null,
}

/// The statement written to the base table, for the refusals' wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    /// `INSERT … ON CONFLICT` through a trigger-backed view.
    Upsert,
    /// `MERGE` into a view.
    Merge,
}

/// The name the statement's target row goes by: its alias, or the table's name as written.
pub struct RowName {
    /// As written (used to qualify base columns).
    pub text: String,
    /// Folded, to recognise qualifiers.
    pub folded: String,
    /// Whether the client gave an alias (then `schema.table.col` no longer names the row).
    pub aliased: bool,
}

/// How a column reference in a mapped clause is read: over the base row named by the string
/// (the view's read of the column there), left as the client wrote it (another relation's),
/// or refused.
pub type Resolution = Result<Option<String>, Refusal>;

/// One view of one version over its base table, in one statement.
pub struct BaseRow<'a> {
    pub sql: &'a str,
    pub index: &'a TextIndex<'a>,
    pub target: &'a ViewTarget,
    pub write: &'a BaseWrite,
    pub version: &'a str,
    pub statement: Statement,
}

impl BaseRow<'_> {
    pub fn mapping(&self) -> &ViewMapping {
        &self.write.mapping
    }

    pub fn refusal(&self, why: impl std::fmt::Display, offset: Option<usize>) -> Refusal {
        let (version, table) = (self.version, &self.target.table.name);
        Refusal::new(
            match self.statement {
                Statement::Upsert => format!(
                    "INSERT … ON CONFLICT through version {version}'s trigger-backed view of \"{table}\" is written to the base table, and viewgate cannot map this exactly: {why}"
                ),
                Statement::Merge => format!(
                    "MERGE into version {version}'s view of \"{table}\" is written to the base table (PostgreSQL before 17 cannot MERGE into a view), and viewgate cannot map this exactly: {why}"
                ),
            },
            offset,
        )
    }

    /// Where the clauses whose references are mapped are, for the refusal of a subquery.
    fn mapped_clauses(&self) -> &'static str {
        match self.statement {
            Statement::Upsert => "ON CONFLICT's SET, WHERE or RETURNING",
            Statement::Merge => "MERGE's ON, WHEN conditions, SET or INSERT values",
        }
    }

    /// The statement's tokens without comments, for a [`Scan`] of its clauses; refused (at
    /// `at_name`) when the text is outside what the lexer reads.
    pub fn significant_tokens(&self, at_name: Option<usize>) -> Result<Vec<Token>, Refusal> {
        let mut tokens = Vec::new();
        lexer::lex(self.sql, &mut tokens).ok_or_else(|| {
            self.refusal("its text is outside what viewgate's lexer reads", at_name)
        })?;
        tokens.retain(|t| t.kind != Kind::Comment);
        Ok(tokens)
    }

    pub fn offset(&self, ident: &Ident) -> Option<usize> {
        self.index.range(ident.span).map(|r| r.start)
    }

    /// The base table, qualified and quoted.
    pub fn base(&self) -> String {
        format!(
            "{}.{}",
            quote_identifier(&self.write.base.schema),
            quote_identifier(&self.write.base.name)
        )
    }

    /// The view's column `name`; one the version does not have is refused as Postgres
    /// refuses a missing column (42703), as INSERT and UPDATE through the view are.
    pub fn column(&self, name: &str, offset: Option<usize>) -> Result<&MappedColumn, Refusal> {
        self.mapping().column(name).ok_or_else(|| {
            let table = &self.target.table.name;
            Refusal::undefined_column(missing_column(name, table, self.version), offset)
        })
    }

    pub fn type_of<'m>(
        &self,
        column: &'m MappedColumn,
        offset: Option<usize>,
    ) -> Result<&'m str, Refusal> {
        if column.type_name.is_empty() {
            return Err(self.refusal(
                format!("the catalog has no type for column \"{}\"", column.name),
                offset,
            ));
        }
        Ok(&column.type_name)
    }

    /// The name the target row goes by: `alias` when given, else the name as `written`.
    pub fn row_name(&self, alias: Option<&Ident>, written: &str) -> RowName {
        match alias {
            Some(alias) => RowName {
                text: self
                    .index
                    .range(alias.span)
                    .map(|r| self.sql[r].to_owned())
                    .unwrap_or_default(),
                folded: fold_identifier(&alias.value, alias.quote_style.is_some()),
                aliased: true,
            },
            None => RowName {
                text: written.to_owned(),
                folded: self.target.table.name.clone(),
                aliased: false,
            },
        }
    }

    /// Refuses a target row named like the rows the trigger's writes read (`new`, `old`):
    /// the trigger's `ELSE <row>.col` would read the derived row instead of the stored one.
    pub fn check_row_name(&self, row: &RowName, offset: Option<usize>) -> Result<(), Refusal> {
        if [NEW_ALIAS, OLD_ALIAS].contains(&row.folded.as_str()) {
            return Err(self.refusal(
                format!(
                    "the target named \"{}\", as the rows the trigger's writes read are",
                    row.folded
                ),
                offset,
            ));
        }
        Ok(())
    }

    /// Whether qualifiers name the target row: its alias (or name), or `schema.table` or
    /// `database.schema.table` when it has no alias (Postgres takes any database name here
    /// and then refuses one that is not the current database's; the thirtieth red-team pass
    /// read the base row through `appdb.public.model_metadata.model_type`).
    pub fn names_row(&self, qualifiers: &[&Ident], row: &RowName) -> bool {
        let fold = |i: &Ident| fold_identifier(&i.value, i.quote_style.is_some());
        match qualifiers {
            [name] => fold(name) == row.folded,
            [_, schema, table] | [schema, table] => {
                !row.aliased
                    && fold(table) == self.target.table.name
                    && fold(schema) == self.target.table.schema
            }
            _ => false,
        }
    }

    /// A base column's value as the trigger writes it, over the derived row `new` and, where
    /// `old` is in scope (UPDATE), the derived row `old`: a view column as it is, an
    /// expression by its mapping function over those rows as the view's row type.
    pub fn written_value(
        &self,
        assignment: &WriteAssignment,
        row: &RowName,
        old: OldRow,
    ) -> Result<String, Refusal> {
        let value = match (&assignment.view_column, &assignment.expression) {
            (Some(view_column), _) => format!("{NEW_ALIAS}.{}", quote_identifier(view_column)),
            (None, Some(_)) => {
                let old = match old {
                    OldRow::InScope => self.view_row(OLD_ALIAS),
                    OldRow::Null => "NULL".into(),
                };
                format!(
                    "{}({}, {old})",
                    self.write_function(assignment)?,
                    self.view_row(NEW_ALIAS)
                )
            }
            (None, None) => "NULL".into(),
        };
        Ok(match &assignment.when_changed {
            Some(column) => {
                let column = quote_identifier(column);
                format!(
                    "CASE WHEN {NEW_ALIAS}.{column} IS DISTINCT FROM {OLD_ALIAS}.{column} THEN {value} ELSE {}.{} END",
                    row.text,
                    quote_identifier(&assignment.base_column)
                )
            }
            None => value,
        })
    }

    /// The mapping function that computes `assignment`'s expression.
    pub fn write_function<'w>(&self, assignment: &'w WriteAssignment) -> Result<&'w str, Refusal> {
        assignment.function.as_deref().ok_or_else(|| {
            self.refusal(
                format!(
                    "the catalog records no function for the write expression of base column \"{}\"; {APPLY_AGAIN}",
                    assignment.base_column
                ),
                None,
            )
        })
    }

    /// The view's row type made of the derived row `alias`'s columns, in the view's order.
    pub fn view_row(&self, alias: &str) -> String {
        format!(
            "ROW({})::{}",
            join(
                self.mapping()
                    .columns
                    .iter()
                    .map(|c| format!("{alias}.{}", quote_identifier(&c.name)))
            ),
            self.view_type()
        )
    }

    /// The version's view, qualified and quoted: its row type.
    pub fn view_type(&self) -> String {
        format!(
            "{}.{}",
            quote_identifier(&self.target.view.schema),
            quote_identifier(&self.target.view.name)
        )
    }

    /// The view's default for `column` (NULL where it has none), by its mapping function.
    pub fn default_value(
        &self,
        column: &MappedColumn,
        offset: Option<usize>,
    ) -> Result<String, Refusal> {
        match (&column.default, &column.default_function) {
            (None, _) => Ok("NULL".into()),
            (Some(_), Some(function)) => Ok(format!("{function}()")),
            (Some(_), None) => Err(self.refusal(
                format!(
                    "the catalog records no function for the default of column \"{}\"; {APPLY_AGAIN}",
                    column.name
                ),
                offset,
            )),
        }
    }

    /// Refuses a mapping an older viewgate recorded, whose expressions, defaults and types
    /// would be pasted as text (`ViewMapping::pinned`).
    pub fn check_pinned(&self, offset: Option<usize>) -> Result<(), Refusal> {
        if self.mapping().pinned {
            return Ok(());
        }
        Err(self.refusal(
            format!(
                "the catalog's mapping of the view predates its mapping functions; {APPLY_AGAIN}"
            ),
            offset,
        ))
    }

    /// The columns of a SET list (`c = x, …`, located as `segments`), each checked: a view
    /// column of this version, set once, not `DEFAULT`; each value's column references
    /// mapped by `resolve`.
    pub fn set_columns<'s, 'm>(
        &'m self,
        scan: &Scan,
        assignments: &[sqlparser::ast::Assignment],
        segments: &'s [SetSegment],
        resolve: &dyn Fn(&[&Ident], &Ident) -> Resolution,
        edits: &mut Vec<Edit>,
    ) -> Result<Vec<(&'m MappedColumn, &'s SetSegment)>, Refusal> {
        let at = |i: usize| scan.tokens.get(i).map(|t| t.start);
        let mut set: Vec<(&MappedColumn, &SetSegment)> = Vec::with_capacity(assignments.len());
        for (assignment, segment) in assignments.iter().zip(segments) {
            let AssignmentTarget::ColumnName(name) = &assignment.target else {
                return Err(self.refusal("a SET of several columns at once", at(segment.target)));
            };
            let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
                return Err(self.refusal("a qualified SET column", at(segment.target)));
            };
            let column_name = fold_identifier(&ident.value, ident.quote_style.is_some());
            let column = self.column(&column_name, at(segment.target))?;
            if set.iter().any(|(c, _)| c.name == column_name) {
                return Err(self.refusal(
                    format!("column \"{column_name}\" is set twice"),
                    at(segment.target),
                ));
            }
            if is_default(&assignment.value) {
                let clause = match self.statement {
                    Statement::Upsert => "DO UPDATE SET",
                    Statement::Merge => "MERGE's UPDATE SET",
                };
                return Err(self.refusal(format!("DEFAULT in {clause}"), at(segment.value.start)));
            }
            self.map_expression(&assignment.value, resolve, edits)?;
            set.push((column, segment));
        }
        Ok(set)
    }

    /// `SET c = x, …` as the trigger's UPDATE: every base column the trigger writes, from a
    /// `new` row made of the client's values (in place, cast to the view's types) and the
    /// current row's other columns, and an `old` row (the current row as the view reads it).
    pub fn trigger_update(
        &self,
        scan: &Scan,
        set: &[(&MappedColumn, &SetSegment)],
        row: &RowName,
        edits: &mut Vec<Edit>,
    ) -> Result<(), Refusal> {
        let at = |i: usize| scan.tokens.get(i).map(|t| t.start);
        let update = &self.mapping().update;
        let columns = join(update.iter().map(|a| quote_identifier(&a.base_column)));
        let values = join(
            update
                .iter()
                .map(|a| self.written_value(a, row, OldRow::InScope))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let head = if update.len() == 1 {
            columns
        } else {
            format!("({columns})")
        };
        let mut rest = Vec::new();
        let mut old = Vec::new();
        for column in &self.mapping().columns {
            let read = format!(
                "{} AS {}",
                self.read(column, &row.text)?,
                quote_identifier(&column.name)
            );
            if !set.iter().any(|(c, _)| c.name == column.name) {
                rest.push(read.clone());
            }
            old.push(read);
        }
        for (i, (column, segment)) in set.iter().enumerate() {
            let cast = format!(
                " AS {}) AS {}",
                self.type_of(column, at(segment.target))?,
                quote_identifier(&column.name)
            );
            let value_start = scan.tokens[segment.value.start].start;
            let value_end = scan.tokens[segment.value.end - 1].end;
            if i == 0 {
                edits.push(Edit {
                    range: scan.tokens[segment.target].start..value_start,
                    text: format!("{head} = (SELECT {values} FROM (SELECT CAST("),
                    relation: false,
                });
            }
            match set.get(i + 1) {
                Some((_, next)) => edits.push(Edit {
                    range: value_end..scan.tokens[next.value.start].start,
                    text: format!("{cast}, CAST("),
                    relation: false,
                }),
                None => edits.push(insertion(
                    value_end,
                    format!(
                        "{cast}{}) AS {NEW_ALIAS}, (SELECT {}) AS {OLD_ALIAS})",
                        rest.iter().map(|r| format!(", {r}")).collect::<String>(),
                        old.join(", ")
                    ),
                )),
            }
        }
        Ok(())
    }

    /// Maps every column reference in `expr` as `resolve` says (qualifiers, column): to the
    /// view's read of it over the named base row, left alone, or refused. Subqueries are
    /// refused (which relation an unqualified name in them means is not tracked), and so is
    /// `DEFAULT`.
    pub fn map_expression(
        &self,
        expr: &Expr,
        resolve: &dyn Fn(&[&Ident], &Ident) -> Resolution,
        edits: &mut Vec<Edit>,
    ) -> Result<(), Refusal> {
        if let ControlFlow::Break(at) = expr.visit(&mut FirstQuery) {
            return Err(self.refusal(
                format!("a subquery in {}", self.mapped_clauses()),
                self.index.range(at).map(|r| r.start),
            ));
        }
        // The names read as the column of a subscripted reference (`t.col['k']`), which the
        // walk reaches again, on their own, below it.
        let mut subscripted: Vec<Span> = Vec::new();
        let flow = visit_expressions(expr, |e| {
            let (qualifiers, column): (Vec<&Ident>, &Ident) = match e {
                Expr::QualifiedWildcard(name, _) => {
                    return match self.whole_row(name, resolve) {
                        Some(refusal) => ControlFlow::Break(refusal),
                        None => ControlFlow::Continue(()),
                    };
                }
                Expr::Function(function) => {
                    let FunctionArguments::List(list) = &function.args else {
                        return ControlFlow::Continue(());
                    };
                    let refusal = list.args.iter().find_map(|arg| {
                        let (FunctionArg::Unnamed(arg)
                        | FunctionArg::Named { arg, .. }
                        | FunctionArg::ExprNamed { arg, .. }) = arg;
                        match arg {
                            FunctionArgExpr::QualifiedWildcard(name) => {
                                self.whole_row(name, resolve)
                            }
                            _ => None,
                        }
                    });
                    return match refusal {
                        Some(refusal) => ControlFlow::Break(refusal),
                        None => ControlFlow::Continue(()),
                    };
                }
                Expr::Identifier(ident) if is_default(e) => {
                    return ControlFlow::Break(self.refusal("DEFAULT here", self.offset(ident)));
                }
                Expr::Identifier(ident) if subscripted.contains(&ident.span) => {
                    return ControlFlow::Continue(());
                }
                Expr::Identifier(ident) => (Vec::new(), ident),
                Expr::CompoundFieldAccess { root, access_chain } => {
                    let Some(name) = subscripted_name(root, access_chain) else {
                        return ControlFlow::Continue(());
                    };
                    subscripted.extend(name.iter().map(|ident| ident.span));
                    match name.split_last() {
                        Some((column, qualifiers)) => (qualifiers.to_vec(), *column),
                        None => return ControlFlow::Continue(()),
                    }
                }
                Expr::CompoundIdentifier(parts) => match parts.split_last() {
                    Some((column, qualifiers)) => (qualifiers.iter().collect(), column),
                    None => return ControlFlow::Continue(()),
                },
                _ => return ControlFlow::Continue(()),
            };
            let relation = match resolve(&qualifiers, column) {
                Ok(Some(relation)) => relation,
                Ok(None) => return ControlFlow::Continue(()),
                Err(refusal) => return ControlFlow::Break(refusal),
            };
            let fold = |i: &Ident| fold_identifier(&i.value, i.quote_style.is_some());
            let text = match self
                .column(&fold(column), self.offset(column))
                .and_then(|c| self.read(c, &relation))
            {
                Ok(text) => text,
                Err(refusal) => return ControlFlow::Break(refusal),
            };
            let first = qualifiers.first().copied().unwrap_or(column);
            match (self.index.range(first.span), self.index.range(column.span)) {
                (Some(first), Some(last)) => {
                    edits.push(Edit {
                        range: first.start..last.end,
                        text,
                        relation: false,
                    });
                    ControlFlow::Continue(())
                }
                _ => ControlFlow::Break(self.refusal("a column could not be located", None)),
            }
        });
        match flow {
            ControlFlow::Break(refusal) => Err(refusal),
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    /// `name.*` where `resolve` reads `name` as a base row (the target, `excluded`): refused,
    /// since it expands to the base table's every column (the twenty-ninth red-team pass read
    /// hidden ones through `(t.*)::text` in an upsert). Another relation's row is left alone
    /// where `resolve` leaves its columns alone.
    fn whole_row(
        &self,
        name: &ObjectName,
        resolve: &dyn Fn(&[&Ident], &Ident) -> Resolution,
    ) -> Option<Refusal> {
        let Some(qualifiers) = name
            .0
            .iter()
            .map(ObjectNamePart::as_ident)
            .collect::<Option<Vec<&Ident>>>()
        else {
            return Some(self.refusal("a whole-row reference viewgate cannot read", None));
        };
        let offset = qualifiers.first().and_then(|first| self.offset(first));
        match resolve(&qualifiers, &Ident::new("*")) {
            Ok(Some(_)) => Some(self.refusal(
                "a whole-row reference to the target (it would read the base table's row)",
                offset,
            )),
            Ok(None) => None,
            Err(refusal) => Some(refusal),
        }
    }

    /// The view's read of `column` over the base row named `relation`: the base column, or
    /// the expression column's mapping function over that row.
    pub fn read(&self, column: &MappedColumn, relation: &str) -> Result<String, Refusal> {
        if let Some(base) = &column.base_column {
            return Ok(format!("{relation}.{}", quote_identifier(base)));
        }
        match &column.read_function {
            Some(function) => Ok(format!("{function}({relation}.*)")),
            None => Err(self.refusal(
                format!(
                    "the catalog records no function for the read expression of column \"{}\"; {APPLY_AGAIN}",
                    column.name
                ),
                None,
            )),
        }
    }
}

/// Finds the first query anywhere inside an expression, in whatever syntax holds it
/// (`(SELECT …)`, `EXISTS`, `IN (SELECT …)`, `ARRAY(SELECT …)`, a function's subquery
/// argument): its span. Matching expression kinds one by one missed `ARRAY(SELECT …)`, a
/// call to sqlparser, and the thirtieth red-team pass read the base row through
/// `(SELECT t.*) x` inside one.
struct FirstQuery;

impl Visitor for FirstQuery {
    type Break = Span;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Span> {
        ControlFlow::Break(query.span())
    }
}

/// The column name a subscripted reference starts with (`t.col['k']`, `col[1]`), root and
/// fields: sqlparser reads it as an access chain, Postgres as a subscript of the column
/// `t.col`. `None` when the chain is something else (a field of a parenthesised row, a call).
fn subscripted_name<'e>(root: &'e Expr, chain: &'e [AccessExpr]) -> Option<Vec<&'e Ident>> {
    let mut name: Vec<&Ident> = match root {
        Expr::Identifier(ident) => vec![ident],
        Expr::CompoundIdentifier(parts) => parts.iter().collect(),
        _ => return None,
    };
    for access in chain {
        match access {
            AccessExpr::Dot(Expr::Identifier(field)) => name.push(field),
            AccessExpr::Subscript(_) => return Some(name),
            AccessExpr::Dot(_) => return None,
        }
    }
    None
}

/// A spec's expression (the text the catalog recorded) as sqlparser reads it; `None` when it
/// cannot be parsed.
pub fn parse_expression(expression: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(expression)
        .ok()?
        .parse_expr()
        .ok()
}

/// Whether `expr` is the keyword `DEFAULT` (sqlparser reads it as an identifier).
pub fn is_default(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

pub fn insertion(at: usize, text: String) -> Edit {
    Edit {
        range: at..at,
        text,
        relation: false,
    }
}

pub fn join(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}
