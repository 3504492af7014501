//! Routing rules as the proxy evaluates them: compiled against the active versions, matched
//! against the client, and, for a split, the client's sticky bucket; plus what a session was
//! assigned and why. The resolution order around the rules is in `resolve.rs`.
//!
//! Rules are compiled once per catalog load ([`CompiledRule`]), so a session evaluates them
//! with no allocation, and only when the routing state or its own declaration changed.
//!
//! A weighted split is sticky: the client's bucket is
//! `u64::from_be_bytes(SHA-256(f1 ‖ 0x00 ‖ f2 ‖ 0x00 ‖ …)[0..8]) mod 100` over the configured
//! `sticky_identity` fields in their configured order (user, database, application_name as
//! sent at startup, client IP address as text without the port; absent values are empty).
//! The split's entries are walked in their listed order, summing weights, and the first entry
//! whose running sum exceeds the bucket wins. So the bucket does not depend on the rule, and
//! widening `v2=10,v1=90` to `v2=20,v1=80` keeps every client that was on v2 there.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::StickyField;
use crate::model::{Assign, Cidr, Glob, Guard, Rule, TOTAL_WEIGHT};
use crate::rewriter::VersionTargets;

/// What routing rules can match a session on, fixed at startup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    pub user: String,
    pub database: String,
    /// As sent in the startup packet (empty when not sent); a later SET does not move the
    /// session.
    pub application_name: String,
    /// The client's address; `None` for clients that are not on IP (none today).
    pub address: Option<IpAddr>,
}

impl ClientIdentity {
    /// The split bucket, 0 to 99 (see the module documentation for the exact definition).
    pub fn bucket(&self, fields: &[StickyField]) -> u8 {
        let mut hasher = Sha256::new();
        for field in fields {
            match field {
                StickyField::User => hasher.update(self.user.as_bytes()),
                StickyField::Database => hasher.update(self.database.as_bytes()),
                StickyField::ApplicationName => hasher.update(self.application_name.as_bytes()),
                StickyField::ClientAddress => {
                    if let Some(address) = self.address {
                        hasher.update(address.to_canonical().to_string().as_bytes());
                    }
                }
            }
            // Startup values cannot contain NUL, so it separates fields unambiguously.
            hasher.update([0u8]);
        }
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % u64::from(TOTAL_WEIGHT)) as u8
    }
}

/// Why a session runs at its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The startup declaration (`options=-c viewgate.version=…` or the parameter).
    Declared,
    /// `SET viewgate.version` in the session.
    Set,
    /// The first matching routing rule (by id).
    Rule(i64),
    /// A matching rule with `enforce`, which beats the session's own declaration.
    Enforced(i64),
    /// The catalog's default version.
    Default,
    /// Kept at its version while a migration is live, because it holds prepared statements
    /// rewritten at it (see `prepared.rs`).
    Held,
}

impl Reason {
    /// A fixed label ("declared", "set", "rule", "enforced", "default", "held"), for metrics.
    pub fn kind(self) -> &'static str {
        match self {
            Reason::Declared => "declared",
            Reason::Set => "set",
            Reason::Rule(_) => "rule",
            Reason::Enforced(_) => "enforced",
            Reason::Default => "default",
            Reason::Held => "held",
        }
    }

    /// The rule that decided, if one did.
    pub fn rule_id(self) -> Option<i64> {
        match self {
            Reason::Rule(id) | Reason::Enforced(id) => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Rule(id) => write!(f, "rule {id}"),
            Reason::Enforced(id) => write!(f, "rule {id} (enforced)"),
            other => f.write_str(other.kind()),
        }
    }
}

/// A session's version and why it has it. Cloning is one reference-count increment.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub(super) targets: Arc<VersionTargets>,
    pub reason: Reason,
}

impl Assignment {
    pub fn version(&self) -> &str {
        &self.targets.version
    }

    pub fn targets(&self) -> &Arc<VersionTargets> {
        &self.targets
    }
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.version(), self.reason)
    }
}

/// A rule ready to evaluate: its versions resolved to their rewrite targets.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub id: i64,
    pub position: i32,
    match_user: Option<Glob>,
    match_database: Option<Glob>,
    match_application: Option<Glob>,
    match_cidr: Option<Cidr>,
    target: Target,
    pub enforce: bool,
    /// Canary guard settings, for whoever watches the rule's error rate.
    pub guard: Guard,
}

#[derive(Debug, Clone)]
enum Target {
    Version(Arc<VersionTargets>),
    /// (version, weight) in the listed order; weights sum to [`TOTAL_WEIGHT`].
    Split(Vec<(Arc<VersionTargets>, u32)>),
}

/// A rule names a version that is not active: the proxy skips the whole rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the rule names version {0}, which is not active")]
pub struct InactiveVersion(pub String);

impl CompiledRule {
    /// Resolves the rule's versions; `Err` names the first one `versions` does not have.
    pub fn compile(
        rule: &Rule,
        versions: &HashMap<String, Arc<VersionTargets>>,
    ) -> Result<Self, InactiveVersion> {
        let lookup = |version: &str| {
            versions
                .get(version)
                .cloned()
                .ok_or_else(|| InactiveVersion(version.to_owned()))
        };
        let target = match &rule.assign {
            Assign::Version(version) => Target::Version(lookup(version)?),
            Assign::Split(entries) => Target::Split(
                entries
                    .iter()
                    .map(|(version, weight)| Ok((lookup(version)?, *weight)))
                    .collect::<Result<_, InactiveVersion>>()?,
            ),
        };
        Ok(CompiledRule {
            id: rule.id,
            position: rule.position,
            match_user: rule.match_user.clone(),
            match_database: rule.match_database.clone(),
            match_application: rule.match_application.clone(),
            match_cidr: rule.match_cidr,
            target,
            enforce: rule.enforce,
            guard: rule.guard,
        })
    }

    pub fn matches(&self, client: &ClientIdentity) -> bool {
        let name =
            |glob: &Option<Glob>, value: &str| glob.as_ref().is_none_or(|g| g.matches(value));
        name(&self.match_user, &client.user)
            && name(&self.match_database, &client.database)
            && name(&self.match_application, &client.application_name)
            && self
                .match_cidr
                .is_none_or(|cidr| client.address.is_some_and(|a| cidr.contains(a)))
    }

    /// The version for a client in `bucket` (0 to 99).
    pub fn pick(&self, bucket: u8) -> &Arc<VersionTargets> {
        match &self.target {
            Target::Version(targets) => targets,
            Target::Split(entries) => {
                let mut running = 0;
                for (targets, weight) in entries {
                    running += weight;
                    if u32::from(bucket) < running {
                        return targets;
                    }
                }
                // Unreachable while weights sum to 100 (checked when loaded).
                &entries[entries.len() - 1].0
            }
        }
    }

    /// The version the canary guard watches: a split's first entry, while it still has
    /// weight and there is another entry to give it to.
    pub fn canary(&self) -> Option<&str> {
        match &self.target {
            Target::Split(entries) if entries.len() > 1 && entries[0].1 > 0 => {
                Some(entries[0].0.version.as_str())
            }
            _ => None,
        }
    }

    /// The versions this rule can assign, in the listed order.
    pub fn versions(&self) -> impl Iterator<Item = &str> {
        let (single, split) = match &self.target {
            Target::Version(targets) => (Some(targets), &[][..]),
            Target::Split(entries) => (None, entries.as_slice()),
        };
        single
            .into_iter()
            .chain(split.iter().map(|(targets, _)| targets))
            .map(|targets| targets.version.as_str())
    }
}
