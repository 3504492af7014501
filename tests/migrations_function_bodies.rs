//! The application's functions whose SQL names a table the contract drops or renames refuse the
//! migration before any change, and its complete when made after the start: Postgres records
//! no dependency on a PL/pgSQL body or an SQL function written as a string, so the contract
//! would succeed and every call fail (42P01). SQL built at run time, a comment or a string
//! naming the table, and a `BEGIN ATOMIC` body (which follows a rename) do not count; SQL
//! run by `EXECUTE` as a constant does.

use crate::migration_support;
use crate::support;

use migration_support::{at, complete_now, seeded, start_text};
use support::lines;
use viewgate::control::migrate::MigrateError;

const RENAME: &str = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"rename_table\"\nfrom = \"models\"\nto = \"items\"\n";

/// The operation creating `model_tags`, whose key is a `bigserial`.
const CREATE_TAGS: &str = "[[operations]]\nop = \"create_table\"\ntable = \"model_tags\"\n\
    columns = [{ name = \"id\", type = \"bigserial\", primary_key = true }, { name = \"tag\", type = \"text\" }]\n";

/// The migration to v2 that drops `models.legacy_note`.
const DROP_NOTE: &str = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"drop_column\"\ntable = \"models\"\ncolumn = \"legacy_note\"\n";

/// What `migrate start` of `text`, refused as unsafe, names: the table, and the objects.
async fn refused_start(database: &support::Database, text: &str) -> (String, String) {
    let error = start_text(database, "0002.toml", text)
        .await
        .expect_err("refused");
    refusal(&error)
}

fn refusal(error: &MigrateError) -> (String, String) {
    match error {
        MigrateError::Unsafe { table, objects, .. } => (table.clone(), objects.clone()),
        other => panic!("not refused as unsafe: {other}"),
    }
}

#[tokio::test]
async fn a_function_naming_a_table_the_contract_renames_is_refused_before_any_change() {
    let database = seeded(5).await;
    database.admin(
        "CREATE FUNCTION public.count_models() RETURNS bigint LANGUAGE sql
             AS 'SELECT count(*) FROM models';
         CREATE FUNCTION public.count_executed() RETURNS bigint LANGUAGE plpgsql AS $body$
             DECLARE n bigint;
             BEGIN
                 EXECUTE 'SELECT count(*) FROM ' || 'models' INTO n;
                 RETURN n;
             END $body$;
         CREATE FUNCTION public.count_formatted() RETURNS bigint LANGUAGE plpgsql AS $body$
             DECLARE n bigint; column_name text := 'name';
             BEGIN
                 EXECUTE format('SELECT count(*) FROM %I WHERE %I IS NOT NULL', 'models', column_name)
                     INTO n;
                 RETURN n;
             END $body$;
         CREATE FUNCTION public.count_formatted_by_variable() RETURNS bigint LANGUAGE plpgsql
             AS $body$
             DECLARE n bigint; target text := 'models';
             BEGIN
                 EXECUTE format('SELECT count(*) FROM %I', target) INTO n;
                 RETURN n;
             END $body$;
         CREATE FUNCTION public.count_later(suffix text) RETURNS bigint LANGUAGE plpgsql AS $body$
             DECLARE n bigint;
             BEGIN -- FROM models
                 EXECUTE format('SELECT count(*) FROM %s', 'mod' || suffix) INTO n;
                 RETURN n;
             END $body$;
         CREATE FUNCTION public.count_through_variable() RETURNS bigint LANGUAGE plpgsql AS $body$
             DECLARE n bigint; query text;
             BEGIN
                 query := 'SELECT count(*) FROM models';
                 EXECUTE query INTO n;
                 RETURN n;
             END $body$;
         CREATE FUNCTION public.count_atomic() RETURNS bigint LANGUAGE sql
             BEGIN ATOMIC SELECT count(*) FROM public.models; END;",
    );
    // Each refuses the rename in turn, and is dropped: SQL run by `EXECUTE` is read where it is
    // a constant; `format()`'s, its identifiers given as constants (one known only at run time
    // stands in as a name that matches nothing), or as a variable the function gives only
    // constants; an SQL function's string body; a constant given to the variable executed.
    for function in [
        "count_executed()",
        "count_formatted()",
        "count_formatted_by_variable()",
        "count_models()",
        "count_through_variable()",
    ] {
        assert_eq!(
            refused_start(&database, RENAME).await,
            (
                "public.models (renamed)".to_owned(),
                format!("function public.{function} names it in its SQL")
            )
        );
        assert_eq!(
            database.admin("SELECT count(*) FROM viewgate.migrations"),
            "0"
        );
        database.admin(&format!("DROP FUNCTION public.{function}"));
    }
    start_text(&database, "0002.toml", RENAME)
        .await
        .expect("starts: SQL built at run time and an atomic body do not count");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        database.admin("SELECT public.count_atomic()"),
        "5",
        "an atomic body follows the rename"
    );
}

