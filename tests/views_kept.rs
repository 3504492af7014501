//! What the application builds on a version's views outlives their remaking. `views apply`
//! and the contract (which remakes the remaining version's views over the renamed columns)
//! replace a view in place where its columns allow, so the views, grants and rules built on it
//! stay; one that must be made anew keeps its grants, and what depends on it refuses the apply
//! with a message saying what to do; the view `migrate start` makes for a new version takes
//! the grants of the view it starts from. Against a real Postgres, with roles that have no
//! right but those grants.

use crate::migration_support;
use crate::support;

use migration_support::{BASE, SPEC, complete_now, retype, seeded, start_text};
use support::{Database, exec, lines};
use viewgate::control::ControlError;
use viewgate::control::templates::Templates;
use viewgate::control::views::apply;
use viewgate::control::views::spec::Spec;

/// Every grant on `view` other than its owner's, one per line, sorted: `role PRIVILEGE`,
/// `(column)` for a column's, `grantable` with the grant option.
fn grants_on(database: &Database, view: &str) -> String {
    let who = "CASE WHEN p.grantee = 0 THEN 'PUBLIC' ELSE p.grantee::regrole::text END \
               || ' ' || p.privilege_type";
    let option = "CASE WHEN p.is_grantable THEN ' grantable' ELSE '' END";
    database.admin(&format!(
        "SELECT coalesce(string_agg(grant_line, E'\\n' ORDER BY grant_line COLLATE \"C\"), '(none)') FROM (
            SELECT {who} || {option}
              FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) p
             WHERE c.oid = '{view}'::regclass AND p.grantee <> c.relowner
             UNION ALL
            SELECT {who} || ' (' || a.attname || ')' || {option}
              FROM pg_attribute a CROSS JOIN LATERAL aclexplode(a.attacl) p
             WHERE a.attrelid = '{view}'::regclass) AS grants (grant_line)"
    ))
}

fn oid(database: &Database, relation: &str) -> String {
    database.admin(&format!("SELECT '{relation}'::regclass::oid"))
}

/// A session of role `role`, which holds no right but what it was granted, at `version`.
async fn as_role_at(database: &Database, role: &str, version: &str) -> tokio_postgres::Client {
    let client = database.client().await;
    exec(
        &client,
        &format!("SET ROLE {role}; SET viewgate.version = '{version}'"),
    )
    .await;
    client
}

const GRANTS: &str = "
    CREATE ROLE app NOLOGIN;
    CREATE ROLE editor NOLOGIN;
    GRANT USAGE ON SCHEMA public TO app, editor;
    -- The views are security_invoker (PostgreSQL 15 and later): the base table's rights too.
    GRANT SELECT, INSERT, UPDATE ON models TO app;
    GRANT USAGE ON SEQUENCE models_id_seq TO app;
    GRANT SELECT, UPDATE ON models TO editor;
    GRANT SELECT, INSERT, UPDATE ON models_v1 TO app;
    GRANT SELECT (id, name), UPDATE (name) ON models_v1 TO editor WITH GRANT OPTION;
    GRANT SELECT (legacy_note) ON models_v1 TO PUBLIC;";

/// [`GRANTS`] as [`grants_on`] reads them.
const V1_GRANTS: &str = "PUBLIC SELECT (legacy_note)
app INSERT
app SELECT
app UPDATE
editor SELECT (id) grantable
editor SELECT (name) grantable
editor UPDATE (name) grantable";

#[tokio::test]
async fn a_view_that_views_apply_makes_anew_keeps_its_grants() {
    let database = Database::start();
    database.admin(BASE);
    database.apply_text(SPEC).await;
    database.admin(GRANTS);
    assert_eq!(grants_on(&database, "models_v1"), V1_GRANTS);
    let before = oid(&database, "models_v1");

    // The spec changes v1: its view is dropped and made again, without legacy_note.
    let outcome = database
        .apply_text(&SPEC.replace(", \"legacy_note\"]", "]"))
        .await;
    assert_eq!(outcome.applied, ["v1"]);
    assert_ne!(
        oid(&database, "models_v1"),
        before,
        "the view was made anew"
    );
    assert_eq!(
        grants_on(&database, "models_v1"),
        V1_GRANTS.replace("PUBLIC SELECT (legacy_note)\n", ""),
        "every grant kept but the one on the column the view no longer has"
    );
    let app = as_role_at(&database, "app", "v1").await;
    exec(&app, "INSERT INTO models_v1 (name) VALUES ('by app')").await;
    assert_eq!(lines(&app, "SELECT name FROM models_v1").await, ["by app"]);
}

