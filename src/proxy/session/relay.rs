//! The pump loop: both directions of a session running at once until one ends, shutdown
//! closes the session, or a switch request stops them at clean points. Client messages are
//! counted (`progress`), routed and rewritten on their way up; upstream messages are watched
//! for ReadyForQuery, FATAL errors and ParameterStatus (client_encoding and
//! standard_conforming_strings decide what the rewriter may read; an application_name set
//! after the startup is what rules match, `reported_name`) on their way down, and a
//! constraint violation's detail that prints a managed table's base row is hidden from a
//! versioned session (`hidden_detail`). What moves the server's `viewgate.version` is guarded,
//! and the version told ahead when needed (`version_guard`). A versioned session forwards
//! FunctionCall only for large-object functions (`router::function_call`).

use std::sync::atomic::Ordering;

use bytes::BytesMut;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Session;
use super::error_position::at_clients_position;
use super::hidden_detail::{detail_for_version, write_statement_hidden};
use super::own_answers::own_answer;
use super::progress::{END_COMMIT, END_ROLLBACK, Progress};
use super::version_guard::{reset_refusal, tell_version};
use crate::model::catalog_substitutes::STANDARD_CONFORMING_STRINGS;
use crate::protocol::backend;
use crate::protocol::frame;
use crate::protocol::frontend;
use crate::protocol::reply::{self, Severity};
use crate::protocol::sqlstate::SqlState;
use crate::proxy::error::SessionError;
use crate::proxy::ledger::RequestLedger;
use crate::proxy::pause::PauseGate;
use crate::proxy::pump::{Inspection, PumpEnd, SHRINK_ABOVE};
use crate::proxy::stats::SessionAccount;
use crate::proxy::switch::SessionControl;
use crate::rewriter::reading_settings::is_on_value;
use crate::rewriter::word_scan::Words;
use crate::router::prepared::{Answer, Answers};
use crate::router::server_version;
use crate::router::statement::Statement;
use crate::router::{
    Assignment, ConformingStrings, REFUSED_STATEMENT, Refusal, Routed, SessionRouter, SharedRouting,
};

impl Session {
    /// Runs the pumps, stopping them for each switch request and starting them again after.
    pub(super) async fn relay(&mut self) -> Result<(), SessionError> {
        self.count_from_start();
        loop {
            match self.relay_until_control().await? {
                Some(control) => self.obey(control).await?,
                None => return Ok(()),
            }
        }
    }

