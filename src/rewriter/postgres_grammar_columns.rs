//! DDL on a managed table that names one of its columns where, at the session's version, the
//! column is stored in a base column of another name.
//!
//! While a migration is live, a version's column may live in a base column that is not
//! called what the version calls it: a renamed column (v2's `full_name` is base `name` until
//! `migrate complete`), a replaced or retyped one (v2's `email` is base `_vg_v2_email`, and
//! base `email` is v1's). DDL names base columns, so `CREATE INDEX ON customers (email)` sent
//! through at v2 makes an index on v1's column, which v2 never uses and which then blocks
//! the complete; `(full_name)` fails with a bare 42703. A name the version does not show
//! under that name (v1's `name` at v2, `_vg_v2_email` itself) reaches a base column the
//! version knows by another name. So at a version, such DDL is refused
//! ([`Place::ColumnStorage`], `refusal::column_storage`), naming the base column, the
//! migration operation that makes it on the version's columns, and `migrate complete`. The
//! common case, a version whose columns are the base table's own names, passes unchanged,
//! as does a table with no mapping recorded.
//!
//! Forms read: `CREATE INDEX` (its columns, `INCLUDE`, expressions and predicate),
//! `ALTER TABLE … ALTER COLUMN c …` short of a type change (refused as structure),
//! `ADD CONSTRAINT` (keys, `INCLUDE`, CHECK and EXCLUDE expressions, a foreign key's columns
//! and those it references in a managed table, from any table's `ALTER` or `CREATE TABLE`),
//! `COMMENT ON COLUMN`, `CREATE STATISTICS`, `VACUUM` and `ANALYZE`'s column lists, and
//! `GRANT` and `REVOKE` of column privileges. Most of these names have no position in the
//! parse tree: each is found in the text after what precedes it (the table's name, the
//! constraint's), falling back to the table's position.

use std::sync::Arc;

use super::names::name_extent;
use super::structure::named_range;
use super::{Place, Reference, Tree, Walker};
use crate::model::view_mapping::ViewMapping;
use crate::rewriter::parse_tree::{location, name_parts};

/// The DDL that names a column, as its refusal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnDdl {
    CreateIndex,
    AddConstraint,
    /// A foreign key's referenced columns, in the managed table it references.
    References,
    AlterColumn,
    Comment,
    CreateStatistics,
    /// `VACUUM` or `ANALYZE` with a column list.
    Analyze,
    /// `GRANT` or `REVOKE` of column privileges.
    Grant,
}

impl ColumnDdl {
    /// The statement, as its refusal names it.
    pub fn statement(self) -> &'static str {
        match self {
            ColumnDdl::CreateIndex => "CREATE INDEX",
            ColumnDdl::AddConstraint => "ALTER TABLE … ADD CONSTRAINT",
            ColumnDdl::References => "FOREIGN KEY … REFERENCES",
            ColumnDdl::AlterColumn => "ALTER TABLE … ALTER COLUMN",
            ColumnDdl::Comment => "COMMENT ON COLUMN",
            ColumnDdl::CreateStatistics => "CREATE STATISTICS",
            ColumnDdl::Analyze => "ANALYZE (columns)",
            ColumnDdl::Grant => "GRANT or REVOKE (columns)",
        }
    }

    /// What it would make of a base column, to end "… the base table's `c`".
    pub fn effect(self) -> &'static str {
        match self {
            ColumnDdl::CreateIndex => "the index would cover",
            ColumnDdl::AddConstraint | ColumnDdl::References => "the constraint would hold on",
            ColumnDdl::AlterColumn => "the change would apply to",
            ColumnDdl::Comment => "the comment would go on",
            ColumnDdl::CreateStatistics => "the statistics would cover",
            ColumnDdl::Analyze => "the statistics would be gathered on",
            ColumnDdl::Grant => "the privilege would be on",
        }
    }

    /// The migration operation that makes it on the version's columns (a migration names
    /// them and makes it on the base ones); comments and statistics have none.
    pub fn operation(self) -> Option<&'static str> {
        match self {
            ColumnDdl::CreateIndex => Some("create_index"),
            ColumnDdl::AddConstraint | ColumnDdl::References => Some("add_constraint"),
            ColumnDdl::AlterColumn => Some("alter_column"),
            ColumnDdl::Comment
            | ColumnDdl::CreateStatistics
            | ColumnDdl::Analyze
            | ColumnDdl::Grant => None,
        }
    }
}

/// How a named column is stored, by its index in the version's mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredAs {
    /// The version's column of that name is stored under another base name, or in none (an
    /// expression column).
    Elsewhere(usize),
    /// The name is the base column of the version's column at that index, which the version
    /// calls otherwise.
    Hidden(usize),
}

