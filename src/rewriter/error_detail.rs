//! What a version's client is told of a constraint violation on a managed table's base table.
//!
//! A write through a version's view fails at the base table, and Postgres's detail speaks in
//! the base table's terms: NOT NULL and CHECK violations print the failing row whole ("Failing
//! row contains (…)"), unique, exclusion and foreign key violations the key ("Key (a, b)=(…)
//! already exists"). A version must not be shown columns it does not have, so the row is
//! never shown, and a key only when each of its columns is one the version sees (a renamed one
//! under the version's name); the proxy replaces the detail, never the message or SQLSTATE.
//! A view's check option violation names no table, and its row may be a base table's: its
//! detail is replaced at every version with managed tables. One violation is told otherwise
//! whole: a check standing in for a NOT NULL (a migration's, until its contract) on a column
//! the version shows NOT NULL is told as the NOT NULL violation it becomes at the contract.
//! And an undefined column's message names the table, not the version's view.

use super::identifier::quote_identifier;
use super::targets::{RelationName, VersionTargets};
use crate::model::identifier::MIGRATION_NAME_PREFIX;

/// In place of a failing row.
pub const HIDDEN_ROW_DETAIL: &str = "viewgate: the failing row is the base table's, with columns this version does not see; it is not shown";
/// In place of a key the version does not see whole. While a migration is live the key may be
/// an older version's copy of a column the version has in a column of its own (v1's `email`
/// beside v2's): "columns this version does not see under these names" misled there (the
/// Node walk), since the version does have an `email`.
pub const HIDDEN_KEY_DETAIL: &str = "viewgate: the key is the base table's, over columns this version does not see (a column it hides, or, while a migration is live, an older version's copy of one it has); it is not shown";

/// How Postgres prints a failing row (`ExecBuildSlotValueDescription`), before and after
/// its values.
const FAILING_ROW_PREFIX: &str = "Failing row contains (";
const FAILING_ROW_SUFFIX: &str = ").";

pub const NOT_NULL_VIOLATION: &str = "23502";
pub const CHECK_VIOLATION: &str = "23514";
const UNIQUE_VIOLATION: &str = "23505";
pub const FOREIGN_KEY_VIOLATION: &str = "23503";
/// A foreign key's `ON DELETE` / `ON UPDATE RESTRICT` violated: its detail prints the
/// referenced table's key, as a NO ACTION key's "is still referenced" does.
pub const RESTRICT_VIOLATION: &str = "23001";
const EXCLUSION_VIOLATION: &str = "23P01";
/// A view's `WITH CHECK OPTION` violated: its detail is the failing row of the relation
/// written, the base table's whole when the view is over a version's view, and Postgres names
/// no table in the error (the ninth red-team pass read hidden values so).
pub const WITH_CHECK_OPTION_VIOLATION: &str = "44000";
pub const UNDEFINED_COLUMN: &str = "42703";

/// The detail a client of `targets`' version gets instead of `detail`, for an error with
/// SQLSTATE `code` about `base` (a managed table's base table); `None`: the detail stands.
pub fn for_version(
    code: &str,
    detail: &str,
    base: &RelationName,
    targets: &VersionTargets,
) -> Option<String> {
    match code {
        NOT_NULL_VIOLATION | CHECK_VIOLATION => Some(HIDDEN_ROW_DETAIL.to_owned()),
        UNIQUE_VIOLATION | FOREIGN_KEY_VIOLATION | RESTRICT_VIOLATION | EXCLUSION_VIOLATION => {
            match key_for_version(code, detail, base, targets) {
                Key::Same => None,
                Key::Renamed(detail) => Some(detail),
                Key::Hidden => Some(HIDDEN_KEY_DETAIL.to_owned()),
            }
        }
        _ => None,
    }
}

/// Whose columns a foreign key violation's `Key (…)=(…)` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOwner {
    /// The referencing table's: an insert or update of it found no referenced row.
    Referencing,
    /// The referenced table's: an update or delete of it left a row referencing the key.
    Referenced,
}

/// Which table's columns the key in `detail`, a foreign key violation's, lists, by Postgres's
/// wording (ri_triggers.c, `ri_ReportViolation`): the referencing table's in `… is not present
/// in table "t".`, the referenced table's in `… is still referenced from table "t".` and
/// RESTRICT's `… is referenced from table "t".`. The error's table field names the
/// referencing table in every case, so it cannot tell. The phrase found last decides: the
/// key's values, which a client writes, come before it and may spell the other one. `None`:
/// another error, or a wording not recognised (a translated one).
pub fn foreign_key_owner(code: &str, detail: &str) -> Option<KeyOwner> {
    if !(code == FOREIGN_KEY_VIOLATION || code == RESTRICT_VIOLATION)
        || !detail.starts_with("Key (")
    {
        return None;
    }
    let absent = detail.rfind(") is not present in table \"");
    let referenced = detail
        .rfind(") is still referenced from table \"")
        .max(detail.rfind(") is referenced from table \""));
    match (absent, referenced) {
        (Some(absent), Some(referenced)) if absent > referenced => Some(KeyOwner::Referencing),
        (Some(_), None) => Some(KeyOwner::Referencing),
        (_, Some(_)) => Some(KeyOwner::Referenced),
        (None, None) => None,
    }
}

