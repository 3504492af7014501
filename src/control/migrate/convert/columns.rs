//! A column as SQL declares it (`name type NOT NULL DEFAULT … REFERENCES …`), as a migration
//! file's column: what `add_column` and `create_table` take. What a file's column cannot say
//! (an identity, a generated column, a collation, a constraint's own name) is left out and
//! said in a note, never dropped silently.

use pg_query::NodeEnum;
use pg_query::protobuf::{ColumnDef, ConstrType, Constraint};

use super::ConvertError;
use super::sql_text;
use crate::control::migrate::operation::{ColumnDefinition, ForeignKey, ReferentialAction};

/// A column, with what the conversion could not carry over.
pub struct Converted {
    pub column: ColumnDefinition,
    pub notes: Vec<String>,
}

/// `definition` as a migration file's column.
pub fn column(definition: &ColumnDef) -> Result<Converted, ConvertError> {
    let sql_type = match &definition.type_name {
        Some(type_name) => sql_text::type_name(type_name)?,
        None => return Err(ConvertError::Unsupported("a column without a type".into())),
    };
    let mut column = ColumnDefinition {
        name: definition.colname.clone(),
        sql_type,
        nullable: !definition.is_not_null,
        default: None,
        unique: false,
        primary_key: false,
        check: None,
        references: None,
    };
    let mut notes = Vec::new();
    if definition.coll_clause.is_some() {
        notes.push(format!(
            "column {:?}: its COLLATE clause is left out (a file's column has no collation: add it with raw_sql)",
            column.name
        ));
    }
    let mut checks = Vec::new();
    for constraint in constraints(&definition.constraints) {
        match ConstrType::try_from(constraint.contype) {
            Ok(ConstrType::ConstrNotnull) => column.nullable = false,
            Ok(ConstrType::ConstrNull) => column.nullable = true,
            Ok(ConstrType::ConstrDefault) => {
                if let Some(expression) = &constraint.raw_expr {
                    column.default = Some(sql_text::expression(expression)?);
                }
            }
            Ok(ConstrType::ConstrPrimary) => {
                column.primary_key = true;
                column.nullable = false;
            }
            Ok(ConstrType::ConstrUnique) => column.unique = true,
            Ok(ConstrType::ConstrCheck) => {
                if let Some(expression) = &constraint.raw_expr {
                    checks.push(sql_text::expression(expression)?);
                }
            }
            Ok(ConstrType::ConstrForeign) => {
                let (reference, note) = foreign_key(constraint, &column.name);
                column.references = reference;
                notes.extend(note);
            }
            Ok(ConstrType::ConstrIdentity | ConstrType::ConstrGenerated) => notes.push(format!(
                "column {:?}: GENERATED … AS IDENTITY or … STORED is left out (a file's column has neither: use a default, e.g. nextval of a sequence a raw_sql makes)",
                column.name
            )),
            // DEFERRABLE and the like qualify the constraint before them.
            _ => {}
        }
        if !constraint.conname.is_empty() {
            notes.push(format!(
                "column {:?}: constraint name {:?} is left out (a column's constraints are named by Postgres; name one with add_constraint)",
                column.name, constraint.conname
            ));
        }
    }
    column.check = match checks.len() {
        0 => None,
        1 => checks.pop(),
        _ => Some(
            checks
                .iter()
                .map(|check| format!("({check})"))
                .collect::<Vec<_>>()
                .join(" AND "),
        ),
    };
    Ok(Converted { column, notes })
}

/// The constraints among `nodes`.
fn constraints(nodes: &[pg_query::protobuf::Node]) -> impl Iterator<Item = &Constraint> {
    nodes.iter().filter_map(|node| match &node.node {
        Some(NodeEnum::Constraint(constraint)) => Some(constraint.as_ref()),
        _ => None,
    })
}

/// A column's `REFERENCES t (c) ON DELETE …`; a reference without its column is left out, with
/// a note (the file names the referenced column).
fn foreign_key(constraint: &Constraint, column: &str) -> (Option<ForeignKey>, Option<String>) {
    let Some(table) = &constraint.pktable else {
        return (None, None);
    };
    let referenced = sql_text::name_parts(&constraint.pk_attrs);
    let [referenced] = referenced.as_slice() else {
        return (
            None,
            Some(format!(
                "column {column:?}: REFERENCES {} names no single column: the reference is left out (name the referenced column, e.g. references = {{ table = {:?}, column = \"id\" }})",
                table.relname, table.relname
            )),
        );
    };
    let reference = ForeignKey {
        table: table.relname.clone(),
        schema: (!table.schemaname.is_empty()).then(|| table.schemaname.clone()),
        column: referenced.clone(),
        on_delete: referential_action(&constraint.fk_del_action),
    };
    (Some(reference), None)
}

/// libpg_query's action letter (`FKCONSTR_ACTION_*`); NO ACTION, the default, is left unsaid.
pub fn referential_action(letter: &str) -> Option<ReferentialAction> {
    match letter {
        "r" => Some(ReferentialAction::Restrict),
        "c" => Some(ReferentialAction::Cascade),
        "n" => Some(ReferentialAction::SetNull),
        "d" => Some(ReferentialAction::SetDefault),
        _ => None,
    }
}
