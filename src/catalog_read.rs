//! The catalog reads both planes make: whether there is a catalog, the default version, the
//! routing rules and the routing map. The proxy's watcher loads its routing state with
//! [`load_routing_map`]; the control plane's commands read the same rows with the same code, so
//! a rule the CLI shows is exactly a rule the proxy applies.
//!
//! Shared rather than owned by either plane, so that neither imports the other: reads only,
//! into the plain data of `model`; every write is in `control::catalog`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio_postgres::GenericClient;

use crate::model::catalog_substitutes::{
    PLAN_OUTLINERS, SUBSTITUTE_FUNCTIONS, SUBSTITUTE_SCHEMA_PREFIX, VERSION_NAME_READERS,
    substitutes,
};
use crate::model::identifier::MIGRATION_NAME_PREFIX;
use crate::model::{
    Assign, BaseTableKin, CatalogRules, Cidr, Glob, Guard, InvalidRule, RoutedTable, RoutingMap,
    Rule, RuleError, ShadowRun, ShapePattern, Unavailable, ViewMapping,
};
use crate::net::postgres_error::describe_postgres_error;

/// A catalog read that failed: what was being read, and what Postgres said.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {}", describe_postgres_error(.source))]
pub struct CatalogReadError {
    pub context: &'static str,
    pub source: tokio_postgres::Error,
}