#[tokio::test]
async fn a_function_made_while_live_refuses_the_complete_until_it_no_longer_names_the_table() {
    let database = seeded(5).await;
    start_text(&database, "0002.toml", RENAME)
        .await
        .expect("starts");
    database.admin(
        "CREATE TABLE public.orders (id serial PRIMARY KEY, model bigint);
         CREATE FUNCTION public.touch_model() RETURNS trigger LANGUAGE plpgsql AS $body$
             BEGIN UPDATE models SET size = size + 1 WHERE id = NEW.model; RETURN NEW; END $body$;
         CREATE TRIGGER touch_model AFTER INSERT ON orders FOR EACH ROW
             EXECUTE FUNCTION public.touch_model();",
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    let error = complete_now(&database).await.expect_err("refused");
    assert_eq!(
        refusal(&error).1,
        "function public.touch_model() names it in its SQL"
    );

    database.admin(
        "CREATE OR REPLACE FUNCTION public.touch_model() RETURNS trigger LANGUAGE plpgsql AS $body$
             BEGIN UPDATE items SET size = size + 1 WHERE id = NEW.model; RETURN NEW; END $body$",
    );
    complete_now(&database)
        .await
        .expect("completes once the function names the new name");
    database.admin("INSERT INTO orders (model) VALUES (1)");
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(&v2, "SELECT size FROM items_v2 WHERE id = 1").await,
        ["2"],
        "the order's trigger reached the renamed table"
    );
}

#[tokio::test]
async fn a_function_naming_a_column_the_contract_drops_is_refused_before_any_change() {
    let database = seeded(5).await;
    database.admin(
        "CREATE FUNCTION public.clear_notes() RETURNS void LANGUAGE plpgsql AS $body$
             BEGIN UPDATE models SET legacy_note = NULL WHERE legacy_note = ''; END $body$;
         CREATE FUNCTION public.note_of(bigint) RETURNS text LANGUAGE sql
             AS 'SELECT to_jsonb(m) ->> ''legacy_note'' FROM models m WHERE m.id = $1';",
    );
    assert_eq!(
        refused_start(&database, DROP_NOTE).await,
        (
            "public.models".to_owned(),
            "function public.clear_notes() names column(s) legacy_note in its SQL".to_owned()
        )
    );

    database.admin("DROP FUNCTION public.clear_notes()");
    start_text(&database, "0002.toml", DROP_NOTE)
        .await
        .expect("starts: a row read through to_jsonb names no column");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        database.admin("SELECT coalesce(public.note_of(1), 'gone')"),
        "gone"
    );
}

/// A PL/pgSQL assignment (`note := (SELECT …)`) is read for what its value names: the text
/// Postgres keeps of it is no SQL statement, and a function with one was left unread (with a
/// warning), its call failing after the contract.
#[tokio::test]
async fn a_column_read_in_an_assignment_refuses_the_drop() {
    let database = seeded(5).await;
    database.admin(
        "CREATE FUNCTION public.first_note() RETURNS text LANGUAGE plpgsql AS $body$
             DECLARE note text;
             BEGIN note := (SELECT m.legacy_note FROM models m ORDER BY m.id LIMIT 1); RETURN note; END $body$",
    );
    assert_eq!(
        refused_start(&database, DROP_NOTE).await,
        (
            "public.models".to_owned(),
            "function public.first_note() names column(s) legacy_note in its SQL".to_owned()
        )
    );
    database.admin(
        "CREATE OR REPLACE FUNCTION public.first_note() RETURNS text LANGUAGE plpgsql AS $body$
             DECLARE note text;
             BEGIN note := (SELECT m.name FROM models m ORDER BY m.id LIMIT 1); RETURN note; END $body$",
    );
    start_text(&database, "0002.toml", DROP_NOTE)
        .await
        .expect("starts once the function reads another column");
}

