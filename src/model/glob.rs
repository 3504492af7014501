//! A glob over names (`*`, `?`, `\` escapes), the matcher routing rules use for user,
//! database and application names. General: it knows nothing of rules.

use std::fmt;

use serde::Serialize;

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
    pub fn parse(text: &str) -> Result<Self, GlobError> {
        let bad = |problem: &str| GlobError {
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

/// A pattern that is not a glob, worded so the user knows which character to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name pattern \"{pattern}\": {problem}")]
pub struct GlobError {
    pub pattern: String,
    pub problem: String,
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
}