    /// Runs both pumps until one ends (or shutdown closes sessions), or until a switch request
    /// arrives: then both pumps are stopped at clean points and the request is returned.
    async fn relay_until_control(&mut self) -> Result<Option<SessionControl>, SessionError> {
        let Session {
            client,
            upstream,
            state,
            from_client,
            from_upstream,
            progress,
            router,
            parameters,
            reported_name,
            control,
            account,
            ledger,
            upstream_version,
            shadow,
            ..
        } = self;
        let shutdown = state.shutdown.clone();
        let gate = &state.pause;
        let stop = CancellationToken::new();
        let (client_reader, client_writer) = client.split();
        let (upstream_reader, upstream_writer) = upstream.split();
        let progress = &*progress;
        let ledger = &*ledger;
        let reported_name = &*reported_name;
        let card = account.card().cloned();
        // Followed from the login's reports, and after a move to another upstream from what
        // the new server reported (`upstream_move`).
        for (name, value) in parameters.iter() {
            follow_parameter(progress, name, value);
        }

        // Where rewritten statements are built: the pump copies each out and drops it, so the
        // next one reuses the memory (`reserve` reclaims it) instead of allocating its own.
        let mut rewritten = BytesMut::new();
        let to_upstream = from_client.pump(
            client_reader,
            upstream_writer,
            frontend::session_interest,
            |tag, frame| {
                if tag == frontend::TERMINATE {
                    return Inspection::Stop;
                }
                if !progress.enter(gate, tag) {
                    return Inspection::Hold;
                }
                // Decided before this message itself counts as in flight.
                let quiet = progress.quiet();
                let batch_open = progress.open_batch.load(Ordering::Relaxed);
                let strings = progress.conforming_strings();
                let (errors, errors_settled) = progress.errors();
                // The batch this message belongs to: a Query's own, or the one its Sync ends.
                let batch = progress.batches_sent.load(Ordering::Relaxed);
                progress.sent(tag);
                // Every answer is in: the releases Postgres did since the last such boundary
                // take effect (`router::prepared`).
                let answered = match quiet {
                    true => progress.take_release_answers(),
                    false => Answers::default(),
                };
                let Some(router) = router.as_mut() else {
                    return Inspection::Continue;
                };
                if quiet {
                    router.settle_releases(&answered);
                }
                router.note_batch(batch, tag == frontend::PARSE);
                // Ahead of a message seen whole only: one glanced at by its header can only
                // pass or wait (`pump`).
                let prepared_again = match quiet && frame::is_whole(frame) {
                    true => prepare_again(
                        router,
                        strings,
                        progress.foreign_encoding.load(Ordering::Relaxed),
                    ),
                    false => None,
                };
                let inspection = match tag {
                    frontend::CLOSE => {
                        router.closed(frontend::closed_statement(frame));
                        Inspection::Continue
                    }
                    // Counted under why it keeps its version, as a session that parses is.
                    frontend::BIND if quiet => {
                        if router.relabel() {
                            account_for(router, account, ledger);
                        }
                        Inspection::Continue
                    }
                    frontend::QUERY | frontend::PARSE => {
                        if let Some(kept) = progress.take_set_verdict() {
                            router.set_settled(kept);
                        }
                        if let Some(name) = reported_name.take() {
                            router.renamed(&name, &state.config.load().sticky_identity);
                        }
                        router.note_errors(errors, errors_settled);
                        // Inside an open extended batch the version cannot be told ahead of
                        // a statement: one sent there while the server may hold another is
                        // refused (the eighteenth red-team pass left a Close unsynced after
                        // its session moved, then wrote at the old server version).
                        // The version itself is picked again only at a quiet boundary, where
                        // it can be told too.
                        let untellable =
                            batch_open && upstream_version.as_deref() != router.version();
                        // The text (its UTF-8 checked) and the words every cheap test looks
                        // for, each found once for all of them.
                        let text = frontend::statement_text(tag, frame);
                        let words = frontend::statement_bytes(tag, frame).map(Words::in_text);
                        let readable = text
                            .filter(|sql| {
                                !progress.foreign_encoding.load(Ordering::Relaxed) || sql.is_ascii()
                            })
                            .zip(words)
                            .map(|(sql, words)| Statement { sql, words });
                        let moves_version =
                            reset_refusal(router, progress, readable, tag, quiet, untellable);
                        let message = StatementMessage {
                            tag,
                            frame,
                            readable,
                            batch,
                            ordinal: progress.sent_texts.next_ordinal(batch),
                        };
                        let inspection = off_the_worker(frame.len(), || {
                            route(
                                router,
                                progress,
                                quiet,
                                moves_version,
                                strings,
                                message,
                                &mut rewritten,
                            )
                        });
                        if router.take_unsettled_set() {
                            progress.set_sent(tag);
                        }
                        account_for(router, account, ledger);
                        progress.note_version(router.assignment().map(Assignment::targets));
                        let inspection = if quiet && router.tracks_writers() {
                            tell_version(router, upstream_version, progress, frame, inspection)
                        } else {
                            inspection
                        };
                        // `RESET ALL` and `DISCARD ALL` clear the server's setting too (the
                        // tenth red-team pass), and a version command moves it: told again
                        // ahead of the next statement.
                        if words.is_some_and(server_version::may_reset_settings)
                            || text.is_some_and(server_version::commands_version)
                        {
                            *upstream_version = None;
                        }
                        inspection
                    }
                    // Answered as Postgres answers a failed call (ErrorResponse, then the
                    // ReadyForQuery it was counted as owed): the refusal, raised by a Query.
                    frontend::FUNCTION_CALL => {
                        match router.function_call(frontend::function_call_oid(frame), quiet) {
                            Some(refusal) => {
                                Inspection::Replace(frontend::query(&refusal.statement()))
                            }
                            None => Inspection::Continue,
                        }
                    }
                    _ => Inspection::Continue,
                };
                let inspection = match prepared_again {
                    Some(ahead) => put_ahead(progress, ahead, frame, inspection),
                    None => inspection,
                };
                // Shadow reads: a copy of sampled reads, never a wait.
                state
                    .shadow
                    .offer(&state.routing, router, shadow, tag, frame);
                if matches!(
                    tag,
                    frontend::QUERY | frontend::SYNC | frontend::FUNCTION_CALL
                ) {
                    ledger.sent();
                }
                inspection
            },
            gate,
            stop.cancelled(),
        );
        let to_client = from_upstream.pump(
            upstream_reader,
            client_writer,
            backend::session_interest,
            |tag, frame| {
                if tag == backend::PARAMETER_STATUS
                    && let Some((name, value)) = backend::parameter_status(frame)
                {
                    reported_name.follow(&name, &value, card.as_deref());
                }
                inspect_upstream(
                    progress,
                    ledger,
                    gate,
                    &state.routing,
                    parameters,
                    tag,
                    frame,
                )
            },
            gate,
            stop.cancelled(),
        );
        tokio::pin!(to_upstream, to_client);
        let mut request = None;
        let (mut client_side_stopped, mut upstream_side_stopped) = (false, false);
        loop {
            tokio::select! {
                // Fixed order: cheaper than tokio's random start.
                biased;
                _ = shutdown.sessions_closing() => return Err(SessionError::Shutdown),
                received = next_control(control), if request.is_none() && control.is_some() => {
                    match received {
                        Some(received) => {
                            request = Some(received);
                            stop.cancel();
                        }
                        None => *control = None,
                    }
                }
                end = &mut to_upstream, if !client_side_stopped => match end {
                    PumpEnd::Interrupted => client_side_stopped = true,
                    PumpEnd::Stopped => return Ok(None),
                    PumpEnd::ReaderClosed => return Err(SessionError::ClientGone),
                    PumpEnd::WriterFailed => return Err(upstream_gone(progress)),
                    PumpEnd::Protocol(error) => return Err(SessionError::client_protocol(error)),
                    PumpEnd::Invalid(reason) => {
                        return Err(SessionError::ClientProtocol(reason.into()));
                    }
                },
                end = &mut to_client, if !upstream_side_stopped => match end {
                    PumpEnd::Interrupted => upstream_side_stopped = true,
                    PumpEnd::ReaderClosed => return Err(upstream_gone(progress)),
                    PumpEnd::WriterFailed => return Err(SessionError::ClientGone),
                    PumpEnd::Protocol(error) => {
                        return Err(SessionError::UpstreamProtocol(error.to_string()));
                    }
                    PumpEnd::Invalid(reason) => {
                        return Err(SessionError::UpstreamProtocol(reason.into()));
                    }
                    PumpEnd::Stopped => return Ok(None),
                },
            }
            if client_side_stopped && upstream_side_stopped {
                return Ok(request);
            }
        }
    }
}