/// A function written for the new version, naming a column its expand added or a table it
/// created, refuses the rollback, which would drop them and leave every call failing (42703,
/// 42P01); redefined, the rollback runs.
#[tokio::test]
async fn a_function_naming_what_the_expand_added_refuses_the_rollback() {
    let database = seeded(5).await;
    start_text(
        &database,
        "0002.toml",
        &format!(
            "version = \"v2\"\nfrom = \"v1\"\n\
             [[operations]]\nop = \"add_column\"\ntable = \"models\"\n\
             column = {{ name = \"model_type\", type = \"text\" }}\n{CREATE_TAGS}"
        ),
    )
    .await
    .expect("starts");
    database.admin(
        "CREATE FUNCTION public.typed(wanted text) RETURNS bigint LANGUAGE plpgsql AS $body$
             BEGIN RETURN (SELECT count(*) FROM models m WHERE m.model_type = wanted); END $body$",
    );
    let rollback = || async { migration_support::rollback_now(&database).await };
    let error = rollback().await.expect_err("refused");
    assert_eq!(
        refusal(&error),
        (
            "public.models".to_owned(),
            "function public.typed(wanted text) names column(s) model_type in its SQL".to_owned()
        )
    );
    assert!(
        error.to_string().contains("`migrate rollback` would drop"),
        "{error}"
    );

    database.admin(
        "CREATE OR REPLACE FUNCTION public.typed(wanted text) RETURNS bigint LANGUAGE sql
             AS 'SELECT count(*) FROM public.model_tags WHERE tag = wanted'",
    );
    let error = rollback().await.expect_err("refused");
    assert_eq!(
        refusal(&error).1,
        "function public.typed(wanted text) names it in its SQL"
    );
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations"),
        "live"
    );

    database.admin("DROP FUNCTION public.typed(text)");
    rollback().await.expect("rolls back");
    // What the refusal spared: the function, made again, fails every call once the column is gone.
    database.admin(
        "CREATE FUNCTION public.typed(wanted text) RETURNS bigint LANGUAGE plpgsql AS $body$
             BEGIN RETURN (SELECT count(*) FROM models m WHERE m.model_type = wanted); END $body$",
    );
    let client = database.client().await;
    let failed = client
        .query("SELECT public.typed('a')", &[])
        .await
        .expect_err("the column is gone");
    assert_eq!(failed.code().map(|code| code.code()), Some("42703"));
}

/// An unqualified column in a statement that joins other tables counts where none of them has
/// a column of that name, as the catalog says: a report joining `models` to `owners` that
/// reads `legacy_note` refuses the drop; one reading `owners.note` unqualified does not.
#[tokio::test]
async fn an_unqualified_column_in_a_join_counts_where_no_other_table_has_it() {
    let database = seeded(5).await;
    let report = |column: &str| {
        format!(
            "CREATE OR REPLACE FUNCTION public.owner_notes() RETURNS SETOF text LANGUAGE plpgsql
                 AS $body$ BEGIN
                     RETURN QUERY SELECT {column} FROM models JOIN owners ON owners.model = models.id;
                 END $body$"
        )
    };
    database.admin(
        "CREATE TABLE public.owners (id bigint PRIMARY KEY, model bigint, note text);
         INSERT INTO owners VALUES (1, 1, 'first')",
    );
    database.admin(&report("legacy_note"));
    assert_eq!(
        refused_start(&database, DROP_NOTE).await,
        (
            "public.models".to_owned(),
            "function public.owner_notes() names column(s) legacy_note in its SQL".to_owned()
        )
    );

    database.admin(&report("note"));
    start_text(&database, "0002.toml", DROP_NOTE)
        .await
        .expect("starts: owners has a note, models none");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(database.admin("SELECT public.owner_notes()"), "first");
}

/// A function calling by name (`nextval('…')`) the sequence the contract drops with a serial
/// column: Postgres records no dependency, the drop succeeds, and every call would fail
/// (42P01). Refused; with the sequence kept apart from its column, the migration runs and the
/// function goes on counting.
#[tokio::test]
async fn a_function_calling_a_dropped_columns_sequence_by_name_is_refused() {
    let database = migration_support::with_serial_ticket().await;
    database.admin(
        "CREATE FUNCTION public.next_ticket() RETURNS bigint LANGUAGE plpgsql AS $body$
             BEGIN RETURN nextval('public.models_ticket_seq'); END $body$",
    );
    refused_until_the_sequence_is_its_own(
        &database,
        "function public.next_ticket() calls the sequence by name",
    )
    .await;
    assert_eq!(database.admin("SELECT public.next_ticket()"), "1");
}

