//! Which version a session gets, and why: the resolution order around the routing rules.
//!
//! Order (decision 3 of the team's design notes, with `enforce`): a matching rule marked
//! `enforce` → `SET viewgate.version` in the session → the startup declaration → the first
//! matching rule → the catalog's default.

use super::rules::{Assignment, ClientIdentity, CompiledRule, Reason};
use super::state::RoutingState;
use crate::model::Unavailable;

/// What a session asked for itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requested<'a> {
    /// `SET viewgate.version` in the session.
    pub set: Option<&'a str>,
    /// The startup declaration.
    pub declared: Option<&'a str>,
}

/// The session's version under `state`, and why; `None` for a session `state` does not
/// version (another database, an empty catalog, no default, or a requested version that has
/// gone from the catalog since).
pub fn resolve(
    state: &RoutingState,
    client: &ClientIdentity,
    bucket: u8,
    requested: Requested<'_>,
) -> Option<Assignment> {
    if !state.governs(&client.database) {
        return None;
    }
    let rule = state.rules().iter().find(|rule| rule.matches(client));
    let by_rule = |rule: &CompiledRule, reason: Reason| Assignment {
        targets: rule.pick(bucket).clone(),
        reason,
    };
    let by_name = |version: &str, reason: Reason| {
        Some(Assignment {
            targets: state.targets(version)?.clone(),
            reason,
        })
    };
    match (rule, requested.set, requested.declared) {
        (Some(rule), _, _) if rule.enforce => Some(by_rule(rule, Reason::Enforced(rule.id))),
        (_, Some(version), _) => by_name(version, Reason::Set),
        (_, None, Some(version)) => by_name(version, Reason::Declared),
        (Some(rule), None, None) => Some(by_rule(rule, Reason::Rule(rule.id))),
        (None, None, None) => by_name(state.default_version.as_deref()?, Reason::Default),
    }
}

/// The version a session asked for (SET, else declared) that `state` no longer has: retired
/// since it was asked for. Called where [`resolve`] gives the session no version, to tell
/// this apart from a session `state` does not version at all: such a session must not be
/// forwarded as unversioned, or its statements would name the base table (the thirty-first
/// red-team pass read newer versions' columns from a session whose version `views drop`
/// retired under it).
///
/// A session that asked for a version on a database `state` does not (or no longer) version
/// counts too: the last version dropped leaves the catalog empty, and the session would
/// otherwise go on unversioned.
pub fn retired<'r>(
    state: &RoutingState,
    client: &ClientIdentity,
    requested: Requested<'r>,
) -> Option<&'r str> {
    let asked = requested.set.or(requested.declared)?;
    (!state.governs(&client.database) || state.targets(asked).is_none()).then_some(asked)
}

/// Why a SET to `version` is refused, if an enforced rule (under `state`) pins `client` (of
/// split `bucket`) to another version. Refused as 42501 (insufficient_privilege): the value
/// is valid, the client is just not allowed to choose.
pub fn enforced_elsewhere(
    state: &RoutingState,
    client: &ClientIdentity,
    bucket: u8,
    version: &str,
) -> Option<String> {
    let assignment = resolve(state, client, bucket, Requested::default())?;
    match assignment.reason {
        Reason::Enforced(id) if assignment.version() != version => Some(format!(
            "viewgate.version is enforced as \"{}\" for this client by routing rule {id}; it cannot be set to \"{version}\"",
            assignment.version()
        )),
        _ => None,
    }
}

/// Why `version`, asked for by a session on `database`, is refused: `state` knows no such
/// version there. A session that asks for a version must get one; served unversioned it
/// would read the base tables whole (the fifty-third red-team pass, on a database the proxy
/// does not version).
pub fn refused_version_message(state: &RoutingState, database: &str, version: &str) -> String {
    match state.database.as_deref() {
        Some(governed) if governed != database => format!(
            "viewgate.version \"{version}\" asks for a version, but database \"{database}\" is not versioned by this proxy (its catalog versions database \"{governed}\"); connect to that database, or leave viewgate.version out"
        ),
        _ if !state.governs(database) => format!(
            "unknown viewgate version \"{version}\": the catalog has no versions (apply a spec with viewgate views apply first), or leave viewgate.version out"
        ),
        _ => unknown_version_message(state, version),
    }
}

