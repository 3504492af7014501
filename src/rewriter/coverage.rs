//! Which byte ranges a text's edits cover, asked of every token of a text the rewriter reads
//! for names it may have missed (`rewrite::unaccounted_mention`): answered by bisection over
//! the edits sorted by start, with the furthest end reached so far, since edits may nest.

use std::ops::Range;

use super::splice::Edit;

/// Whether a range lies inside one of the edits, by bisection: asking each edit for each
/// token made a text naming a table thousands of times quadratic (forty-second red-team
/// pass).
pub struct Coverage {
    /// The edits' (start, end), by start.
    spans: Vec<(usize, usize)>,
    /// The furthest end among the spans up to each one (edits may nest).
    reach: Vec<usize>,
}

impl Coverage {
    pub fn of(edits: &[Edit]) -> Self {
        let mut spans: Vec<(usize, usize)> = edits
            .iter()
            .map(|edit| (edit.range.start, edit.range.end))
            .collect();
        spans.sort_unstable();
        let reach = spans
            .iter()
            .scan(0, |furthest, &(_, end)| {
                *furthest = end.max(*furthest);
                Some(*furthest)
            })
            .collect();
        Coverage { spans, reach }
    }

    pub fn covers(&self, range: Range<usize>) -> bool {
        let starting_before = self
            .spans
            .partition_point(|&(start, _)| start <= range.start);
        starting_before > 0 && self.reach[starting_before - 1] >= range.end
    }
}
