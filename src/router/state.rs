//! The routing state every session reads: which versions exist, what each rewrites, and the
//! default. Built from the catalog; replaced whole and swapped atomically, so sessions never
//! take a lock to read it.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::control::catalog::RoutingMap;
use crate::rewriter::VersionTargets;

#[derive(Debug, Default)]
pub struct RoutingState {
    /// The database whose catalog this is; sessions on other databases are not versioned.
    pub database: Option<String>,
    pub default_version: Option<String>,
    versions: HashMap<String, Arc<VersionTargets>>,
}

impl RoutingState {
    pub fn from_catalog(database: &str, map: &RoutingMap) -> Self {
        let versions = map
            .versions
            .keys()
            .filter_map(|version| {
                let targets = VersionTargets::from_routing_map(map, version)?;
                Some((version.clone(), Arc::new(targets)))
            })
            .collect();
        RoutingState {
            database: Some(database.to_owned()),
            default_version: map.default_version.clone(),
            versions,
        }
    }

    /// Whether the catalog has been read at least once (an empty catalog counts).
    pub fn loaded(&self) -> bool {
        self.database.is_some()
    }

    /// Whether sessions on `database` are versioned at all.
    pub fn governs(&self, database: &str) -> bool {
        self.database.as_deref() == Some(database) && !self.versions.is_empty()
    }

    pub fn targets(&self, version: &str) -> Option<&Arc<VersionTargets>> {
        self.versions.get(version)
    }

    /// Known version names, sorted, for error messages.
    pub fn version_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.versions.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The shared, swappable routing state.
pub type SharedRouting = Arc<ArcSwap<RoutingState>>;

pub fn unrouted() -> SharedRouting {
    Arc::new(ArcSwap::from_pointee(RoutingState::default()))
}
