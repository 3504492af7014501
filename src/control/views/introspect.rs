//! What the server has: the managed base tables' columns, defaults and keys, the server version,
//! and which relations already occupy the names views would take.
//!
//! Generation needs these facts to check a spec against the database and to give trigger-backed
//! views the base table's defaults (an INSTEAD OF trigger only sees what the view supplies).

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::GenericClient;

use crate::control::error::ControlError;

/// First server version (`server_version_num`) with `security_invoker` views.
pub const SECURITY_INVOKER_MIN_VERSION: i32 = 150_000;

/// One column of a base table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseColumn {
    pub name: String,
    /// `format_type` of the column, e.g. `numeric(10,2)`.
    pub type_name: String,
    /// The default as SQL text; serial and identity columns give their `nextval(...)`.
    pub default: Option<String>,
    /// Generated columns cannot be written, so trigger-backed inserts leave them out.
    pub generated: bool,
    /// `NOT NULL` is declared on the column, or a check stands in for it (a migration adds
    /// NOT NULL as `CHECK (column IS NOT NULL) NOT VALID` until it completes).
    pub not_null: bool,
    /// An identity column: a view may not pass it a default's value (`GENERATED ALWAYS`
    /// refuses one), so an auto-updatable view leaves it to the table.
    pub identity: bool,
}

/// A base table as the server has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BaseTable {
    pub schema: String,
    pub name: String,
    pub columns: Vec<BaseColumn>,
    pub primary_key: Vec<String>,
    /// How the table is partitioned (`PARTITION BY`), if it is: Postgres builds no index on
    /// it concurrently, only on each of its partitions.
    pub partitioning: Option<Partitioning>,
    /// The tables linked to it by table inheritance (`INHERITS`, not partitioning), each
    /// `schema.name`, parents first: their rows share its scans but not its triggers.
    pub inheritance: Vec<InheritanceLink>,
    /// The names of its constraints, which `drop_constraint` and `rename_constraint` name.
    pub constraints: BTreeSet<String>,
    /// The names of its indexes: a unique constraint a live migration adds is an index until
    /// that migration completes.
    pub indexes: BTreeSet<String>,
    /// Its replica identity as `ALTER TABLE … REPLICA IDENTITY` takes it (`DEFAULT`, `FULL`,
    /// `NOTHING`, `USING INDEX "name"`), which a rollback of `set_replica_identity` puts back.
    pub replica_identity: String,
}

/// One table-inheritance link of a base table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InheritanceLink {
    /// The table inherits from this one.
    Parent(String),
    /// This one inherits from the table.
    Child(String),
}

impl BaseTable {
    pub fn column(&self, name: &str) -> Option<&BaseColumn> {
        self.columns.iter().find(|column| column.name == name)
    }

    pub fn is_partitioned(&self) -> bool {
        self.partitioning.is_some()
    }
}

/// A partitioned table's key and partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioning {
    /// The key as `pg_get_partkeydef` gives it, e.g. `RANGE (taken)`.
    pub key: String,
    /// Every partition below the table, each after its parent.
    pub partitions: Vec<Partition>,
}

/// One partition of a partitioned table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub schema: String,
    pub name: String,
    /// The table it is a partition of (schema, name): the partitioned table or a partition
    /// that is partitioned itself.
    pub parent: (String, String),
    pub kind: PartitionKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    /// A table that holds rows.
    Leaf,
    /// A partition partitioned in turn.
    Partitioned,
    /// A foreign table, which has no indexes.
    Foreign,
}

/// The facts generation depends on. Built from the server, or empty when generating offline.
#[derive(Debug, Clone, Default)]
pub struct ServerSnapshot {
    /// `server_version_num`; `None` offline.
    pub version_num: Option<i32>,
    /// Base tables found, keyed by (schema, name). Missing tables are absent.
    pub tables: BTreeMap<(String, String), BaseTable>,
    /// The relations of the names asked about ([`relations_named`]), in whatever schema: the
    /// indexes `drop_index` operations name, which must exist, and the names `rename_table`
    /// and `rename_constraint` operations give, which must be free.
    pub relations_named: Vec<NamedRelation>,
}

/// A relation found by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRelation {
    pub schema: String,
    pub name: String,
    /// Its `relkind`: `i` an index, `I` a partitioned table's index (which Postgres drops only
    /// in one piece, without `CONCURRENTLY`), `r` a table, `v` a view, …
    pub kind: String,
}

impl NamedRelation {
    pub fn is_index(&self) -> bool {
        matches!(self.kind.as_str(), "i" | "I")
    }

    pub fn is_partitioned_index(&self) -> bool {
        self.kind == "I"
    }

