//! The sequence behind a replaced column. `alter_column` through a new column drops the old
//! column at `migrate complete`, and a sequence the column owns goes with it: a serial's,
//! which the new column's default still calls (the contract failed every time), or an identity
//! column's, which made the key generated at all. A serial's sequence is given to the
//! replacement first (and widened with it). An identity sequence cannot change hands, so the
//! contract reads it before its steps (its options, and where it stands once the sync
//! triggers' drop has locked the table against inserts) and, after them, makes the new column
//! generated as identity again under the same sequence name and options, set to the same
//! place: the key an `integer` identity outgrows keeps numbering rows without reusing the
//! numbers of rows deleted at the top.

use tokio_postgres::GenericClient;

use super::super::derive::{MigrationPlan, Replacement, Step};
use super::super::error::MigrateError;
use super::{replacements, unsafe_to_replace};
use crate::control::error::ControlError;
use crate::control::privilege::Privilege;
use crate::control::quote::{quote_ident, quote_literal, quote_qualified};
use crate::control::views::introspect;

/// Adds to the contract the steps that give a serial column's sequence to its replacement;
/// checks that an identity column's replacement can be made an identity again (`identity_steps`
/// does that at the contract).
pub(super) async fn reown_sequences(
    client: &impl GenericClient,
    plan: &mut MigrationPlan,
) -> Result<(), MigrateError> {
    let mut steps = Vec::new();
    let mut identities: Vec<(String, String, String)> = Vec::new();
    for (old, replacement) in replacements(plan) {
        let table = quote_qualified(&old.schema, &old.table);
        let row = client
            .query_one(
                "SELECT pg_catalog.pg_get_serial_sequence($1, $2),
                        EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = $1::regclass AND a.attname = $2
                                   AND a.attidentity <> '')",
                &[&table, &old.column],
            )
            .await
            .map_err(|error| {
                ControlError::database(
                    format!(
                        "reading the sequence of {}.{}.{}",
                        old.schema, old.table, old.column
                    ),
                    &error,
                )
            })?;
        let sequence: Option<String> = row.get(0);
        let identity: bool = row.get(1);
        if identity {
            refuse_unremakable_identity(client, plan, old, replacement).await?;
            identities.push((old.schema.clone(), old.table.clone(), old.column.clone()));
            continue;
        }
        let Some(sequence) = sequence else {
            continue;
        };
        steps.push(Step::new(
            format!(
                "give {sequence} to the new {} before the old column goes",
                old.column
            ),
            format!(
                "ALTER SEQUENCE {sequence} OWNED BY {table}.{}",
                quote_ident(&replacement.column)
            ),
        ));
        if let Some(wider) = widened_sequence_type(client, &sequence, replacement).await? {
            steps.push(Step::new(
                format!(
                    "let {sequence} count as far as the new {} can hold",
                    old.column
                ),
                format!("ALTER SEQUENCE {sequence} AS {wider}"),
            ));
        }
    }
    for (position, step) in steps.into_iter().enumerate() {
        plan.complete.insert(position, step);
    }
    for replaced in &mut plan.replaced {
        let identity = identities.iter().any(|(schema, table, column)| {
            *schema == replaced.schema && *table == replaced.table && *column == replaced.column
        });
        if let Some(replacement) = replaced.replacement.as_mut() {
            replacement.identity = identity;
        }
    }
    Ok(())
}

/// The integer type a serial's sequence must take to count as far as its new column holds
/// (`integer` → `bigint`: the usual reason to retype a key), if wider than its own. Only at
/// the contract: before it, the old column still takes the sequence's values. Its limits
/// follow the type unless they were set by hand (`ALTER SEQUENCE … AS`).
async fn widened_sequence_type(
    client: &impl GenericClient,
    sequence: &str,
    replacement: &Replacement,
) -> Result<Option<&'static str>, MigrateError> {
    let Some(new) = integer_width(&replacement.sql_type) else {
        return Ok(None);
    };
    let row = client
        .query_one(
            "SELECT s.seqtypid::regtype::text
               FROM pg_catalog.pg_sequence s WHERE s.seqrelid = $1::text::regclass",
            &[&sequence],
        )
        .await
        .map_err(|error| {
            ControlError::database(format!("reading the type of sequence {sequence}"), &error)
        })?;
    let current = integer_width(&row.get::<_, String>(0));
    Ok(current
        .is_some_and(|current| new > current)
        .then_some(INTEGER_TYPES[new][0]))
}

/// Postgres's integer types, narrowest first, each by its names.
const INTEGER_TYPES: [&[&str]; 3] = [
    &["smallint", "int2"],
    &["integer", "int", "int4"],
    &["bigint", "int8"],
];

/// The position in [`INTEGER_TYPES`] of a type spelled `name`, if an integer type.
pub(super) fn integer_width(name: &str) -> Option<usize> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    INTEGER_TYPES.iter().position(|names| names.contains(&name))
}

/// First server version (`server_version_num`) whose partitions take a partitioned table's
/// identity along (`ADD GENERATED … AS IDENTITY` on the table reaches each partition); before
/// it the table's identity served inserts through the table only.
const PARTITIONED_IDENTITY_MIN_VERSION: i32 = 170_000;

