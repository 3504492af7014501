//! The sync triggers: while a migration is live, every write to a base table keeps both
//! versions' representations of the row right, whoever wrote it.
//!
//! The writer's version is the session setting `viewgate.version`, which the proxy keeps equal
//! to the version each session runs at (and which a client connecting directly can set). A
//! writer at the migration's previous version or older, or one with no version at all (an old
//! deployment writing the base table directly), gets the new version's columns computed with
//! `up`; a writer at the new version or newer gets the old version's columns computed with
//! `down`. The backfill writes with the version `viewgate_backfill`, which no trigger acts on.
//! The triggers are enabled ALWAYS, so that a write in replica mode (logical replication's
//! apply worker, `pg_restore --disable-triggers`) fills both sides too: otherwise a replicated
//! row failed the new column's NOT NULL check and stopped the subscription.
//!
//! Each direction has an INSERT and an UPDATE trigger (with a function each), named so that
//! chained migrations run in the right order: BEFORE triggers fire in name order (bytewise),
//! `~vg_sync_0_…` (down, newest migration first) before `~vg_sync_1_…` (up, oldest migration
//! first). A v1 write then fills v2's columns before v3's are computed from them, and a v3
//! write fills v2's before v1's. The `~` sorts them after the application's own BEFORE
//! triggers (any name of letters, digits and `_`), so both versions' columns are computed from
//! the row as those left it (the forty-first red-team pass saw an `upper(code)` trigger's
//! effect missing from v2 and lost at complete, under the earlier prefix `_vg_sync_`, which
//! sorted first; triggers of that name are still dropped, and renamed when a migration starts).
//! Where a migration retypes a column a sequence numbers, a third trigger, before all of
//! these, fills the new column from the number the old one took (`sequence_fill.rs`).

use super::derive::{Assign, ColumnMap, TableSync, mentions};
use super::file::BODY_QUOTE;
use super::sequence_fill;
use super::sync_sql::{
    BACKFILL_WRITER, FUNCTION_SCHEMA, ID_DIGITS, ROW, TRIGGER_PREFIX, declarations, function_sql,
    new_writer_test, old_writer_test, read_by, table_hash, trigger_sql,
};
use crate::control::quote::{quote_ident, quote_literal, quote_qualified};
use crate::model::sync_function;

