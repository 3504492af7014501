//! The grammar walk through what Postgres keeps and reads later (a view's, rule's or
//! policy's definition, a function's or DO block's body, DDL storing a row type) and through
//! calls of built-ins that read a relation named in a string: the `Walker`'s methods for
//! `definitions.rs` and `query_functions.rs`, apart from the walk of rows read and written.

use super::{Place, Reference, Tree, Walker, spelled_at};
use crate::model::view_mapping::MAPPING_FUNCTION_INFIX;
use crate::rewriter::definitions::{self, Body, find_all_ignore_ascii_case, judge_body};
use crate::rewriter::parse_tree::{location, name_parts};
use crate::rewriter::query_functions::{self, Argument, Reads};
use crate::rewriter::targets::RelationName;

impl Walker<'_> {
    /// A definition Postgres keeps and reads later (`name_field` holds the new object's
    /// name, or the table a rule is on: no reference).
    pub(super) fn definition(&mut self, body: &Tree, name_field: &str, place: Place) {
        let Tree::Object(fields) = body else {
            return;
        };
        for (key, child) in fields {
            if key != name_field {
                self.defined(child, place);
            }
        }
    }

    /// Walks `tree` as part of a definition at `place`.
    fn defined(&mut self, tree: &Tree, place: Place) {
        let outer = (
            self.defining.replace(place),
            std::mem::take(&mut self.storing),
        );
        self.walk(tree);
        (self.defining, self.storing) = outer;
    }

    /// DDL: only what copies or stores a managed table's shape is read.
    pub(super) fn ddl(&mut self, body: &Tree) {
        let outer = std::mem::replace(&mut self.storing, true);
        self.walk(body);
        self.storing = outer;
    }

    /// `CREATE FUNCTION | PROCEDURE`: its argument and result types are stored, a `BEGIN
    /// ATOMIC` body is a definition, a string body is scanned.
    pub(super) fn function(&mut self, body: &Tree) {
        let Tree::Object(fields) = body else {
            return;
        };
        // `RETURNS TABLE (a t)`: Postgres's parser copies a single column's type into
        // `returnType`, located at `TABLE`; the column itself is read among the parameters.
        let returns_table = fields
            .iter()
            .filter(|(key, _)| key == "parameters")
            .flat_map(|(_, parameters)| parameters.as_array())
            .filter_map(|parameter| parameter.get("FunctionParameter")?.get("mode")?.as_text())
            .any(|mode| mode == "FUNC_PARAM_TABLE");
        let outer = std::mem::replace(&mut self.storing, true);
        for (key, child) in fields {
            match key.as_ref() {
                "returnType" if returns_table => {}
                "sql_body" => self.defined(child, Place::FunctionBody),
                "options" => {
                    let language = language(Some(child));
                    let language = language.as_deref().unwrap_or(FUNCTION_LANGUAGE);
                    self.bodies(Some(child), language);
                }
                _ => self.entry(key, child),
            }
        }
        self.storing = outer;
    }

    /// `DO`: its body, in the language it names (PL/pgSQL by default).
    pub(super) fn do_block(&mut self, body: &Tree) {
        let language = language(body.get("args"));
        let language = language.as_deref().unwrap_or(DO_LANGUAGE);
        self.bodies(body.get("args"), language);
    }

    /// The `AS` items of a function's options or a DO block's arguments: each string body
    /// that may name a managed table is a [`Place::FunctionBody`] reference.
    fn bodies(&mut self, items: Option<&Tree>, language: &str) {
        for item in items.map(Tree::as_array).unwrap_or_default() {
            let Some(option) = item.get("DefElem") else {
                continue;
            };
            if option.get("defname").and_then(Tree::as_text) != Some("as") {
                continue;
            }
            let from = location(option).unwrap_or(0);
            let mut texts = Vec::new();
            strings(option.get("arg"), &mut texts);
            for text in texts {
                let (at, target, place) = match judge_body(text, language, self.targets) {
                    Body::Plain => continue,
                    Body::Names(at, target) => (Some(at), target, Place::FunctionBody),
                    Body::RunsUnseenSql(at) => {
                        let Some(first) = self.targets.managed().first() else {
                            continue;
                        };
                        (at, first, Place::UnseenSql)
                    }
                };
                let offset = at
                    .and_then(|at| Some(definitions::body_offset(self.sql, from, text)? + at))
                    .unwrap_or(from);
                self.found.push(Reference {
                    offset,
                    schema: Some(target.table.schema.clone()),
                    name: target.table.name.clone(),
                    aliased: false,
                    place,
                });
                return;
            }
        }
    }

    /// A field selection `(arg).name` (an `A_Indirection`'s `indirection`), or a qualified
    /// column reference `q.name` (a `ColumnRef`'s `fields`), whose field after the first is a
    /// built-in the rewriter must see called by name (`query_functions::must_be_called_by_name`):
    /// Postgres calls `name(arg)` when `arg` has no such field, a call no other check reads
    /// (the twenty-third red-team pass ran `ts_stat` over the base table and the real
    /// printers in parentheses, the twenty-fourth on a FROM item's alias).
    pub(super) fn field_call(&mut self, selection: &Tree, list: &str) {
        let fields = selection.get(list).map(Tree::as_array).unwrap_or_default();
        let skip = usize::from(list == "fields");
        let Some(name) = fields
            .iter()
            .skip(skip)
            .filter_map(|field| field.get("String")?.get("sval")?.as_text())
            .find(|name| query_functions::must_be_called_by_name(name))
        else {
            return;
        };
        let offset = find_all_ignore_ascii_case(self.sql.as_bytes(), name.as_bytes())
            .next()
            .unwrap_or_default();
        self.found.push(Reference {
            offset,
            schema: None,
            name: name.to_owned(),
            aliased: false,
            place: Place::FieldCall,
        });
    }

    /// A mapping function named as an object (`CREATE OR REPLACE FUNCTION`, `ALTER FUNCTION
    /// … RENAME TO` / `OWNER TO` / `SET SCHEMA`, `DROP`, `COMMENT ON`, `GRANT … ON FUNCTION`),
    /// in a statement starting at `from`: a client that owns them replaced another version's
    /// read, and that version's upserts returned what it chose (the fifty-third red-team
    /// pass). They are the proxy's, as calling them is (`function_call`).
    pub(super) fn mapping_function_objects(&mut self, tree: &Tree, from: usize) {
        match tree {
            Tree::Array(items) => items
                .iter()
                .for_each(|item| self.mapping_function_objects(item, from)),
            Tree::Object(fields) => {
                for (key, child) in fields {
                    // A function's name with its arguments is a tagged `ObjectWithArgs` where
                    // a statement holds any node (DROP, RENAME, COMMENT, GRANT), and its bare
                    // fields where it holds one by type (`ALTER FUNCTION … STRICT`: the
                    // fifty-fourth red-team pass changed a mapping function's attributes so).
                    let names = match key.as_ref() {
                        "CreateFunctionStmt" => name_parts(child.get("funcname")),
                        _ => name_parts(child.get("objname")),
                    };
                    if key == "GrantStmt"
                        && let Some(view) = self.mapping_functions_granted_in(child)
                    {
                        // Every function of a schema that holds mapping functions.
                        self.found.push(Reference {
                            offset: from,
                            schema: Some(view.schema.clone()),
                            name: format!("{}{MAPPING_FUNCTION_INFIX}*", view.name),
                            aliased: false,
                            place: Place::OtherVersion,
                        });
                    }
                    if let [.., name] = names.as_slice()
                        && self.targets.names_mapping_function(name)
                    {
                        self.found.push(Reference {
                            offset: spelled_at(self.sql, from, name),
                            schema: names.len().checked_sub(2).map(|at| names[at].to_owned()),
                            name: (*name).to_owned(),
                            aliased: false,
                            place: Place::OtherVersion,
                        });
                    }
                    self.mapping_function_objects(child, from);
                }
            }
            _ => {}
        }
    }

    /// A view whose mapping functions `GRANT` / `REVOKE … ON ALL FUNCTIONS | PROCEDURES |
    /// ROUTINES IN SCHEMA` would change: revoked, its version's upserts fail.
    fn mapping_functions_granted_in(&self, grant: &Tree) -> Option<&RelationName> {
        let every =
            grant.get("targtype").and_then(Tree::as_text) == Some("ACL_TARGET_ALL_IN_SCHEMA");
        let functions = matches!(
            grant.get("objtype").and_then(Tree::as_text),
            Some("OBJECT_FUNCTION" | "OBJECT_PROCEDURE" | "OBJECT_ROUTINE")
        );
        if !every || !functions {
            return None;
        }
        let schemas = name_parts(grant.get("objects"));
        self.targets
            .managed()
            .iter()
            .map(|target| &target.view)
            .chain(self.targets.other_views())
            .find(|view| schemas.contains(&view.schema.as_str()))
    }

    /// A call of a built-in that reads relations named in an argument
    /// (`query_functions.rs`), when that argument may name a managed table.
    pub(super) fn function_call(&mut self, call: &Tree) {
        let names = name_parts(call.get("funcname"));
        if let [.., name] = names.as_slice()
            && self.targets.names_mapping_function(name)
        {
            let schema = names.len().checked_sub(2).map(|at| names[at]);
            self.other_version(call, schema, name);
            return;
        }
        // Another version's catalog substitutes print that version's columns and comments.
        if let [schema, name] = names.as_slice()
            && self.targets.is_other_versions_catalog(schema)
        {
            self.other_version(call, Some(schema), name);
            return;
        }
        let name = match names.as_slice() {
            [name] | ["pg_catalog", name] => *name,
            // An extension's function, in whatever schema it was created.
            [.., name] if query_functions::is_sql_building_extension_function(name) => *name,
            _ => return,
        };
        // A printer with a substitute: sqlparser's edit must send it there.
        if self.targets.substitute_function(None, name).is_some() {
            self.record(call, None, name, false, Place::Printer);
        }
        let arguments = call.get("args").map(Tree::as_array).unwrap_or_default();
        let Some(reads) = query_functions::reads(name, arguments.len()) else {
            return;
        };
        let indices = match reads {
            Reads::Query(n) | Reads::Relation(n) | Reads::Schema(n) => n..n + 1,
            Reads::Database => 0..1,
            Reads::Pieces => 0..arguments.len(),
        };
        // The first argument read that may name a managed table.
        let Some((constant, (target, at))) = indices.into_iter().find_map(|index| {
            let argument = arguments.get(index);
            let constant = argument.and_then(|argument| {
                argument
                    .get("A_Const")
                    .or_else(|| argument.get("TypeCast")?.get("arg")?.get("A_Const"))
            });
            let text = constant.and_then(|constant| {
                Some((
                    constant.get("sval")?.get("sval")?.as_text()?,
                    location(constant)?,
                ))
            });
            let argument = match (reads, constant, text) {
                (_, _, Some((text, _))) => Argument::Text(text),
                // A number, a boolean or NULL among SQL pieces carries no SQL.
                (Reads::Pieces, Some(_), None) => return None,
                _ => Argument::Other,
            };
            query_functions::reads_managed_table(reads, argument, self.targets)
                .map(|found| (text, found))
        }) else {
            return;
        };
        let mention = constant.zip(at).and_then(|((text, from), at)| {
            definitions::body_offset(self.sql, from, text).map(|start| start + at)
        });
        let Some(offset) = mention.or_else(|| location(call)) else {
            self.unlocatable = true;
            return;
        };
        self.found.push(Reference {
            offset,
            schema: Some(target.table.schema.clone()),
            name: target.table.name.clone(),
            aliased: false,
            place: Place::QueryText,
        });
    }
}

/// The language a DO block's body is in when it names none.
const DO_LANGUAGE: &str = "plpgsql";
/// The language a function is taken to be in when it names none (a `BEGIN ATOMIC` body).
const FUNCTION_LANGUAGE: &str = "sql";

/// The `LANGUAGE` item of a function's options or a DO block's arguments, folded.
fn language(items: Option<&Tree>) -> Option<String> {
    items
        .map(Tree::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|item| item.get("DefElem"))
        .find(|option| option.get("defname").and_then(Tree::as_text) == Some("language"))
        .and_then(|option| option.get("arg")?.get("String")?.get("sval")?.as_text())
        .map(|name| name.to_ascii_lowercase())
}

/// The texts of the `String` nodes in `tree` (a function's `AS 'obj', 'symbol'` has two).
fn strings<'t>(tree: Option<&'t Tree>, out: &mut Vec<&'t str>) {
    match tree {
        Some(Tree::Object(fields)) => {
            for (key, child) in fields {
                match (key.as_ref(), child) {
                    ("sval", Tree::Text(text)) => out.push(text),
                    _ => strings(Some(child), out),
                }
            }
        }
        Some(Tree::Array(items)) => items.iter().for_each(|item| strings(Some(item), out)),
        _ => {}
    }
}