/// Refuses, before any change, an identity column whose replacement could not be generated
/// as identity at the contract: one that may be NULL, one of a type no sequence counts in, or
/// one of a partitioned table before PostgreSQL 17 (whose partitions do not take the identity
/// along).
async fn refuse_unremakable_identity(
    client: &impl GenericClient,
    plan: &MigrationPlan,
    old: &super::super::derive::Replaced,
    replacement: &Replacement,
) -> Result<(), MigrateError> {
    let why = if !replacement.not_null {
        Some("an identity column is NOT NULL, and the new column may be NULL")
    } else if integer_width(&replacement.sql_type).is_none() {
        Some(
            "an identity column counts in smallint, integer or bigint, and the new column is of another type",
        )
    } else if introspect::partitioning_of(client, &old.schema, &old.table)
        .await?
        .is_some()
        && introspect::server_version_num(client).await? < PARTITIONED_IDENTITY_MIN_VERSION
    {
        Some(
            "the table is partitioned, and before PostgreSQL 17 its partitions would not all take the identity along",
        )
    } else {
        None
    };
    match why {
        Some(why) => Err(unsafe_to_replace(
            plan,
            &old.schema,
            &old.table,
            &old.column,
            "its identity sequence",
            why,
        )),
        None => Ok(()),
    }
}

/// An identity column the contract replaces, as it stood before the contract's steps.
#[derive(Debug)]
pub struct HeldIdentity {
    relation: u32,
    /// The replacement's attribute number: its name changes in the contract, its number not.
    replacement: i16,
    /// `a` (`GENERATED ALWAYS`) or `d` (`BY DEFAULT`).
    generated: String,
    sequence_schema: String,
    sequence_name: String,
    increment: i64,
    /// Bounds set by hand; `None` where the old type's default stood (the new type's then
    /// stands instead: the point of widening a key).
    min: Option<i64>,
    max: Option<i64>,
    start: i64,
    cache: i64,
    cycle: bool,
    last_value: i64,
    is_called: bool,
    comment: Option<String>,
    /// Its grants to others than its owner (the table's, as the new one's will be): `currval`
    /// needs one, which some ORMs call after an insert.
    privileges: Vec<Privilege>,
}

