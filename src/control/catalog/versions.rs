//! Versions as the catalog records them (`viewgate.versions`): read, recorded as applied,
//! retired.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

use crate::control::error::ControlError;

/// A version as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogVersion {
    pub version: String,
    pub layout: String,
    pub checksum: String,
    pub state: String,
}

/// Every version the catalog knows, active or retired, by name.
pub async fn load_versions(
    client: &impl GenericClient,
) -> Result<BTreeMap<String, CatalogVersion>, ControlError> {
    let rows = client
        .query(
            "SELECT version, layout, checksum, state FROM viewgate.versions ORDER BY version",
            &[],
        )
        .await
        .map_err(|error| ControlError::database("reading viewgate.versions", &error))?;
    Ok(rows
        .iter()
        .map(|row| {
            let version = CatalogVersion {
                version: row.get(0),
                layout: row.get(1),
                checksum: row.get(2),
                state: row.get(3),
            };
            (version.version.clone(), version)
        })
        .collect())
}

/// Records a version as applied (active) with its checksum.
pub async fn upsert_version(
    client: &impl GenericClient,
    version: &str,
    layout: &str,
    checksum: &str,
    spec_file: &str,
) -> Result<(), ControlError> {
    client
        .execute(
            "INSERT INTO viewgate.versions (version, layout, checksum, state, spec_file)
             VALUES ($1, $2, $3, 'active', $4)
             ON CONFLICT (version) DO UPDATE
             SET layout = EXCLUDED.layout, checksum = EXCLUDED.checksum, state = 'active',
                 spec_file = EXCLUDED.spec_file, applied_at = now(), retired_at = NULL",
            &[&version, &layout, &checksum, &spec_file],
        )
        .await
        .map_err(|error| ControlError::database(format!("recording version {version}"), &error))?;
    Ok(())
}

/// Holds `version`'s name for a migration from its expand on: `pending`, with no checksum and
/// no definition until its views are made in the next transaction. `views apply` refuses a
/// pending version, so no spec can take the name, and make the version active, meanwhile.
/// A retired version of the name is taken over, as applying it anew would.
pub async fn reserve_version(
    client: &impl GenericClient,
    version: &str,
    layout: &str,
    spec_file: &str,
) -> Result<(), ControlError> {
    client
        .execute_typed(
            "INSERT INTO viewgate.versions (version, layout, checksum, state, spec_file)
             VALUES ($1, $2, '', 'pending', $3)
             ON CONFLICT (version) DO UPDATE
             SET layout = EXCLUDED.layout, checksum = '', state = 'pending', definition = NULL,
                 spec_file = EXCLUDED.spec_file, applied_at = now(), retired_at = NULL",
            &[
                (&version, Type::TEXT),
                (&layout, Type::TEXT),
                (&spec_file, Type::TEXT),
            ],
        )
        .await
        .map_err(|error| ControlError::database(format!("reserving version {version}"), &error))?;
    Ok(())
}

/// Marks `version` retired and forgets its objects.
pub async fn retire_version(
    client: &impl GenericClient,
    version: &str,
) -> Result<(), ControlError> {
    let context = || format!("retiring version {version} in the catalog");
    client
        .execute(
            "DELETE FROM viewgate.version_objects WHERE version = $1",
            &[&version],
        )
        .await
        .map_err(|error| ControlError::database(context(), &error))?;
    client
        .execute(
            "UPDATE viewgate.versions SET state = 'retired', retired_at = now() WHERE version = $1",
            &[&version],
        )
        .await
        .map_err(|error| ControlError::database(context(), &error))?;
    Ok(())
}
