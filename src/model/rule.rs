//! A routing rule as the catalog stores it (`viewgate.routing_rules`): its match, assignment and
//! settings, and every rule of a catalog in evaluation order.
//!
//! Shared by the control plane (`route add|set-weights` validate with it before writing) and the
//! data plane (`router::rules` evaluates it). Parsing lives in this model, once, so a rule the CLI
//! accepts is exactly a rule the proxy understands.

use serde::Serialize;

use super::assign::Assign;
use super::cidr::Cidr;
use super::glob::Glob;
use super::guard::Guard;

/// A rule's match, assignment and settings. Match fields that are `None` match anything.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub id: i64,
    pub position: i32,
    pub match_user: Option<Glob>,
    pub match_database: Option<Glob>,
    pub match_application: Option<Glob>,
    pub match_cidr: Option<Cidr>,
    pub assign: Assign,
    pub enforce: bool,
    pub guard: Guard,
    pub enabled: bool,
    pub note: Option<String>,
}

impl Rule {
    /// Every version the rule names, in the order it names them.
    pub fn versions(&self) -> Vec<&str> {
        self.assign.versions().collect()
    }

    /// The match, as `user=… db=… app=… cidr=…`, or `*` when it matches everyone.
    pub fn match_text(&self) -> String {
        let parts: Vec<String> = [
            ("user", self.match_user.as_ref().map(Glob::as_str)),
            ("db", self.match_database.as_ref().map(Glob::as_str)),
            ("app", self.match_application.as_ref().map(Glob::as_str)),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| format!("{key}={value}")))
        .chain(self.match_cidr.map(|cidr| format!("cidr={cidr}")))
        .collect();
        if parts.is_empty() {
            "*".into()
        } else {
            parts.join(" ")
        }
    }
}

/// A catalog row that does not make a rule (edited by hand, or by a newer viewgate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidRule {
    pub id: i64,
    pub position: i32,
    pub problem: String,
}

/// Every rule in the catalog, in evaluation order, and the rows that are not valid rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CatalogRules {
    pub rules: Vec<Rule>,
    pub invalid: Vec<InvalidRule>,
}
