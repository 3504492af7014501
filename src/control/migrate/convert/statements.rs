//! One SQL statement of an ORM's migration as migration-file operations: the DDL viewgate has
//! an operation for becomes that operation (each sub-command of an `ALTER TABLE` its own); the
//! rest becomes `raw_sql` with the statement's own text, and a note says so. Transaction
//! control and `SET` are dropped (a migration runs its phases in transactions of its own).

use pg_query::NodeEnum;
use pg_query::protobuf::{
    AlterTableCmd, AlterTableType, ConstrType, Constraint, CreateStmt, DropStmt, IndexStmt,
    ObjectType, RangeVar, RenameStmt,
};

use super::columns::{self, referential_action};
use super::sql_text;
use super::{ConvertError, Converted};
use crate::control::migrate::operation::{
    AddColumn, AddConstraint, AlterColumn, ConstraintKind, CreateIndex, CreateTable, DropColumn,
    DropConstraint, DropIndex, DropTable, MultiColumnReference, Operation, RawSql, RenameColumn,
    RenameConstraint, RenameTable,
};

/// The index access method Postgres uses when a statement names none.
const DEFAULT_INDEX_METHOD: &str = "btree";

/// Appends `statement` (whose text is `text`) to `out` as operations.
pub fn convert(statement: &NodeEnum, text: &str, out: &mut Converted) -> Result<(), ConvertError> {
    match statement {
        // A migration runs its phases in transactions of its own; a SET would apply only to
        // the ORM's session.
        NodeEnum::TransactionStmt(_) | NodeEnum::VariableSetStmt(_) => Ok(()),
        NodeEnum::CreateStmt(create) if plain_table(create) => create_table(create, out),
        NodeEnum::AlterTableStmt(alter)
            if ObjectType::try_from(alter.objtype) == Ok(ObjectType::ObjectTable) =>
        {
            let table = table_name(alter.relation.as_ref(), out);
            for command in &alter.cmds {
                match &command.node {
                    Some(NodeEnum::AlterTableCmd(command)) => {
                        alter_table(&table, command, text, out)?;
                    }
                    _ => raw_sql(text, "an ALTER TABLE sub-command it could not read", out),
                }
            }
            Ok(())
        }
        NodeEnum::RenameStmt(rename) => {
            rename_statement(rename, text, out);
            Ok(())
        }
        NodeEnum::IndexStmt(index) => create_index(index, text, out),
        NodeEnum::DropStmt(drop) => {
            drop_statement(drop, text, out);
            Ok(())
        }
        _ => {
            raw_sql(text, "no operation of its own", out);
            Ok(())
        }
    }
}

/// A table `create_table` makes: not a partition, a child, a typed table or a temporary one.
fn plain_table(create: &CreateStmt) -> bool {
    create.inh_relations.is_empty()
        && create.partbound.is_none()
        && create.partspec.is_none()
        && create.of_typename.is_none()
        && create
            .relation
            .as_ref()
            .is_some_and(|relation| relation.relpersistence == "p")
}

/// The table a statement names, as a file names it: the version's name, without its schema
/// (a note says when a schema other than `public` was dropped).
fn table_name(relation: Option<&RangeVar>, out: &mut Converted) -> String {
    let Some(relation) = relation else {
        return String::new();
    };
    if !relation.schemaname.is_empty() && relation.schemaname != "public" {
        out.note(format!(
            "table {}.{}: a migration file names a version's tables without their schema",
            relation.schemaname, relation.relname
        ));
    }
    relation.relname.clone()
}

fn create_table(create: &CreateStmt, out: &mut Converted) -> Result<(), ConvertError> {
    let relation = create.relation.as_ref();
    let table = table_name(relation, out);
    let mut columns = Vec::new();
    let mut table_constraints = Vec::new();
    for element in &create.table_elts {
        match &element.node {
            Some(NodeEnum::ColumnDef(definition)) => {
                let converted = columns::column(definition)?;
                for note in converted.notes {
                    out.note(format!("create_table {table}: {note}"));
                }
                columns.push(converted.column);
            }
            Some(NodeEnum::Constraint(constraint)) => table_constraints.push(constraint.as_ref()),
            _ => {}
        }
    }
    let mut later = Vec::new();
    for constraint in table_constraints {
        if ConstrType::try_from(constraint.contype) == Ok(ConstrType::ConstrPrimary) {
            let keys = sql_text::name_parts(&constraint.keys);
            for column in columns
                .iter_mut()
                .filter(|column| keys.contains(&column.name))
            {
                column.primary_key = true;
                column.nullable = false;
            }
        } else {
            later.push(constraint);
        }
    }
    out.push(Operation::CreateTable(CreateTable {
        schema: relation
            .filter(|relation| !relation.schemaname.is_empty())
            .map(|relation| relation.schemaname.clone()),
        table: table.clone(),
        columns,
    }));
    for constraint in later {
        add_constraint(&table, constraint, out)?;
    }
    Ok(())
}

