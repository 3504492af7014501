//! PostgreSQL's own reading of a query string: where it names managed tables.
//!
//! sqlparser does the rewriting (it is fast, and its spans locate every edit), but its grammar
//! is not Postgres's: it fails on forms Postgres accepts (`ROWS FROM (…)`, some operators) and
//! could in principle read a statement differently. So on every cache miss the rewriter also
//! asks the server's own parser (the `pg_query` crate wraps libpg_query, the PostgreSQL parser
//! compiled as a library) which relation references the statement makes, and a statement is
//! only sent when the two agree (`rewrite.rs`). Where sqlparser cannot parse the statement at
//! all, these references are what is rewritten.
//!
//! The parse tree (libpg_query's JSON form, `postgres_parser.rs`) is walked generically, so no
//! node type that can hold a relation is forgotten: every `RangeVar` in a statement that reads
//! or writes rows is a reference, except the ones Postgres does not read as a relation here:
//! the new table of `SELECT … INTO` / `CREATE TABLE … AS` (an `IntoClause`), the names of a
//! locking clause (`FOR UPDATE OF t` names a FROM item, which keeps its name as the alias),
//! and an unqualified name a WITH item shadows in its scope. DML targets are never shadowed by
//! a WITH item: Postgres opens them as tables. In a view's or materialized view's definition,
//! only managed tables count, as [`Place::ViewDefinition`] (refused, `refusal.rs`). In DDL
//! only what copies or stores a managed table's shape is read (`definitions.rs`), and what
//! would change a managed table's columns, name, schema or existence under every version
//! ([`Place::TableStructure`], `postgres_grammar_structure.rs`), or name a column the
//! version stores under another base name ([`Place::ColumnStorage`], `…_columns.rs`).

use std::borrow::Cow;

use super::definitions::find_all_ignore_ascii_case;
use super::definitions::{READ_KINDS, UNTAGGED_TYPE_FIELDS};
use super::parse_tree::{Tree, location};
use super::postgres_parser::{self, ParseFailure};
use super::query_functions;
use super::reading_settings;
use super::search_path_catalog;
use super::targets::VersionTargets;
use crate::model::catalog_substitutes::{INFORMATION_SCHEMA, STANDARD_CONFORMING_STRINGS};

#[path = "postgres_grammar_columns.rs"]
mod columns;
#[path = "postgres_grammar_explain.rs"]
mod explain;
#[path = "postgres_grammar_grants.rs"]
pub mod grants;
#[path = "postgres_grammar_names.rs"]
mod names;
#[path = "postgres_grammar_renamed.rs"]
pub mod renamed;
#[path = "postgres_grammar_stack.rs"]
mod stack;
#[path = "postgres_grammar_structure.rs"]
mod structure;

pub use columns::{ColumnDdl, StoredAs};
use explain::explains_verbosely;
pub use names::{after_table_keyword, aliased, name_extent, relation_of_column_extent};
pub use stack::{CHECK_STACK_BYTES, CHECK_STACK_PER_BYTE, on_check_stack};
pub use structure::TableChange;

