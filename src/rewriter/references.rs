//! Finds the references to managed tables in a parsed statement and the edit for each.
//!
//! A reference is rewritten where a statement reads or writes rows through it: FROM and JOIN
//! items (in every subquery, CTE, LATERAL item and set operation), INSERT / UPDATE / DELETE /
//! MERGE targets, COPY's table, and table names inside `'name'::regclass` and the string
//! arguments built-ins resolve as relations (`to_regclass('name')`, as ORMs introspect;
//! `has_column_privilege('name', …)`, [`RELATION_NAMING_FUNCTIONS`]). A CTE named like a
//! managed table shadows it for unqualified references within its scope.
//!
//! Each reference is replaced by the version's view; where the reference had no alias, the
//! original name is kept as one (`model_metadata_v2 AS model_metadata`) so qualified column
//! references (`model_metadata.id`, `RETURNING model_metadata.*`) keep working. Column
//! references qualified with the schema too (`"public"."model_metadata"."id"`, as Prisma writes
//! them) would no longer resolve once the table is aliased, so their schema qualifier is dropped
//! (`"model_metadata"."id"`), which names the alias.

use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, Expr, FromTable, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    ObjectName, ObjectNamePart, Query, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    Spanned, Statement, TableFactor, TableObject, Visit, Visitor,
};

use super::identifier::{fold_identifier, quote_identifier};
use super::postgres_grammar;
use super::refusal::{self, Refusal};
use super::splice::{Edit, TextIndex};
use super::targets::{VersionTargets, ViewTarget};

#[path = "references_base_writes.rs"]
mod base_writes;
#[path = "references_conflict.rs"]
mod conflict;
#[path = "references_copy.rs"]
mod copy;
#[path = "references_group_by.rs"]
mod group_by;
#[path = "references_relation_names.rs"]
mod relation_names;
#[path = "references_result_columns.rs"]
mod result_columns;
#[path = "references_types.rs"]
mod types;

use copy::copy_option_columns;
pub use relation_names::RELATION_NAMING_FUNCTIONS;
use relation_names::{Ending, Reader};
use types::{is_relation_type, row_type_name};

/// Why [`Collector::collect`] gives no edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotCollected {
    /// A reference could not be located in the text.
    Unlocatable,
    /// The statement is refused.
    Refused(Refusal),
}

/// The CTE names a WITH clause introduces, and how many of them are visible right now (a CTE
/// body sees only the CTEs before it, unless the WITH is RECURSIVE).
struct CteScope {
    names: Vec<String>,
    visible: usize,
    /// Addresses of the CTE bodies, to recognise them when the visitor enters them.
    bodies: Vec<usize>,
    recursive: bool,
}

pub struct Collector<'a> {
    sql: &'a str,
    index: &'a TextIndex<'a>,
    targets: &'a VersionTargets,
    scopes: Vec<CteScope>,
    /// Per visited query: whether it pushed a scope, and a visibility to restore on leaving.
    frames: Vec<(bool, Option<(usize, usize)>)>,
    edits: Vec<Edit>,
    unlocatable: bool,
    refusal: Option<Refusal>,
    /// The ranges an upsert's or a MERGE's edits cover (`upsert.rs`, `merge.rs`): no other
    /// edit may fall inside them.
    upsert_ranges: Vec<std::ops::Range<usize>>,
    /// Addresses of the table factors already rewritten with their statement (a MERGE
    /// target written to the base table).
    handled_factors: Vec<usize>,
    /// Addresses of the table factors that are DML targets (UPDATE, DELETE, MERGE): Postgres
    /// opens these as tables, so a WITH item of the same name does not shadow them.
    dml_targets: Vec<usize>,
    /// The statement defines a view (`CREATE [MATERIALIZED] VIEW`): nothing in it is
    /// rewritten, and a managed table in it refuses it (`refusal::view_definition`).
    defining_view: bool,
    /// The managed table names whose `schema.` `schema_qualified` dropped from a column's
    /// qualifier, with where: Postgres reads what is left by the nearest FROM item of that
    /// name, which must then be the managed table's reference.
    dropped_schemas: Vec<(String, usize)>,
    /// The names (folded) of the FROM items other than an unaliased managed table's
    /// reference: aliases, and tables, functions and WITH items by their own name.
    other_item_names: Vec<String>,
    /// Addresses of the select list's unaliased expressions, which Postgres names after them.
    unnamed_items: Vec<usize>,
    /// Address of the statement's own query, when it is one: its rows are the result.
    outermost_query: Option<usize>,
}

