//! What a routing rule assigns: one version, or a sticky weighted split in percent; its
//! catalog JSON, its command-line form (`v2=10,v1=90`) and their validation.

use std::fmt;

use serde::Serialize;

use super::rule_error::RuleError;

/// Weights of a split are percentages.
pub const TOTAL_WEIGHT: u32 = 100;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