/// Where a reference stands, which decides how it may be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A FROM item (also `TABLE name`, `MERGE … USING`, `DELETE … USING`).
    From,
    /// The target of INSERT, UPDATE or DELETE.
    Target,
    /// The target of MERGE (written to the base table where the version's view has a
    /// recorded mapping, `merge.rs`).
    MergeTarget,
    /// `COPY name … FROM`.
    CopyFrom,
    /// `COPY name … TO`: only readable through a query.
    CopyTo,
    /// A row type's name (`NULL::name`, `CAST(r AS name[])`): the table's composite type.
    RowType,
    /// The relation of a column's type by reference (`name.column%TYPE`, in a function's
    /// signature or a `DROP FUNCTION`'s): rewritten to the version's view, so a column the
    /// version lacks fails as it does on the view.
    ColumnType,
    /// A managed table (or its row type) in the definition of a view, materialized view or
    /// rule, which viewgate refuses (`refusal::view_definition`).
    ViewDefinition,
    /// `CREATE TABLE … (LIKE name)`: the columns are copied from the version's view. Also a
    /// name the search_path pins elsewhere where DDL stores its shape or changes its
    /// structure: written qualified with the pin's schema.
    Like,
    /// The row type stored by DDL, a typed table's type, or a parent table (`INHERITS`,
    /// `PARTITION OF`): refused (`definitions.rs`).
    StoredShape,
    /// A function's, procedure's or DO block's body: refused (`definitions.rs`).
    FunctionBody,
    /// A body that may run SQL the proxy cannot see (built at run time, or in a language
    /// it cannot read): refused (`definitions.rs`); the reference names the version's first
    /// managed table.
    UnseenSql,
    /// A string a built-in function reads relations from (`query_to_xml`): refused
    /// (`query_functions.rs`).
    QueryText,
    /// Another version's view, named explicitly (`model_metadata_v2` at v1): refused, since
    /// a session sees only its own version.
    OtherVersion,
    /// What may put `information_schema` on the search_path, where an unqualified name
    /// would read the real one (`search_path_catalog.rs`): refused.
    CatalogPath,
    /// What may change how Postgres reads later text where the proxy cannot follow
    /// (`standard_conforming_strings` off, a write to `pg_settings`:
    /// `reading_settings.rs`): refused.
    ReadingSetting,
    /// `EXPLAIN (VERBOSE)`, at a version with managed tables: refused, since its plan may list
    /// a base table's every column, and a statement may reach one by ways the proxy does not
    /// see (the version's view by name, `EXECUTE` of a prepared statement, a function); the
    /// reference is at the statement's start.
    VerboseExplain,
    /// A call of a printer with a substitute (`pg_get_viewdef`, …): it must be where
    /// sqlparser's reading sent it to the substitute, else refused (a DEFAULT, a domain's
    /// CHECK, syntax sqlparser cannot read, a name spelled with escapes).
    Printer,
    /// A managed table's array type by its internal name (`_model_metadata`), which is the
    /// base table's: refused (`model_metadata[]` is rewritten to the version's).
    BaseArrayType,
    /// DDL that makes a built-in the rewriter must see called by name callable under another
    /// (an operator or aggregate over `ts_rewrite`, `pg_get_viewdef`, `set_config`:
    /// `query_functions::aliased_built_in`): refused; the reference names the built-in.
    AliasedBuiltIn,
    /// A built-in the rewriter must see called by name, called in attribute notation
    /// (`(arg).ts_stat` and `q.ts_stat` are `ts_stat(arg)`, `ts_stat(q)` in Postgres):
    /// refused; the reference names it.
    FieldCall,
    /// DDL that would change a managed table's columns, their names or types, or the table's
    /// name, schema or existence under every version, where the version's view would not
    /// follow (`postgres_grammar_structure.rs`): refused at a version.
    TableStructure(TableChange),
    /// DDL naming a managed table's column that the version stores in a base column of
    /// another name, or a base column the version shows under another name
    /// (`postgres_grammar_columns.rs`): refused at a version.
    ColumnStorage(ColumnDdl, StoredAs),
    /// The name `CREATE TABLE` gives, of a table the version knows by it under another base
    /// name (a live rename): the version's view, which exists (`postgres_grammar_structure.rs`).
    ExistingTable,
    /// DDL on a managed table by a live rename's new name: its base table (`…_renamed.rs`).
    BaseTable,
    /// A managed table a `GRANT` or `REVOKE` of whole-table privileges names: its base table
    /// and every active version's view (`postgres_grammar_grants.rs`).
    Granted,
}

/// One reference to a managed table, as Postgres's parser reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Byte offset of the (possibly qualified) name in the query string.
    pub offset: usize,
    pub schema: Option<String>,
    pub name: String,
    /// Whether the reference carries its own alias.
    pub aliased: bool,
    pub place: Place,
}

/// What Postgres's parser says about a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// It parses; these are its references to managed tables, in tree order.
    Parsed(Vec<Reference>),
    /// Postgres rejects its syntax: sent as it is, it fails there and reads nothing.
    Rejected(String),
    /// The check could not be made (a tree deeper than the reader allows, a NUL byte).
    Unavailable(String),
    /// Longer than [`MAX_CHECKED_BYTES`]: not checked (sqlparser's reading stands alone).
    TooLong,
}