#[tokio::test]
async fn a_new_versions_view_takes_the_grants_it_starts_from_and_keeps_them_past_the_contract() {
    let database = seeded(3).await;
    database.admin(GRANTS);
    // A retype: the contract renames the new column and remakes v2's view over it.
    start_text(&database, "0002.toml", &retype("size", "bigint", ""))
        .await
        .expect("starts");
    assert_eq!(
        grants_on(&database, "models_v2"),
        V1_GRANTS,
        "v2's view has v1's grants"
    );
    let app = as_role_at(&database, "app", "v2").await;
    exec(
        &app,
        "INSERT INTO models_v2 (name, size) VALUES ('at v2', 5000)",
    )
    .await;
    let editor = as_role_at(&database, "editor", "v2").await;
    exec(
        &editor,
        "UPDATE models_v2 SET name = 'renamed' WHERE id = 1",
    )
    .await;

    database.admin("CREATE VIEW big_models AS SELECT id, name, size FROM models_v2 WHERE size > 2");
    let v2_view = oid(&database, "models_v2");

    complete_now(&database)
        .await
        .expect("completes, with a view of the application's over models_v2");
    assert_eq!(
        oid(&database, "models_v2"),
        v2_view,
        "the contract replaced v2's view in place: its columns did not change"
    );
    assert_eq!(
        grants_on(&database, "models_v2"),
        V1_GRANTS,
        "the contract's remade view keeps them"
    );
    assert_eq!(
        database.admin("SELECT string_agg(name || ' ' || size, ', ' ORDER BY id) FROM big_models"),
        "model-3 3, at v2 5000",
        "the application's view over v2's reads the contracted table"
    );
    let app = as_role_at(&database, "app", "v2").await;
    exec(
        &app,
        "UPDATE models_v2 SET size = size + 1 WHERE name = 'at v2'",
    )
    .await;
    assert_eq!(
        lines(
            &app,
            "SELECT name || ' ' || size FROM models_v2 ORDER BY id"
        )
        .await,
        ["renamed 1", "model-2 2", "model-3 3", "at v2 5001"]
    );
}

/// [`BASE`]'s table at v1 with `note` computed from `legacy_note` (so the view is
/// trigger-backed), under `note_expression`.
fn computed_note_spec(note_expression: &str) -> String {
    SPEC.replace(
        "\"legacy_note\"]",
        &format!(
            "{{ name = \"note\", expr = \"{note_expression}\", write = {{ legacy_note = \"NEW.note\" }} }}]"
        ),
    )
}

#[tokio::test]
async fn a_change_that_keeps_the_views_columns_replaces_it_in_place() {
    let database = Database::start();
    database.admin(BASE);
    database
        .apply_text(&computed_note_spec("COALESCE(legacy_note, '')"))
        .await;
    database.admin(
        "INSERT INTO models (name, legacy_note) VALUES ('with', 'a note'), ('without', NULL);
         CREATE VIEW noted AS SELECT name, note FROM models_v1;
         CREATE ROLE reader NOLOGIN;
         GRANT SELECT ON models, models_v1 TO reader;",
    );
    let before = oid(&database, "models_v1");

    let outcome = database
        .apply_text(&computed_note_spec("COALESCE(legacy_note, '(none)')"))
        .await;
    assert_eq!(outcome.applied, ["v1"]);
    assert_eq!(oid(&database, "models_v1"), before, "replaced in place");
    assert_eq!(
        database.admin("SELECT string_agg(name || ': ' || note, ', ' ORDER BY name) FROM noted"),
        "with: a note, without: (none)",
        "the application's view over v1's reads the new expression"
    );
    assert_eq!(grants_on(&database, "models_v1"), "reader SELECT");
    assert_eq!(
        database.admin(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'models_v1'::regclass AND NOT tgisinternal"
        ),
        "1",
        "one write trigger, made again"
    );
    let v1 = database.client().await;
    exec(
        &v1,
        "INSERT INTO models_v1 (name, note) VALUES ('written', 'through the trigger')",
    )
    .await;
    assert_eq!(
        database.admin("SELECT legacy_note FROM models WHERE name = 'written'"),
        "through the trigger"
    );
    let again = database
        .apply_text(&computed_note_spec("COALESCE(legacy_note, '(none)')"))
        .await;
    assert!(again.is_noop(), "no drift after a replacement: {again}");
}