fn alter_table(
    table: &str,
    command: &AlterTableCmd,
    text: &str,
    out: &mut Converted,
) -> Result<(), ConvertError> {
    let column = command.name.clone();
    // `note` says what the operation still needs, unless the change folds into a column this
    // conversion adds, whose operation then carries it.
    let alter = |out: &mut Converted, note: Option<String>, change: &dyn Fn(&mut AlterColumn)| {
        let mut alter = AlterColumn {
            table: table.to_owned(),
            column: column.clone(),
            sql_type: None,
            nullable: None,
            default: None,
            drop_default: false,
            check: None,
            unique: None,
            references: None,
            rename_to: None,
            up: None,
            down: None,
        };
        change(&mut alter);
        if !fold_into_new_column(out, &alter) {
            if let Some(note) = note {
                out.note(note);
            }
            out.push(Operation::AlterColumn(alter));
        }
    };
    match AlterTableType::try_from(command.subtype) {
        Ok(AlterTableType::AtAddColumn) => {
            let Some(NodeEnum::ColumnDef(definition)) =
                command.def.as_ref().and_then(|def| def.node.as_ref())
            else {
                raw_sql(text, "an ADD COLUMN it could not read", out);
                return Ok(());
            };
            let converted = columns::column(definition)?;
            for note in converted.notes {
                out.note(format!("add_column {table}: {note}"));
            }
            let column = converted.column;
            if !column.nullable && column.default.is_none() {
                out.note(format!(
                    "add_column {table}.{}: NOT NULL without a default: write its `up`, the value for the existing rows and for the rows the older version writes (an expression over that version's columns)",
                    column.name
                ));
            }
            out.push(Operation::AddColumn(AddColumn {
                table: table.to_owned(),
                column,
                up: None,
            }));
        }
        Ok(AlterTableType::AtDropColumn) => {
            out.note(format!(
                "drop_column {table}.{column}: if the column is NOT NULL without a default, write its `down`, the value for the rows the new version writes while the older one lives"
            ));
            out.push(Operation::DropColumn(DropColumn {
                table: table.to_owned(),
                column,
                down: None,
            }));
        }
        Ok(AlterTableType::AtAlterColumnType) => {
            let Some(NodeEnum::ColumnDef(definition)) =
                command.def.as_ref().and_then(|def| def.node.as_ref())
            else {
                raw_sql(text, "an ALTER COLUMN TYPE it could not read", out);
                return Ok(());
            };
            let sql_type = match &definition.type_name {
                Some(type_name) => sql_text::type_name(type_name)?,
                None => {
                    return Err(ConvertError::Unsupported(
                        "a type change without a type".into(),
                    ));
                }
            };
            let up = definition
                .raw_default
                .as_deref()
                .map(sql_text::expression)
                .transpose()?;
            let note = format!(
                "alter_column {table}.{column}: the new version gets a column of its own; check `up` (default: the column cast to {sql_type}) and write `down` where the old type cannot take every new value by a cast"
            );
            alter(out, Some(note), &|alter| {
                alter.sql_type = Some(sql_type.clone());
                alter.up = up.clone();
            });
        }
        Ok(AlterTableType::AtSetNotNull) => {
            let note = format!(
                "alter_column {table}.{column}: SET NOT NULL needs `up`, the value for the rows where it is NULL (e.g. up = \"coalesce({column}, …)\")"
            );
            alter(out, Some(note), &|alter| alter.nullable = Some(false));
        }
        Ok(AlterTableType::AtDropNotNull) => alter(out, None, &|alter| alter.nullable = Some(true)),
        Ok(AlterTableType::AtColumnDefault) => {
            match command
                .def
                .as_deref()
                .map(sql_text::expression)
                .transpose()?
            {
                Some(default) => alter(out, None, &|alter| alter.default = Some(default.clone())),
                None => alter(out, None, &|alter| alter.drop_default = true),
            }
        }
        Ok(AlterTableType::AtAddConstraint) => {
            match command.def.as_ref().and_then(|def| def.node.as_ref()) {
                Some(NodeEnum::Constraint(constraint)) => add_constraint(table, constraint, out)?,
                _ => raw_sql(text, "an ADD CONSTRAINT it could not read", out),
            }
        }
        Ok(AlterTableType::AtDropConstraint) => {
            out.push(Operation::DropConstraint(DropConstraint {
                table: table.to_owned(),
                name: column,
            }))
        }
        _ => raw_sql(
            text,
            "an ALTER TABLE sub-command with no operation of its own",
            out,
        ),
    }
    Ok(())
}

