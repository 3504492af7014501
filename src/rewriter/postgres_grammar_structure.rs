//! DDL that would change a managed table's structure under every version: which columns it
//! has, their names or types, or the table's own name, schema or existence.
//!
//! At a version the table is read through a view that lists its columns, generated from
//! viewgate's spec, and a live migration's sync triggers name its columns. Such DDL sent
//! through the proxy succeeds on the base table and leaves every version behind: an ORM's
//! migration adds a column no version's view shows, and the application's next query naming
//! it fails with 42703; a rename moves the table or a column out from under the spec and the
//! triggers; `DROP … CASCADE` drops the versions' views. So at a version it is refused
//! ([`Place::TableStructure`], `refusal::table_structure`), and a migration makes the change
//! instead. The rest of the DDL on a managed table (indexes, constraints, defaults, NOT NULL,
//! statistics, triggers, grants) is the operator's and still passes through unchanged, short
//! of naming a column the version stores under another base name
//! (`postgres_grammar_columns.rs`).

use std::ops::Range;

use super::{Place, Tree, Walker};
use crate::rewriter::identifier::fold_identifier;
use crate::rewriter::lexer::{self, Kind};
use crate::rewriter::parse_tree::{location, name_parts};

/// What a refused statement would change of a managed table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableChange {
    AddColumn,
    DropColumn,
    AlterColumnType,
    RenameColumn,
    RenameTable,
    SetSchema,
    DropTable,
}

impl TableChange {
    /// The statement, as its refusal names it.
    pub fn statement(self) -> &'static str {
        match self {
            TableChange::AddColumn => "ALTER TABLE … ADD COLUMN",
            TableChange::DropColumn => "ALTER TABLE … DROP COLUMN",
            TableChange::AlterColumnType => "ALTER TABLE … ALTER COLUMN … TYPE",
            TableChange::RenameColumn => "ALTER TABLE … RENAME COLUMN",
            TableChange::RenameTable => "ALTER TABLE … RENAME TO",
            TableChange::SetSchema => "ALTER TABLE … SET SCHEMA",
            TableChange::DropTable => "DROP TABLE",
        }
    }

    /// The migration operation (`viewgate migrate start`) that makes this change for every
    /// version at once; none moves a table to another schema.
    pub fn operation(self) -> Option<&'static str> {
        match self {
            TableChange::AddColumn => Some("add_column"),
            TableChange::DropColumn => Some("drop_column"),
            TableChange::AlterColumnType => Some("alter_column"),
            TableChange::RenameColumn => Some("rename_column"),
            TableChange::RenameTable => Some("rename_table"),
            TableChange::SetSchema => None,
            TableChange::DropTable => Some("drop_table"),
        }
    }

    /// The change an `ALTER TABLE` sub-command (libpg_query's `AlterTableType`) makes, if it
    /// changes the set of columns or a column's type.
    fn of_command(subtype: &str) -> Option<TableChange> {
        match subtype {
            "AT_AddColumn" => Some(TableChange::AddColumn),
            "AT_DropColumn" => Some(TableChange::DropColumn),
            "AT_AlterColumnType" => Some(TableChange::AlterColumnType),
            _ => None,
        }
    }
}

/// What `RENAME … TO` renames a table itself under: Postgres lets `ALTER INDEX` rename any
/// relation, and checks the other kinds against the relation only after the name is read;
/// refusing a form Postgres would refuse anyway costs nothing.
const RENAMED_RELATION_KINDS: &[&str] = &[
    "OBJECT_TABLE",
    "OBJECT_INDEX",
    "OBJECT_VIEW",
    "OBJECT_MATVIEW",
    "OBJECT_SEQUENCE",
    "OBJECT_FOREIGN_TABLE",
];

/// What `RENAME a TO b` renames a column under: `ALTER VIEW`, `ALTER MATERIALIZED VIEW` and
/// `ALTER FOREIGN TABLE … RENAME COLUMN` rename a table's column too (Postgres checks only
/// that the relation has columns), and `ALTER TYPE … RENAME ATTRIBUTE` names its row type.
const RENAMED_COLUMN_KINDS: &[&str] = &["OBJECT_COLUMN", "OBJECT_ATTRIBUTE"];

