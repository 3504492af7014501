//! The one error of the rule model: a rule that is wrong in itself. Its own file so that the
//! parts of a rule (assignment, guard) can return it without depending on the rule.

use super::cidr::CidrError;
use super::glob::GlobError;

/// A rule that is wrong in itself, worded so the user knows which part to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("invalid split: {0}")]
    Split(String),
    #[error("invalid assignment: {0}")]
    Assign(String),
    #[error(transparent)]
    Glob(#[from] GlobError),
    #[error(transparent)]
    Cidr(#[from] CidrError),
    #[error("invalid guard: {0}")]
    Guard(String),
}
