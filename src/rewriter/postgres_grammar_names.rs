//! Where a relation name Postgres's parser located stands in the text: its extent (schema,
//! dots, quotes) for the splice, the relation's part of a column reference (`%TYPE`), and
//! whether `TABLE` precedes it (no alias may follow).

use super::super::splice::Tokens;

/// The byte range of the relation name written at `offset` (`name`, `schema.name`,
/// `"Quoted"."Name"`, spaces around the dots), and the range of its last part; `None` when
/// the text there is not a plain name (a comment inside it, say).
pub fn name_extent(
    sql: &str,
    offset: usize,
) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let parts = dotted_parts(sql, offset)?;
    let last = parts.last()?.clone();
    Some((offset..last.end, last))
}

/// The byte range of the relation in the column reference written at `offset`
/// (`table.column`, `schema.table.column`, as a `%TYPE` names a column's type): every part
/// but the last; `None` when the text there is not a plain dotted name of two parts or more.
pub fn relation_of_column_extent(sql: &str, offset: usize) -> Option<std::ops::Range<usize>> {
    match dotted_parts(sql, offset)?.as_slice() {
        [.., relation, _column] => Some(offset..relation.end),
        _ => None,
    }
}

/// The ranges of the parts of the dotted name written at `offset` (spaces around the dots).
fn dotted_parts(sql: &str, offset: usize) -> Option<Vec<std::ops::Range<usize>>> {
    let bytes = sql.as_bytes();
    let mut position = offset;
    let mut parts = Vec::new();
    loop {
        let start = position;
        position = identifier_end(bytes, position)?;
        parts.push(start..position);
        let mut after = position;
        while bytes.get(after).is_some_and(u8::is_ascii_whitespace) {
            after += 1;
        }
        if bytes.get(after) != Some(&b'.') {
            break;
        }
        after += 1;
        while bytes.get(after).is_some_and(u8::is_ascii_whitespace) {
            after += 1;
        }
        position = after;
    }
    Some(parts)
}

/// The edit that gives a table reference whose name spans `name` an alias: `view AS alias`
/// in place of the name and of the inheritance star after it (`name *`: a view has no
/// children, so the star adds nothing), since the alias cannot stand before the star; and
/// for `ONLY (name)`, in place of the name and the closing parenthesis, the alias after it
/// (`ONLY (view) AS alias`), since it cannot stand inside them (the thirty-second red-team
/// pass saw `ONLY(view AS alias)` sent). Comments between count for nothing: the shape
/// cache leaves them out of a statement's shape, so `name /* c */ *` and `name *` must get
/// the same edit (the thirty-third pass had the first poison the second's cache entry).
pub fn aliased(
    sql: &str,
    tokens: &Tokens,
    name: std::ops::Range<usize>,
    view: &str,
    alias: &str,
) -> (std::ops::Range<usize>, String) {
    let around = Neighbours::of(sql, tokens, name.clone());
    match around.after.as_deref() {
        Some("*") => (name.start..around.after_end, format!("{view} AS {alias}")),
        Some(")") if around.is_before(&["(", "only"]) => {
            (name.start..around.after_end, format!("{view}) AS {alias}"))
        }
        _ => (name, format!("{view} AS {alias}")),
    }
}

/// The significant tokens around a name: the one after it, and those before it, nearest
/// first (lower-cased).
struct Neighbours {
    before: Vec<String>,
    after: Option<String>,
    after_end: usize,
}

impl Neighbours {
    /// How many tokens before a name any question here looks at.
    const BEFORE: usize = 3;

