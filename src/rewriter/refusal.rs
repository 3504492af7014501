//! `Refusal`: a statement the rewriter could read but refuses all the same, because viewgate
//! would have to write the base table for it and cannot do so exactly (a COPY … FROM column
//! the version lacks, an upsert form it cannot map). The proxy answers it with 42601 and the
//! position; it is never forwarded.

/// Why a read statement is refused. `offset` is a byte offset into the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub offset: Option<usize>,
}

impl Refusal {
    pub fn new(reason: impl Into<String>, offset: Option<usize>) -> Self {
        Refusal {
            reason: reason.into(),
            offset,
        }
    }
}

/// Why `CREATE [MATERIALIZED] VIEW` over managed table `table` is refused: a view's
/// definition is not rewritten (built on the version's view, it would hold the view in place
/// against `views apply` and `migrate complete`), and as written it reads the base table.
pub fn view_definition(table: &str, version: &str, view: &str) -> String {
    format!(
        "a view's definition is not rewritten, and as written this one reads managed table \"{table}\" whole, with columns version \"{version}\" does not have; name the version's view ({view}) to build on this version, or create the view over a direct connection to build it on the base table"
    )
}