/// What an UPDATE's sync trigger raises in place of an error computing another version's
/// columns (whose text may print their values).
const SYNC_FAILED: &str = "viewgate: a migration's sync trigger failed computing another version's columns from this row; the statement was not applied";
/// The prefix of earlier builds, whose triggers fired before the application's.
const LEGACY_TRIGGER_PREFIX: &str = "_vg_sync_";
/// A legacy sync trigger's whole name (prefix, direction, id, event), as a POSIX regex.
const LEGACY_TRIGGER_PATTERN: &str = "^_vg_sync_[01]_[0-9]{10}_[iu]$";
const MAX_ID: i64 = 9_999_999_999;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    fn word(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// Trigger and function names of one direction of a migration on one table.
pub struct SyncNames {
    /// The name both triggers of the direction start with (it decides their order).
    pub trigger: String,
    /// The same under an earlier build's prefix, which a migration it started still has.
    pub legacy_trigger: String,
    /// The INSERT trigger's function: it computes, its trigger's WHEN clause decides.
    pub function: String,
    /// The UPDATE trigger's function: it decides, then computes.
    pub update_function: String,
}

impl SyncNames {
    /// The INSERT trigger's and the UPDATE trigger's names, events and functions: they judge
    /// the writer differently.
    fn triggers(&self) -> [(String, &'static str, &str); 2] {
        Self::named(&self.trigger, self)
    }

    /// The same under the legacy prefix.
    fn legacy_triggers(&self) -> [(String, &'static str, &str); 2] {
        Self::named(&self.legacy_trigger, self)
    }

    fn named<'a>(stem: &str, names: &'a SyncNames) -> [(String, &'static str, &'a str); 2] {
        [
            (format!("{stem}_i"), "INSERT", &names.function),
            (format!("{stem}_u"), "UPDATE", &names.update_function),
        ]
    }
}

pub fn names(migration_id: i64, direction: Direction, schema: &str, table: &str) -> SyncNames {
    let table_hash = table_hash(schema, table);
    let stem = match direction {
        Direction::Down => format!("0_{:0ID_DIGITS$}", MAX_ID - migration_id),
        Direction::Up => format!("1_{migration_id:0ID_DIGITS$}"),
    };
    SyncNames {
        trigger: format!("{TRIGGER_PREFIX}{stem}"),
        legacy_trigger: format!("{LEGACY_TRIGGER_PREFIX}{stem}"),
        function: sync_function::name(migration_id, direction.word(), false, &table_hash),
        update_function: sync_function::name(migration_id, direction.word(), true, &table_hash),
    }
}

/// The SQL creating both triggers (where they have work) for `sync`. `old_side` lists the
/// versions whose writes count as older (the previous version and every version before it).
pub fn create_sql(migration_id: i64, sync: &TableSync, old_side: &[String]) -> String {
    let mut sql = rename_legacy_sql(&sync.schema, &sync.table);
    for (direction, assigns, columns) in [
        (Direction::Down, &sync.down, &sync.down_columns),
        (Direction::Up, &sync.up, &sync.up_columns),
    ] {
        if assigns.is_empty() {
            continue;
        }
        sql.push_str(&one_trigger(
            migration_id,
            direction,
            sync,
            assigns,
            columns,
            old_side,
        ));
    }
    sql.push_str(&sequence_fill::create_sql(migration_id, sync, old_side));
    sql
}

/// The SQL giving the table's sync triggers that an earlier build named (migrations it
/// started, still live) the current prefix: under the legacy one they would fire before the
/// application's triggers and before every trigger of a migration started since, out of the
/// chain's order.
fn rename_legacy_sql(schema: &str, table: &str) -> String {
    let table = quote_literal(&quote_qualified(schema, table));
    format!(
        "DO {BODY_QUOTE}
DECLARE
    legacy pg_catalog.name;
BEGIN
    FOR legacy IN SELECT tgname FROM pg_catalog.pg_trigger
                   WHERE tgrelid = {table}::pg_catalog.regclass AND tgname OPERATOR(pg_catalog.~) {pattern}
    LOOP
        EXECUTE pg_catalog.format('ALTER TRIGGER %I ON %s RENAME TO %I', legacy, {table},
            {prefix} OPERATOR(pg_catalog.||) pg_catalog.substr(legacy, {rest}));
    END LOOP;
END
{BODY_QUOTE};
",
        pattern = quote_literal(LEGACY_TRIGGER_PATTERN),
        prefix = quote_literal(TRIGGER_PREFIX),
        rest = LEGACY_TRIGGER_PREFIX.len() + 1,
    )
}

/// The SQL dropping both triggers and their functions (whether or not they exist), under the
/// current and the legacy prefix.
pub fn drop_sql(migration_id: i64, schema: &str, table: &str) -> String {
    let mut sql = String::new();
    for direction in [Direction::Down, Direction::Up] {
        let names = names(migration_id, direction, schema, table);
        for (trigger, _, _) in names.triggers().into_iter().chain(names.legacy_triggers()) {
            sql.push_str(&format!(
                "DROP TRIGGER IF EXISTS {} ON {};\n",
                quote_ident(&trigger),
                quote_qualified(schema, table)
            ));
        }
        for (_, _, function) in names.triggers() {
            sql.push_str(&format!(
                "DROP FUNCTION IF EXISTS {}();\n",
                quote_qualified(FUNCTION_SCHEMA, function)
            ));
        }
    }
    sql.push_str(&sequence_fill::drop_sql(migration_id, schema, table));
    sql
}

fn one_trigger(
    migration_id: i64,
    direction: Direction,
    sync: &TableSync,
    assigns: &[Assign],
    columns: &ColumnMap,
    old_side: &[String],
) -> String {
    let names = names(migration_id, direction, &sync.schema, &sync.table);
    let table = quote_qualified(&sync.schema, &sync.table);
    // Postgres reads a trigger's WHEN clause back from its stored node tree once per
    // statement, at a cost that grows with the tree: with the full decisions in WHEN clauses,
    // that was a fifth of a single-row INSERT's backend time and more of an UPDATE's (perf,
    // docs/benchmarks.md). So the INSERT trigger, judged by the setting alone, decides in a
    // short WHEN clause (read once, a writer with no version one more element of the array),
    // and a write it has no work for never calls its function; the UPDATE trigger, whose
    // decision also looks at which columns changed, decides in its function, behind a WHEN
    // clause that only keeps the backfill's rows from calling it.
    let old_writer = old_writer_test(old_side);
    let new_writer = new_writer_test(old_side);
    let not_backfill = format!(
        "current_setting('viewgate.version', true) IS DISTINCT FROM {}",
        quote_literal(BACKFILL_WRITER)
    );
    // An UPDATE also shows which representation the writer touched: only a writer at the
    // older side can change the columns only it sees (down's targets), and only one at the
    // newer side those only it sees (up's). That overrides the setting, which can lag behind a
    // statement prepared at another version; when neither or both changed, the setting decides.
    let old_changed = changed(assigns_targets(&sync.down));
    let new_changed = changed(assigns_targets(&sync.up));
    let (on_insert, update_decides) = match direction {
        Direction::Up => (
            old_writer.clone(),
            format!(
                "CASE WHEN {old_changed} = {new_changed} THEN {old_writer} ELSE {old_changed} END"
            ),
        ),
        Direction::Down => (
            new_writer.clone(),
            format!(
                "CASE WHEN {old_changed} = {new_changed} THEN {new_writer} ELSE {new_changed} END"
            ),
        ),
    };
    // Only the names the expressions read: each is an assignment per row. The INSERT
    // function, which always computes, reads them as the variables' initial values (one
    // statement fewer per name: 1.46× a bulk INSERT by hand against 1.62× with separate
    // assignments, /tmp/trg, docs/benchmarks.md); the UPDATE function reads them after its
    // decision, which often returns at once.
    let read = read_by(columns, &assigns.iter().collect::<Vec<_>>());
    // What an INSERT computes: not what the column's default has computed already.
    let inserted: Vec<&Assign> = assigns
        .iter()
        .filter(|assign| direction == Direction::Down || !sync.defaulted.contains(&assign.target))
        .collect();
    let insert_read = read_by(columns, &inserted);
    let reads: String = read
        .iter()
        .map(|(logical, physical)| {
            format!(
                "    {} := NEW.{};\n",
                quote_ident(logical),
                quote_ident(physical)
            )
        })
        .collect();
    let assignments: String = inserted
        .iter()
        .map(|assign| {
            format!(
                "    NEW.{} := (\n        {}\n    );\n",
                quote_ident(&assign.target),
                assign.expression
            )
        })
        .collect();
    // An UPDATE computes a column again only when a column its expression reads changed: a
    // writer that touched none of them (an older client setting a column both versions
    // share) would otherwise put back the derived value over what the other side wrote (the
    // thirty-first red-team pass saw a v1 UPDATE of `hyperparameters` reset v2's
    // `model_type`). Going up, a column still NULL is computed too: a row the backfill has
    // not reached yet (or moved behind its cursor by a key change) has no value there, and a
    // NOT NULL column's check refuses the UPDATE (the thirty-seventh pass saw every older
    // client's UPDATE of such a row fail during the backfill, and a moved row never filled).
    // Assignments with the same test share it (each costs a comparison a row).
    let mut guarded: Vec<(String, String)> = Vec::new();
    for assign in assigns {
        let read: Vec<&str> = columns
            .iter()
            .filter(|(logical, _)| mentions(&assign.expression, logical))
            .map(|(_, physical)| physical.as_str())
            .collect();
        if read.is_empty() {
            continue;
        }
        let condition = changed(read);
        let assignment = format!(
            "        NEW.{} := (\n            {}\n        );\n",
            quote_ident(&assign.target),
            assign.expression
        );
        match guarded.iter_mut().find(|(known, _)| *known == condition) {
            Some((_, body)) => body.push_str(&assignment),
            None => guarded.push((condition, assignment)),
        }
    }
    let mut update_assignments: String = guarded
        .iter()
        .map(|(condition, body)| format!("    IF {condition} THEN\n{body}    END IF;\n"))
        .collect();
    if direction == Direction::Up {
        for assign in assigns {
            let target = quote_ident(&assign.target);
            update_assignments.push_str(&format!(
                "    IF NEW.{target} IS NULL THEN\n        NEW.{target} := (\n            {}\n        );\n    END IF;\n",
                assign.expression
            ));
        }
    }
    // Made by `function_sql`, which says why it is so.
    let function = |name: &str, declarations: &str, decisions: &str, assignments: &str| {
        function_sql(&sync.schema, name, declarations, decisions, assignments)
    };
    // An UPDATE computes from the row's other columns, other versions' among them: an
    // expression that fails prints the value it failed on, which the writer's version may not
    // have (the thirty-seventh pass read one through the error, the thirty-eighth through a
    // DO block that caught it). The error keeps its SQLSTATE and loses its text. An INSERT
    // computes from the writer's own values only.
    let update_assignments = format!(
        "    BEGIN\n{update_assignments}    EXCEPTION WHEN OTHERS THEN\n        RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = {};\n    END;\n",
        quote_literal(SYNC_FAILED)
    );
    let mut sql = String::new();
    if !inserted.is_empty() {
        sql.push_str(&function(
            &names.function,
            &declarations(&insert_read, &table, true),
            "",
            &assignments,
        ));
    }
    sql.push_str(&function(
        &names.update_function,
        &declarations(&read, &table, false),
        &format!("    IF NOT ({update_decides}) THEN\n        RETURN {ROW};\n    END IF;\n{reads}"),
        &update_assignments,
    ));
    for ((trigger, event, function), condition) in
        names.triggers().into_iter().zip([on_insert, not_backfill])
    {
        if event == "INSERT" && inserted.is_empty() {
            continue;
        }
        sql.push_str(&trigger_sql(&trigger, event, &table, &condition, function));
    }
    sql
}

/// The physical columns `assigns` write.
fn assigns_targets(assigns: &[Assign]) -> Vec<&str> {
    assigns
        .iter()
        .map(|assign| assign.target.as_str())
        .collect()
}

/// SQL true when an UPDATE changed what is stored in any of physical `columns`. Postgres's
/// binary-identity record comparison (`record_image_eq`, the `*=` operator's function, called
/// by name: between two `ROW(…)` constructors an operator is applied column by column, where
/// no type has it) compares null flags and bytes: a type's
/// own equality would call a new value equal to the old one where it is stored differently
/// (citext's case, numeric's scale, a float's sign of zero), and such a write would never
/// reach the other version (the forty-first red-team pass lost a v1 `lower(email)` at
/// complete). It needs no equality operator either (`json`, `xml`, geometric types have none)
/// and is never NULL.
fn changed(columns: Vec<&str>) -> String {
    if columns.is_empty() {
        return "false".to_owned();
    }
    let row = |record: &str| -> String {
        let fields: Vec<String> = columns
            .iter()
            .map(|column| format!("{record}.{}", quote_ident(column)))
            .collect();
        format!("ROW({})", fields.join(", "))
    };
    format!(
        "(NOT pg_catalog.record_image_eq({}, {}))",
        row("NEW"),
        row("OLD")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_triggers_sort_newest_first_and_before_every_up_trigger() {
        let mut triggers: Vec<String> = [2, 3, 11]
            .iter()
            .flat_map(|id| {
                [Direction::Up, Direction::Down]
                    .map(|direction| names(*id, direction, "public", "t").trigger)
            })
            .collect();
        triggers.sort();
        let order: Vec<&str> = triggers.iter().map(String::as_str).collect();
        assert_eq!(
            order,
            [
                "~vg_sync_0_9999999988",
                "~vg_sync_0_9999999996",
                "~vg_sync_0_9999999997",
                "~vg_sync_1_0000000002",
                "~vg_sync_1_0000000003",
                "~vg_sync_1_0000000011",
            ]
        );
        // After any application trigger of letters, digits and `_` (Postgres compares bytes).
        for application in ["zzz_last", "Z", "_first", "9"] {
            assert!(
                order.iter().all(|name| *name > application),
                "{application}"
            );
        }
    }

    #[test]
    fn drop_removes_the_legacy_names_too() {
        let sql = drop_sql(3, "public", "t");
        for name in [
            "~vg_sync_0_9999999996_i",
            "~vg_sync_1_0000000003_u",
            "_vg_sync_0_9999999996_u",
            "_vg_sync_1_0000000003_i",
        ] {
            assert!(
                sql.contains(&format!("DROP TRIGGER IF EXISTS \"{name}\" ON")),
                "{sql}"
            );
        }
    }

    #[test]
    fn an_update_computes_again_only_what_reads_a_changed_column() {
        let sync = TableSync {
            schema: "public".into(),
            table: "t".into(),
            up: vec![
                assign("_vg_v2_n", "n::bigint * 1000"),
                assign("kind", "'unknown'"),
                assign("big", "n >= 500"),
                assign("k", "meta->>'k'"),
            ],
            up_columns: vec![("n".into(), "n".into()), ("meta".into(), "meta".into())],
            down: vec![],
            down_columns: vec![],
            filled: vec![],
            defaulted: vec![],
        };
        let sql = create_sql(4, &sync, &["v1".into()]);
        let update = &sql[sql.find("sync_4_up_u_").unwrap()..];
        // Both expressions reading `n` behind one test; the constant not at all.
        assert_eq!(update.matches("ROW(OLD.\"n\")").count(), 1, "{update}");
        assert!(
            update.contains(
                "    IF (NOT pg_catalog.record_image_eq(ROW(NEW.\"n\"), ROW(OLD.\"n\"))) THEN\n        NEW.\"_vg_v2_n\" := ("
            ) && update.contains("NEW.\"big\" := ("),
            "{update}"
        );
        // The constant only where the row has no value yet (a row the backfill has not
        // reached): every up column is filled so.
        assert!(
            update.contains("    IF NEW.\"kind\" IS NULL THEN\n        NEW.\"kind\" := (")
                && update.contains("    IF NEW.\"_vg_v2_n\" IS NULL THEN"),
            "{update}"
        );
        assert_eq!(update.matches("NEW.\"kind\" :=").count(), 1, "{update}");
        // A json column has no equality operator: compared by its stored bytes as any other.
        assert!(
            update.contains("    IF (NOT pg_catalog.record_image_eq(ROW(NEW.\"meta\"), ROW(OLD.\"meta\"))) THEN\n        NEW.\"k\" := ("),
            "{update}"
        );
        // The INSERT function computes all three.
        assert!(
            sql.contains("    NEW.\"kind\" := (\n        'unknown'\n    );"),
            "{sql}"
        );
    }

    fn assign(target: &str, expression: &str) -> Assign {
        Assign {
            target: target.into(),
            expression: expression.into(),
        }
    }

    #[test]
    fn an_insert_leaves_to_the_default_what_it_computes_as_up_does() {
        let ticket = "nextval('t_ticket_seq')";
        let sync = TableSync {
            schema: "public".into(),
            table: "t".into(),
            up: vec![assign("ticket", ticket), assign("kind", "lower(n)")],
            up_columns: vec![("n".into(), "n".into())],
            down: vec![],
            down_columns: vec![],
            filled: vec![],
            defaulted: vec!["ticket".into()],
        };
        let sql = create_sql(4, &sync, &["v1".into()]);
        let (insert, update) = sql.split_at(sql.find("sync_4_up_u_").unwrap());
        assert!(
            !insert.contains("\"ticket\"") && insert.contains("NEW.\"kind\" := ("),
            "{insert}"
        );
        assert!(
            update.contains(&format!(
                "    IF NEW.\"ticket\" IS NULL THEN\n        NEW.\"ticket\" := (\n            {ticket}\n        );"
            )),
            "a row the backfill has not reached is filled: {update}"
        );
        let up = vec![assign("ticket", ticket)];
        let sql = create_sql(4, &TableSync { up, ..sync }, &["v1".into()]);
        assert!(
            !sql.contains("BEFORE INSERT") && sql.contains("BEFORE UPDATE"),
            "no INSERT trigger with nothing to compute: {sql}"
        );
    }

    #[test]
    fn names_fit_an_identifier_and_differ_per_table() {
        let a = names(
            MAX_ID,
            Direction::Down,
            "a_very_long_schema_name",
            "a_very_long_table_name",
        );
        assert!(a.function.len() <= 63 && a.trigger.len() <= 63);
        assert_ne!(
            a.function,
            names(MAX_ID, Direction::Down, "public", "t").function
        );
    }

    #[test]
    fn the_trigger_reads_logical_names_and_writes_physical_columns() {
        let sync = TableSync {
            schema: "public".into(),
            table: "t".into(),
            up: vec![assign("_vg_v2_n", "n::bigint")],
            up_columns: vec![("n".into(), "n".into()), ("other".into(), "other".into())],
            down: vec![],
            down_columns: vec![("n".into(), "_vg_v2_n".into())],
            filled: vec![],
            defaulted: vec![],
        };
        let sql = create_sql(4, &sync, &["v1".into()]);
        // The INSERT function reads it as the variable's initial value, the UPDATE function
        // after its decision.
        assert!(
            sql.contains("\"n\" \"public\".\"t\".\"n\"%TYPE := NEW.\"n\";"),
            "{sql}"
        );
        assert!(sql.contains("\"n\" \"public\".\"t\".\"n\"%TYPE;"), "{sql}");
        assert!(sql.contains("END IF;\n    \"n\" := NEW.\"n\";"), "{sql}");
        assert!(
            !sql.contains("\"other\""),
            "a column no expression reads is not declared: {sql}"
        );
        assert!(sql.contains("NEW.\"_vg_v2_n\" := ("), "{sql}");
        assert!(
            sql.contains(
                "REVOKE EXECUTE ON FUNCTION \"viewgate\".\"sync_4_up_332b4fbd0105\"() FROM PUBLIC;"
            ),
            "{sql}"
        );
        assert!(sql.contains("'{\"v1\",\"\"}'::text[]"), "{sql}");
        assert!(
            !sql.contains("sync_4_down"),
            "no down work, no down trigger: {sql}"
        );
        // The INSERT trigger decides in its WHEN clause; the UPDATE trigger's function decides,
        // and its WHEN clause only keeps the backfill out.
        assert!(
            sql.contains(
                "BEFORE INSERT ON \"public\".\"t\"\n    FOR EACH ROW\n    WHEN (coalesce(current_setting('viewgate.version', true), '') = ANY ('{\"v1\",\"\"}'::text[]))\n    EXECUTE FUNCTION \"viewgate\".\"sync_4_up_332b4fbd0105\"();"
            ),
            "{sql}"
        );
        assert!(
            sql.contains(
                "BEFORE UPDATE ON \"public\".\"t\"\n    FOR EACH ROW\n    WHEN (current_setting('viewgate.version', true) IS DISTINCT FROM 'viewgate_backfill')\n    EXECUTE FUNCTION \"viewgate\".\"sync_4_up_u_332b4fbd0105\"();"
            ),
            "{sql}"
        );
        assert!(
            sql.contains(
                "    IF NOT (CASE WHEN false = (NOT pg_catalog.record_image_eq(ROW(NEW.\"_vg_v2_n\"), ROW(OLD.\"_vg_v2_n\")))"
            ),
            "{sql}"
        );
    }

    fn retyped_key() -> TableSync {
        TableSync {
            schema: "public".into(),
            table: "t".into(),
            up: vec![assign("_vg_v2_id", "id::bigint")],
            up_columns: vec![("id".into(), "id".into()), ("n".into(), "n".into())],
            down: vec![assign("id", "id::integer")],
            down_columns: vec![("id".into(), "_vg_v2_id".into())],
            filled: vec!["_vg_v2_id".into()],
            defaulted: Vec::new(),
        }
    }

    #[test]
    fn a_new_version_insert_leaving_the_stand_in_out_has_it_computed_from_the_identity() {
        let sql = create_sql(4, &retyped_key(), &["v1".into()]);
        let fill = &sql[sql.find("sync_4_up_f_").expect("a fill function")..];
        assert!(
            fill.contains("\"id\" \"public\".\"t\".\"id\"%TYPE := NEW.\"id\";")
                && !fill.contains("\"n\""),
            "it reads the old column, and only what `up` reads: {fill}"
        );
        assert!(
            fill.contains("    IF NEW.\"_vg_v2_id\" IS NULL THEN\n        NEW.\"_vg_v2_id\" := (\n            id::bigint\n        );"),
            "{fill}"
        );
        assert!(
            fill.contains("BEFORE INSERT ON \"public\".\"t\"\n    FOR EACH ROW\n    WHEN ((NEW.\"_vg_v2_id\" IS NULL) AND NOT coalesce(current_setting('viewgate.version', true), '') = ANY ('{\"v1\",\"\",\"viewgate_backfill\"}'::text[]))"),
            "only writers at the new version, and only when the column was left out: {fill}"
        );
        assert!(
            sql.contains("REVOKE EXECUTE ON FUNCTION \"viewgate\".\"sync_4_up_f_332b4fbd0105\"() FROM PUBLIC;"),
            "{sql}"
        );
        let without = TableSync {
            filled: Vec::new(),
            ..retyped_key()
        };
        assert!(!create_sql(4, &without, &["v1".into()]).contains("_f_"));
    }

    #[test]
    fn fills_fire_before_every_down_trigger_oldest_first_and_are_dropped_with_the_rest() {
        let (fill_2, _) = sequence_fill::names(2, "public", "t");
        let (fill_11, _) = sequence_fill::names(11, "public", "t");
        assert!(fill_2 < fill_11);
        for id in [2, 3, 11, MAX_ID] {
            let down = format!("{}_i", names(id, Direction::Down, "public", "t").trigger);
            assert!(fill_11 < down, "{fill_11} before {down}");
        }
        assert!(fill_2.len() <= 63);
        let dropped = drop_sql(2, "public", "t");
        assert!(
            dropped.contains(&format!(
                "DROP TRIGGER IF EXISTS \"{fill_2}\" ON \"public\".\"t\";"
            )) && dropped.contains("DROP FUNCTION IF EXISTS \"viewgate\".\"sync_2_up_f_"),
            "{dropped}"
        );
    }
}