/// Gives a column an earlier operation of this conversion adds (`add_column`, `create_table`)
/// what `alter` changes, as the file must (a migration's `alter_column` of a column it adds is
/// refused: the column has one shape). An ORM adds a NOT NULL column with a default only to
/// fill the existing rows, then drops the default (Django's one-off default): that default is
/// the column's `up`. Says whether it did.
fn fold_into_new_column(out: &mut Converted, alter: &AlterColumn) -> bool {
    let added = out
        .operations
        .iter_mut()
        .rev()
        .find_map(|operation| match operation {
            Operation::AddColumn(add)
                if add.table == alter.table && add.column.name == alter.column =>
            {
                Some((&mut add.column, Some(&mut add.up)))
            }
            Operation::CreateTable(create) if create.table == alter.table => create
                .columns
                .iter_mut()
                .find(|column| column.name == alter.column)
                .map(|column| (column, None)),
            _ => None,
        });
    let Some((column, up)) = added else {
        return false;
    };
    if let Some(sql_type) = &alter.sql_type {
        column.sql_type = sql_type.clone();
    }
    if let Some(nullable) = alter.nullable {
        column.nullable = nullable;
    }
    if let Some(default) = &alter.default {
        column.default = Some(default.clone());
    }
    if alter.drop_default {
        let default = column.default.take();
        if let Some(up) = up.filter(|up| up.is_none()) {
            *up = default;
        }
    }
    true
}

/// A table constraint: CHECK, UNIQUE and FOREIGN KEY are `add_constraint`s; others (a
/// primary key added to an existing table, an exclusion constraint) have no operation.
fn add_constraint(
    table: &str,
    constraint: &Constraint,
    out: &mut Converted,
) -> Result<(), ConvertError> {
    let columns = sql_text::name_parts(match ConstrType::try_from(constraint.contype) {
        Ok(ConstrType::ConstrForeign) => &constraint.fk_attrs,
        _ => &constraint.keys,
    });
    let (kind, check, references) = match ConstrType::try_from(constraint.contype) {
        Ok(ConstrType::ConstrCheck) => {
            let check = constraint
                .raw_expr
                .as_deref()
                .map(sql_text::expression)
                .transpose()?;
            (ConstraintKind::Check, check, None)
        }
        Ok(ConstrType::ConstrUnique) => (ConstraintKind::Unique, None, None),
        Ok(ConstrType::ConstrForeign) => {
            let Some(referenced) = &constraint.pktable else {
                return Ok(());
            };
            let reference = MultiColumnReference {
                table: referenced.relname.clone(),
                schema: (!referenced.schemaname.is_empty()).then(|| referenced.schemaname.clone()),
                columns: sql_text::name_parts(&constraint.pk_attrs),
                on_delete: referential_action(&constraint.fk_del_action),
            };
            (ConstraintKind::ForeignKey, None, Some(reference))
        }
        _ => {
            out.note(format!(
                "table {table}: a PRIMARY KEY, EXCLUDE or other constraint added to a table has no operation: make it with raw_sql (with a `down`), in a migration of its own"
            ));
            return Ok(());
        }
    };
    if constraint.deferrable {
        out.note(format!(
            "add_constraint {table}: DEFERRABLE is left out (add_constraint makes constraints checked at each statement)"
        ));
    }
    let name = if constraint.conname.is_empty() {
        let name = postgres_constraint_name(table, &columns, kind);
        out.note(format!(
            "add_constraint {table}: the constraint had no name; it is named {name:?}, as Postgres would name it"
        ));
        name
    } else {
        constraint.conname.clone()
    };
    out.push(Operation::AddConstraint(AddConstraint {
        table: table.to_owned(),
        name,
        columns,
        kind,
        check,
        references,
    }));
    Ok(())
}

