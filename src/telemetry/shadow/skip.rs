//! Why a sampled statement is not run again: the verdicts of the shadow's two readings of a
//! statement (`classify.rs`, `postgres_reading.rs`).

/// Why a sampled statement is not run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Unparsable,
    /// The text may spell a name without its letters (a Unicode escape, an escape string, a
    /// definition): sqlparser would not read it as Postgres does.
    Unreadable,
    NotOneStatement,
    NotARead,
    Parameters,
    /// Longer than Postgres's parser is asked to read (`postgres_grammar::MAX_CHECKED_BYTES`).
    TooLong,
    /// Calls a built-in that runs SQL given as text or pieced together from its arguments
    /// (`crosstab`, `connectby`, `query_to_xml`, …): neither reading sees that SQL as code.
    RunsText,
}
