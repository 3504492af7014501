//! How a running migration reports itself. The control plane only calls these; the command line
//! draws a bar on a terminal or prints JSON lines otherwise (src/cli), and tests collect them.

use super::state::Pacing;

/// Receives a migration's progress as it happens.
pub trait Progress: Send {
    /// A phase or step began (`"expand"`, `"validate public.t_n_check"`, …).
    fn step(&mut self, description: &str);
    /// A backfill advanced: rows done of an estimated total, at `rate` rows per second.
    fn backfill(&mut self, table: &str, rows: u64, estimate: u64, rate: f64);
    /// A backfill's recent pace (as `migrate status` shows it), ahead of its next `backfill`.
    fn pacing(&mut self, _table: &str, _pacing: &Pacing) {}
}

/// Progress nobody watches.
pub struct Silent;

impl Progress for Silent {
    fn step(&mut self, _description: &str) {}
    fn backfill(&mut self, _table: &str, _rows: u64, _estimate: u64, _rate: f64) {}
}
