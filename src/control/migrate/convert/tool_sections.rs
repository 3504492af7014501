//! The up and down sections of migration tools that keep both in one SQL file: dbmate
//! (`-- migrate:up`, `-- migrate:down`), goose (`-- +goose Up`, `-- +goose Down`) and
//! sql-migrate (`-- +migrate Up`, `-- +migrate Down`).
//!
//! To Postgres's parser the markers are comments, so a file converted whole had its down
//! section read as more of the change: the dbmate walk's `ALTER TABLE orders DROP COLUMN
//! shipped_at` undoing an added column became a `drop_column` after the `add_column`, a
//! migration that would drop the column at its complete. A viewgate migration's rollback is
//! `viewgate migrate rollback`, derived from the operations, so the down section is left out
//! and a note says so. Lines are blanked rather than removed, so a parser error's position in
//! what is kept is its position in the file.

/// A marker line's start (after its leading spaces, ASCII case ignored), and the section it
/// opens.
const MARKERS: &[(&str, Section)] = &[
    ("-- migrate:up", Section::Up),
    ("-- migrate:down", Section::Down),
    ("-- +goose up", Section::Up),
    ("-- +goose down", Section::Down),
    ("-- +migrate up", Section::Up),
    ("-- +migrate down", Section::Down),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Up,
    Down,
}

/// `sql` without its down sections, and the marker of the first one left out, if any.
pub fn without_down_sections(sql: &str) -> (String, Option<String>) {
    let mut kept = String::with_capacity(sql.len());
    let mut section = Section::Up;
    let mut left_out = None;
    for line in sql.split_inclusive('\n') {
        if let Some((marker, opens)) = marker(line) {
            section = opens;
            if opens == Section::Down && left_out.is_none() {
                left_out = Some(marker.trim().to_owned());
            }
        }
        match section {
            Section::Up => kept.push_str(line),
            Section::Down => kept.extend(line.chars().filter(|c| *c == '\n')),
        }
    }
    (kept, left_out)
}

/// The marker `line` starts with, as written, and the section it opens. A marker must end
/// where its word does (dbmate's options may follow: `-- migrate:up transaction:false`).
fn marker(line: &str) -> Option<(&str, Section)> {
    let text = line.trim_start();
    MARKERS.iter().find_map(|&(marker, opens)| {
        let head = text.get(..marker.len())?;
        let ends = text[marker.len()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
        (head.eq_ignore_ascii_case(marker) && ends).then_some((head, opens))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tools_down_section_is_left_out_and_lines_kept() {
        for (sql, marker) in [
            (
                "-- migrate:up\nALTER TABLE t ADD COLUMN c int;\n\n-- migrate:down\nALTER TABLE t DROP COLUMN c;\n",
                "-- migrate:down",
            ),
            (
                "-- +goose Up\n-- +goose StatementBegin\nALTER TABLE t ADD COLUMN c int;\n-- +goose StatementEnd\n\n-- +goose Down\nALTER TABLE t DROP COLUMN c;\n",
                "-- +goose Down",
            ),
            (
                "-- +migrate Up\nALTER TABLE t ADD COLUMN c int;\n-- +migrate Down\nALTER TABLE t DROP COLUMN c;",
                "-- +migrate Down",
            ),
        ] {
            let (kept, left_out) = without_down_sections(sql);
            assert_eq!(left_out.as_deref(), Some(marker), "{sql}");
            assert!(kept.contains("ADD COLUMN c int;"), "{kept}");
            assert!(!kept.contains("DROP COLUMN"), "{kept}");
            assert_eq!(
                kept.matches('\n').count(),
                sql.matches('\n').count(),
                "{sql}"
            );
        }
    }

    #[test]
    fn sections_in_any_order_and_text_without_markers() {
        let sql = "-- migrate:down transaction:false\nDROP TABLE t;\n-- migrate:up\nCREATE TABLE t (id int PRIMARY KEY);\n";
        let (kept, left_out) = without_down_sections(sql);
        assert_eq!(left_out.as_deref(), Some("-- migrate:down"));
        assert_eq!(
            kept,
            "\n\n-- migrate:up\nCREATE TABLE t (id int PRIMARY KEY);\n"
        );
        // Not a marker: a longer word, or a marker's words not at the line's start.
        for sql in [
            "-- migrate:downgrade later\nALTER TABLE t DROP COLUMN c;",
            "ALTER TABLE t DROP COLUMN c; -- migrate:down",
            "ALTER TABLE t DROP COLUMN c;",
        ] {
            assert_eq!(without_down_sections(sql), (sql.to_owned(), None), "{sql}");
        }
    }
}
