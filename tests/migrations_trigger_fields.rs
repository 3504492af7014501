//! The application's PL/pgSQL triggers that name a field of the row (`NEW.legacy_note`) which
//! the contract drops or renames refuse the migration before any change, and its complete when
//! made after the start. Postgres records no dependency on what a PL/pgSQL body names, so the
//! contract would succeed and every write firing the trigger fail from then on (42703).

use crate::migration_support;
use crate::support;

use migration_support::{at, base_columns, complete_now, rollback_now, seeded, start_text};
use support::{Database, exec, lines};
use viewgate::control::migrate::MigrateError;

fn migration(operation: &str) -> String {
    format!("version = \"v2\"\nfrom = \"v1\"\n[[operations]]\n{operation}\n")
}

const DROP_NOTE: &str = "op = \"drop_column\"\ntable = \"models\"\ncolumn = \"legacy_note\"";

/// A BEFORE trigger on `models` named `name` whose function runs `body` (PL/pgSQL).
fn trigger(database: &Database, name: &str, body: &str) {
    database.admin(&format!(
        "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body$ BEGIN {body} RETURN NEW; END $body$;
         CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON models FOR EACH ROW EXECUTE FUNCTION {name}();"
    ));
}

fn refused_objects(error: &MigrateError) -> String {
    match error {
        MigrateError::Unsafe { objects, .. } => objects.clone(),
        other => panic!("not refused as unsafe: {other}"),
    }
}

#[tokio::test]
async fn a_trigger_naming_a_field_the_contract_takes_away_is_refused_before_any_change() {
    let database = seeded(5).await;
    trigger(
        &database,
        "models_touch",
        "IF NEW.legacy_note IS NULL THEN NEW.name := upper(NEW.name); END IF;",
    );
    trigger(
        &database,
        "models_audit",
        "PERFORM to_jsonb(NEW) ->> 'legacy_note'; -- NEW.legacy_note in a comment\n",
    );
    for operation in [
        DROP_NOTE.to_owned(),
        "op = \"rename_column\"\ntable = \"models\"\nfrom = \"legacy_note\"\nto = \"note\"".into(),
        "op = \"alter_column\"\ntable = \"models\"\ncolumn = \"legacy_note\"\ntype = \"varchar(200)\"\nrename_to = \"note\"".into(),
    ] {
        let error = start_text(&database, "0002.toml", &migration(&operation))
            .await
            .expect_err(&operation);
        assert_eq!(
            refused_objects(&error),
            "trigger models_touch (function public.models_touch()) names NEW.legacy_note",
            "{operation}"
        );
        assert!(
            error.to_string().contains("every write that fires the trigger would fail"),
            "{error}"
        );
        assert_eq!(
            database.admin("SELECT count(*) FROM viewgate.migrations"),
            "0",
            "{operation}"
        );
    }

    // A field the contract keeps, under its name, is no reason to refuse.
    start_text(
        &database,
        "0002.toml",
        &migration(
            "op = \"alter_column\"\ntable = \"models\"\ncolumn = \"legacy_note\"\ntype = \"varchar(200)\"",
        ),
    )
    .await
    .expect("a retype keeps the name");
}

#[tokio::test]
async fn a_trigger_made_while_live_refuses_the_complete_until_it_no_longer_names_the_field() {
    let database = seeded(5).await;
    start_text(&database, "0002.toml", &migration(DROP_NOTE))
        .await
        .expect("starts");
    trigger(
        &database,
        "models_default_note",
        "NEW.\"legacy_note\" := coalesce(NEW.legacy_note, '-');",
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    let error = complete_now(&database).await.expect_err("refused");
    assert_eq!(
        refused_objects(&error),
        "trigger models_default_note (function public.models_default_note()) names NEW.legacy_note"
    );

    database.admin(
        "CREATE OR REPLACE FUNCTION models_default_note() RETURNS trigger LANGUAGE plpgsql AS
         $body$ BEGIN NEW.name := coalesce(NEW.name, '-'); RETURN NEW; END $body$",
    );
    complete_now(&database)
        .await
        .expect("completes once the function no longer names it");
    let v2 = at(&database, "v2").await;
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('after')").await;
    assert_eq!(
        lines(&v2, "SELECT count(*) FROM models_v2 WHERE name = 'after'").await,
        ["1"]
    );
}

/// A trigger written for the new version, naming a column its expand added, refuses the
/// rollback, which would drop the column under it.
#[tokio::test]
async fn a_trigger_naming_a_column_the_expand_added_refuses_the_rollback() {
    let database = seeded(5).await;
    start_text(
        &database,
        "0002.toml",
        &migration("op = \"add_column\"\ntable = \"models\"\ncolumn = { name = \"label\", type = \"text\" }"),
    )
    .await
    .expect("starts");
    trigger(&database, "models_label", "NEW.label := lower(NEW.label);");
    let columns = base_columns(&database);
    let error = rollback_now(&database).await.expect_err("refused");
    assert_eq!(
        refused_objects(&error),
        "trigger models_label (function public.models_label()) names NEW.label"
    );
    assert!(
        error
            .to_string()
            .contains("`migrate rollback` drops that column"),
        "{error}"
    );
    assert_eq!(base_columns(&database), columns, "nothing was rolled back");
    let v2 = at(&database, "v2").await;
    exec(
        &v2,
        "INSERT INTO models_v2 (name, label) VALUES ('x', 'LOUD')",
    )
    .await;
    assert_eq!(
        lines(&v2, "SELECT label FROM models_v2 WHERE name = 'x'").await,
        ["loud"],
        "v2 still writes"
    );

    database.admin("DROP TRIGGER models_label ON models");
    rollback_now(&database)
        .await
        .expect("rolls back once the trigger is gone");
    assert!(!base_columns(&database).contains("label"));
}
