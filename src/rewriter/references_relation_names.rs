//! Relation names in strings, where Postgres reads a relation: `'t'::regclass` and
//! `'t'::regtype` (a table's row type has its name), and the string arguments built-ins resolve
//! as relations (`to_regclass('t')`, as ORMs introspect; `has_column_privilege('t', …)`,
//! [`RELATION_NAMING_FUNCTIONS`]). A literal's name the rewriter reads and replaces by the
//! version's view's. A name the statement computes or binds (`$1::regtype`, as psycopg 3's
//! `CompositeInfo.fetch` binds a table's name; `(quote_ident(s) || '.' || quote_ident(t))
//! ::regclass`, as TypeORM builds one; `to_regclass($1)`) is known only when the statement
//! runs, so it is wrapped in one of the version's substitutes (`version_regclass`,
//! `version_regtype`, `version_relation_name` for `to_regclass`), which give the version's
//! view for a managed table and miss what the version does not see. Left as written, such a
//! name resolved to the base table, which the catalog substitutes hide: no columns, no row
//! type's attributes. And the other way: a relation's oid printed as text (`x::regclass::text`)
//! is wrapped in `version_relation_text`, which prints the version's table's name where the
//! `regclass` output prints its view's; so is a result column `x::regclass AS name`, which
//! `references_result_columns.rs` finds.

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, SelectItem, SetExpr, Spanned, Value, ValueWithSpan,
};

use super::Collector;
use crate::model::catalog_substitutes::{
    VERSION_REGCLASS, VERSION_REGTYPE, VERSION_RELATION_NAME, VERSION_RELATION_TEXT,
};
use crate::rewriter::base_row::{insertion, parse_expression};
use crate::rewriter::identifier::{fold_identifier, parse_relation_literal, quote_identifier};
use crate::rewriter::splice::Edit;

use super::types::{is_relation_type, names_a_type};

/// Built-ins that resolve a string argument as a relation name, each with the number of
/// arguments after it (the relation is that far from the end: `has_table_privilege` takes an
/// optional role first). Left as written, the name would resolve to the base table, whose
/// columns answer `has_column_privilege('model_metadata', 'hidden', …)` (the twenty-sixth
/// red-team pass read hidden columns' names so). Not `pg_get_serial_sequence`: its catalog
/// substitute resolves the base table's name (as Django and Rails pass it), the view's (as
/// SQLAlchemy's `attrelid::regclass::text` prints it) and the version's alike, and calls a
/// hidden column missing; at a version without substitutes a rewritten name would lose the
/// sequences (a view's column owns none), and the real function stays a name oracle
/// (docs/rewriting.md, "Not covered").
/// `to_regtype` reads a type's name, and a table's row type has the table's (psycopg 3's
/// `CompositeInfo.fetch` binds it so).
pub const RELATION_NAMING_FUNCTIONS: &[(&str, usize)] = &[
    ("to_regclass", 0),
    ("to_regtype", 0),
    ("has_table_privilege", 1),
    ("has_any_column_privilege", 1),
    ("has_column_privilege", 2),
];

/// What reads the wrapped name, and so which of the version's name readers wraps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reader {
    /// `to_regclass`, `to_regtype`: the name as text, NULL for a relation the version does
    /// not see.
    Lookup,
    /// A cast to `regclass`: 42P01 for one it does not see.
    Regclass,
    /// A cast to `regtype`: 42704.
    Regtype,
}

impl Reader {
    /// What a cast to `data_type`, a relation type, reads with.
    pub(super) fn of_cast(data_type: &DataType) -> Reader {
        if names_a_type(data_type) {
            Reader::Regtype
        } else {
            Reader::Regclass
        }
    }

    /// The version's function that wraps the name, and what follows the name in its call: the
    /// name as text where text is what is read (`to_regclass`'s argument, `x::text::regclass`),
    /// else the relation or type the cast gives.
    fn wrapper(self, text: bool) -> (&'static str, &'static str) {
        match (self, text) {
            (Reader::Lookup, _) => (VERSION_RELATION_NAME, ", 'null'"),
            (Reader::Regclass, true) => (VERSION_RELATION_NAME, ", 'relation'"),
            (Reader::Regtype, true) => (VERSION_RELATION_NAME, ", 'type'"),
            (Reader::Regclass, false) => (VERSION_REGCLASS, ""),
            (Reader::Regtype, false) => (VERSION_REGTYPE, ""),
        }
    }
}