async fn next_control(
    control: &mut Option<mpsc::Receiver<SessionControl>>,
) -> Option<SessionControl> {
    match control {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

fn upstream_gone(progress: &Progress) -> SessionError {
    if progress.upstream_fatal.load(Ordering::Relaxed) {
        SessionError::UpstreamEnded
    } else {
        SessionError::UpstreamClosed
    }
}

/// The parameter Postgres reports the client's encoding in.
const CLIENT_ENCODING: &str = "client_encoding";

/// Notes a parameter Postgres reported that decides what the rewriter may read.
fn follow_parameter(progress: &Progress, name: &str, value: &str) {
    match name {
        CLIENT_ENCODING => progress
            .foreign_encoding
            .store(!is_utf8_encoding(value), Ordering::Relaxed),
        STANDARD_CONFORMING_STRINGS => progress
            .nonstandard_strings
            .store(!is_on_value(value), Ordering::Relaxed),
        _ => {}
    }
}

/// Whether Postgres's name for an encoding is UTF-8 (it reports `UTF8`; accept spellings).
fn is_utf8_encoding(name: &str) -> bool {
    name.eq_ignore_ascii_case("UTF8") || name.eq_ignore_ascii_case("UTF-8")
}

/// A statement this long may take the rewriter long enough (a full parse of megabytes) to
/// hold up every session whose task waits on the same worker thread: the fifty-fourth
/// red-team pass held a bystander's `SELECT 1` for 10 s with one 4 MB `IN` list (a debug
/// build). Shorter ones take microseconds.
const LONG_STATEMENT_BYTES: usize = 64 * 1024;

/// Runs `inspect` on a message of `len` bytes; for a long one, on a runtime worker that hands
/// its other tasks to another worker first (`block_in_place`), so the other sessions are
/// served meanwhile. Sessions on `session_threads` (single-threaded runtimes) cannot hand
/// theirs over: there a long statement holds up the sessions of its thread.
fn off_the_worker<R>(len: usize, inspect: impl FnOnce() -> R) -> R {
    let multi_threaded = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
        runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
    });
    if len > LONG_STATEMENT_BYTES && multi_threaded {
        tokio::task::block_in_place(inspect)
    } else {
        inspect()
    }
}

