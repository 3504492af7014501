//! A migration's own definitions, made for the checks that need them. Everything a migration
//! is checked for happens before any change: the types its columns take, what its `up` and
//! `down` read. A type, sequence or function that the file's own `raw_sql` makes earlier in
//! the expand (`CREATE TYPE status AS ENUM …` before an `alter_column` to it; the sequence a
//! new column's default numbers by) did not exist yet when the checks ran, and the file was
//! refused (`type "status" is not a type name`, `relation "…_seq" does not exist`), though
//! its expand would have made them first. So each `raw_sql` run in the expand whose every
//! statement only defines something (a type, domain, sequence, function, cast, extension, an
//! empty schema) is run in a savepoint before the checks and undone after them; the expand
//! then runs it for real, in the file's order. A `raw_sql` that does more (an `UPDATE`, a
//! table's DDL) is not run early: it could take locks or be slow, twice.

use pg_query::NodeEnum;
use tokio_postgres::GenericClient;

use super::error::MigrateError;
use super::file::Migration;
use super::operation::Operation;
use crate::net::postgres_error::describe_postgres_error;

/// The savepoint the definitions are made under for the checks.
const SAVEPOINT: &str = "viewgate_migration_definitions";

/// Makes, in a savepoint of `client`'s transaction, the definitions of `migration`'s expand
/// (see the module's doc); whether there were any, for [`undo`].
pub async fn make(
    client: &impl GenericClient,
    migration: &Migration,
) -> Result<bool, MigrateError> {
    let definitions = of(migration);
    if definitions.is_empty() {
        return Ok(false);
    }
    savepoint(client, &format!("SAVEPOINT {SAVEPOINT}")).await?;
    for (index, sql) in definitions {
        client
            .batch_execute(sql)
            .await
            .map_err(|error| MigrateError::Refused {
                version: migration.version.clone(),
                operation: format!("operation {} (raw_sql)", index + 1),
                problem: format!(
                    "its definitions, made before the checks of the operations that use them, failed: {}",
                    describe_postgres_error(&error)
                ),
            })?;
    }
    Ok(true)
}

/// Undoes what [`make`] made (also after a failed check: a savepoint can be rolled back to
/// in an aborted transaction).
pub async fn undo(client: &impl GenericClient) -> Result<(), MigrateError> {
    savepoint(
        client,
        &format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}"),
    )
    .await
}

async fn savepoint(client: &impl GenericClient, sql: &str) -> Result<(), MigrateError> {
    client.batch_execute(sql).await.map_err(|error| {
        MigrateError::Control(crate::control::error::ControlError::database(
            "making the migration's definitions for its checks",
            &error,
        ))
    })
}

/// Whether `migration` has definitions for [`make`] to make.
pub fn any(migration: &Migration) -> bool {
    !of(migration).is_empty()
}

/// The `raw_sql` of `migration`'s expand that only defines things: (operation index, SQL).
fn of(migration: &Migration) -> Vec<(usize, &str)> {
    migration
        .operations
        .iter()
        .enumerate()
        .filter_map(|(index, operation)| match operation {
            Operation::RawSql(raw) if !raw.on_complete && defines_only(&raw.up) => {
                Some((index, raw.up.as_str()))
            }
            _ => None,
        })
        .collect()
}

/// Whether every statement of `sql` only defines something, as Postgres's parser reads it.
fn defines_only(sql: &str) -> bool {
    let Ok(parsed) = pg_query::parse(sql) else {
        return false;
    };
    let statements = &parsed.protobuf.stmts;
    !statements.is_empty()
        && statements.iter().all(|raw| {
            let node = raw.stmt.as_ref().and_then(|stmt| stmt.node.as_ref());
            match node {
                Some(
                    NodeEnum::CreateEnumStmt(_)
                    | NodeEnum::CompositeTypeStmt(_)
                    | NodeEnum::CreateRangeStmt(_)
                    | NodeEnum::CreateDomainStmt(_)
                    | NodeEnum::DefineStmt(_)
                    | NodeEnum::CreateSeqStmt(_)
                    | NodeEnum::CreateFunctionStmt(_)
                    | NodeEnum::CreateCastStmt(_)
                    | NodeEnum::CreateExtensionStmt(_),
                ) => true,
                Some(NodeEnum::CreateSchemaStmt(schema)) => schema.schema_elts.is_empty(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_statements_that_define_are_made_early() {
        for sql in [
            "CREATE TYPE status AS ENUM ('new', 'done')",
            "CREATE TYPE pair AS (a int, b int); CREATE DOMAIN short AS varchar(10)",
            "CREATE SEQUENCE models_ticket_seq",
            "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x'",
            "CREATE EXTENSION IF NOT EXISTS citext",
            "CREATE SCHEMA util",
        ] {
            assert!(defines_only(sql), "{sql}");
        }
        for sql in [
            "",
            "CREATE TYPE status AS ENUM ('new'); UPDATE models SET size = 0",
            "ALTER TABLE models ADD COLUMN x int",
            "CREATE SCHEMA util CREATE TABLE t (a int)",
            "CREATE TABLE lookup (id int)",
            "not sql at all",
        ] {
            assert!(!defines_only(sql), "{sql}");
        }
    }
}
