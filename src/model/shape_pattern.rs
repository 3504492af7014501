//! `ShapePattern`, what `viewgate shadow start --match` filters statements by: a pattern over a
//! statement's shape (its text with constants masked as `?`, whitespace collapsed, as the
//! shadow report shows it). Case-insensitive and found anywhere in the shape, like a search
//! box: `model_metadata` matches every statement naming that table; `*` stands for any run of
//! characters (`FROM model_metadata WHERE * = ?`); `?` is literal, so it matches a masked
//! constant. Runs of whitespace in the pattern match one space. Plain data, no I/O.

use std::fmt;

use serde::{Serialize, Serializer};

/// The longest pattern accepted (characters).
pub const MAX_SHAPE_PATTERN_LEN: usize = 1000;

/// A checked `--match` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapePattern {
    /// As given (whitespace collapsed); what the catalog stores and the report shows.
    text: String,
    /// The lower-cased pieces between `*`s, empty ones dropped.
    pieces: Vec<String>,
}

/// A pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--match {pattern:?}: {problem}")]
pub struct ShapePatternError {
    pub pattern: String,
    pub problem: &'static str,
}

impl ShapePattern {
    pub fn parse(text: &str) -> Result<Self, ShapePatternError> {
        let bad = |problem| ShapePatternError {
            pattern: text.chars().take(80).collect(),
            problem,
        };
        if text.chars().count() > MAX_SHAPE_PATTERN_LEN {
            return Err(bad("longer than 1000 characters"));
        }
        if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
            return Err(bad("contains a control character"));
        }
        let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let pieces: Vec<String> = collapsed
            .split('*')
            .filter(|piece| !piece.is_empty())
            .map(str::to_lowercase)
            .collect();
        if pieces.iter().all(|piece| piece.trim().is_empty()) {
            return Err(bad(
                "matches every statement (leave --match out to shadow all reads)",
            ));
        }
        Ok(ShapePattern {
            text: collapsed,
            pieces,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `shape` contains the pattern's pieces in order (case-insensitive).
    pub fn matches(&self, shape: &str) -> bool {
        let shape = shape.to_lowercase();
        let mut rest = shape.as_str();
        for piece in &self.pieces {
            match rest.find(piece.as_str()) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

impl fmt::Display for ShapePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for ShapePattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_anywhere_case_insensitively_with_stars() {
        let shape = "SELECT id, model_name FROM model_metadata WHERE id = ?";
        for (pattern, expected) in [
            ("model_metadata", true),
            ("MODEL_METADATA", true),
            ("from   model_metadata\twhere", true),
            ("select * from model_metadata where id = ?", true),
            ("SELECT*WHERE*?", true),
            ("WHERE * FROM", false),
            ("id = 5", false),
            ("other_table", false),
        ] {
            let parsed = ShapePattern::parse(pattern).unwrap();
            assert_eq!(parsed.matches(shape), expected, "{pattern}");
        }
        assert_eq!(
            ShapePattern::parse(" a   b ").unwrap().as_str(),
            "a b",
            "whitespace collapsed"
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        for (pattern, problem) in [
            ("", "matches every statement"),
            ("  ", "matches every statement"),
            ("**", "matches every statement"),
            ("a\u{0}b", "control character"),
            (&"x".repeat(MAX_SHAPE_PATTERN_LEN + 1), "longer than"),
        ] {
            let error = ShapePattern::parse(pattern).unwrap_err();
            assert!(error.problem.contains(problem), "{pattern:?}: {error}");
        }
    }
}
