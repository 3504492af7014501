//! The type names a reference can hide in: a row type written as a plain or array type
//! (`t`, `t[]`), and the object-identifier types whose literals name a relation (`'t'::regclass`,
//! and `'t'::regtype`, a table's row type having the table's name).

use sqlparser::ast::{ArrayElemTypeDef, DataType, ObjectName};

use crate::rewriter::identifier::fold_identifier;

/// `regclass`, or `regtype` (psycopg2's `register_composite` reads a table's row type so),
/// `pg_catalog.` qualified or not.
pub(super) fn is_relation_type(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Regclass) || object_identifier_type(data_type).is_some()
}

/// Whether `data_type`, a relation type, is `regtype`: what a missing name is then is a type.
pub(super) fn names_a_type(data_type: &DataType) -> bool {
    object_identifier_type(data_type) == Some("regtype")
}

/// `regtype`, or `regclass` and `regtype` qualified with `pg_catalog` (sqlparser reads these
/// as custom types), by the name.
fn object_identifier_type(data_type: &DataType) -> Option<&'static str> {
    let DataType::Custom(name, modifiers) = data_type else {
        return None;
    };
    if !modifiers.is_empty() {
        return None;
    }
    let folded: Vec<String> = (name.0.iter())
        .filter_map(|part| part.as_ident())
        .map(|ident| fold_identifier(&ident.value, ident.quote_style.is_some()))
        .collect();
    match folded
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["regtype"] | ["pg_catalog", "regtype"] => Some("regtype"),
        ["pg_catalog", "regclass"] => Some("regclass"),
        _ => None,
    }
}

/// The name a type written as a plain or array type (`t`, `t[]`, `s.t[][]`) gives, if it is
/// not one of sqlparser's built-in types.
pub(super) fn row_type_name(data_type: &DataType) -> Option<&ObjectName> {
    match data_type {
        DataType::Custom(name, modifiers) if modifiers.is_empty() => Some(name),
        DataType::Array(
            ArrayElemTypeDef::SquareBracket(inner, _) | ArrayElemTypeDef::AngleBracket(inner),
        ) => row_type_name(inner),
        _ => None,
    }
}
