//! SQL text back from libpg_query's tree: an expression (a default, a check, a `USING`, an
//! index's predicate) and a type name, as a migration file writes them.
//!
//! libpg_query deparses whole statements only, and it aborts on a tree it does not expect, so
//! a fragment is never handed to it alone: it is put in place of the expression (or the type)
//! of a statement libpg_query itself parsed (`SELECT 1`, `SELECT NULL::integer`), whose other
//! fields are then as its deparser expects, and the statement's fixed prefix is taken off.

use pg_query::NodeEnum;
use pg_query::protobuf::{Node, TypeName};

use super::ConvertError;

/// The statement an expression is deparsed in; its target is replaced.
const EXPRESSION_HOLDER: &str = "SELECT 1";
const EXPRESSION_PREFIX: &str = "SELECT ";
/// The statement a type name is deparsed in; its cast's type is replaced.
const TYPE_HOLDER: &str = "SELECT NULL::integer";
const TYPE_PREFIX: &str = "SELECT NULL::";

/// `expression` as SQL text.
pub fn expression(expression: &Node) -> Result<String, ConvertError> {
    let mut holder = parsed(EXPRESSION_HOLDER)?;
    let target = select_target(&mut holder)?;
    target.val = Some(Box::new(expression.clone()));
    deparsed(&holder, EXPRESSION_PREFIX)
}

/// `type_name` as SQL text (`varchar(50)`, `numeric(10,2)[]`, `timestamptz`).
pub fn type_name(type_name: &TypeName) -> Result<String, ConvertError> {
    let mut holder = parsed(TYPE_HOLDER)?;
    let target = select_target(&mut holder)?;
    let Some(NodeEnum::TypeCast(cast)) = target.val.as_mut().and_then(|val| val.node.as_mut())
    else {
        return Err(ConvertError::Deparse(
            "the type holder is not a cast".into(),
        ));
    };
    cast.type_name = Some(type_name.clone());
    deparsed(&holder, TYPE_PREFIX)
}

/// The parts of a dotted name libpg_query gives as a list of strings (`public.models` →
/// `["public", "models"]`).
pub fn name_parts(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|node| match &node.node {
            Some(NodeEnum::String(part)) => Some(part.sval.clone()),
            _ => None,
        })
        .collect()
}

fn parsed(sql: &str) -> Result<pg_query::protobuf::ParseResult, ConvertError> {
    pg_query::parse(sql)
        .map(|parsed| parsed.protobuf)
        .map_err(|error| ConvertError::Deparse(error.to_string()))
}

/// The first target of the holder's SELECT.
fn select_target(
    holder: &mut pg_query::protobuf::ParseResult,
) -> Result<&mut pg_query::protobuf::ResTarget, ConvertError> {
    let statement = holder
        .stmts
        .first_mut()
        .and_then(|raw| raw.stmt.as_mut())
        .and_then(|stmt| stmt.node.as_mut());
    let Some(NodeEnum::SelectStmt(select)) = statement else {
        return Err(ConvertError::Deparse("the holder is not a SELECT".into()));
    };
    match select
        .target_list
        .first_mut()
        .and_then(|target| target.node.as_mut())
    {
        Some(NodeEnum::ResTarget(target)) => Ok(target),
        _ => Err(ConvertError::Deparse("the holder has no target".into())),
    }
}

fn deparsed(
    holder: &pg_query::protobuf::ParseResult,
    prefix: &str,
) -> Result<String, ConvertError> {
    let text =
        pg_query::deparse(holder).map_err(|error| ConvertError::Deparse(error.to_string()))?;
    text.strip_prefix(prefix)
        .map(str::to_owned)
        .ok_or_else(|| ConvertError::Deparse(format!("unexpected deparse: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first column of a `CREATE TABLE`.
    fn first_column(sql: &str) -> pg_query::protobuf::ColumnDef {
        let parsed = pg_query::parse(sql).unwrap().protobuf;
        let Some(NodeEnum::CreateStmt(create)) = parsed.stmts[0]
            .stmt
            .as_ref()
            .and_then(|stmt| stmt.node.clone())
        else {
            panic!("not a CREATE TABLE");
        };
        match create.table_elts[0].node.clone() {
            Some(NodeEnum::ColumnDef(column)) => *column,
            _ => panic!("no column"),
        }
    }

    #[test]
    fn types_and_defaults_come_back_as_sql() {
        for (sql, expected_type, expected_default) in [
            (
                "CREATE TABLE t (a varchar(50) DEFAULT 'x')",
                "varchar(50)",
                "'x'",
            ),
            (
                "CREATE TABLE t (a numeric(10, 2)[] DEFAULT '{}')",
                "numeric(10, 2)[]",
                "'{}'",
            ),
            (
                "CREATE TABLE t (a timestamp with time zone DEFAULT now())",
                "timestamp with time zone",
                "now()",
            ),
            (
                "CREATE TABLE t (a integer DEFAULT (1 + 2) * 3)",
                "int",
                "(1 + 2) * 3",
            ),
        ] {
            let column = first_column(sql);
            assert_eq!(
                type_name(column.type_name.as_ref().unwrap()).unwrap(),
                expected_type
            );
            let default = column
                .constraints
                .iter()
                .find_map(|constraint| match &constraint.node {
                    Some(NodeEnum::Constraint(constraint)) => constraint.raw_expr.clone(),
                    _ => None,
                })
                .unwrap();
            assert_eq!(expression(&default).unwrap(), expected_default, "{sql}");
        }
    }
}