impl<'a> Collector<'a> {
    pub fn new(sql: &'a str, index: &'a TextIndex<'a>, targets: &'a VersionTargets) -> Self {
        Collector {
            sql,
            index,
            targets,
            scopes: Vec::new(),
            frames: Vec::new(),
            edits: Vec::new(),
            unlocatable: false,
            refusal: None,
            upsert_ranges: Vec::new(),
            handled_factors: Vec::new(),
            dml_targets: Vec::new(),
            defining_view: false,
            dropped_schemas: Vec::new(),
            other_item_names: Vec::new(),
            unnamed_items: Vec::new(),
            outermost_query: None,
        }
    }

    /// The edits for one statement; none when a reference could not be located in the text
    /// (the statement must then not be rewritten piecemeal) or the statement is refused.
    pub fn collect(mut self, statement: &Statement) -> Result<Vec<Edit>, NotCollected> {
        if let Statement::Query(query) = statement {
            self.outermost_query = Some(&**query as *const Query as usize);
        }
        let _ = statement.visit(&mut self);
        if let Some(refusal) = self.refusal {
            return Err(NotCollected::Refused(refusal));
        }
        if self.defining_view {
            // Names written in a view's definition resolve as Postgres resolves them.
            return Ok(Vec::new());
        }
        // `public.model_metadata.id` binds, in Postgres, to the unaliased table reference;
        // `model_metadata.id`, once the schema is dropped, to the nearest item of that name,
        // which may be a subquery's alias (the thirty-fourth red-team pass changed which rows
        // an UPDATE wrote so).
        if let Some((table, offset)) = self
            .dropped_schemas
            .iter()
            .find(|(table, _)| self.other_item_names.contains(table))
        {
            return Err(NotCollected::Refused(Refusal::new(
                refusal::schema_qualified_beside_namesake(table),
                Some(*offset),
            )));
        }
        match self.unlocatable {
            true => Err(NotCollected::Unlocatable),
            false => Ok(self.edits),
        }
    }

    /// Refuses the statement (the first reason is kept).
    fn refuse(&mut self, reason: String, offset: Option<usize>) {
        self.refusal.get_or_insert(Refusal::new(reason, offset));
    }

    fn shadowed(&self, name: &str) -> bool {
        self.scopes
            .iter()
            .any(|scope| scope.names[..scope.visible].iter().any(|n| n == name))
    }

    /// A relation name as (schema, name), folded; `None` for names that are not plain
    /// identifiers (dialect functions).
    fn split_name(name: &ObjectName) -> Option<(Option<String>, String, &Ident)> {
        let idents: Vec<&Ident> = name
            .0
            .iter()
            .map(|part| match part {
                ObjectNamePart::Identifier(ident) => Some(ident),
                ObjectNamePart::Function(_) => None,
            })
            .collect::<Option<_>>()?;
        let fold = |i: &Ident| fold_identifier(&i.value, i.quote_style.is_some());
        let (last, qualifiers) = idents.split_last()?;
        let schema = qualifiers.last().map(|i| fold(i));
        Some((schema, fold(last), last))
    }

    fn resolve(&self, name: &ObjectName) -> Option<(&'a ViewTarget, &str)> {
        self.resolve_in(name, true)
    }