fn failed(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CatalogReadError {
    move |source| CatalogReadError { context, source }
}

/// Loads the routing map from the catalog; empty when there is no catalog yet.
pub async fn load_routing_map(client: &impl GenericClient) -> Result<RoutingMap, CatalogReadError> {
    if !catalog_exists(client).await? {
        return Ok(RoutingMap::default());
    }
    // First, so the map holds at least every change it counts (read committed: each read
    // below sees every commit this one saw).
    let catalog_change = catalog_change(client).await?;
    let context = "reading the routing map from the viewgate catalog";
    let rows = client
        .query(
            // `mapping` through jsonb: a catalog older than the column has no such column.
            "SELECT o.version, o.table_name, o.base_schema, o.base_table, o.view_schema, o.view_name,
                    to_jsonb(o) ->> 'mapping'
             FROM viewgate.version_objects o
             JOIN viewgate.versions v ON v.version = o.version
             WHERE v.state = 'active'
             ORDER BY o.version, o.table_name",
            &[],
        )
        .await
        .map_err(failed(context))?;
    let mut map = RoutingMap {
        default_version: default_version(client).await?,
        versions: BTreeMap::new(),
        rules: load_rules(client).await?,
        tracks_writers: migration_live(client).await?,
        shadow: shadow_run(client).await?,
        catalog_substitutes: catalog_substitutes(client).await?,
        relation_schemas: BTreeMap::new(),
        pending_views: pending_views(client).await?,
        kin: BaseTableKin::default(),
        catalog_change,
        unavailable: unavailable_versions(client).await?,
    };
    for row in rows {
        let version: String = row.get(0);
        let view_name: String = row.get(5);
        let mapping = row.get::<_, Option<String>>(6).and_then(|text| {
            match serde_json::from_str::<ViewMapping>(&text) {
                Ok(mapping) => Some(mapping),
                Err(error) => {
                    // Only a hand-edited row can hold one: write through the view as before.
                    tracing::warn!(%error, %version, view = %view_name,
                        "the view's recorded column mapping is invalid; ignoring it");
                    None
                }
            }
        });
        map.versions.entry(version).or_default().push(RoutedTable {
            table_name: row.get(1),
            base_schema: row.get(2),
            base_table: row.get(3),
            view_schema: row.get(4),
            view_name,
            mapping,
        });
    }
    map.relation_schemas = relation_schemas(client, &map.managed_names()).await?;
    map.kin = base_table_kin(client, &map.base_tables()).await?;
    Ok(map)
}

/// The views of versions that are neither live nor retired (`RoutingMap::pending_views`).
async fn pending_views(
    client: &impl GenericClient,
) -> Result<Vec<(String, String)>, CatalogReadError> {
    let rows = client
        .query(
            "SELECT o.view_schema, o.view_name
             FROM viewgate.version_objects o
             JOIN viewgate.versions v ON v.version = o.version
             WHERE v.state NOT IN ('active', 'retired')
             ORDER BY o.view_schema, o.view_name",
            &[],
        )
        .await
        .map_err(failed("reading the views of versions not live yet"))?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Per name in `names`, the schemas holding a relation of that name that a search_path can
/// reach: tables, views, materialized views, foreign and partitioned tables, outside the
/// temporary and TOAST schemas (another session's temporary table is not visible to a
/// client; its own is not tracked). Names travel as a bound array.
pub async fn relation_schemas(
    client: &impl GenericClient,
    names: &[&str],
) -> Result<BTreeMap<String, BTreeSet<String>>, CatalogReadError> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if names.is_empty() {
        return Ok(found);
    }
    let rows = client
        .query(
            "SELECT c.relname::text, n.nspname::text
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relname = ANY ($1::text[])
                AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
                AND n.nspname !~ '^pg_(toast_)?temp_' AND n.nspname <> 'pg_toast'",
            &[&names],
        )
        .await
        .map_err(failed("looking for relations named like managed tables"))?;
    for row in rows {
        found.entry(row.get(0)).or_default().insert(row.get(1));
    }
    Ok(found)
}

/// The relatives of `bases` (their partitions and inheritance children, and the tables they
/// are partitions or children of, at any depth), the foreign keys into any of them, their
/// own keys that may arbitrate an upsert, and their checks standing in for a NOT NULL
/// (`model::base_table_kin`). Base tables travel as bound arrays. A relative that is itself
/// a managed base table is that table's own concern (its name is rewritten), not a relative.
pub async fn base_table_kin(
    client: &impl GenericClient,
    bases: &[(String, String)],
) -> Result<BaseTableKin, CatalogReadError> {
    let mut kin = BaseTableKin::default();
    if bases.is_empty() {
        return Ok(kin);
    }
    let schemas: Vec<&str> = bases.iter().map(|(schema, _)| schema.as_str()).collect();
    let tables: Vec<&str> = bases.iter().map(|(_, table)| table.as_str()).collect();
    let rows = client
        .query(
            "WITH RECURSIVE base (oid, base_schema, base_table) AS (
                 SELECT c.oid, n.nspname::text, c.relname::text
                   FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS b (schema, name)
                   JOIN pg_catalog.pg_namespace n ON n.nspname = b.schema
                   JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = b.name
             ), descendant (oid, base_schema, base_table) AS (
                 SELECT i.inhrelid, b.base_schema, b.base_table
                   FROM pg_catalog.pg_inherits i JOIN base b ON i.inhparent = b.oid
                 UNION
                 SELECT i.inhrelid, d.base_schema, d.base_table
                   FROM pg_catalog.pg_inherits i JOIN descendant d ON i.inhparent = d.oid
             ), ancestor (oid, base_schema, base_table) AS (
                 SELECT i.inhparent, b.base_schema, b.base_table
                   FROM pg_catalog.pg_inherits i JOIN base b ON i.inhrelid = b.oid
                 UNION
                 SELECT i.inhparent, a.base_schema, a.base_table
                   FROM pg_catalog.pg_inherits i JOIN ancestor a ON i.inhrelid = a.oid
             ), relative (oid, base_schema, base_table) AS (
                 SELECT * FROM descendant UNION SELECT * FROM ancestor
             )
             SELECT n.nspname::text, c.relname::text, NULL::text, r.base_schema, r.base_table
               FROM relative r
               JOIN pg_catalog.pg_class c ON c.oid = r.oid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p', 'f')
                AND r.oid <> ALL (ARRAY(SELECT b.oid FROM base b))
             UNION ALL
             SELECT n.nspname::text, c.relname::text, k.conname::text, t.base_schema, t.base_table
               FROM pg_catalog.pg_constraint k
               JOIN (SELECT * FROM base UNION ALL SELECT * FROM relative) t ON t.oid = k.confrelid
               JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE k.contype = 'f'",
            &[&schemas, &tables],
        )
        .await
        .map_err(failed(
            "looking for the managed tables' partitions, children, parents and foreign keys",
        ))?;
    // A check stands in for a NOT NULL by the rule the version catalog's `managed_columns`
    // reads it so (view-templates/version_catalog.sql.j2): validated, of one column, exactly
    // `CHECK ((column IS NOT NULL))`.
    let keys = client
        .query(
            "SELECT n.nspname::text, c.relname::text, k.conname::text, k.contype = 'c',
                    pg_catalog.array_agg(a.attname::text ORDER BY u.ord), k.contype = 'p'
               FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS b (schema, name)
               JOIN pg_catalog.pg_namespace n ON n.nspname = b.schema
               JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = b.name
               JOIN pg_catalog.pg_constraint k
                 ON k.conrelid = c.oid
                AND (k.contype IN ('p', 'u') AND NOT k.condeferrable
                     OR k.contype = 'c' AND k.convalidated AND pg_catalog.cardinality(k.conkey) = 1)
              CROSS JOIN LATERAL pg_catalog.unnest(k.conkey) WITH ORDINALITY AS u (attnum, ord)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.attnum
              WHERE k.contype <> 'c'
                 OR pg_catalog.pg_get_constraintdef(k.oid)
                    = pg_catalog.format('CHECK ((%s IS NOT NULL))', pg_catalog.quote_ident(a.attname))
              GROUP BY 1, 2, 3, 4, 6",
            &[&schemas, &tables],
        )
        .await
        .map_err(failed(
            "looking for the managed tables' keys and the checks standing in for NOT NULL",
        ))?;
    for row in keys {
        let constraint = (row.get(0), row.get(1), row.get(2));
        let mut columns: Vec<String> = row.get(4);
        match row.get::<_, bool>(3) {
            true => {
                if let Some(column) = columns.pop() {
                    kin.not_null_checks.insert(constraint, column);
                }
            }
            false => {
                if row.get::<_, bool>(5) {
                    let table = (constraint.0.clone(), constraint.1.clone());
                    kin.primary_keys.insert(table, constraint.2.clone());
                }
                kin.unique_keys.insert(constraint, columns);
            }
        }
    }
    let columns = client
        .query(
            "SELECT n.nspname::text, c.relname::text,
                    pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
               FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS b (schema, name)
               JOIN pg_catalog.pg_namespace n ON n.nspname = b.schema
               JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = b.name
               JOIN pg_catalog.pg_attribute a
                 ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              GROUP BY 1, 2",
            &[&schemas, &tables],
        )
        .await
        .map_err(failed("reading the managed tables' columns"))?;
    for row in columns {
        kin.columns.insert((row.get(0), row.get(1)), row.get(2));
    }
    // A migration's twins of unique keys: valid unique indexes of plain columns, by name,
    // that no key uses yet (a foreign key rebuilt into one uses it, as its referenced index).
    let rebuilt = client
        .query(
            "SELECT n.nspname::text, c.relname::text, i.relname::text,
                    pg_catalog.array_agg(a.attname::text ORDER BY k.ord)
               FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS b (schema, name)
               JOIN pg_catalog.pg_namespace n ON n.nspname = b.schema
               JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = b.name
               JOIN pg_catalog.pg_index x
                 ON x.indrelid = c.oid AND x.indisunique AND x.indisvalid
                AND x.indpred IS NULL AND x.indexprs IS NULL
               JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
              CROSS JOIN LATERAL pg_catalog.unnest(x.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k (attnum, ord)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
              WHERE pg_catalog.starts_with(i.relname::text, $3)
                AND k.ord <= x.indnkeyatts
                AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint pc
                                 WHERE pc.conindid = x.indexrelid AND pc.contype IN ('p', 'u', 'x'))
              GROUP BY 1, 2, 3",
            &[&schemas, &tables, &MIGRATION_NAME_PREFIX],
        )
        .await
        .map_err(failed("reading the unique indexes a migration built for keys"))?;
    for row in rebuilt {
        kin.rebuilt_keys
            .insert((row.get(0), row.get(1), row.get(2)), row.get(3));
    }
    for row in rows {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        let base = (row.get(3), row.get(4));
        match row.get::<_, Option<String>>(2) {
            Some(constraint) => {
                kin.references.insert((schema, table, constraint), base);
            }
            None => {
                kin.relatives.insert((schema, table), base);
            }
        }
    }
    Ok(kin)
}

