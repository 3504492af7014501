//! The pieces every sync trigger is made of (`sync.rs`, `sequence_fill.rs`): who writes as the
//! triggers read it, the shape of a trigger function (its variables, its pinned search_path,
//! EXECUTE revoked) and of its trigger, and the parts of their names.

use sha2::{Digest, Sha256};

use super::derive::{Assign, mentions};
use super::file::BODY_QUOTE;
use crate::control::quote::{quote_ident, quote_literal, quote_qualified};

/// The version the backfill writes as; no sync trigger acts on its writes.
pub const BACKFILL_WRITER: &str = "viewgate_backfill";
/// Schema of the trigger functions (viewgate's catalog).
pub const FUNCTION_SCHEMA: &str = "viewgate";
/// The name a sync function returns its row by. The function's variables are named after the
/// columns its expressions read, and one named `new` would hide the trigger's NEW from a bare
/// `RETURN NEW` (a table with a column `new` failed every older writer's INSERT); a qualified
/// `NEW.column` still finds the row.
pub(super) const ROW: &str = "\"viewgate.row\"";
/// What every sync trigger's name starts with: `~` sorts after letters, digits and `_`.
pub(super) const TRIGGER_PREFIX: &str = "~vg_sync_";
/// Who writes, as the sync triggers read it: the session's `viewgate.version`, or none.
const WRITER: &str = "coalesce(current_setting('viewgate.version', true), '')";
/// Digits of a migration id in trigger names, so names sort as numbers do.
pub(super) const ID_DIGITS: usize = 10;

/// What the table's functions are told apart by: the first bytes of a hash of its name.
pub(super) fn table_hash(schema: &str, table: &str) -> String {
    let digest = Sha256::digest(format!("{schema}.{table}").as_bytes());
    digest[..6]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The SQL (re)making sync trigger `trigger` on `table` (quoted), BEFORE each row of `event`
/// that meets `condition`, calling `function` (in [`FUNCTION_SCHEMA`]), enabled ALWAYS.
pub(super) fn trigger_sql(
    trigger: &str,
    event: &str,
    table: &str,
    condition: &str,
    function: &str,
) -> String {
    format!(
        "DROP TRIGGER IF EXISTS {trigger} ON {table};
CREATE TRIGGER {trigger}
    BEFORE {event} ON {table}
    FOR EACH ROW
    WHEN ({condition})
    EXECUTE FUNCTION {function}();
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger};
",
        trigger = quote_ident(trigger),
        function = quote_qualified(FUNCTION_SCHEMA, function),
    )
}

/// SQL true when the writer counts as older than the migration's new version: one at a
/// version of `old_side`, or one with none (an old deployment writing the base table).
pub(super) fn old_writer_test(old_side: &[String]) -> String {
    format!(
        "{WRITER} = ANY ({}::text[])",
        text_array(old_side.iter().map(String::as_str).chain([""]))
    )
}

/// SQL true when the writer is at the migration's new version or newer (the backfill is
/// neither side).
pub(super) fn new_writer_test(old_side: &[String]) -> String {
    format!(
        "NOT {WRITER} = ANY ({}::text[])",
        text_array(
            old_side
                .iter()
                .map(String::as_str)
                .chain(["", BACKFILL_WRITER])
        )
    )
}

/// The columns of `columns` (logical name, physical column) that `assigns`' expressions read:
/// a function declares a variable for each of these only.
pub(super) fn read_by<'a>(
    columns: &'a [(String, String)],
    assigns: &[&Assign],
) -> Vec<&'a (String, String)> {
    columns
        .iter()
        .filter(|(logical, _)| {
            assigns
                .iter()
                .any(|assign| mentions(&assign.expression, logical))
        })
        .collect()
}

/// A sync function's variables: one per column its expressions `read` (logical name, physical
/// column of `table`), of the column's type, `initialised` from the row or not.
pub(super) fn declarations(read: &[&(String, String)], table: &str, initialised: bool) -> String {
    read.iter()
        .map(|(logical, physical)| {
            let (logical, physical) = (quote_ident(logical), quote_ident(physical));
            let initial = match initialised {
                true => format!(" := NEW.{physical}"),
                false => String::new(),
            };
            format!("    {logical} {table}.{physical}%TYPE{initial};\n")
        })
        .collect()
}

/// The SQL creating sync trigger function `function` of a table in `schema`: its
/// `declarations`, then its `decisions` and `assignments`, returning the row.
///
/// A trigger function is executable by PUBLIC unless revoked, and Postgres checks EXECUTE
/// only when a trigger is created: revoked, no role but the owner can attach it to a
/// relation of its own (as the nineteenth red-team pass did with a version's write
/// function), while the base table's triggers keep firing for every writer. Unlike the
/// write function, this one reads nothing but the row it is given, so it carries no check
/// of the relation it runs on (each base-table write would pay for it).
///
/// The function's variables stand for the row's columns. In a subquery of an expression a
/// column of the subquery's own tables is read before them, as SQL reads the outer row's
/// columns and as the backfill's UPDATE (which runs the same expression) does
/// (`use_column`; Postgres's default refused every write naming such a column, 42702).
///
/// The search_path is pinned: the function runs in each writer's session, where a client
/// may create types and tables in its own temporary schema, which Postgres searches first
/// for them (the thirty-eighth red-team pass made a `pg_temp.text` domain whose CHECK
/// handed its own function another version's value through a `::text` cast). Functions
/// and operators are never looked up there; the table's schema comes after the catalog's,
/// and `migrate start` refuses a database where a client could create in it.
pub(super) fn function_sql(
    schema: &str,
    function: &str,
    declarations: &str,
    decisions: &str,
    assignments: &str,
) -> String {
    let search_path = format!("pg_catalog, {}, pg_temp", quote_ident(schema));
    let function = quote_qualified(FUNCTION_SCHEMA, function);
    format!(
        "CREATE OR REPLACE FUNCTION {function}()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = {search_path}
AS {BODY_QUOTE}
#variable_conflict use_column
DECLARE
    {ROW} ALIAS FOR NEW;
{declarations}BEGIN
{decisions}{assignments}    RETURN {ROW};
END
{BODY_QUOTE};
REVOKE EXECUTE ON FUNCTION {function}() FROM PUBLIC;
"
    )
}

/// A `text[]` literal of `elements` (version names, which hold no quote or backslash, and the
/// empty string), every element double-quoted.
fn text_array<'a>(elements: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = elements.map(|element| format!("\"{element}\"")).collect();
    quote_literal(&format!("{{{}}}", quoted.join(",")))
}
