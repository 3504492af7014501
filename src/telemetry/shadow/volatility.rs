//! Whether a sampled statement may call something that is not a plain read: the shadow
//! re-runs a statement only when every function it names is in `pg_proc` and none volatile.
//! Looked up on the worker's own connection for every statement, so the answer is the live
//! catalog's, never a cached one.

use tokio_postgres::Client;

use super::classify::Eligible;
use crate::control::error::ControlError;

/// Names sqlparser reads as function calls that Postgres implements as syntax, with no
/// `pg_proc` row: none of them writes or changes the session.
const SYNTAX_FUNCTIONS: &[&str] = &[
    "coalesce",
    "greatest",
    "least",
    "nullif",
    "array",
    "row",
    "grouping",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "current_catalog",
];

/// Whether any of the statement's `functions` has a volatile overload, or is a name `pg_proc`
/// does not have and Postgres's syntax does not explain (`SYNTAX_FUNCTIONS`): a name the
/// lookup cannot find is one misread, and the call may be anything. Whether any of its
/// `fields` (the last names of qualified column references, which Postgres calls as
/// functions when the relation has no such column: `q.pg_advisory_lock`) has a volatile
/// overload; as a column it is harmless. Whether any of its `operators` runs a volatile
/// function, and whether any of its `types` is a domain (whose constraints may call one) or
/// the target of a cast through a volatile function. Looked up for every statement, never
/// cached: a function the client redefines as volatile between two statements must count
/// (the twenty-fifth red-team pass did so).
pub(super) async fn any_volatile(
    client: &Client,
    eligible: &Eligible,
) -> Result<bool, ControlError> {
    let Eligible {
        functions,
        fields,
        operators,
        types,
        ..
    } = eligible;
    if functions.is_empty() && fields.is_empty() && operators.is_empty() && types.is_empty() {
        return Ok(false);
    }
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM unnest($1::text[]) AS n
                             WHERE EXISTS (SELECT 1 FROM pg_proc WHERE proname = n AND provolatile = 'v')
                                OR (NOT EXISTS (SELECT 1 FROM pg_proc WHERE proname = n)
                                    AND n <> ALL ($2::text[])))
                 OR EXISTS (SELECT 1 FROM unnest($3::text[]) AS f
                             WHERE EXISTS (SELECT 1 FROM pg_proc WHERE proname = f AND provolatile = 'v'))
                 OR EXISTS (SELECT 1 FROM unnest($4::text[]) AS o
                              JOIN pg_operator op ON op.oprname = o
                              JOIN pg_proc p ON p.oid = op.oprcode
                             WHERE p.provolatile = 'v')
                 OR EXISTS (SELECT 1 FROM unnest($5::text[]) AS t
                              JOIN pg_type ty ON ty.typname = t
                             WHERE ty.typtype = 'd'
                                OR EXISTS (SELECT 1 FROM pg_cast c JOIN pg_proc p ON p.oid = c.castfunc
                                            WHERE c.casttarget = ty.oid AND p.provolatile = 'v'))",
            &[functions, &SYNTAX_FUNCTIONS, fields, operators, types],
        )
        .await
        .map_err(|error| ControlError::database("reading functions' volatility", &error))?;
    Ok(row.get(0))
}