/// Rewrites a Query or Parse for the session's version. The rewriter reads UTF-8: text in
/// another client_encoding is read only when it is pure ASCII (the same bytes in every
/// encoding Postgres supports, even those whose multi-byte characters contain ASCII bytes:
/// their lead bytes are never ASCII); otherwise a statement that mentions a managed table is
/// refused (it cannot be read safely, and must not reach the base table), and one that does
/// not is forwarded. The rewriter reads `'…'` literals as with standard_conforming_strings
/// on: while Postgres may read them otherwise (`strings`), a statement with a backslash that
/// mentions a managed table is refused too (a backslash may end a literal where the rewriter
/// reads none); one without a backslash reads the same either way. While it is off, only
/// turning it back on is forwarded (`Refusal::nonconforming`). A refused Query becomes a
/// statement that raises the refusal; a refused Parse becomes one that fails at once, whose
/// error the upstream side replaces with the refusal.
fn route(
    router: &mut SessionRouter,
    progress: &Progress,
    idle: bool,
    moves_version: Option<Refusal>,
    strings: ConformingStrings,
    message: StatementMessage<'_>,
    rewritten: &mut BytesMut,
) -> Inspection {
    let StatementMessage {
        tag,
        frame,
        readable,
        batch,
        ordinal,
    } = message;
    let foreign = progress.foreign_encoding.load(Ordering::Relaxed);
    let backslashes = match strings {
        ConformingStrings::On => None,
        ConformingStrings::Off => router.nonconforming(frontend::statement_text(tag, frame), idle),
        ConformingStrings::Pending => frontend::statement_bytes(tag, frame)
            .filter(|bytes| bytes.contains(&b'\\'))
            .and_then(|bytes| router.backslashes(bytes, idle, strings)),
    };
    let routed = match (
        backslashes.or(moves_version),
        readable,
        tag,
        frontend::parse_name(frame),
    ) {
        (Some(refusal), _, _, _) => Routed::Refuse(refusal),
        (None, Some(statement), frontend::PARSE, Some(name)) => {
            router.parse_message(name, statement, idle, frame)
        }
        (None, Some(statement), _, _) => router.read_statement(statement, idle),
        (None, None, _, _) => match frontend::statement_bytes(tag, frame)
            .and_then(|bytes| router.unreadable(bytes, foreign))
        {
            Some(refusal) => Routed::Refuse(refusal),
            None => return Inspection::Continue,
        },
    };
    let text = match routed {
        Routed::Forward => return Inspection::Continue,
        Routed::Replace(text) => {
            if let Some(statement) = readable {
                progress
                    .sent_texts
                    .rewritten(batch, ordinal, statement.sql, &text);
            }
            text
        }
        Routed::Refuse(refusal) => {
            let Some(message) = frontend::with_statement(tag, frame, REFUSED_STATEMENT) else {
                return Inspection::Continue;
            };
            progress.statement_refused(reply::error_response(
                Severity::Error,
                refusal.code,
                &refusal.message,
                None,
            ));
            return Inspection::Replace(message);
        }
    };
    rewritten.reserve(frame.len() + text.len());
    if !frontend::put_with_statement(rewritten, tag, frame, &text) {
        return Inspection::Continue;
    }
    let message = rewritten.split();
    // A large statement's memory is not kept for the rest of the session.
    if message.len() > SHRINK_ABOVE {
        *rewritten = BytesMut::new();
    }
    Inspection::Replace(message)
}

