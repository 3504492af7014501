//! A constraint violation's detail that prints a managed table's base row (or a WITH CHECK
//! OPTION violation's, or the row of a table holding a foreign key into one) would show a
//! versioned session columns its version does not have: the upstream side replaces it with
//! the version's own shape of the detail, or hides it. An error raised inside a migration's
//! sync trigger keeps only its SQLSTATE; a NOT NULL violation (or one of a check standing in
//! for a NOT NULL) names the column as the version does, an undefined column's message the
//! table as the version does (not its view), and a table the version renames by the
//! version's name (`table_at_version.rs`); one raised inside a version's write
//! trigger, whose statement the context (or internal query) would quote, has that statement
//! left out, and so has a notice raised there.

use bytes::BytesMut;

use super::progress::Progress;
use super::table_at_version::told_by_version_names;
use crate::model::sync_function::{self, Carried};
use crate::model::write_function;
use crate::protocol::backend;
use crate::rewriter::error_detail::{self, KeyOwner};
use crate::rewriter::targets::{RelationName, VersionTargets};
use crate::router::{RoutingState, SharedRouting};

/// What a versioned session is told in place of an error raised inside a migration's sync
/// trigger: the SQLSTATE stands, and which way the write was carried; the detail and context
/// (which may print another version's values) do not, nor does the message, but where its
/// SQLSTATE is one whose message names a type and never a value ([`TYPE_ONLY_MESSAGES`]):
/// a write at the new version that an older version's narrower column cannot hold (the Node
/// walk's 150-character email at v2 while v1's column is `varchar(100)`) says so.
fn sync_trigger_failed(code: &str, message: &str, carried: Option<Carried>) -> String {
    let (into, expressions) = match carried {
        Some(Carried::Up) => ("a newer version's columns", "its `up` expressions"),
        _ => ("an older version's columns", "its `down` expressions"),
    };
    let told = TYPE_ONLY_MESSAGES.contains(&code) && !message.contains(['"', '\'']);
    let cause = match told {
        true => format!("SQLSTATE {code}: {message}"),
        false => format!("SQLSTATE {code}"),
    };
    format!(
        "viewgate: a migration's sync trigger could not carry this write into {into}, which are live too ({cause}); the statement was not applied. Until `viewgate migrate complete` retires the older version, every write must fit both versions' columns (a value too long or too large for the column a migration widens fails), and {expressions} must succeed on it (`viewgate migrate status` names the migration)"
    )
}

/// SQLSTATEs whose messages name at most a type (`value too long for type character
/// varying(100)`, `integer out of range`, `numeric field overflow`, `division by zero`),
/// which a sync trigger's error may pass on; a message holding a quote is still left out.
const TYPE_ONLY_MESSAGES: &[&str] = &["22001", "22003", "22012"];

/// SQLSTATE class 23: integrity constraint violations, the errors whose detail names a row
/// or key.
const INTEGRITY_CONSTRAINT_CLASS: &str = "23";

/// The ErrorResponse a versioned session gets in place of `frame` when it speaks of columns
/// its version may not have: a constraint violation's detail on a managed table's base table
/// (`rewriter::error_detail`), or the context of an error inside a sync or write trigger;
/// and a table the version renames told by its name at the version. `None`: it stands.
pub(super) fn detail_for_version(
    progress: &Progress,
    routing: &SharedRouting,
    fields: &backend::ErrorFields,
    frame: &[u8],
) -> Option<BytesMut> {
    let told = detail_told(progress, routing, fields, frame);
    let current = told.as_deref().unwrap_or(frame);
    told_by_version_names(progress, routing, current).or(told)
}

/// [`detail_for_version`] but for the tables' names.
fn detail_told(
    progress: &Progress,
    routing: &SharedRouting,
    fields: &backend::ErrorFields,
    frame: &[u8],
) -> Option<BytesMut> {
    if sync_function::in_context(&fields.context) {
        progress.version_targets()?;
        let carried = sync_function::carried_in_context(&fields.context);
        let message = sync_trigger_failed(&fields.code, &fields.message, carried);
        return backend::with_only_message(frame, &message);
    }
    let context_hidden = write_statement_hidden(progress, routing, fields, frame);
    let current = context_hidden.as_deref().unwrap_or(frame);
    let retold = not_null_violation(progress, routing, fields, current)
        .or_else(|| undefined_column(progress, fields, current));
    if retold.is_some() {
        return retold;
    }
    match context_hidden {
        Some(context_hidden) => Some(
            detail_hidden(progress, routing, fields, &context_hidden).unwrap_or(context_hidden),
        ),
        None => detail_hidden(progress, routing, fields, frame),
    }
}