impl Walker<'_> {
    /// Reads `statement` (one of a query string's, starting at byte `from`) for what it would
    /// change of a managed table's structure and for the columns it names; `false` when it
    /// creates a managed table that exists, and nothing else of it is to be read.
    pub(super) fn checks_ddl(&mut self, statement: &Tree, from: usize) -> bool {
        if self.creates_an_existing_table(statement) {
            return false;
        }
        self.table_structure(statement, from);
        self.column_storage(statement, from);
        self.renamed_tables(statement, from);
        true
    }

    /// `CREATE TABLE [IF NOT EXISTS] name …` of a managed table, by a name the version knows
    /// it by: the table exists, so Postgres skips the statement (IF NOT EXISTS, with a NOTICE)
    /// or refuses it (42P07) and makes nothing, as for the version's shape made by hand; what
    /// its columns and keys name is not read. Tortoise's `generate_schemas` at startup was
    /// refused at v2 for a foreign key naming a column v2 stores elsewhere. Where the name is
    /// not the base table's (a live `rename_table`: v3's `purchases` is base `orders`), it is
    /// written as the version's view ([`Place::ExistingTable`]): sent as written, it made a
    /// stray table `purchases`, which the complete's rename then ran into. A temporary table
    /// is the session's own.
    fn creates_an_existing_table(&mut self, statement: &Tree) -> bool {
        let Some(relation) = statement
            .get("CreateStmt")
            .and_then(|body| body.get("relation"))
        else {
            return false;
        };
        let text = |key: &str| relation.get(key).and_then(Tree::as_text);
        let (schema, name) = (
            text("schemaname").filter(|s| !s.is_empty()),
            text("relname").unwrap_or_default(),
        );
        if text("relpersistence") == Some("t") || self.targets.is_pinned(schema, name) {
            return false;
        }
        let Some(target) =
            (self.targets.resolve(schema, name)).filter(|target| self.targets.is_managed(target))
        else {
            return false;
        };
        let base = self
            .targets
            .base_write(target)
            .map(|write| &write.base.name);
        if base.is_some_and(|base| base != name) {
            self.record_at(
                location(relation),
                schema,
                name,
                false,
                Place::ExistingTable,
            );
        }
        true
    }

    /// The managed tables `statement` (one of a query string's, starting at byte `from`)
    /// would change the structure of, as [`Place::TableStructure`]; a managed table by a name
    /// the version does not give it (`targets::hidden_tables`, the base table's own name at a
    /// version that renames it) as [`Place::OtherVersion`], as everywhere else.
    fn table_structure(&mut self, statement: &Tree, from: usize) {
        let Tree::Object(fields) = statement else {
            return;
        };
        let Some((kind, body)) = fields.first() else {
            return;
        };
        let text = |key: &str| body.get(key).and_then(Tree::as_text);
        let change = match kind.as_ref() {
            // One structural sub-command is enough: Postgres runs them all or none.
            "AlterTableStmt" => body
                .get("cmds")
                .map(Tree::as_array)
                .unwrap_or_default()
                .iter()
                .filter_map(|command| command.get("AlterTableCmd")?.get("subtype")?.as_text())
                .find_map(TableChange::of_command),
            "RenameStmt" => match text("renameType") {
                Some(kind) if RENAMED_COLUMN_KINDS.contains(&kind) => {
                    Some(TableChange::RenameColumn)
                }
                Some(kind) if RENAMED_RELATION_KINDS.contains(&kind) => {
                    Some(TableChange::RenameTable)
                }
                // A constraint's, trigger's, policy's or rule's name: the table keeps its own.
                _ => None,
            },
            "AlterObjectSchemaStmt" => Some(TableChange::SetSchema),
            "DropStmt" if text("removeType") == Some("OBJECT_TABLE") => {
                self.dropped_tables(body, from);
                None
            }
            _ => None,
        };
        // `ALTER TYPE t SET SCHEMA` names no relation: only a relation's statements do.
        if let Some((change, relation)) = change.zip(body.get("relation")) {
            let relation_text = |key: &str| relation.get(key).and_then(Tree::as_text);
            let schema = relation_text("schemaname").filter(|s| !s.is_empty());
            let name = relation_text("relname").unwrap_or_default();
            self.restructured(location(relation), schema, name, change);
        }
    }

    /// `DROP TABLE a, s.b`: its objects are bare name lists, without a position of their own.
    fn dropped_tables(&mut self, body: &Tree, from: usize) {
        for object in body.get("objects").map(Tree::as_array).unwrap_or_default() {
            let parts = name_parts(object.get("List").and_then(|list| list.get("items")));
            // `database.schema.table` names a table as `schema.table` does.
            let (schema, name) = match parts.as_slice() {
                [.., schema, name] => (Some(*schema), *name),
                [name] => (None, *name),
                [] => continue,
            };
            // Without its position a name can be refused, at the statement's start, but not
            // rewritten (below).
            let at = named_at(self.sql, from, &parts)
                .or_else(|| (!self.targets.is_pinned(schema, name)).then_some(from));
            self.restructured(at, schema, name, TableChange::DropTable);
        }
    }

    /// Records `schema.name`, at byte `offset`, if it is a managed table, or a name the
    /// session's search_path pins elsewhere: that relation's, which the DDL may change, is
    /// written qualified with its schema, as `LIKE` is, so that a stale pin (a temporary
    /// table renamed, which the router does not follow) fails rather than reaching the
    /// managed table.
    fn restructured(
        &mut self,
        offset: Option<usize>,
        schema: Option<&str>,
        name: &str,
        change: TableChange,
    ) {
        let managed = || {
            self.targets
                .resolve(schema, name)
                .is_some_and(|target| self.targets.is_managed(target))
        };
        let place = if self.targets.is_pinned(schema, name) {
            Place::Like
        } else if managed() {
            Place::TableStructure(change)
        } else if self.targets.is_hidden_table(schema, name) {
            Place::OtherVersion
        } else {
            return;
        };
        self.record_at(offset, schema, name, false, place);
    }
}

