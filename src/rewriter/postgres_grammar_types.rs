//! The grammar walk through type names: a managed table's row type or array type
//! (`model_metadata`, `_model_metadata`), `relation.column%TYPE`, and regclass literals that
//! name another version's view. The `Walker`'s methods for what names a relation without
//! reading its rows.

use super::{Place, Tree, Walker};
use crate::rewriter::definitions::UNTAGGED_TYPE_FIELDS;
use crate::rewriter::identifier::parse_relation_literal;
use crate::rewriter::parse_tree::name_parts;

impl Walker<'_> {
    /// A type name that names a managed table's row type. A WITH item never shadows a type.
    pub(super) fn type_name(&mut self, type_name: &Tree) {
        let names = name_parts(type_name.get("names"));
        if type_name.get("pct_type").and_then(Tree::as_bool) == Some(true) {
            self.column_type(type_name, &names);
            return;
        }
        let (schema, name) = match names.as_slice() {
            [name] => (None, *name),
            [.., schema, name] => (Some(*schema), *name),
            [] => return,
        };
        // Another version's view's row type (or its array type), and a managed table's array
        // type by its internal name (`_model_metadata`: the base table's row, whole).
        let element = name.strip_prefix('_');
        if self.targets.names_other_version(schema, name)
            || element.is_some_and(|element| self.targets.names_other_version(schema, element))
        {
            self.other_version(type_name, schema, name);
            return;
        }
        if let Some(element) = element
            && self.targets.resolve_table(schema, element).is_some()
        {
            self.record(type_name, schema, element, false, Place::BaseArrayType);
            return;
        }
        if self.targets.resolve_table(schema, name).is_none() {
            return;
        }
        let place = if self.storing {
            Place::StoredShape
        } else {
            Place::RowType
        };
        self.found_at(type_name, schema, name, false, place);
    }

    /// Every `relation.column%TYPE` in `tree`, which is read for nothing else.
    pub(super) fn column_types_in(&mut self, tree: &Tree) {
        match tree {
            Tree::Array(items) => items.iter().for_each(|item| self.column_types_in(item)),
            Tree::Object(fields) => {
                for (key, child) in fields {
                    let typed = key == "TypeName"
                        || key == "typeName"
                        || UNTAGGED_TYPE_FIELDS.contains(&key.as_ref());
                    if typed && child.get("pct_type").and_then(Tree::as_bool) == Some(true) {
                        self.column_type(child, &name_parts(child.get("names")));
                    } else {
                        self.column_types_in(child);
                    }
                }
            }
            _ => {}
        }
    }

    /// `relation.column%TYPE` (`names` ends with the column): the column's type, which
    /// Postgres looks up in the relation, printing it in a NOTICE. On a managed table that
    /// is the base table's, whose columns the version may not have (the nineteenth red-team
    /// pass read a hidden column's type so); on another version's view, that version's.
    fn column_type(&mut self, type_name: &Tree, names: &[&str]) {
        let (schema, name) = match names {
            [] | [_] => return,
            [name, _column] => (None, *name),
            [.., schema, name, _column] => (Some(*schema), *name),
        };
        if self.targets.names_other_version(schema, name) {
            self.other_version(type_name, schema, name);
            return;
        }
        if self.targets.resolve_table(schema, name).is_some() {
            self.found_at(type_name, schema, name, false, Place::ColumnType);
        }
    }

    /// A regclass literal naming another version's view (`pg_get_viewdef('…_v2'::regclass)`
    /// would print that version's definition and columns).
    pub(super) fn regclass_literal(&mut self, cast: &Tree) {
        let type_name = name_parts(cast.get("typeName").and_then(|t| t.get("names")));
        if !matches!(
            type_name.as_slice(),
            ["regclass"] | ["pg_catalog", "regclass"]
        ) {
            return;
        }
        let Some(constant) = cast.get("arg").and_then(|arg| arg.get("A_Const")) else {
            return;
        };
        let Some(text) = constant.get("sval").and_then(|v| v.get("sval")?.as_text()) else {
            return;
        };
        if let Some((schema, name)) = parse_relation_literal(text)
            && self.targets.names_other_version(schema.as_deref(), &name)
        {
            self.other_version(constant, schema.as_deref(), &name);
        }
    }
}
