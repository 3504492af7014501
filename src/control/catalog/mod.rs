//! The catalog in schema `viewgate`, as the control plane writes it: creating it, and one file
//! per concept — [`versions`], their [`objects`] (the generated views), the [`history`] of
//! changes, the [`locks`] every change takes, and the [`notify`] that tells the proxies. The
//! reads both planes make (is there a catalog, the default version, the rules, the routing
//! map) are in `catalog_read`, shared with the proxy.
//!
//! The DDL is the `catalog.sql.j2` template. All values go through bind parameters.

pub mod history;
pub mod locks;
pub mod notify;
pub mod objects;
pub mod versions;

use tokio_postgres::GenericClient;

use crate::control::error::ControlError;
use crate::control::templates::{self, Templates};

pub use history::{HistoryEntry, record_history};
pub use locks::{APPLY_LOCK_KEY, set_local_lock_timeout, try_apply_lock, wait_apply_lock};
pub use notify::notify_change;
pub use objects::{CatalogObject, live_fingerprint, load_objects, replace_objects};
pub use versions::{
    CatalogVersion, load_versions, reserve_version, retire_version, upsert_version,
};

/// Creates the catalog if it is missing; harmless when it exists.
pub async fn ensure_catalog(
    client: &impl GenericClient,
    templates: &Templates,
) -> Result<(), ControlError> {
    let ddl = templates.render(templates::CATALOG, ())?;
    client
        .batch_execute(&ddl)
        .await
        .map_err(|error| ControlError::database("creating the viewgate catalog", &error))
}
