//! What a replaced column carries besides its indexes and constraints: its storage and
//! compression, its comment, its column privileges, its statistics target and its attribute
//! options. The contract's `DROP COLUMN` takes all of them along, and the replacement had none:
//! a role granted `SELECT` on the column alone lost it (permission denied after the contract),
//! a tool reading the comment (PostGraphile's smart tags) saw the column change, the planner
//! lost the statistics target and the `n_distinct` an operator had set.
//!
//! Storage and compression decide how a value is written, so the expand gives them to the
//! replacement before the backfill writes a row. The rest is read in the contract's
//! transaction, as the old column has it then (an operator may change a comment or a grant
//! while the migration is live), and given to the replacement, in the table and in each of its
//! partitions, before the old column goes.

use tokio_postgres::GenericClient;

use super::super::derive::{MigrationPlan, Replaced, Replacement, Step};
use super::super::error::MigrateError;
use super::{TABLE_AND_PARTITIONS, replacements};
use crate::control::error::ControlError;
use crate::control::privilege::Privilege;
use crate::control::quote::{quote_ident, quote_literal, quote_qualified};

/// The attribute options Postgres has (`ALTER TABLE … ALTER COLUMN … SET (…)`); an option
/// outside them is not carried (none exists today).
const ATTRIBUTE_OPTIONS: [&str; 2] = ["n_distinct", "n_distinct_inherited"];

/// Adds to the expand the steps that give each replacement the storage and compression its old
/// column was given by hand, where the new type can be stored so (a `bigint` cannot be
/// `EXTERNAL`).
pub(super) async fn plan_storage(
    client: &impl GenericClient,
    plan: &mut MigrationPlan,
) -> Result<(), MigrateError> {
    let mut steps = Vec::new();
    for (old, replacement) in replacements(plan) {
        let row = client
            .query_opt(
                "SELECT CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END,
                        CASE a.attcompression WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' END,
                        (SELECT n.typstorage <> 'p' FROM pg_catalog.pg_type n
                          WHERE n.oid = pg_catalog.to_regtype($4))
                   FROM pg_catalog.pg_attribute a
                   JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                   JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace
                   JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                  WHERE s.nspname = $1 AND c.relname = $2 AND a.attname = $3
                    AND NOT a.attisdropped",
                &[&old.schema, &old.table, &old.column, &replacement.sql_type],
            )
            .await
            .map_err(|error| reading(old, "storage", &error))?;
        let Some(row) = row else { continue };
        let storage: Option<String> = row.get(0);
        let compression: Option<String> = row.get(1);
        // A type the migration itself makes is not there yet to ask; its own default stands.
        let toastable: Option<bool> = row.get(2);
        if toastable != Some(true) {
            continue;
        }
        let alter = format!(
            "ALTER TABLE {} ALTER COLUMN {}",
            quote_qualified(&old.schema, &old.table),
            quote_ident(&replacement.column)
        );
        if let Some(keyword) = storage.as_deref().and_then(storage_keyword) {
            steps.push(Step::new(
                format!("store the new {} as the old one is ({keyword})", old.column),
                format!("{alter} SET STORAGE {keyword}"),
            ));
        }
        if let Some(method) = compression {
            steps.push(Step::new(
                format!(
                    "compress the new {} as the old one is ({method})",
                    old.column
                ),
                format!("{alter} SET COMPRESSION {method}"),
            ));
        }
    }
    plan.expand.extend(steps);
    Ok(())
}

/// The `SET STORAGE` keyword of an `attstorage` code.
fn storage_keyword(code: &str) -> Option<&'static str> {
    match code {
        "p" => Some("PLAIN"),
        "e" => Some("EXTERNAL"),
        "m" => Some("MAIN"),
        "x" => Some("EXTENDED"),
        _ => None,
    }
}