/// One significant token of a text, as a dotted name is matched against it.
#[derive(PartialEq)]
enum Part {
    Name(String),
    Dot,
    Other,
}

/// Where `sql` first writes the dotted name `parts` (as Postgres folds them) as whole tokens
/// at or after byte `from`; `None` where the lexer cannot read the text or finds no such
/// name (a Unicode-escaped spelling).
pub(super) fn named_at(sql: &str, from: usize, parts: &[&str]) -> Option<usize> {
    named_range(sql, from, parts).map(|range| range.start)
}

/// [`named_at`]'s name with where it ends, so that a search for what follows it can start
/// after it (`postgres_grammar_columns.rs`).
pub(super) fn named_range(sql: &str, from: usize, parts: &[&str]) -> Option<Range<usize>> {
    let rest = sql.get(from..)?;
    let mut tokens = Vec::new();
    lexer::lex(rest, &mut tokens)?;
    let read: Vec<(Range<usize>, Part)> = tokens
        .iter()
        .filter(|token| token.kind != Kind::Comment)
        .map(|token| {
            let text = &rest[token.start..token.end];
            let part = match token.kind {
                Kind::Word => Part::Name(fold_identifier(text, false)),
                Kind::QuotedIdentifier => Part::Name(fold_identifier(
                    &text[1..text.len() - 1].replace("\"\"", "\""),
                    true,
                )),
                Kind::Punct if text == "." => Part::Dot,
                _ => Part::Other,
            };
            (token.start..token.end, part)
        })
        .collect();
    let wanted: Vec<Part> = parts
        .iter()
        .enumerate()
        .flat_map(|(i, part)| {
            let dot = (i > 0).then_some(Part::Dot);
            dot.into_iter().chain([Part::Name((*part).to_owned())])
        })
        .collect();
    read.windows(wanted.len().max(1))
        .enumerate()
        .find(|(i, window)| {
            // The whole name: `model_metadata` in `x.model_metadata` is another schema's
            // table, in `model_metadata.x` a schema.
            let dot_at = |at: usize| read.get(at).is_some_and(|(_, part)| *part == Part::Dot);
            let longer = (*i > 0 && dot_at(i - 1)) || dot_at(i + wanted.len());
            !longer && window.iter().map(|(_, part)| part).eq(wanted.iter())
        })
        .map(|(_, window)| from + window[0].0.start..from + window[window.len() - 1].0.end)
}
