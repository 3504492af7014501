//! Where a relation name Postgres's parser located stands in the text: its extent (schema,
//! dots, quotes) for the splice, the relation's part of a column reference (`%TYPE`), and
//! whether `TABLE` precedes it (no alias may follow).

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
/// pass saw `ONLY(view AS alias)` sent).
pub fn aliased(
    sql: &str,
    name: std::ops::Range<usize>,
    view: &str,
    alias: &str,
) -> (std::ops::Range<usize>, String) {
    let bytes = sql.as_bytes();
    let mut after = name.end;
    while bytes.get(after).is_some_and(u8::is_ascii_whitespace) {
        after += 1;
    }
    match bytes.get(after) {
        Some(b'*') => (name.start..after + 1, format!("{view} AS {alias}")),
        Some(b')') if after_only_parenthesis(bytes, name.start) => {
            (name.start..after + 1, format!("{view}) AS {alias}"))
        }
        _ => (name, format!("{view} AS {alias}")),
    }
}

/// Whether `ONLY (` stands right before `at` (whitespace between).
fn after_only_parenthesis(bytes: &[u8], at: usize) -> bool {
    let before = |mut at: usize| {
        while at > 0 && bytes[at - 1].is_ascii_whitespace() {
            at -= 1;
        }
        at
    };
    let open = before(at);
    if open == 0 || bytes[open - 1] != b'(' {
        return false;
    }
    let end = before(open - 1);
    let Some(start) = end.checked_sub(4) else {
        return false;
    };
    bytes[start..end].eq_ignore_ascii_case(b"only")
        && (start == 0 || !is_identifier_byte(bytes[start - 1]))
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

/// Whether the reference at `offset` is the relation of `TABLE [ONLY] name`, which takes no
/// alias.
pub fn after_table_keyword(sql: &str, offset: usize) -> bool {
    let mut before = sql.get(..offset).unwrap_or_default().trim_end();
    let word = |text: &str, word: &str| {
        text.len() >= word.len()
            && text[text.len() - word.len()..].eq_ignore_ascii_case(word)
            && !text[..text.len() - word.len()]
                .bytes()
                .next_back()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'"')
    };
    if word(before, "only") {
        before = before[..before.len() - "only".len()].trim_end();
    }
    word(before, "table")
}
