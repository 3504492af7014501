//! Extended statistics (`CREATE STATISTICS`) over a replaced column, made again over its
//! replacement. The contract's `DROP COLUMN` drops an object left with one column and takes
//! the column out of a wider one: the planner's estimates for correlated columns, which an
//! operator made on purpose, quietly went. Each object is read before the contract's steps,
//! its columns by attribute number (the replacement's in place of the old column's, so that the
//! contract's renames change nothing), and made again after them under its own name, owner,
//! comment and statistics target; `ANALYZE` fills it once the contract has committed (a new
//! object has no data until then).

use tokio_postgres::GenericClient;

use super::super::derive::{MigrationPlan, over_physical, translatable};
use super::super::error::MigrateError;
use super::{TABLE_AND_PARTITIONS, replacements};
use crate::control::error::ControlError;
use crate::control::quote::{quote_ident, quote_literal, quote_qualified};

/// An extended statistics object over a replaced column, as it was before the contract.
#[derive(Debug)]
pub struct HeldStatistics {
    relation: u32,
    schema: String,
    name: String,
    owner: String,
    /// Whether the migration's role owns it (otherwise the remade object is given back).
    owned: bool,
    comment: Option<String>,
    /// `stxkind`: `d`, `f`, `m` (and `e` where it has expressions).
    kinds: Vec<String>,
    /// Its columns' attribute numbers, the replacement's in place of the old column's.
    columns: Vec<i16>,
    /// Its expressions as Postgres writes them out (naming columns as they were named then).
    expressions: Vec<String>,
    /// Each column of its table by the name the expressions know it by, and the number of
    /// the column that name stands for after the contract.
    names: Vec<(String, i16)>,
    /// -1 for the default.
    target: i32,
}

/// The extended statistics over the columns `plan` replaces, read before the contract's steps.
pub async fn held_statistics(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<Vec<HeldStatistics>, MigrateError> {
    let mut held = Vec::new();
    for (old, _) in replacements(plan) {
        let rows = client
            .query(
                &format!(
                    "SELECT s.stxrelid, n.nspname, s.stxname, o.rolname, o.rolname = current_user,
                        pg_catalog.obj_description(s.oid, 'pg_statistic_ext'),
                        s.stxkind::text[], s.stxkeys::int2[],
                        pg_catalog.pg_get_statisticsobjdef_expressions(s.oid),
                        COALESCE(s.stxstattarget::integer, -1)
                   FROM {TABLE_AND_PARTITIONS} tree
                   JOIN pg_catalog.pg_statistic_ext s ON s.stxrelid = tree.relid
                   JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
                   JOIN pg_catalog.pg_roles o ON o.oid = s.stxowner
                   JOIN pg_catalog.pg_attribute old ON old.attrelid = s.stxrelid AND old.attname = $3
                  WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                 WHERE d.classid = 'pg_catalog.pg_statistic_ext'::regclass
                                   AND d.objid = s.oid AND d.refobjid = s.stxrelid
                                   AND d.refobjsubid = old.attnum)
                  ORDER BY n.nspname, s.stxname"
                ),
                &[&old.schema, &old.table, &old.column],
            )
            .await
            .map_err(|error| {
                MigrateError::Control(ControlError::database(
                    format!(
                        "reading the extended statistics over {}.{}.{}",
                        old.schema, old.table, old.column
                    ),
                    &error,
                ))
            })?;
        for row in rows {
            let name: String = row.get(2);
            let schema: String = row.get(1);
            // An object over two replaced columns is read once for each.
            if held
                .iter()
                .any(|other: &HeldStatistics| other.schema == schema && other.name == name)
            {
                continue;
            }
            held.push(HeldStatistics {
                relation: row.get(0),
                schema,
                name,
                owner: row.get(3),
                owned: row.get(4),
                comment: row.get(5),
                kinds: row.get(6),
                columns: row.get::<_, Option<Vec<i16>>>(7).unwrap_or_default(),
                expressions: row.get::<_, Option<Vec<String>>>(8).unwrap_or_default(),
                target: row.get(9),
                names: Vec::new(),
            });
        }
    }
    // Each replaced column's number becomes its replacement's.
    for object in &mut held {
        let rows = client
            .query(
                "SELECT a.attname::text, a.attnum FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped",
                &[&object.relation],
            )
            .await
            .map_err(|error| {
                MigrateError::Control(ControlError::database(
                    format!("reading the columns under statistics {}", object.name),
                    &error,
                ))
            })?;
        let mut names: Vec<(String, i16)> =
            rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        for (old, replacement) in replacements(plan) {
            let number = |name: &str| {
                names
                    .iter()
                    .find(|(column, _)| column == name)
                    .map(|(_, number)| *number)
            };
            let (Some(from), Some(to)) = (number(&old.column), number(&replacement.column)) else {
                continue;
            };
            for column in &mut object.columns {
                if *column == from {
                    *column = to;
                }
            }
            for (_, number) in names.iter_mut().filter(|(column, _)| *column == old.column) {
                *number = to;
            }
        }
        object.names = names;
    }
    Ok(held)
}

