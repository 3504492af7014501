//! `viewgate views status`: each version, its views, whether they exist and still match.
//!
//! Three sources are compared: the SQL the spec generates now (its checksum), what the catalog
//! recorded at the last apply (checksum and per-view fingerprint), and the live views (their
//! fingerprint now). A live fingerprint that differs from the recorded one means someone changed
//! or dropped a view by hand (drift); a generated checksum that differs from the recorded one
//! means the spec changed and has not been applied (pending).

use std::collections::BTreeSet;

use serde::Serialize;
use tokio_postgres::GenericClient;

use super::apply::short;
use super::generate;
use super::plan;
use super::spec::Spec;
use crate::catalog_read;
use crate::control::catalog::{self, CatalogObject};
use crate::control::error::ControlError;
use crate::control::templates::Templates;

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub spec_file: String,
    pub spec_checksum: String,
    pub catalog_present: bool,
    pub default_version: Option<String>,
    pub versions: Vec<VersionStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    pub version: String,
    pub in_spec: bool,
    /// `applied` (matches), `pending` (spec changed), `drifted` (views changed by hand),
    /// `not applied`, `retired`, or `not in spec` (in the catalog only).
    pub state: &'static str,
    pub spec_checksum: Option<String>,
    pub applied_checksum: Option<String>,
    pub objects: Vec<ObjectStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectStatus {
    pub table_name: String,
    pub view: String,
    pub trigger_backed: bool,
    /// `ok`, `drifted`, `missing`, `not applied` (in the spec, not yet created) or `stale`
    /// (recorded, but the spec no longer lists it).
    pub state: &'static str,
}

impl StatusReport {
    /// Whether every version in the spec is applied and untouched.
    pub fn is_clean(&self) -> bool {
        self.versions
            .iter()
            .filter(|version| version.in_spec)
            .all(|version| version.state == "applied")
    }

    /// A human-readable table.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "spec {} (checksum {})\n",
            self.spec_file,
            short(&self.spec_checksum)
        );
        if !self.catalog_present {
            text.push_str("no viewgate catalog in this database yet (run `viewgate init` or `viewgate views apply`)\n");
        }
        text.push_str(&format!(
            "default version: {}\n",
            self.default_version.as_deref().unwrap_or("(none)")
        ));
        for version in &self.versions {
            text.push_str(&format!("\nversion {}: {}", version.version, version.state));
            if let (Some(spec), Some(applied)) = (&version.spec_checksum, &version.applied_checksum)
                && spec != applied
            {
                text.push_str(&format!(
                    " (spec {} vs applied {})",
                    short(spec),
                    short(applied)
                ));
            }
            text.push('\n');
            for object in &version.objects {
                text.push_str(&format!(
                    "  {:<24} {:<40} {}{}\n",
                    object.table_name,
                    object.view,
                    object.state,
                    if object.trigger_backed {
                        "  (write trigger)"
                    } else {
                        ""
                    }
                ));
            }
        }
        text
    }
}

/// Compares the spec, the catalog and the live views.
pub async fn status(
    client: &impl GenericClient,
    spec: &Spec,
    templates: &Templates,
) -> Result<StatusReport, ControlError> {
    let plan = plan::against_database(client, spec).await?;
    let generated = generate::render(&plan, templates)?;
    let catalog_present = catalog_read::catalog_exists(client).await?;
    let (recorded_versions, recorded_objects, default_version) = if catalog_present {
        (
            catalog::load_versions(client).await?,
            catalog::load_objects(client).await?,
            catalog_read::default_version(client).await?,
        )
    } else {
        Default::default()
    };

    let mut versions = Vec::new();
    for version in &generated.versions {
        let recorded = recorded_versions.get(&version.name);
        let on_record: Vec<&CatalogObject> = recorded_objects
            .iter()
            .filter(|object| object.version == version.name)
            .collect();
        let mut objects = object_states(client, &on_record).await?;
        let recorded_views: BTreeSet<(&str, &str)> = on_record
            .iter()
            .map(|object| (object.view_schema.as_str(), object.view_name.as_str()))
            .collect();
        let planned: BTreeSet<(&str, &str)> = version
            .views
            .iter()
            .map(|view| (view.plan.view_schema.as_str(), view.plan.view_name.as_str()))
            .collect();
        for object in &mut objects {
            if !planned
                .iter()
                .any(|(schema, name)| object.view == format!("{schema}.{name}"))
            {
                object.state = "stale";
            }
        }
        for view in &version.views {
            if !recorded_views
                .contains(&(view.plan.view_schema.as_str(), view.plan.view_name.as_str()))
            {
                objects.push(ObjectStatus {
                    table_name: view.plan.table_name.clone(),
                    view: view.plan.qualified_view(),
                    trigger_backed: view.plan.trigger.is_some(),
                    state: "not applied",
                });
            }
        }
        let state = match recorded {
            None => "not applied",
            Some(recorded) if recorded.state == "retired" => "retired",
            Some(recorded) => {
                if objects
                    .iter()
                    .any(|object| matches!(object.state, "drifted" | "missing"))
                {
                    "drifted"
                } else if recorded.checksum != version.checksum
                    || objects.iter().any(|object| object.state != "ok")
                    // Recorded before the catalog kept column mappings: apply records them.
                    || on_record.iter().any(|object| object.mapping.is_none())
                {
                    "pending"
                } else {
                    "applied"
                }
            }
        };
        versions.push(VersionStatus {
            version: version.name.clone(),
            in_spec: true,
            state,
            spec_checksum: Some(version.checksum.clone()),
            applied_checksum: recorded.map(|recorded| recorded.checksum.clone()),
            objects,
        });
    }
    for recorded in recorded_versions.values() {
        if generated.version(&recorded.version).is_some() {
            continue;
        }
        let on_record: Vec<&CatalogObject> = recorded_objects
            .iter()
            .filter(|object| object.version == recorded.version)
            .collect();
        versions.push(VersionStatus {
            version: recorded.version.clone(),
            in_spec: false,
            state: if recorded.state == "retired" {
                "retired"
            } else {
                "not in spec"
            },
            spec_checksum: None,
            applied_checksum: Some(recorded.checksum.clone()),
            objects: object_states(client, &on_record).await?,
        });
    }
    Ok(StatusReport {
        spec_file: spec.source.display().to_string(),
        spec_checksum: generated.checksum,
        catalog_present,
        default_version,
        versions,
    })
}

async fn object_states(
    client: &impl GenericClient,
    recorded: &[&CatalogObject],
) -> Result<Vec<ObjectStatus>, ControlError> {
    let mut states = Vec::with_capacity(recorded.len());
    for object in recorded {
        let live =
            catalog::live_fingerprint(client, &object.view_schema, &object.view_name).await?;
        let state = match live {
            None => "missing",
            Some(live) if live == object.fingerprint => "ok",
            Some(_) => "drifted",
        };
        states.push(ObjectStatus {
            table_name: object.table_name.clone(),
            view: format!("{}.{}", object.view_schema, object.view_name),
            trigger_backed: object.trigger_backed,
            state,
        });
    }
    Ok(states)
}
