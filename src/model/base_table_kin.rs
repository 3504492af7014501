//! Relations that hold a managed table's base rows, or point at them, under names of their
//! own: its relatives, partitions and inheritance children (their rows are the base table's,
//! with every base column) and the tables it is a partition or child of (a parent's scan
//! reads the base rows with the parent's columns), and foreign keys into them (a violation's
//! detail prints the referenced key). A session at a version must be refused the relatives
//! by name and shown neither's hidden values (the thirty-fifth red-team pass read a partition
//! by name, and hidden key values from another table's foreign-key error; the thirty-ninth
//! read the base rows through a parent).

use std::collections::BTreeMap;

use serde::Serialize;

/// A base table by schema and name.
pub type BaseTable = (String, String);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BaseTableKin {
    /// Partitions, inheritance children and parents at any depth, (schema, name) → the
    /// managed base table they are related to.
    pub relatives: BTreeMap<(String, String), BaseTable>,
    /// Foreign keys into a base table or a relative, (schema, table, constraint) of the
    /// referencing side → the base table referenced.
    pub references: BTreeMap<(String, String, String), BaseTable>,
    /// The base tables' primary keys and unique constraints that may arbitrate an upsert
    /// (not deferrable), (schema, table, constraint) → their key's base columns in order: an
    /// upsert naming one `ON CONSTRAINT` through a view Postgres writes itself is given its
    /// columns instead, since a view has no constraints (`rewriter::references_conflict`).
    pub unique_keys: BTreeMap<(String, String, String), Vec<String>>,
    /// Which of `unique_keys` is each base table's primary key: base table → constraint. A
    /// view has none, so Postgres does not let a query grouped by the key read the row's
    /// other columns through it (`rewriter::references_group_by` adds them to the GROUP BY).
    pub primary_keys: BTreeMap<BaseTable, String>,
    /// The base tables' validated checks that stand in for a NOT NULL, `CHECK (column IS NOT
    /// NULL)` (a migration's, until its contract makes the column NOT NULL), (schema, table,
    /// constraint) → the column: a version that shows the column NOT NULL is told of a
    /// violation as of a NOT NULL (`rewriter::error_detail`).
    pub not_null_checks: BTreeMap<(String, String, String), String>,
    /// The base tables' columns in order, as a failing row prints its values: a version that
    /// shows every one of them, in any order, may be shown the row in its order
    /// (`rewriter::error_detail::row_for_version`).
    pub columns: BTreeMap<BaseTable, Vec<String>>,
    /// The unique indexes a migration built over the columns replacing a key's (twins of
    /// unique constraints and primary keys, `_vg_<version>_<constraint>`, which the contract
    /// makes the constraints), (schema, table, index) → their key's base columns
    /// (`model::shown_keys`).
    pub rebuilt_keys: BTreeMap<(String, String, String), Vec<String>>,
}

impl BaseTableKin {
    /// The base table `schema.table` is a relative of, if it is a partition, child or parent
    /// of one.
    pub fn related_base(&self, schema: &str, table: &str) -> Option<&BaseTable> {
        self.relatives.get(&(schema.to_owned(), table.to_owned()))
    }

    /// Whether `schema.table` has a foreign key into a base table or a relative: its rows
    /// hold the referenced key's values, hidden columns' too (a cascaded action's failing
    /// row shows them: the thirty-sixth red-team pass).
    pub fn references_a_base_table(&self, schema: &str, table: &str) -> bool {
        self.references
            .keys()
            .any(|(s, t, _)| s == schema && t == table)
    }

    /// The primary keys and unique constraints of base table `schema.table` that may
    /// arbitrate an upsert: (constraint, its key's base columns).
    pub fn unique_keys_of<'a>(
        &'a self,
        schema: &'a str,
        table: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a [String])> + 'a {
        self.unique_keys
            .iter()
            .filter(move |((s, t, _), _)| s == schema && t == table)
            .map(|((_, _, constraint), columns)| (constraint.as_str(), columns.as_slice()))
    }

    /// The primary key of base table `schema.table`, if it has one: its base columns.
    pub fn primary_key_of(&self, schema: &str, table: &str) -> Option<&[String]> {
        let constraint = self
            .primary_keys
            .get(&(schema.to_owned(), table.to_owned()))?;
        self.unique_keys
            .get(&(schema.to_owned(), table.to_owned(), constraint.clone()))
            .map(Vec::as_slice)
    }

    /// The columns of base table `schema.table`, in order.
    pub fn columns_of(&self, schema: &str, table: &str) -> Option<&[String]> {
        self.columns
            .get(&(schema.to_owned(), table.to_owned()))
            .map(Vec::as_slice)
    }

    /// The column check `constraint` of base table `schema.table` stands in a NOT NULL for.
    pub fn not_null_check(&self, schema: &str, table: &str, constraint: &str) -> Option<&str> {
        self.not_null_checks
            .get(&(schema.to_owned(), table.to_owned(), constraint.to_owned()))
            .map(String::as_str)
    }

    /// The base table constraint `constraint` of `schema.table` references, if any.
    pub fn referenced(&self, schema: &str, table: &str, constraint: &str) -> Option<&BaseTable> {
        self.references
            .get(&(schema.to_owned(), table.to_owned(), constraint.to_owned()))
    }
}