/// A NOT NULL violation on a column the session's version shows, told under the version's
/// name for the column (a renamed one, or a migration's stand-in `_vg_v2_…`), or on an older
/// version's column that one of the version's replaces (a NULL written to the new column,
/// which the migration's `down` carries into the old one): so is a
/// violation of a check standing in for a NOT NULL (a migration's new NOT NULL column, until
/// the contract makes it one), which the version's introspection shows NOT NULL and the
/// contract turns into one: 23502, not a check violation (23514) that an application catching
/// NOT NULL violations would not recognise. `None`: the usual path decides.
fn not_null_violation(
    progress: &Progress,
    routing: &SharedRouting,
    fields: &backend::ErrorFields,
    frame: &[u8],
) -> Option<BytesMut> {
    let by_check = fields.code == error_detail::CHECK_VIOLATION && !fields.constraint.is_empty();
    let by_column = fields.code == error_detail::NOT_NULL_VIOLATION && !fields.column.is_empty();
    if !by_check && !by_column {
        return None;
    }
    let targets = progress.version_targets()?;
    let state = routing.load();
    let (schema, table) = state.base_table_of(&fields.schema, &fields.table)?;
    let base_column = match by_check {
        true => state.not_null_check(&schema, &table, &fields.constraint)?,
        false => fields.column.as_str(),
    };
    let base = RelationName::new(schema.as_str(), table.as_str());
    let column = error_detail::shown_column(base_column, &base, &targets).or_else(|| {
        let versions = state.version_names();
        error_detail::replacing_column(base_column, &base, &targets, &versions)
    })?;
    if by_column && column == base_column {
        return None;
    }
    // Postgres's own message is rewritten where it is the one expected (English); a
    // translated one stands, with the column field naming the version's column.
    let expected =
        by_check || fields.message == error_detail::not_null_message(base_column, &fields.table);
    let message = match expected {
        true => error_detail::not_null_message(&column, &fields.table),
        false => fields.message.clone(),
    };
    let detail = row_for_version(&state, &targets, fields, &base)
        .unwrap_or_else(|| error_detail::HIDDEN_ROW_DETAIL.to_owned());
    backend::as_column_violation(
        frame,
        error_detail::NOT_NULL_VIOLATION,
        &message,
        &detail,
        &column,
    )
}

/// An INSERT's or UPDATE's column the relation does not have, told of the table as the
/// version names it rather than of the version's view (`rewriter::error_detail`).
fn undefined_column(
    progress: &Progress,
    fields: &backend::ErrorFields,
    frame: &[u8],
) -> Option<BytesMut> {
    if fields.code != error_detail::UNDEFINED_COLUMN {
        return None;
    }
    let targets = progress.version_targets()?;
    let message = error_detail::undefined_column_message(&fields.message, &targets)?;
    backend::with_message(frame, &message)
}

/// `frame`, an ErrorResponse or a NoticeResponse, with the statement of a version's write
/// trigger left out of its context and internal query, when it arose inside one: any
/// version's, since a statement prepared at one version keeps writing through its view after
/// the session moves (the forty-fifth red-team pass). `None`: it stands.
pub(super) fn write_statement_hidden(
    progress: &Progress,
    routing: &SharedRouting,
    fields: &backend::ErrorFields,
    frame: &[u8],
) -> Option<BytesMut> {
    if fields.context.is_empty() {
        return None;
    }
    progress.version_targets()?;
    let state = routing.load();
    let views: Vec<(&str, &str)> = state
        .version_names()
        .into_iter()
        .filter_map(|version| state.targets(version))
        .flat_map(|targets| targets.managed())
        .map(|target| (target.view.schema.as_str(), target.view.name.as_str()))
        .collect();
    let context = write_function::hidden_in_context(&fields.context, views)?;
    backend::with_context(frame, &context)
}

