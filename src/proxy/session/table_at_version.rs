//! A constraint violation on a managed table's base table, told by the name the session's
//! version gives the table. While a migration renames a table (`rename_table`), the base
//! table keeps its old name until the contract, and the new version's clients write the new
//! one: Postgres's message, detail and table field named the base table, which that version
//! does not have (naming it there is refused as an undefined table). Postgres's English
//! wording is followed (`relation "t"`, `table "t"`); a translated message keeps its text,
//! and the table field is changed all the same.

use bytes::BytesMut;

use super::progress::Progress;
use crate::protocol::backend;
use crate::rewriter::error_detail;
use crate::rewriter::targets::RelationName;
use crate::router::SharedRouting;

/// SQLSTATE class 23: integrity constraint violations, whose message and table field name
/// the table.
const INTEGRITY_CONSTRAINT_CLASS: &str = "23";

/// How Postgres's messages and details quote a table they name.
const TABLE_WORDS: &[&str] = &["relation", "table"];

/// `frame`, an ErrorResponse, with the managed tables it names told by the version's names
/// for them where those differ from the base tables'; `None`: it stands.
pub(super) fn told_by_version_names(
    progress: &Progress,
    routing: &SharedRouting,
    frame: &[u8],
) -> Option<BytesMut> {
    let fields = backend::error_fields(frame)?;
    if !fields.code.starts_with(INTEGRITY_CONSTRAINT_CLASS) {
        return None;
    }
    let targets = progress.version_targets()?;
    let state = routing.load();
    let renamed = |schema: &str, table: &str| {
        let base = RelationName::new(schema, table);
        let name = error_detail::table_at_version(&base, &targets)?;
        (state.is_base_table(schema, table) && name != table).then(|| name.to_owned())
    };
    // The table the error is about and, for a foreign key, the table it references (the
    // message of a delete that leaves a row referencing it names both).
    let own = renamed(&fields.schema, &fields.table);
    let referenced = state
        .referenced_base_table(&fields.schema, &fields.table, &fields.constraint)
        .and_then(|(schema, table)| Some((table.clone(), renamed(&schema, &table)?)));
    let renames: Vec<(String, String)> = own
        .iter()
        .map(|name| (fields.table.clone(), name.clone()))
        .chain(referenced)
        .collect();
    if renames.is_empty() {
        return None;
    }
    let message = in_version_names(&fields.message, &renames);
    let detail = in_version_names(&fields.detail, &renames);
    let table = own.as_deref().unwrap_or(&fields.table);
    let mut replaced = vec![
        (backend::FIELD_MESSAGE, message.as_str()),
        (backend::FIELD_TABLE, table),
    ];
    if !fields.detail.is_empty() {
        replaced.push((backend::FIELD_DETAIL, detail.as_str()));
    }
    backend::with_fields(frame, &replaced)
}

/// `text` with each `relation "base"` / `table "base"` of `renames` (base, version's name)
/// told by the version's name.
fn in_version_names(text: &str, renames: &[(String, String)]) -> String {
    let mut told = text.to_owned();
    for (base, name) in renames {
        for word in TABLE_WORDS {
            told = told.replace(&format!("{word} \"{base}\""), &format!("{word} \"{name}\""));
        }
    }
    told
}