/// A Query or Parse as the relay read it: its text where the router may read it (valid
/// UTF-8, and ASCII in another client_encoding), with its words.
#[derive(Clone, Copy)]
struct StatementMessage<'a> {
    tag: u8,
    frame: &'a [u8],
    readable: Option<Statement<'a>>,
    /// The batch it belongs to, and its place among the batch's Query and Parse messages.
    batch: u64,
    ordinal: u32,
}

/// The messages that prepare again the session's named statements whose rewrite its name
/// resolution has changed since they were prepared (`SessionRouter::stale_statements`), as
/// Postgres parses a prepared statement again when the search_path changed: for each, a
/// Close, a Parse of the new text (the client's name and parameter types) and a Sync of its
/// own, so that one failing Parse does not make Postgres skip the others. Only at a quiet
/// boundary, so their answers up to each ReadyForQuery come next and `inspect_upstream`
/// drops them. Returns the messages and how many ReadyForQuery answer them.
///
/// A text is prepared again only if Postgres reads it now as it did when it was judged (with
/// standard_conforming_strings on, in UTF-8 or as ASCII): one with a backslash while the
/// setting may be off (`strings`), or with other than ASCII in another client_encoding
/// (`foreign`), keeps its first preparation, whose parse Postgres keeps (it plans again from
/// the parsed tree, never from the text). The eighth red-team pass had such a text parsed
/// again under SJIS and under the setting off, and read the base rows.
fn prepare_again(
    router: &mut SessionRouter,
    strings: ConformingStrings,
    foreign: bool,
) -> Option<(BytesMut, u32)> {
    let reads_the_same = |text: &str| {
        (strings == ConformingStrings::On || !text.contains('\\')) && (!foreign || text.is_ascii())
    };
    let mut messages = BytesMut::new();
    let mut batches = 0;
    for (name, text, parse) in router.stale_statements() {
        if !reads_the_same(&text) {
            continue;
        }
        let Some(parse) = frontend::with_statement(frontend::PARSE, &parse, &text) else {
            continue;
        };
        messages.extend_from_slice(&frontend::close_statement(&name));
        messages.extend_from_slice(&parse);
        messages.extend_from_slice(&frontend::SYNC_MESSAGE);
        batches += 1;
    }
    (batches > 0).then_some((messages, batches))
}

/// `ahead` (the proxy's own messages, answered up to `batches` ReadyForQuery) followed by the
/// client's message as `inspection` leaves it.
fn put_ahead(
    progress: &Progress,
    (mut ahead, batches): (BytesMut, u32),
    frame: &[u8],
    inspection: Inspection,
) -> Inspection {
    match inspection {
        Inspection::Continue => ahead.extend_from_slice(frame),
        Inspection::Replace(replaced) => ahead.extend_from_slice(&replaced),
        other => return other,
    }
    progress
        .own_statements
        .fetch_add(batches, Ordering::Relaxed);
    Inspection::Replace(ahead)
}