/// The name a client of `targets`' version knows base column `base_column` of `base` by,
/// where the version shows it as a plain or renamed column (not through an expression).
pub fn shown_column(
    base_column: &str,
    base: &RelationName,
    targets: &VersionTargets,
) -> Option<String> {
    let mapping = &targets.base_write_of(base)?.mapping;
    mapping.view_names_of(&[base_column.to_owned()])?.pop()
}

/// The name a client of `targets`' version knows the column replacing base column
/// `base_column` of `base` by: a migration to one of `versions` that retypes or renames a
/// column gives the new version a column of its own, `_vg_<version>_<base column>`, and its
/// `down` fills the old column from it, so a NULL written to the new column fails the old
/// column's NOT NULL, which the new version does not see.
pub fn replacing_column(
    base_column: &str,
    base: &RelationName,
    targets: &VersionTargets,
    versions: &[&str],
) -> Option<String> {
    let stand_ins: Vec<String> = versions
        .iter()
        .map(|version| format!("{MIGRATION_NAME_PREFIX}{version}_{base_column}"))
        .collect();
    let mapping = &targets.base_write_of(base)?.mapping;
    mapping
        .columns
        .iter()
        .find(|column| {
            column
                .base_column
                .as_ref()
                .is_some_and(|shown| stand_ins.contains(shown))
        })
        .map(|column| column.name.clone())
}

/// The failing row `detail` of `base`, whose columns were `base_columns` in order when the
/// catalog was last read, as `targets`' version is shown it: its values in the version's
/// column order, where the version's view shows every one of those columns once, plainly or
/// renamed, and nothing else (a table no migration has changed, or one whose contract left
/// the version's shape, the base's columns perhaps in another order: a retyped column's
/// replacement comes last); `None` where it shows any other (the row is then hidden). The
/// row must print exactly that many values: a column added since the catalog was read (the
/// proxy learns of it a moment later) would print another. A value holding `, ` reads as
/// two, and the row is hidden: never shown wrongly.
pub fn row_for_version(
    detail: &str,
    base: &RelationName,
    base_columns: &[String],
    targets: &VersionTargets,
) -> Option<String> {
    let write = targets.base_write_of(base)?;
    let values: Vec<&str> = detail
        .strip_prefix(FAILING_ROW_PREFIX)?
        .strip_suffix(FAILING_ROW_SUFFIX)?
        .split(", ")
        .collect();
    let shown = &write.mapping.columns;
    if values.len() != base_columns.len() || shown.len() != base_columns.len() {
        return None;
    }
    let mut taken = vec![false; base_columns.len()];
    let mut in_version_order = Vec::with_capacity(values.len());
    for column in shown {
        // A column read through an expression prints its base value otherwise.
        if column.expression.is_some() {
            return None;
        }
        let base_column = column.base_column.as_deref()?;
        let position = base_columns.iter().position(|name| name == base_column)?;
        if std::mem::replace(&mut taken[position], true) {
            return None;
        }
        in_version_order.push(values[position]);
    }
    Some(format!(
        "{FAILING_ROW_PREFIX}{}{FAILING_ROW_SUFFIX}",
        in_version_order.join(", ")
    ))
}

/// The name `targets`' version gives the managed table whose base table is `base` (its own
/// name unless a migration renames it, until the contract).
pub fn table_at_version<'t>(base: &RelationName, targets: &'t VersionTargets) -> Option<&'t str> {
    targets
        .managed()
        .iter()
        .find(|target| {
            targets
                .base_write(target)
                .is_some_and(|write| write.base == *base)
        })
        .map(|target| target.table.name.as_str())
}

/// Postgres's message for a NULL in NOT NULL column `column` of `relation`.
pub fn not_null_message(column: &str, relation: &str) -> String {
    format!(
        "null value in column \"{column}\" of relation \"{relation}\" violates not-null constraint"
    )
}

