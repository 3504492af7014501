//! Two results of one statement compared over the columns both have (by name): row count, and
//! a checksum of the rows — a multiset checksum (order-insensitive: the wrapping sum of each
//! row's hash) unless the statement orders its rows, then a hash chain in row order. When they
//! differ, a capped sample of the rows only one side has (values cut, or hashed when the run
//! redacts).

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Rows per side in a difference's sample.
pub const MAX_SAMPLE_ROWS: usize = 5;
/// Characters kept of each value in a sample.
pub const MAX_SAMPLE_VALUE_LEN: usize = 200;

/// One result, as text (the simple protocol's form), in row order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    /// What its rows cost against `MAX_SHADOW_RESULT_BYTES`.
    pub fn bytes(&self) -> usize {
        self.rows
            .iter()
            .fold(0usize, |sum, row| sum.saturating_add(row_bytes(row)))
    }
}

/// What a value costs against `MAX_SHADOW_RESULT_BYTES` besides its text: its slot in the
/// row (so a result of many NULLs counts too).
pub const SHADOW_VALUE_OVERHEAD: usize = std::mem::size_of::<Option<String>>();

/// What one row costs against `MAX_SHADOW_RESULT_BYTES`: each value's text and its slot.
pub fn row_bytes(row: &[Option<String>]) -> usize {
    row.iter().fold(0usize, |sum, value| {
        sum.saturating_add(SHADOW_VALUE_OVERHEAD)
            .saturating_add(value.as_ref().map_or(0, String::len))
    })
}

/// A comparison's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub from_rows: usize,
    pub to_rows: usize,
    /// The columns compared (both versions have them).
    pub columns: Vec<String>,
    /// Rows only the old version returned, and only the new one (capped).
    pub only_from: Vec<Vec<Option<String>>>,
    pub only_to: Vec<Vec<Option<String>>>,
}

/// The columns of `from` that `to` also has, as (index in from, index in to), first
/// occurrence of each name.
fn shared(from: &ResultSet, to: &ResultSet) -> Vec<(usize, usize)> {
    let mut seen = std::collections::HashSet::new();
    from.columns
        .iter()
        .enumerate()
        .filter(|(_, name)| seen.insert(name.as_str()))
        .filter_map(|(i, name)| to.columns.iter().position(|c| c == name).map(|j| (i, j)))
        .collect()
}

fn project(row: &[Option<String>], indexes: impl Iterator<Item = usize>) -> Vec<Option<String>> {
    indexes.map(|i| row.get(i).cloned().flatten()).collect()
}

