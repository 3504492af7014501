//! Relations that hold a managed table's base rows, or point at them, under names of their
//! own: partitions and inheritance children (their rows are the base table's, with every base
//! column) and foreign keys into it (a violation's detail prints the referenced key). A
//! session at a version must be refused the first by name and shown neither's hidden values
//! (the thirty-fifth red-team pass read a partition by name, and hidden key values from
//! another table's foreign-key error).

use std::collections::BTreeMap;

use serde::Serialize;

/// A base table by schema and name.
pub type BaseTable = (String, String);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BaseTableKin {
    /// Partitions and inheritance children at any depth, (schema, name) → the managed base
    /// table they descend from.
    pub descendants: BTreeMap<(String, String), BaseTable>,
    /// Foreign keys into a base table or a descendant, (schema, table, constraint) of the
    /// referencing side → the base table referenced.
    pub references: BTreeMap<(String, String, String), BaseTable>,
}

impl BaseTableKin {
    /// The base table `schema.table` descends from, if it is a partition or child of one.
    pub fn ancestor(&self, schema: &str, table: &str) -> Option<&BaseTable> {
        self.descendants.get(&(schema.to_owned(), table.to_owned()))
    }

    /// The base table constraint `constraint` of `schema.table` references, if any.
    pub fn referenced(&self, schema: &str, table: &str, constraint: &str) -> Option<&BaseTable> {
        self.references
            .get(&(schema.to_owned(), table.to_owned(), constraint.to_owned()))
    }
}