/// `column`'s storage at a version whose view maps its table by `mapping`, where DDL naming
/// it would not reach the version's column; `None` where the base column has its name.
pub fn stored_as(mapping: &ViewMapping, column: &str) -> Option<StoredAs> {
    let columns = &mapping.columns;
    match columns.iter().position(|c| c.name == column) {
        Some(i) => {
            (columns[i].base_column.as_deref() != Some(column)).then_some(StoredAs::Elsewhere(i))
        }
        None => columns
            .iter()
            .position(|c| c.base_column.as_deref() == Some(column))
            .map(StoredAs::Hidden),
    }
}

/// `ALTER TABLE` sub-commands (`AlterTableType`) naming a column in their `name`, short of
/// the type change `postgres_grammar_structure.rs` refuses.
const COLUMN_COMMANDS: &[&str] = &[
    "AT_ColumnDefault",
    "AT_CookedColumnDefault",
    "AT_DropNotNull",
    "AT_SetNotNull",
    "AT_CheckNotNull",
    "AT_SetExpression",
    "AT_DropExpression",
    "AT_SetStatistics",
    "AT_SetOptions",
    "AT_ResetOptions",
    "AT_SetStorage",
    "AT_SetCompression",
    "AT_AddIdentity",
    "AT_SetIdentity",
    "AT_DropIdentity",
    "AT_AlterColumnGenericOptions",
];

/// The statements read for the columns they name.
const READ_KINDS: &[&str] = &[
    "IndexStmt",
    "AlterTableStmt",
    "CreateStmt",
    "CommentStmt",
    "CreateStatsStmt",
    "VacuumStmt",
    "GrantStmt",
];

/// A managed table DDL names, with its mapping at the version.
struct Table {
    schema: Option<String>,
    name: String,
    /// Where its name is written: the refusal's position when a column's cannot be found.
    at: usize,
    mapping: Arc<ViewMapping>,
}

