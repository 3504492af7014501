//! Built-in functions that read relations named in a string: `query_to_xml`, `ts_stat` and
//! `ts_rewrite` run a query given as text, `table_to_xml` reads a relation given by name,
//! `schema_to_xml` and `database_to_xml` read every table of a schema or the database; and
//! the same from trusted or common extensions (`SQL_BUILDING_EXTENSION_FUNCTIONS`):
//! tablefunc's `crosstab` runs its query texts, its `connectby` and xml2's `xpath_table`
//! paste their relation, column and condition arguments into a query of their own.
//! Postgres parses those names when the function runs, so the rewriter never sees them as
//! references; a call that could read a managed table this way would return every column of
//! every version, and is refused. A call whose argument is not a constant (a parameter, an
//! expression) could name anything, and is refused too; the version's views can be named
//! instead. The fast path reads a statement that mentions one
//! (`mention::RELATION_READING_FUNCTION_MARKS`). Since only a call by name is recognised, DDL
//! that would make one of them callable under another name (an operator, an aggregate's
//! function, a cast) is refused, and so is the same for the printers with substitutes and
//! `set_config` (`aliased_built_in`).

use super::definitions::{Body, body_mention, judge_body};
use super::identifier::parse_relation_literal;
use super::parse_tree::Tree;
use super::targets::{VersionTargets, ViewTarget};
use crate::model::catalog_substitutes::{
    INFORMATION_SCHEMA, PG_CATALOG, PG_CATALOG_SUBSTITUTES, SET_CONFIG, SUBSTITUTE_FUNCTIONS,
};

/// DDL that makes a function callable under another name: an operator, an aggregate's
/// transition or final function, a type's input or output, a cast, an operator class's support
/// function, a transform. A call through that name is no call the rewriter recognises.
pub const ALIASING_KINDS: &[&str] = &[
    "DefineStmt",
    "CreateCastStmt",
    "CreateOpClassStmt",
    "CreateTransformStmt",
    "AlterOperatorStmt",
];

/// Whether the rewriter must see `function` (folded) called by its own name: a built-in of
/// this file, a printer with a substitute, or `set_config` (`search_path_catalog.rs`).
pub fn must_be_called_by_name(function: &str) -> bool {
    reads(function, 2).is_some()
        || SUBSTITUTE_FUNCTIONS.contains(&function)
        || function == SET_CONFIG
}

/// The first such function an aliasing statement (`ALIASING_KINDS`) names, anywhere in it.
pub fn aliased_built_in<'t>(statement: &'t Tree<'t>) -> Option<&'t str> {
    match statement {
        Tree::Array(items) => items.iter().find_map(aliased_built_in),
        Tree::Object(fields) => fields.iter().find_map(|(key, child)| {
            let named = (key == "String")
                .then(|| child.get("sval").and_then(Tree::as_text))
                .flatten()
                .filter(|name| must_be_called_by_name(name));
            named.or_else(|| aliased_built_in(child))
        }),
        _ => None,
    }
}

/// Functions of extensions that run SQL built from their text arguments, by the start of
/// their names: tablefunc's `crosstab(text)`, `crosstab(text, text)`, `crosstab(text, int)`
/// and `crosstab2` … `crosstab4` run the query texts they are given; its `connectby(relname,
/// keyid_fld, parent_keyid_fld, [orderby_fld,] start_with, max_depth[, branch_delim])` and
/// xml2's `xpath_table(key, document, relname, xpaths, criteria)` paste their relation,
/// column and condition arguments, unquoted, into `SELECT … FROM … WHERE …`. tablefunc is a
/// trusted extension, which a database owner may install without a superuser. An extension
/// lives in whatever schema it was created in, so a call qualified with any schema counts.
pub const SQL_BUILDING_EXTENSION_FUNCTIONS: &[&str] = &["crosstab", "connectby", "xpath_table"];

/// Whether `function` (folded) is one of `SQL_BUILDING_EXTENSION_FUNCTIONS`.
pub fn is_sql_building_extension_function(function: &str) -> bool {
    SQL_BUILDING_EXTENSION_FUNCTIONS
        .iter()
        .any(|family| function.starts_with(family))
}

