//! Routing rules as the catalog stores them (`viewgate.routing_rules`): the rule model, its
//! validation (globs, CIDRs, splits, guard settings) and [`load_rules`].
//!
//! Shared by the CLI (`route add|set-weights` validate with it before writing) and the proxy
//! (the watcher loads rules with it; `router::rules` evaluates them). Parsing lives here, once,
//! so a rule the CLI accepts is exactly a rule the proxy understands.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::control::error::ControlError;

/// Weights of a split are percentages.
pub const TOTAL_WEIGHT: u32 = 100;

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

/// What a matching rule assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assign {
    Version(String),
    /// (version, weight) in the order listed; weights sum to [`TOTAL_WEIGHT`].
    Split(Vec<(String, u32)>),
}

impl Assign {
    pub fn versions(&self) -> impl Iterator<Item = &str> {
        let (single, split) = match self {
            Assign::Version(version) => (Some(version.as_str()), &[][..]),
            Assign::Split(entries) => (None, entries.as_slice()),
        };
        single
            .into_iter()
            .chain(split.iter().map(|(version, _)| version.as_str()))
    }

    /// The catalog's JSON: `{"version":"v2"}` or `{"split":[["v2",10],["v1",90]]}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Assign::Version(version) => serde_json::json!({ "version": version }),
            Assign::Split(entries) => serde_json::json!({ "split": entries }),
        }
    }

    pub fn from_json(value: &serde_json::Value) -> Result<Self, RuleError> {
        let bad = |problem: &str| RuleError::Assign(format!("{value}: {problem}"));
        let object = value.as_object().ok_or_else(|| bad("not an object"))?;
        match (object.get("version"), object.get("split")) {
            (Some(version), None) => {
                let version = version
                    .as_str()
                    .ok_or_else(|| bad("\"version\" is not a string"))?;
                check_version_name(version)?;
                Ok(Assign::Version(version.to_owned()))
            }
            (None, Some(split)) => {
                let entries = split
                    .as_array()
                    .ok_or_else(|| bad("\"split\" is not an array"))?
                    .iter()
                    .map(|entry| match entry.as_array().map(Vec::as_slice) {
                        Some([version, weight]) => Some((
                            version.as_str()?.to_owned(),
                            u32::try_from(weight.as_u64()?).ok()?,
                        )),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("split entries must be [\"version\", weight]"))?;
                check_split(entries)
            }
            _ => Err(bad("needs exactly one of \"version\" and \"split\"")),
        }
    }

    /// Parses `v2=10,v1=90` (the CLI's form).
    pub fn parse_split(text: &str) -> Result<Self, RuleError> {
        let entries = text
            .split(',')
            .map(|entry| {
                let (version, weight) = entry.trim().split_once('=').ok_or_else(|| {
                    RuleError::Split(format!(
                        "\"{entry}\" is not VERSION=WEIGHT (write e.g. v2=10,v1=90)"
                    ))
                })?;
                let weight = weight.trim().parse::<u32>().map_err(|_| {
                    RuleError::Split(format!(
                        "the weight of {} must be a whole number from 0 to {TOTAL_WEIGHT}, not \"{weight}\"",
                        version.trim()
                    ))
                })?;
                Ok((version.trim().to_owned(), weight))
            })
            .collect::<Result<Vec<_>, RuleError>>()?;
        check_split(entries)
    }
}

impl fmt::Display for Assign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Assign::Version(version) => f.write_str(version),
            Assign::Split(entries) => {
                for (i, (version, weight)) in entries.iter().enumerate() {
                    let comma = if i == 0 { "" } else { "," };
                    write!(f, "{comma}{version}={weight}")?;
                }
                Ok(())
            }
        }
    }
}