/// The statements that give each replacement, in its table and every partition of it, the
/// comment, privileges, statistics target and options its old column has now. Run in the
/// contract's transaction before the old columns go.
pub async fn carried_settings(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<Vec<Step>, MigrateError> {
    let mut steps = Vec::new();
    for (old, replacement) in replacements(plan) {
        let rows = client
            .query(
                &format!(
                    "SELECT rs.nspname, r.relname,
                        pg_catalog.col_description(r.oid, a.attnum),
                        privileges.kinds, privileges.grantees, privileges.grantable,
                        COALESCE(a.attstattarget::integer, -1),
                        a.attoptions::text[]
                   FROM {TABLE_AND_PARTITIONS} tree
                   JOIN pg_catalog.pg_class r ON r.oid = tree.relid
                   JOIN pg_catalog.pg_namespace rs ON rs.oid = r.relnamespace
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attname = $3
                  CROSS JOIN LATERAL (
                        SELECT pg_catalog.array_agg(p.privilege_type ORDER BY p.grantee, p.privilege_type) AS kinds,
                               pg_catalog.array_agg(g.rolname ORDER BY p.grantee, p.privilege_type) AS grantees,
                               pg_catalog.array_agg(p.is_grantable ORDER BY p.grantee, p.privilege_type) AS grantable
                          FROM pg_catalog.aclexplode(a.attacl) p
                          LEFT JOIN pg_catalog.pg_roles g ON g.oid = p.grantee) privileges
                  WHERE NOT a.attisdropped AND r.relkind IN ('r', 'p')
                  ORDER BY tree.level, rs.nspname, r.relname"
                ),
                &[&old.schema, &old.table, &old.column],
            )
            .await
            .map_err(|error| reading(old, "comment, privileges and statistics", &error))?;
        for row in rows {
            let relation = quote_qualified(row.get(0), row.get(1));
            let kinds: Vec<String> = row.get::<_, Option<_>>(3).unwrap_or_default();
            let grantees: Vec<Option<String>> = row.get::<_, Option<_>>(4).unwrap_or_default();
            let grantable: Vec<bool> = row.get::<_, Option<_>>(5).unwrap_or_default();
            let settings = ColumnSettings {
                comment: row.get(2),
                privileges: Privilege::all(kinds, grantees, grantable),
                statistics_target: row.get(6),
                options: row.get::<_, Option<Vec<String>>>(7).unwrap_or_default(),
            };
            steps.extend(settings.steps(&relation, old, replacement));
        }
    }
    Ok(steps)
}

/// What one relation's old column has, as read from the catalog.
struct ColumnSettings {
    comment: Option<String>,
    privileges: Vec<Privilege>,
    /// -1 for the default.
    statistics_target: i32,
    /// `name=value`.
    options: Vec<String>,
}

impl ColumnSettings {
    fn steps(&self, relation: &str, old: &Replaced, replacement: &Replacement) -> Vec<Step> {
        let column = quote_ident(&replacement.column);
        let old_name = &old.column;
        let mut steps = Vec::new();
        if let Some(comment) = &self.comment {
            steps.push(Step::new(
                format!("give the new {old_name} of {relation} the old one's comment"),
                format!(
                    "COMMENT ON COLUMN {relation}.{column} IS {}",
                    quote_literal(comment)
                ),
            ));
        }
        for privilege in &self.privileges {
            if let Some((what, sql)) = privilege.grant(&format!(" ({column}) ON TABLE {relation}"))
            {
                steps.push(Step::new(
                    format!("grant {what} on the new {old_name} of {relation}, as on the old one"),
                    sql,
                ));
            }
        }
        if self.statistics_target >= 0 {
            steps.push(Step::new(
                format!("give the new {old_name} of {relation} the old one's statistics target"),
                format!(
                    "ALTER TABLE ONLY {relation} ALTER COLUMN {column} SET STATISTICS {}",
                    self.statistics_target
                ),
            ));
        }
        let options: Vec<String> = self
            .options
            .iter()
            .filter_map(|option| {
                let (name, value) = option.split_once('=')?;
                let name = ATTRIBUTE_OPTIONS.iter().find(|known| **known == name)?;
                let value: f64 = value.parse().ok()?;
                Some(format!("{name} = {value}"))
            })
            .collect();
        if !options.is_empty() {
            steps.push(Step::new(
                format!("give the new {old_name} of {relation} the old one's options"),
                format!(
                    "ALTER TABLE ONLY {relation} ALTER COLUMN {column} SET ({})",
                    options.join(", ")
                ),
            ));
        }
        steps
    }
}

fn reading(old: &Replaced, what: &str, error: &tokio_postgres::Error) -> MigrateError {
    MigrateError::Control(ControlError::database(
        format!(
            "reading the {what} of {}.{}.{}",
            old.schema, old.table, old.column
        ),
        error,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replaced() -> (Replaced, Replacement) {
        let replacement = Replacement {
            column: "_vg_v2_note".into(),
            sql_type: "varchar(500)".into(),
            same_type: false,
            unique: false,
            check: false,
            not_null: false,
            identity: false,
        };
        let old = Replaced {
            schema: "public".into(),
            table: "models".into(),
            column: "note".into(),
            operation: "operation 1 (alter_column)".into(),
            replacement: Some(replacement.clone()),
            rebuilt: Vec::new(),
            dropped_along: Vec::new(),
        };
        (old, replacement)
    }

    #[test]
    fn each_setting_becomes_its_statement_with_names_and_text_quoted() {
        let (old, replacement) = replaced();
        let settings = ColumnSettings {
            comment: Some("it's \\ free".into()),
            privileges: vec![
                Privilege::new("SELECT".into(), Some("Reader\" role".into()), true),
                Privilege::new("REFERENCES".into(), None, false),
                Privilege::new("select; DROP x".into(), None, false),
            ],
            statistics_target: 500,
            options: vec![
                "n_distinct=-0.5".into(),
                "n_distinct=1); DROP TABLE x; --".into(),
                "unknown=1".into(),
            ],
        };
        let sql: Vec<String> = settings
            .steps("\"public\".\"models\"", &old, &replacement)
            .into_iter()
            .map(|step| step.sql)
            .collect();
        assert_eq!(
            sql,
            [
                r#"COMMENT ON COLUMN "public"."models"."_vg_v2_note" IS E'it''s \\ free'"#,
                r#"GRANT SELECT ("_vg_v2_note") ON TABLE "public"."models" TO "Reader"" role" WITH GRANT OPTION"#,
                r#"GRANT REFERENCES ("_vg_v2_note") ON TABLE "public"."models" TO PUBLIC"#,
                r#"ALTER TABLE ONLY "public"."models" ALTER COLUMN "_vg_v2_note" SET STATISTICS 500"#,
                r#"ALTER TABLE ONLY "public"."models" ALTER COLUMN "_vg_v2_note" SET (n_distinct = -0.5)"#,
            ]
        );
    }

    #[test]
    fn a_column_with_nothing_set_carries_nothing() {
        let (old, replacement) = replaced();
        let settings = ColumnSettings {
            comment: None,
            privileges: Vec::new(),
            statistics_target: -1,
            options: Vec::new(),
        };
        assert!(settings.steps("t", &old, &replacement).is_empty());
    }
}