/// The message for a version `state` does not serve, naming those it does: with why, where
/// the catalog has it (an application still declaring a retired version after the contract,
/// or one deployed before its migration went live).
pub fn unknown_version_message(state: &RoutingState, version: &str) -> String {
    let why = match state.unavailable(version) {
        Some(Unavailable::Pending) => {
            ": it is not live yet, its migration is still running (viewgate migrate status)"
                .to_owned()
        }
        Some(Unavailable::Retired(Some(successor))) => {
            format!(": it was retired when the migration to {successor} completed")
        }
        Some(Unavailable::Retired(None)) => ": it was retired (viewgate views drop)".to_owned(),
        None => String::new(),
    };
    format!(
        "unknown viewgate version \"{version}\"{why}; known versions: {}",
        state.version_names().join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    use crate::config::StickyField;
    use crate::model::{Assign, CatalogRules, Cidr, Glob, Guard, RoutedTable, RoutingMap, Rule};

    const DEFAULT_FIELDS: &[StickyField] = &crate::config::DEFAULT_STICKY_IDENTITY;

    fn client(user: &str, application_name: &str, address: &str) -> ClientIdentity {
        ClientIdentity {
            user: user.into(),
            database: "app".into(),
            application_name: application_name.into(),
            address: Some(address.parse().unwrap()),
        }
    }

    fn rule(id: i64, assign: Assign) -> Rule {
        Rule {
            id,
            position: id as i32,
            match_user: None,
            match_database: None,
            match_application: None,
            match_cidr: None,
            assign,
            enforce: false,
            guard: Guard::default(),
            enabled: true,
            note: None,
        }
    }

    fn state(rules: Vec<Rule>) -> RoutingState {
        let table = |version: &str| RoutedTable {
            table_name: "t".into(),
            base_schema: "public".into(),
            base_table: "t".into(),
            view_schema: "public".into(),
            view_name: format!("t_{version}"),
            mapping: None,
        };
        let map = RoutingMap {
            default_version: Some("v1".into()),
            versions: ["v1", "v2", "v3"]
                .into_iter()
                .map(|v| (v.to_owned(), vec![table(v)]))
                .collect(),
            rules: CatalogRules {
                rules,
                invalid: Vec::new(),
            },
            tracks_writers: false,
            shadow: None,
            catalog_substitutes: Default::default(),
            relation_schemas: Default::default(),
            pending_views: Vec::new(),
            kin: Default::default(),
            catalog_change: None,
            unavailable: [
                ("v0".to_owned(), Unavailable::Retired(Some("v1".into()))),
                ("vx".to_owned(), Unavailable::Retired(None)),
                ("v4".to_owned(), Unavailable::Pending),
            ]
            .into(),
        };
        RoutingState::from_catalog("app", &map)
    }

    fn version(state: &RoutingState, client: &ClientIdentity, requested: Requested) -> String {
        resolve(state, client, client.bucket(DEFAULT_FIELDS), requested)
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn the_bucket_is_a_documented_sha256_and_depends_on_the_chosen_fields() {
        let alice = client("alice", "web", "10.0.0.1");
        // SHA-256("alice\0web\010.0.0.1\0"), first 8 bytes big-endian, mod 100: fixed forever,
        // so every replica and every build agree.
        let digest = Sha256::digest(b"alice\0web\x0010.0.0.1\0");
        let expected = u64::from_be_bytes(digest[..8].try_into().unwrap()) % 100;
        assert_eq!(u64::from(alice.bucket(DEFAULT_FIELDS)), expected);
        let mut mapped = alice.clone();
        mapped.address = Some("::ffff:10.0.0.1".parse().unwrap());
        assert_eq!(
            mapped.bucket(DEFAULT_FIELDS),
            alice.bucket(DEFAULT_FIELDS),
            "an IPv4-mapped address is the IPv4 address"
        );
        let by_user = [StickyField::User];
        assert_eq!(
            client("alice", "other", "10.9.9.9").bucket(&by_user),
            alice.bucket(&by_user)
        );
        // Across many identities the buckets spread evenly enough for a split to mean something.
        let on_first_ten = (0..10_000)
            .filter(|i| {
                client("u", &format!("client-{i}"), "127.0.0.1").bucket(DEFAULT_FIELDS) < 10
            })
            .count();
        assert!((800..1200).contains(&on_first_ten), "{on_first_ten}");
    }

    #[test]
    fn a_split_walks_cumulative_weights_in_listed_order() {
        let split = Assign::Split(vec![("v2".into(), 10), ("v1".into(), 0), ("v3".into(), 90)]);
        let state = state(vec![rule(1, split)]);
        let compiled = &state.rules()[0];
        assert_eq!(compiled.pick(0).version, "v2");
        assert_eq!(compiled.pick(9).version, "v2");
        assert_eq!(
            compiled.pick(10).version,
            "v3",
            "a zero weight is never picked"
        );
        assert_eq!(compiled.pick(99).version, "v3");
        assert_eq!(compiled.versions().collect::<Vec<_>>(), ["v2", "v1", "v3"]);
    }

    #[test]
    fn precedence_enforced_then_set_then_declared_then_rule_then_default() {
        let mut to_v2 = rule(3, Assign::Version("v2".into()));
        to_v2.match_application = Some(Glob::parse("web*").unwrap());
        let state_rule = state(vec![to_v2.clone()]);
        let web = client("alice", "web-1", "10.0.0.1");
        let batch = client("alice", "batch", "10.0.0.1");
        let none = Requested::default();
        let declared = Requested {
            set: None,
            declared: Some("v3"),
        };
        let set = Requested {
            set: Some("v1"),
            declared: Some("v3"),
        };
        assert_eq!(version(&state_rule, &web, none), "v2 (rule 3)");
        assert_eq!(version(&state_rule, &batch, none), "v1 (default)");
        assert_eq!(version(&state_rule, &web, declared), "v3 (declared)");
        assert_eq!(version(&state_rule, &web, set), "v1 (set)");
        to_v2.enforce = true;
        let state_enforced = state(vec![to_v2]);
        assert_eq!(
            version(&state_enforced, &web, set),
            "v2 (rule 3 (enforced))"
        );
        assert_eq!(
            version(&state_enforced, &web, declared),
            "v2 (rule 3 (enforced))"
        );
        assert_eq!(version(&state_enforced, &batch, declared), "v3 (declared)");
    }

    #[test]
    fn the_first_matching_rule_in_position_order_decides() {
        let mut by_user = rule(7, Assign::Version("v3".into()));
        by_user.position = 1;
        by_user.match_user = Some(Glob::parse("alice").unwrap());
        let mut by_cidr = rule(2, Assign::Version("v2".into()));
        by_cidr.position = 2;
        by_cidr.match_cidr = Some(Cidr::parse("10.0.0.0/8").unwrap());
        let mut by_database = rule(4, Assign::Version("v2".into()));
        by_database.position = 3;
        by_database.match_database = Some(Glob::parse("other").unwrap());
        let state = state(vec![by_user, by_cidr, by_database]);
        let none = Requested::default();
        assert_eq!(
            version(&state, &client("alice", "", "10.0.0.1"), none),
            "v3 (rule 7)"
        );
        assert_eq!(
            version(&state, &client("bob", "", "10.2.3.4"), none),
            "v2 (rule 2)"
        );
        assert_eq!(
            version(&state, &client("bob", "", "192.168.0.1"), none),
            "v1 (default)"
        );
        let mut unaddressed = client("bob", "", "10.0.0.1");
        unaddressed.address = None;
        assert_eq!(version(&state, &unaddressed, none), "v1 (default)");
    }

    #[test]
    fn rules_naming_unknown_versions_or_disabled_are_skipped() {
        let mut disabled = rule(1, Assign::Version("v2".into()));
        disabled.enabled = false;
        let unknown = rule(2, Assign::Split(vec![("v9".into(), 50), ("v2".into(), 50)]));
        let fallback = rule(3, Assign::Version("v3".into()));
        let state = state(vec![disabled, unknown, fallback]);
        assert_eq!(state.rules().len(), 1);
        assert_eq!(
            version(&state, &client("a", "b", "127.0.0.1"), Requested::default()),
            "v3 (rule 3)"
        );
    }

    #[test]
    fn other_databases_and_vanished_declarations_are_unversioned() {
        let state = state(vec![rule(1, Assign::Version("v2".into()))]);
        let mut elsewhere = client("a", "b", "127.0.0.1");
        elsewhere.database = "other".into();
        assert!(resolve(&state, &elsewhere, 0, Requested::default()).is_none());
        let gone = Requested {
            set: None,
            declared: Some("v0"),
        };
        assert!(resolve(&state, &client("a", "b", "127.0.0.1"), 0, gone).is_none());
    }

    #[test]
    fn a_version_the_catalog_has_but_does_not_serve_is_told_why() {
        let state = state(Vec::new());
        let told = |version: &str| unknown_version_message(&state, version);
        assert_eq!(
            told("v0"),
            "unknown viewgate version \"v0\": it was retired when the migration to v1 completed; known versions: v1, v2, v3"
        );
        assert!(told("vx").contains(": it was retired (viewgate views drop);"));
        assert!(told("v4").contains(": it is not live yet, its migration is still running"));
        assert_eq!(
            told("v9"),
            "unknown viewgate version \"v9\"; known versions: v1, v2, v3"
        );
    }
}
