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
