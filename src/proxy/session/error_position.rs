//! Where an error's position points: into the text the client sent. Postgres counts an error's
//! position (the ErrorResponse's `P` field, a 1-based character offset) in the text it
//! received, which the proxy rewrote (`FROM orders` became `FROM public.orders_v1 AS orders`),
//! so every position after an edit pointed at the wrong word or past the client's text: psql
//! printed no caret, JDBC tools and IDEs marked the wrong token. The texts of the statements
//! the proxy rewrote are kept until their batch is answered, and a position is carried back
//! through the alignment of the two texts: into the same character where the rewrite kept it,
//! to the start of what an edit replaced where it falls inside one. A statement too long to
//! keep loses its position rather than keep a wrong one.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use similar::TextDiff;

use crate::protocol::backend;

/// The longest text kept for mapping positions, of each of the client's and the rewrite.
pub const MAX_MAPPED_STATEMENT_BYTES: usize = 64 * 1024;

/// The longest the alignment of two texts may take; past it the alignment is coarser (and a
/// position within a long unchanged stretch may then land at its start).
const ALIGNMENT_TIMEOUT: Duration = Duration::from_millis(5);

/// A statement the proxy rewrote: where it stands among the batch's statements, and both texts
/// (`None` when too long to keep).
struct SentText {
    batch: u64,
    /// Its place among the batch's Query and Parse messages, from 0.
    ordinal: u32,
    texts: Option<(Box<str>, Box<str>)>,
}

/// The rewritten statements not yet answered, as both pumps see them.
#[derive(Default)]
pub(super) struct SentTexts {
    texts: Mutex<VecDeque<SentText>>,
    /// `texts` is not empty: a batch with no rewritten statement takes no lock.
    waiting: AtomicU32,
    /// The batch the client side counts statements in, and how many Query and Parse messages
    /// it has sent in it.
    counting_batch: AtomicU64,
    counted: AtomicU32,
    /// Parses Postgres answered in the batch it is answering.
    parses_answered: AtomicU32,
}

impl SentTexts {
    /// The place of the next Query or Parse sent in `batch` among that batch's.
    pub(super) fn next_ordinal(&self, batch: u64) -> u32 {
        if self.counting_batch.swap(batch, Ordering::Relaxed) != batch {
            self.counted.store(0, Ordering::Relaxed);
        }
        self.counted.fetch_add(1, Ordering::Relaxed)
    }

    /// Keeps the texts of a statement sent as `rewritten` in place of `original`.
    pub(super) fn rewritten(&self, batch: u64, ordinal: u32, original: &str, rewritten: &str) {
        let texts = (original.len() <= MAX_MAPPED_STATEMENT_BYTES
            && rewritten.len() <= MAX_MAPPED_STATEMENT_BYTES)
            .then(|| (original.into(), rewritten.into()));
        self.with_texts(|sent| {
            sent.push_back(SentText {
                batch,
                ordinal,
                texts,
            })
        });
        self.waiting.fetch_add(1, Ordering::Relaxed);
    }