#[tokio::test]
async fn a_view_that_must_be_made_anew_under_a_view_of_the_applications_is_refused_and_says_what_to_do()
 {
    let database = Database::start();
    database.admin(BASE);
    database.apply_text(SPEC).await;
    database.admin("CREATE VIEW notes AS SELECT id, legacy_note FROM models_v1");
    let before = oid(&database, "models_v1");

    let path = database.spec_file("viewgate.toml", &SPEC.replace(", \"legacy_note\"]", "]"));
    let refused = database
        .apply(&path)
        .await
        .expect_err("refused: v1's view loses a column notes reads");
    assert!(
        matches!(refused, ControlError::Rejected { .. }),
        "{refused:?}"
    );
    let message = refused.to_string();
    for expected in [
        "2BP01",
        "view notes depends on view models_v1",
        "viewgate never drops with CASCADE",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    assert!(!message.contains("Use DROP ... CASCADE"), "{message}");
    assert_eq!(oid(&database, "models_v1"), before, "nothing changed");
    assert_eq!(
        database.admin("SELECT count(*) FROM notes"),
        "0",
        "the application's view still reads"
    );
}

#[tokio::test]
async fn a_template_written_before_in_place_makes_the_view_anew_and_keeps_its_grants() {
    let database = Database::start();
    database.admin(BASE);
    // The shipped view template as it was before it knew `in_place`: always drop, then create.
    let shipped = std::fs::read_to_string(support::repo_file("view-templates/view.sql.j2"))
        .expect("shipped template");
    let branch = shipped
        .find("{% if in_place %}")
        .expect("the in-place branch");
    let fresh = shipped.find("{% else %}\n").expect("its else") + "{% else %}\n".len();
    let end = shipped[fresh..].find("{% endif %}\n").expect("its end") + fresh;
    let old_style = format!(
        "{}{}{}",
        &shipped[..branch],
        &shipped[fresh..end],
        &shipped[end + "{% endif %}\n".len()..]
    );
    assert!(!old_style.contains("{% if in_place"), "{old_style}");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("view.sql.j2"), old_style).expect("template");
    let templates = Templates::from_dir(dir.path()).expect("templates load");
    let apply = async |text: &str| {
        let spec = Spec::load(&database.spec_file("viewgate.toml", text)).expect("spec");
        let mut client = database.client().await;
        apply::apply(&mut client, &spec, &templates, support::quick_locks())
            .await
            .expect("applies")
    };
    apply(&computed_note_spec("COALESCE(legacy_note, '')")).await;
    database.admin("CREATE ROLE reader NOLOGIN; GRANT SELECT ON models_v1 TO reader");
    let before = oid(&database, "models_v1");

    let outcome = apply(&computed_note_spec("COALESCE(legacy_note, '(none)')")).await;
    assert_eq!(outcome.applied, ["v1"]);
    assert_ne!(oid(&database, "models_v1"), before, "made anew");
    assert_eq!(grants_on(&database, "models_v1"), "reader SELECT");
}

#[tokio::test]
async fn a_role_whose_name_needs_quotes_applies_and_keeps_the_grants() {
    // The grants are read leaving out the current role's own, found by its name as data: a
    // role named with capitals or spaces is not SQL (`current_user::regrole` failed with
    // "invalid name syntax", and every apply with it).
    let database = Database::start();
    database.admin(BASE);
    database.admin("CREATE ROLE \"Schema Admin\" SUPERUSER; CREATE ROLE reader NOLOGIN");
    let apply_as_admin = async |text: &str| {
        let spec = Spec::load(&database.spec_file("viewgate.toml", text)).expect("spec");
        let mut client = database.client().await;
        exec(&client, "SET ROLE \"Schema Admin\"").await;
        apply::apply(
            &mut client,
            &spec,
            &Templates::built_in(),
            support::quick_locks(),
        )
        .await
        .expect("applies")
    };
    apply_as_admin(SPEC).await;
    database.admin("GRANT SELECT ON models_v1 TO reader");
    let outcome = apply_as_admin(&SPEC.replace(", \"legacy_note\"]", "]")).await;
    assert_eq!(outcome.applied, ["v1"]);
    assert_eq!(grants_on(&database, "models_v1"), "reader SELECT");
}
