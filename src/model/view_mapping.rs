//! How one version's view maps onto its base table, column by column, as `views apply` (and
//! `migrate start`) records it in `viewgate.version_objects.mapping`.
//!
//! The data plane needs it where Postgres cannot write through the view itself and the
//! rewriter writes the base table instead: `COPY … FROM` through an auto-updatable view (Postgres
//! refuses to copy to any view without an INSTEAD OF INSERT trigger) becomes a COPY into the
//! base table with the view's columns mapped to base columns; an upsert through a
//! trigger-backed view and a MERGE into any view (which PostgreSQL before 17 refuses) become
//! statements on the base table that read and write as the view does. What decides whether that is
//! exact is recorded too: each view column's own default (an insert through the view applies
//! it, a COPY into the base table applies the base column's), and identity columns. A version
//! applied before the mapping existed has none, and its statements are rewritten as before.

use serde::{Deserialize, Serialize};

/// What a view's name takes to name its mapping functions, before their digest
/// (`model_metadata_v2_map_f00682cdb3a2`): how `views apply` names them and how the rewriter
/// knows a client naming one.
pub const MAPPING_FUNCTION_INFIX: &str = "_map_";

/// One view's mapping onto its base table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewMapping {
    /// Whether the view writes through an INSTEAD OF trigger (it has expression columns or
    /// hidden defaults); otherwise Postgres updates it by itself.
    pub trigger_backed: bool,
    /// The view's columns, in the view's order.
    pub columns: Vec<MappedColumn>,
    /// For a trigger-backed view, the base columns its trigger's INSERT writes, and from what.
    #[serde(default)]
    pub insert: Vec<WriteAssignment>,
    /// For a trigger-backed view, the base columns its trigger's UPDATE writes, and from what.
    #[serde(default)]
    pub update: Vec<WriteAssignment>,
    /// The mapping's expressions and defaults are functions of the view's schema
    /// (`read_function`, `default_function`, `WriteAssignment::function`) and its types are
    /// spelled so that no name in them is looked up on the client's search_path. A mapping an
    /// older viewgate recorded has neither; the statements that would paste it are refused
    /// until `views apply` runs again.
    #[serde(default)]
    pub pinned: bool,
}

impl ViewMapping {
    /// The view's names for base columns `bases`, where it shows each as a plain or renamed
    /// column.
    pub fn view_names_of(&self, bases: &[String]) -> Option<Vec<String>> {
        bases
            .iter()
            .map(|base| {
                let mut shown = self.columns.iter();
                let column = shown.find(|column| column.base_column.as_ref() == Some(base));
                column.map(|column| column.name.clone())
            })
            .collect()
    }
}

/// One column of the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappedColumn {
    /// The column's name in the view.
    pub name: String,
    /// The base column it shows (plain or renamed); `None` for an expression column.
    pub base_column: Option<String>,
    /// The read expression over the base row, for an expression column.
    pub expression: Option<String>,
    /// The view column's type, as a cast names it: `format_type`'s SQL keyword spelling
    /// (`integer`, `character varying(20)`), otherwise schema-qualified (`pg_catalog.text`,
    /// `public.mood[]`), so the client's temporary schema cannot stand in for it.
    pub type_name: String,
    /// The view's own default for the column (`pg_get_expr`), if it has one.
    pub default: Option<String>,
    /// The base column's default, if it has one (plain and renamed columns).
    pub base_default: Option<String>,
    /// The base column is an identity column `GENERATED ALWAYS` (`attidentity = 'a'`).
    #[serde(default)]
    pub base_identity_always: bool,
    /// For an expression column, the function (qualified and quoted) that reads it over a
    /// base row (`control::views::mapping_functions`).
    #[serde(default)]
    pub read_function: Option<String>,
    /// For a column the view has a default for, the function that computes it.
    #[serde(default)]
    pub default_function: Option<String>,
}

/// One base column a trigger-backed view's INSERT writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAssignment {
    pub base_column: String,
    /// Written from this view column as it is (`NEW.col`).
    pub view_column: Option<String>,
    /// Or computed by this expression of the spec's over `NEW` (and, on UPDATE, `OLD`).
    pub expression: Option<String>,
    /// On UPDATE, the expression applies only when this view column changed (otherwise the
    /// base column keeps its value).
    #[serde(default)]
    pub when_changed: Option<String>,
    /// For an expression, the function (qualified and quoted) that computes it from the
    /// view-shaped `new` and `old` rows.
    #[serde(default)]
    pub function: Option<String>,
}

impl ViewMapping {
    /// The view column named `name` (as Postgres stores it: folded, case-sensitive).
    pub fn column(&self, name: &str) -> Option<&MappedColumn> {
        self.columns.iter().find(|column| column.name == name)
    }
}

impl MappedColumn {
    /// Whether an insert that leaves this column out stores what the base column's own
    /// default gives: the view has no default of its own, or the same one.
    pub fn base_default_applies(&self) -> bool {
        self.default.is_none() || self.default == self.base_default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_mapping_without_the_later_fields() {
        let json = r#"{"trigger_backed": false, "columns": [{"name": "full_name",
            "base_column": "name", "expression": null, "type_name": "text",
            "default": null, "base_default": null}]}"#;
        let mapping: ViewMapping = serde_json::from_str(json).unwrap();
        let column = mapping.column("full_name").unwrap();
        assert_eq!(column.base_column.as_deref(), Some("name"));
        assert!(column.base_default_applies());
        assert!(mapping.insert.is_empty() && mapping.update.is_empty());
        assert!(mapping.column("name").is_none());
        // Recorded before the mapping functions: no functions, not pinned (refused where the
        // proxy would paste it).
        assert!(!mapping.pinned);
        assert!(column.read_function.is_none() && column.default_function.is_none());
    }

    #[test]
    fn a_key_is_named_as_the_view_names_its_columns_or_not_at_all() {
        let column = |name: &str, base: Option<&str>| MappedColumn {
            name: name.into(),
            base_column: base.map(str::to_owned),
            expression: base.is_none().then(|| "upper(code)".to_owned()),
            type_name: "text".into(),
            default: None,
            base_default: None,
            base_identity_always: false,
            read_function: None,
            default_function: None,
        };
        let mapping = ViewMapping {
            trigger_backed: true,
            columns: vec![
                column("model_id", Some("id")),
                column("tenant", Some("tenant")),
                column("code", None),
            ],
            insert: Vec::new(),
            update: Vec::new(),
            pinned: true,
        };
        let bases = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            mapping.view_names_of(&bases(&["tenant", "id"])),
            Some(vec!["tenant".to_owned(), "model_id".to_owned()])
        );
        assert_eq!(mapping.view_names_of(&bases(&["id", "code"])), None);
        assert_eq!(mapping.view_names_of(&bases(&["id", "hidden"])), None);
    }

    #[test]
    fn a_view_default_of_its_own_does_not_let_the_base_default_apply() {
        let column = |default: Option<&str>, base: Option<&str>| MappedColumn {
            name: "c".into(),
            base_column: Some("c".into()),
            expression: None,
            type_name: "integer".into(),
            default: default.map(str::to_owned),
            base_default: base.map(str::to_owned),
            base_identity_always: false,
            read_function: None,
            default_function: None,
        };
        assert!(column(None, Some("1")).base_default_applies());
        assert!(column(Some("1"), Some("1")).base_default_applies());
        assert!(!column(Some("2"), Some("1")).base_default_applies());
        assert!(!column(Some("2"), None).base_default_applies());
    }
}
