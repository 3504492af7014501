//! `route add`'s options as a person types them (command line, or JSON to the admin API's
//! `POST /routes`), and their check into a rule before anything connects.

use std::time::Duration;

use super::routes::NewRule;
use crate::control::error::ControlError;
use crate::model::{Assign, Cidr, Glob, Guard, RuleError};

/// `route add`'s options as typed (on the command line, or as JSON to the admin API's
/// `POST /routes`): checked and turned into a rule by [`route_add`].
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteArgs {
    pub version: Option<String>,
    /// `v2=10,v1=90`
    pub split: Option<String>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application: Option<String>,
    pub cidr: Option<String>,
    pub enforce: bool,
    pub position: Option<i32>,
    pub guard_error_rate: Option<f64>,
    /// `"30s"` in JSON.
    #[serde(with = "humantime_serde")]
    pub guard_window: Option<Duration>,
    pub guard_min_queries: Option<u32>,
    pub note: Option<String>,
}

impl RouteArgs {
    /// The rule, or what is wrong with it (before connecting anywhere).
    pub fn to_rule(&self) -> Result<NewRule, ControlError> {
        let glob = |text: &Option<String>| text.as_deref().map(Glob::parse).transpose();
        let assign = match (&self.version, &self.split) {
            (Some(version), None) => Assign::Version(version.clone()),
            (None, Some(split)) => Assign::parse_split(split)?,
            _ => {
                return Err(
                    RuleError::Assign("give either --version V or --split V=W,…".into()).into(),
                );
            }
        };
        let guard = Guard {
            error_rate: self.guard_error_rate,
            window: self.guard_window,
            min_queries: self.guard_min_queries,
        };
        guard.validate()?;
        Ok(NewRule {
            match_user: glob(&self.user)?,
            match_database: glob(&self.database)?,
            match_application: glob(&self.application)?,
            match_cidr: self.cidr.as_deref().map(Cidr::parse).transpose()?,
            assign,
            enforce: self.enforce,
            position: self.position,
            guard,
            note: self.note.clone(),
        })
    }
}