/// Postgres's message for an INSERT or UPDATE that names a column the relation it writes does
/// not have names that relation: at a version, the version's view (`model_metadata_v2`), a
/// name the client never wrote. The same message naming the table as the version does, where
/// it names one of the version's views.
pub fn undefined_column_message(message: &str, targets: &VersionTargets) -> Option<String> {
    let rest = message.strip_prefix("column \"")?;
    let (column, relation) = rest.rsplit_once("\" of relation \"")?;
    let relation = relation.strip_suffix("\" does not exist")?;
    let target = targets.managed().iter().find(|t| t.view.name == relation)?;
    Some(format!(
        "column \"{column}\" of relation \"{}\" does not exist",
        target.table.name
    ))
}

enum Key {
    Same,
    Renamed(String),
    Hidden,
}

/// `Key (a, b)=(…) …` with the columns in the version's names.
fn key_for_version(code: &str, detail: &str, base: &RelationName, targets: &VersionTargets) -> Key {
    let Some(mapping) = targets.base_write_of(base).map(|write| &write.mapping) else {
        return Key::Hidden;
    };
    let Some((columns, rest)) = detail
        .strip_prefix("Key (")
        .and_then(|after| after.split_once(")=("))
    else {
        return Key::Hidden;
    };
    let mut renamed = false;
    let mut names = Vec::new();
    for column in columns.split(", ") {
        let Some(base_column) = column_name(column) else {
            return Key::Hidden;
        };
        let Some(shown) = mapping
            .columns
            .iter()
            .find(|c| c.base_column.as_deref() == Some(base_column.as_str()))
        else {
            return Key::Hidden;
        };
        renamed |= shown.name != base_column;
        names.push(quote_identifier(&shown.name));
    }
    match renamed {
        false => Key::Same,
        // An exclusion violation names the key twice; only the plain forms are rewritten.
        true if code == EXCLUSION_VIOLATION => Key::Hidden,
        true => Key::Renamed(format!("Key ({})=({rest}", names.join(", "))),
    }
}

