//! Built-in functions that read relations named in a string: `query_to_xml` runs a query
//! given as text, `table_to_xml` reads a relation given by name, `schema_to_xml` and
//! `database_to_xml` read every table of a schema or the database. Postgres parses those names
//! when the function runs, so the rewriter never sees them as references; a call that could
//! read a managed table this way would return every column of every version, and is refused.
//! A call whose argument is not a constant (a parameter, an expression) could name anything,
//! and is refused too; the version's views can be named instead. The fast path reads a
//! statement that mentions one (`mention::RELATION_READING_FUNCTION_MARK`).

use super::definitions::body_mention;
use super::targets::{VersionTargets, ViewTarget};

/// The first argument of a call, as the parser gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstArgument<'a> {
    /// A string constant (also one cast to a type: `'t'::regclass`): its text.
    Text(&'a str),
    /// A parameter, an expression, or nothing.
    Other,
}

/// Why the call of `pg_catalog.function` with `first` would read a managed table, if it
/// could: the table it may read, and the byte offset of the mention within `first`'s text.
pub fn reads_managed_table<'t>(
    function: &str,
    first: FirstArgument,
    targets: &'t VersionTargets,
) -> Option<(&'t ViewTarget, Option<usize>)> {
    let family = |prefix: &str| function.starts_with(prefix);
    let any_table = || targets.managed().first().map(|target| (target, None));
    if family("database_to_xml") {
        return any_table();
    }
    let reads = family("query_to_xml") || family("table_to_xml") || family("schema_to_xml");
    if !reads {
        return None;
    }
    let FirstArgument::Text(text) = first else {
        return any_table();
    };
    if family("schema_to_xml") {
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

    fn targets() -> VersionTargets {
        VersionTargets::seed_example("v1")
    }

    #[test]
    fn a_call_reads_a_managed_table_when_its_text_may_name_one() {
        let targets = targets();
        let reads = |function: &str, first| {
            reads_managed_table(function, first, &targets).map(|(_, at)| at)
        };
        let text = FirstArgument::Text;
        assert_eq!(
            reads("query_to_xml", text("SELECT * FROM model_metadata")),
            Some(Some(14))
        );
        assert_eq!(
            reads("query_to_xml", text("SELECT * FROM model_metadata_v1")),
            None
        );
        assert_eq!(
            reads("table_to_xmlschema", text("public.model_metadata")),
            Some(Some(7))
        );
        assert_eq!(reads("table_to_xml", text("model_metadata_v1")), None);
        assert_eq!(reads("schema_to_xml", text("public")), Some(None));
        assert_eq!(reads("schema_to_xml", text("audit")), None);
        assert_eq!(
            reads("database_to_xml_and_xmlschema", text("x")),
            Some(None)
        );
        // Whatever a parameter or an expression holds, it could name the table.
        assert_eq!(reads("query_to_xml", FirstArgument::Other), Some(None));
        assert_eq!(reads("table_to_xml", FirstArgument::Other), Some(None));
        assert_eq!(reads("xmlelement", FirstArgument::Other), None);
    }
}