    fn of(sql: &str, tokens: &Tokens, name: std::ops::Range<usize>) -> Self {
        let significant = tokens.ranges();
        let text = |range: &std::ops::Range<usize>| {
            sql.get(range.clone())
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        // Tokens are in order and do not overlap, so both ends are found by bisection.
        let before_end = significant.partition_point(|token| token.end <= name.start);
        let after = significant
            .get(significant.partition_point(|token| token.start < name.end))
            .filter(|token| token.start >= name.end);
        Neighbours {
            before: significant[..before_end]
                .iter()
                .rev()
                .take(Self::BEFORE)
                .map(text)
                .collect(),
            after: after.map(text),
            after_end: after.map_or(name.end, |token| token.end),
        }
    }

    /// Whether the tokens right before the name are `words`, nearest first.
    fn is_before(&self, words: &[&str]) -> bool {
        self.before.len() >= words.len() && self.before.iter().zip(words).all(|(a, b)| a == b)
    }
}

/// A byte that continues an unquoted identifier as Postgres's scanner reads it.
fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
}

/// The end of the identifier starting at `start`: a quoted one (`""` inside), or an unquoted
/// one as Postgres's scanner reads it (letters, digits, `_`, `$`, and any non-ASCII byte).
fn identifier_end(bytes: &[u8], start: usize) -> Option<usize> {
    let first = *bytes.get(start)?;
    // `U&"…"` spells the name with escapes: not a name the rewriter splices around.
    if first.eq_ignore_ascii_case(&b'u') && bytes.get(start + 1) == Some(&b'&') {
        return None;
    }
    if first == b'"' {
        let mut i = start + 1;
        loop {
            match bytes.get(i)? {
                b'"' if bytes.get(i + 1) == Some(&b'"') => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
    }
    if !(first.is_ascii_alphabetic() || first == b'_' || first >= 0x80) {
        return None;
    }
    let mut i = start + 1;
    while bytes.get(i).copied().is_some_and(is_identifier_byte) {
        i += 1;
    }
    Some(i)
}

/// Whether the reference at `offset` is the relation of `TABLE [ONLY] name` or `TABLE ONLY
/// (name)`, which take no alias (comments between count for nothing).
pub fn after_table_keyword(sql: &str, tokens: &Tokens, offset: usize) -> bool {
    let around = Neighbours::of(sql, tokens, offset..offset);
    around.is_before(&["table"])
        || around.is_before(&["only", "table"])
        || around.is_before(&["(", "only", "table"])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where this crate's lexer gives up (a Unicode escape), Postgres's scanner reads the
    /// neighbours: never cutting a character in two (a name followed by `é` must not panic),
    /// and skipping comments (the thirty-fourth pass had `--table` read as `TABLE`).
    #[test]
    fn neighbours_read_by_bytes_keep_characters_whole() {
        let sql = "SELECT U&'x' FROM t é";
        let name = sql.find(" t ").unwrap() + 1..sql.find(" t ").unwrap() + 2;
        assert_eq!(
            aliased(sql, &Tokens::of(sql), name.clone(), "v", "t"),
            (name.clone(), "v AS t".to_owned())
        );
        let sql = "TABLE U&\"x\"; TABLE ONLY ( t )";
        let at = sql.rfind('t').unwrap();
        assert!(after_table_keyword(sql, &Tokens::of(sql), at));
        assert_eq!(
            aliased(sql, &Tokens::of(sql), at..at + 1, "v", "t"),
            (at..sql.len(), "v) AS t".to_owned())
        );
        let sql = "SELECT U&'A', (SELECT 1 FROM --table\n t) FROM x";
        assert!(!after_table_keyword(
            sql,
            &Tokens::of(sql),
            sql.find(" t)").unwrap() + 1
        ));
        let sql = "SELECT U&'A' FROM ONLY /*c*/ ( t /*d*/ ) WHERE true";
        let at = sql.find(" t ").unwrap() + 1;
        let close = sql.find(')').unwrap();
        assert_eq!(
            aliased(sql, &Tokens::of(sql), at..at + 1, "v", "t"),
            (at..close + 1, "v) AS t".to_owned())
        );
        let sql = "SELECT U&'A' FROM t /*c*/ * WHERE true";
        let at = sql.find(" t ").unwrap() + 1;
        let star = sql.find(" * ").unwrap() + 1;
        assert_eq!(
            aliased(sql, &Tokens::of(sql), at..at + 1, "v", "t"),
            (at..star + 1, "v AS t".to_owned())
        );
    }
}
