//! A view's mapping as SQL functions of its schema: each read expression over a base row, each
//! write expression over the view-shaped `new` (and `old`) rows, and each of the view's
//! defaults.
//!
//! Where Postgres cannot write through the view (an upsert through a trigger-backed view, MERGE
//! before PostgreSQL 17), the proxy writes the base table in the view's stead and must say
//! there what the view reads and writes. Pasting the spec's expressions into that statement
//! would have them parsed in the client's session, whose temporary schema Postgres searches
//! first for types and relations: a client's `pg_temp.text` domain then ran its CHECK over
//! every stored hidden value a `::text` in a read expression cast (the forty-seventh red-team
//! pass), and a temporary sequence took over a pasted `nextval(…)`. So `views apply` makes
//! these functions, with the trigger's pinned search_path (`pg_temp` last), and the proxy calls
//! them by their qualified names: nothing of the mapping is parsed under the client's path.
//! The catalog records each function's name with the column it maps
//! (`model::view_mapping`); `mapping_functions.sql.j2` makes them, from the live view's column
//! types and defaults, and `drop_mapping_functions.sql.j2` drops them before the view goes.
//!
//! A function's name is its view's and a digest of what it computes: a session keeps the
//! mapping it began its transaction with while an apply makes the view anew, and a name by
//! position had it call another column's function after the columns moved (the forty-eighth
//! red-team pass read `layers` as `family` and lost a MERGE's write). A changed mapping is a
//! new name, the old one is dropped, and the stale statement fails instead.

use serde::Serialize;

use super::checksum::sha256_hex;
use crate::control::quote::quote_qualified;

pub use crate::model::view_mapping::MAPPING_FUNCTION_INFIX as INFIX;

/// Hex digits of the digest in a function's name: 48 bits, so two functions of one view
/// never share a name by chance in practice.
const DIGEST_HEX_DIGITS: usize = 12;

/// What a mapping function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An expression column's value over a base row (`$1`, the base table's row type).
    Read,
    /// A base column's value as the trigger writes it, over `new` and `old` (the view's row
    /// type; `old` is NULL on INSERT).
    Write,
    /// A view column's default, as the view has it.
    Default,
}

/// One function of a view's mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappingFunction {
    pub name: String,
    pub kind: Kind,
    /// The column whose type it returns: the view's (read, default) or the base table's
    /// (write).
    pub column: String,
    /// The spec's expression (read, write); a default's is the view's own, read live.
    pub expression: Option<String>,
}

/// What the view's mapping computes, as the plan has it: its expression columns (view
/// column, expression), the base columns its trigger's INSERT computes by an expression (base
/// column, expression; its UPDATE computes the same ones), and the columns it has a default
/// for.
pub struct Computed<'a> {
    /// The base table, qualified, and the view's columns in order: the row types the
    /// functions take.
    pub base: String,
    pub view_columns: Vec<&'a str>,
    pub reads: Vec<(&'a str, &'a str)>,
    pub writes: Vec<(&'a str, &'a str)>,
    pub defaults: Vec<&'a str>,
}

/// The mapping functions of view `view_name`: a read for each expression column, a write for
/// each expression of its trigger's, a default for each column the view has one for.
pub fn plan(view_name: &str, computed: &Computed) -> Vec<MappingFunction> {
    let with_expression = |kind: Kind| {
        move |&(column, expression): &(&str, &str)| {
            (kind, column.to_owned(), Some(expression.to_owned()))
        }
    };
    let reads = computed.reads.iter().map(with_expression(Kind::Read));
    let writes = computed.writes.iter().map(with_expression(Kind::Write));
    let defaults = computed
        .defaults
        .iter()
        .map(|column| (Kind::Default, (*column).to_owned(), None));
    reads
        .chain(writes)
        .chain(defaults)
        .map(|(kind, column, expression)| MappingFunction {
            name: name(view_name, computed, kind, &column, expression.as_deref()),
            kind,
            column,
            expression,
        })
        .collect()
}

/// The name of view `view_name`'s function of `kind` for `column`: the view's name and a
/// digest of everything the function's meaning depends on. Postgres identifiers hold no NUL,
/// so the separator keeps the parts apart.
fn name(
    view_name: &str,
    computed: &Computed,
    kind: Kind,
    column: &str,
    expression: Option<&str>,
) -> String {
    let identity = [
        format!("{kind:?}"),
        column.to_owned(),
        expression.unwrap_or_default().to_owned(),
        computed.base.clone(),
        computed.view_columns.join("\u{1}"),
    ]
    .join("\u{0}");
    let digest = sha256_hex(&identity);
    format!("{view_name}{INFIX}{}", &digest[..DIGEST_HEX_DIGITS])
}

/// How every mapping function's comment begins: how a version's catalog substitutes hide
/// them (their bodies name base columns, hidden ones too, as the write trigger's does).
pub const MARKER_PREFIX: &str = "Managed by viewgate: part of the mapping of view ";

/// How each mapping function of view `schema.name` begins its comment: how they are found to
/// be dropped.
pub fn marker(view_schema: &str, view_name: &str) -> String {
    format!(
        "{MARKER_PREFIX}{}:",
        quote_qualified(view_schema, view_name)
    )
}

/// The function of `kind` for `column` among `functions`.
pub fn find<'a>(
    functions: &'a [MappingFunction],
    kind: Kind,
    column: &str,
) -> Option<&'a MappingFunction> {
    functions
        .iter()
        .find(|function| function.kind == kind && function.column == column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn computed<'a>(view_columns: Vec<&'a str>) -> Computed<'a> {
        Computed {
            base: "\"public\".\"t\"".into(),
            view_columns,
            reads: vec![("kind", "split_part(k::text, '/', 1)")],
            writes: vec![("k", "NEW.kind")],
            defaults: vec!["id"],
        }
    }

    #[test]
    fn each_function_is_named_by_what_it_computes() {
        let functions = plan("t_v2", &computed(vec!["id", "kind"]));
        let summary: Vec<(Kind, &str)> = functions
            .iter()
            .map(|f| (f.kind, f.column.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (Kind::Read, "kind"),
                (Kind::Write, "k"),
                (Kind::Default, "id")
            ]
        );
        for function in &functions {
            assert!(function.name.starts_with("t_v2_map_"), "{}", function.name);
            assert_eq!(
                function.name.len(),
                "t_v2_map_".len() + DIGEST_HEX_DIGITS,
                "{}",
                function.name
            );
        }
        assert_eq!(
            find(&functions, Kind::Write, "k").and_then(|f| f.expression.as_deref()),
            Some("NEW.kind")
        );
        assert!(find(&functions, Kind::Read, "id").is_none());
        // The same mapping, the same names; the view's columns in another order (its row
        // type changed), or another expression, other names throughout.
        assert_eq!(plan("t_v2", &computed(vec!["id", "kind"])), functions);
        let moved = plan("t_v2", &computed(vec!["kind", "id"]));
        assert!(moved.iter().zip(&functions).all(|(a, b)| a.name != b.name));
        let mut changed = computed(vec!["id", "kind"]);
        changed.writes = vec![("k", "lower(NEW.kind)")];
        let changed = plan("t_v2", &changed);
        assert_ne!(changed[1].name, functions[1].name);
        assert_eq!(changed[0].name, functions[0].name);
        assert_eq!(
            marker("public", "t_v2"),
            "Managed by viewgate: part of the mapping of view \"public\".\"t_v2\":"
        );
        assert!(marker("public", "t_v2").starts_with(MARKER_PREFIX));
    }
}
