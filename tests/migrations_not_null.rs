//! NOT NULL across chained migrations, against a real Postgres: a migration may change the type
//! of a column the live previous migration added NOT NULL (red-team pass 41, finding 9: both
//! stand-in checks were named `<table>_<column>_not_null`).

use crate::migration_support;
use crate::support;

use migration_support::{at, base_columns, complete_now, seeded, start_text};
use support::{exec, lines};

#[tokio::test]
async fn a_chained_migration_retypes_a_column_the_live_one_added_not_null() {
    let database = seeded(3).await;
    start_text(
        &database,
        "0002.toml",
        r#"
version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
up = "1"
column = { name = "level", type = "integer", nullable = false }
"#,
    )
    .await
    .expect("v2 starts");
    start_text(
        &database,
        "0003.toml",
        r#"
version = "v3"
from = "v2"
[[operations]]
op = "alter_column"
table = "models"
column = "level"
type = "bigint"
"#,
    )
    .await
    .expect("v3 starts while v2 is live");
    let v1 = at(&database, "v1").await;
    let v3 = at(&database, "v3").await;
    exec(&v1, "INSERT INTO models_v1 (name) VALUES ('from-v1')").await;
    exec(&v3, "UPDATE models_v3 SET level = 7 WHERE id = 1").await;
    assert_eq!(
        lines(&v3, "SELECT id, level FROM models_v3 ORDER BY id").await,
        ["1|7", "2|1", "3|1", "4|1"]
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("v2 completes");
    database.admin("UPDATE viewgate.settings SET default_version = 'v3'");
    complete_now(&database).await.expect("v3 completes");
    assert!(
        base_columns(&database).ends_with(",level:bigint!"),
        "{}",
        base_columns(&database)
    );
}