impl Serialize for Assign {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

fn check_version_name(version: &str) -> Result<(), RuleError> {
    if version.is_empty() {
        Err(RuleError::Assign("a version name is empty".into()))
    } else {
        Ok(())
    }
}

fn check_split(entries: Vec<(String, u32)>) -> Result<Assign, RuleError> {
    if entries.is_empty() {
        return Err(RuleError::Split(
            "a split needs at least one version".into(),
        ));
    }
    for (i, (version, weight)) in entries.iter().enumerate() {
        check_version_name(version)?;
        if *weight > TOTAL_WEIGHT {
            return Err(RuleError::Split(format!(
                "the weight of {version} is {weight}; weights are percentages (0 to {TOTAL_WEIGHT})"
            )));
        }
        if entries[..i].iter().any(|(earlier, _)| earlier == version) {
            return Err(RuleError::Split(format!(
                "{version} appears twice in the split"
            )));
        }
    }
    let sum: u32 = entries.iter().map(|(_, weight)| weight).sum();
    if sum != TOTAL_WEIGHT {
        return Err(RuleError::Split(format!(
            "weights must sum to {TOTAL_WEIGHT}, these sum to {sum}"
        )));
    }
    Ok(Assign::Split(entries))
}

/// Canary guard settings, stored and shown here; the guard itself acts on them elsewhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Guard {
    /// Error rate (0 < rate ≤ 1) of the canary version above which its weight drops to 0.
    pub error_rate: Option<f64>,
    #[serde(rename = "window_ms", serialize_with = "serialize_millis")]
    pub window: Option<Duration>,
    pub min_queries: Option<u32>,
}

fn serialize_millis<S: serde::Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    value.map(|d| d.as_millis() as u64).serialize(serializer)
}

impl Guard {
    pub fn is_set(&self) -> bool {
        self.error_rate.is_some() || self.window.is_some() || self.min_queries.is_some()
    }

    pub fn validate(&self) -> Result<(), RuleError> {
        if let Some(rate) = self.error_rate
            && !(rate > 0.0 && rate <= 1.0)
        {
            return Err(RuleError::Guard(format!(
                "the guard error rate is a fraction above 0 and at most 1 (e.g. 0.05), not {rate}"
            )));
        }
        if let Some(window) = self.window
            && (window.is_zero() || window.as_millis() > i32::MAX as u128)
        {
            return Err(RuleError::Guard(format!(
                "the guard window must be between 1ms and {}ms",
                i32::MAX
            )));
        }
        if let Some(min) = self.min_queries
            && min > i32::MAX as u32
        {
            return Err(RuleError::Guard(format!(
                "the guard's minimum queries must be at most {}",
                i32::MAX
            )));
        }
        Ok(())
    }