/// `frame` with the detail a versioned session is shown in place of its own, when it prints a
/// row or key of a managed table's base table; `None`: the detail stands.
fn detail_hidden(
    progress: &Progress,
    routing: &SharedRouting,
    fields: &backend::ErrorFields,
    frame: &[u8],
) -> Option<BytesMut> {
    if fields.detail.is_empty() {
        return None;
    }
    if fields.code == error_detail::WITH_CHECK_OPTION_VIOLATION {
        let targets = progress.version_targets()?;
        return (!targets.managed().is_empty())
            .then(|| backend::with_detail(frame, error_detail::HIDDEN_ROW_DETAIL))
            .flatten();
    }
    if !fields.code.starts_with(INTEGRITY_CONSTRAINT_CLASS) {
        return None;
    }
    let targets = progress.version_targets()?;
    let state = routing.load();
    if let Some(owner) = error_detail::foreign_key_owner(&fields.code, &fields.detail) {
        let detail = foreign_key_detail(&state, &targets, fields, owner)?;
        return backend::with_detail(frame, &detail);
    }
    // The row or key a detail prints is of the table the error names (or of the base table a
    // partition or child of it belongs to), or, for a foreign key into a base table violated
    // by a write to it, of that base table: Postgres names the referencing table then.
    let bases: Vec<(String, String)> = state
        .base_table_of(&fields.schema, &fields.table)
        .into_iter()
        .chain(
            (fields.code == error_detail::FOREIGN_KEY_VIOLATION
                || fields.code == error_detail::RESTRICT_VIOLATION)
                .then(|| {
                    state.referenced_base_table(&fields.schema, &fields.table, &fields.constraint)
                })
                .flatten(),
        )
        .collect();
    let detail = match bases.as_slice() {
        // A table with a foreign key into a base table holds its key's values, hidden
        // columns' too; a cascaded UPDATE or SET NULL shows its row (the thirty-sixth pass).
        [] if state.references_a_base_table(&fields.schema, &fields.table) => {
            match fields.code.as_str() {
                error_detail::NOT_NULL_VIOLATION | error_detail::CHECK_VIOLATION => {
                    error_detail::HIDDEN_ROW_DETAIL.to_owned()
                }
                _ => error_detail::HIDDEN_KEY_DETAIL.to_owned(),
            }
        }
        [] => return None,
        [(schema, table)] => {
            let base = RelationName::new(schema.as_str(), table.as_str());
            match row_for_version(&state, &targets, fields, &base) {
                Some(row) if row == fields.detail => return None,
                Some(row) => row,
                None => error_detail::for_version(&fields.code, &fields.detail, &base, &targets)?,
            }
        }
        // Which side's key it prints is not known: it stands only where both let it stand.
        [..] => {
            let replaced = bases.iter().any(|(schema, table)| {
                let base = RelationName::new(schema.as_str(), table.as_str());
                error_detail::for_version(&fields.code, &fields.detail, &base, &targets).is_some()
            });
            if !replaced {
                return None;
            }
            error_detail::HIDDEN_KEY_DETAIL.to_owned()
        }
    };
    backend::with_detail(frame, &detail)
}

/// The failing row a NOT NULL or CHECK violation on `base` prints, as the version may see it
/// whole (`error_detail::row_for_version`); `None` where it may not: on the base table itself
/// only, since a partition or child may order its columns otherwise.
fn row_for_version(
    state: &RoutingState,
    targets: &VersionTargets,
    fields: &backend::ErrorFields,
    base: &RelationName,
) -> Option<String> {
    let row = [
        error_detail::NOT_NULL_VIOLATION,
        error_detail::CHECK_VIOLATION,
    ];
    if !row.contains(&fields.code.as_str())
        || fields.schema != base.schema
        || fields.table != base.name
    {
        return None;
    }
    let columns = state.base_columns(&base.schema, &base.name)?;
    error_detail::row_for_version(&fields.detail, base, columns, targets)
}

/// The detail a versioned session is shown for a foreign key violation whose wording says
/// whose key it prints (`owner`); `None`: it stands. Where that table is a managed one, its
/// columns at the version alone decide (the other table may show a column of the same name,
/// or hide one the key does not list): the detail stands, is told in the version's names, or
/// is hidden. The table the detail names stands, as in the message and the table field: the
/// base table's name.
fn foreign_key_detail(
    state: &RoutingState,
    targets: &VersionTargets,
    fields: &backend::ErrorFields,
    owner: KeyOwner,
) -> Option<String> {
    let (schema, table) = (fields.schema.as_str(), fields.table.as_str());
    let base = match owner {
        KeyOwner::Referencing => state.base_table_of(schema, table),
        KeyOwner::Referenced => state.referenced_base_table(schema, table, &fields.constraint),
    };
    match base {
        Some((schema, table)) => {
            let base = RelationName::new(schema.as_str(), table.as_str());
            error_detail::for_version(&fields.code, &fields.detail, &base, targets)
        }
        // An unmanaged referencing table with a foreign key into a base table holds that
        // key's values, hidden columns' too (written by a cascade, say).
        None if owner == KeyOwner::Referencing && state.references_a_base_table(schema, table) => {
            Some(error_detail::HIDDEN_KEY_DETAIL.to_owned())
        }
        // An unmanaged table's key, which Postgres prints only to whom may read it.
        None => None,
    }
}
