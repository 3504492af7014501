//! DDL on a managed table through the proxy at a version: what would change the table's
//! columns (an ORM migration's `ALTER TABLE … ADD COLUMN`) or the table itself (`DROP TABLE
//! … CASCADE`) is refused, with 42601 and a message naming the table and `viewgate migrate`,
//! the base table is left as it was, and the session goes on; other DDL on the table (an
//! index) still reaches it. Found by the ORM walks (Alembic, knex, Sequelize's
//! `sync({alter: true})`, Django's migrate): the column was added to the base table, no
//! version's view had it, and the application's next query failed with 42703.

use crate::common;

use common::versions::{connect_with, versioned_proxy};
use tokio_postgres::error::SqlState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_changing_a_managed_tables_columns_is_refused_at_a_version_and_other_ddl_passes() {
    let proxy = versioned_proxy();
    let base_has = |column: &str| {
        proxy.admin(&format!(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.model_metadata'::regclass AND attname = '{column}' AND NOT attisdropped"
        )) == "1"
    };
    let client = connect_with(&proxy, "-c%20viewgate.version%3Dv1").await;
    let sql = "ALTER TABLE model_metadata ADD COLUMN added_by_orm int";
    // Through a simple query and through a Parse.
    for error in [
        client.simple_query(sql).await.unwrap_err(),
        client.execute(sql, &[]).await.unwrap_err(),
    ] {
        let db = error.as_db_error().expect("an ErrorResponse");
        assert_eq!(db.code(), &SqlState::SYNTAX_ERROR, "{db:?}");
        let message = db.message();
        assert!(
            message.contains("ADD COLUMN on \"model_metadata\", a table viewgate manages")
                && message.contains("viewgate migrate start, operation \"add_column\"")
                && message.contains("over a direct connection"),
            "{message}"
        );
        assert!(message.ends_with("(at character 13)"), "{message}");
    }
    assert!(!base_has("added_by_orm"));
    // The session goes on, at its version.
    let rows = client
        .query("SELECT * FROM model_metadata", &[])
        .await
        .unwrap();
    assert!(rows.is_empty());
    assert_eq!(
        client
            .prepare("SELECT * FROM model_metadata")
            .await
            .unwrap()
            .columns()
            .len(),
        5
    );
    // A DROP TABLE … CASCADE would take every version's view with it.
    let error = client
        .simple_query("DROP TABLE model_metadata CASCADE")
        .await
        .unwrap_err();
    let db = error.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code(), &SqlState::SYNTAX_ERROR, "{db:?}");
    assert!(db.message().contains("operation \"drop_table\""), "{db:?}");
    assert_eq!(
        proxy.admin("SELECT to_regclass('public.model_metadata_v1') IS NOT NULL"),
        "t"
    );
    // Other DDL on the managed table is the operator's, and reaches the base table.
    client
        .batch_execute("CREATE INDEX model_metadata_by_name ON model_metadata (model_name)")
        .await
        .unwrap();
    assert_eq!(
        proxy.admin("SELECT tablename FROM pg_indexes WHERE indexname = 'model_metadata_by_name'"),
        "model_metadata"
    );
    // Over a direct connection the DDL is Postgres's to run.
    proxy.admin("ALTER TABLE model_metadata ADD COLUMN added_by_operator int");
    assert!(base_has("added_by_operator"));
}