/// What a built-in reads from one of its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Runs the query text in argument `n` (0-based).
    Query(usize),
    /// Runs SQL made of every argument: query texts, or pieces of one (a relation's name, a
    /// column list, a condition) pasted as they are. Each text is judged as a query is; a
    /// constant of another type (`connectby`'s depth) carries no SQL.
    Pieces,
    /// Reads the relation named in argument `n` (an implicit regclass).
    Relation(usize),
    /// Reads every table of the schema named in argument `n`.
    Schema(usize),
    /// Reads every table of the database.
    Database,
}

/// What `pg_catalog.function`, called with `arguments` arguments, reads from them, if it is
/// one of these built-ins.
pub fn reads(function: &str, arguments: usize) -> Option<Reads> {
    let family = |prefix: &str| function.starts_with(prefix);
    match function {
        _ if family("query_to_xml") => Some(Reads::Query(0)),
        _ if family("table_to_xml") => Some(Reads::Relation(0)),
        _ if family("schema_to_xml") => Some(Reads::Schema(0)),
        _ if family("database_to_xml") => Some(Reads::Database),
        "ts_stat" => Some(Reads::Query(0)),
        // `ts_rewrite(query, select)`; the three-argument form takes only tsqueries.
        "ts_rewrite" if arguments == 2 => Some(Reads::Query(1)),
        _ if is_sql_building_extension_function(function) => Some(Reads::Pieces),
        _ => None,
    }
}

/// An argument of a call, as the parser gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argument<'a> {
    /// A string constant (also one cast to a type: `'t'::regclass`): its text.
    Text(&'a str),
    /// A parameter, an expression, or nothing.
    Other,
}