/// Counts the session's next requests against the version (and rule) now in effect.
fn account_for(router: &SessionRouter, account: &mut SessionAccount, ledger: &RequestLedger) {
    match router.assignment() {
        Some(assignment) => {
            ledger.attribute(account.assign(assignment.version(), assignment.reason))
        }
        None => account.release(),
    }
}

fn inspect_upstream(
    progress: &Progress,
    ledger: &RequestLedger,
    gate: &PauseGate,
    routing: &SharedRouting,
    parameters: &mut Vec<(String, String)>,
    tag: u8,
    frame: &[u8],
) -> Inspection {
    if let Some(own) = own_answer(progress, tag, frame) {
        return own;
    }
    match tag {
        backend::READY_FOR_QUERY => {
            let Some(status) = backend::ready_for_query(frame) else {
                return Inspection::Invalid("ReadyForQuery with an unknown transaction status");
            };
            progress.ready(status);
            // Saturating: a server may answer a Sync the proxy did not count (none today).
            let _ =
                progress
                    .awaiting_ready
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            ledger.ready();
            progress.maybe_leave(gate);
        }
        backend::COPY_IN_RESPONSE => progress.copy_in_started(),
        backend::PARSE_COMPLETE => progress
            .sent_texts
            .parse_answered(progress.batches_answered.load(Ordering::Relaxed)),
        backend::CLOSE_COMPLETE => progress.release_answered(Answer::CloseComplete),
        // Only the tags count: a block that ends without one (a COMMIT that failed) rolled back.
        backend::COMMAND_COMPLETE => match backend::command_block_end(frame) {
            Some(backend::BlockEnd::Commit) => {
                progress.last_end.store(END_COMMIT, Ordering::Relaxed)
            }
            Some(backend::BlockEnd::Rollback) => {
                progress.last_end.store(END_ROLLBACK, Ordering::Relaxed)
            }
            _ => {
                if let Some(tag) = backend::hold_tag(frame) {
                    progress.release_answered(Answer::Tag(tag));
                }
            }
        },
        backend::ERROR_RESPONSE => {
            progress.upstream_error();
            if let Some(fields) = backend::error_fields(frame) {
                if matches!(fields.severity.as_str(), "FATAL" | "PANIC") {
                    progress.upstream_fatal.store(true, Ordering::Relaxed);
                }
                let refused = || {
                    fields.code == SqlState::SYNTAX_ERROR.as_str()
                        && fields.message.contains(REFUSED_STATEMENT)
                };
                if let Some(error) = progress.refusal_answered(refused) {
                    let own = backend::error_fields(&error);
                    ledger.error(own.as_ref().map_or(&fields.code, |own| &own.code));
                    return Inspection::Replace(error);
                }
                ledger.error(&fields.code);
                let positioned = at_clients_position(
                    &progress.sent_texts,
                    progress.batches_answered.load(Ordering::Relaxed),
                    &fields.position,
                    frame,
                );
                let frame = positioned.as_deref().unwrap_or(frame);
                if let Some(error) = detail_for_version(progress, routing, &fields, frame) {
                    return Inspection::Replace(error);
                }
                if let Some(positioned) = positioned {
                    return Inspection::Replace(positioned);
                }
            }
        }
        backend::NOTICE_RESPONSE => {
            if let Some(fields) = backend::error_fields(frame)
                && let Some(notice) = write_statement_hidden(progress, routing, &fields, frame)
            {
                return Inspection::Replace(notice);
            }
        }
        backend::PARAMETER_STATUS => {
            if let Some((name, value)) = backend::parameter_status(frame) {
                follow_parameter(progress, &name, &value);
                match parameters.iter_mut().find(|(known, _)| *known == name) {
                    Some(entry) => entry.1 = value,
                    None => parameters.push((name, value)),
                }
            }
        }
        _ => {}
    }
    Inspection::Continue
}
