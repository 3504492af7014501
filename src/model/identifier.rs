//! Postgres's identifier length: names longer than it are cut, quoted or not, so every layer
//! that reads or makes a name (the rewriter folding one, the router reading a setting's value,
//! the control plane naming a view or column) cuts or refuses at the same length.

/// The longest identifier Postgres keeps, in bytes (`NAMEDATALEN - 1`): longer ones are cut,
/// quoted or not, at a character boundary.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// What the names of a migration's own columns and indexes start with (`_vg_v2_price`,
/// `_vg_v2_models_pkey`), which the proxy recognises too.
pub const MIGRATION_NAME_PREFIX: &str = "_vg_";

/// `name` as Postgres keeps it: its first [`MAX_IDENTIFIER_BYTES`] bytes, cut before a
/// character that would not fit whole.
pub fn truncate_identifier(name: &str) -> &str {
    let mut end = name.len().min(MAX_IDENTIFIER_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_the_limit_never_inside_a_character() {
        assert_eq!(truncate_identifier("short"), "short");
        let long = "a".repeat(70);
        assert_eq!(truncate_identifier(&long), &long[..63]);
        let wide = format!("{}é", "a".repeat(62));
        assert_eq!(truncate_identifier(&wide), "a".repeat(62));
    }
}
