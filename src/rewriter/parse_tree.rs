//! A parse tree read from libpg_query's JSON, borrowing its text wherever it can.
//!
//! `serde_json::Value` would do, but it allocates a `String` for every key of every node and
//! keeps objects in a map; the check reads a few fields of a few nodes, so keys and strings
//! here borrow from the JSON text (only strings with escapes are copied) and objects are
//! small vectors searched in order. The walk that reads it is in `postgres_grammar.rs`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One JSON value of the tree. Numbers other than integers (none appear in parse trees that
/// the walk reads) and `null`s are kept only as [`Tree::Other`].
#[derive(Debug, Clone, PartialEq)]
pub enum Tree<'a> {
    Object(Vec<(Cow<'a, str>, Tree<'a>)>),
    Array(Vec<Tree<'a>>),
    Text(Cow<'a, str>),
    Integer(i64),
    Bool(bool),
    Other,
}

impl<'a> Tree<'a> {
    /// Reads `json`; fails on malformed JSON or nesting deeper than serde_json's limit (128).
    pub fn read(json: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The field `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Tree<'a>> {
        match self {
            Tree::Object(fields) => fields
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Tree::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Tree::Integer(value) => Some(*value),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Tree::Bool(value) => Some(*value),
            _ => None,
        }
    }

    pub fn as_array(&self) -> &[Tree<'a>] {
        match self {
            Tree::Array(items) => items,
            _ => &[],
        }
    }
}

impl<'de> Deserialize<'de> for Tree<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON parse tree")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        Ok(Tree::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Tree::Integer(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(value).map_or(Tree::Other, Tree::Integer))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Tree::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Tree::Other)
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Tree::Text(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Tree::Text(Cow::Owned(value.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Tree::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(Key(key)) = map.next_key()? {
            fields.push((key, map.next_value()?));
        }
        Ok(Tree::Object(fields))
    }
}

/// An object key, borrowed unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Tree::deserialize(deserializer)? {
            Tree::Text(text) => Ok(Key(text)),
            _ => Err(de::Error::custom("an object key that is not a string")),
        }
    }
}

/// The parts of a qualified name, a list of `String` nodes (`["pg_catalog", "int4"]`).
pub fn name_parts<'t>(list: Option<&'t Tree>) -> Vec<&'t str> {
    list.map(Tree::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|part| part.get("String")?.get("sval")?.as_text())
        .collect()
}

/// A node's `location`: libpg_query leaves out integer fields that are 0, and -1 means
/// "unknown".
pub fn location(node: &Tree) -> Option<usize> {
    node.get("location")
        .map_or(Some(0), Tree::as_integer)
        .and_then(|l| usize::try_from(l).ok())
}

/// A constant (possibly cast: `'x'::text`), the `A_Const` node.
pub fn constant<'t>(argument: &'t Tree<'t>) -> Option<&'t Tree<'t>> {
    argument
        .get("A_Const")
        .or_else(|| argument.get("TypeCast")?.get("arg")?.get("A_Const"))
}

/// A string constant (possibly cast) and its byte offset.
pub fn string_constant<'t>(argument: &'t Tree<'t>) -> Option<(&'t str, usize)> {
    let constant = constant(argument)?;
    let text = constant.get("sval")?.get("sval")?.as_text()?;
    Some((text, location(constant)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_text_and_copies_escaped_text() {
        let json =
            r#"{"RangeVar":{"relname":"a\"b","inh":true,"location":-1,"alias":null},"x":[1,2.5]}"#;
        let tree = Tree::read(json).unwrap();
        let range_var = tree.get("RangeVar").unwrap();
        assert_eq!(
            range_var.get("relname").and_then(Tree::as_text),
            Some("a\"b")
        );
        assert!(matches!(
            range_var.get("relname"),
            Some(Tree::Text(Cow::Owned(_)))
        ));
        assert_eq!(range_var.get("inh").and_then(Tree::as_bool), Some(true));
        assert_eq!(
            range_var.get("location").and_then(Tree::as_integer),
            Some(-1)
        );
        assert_eq!(range_var.get("alias"), Some(&Tree::Other));
        assert_eq!(
            tree.get("x").unwrap().as_array(),
            &[Tree::Integer(1), Tree::Other]
        );
        assert!(
            matches!(tree, Tree::Object(ref fields) if matches!(fields[0].0, Cow::Borrowed(_)))
        );
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(Tree::read(&deep).is_err());
    }
}