/// Starts the migration dropping the serial column `ticket` (and its sequence
/// `models_ticket_seq`): refused as `calls` says, with nothing recorded; then, the sequence kept
/// apart from its column, started and completed.
async fn refused_until_the_sequence_is_its_own(database: &support::Database, calls: &str) {
    let drop_ticket = "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"drop_column\"\ntable = \"models\"\ncolumn = \"ticket\"\n";
    assert_eq!(
        refused_start(database, drop_ticket).await,
        (
            "public.models_ticket_seq (dropped with column ticket of public.models (drop_column))"
                .to_owned(),
            calls.to_owned()
        )
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.migrations"),
        "0"
    );
    database.admin("ALTER SEQUENCE models_ticket_seq OWNED BY NONE");
    start_text(database, "0002.toml", drop_ticket)
        .await
        .expect("starts once the sequence is its own");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(database).await.expect("completes");
}

/// A column default calling by name as text (`nextval('…'::text)`, an ORM's way) the sequence
/// the contract drops with a serial column: no dependency, the drop succeeds, and every insert
/// taking the default would fail (42P01). Refused, naming the column; the dropped column's own
/// default, which goes with it, is not. With the sequence kept apart, the migration runs and
/// the default goes on numbering.
#[tokio::test]
async fn a_default_calling_a_dropped_columns_sequence_by_name_is_refused() {
    let database = migration_support::with_serial_ticket().await;
    database.admin(
        "CREATE TABLE public.counters (id int PRIMARY KEY,
             ticket bigint DEFAULT nextval('public.models_ticket_seq'::text))",
    );
    refused_until_the_sequence_is_its_own(
        &database,
        "the default of column ticket of public.counters calls the sequence by name (nextval(('public.models_ticket_seq'::text)::regclass))",
    )
    .await;
    assert_eq!(
        database.admin("INSERT INTO counters (id) VALUES (1) RETURNING ticket"),
        "1"
    );
}

/// The rollback drops a table the expand created, and its serial's sequence with it: a
/// function, or another table's default, calling that sequence by name as text holds no
/// dependency, and every call would fail (42P01). Refused, naming each, with nothing changed;
/// once neither calls it, the rollback runs. A default holding it as a `regclass` makes
/// Postgres refuse the rollback's drop (2BP01), which undoes the rollback whole.
#[tokio::test]
async fn calling_a_created_tables_sequence_by_name_refuses_the_rollback() {
    let database = seeded(5).await;
    start_text(
        &database,
        "0002.toml",
        &format!("version = \"v2\"\nfrom = \"v1\"\n{CREATE_TAGS}"),
    )
    .await
    .expect("starts");
    let rollback = || async { migration_support::rollback_now(&database).await };
    let sequence =
        "public.model_tags_id_seq (dropped with table public.model_tags, which the expand created)";
    database.admin(
        "CREATE FUNCTION public.next_tag() RETURNS bigint LANGUAGE plpgsql AS $body$
             BEGIN RETURN nextval('model_tags_id_seq'); END $body$",
    );
    let error = rollback().await.expect_err("refused");
    assert_eq!(
        refusal(&error),
        (
            sequence.to_owned(),
            "function public.next_tag() calls the sequence by name".to_owned()
        )
    );
    assert!(error.to_string().contains("roll back again"), "{error}");

    database.admin(
        "DROP FUNCTION public.next_tag();
         CREATE TABLE public.counters (id int PRIMARY KEY,
             tag bigint DEFAULT nextval('model_tags_id_seq'::text))",
    );
    assert_eq!(
        refusal(&rollback().await.expect_err("refused")),
        (
            sequence.to_owned(),
            "the default of column tag of public.counters calls the sequence by name (nextval(('model_tags_id_seq'::text)::regclass))".to_owned()
        )
    );

    database
        .admin("ALTER TABLE public.counters ALTER tag SET DEFAULT nextval('model_tags_id_seq')");
    let error = rollback()
        .await
        .expect_err("Postgres refuses the drop")
        .to_string();
    assert!(
        error.contains("2BP01")
            && error.contains("detail: default value for column tag of table counters")
            && error.contains("hint: viewgate never drops with CASCADE")
            && !error.contains("Use DROP"),
        "{error}"
    );
    assert_eq!(
        database.admin(
            "SELECT phase || ' ' || (to_regclass('public.model_tags') IS NOT NULL)
               FROM viewgate.migrations"
        ),
        "live true"
    );

    database.admin("ALTER TABLE public.counters ALTER tag DROP DEFAULT");
    rollback().await.expect("rolls back");
    assert_eq!(
        database.admin("SELECT to_regclass('public.model_tags_id_seq') IS NULL"),
        "t"
    );
}