/// The active versions whose schema of catalog substitutes holds every substitute relation
/// and function (`model::catalog_substitutes`). A version applied by an older viewgate, or with templates
/// that leave the substitutes out, has none and its catalog queries stay as written.
async fn catalog_substitutes(
    client: &impl GenericClient,
) -> Result<BTreeSet<String>, CatalogReadError> {
    let names: Vec<&str> = substitutes().map(|(_, name)| name).collect();
    let functions: Vec<&str> = (SUBSTITUTE_FUNCTIONS.iter().copied())
        .chain(VERSION_NAME_READERS.iter().copied())
        .chain(PLAN_OUTLINERS.iter().copied())
        .collect();
    let rows = client
        .query(
            "SELECT v.version FROM viewgate.versions v
              WHERE v.state = 'active'
                AND (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = $1 || v.version AND c.relname = ANY ($2::text[]))
                    = pg_catalog.cardinality($2::text[])
                AND (SELECT pg_catalog.count(DISTINCT p.proname) FROM pg_catalog.pg_proc p
                       JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                      WHERE n.nspname = $1 || v.version AND p.proname = ANY ($3::text[]))
                    = pg_catalog.cardinality($3::text[])",
            &[&SUBSTITUTE_SCHEMA_PREFIX, &names, &functions],
        )
        .await
        .map_err(failed("looking for the versions' catalog substitutes"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Whether a migration is backfilling or live (its sync triggers judge writers by version).
async fn migration_live(client: &impl GenericClient) -> Result<bool, CatalogReadError> {
    let row = client
        .query_one(
            "SELECT to_regclass('viewgate.migrations') IS NOT NULL
                    AND EXISTS (SELECT 1 FROM viewgate.migrations WHERE phase IN ('backfilling', 'live'))",
            &[],
        )
        .await
        .map_err(failed("looking for live migrations in the viewgate catalog"))?;
    Ok(row.get(0))
}

/// The shadow run in progress, if the catalog has one.
pub async fn shadow_run(
    client: &impl GenericClient,
) -> Result<Option<ShadowRun>, CatalogReadError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('viewgate.shadow_runs') IS NOT NULL",
            &[],
        )
        .await
        .map_err(failed("looking for viewgate.shadow_runs"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            // `match_shape` through jsonb: a catalog older than `--match` has no such column.
            "SELECT id, from_version, to_version, rate, budget, redact,
                    to_jsonb(r) ->> 'match_shape'
             FROM viewgate.shadow_runs r WHERE state = 'running'
             ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(failed("reading viewgate.shadow_runs"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let pattern = match row
        .get::<_, Option<String>>(6)
        .as_deref()
        .map(ShapePattern::parse)
    {
        None => None,
        Some(Ok(pattern)) => Some(pattern),
        Some(Err(error)) => {
            // Only a hand-edited row can hold one: sample nothing rather than every read.
            tracing::warn!(%error, "the shadow run's pattern is invalid; not sampling");
            return Ok(None);
        }
    };
    Ok(Some(ShadowRun {
        id: row.get(0),
        from: row.get(1),
        to: row.get(2),
        rate: row.get(3),
        budget: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
        redact: row.get(5),
        pattern,
    }))
}

/// Whether the database has a viewgate catalog.
pub async fn catalog_exists(client: &impl GenericClient) -> Result<bool, CatalogReadError> {
    let row = client
        .query_one(
            "SELECT to_regclass('viewgate.versions') IS NOT NULL AND to_regclass('viewgate.apply_history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(failed("looking for the viewgate catalog"))?;
    Ok(row.get(0))
}

/// The versions the catalog has that are not active: pending (their migration backfills) or
/// retired (with the version whose migration's contract retired it).
async fn unavailable_versions(
    client: &impl GenericClient,
) -> Result<BTreeMap<String, Unavailable>, CatalogReadError> {
    let rows = client
        .query(
            "SELECT v.version, v.state = 'pending',
                    (SELECT m.version FROM viewgate.migrations m
                      WHERE m.from_version = v.version AND m.phase = 'completed'
                      ORDER BY m.id DESC LIMIT 1)
               FROM viewgate.versions v WHERE v.state <> 'active'",
            &[],
        )
        .await
        .map_err(failed(
            "reading the viewgate catalog's versions that are not active",
        ))?;
    Ok(rows
        .iter()
        .map(|row| {
            let why = match row.get::<_, bool>(1) {
                true => Unavailable::Pending,
                false => Unavailable::Retired(row.get(2)),
            };
            (row.get(0), why)
        })
        .collect())
}

/// How many changes the catalog has announced (`viewgate.catalog_change`); `None` for a catalog
/// made before the count existed, or one this role may not read (the proxy then reports nothing
/// and commands do not wait for it).
pub async fn catalog_change(client: &impl GenericClient) -> Result<Option<i64>, CatalogReadError> {
    let context = "reading the viewgate catalog's change count";
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('viewgate.catalog_change') IS NOT NULL",
            &[],
        )
        .await
        .map_err(failed(context))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    match client
        .query_opt("SELECT change FROM viewgate.catalog_change", &[])
        .await
    {
        Ok(row) => Ok(row.map(|row| row.get(0))),
        Err(error)
            if error.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
        {
            Ok(None)
        }
        Err(error) => Err(failed(context)(error)),
    }
}

/// The version sessions get when nothing else decides (`cutover --to`).
pub async fn default_version(
    client: &impl GenericClient,
) -> Result<Option<String>, CatalogReadError> {
    let row = client
        .query_opt("SELECT default_version FROM viewgate.settings", &[])
        .await
        .map_err(failed("reading viewgate.settings"))?;
    Ok(row.and_then(|row| row.get(0)))
}

/// Whether the catalog has the rules table in its current shape. A catalog made by an older
/// build has none (or an unused older table) until `init`, `views apply` or a `route` command
/// upgrades it.
pub async fn rules_table_ready(client: &impl GenericClient) -> Result<bool, CatalogReadError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute
                            WHERE attrelid = to_regclass('viewgate.routing_rules')
                              AND attname = 'assign' AND NOT attisdropped)",
            &[],
        )
        .await
        .map_err(failed("looking for viewgate.routing_rules"))?;
    Ok(row.get(0))
}

/// Reads every rule (enabled or not) in evaluation order; empty when the table is missing.
pub async fn load_rules(client: &impl GenericClient) -> Result<CatalogRules, CatalogReadError> {
    if !rules_table_ready(client).await? {
        return Ok(CatalogRules::default());
    }
    // jsonb and cidr travel as text: the crate's optional type support is not needed for two
    // columns, and parsing them here is where validation happens anyway.
    let rows = client
        .query(
            "SELECT id, position, match_user, match_database, match_application,
                    host(match_cidr) || '/' || masklen(match_cidr), assign::text, enforce,
                    guard_error_rate, guard_window_ms, guard_min_queries, enabled, note
             FROM viewgate.routing_rules ORDER BY position, id",
            &[],
        )
        .await
        .map_err(failed("reading viewgate.routing_rules"))?;
    let mut loaded = CatalogRules::default();
    for row in rows {
        let id: i64 = row.get(0);
        let position: i32 = row.get(1);
        match rule_from_row(&row) {
            Ok(rule) => loaded.rules.push(rule),
            Err(error) => loaded.invalid.push(InvalidRule {
                id,
                position,
                problem: error.to_string(),
            }),
        }
    }
    Ok(loaded)
}

fn rule_from_row(row: &tokio_postgres::Row) -> Result<Rule, RuleError> {
    let glob = |index: usize| {
        row.get::<_, Option<String>>(index)
            .map(|text| Glob::parse(&text))
            .transpose()
    };
    let assign_text: String = row.get(6);
    let assign_json: serde_json::Value = serde_json::from_str(&assign_text)
        .map_err(|error| RuleError::Assign(format!("{assign_text}: {error}")))?;
    let guard = Guard {
        error_rate: row.get(8),
        window: row
            .get::<_, Option<i32>>(9)
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        min_queries: row
            .get::<_, Option<i32>>(10)
            .map(|n| u32::try_from(n).unwrap_or(0)),
    };
    guard.validate()?;
    Ok(Rule {
        id: row.get(0),
        position: row.get(1),
        match_user: glob(2)?,
        match_database: glob(3)?,
        match_application: glob(4)?,
        match_cidr: row
            .get::<_, Option<String>>(5)
            .map(|text| Cidr::parse(&text))
            .transpose()?,
        assign: Assign::from_json(&assign_json)?,
        enforce: row.get(7),
        guard,
        enabled: row.get(11),
        note: row.get(12),
    })
}
