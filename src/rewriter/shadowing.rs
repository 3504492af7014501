//! The plain data of search-path resolution (`resolution.rs` computes it): the managed names
//! of a version that a relation in another schema could shadow, and where a session's
//! search_path pins an unqualified name instead of the managed table.

use std::collections::BTreeSet;

/// One managed name that a relation in another schema could shadow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameCandidates {
    /// The name as the version's clients write it (folded).
    pub name: String,
    /// Schemas where finding the name means the managed table (or one of its views).
    pub own: BTreeSet<String>,
    /// Other schemas holding a relation of that name.
    pub others: BTreeSet<String>,
}

/// The names of one version that a search_path may resolve elsewhere; empty in the common case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchPathCandidates {
    pub names: Vec<NameCandidates>,
}

impl SearchPathCandidates {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Where an unqualified managed name resolves when not to the managed table: the relation
/// of that name in `schema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub schema: String,
}