/// A column as an index's column list prints it: a name, bare or double-quoted; `None` for an
/// expression.
fn column_name(text: &str) -> Option<String> {
    if let Some(quoted) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Some(quoted.replace("\"\"", "\""));
    }
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c == '_' || c == '$' || c.is_ascii_lowercase() || c.is_ascii_digit());
    plain.then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MappedColumn, ViewMapping};
    use crate::rewriter::targets::{BaseWrite, ViewTarget};
    use std::sync::Arc;

    fn column(name: &str, base_column: Option<&str>) -> MappedColumn {
        MappedColumn {
            name: name.into(),
            base_column: base_column.map(str::to_owned),
            expression: None,
            type_name: "text".into(),
            default: None,
            base_default: None,
            base_identity_always: false,
            read_function: None,
            default_function: None,
        }
    }

    fn targets() -> (RelationName, VersionTargets) {
        let base = RelationName::new("public", "customers");
        let view = RelationName::new("public", "customers_v2");
        let mapping = ViewMapping {
            trigger_backed: false,
            columns: vec![
                column("id", Some("id")),
                column("full_name", Some("name")),
                column("Email", Some("email")),
                column("label", None),
            ],
            insert: Vec::new(),
            update: Vec::new(),
            pinned: true,
        };
        let targets = VersionTargets::new(
            "v2",
            vec![ViewTarget {
                table: base.clone(),
                view: view.clone(),
            }],
        )
        .with_base_write(
            view,
            BaseWrite {
                base: base.clone(),
                mapping: Arc::new(mapping),
            },
        );
        (base, targets)
    }

    /// A row is shown in the version's order only where the version shows each base column
    /// once and nothing else: `targets()` has an expression column, so never; a view of the
    /// base columns in another order, always; one naming a base column twice, never.
    #[test]
    fn a_failing_row_is_shown_in_the_versions_order_or_not_at_all() {
        let row = "Failing row contains (1, ada, a@x).";
        let base_columns: Vec<String> = ["id", "name", "email"].map(str::to_owned).to_vec();
        let (base, with_expression) = targets();
        assert_eq!(
            row_for_version(row, &base, &base_columns, &with_expression),
            None
        );
        let shaped = |columns: Vec<MappedColumn>| {
            let view = RelationName::new("public", "customers_v3");
            let mapping = ViewMapping {
                trigger_backed: false,
                columns,
                insert: Vec::new(),
                update: Vec::new(),
                pinned: true,
            };
            let target = ViewTarget {
                table: base.clone(),
                view: view.clone(),
            };
            let write = BaseWrite {
                base: base.clone(),
                mapping: Arc::new(mapping),
            };
            VersionTargets::new("v3", vec![target]).with_base_write(view, write)
        };
        let reordered = shaped(vec![
            column("email", Some("email")),
            column("id", Some("id")),
            column("full_name", Some("name")),
        ]);
        assert_eq!(
            row_for_version(row, &base, &base_columns, &reordered).as_deref(),
            Some("Failing row contains (a@x, 1, ada).")
        );
        let twice = shaped(vec![
            column("id", Some("id")),
            column("name", Some("name")),
            column("again", Some("name")),
        ]);
        assert_eq!(row_for_version(row, &base, &base_columns, &twice), None);
        // A value holding `, ` reads as two: hidden, never misread.
        assert_eq!(
            row_for_version(
                "Failing row contains (1, ada, lovelace, a@x).",
                &base,
                &base_columns,
                &reordered
            ),
            None
        );
    }

    #[test]
    fn a_foreign_key_s_wording_says_whose_key_it_prints() {
        let owner = |code: &str, detail: &str| foreign_key_owner(code, detail);
        assert_eq!(
            owner(
                "23503",
                "Key (category_id)=(9) is not present in table \"shop_category\"."
            ),
            Some(KeyOwner::Referencing)
        );
        assert_eq!(
            owner(
                "23503",
                "Key (id)=(1) is still referenced from table \"shop_product\"."
            ),
            Some(KeyOwner::Referenced)
        );
        assert_eq!(
            owner(
                "23001",
                "Key (code)=(x) is referenced from table \"shop_product\"."
            ),
            Some(KeyOwner::Referenced)
        );
        // A value spelling the other phrase comes before the real one.
        assert_eq!(
            owner(
                "23503",
                "Key (name)=(a) is still referenced from table \"b) is not present in table \"t\"."
            ),
            Some(KeyOwner::Referencing)
        );
        assert_eq!(
            owner(
                "23503",
                "Key (name)=(a) is not present in table \"b) is still referenced from table \"t\"."
            ),
            Some(KeyOwner::Referenced)
        );
        for unknown in [
            ("23503", "Key is not present in table \"t\"."),
            (
                "23503",
                "Schlüssel (id)=(1) ist nicht in Tabelle »t« vorhanden.",
            ),
            ("23505", "Key (id)=(1) is not present in table \"t\"."),
        ] {
            assert_eq!(owner(unknown.0, unknown.1), None, "{unknown:?}");
        }
    }

    #[test]
    fn rows_are_never_shown_and_keys_only_in_the_version_s_names() {
        let (base, targets) = targets();
        let detail = |code: &str, text: &str| for_version(code, text, &base, &targets);
        assert_eq!(
            detail("23502", "Failing row contains (1, null, secret).").as_deref(),
            Some(HIDDEN_ROW_DETAIL)
        );
        assert_eq!(detail("23505", "Key (id)=(1) already exists."), None);
        assert_eq!(
            detail("23505", "Key (name, id)=(bert, 1) already exists.").as_deref(),
            Some("Key (full_name, id)=(bert, 1) already exists.")
        );
        assert_eq!(
            detail("23503", "Key (email)=(x) is not present in table \"t\".").as_deref(),
            Some("Key (\"Email\")=(x) is not present in table \"t\".")
        );
        for hidden in [
            "Key (secret)=(x) already exists.",
            "Key (lower(name))=(x) already exists.",
            "Schlüssel (id)=(1) existiert bereits.",
        ] {
            assert_eq!(
                detail("23505", hidden).as_deref(),
                Some(HIDDEN_KEY_DETAIL),
                "{hidden}"
            );
        }
        assert_eq!(
            detail(
                "23P01",
                "Key (name)=(a) conflicts with existing key (name)=(b)."
            )
            .as_deref(),
            Some(HIDDEN_KEY_DETAIL)
        );
        assert_eq!(
            detail("23001", "Key (secret)=(x) is referenced from table \"t\".").as_deref(),
            Some(HIDDEN_KEY_DETAIL)
        );
        assert_eq!(detail("22012", "anything"), None);
        assert_eq!(
            shown_column("name", &base, &targets).as_deref(),
            Some("full_name")
        );
        assert_eq!(shown_column("label", &base, &targets), None);
        assert_eq!(
            undefined_column_message(
                "column \"a\" of relation \"b\" of relation \"customers_v2\" does not exist",
                &targets
            )
            .as_deref(),
            Some("column \"a\" of relation \"b\" of relation \"customers\" does not exist")
        );
        for stands in [
            "column \"a\" of relation \"orders_v2\" does not exist",
            "column \"a\" does not exist",
            "Spalte »a« von Relation »customers_v2« existiert nicht",
        ] {
            assert_eq!(undefined_column_message(stands, &targets), None, "{stands}");
        }
        assert_eq!(
            not_null_message("full_name", "customers"),
            "null value in column \"full_name\" of relation \"customers\" violates not-null constraint"
        );
        // A base table without a recorded mapping: no key is shown.
        let other = RelationName::new("public", "orders");
        assert_eq!(
            for_version("23505", "Key (id)=(1) already exists.", &other, &targets).as_deref(),
            Some(HIDDEN_KEY_DETAIL)
        );
    }
}