    pub fn window_ms(&self) -> Option<i32> {
        self.window
            .map(|d| i32::try_from(d.as_millis()).unwrap_or(i32::MAX))
    }
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_set() {
            return f.write_str("-");
        }
        let mut parts = Vec::new();
        if let Some(rate) = self.error_rate {
            parts.push(format!("errors>{rate}"));
        }
        if let Some(window) = self.window {
            parts.push(format!(
                "window={}",
                humantime_serde::re::humantime::format_duration(window)
            ));
        }
        if let Some(min) = self.min_queries {
            parts.push(format!("min={min}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// A glob over names: `*` matches any run of characters, `?` one character, `\` makes the next
/// character literal. Case-sensitive, like the names Postgres sees. `[` is refused (character
/// classes are not supported; write `\[`) so that adding them later changes no rule's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    tokens: Vec<GlobToken>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobToken {
    Literal(char),
    /// `?`
    One,
    /// `*`
    Any,
}

impl Glob {
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let bad = |problem: &str| RuleError::Glob {
            pattern: text.to_owned(),
            problem: problem.to_owned(),
        };
        if text.is_empty() {
            return Err(bad("empty; leave the option out to match any name"));
        }
        let mut tokens = Vec::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => GlobToken::Any,
                '?' => GlobToken::One,
                '\\' => GlobToken::Literal(
                    chars
                        .next()
                        .ok_or_else(|| bad("ends with a lone \\ (escape what, exactly?)"))?,
                ),
                '[' | ']' => {
                    return Err(bad(
                        "character classes ([...]) are not supported; write \\[ or \\] for a literal bracket",
                    ));
                }
                c => GlobToken::Literal(c),
            });
        }
        Ok(Glob {
            text: text.to_owned(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` matches. Iterative with one backtrack point (the last `*`): linear in
    /// practice, never exponential, and allocation-free.
    pub fn matches(&self, name: &str) -> bool {
        let tokens = &self.tokens;
        let mut rest = name;
        let mut t = 0;
        // Where to resume after the last `*`: its token index and the text it has not eaten.
        let mut backtrack: Option<(usize, &str)> = None;
        loop {
            let mut chars = rest.chars();
            let next = chars.next();
            match (tokens.get(t), next) {
                (Some(GlobToken::Any), _) => {
                    t += 1;
                    backtrack = Some((t, rest));
                    continue;
                }
                (Some(GlobToken::One), Some(_)) => {
                    t += 1;
                    rest = chars.as_str();
                    continue;
                }
                (Some(GlobToken::Literal(want)), Some(c)) if *want == c => {
                    t += 1;
                    rest = chars.as_str();
                    continue;
                }
                (None, None) => return true,
                _ => {}
            }
            // Mismatch: let the last `*` eat one more character, if there is one.
            match backtrack {
                Some((resume, eaten)) => {
                    let mut chars = eaten.chars();
                    if chars.next().is_none() {
                        return false;
                    }
                    rest = chars.as_str();
                    backtrack = Some((resume, rest));
                    t = resume;
                }
                None => return false,
            }
        }
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Glob {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// A network in CIDR form, as Postgres's `cidr` type has it: no bits set right of the mask.
/// An address without `/len` is a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let bad = |problem: String| RuleError::Cidr {
            input: text.to_owned(),
            problem,
        };
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| bad(format!("\"{address}\" is not an IPv4 or IPv6 address")))?;
        let max = max_prefix(network);
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad(format!("the prefix length must be 0 to {max}")))?,
        };
        let cidr = Cidr { network, prefix };
        if cidr.masked(network) != network {
            return Err(bad(format!(
                "bits are set right of the /{prefix} mask (did you mean {}/{prefix}?)",
                cidr.masked(network)
            )));
        }
        Ok(cidr)
    }

    /// Whether `address` is in the network. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`,
    /// what a dual-stack listener reports) counts as the IPv4 address.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        address.is_ipv4() == self.network.is_ipv4() && self.masked(address) == self.network
    }

    fn masked(&self, address: IpAddr) -> IpAddr {
        match address {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

fn max_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A rule that is wrong in itself, worded so the user knows which part to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("invalid split: {0}")]
    Split(String),
    #[error("invalid assignment: {0}")]
    Assign(String),
    #[error("invalid name pattern \"{pattern}\": {problem}")]
    Glob { pattern: String, problem: String },
    #[error("invalid CIDR \"{input}\": {problem}")]
    Cidr { input: String, problem: String },
    #[error("invalid guard: {0}")]
    Guard(String),
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

/// Whether the catalog has the rules table in its current shape. A catalog made by an older
/// build has none (or an unused older table) until `init`, `views apply` or a `route` command
/// upgrades it.
pub async fn rules_table_ready(client: &impl GenericClient) -> Result<bool, ControlError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute
                            WHERE attrelid = to_regclass('viewgate.routing_rules')
                              AND attname = 'assign' AND NOT attisdropped)",
            &[],
        )
        .await
        .map_err(|error| ControlError::database("looking for viewgate.routing_rules", &error))?;
    Ok(row.get(0))
}

/// Reads every rule (enabled or not) in evaluation order; empty when the table is missing.
pub async fn load_rules(client: &impl GenericClient) -> Result<CatalogRules, ControlError> {
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
        .map_err(|error| ControlError::database("reading viewgate.routing_rules", &error))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str) -> Glob {
        Glob::parse(pattern).unwrap()
    }

