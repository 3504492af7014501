//! Why SQL could not be converted into a migration file at all (what converts with gaps is
//! told in notes instead). Apart from `convert`'s other files so that `MigrateError` can wrap
//! it without the converter's dependencies.

/// Why SQL could not be converted at all.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("the SQL does not parse: {0}")]
    Unparsable(String),
    #[error("cannot convert {0}")]
    Unsupported(String),
    #[error("cannot write SQL back from Postgres's parse tree: {0}")]
    Deparse(String),
}