/// The name Postgres gives an unnamed constraint (`models_name_key`, `models_owner_id_fkey`,
/// `models_check`), before it adds digits to make it unique.
fn postgres_constraint_name(table: &str, columns: &[String], kind: ConstraintKind) -> String {
    let suffix = match kind {
        ConstraintKind::Check => "check",
        ConstraintKind::Unique => "key",
        ConstraintKind::ForeignKey => "fkey",
    };
    let mut parts = vec![table.to_owned()];
    if kind != ConstraintKind::Check {
        parts.extend(columns.iter().cloned());
    }
    parts.push(suffix.to_owned());
    parts.join("_")
}

fn rename_statement(rename: &RenameStmt, text: &str, out: &mut Converted) {
    let table = table_name(rename.relation.as_ref(), out);
    match ObjectType::try_from(rename.rename_type) {
        Ok(ObjectType::ObjectColumn) => out.push(Operation::RenameColumn(RenameColumn {
            table,
            from: rename.subname.clone(),
            to: rename.newname.clone(),
        })),
        Ok(ObjectType::ObjectTable) => out.push(Operation::RenameTable(RenameTable {
            from: table,
            to: rename.newname.clone(),
        })),
        Ok(ObjectType::ObjectTabconstraint) => {
            out.push(Operation::RenameConstraint(RenameConstraint {
                table,
                from: rename.subname.clone(),
                to: rename.newname.clone(),
            }));
        }
        _ => raw_sql(text, "a rename with no operation of its own", out),
    }
}

fn create_index(index: &IndexStmt, text: &str, out: &mut Converted) -> Result<(), ConvertError> {
    let table = table_name(index.relation.as_ref(), out);
    let mut columns = Vec::new();
    for parameter in &index.index_params {
        match &parameter.node {
            Some(NodeEnum::IndexElem(element))
                if !element.name.is_empty()
                    && element.expr.is_none()
                    && element.opclass.is_empty()
                    && element.collation.is_empty()
                    && element.ordering == 1
                    && element.nulls_ordering == 1 =>
            {
                columns.push(element.name.clone());
            }
            _ => {
                raw_sql(
                    text,
                    "an index over an expression, or with an operator class, a collation or an order, which create_index cannot say",
                    out,
                );
                return Ok(());
            }
        }
    }
    if !index.index_including_params.is_empty() {
        raw_sql(
            text,
            "an index with INCLUDE columns, which create_index cannot say",
            out,
        );
        return Ok(());
    }
    let name = if index.idxname.is_empty() {
        let name = format!("{table}_{}_idx", columns.join("_"));
        out.note(format!(
            "create_index on {table}: the index had no name; it is named {name:?}, as Postgres would name it"
        ));
        name
    } else {
        index.idxname.clone()
    };
    let predicate = index
        .where_clause
        .as_deref()
        .map(sql_text::expression)
        .transpose()?;
    out.push(Operation::CreateIndex(CreateIndex {
        name,
        table,
        columns,
        unique: index.unique,
        method: (index.access_method != DEFAULT_INDEX_METHOD).then(|| index.access_method.clone()),
        predicate,
    }));
    Ok(())
}

fn drop_statement(drop: &DropStmt, text: &str, out: &mut Converted) {
    let kind = ObjectType::try_from(drop.remove_type);
    if !matches!(kind, Ok(ObjectType::ObjectTable | ObjectType::ObjectIndex)) {
        raw_sql(text, "no operation of its own", out);
        return;
    }
    for object in &drop.objects {
        let parts = match &object.node {
            Some(NodeEnum::List(list)) => sql_text::name_parts(&list.items),
            _ => Vec::new(),
        };
        let Some((name, schema)) = parts.split_last() else {
            continue;
        };
        let schema = schema.last().cloned();
        if kind == Ok(ObjectType::ObjectTable) {
            out.push(Operation::DropTable(DropTable {
                table: name.clone(),
            }));
        } else {
            out.push(Operation::DropIndex(DropIndex {
                name: name.clone(),
                schema,
            }));
        }
    }
}

/// `text` as a `raw_sql` operation, with a note saying why and what it still needs.
fn raw_sql(text: &str, why: &str, out: &mut Converted) {
    out.note(format!(
        "raw_sql ({why}): `{}`: it runs as written in the expand, where every version sees what it does; write its `down` so that a rollback undoes it",
        abbreviated(text)
    ));
    out.push(Operation::RawSql(RawSql {
        up: text.to_owned(),
        down: None,
        on_complete: false,
    }));
}

/// The first line of `text`, cut at [`NOTE_STATEMENT_CHARS`] characters.
fn abbreviated(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(NOTE_STATEMENT_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

/// How much of a statement a note shows.
const NOTE_STATEMENT_CHARS: usize = 80;
