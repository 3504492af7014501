//! Migration progress for people and for machines: a bar with rate and ETA when standard error
//! is a terminal, one JSON object a line on standard error otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::control::migrate::Progress;

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
                    "{prefix} [{bar:40}] {pos}/{len} rows, {per_sec}, ETA {eta}",
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
}

/// At most one backfill line per table this often (and the last one).
const JSON_LINE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct JsonLines {
    last_line: HashMap<String, Instant>,
}

impl Progress for JsonLines {
    fn step(&mut self, description: &str) {
        eprintln!("{}", serde_json::json!({ "step": description }));
    }

    fn backfill(&mut self, table: &str, rows: u64, estimate: u64, rate: f64) {
        let now = Instant::now();
        let due = self
            .last_line
            .get(table)
            .is_none_or(|last| now.duration_since(*last) >= JSON_LINE_INTERVAL);
        if !due && rows < estimate {
            return;
        }
        self.last_line.insert(table.to_owned(), now);
        eprintln!(
            "{}",
            serde_json::json!({
                "backfill": table,
                "rows": rows,
                "estimate": estimate,
                "rows_per_second": rate.round(),
            })
        );
    }
}