    /// Postgres answered a Parse of batch `batch`: its text is done with (so a client piling
    /// Parses up without a Sync keeps no more texts than are in flight).
    pub(super) fn parse_answered(&self, batch: u64) {
        let answered = self.parses_answered.fetch_add(1, Ordering::Relaxed) + 1;
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.with_texts(|sent| {
            while sent.front().is_some_and(|text| {
                text.batch < batch || (text.batch == batch && text.ordinal < answered)
            }) {
                sent.pop_front();
                self.waiting.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }

    /// How many Parses Postgres answered so far in the batch it is answering.
    pub(super) fn parses_answered_now(&self) -> u32 {
        self.parses_answered.load(Ordering::Relaxed)
    }

    /// Postgres answered batches up to `answered` (its count): their statements are done.
    pub(super) fn batch_answered(&self, answered: u64) {
        self.parses_answered.store(0, Ordering::Relaxed);
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.with_texts(|sent| {
            while sent.front().is_some_and(|text| text.batch < answered) {
                sent.pop_front();
                self.waiting.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }

    /// The position in the client's text of `position` (Postgres's, in the rewrite) of an
    /// error in batch `batch`, which arose in the statement Postgres was reading (the one
    /// after the Parses it answered); `Some(None)`: the statement was rewritten but not kept,
    /// the position is dropped; `None`: that statement was not rewritten, it stands.
    pub(super) fn original_position(&self, batch: u64, position: &str) -> Option<Option<String>> {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let ordinal = self.parses_answered.load(Ordering::Relaxed);
        let position: usize = position.parse().ok()?;
        self.with_texts(|sent| {
            let text = sent
                .iter()
                .find(|text| text.batch == batch && text.ordinal == ordinal)?;
            Some(
                text.texts
                    .as_ref()
                    .and_then(|(original, rewritten)| {
                        position_in_original(original, rewritten, position)
                    })
                    .map(|mapped| mapped.to_string()),
            )
        })
    }

    fn with_texts<R>(&self, f: impl FnOnce(&mut VecDeque<SentText>) -> R) -> R {
        let mut sent = self
            .texts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut sent)
    }
}

/// The ErrorResponse `frame`, of batch `batch`, with its `position` in the client's text, if
/// the statement it is about was rewritten (`None`: it stands as it is).
pub(super) fn at_clients_position(
    sent: &SentTexts,
    batch: u64,
    position: &str,
    frame: &[u8],
) -> Option<BytesMut> {
    if position.is_empty() {
        return None;
    }
    match sent.original_position(batch, position)? {
        Some(mapped) => backend::with_fields(frame, &[(backend::FIELD_POSITION, &mapped)]),
        None => backend::without_position(frame),
    }
}

/// `position` (1-based, in characters) in `rewritten`, carried back into `original`: the same
/// character where the rewrite kept it, the start of what an edit replaced where it points
/// into the edit's text. `None` past the end of `rewritten`.
pub fn position_in_original(original: &str, rewritten: &str, position: usize) -> Option<usize> {
    let index = position.checked_sub(1)?;
    let diff = TextDiff::configure()
        .timeout(ALIGNMENT_TIMEOUT)
        .diff_chars(original, rewritten);
    let mapped = diff.ops().iter().find_map(|op| {
        let (_, old, new) = op.as_tag_tuple();
        if !new.contains(&index) {
            return None;
        }
        Some(match op.tag() {
            similar::DiffTag::Equal => old.start + (index - new.start),
            _ => old.start,
        })
    })?;
    Some(mapped + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 1-based character position of `needle` in `text`.
    fn at(text: &str, needle: &str) -> usize {
        text[..text.find(needle).unwrap()].chars().count() + 1
    }

    #[test]
    fn positions_after_an_edit_point_into_the_clients_text() {
        let original = "SELECT id FROM orders WHERE nope = $1";
        let rewritten = "SELECT id FROM public.orders_v1 AS orders WHERE nope = $1";
        assert_eq!(
            position_in_original(original, rewritten, at(rewritten, "nope")),
            Some(at(original, "nope"))
        );
        // Before any edit: unchanged.
        assert_eq!(
            position_in_original(original, rewritten, at(rewritten, "id")),
            Some(at(original, "id"))
        );
        // Inside an edit's text: where the replaced name stood.
        assert_eq!(
            position_in_original(original, rewritten, at(rewritten, "public")),
            Some(at(original, "orders"))
        );
        assert_eq!(position_in_original(original, rewritten, 0), None);
        assert_eq!(
            position_in_original(original, rewritten, rewritten.chars().count() + 1),
            None
        );
    }

    #[test]
    fn several_edits_and_wide_characters_keep_positions_in_characters() {
        let original = "SELECT 'é' FROM a JOIN orders o ON o.x = a.y JOIN orders p ON p.bad = 1";
        let rewritten = "SELECT 'é' FROM a JOIN public.orders_v2 AS o ON o.x = a.y JOIN public.orders_v2 AS p ON p.bad = 1";
        assert_eq!(
            position_in_original(original, rewritten, at(rewritten, "p.bad")),
            Some(at(original, "p.bad"))
        );
    }

    #[test]
    fn an_error_is_mapped_by_the_statement_postgres_was_reading() {
        let sent = SentTexts::default();
        let first = sent.next_ordinal(3);
        let second = sent.next_ordinal(3);
        assert_eq!((first, second), (0, 1));
        sent.rewritten(
            3,
            second,
            "SELECT x FROM t",
            "SELECT x FROM public.t_v1 AS t",
        );
        // An error in the first Parse (not rewritten): its position stands.
        assert_eq!(sent.original_position(3, "8"), None);
        // Once the first is answered, an error is the second's.
        sent.parse_answered(3);
        assert_eq!(sent.original_position(3, "8"), Some(Some("8".into())));
        // Answered, the second's text goes.
        sent.parse_answered(3);
        assert_eq!(sent.original_position(3, "8"), None);
        sent.batch_answered(4);
        assert_eq!(sent.next_ordinal(4), 0);
        // Too long to keep: the position goes.
        let long = "x".repeat(MAX_MAPPED_STATEMENT_BYTES + 1);
        sent.rewritten(4, 0, &long, &long);
        assert_eq!(sent.original_position(4, "1"), Some(None));
    }
}