/// The managed table a call that `reads` its `argument` may read, and the byte offset of the
/// mention within the argument's text where there is one.
pub fn reads_managed_table<'t>(
    reads: Reads,
    argument: Argument,
    targets: &'t VersionTargets,
) -> Option<(&'t ViewTarget, Option<usize>)> {
    let any_table = || targets.managed().first().map(|target| (target, None));
    let text = match (reads, argument) {
        (Reads::Database, _) | (_, Argument::Other) => return any_table(),
        (_, Argument::Text(text)) => text,
    };
    // An oid (`'16386'`, as `pg_type.typrelid` gives it) names a relation without its name.
    if let Reads::Relation(_) = reads
        && text.trim().bytes().all(|b| b.is_ascii_digit())
    {
        return any_table();
    }
    match reads {
        // A query text is judged as a SQL body is: a nested built-in, a catalog relation
        // (the real one, there), `pg_stats`. So is a piece of one: the judgement reads words,
        // and the pieces are pasted apart from each other (`SELECT a, b FROM r WHERE c`).
        Reads::Query(_) | Reads::Pieces => {
            return match judge_body(text, "sql", targets) {
                Body::Names(at, target) => Some((target, Some(at))),
                Body::RunsUnseenSql(at) => targets.managed().first().map(|target| (target, at)),
                Body::Plain => None,
            };
        }
        // A catalog relation with a substitute, read whole as the real one.
        Reads::Relation(_)
            if parse_relation_literal(text).is_some_and(|(schema, name)| {
                schema.as_deref() == Some(INFORMATION_SCHEMA)
                    || (schema.as_deref().is_none_or(|s| s == PG_CATALOG)
                        && PG_CATALOG_SUBSTITUTES.contains(&name.as_str()))
            }) =>
        {
            return any_table();
        }
        // Another version's catalog substitutes (they describe that version's columns).
        Reads::Relation(_)
            if parse_relation_literal(text).is_some_and(|(schema, _)| {
                schema.is_some_and(|schema| targets.is_other_versions_catalog(&schema))
            }) =>
        {
            return any_table();
        }
        Reads::Schema(_)
            if text == PG_CATALOG
                || text == INFORMATION_SCHEMA
                || targets.is_other_versions_catalog(text) =>
        {
            return any_table();
        }
        _ => {}
    }
    if let Reads::Schema(_) = reads {
        // A schema holding a relative of a managed table (a partition in a schema of its
        // own, say) reads the base rows as surely as the base table's (red-team pass 39 F3).
        if targets.has_relative_in(text) {
            return any_table();
        }
        return targets
            .managed()
            .iter()
            .find(|target| target.table.schema == text)
            .map(|target| (target, None));
    }
    body_mention(text, targets).map(|(at, target)| (target, Some(at)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewriter::targets::RelationName;

    #[test]
    fn a_call_reads_a_managed_table_when_its_text_may_name_one() {
        let targets = VersionTargets::seed_example("v1");
        let call = |function: &str, count: usize, argument| {
            let what = reads(function, count)?;
            reads_managed_table(what, argument, &targets).map(|(_, at)| at)
        };
        let text = Argument::Text;
        assert_eq!(
            call("query_to_xml", 4, text("SELECT * FROM model_metadata")),
            Some(Some(14))
        );
        assert_eq!(
            call("query_to_xml", 4, text("SELECT * FROM model_metadata_v1")),
            None
        );
        assert_eq!(
            call("table_to_xmlschema", 4, text("public.model_metadata")),
            Some(Some(7))
        );
        assert_eq!(call("table_to_xml", 4, text("model_metadata_v1")), None);
        assert_eq!(call("table_to_xml", 4, text(" 16386")), Some(None));
        assert_eq!(call("schema_to_xml", 4, text("public")), Some(None));
        assert_eq!(call("schema_to_xml", 4, text("audit")), None);
        // A schema holding only a partition of a managed table reads its base rows.
        let with_partition = VersionTargets::seed_example("v1")
            .with_relatives(vec![RelationName::new("archive", "model_metadata_2027")]);
        let schema = |function: &str, name| {
            let what = reads(function, 4)?;
            reads_managed_table(what, text(name), &with_partition).map(|(_, at)| at)
        };
        assert_eq!(schema("schema_to_xml", "archive"), Some(None));
        assert_eq!(schema("schema_to_xmlschema", "archive"), Some(None));
        assert_eq!(schema("schema_to_xml_and_xmlschema", "archive"), Some(None));
        assert_eq!(schema("schema_to_xml", "Archive"), None);
        assert_eq!(
            call("database_to_xml_and_xmlschema", 3, text("x")),
            Some(None)
        );
        assert_eq!(
            call("ts_stat", 1, text("SELECT v FROM model_metadata")),
            Some(Some(14))
        );
        assert_eq!(reads("ts_rewrite", 2), Some(Reads::Query(1)));
        assert_eq!(reads("ts_rewrite", 3), None);
        // Whatever a parameter or an expression holds, it could name the table.
        assert_eq!(call("query_to_xml", 4, Argument::Other), Some(None));
        assert_eq!(call("table_to_xml", 4, Argument::Other), Some(None));
        assert_eq!(reads("xmlelement", 1), None);
        // Found by a third red-team pass: nested built-ins, the real catalog by name.
        assert!(
            call(
                "query_to_xml",
                4,
                text("SELECT table_to_xml(16386::oid::regclass, true, false, '')")
            )
            .is_some()
        );
        assert!(
            call(
                "query_to_xml",
                4,
                text("SELECT histogram_bounds FROM pg_stats")
            )
            .is_some()
        );
        assert!(call("query_to_xml", 4, text("SELECT attname FROM pg_attribute")).is_some());
        assert!(call("table_to_xml", 4, text("pg_catalog.pg_stats")).is_some());
        assert!(call("schema_to_xml", 4, text("pg_catalog")).is_some());
        assert_eq!(
            call("query_to_xml", 4, text("SELECT 1 FROM documents")),
            None
        );
    }

    /// Nineteenth red-team pass (P2): tablefunc's and xml2's functions run SQL made of their
    /// text arguments, every one of which is read.
    #[test]
    fn extension_functions_building_sql_from_their_arguments_are_read_whole() {
        let targets = VersionTargets::seed_example("v1");
        for function in ["crosstab", "crosstab3", "connectby", "xpath_table"] {
            assert_eq!(reads(function, 1), Some(Reads::Pieces), "{function}");
            assert!(must_be_called_by_name(function), "{function}");
        }
        let call = |argument| reads_managed_table(Reads::Pieces, argument, &targets);
        let text = Argument::Text;
        assert_eq!(
            call(text("SELECT model_type FROM model_metadata")).map(|(_, at)| at),
            Some(Some(23))
        );
        assert_eq!(
            call(text("public.model_metadata")).map(|(_, at)| at),
            Some(Some(7))
        );
        assert!(call(text("(SELECT max(model_type) FROM model_metadata)")).is_some());
        assert!(call(text("pg_attribute")).is_some());
        assert!(call(Argument::Other).is_some());
        assert_eq!(call(text("model_metadata_v1")), None);
        assert_eq!(call(text("id::text")), None);
        assert_eq!(reads("crossing", 1), None);
    }
}