/// Makes each held object again after the contract's steps, as one savepoint each: one that
/// cannot be made (an expression naming a column the contract renamed) is left out, logged,
/// rather than failing the contract. Returns the relations to `ANALYZE` once it commits.
pub async fn remake_statistics(
    transaction: &mut tokio_postgres::Transaction<'_>,
    held: &[HeldStatistics],
) -> Result<Vec<String>, MigrateError> {
    let mut analyze = Vec::new();
    for object in held {
        let qualified = quote_qualified(&object.schema, &object.name);
        let Some(statements) = remake_sql(&*transaction, object).await? else {
            tracing::warn!(
                "extended statistics {qualified} named a column the migration dropped and went with it"
            );
            continue;
        };
        let savepoint = transaction
            .savepoint("viewgate_remake_statistics")
            .await
            .map_err(|error| {
                MigrateError::Control(ControlError::database("starting a savepoint", &error))
            })?;
        match savepoint.batch_execute(&statements.sql).await {
            Ok(()) => {
                savepoint.commit().await.map_err(|error| {
                    MigrateError::Control(ControlError::database("releasing a savepoint", &error))
                })?;
                if !analyze.contains(&statements.relation) {
                    analyze.push(statements.relation);
                }
            }
            Err(error) => {
                tracing::warn!(
                    "extended statistics {qualified} could not be made again over the new column, and went with the old one ({error}); make it again by hand: {}",
                    statements.sql
                );
                savepoint.rollback().await.map_err(|error| {
                    MigrateError::Control(ControlError::database(
                        "rolling back to a savepoint",
                        &error,
                    ))
                })?;
            }
        }
    }
    Ok(analyze)
}

/// The statements that make `object` again, and its relation; none once a column it named is
/// gone (dropped by the migration: Postgres would have dropped the object with it).
struct Remake {
    sql: String,
    relation: String,
}

async fn remake_sql(
    client: &impl GenericClient,
    object: &HeldStatistics,
) -> Result<Option<Remake>, MigrateError> {
    let row = client
        .query_one(
            "SELECT n.nspname, c.relname,
                    (SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.position)
                       FROM pg_catalog.unnest($2::int2[]) WITH ORDINALITY k(attnum, position)
                       JOIN pg_catalog.pg_attribute a
                         ON a.attrelid = c.oid AND a.attnum = k.attnum AND NOT a.attisdropped)
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = $1",
            &[&object.relation, &object.columns],
        )
        .await
        .map_err(|error| {
            MigrateError::Control(ControlError::database(
                "reading a table's columns after the contract",
                &error,
            ))
        })?;
    let relation = quote_qualified(row.get(0), row.get(1));
    let names: Vec<String> = row.get::<_, Option<Vec<String>>>(2).unwrap_or_default();
    if names.len() != object.columns.len() {
        return Ok(None);
    }
    let numbers: Vec<i16> = object.names.iter().map(|(_, number)| *number).collect();
    let now: Vec<(i16, String)> = client
        .query(
            "SELECT a.attnum, a.attname::text FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = $1 AND a.attnum = ANY($2) AND NOT a.attisdropped",
            &[&object.relation, &numbers],
        )
        .await
        .map_err(|error| {
            MigrateError::Control(ControlError::database(
                "reading a table's columns after the contract",
                &error,
            ))
        })?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let renamed: Vec<(String, String)> = object
        .names
        .iter()
        .filter_map(|(before, number)| {
            let (_, after) = now.iter().find(|(now_number, _)| now_number == number)?;
            (before != after).then(|| (before.clone(), after.clone()))
        })
        .collect();
    Ok(Some(Remake {
        sql: object.statements(&relation, &names, &renamed),
        relation,
    }))
}

