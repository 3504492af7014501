//! Migration progress for people and for machines: a bar with rate and ETA when standard error
//! is a terminal, one JSON object a line on standard error otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::control::migrate::Progress;
use crate::control::migrate::state::Pacing;
use crate::control::migrate::status::yielding;

/// Picks the bar on a terminal and JSON lines elsewhere.
pub fn for_stderr() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(JsonLines::default())
    }
}

#[derive(Default)]
struct Bars {
    bars: HashMap<String, ProgressBar>,
}

impl Progress for Bars {
    fn step(&mut self, description: &str) {
        eprintln!("{description}");
    }

    fn backfill(&mut self, table: &str, rows: u64, estimate: u64, _rate: f64) {
        let bar = self.bars.entry(table.to_owned()).or_insert_with(|| {
            let bar = ProgressBar::new(estimate);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:40}] {pos}/{len} rows, {per_sec}, ETA {eta}{msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(table.to_owned());
            bar
        });
        bar.set_length(estimate.max(rows));
        bar.set_position(rows);
        if rows >= estimate {
            bar.finish();
        }
    }

    fn pacing(&mut self, table: &str, pacing: &Pacing) {
        if let Some(bar) = self.bars.get(table) {
            let note = pacing
                .waiting_for_standby
                .clone()
                .or_else(|| yielding(pacing))
                .map(|text| format!(", {text}"));
            bar.set_message(note.unwrap_or_default());
        }
    }
}

impl JsonLines {
    /// The line for a backfill's advance at `now`, unless one for its table was printed less
    /// than [`JSON_LINE_INTERVAL`] ago (the last one always is, once).
    fn line(
        &mut self,
        table: &str,
        rows: u64,
        estimate: u64,
        rate: f64,
        now: Instant,
    ) -> Option<serde_json::Value> {
        let last = self.last_line.get(table);
        let due = last.is_none_or(|(at, _)| now.duration_since(*at) >= JSON_LINE_INTERVAL);
        let finished = rows >= estimate;
        let said_so = last.is_some_and(|(_, said)| *said == rows);
        if !due && (!finished || said_so) {
            return None;
        }
        self.last_line.insert(table.to_owned(), (now, rows));
        let mut line = serde_json::json!({
            "backfill": table,
            "rows": rows,
            "estimate": estimate,
            "rows_per_second": rate.round(),
        });
        if let Some(share) = self.working_share.get(table) {
            line["working_share"] = serde_json::json!((share * 100.0).round() / 100.0);
        }
        Some(line)
    }
}

impl JsonLines {
    /// The line saying the backfill of `table` waits for a standby, when it has just begun
    /// to, or at most once a [`JSON_LINE_INTERVAL`] while it goes on.
    fn waiting_line(
        &mut self,
        table: &str,
        pacing: &Pacing,
        now: Instant,
    ) -> Option<serde_json::Value> {
        let Some(waiting) = &pacing.waiting_for_standby else {
            self.waiting_since_line.remove(table);
            return None;
        };
        let due = self
            .waiting_since_line
            .get(table)
            .is_none_or(|last| now.duration_since(*last) >= JSON_LINE_INTERVAL);
        if !due {
            return None;
        }
        self.waiting_since_line.insert(table.to_owned(), now);
        Some(serde_json::json!({ "backfill": table, "waiting": waiting }))
    }
}

/// At most one backfill line per table this often (and the last one).
const JSON_LINE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct JsonLines {
    /// When each table's last line was printed, and the rows it said.
    last_line: HashMap<String, (Instant, u64)>,
    /// Each table's share of time in batches, as last heard.
    working_share: HashMap<String, f64>,
    /// When each table waiting for a standby last had a line saying so.
    waiting_since_line: HashMap<String, Instant>,
}

impl Progress for JsonLines {
    fn step(&mut self, description: &str) {
        eprintln!("{}", serde_json::json!({ "step": description }));
    }

    fn backfill(&mut self, table: &str, rows: u64, estimate: u64, rate: f64) {
        if let Some(line) = self.line(table, rows, estimate, rate, Instant::now()) {
            eprintln!("{line}");
        }
    }

    fn pacing(&mut self, table: &str, pacing: &Pacing) {
        self.working_share
            .insert(table.to_owned(), pacing.working_share);
        // No backfill line comes while the backfill waits for a standby: this one says why.
        if let Some(line) = self.waiting_line(table, pacing, Instant::now()) {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_come_once_a_second_and_carry_the_share_of_time_in_batches() {
        let mut lines = JsonLines::default();
        let start = Instant::now();
        let first = lines.line("public.t", 100, 1000, 50.4, start).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"backfill": "public.t", "rows": 100, "estimate": 1000,
                "rows_per_second": 50.0})
        );
        lines.pacing(
            "public.t",
            &Pacing {
                rows_per_second: 50.0,
                working_share: 0.234,
                batch_rows: 100,
                protected_p99_ms: Some(1.0),
                waiting_for_standby: None,
            },
        );
        let soon = start + Duration::from_millis(200);
        assert_eq!(lines.line("public.t", 200, 1000, 50.0, soon), None);
        let later = start + JSON_LINE_INTERVAL;
        let paced = lines.line("public.t", 300, 1000, 50.0, later).unwrap();
        assert_eq!(paced["working_share"], serde_json::json!(0.23));
        let last = lines.line("public.t", 1000, 1000, 50.0, later).unwrap();
        assert_eq!(last["rows"], 1000, "the last line is never held back");
        assert_eq!(
            lines.line("public.t", 1000, 1000, 49.0, later),
            None,
            "nor said twice"
        );
    }

    #[test]
    fn waiting_for_a_standby_is_said_at_once_then_once_a_second() {
        let mut lines = JsonLines::default();
        let waiting = Pacing {
            waiting_for_standby: Some("waiting for standby walreceiver".into()),
            ..Pacing::default()
        };
        let start = Instant::now();
        assert_eq!(
            lines.waiting_line("public.t", &waiting, start),
            Some(serde_json::json!({"backfill": "public.t",
                "waiting": "waiting for standby walreceiver"}))
        );
        let soon = start + Duration::from_millis(500);
        assert_eq!(lines.waiting_line("public.t", &waiting, soon), None);
        let later = start + JSON_LINE_INTERVAL;
        assert!(lines.waiting_line("public.t", &waiting, later).is_some());
        assert_eq!(
            lines.waiting_line("public.t", &Pacing::default(), later),
            None
        );
        assert!(
            lines.waiting_line("public.t", &waiting, later).is_some(),
            "a new wait is said at once"
        );
    }
}