impl Walker<'_> {
    /// The columns `statement` (starting at byte `from`) names in a managed table whose base
    /// column has another name at the version, as [`Place::ColumnStorage`].
    pub(super) fn column_storage(&mut self, statement: &Tree, from: usize) {
        let Tree::Object(fields) = statement else {
            return;
        };
        let Some((kind, body)) = fields.first() else {
            return;
        };
        // Only the DDL read here: a DML statement's relation is the rest of the walk's.
        if !READ_KINDS.contains(&kind.as_ref()) {
            return;
        }
        let relation = body.get("relation");
        let table = relation.and_then(|relation| self.stored_table(relation));
        // Past the table's name, where the columns are written.
        let mut cursor = relation.map_or(from, |relation| self.after_relation(relation, from));
        match kind.as_ref() {
            "IndexStmt" => {
                let Some(table) = table else {
                    return;
                };
                let elements = ["indexParams", "indexIncludingParams"]
                    .iter()
                    .flat_map(|key| body.get(key).map(Tree::as_array).unwrap_or_default());
                for element in elements {
                    self.element(&table, element, &mut cursor, ColumnDdl::CreateIndex);
                }
                if let Some(predicate) = body.get("whereClause") {
                    self.column_refs(&table, predicate, &mut cursor, ColumnDdl::CreateIndex);
                }
            }
            "AlterTableStmt" => {
                for command in body.get("cmds").map(Tree::as_array).unwrap_or_default() {
                    let Some(command) = command.get("AlterTableCmd") else {
                        continue;
                    };
                    let text = |key: &str| command.get(key).and_then(Tree::as_text);
                    let subtype = text("subtype").unwrap_or_default();
                    match (&table, text("name")) {
                        (Some(table), Some(column))
                            if COLUMN_COMMANDS.contains(&subtype) && !column.is_empty() =>
                        {
                            self.bare(table, column, &mut cursor, ColumnDdl::AlterColumn);
                        }
                        _ => {}
                    }
                    if let Some(constraint) = command.get("def").and_then(|d| d.get("Constraint")) {
                        self.constraint(table.as_ref(), constraint, &mut cursor);
                    }
                }
            }
            // Another table's foreign key into a managed one.
            "CreateStmt" => {
                for element in body
                    .get("tableElts")
                    .map(Tree::as_array)
                    .unwrap_or_default()
                {
                    let column = element.get("ColumnDef");
                    let constraints = column
                        .and_then(|c| c.get("constraints"))
                        .map(Tree::as_array)
                        .unwrap_or_default();
                    let own = element.get("Constraint");
                    for constraint in constraints
                        .iter()
                        .filter_map(|c| c.get("Constraint"))
                        .chain(own)
                    {
                        self.constraint(None, constraint, &mut cursor);
                    }
                }
            }
            "CommentStmt"
                if body.get("objtype").and_then(Tree::as_text) == Some("OBJECT_COLUMN") =>
            {
                self.commented_column(body, from);
            }
            "VacuumStmt" => {
                for relation in body.get("rels").map(Tree::as_array).unwrap_or_default() {
                    let Some(relation) = relation.get("VacuumRelation") else {
                        continue;
                    };
                    let range = relation.get("relation");
                    let Some(table) = range.and_then(|r| self.stored_table(r)) else {
                        continue;
                    };
                    let mut cursor = range.map_or(from, |r| self.after_relation(r, from));
                    for column in name_parts(relation.get("va_cols")) {
                        self.bare(&table, column, &mut cursor, ColumnDdl::Analyze);
                    }
                }
            }
            // `GRANT SELECT (a), UPDATE (b) ON t, u TO r`: the columns before the tables.
            "GrantStmt" if body.get("objtype").and_then(Tree::as_text) == Some("OBJECT_TABLE") => {
                let tables: Vec<Table> = (body.get("objects").map(Tree::as_array))
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|object| self.stored_table(object.get("RangeVar")?))
                    .collect();
                for table in &tables {
                    let mut cursor = from;
                    for privilege in body
                        .get("privileges")
                        .map(Tree::as_array)
                        .unwrap_or_default()
                    {
                        let columns = privilege.get("AccessPriv").and_then(|p| p.get("cols"));
                        for column in name_parts(columns) {
                            self.bare(table, column, &mut cursor, ColumnDdl::Grant);
                        }
                    }
                }
            }
            "CreateStatsStmt" => {
                let relations = body
                    .get("relations")
                    .map(Tree::as_array)
                    .unwrap_or_default();
                let [relation] = relations else {
                    return;
                };
                let Some(relation) = relation.get("RangeVar") else {
                    return;
                };
                let Some(table) = self.stored_table(relation) else {
                    return;
                };
                // The columns come after `ON`, before the table.
                let mut cursor = named_range(self.sql, from, &["on"]).map_or(from, |on| on.end);
                for element in body.get("exprs").map(Tree::as_array).unwrap_or_default() {
                    let Some(element) = element.get("StatsElem") else {
                        continue;
                    };
                    match (
                        element.get("name").and_then(Tree::as_text),
                        element.get("expr"),
                    ) {
                        (Some(column), _) => {
                            self.bare(&table, column, &mut cursor, ColumnDdl::CreateStatistics);
                        }
                        (None, Some(expr)) => {
                            self.column_refs(
                                &table,
                                expr,
                                &mut cursor,
                                ColumnDdl::CreateStatistics,
                            );
                        }
                        (None, None) => {}
                    }
                }
            }
            _ => {}
        }
    }

    /// The managed table `relation` (a `RangeVar`) names with the mapping of its view at the
    /// version; not a name the search_path pins elsewhere, nor a table without a mapping.
    fn stored_table(&self, relation: &Tree) -> Option<Table> {
        let text = |key: &str| relation.get(key).and_then(Tree::as_text);
        let schema = text("schemaname").filter(|s| !s.is_empty());
        let name = text("relname")?;
        self.table_named(schema, name, location(relation)?)
    }

    fn table_named(&self, schema: Option<&str>, name: &str, at: usize) -> Option<Table> {
        if self.targets.is_pinned(schema, name) {
            return None;
        }
        let target = self.targets.resolve(schema, name)?;
        if !self.targets.is_managed(target) {
            return None;
        }
        let write = self.targets.base_write(target)?;
        Some(Table {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
            at,
            mapping: Arc::clone(&write.mapping),
        })
    }

    /// Where the text goes on after the relation name `relation` (a `RangeVar`) is written.
    fn after_relation(&self, relation: &Tree, from: usize) -> usize {
        let Some(at) = location(relation) else {
            return from;
        };
        name_extent(self.sql, at).map_or(at, |(whole, _)| whole.end)
    }

    /// A constraint of `table` (or of a table that is not managed, `None`): its own columns
    /// and, for a foreign key into a managed table, those it references there.
    fn constraint(&mut self, table: Option<&Table>, constraint: &Tree, cursor: &mut usize) {
        let command = ColumnDdl::AddConstraint;
        if let Some(at) = location(constraint) {
            *cursor = (*cursor).max(at);
        }
        // `CONSTRAINT email UNIQUE (email)`: the key, not the constraint's name.
        let name = constraint.get("conname").and_then(Tree::as_text);
        if let Some(named) = name.and_then(|name| named_range(self.sql, *cursor, &[name])) {
            *cursor = named.end;
        }
        if let Some(table) = table {
            for key in ["keys", "including", "fk_attrs"] {
                for column in name_parts(constraint.get(key)) {
                    self.bare(table, column, cursor, command);
                }
            }
            if let Some(check) = constraint.get("raw_expr") {
                self.column_refs(table, check, cursor, command);
            }
            for exclusion in constraint
                .get("exclusions")
                .map(Tree::as_array)
                .unwrap_or_default()
            {
                let items = exclusion.get("List").and_then(|l| l.get("items"));
                if let Some(element) = items.map(Tree::as_array).and_then(<[Tree]>::first) {
                    self.element(table, element, cursor, command);
                }
            }
            if let Some(predicate) = constraint.get("where_clause") {
                self.column_refs(table, predicate, cursor, command);
            }
        }
        let Some(referenced) = constraint.get("pktable") else {
            return;
        };
        let Some(into) = self.stored_table(referenced) else {
            return;
        };
        *cursor = (*cursor).max(self.after_relation(referenced, *cursor));
        for column in name_parts(constraint.get("pk_attrs")) {
            self.bare(&into, column, cursor, ColumnDdl::References);
        }
    }

    /// An `IndexElem`: a column by name, or an expression.
    fn element(&mut self, table: &Table, element: &Tree, cursor: &mut usize, command: ColumnDdl) {
        let Some(element) = element.get("IndexElem") else {
            return;
        };
        if let Some(column) = element.get("name").and_then(Tree::as_text) {
            self.bare(table, column, cursor, command);
        } else if let Some(expr) = element.get("expr") {
            self.column_refs(table, expr, cursor, command);
        }
    }

    /// A column named without a position of its own: found in the text at or after
    /// `cursor`, which moves past it.
    fn bare(&mut self, table: &Table, column: &str, cursor: &mut usize, command: ColumnDdl) {
        let found = named_range(self.sql, *cursor, &[column]);
        if let Some(found) = &found {
            *cursor = found.end;
        }
        self.judge(table, column, found.map(|f| f.start), command);
    }

    /// The column references (`ColumnRef`, `c` or `t.c`) of an expression over `table`.
    fn column_refs(&mut self, table: &Table, tree: &Tree, cursor: &mut usize, command: ColumnDdl) {
        match tree {
            Tree::Array(items) => {
                for item in items {
                    self.column_refs(table, item, cursor, command);
                }
            }
            Tree::Object(fields) => {
                for (key, value) in fields {
                    if key != "ColumnRef" {
                        self.column_refs(table, value, cursor, command);
                        continue;
                    }
                    let parts = name_parts(value.get("fields"));
                    // `t.*` and the like end in something that is not a name.
                    let written = value.get("fields").map_or(0, |f| f.as_array().len());
                    let Some(column) = parts.last().filter(|_| parts.len() == written) else {
                        continue;
                    };
                    let last = location(value)
                        .and_then(|at| name_extent(self.sql, at))
                        .map(|(_, last)| last);
                    if let Some(last) = &last {
                        *cursor = (*cursor).max(last.end);
                    }
                    self.judge(table, column, last.map(|l| l.start), command);
                }
            }
            _ => {}
        }
    }

    /// `COMMENT ON COLUMN [schema.]t.c`: a name list, without a position of its own.
    fn commented_column(&mut self, body: &Tree, from: usize) {
        let parts = name_parts(body.get("object").and_then(|o| o.get("List")?.get("items")));
        let (schema, name, column) = match parts.as_slice() {
            [.., schema, name, column] => (Some(*schema), *name, *column),
            [name, column] => (None, *name, *column),
            _ => return,
        };
        let written = named_range(self.sql, from, &parts);
        let Some(table) =
            self.table_named(schema, name, written.as_ref().map_or(from, |w| w.start))
        else {
            return;
        };
        let at = written
            .and_then(|w| name_extent(self.sql, w.start))
            .map(|(_, last)| last.start);
        self.judge(&table, column, at, ColumnDdl::Comment);
    }

    /// Records `column` of `table`, written at `at`, where the version stores it otherwise.
    fn judge(&mut self, table: &Table, column: &str, at: Option<usize>, command: ColumnDdl) {
        let Some(stored) = stored_as(&table.mapping, column) else {
            return;
        };
        self.found.push(Reference {
            offset: at.unwrap_or(table.at),
            schema: table.schema.clone(),
            name: table.name.clone(),
            aliased: false,
            place: Place::ColumnStorage(command, stored),
        });
    }
}