impl HeldStatistics {
    /// The statements that make this object again on `relation`, over the columns now named
    /// `names`, its expressions naming each column as `renamed` (before, after) says.
    fn statements(&self, relation: &str, names: &[String], renamed: &[(String, String)]) -> String {
        let qualified = quote_qualified(&self.schema, &self.name);
        let items: Vec<String> = names
            .iter()
            .map(|name| quote_ident(name))
            .chain(self.expressions.iter().map(|expression| {
                if translatable(expression) {
                    format!("({})", over_physical(expression, renamed))
                } else {
                    format!("({expression})")
                }
            }))
            .collect();
        // One expression alone takes no kinds; otherwise the kinds it had, in Postgres's words.
        let kinds: Vec<&str> = self
            .kinds
            .iter()
            .filter_map(|kind| match kind.as_str() {
                "d" => Some("ndistinct"),
                "f" => Some("dependencies"),
                "m" => Some("mcv"),
                _ => None,
            })
            .collect();
        let kinds = if items.len() < 2 || kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        };
        let mut sql = format!(
            "DROP STATISTICS IF EXISTS {qualified};\nCREATE STATISTICS {qualified}{kinds} ON {} FROM {relation}",
            items.join(", "),
        );
        if !self.owned {
            sql.push_str(&format!(
                ";\nALTER STATISTICS {qualified} OWNER TO {}",
                quote_ident(&self.owner)
            ));
        }
        if self.target >= 0 {
            sql.push_str(&format!(
                ";\nALTER STATISTICS {qualified} SET STATISTICS {}",
                self.target
            ));
        }
        if let Some(comment) = &self.comment {
            sql.push_str(&format!(
                ";\nCOMMENT ON STATISTICS {qualified} IS {}",
                quote_literal(comment)
            ));
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(kinds: &[&str], expressions: &[&str]) -> HeldStatistics {
        HeldStatistics {
            relation: 1,
            schema: "public".into(),
            name: "models_name\"note".into(),
            owner: "app owner".into(),
            owned: false,
            comment: Some("correlated; don't drop".into()),
            kinds: kinds.iter().map(|kind| (*kind).to_owned()).collect(),
            columns: vec![2, 5],
            expressions: expressions.iter().map(|e| (*e).to_owned()).collect(),
            target: 300,
            names: Vec::new(),
        }
    }

    #[test]
    fn an_object_is_made_again_with_its_kinds_owner_target_and_comment() {
        let sql = held(&["d", "f"], &[]).statements(
            "\"public\".\"models\"",
            &["name".to_owned(), "legacy_note".to_owned()],
            &[],
        );
        assert_eq!(
            sql,
            "DROP STATISTICS IF EXISTS \"public\".\"models_name\"\"note\";\n\
             CREATE STATISTICS \"public\".\"models_name\"\"note\" (ndistinct, dependencies) ON \"name\", \"legacy_note\" FROM \"public\".\"models\";\n\
             ALTER STATISTICS \"public\".\"models_name\"\"note\" OWNER TO \"app owner\";\n\
             ALTER STATISTICS \"public\".\"models_name\"\"note\" SET STATISTICS 300;\n\
             COMMENT ON STATISTICS \"public\".\"models_name\"\"note\" IS 'correlated; don''t drop'"
        );
    }

    #[test]
    fn a_single_expression_takes_no_kinds() {
        let mut object = held(&["e"], &["lower(legacy_note)"]);
        object.columns.clear();
        object.comment = None;
        object.target = -1;
        assert_eq!(
            object.statements("t", &[], &[("legacy_note".to_owned(), "note".to_owned())]),
            "DROP STATISTICS IF EXISTS \"public\".\"models_name\"\"note\";\n\
             CREATE STATISTICS \"public\".\"models_name\"\"note\" ON (lower(\"note\")) FROM t;\n\
             ALTER STATISTICS \"public\".\"models_name\"\"note\" OWNER TO \"app owner\""
        );
    }
}