/// The longest query string Postgres's parser is asked about. Longer statements (bulk INSERTs,
/// mostly) are rewritten on sqlparser's reading alone: checking costs time in proportion to
/// the text, and a bulk INSERT's shape is new for every row count.
pub const MAX_CHECKED_BYTES: usize = 16 * 1024;

/// Statement kinds whose relation references read or write rows (the same kinds the
/// rewriter reads: `CREATE TABLE … AS` is rewritten, a view's definition refused; other
/// DDL keeps naming the base table).
fn rewritable(kind: &str) -> bool {
    matches!(
        kind,
        "SelectStmt"
            | "InsertStmt"
            | "UpdateStmt"
            | "DeleteStmt"
            | "MergeStmt"
            | "CopyStmt"
            | "ExplainStmt"
            | "PrepareStmt"
            | "DeclareCursorStmt"
            | "CreateTableAsStmt"
            | "ViewStmt"
    )
}

/// The longest query string whose DDL is checked (a long text that sqlparser passes through
/// and that names a managed table): DDL is rare, and nothing else could read it. Within what
/// [`CHECK_STACK_BYTES`] allows at [`CHECK_STACK_PER_BYTE`].
pub const MAX_CHECKED_DEFINITION_BYTES: usize = 192 * 1024;

/// The references `sql` makes to `targets`' managed tables, by Postgres's grammar.
pub fn managed_references(sql: &str, targets: &VersionTargets) -> Reading {
    managed_references_within(sql, targets, MAX_CHECKED_BYTES)
}

/// [`managed_references`] for a text longer than [`MAX_CHECKED_BYTES`] that holds DDL, up to
/// [`MAX_CHECKED_DEFINITION_BYTES`].
pub fn definition_references(sql: &str, targets: &VersionTargets) -> Reading {
    managed_references_within(sql, targets, MAX_CHECKED_DEFINITION_BYTES)
}

fn managed_references_within(sql: &str, targets: &VersionTargets, limit: usize) -> Reading {
    if sql.len() > limit {
        return Reading::TooLong;
    }
    on_check_stack(sql.len(), || read(sql, targets))
}

fn read(sql: &str, targets: &VersionTargets) -> Reading {
    // A query string ends at its first NUL on the wire: Postgres never reads such a text.
    if sql.contains('\0') {
        return Reading::Rejected("a NUL byte".into());
    }
    let json = match postgres_parser::parse(sql) {
        Ok(json) => json,
        Err(ParseFailure::Syntax(message)) => return Reading::Rejected(message),
        Err(ParseFailure::Unreadable(reason)) => return Reading::Unavailable(reason),
    };
    let tree = match json.text() {
        Ok(text) => Tree::read(text),
        Err(ParseFailure::Syntax(reason) | ParseFailure::Unreadable(reason)) => {
            return Reading::Unavailable(reason);
        }
    };
    let tree = match tree {
        Ok(tree) => tree,
        Err(error) => return Reading::Unavailable(error.to_string()),
    };
    let mut walker = Walker {
        sql,
        targets,
        scopes: Vec::new(),
        found: Vec::new(),
        unlocatable: false,
        defining: None,
        storing: false,
    };
    for raw in tree.get("stmts").map(Tree::as_array).unwrap_or_default() {
        // `{"stmt":{"SelectStmt":{…}}}`: a node is an object with its type as the only key.
        let Some(statement @ Tree::Object(fields)) = raw.get("stmt") else {
            continue;
        };
        if let Some(offset) = (!targets.managed().is_empty())
            .then(|| {
                search_path_catalog::catalog_on_path(statement, targets.has_catalog_substitutes())
            })
            .flatten()
        {
            walker.found.push(Reference {
                offset,
                schema: None,
                name: INFORMATION_SCHEMA.to_owned(),
                aliased: false,
                place: Place::CatalogPath,
            });
        }
        if let Some(offset) = (!targets.managed().is_empty())
            .then(|| reading_settings::changes_reading(statement))
            .flatten()
        {
            walker.found.push(Reference {
                offset,
                schema: None,
                name: STANDARD_CONFORMING_STRINGS.to_owned(),
                aliased: false,
                place: Place::ReadingSetting,
            });
        }
        let aliasing = fields
            .first()
            .is_some_and(|(kind, _)| query_functions::ALIASING_KINDS.contains(&kind.as_ref()));
        if let Some(function) = aliasing
            .then(|| query_functions::aliased_built_in(statement))
            .flatten()
        {
            walker.found.push(Reference {
                offset: spelled_at(sql, stmt_location(raw), function),
                schema: None,
                name: function.to_owned(),
                aliased: false,
                place: Place::AliasedBuiltIn,
            });
        }
        if !targets.managed().is_empty() && !walker.checks_ddl(statement, stmt_location(raw)) {
            continue;
        }
        let read = fields
            .first()
            .is_some_and(|(kind, _)| rewritable(kind) || READ_KINDS.contains(&kind.as_ref()));
        // Other statements name a function by its argument types (`DROP FUNCTION f(…)`,
        // `COMMENT ON FUNCTION`, `GRANT … ON FUNCTION`), where a column's type by reference
        // is looked up as anywhere.
        if !read {
            walker.column_types_in(statement);
        }
        if !fields.first().is_some_and(|(kind, _)| rewritable(kind)) {
            walker.mapping_function_objects(statement, stmt_location(raw));
        }
        if read {
            walker.walk(statement);
            if !targets.managed().is_empty() && explains_verbosely(statement) {
                walker.found.push(Reference {
                    offset: stmt_location(raw),
                    schema: None,
                    name: "EXPLAIN".to_owned(),
                    aliased: false,
                    place: Place::VerboseExplain,
                });
            }
        }
    }
    if walker.unlocatable {
        return Reading::Unavailable("a table reference without a position".into());
    }
    Reading::Parsed(walker.found)
}

