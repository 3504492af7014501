//! `GRANT` and `REVOKE` of privileges on a whole managed table: written as its base table and
//! every active version's view of it (`Place::Granted`, found with the other DDL relations in
//! `postgres_grammar_renamed.rs`).
//!
//! Through the proxy a version reads a managed table through its view, which is
//! `security_invoker` (the role needs rights on the view and on the base table). Sent as
//! written, `GRANT SELECT ON customers TO reporting` granted the base table alone, and the role
//! then read nothing through the proxy (`permission denied for view customers_v1`, a name it
//! never wrote); under a live `rename_table` the version's name was no relation's at all. Every
//! version's view, not only the session's: canaries and cutovers move a role's sessions from
//! version to version, and its rights must go with them. Column privileges (`GRANT SELECT (id)
//! ON customers`) are left to `postgres_grammar_renamed.rs` and reach the base table alone: a
//! column's name is not the same at every version, and one statement names its columns once.

use super::Tree;
use crate::rewriter::identifier::quote_identifier;
use crate::rewriter::targets::{RelationName, VersionTargets, ViewTarget};

/// Whether `grant` (a `GrantStmt`) gives or takes privileges on named tables, none of them on
/// columns: `ON ALL TABLES IN SCHEMA` names schemas, whose views it reaches already.
pub(super) fn grants_whole_tables(grant: &Tree) -> bool {
    let text = |key: &str| grant.get(key).and_then(Tree::as_text);
    let on_columns = (grant.get("privileges").map(Tree::as_array))
        .unwrap_or_default()
        .iter()
        .any(|privilege| {
            (privilege.get("AccessPriv").and_then(|p| p.get("cols")))
                .is_some_and(|columns| !columns.as_array().is_empty())
        });
    text("objtype") == Some("OBJECT_TABLE")
        && text("targtype").is_none_or(|t| t == "ACL_TARGET_OBJECT")
        && !on_columns
}

/// What `Place::Granted` writes for `target`: its base table and every active version's view
/// of it, qualified, comma-separated (`"public"."customers", "public"."customers_v1", …`).
pub fn granted_references(targets: &VersionTargets, target: &ViewTarget) -> Option<String> {
    let base = &targets.base_write(target)?.base;
    let qualified = |r: &RelationName| {
        format!(
            "{}.{}",
            quote_identifier(&r.schema),
            quote_identifier(&r.name)
        )
    };
    let relations = std::iter::once(base).chain(targets.views_of_base(base));
    Some(relations.map(qualified).collect::<Vec<_>>().join(", "))
}