    /// `shadowable`: whether a WITH item named like the table hides it (not for DML targets).
    fn resolve_in(&self, name: &ObjectName, shadowable: bool) -> Option<(&'a ViewTarget, &str)> {
        let (schema, table, last) = Self::split_name(name)?;
        if shadowable && schema.is_none() && self.shadowed(&table) {
            return None;
        }
        let target = self.targets.resolve(schema.as_deref(), &table)?;
        let written = self
            .index
            .range(last.span)
            .map(|r| &self.sql[r])
            .unwrap_or_default();
        Some((target, written))
    }

    /// The name (folded) `factor` goes by in its query, unless it is an unaliased managed
    /// table's reference (which the rewrite aliases with the name written).
    fn other_item_name(&self, factor: &TableFactor) -> Option<String> {
        let fold = |i: &Ident| fold_identifier(&i.value, i.quote_style.is_some());
        let alias = match factor {
            TableFactor::Table { alias, .. }
            | TableFactor::Derived { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::UNNEST { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::NestedJoin { alias, .. }
            | TableFactor::JsonTable { alias, .. }
            | TableFactor::OpenJsonTable { alias, .. }
            | TableFactor::XmlTable { alias, .. }
            | TableFactor::Pivot { alias, .. }
            | TableFactor::Unpivot { alias, .. }
            | TableFactor::MatchRecognize { alias, .. }
            | TableFactor::SemanticView { alias, .. } => alias.as_ref(),
            // Every kind of item with an alias is listed above (the thirty-ninth red-team
            // pass aliased an XMLTABLE so); one sqlparser adds later goes unnamed here.
            _ => None,
        };
        if let Some(alias) = alias {
            return Some(fold(&alias.name));
        }
        match factor {
            TableFactor::Table { name, args, .. } => {
                let address = factor as *const TableFactor as usize;
                let managed = args.is_none()
                    && self
                        .resolve_in(name, !self.dml_targets.contains(&address))
                        .is_some();
                (!managed).then(|| Self::split_name(name).map(|(_, table, _)| table))?
            }
            TableFactor::Function { name, .. } => {
                Self::split_name(name).map(|(_, function, _)| function)
            }
            _ => None,
        }
    }

    /// Replaces a relation name by the view; adds the original name as alias when asked.
    fn relation(&mut self, name: &ObjectName, add_alias: bool, shadowable: bool) {
        let Some((target, written)) = self.resolve_in(name, shadowable) else {
            return;
        };
        if self.defining_view {
            self.refuse_view_definition(target, name);
            return;
        }
        let Some(range) = self.index.range(name.span()) else {
            self.unlocatable = true;
            return;
        };
        let mut text = self.targets.view_reference(target);
        let mut range = range;
        if add_alias {
            if written.is_empty() {
                self.unlocatable = true;
                return;
            }
            (range, text) =
                postgres_grammar::aliased(self.sql, self.index.tokens(), range, &text, written);
        }
        self.edits.push(Edit {
            range,
            text,
            relation: true,
        });
    }

    /// `schema.table` qualifying a column or a wildcard (`idents` ends with the table): when it
    /// names a managed table, drop `schema.` so the qualifier names the alias the table
    /// reference was given.
    fn schema_qualified(&mut self, idents: &[&Ident]) {
        let [.., schema, table] = idents else {
            return;
        };
        let fold = |i: &Ident| fold_identifier(&i.value, i.quote_style.is_some());
        if self
            .targets
            .resolve(Some(&fold(schema)), &fold(table))
            .is_none()
        {
            return;
        }
        let (Some(first), Some(table_range)) = (
            idents.first().and_then(|i| self.index.range(i.span)),
            self.index.range(table.span),
        ) else {
            self.unlocatable = true;
            return;
        };
        if self.in_upsert(first.start..table_range.end) {
            return;
        }
        self.dropped_schemas.push((fold(table), first.start));
        self.edits.push(Edit {
            range: first.start..table_range.start,
            text: String::new(),
            relation: false,
        });
    }

    /// `schema.table.*` items of a projection or RETURNING list.
    fn select_items(&mut self, items: &[SelectItem]) {
        for item in items {
            if let SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(name),
                _,
            ) = item
            {
                self.qualified_wildcard(name);
            }
        }
    }

    /// `schema.table.*`, a select item or inside an expression (`to_json(s.t.*)`, `ROW(s.t.*)`,
    /// `s.t.* IS NULL`: the red-team's forty-fourth pass found those left qualified, which the
    /// alias then hid from Postgres).
    fn qualified_wildcard(&mut self, name: &ObjectName) {
        if let Some(idents) = name
            .0
            .iter()
            .map(ObjectNamePart::as_ident)
            .collect::<Option<Vec<_>>>()
        {
            self.schema_qualified(&idents);
        }
    }

    /// The projections of a query body's SELECTs (nested queries are visited on their own).
    fn set_expr(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Select(select) => self.select_items(&select.projection),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            _ => {}
        }
    }