/// The identity columns `plan` replaces and their sequences. Read once the sync triggers'
/// drop holds the table against inserts, so that no number is handed out between the reading
/// and the old column's drop.
pub async fn held_identities(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<Vec<HeldIdentity>, MigrateError> {
    let mut held = Vec::new();
    for (old, replacement) in replacements(plan) {
        let reading = |error: &tokio_postgres::Error| {
            ControlError::database(
                format!(
                    "reading the identity of {}.{}.{}",
                    old.schema, old.table, old.column
                ),
                error,
            )
        };
        let row = client
            .query_opt(
                "SELECT a.attrelid, new.attnum, a.attidentity::text, sn.nspname, sc.relname,
                        s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache, s.seqcycle,
                        s.seqtypid::regtype::text, pg_catalog.obj_description(sc.oid, 'pg_class'),
                        privileges.kinds, privileges.grantees, privileges.grantable
                   FROM pg_catalog.pg_attribute a
                   JOIN pg_catalog.pg_attribute new ON new.attrelid = a.attrelid
                                                    AND new.attname = $4
                   JOIN pg_catalog.pg_sequence s ON s.seqrelid = pg_catalog.pg_get_serial_sequence(
                            pg_catalog.format('%I.%I', $1::text, $2::text), $3)::regclass
                   JOIN pg_catalog.pg_class sc ON sc.oid = s.seqrelid
                   JOIN pg_catalog.pg_namespace sn ON sn.oid = sc.relnamespace
                  CROSS JOIN LATERAL (
                        SELECT pg_catalog.array_agg(p.privilege_type ORDER BY p.grantee, p.privilege_type) AS kinds,
                               pg_catalog.array_agg(g.rolname ORDER BY p.grantee, p.privilege_type) AS grantees,
                               pg_catalog.array_agg(p.is_grantable ORDER BY p.grantee, p.privilege_type) AS grantable
                          FROM pg_catalog.aclexplode(sc.relacl) p
                          LEFT JOIN pg_catalog.pg_roles g ON g.oid = p.grantee
                         WHERE p.grantee <> sc.relowner) privileges
                  WHERE a.attrelid = pg_catalog.format('%I.%I', $1::text, $2::text)::regclass
                    AND a.attname = $3 AND a.attidentity <> ''",
                &[&old.schema, &old.table, &old.column, &replacement.column],
            )
            .await
            .map_err(|error| reading(&error))?;
        let Some(row) = row else { continue };
        let (sequence_schema, sequence_name): (String, String) = (row.get(3), row.get(4));
        let increment: i64 = row.get(5);
        let (min, max): (i64, i64) = (row.get(6), row.get(7));
        let (default_min, default_max) = default_bounds(&row.get::<_, String>(11), increment);
        let state = client
            .query_one(
                &format!(
                    "SELECT last_value, is_called FROM {}",
                    quote_qualified(&sequence_schema, &sequence_name)
                ),
                &[],
            )
            .await
            .map_err(|error| reading(&error))?;
        held.push(HeldIdentity {
            relation: row.get(0),
            replacement: row.get(1),
            generated: row.get(2),
            sequence_schema,
            sequence_name,
            increment,
            min: (Some(min) != default_min).then_some(min),
            max: (Some(max) != default_max).then_some(max),
            start: row.get(8),
            cache: row.get(9),
            cycle: row.get(10),
            last_value: state.get(0),
            is_called: state.get(1),
            comment: row.get(12),
            privileges: Privilege::all(
                row.get::<_, Option<_>>(13).unwrap_or_default(),
                row.get::<_, Option<_>>(14).unwrap_or_default(),
                row.get::<_, Option<_>>(15).unwrap_or_default(),
            ),
        });
    }
    Ok(held)
}

/// The bounds a sequence of integer type `type_name` counting by `increment` has unless set
/// by hand: from 1 up to the type's largest value, or from its smallest down to -1.
fn default_bounds(type_name: &str, increment: i64) -> (Option<i64>, Option<i64>) {
    let (smallest, largest) = match integer_width(type_name) {
        Some(0) => (i64::from(i16::MIN), i64::from(i16::MAX)),
        Some(1) => (i64::from(i32::MIN), i64::from(i32::MAX)),
        Some(_) => (i64::MIN, i64::MAX),
        None => return (None, None),
    };
    if increment > 0 {
        (Some(1), Some(largest))
    } else {
        (Some(smallest), Some(-1))
    }
}

/// The statements, run after the contract's steps have dropped each old identity column and
/// put its replacement in its place (NOT NULL by then), that make the replacement generated as
/// identity by a sequence of the old one's name and options, standing where the old one stood.
pub async fn identity_steps(
    client: &impl GenericClient,
    held: &[HeldIdentity],
) -> Result<Vec<Step>, MigrateError> {
    let mut steps = Vec::new();
    for identity in held {
        let row = client
            .query_one(
                "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), a.attname
                   FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = $2
                  WHERE c.oid = $1",
                &[&identity.relation, &identity.replacement],
            )
            .await
            .map_err(|error| {
                ControlError::database("reading the replaced identity column's name", &error)
            })?;
        let (table, column): (String, String) = (row.get(0), row.get(1));
        let sequence = quote_qualified(&identity.sequence_schema, &identity.sequence_name);
        let generated = if identity.generated == "a" {
            "ALWAYS"
        } else {
            "BY DEFAULT"
        };
        let bound = |keyword: &str, value: Option<i64>| {
            value.map_or(String::new(), |value| format!(" {keyword} {value}"))
        };
        // The replacement took the old column's default, which Postgres will not have beside
        // an identity.
        steps.push(Step::new(
            format!("{table}.{column} without the default it took from the old column"),
            format!(
                "ALTER TABLE {table} ALTER COLUMN {} DROP DEFAULT",
                quote_ident(&column)
            ),
        ));
        steps.push(Step::new(
            format!("{table}.{column} generated as identity again, by {sequence}"),
            format!(
                "ALTER TABLE {table} ALTER COLUMN {} ADD GENERATED {generated} AS IDENTITY \
                 (SEQUENCE NAME {sequence} INCREMENT BY {}{}{} START WITH {} CACHE {} {}CYCLE)",
                quote_ident(&column),
                identity.increment,
                bound("MINVALUE", identity.min),
                bound("MAXVALUE", identity.max),
                identity.start,
                identity.cache,
                if identity.cycle { "" } else { "NO " },
            ),
        ));
        steps.push(Step::new(
            format!("{sequence} set where the old identity sequence stood"),
            format!(
                "SELECT pg_catalog.setval({}, {}, {})",
                quote_literal(&sequence),
                identity.last_value,
                identity.is_called
            ),
        ));
        if let Some(comment) = &identity.comment {
            steps.push(Step::new(
                format!("{sequence} given the old sequence's comment"),
                format!(
                    "COMMENT ON SEQUENCE {sequence} IS {}",
                    quote_literal(comment)
                ),
            ));
        }
        for privilege in &identity.privileges {
            if let Some((what, sql)) = privilege.grant(&format!(" ON SEQUENCE {sequence}")) {
                steps.push(Step::new(
                    format!("grant {what} on {sequence}, as on the old sequence"),
                    sql,
                ));
            }
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_types_are_known_by_every_name() {
        assert_eq!(integer_width("int4"), integer_width(" INTEGER "));
        assert_eq!(integer_width("pg_catalog.int8"), Some(2));
        assert_eq!(integer_width("smallint"), Some(0));
        assert_eq!(integer_width("numeric(20)"), None);
        assert_eq!(integer_width("bigint[]"), None);
    }

    #[test]
    fn a_sequences_default_bounds_follow_its_type_and_direction() {
        assert_eq!(default_bounds("integer", 1), (Some(1), Some(2147483647)));
        assert_eq!(default_bounds("smallint", -2), (Some(-32768), Some(-1)));
        assert_eq!(default_bounds("bigint", 10), (Some(1), Some(i64::MAX)));
    }
}