/// How many tokens before a cast's operand its text may start (`CAST (`, and parentheses
/// around the operand, which sqlparser's span of it leaves out).
const MAX_TOKENS_BEFORE_OPERAND: usize = 4;

/// Built-ins returning text that statements build a qualified name with.
const NAME_BUILDING_FUNCTIONS: &[&str] = &[
    "quote_ident",
    "format",
    "concat",
    "concat_ws",
    "lower",
    "upper",
    "replace",
    "btrim",
    "ltrim",
    "rtrim",
    "textcat",
];

/// Where the wrapped expression must end, as the token after it tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// `expr::type`.
    DoubleColon,
    /// `CAST(expr AS type)`.
    As,
    /// A function's argument: `)` or `,`.
    Argument,
}

impl Ending {
    pub(super) fn of_cast(kind: &CastKind) -> Ending {
        match kind {
            CastKind::DoubleColon => Ending::DoubleColon,
            _ => Ending::As,
        }
    }
}

impl Collector<'_> {
    /// A table name inside a string literal that Postgres resolves as a relation.
    pub(super) fn regclass_literal(&mut self, literal: &ValueWithSpan) {
        let Value::SingleQuotedString(content) = &literal.value else {
            return;
        };
        let Some((schema, table)) = parse_relation_literal(content) else {
            return;
        };
        let Some(target) = self.targets.resolve_table(schema.as_deref(), &table) else {
            return;
        };
        let Some(range) = self.index.range(literal.span) else {
            self.unlocatable = true;
            return;
        };
        let view = self.targets.view_reference(target);
        self.edits.push(Edit {
            range,
            text: format!("'{}'", view.replace('\'', "''")),
            relation: false,
        });
    }

    /// A call of one of the [`RELATION_NAMING_FUNCTIONS`]: its relation argument, a literal
    /// or, for `to_regclass` and `to_regtype` (whose argument is text whatever its form), a
    /// computed name.
    pub(super) fn relation_naming_call(&mut self, function: &Function) {
        let after_relation = function
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .and_then(|i| {
                RELATION_NAMING_FUNCTIONS
                    .iter()
                    .find(|(name, _)| i.value.eq_ignore_ascii_case(name))
            })
            .map(|(_, after)| *after);
        if let Some(after) = after_relation
            && let FunctionArguments::List(list) = &function.args
            && let Some(index) = list.args.len().checked_sub(after + 1)
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(argument))) =
                list.args.get(index)
        {
            if let Expr::Value(literal) = argument {
                self.regclass_literal(literal);
            }
            // `to_regclass($1)`, `to_regtype($1)`: the argument is text, whatever its form.
            if after == 0 {
                self.computed_relation_name(argument, Ending::Argument, Reader::Lookup, true);
            }
        }
    }

    /// Wraps `inner`, read by `reader`, in the version's name reader when it is text computed
    /// or bound at run time (`text`: whatever its form, being text that is read as text, as
    /// `to_regclass`'s argument or `x` of `x::text::regclass`). Nothing is changed where the version has no substitutes, or where the
    /// expression's extent in the text is not certain (a wrong extent would change what the
    /// statement computes); the name then resolves as before.
    pub(super) fn computed_relation_name(
        &mut self,
        inner: &Expr,
        ending: Ending,
        reader: Reader,
        text: bool,
    ) {
        // `x::text::regclass`: `x` is wrapped, its extent being the one sqlparser spans.
        if let Expr::Cast {
            kind,
            expr,
            data_type,
            ..
        } = inner
            && is_text_type(data_type)
        {
            return self.computed_relation_name(expr, Ending::of_cast(kind), reader, true);
        }
        if !(text || is_computed_text(inner)) || is_literal(inner) {
            return;
        }
        let (wrapper, after_name) = reader.wrapper(text);
        let Some(function) = self.targets.substitutes_function(wrapper) else {
            return;
        };
        let Some(start) = self.index.offset(inner.span().start) else {
            return;
        };
        let Some(end) = self.expression_end(start, ending, matches!(inner, Expr::Nested(_))) else {
            return;
        };
        let core = strip_parentheses(inner).to_string();
        let same = self
            .sql
            .get(start..end)
            .and_then(parse_expression)
            .is_some_and(|read| strip_parentheses(&read).to_string() == core);
        if !same {
            return;
        }
        let call = format!(
            "{}.{}",
            quote_identifier(&function.schema),
            quote_identifier(&function.name)
        );
        self.edits.push(insertion(start, format!("{call}((")));
        self.edits
            .push(insertion(end, format!(")::pg_catalog.text{after_name})")));
    }

    /// `x::regclass::text`, `CAST(CAST(x AS regclass) AS text)`: the cast to `regclass`,
    /// `cast`, wrapped in the version's `version_relation_text`, which prints the version's
    /// table's name where `regclass`'s output prints its view's (ActiveRecord's foreign keys
    /// named `customers_v2` as the table they reference). The cast's text is found from its
    /// operand's span (sqlparser spans a cast by its operand) and confirmed by parsing it;
    /// where that fails, it is left as written.
    /// `alias`: the name to give the column, for an unaliased select-list item that
    /// Postgres names after the expression, where the wrapper would name it after itself.
    pub(super) fn printed_relation_name(&mut self, cast: &Expr, alias: Option<&str>) {
        let Expr::Cast {
            kind,
            expr: operand,
            data_type,
            ..
        } = cast
        else {
            return;
        };
        if !is_relation_type(data_type) || names_a_type(data_type) {
            return;
        }
        let Some(function) = self.targets.substitutes_function(VERSION_RELATION_TEXT) else {
            return;
        };
        let Some(start) = self.index.offset(operand.span().start) else {
            return;
        };
        let ranges = self.index.tokens().ranges();
        let Ok(first) = ranges.binary_search_by_key(&start, |r| r.start) else {
            return;
        };
        let expected = cast.to_string();
        for back in 0..=MAX_TOKENS_BEFORE_OPERAND {
            let Some(from) = first.checked_sub(back) else {
                return;
            };
            let opening = self.sql.get(ranges[from].clone()).unwrap_or_default();
            if back > 0 && opening != "(" && !opening.eq_ignore_ascii_case("cast") {
                return;
            }
            let region_start = ranges[from].start;
            let found = self.cast_ends(from, kind).into_iter().find(|&end| {
                (self.sql.get(region_start..end))
                    .and_then(parse_expression)
                    .is_some_and(|read| read.to_string() == expected)
            });
            if let Some(end) = found {
                let call = format!(
                    "{}.{}(",
                    quote_identifier(&function.schema),
                    quote_identifier(&function.name)
                );
                self.edits.push(insertion(region_start, call));
                let closing = match alias {
                    Some(name) => format!(") AS \"{}\"", name.replace('"', "\"\"")),
                    None => ")".to_owned(),
                };
                self.edits.push(insertion(end, closing));
                return;
            }
        }
    }

    /// Notes the unaliased expressions of `body`'s select lists (of a set operation's sides
    /// too): a relation printed as text there is left as written, since Postgres names the
    /// column after the expression (`oid` for `c.oid::regclass::text`), and a wrapper would
    /// name it after itself.
    pub(super) fn note_unnamed_items(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Select(select) => {
                let unnamed = select.projection.iter().filter_map(|item| match item {
                    SelectItem::UnnamedExpr(expr) => Some(expr as *const Expr as usize),
                    _ => None,
                });
                self.unnamed_items.extend(unnamed);
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.note_unnamed_items(left);
                self.note_unnamed_items(right);
            }
            _ => {}
        }
    }

    /// Where a cast starting at token `from` may end: after each type name a `::` at its
    /// depth introduces (`x::oid::regclass` has two), or after the `)` closing `CAST (`.
    fn cast_ends(&self, from: usize, kind: &CastKind) -> Vec<usize> {
        let ranges = self.index.tokens().ranges();
        let text = |i: usize| ranges.get(i).and_then(|r| self.sql.get(r.clone()));
        let call = !matches!(kind, CastKind::DoubleColon);
        let mut ends = Vec::new();
        let mut depth = 0usize;
        let mut i = from;
        while let Some(token) = text(i) {
            match token {
                "(" | "[" => depth += 1,
                ")" | "]" => {
                    let Some(outer) = depth.checked_sub(1) else {
                        break;
                    };
                    depth = outer;
                    if call && depth == 0 {
                        ends.push(ranges[i].end);
                        break;
                    }
                }
                "::" | ":" if !call && depth == 0 && i > from => {
                    let colons = if token == "::" { 1 } else { 2 };
                    if colons == 2 && text(i + 1) != Some(":") {
                        break;
                    }
                    // The type's name: a word, or one qualified (`pg_catalog.regclass`).
                    let name = i + colons;
                    let last = if text(name + 1) == Some(".") {
                        name + 2
                    } else {
                        name
                    };
                    let Some(end) = ranges.get(last).map(|r| r.end) else {
                        break;
                    };
                    ends.push(end);
                    i = last;
                }
                _ => {}
            }
            i += 1;
        }
        ends
    }

    /// Where the expression starting at the token at `start` ends: before the first token at
    /// its own depth of parentheses that `ending` names, or the `)` closing the parentheses
    /// around it where sqlparser gave a parenthesized expression's span inside them (`nested`).
    /// `None` when no token starts at `start`, or the expression ends otherwise.
    fn expression_end(&self, start: usize, ending: Ending, nested: bool) -> Option<usize> {
        let ranges = self.index.tokens().ranges();
        let first = ranges.binary_search_by_key(&start, |r| r.start).ok()?;
        let text = |i: usize| ranges.get(i).and_then(|r| self.sql.get(r.clone()));
        let parenthesized = nested && text(first) != Some("(");
        let mut depth = 0usize;
        let mut i = first;
        while let Some(token) = text(i) {
            let at_depth = depth == 0 && i > first;
            let stop = match token {
                "(" | "[" => {
                    depth += 1;
                    None
                }
                ")" | "]" if depth == 0 => Some(parenthesized || ending == Ending::Argument),
                ")" | "]" => {
                    depth -= 1;
                    None
                }
                "::" if at_depth => Some(!parenthesized && ending == Ending::DoubleColon),
                ":" if at_depth && text(i + 1) == Some(":") => {
                    let glued = ranges[i].end == ranges[i + 1].start;
                    Some(glued && !parenthesized && ending == Ending::DoubleColon)
                }
                "," if at_depth => Some(!parenthesized && ending == Ending::Argument),
                word if at_depth && word.eq_ignore_ascii_case("as") => {
                    Some(!parenthesized && ending == Ending::As)
                }
                _ => None,
            };
            match stop {
                Some(true) if i > first => return Some(ranges[i - 1].end),
                Some(_) => return None,
                None => i += 1,
            }
        }
        None
    }
}

