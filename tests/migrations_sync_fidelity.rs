//! The sync triggers mirror what is stored, against a real Postgres: an UPDATE to a value its
//! type calls equal but stores differently (citext's case, numeric's scale, a float's -0)
//! reaches the other version (red-team pass 41, finding 5). Clients here connect directly and
//! set `viewgate.version` as the proxy does for its sessions.

#[path = "migrations/support.rs"]
mod migration_support;
#[path = "views/support.rs"]
mod support;

use migration_support::{at, complete_now, start_text};
use support::{Database, exec, lines};

const SPEC: &str = r#"
[[tables]]
name = "t"
key = ["id"]

[[versions]]
name = "v1"
[[versions.tables]]
base = "t"
columns = ["id", "email", "amount", "ratio", "label"]
"#;

/// A table `t` of one row whose `email` is citext where the cluster has the extension
/// (Debian's postgresql-contrib), text otherwise; v1 sees every column.
async fn equal_but_different() -> (Database, bool) {
    let database = Database::start();
    let citext =
        database.admin("SELECT count(*) FROM pg_available_extensions WHERE name = 'citext'") == "1";
    if citext {
        database.admin("CREATE EXTENSION citext");
    }
    let email = if citext { "citext" } else { "text" };
    database.admin(&format!(
        "CREATE TABLE public.t (id int PRIMARY KEY, email {email}, amount numeric, ratio float8, label text)"
    ));
    database.apply_text(SPEC).await;
    database.admin("INSERT INTO t VALUES (1, 'Alice@Example.COM', 1.5, 0, '7.5')");
    (database, citext)
}

#[tokio::test]
async fn an_update_to_an_equal_but_differently_stored_value_reaches_the_other_version() {
    let (database, citext) = equal_but_different().await;
    start_text(
        &database,
        "0002.toml",
        r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "t"
column = "email"
type = "text"
[[operations]]
op = "alter_column"
table = "t"
column = "amount"
type = "text"
up = "amount::text"
down = "amount::numeric"
[[operations]]
op = "alter_column"
table = "t"
column = "ratio"
type = "text"
up = "ratio::text"
down = "ratio::float8"
[[operations]]
op = "alter_column"
table = "t"
column = "label"
type = "numeric"
up = "label::numeric"
down = "label::text"
"#,
    )
    .await
    .expect("starts");
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    // Up: each new value equals the old one by its type's equality.
    exec(
        &v1,
        "UPDATE t_v1 SET email = lower(email), amount = 1.50, ratio = '-0' WHERE id = 1",
    )
    .await;
    assert_eq!(
        lines(&v2, "SELECT email, amount, ratio FROM t_v2 WHERE id = 1").await,
        ["alice@example.com|1.50|-0"],
        "up (citext: {citext})"
    );
    // Down: the new version's numeric 7.5 written as 7.50.
    exec(&v2, "UPDATE t_v2 SET label = 7.50 WHERE id = 1").await;
    assert_eq!(
        lines(&v1, "SELECT label FROM t_v1 WHERE id = 1").await,
        ["7.50"],
        "down"
    );
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        database.admin("SELECT email || '|' || amount || '|' || ratio || '|' || label FROM t"),
        "alice@example.com|1.50|-0|7.50"
    );
}