/// Where `sql` first spells `name` (in any case) at or after `from`, else `from`: the place of
/// something the parse tree gives no location of its own.
fn spelled_at(sql: &str, from: usize, name: &str) -> usize {
    sql.get(from..)
        .and_then(|rest| find_all_ignore_ascii_case(rest.as_bytes(), name.as_bytes()).next())
        .map_or(from, |at| from + at)
}

/// Where a statement of a query string starts (libpg_query leaves out a 0).
fn stmt_location(raw: &Tree) -> usize {
    raw.get("stmt_location")
        .and_then(Tree::as_integer)
        .and_then(|at| usize::try_from(at).ok())
        .unwrap_or(0)
}

/// A node's fields, in the order libpg_query writes them.
type Fields<'a> = [(Cow<'a, str>, Tree<'a>)];

struct Walker<'t> {
    sql: &'t str,
    targets: &'t VersionTargets,
    /// The WITH item names visible where the walk is, innermost last.
    scopes: Vec<Vec<String>>,
    found: Vec<Reference>,
    unlocatable: bool,
    /// Inside a definition Postgres keeps (a view's, a rule's, a `BEGIN ATOMIC` body): only
    /// managed tables are references there, all at this place.
    defining: Option<Place>,
    /// Inside DDL: relations are the DDL's own business, row types are stored
    /// ([`Place::StoredShape`]).
    storing: bool,
}