    /// A managed table's name used as a type (`NULL::model_metadata`): its row type is the
    /// base table's, with every column of every version, so it becomes the view's.
    fn row_type(&mut self, name: &ObjectName) {
        let Some((schema, table, _)) = Self::split_name(name) else {
            return;
        };
        let Some(target) = self.targets.resolve_table(schema.as_deref(), &table) else {
            return;
        };
        if self.defining_view {
            self.refuse_view_definition(target, name);
            return;
        }
        self.replace_name(name, self.targets.view_reference(target), true);
    }

    /// A view's definition names `target` at `name`: refused if it is a managed table (a
    /// catalog relation or a name the search_path pins elsewhere reads as written).
    fn refuse_view_definition(&mut self, target: &ViewTarget, name: &ObjectName) {
        if self.targets.is_managed(target) {
            let offset = self.index.range(name.span()).map(|range| range.start);
            let view = self.targets.view_reference(target);
            let reason = refusal::view_definition(&target.table.name, &self.targets.version, &view);
            self.refuse(reason, offset);
        }
    }

    /// Replaces the (possibly qualified) `name` by `text`.
    fn replace_name(&mut self, name: &ObjectName, text: String, relation: bool) {
        let Some(range) = self.index.range(name.span()) else {
            self.unlocatable = true;
            return;
        };
        self.edits.push(Edit {
            range,
            text,
            relation,
        });
    }

    /// A call of a catalog function that prints or reads the base table's names and comments
    /// (`pg_get_indexdef(oid)`, `col_description(oid, n)`) goes to the version's substitute.
    fn substitute_function(&mut self, name: &ObjectName) {
        let Some((schema, function, _)) = Self::split_name(name) else {
            return;
        };
        let Some(substitute) = self
            .targets
            .substitute_function(schema.as_deref(), &function)
        else {
            return;
        };
        let text = format!(
            "{}.{}",
            quote_identifier(&substitute.schema),
            quote_identifier(&substitute.name)
        );
        self.replace_name(name, text, false);
    }
}