    /// What the relation is, in Postgres's words.
    pub fn kind_name(&self) -> &'static str {
        match self.kind.as_str() {
            "r" => "table",
            "p" => "partitioned table",
            "v" => "view",
            "m" => "materialized view",
            "f" => "foreign table",
            "S" => "sequence",
            "c" => "composite type",
            "i" | "I" => "index",
            _ => "relation",
        }
    }
}

impl ServerSnapshot {
    pub fn is_offline(&self) -> bool {
        self.version_num.is_none()
    }

    /// Offline we assume a supported server (15+); online we ask.
    pub fn supports_security_invoker(&self) -> bool {
        self.version_num
            .is_none_or(|version| version >= SECURITY_INVOKER_MIN_VERSION)
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<&BaseTable> {
        self.tables.get(&(schema.to_owned(), name.to_owned()))
    }

    /// The relation `schema.name`, if [`relations_named`] found it.
    pub fn relation(&self, schema: &str, name: &str) -> Option<&NamedRelation> {
        self.relations_named
            .iter()
            .find(|relation| relation.schema == schema && relation.name == name)
    }
}

const COLUMNS_SQL: &str = "
SELECT a.attname,
       format_type(a.atttypid, a.atttypmod),
       CASE
         WHEN a.attgenerated <> '' THEN NULL
         WHEN a.attidentity <> '' THEN
           format('nextval(%L::regclass)', pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname))
         ELSE pg_get_expr(d.adbin, d.adrelid)
       END,
       a.attgenerated <> '',
       a.attnotnull OR EXISTS (
         SELECT 1 FROM pg_constraint k
         WHERE k.conrelid = c.oid AND k.contype = 'c'
           AND regexp_replace(pg_get_constraintdef(k.oid), ' NOT VALID$', '')
               = format('CHECK ((%s IS NOT NULL))', quote_ident(a.attname))),
       a.attidentity <> '',
       c.relkind = 'p'
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
ORDER BY a.attnum";

const PRIMARY_KEY_SQL: &str = "
SELECT a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary
ORDER BY k.position";

const PARTITION_KEY_SQL: &str = "
SELECT pg_catalog.pg_get_partkeydef(c.oid)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2";

/// The partition tree below a table, parents before children.
const PARTITIONS_SQL: &str = "
SELECT n.nspname::text, c.relname::text, pn.nspname::text, pc.relname::text, c.relkind::text
FROM pg_catalog.pg_partition_tree(pg_catalog.format('%I.%I', $1::text, $2::text)::regclass) AS t
JOIN pg_catalog.pg_class c ON c.oid = t.relid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class pc ON pc.oid = t.parentrelid
JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
WHERE t.level > 0
ORDER BY t.level, n.nspname, c.relname";

/// The tables a table inherits from or is inherited by, partitions left out: a link is a
/// partition's when its child is one (`relispartition`).
const INHERITANCE_SQL: &str = "
SELECT link.inhrelid = c.oid, pg_catalog.format('%I.%I', other_n.nspname, other.relname)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_inherits link ON c.oid IN (link.inhrelid, link.inhparent)
JOIN pg_catalog.pg_class child ON child.oid = link.inhrelid
JOIN pg_catalog.pg_class other
  ON other.oid = CASE WHEN link.inhrelid = c.oid THEN link.inhparent ELSE link.inhrelid END
JOIN pg_catalog.pg_namespace other_n ON other_n.oid = other.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND NOT child.relispartition
ORDER BY 1 DESC, 2";

/// The names of a table's constraints (`false`) and indexes (`true`).
const CONSTRAINT_AND_INDEX_NAMES_SQL: &str = "
SELECT k.conname::text, false
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2
UNION ALL
SELECT ic.relname::text, true
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2";

/// A table's replica identity as `ALTER TABLE … REPLICA IDENTITY` takes it (an identity
/// index since dropped leaves the table with none, as `NOTHING`).
const REPLICA_IDENTITY_SQL: &str = "
SELECT CASE c.relreplident
         WHEN 'd' THEN 'DEFAULT'
         WHEN 'f' THEN 'FULL'
         WHEN 'n' THEN 'NOTHING'
         ELSE coalesce('USING INDEX ' || (SELECT pg_catalog.quote_ident(ic.relname)
                                            FROM pg_catalog.pg_index x
                                            JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
                                           WHERE x.indrelid = c.oid AND x.indisreplident),
                       'NOTHING')
       END
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2";

const RELATION_KIND_SQL: &str = "
SELECT c.relkind::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2";

/// Reads the server version and the given base tables.
pub async fn snapshot(
    client: &impl GenericClient,
    tables: impl IntoIterator<Item = (&str, &str)>,
) -> Result<ServerSnapshot, ControlError> {
    let version_num = server_version_num(client).await?;
    let mut snapshot = ServerSnapshot {
        version_num: Some(version_num),
        ..ServerSnapshot::default()
    };
    for (schema, name) in tables {
        if let Some(table) = base_table(client, schema, name).await? {
            snapshot
                .tables
                .insert((schema.to_owned(), name.to_owned()), table);
        }
    }
    Ok(snapshot)
}