fn row_hash(row: &[Option<String>]) -> [u8; 16] {
    let mut hasher = Sha256::new();
    for value in row {
        match value {
            None => hasher.update([0u8]),
            Some(text) => {
                hasher.update([1u8]);
                hasher.update((text.len() as u64).to_le_bytes());
                hasher.update(text.as_bytes());
            }
        }
    }
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The checksum of projected rows: order-insensitive unless `ordered`.
fn checksum(rows: &[Vec<Option<String>>], ordered: bool) -> u128 {
    if ordered {
        rows.iter().fold(0u128, |chain, row| {
            let mut hasher = Sha256::new();
            hasher.update(chain.to_le_bytes());
            hasher.update(row_hash(row));
            let digest = hasher.finalize();
            u128::from_le_bytes(digest[..16].try_into().unwrap_or([0; 16]))
        })
    } else {
        rows.iter().fold(0u128, |sum, row| {
            sum.wrapping_add(u128::from_le_bytes(row_hash(row)))
        })
    }
}

/// `None` when the results agree over the shared columns.
pub fn compare(
    from: &ResultSet,
    to: &ResultSet,
    ordered: bool,
    redact: bool,
) -> Option<Difference> {
    let pairs = shared(from, to);
    let from_rows: Vec<_> = from
        .rows
        .iter()
        .map(|row| project(row, pairs.iter().map(|(i, _)| *i)))
        .collect();
    let to_rows: Vec<_> = to
        .rows
        .iter()
        .map(|row| project(row, pairs.iter().map(|(_, j)| *j)))
        .collect();
    if from_rows.len() == to_rows.len()
        && checksum(&from_rows, ordered) == checksum(&to_rows, ordered)
    {
        return None;
    }
    // Rows one side has more often than the other.
    let mut balance: HashMap<&Vec<Option<String>>, i64> = HashMap::new();
    for row in &from_rows {
        *balance.entry(row).or_default() += 1;
    }
    for row in &to_rows {
        *balance.entry(row).or_default() -= 1;
    }
    let sample = |rows: &[Vec<Option<String>>], sign: i64| -> Vec<Vec<Option<String>>> {
        let mut left = balance.clone();
        rows.iter()
            .filter(|row| {
                let count = left.entry(row).or_default();
                if *count * sign > 0 {
                    *count -= sign;
                    true
                } else {
                    false
                }
            })
            .take(MAX_SAMPLE_ROWS)
            .map(|row| shown(row, redact))
            .collect()
    };
    let mut only_from = sample(&from_rows, 1);
    let mut only_to = sample(&to_rows, -1);
    if only_from.is_empty() && only_to.is_empty() {
        // Same rows, another order: show the first position where they part.
        if let Some(at) = (0..from_rows.len()).find(|&i| from_rows[i] != to_rows[i]) {
            only_from.push(shown(&from_rows[at], redact));
            only_to.push(shown(&to_rows[at], redact));
        }
    }
    Some(Difference {
        from_rows: from.rows.len(),
        to_rows: to.rows.len(),
        columns: pairs
            .iter()
            .map(|(i, _)| from.columns[*i].clone())
            .collect(),
        only_from,
        only_to,
    })
}

/// A row as a sample shows it: values cut to [`MAX_SAMPLE_VALUE_LEN`], or hashed.
fn shown(row: &[Option<String>], redact: bool) -> Vec<Option<String>> {
    row.iter()
        .map(|value| {
            value.as_ref().map(|text| {
                if redact {
                    let digest = Sha256::digest(text.as_bytes());
                    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
                    format!("sha256:{hex}")
                } else {
                    text.chars().take(MAX_SAMPLE_VALUE_LEN).collect()
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(columns: &[&str], rows: &[&[&str]]) -> ResultSet {
        ResultSet {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: rows
                .iter()
                .map(|row| row.iter().map(|v| Some((*v).to_owned())).collect())
                .collect(),
        }
    }

    #[test]
    fn a_result_costs_its_text_and_a_slot_per_value() {
        let slot = SHADOW_VALUE_OVERHEAD;
        assert_eq!(row_bytes(&[None, None]), 2 * slot, "NULLs count too");
        let result = set(&["id", "name"], &[&["1", "abc"], &["22", ""]]);
        assert_eq!(result.bytes(), 4 * slot + 1 + 3 + 2);
    }

    #[test]
    fn rows_compare_as_multisets_over_shared_columns() {
        let v1 = set(&["id", "name"], &[&["1", "a"], &["2", "b"]]);
        let v2 = set(
            &["id", "extra", "name"],
            &[&["2", "x", "b"], &["1", "y", "a"]],
        );
        assert_eq!(
            compare(&v1, &v2, false, false),
            None,
            "order and extra columns do not matter"
        );
        let reordered = compare(&v1, &v2, true, false).expect("ordered: the order matters");
        assert_eq!(
            reordered.only_from,
            vec![vec![Some("1".into()), Some("a".into())]]
        );
        let changed = set(&["id", "name"], &[&["1", "a"], &["2", "planted"]]);
        let difference = compare(&v1, &changed, false, false).unwrap();
        assert_eq!((difference.from_rows, difference.to_rows), (2, 2));
        assert_eq!(
            difference.only_from,
            vec![vec![Some("2".into()), Some("b".into())]]
        );
        assert_eq!(
            difference.only_to,
            vec![vec![Some("2".into()), Some("planted".into())]]
        );
        let duplicate = set(&["id", "name"], &[&["1", "a"], &["1", "a"]]);
        assert!(
            compare(&v1, &duplicate, false, false).is_some(),
            "a multiset, not a set"
        );
        let redacted = compare(&v1, &changed, false, true).unwrap();
        let value = redacted.only_to[0][1].clone().unwrap();
        assert!(
            value.starts_with("sha256:") && !value.contains("planted"),
            "{value}"
        );
    }
}