/// Text a statement computes or binds: a parameter, a concatenation, a name-building
/// built-in's result.
fn is_computed_text(expr: &Expr) -> bool {
    match expr {
        Expr::Value(value) => matches!(value.value, Value::Placeholder(_)),
        Expr::BinaryOp {
            op: BinaryOperator::StringConcat,
            ..
        } => true,
        Expr::Nested(inner) => is_computed_text(inner),
        Expr::Function(function) => function
            .name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .is_some_and(|ident| {
                NAME_BUILDING_FUNCTIONS
                    .contains(&fold_identifier(&ident.value, ident.quote_style.is_some()).as_str())
            }),
        _ => false,
    }
}

pub(super) fn is_text_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Text
            | DataType::Varchar(_)
            | DataType::CharacterVarying(_)
            | DataType::Char(_)
            | DataType::Character(_)
    )
}

/// A constant the rewriter reads itself (a string) or that names nothing (NULL, a number).
pub(super) fn is_literal(expr: &Expr) -> bool {
    matches!(strip_parentheses(expr), Expr::Value(value) if !matches!(value.value, Value::Placeholder(_)))
}

pub(super) fn strip_parentheses(expr: &Expr) -> &Expr {
    match expr {
        Expr::Nested(inner) => strip_parentheses(inner),
        other => other,
    }
}