pub async fn server_version_num(client: &impl GenericClient) -> Result<i32, ControlError> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|error| ControlError::database("reading the server version", &error))?;
    Ok(row.get(0))
}

async fn base_table(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
) -> Result<Option<BaseTable>, ControlError> {
    let context = || format!("reading the columns of {schema}.{name}");
    let rows = client
        .query(COLUMNS_SQL, &[&schema, &name])
        .await
        .map_err(|error| ControlError::database(context(), &error))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let columns = rows
        .iter()
        .map(|row| BaseColumn {
            name: row.get(0),
            type_name: row.get(1),
            default: row.get(2),
            generated: row.get(3),
            not_null: row.get(4),
            identity: row.get(5),
        })
        .collect();
    let partitioned = rows[0].get(6);
    let primary_key = client
        .query(PRIMARY_KEY_SQL, &[&schema, &name])
        .await
        .map_err(|error| ControlError::database(context(), &error))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let partitioning = if partitioned {
        Some(partitioning(client, schema, name).await?)
    } else {
        None
    };
    let inheritance = client
        .query(INHERITANCE_SQL, &[&schema, &name])
        .await
        .map_err(|error| ControlError::database(context(), &error))?
        .iter()
        .map(|row| match row.get::<_, bool>(0) {
            true => InheritanceLink::Parent(row.get(1)),
            false => InheritanceLink::Child(row.get(1)),
        })
        .collect();
    let (indexes, constraints): (Vec<_>, Vec<_>) = client
        .query(CONSTRAINT_AND_INDEX_NAMES_SQL, &[&schema, &name])
        .await
        .map_err(|error| ControlError::database(context(), &error))?
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, bool>(1)))
        .partition(|(_, index)| *index);
    let replica_identity = client
        .query_one(REPLICA_IDENTITY_SQL, &[&schema, &name])
        .await
        .map_err(|error| ControlError::database(context(), &error))?
        .get(0);
    Ok(Some(BaseTable {
        schema: schema.to_owned(),
        name: name.to_owned(),
        columns,
        primary_key,
        partitioning,
        inheritance,
        constraints: constraints.into_iter().map(|(name, _)| name).collect(),
        indexes: indexes.into_iter().map(|(name, _)| name).collect(),
        replica_identity,
    }))
}

/// How table `schema.name` is partitioned; `None` if it is not (or does not exist).
pub async fn partitioning_of(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
) -> Result<Option<Partitioning>, ControlError> {
    match relation_kind(client, schema, name).await?.as_deref() {
        Some("p") => Ok(Some(partitioning(client, schema, name).await?)),
        _ => Ok(None),
    }
}

async fn partitioning(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
) -> Result<Partitioning, ControlError> {
    let context = || format!("reading the partitions of {schema}.{name}");
    let key = client
        .query_one(PARTITION_KEY_SQL, &[&schema, &name])
        .await
        .map_err(|error| ControlError::database(context(), &error))?
        .get(0);
    let partitions = client
        .query(PARTITIONS_SQL, &[&schema, &name])
        .await
        .map_err(|error| ControlError::database(context(), &error))?
        .iter()
        .map(|row| Partition {
            schema: row.get(0),
            name: row.get(1),
            parent: (row.get(2), row.get(3)),
            kind: match row.get::<_, String>(4).as_str() {
                "p" => PartitionKind::Partitioned,
                "f" => PartitionKind::Foreign,
                _ => PartitionKind::Leaf,
            },
        })
        .collect();
    Ok(Partitioning { key, partitions })
}

/// The relations named as one of `names`, in any schema.
pub async fn relations_named(
    client: &impl GenericClient,
    names: &[&str],
) -> Result<Vec<NamedRelation>, ControlError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relkind::text
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relname = ANY ($1::text[])
              ORDER BY 1, 2",
            &[&names],
        )
        .await
        .map_err(|error| {
            ControlError::database("looking up the relations a migration names", &error)
        })?;
    Ok(rows
        .iter()
        .map(|row| NamedRelation {
            schema: row.get(0),
            name: row.get(1),
            kind: row.get(2),
        })
        .collect())
}

/// The `relkind` of the relation `schema.name`, if one exists (`v` for a view, `r` a table, …).
pub async fn relation_kind(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
) -> Result<Option<String>, ControlError> {
    let row = client
        .query_opt(RELATION_KIND_SQL, &[&schema, &name])
        .await
        .map_err(|error| {
            ControlError::database(format!("looking up relation {schema}.{name}"), &error)
        })?;
    Ok(row.map(|row| row.get(0)))
}
