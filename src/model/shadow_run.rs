//! A shadow run as the proxies read it from the catalog (`viewgate shadow start`): which
//! version's read-only statements (those matching its pattern) are sampled, at what rate, to
//! be run again at which version and compared; how many comparisons it may spend; whether samples keep values. Plain data;
//! the sampling is `proxy::shadow_tap`, the comparing `telemetry::shadow`.

use serde::Serialize;

use super::shape_pattern::ShapePattern;

/// The most comparisons one run may spend, over every proxy (`--budget`).
pub const MAX_SHADOW_BUDGET: u64 = 10_000_000;
/// The budget when `shadow start` gives none.
pub const DEFAULT_SHADOW_BUDGET: u64 = 10_000;
/// The outcomes a sampled statement ends in, one each, by the names the counters, the catalog,
/// `/metrics` and the report use: so the outcomes of a settled run add up to its samples.
pub const SHADOW_OUTCOMES: &[&str] = &[
    "matched",
    "diff",
    "nondeterministic",
    "error",
    "timeout",
    "skipped",
    "too_large",
    "role_refused",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowRun {
    pub id: i64,
    /// The version whose sessions' statements are sampled.
    pub from: String,
    /// The version they are run again at.
    pub to: String,
    /// Fraction of eligible statements sampled (0 < rate ≤ 1).
    pub rate: f64,
    /// Comparisons allowed over every proxy before the run stops by itself.
    pub budget: u64,
    /// Differing rows are recorded as hashes, not values.
    pub redact: bool,
    /// Only statements whose shape matches are sampled (`--match`); `None`: every read.
    pub pattern: Option<ShapePattern>,
}