    #[test]
    fn globs_match_star_question_and_escapes() {
        assert!(glob("client-*").matches("client-17"));
        assert!(glob("client-*").matches("client-"));
        assert!(!glob("client-*").matches("Client-1"), "case-sensitive");
        assert!(glob("*").matches(""));
        assert!(glob("a?c").matches("abc"));
        assert!(!glob("a?c").matches("ac"));
        assert!(glob("*-worker-*").matches("billing-worker-3"));
        assert!(!glob("*-worker-*").matches("billing-worker"));
        assert!(glob("a*b*c").matches("aXbYbZc"));
        assert!(!glob("a*b*c").matches("aXbYbZ"));
        assert!(glob("exact").matches("exact"));
        assert!(!glob("exact").matches("exactly"));
        assert!(glob(r"lit\*").matches("lit*"));
        assert!(!glob(r"lit\*").matches("lit-x"));
        assert!(glob("é?").matches("éü"), "characters, not bytes");
        assert!(glob(r"app\[1\]").matches("app[1]"));
        // A pathological pattern stays fast (no exponential backtracking).
        let long = "a".repeat(10_000);
        assert!(!glob("*a*a*a*a*a*a*b").matches(&long));
    }

    #[test]
    fn bad_globs_say_what_is_wrong() {
        for (pattern, expected) in [
            ("", "empty"),
            ("app\\", "lone \\"),
            ("app[12]", "character classes"),
        ] {
            let error = Glob::parse(pattern).unwrap_err().to_string();
            assert!(error.contains(expected), "{pattern}: {error}");
        }
    }

    #[test]
    fn cidrs_contain_their_addresses() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.0.9".parse().unwrap()),
            "v4-mapped"
        );
        assert!(!net.contains("::1".parse().unwrap()));
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert_eq!(host.to_string(), "127.0.0.1/32");
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        let everyone = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(everyone.contains("192.168.1.1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        assert!(
            Cidr::parse("::/0")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
    }

    #[test]
    fn bad_cidrs_say_what_is_wrong() {
        for (input, expected) in [
            ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("10.0.0.0/33", "0 to 32"),
            ("300.0.0.0/8", "not an IPv4 or IPv6 address"),
            ("localhost", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/x", "0 to 32"),
        ] {
            let error = Cidr::parse(input).unwrap_err().to_string();
            assert!(error.contains(expected), "{input}: {error}");
        }
    }

    #[test]
    fn splits_parse_validate_and_round_trip_through_json() {
        let split = Assign::parse_split("v2=10, v1=90").unwrap();
        assert_eq!(
            split,
            Assign::Split(vec![("v2".into(), 10), ("v1".into(), 90)])
        );
        assert_eq!(split.to_string(), "v2=10,v1=90");
        assert_eq!(
            split.to_json().to_string(),
            r#"{"split":[["v2",10],["v1",90]]}"#
        );
        assert_eq!(Assign::from_json(&split.to_json()).unwrap(), split);
        let single = Assign::Version("v2".into());
        assert_eq!(single.to_json().to_string(), r#"{"version":"v2"}"#);
        assert_eq!(Assign::from_json(&single.to_json()).unwrap(), single);
        assert!(
            Assign::parse_split("v2=0,v1=100").is_ok(),
            "a weight may be 0"
        );
        for (input, expected) in [
            ("v2=10,v1=80", "sum to 100, these sum to 90"),
            ("v2=10,v2=90", "appears twice"),
            ("v2", "not VERSION=WEIGHT"),
            ("v2=ten,v1=90", "whole number"),
            ("v2=-5,v1=105", "whole number"),
            ("v2=101", "percentages"),
            ("=100", "empty"),
        ] {
            let error = Assign::parse_split(input).unwrap_err().to_string();
            assert!(error.contains(expected), "{input}: {error}");
        }
        for json in [
            r#"{"version":"v1","split":[]}"#,
            r#"{"split":[["v1","x"]]}"#,
            r#"{"split":[["v1",50]]}"#,
            r#"[]"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            assert!(Assign::from_json(&value).is_err(), "{json}");
        }
    }

    #[test]
    fn guards_are_checked() {
        let guard = Guard {
            error_rate: Some(0.05),
            window: Some(Duration::from_secs(30)),
            min_queries: Some(20),
        };
        assert!(guard.validate().is_ok());
        assert_eq!(guard.to_string(), "errors>0.05 window=30s min=20");
        assert_eq!(Guard::default().to_string(), "-");
        let error = Guard {
            error_rate: Some(1.5),
            ..Guard::default()
        }
        .validate()
        .unwrap_err();
        assert!(error.to_string().contains("at most 1"), "{error}");
    }
}