impl Visitor for Collector<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let address = query as *const Query as usize;
        self.note_unnamed_items(&query.body);
        if self.outermost_query == Some(address) {
            self.result_relation_columns(query);
        }
        let mut restore = None;
        for (i, scope) in self.scopes.iter_mut().enumerate().rev() {
            if let Some(position) = scope.bodies.iter().position(|&b| b == address) {
                restore = Some((i, scope.visible));
                scope.visible = if scope.recursive {
                    scope.names.len()
                } else {
                    position
                };
                break;
            }
        }
        let pushed = if let Some(with) = &query.with {
            let names: Vec<String> = with
                .cte_tables
                .iter()
                .map(|cte| {
                    fold_identifier(&cte.alias.name.value, cte.alias.name.quote_style.is_some())
                })
                .collect();
            self.scopes.push(CteScope {
                visible: names.len(),
                names,
                bodies: with
                    .cte_tables
                    .iter()
                    .map(|cte| &*cte.query as *const Query as usize)
                    .collect(),
                recursive: with.recursive,
            });
            true
        } else {
            false
        };
        self.frames.push((pushed, restore));
        self.set_expr(&query.body);
        self.group_by_dependents(query);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        if let Some((pushed, restore)) = self.frames.pop() {
            if pushed {
                self.scopes.pop();
            }
            if let Some((scope, visible)) = restore
                && let Some(scope) = self.scopes.get_mut(scope)
            {
                scope.visible = visible;
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let Some(name) = self.other_item_name(factor) {
            self.other_item_names.push(name);
        }
        if let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        {
            let address = factor as *const TableFactor as usize;
            if self.handled_factors.contains(&address) {
                return ControlFlow::Continue(());
            }
            let shadowable = !self.dml_targets.contains(&address);
            self.relation(name, alias.is_none(), shadowable);
        }
        // A function in FROM (`FROM pg_identify_object(…)`, `LATERAL pg_get_viewdef(c.oid)`)
        // is a call like any other: a printer with a substitute goes there too.
        if let TableFactor::Table {
            name,
            args: Some(_),
            ..
        }
        | TableFactor::Function { name, .. } = factor
        {
            self.substitute_function(name);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement {
            Statement::Insert(insert) => {
                if self.upsert(insert) {
                    return ControlFlow::Continue(());
                }
                if let TableObject::TableName(name) = &insert.table {
                    self.relation(name, insert.table_alias.is_none(), false);
                }
                self.select_items(insert.returning.as_deref().unwrap_or_default());
            }
            Statement::Update(update) => {
                self.dml_targets
                    .push(&update.table.relation as *const TableFactor as usize);
                self.select_items(update.returning.as_deref().unwrap_or_default());
            }
            Statement::Delete(delete) => {
                let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) =
                    &delete.from;
                self.dml_targets.extend(
                    tables
                        .iter()
                        .map(|t| &t.relation as *const TableFactor as usize),
                );
                self.select_items(delete.returning.as_deref().unwrap_or_default());
            }
            Statement::CreateView(_) => self.defining_view = true,
            Statement::Merge(merge) if !self.merge(merge) => {
                self.dml_targets
                    .push(&merge.table as *const TableFactor as usize);
            }
            Statement::Copy {
                source:
                    CopySource::Table {
                        table_name,
                        columns,
                    },
                to,
                options,
                legacy_options,
                ..
            } => self.copy(
                table_name,
                columns,
                *to,
                copy_option_columns(options, legacy_options).collect(),
            ),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::CompoundIdentifier(parts) if parts.len() >= 3 => {
                let qualifier: Vec<&Ident> = parts[..parts.len() - 1].iter().collect();
                self.schema_qualified(&qualifier);
            }
            // A table's row type has its name: `'t'::regtype` names the version's view's.
            Expr::Cast {
                kind,
                expr: inner,
                data_type,
                ..
            } if is_relation_type(data_type) => {
                if let Expr::Value(literal) = &**inner {
                    self.regclass_literal(literal);
                }
                let (ending, reader) = (Ending::of_cast(kind), Reader::of_cast(data_type));
                self.computed_relation_name(inner, ending, reader, false);
            }
            // `x::regclass::text` prints the version's table's name, not its view's.
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } if relation_names::is_text_type(data_type)
                && !self.unnamed_items.contains(&(expr as *const Expr as usize)) =>
            {
                self.printed_relation_name(inner, None)
            }
            Expr::Cast { data_type, .. }
            | Expr::TypedString(sqlparser::ast::TypedString { data_type, .. }) => {
                if let Some(name) = row_type_name(data_type) {
                    self.row_type(name);
                }
            }
            Expr::QualifiedWildcard(name, _) => self.qualified_wildcard(name),
            Expr::Function(function) => {
                self.substitute_function(&function.name);
                if let FunctionArguments::List(list) = &function.args {
                    for arg in &list.args {
                        if let FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(name))
                        | FunctionArg::Named {
                            arg: FunctionArgExpr::QualifiedWildcard(name),
                            ..
                        } = arg
                        {
                            self.qualified_wildcard(name);
                        }
                    }
                }
                self.relation_naming_call(function);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
