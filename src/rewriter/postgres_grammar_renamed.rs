//! DDL naming a managed table by the name a live `rename_table` gives it at the version (v3's
//! `purchases`, base table `orders` until `migrate complete`): written as the base table's
//! name ([`Place::BaseTable`]).
//!
//! DDL on a managed table acts on its base table and names it (docs/rewriting.md): at a
//! version that calls the table by its base table's name, as written. Under a live rename the
//! version's name is no relation's until the contract, so `VACUUM purchases`, `CREATE INDEX ON
//! purchases`, `TRUNCATE purchases` or `GRANT … ON purchases` failed with a bare 42P01, and
//! vacuumdb and reindexdb with them (the operator-tools walk), while the old name, which the
//! version does not have, reached the table. Read here: the relations of `VACUUM` and
//! `ANALYZE`, `TRUNCATE`, `LOCK`, `CLUSTER`, `REINDEX TABLE`, `CREATE INDEX`, `CREATE TRIGGER`,
//! `CREATE` and `ALTER POLICY`, `CREATE STATISTICS`, `GRANT` and `REVOKE` (those of whole-table
//! privileges are written as more: `postgres_grammar_grants.rs`),
//! `ALTER TABLE` (what it may change is judged in `postgres_grammar_structure.rs`), the table
//! a foreign key references from `CREATE TABLE` or `ALTER TABLE`, and `COMMENT ON TABLE`
//! (found in the text: the parse tree gives it no position).

use super::grants::grants_whole_tables;
use super::structure::named_at;
use super::{Place, Tree, Walker};
use crate::rewriter::identifier::quote_identifier;
use crate::rewriter::parse_tree::{location, name_parts};
use crate::rewriter::targets::{VersionTargets, ViewTarget};

impl Walker<'_> {
    /// The relations `statement` names as DDL on a managed table by the version's name for
    /// it, where that is not its base table's, as [`Place::BaseTable`]; every managed table a
    /// `GRANT` or `REVOKE` of whole-table privileges names, as [`Place::Granted`]
    /// (`postgres_grammar_grants.rs`). `from` is the statement's first byte.
    pub(super) fn renamed_tables(&mut self, statement: &Tree, from: usize) {
        let Tree::Object(fields) = statement else {
            return;
        };
        let Some((kind, body)) = fields.first() else {
            return;
        };
        let granted = kind == "GrantStmt" && grants_whole_tables(body);
        for relation in relations(kind, body) {
            let relation = relation.get("RangeVar").unwrap_or(relation);
            let text = |key: &str| relation.get(key).and_then(Tree::as_text);
            let schema = text("schemaname").filter(|s| !s.is_empty());
            let Some(name) = text("relname") else {
                continue;
            };
            if text("relpersistence") != Some("t") {
                self.record_ddl_relation(location(relation), schema, name, granted);
            }
        }
        // `COMMENT ON TABLE s.t` names its table as a bare list, without a position.
        if kind == "CommentStmt"
            && body.get("objtype").and_then(Tree::as_text) == Some("OBJECT_TABLE")
        {
            let parts = name_parts(body.get("object").and_then(|o| o.get("List")?.get("items")));
            let (schema, name) = match parts.as_slice() {
                [.., schema, name] => (Some(*schema), *name),
                [name] => (None, *name),
                [] => return,
            };
            self.record_ddl_relation(named_at(self.sql, from, &parts), schema, name, false);
        }
    }

    /// Records `schema.name`, at `offset`, if it names a managed table whose base table is
    /// known: as [`Place::Granted`] in a whole-table grant, else as [`Place::BaseTable`] where
    /// the name is not its base table's.
    fn record_ddl_relation(
        &mut self,
        offset: Option<usize>,
        schema: Option<&str>,
        name: &str,
        granted: bool,
    ) {
        if self.targets.is_pinned(schema, name) {
            return;
        }
        let Some(write) = (self.targets.resolve(schema, name))
            .filter(|target| self.targets.is_managed(target))
            .and_then(|target| self.targets.base_write(target))
        else {
            return;
        };
        let place = match granted {
            true => Place::Granted,
            false if write.base.name != name => Place::BaseTable,
            false => return,
        };
        self.record_at(offset, schema, name, false, place);
    }
}

/// The base table of `target` as a reference, qualified: what [`Place::BaseTable`] writes.
pub fn base_reference(targets: &VersionTargets, target: &ViewTarget) -> Option<String> {
    let base = &targets.base_write(target)?.base;
    Some(format!(
        "{}.{}",
        quote_identifier(&base.schema),
        quote_identifier(&base.name)
    ))
}

/// The relations (`RangeVar`s, tagged or not) a statement of `kind` acts on as DDL.
fn relations<'t, 'a>(kind: &str, body: &'t Tree<'a>) -> Vec<&'t Tree<'a>> {
    let text = |key: &str| body.get(key).and_then(Tree::as_text);
    let list = |key: &str| body.get(key).map(Tree::as_array).unwrap_or_default();
    let mut found: Vec<&Tree> = Vec::new();
    match kind {
        "VacuumStmt" => found.extend(
            list("rels")
                .iter()
                .filter_map(|r| r.get("VacuumRelation")?.get("relation")),
        ),
        "TruncateStmt" | "CreateStatsStmt" | "LockStmt" => found.extend(list("relations")),
        "ClusterStmt" | "IndexStmt" | "CreateTrigStmt" => found.extend(body.get("relation")),
        "ReindexStmt" if text("kind") == Some("REINDEX_OBJECT_TABLE") => {
            found.extend(body.get("relation"));
        }
        "CreatePolicyStmt" | "AlterPolicyStmt" => found.extend(body.get("table")),
        // `ON ALL TABLES IN SCHEMA s` lists schemas, not relations.
        "GrantStmt"
            if text("objtype") == Some("OBJECT_TABLE")
                && text("targtype").is_none_or(|t| t == "ACL_TARGET_OBJECT") =>
        {
            found.extend(list("objects"));
        }
        "AlterTableStmt" if text("objtype") == Some("OBJECT_TABLE") => {
            found.extend(body.get("relation"));
            let constraints = list("cmds")
                .iter()
                .filter_map(|c| c.get("AlterTableCmd")?.get("def")?.get("Constraint"));
            found.extend(constraints.filter_map(|c| c.get("pktable")));
        }
        "CreateStmt" => {
            for element in list("tableElts") {
                let column = element.get("ColumnDef").and_then(|c| c.get("constraints"));
                let constraints = (column.map(Tree::as_array).unwrap_or_default().iter())
                    .filter_map(|c| c.get("Constraint"))
                    .chain(element.get("Constraint"));
                found.extend(constraints.filter_map(|c| c.get("pktable")));
            }
        }
        _ => {}
    }
    found
}