impl Walker<'_> {
    fn walk(&mut self, tree: &Tree) {
        match tree {
            Tree::Array(items) => items.iter().for_each(|item| self.walk(item)),
            Tree::Object(fields) => self.object(fields),
            _ => {}
        }
    }

    /// An object: a tagged node (`{"RangeVar":{…}}`) or a node's own fields, read in the
    /// scope of its WITH clause if it has one.
    fn object(&mut self, fields: &Fields) {
        match field(fields, "withClause") {
            Some(with) => self.enter_with(with, |walker| {
                for (key, child) in fields {
                    if key != "withClause" {
                        walker.entry(key, child);
                    }
                }
            }),
            None => {
                for (key, child) in fields {
                    self.entry(key, child);
                }
            }
        }
    }

    /// One field of an object, or the one entry of a tagged node.
    fn entry(&mut self, key: &str, child: &Tree) {
        match key {
            "RangeVar" if self.storing => {}
            "RangeVar" => self.range_var(child, Place::From),
            // Tagged in lists (`PREPARE p (t)`), untagged as a cast's field.
            "TypeName" | "typeName" => self.type_name(child),
            key if UNTAGGED_TYPE_FIELDS.contains(&key) => self.type_name(child),
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" => {
                self.statement(child, Place::Target);
            }
            "MergeStmt" => self.statement(child, Place::MergeTarget),
            "CopyStmt" => {
                let from = child.get("is_from").and_then(Tree::as_bool) == Some(true);
                let place = if from { Place::CopyFrom } else { Place::CopyTo };
                self.statement(child, place);
            }
            // `FOR UPDATE OF t`: `t` names a FROM item, not a relation.
            "LockingClause" => {}
            // `SELECT … INTO new_table`, `CREATE TABLE … AS`: the new table is no reference.
            "intoClause" | "into" => {}
            "ViewStmt" => self.definition(child, "view", Place::ViewDefinition),
            "CreateTableAsStmt"
                if child.get("objtype").and_then(Tree::as_text) == Some("OBJECT_MATVIEW") =>
            {
                self.definition(child, "into", Place::ViewDefinition);
            }
            "RuleStmt" => self.definition(child, "relation", Place::ViewDefinition),
            // A policy's USING and WITH CHECK expressions may hold subqueries.
            "CreatePolicyStmt" | "AlterPolicyStmt" => {
                self.definition(child, "table", Place::ViewDefinition);
            }
            "CreateStmt" | "AlterTableStmt" | "CompositeTypeStmt" | "CreateDomainStmt"
            | "DefineStmt" | "CreateCastStmt" | "CreateSchemaStmt" => self.ddl(child),
            "CreateFunctionStmt" => self.function(child),
            "DoStmt" => self.do_block(child),
            // `'model_metadata_v2'::regclass`: another version's view, by oid.
            "TypeCast" => {
                self.regclass_literal(child);
                self.walk(child);
            }
            "FuncCall" => {
                self.function_call(child);
                self.walk(child);
            }
            "A_Indirection" => {
                self.field_call(child, "indirection");
                self.walk(child);
            }
            // `q.ts_stat` is `ts_stat(q)` too when `q` has no such column.
            "ColumnRef" => {
                self.field_call(child, "fields");
                self.walk(child);
            }
            "TableLikeClause" if self.storing => {
                if let Some(relation) = child.get("relation") {
                    self.range_var(relation, Place::Like);
                }
            }
            // `INHERITS (t)`, `PARTITION OF t`.
            "inhRelations" if self.storing => {
                for parent in child.as_array() {
                    if let Some(relation) = parent.get("RangeVar") {
                        self.range_var(relation, Place::StoredShape);
                    }
                }
            }
            // `ALTER TABLE … INHERIT t`.
            "AlterTableCmd"
                if child.get("subtype").and_then(Tree::as_text) == Some("AT_AddInherit") =>
            {
                if let Some(parent) = child.get("def").and_then(|def| def.get("RangeVar")) {
                    self.range_var(parent, Place::StoredShape);
                }
            }
            _ => self.walk(child),
        }
    }

    /// A DML or COPY statement: its `relation` is a target; the rest is read as usual.
    fn statement(&mut self, body: &Tree, place: Place) {
        let Tree::Object(fields) = body else {
            return;
        };
        match field(fields, "withClause") {
            Some(with) => self.enter_with(with, |walker| walker.statement_fields(fields, place)),
            None => self.statement_fields(fields, place),
        }
    }

    fn statement_fields(&mut self, fields: &Fields, place: Place) {
        for (key, child) in fields {
            match key.as_ref() {
                "withClause" => {}
                // Written without its tag: the field's type is a RangeVar.
                "relation" => self.range_var(child, place),
                _ => self.walk(child),
            }
        }
    }

    /// Walks the WITH items' bodies (a non-recursive item sees only the items before it, a
    /// recursive WITH sees all), then runs `rest` with every item visible.
    fn enter_with(&mut self, with: &Tree, rest: impl FnOnce(&mut Self)) {
        let recursive = with.get("recursive").and_then(Tree::as_bool) == Some(true);
        let items: Vec<&Tree> = with
            .get("ctes")
            .map(Tree::as_array)
            .unwrap_or_default()
            .iter()
            .filter_map(|node| node.get("CommonTableExpr"))
            .collect();
        let names: Vec<String> = items
            .iter()
            .filter_map(|item| item.get("ctename")?.as_text().map(str::to_owned))
            .collect();
        for (i, item) in items.iter().enumerate() {
            let visible = if recursive { names.len() } else { i };
            self.scopes.push(names[..visible.min(names.len())].to_vec());
            if let Tree::Object(fields) = item {
                for (key, child) in fields {
                    if key != "ctename" {
                        self.walk(child);
                    }
                }
            }
            self.scopes.pop();
        }
        self.scopes.push(names);
        rest(self);
        self.scopes.pop();
    }

    fn shadowed(&self, name: &str) -> bool {
        self.scopes.iter().flatten().any(|cte| cte == name)
    }

    fn range_var(&mut self, range_var: &Tree, place: Place) {
        let text = |key: &str| range_var.get(key).and_then(Tree::as_text);
        let schema = text("schemaname").filter(|s| !s.is_empty());
        let name = text("relname").unwrap_or_default();
        if place == Place::From && schema.is_none() && self.shadowed(name) {
            return;
        }
        if self.targets.resolve(schema, name).is_none() {
            if self.targets.names_other_version(schema, name) {
                self.other_version(range_var, schema, name);
            }
            return;
        }
        let aliased = range_var.get("alias").is_some_and(|a| *a != Tree::Other);
        self.found_at(range_var, schema, name, aliased, place);
    }

    /// Another version's view, named explicitly: refused wherever it stands.
    fn other_version(&mut self, node: &Tree, schema: Option<&str>, name: &str) {
        self.record(node, schema, name, false, Place::OtherVersion);
    }

    /// Records a reference to `schema.name` at `node`, at the place the walk is in
    /// (definitions and DDL decide it: a managed table, a pinned name, a catalog relation).
    fn found_at(
        &mut self,
        node: &Tree,
        schema: Option<&str>,
        name: &str,
        aliased: bool,
        place: Place,
    ) {
        let managed = || {
            self.targets
                .resolve(schema, name)
                .is_some_and(|target| self.targets.is_managed(target))
        };
        // A name the search_path pins elsewhere is qualified with that schema in a definition
        // too: left as written, Postgres could resolve it to the managed table after all (a
        // temporary table the proxy believes in was renamed, a schema it counts has no USAGE).
        let pinned = self.targets.is_pinned(schema, name);
        let place = match self.defining {
            Some(_) if pinned => place,
            // A managed table, or a catalog relation the version reads through a substitute
            // (a definition would keep the real one, which shows every version's columns).
            Some(definition) => definition,
            None if self.storing && pinned => match place {
                // Rewritten like `LIKE`: the pinned relation, qualified.
                Place::StoredShape => Place::Like,
                other => other,
            },
            None if self.storing && !managed() => return,
            None => place,
        };
        self.record(node, schema, name, aliased, place);
    }

    /// Adds the reference at `node`'s position; a node without one makes the reading
    /// unusable (an edit needs its place in the text).
    fn record(
        &mut self,
        node: &Tree,
        schema: Option<&str>,
        name: &str,
        aliased: bool,
        place: Place,
    ) {
        self.record_at(location(node), schema, name, aliased, place);
    }

    /// Adds the reference at byte `offset`; none makes the reading unusable.
    fn record_at(
        &mut self,
        offset: Option<usize>,
        schema: Option<&str>,
        name: &str,
        aliased: bool,
        place: Place,
    ) {
        let Some(offset) = offset else {
            self.unlocatable = true;
            return;
        };
        self.found.push(Reference {
            offset,
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
            aliased,
            place,
        });
    }
}

/// The field `key` of a node's fields.
fn field<'f, 'a>(fields: &'f Fields<'a>, key: &str) -> Option<&'f Tree<'a>> {
    fields
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value)
}

#[path = "postgres_grammar_definitions.rs"]
mod definitions_walk;
#[path = "postgres_grammar_types.rs"]
mod types_walk;

#[cfg(test)]
#[path = "postgres_grammar_tests.rs"]
mod tests;
